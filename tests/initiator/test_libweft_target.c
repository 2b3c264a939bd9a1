/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libweft against real weft-target processes on loopback: data across
 * extents and PGs (tcp and unix), discard, async queue depth, errors, a
 * SIGKILLed target (bounded failure, then recovery), epoch changes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "initiator/include/weft.h"
#include "initiator/weft_int.h"
#include "tests/initiator/cluster.h"
#include "tests/initiator/util.h"

static struct lcluster C;

static struct weft_cluster *open_cl(unsigned qd, unsigned timeout_ms,
				    const char *transport, unsigned flags)
{
	return tu_open(C.map, qd, timeout_ms, transport, flags);
}

static void up3(void)
{
	lc_init(&C, 3);
}

static void down(void)
{
	lc_fini(&C);
}

/* A handle on vol1 (tcp) with len bytes of pattern seed written at 0 from
 * *buf, a registered buffer of len bytes. */
static struct weft_volume *vol1_written(struct weft_cluster **cl, unsigned qd,
					unsigned timeout_ms, char **buf,
					size_t len, uint64_t seed)
{
	struct weft_volume *v;

	*cl = open_cl(qd, timeout_ms, "tcp", 0);
	v = tu_vol(*cl, "vol1");
	*buf = weft_buf_alloc(*cl, len);
	cr_assert(*buf);
	tu_fill(*buf, len, seed);
	cr_assert_eq(weft_pwrite(v, *buf, len, 0, 0), (ssize_t)len);
	return v;
}

static void verify_span(struct weft_cluster *cl, struct weft_volume *v,
			uint64_t off, size_t len, bool registered, uint64_t seed)
{
	struct tu_bufs b;

	tu_bufs_get(cl, len, registered, &b);
	tu_roundtrip(v, &b, off, len, seed);
	tu_bufs_put(cl, &b);
}

Test(target, write_read_across_extents, .init = up3, .fini = down, .timeout = 120)
{
	struct weft_cluster *cl = open_cl(0, 0, "tcp", 0);
	struct weft_volume *v = tu_vol(cl, "vol1");

	/* Across four extent boundaries, both buffer kinds */
	verify_span(cl, v, MiB - 12 * KiB, 3 * MiB + 20 * KiB, true, 1);
	verify_span(cl, v, 7 * MiB - 4 * KiB, 2 * MiB, false, 2);
	/* One block in each of many extents: many PGs, all three targets */
	for (unsigned e = 0; e < 64; e++)
		verify_span(cl, v, (uint64_t)e * 2 * MiB + 4096 * (e % 7), 4096,
			    e & 1, 100 + e);
	/* The last block of the volume */
	verify_span(cl, v, CL_VOL_SIZE - 4096, 4096, true, 3);
	weft_cluster_close(cl);
}

Test(target, unix_transport, .init = up3, .fini = down, .timeout = 60)
{
	struct weft_cluster *cl = open_cl(0, 0, "unix", 0);
	struct weft_volume *v = tu_vol(cl, "vol1");

	verify_span(cl, v, 3 * MiB - 64 * KiB, 1 * MiB, true, 4);
	verify_span(cl, v, 11 * MiB, 256 * KiB, false, 5);
	weft_cluster_close(cl);
}

Test(target, bad_requests_and_discard, .init = up3, .fini = down, .timeout = 60)
{
	struct weft_cluster *cl = open_cl(0, 0, "tcp", 0);
	struct weft_volume *v = tu_vol(cl, "vol1");
	char *b = weft_buf_alloc(cl, 4 * MiB), *z = calloc(1, 4 * MiB);

	cr_assert_eq(weft_pread(v, b, 0, 0), -EINVAL, "zero length");
	cr_assert_eq(weft_pread(v, b, 4096, 100), -EINVAL, "unaligned");
	cr_assert_eq(weft_pwrite(v, b, 4095, 0, 0), -EINVAL, "unaligned length");
	cr_assert_eq(weft_pread(v, b, 8192, CL_VOL_SIZE - 4096), -ERANGE);
	cr_assert_eq(weft_pwrite(v, b, 4096, CL_VOL_SIZE, 0), -ERANGE);
	cr_assert_eq(weft_discard_sync(v, 0, CL_VOL_SIZE + 4096), -ERANGE);
	/* never written: zeros */
	cr_assert_eq(weft_pread(v, b, 4 * MiB, 20 * MiB), 4 * MiB);
	cr_assert_eq(memcmp(b, z, 4 * MiB), 0);
	/* discard a whole extent and a part of two others */
	tu_fill(b, 4 * MiB, 6);
	cr_assert_eq(weft_pwrite(v, b, 4 * MiB, 20 * MiB, 0), 4 * MiB);
	cr_assert_eq(weft_discard_sync(v, 20 * MiB + 512 * KiB, 2 * MiB), 0);
	cr_assert_eq(weft_fsync(v), 0);
	cr_assert_eq(weft_pread(v, z, 4 * MiB, 20 * MiB), 4 * MiB);
	cr_assert_eq(memcmp(z, b, 512 * KiB), 0, "before the discard: data");
	for (size_t i = 512 * KiB; i < 2560 * KiB; i++)
		cr_assert_eq(z[i], 0, "discarded byte %zu reads 0", i);
	cr_assert_eq(memcmp(z + 2560 * KiB, b + 2560 * KiB, 1536 * KiB), 0);
	free(z);
	weft_cluster_close(cl);
}

/* 32 requests in flight, random offsets, every completion checked. */
Test(target, async_qd32, .init = up3, .fini = down, .timeout = 120)
{
	enum { QD = 32, BS = 4096, N = 4000 };
	struct weft_cluster *cl = open_cl(QD, 0, "tcp", 0);
	struct weft_volume *v = tu_vol(cl, "vol1");
	char *buf = weft_buf_alloc(cl, QD * BS);
	uint64_t offs[QD], x = 12345;
	uint32_t *ver = calloc(CL_VOL_SIZE / BS, sizeof(*ver));
	struct weft_cqe e[QD];
	int submitted = 0, done = 0, slot;

	cr_assert(buf && ver);
	/* Phase 1: writes of a stamped pattern; phase 2: reads, verified. */
	for (int phase = 0; phase < 2; phase++) {
		submitted = done = 0;
		for (slot = 0; slot < QD && submitted < N; slot++, submitted++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			offs[slot] = (x >> 20) % (CL_VOL_SIZE / BS) * BS;
			if (!phase) {
				ver[offs[slot] / BS]++;
				tu_fill(buf + slot * BS, BS, offs[slot] << 8 | ver[offs[slot] / BS]);
				cr_assert_eq(weft_write(v, buf + slot * BS, BS, offs[slot],
							0, (uint64_t)slot), 0);
			} else {
				cr_assert_eq(weft_read(v, buf + slot * BS, BS, offs[slot],
						       (uint64_t)slot), 0);
			}
		}
		while (done < submitted) {
			int n = weft_wait(cl, e, 1, QD, 10000);

			cr_assert_gt(n, 0, "completions within 10 s");
			for (int i = 0; i < n; i++) {
				int s = (int)e[i].user_data;
				uint64_t o = offs[s];

				cr_assert_eq(e[i].res, BS, "res %lld", (long long)e[i].res);
				done++;
				if (phase) {
					char want[BS];

					if (ver[o / BS])
						tu_fill(want, BS, o << 8 | ver[o / BS]);
					else
						memset(want, 0, BS);
					/* a later write to the same block may
					 * have overtaken: accept only the last
					 * version of the writes phase */
					cr_assert_eq(memcmp(want, buf + s * BS, BS), 0,
						     "block %llu", (unsigned long long)o);
				}
				if (submitted < N) {
					x = x * 6364136223846793005ull +
					    1442695040888963407ull;
					o = (x >> 20) % (CL_VOL_SIZE / BS) * BS;
					if (!phase) {
						/* never two writes to one block
						 * in flight */
						bool busy = false;

						for (int k = 0; k < QD; k++)
							busy |= k != s && offs[k] == o;
						if (busy)
							o = (o + BS * 7919) % CL_VOL_SIZE;
						for (int k = 0; k < QD; k++)
							busy |= k != s && offs[k] == o;
						if (busy) {
							offs[s] = UINT64_MAX;
							continue;
						}
						ver[o / BS]++;
						tu_fill(buf + s * BS, BS,
						     o << 8 | ver[o / BS]);
						offs[s] = o;
						cr_assert_eq(weft_write(v, buf + s * BS, BS,
									o, 0, (uint64_t)s), 0);
					} else {
						offs[s] = o;
						cr_assert_eq(weft_read(v, buf + s * BS, BS,
								       o, (uint64_t)s), 0);
					}
					submitted++;
				}
			}
		}
	}
	free(ver);
	weft_cluster_close(cl);
}

/* SIGKILL a target: its requests fail with -ETIMEDOUT in bounded time,
 * other targets keep working; restarted, it serves again and every
 * acknowledged write is there. */
Test(target, killed_target_times_out_then_recovers, .init = up3, .fini = down,
     .timeout = 120)
{
	struct weft_cluster *cl;
	char *w;
	struct weft_volume *v = vol1_written(&cl, 0, 800, &w, 16 * MiB, 8);
	char *r = weft_buf_alloc(cl, 16 * MiB);
	uint64_t off0 = UINT64_MAX, off1 = UINT64_MAX;
	double t0;
	ssize_t n;

	/* an extent of target 0 and one of another target */
	for (uint64_t e = 0; e < 16; e++) {
		struct wf_extent_loc loc;
		uint32_t id;

		cr_assert_eq(wf_place_extent(&cl->table, &cl->map, v->idx,
					     e * MiB, &loc), 0);
		id = cl->map.targets[loc.acting[0]].id;
		if (id == 0 && off0 == UINT64_MAX)
			off0 = e * MiB;
		if (id != 0 && off1 == UINT64_MAX)
			off1 = e * MiB;
	}
	cr_assert_neq(off0, UINT64_MAX);
	cr_assert_neq(off1, UINT64_MAX);
	lc_kill(&C, 0, SIGKILL, true);
	t0 = tu_now_s();
	n = weft_pread(v, r, MiB, off0);
	cr_assert_eq(n, -ETIMEDOUT, "dead primary: %zd", n);
	cr_assert_lt(tu_now_s() - t0, 5.0, "bounded");
	n = weft_pwrite(v, w, 64 * KiB, off0, 0);
	cr_assert_eq(n, -ETIMEDOUT);
	cr_assert_eq(weft_pread(v, r, MiB, off1), MiB, "others serve");
	cr_assert_eq(memcmp(r, w + off1, MiB), 0);
	/* a request spanning both: the first error wins, no hang */
	n = weft_pread(v, r, 16 * MiB, 0);
	cr_assert_eq(n, -ETIMEDOUT);
	lc_start(&C, 0);
	cr_assert_eq(weft_pread(v, r, 16 * MiB, 0), 16 * MiB, "recovered");
	cr_assert_eq(memcmp(r, w, 16 * MiB), 0, "acknowledged writes survive");
	weft_cluster_close(cl);
}

/* SIGKILL during a stream of async writes: every acknowledged write reads
 * back after the restart. */
Test(target, kill_during_writes, .init = up3, .fini = down, .timeout = 180)
{
	enum { QD = 16, BS = 64 * 1024 };
	struct weft_cluster *cl = open_cl(QD, 600, "tcp", 0);
	struct weft_volume *v = tu_vol(cl, "vol1");
	char *buf = weft_buf_alloc(cl, QD * BS), *r = weft_buf_alloc(cl, BS);
	uint64_t nblk = CL_VOL_SIZE / BS, next = 0;
	int8_t *acked = calloc(nblk, 1);
	struct weft_cqe e[QD];
	int inflight = 0;
	bool killed = false;

	/* user_data: block << 8 | buffer slot */
	for (int s = 0; s < QD; s++, next++) {
		tu_fill(buf + (size_t)s * BS, BS, next + 1000);
		cr_assert_eq(weft_write(v, buf + (size_t)s * BS, BS, next * BS, 0,
					next << 8 | (uint64_t)s), 0);
		inflight++;
	}
	while (inflight) {
		int n = weft_wait(cl, e, 1, QD, 5000);

		cr_assert_gt(n, 0);
		for (int i = 0; i < n; i++) {
			uint64_t b = e[i].user_data >> 8;
			int s = (int)(e[i].user_data & 0xff);

			inflight--;
			if (e[i].res == BS)
				acked[b] = 1;
			else
				cr_assert_eq(e[i].res, -ETIMEDOUT, "%lld",
					     (long long)e[i].res);
			if (!killed && next >= 400) {
				lc_kill(&C, 1, SIGKILL, true);
				killed = true;
			}
			if (next < nblk && next < 1200) {
				tu_fill(buf + (size_t)s * BS, BS, next + 1000);
				cr_assert_eq(weft_write(v, buf + (size_t)s * BS, BS,
							next * BS, 0,
							next << 8 | (uint64_t)s), 0);
				inflight++;
				next++;
			}
		}
	}
	cr_assert(killed);
	lc_start(&C, 1);
	for (uint64_t b = 0; b < next; b++) {
		char want[BS];

		if (!acked[b])
			continue;
		cr_assert_eq(weft_pread(v, r, BS, b * BS), BS);
		tu_fill(want, BS, b + 1000);
		cr_assert_eq(memcmp(r, want, BS), 0, "acked block %llu",
			     (unsigned long long)b);
	}
	free(acked);
	weft_cluster_close(cl);
}

/* A new epoch: the targets reload (SIGHUP), the client gets STALE and
 * reloads too. */
Test(target, epoch_change, .init = up3, .fini = down, .timeout = 60)
{
	struct weft_cluster *cl = open_cl(0, 0, "tcp", 0);
	struct weft_volume *v = tu_vol(cl, "vol1");

	verify_span(cl, v, 0, 2 * MiB, true, 9);
	lc_write_map(&C, 2);
	for (unsigned t = 0; t < 3; t++)
		lc_kill(&C, t, SIGHUP, false);
	usleep(200 * 1000);
	verify_span(cl, v, 0, 2 * MiB, true, 10);
	cr_assert_eq(cl->map.epoch, 2);
	weft_cluster_close(cl);
}

/* ---- short-circuit reads ------------------------------------------------ */

/*
 * Short-circuit sessions open without waiting: a target's first reads go
 * through the network until its control socket has answered.  Read
 * [off, off + len) into r until one read went local (bounded), every read
 * checked against want.
 */
static void read_until_local(struct weft_cluster *cl, struct weft_volume *v,
			     char *r, const char *want, size_t len, uint64_t off)
{
	uint64_t sc0 = cl->stats.sc_reads;
	double t0 = tu_now_s();

	do {
		cr_assert_eq(weft_pread(v, r, len, off), (ssize_t)len);
		cr_assert_eq(memcmp(r, want, len), 0, "read at %llu",
			     (unsigned long long)off);
		if (cl->stats.sc_reads > sc0)
			return;
		usleep(1000);
	} while (tu_now_s() - t0 < 5);
	cr_assert_fail("no local read within 5 s (%llu fallbacks)",
		       (unsigned long long)cl->stats.sc_fallbacks);
}

/* Short-circuit reads return what network reads return. */
Test(shortcircuit, equals_network, .init = up3, .fini = down, .timeout = 120)
{
	struct weft_cluster *a = open_cl(0, 0, "tcp", 0);
	struct weft_cluster *b = open_cl(0, 0, "tcp", WEFT_F_NO_SHORT_CIRCUIT);
	struct weft_volume *va = tu_vol(a, "vol1"), *vb = tu_vol(b, "vol1");
	size_t len = 12 * MiB;
	char *w = malloc(len), *ra = weft_buf_alloc(a, len), *rb = malloc(len);
	char *heap = malloc(len + 1);

	tu_fill(w, len, 21);
	cr_assert_eq(weft_pwrite(vb, w, len, 2 * MiB, 0), (ssize_t)len);
	read_until_local(a, va, ra, w, len, 2 * MiB);
	cr_assert_eq(weft_pread(vb, rb, len, 2 * MiB), (ssize_t)len);
	cr_assert_eq(memcmp(ra, rb, len), 0);
	cr_assert_eq(memcmp(ra, w, len), 0);
	/* an unaligned heap buffer: through the bounce chunk */
	cr_assert_eq(weft_pread(va, heap + 1, len, 2 * MiB), (ssize_t)len);
	cr_assert_eq(memcmp(heap + 1, w, len), 0);
	/* never written (unmapped): zeros, through the target */
	cr_assert_eq(weft_pread(va, ra, MiB, 40 * MiB), MiB);
	for (size_t i = 0; i < MiB; i++)
		cr_assert_eq(ra[i], 0);
	cr_assert_gt(a->stats.sc_reads, 0, "reads took the local path");
	cr_assert_eq(b->stats.sc_reads, 0, "WEFT_F_NO_SHORT_CIRCUIT");
	free(w);
	free(rb);
	free(heap);
	weft_cluster_close(a);
	weft_cluster_close(b);
}

/* A target serving a newer epoch than the client's map gives no
 * short-circuit session: the read goes through the network, which answers
 * STALE (or a GRANT with the newer epoch), and the client reloads the map
 * before reading locally. */
/* Move every target to epoch 2 (new map file + SIGHUP) and wait until b,
 * a handle that never reads locally, has learnt it by STALE from the target
 * of r's extent: that target serves epoch 2 then. */
static void targets_to_epoch2(struct weft_cluster *b, struct weft_volume *vb,
			      char *r)
{
	double t0;

	lc_write_map(&C, 2);
	for (unsigned t = 0; t < 3; t++)
		lc_kill(&C, t, SIGHUP, false);
	t0 = tu_now_s();
	while (b->map.epoch != 2 && tu_now_s() - t0 < 5) {
		cr_assert_eq(weft_pread(vb, r, MiB, 0), MiB);
		usleep(10 * 1000);
	}
	cr_assert_eq(b->map.epoch, 2);
}

Test(shortcircuit, refused_when_target_epoch_newer, .init = up3,
     .fini = down, .timeout = 60)
{
	struct weft_cluster *a = open_cl(0, 0, "tcp", 0);
	struct weft_cluster *b = open_cl(0, 0, "tcp", WEFT_F_NO_SHORT_CIRCUIT);
	struct weft_volume *va = tu_vol(a, "vol1"), *vb = tu_vol(b, "vol1");
	char *w = weft_buf_alloc(b, MiB), *r = weft_buf_alloc(a, MiB);

	tu_fill(w, MiB, 77);
	cr_assert_eq(weft_pwrite(vb, w, MiB, 0, 0), MiB);
	targets_to_epoch2(b, vb, r);
	cr_assert_eq(a->map.epoch, 1);
	cr_assert_eq(weft_pread(va, r, MiB, 0), MiB);
	cr_assert_eq(memcmp(r, w, MiB), 0);
	cr_assert_eq(a->map.epoch, 2, "the read did not go local at epoch 1");
	/* At the same epoch the local path is used again. */
	read_until_local(a, va, r, w, MiB, 0);
	weft_cluster_close(a);
	weft_cluster_close(b);
}

/* Discards and reallocations through another handle: a short-circuit
 * read after they are acknowledged never sees the old data. */
Test(shortcircuit, never_stale_after_discard, .init = up3, .fini = down,
     .timeout = 120)
{
	struct weft_cluster *a = open_cl(0, 0, "tcp", 0);
	struct weft_cluster *b = open_cl(0, 0, "tcp", WEFT_F_NO_SHORT_CIRCUIT);
	struct weft_volume *va = tu_vol(a, "vol1"), *vb = tu_vol(b, "vol1");
	char *w = weft_buf_alloc(b, MiB), *r = weft_buf_alloc(a, MiB);
	char *z = calloc(1, MiB);

	for (int round = 0; round < 20; round++) {
		uint64_t off = (uint64_t)(round % 6) * MiB;

		tu_fill(w, MiB, 1000 + (uint64_t)round);
		cr_assert_eq(weft_pwrite(vb, w, MiB, off, 0), MiB);
		cr_assert_eq(weft_pread(va, r, MiB, off), MiB);
		cr_assert_eq(memcmp(r, w, MiB), 0, "round %d: new data", round);
		cr_assert_eq(weft_discard_sync(vb, off, MiB), 0);
		cr_assert_eq(weft_pread(va, r, MiB, off), MiB);
		cr_assert_eq(memcmp(r, z, MiB), 0, "round %d: zeros after discard",
			     round);
	}
	cr_assert_gt(a->stats.sc_reads, 0);
	free(z);
	weft_cluster_close(a);
	weft_cluster_close(b);
}

/* Racing: handle B writes and discards blocks while handle A reads them
 * short-circuit, all in flight together.  Every block A reads is zeros or
 * a complete version of that block that B wrote (never torn across
 * blocks, never another block's data); at the end A reads exactly what a
 * network read returns. */
Test(shortcircuit, races_writes_and_discards, .init = up3, .fini = down,
     .timeout = 180)
{
	enum { BS = 4096, NB = 6 * 256, QA = 16, QB = 8, ROUNDS = 3000 };
	struct weft_cluster *a = open_cl(QA, 0, "tcp", 0);
	struct weft_cluster *b = open_cl(QB, 0, "tcp", WEFT_F_NO_SHORT_CIRCUIT);
	struct weft_volume *va = tu_vol(a, "vol1"), *vb = tu_vol(b, "vol1");
	char *ra = weft_buf_alloc(a, QA * BS), *wb = weft_buf_alloc(b, QB * BS);
	uint32_t *ver = calloc(NB, sizeof(*ver));
	uint64_t x = 99, blk_a[QA], blk_b[QB];
	int out_a = 0, out_b = 0, issued_a = 0, issued_b = 0;
	bool free_a[QA], free_b[QB];
	struct weft_cqe e[QA];

	for (int i = 0; i < QA; i++)
		free_a[i] = true;
	for (int i = 0; i < QB; i++)
		free_b[i] = true;
	while (issued_a < ROUNDS || out_a || out_b) {
		int n;

		for (int s = 0; s < QB && issued_b < ROUNDS / 2; s++) {
			if (!free_b[s])
				continue;
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			blk_b[s] = (x >> 33) % NB;
			for (int k = 0; k < QB; k++)
				if (k != s && !free_b[k] && blk_b[k] == blk_b[s])
					goto next_b;
			if ((x >> 24) % 16 == 0) {
				/* a whole extent: the target frees it, the
				 * physical extent may be reused for another */
				uint64_t ext = blk_b[s] / 256;

				for (int k = 0; k < QB; k++)
					if (k != s && !free_b[k] &&
					    blk_b[k] / 256 == ext)
						goto next_b;
				for (int k = 0; k < 256; k++)
					ver[ext * 256 + (uint64_t)k]++;
				blk_b[s] = ext * 256 + 1000000;  /* whole */
				cr_assert_eq(weft_discard(vb, ext * MiB, MiB,
							  (uint64_t)s), 0);
				free_b[s] = false;
				out_b++;
				issued_b++;
				continue;
			}
			for (int k = 0; k < QB; k++)
				if (k != s && !free_b[k] && blk_b[k] >= 1000000 &&
				    (blk_b[k] - 1000000) / 256 == blk_b[s] / 256)
					goto next_b;
			ver[blk_b[s]]++;
			if ((x >> 20) % 4 == 0) {
				cr_assert_eq(weft_discard(vb, blk_b[s] * BS, BS,
							  (uint64_t)s), 0);
			} else {
				uint64_t *p = (uint64_t *)(wb + s * BS);

				for (int i = 0; i < BS / 8; i++)
					p[i] = blk_b[s] << 32 | ver[blk_b[s]];
				cr_assert_eq(weft_write(vb, wb + s * BS, BS,
							blk_b[s] * BS, 0,
							(uint64_t)s), 0);
			}
			free_b[s] = false;
			out_b++;
			issued_b++;
next_b:;
		}
		for (int s = 0; s < QA && issued_a < ROUNDS; s++) {
			if (!free_a[s])
				continue;
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			blk_a[s] = (x >> 33) % NB;
			cr_assert_eq(weft_read(va, ra + s * BS, BS, blk_a[s] * BS,
					       (uint64_t)s), 0);
			free_a[s] = false;
			out_a++;
			issued_a++;
		}
		n = weft_poll(b, e, QB);
		cr_assert_geq(n, 0);
		for (int i = 0; i < n; i++) {
			cr_assert_geq(e[i].res, 0, "B: %s",
				      weft_strerror((int)e[i].res));
			free_b[e[i].user_data] = true;
			out_b--;
		}
		n = weft_poll(a, e, QA);
		cr_assert_geq(n, 0);
		for (int i = 0; i < n; i++) {
			int s = (int)e[i].user_data;
			const uint64_t *p = (const uint64_t *)(ra + s * BS);

			cr_assert_eq(e[i].res, BS);
			for (int k = 1; k < BS / 8; k++)
				cr_assert_eq(p[k], p[0], "block %llu torn",
					     (unsigned long long)blk_a[s]);
			if (p[0]) {
				cr_assert_eq(p[0] >> 32, blk_a[s],
					     "another block's data");
				cr_assert_leq((uint32_t)p[0], ver[blk_a[s]]);
			}
			free_a[s] = true;
			out_a--;
		}
	}
	{
		char *n1 = malloc(NB * BS), *n2 = malloc(NB * BS);

		cr_assert_eq(weft_pread(va, n1, NB * BS, 0), NB * BS);
		cr_assert_eq(weft_pread(vb, n2, NB * BS, 0), NB * BS);
		cr_assert_eq(memcmp(n1, n2, NB * BS), 0,
			     "short-circuit equals network after the race");
		free(n1);
		free(n2);
	}
	cr_assert_gt(a->stats.sc_reads, 0);
	cr_log_info("short-circuit reads %llu, fallbacks %llu",
		    (unsigned long long)a->stats.sc_reads,
		    (unsigned long long)a->stats.sc_fallbacks);
	free(ver);
	weft_cluster_close(a);
	weft_cluster_close(b);
}

/* Closing a handle with requests in flight (network and short-circuit)
 * drops them cleanly (ASan build: no use after free, no leak). */
Test(target, close_with_requests_in_flight, .init = up3, .fini = down,
     .timeout = 60)
{
	for (int round = 0; round < 4; round++) {
		struct weft_cluster *cl = open_cl(64, 0, "tcp",
						  round & 1 ? WEFT_F_NO_SHORT_CIRCUIT : 0);
		struct weft_volume *v = tu_vol(cl, "vol1");
		char *b = weft_buf_alloc(cl, 64 * 65536);
		char *heap = malloc(64 * 65536);

		tu_fill(b, 64 * 65536, 5);
		cr_assert_eq(weft_pwrite(v, b, 4 * MiB, 0, 0), 4 * MiB);
		for (int i = 0; i < 64; i++) {
			uint64_t off = (uint64_t)i * 65536;

			if (i % 3 == 0)
				cr_assert_eq(weft_write(v, b + off, 65536, off, 0, 1), 0);
			else
				cr_assert_eq(weft_read(v, i % 3 == 1 ? b + off : heap + off,
						       65536, off, 2), 0);
		}
		cr_assert_eq(weft_inflight(cl), 64);
		if (round >= 2) {
			struct weft_cqe e[8];

			cr_assert_geq(weft_poll(cl, e, 8), 0);
		}
		weft_cluster_close(cl);
		free(heap);
	}
}

/* The target restarts (a new index, a new view): the view of the dead
 * process must not be trusted any more.  Extent 2 is read short-circuit,
 * the target is killed and restarted, extent 2 discarded and its physical
 * extent likely reused by new extents; a read of extent 2 must be zeros. */
static void up1(void)
{
	lc_init(&C, 1);
}

Test(shortcircuit, target_restart_drops_old_view, .init = up1, .fini = down,
     .timeout = 120)
{
	struct weft_cluster *a, *b;
	struct weft_volume *va, *vb;
	char *w, *r, *z;

	a = open_cl(0, 0, "tcp", 0);
	b = open_cl(0, 0, "tcp", WEFT_F_NO_SHORT_CIRCUIT);
	va = tu_vol(a, "vol1");
	vb = tu_vol(b, "vol1");
	w = weft_buf_alloc(b, MiB);
	r = weft_buf_alloc(a, MiB);
	z = calloc(1, MiB);
	for (uint64_t e = 0; e < 4; e++) {
		tu_fill(w, MiB, 500 + e);
		cr_assert_eq(weft_pwrite(vb, w, MiB, e * MiB, 0), MiB);
	}
	tu_fill(w, MiB, 502);
	read_until_local(a, va, r, w, MiB, 2 * MiB);
	lc_kill(&C, 0, SIGKILL, true);
	lc_start(&C, 0);
	{
		int ret = weft_discard_sync(vb, 2 * MiB, MiB);

		cr_assert_eq(ret, 0, "discard after the restart: %s",
			     weft_strerror(ret));
	}
	for (uint64_t e = 10; e < 30; e++) {
		tu_fill(w, MiB, 500 + e);
		cr_assert_eq(weft_pwrite(vb, w, MiB, e * MiB, 0), MiB);
	}
	cr_assert_eq(weft_pread(va, r, MiB, 2 * MiB), MiB);
	cr_assert_eq(memcmp(r, z, MiB), 0, "discarded after the restart: zeros");
	for (uint64_t e = 10; e < 30; e++) {
		cr_assert_eq(weft_pread(va, r, MiB, e * MiB), MiB);
		tu_fill(w, MiB, 500 + e);
		cr_assert_eq(memcmp(r, w, MiB), 0, "extent %llu",
			     (unsigned long long)e);
	}
	free(z);
	weft_cluster_close(a);
	weft_cluster_close(b);
}

/* An event loop that sleeps on weft_fd() right after queueing (no
 * weft_poll first) wakes for short-circuit and network reads alike. */
Test(shortcircuit, fd_wakes_after_queueing, .init = up3, .fini = down,
     .timeout = 60)
{
	struct weft_cluster *cl;
	char *b;
	struct weft_volume *v = vol1_written(&cl, 8, 0, &b, 8 * MiB, 77);
	struct weft_cqe e[8];

	for (int round = 0; round < 50; round++) {
		struct pollfd pfd = { .fd = weft_fd(cl), .events = POLLIN };
		int got = 0;

		cr_assert_eq(weft_read(v, b + (size_t)(round % 8) * MiB, 4096,
				       (uint64_t)(round % 8) * MiB + 4096 * (uint64_t)round,
				       (uint64_t)round), 0);
		while (!got) {
			cr_assert_eq(poll(&pfd, 1, 5000), 1, "woken (round %d)",
				     round);
			got = weft_poll(cl, e, 8);
			cr_assert_geq(got, 0);
		}
		cr_assert_eq(got, 1);
		cr_assert_eq(e[0].res, 4096);
	}
	cr_assert_gt(cl->stats.sc_reads, 0);
	weft_cluster_close(cl);
}

/* WEFT_F_DEFER_SEND: queued requests wait for weft_submit (or the next
 * poll/wait), then a batch goes out and a sleeper on weft_fd is woken; the
 * data is right; unknown flags are refused. */
Test(target, deferred_send, .init = up3, .fini = down, .timeout = 60)
{
	enum { QD = 32, BS = 4096 };
	struct weft_cluster_opts bad = {
		.size = sizeof(bad), .map_path = C.map, .flags = 1u << 30,
	};
	struct weft_cluster *cl = open_cl(QD, 0, "tcp",
					  WEFT_F_NO_SHORT_CIRCUIT | WEFT_F_DEFER_SEND);
	struct weft_volume *v = tu_vol(cl, "vol1");
	struct pollfd pfd = { .fd = weft_fd(cl), .events = POLLIN };
	char *w = weft_buf_alloc(cl, QD * BS), *r = weft_buf_alloc(cl, QD * BS);
	struct weft_cqe e[QD];
	struct weft_cluster *x = NULL;
	int got = 0;

	cr_assert_eq(weft_cluster_open(&bad, &x), -EINVAL);
	cr_assert(w && r);
	/* Connections first: setting one up is progress of its own that
	 * wakes weft_fd (connects run in the poll loop). */
	tu_fill(w, QD * BS, 4141);
	for (int i = 0; i < QD; i++)
		cr_assert_eq(weft_pwrite(v, w + i * BS, BS, (uint64_t)i * 3 * MiB,
					 0), BS);
	while (weft_wait(cl, e, 1, QD, 100) > 0)
		;
	tu_fill(w, QD * BS, 4242);
	/* One block per extent-sized stride: the batch spans many PGs. */
	for (int i = 0; i < QD; i++)
		cr_assert_eq(weft_write(v, w + i * BS, BS, (uint64_t)i * 3 * MiB, 0,
					(uint64_t)i), 0);
	/* Nothing has left: nothing can come back. */
	cr_assert_eq(poll(&pfd, 1, 200), 0, "a deferred request was answered");
	cr_assert_eq(weft_inflight(cl), QD);
	cr_assert_eq(weft_submit(cl), 0);
	while (got < QD) {
		int n;

		cr_assert_eq(poll(&pfd, 1, 5000), 1, "woken after weft_submit");
		n = weft_poll(cl, e + got, QD - got);
		cr_assert_geq(n, 0);
		got += n;
	}
	for (int i = 0; i < QD; i++)
		cr_assert_eq(e[i].res, BS, "write %d: %lld", i, (long long)e[i].res);
	/* Reads queued without weft_submit: weft_wait sends them. */
	memset(r, 0, QD * BS);
	for (int i = 0; i < QD; i++)
		cr_assert_eq(weft_read(v, r + i * BS, BS, (uint64_t)i * 3 * MiB,
				       (uint64_t)i), 0);
	for (got = 0; got < QD; ) {
		int n = weft_wait(cl, e, 1, QD, 5000);

		cr_assert_gt(n, 0, "completions within 5 s");
		for (int i = 0; i < n; i++)
			cr_assert_eq(e[i].res, BS);
		got += n;
	}
	cr_assert_eq(memcmp(w, r, QD * BS), 0, "deferred writes read back");
	weft_buf_free(cl, w);
	weft_buf_free(cl, r);
	weft_cluster_close(cl);
}

/* A short-circuit session opened at epoch 1 is not used once the target
 * serves epoch 2: the next read goes through the network (which answers
 * STALE, and the handle moves to epoch 2), never local at the old epoch. */
Test(shortcircuit, open_session_rechecked_after_epoch_change, .init = up3,
     .fini = down, .timeout = 60)
{
	struct weft_cluster *a = open_cl(0, 0, "tcp", 0);
	struct weft_cluster *b = open_cl(0, 0, "tcp", WEFT_F_NO_SHORT_CIRCUIT);
	struct weft_volume *va = tu_vol(a, "vol1"), *vb = tu_vol(b, "vol1");
	char *w = weft_buf_alloc(b, MiB), *r = weft_buf_alloc(a, MiB);

	tu_fill(w, MiB, 78);
	cr_assert_eq(weft_pwrite(vb, w, MiB, 0, 0), MiB);
	read_until_local(a, va, r, w, MiB, 0);      /* open at epoch 1 */
	targets_to_epoch2(b, vb, r);
	cr_assert_eq(a->map.epoch, 1);
	cr_assert_eq(weft_pread(va, r, MiB, 0), MiB);
	cr_assert_eq(memcmp(r, w, MiB), 0);
	cr_assert_eq(a->map.epoch, 2, "read locally at epoch 1 from a target at 2");
	read_until_local(a, va, r, w, MiB, 0);      /* again at epoch 2 */
	weft_cluster_close(a);
	weft_cluster_close(b);
}

/* Every control session of a target taken (by raw sockets here): a local
 * handle reads through the network, correctly, and uses short-circuit
 * again once sessions are free. */
Test(shortcircuit, control_sessions_full_then_free, .init = up3,
     .fini = down, .timeout = 90)
{
	enum { N = 1024 };
	static int fds[3][N];
	char path[256];
	struct rlimit rl;
	struct weft_cluster *a;
	struct weft_volume *va;
	char *r;
	double t0;

	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = rl.rlim_max;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	cr_assert_geq(rl.rlim_cur, 3 * N + 256, "need more descriptors");
	a = open_cl(0, 0, "tcp", 0);
	va = tu_vol(a, "vol1");
	r = weft_buf_alloc(a, MiB);
	for (unsigned t = 0; t < 3; t++) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		cr_assert_lt(snprintf(path, sizeof(path), "%s/target-%u.ctl",
				      C.run, t), (int)sizeof(sa.sun_path));
		memcpy(sa.sun_path, path, strlen(path) + 1);
		for (int i = 0; i < N; i++) {
			fds[t][i] = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
			cr_assert_geq(fds[t][i], 0);
			cr_assert_eq(connect(fds[t][i], (struct sockaddr *)&sa,
					     sizeof(sa)), 0, "session %d", i);
		}
	}
	/* Wait until the targets have accepted them all (a session past the
	 * limit is closed at accept: connect one more and see it hang up). */
	for (unsigned t = 0; t < 3; t++) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int x = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		struct pollfd pfd = { .fd = x, .events = POLLIN };

		cr_assert_lt(snprintf(path, sizeof(path), "%s/target-%u.ctl",
				      C.run, t), (int)sizeof(sa.sun_path));
		memcpy(sa.sun_path, path, strlen(path) + 1);
		cr_assert_eq(connect(x, (struct sockaddr *)&sa, sizeof(sa)), 0);
		cr_assert_eq(poll(&pfd, 1, 10000), 1, "target %u hung up", t);
		cr_assert(pfd.revents & (POLLHUP | POLLIN));
		close(x);
		/* ... and kept every one of the first N. */
		for (int i = 0; i < N; i++) {
			struct pollfd q = { .fd = fds[t][i], .events = POLLRDHUP };

			cr_assert_eq(poll(&q, 1, 0), 0, "target %u dropped session %d",
				     t, i);
		}
	}
	tu_fill(r, MiB, 5);
	cr_assert_eq(weft_pwrite(va, r, MiB, 0, 0), MiB);
	memset(r, 0, MiB);
	cr_assert_eq(weft_pread(va, r, MiB, 0), MiB);
	{
		char *want = malloc(MiB);

		tu_fill(want, MiB, 5);
		cr_assert_eq(memcmp(r, want, MiB), 0);
		free(want);
	}
	cr_assert_eq(a->stats.sc_reads, 0, "no session, yet read locally");
	for (unsigned t = 0; t < 3; t++)
		for (int i = 0; i < N; i++)
			close(fds[t][i]);
	/* Asked again after SC_RETRY_MS (1 s). */
	t0 = tu_now_s();
	while (!a->stats.sc_reads && tu_now_s() - t0 < 10) {
		cr_assert_eq(weft_pread(va, r, MiB, 0), MiB);
		usleep(50 * 1000);
	}
	cr_assert_gt(a->stats.sc_reads, 0, "short circuit once sessions are free");
	weft_cluster_close(a);
}
