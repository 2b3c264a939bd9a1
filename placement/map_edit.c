/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Maps built and edited in code: the benchmark's what-if scenarios (add a
 * host, take a device out) and the tests' generated maps.  Not used on the
 * data path.  Every array is its own malloc block.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "placement/placement.h"

static void *dup_array(const void *src, size_t n, size_t size)
{
	void *p = malloc(n ? n * size : 1);

	if (p && n)
		memcpy(p, src, n * size);
	return p;
}

/* The arrays are malloc'd one by one, as the loader's are: one free serves. */
void wf_map_edit_free(struct wf_map *map)
{
	wf_map_free(map);
}

int wf_map_copy(struct wf_map *dst, const struct wf_map *src)
{
	*dst = *src;
	dst->targets = dup_array(src->targets, src->ntargets, sizeof(*src->targets));
	dst->nodes = dup_array(src->nodes, src->nnodes, sizeof(*src->nodes));
	dst->child = dup_array(src->child, src->nchild, sizeof(*src->child));
	dst->pools = dup_array(src->pools, src->npools, sizeof(*src->pools));
	dst->volumes = dup_array(src->volumes, src->nvolumes, sizeof(*src->volumes));
	dst->overrides = dup_array(src->overrides, src->noverrides, sizeof(*src->overrides));
	dst->temps = dup_array(src->temps, src->ntemps, sizeof(*src->temps));
	dst->revoked = dup_array(src->revoked, src->nrevoked, sizeof(*src->revoked));
	dst->access = dup_array(src->access, src->naccess, sizeof(*src->access));
	dst->peers = dup_array(src->peers, src->npeers, sizeof(*src->peers));
	if (!dst->targets || !dst->nodes || !dst->child || !dst->pools ||
	    !dst->volumes || !dst->overrides || !dst->temps || !dst->revoked ||
	    !dst->access || !dst->peers) {
		wf_map_edit_free(dst);
		return -ENOMEM;
	}
	return 0;
}

void wf_map_reweigh(struct wf_map *map)
{
	for (uint32_t n = 0; n < map->nnodes; n++)
		map->nodes[n].weight = 0;
	for (uint32_t t = 0; t < map->ntargets; t++) {
		int64_t n = map->targets[t].node;

		for (uint32_t steps = 0; n >= 0 && (uint32_t)n < map->nnodes &&
		     steps <= map->nnodes; steps++) {
			map->nodes[n].weight += map->targets[t].weight;
			n = map->nodes[n].parent;
		}
	}
}

static void set_node(struct wf_node *nd, const char *name, uint8_t type, int32_t parent)
{
	memset(nd, 0, sizeof(*nd));
	snprintf(nd->name, sizeof(nd->name), "%s", name);
	nd->type = type;
	nd->parent = parent;
	nd->hash_id = XXH32(nd->name, strlen(nd->name), 0);
}

static void set_target(struct wf_target *tg, uint32_t id, const char *host,
		       uint32_t w, uint32_t node)
{
	memset(tg, 0, sizeof(*tg));
	tg->id = id;
	snprintf(tg->host, sizeof(tg->host), "%s", host);
	snprintf(tg->addr, sizeof(tg->addr), "127.0.0.1");
	tg->port = (uint16_t)(7000 + id % 50000);
	snprintf(tg->device, sizeof(tg->device), "/var/tmp/weft/dev%u.img", id);
	tg->weight = w;
	tg->up = true;
	tg->in = true;
	tg->node = node;
}

int wf_map_synth(struct wf_map *map, const struct wf_synth *s)
{
	uint32_t nr = s->racks, nh = s->hosts_per_rack, nd = s->devs_per_host;
	uint32_t nhosts = nr * nh, ndevs = nhosts * nd;
	uint32_t nnodes = 1 + nr + nhosts + ndevs, c = 0;
	char name[WF_NAME_MAX];

	memset(map, 0, sizeof(*map));
	if (!nr || !nh || !nd || !s->replicas || s->replicas > WF_MAX_REPLICAS ||
	    !s->pg_num || (s->pg_num & (s->pg_num - 1)))
		return -EINVAL;
	map->targets = calloc(ndevs, sizeof(*map->targets));
	map->nodes = calloc(nnodes, sizeof(*map->nodes));
	map->child = calloc(nnodes, sizeof(*map->child));
	map->pools = calloc(1, sizeof(*map->pools));
	map->volumes = calloc(1, sizeof(*map->volumes));
	map->overrides = calloc(1, sizeof(*map->overrides));
	if (!map->targets || !map->nodes || !map->child || !map->pools ||
	    !map->volumes || !map->overrides) {
		wf_map_edit_free(map);
		return -ENOMEM;
	}
	map->epoch = 1;
	map->cluster_id = 0x77656674;
	map->extent_size = 1u << 22;
	map->ntargets = ndevs;
	map->nnodes = nnodes;
	map->nchild = nnodes - 1;

	/* Breadth first: root, racks, hosts, devices; children contiguous. */
	set_node(&map->nodes[0], "default", WF_NODE_ROOT, -1);
	map->nodes[0].first_child = c;
	map->nodes[0].nchild = nr;
	for (uint32_t r = 0; r < nr; r++) {
		uint32_t rn = 1 + r;

		snprintf(name, sizeof(name), "rack%u", r);
		set_node(&map->nodes[rn], name, WF_NODE_RACK, 0);
		map->child[c++] = rn;
	}
	for (uint32_t r = 0; r < nr; r++) {
		map->nodes[1 + r].first_child = c;
		map->nodes[1 + r].nchild = nh;
		for (uint32_t h = 0; h < nh; h++) {
			uint32_t hn = 1 + nr + r * nh + h;

			snprintf(name, sizeof(name), "host%u", r * nh + h);
			set_node(&map->nodes[hn], name, WF_NODE_HOST, (int32_t)(1 + r));
			map->child[c++] = hn;
		}
	}
	for (uint32_t h = 0; h < nhosts; h++) {
		uint32_t hn = 1 + nr + h;

		map->nodes[hn].first_child = c;
		map->nodes[hn].nchild = nd;
		for (uint32_t d = 0; d < nd; d++) {
			uint32_t t = h * nd + d, dn = 1 + nr + nhosts + t;

			snprintf(name, sizeof(name), "dev%u", t);
			set_node(&map->nodes[dn], name, WF_NODE_DEVICE, (int32_t)hn);
			map->nodes[dn].hash_id = t;     /* devices hash by target id */
			map->nodes[dn].target = t;
			set_target(&map->targets[t], t, map->nodes[hn].name, s->weight, dn);
			map->child[c++] = dn;
		}
	}

	map->npools = 1;
	snprintf(map->pools[0].name, sizeof(map->pools[0].name), "rep%u", s->replicas);
	map->pools[0].id = 1;
	map->pools[0].replicas = s->replicas;
	map->pools[0].min_size = s->replicas > 1 ? 2 : 1;
	map->pools[0].failure_domain = s->failure_domain;
	map->pools[0].pg_num = s->pg_num;
	map->pools[0].algorithm = s->algorithm;
	map->pools[0].sparse_ppm = s->sparse_ppm;

	map->nvolumes = 1;
	snprintf(map->volumes[0].name, sizeof(map->volumes[0].name), "vol0");
	map->volumes[0].id = 1;
	map->volumes[0].size = 1ull << 40;
	map->volumes[0].pool = 0;
	map->next_volume_id = 2;
	wf_map_reweigh(map);
	return 0;
}

int wf_map_add_host(struct wf_map *map, uint32_t parent, const char *name,
		    uint32_t ndev, uint32_t w)
{
	uint32_t nn = map->nnodes + 1 + ndev, nt = map->ntargets + ndev;
	uint32_t host = map->nnodes, maxid = 0, c = 0;
	struct wf_node *nodes;
	struct wf_target *targets;
	uint32_t *child;
	char dname[WF_NAME_MAX];

	if (parent >= map->nnodes || map->nodes[parent].type <= WF_NODE_HOST)
		return -EINVAL;
	for (uint32_t t = 0; t < map->ntargets; t++)
		if (map->targets[t].id >= maxid)
			maxid = map->targets[t].id + 1;
	nodes = realloc(map->nodes, nn * sizeof(*nodes));
	if (!nodes)
		return -ENOMEM;
	map->nodes = nodes;
	targets = realloc(map->targets, nt * sizeof(*targets));
	if (!targets)
		return -ENOMEM;
	map->targets = targets;
	child = malloc((map->nchild + 1 + ndev) * sizeof(*child));
	if (!child)
		return -ENOMEM;

	set_node(&nodes[host], name, WF_NODE_HOST, (int32_t)parent);
	for (uint32_t d = 0; d < ndev; d++) {
		uint32_t dn = host + 1 + d, t = map->ntargets + d;

		snprintf(dname, sizeof(dname), "%s-dev%u", name, d);
		set_node(&nodes[dn], dname, WF_NODE_DEVICE, (int32_t)host);
		nodes[dn].hash_id = maxid + d;
		nodes[dn].target = t;
		set_target(&targets[t], maxid + d, name, w, dn);
	}
	/* Rebuild child[] so every node's children stay contiguous. */
	for (uint32_t n = 0; n < nn; n++) {
		uint32_t first = c;

		if (n < host) {
			for (uint32_t i = 0; i < nodes[n].nchild; i++)
				child[c++] = map->child[nodes[n].first_child + i];
			if (n == parent)
				child[c++] = host;
		} else if (n == host) {
			for (uint32_t d = 0; d < ndev; d++)
				child[c++] = host + 1 + d;
		}
		nodes[n].first_child = first;
		nodes[n].nchild = c - first;
	}
	free(map->child);
	map->child = child;
	map->nchild = c;
	map->nnodes = nn;
	map->ntargets = nt;
	wf_map_reweigh(map);
	return (int)host;
}

int wf_map_pin_moves(const struct wf_map *prev, struct wf_map *next)
{
	struct wf_placer pp, np;
	struct wf_pg_table pt, nt;
	struct wf_override *temps = NULL;
	uint32_t ntemps = 0, cap = 0;
	int ret;

	ret = wf_placer_init(&pp, prev);
	if (ret)
		return ret;
	ret = wf_pg_table_build(&pt, &pp);
	if (ret)
		goto out_pp;
	/* next without pins: its up sets are what placement wants. */
	free(next->temps);
	next->temps = NULL;
	next->ntemps = 0;
	ret = wf_placer_init(&np, next);
	if (ret)
		goto out_pt;
	ret = wf_pg_table_build(&nt, &np);
	if (ret)
		goto out_np;
	for (uint32_t p = 0; p < next->npools && p < prev->npools; p++) {
		if (next->pools[p].id != prev->pools[p].id ||
		    next->pools[p].pg_num != prev->pools[p].pg_num)
			continue;       /* a new or reshaped pool: nothing held */
		for (uint32_t pg = 0; pg < next->pools[p].pg_num; pg++) {
			const uint32_t *act, *up;
			unsigned na = wf_pg_acting(&pt, p, pg, &act);
			unsigned nu = wf_pg_up(&nt, p, pg, &up);
			uint32_t hold[WF_MAX_REPLICAS], upid[WF_MAX_REPLICAS];
			unsigned nh = 0;
			bool newcomer = false;

			/* By id: indices differ between the two maps. */
			for (unsigned i = 0; i < na; i++) {
				uint32_t id = prev->targets[act[i]].id;
				int x = wf_placer_target(&np, id);

				if (x >= 0 && next->targets[x].up)
					hold[nh++] = id;
			}
			for (unsigned i = 0; i < nu; i++) {
				upid[i] = next->targets[up[i]].id;
				newcomer |= !wf_set_has(hold, nh, upid[i]);
			}
			if (!newcomer || !nh)
				continue;
			if (ntemps == cap) {
				struct wf_override *n2;

				cap = cap ? 2 * cap : 64;
				n2 = realloc(temps, cap * sizeof(*temps));
				if (!n2) {
					ret = -ENOMEM;
					goto out_nt;
				}
				temps = n2;
			}
			memset(&temps[ntemps], 0, sizeof(*temps));
			temps[ntemps].pool = p;
			temps[ntemps].pg = pg;
			temps[ntemps].n = (uint8_t)nh;
			memcpy(temps[ntemps].target, hold, nh * sizeof(*hold));
			ntemps++;
		}
	}
	next->temps = temps ? temps : malloc(1);
	next->ntemps = ntemps;
	temps = NULL;
	ret = next->temps ? (int)ntemps : -ENOMEM;
out_nt:
	free(temps);
	wf_pg_table_free(&nt);
out_np:
	wf_placer_free(&np);
out_pt:
	wf_pg_table_free(&pt);
out_pp:
	wf_placer_free(&pp);
	return ret;
}
