/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fabric conformance suite: the same cases for every backend (see
 * fabric_test.h for the environment that picks it).  The upper layers rely
 * on exactly what is asserted here.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "proto/wire.h"
#include "fabric/tcp_frame.h"
#include "tests/fabric/fabric_test.h"

static void *xalloc(size_t n)
{
	void *p = NULL;

	cr_assert_eq(posix_memalign(&p, 4096, n), 0);
	memset(p, 0, n);
	return p;
}

static struct wf_mr *reg(struct wf_ctx *ctx, void *buf, size_t len, unsigned acc)
{
	struct wf_mr *mr = NULL;
	int ret = wf_mr_reg(ctx, buf, len, acc, &mr);

	cr_assert_eq(ret, 0, "wf_mr_reg: %s", strerror(-ret));
	return mr;
}

static void fill(void *buf, size_t len, uint32_t seed)
{
	uint8_t *b = buf;

	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 8));
}

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

Test(fabric, write_imm_lands_exactly)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(16, 16, 256);
	const size_t len = 65536;
	char *sbuf = xalloc(len), *cbuf = xalloc(len);
	struct wf_mr *smr, *cmr;
	struct wf_rkey rk;

	ft_pair_open(&p, &o, &o);
	memset(sbuf, 0xaa, len);
	fill(cbuf, len, 1);
	smr = reg(p.sctx, sbuf, len, WF_ACCESS_REMOTE_WRITE);
	cmr = reg(p.cctx, cbuf, len, 0);
	cr_assert_eq(wf_mr_addr(smr), sbuf);
	cr_assert_eq(wf_mr_rkey(smr, p.sep, 4096, 32768, &rk), 0);
	cr_assert_eq(wf_mr_rkey(smr, p.sep, 4096, len, &rk), -ERANGE);
	cr_assert_eq(wf_mr_rkey(smr, p.sep, 4096, 32768, &rk), 0);

	cr_assert_eq(wf_write_imm(p.cep, cmr, 100, 4000, &rk, 1000, 0xdeadbeef, 42), 0);
	ft_pump(p.sctx, &gs, 1, p.cctx, &gc, 1, ft_wait_ms());
	cr_assert_eq(gc.c[0].op, WF_CQE_WRITE_IMM);
	cr_assert_eq(gc.c[0].wr_id, 42);
	cr_assert_eq(gc.c[0].status, 0);
	cr_assert_eq(gc.c[0].ep, p.cep);
	cr_assert_eq(gs.c[0].op, WF_CQE_RECV_IMM);
	cr_assert_eq(gs.c[0].imm, 0xdeadbeef);
	cr_assert_eq(gs.c[0].len, 4000);
	cr_assert_eq(gs.c[0].status, 0);
	cr_assert_eq(gs.c[0].ep, p.sep);
	cr_assert_eq(memcmp(sbuf + 4096 + 1000, cbuf + 100, 4000), 0, "bytes differ");
	cr_assert_eq((uint8_t)sbuf[4096 + 999], 0xaa, "wrote before the target");
	cr_assert_eq((uint8_t)sbuf[4096 + 5000], 0xaa, "wrote past the target");

	/* Beyond what the rkey describes, or the local region: refused here. */
	cr_assert_eq(wf_write_imm(p.cep, cmr, 0, 100, &rk, 32700, 1, 1), -ERANGE);
	cr_assert_eq(wf_write_imm(p.cep, cmr, len - 10, 100, &rk, 0, 1, 1), -ERANGE);

	/* A whole 1 MiB-ish burst of writes lands too. */
	for (int i = 0; i < 8; i++)
		cr_assert_eq(wf_write_imm(p.cep, cmr, (uint64_t)i * 4096, 4096, &rk,
					  (uint64_t)i * 4096, (uint32_t)i, 100 + i), 0);
	ft_pump(p.sctx, &gs, 9, p.cctx, &gc, 9, ft_wait_ms());
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(gs.c[1 + i].imm, (uint32_t)i, "immediates in order");
		cr_assert_eq(gc.c[1 + i].wr_id, (uint64_t)(100 + i));
	}
	cr_assert_eq(memcmp(sbuf + 4096, cbuf, 32768), 0);
	wf_mr_dereg(smr);
	wf_mr_dereg(cmr);
	ft_pair_close(&p);
	free(sbuf);
	free(cbuf);
}

/* wf_write places bytes silently; a later write_imm on the same endpoint
 * is delivered only after them (how a payload precedes its request). */
Test(fabric, plain_write_then_notify)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(16, 4, 128);
	const size_t len = 1 << 20;
	char *sbuf = xalloc(len), *cbuf = xalloc(len);
	struct wf_mr *smr, *cmr;
	struct wf_rkey rk;

	ft_pair_open(&p, &o, &o);
	fill(cbuf, len, 3);
	smr = reg(p.sctx, sbuf, len, WF_ACCESS_REMOTE_WRITE);
	cmr = reg(p.cctx, cbuf, len, 0);
	cr_assert_eq(wf_mr_rkey(smr, p.sep, 0, len, &rk), 0);
	/* More plain writes than the peer has receive credits: they take none. */
	for (int i = 0; i < 8; i++)
		cr_assert_eq(wf_write(p.cep, cmr, (uint64_t)i * 65536, 65536, &rk,
				      (uint64_t)i * 65536, (uint64_t)i), 0);
	cr_assert_eq(wf_write_imm(p.cep, cmr, 0, 0, &rk, 0, 4242, 8), 0);
	ft_pump(p.sctx, &gs, 1, p.cctx, &gc, 9, ft_wait_ms());
	cr_assert_eq(gs.n, 1, "plain writes raise nothing at the peer");
	cr_assert_eq(gs.c[0].op, WF_CQE_RECV_IMM);
	cr_assert_eq(gs.c[0].imm, 4242);
	cr_assert_eq(memcmp(sbuf, cbuf, 8 * 65536), 0, "bytes not in place at the notification");
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(gc.c[i].op, WF_CQE_WRITE);
		cr_assert_eq(gc.c[i].status, 0);
		cr_assert_eq(gc.c[i].wr_id, (uint64_t)i);
	}
	cr_assert_eq(gc.c[8].op, WF_CQE_WRITE_IMM);
	cr_assert_eq(wf_write(p.cep, cmr, 0, 16, &rk, len - 8, 1), -ERANGE);
	wf_mr_dereg(smr);
	wf_mr_dereg(cmr);
	ft_pair_close(&p);
	free(sbuf);
	free(cbuf);
}

Test(fabric, write_imm_zero_length)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(8, 8, 128);
	char *sbuf = xalloc(4096), *cbuf = xalloc(4096);
	struct wf_mr *smr, *cmr;
	struct wf_rkey rk;

	ft_pair_open(&p, &o, &o);
	smr = reg(p.sctx, sbuf, 4096, WF_ACCESS_REMOTE_WRITE);
	cmr = reg(p.cctx, cbuf, 4096, 0);
	cr_assert_eq(wf_mr_rkey(smr, p.sep, 0, 4096, &rk), 0);
	cr_assert_eq(wf_write_imm(p.cep, cmr, 0, 0, &rk, 4096, 77, 5), 0);
	ft_pump(p.sctx, &gs, 1, p.cctx, &gc, 1, ft_wait_ms());
	cr_assert_eq(gs.c[0].op, WF_CQE_RECV_IMM);
	cr_assert_eq(gs.c[0].imm, 77);
	cr_assert_eq(gs.c[0].len, 0);
	cr_assert_eq(gc.c[0].op, WF_CQE_WRITE_IMM);
	cr_assert_eq(gc.c[0].wr_id, 5);
	cr_assert_eq(gc.c[0].status, 0);
	wf_mr_dereg(smr);
	wf_mr_dereg(cmr);
	ft_pair_close(&p);
	free(sbuf);
	free(cbuf);
}

Test(fabric, read_returns_remote_bytes)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(16, 16, 256);
	const size_t len = 1 << 20;
	char *sbuf = xalloc(len), *cbuf = xalloc(len);
	struct wf_mr *smr, *cmr;
	struct wf_rkey rk;

	ft_pair_open(&p, &o, &o);
	fill(sbuf, len, 7);
	memset(cbuf, 0x55, len);
	smr = reg(p.sctx, sbuf, len, WF_ACCESS_REMOTE_READ);
	cmr = reg(p.cctx, cbuf, len, 0);
	cr_assert_eq(wf_mr_rkey(smr, p.sep, 0, len, &rk), 0);

	cr_assert_eq(wf_read(p.cep, cmr, 3, 5000, &rk, 777, 9), 0);
	/* The server must poll for the tcp backend to answer (not verbs). */
	ft_pump(p.sctx, &gs, 0, p.cctx, &gc, 1, ft_wait_ms());
	cr_assert_eq(gc.c[0].op, WF_CQE_READ);
	cr_assert_eq(gc.c[0].wr_id, 9);
	cr_assert_eq(gc.c[0].status, 0);
	cr_assert_eq(memcmp(cbuf + 3, sbuf + 777, 5000), 0);
	cr_assert_eq((uint8_t)cbuf[2], 0x55);
	cr_assert_eq((uint8_t)cbuf[5003], 0x55);
	cr_assert_eq(gs.n, 0, "a read raises nothing at the target");

	/* Several at once, large and zero-length. */
	cr_assert_eq(wf_read(p.cep, cmr, 0, (uint32_t)len / 2, &rk, len / 2, 10), 0);
	cr_assert_eq(wf_read(p.cep, cmr, len / 2, 0, &rk, 0, 11), 0);
	cr_assert_eq(wf_read(p.cep, cmr, len / 2, 4096, &rk, 0, 12), 0);
	ft_pump(p.sctx, &gs, 0, p.cctx, &gc, 4, ft_wait_ms());
	for (int i = 1; i < 4; i++) {
		cr_assert_eq(gc.c[i].op, WF_CQE_READ);
		cr_assert_eq(gc.c[i].status, 0);
		cr_assert_eq(gc.c[i].wr_id, (uint64_t)(9 + i));
	}
	cr_assert_eq(memcmp(cbuf, sbuf + len / 2, len / 2), 0);
	cr_assert_eq(memcmp(cbuf + len / 2, sbuf, 4096), 0);
	cr_assert_eq(wf_read(p.cep, cmr, 0, 10, &rk, len - 5, 1), -ERANGE);
	wf_mr_dereg(smr);
	wf_mr_dereg(cmr);
	ft_pair_close(&p);
	free(sbuf);
	free(cbuf);
}

Test(fabric, messages_in_order)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(16, 8, 256);
	const int n = 500;
	int sent = 0, got = 0, done = 0;
	int64_t end;

	ft_pair_open(&p, &o, &o);
	cr_assert_eq(wf_send(p.cep, "x", 257, 0), -EMSGSIZE);
	end = ft_now_ms() + ft_wait_ms();
	while (got < n || done < n) {
		struct wf_cqe c[32];
		int k;

		cr_assert_lt(ft_now_ms(), end, "timed out: sent %d got %d", sent, got);
		while (sent < n) {
			uint8_t m[256];
			uint32_t len = 4 + (uint32_t)(sent * 37 % 253);

			memcpy(m, &sent, 4);
			memset(m + 4, sent & 0xff, len - 4);
			k = wf_send(p.cep, m, len, (uint64_t)sent);
			if (k == -EAGAIN)
				break;
			cr_assert_eq(k, 0, "wf_send: %s", strerror(-k));
			sent++;
		}
		k = wf_poll(p.cctx, c, 32);
		cr_assert_geq(k, 0);
		for (int i = 0; i < k; i++) {
			cr_assert_eq(c[i].op, WF_CQE_SEND);
			cr_assert_eq(c[i].status, 0);
			cr_assert_eq(c[i].wr_id, (uint64_t)done, "send completions in order");
			done++;
		}
		k = wf_poll(p.sctx, c, 32);
		cr_assert_geq(k, 0);
		/* Receive credits: never more than recv_depth (8) messages
		 * outstanding, so never more in one poll. */
		cr_assert_leq(k, 8, "%d messages in one poll past recv_depth", k);
		for (int i = 0; i < k; i++) {
			const uint8_t *m = c[i].msg;
			uint32_t len = 4 + (uint32_t)(got * 37 % 253);
			int seq;

			cr_assert_eq(c[i].op, WF_CQE_RECV_MSG);
			cr_assert_eq(c[i].ep, p.sep);
			cr_assert_eq(c[i].len, len, "message %d length", got);
			memcpy(&seq, m, 4);
			cr_assert_eq(seq, got, "message order");
			for (uint32_t j = 4; j < len; j++)
				cr_assert_eq(m[j], (uint8_t)(got & 0xff));
			got++;
		}
	}
	/* And the other way. */
	cr_assert_eq(wf_send(p.sep, "pong", 4, 1), 0);
	cr_assert_eq(wf_send(p.sep, "", 0, 2), 0);
	ft_pump(p.sctx, &gs, 2, p.cctx, &gc, 2, ft_wait_ms());
	cr_assert_eq(gc.c[0].op, WF_CQE_RECV_MSG);
	cr_assert_eq(gc.c[0].len, 4);
	cr_assert_eq(memcmp(gc.c[0].msg, "pong", 4), 0);
	cr_assert_eq(gc.c[1].op, WF_CQE_RECV_MSG);
	cr_assert_eq(gc.c[1].len, 0);
	ft_pair_close(&p);
}

Test(fabric, send_credits_exhaust_and_recover)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(4, 16, 128);
	char *sbuf = xalloc(65536), *cbuf = xalloc(65536);
	struct wf_mr *smr, *cmr;
	struct wf_rkey rk;

	ft_pair_open(&p, &o, &o);
	smr = reg(p.sctx, sbuf, 65536, WF_ACCESS_REMOTE_WRITE | WF_ACCESS_REMOTE_READ);
	cmr = reg(p.cctx, cbuf, 65536, 0);
	cr_assert_eq(wf_mr_rkey(smr, p.sep, 0, 65536, &rk), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(wf_write_imm(p.cep, cmr, 0, 64, &rk, 0, (uint32_t)i, (uint64_t)i), 0);
	/* Credits are held until the completions are reaped. */
	cr_assert_eq(wf_write_imm(p.cep, cmr, 0, 64, &rk, 0, 9, 9), -EAGAIN);
	cr_assert_eq(wf_read(p.cep, cmr, 0, 64, &rk, 0, 9), -EAGAIN);
	cr_assert_eq(wf_send(p.cep, "x", 1, 9), -EAGAIN);
	ft_pump(p.sctx, &gs, 4, p.cctx, &gc, 4, ft_wait_ms());
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(gs.c[i].imm, (uint32_t)i, "nothing extra was posted");
		cr_assert_eq(gc.c[i].wr_id, (uint64_t)i);
	}
	/* Reaped: room again. */
	cr_assert_eq(wf_read(p.cep, cmr, 0, 64, &rk, 0, 20), 0);
	cr_assert_eq(wf_send(p.cep, "y", 1, 21), 0);
	ft_pump(p.sctx, &gs, 5, p.cctx, &gc, 6, ft_wait_ms());
	cr_assert_eq(ft_count(&gc, WF_CQE_READ), 1);
	cr_assert_eq(ft_count(&gc, WF_CQE_SEND), 1);
	cr_assert_eq(ft_count(&gs, WF_CQE_RECV_IMM), 4, "no extra write landed");
	wf_mr_dereg(smr);
	wf_mr_dereg(cmr);
	ft_pair_close(&p);
	free(sbuf);
	free(cbuf);
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

/*
 * A receiver that does not poll: the sender runs out of room (-EAGAIN)
 * instead of anything being dropped; once the receiver polls, every write
 * arrives, in order, with its bytes.
 */
Test(fabric, backpressure_without_loss)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts so = ft_opts(8, 4, 128), co = ft_opts(32, 8, 128);
	/* 64 MiB: more than loopback TCP buffers hold, so the sender must
	 * stall; verbs stalls after recv_depth (and soft-RoCE is slow). */
	const uint32_t sz = 65536, slots = 64, n = ft_is_verbs() ? 256 : 1024;
	char *sbuf = xalloc((size_t)sz * slots), *cbuf = xalloc((size_t)sz * slots);
	struct wf_mr *smr, *cmr;
	struct wf_rkey rk;
	uint32_t posted = 0, recvd = 0, done = 0;
	int64_t stuck_since = 0, end;
	bool stuck = false;

	ft_pair_open(&p, &so, &co);
	smr = reg(p.sctx, sbuf, (size_t)sz * slots, WF_ACCESS_REMOTE_WRITE);
	cmr = reg(p.cctx, cbuf, (size_t)sz * slots, 0);
	cr_assert_eq(wf_mr_rkey(smr, p.sep, 0, sz * slots, &rk), 0);

	end = ft_now_ms() + ft_wait_ms() * 3;
	for (int phase = 0; phase < 2; phase++) {
		while (phase == 0 ? !stuck && posted < n : recvd < n) {
			struct wf_cqe c[64];
			int k;

			cr_assert_lt(ft_now_ms(), end, "timed out: posted %u recvd %u",
				     posted, recvd);
			while (posted < n) {
				char *src = cbuf + (size_t)(posted % slots) * sz;

				memset(src, (int)(posted & 0xff), sz);
				memcpy(src, &posted, 4);
				k = wf_write_imm(p.cep, cmr, (uint64_t)(posted % slots) * sz,
						 sz, &rk, (uint64_t)(posted % slots) * sz,
						 posted, posted);
				if (k == -EAGAIN)
					break;
				cr_assert_eq(k, 0, "write_imm: %s", strerror(-k));
				posted++;
				stuck_since = 0;
			}
			k = wf_poll(p.cctx, c, 64);
			cr_assert_geq(k, 0);
			for (int i = 0; i < k; i++) {
				cr_assert_eq(c[i].op, WF_CQE_WRITE_IMM);
				cr_assert_eq(c[i].status, 0);
				cr_assert_eq(c[i].wr_id, done, "completions in order");
				done++;
			}
			if (phase == 0) {
				/* No progress for 300 ms while the receiver
				 * sleeps: the backpressure reached us. */
				if (k || posted == n)
					stuck_since = 0;
				else if (!stuck_since)
					stuck_since = ft_now_ms();
				else if (ft_now_ms() - stuck_since > 300)
					stuck = true;
				continue;
			}
			k = wf_poll(p.sctx, c, 64);
			cr_assert_geq(k, 0);
			for (int i = 0; i < k; i++) {
				const char *slot = sbuf + (size_t)(c[i].imm % slots) * sz;
				uint32_t tag;

				cr_assert_eq(c[i].op, WF_CQE_RECV_IMM);
				cr_assert_eq(c[i].imm, recvd, "lost or reordered write");
				cr_assert_eq(c[i].len, sz);
				memcpy(&tag, slot, 4);
				cr_assert_eq(tag, recvd, "slot overwritten before delivery");
				cr_assert_eq((uint8_t)slot[sz - 1], (uint8_t)(recvd & 0xff));
				recvd++;
			}
		}
		if (phase == 0)
			cr_assert(stuck, "the sender never felt backpressure (%u posted)",
				  posted);
	}
	cr_assert_eq(posted, n);
	wf_mr_dereg(smr);
	wf_mr_dereg(cmr);
	ft_pair_close(&p);
	free(sbuf);
	free(cbuf);
}

Test(fabric, sleep_on_fd_and_wake)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(8, 8, 128);
	struct pollfd pf;
	struct wf_cqe c[4];

	ft_pair_open(&p, &o, &o);
	/* Drain, arm, poll once more, then the fd must be quiet. */
	while (wf_poll(p.sctx, c, 4) > 0)
		;
	/* "Readable when wf_poll may return something": a few spurious
	 * wake-ups are allowed (e.g. late connection-manager events under
	 * verbs), but it must settle. */
	pf = (struct pollfd){ .fd = wf_ctx_fd(p.sctx), .events = POLLIN };
	bool quiet = false;
	for (int i = 0; i < 10 && !quiet; i++) {
		cr_assert_eq(wf_ctx_arm(p.sctx), 0);
		cr_assert_eq(wf_poll(p.sctx, c, 4), 0, "a completion from nowhere");
		quiet = poll(&pf, 1, 50) == 0;
	}
	cr_assert(quiet, "fd stays readable with nothing to do");
	cr_assert_eq(wf_send(p.cep, "wake", 4, 1), 0);
	if (ft_ctx_flags() & WF_CTX_BATCH)
		/* Batched: nothing leaves before the sender flushes (or
		 * polls, or arms). */
		cr_assert_eq(poll(&pf, 1, 50), 0, "a batched post went out early");
	cr_assert_eq(wf_flush(p.cctx), 0);
	cr_assert_eq(poll(&pf, 1, ft_wait_ms()), 1, "fd did not wake");
	ft_pump(p.sctx, &gs, 1, NULL, NULL, 0, ft_wait_ms());
	cr_assert_eq(gs.c[0].op, WF_CQE_RECV_MSG);
	cr_assert_eq(memcmp(gs.c[0].msg, "wake", 4), 0);

	/* Completions left in the queue (max too small) keep the fd awake. */
	cr_assert_eq(wf_send(p.cep, "a", 1, 2), 0);
	cr_assert_eq(wf_send(p.cep, "b", 1, 3), 0);
	ft_pump(NULL, NULL, 0, p.cctx, &gc, 3, ft_wait_ms());
	int64_t end = ft_now_ms() + ft_wait_ms();
	int k = 0;
	while (k == 0) {
		cr_assert_lt(ft_now_ms(), end);
		k = wf_poll(p.sctx, c, 1);
	}
	cr_assert_eq(wf_ctx_arm(p.sctx), 0);
	cr_assert_eq(poll(&pf, 1, ft_wait_ms()), 1, "a pending completion must wake");
	ft_pair_close(&p);
}

Test(fabric, many_endpoints)
{
	enum { N = 64 };
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(4, 4, 128);
	struct wf_ep *seps[N], *ceps[N];
	char *sbuf = xalloc(N * 512), *cbuf = xalloc(N * 512);
	struct wf_mr *smr, *cmr;
	struct wf_rkey rk;
	int owner[N], seen_imm[N] = { 0 }, ret;

	ft_pair_open(&p, &o, &o);
	seps[0] = p.sep;
	ceps[0] = p.cep;
	ret = ft_accept_many(&p, seps + 1, N - 1, ceps + 1, &o);
	cr_assert_eq(ret, 0, "connecting %d endpoints: %s", N, strerror(-ret));
	smr = reg(p.sctx, sbuf, N * 512, WF_ACCESS_REMOTE_WRITE);
	cmr = reg(p.cctx, cbuf, N * 512, 0);
	cr_assert_eq(wf_mr_rkey(smr, p.sep, 0, N * 512, &rk), 0);
	for (int i = 0; i < N; i++) {
		fill(cbuf + i * 512, 512, (uint32_t)i);
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

/* ---- child processes ---- */

/* Child side of the cross-process cases: no Criterion asserts here, only an
 * exit code.  Returns the accepted ep or NULL. */
static struct wf_ep *child_accept(struct wf_ctx *ctx, struct wf_listener *l, int ms)
{
	int64_t end = ft_now_ms() + ms;
	struct wf_ep *ep;
	struct wf_cqe c[8];

	while (ft_now_ms() < end) {
		if (wf_poll(ctx, c, 8) < 0)
			return NULL;
		if (!wf_accept(l, NULL, &ep))
			return ep;
		usleep(100);
	}
	return NULL;
}

/* Wait for one cqe of kind op on ctx (others are dropped). */
static int child_wait(struct wf_ctx *ctx, uint32_t op, struct wf_cqe *out,
		      void *msgcopy, int ms)
{
	int64_t end = ft_now_ms() + ms;
	struct wf_cqe c;

	while (ft_now_ms() < end) {
		int k = wf_poll(ctx, &c, 1);

		if (k < 0)
			return k;
		if (k && c.op == op) {
			if (msgcopy && c.msg)
				memcpy(msgcopy, c.msg, c.len);
			*out = c;
			return 0;
		}
	}
	return -ETIMEDOUT;
}

static pid_t spawn_server(int (*body)(struct wf_ctx *, struct wf_ep *), char *addr,
			  size_t alen)
{
	int pfd[2];
	pid_t pid;
	char a[256];
	ssize_t n;

	cr_assert_eq(pipe(pfd), 0);
	ft_listen_addr(a, sizeof(a));
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct wf_ctx_opts co = { .size = sizeof(co), .backend = ft_backend(),
					  .flags = ft_ctx_flags() };
		struct wf_ep_opts o = ft_opts(16, 4, 256);
		struct wf_ctx *ctx;
		struct wf_listener *l;
		struct wf_ep *ep;
		char real[256] = "";

		close(pfd[0]);
		alarm(120);     /* never outlive the test */
		if (wf_ctx_create(&co, &ctx) || wf_listen(ctx, a, &o, &l) ||
		    wf_listener_addr(l, real, sizeof(real)))
			_exit(10);
		if (write(pfd[1], real, sizeof(real)) != sizeof(real))
			_exit(11);
		close(pfd[1]);
		ep = child_accept(ctx, l, ft_wait_ms());
		if (!ep)
			_exit(12);
		int rc = body(ctx, ep);

		wf_listener_destroy(l);         /* removes a unix path */
		_exit(rc);
	}
	close(pfd[1]);
	n = read(pfd[0], addr, alen < 256 ? alen : 256);
	close(pfd[0]);
	cr_assert_eq(n, 256, "server child did not start");
	return pid;
}

static int body_publish_then_hang(struct wf_ctx *ctx, struct wf_ep *ep)
{
	static char buf[4 << 20];
	struct wf_wire_rkey w;
	struct wf_rkey rk;
	struct wf_mr *mr;
	struct wf_cqe c;

	if (wf_mr_reg(ctx, buf, sizeof(buf), WF_ACCESS_REMOTE_READ |
		      WF_ACCESS_REMOTE_WRITE, &mr) ||
	    wf_mr_rkey(mr, ep, 0, sizeof(buf), &rk))
		return 20;
	wf_rkey_encode(&rk, &w);
	if (wf_send(ep, &w, sizeof(w), 1) || child_wait(ctx, WF_CQE_SEND, &c, NULL, 10000))
		return 21;
	for (;;)
		pause();        /* never polls again: the parent kills us */
}

Test(fabric, peer_killed_mid_transfer)
{
	struct wf_ctx *ctx;
	struct wf_ep_opts o = ft_opts(16, 8, 256);
	char addr[256], *buf = xalloc(1 << 20);
	struct wf_wire_rkey w;
	struct wf_rkey rk;
	struct wf_mr *mr;
	struct wf_ep *ep;
	pid_t pid;
	int ret, status, ops = 0, completed = 0, failed = 0, read_fail = 0;
	bool disc = false;
	int64_t end;

	/* Fork before this process opens any device (verbs). */
	pid = spawn_server(body_publish_then_hang, addr, sizeof(addr));
	ctx = ft_ctx(0);
	ret = wf_connect(ctx, addr, &o, &ep);
	cr_assert_eq(ret, 0, "connect: %s", strerror(-ret));
	ft_pump(NULL, NULL, 0, ctx, &gc, 1, ft_wait_ms());
	cr_assert_eq(gc.c[0].op, WF_CQE_RECV_MSG);
	cr_assert_eq(gc.c[0].len, sizeof(w));
	memcpy(&w, gc.c[0].msg, sizeof(w));
	wf_rkey_decode(&w, &rk);
	mr = reg(ctx, buf, 1 << 20, 0);

	/* Reads (tcp: never answered, the peer does not poll), then writes
	 * with immediate (verbs: beyond its 4 receive credits, they stall). */
	for (int i = 0; i < 8; i++, ops++)
		cr_assert_eq(wf_read(ep, mr, (uint64_t)i * 65536, 65536, &rk, 0,
				     (uint64_t)ops), 0);
	for (int i = 0; i < 8; i++, ops++)
		cr_assert_eq(wf_write_imm(ep, mr, 0, 65536, &rk, (uint64_t)i * 65536,
					  (uint32_t)i, (uint64_t)ops), 0);
	usleep(50 * 1000);
	kill(pid, SIGKILL);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	if (!strncmp(addr, "unix:", 5))
		unlink(addr + 5);       /* the killed child could not */

	gc.n = 0;
	end = ft_now_ms() + ft_wait_ms() * 2;
	while (!disc) {
		struct wf_cqe c[16];
		int k;

		cr_assert_lt(ft_now_ms(), end, "hung: %d of %d completed", completed, ops);
		k = wf_poll(ctx, c, 16);
		cr_assert_geq(k, 0);
		for (int i = 0; i < k; i++) {
			cr_assert_not(disc, "completion after DISCONNECT");
			if (c[i].op == WF_CQE_DISCONNECT) {
				cr_assert_eq(c[i].ep, ep);
				cr_assert_lt(c[i].status, 0);
				disc = true;
				continue;
			}
			cr_assert(c[i].op == WF_CQE_READ || c[i].op == WF_CQE_WRITE_IMM);
			cr_assert_lt(c[i].wr_id, (uint64_t)ops);
			completed++;
			if (c[i].status) {
				cr_assert_lt(c[i].status, 0);
				failed++;
				read_fail += c[i].op == WF_CQE_READ;
			}
		}
	}
	cr_assert_eq(completed, ops, "every operation completes once");
	cr_assert_gt(failed, 0, "something was in flight and must have failed");
	if (!ft_is_verbs())
		cr_assert_eq(read_fail, 8, "unanswered reads fail with the connection");
	cr_assert_eq(wf_read(ep, mr, 0, 16, &rk, 0, 99), -ENOTCONN);
	wf_ep_destroy(ep);
	wf_mr_dereg(mr);
	wf_ctx_destroy(ctx);
	free(buf);
}

/* Child: echo every write with immediate back into the parent's region. */
static int body_echo(struct wf_ctx *ctx, struct wf_ep *ep)
{
	static char buf[1 << 20];
	struct wf_wire_rkey w;
	struct wf_rkey mine, theirs;
	struct wf_mr *mr;
	struct wf_cqe c;

	if (wf_mr_reg(ctx, buf, sizeof(buf), WF_ACCESS_REMOTE_READ |
		      WF_ACCESS_REMOTE_WRITE, &mr) ||
	    wf_mr_rkey(mr, ep, 0, sizeof(buf), &mine))
		return 20;
	if (child_wait(ctx, WF_CQE_RECV_MSG, &c, &w, 10000))
		return 21;
	wf_rkey_decode(&w, &theirs);
	wf_rkey_encode(&mine, &w);
	if (wf_send(ep, &w, sizeof(w), 1))
		return 22;
	for (;;) {
		struct wf_cqe cs[16];
		int k = wf_poll(ctx, cs, 16);

		if (k < 0)
			return 23;
		for (int i = 0; i < k; i++) {
			uint32_t slot, tag;

			if (cs[i].op == WF_CQE_DISCONNECT)
				return 0;
			if (cs[i].status)
				return 24;
			if (cs[i].op != WF_CQE_RECV_IMM)
				continue;
			slot = cs[i].imm % 16;
			memcpy(&tag, buf + slot * 4096, 4);
			if (tag != cs[i].imm)
				return 25;
			if (wf_write_imm(ep, mr, slot * 4096, cs[i].len, &theirs,
					 slot * 4096, cs[i].imm | 0x80000000u, 0))
				return 26;
		}
	}
}

Test(fabric, two_processes)
{
	struct wf_ctx *ctx;
	struct wf_ep_opts o = ft_opts(16, 16, 256);
	char addr[256], *src = xalloc(1 << 16), *dst = xalloc(1 << 16);
	char *rd = xalloc(4096);
	struct wf_wire_rkey w;
	struct wf_rkey theirs, mine;
	struct wf_mr *smr, *dmr, *rmr;
	struct wf_ep *ep;
	pid_t pid;
	int ret, status;

	pid = spawn_server(body_echo, addr, sizeof(addr));
	ctx = ft_ctx(0);
	ret = wf_connect(ctx, addr, &o, &ep);
	cr_assert_eq(ret, 0, "connect: %s", strerror(-ret));
	smr = reg(ctx, src, 1 << 16, 0);
	dmr = reg(ctx, dst, 1 << 16, WF_ACCESS_REMOTE_WRITE);
	rmr = reg(ctx, rd, 4096, 0);
	cr_assert_eq(wf_mr_rkey(dmr, ep, 0, 1 << 16, &mine), 0);
	wf_rkey_encode(&mine, &w);
	cr_assert_eq(wf_send(ep, &w, sizeof(w), 0), 0);
	ft_pump(NULL, NULL, 0, ctx, &gc, 2, ft_wait_ms());
	const struct wf_cqe *m = ft_find(&gc, WF_CQE_RECV_MSG, 0);
	cr_assert_not_null(m);
	memcpy(&w, m->msg, sizeof(w));
	wf_rkey_decode(&w, &theirs);

	for (uint32_t k = 0; k < 300; k++) {
		uint32_t slot = k % 16, len = 64 + (k * 97) % 4000;
		int64_t end = ft_now_ms() + ft_wait_ms();
		bool back = false;

		fill(src + slot * 4096, 4096, k);
		memcpy(src + slot * 4096, &k, 4);
		cr_assert_eq(wf_write_imm(ep, smr, slot * 4096, len, &theirs,
					  slot * 4096, k, k), 0);
		while (!back) {
			struct wf_cqe c[8];
			int n;

			cr_assert_lt(ft_now_ms(), end, "no echo for %u", k);
			n = wf_poll(ctx, c, 8);
			cr_assert_geq(n, 0);
			for (int i = 0; i < n; i++) {
				cr_assert_eq(c[i].status, 0, "%s failed: %d",
					     wf_cqe_op_name(c[i].op), c[i].status);
				if (c[i].op == WF_CQE_RECV_IMM) {
					cr_assert_eq(c[i].imm, k | 0x80000000u);
					cr_assert_eq(c[i].len, len);
					back = true;
				}
			}
		}
		cr_assert_eq(memcmp(dst + slot * 4096, src + slot * 4096, len), 0,
			     "echo %u differs", k);
		if (k % 50 == 0) {     /* and read it from the other process */
			cr_assert_eq(wf_read(ep, rmr, 0, len, &theirs, slot * 4096, 1000 + k), 0);
			gc.n = 0;
			ft_pump(NULL, NULL, 0, ctx, &gc, 1, ft_wait_ms());
			cr_assert_eq(gc.c[0].op, WF_CQE_READ);
			cr_assert_eq(gc.c[0].status, 0);
			cr_assert_eq(memcmp(rd, src + slot * 4096, len), 0);
		}
	}
	cr_assert_eq(wf_ep_close(ep), 0);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status), "child died");
	cr_assert_eq(WEXITSTATUS(status), 0, "child failed with %d", WEXITSTATUS(status));
	wf_ep_destroy(ep);
	wf_mr_dereg(smr);
	wf_mr_dereg(dmr);
	wf_mr_dereg(rmr);
	wf_ctx_destroy(ctx);
	free(src);
	free(dst);
	free(rd);
}

/* ---- tcp only: a raw socket speaks the framing directly ---- */

static int raw_connect(const char *addr)
{
	int fd;

	if (!strncmp(addr, "unix:", 5)) {
		struct sockaddr_un un = { .sun_family = AF_UNIX };

		snprintf(un.sun_path, sizeof(un.sun_path), "%s", addr + 5);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		cr_assert_eq(connect(fd, (struct sockaddr *)&un, sizeof(un)), 0);
	} else {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
		const char *h = addr + 4, *colon = strrchr(h, ':');
		char host[128];

		cr_assert_not_null(colon);
		snprintf(host, sizeof(host), "%.*s", (int)(colon - h), h);
		if (host[0] == '[') {   /* [v6] */
			memmove(host, host + 1, strlen(host));
			host[strlen(host) - 1] = 0;
		}
		cr_assert_eq(getaddrinfo(host, colon + 1, &hints, &res), 0);
		fd = socket(res->ai_family, SOCK_STREAM, 0);
		cr_assert_eq(connect(fd, res->ai_addr, res->ai_addrlen), 0);
		freeaddrinfo(res);
	}
	return fd;
}

/* Hello from a raw socket; returns the reply's kind (0: closed). */
static int raw_hello(struct ft_pair *p, int fd, uint16_t version,
		     struct wf_tcp_hello *reply)
{
	struct wf_tcp_hello h = {
		.magic = htole32(WF_TCP_HELLO_MAGIC), .version = htole16(version),
		.kind = htole16(WF_TCP_HELLO), .send_depth = htole32(8),
		.recv_depth = htole32(8), .msg_size = htole32(256),
	};
	size_t got = 0;
	int64_t end = ft_now_ms() + ft_wait_ms();

	cr_assert_eq(write(fd, &h, sizeof(h)), (ssize_t)sizeof(h));
	while (got < sizeof(*reply)) {
		ssize_t n;

		cr_assert_lt(ft_now_ms(), end, "no hello reply");
		ft_poll_into(p->sctx, &gs);
		n = recv(fd, (char *)reply + got, sizeof(*reply) - got, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			return 0;
		if (n > 0)
			got += (size_t)n;
	}
	return le16toh(reply->kind);
}

/* After a bad frame: the server's endpoint is gone with -EPROTO (or
 * -ECONNRESET for a truncated stream), and the raw socket sees the close. */
static void expect_rejected(struct ft_pair *p, struct wf_ep *ep, int fd,
			    int status, const char *what)
{
	int64_t end = ft_now_ms() + ft_wait_ms();
	const struct wf_cqe *d = NULL;
	char b[256];

	while (!d) {
		cr_assert_lt(ft_now_ms(), end, "%s: not rejected", what);
		ft_poll_into(p->sctx, &gs);
		for (int i = 0; i < gs.n; i++)
			if (gs.c[i].op == WF_CQE_DISCONNECT && gs.c[i].ep == ep)
				d = &gs.c[i];
	}
	cr_assert_eq(d->status, status, "%s: status %d", what, d->status);
	for (int i = 0; i < gs.n; i++)
		cr_assert(gs.c[i].ep != ep || gs.c[i].op == WF_CQE_DISCONNECT,
			  "%s: a bad frame raised a completion", what);
	for (;;) {     /* the server closed: EOF (or reset) after any data */
		ssize_t n = recv(fd, b, sizeof(b), 0);

		if (n <= 0)
			break;
	}
	close(fd);
	wf_ep_destroy(ep);
}

/* The good client still works after each rejection. */
static void still_serving(struct ft_pair *p, struct wf_mr *cmr, struct wf_rkey *rk,
			  uint32_t imm)
{
	gs.n = gc.n = 0;
	cr_assert_eq(wf_write_imm(p->cep, cmr, 0, 128, rk, 0, imm, imm), 0);
	ft_pump(p->sctx, &gs, 1, p->cctx, &gc, 1, ft_wait_ms());
	cr_assert_eq(gs.c[0].op, WF_CQE_RECV_IMM);
	cr_assert_eq(gs.c[0].imm, imm);
	gs.n = gc.n = 0;
}

static struct wf_tcp_frame frame(uint8_t type, uint32_t len, uint32_t key,
				 uint32_t imm, uint64_t addr)
{
	return (struct wf_tcp_frame){
		.magic = WF_TCP_FRAME_MAGIC, .type = type, .len = htole32(len),
		.key = htole32(key), .imm = htole32(imm), .addr = htole64(addr),
	};
}

Test(fabric, bad_frames_rejected_listener_survives)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(8, 8, 256);
	char *wbuf = xalloc(8192), *rbuf = xalloc(8192), *cbuf = xalloc(8192);
	struct wf_mr *wmr, *rmr, *cmr;
	struct wf_rkey wk, rok, good;
	static char payload[1 << 16];

	if (ft_is_verbs())
		cr_skip_test("raw frames need the tcp backend");
	ft_pair_open(&p, &o, &o);
	wmr = reg(p.sctx, wbuf, 8192, WF_ACCESS_REMOTE_WRITE);
	rmr = reg(p.sctx, rbuf, 8192, WF_ACCESS_REMOTE_READ);
	cmr = reg(p.cctx, cbuf, 8192, 0);
	cr_assert_eq(wf_mr_rkey(wmr, p.sep, 0, 8192, &wk), 0);
	cr_assert_eq(wf_mr_rkey(rmr, p.sep, 0, 8192, &rok), 0);
	good = wk;
	still_serving(&p, cmr, &good, 1);

	struct wf_tcp_frame bad_magic = frame(WF_TCP_WRITE_IMM, 8, wk.key, 0, 0);
	struct wf_tcp_frame bad_resv = frame(WF_TCP_WRITE_IMM, 8, wk.key, 0, 0);
	bad_magic.magic = 0x17;
	bad_resv.reserved = 1;
	const struct {
		const char *what;
		struct wf_tcp_frame f;
		uint32_t payload;
		int status;
	} cases[] = {
		{ "write past the end", frame(WF_TCP_WRITE_IMM, 100, wk.key, 1, 8192 - 10), 100, -EPROTO },
		{ "write at a wrapping offset", frame(WF_TCP_WRITE_IMM, 100, wk.key, 1, UINT64_MAX - 10), 100, -EPROTO },
		{ "write with a stale key", frame(WF_TCP_WRITE_IMM, 8, wk.key + 0x10000, 1, 0), 8, -EPROTO },
		{ "plain write past the end", frame(WF_TCP_WRITE, 16, wk.key, 0, 8190), 16, -EPROTO },
		{ "plain write with an immediate", frame(WF_TCP_WRITE, 8, wk.key, 5, 0), 8, -EPROTO },
		{ "plain write into a read-only region", frame(WF_TCP_WRITE, 8, rok.key, 0, 0), 8, -EPROTO },
		{ "write with an unknown key", frame(WF_TCP_WRITE_IMM, 8, 0x1234, 1, 0), 8, -EPROTO },
		{ "write into a read-only region", frame(WF_TCP_WRITE_IMM, 8, rok.key, 1, 0), 8, -EPROTO },
		{ "read from a write-only region", frame(WF_TCP_READ_REQ, 8, wk.key, 0, 0), 0, -EPROTO },
		{ "read past the end", frame(WF_TCP_READ_REQ, 9000, rok.key, 0, 0), 0, -EPROTO },
		{ "read with a bad request id", frame(WF_TCP_READ_REQ, 8, rok.key, 8, 0), 0, -EPROTO },
		{ "response nobody asked for", frame(WF_TCP_READ_RESP, 8, 0, 0, 0), 8, -EPROTO },
		{ "oversized message", frame(WF_TCP_SEND, 257, 0, 0, 0), 257, -EPROTO },
		{ "message with stray fields", frame(WF_TCP_SEND, 4, 5, 0, 0), 4, -EPROTO },
		{ "unknown frame type", frame(9, 0, 0, 0, 0), 0, -EPROTO },
		{ "bad magic", bad_magic, 8, -EPROTO },
		{ "reserved bits", bad_resv, 8, -EPROTO },
		{ "truncated frame", frame(WF_TCP_WRITE_IMM, 4000, wk.key, 1, 0), 100, -ECONNRESET },
	};
	memset(payload, 0xee, sizeof(payload));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct wf_tcp_hello reply;
		struct wf_ep *ep = NULL;
		int fd = raw_connect(p.addr), k;
		int64_t end = ft_now_ms() + ft_wait_ms();

		gs.n = 0;
		cr_assert_eq(raw_hello(&p, fd, WF_TCP_VERSION, &reply), WF_TCP_ACCEPT,
			     "%s: handshake", cases[i].what);
		while ((k = wf_accept(p.l, NULL, &ep)) == -EAGAIN) {
			cr_assert_lt(ft_now_ms(), end);
			ft_poll_into(p.sctx, &gs);
		}
		cr_assert_eq(k, 0);
		cr_assert_eq(write(fd, &cases[i].f, sizeof(cases[i].f)),
			     (ssize_t)sizeof(cases[i].f));
		if (cases[i].payload)
			cr_assert_eq(write(fd, payload, cases[i].payload),
				     (ssize_t)cases[i].payload);
		if (cases[i].status == -ECONNRESET)
			shutdown(fd, SHUT_WR);
		expect_rejected(&p, ep, fd, cases[i].status, cases[i].what);
		cr_assert_eq((uint8_t)wbuf[8191], 0, "%s: wrote out of bounds", cases[i].what);
		still_serving(&p, cmr, &good, 2 + (uint32_t)i);
	}

	/* A hello of another version is refused before any accept. */
	{
		struct wf_tcp_hello reply;
		struct wf_ep *ep;
		int fd = raw_connect(p.addr);
		int kind = raw_hello(&p, fd, WF_TCP_VERSION + 1, &reply);

		cr_assert(kind == 0 || kind == WF_TCP_REFUSE, "version mismatch accepted");
		if (kind == WF_TCP_REFUSE)
			cr_assert_eq((int)le32toh((uint32_t)reply.status), EPROTONOSUPPORT);
		for (int i = 0; i < 20; i++)
			ft_poll_into(p.sctx, &gs);
		cr_assert_eq(wf_accept(p.l, NULL, &ep), -EAGAIN);
		close(fd);
	}
	still_serving(&p, cmr, &good, 100);
	wf_mr_dereg(wmr);
	wf_mr_dereg(rmr);
	wf_mr_dereg(cmr);
	ft_pair_close(&p);
	free(wbuf);
	free(rbuf);
	free(cbuf);
}

/* A listener of another protocol version: wf_connect refuses it. */
Test(fabric, connect_to_other_version_refused)
{
	struct sockaddr_in in = { .sin_family = AF_INET };
	socklen_t sl = sizeof(in);
	struct wf_ctx *ctx;
	struct wf_ep *ep;
	struct wf_ep_opts o = ft_opts(4, 4, 64);
	char addr[64];
	int lfd, status;
	pid_t pid;

	if (ft_is_verbs())
		cr_skip_test("raw hello needs the tcp backend");
	in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&in, sizeof(in)), 0);
	cr_assert_eq(listen(lfd, 1), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&in, &sl), 0);
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%u", ntohs(in.sin_port));
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct wf_tcp_hello h;
		int c = accept(lfd, NULL, NULL);

		alarm(20);
		if (c < 0 || read(c, &h, sizeof(h)) != sizeof(h))
			_exit(1);
		h.version = htole16(WF_TCP_VERSION + 1);
		h.kind = htole16(WF_TCP_ACCEPT);
		if (write(c, &h, sizeof(h)) != sizeof(h))
			_exit(2);
		sleep(5);
		_exit(0);
	}
	close(lfd);
	ctx = ft_ctx(0);
	cr_assert_eq(wf_connect(ctx, addr, &o, &ep), -EPROTONOSUPPORT);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	wf_ctx_destroy(ctx);
}

/* The server closed fd (EOF or reset) within ms; polls sctx meanwhile. */
static bool closed_within(struct wf_ctx *sctx, int fd, int ms)
{
	int64_t end = ft_now_ms() + ms;
	char b[64];

	for (;;) {
		ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno != EAGAIN))
			return true;
		if (ft_now_ms() >= end)
			return false;
		ft_poll_into(sctx, &gs);
		usleep(200);
	}
}

#define SILENT 264      /* more than the listener's 256 handshake slots */

/* Sockets that never say hello fill every handshake slot of a listener (its
 * deadline far away): a real initiator still gets in, promptly, because the
 * oldest silent socket yields its slot. */
Test(fabric, silent_sockets_cannot_lock_out)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts so = ft_opts(4, 4, 64), co = ft_opts(4, 4, 64);
	struct wf_ep *sep = NULL, *cep = NULL;
	static int fds[SILENT];
	int64_t t0;
	int ret;

	if (ft_is_verbs())
		cr_skip_test("raw sockets need the tcp backend");
	so.timeout_ms = 60000;
	ft_pair_open(&p, &so, &co);
	for (int i = 0; i < SILENT; i++) {
		fds[i] = raw_connect(p.addr);
		ft_poll_into(p.sctx, &gs);
	}
	for (int i = 0; i < 200; i++) {         /* let the listener take them */
		ft_poll_into(p.sctx, &gs);
		usleep(500);
	}
	t0 = ft_now_ms();
	ret = ft_accept_many(&p, &sep, 1, &cep, &co);
	cr_assert_eq(ret, 0, "locked out by silent sockets: %s", strerror(-ret));
	cr_assert_lt(ft_now_ms() - t0, 3000, "connect took %lld ms",
		     (long long)(ft_now_ms() - t0));
	/* The oldest silent socket made room; the newest keeps its slot. */
	cr_assert(closed_within(p.sctx, fds[0], 2000), "oldest silent socket kept");
	cr_assert_not(closed_within(p.sctx, fds[SILENT - 1], 50),
		      "newest silent socket closed");
	/* The new endpoint works. */
	gs.n = gc.n = 0;
	cr_assert_eq(wf_send(cep, "hi", 2, 7), 0);
	ft_pump(p.sctx, &gs, 1, p.cctx, &gc, 1, ft_wait_ms());
	cr_assert_eq(gs.c[0].op, WF_CQE_RECV_MSG);
	cr_assert_eq(gs.c[0].ep, sep);
	for (int i = 0; i < SILENT; i++)
		close(fds[i]);
	wf_ep_destroy(cep);
	wf_ep_destroy(sep);
	ft_pair_close(&p);
}

/* A socket without a (complete) hello is closed once the listener's
 * timeout_ms has passed; one that finished its hello waits for wf_accept. */
Test(fabric, hello_deadline_closes_silent_socket)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts so = ft_opts(4, 4, 64), co = ft_opts(4, 4, 64);
	struct wf_tcp_hello reply;
	struct wf_ep *ep = NULL;
	static const char part[10];
	int silent, partial, good;
	int64_t t0, dt;

	if (ft_is_verbs())
		cr_skip_test("raw sockets need the tcp backend");
	so.timeout_ms = 300;
	ft_pair_open(&p, &so, &co);
	t0 = ft_now_ms();
	silent = raw_connect(p.addr);
	partial = raw_connect(p.addr);
	cr_assert_eq(write(partial, part, sizeof(part)), (ssize_t)sizeof(part));
	good = raw_connect(p.addr);
	cr_assert_eq(raw_hello(&p, good, WF_TCP_VERSION, &reply), WF_TCP_ACCEPT);
	cr_assert(closed_within(p.sctx, silent, ft_wait_ms()), "silent socket kept");
	dt = ft_now_ms() - t0;
	cr_assert_geq(dt, 250, "closed after %lld ms, before the deadline", (long long)dt);
	cr_assert_lt(dt, 2300, "closed only after %lld ms", (long long)dt);
	cr_assert(closed_within(p.sctx, partial, 1000), "half a hello kept");
	/* Handshaken: not subject to the deadline, still accepted. */
	cr_assert_not(closed_within(p.sctx, good, 200), "handshaken socket closed");
	cr_assert_eq(wf_accept(p.l, NULL, &ep), 0);
	close(silent);
	close(partial);
	close(good);
	wf_ep_destroy(ep);
	ft_pair_close(&p);
}

/* Poll both sides until a completion `op` of `ep` shows up in g at index
 * `from` or later; fails the test past the suite's wait. */
static const struct wf_cqe *pump_for(struct ft_pair *p, struct ft_got *g,
				     int from, uint32_t op, const struct wf_ep *ep)
{
	int64_t end = ft_now_ms() + ft_wait_ms();

	for (;;) {
		for (int i = from; i < g->n; i++)
			if (g->c[i].op == op && g->c[i].ep == ep)
				return &g->c[i];
		cr_assert_lt(ft_now_ms(), end, "no %s completion in time",
			     wf_cqe_op_name(op));
		ft_poll_into(p->sctx, &gs);
		ft_poll_into(p->cctx, &gc);
	}
}

/* A write_imm of cbuf[off, +len) into smr at off through `cep` with the key
 * rk, which the server end `sep` must receive intact. */
static void bound_write_lands(struct ft_pair *p, struct wf_ep *cep,
			      struct wf_ep *sep, struct wf_mr *cmr,
			      const struct wf_rkey *rk, const char *sbuf,
			      const char *cbuf, uint32_t off, uint32_t imm)
{
	int s0 = gs.n, c0 = gc.n;
	const struct wf_cqe *d;

	cr_assert_eq(wf_write_imm(cep, cmr, off, 4096, rk, off, imm, imm), 0);
	d = pump_for(p, &gc, c0, WF_CQE_WRITE_IMM, cep);
	cr_assert_eq(d->status, 0, "write %u: %s", imm, strerror(-d->status));
	d = pump_for(p, &gs, s0, WF_CQE_RECV_IMM, sep);
	cr_assert_eq(d->imm, imm);
	cr_assert_eq(memcmp(sbuf + off, cbuf + off, 4096), 0, "write %u", imm);
}

/* An intruder's write with rk into smr at off: its server end `sep` is
 * disconnected and not a byte of the region changes. */
static void intruder_refused(struct ft_pair *p, struct wf_ep *cep,
			     struct wf_ep *sep, struct wf_mr *cmr,
			     const struct wf_rkey *rk, const char *sbuf,
			     uint32_t off, uint8_t was, uint32_t imm)
{
	int s0 = gs.n;
	const struct wf_cqe *d;

	cr_assert_eq(wf_write_imm(cep, cmr, off, 4096, rk, off, imm, imm), 0);
	d = pump_for(p, &gs, s0, WF_CQE_DISCONNECT, sep);
	cr_assert_lt(d->status, 0, "the server drops the intruder");
	for (int i = s0; i < gs.n; i++)
		cr_assert(!(gs.c[i].op == WF_CQE_RECV_IMM && gs.c[i].ep == sep),
			  "an intruder's write was delivered");
	for (uint32_t i = off; i < off + 4096; i++)
		cr_assert_eq((uint8_t)sbuf[i], was, "byte %u written by an intruder", i);
	/* The intruder learns it too (verbs: a remote access error). */
	d = pump_for(p, &gc, 0, WF_CQE_DISCONNECT, cep);
	cr_assert_lt(d->status, 0);
}

/* wf_mr_bind: once a region is bound to one endpoint, another endpoint's
 * peer that names it (with the key the bound peer uses, or the one the
 * region had before) is disconnected and the region keeps its bytes; the
 * bound peer goes on writing; after unbinding everyone may write it again;
 * a binding moves to a new endpoint and outlives a destroyed one.  Over
 * verbs the key changes at bind and unbind (a memory window's), so keys
 * are taken afresh each time, as the target does at GRANT. */
Test(fabric, mr_bound_to_one_endpoint)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(8, 8, 256);
	struct wf_ep *seps[3], *ceps[3];
	char *sbuf = xalloc(8192), *cbuf = xalloc(8192);
	struct wf_mr *smr, *cmr;
	struct wf_rkey before, rk;
	int ret;

	ft_pair_open(&p, &o, &o);
	smr = reg(p.sctx, sbuf, 8192, WF_ACCESS_REMOTE_WRITE);
	ret = ft_accept_many(&p, seps, 3, ceps, &o);
	cr_assert_eq(ret, 0, "three more endpoints: %s", strerror(-ret));
	cmr = reg(p.cctx, cbuf, 8192, 0);
	memset(sbuf, 0x11, 8192);
	fill(cbuf, 8192, 9);
	cr_assert_eq(wf_mr_rkey(smr, p.sep, 0, 8192, &before), 0);
	ret = wf_mr_bind(smr, p.sep);
	cr_assert_eq(ret, 0, "wf_mr_bind: %s", strerror(-ret));
	cr_assert_eq(wf_mr_bind(smr, p.sep), 0, "binding again changes nothing");
	cr_assert_eq(wf_mr_bind(smr, p.cep), -EINVAL, "an ep of another ctx");
	cr_assert_eq(wf_mr_rkey(smr, p.sep, 0, 8192, &rk), 0);
	if (ft_is_verbs())
		cr_assert_neq(rk.key, before.key, "a memory window's key");

	/* The bound peer writes. */
	bound_write_lands(&p, p.cep, p.sep, cmr, &rk, sbuf, cbuf, 0, 1);
	/* Other peers with the bound key, and with the key from before. */
	intruder_refused(&p, ceps[0], seps[0], cmr, &rk, sbuf, 4096, 0x11, 2);
	intruder_refused(&p, ceps[1], seps[1], cmr, &before, sbuf, 4096, 0x11, 3);
	/* The bound peer is untouched by all that. */
	fill(cbuf, 4096, 10);
	bound_write_lands(&p, p.cep, p.sep, cmr, &rk, sbuf, cbuf, 0, 4);

	/* Unbound: any endpoint of the ctx again. */
	cr_assert_eq(wf_mr_bind(smr, NULL), 0);
	cr_assert_eq(wf_mr_rkey(smr, seps[2], 0, 8192, &rk), 0);
	bound_write_lands(&p, ceps[2], seps[2], cmr, &rk, sbuf, cbuf, 4096, 5);

	/* Bound to seps[2], which then goes: the region stays closed until
	 * bound again, as a target's ring between two connections. */
	cr_assert_eq(wf_mr_bind(smr, seps[2]), 0);
	cr_assert_eq(wf_mr_rkey(smr, seps[2], 0, 8192, &rk), 0);
	fill(cbuf + 4096, 4096, 11);
	bound_write_lands(&p, ceps[2], seps[2], cmr, &rk, sbuf, cbuf, 4096, 6);
	cr_assert_eq(wf_ep_close(seps[2]), 0);
	pump_for(&p, &gs, 0, WF_CQE_DISCONNECT, seps[2]);
	wf_ep_destroy(seps[2]);
	cr_assert_eq(wf_mr_bind(smr, p.sep), 0);
	cr_assert_eq(wf_mr_rkey(smr, p.sep, 0, 8192, &rk), 0);
	fill(cbuf, 4096, 12);
	bound_write_lands(&p, p.cep, p.sep, cmr, &rk, sbuf, cbuf, 0, 7);

	for (int i = 0; i < 3; i++)
		wf_ep_destroy(ceps[i]);
	wf_ep_destroy(seps[0]);
	wf_ep_destroy(seps[1]);
	wf_mr_dereg(smr);
	wf_mr_dereg(cmr);
	ft_pair_close(&p);
	free(sbuf);
	free(cbuf);
}
