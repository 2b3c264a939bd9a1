/* SPDX-License-Identifier: Apache-2.0 */
/*
 * On-disk format: superblock and index blocks (byte layout in
 * docs/store.md), and wf_store_format().  All multi-byte fields are
 * little-endian; the get/put helpers below are the only code that reads
 * or writes raw on-disk bytes.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <isa-l/crc.h>

#include "target/store_int.h"

static void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

/* CRC32C (Castagnoli), the standard form: ISA-L's crc32_iscsi seeded with
 * all ones, result inverted.  "123456789" gives 0xe3069283. */
uint32_t wf_store_crc32c(const void *buf, size_t len)
{
	return crc32_iscsi((unsigned char *)buf, (int)len, 0xffffffffu) ^ 0xffffffffu;
}

void wf_store_seterr(struct wf_store_err *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

/* Superblock byte offsets. */
enum {
	SB_MAGIC = 0, SB_VERSION = 8, SB_CRC = 12, SB_CLUSTER = 16,
	SB_TARGET = 24, SB_EXTENT = 28, SB_DEVSIZE = 32, SB_EXTENTS = 40,
	SB_IXOFF = 48, SB_IXBLOCKS = 56, SB_SPB = 60, SB_DATAOFF = 64,
	SB_NONCE = 72, SB_FTIME = 80, SB_END = 88,
};

/* Index block header byte offsets. */
enum {
	IX_MAGIC = 0, IX_CRC = 4, IX_SEQ = 8, IX_BLKNO = 16, IX_COPY = 20,
	IX_NONCE = 24,
};
_Static_assert(WF_IX_HDR + WF_IX_SLOTS * WF_IX_SLOT == WF_STORE_BLOCK,
	       "index slots fill the block exactly");

static uint64_t ix_blocks(uint64_t extents)
{
	return (extents + WF_IX_SLOTS - 1) / WF_IX_SLOTS;
}

int wf_sb_geometry(uint64_t dev_size, uint32_t extent_size, struct wf_sb *sb)
{
	uint64_t align = extent_size < (1u << 20) ? extent_size : (1u << 20);
	uint64_t n, data_off;

	if (extent_size < WF_STORE_EXTENT_MIN || extent_size > WF_STORE_EXTENT_MAX ||
	    (extent_size & (extent_size - 1)))
		return -EINVAL;
	if (dev_size <= WF_IX_OFF)
		return -EINVAL;
	n = (dev_size - WF_IX_OFF) / extent_size;
	if (n > WF_MAX_EXTENTS)
		n = WF_MAX_EXTENTS;
	/* The index shrinks with n, so this settles in a step or two. */
	for (;;) {
		if (n == 0)
			return -EINVAL;
		data_off = WF_IX_OFF + 2 * ix_blocks(n) * WF_STORE_BLOCK;
		data_off = (data_off + align - 1) & ~(align - 1);
		if (data_off < dev_size && n <= (dev_size - data_off) / extent_size)
			break;
		n = data_off < dev_size ? (dev_size - data_off) / extent_size : 0;
	}
	memset(sb, 0, sizeof(*sb));
	sb->version = WF_SB_VERSION;
	sb->extent_size = extent_size;
	sb->device_size = dev_size;
	sb->extents = n;
	sb->index_off = WF_IX_OFF;
	sb->index_blocks = (uint32_t)ix_blocks(n);
	sb->slots_per_block = WF_IX_SLOTS;
	sb->data_off = data_off;
	return 0;
}

void wf_sb_pack(const struct wf_sb *sb, uint8_t *blk)
{
	memset(blk, 0, WF_STORE_BLOCK);
	memcpy(blk + SB_MAGIC, WF_SB_MAGIC, 8);
	put32(blk + SB_VERSION, sb->version);
	put64(blk + SB_CLUSTER, sb->cluster_id);
	put32(blk + SB_TARGET, sb->target_id);
	put32(blk + SB_EXTENT, sb->extent_size);
	put64(blk + SB_DEVSIZE, sb->device_size);
	put64(blk + SB_EXTENTS, sb->extents);
	put64(blk + SB_IXOFF, sb->index_off);
	put32(blk + SB_IXBLOCKS, sb->index_blocks);
	put32(blk + SB_SPB, sb->slots_per_block);
	put64(blk + SB_DATAOFF, sb->data_off);
	put64(blk + SB_NONCE, sb->nonce);
	put64(blk + SB_FTIME, sb->format_time);
	put32(blk + SB_CRC, wf_store_crc32c(blk, WF_STORE_BLOCK));
}

int wf_sb_unpack(const uint8_t *blk, uint64_t dev_size, struct wf_sb *sb,
		 struct wf_store_err *err)
{
	uint8_t tmp[SB_END];
	uint32_t crc, want;
	uint64_t ix_end, data_bytes;

	if (memcmp(blk + SB_MAGIC, WF_SB_MAGIC, 8)) {
		wf_store_seterr(err, "no weft superblock (bad magic)");
		return -EMEDIUMTYPE;
	}
	sb->version = get32(blk + SB_VERSION);
	if (sb->version != WF_SB_VERSION) {
		wf_store_seterr(err, "superblock format version %u, this build reads %u",
		       sb->version, WF_SB_VERSION);
		return -EPROTONOSUPPORT;
	}
	/* CRC over the whole block with the crc field taken as zero. */
	want = get32(blk + SB_CRC);
	memcpy(tmp, blk, SB_END);
	memset(tmp + SB_CRC, 0, 4);
	crc = crc32_iscsi(tmp, SB_END, 0xffffffffu);
	crc = crc32_iscsi((unsigned char *)blk + SB_END,
			  WF_STORE_BLOCK - SB_END, crc) ^ 0xffffffffu;
	if (crc != want) {
		wf_store_seterr(err, "superblock checksum mismatch (stored %08x, computed %08x)",
		       want, crc);
		return -EBADMSG;
	}
	sb->cluster_id = get64(blk + SB_CLUSTER);
	sb->target_id = get32(blk + SB_TARGET);
	sb->extent_size = get32(blk + SB_EXTENT);
	sb->device_size = get64(blk + SB_DEVSIZE);
	sb->extents = get64(blk + SB_EXTENTS);
	sb->index_off = get64(blk + SB_IXOFF);
	sb->index_blocks = get32(blk + SB_IXBLOCKS);
	sb->slots_per_block = get32(blk + SB_SPB);
	sb->data_off = get64(blk + SB_DATAOFF);
	sb->nonce = get64(blk + SB_NONCE);
	sb->format_time = get64(blk + SB_FTIME);

	if (sb->extent_size < WF_STORE_EXTENT_MIN ||
	    sb->extent_size > WF_STORE_EXTENT_MAX ||
	    (sb->extent_size & (sb->extent_size - 1))) {
		wf_store_seterr(err, "superblock: bad extent size %u", sb->extent_size);
		return -EUCLEAN;
	}
	if (sb->slots_per_block != WF_IX_SLOTS || sb->index_off != WF_IX_OFF) {
		wf_store_seterr(err, "superblock: unexpected index layout (%u slots at %llu)",
		       sb->slots_per_block, (unsigned long long)sb->index_off);
		return -EUCLEAN;
	}
	if (sb->extents == 0 || sb->extents > WF_MAX_EXTENTS ||
	    sb->index_blocks != ix_blocks(sb->extents)) {
		wf_store_seterr(err, "superblock: bad extent count %llu / index blocks %u",
		       (unsigned long long)sb->extents, sb->index_blocks);
		return -EUCLEAN;
	}
	ix_end = sb->index_off + 2ull * sb->index_blocks * WF_STORE_BLOCK;
	data_bytes = sb->extents * sb->extent_size;
	if (sb->data_off < ix_end || sb->data_off % WF_STORE_BLOCK ||
	    sb->data_off > sb->device_size ||
	    data_bytes > sb->device_size - sb->data_off) {
		wf_store_seterr(err, "superblock: data area [%llu, +%llu) does not fit %llu bytes",
		       (unsigned long long)sb->data_off,
		       (unsigned long long)data_bytes,
		       (unsigned long long)sb->device_size);
		return -EUCLEAN;
	}
	if (sb->device_size > dev_size) {
		wf_store_seterr(err, "device is %llu bytes, superblock says %llu (truncated?)",
		       (unsigned long long)dev_size,
		       (unsigned long long)sb->device_size);
		return -EUCLEAN;
	}
	return 0;
}

/* Image of index block b as the RAM state says it must be on disk now. */
void wf_ix_build(const struct wf_store *s, uint64_t b, uint8_t copy,
		 uint64_t seq, uint8_t *blk)
{
	uint64_t first = b * WF_IX_SLOTS;
	uint32_t i;

	memset(blk, 0, WF_STORE_BLOCK);
	put32(blk + IX_MAGIC, WF_IX_MAGIC);
	put64(blk + IX_SEQ, seq);
	put32(blk + IX_BLKNO, (uint32_t)b);
	put32(blk + IX_COPY, copy);
	put64(blk + IX_NONCE, s->sb.nonce);
	for (i = 0; i < WF_IX_SLOTS && first + i < s->sb.extents; i++) {
		uint64_t p = first + i;
		/* Under the store lock; the owner queue may change the I/O
		 * count beside the state bits meanwhile (atomic word). */
		uint32_t st = s->ram ? WF_EXT_STATE(__atomic_load_n(&s->ram[p],
						     __ATOMIC_RELAXED)) : WF_EXT_FREE;
		uint8_t *slot = blk + WF_IX_HDR + i * WF_IX_SLOT;

		/* A discard keeps the extent mapped on disk until its zeroing
		 * is done; an allocation is written as mapped from the start. */
		if (st == WF_EXT_ALLOCATING || st == WF_EXT_MAPPED ||
		    st == WF_EXT_DISCARDING) {
			put64(slot, s->pe[p].volume);
			put32(slot + 8, s->pe[p].extent);
			put32(slot + 12, WF_SLOT_MAPPED);
		}
	}
	put32(blk + IX_CRC, wf_store_crc32c(blk, WF_STORE_BLOCK));
}

/* 0 if blk is a valid copy `copy` of block b of this format, with *seq. */
static int ix_check(const struct wf_store *s, const uint8_t *blk, uint64_t b,
		    uint8_t copy, uint64_t *seq)
{
	uint32_t want = get32(blk + IX_CRC), crc;

	if (get32(blk + IX_MAGIC) != WF_IX_MAGIC)
		return -EBADMSG;
	crc = crc32_iscsi((unsigned char *)blk, IX_CRC, 0xffffffffu);
	crc = crc32_iscsi((unsigned char *)"\0\0\0\0", 4, crc);
	crc = crc32_iscsi((unsigned char *)blk + IX_CRC + 4,
			  WF_STORE_BLOCK - IX_CRC - 4, crc) ^ 0xffffffffu;
	if (crc != want)
		return -EBADMSG;
	if (get32(blk + IX_BLKNO) != b || get32(blk + IX_COPY) != copy ||
	    get64(blk + IX_NONCE) != s->sb.nonce)
		return -EBADMSG;
	*seq = get64(blk + IX_SEQ);
	return 0;
}

/*
 * Load one index block from its two copies (pair: 2 * WF_STORE_BLOCK bytes):
 * pick the valid copy with the higher sequence, fill the extent table.
 * Called by open with the hash table empty and ram[] all WF_EXT_FREE.
 */
int wf_ix_load(struct wf_store *s, uint64_t b, const uint8_t *pair,
	       struct wf_store_err *err)
{
	struct wf_iblk *blk = &s->blk[b];
	uint64_t seq[2] = { 0, 0 }, first = b * WF_IX_SLOTS, bucket;
	int ok[2], use;
	const uint8_t *img;
	uint32_t i;

	ok[0] = ix_check(s, pair, b, 0, &seq[0]) == 0;
	ok[1] = ix_check(s, pair + WF_STORE_BLOCK, b, 1, &seq[1]) == 0;
	if (!ok[0] && !ok[1]) {
		wf_store_seterr(err, "index block %llu: both copies corrupt",
		       (unsigned long long)b);
		return -EUCLEAN;
	}
	if (!ok[0] || !ok[1])
		s->torn++;
	use = ok[0] && ok[1] ? seq[1] > seq[0] : ok[1];
	img = pair + use * WF_STORE_BLOCK;
	blk->seq = seq[use];
	/* The next write goes to the other copy, so the newest valid image
	 * survives a torn write. */
	blk->next_copy = (uint8_t)!use;

	for (i = 0; i < WF_IX_SLOTS; i++) {
		const uint8_t *slot = img + WF_IX_HDR + i * WF_IX_SLOT;
		uint32_t state = get32(slot + 12);
		uint64_t vol = get64(slot);
		uint32_t ext = get32(slot + 8);
		uint64_t p = first + i;

		if (state == WF_SLOT_FREE)
			continue;
		if (state != WF_SLOT_MAPPED || p >= s->sb.extents ||
		    ext == WF_STORE_EXTENT_NONE) {
			wf_store_seterr(err, "index block %llu slot %u: bad entry (state %u, extent %u)",
			       (unsigned long long)b, i, state, ext);
			return -EUCLEAN;
		}
		if (wf_ht_find(s, vol, ext, &bucket) >= 0) {
			wf_store_seterr(err, "index block %llu slot %u: volume %llu extent %u mapped twice",
			       (unsigned long long)b, i, (unsigned long long)vol, ext);
			return -EUCLEAN;
		}
		s->pe[p].volume = vol;
		s->pe[p].extent = ext;
		s->ram[p] = WF_EXT_MAPPED;
		wf_ht_insert(s, (uint32_t)p);
	}
	return 0;
}

static int dev_size_of(int fd, uint64_t *size, bool *blkdev)
{
	struct stat st;

	if (fstat(fd, &st))
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		int lbs = 0;

		if (ioctl(fd, BLKGETSIZE64, size))
			return -errno;
		if (ioctl(fd, BLKSSZGET, &lbs) == 0 && lbs > (int)WF_STORE_BLOCK)
			return -EINVAL;
		*blkdev = true;
		return 0;
	}
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	*size = (uint64_t)st.st_size;
	*blkdev = false;
	return 0;
}

/* Open O_DIRECT and take the exclusive flock that keeps a second store (or
 * the I/O of a killed one still draining out of its ring) off the device. */
int wf_store_dev_open(const char *path, unsigned wait_ms, uint64_t *size,
		      bool *blkdev, struct wf_store_err *err)
{
	struct timespec ts = { 0, 1000000 };
	unsigned waited = 0;
	int fd, ret;

	fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		wf_store_seterr(err, "%s: %s", path, strerror(-ret));
		return ret;
	}
	while (flock(fd, LOCK_EX | LOCK_NB)) {
		if (errno != EWOULDBLOCK || waited >= wait_ms) {
			ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
			wf_store_seterr(err, "%s: held by another process", path);
			goto out_close;
		}
		nanosleep(&ts, NULL);
		waited++;
	}
	ret = dev_size_of(fd, size, blkdev);
	if (ret) {
		wf_store_seterr(err, "%s: not a regular file or a block device with blocks <= 4 KiB",
		       path);
		goto out_close;
	}
	return fd;

out_close:
	close(fd);
	return ret;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t r = pwrite(fd, buf, len, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		buf = (const uint8_t *)buf + r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/* Make [off, off + len) of a block device read as zeros. */
static int zero_blkdev(int fd, uint64_t off, uint64_t len, void *buf, size_t blen)
{
	uint64_t range[2] = { off, len };
	int ret;

	if (!fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
		       (off_t)off, (off_t)len))
		return 0;
	if (!ioctl(fd, BLKZEROOUT, range))
		return 0;
	memset(buf, 0, blen);
	while (len) {
		size_t n = len < blen ? (size_t)len : blen;

		ret = pwrite_all(fd, buf, n, off);
		if (ret)
			return ret;
		off += n;
		len -= n;
	}
	return 0;
}

int wf_store_format(const char *path, uint64_t cluster_id, uint32_t target_id,
		    uint32_t extent_size, bool force, struct wf_store_err *err)
{
	const size_t blen = 64 * WF_STORE_BLOCK;
	struct wf_store tmp;
	uint64_t size, b;
	bool blkdev;
	uint8_t *buf;
	ssize_t r;
	int fd, ret;

	memset(&tmp, 0, sizeof(tmp));
	fd = wf_store_dev_open(path, 0, &size, &blkdev, err);
	if (fd < 0)
		return fd;
	if (posix_memalign((void **)&buf, WF_STORE_BLOCK, blen)) {
		ret = -ENOMEM;
		goto out_close;
	}
	r = pread(fd, buf, WF_STORE_BLOCK, 0);
	if (r == (ssize_t)WF_STORE_BLOCK && !memcmp(buf, WF_SB_MAGIC, 8) && !force) {
		wf_store_seterr(err, "%s already holds a weft store (format with force to replace it)",
		       path);
		ret = -EEXIST;
		goto out_free;
	}
	ret = wf_sb_geometry(size, extent_size, &tmp.sb);
	if (ret) {
		wf_store_seterr(err, "%s: %llu bytes cannot hold one %u-byte extent (or bad extent size)",
		       path, (unsigned long long)size, extent_size);
		goto out_free;
	}
	tmp.sb.cluster_id = cluster_id;
	tmp.sb.target_id = target_id;
	tmp.sb.format_time = (uint64_t)time(NULL);
	if (getrandom(&tmp.sb.nonce, sizeof(tmp.sb.nonce), 0) != sizeof(tmp.sb.nonce))
		tmp.sb.nonce = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();

	/* Kill the old superblock first: a crash mid-format leaves no store
	 * that looks valid. */
	memset(buf, 0, WF_STORE_BLOCK);
	ret = pwrite_all(fd, buf, WF_STORE_BLOCK, 0);
	if (!ret && fdatasync(fd))
		ret = -errno;
	if (ret)
		goto out_io;

	/* Free extents must read as zeros (docs/store.md): zero the data area. */
	if (blkdev) {
		ret = zero_blkdev(fd, tmp.sb.data_off,
				  tmp.sb.extents * (uint64_t)extent_size, buf, blen);
	} else if (ftruncate(fd, 0) || ftruncate(fd, (off_t)size)) {
		ret = -errno;
	}
	if (ret)
		goto out_io;

	/* Every index block, both copies: copy 0 with seq 1, copy 1 with seq 0
	 * (ram == NULL: all free). */
	for (b = 0; b < tmp.sb.index_blocks; ) {
		size_t n = 0;

		while (n + 2 * WF_STORE_BLOCK <= blen && b < tmp.sb.index_blocks) {
			wf_ix_build(&tmp, b, 0, 1, buf + n);
			wf_ix_build(&tmp, b, 1, 0, buf + n + WF_STORE_BLOCK);
			n += 2 * WF_STORE_BLOCK;
			b++;
		}
		ret = pwrite_all(fd, buf, n, tmp.sb.index_off +
				 (b * 2 * WF_STORE_BLOCK - n));
		if (ret)
			goto out_io;
	}
	if (fdatasync(fd)) {
		ret = -errno;
		goto out_io;
	}
	wf_sb_pack(&tmp.sb, buf);
	ret = pwrite_all(fd, buf, WF_STORE_BLOCK, 0);
	if (!ret && fdatasync(fd))
		ret = -errno;
	if (ret)
		goto out_io;
	free(buf);
	close(fd);
	return 0;

out_io:
	wf_store_seterr(err, "%s: write failed: %s", path, strerror(-ret));
out_free:
	free(buf);
out_close:
	close(fd);
	return ret;
}
