/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libweft: the request path.  Parents (struct wf_io) are cut into pieces
 * (struct wf_piece), pieces are routed and sent, replies finish them, the
 * last piece of a parent puts one completion on the ring.  See weft_int.h
 * for the shape and the state of each struct.
 *
 * Rules that keep it simple:
 *  - routing and dispatch never finish a piece: a piece that cannot go out
 *    now is queued (a connection's wait_q, or retry_q with a time), so a
 *    parent is never completed under the feet of the code cutting it;
 *  - a piece holds its slot until its REPLY is in AND our own fabric
 *    operations for it have completed (the payload write and the header
 *    send), so a slot's memory on both sides is never reused early and the
 *    send credits (2 per slot) never run out;
 *  - any connection error closes the connection; its DISCONNECT sends every
 *    piece it held back through routing (a new primary, a new epoch).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "initiator/weft_int.h"

#define WR_CONN   (1ull << 63)
#define RES_RETRY INT32_MIN     /* p->res after a reply that asks to retry */

void wf_pq_push(struct wf_pq *q, struct wf_piece *p)
{
	p->next = NULL;
	if (q->tail)
		q->tail->next = p;
	else
		q->head = p;
	q->tail = p;
}

struct wf_piece *wf_pq_pop(struct wf_pq *q)
{
	struct wf_piece *p = q->head;

	if (p) {
		q->head = p->next;
		if (!q->head)
			q->tail = NULL;
		p->next = NULL;
	}
	return p;
}

int wf_io_init(struct weft_cluster *cl)
{
	uint32_t i;

	cl->ios = calloc(cl->qd, sizeof(*cl->ios));
	cl->pieces = calloc(cl->npieces, sizeof(*cl->pieces));
	cl->cq = calloc(cl->qd, sizeof(*cl->cq));
	if (!cl->ios || !cl->pieces || !cl->cq) {
		wf_io_fini(cl);
		return -ENOMEM;
	}
	for (i = cl->qd; i-- > 0;) {
		cl->ios[i].next = cl->io_free;
		cl->io_free = &cl->ios[i];
	}
	for (i = cl->npieces; i-- > 0;) {
		cl->pieces[i].idx = i;
		cl->pieces[i].next = cl->pc_free;
		cl->pc_free = &cl->pieces[i];
	}
	return 0;
}

void wf_io_fini(struct weft_cluster *cl)
{
	free(cl->ios);
	free(cl->pieces);
	free(cl->cq);
	cl->ios = NULL;
	cl->pieces = NULL;
	cl->cq = NULL;
}

static unsigned backoff_ms(unsigned attempts)
{
	unsigned d = WF_BACKOFF_MIN_MS << (attempts < 8 ? attempts : 8);

	return d < WF_BACKOFF_MAX_MS ? d : WF_BACKOFF_MAX_MS;
}

static void carve(struct weft_cluster *cl, struct wf_io *io);

/* ---- completion ------------------------------------------------------------ */

static void io_complete(struct weft_cluster *cl, struct wf_io *io)
{
	struct weft_cqe *e = &cl->cq[(cl->cq_head + cl->cq_count) % cl->qd];

	/* Never full: submit admits a parent only while inflight plus
	 * unreaped entries stay below qd. */
	cl->cq_count++;
	e->user_data = io->user_data;
	e->res = io->err ? io->err :
		 io->op == WF_OP_FLUSH ? 0 : (int64_t)io->done;
	io->state = IO_FREE;
	io->next = cl->io_free;
	cl->io_free = io;
	cl->inflight--;
}

/* The connection of c's target in this epoch: a replaced connection's
 * late replies count for its successor (same target id). */
static struct wf_conn *conn_of(struct weft_cluster *cl, struct wf_conn *c)
{
	int t;

	if (!c->dead)
		return c->parent ? c->parent : c;       /* reactor k > 0 */
	t = wf_map_target_by_id(&cl->map, c->target_id);
	return t >= 0 ? cl->conns[t] : c;
}

void wf_piece_done(struct weft_cluster *cl, struct wf_piece *p, int64_t res)
{
	struct wf_io *io = p->io;

	if (res >= 0 && p->op == WF_OP_FLUSH) {
		/* Only an OK reply makes the writes before the carve
		 * durable; a failed flush leaves the target dirty. */
		int t = wf_map_target_by_id(&cl->map, p->target);

		if (t >= 0 && cl->conns[t]->fgen < p->fgen)
			cl->conns[t]->fgen = p->fgen;
	}

	if (res >= 0 && io->op == WF_OP_READ && !io->zc && !p->landed && p->len) {
		/* Copy out of the bounce chunk (the data landed there). */
		memcpy(io->buf + p->bufoff,
		       cl->mem.bounce + (size_t)p->idx * cl->piece_max, p->len);
		cl->stats.bounced++;
	}
	if (res < 0) {
		if (!io->err)
			io->err = res;
	} else {
		io->done += (uint64_t)res;
	}
	p->state = PC_FREE;
	p->io = NULL;
	p->conn = NULL;
	p->next = cl->pc_free;
	cl->pc_free = p;
	io->pieces_out--;
	if (io->state == IO_WAITING && !io->pieces_out)
		io_complete(cl, io);
	/* A free piece lets the oldest waiting parent go on. */
	if (cl->carve_head)
		carve(cl, cl->carve_head);
}

void wf_piece_retry(struct weft_cluster *cl, struct wf_piece *p, int err,
		    unsigned delay_ms)
{
	(void)err;
	p->attempts++;
	cl->stats.retries++;
	p->state = PC_RETRY;
	p->conn = NULL;
	p->retry_at = cl->now + delay_ms;
	wf_pq_push(&cl->retry_q, p);
}

/* ---- sending ---------------------------------------------------------------- */

static void slot_release(struct wf_conn *c, struct wf_piece *p)
{
	if (c->slot_free && p->slot < c->slot_count) {
		wf_slot_put(c, p->slot);
		c->inflight--;
	}
}

/* Reply in and our operations done: the piece is over on this conn. */
void wf_piece_settle(struct weft_cluster *cl, struct wf_piece *p)
{
	struct wf_conn *c = p->conn;
	int32_t res = p->res;

	slot_release(c, p);
	p->conn = NULL;
	if (res == RES_RETRY) {
		unsigned d = (unsigned)p->retry_at;

		wf_piece_retry(cl, p, -EAGAIN, d);
	} else {
		if (res >= 0 && (p->op == WF_OP_WRITE || p->op == WF_OP_DISCARD))
			conn_of(cl, c)->wgen++;
		if (res >= 0 && p->wlen < p->len) {
			/* One round of a piece larger than the slots: copy
			 * out what came, then send the rest. */
			if (p->op == WF_OP_READ && !p->io->zc)
				memcpy(p->io->buf + p->bufoff, cl->mem.bounce +
				       (size_t)p->idx * cl->piece_max, p->wlen);
			p->io->done += p->wlen;
			p->off += p->wlen;
			p->bufoff += p->wlen;
			p->len -= p->wlen;
			p->attempts = 0;
			wf_piece_retry(cl, p, 0, 0);
		} else {
			wf_piece_done(cl, p, res);
		}
	}
	wf_conn_kick(c);
}

static int piece_send(struct weft_cluster *cl, struct wf_conn *c,
		      struct wf_piece *p)
{
	struct wf_io *io = p->io;
	struct wf_req r = {
		.opcode = p->op,
		.flags = io->wflags,
		.volume = io->vol->id,
		.offset = p->off,
		.epoch = cl->map.epoch,
		.length = p->len,
	};
	struct wf_req_hdr h;
	const struct wf_mr *mr;
	uint64_t loff, wr;
	int slot, ret;

	/* Slots smaller than the piece: the piece goes out in rounds (no
	 * second piece needed, so no piece can wait for another). */
	p->wlen = p->len;
	if (p->len > c->max_len && p->op != WF_OP_DISCARD) {
		p->wlen = c->max_len;
		r.length = p->wlen;
		cl->stats.splits++;
	}
	slot = wf_slot_take(c);
	if (slot < 0)
		return -EAGAIN;
	p->gen++;
	wr = (uint64_t)p->gen << 32 | p->idx;
	p->conn = c;
	p->slot = (uint32_t)slot;
	p->replied = false;
	p->local_ops = 0;
	p->res = 0;
	p->state = PC_SENT;
	c->inflight++;
	r.tag = wr;
	r.slot = (uint32_t)slot;
	if (io->zc) {
		mr = cl->mem.arena_mr;
		loff = (uint64_t)(io->buf - cl->mem.arena) + p->bufoff;
	} else {
		mr = cl->mem.bounce_mr;
		loff = (uint64_t)p->idx * cl->piece_max;
	}
	if (p->op == WF_OP_WRITE) {
		if (!io->zc)
			memcpy(cl->mem.bounce + loff, io->buf + p->bufoff, p->wlen);
		ret = wf_write(c->ep, mr, loff, p->wlen, &c->ring,
			       (uint64_t)slot * c->slot_size, wr);
		if (ret)
			goto out_unsent;
		p->local_ops++;
	} else if (p->op == WF_OP_READ) {
		ret = wf_mr_rkey(mr, c->ep, loff, p->wlen, &r.buf);
		if (ret)
			goto out_unsent;
	}
	wf_req_encode(&r, &h);
	ret = wf_send(c->ep, &h, sizeof(h), wr);
	if (ret) {
		/* A payload may be on its way without its header: only a new
		 * connection makes the slot clean again. */
		if (p->local_ops) {
			wf_conn_fail(c);
			return 0;
		}
		goto out_unsent;
	}
	p->local_ops++;
	cl->stats.sent++;
	return 0;

out_unsent:
	slot_release(c, p);
	p->conn = NULL;
	if (ret != -EAGAIN)
		wf_conn_fail(c);
	wf_piece_retry(cl, p, ret, 1);
	return 0;
}

/* Send what waits on a live connection while it has free slots. */
void wf_conn_kick(struct wf_conn *c)
{
	struct weft_cluster *cl = c->cl;

	while (c->state == CONN_LIVE && c->nfree && c->wait_q.head) {
		struct wf_piece *p = wf_pq_pop(&c->wait_q);

		if (piece_send(cl, c, p) == -EAGAIN) {
			/* No piece to split into: try again shortly. */
			wf_piece_retry(cl, p, -EAGAIN, 1);
		}
	}
}

static void dispatch(struct weft_cluster *cl, struct wf_conn *c,
		     struct wf_piece *p)
{
	switch (c->state) {
	case CONN_IDLE:
		if (cl->now < c->retry_at) {
			wf_piece_retry(cl, p, -ENOTCONN,
				       (unsigned)(c->retry_at - cl->now));
			return;
		}
		if (wf_conn_connect(c)) {
			wf_piece_retry(cl, p, -ENOTCONN, backoff_ms(c->fails));
			return;
		}
		/* wait for the GRANT */
		__attribute__((fallthrough));
	case CONN_HELLO:
		p->state = PC_QUEUED;
		p->conn = c;
		wf_pq_push(&c->wait_q, p);
		return;
	case CONN_CLOSING:
		wf_piece_retry(cl, p, -ENOTCONN, 1);
		return;
	case CONN_LIVE:
		if (!c->wait_q.head && c->nfree && piece_send(cl, c, p) != -EAGAIN)
			return;
		p->state = PC_QUEUED;
		p->conn = c;
		wf_pq_push(&c->wait_q, p);
		return;
	}
}

/* Where a piece goes: the PG's primary, a short-circuit read, or later. */
void wf_piece_dispatch(struct weft_cluster *cl, struct wf_piece *p)
{
	struct wf_io *io = p->io;
	struct wf_extent_loc loc;
	int t;

	if (io->vol->gone) {
		/* Retry processing finishes it with -ENOENT (never here:
		 * routing does not complete pieces). */
		wf_piece_retry(cl, p, -ENOENT, 0);
		return;
	}
	if (p->op == WF_OP_FLUSH) {
		t = wf_map_target_by_id(&cl->map, p->target);
		if (t < 0) {
			/* The target left the map: nothing of ours to flush
			 * there any more.  Done through the retry queue. */
			wf_piece_retry(cl, p, 0, 0);
			return;
		}
		dispatch(cl, cl->conns[t], p);
		return;
	}
	if (wf_place_extent(&cl->table, &cl->map, io->vol->idx, p->off, &loc) ||
	    !loc.n) {
		/* No acting replica up in this epoch: wait for a new map. */
		wf_map_refresh(cl, false);
		wf_piece_retry(cl, p, -EHOSTDOWN, backoff_ms(p->attempts));
		return;
	}
	if (p->op == WF_OP_READ && cl->sc_enabled && wf_sc_try(cl, p, &loc))
		return;
	dispatch(cl, wf_conn_route(cl->conns[loc.acting[0]], io->vol->id, p->off),
		 p);
}

/* ---- cutting ----------------------------------------------------------------- */

static void carve_q_del(struct weft_cluster *cl, struct wf_io *io)
{
	/* io is always the head when it leaves (FIFO service). */
	if (cl->carve_head == io) {
		cl->carve_head = io->next;
		if (!cl->carve_head)
			cl->carve_tail = NULL;
	}
	io->next = NULL;
}

static void carve(struct weft_cluster *cl, struct wf_io *io)
{
	uint64_t es = cl->map.extent_size;

	for (;;) {
		struct wf_piece *p;
		uint64_t off, n;

		if (io->op == WF_OP_FLUSH) {
			while (io->cursor < cl->nconns &&
			       cl->conns[io->cursor]->wgen ==
			       cl->conns[io->cursor]->fgen)
				io->cursor++;
			if (io->cursor >= cl->nconns)
				break;
		} else if (io->cursor >= io->len) {
			break;
		}
		p = cl->pc_free;
		if (!p) {
			if (io->state != IO_CARVING) {
				io->state = IO_CARVING;
				io->next = NULL;
				if (cl->carve_tail)
					cl->carve_tail->next = io;
				else
					cl->carve_head = io;
				cl->carve_tail = io;
			}
			return;
		}
		cl->pc_free = p->next;
		p->io = io;
		p->op = io->op;
		p->attempts = 0;
		p->res = 0;
		p->replied = false;
		p->local_ops = 0;
		p->landed = false;
		p->sc_skip = false;
		if (io->op == WF_OP_FLUSH) {
			struct wf_conn *c = cl->conns[io->cursor++];

			/* Writes completing from now on are the next flush's;
			 * these count as flushed once the reply is OK. */
			p->fgen = c->wgen;
			p->target = c->target_id;
			p->off = 0;
			p->len = 0;
			p->bufoff = 0;
		} else {
			off = io->off + io->cursor;
			n = es - (off & (es - 1));
			/* A discard carries no payload: one per extent, so a
			 * whole extent can be freed by the target. */
			if (n > cl->piece_max && io->op != WF_OP_DISCARD)
				n = cl->piece_max;
			if (n > io->len - io->cursor)
				n = io->len - io->cursor;
			p->off = off;
			p->len = (uint32_t)n;
			p->bufoff = io->cursor;
			io->cursor += n;
		}
		io->pieces_out++;
		wf_piece_dispatch(cl, p);
	}
	if (io->state == IO_CARVING)
		carve_q_del(cl, io);
	io->state = IO_WAITING;
	if (!io->pieces_out)
		io_complete(cl, io);    /* a flush with nothing to flush */
}

/* ---- replies and fabric completions -------------------------------------- */

static void on_status(struct weft_cluster *cl, struct wf_piece *p,
		      const struct wf_reply *r)
{
	uint16_t st = r->status;

	if (st == WF_WS_OK) {
		if (p->op == WF_OP_FLUSH)
			p->res = 0;
		else
			p->res = r->length == p->wlen ? (int32_t)p->wlen : -EIO;
		return;
	}
	if (st & WF_WS_DNR) {
		p->res = wf_wire_status_errno(st);
		return;
	}
	p->res = RES_RETRY;
	switch (st) {
	case WF_WS_STALE:
		cl->stats.stale++;
		/* A newer map file makes the retry immediate. */
		p->retry_at = wf_map_refresh(cl, false) > 0 ? 0 :
			      backoff_ms(p->attempts);
		return;
	case WF_WS_NOTPRIM:
		p->retry_at = wf_map_refresh(cl, false) > 0 ? 0 :
			      backoff_ms(p->attempts);
		return;
	case WF_WS_BUSY:
	case WF_WS_CRC:
	case WF_WS_DEGRADED:
		p->retry_at = backoff_ms(p->attempts);
		return;
	default:
		/* No DNR: the target says a retry may help (a transient
		 * device error, say).  A few tries, then the real errno,
		 * rather than hiding a failing device behind -ETIMEDOUT. */
		if (p->attempts < WF_OTHER_RETRIES) {
			p->retry_at = backoff_ms(p->attempts);
			return;
		}
		p->res = wf_wire_status_errno(st);
		return;
	}
}

void wf_on_reply(struct wf_conn *c, const struct wf_reply *r)
{
	struct weft_cluster *cl = c->cl;
	uint32_t idx = (uint32_t)r->tag;
	struct wf_piece *p;

	cl->stats.replies++;
	if (idx >= cl->npieces)
		goto out_bad;
	p = &cl->pieces[idx];
	if (p->state != PC_SENT || p->conn != c || p->replied ||
	    p->gen != (uint32_t)(r->tag >> 32))
		goto out_bad;
	p->replied = true;
	on_status(cl, p, r);
	if (!p->local_ops)
		wf_piece_settle(cl, p);
	return;

out_bad:
	fprintf(stderr, "libweft: target %u: reply for no request (tag %llx)\n",
		c->target_id, (unsigned long long)r->tag);
	wf_conn_fail(c);
}

static void on_local(struct weft_cluster *cl, const struct wf_cqe *e)
{
	uint32_t idx = (uint32_t)e->wr_id;
	struct wf_piece *p;
	struct wf_conn *c = wf_ep_user(e->ep);

	if (e->wr_id & WR_CONN) {
		if (e->status)
			wf_conn_fail(c);
		return;
	}
	if (idx >= cl->npieces)
		return;
	p = &cl->pieces[idx];
	if (p->state != PC_SENT || p->conn != c ||
	    p->gen != (uint32_t)(e->wr_id >> 32) || !p->local_ops)
		return;
	p->local_ops--;
	if (e->status) {
		wf_conn_fail(c);
		return;
	}
	if (!p->local_ops && p->replied)
		wf_piece_settle(cl, p);
}

static void on_cqe(struct weft_cluster *cl, const struct wf_cqe *e)
{
	struct wf_conn *c = e->ep ? wf_ep_user(e->ep) : NULL;

	if (!c)
		return;
	switch (e->op) {
	case WF_CQE_RECV_MSG:
		wf_conn_on_msg(c, e->msg, e->len);
		break;
	case WF_CQE_SEND:
	case WF_CQE_WRITE:
	case WF_CQE_WRITE_IMM:
	case WF_CQE_READ:
		on_local(cl, e);
		break;
	case WF_CQE_DISCONNECT:
		wf_conn_on_disconnect(c);
		break;
	default:
		break;
	}
}

/* Deadlines: a piece out past its request's deadline closes its
 * connection (the target does not answer); the DISCONNECT then sends it to
 * retry, where the deadline fails it with -ETIMEDOUT. */
static void sweep(struct weft_cluster *cl)
{
	uint32_t i;

	for (i = 0; i < cl->nconns; i++) {
		struct wf_conn *c = cl->conns[i];

		if (c->state == CONN_HELLO && cl->now >= c->hello_deadline)
			wf_conn_fail(c);
		wf_conn_sweep_subs(c, cl->now);
	}
	for (i = 0; i < cl->npieces; i++) {
		struct wf_piece *p = &cl->pieces[i];

		if ((p->state == PC_SENT || p->state == PC_QUEUED) &&
		    cl->now >= p->io->deadline && p->conn &&
		    p->conn->state != CONN_LIVE)
			wf_conn_fail(p->conn);
		else if (p->state == PC_SENT && cl->now >= p->io->deadline &&
			 !p->replied)
			wf_conn_fail(p->conn);
	}
}

static void run_retries(struct weft_cluster *cl)
{
	struct wf_pq q = cl->retry_q;
	struct wf_piece *p;

	cl->retry_q.head = cl->retry_q.tail = NULL;
	while ((p = wf_pq_pop(&q))) {
		if (p->retry_at > cl->now) {
			wf_pq_push(&cl->retry_q, p);
			continue;
		}
		if (p->io->vol->gone && p->op != WF_OP_FLUSH) {
			wf_piece_done(cl, p, -ENOENT);
			continue;
		}
		if (p->op == WF_OP_FLUSH &&
		    wf_map_target_by_id(&cl->map, p->target) < 0) {
			wf_piece_done(cl, p, 0);
			continue;
		}
		if (cl->now >= p->io->deadline) {
			wf_piece_done(cl, p, -ETIMEDOUT);
			continue;
		}
		wf_piece_dispatch(cl, p);
	}
}

int wf_progress(struct weft_cluster *cl)
{
	struct wf_cqe cqes[WF_POLL_BATCH];
	int n, i, total = 0;

	{
		struct timespec ts;

		/* One clock read per turn (vDSO): ms for timers, us for the
		 * busy-poll budget of weft_wait. */
		clock_gettime(CLOCK_MONOTONIC, &ts);
		cl->now_us = (uint64_t)ts.tv_sec * 1000000 +
			     (uint64_t)ts.tv_nsec / 1000;
		cl->now = cl->now_us / 1000;
	}
	do {
		n = wf_poll(cl->ctx, cqes, WF_POLL_BATCH);
		if (n < 0)
			return n;
		for (i = 0; i < n; i++)
			on_cqe(cl, &cqes[i]);
		total += n;
	} while (n == WF_POLL_BATCH);
	if (cl->scr)
		total += wf_sc_poll(cl);
	if (cl->retry_q.head)
		run_retries(cl);
	if (cl->now >= cl->next_sweep) {
		cl->next_sweep = cl->now + WF_SWEEP_MS;
		if (cl->inflight)
			sweep(cl);
	}
	/* Retries and freed pieces may have queued short-circuit reads and
	 * network pieces. */
	wf_sc_flush(cl);
	wf_flush(cl->ctx);
	return total;
}

/* ---- the public request calls ------------------------------------------ */

static int submit(struct weft_volume *vol, uint8_t op, void *buf, uint64_t len,
		  uint64_t off, uint16_t wflags, uint64_t user_data)
{
	struct weft_cluster *cl;
	struct wf_io *io;

	if (!vol)
		return -EINVAL;
	cl = vol->cl;
	if (vol->gone)
		return -ENOENT;
	if (op != WF_OP_FLUSH) {
		if (!len || ((off | len) & (WF_BLOCK - 1)))
			return -EINVAL;
		if (op != WF_OP_DISCARD && !buf)
			return -EINVAL;
		if (off > vol->size || len > vol->size - off)
			return -ERANGE;
	}
	/* A parent's completion takes a ring entry until it is reaped: a
	 * request may only start while the ring has room for its completion
	 * too, or an unreaped entry would be overwritten. */
	io = cl->io_free;
	if (!io || cl->inflight + cl->cq_count >= cl->qd)
		return -EAGAIN;
	cl->io_free = io->next;
	io->next = NULL;
	io->state = IO_WAITING;
	io->op = op;
	io->wflags = wflags;
	io->vol = vol;
	io->buf = buf;
	io->zc = buf && wf_mem_in_arena(&cl->mem, buf, len);
	io->off = off;
	io->len = len;
	io->cursor = 0;
	io->pieces_out = 0;
	io->err = 0;
	io->done = 0;
	io->user_data = user_data;
	cl->now = wf_now_ms();
	io->deadline = cl->now + cl->opts.timeout_ms;
	cl->inflight++;
	/* Others waiting for pieces go first (FIFO). */
	if (cl->carve_head) {
		io->state = IO_CARVING;
		cl->carve_tail->next = io;
		cl->carve_tail = io;
		return 0;
	}
	carve(cl, io);
	/* The pieces of this request leave now, all at once: its
	 * short-circuit reads in one io_uring_enter, its network pieces in
	 * one send per connection (the fabric ctx batches posts).  A caller
	 * may sleep on weft_fd() next, and nothing else would send them.
	 * WEFT_F_DEFER_SEND: the caller sends with weft_submit() (or the
	 * next poll), after queueing more. */
	if (!(cl->opts.flags & WEFT_F_DEFER_SEND))
		weft_submit(cl);
	return 0;
}

int weft_submit(struct weft_cluster *cl)
{
	if (!cl)
		return -EINVAL;
	wf_sc_flush(cl);
	return wf_flush(cl->ctx);
}

int weft_read(struct weft_volume *vol, void *buf, size_t len, uint64_t off,
	      uint64_t user_data)
{
	return submit(vol, WF_OP_READ, buf, len, off, 0, user_data);
}

int weft_write(struct weft_volume *vol, const void *buf, size_t len,
	       uint64_t off, unsigned flags, uint64_t user_data)
{
	if (flags & ~(unsigned)WEFT_FUA)
		return -EINVAL;
	return submit(vol, WF_OP_WRITE, (void *)(uintptr_t)buf, len, off,
		      flags & WEFT_FUA ? WF_REQ_FUA : 0, user_data);
}

int weft_discard(struct weft_volume *vol, uint64_t off, uint64_t len,
		 uint64_t user_data)
{
	return submit(vol, WF_OP_DISCARD, NULL, len, off, 0, user_data);
}

int weft_flush(struct weft_volume *vol, uint64_t user_data)
{
	return submit(vol, WF_OP_FLUSH, NULL, 0, 0, 0, user_data);
}

static int reap(struct weft_cluster *cl, struct weft_cqe *cqes, int max)
{
	int n = 0;

	while (n < max && cl->cq_count) {
		cqes[n++] = cl->cq[cl->cq_head];
		cl->cq_head = (cl->cq_head + 1) % cl->qd;
		cl->cq_count--;
	}
	return n;
}

int weft_poll(struct weft_cluster *cl, struct weft_cqe *cqes, int max)
{
	int ret, n;

	if (!cl || max < 0 || (max && !cqes))
		return -EINVAL;
	if (cl->cq_count < (uint32_t)max) {
		ret = wf_progress(cl);
		if (ret < 0)
			return ret;
	}
	n = reap(cl, cqes, max);
	if (!n && max) {
		/* Nothing: make weft_fd() readable for whatever the fabric
		 * holds internally, so a caller may sleep on it now. */
		wf_ctx_arm(cl->ctx);
	}
	return n;
}

/* How long a sleeper may sleep before a timer of ours is due. */
static int timer_ms(struct weft_cluster *cl)
{
	uint64_t t = UINT64_MAX;
	struct wf_piece *p;

	for (p = cl->retry_q.head; p; p = p->next)
		if (p->retry_at < t)
			t = p->retry_at;
	if (cl->inflight && cl->next_sweep < t)
		t = cl->next_sweep;
	if (t == UINT64_MAX)
		return -1;
	return t > cl->now ? (int)(t - cl->now) : 0;
}

int weft_wait(struct weft_cluster *cl, struct weft_cqe *cqes, int min, int max,
	      int timeout_ms)
{
	uint64_t start, end, spin_end;
	int got = 0, ret;

	if (!cl || min < 0 || max < min || (max && !cqes))
		return -EINVAL;
	start = wf_now_ms();
	end = timeout_ms < 0 ? UINT64_MAX : start + (uint64_t)timeout_ms;
	spin_end = 0;
	for (;;) {
		if (cl->cq_count < (uint32_t)(max - got)) {
			ret = wf_progress(cl);
			if (ret < 0)
				return got ? got : ret;
		}
		got += reap(cl, cqes + got, max - got);
		if (got >= min || got == max)
			return got;
		if (!cl->inflight)
			return got;     /* nothing could ever arrive */
		if (cl->now >= end)
			return got;
		/* Busy-poll a little: the reply of a fast target is usually
		 * closer than a sleep and wake-up. */
		if (cl->spin_us > 0) {
			if (!spin_end)
				spin_end = cl->now_us + (uint64_t)cl->spin_us;
			if (cl->now_us < spin_end)
				continue;
		}
		{
			struct epoll_event ev[4];
			int t = timer_ms(cl), left;

			wf_ctx_arm(cl->ctx);
			ret = wf_progress(cl);
			if (ret < 0)
				return got ? got : ret;
			if (cl->cq_count || ret > 0) {
				spin_end = 0;
				continue;
			}
			left = end == UINT64_MAX ? -1 :
			       (int)(end > cl->now ? end - cl->now : 0);
			if (t >= 0 && (left < 0 || t < left))
				left = t;
			epoll_wait(cl->epfd, ev, 4, left);
			spin_end = 0;
		}
	}
}

int weft_fd(struct weft_cluster *cl)
{
	return cl ? cl->epfd : -EINVAL;
}

unsigned weft_inflight(const struct weft_cluster *cl)
{
	return cl ? cl->inflight : 0;
}

/* ---- synchronous calls ------------------------------------------------------ */

#define SYNC_TAG 0x53594e4377656674ull

static int64_t sync_wait(struct weft_cluster *cl)
{
	struct weft_cqe e;

	for (;;) {
		int n = weft_wait(cl, &e, 1, 1, -1);

		if (n < 0)
			return n;
		if (n == 1 && e.user_data == SYNC_TAG)
			return e.res;
		if (n == 0 && !cl->inflight)
			return -EIO;
	}
}

ssize_t weft_pread(struct weft_volume *vol, void *buf, size_t len, uint64_t off)
{
	int ret = weft_read(vol, buf, len, off, SYNC_TAG);

	return ret ? ret : (ssize_t)sync_wait(vol->cl);
}

ssize_t weft_pwrite(struct weft_volume *vol, const void *buf, size_t len,
		    uint64_t off, unsigned flags)
{
	int ret = weft_write(vol, buf, len, off, flags, SYNC_TAG);

	return ret ? ret : (ssize_t)sync_wait(vol->cl);
}

int weft_fsync(struct weft_volume *vol)
{
	int ret = weft_flush(vol, SYNC_TAG);

	return ret ? ret : (int)sync_wait(vol->cl);
}

int weft_discard_sync(struct weft_volume *vol, uint64_t off, uint64_t len)
{
	int ret = weft_discard(vol, off, len, SYNC_TAG);
	int64_t r;

	if (ret)
		return ret;
	r = sync_wait(vol->cl);
	return r < 0 ? (int)r : 0;
}
