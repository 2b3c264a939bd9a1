/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kill -9 of a target in the middle of a stream of writes, restart, and
 * every acknowledged write reads back intact; repeated, each time another
 * target, bounded in time (WEFT_CRASH_ITERS rounds, default 8).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include <criterion/criterion.h>

#include "tests/integration/sys.h"

SYS_SUITE(sys_crash, 400);

/* 512 blocks, 8 per extent over 64 extents: every PG's primary gets some. */
#define NBLK     512u
#define QD       16u

static uint64_t blk_off(uint32_t b)
{
	return (uint64_t)b / 8 * SYS_EXT + (uint64_t)(b % 8) * (SYS_EXT / 8);
}

static void kill_victim(void *victim)
{
	sys_kill9(&C, *(unsigned *)victim);
}

/* One round: writes at QD until kill_ms after start, SIGKILL victim, keep
 * writing 300 ms, drain (requests to the dead target fail by timeout, and
 * writes to its PGs may be refused before they are sent). */
static void stream(struct sys_stream *s, unsigned victim, unsigned kill_ms)
{
	struct sys_stream_opts o = {
		.qd = QD, .act_ms = kill_ms, .give_up_ms = 30000,
		.refused_fails = true, .act = kill_victim, .arg = &victim,
	};
	struct weft_cluster *cl;
	struct weft_volume *vol;

	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 2000, &cl, &vol, "vol1");
	sys_stream_round(s, cl, vol, &o);
	weft_cluster_close(cl);
}

/* Every block holds its acknowledged version, or the version of a write
 * that failed after the kill (it may have reached the disk first). */
static void verify(struct sys_stream *s, unsigned round)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *buf;

	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 10000, &cl, &vol, "vol1");
	buf = weft_buf_alloc(cl, SYS_BS);
	cr_assert(buf);
	for (uint32_t b = 0; b < NBLK; b++) {
		ssize_t r = weft_pread(vol, buf, SYS_BS, blk_off(b));

		cr_assert_eq(r, SYS_BS, "round %u: read block %u: %s", round, b,
			     weft_strerror((int)r));
		sys_stream_check(s, b, buf, round);
	}
	weft_buf_free(cl, buf);
	weft_cluster_close(cl);
}

Test(sys_crash, kill9_during_writes)
{
	struct sys_stream s;
	const char *e = getenv("WEFT_CRASH_ITERS");
	unsigned rounds = e ? (unsigned)atoi(e) : 8;

	sys_stream_init(&s, NBLK, blk_off);
	for (unsigned r = 0; r < rounds; r++) {
		unsigned victim = r % SYS_TARGETS;
		uint64_t a0 = s.acks;

		stream(&s, victim, 80 + (unsigned)(sys_stream_rnd(&s) % 200));
		cr_assert(s.acks > a0, "round %u: no write was acknowledged", r);
		sys_restart(&C, victim);
		verify(&s, r);
	}
	/* Writes to the killed target's PGs failed cleanly (not hung). */
	cr_expect(s.fails > 0, "no write failed although targets were killed");
	fprintf(stderr, "  %u rounds: %llu writes acknowledged and verified, "
		"%llu failed cleanly\n", rounds, (unsigned long long)s.acks,
		(unsigned long long)s.fails);
	sys_stream_free(&s);
}
