/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-target, private to target/: configuration, the map epoch the target
 * serves, the request validator (a pure function, also driven by
 * fuzz/fuzz_target_req.c), connections, requests and the reactor.
 *
 * Threading: --cores N reactors, each a thread owning one queue of the
 * store (its io_uring), its fabric contexts, listeners, connections,
 * requests, slots and its own copy of the map.  Nothing here takes a lock;
 * reactors share only struct wf_tgt (read-mostly: the stop and reload
 * generation, counters read by status) and the store, whose slow path
 * locks (target/store.h).  See docs/target.md ("Cores").
 */
#ifndef WEFT_TARGET_TARGET_H
#define WEFT_TARGET_TARGET_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fabric/fabric.h"
#include "proto/auth.h"
#include "proto/wire.h"
#include "placement/map.h"
#include "placement/placement.h"
#include "target/store.h"

#define WF_TGT_DEFAULT_RUN_DIR   "/run/weft"
#define WF_TGT_DEFAULT_SLOTS     32u
#define WF_TGT_DEFAULT_SLOT_SIZE (128u * 1024)
#define WF_TGT_DEFAULT_MAX_CONNS 16u
#define WF_TGT_MAX_SLOTS         1024u
#define WF_TGT_MAX_SLOT_SIZE     (16u << 20)
#define WF_TGT_MAX_CONNS         4096u
/* A connection that sends no HELLO within this long is closed, so idle
 * sockets cannot hold the connection pool. */
#define WF_TGT_HELLO_MS          5000u
/* Limits that keep one peer from starving the others (docs/target.md,
 * "Limits"): a connection with no traffic this long is closed; when the
 * pool (or a peer's share) is full, the connection idle the longest, at
 * least this long, makes room; idle TCP peers are probed this often. */
#define WF_TGT_DEFAULT_IDLE_MS   300000u
#define WF_TGT_DEFAULT_EVICT_MS  1000u
#define WF_TGT_DEFAULT_KEEPALIVE 30u
/* A connection that sent this many invalid requests is closed. */
#define WF_TGT_MAX_INVALID       16u
/* Error replies that need no slot (slot index out of the ring): send
 * credits kept aside for them beyond the 2 per slot (data + reply). */
#define WF_TGT_SPARE_SENDS       (WF_TGT_MAX_INVALID + 4u)

struct wf_tgt_cfg {
	const char *map_path;
	uint32_t    id;
	bool        foreground;
	bool        syslog;             /* --syslog */
	int         log_level;          /* WF_TGT_LOG_* (--log-level) */
	const char *pid_file;           /* NULL: none */
	const char *run_dir;
	unsigned    cores;
	uint32_t    backend;            /* enum wf_backend of the map address */
	uint32_t    slots;              /* per connection */
	uint32_t    slot_size;          /* bytes, multiple of 4096 */
	uint32_t    max_conns;
	uint32_t    max_conns_per_peer; /* 0: only max_conns */
	/* Limits per authenticated key, per reactor (conn.c, "Limits per
	 * key"; 0: none of its own): connections, staging slots granted to
	 * them together, requests of theirs in service at once. */
	uint32_t    max_conns_per_key;
	uint32_t    max_slots_per_key;
	uint32_t    max_inflight_per_key;
	uint32_t    idle_ms;            /* 0: never closed for idleness */
	uint32_t    evict_ms;
	uint32_t    keepalive_s;        /* 0: no TCP keepalive */
	gid_t       trust_gid;          /* --trust-group; (gid_t)-1: none */
	uint32_t    poll_us;            /* busy-poll this long before sleeping */
	uint32_t    recovery_qd;        /* recovery copies in flight per reactor */
	uint32_t    recovery_mbps;      /* MiB/s per reactor, 0: no limit */
	uint32_t    pg_log;             /* entries of each PG's log of recent
	                                 * writes, per reactor (0: no log) */
	uint32_t    cache;              /* enum wf_store_cache */
	bool        format, force;
	const char *listen_override;    /* --listen ADDR: instead of the map's */
	const char *etcd_url;           /* --etcd URL: the map from etcd (NULL:
	                                 * the map file alone) */
	const char *etcd_prefix;        /* --etcd-prefix, default "/weft/" */
	uint32_t    etcd_ttl;           /* --etcd-ttl: lease seconds */
	const char *metrics;            /* --metrics HOST:PORT, or NULL */
	/* --fault-exit-after-local-write N (tests only, 0: off): the target
	 * kills itself (SIGKILL) when its own store write of the Nth
	 * replicated client write it leads completes, before any answer
	 * goes out: a primary that dies between its write and its reply
	 * (tests/integration/test_sys_repl.c).  Counted across reactors in
	 * wf_tgt.fault_writes. */
	uint32_t    fault_after_writes;
	/* --fault-no-lease (tests only): a target of a build before read
	 * leases, for the rolling upgrade's tests: its links announce no
	 * features (WF_LINK_FEATURES), its GRANTs none, it asks and grants
	 * no lease and closes a connection that sends LEASE or MAP_GET. */
	bool        fault_no_lease;
	const char *keyring;            /* --keyring F (or $WEFT_KEYRING): keys
	                                 * are required (docs/security.md) */
	const char *key_name;           /* --key NAME (or $WEFT_KEY): ours, on
	                                 * links to other targets */
	int         ready_fd;           /* daemon: write the startup result here */
	uint32_t    read_lease_ms;      /* --read-lease-ms: read leases this
	                                 * long (0: off, reads unfenced;
	                                 * docs/replication.md, "Read leases") */
	bool        read_lease_set;     /* given: wins over the map's
	                                 * read_lease_ms */
};

/* Read leases (lease.c, docs/replication.md "Read leases"). */
#define WF_TGT_DEFAULT_LEASE_MS  2000u
/* At most: a write held for a lease must be answered well before a
 * primary gives up on its forward (4 s, peer.c), and a lease must lapse
 * before the keeper's etcd lease (5 s by default) marks its holder down. */
#define WF_TGT_MAX_LEASE_MS      3000u
/* Lease state kept for this many other targets (by id). */
#define WF_TGT_LEASES            1024u
/* A member that granted a lease of len ns at g holds writes to the PGs its
 * asker leaves until g + len + this: the clocks of two hosts may run at
 * rates a little apart (ppm; 1/16 is far beyond that), plus scheduling. */
#define WF_TGT_LEASE_MARGIN(len) ((len) / 16 + 10000000ull)

/* ---- the map epoch (req.c) -------------------------------------------- */

struct wf_tgt_vol {
	uint64_t id;
	uint64_t size;
	uint32_t idx;                   /* index into map.volumes */
};

/*
 * Everything the validator needs from one map epoch.  Heap allocated and
 * never moved: the placer points at the map inside it.
 */
struct wf_tgt_map {
	struct wf_map      map;
	struct wf_placer   pl;
	struct wf_pg_table table;
	struct wf_tgt_vol *vols;        /* sorted by id, for bisection */
	uint32_t           nvols;
	int32_t            self;        /* our index in map.targets, -1 none */
	uint64_t           epoch;
	uint32_t           extent_size;
	bool               derived;     /* table derived from the last epoch's */
	struct wf_pg_derive derive;     /* then: what was placed again */
};

/* Load a map file and compile it for target id.  0 or -errno with a
 * message in err.  *out is freed with wf_tgt_map_free(). */
int  wf_tgt_map_load(const char *path, uint32_t target_id,
		     struct wf_tgt_map **out, char *err, size_t errlen);
/* The same, deriving the PG table from prev's (the epoch in force, which
 * must stay alive meanwhile; NULL: build it) when only a few targets'
 * state or weight changed: wf_pg_table_derive(). */
int  wf_tgt_map_load_next(const char *path, uint32_t target_id, const struct wf_tgt_map *prev,
			  struct wf_tgt_map **out, char *err, size_t errlen);
/* The same from a loaded map (takes ownership of *map's arrays). */
int  wf_tgt_map_build(struct wf_map *map, uint32_t target_id,
		      struct wf_tgt_map **out, char *err, size_t errlen);
void wf_tgt_map_free(struct wf_tgt_map *m);
/* Index into m->map.volumes of volume id, or -ENOENT. */
int  wf_tgt_map_volume(const struct wf_tgt_map *m, uint64_t id);

/* Forwards of one request at most: the acting set's secondaries and the
 * members of the up set being brought up to date (recover.c). */
#define WF_TGT_MAX_FWD (2 * WF_MAX_REPLICAS - 1)

/* ---- request validation (req.c): pure, no I/O ------------------------- */

/* What the parser decided. */
enum wf_tgt_verdict {
	WF_TGT_OK = 0,          /* valid: serve it */
	WF_TGT_REJECT,          /* answer with out->status */
	WF_TGT_NEWER,           /* the sender's epoch is newer than the map:
	                         * reload it and parse again; still newer
	                         * after that: answer WF_WS_BUSY */
	WF_TGT_MALFORMED,       /* not a decodable request: close the
	                         * connection */
};

/* Reasons beyond the wire decoder's (enum wf_wire_reason). */
enum {
	WF_TGT_R_STALE = 64,    /* sender's epoch is older */
	WF_TGT_R_NEWER,         /* sender's epoch is newer */
	WF_TGT_R_NOVOL,         /* volume not in the map */
	WF_TGT_R_RANGE,         /* beyond the end of the volume */
	WF_TGT_R_EXTENT,        /* crosses an extent boundary */
	WF_TGT_R_NOTPRIM,       /* this target is not the PG's primary */
	WF_TGT_R_REPL,          /* replica write for a PG this target is not
	                         * a secondary of */
	WF_TGT_R_DEGRADED,      /* fewer acting members than min_size */
};

struct wf_tgt_limits {
	uint32_t slot_count;    /* granted to this connection */
	uint32_t slot_size;
};

struct wf_tgt_parsed {
	struct wf_req req;      /* host order (valid unless MALFORMED) */
	uint16_t status;        /* REJECT: wire status, maybe | WF_WS_DNR */
	uint32_t reason;        /* enum wf_wire_reason or WF_TGT_R_* */
	bool     slot_ok;       /* req.slot < slot_count: the reply may use
	                         * the slot's request struct */
	int32_t  vol_idx;       /* OK (not FLUSH): index into map.volumes */
	/* OK WRITE or DISCARD from a client, at the primary: the other
	 * acting members, then the up set's members being brought up to date
	 * (target indices), to forward it to. */
	uint32_t secondaries[WF_TGT_MAX_FWD];
	uint8_t  nsec;
	/* OK READ, WRITE, DISCARD (not FLUSH): the PG, and for a client's
	 * request at the primary the other acting members (read leases). */
	uint32_t pool, pg;
	uint32_t others[WF_MAX_REPLICAS];
	uint8_t  nothers;
};

/*
 * Parse and validate one received message as a request: the wire decoder,
 * then epoch, slot, volume, range, extent boundary and primary checks, in
 * that order (see docs/protocol.md, "Validation").  Never touches anything
 * but its arguments; safe on any bytes.  Returns enum wf_tgt_verdict.
 */
int wf_tgt_req_parse(const void *msg, size_t len,
		     const struct wf_tgt_limits *lim,
		     const struct wf_tgt_map *m, struct wf_tgt_parsed *out);
const char *wf_tgt_reason_name(uint32_t reason);

/* ---- the process: what reactors share (reactor.c) --------------------- */

struct wf_tgt_reactor;

#define WF_TGT_MAX_CORES    256u
#define WF_TGT_CLIENT_HASH  256u

/* Counters other threads read (status): one writer, atomic stores. */
#define WF_TGT_ADD(field, n) \
	__atomic_store_n(&(field), (field) + (n), __ATOMIC_RELAXED)
#define WF_TGT_GET(field)    __atomic_load_n(&(field), __ATOMIC_RELAXED)

/*
 * What this target knows of the leases between it and one other target
 * (struct wf_tgt.leases, by target id; claimed once, never moved).  Reactor
 * 0 writes, every reactor reads, no lock:
 *   held:    that target confirmed our epoch `epoch`, valid before `until`
 *            (ns, measured from when we sent the ask).  Written until = 0,
 *            epoch, until, with release order, so a reader that sees the
 *            epoch sees no older until.
 *   granted: the last two leases we granted it (its epoch, when, length),
 *            newest in [0]; a map load holds writes for what they cover.
 *   released: it gave back every lease we granted it in an epoch below
 *            rel_epoch (a release, "Early release"): those hold nothing.
 *            Only grows; any reactor may raise it (CAS).
 * A member of an older build (no WF_FEAT_LEASE on reactor 0's link) is
 * held as confirming every epoch: until UINT64_MAX (reads are served as
 * before leases, docs/replication.md "Mixed builds").
 */
struct wf_tgt_lease {
	uint32_t id1;                   /* target id + 1; 0: free */
	uint64_t epoch, until;
	uint64_t g_epoch[2], g_ns[2], g_len[2];
	uint64_t rel_epoch;
};

struct wf_tgt {
	const struct wf_tgt_cfg *cfg;
	unsigned n;                     /* reactors */
	struct wf_tgt_reactor **r;      /* [n] */
	pthread_t *th;                  /* [n]: 1 .. started (main.c) */
	unsigned started;
	/* Bumped (then every reactor's wake fd written) when stop or
	 * reload_gen changes; a reactor compares it once per loop turn. */
	uint32_t gen;
	uint32_t reload_gen;
	uint32_t fault_writes;          /* cfg->fault_after_writes' count (atomic) */
	uint64_t epoch;                 /* the epoch reactor 0 serves (atomic:
	                                 * for the etcd agent) */
	uint32_t etcd_state;            /* WF_CTL_ETCD_* (atomic) */
	/* A scrub asked on the control socket (ctl.c): reactors start a
	 * pass when scrub_gen differs from theirs (written before the
	 * bump: scrub_vol, scrub_flags). */
	uint32_t scrub_gen;
	uint64_t scrub_vol;
	uint32_t scrub_flags;
	int      stop;                  /* 0, or the signal that asked */
	unsigned draining;              /* reactors whose store I/O is not
	                                 * drained yet (stop) */
	/* Closing connections with store I/O still in flight, by a hash of
	 * their client_id: a HELLO of that client waits (conn.c). */
	uint32_t closing_io[WF_TGT_CLIENT_HASH];
	/* Read leases (lease.c): with every other target, by id. */
	struct wf_tgt_lease leases[WF_TGT_LEASES];
	uint32_t lease_urgent;          /* a read found none: reactor 0 asks */
	uint32_t release_gen;           /* bumped after a rel_epoch grew: each
	                                 * reactor ends the holds released */
	uint64_t newest_epoch;          /* the newest any reactor loaded */
	uint64_t peer_keys_warned;      /* the last epoch a reload refused for
	                                 * its peer_keys, said once (atomic) */
	/* RUN_DIR/target-ID.leases (lease.c): the latest expiry of a lease
	 * granted, kept across a restart of the process. */
	bool     lease_file;            /* lease_fd is open */
	int      lease_fd;
	char     boot_id[36];           /* this boot's (leasefile.h) */
	uint64_t lease_saved;           /* CLOCK_BOOTTIME ns in the file (atomic) */
	uint64_t restart_until;         /* at start: hold writes until (ns) */
};

/* ---- connections and requests (conn.c) -------------------------------- */

struct wf_tgt_conn;

/* What a fabric endpoint's user pointer is: both structs start with it. */
enum wf_tgt_ep_kind {
	WF_TGT_EP_CONN = 1,     /* struct wf_tgt_conn: a client (or a peer
	                         * target forwarding to us) */
	WF_TGT_EP_PEER,         /* struct wf_tgt_peer: our link to a peer */
};

struct wf_tgt_peer;
struct wf_tgt_req;

/* One forward of a request to one secondary (peer.c has the diagram). */
enum wf_tgt_fwd_state {
	FWD_IDLE = 0,   /* not in use */
	FWD_WAIT,       /* on the link's wait list: no grant or slot yet */
	FWD_SENT,       /* posted: waiting for the reply */
	FWD_ANSWERED,   /* replied: waiting for our own posts to complete */
};

struct wf_tgt_fwd {
	struct wf_tgt_req  *q;
	struct wf_tgt_peer *p;
	struct wf_tgt_fwd  *next;       /* the link's wait list */
	uint64_t sent_ns;
	uint32_t slot, gen;             /* on the link */
	uint32_t crc;                   /* CSUM: the secondary's CRC32C */
	uint16_t status;                /* the secondary's answer */
	uint8_t  state;                 /* enum wf_tgt_fwd_state */
	uint8_t  local_ops;             /* our posts not yet completed */
};

/* One request per slot: every request holds its slot from the message
 * that names it until its REPLY is posted. */
enum wf_tgt_rq_state {
	RQ_FREE = 0,    /* the slot is idle: no request of the peer holds it */
	RQ_STORE,       /* store I/O in flight (read into the slot, write from
	                 * it, flush, discard; a FUA discard also its flush) */
	RQ_ORDER,       /* a replicated write or discard that overlaps an
	                 * earlier one still in flight: waits on r->order so
	                 * every replica applies the two in the same order */
	RQ_FORWARD,     /* a replicated write or discard: our own store I/O
	                 * and the forwards to the secondaries in flight
	                 * (parts); the reply goes when all are in */
	RQ_PUSH,        /* READ done: wf_write the slot into the initiator's
	                 * buffer (waits here on the pending list while the
	                 * endpoint has no send credit) */
	RQ_REPLY,       /* post the REPLY (waits here on the pending list
	                 * while there is no send credit); then RQ_FREE */
	RQ_KEYWAIT,     /* accepted, its key at --max-inflight-per-key: waits
	                 * on the key's list (struct wf_tgt_keyuse), then
	                 * goes on as a newly accepted request would */
	RQ_HELD,        /* a write or discard to a PG whose former primary
	                 * may still hold a read lease we granted: waits on
	                 * r->hold_head until it lapsed (lease.c), then
	                 * starts like a new one */
};

struct wf_tgt_req {
	struct wf_store_req  sreq;      /* embedded: container_of in done */
	struct wf_tgt_conn  *conn;
	struct wf_tgt_req   *next;      /* pending list */
	uint64_t tag, volume, offset;
	struct wf_rkey buf;             /* READ: initiator's buffer */
	uint32_t length, slot, crc;
	uint16_t flags, status;
	uint8_t  op, state;
	bool     fua_flush;             /* DISCARD|FUA: flush after discard */
	bool     repair;                /* recovery ring: a scrub's repair
	                                 * (scrub.c), not a recovery copy */
	uint8_t  tries;                 /* recovery ring: a scrub check's
	                                 * earlier attempts */
	uint64_t t0;                    /* ns: accepted (latency, metrics) */
	bool     pending;
	bool     key_held;              /* counted in its key's inflight */
	struct wf_tgt_req *key_next;    /* RQ_KEYWAIT: the key's wait list */
	/* Replication (RQ_ORDER, RQ_FORWARD) */
	uint8_t  nfwd;                  /* forwards of this request */
	uint32_t pool, pg;              /* its PG (reads, writes, discards) */
	uint64_t epoch;                 /* the map epoch it was validated in */
	uint64_t log_seq;               /* its PG log entry's index + 1, 0:
	                                 * not logged (pglog.c) */
	uint8_t  parts;                 /* store I/O + forwards not done */
	uint16_t worst;                 /* first failing part's status */
	struct wf_tgt_req *ord_prev, *ord_next;   /* r->order */
	uint32_t secondaries[WF_TGT_MAX_FWD];
	struct wf_tgt_fwd fwd[WF_TGT_MAX_FWD];
};

enum wf_tgt_conn_state {
	CONN_FREE = 0,  /* in the pool */
	CONN_HELLO,     /* accepted: the first message must be a HELLO */
	CONN_LIVE,      /* granted: serving requests */
	CONN_CLOSING,   /* closing: waiting for the fabric's DISCONNECT and
	                 * for the store to finish with the slots */
};

/*
 * What one key holds on a reactor (conn.c, "Limits per key"): its live
 * connections, the slots granted to them, its requests in service and
 * those waiting for one of them to finish.  One entry per key in use,
 * from a table of --max-conns entries made at startup (a key in use has
 * a connection in the pool, so the table cannot run out).
 */
struct wf_tgt_keyuse {
	char     name[WF_KEY_NAME_MAX];
	uint32_t conns;                 /* granted and not closed */
	uint32_t slots;                 /* granted to those */
	uint32_t inflight;              /* requests in service */
	uint32_t refs;                  /* connections pointing here (until
	                                 * freed): the entry is free at 0 */
	bool     kicking;               /* key_kick runs: no nesting */
	struct wf_tgt_req *wait_head, *wait_tail;       /* RQ_KEYWAIT */
};

struct wf_tgt_conn {
	uint8_t             kind;       /* WF_TGT_EP_CONN */
	struct wf_tgt_reactor *r;
	struct wf_ep       *ep;
	unsigned            fab;        /* index into r->fab */
	uint32_t            idx;        /* ring index = registered buffer index */
	uint8_t             state;      /* enum wf_tgt_conn_state */
	bool                gone;       /* DISCONNECT seen */
	char               *ring;       /* slots * slot_size bytes */
	struct wf_tgt_limits lim;       /* granted */
	uint64_t            client_id;
	uint32_t            invalid;    /* invalid requests so far */
	uint32_t            store_inflight;
	uint32_t            npending;
	uint32_t            sends_out;  /* posted, completion not yet reaped */
	uint64_t            accepted_ns; /* CONN_HELLO: when, for the timeout */
	uint32_t            want_slots; /* held: from the HELLO */
	bool                held;       /* CONN_HELLO, HELLO received: the
	                                 * GRANT waits until no closing
	                                 * connection of the same client_id
	                                 * has store I/O in flight */
	struct wf_tgt_req  *reqs;       /* [cfg slots] */
	struct wf_tgt_conn *next_free;
	/* Idleness (conn.c, Limits): traffic (a message in, a send done) sets
	 * active; the once-a-second pass clears it and moves idle_since. */
	bool                active;
	bool                evicted;    /* closed to make room (r->evicting) */
	uint64_t            idle_since; /* ns */
	char                peer[64];   /* wf_ep_peer: "tcp:HOST", ... */
	bool                counted;    /* in closing_io (conn.c) */
	bool                recovery;   /* the reactor's recovery ring: its
	                                 * requests are recover.c's copies */
	/* Authentication (auth.c): 0 none yet, 1 challenged (waiting for
	 * the PROOF), 2 done, as key_name. */
	uint8_t             auth;
	char                key_name[WF_KEY_NAME_MAX];
	/* key_name is a target's (wf_tgt_key_is_peer): set at the PROOF
	 * and at every map load.  Only such a connection may send what
	 * targets send each other (wf_tgt_peer_op_ok). */
	bool                peer_key;
	bool                peer_refused;       /* its MAP_PUT refusal logged */
	struct wf_auth_ctx  ax;
	/* Per-volume access of this connection's key (auth.c), by index
	 * into the epoch's map.volumes: WF_TGT_ACC_*.  Built at the GRANT
	 * and again at every map load; read once per request. */
	uint8_t            *perm;
	uint32_t            nperm;
	/* Its key's usage (conn.c) from the GRANT until it is freed: NULL
	 * for connections without a key and those of the targets' key. */
	struct wf_tgt_keyuse *ku;
	uint32_t            ku_slots;   /* slots it counts there, 0 once
	                                 * closed */
	/* A map being pushed (mapput.c): its text so far. */
	char               *put_buf;
	uint32_t            put_total, put_got;
	uint64_t            put_epoch;
	/* A peer pulling our map (lease.c, WF_OP_MAP_GET): the text read
	 * at its offset-0 ask. */
	char               *get_buf;
	uint32_t            get_total;
};

/* Accept what l has pending into the pool, within its limits
 * (limits.c). */
void wf_tgt_conn_accept(struct wf_tgt_reactor *r, unsigned fab,
			struct wf_listener *l);
/* At the GRANT of c: within its key's limits (limits.c): true with *n,
 * the slots to grant, shrunk to what the key has left; false when c was
 * refused QUOTA (and closed). */
bool wf_tgt_key_admit(struct wf_tgt_conn *c, uint32_t *n);
/* Send c a GRANT that refuses it with status (the caller closes c). */
void wf_tgt_grant_refuse(struct wf_tgt_conn *c, uint16_t status);
void wf_tgt_conn_cqe(struct wf_tgt_reactor *r, const struct wf_cqe *c);
/* Retry requests waiting for send credits; returns how many advanced. */
/* wr_ids of a data connection's posts: only the kind matters (the conn
 * comes from ep); conn.c reads them in its completions. */
enum { WR_GRANT = 1, WR_REPLY, WR_DATA, WR_ERRREPLY };

unsigned wf_tgt_conn_run_pending(struct wf_tgt_reactor *r);
void wf_tgt_conn_close(struct wf_tgt_conn *c, const char *why);
/* A STATUS request on a data connection (ctl.c): answered directly,
 * holds no slot. */
void wf_tgt_conn_on_status(struct wf_tgt_conn *c, const void *msg, uint32_t len);
/* Answer a STATUS (or a pushed map) on c with wire status and the
 * target's status; closes c when it cannot be sent. */
void wf_tgt_conn_status_reply(struct wf_tgt_conn *c, uint64_t tag, uint16_t status);
/* A WF_OP_MAP_PUT chunk on c (mapput.c). */
void wf_tgt_map_put(struct wf_tgt_conn *c, const void *msg, uint32_t len);

/* ---- metrics (metrics.c): Prometheus text over HTTP ------------------ */

struct wf_tgt_metrics;
struct wf_store;
/* Serve GET /metrics on cfg->metrics from libmicrohttpd's thread, and
 * write its URL to RUN_DIR/target-ID.metrics.  0, or -errno with err. */
int  wf_tgt_metrics_start(struct wf_tgt *t, const struct wf_tgt_cfg *cfg,
			  struct wf_store *store, struct wf_tgt_metrics **out,
			  char *err, size_t errlen);
void wf_tgt_metrics_stop(struct wf_tgt_metrics *m);

/* ---- the etcd agent (etcd_agent.c) ------------------------------------ */

struct wf_tgt_etcd;
/* Before the map is loaded: the map from etcd saved as cfg->map_path when
 * it is newer (or the file is missing); starts on the file when etcd is
 * unreachable.  0, or -errno with err set. */
int  wf_tgt_etcd_fetch(const struct wf_tgt_cfg *cfg, char *err, size_t errlen);
/* The agent thread: lease, registration, watching the map. */
int  wf_tgt_etcd_start(struct wf_tgt *t, const struct wf_tgt_cfg *cfg,
		       struct wf_tgt_etcd **out);
/* Stop it (its lease is revoked: the registration goes at once). */
void wf_tgt_etcd_stop(struct wf_tgt_etcd *a);
/* Close connections that sent no HELLO in time, and (once a second)
 * those idle past --idle-timeout. */
void wf_tgt_conn_sweep(struct wf_tgt_reactor *r, uint64_t now);
/* Answer held HELLOs whose client's old store I/O has drained. */
void wf_tgt_conn_run_held(struct wf_tgt_reactor *r);
/* A forward of q ended (peer.c) with the secondary's wire status. */
void wf_tgt_fwd_done(struct wf_tgt_fwd *f, uint16_t status);
/* The order list (conn.c): q enters it; false when an earlier overlapping
 * write holds it back (q is then RQ_ORDER, resumed by order_del). */
bool wf_tgt_order_enter(struct wf_tgt_reactor *r, struct wf_tgt_req *q);
void wf_tgt_order_leave(struct wf_tgt_reactor *r, struct wf_tgt_req *q);
/* Forward q to q->secondaries[0 .. q->nfwd) (its parts), q->state
 * RQ_FORWARD; the last part's end calls wf_tgt_recover_op_done for a
 * recovery copy. */
void wf_tgt_forward(struct wf_tgt_reactor *r, struct wf_tgt_req *q);
void wf_tgt_store_req_init(struct wf_tgt_req *q);

/* ---- recovery (recover.c) ------------------------------------------- */

/* A map epoch is in place: plan this reactor's pass. */
void wf_tgt_recover_start(struct wf_tgt_reactor *r);
/* Frees what a pass holds (reactor teardown). */
void wf_tgt_recover_fini(struct wf_tgt_reactor *r);
/* One turn: start copies within the limits; true when it did something. */
bool wf_tgt_recover_step(struct wf_tgt_reactor *r);
/* A copy's forwards (or its read) ended. */
void wf_tgt_recover_op_done(struct wf_tgt_req *q, uint16_t status);
/* An op held on the order list may start now. */
void wf_tgt_recover_resume(struct wf_tgt_req *q);
/* The recovery ring's ops, shared with the scrub: start op over
 * [off, off + len) of volume vol to the members to[0 .. nto) (through the
 * order list; a WRITE or CSUM reads the range first; repair: a scrub's
 * rewrite, its end goes to scrub.c), or false when every op slot
 * (--recovery-qd) is taken.  The op may end before this returns.
 * wf_tgt_rop_put frees a finished op; wf_tgt_rop_budget takes want bytes
 * of --recovery-mbps, or false. */
bool wf_tgt_rop_start(struct wf_tgt_reactor *r, uint8_t op, uint64_t vol,
		      uint64_t off, uint32_t len, const uint32_t *to,
		      unsigned nto, bool repair, uint8_t tries);
void wf_tgt_rop_put(struct wf_tgt_req *q);
bool wf_tgt_rop_budget(struct wf_tgt_reactor *r, uint32_t want);

/* ---- scrub (scrub.c) ---------------------------------------------------- */

/*
 * For every PG this target leads (acting primary, nothing pinned), every
 * slot-size chunk of every extent it owns: read it under the order list,
 * ask each acting secondary for the CRC32C of the same bytes (CSUM),
 * compare; with repair, rewrite the differing members from the primary
 * (a recovery-style copy: order list, read again, forward).  Runs on the
 * recovery ring's op slots and limits, while no recovery pass is active.
 */
#define WF_TGT_SCRUB_RETRIES 64u        /* chunks waiting to be asked again */
#define WF_TGT_SCRUB_TRIES   4u         /* attempts per chunk */

struct wf_tgt_scrub {
	uint32_t gen, done_gen;         /* pass asked of us, last finished */
	/* Chunks whose members did not all answer (a link still
	 * connecting, a member reloading its map): asked again a moment
	 * later, up to WF_TGT_SCRUB_TRIES times, before they count as not
	 * compared. */
	struct {
		uint64_t vol, off;
		uint32_t len;
		uint8_t  tries;
	} retry[WF_TGT_SCRUB_RETRIES];
	unsigned nretry;
	uint64_t retry_at;              /* ns */
	uint64_t link_wait;             /* ns: since when a link is awaited */
	bool     active, repair;
	uint64_t vol_id;                /* 0: every volume */
	uint32_t vol;                   /* cursor: index into map.volumes */
	uint64_t ext;                   /*         extent of that volume */
	uint32_t chunk;                 /*         next chunk of the extent */
	unsigned inflight;              /* its ops among rec.inflight */
	uint64_t bytes, mismatches, repaired, errors;
	bool     said;                  /* the first mismatch's line logged */
};

/* A pass was asked (t->scrub_gen moved): start it. */
void wf_tgt_scrub_poll(struct wf_tgt_reactor *r);
/* One turn; true when it did something. */
bool wf_tgt_scrub_step(struct wf_tgt_reactor *r);
/* A scrub op's read or forwards ended (from wf_tgt_recover_op_done). */
void wf_tgt_scrub_op_done(struct wf_tgt_req *q, uint16_t status);

/* ---- peer links (peer.c): this target as a client of its peers ------ */

enum wf_tgt_peer_state {
	PEER_IDLE = 0,  /* no endpoint: connected on first use, not before
	                 * retry_at */
	PEER_CONNECTING, /* wf_connect_start'ed: its CONNECT completion
	                 * comes from the reactor's poll (forwards wait) */
	PEER_HELLO,     /* HELLO sent, waiting for the GRANT */
	PEER_LIVE,      /* forwards take slots of the granted ring */
	PEER_CLOSING,   /* closing: waiting for the DISCONNECT */
};

struct wf_tgt_peer {
	uint8_t             kind;       /* WF_TGT_EP_PEER */
	uint8_t             state;      /* enum wf_tgt_peer_state */
	bool                mark;       /* peers_rebuild: still in the map */
	bool                gone;       /* left the map: closing, then freed
	                                 * by wf_tgt_peers_reap */
	struct wf_tgt_reactor *r;
	struct wf_tgt_peer *next;       /* r->peers */
	uint32_t            target_id;
	char                addr[160];
	struct wf_ep       *ep;
	uint64_t            retry_at, hello_deadline;   /* ns */
	unsigned            fails;
	/* PEER_HELLO with a key (auth.c's other side): waiting for the
	 * CHALLENGE (1), for the RESULT (2), or done (0). */
	uint8_t             auth_step;
	struct wf_auth_ctx  ax;
	uint32_t            gen;        /* tags: bumped per forward */
	/* The granted ring (PEER_LIVE). */
	struct wf_rkey      ring;
	uint32_t            slot_count, slot_size, nfree;
	uint64_t            slot_free[WF_TGT_MAX_SLOTS / 64];  /* 1 = free */
	struct wf_tgt_fwd  *slot_fwd[WF_TGT_MAX_SLOTS];
	struct wf_tgt_fwd  *wait_head, *wait_tail;
	/* Read leases (lease.c), reactor 0's links: this target is another
	 * acting member of a PG we lead (need), our ask in flight. */
	bool                lease_need, lease_out;
	uint64_t            lease_tag, lease_sent, lease_epoch, lease_next;
	/* What its GRANT said it understands (WF_FEAT_*; 0: an older
	 * build, or not granted yet). */
	uint16_t            features;
	/* Reactor 0: the leases it granted us in epochs below rel_epoch
	 * are to be given back (0: none), until rel_until (ns). */
	uint64_t            rel_epoch, rel_until;
	/* Pulling its newer map (WF_OP_MAP_GET, lease.c). */
	char               *get_buf;
	uint32_t            get_total, get_got;
	uint64_t            get_tag;
	bool                get_out;
};

/* ---- read leases (lease.c) ------------------------------------------- */
#include "target/lease.h"

/* Whether the link to the target at map index tidx is up (granted); an
 * idle one starts connecting (background work that must not fail a batch
 * of forwards at once waits for it). */
bool wf_tgt_peer_live(struct wf_tgt_reactor *r, uint32_t tidx);
/* Forward f (of its request f->q) to the target at map index tidx. */
void wf_tgt_fwd_start(struct wf_tgt_reactor *r, struct wf_tgt_fwd *f,
		      uint32_t tidx);
void wf_tgt_peer_cqe(struct wf_tgt_reactor *r, struct wf_tgt_peer *p,
		     const struct wf_cqe *e);
/* Close links whose GRANT or forwards are overdue. */
void wf_tgt_peer_sweep(struct wf_tgt_reactor *r, uint64_t now);
/* (Re)build the links for r->map: kept by target id and address. */
int  wf_tgt_peers_rebuild(struct wf_tgt_reactor *r);
void wf_tgt_peers_fini(struct wf_tgt_reactor *r);
/* Free the links that left the map once they are down (loop top). */
void wf_tgt_peers_reap(struct wf_tgt_reactor *r);
/* Forwards in flight and GRANTs awaited on all links: nonzero means a
 * deadline is pending (the reactor then sleeps with a timeout). */
unsigned wf_tgt_peers_busy(const struct wf_tgt_reactor *r);

/* ---- control socket (ctl.c) ------------------------------------------- */

/* Control sessions at once: every local libweft handle that reads
 * short-circuit keeps one open (its hang-up tells of a target restart). */
#define WF_TGT_CTL_CLIENTS 1024

struct wf_tgt_ctl {
	int  lfd;                       /* SOCK_SEQPACKET listener */
	bool full_logged;               /* "all sessions in use" said once */
	int  cfd[WF_TGT_CTL_CLIENTS];   /* accepted, -1 when unused */
	bool trusted[WF_TGT_CTL_CLIENTS]; /* the peer may have the device fd
	                                 * and RELOAD (SO_PEERCRED, ctl.c) */
	/* A key offered on the session (auth.c's steps, the transcript over
	 * cluster id 0): 0 none, 1 challenged, 2 proved. */
	uint8_t auth[WF_TGT_CTL_CLIENTS];
	struct wf_auth_ctx ax[WF_TGT_CTL_CLIENTS];
	int  dev_ro;                    /* read-only O_DIRECT device fd for
	                                 * short-circuit readers */
	char path[108];
};

int  wf_tgt_ctl_open(struct wf_tgt_reactor *r);
/* Give the socket at path the mode local trust asks for (0600, or 0660
 * and group --trust-group); 0 or -errno. */
int  wf_tgt_sock_mode(const struct wf_tgt_cfg *cfg, const char *path);
/* -EADDRINUSE when a live target already answers on our control socket
 * (so we do not unlink another target's sockets). */
int  wf_tgt_ctl_probe(struct wf_tgt_reactor *r);
void wf_tgt_ctl_close(struct wf_tgt_reactor *r);
/* An epoll event for data.u64 == WF_TGT_EV_CTL + i. */
void wf_tgt_ctl_event(struct wf_tgt_reactor *r, uint64_t ev);
struct wf_ctl_status;
/* The STATUS answer (proto/ctl.h), little-endian. */
void wf_tgt_fill_status(struct wf_tgt_reactor *r, uint16_t op, int result,
			struct wf_ctl_status *s);

/* ---- the reactor (reactor.c) ------------------------------------------ */

/* epoll tags */
enum {
	WF_TGT_EV_SIGNAL = 1,
	WF_TGT_EV_WAKE,
	WF_TGT_EV_CTL = 16,             /* + 0: listener, + 1 + i: client i */
};

/* One fabric backend: the net listener's, and (with verbs) a tcp one for
 * the unix socket.  Each registers every ring. */
struct wf_tgt_fab {
	struct wf_ctx      *ctx;
	int                 watch;      /* index of its fd's poll in the store
	                                 * ring (wf_store_watch) */
	struct wf_mr      **mrs;        /* [max_conns], ring i */
	struct wf_listener *lst[2];
	unsigned            nlst;
	bool                unbound_said;   /* logged that wf_mr_bind is not
	                                     * supported here */
	struct wf_listener *accept_wait;    /* full: accept from it once an
	                                     * evicted connection is freed */
};

/* Latency buckets of the metrics: upper bounds in microseconds, the last
 * one +Inf (metrics.c names them). */
#define WF_TGT_LAT_BUCKETS 14

struct wf_tgt_stats {
	uint64_t reads, writes, flushes, discards;
	uint64_t fua_writes;
	uint64_t read_bytes, write_bytes;
	uint64_t errors, invalid, closed_bad;
	uint64_t accepted, refused, evicted, idle_closed;
	uint64_t forwards;              /* replica forwards posted */
	/* Answers by wire status (without DNR) and, for reads and writes,
	 * the time from the request's arrival to its answer (metrics.c). */
	uint64_t by_status[16];
	uint64_t lat[2][WF_TGT_LAT_BUCKETS];    /* [0] reads, [1] writes */
	uint64_t lat_ns[2];
	uint64_t csums;                 /* scrub CSUMs answered */
	/* Read leases (lease.c): granted to and refused other targets (an
	 * older or newer epoch), reads answered DEGRADED for want of a
	 * lease, writes held for a lease granted to a former primary, maps
	 * pulled from a peer. */
	uint64_t lease_granted, lease_refused, reads_unleased, writes_held;
	uint64_t maps_pulled, lease_sends;
	/* Early release (lease.c): releases sent and received, PG holds a
	 * release ended, held writes a release started. */
	uint64_t releases_sent, releases_received, holds_released, writes_released;
	/* Authentication (auth.c): connections that proved their key, that
	 * were refused, that a revocation closed. */
	uint64_t auth_ok, auth_refused, auth_revoked;
	uint64_t access_denied;         /* requests refused ACCESS */
	/* Limits per key (conn.c): connections refused QUOTA (over the
	 * key's connections or slots), requests that waited for the key's
	 * in-flight limit. */
	uint64_t key_refused, key_waits;
};

enum wf_tgt_phase {
	PH_RUN = 0,     /* serving */
	PH_DRAIN_IO,    /* stop requested: no listeners, new requests get
	                 * BUSY, in-flight store I/O finishes and is answered */
	PH_DRAIN_SEND,  /* no store I/O left: wait for posted replies to go */
	PH_CLOSE,       /* endpoints closing: wait for their DISCONNECTs */
	PH_DONE,
};

/*
 * Reclaiming the extents of deleted volumes (reactor 0): after each map
 * load, a scan of the store's index discards every extent whose volume id
 * is below the map's next_volume_id (so it was created in this map's
 * history) and is no longer in the map.  A volume of a newer map than ours
 * has an id at or above next_volume_id and is kept.
 */
#define WF_TGT_RECLAIM_QD    4u         /* discards in flight */
#define WF_TGT_RECLAIM_SCAN  1024u      /* index entries looked at per turn */

struct wf_tgt_reclaim {
	struct wf_store_req req[WF_TGT_RECLAIM_QD];
	bool     busy[WF_TGT_RECLAIM_QD];
	bool     active;                /* a scan is running */
	bool     again;                 /* a newer map came during the scan */
	uint32_t cursor;                /* next physical extent to look at */
	unsigned inflight;
	uint64_t freed, strays, failed; /* this scan */
	uint32_t scans;                 /* finished since start */
	uint64_t dropped;               /* extents, since start */
};

/* PGs this target left after their new members were brought up to date
 * (stray.c): keys pool id << 32 | pg, reactor 0's, cleared by a scan that
 * dropped every extent of them. */
struct wf_tgt_stray {
	uint64_t *keys;
	uint32_t  n, cap;
};

/* At a map load (reactor 0): mark the PGs that were pinned with this
 * target acting in old and that nw places, pins and serves without it;
 * returns how many were marked. */
unsigned wf_tgt_stray_mark(struct wf_tgt_reactor *r, const struct wf_tgt_map *old,
			   const struct wf_tgt_map *nw);
/* Whether extent ext of the volume at vol_idx of r->map is a stray copy
 * (marked, and still not ours in the map served now). */
bool wf_tgt_stray_is(const struct wf_tgt_reactor *r, int vol_idx, uint32_t ext);
void wf_tgt_stray_fini(struct wf_tgt_reactor *r);

/*
 * Recovery (recover.c): for every PG this target leads whose up set has
 * members outside its acting set (the map pins the PG, pg_temp), the
 * primary copies each extent it owns to those members, through the order
 * list so that client writes to the same blocks go before or after a copy,
 * never between its read and its forward.  An extent it does not hold is
 * discarded at the members (they may hold stale blocks).  Client writes
 * of those PGs go to the members too (req.c), so once the pass is done
 * they are current, and `weftctl recover` can end the pin.
 */
#define WF_TGT_RECOVER_SCAN  256u       /* extents looked at per turn */

struct wf_tgt_recover {
	uint64_t epoch;                 /* of the pass */
	uint64_t done_epoch;            /* last epoch whose pass finished */
	bool     active;
	bool     failed;                /* a copy failed: pass again */
	uint64_t again_at;              /* ns: the next pass after a failure */
	uint32_t vol;                   /* cursor: index into map.volumes */
	uint64_t ext;                   /*         extent of that volume */
	uint32_t chunk;                 /*         next chunk of the extent */
	bool     in_extent;             /* chunks of ext still to start */
	unsigned inflight;
	uint32_t pgs, degraded;         /* PGs led: recovering, degraded */
	uint64_t bytes, left;           /* copied; extents left (estimate) */
	uint64_t bytes_left;            /* still to copy (each member
	                                 * counted): planned at the pass's
	                                 * start (plan_bytes), less each copy
	                                 * done; never below 0 */
	uint64_t tokens, tok_ns;        /* bandwidth limit (bytes, refill) */
	uint64_t copied, erased;        /* extents, this pass */
	/* The log of recent writes (pglog.c): this pass's PGs by how they
	 * are brought up to date, the next log PG to copy from, and since
	 * start: passes finished each way (PGs) and bytes copied each way
	 * (each member counted). */
	uint32_t log_pgs, full_pgs;
	uint32_t lpg;
	uint64_t log_total, full_total;
	uint64_t log_bytes, full_bytes;
	/* Per PG this reactor copies, its extents held here (pool p's PG g
	 * at held[held_base[p] + g]): filled by one walk of the store's index
	 * when a pass starts or runs again, read when a PG's log wraps.
	 * Allocated at the pass's start (the pools' pg_num), freed when it
	 * ends; NULL when none runs. */
	uint32_t *held, *held_base;
};

/*
 * The per-PG log of recent writes (pglog.c): per reactor, a ring of
 * cfg->pg_log entries for every PG of the map, so that a member back from
 * a short absence is sent only the ranges written since it left.
 */
#define WF_TGT_DEFAULT_PG_LOG 256u
#define WF_TGT_MAX_PG_LOG     65536u

struct wf_tgt_pglog_ent {
	uint64_t volume, offset;
	uint32_t length;
	uint8_t  op;                    /* WF_OP_WRITE or WF_OP_DISCARD */
};

enum {
	WF_TGT_PGL_NONE = 0,            /* no recovery of the PG this epoch */
	WF_TGT_PGL_LOG,                 /* the pass copies the logged ranges */
	WF_TGT_PGL_FULL,                /* the pass copies the whole PG */
};

struct wf_tgt_pglog_pg {
	uint64_t head;                  /* entries appended (ring: head % cap) */
	bool     logging;               /* every write of the PG applied here
	                                 * is logged (false: the log does not
	                                 * count, no records) */
	bool     went;                  /* a member left at this map load */
	uint8_t  nleft;
	uint8_t  mode;                  /* WF_TGT_PGL_*: this epoch's pass */
	uint32_t left_id[WF_MAX_REPLICAS];      /* members (target ids) that
	                                         * left the acting set while
	                                         * this target logged the PG */
	uint64_t left_seq[WF_MAX_REPLICAS];     /* the first entry each may lack */
	uint32_t pool, pgno;
	uint64_t start, end, cur;       /* the pass: entries [start, end), next */
	uint32_t sub;                   /* bytes of entry cur already started */
	uint64_t unsent;                /* bytes of the pass's WRITE entries
	                                 * not yet started (once per member) */
};

struct wf_tgt_pglog {
	struct wf_tgt_pglog_pg  *pg;    /* [npg]: pool p's PG g at base[p] + g */
	struct wf_tgt_pglog_ent *ent;   /* [npg * cap] */
	uint32_t *base;                 /* [map.npools] */
	uint32_t  npg, cap;             /* npg 0: no log (every recovery is a
	                                 * backfill) */
};

/* A map is in place (old: the one before, NULL at start): rings for its
 * pools, and per PG whether the log still counts and which members left. */
void wf_tgt_pglog_map(struct wf_tgt_reactor *r, const struct wf_tgt_map *old,
		      const struct wf_tgt_map *nw);
/* Data path: q, a WRITE or DISCARD of the volume at vol_idx that this
 * target takes as primary or applies as a member.  No allocation, no
 * lock. */
void wf_tgt_pglog_add(struct wf_tgt_reactor *r, int32_t vol_idx,
		      struct wf_tgt_req *q);
/* Recovery of (pool, pg) to its newcomers to[0 .. nto): WF_TGT_PGL_LOG
 * when the log holds every write they may lack, else WF_TGT_PGL_FULL. */
int  wf_tgt_pglog_plan(struct wf_tgt_reactor *r, uint32_t pool, uint32_t pg,
		       const uint32_t *to, unsigned nto);
int  wf_tgt_pglog_mode(const struct wf_tgt_reactor *r, uint32_t pool, uint32_t pg);
/* The next entry of PG index i the pass copies (NULL: none left; *lost:
 * an entry it needs was overwritten). */
const struct wf_tgt_pglog_ent *wf_tgt_pglog_next(struct wf_tgt_reactor *r,
						 uint32_t i, bool *lost);
/* The pass runs again: every log PG from its first entry. */
void wf_tgt_pglog_rewind(struct wf_tgt_reactor *r);
void wf_tgt_pglog_fini(struct wf_tgt_reactor *r);

struct wf_tgt_reactor {
	const struct wf_tgt_cfg *cfg;
	struct wf_tgt      *t;
	unsigned            idx;        /* reactor k: listens on port + k */
	int                 wake_fd;    /* eventfd: another reactor wants us */
	uint32_t            seen_gen, seen_reload, seen_release;
	uint64_t            serving;    /* epoch of r->map (atomic: reactor
	                                 * 0 reads it before a release) */
	bool                io_drained; /* counted out of t->draining */
	struct wf_tgt_map  *map;
	struct wf_store    *store;
	struct wf_store_stat st0;       /* geometry at open */
	struct wf_tgt_fab   fab[2];
	unsigned            nfab;
	char               *slab;       /* max_conns rings */
	size_t              slab_len;
	struct wf_tgt_conn *conns;
	struct wf_tgt_conn *free_conns;
	struct wf_tgt_keyuse *keyuse;   /* [max_conns] (conn.c) */
	uint32_t            nconns;     /* not CONN_FREE */
	uint32_t            nhello;     /* in CONN_HELLO */
	uint32_t            nheld;      /* of those, HELLO held (conn.c) */
	uint32_t            evicting;   /* evicted, not yet freed */
	uint64_t            next_idle_ns; /* the next idleness pass */
	struct wf_tgt_req  *reqs;
	struct wf_tgt_req  *pend_head, *pend_tail;
	int                 epfd, sigfd;
	int                 ev_watch;       /* epfd's wf_store_watch index */
	struct wf_tgt_ctl   ctl;
	uint8_t             phase;      /* enum wf_tgt_phase */
	uint64_t            phase_deadline; /* CLOCK_MONOTONIC ns */
	uint64_t            drain_rx_ns;    /* last message while stopping */
	uint64_t            last_reload;    /* ns: request-driven reloads */
	uint32_t            store_inflight;
	uint64_t            started_ns;
	struct wf_tgt_stats stats;
	char                net_addr[128], unix_addr[128];
	/* Replication */
	struct wf_tgt_peer *peers;      /* links to the other targets */
	struct wf_tgt_peer **peer_of;   /* [map target index] or NULL */
	uint32_t            npeer_of;
	struct wf_tgt_req  *ord_head, *ord_tail;  /* replicated writes and
	                                           * discards in flight or
	                                           * waiting, in arrival order */
	struct wf_tgt_reclaim reclaim;  /* reactor 0 */
	struct wf_tgt_stray stray;      /* reactor 0 */
	struct wf_tgt_conn *rconn;      /* the recovery ring (not a client) */
	bool                reload_wanted;  /* a peer has a newer map: reload
	                                     * after this turn's completions */
	unsigned            peers_gone;     /* links closing, to be freed */
	struct wf_tgt_recover rec;
	struct wf_tgt_pglog pglog;
	struct wf_tgt_scrub scrub;
	struct wf_keyring   keyring;    /* cfg->keyring, re-read with the map */
	/* Read leases (lease.c) */
	uint32_t           *lease_of;   /* [map target index]: index into
	                                 * t->leases, UINT32_MAX none */
	uint32_t            nlease_of;
	uint32_t            lease_ms;   /* this epoch's lease length (0: off):
	                                 * --read-lease-ms, else the map's,
	                                 * else the default */
	uint64_t            lease_next; /* reactor 0: next ask pass (ns) */
	unsigned            lease_need; /* reactor 0: members to ask */
	unsigned            rel_need;   /* reactor 0: releases to send */
	struct wf_tgt_hold *holds;      /* per pool of r->map */
	uint32_t            nholds;
	uint64_t            hold_max;   /* the latest of holds' (ns) */
	struct wf_tgt_req  *hold_head, *hold_tail;  /* writes held (RQ_HELD) */
};

static inline bool wf_tgt_lease_ok(const struct wf_tgt_reactor *r,
				   const uint32_t *others, unsigned n, uint64_t now)
{
	for (unsigned i = 0; i < n; i++) {
		const struct wf_tgt_lease *e;
		uint32_t k = others[i] < r->nlease_of ? r->lease_of[others[i]] :
			     UINT32_MAX;

		if (k >= WF_TGT_LEASES)
			return false;
		e = &r->t->leases[k];
		if (__atomic_load_n(&e->epoch, __ATOMIC_ACQUIRE) != r->map->epoch ||
		    __atomic_load_n(&e->until, __ATOMIC_RELAXED) <= now)
			return false;
	}
	return true;
}

static inline uint64_t wf_tgt_hold_until(const struct wf_tgt_reactor *r,
					 uint32_t pool, uint32_t pg)
{
	const struct wf_tgt_hold *h;

	if (pool >= r->nholds)
		return 0;
	h = &r->holds[pool];
	if (!h->pg_num)
		return r->hold_max;     /* no table for the pool: all of it */
	return h->until[pg & (h->pg_num - 1)];
}

/* ---- authentication at connect (auth.c) ------------------------------ */

#define WF_TGT_WR_AUTH 4        /* wr_id of AUTH sends (conn.c's kinds) */
/* Whether keys are required now (the map's auth, the keyring). */
bool wf_tgt_auth_required(const struct wf_tgt_reactor *r);
bool wf_tgt_key_revoked(const struct wf_tgt_map *m, const char *name);
/* A map whose peer_keys leaves out our own key (--key; with a keyring):
 * every other target would refuse what we send it as a client's.  0 when
 * it lists it (or has no peer_keys, or we have no keyring), else -EACCES
 * and why (what to run) in buf.  At start main.c refuses such a map; a
 * reload keeps the epoch it serves (reactor.c). */
int  wf_tgt_peer_keys_check(const struct wf_tgt_cfg *cfg, const struct wf_tgt_map *m,
			    char *buf, size_t len);
/* Whether name is a target's key in r's map: listed in its peer_keys,
 * or (a map without peer_keys: targets that share one key) our own
 * --key. */
bool wf_tgt_key_is_peer(const struct wf_tgt_reactor *r, const char *name);
/* Whether c may send op (with flags, for requests), which only targets
 * send one another when it is a forwarded write or CSUM (WF_REQ_REPL),
 * MAP_PUT, LEASE or MAP_GET.  A connection without a key (where the map
 * does not require them) may: nothing tells a target from a client
 * there.  One test per message, no search. */
static inline bool wf_tgt_peer_op_ok(const struct wf_tgt_conn *c, int op,
				     uint32_t flags)
{
	if (c->auth != 2 || c->peer_key)
		return true;
	if (op == WF_OP_MAP_PUT || op == WF_OP_LEASE || op == WF_OP_MAP_GET ||
	    op == WF_OP_CSUM)
		return false;
	return !(flags & WF_REQ_REPL);
}
/* The refusal of such an op, with one line naming the key and the peer:
 * a MAP_PUT's chunks are answered ACCESS (one line a connection: a tool
 * pushing a map with a client's key learns why, and closes), the others
 * close c (a request's ACCESS answer is its caller's). */
void wf_tgt_peer_refuse(struct wf_tgt_conn *c, int op, const void *msg,
			uint32_t len);
/* (Re)read cfg->keyring into r->keyring (kept when it fails): 0 or
 * -errno with err. */
int  wf_tgt_keyring_load(struct wf_tgt_reactor *r, char *err, size_t errlen);
/* The target's steps, for any transport: the answer to OFFER a (the
 * transcript over cluster_id into ax) and to PROOF a.  0 with the
 * CHALLENGE (RESULT) in out; -EACCES with the refusal in out and the
 * reason in why; -EIO. */
int  wf_tgt_auth_offer(struct wf_tgt_reactor *r, const struct wf_auth *a,
		       uint64_t cluster_id, struct wf_auth_ctx *ax,
		       struct wf_auth_hdr *out, char *why, size_t len);
int  wf_tgt_auth_proof(struct wf_tgt_reactor *r, struct wf_auth_ctx *ax,
		       const struct wf_auth *a, struct wf_auth_hdr *out,
		       char *why, size_t len);
/* A WF_OP_AUTH message on c (CONN_HELLO). */
void wf_tgt_auth_msg(struct wf_tgt_conn *c, const void *msg, uint32_t len);
/* Whether message op may go on, on c in CONN_HELLO; false: refused (the
 * peer told, one log line, c closed). */
bool wf_tgt_auth_gate(struct wf_tgt_conn *c, int op, const void *msg,
		      uint32_t len);
/* c's peer left (DISCONNECT) in the middle of the exchange: logged. */
void wf_tgt_auth_gone(struct wf_tgt_conn *c);
/* Per-volume access (the map's access list, docs/security.md). */
enum { WF_TGT_ACC_NONE = 0, WF_TGT_ACC_RO, WF_TGT_ACC_RW };
/* (Re)build c->perm for r->map: 0 or -ENOMEM. */
int  wf_tgt_access_build(struct wf_tgt_conn *c);
/* Whether c may do op (with flags) on the volume at index vol_idx. */
static inline bool wf_tgt_access_ok(const struct wf_tgt_conn *c, uint8_t op,
				    int32_t vol_idx)
{
	uint8_t p;

	if (vol_idx < 0 || (uint32_t)vol_idx >= c->nperm)
		return op == WF_OP_FLUSH;
	p = c->perm[vol_idx];
	return p == WF_TGT_ACC_RW ||
	       (p == WF_TGT_ACC_RO && op != WF_OP_WRITE && op != WF_OP_DISCARD);
}
/* After a reload: close connections whose key is revoked or gone, and
 * rebuild the others' access. */
void wf_tgt_auth_recheck(struct wf_tgt_reactor *r);

/* Reactor idx of t (reactor 0 first: the others take its listening
 * port + idx, and only reactor 0 has the signals and the control socket).
 * store: this reactor's queue of the store. */
int  wf_tgt_reactor_init(struct wf_tgt_reactor *r, struct wf_tgt *t,
			 unsigned idx, struct wf_tgt_map *map,
			 struct wf_store *store, char *err, size_t errlen);
int  wf_tgt_reactor_run(struct wf_tgt_reactor *r);
void wf_tgt_reactor_fini(struct wf_tgt_reactor *r);
/* Reload the map file (a request with a newer epoch).  Keeps the current
 * map when the new one fails to load or is older.  When the epoch changed,
 * every other reactor reloads too (each owns its copy). */
int  wf_tgt_reload(struct wf_tgt_reactor *r, const char *why);
/* The same, and every other reactor reloads whatever the epoch (SIGHUP,
 * control RELOAD: the file may have changed within an epoch). */
int  wf_tgt_reload_all(struct wf_tgt_reactor *r, const char *why);
/* Bump t->gen and wake every reactor but self (they look at t's
 * requests: stop, reload, scrub). */
void wf_tgt_wake_all(struct wf_tgt *t, struct wf_tgt_reactor *self);
/* Wake reactor idx of t (its loop looks at t's flags). */
void wf_tgt_wake_one(struct wf_tgt *t, unsigned idx);
/* Ask every reactor to stop (drain, then leave its loop). */
void wf_tgt_stop_all(struct wf_tgt *t, int sig);
/* Run the store queues of all reactors until none has I/O in flight
 * (teardown, after the threads ended), bounded by ms. */
void wf_tgt_quiesce(struct wf_tgt *t, unsigned ms);
uint64_t wf_tgt_now_ns(void);

/*
 * Logging (target/log.c): one line per event, "target N: ...", with its
 * level (syslog's numbers), to stderr (the log file once daemonized) or,
 * with --syslog, to syslog (the journal under systemd).  Lines above the
 * --log-level are dropped.  wf_tgt_log_setup runs once in main before
 * any reactor thread: a process-wide setting, read-only afterwards.
 */
enum {
	WF_TGT_LOG_ERR     = 3,     /* the target or a component fails */
	WF_TGT_LOG_WARNING = 4,     /* degraded: a fallback taken, input refused */
	WF_TGT_LOG_INFO    = 6,     /* start, stop, map epochs, connections */
	WF_TGT_LOG_DEBUG   = 7,
};
void wf_tgt_log_setup(uint32_t target_id, int level, bool use_syslog);
/* "err", "error", "warning", "info", "debug": the level, or -EINVAL. */
int  wf_tgt_log_level(const char *name);
void wf_tgt_logl(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An INFO line. */
void wf_tgt_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
