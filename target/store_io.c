/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store's data path: request state machines over the io_uring, index
 * block writes, and the ring-level calls (submit, wait, poll).  The extent
 * hash table is in store_hash.c, the messages between queues in
 * store_msg.c.  No allocation: every request is caller-owned, every index
 * write uses one of WF_IBUF_MAX preallocated buffers.
 *
 * Request state machines (req->phase, the RP_ values below):
 *   read      IO -> done                  (or zeros without I/O)
 *   write     IO -> done                  extent mapped
 *             ALLOC -> IO -> done         allocated by this write: the
 *                                         index write, then the data
 *             WAIT -> IO -> done          allocation in flight by another
 *   discard   whole extent: DRAIN -> ZERO -> [FSYNC] -> FREE (index) -> done
 *             part of one:  ZERO -> done
 *   flush     IO -> done
 * req->parts counts what is still outstanding; the last part to finish
 * runs the callback.
 *
 * Threads and locks.  Each queue (struct wf_store) is used by one thread,
 * its reactor; a store may have several (see store.h).  A request runs on
 * the queue that owns its extent: submitted elsewhere, it travels there
 * and back as a message, and an index write hands the requests of other
 * queues that it carries back to them the same way (store_msg.c).  So the
 * per-extent state (ram[], the drain and defer lists) is only ever touched
 * by the extent's owner, and the data path of an extent (reads,
 * overwrites of mapped extents, a discard's drain and zeroing) takes no
 * lock (unless a test armed wf_store_fault).  Its hash table lookups are
 * lock-free too: they retry while a removal moves entries
 * (hdr->table_seq), like the short-circuit readers, and wait on the lock
 * meanwhile (store_hash.c).  What every queue shares takes sh->lock: the
 * allocator, the hash table's writers (allocation and free) and the index
 * blocks.  Callbacks never run under it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>

#include "target/store_int.h"

/* req->phase (RP_: request phase; PH_ in target.h is the reactor's) */
enum {
	RP_IO = 1,
	RP_ALLOC,
	RP_WAIT,
	RP_DRAIN,
	RP_ZERO,
	RP_ZERO_WRITE,
	RP_FSYNC,
	RP_FREE,
	RP_FAULT,       /* an injected failure (wf_store_fault) */
};

#define RF_WHOLE        0x80u   /* req->flags: discard of a whole extent */

static void redispatch(struct wf_store *s);

static void lock(struct wf_store *s)
{
	pthread_mutex_lock(&s->sh->lock);
}

static void unlock(struct wf_store *s)
{
	pthread_mutex_unlock(&s->sh->lock);
}

/* Atomic stores for what other threads read without the lock. */
#define SET(field, v)   __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)
#define GET(field)      __atomic_load_n(&(field), __ATOMIC_RELAXED)

/* Seqlock on a physical extent (see store.h, shared view). */
static void seq_begin(struct wf_store *s, uint32_t p)
{
	__atomic_store_n(&s->pe[p].seq, s->pe[p].seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void seq_end(struct wf_store *s, uint32_t p)
{
	__atomic_store_n(&s->pe[p].seq, s->pe[p].seq + 1, __ATOMIC_RELEASE);
}

/* ram[p] is written only by the queue that owns what p holds (or under
 * the lock while p is free); index block builders read it under the lock
 * from any queue: whole-word atomic loads and stores, no RMW needed. */
static uint32_t ram_get(const struct wf_store *s, uint32_t p)
{
	return __atomic_load_n(&s->ram[p], __ATOMIC_RELAXED);
}

static void ram_set(struct wf_store *s, uint32_t p, uint32_t v)
{
	__atomic_store_n(&s->ram[p], v, __ATOMIC_RELAXED);
}

static uint32_t ext_state(const struct wf_store *s, uint32_t p)
{
	return WF_EXT_STATE(ram_get(s, p));
}

static void set_state(struct wf_store *s, uint32_t p, uint32_t st)
{
	ram_set(s, p, (ram_get(s, p) & ~7u) | st);
}

/* Fault injection (tests): callers test GET(sh->fault) first, so an
 * unarmed store pays one predictable branch on the discard and index
 * write paths.  Under the lock. */
static bool fault_take_locked(struct wf_store *s, uint8_t what)
{
	if (s->sh->fault != what)
		return false;
	if (s->sh->fault_skip) {
		s->sh->fault_skip--;
		return false;
	}
	SET(s->sh->fault, (uint8_t)WF_FAULT_NONE);
	return true;
}

void wf_store_fault(struct wf_store *s, enum wf_store_fault what,
		    unsigned skip)
{
	lock(s);
	s->sh->fault_skip = skip;
	SET(s->sh->fault, (uint8_t)what);
	unlock(s);
}

static uint64_t dev_off(const struct wf_store *s, uint32_t p, uint64_t in_ext)
{
	return s->sb.data_off + ((uint64_t)p << s->extent_shift) + in_ext;
}

struct io_uring_sqe *sio_sqe_get(struct wf_store *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

	if (!sqe) {
		/* SQ full: hand it to the kernel now rather than fail. */
		io_uring_submit(&s->ring);
		sqe = io_uring_get_sqe(&s->ring);
	}
	return sqe;
}

static void req_finish(struct wf_store *s, struct wf_store_req *req)
{
	if (req->home != s) {
		/* Ran here for another queue: its callback runs there. */
		s->guests--;
		sio_msg_send(s, req->home, req, TAG_DONE, req->res);
		return;
	}
	s->inflight--;
	req->done(req, req->res);
}

static void part_done(struct wf_store *s, struct wf_store_req *req, int res)
{
	if (res < 0 && req->res == 0)
		req->res = res;
	if (--req->parts == 0)
		req_finish(s, req);
}

/* Answers that could not get an SQE wait here for wf_store_poll (never
 * seen with a working ring: sqe_get flushes a full SQ first). */
static void ready_push(struct wf_store *s, struct wf_store_req *req)
{
	req->next = NULL;
	if (s->ready_tail)
		s->ready_tail->next = req;
	else
		s->ready_head = req;
	s->ready_tail = req;
}

/* A part failed outside wf_store_poll: never run the callback from the
 * submitting call. */
static void part_fail_soft(struct wf_store *s, struct wf_store_req *req, int res)
{
	if (req->res == 0)
		req->res = res;
	if (--req->parts == 0)
		ready_push(s, req);
}

/* Answer a request through the CQ (a NOP), so callbacks only ever run in
 * wf_store_poll and the ring fd wakes a sleeping reactor. */
static void complete_soft(struct wf_store *s, struct wf_store_req *req, int res)
{
	struct io_uring_sqe *sqe = sio_sqe_get(s);

	req->res = res;
	req->parts = 1;
	if (!sqe)
		return ready_push(s, req);
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, (uintptr_t)req | TAG_SOFT);
}

static void defer(struct wf_store *s, struct wf_store_req *req)
{
	req->next = NULL;
	if (s->defer_tail)
		s->defer_tail->next = req;
	else
		s->defer_head = req;
	s->defer_tail = req;
}

/* Device I/O accounting per extent: a whole-extent discard waits for it. */
static void io_get(struct wf_store *s, uint32_t p)
{
	ram_set(s, p, ram_get(s, p) + WF_EXT_IO_ONE);
}

static void disc_zero(struct wf_store *s, struct wf_store_req *req);

static void io_put(struct wf_store *s, uint32_t p)
{
	struct wf_store_req **pp;

	ram_set(s, p, ram_get(s, p) - WF_EXT_IO_ONE);
	if (ext_state(s, p) != WF_EXT_DISCARDING || ram_get(s, p) >= WF_EXT_IO_ONE)
		return;
	for (pp = &s->drain; *pp; pp = &(*pp)->next) {
		struct wf_store_req *req = *pp;

		if (req->phys == p) {
			*pp = req->next;
			disc_zero(s, req);
			return;
		}
	}
}

static void prep_rw(struct wf_store *s, struct wf_store_req *req,
		    struct io_uring_sqe *sqe, bool write)
{
	uint64_t off = dev_off(s, req->phys,
			       req->offset & (s->sb.extent_size - 1));

	if (req->buf_index >= 0) {
		if (write)
			io_uring_prep_write_fixed(sqe, 0, req->buf, req->len, off,
						  req->buf_index);
		else
			io_uring_prep_read_fixed(sqe, 0, req->buf, req->len, off,
						 req->buf_index);
	} else {
		if (write)
			io_uring_prep_write(sqe, 0, req->buf, req->len, off);
		else
			io_uring_prep_read(sqe, 0, req->buf, req->len, off);
	}
	sqe->flags |= IOSQE_FIXED_FILE;
	/* FUA: durable when acknowledged.  Without a volatile write cache
	 * the O_DIRECT completion is that already. */
	if (write && (req->flags & WF_STORE_FUA) && s->volatile_cache)
		sqe->rw_flags = RWF_DSYNC;
	io_uring_sqe_set_data64(sqe, (uintptr_t)req | TAG_REQ);
}

/* Index blocks: one write in flight per block; changes made meanwhile go
 * out together in the next write (to the other copy). */

/* Does this batch free an extent (a whole-extent discard)?  For
 * WF_FAULT_DISC_INDEX only. */
static bool blk_frees(const struct wf_store_req *req)
{
	for (; req; req = req->next)
		if (req->op == WF_STORE_OP_DISCARD)
			return true;
	return false;
}

static void blk_kick(struct wf_store *s, uint64_t b)
{
	struct wf_iblk *blk = &s->blk[b];
	struct io_uring_sqe *sqe;
	uint8_t *img;
	uint16_t buf;

	if (blk->busy || blk->waiting || !blk->pending)
		return;
	if (!s->sh->nibuf_free) {
		blk->waiting = 1;
		blk->wait_next = UINT32_MAX;
		if (s->sh->wait_tail != UINT32_MAX)
			s->blk[s->sh->wait_tail].wait_next = (uint32_t)b;
		else
			s->sh->wait_head = (uint32_t)b;
		s->sh->wait_tail = (uint32_t)b;
		return;
	}
	sqe = sio_sqe_get(s);
	if (!sqe) {
		/* A ring that takes no more work: nothing can be persisted. */
		struct wf_store_req *req = blk->pending;

		blk->pending = NULL;
		SET(s->sh->failed, -EIO);
		while (req) {
			struct wf_store_req *next = req->next;

			if (req->q == s)
				part_fail_soft(s, req, -EIO);
			else
				sio_msg_send(s, req->q, req, TAG_BLKDONE, -EIO);
			req = next;
		}
		return;
	}
	buf = s->sh->ibuf_free[--s->sh->nibuf_free];
	img = s->ibuf + (size_t)buf * WF_STORE_BLOCK;
	wf_ix_build(s, b, blk->next_copy, blk->seq + 1, img);
	if (__builtin_expect(GET(s->sh->fault) == WF_FAULT_DISC_INDEX, 0) &&
	    blk_frees(blk->pending) &&
	    fault_take_locked(s, WF_FAULT_DISC_INDEX)) {
		/* Injected: nothing is written, and the NOP's result (0, not
		 * a block) makes blk_done treat the write as failed. */
		io_uring_prep_nop(sqe);
	} else {
		io_uring_prep_write(sqe, 0, img, WF_STORE_BLOCK, s->sb.index_off +
				    (2 * b + blk->next_copy) * WF_STORE_BLOCK);
		sqe->flags |= IOSQE_FIXED_FILE;
		/* With a volatile cache the entry must be on stable media
		 * before the write that needed it is acknowledged: FUA this
		 * block. */
		if (s->volatile_cache)
			sqe->rw_flags = RWF_DSYNC;
	}
	io_uring_sqe_set_data64(sqe, (b << TAG_SHIFT) | TAG_BLK);
	s->blk_out++;
	blk->buf = buf;
	blk->busy = 1;
	blk->inflight = blk->pending;
	blk->pending = NULL;
}

/* req changed block b's image (allocation or free): persist it.
 * blk_kick, blk_change and blk_wait run under the store lock; blk_done
 * takes it itself, and sio_blk_cont runs outside it (taking it to free). */
static void blk_change(struct wf_store *s, struct wf_store_req *req)
{
	struct wf_iblk *blk = &s->blk[req->phys / WF_IX_SLOTS];

	req->next = blk->pending;
	blk->pending = req;
	blk_kick(s, req->phys / WF_IX_SLOTS);
}

/* req writes into an extent whose allocation is in flight: finish only
 * when the index write carrying that allocation has landed. */
static void blk_wait(struct wf_store *s, struct wf_store_req *req)
{
	struct wf_iblk *blk = &s->blk[req->phys / WF_IX_SLOTS];

	/* The allocation is in the pending batch if there is one (pending
	 * always holds the newest changes), else in the write in flight. */
	if (blk->pending || !blk->busy) {
		req->next = blk->pending;
		blk->pending = req;
		blk_kick(s, req->phys / WF_IX_SLOTS);
	} else {
		req->next = blk->inflight;
		blk->inflight = req;
	}
}

/* Under the store lock. */
static void free_extent(struct wf_store *s, uint32_t p)
{
	uint64_t bucket;

	if (wf_ht_find(s, s->pe[p].volume, s->pe[p].extent, &bucket) >= 0)
		wf_ht_remove(s, bucket);
	__atomic_store_n(&s->pe[p].extent, WF_STORE_EXTENT_NONE, __ATOMIC_RELAXED);
	__atomic_store_n(&s->pe[p].volume, 0, __ATOMIC_RELAXED);
	seq_end(s, p);
	set_state(s, p, WF_EXT_FREE);
	s->freel[s->sh->nfree] = p;
	SET(s->sh->nfree, s->sh->nfree + 1);
}

/*
 * The index now says the extent is mapped: only now may data land in it.
 * Were data written first, a crash before the index write would leave a
 * free extent that is not zero, and its next owner would read the old
 * data (docs/store.md, "free extents read as zeros").
 */
static void data_after_index(struct wf_store *s, struct wf_store_req *req,
			     int err)
{
	struct io_uring_sqe *sqe = err ? NULL : sio_sqe_get(s);

	if (!sqe) {
		io_put(s, req->phys);
		return part_done(s, req, err ? err : -EBUSY);
	}
	req->phase = RP_IO;
	prep_rw(s, req, sqe, true);
}

/* The index write that req waited for is done (err: it failed): go on,
 * on req's own queue. */
void sio_blk_cont(struct wf_store *s, struct wf_store_req *req, int err)
{
	if (req->phase == RP_ALLOC || req->phase == RP_WAIT) {
		if (!err && req->phase == RP_ALLOC) {
			set_state(s, req->phys, WF_EXT_MAPPED);
			seq_end(s, req->phys);
		}
		data_after_index(s, req, err);
	} else {
		if (!err && req->phase == RP_FREE) {
			lock(s);
			free_extent(s, req->phys);
			unlock(s);
		}
		part_done(s, req, err);
	}
}

static void blk_done(struct wf_store *s, uint64_t b, int res)
{
	struct wf_iblk *blk = &s->blk[b];
	struct wf_store_req *req;
	int err = 0;

	s->blk_out--;
	lock(s);
	req = blk->inflight;
	blk->busy = 0;
	blk->inflight = NULL;
	s->sh->ibuf_free[s->sh->nibuf_free++] = blk->buf;
	if (res == (int)WF_STORE_BLOCK) {
		blk->seq++;
		blk->next_copy ^= 1;
	} else {
		/* The index on disk is now unknown: refuse everything rather
		 * than risk acknowledging writes a restart would not find. */
		err = res < 0 ? res : -EIO;
		SET(s->sh->failed, err);
	}
	/* A buffer came back: start a block that waited for one. */
	while (s->sh->nibuf_free && s->sh->wait_head != UINT32_MAX) {
		uint32_t w = s->sh->wait_head;

		s->sh->wait_head = s->blk[w].wait_next;
		if (s->sh->wait_head == UINT32_MAX)
			s->sh->wait_tail = UINT32_MAX;
		s->blk[w].waiting = 0;
		blk_kick(s, w);
	}
	blk_kick(s, b);
	unlock(s);
	/* Outside the lock: continuations run callbacks, which may submit. */
	while (req) {
		struct wf_store_req *next = req->next;

		if (req->q == s)
			sio_blk_cont(s, req, err);
		else
			sio_msg_send(s, req->q, req, TAG_BLKDONE, err);
		req = next;
	}
	redispatch(s);
}

/* Dispatch: a request enters (again, after a deferral) here. */

static void read_dispatch(struct wf_store *s, struct wf_store_req *req)
{
	struct io_uring_sqe *sqe;
	uint64_t bucket;
	int p;

	if (GET(s->sh->failed))
		return complete_soft(s, req, GET(s->sh->failed));
	p = wf_ht_lookup(s, req, &bucket);
	if (p < 0) {
		/* Thin provisioning: never written reads as zeros, no device
		 * I/O. */
		memset(req->buf, 0, req->len);
		return complete_soft(s, req, 0);
	}
	if (ext_state(s, (uint32_t)p) >= WF_EXT_DISCARDING)
		/* Zeros only once the discard succeeded: should it fail, the
		 * extent stays mapped and the read must see what it holds.
		 * Redispatched when the discard completes or aborts. */
		return defer(s, req);
	sqe = sio_sqe_get(s);
	if (!sqe)
		return complete_soft(s, req, -EBUSY);
	req->phys = (uint32_t)p;
	req->phase = RP_IO;
	req->parts = 1;
	io_get(s, req->phys);
	prep_rw(s, req, sqe, false);
}

static void write_dispatch(struct wf_store *s, struct wf_store_req *req)
{
	uint32_t ext = (uint32_t)(req->offset >> s->extent_shift);
	struct io_uring_sqe *sqe;
	uint64_t bucket;
	uint32_t p;
	int f;

	if (GET(s->sh->failed))
		return complete_soft(s, req, GET(s->sh->failed));
	f = wf_ht_lookup(s, req, &bucket);
	if (f >= 0 && ext_state(s, (uint32_t)f) >= WF_EXT_DISCARDING)
		return defer(s, req);   /* a new allocation after the discard */
	req->parts = 1;
	if (f < 0) {
		/* The slow path: the extent is ours (we own its key), the
		 * allocator, the hash table and the index block are shared. */
		lock(s);
		if (!s->sh->nfree) {
			unlock(s);
			return complete_soft(s, req, -ENOSPC);
		}
		SET(s->sh->nfree, s->sh->nfree - 1);
		p = s->freel[s->sh->nfree];
		/* Odd seq from here until the entry is persisted: view
		 * readers must not trust it yet. */
		seq_begin(s, p);
		__atomic_store_n(&s->pe[p].volume, req->volume, __ATOMIC_RELAXED);
		__atomic_store_n(&s->pe[p].extent, ext, __ATOMIC_RELAXED);
		wf_ht_insert(s, p);
		set_state(s, p, WF_EXT_ALLOCATING);
		req->phys = p;
		req->phase = RP_ALLOC;
		io_get(s, p);
		blk_change(s, req);     /* the data write follows the index */
		unlock(s);
		return;
	}
	req->phys = (uint32_t)f;
	io_get(s, req->phys);
	if (ext_state(s, req->phys) == WF_EXT_ALLOCATING) {
		req->phase = RP_WAIT;
		lock(s);
		blk_wait(s, req);
		unlock(s);
		return;
	}
	sqe = sio_sqe_get(s);
	if (!sqe) {
		io_put(s, req->phys);
		return complete_soft(s, req, -EBUSY);
	}
	req->phase = RP_IO;
	prep_rw(s, req, sqe, true);
}

/* Zero the request's range: fallocate, or write zeros where that is
 * refused (req->chunk counts the bytes written). */
static void zero_range(struct wf_store *s, struct wf_store_req *req, bool whole,
		       uint64_t *off, uint32_t *len)
{
	*off = dev_off(s, req->phys,
		       whole ? 0 : req->offset & (s->sb.extent_size - 1));
	*len = whole ? s->sb.extent_size : req->len;
}

static int zero_step(struct wf_store *s, struct wf_store_req *req)
{
	struct io_uring_sqe *sqe = sio_sqe_get(s);
	uint64_t off;
	uint32_t len;

	if (!sqe)
		return -EBUSY;
	if (__builtin_expect(GET(s->sh->fault) == WF_FAULT_DISC_ZERO, 0) &&
	    (req->flags & RF_WHOLE)) {
		bool hit;

		lock(s);
		hit = fault_take_locked(s, WF_FAULT_DISC_ZERO);
		unlock(s);
		if (hit) {
			/* Injected: this step zeroes nothing and fails. */
			req->phase = RP_FAULT;
			io_uring_prep_nop(sqe);
			io_uring_sqe_set_data64(sqe, (uintptr_t)req | TAG_REQ);
			return 0;
		}
	}
	zero_range(s, req, req->flags & RF_WHOLE, &off, &len);
	if (!GET(s->sh->zero_by_write)) {
		req->phase = RP_ZERO;
		io_uring_prep_fallocate(sqe, 0, s->zero_mode, (off_t)off, (off_t)len);
	} else {
		uint32_t n = len - req->chunk;

		if (n > s->zbuf_len)
			n = s->zbuf_len;
		req->phase = RP_ZERO_WRITE;
		io_uring_prep_write(sqe, 0, s->zbuf, n, off + req->chunk);
	}
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, (uintptr_t)req | TAG_REQ);
	return 0;
}

static void disc_zero(struct wf_store *s, struct wf_store_req *req)
{
	int ret;

	req->chunk = 0;
	ret = zero_step(s, req);
	if (!ret)
		return;
	/* Undo what the dispatch took, answer through the ready list. */
	req->parts = 1;
	if (req->flags & RF_WHOLE) {
		set_state(s, req->phys, WF_EXT_MAPPED);
		seq_end(s, req->phys);
		part_fail_soft(s, req, ret);
		/* Requests deferred behind the discard may go now. */
		return redispatch(s);
	}
	ram_set(s, req->phys, ram_get(s, req->phys) - WF_EXT_IO_ONE);
	part_fail_soft(s, req, ret);
}

static void discard_dispatch(struct wf_store *s, struct wf_store_req *req)
{
	uint64_t bucket;
	uint32_t p, st;
	int f;

	if (GET(s->sh->failed))
		return complete_soft(s, req, GET(s->sh->failed));
	f = wf_ht_lookup(s, req, &bucket);
	if (f < 0)
		return complete_soft(s, req, 0);        /* nothing there */
	p = (uint32_t)f;
	st = ext_state(s, p);
	if (st != WF_EXT_MAPPED)
		return defer(s, req);   /* let the allocation or discard finish */
	req->phys = p;
	req->parts = 1;
	req->res = 0;
	if (req->len < s->sb.extent_size) {
		/* Part of an extent: zero it in place, the mapping stays. */
		req->flags &= (uint8_t)~RF_WHOLE;
		io_get(s, p);
		return disc_zero(s, req);
	}
	req->flags |= RF_WHOLE;
	set_state(s, p, WF_EXT_DISCARDING);
	seq_begin(s, p);
	if (ram_get(s, p) >= WF_EXT_IO_ONE) {
		req->phase = RP_DRAIN;
		req->next = s->drain;
		s->drain = req;
		return;
	}
	disc_zero(s, req);
}

/* A whole-extent discard failed midway: the extent stays mapped. */
static void disc_abort(struct wf_store *s, struct wf_store_req *req, int res)
{
	set_state(s, req->phys, WF_EXT_MAPPED);
	seq_end(s, req->phys);
	req->res = res;
	req->parts = 1;
	part_done(s, req, res);
	redispatch(s);
}

static void disc_cqe(struct wf_store *s, struct wf_store_req *req, int res)
{
	bool whole = req->flags & RF_WHOLE;
	struct io_uring_sqe *sqe;
	uint64_t off;
	uint32_t len;

	switch (req->phase) {
	case RP_ZERO:
		if (res == -EOPNOTSUPP || res == -EINVAL || res == -ENODEV) {
			/* No fallocate zeroing here: write zeros from now on. */
			SET(s->sh->zero_by_write, true);
			req->chunk = 0;
			res = zero_step(s, req);
			if (!res)
				return;
		}
		break;
	case RP_ZERO_WRITE:
		if (res > 0) {
			zero_range(s, req, whole, &off, &len);
			req->chunk += (uint32_t)res;
			if (req->chunk < len) {
				res = zero_step(s, req);
				if (!res)
					return;
				break;
			}
			res = 0;
		} else if (res == 0) {
			res = -EIO;
		}
		break;
	case RP_FAULT:
		res = -EIO;
		break;
	case RP_FSYNC:
		if (res >= 0) {
			req->phase = RP_FREE;
			set_state(s, req->phys, WF_EXT_FREEING);
			lock(s);
			blk_change(s, req);
			unlock(s);
			return;
		}
		break;
	}
	if (!whole) {
		io_put(s, req->phys);
		return part_done(s, req, res < 0 ? res : 0);
	}
	if (res < 0)
		return disc_abort(s, req, res);
	/* Zeroed.  The zeros must be stable before the index says free:
	 * a free extent reads as zeros after any crash (docs/store.md). */
	if (s->volatile_cache) {
		sqe = sio_sqe_get(s);
		if (!sqe)
			return disc_abort(s, req, -EBUSY);
		req->phase = RP_FSYNC;
		io_uring_prep_fsync(sqe, 0, IORING_FSYNC_DATASYNC);
		sqe->flags |= IOSQE_FIXED_FILE;
		io_uring_sqe_set_data64(sqe, (uintptr_t)req | TAG_REQ);
		return;
	}
	req->phase = RP_FREE;
	set_state(s, req->phys, WF_EXT_FREEING);
	lock(s);
	blk_change(s, req);
	unlock(s);
}

static void flush_dispatch(struct wf_store *s, struct wf_store_req *req)
{
	struct io_uring_sqe *sqe;

	if (GET(s->sh->failed))
		return complete_soft(s, req, GET(s->sh->failed));
	sqe = sio_sqe_get(s);
	if (!sqe)
		return complete_soft(s, req, -EBUSY);
	req->phase = RP_IO;
	req->parts = 1;
	io_uring_prep_fsync(sqe, 0, IORING_FSYNC_DATASYNC);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, (uintptr_t)req | TAG_REQ);
}

void sio_dispatch(struct wf_store *s, struct wf_store_req *req)
{
	switch (req->op) {
	case WF_STORE_OP_READ:    read_dispatch(s, req); break;
	case WF_STORE_OP_WRITE:   write_dispatch(s, req); break;
	case WF_STORE_OP_DISCARD: discard_dispatch(s, req); break;
	default:                  flush_dispatch(s, req); break;
	}
}

/* Retry every deferred request once; those still blocked defer again. */
static void redispatch(struct wf_store *s)
{
	struct wf_store_req *req = s->defer_head;

	s->defer_head = s->defer_tail = NULL;
	while (req) {
		struct wf_store_req *next = req->next;

		sio_dispatch(s, req);
		req = next;
	}
}

static int validate(const struct wf_store *s, uint64_t offset, uint32_t len,
		    const void *buf, int buf_index)
{
	uint64_t in_ext = offset & (s->sb.extent_size - 1);

	if (!len || len % WF_STORE_BLOCK || offset % WF_STORE_BLOCK ||
	    in_ext + len > s->sb.extent_size ||
	    (offset >> s->extent_shift) >= WF_STORE_EXTENT_NONE)
		return -EINVAL;
	if (!buf)
		return 0;
	if ((uintptr_t)buf % WF_STORE_BLOCK)
		return -EINVAL;
	if (buf_index >= 0) {
		const struct iovec *iov;

		if ((unsigned)buf_index >= s->nbufs)
			return -EINVAL;
		iov = &s->bufs[buf_index];
		if ((const uint8_t *)buf < (const uint8_t *)iov->iov_base ||
		    (size_t)((const uint8_t *)buf - (const uint8_t *)iov->iov_base) +
		    len > iov->iov_len)
			return -EINVAL;
	} else if (buf_index != -1) {
		return -EINVAL;
	}
	return 0;
}

static void req_setup(struct wf_store *s, struct wf_store_req *req, uint8_t op,
		      uint64_t volume, uint64_t offset, uint32_t len, void *buf,
		      int buf_index, unsigned flags)
{
	req->next = NULL;
	req->home = req->q = s;
	req->xkind = 0;
	req->op = op;
	req->volume = volume;
	req->offset = offset;
	req->len = len;
	req->buf = buf;
	req->buf_index = buf_index;
	req->flags = (uint8_t)flags;
	req->res = 0;
	req->phase = 0;
	req->parts = 0;
	req->chunk = 0;
	req->phys = UINT32_MAX;
}

/*
 * Run req here, or send it to the queue that owns its extent.  A
 * registered buffer is this queue's: the owner does plain I/O on the same
 * memory.
 */
static void submit(struct wf_store *s, struct wf_store_req *req)
{
	struct wf_store *o = s;

	s->inflight++;
	if (s->sh->nq > 1 && req->op != WF_STORE_OP_FLUSH) {
		o = s->sh->q[wf_extent_reactor(req->volume,
					    (uint32_t)(req->offset >> s->extent_shift),
					    s->sh->nq)];
		if (!o)
			o = s;  /* a queue closing: only at teardown */
	}
	if (o != s) {
		s->handed++;
		req->buf_index = -1;
		req->q = o;
		sio_msg_send(s, o, req, TAG_EXEC, 0);
		return;
	}
	sio_dispatch(s, req);
}

int wf_store_read(struct wf_store *s, struct wf_store_req *req,
		  uint64_t volume, uint64_t offset, uint32_t len,
		  void *buf, int buf_index)
{
	int ret = validate(s, offset, len, buf, buf_index);

	if (ret || !buf || !req->done)
		return ret ? ret : -EINVAL;
	req_setup(s, req, WF_STORE_OP_READ, volume, offset, len, buf, buf_index, 0);
	submit(s, req);
	return 0;
}

int wf_store_write(struct wf_store *s, struct wf_store_req *req,
		   uint64_t volume, uint64_t offset, uint32_t len,
		   const void *buf, int buf_index, unsigned flags)
{
	int ret = validate(s, offset, len, buf, buf_index);

	if (ret || !buf || !req->done || (flags & ~WF_STORE_FUA))
		return ret ? ret : -EINVAL;
	req_setup(s, req, WF_STORE_OP_WRITE, volume, offset, len, (void *)buf,
		  buf_index, flags);
	submit(s, req);
	return 0;
}

int wf_store_discard(struct wf_store *s, struct wf_store_req *req,
		     uint64_t volume, uint64_t offset, uint32_t len)
{
	int ret = validate(s, offset, len, NULL, -1);

	if (ret || !req->done)
		return ret ? ret : -EINVAL;
	req_setup(s, req, WF_STORE_OP_DISCARD, volume, offset, len, NULL, -1, 0);
	submit(s, req);
	return 0;
}

int wf_store_flush(struct wf_store *s, struct wf_store_req *req)
{
	if (!req->done)
		return -EINVAL;
	req_setup(s, req, WF_STORE_OP_FLUSH, 0, 0, 0, NULL, -1, 0);
	submit(s, req);
	return 0;
}

static void req_cqe(struct wf_store *s, struct wf_store_req *req, int res)
{
	switch (req->op) {
	case WF_STORE_OP_READ:
	case WF_STORE_OP_WRITE:
		/* O_DIRECT inside the device never comes back short unless
		 * something is wrong with it. */
		if (res >= 0)
			res = (uint32_t)res == req->len ? 0 : -EIO;
		io_put(s, req->phys);
		part_done(s, req, res);
		break;
	case WF_STORE_OP_DISCARD:
		disc_cqe(s, req, res);
		break;
	default:
		part_done(s, req, res < 0 ? res : 0);
		break;
	}
}

/* After a submit: a failed io_uring_enter (or one that took only part
 * of the SQ) leaves the SQEs it did not take in the SQ, where the next
 * enter takes them.  Their watches stay armed (arming them again would
 * put a second poll in), but are not pending until then: the reactor
 * polls its fabric in full meanwhile.  A memory read, no system call. */
static int sq_note(struct wf_store *s, int ret)
{
	s->sq_left = io_uring_sq_ready(&s->ring) != 0;
	return ret;
}

/* Put the poll of every watch that is not in the ring into it.  With
 * force, take a slot even from a full SQ (submitting it first); without,
 * a watch that finds none waits for the next call. */
static int watch_arm(struct wf_store *s, bool force)
{
	for (unsigned i = 0; i < s->nwatch; i++) {
		struct io_uring_sqe *sqe;

		if (s->watch[i].armed)
			continue;
		sqe = force ? sio_sqe_get(s) : io_uring_get_sqe(&s->ring);
		if (!sqe)
			return -EBUSY;
		io_uring_prep_poll_add(sqe, s->watch[i].fd, POLLIN);
		io_uring_sqe_set_data64(sqe, ((uint64_t)i << TAG_SHIFT) | TAG_WATCH);
		s->watch[i].armed = true;
	}
	return 0;
}

int wf_store_submit(struct wf_store *s)
{
	/* Entering the kernel anyway: the watches that fired since the last
	 * sleep go back into the ring with this turn's I/O, so the reactor
	 * learns from them (not from a poll of each fd) when one has news. */
	if (!io_uring_sq_ready(&s->ring))
		return io_uring_submit(&s->ring);
	(void)watch_arm(s, false);
	return sq_note(s, io_uring_submit(&s->ring));
}

int wf_store_submit_and_wait(struct wf_store *s)
{
	/* Answers already waiting in the ready list: do not sleep. */
	if (s->ready_head || s->outbox)
		return sq_note(s, io_uring_submit(&s->ring));
	return sq_note(s, io_uring_submit_and_wait(&s->ring, 1));
}

int wf_store_watch(struct wf_store *s, int fd)
{
	if (fd < 0)
		return -EBADF;
	if (s->nwatch == WF_STORE_WATCH_MAX)
		return -ENOSPC;
	s->watch[s->nwatch].fd = fd;
	s->watch[s->nwatch].armed = false;      /* armed by wf_store_wait */
	return (int)s->nwatch++;
}

bool wf_store_watch_pending(const struct wf_store *s, int i)
{
	return i >= 0 && (unsigned)i < s->nwatch && s->watch[i].armed && !s->sq_left;
}

unsigned wf_store_woken(struct wf_store *s)
{
	unsigned m = s->woken;

	s->woken = 0;
	return m;
}

/* A watch is a one-shot poll, armed again after it fired by the next
 * wf_store_wait (or wf_store_submit that enters the kernel): arming looks
 * at the fd's current state, so readiness left over (an epoll set with
 * more ready entries than one pass takes) wakes the loop again, as a
 * level-triggered epoll_wait would.  A multishot
 * poll only fires on new wakeups and would sleep through that. */
static void watch_cqe(struct wf_store *s, unsigned i, int res, unsigned flags)
{
	if (i >= s->nwatch)
		return;
	if (res > 0)
		s->woken |= 1u << i;
	if (!(flags & IORING_CQE_F_MORE))
		s->watch[i].armed = false;
}

int wf_store_wait(struct wf_store *s, int timeout_ms)
{
	struct __kernel_timespec ts, *tp = NULL;
	struct io_uring_cqe *cqe;
	int ret;

	ret = watch_arm(s, true);
	if (ret)
		return ret;
	/* Answers already waiting in the ready list: do not sleep. */
	if (s->ready_head || s->outbox) {
		ret = sq_note(s, io_uring_submit(&s->ring));
		return ret < 0 ? ret : 0;
	}
	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
		tp = &ts;
	}
	ret = sq_note(s, io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, tp, NULL));
	return ret < 0 && ret != -ETIME && ret != -EINTR ? ret : 0;
}

int wf_store_poll(struct wf_store *s, unsigned max)
{
	struct { uint64_t data; int res; unsigned flags; } done[32];
	struct io_uring_cqe *cqes[32];
	unsigned total = 0;
	bool moved = false;

	if (s->outbox)
		sio_outbox_flush(s);
	while (s->ready_head && total < max) {
		struct wf_store_req *req = s->ready_head;

		s->ready_head = req->next;
		if (!s->ready_head)
			s->ready_tail = NULL;
		req_finish(s, req);
		total++;
	}
	while (total < max) {
		unsigned want = max - total < 32 ? max - total : 32;
		unsigned n = io_uring_peek_batch_cqe(&s->ring, cqes, want);
		unsigned watched = 0;

		if (!n)
			break;
		/* Copy and release the CQ slots before running callbacks:
		 * they may queue work that completes into the same CQ. */
		for (unsigned i = 0; i < n; i++) {
			done[i].data = io_uring_cqe_get_data64(cqes[i]);
			done[i].res = cqes[i]->res;
			done[i].flags = cqes[i]->flags;
		}
		io_uring_cq_advance(&s->ring, n);
		for (unsigned i = 0; i < n; i++) {
			uint64_t d = done[i].data;

			switch (d & TAG_MASK) {
			case TAG_REQ:
				req_cqe(s, (struct wf_store_req *)(uintptr_t)d,
					done[i].res);
				break;
			case TAG_BLK:
				blk_done(s, d >> TAG_SHIFT, done[i].res);
				break;
			case TAG_WATCH:
				watch_cqe(s, (unsigned)(d >> TAG_SHIFT),
					  done[i].res, done[i].flags);
				watched++;      /* not the caller's work */
				break;
			default: {
				struct wf_store_req *req =
					(struct wf_store_req *)(uintptr_t)(d & ~TAG_MASK);

				switch (d & TAG_MASK) {
				case TAG_SOFT:
					req_finish(s, req);
					break;
				default:        /* a message (store_msg.c) */
					if (sio_msg_cqe(s, req,
							(unsigned)(d & TAG_MASK),
							done[i].res))
						moved = true;
					break;
				}
				break;
			}
			}
		}
		total += n - watched;
	}
	/* An extent state changed by a handed-back continuation may let
	 * deferred requests go. */
	if (moved)
		redispatch(s);
	return (int)total;
}
