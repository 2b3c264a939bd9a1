/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to libweft: the cluster handle, connections, requests and their
 * state machines.  Nothing outside initiator/ (and its unit tests) includes
 * this.
 *
 * Shape of the data path (one thread, no locks, nothing allocated per I/O):
 *
 *   weft_read/write/...  takes a struct wf_io (the application's request,
 *                        "parent") from a free list (queue_depth of them)
 *   carve                cuts the parent's range into pieces (struct
 *                        wf_piece, a fixed pool) at extent boundaries and
 *                        at the piece size; a parent that finds no free
 *                        piece waits on cl->carve_q
 *   route                extent -> PG -> acting set (the per-epoch table),
 *                        primary -> its connection; or a short-circuit read
 *   dispatch             a piece takes a staging slot of the connection
 *                        (credit), or waits on the connection's wait_q
 *   reply                frees the slot, finishes the piece; the parent
 *                        completes when its last piece does: one struct
 *                        weft_cqe on the completion ring
 *
 * Files, each calling only the ones below it (no circle):
 *
 *   cluster.c  io.c      the public calls: handle, volumes, map epochs;
 *                        requests, progress, waiting
 *   piece.c              the piece and parent state machine: every
 *                        transition of enum wf_piece_state happens here
 *   conn.c  sc.c         connections (enum wf_conn_state) and local
 *                        short-circuit sessions; they never touch a piece's
 *                        state: they report events to their caller
 *   mem.c  log.c         registered memory; the log callback
 */
#ifndef WEFT_INITIATOR_INT_H
#define WEFT_INITIATOR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "fabric/fabric.h"
#include "proto/auth.h"
#include "proto/wire.h"
#include "initiator/include/weft.h"
#include "initiator/spin.h"
#include "placement/map.h"
#include "placement/placement.h"

#define WF_BLOCK           4096u
#define WF_PIECE_MAX       (128u * 1024)   /* largest wire request we cut,
                                            * and the HELLO's max_io */
#define WF_DEF_QD          128u
#define WF_DEF_TIMEOUT_MS  10000u
#define WF_CONNECT_MS      2000            /* bound of a connect, and then
                                            * of its HELLO/GRANT */
#define WF_BACKOFF_MIN_MS  1
#define WF_BACKOFF_MAX_MS  200
#define WF_SWEEP_MS        10              /* deadline scan period */
#define WF_STUCK_MS        500             /* no completion this long with
                                            * requests out: look at the map */
#define WF_STUCK_LOOK_MS   100             /* and again this often */
#define WF_OTHER_RETRIES   3               /* tries of a failure without
                                            * DNR that is not transient by
                                            * name (IO, INVALID, ...) */
#define WF_ARENA_DEFAULT   (64ull << 20)   /* weft_buf_alloc arena */
#define WF_POLL_BATCH      64

#define WF_CONTAINER(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

struct weft_cluster;
struct wf_conn;
struct wf_io;
struct wf_piece;

/* A FIFO of pieces, linked through wf_piece.next. */
struct wf_pq {
	struct wf_piece *head, *tail;
};

/* ---- connections --------------------------------------------------------- */

enum wf_conn_state {
	CONN_IDLE,      /* no endpoint: connected on first use, not before
	                 * retry_at after a failure */
	CONN_CONNECTING,/* wf_connect_start: waiting for the fabric's
	                 * CONNECT (until hello_deadline); pieces wait on
	                 * wait_q */
	CONN_HELLO,     /* endpoint up, HELLO sent: waiting for the GRANT;
	                 * pieces wait on wait_q */
	CONN_LIVE,      /* granted: pieces take slots and go out */
	CONN_CLOSING,   /* wf_ep_close() called: waiting for WF_CQE_DISCONNECT */
	CONN_DOWN,      /* closed (endpoint and ring gone), on cl->down: the
	                 * piece machine re-routes what it held, then
	                 * wf_conn_down_done() makes it IDLE (or frees it) */
};

/* What a connection event means for the pieces (wf_conn_on_msg). */
enum wf_conn_ev {
	WF_CEV_NONE,    /* nothing for the pieces */
	WF_CEV_LIVE,    /* granted: send what waits */
	WF_CEV_REPLY,   /* a reply for a piece: *reply is filled */
};

struct wf_conn {
	struct weft_cluster *cl;
	uint32_t   target_id;
	uint32_t   idx;                 /* in cl->conns */
	int        state;               /* enum wf_conn_state */
	bool       dead;                /* target left the map: freed once down */
	struct wf_conn *down_next;      /* CONN_DOWN: on cl->down */
	/* Writes completed here (wgen) and how many of them an OK flush
	 * reply covers (fgen): a flush must visit while they differ.  Carried
	 * to the new connection when a map change replaces this one. */
	uint64_t   wgen, fgen;
	/* wgen after the last write to a pool whose min_size is 1 (it may
	 * have one copy, on this target).  A flush to a target marked down
	 * succeeds only if fgen covers it: the other writes are durable on
	 * the PGs' secondaries already (they write replicas FUA). */
	uint64_t   wgen1;
	char       addr[WF_NAME_MAX + WF_PATH_MAX + 16];
	struct wf_ep *ep;
	uint64_t   retry_at;            /* CONN_IDLE: no connect before (ms) */
	unsigned   fails;               /* consecutive connect failures */
	uint64_t   hello_deadline;      /* CONN_CONNECTING, CONN_HELLO: give
	                                 * up then (ms) */

	/* Granted ring (CONN_LIVE). */
	uint64_t   epoch;               /* target's epoch in the GRANT */
	uint32_t   slot_count, slot_size, max_len;
	struct wf_rkey ring;
	uint64_t  *slot_free;           /* bitmap: 1 = free */
	uint32_t   slot_words, nfree;
	uint32_t   inflight;            /* pieces holding a slot */

	struct wf_pq wait_q;            /* pieces routed here, waiting for the
	                                 * grant or for a free slot */

	/* Reactors (docs/protocol.md, "Reactors"): a target whose GRANT says
	 * reactors > 1 gets one connection per reactor.  cl->conns[t] is
	 * reactor 0's; it holds sub[1..reactors-1], made on first use, and
	 * each extent's pieces go to its owner reactor's connection. */
	uint32_t   reactors;            /* from reactor 0's last GRANT (0, 1:
	                                 * one) */
	struct wf_conn **sub;           /* [reactors]; sub[0] unused */
	struct wf_conn *parent;         /* a reactor k > 0 connection: reactor
	                                 * 0's (NULL once detached: dead) */
	uint32_t   reactor;             /* k */
	bool       refused;             /* the last connect failed (not: the
	                                 * connection broke) */
	/* Authentication at connect (docs/protocol.md), inside CONN_HELLO:
	 * waiting for the CHALLENGE (1), for the RESULT (2), or done (0). */
	uint8_t    auth_step;
	int        auth_err;            /* after a refusal, until retry_at:
	                                 * -EACCES (our key, or none) or
	                                 * -EDQUOT (the key is over its limits
	                                 * there); the pieces waiting here
	                                 * fail with it */
	struct wf_auth_ctx ax;
};

/* ---- short circuit (sc.c) -------------------------------------------------- */

struct wf_sc;           /* one local target's device + index view */
struct wf_sc_ring;      /* the cluster's io_uring for short-circuit reads */

/* A short-circuit read in flight: what its check needs (in the piece). */
struct wf_sc_read {
	struct wf_sc *s;
	uint32_t   phys, seq;
	uint64_t   epoch;               /* our map epoch when it was routed */
	bool       leased;              /* the PG has other acting members:
	                                 * the target's read leases must hold */
};

/* ---- requests --------------------------------------------------------------- */

enum wf_io_state {
	IO_FREE,        /* on cl->io_free */
	IO_CARVING,     /* part of the range is not cut into pieces yet: on
	                 * cl->carve_q until pieces are free */
	IO_WAITING,     /* all cut: waiting for pieces_out to reach 0, then
	                 * one completion goes on the ring */
};

struct wf_io {
	struct wf_io *next;             /* free list / carve_q */
	uint32_t   state;               /* enum wf_io_state */
	uint8_t    op;                  /* WF_OP_* */
	uint16_t   wflags;              /* WF_REQ_* on the wire */
	struct weft_volume *vol;
	char      *buf;                 /* caller's buffer (NULL: none) */
	bool       zc;                  /* buf lies in the registered arena */
	uint64_t   off, len;            /* the whole request */
	uint64_t   cursor;              /* next byte to cut (FLUSH: next conn) */
	uint32_t   pieces_out;          /* cut and not finished */
	int64_t    err;                 /* first error, 0 if none */
	uint64_t   done;                /* bytes finished */
	uint64_t   user_data;
	uint64_t   t0_ns;               /* submitted (weft_stats latency) */
	uint64_t   deadline;            /* ms: no acting replica by then ->
	                                 * -ETIMEDOUT */
};

/*
 * A piece's life (piece.c owns every transition; docs/libweft.md has the
 * diagram).  Our own fabric operations for a sent piece (the payload write
 * and the header send, counted in local_ops) complete independently of
 * the reply; the slot is free again only when both are over.
 */
enum wf_piece_state {
	PC_FREE,        /* on cl->pc_free */
	PC_QUEUED,      /* on conn->wait_q: no grant or no free slot yet */
	PC_RETRY,       /* on cl->retry_q until retry_at (ms, absolute);
	                 * `why` says what it waits for */
	PC_SENT,        /* on the wire holding slot `slot` of conn: waiting
	                 * for the reply */
	PC_ANSWERED,    /* the reply finished it (res: bytes or -errno);
	                 * waiting for local_ops to reach 0 */
	PC_BOUNCED,     /* the reply asked for a retry at retry_at; waiting
	                 * for local_ops to reach 0 */
	PC_SC,          /* short-circuit read in the local io_uring */
};

/* Why a piece waits on the retry queue. */
enum wf_retry_why {
	RT_BACKOFF,     /* a transient failure (busy, connection lost, no
	                 * connection yet): at retry_at */
	RT_MAP,         /* needs a newer map (stale epoch, not primary, no
	                 * replica up): as soon as one is loaded, else at
	                 * retry_at */
	RT_VIA_TARGET,  /* a short-circuit read fell back: through the
	                 * target this time */
	RT_ROUND,       /* the next round of a piece larger than the slots */
	RT_FINISH,      /* finished by the retry pass: its volume was deleted
	                 * or (flush) its target left the map */
	RT_REFUSED,     /* its target refused our key (or the lack of one),
	                 * or the key is over its limits there: finished by
	                 * the retry pass with -EACCES or -EDQUOT */
};

struct wf_piece {
	struct wf_piece *next;
	struct wf_io *io;
	uint32_t   idx;                 /* in cl->pieces; owns bounce chunk idx */
	uint32_t   gen;                 /* bumped at every send: stale tags */
	uint8_t    state;               /* enum wf_piece_state */
	uint8_t    op;
	uint8_t    why;                 /* PC_RETRY, PC_BOUNCED: enum
	                                 * wf_retry_why */
	uint8_t    local_ops;           /* our fabric ops not yet completed */
	bool       dst_bounce;          /* a read lands in the piece's bounce
	                                 * chunk (copied out when done), not
	                                 * in the caller's buffer */
	uint32_t   len;
	uint32_t   wlen;                /* bytes of the request on the wire
	                                 * (< len when slots are smaller) */
	uint64_t   off;                 /* in the volume */
	uint64_t   bufoff;              /* into io->buf */
	uint32_t   target;              /* FLUSH: target id it is for */
	uint64_t   fgen;                /* FLUSH: the target's wgen at carve */
	struct wf_conn *conn;           /* QUEUED, SENT, ANSWERED, BOUNCED */
	uint32_t   slot;
	int32_t    res;                 /* ANSWERED: bytes or -errno */
	int32_t    timeout_err;         /* what the deadline reports while it
	                                 * retries (0: -ETIMEDOUT; -EHOSTDOWN
	                                 * when too few replicas are up) */
	unsigned   attempts;
	uint64_t   retry_at;            /* RETRY, BOUNCED: ms (wf_now_ms) */
	struct wf_sc_read sc;           /* PC_SC */
};

/* ---- registered memory (mem.c) ------------------------------------------- */

struct wf_arena_seg {
	size_t off, len;
	bool   used;
};

struct wf_mem {
	/* weft_buf_alloc arena: one region, first fit over segments. */
	char        *arena;
	size_t       arena_len;
	struct wf_mr *arena_mr;
	struct wf_arena_seg *segs;
	uint32_t     nsegs, cap;
	/* Bounce pool: one WF_PIECE_MAX chunk per piece. */
	char        *bounce;
	size_t       bounce_len;
	struct wf_mr *bounce_mr;
};

int  wf_mem_init(struct wf_mem *m, struct wf_ctx *ctx, size_t arena_len,
		 uint32_t npieces);
void wf_mem_fini(struct wf_mem *m);
void *wf_mem_alloc(struct wf_mem *m, size_t len);
int  wf_mem_free(struct wf_mem *m, void *p);
static inline bool wf_mem_in_arena(const struct wf_mem *m, const void *p,
				   size_t len)
{
	const char *c = p;

	return c >= m->arena && len <= m->arena_len &&
	       (size_t)(c - m->arena) <= m->arena_len - len;
}


/* ---- the handles ------------------------------------------------------------ */

struct weft_volume {
	struct weft_cluster *cl;
	struct weft_volume *next;
	uint64_t   id;
	uint32_t   idx;                 /* in cl->map.volumes (this epoch) */
	uint64_t   size;
	bool       gone;                /* deleted from the map */
};

struct weft_cluster {
	struct weft_cluster_opts opts;
	char      *map_path;
	char       transport[8];
	char       run_dir[WF_PATH_MAX];
	weft_log_fn log;                /* opts.log (NULL: silent) */
	void      *log_arg;
	int        log_level;
	uint64_t   client_id;
	bool       has_key;             /* opts.key_name: authenticate */
	char       key_name[WF_KEY_NAME_MAX];
	uint8_t    key[WF_KEY_LEN];

	/* Map epoch state (rebuilt on a newer map file). */
	struct wf_map      map;
	struct wf_placer   placer;
	struct wf_pg_table table;
	uint64_t   map_mtime_ns, map_size;

	struct wf_ctx *ctx;
	struct wf_mem  mem;
	struct wf_conn **conns;         /* [target index] this epoch */
	uint32_t   nconns;
	struct wf_conn **dying;         /* conns of targets that left the map */
	uint32_t   ndying;

	struct weft_volume *volumes;

	/* Requests */
	uint32_t   qd, npieces, piece_max;
	struct wf_io *ios;
	struct wf_io *io_free;
	struct wf_io *carve_head, *carve_tail;
	struct wf_piece *pieces;
	struct wf_piece *pc_free;
	struct wf_pq retry_q;
	struct weft_stats api;          /* weft_stats(): requests (io.c) */
	uint32_t   inflight;            /* parents queued, not completed */

	/* Completion ring: at most qd entries (one per parent). */
	struct weft_cqe *cq;
	uint32_t   cq_head, cq_count;

	uint64_t   now;                 /* ms, refreshed per poll */
	uint64_t   now_us;
	uint64_t   next_sweep;

	int        epfd;                /* weft_fd: fabric fd + sc ring fd */
	unsigned   spin_us;             /* opts.spin_us (0: adaptive) */
	bool       spin_never;          /* WEFT_F_NO_SPIN */
	struct wf_spin spin;            /* adaptive polling state (spin.h) */
	enum wf_spin_how wait_how;      /* what weft_wait chose, for the
	                                 * completions it reaps meanwhile */
	uint64_t   spins, spin_hits, spin_ns;   /* weft_stats */
	uint64_t   spin_gaps;                   /* weft_stats */
	bool       map_stale;           /* a peer has a newer epoch, or a
	                                 * piece found no replica: look at the
	                                 * map file in the next turn */
	uint64_t   last_progress;       /* ms of the last completion seen */
	uint64_t   next_map_look;       /* ms: earliest unprompted map look */
	struct wf_conn *down;           /* CONN_DOWN connections (down_next) */

	/* short circuit */
	bool       sc_enabled;
	char       host[WF_NAME_MAX];
	struct wf_sc_ring *scr;
	struct wf_sc **sc;              /* [target index] or NULL */
	uint32_t   nsc;
	struct wf_sc *sc_orphans;       /* dead or of old epochs: freed at close */
	struct wf_sc *sc_live;          /* READY sessions (liveness checks) */

	/* counters for tests and tools */
	struct {
		uint64_t sent, replies, retries, stale, reconnects, splits;
		uint64_t sc_reads, sc_fallbacks, bounced;
	} stats;
};

static inline uint64_t wf_clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t wf_now_ms(void)
{
	struct timespec ts;

	/* vDSO: no system call on the data path. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* log.c: one line to the application's callback, if its level is wanted
 * (weft_cluster_opts.log, .log_level); never to stderr. */
void wf_log(const struct weft_cluster *cl, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* cluster.c: load a newer map file if there is one (1: a new epoch is in
 * place, 0: nothing newer, -errno).  Calls the piece machine (pieces that
 * waited for a map go at once). */
int  wf_map_refresh(struct weft_cluster *cl, bool force);

/* conn.c: the connection machine (enum wf_conn_state).  It never changes a
 * piece: what concerns pieces is returned to the caller (piece.c), and a
 * connection that goes down waits on cl->down for the piece machine. */
struct wf_conn *wf_conn_new(struct weft_cluster *cl, uint32_t target_id);
void wf_conn_free(struct wf_conn *c);
int  wf_conn_connect(struct wf_conn *c);
void wf_conn_fail(struct wf_conn *c);
/* The fabric's CONNECT completion of c's endpoint (status 0 or -errno). */
void wf_conn_on_connect(struct wf_conn *c, int status);
void wf_conn_on_disconnect(struct wf_conn *c);
enum wf_conn_ev wf_conn_on_msg(struct wf_conn *c, const void *msg,
			       uint32_t len, struct wf_reply *reply);
/* Off cl->down: IDLE again after a backoff, or freed (a dead one).
 * Returns the next connection on the list. */
struct wf_conn *wf_conn_down_done(struct wf_conn *c);
/* The connection a piece of (volume, off) goes to: c (reactor 0's) or the
 * owner reactor's connection of the same target. */
struct wf_conn *wf_conn_route(struct wf_conn *c, uint64_t volume, uint64_t off);
/* Reactor connections of c: close and forget them (c leaves the map, or
 * the target restarted with another reactor count). */
void wf_conn_drop_subs(struct wf_conn *c);
/* Connect and HELLO deadlines of c and its reactor connections. */
void wf_conn_sweep(struct wf_conn *c, uint64_t now);
static inline int wf_slot_take(struct wf_conn *c)
{
	for (uint32_t w = 0; w < c->slot_words; w++) {
		uint64_t v = c->slot_free[w];

		if (v) {
			unsigned b = (unsigned)__builtin_ctzll(v);

			c->slot_free[w] = v & (v - 1);
			c->nfree--;
			return (int)(w * 64 + b);
		}
	}
	return -1;
}
static inline void wf_slot_put(struct wf_conn *c, uint32_t s)
{
	c->slot_free[s / 64] |= 1ull << (s % 64);
	c->nfree++;
}

/* sc.c: local short-circuit sessions and their io_uring.  It never
 * changes a piece: reads are started with a tag and reaped as tags. */
int  wf_sc_init(struct weft_cluster *cl);
void wf_sc_fini(struct weft_cluster *cl);
void wf_sc_rebuild(struct weft_cluster *cl);
/* Queue a read of len bytes at byte in_ext of (volume, extent) from local
 * target tidx into dst; true when queued (wf_sc_reap reports tag later),
 * false when it must go through the target.  leased: the extent's PG has
 * other acting members, so the target's read leases must hold (as the
 * target checks for a read it serves; docs/replication.md). */
bool wf_sc_read(struct weft_cluster *cl, uint32_t tidx, uint64_t volume,
		uint32_t extent, uint64_t in_ext, void *dst, uint32_t len,
		uint64_t tag, bool leased, struct wf_sc_read *rd);
struct wf_sc_cqe {
	uint64_t tag;
	int32_t  res;
};
/* Completed reads, up to max; the targets' liveness is checked once per
 * call.  Each must be passed to wf_sc_read_ok exactly once. */
int  wf_sc_reap(struct weft_cluster *cl, struct wf_sc_cqe *out, int max);
/* Whether a completed read of len bytes returned what the extent held
 * (else it goes through the target); releases rd. */
bool wf_sc_read_ok(struct weft_cluster *cl, struct wf_sc_read *rd, int32_t res,
		   uint32_t len);
void wf_sc_flush(struct weft_cluster *cl);

/* io.c: one progress turn (tests call it too); returns completions seen
 * or -errno. */
int  wf_progress(struct weft_cluster *cl);

/* piece.c: the piece and parent state machine. */
int  wf_io_init(struct weft_cluster *cl);
void wf_io_fini(struct weft_cluster *cl);
/* Start a parent (cut it into pieces and route them). */
void wf_io_start(struct weft_cluster *cl, struct wf_io *io);
/* One fabric completion; then wf_pieces_turn once per batch. */
void wf_pieces_on_cqe(struct weft_cluster *cl, const struct wf_cqe *e);
/* Re-route what connections that went down held, run due retries,
 * check deadlines: once per progress turn. */
void wf_pieces_turn(struct weft_cluster *cl);
/* Short-circuit completions; returns how many. */
int  wf_pieces_sc_reap(struct weft_cluster *cl);
/* A new map epoch is in place: pieces waiting for one go now. */
void wf_pieces_new_map(struct weft_cluster *cl);
/* ms until the next timer of the piece machine (-1: none). */
int  wf_pieces_timer_ms(const struct weft_cluster *cl);

#endif
