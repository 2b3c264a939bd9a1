/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Limits that keep one peer or one key from starving the others
 * (docs/target.md, "Limits"; docs/security.md, "Limits per key"), at
 * accept and at the GRANT: the pool and its evictions, a peer's share,
 * the HELLO deadline, the idle timeout, and a key's connections and
 * staging slots.  Its requests in flight are counted where requests are
 * served (conn.c).
 *
 * Limits per key are counted per reactor, like the others, for
 * connections that proved a key other than the targets' own (their links
 * carry replication and recovery): at the GRANT, the key's connections
 * (--max-conns-per-key) and the slots granted to them
 * (--max-slots-per-key: the GRANT shrinks to what is left, nothing left
 * is refused QUOTA).  The table of keys is made at startup (one entry per
 * place in the pool: a key in use holds a connection of it).
 */
#include <stdio.h>
#include <string.h>

#include "target/target.h"

static bool evict(struct wf_tgt_reactor *r, const char *peer,
		  const struct wf_tgt_keyuse *k, const char *what);

/* The entry of key name, or a free one taken for it (a key in use holds
 * a connection of the pool, and the table has one entry per place). */
static struct wf_tgt_keyuse *key_get(struct wf_tgt_reactor *r, const char *name)
{
	struct wf_tgt_keyuse *fr = NULL;

	for (uint32_t i = 0; i < r->cfg->max_conns; i++) {
		struct wf_tgt_keyuse *k = &r->keyuse[i];

		if (k->refs && !strcmp(k->name, name))
			return k;
		if (!k->refs && !fr)
			fr = k;
	}
	if (fr) {
		memset(fr, 0, sizeof(*fr));
		snprintf(fr->name, sizeof(fr->name), "%s", name);
	}
	return fr;
}

/* Whether c counts against its key's limits (one of them is set, and c
 * proved a key that is not the targets'). */
static bool key_limited(const struct wf_tgt_conn *c)
{
	const struct wf_tgt_cfg *cfg = c->r->cfg;

	if (!cfg->max_conns_per_key && !cfg->max_slots_per_key &&
	    !cfg->max_inflight_per_key)
		return false;
	return c->auth == 2 && !c->peer_key;
}

/* Refuse c's HELLO: its key is over a limit (why names it). */
static void key_refuse(struct wf_tgt_conn *c, const char *why)
{
	wf_tgt_grant_refuse(c, WF_WS_QUOTA | WF_WS_DNR);
	WF_TGT_ADD(c->r->stats.key_refused, 1);
	wf_tgt_conn_close(c, why);
}

bool wf_tgt_key_admit(struct wf_tgt_conn *c, uint32_t *n)
{
	struct wf_tgt_reactor *r = c->r;
	const struct wf_tgt_cfg *cfg = r->cfg;
	struct wf_tgt_keyuse *k;
	uint32_t left;
	char why[160];

	if (!key_limited(c))
		return true;
	k = c->ku ? c->ku : key_get(r, c->key_name);
	if (!k) {
		wf_tgt_conn_close(c, "no room in the table of keys");
		return false;
	}
	if (!c->ku) {
		c->ku = k;
		k->refs++;
	}
	/* Connections (0), then slots (1): over either, the key's idlest
	 * connection makes room, else c is refused. */
	for (unsigned i = 0; i < 2; i++) {
		uint32_t lim = i ? cfg->max_slots_per_key : cfg->max_conns_per_key;
		const char *opt = i ? "slots" : "conns";
		char ev[64];

		snprintf(ev, sizeof(ev), "its key is at --max-%s-per-key", opt);
		if (!lim || (i ? k->slots : k->conns) < lim || evict(r, NULL, k, ev))
			continue;
		snprintf(why, sizeof(why), "refused: key %s holds %u %s "
			 "(--max-%s-per-key %u)", k->name, i ? k->slots : k->conns,
			 i ? "slots" : "connections", opt, lim);
		key_refuse(c, why);
		return false;
	}
	if (cfg->max_slots_per_key) {
		left = cfg->max_slots_per_key - k->slots;
		if (*n > left)
			*n = left;
	}
	k->conns++;
	k->slots += *n;
	c->ku_slots = *n;
	return true;
}

/* Can c make room for a newcomer (of peer, if not NULL; of key k, if not
 * NULL)?  How long it has been idle in ns, or 0. */
static uint64_t idle_for(const struct wf_tgt_conn *c, const char *peer,
			 const struct wf_tgt_keyuse *k, uint64_t now)
{
	if ((c->state != CONN_LIVE && (c->state != CONN_HELLO || c->held)) ||
	    c->active || c->store_inflight || now < c->idle_since ||
	    (peer && strcmp(c->peer, peer)) || (k && (c->ku != k || !c->ku_slots)))
		return 0;
	return now - c->idle_since;
}

/*
 * Close the connection (of peer, if not NULL) idle the longest, if at
 * least --evict-idle: its slots come back once it is freed.  An idle
 * connection costs its client a reconnect on its next request; a pool
 * held by idle connections would cost everybody else their service.
 */
static bool evict(struct wf_tgt_reactor *r, const char *peer,
		  const struct wf_tgt_keyuse *k, const char *what)
{
	uint64_t now = wf_tgt_now_ns(), best = 0;
	struct wf_tgt_conn *v = NULL;
	char why[160];

	for (uint32_t i = 0; i < r->cfg->max_conns; i++) {
		uint64_t t = idle_for(&r->conns[i], peer, k, now);

		if (t > best) {
			best = t;
			v = &r->conns[i];
		}
	}
	if (!v || best < r->cfg->evict_ms * 1000000ull)
		return false;
	snprintf(why, sizeof(why), "evicted (%s): idle for %llu ms", what,
		 (unsigned long long)(best / 1000000));
	wf_tgt_conn_close(v, why);
	v->evicted = true;
	r->evicting++;
	r->stats.evicted++;
	return true;
}

/* Take one endpoint of l and drop it: the initiator sees the refusal at
 * once.  false when none is pending. */
static bool refuse(struct wf_tgt_reactor *r, struct wf_listener *l)
{
	struct wf_ep *ep;

	if (wf_accept(l, NULL, &ep))
		return false;
	r->stats.refused++;
	wf_ep_destroy(ep);
	return true;
}

/* Connections of c's peer, c included. */
static uint32_t peer_conns(const struct wf_tgt_reactor *r,
			   const struct wf_tgt_conn *c)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < r->cfg->max_conns; i++) {
		const struct wf_tgt_conn *o = &r->conns[i];

		if (o->state != CONN_FREE && o->state != CONN_CLOSING &&
		    !strcmp(o->peer, c->peer))
			n++;
	}
	return n;
}

void wf_tgt_conn_accept(struct wf_tgt_reactor *r, unsigned fab,
			struct wf_listener *l)
{
	for (;;) {
		struct wf_tgt_conn *c = r->free_conns;
		struct wf_ep *ep;

		if (r->phase != PH_RUN) {
			if (!refuse(r, l))
				return;
			continue;
		}
		if (!c) {
			/* Full: wait for room an eviction makes, or refuse.
			 * The newcomers wait in the listener meanwhile
			 * (bounded there). */
			if (r->evicting || evict(r, NULL, NULL, "the pool is full")) {
				r->fab[fab].accept_wait = l;
				return;
			}
			if (!refuse(r, l))
				return;
			continue;
		}
		if (wf_accept(l, c, &ep))
			return;
		r->free_conns = c->next_free;
		WF_TGT_ADD(r->nconns, 1);
		r->stats.accepted++;
		c->ep = ep;
		c->fab = fab;
		c->state = CONN_HELLO;
		c->accepted_ns = wf_tgt_now_ns();
		c->idle_since = c->accepted_ns;
		c->active = false;
		c->evicted = false;
		r->nhello++;
		c->gone = false;
		c->invalid = 0;
		c->client_id = 0;
		c->auth = 0;
		c->key_name[0] = 0;
		c->peer_key = false;
		c->peer_refused = false;
		c->ku_slots = 0;
		c->held = false;
		c->store_inflight = c->npending = c->sends_out = 0;
		c->counted = false;
		memset(&c->lim, 0, sizeof(c->lim));
		if (wf_ep_peer(ep, c->peer, sizeof(c->peer)))
			snprintf(c->peer, sizeof(c->peer), "unknown");
		/* Over its peer's share: that peer's idlest connection goes,
		 * else this one. */
		if (r->cfg->max_conns_per_peer &&
		    peer_conns(r, c) > r->cfg->max_conns_per_peer &&
		    !evict(r, c->peer, NULL, "its peer is at --max-conns-per-peer")) {
			r->stats.refused++;
			wf_tgt_conn_close(c, NULL);
		}
	}
}

/* Once a second: connections with no traffic since the last pass are
 * idle since then; past --idle-timeout they are closed. */
static void idle_pass(struct wf_tgt_reactor *r, uint64_t now)
{
	uint64_t lim = r->cfg->idle_ms * 1000000ull;

	for (uint32_t i = 0; i < r->cfg->max_conns; i++) {
		struct wf_tgt_conn *c = &r->conns[i];

		if (c->state != CONN_LIVE)
			continue;
		if (c->active || c->store_inflight) {
			c->active = false;
			c->idle_since = now;
			continue;
		}
		if (lim && now - c->idle_since >= lim) {
			char why[96];

			snprintf(why, sizeof(why), "idle for %llu ms "
				 "(--idle-timeout)",
				 (unsigned long long)((now - c->idle_since) / 1000000));
			r->stats.idle_closed++;
			wf_tgt_conn_close(c, why);
		}
	}
}

void wf_tgt_conn_sweep(struct wf_tgt_reactor *r, uint64_t now)
{
	for (uint32_t i = 0; r->nhello && i < r->cfg->max_conns; i++) {
		struct wf_tgt_conn *c = &r->conns[i];

		/* A held HELLO came in time: its wait is ours. */
		if (c->state == CONN_HELLO && !c->held &&
		    now - c->accepted_ns > WF_TGT_HELLO_MS * 1000000ull)
			wf_tgt_conn_close(c, "no HELLO in time");
	}
	if (now >= r->next_idle_ns) {
		r->next_idle_ns = now + 1000000000ull;
		idle_pass(r, now);
	}
}
