/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stray copies (docs/replication.md, "Stray copies"): the extents of PGs
 * this target left once their new members were brought up to date.
 *
 * A move made by weftctl goes through two epochs: in E+1 the map pins the
 * PG to the members that hold its data (this target among them) while the
 * newcomers are filled; `weftctl recover` writes E+2 without the pin once
 * every primary reports the copy done.  A target that sees that step for
 * a PG (pinned with it acting, then unpinned without it in the PG's
 * placement at all) knows the new members are current: its copy is a
 * stray, and reactor 0's reclaim scan (reactor.c) discards it.
 *
 * Anything else keeps the copy: a PG that leaves this target without a pin
 * (a map edited by hand: nobody copied the data), an epoch step the target
 * did not see (it was stopped), a PG pinned or placed on this target again
 * by the time the scan reaches the extent (checked against the map served
 * then).  Keeping a stray costs space; dropping the last copy would lose
 * data.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "target/target.h"

static bool pinned(const struct wf_map *m, uint32_t pool, uint32_t pg)
{
	for (uint32_t i = 0; i < m->ntemps; i++)
		if (m->temps[i].pool == pool && m->temps[i].pg == pg)
			return true;
	return false;
}

/* Whether self of m belongs to (pool, pg) in any way: placed (down or
 * not), acting or up; or the PG is pinned. */
static bool member(const struct wf_tgt_map *m, uint32_t pool, uint32_t pg)
{
	uint32_t raw[WF_MAX_REPLICAS];
	const uint32_t *set;
	unsigned n;
	bool ov;

	if (m->self < 0)
		return false;
	if (pinned(&m->map, pool, pg))
		return true;
	n = wf_place_pg_final(&m->pl, pool, pg, raw, &ov);
	if (wf_set_has(raw, n, (uint32_t)m->self))
		return true;
	n = wf_pg_acting(&m->table, pool, pg, &set);
	if (wf_set_has(set, n, (uint32_t)m->self))
		return true;
	n = wf_pg_up(&m->table, pool, pg, &set);
	return wf_set_has(set, n, (uint32_t)m->self);
}

static int mark(struct wf_tgt_stray *s, uint32_t pool_id, uint32_t pg)
{
	uint64_t key = (uint64_t)pool_id << 32 | pg;

	for (uint32_t i = 0; i < s->n; i++)
		if (s->keys[i] == key)
			return 0;
	if (s->n == s->cap) {
		uint32_t cap = s->cap ? 2 * s->cap : 64;
		uint64_t *k = realloc(s->keys, cap * sizeof(*k));

		if (!k)
			return -ENOMEM;
		s->keys = k;
		s->cap = cap;
	}
	s->keys[s->n++] = key;
	return 0;
}

unsigned wf_tgt_stray_mark(struct wf_tgt_reactor *r, const struct wf_tgt_map *old,
			   const struct wf_tgt_map *nw)
{
	unsigned found = 0;

	if (old->self < 0 || nw->self < 0 || !old->map.ntemps)
		return 0;
	for (uint32_t i = 0; i < old->map.ntemps; i++) {
		const struct wf_override *t = &old->map.temps[i];
		const struct wf_pool *op = &old->map.pools[t->pool];
		const uint32_t *act;
		unsigned nact = wf_pg_acting(&old->table, t->pool, t->pg, &act);
		int np = wf_map_pool_by_id(&nw->map, op->id);

		/* Pinned with us acting in the old epoch ... */
		if (!wf_set_has(act, nact, (uint32_t)old->self) || np < 0 ||
		    nw->map.pools[np].pg_num != op->pg_num)
			continue;
		/* ... and now unpinned, without us. */
		if (member(nw, (uint32_t)np, t->pg))
			continue;
		if (mark(&r->stray, op->id, t->pg))
			break;          /* out of memory: keep the copies */
		found++;
	}
	return found;
}

bool wf_tgt_stray_is(const struct wf_tgt_reactor *r, int vol_idx, uint32_t ext)
{
	const struct wf_tgt_map *m = r->map;
	const struct wf_volume *v = &m->map.volumes[vol_idx];
	const struct wf_pool *p = &m->map.pools[v->pool];
	uint32_t pg = wf_pg_of(v->id, ext, p->pg_num);
	uint64_t key = (uint64_t)p->id << 32 | pg;
	bool marked = false;

	for (uint32_t i = 0; i < r->stray.n && !marked; i++)
		marked = r->stray.keys[i] == key;
	return marked && !member(m, v->pool, pg);
}

void wf_tgt_stray_fini(struct wf_tgt_reactor *r)
{
	free(r->stray.keys);
	memset(&r->stray, 0, sizeof(r->stray));
}
