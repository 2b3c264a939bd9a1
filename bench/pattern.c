/* SPDX-License-Identifier: Apache-2.0 */
#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "bench/pattern.h"

/*
 * One mix per 64-byte line, not per word: the pattern is written before
 * every benchmark write and checked after every read, so it must cost far
 * less than the I/O (about 0.5 us per 4 KiB here, from 1.2 us with a
 * double mix per word).  The words of a
 * line step from the line's base by an odd constant: distinct within the
 * line, and a line from anywhere else (another offset, another seed) has an
 * unrelated base.
 */
#define WORD_STEP 0x9e3779b97f4a7c15ull

/* wf_mix64 is a bijection, so within one seed no two lines share a base;
 * across seeds a match needs seed1 ^ seed2 == (L1 ^ L2) * LINE_K-ish
 * coincidences for every line of a block at once. */
#define LINE_K 0xd6e8feb86659fd93ull

static inline uint64_t line_base(uint64_t seed, uint64_t line)
{
	return wf_mix64(seed ^ (line * LINE_K));
}

/* The 8-byte word that covers absolute offsets [8w, 8w + 8). */
static inline uint64_t word_at(uint64_t seed, uint64_t w)
{
	return line_base(seed, w >> 3) + (w & 7) * WORD_STEP;
}

static inline void fill_line(uint8_t *p, uint64_t base)
{
	uint64_t w[8];

	for (unsigned k = 0; k < 8; k++)
		w[k] = htole64(base + k * WORD_STEP);
	memcpy(p, w, 64);
}

static inline bool line_ok(const uint8_t *p, uint64_t base)
{
	uint64_t w[8], diff = 0;

	memcpy(w, p, 64);
	for (unsigned k = 0; k < 8; k++)
		diff |= w[k] ^ htole64(base + k * WORD_STEP);
	return diff == 0;
}

static inline bool word_ok(const uint8_t *p, uint64_t seed, uint64_t w)
{
	uint64_t got, v = htole64(word_at(seed, w));

	memcpy(&got, p, 8);
	return got == v;
}

static inline uint8_t byte_at(uint64_t seed, uint64_t x)
{
	uint64_t v = word_at(seed, x >> 3);

	return (uint8_t)(v >> ((x & 7) * 8));
}

void wf_pattern_fill(void *buf, size_t len, uint64_t seed, uint64_t offset)
{
	uint8_t *p = buf;
	size_t i = 0;

	/* Head and tail bytewise, the aligned middle a word at a time; the
	 * word is stored little-endian, the byte order byte_at() defines. */
	while (i < len && ((offset + i) & 7))
		p[i] = byte_at(seed, offset + i), i++;
	/* Words up to a line boundary, whole lines, then the last words. */
	for (; i + 8 <= len && ((offset + i) & 63); i += 8) {
		uint64_t v = htole64(word_at(seed, (offset + i) >> 3));

		memcpy(p + i, &v, 8);
	}
	for (; i + 64 <= len; i += 64)
		fill_line(p + i, line_base(seed, (offset + i) >> 6));
	for (; i + 8 <= len; i += 8) {
		uint64_t v = htole64(word_at(seed, (offset + i) >> 3));

		memcpy(p + i, &v, 8);
	}
	for (; i < len; i++)
		p[i] = byte_at(seed, offset + i);
}

int wf_pattern_check(const void *buf, size_t len, uint64_t seed,
		     uint64_t offset, size_t *bad_at)
{
	const uint8_t *p = buf;
	size_t i = 0;

	while (i < len && ((offset + i) & 7)) {
		if (p[i] != byte_at(seed, offset + i))
			goto bad;
		i++;
	}
	for (; i + 8 <= len; i += 8) {
		/* Whole lines: accumulate differences, look closer only on one. */
		if (!((offset + i) & 63) && i + 64 <= len &&
		    line_ok(p + i, line_base(seed, (offset + i) >> 6))) {
			i += 56;
			continue;
		}
		if (!word_ok(p + i, seed, (offset + i) >> 3)) {
			/* Find the exact byte for the report. */
			while (p[i] == byte_at(seed, offset + i))
				i++;
			goto bad;
		}
	}
	for (; i < len; i++)
		if (p[i] != byte_at(seed, offset + i))
			goto bad;
	return 0;
bad:
	if (bad_at)
		*bad_at = i;
	return -EILSEQ;
}

static uint64_t vseed(uint64_t version)
{
	return wf_mix64(0x5eedull ^ (version * 0x9e3779b97f4a7c15ull));
}

void wf_block_fill(void *buf, size_t len, uint64_t offset, uint64_t version)
{
	if (!version) {
		memset(buf, 0, len);
		return;
	}
	wf_pattern_fill(buf, len, vseed(version), offset);
	memcpy(buf, &version, sizeof(version));
}

int64_t wf_block_version(const void *buf, size_t len, uint64_t offset)
{
	const unsigned char *b = buf;
	uint64_t v;
	size_t i;

	for (i = 0; i < len && !b[i]; i++)
		;
	if (i == len)
		return 0;
	memcpy(&v, buf, sizeof(v));
	if (!v || v > (1ull << 40))
		return -1;
	if (wf_pattern_check(b + 8, len - 8, vseed(v), offset + 8, NULL))
		return -1;
	return (int64_t)v;
}
