/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Volumes as an operator handles them with weftctl: a deleted volume's id
 * is never given again, so the volume created after it reads zeros where
 * the deleted one had data, and the targets reclaim the deleted volume's
 * extents once they load the epoch that no longer lists it.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "placement/map.h"
#include "proto/ctl.h"
#include "tests/integration/sys.h"

SYS_SUITE(sys_volumes, 120);

#define SPAN (8u << 20)         /* 8 extents of vol1 */

static uint64_t used_all(void)
{
	uint64_t n = 0;

	for (unsigned t = 0; t < SYS_TARGETS; t++)
		n += le64toh(sys_ctl_status(C.run, t).used);
	return n;
}

static uint64_t volume_id(const char *name)
{
	struct wf_map m;
	struct wf_map_err err;
	int i;
	uint64_t id;

	cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
	i = wf_map_volume_by_name(&m, name);
	cr_assert_geq(i, 0, "no volume %s", name);
	id = m.volumes[i].id;
	wf_map_free(&m);
	return id;
}

Test(sys_volumes, delete_then_create_never_shows_old_blocks)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *buf = aligned_alloc(4096, SPAN), *zero = calloc(1, SPAN);
	uint64_t used0 = used_all(), old_id = volume_id("vol1"), new_id;

	cr_assert(buf && zero);
	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 5000, &cl, &vol, "vol1");
	for (uint64_t b = 0; b < SPAN; b += SYS_BS)
		sys_fill(buf + b, b, 3);
	cr_assert_eq(weft_pwrite(vol, buf, SPAN, 0, 0), (ssize_t)SPAN);
	weft_cluster_close(cl);
	cr_assert_geq(used_all(), used0 + SPAN / SYS_EXT,
		      "the pattern took an extent per MiB");

	cr_assert_eq(sys_sh("'%s/weftctl' volume delete -c '%s' --run-dir '%s' --yes vol1 "
			    ">/dev/null", C.bin, C.map, C.run), 0);
	cr_assert_eq(sys_sh("'%s/weftctl' volume create -c '%s' --run-dir '%s' "
			    "--size 1G --pool rep1 fresh >/dev/null", C.bin, C.map,
			    C.run), 0);
	new_id = volume_id("fresh");
	cr_assert_neq(new_id, old_id, "the deleted volume's id was given again");

	/* Whatever the targets hold yet, the new volume reads zeros. */
	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 5000, &cl, &vol, "fresh");
	cr_assert_eq(weft_pread(vol, buf, SPAN, 0), (ssize_t)SPAN);
	cr_assert(!memcmp(buf, zero, SPAN), "a new volume shows old blocks");
	weft_cluster_close(cl);

	/* The targets reclaim the deleted volume's extents (bounded wait). */
	for (int i = 0; i < 100 && used_all() > used0; i++)
		nanosleep(&(struct timespec){ .tv_nsec = 50000000 }, NULL);
	cr_assert_eq(used_all(), used0, "the deleted volume's extents were not "
		     "reclaimed");
	free(buf);
	free(zero);
}

/* An id at or above next_volume_id is a volume of a newer map: a target
 * on an older map keeps its extents (nothing reclaims data it cannot
 * judge).  Checked through the map rule weftctl enforces: an explicit id
 * below next_volume_id is refused. */
Test(sys_volumes, explicit_id_below_next_is_refused)
{
	cr_assert_eq(sys_sh("'%s/weftctl' volume delete -c '%s' --run-dir '%s' --yes vol1 "
			    ">/dev/null", C.bin, C.map, C.run), 0);
	cr_assert_neq(sys_sh("'%s/weftctl' volume create -c '%s' --run-dir '%s' "
			     "--size 1G --pool rep1 --id 2 again 2>/dev/null", C.bin,
			     C.map, C.run), 0, "id 2 was vol1's");
	cr_assert_eq(sys_sh("'%s/weftctl' volume create -c '%s' --run-dir '%s' "
			    "--size 1G --pool rep1 --id 40 again >/dev/null", C.bin,
			    C.map, C.run), 0);
	cr_assert_eq(volume_id("again"), 40);
}
