/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The per-PG log of recent writes (target/pglog.c) on its own: one
 * reactor's log over a sequence of maps of three targets (one PG, three
 * replicas), with writes appended as the data path does, and the plan a
 * recovery pass would make for a member coming back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "target/target.h"

/* Epoch, then the states of targets 1 and 2 ("up" or "down"). */
static const char map_fmt[] =
	"epoch = %u;\ncluster_id = 1;\nextent_size = 65536;\n"
	"targets = (\n"
	"  { id = 0; host = \"a\"; addr = \"127.0.0.1\"; port = 1; device = \"/d0\"; },\n"
	"  { id = 1; host = \"b\"; addr = \"127.0.0.1\"; port = 2; device = \"/d1\";"
	" state = \"%s,in\"; },\n"
	"  { id = 2; host = \"c\"; addr = \"127.0.0.1\"; port = 3; device = \"/d2\";"
	" state = \"%s,in\"; }\n);\n"
	"pools = ( { name = \"p\"; id = 1; replicas = 3; min_size = 1;"
	" failure_domain = \"device\"; pg_num = 1; } );\n"
	"volumes = ( { name = \"v\"; id = 3; size = \"1M\"; pool = \"p\"; } );\n";

static struct wf_tgt_cfg cfg;
static struct wf_tgt_reactor R;
static struct wf_tgt_map *maps[8];
static unsigned nmaps;

static struct wf_tgt_map *map(unsigned epoch, bool up1, bool up2)
{
	char text[2048];
	struct wf_map m;
	struct wf_map_err merr;
	struct wf_tgt_map *t;
	char err[256];
	int n = snprintf(text, sizeof(text), map_fmt, epoch, up1 ? "up" : "down",
			 up2 ? "up" : "down");

	cr_assert_eq(wf_map_load_buf(text, (size_t)n, "t", &m, &merr), 0, "%s",
		     merr.msg);
	cr_assert_eq(wf_tgt_map_build(&m, 0, &t, err, sizeof(err)), 0, "%s", err);
	cr_assert_lt(nmaps, 8);
	maps[nmaps++] = t;
	return t;
}

/* The reactor moves to m (from the map it serves, if any). */
static void serve(struct wf_tgt_map *m)
{
	wf_tgt_pglog_map(&R, R.map, m);
	R.map = m;
}

static void setup(void)
{
	memset(&R, 0, sizeof(R));
	memset(&cfg, 0, sizeof(cfg));
	cfg.pg_log = 4;
	cfg.slots = 2;
	cfg.max_conns = 1;
	R.cfg = &cfg;
	nmaps = 0;
}

static void teardown(void)
{
	wf_tgt_pglog_fini(&R);
	for (unsigned i = 0; i < nmaps; i++)
		wf_tgt_map_free(maps[i]);
	free(R.conns);
}

TestSuite(target_pglog, .init = setup, .fini = teardown);

/* A client write of 4 KiB at off, as conn.c logs it. */
static uint64_t write_at(uint64_t off)
{
	struct wf_tgt_req q = { .volume = 3, .offset = off, .length = 4096,
				.op = WF_OP_WRITE };

	wf_tgt_pglog_add(&R, 0, &q);
	return q.log_seq;
}

/* Target index of id in the served map. */
static uint32_t idx_of(uint32_t id)
{
	for (uint32_t i = 0; i < R.map->map.ntargets; i++)
		if (R.map->map.targets[i].id == id)
			return i;
	cr_assert_fail("no target %u", id);
	return 0;
}

static int plan_for(uint32_t id)
{
	uint32_t to = idx_of(id);

	return wf_tgt_pglog_plan(&R, 0, 0, &to, 1);
}

/* The offsets of the entries the pass would copy, in order. */
static unsigned replay(uint64_t *offs, unsigned max)
{
	const struct wf_tgt_pglog_ent *e;
	unsigned n = 0;
	bool lost;

	while ((e = wf_tgt_pglog_next(&R, 0, &lost)) != NULL) {
		cr_assert_lt(n, max);
		offs[n++] = e->offset;
		R.pglog.pg[0].sub = e->length;  /* started whole */
	}
	cr_assert(!lost);
	return n;
}

Test(target_pglog, a_member_back_gets_the_writes_since_it_left)
{
	uint64_t offs[8];

	serve(map(1, true, true));
	write_at(0);
	write_at(4096);
	serve(map(2, false, true));             /* target 1 leaves */
	write_at(8192);
	write_at(12288);
	serve(map(3, false, true));             /* another epoch, same sets */
	write_at(16384);
	cr_assert_eq(plan_for(1), WF_TGT_PGL_LOG);
	cr_assert_eq(replay(offs, 8), 3);
	cr_assert_eq(offs[0], 8192);
	cr_assert_eq(offs[1], 12288);
	cr_assert_eq(offs[2], 16384);
	/* One that never left has no record: the whole PG. */
	cr_assert_eq(plan_for(2), WF_TGT_PGL_FULL);
}

/* The bytes a log pass sends (recovery_bytes_left's part from the log):
 * its WRITE entries' lengths, not its DISCARDs', counted again from its
 * first entry when the pass runs again. */
Test(target_pglog, the_plan_counts_the_bytes_of_the_writes_it_sends)
{
	struct wf_tgt_req d = { .volume = 3, .offset = 32768, .length = 16384,
				.op = WF_OP_DISCARD };

	serve(map(1, true, true));
	write_at(0);
	serve(map(2, false, true));
	write_at(4096);
	wf_tgt_pglog_add(&R, 0, &d);
	write_at(8192);
	cr_assert_eq(plan_for(1), WF_TGT_PGL_LOG);
	cr_assert_eq(R.pglog.pg[0].unsent, 2 * 4096);
	R.pglog.pg[0].unsent = 0;               /* as the pass starts them */
	R.pglog.pg[0].cur = R.pglog.pg[0].end;
	wf_tgt_pglog_rewind(&R);
	cr_assert_eq(R.pglog.pg[0].unsent, 2 * 4096, "planned again");
}

Test(target_pglog, more_writes_than_entries_copy_the_whole_pg)
{
	serve(map(1, true, true));
	serve(map(2, false, true));
	for (unsigned i = 0; i < 4; i++)
		write_at(i * 4096);
	cr_assert_eq(plan_for(1), WF_TGT_PGL_LOG, "4 entries: still all there");
	write_at(65536 - 4096);
	cr_assert_eq(plan_for(1), WF_TGT_PGL_FULL, "the 5th overwrote the 1st");
}

Test(target_pglog, a_wrap_during_the_pass_is_seen)
{
	bool lost;

	serve(map(1, true, true));
	serve(map(2, false, true));
	write_at(0);
	write_at(4096);
	cr_assert_eq(plan_for(1), WF_TGT_PGL_LOG);
	for (unsigned i = 0; i < 4; i++)
		write_at(8192 + i * 4096);
	cr_assert_null(wf_tgt_pglog_next(&R, 0, &lost));
	cr_assert(lost, "the entries the pass needs were overwritten");
}

Test(target_pglog, a_log_started_after_the_member_left_is_not_used)
{
	/* This target starts (or restarts) with target 1 already down. */
	serve(map(2, false, true));
	write_at(0);
	cr_assert_eq(plan_for(1), WF_TGT_PGL_FULL);
}

Test(target_pglog, a_skipped_epoch_forgets_the_records)
{
	serve(map(1, true, true));
	serve(map(2, false, true));
	write_at(0);
	serve(map(4, false, true));             /* epoch 3 never seen */
	cr_assert_eq(plan_for(1), WF_TGT_PGL_FULL);
}

Test(target_pglog, a_member_acting_again_loses_its_record)
{
	serve(map(1, true, true));
	serve(map(2, false, true));
	write_at(0);
	serve(map(3, true, true));              /* acting: current again */
	serve(map(4, false, true));             /* and gone again */
	write_at(4096);
	cr_assert_eq(plan_for(1), WF_TGT_PGL_LOG);
	cr_assert_eq(R.pglog.pg[0].start, 1, "from its second leave");
}

Test(target_pglog, a_write_in_flight_when_the_member_left_is_copied)
{
	struct wf_tgt_conn *c;
	uint64_t offs[8], seq;

	R.conns = calloc(1, sizeof(*R.conns));
	cr_assert(R.conns);
	c = &R.conns[0];
	c->state = CONN_LIVE;
	c->reqs = calloc(cfg.slots, sizeof(*c->reqs));
	cr_assert(c->reqs);
	serve(map(1, true, true));
	write_at(0);
	/* Logged, still at the store or forwarding when the map changes. */
	c->reqs[1] = (struct wf_tgt_req){ .volume = 3, .offset = 4096,
					  .length = 4096, .op = WF_OP_WRITE };
	wf_tgt_pglog_add(&R, 0, &c->reqs[1]);
	seq = c->reqs[1].log_seq;
	c->reqs[1].state = RQ_FORWARD;
	write_at(8192);                         /* done before the change */
	serve(map(2, false, true));
	cr_assert_eq(plan_for(1), WF_TGT_PGL_LOG);
	cr_assert_eq(R.pglog.pg[0].start, seq - 1);
	cr_assert_eq(replay(offs, 8), 2);
	cr_assert_eq(offs[0], 4096);
	cr_assert_eq(offs[1], 8192);
	free(c->reqs);
}

Test(target_pglog, no_log_no_plan)
{
	cfg.pg_log = 0;
	serve(map(1, true, true));
	serve(map(2, false, true));
	write_at(0);
	cr_assert_eq(plan_for(1), WF_TGT_PGL_FULL);
}
