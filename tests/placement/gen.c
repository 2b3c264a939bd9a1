/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tests/placement/gen.h"

void gen_map(struct wf_map *m, uint32_t racks, uint32_t hosts, uint32_t devs,
	     uint8_t replicas, uint8_t fd, uint32_t pg_num)
{
	struct wf_synth s = {
		.racks = racks, .hosts_per_rack = hosts, .devs_per_host = devs,
		.weight = WF_WEIGHT_ONE, .replicas = replicas, .failure_domain = fd,
		.pg_num = pg_num,
	};

#ifdef WEFT_TEST_SPARSE
	/* The same tests on the sparse algorithm: about 16 high draws a PG. */
	uint64_t ppm = 16000000ull / (racks * hosts * devs);

	s.algorithm = WF_ALGO_SPARSE;
	s.sparse_ppm = (uint32_t)(ppm > WF_SPARSE_PPM_MAX ? WF_SPARSE_PPM_MAX : ppm);
#endif

	cr_assert_eq(wf_map_synth(m, &s), 0);
}

static uint64_t rnd(uint64_t *x)
{
	*x = *x * 6364136223846793005ull + 1442695040888963407ull;
	return *x >> 33;
}

void gen_shuffle(struct wf_map *dst, const struct wf_map *src, uint64_t seed)
{
	uint32_t nn = src->nnodes, nt = src->ntargets;
	uint32_t *np = malloc(nn * sizeof(*np)), *tp = malloc(nt * sizeof(*tp));
	uint32_t c = 0;

	cr_assert(np && tp);
	cr_assert_eq(wf_map_copy(dst, src), 0);
	/* np[old] = new node index (root stays 0), tp[old] = new target index. */
	for (uint32_t i = 0; i < nn; i++)
		np[i] = i;
	for (uint32_t i = nn - 1; i > 1; i--) {
		uint32_t j = 1 + (uint32_t)(rnd(&seed) % i), x = np[i];

		np[i] = np[j];
		np[j] = x;
	}
	for (uint32_t i = 0; i < nt; i++)
		tp[i] = i;
	for (uint32_t i = nt - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(rnd(&seed) % (i + 1)), x = tp[i];

		tp[i] = tp[j];
		tp[j] = x;
	}
	for (uint32_t i = 0; i < nn; i++) {
		struct wf_node n = src->nodes[i];

		if (n.parent >= 0)
			n.parent = (int32_t)np[n.parent];
		if (n.type == WF_NODE_DEVICE)
			n.target = tp[n.target];
		dst->nodes[np[i]] = n;
	}
	for (uint32_t i = 0; i < nt; i++) {
		struct wf_target t = src->targets[i];

		t.node = np[t.node];
		dst->targets[tp[i]] = t;
	}
	/* Children in reverse order too, contiguous per new parent. */
	for (uint32_t i = 0; i < nn; i++) {
		const struct wf_node *on = NULL;

		for (uint32_t k = 0; k < nn; k++)
			if (np[k] == i)
				on = &src->nodes[k];
		dst->nodes[i].first_child = c;
		for (uint32_t k = on->nchild; k-- > 0;)
			dst->child[c++] = np[src->child[on->first_child + k]];
	}
	free(np);
	free(tp);
}

void placed_init(struct placed *p, const struct wf_map *m)
{
	cr_assert_eq(wf_placer_init(&p->pl, m), 0);
	cr_assert_eq(wf_pg_table_build(&p->t, &p->pl), 0);
}

void placed_free(struct placed *p)
{
	wf_pg_table_free(&p->t);
	wf_placer_free(&p->pl);
}

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

unsigned set_ids(const struct placed *p, uint32_t pool, uint32_t pg, uint32_t *ids)
{
	const uint32_t *a;
	unsigned n = wf_pg_acting(&p->t, pool, pg, &a);

	for (unsigned i = 0; i < n; i++)
		ids[i] = p->pl.map->targets[a[i]].id;
	qsort(ids, n, sizeof(*ids), u32_cmp);
	return n;
}

uint32_t tidx(const struct wf_map *m, uint32_t id)
{
	for (uint32_t i = 0; i < m->ntargets; i++)
		if (m->targets[i].id == id)
			return i;
	cr_assert_fail("no target %u", id);
	return 0;
}
