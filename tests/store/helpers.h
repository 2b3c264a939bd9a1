/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the store tests: scratch images under /var/tmp (O_DIRECT does
 * not work on tmpfs), synchronous wrappers, seeded data patterns. */
#ifndef WEFT_TESTS_STORE_HELPERS_H
#define WEFT_TESTS_STORE_HELPERS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "target/store.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

struct sreq {
	struct wf_store_req req;        /* first: the callback casts back */
	int  res;
	bool done;
};

static inline void sreq_done(struct wf_store_req *req, int res)
{
	struct sreq *r = (struct sreq *)req;

	r->res = res;
	r->done = true;
}

/* Run the ring until r completes. */
static inline int sreq_wait(struct wf_store *s, struct sreq *r)
{
	while (!r->done) {
		int ret = wf_store_submit_and_wait(s);

		cr_assert(ret >= 0, "submit_and_wait: %d", ret);
		wf_store_poll(s, 64);
	}
	return r->res;
}

/* Run until nothing is in flight. */
static inline void store_drain(struct wf_store *s)
{
	while (wf_store_inflight(s)) {
		cr_assert(wf_store_submit_and_wait(s) >= 0);
		wf_store_poll(s, 64);
	}
}

static inline int s_write(struct wf_store *s, uint64_t vol, uint64_t off,
			  uint32_t len, const void *buf, unsigned flags)
{
	struct sreq r = { .done = false };
	int ret;

	wf_store_req_init(&r.req, sreq_done, NULL);
	ret = wf_store_write(s, &r.req, vol, off, len, buf, -1, flags);
	return ret ? ret : sreq_wait(s, &r);
}

static inline int s_read(struct wf_store *s, uint64_t vol, uint64_t off,
			 uint32_t len, void *buf)
{
	struct sreq r = { .done = false };
	int ret;

	wf_store_req_init(&r.req, sreq_done, NULL);
	ret = wf_store_read(s, &r.req, vol, off, len, buf, -1);
	return ret ? ret : sreq_wait(s, &r);
}

static inline int s_discard(struct wf_store *s, uint64_t vol, uint64_t off,
			    uint32_t len)
{
	struct sreq r = { .done = false };
	int ret;

	wf_store_req_init(&r.req, sreq_done, NULL);
	ret = wf_store_discard(s, &r.req, vol, off, len);
	return ret ? ret : sreq_wait(s, &r);
}

static inline int s_flush(struct wf_store *s)
{
	struct sreq r = { .done = false };
	int ret;

	wf_store_req_init(&r.req, sreq_done, NULL);
	ret = wf_store_flush(s, &r.req);
	return ret ? ret : sreq_wait(s, &r);
}

static inline void *abuf(size_t len)
{
	void *p = NULL;

	cr_assert_eq(posix_memalign(&p, 4096, len), 0);
	return p;
}

/* Block content for (vol, off, gen): every 8-byte word differs. */
static inline void pattern(void *buf, uint32_t len, uint64_t vol, uint64_t off,
			   uint64_t gen)
{
	uint64_t *w = buf;

	for (uint32_t i = 0; i < len / 8; i++) {
		uint64_t x = vol * 0x9e3779b97f4a7c15ull ^ (off + i * 8) ^
			     gen * 0xc2b2ae3d27d4eb4full;

		x ^= x >> 29;
		x *= 0xbf58476d1ce4e5b9ull;
		w[i] = x ^ (x >> 32);
	}
}

static inline bool all_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* A scratch image of size bytes under /var/tmp; name into path. */
static inline void img_create(char *path, size_t plen, const char *tag,
			      uint64_t size)
{
	int fd;

	snprintf(path, plen, "/var/tmp/weft-store-%s-%d.img", tag, (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert(fd >= 0, "create %s: %s", path, strerror(errno));
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static inline struct wf_store *store_open_ok(const char *path, uint32_t cache)
{
	struct wf_store_opts o = { .size = sizeof(o), .cache = cache };
	struct wf_store_err err = { "" };
	struct wf_store *s = NULL;
	int ret = wf_store_open(path, &o, &s, &err);

	cr_assert_eq(ret, 0, "open %s: %d %s", path, ret, err.msg);
	return s;
}

/*
 * The hash table of a view, checked against what backward-shift deletion
 * promises: no tombstones, exactly `live` occupied buckets, no entry twice,
 * every entry reachable from its home bucket without crossing an empty
 * one (else a probe for it would stop short: a false "not mapped"), and
 * table_seq even (no move left half done).  Quiescent tables only.
 * Returns NULL or what is wrong.  *probes: total probe length of all
 * entries (1 for an entry in its home bucket).
 */
static inline const char *view_ht_check(const struct wf_view *v,
					uint64_t live, uint64_t *probes)
{
	uint64_t n = v->hdr->buckets, used = 0, total = 0;
	static char why[160];

	if (v->hdr->table_seq & 1)
		return "table_seq odd";
	for (uint64_t j = 0; j < n; j++) {
		uint32_t b = v->ht[j];
		const struct wf_view_pe *pe;
		uint64_t i, d = 1;

		if (b == 0)
			continue;
		if (b == UINT32_MAX)
			return "tombstone";
		if (b - 1 >= v->hdr->extents)
			return "bucket out of range";
		pe = &v->pe[b - 1];
		if (pe->extent == WF_STORE_EXTENT_NONE)
			return "bucket names a free extent";
		used++;
		for (i = wf_view_hash(pe->volume, pe->extent, n); i != j;
		     i = i + 1 == n ? 0 : i + 1, d++) {
			if (v->ht[i] == 0) {
				snprintf(why, sizeof(why), "bucket %llu unreachable: "
					 "empty bucket %llu on its path",
					 (unsigned long long)j, (unsigned long long)i);
				return why;
			}
			if (v->ht[i] == b)
				return "entry twice";
		}
		total += d;
	}
	if (used != live) {
		snprintf(why, sizeof(why), "%llu buckets used, %llu live",
			 (unsigned long long)used, (unsigned long long)live);
		return why;
	}
	if (probes)
		*probes = total;
	return NULL;
}

#endif
