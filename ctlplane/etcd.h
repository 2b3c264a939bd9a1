/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small etcd v3 client over its JSON gateway (HTTP POST to /v3/...,
 * libcurl; JSON with jansson; keys and values base64 on the wire), for the
 * control plane (docs/control-plane.md): the map under one key, changed by
 * compare-and-swap; targets' registrations under leases; watching the map.
 * A leaf module: it depends on nothing of ours.
 *
 * Every call blocks (bounded by the handle's timeout) and is for control
 * threads, never a data path.  One handle per thread.  Returns 0 or
 * -errno: -ENOENT (no such key), -ECANCELED (a compare failed),
 * -ETIMEDOUT, -ECONNREFUSED / -EHOSTUNREACH (etcd unreachable), -EPROTO
 * (an answer that is not what etcd sends), -ENOMEM.
 */
#ifndef WEFT_CTLPLANE_ETCD_H
#define WEFT_CTLPLANE_ETCD_H

#include <stddef.h>
#include <stdint.h>

struct wf_etcd;

/* url: "http://HOST:PORT" of one etcd member. */
int  wf_etcd_open(const char *url, unsigned timeout_ms, struct wf_etcd **out);
void wf_etcd_close(struct wf_etcd *e);
/* The last error etcd or the transport gave, for messages. */
const char *wf_etcd_error(const struct wf_etcd *e);

struct wf_etcd_kv {
	char    *value;         /* malloc'd, NUL-terminated (len bytes before) */
	size_t   len;
	int64_t  mod_rev;       /* revision of its last change */
	int64_t  lease;         /* 0: none */
};

void wf_etcd_kv_free(struct wf_etcd_kv *kv);

/* The value of key; *rev (may be NULL): the store's revision then. */
int wf_etcd_get(struct wf_etcd *e, const char *key, struct wf_etcd_kv *kv,
		int64_t *rev);

/* Put key = val (len bytes) iff the key's mod_revision is expect (0: the
 * key must not exist; -1: unconditionally), attached to lease (0: none).
 * -ECANCELED when the compare failed; *rev (may be NULL): the revision of
 * the write. */
int wf_etcd_put(struct wf_etcd *e, const char *key, const void *val, size_t len,
		int64_t expect, int64_t lease, int64_t *rev);

/* The same, and only while guard exists with create_revision guard_rev
 * (a leader's key: a keeper whose lease expired lost it, so its write is
 * refused, -ECANCELED). */
int wf_etcd_put_guarded(struct wf_etcd *e, const char *key, const void *val,
			size_t len, int64_t expect, const char *guard,
			int64_t guard_rev, int64_t *rev);

int wf_etcd_delete(struct wf_etcd *e, const char *key);

/*
 * Leader election (etcd's v3election service): campaign for name with a
 * lease, blocking up to ms until this candidate leads; *leader: the
 * leader key (malloc'd: free it) and its create revision.  0 (leading),
 * -ETIMEDOUT (not yet: campaign again; etcd drops the candidacy with the
 * request), or -errno.  Resign gives the leadership up at once.
 */
struct wf_etcd_leader {
	char    *key;
	int64_t  rev;
};
int  wf_etcd_campaign(struct wf_etcd *e, const char *name, int64_t lease,
		      const char *value, unsigned ms, struct wf_etcd_leader *leader);
int  wf_etcd_resign(struct wf_etcd *e, const char *name,
		    const struct wf_etcd_leader *leader, int64_t lease);
void wf_etcd_leader_free(struct wf_etcd_leader *l);

/* Every key under prefix: cb(arg, key, kv) for each (key NUL-terminated);
 * returns how many, or -errno. */
int wf_etcd_list(struct wf_etcd *e, const char *prefix,
		 void (*cb)(void *arg, const char *key, const struct wf_etcd_kv *kv),
		 void *arg);

/* Leases: grant one of ttl_s seconds; keep it alive (*ttl: seconds left,
 * 0 when it has expired: -ENOENT then); revoke it. */
int wf_etcd_lease_grant(struct wf_etcd *e, unsigned ttl_s, int64_t *id);
int wf_etcd_lease_keepalive(struct wf_etcd *e, int64_t id, int64_t *ttl);
int wf_etcd_lease_revoke(struct wf_etcd *e, int64_t id);

/* Wait up to ms for a change of key at a revision after after_rev: 1 (it
 * changed: read it again), 0 (nothing in time), or -errno. */
int wf_etcd_watch(struct wf_etcd *e, const char *key, int64_t after_rev,
		  unsigned ms);

#endif
