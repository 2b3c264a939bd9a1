/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libweft: the piece and parent state machine.  Every transition of enum
 * wf_piece_state happens in this file (docs/libweft.md, "A piece's life"):
 *
 *   FREE --carve--> route
 *   route --> SC (short-circuit read) | QUEUED (conn wait_q) | SENT | RETRY
 *   QUEUED --slot free--> SENT           QUEUED --conn down--> RETRY
 *   SENT --reply, our ops done--> settle
 *   SENT --reply, our ops out--> ANSWERED or BOUNCED --ops done--> settle
 *   SENT --conn down--> RETRY            ANSWERED, BOUNCED --conn down--> settle
 *   settle: ANSWERED --> FREE (done) or RETRY (next round); BOUNCED --> RETRY
 *   SC --ok--> FREE                      SC --fell back--> RETRY (via target)
 *   RETRY --due--> route, or FREE (timed out, volume gone, target gone)
 *
 * Rules that keep it simple:
 *  - routing and dispatch never finish a piece: a piece that cannot go out
 *    now is queued (a connection's wait_q, or retry_q with a time), so a
 *    parent is never completed under the feet of the code cutting it;
 *  - a piece holds its slot until its reply is in AND our own fabric
 *    operations for it have completed (the payload write and the header
 *    send), so a slot's memory on both sides is never reused early and the
 *    send credits (2 per slot) never run out;
 *  - any connection error closes the connection; once it is down
 *    (cl->down) every piece it held goes back through routing (a new
 *    primary, a new epoch).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "initiator/weft_int.h"

#define WR_CONN   (1ull << 63)

static void pq_push(struct wf_pq *q, struct wf_piece *p)
{
	p->next = NULL;
	if (q->tail)
		q->tail->next = p;
	else
		q->head = p;
	q->tail = p;
}

static struct wf_piece *pq_pop(struct wf_pq *q)
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
static void route(struct weft_cluster *cl, struct wf_piece *p);

static char *bounce_of(struct weft_cluster *cl, const struct wf_piece *p)
{
	return cl->mem.bounce + (size_t)p->idx * cl->piece_max;
}

/* ---- completion ------------------------------------------------------------ */

static void io_complete(struct weft_cluster *cl, struct wf_io *io)
{
	struct weft_cqe *e = &cl->cq[(cl->cq_head + cl->cq_count) % cl->qd];

	/* Never full: submit admits a parent only while inflight plus
	 * unreaped entries stay below qd. */
	cl->cq_count++;
	if (io->op == WF_OP_READ || io->op == WF_OP_WRITE) {
		static const uint32_t us[WEFT_STATS_LAT_BUCKETS - 1] = {
			10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000,
			100000, 1000000,
		};
		uint64_t ns = wf_clock_ns() - io->t0_ns;
		unsigned b = 0;

		while (b < WEFT_STATS_LAT_BUCKETS - 1 && ns > (uint64_t)us[b] * 1000)
			b++;
		wf_spin_on_complete(&cl->spin, ns, cl->wait_how);
		if (io->op == WF_OP_READ) {
			cl->api.read_latency[b]++;
			cl->api.read_latency_ns += ns;
		} else {
			cl->api.write_latency[b]++;
			cl->api.write_latency_ns += ns;
		}
	}
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

/* A write or discard completed on c's target: the next flush visits it. */
static void count_write(struct weft_cluster *cl, struct wf_conn *c,
			const struct wf_piece *p)
{
	struct wf_conn *t = conn_of(cl, c);
	const struct weft_volume *v = p->io->vol;

	t->wgen++;
	if (v->gone || cl->map.pools[cl->map.volumes[v->idx].pool].min_size <= 1)
		t->wgen1 = t->wgen;
}

/* -> FREE; the parent completes with its last piece. */
static void piece_done(struct weft_cluster *cl, struct wf_piece *p, int64_t res)
{
	struct wf_io *io = p->io;

	if (res >= 0 && p->op == WF_OP_FLUSH) {
		/* Only an OK reply makes the writes before the carve
		 * durable; a failed flush leaves the target dirty. */
		int t = wf_map_target_by_id(&cl->map, p->target);

		if (t >= 0 && cl->conns[t]->fgen < p->fgen)
			cl->conns[t]->fgen = p->fgen;
	}
	if (res > 0 && io->op == WF_OP_READ && p->dst_bounce) {
		/* Copy out of the bounce chunk (the data landed there). */
		memcpy(io->buf + p->bufoff, bounce_of(cl, p), (size_t)res);
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

/* -> RETRY until at (ms). */
static void piece_retry(struct weft_cluster *cl, struct wf_piece *p,
			enum wf_retry_why why, uint64_t at)
{
	if (why != RT_ROUND && why != RT_FINISH && why != RT_REFUSED) {
		p->attempts++;
		cl->stats.retries++;
	}
	p->state = PC_RETRY;
	p->why = (uint8_t)why;
	p->conn = NULL;
	p->retry_at = at;
	pq_push(&cl->retry_q, p);
}

/* ---- sending ---------------------------------------------------------------- */

static void slot_release(struct wf_conn *c, struct wf_piece *p)
{
	if (c->slot_free && p->slot < c->slot_count) {
		wf_slot_put(c, p->slot);
		c->inflight--;
	}
}

static void kick(struct wf_conn *c);

/* ANSWERED or BOUNCED, our operations done: the piece is over on its
 * connection. */
static void settle(struct weft_cluster *cl, struct wf_piece *p)
{
	struct wf_conn *c = p->conn;

	slot_release(c, p);
	p->conn = NULL;
	if (p->state == PC_BOUNCED) {
		piece_retry(cl, p, p->why, p->retry_at);
	} else if (p->res >= 0 && p->wlen < p->len) {
		/* One round of a piece larger than the slots: copy out what
		 * came, then send the rest. */
		if (p->op == WF_OP_WRITE || p->op == WF_OP_DISCARD)
			count_write(cl, c, p);
		if (p->op == WF_OP_READ && p->dst_bounce)
			memcpy(p->io->buf + p->bufoff, bounce_of(cl, p), p->wlen);
		p->io->done += p->wlen;
		p->off += p->wlen;
		p->bufoff += p->wlen;
		p->len -= p->wlen;
		p->attempts = 0;
		piece_retry(cl, p, RT_ROUND, cl->now);
	} else {
		if (p->res >= 0 && (p->op == WF_OP_WRITE || p->op == WF_OP_DISCARD))
			count_write(cl, c, p);
		piece_done(cl, p, p->res);
	}
	kick(c);
}

/* QUEUED or routed -> SENT; -EAGAIN when c has no free slot (nothing
 * changed); else 0, the piece SENT or on the retry queue. */
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
	p->local_ops = 0;
	p->res = 0;
	p->state = PC_SENT;
	c->inflight++;
	r.tag = wr;
	r.slot = (uint32_t)slot;
	p->dst_bounce = !io->zc;
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
		struct wf_rkey buf;

		ret = wf_mr_rkey(mr, c->ep, loff, p->wlen, &buf);
		if (ret)
			goto out_unsent;
		WF_BUF_COPY(r.buf, buf);
	}
	wf_req_encode(&r, &h);
	ret = wf_send(c->ep, &h, sizeof(h), wr);
	if (ret) {
		/* A payload may be on its way without its header: only a new
		 * connection makes the slot clean again.  The piece stays
		 * SENT and goes back when the connection is down. */
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
	piece_retry(cl, p, RT_BACKOFF, cl->now + 1);
	return 0;
}

/* Send what waits on a live connection while it has free slots. */
static void kick(struct wf_conn *c)
{
	struct weft_cluster *cl = c->cl;

	while (c->state == CONN_LIVE && c->nfree && c->wait_q.head) {
		struct wf_piece *p = pq_pop(&c->wait_q);

		/* nfree > 0: a slot is there, so -EAGAIN cannot happen;
		 * should it anyway, the piece tries again shortly. */
		if (piece_send(cl, c, p) == -EAGAIN)
			piece_retry(cl, p, RT_BACKOFF, cl->now + 1);
	}
}

static void queue_on(struct wf_conn *c, struct wf_piece *p)
{
	p->state = PC_QUEUED;
	p->conn = c;
	pq_push(&c->wait_q, p);
}

static void dispatch(struct weft_cluster *cl, struct wf_conn *c,
		     struct wf_piece *p)
{
	switch (c->state) {
	case CONN_IDLE:
		if (cl->now < c->retry_at && c->auth_err) {
			/* The target refused our key (or the lack of one) a
			 * moment ago: no use waiting (routing completes no
			 * piece: the retry pass does). */
			p->timeout_err = c->auth_err;
			piece_retry(cl, p, RT_REFUSED, cl->now);
			return;
		}
		if (cl->now < c->retry_at) {
			piece_retry(cl, p, RT_BACKOFF, c->retry_at);
			return;
		}
		if (wf_conn_connect(c)) {
			/* The target may have been marked down meanwhile. */
			cl->map_stale = true;
			piece_retry(cl, p, RT_BACKOFF, c->retry_at);
			return;
		}
		/* wait for the GRANT */
		queue_on(c, p);
		return;
	case CONN_CONNECTING:
	case CONN_HELLO:
		queue_on(c, p);
		return;
	case CONN_CLOSING:
	case CONN_DOWN:
		piece_retry(cl, p, RT_BACKOFF, cl->now + 1);
		return;
	case CONN_LIVE:
		if (!c->wait_q.head && c->nfree && piece_send(cl, c, p) != -EAGAIN)
			return;
		queue_on(c, p);
		return;
	}
}

/* A read of the PG's primary on this host: straight from its device. */
static bool route_sc(struct weft_cluster *cl, struct wf_piece *p,
		     const struct wf_extent_loc *loc)
{
	struct wf_io *io = p->io;
	uint32_t es = cl->map.extent_size;
	char *dst = io->buf + p->bufoff;
	uint32_t gen = p->gen + 1;

	p->dst_bounce = (uintptr_t)dst & (WF_BLOCK - 1);
	if (p->dst_bounce)
		dst = bounce_of(cl, p);
	if (!wf_sc_read(cl, loc->acting[0], io->vol->id, (uint32_t)loc->extent,
			p->off & (es - 1), dst, p->len,
			(uint64_t)gen << 32 | p->idx, loc->n > 1, &p->sc))
		return false;
	p->gen = gen;
	p->state = PC_SC;
	return true;
}

/* Where a piece goes: the PG's primary, a short-circuit read, or later. */
static void route(struct weft_cluster *cl, struct wf_piece *p)
{
	struct wf_io *io = p->io;
	struct wf_extent_loc loc;
	bool via_target = p->state == PC_RETRY && p->why == RT_VIA_TARGET;
	int t;

	if (io->vol->gone) {
		/* The retry pass finishes it with -ENOENT (routing does not
		 * complete pieces). */
		piece_retry(cl, p, RT_FINISH, cl->now);
		return;
	}
	if (p->op == WF_OP_FLUSH) {
		t = wf_map_target_by_id(&cl->map, p->target);
		if (t < 0 || !cl->map.targets[t].up) {
			/* The target left the map or is marked down: the retry
			 * pass finishes the piece (run_retries says how). */
			piece_retry(cl, p, RT_FINISH, cl->now);
			return;
		}
		dispatch(cl, cl->conns[t], p);
		return;
	}
	if (wf_place_extent(&cl->table, &cl->map, io->vol->idx, p->off, &loc) ||
	    !loc.n) {
		/* No acting replica up in this epoch: wait for a new map. */
		cl->map_stale = true;
		p->timeout_err = -EHOSTDOWN;
		piece_retry(cl, p, RT_MAP, cl->now + backoff_ms(p->attempts));
		return;
	}
	if (p->op == WF_OP_READ && cl->sc_enabled && !via_target &&
	    route_sc(cl, p, &loc))
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
		p->timeout_err = 0;
		p->local_ops = 0;
		p->dst_bounce = false;
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
		route(cl, p);
	}
	if (io->state == IO_CARVING)
		carve_q_del(cl, io);
	io->state = IO_WAITING;
	if (!io->pieces_out)
		io_complete(cl, io);    /* a flush with nothing to flush */
}

void wf_io_start(struct weft_cluster *cl, struct wf_io *io)
{
	/* Others waiting for pieces go first (FIFO). */
	if (cl->carve_head) {
		io->state = IO_CARVING;
		io->next = NULL;
		cl->carve_tail->next = io;
		cl->carve_tail = io;
		return;
	}
	carve(cl, io);
}

/* ---- replies and fabric completions -------------------------------------- */

/*
 * What a reply means for p: ANSWERED with res (bytes or -errno), or
 * BOUNCED with the time of the retry.
 */
static void verdict(struct weft_cluster *cl, struct wf_piece *p,
		    const struct wf_reply *r)
{
	uint16_t st = r->status;

	p->state = PC_ANSWERED;
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
	p->why = RT_BACKOFF;
	switch (st) {
	case WF_WS_STALE:
		cl->stats.stale++;
		__attribute__((fallthrough));
	case WF_WS_NOTPRIM:
		/* A newer map file makes the retry immediate
		 * (wf_pieces_new_map). */
		cl->map_stale = true;
		p->why = RT_MAP;
		break;
	case WF_WS_DEGRADED:
		/* Fewer acting replicas than min_size, or one did not take
		 * the write: retried until the deadline, which then says
		 * why. */
		p->timeout_err = -EHOSTDOWN;
		/* A member marked down in a new epoch is the usual way
		 * out: look at the map. */
		cl->map_stale = true;
		break;
	case WF_WS_BUSY:
	case WF_WS_CRC:
		break;
	default:
		/* No DNR: the target says a retry may help (a transient
		 * device error, say).  A few tries, then the real errno,
		 * rather than hiding a failing device behind -ETIMEDOUT. */
		if (p->attempts >= WF_OTHER_RETRIES) {
			p->res = wf_wire_status_errno(st);
			return;
		}
		break;
	}
	p->state = PC_BOUNCED;
	p->retry_at = cl->now + backoff_ms(p->attempts);
}

static void on_reply(struct weft_cluster *cl, struct wf_conn *c,
		     const struct wf_reply *r)
{
	uint32_t idx = (uint32_t)r->tag;
	struct wf_piece *p;

	cl->stats.replies++;
	if (idx >= cl->npieces)
		goto out_bad;
	p = &cl->pieces[idx];
	if (p->state != PC_SENT || p->conn != c ||
	    p->gen != (uint32_t)(r->tag >> 32))
		goto out_bad;
	verdict(cl, p, r);
	if (!p->local_ops)
		settle(cl, p);
	return;

out_bad:
	wf_log(cl, WEFT_LOG_WARNING, "target %u: reply for no request (tag %llx)",
	       c->target_id, (unsigned long long)r->tag);
	wf_conn_fail(c);
}

/* One of our fabric operations for a piece completed. */
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
	if ((p->state != PC_SENT && p->state != PC_ANSWERED &&
	     p->state != PC_BOUNCED) || p->conn != c ||
	    p->gen != (uint32_t)(e->wr_id >> 32) || !p->local_ops)
		return;
	p->local_ops--;
	if (e->status) {
		wf_conn_fail(c);
		return;
	}
	if (!p->local_ops && p->state != PC_SENT)
		settle(cl, p);
}

void wf_pieces_on_cqe(struct weft_cluster *cl, const struct wf_cqe *e)
{
	struct wf_conn *c = e->ep ? wf_ep_user(e->ep) : NULL;
	struct wf_reply r;

	if (!c)
		return;
	switch (e->op) {
	case WF_CQE_RECV_MSG:
		switch (wf_conn_on_msg(c, e->msg, e->len, &r)) {
		case WF_CEV_LIVE:
			kick(c);
			break;
		case WF_CEV_REPLY:
			on_reply(cl, c, &r);
			break;
		case WF_CEV_NONE:
			break;
		}
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
	case WF_CQE_CONNECT:
		wf_conn_on_connect(c, e->status);
		break;
	default:
		break;
	}
}

/*
 * Connections that went down: everything their endpoint carried has
 * completed (with errors) or never will; the pieces they held go back
 * through routing, maybe to a new primary.
 */
static void conns_down(struct weft_cluster *cl)
{
	struct wf_conn *c = cl->down;

	/* A lost target may come with a new epoch that routes around it. */
	cl->map_stale = true;
	while (c) {
		struct wf_piece *p;

		for (uint32_t i = 0; i < cl->npieces; i++) {
			p = &cl->pieces[i];
			if (p->conn != c)
				continue;
			if (p->state == PC_ANSWERED || p->state == PC_BOUNCED) {
				/* Answered: finish it as the reply said (done,
				 * next round, or retry). */
				p->local_ops = 0;
				settle(cl, p);
			} else if (p->state == PC_SENT) {
				p->conn = NULL;
				piece_retry(cl, p, RT_BACKOFF,
					    cl->now + backoff_ms(p->attempts));
			}
		}
		while ((p = pq_pop(&c->wait_q))) {
			if (c->auth_err)
				p->timeout_err = c->auth_err;
			piece_retry(cl, p, c->auth_err ? RT_REFUSED : RT_BACKOFF,
				    c->auth_err ? cl->now : c->retry_at);
		}
		c = wf_conn_down_done(c);
	}
}

/* Deadlines: a piece out past its request's deadline closes its
 * connection (the target does not answer); once the connection is down
 * the piece goes to retry, where the deadline fails it with -ETIMEDOUT. */
static void sweep(struct weft_cluster *cl)
{
	uint32_t i;

	for (i = 0; i < cl->nconns; i++)
		wf_conn_sweep(cl->conns[i], cl->now);
	for (i = 0; i < cl->npieces; i++) {
		struct wf_piece *p = &cl->pieces[i];

		if ((p->state != PC_SENT && p->state != PC_QUEUED) ||
		    cl->now < p->io->deadline)
			continue;
		/* Unanswered, or waiting on a connection that is not up. */
		if (p->state == PC_SENT || p->conn->state != CONN_LIVE)
			wf_conn_fail(p->conn);
	}
}

/* Past its request's deadline: finished with the error it waits on. */
static bool expired(struct weft_cluster *cl, struct wf_piece *p)
{
	if (cl->now < p->io->deadline)
		return false;
	piece_done(cl, p, p->timeout_err ? p->timeout_err : -ETIMEDOUT);
	return true;
}

/* RETRY pieces that are due: finished or routed again. */
static void run_retries(struct weft_cluster *cl)
{
	struct wf_pq q = cl->retry_q;
	struct wf_piece *p;

	cl->retry_q.head = cl->retry_q.tail = NULL;
	while ((p = pq_pop(&q))) {
		if (p->why == RT_REFUSED) {
			/* The refusal's error: -EACCES (key), -EDQUOT (the
			 * key's limits on that target). */
			piece_done(cl, p, p->timeout_err ? p->timeout_err : -EACCES);
			continue;
		}
		/* A deadline holds whatever the piece waits for (a backoff
		 * may end later than it). */
		if (p->why != RT_FINISH && expired(cl, p))
			continue;
		if (p->retry_at > cl->now) {
			pq_push(&cl->retry_q, p);
			continue;
		}
		if (p->io->vol->gone && p->op != WF_OP_FLUSH) {
			piece_done(cl, p, -ENOENT);
			continue;
		}
		if (p->op == WF_OP_FLUSH && p->why == RT_FINISH) {
			int t = wf_map_target_by_id(&cl->map, p->target);

			/* Its target left the map (nothing of ours there any
			 * more), or is marked down: then what it acknowledged
			 * is on the PGs' secondaries already, unless a write
			 * to a single-copy pool is not covered yet. */
			piece_done(cl, p, t < 0 || cl->conns[t]->wgen1 <=
				   cl->conns[t]->fgen ? 0 : -EHOSTDOWN);
			continue;
		}
		if (expired(cl, p))
			continue;
		route(cl, p);
	}
}

void wf_pieces_new_map(struct weft_cluster *cl)
{
	for (struct wf_piece *p = cl->retry_q.head; p; p = p->next)
		if (p->why == RT_MAP)
			p->retry_at = cl->now;
}

void wf_pieces_turn(struct weft_cluster *cl)
{
	if (cl->down)
		conns_down(cl);
	if (cl->retry_q.head)
		run_retries(cl);
	if (cl->now >= cl->next_sweep) {
		cl->next_sweep = cl->now + WF_SWEEP_MS;
		if (cl->inflight)
			sweep(cl);
		if (cl->down)
			conns_down(cl);
	}
}

int wf_pieces_sc_reap(struct weft_cluster *cl)
{
	struct wf_sc_cqe done[WF_POLL_BATCH];
	int n, total = 0;

	while ((n = wf_sc_reap(cl, done, WF_POLL_BATCH)) > 0) {
		for (int i = 0; i < n; i++) {
			struct wf_piece *p = &cl->pieces[(uint32_t)done[i].tag];

			if (p->state != PC_SC ||
			    p->gen != (uint32_t)(done[i].tag >> 32))
				continue;
			if (wf_sc_read_ok(cl, &p->sc, done[i].res, p->len))
				piece_done(cl, p, p->len);
			else
				piece_retry(cl, p, RT_VIA_TARGET, cl->now);
		}
		total += n;
	}
	return total;
}

int wf_pieces_timer_ms(const struct weft_cluster *cl)
{
	uint64_t t = UINT64_MAX;

	for (const struct wf_piece *p = cl->retry_q.head; p; p = p->next)
		if (p->retry_at < t)
			t = p->retry_at;
	if (cl->down)
		t = cl->now;
	if (cl->inflight && cl->next_sweep < t)
		t = cl->next_sweep;
	if (t == UINT64_MAX)
		return -1;
	return t > cl->now ? (int)(t - cl->now) : 0;
}
