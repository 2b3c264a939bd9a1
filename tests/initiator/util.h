/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What libweft's tests share whatever they run against (the in-test peer
 * or real weft-target processes): a data pattern, a clock, and handles
 * opened with an assertion instead of an error path in every test.
 */
#ifndef WEFT_TESTS_INITIATOR_UTIL_H
#define WEFT_TESTS_INITIATOR_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "initiator/include/weft.h"

#define KiB 1024u
#define MiB (1024u * 1024)

/* The len / 8 words of pattern seed at buf (any alignment). */
void tu_fill(void *buf, size_t len, uint64_t seed);
/* Monotonic seconds. */
double tu_now_s(void);
/* A cluster handle on map (transport NULL: the default); asserts. */
struct weft_cluster *tu_open(const char *map, unsigned qd, unsigned timeout_ms,
			     const char *transport, unsigned flags);
/* Volume name of cl; asserts. */
struct weft_volume *tu_vol(struct weft_cluster *cl, const char *name);

/* A write buffer and a read buffer of the same length: registered with
 * the cluster handle, or misaligned heap memory (which libweft copies
 * through its bounce pool). */
struct tu_bufs {
	char *w, *r;
	char *raw;                      /* the heap block, if not registered */
};

void tu_bufs_get(struct weft_cluster *cl, size_t len, bool registered,
		 struct tu_bufs *b);
void tu_bufs_put(struct weft_cluster *cl, struct tu_bufs *b);
/* Writes len bytes of pattern seed from b->w at off, reads them back into
 * b->r, and asserts both succeed and the bytes are the same. */
void tu_roundtrip(struct weft_volume *v, const struct tu_bufs *b, uint64_t off,
		  size_t len, uint64_t seed);

#endif
