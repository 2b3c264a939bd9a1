/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Authentication at connect, the target's side (proto/auth.h,
 * docs/security.md): the keyring each reactor holds (re-read with every
 * map reload), the WF_OP_AUTH exchange on an accepted connection, the
 * gate that refuses anything else before it succeeded, and the recheck
 * that closes connections whose key a new epoch revoked or the keyring
 * lost.  Nothing here runs per request: a connection is authenticated
 * once, before its GRANT (before any staging memory is its).
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ctl.h"
#include "target/target.h"

bool wf_tgt_key_revoked(const struct wf_tgt_map *m, const char *name)
{
	for (uint32_t i = 0; i < m->map.nrevoked; i++)
		if (!strcmp(m->map.revoked[i], name))
			return true;
	return false;
}

int wf_tgt_peer_keys_check(const struct wf_tgt_cfg *cfg, const struct wf_tgt_map *m,
			   char *buf, size_t len)
{
	if (!cfg->keyring || !cfg->key_name || !m->map.npeers ||
	    wf_map_peer_key(&m->map, cfg->key_name))
		return 0;
	snprintf(buf, len, "the map's peer_keys does not list our key %s (--key), "
		 "so the other targets would refuse our forwards, leases and map "
		 "pulls: run `weftctl key peer %s -c MAP` (or give --key one of "
		 "the peer_keys)", cfg->key_name, cfg->key_name);
	return -EACCES;
}

bool wf_tgt_key_is_peer(const struct wf_tgt_reactor *r, const char *name)
{
	const struct wf_map *m = &r->map->map;

	if (m->npeers)
		return wf_map_peer_key(m, name);
	return r->cfg->key_name && !strcmp(name, r->cfg->key_name);
}

bool wf_tgt_auth_required(const struct wf_tgt_reactor *r)
{
	return r->map->map.auth == WF_MAP_AUTH_REQUIRED ||
	       (r->map->map.auth == WF_MAP_AUTH_KEYRING && r->cfg->keyring);
}

int wf_tgt_keyring_load(struct wf_tgt_reactor *r, char *err, size_t errlen)
{
	struct wf_keyring kr;
	int ret;

	if (!r->cfg->keyring)
		return 0;
	ret = wf_keyring_load(r->cfg->keyring, &kr, err, errlen);
	if (ret)
		return ret;
	wf_keyring_free(&r->keyring);
	r->keyring = kr;
	return 0;
}

_Static_assert(offsetof(struct wf_net_status_req, tag) ==
	       offsetof(struct wf_net_map_put, tag), "STATUS and MAP_PUT tags");

/* The answer of status to op (msg, len) where it has one. */
static void answer(struct wf_tgt_conn *c, int op, const void *msg, uint32_t len,
		   uint16_t status)
{
	if (op == WF_OP_HELLO) {
		wf_tgt_grant_refuse(c, status);
	} else if (op == WF_OP_STATUS || op == WF_OP_MAP_PUT) {
		uint64_t tag = 0;

		/* Both carry the tag at the same place as a STATUS. */
		if (len >= offsetof(struct wf_net_status_req, tag) + 8) {
			memcpy(&tag, (const char *)msg +
			       offsetof(struct wf_net_status_req, tag), 8);
			tag = le64toh(tag);
		}
		wf_tgt_conn_status_reply(c, tag, status);
	}
}

/* The refusal: the answer the peer waits for, one log line, closed. */
static void refuse(struct wf_tgt_conn *c, int op, const void *msg, uint32_t len,
		   const char *why)
{
	struct wf_tgt_reactor *r = c->r;
	char line[192];

	answer(c, op, msg, len, WF_WS_AUTH | WF_WS_DNR);
	r->stats.auth_refused++;
	snprintf(line, sizeof(line), "authentication refused: %s", why);
	explicit_bzero(&c->ax, sizeof(c->ax));
	wf_tgt_conn_close(c, line);
}

int wf_tgt_auth_offer(struct wf_tgt_reactor *r, const struct wf_auth *a,
		      uint64_t cluster_id, struct wf_auth_ctx *ax,
		      struct wf_auth_hdr *out, char *why, size_t len)
{
	struct wf_auth ch = { .step = WF_AUTH_CHALLENGE };
	const struct wf_key *k = wf_keyring_find(&r->keyring, a->name);

	if (!k || wf_tgt_key_revoked(r->map, a->name)) {
		snprintf(why, len, "key %s %s", a->name, k ?
			 "is revoked in the map" : r->cfg->keyring ?
			 "is not in the keyring" : "offered, and this target "
			 "has no keyring");
		ch.status = WF_WS_AUTH | WF_WS_DNR;
		wf_auth_encode(&ch, out);
		return -EACCES;
	}
	memset(ax, 0, sizeof(*ax));
	ax->cluster_id = cluster_id;
	memcpy(ax->name, a->name, sizeof(ax->name));
	ax->client_id = a->id;
	ax->target_id = r->cfg->id;
	memcpy(ax->nc, a->nonce, sizeof(ax->nc));
	if (wf_auth_random(ax->nt, sizeof(ax->nt)) ||
	    wf_auth_mac(k->secret, ax, 1, ch.mac)) {
		snprintf(why, len, "no random bytes");
		return -EIO;
	}
	ch.id = r->cfg->id;
	memcpy(ch.nonce, ax->nt, sizeof(ch.nonce));
	wf_auth_encode(&ch, out);
	return 0;
}

int wf_tgt_auth_proof(struct wf_tgt_reactor *r, struct wf_auth_ctx *ax,
		      const struct wf_auth *a, struct wf_auth_hdr *out,
		      char *why, size_t len)
{
	const struct wf_key *k = wf_keyring_find(&r->keyring, ax->name);
	struct wf_auth res = { .step = WF_AUTH_RESULT };
	int ret = 0;

	if (!k || !wf_auth_check(k->secret, ax, 0, a->mac)) {
		snprintf(why, len, "key %s: wrong proof (another secret under "
			 "that name, or a replayed transcript)", ax->name);
		res.status = WF_WS_AUTH | WF_WS_DNR;
		ret = -EACCES;
	}
	wf_auth_encode(&res, out);
	return ret;
}

/* Send h on c; false (c closed) when it cannot. */
static bool send_auth(struct wf_tgt_conn *c, const struct wf_auth_hdr *h)
{
	if (wf_send(c->ep, h, sizeof(*h), WF_TGT_WR_AUTH)) {
		wf_tgt_conn_close(c, "no send credit for an AUTH answer");
		return false;
	}
	c->sends_out++;
	return true;
}

/* An AUTH refusal h goes, then the same as refuse(). */
static void refused(struct wf_tgt_conn *c, const struct wf_auth_hdr *h,
		    const char *why)
{
	if (!wf_send(c->ep, h, sizeof(*h), WF_TGT_WR_AUTH))
		c->sends_out++;
	refuse(c, WF_OP_AUTH, NULL, 0, why);
}

/* OFFER: the key must be known and not revoked; the CHALLENGE carries
 * our nonce and our proof. */
static void on_offer(struct wf_tgt_conn *c, const struct wf_auth *a)
{
	struct wf_tgt_reactor *r = c->r;
	struct wf_auth_hdr h;
	char why[128];
	int ret;

	ret = wf_tgt_auth_offer(r, a, r->map->map.cluster_id, &c->ax, &h, why,
				sizeof(why));
	if (ret == -EACCES) {
		refused(c, &h, why);
		return;
	}
	if (ret) {
		wf_tgt_conn_close(c, why);
		return;
	}
	if (send_auth(c, &h))
		c->auth = 1;
}

/* PROOF: checked against the key as the keyring holds it now. */
static void on_proof(struct wf_tgt_conn *c, const struct wf_auth *a)
{
	struct wf_tgt_reactor *r = c->r;
	struct wf_auth_hdr h;
	char why[160];

	if (wf_tgt_auth_proof(r, &c->ax, a, &h, why, sizeof(why))) {
		refused(c, &h, why);
		return;
	}
	if (!send_auth(c, &h))
		return;
	c->auth = 2;
	memcpy(c->key_name, c->ax.name, sizeof(c->key_name));
	c->peer_key = wf_tgt_key_is_peer(r, c->key_name);
	explicit_bzero(&c->ax, sizeof(c->ax));
	r->stats.auth_ok++;
}

void wf_tgt_auth_msg(struct wf_tgt_conn *c, const void *msg, uint32_t len)
{
	struct wf_auth a;
	uint32_t reason = 0;

	if (wf_auth_decode(msg, len, &a, &reason) ||
	    a.step != (c->auth == 0 ? WF_AUTH_OFFER : WF_AUTH_PROOF) ||
	    c->auth == 2) {
		c->r->stats.closed_bad++;
		wf_tgt_conn_close(c, c->auth == 2 ? "AUTH after authentication" :
				  "bad AUTH message");
		return;
	}
	if (a.step == WF_AUTH_OFFER)
		on_offer(c, &a);
	else
		on_proof(c, &a);
}

bool wf_tgt_auth_gate(struct wf_tgt_conn *c, int op, const void *msg,
		      uint32_t len)
{
	struct wf_tgt_reactor *r = c->r;

	if (c->auth == 2 || !wf_tgt_auth_required(r))
		return true;
	if (!r->cfg->keyring)
		refuse(c, op, msg, len, "the map requires keys and this target "
		       "has no keyring (--keyring)");
	else
		refuse(c, op, msg, len, c->auth ? "a message before the "
		       "authentication finished" : "no key offered (this "
		       "target requires keys)");
	return false;
}

int wf_tgt_access_build(struct wf_tgt_conn *c)
{
	const struct wf_map *m = &c->r->map->map;
	/* Targets prove a target's key (the map's peer_keys, or our own
	 * where targets share one): replica writes, CSUMs and recovery
	 * copies are theirs on every volume. */
	bool peer = c->auth == 2 && c->peer_key;
	uint32_t a = 0;

	if (c->nperm < m->nvolumes || !c->perm) {
		uint8_t *np = realloc(c->perm, m->nvolumes ? m->nvolumes : 1);

		if (!np)
			return -ENOMEM;
		c->perm = np;
	}
	c->nperm = m->nvolumes;
	for (uint32_t v = 0; v < m->nvolumes; v++) {
		uint64_t id = m->volumes[v].id;
		bool listed = false;
		uint8_t p = WF_TGT_ACC_NONE;

		/* access[] is sorted by volume id; so is nothing else here. */
		for (a = 0; a < m->naccess; a++) {
			if (m->access[a].volume != id)
				continue;
			listed = true;
			if (c->auth == 2 && !strcmp(m->access[a].key, c->key_name))
				p = m->access[a].ro ? WF_TGT_ACC_RO : WF_TGT_ACC_RW;
		}
		c->perm[v] = peer || !listed ? WF_TGT_ACC_RW : p;
	}
	return 0;
}

void wf_tgt_auth_recheck(struct wf_tgt_reactor *r)
{
	for (uint32_t i = 0; i < r->cfg->max_conns; i++) {
		struct wf_tgt_conn *c = &r->conns[i];
		char why[128];

		if (c->state != CONN_LIVE && c->state != CONN_HELLO)
			continue;
		if (c->auth == 2)
			c->peer_key = wf_tgt_key_is_peer(r, c->key_name);
		if (c->state == CONN_LIVE && wf_tgt_access_build(c)) {
			wf_tgt_conn_close(c, "out of memory for its access table");
			continue;
		}
		if (c->auth != 2) {
			/* Keys became required while it was unauthenticated. */
			if (c->state == CONN_LIVE && wf_tgt_auth_required(r))
				wf_tgt_conn_close(c, "keys are required now and "
						  "this connection has none");
			continue;
		}
		if (wf_tgt_key_revoked(r->map, c->key_name))
			snprintf(why, sizeof(why), "key %s revoked (epoch %llu)",
				 c->key_name, (unsigned long long)r->map->epoch);
		else if (!wf_keyring_find(&r->keyring, c->key_name))
			snprintf(why, sizeof(why), "key %s is no longer in the "
				 "keyring", c->key_name);
		else
			continue;
		r->stats.auth_revoked++;
		wf_tgt_conn_close(c, why);
	}
}

void wf_tgt_peer_refuse(struct wf_tgt_conn *c, int op, const void *msg,
			uint32_t len)
{
	char why[192];

	answer(c, op, msg, len, WF_WS_ACCESS | WF_WS_DNR);
	WF_TGT_ADD(c->r->stats.access_denied, 1);
	snprintf(why, sizeof(why), "refused: key %s is not a target's key "
		 "(the map's peer_keys) and sent %s", c->key_name,
		 op == WF_OP_MAP_PUT ? "a MAP_PUT" : op == WF_OP_LEASE ?
		 "a LEASE" : op == WF_OP_MAP_GET ? "a MAP_GET" :
		 op == WF_OP_CSUM ? "a CSUM" : "a forwarded replica request");
	if (op != WF_OP_MAP_PUT) {
		wf_tgt_conn_close(c, why);
	} else if (!c->peer_refused) {
		c->peer_refused = true;
		wf_tgt_log("connection %u (client %llu, %s): %s (answered ACCESS)",
			   c->idx, (unsigned long long)c->client_id, c->peer, why);
	}
}

void wf_tgt_auth_gone(struct wf_tgt_conn *c)
{
	if (c->state != CONN_HELLO || c->auth != 1)
		return;
	/* The client checks our proof first: a client that leaves after
	 * the CHALLENGE holds another secret under that name (or we do). */
	c->r->stats.auth_refused++;
	wf_tgt_log("connection %u (client %llu, %s): authentication abandoned "
		   "by the peer after our CHALLENGE: key %s differs between it "
		   "and this target's keyring", c->idx,
		   (unsigned long long)c->ax.client_id, c->peer, c->ax.name);
	explicit_bzero(&c->ax, sizeof(c->ax));
}
