/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Store lifecycle: open (superblock check, index rebuild, ring setup),
 * close, stat, buffer registration, the shared index view's memory.
 * The data path is in store_io.c, the on-disk format in store_format.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "target/store_int.h"

#define ZBUF_MAX        (256u * 1024)   /* zeroing fallback buffer */
#define LOAD_CHUNK      (64u * 2 * WF_STORE_BLOCK) /* index read size */

/* Does the block device behind fd cache writes volatilely?  Unknown counts
 * as yes: flushing needlessly is slow, not flushing when needed loses data. */
static bool blkdev_volatile(int fd)
{
	char path[128], val[32] = "";
	struct stat st;
	ssize_t n = -1;
	int f;

	if (fstat(fd, &st))
		return true;
	/* A whole disk has queue/ below it; a partition's is one level up. */
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/write_cache",
		 major(st.st_rdev), minor(st.st_rdev));
	f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0) {
		snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/../queue/write_cache",
			 major(st.st_rdev), minor(st.st_rdev));
		f = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (f >= 0) {
		n = read(f, val, sizeof(val) - 1);
		close(f);
	}
	if (n <= 0)
		return true;
	return strncmp(val, "write through", 13) != 0;
}

/* The shared view: header, extent table, hash table, in one memfd. */
static int view_alloc(struct wf_store *s)
{
	uint64_t n = s->sb.extents;
	size_t pe_off = 128, ht_off, len;       /* header room: see below */

	_Static_assert(sizeof(struct wf_view_hdr) <= 128,
		       "the view header fits before the extent table");

	/* At least one bucket stays empty so every probe ends (see ht_*). */
	s->buckets = n + n / 2 + 2;
	ht_off = pe_off + n * sizeof(struct wf_view_pe);
	len = ht_off + s->buckets * sizeof(uint32_t);
	len = (len + 4095) & ~(size_t)4095;

	s->memfd = memfd_create("weft-store-index", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (s->memfd < 0)
		return -errno;
	if (ftruncate(s->memfd, (off_t)len))
		return -errno;
	s->map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, s->memfd, 0);
	if (s->map == MAP_FAILED) {
		s->map = NULL;
		return -errno;
	}
	/* Whoever receives the fd may trust the size it maps and cannot map
	 * it writable (FUTURE_WRITE spares our own mapping, made above). */
	s->view_shareable = !fcntl(s->memfd, F_ADD_SEALS, F_SEAL_SHRINK |
				   F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL);
	if (!s->view_shareable)
		/* A kernel without FUTURE_WRITE: a receiver could map the
		 * view writable, so it is never handed out
		 * (wf_store_index_fd says -EPERM). */
		(void)fcntl(s->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
			    F_SEAL_SEAL);
	s->map_len = len;
	s->hdr = s->map;
	s->pe = (struct wf_view_pe *)((uint8_t *)s->map + pe_off);
	s->ht = (uint32_t *)((uint8_t *)s->map + ht_off);

	s->hdr->version = WF_VIEW_VERSION;
	s->hdr->extents = n;
	s->hdr->buckets = s->buckets;
	s->hdr->pe_off = pe_off;
	s->hdr->ht_off = ht_off;
	s->hdr->data_off = s->sb.data_off;
	s->hdr->extent_size = s->sb.extent_size;
	s->hdr->cluster_id = s->sb.cluster_id;
	s->hdr->target_id = s->sb.target_id;
	for (uint64_t p = 0; p < n; p++)
		s->pe[p].extent = WF_STORE_EXTENT_NONE;
	return 0;
}

static int ram_alloc(struct wf_store *s)
{
	uint64_t n = s->sb.extents;

	s->ram = calloc(n, sizeof(*s->ram));
	s->freel = calloc(n, sizeof(*s->freel));
	s->blk = calloc(s->nblocks, sizeof(*s->blk));
	if (!s->ram || !s->freel || !s->blk)
		return -ENOMEM;
	s->zbuf_len = s->sb.extent_size < ZBUF_MAX ? s->sb.extent_size : ZBUF_MAX;
	if (posix_memalign((void **)&s->ibuf, WF_STORE_BLOCK,
			   WF_IBUF_MAX * WF_STORE_BLOCK) ||
	    posix_memalign(&s->zbuf, WF_STORE_BLOCK, s->zbuf_len))
		return -ENOMEM;
	memset(s->zbuf, 0, s->zbuf_len);
	for (unsigned i = 0; i < WF_IBUF_MAX; i++)
		s->sh->ibuf_free[i] = (uint16_t)(WF_IBUF_MAX - 1 - i);
	s->sh->nibuf_free = WF_IBUF_MAX;
	s->sh->wait_head = s->sh->wait_tail = UINT32_MAX;
	s->ram_bytes = s->map_len + n * (sizeof(*s->ram) + sizeof(*s->freel)) +
		       s->nblocks * sizeof(*s->blk);
	return 0;
}

static int load_index(struct wf_store *s, struct wf_store_err *err)
{
	uint64_t b = 0, off = s->sb.index_off, end;
	uint8_t *buf;
	int ret = 0;

	if (posix_memalign((void **)&buf, WF_STORE_BLOCK, LOAD_CHUNK))
		return -ENOMEM;
	end = off + s->nblocks * 2 * WF_STORE_BLOCK;
	while (off < end) {
		size_t want = end - off < LOAD_CHUNK ? end - off : LOAD_CHUNK;
		ssize_t r = pread(s->fd, buf, want, (off_t)off);

		if (r != (ssize_t)want) {
			ret = r < 0 ? -errno : -EUCLEAN;
			wf_store_seterr(err, "reading the index at %llu: %s",
					(unsigned long long)off,
					r < 0 ? strerror(errno) : "short read");
			goto out;
		}
		for (size_t i = 0; i < want; i += 2 * WF_STORE_BLOCK, b++) {
			ret = wf_ix_load(s, b, buf + i, err);
			if (ret)
				goto out;
		}
		off += want;
	}
	/* Free stack, lowest extent on top: allocations fill the device from
	 * the front. */
	for (uint64_t p = s->sb.extents; p-- > 0; )
		if (WF_EXT_STATE(s->ram[p]) == WF_EXT_FREE)
			s->freel[s->sh->nfree++] = (uint32_t)p;
out:
	free(buf);
	return ret;
}

static int ring_setup(struct wf_store *s, unsigned entries)
{
	struct io_uring_params p;
	int ret;

	/* Not COOP_TASKRUN: completions would then wait for this thread's
	 * next syscall, and a reactor busy-polling a verbs CQ makes none. */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = entries * 4;
	ret = io_uring_queue_init_params(entries, &s->ring, &p);
	if (ret)
		return ret;
	ret = io_uring_register_files(&s->ring, &s->fd, 1);
	if (ret) {
		io_uring_queue_exit(&s->ring);
		return ret;
	}
	return 0;
}

/* The memory and descriptors all queues share: freed with the last. */
static void shared_free(struct wf_store *s)
{
	if (s->map)
		munmap(s->map, s->map_len);
	if (s->memfd >= 0)
		close(s->memfd);
	if (s->fd >= 0)
		close(s->fd);
	free(s->zbuf);
	free(s->ibuf);
	free(s->blk);
	free(s->freel);
	free(s->ram);
	if (s->sh) {
		pthread_mutex_destroy(&s->sh->lock);
		free(s->sh);
	}
}

static void queue_free(struct wf_store *s, bool ring)
{
	if (ring) {
		/* Unregistering waits for the ring's references to the file,
		 * so the flock is free once close() below returns; the ring's
		 * own teardown is asynchronous. */
		io_uring_unregister_files(&s->ring);
		io_uring_queue_exit(&s->ring);
	}
	free(s->bufs);
}

static void store_free(struct wf_store *s, bool ring)
{
	queue_free(s, ring);
	shared_free(s);
	free(s);
}

int wf_store_open(const char *path, const struct wf_store_opts *opts,
		  struct wf_store **out, struct wf_store_err *err)
{
	struct wf_store_opts o = { .size = sizeof(o) };
	struct wf_store *s;
	uint64_t size;
	uint8_t *sb;
	bool blkdev;
	ssize_t r;
	int ret;

	if (opts)
		memcpy(&o, opts, opts->size < sizeof(o) ? opts->size : sizeof(o));
	if (!o.ring_entries)
		o.ring_entries = 256;
	if (!o.lock_wait_ms)
		o.lock_wait_ms = 5000;
	if (o.ring_entries > 32768 || o.cache > WF_STORE_CACHE_NONE ||
	    (o.flags & ~(WF_STORE_EXPECT_CLUSTER | WF_STORE_EXPECT_TARGET |
			 WF_STORE_ZERO_BY_WRITE)))
		return -EINVAL;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->memfd = -1;
	s->sh = calloc(1, sizeof(*s->sh));
	if (!s->sh) {
		free(s);
		return -ENOMEM;
	}
	pthread_mutex_init(&s->sh->lock, NULL);
	s->sh->refs = 1;
	s->sh->nq = 1;
	s->sh->q[0] = s;
	s->fd = -1;
	s->fd = wf_store_dev_open(path, o.lock_wait_ms, &size, &blkdev, err);
	if (s->fd < 0) {
		ret = s->fd;
		goto out_free;
	}
	s->is_blkdev = blkdev;

	if (posix_memalign((void **)&sb, WF_STORE_BLOCK, WF_STORE_BLOCK)) {
		ret = -ENOMEM;
		goto out_free;
	}
	r = pread(s->fd, sb, WF_STORE_BLOCK, 0);
	if (r != (ssize_t)WF_STORE_BLOCK) {
		ret = r < 0 ? -errno : -EMEDIUMTYPE;
		wf_store_seterr(err, "%s: cannot read a superblock: %s", path,
				r < 0 ? strerror(errno) : "device too small");
		free(sb);
		goto out_free;
	}
	ret = wf_sb_unpack(sb, size, &s->sb, err);
	free(sb);
	if (ret)
		goto out_free;
	if ((o.flags & WF_STORE_EXPECT_CLUSTER) && o.cluster_id != s->sb.cluster_id) {
		wf_store_seterr(err, "%s belongs to cluster %llu, not %llu", path,
				(unsigned long long)s->sb.cluster_id,
				(unsigned long long)o.cluster_id);
		ret = -ESTALE;
		goto out_free;
	}
	if ((o.flags & WF_STORE_EXPECT_TARGET) && o.target_id != s->sb.target_id) {
		wf_store_seterr(err, "%s belongs to target %u, not %u", path,
				s->sb.target_id, o.target_id);
		ret = -ESTALE;
		goto out_free;
	}
	s->extent_shift = (uint32_t)__builtin_ctz(s->sb.extent_size);
	s->nblocks = s->sb.index_blocks;

	ret = view_alloc(s);
	if (!ret)
		ret = ram_alloc(s);
	if (ret) {
		wf_store_seterr(err, "index memory for %llu extents: %s",
				(unsigned long long)s->sb.extents, strerror(-ret));
		goto out_free;
	}
	ret = load_index(s, err);
	if (ret)
		goto out_free;
	/* Published last: a reader that sees the magic sees a loaded index. */
	__atomic_store_n(&s->hdr->magic, WF_VIEW_MAGIC, __ATOMIC_RELEASE);

	switch (o.cache) {
	case WF_STORE_CACHE_VOLATILE: s->volatile_cache = true; break;
	case WF_STORE_CACHE_NONE:     s->volatile_cache = false; break;
	default:
		/* A file system's metadata (block allocation for a write into
		 * a hole) is only durable after fdatasync: treat files as
		 * volatile. */
		s->volatile_cache = blkdev ? blkdev_volatile(s->fd) : true;
	}
	/* Files: punch a hole (thin on the host file system too); block
	 * devices: zero range (write-zeroes/unmap where the device can). */
	s->zero_mode = blkdev ? FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE
			      : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
	s->sh->zero_by_write = o.flags & WF_STORE_ZERO_BY_WRITE;

	ret = ring_setup(s, o.ring_entries);
	if (ret) {
		wf_store_seterr(err, "io_uring setup: %s", strerror(-ret));
		goto out_free;
	}
	*out = s;
	return 0;

out_free:
	store_free(s, false);
	return ret;
}

void wf_store_close(struct wf_store *s)
{
	struct wf_store_sh *sh;
	bool last;

	if (!s)
		return;
	while (wf_store_inflight(s)) {
		if (wf_store_submit_and_wait(s) < 0 && wf_store_inflight(s)) {
			/* The ring is unusable: nothing more will complete. */
			break;
		}
		wf_store_poll(s, 256);
	}
	sh = s->sh;
	pthread_mutex_lock(&sh->lock);
	sh->q[s->qidx] = NULL;
	last = --sh->refs == 0;
	pthread_mutex_unlock(&sh->lock);
	queue_free(s, true);
	if (last)
		shared_free(s);
	free(s);
}

int wf_store_add_queue(struct wf_store *s, unsigned ring_entries,
		       struct wf_store **out)
{
	struct wf_store_sh *sh = s->sh;
	struct wf_store *n;
	int ret;

	if (ring_entries > 32768)
		return -EINVAL;
	if (sh->nq >= WF_STORE_MAX_QUEUES)
		return -EMFILE;
	n = malloc(sizeof(*n));
	if (!n)
		return -ENOMEM;
	/* The shared pointers and the geometry, then this queue's own. */
	memcpy(n, s, sizeof(*n));
	memset(&n->ring, 0, sizeof(n->ring));
	n->defer_head = n->defer_tail = n->drain = NULL;
	n->ready_head = n->ready_tail = n->outbox = NULL;
	n->bufs = NULL;
	n->nbufs = 0;
	n->inflight = n->guests = n->blk_out = 0;
	n->handed = 0;
	ret = ring_setup(n, ring_entries ? ring_entries : 256);
	if (ret) {
		free(n);
		return ret;
	}
	pthread_mutex_lock(&sh->lock);
	n->qidx = sh->nq;
	sh->q[sh->nq++] = n;
	sh->refs++;
	pthread_mutex_unlock(&sh->lock);
	*out = n;
	return 0;
}

unsigned wf_store_queues(const struct wf_store *s)
{
	return s->sh->nq;
}

unsigned wf_store_queue_index(const struct wf_store *s)
{
	return s->qidx;
}

struct wf_store *wf_store_queue_of(const struct wf_store *s, unsigned i)
{
	return i < s->sh->nq ? s->sh->q[i] : NULL;
}

void wf_store_stat(const struct wf_store *s, struct wf_store_stat *st)
{
	uint64_t nfree = __atomic_load_n(&s->sh->nfree, __ATOMIC_RELAXED);

	memset(st, 0, sizeof(*st));
	st->cluster_id = s->sb.cluster_id;
	st->target_id = s->sb.target_id;
	st->extent_size = s->sb.extent_size;
	st->extents = s->sb.extents;
	st->free = nfree;
	st->used = s->sb.extents - nfree;
	st->index_bytes = s->ram_bytes;
	st->torn_blocks = s->torn;
	st->volatile_cache = s->volatile_cache;
	st->handed_over = s->handed;
}

int wf_store_extent_at(const struct wf_store *s, uint32_t phys,
			uint64_t *volume, uint32_t *extent)
{
	uint32_t e;

	if (phys >= s->sb.extents)
		return -ERANGE;
	e = __atomic_load_n(&s->pe[phys].extent, __ATOMIC_ACQUIRE);
	if (e == WF_STORE_EXTENT_NONE)
		return 0;
	*volume = __atomic_load_n(&s->pe[phys].volume, __ATOMIC_RELAXED);
	*extent = e;
	return 1;
}

int wf_store_ring_fd(const struct wf_store *s)
{
	return s->ring.ring_fd;
}

unsigned wf_store_inflight(const struct wf_store *s)
{
	return s->inflight + s->guests + s->blk_out + (s->outbox ? 1 : 0);
}

void wf_store_view_publish_epoch(struct wf_store *s, uint64_t epoch)
{
	uint64_t cur = __atomic_load_n(&s->hdr->epoch, __ATOMIC_RELAXED);

	/* Several reactors publish their own copy's epoch: keep the max. */
	while (cur < epoch &&
	       !__atomic_compare_exchange_n(&s->hdr->epoch, &cur, epoch, false,
					    __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		;
}

void wf_store_view_publish_lease(struct wf_store *s, uint64_t epoch,
				 uint64_t until)
{
	/* One writer (reactor 0).  A reader that sees the new epoch sees no
	 * older until than the 0 stored before it. */
	if (__atomic_load_n(&s->hdr->lease_epoch, __ATOMIC_RELAXED) != epoch) {
		__atomic_store_n(&s->hdr->lease_until, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&s->hdr->lease_epoch, epoch, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&s->hdr->lease_until, until, __ATOMIC_RELEASE);
}

int wf_store_index_fd(const struct wf_store *s)
{
	return s->view_shareable ? s->memfd : -EPERM;
}

int wf_store_dev_fd(const struct wf_store *s)
{
	return s->fd;
}

int wf_store_dev_fd_ro(const struct wf_store *s)
{
	char path[64];
	int fd;

	/* Reopening through /proc gives a new open file description on the
	 * same file or device, with its own (read-only) access mode. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", s->fd);
	fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int wf_store_register_buffers(struct wf_store *s, const struct iovec *iov,
			      unsigned n)
{
	struct iovec *copy;
	int ret;

	if (!n || n > 16384)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if (!iov[i].iov_base || !iov[i].iov_len ||
		    (uintptr_t)iov[i].iov_base % WF_STORE_BLOCK)
			return -EINVAL;
	copy = malloc(n * sizeof(*copy));
	if (!copy)
		return -ENOMEM;
	memcpy(copy, iov, n * sizeof(*copy));
	if (s->nbufs)
		wf_store_unregister_buffers(s);
	ret = io_uring_register_buffers(&s->ring, copy, n);
	if (ret) {
		free(copy);
		return ret;
	}
	s->bufs = copy;
	s->nbufs = n;
	return 0;
}

int wf_store_unregister_buffers(struct wf_store *s)
{
	int ret;

	if (!s->nbufs)
		return 0;
	ret = io_uring_unregister_buffers(&s->ring);
	free(s->bufs);
	s->bufs = NULL;
	s->nbufs = 0;
	return ret;
}
