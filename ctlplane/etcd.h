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

int wf_etcd_delete(struct wf_etcd *e, const char *key);

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
