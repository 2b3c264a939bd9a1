/* SPDX-License-Identifier: Apache-2.0 */
/*
 * verbs backend: the fabric's semantics on RDMA RC queue pairs, connection
 * setup with librdmacm.  Runs on real NICs and on soft-RoCE (rdma_rxe, see
 * tests/rig/).  Works with rdma-core 44: no ibv_wr_* API, no ibv_wr_flush.
 *
 * Per wf_ctx, and per RDMA device the ctx has seen (normally one): a PD, a
 * completion channel and one CQ shared by every QP on that device.  The ctx
 * fd is an epoll set over the completion channels, the ctx's rdma_cm event
 * channel (non-blocking; listeners and established endpoints report there)
 * and an eventfd that stays readable while completions wait in the ctx's
 * ring.  wf_ctx_arm() is ibv_req_notify_cq() on every CQ.
 *
 * Every completion and event passes through one ring per ctx, in the order
 * it was seen, so an endpoint's DISCONNECT is always behind its flushed
 * operations.  The ring never overflows because of the credits:
 *  - completion queue: an endpoint reserves send_depth + recv_depth + 1 (its
 *    DISCONNECT) entries of cq_depth, a listener 1 (its ACCEPT); the ring
 *    has cq_depth entries and every CQ has room for cq_depth + drain slack.
 *  - send: each endpoint owns send_depth send slots (its QP's send queue is
 *    that deep, plus one entry for wf_mr_bind's work request).
 *    wf_write_imm/wf_write/wf_read/wf_send take one, its completion gives
 *    it back: the queue cannot overflow and a full one is -EAGAIN.
 *  - receive: recv_depth receive buffers per endpoint (msg_size each),
 *    registered and posted at connect time.  A buffer is posted again at the
 *    wf_poll() after the one that returned its completion, so a message stays
 *    readable until then.  A peer that finds no posted receive gets an RNR
 *    NAK and retries for ever (rnr_retry 7): backpressure, nothing dropped.
 *
 * Memory regions are registered with every PD of the ctx (a device seen
 * later gets the existing regions registered when its first endpoint comes);
 * wf_mr_rkey() gives the rkey of the endpoint's device.
 *
 * wf_mr_bind() uses type 2 memory windows (IBA 10.6.7): the region's MRs
 * are registered again without remote rights (local write and MW bind
 * only, so their own rkeys open nothing remotely), and a type 2B window
 * over the whole region, with the region's remote rights, is bound to the
 * endpoint's QP by a BIND_MW work request.  The device then refuses that
 * window's rkey on every other QP; wf_mr_rkey() reports the window's rkey.
 * The bind uses a send queue entry of its own (the QP is one deeper than
 * send_depth) and is waited for inside wf_mr_bind(), so its completion
 * never reaches the caller and no caller credit is taken.  Unbinding, or
 * the endpoint's close or destruction, deallocates the window; binding
 * to NULL registers the MRs with their remote rights again.  A device
 * without type 2B windows gets -EOPNOTSUPP; the fabric prints nothing (the
 * target logs it once per reactor).
 * Everything here runs at connection setup, never on the data path.
 *
 * A peer that goes away (rdma_cm DISCONNECTED, or any failed completion)
 * moves the QP to the error state: everything outstanding completes with
 * -ECONNRESET, then WF_CQE_DISCONNECT is raised.  wf_ep_destroy() drains
 * the QP before destroying it; should the device never flush some receives
 * (older rxe), the endpoint's bookkeeping is kept until the ctx goes, so a
 * late completion never touches freed memory.
 *
 * This file holds the completion ring, the endpoints' completions, close
 * and teardown, the ctx and wf_poll, memory registration and windows, and
 * the data operations.  Connection set-up (rdma_cm listeners and connect,
 * the events on the ctx channel, the ctx's per-device state, each new
 * endpoint's QP and buffers) is in verbs_cm.c; the structs both share are
 * in verbs_int.h.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "fabric/verbs_int.h"

#define POLL_BATCH      32      /* work completions per ibv_poll_cq */
#define DRAIN_SEND_MS   2000    /* sends always flush; bound it anyway */
#define DRAIN_RECV_MS   100     /* receives may not flush on older rxe */

/* A failed work completion as -errno. */
static int wc_err(enum ibv_wc_status s)
{
	switch (s) {
	case IBV_WC_SUCCESS:            return 0;
	case IBV_WC_WR_FLUSH_ERR:
	case IBV_WC_RETRY_EXC_ERR:
	case IBV_WC_RNR_RETRY_EXC_ERR:  return -ECONNRESET;
	case IBV_WC_REM_ACCESS_ERR:
	case IBV_WC_LOC_ACCESS_ERR:     return -EACCES;
	case IBV_WC_LOC_LEN_ERR:
	case IBV_WC_REM_INV_REQ_ERR:    return -EMSGSIZE;
	case IBV_WC_LOC_PROT_ERR:       return -EFAULT;
	default:                        return -EIO;
	}
}

/* ---- the completion ring ------------------------------------------------ */

void verbs_ring_kick(struct vctx *c)
{
	uint64_t one = 1;

	if (c->kicked)
		return;
	c->kicked = true;
	(void)!write(c->evfd, &one, sizeof(one));
}

struct vcqe *verbs_ring_push(struct vctx *c, uint32_t op, struct vep *ep)
{
	struct vcqe *v;

	/* Cannot happen with the credits above; never write past the ring. */
	if (c->count == c->cq_cap)
		return NULL;
	v = &c->ring[(c->head + c->count++) % c->cq_cap];
	memset(v, 0, sizeof(*v));
	v->cqe.op = op;
	v->cqe.ep = ep ? &ep->base : NULL;
	return v;
}

/* Forget everything queued for an endpoint or a listener going away. */
void verbs_ring_purge(struct vctx *c, struct vep *ep, struct vlistener *l)
{
	for (uint32_t i = 0; i < c->count; i++) {
		struct vcqe *v = &c->ring[(c->head + i) % c->cq_cap];

		if ((ep && v->cqe.ep == &ep->base) ||
		    (l && v->cqe.listener == &l->base)) {
			v->cqe.op = 0;
			v->rs = NULL;
		}
	}
	for (uint32_t i = 0; ep && i < c->nrepost; i++)
		if (c->repost[i] && c->repost[i]->ep == ep)
			c->repost[i] = NULL;
}

/* ---- endpoints ------------------------------------------------------------ */

int verbs_post_recv(struct vep *ep, uint32_t idx)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)(ep->buf + (size_t)idx * ep->msg_size),
		.length = ep->msg_size,
		.lkey = ep->buf_mr->lkey,
	};
	struct ibv_recv_wr wr = {
		.wr_id = (uintptr_t)&ep->recvs[idx],
		.sg_list = &sge,
		.num_sge = 1,
	}, *bad;
	int ret = verr(ibv_post_recv(ep->qp, &wr, &bad));

	if (!ret)
		ep->recv_posted++;
	return ret;
}

void verbs_ep_free_mem(struct vep *ep)
{
	free(ep->sends);
	free(ep->free_sends);
	free(ep->recvs);
	free(ep->early);
	free(ep->buf);
	free(ep);
}

static void ep_maybe_closed(struct vep *ep)
{
	if (ep->state != EP_CLOSING || ep->send_busy)
		return;
	struct vcqe *v;

	ep->state = EP_CLOSED;
	v = verbs_ring_push(ep->ctx, WF_CQE_DISCONNECT, ep);
	if (v)
		v->cqe.status = ep->close_status;
}

/* Move the QP to error: everything posted flushes. */
static void qp_error(struct vep *ep)
{
	struct ibv_qp_attr a = { .qp_state = IBV_QPS_ERR };

	/* rdma_disconnect also tells the peer; on a QP that never got
	 * connected it fails, and the modify below does the local part. */
	(void)rdma_disconnect(ep->id);
	if (ep->qp)
		(void)ibv_modify_qp(ep->qp, &a, IBV_QP_STATE);
}

/* status: what the DISCONNECT will carry (0: closed by us). */
void verbs_ep_begin_close(struct vep *ep, int status)
{
	if (ep->state != EP_LIVE)
		return;
	ep->state = EP_CLOSING;
	ep->close_status = status;
	qp_error(ep);
	ep_maybe_closed(ep);
}

/* Unlink from the listener while passive and not yet taken. */
void verbs_ep_unlisten(struct vep *ep)
{
	if (ep->listener) {
		vlist_del(&ep->plink);
		ep->listener = NULL;
	}
}

/* One work completion into the ring (or dropped, for an endpoint going). */
static void wc_handle(struct vctx *c, const struct ibv_wc *wc)
{
	uint8_t kind = *(const uint8_t *)(uintptr_t)wc->wr_id;
	struct vcqe *v;
	struct vep *ep;

	if (kind == SLOT_BIND) {
		struct vbind *b = (struct vbind *)(uintptr_t)wc->wr_id;

		/* wf_mr_bind waits for this; a failure has moved the QP to
		 * the error state, and the endpoint closes through the
		 * flushes of its other work. */
		b->busy = false;
		b->status = wc->status;
		return;
	}
	if (kind == SLOT_SEND) {
		struct vsend *s = (struct vsend *)(uintptr_t)wc->wr_id;

		ep = s->ep;
		ep->send_busy--;
		ep->free_sends[ep->nfree++] = (uint32_t)(s - ep->sends);
		if (ep->state == EP_DESTROYING || ep->state == EP_ZOMBIE)
			return;
		v = verbs_ring_push(c, s->op, ep);
		if (v) {
			v->cqe.wr_id = s->wr_id;
			v->cqe.status = wc_err(wc->status);
		}
		if (wc->status != IBV_WC_SUCCESS)
			verbs_ep_begin_close(ep, -ECONNRESET);
		ep_maybe_closed(ep);
		return;
	}

	struct vrecv *r = (struct vrecv *)(uintptr_t)wc->wr_id;

	ep = r->ep;
	ep->recv_posted--;
	if (ep->state == EP_DESTROYING || ep->state == EP_ZOMBIE)
		return;
	if (wc->status != IBV_WC_SUCCESS) {
		/* A receive is not the caller's operation: a flush says
		 * nothing new, anything else means the connection broke. */
		if (ep->state == EP_LIVE)
			verbs_ep_begin_close(ep, -ECONNRESET);
		return;
	}
	/* After a close, data no longer counts: the caller may be freeing
	 * the endpoint on the DISCONNECT in the same batch. */
	if (ep->state == EP_CLOSING || ep->state == EP_CLOSED)
		return;
	if (ep->state == EP_ACCEPTING || ep->state == EP_WAITING ||
	    ep->state == EP_CONNECTING) {
		/* The peer may send as soon as its side is up, before the
		 * caller has taken this endpoint (or, connecting, before
		 * our ESTABLISHED event was read): hold it until then (at
		 * most recv_depth, as each holds a receive buffer). */
		v = &ep->early[ep->nearly++];
		memset(v, 0, sizeof(*v));
		v->cqe.ep = &ep->base;
	} else {
		v = verbs_ring_push(c, 0, ep);
		if (!v)
			return;
	}
	if (wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
		v->cqe.op = WF_CQE_RECV_IMM;
		v->cqe.imm = be32toh(wc->imm_data);
	} else {
		v->cqe.op = WF_CQE_RECV_MSG;
		v->cqe.msg = ep->buf + (size_t)r->idx * ep->msg_size;
	}
	v->cqe.len = wc->byte_len;
	v->rs = r;
}

/* Reap one CQ; returns how many work completions were seen. */
static int cq_reap(struct vctx *c, struct vdev *d)
{
	struct ibv_wc wc[POLL_BATCH];
	int n, total = 0;

	do {
		n = ibv_poll_cq(d->cq, POLL_BATCH, wc);
		for (int i = 0; i < n; i++)
			wc_handle(c, &wc[i]);
		if (n > 0)
			total += n;
	} while (n == POLL_BATCH);
	return total;
}

/*
 * Drain before destroying: with the QP in error every posted request
 * completes (flushed).  Completions of other endpoints seen meanwhile go to
 * the ring as usual.  Returns true when the QP owns nothing any more.
 */
static bool ep_drain(struct vep *ep)
{
	int64_t start = wf_clock_ms(CLOCK_MONOTONIC);
	struct vctx *c = ep->ctx;

	while (ep->send_busy || ep->bind.busy || ep->recv_posted) {
		int64_t waited = wf_clock_ms(CLOCK_MONOTONIC) - start;
		int seen = 0;

		if (waited > DRAIN_SEND_MS ||
		    (!ep->send_busy && !ep->bind.busy && waited > DRAIN_RECV_MS))
			return false;
		for (int i = 0; i < c->ndev; i++)
			seen += cq_reap(c, &c->devs[i]);
		if (!seen)
			usleep(200);
	}
	return true;
}

/* Drop the window of a bound region; it stays bound (closed to all). */
static void mw_release(struct vmr *m)
{
	if (m->mw) {
		(void)ibv_dealloc_mw(m->mw);
		m->mw = NULL;
	}
	if (m->owner) {
		vlist_del(&m->blink);
		m->owner = NULL;
	}
}

/* The endpoint goes: nothing reaches the regions bound to it any more. */
static void ep_unbind_all(struct vep *ep)
{
	while (!vlist_empty(&ep->bound))
		mw_release(container_of(ep->bound.next, struct vmr, blink));
}

void verbs_ep_teardown(struct vep *ep)
{
	struct vctx *c = ep->ctx;
	bool drained;

	verbs_ep_unlisten(ep);
	verbs_connect_forget(ep);
	if (ep->state != EP_CLOSED && !ep->never_up)
		qp_error(ep);
	ep->state = EP_DESTROYING;
	verbs_ring_purge(c, ep, NULL);
	if (ep->never_up && ep->qp) {
		/*
		 * A connect abandoned or failed (a stopped peer, say): nothing
		 * was posted but its receives, and nothing of it is owed to
		 * the caller.  Flushing them (which older rxe may never do)
		 * would hold the caller's loop in ep_drain; instead the QP
		 * goes with them, then the CQs are read once, so that any
		 * completion it left there is dropped here (DESTROYING)
		 * before its slots are freed.
		 */
		rdma_destroy_qp(ep->id);
		ep->qp = NULL;
		ep->recv_posted = 0;
		for (int i = 0; i < c->ndev; i++)
			cq_reap(c, &c->devs[i]);
	}
	drained = ep_drain(ep);
	/* Before the QP: a bound window holds a reference to it. */
	ep_unbind_all(ep);
	/* A connect abandoned before its route was resolved has no QP (nor
	 * registered buffers) yet. */
	if (ep->qp)
		rdma_destroy_qp(ep->id);
	ep->qp = NULL;
	if (ep->id)
		rdma_destroy_id(ep->id);
	ep->id = NULL;
	if (ep->buf_mr)
		ibv_dereg_mr(ep->buf_mr);
	ep->buf_mr = NULL;
	if (ep->reserved)
		c->cq_reserved -= ep_budget(ep->send_depth, ep->recv_depth);
	ep->reserved = false;
	if (drained) {
		vlist_del(&ep->link);
		verbs_ep_free_mem(ep);
		return;
	}
	/* Late completions may still name its slots: keep those, free the
	 * buffers (the QP is gone, nothing writes them any more). */
	free(ep->buf);
	ep->buf = NULL;
	ep->state = EP_ZOMBIE;
}

/* ---- ctx ------------------------------------------------------------------- */

static void v_ctx_destroy(struct wf_ctx *wc);

static int v_ctx_create(const struct wf_ctx_opts *o, struct wf_ctx **out)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct vctx *c;
	int ret, flags;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->epfd = -1;
	c->evfd = -1;
	vlist_init(&c->eps);
	vlist_init(&c->conning);
	vlist_init(&c->mrs);
	vlist_init(&c->listeners);
	c->cq_cap = o->cq_depth;
	c->ring = calloc(c->cq_cap, sizeof(*c->ring));
	c->repost = calloc(c->cq_cap, sizeof(*c->repost));
	if (!c->ring || !c->repost) {
		ret = -ENOMEM;
		goto out;
	}
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	c->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->epfd < 0 || c->evfd < 0) {
		ret = verr(-1);
		goto out;
	}
	c->cm = rdma_create_event_channel();
	if (!c->cm) {
		ret = verr(-1);
		goto out;
	}
	flags = fcntl(c->cm->fd, F_GETFL);
	if (flags < 0 || fcntl(c->cm->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		ret = verr(-1);
		goto out;
	}
	ev.data.ptr = c->cm;
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->cm->fd, &ev)) {
		ret = verr(-1);
		goto out;
	}
	ev.data.ptr = &c->evfd;
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->evfd, &ev)) {
		ret = verr(-1);
		goto out;
	}
	*out = &c->base;
	return 0;
out:
	v_ctx_destroy(&c->base);
	return ret;
}

static void v_mr_dereg(struct wf_mr *mb);

static void v_ctx_destroy(struct wf_ctx *wc)
{
	struct vctx *c = (struct vctx *)wc;

	/* The caller should have destroyed everything; be safe if not. */
	while (!vlist_empty(&c->listeners))
		verbs_listener_destroy(&container_of(c->listeners.next,
						 struct vlistener, link)->base);
	for (struct vlink *p = c->eps.next, *n; p != &c->eps; p = n) {
		struct vep *ep = container_of(p, struct vep, link);

		n = p->next;
		if (ep->state != EP_ZOMBIE)
			verbs_ep_teardown(ep);
	}
	while (!vlist_empty(&c->mrs))
		v_mr_dereg(&container_of(c->mrs.next, struct vmr, link)->base);
	for (int i = 0; i < c->ndev; i++)
		verbs_dev_teardown(&c->devs[i]);
	/* Zombies last: the CQs that could name them are gone. */
	while (!vlist_empty(&c->eps)) {
		struct vep *ep = container_of(c->eps.next, struct vep, link);

		vlist_del(&ep->link);
		verbs_ep_free_mem(ep);
	}
	if (c->cm)
		rdma_destroy_event_channel(c->cm);
	if (c->evfd >= 0)
		close(c->evfd);
	if (c->epfd >= 0)
		close(c->epfd);
	free(c->repost);
	free(c->ring);
	free(c);
}

static int v_ctx_fd(const struct wf_ctx *wc)
{
	return ((const struct vctx *)wc)->epfd;
}

static int v_ctx_arm(struct wf_ctx *wc)
{
	struct vctx *c = (struct vctx *)wc;

	for (int i = 0; i < c->ndev; i++) {
		int ret = verr(ibv_req_notify_cq(c->devs[i].cq, 0));

		if (ret)
			return ret;
	}
	c->armed = true;
	if (c->count)
		verbs_ring_kick(c);
	return 0;
}

static int v_poll(struct wf_ctx *wc, struct wf_cqe *cqes, int max)
{
	struct vctx *c = (struct vctx *)wc;
	uint64_t junk;
	int n = 0, ret;

	/*
	 * The busy-poll path makes no system call besides reposting: the
	 * eventfd is read only if it was written, completion events are
	 * consumed only after an arm, and the cm channel (connects,
	 * disconnects) is looked at once per coarse clock tick or after an
	 * arm.  Syscalls per poll would cost more than the round trip under
	 * emulation, and they compete with the device for the CPU.
	 */
	if (c->kicked) {
		(void)!read(c->evfd, &junk, sizeof(junk));
		c->kicked = false;
	}
	/* Buffers whose completions the caller has had since the last call. */
	for (uint32_t i = 0; i < c->nrepost; i++) {
		struct vrecv *r = c->repost[i];

		if (r && r->ep->state == EP_LIVE) {
			ret = verbs_post_recv(r->ep, r->idx);
			if (ret)
				verbs_ep_begin_close(r->ep, ret);
		}
	}
	c->nrepost = 0;
	/* The coarse clock is cheap (no system call): it paces the cm
	 * channel checks to one per tick of a few ms. */
	if (c->armed || wf_clock_ms(CLOCK_MONOTONIC_COARSE) != c->cm_checked) {
		c->cm_checked = wf_clock_ms(CLOCK_MONOTONIC_COARSE);
		ret = verbs_cm_drain(c);
		if (ret)
			return ret;
	}
	for (int i = 0; i < c->ndev; i++) {
		struct ibv_cq *cq;
		void *cq_ctx;

		/* Consume wake-ups; the CQ is read below in any case. */
		while (c->armed && !ibv_get_cq_event(c->devs[i].ch, &cq, &cq_ctx))
			ibv_ack_cq_events(cq, 1);
		cq_reap(c, &c->devs[i]);
	}
	c->armed = false;
	while (c->count && n < max) {
		struct vcqe *v = &c->ring[c->head];

		c->head = (c->head + 1) % c->cq_cap;
		c->count--;
		if (!v->cqe.op)
			continue;       /* purged */
		if (v->cqe.op == WF_CQE_ACCEPT)
			((struct vlistener *)v->cqe.listener)->accept_queued = false;
		if (v->rs)
			c->repost[c->nrepost++] = v->rs;
		cqes[n++] = v->cqe;
	}
	if (c->count)
		verbs_ring_kick(c);
	return n;
}

/* ---- close ---------------------------------------------------------------- */

static int v_ep_peer(const struct wf_ep *eb, char *buf, size_t len)
{
	const struct vep *ep = (const struct vep *)eb;
	struct sockaddr *sa;

	if (!ep->id || ep->state != EP_LIVE)
		return -ENOTCONN;
	sa = rdma_get_peer_addr(ep->id);
	if (!sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
		return -ENOTCONN;
	return wf_inet_host_str(sa, "rdma", buf, len);
}

static int v_ep_close(struct wf_ep *eb)
{
	struct vep *ep = (struct vep *)eb;

	if (ep->state != EP_LIVE)
		return ep->state == EP_CLOSING || ep->state == EP_CLOSED ? 0 : -EINVAL;
	verbs_ep_begin_close(ep, 0);
	/* The QP in error admits nothing already; free the windows now
	 * rather than at wf_ep_destroy. */
	ep_unbind_all(ep);
	verbs_ring_kick(ep->ctx);
	return 0;
}

static void v_ep_destroy(struct wf_ep *eb)
{
	verbs_ep_teardown((struct vep *)eb);
}

/* ---- memory regions ------------------------------------------------------------------- */

static int v_mr_reg(struct wf_ctx *wc, void *addr, size_t len, unsigned access,
		    struct wf_mr **out)
{
	struct vctx *c = (struct vctx *)wc;
	struct vmr *m;
	int ret, i;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->base.addr = addr;
	m->base.len = len;
	vlist_init(&m->blink);
	if (access & WF_ACCESS_REMOTE_WRITE)
		m->remote |= IBV_ACCESS_REMOTE_WRITE;
	if (access & WF_ACCESS_REMOTE_READ)
		m->remote |= IBV_ACCESS_REMOTE_READ;
	/* Local write always: reads land in local regions. */
	m->ibv_access = IBV_ACCESS_LOCAL_WRITE | m->remote;
	for (i = 0; i < c->ndev; i++) {
		m->mr[i] = ibv_reg_mr(c->devs[i].pd, addr, len, m->ibv_access);
		if (!m->mr[i]) {
			ret = verr(-1);
			goto out_dereg;
		}
	}
	vlist_add_tail(&c->mrs, &m->link);
	*out = &m->base;
	return 0;

out_dereg:
	while (i-- > 0)
		ibv_dereg_mr(m->mr[i]);
	free(m);
	return ret;
}

static void v_mr_dereg(struct wf_mr *mb)
{
	struct vmr *m = (struct vmr *)mb;

	/* The window first: an MR with windows bound to it cannot go. */
	mw_release(m);
	for (int i = 0; i < VDEV_MAX; i++)
		if (m->mr[i])
			ibv_dereg_mr(m->mr[i]);
	vlist_del(&m->link);
	free(m);
}

static int v_mr_rkey(const struct wf_mr *mb, const struct wf_ep *eb, uint64_t off,
		     uint32_t len, struct wf_rkey *out)
{
	const struct vmr *m = (const struct vmr *)mb;
	const struct vctx *c = (const struct vctx *)mb->ctx;
	const struct ibv_mr *im;
	int idx;

	if (eb)
		idx = ((const struct vep *)eb)->dev->idx;
	else if (c->ndev == 1)
		idx = 0;
	else
		return -EINVAL;     /* which device's key? */
	im = m->mr[idx];
	if (!im)
		return -ENODEV;
	out->addr = (uintptr_t)m->base.addr + off;
	/* Bound: the window is the only key that opens anything. */
	out->key = m->mw && m->mw_dev == idx ? m->mw_rkey : im->rkey;
	out->len = len;
	return 0;
}

/*
 * Register the region again on every device with `access`, new MRs before
 * old ones go, so a failure leaves it as it was.  The lkeys change: no
 * local operation on the region may be in flight (wf_mr_bind's contract).
 */
static int mr_rereg(struct vmr *m, int access)
{
	struct vctx *c = (struct vctx *)m->base.ctx;
	struct ibv_mr *fresh[VDEV_MAX] = { 0 };
	int i, ret;

	for (i = 0; i < c->ndev; i++) {
		if (!m->mr[i])
			continue;
		fresh[i] = ibv_reg_mr(c->devs[i].pd, m->base.addr, m->base.len,
				      dev_access(&c->devs[i], access));
		if (!fresh[i]) {
			ret = verr(-1);
			goto out_undo;
		}
	}
	for (i = 0; i < c->ndev; i++) {
		if (!fresh[i])
			continue;
		ibv_dereg_mr(m->mr[i]);
		m->mr[i] = fresh[i];
	}
	m->ibv_access = access;
	return 0;

out_undo:
	while (i-- > 0)
		if (fresh[i])
			ibv_dereg_mr(fresh[i]);
	return ret;
}

/* Wait for the endpoint's BIND_MW; other completions go to the ring. */
static int bind_wait(struct vep *ep)
{
	int64_t start = wf_clock_ms(CLOCK_MONOTONIC);
	struct vctx *c = ep->ctx;

	while (ep->bind.busy) {
		int seen = 0;

		if (wf_clock_ms(CLOCK_MONOTONIC) - start > DRAIN_SEND_MS)
			return -ETIMEDOUT;
		for (int i = 0; i < c->ndev; i++)
			seen += cq_reap(c, &c->devs[i]);
		if (!seen)
			usleep(50);
	}
	if (c->count)
		verbs_ring_kick(c);
	return ep->bind.status == IBV_WC_SUCCESS ? 0 : wc_err(ep->bind.status);
}

/* A type 2 window over all of m, with m's remote rights, bound to ep's QP. */
static int mw_bind(struct vmr *m, struct vep *ep)
{
	struct ibv_send_wr wr = { 0 }, *bad;
	struct ibv_mw *mw;
	uint32_t rkey;
	int ret;

	mw = ibv_alloc_mw(ep->dev->pd, IBV_MW_TYPE_2);
	if (!mw)
		return verr(-1);
	/* The consumer-owned byte changes, so no key the window had before
	 * (none, it is new; but keep the rule) names it again. */
	rkey = ibv_inc_rkey(mw->rkey);
	wr.wr_id = (uintptr_t)&ep->bind;
	wr.opcode = IBV_WR_BIND_MW;
	wr.send_flags = IBV_SEND_SIGNALED;
	wr.bind_mw.mw = mw;
	wr.bind_mw.rkey = rkey;
	wr.bind_mw.bind_info.mr = m->mr[ep->dev->idx];
	wr.bind_mw.bind_info.addr = (uintptr_t)m->base.addr;
	wr.bind_mw.bind_info.length = m->base.len;
	wr.bind_mw.bind_info.mw_access_flags = (unsigned)m->remote;
	ep->bind.busy = true;
	ret = verr(ibv_post_send(ep->qp, &wr, &bad));
	if (ret) {
		ep->bind.busy = false;
		(void)ibv_dealloc_mw(mw);
		return ret;
	}
	/* Owned from here: if the wait gives up, the endpoint's teardown
	 * frees the window after draining the QP. */
	m->mw = mw;
	m->mw_dev = ep->dev->idx;
	m->owner = ep;
	vlist_add_tail(&ep->bound, &m->blink);
	ret = bind_wait(ep);
	if (ret) {
		verbs_ep_begin_close(ep, ret);
		if (!ep->bind.busy)
			mw_release(m);
		return ret;
	}
	mw->rkey = rkey;
	m->mw_rkey = rkey;
	return 0;
}

static int v_mr_bind(struct wf_mr *mb, const struct wf_ep *eb)
{
	struct vmr *m = (struct vmr *)mb;
	struct vep *ep = (struct vep *)(uintptr_t)eb;
	int ret;

	if (!ep) {
		mw_release(m);
		if (m->bound) {
			ret = mr_rereg(m, IBV_ACCESS_LOCAL_WRITE | m->remote);
			if (ret)
				return ret;     /* still closed to everyone */
			m->bound = false;
		}
		return 0;
	}
	if (ep->state != EP_LIVE)
		return -ENOTCONN;
	if (m->owner == ep && (m->mw || !m->remote))
		return 0;
	/* No type 2B memory windows on this device: regions cannot be bound
	 * to one endpoint.  The caller decides whether to say so (the fabric,
	 * a library, prints nothing). */
	if (!ep->dev->mw2)
		return -EOPNOTSUPP;
	mw_release(m);
	if (!m->bound) {
		ret = mr_rereg(m, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_MW_BIND);
		if (ret)
			return ret;     /* unbound, as before */
		m->bound = true;
	}
	if (!m->remote) {
		/* Nothing to open: the owner is all there is to record. */
		m->owner = ep;
		vlist_add_tail(&ep->bound, &m->blink);
		return 0;
	}
	return mw_bind(m, ep);
}

/* ---- data operations -------------------------------------------------------------------- */

static int post_send(struct vep *ep, struct ibv_send_wr *wr, uint8_t op, uint64_t wr_id)
{
	struct ibv_send_wr *bad;
	struct vsend *s;
	uint32_t idx;
	int ret;

	idx = ep->free_sends[--ep->nfree];
	s = &ep->sends[idx];
	s->op = op;
	s->wr_id = wr_id;
	wr->wr_id = (uintptr_t)s;
	/* Inline: the payload is copied into the work request at post time,
	 * which spares the device a DMA read (rxe: a lookup of the MR).  Not
	 * for reads: their sge is where data lands. */
	wr->send_flags = IBV_SEND_SIGNALED;
	if (wr->opcode != IBV_WR_RDMA_READ && wr->num_sge &&
	    wr->sg_list->length <= ep->max_inline)
		wr->send_flags |= IBV_SEND_INLINE;
	ret = verr(ibv_post_send(ep->qp, wr, &bad));
	if (ret) {
		ep->nfree++;
		return ret;
	}
	ep->send_busy++;
	return 0;
}

static int op_check(const struct vep *ep)
{
	if (ep->state != EP_LIVE)
		return -ENOTCONN;
	return ep->nfree ? 0 : -EAGAIN;
}

/*
 * One RDMA work request (WRITE, WRITE_WITH_IMM or READ) on the local region
 * mb[loff, loff+len).  fabric.c has checked both ranges already.
 */
static int post_rdma(struct wf_ep *eb, const struct wf_mr *mb, uint64_t loff,
		     uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
		     enum ibv_wr_opcode opcode, uint32_t imm, uint32_t cqe_op,
		     uint64_t wr_id)
{
	struct vep *ep = (struct vep *)eb;
	const struct vmr *m = (const struct vmr *)mb;
	struct ibv_sge sge;
	struct ibv_send_wr wr = { 0 };
	int ret = op_check(ep);

	if (ret)
		return ret;
	if (!m->mr[ep->dev->idx])
		return -ENODEV;
	sge.addr = (uintptr_t)m->base.addr + loff;
	sge.length = len;
	sge.lkey = m->mr[ep->dev->idx]->lkey;
	wr.sg_list = &sge;
	wr.num_sge = len ? 1 : 0;
	wr.opcode = opcode;
	wr.imm_data = htobe32(imm);
	wr.wr.rdma.remote_addr = rkey->addr + roff;
	wr.wr.rdma.rkey = rkey->key;
	return post_send(ep, &wr, cqe_op, wr_id);
}

static int v_write_imm(struct wf_ep *eb, const struct wf_mr *mb, uint64_t loff,
		       uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
		       uint32_t imm, uint64_t wr_id)
{
	return post_rdma(eb, mb, loff, len, rkey, roff,
			 IBV_WR_RDMA_WRITE_WITH_IMM, imm, WF_CQE_WRITE_IMM, wr_id);
}

/* RC ordering puts these bytes before any later write_imm or send. */
static int v_write(struct wf_ep *eb, const struct wf_mr *mb, uint64_t loff,
		   uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
		   uint64_t wr_id)
{
	return post_rdma(eb, mb, loff, len, rkey, roff, IBV_WR_RDMA_WRITE, 0,
			 WF_CQE_WRITE, wr_id);
}

static int v_read(struct wf_ep *eb, const struct wf_mr *mb, uint64_t loff,
		  uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
		  uint64_t wr_id)
{
	return post_rdma(eb, mb, loff, len, rkey, roff, IBV_WR_RDMA_READ, 0,
			 WF_CQE_READ, wr_id);
}

static int v_send(struct wf_ep *eb, const void *msg, uint32_t len, uint64_t wr_id)
{
	struct vep *ep = (struct vep *)eb;
	struct ibv_sge sge;
	struct ibv_send_wr wr = { 0 };
	uint8_t *slot;
	int ret = op_check(ep);

	if (ret)
		return ret;
	if (len > ep->msg_size || len > ep->peer_msg_size)
		return -EMSGSIZE;
	/* Copied (inline, or into the send slot's registered buffer): the
	 * caller's memory is free again on return. */
	if (len <= ep->max_inline) {
		slot = (uint8_t *)(uintptr_t)msg;
	} else {
		slot = ep->buf + (size_t)(ep->recv_depth +
					  ep->free_sends[ep->nfree - 1]) * ep->msg_size;
		memcpy(slot, msg, len);
	}
	sge.addr = (uintptr_t)slot;
	sge.length = len;
	sge.lkey = ep->buf_mr->lkey;
	wr.sg_list = &sge;
	wr.num_sge = len ? 1 : 0;
	wr.opcode = IBV_WR_SEND;
	return post_send(ep, &wr, WF_CQE_SEND, wr_id);
}

const struct wf_ops wf_verbs_ops = {
	.name             = "verbs",
	.ctx_create       = v_ctx_create,
	.ctx_destroy      = v_ctx_destroy,
	.ctx_fd           = v_ctx_fd,
	.ctx_arm          = v_ctx_arm,
	.poll             = v_poll,
	.listen           = verbs_listen,
	.listener_addr    = verbs_listener_addr,
	.accept           = verbs_accept,
	.listener_destroy = verbs_listener_destroy,
	.connect          = verbs_connect,
	.connect_start    = verbs_connect_start,
	.ep_close         = v_ep_close,
	.ep_peer          = v_ep_peer,
	.ep_destroy       = v_ep_destroy,
	.mr_reg           = v_mr_reg,
	.mr_dereg         = v_mr_dereg,
	.mr_rkey          = v_mr_rkey,
	.mr_bind          = v_mr_bind,
	.write_imm        = v_write_imm,
	.write            = v_write,
	.read             = v_read,
	.send             = v_send,
};
