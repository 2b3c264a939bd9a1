/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tcp backend: the fabric's one-sided semantics emulated over a byte stream
 * (TCP or AF_UNIX).  Framing is in fabric/tcp_frame.h.
 *
 * Progress happens inside wf_poll() (and, for the first attempt to write,
 * inside the posting call): the ctx owns an epoll set (its wf_ctx_fd) with
 * every socket in it, level-triggered.  Receiving a WRITE_IMM reads the
 * 24-byte frame header, checks key, bounds and access against the local
 * region, and then receives the payload straight into the region: the
 * payload never passes through an intermediate buffer.  The read of a
 * payload also asks for the next frame header in the same recvmsg(), so a
 * stream of frames costs one system call per frame.
 *
 * Credits (all sized at connect/accept; nothing is allocated per operation):
 *  - send: ep->ops[send_depth].  A write_imm, read or send takes one and
 *    keeps it until its completion has been returned by wf_poll.
 *  - receive: recv_depth per ep.  A WRITE_IMM or SEND frame from the peer
 *    takes one when its header is dispatched; it comes back at the wf_poll
 *    after the one that returned its completion (a message stays readable
 *    until then).  With none left, the ep stops reading its socket: TCP's
 *    flow control then holds the sender back.  Nothing is dropped.
 *  - responses: a peer's read requests in flight are bounded by its
 *    send_depth (learnt in the hello), so the tx ring holds send_depth +
 *    peer_send_depth items and never overflows; a peer that exceeds it is
 *    violating the protocol and is disconnected.
 *  - completion queue: every ep reserves send_depth + recv_depth + 1
 *    (its DISCONNECT) entries of the ctx's cq_depth, every listener one
 *    (its ACCEPT); the ring therefore never overflows.
 *
 * A write_imm, write or send completes once all its bytes are in the socket (its
 * source may then be reused); a read completes when the response has landed.
 * Delivery to the peer's application is confirmed only by the peer's own
 * answer, exactly as with verbs, where a write completion says nothing about
 * whether the peer has looked at it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fabric/fabric_int.h"
#include "fabric/tcp_frame.h"

#define FRAME_LEN     ((uint32_t)sizeof(struct wf_tcp_frame))
#define HELLO_LEN     ((uint32_t)sizeof(struct wf_tcp_hello))
#define RX_BUDGET     64        /* frames per ep per event: fairness */
#define TX_IOV        64        /* iovecs gathered into one sendmsg */
/*
 * Receive staging: small frames (messages, headers, short payloads) are read
 * many at a time into a per-endpoint buffer and taken from there; a payload
 * with at least RX_DIRECT bytes still to come is received straight into its
 * destination (with the buffer as a second iovec for what follows).
 */
#define RXB_SIZE      (16u * 1024)
#define RX_DIRECT     2048u
#define EVENTS        64        /* epoll events per wf_poll */
#define ACCEPT_BUDGET 16        /* new sockets per listener event */
#define WAITING_MAX   256       /* handshaking + unaccepted per listener:
                                 * past it the oldest socket still without
                                 * a hello is closed for the newcomer (or
                                 * the newcomer, if all are handshaken), so
                                 * silent peers cannot pile up fds */
/*
 * With at most DIRECT_MAX live endpoints and the user busy-polling (no
 * wf_ctx_arm since the last poll that returned work), wf_poll reads their
 * sockets directly and asks epoll only every EPOLL_EVERY calls (for
 * listeners, handshakes, EPOLLOUT): on the latency path a busy-polling
 * reactor then finds new data with the recv() that also reads it, instead
 * of an epoll_wait() first.  An idle poll costs one recv() per endpoint, the
 * same as one epoll_wait() for a single connection.
 */
#define DIRECT_MAX    4
#define EPOLL_EVERY   16

enum h_kind { H_EVENT = 1, H_LISTENER, H_EP };

/* What an epoll event points at. */
struct handle {
	int kind;
};

struct tcp_ctx;
struct tcp_ep;

struct tcp_mr {
	struct wf_mr base;
	uint32_t     key;
	uint64_t     owner;     /* wf_mr_bind: uid of the only endpoint whose
	                         * peer may address it; 0: any */
};

struct mr_slot {
	struct tcp_mr *mr;
	uint16_t       gen;
};

struct cq_ent {
	struct wf_cqe cqe;
	int32_t       op;       /* op slot to free on delivery, or -1 */
};

struct tcp_listener {
	struct wf_listener base;
	struct handle      h;
	struct tcp_ctx    *ctx;
	int                fd;
	bool               accept_queued;  /* an ACCEPT cqe is in the ring */
	struct tcp_ep     *waiting;        /* not yet wf_accept'ed, newest
	                                    * first */
	uint32_t           nwaiting;
	struct tcp_listener *cnext;        /* ctx->lsts */
	char               path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

struct tcp_ctx {
	struct wf_ctx   base;
	struct handle   ev_h;
	int             epfd;
	int             evfd;
	struct cq_ent  *cq;
	uint32_t        cq_cap, cq_head, cq_count;
	uint32_t        cq_reserved;    /* entries promised to eps/listeners */
	struct mr_slot *mrs;
	uint32_t        nmrs;
	struct tcp_ep  *held;           /* eps with receive credits to return */
	struct tcp_ep  *txq;            /* WF_CTX_BATCH: eps with posts not yet
	                                 * written */
	bool            batch;          /* WF_CTX_BATCH */
	struct tcp_ep  *live;           /* EP_LIVE endpoints */
	uint32_t        nlive;
	uint32_t        turn;           /* wf_poll calls, for the epoll cadence */
	uint64_t        next_uid;       /* endpoint ids for wf_mr_bind (never
	                                 * reused, unlike addresses) */
	bool            io_skipped;     /* the last wf_poll did no socket I/O */
	bool            armed;          /* the user sleeps on the fd: every poll
	                                 * asks epoll, until one returns work */
	struct tcp_listener *lsts;      /* every listener of the ctx */
	int64_t         hello_due;      /* coarse ms when the earliest hello
	                                 * deadline may pass; INT64_MAX: none */
	struct tcp_ep  *reap;           /* evicted during an event batch: freed
	                                 * after it (events may still name them) */
};

enum ep_state {
	EP_HELLO,       /* accepted socket, waiting for the peer's hello */
	EP_WAITING,     /* handshake done, waiting for wf_accept */
	EP_LIVE,
	EP_DEAD,        /* socket closed, DISCONNECT queued */
};

enum op_state { OP_FREE, OP_POSTED, OP_DONE };
enum op_kind { OPK_WRITE = 1, OPK_READ, OPK_SEND, OPK_PUT };  /* PUT: wf_write */

/* One send credit. */
struct tcp_op {
	uint64_t wr_id;
	uint8_t  state;         /* enum op_state */
	uint8_t  kind;          /* enum op_kind */
	uint32_t mr_key;        /* READ: local region (re-resolved at use) */
	uint64_t loff;
	uint32_t len;
};

/* One frame queued for the socket. */
struct tx_item {
	struct wf_tcp_frame hdr;        /* already little-endian */
	uint32_t src_key;               /* payload from a region (key, off) ... */
	uint64_t src_off;
	const char *src_ptr;            /* ... or from ep memory */
	uint32_t len;                   /* payload bytes */
	uint32_t done;                  /* bytes of hdr + payload sent */
	int32_t  op;                    /* op slot, or -1 for a read response */
};

enum rx_state {
	RX_HDR,         /* collecting a frame header in rxb */
	RX_DISPATCH,    /* header decoded; waiting for a receive credit */
	RX_PAYLOAD,     /* receiving the payload into its destination */
};

struct tcp_ep {
	struct wf_ep         base;
	struct handle        h;
	struct tcp_ctx      *ctx;
	struct tcp_listener *lst;       /* EP_HELLO, EP_WAITING */
	struct tcp_ep       *lnext;
	int64_t              hello_deadline; /* EP_HELLO: coarse ms */
	struct tcp_ep       *held_next;
	struct tcp_ep       *txq_next;
	bool                 on_txq;
	struct tcp_ep       *live_next, *live_prev;
	bool                 on_held;
	bool                 in_epoll;
	bool                 reserved;  /* counted in ctx->cq_reserved */
	int                  fd;
	int                  state;
	uint64_t             uid;       /* unique in the ctx, never 0 */
	uint32_t             events;    /* current epoll interest */
	struct wf_ep_opts    opts;
	uint32_t             peer_send_depth, peer_msg, msg_max;

	/* send side */
	struct tcp_op       *ops;
	uint32_t            *op_free;   /* stack of free op slots */
	uint32_t             op_nfree;
	char                *op_msgs;   /* send_depth * msg_size copies */
	struct tx_item      *tx;
	uint32_t             tx_cap, tx_head, tx_count;
	uint32_t             resp_out;  /* read responses queued */

	/* receive side */
	uint8_t              rx_hdr[HELLO_LEN];  /* the hello */
	uint32_t             rx_hdr_got;
	char                *rxb;       /* RXB_SIZE staging, see RX_DIRECT */
	uint32_t             rxb_pos, rxb_len;   /* unread: [pos, len) */
	int                  rx_state;
	struct wf_tcp_frame  rx;        /* decoded header */
	uint32_t             rx_got;    /* payload bytes received */
	uint32_t             rx_slot;   /* msg slot of the current SEND */
	char                *msgs;      /* recv_depth * msg_size */
	uint32_t             recv_used, recv_held, msg_next;
};

#define CONTAINER(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static struct tcp_ctx *tctx(struct wf_ctx *c) { return (struct tcp_ctx *)c; }
static struct tcp_ep *tep(struct wf_ep *e) { return (struct tcp_ep *)e; }

static uint32_t ep_budget(const struct wf_ep_opts *o)
{
	return o->send_depth + o->recv_depth + 1;
}

static int reserve(struct tcp_ctx *c, uint32_t n)
{
	if (n > c->cq_cap || c->cq_reserved > c->cq_cap - n)
		return -ENOSPC;
	c->cq_reserved += n;
	return 0;
}

/* ---- completion ring ---- */

static void cq_push(struct tcp_ctx *c, struct tcp_ep *ep, uint32_t op,
		    int32_t status, uint64_t wr_id, uint32_t imm, uint32_t len,
		    const void *msg, int32_t opslot)
{
	struct cq_ent *e;

	/* Cannot fail: every producer holds a reservation (see top). */
	if (c->cq_count >= c->cq_cap)
		abort();
	e = &c->cq[(c->cq_head + c->cq_count) % c->cq_cap];
	c->cq_count++;
	memset(e, 0, sizeof(*e));
	e->cqe.wr_id = wr_id;
	e->cqe.ep = ep ? &ep->base : NULL;
	e->cqe.status = status;
	e->cqe.op = op;
	e->cqe.imm = imm;
	e->cqe.len = len;
	e->cqe.msg = msg;
	e->op = opslot;
}

/* Drop every ring entry that names ep or l (they are being freed). */
static void cq_purge(struct tcp_ctx *c, const struct tcp_ep *ep,
		     const struct tcp_listener *l)
{
	uint32_t i, n = 0;

	for (i = 0; i < c->cq_count; i++) {
		struct cq_ent *e = &c->cq[(c->cq_head + i) % c->cq_cap];

		if (ep && e->cqe.ep == &ep->base)
			continue;
		if (l && e->cqe.listener == &l->base)
			continue;
		if (n != i)
			c->cq[(c->cq_head + n) % c->cq_cap] = *e;
		n++;
	}
	c->cq_count = n;
}

/* ---- memory regions ---- */

static struct tcp_mr *mr_find(const struct tcp_ctx *c, uint32_t key)
{
	uint32_t idx = key & 0xffff;

	if (idx >= c->nmrs || !c->mrs[idx].mr || c->mrs[idx].gen != key >> 16)
		return NULL;
	return c->mrs[idx].mr;
}

/* The bytes [off, off + len) of region key, or NULL if that is not all
 * inside a live region with the wanted access (0: local use). */
static char *mr_span(const struct tcp_ctx *c, uint32_t key, uint64_t off,
		     uint32_t len, unsigned access)
{
	struct tcp_mr *m = mr_find(c, key);

	if (!m || (m->base.access & access) != access)
		return NULL;
	if (off > m->base.len || len > m->base.len - off)
		return NULL;
	return (char *)m->base.addr + off;
}

/* As mr_span, for a frame of ep's peer: also refused when the region is
 * bound to another endpoint. */
static char *mr_span_peer(const struct tcp_ep *ep, uint32_t key, uint64_t off,
			  uint32_t len, unsigned access)
{
	struct tcp_mr *m = mr_find(ep->ctx, key);

	if (!m || (m->owner && m->owner != ep->uid))
		return NULL;
	return mr_span(ep->ctx, key, off, len, access);
}

static int tcp_mr_bind(struct wf_mr *mr, const struct wf_ep *e)
{
	((struct tcp_mr *)mr)->owner = e ? ((const struct tcp_ep *)e)->uid : 0;
	return 0;
}

static int tcp_mr_reg(struct wf_ctx *ctx, void *addr, size_t len,
		      unsigned access, struct wf_mr **out)
{
	struct tcp_ctx *c = tctx(ctx);
	struct tcp_mr *m;
	uint32_t idx;

	(void)addr; (void)len; (void)access;
	for (idx = 0; idx < c->nmrs; idx++)
		if (!c->mrs[idx].mr)
			break;
	if (idx == c->nmrs) {
		struct mr_slot *n;

		if (c->nmrs >= 0x10000)
			return -ENOSPC;
		n = realloc(c->mrs, (c->nmrs + 16) * sizeof(*n));
		if (!n)
			return -ENOMEM;
		memset(n + c->nmrs, 0, 16 * sizeof(*n));
		for (uint32_t i = c->nmrs; i < c->nmrs + 16; i++)
			n[i].gen = 1;
		c->mrs = n;
		c->nmrs += 16;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->key = (uint32_t)c->mrs[idx].gen << 16 | idx;
	c->mrs[idx].mr = m;
	*out = &m->base;
	return 0;
}

static void tcp_mr_dereg(struct wf_mr *mr)
{
	struct tcp_ctx *c = tctx(mr->ctx);
	struct tcp_mr *m = (struct tcp_mr *)mr;
	struct mr_slot *s = &c->mrs[m->key & 0xffff];

	/* A new generation makes every key handed out for it stale: frames
	 * still naming it are rejected, transfers in progress fail. */
	s->mr = NULL;
	s->gen = (uint16_t)(s->gen + 1) ? (uint16_t)(s->gen + 1) : 1;
	free(m);
}

static int tcp_mr_rkey(const struct wf_mr *mr, const struct wf_ep *ep,
		       uint64_t off, uint32_t len, struct wf_rkey *out)
{
	(void)ep;
	out->addr = off;
	out->key = ((const struct tcp_mr *)mr)->key;
	out->len = len;
	return 0;
}

/* ---- epoll interest ---- */

static int ep_want(const struct tcp_ep *ep)
{
	uint32_t ev = 0;

	if (ep->state == EP_HELLO)
		ev = EPOLLIN;
	if (ep->state == EP_LIVE) {
		if (ep->rx_state != RX_DISPATCH && ep->recv_used < ep->opts.recv_depth)
			ev |= EPOLLIN;
		if (ep->tx_count)
			ev |= EPOLLOUT;
	}
	return (int)ev;
}

static void ep_update(struct tcp_ep *ep)
{
	struct epoll_event e = { .data.ptr = &ep->h };
	uint32_t want;

	if (!ep->in_epoll || ep->fd < 0)
		return;
	want = (uint32_t)ep_want(ep);
	if (want == ep->events)
		return;
	e.events = want;
	if (!epoll_ctl(ep->ctx->epfd, EPOLL_CTL_MOD, ep->fd, &e))
		ep->events = want;
}

static int ep_epoll_add(struct tcp_ep *ep)
{
	struct epoll_event e = { .data.ptr = &ep->h };

	e.events = (uint32_t)ep_want(ep);
	if (epoll_ctl(ep->ctx->epfd, EPOLL_CTL_ADD, ep->fd, &e))
		return -errno;
	ep->events = e.events;
	ep->in_epoll = true;
	return 0;
}

static void ep_epoll_del(struct tcp_ep *ep)
{
	if (ep->in_epoll)
		epoll_ctl(ep->ctx->epfd, EPOLL_CTL_DEL, ep->fd, NULL);
	ep->in_epoll = false;
}

/* ---- endpoint life ---- */

static void held_unlink(struct tcp_ep *ep)
{
	struct tcp_ep **pp;

	if (!ep->on_held)
		return;
	for (pp = &ep->ctx->held; *pp; pp = &(*pp)->held_next)
		if (*pp == ep) {
			*pp = ep->held_next;
			break;
		}
	ep->on_held = false;
}

static void txq_unlink(struct tcp_ep *ep)
{
	struct tcp_ep **pp;

	if (!ep->on_txq)
		return;
	for (pp = &ep->ctx->txq; *pp; pp = &(*pp)->txq_next)
		if (*pp == ep) {
			*pp = ep->txq_next;
			break;
		}
	ep->on_txq = false;
}

static void live_add(struct tcp_ep *ep)
{
	struct tcp_ctx *c = ep->ctx;

	ep->live_prev = NULL;
	ep->live_next = c->live;
	if (c->live)
		c->live->live_prev = ep;
	c->live = ep;
	c->nlive++;
}

static void live_del(struct tcp_ep *ep)
{
	struct tcp_ctx *c = ep->ctx;

	if (ep->live_prev)
		ep->live_prev->live_next = ep->live_next;
	else
		c->live = ep->live_next;
	if (ep->live_next)
		ep->live_next->live_prev = ep->live_prev;
	ep->live_next = ep->live_prev = NULL;
	c->nlive--;
}

/*
 * The connection is over: close the socket, complete every posted
 * operation with err, then queue DISCONNECT with dstatus.  Completions
 * already in the ring stay (they did succeed).
 */
static void ep_fail(struct tcp_ep *ep, int err, int dstatus)
{
	uint32_t i;

	if (ep->state != EP_LIVE)
		return;
	ep_epoll_del(ep);
	close(ep->fd);
	ep->fd = -1;
	ep->state = EP_DEAD;
	live_del(ep);
	for (i = 0; i < ep->opts.send_depth; i++) {
		struct tcp_op *op = &ep->ops[i];
		static const uint32_t cqe_op[] = {
			[OPK_WRITE] = WF_CQE_WRITE_IMM, [OPK_READ] = WF_CQE_READ,
			[OPK_SEND] = WF_CQE_SEND, [OPK_PUT] = WF_CQE_WRITE,
		};

		if (op->state != OP_POSTED)
			continue;
		op->state = OP_DONE;
		cq_push(ep->ctx, ep, cqe_op[op->kind], err, op->wr_id, 0, 0,
			NULL, (int32_t)i);
	}
	ep->tx_count = 0;
	ep->resp_out = 0;
	cq_push(ep->ctx, ep, WF_CQE_DISCONNECT, dstatus, 0, 0, 0, NULL, -1);
}

static void ep_free(struct tcp_ep *ep)
{
	if (!ep)
		return;
	if (ep->fd >= 0) {
		ep_epoll_del(ep);
		close(ep->fd);
	}
	free(ep->ops);
	free(ep->op_free);
	free(ep->op_msgs);
	free(ep->tx);
	free(ep->msgs);
	free(ep->rxb);
	txq_unlink(ep);
	free(ep);
}

static struct tcp_ep *ep_new(struct tcp_ctx *c, int fd, const struct wf_ep_opts *o)
{
	struct tcp_ep *ep = calloc(1, sizeof(*ep));

	if (!ep)
		return NULL;
	ep->h.kind = H_EP;
	ep->ctx = c;
	ep->uid = ++c->next_uid;
	ep->base.ctx = &c->base;
	ep->base.user = o->user;
	ep->fd = fd;
	ep->opts = *o;
	return ep;
}

/* Preallocate everything the data path will use, once the peer's depths
 * are known. */
static int ep_alloc(struct tcp_ep *ep, uint32_t peer_send_depth, uint32_t peer_msg)
{
	const struct wf_ep_opts *o = &ep->opts;
	uint32_t i;

	ep->peer_send_depth = peer_send_depth;
	ep->peer_msg = peer_msg;
	ep->msg_max = o->msg_size < peer_msg ? o->msg_size : peer_msg;
	ep->tx_cap = o->send_depth + peer_send_depth;
	ep->ops = calloc(o->send_depth, sizeof(*ep->ops));
	ep->op_free = calloc(o->send_depth, sizeof(*ep->op_free));
	ep->op_msgs = malloc((size_t)o->send_depth * o->msg_size);
	ep->tx = calloc(ep->tx_cap, sizeof(*ep->tx));
	ep->msgs = malloc((size_t)o->recv_depth * o->msg_size);
	ep->rxb = malloc(RXB_SIZE);
	if (!ep->ops || !ep->op_free || !ep->op_msgs || !ep->tx || !ep->msgs ||
	    !ep->rxb)
		return -ENOMEM;
	for (i = 0; i < o->send_depth; i++)
		ep->op_free[i] = o->send_depth - 1 - i;
	ep->op_nfree = o->send_depth;
	return 0;
}

/* ---- transmit ---- */

/*
 * Write as much of the tx ring as the socket takes, gathering up to TX_IOV
 * pieces per sendmsg().  Items fully written complete their operation.  A
 * socket error fails the ep (its operations then complete with errors).
 */
static void tx_flush(struct tcp_ep *ep)
{
	struct iovec iov[TX_IOV];
	struct msghdr mh = { .msg_iov = iov };

	while (ep->state == EP_LIVE && ep->tx_count) {
		size_t total = 0;
		uint32_t i, n = 0;
		ssize_t ret;

		for (i = 0; i < ep->tx_count && n + 2 <= TX_IOV; i++) {
			struct tx_item *t = &ep->tx[(ep->tx_head + i) % ep->tx_cap];
			const char *src = t->src_ptr;
			uint32_t skip = t->done;

			if (!src && t->len) {
				src = mr_span(ep->ctx, t->src_key, t->src_off,
					      t->len, 0);
				if (!src) {     /* region deregistered under us */
					ep_fail(ep, -EFAULT, -EFAULT);
					return;
				}
			}
			if (skip < FRAME_LEN) {
				iov[n].iov_base = (char *)&t->hdr + skip;
				iov[n++].iov_len = FRAME_LEN - skip;
				skip = 0;
			} else {
				skip -= FRAME_LEN;
			}
			if (t->len > skip) {
				iov[n].iov_base = (char *)src + skip;
				iov[n++].iov_len = t->len - skip;
			}
			total += FRAME_LEN + t->len - t->done;
		}
		mh.msg_iovlen = n;
		ret = sendmsg(ep->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (ret < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			ep_fail(ep, -ECONNRESET, -ECONNRESET);
			return;
		}
		if ((size_t)ret < total)
			total = 0;      /* partial: the socket is full */
		/* Retire what went out. */
		while (ret > 0) {
			struct tx_item *t = &ep->tx[ep->tx_head];
			uint32_t left = FRAME_LEN + t->len - t->done;

			if ((size_t)ret < left) {
				t->done += (uint32_t)ret;
				break;
			}
			ret -= left;
			ep->tx_head = (ep->tx_head + 1) % ep->tx_cap;
			ep->tx_count--;
			if (t->op == -1) {
				ep->resp_out--;         /* a read response */
			} else if (t->op >= 0) {        /* write_imm or send */
				struct tcp_op *op = &ep->ops[t->op];

				op->state = OP_DONE;
				cq_push(ep->ctx, ep, op->kind == OPK_WRITE ?
					WF_CQE_WRITE_IMM : op->kind == OPK_PUT ?
					WF_CQE_WRITE : WF_CQE_SEND, 0,
					op->wr_id, 0, 0, NULL, t->op);
			}       /* a read request completes on its response */
		}
		if (!total)
			break;
	}
	ep_update(ep);
}

static struct tx_item *tx_add(struct tcp_ep *ep, uint8_t type, uint32_t len,
			      uint32_t key, uint32_t imm, uint64_t addr)
{
	struct tx_item *t = &ep->tx[(ep->tx_head + ep->tx_count) % ep->tx_cap];

	memset(t, 0, sizeof(*t));
	t->hdr.magic = WF_TCP_FRAME_MAGIC;
	t->hdr.type = type;
	t->hdr.len = htole32(len);
	t->hdr.key = htole32(key);
	t->hdr.imm = htole32(imm);
	t->hdr.addr = htole64(addr);
	ep->tx_count++;
	return t;
}

static int op_take(struct tcp_ep *ep, uint8_t kind, uint64_t wr_id,
		   struct tcp_op **out)
{
	uint32_t idx;

	if (ep->state != EP_LIVE)
		return ep->state == EP_DEAD ? -ENOTCONN : -EINVAL;
	if (!ep->op_nfree)
		return -EAGAIN;
	idx = ep->op_free[--ep->op_nfree];
	*out = &ep->ops[idx];
	(*out)->state = OP_POSTED;
	(*out)->kind = kind;
	(*out)->wr_id = wr_id;
	return (int)idx;
}

static void post(struct tcp_ep *ep)
{
	struct tcp_ctx *c = ep->ctx;

	/* Only the first queued item starts a write; later ones wait for the
	 * socket to drain (EPOLLOUT) or for the batch to be flushed, so
	 * frames stay in order. */
	if (ep->tx_count != 1)
		return;
	if (!c->batch) {
		tx_flush(ep);
	} else if (!ep->on_txq) {
		ep->on_txq = true;
		ep->txq_next = c->txq;
		c->txq = ep;
	}
}

/* WF_CTX_BATCH: write what was posted since the last flush, one sendmsg
 * per endpoint for all of it. */
static void txq_flush(struct tcp_ctx *c)
{
	while (c->txq) {
		struct tcp_ep *ep = c->txq;

		c->txq = ep->txq_next;
		ep->on_txq = false;
		if (ep->state == EP_LIVE && ep->tx_count)
			tx_flush(ep);
	}
}

/* A framed one-sided write: the payload follows the frame on the same
 * stream, so a later write_imm or send on this ep arrives after these bytes
 * are in place. */
static int post_put(struct wf_ep *e, const struct wf_mr *mr, uint64_t loff,
		    uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
		    uint8_t kind, uint8_t type, uint32_t imm, uint64_t wr_id)
{
	struct tcp_ep *ep = tep(e);
	struct tcp_op *op;
	struct tx_item *t;
	int idx = op_take(ep, kind, wr_id, &op);

	if (idx < 0)
		return idx;
	t = tx_add(ep, type, len, rkey->key, imm, rkey->addr + roff);
	t->src_key = ((const struct tcp_mr *)mr)->key;
	t->src_off = loff;
	t->len = len;
	t->op = idx;
	post(ep);
	return 0;
}

static int tcp_write_imm(struct wf_ep *e, const struct wf_mr *mr, uint64_t loff,
			 uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
			 uint32_t imm, uint64_t wr_id)
{
	return post_put(e, mr, loff, len, rkey, roff, OPK_WRITE,
			WF_TCP_WRITE_IMM, imm, wr_id);
}

static int tcp_write(struct wf_ep *e, const struct wf_mr *mr, uint64_t loff,
		     uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
		     uint64_t wr_id)
{
	return post_put(e, mr, loff, len, rkey, roff, OPK_PUT, WF_TCP_WRITE, 0,
			wr_id);
}

static int tcp_read(struct wf_ep *e, const struct wf_mr *mr, uint64_t loff,
		    uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
		    uint64_t wr_id)
{
	struct tcp_ep *ep = tep(e);
	struct tcp_op *op;
	struct tx_item *t;
	int idx = op_take(ep, OPK_READ, wr_id, &op);

	if (idx < 0)
		return idx;
	op->mr_key = ((const struct tcp_mr *)mr)->key;
	op->loff = loff;
	op->len = len;
	t = tx_add(ep, WF_TCP_READ_REQ, len, rkey->key, (uint32_t)idx,
		   rkey->addr + roff);
	t->op = -2;     /* not retired by tx: completes on the response */
	post(ep);
	return 0;
}

static int tcp_send(struct wf_ep *e, const void *msg, uint32_t len, uint64_t wr_id)
{
	struct tcp_ep *ep = tep(e);
	struct tcp_op *op;
	struct tx_item *t;
	char *copy;
	int idx;

	if (ep->state == EP_LIVE && len > ep->msg_max)
		return -EMSGSIZE;
	if (len && !msg)
		return -EINVAL;
	idx = op_take(ep, OPK_SEND, wr_id, &op);
	if (idx < 0)
		return idx;
	copy = ep->op_msgs + (size_t)idx * ep->opts.msg_size;
	if (len)
		memcpy(copy, msg, len);
	t = tx_add(ep, WF_TCP_SEND, len, 0, 0, 0);
	t->src_ptr = copy;
	t->len = len;
	t->op = idx;
	post(ep);
	return 0;
}

/* ---- receive ---- */

/* Is this header acceptable here?  Checks every field before use. */
static int rx_check(struct tcp_ep *ep, const struct wf_tcp_frame *f)
{
	struct tcp_op *op;

	if (f->magic != WF_TCP_FRAME_MAGIC || f->reserved)
		return -EPROTO;
	switch (f->type) {
	case WF_TCP_WRITE:
		if (f->imm)
			return -EPROTO;
		/* fall through */
	case WF_TCP_WRITE_IMM:
		if (!mr_span_peer(ep, f->key, f->addr, f->len, WF_ACCESS_REMOTE_WRITE))
			return -EPROTO;
		return 0;
	case WF_TCP_READ_REQ:
		if (f->imm >= ep->peer_send_depth || ep->resp_out >= ep->peer_send_depth)
			return -EPROTO;
		if (!mr_span_peer(ep, f->key, f->addr, f->len, WF_ACCESS_REMOTE_READ))
			return -EPROTO;
		return 0;
	case WF_TCP_READ_RESP:
		if (f->key || f->addr || f->imm >= ep->opts.send_depth)
			return -EPROTO;
		op = &ep->ops[f->imm];
		if (op->state != OP_POSTED || op->kind != OPK_READ || op->len != f->len)
			return -EPROTO;
		return 0;
	case WF_TCP_SEND:
		if (f->key || f->addr || f->imm || f->len > ep->opts.msg_size)
			return -EPROTO;
		return 0;
	default:
		return -EPROTO;
	}
}

/* Where the current frame's payload goes; NULL if that vanished. */
static char *rx_dest(struct tcp_ep *ep)
{
	const struct wf_tcp_frame *f = &ep->rx;
	struct tcp_op *op;

	switch (f->type) {
	case WF_TCP_WRITE_IMM:
	case WF_TCP_WRITE:
		return mr_span_peer(ep, f->key, f->addr, f->len, WF_ACCESS_REMOTE_WRITE);
	case WF_TCP_READ_RESP:
		op = &ep->ops[f->imm];
		return mr_span(ep->ctx, op->mr_key, op->loff, op->len, 0);
	default:
		return ep->msgs + (size_t)ep->rx_slot * ep->opts.msg_size;
	}
}

/* The current frame is all in: raise its completion. */
static void rx_done(struct tcp_ep *ep)
{
	const struct wf_tcp_frame *f = &ep->rx;
	struct tcp_op *op;

	switch (f->type) {
	case WF_TCP_WRITE_IMM:
		cq_push(ep->ctx, ep, WF_CQE_RECV_IMM, 0, 0, f->imm, f->len, NULL, -1);
		break;
	case WF_TCP_SEND:
		cq_push(ep->ctx, ep, WF_CQE_RECV_MSG, 0, 0, 0, f->len,
			ep->msgs + (size_t)ep->rx_slot * ep->opts.msg_size, -1);
		break;
	case WF_TCP_READ_RESP:
		op = &ep->ops[f->imm];
		op->state = OP_DONE;
		cq_push(ep->ctx, ep, WF_CQE_READ, 0, op->wr_id, 0, f->len, NULL,
			(int32_t)f->imm);
		break;
	}
	ep->rx_state = RX_HDR;
}

/* Header decoded and checked: take a credit, or answer a read.  Returns
 * false when the frame must wait for a receive credit. */
static bool rx_dispatch(struct tcp_ep *ep)
{
	const struct wf_tcp_frame *f = &ep->rx;
	struct tx_item *t;

	if (f->type == WF_TCP_READ_REQ) {
		/* Answer from the region itself: no copy on this side either. */
		t = tx_add(ep, WF_TCP_READ_RESP, f->len, 0, f->imm, 0);
		t->src_key = f->key;
		t->src_off = f->addr;
		t->len = f->len;
		t->op = -1;
		ep->resp_out++;
		ep->rx_state = RX_HDR;
		post(ep);
		return true;
	}
	if (f->type == WF_TCP_WRITE_IMM || f->type == WF_TCP_SEND) {
		if (ep->recv_used >= ep->opts.recv_depth) {
			ep->rx_state = RX_DISPATCH;
			return false;
		}
		ep->recv_used++;
		ep->rx_slot = ep->msg_next;
		ep->msg_next = (ep->msg_next + 1) % ep->opts.recv_depth;
	}
	ep->rx_got = 0;
	ep->rx_state = RX_PAYLOAD;
	if (!f->len)
		rx_done(ep);
	return true;
}

static void rx_decode(struct tcp_ep *ep, const char *src)
{
	struct wf_tcp_frame raw;

	memcpy(&raw, src, FRAME_LEN);
	ep->rx.magic = raw.magic;
	ep->rx.type = raw.type;
	ep->rx.reserved = le16toh(raw.reserved);
	ep->rx.len = le32toh(raw.len);
	ep->rx.key = le32toh(raw.key);
	ep->rx.imm = le32toh(raw.imm);
	ep->rx.addr = le64toh(raw.addr);
}

/* Bytes staged in rxb and not yet taken. */
static uint32_t rxb_avail(const struct tcp_ep *ep)
{
	return ep->rxb_len - ep->rxb_pos;
}

/* recv()/recvmsg() result handling shared by the reads below: >0 bytes,
 * 0 nothing now (EAGAIN), -1 the connection is over. */
static ssize_t rx_result(ssize_t n)
{
	if (n > 0)
		return n;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	return -1;
}

/* Move what is left of rxb to its start and read more behind it. */
static ssize_t rxb_fill(struct tcp_ep *ep)
{
	uint32_t left = rxb_avail(ep);

	if (ep->rxb_pos) {
		memmove(ep->rxb, ep->rxb + ep->rxb_pos, left);
		ep->rxb_pos = 0;
		ep->rxb_len = left;
	}
	return rx_result(recv(ep->fd, ep->rxb + left, RXB_SIZE - left,
			      MSG_DONTWAIT));
}

/*
 * Read from a live ep's socket until it is drained, a credit is missing,
 * or the fairness budget is spent.  Frames already staged in rxb are
 * taken whatever the budget (they are bounded by RXB_SIZE, and no socket
 * event would announce them again); the budget only stops further reads
 * of the socket.
 */
static void ep_rx(struct tcp_ep *ep)
{
	bool drained = false;   /* the last read got less than it asked for */
	int frames = 0;
	ssize_t n;

	while (ep->state == EP_LIVE) {
		if (ep->rx_state == RX_DISPATCH) {
			if (!rx_dispatch(ep))
				break;
			if (ep->rx_state == RX_HDR) {
				frames++;
				continue;
			}
		}
		if (ep->rx_state == RX_HDR) {
			if (rxb_avail(ep) < FRAME_LEN) {
				/* Out of receive credits: keep TCP's window
				 * closed rather than stage more. */
				if (ep->recv_used >= ep->opts.recv_depth &&
				    !rxb_avail(ep))
					break;
				if (drained || frames >= RX_BUDGET)
					break;
				n = rxb_fill(ep);
				if (n < 0)
					goto reset;
				if (n == 0)
					break;
				drained = (uint32_t)n < RXB_SIZE - ep->rxb_len;
				ep->rxb_len += (uint32_t)n;
				continue;
			}
			rx_decode(ep, ep->rxb + ep->rxb_pos);
			ep->rxb_pos += FRAME_LEN;
			if (rx_check(ep, &ep->rx)) {
				ep_fail(ep, -EPROTO, -EPROTO);
				return;
			}
			ep->rx_state = RX_DISPATCH;
			continue;
		}
		/* RX_PAYLOAD: from rxb first, then, if much is still to come,
		 * straight to its place with a look at what follows. */
		{
			uint32_t want = ep->rx.len - ep->rx_got;
			uint32_t take = rxb_avail(ep) < want ? rxb_avail(ep) : want;
			char *dst = rx_dest(ep);

			if (!dst) {
				ep_fail(ep, -EFAULT, -EFAULT);
				return;
			}
			if (take) {
				memcpy(dst + ep->rx_got, ep->rxb + ep->rxb_pos, take);
				ep->rxb_pos += take;
				ep->rx_got += take;
				want -= take;
			}
			if (!want) {
				rx_done(ep);
				frames++;
				continue;
			}
			/* rxb is empty now. */
			ep->rxb_pos = ep->rxb_len = 0;
			if (drained || frames >= RX_BUDGET)
				break;
			if (want < RX_DIRECT) {
				n = rxb_fill(ep);
				if (n < 0)
					goto reset;
				if (n == 0)
					break;
				drained = (uint32_t)n < RXB_SIZE;
				ep->rxb_len = (uint32_t)n;
				continue;
			} else {
				struct iovec iov[2] = {
					{ .iov_base = dst + ep->rx_got, .iov_len = want },
					{ .iov_base = ep->rxb, .iov_len = RXB_SIZE },
				};
				struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };

				n = rx_result(recvmsg(ep->fd, &mh, MSG_DONTWAIT));
				if (n < 0)
					goto reset;
				if (n == 0)
					break;
				drained = (size_t)n < (size_t)want + RXB_SIZE;
				take = (uint32_t)n < want ? (uint32_t)n : want;
				ep->rx_got += take;
				ep->rxb_len = (uint32_t)n - take;
				if (take == want) {
					rx_done(ep);
					frames++;
				}
			}
		}
	}
	ep_update(ep);
	return;
reset:
	ep_fail(ep, -ECONNRESET, -ECONNRESET);
}

/* ---- handshake ---- */

static void hello_fill(struct wf_tcp_hello *h, uint16_t kind,
		       const struct wf_ep_opts *o, int status)
{
	memset(h, 0, sizeof(*h));
	h->magic = htole32(WF_TCP_HELLO_MAGIC);
	h->version = htole16(WF_TCP_VERSION);
	h->kind = htole16(kind);
	if (o) {
		h->send_depth = htole32(o->send_depth);
		h->recv_depth = htole32(o->recv_depth);
		h->msg_size = htole32(o->msg_size);
	}
	h->status = (int32_t)htole32((uint32_t)status);
}

/* Decode and check a hello; 0, or the positive errno to refuse with. */
static int hello_parse(const void *buf, struct wf_tcp_hello *h)
{
	memcpy(h, buf, sizeof(*h));
	h->magic = le32toh(h->magic);
	h->version = le16toh(h->version);
	h->kind = le16toh(h->kind);
	h->send_depth = le32toh(h->send_depth);
	h->recv_depth = le32toh(h->recv_depth);
	h->msg_size = le32toh(h->msg_size);
	h->status = (int32_t)le32toh((uint32_t)h->status);
	if (h->magic != WF_TCP_HELLO_MAGIC)
		return EPROTO;
	if (h->version != WF_TCP_VERSION)
		return EPROTONOSUPPORT;
	if (h->kind == WF_TCP_REFUSE)
		return 0;
	if (h->kind != WF_TCP_HELLO && h->kind != WF_TCP_ACCEPT)
		return EPROTO;
	if (!h->send_depth || h->send_depth > WF_TCP_MAX_DEPTH ||
	    !h->recv_depth || h->recv_depth > WF_TCP_MAX_DEPTH ||
	    !h->msg_size || h->msg_size > WF_TCP_MAX_MSG || h->reserved)
		return EINVAL;
	return 0;
}

static void listener_unlink(struct tcp_ep *ep)
{
	struct tcp_ep **pp;

	for (pp = &ep->lst->waiting; *pp; pp = &(*pp)->lnext)
		if (*pp == ep) {
			*pp = ep->lnext;
			ep->lst->nwaiting--;
			break;
		}
	ep->lst = NULL;
}

/* Server side: the peer's hello (or part of it) is readable. */
static void ep_hello_rx(struct tcp_ep *ep)
{
	struct tcp_listener *l = ep->lst;
	struct wf_tcp_hello h, reply;
	ssize_t n;
	int err;

	n = recv(ep->fd, ep->rx_hdr + ep->rx_hdr_got, HELLO_LEN - ep->rx_hdr_got,
		 MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0)
		goto drop;
	ep->rx_hdr_got += (uint32_t)n;
	if (ep->rx_hdr_got < HELLO_LEN)
		return;
	ep->rx_hdr_got = 0;
	err = hello_parse(ep->rx_hdr, &h);
	if (!err && h.kind != WF_TCP_HELLO)
		err = EPROTO;
	if (err) {
		hello_fill(&reply, WF_TCP_REFUSE, NULL, err);
		(void)!send(ep->fd, &reply, sizeof(reply), MSG_NOSIGNAL | MSG_DONTWAIT);
		goto drop;
	}
	/* Buffers come at wf_accept: a peer that never gets accepted costs
	 * only this struct. */
	ep->peer_send_depth = h.send_depth;
	ep->peer_msg = h.msg_size;
	hello_fill(&reply, WF_TCP_ACCEPT, &ep->opts, 0);
	/* A fresh socket's buffer takes 32 bytes whole. */
	if (send(ep->fd, &reply, sizeof(reply), MSG_NOSIGNAL | MSG_DONTWAIT) !=
	    (ssize_t)sizeof(reply))
		goto drop;
	ep->state = EP_WAITING;
	/* Not read until accepted: the peer may already be sending. */
	ep_epoll_del(ep);
	if (!l->accept_queued) {
		l->accept_queued = true;
		cq_push(l->ctx, NULL, WF_CQE_ACCEPT, 0, 0, 0, 0, NULL, -1);
		l->ctx->cq[(l->ctx->cq_head + l->ctx->cq_count - 1) %
			   l->ctx->cq_cap].cqe.listener = &l->base;
	}
	return;
drop:
	listener_unlink(ep);
	ep_free(ep);
}

/*
 * Close a handshaking socket now, free its struct after the current event
 * batch: a later event of the same epoll_wait may still point at it.
 */
static void hello_evict(struct tcp_ep *ep)
{
	struct tcp_ctx *c = ep->ctx;

	listener_unlink(ep);
	ep_epoll_del(ep);
	close(ep->fd);
	ep->fd = -1;
	ep->state = EP_DEAD;
	ep->lnext = c->reap;
	c->reap = ep;
}

static void reap_free(struct tcp_ctx *c)
{
	while (c->reap) {
		struct tcp_ep *ep = c->reap;

		c->reap = ep->lnext;
		ep_free(ep);
	}
}

/* Close every socket whose hello is overdue; note the next deadline. */
static void hello_sweep(struct tcp_ctx *c, int64_t now)
{
	int64_t due = INT64_MAX;

	for (struct tcp_listener *l = c->lsts; l; l = l->cnext) {
		struct tcp_ep *ep, *next;

		for (ep = l->waiting; ep; ep = next) {
			next = ep->lnext;
			if (ep->state != EP_HELLO)
				continue;
			if (ep->hello_deadline <= now)
				hello_evict(ep);
			else if (ep->hello_deadline < due)
				due = ep->hello_deadline;
		}
	}
	c->hello_due = due;
	reap_free(c);
}

/* The list is newest first: the last socket without a hello is the oldest. */
static bool evict_oldest_hello(struct tcp_listener *l)
{
	struct tcp_ep *ep, *oldest = NULL;

	for (ep = l->waiting; ep; ep = ep->lnext)
		if (ep->state == EP_HELLO)
			oldest = ep;
	if (!oldest)
		return false;
	hello_evict(oldest);
	return true;
}

static void listener_rx(struct tcp_listener *l)
{
	int tmo = l->base.opts.timeout_ms > 0 ? l->base.opts.timeout_ms :
						WF_DEFAULT_TIMEOUT_MS;

	for (int i = 0; i < ACCEPT_BUDGET; i++) {
		struct tcp_ep *ep;
		int one = 1;
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		/* Full: a peer that has not even said hello yields its slot,
		 * so silent sockets cannot lock real initiators out. */
		if (l->nwaiting >= WAITING_MAX && !evict_oldest_hello(l)) {
			close(fd);
			continue;
		}
		if (!l->path[0])
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		ep = ep_new(l->ctx, fd, &l->base.opts);
		if (!ep) {
			close(fd);
			continue;
		}
		ep->state = EP_HELLO;
		if (ep_epoll_add(ep)) {
			ep_free(ep);
			continue;
		}
		ep->lst = l;
		ep->lnext = l->waiting;
		l->waiting = ep;
		l->nwaiting++;
		/* coarse clock: a few ms of resolution is plenty for a
		 * seconds-long timer, and reading it needs no system call */
		ep->hello_deadline = wf_clock_ms(CLOCK_MONOTONIC_COARSE) + tmo;
		if (ep->hello_deadline < l->ctx->hello_due)
			l->ctx->hello_due = ep->hello_deadline;
	}
}

/* ---- addresses ---- */

struct addr {
	struct sockaddr_storage ss;
	socklen_t len;
	int family;
	bool is_unix;
};

static int addr_parse(const char *s, bool passive, struct addr *a)
{
	memset(a, 0, sizeof(*a));
	if (!strncmp(s, "unix:", 5)) {
		struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
		size_t n = strlen(s + 5);

		if (!n)
			return -EINVAL;
		if (n >= sizeof(un->sun_path))
			return -ENAMETOOLONG;
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, s + 5, n + 1);
		a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
		a->family = AF_UNIX;
		a->is_unix = true;
		return 0;
	}
	if (!strncmp(s, "tcp:", 4)) {
		char host[256];
		const char *h = s + 4, *port, *end;
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
		size_t hl;

		if (*h == '[') {        /* [v6]:port */
			end = strchr(h, ']');
			if (!end || end[1] != ':')
				return -EINVAL;
			h++;
			hl = (size_t)(end - h);
			port = end + 2;
		} else {
			end = strrchr(h, ':');
			if (!end)
				return -EINVAL;
			hl = (size_t)(end - h);
			port = end + 1;
		}
		if (hl >= sizeof(host) || !*port)
			return -EINVAL;
		memcpy(host, h, hl);
		host[hl] = 0;
		hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
		if (getaddrinfo(hl ? host : NULL, port, &hints, &res) || !res)
			return -EADDRNOTAVAIL;
		memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
		a->len = res->ai_addrlen;
		a->family = res->ai_family;
		freeaddrinfo(res);
		return 0;
	}
	return -EAFNOSUPPORT;
}

/* ---- listen / accept / connect ---- */

static int tcp_listen(struct wf_ctx *ctx, const char *addr,
		      const struct wf_ep_opts *o, struct wf_listener **out)
{
	struct tcp_ctx *c = tctx(ctx);
	struct epoll_event e = { .events = EPOLLIN };
	struct tcp_listener *l;
	struct addr a;
	int one = 1, ret;

	ret = addr_parse(addr, true, &a);
	if (ret)
		return ret;
	if (o->send_depth > WF_TCP_MAX_DEPTH || o->recv_depth > WF_TCP_MAX_DEPTH ||
	    o->msg_size > WF_TCP_MAX_MSG)
		return -EINVAL;
	ret = reserve(c, 1);
	if (ret)
		return ret;
	l = calloc(1, sizeof(*l));
	if (!l) {
		ret = -ENOMEM;
		goto out_unreserve;
	}
	l->h.kind = H_LISTENER;
	l->ctx = c;
	l->base.ctx = ctx;
	l->base.opts = *o;
	l->fd = socket(a.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0) {
		ret = -errno;
		goto out_free;
	}
	if (!a.is_unix)
		setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l->fd, (struct sockaddr *)&a.ss, a.len) || listen(l->fd, 512)) {
		ret = -errno;
		goto out_close;
	}
	if (a.is_unix)
		strcpy(l->path, ((struct sockaddr_un *)&a.ss)->sun_path);
	e.data.ptr = &l->h;
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, l->fd, &e)) {
		ret = -errno;
		goto out_unlink;
	}
	l->cnext = c->lsts;
	c->lsts = l;
	*out = &l->base;
	return 0;

out_unlink:
	if (a.is_unix)
		unlink(l->path);
out_close:
	close(l->fd);
out_free:
	free(l);
out_unreserve:
	c->cq_reserved--;
	return ret;
}

static int tcp_listener_addr(const struct wf_listener *lb, char *buf, size_t len)
{
	const struct tcp_listener *l = (const struct tcp_listener *)lb;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int n;

	if (!l->path[0]) {
		if (getsockname(l->fd, (struct sockaddr *)&ss, &sl))
			return -errno;
		return wf_inet_addr_str((struct sockaddr *)&ss, "tcp", buf, len);
	}
	n = snprintf(buf, len, "unix:%s", l->path);
	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	return 0;
}

static int tcp_accept(struct wf_listener *lb, struct wf_ep **out)
{
	struct tcp_listener *l = (struct tcp_listener *)lb;
	struct tcp_ep *ep, *found = NULL;
	int ret;

	for (ep = l->waiting; ep; ep = ep->lnext)
		if (ep->state == EP_WAITING)
			found = ep;     /* the last one is the oldest */
	if (!found)
		return -EAGAIN;
	ep = found;
	listener_unlink(ep);
	ret = reserve(l->ctx, ep_budget(&ep->opts));
	if (ret) {
		/* No completion room for it: refuse it rather than keep it
		 * waiting forever; the peer sees a disconnect. */
		ep_free(ep);
		return ret;
	}
	ep->reserved = true;
	ep->state = EP_LIVE;
	ret = ep_alloc(ep, ep->peer_send_depth, ep->peer_msg);
	if (!ret)
		ret = ep_epoll_add(ep);
	if (ret) {
		l->ctx->cq_reserved -= ep_budget(&ep->opts);
		ep_free(ep);
		return ret;
	}
	live_add(ep);
	*out = &ep->base;
	return 0;
}

static void tcp_listener_destroy(struct wf_listener *lb)
{
	struct tcp_listener *l = (struct tcp_listener *)lb;
	struct tcp_listener **pp;

	for (pp = &l->ctx->lsts; *pp; pp = &(*pp)->cnext)
		if (*pp == l) {
			*pp = l->cnext;
			break;
		}
	while (l->waiting) {
		struct tcp_ep *ep = l->waiting;

		l->waiting = ep->lnext;
		ep_free(ep);
	}
	epoll_ctl(l->ctx->epfd, EPOLL_CTL_DEL, l->fd, NULL);
	close(l->fd);
	if (l->path[0])
		unlink(l->path);
	cq_purge(l->ctx, NULL, l);
	l->ctx->cq_reserved--;
	free(l);
}

static int wait_fd(int fd, short ev, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int64_t left = deadline - wf_clock_ms(CLOCK_MONOTONIC);
	int ret;

	if (left <= 0)
		return -ETIMEDOUT;
	ret = poll(&p, 1, (int)left);
	if (ret < 0)
		return errno == EINTR ? 0 : -errno;
	return ret ? 0 : -ETIMEDOUT;
}

/* Blocking-with-deadline I/O of exactly len bytes on a non-blocking fd. */
static int io_full(int fd, void *buf, size_t len, bool wr, int64_t deadline)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = wr ? send(fd, (char *)buf + done, len - done,
				      MSG_NOSIGNAL | MSG_DONTWAIT)
			       : recv(fd, (char *)buf + done, len - done, MSG_DONTWAIT);
		int ret;

		if (n == 0 && !wr)
			return -ECONNRESET;
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				return -errno;
			ret = wait_fd(fd, wr ? POLLOUT : POLLIN, deadline);
			if (ret)
				return ret;
			continue;
		}
		done += (size_t)n;
	}
	return 0;
}

static int tcp_connect(struct wf_ctx *ctx, const char *addr,
		       const struct wf_ep_opts *o, struct wf_ep **out)
{
	struct tcp_ctx *c = tctx(ctx);
	int64_t deadline = wf_clock_ms(CLOCK_MONOTONIC) + o->timeout_ms;
	struct wf_tcp_hello h, raw;
	struct tcp_ep *ep;
	struct addr a;
	int fd, ret, one = 1;

	ret = addr_parse(addr, false, &a);
	if (ret)
		return ret;
	if (o->send_depth > WF_TCP_MAX_DEPTH || o->recv_depth > WF_TCP_MAX_DEPTH ||
	    o->msg_size > WF_TCP_MAX_MSG)
		return -EINVAL;
	ret = reserve(c, ep_budget(o));
	if (ret)
		return ret;
	fd = socket(a.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		goto out_unreserve;
	}
	if (!a.is_unix)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (;;) {
		if (!connect(fd, (struct sockaddr *)&a.ss, a.len))
			break;
		if (errno == EINPROGRESS) {
			socklen_t sl = sizeof(ret);

			ret = wait_fd(fd, POLLOUT, deadline);
			if (ret)
				goto out_close;
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &ret, &sl) || ret) {
				ret = ret ? -ret : -errno;
				goto out_close;
			}
			break;
		}
		if (errno == EAGAIN && a.is_unix && wf_clock_ms(CLOCK_MONOTONIC) < deadline) {
			/* AF_UNIX backlog full: the listener is slow. */
			poll(NULL, 0, 1);
			continue;
		}
		if (errno == EINTR)
			continue;
		ret = -errno;
		goto out_close;
	}
	hello_fill(&raw, WF_TCP_HELLO, o, 0);
	ret = io_full(fd, &raw, sizeof(raw), true, deadline);
	if (!ret)
		ret = io_full(fd, &raw, sizeof(raw), false, deadline);
	if (ret)
		goto out_close;
	ret = -hello_parse(&raw, &h);
	if (!ret && h.kind == WF_TCP_REFUSE)
		ret = h.status > 0 ? -h.status : -ECONNREFUSED;
	else if (!ret && h.kind != WF_TCP_ACCEPT)
		ret = -EPROTO;
	if (ret)
		goto out_close;
	ep = ep_new(c, fd, o);
	if (!ep) {
		ret = -ENOMEM;
		goto out_close;
	}
	ep->reserved = true;
	ep->state = EP_LIVE;
	ret = ep_alloc(ep, h.send_depth, h.msg_size);
	if (!ret)
		ret = ep_epoll_add(ep);
	if (ret) {
		ep_free(ep);    /* closes fd */
		goto out_unreserve;
	}
	live_add(ep);
	*out = &ep->base;
	return 0;

out_close:
	close(fd);
out_unreserve:
	c->cq_reserved -= ep_budget(o);
	return ret;
}

int wf_tcp_ep_adopt(struct wf_ctx *ctx, int fd, const struct wf_ep_opts *o,
		    uint32_t peer_send_depth, uint32_t peer_msg_size,
		    struct wf_ep **out)
{
	struct tcp_ctx *c = tctx(ctx);
	struct tcp_ep *ep;
	int ret;

	if (ctx->ops != &wf_tcp_ops || !peer_send_depth || !peer_msg_size)
		return -EINVAL;
	ret = reserve(c, ep_budget(o));
	if (ret)
		return ret;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	ep = ep_new(c, fd, o);
	if (!ep) {
		c->cq_reserved -= ep_budget(o);
		return -ENOMEM;
	}
	ep->reserved = true;
	ep->state = EP_LIVE;
	ret = ep_alloc(ep, peer_send_depth, peer_msg_size);
	if (!ret)
		ret = ep_epoll_add(ep);
	if (ret) {
		ep->fd = -1;    /* the caller keeps its fd on failure */
		ep_free(ep);
		c->cq_reserved -= ep_budget(o);
		return ret;
	}
	live_add(ep);
	*out = &ep->base;
	return 0;
}

static int tcp_ep_close(struct wf_ep *e)
{
	struct tcp_ep *ep = tep(e);

	if (ep->state != EP_LIVE)
		return ep->state == EP_DEAD ? 0 : -EINVAL;
	/* What was posted before the close goes out first, as unbatched. */
	if (ep->on_txq) {
		txq_unlink(ep);
		tx_flush(ep);
		if (ep->state != EP_LIVE)
			return 0;
	}
	shutdown(ep->fd, SHUT_RDWR);
	ep_fail(ep, -ECANCELED, 0);
	return 0;
}

static void tcp_ep_destroy(struct wf_ep *e)
{
	struct tcp_ep *ep = tep(e);
	struct tcp_ctx *c = ep->ctx;

	held_unlink(ep);
	if (ep->state == EP_LIVE)
		live_del(ep);
	cq_purge(c, ep, NULL);
	if (ep->reserved)
		c->cq_reserved -= ep_budget(&ep->opts);
	ep_free(ep);
}

/* ---- ctx and polling ---- */

static int tcp_ctx_create(const struct wf_ctx_opts *o, struct wf_ctx **out)
{
	struct epoll_event e = { .events = EPOLLIN };
	struct tcp_ctx *c = calloc(1, sizeof(*c));
	int ret;

	if (!c)
		return -ENOMEM;
	c->ev_h.kind = H_EVENT;
	c->batch = o->flags & WF_CTX_BATCH;
	c->cq_cap = o->cq_depth;
	c->hello_due = INT64_MAX;
	c->cq = calloc(c->cq_cap, sizeof(*c->cq));
	if (!c->cq) {
		ret = -ENOMEM;
		goto out_free;
	}
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (c->epfd < 0) {
		ret = -errno;
		goto out_free_cq;
	}
	c->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->evfd < 0) {
		ret = -errno;
		goto out_close_ep;
	}
	e.data.ptr = &c->ev_h;
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->evfd, &e)) {
		ret = -errno;
		goto out_close_ev;
	}
	*out = &c->base;
	return 0;

out_close_ev:
	close(c->evfd);
out_close_ep:
	close(c->epfd);
out_free_cq:
	free(c->cq);
out_free:
	free(c);
	return ret;
}

static void tcp_ctx_destroy(struct wf_ctx *ctx)
{
	struct tcp_ctx *c = tctx(ctx);

	close(c->evfd);
	close(c->epfd);
	for (uint32_t i = 0; i < c->nmrs; i++)
		free(c->mrs[i].mr);
	free(c->mrs);
	free(c->cq);
	free(c);
}

static int tcp_ctx_fd(const struct wf_ctx *ctx)
{
	return ((const struct tcp_ctx *)ctx)->epfd;
}

static int tcp_ctx_arm(struct wf_ctx *ctx)
{
	struct tcp_ctx *c = tctx(ctx);
	uint64_t one = 1;

	txq_flush(c);   /* before sleeping: nothing posted may wait */
	/* Whatever woke the sleeper (a listener, a handshake, EPOLLOUT) must
	 * be looked at by the next poll, not by the 16th. */
	c->armed = true;
	/* Work that no socket will announce: completions not yet returned,
	 * and receive credits that come back at the next poll.  Make the fd
	 * readable so a sleeper wakes for them. */
	if (c->cq_count || c->held)
		if (write(c->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			return -errno;
	return 0;
}

/* Credits of messages delivered by the previous poll come back now. */
static void release_held(struct tcp_ctx *c)
{
	while (c->held) {
		struct tcp_ep *ep = c->held;
		bool was_full;

		c->held = ep->held_next;
		ep->on_held = false;
		was_full = ep->recv_used >= ep->opts.recv_depth;
		ep->recv_used -= ep->recv_held;
		ep->recv_held = 0;
		if (ep->state != EP_LIVE)
			continue;
		if (!ep->in_epoll && ep_epoll_add(ep)) {
			ep_fail(ep, -ECONNRESET, -ECONNRESET);
			continue;
		}
		/* A parked header will not raise a new event: go on now.
		 * Otherwise re-arming EPOLLIN is enough (level-triggered). */
		if (was_full || ep->rx_state == RX_DISPATCH)
			ep_rx(ep);
	}
}

static void handle_event(struct tcp_ctx *c, struct epoll_event *e)
{
	struct handle *h = e->data.ptr;
	struct tcp_ep *ep;
	uint64_t v;

	switch (h->kind) {
	case H_EVENT:
		(void)!read(c->evfd, &v, sizeof(v));
		return;
	case H_LISTENER:
		listener_rx(CONTAINER(h, struct tcp_listener, h));
		return;
	}
	ep = CONTAINER(h, struct tcp_ep, h);
	if (ep->state == EP_HELLO) {
		ep_hello_rx(ep);
		return;
	}
	if (ep->state != EP_LIVE)
		return;
	if (e->events & EPOLLOUT)
		tx_flush(ep);
	if (e->events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		if (ep->state == EP_LIVE && !(ep->events & EPOLLIN)) {
			/* Hang-up while reading is held back: stop the
			 * level-triggered repeats; release_held() reads the
			 * rest (and finds the end) once credits return. */
			if (!ep->tx_count)
				ep_epoll_del(ep);
			else if (e->events & EPOLLERR)
				ep_fail(ep, -ECONNRESET, -ECONNRESET);
			return;
		}
		ep_rx(ep);
	}
}

static int tcp_flush(struct wf_ctx *ctx)
{
	txq_flush(tctx(ctx));
	return 0;
}

static int tcp_poll(struct wf_ctx *ctx, struct wf_cqe *cqes, int max)
{
	struct tcp_ctx *c = tctx(ctx);
	bool direct;
	int n = 0;

	txq_flush(c);
	release_held(c);
	c->turn++;
	/* Completions already waiting (typically our own writes, done when
	 * posted) are handed out without a system call; the next poll does
	 * the I/O, so the sockets are never starved. */
	if (c->cq_count && !c->io_skipped) {
		c->io_skipped = true;
		goto deliver;
	}
	c->io_skipped = false;
	/* Handshake deadlines: one coarse clock read while any socket waits
	 * for its hello, a sweep only once the earliest deadline has passed. */
	if (c->hello_due != INT64_MAX) {
		int64_t now = wf_clock_ms(CLOCK_MONOTONIC_COARSE);

		if (now >= c->hello_due)
			hello_sweep(c, now);
	}
	/* Busy-polling with few endpoints: read their sockets directly.  A
	 * sleeper that was just woken asks epoll, which names what woke it. */
	direct = !c->armed && c->nlive && c->nlive <= DIRECT_MAX;
	if (c->cq_count < (uint32_t)max && direct) {
		struct tcp_ep *ep, *next;

		for (ep = c->live; ep; ep = next) {
			next = ep->live_next;   /* ep_rx may end ep */
			if (ep->in_epoll && (ep->events & EPOLLIN))
				ep_rx(ep);
		}
	}
	if (c->cq_count < (uint32_t)max && (!direct || c->turn % EPOLL_EVERY == 0)) {
		struct epoll_event ev[EVENTS];
		int i, ne = epoll_wait(c->epfd, ev, EVENTS, 0);

		for (i = 0; i < ne; i++)
			handle_event(c, &ev[i]);
		reap_free(c);
	}
	/* Read responses queued by what was just received. */
	txq_flush(c);
deliver:
	if (c->cq_count)
		c->armed = false;
	while (n < max && c->cq_count) {
		struct cq_ent *e = &c->cq[c->cq_head];
		struct tcp_ep *ep = e->cqe.ep ? tep(e->cqe.ep) : NULL;

		c->cq_head = (c->cq_head + 1) % c->cq_cap;
		c->cq_count--;
		cqes[n++] = e->cqe;
		switch (e->cqe.op) {
		case WF_CQE_WRITE_IMM:
		case WF_CQE_WRITE:
		case WF_CQE_READ:
		case WF_CQE_SEND:
			ep->ops[e->op].state = OP_FREE;
			ep->op_free[ep->op_nfree++] = (uint32_t)e->op;
			break;
		case WF_CQE_RECV_IMM:
		case WF_CQE_RECV_MSG:
			ep->recv_held++;
			if (!ep->on_held) {
				ep->on_held = true;
				ep->held_next = c->held;
				c->held = ep;
			}
			break;
		case WF_CQE_ACCEPT:
			((struct tcp_listener *)e->cqe.listener)->accept_queued = false;
			break;
		}
	}
	return n;
}

const struct wf_ops wf_tcp_ops = {
	.name             = "tcp",
	.ctx_create       = tcp_ctx_create,
	.ctx_destroy      = tcp_ctx_destroy,
	.ctx_fd           = tcp_ctx_fd,
	.ctx_arm          = tcp_ctx_arm,
	.poll             = tcp_poll,
	.flush            = tcp_flush,
	.listen           = tcp_listen,
	.listener_addr    = tcp_listener_addr,
	.accept           = tcp_accept,
	.listener_destroy = tcp_listener_destroy,
	.connect          = tcp_connect,
	.ep_close         = tcp_ep_close,
	.ep_destroy       = tcp_ep_destroy,
	.mr_reg           = tcp_mr_reg,
	.mr_dereg         = tcp_mr_dereg,
	.mr_rkey          = tcp_mr_rkey,
	.mr_bind          = tcp_mr_bind,
	.write_imm        = tcp_write_imm,
	.write            = tcp_write,
	.read             = tcp_read,
	.send             = tcp_send,
};
