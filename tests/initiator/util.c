/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "initiator/include/weft_env.h"
#include "tests/initiator/util.h"

void tu_fill(void *buf, size_t len, uint64_t seed)
{
	char *c = buf;

	/* memcpy: the buffer may be deliberately misaligned */
	for (size_t i = 0; i < len / 8; i++) {
		uint64_t w = seed * 0x9e3779b97f4a7c15ull + i * 0x100000001b3ull;

		memcpy(c + i * 8, &w, 8);
	}
}

double tu_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct weft_cluster *tu_open(const char *map, unsigned qd, unsigned timeout_ms,
			     const char *transport, unsigned flags)
{
	struct weft_cluster_opts o = {
		.size = sizeof(o), .map_path = map, .transport = transport,
		.queue_depth = qd, .timeout_ms = timeout_ms, .flags = flags,
	};
	struct weft_cluster *cl;
	int ret;

	weft_env_opts(&o, "test");
	ret = weft_cluster_open(&o, &cl);

	cr_assert_eq(ret, 0, "weft_cluster_open: %s", weft_strerror(ret));
	return cl;
}

struct weft_volume *tu_vol(struct weft_cluster *cl, const char *name)
{
	struct weft_volume *v;
	int ret = weft_volume_open(cl, name, &v);

	cr_assert_eq(ret, 0, "weft_volume_open(%s): %s", name, weft_strerror(ret));
	return v;
}

void tu_bufs_get(struct weft_cluster *cl, size_t len, bool registered,
		 struct tu_bufs *b)
{
	memset(b, 0, sizeof(*b));
	if (registered) {
		b->w = weft_buf_alloc(cl, len);
		b->r = weft_buf_alloc(cl, len);
	} else {
		/* Deliberately misaligned, both of them. */
		b->raw = malloc(2 * len + 16);
		cr_assert(b->raw);
		b->w = b->raw + 3;
		b->r = b->raw + len + 7;
	}
	cr_assert(b->w && b->r);
}

void tu_bufs_put(struct weft_cluster *cl, struct tu_bufs *b)
{
	if (b->raw) {
		free(b->raw);
	} else {
		weft_buf_free(cl, b->r);
		weft_buf_free(cl, b->w);
	}
	memset(b, 0, sizeof(*b));
}

void tu_roundtrip(struct weft_volume *v, const struct tu_bufs *b, uint64_t off,
		  size_t len, uint64_t seed)
{
	ssize_t n;

	tu_fill(b->w, len, seed);
	n = weft_pwrite(v, b->w, len, off, 0);
	cr_assert_eq(n, (ssize_t)len, "pwrite at %llu: %zd (%s)",
		     (unsigned long long)off, n, weft_strerror((int)n));
	memset(b->r, 0x5a, len);
	n = weft_pread(v, b->r, len, off);
	cr_assert_eq(n, (ssize_t)len, "pread at %llu: %zd (%s)",
		     (unsigned long long)off, n, weft_strerror((int)n));
	cr_assert_eq(memcmp(b->w, b->r, len), 0, "data read back at %llu",
		     (unsigned long long)off);
}
