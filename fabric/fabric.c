/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Public entry points: fill in option defaults, check arguments common to
 * every backend, and dispatch through the ctx's ops table.  Also the
 * helpers the backends share (fabric_int.h).
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "fabric/fabric_int.h"

#define OPT(o, field, def) \
	(((o) && (o)->size >= offsetof(__typeof__(*(o)), field) + sizeof((o)->field) && \
	  (o)->field) ? (o)->field : (def))

static void ep_defaults(const struct wf_ep_opts *o, struct wf_ep_opts *out)
{
	memset(out, 0, sizeof(*out));
	out->size = sizeof(*out);
	out->send_depth = OPT(o, send_depth, WF_DEFAULT_SEND_DEPTH);
	out->recv_depth = OPT(o, recv_depth, WF_DEFAULT_RECV_DEPTH);
	out->msg_size = OPT(o, msg_size, WF_DEFAULT_MSG_SIZE);
	out->timeout_ms = OPT(o, timeout_ms, WF_DEFAULT_TIMEOUT_MS);
	out->user = OPT(o, user, NULL);
	out->keepalive_s = OPT(o, keepalive_s, 0);
}

/* An endpoint needs send_depth + recv_depth + 1 (its DISCONNECT) entries
 * of its ctx's completion queue; one that could never fit is refused here,
 * the sum over all endpoints is the backend's to keep. */
static int fits(const struct wf_ctx *ctx, const struct wf_ep_opts *d)
{
	uint64_t need = (uint64_t)d->send_depth + d->recv_depth + 1;

	return need <= ctx->opts.cq_depth;
}

/* What listen and connect check alike: the arguments, then the endpoint
 * options (defaults filled into *d) against the ctx's completion queue. */
static int ep_prepare(const struct wf_ctx *ctx, const char *addr, const void *out,
		      const struct wf_ep_opts *o, struct wf_ep_opts *d)
{
	if (!ctx || !addr || !out)
		return -EINVAL;
	ep_defaults(o, d);
	return fits(ctx, d) ? 0 : -ENOSPC;
}

static const struct wf_ops *backend_ops(uint32_t backend)
{
	switch (backend) {
	case WF_BACKEND_TCP:   return &wf_tcp_ops;
	case WF_BACKEND_VERBS: return &wf_verbs_ops;
	default:               return NULL;
	}
}

int wf_ctx_create(const struct wf_ctx_opts *o, struct wf_ctx **out)
{
	struct wf_ctx_opts d = { .size = sizeof(d) };
	const struct wf_ops *ops;
	int ret;

	if (!o || !out)
		return -EINVAL;
	d.backend = OPT(o, backend, 0);
	d.cq_depth = OPT(o, cq_depth, WF_DEFAULT_CQ_DEPTH);
	d.flags = OPT(o, flags, 0);
	if (d.flags & ~(uint32_t)WF_CTX_BATCH)
		return -EINVAL;
	ops = backend_ops(d.backend);
	if (!ops || !ops->ctx_create)
		return -EPROTONOSUPPORT;
	ret = ops->ctx_create(&d, out);
	if (ret)
		return ret;
	(*out)->ops = ops;
	(*out)->opts = d;
	return 0;
}

void wf_ctx_destroy(struct wf_ctx *ctx)
{
	if (ctx)
		ctx->ops->ctx_destroy(ctx);
}

int wf_ctx_fd(const struct wf_ctx *ctx)
{
	return ctx->ops->ctx_fd(ctx);
}

int wf_ctx_arm(struct wf_ctx *ctx)
{
	return ctx->ops->ctx_arm(ctx);
}

/* One writer (the ctx's thread), readers anywhere: a plain add, stored
 * whole (no locked instruction on the data path). */
#define COUNT(ctx, field, n) \
	__atomic_store_n(&(ctx)->counts.field, (ctx)->counts.field + (n), \
			 __ATOMIC_RELAXED)

void wf_ctx_counts(const struct wf_ctx *ctx, struct wf_fab_counts *out)
{
	out->sends = __atomic_load_n(&ctx->counts.sends, __ATOMIC_RELAXED);
	out->writes = __atomic_load_n(&ctx->counts.writes, __ATOMIC_RELAXED);
	out->reads = __atomic_load_n(&ctx->counts.reads, __ATOMIC_RELAXED);
	out->cqes = __atomic_load_n(&ctx->counts.cqes, __ATOMIC_RELAXED);
	out->recvs = __atomic_load_n(&ctx->counts.recvs, __ATOMIC_RELAXED);
}

/* Count what a poll returned (n > 0). */
static int counted(struct wf_ctx *ctx, const struct wf_cqe *cqes, int n)
{
	int recvs = 0;

	if (n <= 0)
		return n;
	for (int i = 0; i < n; i++)
		recvs += cqes[i].op == WF_CQE_RECV_MSG || cqes[i].op == WF_CQE_RECV_IMM;
	COUNT(ctx, cqes, (uint64_t)n);
	COUNT(ctx, recvs, (uint64_t)recvs);
	return n;
}

int wf_poll(struct wf_ctx *ctx, struct wf_cqe *cqes, int max)
{
	if (max <= 0)
		return -EINVAL;
	return counted(ctx, cqes, ctx->ops->poll(ctx, cqes, max));
}

int wf_poll_wait(struct wf_ctx *ctx, struct wf_cqe *cqes, int max,
		 int timeout_ms)
{
	struct pollfd p;
	int n;

	if (max <= 0)
		return -EINVAL;
	if (ctx->ops->poll_wait)
		return counted(ctx, cqes,
			       ctx->ops->poll_wait(ctx, cqes, max, timeout_ms));
	n = wf_poll(ctx, cqes, max);
	if (n || !timeout_ms)
		return n;
	n = wf_ctx_arm(ctx);
	if (n < 0)
		return n;
	n = wf_poll(ctx, cqes, max);    /* what raced in before the arm */
	if (n)
		return n;
	p = (struct pollfd){ .fd = wf_ctx_fd(ctx), .events = POLLIN };
	if (poll(&p, 1, timeout_ms) < 0 && errno != EINTR)
		return -errno;
	return wf_poll(ctx, cqes, max);
}

int wf_flush(struct wf_ctx *ctx)
{
	return ctx->ops->flush ? ctx->ops->flush(ctx) : 0;
}

void wf_ctx_quiet(struct wf_ctx *ctx)
{
	if (ctx->ops->quiet)
		ctx->ops->quiet(ctx);
}

int wf_listen(struct wf_ctx *ctx, const char *addr, const struct wf_ep_opts *o,
	      struct wf_listener **out)
{
	struct wf_ep_opts d;
	int ret;

	ret = ep_prepare(ctx, addr, out, o, &d);
	if (ret)
		return ret;
	ret = ctx->ops->listen(ctx, addr, &d, out);
	if (ret)
		return ret;
	(*out)->ctx = ctx;
	(*out)->opts = d;
	return 0;
}

int wf_listener_addr(const struct wf_listener *l, char *buf, size_t len)
{
	return l->ctx->ops->listener_addr(l, buf, len);
}

int wf_accept(struct wf_listener *l, void *user, struct wf_ep **out)
{
	int ret = l->ctx->ops->accept(l, out);

	if (ret)
		return ret;
	(*out)->ctx = l->ctx;
	(*out)->user = user;
	return 0;
}

void wf_listener_destroy(struct wf_listener *l)
{
	if (l)
		l->ctx->ops->listener_destroy(l);
}

int wf_connect(struct wf_ctx *ctx, const char *addr, const struct wf_ep_opts *o,
	       struct wf_ep **out)
{
	struct wf_ep_opts d;
	int ret;

	ret = ep_prepare(ctx, addr, out, o, &d);
	if (ret)
		return ret;
	ret = ctx->ops->connect(ctx, addr, &d, out);
	if (ret)
		return ret;
	(*out)->ctx = ctx;
	(*out)->user = d.user;
	return 0;
}

int wf_connect_start(struct wf_ctx *ctx, const char *addr,
		     const struct wf_ep_opts *o, struct wf_ep **out)
{
	struct wf_ep_opts d;
	int ret;

	ret = ep_prepare(ctx, addr, out, o, &d);
	if (ret)
		return ret;
	if (ctx->ops->connect_start)
		ret = ctx->ops->connect_start(ctx, addr, &d, out);
	else
		ret = ctx->ops->connect(ctx, addr, &d, out);
	if (ret && ret != -EINPROGRESS)
		return ret;
	(*out)->ctx = ctx;
	(*out)->user = d.user;
	return ret;
}

int wf_ep_close(struct wf_ep *ep)
{
	return ep->ctx->ops->ep_close(ep);
}

void wf_ep_destroy(struct wf_ep *ep)
{
	if (ep)
		ep->ctx->ops->ep_destroy(ep);
}

void *wf_ep_user(const struct wf_ep *ep)
{
	return ep->user;
}

int wf_ep_peer(const struct wf_ep *ep, char *buf, size_t len)
{
	if (!ep || !buf || !len)
		return -EINVAL;
	if (!ep->ctx->ops->ep_peer)
		return -EOPNOTSUPP;
	return ep->ctx->ops->ep_peer(ep, buf, len);
}

int wf_mr_reg(struct wf_ctx *ctx, void *addr, size_t len, unsigned access,
	      struct wf_mr **out)
{
	int ret;

	if (!ctx || !addr || !len || !out ||
	    (access & ~(unsigned)(WF_ACCESS_REMOTE_WRITE | WF_ACCESS_REMOTE_READ)))
		return -EINVAL;
	ret = ctx->ops->mr_reg(ctx, addr, len, access, out);
	if (ret)
		return ret;
	(*out)->ctx = ctx;
	(*out)->addr = addr;
	(*out)->len = len;
	(*out)->access = access;
	return 0;
}

void wf_mr_dereg(struct wf_mr *mr)
{
	if (mr)
		mr->ctx->ops->mr_dereg(mr);
}

void *wf_mr_addr(const struct wf_mr *mr)
{
	return mr->addr;
}

int wf_mr_bind(struct wf_mr *mr, const struct wf_ep *ep)
{
	if (!mr || (ep && ep->ctx != mr->ctx))
		return -EINVAL;
	if (!mr->ctx->ops->mr_bind)
		return -EOPNOTSUPP;
	return mr->ctx->ops->mr_bind(mr, ep);
}

int wf_mr_rkey(const struct wf_mr *mr, const struct wf_ep *ep, uint64_t off,
	       uint32_t len, struct wf_rkey *out)
{
	if (off > mr->len || len > mr->len - off)
		return -ERANGE;
	return mr->ctx->ops->mr_rkey(mr, ep, off, len, out);
}

/* Bounds are checked here once for every backend: the local range against
 * the local region, the remote one against what the rkey describes (the
 * peer checks again against its region: an rkey is only a claim). */
static int local_ok(const struct wf_mr *mr, uint64_t loff, uint32_t len)
{
	return loff <= mr->len && len <= mr->len - loff;
}

static int remote_ok(const struct wf_rkey *rkey, uint64_t roff, uint32_t len)
{
	return rkey && roff <= rkey->len && len <= rkey->len - roff;
}

int wf_write_imm(struct wf_ep *ep, const struct wf_mr *mr, uint64_t loff,
		 uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
		 uint32_t imm, uint64_t wr_id)
{
	int ret;

	if (!local_ok(mr, loff, len) || !remote_ok(rkey, roff, len))
		return -ERANGE;
	ret = ep->ctx->ops->write_imm(ep, mr, loff, len, rkey, roff, imm, wr_id);
	if (!ret)
		COUNT(ep->ctx, writes, 1);
	return ret;
}

int wf_write(struct wf_ep *ep, const struct wf_mr *mr, uint64_t loff,
	     uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
	     uint64_t wr_id)
{
	int ret;

	if (!local_ok(mr, loff, len) || !remote_ok(rkey, roff, len))
		return -ERANGE;
	if (!ep->ctx->ops->write)
		return -EOPNOTSUPP;
	ret = ep->ctx->ops->write(ep, mr, loff, len, rkey, roff, wr_id);
	if (!ret)
		COUNT(ep->ctx, writes, 1);
	return ret;
}

int wf_read(struct wf_ep *ep, const struct wf_mr *mr, uint64_t loff,
	    uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
	    uint64_t wr_id)
{
	int ret;

	if (!local_ok(mr, loff, len) || !remote_ok(rkey, roff, len))
		return -ERANGE;
	ret = ep->ctx->ops->read(ep, mr, loff, len, rkey, roff, wr_id);
	if (!ret)
		COUNT(ep->ctx, reads, 1);
	return ret;
}

int wf_send(struct wf_ep *ep, const void *msg, uint32_t len, uint64_t wr_id)
{
	int ret = ep->ctx->ops->send(ep, msg, len, wr_id);

	if (!ret)
		COUNT(ep->ctx, sends, 1);
	return ret;
}

/* "SCHEME:HOST:PORT" or, with port false, "SCHEME:HOST" (v6 in []). */
static int inet_str(const struct sockaddr *sa, const char *scheme, bool port,
		    char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	bool v6 = sa->sa_family == AF_INET6;
	unsigned p;
	int n;

	if (v6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		p = ntohs(s6->sin6_port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		p = ntohs(s4->sin_port);
	}
	if (port)
		n = snprintf(buf, len, v6 ? "%s:[%s]:%u" : "%s:%s:%u", scheme,
			     host, p);
	else
		n = snprintf(buf, len, v6 ? "%s:[%s]" : "%s:%s", scheme, host);
	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	return 0;
}

int wf_inet_addr_str(const struct sockaddr *sa, const char *scheme, char *buf,
		     size_t len)
{
	return inet_str(sa, scheme, true, buf, len);
}

int wf_inet_host_str(const struct sockaddr *sa, const char *scheme, char *buf,
		     size_t len)
{
	return inet_str(sa, scheme, false, buf, len);
}

const char *wf_cqe_op_name(uint32_t op)
{
	static const char *const names[] = {
		[WF_CQE_WRITE_IMM] = "write_imm", [WF_CQE_READ] = "read",
		[WF_CQE_SEND] = "send", [WF_CQE_RECV_IMM] = "recv_imm",
		[WF_CQE_RECV_MSG] = "recv_msg", [WF_CQE_ACCEPT] = "accept",
		[WF_CQE_DISCONNECT] = "disconnect", [WF_CQE_WRITE] = "write",
		[WF_CQE_CONNECT] = "connect",
	};
	if (op < sizeof(names) / sizeof(names[0]) && names[op])
		return names[op];
	return "unknown";
}

void wf_rkey_encode(const struct wf_rkey *k, struct wf_wire_rkey *w)
{
	w->addr = htole64(k->addr);
	w->key = htole32(k->key);
	w->len = htole32(k->len);
}

void wf_rkey_decode(const struct wf_wire_rkey *w, struct wf_rkey *k)
{
	k->addr = le64toh(w->addr);
	k->key = le32toh(w->key);
	k->len = le32toh(w->len);
}
