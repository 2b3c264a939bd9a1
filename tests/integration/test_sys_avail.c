/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Availability of a client while one target is stopped (SIGSTOP: the
 * kernel still completes its TCP connects, nothing answers them).  A
 * stream of single-block writes at queue depth 8 over extents of vol1 (one
 * replica) on all three targets: the acknowledgements of the other two go
 * on while one is stopped, at a good share of the rate measured before,
 * the stopped target's writes fail with -ETIMEDOUT by their deadline, and
 * after SIGCONT its extents are written again.  Every block then reads back
 * as its last acknowledged version or as a failed write's.
 *
 * Count-based: the stopped period's acknowledgements are compared with the
 * same test's unstopped rate, not with a fixed figure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "placement/map.h"
#include "placement/placement.h"
#include "tests/integration/sys.h"

#define PER_TGT   4u            /* extents of each target in the stream */
#define NEXT      (PER_TGT * SYS_TARGETS)
#define BLOCKS    64u           /* blocks written per extent (rotating) */
#define QD        8u
#define TMO_MS    500u          /* the writing handle's request timeout */
#define MAYBE_MAX 32u           /* failed versions kept per block */

static struct sys_cluster C;
static pid_t stopped;

static void up(void)
{
	sys_start(&C);
}

static void down(void)
{
	if (stopped)
		kill(stopped, SIGCONT);
	sys_stop(&C);
}

TestSuite(sys_avail, .init = up, .fini = down, .timeout = 200);

struct ext {
	uint64_t base;                  /* byte offset in vol1 */
	uint32_t target;                /* its only replica's target id */
	uint32_t next_blk;
	bool     busy;
	uint64_t acks;
};

struct blk {
	uint64_t acked;
	uint64_t maybe[MAYBE_MAX];      /* failed versions after acked */
	uint32_t nmaybe;
};

struct inflight {
	uint32_t ext, blk;
	uint64_t ver;
	uint64_t t0;
	char *buf;
};

static struct ext ex[NEXT];
static struct blk bk[NEXT][BLOCKS];

static uint64_t ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* PER_TGT extents of vol1 on each target, from the map's placement. */
static void pick_extents(void)
{
	struct wf_map m;
	struct wf_map_err err;
	struct wf_placer pl;
	struct wf_pg_table t;
	unsigned have[SYS_TARGETS] = { 0 }, n = 0;
	int v;

	cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
	v = wf_map_volume_by_name(&m, "vol1");
	cr_assert_geq(v, 0);
	cr_assert_eq(wf_placer_init(&pl, &m), 0);
	cr_assert_eq(wf_pg_table_build(&t, &pl), 0);
	for (uint64_t e = 0; n < NEXT && e < m.volumes[v].size / SYS_EXT; e++) {
		struct wf_extent_loc loc;
		uint32_t id;

		cr_assert_eq(wf_place_extent(&t, &m, (uint32_t)v, e * SYS_EXT,
					     &loc), 0);
		cr_assert_eq(loc.n, 1);
		id = m.targets[loc.acting[0]].id;
		if (have[id] == PER_TGT)
			continue;
		have[id]++;
		ex[n].base = e * SYS_EXT;
		ex[n].target = id;
		n++;
	}
	cr_assert_eq(n, NEXT, "vol1 has no %u extents on every target", PER_TGT);
	wf_pg_table_free(&t);
	wf_placer_free(&pl);
	wf_map_free(&m);
}

struct run {
	struct weft_cluster *cl;
	struct weft_volume *vol;
	struct inflight fl[QD];
	char *bufs;
	uint64_t ver;
	uint32_t rr;                    /* round robin over extents */
	unsigned out;
	/* counted by the stream */
	uint64_t acks_of[SYS_TARGETS], fails_of[SYS_TARGETS];
	uint64_t late_max;              /* ms past its deadline a failure came */
	int other_err;
	bool drain;                     /* start nothing new */
};

/* Start writes on free extents until QD are in flight. */
static void fill(struct run *r)
{
	for (unsigned tries = 0; r->out < QD && tries < NEXT; tries++) {
		uint32_t e = r->rr++ % NEXT, slot;
		struct inflight *f;
		int ret;

		if (ex[e].busy)
			continue;
		for (slot = 0; r->fl[slot].buf; slot++)
			;
		f = &r->fl[slot];
		f->ext = e;
		f->blk = ex[e].next_blk++ % BLOCKS;
		f->ver = ++r->ver;
		f->buf = r->bufs + (size_t)slot * SYS_BS;
		f->t0 = ms();
		sys_fill(f->buf, ex[e].base + (uint64_t)f->blk * SYS_BS, f->ver);
		ret = weft_write(r->vol, f->buf, SYS_BS,
				 ex[e].base + (uint64_t)f->blk * SYS_BS, 0, slot);
		cr_assert_eq(ret, 0, "weft_write: %s", weft_strerror(ret));
		ex[e].busy = true;
		r->out++;
	}
}

/* Run the stream for dur ms (or until done() says so); reap as it goes. */
static void stream(struct run *r, uint64_t dur, bool (*done)(void))
{
	uint64_t end = ms() + dur;

	while (ms() < end && !(done && done())) {
		struct weft_cqe e[QD];
		int n;

		if (!r->drain)
			fill(r);
		else if (!r->out)
			return;
		n = weft_wait(r->cl, e, 1, QD, 20);
		cr_assert_geq(n, 0, "weft_wait: %s", weft_strerror(n));
		for (int i = 0; i < n; i++) {
			struct inflight *f = &r->fl[e[i].user_data];
			struct ext *x = &ex[f->ext];
			struct blk *b = &bk[f->ext][f->blk];

			if (e[i].res == SYS_BS) {
				b->acked = f->ver;
				b->nmaybe = 0;
				x->acks++;
				r->acks_of[x->target]++;
			} else {
				uint64_t took = ms() - f->t0;

				cr_assert_lt(b->nmaybe, MAYBE_MAX);
				b->maybe[b->nmaybe++] = f->ver;
				r->fails_of[x->target]++;
				if (e[i].res != -ETIMEDOUT && !r->other_err)
					r->other_err = (int)e[i].res;
				if (took > TMO_MS && took - TMO_MS > r->late_max)
					r->late_max = took - TMO_MS;
			}
			x->busy = false;
			f->buf = NULL;
			r->out--;
		}
	}
}

static uint64_t healthy(const struct run *r, uint32_t victim)
{
	uint64_t n = 0;

	for (uint32_t t = 0; t < SYS_TARGETS; t++)
		if (t != victim)
			n += r->acks_of[t];
	return n;
}

static uint32_t g_victim;
static bool victim_back(void)
{
	for (uint32_t e = 0; e < NEXT; e++)
		if (ex[e].target == g_victim && !ex[e].acks)
			return false;
	return true;
}

Test(sys_avail, stopped_target_freezes_no_client)
{
	struct run r = { 0 };
	const uint32_t victim = 2;
	uint64_t before, during, t0, stop_ms;
	uint64_t base_rate;             /* acks of the healthy ones per s */

	pick_extents();
	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, TMO_MS, &r.cl, &r.vol, "vol1");
	r.bufs = weft_buf_alloc(r.cl, QD * SYS_BS);
	cr_assert_not_null(r.bufs);

	/* Unstopped: every connection made, then one second measured. */
	stream(&r, 300, NULL);
	before = healthy(&r, victim);
	t0 = ms();
	stream(&r, 1000, NULL);
	base_rate = (healthy(&r, victim) - before) * 1000 / (ms() - t0);
	cr_assert_gt(base_rate, 0);

	/* Stopped: its writes wait out their deadline, the connection is
	 * closed and made again (and never answered) over and over.  The
	 * first deadlines pass in the first TMO_MS; measured after two. */
	stopped = sys_pid(&C, victim);
	cr_assert_gt(stopped, 0);
	cr_assert_eq(kill(stopped, SIGSTOP), 0);
	for (uint32_t e = 0; e < NEXT; e++)
		ex[e].acks = 0;
	stream(&r, 2 * TMO_MS, NULL);
	before = healthy(&r, victim);
	t0 = ms();
	stop_ms = 3000;
	stream(&r, stop_ms, NULL);
	stop_ms = ms() - t0;
	during = healthy(&r, victim) - before;
	fprintf(stderr, "sys_avail: %llu acks/s of the healthy targets before, "
		"%llu/s with target %u stopped; its writes failed %llu times, "
		"at most %llu ms past their %u ms deadline\n",
		(unsigned long long)base_rate,
		(unsigned long long)(during * 1000 / stop_ms), victim,
		(unsigned long long)r.fails_of[victim],
		(unsigned long long)r.late_max, TMO_MS);
	/* A blocking connect to the stopped target freezes the handle for
	 * its whole bound, over and over: a few percent get through. */
	cr_assert_geq(during * 4, base_rate * stop_ms / 1000,
		      "%llu acks in %llu ms with a target stopped, against "
		      "%llu/s before", (unsigned long long)during,
		      (unsigned long long)stop_ms,
		      (unsigned long long)base_rate);
	cr_assert_gt(r.fails_of[victim], 0, "the stopped target's writes "
		     "never failed");
	cr_assert_eq(r.other_err, 0, "a write failed with %s, not ETIMEDOUT",
		     weft_strerror(r.other_err));
	/* Generous: the deadline's own precision is measured, not held. */
	cr_assert_lt(r.late_max, TMO_MS + 1000, "a failure came %llu ms late",
		     (unsigned long long)r.late_max);

	/* Back: its extents are acknowledged again. */
	cr_assert_eq(kill(stopped, SIGCONT), 0);
	stopped = 0;
	g_victim = victim;
	for (uint32_t e = 0; e < NEXT; e++)
		ex[e].acks = 0;
	stream(&r, 20000, victim_back);
	cr_assert(victim_back(), "target %u's extents not written after SIGCONT",
		  victim);
	r.drain = true;
	stream(&r, 3 * TMO_MS, NULL);
	cr_assert_eq(r.out, 0, "writes left after their deadline");
	weft_buf_free(r.cl, r.bufs);
	weft_cluster_close(r.cl);

	/* Every block: its last acknowledged version, or a failed write's
	 * after it (which may have landed). */
	{
		struct weft_cluster *cl;
		struct weft_volume *vol;
		char *buf = aligned_alloc(4096, SYS_BS);

		cr_assert(buf);
		sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 5000, &cl, &vol, "vol1");
		for (uint32_t e = 0; e < NEXT; e++)
			for (uint32_t b = 0; b < BLOCKS; b++) {
				uint64_t off = ex[e].base + (uint64_t)b * SYS_BS;
				struct blk *k = &bk[e][b];
				int64_t v;
				bool ok;

				cr_assert_eq(weft_pread(vol, buf, SYS_BS, off),
					     SYS_BS);
				v = sys_decode(buf, off);
				ok = v == (int64_t)k->acked;
				for (uint32_t i = 0; !ok && i < k->nmaybe; i++)
					ok = v == (int64_t)k->maybe[i];
				cr_assert(ok, "block at %llu holds version %lld, "
					  "acknowledged %llu",
					  (unsigned long long)off, (long long)v,
					  (unsigned long long)k->acked);
			}
		free(buf);
		weft_cluster_close(cl);
	}
}
