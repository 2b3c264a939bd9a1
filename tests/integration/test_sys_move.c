/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Data moves before reads do: four targets, a pool of three replicas, one
 * target marked out.  Its PGs get a new member; they stay on the members
 * that hold the data while it is copied (pg_temp), `weftctl recover` ends
 * the pins, and then every replica of every PG reads back every block:
 * with two of the four targets marked down, each PG is served by one of
 * its members, and over the six pairs every member of every PG serves
 * alone once.  The bytes the primaries copied are compared with the ideal:
 * the allocated extents of the moved PGs, once per new member.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "placement/map.h"
#include "placement/placement.h"
#include "proto/ctl.h"
#include "tests/integration/sys.h"

static struct sys_cluster C;
static char map4[256];

static void up(void)
{
	FILE *f;

	snprintf(map4, sizeof(map4), "/tmp/weft-move-%d.conf", (int)getpid());
	f = fopen(map4, "w");
	cr_assert(f);
	fprintf(f, "epoch = 1;\ncluster_id = 4;\ntargets = (\n");
	for (int i = 0; i < 4; i++)
		fprintf(f, "  { id = %d; host = \"localhost\"; addr = \"127.0.0.1\"; "
			"port = %d; device = \"/var/tmp/d%d\"; }%s\n", i, 7400 + 16 * i,
			i, i < 3 ? "," : "");
	fprintf(f, ");\npools = ( { name = \"rep3\"; id = 1; replicas = 3; "
		"min_size = 2; failure_domain = \"device\"; pg_num = 32; } );\n"
		"volumes = ( { name = \"vol3\"; id = 1; size = \"1G\"; pool = \"rep3\"; } );\n");
	fclose(f);
	setenv("WEFT_SYS_MAP", map4, 1);
	sys_start(&C);
}

static void down(void)
{
	sys_stop(&C);
	unsetenv("WEFT_SYS_MAP");
	unlink(map4);
}

TestSuite(sys_move, .init = up, .fini = down, .timeout = 300);

#define SPAN (40u << 20)

static void set_up(unsigned mask)
{
	struct wf_map m;
	struct wf_map_err err;

	cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
	m.epoch++;
	for (uint32_t i = 0; i < m.ntargets; i++)
		m.targets[i].up = (mask >> m.targets[i].id) & 1;
	cr_assert_eq(wf_map_save(&m, C.map, &err), 0, "%s", err.msg);
	wf_map_free(&m);
}

static int weftctl(const char *args)
{
	return sys_sh("'%s/weftctl' %s -c '%s' --run-dir '%s' >/dev/null", C.bin,
		      args, C.map, C.run);
}

Test(sys_move, out_moves_data_before_reads)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *img = aligned_alloc(4096, SPAN), *buf = aligned_alloc(4096, 1 << 20);
	struct wf_map before;
	struct wf_map_err err;
	uint64_t ideal = 0, copied = 0, used3;

	cr_assert(img && buf);
	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 8000, &cl, &vol, "vol3");
	for (uint64_t off = 0; off < SPAN; off += 1 << 20) {
		for (uint64_t b = 0; b < (1u << 20); b += SYS_BS)
			sys_fill(img + off + b, off + b, 1);
		cr_assert_eq(weft_pwrite(vol, img + off, 1 << 20, off, 0), 1 << 20);
	}
	weft_cluster_close(cl);
	cr_assert_eq(wf_map_load(C.map, &before, &err), 0, "%s", err.msg);

	cr_assert_eq(weftctl("target out 3"), 0);
	{
		/* The ideal: every written extent of a PG that gained a
		 * member, once per new member. */
		struct wf_map after;
		struct wf_placer pb, pa;
		struct wf_pg_table tb, ta;

		cr_assert_eq(wf_map_load(C.map, &after, &err), 0, "%s", err.msg);
		cr_assert_gt(after.ntemps, 0, "target 3 held PGs: some are pinned");
		cr_assert_eq(wf_placer_init(&pb, &before), 0);
		cr_assert_eq(wf_pg_table_build(&tb, &pb), 0);
		cr_assert_eq(wf_placer_init(&pa, &after), 0);
		cr_assert_eq(wf_pg_table_build(&ta, &pa), 0);
		for (uint64_t e = 0; e < SPAN / SYS_EXT; e++) {
			uint32_t pg = wf_pg_of(1, e, 32);
			const uint32_t *a, *u;
			unsigned na = wf_pg_acting(&tb, 0, pg, &a);
			unsigned nu = wf_pg_up(&ta, 0, pg, &u);

			for (unsigned i = 0; i < nu; i++) {
				bool held = false;

				for (unsigned j = 0; j < na; j++)
					held |= before.targets[a[j]].id ==
						after.targets[u[i]].id;
				ideal += held ? 0 : SYS_EXT;
			}
		}
		wf_pg_table_free(&ta);
		wf_placer_free(&pa);
		wf_pg_table_free(&tb);
		wf_placer_free(&pb);
		wf_map_free(&after);
	}
	wf_map_free(&before);
	/* Pinned: reads are right while the copy runs. */
	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 8000, &cl, &vol, "vol3");
	for (uint64_t off = 0; off < SPAN; off += 1 << 20) {
		cr_assert_eq(weft_pread(vol, buf, 1 << 20, off), 1 << 20);
		cr_assert(!memcmp(buf, img + off, 1 << 20), "at %llu while pinned",
			  (unsigned long long)off);
	}
	weft_cluster_close(cl);
	/* Wait for every target's pass (bounded), count what it copied in
	 * this epoch, then end the pins. */
	for (int i = 0; i < 1200; i++) {
		unsigned done = 0;

		copied = 0;
		for (unsigned t = 0; t < 4; t++) {
			struct wf_ctl_status st = sys_ctl_status(C.run, t);

			done += le64toh(st.recovered_epoch) >= le64toh(st.epoch);
			copied += le64toh(st.recovery_bytes);
		}
		if (done == 4)
			break;
		nanosleep(&(struct timespec){ .tv_nsec = 100000000 }, NULL);
	}
	used3 = le64toh(sys_ctl_status(C.run, 3).used);
	cr_assert_gt(used3, 0, "target 3 held extents before the move");
	cr_assert_eq(weftctl("recover"), 0, "recovery did not finish in 120 s");
	/* The pins ended: target 3 is in no PG any more, every extent it
	 * holds is a stray copy and goes (bounded wait). */
	for (int i = 0; i < 100 && used3; i++) {
		used3 = le64toh(sys_ctl_status(C.run, 3).used);
		if (used3)
			nanosleep(&(struct timespec){ .tv_nsec = 50000000 }, NULL);
	}
	cr_assert_eq(used3, 0, "target 3 kept %llu stray extents",
		     (unsigned long long)used3);
	fprintf(stderr, "  moved: %.1f MiB copied, ideal %.1f MiB (%.3fx)\n",
		copied / 1048576.0, ideal / 1048576.0, (double)copied / (double)ideal);
	cr_assert_gt(ideal, 0);
	cr_assert_geq(copied, ideal, "a new member missed data");
	cr_assert_leq(copied * 10, ideal * 11, "more than 1.1x the ideal copied");

	/* Every member of every PG alone (two of four down: each PG keeps
	 * one member up) holds every block. */
	for (unsigned a = 0; a < 3; a++)
		for (unsigned b = a + 1; b < 3; b++) {
			set_up(0x7u & ~(1u << a) & ~(1u << b));
			sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 8000, &cl, &vol, "vol3");
			for (uint64_t off = 0; off < SPAN; off += 1 << 20) {
				cr_assert_eq(weft_pread(vol, buf, 1 << 20, off), 1 << 20);
				cr_assert(!memcmp(buf, img + off, 1 << 20),
					  "targets %u and %u down: extent at %llu "
					  "differs", a, b, (unsigned long long)off);
			}
			weft_cluster_close(cl);
		}
	free(img);
	free(buf);
}

/* Reclaim scans target t finished (its status). */
static uint32_t scans(unsigned t)
{
	return le32toh(sys_ctl_status(C.run, t).reclaim_scans);
}

/*
 * A map edited by hand that takes target 3 out of its PGs without pins:
 * nobody copied its data, so its copies are not strays and it keeps them
 * (the reclaim scan after that map load runs and drops nothing).
 */
Test(sys_move, a_pg_that_left_without_a_pin_keeps_its_copies)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *buf = aligned_alloc(4096, 1 << 20);
	struct wf_map m;
	struct wf_map_err err;
	uint64_t used3;
	uint32_t s0;

	cr_assert(buf);
	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 8000, &cl, &vol, "vol3");
	for (uint64_t off = 0; off < SPAN; off += 1 << 20) {
		for (uint64_t b = 0; b < (1u << 20); b += SYS_BS)
			sys_fill(buf + b, off + b, 1);
		cr_assert_eq(weft_pwrite(vol, buf, 1 << 20, off, 0), 1 << 20);
	}
	weft_cluster_close(cl);
	used3 = le64toh(sys_ctl_status(C.run, 3).used);
	cr_assert_gt(used3, 0);
	s0 = scans(3);

	cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
	m.epoch++;
	m.targets[3].in = false;
	cr_assert_eq(wf_map_save(&m, C.map, &err), 0, "%s", err.msg);
	wf_map_free(&m);
	cr_assert_eq(weftctl("map push"), 0);
	for (int i = 0; i < 200 && scans(3) == s0; i++)
		nanosleep(&(struct timespec){ .tv_nsec = 25000000 }, NULL);
	cr_assert_gt(scans(3), s0, "no reclaim scan after the map load");
	cr_assert_eq(le64toh(sys_ctl_status(C.run, 3).used), used3,
		     "copies dropped without a pin");
	free(buf);
}
