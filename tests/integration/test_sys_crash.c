/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kill -9 of a target in the middle of a stream of writes, restart, and
 * every acknowledged write reads back intact; repeated, each time another
 * target, bounded in time (WEFT_CRASH_ITERS rounds, default 8).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "bench/pattern.h"
#include "bench/stats.h"
#include "tests/integration/sys.h"

static struct sys_cluster C;

static void up(void)
{
	sys_start(&C);
}

static void down(void)
{
	sys_stop(&C);
}

TestSuite(sys_crash, .init = up, .fini = down, .timeout = 400);

/* 512 blocks, 8 per extent over 64 extents: every PG's primary gets some. */
#define NBLK     512u
#define QD       16u
#define BLK_OFF(b) ((uint64_t)(b) / 8 * SYS_EXT + (uint64_t)((b) % 8) * (SYS_EXT / 8))

struct state {
	uint64_t acked[NBLK];   /* last version acknowledged (0: none) */
	uint64_t maybe[NBLK];   /* a failed write's version: may have landed */
	uint8_t  busy[NBLK];
	uint64_t ver;
	uint64_t rng;
};

static uint64_t rnd(struct state *s)
{
	s->rng += 0x9e3779b97f4a7c15ull;
	return wf_mix64(s->rng);
}

/* One round: writes at QD until kill_ms after start, SIGKILL victim, keep
 * writing 300 ms, drain (requests to the dead target fail by timeout). */
static void stream(struct state *s, unsigned victim, unsigned kill_ms,
		   uint64_t *acks, uint64_t *fails)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	struct weft_cqe cq[QD];
	char *buf[QD];
	uint32_t blk[QD];
	uint64_t v[QD];
	bool inflight[QD] = { false };
	unsigned n_in = 0;
	uint64_t t0 = wf_now_ns(), kill_at = t0 + kill_ms * 1000000ull;
	uint64_t stop_at = kill_at + 300000000ull, give_up = stop_at + 30000000000ull;
	bool killed = false;

	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 2000, &cl, &vol, "vol1");
	for (unsigned i = 0; i < QD; i++) {
		buf[i] = weft_buf_alloc(cl, SYS_BS);
		cr_assert(buf[i]);
	}
	for (;;) {
		uint64_t now = wf_now_ns();
		int n;

		if (!killed && now >= kill_at) {
			sys_kill9(&C, victim);
			killed = true;
		}
		for (unsigned i = 0; i < QD && now < stop_at; i++) {
			uint32_t b;
			int ret;

			if (inflight[i])
				continue;
			/* A block with a write of unknown fate is left alone
			 * until the verify pass settles it. */
			do
				b = (uint32_t)(rnd(s) % NBLK);
			while (s->busy[b] || s->maybe[b]);
			v[i] = ++s->ver;
			blk[i] = b;
			sys_fill(buf[i], BLK_OFF(b), v[i]);
			ret = weft_write(vol, buf[i], SYS_BS, BLK_OFF(b), 0, i);
			if (ret == -EAGAIN)
				break;
			if (ret) {
				/* refused before it was sent: never lands */
				(*fails)++;
				continue;
			}
			s->busy[b] = 1;
			inflight[i] = true;
			n_in++;
		}
		if (!n_in && now >= stop_at)
			break;
		cr_assert(now < give_up, "writes still pending 30 s after the kill");
		n = weft_wait(cl, cq, 1, QD, 100);
		cr_assert(n >= 0, "weft_wait: %s", weft_strerror(n));
		for (int k = 0; k < n; k++) {
			unsigned i = (unsigned)cq[k].user_data;
			uint32_t b = blk[i];

			cr_assert(i < QD && inflight[i]);
			inflight[i] = false;
			n_in--;
			s->busy[b] = 0;
			if (cq[k].res == SYS_BS) {
				s->acked[b] = v[i];
				(*acks)++;
			} else {
				cr_assert(cq[k].res < 0, "short write %lld",
					  (long long)cq[k].res);
				s->maybe[b] = v[i];
				(*fails)++;
			}
		}
	}
	for (unsigned i = 0; i < QD; i++)
		weft_buf_free(cl, buf[i]);
	weft_cluster_close(cl);
	cr_assert(killed);
}

/* Every block holds its acknowledged version, or the version of a write
 * that failed after the kill (it may have reached the disk first). */
static void verify(struct state *s, unsigned round)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *buf;

	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 10000, &cl, &vol, "vol1");
	buf = weft_buf_alloc(cl, SYS_BS);
	cr_assert(buf);
	for (uint32_t b = 0; b < NBLK; b++) {
		ssize_t r = weft_pread(vol, buf, SYS_BS, BLK_OFF(b));
		int64_t got;

		cr_assert_eq(r, SYS_BS, "round %u: read block %u: %s", round, b,
			     weft_strerror((int)r));
		got = sys_decode(buf, BLK_OFF(b));
		cr_assert(got == (int64_t)s->acked[b] ||
			  (s->maybe[b] && got == (int64_t)s->maybe[b]),
			  "round %u: block %u (offset %llu) holds version %lld; "
			  "acknowledged %llu, unacknowledged %llu", round, b,
			  (unsigned long long)BLK_OFF(b), (long long)got,
			  (unsigned long long)s->acked[b],
			  (unsigned long long)s->maybe[b]);
		if (s->maybe[b]) {
			s->acked[b] = (uint64_t)got;
			s->maybe[b] = 0;
		}
	}
	weft_buf_free(cl, buf);
	weft_cluster_close(cl);
}

Test(sys_crash, kill9_during_writes)
{
	static struct state s;
	const char *e = getenv("WEFT_CRASH_ITERS");
	unsigned rounds = e ? (unsigned)atoi(e) : 8;
	uint64_t acks = 0, fails = 0;

	memset(&s, 0, sizeof(s));
	s.rng = (uint64_t)getpid();
	for (unsigned r = 0; r < rounds; r++) {
		unsigned victim = r % SYS_TARGETS;
		uint64_t a0 = acks;

		stream(&s, victim, 80 + (unsigned)(rnd(&s) % 200), &acks, &fails);
		cr_assert(acks > a0, "round %u: no write was acknowledged", r);
		sys_restart(&C, victim);
		verify(&s, r);
	}
	/* Writes to the killed target's PGs failed cleanly (not hung). */
	cr_expect(fails > 0, "no write failed although targets were killed");
	fprintf(stderr, "  %u rounds: %llu writes acknowledged and verified, "
		"%llu failed cleanly\n", rounds, (unsigned long long)acks,
		(unsigned long long)fails);
}
