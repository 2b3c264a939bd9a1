/* SPDX-License-Identifier: Apache-2.0 */
/* bench/io_floor.c: a short functional run on a real file (O_DIRECT needs a
 * disk-backed folder: /var/tmp).  No timing assertions. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "bench/io_floor.h"

static char dir[64];
static char path[128];

static void setup(void)
{
	strcpy(dir, "/var/tmp/weft-floor-XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/dev.img", dir);
}

static void teardown(void)
{
	unlink(path);
	rmdir(dir);
}

static struct wf_floor_result *run(enum wf_rw rw, uint32_t qd, int *err)
{
	struct wf_floor_result *r = malloc(sizeof(*r));
	struct wf_floor_opts o;

	cr_assert(r);
	wf_floor_opts_init(&o);
	o.path = path;
	o.rw = rw;
	o.qd = qd;
	o.runtime_s = 0.2;
	o.size = 16 << 20;
	o.quiet = true;
	*err = wf_floor_run(&o, r);
	return r;
}

TestSuite(floor, .init = setup, .fini = teardown);

Test(floor, randwrite_verifies)
{
	int err;
	struct wf_floor_result *r = run(WF_RW_WRITE, 4, &err);

	cr_assert_eq(err, 0, "wf_floor_run: %s", strerror(-err));
	cr_assert(r->laid_out, "a new file is written before it is measured");
	cr_assert_gt(r->ops, 0);
	cr_assert_eq(r->ops, r->writes);
	cr_assert_eq(r->lat.count, r->ops);
	cr_assert_gt(r->verified, 0);
	/* Every distinct block written was read back: at most ops of them. */
	cr_assert_leq(r->verified, r->writes);
	cr_assert_eq(r->verify_errors, 0);
	free(r);
}

Test(floor, randrw_then_randread)
{
	int err;
	struct wf_floor_result *r = run(WF_RW_RW, 2, &err);

	cr_assert_eq(err, 0, "randrw: %s", strerror(-err));
	cr_assert_gt(r->reads, 0);
	cr_assert_gt(r->writes, 0);
	cr_assert_eq(r->read_lat.count + r->write_lat.count, r->ops);
	cr_assert_eq(r->verify_errors, 0);
	free(r);

	/* Same file again: already laid out, reads only, nothing to verify. */
	r = run(WF_RW_READ, 1, &err);
	cr_assert_eq(err, 0, "randread: %s", strerror(-err));
	cr_assert_not(r->laid_out);
	cr_assert_gt(r->reads, 0);
	cr_assert_eq(r->writes, 0);
	cr_assert_eq(r->verified, 0);
	cr_assert_gt(r->iops, 0);
	cr_assert_gt(r->lat.min, 0);
	free(r);
}

Test(floor, rejects_bad_options)
{
	struct wf_floor_result *r = malloc(sizeof(*r));
	struct wf_floor_opts o;

	wf_floor_opts_init(&o);
	o.path = path;
	o.bs = 1000;
	cr_assert_eq(wf_floor_run(&o, r), -EINVAL);
	o.bs = 4096;
	o.qd = 0;
	cr_assert_eq(wf_floor_run(&o, r), -EINVAL);
	o.qd = 1;
	o.runtime_s = 0;
	cr_assert_eq(wf_floor_run(&o, r), -EINVAL);
	free(r);
}

Test(floor, read_only_never_writes)
{
	struct wf_floor_result *r = malloc(sizeof(*r));
	struct wf_floor_opts o;
	struct stat st;
	int fd, err;

	/* A sparse file, as a thin-provisioned store would be. */
	fd = open(path, O_CREAT | O_WRONLY, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 8 << 20), 0);
	close(fd);

	wf_floor_opts_init(&o);
	o.path = path;
	o.read_only = true;
	o.runtime_s = 0.1;
	o.quiet = true;
	o.rw = WF_RW_WRITE;
	cr_assert_eq(wf_floor_run(&o, r), -EINVAL, "read_only takes randread only");
	o.rw = WF_RW_READ;
	o.size = 64 << 20;	/* larger than the file: clamped, not extended */
	err = wf_floor_run(&o, r);
	cr_assert_eq(err, 0, "%s", strerror(-err));
	cr_assert_not(r->laid_out);
	cr_assert_eq(r->size, 8 << 20);
	cr_assert_gt(r->reads, 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 8 << 20);
	cr_assert_eq(st.st_blocks, 0, "nothing was written");
	/* Holes complete at once: refills submitted mid-reap (QD above the
	 * submit batch) come back in the same reap and must not be timed
	 * against its older clock (a wrapped, huge latency). */
	o.qd = 64;
	err = wf_floor_run(&o, r);
	cr_assert_eq(err, 0, "%s", strerror(-err));
	cr_assert_gt(r->reads, 0);
	cr_assert_lt(r->lat.max, 10ull * 1000000000ull,
		     "max latency %llu ns", (unsigned long long)r->lat.max);
	free(r);
}
