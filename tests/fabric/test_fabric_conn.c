/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fabric conformance suite, connections: connect/accept/close, a refused
 * connect, completion-queue limits on the connecting and the accepting
 * side, 64 endpoints at once; wf_connect_start: completes in wf_poll,
 * never blocks the ctx (a silent peer times out in a CONNECT completion
 * while live endpoints go on), refused at once.
 *
 * The same cases for every backend (see fabric_test.h for the environment
 * that picks it); the upper layers rely on exactly what is asserted here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "tests/fabric/fabric_test.h"

static struct ft_got gs, gc;    /* one test per process (Criterion forks) */

Test(fabric, connect_accept_close)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(8, 8, 128);

	o.user = &p;
	ft_pair_open(&p, &o, &o);
	cr_assert_eq(wf_ep_user(p.cep), &p, "connect keeps opts.user");
	cr_assert_eq(wf_ep_user(p.sep), (void *)1, "accept sets its user");
	cr_assert_str_eq(wf_cqe_op_name(WF_CQE_DISCONNECT), "disconnect");

	/* Nothing else is pending on the listener. */
	struct wf_ep *extra;
	cr_assert_eq(wf_accept(p.l, NULL, &extra), -EAGAIN);

	cr_assert_eq(wf_ep_close(p.cep), 0);
	ft_pump(p.sctx, &gs, 1, p.cctx, &gc, 1, ft_wait_ms());
	cr_assert_eq(gc.c[0].op, WF_CQE_DISCONNECT);
	cr_assert_eq(gc.c[0].ep, p.cep);
	cr_assert_eq(gc.c[0].status, 0, "local close: status 0");
	cr_assert_eq(gs.c[0].op, WF_CQE_DISCONNECT);
	cr_assert_eq(gs.c[0].ep, p.sep);
	cr_assert_lt(gs.c[0].status, 0, "peer gone: an error");
	/* A closed endpoint refuses new work. */
	cr_assert_eq(wf_send(p.cep, "x", 1, 1), -ENOTCONN);
	ft_pair_close(&p);
}

Test(fabric, connect_refused)
{
	struct wf_ctx *ctx = ft_ctx(0);
	struct wf_listener *l;
	struct wf_ep *ep;
	struct wf_ep_opts o = ft_opts(4, 4, 64);
	char addr[256], real[256];

	/* Listen, learn the address, close: nobody is there any more. */
	ft_listen_addr(addr, sizeof(addr));
	cr_assert_eq(wf_listen(ctx, addr, &o, &l), 0);
	cr_assert_eq(wf_listener_addr(l, real, sizeof(real)), 0);
	wf_listener_destroy(l);
	o.timeout_ms = 2000;
	cr_assert_lt(wf_connect(ctx, real, &o, &ep), 0);
	cr_assert_eq(wf_connect(ctx, "bogus:1", &o, &ep) < 0, 1);
	wf_ctx_destroy(ctx);
}

/* The first pair of q still talks. */
static void still_works(struct ft_pair *q)
{
	gs.n = gc.n = 0;
	cr_assert_eq(wf_send(q->cep, "ok", 2, 1), 0);
	ft_pump(q->sctx, &gs, 1, q->cctx, &gc, 1, ft_wait_ms());
	cr_assert_eq(gs.c[0].op, WF_CQE_RECV_MSG);
	cr_assert_eq(gs.c[0].len, 2);
}

Test(fabric, cq_depth_limits_endpoints)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(16, 16, 128);   /* 33 cq entries */
	struct wf_ep *ep;

	p.cctx = ft_ctx(40);
	ft_pair_open(&p, &o, &o);
	cr_assert_eq(wf_connect(p.cctx, p.addr, &o, &ep), -ENOSPC);
	o = ft_opts(2, 2, 128);                         /* 5 more: fits */
	struct wf_ep *sep3 = NULL;
	cr_assert_eq(ft_accept_many(&p, &sep3, 1, &ep, &o), 0);
	wf_ep_destroy(ep);
	wf_ep_destroy(sep3);
	ft_pair_close(&p);

	/* The accepting side counts too: room for the listener and one
	 * endpoint, and the second accept is refused. */
	struct ft_pair q = { 0 };
	struct wf_ep *sep2 = NULL, *cep2 = NULL;
	int ret;

	o = ft_opts(4, 4, 128);                         /* 9 entries */
	q.sctx = ft_ctx(1 + 9);
	ft_pair_open(&q, &o, &o);
	ret = ft_accept_many(&q, &sep2, 1, &cep2, &o);
	if (ft_is_verbs())
		cr_assert_lt(ret, 0, "second endpoint accepted past cq_depth");
	else
		cr_assert_eq(ret, -ENOSPC, "accept past cq_depth: %d", ret);
	if (cep2) {     /* tcp: the connector learns by a disconnect */
		const struct wf_cqe *d = NULL;
		int64_t end = ft_now_ms() + ft_wait_ms();

		gc.n = 0;
		while (!d) {
			cr_assert_lt(ft_now_ms(), end, "refused endpoint never disconnected");
			ft_poll_into(q.cctx, &gc);
			d = ft_find(&gc, WF_CQE_DISCONNECT, 0);
		}
		cr_assert_eq(d->ep, cep2);
		wf_ep_destroy(cep2);
	}
	still_works(&q);
	ft_pair_close(&q);

	/* An endpoint alone larger than the queue never fits. */
	struct wf_ctx *ctx = ft_ctx(10);
	o = ft_opts(16, 16, 128);
	cr_assert_eq(wf_connect(ctx, "tcp:127.0.0.1:9", &o, &ep), -ENOSPC);
	wf_ctx_destroy(ctx);
}

Test(fabric, many_endpoints)
{
	enum { N = 64 };
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(4, 4, 128);
	struct wf_ep *seps[N], *ceps[N];
	char *sbuf = ft_xalloc(N * 512), *cbuf = ft_xalloc(N * 512);
	struct wf_mr *smr, *cmr;
	struct wf_rkey rk;
	int owner[N], seen_imm[N] = { 0 }, ret;

	ft_pair_open(&p, &o, &o);
	seps[0] = p.sep;
	ceps[0] = p.cep;
	ret = ft_accept_many(&p, seps + 1, N - 1, ceps + 1, &o);
	cr_assert_eq(ret, 0, "connecting %d endpoints: %s", N, strerror(-ret));
	smr = ft_reg(p.sctx, sbuf, N * 512, WF_ACCESS_REMOTE_WRITE);
	cmr = ft_reg(p.cctx, cbuf, N * 512, 0);
	cr_assert_eq(wf_mr_rkey(smr, p.sep, 0, N * 512, &rk), 0);
	for (int i = 0; i < N; i++) {
		ft_fill(cbuf + i * 512, 512, (uint32_t)i);
		cr_assert_eq(wf_send(ceps[i], &i, sizeof(i), 0), 0);
		cr_assert_eq(wf_write_imm(ceps[i], cmr, (uint64_t)i * 512, 512, &rk,
					  (uint64_t)i * 512, (uint32_t)i, 1), 0);
	}
	ft_pump(p.sctx, &gs, 2 * N, p.cctx, &gc, 2 * N, ft_wait_ms() * 2);
	for (int i = 0; i < N; i++)
		owner[i] = -1;
	for (int i = 0; i < gs.n; i++) {
		const struct wf_cqe *c = &gs.c[i];
		int k, who = -1;

		for (k = 0; k < N; k++)
			if (seps[k] == c->ep)
				who = k;
		cr_assert_geq(who, 0, "completion for an unknown endpoint");
		if (c->op == WF_CQE_RECV_MSG) {
			int id;

			cr_assert_not_null(c->msg, "message copy");
			memcpy(&id, c->msg, sizeof(id));
			cr_assert(id >= 0 && id < N);
			owner[who] = id;
		} else {
			cr_assert_eq(c->op, WF_CQE_RECV_IMM);
			cr_assert_eq(owner[who], (int)c->imm,
				     "write arrived on another endpoint or before its message");
			seen_imm[c->imm]++;
		}
	}
	for (int i = 0; i < N; i++)
		cr_assert_eq(seen_imm[i], 1, "write %d seen %d times", i, seen_imm[i]);
	cr_assert_eq(memcmp(sbuf, cbuf, N * 512), 0);
	/* Each server endpoint answers its own client. */
	for (int k = 0; k < N; k++)
		cr_assert_eq(wf_send(seps[k], &owner[k], sizeof(int), 0), 0);
	ft_pump(p.sctx, &gs, 3 * N, p.cctx, &gc, 3 * N, ft_wait_ms() * 2);
	for (int i = 0, m = 0; i < gc.n; i++) {
		if (gc.c[i].op != WF_CQE_RECV_MSG)
			continue;
		int id;

		cr_assert_not_null(gc.c[i].msg);
		memcpy(&id, gc.c[i].msg, sizeof(id));
		cr_assert(id >= 0 && id < N);
		cr_assert_eq(gc.c[i].ep, ceps[id], "answer on the wrong endpoint");
		m++;
		cr_assert_leq(m, N);
	}
	for (int i = 1; i < N; i++) {
		wf_ep_destroy(seps[i]);
		wf_ep_destroy(ceps[i]);
	}
	wf_mr_dereg(smr);
	wf_mr_dereg(cmr);
	ft_pair_close(&p);
	free(sbuf);
	free(cbuf);
}

/* ---- wf_connect_start ---- */

/* Poll c until a CONNECT completion of ep arrives (bounded); its status. */
static int connect_result(struct wf_ctx *s, struct wf_ctx *c, struct wf_ep *ep)
{
	int64_t end = ft_now_ms() + 2 * ft_wait_ms();

	gc.n = 0;
	while (ft_now_ms() < end) {
		if (s)
			ft_poll_into(s, &gs);
		ft_poll_into(c, &gc);
		for (int i = 0; i < gc.n; i++)
			if (gc.c[i].op == WF_CQE_CONNECT && gc.c[i].ep == ep)
				return gc.c[i].status;
	}
	cr_assert_fail("no CONNECT completion");
	return 0;
}

Test(fabric, connect_start_completes_in_poll)
{
	struct wf_ctx *s = ft_ctx(0), *c = ft_ctx(0);
	struct wf_listener *l;
	struct wf_ep *cep, *sep;
	struct wf_ep_opts o = ft_opts(8, 8, 128);
	char addr[256], real[256];
	int ret;

	ft_listen_addr(addr, sizeof(addr));
	cr_assert_eq(wf_listen(s, addr, &o, &l), 0);
	cr_assert_eq(wf_listener_addr(l, real, sizeof(real)), 0);
	o.user = &o;
	ret = wf_connect_start(c, real, &o, &cep);
	cr_assert_eq(ret, -EINPROGRESS, "%s", strerror(-ret));
	cr_assert_eq(wf_ep_user(cep), &o, "the user pointer is there at once");
	cr_assert_eq(wf_send(cep, "x", 1, 1), -ENOTCONN, "not before CONNECT");
	cr_assert_eq(connect_result(s, c, cep), 0);
	cr_assert_str_eq(wf_cqe_op_name(WF_CQE_CONNECT), "connect");
	ft_pump(s, &gs, 1, NULL, NULL, 0, ft_wait_ms());
	cr_assert_eq(gs.c[gs.n - 1].op, WF_CQE_ACCEPT);
	cr_assert_eq(wf_accept(l, NULL, &sep), 0);
	gs.n = gc.n = 0;
	cr_assert_eq(wf_send(cep, "hello", 5, 7), 0);
	ft_pump(s, &gs, 1, c, &gc, 1, ft_wait_ms());
	cr_assert_eq(gs.c[0].op, WF_CQE_RECV_MSG);
	cr_assert_eq(memcmp(gs.msg[0], "hello", 5), 0);
	cr_assert_eq(gc.c[0].op, WF_CQE_SEND);
	wf_ep_destroy(sep);
	wf_ep_destroy(cep);
	wf_listener_destroy(l);
	wf_ctx_destroy(s);
	wf_ctx_destroy(c);
}

/* A listener whose process never answers (stopped, or as here: a ctx
 * nobody polls; the kernel still completes the TCP or AF_UNIX connect).
 * The connecting ctx keeps serving its live endpoint meanwhile, and the
 * attempt ends with -ETIMEDOUT in a CONNECT completion. */
Test(fabric, connect_start_to_silent_peer_blocks_nothing)
{
	struct ft_pair p = { 0 };
	struct wf_ctx *deaf = ft_ctx(0);
	struct wf_listener *dl;
	struct wf_ep *ep;
	struct wf_ep_opts o = ft_opts(8, 8, 128);
	char addr[256], real[256];
	int rounds = 0, ret, status = 1;
	int64_t end;

	ft_pair_open(&p, &o, &o);
	ft_listen_addr(addr, sizeof(addr));
	cr_assert_eq(wf_listen(deaf, addr, &o, &dl), 0);
	cr_assert_eq(wf_listener_addr(dl, real, sizeof(real)), 0);
	o.timeout_ms = 300;
	ret = wf_connect_start(p.cctx, real, &o, &ep);
	cr_assert_eq(ret, -EINPROGRESS, "%s", strerror(-ret));
	/* Round trips on the live pair while the attempt is pending. */
	end = ft_now_ms() + 4 * ft_wait_ms();
	while (status > 0) {
		cr_assert_lt(ft_now_ms(), end, "no CONNECT completion");
		gs.n = gc.n = 0;
		cr_assert_eq(wf_send(p.cep, "ping", 4, 1), 0);
		while (!ft_count(&gs, WF_CQE_RECV_MSG) ||
		       !ft_count(&gc, WF_CQE_SEND)) {
			cr_assert_lt(ft_now_ms(), end, "the live pair stalled");
			ft_poll_into(p.sctx, &gs);
			ft_poll_into(p.cctx, &gc);
		}
		for (int i = 0; i < gc.n; i++)
			if (gc.c[i].op == WF_CQE_CONNECT) {
				cr_assert_eq(gc.c[i].ep, ep);
				status = gc.c[i].status;
			}
		rounds++;
	}
	cr_assert_eq(status, -ETIMEDOUT, "%s", strerror(-status));
	/* A blocking connect would have let none through. */
	cr_assert_gt(rounds, 10, "%d round trips during the attempt", rounds);
	wf_ep_destroy(ep);
	still_works(&p);
	/* Abandoned while connecting: destroyed at once, nothing follows. */
	cr_assert_eq(wf_connect_start(p.cctx, real, &o, &ep), -EINPROGRESS);
	wf_ep_destroy(ep);
	still_works(&p);
	wf_listener_destroy(dl);
	wf_ctx_destroy(deaf);
	ft_pair_close(&p);
}

Test(fabric, connect_start_refused_at_once)
{
	struct wf_ctx *ctx = ft_ctx(0);
	struct wf_listener *l;
	struct wf_ep *ep = NULL;
	struct wf_ep_opts o = ft_opts(4, 4, 64);
	char addr[256], real[256];
	int ret;

	ft_listen_addr(addr, sizeof(addr));
	cr_assert_eq(wf_listen(ctx, addr, &o, &l), 0);
	cr_assert_eq(wf_listener_addr(l, real, sizeof(real)), 0);
	wf_listener_destroy(l);
	o.timeout_ms = 2000;
	ret = wf_connect_start(ctx, real, &o, &ep);
	if (ret == -EINPROGRESS)        /* tcp may say so later */
		ret = connect_result(NULL, ctx, ep), wf_ep_destroy(ep);
	cr_assert_lt(ret, 0);
	cr_assert_neq(ret, -ETIMEDOUT, "a refusal is not a timeout");
	cr_assert_eq(wf_connect_start(ctx, "bogus:1", &o, &ep), -EAFNOSUPPORT);
	wf_ctx_destroy(ctx);
}
