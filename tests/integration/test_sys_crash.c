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

static void restart_victim(void *victim)
{
	sys_restart(&C, *(unsigned *)victim);
}

/* (sys_open's queue depth, 64, is enough for both passes.) */
static void open_vol1(unsigned qd, unsigned timeout_ms, struct weft_cluster **cl,
		      struct weft_volume **vol)
{
	(void)qd;
	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, timeout_ms, cl, vol, "vol1");
}

Test(sys_crash, kill9_during_writes)
{
	struct sys_stream s;
	const char *e = getenv("WEFT_CRASH_ITERS");
	unsigned rounds = e ? (unsigned)atoi(e) : 8;

	sys_stream_init(&s, NBLK, blk_off);
	for (unsigned r = 0; r < rounds; r++) {
		unsigned victim = r % SYS_TARGETS;
		/* Writes at QD, SIGKILL of victim after 80-280 ms (requests
		 * to the dead target fail by timeout, and writes to its PGs
		 * may be refused before they are sent), a restart, and every
		 * block read back. */
		struct sys_stream_opts o = {
			.open = open_vol1, .qd = QD, .timeout_ms = 2000,
			.act_ms = 80 + (unsigned)(sys_stream_rnd(&s) % 200),
			.give_up_ms = 30000, .refused_fails = true,
			.act = kill_victim, .after = restart_victim, .arg = &victim,
			.verify_timeout_ms = 10000, .verify_run = 1,
		};

		sys_stream_round(&s, &o, r);
	}
	/* Writes to the killed target's PGs failed cleanly (not hung). */
	cr_expect(s.fails > 0, "no write failed although targets were killed");
	fprintf(stderr, "  %u rounds: %llu writes acknowledged and verified, "
		"%llu failed cleanly\n", rounds, (unsigned long long)s.acks,
		(unsigned long long)s.fails);
	sys_stream_free(&s);
}
