/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Whole-extent discards that fail (through the store's test-only fault
 * hook, wf_store_fault in store_int.h): reads queued behind such a discard
 * wait for its outcome and return what the extent holds, never zeros the
 * volume did not hold; a discard whose index write fails stops the store
 * and the reads behind it fail rather than answer zeros.
 */
#define _GNU_SOURCE
#include <time.h>

#include "target/store_int.h"
#include "tests/store/helpers.h"

#define EXT     (64 * KiB)
#define NR      6

static char img[128];

static void teardown(void)
{
	if (img[0])
		unlink(img);
}

TestSuite(store_fault, .fini = teardown, .timeout = 60);

static struct wf_store *fresh(const char *tag, uint32_t ext, uint32_t flags,
			      uint32_t cache)
{
	struct wf_store_opts o = { .size = sizeof(o), .flags = flags,
				   .cache = cache };
	struct wf_store_err err = { "" };
	struct wf_store *s = NULL;

	img_create(img, sizeof(img), tag, 16 * MiB);
	cr_assert_eq(wf_store_format(img, 1, 1, ext, false, &err), 0, "%s", err.msg);
	cr_assert_eq(wf_store_open(img, &o, &s, &err), 0, "%s", err.msg);
	return s;
}

static struct sreq *sreq_new(void)
{
	struct sreq *r = calloc(1, sizeof(*r));

	cr_assert_not_null(r);
	wf_store_req_init(&r->req, sreq_done, NULL);
	return r;
}

/* Fill extent e of vol with its pattern (generation 1). */
static void fill(struct wf_store *s, uint64_t vol, uint64_t e, uint32_t ext)
{
	uint8_t *w = abuf(ext);

	pattern(w, ext, vol, e * ext, 1);
	cr_assert_eq(s_write(s, vol, e * ext, ext, w, 0), 0);
	free(w);
}

/* Does buf hold the pattern of [off, off + len) of vol? */
static bool holds(const uint8_t *buf, uint64_t vol, uint64_t off, uint32_t len)
{
	uint8_t *want = abuf(len);
	bool same;

	pattern(want, len, vol, off, 1);
	same = !memcmp(buf, want, len);
	free(want);
	return same;
}

/*
 * A read in flight when the discard starts (the discard drains it), then
 * reads queued behind the discard, whose zeroing fails: the discard
 * fails, the extent stays mapped and every read returns the data.  Then
 * the same with a discard that succeeds: the reads behind it return zeros.
 */
Test(store_fault, reads_behind_failed_discard_return_data)
{
	struct wf_store *s = fresh("fz", EXT, 0, WF_STORE_CACHE_VOLATILE);
	struct sreq *d = sreq_new(), *rd[NR];
	uint8_t *buf[NR];
	struct wf_store_stat st;

	fill(s, 1, 2, EXT);
	fill(s, 1, 3, EXT);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < NR; i++) {
			rd[i] = sreq_new();
			buf[i] = abuf(EXT);
			memset(buf[i], 0x5a, EXT);
		}
		/* round 0: the discard's zeroing fails; round 1: no fault */
		if (round == 0)
			wf_store_fault(s, WF_FAULT_DISC_ZERO, 0);
		cr_assert_eq(wf_store_read(s, &rd[0]->req, 1, 2 * EXT, EXT, buf[0], -1), 0);
		d->done = false;
		cr_assert_eq(wf_store_discard(s, &d->req, 1, 2 * EXT, EXT), 0);
		cr_assert_eq(wf_store_read(s, &rd[1]->req, 1, 2 * EXT, EXT, buf[1], -1), 0);
		cr_assert_eq(wf_store_read(s, &rd[2]->req, 1, 2 * EXT, 4096, buf[2], -1), 0);
		cr_assert_eq(wf_store_read(s, &rd[3]->req, 1, 2 * EXT + EXT - 8192,
					   8192, buf[3], -1), 0);
		/* another extent is not held up */
		cr_assert_eq(wf_store_read(s, &rd[4]->req, 1, 3 * EXT, EXT, buf[4], -1), 0);
		cr_assert_eq(wf_store_read(s, &rd[5]->req, 1, 2 * EXT, EXT, buf[5], -1), 0);
		store_drain(s);

		for (int i = 0; i < NR; i++)
			cr_assert(rd[i]->done && rd[i]->res == 0, "round %d read %d: %d",
				  round, i, rd[i]->res);
		cr_assert(holds(buf[0], 1, 2 * EXT, EXT), "the read before the discard");
		cr_assert(holds(buf[4], 1, 3 * EXT, EXT));
		if (round == 0) {
			cr_assert_eq(d->res, -EIO);
			cr_assert(holds(buf[1], 1, 2 * EXT, EXT),
				  "a read behind a failed discard returned other data "
				  "(zeros?) than the extent holds");
			cr_assert(holds(buf[2], 1, 2 * EXT, 4096));
			cr_assert(holds(buf[3], 1, 2 * EXT + EXT - 8192, 8192));
			cr_assert(holds(buf[5], 1, 2 * EXT, EXT));
			/* still mapped, still the data */
			wf_store_stat(s, &st);
			cr_assert_eq(st.used, 2);
			cr_assert_eq(s_read(s, 1, 2 * EXT, EXT, buf[1]), 0);
			cr_assert(holds(buf[1], 1, 2 * EXT, EXT));
		} else {
			cr_assert_eq(d->res, 0);
			cr_assert(all_zero(buf[1], EXT));
			cr_assert(all_zero(buf[2], 4096));
			cr_assert(all_zero(buf[3], 8192));
			cr_assert(all_zero(buf[5], EXT));
			wf_store_stat(s, &st);
			cr_assert_eq(st.used, 1);
		}
		for (int i = 0; i < NR; i++) {
			free(rd[i]);
			free(buf[i]);
		}
	}
	wf_store_close(s);
	free(d);
}

/*
 * Zeroing by writes (1 MiB extent, 256 KiB of zeros per step): the second
 * step fails, so the extent stays mapped with its first 256 KiB zeroed.
 * Reads queued behind the discard return what the device holds: zeros
 * there, the data beyond.  The failed discard also survives a reopen as
 * mapped.
 */
Test(store_fault, reads_behind_partly_zeroed_failed_discard)
{
	struct wf_store *s = fresh("fzw", 1 * MiB, WF_STORE_ZERO_BY_WRITE,
				   WF_STORE_CACHE_NONE);
	struct sreq *d = sreq_new(), *lo = sreq_new(), *hi = sreq_new();
	uint8_t *blo = abuf(4096), *bhi = abuf(EXT), *all = abuf(1 * MiB);
	struct wf_store_stat st;

	fill(s, 4, 0, 1 * MiB);
	wf_store_fault(s, WF_FAULT_DISC_ZERO, 1);
	cr_assert_eq(wf_store_discard(s, &d->req, 4, 0, 1 * MiB), 0);
	cr_assert_eq(wf_store_read(s, &lo->req, 4, 8192, 4096, blo, -1), 0);
	cr_assert_eq(wf_store_read(s, &hi->req, 4, 512 * KiB, EXT, bhi, -1), 0);
	store_drain(s);
	cr_assert_eq(d->res, -EIO);
	cr_assert_eq(lo->res, 0);
	cr_assert_eq(hi->res, 0);
	cr_assert(all_zero(blo, 4096), "the zeroed part reads as the device holds it");
	cr_assert(holds(bhi, 4, 512 * KiB, EXT),
		  "a read behind a failed discard returned zeros the extent does not hold");
	wf_store_close(s);

	s = store_open_ok(img, WF_STORE_CACHE_NONE);
	wf_store_stat(s, &st);
	cr_assert_eq(st.used, 1);
	cr_assert_eq(s_read(s, 4, 0, 1 * MiB, all), 0);
	cr_assert(all_zero(all, 256 * KiB));
	cr_assert(holds(all + 256 * KiB, 4, 256 * KiB, 768 * KiB));
	/* and a discard without a fault completes */
	cr_assert_eq(s_discard(s, 4, 0, 1 * MiB), 0);
	wf_store_stat(s, &st);
	cr_assert_eq(st.used, 0);
	wf_store_close(s);
	free(d);
	free(lo);
	free(hi);
	free(blo);
	free(bhi);
	free(all);
}

/*
 * The index write that would free the discarded extent fails: the store
 * stops (every request fails from then on), and the reads queued behind
 * the discard fail too instead of answering zeros.  After a reopen the
 * extent is still mapped (the discard was never acknowledged).
 */
Test(store_fault, reads_behind_discard_whose_index_write_fails)
{
	struct wf_store *s = fresh("fix", EXT, 0, WF_STORE_CACHE_NONE);
	struct sreq *d = sreq_new(), *rd[3];
	uint8_t *buf = abuf(EXT);
	struct wf_store_stat st;

	fill(s, 2, 5, EXT);
	fill(s, 2, 6, EXT);
	wf_store_fault(s, WF_FAULT_DISC_INDEX, 0);
	cr_assert_eq(wf_store_discard(s, &d->req, 2, 5 * EXT, EXT), 0);
	for (int i = 0; i < 3; i++) {
		rd[i] = sreq_new();
		cr_assert_eq(wf_store_read(s, &rd[i]->req, 2, 5 * EXT + i * 4096ull,
					   4096, buf + i * 4096, -1), 0);
	}
	store_drain(s);
	cr_assert_eq(d->res, -EIO);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(rd[i]->res, -EIO, "read %d behind a discard that failed: %d",
			     i, rd[i]->res);
	cr_assert_eq(s_read(s, 2, 6 * EXT, EXT, buf), -EIO, "the store stopped");
	wf_store_close(s);

	s = store_open_ok(img, WF_STORE_CACHE_NONE);
	wf_store_stat(s, &st);
	cr_assert_eq(st.used, 2);
	cr_assert_eq(s_read(s, 2, 6 * EXT, EXT, buf), 0);
	cr_assert(holds(buf, 2, 6 * EXT, EXT));
	wf_store_close(s);
	for (int i = 0; i < 3; i++)
		free(rd[i]);
	free(d);
	free(buf);
}

/* Two queues driven from this thread until every request is done. */
static void drain2(struct wf_store *a, struct wf_store *b)
{
	struct timespec ts = { 0, 200000 };

	for (int i = 0; wf_store_inflight(a) || wf_store_inflight(b); i++) {
		cr_assert_lt(i, 50000, "requests did not complete");
		cr_assert_geq(wf_store_submit(a), 0);
		cr_assert_geq(wf_store_submit(b), 0);
		nanosleep(&ts, NULL);
		wf_store_poll(a, 64);
		wf_store_poll(b, 64);
	}
}

/*
 * Reads submitted on another queue than the extent's owner reach the
 * owner (MSG_RING) while its discard is failing: they wait there too.
 * Meanwhile the shared view refuses the extent (-EAGAIN), and afterwards
 * finds it mapped again, under a new sequence number, with the data on
 * the device.
 */
Test(store_fault, other_queue_and_view_during_failed_discard)
{
	struct wf_store *q0 = fresh("fq", EXT, 0, WF_STORE_CACHE_VOLATILE), *q1;
	struct sreq *d = sreq_new(), *rd[4];
	uint8_t *buf[4], *dev = abuf(EXT);
	struct wf_view v;
	uint32_t phys, seq, phys2, seq2;
	uint64_t e = 0;
	int fd;

	cr_assert_eq(wf_store_add_queue(q0, 0, &q1), 0);
	while (wf_extent_reactor(3, (uint32_t)e, 2) != 0)
		e++;
	fill(q0, 3, e, EXT);
	cr_assert_eq(wf_view_open(wf_store_index_fd(q0), &v), 0);
	cr_assert_eq(wf_view_lookup(&v, 3, (uint32_t)e, &phys, &seq), 1);

	wf_store_fault(q0, WF_FAULT_DISC_ZERO, 0);
	cr_assert_eq(wf_store_discard(q0, &d->req, 3, e * EXT, EXT), 0);
	cr_assert_eq(wf_view_lookup(&v, 3, (uint32_t)e, &phys2, &seq2), -EAGAIN,
		     "a view reader must not trust an extent being discarded");
	for (int i = 0; i < 4; i++) {
		rd[i] = sreq_new();
		buf[i] = abuf(EXT);
		memset(buf[i], 0xa5, EXT);
		cr_assert_eq(wf_store_read(q1, &rd[i]->req, 3, e * EXT, EXT, buf[i], -1), 0);
	}
	/* The reads reach the owner before its failing zeroing step is even
	 * submitted: they find the extent being discarded. */
	cr_assert_geq(wf_store_submit(q1), 0);
	for (int i = 0; wf_store_inflight(q0) < 5; i++) {
		struct timespec ts = { 0, 100000 };

		cr_assert_lt(i, 50000, "the reads did not reach the owner");
		nanosleep(&ts, NULL);
		wf_store_poll(q0, 64);
	}
	drain2(q0, q1);
	cr_assert_eq(d->res, -EIO);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(rd[i]->res, 0);
		cr_assert(holds(buf[i], 3, e * EXT, EXT), "read %d on the other queue", i);
	}
	cr_assert_eq(wf_view_lookup(&v, 3, (uint32_t)e, &phys2, &seq2), 1);
	cr_assert_eq(phys2, phys);
	cr_assert_neq(seq2, seq, "an answer from before the discard must not pass");
	cr_assert(!wf_view_check(&v, phys, seq));
	fd = wf_store_dev_fd_ro(q0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, dev, EXT, (off_t)wf_view_dev_offset(&v, phys2, 0)),
		     (ssize_t)EXT);
	cr_assert(wf_view_check(&v, phys2, seq2));
	cr_assert(holds(dev, 3, e * EXT, EXT));
	close(fd);
	wf_view_close(&v);
	wf_store_close(q1);
	wf_store_close(q0);
	for (int i = 0; i < 4; i++) {
		free(rd[i]);
		free(buf[i]);
	}
	free(d);
	free(dev);
}
