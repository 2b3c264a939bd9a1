/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Data moves before reads do: four targets, a pool of three replicas, one
 * target marked out.  Its PGs get a new member; they stay on the members
 * that hold the data while it is copied (pg_temp), `weftctl recover` ends
 * the pins, and then every replica of every PG reads back every block:
 * with two of the four targets marked down, each PG is served by one of
 * its members, and over the six pairs every member of every PG serves
 * alone once.  The bytes the primaries copied are compared with the ideal:
 * the allocated extents of the moved PGs, once per new member.  The same
 * checks after `weftctl balance` on 64 PGs (sys_move_balance).
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

static void start_pgs(unsigned pg_num)
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
		"min_size = 2; failure_domain = \"device\"; pg_num = %u; } );\n"
		"volumes = ( { name = \"vol3\"; id = 1; size = \"1G\"; pool = \"rep3\"; } );\n",
		pg_num);
	fclose(f);
	setenv("WEFT_SYS_MAP", map4, 1);
	sys_start(&C);
}

static void up(void)
{
	start_pgs(32);
}

/* 64 PGs: where `weftctl balance` moves some replicas (with 32, only
 * primaries). */
static void up64(void)
{
	start_pgs(64);
}

static void down(void)
{
	sys_stop(&C);
	unsetenv("WEFT_SYS_MAP");
	unlink(map4);
}

TestSuite(sys_move, .init = up, .fini = down, .timeout = 300);
TestSuite(sys_move_balance, .init = up64, .fini = down, .timeout = 300);

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

/* Every member of every PG alone holds every chunk of img: chunk i, len
 * bytes at img + i * len, is at extent i of vol3.  Each pair of the
 * targets in mask marked down in turn (two of four down leaves each PG
 * one member up). */
static void every_member_alone(const char *img, unsigned mask, unsigned n,
			       uint32_t len)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *buf = aligned_alloc(4096, len);

	cr_assert(buf);
	for (unsigned a = 0; a < 4; a++)
		for (unsigned b = a + 1; b < 4; b++) {
			if (!((mask >> a) & 1) || !((mask >> b) & 1))
				continue;
			set_up(mask & ~(1u << a) & ~(1u << b));
			sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 8000, &cl, &vol, "vol3");
			for (unsigned i = 0; i < n; i++) {
				cr_assert_eq(weft_pread(vol, buf, len, (uint64_t)i * SYS_EXT),
					     (ssize_t)len);
				cr_assert(!memcmp(buf, img + (size_t)i * len, len),
					  "targets %u and %u down: extent %u differs",
					  a, b, i);
			}
			weft_cluster_close(cl);
		}
	set_up(mask);
	free(buf);
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

	every_member_alone(img, 0x7u, SPAN / SYS_EXT, SYS_EXT);
	free(img);
	free(buf);
}

/*
 * `weftctl balance -o MAP` on 64 PGs (PG overrides: some PGs change
 * members; the map pins them to the members that hold their data),
 * pushed to the targets, `weftctl recover --wait`: every written chunk
 * (128 KiB at the start of each of 192 extents: data in every PG) reads
 * back while pinned and after, and every member of every PG alone holds
 * it, the new ones included.
 */
#define BAL_EXTS  192u
#define BAL_CHUNK (128u * 1024)

static void expect_chunks(const char *what, const char *img)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *buf = aligned_alloc(4096, BAL_CHUNK);

	cr_assert(buf);
	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 8000, &cl, &vol, "vol3");
	for (unsigned i = 0; i < BAL_EXTS; i++) {
		cr_assert_eq(weft_pread(vol, buf, BAL_CHUNK, (uint64_t)i * SYS_EXT),
			     BAL_CHUNK);
		cr_assert(!memcmp(buf, img + (size_t)i * BAL_CHUNK, BAL_CHUNK),
			  "%s: extent %u differs", what, i);
	}
	weft_cluster_close(cl);
	free(buf);
}

Test(sys_move_balance, balance_then_every_block_verifies)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *img = aligned_alloc(4096, (size_t)BAL_EXTS * BAL_CHUNK);
	struct wf_map m;
	struct wf_map_err err;
	unsigned moved_written = 0;

	cr_assert(img);
	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 8000, &cl, &vol, "vol3");
	for (unsigned i = 0; i < BAL_EXTS; i++) {
		char *p = img + (size_t)i * BAL_CHUNK;
		uint64_t off = (uint64_t)i * SYS_EXT;

		for (uint64_t b = 0; b < BAL_CHUNK; b += SYS_BS)
			sys_fill(p + b, off + b, 2);
		cr_assert_eq(weft_pwrite(vol, p, BAL_CHUNK, off, 0), BAL_CHUNK);
	}
	weft_cluster_close(cl);
	cr_assert_eq(sys_sh("'%s/weftctl' balance -c '%s' -o '%s' >/dev/null", C.bin,
			    C.map, C.map), 0, "weftctl balance");
	cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
	cr_assert_gt(m.ntemps, 0, "balance moved no PG");
	for (unsigned i = 0; i < BAL_EXTS; i++)
		for (uint32_t k = 0; k < m.ntemps; k++)
			moved_written += m.temps[k].pg == wf_pg_of(1, i, 64);
	wf_map_free(&m);
	cr_assert_gt(moved_written, 0, "no written extent in a moved PG");
	cr_assert_eq(weftctl("map push"), 0);
	expect_chunks("while pinned", img);
	cr_assert_eq(weftctl("recover --wait --timeout 120"), 0,
		     "recovery did not finish");
	cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m.ntemps, 0, "pins left after recover");
	wf_map_free(&m);
	expect_chunks("after recover", img);
	every_member_alone(img, 0xfu, BAL_EXTS, BAL_CHUNK);
	fprintf(stderr, "  balance: %u written extents in moved PGs\n", moved_written);
	free(img);
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
