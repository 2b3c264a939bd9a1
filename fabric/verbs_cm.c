/* SPDX-License-Identifier: Apache-2.0 */
/*
 * verbs backend, connection set-up with librdmacm: listeners, wf_connect,
 * wf_accept and the rdma_cm events on the ctx's channel (connect requests,
 * ESTABLISHED, disconnects), with the depths exchanged in the private data
 * (struct vpriv).  Also what a new connection needs first: the ctx's state
 * for the connection's RDMA device (a PD, a completion channel and one CQ
 * per device, set up on first use; regions registered earlier are
 * registered with the new PD too) and the endpoint itself (its RC QP on that
 * CQ, its receive buffers registered and posted, its completion credits
 * reserved).  The rest (the completion ring, wf_poll, teardown, memory
 * registration, data operations) is in verbs.c, whose top comment tells how
 * the credits work; the structs both share are in verbs_int.h.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "fabric/verbs_int.h"

#define RD_ATOM_MAX     16      /* RDMA READs in flight per QP, each way */
#define INLINE_MAX      256     /* small payloads ride in the WQE itself */
#define PRIV_MAGIC      0x56465756u     /* "VWFV" little-endian */
#define PRIV_VERSION    1u

/* Sent with rdma_connect/rdma_accept: what the sender can receive. */
struct vpriv {
	uint32_t magic;         /* PRIV_MAGIC */
	uint16_t version;       /* PRIV_VERSION */
	uint16_t reserved;      /* 0 */
	uint32_t msg_size;      /* largest message the sender accepts */
	uint32_t recv_depth;    /* informational */
};
_Static_assert(sizeof(struct vpriv) == 16, "private data is 16 bytes");

static int reserve(struct vctx *c, uint32_t n)
{
	if (n > c->cq_cap || c->cq_reserved > c->cq_cap - n)
		return -ENOSPC;
	c->cq_reserved += n;
	return 0;
}

/* ---- devices -------------------------------------------------------------- */

static void mr_undo_dev(struct vctx *c, int idx)
{
	struct vlink *p;

	for (p = c->mrs.next; p != &c->mrs; p = p->next) {
		struct vmr *m = container_of(p, struct vmr, link);

		if (m->mr[idx]) {
			ibv_dereg_mr(m->mr[idx]);
			m->mr[idx] = NULL;
		}
	}
}

void verbs_dev_teardown(struct vdev *d)
{
	if (d->cq)
		ibv_destroy_cq(d->cq);
	if (d->ch)
		ibv_destroy_comp_channel(d->ch);
	if (d->pd)
		ibv_dealloc_pd(d->pd);
	memset(d, 0, sizeof(*d));
}

/* The ctx's state for the device of a new endpoint, set up on first use. */
static int ctx_dev(struct vctx *c, struct ibv_context *verbs, struct vdev **out)
{
	struct ibv_device_attr attr;
	struct epoll_event ev = { .events = EPOLLIN };
	struct vdev *d;
	struct vlink *p;
	int ret, cqe, flags;

	if (!verbs)
		return -ENODEV;
	for (int i = 0; i < c->ndev; i++) {
		if (c->devs[i].verbs == verbs) {
			*out = &c->devs[i];
			return 0;
		}
	}
	if (c->ndev == VDEV_MAX)
		return -ENOSPC;
	d = &c->devs[c->ndev];
	d->idx = c->ndev;
	d->verbs = verbs;
	ret = verr(ibv_query_device(verbs, &attr));
	if (ret)
		goto out_clear;
	d->rd_atom = attr.max_qp_rd_atom < RD_ATOM_MAX ? attr.max_qp_rd_atom : RD_ATOM_MAX;
	d->init_rd_atom = attr.max_qp_init_rd_atom < RD_ATOM_MAX ?
			  attr.max_qp_init_rd_atom : RD_ATOM_MAX;
	d->mw2 = !!(attr.device_cap_flags & IBV_DEVICE_MEM_WINDOW_TYPE_2B);
	d->pd = ibv_alloc_pd(verbs);
	if (!d->pd) {
		ret = verr(-1);
		goto out_clear;
	}
	d->ch = ibv_create_comp_channel(verbs);
	if (!d->ch) {
		ret = verr(-1);
		goto out_teardown;
	}
	flags = fcntl(d->ch->fd, F_GETFL);
	if (flags < 0 || fcntl(d->ch->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		ret = verr(-1);
		goto out_teardown;
	}
	/* Every reservation fits, plus the flushes of endpoints being torn
	 * down whose entries may still sit in the CQ. */
	cqe = (int)(c->cq_cap * 2 < (uint32_t)attr.max_cqe ? c->cq_cap * 2 :
		    (uint32_t)attr.max_cqe);
	d->cq = ibv_create_cq(verbs, cqe, NULL, d->ch, 0);
	if (!d->cq) {
		ret = verr(-1);
		goto out_teardown;
	}
	ret = verr(ibv_req_notify_cq(d->cq, 0));
	if (ret)
		goto out_teardown;
	ev.data.ptr = d;
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, d->ch->fd, &ev)) {
		ret = verr(-1);
		goto out_teardown;
	}
	/* Regions registered before this device showed up. */
	for (p = c->mrs.next; p != &c->mrs; p = p->next) {
		struct vmr *m = container_of(p, struct vmr, link);

		m->mr[d->idx] = ibv_reg_mr(d->pd, m->base.addr, m->base.len,
					   dev_access(d, m->ibv_access));
		if (!m->mr[d->idx]) {
			ret = verr(-1);
			goto out_undo_mrs;
		}
	}
	c->ndev++;
	*out = d;
	return 0;

out_undo_mrs:
	mr_undo_dev(c, d->idx);
	epoll_ctl(c->epfd, EPOLL_CTL_DEL, d->ch->fd, NULL);
out_teardown:
	verbs_dev_teardown(d);
	return ret;
out_clear:
	memset(d, 0, sizeof(*d));
	return ret;
}

/* ---- endpoints ------------------------------------------------------------ */

/* An endpoint's struct, nothing on a device yet. */
static struct vep *ep_alloc(struct vctx *c, const struct wf_ep_opts *o)
{
	struct vep *ep = calloc(1, sizeof(*ep));

	if (!ep)
		return NULL;
	ep->ctx = c;
	ep->base.ctx = &c->base;
	ep->base.user = o->user;
	ep->send_depth = o->send_depth;
	ep->recv_depth = o->recv_depth;
	ep->msg_size = o->msg_size;
	ep->peer_msg_size = o->msg_size;
	vlist_init(&ep->link);
	vlist_init(&ep->plink);
	vlist_init(&ep->bound);
	vlist_init(&ep->clink);
	ep->bind.kind = SLOT_BIND;
	return ep;
}

/*
 * Set ep up on cm id `id` (address and route resolved): its QP on the
 * ctx's CQ for the id's device, its buffers registered, every receive
 * posted.  Reserves its completion credits.  On failure what it made is
 * undone; ep itself (and the arrays verbs_ep_free_mem frees) stays the
 * caller's.
 */
static int ep_setup(struct vctx *c, struct rdma_cm_id *id, struct vep *ep)
{
	struct ibv_qp_init_attr qa = { 0 };
	size_t nbuf;
	int ret;

	ep->id = id;
	ret = ctx_dev(c, id->verbs, &ep->dev);
	if (ret)
		return ret;
	ret = reserve(c, ep_budget(ep->send_depth, ep->recv_depth));
	if (ret)
		return ret;
	ep->reserved = true;

	ep->sends = calloc(ep->send_depth, sizeof(*ep->sends));
	ep->free_sends = calloc(ep->send_depth, sizeof(*ep->free_sends));
	ep->recvs = calloc(ep->recv_depth, sizeof(*ep->recvs));
	ep->early = calloc(ep->recv_depth, sizeof(*ep->early));
	nbuf = (size_t)(ep->recv_depth + ep->send_depth) * ep->msg_size;
	ep->buf_len = (nbuf + 4095) & ~(size_t)4095;
	ep->buf = aligned_alloc(4096, ep->buf_len);
	if (!ep->sends || !ep->free_sends || !ep->recvs || !ep->early || !ep->buf) {
		ret = -ENOMEM;
		goto out_unreserve;
	}
	for (uint32_t i = 0; i < ep->send_depth; i++) {
		ep->sends[i].kind = SLOT_SEND;
		ep->sends[i].ep = ep;
		ep->free_sends[ep->nfree++] = ep->send_depth - 1 - i;
	}
	for (uint32_t i = 0; i < ep->recv_depth; i++) {
		ep->recvs[i].kind = SLOT_RECV;
		ep->recvs[i].ep = ep;
		ep->recvs[i].idx = i;
	}
	ep->buf_mr = ibv_reg_mr(ep->dev->pd, ep->buf, ep->buf_len,
				IBV_ACCESS_LOCAL_WRITE);
	if (!ep->buf_mr) {
		ret = verr(-1);
		goto out_unreserve;
	}

	qa.send_cq = ep->dev->cq;
	qa.recv_cq = ep->dev->cq;
	qa.qp_type = IBV_QPT_RC;
	qa.sq_sig_all = 1;
	/* One more than the caller's credits: wf_mr_bind's BIND_MW. */
	qa.cap.max_send_wr = ep->send_depth + 1;
	qa.cap.max_recv_wr = ep->recv_depth;
	qa.cap.max_send_sge = 1;
	qa.cap.max_recv_sge = 1;
	qa.cap.max_inline_data = INLINE_MAX;
	ret = verr(rdma_create_qp(id, ep->dev->pd, &qa));
	if (ret) {
		/* A device without inline sends: do without. */
		qa.cap.max_inline_data = 0;
		ret = verr(rdma_create_qp(id, ep->dev->pd, &qa));
	}
	if (ret)
		goto out_dereg;
	ep->qp = id->qp;
	ep->max_inline = qa.cap.max_inline_data;
	/* Posted before the peer can send: no RNR at the start. */
	for (uint32_t i = 0; i < ep->recv_depth; i++) {
		ret = verbs_post_recv(ep, i);
		if (ret)
			goto out_destroy_qp;
	}
	id->context = ep;
	if (vlist_empty(&ep->link))
		vlist_add_tail(&c->eps, &ep->link);
	return 0;

out_destroy_qp:
	/* Nothing completed yet: the receives die with the QP. */
	rdma_destroy_qp(id);
	ep->qp = NULL;
	ep->recv_posted = 0;
out_dereg:
	ibv_dereg_mr(ep->buf_mr);
	ep->buf_mr = NULL;
out_unreserve:
	c->cq_reserved -= ep_budget(ep->send_depth, ep->recv_depth);
	ep->reserved = false;
	return ret;
}

/* A new endpoint on cm id `id` (address and route resolved). */
static int ep_create(struct vctx *c, struct rdma_cm_id *id,
		     const struct wf_ep_opts *o, struct vep **out)
{
	struct vep *ep = ep_alloc(c, o);
	int ret;

	if (!ep)
		return -ENOMEM;
	ret = ep_setup(c, id, ep);
	if (ret) {
		verbs_ep_free_mem(ep);
		return ret;
	}
	*out = ep;
	return 0;
}

/*
 * rdma_cm leaves the responder's RNR timer at 0, which means 655 ms: a
 * sender that finds no receive posted would sleep that long each time.
 * Receive credits are meant to throttle, not stall, so shorten it once the
 * QP is in RTS (the only time the attribute may change).  rxe rounds it up
 * to a jiffy anyway.
 */
static void qp_short_rnr(struct vep *ep)
{
	struct ibv_qp_attr a = { .min_rnr_timer = 7 };  /* 0.12 ms */

	(void)ibv_modify_qp(ep->qp, &a, IBV_QP_MIN_RNR_TIMER);
}

/* ---- rdma_cm events on the ctx channel -------------------------------------- */

static void priv_fill(struct vpriv *p, const struct vep *ep)
{
	memset(p, 0, sizeof(*p));
	p->magic = htole32(PRIV_MAGIC);
	p->version = htole16(PRIV_VERSION);
	p->msg_size = htole32(ep->msg_size);
	p->recv_depth = htole32(ep->recv_depth);
}

/* The peer's private data; 0 or -EPROTO. */
static int priv_parse(const void *data, uint8_t len, struct vep *ep)
{
	struct vpriv p;

	if (!data || len < sizeof(p))
		return -EPROTO;
	memcpy(&p, data, sizeof(p));
	if (le32toh(p.magic) != PRIV_MAGIC || le16toh(p.version) != PRIV_VERSION ||
	    !le32toh(p.msg_size))
		return -EPROTO;
	ep->peer_msg_size = le32toh(p.msg_size);
	return 0;
}

static int clamp_rd(uint8_t peer, int ours)
{
	return peer < ours ? peer : ours;
}

/*
 * A connect request on a listener: set the endpoint up and accept it.  On
 * failure the request is rejected, and the id (*reject) or the half-built
 * endpoint (*doomed) is destroyed once the event is acked.
 */
static void on_connect_request(struct vlistener *l, struct rdma_cm_event *e,
			       struct rdma_cm_id **reject, struct vep **doomed)
{
	struct rdma_conn_param p = { 0 };
	struct vpriv priv;
	struct vep *ep;
	int ret;

	if (ep_create(l->ctx, e->id, &l->base.opts, &ep)) {
		rdma_reject(e->id, NULL, 0);
		*reject = e->id;
		return;
	}
	ep->base.user = NULL;
	ep->state = EP_ACCEPTING;
	ep->listener = l;
	vlist_add_tail(&l->pending, &ep->plink);
	ret = priv_parse(e->param.conn.private_data,
			 e->param.conn.private_data_len, ep);
	if (ret)
		goto out_reject;
	priv_fill(&priv, ep);
	p.private_data = &priv;
	p.private_data_len = sizeof(priv);
	p.responder_resources = (uint8_t)clamp_rd(e->param.conn.initiator_depth,
						  ep->dev->rd_atom);
	p.initiator_depth = (uint8_t)clamp_rd(e->param.conn.responder_resources,
					      ep->dev->init_rd_atom);
	p.retry_count = 7;
	p.rnr_retry_count = 7;      /* infinite: receive credits backpressure */
	if (!rdma_accept(e->id, &p)) {
		qp_short_rnr(ep);
		return;
	}
out_reject:
	rdma_reject(e->id, NULL, 0);
	*doomed = ep;
}

/* What the endpoint received before the caller had it, in order. */
static void early_flush(struct vctx *c, struct vep *ep)
{
	for (uint32_t i = 0; i < ep->nearly; i++) {
		struct vcqe *v = verbs_ring_push(c, ep->early[i].cqe.op, ep);

		if (v)
			*v = ep->early[i];
	}
	ep->nearly = 0;
}

/* Why a connect failed, from the event that says so. */
static int cm_err(const struct rdma_cm_event *e)
{
	switch (e->event) {
	case RDMA_CM_EVENT_REJECTED:       return -ECONNREFUSED;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:    return -EHOSTUNREACH;
	case RDMA_CM_EVENT_CONNECT_ERROR:  return -ECONNABORTED;
	default:
		return e->status < 0 ? e->status : -EIO;
	}
}

/* ---- connect without blocking (wf_connect_start) --------------------------- */
/*
 * The id is made on the ctx's channel, so its events come through
 * verbs_cm_drain like every other: ADDR_RESOLVED -> resolve the route,
 * ROUTE_RESOLVED -> the QP (ep_setup) and rdma_connect, ESTABLISHED ->
 * EP_LIVE; any other event, or the deadline (looked at in the same drain,
 * once per coarse clock tick), fails it.  Either way one WF_CQE_CONNECT
 * completion tells the caller, who destroys a failed endpoint.  Nothing
 * here blocks: a peer that never answers costs the caller a list entry.
 */

/* The CONNECT completion of ep: 0 (connected) or -errno. */
static void conn_done(struct vep *ep, int status)
{
	struct vctx *c = ep->ctx;
	struct vcqe *v;

	vlist_del(&ep->clink);
	/* A failed one keeps its QP as it is until wf_ep_destroy, which
	 * drops it without waiting for flushes (verbs_ep_teardown). */
	ep->state = status ? EP_CLOSED : EP_LIVE;
	ep->never_up = status != 0;
	if (!status)
		qp_short_rnr(ep);
	v = verbs_ring_push(c, WF_CQE_CONNECT, ep);
	if (v)
		v->cqe.status = status;
	if (!status)
		early_flush(c, ep);
	verbs_ring_kick(c);
}

/* The QP is made: ask the peer, telling it our depths. */
static int conn_request(struct vep *ep)
{
	struct rdma_conn_param p = { 0 };
	struct vpriv priv;

	priv_fill(&priv, ep);
	p.private_data = &priv;
	p.private_data_len = sizeof(priv);
	p.responder_resources = (uint8_t)ep->dev->rd_atom;
	p.initiator_depth = (uint8_t)ep->dev->init_rd_atom;
	p.retry_count = 7;
	p.rnr_retry_count = 7;      /* infinite: receive credits backpressure */
	return verr(rdma_connect(ep->id, &p));
}

/* An event for a connecting endpoint: the next step, or its failure.  The
 * steps come in order (enum vcphase); any other event, or one out of
 * order or with a status, fails the attempt. */
static void conn_event(struct vctx *c, struct vep *ep, struct rdma_cm_event *e)
{
	int ret;

	if (e->status)
		goto out_fail;
	switch (e->event) {
	case RDMA_CM_EVENT_ADDR_RESOLVED:
		if (ep->cphase != CP_ADDR)
			goto out_fail;
		ret = verr(rdma_resolve_route(ep->id, (int)ep->ctimeout_ms));
		break;
	case RDMA_CM_EVENT_ROUTE_RESOLVED:
		if (ep->cphase != CP_ROUTE)
			goto out_fail;
		ret = ep_setup(c, ep->id, ep);
		if (!ret)
			ret = conn_request(ep);
		break;
	case RDMA_CM_EVENT_ESTABLISHED:
		if (ep->cphase != CP_CONNECT)
			goto out_fail;
		conn_done(ep, priv_parse(e->param.conn.private_data,
					 e->param.conn.private_data_len, ep));
		return;
	default:
		goto out_fail;
	}
	if (ret)
		conn_done(ep, ret);
	else
		ep->cphase++;
	return;

out_fail:
	conn_done(ep, cm_err(e));
}

/* The connecting endpoint of id, if it is one. */
static struct vep *connecting_of(struct vctx *c, const struct rdma_cm_id *id)
{
	for (struct vlink *p = c->conning.next; id && p != &c->conning; p = p->next) {
		struct vep *ep = container_of(p, struct vep, clink);

		if (ep->id == id)
			return ep;
	}
	return NULL;
}

/* Attempts past their deadline fail with -ETIMEDOUT. */
static void conn_sweep(struct vctx *c)
{
	int64_t now;

	if (vlist_empty(&c->conning))
		return;
	now = wf_clock_ms(CLOCK_MONOTONIC);
	for (struct vlink *p = c->conning.next, *n; p != &c->conning; p = n) {
		struct vep *ep = container_of(p, struct vep, clink);

		n = p->next;
		if (now >= ep->cdeadline)
			conn_done(ep, -ETIMEDOUT);
	}
}

void verbs_connect_forget(struct vep *ep)
{
	if (!vlist_empty(&ep->clink))
		vlist_del(&ep->clink);
	if (ep->creserved) {
		ep->ctx->cq_reserved--;
		ep->creserved = false;
	}
}

/* Handle one event; returns an endpoint to destroy once it is acked. */
static struct vep *cm_event(struct vctx *c, struct rdma_cm_event *e,
			    struct rdma_cm_id **reject)
{
	struct vep *ep = e->id ? e->id->context : NULL;
	struct vep *conn = e->event == RDMA_CM_EVENT_CONNECT_REQUEST ? NULL :
			   connecting_of(c, e->id);

	if (conn) {
		conn_event(c, conn, e);
		return NULL;
	}

	switch (e->event) {
	case RDMA_CM_EVENT_CONNECT_REQUEST: {
		struct vep *doomed = NULL;

		on_connect_request(e->listen_id->context, e, reject, &doomed);
		return doomed;
	}
	case RDMA_CM_EVENT_ESTABLISHED:
		if (ep && ep->state == EP_ACCEPTING) {
			struct vlistener *l = ep->listener;

			ep->state = EP_WAITING;
			if (!l->accept_queued) {
				struct vcqe *v = verbs_ring_push(c, WF_CQE_ACCEPT, NULL);

				l->accept_queued = true;
				if (v)
					v->cqe.listener = &l->base;
			}
		}
		return NULL;
	case RDMA_CM_EVENT_DISCONNECTED:
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
	case RDMA_CM_EVENT_CONNECT_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
	case RDMA_CM_EVENT_REJECTED:
	case RDMA_CM_EVENT_ADDR_CHANGE:
		if (!ep)
			return NULL;
		if (ep->listener)
			return ep;      /* never handed out: nobody knows it */
		verbs_ep_begin_close(ep, -ECONNRESET);
		return NULL;
	default:
		return NULL;
	}
}

int verbs_cm_drain(struct vctx *c)
{
	struct rdma_cm_event *e;
	struct rdma_cm_id *reject;
	struct vep *doomed;

	for (;;) {
		if (rdma_get_cm_event(c->cm, &e)) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				conn_sweep(c);
				return 0;
			}
			return verr(-1);
		}
		reject = NULL;
		doomed = cm_event(c, e, &reject);
		rdma_ack_cm_event(e);
		if (reject)
			rdma_destroy_id(reject);
		if (doomed)
			verbs_ep_teardown(doomed);
	}
}

/* ---- addresses ---------------------------------------------------------------- */

/* "rdma:HOST:PORT" (HOST may be [v6]) into a sockaddr. */
static int parse_addr(const char *addr, struct sockaddr_storage *ss)
{
	struct addrinfo hints = { .ai_flags = AI_NUMERICSERV, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai;
	char host[256];
	const char *h, *colon;
	size_t hl;

	if (strncmp(addr, "rdma:", 5))
		return -EAFNOSUPPORT;   /* another backend's address, as tcp says */
	h = addr + 5;
	colon = strrchr(h, ':');
	if (!colon || !colon[1])
		return -EINVAL;
	hl = (size_t)(colon - h);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (!hl || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = 0;
	if (getaddrinfo(host, colon + 1, &hints, &ai))
		return -EINVAL;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	return 0;
}

/* addr parsed into *ss, and one entry of the ring reserved (a listener's
 * ACCEPT, an attempt's CONNECT): 0 or -errno, nothing kept. */
static int addr_reserve(struct vctx *c, const char *addr, struct sockaddr_storage *ss)
{
	int ret = parse_addr(addr, ss);

	return ret ? ret : reserve(c, 1);
}

/* ---- listeners ------------------------------------------------------------------ */

int verbs_listen(struct wf_ctx *wc, const char *addr, const struct wf_ep_opts *o,
		 struct wf_listener **out)
{
	struct vctx *c = (struct vctx *)wc;
	struct sockaddr_storage ss;
	struct vlistener *l;
	int ret;

	(void)o;
	ret = addr_reserve(c, addr, &ss);
	if (ret)
		return ret;
	l = calloc(1, sizeof(*l));
	if (!l) {
		ret = -ENOMEM;
		goto out_unreserve;
	}
	l->ctx = c;
	vlist_init(&l->pending);
	ret = verr(rdma_create_id(c->cm, &l->id, l, RDMA_PS_TCP));
	if (ret)
		goto out_free;
	ret = verr(rdma_bind_addr(l->id, (struct sockaddr *)&ss));
	if (ret)
		goto out_destroy_id;
	ret = verr(rdma_listen(l->id, 128));
	if (ret)
		goto out_destroy_id;
	vlist_add_tail(&c->listeners, &l->link);
	*out = &l->base;
	return 0;

out_destroy_id:
	rdma_destroy_id(l->id);
out_free:
	free(l);
out_unreserve:
	c->cq_reserved--;
	return ret;
}

int verbs_listener_addr(const struct wf_listener *lb, char *buf, size_t len)
{
	const struct vlistener *l = (const struct vlistener *)lb;

	return wf_inet_addr_str(rdma_get_local_addr(l->id), "rdma", buf, len);
}

int verbs_accept(struct wf_listener *lb, struct wf_ep **out)
{
	struct vlistener *l = (struct vlistener *)lb;
	struct vctx *c = l->ctx;
	struct vlink *p;

	for (p = l->pending.next; p != &l->pending; p = p->next) {
		struct vep *ep = container_of(p, struct vep, plink);

		if (ep->state != EP_WAITING)
			continue;
		verbs_ep_unlisten(ep);
		ep->state = EP_LIVE;
		early_flush(c, ep);
		/* One ACCEPT stands for every waiting endpoint: if more
		 * wait and the caller does not loop, tell it again. */
		for (p = l->pending.next; p != &l->pending; p = p->next) {
			if (container_of(p, struct vep, plink)->state == EP_WAITING &&
			    !l->accept_queued) {
				struct vcqe *v = verbs_ring_push(c, WF_CQE_ACCEPT, NULL);

				l->accept_queued = true;
				if (v)
					v->cqe.listener = &l->base;
			}
		}
		if (c->count)
			verbs_ring_kick(c);
		*out = &ep->base;
		return 0;
	}
	return -EAGAIN;
}

void verbs_listener_destroy(struct wf_listener *lb)
{
	struct vlistener *l = (struct vlistener *)lb;
	struct vctx *c = l->ctx;

	while (!vlist_empty(&l->pending))
		verbs_ep_teardown(container_of(l->pending.next, struct vep, plink));
	rdma_destroy_id(l->id);
	verbs_ring_purge(c, NULL, l);
	vlist_del(&l->link);
	c->cq_reserved--;
	free(l);
}

/* ---- connect ------------------------------------------------------------------------ */

/* Wait for the next event on a private channel; -ETIMEDOUT past deadline. */
static int wait_event(struct rdma_event_channel *ch, int64_t deadline,
		      enum rdma_cm_event_type want, struct rdma_cm_event **out)
{
	struct pollfd pfd = { .fd = ch->fd, .events = POLLIN };
	struct rdma_cm_event *e;
	int ret, left;

	do {
		left = (int)(deadline - wf_clock_ms(CLOCK_MONOTONIC));
		if (left <= 0)
			return -ETIMEDOUT;
		ret = poll(&pfd, 1, left);
	} while (ret < 0 && errno == EINTR);
	if (ret < 0)
		return verr(-1);
	if (ret == 0)
		return -ETIMEDOUT;
	ret = verr(rdma_get_cm_event(ch, &e));
	if (ret)
		return ret;
	if (e->event == want && !e->status) {
		*out = e;
		return 0;
	}
	ret = cm_err(e);
	rdma_ack_cm_event(e);
	return ret;
}

int verbs_connect(struct wf_ctx *wc, const char *addr, const struct wf_ep_opts *o,
		  struct wf_ep **out)
{
	struct vctx *c = (struct vctx *)wc;
	int64_t deadline = wf_clock_ms(CLOCK_MONOTONIC) + o->timeout_ms;
	struct rdma_event_channel *ch;
	struct sockaddr_storage ss;
	struct rdma_cm_event *e;
	struct rdma_cm_id *id;
	struct vep *ep;
	int ret;

	ret = parse_addr(addr, &ss);
	if (ret)
		return ret;
	/* A private channel, so the blocking wait sees only this id; the id
	 * moves to the ctx channel once connected. */
	ch = rdma_create_event_channel();
	if (!ch)
		return verr(-1);
	ret = verr(rdma_create_id(ch, &id, NULL, RDMA_PS_TCP));
	if (ret)
		goto out_channel;
	ret = verr(rdma_resolve_addr(id, NULL, (struct sockaddr *)&ss, o->timeout_ms));
	if (ret)
		goto out_id;
	ret = wait_event(ch, deadline, RDMA_CM_EVENT_ADDR_RESOLVED, &e);
	if (ret)
		goto out_id;
	rdma_ack_cm_event(e);
	ret = verr(rdma_resolve_route(id, o->timeout_ms));
	if (ret)
		goto out_id;
	ret = wait_event(ch, deadline, RDMA_CM_EVENT_ROUTE_RESOLVED, &e);
	if (ret)
		goto out_id;
	rdma_ack_cm_event(e);

	ret = ep_create(c, id, o, &ep);
	if (ret)
		goto out_id;
	ret = conn_request(ep);
	if (ret)
		goto out_ep;
	ret = wait_event(ch, deadline, RDMA_CM_EVENT_ESTABLISHED, &e);
	if (ret)
		goto out_ep;
	ret = priv_parse(e->param.conn.private_data, e->param.conn.private_data_len, ep);
	rdma_ack_cm_event(e);
	if (ret)
		goto out_ep;
	ret = verr(rdma_migrate_id(id, c->cm));
	if (ret)
		goto out_ep;
	rdma_destroy_event_channel(ch);
	qp_short_rnr(ep);
	ep->state = EP_LIVE;
	*out = &ep->base;
	return 0;

out_ep:
	/* verbs_ep_teardown destroys the id too. */
	ep->state = EP_LIVE;
	verbs_ep_teardown(ep);
	rdma_destroy_event_channel(ch);
	return ret;
out_id:
	rdma_destroy_id(id);
out_channel:
	rdma_destroy_event_channel(ch);
	return ret;
}

int verbs_connect_start(struct wf_ctx *wc, const char *addr,
			const struct wf_ep_opts *o, struct wf_ep **out)
{
	struct vctx *c = (struct vctx *)wc;
	struct sockaddr_storage ss;
	struct vep *ep;
	int ret;

	/* The CONNECT completion's place in the ring, before the QP (and
	 * its credits) exist. */
	ret = addr_reserve(c, addr, &ss);
	if (ret)
		return ret;
	ep = ep_alloc(c, o);
	if (!ep) {
		ret = -ENOMEM;
		goto out_unreserve;
	}
	ep->creserved = true;
	ep->never_up = true;
	ep->state = EP_CONNECTING;
	ep->cphase = CP_ADDR;
	ep->ctimeout_ms = o->timeout_ms;
	ep->cdeadline = wf_clock_ms(CLOCK_MONOTONIC) + o->timeout_ms;
	ret = verr(rdma_create_id(c->cm, &ep->id, ep, RDMA_PS_TCP));
	if (ret)
		goto out_free;
	ret = verr(rdma_resolve_addr(ep->id, NULL, (struct sockaddr *)&ss,
				     (int)o->timeout_ms));
	if (ret)
		goto out_id;
	vlist_add_tail(&c->eps, &ep->link);
	vlist_add_tail(&c->conning, &ep->clink);
	*out = &ep->base;
	return -EINPROGRESS;

out_id:
	rdma_destroy_id(ep->id);
out_free:
	verbs_ep_free_mem(ep);
out_unreserve:
	c->cq_reserved--;
	return ret;
}
