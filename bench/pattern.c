/* SPDX-License-Identifier: Apache-2.0 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "bench/pattern.h"

/* The 8-byte word that covers absolute offsets [8w, 8w + 8). */
static inline uint64_t word_at(uint64_t seed, uint64_t w)
{
	return wf_mix64(seed ^ wf_mix64(w));
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
		uint64_t v = htole64(word_at(seed, (offset + i) >> 3)), got;

		memcpy(&got, p + i, 8);
		if (got != v) {
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
