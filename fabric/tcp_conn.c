/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tcp backend, set-up: the ctx, listeners and the hello handshake (one
 * struct wf_tcp_hello each way, fabric/tcp_frame.h), wf_connect, wf_accept,
 * wf_tcp_ep_adopt, and each endpoint's allocation and destruction.  The
 * framing, the data path and wf_poll are in tcp.c (its top comment tells
 * how credits work); the structs both share are in tcp_int.h.
 *
 * Credits are all sized here, at connect/accept: an endpoint preallocates
 * everything its data path will use (ep_alloc) and reserves send_depth +
 * recv_depth + 1 (its DISCONNECT) entries of the ctx's cq_depth, a
 * listener one (its ACCEPT).
 */
#define _GNU_SOURCE
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
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fabric/tcp_int.h"

#define ACCEPT_BUDGET 16        /* new sockets per listener event */
#define WAITING_MAX   256       /* handshaking + unaccepted per listener:
                                 * past it the oldest socket still without
                                 * a hello is closed for the newcomer (or
                                 * the newcomer, if all are handshaken), so
                                 * silent peers cannot pile up fds */

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

/* ---- endpoint life ---- */

static void ep_free(struct tcp_ep *ep)
{
	if (!ep)
		return;
	if (ep->fd >= 0) {
		tcp_ep_epoll_del(ep);
		close(ep->fd);
	}
	free(ep->ops);
	free(ep->op_free);
	free(ep->op_msgs);
	free(ep->tx);
	free(ep->msgs);
	free(ep->rxb);
	free(ep->conn_to);
	tcp_txq_unlink(ep);
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
void tcp_ep_hello_rx(struct tcp_ep *ep)
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
	tcp_ep_epoll_del(ep);
	if (!l->accept_queued) {
		l->accept_queued = true;
		tcp_cq_push(l->ctx, NULL, WF_CQE_ACCEPT, 0, 0, 0, 0, NULL, -1);
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
	tcp_ep_epoll_del(ep);
	close(ep->fd);
	ep->fd = -1;
	ep->state = EP_DEAD;
	ep->lnext = c->reap;
	c->reap = ep;
}

void tcp_reap_free(struct tcp_ctx *c)
{
	while (c->reap) {
		struct tcp_ep *ep = c->reap;

		c->reap = ep->lnext;
		ep_free(ep);
	}
}

struct tcp_addr;
static int sock_connect(const struct tcp_addr *a, int *fdp);
static void conn_done(struct tcp_ep *ep, int err);
static void conn_next(struct tcp_ep *ep, int ret);

/* Close every socket whose hello is overdue, fail every connect past its
 * deadline, retry AF_UNIX connects the backlog refused; note the next
 * deadline. */
void tcp_hello_sweep(struct tcp_ctx *c, int64_t now)
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
	for (struct tcp_ep *ep = c->conning, *next; ep; ep = next) {
		next = ep->lnext;       /* conn_done unlinks ep */
		if (ep->hello_deadline <= now) {
			conn_done(ep, -ETIMEDOUT);
			continue;
		}
		if (ep->conn_phase == CP_AGAIN) {
			conn_next(ep, sock_connect(ep->conn_to, &ep->fd));
			if (ep->state == EP_CONNECTING &&
			    ep->conn_phase == CP_AGAIN)
				due = now;
		}
		if (ep->state == EP_CONNECTING && ep->hello_deadline < due)
			due = ep->hello_deadline;
	}
	c->hello_due = due;
	tcp_reap_free(c);
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

/* Probe an idle peer after s seconds, then every s / 3, give up after 3
 * unanswered probes: a host that vanished (no FIN, no RST) ends its
 * connections instead of holding them forever. */
static void keepalive(int fd, uint32_t s)
{
	int on = 1, idle = (int)s, intvl = s >= 3 ? (int)s / 3 : 1, cnt = 3;

	if (!s)
		return;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

void tcp_listener_rx(struct tcp_listener *l)
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
		if (!l->path[0]) {
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			keepalive(fd, l->base.opts.keepalive_s);
		}
		ep = ep_new(l->ctx, fd, &l->base.opts);
		if (!ep) {
			close(fd);
			continue;
		}
		ep->state = EP_HELLO;
		if (tcp_ep_epoll_add(ep)) {
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

struct tcp_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	int family;
	bool is_unix;
};

static int addr_parse(const char *s, bool passive, struct tcp_addr *a)
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

int tcp_listen(struct wf_ctx *ctx, const char *addr,
	       const struct wf_ep_opts *o, struct wf_listener **out)
{
	struct tcp_ctx *c = tctx(ctx);
	struct epoll_event e = { .events = EPOLLIN };
	struct tcp_listener *l;
	struct tcp_addr a;
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

int tcp_listener_addr(const struct wf_listener *lb, char *buf, size_t len)
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

int tcp_accept(struct wf_listener *lb, struct wf_ep **out)
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
		ret = tcp_ep_epoll_add(ep);
	if (ret) {
		l->ctx->cq_reserved -= ep_budget(&ep->opts);
		ep_free(ep);
		return ret;
	}
	tcp_live_add(ep);
	*out = &ep->base;
	return 0;
}

void tcp_listener_destroy(struct wf_listener *lb)
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
	tcp_cq_purge(l->ctx, NULL, l);
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

/* A socket for a, connecting: 0 when connected at once, -EINPROGRESS
 * (in progress), -EAGAIN (AF_UNIX backlog full: try connect() again later)
 * or another -errno with the socket closed. */
static int sock_connect(const struct tcp_addr *a, int *fdp)
{
	int fd = *fdp, one = 1;

	if (fd < 0) {
		fd = socket(a->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (!a->is_unix)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		*fdp = fd;
	}
	for (;;) {
		if (!connect(fd, (const struct sockaddr *)&a->ss, a->len))
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == EINPROGRESS || (errno == EAGAIN && a->is_unix))
			return -errno;
		break;
	}
	close(fd);
	*fdp = -1;
	return -errno;
}

/* The listener's answer to our hello: 0 (ACCEPT, *h decoded) or -errno. */
static int hello_answer(const void *raw, struct wf_tcp_hello *h)
{
	int ret = -hello_parse(raw, h);

	if (!ret && h->kind == WF_TCP_REFUSE)
		return h->status > 0 ? -h->status : -ECONNREFUSED;
	if (!ret && h->kind != WF_TCP_ACCEPT)
		return -EPROTO;
	return ret;
}

/* An endpoint on connected socket fd after the listener's hello h: its
 * buffers, LIVE and in epoll (the caller has reserved its budget). */
static int ep_go_live(struct tcp_ep *ep, const struct wf_tcp_hello *h)
{
	int ret = ep_alloc(ep, h->send_depth, h->msg_size);

	ep->reserved = true;
	ep->state = EP_LIVE;
	if (!ret)
		ret = tcp_ep_epoll_add(ep);
	if (ret)
		return ret;
	tcp_live_add(ep);
	return 0;
}

/* What both connects check first; then the endpoint's budget is
 * reserved. */
static int connect_prepare(struct tcp_ctx *c, const char *addr,
			   const struct wf_ep_opts *o, struct tcp_addr *a)
{
	int ret = addr_parse(addr, false, a);

	if (ret)
		return ret;
	if (o->send_depth > WF_TCP_MAX_DEPTH || o->recv_depth > WF_TCP_MAX_DEPTH ||
	    o->msg_size > WF_TCP_MAX_MSG)
		return -EINVAL;
	return reserve(c, ep_budget(o));
}

int tcp_connect(struct wf_ctx *ctx, const char *addr,
		const struct wf_ep_opts *o, struct wf_ep **out)
{
	struct tcp_ctx *c = tctx(ctx);
	int64_t deadline = wf_clock_ms(CLOCK_MONOTONIC) + o->timeout_ms;
	struct wf_tcp_hello h, raw;
	struct tcp_ep *ep;
	struct tcp_addr a;
	int fd = -1, ret;

	ret = connect_prepare(c, addr, o, &a);
	if (ret)
		return ret;
	for (;;) {
		ret = sock_connect(&a, &fd);
		if (ret == -EINPROGRESS) {
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
		if (ret == -EAGAIN && wf_clock_ms(CLOCK_MONOTONIC) < deadline) {
			/* AF_UNIX backlog full: the listener is slow. */
			poll(NULL, 0, 1);
			continue;
		}
		if (ret)
			goto out_close;
		break;
	}
	hello_fill(&raw, WF_TCP_HELLO, o, 0);
	ret = io_full(fd, &raw, sizeof(raw), true, deadline);
	if (!ret)
		ret = io_full(fd, &raw, sizeof(raw), false, deadline);
	if (!ret)
		ret = hello_answer(&raw, &h);
	if (ret)
		goto out_close;
	ep = ep_new(c, fd, o);
	if (!ep) {
		ret = -ENOMEM;
		goto out_close;
	}
	ret = ep_go_live(ep, &h);
	if (ret) {
		ep_free(ep);    /* closes fd */
		goto out_unreserve;
	}
	*out = &ep->base;
	return 0;

out_close:
	if (fd >= 0)
		close(fd);
out_unreserve:
	c->cq_reserved -= ep_budget(o);
	return ret;
}

/* ---- connect without blocking ---- */

static void conning_unlink(struct tcp_ep *ep)
{
	struct tcp_ep **pp;

	for (pp = &ep->ctx->conning; *pp; pp = &(*pp)->lnext)
		if (*pp == ep) {
			*pp = ep->lnext;
			break;
		}
	ep->lnext = NULL;
}

/* The attempt is over: CONNECT with status err (0: LIVE). */
static void conn_done(struct tcp_ep *ep, int err)
{
	conning_unlink(ep);
	if (err) {
		tcp_ep_epoll_del(ep);
		if (ep->fd >= 0)
			close(ep->fd);
		ep->fd = -1;
		ep->state = EP_DEAD;
	}
	tcp_cq_push(ep->ctx, ep, WF_CQE_CONNECT, err, 0, 0, 0, NULL, -1);
}

/* The socket is connected: send our hello, wait for the listener's. */
static void conn_hello(struct tcp_ep *ep)
{
	struct wf_tcp_hello raw;
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = &ep->h };
	ssize_t n;

	hello_fill(&raw, WF_TCP_HELLO, &ep->opts, 0);
	/* A fresh socket's buffer takes 32 bytes whole. */
	n = send(ep->fd, &raw, sizeof(raw), MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n != (ssize_t)sizeof(raw)) {
		conn_done(ep, n < 0 ? -errno : -EIO);
		return;
	}
	ep->conn_phase = CP_HELLO;
	if (epoll_ctl(ep->ctx->epfd, EPOLL_CTL_MOD, ep->fd, &e)) {
		conn_done(ep, -errno);
		return;
	}
	ep->events = EPOLLIN;
}

/* After connect() said ret: wait for the socket, or say hello now. */
static void conn_next(struct tcp_ep *ep, int ret)
{
	if (ret == -EAGAIN) {
		/* Not in epoll: the sweep tries again within a tick. */
		ep->conn_phase = CP_AGAIN;
		ep->ctx->hello_due = wf_clock_ms(CLOCK_MONOTONIC_COARSE);
		return;
	}
	if (ret && ret != -EINPROGRESS) {
		conn_done(ep, ret);
		return;
	}
	free(ep->conn_to);
	ep->conn_to = NULL;
	ep->conn_phase = CP_SOCKET;
	if (!ep->in_epoll && tcp_ep_epoll_add(ep)) {
		conn_done(ep, -errno);
		return;
	}
	if (!ret)
		conn_hello(ep);
}

void tcp_ep_connect_ev(struct tcp_ep *ep, uint32_t events)
{
	struct wf_tcp_hello h;
	ssize_t n;
	int ret;

	if (ep->conn_phase == CP_SOCKET) {
		socklen_t sl = sizeof(ret);

		if (getsockopt(ep->fd, SOL_SOCKET, SO_ERROR, &ret, &sl) || ret) {
			conn_done(ep, ret ? -ret : -errno);
			return;
		}
		if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
			conn_hello(ep);
		return;
	}
	if (ep->conn_phase != CP_HELLO)
		return;
	/* Exactly the hello: what the listener sends next is the data
	 * path's. */
	n = recv(ep->fd, ep->rx_hdr + ep->rx_hdr_got, HELLO_LEN - ep->rx_hdr_got,
		 MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_done(ep, n < 0 ? -errno : -ECONNRESET);
		return;
	}
	ep->rx_hdr_got += (uint32_t)n;
	if (ep->rx_hdr_got < HELLO_LEN)
		return;
	ep->rx_hdr_got = 0;
	ret = hello_answer(ep->rx_hdr, &h);
	if (ret) {
		conn_done(ep, ret);
		return;
	}
	tcp_ep_epoll_del(ep);
	ret = ep_go_live(ep, &h);
	if (ret) {
		/* Not on the live list yet (tcp_live_add comes last): a
		 * failed attempt, destroyed by the caller after CONNECT. */
		ep->state = EP_CONNECTING;
		conn_done(ep, ret);
		return;
	}
	conn_done(ep, 0);
}

int tcp_connect_start(struct wf_ctx *ctx, const char *addr,
		      const struct wf_ep_opts *o, struct wf_ep **out)
{
	struct tcp_ctx *c = tctx(ctx);
	struct tcp_ep *ep;
	struct tcp_addr a;
	int fd = -1, ret;

	ret = connect_prepare(c, addr, o, &a);
	if (ret)
		return ret;
	/* What fails at once (no listener on a unix path, a refused
	 * loopback port) fails here, with nothing made. */
	ret = sock_connect(&a, &fd);
	if (ret && ret != -EINPROGRESS && ret != -EAGAIN)
		goto out_unreserve;
	ep = ep_new(c, fd, o);
	if (ep && ret == -EAGAIN) {
		ep->conn_to = malloc(sizeof(a));
		if (ep->conn_to)
			memcpy(ep->conn_to, &a, sizeof(a));
	}
	if (!ep || (ret == -EAGAIN && !ep->conn_to)) {
		if (ep)
			ep_free(ep);    /* closes fd */
		else
			close(fd);
		ret = -ENOMEM;
		goto out_unreserve;
	}
	/* Reserved from here: the CONNECT completion and later the data
	 * path use the same entries. */
	ep->reserved = true;
	ep->state = EP_CONNECTING;
	ep->hello_deadline = wf_clock_ms(CLOCK_MONOTONIC_COARSE) + o->timeout_ms;
	if (ep->hello_deadline < c->hello_due)
		c->hello_due = ep->hello_deadline;
	ep->lnext = c->conning;
	c->conning = ep;
	conn_next(ep, ret);
	*out = &ep->base;
	return -EINPROGRESS;

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
		ret = tcp_ep_epoll_add(ep);
	if (ret) {
		ep->fd = -1;    /* the caller keeps its fd on failure */
		ep_free(ep);
		c->cq_reserved -= ep_budget(o);
		return ret;
	}
	tcp_live_add(ep);
	*out = &ep->base;
	return 0;
}

int tcp_ep_peer(const struct wf_ep *e, char *buf, size_t len)
{
	const struct tcp_ep *ep = (const struct tcp_ep *)e;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (ep->fd < 0 || ep->state == EP_CONNECTING)
		return -ENOTCONN;
	if (getpeername(ep->fd, (struct sockaddr *)&ss, &sl))
		return -errno;
	if (ss.ss_family == AF_UNIX) {
		struct ucred cr;
		socklen_t cl = sizeof(cr);
		int n;

		if (getsockopt(ep->fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl))
			return -errno;
		n = snprintf(buf, len, "unix:uid=%u", (unsigned)cr.uid);
		return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
	}
	return wf_inet_host_str((struct sockaddr *)&ss, "tcp", buf, len);
}

void tcp_ep_destroy(struct wf_ep *e)
{
	struct tcp_ep *ep = tep(e);
	struct tcp_ctx *c = ep->ctx;

	tcp_held_unlink(ep);
	if (ep->state == EP_LIVE)
		tcp_live_del(ep);
	if (ep->state == EP_CONNECTING)
		conning_unlink(ep);
	tcp_cq_purge(c, ep, NULL);
	if (ep->reserved)
		c->cq_reserved -= ep_budget(&ep->opts);
	ep_free(ep);
}

/* ---- ctx ---- */

int tcp_ctx_create(const struct wf_ctx_opts *o, struct wf_ctx **out)
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

void tcp_ctx_destroy(struct wf_ctx *ctx)
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

int tcp_ctx_fd(const struct wf_ctx *ctx)
{
	return ((const struct tcp_ctx *)ctx)->epfd;
}
