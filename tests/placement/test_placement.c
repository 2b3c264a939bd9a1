/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Placement properties on generated maps: golden vectors, one replica per
 * failure domain, out targets never chosen, minimal movement on a weight
 * or state change and on adding a host, independence from map order,
 * table == from-scratch, overrides, extent location.  Built twice: as is
 * (straw2) and with WEFT_TEST_SPARSE, where every generated map's pool
 * uses the sparse algorithm (tests/placement/gen.c).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/placement/gen.h"
#include "tests/placement/golden.h"

#define PG_NUM 4096

/* A map with uneven weights: 3 racks x 4 hosts x 3 devices. */
static void gen_weighted(struct wf_map *m, uint8_t fd)
{
	gen_map(m, 3, 4, 3, 3, fd, 1024);
	for (uint32_t t = 0; t < m->ntargets; t++)
		m->targets[t].weight = WF_WEIGHT_ONE / 2 + (m->targets[t].id % 5) * 24248;
	wf_map_reweigh(m);
}

static __attribute__((unused)) unsigned place_ids(const struct wf_placer *pl, uint32_t pg, uint32_t *ids)
{
	uint32_t set[WF_MAX_REPLICAS];
	unsigned n = wf_place_pg(pl, 0, pg, set);

	for (unsigned i = 0; i < n; i++)
		ids[i] = pl->map->targets[set[i]].id;
	return n;
}

/* ---- golden vectors: any change here is a placement format change ---- */

Test(golden, pg_of)
{
	static const uint32_t want[8] = { GOLDEN_PG_OF };

	for (uint32_t e = 0; e < 8; e++)
		cr_expect_eq(wf_pg_of(1, e, PG_NUM), want[e], "extent %u: %u", e,
			     wf_pg_of(1, e, PG_NUM));
	cr_expect_eq(wf_pg_of(0xdeadbeefcafeull, 123456789, 1u << 20), GOLDEN_PG_BIG);
}

#ifndef WEFT_TEST_SPARSE     /* straw2's vectors; sparse has its own (test_derive) */
Test(golden, rack128_host_domain)
{
	static const uint32_t pgs[8] = { 0, 1, 2, 3, 100, 1000, 2048, 4095 };
	static const uint32_t want[8][3] = { GOLDEN_RACK128 };
	struct wf_map m;
	struct wf_placer pl;
	uint32_t ids[WF_MAX_REPLICAS];

	gen_map(&m, 4, 8, 4, 3, WF_NODE_HOST, PG_NUM);
	cr_assert_eq(wf_placer_init(&pl, &m), 0);
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(place_ids(&pl, pgs[i], ids), 3);
		for (int k = 0; k < 3; k++)
			cr_expect_eq(ids[k], want[i][k], "pg %u slot %d: %u", pgs[i], k, ids[k]);
	}
	wf_placer_free(&pl);
	wf_map_edit_free(&m);
}

Test(golden, weighted_rack_domain)
{
	static const uint32_t want[6][3] = { GOLDEN_WEIGHTED };
	struct wf_map m;
	struct wf_placer pl;
	uint32_t ids[WF_MAX_REPLICAS];

	gen_weighted(&m, WF_NODE_RACK);
	cr_assert_eq(wf_placer_init(&pl, &m), 0);
	for (uint32_t pg = 0; pg < 6; pg++) {
		cr_assert_eq(place_ids(&pl, pg * 7, ids), 3);
		for (int k = 0; k < 3; k++)
			cr_expect_eq(ids[k], want[pg][k], "pg %u slot %d: %u", pg * 7, k, ids[k]);
	}
	wf_placer_free(&pl);
	wf_map_edit_free(&m);
}

/* Prints the vectors above (run with --filter 'golden/print'). */
Test(golden_print, print)
{
	struct wf_map m;
	struct wf_placer pl;
	uint32_t ids[WF_MAX_REPLICAS];
	static const uint32_t pgs[8] = { 0, 1, 2, 3, 100, 1000, 2048, 4095 };

	if (!getenv("WEFT_GOLDEN_PRINT"))
		return;
	printf("#define GOLDEN_PG_OF");
	for (uint32_t e = 0; e < 8; e++)
		printf(" %u,", wf_pg_of(1, e, PG_NUM));
	printf("\n#define GOLDEN_PG_BIG %u\n", wf_pg_of(0xdeadbeefcafeull, 123456789, 1u << 20));
	gen_map(&m, 4, 8, 4, 3, WF_NODE_HOST, PG_NUM);
	cr_assert_eq(wf_placer_init(&pl, &m), 0);
	printf("#define GOLDEN_RACK128");
	for (int i = 0; i < 8; i++) {
		place_ids(&pl, pgs[i], ids);
		printf(" { %u, %u, %u },", ids[0], ids[1], ids[2]);
	}
	printf("\n");
	wf_placer_free(&pl);
	wf_map_edit_free(&m);
	gen_weighted(&m, WF_NODE_RACK);
	cr_assert_eq(wf_placer_init(&pl, &m), 0);
	printf("#define GOLDEN_WEIGHTED");
	for (uint32_t pg = 0; pg < 6; pg++) {
		place_ids(&pl, pg * 7, ids);
		printf(" { %u, %u, %u },", ids[0], ids[1], ids[2]);
	}
	printf("\n");
	wf_placer_free(&pl);
	wf_map_edit_free(&m);
}
#endif

/* ---- structural properties ---- */

static void check_domains(const struct wf_map *m, uint8_t fd, unsigned want_n)
{
	struct placed p;

	placed_init(&p, m);
	for (uint32_t pg = 0; pg < p.t.pools[0].pg_num; pg++) {
		const uint32_t *a;
		unsigned n = wf_pg_acting(&p.t, 0, pg, &a);

		cr_assert_eq(n, want_n, "pg %u has %u members", pg, n);
		for (unsigned i = 0; i < n; i++) {
			cr_assert(m->targets[a[i]].in && m->targets[a[i]].weight > 0);
			for (unsigned j = 0; j < i; j++) {
				int32_t x = (int32_t)m->targets[a[i]].node;
				int32_t y = (int32_t)m->targets[a[j]].node;

				/* climb to the failure domain type */
				while (m->nodes[x].type < fd)
					x = m->nodes[x].parent;
				while (m->nodes[y].type < fd)
					y = m->nodes[y].parent;
				cr_assert_neq(x, y, "pg %u: members %u and %u share a domain",
					      pg, i, j);
			}
		}
	}
	placed_free(&p);
}

Test(props, one_replica_per_failure_domain)
{
	struct wf_map m;

	for (uint8_t fd = WF_NODE_DEVICE; fd <= WF_NODE_RACK; fd++) {
		gen_map(&m, 4, 8, 4, 3, fd, PG_NUM);
		check_domains(&m, fd, 3);
		wf_map_edit_free(&m);
		gen_weighted(&m, fd);
		check_domains(&m, fd, 3);
		wf_map_edit_free(&m);
	}
	/* Fewer domains than replicas: as many as there are, never two in one. */
	gen_map(&m, 2, 2, 2, 3, WF_NODE_RACK, 64);
	check_domains(&m, WF_NODE_RACK, 2);
	wf_map_edit_free(&m);
}

Test(props, out_targets_never_chosen)
{
	struct wf_map m;
	struct placed p;

	gen_map(&m, 4, 8, 4, 3, WF_NODE_HOST, PG_NUM);
	for (uint32_t t = 0; t < m.ntargets; t += 9)
		m.targets[t].in = false;
	m.targets[1].weight = 0;
	m.targets[50].weight = 0;
	/* A whole host out. */
	for (uint32_t t = 64; t < 68; t++)
		m.targets[t].in = false;
	check_domains(&m, WF_NODE_HOST, 3);
	placed_init(&p, &m);
	for (uint32_t pg = 0; pg < PG_NUM; pg++) {
		const uint32_t *a;
		unsigned n = wf_pg_acting(&p.t, 0, pg, &a);

		for (unsigned i = 0; i < n; i++)
			cr_assert(m.targets[a[i]].in && m.targets[a[i]].weight,
				  "pg %u holds target %u", pg, m.targets[a[i]].id);
	}
	placed_free(&p);
	wf_map_edit_free(&m);
}

Test(props, down_targets_keep_their_place)
{
	struct wf_map m;
	struct placed up, down;
	uint32_t victim = 17, seen = 0;

	gen_map(&m, 4, 8, 4, 3, WF_NODE_HOST, PG_NUM);
	placed_init(&up, &m);
	m.targets[victim].up = false;
	placed_init(&down, &m);
	for (uint32_t pg = 0; pg < PG_NUM; pg++) {
		const uint32_t *a, *b;
		unsigned na = wf_pg_acting(&up.t, 0, pg, &a);
		unsigned nb = wf_pg_acting(&down.t, 0, pg, &b), j = 0;

		cr_assert_eq(down.t.pools[0].placed[pg], 3);
		/* b is a without the down target, order kept, nothing added. */
		for (unsigned i = 0; i < na; i++) {
			if (a[i] == victim)
				continue;
			cr_assert_eq(a[i], b[j++]);
		}
		cr_assert_eq(j, nb);
		seen += na != nb;
	}
	cr_assert_gt(seen, 0);
	placed_free(&up);
	placed_free(&down);
	wf_map_edit_free(&m);
}

/*
 * Change target idx's weight to w (or take it out): every PG changes at
 * most one member, and the change always involves idx.
 */
static void check_single_change(uint32_t idx, uint32_t w, bool out)
{
	struct wf_map m;
	struct placed a, b;
	uint32_t changed = 0;

	gen_weighted(&m, WF_NODE_HOST);
	placed_init(&a, &m);
	uint32_t old_w = m.targets[idx].weight, id = m.targets[idx].id;

	m.targets[idx].weight = w;
	m.targets[idx].in = !out;
	wf_map_reweigh(&m);
	placed_init(&b, &m);
	for (uint32_t pg = 0; pg < a.t.pools[0].pg_num; pg++) {
		uint32_t x[WF_MAX_REPLICAS], y[WF_MAX_REPLICAS], gone = UINT32_MAX, came = UINT32_MAX;
		unsigned nx = set_ids(&a, 0, pg, x), ny = set_ids(&b, 0, pg, y), diff = 0;

		cr_assert_eq(nx, ny);
		for (unsigned i = 0; i < nx; i++) {
			bool in_y = false, in_x = false;

			for (unsigned j = 0; j < ny; j++) {
				in_y |= x[i] == y[j];
				in_x |= y[i] == x[j];
			}
			if (!in_y) {
				gone = x[i];
				diff++;
			}
			if (!in_x)
				came = y[i];
		}
		cr_assert_leq(diff, 1, "pg %u changed %u members", pg, diff);
		if (!diff)
			continue;
		changed++;
		if (out || w < old_w)
			cr_assert_eq(gone, id, "pg %u lost %u, not the lighter %u", pg, gone, id);
		else
			cr_assert_eq(came, id, "pg %u gained %u, not the heavier %u", pg, came, id);
	}
	cr_assert_gt(changed, 0);
	placed_free(&a);
	placed_free(&b);
	wf_map_edit_free(&m);
}

Test(props, weight_down_moves_only_from_that_device)
{
	check_single_change(7, WF_WEIGHT_ONE / 3, false);
}

Test(props, weight_up_moves_only_onto_that_device)
{
	check_single_change(20, 3 * WF_WEIGHT_ONE, false);
}

Test(props, weight_zero_moves_only_its_pgs)
{
	check_single_change(30, 0, false);
}

Test(props, out_moves_only_its_pgs)
{
	check_single_change(11, WF_WEIGHT_ONE, true);
}

Test(props, add_host_moves_only_onto_new_host)
{
	struct wf_map m;
	struct placed a, b;
	uint32_t moved = 0, total = 0;
	int host;

	gen_map(&m, 4, 8, 4, 3, WF_NODE_HOST, PG_NUM);
	placed_init(&a, &m);
	host = wf_map_add_host(&m, 2, "newhost", 4, WF_WEIGHT_ONE);
	cr_assert_geq(host, 0);
	placed_init(&b, &m);
	for (uint32_t pg = 0; pg < PG_NUM; pg++) {
		uint32_t x[WF_MAX_REPLICAS], y[WF_MAX_REPLICAS];
		unsigned nx = set_ids(&a, 0, pg, x), ny = set_ids(&b, 0, pg, y), diff = 0;

		cr_assert_eq(nx, ny);
		for (unsigned i = 0; i < ny; i++) {
			bool old = false;

			for (unsigned j = 0; j < nx; j++)
				old |= y[i] == x[j];
			if (!old) {
				cr_assert_geq(y[i], 128, "pg %u gained old target %u", pg, y[i]);
				diff++;
			}
		}
		cr_assert_leq(diff, 1);
		moved += diff;
		total += ny;
	}
	/* The new host takes about its share, 4/132 of the replicas. */
	cr_assert_gt(moved, total * 4 / 132 * 8 / 10);
	cr_assert_lt(moved, total * 4 / 132 * 12 / 10);
	placed_free(&a);
	placed_free(&b);
	wf_map_edit_free(&m);
}

Test(props, independent_of_map_order)
{
	struct wf_map m, s;
	struct placed a, b;

	for (int k = 0; k < 2; k++) {
		if (k == 0)
			gen_map(&m, 4, 8, 4, 3, WF_NODE_HOST, 1024);
		else
			gen_weighted(&m, WF_NODE_RACK);
		gen_shuffle(&s, &m, 42 + k);
		placed_init(&a, &m);
		placed_init(&b, &s);
		for (uint32_t pg = 0; pg < a.t.pools[0].pg_num; pg++) {
			const uint32_t *x, *y;
			unsigned nx = wf_pg_acting(&a.t, 0, pg, &x);
			unsigned ny = wf_pg_acting(&b.t, 0, pg, &y);

			cr_assert_eq(nx, ny);
			for (unsigned i = 0; i < nx; i++)
				cr_assert_eq(m.targets[x[i]].id, s.targets[y[i]].id,
					     "pg %u slot %u", pg, i);
		}
		placed_free(&a);
		placed_free(&b);
		wf_map_edit_free(&s);
		wf_map_edit_free(&m);
	}
}

Test(props, deterministic_and_table_equals_scratch)
{
	struct wf_map m;
	struct placed a, b;

	gen_weighted(&m, WF_NODE_HOST);
	placed_init(&a, &m);
	placed_init(&b, &m);
	for (uint32_t pg = 0; pg < a.t.pools[0].pg_num; pg++) {
		uint32_t set[WF_MAX_REPLICAS], again[WF_MAX_REPLICAS];
		const uint32_t *x, *y;
		unsigned n = wf_place_pg(&a.pl, 0, pg, set);

		cr_assert_eq(wf_place_pg(&a.pl, 0, pg, again), n);
		cr_assert_eq(wf_pg_acting(&a.t, 0, pg, &x), n);
		cr_assert_eq(wf_pg_acting(&b.t, 0, pg, &y), n);
		for (unsigned i = 0; i < n; i++) {
			cr_assert_eq(set[i], again[i]);
			cr_assert_eq(set[i], x[i]);
			cr_assert_eq(x[i], y[i]);
		}
		for (unsigned i = n; i < a.t.pools[0].stride; i++)
			cr_assert_eq(x[i], WF_TARGET_NONE);
	}
	placed_free(&a);
	placed_free(&b);
	wf_map_edit_free(&m);
}

/* ---- overrides ---- */

static void set_override(struct wf_override *o, uint32_t pool, uint32_t pg, uint8_t n,
			 uint32_t a, uint32_t b, uint32_t c)
{
	memset(o, 0, sizeof(*o));
	o->pool = pool;
	o->pg = pg;
	o->n = n;
	o->target[0] = a;
	o->target[1] = b;
	o->target[2] = c;
}

Test(overrides, honoured_and_invalid_ignored)
{
	struct wf_map m;
	struct placed base, p;
	struct wf_override *o;

	gen_map(&m, 4, 8, 4, 3, WF_NODE_HOST, PG_NUM);
	placed_init(&base, &m);
	m.targets[tidx(&m, 77)].in = false;
	free(m.overrides);
	m.overrides = o = calloc(10, sizeof(*o));
	m.noverrides = 10;
	/* hosts are 4 consecutive ids: 0-3, 4-7, ... */
	set_override(&o[0], 0, 5, 3, 0, 4, 8);          /* valid */
	set_override(&o[1], 0, 5, 3, 12, 16, 20);       /* second for pg 5: ignored */
	set_override(&o[2], 0, 6, 3, 0, 1, 8);          /* same host twice */
	set_override(&o[3], 0, 7, 3, 0, 0, 8);          /* same target twice */
	set_override(&o[4], 0, 8, 3, 0, 4, 77);         /* target out */
	set_override(&o[5], 0, 9, 3, 0, 4, 999);        /* unknown id */
	set_override(&o[6], 0, 10, 2, 0, 4, 8);         /* wrong replica count */
	set_override(&o[7], 0, PG_NUM, 3, 0, 4, 8);     /* pg out of range */
	set_override(&o[8], 3, 11, 3, 0, 4, 8);         /* no such pool */
	set_override(&o[9], 0, 12, 3, 100, 40, 8);      /* valid, other order */
	placed_init(&p, &m);
	cr_assert_eq(p.t.noverrides_used, 2);
	for (uint32_t pg = 0; pg < PG_NUM; pg++) {
		const uint32_t *x, *y;
		unsigned n = wf_pg_acting(&p.t, 0, pg, &x);
		bool ov;
		uint32_t fin[WF_MAX_REPLICAS];

		cr_assert_eq(n, 3);
		cr_assert_eq(wf_place_pg_final(&p.pl, 0, pg, fin, &ov), 3);
		for (unsigned i = 0; i < 3; i++)
			cr_assert_eq(fin[i], x[i]);
		if (pg == 5) {
			cr_assert(ov);
			cr_assert_eq(m.targets[x[0]].id, 0);
			cr_assert_eq(m.targets[x[1]].id, 4);
			cr_assert_eq(m.targets[x[2]].id, 8);
		} else if (pg == 12) {
			cr_assert(ov);
			cr_assert_eq(m.targets[x[0]].id, 100);
			cr_assert_eq(m.targets[x[1]].id, 40);
			cr_assert_eq(m.targets[x[2]].id, 8);
		} else {
			uint32_t set[WF_MAX_REPLICAS];

			cr_assert_not(ov);
			wf_place_pg(&p.pl, 0, pg, set);
			for (unsigned i = 0; i < 3; i++)
				cr_assert_eq(x[i], set[i], "pg %u", pg);
			/* and unchanged from the map without overrides unless 77 was in it */
			wf_pg_acting(&base.t, 0, pg, &y);
			bool had77 = false;

			for (unsigned i = 0; i < 3; i++)
				had77 |= base.pl.map->targets[y[i]].id == 77;
			if (!had77)
				for (unsigned i = 0; i < 3; i++)
					cr_assert_eq(x[i], y[i]);
		}
	}
	placed_free(&p);
	placed_free(&base);
	wf_map_edit_free(&m);
}

/* ---- extents ---- */

Test(extent, locate)
{
	struct wf_map m;
	struct placed p;
	struct wf_extent_loc loc;
	uint64_t es;

	gen_map(&m, 4, 8, 4, 3, WF_NODE_HOST, PG_NUM);
	placed_init(&p, &m);
	es = m.extent_size;
	cr_assert_eq(wf_place_extent(&p.t, &m, 0, 5 * es + 17, &loc), 0);
	cr_assert_eq(loc.extent, 5);
	cr_assert_eq(loc.pool, 0);
	cr_assert_eq(loc.pg, wf_pg_of(m.volumes[0].id, 5, PG_NUM));
	cr_assert_eq(loc.n, 3);
	const uint32_t *a;

	cr_assert_eq(wf_pg_acting(&p.t, 0, loc.pg, &a), 3);
	cr_assert_eq(loc.acting, a);
	cr_assert_eq(wf_place_extent(&p.t, &m, 0, m.volumes[0].size - 1, &loc), 0);
	cr_assert_eq(loc.extent, m.volumes[0].size / es - 1);
	cr_assert_eq(wf_place_extent(&p.t, &m, 0, m.volumes[0].size, &loc), -ERANGE);
	cr_assert_eq(wf_place_extent(&p.t, &m, 1, 0, &loc), -EINVAL);
	/* PGs spread: 64Ki extents hit every one of 4096 PGs. */
	uint8_t *hit = calloc(PG_NUM, 1);
	uint32_t n = 0;

	for (uint64_t e = 0; e < 65536; e++)
		hit[wf_pg_of(m.volumes[0].id, e, PG_NUM)] = 1;
	for (uint32_t pg = 0; pg < PG_NUM; pg++)
		n += hit[pg];
	cr_assert_eq(n, PG_NUM);
	free(hit);
	placed_free(&p);
	wf_map_edit_free(&m);
}

/* ---- the checked-in maps, through the loader ---- */

static __attribute__((unused)) bool load_conf(const char *name, struct wf_map *m)
{
	const char *src = getenv("WEFT_SRC");
	char path[512];
	struct wf_map_err err;

	cr_assert(src, "WEFT_SRC not set (run through ctest)");
	snprintf(path, sizeof(path), "%s/conf/%s", src, name);
	cr_assert_eq(wf_map_load(path, m, &err), 0, "%s", err.msg);
	return true;
}

#ifndef WEFT_TEST_SPARSE     /* the files are straw2 maps */
Test(conf, rack128_equals_generated)
{
	struct wf_map f, g;
	struct placed a, b;

	load_conf("rack128.conf", &f);
	gen_map(&g, 4, 8, 4, 3, WF_NODE_HOST, PG_NUM);
	cr_assert_eq(f.pools[0].id, g.pools[0].id);
	placed_init(&a, &f);
	placed_init(&b, &g);
	for (uint32_t pg = 0; pg < PG_NUM; pg++) {
		const uint32_t *x, *y;
		unsigned n = wf_pg_acting(&a.t, 0, pg, &x);

		cr_assert_eq(wf_pg_acting(&b.t, 0, pg, &y), n);
		for (unsigned i = 0; i < n; i++)
			cr_assert_eq(f.targets[x[i]].id, g.targets[y[i]].id);
	}
	placed_free(&a);
	placed_free(&b);
	wf_map_edit_free(&g);
	wf_map_free(&f);
}

Test(conf, local_device_domain)
{
	struct wf_map f;
	struct placed a;

	load_conf("local.conf", &f);
	placed_init(&a, &f);
	for (uint32_t p = 0; p < f.npools; p++) {
		for (uint32_t pg = 0; pg < f.pools[p].pg_num; pg++) {
			const uint32_t *x;
			unsigned n = wf_pg_acting(&a.t, p, pg, &x);

			cr_assert_eq(n, f.pools[p].replicas);
			for (unsigned i = 0; i < n; i++)
				for (unsigned j = 0; j < i; j++)
					cr_assert_neq(x[i], x[j]);
		}
	}
	placed_free(&a);
	wf_map_free(&f);
}
#endif
