/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Peer links: this target as a client of the other targets of the map, to
 * forward replica writes (docs/replication.md).  Each reactor has one link
 * per other target (struct wf_tgt_peer, made at map load, connected on
 * first use) to that target's reactor 0, which hands each request to the
 * extent's owner reactor like any other.  A link speaks the initiator's
 * protocol: HELLO, GRANT of a staging ring, then requests that each hold
 * a slot of that ring until their reply.
 *
 * A link (enum wf_tgt_peer_state):
 *
 *   IDLE --connect started--> CONNECTING --connected, HELLO--> HELLO
 *   HELLO --GRANT--> LIVE
 *   CONNECTING --failed, timeout--> IDLE (after a backoff)
 *   HELLO, LIVE --error, timeout--> CLOSING --DISCONNECT--> IDLE
 *
 * A forward (struct wf_tgt_fwd, embedded in the client's request, enum
 * wf_tgt_fwd_state):
 *
 *   IDLE --wf_tgt_fwd_start--> WAIT (no grant or no free slot yet)
 *   WAIT --slot--> SENT (payload written from the request's own slot with a
 *                  one-sided write, then the header: no CPU copy)
 *   SENT --reply, our ops done--> done      SENT --reply--> ANSWERED
 *   ANSWERED --our ops done--> done         any --link down--> done (failed)
 *   done: wf_tgt_fwd_done(q, status) in conn.c, back to IDLE
 *
 * The payload's source is the client connection's ring slot: the request
 * holds that slot until every forward is done, so the memory cannot be
 * reused under a write in flight.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "target/target.h"

/* wr_ids of our posts on a link: kind in the low byte, slot above. */
enum { PWR_HELLO = 1, PWR_DATA, PWR_REQ };
#define PWR(kind, slot) ((uint64_t)(slot) << 8 | (kind))

/*
 * Connects do not block the reactor (wf_connect_start: the handshake
 * completes through the reactor's poll, like any other completion), so two
 * targets that connect to each other at the same moment both go on
 * serving and both links come up.  Over verbs the fabric still connects
 * synchronously, bounded by this (docs/fabric.md).
 */
#define PEER_CONNECT_MS   2000u
#define PEER_HELLO_MS     2000u     /* GRANT within this, or close */
#define PEER_FWD_MS       4000u     /* a forward unanswered this long
                                     * closes the link (the secondary is
                                     * frozen or gone); below libweft's
                                     * default request timeout, so the
                                     * client gets DEGRADED and retries */
#define PEER_BACKOFF_MS   50u       /* + up to 200 ms at random */

static uint64_t ms_ns(unsigned ms)
{
	return (uint64_t)ms * 1000000ull;
}

static uint64_t backoff_ns(struct wf_tgt_peer *p)
{
	/* xorshift on the link's own state: different on each side */
	uint64_t x = wf_tgt_now_ns() ^ (uint64_t)(uintptr_t)p ^ p->fails;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return ms_ns(PEER_BACKOFF_MS) + x % ms_ns(200);
}

/* Every forward of the link ends with status; the link goes IDLE. */
static void fail_all(struct wf_tgt_peer *p, uint16_t status)
{
	struct wf_tgt_fwd *f;

	for (uint32_t s = 0; s < WF_TGT_MAX_SLOTS; s++) {
		f = p->slot_fwd[s];
		if (!f)
			continue;
		p->slot_fwd[s] = NULL;
		f->state = FWD_IDLE;
		wf_tgt_fwd_done(f, status);
	}
	while ((f = p->wait_head)) {
		p->wait_head = f->next;
		f->next = NULL;
		f->state = FWD_IDLE;
		wf_tgt_fwd_done(f, status);
	}
	p->wait_tail = NULL;
	p->nfree = 0;
	memset(p->slot_free, 0, sizeof(p->slot_free));
}

static void peer_close(struct wf_tgt_peer *p, const char *why)
{
	if (p->state == PEER_IDLE || p->state == PEER_CLOSING)
		return;
	if (p->state == PEER_CONNECTING) {
		/* No connection to close: abandon the attempt. */
		wf_ep_destroy(p->ep);
		p->ep = NULL;
		p->state = PEER_IDLE;
		p->retry_at = wf_tgt_now_ns() + backoff_ns(p);
		fail_all(p, WF_WS_DEGRADED);
		return;
	}
	if (why)
		wf_tgt_log("reactor %u: link to target %u (%s) closed: %s",
			   p->r->idx, p->target_id, p->addr, why);
	p->state = PEER_CLOSING;
	if (wf_ep_close(p->ep)) {
		/* Cannot even start closing: tear it down now. */
		wf_ep_destroy(p->ep);
		p->ep = NULL;
		p->state = PEER_IDLE;
		p->retry_at = wf_tgt_now_ns() + backoff_ns(p);
		fail_all(p, WF_WS_DEGRADED);
	}
}

/* The connect failed (ret): the link waits a backoff in IDLE. */
static void connect_failed(struct wf_tgt_peer *p, int ret)
{
	struct wf_tgt_reactor *r = p->r;

	p->ep = NULL;
	p->state = PEER_IDLE;
	if (!p->fails++)
		wf_tgt_log("reactor %u: cannot reach target %u at %s: %s",
			   r->idx, p->target_id, p->addr, strerror(-ret));
	p->retry_at = wf_tgt_now_ns() + backoff_ns(p);
}

/* A client id no initiator draws (libweft's are random with the low bit
 * set): the top bit, the target and the reactor. */
static uint64_t link_client_id(const struct wf_tgt_reactor *r)
{
	/* WF_LINK_FEATURES: we read the GRANT's features (a build before
	 * them never set it, and so is never sent the word). */
	return WF_LINK_ID | (uint64_t)r->cfg->id << 16 | r->idx << 1 |
	       (r->cfg->fault_no_lease ? 0 : WF_LINK_FEATURES);
}

/* Connected: the HELLO goes; 0 or -errno (the link is then IDLE). */
static int send_hello(struct wf_tgt_peer *p)
{
	struct wf_tgt_reactor *r = p->r;
	struct wf_hello h = {
		.client_id = link_client_id(r),
		.epoch = r->map->epoch,
		.want_slots = r->cfg->slots,
		.max_io = r->cfg->slot_size,
	};
	struct wf_hello_hdr hh;
	int ret;

	wf_hello_encode(&h, &hh);
	ret = wf_send(p->ep, &hh, sizeof(hh), PWR(PWR_HELLO, 0));
	if (ret) {
		wf_ep_destroy(p->ep);
		connect_failed(p, ret);
		return ret;
	}
	p->state = PEER_HELLO;
	p->hello_deadline = wf_tgt_now_ns() + ms_ns(PEER_HELLO_MS);
	return 0;
}

/* Connected: with a keyring, our key's OFFER goes first (the peer's
 * CHALLENGE, then our PROOF and the HELLO: on_auth); else the HELLO. */
static int session_start(struct wf_tgt_peer *p)
{
	struct wf_tgt_reactor *r = p->r;
	struct wf_auth_hdr h;
	int ret;

	p->auth_step = 0;
	if (!r->cfg->keyring)
		return send_hello(p);
	ret = wf_auth_offer(&p->ax, r->map->map.cluster_id, r->cfg->key_name,
			    link_client_id(r), p->target_id, &h);
	if (!ret)
		ret = wf_send(p->ep, &h, sizeof(h), PWR(PWR_HELLO, 0));
	if (ret) {
		wf_ep_destroy(p->ep);
		connect_failed(p, ret);
		return ret;
	}
	p->auth_step = 1;
	p->state = PEER_HELLO;
	p->hello_deadline = wf_tgt_now_ns() + ms_ns(PEER_HELLO_MS);
	return 0;
}

static void on_auth(struct wf_tgt_peer *p, const void *msg, uint32_t len)
{
	struct wf_tgt_reactor *r = p->r;
	const struct wf_key *k = wf_keyring_find(&r->keyring, r->cfg->key_name);
	struct wf_auth_hdr h;
	struct wf_auth a;
	char why[160];
	int ret;

	if (wf_auth_decode(msg, len, &a, NULL) ||
	    a.step != (p->auth_step == 1 ? WF_AUTH_CHALLENGE : WF_AUTH_RESULT)) {
		peer_close(p, "bad AUTH message");
		return;
	}
	if (p->auth_step == 2) {
		if (a.status == WF_WS_OK)
			p->auth_step = 0;       /* the GRANT follows */
		else
			peer_close(p, "it refused our proof of our key (another "
				   "secret under that name there)");
		return;
	}
	ret = k ? wf_auth_answer(k->secret, &p->ax, &a, &h) : -ENOKEY;
	if (ret) {
		snprintf(why, sizeof(why), "key %s: %s", r->cfg->key_name,
			 ret == -EACCES ? "refused (unknown there, or revoked)" :
			 ret == -EBADMSG ? "it did not prove it holds it" :
			 ret == -ENOKEY ? "no longer in our keyring" :
			 "authentication failed");
		peer_close(p, why);
		return;
	}
	if (wf_send(p->ep, &h, sizeof(h), PWR(PWR_HELLO, 0)) || send_hello(p))
		return;
	p->auth_step = 2;
}

/* Start connecting: 0 (CONNECTING, or already HELLO over verbs) or -errno
 * (IDLE, backing off). */
static int peer_connect(struct wf_tgt_peer *p)
{
	struct wf_tgt_reactor *r = p->r;
	struct wf_ep_opts o = { .size = sizeof(o) };
	int ret;

	o.send_depth = 2 * r->cfg->slots + 4;
	o.recv_depth = r->cfg->slots + 4;
	o.msg_size = 512;
	o.timeout_ms = PEER_CONNECT_MS;
	o.user = p;
	ret = wf_connect_start(r->fab[0].ctx, p->addr, &o, &p->ep);
	if (ret == -EINPROGRESS) {
		p->state = PEER_CONNECTING;
		return 0;
	}
	if (ret) {
		connect_failed(p, ret);
		return ret;
	}
	return session_start(p);
}

static int slot_take(struct wf_tgt_peer *p)
{
	for (uint32_t w = 0; w < (p->slot_count + 63) / 64; w++) {
		uint64_t v = p->slot_free[w];

		if (v) {
			p->slot_free[w] = v & (v - 1);
			p->nfree--;
			return (int)(w * 64 + (unsigned)__builtin_ctzll(v));
		}
	}
	return -1;
}

/* Reply in and our operations done: the slot is the link's again. */
static void fwd_settle(struct wf_tgt_peer *p, struct wf_tgt_fwd *f)
{
	p->slot_fwd[f->slot] = NULL;
	p->slot_free[f->slot / 64] |= 1ull << (f->slot % 64);
	p->nfree++;
	f->state = FWD_IDLE;
	wf_tgt_fwd_done(f, f->status);
}

/* WAIT -> SENT; false when the link cannot take it now (no credit). */
static bool fwd_send(struct wf_tgt_peer *p, struct wf_tgt_fwd *f)
{
	struct wf_tgt_req *q = f->q;
	struct wf_tgt_conn *c = q->conn;
	struct wf_tgt_reactor *r = p->r;
	struct wf_req rq = {
		.opcode = q->op,
		/* Replicas are durable when they answer: a client's flush
		 * then only has to reach the primary, whatever links and
		 * reactors the writes went through (docs/replication.md).
		 * A scrub's CSUM only reads. */
		.flags = q->op == WF_OP_CSUM ? WF_REQ_REPL : WF_REQ_REPL | WF_REQ_FUA,
		.volume = q->volume,
		.offset = q->offset,
		.epoch = r->map->epoch,
		.length = q->length,
	};
	struct wf_req_hdr h;
	int slot, ret;

	/* q->length fits: a link is LIVE only with slots at least as large
	 * as ours (on_grant). */
	slot = slot_take(p);
	if (slot < 0)
		return false;
	f->slot = (uint32_t)slot;
	f->gen = ++p->gen;
	rq.slot = f->slot;
	rq.tag = (uint64_t)f->gen << 32 | f->slot;
	f->local_ops = 0;
	f->sent_ns = wf_tgt_now_ns();
	p->slot_fwd[f->slot] = f;
	f->state = FWD_SENT;
	if (q->op == WF_OP_WRITE) {
		ret = wf_write(p->ep, r->fab[0].mrs[c->idx],
			       (uint64_t)q->slot * c->lim.slot_size, q->length,
			       &p->ring, (uint64_t)f->slot * p->slot_size,
			       PWR(PWR_DATA, f->slot));
		if (ret)
			goto out_close;
		f->local_ops++;
	}
	wf_req_encode(&rq, &h);
	ret = wf_send(p->ep, &h, sizeof(h), PWR(PWR_REQ, f->slot));
	if (ret)
		goto out_close;
	f->local_ops++;
	WF_TGT_ADD(r->stats.forwards, 1);
	return true;

out_close:
	/* Credits are sized for every slot: a failed post is a broken
	 * link.  The forward fails with the link (fail_all). */
	peer_close(p, "cannot post a forward");
	return true;
}

static void kick(struct wf_tgt_peer *p)
{
	while (p->state == PEER_LIVE && p->wait_head) {
		struct wf_tgt_fwd *f = p->wait_head;

		if (p->nfree == 0)
			return;
		p->wait_head = f->next;
		if (!p->wait_head)
			p->wait_tail = NULL;
		f->next = NULL;
		if (!fwd_send(p, f)) {
			/* Not sent after all: back to the front. */
			f->next = p->wait_head;
			p->wait_head = f;
			if (!p->wait_tail)
				p->wait_tail = f;
			return;
		}
	}
}

bool wf_tgt_peer_live(struct wf_tgt_reactor *r, uint32_t tidx)
{
	struct wf_tgt_peer *p = tidx < r->npeer_of ? r->peer_of[tidx] : NULL;

	if (!p)
		return false;
	if (p->state == PEER_IDLE && wf_tgt_now_ns() >= p->retry_at)
		peer_connect(p);
	return p->state == PEER_LIVE;
}

void wf_tgt_fwd_start(struct wf_tgt_reactor *r, struct wf_tgt_fwd *f,
		      uint32_t tidx)
{
	struct wf_tgt_peer *p = tidx < r->npeer_of ? r->peer_of[tidx] : NULL;

	if (!p) {
		/* Ourselves or not in the map: nothing to forward to. */
		wf_tgt_fwd_done(f, WF_WS_DEGRADED);
		return;
	}
	f->p = p;
	f->state = FWD_WAIT;
	f->next = NULL;
	if (p->wait_tail)
		p->wait_tail->next = f;
	else
		p->wait_head = f;
	p->wait_tail = f;
	if (p->state == PEER_IDLE) {
		if (wf_tgt_now_ns() < p->retry_at || peer_connect(p)) {
			/* Unreachable for now: the client hears DEGRADED and
			 * retries; a map change may take the peer out. */
			fail_all(p, WF_WS_DEGRADED);
			return;
		}
	}
	kick(p);
}

static void on_grant(struct wf_tgt_peer *p, const void *msg, uint32_t len)
{
	struct wf_grant g;
	uint32_t reason, n;

	if (wf_grant_decode(msg, len, &g, &reason)) {
		peer_close(p, wf_wire_reason_name(reason));
		return;
	}
	if (g.status != WF_WS_OK || g.target_id != p->target_id) {
		peer_close(p, g.status != WF_WS_OK ? wf_wire_status_name(g.status) :
			   "another target answers there");
		return;
	}
	n = g.slot_count < WF_TGT_MAX_SLOTS ? g.slot_count : WF_TGT_MAX_SLOTS;
	if (!n || g.slot_size < p->r->cfg->slot_size) {
		/* A forward carries what a client put in one of our slots:
		 * it must fit in one of the peer's. */
		if (!p->fails++)
			wf_tgt_log("reactor %u: target %u grants %u-byte slots, "
				   "ours are %u: give every target the same "
				   "--slot-size", p->r->idx, p->target_id,
				   g.slot_size, p->r->cfg->slot_size);
		peer_close(p, NULL);
		return;
	}
	memset(p->slot_free, 0, sizeof(p->slot_free));
	for (uint32_t i = 0; i < n; i++)
		p->slot_free[i / 64] |= 1ull << (i % 64);
	p->nfree = p->slot_count = n;
	p->slot_size = g.slot_size;
	WF_BUF_COPY(p->ring, g.ring);
	p->fails = 0;
	p->state = PEER_LIVE;
	p->features = g.features;
	wf_tgt_lease_link_up(p);
	/* Asks of an earlier session went with it; a member whose lease we
	 * need is asked as soon as its link is up. */
	p->lease_out = p->get_out = false;
	if (p->lease_need)
		wf_tgt_lease_tick(p->r, wf_tgt_now_ns(), true);
	/* Not from here: a reload rebuilds the links (this one too). */
	if (g.epoch > p->r->map->epoch)
		p->r->reload_wanted = true;
	kick(p);
}

static void on_reply(struct wf_tgt_peer *p, const void *msg, uint32_t len)
{
	struct wf_reply rep;
	struct wf_tgt_fwd *f;
	uint32_t reason;

	if (wf_reply_decode(msg, len, &rep, &reason) ||
	    rep.slot >= WF_TGT_MAX_SLOTS || !(f = p->slot_fwd[rep.slot]) ||
	    f->state != FWD_SENT ||
	    rep.tag != ((uint64_t)f->gen << 32 | rep.slot)) {
		peer_close(p, "reply for no forward");
		return;
	}
	f->status = rep.status;
	f->crc = rep.data_crc;          /* CSUM: the member's CRC32C */
	if (rep.status == WF_WS_OK && rep.length != f->q->length)
		f->status = WF_WS_IO;
	/* A replica has a newer map: reload after this turn's completions
	 * (reactor.c), never from here, where it would rebuild the links
	 * under this call. */
	if ((rep.status & ~WF_WS_DNR) == WF_WS_STALE ||
	    rep.epoch > p->r->map->epoch)
		p->r->reload_wanted = true;
	if (f->local_ops) {
		f->state = FWD_ANSWERED;
		return;
	}
	fwd_settle(p, f);
	kick(p);
}

void wf_tgt_peer_cqe(struct wf_tgt_reactor *r, struct wf_tgt_peer *p,
		     const struct wf_cqe *e)
{
	struct wf_tgt_fwd *f;
	uint32_t slot = (uint32_t)(e->wr_id >> 8);

	(void)r;
	switch (e->op) {
	case WF_CQE_CONNECT:
		if (p->state != PEER_CONNECTING)
			break;
		if (e->status) {
			wf_ep_destroy(p->ep);
			connect_failed(p, e->status);
			fail_all(p, WF_WS_DEGRADED);
			break;
		}
		if (session_start(p))
			fail_all(p, WF_WS_DEGRADED);
		break;
	case WF_CQE_RECV_MSG:
		if (p->state == PEER_HELLO && p->auth_step &&
		    wf_wire_peek(e->msg, e->len, NULL) == WF_OP_AUTH)
			on_auth(p, e->msg, e->len);
		else if (p->state == PEER_HELLO && p->auth_step == 1)
			peer_close(p, "a message before its CHALLENGE");
		else if (p->state == PEER_HELLO &&
		    wf_wire_peek(e->msg, e->len, NULL) == WF_OP_GRANT)
			on_grant(p, e->msg, e->len);
		else if (p->state == PEER_LIVE &&
			 wf_wire_peek(e->msg, e->len, NULL) == WF_OP_LEASE)
			wf_tgt_lease_answer(p, e->msg, e->len);
		else if (p->state == PEER_LIVE &&
			 wf_wire_peek(e->msg, e->len, NULL) == WF_OP_MAP_PUT)
			wf_tgt_map_chunk(p, e->msg, e->len);
		else if (p->state == PEER_LIVE)
			on_reply(p, e->msg, e->len);
		break;
	case WF_CQE_SEND:
	case WF_CQE_WRITE:
		if (e->status) {
			peer_close(p, "a post failed");
			break;
		}
		if ((e->wr_id & 0xff) == PWR_HELLO || slot >= WF_TGT_MAX_SLOTS)
			break;
		f = p->slot_fwd[slot];
		if (!f || !f->local_ops)
			break;
		if (--f->local_ops == 0 && f->state == FWD_ANSWERED) {
			fwd_settle(p, f);
			kick(p);
		}
		break;
	case WF_CQE_DISCONNECT:
		wf_ep_destroy(p->ep);
		p->ep = NULL;
		p->state = PEER_IDLE;
		p->retry_at = wf_tgt_now_ns() + backoff_ns(p);
		fail_all(p, WF_WS_DEGRADED);
		break;
	default:
		peer_close(p, "unexpected completion");
		break;
	}
}

void wf_tgt_peer_sweep(struct wf_tgt_reactor *r, uint64_t now)
{
	for (struct wf_tgt_peer *p = r->peers; p; p = p->next) {
		if (p->state == PEER_HELLO && now > p->hello_deadline) {
			peer_close(p, "no GRANT in time");
			continue;
		}
		if (p->state != PEER_LIVE || p->nfree == p->slot_count)
			continue;
		for (uint32_t s = 0; s < p->slot_count; s++) {
			struct wf_tgt_fwd *f = p->slot_fwd[s];

			if (f && now - f->sent_ns > ms_ns(PEER_FWD_MS)) {
				peer_close(p, "a forward was not answered in time");
				break;
			}
		}
	}
}

int wf_tgt_peer_send(struct wf_tgt_peer *p, const void *msg, uint32_t len)
{
	int ret;

	if (p->state != PEER_LIVE)
		return -ENOTCONN;
	/* A credit of the 4 beyond the forwards' (peer_connect): one lease
	 * ask, one map ask and one release at a time. */
	ret = wf_send(p->ep, msg, len, PWR(PWR_HELLO, 0));
	if (ret)
		peer_close(p, "cannot post a lease or map ask");
	else
		WF_TGT_ADD(p->r->stats.lease_sends, 1);
	return ret;
}

void wf_tgt_peer_wake(struct wf_tgt_peer *p)
{
	if (p->state == PEER_IDLE && !p->gone && wf_tgt_now_ns() >= p->retry_at)
		peer_connect(p);
}

static void peer_free(struct wf_tgt_peer *p)
{
	if (p->ep)
		wf_ep_destroy(p->ep);
	p->ep = NULL;
	p->state = PEER_IDLE;
	/* A request that finishes in fail_all may start another forward;
	 * p is in no peer_of any more, so none comes here. */
	p->retry_at = UINT64_MAX;
	fail_all(p, WF_WS_DEGRADED);
	free(p->get_buf);
	free(p);
}

int wf_tgt_peers_rebuild(struct wf_tgt_reactor *r)
{
	const struct wf_map *m = &r->map->map;
	struct wf_tgt_peer **of, *p;
	uint32_t n = m->ntargets ? m->ntargets : 1;

	of = calloc(n, sizeof(*of));
	if (!of)
		return -ENOMEM;
	for (uint32_t i = 0; i < m->ntargets; i++) {
		const struct wf_target *t = &m->targets[i];
		char addr[sizeof(p->addr)];

		if ((int32_t)i == r->map->self)
			continue;
		snprintf(addr, sizeof(addr), strchr(t->addr, ':') ?
			 "%s:[%s]:%u" : "%s:%s:%u",
			 r->cfg->backend == WF_BACKEND_VERBS ? "rdma" : "tcp",
			 t->addr, t->port);
		for (p = r->peers; p; p = p->next)
			if (!p->gone && p->target_id == t->id && !strcmp(p->addr, addr))
				break;
		if (!p) {
			p = calloc(1, sizeof(*p));
			if (!p) {
				free(of);
				return -ENOMEM;
			}
			p->kind = WF_TGT_EP_PEER;
			p->r = r;
			p->target_id = t->id;
			snprintf(p->addr, sizeof(p->addr), "%s", addr);
			p->next = r->peers;
			r->peers = p;
		}
		p->mark = true;
		of[i] = p;
	}
	/* The new table first: forwards started from here on (also from
	 * the failures below) find only links of this map. */
	free(r->peer_of);
	r->peer_of = of;
	r->npeer_of = m->ntargets;
	/* Links to targets that left the map (or moved): closed; what they
	 * carried fails with DEGRADED (the client retries in the new epoch);
	 * freed once down (wf_tgt_peers_reap), never under a caller that may
	 * still hold them. */
	for (p = r->peers; p; p = p->next) {
		if (p->mark) {
			p->mark = false;
			continue;
		}
		if (p->gone)
			continue;
		p->gone = true;
		r->peers_gone++;
		p->retry_at = UINT64_MAX;
		if (p->state == PEER_IDLE)
			fail_all(p, WF_WS_DEGRADED);
		else
			peer_close(p, NULL);
	}
	return 0;
}

void wf_tgt_peers_reap(struct wf_tgt_reactor *r)
{
	struct wf_tgt_peer **pp = &r->peers, *p;

	while ((p = *pp)) {
		if (p->gone && p->state == PEER_IDLE && !p->wait_head) {
			*pp = p->next;
			free(p->get_buf);
			free(p);
			r->peers_gone--;
			continue;
		}
		pp = &p->next;
	}
}

void wf_tgt_peers_fini(struct wf_tgt_reactor *r)
{
	struct wf_tgt_peer *p;

	/* No forward may find a link being freed. */
	free(r->peer_of);
	r->peer_of = NULL;
	r->npeer_of = 0;
	while ((p = r->peers)) {
		r->peers = p->next;
		peer_free(p);
	}
}

unsigned wf_tgt_peers_busy(const struct wf_tgt_reactor *r)
{
	unsigned n = 0;

	for (const struct wf_tgt_peer *p = r->peers; p; p = p->next)
		n += p->state == PEER_HELLO || p->state == PEER_CONNECTING ? 1 :
		     p->state == PEER_LIVE ? p->slot_count - p->nfree : 0;
	return n;
}
