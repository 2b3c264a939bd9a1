/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reader side of the shared index view (format in proto/view.h).  Runs in
 * another process with a read-only mapping: it may see the store mid-way
 * through any change, so every answer is validated by sequence numbers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "proto/view.h"

int wf_view_open(int fd, struct wf_view *v)
{
	const struct wf_view_hdr *h;
	struct stat st;
	void *map;

	memset(v, 0, sizeof(*v));
	if (fstat(fd, &st))
		return -errno;
	if ((size_t)st.st_size < sizeof(*h))
		return -EINVAL;
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	h = map;
	/* Bounds come from the other process: check them before use. */
	if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != WF_VIEW_MAGIC ||
	    h->version != WF_VIEW_VERSION || !h->extents ||
	    h->buckets <= h->extents ||
	    h->pe_off < sizeof(*h) || h->pe_off % 8 ||
	    h->extents > ((size_t)st.st_size - h->pe_off) / sizeof(struct wf_view_pe) ||
	    h->ht_off < h->pe_off + h->extents * sizeof(struct wf_view_pe) ||
	    h->ht_off > (size_t)st.st_size ||
	    h->buckets > ((size_t)st.st_size - h->ht_off) / sizeof(uint32_t)) {
		munmap(map, (size_t)st.st_size);
		return -EINVAL;
	}
	v->hdr = h;
	v->pe = (const struct wf_view_pe *)((const uint8_t *)map + h->pe_off);
	v->ht = (const uint32_t *)((const uint8_t *)map + h->ht_off);
	v->map_len = (size_t)st.st_size;
	return 0;
}

void wf_view_close(struct wf_view *v)
{
	if (v->hdr)
		munmap((void *)v->hdr, v->map_len);
	memset(v, 0, sizeof(*v));
}

int wf_view_lookup(const struct wf_view *v, uint64_t volume,
			 uint32_t extent, uint32_t *phys, uint32_t *seq)
{
	uint64_t n = v->hdr->buckets, i, probes;
	uint32_t t1, t2;
	int ret = 0;

	t1 = __atomic_load_n(&v->hdr->table_seq, __ATOMIC_ACQUIRE);
	if (t1 & 1)
		return -EAGAIN;
	i = wf_view_hash(volume, extent, n);
	/* Bounded, whatever the table looks like mid-change (entries being
	 * moved by a removal: table_seq then differs below). */
	for (probes = 0; probes < n; probes++) {
		uint32_t b = __atomic_load_n(&v->ht[i], __ATOMIC_ACQUIRE);

		if (b == 0)
			break;
		if (b != UINT32_MAX && b - 1 < v->hdr->extents) {
			const struct wf_view_pe *pe = &v->pe[b - 1];
			uint32_t s1 = __atomic_load_n(&pe->seq, __ATOMIC_ACQUIRE);
			uint64_t vol = __atomic_load_n(&pe->volume, __ATOMIC_RELAXED);
			uint32_t ext = __atomic_load_n(&pe->extent, __ATOMIC_RELAXED);

			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (__atomic_load_n(&pe->seq, __ATOMIC_RELAXED) != s1)
				return -EAGAIN;
			if (vol == volume && ext == extent) {
				if (s1 & 1)
					return -EAGAIN;
				*phys = b - 1;
				*seq = s1;
				ret = 1;
				break;
			}
		}
		if (++i == n)
			i = 0;
	}
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	t2 = __atomic_load_n(&v->hdr->table_seq, __ATOMIC_RELAXED);
	return t1 == t2 ? ret : -EAGAIN;
}

bool wf_view_check(const struct wf_view *v, uint32_t phys,
			 uint32_t seq)
{
	/* The device read happened before this load (a syscall or an
	 * io_uring completion sits between): seq unchanged means no discard
	 * or reassignment started before the data was read. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return phys < v->hdr->extents &&
	       __atomic_load_n(&v->pe[phys].seq, __ATOMIC_ACQUIRE) == seq;
}
