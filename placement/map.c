/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cluster map in memory: lookups by id and name, comparison, and
 * freeing.  The loader is map_load.c (its checks map_check.c), the writer
 * map_write.c; maps built and edited in code are map_edit.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "placement/map.h"
#include "placement/map_int.h"

/* Failure domain types as the map text names them: loader and writer. */
const char *const wf_map_fd_names[] = {
	[WF_NODE_DEVICE] = "device", [WF_NODE_HOST] = "host", [WF_NODE_RACK] = "rack",
};

void wf_map_free(struct wf_map *map)
{
	free(map->targets);
	free(map->nodes);
	free(map->child);
	free(map->pools);
	free(map->volumes);
	free(map->overrides);
	free(map->temps);
	free(map->revoked);
	free(map->access);
	free(map->peers);
	memset(map, 0, sizeof(*map));
}

/* ---- lookups ---- */

int wf_map_target_by_id(const struct wf_map *map, uint32_t id)
{
	uint32_t lo = 0, hi = map->ntargets;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (map->targets[mid].id == id)
			return (int)mid;
		if (map->targets[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

int wf_map_pool_by_name(const struct wf_map *map, const char *name)
{
	for (uint32_t i = 0; i < map->npools; i++)
		if (!strcmp(map->pools[i].name, name))
			return (int)i;
	return -ENOENT;
}

int wf_map_pool_by_id(const struct wf_map *map, uint32_t id)
{
	for (uint32_t i = 0; i < map->npools; i++)
		if (map->pools[i].id == id)
			return (int)i;
	return -ENOENT;
}

int wf_map_volume_by_name(const struct wf_map *map, const char *name)
{
	for (uint32_t i = 0; i < map->nvolumes; i++)
		if (!strcmp(map->volumes[i].name, name))
			return (int)i;
	return -ENOENT;
}

int wf_map_volume_by_id(const struct wf_map *map, uint64_t id)
{
	for (uint32_t i = 0; i < map->nvolumes; i++)
		if (map->volumes[i].id == id)
			return (int)i;
	return -ENOENT;
}

int wf_map_override_find(const struct wf_map *map, uint32_t pool, uint32_t pg)
{
	uint32_t lo = 0, hi = map->noverrides;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct wf_override *o = &map->overrides[mid];

		if (o->pool == pool && o->pg == pg)
			return (int)mid;
		if (o->pool < pool || (o->pool == pool && o->pg < pg))
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

static bool same(const void *a, const void *b, size_t n)
{
	return !n || !memcmp(a, b, n);
}

bool wf_map_equal(const struct wf_map *a, const struct wf_map *b)
{
	return a->epoch == b->epoch && a->cluster_id == b->cluster_id &&
	       a->extent_size == b->extent_size &&
	       a->next_volume_id == b->next_volume_id &&
	       a->read_lease_set == b->read_lease_set &&
	       a->read_lease_ms == b->read_lease_ms &&
	       a->ntargets == b->ntargets && a->nnodes == b->nnodes &&
	       a->nchild == b->nchild && a->npools == b->npools &&
	       a->nvolumes == b->nvolumes && a->noverrides == b->noverrides &&
	       same(a->targets, b->targets, a->ntargets * sizeof(*a->targets)) &&
	       same(a->nodes, b->nodes, a->nnodes * sizeof(*a->nodes)) &&
	       same(a->child, b->child, a->nchild * sizeof(*a->child)) &&
	       same(a->pools, b->pools, a->npools * sizeof(*a->pools)) &&
	       same(a->volumes, b->volumes, a->nvolumes * sizeof(*a->volumes)) &&
	       same(a->overrides, b->overrides, a->noverrides * sizeof(*a->overrides)) &&
	       a->ntemps == b->ntemps &&
	       same(a->temps, b->temps, a->ntemps * sizeof(*a->temps)) &&
	       a->auth == b->auth && a->nrevoked == b->nrevoked &&
	       same(a->revoked, b->revoked, a->nrevoked * sizeof(*a->revoked)) &&
	       a->naccess == b->naccess &&
	       same(a->access, b->access, a->naccess * sizeof(*a->access)) &&
	       a->npeers == b->npeers &&
	       same(a->peers, b->peers, a->npeers * sizeof(*a->peers));
}
