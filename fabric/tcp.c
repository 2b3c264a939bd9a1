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
 *
 * This file holds the framing and the data path: memory regions, the
 * completion ring, transmit, receive, wf_poll.  Set-up (the ctx, listeners,
 * the hello handshake, connect/accept/adopt, the endpoints' allocation and
 * destruction) is in tcp_conn.c; the structs both share are in tcp_int.h.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "fabric/tcp_int.h"

#define FRAME_LEN     ((uint32_t)sizeof(struct wf_tcp_frame))
#define RX_BUDGET     64        /* frames per ep per event: fairness */
#define TX_IOV        64        /* iovecs gathered into one sendmsg */
#define EVENTS        64        /* epoll events per wf_poll */
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

#define CONTAINER(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* ---- completion ring ---- */

void tcp_cq_push(struct tcp_ctx *c, struct tcp_ep *ep, uint32_t op,
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
void tcp_cq_purge(struct tcp_ctx *c, const struct tcp_ep *ep,
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
	if (ep->state == EP_CONNECTING)
		ev = ep->conn_phase == CP_HELLO ? EPOLLIN : EPOLLOUT;
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

int tcp_ep_epoll_add(struct tcp_ep *ep)
{
	struct epoll_event e = { .data.ptr = &ep->h };

	e.events = (uint32_t)ep_want(ep);
	if (epoll_ctl(ep->ctx->epfd, EPOLL_CTL_ADD, ep->fd, &e))
		return -errno;
	ep->events = e.events;
	ep->in_epoll = true;
	return 0;
}

void tcp_ep_epoll_del(struct tcp_ep *ep)
{
	if (ep->in_epoll)
		epoll_ctl(ep->ctx->epfd, EPOLL_CTL_DEL, ep->fd, NULL);
	ep->in_epoll = false;
}

/* ---- endpoint life ---- */

void tcp_held_unlink(struct tcp_ep *ep)
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

void tcp_txq_unlink(struct tcp_ep *ep)
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

void tcp_live_add(struct tcp_ep *ep)
{
	struct tcp_ctx *c = ep->ctx;

	ep->live_prev = NULL;
	ep->live_next = c->live;
	if (c->live)
		c->live->live_prev = ep;
	c->live = ep;
	c->nlive++;
}

void tcp_live_del(struct tcp_ep *ep)
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
	tcp_ep_epoll_del(ep);
	close(ep->fd);
	ep->fd = -1;
	ep->state = EP_DEAD;
	tcp_live_del(ep);
	for (i = 0; i < ep->opts.send_depth; i++) {
		struct tcp_op *op = &ep->ops[i];
		static const uint32_t cqe_op[] = {
			[OPK_WRITE] = WF_CQE_WRITE_IMM, [OPK_READ] = WF_CQE_READ,
			[OPK_SEND] = WF_CQE_SEND, [OPK_PUT] = WF_CQE_WRITE,
		};

		if (op->state != OP_POSTED)
			continue;
		op->state = OP_DONE;
		tcp_cq_push(ep->ctx, ep, cqe_op[op->kind], err, op->wr_id, 0, 0,
			NULL, (int32_t)i);
	}
	ep->tx_count = 0;
	ep->resp_out = 0;
	tcp_cq_push(ep->ctx, ep, WF_CQE_DISCONNECT, dstatus, 0, 0, 0, NULL, -1);
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
				tcp_cq_push(ep->ctx, ep, op->kind == OPK_WRITE ?
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
		return ep->state == EP_DEAD || ep->state == EP_CONNECTING ?
		       -ENOTCONN : -EINVAL;
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
		tcp_cq_push(ep->ctx, ep, WF_CQE_RECV_IMM, 0, 0, f->imm, f->len, NULL, -1);
		break;
	case WF_TCP_SEND:
		tcp_cq_push(ep->ctx, ep, WF_CQE_RECV_MSG, 0, 0, 0, f->len,
			ep->msgs + (size_t)ep->rx_slot * ep->opts.msg_size, -1);
		break;
	case WF_TCP_READ_RESP:
		op = &ep->ops[f->imm];
		op->state = OP_DONE;
		tcp_cq_push(ep->ctx, ep, WF_CQE_READ, 0, op->wr_id, 0, f->len, NULL,
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

/* ---- close ---- */

static int tcp_ep_close(struct wf_ep *e)
{
	struct tcp_ep *ep = tep(e);

	if (ep->state != EP_LIVE)
		return ep->state == EP_DEAD ? 0 : -EINVAL;
	/* What was posted before the close goes out first, as unbatched. */
	if (ep->on_txq) {
		tcp_txq_unlink(ep);
		tx_flush(ep);
		if (ep->state != EP_LIVE)
			return 0;
	}
	shutdown(ep->fd, SHUT_RDWR);
	ep_fail(ep, -ECANCELED, 0);
	return 0;
}

/* ---- polling ---- */

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
		if (!ep->in_epoll && tcp_ep_epoll_add(ep)) {
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
		tcp_listener_rx(CONTAINER(h, struct tcp_listener, h));
		return;
	}
	ep = CONTAINER(h, struct tcp_ep, h);
	if (ep->state == EP_HELLO) {
		tcp_ep_hello_rx(ep);
		return;
	}
	if (ep->state == EP_CONNECTING) {
		tcp_ep_connect_ev(ep, e->events);
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
				tcp_ep_epoll_del(ep);
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

static void tcp_quiet(struct wf_ctx *ctx)
{
	tctx(ctx)->quiet = true;
}

/* A poll; timeout_ms != 0 (tcp_poll_wait): when nothing is queued, sleep
 * that long in our epoll for the first event and handle it. */
static int poll_turn(struct tcp_ctx *c, struct wf_cqe *cqes, int max,
		     int timeout_ms)
{
	bool direct, quiet = c->quiet && !timeout_ms;
	int n = 0;

	c->quiet = false;       /* the hint lasts one poll */
	txq_flush(c);
	release_held(c);
	c->turn++;
	/* Completions already waiting (typically our own writes, done when
	 * posted) are handed out without a system call; the next poll does
	 * the I/O, so the sockets are never starved. */
	if (c->cq_count && (!c->io_skipped || timeout_ms)) {
		c->io_skipped = true;
		goto deliver;
	}
	c->io_skipped = false;
	/* Handshake deadlines: one coarse clock read while any socket waits
	 * for its hello, a sweep only once the earliest deadline has passed. */
	if (c->hello_due != INT64_MAX) {
		int64_t now = wf_clock_ms(CLOCK_MONOTONIC_COARSE);

		if (now >= c->hello_due)
			tcp_hello_sweep(c, now);
	}
	/* The caller's poll of our fd has not fired since it armed it: no
	 * socket is readable, no listener or handshake has news, no EPOLLOUT
	 * is due (each of them would have made the epoll fd readable), so
	 * asking epoll or reading the sockets would find nothing.  Anything
	 * that races in keeps the fd readable for the caller's next wait. */
	if (quiet)
		goto deliver;
	/* Busy-polling with few endpoints: read their sockets directly.  A
	 * sleeper that was just woken asks epoll, which names what woke it. */
	direct = !c->armed && !timeout_ms && c->nlive && c->nlive <= DIRECT_MAX;
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
		/* Sleeping here is safe: nothing is queued (cq_count is 0,
		 * the credits went back above, the posts left), and every
		 * socket, listener and the event fd are in epfd. */
		int i, ne = epoll_wait(c->epfd, ev, EVENTS,
				       c->cq_count ? 0 : timeout_ms);

		for (i = 0; i < ne; i++)
			handle_event(c, &ev[i]);
		tcp_reap_free(c);
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

static int tcp_poll(struct wf_ctx *ctx, struct wf_cqe *cqes, int max)
{
	return poll_turn(tctx(ctx), cqes, max, 0);
}

static int tcp_poll_wait(struct wf_ctx *ctx, struct wf_cqe *cqes, int max,
			 int timeout_ms)
{
	return poll_turn(tctx(ctx), cqes, max, timeout_ms);
}

const struct wf_ops wf_tcp_ops = {
	.name             = "tcp",
	.ctx_create       = tcp_ctx_create,
	.ctx_destroy      = tcp_ctx_destroy,
	.ctx_fd           = tcp_ctx_fd,
	.ctx_arm          = tcp_ctx_arm,
	.poll             = tcp_poll,
	.poll_wait        = tcp_poll_wait,
	.flush            = tcp_flush,
	.quiet            = tcp_quiet,
	.listen           = tcp_listen,
	.listener_addr    = tcp_listener_addr,
	.accept           = tcp_accept,
	.listener_destroy = tcp_listener_destroy,
	.connect          = tcp_connect,
	.connect_start    = tcp_connect_start,
	.ep_close         = tcp_ep_close,
	.ep_peer          = tcp_ep_peer,
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
