/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Seeded, offset-dependent data patterns, so that every byte read back can
 * be checked against what was written: the byte at absolute device offset x
 * is a function of (seed, x) alone.  Data written at one offset therefore
 * fails the check at any other offset (misdirected writes and reads are
 * caught), and a different seed per run (or per generation) catches stale
 * data from an earlier run.
 */
#ifndef WEFT_BENCH_PATTERN_H
#define WEFT_BENCH_PATTERN_H

#include <stddef.h>
#include <stdint.h>

/* Fills len bytes of buf with the pattern for device offset `offset`. */
void wf_pattern_fill(void *buf, size_t len, uint64_t seed, uint64_t offset);

/*
 * Checks len bytes of buf against the pattern for `offset`.  Returns 0 when
 * every byte matches, else -EILSEQ and, if bad_at is not NULL, the index in
 * buf of the first byte that differs.
 */
int wf_pattern_check(const void *buf, size_t len, uint64_t seed,
		     uint64_t offset, size_t *bad_at);

/*
 * Versioned blocks: an 8-byte version, then the pattern of a seed drawn
 * from the version, so a block read back says which write it came from.
 * Version 0 is zeros (never written, or discarded).
 */
void    wf_block_fill(void *buf, size_t len, uint64_t offset, uint64_t version);
/* The version buf holds (0 for zeros), or -1 if it matches none. */
int64_t wf_block_version(const void *buf, size_t len, uint64_t offset);

/* splitmix64: the mixing function behind the pattern and seeded offsets. */
static inline uint64_t wf_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

#endif
