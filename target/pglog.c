/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The per-PG log of recent writes (docs/replication.md, "The log of
 * recent writes").  Each reactor keeps, for every PG of the map, a ring
 * of --pg-log entries (24 bytes each): the volume range of each WRITE
 * and DISCARD it took as the PG's primary or applied as an acting
 * secondary (a forward).  The rings are allocated when a map of a new
 * pool layout loads (never on the data path); an append is a few stores
 * into the reactor's own memory.
 *
 * What makes the log usable for a returning member M of a PG:
 *
 *   logging     every write of the PG this reactor applied since the
 *               record below is (or was) in the ring: this target was an
 *               acting member of the PG in every epoch since (with
 *               --cores above 1: its primary), each map followed the one
 *               before (epoch + 1, same pools); anything else starts the
 *               log again and forgets every record;
 *   left        M was acting in the map before and is not in this one:
 *               recorded with S, the ring's head then, lowered to the
 *               entry of the oldest write of the PG still in flight here
 *               (M may not have it);
 *   S >= head - cap  no entry from S on was overwritten.
 *
 * M has every write logged before S: each was acknowledged, and an
 * acknowledgement needs every acting member, M too.  Recovery then copies
 * the primary's current bytes of the ranges of entries S .. head (a
 * DISCARD is forwarded as one); otherwise the whole PG (backfill).  A
 * restart of the target empties the log, so the PGs whose members left
 * before it are backfilled.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "target/target.h"

static bool layout_same(const struct wf_tgt_map *a, const struct wf_tgt_map *b)
{
	if (a->map.npools != b->map.npools)
		return false;
	for (uint32_t p = 0; p < a->map.npools; p++)
		if (a->map.pools[p].id != b->map.pools[p].id ||
		    a->map.pools[p].pg_num != b->map.pools[p].pg_num)
			return false;
	return true;
}

void wf_tgt_pglog_fini(struct wf_tgt_reactor *r)
{
	struct wf_tgt_pglog *l = &r->pglog;

	free(l->pg);
	free(l->ent);
	free(l->base);
	memset(l, 0, sizeof(*l));
}

/* Rings for the pools of m, all empty; on failure none (every recovery
 * is then a backfill). */
static void rebuild(struct wf_tgt_reactor *r, const struct wf_tgt_map *m)
{
	struct wf_tgt_pglog *l = &r->pglog;
	uint32_t cap = r->cfg->pg_log, n = 0;

	wf_tgt_pglog_fini(r);
	if (!cap || !m->map.npools)
		return;
	l->base = calloc(m->map.npools, sizeof(*l->base));
	if (!l->base)
		goto fail;
	for (uint32_t p = 0; p < m->map.npools; p++) {
		l->base[p] = n;
		n += m->map.pools[p].pg_num;
	}
	l->pg = calloc(n, sizeof(*l->pg));
	l->ent = calloc((size_t)n * cap, sizeof(*l->ent));
	if (!l->pg || !l->ent)
		goto fail;
	for (uint32_t p = 0; p < m->map.npools; p++)
		for (uint32_t g = 0; g < m->map.pools[p].pg_num; g++) {
			l->pg[l->base[p] + g].pool = p;
			l->pg[l->base[p] + g].pgno = g;
		}
	l->npg = n;
	l->cap = cap;
	return;
fail:
	wf_tgt_logl(WF_TGT_LOG_WARNING, "reactor %u: no memory for the PG logs "
		    "(%u PGs x %u entries): members coming back are backfilled",
		    r->idx, n, cap);
	wf_tgt_pglog_fini(r);
}

static int left_find(const struct wf_tgt_pglog_pg *g, uint32_t id)
{
	for (unsigned i = 0; i < g->nleft; i++)
		if (g->left_id[i] == id)
			return (int)i;
	return -1;
}

static void left_drop(struct wf_tgt_pglog_pg *g, int i)
{
	g->nleft--;
	g->left_id[i] = g->left_id[g->nleft];
	g->left_seq[i] = g->left_seq[g->nleft];
}

/* PG g from old (NULL: none) to nw; one: this is the target's only
 * reactor.  True when a member left (recorded at the head). */
static bool pg_next(struct wf_tgt_pglog_pg *g, const struct wf_tgt_map *old,
		    const struct wf_tgt_map *nw, bool cont, bool one)
{
	uint32_t p = g->pool, tmp[WF_MAX_REPLICAS];
	const uint32_t *act, *oact;
	unsigned nact = wf_pg_acting(&nw->table, p, g->pgno, &act), onact;
	bool member = nw->self >= 0 && wf_set_has(act, nact, (uint32_t)nw->self);
	bool went = false;

	/*
	 * Which writes reach this reactor's log: with one reactor, all of
	 * an acting member's (a secondary logs the forwards it applies, so
	 * it has the log when it becomes the primary); with several, the
	 * primary's only (forwards arrive on reactor 0, not on the extent's
	 * owner), and not when it is the only member (then a write may be
	 * taken on any reactor, conn.c).
	 */
	if (!member || (!one && (act[0] != (uint32_t)nw->self ||
	    (nact == 1 && !wf_pg_newcomers(&nw->table, p, g->pgno, tmp))))) {
		g->logging = false;
		g->nleft = 0;
		return false;
	}
	if (!cont || !g->logging) {
		g->logging = true;
		g->nleft = 0;
		return false;
	}
	/* Logged in old and in nw: who left, who is acting (current) again. */
	onact = wf_pg_acting(&old->table, p, g->pgno, &oact);
	for (unsigned i = 0; i < onact; i++) {
		uint32_t id = old->map.targets[oact[i]].id;
		bool stays = false;
		int k;

		for (unsigned j = 0; j < nact; j++)
			stays |= nw->map.targets[act[j]].id == id;
		if (stays || oact[i] == (uint32_t)old->self)
			continue;
		k = left_find(g, id);
		if (k < 0) {
			if (g->nleft >= WF_MAX_REPLICAS)
				continue;       /* cannot happen: members are
				                 * fewer than WF_MAX_REPLICAS */
			k = g->nleft++;
			g->left_id[k] = id;
		}
		g->left_seq[k] = g->head;
		g->went = true;
		went = true;
	}
	for (unsigned j = 0; j < nact; j++) {
		int k = left_find(g, nw->map.targets[act[j]].id);

		if (k >= 0)
			left_drop(g, k);
	}
	return went;
}

/* Members that left now may lack the writes still in flight here: their
 * records go back to the oldest such entry of the PG. */
static void inflight_back(struct wf_tgt_reactor *r, const struct wf_tgt_map *old)
{
	struct wf_tgt_pglog *l = &r->pglog;

	for (uint32_t c = 0; r->conns && c < r->cfg->max_conns; c++) {
		const struct wf_tgt_conn *cn = &r->conns[c];

		for (uint32_t s = 0; cn->state != CONN_FREE && cn->reqs &&
		     s < r->cfg->slots; s++) {
			const struct wf_tgt_req *q = &cn->reqs[s];
			const struct wf_volume *v;
			struct wf_tgt_pglog_pg *g;
			int vi;

			if (q->state == RQ_FREE || !q->log_seq)
				continue;
			vi = wf_tgt_map_volume(old, q->volume);
			if (vi < 0)
				continue;
			v = &old->map.volumes[vi];
			g = &l->pg[l->base[v->pool] +
				   wf_pg_of(v->id, q->offset / old->extent_size,
					    old->map.pools[v->pool].pg_num)];
			for (unsigned k = 0; g->went && k < g->nleft; k++)
				if (g->left_seq[k] > q->log_seq - 1)
					g->left_seq[k] = q->log_seq - 1;
		}
	}
}

void wf_tgt_pglog_map(struct wf_tgt_reactor *r, const struct wf_tgt_map *old,
		      const struct wf_tgt_map *nw)
{
	struct wf_tgt_pglog *l = &r->pglog;
	bool cont = old && l->pg && layout_same(old, nw), went = false;

	if (!cont)
		rebuild(r, nw);
	/* Epochs skipped (a map loaded after missing one, etcd's watch
	 * jumping): the PGs may have been led elsewhere meanwhile. */
	cont = cont && nw->epoch <= old->epoch + 1;
	for (uint32_t i = 0; i < l->npg; i++) {
		/* A pass of this epoch keeps its plan through a reload of the
		 * same epoch (SIGHUP); a new epoch plans again. */
		if (!cont || nw->epoch != old->epoch)
			l->pg[i].mode = WF_TGT_PGL_NONE;
		l->pg[i].went = false;
		went |= pg_next(&l->pg[i], old, nw, cont, !r->t || r->t->n == 1);
	}
	if (went)
		inflight_back(r, old);
}

void wf_tgt_pglog_add(struct wf_tgt_reactor *r, int32_t vol_idx,
		      struct wf_tgt_req *q)
{
	struct wf_tgt_pglog *l = &r->pglog;
	const struct wf_tgt_map *m = r->map;
	const struct wf_volume *v = &m->map.volumes[vol_idx];
	struct wf_tgt_pglog_pg *g;
	struct wf_tgt_pglog_ent *e;
	uint32_t i;

	if (!l->npg)
		return;
	i = l->base[v->pool] + wf_pg_of(v->id, q->offset / m->extent_size,
					 m->map.pools[v->pool].pg_num);
	g = &l->pg[i];
	if (!g->logging)
		return;
	e = &l->ent[(size_t)i * l->cap + g->head % l->cap];
	e->volume = q->volume;
	e->offset = q->offset;
	e->length = q->length;
	e->op = q->op;
	q->log_seq = ++g->head;         /* its entry's index + 1 */
}

/* The bytes of the WRITE entries of PG index i the pass has still to
 * start, from cur on (entries already overwritten count nothing: the
 * pass finds them lost). */
static uint64_t unsent_of(const struct wf_tgt_pglog *l, uint32_t i)
{
	const struct wf_tgt_pglog_pg *g = &l->pg[i];
	uint64_t n = 0, from = g->cur;

	if (g->head > l->cap && from < g->head - l->cap)
		from = g->head - l->cap;
	for (uint64_t k = from; k < g->end; k++) {
		const struct wf_tgt_pglog_ent *e = &l->ent[(size_t)i * l->cap + k % l->cap];

		if (e->op == WF_OP_WRITE)
			n += e->length;
	}
	return n;
}

int wf_tgt_pglog_plan(struct wf_tgt_reactor *r, uint32_t pool, uint32_t pg,
		      const uint32_t *to, unsigned nto)
{
	struct wf_tgt_pglog *l = &r->pglog;
	const struct wf_tgt_map *m = r->map;
	struct wf_tgt_pglog_pg *g;
	uint64_t from = UINT64_MAX;

	if (!l->npg)
		return WF_TGT_PGL_FULL;
	g = &l->pg[l->base[pool] + pg];
	g->mode = WF_TGT_PGL_FULL;
	if (!g->logging)
		return g->mode;
	for (unsigned i = 0; i < nto; i++) {
		int k = left_find(g, m->map.targets[to[i]].id);

		if (k < 0)
			return g->mode;         /* never had it, or this log
			                         * did not see it go */
		if (g->head - g->left_seq[k] > l->cap)
			return g->mode;         /* the ring no longer reaches
			                         * back to it */
		from = g->left_seq[k] < from ? g->left_seq[k] : from;
	}
	g->mode = WF_TGT_PGL_LOG;
	g->start = g->cur = from;
	g->end = g->head;
	g->sub = 0;
	g->unsent = unsent_of(l, l->base[pool] + pg);
	return g->mode;
}

int wf_tgt_pglog_mode(const struct wf_tgt_reactor *r, uint32_t pool, uint32_t pg)
{
	const struct wf_tgt_pglog *l = &r->pglog;

	return l->npg ? l->pg[l->base[pool] + pg].mode : WF_TGT_PGL_FULL;
}

void wf_tgt_pglog_rewind(struct wf_tgt_reactor *r)
{
	struct wf_tgt_pglog *l = &r->pglog;

	for (uint32_t i = 0; i < l->npg; i++)
		if (l->pg[i].mode == WF_TGT_PGL_LOG) {
			l->pg[i].cur = l->pg[i].start;
			l->pg[i].sub = 0;
			l->pg[i].unsent = unsent_of(l, i);
		}
}

const struct wf_tgt_pglog_ent *wf_tgt_pglog_next(struct wf_tgt_reactor *r,
						 uint32_t i, bool *lost)
{
	struct wf_tgt_pglog *l = &r->pglog;
	struct wf_tgt_pglog_pg *g = &l->pg[i];

	*lost = false;
	for (; g->cur < g->end; g->cur++, g->sub = 0) {
		const struct wf_tgt_pglog_ent *e;

		if (g->head > l->cap && g->cur < g->head - l->cap) {
			/* Overwritten before it was copied: the log no longer
			 * holds what the member lacks. */
			*lost = true;
			return NULL;
		}
		e = &l->ent[(size_t)i * l->cap + g->cur % l->cap];
		if (g->sub < e->length)
			return e;
	}
	return NULL;
}
