/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fabric conformance suite, one-sided operations: write-with-immediate
 * byte-exact at the right offset, plain write then notification,
 * zero-length write-with-immediate, reads, and a region bound to one
 * endpoint (wf_mr_bind).
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

Test(fabric, write_imm_lands_exactly)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(16, 16, 256);
	const size_t len = 65536;
	char *sbuf = ft_xalloc(len), *cbuf = ft_xalloc(len);
	struct wf_mr *smr, *cmr;
	struct wf_rkey rk;

	ft_pair_open(&p, &o, &o);
	memset(sbuf, 0xaa, len);
	ft_fill(cbuf, len, 1);
	smr = ft_reg(p.sctx, sbuf, len, WF_ACCESS_REMOTE_WRITE);
	cmr = ft_reg(p.cctx, cbuf, len, 0);
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
	char *sbuf = ft_xalloc(len), *cbuf = ft_xalloc(len);
	struct wf_mr *smr, *cmr;
	struct wf_rkey rk;

	ft_pair_open(&p, &o, &o);
	ft_fill(cbuf, len, 3);
	smr = ft_reg(p.sctx, sbuf, len, WF_ACCESS_REMOTE_WRITE);
	cmr = ft_reg(p.cctx, cbuf, len, 0);
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
	char *sbuf = ft_xalloc(4096), *cbuf = ft_xalloc(4096);
	struct wf_mr *smr, *cmr;
	struct wf_rkey rk;

	ft_pair_open(&p, &o, &o);
	smr = ft_reg(p.sctx, sbuf, 4096, WF_ACCESS_REMOTE_WRITE);
	cmr = ft_reg(p.cctx, cbuf, 4096, 0);
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
	char *sbuf = ft_xalloc(len), *cbuf = ft_xalloc(len);
	struct wf_mr *smr, *cmr;
	struct wf_rkey rk;

	ft_pair_open(&p, &o, &o);
	ft_fill(sbuf, len, 7);
	memset(cbuf, 0x55, len);
	smr = ft_reg(p.sctx, sbuf, len, WF_ACCESS_REMOTE_READ);
	cmr = ft_reg(p.cctx, cbuf, len, 0);
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
	char *sbuf = ft_xalloc(8192), *cbuf = ft_xalloc(8192);
	struct wf_mr *smr, *cmr;
	struct wf_rkey before, rk;
	int ret;

	ft_pair_open(&p, &o, &o);
	smr = ft_reg(p.sctx, sbuf, 8192, WF_ACCESS_REMOTE_WRITE);
	ret = ft_accept_many(&p, seps, 3, ceps, &o);
	cr_assert_eq(ret, 0, "three more endpoints: %s", strerror(-ret));
	cmr = ft_reg(p.cctx, cbuf, 8192, 0);
	memset(sbuf, 0x11, 8192);
	ft_fill(cbuf, 8192, 9);
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
	ft_fill(cbuf, 4096, 10);
	bound_write_lands(&p, p.cep, p.sep, cmr, &rk, sbuf, cbuf, 0, 4);

	/* Unbound: any endpoint of the ctx again. */
	cr_assert_eq(wf_mr_bind(smr, NULL), 0);
	cr_assert_eq(wf_mr_rkey(smr, seps[2], 0, 8192, &rk), 0);
	bound_write_lands(&p, ceps[2], seps[2], cmr, &rk, sbuf, cbuf, 4096, 5);

	/* Bound to seps[2], which then goes: the region stays closed until
	 * bound again, as a target's ring between two connections. */
	cr_assert_eq(wf_mr_bind(smr, seps[2]), 0);
	cr_assert_eq(wf_mr_rkey(smr, seps[2], 0, 8192, &rk), 0);
	ft_fill(cbuf + 4096, 4096, 11);
	bound_write_lands(&p, ceps[2], seps[2], cmr, &rk, sbuf, cbuf, 4096, 6);
	cr_assert_eq(wf_ep_close(seps[2]), 0);
	pump_for(&p, &gs, 0, WF_CQE_DISCONNECT, seps[2]);
	wf_ep_destroy(seps[2]);
	cr_assert_eq(wf_mr_bind(smr, p.sep), 0);
	cr_assert_eq(wf_mr_rkey(smr, p.sep, 0, 8192, &rk), 0);
	ft_fill(cbuf, 4096, 12);
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
