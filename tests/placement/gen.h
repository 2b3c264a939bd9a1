/* SPDX-License-Identifier: Apache-2.0 */
/* Map helpers for the placement tests: generated maps and reorderings. */
#ifndef WEFT_TESTS_PLACEMENT_GEN_H
#define WEFT_TESTS_PLACEMENT_GEN_H

#include "placement/placement.h"

/* racks x hosts x devs, weight 1.0, pool "rep" with R replicas. */
void gen_map(struct wf_map *m, uint32_t racks, uint32_t hosts, uint32_t devs,
	     uint8_t replicas, uint8_t fd, uint32_t pg_num);

/* The same map with nodes (except the root) and targets in another order,
 * every index rewritten; ids, names and hash_ids unchanged. */
void gen_shuffle(struct wf_map *dst, const struct wf_map *src, uint64_t seed);

/* Placer + table of a map; asserts success. */
struct placed {
	struct wf_placer pl;
	struct wf_pg_table t;
};
void placed_init(struct placed *p, const struct wf_map *m);
void placed_free(struct placed *p);

/* Target ids of the placement set of (pool, pg) of a table, sorted. */
unsigned set_ids(const struct placed *p, uint32_t pool, uint32_t pg, uint32_t *ids);

/* Target index of the target with this id (asserts it exists). */
uint32_t tidx(const struct wf_map *m, uint32_t id);

#endif
