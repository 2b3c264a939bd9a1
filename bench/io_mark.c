/* SPDX-License-Identifier: Apache-2.0 */
/* weft-bench io's mark on the volumes it writes (bench/io_mark.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench/io_mark.h"

/*
 * weft-bench writes over its working set.  So that it never does so to a
 * volume holding someone's data, it marks the volumes it writes: the
 * volume's last 4 KiB (never part of the working set) start with MARK.
 * A volume without the mark is taken only when it reads as zeros where
 * looked: the mark's block, block 0 and MARK_PROBES blocks spread over
 * the working set (a sample: a volume whose data sits elsewhere is not
 * seen, --overwrite is the operator's word).
 */
#define MARK          "weft-bench io working set, v1\n"
#define MARK_PROBES   64u

static bool all_zero(const char *p, size_t n)
{
	return !p[0] && !memcmp(p, p + 1, n - 1);
}

static int read_at(struct weft_volume *vol, char *buf, uint64_t off)
{
	ssize_t n = weft_pread(vol, buf, WF_IO_MARK_BLOCK, off);

	return n == WF_IO_MARK_BLOCK ? 0 : n < 0 ? (int)n : -EIO;
}

int wf_io_mark_check(struct weft_volume *vol, const char *name, uint64_t wsize,
		     bool overwrite, char *buf)
{
	uint64_t mark = weft_volume_size(vol) - WF_IO_MARK_BLOCK, found = UINT64_MAX;
	int ret = read_at(vol, buf, mark);

	if (ret)
		return ret;
	if (!memcmp(buf, MARK, sizeof(MARK) - 1))
		return 0;
	if (!all_zero(buf, WF_IO_MARK_BLOCK))
		found = mark;
	for (uint32_t i = 0; i <= MARK_PROBES && found == UINT64_MAX; i++) {
		uint64_t off = wsize / MARK_PROBES * i / WF_IO_MARK_BLOCK * WF_IO_MARK_BLOCK;

		if (off + WF_IO_MARK_BLOCK > wsize)
			break;
		ret = read_at(vol, buf, off);
		if (ret)
			return ret;
		if (!all_zero(buf, WF_IO_MARK_BLOCK))
			found = off;
	}
	if (found == UINT64_MAX)
		return 0;
	if (overwrite) {
		fprintf(stderr, "weft-bench io: volume %s holds data weft-bench did "
			"not write (at offset %llu): --overwrite: writing over it\n",
			name, (unsigned long long)found);
		return 0;
	}
	fprintf(stderr, "weft-bench io: volume %s holds data weft-bench did not "
		"write (offset %llu is not zero and the volume has no weft-bench "
		"mark in its last 4 KiB): the run would write over %llu MiB of it; "
		"use another volume, or --overwrite\n", name,
		(unsigned long long)found, (unsigned long long)(wsize >> 20));
	return 1;
}

int wf_io_mark_write(struct weft_volume *vol, const char *name, uint64_t seed,
		     uint64_t wsize, char *buf)
{
	uint64_t off = weft_volume_size(vol) - WF_IO_MARK_BLOCK;
	ssize_t n;

	memset(buf, 0, WF_IO_MARK_BLOCK);
	snprintf(buf, WF_IO_MARK_BLOCK, MARK "volume %s, seed %llu, working set %llu "
		 "bytes\n", name, (unsigned long long)seed,
		 (unsigned long long)wsize);
	n = weft_pwrite(vol, buf, WF_IO_MARK_BLOCK, off, 0);
	return n == WF_IO_MARK_BLOCK ? 0 : n < 0 ? (int)n : -EIO;
}
