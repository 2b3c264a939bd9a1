/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The per-epoch table at scale: whole-table digests that pin every PG's
 * set (not only the golden vectors' few), and wf_pg_table_derive() equal to
 * a full build under randomised changes of one to a few targets.  Built
 * twice, like test_placement: straw2, and sparse (WEFT_TEST_SPARSE).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "tests/placement/gen.h"
#include "tests/placement/golden.h"
#include "tests/placement/golden_sparse.h"

static uint64_t rnd(uint64_t *x)
{
	*x = *x * 6364136223846793005ull + 1442695040888963407ull;
	return *x >> 33;
}

/* XXH64 over (pg, member ids) of every PG of pool 0, from scratch. */
static uint64_t digest(const struct wf_map *m)
{
	struct wf_placer pl;
	XXH64_state_t *st = XXH64_createState();
	uint64_t h;

	cr_assert(st);
	cr_assert_eq(wf_placer_init(&pl, m), 0);
	XXH64_reset(st, 0);
	for (uint32_t pg = 0; pg < pl.pools[0].pg_num; pg++) {
		uint32_t set[WF_MAX_REPLICAS], rec[1 + WF_MAX_REPLICAS];
		unsigned n = wf_place_pg(&pl, 0, pg, set);

		rec[0] = pg | (uint32_t)n << 28;
		for (unsigned i = 0; i < n; i++)
			rec[1 + i] = m->targets[set[i]].id;
		XXH64_update(st, rec, (1 + n) * sizeof(*rec));
	}
	h = XXH64_digest(st);
	XXH64_freeState(st);
	wf_placer_free(&pl);
	return h;
}

/* Uneven weights (several per host), a few targets out, one at weight 0. */
static void roughen(struct wf_map *m, uint64_t seed)
{
	for (uint32_t t = 0; t < m->ntargets; t++) {
		m->targets[t].weight = WF_WEIGHT_ONE / 4 + (uint32_t)(rnd(&seed) % (2 * WF_WEIGHT_ONE));
		if (rnd(&seed) % 17 == 0)
			m->targets[t].in = false;
	}
	m->targets[m->ntargets / 2].weight = 0;
	wf_map_reweigh(m);
}

/*
 * Any change here is a placement format change (docs/placement.md): the
 * digests were taken before wf_place_pg() was made faster and must stay.
 */
Test(golden, whole_tables)
{
	static const struct { uint32_t r, h, d, pg_num; uint8_t fd; bool rough; uint64_t want; }
	cases[] = {
#ifndef WEFT_TEST_SPARSE
		{ 4, 8, 4, 4096, WF_NODE_HOST, false, GOLDEN_TABLE_0 },
		{ 3, 4, 3, 1024, WF_NODE_RACK, true, GOLDEN_TABLE_1 },
		{ 8, 16, 8, 4096, WF_NODE_HOST, true, GOLDEN_TABLE_2 },
		{ 2, 5, 7, 2048, WF_NODE_DEVICE, true, GOLDEN_TABLE_3 },
#else
		{ 4, 8, 4, 4096, WF_NODE_HOST, false, GOLDEN_SPARSE_TABLE_0 },
		{ 3, 4, 3, 1024, WF_NODE_RACK, true, GOLDEN_SPARSE_TABLE_1 },
		{ 8, 16, 8, 4096, WF_NODE_HOST, true, GOLDEN_SPARSE_TABLE_2 },
		{ 2, 5, 7, 2048, WF_NODE_DEVICE, true, GOLDEN_SPARSE_TABLE_3 },
#endif
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct wf_map m;
		uint64_t h;

		gen_map(&m, cases[i].r, cases[i].h, cases[i].d, 3, cases[i].fd, cases[i].pg_num);
		if (cases[i].rough)
			roughen(&m, 1000 + i);
		h = digest(&m);
		if (getenv("WEFT_PRINT_GOLDEN"))
			printf("#define GOLDEN_%sTABLE_%zu 0x%016llxull\n",
#ifdef WEFT_TEST_SPARSE
			       "SPARSE_",
#else
			       "",
#endif
			       i, (unsigned long long)h);
		cr_expect_eq(h, cases[i].want, "case %zu: 0x%016llx", i, (unsigned long long)h);
		wf_map_edit_free(&m);
	}
}

static void expect_same_table(const struct wf_pg_table *a, const struct wf_pg_table *b,
			      const char *what)
{
	cr_assert_eq(a->npools, b->npools);
	cr_assert_eq(a->noverrides_used, b->noverrides_used, "%s", what);
	cr_assert_eq(a->ntemps_used, b->ntemps_used, "%s", what);
	for (uint32_t p = 0; p < a->npools; p++) {
		const struct wf_pg_pool_table *x = &a->pools[p], *y = &b->pools[p];
		size_t n = (size_t)x->pg_num * x->stride * sizeof(*x->acting);

		cr_assert_eq(x->pg_num, y->pg_num);
		cr_assert_eq(x->stride, y->stride);
		for (uint32_t pg = 0; pg < x->pg_num; pg++) {
			cr_assert_eq(x->n[pg], y->n[pg], "%s: pg %u", what, pg);
			cr_assert_eq(x->nup[pg], y->nup[pg], "%s: pg %u", what, pg);
			cr_assert_eq(x->placed[pg], y->placed[pg], "%s: pg %u", what, pg);
		}
		cr_assert_eq(memcmp(x->acting, y->acting, n), 0, "%s: acting", what);
		cr_assert_eq(memcmp(x->up, y->up, n), 0, "%s: up", what);
	}
}

/* A few overrides (valid or not) and pins, with ids drawn at random. */
static void random_pins(struct wf_map *m, uint64_t *seed)
{
	uint32_t pg_num = m->pools[0].pg_num, R = m->pools[0].replicas;
	uint32_t nov = (uint32_t)(rnd(seed) % 12), ntm = (uint32_t)(rnd(seed) % 6);

	free(m->overrides);
	free(m->temps);
	m->overrides = calloc(nov + 1, sizeof(*m->overrides));
	m->temps = calloc(ntm + 1, sizeof(*m->temps));
	cr_assert(m->overrides && m->temps);
	for (uint32_t i = 0; i < nov + ntm; i++) {
		struct wf_override *o = i < nov ? &m->overrides[i] : &m->temps[i - nov];

		o->pool = 0;
		o->pg = (uint32_t)(rnd(seed) % pg_num);
		o->n = (uint8_t)(i < nov ? R : 1 + rnd(seed) % R);
		for (unsigned k = 0; k < o->n; k++)
			o->target[k] = m->targets[rnd(seed) % m->ntargets].id;
	}
	m->noverrides = nov;
	m->ntemps = ntm;
	/* The loader keeps them sorted by (pool, pg); derive does not care. */
}

/* One random change of target t: weight up / down / zero, in, out, up, down. */
static void random_change(struct wf_map *m, uint32_t t, uint64_t *seed)
{
	struct wf_target *x = &m->targets[t];

	switch (rnd(seed) % 7) {
	case 0: x->weight = x->weight + 1 + (uint32_t)(rnd(seed) % WF_WEIGHT_ONE); break;
	case 1: x->weight = x->weight / 2; break;
	case 2: x->weight = 0; break;
	case 3: x->in = true; if (!x->weight) x->weight = WF_WEIGHT_ONE; break;
	case 4: x->in = false; break;
	case 5: x->up = !x->up; break;
	default: x->weight = WF_WEIGHT_ONE / 3 + (uint32_t)(rnd(seed) % (4 * WF_WEIGHT_ONE)); break;
	}
	wf_map_reweigh(m);
}

Test(derive, equals_full_build_randomised)
{
	static const struct { uint32_t r, h, d, pg_num; uint8_t R, fd; } shapes[] = {
		{ 4, 8, 4, 1024, 3, WF_NODE_HOST },
		{ 3, 4, 3, 512, 3, WF_NODE_RACK },
		{ 2, 3, 5, 512, 2, WF_NODE_DEVICE },
		{ 2, 2, 2, 256, 3, WF_NODE_RACK },      /* fewer domains than replicas */
	};
	uint64_t seed = 42, recomputed = 0, scanned = 0;

	for (int iter = 0; iter < 240; iter++) {
		const __typeof__(shapes[0]) *s = &shapes[iter % 4];
		struct wf_map m0, m1;
		struct placed a, b;
		struct wf_placer pl1;
		struct wf_pg_table d;
		struct wf_pg_derive st;
		uint32_t nch = 1 + (uint32_t)(iter % 5 == 4 ? rnd(&seed) % 4 : 0);
		char what[64];

		gen_map(&m0, s->r, s->h, s->d, s->R, s->fd, s->pg_num);
		if ((iter / 4) % 2)             /* else equal weights: draws decide */
			roughen(&m0, rnd(&seed));
		for (uint32_t t = 0; t < m0.ntargets; t++) {
			if (rnd(&seed) % 13 == 0)
				m0.targets[t].up = false;
			if (rnd(&seed) % 11 == 0)
				m0.targets[t].in = false;
		}
		if (iter % 3)
			random_pins(&m0, &seed);
		placed_init(&a, &m0);
		cr_assert_eq(wf_map_copy(&m1, &m0), 0);
		for (uint32_t i = 0; i < nch; i++)
			random_change(&m1, (uint32_t)(rnd(&seed) % m1.ntargets), &seed);
		m1.epoch++;
		placed_init(&b, &m1);
		cr_assert_eq(wf_placer_init(&pl1, &m1), 0);
		cr_assert_eq(wf_pg_table_derive(&d, &a.t, &a.pl, &pl1, &st), 0);
		cr_assert_not(st.full, "iter %d", iter);
		cr_assert_eq(d.epoch, m1.epoch);
		snprintf(what, sizeof(what), "iter %d", iter);
		expect_same_table(&d, &b.t, what);
		recomputed += st.recomputed;
		scanned += st.scanned;
		wf_pg_table_free(&d);
		wf_placer_free(&pl1);
		placed_free(&a);
		placed_free(&b);
		wf_map_edit_free(&m0);
		wf_map_edit_free(&m1);
	}
	/* It must actually be incremental: a small part of the PGs. */
	cr_expect_lt(recomputed * 4, scanned, "recomputed %llu of %llu",
		     (unsigned long long)recomputed, (unsigned long long)scanned);
}

Test(derive, other_changes_build_from_scratch)
{
	struct wf_map m0, m1;
	struct placed a, b;
	struct wf_placer pl1;
	struct wf_pg_table d;
	struct wf_pg_derive st;

	gen_map(&m0, 4, 8, 4, 3, WF_NODE_HOST, 1024);
	placed_init(&a, &m0);
	cr_assert_eq(wf_map_copy(&m1, &m0), 0);
	cr_assert_geq(wf_map_add_host(&m1, 1, "new", 4, WF_WEIGHT_ONE), 0);
	placed_init(&b, &m1);
	cr_assert_eq(wf_placer_init(&pl1, &m1), 0);
	cr_assert_eq(wf_pg_table_derive(&d, &a.t, &a.pl, &pl1, &st), 0);
	cr_assert(st.full);
	expect_same_table(&d, &b.t, "add host");
	wf_pg_table_free(&d);
	wf_placer_free(&pl1);
	placed_free(&b);
	wf_map_edit_free(&m1);

	/* 65 targets changed: more than derive tracks. */
	cr_assert_eq(wf_map_copy(&m1, &m0), 0);
	for (uint32_t t = 0; t < 65; t++)
		m1.targets[t].weight += 1;
	placed_init(&b, &m1);
	cr_assert_eq(wf_placer_init(&pl1, &m1), 0);
	cr_assert_eq(wf_pg_table_derive(&d, &a.t, &a.pl, &pl1, &st), 0);
	cr_assert(st.full);
	expect_same_table(&d, &b.t, "65 changed");
	wf_pg_table_free(&d);
	wf_placer_free(&pl1);
	placed_free(&b);
	wf_map_edit_free(&m1);
	placed_free(&a);
	wf_map_edit_free(&m0);
}
