/* SPDX-License-Identifier: Apache-2.0 */
/* weft-bench io's transport round-trip floor (bench/io_rtt.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/io_rtt.h"
#include "bench/stats.h"
#include "fabric/fabric.h"
#include "proto/wire.h"

/* Polls until a completion of kind op, bounded (30 s); 0 or -errno. */
static int rtt_wait(struct wf_ctx *ctx, uint32_t op, void *copy, size_t cap)
{
	uint64_t end = wf_now_ns() + 30000000000ull;

	while (wf_now_ns() < end) {
		struct wf_cqe c[8];
		int n = wf_poll(ctx, c, 8);

		if (n < 0)
			return n;
		for (int i = 0; i < n; i++) {
			if (c[i].status)
				return c[i].status;
			if (c[i].op == WF_CQE_DISCONNECT)
				return -ECONNRESET;
			if (c[i].op == op) {
				if (copy && c[i].msg)
					memcpy(copy, c[i].msg, c[i].len < cap ? c[i].len : cap);
				return 0;
			}
		}
	}
	return -ETIMEDOUT;
}

/* B: accepts one endpoint, sends its rkey, answers every message. */
static int rtt_peer(const char *transport, const char *laddr, uint32_t bs, int pfd)
{
	struct wf_ep_opts eo = { .size = sizeof(eo), .send_depth = 16, .recv_depth = 16 };
	struct wf_ctx *ctx;
	struct wf_listener *l;
	struct wf_ep *ep;
	struct wf_mr *mr;
	struct wf_rkey rk;
	struct wf_wire_rkey w;
	char reply[16] = { 0 };
	const char *step;
	void *buf;

	if (wf_bench_peer_accept(transport, laddr, &eo, pfd, wf_now_ns() + 30000000000ull,
				 &ctx, &l, &ep, &step))
		return 1;
	if (posix_memalign(&buf, 4096, bs))
		return 1;
	if (wf_mr_reg(ctx, buf, bs, WF_ACCESS_REMOTE_WRITE, &mr) ||
	    wf_mr_rkey(mr, ep, 0, bs, &rk))
		return 1;
	wf_rkey_encode(&rk, &w);
	if (wf_send(ep, &w, sizeof(w), 0))
		return 1;
	for (;;) {
		struct wf_cqe c[16];
		int n = wf_poll(ctx, c, 16);

		if (n < 0)
			return 1;
		for (int i = 0; i < n; i++) {
			if (c[i].op == WF_CQE_DISCONNECT || c[i].status) {
				wf_bench_peer_end(ctx, l, ep, mr, buf);
				return 0;
			}
			if (c[i].op == WF_CQE_RECV_MSG && wf_send(ep, reply, sizeof(reply), 1))
				return 1;
		}
	}
}

/*
 * A: iters round trips of the shape of a weft write (bs bytes by wf_write,
 * a 64-byte request, a 16-byte reply), after a warmup.  Fills h (ns).
 */
int wf_io_rtt_floor(const char *transport, uint32_t bs, struct wf_hist *h)
{
	struct wf_ctx_opts co = { .size = sizeof(co), .backend = wf_bench_backend(transport) };
	struct wf_ep_opts eo = { .size = sizeof(eo), .send_depth = 16, .recv_depth = 16,
				 .timeout_ms = 10000 };
	const uint32_t warmup = 2000, iters = 20000;
	struct wf_ctx *ctx = NULL;
	struct wf_ep *ep = NULL;
	struct wf_mr *mr = NULL;
	struct wf_rkey rk;
	struct wf_wire_rkey w;
	char addr[WF_BENCH_ADDR_LEN], laddr[128], req[64] = { 0 };
	void *buf = NULL;
	int pfd[2], ret, st;
	pid_t pid;

	if (!strcmp(transport, "unix"))
		snprintf(laddr, sizeof(laddr), "unix:/var/tmp/weft-bench-rtt-%d.sock",
			 (int)getpid());
	else
		snprintf(laddr, sizeof(laddr), "%s:127.0.0.1:0",
			 !strcmp(transport, "verbs") ? "rdma" : "tcp");
	if (pipe(pfd))
		return -errno;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		close(pfd[0]);
		_exit(rtt_peer(transport, laddr, bs, pfd[1]));
	}
	close(pfd[1]);
	if (read(pfd[0], addr, sizeof(addr)) != sizeof(addr) || !addr[0]) {
		close(pfd[0]);
		ret = -EIO;
		goto out_child;
	}
	close(pfd[0]);
	ret = wf_ctx_create(&co, &ctx);
	if (!ret)
		ret = wf_connect(ctx, addr, &eo, &ep);
	if (!ret && posix_memalign(&buf, 4096, bs))
		ret = -ENOMEM;
	if (!ret) {
		memset(buf, 0xa5, bs);
		ret = wf_mr_reg(ctx, buf, bs, 0, &mr);
	}
	if (!ret)
		ret = rtt_wait(ctx, WF_CQE_RECV_MSG, &w, sizeof(w));
	if (ret)
		goto out;
	wf_rkey_decode(&w, &rk);
	wf_hist_reset(h);
	for (uint32_t i = 0; i < warmup + iters; i++) {
		uint64_t s = wf_now_ns();

		ret = wf_write(ep, mr, 0, bs, &rk, 0, 1);
		if (!ret)
			ret = wf_send(ep, req, sizeof(req), 2);
		if (!ret)
			ret = rtt_wait(ctx, WF_CQE_RECV_MSG, NULL, 0);
		if (ret)
			goto out;
		if (i >= warmup)
			wf_hist_record(h, wf_now_ns() - s);
	}
out:
	if (ep)
		wf_ep_close(ep);
out_child:
	kill(pid, SIGTERM);     /* the peer ends on DISCONNECT; this is the
				 * backstop when the connect never happened */
	waitpid(pid, &st, 0);
	if (ep)
		wf_ep_destroy(ep);
	if (mr)
		wf_mr_dereg(mr);
	if (ctx)
		wf_ctx_destroy(ctx);
	free(buf);
	if (!strcmp(transport, "unix"))
		unlink(laddr + 5);
	return ret;
}

