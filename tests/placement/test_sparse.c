/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sparse algorithm's own properties (docs/placement.md): its shortcut
 * (a PG's high draws alone) gives exactly what every device drawing
 * gives; the map field is parsed, validated and written back; a map
 * without it keeps straw2.  The shared properties (movement, balance,
 * failure domains, weights, derive) run in the *_sparse builds of
 * test_placement, test_balance and test_derive.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/placement/gen.h"

static uint64_t rnd(uint64_t *x)
{
	*x = *x * 6364136223846793005ull + 1442695040888963407ull;
	return *x >> 33;
}

static void make_sparse(struct wf_map *m, uint32_t ppm)
{
	m->pools[0].algorithm = WF_ALGO_SPARSE;
	m->pools[0].sparse_ppm = ppm;
}

/* Every PG: the shortcut gives what the full evaluation gives. */
static void expect_shortcut_exact(const struct wf_map *m)
{
	struct wf_placer a, b;

	cr_assert_eq(wf_placer_init(&a, m), 0);
	cr_assert_eq(wf_placer_init(&b, m), 0);
	b.exhaustive = true;
	for (uint32_t pg = 0; pg < a.pools[0].pg_num; pg++) {
		uint32_t x[WF_MAX_REPLICAS], y[WF_MAX_REPLICAS];
		unsigned nx = wf_place_pg(&a, 0, pg, x), ny = wf_place_pg(&b, 0, pg, y);

		cr_assert_eq(nx, ny, "pg %u", pg);
		for (unsigned i = 0; i < nx; i++)
			cr_assert_eq(x[i], y[i], "pg %u slot %u: %u vs %u", pg, i, x[i], y[i]);
	}
	wf_placer_free(&a);
	wf_placer_free(&b);
}

Test(sparse, shortcut_equals_every_device_drawing)
{
	static const struct { uint32_t r, h, d; uint8_t fd; uint32_t ppm; bool rough; } c[] = {
		{ 4, 8, 4, WF_NODE_HOST, 93750, false },        /* 12 a PG */
		{ 4, 8, 4, WF_NODE_HOST, 20000, false },        /* 2.6 a PG: often short */
		{ 3, 4, 3, WF_NODE_RACK, 300000, true },
		{ 2, 5, 7, WF_NODE_DEVICE, 150000, true },
		{ 8, 16, 8, WF_NODE_HOST, 12000, true },
		{ 2, 2, 2, WF_NODE_RACK, 500000, false },       /* fewer domains than replicas */
	};
	uint64_t seed = 7;

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct wf_map m;

		gen_map(&m, c[i].r, c[i].h, c[i].d, 3, c[i].fd, 2048);
		make_sparse(&m, c[i].ppm);
		if (c[i].rough) {
			for (uint32_t t = 0; t < m.ntargets; t++) {
				m.targets[t].weight = WF_WEIGHT_ONE / 4 +
					(uint32_t)(rnd(&seed) % (2 * WF_WEIGHT_ONE));
				m.targets[t].in = rnd(&seed) % 9 != 0;
			}
			wf_map_reweigh(&m);
		}
		expect_shortcut_exact(&m);
		wf_map_edit_free(&m);
	}
}

/* A PG split (pg_num doubled) keeps the low PGs' draws: their sets. */
Test(sparse, pg_split_keeps_low_pgs)
{
	struct wf_map m;
	struct wf_placer a, b;

	gen_map(&m, 4, 8, 4, 3, WF_NODE_HOST, 1024);
	make_sparse(&m, 93750);
	cr_assert_eq(wf_placer_init(&a, &m), 0);
	m.pools[0].pg_num = 2048;
	cr_assert_eq(wf_placer_init(&b, &m), 0);
	for (uint32_t pg = 0; pg < 1024; pg++) {
		uint32_t x[WF_MAX_REPLICAS], y[WF_MAX_REPLICAS];

		cr_assert_eq(wf_place_pg(&a, 0, pg, x), wf_place_pg(&b, 0, pg, y));
		for (unsigned i = 0; i < 3; i++)
			cr_assert_eq(x[i], y[i], "pg %u", pg);
	}
	wf_placer_free(&a);
	wf_placer_free(&b);
	wf_map_edit_free(&m);
}

/* The two algorithms differ (else this test tests nothing). */
Test(sparse, differs_from_straw2)
{
	struct wf_map m;
	struct wf_placer a, b;
	uint32_t same = 0;

	gen_map(&m, 4, 8, 4, 3, WF_NODE_HOST, 1024);
	m.pools[0].algorithm = WF_ALGO_STRAW2;
	m.pools[0].sparse_ppm = 0;
	cr_assert_eq(wf_placer_init(&a, &m), 0);
	make_sparse(&m, 93750);
	cr_assert_eq(wf_placer_init(&b, &m), 0);
	for (uint32_t pg = 0; pg < 1024; pg++) {
		uint32_t x[WF_MAX_REPLICAS], y[WF_MAX_REPLICAS];

		wf_place_pg(&a, 0, pg, x);
		wf_place_pg(&b, 0, pg, y);
		same += x[0] == y[0];
	}
	cr_assert_lt(same, 100, "%u of 1024 primaries agree", same);
	wf_placer_free(&a);
	wf_placer_free(&b);
	wf_map_edit_free(&m);
}

static const char head[] =
	"epoch = 1;\ncluster_id = 1;\nextent_size = 65536;\n"
	"targets = (\n"
	"  { id = 0; host = \"a\"; addr = \"127.0.0.1\"; port = 1; device = \"/d0\"; },\n"
	"  { id = 1; host = \"b\"; addr = \"127.0.0.1\"; port = 2; device = \"/d1\"; },\n"
	"  { id = 2; host = \"c\"; addr = \"127.0.0.1\"; port = 3; device = \"/d2\"; }\n);\n";

static int load_pool(const char *pool, struct wf_map *m, struct wf_map_err *err)
{
	char buf[2048];
	int n = snprintf(buf, sizeof(buf), "%spools = ( { name = \"p\"; id = 1; replicas = 2;"
			 " pg_num = 64; %s } );\n", head, pool);

	return wf_map_load_buf(buf, (size_t)n, "t", m, err);
}

Test(sparse, map_field)
{
	struct wf_map m, again;
	struct wf_map_err err;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	/* Without the field: straw2, and the writer does not add it. */
	cr_assert_eq(load_pool("", &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m.pools[0].algorithm, WF_ALGO_STRAW2);
	f = open_memstream(&text, &len);
	cr_assert_eq(wf_map_write(&m, f), 0);
	fclose(f);
	cr_assert_null(strstr(text, "algorithm"), "%s", text);
	free(text);
	wf_map_free(&m);

	cr_assert_eq(load_pool("algorithm = \"straw2\";", &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m.pools[0].algorithm, WF_ALGO_STRAW2);
	wf_map_free(&m);

	/* Sparse: parsed, written back, reloaded the same. */
	cr_assert_eq(load_pool("algorithm = \"sparse\"; sparse_ppm = 4000;", &m, &err), 0,
		     "%s", err.msg);
	cr_assert_eq(m.pools[0].algorithm, WF_ALGO_SPARSE);
	cr_assert_eq(m.pools[0].sparse_ppm, 4000);
	f = open_memstream(&text, &len);
	cr_assert_eq(wf_map_write(&m, f), 0);
	fclose(f);
	cr_assert_not_null(strstr(text, "algorithm = \"sparse\"; sparse_ppm = 4000;"), "%s", text);
	cr_assert_eq(wf_map_load_buf(text, len, "w", &again, &err), 0, "%s", err.msg);
	cr_assert(wf_map_equal(&m, &again));
	free(text);
	wf_map_free(&again);
	wf_map_free(&m);

	/* Refused, with the field named. */
	cr_assert_eq(load_pool("algorithm = \"crush\";", &m, &err), -EINVAL);
	cr_assert_not_null(strstr(err.msg, "algorithm"), "%s", err.msg);
	cr_assert_eq(load_pool("algorithm = \"sparse\";", &m, &err), -EINVAL);
	cr_assert_not_null(strstr(err.msg, "sparse_ppm"), "%s", err.msg);
	cr_assert_eq(load_pool("algorithm = \"sparse\"; sparse_ppm = 0;", &m, &err), -EINVAL);
	cr_assert_eq(load_pool("algorithm = \"sparse\"; sparse_ppm = 500001;", &m, &err), -EINVAL);
	cr_assert_eq(load_pool("sparse_ppm = 100;", &m, &err), -EINVAL);
	cr_assert_not_null(strstr(err.msg, "sparse_ppm"), "%s", err.msg);
}
