/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kill -9 of weft-target during a write stream, restart, and every
 * acknowledged write reads back: for each block, the data is a complete
 * version at least as new as the last one acknowledged and no newer than
 * the last one sent.  Repeated over many rounds on one store.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tests/target/tgt.h"

#define ROUNDS   20
#define NEXT     4              /* extents written */
#define BPE      32             /* 8 KiB blocks per extent used */
#define NBLK     (NEXT * BPE)
#define BLK      8192u
#define QD       12

struct blk {
	uint64_t acked;         /* newest acknowledged version, 0 none */
	uint64_t sent;          /* newest version sent */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A version of a block: 16-byte header (block, version), then a pattern
 * seeded by both, so a torn or misplaced block is caught. */
static void fill(char *p, uint32_t b, uint64_t v)
{
	uint64_t h[2] = { b, v };

	tgt_pattern(p, BLK, ((uint64_t)b << 40) ^ v);
	memcpy(p, h, sizeof(h));
}

static void verify(const char *p, uint32_t b, const struct blk *st)
{
	static char want[BLK];
	uint64_t h[2];
	bool zero = true;

	for (uint32_t i = 0; i < BLK && zero; i++)
		zero = !p[i];
	if (zero) {
		cr_assert_eq(st->acked, 0, "block %u reads zeros but version %llu "
			     "was acknowledged", b, (unsigned long long)st->acked);
		return;
	}
	memcpy(h, p, sizeof(h));
	cr_assert_eq(h[0], b, "block %u holds block %llu's data", b,
		     (unsigned long long)h[0]);
	cr_assert(h[1] >= st->acked && h[1] <= st->sent,
		  "block %u: version %llu, acknowledged %llu, sent %llu", b,
		  (unsigned long long)h[1], (unsigned long long)st->acked,
		  (unsigned long long)st->sent);
	fill(want, b, h[1]);
	cr_assert_eq(memcmp(p, want, BLK), 0, "block %u version %llu is torn", b,
		     (unsigned long long)h[1]);
}

Test(target_crash, kill9_during_writes_loses_no_ack, .timeout = 240)
{
	static struct blk st[NBLK];
	static char r[BLK];
	struct tgt_env e;
	struct tgt_client c;
	struct wf_reply rep;
	char addr[256];
	uint64_t ext[NEXT], ver = 0, acks = 0;
	uint32_t inflight[TGT_SLOTS];   /* block in slot, or UINT32_MAX */
	uint64_t inflight_v[TGT_SLOTS];
	unsigned seed = 12345;

	tgt_env_init(&e, 1);
	for (int i = 0; i < NEXT; i++)
		ext[i] = tgt_extent_of(&e, 0, (unsigned)i);
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%u", e.port);
	memset(st, 0, sizeof(st));

	for (int round = 0; round < ROUNDS; round++) {
		int64_t stop;
		unsigned busy = 0;

		cr_assert_eq(tgt_start(&e, false, NULL), 0, "start, round %d", round);
		cr_assert_eq(tgt_connect(&c, addr, TGT_SLOTS, 1), 0);

		/* Everything acknowledged so far is there. */
		for (uint32_t b = 0; b < NBLK; b++) {
			uint64_t off = ext[b / BPE] + (uint64_t)(b % BPE) * BLK;

			cr_assert_eq(tgt_io(&c, WF_OP_READ, TGT_VOL, off, BLK, r, 1),
				     WF_WS_OK, "read block %u", b);
			verify(r, b, &st[b]);
		}
		/* After a verified restart, what was sent but not acked is
		 * settled: the block holds what we just read. */
		for (uint32_t b = 0; b < NBLK; b++) {
			uint64_t off = ext[b / BPE] + (uint64_t)(b % BPE) * BLK;
			uint64_t h[2];

			cr_assert_eq(tgt_io(&c, WF_OP_READ, TGT_VOL, off, BLK, r, 1),
				     WF_WS_OK);
			memcpy(h, r, sizeof(h));
			st[b].acked = st[b].sent = h[1];
		}

		for (uint32_t s = 0; s < TGT_SLOTS; s++)
			inflight[s] = UINT32_MAX;
		/* Stream writes at QD; kill the target at a random moment. */
		stop = now_ms() + 40 + rand_r(&seed) % 200;
		while (now_ms() < stop || busy == 0) {
			while (busy < QD) {
				uint32_t s, b = (uint32_t)rand_r(&seed) % NBLK;

				for (s = 0; s < QD && inflight[s] != UINT32_MAX; s++)
					;
				/* One write per block in flight: ordering
				 * between two would be up to the device. */
				for (uint32_t k = 0; k < QD; k++)
					if (inflight[k] == b)
						b = UINT32_MAX;
				if (b == UINT32_MAX)
					break;
				fill(c.buf + (size_t)s * c.g.slot_size, b, ++ver);
				cr_assert_eq(tgt_post(&c, WF_OP_WRITE, TGT_VOL,
						      ext[b / BPE] + (uint64_t)(b % BPE) * BLK,
						      BLK, s, ver & 1 ? WF_REQ_FUA : 0, 1), 0);
				inflight[s] = b;
				inflight_v[s] = ver;
				st[b].sent = ver;
				busy++;
			}
			cr_assert_eq(tgt_reply(&c, &rep, 5000), 0);
			cr_assert_eq(rep.status, WF_WS_OK, "%s",
				     wf_wire_status_name(rep.status));
			cr_assert_lt(rep.slot, QD);
			cr_assert_neq(inflight[rep.slot], UINT32_MAX);
			st[inflight[rep.slot]].acked = inflight_v[rep.slot];
			inflight[rep.slot] = UINT32_MAX;
			busy--;
			acks++;
		}
		tgt_kill(&e, SIGKILL, true);
		/* Replies that were already on their way still count. */
		while (tgt_reply(&c, &rep, 200) == 0)
			if (rep.status == WF_WS_OK && inflight[rep.slot] != UINT32_MAX) {
				st[inflight[rep.slot]].acked = inflight_v[rep.slot];
				inflight[rep.slot] = UINT32_MAX;
				acks++;
			}
		tgt_close(&c);
	}
	/* Final check after the last kill. */
	cr_assert_eq(tgt_start(&e, false, NULL), 0);
	cr_assert_eq(tgt_connect(&c, addr, TGT_SLOTS, 1), 0);
	for (uint32_t b = 0; b < NBLK; b++) {
		cr_assert_eq(tgt_io(&c, WF_OP_READ, TGT_VOL,
				    ext[b / BPE] + (uint64_t)(b % BPE) * BLK, BLK, r, 1),
			     WF_WS_OK);
		verify(r, b, &st[b]);
	}
	tgt_close(&c);
	cr_assert_gt(acks, ROUNDS * 10, "only %llu writes acknowledged",
		     (unsigned long long)acks);
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}
