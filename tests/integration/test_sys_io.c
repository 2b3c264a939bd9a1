/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libweft against three real weft-target daemons (scripts/cluster on
 * conf/local.conf): data across extent boundaries and many PGs, request
 * errors, discard.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "bench/pattern.h"
#include "proto/ctl.h"
#include "tests/integration/sys.h"

SYS_SUITE(sys_io, 120);

/* Used extents per target, from their control sockets (`weftctl status`
 * shows the same in bytes; its --json is checked in tests/tools). */
static void used_extents(uint64_t used[SYS_TARGETS])
{
	for (unsigned t = 0; t < SYS_TARGETS; t++)
		used[t] = le64toh(sys_ctl_status(C.run, t).used);
}

/*
 * 48 MiB written in requests of 3 blocks + 1 MiB - 4 KiB ... every request
 * crosses an extent boundary; read back with a different split; then
 * every target holds a share (placement spreads the 48 extents over the
 * 64 PGs and the three targets).
 */
Test(sys_io, extents_and_pgs)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	const uint64_t span = 48ull << 20;
	const size_t wlen = 3 * SYS_BS + 128 * 1024;    /* odd size, crosses */
	char *buf = NULL, *rbuf;
	uint64_t used[SYS_TARGETS], total = 0;

	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 5000, &cl, &vol, "vol1");
	buf = weft_buf_alloc(cl, 1 << 20);
	rbuf = malloc(1 << 20);         /* unregistered: the bounce path */
	cr_assert(buf && rbuf);
	for (uint64_t off = SYS_EXT - 2 * SYS_BS; off < span; off += wlen) {
		size_t len = off + wlen > span ? span - off : wlen;

		wf_pattern_fill(buf, len, 77, off);
		cr_assert_eq(weft_pwrite(vol, buf, len, off, 0), (ssize_t)len,
			     "write at %llu", (unsigned long long)off);
	}
	/* Reads of 1 MiB straddling every boundary, into plain memory. */
	for (uint64_t off = SYS_EXT / 2; off + (1 << 20) <= span; off += 1 << 20) {
		size_t bad = 0;

		cr_assert_eq(weft_pread(vol, rbuf, 1 << 20, off), 1 << 20);
		if (off < SYS_EXT - 2 * SYS_BS)
			continue;
		cr_assert(wf_pattern_check(rbuf, 1 << 20, 77, off, &bad) == 0,
			  "mismatch at volume offset %llu",
			  (unsigned long long)(off + bad));
	}
	cr_assert_eq(weft_fsync(vol), 0);
	used_extents(used);
	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		cr_expect(used[t] > 4, "target %u holds only %llu extents", t,
			  (unsigned long long)used[t]);
		total += used[t];
	}
	/* Extents 0 .. 47 were written (extent 0 from its last 8 KiB). */
	cr_expect_eq(total, 48, "used extents over all targets: %llu",
		     (unsigned long long)total);
	free(rbuf);
	weft_buf_free(cl, buf);
	weft_cluster_close(cl);
}

Test(sys_io, bad_requests)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	uint64_t size;
	char *buf;
	int ret;

	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 5000, &cl, &vol, "vol1");
	size = weft_volume_size(vol);
	cr_assert_eq(size, 1ull << 30);
	cr_assert_eq(weft_volume_block_size(vol), SYS_BS);
	buf = weft_buf_alloc(cl, 2 << 20);
	cr_assert(buf);
	memset(buf, 0xab, 2 << 20);

	/* Unaligned offset and length, zero length: -EINVAL, no completion. */
	cr_expect_eq(weft_pread(vol, buf, SYS_BS, 512), -EINVAL);
	cr_expect_eq(weft_pwrite(vol, buf, SYS_BS, 100, 0), -EINVAL);
	cr_expect_eq(weft_pread(vol, buf, 1000, 0), -EINVAL);
	cr_expect_eq(weft_pwrite(vol, buf, SYS_BS + 1, 0, 0), -EINVAL);
	cr_expect_eq(weft_pread(vol, buf, 0, 0), -EINVAL);
	cr_expect_eq(weft_pwrite(vol, buf, 0, 0, 0), -EINVAL);
	cr_expect_eq(weft_discard_sync(vol, 0, 0), -EINVAL);
	cr_expect_eq(weft_discard_sync(vol, 4096, 100), -EINVAL);
	/* Out of range: starts past the end, runs past the end, and an
	 * offset so large that offset + length wraps. */
	ret = weft_pread(vol, buf, SYS_BS, size);
	cr_expect(ret == -ERANGE || ret == -EINVAL, "read at the end: %d", ret);
	ret = weft_pwrite(vol, buf, 2 * SYS_BS, size - SYS_BS, 0);
	cr_expect(ret == -ERANGE || ret == -EINVAL, "write across the end: %d", ret);
	ret = weft_pread(vol, buf, SYS_BS, UINT64_MAX - 4095);
	cr_expect(ret == -ERANGE || ret == -EINVAL, "wrapping read: %d", ret);
	ret = weft_discard_sync(vol, size - SYS_BS, 2 * SYS_BS);
	cr_expect(ret == -ERANGE || ret == -EINVAL, "discard across the end: %d", ret);
	/* Oversized: longer than the whole volume. */
	ret = weft_pread(vol, buf, (size_t)size + SYS_BS, 0);
	cr_expect(ret == -ERANGE || ret == -EINVAL, "oversized read: %d", ret);
	/* The asynchronous calls refuse the same way and queue nothing. */
	cr_expect_eq(weft_read(vol, buf, SYS_BS, 1, 7), -EINVAL);
	ret = weft_write(vol, buf, SYS_BS, size, 0, 7);
	cr_expect(ret == -ERANGE || ret == -EINVAL, "async write past the end: %d", ret);
	cr_expect_eq(weft_inflight(cl), 0u);
	/* Every error has a readable text. */
	cr_expect(strlen(weft_strerror(-EINVAL)) > 0);
	cr_expect(strlen(weft_strerror(-ERANGE)) > 0);
	/* The last block and a 2 MiB request (split over extents) work. */
	cr_expect_eq(weft_pwrite(vol, buf, SYS_BS, size - SYS_BS, 0), SYS_BS);
	cr_expect_eq(weft_pwrite(vol, buf, 2 << 20, SYS_EXT / 2, 0), 2 << 20);
	cr_expect_eq(weft_pread(vol, buf, 2 << 20, SYS_EXT / 2), 2 << 20);
	for (size_t i = 0; i < (2u << 20); i++)
		if ((unsigned char)buf[i] != 0xab)
			cr_assert_fail("byte %zu reads %#x", i, (unsigned char)buf[i]);
	weft_buf_free(cl, buf);
	weft_cluster_close(cl);
}

/* Discard whole extents and parts of extents; reads return zeros there
 * and the data elsewhere, through the target and short-circuited. */
Test(sys_io, discard_reads_zeros)
{
	const uint64_t base = 8ull << 20, span = 4ull << 20;
	const uint64_t d0 = base + SYS_EXT / 2, dlen = 2ull << 20;  /* 0.5..2.5 */
	const unsigned flags[2] = { WEFT_F_NO_SHORT_CIRCUIT, 0 };
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *buf;

	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 5000, &cl, &vol, "vol1");
	buf = weft_buf_alloc(cl, span);
	cr_assert(buf);
	wf_pattern_fill(buf, span, 91, base);
	cr_assert_eq(weft_pwrite(vol, buf, span, base, 0), (ssize_t)span);
	{
		int ret = weft_discard_sync(vol, d0, dlen);

		/* int: 0 or the length (both mean done) */
		cr_assert(ret == 0 || ret == (int)dlen, "discard: %d", ret);
	}
	weft_buf_free(cl, buf);
	weft_cluster_close(cl);

	for (unsigned k = 0; k < 2; k++) {
		sys_open(&C, flags[k], 5000, &cl, &vol, "vol1");
		buf = weft_buf_alloc(cl, span);
		cr_assert(buf);
		memset(buf, 0x77, span);
		cr_assert_eq(weft_pread(vol, buf, span, base), (ssize_t)span);
		for (uint64_t b = 0; b < span; b += SYS_BS) {
			uint64_t off = base + b;
			bool gone = off >= d0 && off < d0 + dlen;

			if (gone) {
				for (unsigned i = 0; i < SYS_BS; i++)
					if (buf[b + i])
						cr_assert_fail("%s: discarded offset %llu "
							       "reads %#x",
							       k ? "short-circuit" : "network",
							       (unsigned long long)(off + i),
							       (unsigned char)buf[b + i]);
			} else {
				cr_assert(wf_pattern_check(buf + b, SYS_BS, 91, off,
							   NULL) == 0,
					  "%s: kept offset %llu lost its data",
					  k ? "short-circuit" : "network",
					  (unsigned long long)off);
			}
		}
		weft_buf_free(cl, buf);
		weft_cluster_close(cl);
	}
}
