/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The block device path: size by ioctl, zeroing by fallocate(ZERO_RANGE)
 * on the device, the write cache setting from sysfs.  Runs on a loop
 * device over a file in /var/tmp; skipped (reported as skipped) where
 * loop devices cannot be set up (not root, no loop driver).
 */
#define _GNU_SOURCE
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "tests/store/helpers.h"

#define EXT (128 * KiB)

static char img[128];
static char dev[64];

static void teardown(void)
{
	char cmd[128];

	if (dev[0]) {
		snprintf(cmd, sizeof(cmd), "losetup -d %s", dev);
		if (system(cmd))
			fprintf(stderr, "could not detach %s\n", dev);
	}
	if (img[0])
		unlink(img);
}

static bool loop_attach(void)
{
	char cmd[256];
	FILE *p;

	snprintf(cmd, sizeof(cmd),
		 "losetup -f --show --direct-io=on %s 2>/dev/null", img);
	p = popen(cmd, "r");
	if (!p)
		return false;
	if (!fgets(dev, sizeof(dev), p))
		dev[0] = 0;
	pclose(p);
	dev[strcspn(dev, "\n")] = 0;
	return strncmp(dev, "/dev/loop", 9) == 0;
}

static bool sysfs_write_back(const char *path)
{
	char f[128], val[32] = "";
	struct stat st;
	FILE *p;

	if (stat(path, &st))
		return true;
	snprintf(f, sizeof(f), "/sys/dev/block/%u:%u/queue/write_cache",
		 major(st.st_rdev), minor(st.st_rdev));
	p = fopen(f, "r");
	if (!p)
		return true;
	if (!fgets(val, sizeof(val), p))
		val[0] = 0;
	fclose(p);
	return strncmp(val, "write through", 13) != 0;
}

Test(store_blkdev, loop_device, .fini = teardown, .timeout = 120)
{
	struct wf_store_err err = { "" };
	struct wf_store_stat st;
	struct wf_store *s;
	uint8_t *w = abuf(EXT), *r = abuf(EXT);

	img_create(img, sizeof(img), "blkdev", 32 * MiB);
	if (geteuid() != 0 || !loop_attach()) {
		dev[0] = 0;
		cr_skip_test("no loop device (needs root and the loop driver)");
	}
	cr_assert_eq(wf_store_format(dev, 3, 4, EXT, false, &err), 0, "%s", err.msg);
	cr_assert_eq(wf_store_format(dev, 3, 4, EXT, false, &err), -EEXIST);
	s = store_open_ok(dev, WF_STORE_CACHE_AUTO);
	wf_store_stat(s, &st);
	/* 32 MiB less the superblock and index, in 128 KiB extents */
	cr_assert_eq(st.extents, 32 * MiB / EXT - 1);
	cr_assert_eq(st.volatile_cache, sysfs_write_back(dev));

	pattern(w, EXT, 1, 0, 1);
	for (uint64_t e = 0; e < 8; e++)
		cr_assert_eq(s_write(s, 1, e * EXT, EXT, w, e & 1 ? WF_STORE_FUA : 0), 0);
	cr_assert_eq(s_flush(s), 0);
	/* whole and partial discard through the device's zeroing */
	cr_assert_eq(s_discard(s, 1, 2 * EXT, EXT), 0);
	cr_assert_eq(s_discard(s, 1, 3 * EXT + 4096, 8192), 0);
	wf_store_close(s);

	s = store_open_ok(dev, WF_STORE_CACHE_AUTO);
	wf_store_stat(s, &st);
	cr_assert_eq(st.used, 7);
	cr_assert_eq(s_read(s, 1, 2 * EXT, EXT, r), 0);
	cr_assert(all_zero(r, EXT));
	cr_assert_eq(s_read(s, 1, 3 * EXT, EXT, r), 0);
	cr_assert_eq(memcmp(r, w, 4096), 0);
	cr_assert(all_zero(r + 4096, 8192));
	cr_assert_eq(memcmp(r + 12288, w + 12288, EXT - 12288), 0);
	cr_assert_eq(s_read(s, 1, 7 * EXT, EXT, r), 0);
	cr_assert_eq(memcmp(r, w, EXT), 0);
	/* the freed extent comes back zeroed on the device */
	cr_assert_eq(s_write(s, 2, 0, 4096, w, 0), 0);
	cr_assert_eq(s_read(s, 2, 0, EXT, r), 0);
	cr_assert(all_zero(r + 4096, EXT - 4096));
	wf_store_close(s);
	free(w);
	free(r);
}
