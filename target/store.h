/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The target store: fixed-size extents on a file or block device, opened
 * O_DIRECT and driven by the store's own io_uring (registered file, optional
 * registered buffers).  Format, durability rules and memory sizing are in
 * docs/store.md; this header states the contracts.
 *
 * Threading: a store has one or more queues (struct wf_store handles: the
 * one wf_store_open returns, plus those of wf_store_add_queue), each with
 * its own io_uring and owned by one thread.  Every (volume, extent) has an
 * owner queue (wf_extent_reactor): a request submitted on another queue is
 * passed to the owner's ring with IORING_OP_MSG_RING, runs there, and comes
 * back the same way, so its done callback still runs in the submitting
 * queue's wf_store_poll.  The per-extent state is thus only ever touched by
 * one thread: reads and overwrites of mapped extents take no lock.
 * Allocating or freeing an extent and persisting the index take the
 * store's one mutex (docs/store.md, "Queues").  Nothing on the data path
 * allocates.  Requests are caller-owned structs (struct wf_store_req) that
 * stay untouched by the caller from the submitting call until their done
 * callback runs.
 *
 * The reactor loop is, liburing style:
 *
 *	wf_store_write(s, req, ...);      queue any number of requests
 *	wf_store_submit(s);               one io_uring_enter per loop turn
 *	wf_store_poll(s, 64);             reap, run done callbacks
 *	... when idle: wf_store_wait(s, ms), which also wakes for the fds
 *	    given to wf_store_watch() (or sleep on wf_store_ring_fd()) ...
 *
 * Done callbacks only ever run inside wf_store_poll() (never inside the
 * submitting call, also for requests answered without device I/O), so a
 * callback may submit new requests.  Completions may queue internal work
 * (index writes, next phases of a discard): call wf_store_submit() after
 * wf_store_poll() in every loop turn.
 *
 * Every function returns 0 (or a count) on success and -errno on failure.
 */
#ifndef WEFT_TARGET_STORE_H
#define WEFT_TARGET_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "proto/view.h"

#define WF_STORE_BLOCK          4096u   /* alignment of offsets, lengths,
                                         * buffers, and the index block size */
#define WF_STORE_EXTENT_MIN     4096u
#define WF_STORE_EXTENT_MAX     (1u << 30)
#define WF_STORE_EXTENT_NONE    WF_VIEW_EXTENT_NONE /* largest extent index + 1 */
#define WF_STORE_MAX_QUEUES     256u    /* queues (reactors) of one store */

struct wf_store;

/* Error detail for format and open: says which check failed. */
struct wf_store_err {
	char msg[256];
};

/*
 * Format path (an existing regular file or a block device) as an empty store.
 * Refuses (-EEXIST) a device whose first block already holds a weft
 * superblock magic unless force is set.  The data area is zeroed (a regular
 * file is truncated and re-extended, so it becomes sparse; a block device
 * gets fallocate(ZERO_RANGE) or BLKZEROOUT), then both copies of every index
 * block and finally the superblock are written and fdatasync'ed.
 * extent_size: power of two in [WF_STORE_EXTENT_MIN, WF_STORE_EXTENT_MAX].
 * -EINVAL for bad arguments or a device too small for one extent.
 */
int wf_store_format(const char *path, uint64_t cluster_id, uint32_t target_id,
		    uint32_t extent_size, bool force, struct wf_store_err *err);

/* Volatile write cache handling (see docs/store.md, durability). */
enum wf_store_cache {
	WF_STORE_CACHE_AUTO = 0,   /* block device: queue/write_cache in sysfs;
	                            * regular file: volatile (file system) */
	WF_STORE_CACHE_VOLATILE,   /* always flush index updates */
	WF_STORE_CACHE_NONE,       /* trust completion as durable: only for a
	                            * device with power-loss protection, or for
	                            * tests that only survive process crashes */
};

enum {
	WF_STORE_EXPECT_CLUSTER = 1u << 0, /* check opts.cluster_id */
	WF_STORE_EXPECT_TARGET  = 1u << 1, /* check opts.target_id */
	WF_STORE_ZERO_BY_WRITE  = 1u << 2, /* discard writes zeros instead of
	                                    * fallocate (for devices whose
	                                    * zeroing offload is slow or wrong;
	                                    * also the automatic fallback) */
};

/* Options grow at the end only; callers set .size = sizeof(opts). */
struct wf_store_opts {
	size_t   size;
	uint32_t flags;         /* WF_STORE_EXPECT_* */
	uint32_t target_id;     /* expected target id */
	uint64_t cluster_id;    /* expected cluster id */
	uint32_t ring_entries;  /* io_uring SQ size (0: 256); the CQ is 4x */
	uint32_t cache;         /* enum wf_store_cache */
	uint32_t lock_wait_ms;  /* wait this long for the device lock held by
	                         * another (e.g. a dying) process (0: 5000) */
};

/*
 * Open a formatted store: validates the superblock and rebuilds the
 * in-RAM index from the index blocks.  Errors (with err->msg):
 *   -EMEDIUMTYPE      no weft superblock (wrong magic)
 *   -EPROTONOSUPPORT  unknown format version
 *   -EBADMSG          superblock checksum mismatch
 *   -ESTALE           cluster or target id differs from the expected one
 *   -EUCLEAN          geometry does not fit the device, both copies of an
 *                     index block are corrupt, or the index is inconsistent
 *   -EBUSY            another process holds the device (flock) past
 *                     lock_wait_ms
 *   other -errno from open, io_uring setup, allocation.
 * An index block with one torn or corrupt copy is not an error: the other
 * copy is used and wf_store_stat() counts it in torn_blocks.
 */
int  wf_store_open(const char *path, const struct wf_store_opts *opts,
		   struct wf_store **out, struct wf_store_err *err);
/* Wait for every request in flight (their callbacks run), then free. */
void wf_store_close(struct wf_store *s);

struct wf_store_stat {
	uint64_t cluster_id;
	uint32_t target_id;
	uint32_t extent_size;
	uint64_t extents;       /* data extents on the device */
	uint64_t used;          /* allocated (including allocations in flight) */
	uint64_t free;          /* extents - used */
	uint64_t index_bytes;   /* RAM held by the index (shared + private) */
	uint32_t torn_blocks;   /* index block copies found corrupt at open */
	bool     volatile_cache; /* index updates are flushed before acks */
	uint64_t handed_over;   /* this queue: requests run by another queue
	                         * (the extent's owner) since open */
};
void wf_store_stat(const struct wf_store *s, struct wf_store_stat *st);

/* Requests */

enum wf_store_op {
	WF_STORE_OP_READ = 1,
	WF_STORE_OP_WRITE,
	WF_STORE_OP_DISCARD,
	WF_STORE_OP_FLUSH,
};

enum {
	WF_STORE_FUA = 1u << 0,        /* write: durable when acknowledged */
};

/*
 * A request.  The caller sets done (and user if it likes, or embeds the
 * struct and uses container_of), then passes it to one of the calls below.
 * The other fields belong to the store until done runs.
 */
struct wf_store_req {
	void (*done)(struct wf_store_req *req, int res); /* res: 0 or -errno */
	void *user;

	/* private to the store */
	struct wf_store_req *next;
	struct wf_store *home;          /* submitted here: done runs here */
	struct wf_store *q;             /* runs here (the extent's owner) */
	struct wf_store *xdst;          /* outbox: the message's queue */
	int32_t  xres;                  /* outbox: the message's result */
	uint8_t  xkind;                 /* message in flight (store_msg.c) */
	void     *buf;
	uint64_t volume;
	uint64_t offset;
	uint32_t len;
	uint32_t phys;
	int32_t  res;
	int32_t  buf_index;
	uint32_t chunk;
	uint8_t  op;
	uint8_t  phase;
	uint8_t  parts;
	uint8_t  flags;
};

static inline void wf_store_req_init(struct wf_store_req *req,
				     void (*done)(struct wf_store_req *, int),
				     void *user)
{
	req->done = done;
	req->user = user;
}

/*
 * Data operations.  offset and len: multiples of WF_STORE_BLOCK, len > 0,
 * the range inside one extent (offset / extent_size is the extent index,
 * below WF_STORE_EXTENT_NONE); the caller splits at extent boundaries.
 * buf: WF_STORE_BLOCK aligned.  buf_index: -1 for a plain buffer, or the
 * index of a buffer registered with wf_store_register_buffers() that holds
 * [buf, buf + len) (then the I/O is READ_FIXED/WRITE_FIXED).
 *
 * Return 0 when the request is accepted: done runs exactly once, later,
 * from wf_store_poll(), with 0 or -errno (-ENOSPC: no free extent for a
 * write into an unallocated extent; -EIO: device error, or the store has
 * failed an index write and refuses everything since).  Return -EINVAL
 * (bad alignment, range, buffer) without queuing anything: done never runs.
 *
 * Completion semantics (details in docs/store.md):
 *   read     the bytes are in buf; never written extents read as zeros
 *            without device I/O.
 *   write    the data is on the device (O_DIRECT completion) and, for a
 *            write that allocated its extent, the index entry is persisted
 *            (flushed too when the cache is volatile).  With WF_STORE_FUA
 *            the data is durable across power loss.
 *   discard  a whole extent: zeroed, its index entry persisted as free
 *            (flushed when the cache is volatile), reusable.  Part of an
 *            extent: the range is zeroed (like a write of zeros, not
 *            durable before a flush).  An unallocated extent: nothing to do.
 *   flush    every write and discard completed before the flush was
 *            submitted is durable across power loss.
 * Concurrent requests on overlapping ranges complete in any order (as on a
 * disk); a read, write or discard aimed at an extent being discarded waits
 * for that discard (a read returns zeros only if it succeeded), and a
 * write to an extent whose allocation is in flight
 * uses that allocation (no extent is ever allocated twice).
 */
int wf_store_read(struct wf_store *s, struct wf_store_req *req,
		  uint64_t volume, uint64_t offset, uint32_t len,
		  void *buf, int buf_index);
int wf_store_write(struct wf_store *s, struct wf_store_req *req,
		   uint64_t volume, uint64_t offset, uint32_t len,
		   const void *buf, int buf_index, unsigned flags);
int wf_store_discard(struct wf_store *s, struct wf_store_req *req,
		     uint64_t volume, uint64_t offset, uint32_t len);
int wf_store_flush(struct wf_store *s, struct wf_store_req *req);

/*
 * More queues on the same store: a new io_uring (256 SQEs when
 * ring_entries is 0) sharing the index, the allocator and the device.  Add
 * every queue before the first request on any of them (the owner of an
 * extent depends on the number of queues); at most WF_STORE_MAX_QUEUES.
 * Each queue is closed with wf_store_close (the last one frees the store);
 * close them only when no queue has requests in flight (wf_store_inflight
 * of every queue is 0, polling all of them), since a request may wait on
 * another queue's ring.  Needs IORING_OP_MSG_RING (Linux 5.18).
 */
int  wf_store_add_queue(struct wf_store *s, unsigned ring_entries,
			struct wf_store **out);
/*
 * What physical extent phys holds: 1 and *volume, *extent when it holds
 * one, 0 when it is free, -ERANGE past the last.  A lock-free look at the
 * index: the answer may change right after (a hint for scans such as the
 * target's reclaiming of deleted volumes; act through requests).
 */
int  wf_store_extent_at(const struct wf_store *s, uint32_t phys,
			uint64_t *volume, uint32_t *extent);
/* Whether extent `extent` of `volume` is allocated here (the same kind of
 * hint: a lock-free lookup). */
bool wf_store_holds(struct wf_store *s, uint64_t volume, uint32_t extent);

/* Queues of the store, and the index of this one (0 for the first). */
unsigned wf_store_queues(const struct wf_store *s);
unsigned wf_store_queue_index(const struct wf_store *s);
/* Queue i of the store (NULL once closed). */
struct wf_store *wf_store_queue_of(const struct wf_store *s, unsigned i);

/* The queue that owns extent `extent` of `volume` among n queues:
 * wf_extent_reactor (proto/view.h), also the reactor an initiator sends
 * that extent's requests to. */

/* Reactor hooks */

/* Submit every queued SQE (one io_uring_enter).  Returns the count.
 * When there is something to submit, the watches (wf_store_watch) that
 * fired since they were last armed go back into the ring with it. */
int  wf_store_submit(struct wf_store *s);
/* Submit, then block until at least one completion is ready (tests, drain;
 * never on a busy reactor). */
int  wf_store_submit_and_wait(struct wf_store *s);
/* Reap up to max CQEs and run the callbacks they finish.  Returns the
 * number of CQEs reaped (0 if none). */
int  wf_store_poll(struct wf_store *s, unsigned max);
/* The io_uring fd: pollable (POLLIN) when completions are ready. */
int  wf_store_ring_fd(const struct wf_store *s);
/*
 * Sleeping in the ring.  A reactor that waits for device completions and
 * for other fds (fabric completion channels, an epoll set) sleeps in one
 * io_uring_enter instead of an epoll_wait plus an eventfd hop per device
 * completion: wf_store_watch() adds fd to the polls (POLLIN, level
 * triggered: armed again after each wakeup) of this queue's ring and returns its index (at most WF_STORE_WATCH_MAX per
 * queue; setup only, never removed).  wf_store_wait() submits what is
 * queued and sleeps until any completion (device I/O, a message from
 * another queue, a watched fd becoming readable) or timeout_ms (< 0: no
 * limit); it returns at once when answers are already waiting.  Returns 0
 * or -errno.  wf_store_poll() consumes the watch completions (they are
 * not counted in its result); wf_store_woken() returns the mask (1 << index)
 * of watches that fired since its last call and clears it.
 */
#define WF_STORE_WATCH_MAX 4
int  wf_store_watch(struct wf_store *s, int fd);
/* Watch i's poll is in the kernel and no completion of it has been
 * reaped: its fd has not been readable since the last wf_store_wait (or
 * submit) armed it, or the completion is in the ring for the next
 * wf_store_poll.  False while an io_uring_enter that failed left the
 * poll in the SQ: the next one that succeeds puts it in. */
bool wf_store_watch_pending(const struct wf_store *s, int i);
int  wf_store_wait(struct wf_store *s, int timeout_ms);
unsigned wf_store_woken(struct wf_store *s);
/* Requests accepted on this queue and not yet completed, plus work this
 * queue's ring does for other queues. */
unsigned wf_store_inflight(const struct wf_store *s);

/*
 * Register buffers with the ring (the reactor's staging slots).  Replaces
 * any earlier registration; only call with no fixed-buffer I/O in flight.
 * Buffers must be WF_STORE_BLOCK aligned.  Pinned memory counts against
 * RLIMIT_MEMLOCK for unprivileged processes.
 */
int  wf_store_register_buffers(struct wf_store *s, const struct iovec *iov,
			       unsigned n);
int  wf_store_unregister_buffers(struct wf_store *s);

/*
 * Read-only shared view of the index, for the short-circuit read path:
 * its format and the reader are in proto/view.h (what target and
 * initiator share); the store writes it.
 */
/* The memfd of the view (owned by the store: dup it to hand it out), or
 * -EPERM when the kernel could not seal it against writable mappings (then
 * it must not leave the process: no short-circuit reads). */
int  wf_store_index_fd(const struct wf_store *s);
/* The store's own device fd (read-write, owned by the store). */
int  wf_store_dev_fd(const struct wf_store *s);
/* A new read-only O_DIRECT fd on the device, for handing to a reader that
 * must not be able to write it; the caller closes it.  Returns fd or -errno. */
int  wf_store_dev_fd_ro(const struct wf_store *s);

/*
 * Publish the map epoch the target now serves in the view (kept if lower
 * than the one there).  A short-circuit reader whose map is older must not
 * use the view: the extent may have a new primary that took writes.
 */
void wf_store_view_publish_epoch(struct wf_store *s, uint64_t epoch);
/* Until when (CLOCK_MONOTONIC ns) the target's read leases for epoch
 * hold, for short-circuit readers (struct wf_view_hdr.lease_*). */
void wf_store_view_publish_lease(struct wf_store *s, uint64_t epoch,
				 uint64_t until);

#endif
