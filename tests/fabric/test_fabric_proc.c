/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fabric conformance suite, two processes: a peer SIGKILLed with reads
 * and writes in flight, and a two-process echo.
 *
 * The same cases for every backend (see fabric_test.h for the environment
 * that picks it); the upper layers rely on exactly what is asserted here.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "proto/wire.h"
#include "tests/fabric/fabric_test.h"

static struct ft_got gc;        /* one test per process (Criterion forks) */

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
	char addr[256], *buf = ft_xalloc(1 << 20);
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
	mr = ft_reg(ctx, buf, 1 << 20, 0);

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
	char addr[256], *src = ft_xalloc(1 << 16), *dst = ft_xalloc(1 << 16);
	char *rd = ft_xalloc(4096);
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
	smr = ft_reg(ctx, src, 1 << 16, 0);
	dmr = ft_reg(ctx, dst, 1 << 16, WF_ACCESS_REMOTE_WRITE);
	rmr = ft_reg(ctx, rd, 4096, 0);
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

		ft_fill(src + slot * 4096, 4096, k);
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
