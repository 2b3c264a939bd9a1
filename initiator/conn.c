/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libweft: connections to targets, the machine of enum wf_conn_state.
 * Made on first use and never waited for: the fabric connects inside the
 * progress turn (wf_connect_start, a WF_CQE_CONNECT completion), then the
 * HELLO/GRANT exchange, both bounded by WF_CONNECT_MS; so a target that is
 * stopped or unreachable delays only the pieces routed to it.  Torn down on
 * any error.
 *
 *   IDLE --connect--> CONNECTING --CONNECT ok--> HELLO --GRANT--> LIVE
 *   IDLE --connect (a backend without a background connect)--> HELLO
 *   CONNECTING --CONNECT failed, deadline--> DOWN
 *   HELLO, LIVE --fail--> CLOSING --DISCONNECT--> DOWN
 *   HELLO, LIVE --fail, the endpoint cannot close--> DOWN
 *   DOWN --(piece.c re-routed its pieces) wf_conn_down_done--> IDLE or freed
 *
 * Nothing here changes a piece: events that concern pieces are returned
 * (wf_conn_on_msg) or left on cl->down for the piece machine.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "initiator/weft_int.h"
#include "proto/view.h"

#define WR_CONN (1ull << 63)    /* wr_id of a connection's own sends */

static unsigned backoff_ms(unsigned fails)
{
	unsigned d = WF_BACKOFF_MIN_MS << (fails < 8 ? fails : 8);

	return d < WF_BACKOFF_MAX_MS ? d : WF_BACKOFF_MAX_MS;
}

/* Reactor k of target tidx: port + k, unix socket path + ".k". */
static const char *conn_addr(struct weft_cluster *cl, uint32_t tidx,
			     uint32_t k, char *buf, size_t len)
{
	const struct wf_target *t = &cl->map.targets[tidx];

	if (!strcmp(cl->transport, "unix")) {
		if (k)
			snprintf(buf, len, "unix:%s/target-%u.sock.%u", cl->run_dir,
				 t->id, k);
		else
			snprintf(buf, len, "unix:%s/target-%u.sock", cl->run_dir,
				 t->id);
	} else if (!strcmp(cl->transport, "verbs")) {
		snprintf(buf, len, "rdma:%s:%u", t->addr, t->port + k);
	} else {
		snprintf(buf, len, "tcp:%s:%u", t->addr, t->port + k);
	}
	return buf;
}

struct wf_conn *wf_conn_new(struct weft_cluster *cl, uint32_t target_id)
{
	/* Connected lazily, but the struct must exist: allocated on the
	 * control path (a map change, a GRANT naming reactors). */
	struct wf_conn *c = calloc(1, sizeof(*c));

	if (c) {
		c->cl = cl;
		c->target_id = target_id;
		c->state = CONN_IDLE;
	}
	return c;
}

static void free_ring(struct wf_conn *c)
{
	free(c->slot_free);
	c->slot_free = NULL;
	c->slot_words = c->nfree = c->slot_count = 0;
	c->inflight = 0;
}

/* The endpoint is gone (or never closes): ring freed, pieces for the
 * piece machine (cl->down). */
static void went_down(struct wf_conn *c)
{
	struct weft_cluster *cl = c->cl;

	if (c->ep) {
		wf_ep_destroy(c->ep);
		c->ep = NULL;
	}
	free_ring(c);
	c->state = CONN_DOWN;
	c->fails++;
	c->retry_at = cl->now + backoff_ms(c->fails);
	c->down_next = cl->down;
	cl->down = c;
}

static int send_hello(struct wf_conn *c);

/* The endpoint is connected: with a key, the OFFER goes out and the
 * CHALLENGE is awaited (auth_step 1); without, the HELLO. */
static int session_start(struct wf_conn *c)
{
	struct weft_cluster *cl = c->cl;
	struct wf_auth_hdr h;
	int ret;

	c->auth_step = 0;
	if (!cl->has_key)
		return send_hello(c);
	ret = wf_auth_offer(&c->ax, cl->map.cluster_id, cl->key_name,
			    cl->client_id, c->target_id, &h);
	if (ret)
		return ret;
	ret = wf_send(c->ep, &h, sizeof(h), WR_CONN | c->idx);
	if (ret)
		return ret;
	cl->stats.reconnects++;
	c->refused = false;
	c->auth_step = 1;
	c->state = CONN_HELLO;
	c->hello_deadline = cl->now + WF_CONNECT_MS;
	return 0;
}

/* The endpoint is connected (and, with a key, the target proved it holds
 * it): HELLO goes out, the GRANT is awaited. */
static int send_hello(struct wf_conn *c)
{
	struct weft_cluster *cl = c->cl;
	struct wf_hello h = {
		.client_id = cl->client_id,
		.epoch = cl->map.epoch,
		.want_slots = cl->npieces,
		.max_io = cl->piece_max,
	};
	struct wf_hello_hdr hh;
	int ret;

	wf_hello_encode(&h, &hh);
	ret = wf_send(c->ep, &hh, sizeof(hh), WR_CONN | c->idx);
	if (ret)
		return ret;
	if (!cl->has_key)
		cl->stats.reconnects++;
	c->refused = false;
	c->state = CONN_HELLO;
	c->hello_deadline = cl->now + WF_CONNECT_MS;
	return 0;
}

/* The connect failed (not: a connection broke). */
static void connect_failed(struct wf_conn *c)
{
	went_down(c);
	c->refused = true;
}

int wf_conn_connect(struct wf_conn *c)
{
	struct weft_cluster *cl = c->cl;
	struct wf_ep_opts o = { .size = sizeof(o) };
	int ret;

	if (c->state != CONN_IDLE)
		return 0;
	conn_addr(cl, c->idx, c->reactor, c->addr, sizeof(c->addr));
	/* Two sends per request at most (payload write + header), one
	 * receive per slot plus the GRANT. */
	o.send_depth = 2 * cl->npieces + 4;
	o.recv_depth = cl->npieces + 4;
	o.msg_size = 512;
	o.timeout_ms = WF_CONNECT_MS;
	o.user = c;
	ret = wf_connect_start(cl->ctx, c->addr, &o, &c->ep);
	if (ret == -EINPROGRESS) {
		c->state = CONN_CONNECTING;
		c->hello_deadline = cl->now + WF_CONNECT_MS;
		return 0;
	}
	if (ret)
		goto out_fail;
	ret = session_start(c);
	if (ret) {
		wf_ep_destroy(c->ep);
		c->ep = NULL;
		goto out_fail;
	}
	return 0;

out_fail:
	c->ep = NULL;
	c->refused = true;
	c->fails++;
	c->retry_at = cl->now + backoff_ms(c->fails);
	return ret;
}

void wf_conn_on_connect(struct wf_conn *c, int status)
{
	if (c->state != CONN_CONNECTING)
		return;
	if (status || session_start(c))
		connect_failed(c);
}

void wf_conn_fail(struct wf_conn *c)
{
	switch (c->state) {
	case CONN_CONNECTING:
		/* Nothing sent: the attempt is abandoned at once. */
		connect_failed(c);
		break;
	case CONN_IDLE:
		/* Nothing on the wire; waiters (none, normally) go back. */
		if (c->wait_q.head) {
			c->state = CONN_DOWN;
			c->down_next = c->cl->down;
			c->cl->down = c;
		}
		break;
	case CONN_HELLO:
	case CONN_LIVE:
		c->state = CONN_CLOSING;
		/* The DISCONNECT completion comes after every outstanding
		 * operation has completed: the pieces are swept then. */
		if (wf_ep_close(c->ep))
			went_down(c);
		break;
	case CONN_CLOSING:
	case CONN_DOWN:
		break;
	}
}

void wf_conn_on_disconnect(struct wf_conn *c)
{
	if (c->state != CONN_DOWN)
		went_down(c);
}

struct wf_conn *wf_conn_down_done(struct wf_conn *c)
{
	struct weft_cluster *cl = c->cl;
	struct wf_conn *next = c->down_next, **pp;

	for (pp = &cl->down; *pp; pp = &(*pp)->down_next)
		if (*pp == c) {
			*pp = c->down_next;
			break;
		}
	c->down_next = NULL;
	c->state = CONN_IDLE;
	if (c->dead) {
		for (uint32_t i = 0; i < cl->ndying; i++)
			if (cl->dying[i] == c) {
				cl->dying[i] = cl->dying[--cl->ndying];
				break;
			}
		free(c);
	}
	return next;
}

struct wf_conn *wf_conn_route(struct wf_conn *c, uint64_t volume, uint64_t off)
{
	struct wf_conn *s;
	uint32_t k;

	if (c->reactors <= 1 || !c->sub)
		return c;
	k = wf_extent_reactor(volume, (uint32_t)(off / c->cl->map.extent_size),
			   c->reactors);
	s = k ? c->sub[k] : NULL;
	/*
	 * A reactor connection whose connect failed (its port refused or
	 * unreachable: the target restarted with fewer reactors, say; or no
	 * completion credits left in our ctx): through reactor 0, which
	 * hands the request to the owner, until a while after its backoff.
	 * Longer than the backoff, so the pieces it failed go to reactor 0
	 * when they are retried, and reactor 0's next GRANT can tell the new
	 * reactor count; a new piece after that tries it again.
	 * Not after a connection merely broke: its pieces are resent on a
	 * new connection to the same reactor, whose HELLO is held until the
	 * broken one's store I/O is done there (target/conn.c), so an old
	 * write cannot land after a newer one; reactor 0 cannot know about
	 * that I/O in time.
	 */
	if (!s || (s->state == CONN_IDLE && s->refused &&
		   c->cl->now < s->retry_at + WF_BACKOFF_MAX_MS))
		return c;
	return s;
}

/* A detached reactor connection leaves like a connection of a target that
 * left the map: closed, then freed on its DISCONNECT (cl->dying). */
static void sub_detach(struct wf_conn *s)
{
	struct weft_cluster *cl = s->cl;
	struct wf_conn **nd;

	s->parent = NULL;
	s->dead = true;
	if (s->state == CONN_IDLE && !s->wait_q.head) {
		/* Nothing of it on the wire, nobody waiting on it. */
		wf_conn_free(s);
		return;
	}
	/* Room for this one and for every connection conns_rebuild may
	 * still add in the same pass. */
	nd = realloc(cl->dying, (cl->ndying + cl->nconns + 2) * sizeof(*nd));
	if (!nd) {
		/* Cannot track it: keep it alive, unreachable, until close
		 * (leaks a struct, loses nothing). */
		wf_conn_fail(s);
		return;
	}
	cl->dying = nd;
	cl->dying[cl->ndying++] = s;
	wf_conn_fail(s);
}

void wf_conn_drop_subs(struct wf_conn *c)
{
	for (uint32_t k = 1; c->sub && k < c->reactors; k++)
		if (c->sub[k])
			sub_detach(c->sub[k]);
	free(c->sub);
	c->sub = NULL;
	c->reactors = 0;
}

static bool overdue(const struct wf_conn *c, uint64_t now)
{
	return (c->state == CONN_CONNECTING || c->state == CONN_HELLO) &&
	       now >= c->hello_deadline;
}

void wf_conn_sweep(struct wf_conn *c, uint64_t now)
{
	if (overdue(c, now))
		wf_conn_fail(c);
	for (uint32_t k = 1; c->sub && k < c->reactors; k++) {
		struct wf_conn *s = c->sub[k];

		if (s && overdue(s, now))
			wf_conn_fail(s);
	}
}

/* Reactor 0 granted: make the reactor connections (connected lazily, on
 * the first piece routed to them). */
static void subs_setup(struct wf_conn *c, uint32_t n)
{
	struct wf_conn **sub;

	if (n == c->reactors && (n <= 1 || c->sub))
		return;
	wf_conn_drop_subs(c);
	if (n <= 1) {
		c->reactors = 1;
		return;
	}
	sub = calloc(n, sizeof(*sub));
	if (!sub)
		goto out_one;
	for (uint32_t k = 1; k < n; k++) {
		sub[k] = wf_conn_new(c->cl, c->target_id);
		if (!sub[k]) {
			while (--k > 0)
				free(sub[k]);
			free(sub);
			goto out_one;
		}
		sub[k]->idx = c->idx;
		sub[k]->parent = c;
		sub[k]->reactor = k;
	}
	c->sub = sub;
	c->reactors = n;
	return;

out_one:
	/* Everything through reactor 0, which hands requests over. */
	c->reactors = 1;
}

/* HELLO -> LIVE, or the connection fails (false). */
static bool on_grant(struct wf_conn *c, const void *msg, uint32_t len)
{
	struct weft_cluster *cl = c->cl;
	struct wf_grant g;
	uint32_t reason, n, i;
	int ret;

	ret = wf_grant_decode(msg, len, &g, &reason);
	if (ret) {
		wf_log(cl, WEFT_LOG_WARNING, "target %u: bad GRANT (%s)",
		       c->target_id, wf_wire_reason_name(reason));
		goto out_fail;
	}
	/* The target serves a newer map: look for it in the next turn.  If
	 * it moved this target, the new epoch closes this connection. */
	if (g.epoch > cl->map.epoch)
		cl->map_stale = true;
	if ((g.status & ~WF_WS_DNR) == WF_WS_AUTH) {
		wf_log(cl, WEFT_LOG_ERR, "target %u (%s) requires a key: none "
		       "given (opts.key_name, or WEFT_KEY and WEFT_KEYRING)",
		       c->target_id, c->addr);
		c->auth_err = -EACCES;
		goto out_fail;
	}
	if ((g.status & ~WF_WS_DNR) == WF_WS_QUOTA) {
		wf_log(cl, WEFT_LOG_ERR, "target %u (%s) refused a connection of "
		       "key %s: the key holds all the connections or staging "
		       "slots the target gives one key (its log names them)",
		       c->target_id, c->addr, cl->has_key ? cl->key_name : "(none)");
		c->auth_err = -EDQUOT;
		goto out_fail;
	}
	if (g.status != WF_WS_OK || g.target_id != c->target_id) {
		if (g.status == WF_WS_OK)
			wf_log(cl, WEFT_LOG_ERR, "%s is target %u, not %u",
			       c->addr, g.target_id, c->target_id);
		goto out_fail;
	}
	n = g.slot_count < cl->npieces ? g.slot_count : cl->npieces;
	c->slot_words = (n + 63) / 64;
	c->slot_free = calloc(c->slot_words, sizeof(uint64_t));
	if (!c->slot_free)
		goto out_fail;
	for (i = 0; i < n; i++)
		c->slot_free[i / 64] |= 1ull << (i % 64);
	c->nfree = c->slot_count = n;
	c->slot_size = g.slot_size;
	/* The payload starts at the slot start (docs/protocol.md). */
	c->max_len = g.slot_size & ~(WF_BLOCK - 1);
	if (c->max_len > cl->piece_max)
		c->max_len = cl->piece_max;
	if (!c->max_len)
		goto out_fail;
	WF_BUF_COPY(c->ring, g.ring);
	c->epoch = g.epoch;
	c->fails = 0;
	c->auth_err = 0;
	c->state = CONN_LIVE;
	if (!c->parent && !c->dead)
		subs_setup(c, g.reactors);
	return true;

out_fail:
	wf_conn_fail(c);
	return false;
}

/* A refusal or a failed proof: the connection fails, and the pieces
 * waiting for it with -EACCES (piece.c). */
static void auth_refused(struct wf_conn *c)
{
	c->auth_err = -EACCES;
	c->auth_step = 0;
	explicit_bzero(&c->ax, sizeof(c->ax));
	wf_conn_fail(c);
}

/* An AUTH message in CONN_HELLO: the CHALLENGE (the target's proof: ours
 * and the HELLO go out at once) or the RESULT. */
static void on_auth(struct wf_conn *c, const void *msg, uint32_t len)
{
	struct weft_cluster *cl = c->cl;
	struct wf_auth_hdr h;
	struct wf_auth a;
	uint32_t reason;
	int ret;

	if (wf_auth_decode(msg, len, &a, &reason) ||
	    a.step != (c->auth_step == 1 ? WF_AUTH_CHALLENGE : WF_AUTH_RESULT)) {
		wf_log(cl, WEFT_LOG_WARNING, "target %u: bad AUTH message (%s)",
		       c->target_id, wf_wire_reason_name(reason));
		wf_conn_fail(c);
		return;
	}
	if (c->auth_step == 2) {
		if (a.status == WF_WS_OK) {
			c->auth_step = 0;       /* the GRANT follows */
			return;
		}
		wf_log(cl, WEFT_LOG_ERR, "target %u (%s) refused key %s: our "
		       "proof did not match (it holds another secret under "
		       "that name)", c->target_id, c->addr, cl->key_name);
		auth_refused(c);
		return;
	}
	ret = wf_auth_answer(cl->key, &c->ax, &a, &h);
	if (ret == -EACCES || ret == -EBADMSG) {
		wf_log(cl, WEFT_LOG_ERR, "target %u (%s) %s key %s%s",
		       c->target_id, c->addr, ret == -EACCES ? "refused" :
		       "did not prove it holds", cl->key_name, ret == -EACCES ?
		       ": it does not know it, or it is revoked" :
		       ": not that target, or another secret under that name");
		auth_refused(c);
		return;
	}
	if (ret || wf_send(c->ep, &h, sizeof(h), WR_CONN | c->idx) ||
	    send_hello(c)) {
		wf_conn_fail(c);
		return;
	}
	c->auth_step = 2;
}

enum wf_conn_ev wf_conn_on_msg(struct wf_conn *c, const void *msg,
			       uint32_t len, struct wf_reply *reply)
{
	uint32_t reason;
	int op = wf_wire_peek(msg, len, &reason);

	if (c->state == CONN_HELLO && c->auth_step && op == WF_OP_AUTH) {
		on_auth(c, msg, len);
		return WF_CEV_NONE;
	}
	if (c->state == CONN_HELLO && c->auth_step == 1)
		op = -1;        /* nothing but the CHALLENGE before our HELLO */
	if (c->state == CONN_HELLO && op == WF_OP_GRANT)
		return on_grant(c, msg, len) ? WF_CEV_LIVE : WF_CEV_NONE;
	if (c->state == CONN_LIVE && op == WF_OP_REPLY &&
	    !wf_reply_decode(msg, len, reply, &reason))
		return WF_CEV_REPLY;
	if (c->state == CONN_CLOSING || c->state == CONN_DOWN)
		return WF_CEV_NONE;
	wf_log(c->cl, WEFT_LOG_WARNING, "target %u: unexpected message (%s)",
	       c->target_id, op < 0 ? wf_wire_reason_name(reason) : "opcode");
	wf_conn_fail(c);
	return WF_CEV_NONE;
}

void wf_conn_free(struct wf_conn *c)
{
	if (!c)
		return;
	for (uint32_t k = 1; c->sub && k < c->reactors; k++)
		wf_conn_free(c->sub[k]);
	free(c->sub);
	if (c->ep)
		wf_ep_destroy(c->ep);
	free(c->slot_free);
	free(c);
}
