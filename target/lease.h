/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Read leases (lease.c, docs/replication.md "Read leases"): part of
 * target/target.h, which includes it where the types it uses are declared;
 * not included on its own.
 */
#ifndef WEFT_TARGET_LEASE_H
#define WEFT_TARGET_LEASE_H

/* Which grant a PG's hold is for: the asker's id + 1 and the epoch the
 * lease was granted in; id1 0: none, WF_TGT_HOLD_ANY: several or unknown
 * (a start's hold, PGs split or merged): no release ends it. */
struct wf_tgt_hold_by {
	uint32_t id1;
	uint64_t epoch;
};
#define WF_TGT_HOLD_ANY UINT32_MAX

/* Per reactor: writes to the PGs of one pool held until (ns). */
struct wf_tgt_hold {
	uint32_t  pool_id, pg_num;
	uint64_t *until;                /* [pg_num] */
	struct wf_tgt_hold_by *by;      /* [pg_num], or NULL: not releasable */
};

/* Data path: until when writes to (pool, pg) wait (ns; 0: they do not). */
static inline uint64_t wf_tgt_hold_until(const struct wf_tgt_reactor *r,
					 uint32_t pool, uint32_t pg);

/* After a map load (every reactor), the map r->map: lease slots of its
 * targets, the members to ask (reactor 0).  0 or -ENOMEM. */
int  wf_tgt_lease_map(struct wf_tgt_reactor *r);
/* Before r->map becomes nw: the writes to hold, for the leases granted in
 * r->map's epoch to targets that lead a PG there and not in nw. */
void wf_tgt_hold_compute(struct wf_tgt_reactor *r, const struct wf_tgt_map *nw);

/* At start, before the reactors: read RUN_DIR/target-ID.leases; when it
 * names this boot and a time still ahead, t->restart_until is then (at
 * most the longest lease and its margin from now) and one line says so.
 * Then keeps the file open for wf_tgt_lease_ask.  Never fails: without
 * the file no lease is granted (answered BUSY). */
void wf_tgt_leases_open(struct wf_tgt *t);

/* Reactor init, after wf_tgt_lease_map: hold writes to PGs with more
 * than one acting member until t->restart_until. */
void wf_tgt_hold_restart(struct wf_tgt_reactor *r);
void wf_tgt_lease_fini(struct wf_tgt_reactor *r);
/* Reactor 0: ask the members whose lease is due (all of them if force). */
void wf_tgt_lease_tick(struct wf_tgt_reactor *r, uint64_t now, bool force);
/* A read found no lease: reactor 0 asks at once. */
void wf_tgt_lease_urge(struct wf_tgt_reactor *r);
/* On a link (peer.c): a WF_OP_LEASE answer, a WF_OP_MAP_PUT chunk. */
void wf_tgt_lease_answer(struct wf_tgt_peer *p, const void *msg, uint32_t len);
void wf_tgt_map_chunk(struct wf_tgt_peer *p, const void *msg, uint32_t len);
/* On an accepted connection (conn.c): a WF_OP_LEASE ask, a WF_OP_MAP_GET. */
void wf_tgt_lease_ask(struct wf_tgt_conn *c, const void *msg, uint32_t len);
void wf_tgt_map_get(struct wf_tgt_conn *c, const void *msg, uint32_t len);
/* Every reactor, once per loop turn and before holding a write: end the
 * holds of grants released since we last looked (cheap when none). */
void wf_tgt_hold_released(struct wf_tgt_reactor *r);
/* Reactor 0: give back the leases of older epochs once every reactor
 * serves ours; nonzero while some are still to go. */
unsigned wf_tgt_release_tick(struct wf_tgt_reactor *r, uint64_t now);
/* Reactor 0, a link's GRANT (peer.c): what it said it understands. */
void wf_tgt_lease_link_up(struct wf_tgt_peer *p);
/* Release the held writes whose hold lapsed at now, or whose epoch or
 * connection is gone (conn.c); how many.  *started (unless NULL) grows by
 * those that started (the others were answered). */
unsigned wf_tgt_hold_run(struct wf_tgt_reactor *r, uint64_t now, unsigned *started);
/* Where a map pulled from a peer is kept: RUN_DIR/target-ID.pulled.conf
 * (a reload loads the newer of it and the map file).  0 or -ENAMETOOLONG. */
int  wf_tgt_pulled_path(const struct wf_tgt_cfg *cfg, char *buf, size_t len);
/* Send msg on the live link p (lease.c's asks): 0 or -errno. */
int  wf_tgt_peer_send(struct wf_tgt_peer *p, const void *msg, uint32_t len);
/* Start connecting p if it is idle and its backoff is over. */
void wf_tgt_peer_wake(struct wf_tgt_peer *p);

/* Data path: may the primary serve a read of the PG whose other acting
 * members (map indices) are others[0 .. n)?  Each must hold a lease for
 * r->map's epoch valid at now: two loads and two compares per member. */
static inline bool wf_tgt_lease_ok(const struct wf_tgt_reactor *r,
				   const uint32_t *others, unsigned n, uint64_t now);

#endif
