/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The short-circuit index view: a published, versioned format the target's
 * store writes (target/store.c) and a local initiator reads (libweft's
 * sc.c), and the hash both use.  Part of proto/: depends on nothing of
 * ours.  docs/store.md, "The shared index view", describes it in full.
 *
 * The target hands the view over its control socket (proto/ctl.h,
 * WF_CTL_SHORTCIRCUIT) as a memfd sealed against resizing, holding a
 * struct wf_view_hdr, the per-physical-extent table and the hash table.
 * The reader maps it read-only (wf_view_open) together with the device fd
 * and reads the device itself:
 *
 *	r = wf_view_lookup(&v, vol, ext, &phys, &seq);
 *	r == 0:       not mapped: the extent reads as zeros
 *	r == -EAGAIN: the entry is changing (allocation or discard in
 *	              flight): retry later or go through the target
 *	r == 1:       read the device at wf_view_dev_offset(&v, phys, off),
 *	              then keep the data only if wf_view_check(&v, phys, seq)
 *	              still holds; else look up again.
 *
 * The sequence number of a physical extent changes (becoming odd) before
 * the store starts changing what it holds (allocation, discard zeroing), so
 * a read that passes the check after its I/O completed never returns data
 * of an extent that was discarded or reassigned meanwhile.
 *
 * Everything in the mapping comes from another process: the reader checks
 * every bound before use (wf_view_open) and every answer by sequence
 * numbers.  Integers are host order: the view never leaves the host.
 */
#ifndef WEFT_PROTO_VIEW_H
#define WEFT_PROTO_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WF_VIEW_MAGIC           0x56494657u     /* "WFIV" */
#define WF_VIEW_VERSION         3u
#define WF_VIEW_EXTENT_NONE     UINT32_MAX      /* a free physical extent */

struct wf_view_hdr {
	uint32_t magic;         /* WF_VIEW_MAGIC */
	uint32_t version;       /* WF_VIEW_VERSION */
	uint64_t extents;       /* entries in the extent table */
	uint64_t buckets;       /* entries in the hash table */
	uint64_t pe_off;        /* byte offset of the extent table */
	uint64_t ht_off;        /* byte offset of the hash table */
	uint64_t data_off;      /* device byte offset of physical extent 0 */
	uint32_t extent_size;
	uint32_t table_seq;     /* odd while a removal moves hash table
	                         * entries */
	uint64_t cluster_id;
	uint32_t target_id;
	uint32_t pad;
	uint64_t epoch;         /* map epoch the target serves (only grows;
	                         * version 2) */
	/* Version 3 (docs/replication.md, "Read leases"): the target's read
	 * leases hold for map epoch lease_epoch before lease_until
	 * (CLOCK_MONOTONIC ns; UINT64_MAX: it needs none, one replica or
	 * leases off).  A short-circuit read routed in epoch E is good only
	 * if lease_epoch == E and it completed before lease_until.  Written
	 * lease_until = 0, lease_epoch, lease_until, with release order. */
	uint64_t lease_epoch;
	uint64_t lease_until;
};
_Static_assert(sizeof(struct wf_view_hdr) == 96, "view header is 96 bytes");

/* One physical extent: which (volume, extent) it holds. */
struct wf_view_pe {
	uint64_t volume;
	uint32_t extent;        /* WF_VIEW_EXTENT_NONE when free */
	uint32_t seq;           /* seqlock: odd while changing */
};
_Static_assert(sizeof(struct wf_view_pe) == 16, "view extent entry is 16 bytes");

/* A hash table bucket: 0 empty, else physical extent + 1. */
typedef uint32_t wf_view_bucket;
_Static_assert(sizeof(wf_view_bucket) == 4, "view bucket is 4 bytes");

/* The reader's handle on a mapped view. */
struct wf_view {
	const struct wf_view_hdr *hdr;
	const struct wf_view_pe *pe;
	const wf_view_bucket *ht;
	size_t map_len;
};

/* Map the view memfd read-only and check its bounds: 0, -EINVAL (not a
 * view of this version, or bounds that do not fit), or -errno. */
int  wf_view_open(int fd, struct wf_view *v);
void wf_view_close(struct wf_view *v);
/* 1 (mapped: *phys, *seq), 0 (not mapped) or -EAGAIN (changing). */
int  wf_view_lookup(const struct wf_view *v, uint64_t volume,
		    uint32_t extent, uint32_t *phys, uint32_t *seq);
/* Whether a read of phys issued after the lookup that gave seq returned
 * what the extent held (no discard or reassignment started meanwhile). */
bool wf_view_check(const struct wf_view *v, uint32_t phys, uint32_t seq);

static inline uint64_t wf_view_epoch(const struct wf_view *v)
{
	return __atomic_load_n(&v->hdr->epoch, __ATOMIC_ACQUIRE);
}

/* Whether the target's read leases hold for epoch at now (CLOCK_MONOTONIC
 * ns, this host's clock, which the target reads too). */
static inline bool wf_view_leased(const struct wf_view *v, uint64_t epoch,
				  uint64_t now)
{
	return __atomic_load_n(&v->hdr->lease_epoch, __ATOMIC_ACQUIRE) == epoch &&
	       now < __atomic_load_n(&v->hdr->lease_until, __ATOMIC_ACQUIRE);
}

static inline uint64_t wf_view_dev_offset(const struct wf_view *v,
					  uint32_t phys, uint64_t off)
{
	return v->hdr->data_off + (uint64_t)phys * v->hdr->extent_size + off;
}

/* The hash the store's table and view readers use: bucket of (volume,
 * extent) among n buckets.  Part of the view format (WF_VIEW_VERSION). */
static inline uint64_t wf_view_hash(uint64_t volume, uint32_t extent,
				    uint64_t n)
{
	uint64_t h = volume * 0x9e3779b97f4a7c15ull ^ extent;

	/* splitmix64 finaliser, then map onto [0, n) without a division */
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	return (uint64_t)(((unsigned __int128)h * n) >> 64);
}

/*
 * The reactor (store queue) among n that owns extent `extent` of `volume`:
 * a target runs each extent's requests there, and an initiator sends them
 * to that reactor's connection (docs/protocol.md, "Reactors").  Part of
 * the wire protocol: keep it stable.
 */
static inline unsigned wf_extent_reactor(uint64_t volume, uint32_t extent,
					 unsigned n)
{
	/* Salted so the owner does not follow the hash table's bucket. */
	return n <= 1 ? 0 : (unsigned)wf_view_hash(volume ^ 0x7265616374ull,
						   extent, n);
}

#endif
