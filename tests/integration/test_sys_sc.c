/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Short-circuit reads (libweft reading the local target's device itself)
 * against network reads: the same bytes when quiet, and never stale while
 * another thread writes and discards the same blocks (whole extents too,
 * so extents are freed and reallocated under the readers' shared view).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "bench/pattern.h"
#include "bench/stats.h"
#include "initiator/weft_int.h"        /* cl->stats: short-circuit counters */
#include "tests/integration/sys.h"

SYS_SUITE(sys_sc, 120);

Test(sys_sc, equals_network)
{
	const uint64_t base = 32ull << 20, span = 8ull << 20;
	struct weft_cluster *net, *sc;
	struct weft_volume *vn, *vs;
	char *a, *b;

	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 5000, &net, &vn, "vol1");
	sys_open(&C, 0, 5000, &sc, &vs, "vol1");
	a = weft_buf_alloc(net, span);
	b = weft_buf_alloc(sc, span);
	cr_assert(a && b);
	wf_pattern_fill(a, span, 5, base);
	cr_assert_eq(weft_pwrite(vn, a, span, base, 0), (ssize_t)span);
	/* Holes of several shapes: a whole extent, a block, a partial extent. */
	cr_assert(weft_discard_sync(vn, base + 2 * SYS_EXT, SYS_EXT) >= 0);
	cr_assert(weft_discard_sync(vn, base + 5 * SYS_EXT + SYS_BS, SYS_BS) >= 0);
	cr_assert(weft_discard_sync(vn, base + 6 * SYS_EXT + 64 * 1024, 256 * 1024) >= 0);

	memset(a, 1, span);
	cr_assert_eq(weft_pread(vn, a, span, base), (ssize_t)span);
	/* Sessions open without waiting: the first reads of each target go
	 * through the network; read again until some went local (bounded). */
	for (int round = 0; round < 500 && !sc->stats.sc_reads; round++) {
		memset(b, 2, span);
		cr_assert_eq(weft_pread(vs, b, span, base), (ssize_t)span);
		for (uint64_t i = 0; i < span; i += SYS_BS)
			cr_assert(!memcmp(a + i, b + i, SYS_BS),
				  "short-circuit read differs from the network "
				  "read at volume offset %llu",
				  (unsigned long long)(base + i));
		usleep(10 * 1000);
	}
	/* Also read beyond what was ever written (thin: zeros). */
	cr_assert_eq(weft_pread(vs, b, SYS_EXT, 900ull << 20), SYS_EXT);
	for (unsigned i = 0; i < SYS_EXT; i++)
		if (b[i])
			cr_assert_fail("unwritten extent reads %#x", (unsigned char)b[i]);
	cr_expect(sc->stats.sc_reads > 0, "no read was short-circuited "
		  "(sc_reads 0, fallbacks %llu)",
		  (unsigned long long)sc->stats.sc_fallbacks);
	cr_expect_eq(net->stats.sc_reads, 0);
	weft_buf_free(net, a);
	weft_buf_free(sc, b);
	weft_cluster_close(sc);
	weft_cluster_close(net);
}

/* ---- racing readers and a writer -------------------------------------- */

#define RX_EXT    16u                   /* extents 64 .. 79 */
#define RX_PER    4u                    /* tracked blocks per extent */
#define RX_NBLK   (RX_EXT * RX_PER)
#define RX_MAXV   (1u << 20)
#define RX_OFF(b) ((64ull + (b) / RX_PER) * SYS_EXT + (uint64_t)((b) % RX_PER) * (SYS_EXT / RX_PER))

struct race {
	_Atomic uint64_t issued[RX_NBLK];       /* started (set before the op) */
	_Atomic uint64_t done[RX_NBLK];         /* completed */
	_Atomic uint64_t last_discard[RX_NBLK];
	_Atomic bool     stop;
	uint8_t          is_discard[RX_MAXV];
	uint64_t         writes, discards;
	const char      *err;
};

static void *writer(void *arg)
{
	struct race *r = arg;
	struct weft_cluster *cl;
	struct weft_volume *vol;
	uint64_t v = 0, rng = 42;
	char *buf;

	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 5000, &cl, &vol, "vol1");
	buf = weft_buf_alloc(cl, SYS_BS);
	while (!atomic_load(&r->stop) && v + RX_PER < RX_MAXV) {
		uint64_t x = wf_mix64(rng++);
		uint32_t b = (uint32_t)(x % RX_NBLK);
		unsigned what = (unsigned)((x >> 32) % 8);
		int ret;

		v++;
		if (what == 0) {
			/* the whole extent: it is freed and reallocated by
			 * the next write into it */
			uint32_t b0 = b - b % RX_PER;

			r->is_discard[v] = 1;
			for (uint32_t k = 0; k < RX_PER; k++) {
				atomic_store(&r->last_discard[b0 + k], v);
				atomic_store(&r->issued[b0 + k], v);
			}
			ret = weft_discard_sync(vol, RX_OFF(b0) - RX_OFF(b0) % SYS_EXT,
						SYS_EXT);
			for (uint32_t k = 0; k < RX_PER; k++)
				atomic_store(&r->done[b0 + k], v);
			r->discards++;
		} else if (what == 1) {
			r->is_discard[v] = 1;
			atomic_store(&r->last_discard[b], v);
			atomic_store(&r->issued[b], v);
			ret = weft_discard_sync(vol, RX_OFF(b), SYS_BS);
			atomic_store(&r->done[b], v);
			r->discards++;
		} else {
			sys_fill(buf, RX_OFF(b), v);
			atomic_store(&r->issued[b], v);
			ret = (int)weft_pwrite(vol, buf, SYS_BS, RX_OFF(b), 0);
			atomic_store(&r->done[b], v);
			r->writes++;
		}
		if (ret < 0) {
			r->err = "a write or discard failed";
			break;
		}
	}
	weft_buf_free(cl, buf);
	weft_cluster_close(cl);
	return NULL;
}

Test(sys_sc, never_stale_while_racing)
{
	static struct race r;
	struct weft_cluster *cl;
	struct weft_volume *vol;
	uint64_t end, reads = 0, zeros = 0, rng = 7;
	pthread_t th;
	char *buf;

	memset(&r, 0, sizeof(r));
	sys_open(&C, 0, 5000, &cl, &vol, "vol1");
	buf = weft_buf_alloc(cl, SYS_BS);
	cr_assert(buf);
	cr_assert_eq(pthread_create(&th, NULL, writer, &r), 0);
	end = wf_now_ns() + 3000000000ull;
	while (wf_now_ns() < end && !r.err) {
		uint32_t b = (uint32_t)(wf_mix64(rng++) % RX_NBLK);
		uint64_t lo = atomic_load(&r.done[b]), hi, disc;
		ssize_t n = weft_pread(vol, buf, SYS_BS, RX_OFF(b));
		int64_t got;

		hi = atomic_load(&r.issued[b]);
		disc = atomic_load(&r.last_discard[b]);
		cr_assert_eq(n, SYS_BS, "read: %s", weft_strerror((int)n));
		got = sys_decode(buf, RX_OFF(b));
		reads++;
		if (got == 0) {
			/* zeros: never written yet, or a discard no older
			 * than the last completed operation */
			zeros++;
			cr_assert(lo == 0 || r.is_discard[lo] || disc > lo,
				  "block %u read zeros but its last completed "
				  "write (version %llu) was not discarded", b,
				  (unsigned long long)lo);
			continue;
		}
		cr_assert(got > 0, "block %u: the bytes match no version written "
			  "(torn or misplaced read)", b);
		cr_assert((uint64_t)got >= lo, "STALE: block %u read version %lld "
			  "after version %llu had completed", b, (long long)got,
			  (unsigned long long)lo);
		cr_assert((uint64_t)got <= hi && !r.is_discard[got],
			  "block %u read version %lld never written there "
			  "(issued up to %llu)", b, (long long)got,
			  (unsigned long long)hi);
	}
	atomic_store(&r.stop, true);
	pthread_join(th, NULL);
	cr_assert(!r.err, "%s", r.err);
	fprintf(stderr, "  %llu racing reads (%llu short-circuited, %llu zeros) "
		"against %llu writes and %llu discards\n",
		(unsigned long long)reads, (unsigned long long)cl->stats.sc_reads,
		(unsigned long long)zeros, (unsigned long long)r.writes,
		(unsigned long long)r.discards);
	cr_expect(r.writes > 100 && r.discards > 10, "the writer hardly ran");
	cr_expect(cl->stats.sc_reads > reads / 2, "only %llu of %llu reads were "
		  "short-circuited", (unsigned long long)cl->stats.sc_reads,
		  (unsigned long long)reads);
	weft_buf_free(cl, buf);
	weft_cluster_close(cl);
}
