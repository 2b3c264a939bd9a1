/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to the verbs backend: the structs that fabric/verbs.c (the
 * completion ring, endpoints' life and teardown, wf_poll, memory
 * registration, data operations) and fabric/verbs_cm.c (rdma_cm: listeners,
 * connect, the events on the ctx channel, and setting up devices and
 * endpoints for new connections) share, and the functions one of them calls
 * in the other.
 */
#ifndef WEFT_FABRIC_VERBS_INT_H
#define WEFT_FABRIC_VERBS_INT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "fabric/fabric_int.h"

#define VDEV_MAX        8       /* RDMA devices one ctx may use */

/* A doubly linked ring (the ctx's lists of endpoints, regions, ...). */
struct vlink {
	struct vlink *prev, *next;
};

static inline void vlist_init(struct vlink *h) { h->prev = h->next = h; }
static inline bool vlist_empty(const struct vlink *h) { return h->next == h; }

static inline void vlist_add_tail(struct vlink *h, struct vlink *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static inline void vlist_del(struct vlink *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	vlist_init(n);
}

#define container_of(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

struct vdev {
	struct ibv_context      *verbs;
	struct ibv_pd           *pd;
	struct ibv_comp_channel *ch;
	struct ibv_cq           *cq;
	int                      idx;
	int                      rd_atom;       /* responder resources */
	int                      init_rd_atom;  /* initiator depth */
	bool                     mw2;           /* type 2B memory windows */
};

/* A completion waiting in the ctx ring; rs: receive buffer to repost once
 * the completion has been returned. */
struct vcqe {
	struct wf_cqe  cqe;
	struct vrecv  *rs;
};

struct vctx {
	struct wf_ctx               base;
	int                         epfd;
	int                         evfd;
	struct rdma_event_channel  *cm;
	struct vdev                 devs[VDEV_MAX];
	int                         ndev;
	uint32_t                    cq_cap;      /* cq_depth */
	uint32_t                    cq_reserved; /* promised to eps/listeners */
	struct vcqe                *ring;        /* cq_cap entries */
	uint32_t                    head, count;
	struct vrecv              **repost;      /* cq_cap entries */
	uint32_t                    nrepost;
	struct vlink                eps;         /* every ep, zombies too */
	struct vlink                mrs;
	struct vlink                listeners;
	bool                        kicked;      /* evfd written, not read */
	bool                        armed;       /* CQ notifications asked */
	int64_t                     cm_checked;  /* ms, coarse clock */
	struct vlink                conning;     /* eps in EP_CONNECTING */
};

struct vmr {
	struct wf_mr   base;
	struct vlink   link;
	int            ibv_access;      /* of the MRs now */
	int            remote;          /* remote rights asked at wf_mr_reg */
	struct ibv_mr *mr[VDEV_MAX];    /* per device of the ctx */
	/* wf_mr_bind: while bound, the MRs have no remote rights; owner's QP
	 * alone reaches the region, through mw.  owner is NULL once that
	 * endpoint is gone (the region stays closed to everyone). */
	bool           bound;
	struct vep    *owner;
	struct vlink   blink;           /* owner->bound */
	struct ibv_mw *mw;              /* type 2 window on owner's QP */
	uint32_t       mw_rkey;
	int            mw_dev;          /* device index of mw */
};

struct vlistener {
	struct wf_listener  base;
	struct vctx        *ctx;
	struct rdma_cm_id  *id;
	struct vlink        link;
	struct vlink        pending;    /* passive eps not yet taken */
	bool                accept_queued;
};

/* Work request contexts: wr_id points at one of these; kind says which. */
enum { SLOT_SEND = 1, SLOT_RECV = 2, SLOT_BIND = 3 };

struct vsend {
	uint8_t      kind;      /* SLOT_SEND */
	uint8_t      op;        /* enum wf_cqe_op it completes as */
	struct vep  *ep;
	uint64_t     wr_id;     /* the caller's */
};

struct vrecv {
	uint8_t      kind;      /* SLOT_RECV */
	struct vep  *ep;
	uint32_t     idx;       /* buffer index */
};

/* The endpoint's one memory window bind in flight (never the caller's). */
struct vbind {
	uint8_t      kind;      /* SLOT_BIND */
	bool         busy;      /* posted, completion not seen yet */
	enum ibv_wc_status status;
};

enum vep_state {
	EP_ACCEPTING,   /* passive: rdma_accept sent, not established yet */
	EP_WAITING,     /* passive: established, waiting for wf_accept */
	EP_LIVE,        /* the caller's: data operations allowed */
	EP_CLOSING,     /* QP in error: outstanding operations flushing */
	EP_CLOSED,      /* DISCONNECT raised; waiting for wf_ep_destroy */
	EP_DESTROYING,  /* wf_ep_destroy draining: completions are dropped */
	EP_ZOMBIE,      /* destroyed, QP gone; kept as late CQEs may name it */
	EP_CONNECTING,  /* active, wf_connect_start: resolving, then connecting
	                 * (cphase); on ctx->conning until ESTABLISHED, a
	                 * failure or its deadline (verbs_cm.c); then EP_LIVE,
	                 * or EP_CLOSED after its failed CONNECT completion */
};

struct vep {
	struct wf_ep       base;
	struct vctx       *ctx;
	struct vlink       link;        /* ctx->eps */
	struct vlink       plink;       /* listener->pending */
	struct vlistener  *listener;    /* while passive and not yet taken */
	struct rdma_cm_id *id;
	struct ibv_qp     *qp;
	struct vdev       *dev;
	enum vep_state     state;
	bool               reserved;    /* counted in ctx->cq_reserved */
	int32_t            close_status; /* of the DISCONNECT: 0 if we closed */
	uint32_t           send_depth, recv_depth, msg_size, peer_msg_size;
	uint32_t           max_inline;  /* what the QP granted */
	uint32_t           send_busy;   /* send slots in flight */
	uint32_t           recv_posted; /* receives owned by the QP */
	struct vsend      *sends;
	uint32_t          *free_sends;  /* stack of free send slot indices */
	uint32_t           nfree;
	struct vrecv      *recvs;
	struct vcqe       *early;       /* receives completed before wf_accept */
	uint32_t           nearly;
	uint8_t           *buf;         /* recv_depth + send_depth buffers */
	size_t             buf_len;
	struct ibv_mr     *buf_mr;
	struct vbind       bind;        /* the send queue entry beyond
	                                 * send_depth, for wf_mr_bind */
	struct vlink       bound;       /* regions bound to us (vmr.blink) */
	/* wf_connect_start (EP_CONNECTING): the step it is at, its deadline
	 * (ms, CLOCK_MONOTONIC), its link on ctx->conning, and the one ring
	 * entry its CONNECT completion needs (reserved at the start, before
	 * the QP's own credits exist). */
	uint8_t            cphase;      /* enum vcphase */
	int64_t            cdeadline;
	uint32_t           ctimeout_ms;
	struct vlink       clink;
	bool               creserved;
	bool               never_up;    /* wf_connect_start, not (yet)
	                                 * connected: nothing is owed to the
	                                 * caller at teardown */
};

enum vcphase {
	CP_ADDR = 0,    /* rdma_resolve_addr sent */
	CP_ROUTE,       /* rdma_resolve_route sent */
	CP_CONNECT,     /* QP made, rdma_connect sent */
};

/*
 * The one place where rdma-core's error conventions become -errno: verbs
 * calls return a positive errno (a few return -1 and set errno), librdmacm
 * calls and every constructor that returns NULL set errno (pass -1).
 */
static inline int verr(int ret)
{
	if (ret == 0)
		return 0;
	if (ret == -1)
		return errno > 0 ? -errno : -EIO;
	return ret > 0 ? -ret : ret;
}

static inline uint32_t ep_budget(uint32_t send_depth, uint32_t recv_depth)
{
	return send_depth + recv_depth + 1;
}

/* Access flags for an MR on d: MW_BIND only where windows exist (a
 * device without them may refuse the flag). */
static inline int dev_access(const struct vdev *d, int access)
{
	return d->mw2 ? access : access & ~IBV_ACCESS_MW_BIND;
}

/* ---- verbs.c ---- */

struct vcqe *verbs_ring_push(struct vctx *c, uint32_t op, struct vep *ep);
void verbs_ring_kick(struct vctx *c);
/* Forget everything queued for an endpoint or a listener going away. */
void verbs_ring_purge(struct vctx *c, struct vep *ep, struct vlistener *l);
int  verbs_post_recv(struct vep *ep, uint32_t idx);
void verbs_ep_free_mem(struct vep *ep);
/* status: what the DISCONNECT will carry (0: closed by us). */
void verbs_ep_begin_close(struct vep *ep, int status);
/* Unlink from the listener while passive and not yet taken. */
void verbs_ep_unlisten(struct vep *ep);
void verbs_ep_teardown(struct vep *ep);

/* ---- verbs_cm.c ---- */

void verbs_dev_teardown(struct vdev *d);
/* The rdma_cm events waiting on the ctx channel. */
int  verbs_cm_drain(struct vctx *c);

/* wf_ops of the verbs backend (the table, wf_verbs_ops, is in verbs.c). */
int  verbs_listen(struct wf_ctx *wc, const char *addr, const struct wf_ep_opts *o,
		  struct wf_listener **out);
int  verbs_listener_addr(const struct wf_listener *lb, char *buf, size_t len);
int  verbs_accept(struct wf_listener *lb, struct wf_ep **out);
void verbs_listener_destroy(struct wf_listener *lb);
int  verbs_connect(struct wf_ctx *wc, const char *addr, const struct wf_ep_opts *o,
		   struct wf_ep **out);
int  verbs_connect_start(struct wf_ctx *wc, const char *addr,
			 const struct wf_ep_opts *o, struct wf_ep **out);
/* A connecting endpoint goes (wf_ep_destroy): off ctx->conning, its CONNECT
 * credit back. */
void verbs_connect_forget(struct vep *ep);

#endif
