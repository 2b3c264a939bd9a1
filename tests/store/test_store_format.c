/* SPDX-License-Identifier: Apache-2.0 */
/* Format, superblock validation, index block corruption. */
#define _GNU_SOURCE
#include <isa-l/crc.h>

#include "tests/store/helpers.h"

static char img[128];

static void teardown(void)
{
	if (img[0])
		unlink(img);
}

static void raw_rw(bool write, uint64_t off, void *buf, size_t len)
{
	int fd = open(img, O_RDWR | O_CLOEXEC);
	ssize_t r;

	cr_assert(fd >= 0);
	r = write ? pwrite(fd, buf, len, (off_t)off) : pread(fd, buf, len, (off_t)off);
	cr_assert_eq(r, (ssize_t)len);
	if (write)
		cr_assert_eq(fsync(fd), 0);
	close(fd);
}

static void sb_fix_crc(uint8_t *sb)
{
	uint32_t crc;

	memset(sb + 12, 0, 4);
	crc = crc32_iscsi(sb, 4096, 0xffffffffu) ^ 0xffffffffu;
	memcpy(sb + 12, &crc, 4);
}

static int open_err(uint32_t flags, uint32_t target, uint64_t cluster,
		    struct wf_store_err *err)
{
	struct wf_store_opts o = { .size = sizeof(o), .flags = flags,
				   .target_id = target, .cluster_id = cluster };
	struct wf_store *s = NULL;
	int ret = wf_store_open(img, &o, &s, err);

	if (!ret)
		wf_store_close(s);
	return ret;
}

TestSuite(store_format, .fini = teardown, .timeout = 60);

Test(store_format, fresh_open_stat)
{
	struct wf_store_err err = { "" };
	struct wf_store_stat st;
	struct wf_store *s;

	img_create(img, sizeof(img), "fmt", 64 * MiB);
	cr_assert_eq(wf_store_format(img, 77, 3, 1 * MiB, false, &err), 0, "%s", err.msg);
	cr_assert_eq(open_err(WF_STORE_EXPECT_TARGET | WF_STORE_EXPECT_CLUSTER,
			      3, 77, &err), 0, "%s", err.msg);
	s = store_open_ok(img, WF_STORE_CACHE_AUTO);
	wf_store_stat(s, &st);
	cr_assert_eq(st.cluster_id, 77);
	cr_assert_eq(st.target_id, 3);
	cr_assert_eq(st.extent_size, 1 * MiB);
	/* 64 MiB minus the superblock and index, rounded to 1 MiB: 63 */
	cr_assert_eq(st.extents, 63);
	cr_assert_eq(st.used, 0);
	cr_assert_eq(st.free, 63);
	cr_assert_eq(st.torn_blocks, 0);
	cr_assert(st.volatile_cache, "a file counts as a volatile cache");
	/* the documented budget: at most 32 bytes per extent plus fixed parts */
	cr_assert_leq(st.index_bytes, 32 * st.extents + 8192);
	wf_store_close(s);
}

Test(store_format, refuse_then_force)
{
	struct wf_store_err err = { "" };
	struct wf_store_stat st;
	struct wf_store *s;
	uint8_t *buf = abuf(64 * KiB);

	img_create(img, sizeof(img), "force", 32 * MiB);
	cr_assert_eq(wf_store_format(img, 1, 1, 64 * KiB, false, &err), 0);
	s = store_open_ok(img, WF_STORE_CACHE_NONE);
	pattern(buf, 64 * KiB, 5, 0, 1);
	cr_assert_eq(s_write(s, 5, 0, 64 * KiB, buf, 0), 0);
	wf_store_close(s);

	err.msg[0] = 0;
	cr_assert_eq(wf_store_format(img, 1, 1, 64 * KiB, false, &err), -EEXIST);
	cr_assert(strstr(err.msg, "already"), "message: %s", err.msg);
	/* refused means untouched */
	s = store_open_ok(img, WF_STORE_CACHE_NONE);
	memset(buf, 0, 64 * KiB);
	cr_assert_eq(s_read(s, 5, 0, 64 * KiB, buf), 0);
	wf_store_stat(s, &st);
	cr_assert_eq(st.used, 1);
	wf_store_close(s);

	cr_assert_eq(wf_store_format(img, 2, 9, 128 * KiB, true, &err), 0, "%s", err.msg);
	s = store_open_ok(img, WF_STORE_CACHE_NONE);
	wf_store_stat(s, &st);
	cr_assert_eq(st.used, 0);
	cr_assert_eq(st.target_id, 9);
	cr_assert_eq(st.extent_size, 128 * KiB);
	memset(buf, 0xa5, 64 * KiB);
	cr_assert_eq(s_read(s, 5, 0, 64 * KiB, buf), 0);
	cr_assert(all_zero(buf, 64 * KiB));
	wf_store_close(s);
	free(buf);
}

Test(store_format, bad_arguments)
{
	struct wf_store_err err = { "" };

	img_create(img, sizeof(img), "args", 16 * MiB);
	cr_assert_eq(wf_store_format(img, 1, 1, 3000, false, &err), -EINVAL);
	cr_assert_eq(wf_store_format(img, 1, 1, 2048, false, &err), -EINVAL);
	cr_assert_eq(wf_store_format(img, 1, 1, 2u << 30, false, &err), -EINVAL);
	cr_assert_eq(wf_store_format(img, 1, 1, 16 * MiB, false, &err), -EINVAL);
	cr_assert_eq(wf_store_format("/var/tmp/weft-no-such-file", 1, 1, 1 * MiB,
				     false, &err), -ENOENT);
	cr_assert_eq(wf_store_format("/dev/null", 1, 1, 1 * MiB, false, &err) < 0, 1);
}

Test(store_format, superblock_errors)
{
	struct wf_store_err err = { "" };
	uint8_t sb[4096], orig[4096];
	int fd;

	img_create(img, sizeof(img), "sb", 16 * MiB);
	cr_assert_eq(wf_store_format(img, 42, 7, 1 * MiB, false, &err), 0);
	raw_rw(false, 0, orig, sizeof(orig));

	/* ids differ from what the caller expects */
	cr_assert_eq(open_err(WF_STORE_EXPECT_TARGET, 8, 0, &err), -ESTALE);
	cr_assert(strstr(err.msg, "target 7"), "%s", err.msg);
	cr_assert_eq(open_err(WF_STORE_EXPECT_CLUSTER, 0, 43, &err), -ESTALE);
	cr_assert_eq(open_err(WF_STORE_EXPECT_TARGET | WF_STORE_EXPECT_CLUSTER,
			      7, 42, &err), 0);

	/* one flipped bit anywhere: checksum */
	memcpy(sb, orig, sizeof(sb));
	sb[2000] ^= 0x10;
	raw_rw(true, 0, sb, sizeof(sb));
	cr_assert_eq(open_err(0, 0, 0, &err), -EBADMSG);
	cr_assert(strstr(err.msg, "checksum"), "%s", err.msg);

	/* another version, checksum right */
	memcpy(sb, orig, sizeof(sb));
	sb[8] = 2;
	sb_fix_crc(sb);
	raw_rw(true, 0, sb, sizeof(sb));
	cr_assert_eq(open_err(0, 0, 0, &err), -EPROTONOSUPPORT);

	/* wrong magic */
	memcpy(sb, orig, sizeof(sb));
	sb[0] = 'X';
	raw_rw(true, 0, sb, sizeof(sb));
	cr_assert_eq(open_err(0, 0, 0, &err), -EMEDIUMTYPE);
	memset(sb, 0, sizeof(sb));
	raw_rw(true, 0, sb, sizeof(sb));
	cr_assert_eq(open_err(0, 0, 0, &err), -EMEDIUMTYPE);

	/* geometry that does not fit: checksum right, extent count too big */
	memcpy(sb, orig, sizeof(sb));
	sb[40] = 0xff;
	sb[41] = 0x7f;
	sb_fix_crc(sb);
	raw_rw(true, 0, sb, sizeof(sb));
	cr_assert_eq(open_err(0, 0, 0, &err), -EUCLEAN);

	/* back to the original, then truncate the device under it */
	raw_rw(true, 0, orig, sizeof(orig));
	cr_assert_eq(open_err(0, 0, 0, &err), 0, "%s", err.msg);
	fd = open(img, O_RDWR | O_CLOEXEC);
	cr_assert_eq(ftruncate(fd, 8 * MiB), 0);
	close(fd);
	cr_assert_eq(open_err(0, 0, 0, &err), -EUCLEAN);
	cr_assert(strstr(err.msg, "truncated"), "%s", err.msg);

	/* too small for a superblock at all */
	fd = open(img, O_RDWR | O_CLOEXEC);
	cr_assert_eq(ftruncate(fd, 0), 0);
	close(fd);
	cr_assert_eq(open_err(0, 0, 0, &err), -EMEDIUMTYPE);
}

/* Block b, copy c of the index: what a torn write of it leaves. */
static void tear(uint64_t b, int c)
{
	uint8_t blk[4096];

	raw_rw(false, 4096 + (2 * b + c) * 4096, blk, sizeof(blk));
	memset(blk + 2048, 0x5a, 2048);
	raw_rw(true, 4096 + (2 * b + c) * 4096, blk, sizeof(blk));
}

static uint64_t blk_seq(uint64_t b, int c)
{
	uint8_t blk[4096];
	uint64_t seq;

	raw_rw(false, 4096 + (2 * b + c) * 4096, blk, sizeof(blk));
	memcpy(&seq, blk + 8, 8);
	return seq;
}

Test(store_format, torn_index_blocks)
{
	struct wf_store_err err = { "" };
	struct wf_store_stat st;
	struct wf_store *s;
	uint8_t *a = abuf(64 * KiB), *b = abuf(64 * KiB), *r = abuf(64 * KiB);

	img_create(img, sizeof(img), "torn", 16 * MiB);
	cr_assert_eq(wf_store_format(img, 1, 1, 64 * KiB, false, &err), 0);
	/* format: copy 0 has seq 1, copy 1 seq 0 */
	cr_assert_eq(blk_seq(0, 0), 1);
	cr_assert_eq(blk_seq(0, 1), 0);

	/* two allocations, two writes of block 0: seq 2 in copy 1, seq 3
	 * in copy 0 */
	s = store_open_ok(img, WF_STORE_CACHE_NONE);
	pattern(a, 64 * KiB, 1, 0, 1);
	pattern(b, 64 * KiB, 2, 0, 1);
	cr_assert_eq(s_write(s, 1, 0, 64 * KiB, a, 0), 0);
	cr_assert_eq(s_write(s, 2, 0, 64 * KiB, b, 0), 0);
	wf_store_close(s);
	cr_assert_eq(blk_seq(0, 1), 2);
	cr_assert_eq(blk_seq(0, 0), 3);

	/* the older copy torn: detected, nothing lost */
	tear(0, 1);
	s = store_open_ok(img, WF_STORE_CACHE_NONE);
	wf_store_stat(s, &st);
	cr_assert_eq(st.torn_blocks, 1);
	cr_assert_eq(st.used, 2);
	cr_assert_eq(s_read(s, 1, 0, 64 * KiB, r), 0);
	cr_assert_eq(memcmp(r, a, 64 * KiB), 0);
	cr_assert_eq(s_read(s, 2, 0, 64 * KiB, r), 0);
	cr_assert_eq(memcmp(r, b, 64 * KiB), 0);
	/* the next write of block 0 goes over the torn copy */
	cr_assert_eq(s_discard(s, 2, 0, 64 * KiB), 0);
	wf_store_close(s);
	cr_assert_eq(blk_seq(0, 1), 4);
	s = store_open_ok(img, WF_STORE_CACHE_NONE);
	wf_store_stat(s, &st);
	cr_assert_eq(st.torn_blocks, 0);
	cr_assert_eq(st.used, 1);
	wf_store_close(s);

	/* the newest copy torn (a crash during its write): the previous
	 * image is used, as if the last update never happened */
	tear(0, 1);
	s = store_open_ok(img, WF_STORE_CACHE_NONE);
	wf_store_stat(s, &st);
	cr_assert_eq(st.torn_blocks, 1);
	cr_assert_eq(st.used, 2);
	wf_store_close(s);

	/* both copies: refused */
	tear(0, 0);
	cr_assert_eq(open_err(0, 0, 0, &err), -EUCLEAN);
	cr_assert(strstr(err.msg, "index block 0"), "%s", err.msg);
	free(a);
	free(b);
	free(r);
}

Test(store_format, device_lock)
{
	struct wf_store_opts o = { .size = sizeof(o), .lock_wait_ms = 20 };
	struct wf_store_err err = { "" };
	struct wf_store *s, *s2 = NULL;

	img_create(img, sizeof(img), "lock", 16 * MiB);
	cr_assert_eq(wf_store_format(img, 1, 1, 1 * MiB, false, &err), 0);
	s = store_open_ok(img, WF_STORE_CACHE_NONE);
	cr_assert_eq(wf_store_open(img, &o, &s2, &err), -EBUSY);
	cr_assert_eq(wf_store_format(img, 1, 1, 1 * MiB, true, &err), -EBUSY);
	wf_store_close(s);
	cr_assert_eq(wf_store_open(img, &o, &s2, &err), 0);
	wf_store_close(s2);
}
