/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fabric conformance suite, messages and flow control: messages in order
 * both ways, send-credit exhaustion and recovery, a non-polling receiver
 * back-pressuring the sender without loss, sleeping on the ctx fd.
 *
 * The same cases for every backend (see fabric_test.h for the environment
 * that picks it); the upper layers rely on exactly what is asserted here.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "tests/fabric/fabric_test.h"

static struct ft_got gs, gc;    /* one test per process (Criterion forks) */

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
	char *sbuf = ft_xalloc(65536), *cbuf = ft_xalloc(65536);
	struct wf_mr *smr, *cmr;
	struct wf_rkey rk;

	ft_pair_open(&p, &o, &o);
	smr = ft_reg(p.sctx, sbuf, 65536, WF_ACCESS_REMOTE_WRITE | WF_ACCESS_REMOTE_READ);
	cmr = ft_reg(p.cctx, cbuf, 65536, 0);
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
	char *sbuf = ft_xalloc((size_t)sz * slots), *cbuf = ft_xalloc((size_t)sz * slots);
	struct wf_mr *smr, *cmr;
	struct wf_rkey rk;
	uint32_t posted = 0, recvd = 0, done = 0;
	int64_t stuck_since = 0, end;
	bool stuck = false;

	ft_pair_open(&p, &so, &co);
	smr = ft_reg(p.sctx, sbuf, (size_t)sz * slots, WF_ACCESS_REMOTE_WRITE);
	cmr = ft_reg(p.cctx, cbuf, (size_t)sz * slots, 0);
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

/*
 * wf_ctx_quiet: the caller's own poll of the fd covers the sockets, so the
 * hinted poll leaves them alone (tcp, unix) and the fd stays readable for
 * that poll; it still flushes batched posts and hands out what is queued.
 * The next poll without the hint does the work.  Verbs ignores the hint.
 */
Test(fabric, a_quiet_poll_leaves_the_sockets_to_the_next_poll)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(8, 8, 128);
	struct pollfd pf;
	struct wf_cqe c[4];
	int n;

	ft_pair_open(&p, &o, &o);
	while (wf_poll(p.sctx, c, 4) > 0)
		;
	pf = (struct pollfd){ .fd = wf_ctx_fd(p.sctx), .events = POLLIN };
	cr_assert_eq(wf_send(p.cep, "q1", 2, 1), 0);
	cr_assert_eq(wf_flush(p.cctx), 0);
	cr_assert_eq(poll(&pf, 1, ft_wait_ms()), 1, "the message never arrived");
	wf_ctx_quiet(p.sctx);
	n = wf_poll(p.sctx, c, 4);
	cr_assert_geq(n, 0);
	if (!ft_is_verbs()) {
		cr_assert_eq(n, 0, "a quiet poll read the socket");
		cr_assert_eq(poll(&pf, 1, 0), 1, "the fd must stay readable");
	} else {
		gs.n = 0;
		for (int i = 0; i < n; i++)
			gs.c[gs.n++] = c[i];
	}
	/* The hint lasted one poll: the next ones read the message. */
	if (!ft_count(&gs, WF_CQE_RECV_MSG))
		ft_pump(p.sctx, &gs, 1, NULL, NULL, 0, ft_wait_ms());
	cr_assert_eq(ft_count(&gs, WF_CQE_RECV_MSG), 1);

	/* Our own send: posted (or batched), a quiet poll sends it and
	 * returns its completion, with no socket read. */
	cr_assert_eq(wf_send(p.sep, "r", 1, 7), 0);
	if (!ft_is_verbs()) {
		wf_ctx_quiet(p.sctx);
		n = wf_poll(p.sctx, c, 4);
		cr_assert_eq(n, 1, "a quiet poll kept a queued completion");
		cr_assert_eq(c[0].op, WF_CQE_SEND);
		cr_assert_eq(c[0].wr_id, 7);
	} else {
		gs.n = 0;
		ft_pump(p.sctx, &gs, 1, NULL, NULL, 0, ft_wait_ms());
		cr_assert_eq(gs.c[0].op, WF_CQE_SEND);
	}
	/* The client: its own send's completion, then our message. */
	ft_pump(NULL, NULL, 0, p.cctx, &gc, 2, ft_wait_ms());
	cr_assert_not_null(ft_find(&gc, WF_CQE_SEND, 0));
	cr_assert_not_null(ft_find(&gc, WF_CQE_RECV_MSG, 0));
	cr_assert_eq(memcmp(ft_find(&gc, WF_CQE_RECV_MSG, 0)->msg, "r", 1), 0);
	ft_pair_close(&p);
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

/* Into gs, with wf_poll_wait on ctx (at most 4 sleeps), until a completion
 * of the type came. */
static void poll_wait_for(struct wf_ctx *ctx, uint32_t type, const char *what)
{
	struct wf_cqe c[4];
	int n, tries = 0;

	gs.n = 0;
	while (!ft_count(&gs, type)) {
		cr_assert_lt(tries++, 4, "%s was not reaped", what);
		n = wf_poll_wait(ctx, c, 4, ft_wait_ms());
		cr_assert_geq(n, 0);
		for (int i = 0; i < n; i++)
			gs.c[gs.n++] = c[i];
	}
}

/*
 * wf_poll_wait: with nothing ready it sleeps (here: until its bound, and
 * returns 0), wakes for a message and reaps it in the same call or the
 * next, and with a completion already queued (our own send) returns it
 * without sleeping.
 */
Test(fabric, poll_wait_sleeps_until_a_message_and_reaps_it)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(8, 8, 128);
	struct wf_cqe c[4];

	ft_pair_open(&p, &o, &o);
	while (wf_poll(p.sctx, c, 4) > 0)
		;
	while (wf_poll(p.cctx, c, 4) > 0)
		;
	cr_assert_eq(wf_poll_wait(p.sctx, c, 4, 20), 0, "nothing was sent");

	cr_assert_eq(wf_send(p.cep, "q1", 2, 1), 0);
	cr_assert_eq(wf_flush(p.cctx), 0);
	poll_wait_for(p.sctx, WF_CQE_RECV_MSG, "the message");
	cr_assert_eq(ft_find(&gs, WF_CQE_RECV_MSG, 0)->len, 2);
	cr_assert_eq(memcmp(ft_find(&gs, WF_CQE_RECV_MSG, 0)->msg, "q1", 2), 0);

	cr_assert_eq(wf_send(p.sep, "r", 1, 7), 0);
	poll_wait_for(p.sctx, WF_CQE_SEND, "our send's completion");
	cr_assert_eq(ft_find(&gs, WF_CQE_SEND, 0)->wr_id, 7);
	ft_pump(NULL, NULL, 0, p.cctx, &gc, 2, ft_wait_ms());
	ft_pair_close(&p);
}
