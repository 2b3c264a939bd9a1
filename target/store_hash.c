/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store's extent hash table, (volume, extent) -> physical extent, in
 * the shared view: find, insert, backward-shift removal with its moves
 * announced through hdr->table_seq, and the data path's lock-free lookup
 * around them (docs/store.md, "Queues" and "The hash table").
 * Used by store_io.c, by open (store_format.c) and by tests/store.
 */
#define _GNU_SOURCE
#include <pthread.h>

#include "target/store_int.h"

#define HT_EMPTY        0u

/*
 * Hash table (shared view).  Buckets hold phys + 1 (0: empty); linear
 * probing without tombstones.  Readers on other queues and in other
 * processes probe without the lock, so:
 *  - an insert only fills an empty bucket: no present key's probe path
 *    changes;
 *  - a removal shifts later entries of its cluster back into the hole
 *    (backward-shift deletion), which keeps every probe path free of
 *    empty buckets and the table free of tombstones, so probes stay as
 *    short as the load factor says, for ever, without rebuilds.  A
 *    reader passing the hole before an entry moved into it and reaching
 *    the entry's old bucket after it was emptied would wrongly conclude
 *    "not mapped", so moves are bracketed by making hdr->table_seq odd,
 *    and readers retry when it changed (a seqlock).  A removal that
 *    moves nothing leaves table_seq alone: no present key's path ran
 *    through the hole, or its entry would have been movable.
 * Writers hold sh->lock.
 */

static uint64_t ht_home(const struct wf_store *s, uint32_t phys)
{
	return wf_view_hash(s->pe[phys].volume, s->pe[phys].extent, s->buckets);
}

int wf_ht_find(const struct wf_store *s, uint64_t volume, uint32_t extent,
	       uint64_t *bucket)
{
	uint64_t i = wf_view_hash(volume, extent, s->buckets);

	/* Bounded, and every entry checked: a lock-free caller may probe
	 * while another queue moves entries (it then retries). */
	for (uint64_t n = 0; n < s->buckets; n++) {
		uint32_t v = __atomic_load_n(&s->ht[i], __ATOMIC_ACQUIRE);

		if (v == HT_EMPTY)
			return -1;
		/* (UINT32_MAX, the view format's tombstone, which this
		 * store never writes, fails the range check too) */
		if (v - 1 < s->sb.extents) {
			const struct wf_view_pe *pe = &s->pe[v - 1];

			if (__atomic_load_n(&pe->volume, __ATOMIC_RELAXED) == volume &&
			    __atomic_load_n(&pe->extent, __ATOMIC_RELAXED) == extent) {
				*bucket = i;
				return (int)(v - 1);
			}
		}
		if (++i == s->buckets)
			i = 0;
	}
	return -1;
}

void wf_ht_insert(struct wf_store *s, uint32_t phys)
{
	uint64_t i = ht_home(s, phys);

	/* There are more buckets than extents (view_alloc): this ends. */
	while (s->ht[i] != HT_EMPTY)
		if (++i == s->buckets)
			i = 0;
	/* Release: a reader that sees the bucket sees pe[phys] filled. */
	__atomic_store_n(&s->ht[i], phys + 1, __ATOMIC_RELEASE);
	s->sh->live++;
}

void wf_ht_remove(struct wf_store *s, uint64_t hole)
{
	uint32_t seq = s->hdr->table_seq;
	uint64_t j = hole;
	bool moving = false;

	for (;;) {
		uint64_t home;
		uint32_t v;

		if (++j == s->buckets)
			j = 0;
		v = s->ht[j];
		if (v == HT_EMPTY)
			break;
		/* v's probe runs from its home to j: it passes the hole
		 * (and may move there) unless home lies in (hole, j]. */
		home = ht_home(s, v - 1);
		if (hole < j ? home > hole && home <= j
			     : home > hole || home <= j)
			continue;
		if (!moving) {
			/* Odd before the first move is visible (the fence
			 * orders it before the stores below). */
			__atomic_store_n(&s->hdr->table_seq, seq + 1,
					 __ATOMIC_RELAXED);
			__atomic_thread_fence(__ATOMIC_RELEASE);
			moving = true;
		}
		__atomic_store_n(&s->ht[hole], v, __ATOMIC_RELEASE);
		hole = j;
		s->sh->ht_moves++;
	}
	__atomic_store_n(&s->ht[hole], HT_EMPTY, __ATOMIC_RELEASE);
	if (moving)
		__atomic_store_n(&s->hdr->table_seq, seq + 2, __ATOMIC_RELEASE);
	s->sh->live--;
}

bool wf_store_holds(struct wf_store *s, uint64_t volume, uint32_t extent)
{
	struct wf_store_req req = {
		.volume = volume,
		.offset = (uint64_t)extent << s->extent_shift,
	};
	uint64_t bucket;

	return wf_ht_lookup(s, &req, &bucket) >= 0;
}

/* Lock-free lookup: retried around entries moving in the hash table (a
 * removal, which runs under the lock, so waiting on the lock waits for
 * it). */
int wf_ht_lookup(struct wf_store *s, const struct wf_store_req *req,
		 uint64_t *bucket)
{
	uint32_t ext = (uint32_t)(req->offset >> s->extent_shift);

	for (;;) {
		uint32_t t = __atomic_load_n(&s->hdr->table_seq, __ATOMIC_ACQUIRE);
		int p;

		if (t & 1) {
			pthread_mutex_lock(&s->sh->lock);
			pthread_mutex_unlock(&s->sh->lock);
			continue;
		}
		p = wf_ht_find(s, req->volume, ext, bucket);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&s->hdr->table_seq, __ATOMIC_RELAXED) == t)
			return p;
	}
}
