/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connections and the request state machine (enum wf_tgt_rq_state).
 *
 * A connection is taken from the reactor's pool at accept: its ring of
 * slots, its request structs (one per slot) and its memory registrations
 * were all made at startup, so serving requests allocates nothing.
 *
 * Credits, per endpoint (sized in reactor.c when listening):
 *   receive: slots + 2.  A well-behaved initiator has at most one request
 *            per slot in flight; the HELLO needs one more.  A peer that
 *            sends more is held back by the fabric, not dropped.
 *   send:    2 * slots + WF_TGT_SPARE_SENDS.  A READ posts a data write
 *            and a reply, anything else a reply; the spares cover error
 *            replies to requests that name no valid slot (a connection
 *            sends at most WF_TGT_MAX_INVALID of those before it is
 *            closed).  When a post still finds no credit the request
 *            waits on the reactor's pending list.
 */
#include <endian.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ctl.h"
#include "target/target.h"


#define container_of(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

static void conn_release_check(struct wf_tgt_conn *c);
static void key_detach(struct wf_tgt_conn *c);
static void key_release(struct wf_tgt_req *q);

static uint32_t *closing_io_of(struct wf_tgt_conn *c)
{
	uint64_t h = c->client_id * 0x9e3779b97f4a7c15ull;

	return &c->r->t->closing_io[h >> 56 & (WF_TGT_CLIENT_HASH - 1)];
}

/* A connection of client_id closes with store I/O in flight: its client's
 * next HELLO, on whichever reactor, waits until that I/O is done. */
static void closing_io_get(struct wf_tgt_conn *c)
{
	if (c->counted || !c->store_inflight)
		return;
	c->counted = true;
	__atomic_add_fetch(closing_io_of(c), 1, __ATOMIC_ACQ_REL);
}

static void closing_io_put(struct wf_tgt_conn *c)
{
	c->counted = false;
	__atomic_sub_fetch(closing_io_of(c), 1, __ATOMIC_ACQ_REL);
}

/* Leaving CONN_HELLO (granted or closing). */
static void hello_leave(struct wf_tgt_conn *c)
{
	c->r->nhello--;
	if (c->held) {
		c->held = false;
		c->r->nheld--;
	}
}

void wf_tgt_conn_close(struct wf_tgt_conn *c, const char *why)
{
	if (c->state == CONN_CLOSING || c->state == CONN_FREE)
		return;
	if (why)
		wf_tgt_log("connection %u (client %llu, %s) closed: %s", c->idx,
			   (unsigned long long)c->client_id, c->peer, why);
	if (c->state == CONN_HELLO)
		hello_leave(c);
	key_detach(c);
	c->state = CONN_CLOSING;
	closing_io_get(c);
	if (c->ep && !c->gone)
		wf_ep_close(c->ep);
	conn_release_check(c);
}

/* Back to the pool once nothing refers to the slots any more. */
static void conn_release_check(struct wf_tgt_conn *c)
{
	struct wf_tgt_reactor *r = c->r;

	if (c->state != CONN_CLOSING || !c->gone || c->store_inflight ||
	    c->npending)
		return;
	wf_ep_destroy(c->ep);
	c->ep = NULL;
	free(c->put_buf);
	c->put_buf = NULL;
	c->put_got = c->put_total = 0;
	free(c->get_buf);
	c->get_buf = NULL;
	c->get_total = 0;
	free(c->perm);
	c->perm = NULL;
	c->nperm = 0;
	for (uint32_t i = 0; i < r->cfg->slots; i++) {
		key_release(&c->reqs[i]);
		c->reqs[i].state = RQ_FREE;
	}
	if (c->ku) {
		c->ku->refs--;
		c->ku = NULL;
	}
	c->state = CONN_FREE;
	c->next_free = r->free_conns;
	r->free_conns = c;
	WF_TGT_ADD(r->nconns, (uint32_t)-1);
	if (c->evicted) {
		c->evicted = false;
		r->evicting--;
	}
	/* A newcomer waits for the room an eviction made. */
	for (unsigned f = 0; r->free_conns && f < r->nfab; f++) {
		struct wf_listener *l = r->fab[f].accept_wait;

		if (l) {
			r->fab[f].accept_wait = NULL;
			wf_tgt_conn_accept(r, f, l);
		}
	}
}

/* A list of requests through their next (the pending list, the held
 * writes): append q, or put the list kept..kept_tail before the rest. */
static void list_add(struct wf_tgt_req **head, struct wf_tgt_req **tail,
		     struct wf_tgt_req *q)
{
	q->next = NULL;
	if (*tail)
		(*tail)->next = q;
	else
		*head = q;
	*tail = q;
}

static void list_front(struct wf_tgt_req **head, struct wf_tgt_req **tail,
		       struct wf_tgt_req *kept, struct wf_tgt_req *kept_tail)
{
	if (!kept)
		return;
	kept_tail->next = *head;
	if (!*head)
		*tail = kept_tail;
	*head = kept;
}

static void pend(struct wf_tgt_req *q)
{
	struct wf_tgt_reactor *r = q->conn->r;

	if (q->pending)
		return;
	q->pending = true;
	list_add(&r->pend_head, &r->pend_tail, q);
	q->conn->npending++;
}

/*
 * Move a request on from RQ_PUSH or RQ_REPLY as far as send credits allow.
 * Returns true when it is finished (RQ_FREE) or dropped with its conn.
 */
static bool rq_advance(struct wf_tgt_req *q)
{
	struct wf_tgt_conn *c = q->conn;
	struct wf_tgt_reactor *r = c->r;
	struct wf_reply_hdr h;
	struct wf_reply rep;
	int ret;

	if (c->state != CONN_LIVE) {
		q->state = RQ_FREE;
		return true;
	}
	if (q->state == RQ_PUSH) {
		ret = wf_write(c->ep, r->fab[c->fab].mrs[c->idx],
			       (uint64_t)q->slot * c->lim.slot_size, q->length,
			       &q->buf, 0, WR_DATA);
		if (ret == -EAGAIN)
			return false;
		if (ret) {
			/* The initiator named a buffer we cannot write. */
			q->state = RQ_FREE;
			wf_tgt_conn_close(c, "cannot write into the initiator's buffer");
			return true;
		}
		c->sends_out++;
		q->state = RQ_REPLY;
	}
	memset(&rep, 0, sizeof(rep));
	rep.status = q->status;
	rep.tag = q->tag;
	rep.epoch = r->map->epoch;
	rep.slot = q->slot;
	if (q->status == WF_WS_OK) {
		rep.length = q->length;        /* FLUSH: 0 */
		if (q->op == WF_OP_READ || q->op == WF_OP_CSUM)
			rep.data_crc = q->crc;
	}
	wf_reply_encode(&rep, &h);
	ret = wf_send(c->ep, &h, sizeof(h), WR_REPLY);
	if (ret == -EAGAIN)
		return false;
	q->state = RQ_FREE;
	if (ret) {
		wf_tgt_conn_close(c, "cannot send a reply");
		return true;
	}
	c->sends_out++;
	return true;
}

/* Bucket of a latency in ns (metrics.c: the bounds, in us). */
static unsigned lat_bucket(uint64_t ns)
{
	static const uint32_t us[WF_TGT_LAT_BUCKETS - 1] = {
		10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000,
		100000, 1000000,
	};
	unsigned b = 0;

	while (b < WF_TGT_LAT_BUCKETS - 1 && ns > (uint64_t)us[b] * 1000)
		b++;
	return b;
}

static void rq_finish(struct wf_tgt_req *q, uint16_t status)
{
	struct wf_tgt_stats *st = &q->conn->r->stats;
	unsigned s = status & ~WF_WS_DNR;

	key_release(q);
	WF_TGT_ADD(st->by_status[s < 16 ? s : 15], 1);
	if (q->t0 && !(q->flags & WF_REQ_REPL) &&
	    (q->op == WF_OP_READ || q->op == WF_OP_WRITE)) {
		uint64_t ns = wf_tgt_now_ns() - q->t0;
		unsigned w = q->op == WF_OP_WRITE;

		WF_TGT_ADD(st->lat[w][lat_bucket(ns)], 1);
		WF_TGT_ADD(st->lat_ns[w], ns);
	}
	q->t0 = 0;
	q->status = status;
	if (q->state != RQ_PUSH)
		q->state = RQ_REPLY;
	if (!rq_advance(q))
		pend(q);
}

unsigned wf_tgt_conn_run_pending(struct wf_tgt_reactor *r)
{
	struct wf_tgt_req *q = r->pend_head, *keep = NULL, *keep_tail = NULL;
	unsigned n = 0;

	r->pend_head = r->pend_tail = NULL;
	while (q) {
		struct wf_tgt_req *next = q->next;
		struct wf_tgt_conn *c = q->conn;

		q->pending = false;
		c->npending--;
		if (rq_advance(q)) {
			n++;
			conn_release_check(c);
		} else {
			/* Still no credit: keep the order. */
			q->pending = true;
			c->npending++;
			list_add(&keep, &keep_tail, q);
		}
		q = next;
	}
	/* Requests pended while we ran go behind the kept ones. */
	list_front(&r->pend_head, &r->pend_tail, keep, keep_tail);
	return n;
}

/* Store I/O (or a forward, or a wait on the order list) of c in flight:
 * the connection keeps its slots, the reactor's drain waits for it. */
static void io_hold(struct wf_tgt_conn *c)
{
	c->store_inflight++;
	WF_TGT_ADD(c->r->store_inflight, 1);
}

static void io_put(struct wf_tgt_conn *c)
{
	c->store_inflight--;
	WF_TGT_ADD(c->r->store_inflight, (uint32_t)-1);
	if (c->counted && !c->store_inflight)
		closing_io_put(c);
}

/* Answer q now (or drop it with its closing connection). */
static void finish_now(struct wf_tgt_req *q, uint16_t status)
{
	struct wf_tgt_conn *c = q->conn;

	rq_finish(q, status);
	conn_release_check(c);
}

/* ---- replication: order, parts, forwards ---------------------------- */

static void start_io(struct wf_tgt_conn *c, struct wf_tgt_req *q);

static bool overlaps(const struct wf_tgt_req *a, const struct wf_tgt_req *b)
{
	return a->volume == b->volume && a->offset < b->offset + b->length &&
	       b->offset < a->offset + a->length;
}

/* An earlier replicated write or discard on r->order overlaps q. */
static bool ordered_behind(const struct wf_tgt_req *q)
{
	for (const struct wf_tgt_req *e = q->ord_prev; e; e = e->ord_prev)
		if (overlaps(e, q))
			return true;
	return false;
}

static void order_add(struct wf_tgt_reactor *r, struct wf_tgt_req *q)
{
	q->ord_next = NULL;
	q->ord_prev = r->ord_tail;
	if (r->ord_tail)
		r->ord_tail->ord_next = q;
	else
		r->ord_head = q;
	r->ord_tail = q;
}

/* q is done on every replica: it leaves r->order, and requests that
 * waited only for it start, oldest first. */
static void order_del(struct wf_tgt_reactor *r, struct wf_tgt_req *q)
{
	struct wf_tgt_req *e;

	if (q->ord_prev)
		q->ord_prev->ord_next = q->ord_next;
	else
		r->ord_head = q->ord_next;
	if (q->ord_next)
		q->ord_next->ord_prev = q->ord_prev;
	else
		r->ord_tail = q->ord_prev;
	q->ord_prev = q->ord_next = NULL;
	/* From the head again after each start: a start that fails at once
	 * changes the list under us. */
restart:
	for (e = r->ord_head; e; e = e->ord_next) {
		if (e->state == RQ_ORDER && !ordered_behind(e)) {
			io_put(e->conn);        /* held while it waited */
			if (e->conn->recovery)
				wf_tgt_recover_resume(e);
			else
				start_io(e->conn, e);
			goto restart;
		}
	}
}

void wf_tgt_order_leave(struct wf_tgt_reactor *r, struct wf_tgt_req *q)
{
	order_del(r, q);
}

bool wf_tgt_order_enter(struct wf_tgt_reactor *r, struct wf_tgt_req *q)
{
	order_add(r, q);
	if (!ordered_behind(q))
		return true;
	q->state = RQ_ORDER;
	io_hold(q->conn);               /* as for clients: see start_io */
	return false;
}

/*
 * One part of a replicated request (its own store I/O, or a forward) is
 * done.  The reply goes when all are: OK only if every part is, so an
 * acknowledged write is on every acting replica.  The first failure
 * decides the answer: our own store's status as it is (a device error is
 * not hidden), a forward's DNR status as it is (a full device), any other
 * forward failure (a replica unreachable, busy, of another epoch) as
 * DEGRADED, which the client retries.
 */
static void part_done(struct wf_tgt_req *q, uint16_t status, bool fwd)
{
	struct wf_tgt_conn *c = q->conn;

	if (status != WF_WS_OK && q->worst == WF_WS_OK)
		q->worst = !fwd || (status & WF_WS_DNR) ? status : WF_WS_DEGRADED;
	if (--q->parts)
		return;
	if (q->nfwd)
		order_del(c->r, q);
	if (c->recovery) {
		wf_tgt_recover_op_done(q, q->worst);
		return;
	}
	q->state = RQ_STORE;
	finish_now(q, q->worst);
}

void wf_tgt_fwd_done(struct wf_tgt_fwd *f, uint16_t status)
{
	struct wf_tgt_req *q = f->q;
	struct wf_tgt_conn *c = q->conn;


	/* The scrub (scrub.c) reads each member's own answer. */
	f->status = status;
	/* Held as store I/O of the connection: its ring slot is the
	 * forward's source until now. */
	io_put(c);
	part_done(q, status, true);
}

void wf_tgt_forward(struct wf_tgt_reactor *r, struct wf_tgt_req *q)
{
	struct wf_tgt_conn *c = q->conn;

	q->state = RQ_FORWARD;
	q->parts = (uint8_t)q->nfwd;
	q->worst = WF_WS_OK;
	for (unsigned i = 0; i < q->nfwd; i++) {
		q->fwd[i].q = q;
		io_hold(c);
		wf_tgt_fwd_start(r, &q->fwd[i], q->secondaries[i]);
	}
}

static void store_done(struct wf_store_req *sreq, int res);

/*
 * --fault-exit-after-local-write (tests only; off unless asked for): the
 * own write of a replicated client write just completed, its answer has
 * not gone: at the Nth, die the way a crash does, with no reply, no
 * drain, no clean close.
 */
static void fault_point(struct wf_tgt_reactor *r)
{
	if (__atomic_add_fetch(&r->t->fault_writes, 1, __ATOMIC_RELAXED) !=
	    r->cfg->fault_after_writes)
		return;
	wf_tgt_log("fault injected: killed after the local write of replicated "
		   "write %u, before its answer", r->cfg->fault_after_writes);
	raise(SIGKILL);
}

void wf_tgt_store_req_init(struct wf_tgt_req *q)
{
	wf_store_req_init(&q->sreq, store_done, q);
}

static void store_done(struct wf_store_req *sreq, int res)
{
	struct wf_tgt_req *q = container_of(sreq, struct wf_tgt_req, sreq);
	struct wf_tgt_conn *c = q->conn;
	struct wf_tgt_reactor *r = c->r;

	if (!res && q->fua_flush) {
		/* DISCARD | FUA: a partial discard is durable only after a
		 * flush (docs/store.md). */
		q->fua_flush = false;
		if (!wf_store_flush(r->store, &q->sreq))
			return;
		res = -EIO;
	}
	io_put(c);
	if (res)
		WF_TGT_ADD(r->stats.errors, 1);
	if (q->state == RQ_FORWARD) {
		if (!res && !c->recovery && q->op == WF_OP_WRITE &&
		    r->cfg->fault_after_writes)
			fault_point(r);
		part_done(q, wf_wire_status_from_errno(res), false);
		return;
	}
	if (c->recovery) {
		/* A recovery copy's read: the forwards go next (recover.c). */
		wf_tgt_recover_op_done(q, wf_wire_status_from_errno(res));
		return;
	}
	if (c->state != CONN_LIVE) {
		key_release(q);
		q->state = RQ_FREE;
		conn_release_check(c);
		return;
	}
	if (!res && q->op == WF_OP_CSUM)
		q->crc = wf_crc32c(0, c->ring + (size_t)q->slot * c->lim.slot_size,
				   q->length);
	if (!res && q->op == WF_OP_READ) {
		if (q->flags & WF_REQ_CRC)
			q->crc = wf_crc32c(0, c->ring + (size_t)q->slot * c->lim.slot_size,
					   q->length);
		q->state = RQ_PUSH;
	}
	rq_finish(q, wf_wire_status_from_errno(res));
}

/* An error reply for a request that holds no usable slot. */
static void send_error(struct wf_tgt_conn *c, const struct wf_req *req,
		       uint16_t status)
{
	struct wf_reply_hdr h;
	struct wf_reply rep = {
		.status = status, .tag = req->tag, .epoch = c->r->map->epoch,
		.slot = req->slot,
	};

	wf_reply_encode(&rep, &h);
	if (wf_send(c->ep, &h, sizeof(h), WR_ERRREPLY))
		wf_tgt_conn_close(c, "no send credit for an error reply");
	else
		c->sends_out++;
}

static void start_io(struct wf_tgt_conn *c, struct wf_tgt_req *q)
{
	struct wf_tgt_reactor *r = c->r;
	char *slot = c->ring + (size_t)q->slot * c->lim.slot_size;
	int bi = (int)c->idx, ret;

	if (q->nfwd && q->state == RQ_ORDER && q->epoch != r->map->epoch) {
		/* It waited across a map change: its members were of the
		 * old epoch.  The client retries in the new one. */
		order_del(r, q);
		q->state = RQ_STORE;
		finish_now(q, WF_WS_DEGRADED);
		return;
	}
	if (q->nfwd && q->state != RQ_ORDER) {
		/* Replicated: behind any earlier overlapping write or
		 * discard, so every replica applies them in one order. */
		order_add(r, q);
		if (ordered_behind(q)) {
			/* Held as the connection's store I/O while it
			 * waits: the slot holds its payload. */
			q->state = RQ_ORDER;
			io_hold(c);
			return;
		}
	}
	wf_store_req_init(&q->sreq, store_done, q);
	switch (q->op) {
	case WF_OP_READ:
		WF_TGT_ADD(r->stats.reads, 1);
		r->stats.read_bytes += q->length;
		ret = wf_store_read(r->store, &q->sreq, q->volume, q->offset,
				    q->length, slot, bi);
		break;
	case WF_OP_CSUM:
		/* A primary's scrub (scrub.c): read into the slot, answer
		 * its CRC32C; the data stays here. */
		r->stats.csums++;
		ret = wf_store_read(r->store, &q->sreq, q->volume, q->offset,
				    q->length, slot, bi);
		break;
	case WF_OP_WRITE:
		WF_TGT_ADD(r->stats.writes, 1);
		if (q->flags & WF_REQ_FUA)
			WF_TGT_ADD(r->stats.fua_writes, 1);
		r->stats.write_bytes += q->length;
		if ((q->flags & WF_REQ_CRC) &&
		    wf_crc32c(0, slot, q->length) != q->crc) {
			if (q->nfwd)
				order_del(r, q);
			finish_now(q, WF_WS_CRC);
			return;
		}
		ret = wf_store_write(r->store, &q->sreq, q->volume, q->offset,
				     q->length, slot, bi,
				     (q->flags & WF_REQ_FUA) ? WF_STORE_FUA : 0);
		break;
	case WF_OP_FLUSH:
		WF_TGT_ADD(r->stats.flushes, 1);
		ret = wf_store_flush(r->store, &q->sreq);
		break;
	default:
		r->stats.discards++;
		q->fua_flush = q->flags & WF_REQ_FUA;
		ret = wf_store_discard(r->store, &q->sreq, q->volume, q->offset,
				       q->length);
		break;
	}
	if (ret) {
		if (q->nfwd)
			order_del(r, q);
		finish_now(q, wf_wire_status_from_errno(ret));
		return;
	}
	q->state = RQ_STORE;
	io_hold(c);
	if (!q->nfwd)
		return;
	/* In parallel with our own write: the same slot to every
	 * secondary (peer.c).  Each forward counts as store I/O of the
	 * connection, which keeps the slot until it is done. */
	q->state = RQ_FORWARD;
	q->parts = (uint8_t)(1 + q->nfwd);
	q->worst = WF_WS_OK;
	for (unsigned i = 0; i < q->nfwd; i++) {
		struct wf_tgt_fwd *f = &q->fwd[i];

		f->q = q;
		io_hold(c);
		wf_tgt_fwd_start(r, f, q->secondaries[i]);
	}
}

/* ---- limits per key: requests in flight --------------------------- */
/*
 * --max-inflight-per-key (limits.c admits a key's connections): a key's
 * requests in service at once are counted; the others wait in arrival
 * order, holding the slot the client already filled, so the client is
 * slowed down by its own credits, never failed.  A request costs two
 * counter updates and no search.
 */

/* c closes: its connection and slots leave the key's count, and its
 * requests still waiting for the key go (their slots with it). */
static void key_detach(struct wf_tgt_conn *c)
{
	struct wf_tgt_keyuse *k = c->ku;
	struct wf_tgt_req **pp, *q;

	if (!k || !c->ku_slots)
		return;
	k->conns--;
	k->slots -= c->ku_slots;
	c->ku_slots = 0;
	k->wait_tail = NULL;
	for (pp = &k->wait_head; (q = *pp);) {
		if (q->conn != c) {
			k->wait_tail = q;
			pp = &q->key_next;
			continue;
		}
		*pp = q->key_next;
		q->key_next = NULL;
		q->state = RQ_FREE;
		io_put(c);
	}
}

static void start_or_hold(struct wf_tgt_conn *c, struct wf_tgt_req *q);

/* Room for q in its key's requests in service: counted, true; else q
 * waits on the key's list (false). */
static bool key_take(struct wf_tgt_conn *c, struct wf_tgt_req *q)
{
	struct wf_tgt_keyuse *k = c->ku;

	if (!k->wait_head && k->inflight < c->r->cfg->max_inflight_per_key) {
		k->inflight++;
		q->key_held = true;
		return true;
	}
	q->state = RQ_KEYWAIT;
	q->key_next = NULL;
	if (k->wait_tail)
		k->wait_tail->key_next = q;
	else
		k->wait_head = q;
	k->wait_tail = q;
	/* Held like store I/O: the slot holds its payload, and the drain
	 * and the reconnect fence wait for it. */
	io_hold(c);
	WF_TGT_ADD(c->r->stats.key_waits, 1);
	return false;
}

/* Start the key's waiting requests while it has room, oldest first.  A
 * start may finish a request at once (and release it): the loop, not a
 * nested call, picks up the room that makes. */
static void key_kick(struct wf_tgt_reactor *r, struct wf_tgt_keyuse *k)
{
	struct wf_tgt_req *q;

	if (k->kicking)
		return;
	k->kicking = true;
	while ((q = k->wait_head) && k->inflight < r->cfg->max_inflight_per_key) {
		struct wf_tgt_conn *c = q->conn;

		k->wait_head = q->key_next;
		if (!k->wait_head)
			k->wait_tail = NULL;
		q->key_next = NULL;
		io_put(c);
		k->inflight++;
		q->key_held = true;
		q->state = RQ_STORE;
		if (q->epoch != r->map->epoch || r->phase != PH_RUN) {
			/* Validated in another epoch (its primary and members
			 * may have changed), or stopping: the client retries. */
			finish_now(q, WF_WS_BUSY);
			continue;
		}
		start_or_hold(c, q);
	}
	k->kicking = false;
}

/* q is answered or dropped: its place in the key's count goes to the
 * next waiting request. */
static void key_release(struct wf_tgt_req *q)
{
	struct wf_tgt_keyuse *k = q->conn->ku;

	if (!q->key_held)
		return;
	q->key_held = false;
	k->inflight--;
	key_kick(q->conn->r, k);
}

/*
 * Store requests of an earlier connection of the same client still in
 * flight?  The client resends unreplied requests on its new connection
 * (or, with several reactors, on another live one); an old write landing
 * after a newer acknowledged one would roll the block back, so the new
 * connection gets its GRANT, and a write or discard of that client goes
 * on, only once they are done.
 */
static bool old_io(struct wf_tgt_conn *c)
{
	/* Counted per hash of the client id across all reactors (a client
	 * reaches several); a collision only delays a GRANT a little. */
	return __atomic_load_n(closing_io_of(c), __ATOMIC_ACQUIRE) != 0;
}

/* ---- writes held for read leases (lease.c) -------------------------- */

/* q waits on r->hold_head (no allocation: the list runs through the
 * request's own next, free while it is not pending). */
static void hold_add(struct wf_tgt_reactor *r, struct wf_tgt_req *q)
{
	q->state = RQ_HELD;
	list_add(&r->hold_head, &r->hold_tail, q);
	io_hold(q->conn);       /* its slot holds the payload */
	WF_TGT_ADD(r->stats.writes_held, 1);
}

/* A write to a PG whose former primary may still hold a lease we
 * granted waits until it lapsed (one compare unless a map load made
 * holds); anything else starts. */
static void start_or_hold(struct wf_tgt_conn *c, struct wf_tgt_req *q)
{
	struct wf_tgt_reactor *r = c->r;

	if ((q->op == WF_OP_WRITE || q->op == WF_OP_DISCARD) &&
	    r->hold_max > q->t0 && wf_tgt_hold_until(r, q->pool, q->pg) > q->t0) {
		/* A release this reactor has not looked at yet may have
		 * ended the hold. */
		wf_tgt_hold_released(r);
		if (wf_tgt_hold_until(r, q->pool, q->pg) > q->t0) {
			hold_add(r, q);
			return;
		}
	}
	start_io(c, q);
}

unsigned wf_tgt_hold_run(struct wf_tgt_reactor *r, uint64_t now, unsigned *started)
{
	struct wf_tgt_req *q = r->hold_head, *keep = NULL, *keep_tail = NULL;
	unsigned n = 0;

	r->hold_head = r->hold_tail = NULL;
	while (q) {
		struct wf_tgt_req *next = q->next;
		struct wf_tgt_conn *c = q->conn;

		if (r->phase == PH_RUN && c->state == CONN_LIVE &&
		    q->epoch == r->map->epoch &&
		    wf_tgt_hold_until(r, q->pool, q->pg) > now) {
			list_add(&keep, &keep_tail, q);
			q = next;
			continue;
		}
		n++;
		io_put(c);
		q->state = RQ_STORE;
		if (r->phase != PH_RUN)
			/* Stopping: the client tries again elsewhere. */
			finish_now(q, WF_WS_BUSY);
		else if (c->state != CONN_LIVE || q->epoch != r->map->epoch)
			/* Validated in an epoch now gone: the client
			 * retries in the new one. */
			finish_now(q, WF_WS_DEGRADED);
		else {
			start_io(c, q);
			if (started)
				(*started)++;
		}
		q = next;
	}
	/* Held while we ran (none: start_io holds nothing) go behind. */
	list_front(&r->hold_head, &r->hold_tail, keep, keep_tail);
	return n;
}

static void on_request(struct wf_tgt_conn *c, const void *msg, uint32_t len)
{
	struct wf_tgt_reactor *r = c->r;
	struct wf_tgt_parsed p;
	struct wf_tgt_req *q;
	int v;

	v = wf_tgt_req_parse(msg, len, &c->lim, r->map, &p);
	if (v == WF_TGT_NEWER) {
		/* At most one request-driven reload per 100 ms, so a peer
		 * with a bogus epoch cannot make us parse the file for every
		 * request. */
		uint64_t now = wf_tgt_now_ns();

		if (now - r->last_reload > 100000000ull) {
			r->last_reload = now;
			wf_tgt_reload(r, "request with a newer epoch");
		}
		v = wf_tgt_req_parse(msg, len, &c->lim, r->map, &p);
		if (v == WF_TGT_NEWER)
			v = WF_TGT_REJECT;      /* p.status is BUSY */
	}
	if (v == WF_TGT_MALFORMED) {
		r->stats.closed_bad++;
		wf_tgt_conn_close(c, wf_tgt_reason_name(p.reason));
		return;
	}
	if (v == WF_TGT_OK && r->phase != PH_RUN) {
		v = WF_TGT_REJECT;
		p.status = WF_WS_BUSY;
	}
	/* What only targets send (forwards, CSUMs) from a key that is not
	 * a target's: answered ACCESS, then the connection goes. */
	if (v != WF_TGT_MALFORMED && !wf_tgt_peer_op_ok(c, p.req.opcode,
							 p.req.flags)) {
		if (p.slot_ok)
			send_error(c, &p.req, WF_WS_ACCESS | WF_WS_DNR);
		wf_tgt_peer_refuse(c, p.req.opcode, NULL, 0);
		return;
	}
	/* The key's access to the volume: one load (auth.c builds the
	 * table at the GRANT and at every map). */
	if (v == WF_TGT_OK && !wf_tgt_access_ok(c, p.req.opcode, p.vol_idx)) {
		v = WF_TGT_REJECT;
		p.status = WF_WS_ACCESS | WF_WS_DNR;
		WF_TGT_ADD(r->stats.access_denied, 1);
	}
	/*
	 * The reconnect fence for requests: a client with one connection
	 * per reactor may resend what a closed connection carried on
	 * another, still live one (libweft does while a reactor connection
	 * is down), where no HELLO is held.  A write or discard must not
	 * overtake the closed connection's store I/O (which could then land
	 * after a newer acknowledged write): BUSY until that is done.  One
	 * relaxed load of a line written only when connections close.
	 */
	if (v == WF_TGT_OK && (p.req.opcode == WF_OP_WRITE ||
			       p.req.opcode == WF_OP_DISCARD) && old_io(c)) {
		v = WF_TGT_REJECT;
		p.status = WF_WS_BUSY;
	}
	if (v == WF_TGT_REJECT && (p.status & ~WF_WS_DNR) == WF_WS_INVALID) {
		r->stats.invalid++;
		if (++c->invalid > WF_TGT_MAX_INVALID) {
			r->stats.closed_bad++;
			wf_tgt_conn_close(c, "too many invalid requests");
			return;
		}
	}
	if (!p.slot_ok) {
		send_error(c, &p.req, p.status);
		return;
	}
	q = &c->reqs[p.req.slot];
	if (q->state != RQ_FREE) {
		/* Reusing a slot before its reply: the peer's payload may
		 * already have overwritten data a request in flight uses. */
		r->stats.closed_bad++;
		wf_tgt_conn_close(c, "request names a slot that is in use");
		return;
	}
	q->tag = p.req.tag;
	q->slot = p.req.slot;
	q->nfwd = 0;
	q->log_seq = 0;
	q->op = p.req.opcode;
	q->flags = p.req.flags;
	q->length = p.req.length;
	q->crc = 0;
	if (v == WF_TGT_REJECT) {
		WF_TGT_ADD(r->stats.errors, 1);
		rq_finish(q, p.status);
		return;
	}
	q->volume = p.req.volume;
	q->offset = p.req.offset;
	WF_BUF_COPY(q->buf, p.req.buf);
	q->crc = p.req.data_crc;
	q->t0 = wf_tgt_now_ns();
	q->nfwd = p.nsec;
	q->epoch = r->map->epoch;
	memcpy(q->secondaries, p.secondaries, p.nsec * sizeof(*p.secondaries));
	if (q->nfwd && r->t && r->t->n > 1 &&
	    wf_extent_reactor(q->volume, (uint32_t)(q->offset / r->map->extent_size),
			      r->t->n) != r->idx) {
		/* Replicated writes are ordered on the extent's owner
		 * reactor only (its order list): elsewhere BUSY, and the
		 * client sends it to the owner (it falls back to reactor 0
		 * only for a short while after the owner refused it). */
		finish_now(q, WF_WS_BUSY);
		return;
	}
	q->pool = p.pool;
	q->pg = p.pg;
	/* Read leases (lease.c): a primary reads only while every other
	 * acting member confirms our epoch.  Without: DEGRADED (the client
	 * looks at its map and retries), and reactor 0 asks at once. */
	if (q->op == WF_OP_READ && p.nothers && r->lease_ms &&
	    !wf_tgt_lease_ok(r, p.others, p.nothers, q->t0)) {
		WF_TGT_ADD(r->stats.reads_unleased, 1);
		wf_tgt_lease_urge(r);
		finish_now(q, WF_WS_DEGRADED);
		return;
	}
	/* A write or discard at its PG's primary, or forwarded to a member
	 * (WF_REQ_REPL): logged for members that come back (pglog.c).
	 * Logged before any wait (its key's, a lease's): those start it
	 * without coming back here, and a waiting request counts as in
	 * flight. */
	if (q->op == WF_OP_WRITE || q->op == WF_OP_DISCARD)
		wf_tgt_pglog_add(r, p.vol_idx, q);
	if (c->ku && r->cfg->max_inflight_per_key && !key_take(c, q))
		return;         /* waits for one of its key's requests */
	start_or_hold(c, q);
}

void wf_tgt_grant_refuse(struct wf_tgt_conn *c, uint16_t status)
{
	struct wf_grant g = { .status = status };
	struct wf_grant_hdr h;

	g.epoch = c->r->map->epoch;
	g.target_id = c->r->cfg->id;
	wf_grant_encode(&g, &h);
	if (!wf_send(c->ep, &h, sizeof(h), WR_GRANT))
		c->sends_out++;
}

static void grant(struct wf_tgt_conn *c)
{
	struct wf_tgt_reactor *r = c->r;
	struct wf_grant_hdr h;
	struct wf_grant g;
	struct wf_rkey ring;
	uint32_t n;
	int ret;

	memset(&g, 0, sizeof(g));
	g.epoch = r->map->epoch;
	g.target_id = r->cfg->id;
	if (r->phase != PH_RUN) {
		wf_tgt_grant_refuse(c, WF_WS_BUSY);
		wf_tgt_conn_close(c, NULL);
		return;
	}
	if (wf_tgt_access_build(c)) {
		wf_tgt_conn_close(c, "out of memory for its access table");
		return;
	}
	n = c->want_slots < r->cfg->slots ? c->want_slots : r->cfg->slots;
	if (!wf_tgt_key_admit(c, &n))
		return;
	c->lim.slot_count = n;
	c->lim.slot_size = r->cfg->slot_size;
	g.slot_count = n;
	g.slot_size = r->cfg->slot_size;
	g.reactors = r->t->n;
	/* Another target's link that reads the word: what we understand. */
	if (WF_LINK_READS_FEATURES(c->client_id) && !r->cfg->fault_no_lease)
		g.features = WF_FEAT_LEASE | WF_FEAT_RELEASE;
	/* Only this connection's peer may address its ring, whatever keys
	 * others learn.  Before the rkey: over verbs binding changes it (a
	 * memory window's key; docs/fabric.md). */
	ret = wf_mr_bind(r->fab[c->fab].mrs[c->idx], c->ep);
	if (ret == -EOPNOTSUPP && !r->fab[c->fab].unbound_said) {
		wf_tgt_log("reactor %u: the device cannot bind a ring to one "
			   "connection (no type 2B memory windows): any peer that "
			   "learns a ring's key can write it", r->idx);
		r->fab[c->fab].unbound_said = true;
	}
	if (ret && ret != -EOPNOTSUPP) {
		wf_tgt_conn_close(c, "cannot bind the ring");
		return;
	}
	ret = wf_mr_rkey(r->fab[c->fab].mrs[c->idx], c->ep, 0,
			 n * r->cfg->slot_size, &ring);
	if (ret) {
		wf_tgt_conn_close(c, "cannot describe the ring");
		return;
	}
	WF_BUF_COPY(g.ring, ring);
	wf_grant_encode(&g, &h);
	ret = wf_send(c->ep, &h, sizeof(h), WR_GRANT);
	if (ret) {
		wf_tgt_conn_close(c, "cannot send the GRANT");
		return;
	}
	c->sends_out++;
	hello_leave(c);
	c->state = CONN_LIVE;
}

static void on_hello(struct wf_tgt_conn *c, const void *msg, uint32_t len)
{
	struct wf_tgt_reactor *r = c->r;
	struct wf_hello he;
	uint32_t reason = 0;

	if (c->held || len != sizeof(struct wf_hello_hdr) ||
	    wf_hello_decode(msg, len, &he, &reason)) {
		r->stats.closed_bad++;
		wf_tgt_conn_close(c, c->held ? "message before the GRANT" :
				  "bad HELLO");
		return;
	}
	if (he.epoch > r->map->epoch) {
		/* Gated like request-driven reloads: a peer with a bogus
		 * epoch cannot make us parse the file for every HELLO. */
		uint64_t now = wf_tgt_now_ns();

		if (now - r->last_reload > 100000000ull) {
			r->last_reload = now;
			wf_tgt_reload(r, "HELLO with a newer epoch");
		}
	}
	c->client_id = he.client_id;
	c->want_slots = he.want_slots;
	/* A client has one connection per reactor: a HELLO from a client that
	 * still has a live one here means that one is dead to the client (it
	 * reconnected before we noticed).  Close it now, so that its store
	 * I/O still in flight holds this GRANT back (old_io) and an old
	 * write cannot land after a newer one sent on this connection. */
	for (uint32_t i = 0; i < r->cfg->max_conns; i++) {
		struct wf_tgt_conn *o = &r->conns[i];

		if (o != c && o->state == CONN_LIVE && o->client_id == c->client_id)
			wf_tgt_conn_close(o, "superseded by a new connection of "
					  "the same client");
	}
	if (r->phase == PH_RUN && old_io(c)) {
		wf_tgt_log("connection %u (client %llu): GRANT held until an "
			   "earlier connection's store I/O is done", c->idx,
			   (unsigned long long)c->client_id);
		c->held = true;
		r->nheld++;
		return;
	}
	grant(c);
}

void wf_tgt_conn_run_held(struct wf_tgt_reactor *r)
{
	for (uint32_t i = 0; r->nheld && i < r->cfg->max_conns; i++) {
		struct wf_tgt_conn *c = &r->conns[i];

		if (c->state == CONN_HELLO && c->held &&
		    (r->phase != PH_RUN || !old_io(c)))
			grant(c);
	}
}

static void on_msg(struct wf_tgt_conn *c, const void *msg, uint32_t len)
{
	int op;

	/* Authentication first: nothing else is served on a connection that
	 * has not proved its key where keys are required (auth.c). */
	if (c->state == CONN_HELLO) {
		op = wf_wire_peek(msg, len, NULL);
		if (op == WF_OP_AUTH) {
			wf_tgt_auth_msg(c, msg, len);
			return;
		}
		if (!wf_tgt_auth_gate(c, op, msg, len))
			return;
	}

	if ((c->state == CONN_HELLO || c->state == CONN_LIVE) &&
	    wf_wire_peek(msg, len, NULL) == WF_OP_STATUS) {
		wf_tgt_conn_on_status(c, msg, len);
		return;
	}
	if ((c->state == CONN_HELLO || c->state == CONN_LIVE) &&
	    wf_wire_peek(msg, len, NULL) == WF_OP_MAP_PUT) {
		if (!wf_tgt_peer_op_ok(c, WF_OP_MAP_PUT, 0)) {
			wf_tgt_peer_refuse(c, WF_OP_MAP_PUT, msg, len);
			return;
		}
		wf_tgt_map_put(c, msg, len);
		return;
	}
	if (c->state == CONN_HELLO) {
		on_hello(c, msg, len);
		return;
	}
	if (c->state != CONN_LIVE)
		return;         /* closing: nothing more is served */
	/* Stopping: requests still get their BUSY answer (on_request), and
	 * the connections stay open until their peers have been quiet for
	 * a moment (stop_step), so nothing a peer sent before it saw the
	 * close goes unanswered behind a reset. */
	if (c->r->phase != PH_RUN)
		c->r->drain_rx_ns = wf_tgt_now_ns();
	op = wf_wire_peek(msg, len, NULL);
	if (wf_wire_op_is_req(op)) {
		on_request(c, msg, len);
		return;
	}
	/* Another target's link: read leases, pulling our map (lease.c).
	 * Standing in for a build before them: unknown, as there. */
	if ((op == WF_OP_LEASE || op == WF_OP_MAP_GET) && c->r->cfg->fault_no_lease)
		op = 0;
	if ((op == WF_OP_LEASE || op == WF_OP_MAP_GET) &&
	    !wf_tgt_peer_op_ok(c, op, 0)) {
		wf_tgt_peer_refuse(c, op, msg, len);
		return;
	}
	if (op == WF_OP_LEASE) {
		wf_tgt_lease_ask(c, msg, len);
		return;
	}
	if (op == WF_OP_MAP_GET) {
		wf_tgt_map_get(c, msg, len);
		return;
	}
	c->r->stats.closed_bad++;
	wf_tgt_conn_close(c, op < 0 ? "not a weft message" : "unexpected message");
}

void wf_tgt_conn_cqe(struct wf_tgt_reactor *r, const struct wf_cqe *e)
{
	struct wf_tgt_conn *c = e->ep ? wf_ep_user(e->ep) : NULL;

	if (!c)
		return;
	switch (e->op) {
	case WF_CQE_RECV_MSG:
		c->active = true;
		on_msg(c, e->msg, e->len);
		break;
	case WF_CQE_RECV_IMM:
		/* Not part of the protocol: payloads come by plain write. */
		r->stats.closed_bad++;
		wf_tgt_conn_close(c, "unexpected write-with-immediate");
		break;
	case WF_CQE_SEND:
	case WF_CQE_WRITE:
	case WF_CQE_WRITE_IMM:
	case WF_CQE_READ:
		c->active = true;
		if (c->sends_out)
			c->sends_out--;
		if (e->status && c->state == CONN_LIVE)
			wf_tgt_conn_close(c, "send failed");
		break;
	case WF_CQE_DISCONNECT:
		c->gone = true;
		wf_tgt_auth_gone(c);
		if (c->state == CONN_HELLO)
			hello_leave(c);
		key_detach(c);
		c->state = CONN_CLOSING;
		closing_io_get(c);
		conn_release_check(c);
		break;
	default:
		break;
	}
}
