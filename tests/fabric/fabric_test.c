/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tests/fabric/fabric_test.h"

const char *ft_backend_name(void)
{
	const char *b = getenv("WEFT_FABRIC");

	return b && *b ? b : "tcp";
}

bool ft_is_verbs(void)
{
	return !strcmp(ft_backend_name(), "verbs");
}

uint32_t ft_backend(void)
{
	return ft_is_verbs() ? WF_BACKEND_VERBS : WF_BACKEND_TCP;
}

int ft_wait_ms(void)
{
	return ft_is_verbs() ? 30000 : 10000;
}

int64_t ft_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ft_listen_addr(char *buf, size_t len)
{
	static unsigned seq;    /* per test process: tests run one at a time */
	const char *b = ft_backend_name(), *a = getenv("WEFT_FABRIC_ADDR");

	if (!strcmp(b, "unix")) {
		if (a && *a)
			snprintf(buf, len, "%s-%d-%u", a, (int)getpid(), seq++);
		else
			snprintf(buf, len, "unix:/tmp/weft-ft-%d-%u.sock",
				 (int)getpid(), seq++);
	} else if (!strcmp(b, "tcp")) {
		snprintf(buf, len, "%s", a && *a ? a : "tcp:127.0.0.1:0");
	} else {
		cr_assert(a && *a, "WEFT_FABRIC=verbs needs WEFT_FABRIC_ADDR");
		snprintf(buf, len, "%s", a);
	}
}

/* WEFT_FABRIC_BATCH=1: every ctx of the suite posts in batches
 * (WF_CTX_BATCH), so the same cases check that mode. */
uint32_t ft_ctx_flags(void)
{
	const char *b = getenv("WEFT_FABRIC_BATCH");

	return b && !strcmp(b, "1") ? WF_CTX_BATCH : 0;
}

struct wf_ctx *ft_ctx(uint32_t cq_depth)
{
	struct wf_ctx_opts o = { .size = sizeof(o), .backend = ft_backend(),
				 .cq_depth = cq_depth, .flags = ft_ctx_flags() };
	struct wf_ctx *ctx = NULL;
	int ret = wf_ctx_create(&o, &ctx);

	cr_assert_eq(ret, 0, "wf_ctx_create(%s): %s", ft_backend_name(), strerror(-ret));
	return ctx;
}

struct wf_ep_opts ft_opts(uint32_t send_depth, uint32_t recv_depth, uint32_t msg_size)
{
	struct wf_ep_opts o = { .size = sizeof(o), .send_depth = send_depth,
				.recv_depth = recv_depth, .msg_size = msg_size,
				.timeout_ms = ft_is_verbs() ? 20000 : 5000 };
	return o;
}

int ft_poll_into(struct wf_ctx *ctx, struct ft_got *g)
{
	struct wf_cqe c[64];
	int n = wf_poll(ctx, c, 64);

	cr_assert_geq(n, 0, "wf_poll: %s", strerror(-n));
	for (int i = 0; i < n; i++) {
		cr_assert_lt(g->n, FT_MAXC, "too many completions");
		if (c[i].op == WF_CQE_RECV_MSG && g->n < FT_MSGS && c[i].len <= FT_MSGCAP) {
			memcpy(g->msg[g->n], c[i].msg, c[i].len);
			c[i].msg = g->msg[g->n];
		} else if (c[i].op == WF_CQE_RECV_MSG) {
			c[i].msg = NULL;        /* not kept past this poll */
		}
		g->c[g->n++] = c[i];
	}
	return n;
}

void ft_pump(struct wf_ctx *s, struct ft_got *gs, int ns,
	     struct wf_ctx *c, struct ft_got *gc, int nc, int ms)
{
	int64_t end = ft_now_ms() + ms;

	for (;;) {
		bool ok = (!gs || gs->n >= ns) && (!gc || gc->n >= nc);

		if (ok)
			return;
		cr_assert_lt(ft_now_ms(), end, "timed out: server %d/%d client %d/%d",
			     gs ? gs->n : 0, ns, gc ? gc->n : 0, nc);
		if (s)
			ft_poll_into(s, gs);
		if (c)
			ft_poll_into(c, gc);
	}
}

int ft_count(const struct ft_got *g, uint32_t op)
{
	int n = 0;

	for (int i = 0; i < g->n; i++)
		n += g->c[i].op == op;
	return n;
}

const struct wf_cqe *ft_find(const struct ft_got *g, uint32_t op, int nth)
{
	for (int i = 0; i < g->n; i++)
		if (g->c[i].op == op && nth-- == 0)
			return &g->c[i];
	return NULL;
}

struct acceptor {
	struct ft_pair *p;
	int             want;
	struct wf_ep  **eps;
	int             got;
	int             err;
	int             ms;
};

/* The server side of connect: poll and accept until `want` endpoints. */
static void *accept_thread(void *arg)
{
	struct acceptor *a = arg;
	int64_t end = ft_now_ms() + a->ms;

	while (a->got < a->want && ft_now_ms() < end) {
		struct wf_cqe c[16];
		struct wf_ep *ep;
		int n = wf_poll(a->p->sctx, c, 16);

		if (n < 0) {
			a->err = n;
			return NULL;
		}
		while (a->got < a->want) {
			int k = wf_accept(a->p->l, (void *)(uintptr_t)(a->got + 1), &ep);

			if (k == -EAGAIN)
				break;
			if (k) {
				a->err = k;     /* e.g. -ENOSPC: the test wants it */
				return NULL;
			}
			a->eps[a->got++] = ep;
		}
		if (!n)
			usleep(100);
	}
	if (a->got < a->want)
		a->err = -ETIMEDOUT;
	return NULL;
}

void ft_pair_open(struct ft_pair *p, const struct wf_ep_opts *so,
		  const struct wf_ep_opts *co)
{
	struct acceptor a = { .p = p, .want = 1, .eps = &p->sep, .ms = ft_wait_ms() };
	char addr[256];
	pthread_t t;
	int ret;

	if (!p->sctx)
		p->sctx = ft_ctx(0);
	if (!p->cctx)
		p->cctx = ft_ctx(0);
	ft_listen_addr(addr, sizeof(addr));
	ret = wf_listen(p->sctx, addr, so, &p->l);
	cr_assert_eq(ret, 0, "wf_listen(%s): %s", addr, strerror(-ret));
	cr_assert_eq(wf_listener_addr(p->l, p->addr, sizeof(p->addr)), 0);
	cr_assert_eq(pthread_create(&t, NULL, accept_thread, &a), 0);
	ret = wf_connect(p->cctx, p->addr, co, &p->cep);
	pthread_join(t, NULL);
	cr_assert_eq(ret, 0, "wf_connect(%s): %s", p->addr, strerror(-ret));
	cr_assert_eq(a.err, 0, "accept: %s", strerror(-a.err));
	cr_assert_not_null(p->sep);
}

void ft_pair_close(struct ft_pair *p)
{
	wf_ep_destroy(p->cep);
	wf_ep_destroy(p->sep);
	wf_listener_destroy(p->l);
	wf_ctx_destroy(p->cctx);
	wf_ctx_destroy(p->sctx);
	memset(p, 0, sizeof(*p));
}

int ft_accept_many(struct ft_pair *p, struct wf_ep **eps, int want,
		   struct wf_ep **ceps, const struct wf_ep_opts *co)
{
	struct acceptor a = { .p = p, .want = want, .eps = eps, .ms = ft_wait_ms() * 2 };
	pthread_t t;
	int ret = 0;

	cr_assert_eq(pthread_create(&t, NULL, accept_thread, &a), 0);
	for (int i = 0; i < want && !ret; i++)
		ret = wf_connect(p->cctx, p->addr, co, &ceps[i]);
	pthread_join(t, NULL);
	return ret ? ret : a.err;
}

void *ft_xalloc(size_t n)
{
	void *p = NULL;

	cr_assert_eq(posix_memalign(&p, 4096, n), 0);
	memset(p, 0, n);
	return p;
}

struct wf_mr *ft_reg(struct wf_ctx *ctx, void *buf, size_t len, unsigned acc)
{
	struct wf_mr *mr = NULL;
	int ret = wf_mr_reg(ctx, buf, len, acc, &mr);

	cr_assert_eq(ret, 0, "wf_mr_reg: %s", strerror(-ret));
	return mr;
}

void ft_fill(void *buf, size_t len, uint32_t seed)
{
	uint8_t *b = buf;

	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 8));
}
