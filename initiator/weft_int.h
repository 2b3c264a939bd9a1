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
 */
#ifndef WEFT_INITIATOR_INT_H
#define WEFT_INITIATOR_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fabric/fabric.h"
#include "fabric/wire.h"
#include "initiator/include/weft.h"
#include "placement/map.h"
#include "placement/placement.h"

#define WF_BLOCK           4096u
#define WF_PIECE_MAX       (128u * 1024)   /* largest wire request we cut,
                                            * and the HELLO's max_io */
#define WF_DEF_QD          128u
#define WF_DEF_TIMEOUT_MS  10000u
#define WF_CONNECT_MS      2000            /* a blocking connect's bound */
#define WF_BACKOFF_MIN_MS  1
#define WF_BACKOFF_MAX_MS  200
#define WF_SWEEP_MS        10              /* deadline scan period */
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
	CONN_HELLO,     /* endpoint up, HELLO sent: waiting for the GRANT;
	                 * pieces wait on wait_q */
	CONN_LIVE,      /* granted: pieces take slots and go out */
	CONN_CLOSING,   /* wf_ep_close() called: waiting for WF_CQE_DISCONNECT,
	                 * after which every piece it held is re-routed */
};

struct wf_conn {
	struct weft_cluster *cl;
	uint32_t   target_id;
	uint32_t   idx;                 /* in cl->conns */
	int        state;               /* enum wf_conn_state */
	bool       dead;                /* target left the map: free on DISCONNECT */
	/* Writes completed here (wgen) and how many of them an OK flush
	 * reply covers (fgen): a flush must visit while they differ.  Carried
	 * to the new connection when a map change replaces this one. */
	uint64_t   wgen, fgen;
	char       addr[WF_NAME_MAX + WF_PATH_MAX + 16];
	struct wf_ep *ep;
	uint64_t   retry_at;            /* CONN_IDLE: no connect before (ms) */
	unsigned   fails;               /* consecutive connect failures */
	uint64_t   hello_deadline;      /* CONN_HELLO: give up then (ms) */

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
	uint64_t   deadline;            /* ms: no acting replica by then ->
	                                 * -ETIMEDOUT */
};

enum wf_piece_state {
	PC_FREE,        /* on cl->pc_free */
	PC_QUEUED,      /* on a connection's wait_q: no grant or no free slot
	                 * yet */
	PC_RETRY,       /* on cl->retry_q: re-routed at retry_at (backoff,
	                 * new epoch, reconnect) */
	PC_SENT,        /* on the wire holding slot `slot` of conn; finishes
	                 * when the REPLY is in and local_ops is 0 */
	PC_SC,          /* short-circuit read in the local io_uring */
};

struct wf_piece {
	struct wf_piece *next;
	struct wf_io *io;
	uint32_t   idx;                 /* in cl->pieces; owns bounce chunk idx */
	uint32_t   gen;                 /* bumped at every send: stale tags */
	uint8_t    state;               /* enum wf_piece_state */
	uint8_t    op;
	bool       replied;
	uint8_t    local_ops;           /* our fabric ops not yet completed */
	uint32_t   len;
	uint32_t   wlen;                /* bytes of the request on the wire
	                                 * (< len when slots are smaller) */
	uint64_t   off;                 /* in the volume */
	uint64_t   bufoff;              /* into io->buf */
	uint32_t   target;              /* FLUSH: target id it is for */
	uint64_t   fgen;                /* FLUSH: the target's wgen at carve */
	struct wf_conn *conn;           /* PC_QUEUED, PC_SENT */
	uint32_t   slot;
	int32_t    res;                 /* PC_SENT: the outcome once replied */
	unsigned   attempts;
	uint64_t   retry_at;
	/* short circuit */
	bool       landed;              /* the data is in the caller's buffer
	                                 * already (no bounce copy-out) */
	bool       sc_skip;             /* go through the target (a short-
	                                 * circuit attempt fell back) */
	uint32_t   sc_phys, sc_seq;
	uint64_t   sc_epoch;    /* our map epoch when the read was routed */
	struct wf_sc *sc;
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

/* ---- short circuit (sc.c) -------------------------------------------------- */

struct wf_sc;           /* one local target's device + index view */
struct wf_sc_ring;      /* the cluster's io_uring for short-circuit reads */

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
	uint64_t   client_id;

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
	uint32_t   inflight;            /* parents queued, not completed */

	/* Completion ring: at most qd entries (one per parent). */
	struct weft_cqe *cq;
	uint32_t   cq_head, cq_count;

	uint64_t   now;                 /* ms, refreshed per poll */
	uint64_t   now_us;
	uint64_t   next_sweep;

	int        epfd;                /* weft_fd: fabric fd + sc ring fd */
	int        spin_us;

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

/* cluster.c */
uint64_t wf_now_ms(void);
int  wf_map_refresh(struct weft_cluster *cl, bool force);
const char *wf_cl_addr(struct weft_cluster *cl, uint32_t tidx, char *buf,
		       size_t len);
/* Reactor k of target tidx: port + k, unix socket path + ".k". */
const char *wf_cl_addr_k(struct weft_cluster *cl, uint32_t tidx, uint32_t k,
			 char *buf, size_t len);

/* conn.c */
struct wf_conn *wf_conn_new(struct weft_cluster *cl, uint32_t tidx);
void wf_conn_free(struct wf_conn *c);
int  wf_conn_connect(struct wf_conn *c);
void wf_conn_fail(struct wf_conn *c);
void wf_conn_on_msg(struct wf_conn *c, const void *msg, uint32_t len);
void wf_conn_on_disconnect(struct wf_conn *c);
/* The connection a piece of (volume, off) goes to: c (reactor 0's) or the
 * owner reactor's connection of the same target. */
struct wf_conn *wf_conn_route(struct wf_conn *c, uint64_t volume, uint64_t off);
/* Reactor connections of c: close and forget them (c leaves the map, or
 * the target restarted with another reactor count). */
void wf_conn_drop_subs(struct wf_conn *c);
/* HELLO deadlines of c's reactor connections (c's own: io.c sweep). */
void wf_conn_sweep_subs(struct wf_conn *c, uint64_t now);
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

/* io.c */
int  wf_io_init(struct weft_cluster *cl);
void wf_io_fini(struct weft_cluster *cl);
void wf_pq_push(struct wf_pq *q, struct wf_piece *p);
struct wf_piece *wf_pq_pop(struct wf_pq *q);
void wf_piece_dispatch(struct weft_cluster *cl, struct wf_piece *p);
void wf_piece_retry(struct weft_cluster *cl, struct wf_piece *p, int err,
		    unsigned delay_ms);
void wf_piece_done(struct weft_cluster *cl, struct wf_piece *p, int64_t res);
void wf_piece_settle(struct weft_cluster *cl, struct wf_piece *p);
void wf_conn_kick(struct wf_conn *c);
void wf_on_reply(struct wf_conn *c, const struct wf_reply *r);
int  wf_progress(struct weft_cluster *cl);

/* sc.c */
int  wf_sc_init(struct weft_cluster *cl);
void wf_sc_fini(struct weft_cluster *cl);
void wf_sc_rebuild(struct weft_cluster *cl);
bool wf_sc_try(struct weft_cluster *cl, struct wf_piece *p,
	       const struct wf_extent_loc *loc);
int  wf_sc_poll(struct weft_cluster *cl);
void wf_sc_flush(struct weft_cluster *cl);
int  wf_sc_fd(const struct weft_cluster *cl);

#endif
