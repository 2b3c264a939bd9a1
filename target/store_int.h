/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to the store (target/store_*.c): on-disk layout, the store
 * object, and what the data path's files (store_io.c, store_hash.c,
 * store_msg.c) share.  The byte layout is documented in docs/store.md;
 * the pack/unpack helpers in store_format.c are the only code that
 * touches raw blocks.
 */
#ifndef WEFT_TARGET_STORE_INT_H
#define WEFT_TARGET_STORE_INT_H

#include <liburing.h>
#include <pthread.h>

#include "target/store.h"

#define WF_SB_MAGIC             "WEFTSTOR"      /* 8 bytes, no NUL */
#define WF_SB_VERSION           1u
#define WF_IX_MAGIC             0x58494657u     /* "WFIX" little-endian */
#define WF_IX_HDR               32u
#define WF_IX_SLOT              16u
#define WF_IX_SLOTS             ((WF_STORE_BLOCK - WF_IX_HDR) / WF_IX_SLOT)
#define WF_IX_OFF               WF_STORE_BLOCK  /* index follows the superblock */
/* Highest physical extent count: phys + 1 must fit the hash table's u32
 * with 0 (empty) and UINT32_MAX (tombstone) reserved. */
#define WF_MAX_EXTENTS          (UINT32_MAX - 2u)
#define WF_IBUF_MAX             64u     /* index block writes in flight */

/* Slot states on disk. */
enum { WF_SLOT_FREE = 0, WF_SLOT_MAPPED = 1 };

/* Superblock fields, host order (wf_sb_pack/wf_sb_unpack convert). */
struct wf_sb {
	uint32_t version;
	uint64_t cluster_id;
	uint32_t target_id;
	uint32_t extent_size;
	uint64_t device_size;
	uint64_t extents;
	uint64_t index_off;
	uint32_t index_blocks;  /* per copy */
	uint32_t slots_per_block;
	uint64_t data_off;
	uint64_t nonce;         /* random per format: stamps every index block */
	uint64_t format_time;
};

/* Geometry for a device of dev_size bytes; -EINVAL if no extent fits. */
int  wf_sb_geometry(uint64_t dev_size, uint32_t extent_size, struct wf_sb *sb);
void wf_sb_pack(const struct wf_sb *sb, uint8_t *blk);
/* Parse and check a superblock block against the device size: 0 or the
 * -errno documented for wf_store_open, with a message. */
int  wf_sb_unpack(const uint8_t *blk, uint64_t dev_size, struct wf_sb *sb,
		  struct wf_store_err *err);
uint32_t wf_store_crc32c(const void *buf, size_t len);

/* In-RAM extent state (low 3 bits of ram[]; the rest counts device I/Os in
 * flight on the extent, which a whole-extent discard waits to drain). */
enum wf_ext_state {
	WF_EXT_FREE = 0,
	WF_EXT_ALLOCATING,      /* mapped in RAM, index write not yet done */
	WF_EXT_MAPPED,          /* mapped and persisted */
	WF_EXT_DISCARDING,      /* draining I/O, then zeroing; still mapped on disk */
	WF_EXT_FREEING,         /* zeroed; index write marking it free in flight */
};
#define WF_EXT_STATE(v)         ((v) & 7u)
#define WF_EXT_IO_ONE           8u

/* One index block: at most one write in flight, later changes batch up. */
struct wf_iblk {
	uint64_t seq;                   /* seq of the last write that landed */
	struct wf_store_req *inflight;  /* requests the write in flight covers */
	struct wf_store_req *pending;   /* requests waiting for the next write */
	uint32_t wait_next;             /* next block waiting for a buffer */
	uint16_t buf;                   /* index buffer of the write in flight */
	uint8_t  next_copy;             /* copy (0/1) the next write goes to */
	uint8_t  busy;                  /* write in flight */
	uint8_t  waiting;               /* queued for an index buffer */
};

/*
 * What every queue (handle) of one store shares and may change: the
 * allocator, the hash table's counters, the index block buffers.  Changed
 * only under lock (the slow path: allocating or freeing an extent and
 * persisting the index), except zero_by_write, which a discard on any
 * queue turns on without it (it only ever goes from false to true);
 * counters that the fast path or wf_store_stat read are written with
 * atomic stores.  See docs/store.md, "Queues".
 */
struct wf_store_sh {
	pthread_mutex_t lock;
	unsigned refs;                  /* open queues */
	unsigned nq;                    /* queues: the owner hash's n */
	struct wf_store *q[WF_STORE_MAX_QUEUES];
	uint64_t nfree;
	uint64_t live;                  /* keys in the hash table */
	uint64_t ht_moves;              /* entries moved by deletions (stats,
	                                 * tests) */
	uint16_t ibuf_free[WF_IBUF_MAX];
	unsigned nibuf_free;
	uint32_t wait_head, wait_tail;  /* blocks waiting for an index buffer */
	int      failed;                /* -errno once an index write failed */
	bool     zero_by_write;         /* fallocate refused: write zeros */
	uint8_t  fault;                 /* enum wf_store_fault, tests only */
	uint32_t fault_skip;            /* steps to let pass before failing */
};

/*
 * One queue of a store: its own io_uring (registered file, registered
 * buffers) and request lists, used by one thread.  Every queue holds the
 * same pointers to the shared memory below (copied at wf_store_add_queue).
 */
struct wf_store {
	struct io_uring ring;
	struct wf_store_sh *sh;
	unsigned qidx;                  /* in sh->q */
	int      fd;
	int      memfd;
	bool     view_shareable;        /* sealed against writable mappings */
	/* wf_store_watch(): fds polled (one-shot, re-armed) in this ring */
	struct { int fd; bool armed; } watch[WF_STORE_WATCH_MAX];
	unsigned nwatch;
	unsigned woken;                 /* watches fired, see wf_store_woken */
	bool     sq_left;               /* the last io_uring_enter failed (or
	                                 * took part of the SQ): polls armed
	                                 * may wait in the SQ, not the kernel */
	bool     volatile_cache;
	bool     is_blkdev;
	int      zero_mode;             /* fallocate mode that zeroes a range */

	struct wf_sb sb;
	uint32_t extent_shift;
	uint64_t nblocks;               /* index blocks per copy */

	/* shared view (memfd mapping) */
	void    *map;
	size_t   map_len;
	struct wf_view_hdr *hdr;
	struct wf_view_pe *pe;
	uint32_t *ht;
	uint64_t buckets;

	/* shared by every queue: freel, blk and ibuf change under sh->lock
	 * (see struct wf_store_sh), ram[p] is written by the queue that owns
	 * what p holds (store_io.c, ram_get), the rest is set at open */
	uint32_t *ram;                  /* per extent: state | io count */
	uint32_t *freel;                /* free extents, a stack */
	struct wf_iblk *blk;
	uint8_t  *ibuf;                 /* WF_IBUF_MAX index block buffers */
	void    *zbuf;                  /* zeros, for the zeroing fallback */
	uint32_t zbuf_len;
	uint32_t torn;
	size_t   ram_bytes;

	/* this queue's */
	struct wf_store_req *defer_head, *defer_tail; /* wait for a state change */
	struct wf_store_req *drain;     /* discards waiting for I/O to drain */
	struct wf_store_req *ready_head, *ready_tail; /* answered, no SQE */
	struct wf_store_req *outbox;    /* messages to other queues that found
	                                 * no SQE: sent again at the next poll */
	struct iovec *bufs;             /* registered buffers */
	unsigned nbufs;
	unsigned inflight;              /* accepted here, not completed */
	unsigned guests;                /* other queues' requests run here */
	unsigned blk_out;               /* index writes on this ring */
	uint64_t handed;                /* requests sent to their owner */
};

/*
 * store_hash.c: the hash table (used by store_io.c, by open, and by
 * tests/store).  Linear probing without tombstones: a removal shifts
 * later entries of its cluster back (docs/store.md, "The shared index
 * view").  Writers run under sh->lock (or before the store is shared, at
 * open); readers are lock-free and retry around hdr->table_seq, as
 * wf_ht_lookup does for req's extent (it waits on sh->lock while entries
 * move).  wf_ht_insert needs pe[phys] filled in; wf_ht_remove takes the
 * bucket wf_ht_find returned.
 */
void wf_ht_insert(struct wf_store *s, uint32_t phys);
void wf_ht_remove(struct wf_store *s, uint64_t bucket);
int  wf_ht_find(const struct wf_store *s, uint64_t volume, uint32_t extent,
		uint64_t *bucket);
int  wf_ht_lookup(struct wf_store *s, const struct wf_store_req *req,
		  uint64_t *bucket);

/* store_io.c and store_msg.c: CQE user_data tags.  Requests are 8-byte
 * aligned, blocks are numbers. */
#define TAG_REQ         0ull    /* a request's device I/O */
#define TAG_SOFT        1ull    /* a request answered without device I/O */
#define TAG_BLK         2ull    /* an index block write: block << 3 */
#define TAG_EXEC        3ull    /* message: run this request here (owner) */
#define TAG_DONE        4ull    /* message: your request is done (res) */
#define TAG_BLKDONE     5ull    /* message: its index write is done (res) */
#define TAG_XSRC        6ull    /* a message we sent failed */
#define TAG_WATCH       7ull    /* a watched fd is readable: index << 3 */
#define TAG_MASK        7ull
#define TAG_SHIFT       3

/* store_io.c, for store_msg.c: an SQE (NULL only if the ring takes no
 * more), run a request here (its extent's owner), continue a request
 * after the index write it waited for (err: it failed). */
struct io_uring_sqe *sio_sqe_get(struct wf_store *s);
void sio_dispatch(struct wf_store *s, struct wf_store_req *req);
void sio_blk_cont(struct wf_store *s, struct wf_store_req *req, int err);

/* store_msg.c: messages between queues (IORING_OP_MSG_RING).  Send req
 * to dst as kind (TAG_EXEC, TAG_DONE, TAG_BLKDONE) with res, or keep it
 * in the outbox when no SQE is free; send the outbox again; handle a
 * message CQE (true: an extent state may have changed, redispatch). */
void sio_msg_send(struct wf_store *s, struct wf_store *dst,
		  struct wf_store_req *req, uint8_t kind, int res);
void sio_outbox_flush(struct wf_store *s);
bool sio_msg_cqe(struct wf_store *s, struct wf_store_req *req, unsigned tag,
		 int res);

/*
 * Fault injection, for tests only: the (skip + 1)-th step of the given
 * kind from now fails with -EIO, once.  The checks sit on the discard and
 * index write paths only, never on reads or writes of mapped extents.
 *   WF_FAULT_DISC_ZERO   a zeroing step (fallocate, or one write of zeros)
 *                        of a whole-extent discard: it is not issued, the
 *                        discard fails and the extent stays mapped
 *   WF_FAULT_DISC_INDEX  the index write that would persist a discarded
 *                        extent as free: not issued, the write counts as
 *                        failed (so the store stops, as for a real one)
 */
enum wf_store_fault {
	WF_FAULT_NONE = 0,
	WF_FAULT_DISC_ZERO,
	WF_FAULT_DISC_INDEX,
};
void wf_store_fault(struct wf_store *s, enum wf_store_fault what,
		    unsigned skip);

/* store_format.c: index blocks, device open */
void wf_ix_build(const struct wf_store *s, uint64_t b, uint8_t copy,
		 uint64_t seq, uint8_t *blk);
int  wf_ix_load(struct wf_store *s, uint64_t b, const uint8_t *pair,
		struct wf_store_err *err);
void wf_store_seterr(struct wf_store_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Returns the fd or -errno; *size in bytes. */
int  wf_store_dev_open(const char *path, unsigned wait_ms, uint64_t *size,
		       bool *blkdev, struct wf_store_err *err);

#endif
