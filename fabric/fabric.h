/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fabric: one set of one-sided transport semantics over several backends
 * (verbs over RDMA, and tcp over TCP or AF_UNIX byte streams).
 *
 * The caller owns the event loop: the fabric has no threads of its own.
 * A wf_ctx is one completion context (one per reactor).  Endpoints created
 * on it report every completion and event through wf_poll() on that ctx.
 *
 * Every function returns 0 (or a count) on success and -errno on failure;
 * errors from the backends (verbs' positive errno, librdmacm's -1/errno,
 * socket calls) are converted in one place per backend.
 *
 * Addresses are strings:
 *   "tcp:HOST:PORT"    TCP (tcp backend)
 *   "unix:/PATH"       AF_UNIX stream socket (tcp backend)
 *   "rdma:HOST:PORT"   librdmacm over an RDMA device (verbs backend)
 *
 * Changes since the skeleton (additive, behaviour only; the declarations
 * are unchanged): wf_write_imm/wf_read also return -ERANGE when
 * [roff, roff + len) is outside what the rkey describes; wf_connect and
 * wf_listen return -ENOSPC at once when one endpoint's
 * send_depth + recv_depth + 1 exceeds the ctx's cq_depth.  Wire headers for
 * the upper layers are in proto/wire.h; semantics in docs/fabric.md.
 */
#ifndef WEFT_FABRIC_FABRIC_H
#define WEFT_FABRIC_FABRIC_H

#include <stddef.h>
#include <stdint.h>

enum wf_backend {
	WF_BACKEND_TCP   = 1,   /* tcp: and unix: addresses */
	WF_BACKEND_VERBS = 2,   /* rdma: addresses */
};

struct wf_ctx;          /* completion context, one per event loop */
struct wf_listener;     /* passive endpoint */
struct wf_ep;           /* connected endpoint (an RC queue pair or a socket) */
struct wf_mr;           /* registered memory region */

/* Options structs grow at the end only; callers set .size = sizeof(*o). */
struct wf_ctx_opts {
	size_t   size;
	uint32_t backend;       /* enum wf_backend */
	uint32_t cq_depth;      /* completion credits shared by all endpoints of
	                         * the ctx; creating an endpoint whose
	                         * send_depth + recv_depth would overrun them
	                         * fails with -ENOSPC (0: default 4096) */
	uint32_t flags;         /* WF_CTX_* */
};

enum {
	/*
	 * Posts on the ctx's endpoints may wait until the next wf_poll(),
	 * wf_ctx_arm() or wf_flush() on the ctx, so everything posted in
	 * between leaves in one go (tcp: one sendmsg per endpoint instead of
	 * one per post).  Without it every post starts at once.  Verbs posts
	 * at once either way.
	 */
	WF_CTX_BATCH = 1u << 0,
};

struct wf_ep_opts {
	size_t   size;
	uint32_t send_depth;    /* outstanding write_imm + read + send per
	                         * endpoint; more gives -EAGAIN (0: default 64) */
	uint32_t recv_depth;    /* receive credits: incoming messages and
	                         * write-with-immediate notifications that may
	                         * be pending at once (0: default 64) */
	uint32_t msg_size;      /* largest two-sided message (0: default 512) */
	int      timeout_ms;    /* connect timeout; on a listener, how long an
	                         * accepted socket may take to finish its hello
	                         * (0: default 5000) */
	void    *user;          /* returned in wf_ep_user() */
	uint32_t keepalive_s;   /* tcp, on a listener: accepted TCP sockets
	                         * probe an idle peer after this many seconds
	                         * (then every keepalive_s / 3, 3 probes), so
	                         * a vanished host's connection ends (0: off;
	                         * AF_UNIX and verbs: ignored) */
};

/* Access rights of a region for remote peers. */
enum {
	WF_ACCESS_REMOTE_WRITE = 1u << 0,
	WF_ACCESS_REMOTE_READ  = 1u << 1,
};

/*
 * What a peer needs to address part of a region: sent to it in a message.
 * Opaque values: verbs puts the virtual address and rkey here; tcp a region
 * id and base offset.  Little-endian on the wire (it is sent in messages).
 */
struct wf_rkey {
	uint64_t addr;
	uint32_t key;
	uint32_t len;           /* bytes addressable from addr */
};

/* Its image in a message: 16 bytes, little-endian. */
struct wf_wire_rkey {
	uint64_t addr;
	uint32_t key;
	uint32_t len;
};
_Static_assert(sizeof(struct wf_wire_rkey) == 16, "wire rkey is 16 bytes");
void wf_rkey_encode(const struct wf_rkey *k, struct wf_wire_rkey *w);
void wf_rkey_decode(const struct wf_wire_rkey *w, struct wf_rkey *k);

/* Completion kinds. */
enum wf_cqe_op {
	WF_CQE_WRITE_IMM = 1,   /* our wf_write_imm finished (wr_id set) */
	WF_CQE_READ,            /* our wf_read finished; data in the local mr */
	WF_CQE_SEND,            /* our wf_send finished */
	WF_CQE_RECV_IMM,        /* a peer's write with immediate landed: imm and
	                         * len are set; the bytes are already in our mr */
	WF_CQE_RECV_MSG,        /* a peer's message: msg and len are set */
	WF_CQE_ACCEPT,          /* a listener has an endpoint for wf_accept */
	WF_CQE_DISCONNECT,      /* the endpoint is gone: every outstanding
	                         * operation has already completed with an
	                         * error; the caller now calls wf_ep_destroy */
	WF_CQE_WRITE,           /* our wf_write finished (wr_id set) */
	WF_CQE_CONNECT,         /* wf_connect_start's endpoint is connected
	                         * (status 0) or is not (status -errno: the
	                         * caller calls wf_ep_destroy) */
};

struct wf_cqe {
	uint64_t     wr_id;     /* caller's id for local operations */
	struct wf_ep *ep;       /* endpoint (NULL for WF_CQE_ACCEPT) */
	struct wf_listener *listener; /* WF_CQE_ACCEPT only */
	int32_t      status;    /* 0 or -errno (-ECONNRESET when the peer went away) */
	uint32_t     op;        /* enum wf_cqe_op */
	uint32_t     imm;       /* WF_CQE_RECV_IMM */
	uint32_t     len;       /* bytes received (RECV_IMM, RECV_MSG) */
	const void  *msg;       /* WF_CQE_RECV_MSG: valid until the next
	                         * wf_poll() on the same ctx */
};

/* Contexts */
int  wf_ctx_create(const struct wf_ctx_opts *o, struct wf_ctx **out);
void wf_ctx_destroy(struct wf_ctx *ctx);   /* all eps, listeners, mrs first */
/*
 * An fd that becomes readable when wf_poll() may return something.  To sleep:
 * call wf_ctx_arm(); if it returns 0, poll again once (events may have raced
 * in), then sleep on the fd (poll/epoll/io_uring).  Busy-poll first if you
 * like: wf_poll() alone makes no blocking call.
 */
int  wf_ctx_fd(const struct wf_ctx *ctx);
int  wf_ctx_arm(struct wf_ctx *ctx);
/*
 * Reap up to max completions into cqes.  Returns the number (0 if none) or
 * -errno.  Also drives progress of the tcp backend (it reads and writes the
 * sockets here), so a tcp peer must poll for one-sided operations aimed at
 * it to complete; a verbs peer need not.
 */
int  wf_poll(struct wf_ctx *ctx, struct wf_cqe *cqes, int max);
/*
 * wf_poll() for a caller that has nothing to sleep on but ctx: when
 * nothing is ready, sleep up to timeout_ms (-1: no bound, 0: not at all)
 * until something is, and reap it in the same call.  Returns as wf_poll()
 * (0: the time ran out, or what woke it gave no completion: poll again).
 * tcp sleeps in its own epoll and handles what woke it (one epoll_wait
 * instead of wf_ctx_arm, a poll, a sleep on the fd and the poll that asks
 * which socket woke it); other backends arm, poll, sleep on the fd and
 * poll.
 */
int  wf_poll_wait(struct wf_ctx *ctx, struct wf_cqe *cqes, int max,
		  int timeout_ms);
/*
 * Start everything posted on the ctx's endpoints (see WF_CTX_BATCH; a
 * no-op without it).  wf_poll() and wf_ctx_arm() do the same first.
 */
int  wf_flush(struct wf_ctx *ctx);
/*
 * A hint for the next wf_poll() on ctx only: the kernel has nothing new
 * for ctx's sockets that the caller would not learn from its own poll of
 * ctx's fd.  Give it when such a poll, one that reports the fd's level
 * (readable whenever it is, as poll(2) and io_uring's poll do), is pending
 * and has not reported the fd readable, or will be armed before the
 * caller next sleeps; poll without it once that poll reports the fd
 * readable.  The hinted poll skips asking the kernel about the sockets
 * (tcp: no epoll_wait, no recv); it still flushes batched posts, returns
 * receive credits and hands out the completions already queued.  What it
 * skips keeps the fd readable, so a wrong hint only defers work to the
 * next poll without it.  A caller that counts its poll as pending until it
 * has looked at the report (weft-target: wf_store_watch_pending stays true
 * while the watch's completion sits unreaped in the ring) gives the hint
 * in the turn the fd became readable too: that work waits one turn, for
 * the poll after the report is reaped.  Verbs: ignored (its poll makes no
 * system call).
 */
void wf_ctx_quiet(struct wf_ctx *ctx);

/*
 * What a ctx has done since it was created, counted by the generic layer
 * for every backend: posts that succeeded and completions returned.  For
 * costs that do not depend on the machine's noise (docs/performance.md,
 * "Counts"): per I/O, these are exact.  The ctx's thread writes them; any
 * thread may read them (each a relaxed atomic load).
 */
struct wf_fab_counts {
	uint64_t sends;         /* wf_send */
	uint64_t writes;        /* wf_write, wf_write_imm */
	uint64_t reads;         /* wf_read */
	uint64_t cqes;          /* completions returned by wf_poll */
	uint64_t recvs;         /* of those, messages received */
};

void wf_ctx_counts(const struct wf_ctx *ctx, struct wf_fab_counts *out);

/* Connections */
int  wf_listen(struct wf_ctx *ctx, const char *addr, const struct wf_ep_opts *o,
	       struct wf_listener **out);
/* Local address actually bound (port 0 picks a free port), as a string. */
int  wf_listener_addr(const struct wf_listener *l, char *buf, size_t len);
/* Take one connected endpoint, or -EAGAIN when none is pending. */
int  wf_accept(struct wf_listener *l, void *user, struct wf_ep **out);
void wf_listener_destroy(struct wf_listener *l);
/* Connect; blocks up to o->timeout_ms (control path only). */
int  wf_connect(struct wf_ctx *ctx, const char *addr, const struct wf_ep_opts *o,
		struct wf_ep **out);
/*
 * Connect without blocking (an event loop that must keep serving its other
 * endpoints meanwhile).  Returns -EINPROGRESS with *out connecting: one
 * WF_CQE_CONNECT completion on it follows from wf_poll() on ctx, status 0
 * once it is connected, or -errno (-ETIMEDOUT past o->timeout_ms, counted
 * by wf_poll() calls: a caller that sleeps wakes for its own timers), after
 * which the caller calls wf_ep_destroy().  Posting on a connecting endpoint
 * gives -ENOTCONN; wf_ep_destroy() abandons the attempt at any time.
 * Returns 0 when *out is connected already (no CONNECT completion comes:
 * a backend without a way to connect in the background; tcp, unix and
 * verbs all have one).  Other -errno: nothing was made.
 */
int  wf_connect_start(struct wf_ctx *ctx, const char *addr,
		      const struct wf_ep_opts *o, struct wf_ep **out);
/* Start disconnecting; a WF_CQE_DISCONNECT follows once all is drained. */
int  wf_ep_close(struct wf_ep *ep);
/* Free the endpoint (after WF_CQE_DISCONNECT, or at any time on teardown:
 * drains before destroying). */
void wf_ep_destroy(struct wf_ep *ep);
void *wf_ep_user(const struct wf_ep *ep);
/*
 * Who the peer of a connected endpoint is, for limits per peer: "tcp:HOST"
 * or "rdma:HOST" (no port: every connection of a host says the same) or,
 * over AF_UNIX, "unix:uid=UID" from the socket's peer credentials.  0,
 * -ENOSPC (buf too short), -ENOTCONN or another -errno.
 */
int  wf_ep_peer(const struct wf_ep *ep, char *buf, size_t len);

/* Memory regions: registered once, addressed by handle + offset. */
int  wf_mr_reg(struct wf_ctx *ctx, void *addr, size_t len, unsigned access,
	       struct wf_mr **out);
void wf_mr_dereg(struct wf_mr *mr);
void *wf_mr_addr(const struct wf_mr *mr);
/* Describe [off, off + len) of mr for the peer of ep (rkeys may differ per
 * device, hence the ep). */
int  wf_mr_rkey(const struct wf_mr *mr, const struct wf_ep *ep, uint64_t off,
		uint32_t len, struct wf_rkey *out);
/*
 * Let only the peer of ep address mr remotely (NULL: every endpoint of the
 * ctx again, the default).  A write, write_imm or read request from any
 * other endpoint that names mr is then refused: that endpoint is
 * disconnected and mr is untouched.  Binding a region to the endpoint that
 * uses it stops a peer that learnt or guessed another connection's key.
 * Binding to another endpoint moves the binding; once ep is closed or
 * destroyed nobody reaches mr until it is bound again or unbound.
 * Take rkeys of mr (wf_mr_rkey) after binding: over verbs the key changes
 * at bind and at unbind (a type 2 memory window's key while bound, see
 * docs/fabric.md), and the first bind and the unbind register mr anew, so
 * no local operation on mr may be in flight then.  ep must be connected
 * (-ENOTCONN).  Control path: verbs waits for the bind to complete.
 * -EOPNOTSUPP on an RDMA device without type 2B memory windows (not
 * printed: the caller decides whether to say so).
 */
int  wf_mr_bind(struct wf_mr *mr, const struct wf_ep *ep);

/*
 * Data operations.  Each consumes one send credit of ep until its completion
 * is reaped; with none left they return -EAGAIN and post nothing.
 */
/* Write mr[loff, loff+len) to the peer's region at rkey + roff, then raise
 * WF_CQE_RECV_IMM with imm at the peer (consuming one of its receive
 * credits; a peer with none left applies backpressure, nothing is dropped). */
int  wf_write_imm(struct wf_ep *ep, const struct wf_mr *mr, uint64_t loff,
		  uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
		  uint32_t imm, uint64_t wr_id);
/* Read the peer's region rkey + roff into mr[loff, loff+len). */
/* Plain one-sided write: mr[loff, loff+len) to the peer's region at
 * rkey + roff, with no notification at the peer (consumes none of its
 * receive credits).  Ordering: a later wf_write_imm or wf_send on the same
 * endpoint is delivered after these bytes are in place (RC ordering), which
 * is how a payload is placed before the request that names it. */
int  wf_write(struct wf_ep *ep, const struct wf_mr *mr, uint64_t loff,
	      uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
	      uint64_t wr_id);
int  wf_read(struct wf_ep *ep, const struct wf_mr *mr, uint64_t loff,
	     uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
	     uint64_t wr_id);
/* Send a small message (copied; len <= msg_size). */
int  wf_send(struct wf_ep *ep, const void *msg, uint32_t len, uint64_t wr_id);

/* Readable name of a cqe op, for logs. */
const char *wf_cqe_op_name(uint32_t op);

#endif
