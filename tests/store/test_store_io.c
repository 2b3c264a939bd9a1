/* SPDX-License-Identifier: Apache-2.0 */
/* The data path: read/write/discard/flush, thin provisioning, restart,
 * ENOSPC, argument checks, registered buffers, the shared index view. */
#define _GNU_SOURCE
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "tests/store/helpers.h"
#include "target/store_int.h"

static char img[128];

static void teardown(void)
{
	if (img[0])
		unlink(img);
}

TestSuite(store_io, .fini = teardown, .timeout = 120);

#define EXT (64 * KiB)

static struct wf_store *fresh(const char *tag, uint64_t size, uint32_t cache)
{
	struct wf_store_err err = { "" };

	img_create(img, sizeof(img), tag, size);
	cr_assert_eq(wf_store_format(img, 1, 1, EXT, false, &err), 0, "%s", err.msg);
	return store_open_ok(img, cache);
}

/* Deterministic pseudo-random stream. */
static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Many writes in flight at once over many volumes and extents (including
 * several on one new extent at the same time), then every byte back. */
#define NV      4
#define NE      24
#define BPE     (EXT / 4096)
static uint8_t gen[NV][NE][BPE];

struct areq {
	struct wf_store_req req;
	void *buf;
	int res;
	bool busy;
};

static void areq_done(struct wf_store_req *req, int res)
{
	struct areq *a = (struct areq *)req;

	a->res = res;
	a->busy = false;
	cr_assert_eq(res, 0, "async op failed: %d", res);
}

static void verify_all(struct wf_store *s)
{
	uint8_t *buf = abuf(EXT), *want = abuf(4096);

	for (int v = 0; v < NV; v++)
		for (int e = 0; e < NE; e++) {
			cr_assert_eq(s_read(s, 100 + v, (uint64_t)e * EXT, EXT, buf), 0);
			for (int b = 0; b < (int)BPE; b++) {
				uint64_t off = (uint64_t)e * EXT + b * 4096ull;

				if (!gen[v][e][b]) {
					cr_assert(all_zero(buf + b * 4096, 4096),
						  "v%d e%d b%d not zero", v, e, b);
					continue;
				}
				pattern(want, 4096, 100 + v, off, gen[v][e][b]);
				cr_assert_eq(memcmp(buf + b * 4096, want, 4096), 0,
					     "v%d e%d b%d gen %d differs", v, e, b,
					     gen[v][e][b]);
			}
		}
	free(buf);
	free(want);
}

Test(store_io, many_writes_in_flight_then_restart)
{
	static bool touched[NV][NE][BPE];
	struct wf_store_stat st;
	struct wf_store *s = fresh("many", 64 * MiB, WF_STORE_CACHE_NONE);
	struct areq q[48];
	uint64_t x = 0x1234567;
	int issued = 0;

	memset(gen, 0, sizeof(gen));
	for (unsigned i = 0; i < 48; i++) {
		q[i].buf = abuf(4 * 4096);
		wf_store_req_init(&q[i].req, areq_done, NULL);
	}
	while (issued < 3000) {
		/* One round: up to 48 writes in flight, no two on the same
		 * block (their order on the device would be unspecified),
		 * several often on the same new extent. */
		memset(touched, 0, sizeof(touched));
		for (unsigned i = 0; i < 48; i++) {
			int v = (int)(rnd(&x) % NV), e = (int)(rnd(&x) % NE);
			int n = 1 + (int)(rnd(&x) % 4);
			int b = (int)(rnd(&x) % (BPE - n + 1)), k;
			uint64_t off = (uint64_t)e * EXT + b * 4096ull;

			for (k = 0; k < n && !touched[v][e][b + k]; k++)
				;
			if (k < n)
				continue;
			for (k = 0; k < n; k++) {
				uint8_t g = (uint8_t)(gen[v][e][b + k] % 250 + 1);

				touched[v][e][b + k] = true;
				gen[v][e][b + k] = g;
				pattern((uint8_t *)q[i].buf + k * 4096, 4096, 100 + v,
					off + k * 4096ull, g);
			}
			q[i].busy = true;
			cr_assert_eq(wf_store_write(s, &q[i].req, 100 + v, off,
						    (uint32_t)n * 4096, q[i].buf, -1,
						    issued % 7 ? 0 : WF_STORE_FUA), 0);
			issued++;
		}
		store_drain(s);
	}
	wf_store_stat(s, &st);
	cr_assert_eq(st.used, NV * NE);
	verify_all(s);
	wf_store_close(s);

	s = store_open_ok(img, WF_STORE_CACHE_NONE);
	wf_store_stat(s, &st);
	cr_assert_eq(st.used, NV * NE);
	verify_all(s);
	wf_store_close(s);
	for (unsigned i = 0; i < 48; i++)
		free(q[i].buf);
}

/* Every write allocates its own new extent, all at once, plus several
 * writes into each while its allocation is in flight: one extent each. */
Test(store_io, concurrent_first_writes_share_one_allocation)
{
	struct wf_store_stat st;
	struct wf_store *s = fresh("alloc", 32 * MiB, WF_STORE_CACHE_VOLATILE);
	struct areq q[64];
	uint8_t *r = abuf(EXT), *want = abuf(4096);

	for (unsigned i = 0; i < 64; i++) {
		uint64_t off = (i / 16) * EXT + (i % 16) * 4096ull;

		q[i].buf = abuf(4096);
		pattern(q[i].buf, 4096, 9, off, 1);
		wf_store_req_init(&q[i].req, areq_done, NULL);
		q[i].busy = true;
		cr_assert_eq(wf_store_write(s, &q[i].req, 9, off, 4096, q[i].buf,
					    -1, 0), 0);
	}
	store_drain(s);
	wf_store_stat(s, &st);
	cr_assert_eq(st.used, 4);
	wf_store_close(s);
	s = store_open_ok(img, WF_STORE_CACHE_NONE);
	wf_store_stat(s, &st);
	cr_assert_eq(st.used, 4);
	for (unsigned e = 0; e < 4; e++) {
		cr_assert_eq(s_read(s, 9, e * EXT, EXT, r), 0);
		for (unsigned b = 0; b < 16; b++) {
			pattern(want, 4096, 9, e * EXT + b * 4096ull, 1);
			cr_assert_eq(memcmp(r + b * 4096, want, 4096), 0);
		}
	}
	wf_store_close(s);
	for (unsigned i = 0; i < 64; i++)
		free(q[i].buf);
	free(r);
	free(want);
}

/* Offset of physical extent 0 on the device (from the view header). */
static uint64_t data_off(struct wf_store *s)
{
	struct wf_view v;
	uint64_t off;

	cr_assert_eq(wf_view_open(wf_store_index_fd(s), &v), 0);
	off = v.hdr->data_off;
	wf_view_close(&v);
	return off;
}

Test(store_io, unwritten_reads_zeros_without_device_io)
{
	struct wf_store *s = fresh("thin", 16 * MiB, WF_STORE_CACHE_NONE);
	uint8_t *buf = abuf(EXT), *junk = malloc(EXT);
	uint64_t off = data_off(s);
	int fd;

	/* Put junk where the first free extents live, behind the store's
	 * back: if a read of an unwritten extent touched the device it
	 * would return it. */
	memset(junk, 0xee, EXT);
	fd = open(img, O_RDWR | O_CLOEXEC);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pwrite(fd, junk, EXT, (off_t)(off + i * EXT)), (ssize_t)EXT);
	cr_assert_eq(fsync(fd), 0);
	close(fd);
	for (int i = 0; i < 4; i++) {
		memset(buf, 0x11, EXT);
		cr_assert_eq(s_read(s, 3, i * EXT, EXT, buf), 0);
		cr_assert(all_zero(buf, EXT));
	}
	memset(buf, 0x11, 4096);
	cr_assert_eq(s_read(s, 777, 4095ull * EXT + 8192, 4096, buf), 0);
	cr_assert(all_zero(buf, 4096));
	wf_store_close(s);
	free(buf);
	free(junk);
}

Test(store_io, partial_write_in_new_extent_rest_is_zero)
{
	struct wf_store *s = fresh("partial", 16 * MiB, WF_STORE_CACHE_NONE);
	uint8_t *w = abuf(8192), *r = abuf(EXT);

	pattern(w, 8192, 4, EXT + 8192, 1);
	cr_assert_eq(s_write(s, 4, EXT + 8192, 8192, w, 0), 0);
	cr_assert_eq(s_read(s, 4, EXT, EXT, r), 0);
	cr_assert(all_zero(r, 8192));
	cr_assert_eq(memcmp(r + 8192, w, 8192), 0);
	cr_assert(all_zero(r + 16384, EXT - 16384));
	wf_store_close(s);
	free(w);
	free(r);
}

Test(store_io, discard_frees_and_extent_is_reused)
{
	struct wf_store_stat st;
	struct wf_store *s = fresh("discard", 8 * MiB, WF_STORE_CACHE_VOLATILE);
	uint8_t *w = abuf(EXT), *r = abuf(EXT);
	uint64_t n;

	wf_store_stat(s, &st);
	n = st.extents;
	/* fill the device */
	for (uint64_t e = 0; e < n; e++) {
		pattern(w, EXT, 1, e * EXT, 1);
		cr_assert_eq(s_write(s, 1, e * EXT, EXT, w, 0), 0);
	}
	wf_store_stat(s, &st);
	cr_assert_eq(st.used, n);
	cr_assert_eq(st.free, 0);
	/* index full: a new extent cannot be had, an overwrite can */
	cr_assert_eq(s_write(s, 2, 0, 4096, w, 0), -ENOSPC);
	cr_assert_eq(s_write(s, 1, 5 * EXT, 4096, w, 0), 0);

	/* discard one whole extent: zeros, one free */
	cr_assert_eq(s_discard(s, 1, 3 * EXT, EXT), 0);
	wf_store_stat(s, &st);
	cr_assert_eq(st.free, 1);
	memset(r, 0x77, EXT);
	cr_assert_eq(s_read(s, 1, 3 * EXT, EXT, r), 0);
	cr_assert(all_zero(r, EXT));
	/* reusable, by another volume; it starts out zero there too */
	pattern(w, 4096, 2, 0, 1);
	cr_assert_eq(s_write(s, 2, 0, 4096, w, 0), 0);
	cr_assert_eq(s_read(s, 2, 0, EXT, r), 0);
	cr_assert_eq(memcmp(r, w, 4096), 0);
	cr_assert(all_zero(r + 4096, EXT - 4096));
	cr_assert_eq(s_write(s, 3, 0, 4096, w, 0), -ENOSPC);

	/* discard of something never written: nothing to do */
	cr_assert_eq(s_discard(s, 55, 0, EXT), 0);
	cr_assert_eq(s_discard(s, 55, 0, 4096), 0);

	/* part of an extent: zeroed, the rest stays, still allocated */
	cr_assert_eq(s_discard(s, 1, 7 * EXT + 8192, 16384), 0);
	cr_assert_eq(s_read(s, 1, 7 * EXT, EXT, r), 0);
	pattern(w, EXT, 1, 7 * EXT, 1);
	cr_assert_eq(memcmp(r, w, 8192), 0);
	cr_assert(all_zero(r + 8192, 16384));
	cr_assert_eq(memcmp(r + 24576, w + 24576, EXT - 24576), 0);
	wf_store_stat(s, &st);
	cr_assert_eq(st.free, 0);

	/* all of it persists */
	wf_store_close(s);
	s = store_open_ok(img, WF_STORE_CACHE_NONE);
	wf_store_stat(s, &st);
	cr_assert_eq(st.free, 0);
	cr_assert_eq(s_read(s, 1, 3 * EXT, EXT, r), 0);
	cr_assert(all_zero(r, EXT));
	cr_assert_eq(s_read(s, 1, 7 * EXT, EXT, r), 0);
	cr_assert(all_zero(r + 8192, 16384));
	cr_assert_eq(s_read(s, 2, 0, 4096, r), 0);
	pattern(w, 4096, 2, 0, 1);
	cr_assert_eq(memcmp(r, w, 4096), 0);
	wf_store_close(s);
	free(w);
	free(r);
}

/* Write, discard, write to one extent all in flight at once: everything
 * completes, nothing is allocated twice, and what is read equals what a
 * restart finds. */
Test(store_io, write_discard_races)
{
	struct wf_store_stat st;
	struct wf_store *s = fresh("race", 16 * MiB, WF_STORE_CACHE_VOLATILE);
	struct areq q[6];
	uint8_t *r1 = abuf(EXT), *r2 = abuf(EXT);

	for (int round = 0; round < 20; round++) {
		uint64_t e = (uint64_t)(round % 3) * EXT;

		for (int i = 0; i < 6; i++) {
			q[i].buf = abuf(4096);
			pattern(q[i].buf, 4096, 8, e, (uint64_t)round * 10 + i);
			wf_store_req_init(&q[i].req, areq_done, NULL);
		}
		cr_assert_eq(wf_store_write(s, &q[0].req, 8, e, 4096, q[0].buf, -1, 0), 0);
		cr_assert_eq(wf_store_discard(s, &q[1].req, 8, e, EXT), 0);
		cr_assert_eq(wf_store_write(s, &q[2].req, 8, e + 4096, 4096, q[2].buf, -1, 0), 0);
		cr_assert_eq(wf_store_read(s, &q[3].req, 8, e, 4096, q[3].buf, -1), 0);
		cr_assert_eq(wf_store_discard(s, &q[4].req, 8, e, EXT), 0);
		cr_assert_eq(wf_store_write(s, &q[5].req, 8, e + 8192, 4096, q[5].buf, -1,
					    round & 1 ? WF_STORE_FUA : 0), 0);
		store_drain(s);
		wf_store_stat(s, &st);
		cr_assert_leq(st.used, 3);
		for (int i = 0; i < 6; i++)
			free(q[i].buf);
	}
	for (int e = 0; e < 3; e++) {
		cr_assert_eq(s_read(s, 8, e * EXT, EXT, r1), 0);
		wf_store_close(s);
		s = store_open_ok(img, WF_STORE_CACHE_NONE);
		cr_assert_eq(s_read(s, 8, e * EXT, EXT, r2), 0);
		cr_assert_eq(memcmp(r1, r2, EXT), 0);
	}
	wf_store_close(s);
	free(r1);
	free(r2);
}

Test(store_io, invalid_requests)
{
	struct wf_store *s = fresh("inval", 16 * MiB, WF_STORE_CACHE_NONE);
	uint8_t *b = abuf(2 * EXT);
	struct wf_store_req req;
	struct iovec iov = { b, EXT };

	wf_store_req_init(&req, sreq_done, NULL);
	/* misaligned offset, length, buffer; empty; across an extent end */
	cr_assert_eq(wf_store_write(s, &req, 1, 512, 4096, b, -1, 0), -EINVAL);
	cr_assert_eq(wf_store_write(s, &req, 1, 0, 4000, b, -1, 0), -EINVAL);
	cr_assert_eq(wf_store_write(s, &req, 1, 0, 0, b, -1, 0), -EINVAL);
	cr_assert_eq(wf_store_write(s, &req, 1, 0, 4096, b + 512, -1, 0), -EINVAL);
	cr_assert_eq(wf_store_write(s, &req, 1, EXT - 4096, 8192, b, -1, 0), -EINVAL);
	cr_assert_eq(wf_store_write(s, &req, 1, 0, EXT + 4096, b, -1, 0), -EINVAL);
	cr_assert_eq(wf_store_write(s, &req, 1, 0, 4096, NULL, -1, 0), -EINVAL);
	cr_assert_eq(wf_store_write(s, &req, 1, 0, 4096, b, -1, 0x80), -EINVAL);
	cr_assert_eq(wf_store_read(s, &req, 1, 4096 + 1, 4096, b, -1), -EINVAL);
	cr_assert_eq(wf_store_read(s, &req, 1, 0, 3 * EXT, b, -1), -EINVAL);
	cr_assert_eq(wf_store_discard(s, &req, 1, 100, 4096), -EINVAL);
	cr_assert_eq(wf_store_discard(s, &req, 1, 0, 2 * EXT), -EINVAL);
	/* out of range: extent index beyond 32 bits */
	cr_assert_eq(wf_store_write(s, &req, 1, (uint64_t)UINT32_MAX * EXT, 4096,
				    b, -1, 0), -EINVAL);
	cr_assert_eq(wf_store_read(s, &req, 1, UINT64_MAX - 4095, 4096, b, -1), -EINVAL);
	/* registered buffers: unknown index, range outside the buffer */
	cr_assert_eq(wf_store_write(s, &req, 1, 0, 4096, b, 0, 0), -EINVAL);
	cr_assert_eq(wf_store_register_buffers(s, &iov, 1), 0);
	cr_assert_eq(wf_store_write(s, &req, 1, 0, 4096, b, 1, 0), -EINVAL);
	cr_assert_eq(wf_store_write(s, &req, 1, 0, 8192, b + EXT - 4096, 0, 0), -EINVAL);
	cr_assert_eq(wf_store_write(s, &req, 1, 0, 4096, b + EXT, 0, 0), -EINVAL);
	cr_assert_eq(wf_store_write(s, &req, 1, 0, 4096, b, -2, 0), -EINVAL);
	/* no callback */
	req.done = NULL;
	cr_assert_eq(wf_store_flush(s, &req), -EINVAL);
	/* nothing was queued by any of these */
	cr_assert_eq(wf_store_inflight(s), 0);
	wf_store_close(s);
	free(b);
}

Test(store_io, registered_buffers_fixed_io)
{
	struct wf_store *s = fresh("fixed", 16 * MiB, WF_STORE_CACHE_NONE);
	uint8_t *slots = abuf(8 * 4096), *other = abuf(EXT);
	struct iovec iov[2] = { { slots, 4 * 4096 }, { slots + 4 * 4096, 4 * 4096 } };
	struct sreq r = { .done = false };

	cr_assert_eq(wf_store_register_buffers(s, iov, 2), 0);
	pattern(slots + 4096, 8192, 6, 3 * 4096, 1);
	wf_store_req_init(&r.req, sreq_done, NULL);
	cr_assert_eq(wf_store_write(s, &r.req, 6, 3 * 4096, 8192, slots + 4096, 0, 0), 0);
	cr_assert_eq(sreq_wait(s, &r), 0);
	r.done = false;
	cr_assert_eq(wf_store_read(s, &r.req, 6, 3 * 4096, 8192, slots + 5 * 4096, 1), 0);
	cr_assert_eq(sreq_wait(s, &r), 0);
	cr_assert_eq(memcmp(slots + 4096, slots + 5 * 4096, 8192), 0);
	/* unwritten through a fixed buffer: zeros */
	memset(slots + 4 * 4096, 0x33, 4096);
	r.done = false;
	cr_assert_eq(wf_store_read(s, &r.req, 6, 0, 4096, slots + 4 * 4096, 1), 0);
	cr_assert_eq(sreq_wait(s, &r), 0);
	cr_assert(all_zero(slots + 4 * 4096, 4096));
	/* plain buffers still work beside them */
	cr_assert_eq(s_read(s, 6, 0, EXT, other), 0);
	cr_assert_eq(memcmp(other + 3 * 4096, slots + 4096, 8192), 0);
	cr_assert_eq(wf_store_unregister_buffers(s), 0);
	wf_store_close(s);
	free(slots);
	free(other);
}

Test(store_io, flush_fua_and_ring_fd)
{
	struct wf_store *s = fresh("flush", 16 * MiB, WF_STORE_CACHE_AUTO);
	uint8_t *w = abuf(4096);
	struct sreq r = { .done = false };
	struct pollfd pfd = { .fd = wf_store_ring_fd(s), .events = POLLIN };

	pattern(w, 4096, 1, 0, 1);
	cr_assert_eq(s_write(s, 1, 0, 4096, w, WF_STORE_FUA), 0);
	cr_assert_eq(s_flush(s), 0);

	/* a completion makes the ring fd readable */
	wf_store_req_init(&r.req, sreq_done, NULL);
	cr_assert_eq(wf_store_read(s, &r.req, 1, 0, 4096, w, -1), 0);
	cr_assert_eq(wf_store_submit(s), 1);
	cr_assert_eq(poll(&pfd, 1, 5000), 1);
	while (!r.done)
		wf_store_poll(s, 8);
	cr_assert_eq(r.res, 0);
	wf_store_close(s);
	free(w);
}

/* The shared view answers what the store holds, and a reader holding an
 * old answer learns that the extent changed under it. */
Test(store_io, shared_view_seqlock)
{
	struct wf_store *s = fresh("view", 16 * MiB, WF_STORE_CACHE_NONE);
	uint8_t *w = abuf(4096), *r = abuf(4096);
	struct wf_view v;
	uint32_t phys, seq, phys2, seq2;
	int fd;

	cr_assert_eq(wf_view_open(wf_store_index_fd(s), &v), 0);
	cr_assert_eq(wf_view_lookup(&v, 5, 2, &phys, &seq), 0);
	pattern(w, 4096, 5, 2 * EXT + 4096, 1);
	cr_assert_eq(s_write(s, 5, 2 * EXT + 4096, 4096, w, 0), 0);
	cr_assert_eq(wf_view_lookup(&v, 5, 2, &phys, &seq), 1);
	cr_assert_eq(seq & 1, 0);

	/* read the device like the short-circuit path would, through the
	 * read-only fd the target would hand out */
	fd = wf_store_dev_fd_ro(s);
	cr_assert(fd >= 0);
	cr_assert_lt(pwrite(fd, w, 4096, 0), 0, "a read-only fd wrote");
	cr_assert_eq(pread(fd, r, 4096, (off_t)wf_view_dev_offset(&v, phys, 4096)),
		     4096);
	cr_assert(wf_view_check(&v, phys, seq));
	cr_assert_eq(memcmp(r, w, 4096), 0);

	/* discard and reuse by another volume: the old answer is refused */
	cr_assert_eq(s_discard(s, 5, 2 * EXT, EXT), 0);
	cr_assert(!wf_view_check(&v, phys, seq));
	cr_assert_eq(wf_view_lookup(&v, 5, 2, &phys2, &seq2), 0);
	cr_assert_eq(s_write(s, 6, 0, 4096, w, 0), 0);
	cr_assert_eq(wf_view_lookup(&v, 6, 0, &phys2, &seq2), 1);
	cr_assert_eq(phys2, phys);
	cr_assert_neq(seq2, seq);
	cr_assert(!wf_view_check(&v, phys, seq));
	close(fd);
	wf_view_close(&v);
	/* a view of garbage is refused */
	cr_assert_lt(wf_view_open(open("/dev/null", O_RDONLY), &v), 0);
	wf_store_close(s);
	free(w);
	free(r);
}

/* Many allocate/discard cycles over few extents, the table kept at its
 * highest load: every removal deletes by shifting later entries back, so
 * after every step the table has no tombstones, holds exactly the live
 * extents, and every entry is reachable from its home bucket; every lookup
 * stays right, before and after a reopen. */
Test(store_io, churn_keeps_hash_table_exact)
{
	struct wf_store_stat st;
	struct wf_store *s = fresh("churn", 4 * MiB, WF_STORE_CACHE_NONE);
	uint8_t *w = abuf(4096), *r = abuf(4096);
	struct wf_view v;
	uint64_t n, keep, probes = 0;
	uint32_t seq0;
	const char *bad;

	cr_assert_eq(wf_view_open(wf_store_index_fd(s), &v), 0);
	seq0 = v.hdr->table_seq;
	wf_store_stat(s, &st);
	n = st.extents;
	keep = n - 1;   /* every extent but one in use: long clusters */
	for (uint64_t i = 0; i < 40 * n; i++) {
		/* keep `keep` keys alive, sliding over fresh keys */
		uint64_t vol = i % 7, ext = i;

		pattern(w, 4096, vol, ext * EXT, i);
		cr_assert_eq(s_write(s, vol, ext * EXT, 4096, w, 0), 0, "i %llu",
			     (unsigned long long)i);
		if (i >= keep) {
			uint64_t j = i - keep;

			cr_assert_eq(s_read(s, j % 7, j * EXT, 4096, r), 0);
			pattern(w, 4096, j % 7, j * EXT, j);
			cr_assert_eq(memcmp(r, w, 4096), 0, "key %llu", (unsigned long long)j);
			cr_assert_eq(s_discard(s, j % 7, j * EXT, EXT), 0);
		}
		wf_store_stat(s, &st);
		bad = view_ht_check(&v, st.used, &probes);
		cr_assert_null(bad, "step %llu: %s", (unsigned long long)i, bad);
	}
	cr_assert_eq(st.used, keep);
	/* Entries did move (table_seq counts two per removal that moved
	 * some), and probes stay short at this load (2/3 of the buckets). */
	cr_assert_gt(v.hdr->table_seq - seq0, 2 * n, "table_seq %u", v.hdr->table_seq);
	cr_assert_leq(probes, 3 * keep, "%llu probes for %llu entries",
		      (unsigned long long)probes, (unsigned long long)keep);
	wf_view_close(&v);
	wf_store_close(s);
	s = store_open_ok(img, WF_STORE_CACHE_NONE);
	wf_store_stat(s, &st);
	cr_assert_eq(st.used, keep);
	for (uint64_t i = 40 * n - keep; i < 40 * n; i++) {
		cr_assert_eq(s_read(s, i % 7, i * EXT, 4096, r), 0);
		pattern(w, 4096, i % 7, i * EXT, i);
		cr_assert_eq(memcmp(r, w, 4096), 0);
	}
	wf_store_close(s);
	free(w);
	free(r);
}

/* Discard by writing zeros (the fallback when fallocate is refused). */
Test(store_io, discard_by_writing_zeros)
{
	struct wf_store_opts o = { .size = sizeof(o), .flags = WF_STORE_ZERO_BY_WRITE,
				   .cache = WF_STORE_CACHE_VOLATILE };
	struct wf_store_err err = { "" };
	struct wf_store_stat st;
	struct wf_store *s;
	uint8_t *w = abuf(EXT), *r = abuf(EXT);

	img_create(img, sizeof(img), "zw", 16 * MiB);
	/* 1 MiB extents: several zero-buffer writes per discard */
	cr_assert_eq(wf_store_format(img, 1, 1, 1 * MiB, false, &err), 0);
	cr_assert_eq(wf_store_open(img, &o, &s, &err), 0, "%s", err.msg);
	pattern(w, EXT, 2, 0, 1);
	for (uint64_t off = 0; off < 1 * MiB; off += EXT)
		cr_assert_eq(s_write(s, 2, off, EXT, w, 0), 0);
	cr_assert_eq(s_discard(s, 2, 4096, 8192), 0);
	cr_assert_eq(s_read(s, 2, 0, EXT, r), 0);
	cr_assert_eq(memcmp(r, w, 4096), 0);
	cr_assert(all_zero(r + 4096, 8192));
	cr_assert_eq(memcmp(r + 12288, w + 12288, EXT - 12288), 0);
	cr_assert_eq(s_discard(s, 2, 0, 1 * MiB), 0);
	wf_store_stat(s, &st);
	cr_assert_eq(st.used, 0);
	/* reallocated: the zeros really are on the device */
	cr_assert_eq(s_write(s, 3, 0, 4096, w, 0), 0);
	for (uint64_t off = 0; off < 1 * MiB; off += EXT) {
		cr_assert_eq(s_read(s, 3, off, EXT, r), 0);
		cr_assert(all_zero(r + (off ? 0 : 4096), EXT - (off ? 0 : 4096)));
	}
	wf_store_close(s);
	free(w);
	free(r);
}

Test(store_io, view_fd_cannot_be_mapped_writable)
{
	struct wf_store *s = fresh("seal", 4 * MiB, WF_STORE_CACHE_NONE);
	void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED,
		       wf_store_index_fd(s), 0);

	cr_assert_eq(m, MAP_FAILED);
	cr_assert_eq(errno, EPERM);
	wf_store_close(s);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Eventfd e, watched as i, is written: the wait returns, the watch fired
 * and is no longer pending once its completion is reaped. */
static void watch_fires(struct wf_store *s, int e, int i)
{
	uint64_t v = 1;

	cr_assert_eq(write(e, &v, sizeof(v)), sizeof(v));
	cr_assert_eq(wf_store_wait(s, 5000), 0);
	cr_assert_eq(wf_store_poll(s, 8), 0);
	cr_assert_eq(wf_store_woken(s), 1u << i);
	cr_assert_not(wf_store_watch_pending(s, i));
}

/* r completes while watch i's fd stays quiet: the watch stays pending. */
static void done_while_quiet(struct wf_store *s, struct sreq *r, int i)
{
	while (!r->done) {
		cr_assert_eq(wf_store_wait(s, 5000), 0);
		wf_store_poll(s, 8);
	}
	cr_assert_eq(r->res, 0);
	cr_assert(wf_store_watch_pending(s, i), "quiet fd, yet the watch fired");
	cr_assert_eq(wf_store_woken(s), 0);
}

/* A watch that fired goes back into the ring with the next submit that
 * enters the kernel anyway (the reactor then polls its fabric quietly
 * while the watch is pending), not with a submit that has nothing to
 * enter for; a pending watch says the fd has not been readable since. */
Test(store_io, a_submit_with_io_rearms_the_watches_that_fired)
{
	struct wf_store *s = fresh("rearm", 16 * MiB, WF_STORE_CACHE_AUTO);
	uint8_t *w = abuf(4096);
	struct sreq r = { .done = false };
	int e = eventfd(0, EFD_NONBLOCK);
	uint64_t v = 1;
	int i;

	cr_assert_geq(e, 0);
	i = wf_store_watch(s, e);
	cr_assert_geq(i, 0);
	cr_assert_not(wf_store_watch_pending(s, i), "pending before any wait");
	cr_assert_not(wf_store_watch_pending(s, i + 1));
	cr_assert_eq(wf_store_wait(s, 0), 0);
	cr_assert(wf_store_watch_pending(s, i), "the wait arms it");

	/* it fires: no longer pending once its completion is reaped */
	watch_fires(s, e, i);
	cr_assert_eq(read(e, &v, sizeof(v)), sizeof(v));

	/* a submit with nothing queued leaves it out (no system call) */
	cr_assert_eq(wf_store_submit(s), 0);
	cr_assert_not(wf_store_watch_pending(s, i));

	/* a submit with I/O puts it back in the same io_uring_enter */
	pattern(w, 4096, 3, 0, 1);
	wf_store_req_init(&r.req, sreq_done, NULL);
	cr_assert_eq(wf_store_write(s, &r.req, 1, 0, 4096, w, -1, 0), 0);
	cr_assert_geq(wf_store_submit(s), 1);
	cr_assert(wf_store_watch_pending(s, i), "the submit left the watch out");
	done_while_quiet(s, &r, i);

	/* and it fires as before */
	watch_fires(s, e, i);
	wf_store_close(s);
	close(e);
	free(w);
}

/* A submit whose io_uring_enter fails leaves its SQEs (the watch armed
 * with them too) in the SQ: the watch is not pending until an enter that
 * succeeds puts it in the kernel (the reactor would poll its fabric
 * quietly meanwhile), and it is not armed twice. */
Test(store_io, a_failed_submit_leaves_the_watch_not_pending)
{
	struct wf_store *s = fresh("failsub", 16 * MiB, WF_STORE_CACHE_AUTO);
	uint8_t *w = abuf(4096);
	struct sreq r = { .done = false };
	int e = eventfd(0, EFD_NONBLOCK);
	uint64_t v = 1;
	int i, fd;

	cr_assert_geq(e, 0);
	i = wf_store_watch(s, e);
	cr_assert_geq(i, 0);
	cr_assert_eq(wf_store_wait(s, 0), 0);
	watch_fires(s, e, i);
	cr_assert_eq(read(e, &v, sizeof(v)), sizeof(v));

	/* The enter fails (no such ring fd): the write and the watch wait
	 * in the SQ. */
	pattern(w, 4096, 5, 0, 1);
	wf_store_req_init(&r.req, sreq_done, NULL);
	cr_assert_eq(wf_store_write(s, &r.req, 1, 0, 4096, w, -1, 0), 0);
	fd = s->ring.enter_ring_fd;
	s->ring.enter_ring_fd = -1;
	cr_assert_lt(wf_store_submit(s), 0);
	s->ring.enter_ring_fd = fd;
	cr_assert_not(wf_store_watch_pending(s, i),
		      "pending, yet its poll never entered the kernel");
	cr_assert_eq(io_uring_sq_ready(&s->ring), 2, "the write and the poll wait");

	/* The next enter takes both: one poll, pending, quiet. */
	cr_assert_eq(wf_store_submit(s), 2, "a second poll of the watch went in");
	cr_assert(wf_store_watch_pending(s, i));
	done_while_quiet(s, &r, i);
	watch_fires(s, e, i);
	wf_store_close(s);
	close(e);
	free(w);
}

/* wf_store_wait sleeps for device completions and watched fds alike, and
 * a watch is level-triggered: readiness left unconsumed wakes it again. */
Test(store_io, wait_wakes_for_io_and_watched_fds)
{
	struct wf_store *s = fresh("wait", 16 * MiB, WF_STORE_CACHE_AUTO);
	uint8_t *w = abuf(4096);
	struct sreq r = { .done = false };
	int e1 = eventfd(0, EFD_NONBLOCK), e2 = eventfd(0, EFD_NONBLOCK);
	uint64_t v = 1, t0;
	int i1, i2;

	cr_assert_geq(e1, 0);
	cr_assert_geq(e2, 0);
	i1 = wf_store_watch(s, e1);
	i2 = wf_store_watch(s, e2);
	cr_assert_eq(i1, 0);
	cr_assert_eq(i2, 1);
	cr_assert_eq(wf_store_watch(s, -1), -EBADF);
	for (int i = 2; i < WF_STORE_WATCH_MAX; i++)
		cr_assert_eq(wf_store_watch(s, e1), i);
	cr_assert_eq(wf_store_watch(s, e1), -ENOSPC);

	/* nothing ready: the timeout ends the wait, nothing woken */
	t0 = now_ms();
	cr_assert_eq(wf_store_wait(s, 100), 0);
	cr_assert_geq(now_ms() - t0, 90);
	cr_assert_eq(wf_store_poll(s, 8), 0);
	cr_assert_eq(wf_store_woken(s), 0);

	/* a device completion wakes it (and is counted by poll) */
	pattern(w, 4096, 2, 0, 1);
	wf_store_req_init(&r.req, sreq_done, NULL);
	cr_assert_eq(wf_store_write(s, &r.req, 1, 0, 4096, w, -1, 0), 0);
	while (!r.done) {
		cr_assert_eq(wf_store_wait(s, 5000), 0);
		wf_store_poll(s, 8);
	}
	cr_assert_eq(r.res, 0);
	cr_assert_eq(wf_store_woken(s), 0);

	/* a watched fd wakes it; poll does not count it as work */
	cr_assert_eq(write(e2, &v, sizeof(v)), sizeof(v));
	t0 = now_ms();
	cr_assert_eq(wf_store_wait(s, 5000), 0);
	cr_assert_lt(now_ms() - t0, 4000);
	cr_assert_eq(wf_store_poll(s, 8), 0);
	cr_assert_eq(wf_store_woken(s), 1u << i2);
	cr_assert_eq(wf_store_woken(s), 0, "woken clears");
	/* left readable: the next wait fires again at once (level) */
	t0 = now_ms();
	cr_assert_eq(wf_store_wait(s, 5000), 0);
	cr_assert_lt(now_ms() - t0, 4000);
	wf_store_poll(s, 8);
	cr_assert_eq(wf_store_woken(s), 1u << i2);
	/* consumed: quiet again */
	cr_assert_eq(read(e2, &v, sizeof(v)), sizeof(v));
	cr_assert_eq(wf_store_wait(s, 50), 0);
	wf_store_poll(s, 8);
	cr_assert_eq(wf_store_woken(s), 0);
	wf_store_close(s);
	close(e1);
	close(e2);
	free(w);
}
