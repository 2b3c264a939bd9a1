/* SPDX-License-Identifier: Apache-2.0 */
/* The request validator (target/req.c) as a pure function. */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "target/target.h"

static const char map_text[] =
	"epoch = 10;\ncluster_id = 1;\nextent_size = 65536;\n"
	"targets = (\n"
	"  { id = 0; host = \"a\"; addr = \"127.0.0.1\"; port = 1; device = \"/d0\"; },\n"
	"  { id = 1; host = \"b\"; addr = \"127.0.0.1\"; port = 2; device = \"/d1\"; }\n);\n"
	"pools = ( { name = \"p\"; id = 1; replicas = 1; min_size = 1;"
	" failure_domain = \"device\"; pg_num = 8; } );\n"
	"volumes = ( { name = \"v\"; id = 3; size = \"1M\"; pool = \"p\"; },\n"
	"            { name = \"w\"; id = 9; size = \"2M\"; pool = \"p\"; } );\n";

static struct wf_tgt_map *load(uint32_t self)
{
	struct wf_map map;
	struct wf_map_err merr;
	struct wf_tgt_map *m;
	char err[256];

	cr_assert_eq(wf_map_load_buf(map_text, sizeof(map_text) - 1, "t", &map, &merr),
		     0, "%s", merr.msg);
	cr_assert_eq(wf_tgt_map_build(&map, self, &m, err, sizeof(err)), 0, "%s", err);
	return m;
}

static const struct wf_tgt_limits lim = { .slot_count = 8, .slot_size = 16384 };

static int parse(const struct wf_tgt_map *m, uint8_t op, uint64_t vol, uint64_t off,
		 uint32_t len, uint32_t slot, uint64_t epoch, struct wf_tgt_parsed *p)
{
	struct wf_req r = { .opcode = op, .tag = 1, .volume = vol, .offset = off,
			    .epoch = epoch, .length = len, .slot = slot };
	struct wf_req_hdr h;

	if (op == WF_OP_READ) {
		r.buf.key = 1;
		r.buf.addr = 4096;
	}
	wf_req_encode(&r, &h);
	return wf_tgt_req_parse(&h, sizeof(h), &lim, m, p);
}

/* First extent of volume 3 led by target `who`. */
static uint64_t ext_of(const struct wf_tgt_map *m, uint32_t who)
{
	struct wf_extent_loc loc;

	for (uint64_t off = 0; off < (1u << 20); off += 65536) {
		cr_assert_eq(wf_place_extent(&m->table, &m->map, 0, off, &loc), 0);
		if (loc.n && m->map.targets[loc.acting[0]].id == who)
			return off;
	}
	cr_assert_fail("no extent led by %u", who);
	return 0;
}

Test(target_req, verdicts)
{
	struct wf_tgt_map *m = load(0);
	struct wf_tgt_parsed p;
	uint64_t mine = ext_of(m, 0), other = ext_of(m, 1);

	cr_assert_eq(parse(m, WF_OP_WRITE, 3, mine, 16384, 7, 10, &p), WF_TGT_OK);
	cr_assert_eq(p.req.slot, 7);
	cr_assert(p.slot_ok);
	cr_assert_eq(parse(m, WF_OP_READ, 3, mine + 4096, 4096, 3, 10, &p), WF_TGT_OK,
		     "a READ names its slot too");
	cr_assert_eq(p.req.slot, 3);
	cr_assert_eq(parse(m, WF_OP_DISCARD, 3, mine, 65536, 1, 10, &p), WF_TGT_OK,
		     "a discard may cover a whole extent");
	cr_assert_eq(parse(m, WF_OP_FLUSH, 3, 0, 0, 0, 10, &p), WF_TGT_OK);

	cr_assert_eq(parse(m, WF_OP_WRITE, 3, mine, 16384 + 4096, 0, 10, &p), WF_TGT_REJECT);
	cr_assert_eq(p.status, WF_WS_INVALID | WF_WS_DNR);
	cr_assert_eq(p.reason, WF_WR_SLOT_SIZE);
	cr_assert_eq(parse(m, WF_OP_WRITE, 3, mine, 4096, 8, 10, &p), WF_TGT_REJECT);
	cr_assert_eq(p.reason, WF_WR_SLOT);
	cr_assert(!p.slot_ok);
	cr_assert_eq(parse(m, WF_OP_READ, 3, mine + 100, 4096, 0, 10, &p), WF_TGT_REJECT);
	cr_assert_eq(p.reason, WF_WR_ALIGN);
	cr_assert_eq(parse(m, WF_OP_READ, 3, mine, 0, 0, 10, &p), WF_TGT_REJECT);
	cr_assert_eq(p.reason, WF_WR_LENGTH);
	cr_assert_eq(parse(m, WF_OP_READ, 3, mine + 61440, 8192, 0, 10, &p), WF_TGT_REJECT);
	cr_assert_eq(p.reason, WF_TGT_R_EXTENT);
	cr_assert_eq(parse(m, WF_OP_READ, 3, 1u << 20, 4096, 0, 10, &p), WF_TGT_REJECT);
	cr_assert_eq(p.status, WF_WS_RANGE | WF_WS_DNR);
	cr_assert_eq(parse(m, WF_OP_READ, 4, 0, 4096, 0, 10, &p), WF_TGT_REJECT);
	cr_assert_eq(p.status, WF_WS_NOVOL | WF_WS_DNR);
	cr_assert_eq(parse(m, WF_OP_READ, 3, other, 4096, 0, 10, &p), WF_TGT_REJECT);
	cr_assert_eq(p.status, WF_WS_NOTPRIM);
	cr_assert_eq(parse(m, WF_OP_READ, 3, mine, 4096, 0, 9, &p), WF_TGT_REJECT);
	cr_assert_eq(p.status, WF_WS_STALE);
	cr_assert_eq(parse(m, WF_OP_READ, 3, mine, 4096, 0, 11, &p), WF_TGT_NEWER);
	cr_assert_eq(p.status, WF_WS_BUSY);
	/* Epoch is checked before the volume: a newer map may have it. */
	cr_assert_eq(parse(m, WF_OP_READ, 77, mine, 4096, 0, 11, &p), WF_TGT_NEWER);
	wf_tgt_map_free(m);

	/* A target not in the map leads nothing. */
	m = load(5);
	cr_assert_eq(parse(m, WF_OP_READ, 3, mine, 4096, 0, 10, &p), WF_TGT_REJECT);
	cr_assert_eq(p.status, WF_WS_NOTPRIM);
	wf_tgt_map_free(m);
}

Test(target_req, malformed)
{
	struct wf_tgt_map *m = load(0);
	struct wf_tgt_parsed p;
	struct wf_req r = { .opcode = WF_OP_WRITE, .tag = 1, .volume = 3,
			    .epoch = 10, .length = 4096 };
	struct wf_req_hdr h;
	unsigned char raw[64];

	wf_req_encode(&r, &h);
	cr_assert_eq(wf_tgt_req_parse(&h, 63, &lim, m, &p), WF_TGT_MALFORMED);
	cr_assert_eq(wf_tgt_req_parse(NULL, 64, &lim, m, &p), WF_TGT_MALFORMED);
	memcpy(raw, &h, 64);
	raw[0] ^= 1;
	cr_assert_eq(wf_tgt_req_parse(raw, 64, &lim, m, &p), WF_TGT_MALFORMED);
	memcpy(raw, &h, 64);
	raw[3] = WF_OP_HELLO;
	cr_assert_eq(wf_tgt_req_parse(raw, 64, &lim, m, &p), WF_TGT_MALFORMED);
	memcpy(raw, &h, 64);
	raw[6] = 1;             /* reserved */
	cr_assert_eq(wf_tgt_req_parse(raw, 64, &lim, m, &p), WF_TGT_MALFORMED);
	wf_tgt_map_free(m);
}

/* Three targets, three replicas, min_size 2; target 2 down in epoch 11. */
static const char map3_text[] =
	"epoch = %u;\ncluster_id = 1;\nextent_size = 65536;\n"
	"targets = (\n"
	"  { id = 0; host = \"a\"; addr = \"127.0.0.1\"; port = 1; device = \"/d0\"; },\n"
	"  { id = 1; host = \"b\"; addr = \"127.0.0.1\"; port = 2; device = \"/d1\"; },\n"
	"  { id = 2; host = \"c\"; addr = \"127.0.0.1\"; port = 3; device = \"/d2\";"
	" state = \"%s\"; }\n);\n"
	"pools = ( { name = \"p\"; id = 1; replicas = 3; min_size = %u;"
	" failure_domain = \"device\"; pg_num = 8; } );\n"
	"volumes = ( { name = \"v\"; id = 3; size = \"1M\"; pool = \"p\"; } );\n";

static struct wf_tgt_map *load3(uint32_t self, unsigned epoch, const char *state2,
				unsigned min_size)
{
	char text[2048];
	struct wf_map map;
	struct wf_map_err merr;
	struct wf_tgt_map *m;
	char err[256];
	int n = snprintf(text, sizeof(text), map3_text, epoch, state2, min_size);

	cr_assert_eq(wf_map_load_buf(text, (size_t)n, "t", &map, &merr), 0, "%s",
		     merr.msg);
	cr_assert_eq(wf_tgt_map_build(&map, self, &m, err, sizeof(err)), 0, "%s", err);
	return m;
}

static int parse_repl(const struct wf_tgt_map *m, uint8_t op, uint64_t off,
		      struct wf_tgt_parsed *p)
{
	struct wf_req r = { .opcode = op, .tag = 1, .volume = 3, .offset = off,
			    .epoch = m->epoch, .length = op == WF_OP_FLUSH ? 0 : 4096,
			    .slot = 0, .flags = WF_REQ_REPL };
	struct wf_req_hdr h;

	if (op == WF_OP_FLUSH)
		r.offset = 0;
	if (op == WF_OP_READ) {
		r.buf.key = 1;
		r.buf.addr = 4096;
	}
	wf_req_encode(&r, &h);
	return wf_tgt_req_parse(&h, sizeof(h), &lim, m, p);
}

/* The primary learns the secondaries of a write; a forward is accepted by
 * a secondary only; writes need min_size members, reads do not. */
Test(target_req, replication)
{
	struct wf_tgt_map *m0 = load3(0, 10, "up,in", 2);
	struct wf_tgt_map *m1 = load3(1, 10, "up,in", 2);
	struct wf_tgt_map *m2 = load3(2, 10, "up,in", 2);
	struct wf_tgt_map *ms[3] = { m0, m1, m2 };
	struct wf_tgt_parsed p;
	struct wf_extent_loc loc;
	uint32_t prim, sec;

	cr_assert_eq(wf_place_extent(&m0->table, &m0->map, 0, 0, &loc), 0);
	cr_assert_eq(loc.n, 3);
	prim = loc.acting[0];
	sec = loc.acting[1];
	/* At the primary: the two others, in acting order. */
	cr_assert_eq(parse(ms[prim], WF_OP_WRITE, 3, 0, 4096, 0, 10, &p), WF_TGT_OK);
	cr_assert_eq(p.nsec, 2);
	cr_assert_eq(p.secondaries[0], loc.acting[1]);
	cr_assert_eq(p.secondaries[1], loc.acting[2]);
	cr_assert_eq(parse(ms[prim], WF_OP_DISCARD, 3, 0, 65536, 0, 10, &p), WF_TGT_OK);
	cr_assert_eq(p.nsec, 2);
	cr_assert_eq(parse(ms[prim], WF_OP_READ, 3, 0, 4096, 0, 10, &p), WF_TGT_OK);
	cr_assert_eq(p.nsec, 0, "reads are not forwarded");
	/* A forward: a secondary takes it, the primary does not. */
	cr_assert_eq(parse_repl(ms[sec], WF_OP_WRITE, 0, &p), WF_TGT_OK);
	cr_assert_eq(p.nsec, 0, "a forward is not forwarded again");
	cr_assert_eq(parse_repl(ms[prim], WF_OP_WRITE, 0, &p), WF_TGT_REJECT);
	cr_assert_eq(p.status, WF_WS_NOTPRIM);
	cr_assert_eq(p.reason, WF_TGT_R_REPL);
	/* Flushes are not forwarded (replicas are written FUA). */
	cr_assert_eq(parse_repl(ms[sec], WF_OP_FLUSH, 0, &p), WF_TGT_REJECT);
	cr_assert_eq(p.status, WF_WS_INVALID | WF_WS_DNR);
	/* The decoder refuses a forwarded READ. */
	cr_assert_eq(parse_repl(ms[sec], WF_OP_READ, 0, &p), WF_TGT_REJECT);
	cr_assert_eq(p.status, WF_WS_INVALID | WF_WS_DNR);
	/* A scrub's CSUM: a secondary answers it, the primary does not (it
	 * asks), and it is never forwarded on. */
	cr_assert_eq(parse_repl(ms[sec], WF_OP_CSUM, 0, &p), WF_TGT_OK);
	cr_assert_eq(p.nsec, 0);
	cr_assert_eq(parse_repl(ms[prim], WF_OP_CSUM, 0, &p), WF_TGT_REJECT);
	cr_assert_eq(p.status, WF_WS_NOTPRIM);
	for (int i = 0; i < 3; i++)
		wf_tgt_map_free(ms[i]);

	/* Target 2 down, min_size 3: two members are too few to write,
	 * enough to read.  min_size 2: writes go to the one secondary. */
	m0 = load3(0, 11, "down,in", 3);
	m1 = load3(1, 11, "down,in", 3);
	ms[0] = m0;
	ms[1] = m1;
	cr_assert_eq(wf_place_extent(&m0->table, &m0->map, 0, 0, &loc), 0);
	cr_assert_eq(loc.n, 2);
	prim = loc.acting[0];
	sec = loc.acting[1];            /* loc points into m0's table */
	cr_assert_eq(parse(ms[prim], WF_OP_WRITE, 3, 0, 4096, 0, 11, &p), WF_TGT_REJECT);
	cr_assert_eq(p.status, WF_WS_DEGRADED, "retryable: a member may return");
	cr_assert_eq(p.reason, WF_TGT_R_DEGRADED);
	cr_assert_eq(parse(ms[prim], WF_OP_READ, 3, 0, 4096, 0, 11, &p), WF_TGT_OK);
	wf_tgt_map_free(m0);
	wf_tgt_map_free(m1);
	m0 = load3(0, 11, "down,in", 2);
	m1 = load3(1, 11, "down,in", 2);
	ms[0] = m0;
	ms[1] = m1;
	cr_assert_eq(parse(ms[prim], WF_OP_WRITE, 3, 0, 4096, 0, 11, &p), WF_TGT_OK);
	cr_assert_eq(p.nsec, 1);
	cr_assert_eq(p.secondaries[0], sec);
	wf_tgt_map_free(m0);
	wf_tgt_map_free(m1);
}

/*
 * An epoch switch that changes one target's state derives the PG table
 * from the epoch in force (wf_tgt_map_load_next) and gets the table a full
 * build gives; a change of anything else builds it from scratch.
 */
Test(map, next_epoch_derives_the_table)
{
	struct wf_tgt_map *m0 = load(0), *m1, *full;
	struct wf_map next, again;
	struct wf_map_err merr;
	char path[] = "/tmp/weft-req-next-XXXXXX", err[256];
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(wf_map_copy(&next, &m0->map), 0);
	next.epoch++;
	next.targets[1].in = false;             /* target 1 out */
	cr_assert_eq(wf_map_save(&next, path, &merr), 0, "%s", merr.msg);
	wf_map_edit_free(&next);
	cr_assert_eq(wf_tgt_map_load_next(path, 0, m0, &m1, err, sizeof(err)), 0, "%s", err);
	cr_assert(m1->derived);
	cr_assert_lt(m1->derive.recomputed, m1->derive.scanned);
	cr_assert_eq(wf_map_load(path, &again, &merr), 0, "%s", merr.msg);
	cr_assert_eq(wf_tgt_map_build(&again, 0, &full, err, sizeof(err)), 0, "%s", err);
	for (uint32_t pg = 0; pg < full->table.pools[0].pg_num; pg++) {
		const uint32_t *a, *b;
		unsigned na = wf_pg_acting(&m1->table, 0, pg, &a);

		cr_assert_eq(wf_pg_acting(&full->table, 0, pg, &b), na);
		for (unsigned i = 0; i < na; i++)
			cr_assert_eq(a[i], b[i]);
	}
	wf_tgt_map_free(full);

	/* A new pool's pg_num: not a state change, so a full build. */
	cr_assert_eq(wf_map_copy(&next, &m1->map), 0);
	next.epoch++;
	next.pools[0].pg_num = 16;
	cr_assert_eq(wf_map_save(&next, path, &merr), 0, "%s", merr.msg);
	wf_map_edit_free(&next);
	cr_assert_eq(wf_tgt_map_load_next(path, 0, m1, &full, err, sizeof(err)), 0, "%s", err);
	cr_assert_not(full->derived);
	cr_assert_eq(full->table.pools[0].pg_num, 16);
	wf_tgt_map_free(full);
	wf_tgt_map_free(m1);
	wf_tgt_map_free(m0);
	unlink(path);
}
