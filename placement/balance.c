/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The balancer behind `weftctl balance`: a short list of explicit acting
 * sets (wf_map.overrides) that brings every device's PG count within a band
 * around its weight share, on top of the pure rendezvous mapping.
 *
 * It starts from what the map already says (valid overrides kept, invalid
 * ones repaired by replacing only their unusable members) and moves one
 * replica at a time from an over-full device to an under-full one,
 * respecting failure domains.  Every move is scored by what it costs in
 * copied data against the epoch currently deployed: moving a replica that
 * has not been copied yet (it only arrived with this map change) is free,
 * moving it back where it came from is a saving.  Free moves that improve
 * the balance are always taken; paid ones only while a device is out of
 * its band.  So after a map change the balancer mostly redirects the
 * replicas that must move anyway, and the overall movement stays near the
 * ideal minimum (docs/placement.md has the figures).
 *
 * Cost.  A move changes two devices' counts, so nothing is rescanned per
 * move: every device keeps the list of slots it holds, the devices are
 * kept in segment trees ordered by their deviation (the neediest device
 * outside a few failure domains is a handful of range queries, with the
 * domains laid out as contiguous leaf ranges), the PGs whose set differs
 * from the deployed one are kept in a list (only they can offer free
 * moves), and the device furthest out of its band is a tree lookup
 * refreshed for the devices whose count changed.  A paid move weighs only
 * the slots of one device; a free move only the PGs already changed.
 * The choice of every move is the one a full scan would make (lowest
 * cost, then largest gain, ties to the lowest PG, slot and device), so the
 * result does not depend on these indexes.  Deterministic.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "placement/placement.h"
#include "placement/rank.h"

#define NONE WF_TARGET_NONE
#define EPS  WF_RANK_EPS

struct clist {
	uint32_t *a, n, cap;
};

struct bal {
	const struct wf_placer *pl;
	const struct wf_placer *prev_pl;        /* deployed epoch, or NULL */
	uint32_t pool, R, P, N;
	const uint32_t *fd;             /* fd node per target, NONE if ineligible */
	uint32_t *cur;                  /* [pg * R + i] */
	uint32_t *base;
	uint32_t *prev;                 /* deployed members, NONE padded */
	double *dev;                    /* count - target per target */
	double *tgt;                    /* target PG count per target */
	double *band;                   /* |dev| a fixed device is brought within */
	uint32_t moves, max_moves;
	uint32_t swaps;                 /* primary reorders */
	struct wf_balance_stats *st;

	/* The slots (pg * R + i) each device holds, and those of them not
	 * deployed there, ascending so that a walk looking for the lowest PG
	 * can stop early. */
	struct clist *cells, *mcells;
	int err;                        /* -ENOMEM growing a list */
	/* PGs whose deployed set holds each device: [poff[t], poff[t + 1]). */
	uint32_t *poff, *plist;
	/* PGs whose current set differs from the deployed one. */
	uint32_t *dlist, *dpos, nd;
	/* Eligible devices ordered by failure domain; each device's
	 * position and its domain's range of positions [lo, hi). */
	uint32_t E, *perm, *pos, *lo, *hi;
	struct wf_rank need;              /* smallest dev first */
	struct wf_rank full;              /* largest dev first */
	struct wf_rank held;              /* largest dev first, holders of slots
	                                 * not deployed there (mcells) */
	struct wf_rank lost;              /* smallest dev first, devices deployed
	                                 * in PGs that no longer hold them */
	struct clist *lpgs;             /* such PGs per device, ascending */
	bool *fmask, *hmask, *lmask;    /* devices each tree leaves out */
	uint8_t *walk;                  /* WALK_*: taken out while walked */
	uint32_t *walked, nw;
	struct wf_worst w;
};

static uint32_t cell_at(const uint32_t *a, uint32_t n, uint32_t cell)
{
	uint32_t lo = 0, hi = n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (a[mid] < cell)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void link_cell(struct bal *b, struct clist *l, uint32_t cell)
{
	uint32_t i;

	if (l->n == l->cap) {
		uint32_t cap = l->cap ? 2 * l->cap : 16, *a = realloc(l->a, cap * sizeof(*a));

		if (!a) {
			b->err = -ENOMEM;
			return;
		}
		l->a = a;
		l->cap = cap;
	}
	i = cell_at(l->a, l->n, cell);
	memmove(&l->a[i + 1], &l->a[i], (l->n - i) * sizeof(*l->a));
	l->a[i] = cell;
	l->n++;
}

static void unlink_cell(struct clist *l, uint32_t cell)
{
	uint32_t i = cell_at(l->a, l->n, cell);

	if (i < l->n && l->a[i] == cell) {
		memmove(&l->a[i], &l->a[i + 1], (l->n - i - 1) * sizeof(*l->a));
		l->n--;
	}
}

/* Keep pg in the list of changed PGs exactly when it differs from prev. */
static void track_pg(struct bal *b, uint32_t pg)
{
	bool differs = memcmp(&b->cur[(size_t)pg * b->R], &b->prev[(size_t)pg * b->R],
			      b->R * sizeof(*b->cur)) != 0;

	if (differs && b->dpos[pg] == NONE) {
		b->dpos[pg] = b->nd;
		b->dlist[b->nd++] = pg;
		if (b->nd > b->st->dirty_pgs)
			b->st->dirty_pgs = b->nd;
	} else if (!differs && b->dpos[pg] != NONE) {
		uint32_t last = b->dlist[--b->nd];

		b->dlist[b->dpos[pg]] = last;
		b->dpos[last] = b->dpos[pg];
		b->dpos[pg] = NONE;
	}
}

enum { WALK_FULL = 1, WALK_HELD = 2, WALK_LOST = 4 };

/* t's deviation, slots or walk state changed: fix its leaves. */
static void refresh(struct bal *b, uint32_t t)
{
	uint32_t p = b->pos[t];

	if (p == NONE)
		return;
	b->fmask[t] = b->walk[t] & WALK_FULL;
	b->hmask[t] = b->mcells[t].n == 0 || (b->walk[t] & WALK_HELD);
	b->lmask[t] = b->lpgs[t].n == 0 || (b->walk[t] & WALK_LOST);
	wf_rank_fix(&b->need, p);
	wf_rank_fix(&b->full, p);
	wf_rank_fix(&b->held, p);
	wf_rank_fix(&b->lost, p);
}

/*
 * Count pg's members not deployed there (mcells) and its deployed
 * members it no longer holds (lpgs): the only places a free move can
 * start from or go back to.
 */
static void account(struct bal *b, uint32_t pg, int sign)
{
	const uint32_t *set = &b->cur[(size_t)pg * b->R], *pv = &b->prev[(size_t)pg * b->R];

	for (uint32_t i = 0; i < b->R; i++) {
		if (set[i] != NONE && !wf_set_has(pv, b->R, set[i])) {
			if (sign > 0)
				link_cell(b, &b->mcells[set[i]], pg * b->R + i);
			else
				unlink_cell(&b->mcells[set[i]], pg * b->R + i);
		}
		if (pv[i] != NONE && !wf_set_has(set, b->R, pv[i])) {
			if (sign > 0)
				link_cell(b, &b->lpgs[pv[i]], pg);
			else
				unlink_cell(&b->lpgs[pv[i]], pg);
		}
	}
}

/*
 * Walk tree s in its order: take its top device out until walk_end().
 * Only s changes: the walk bit is in no other tree's mask.
 */
static void walk_hide(struct bal *b, struct wf_rank *s, uint32_t t, uint8_t bit)
{
	b->walk[t] |= bit;
	b->walked[b->nw++] = t;
	b->fmask[t] = b->walk[t] & WALK_FULL;
	b->hmask[t] = b->mcells[t].n == 0 || (b->walk[t] & WALK_HELD);
	b->lmask[t] = b->lpgs[t].n == 0 || (b->walk[t] & WALK_LOST);
	wf_rank_fix(s, b->pos[t]);
}

static void walk_end(struct bal *b, struct wf_rank *s)
{
	while (b->nw) {
		uint32_t t = b->walked[--b->nw];

		b->walk[t] = 0;
		b->fmask[t] = false;
		b->hmask[t] = b->mcells[t].n == 0;
		b->lmask[t] = b->lpgs[t].n == 0;
		wf_rank_fix(s, b->pos[t]);
	}
}

/* May slot k of pg hold target y? */
static bool fits(const struct bal *b, uint32_t pg, uint32_t k, uint32_t y)
{
	const uint32_t *set = &b->cur[(size_t)pg * b->R];

	if (b->fd[y] == NONE)
		return false;
	for (uint32_t i = 0; i < b->R; i++) {
		if (set[i] == y)
			return false;
		if (i != k && set[i] != NONE && b->fd[set[i]] == b->fd[y])
			return false;
	}
	return true;
}

static void apply(struct bal *b, uint32_t pg, uint32_t k, uint32_t y)
{
	uint32_t cell = pg * b->R + k, x = b->cur[cell];
	const uint32_t *set = &b->cur[(size_t)pg * b->R], *pv = &b->prev[(size_t)pg * b->R];

	account(b, pg, -1);
	if (x != NONE) {
		b->dev[x] -= 1;
		unlink_cell(&b->cells[x], cell);
		wf_worst_touch(&b->w, x);
		refresh(b, x);
	}
	b->dev[y] += 1;
	link_cell(b, &b->cells[y], cell);
	b->cur[cell] = y;
	wf_worst_touch(&b->w, y);
	account(b, pg, 1);
	for (uint32_t i = 0; i < b->R; i++) {
		if (set[i] != NONE)
			refresh(b, set[i]);
		if (pv[i] != NONE)
			refresh(b, pv[i]);
	}
	b->moves++;
	track_pg(b, pg);
}

struct move {
	uint32_t pg, k, y;
	int cost;                       /* extra replicas copied */
	double gain;                    /* dev[x] - dev[y] */
	bool ok;
};

/*
 * Is m better than best?  Lower cost, then larger gain, then lower pg,
 * slot and device: the first a scan in that order would keep.
 */
static bool move_better(const struct move *m, const struct move *best)
{
	if (!best->ok)
		return true;
	if (m->cost != best->cost)
		return m->cost < best->cost;
	if (m->gain > best->gain + EPS)
		return true;
	if (m->gain < best->gain - EPS)
		return false;
	if (m->pg != best->pg)
		return m->pg < best->pg;
	if (m->k != best->k)
		return m->k < best->k;
	return m->y < best->y;
}

static void sort_ranges(uint32_t (*r)[2], unsigned n)
{
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i; j > 0 && r[j][0] < r[j - 1][0]; j--) {
			uint32_t t0 = r[j][0], t1 = r[j][1];

			r[j][0] = r[j - 1][0];
			r[j][1] = r[j - 1][1];
			r[j - 1][0] = t0;
			r[j - 1][1] = t1;
		}
}

/*
 * The neediest device that may take slot k of pg and was not deployed
 * there: outside the failure domains of the other members, not the
 * member being replaced, not a deployed member (those are weighed apart,
 * at a lower cost).  The excluded domains are ranges of positions, so
 * this is a few range queries around them.
 */
static uint32_t neediest(const struct bal *b, uint32_t pg, uint32_t k)
{
	const uint32_t *set = &b->cur[(size_t)pg * b->R], *pv = &b->prev[(size_t)pg * b->R];
	uint32_t ex[2 * WF_MAX_REPLICAS][2], best = NONE, at = 0;
	unsigned n = 0;

	b->st->searches++;
	for (uint32_t i = 0; i < b->R; i++) {
		uint32_t t = set[i];

		if (t == NONE || b->pos[t] == NONE)
			continue;
		ex[n][0] = i == k ? b->pos[t] : b->lo[t];
		ex[n][1] = i == k ? b->pos[t] + 1 : b->hi[t];
		n++;
	}
	for (uint32_t i = 0; i < b->R; i++) {
		if (pv[i] == NONE || b->pos[pv[i]] == NONE)
			continue;
		ex[n][0] = b->pos[pv[i]];
		ex[n][1] = b->pos[pv[i]] + 1;
		n++;
	}
	sort_ranges(ex, n);
	for (unsigned i = 0; i < n; i++) {
		if (ex[i][0] > at)
			best = wf_rank_pick(&b->need, best, wf_rank_query(&b->need, at, ex[i][0]));
		if (ex[i][1] > at)
			at = ex[i][1];
	}
	if (at < b->E)
		best = wf_rank_pick(&b->need, best, wf_rank_query(&b->need, at, b->E));
	return best;
}

/*
 * Best move of slot k of pg (holding x) costing at most max_cost into
 * *best: to the device that costs least, then is neediest.  Only moves
 * with gain > 1 lower the sum of squared deviations, which is what
 * guarantees termination.  An empty slot (x == NONE) takes the neediest
 * device that fits, whatever the gain.
 */
static void slot_best(const struct bal *b, uint32_t pg, uint32_t k, int max_cost,
		      struct move *best)
{
	const uint32_t *pv = &b->prev[(size_t)pg * b->R];
	uint32_t x = b->cur[(size_t)pg * b->R + k], m0 = b->need.node[1], y;
	bool hole = x == NONE;
	int c0 = !hole && !wf_set_has(pv, b->R, x) ? -1 : 0;
	double top = hole ? 0 : b->dev[x];

	b->st->slots++;
	if (m0 == NONE || (!hole && top - b->dev[m0] <= 1 + EPS))
		return;
	/* Back to a deployed member: one copy less than elsewhere. */
	for (uint32_t i = 0; i < b->R && c0 <= max_cost; i++) {
		struct move m = { pg, k, pv[i], c0, 0, true };

		if (pv[i] == NONE)
			continue;
		m.gain = top - b->dev[pv[i]];
		if ((hole || m.gain > 1 + EPS) && fits(b, pg, k, pv[i]) && move_better(&m, best))
			*best = m;
	}
	if (c0 + 1 > max_cost)
		return;
	/* No device elsewhere can beat or tie the best found already. */
	if (best->ok && (best->cost < c0 + 1 ||
			 (best->cost == c0 + 1 && top - b->dev[m0] < best->gain - 2 * EPS)))
		return;
	y = neediest(b, pg, k);
	if (y != NONE) {
		struct move m = { pg, k, y, c0 + 1, top - b->dev[y], true };

		if ((hole || m.gain > 1 + EPS) && move_better(&m, best))
			*best = m;
	}
}

/* Fill the empty slots left by repaired overrides: the neediest device. */
static void fill_holes(struct bal *b)
{
	for (uint32_t pg = 0; pg < b->P; pg++) {
		for (uint32_t k = 0; k < b->R; k++) {
			struct move best = { .ok = false };

			if (b->cur[(size_t)pg * b->R + k] != NONE)
				continue;
			slot_best(b, pg, k, INT_MAX, &best);
			if (best.ok)
				apply(b, pg, k, best.y);
		}
	}
}

/*
 * Free moves back to deployed device z of a PG that lost it, from the
 * members costing at most cost there (-1: not deployed in the PG, 0:
 * deployed), walking the lost devices from the neediest up while the
 * most over-full possible member (top) could still beat the best.
 */
static void back_moves(struct bal *b, int cost, uint32_t top, struct move *best)
{
	uint32_t R = b->R;

	for (uint32_t z; top != NONE && (z = b->lost.node[1]) != NONE;) {
		double bound = b->dev[top] - b->dev[z];

		if (bound <= 1 + EPS || (best->ok && best->cost <= cost && bound < best->gain - 2 * EPS))
			break;
		walk_hide(b, &b->lost, z, WALK_LOST);
		for (uint32_t j = 0; j < b->lpgs[z].n; j++) {
			uint32_t pg = b->lpgs[z].a[j];
			const uint32_t *set = &b->cur[(size_t)pg * R], *pv = &b->prev[(size_t)pg * R];

			/* In PG order: past the best PG only a larger gain wins. */
			if (best->ok && best->cost == cost && bound <= best->gain + EPS && pg > best->pg)
				break;
			b->st->scanned++;
			for (uint32_t k = 0; k < R; k++) {
				struct move m = { pg, k, z, cost, 0, true };

				if (set[k] == NONE || b->dev[set[k]] <= 0 ||
				    wf_set_has(pv, R, set[k]) != (cost == 0))
					continue;
				b->st->slots++;
				m.gain = b->dev[set[k]] - b->dev[z];
				if (m.gain > 1 + EPS && fits(b, pg, k, z) && move_better(&m, best))
					*best = m;
			}
		}
	}
	walk_end(b, &b->lost);
}

/*
 * One free move (cost <= 0) that improves balance.  Only a member not yet
 * copied (mcells), or a PG that lost a deployed member (lpgs), can
 * move for free: cost -1 is such a member going back to a lost device,
 * cost 0 such a member going anywhere else not deployed, or a deployed
 * member going to a lost device.  Each is found by walking the devices in
 * order of deviation, stopping when none left could beat the best.
 */
static bool free_move(struct bal *b)
{
	struct move best = { .ok = false };
	uint32_t m0 = b->need.node[1];

	if (m0 == NONE)
		return false;
	back_moves(b, -1, b->held.node[1], &best);
	if (!best.ok) {
		for (uint32_t x; (x = b->held.node[1]) != NONE;) {
			double bound = b->dev[x] - b->dev[m0];

			if (b->dev[x] <= 0 || bound <= 1 + EPS ||
			    (best.ok && bound < best.gain - 2 * EPS))
				break;
			walk_hide(b, &b->held, x, WALK_HELD);
			for (uint32_t i = 0; i < b->mcells[x].n; i++) {
				uint32_t c = b->mcells[x].a[i];

				if (best.ok && bound <= best.gain + EPS && c / b->R > best.pg)
					break;
				b->st->scanned++;
				slot_best(b, c / b->R, c % b->R, 0, &best);
			}
		}
		walk_end(b, &b->held);
		back_moves(b, 0, b->full.node[1], &best);
	}
	if (!best.ok)
		return false;
	apply(b, best.pg, best.k, best.y);
	return true;
}

/* Under-full w replacing member x in slot k of pg, at that cost. */
static void pull_one(const struct bal *b, uint32_t w, uint32_t pg, uint32_t k, int cost,
		     struct move *best)
{
	uint32_t x = b->cur[(size_t)pg * b->R + k];
	struct move m = { pg, k, w, cost, 0, true };

	b->st->slots++;
	if (x == NONE)
		return;
	m.gain = b->dev[x] - b->dev[w];
	if (m.gain > 1 + EPS && fits(b, pg, k, w) && move_better(&m, best))
		*best = m;
}

/*
 * The best member for under-full w to replace: the most over-full one,
 * cheapest first.  Deployed on w (cost -1 or 0) are w's deployed PGs;
 * not deployed on w but not on the member either (cost 0) are the slots
 * of held devices; the rest (cost 1) come from the most over-full devices
 * down.  Both walks stop when no device left could beat the best.
 */
static void pull(struct bal *b, uint32_t w, struct move *best)
{
	uint32_t R = b->R;

	for (uint32_t j = b->poff[w]; j < b->poff[w + 1]; j++) {
		uint32_t pg = b->plist[j];
		const uint32_t *pv = &b->prev[(size_t)pg * R];

		for (uint32_t k = 0; k < R; k++) {
			uint32_t x = b->cur[(size_t)pg * R + k];

			if (x != NONE)
				pull_one(b, w, pg, k, wf_set_has(pv, R, x) ? 0 : -1, best);
		}
	}
	for (int cost = 0; cost <= 1 && !(best->ok && best->cost < cost); cost++) {
		struct wf_rank *s = cost ? &b->full : &b->held;

		for (uint32_t x; (x = s->node[1]) != NONE;) {
			double gain = b->dev[x] - b->dev[w];

			if (gain <= 1 + EPS || (best->ok && gain < best->gain - 2 * EPS))
				break;
			walk_hide(b, s, x, cost ? WALK_FULL : WALK_HELD);
			const struct clist *l = cost ? &b->cells[x] : &b->mcells[x];

			for (uint32_t i = 0; i < l->n; i++) {
				uint32_t c = l->a[i];
				const uint32_t *pv = &b->prev[(size_t)(c / R) * R];

				/* Cells in PG order: past the best PG only a larger gain wins. */
				if (best->ok && best->cost == cost && gain <= best->gain + EPS &&
				    c / R > best->pg)
					break;
				b->st->scanned++;
				if (!wf_set_has(pv, R, w) && wf_set_has(pv, R, x) == (cost == 1))
					pull_one(b, w, c / R, c % R, cost, best);
			}
		}
		walk_end(b, s);
	}
}

/* One paid move for the device furthest out of its band. */
static bool paid_move(struct bal *b)
{
	uint32_t w = wf_worst_pick(&b->w);
	struct move best = { .ok = false };

	if (w == NONE)
		return false;
	if (b->dev[w] > 0) {
		for (uint32_t i = 0; i < b->cells[w].n; i++) {
			uint32_t c = b->cells[w].a[i];

			b->st->scanned++;
			slot_best(b, c / b->R, c % b->R, 1, &best);
		}
	} else {
		pull(b, w, &best);
	}
	if (!best.ok) {
		wf_worst_stuck(&b->w, w);
		return true;
	}
	apply(b, best.pg, best.k, best.y);
	return true;
}

static int fd_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Build the indexes over b->cur, b->prev and b->dev. */
static int index_build(struct bal *b)
{
	uint32_t N = b->N, R = b->R;
	size_t cells = (size_t)b->P * R;
	uint64_t *key = malloc((N + 1) * sizeof(*key));
	int ret = -ENOMEM;

	b->cells = calloc(N + 1, sizeof(*b->cells));
	b->mcells = calloc(N + 1, sizeof(*b->mcells));
	b->poff = calloc(N + 2, sizeof(*b->poff));
	b->plist = malloc((cells + 1) * sizeof(*b->plist));
	b->dlist = malloc(((size_t)b->P + 1) * sizeof(*b->dlist));
	b->dpos = malloc(((size_t)b->P + 1) * sizeof(*b->dpos));
	b->perm = malloc((N + 1) * sizeof(*b->perm));
	b->pos = malloc((N + 1) * sizeof(*b->pos));
	b->lo = malloc((N + 1) * sizeof(*b->lo));
	b->hi = malloc((N + 1) * sizeof(*b->hi));
	b->lpgs = calloc(N + 1, sizeof(*b->lpgs));
	b->fmask = calloc(N + 1, sizeof(*b->fmask));
	b->hmask = calloc(N + 1, sizeof(*b->hmask));
	b->lmask = calloc(N + 1, sizeof(*b->lmask));
	b->walk = calloc(N + 1, sizeof(*b->walk));
	b->walked = malloc((N + 1) * sizeof(*b->walked));
	if (!key || !b->cells || !b->mcells || !b->poff || !b->plist ||
	    !b->dlist || !b->dpos || !b->perm || !b->pos || !b->lo || !b->hi ||
	    !b->lpgs || !b->fmask || !b->hmask || !b->lmask || !b->walk ||
	    !b->walked)
		goto out;

	for (size_t c = 0; c < cells && !b->err; c++)
		if (b->cur[c] != NONE)
			link_cell(b, &b->cells[b->cur[c]], (uint32_t)c);
	if (b->err)
		goto out;

	for (size_t c = 0; c < cells; c++)
		if (b->prev[c] != NONE)
			b->poff[b->prev[c] + 1]++;
	for (uint32_t t = 0; t < N; t++)
		b->poff[t + 1] += b->poff[t];
	for (size_t c = 0; c < cells; c++)      /* poff[t] walks up to poff[t + 1] */
		if (b->prev[c] != NONE)
			b->plist[b->poff[b->prev[c]]++] = (uint32_t)(c / R);
	for (uint32_t t = N; t > 0; t--)        /* and back */
		b->poff[t] = b->poff[t - 1];
	b->poff[0] = 0;

	b->nd = 0;
	for (uint32_t pg = 0; pg < b->P; pg++) {
		b->dpos[pg] = NONE;
		track_pg(b, pg);
	}

	b->E = 0;
	for (uint32_t t = 0; t < N; t++) {
		b->pos[t] = NONE;
		if (b->fd[t] != NONE)
			key[b->E++] = (uint64_t)b->fd[t] << 32 | t;
	}
	qsort(key, b->E, sizeof(*key), fd_cmp);
	for (uint32_t i = 0, start = 0; i < b->E; i++) {
		b->perm[i] = (uint32_t)key[i];
		b->pos[b->perm[i]] = i;
		if (i + 1 == b->E || key[i + 1] >> 32 != key[i] >> 32) {
			for (uint32_t j = start; j <= i; j++) {
				b->lo[b->perm[j]] = start;
				b->hi[b->perm[j]] = i + 1;
			}
			start = i + 1;
		}
	}
	ret = wf_rank_init(&b->need, b->E, b->perm, b->dev, 1, NULL);
	if (!ret)
		ret = wf_rank_init(&b->full, b->E, b->perm, b->dev, -1, b->fmask);
	for (uint32_t pg = 0; pg < b->P; pg++)
		account(b, pg, 1);
	if (!ret && b->err)
		ret = b->err;
	for (uint32_t t = 0; t < N; t++) {
		b->hmask[t] = b->mcells[t].n == 0;
		b->lmask[t] = b->lpgs[t].n == 0;
	}
	if (!ret)
		ret = wf_rank_init(&b->held, b->E, b->perm, b->dev, -1, b->hmask);
	if (!ret)
		ret = wf_rank_init(&b->lost, b->E, b->perm, b->dev, 1, b->lmask);
	if (!ret)
		ret = wf_worst_init(&b->w, N, b->fd, b->dev, b->tgt, b->band);
out:
	free(key);
	return ret;
}

/* What the run holds: per slot, per PG and per device arrays, the lists
 * at their capacity, the trees. */
static uint64_t bal_bytes(const struct bal *b)
{
	uint64_t cells = (uint64_t)b->P * b->R, n = b->N + 1, lists = 0;
	const struct wf_rank *trees[] = { &b->need, &b->full, &b->held, &b->lost, &b->w.t };

	for (uint32_t t = 0; t < b->N; t++)
		lists += (uint64_t)(b->cells[t].cap + b->mcells[t].cap + b->lpgs[t].cap) * 4 +
			 3 * sizeof(struct clist);
	for (unsigned i = 0; i < sizeof(trees) / sizeof(trees[0]); i++)
		lists += 2ull * trees[i]->size * 4;
	return cells * 4 * 4 +                  /* cur, base, prev, plist */
	       (uint64_t)(b->P + 1) * 4 * 2 +   /* dlist, dpos */
	       n * 8 * 4 +                      /* dev, tgt, band, worst's eff */
	       n * 4 * 8 +                      /* poff, perm, pos, lo, hi, walked, dirty */
	       n * 7 +                          /* masks, walk, active, stuck, isdirty */
	       (b->prev_pl ? cells * 4 + (uint64_t)b->P * 4 : 0) + /* load_prev: raw, ovi */
	       lists;
}

static void index_free(struct bal *b)
{
	for (uint32_t t = 0; b->cells && t < b->N; t++)
		free(b->cells[t].a);
	for (uint32_t t = 0; b->mcells && t < b->N; t++)
		free(b->mcells[t].a);
	free(b->cells);
	free(b->mcells);
	free(b->poff);
	free(b->plist);
	free(b->dlist);
	free(b->dpos);
	free(b->perm);
	free(b->pos);
	free(b->lo);
	free(b->hi);
	for (uint32_t t = 0; b->lpgs && t < b->N; t++)
		free(b->lpgs[t].a);
	free(b->lpgs);
	free(b->fmask);
	free(b->hmask);
	free(b->lmask);
	free(b->walk);
	free(b->walked);
	free(b->held.node);
	free(b->lost.node);
	free(b->need.node);
	free(b->full.node);
	wf_worst_free(&b->w);
}

/*
 * Deployed placement sets of this pool (down members included: their data
 * is still there), as target indices of the new map; without a deployed
 * epoch, the sets the map gives now.
 */
static int load_prev(struct bal *b)
{
	const struct wf_map *pm;
	uint32_t R = b->R, *raw;
	int32_t *ovi;

	if (!b->prev_pl) {
		memcpy(b->prev, b->cur, (size_t)b->P * R * sizeof(*b->prev));
		return 0;
	}
	/* The deployed pool has our pg_num and replicas (wf_balance). */
	pm = b->prev_pl->map;
	raw = malloc(((size_t)b->P * R + 1) * sizeof(*raw));
	ovi = malloc(((size_t)b->P + 1) * sizeof(*ovi));
	if (!raw || !ovi) {
		free(raw);
		free(ovi);
		return -ENOMEM;
	}
	/* One pass over the overrides, not wf_place_pg_final()'s per PG. */
	wf_override_first(b->prev_pl, b->pool, ovi, raw, R);
	for (uint32_t pg = 0; pg < b->P; pg++) {
		uint32_t *pv = &b->prev[(size_t)pg * R], *rp = &raw[(size_t)pg * R];
		unsigned n = ovi[pg] >= 0 ? pm->overrides[ovi[pg]].n :
			     wf_place_pg(b->prev_pl, b->pool, pg, rp);

		for (uint32_t i = 0; i < R; i++) {
			int t = i < n ? wf_placer_target(b->pl, pm->targets[rp[i]].id) : -1;

			pv[i] = t < 0 ? WF_TARGET_NONE : (uint32_t)t;
		}
	}
	free(raw);
	free(ovi);
	return 0;
}

/*
 * An override pins a whole acting set, so by itself it would keep its PG out
 * of every later rendezvous change (a new host would get only the PGs
 * without overrides).  Against a deployed epoch, carry the change over
 * instead: where the rendezvous set of the PG went from x to y, an override
 * holding x gets y in x's slot, if y fits there.  Overrides then behave as
 * edits on top of the rendezvous result, which is what they are.
 */
static void follow_base(const struct bal *b, uint32_t pg, int32_t *idx)
{
	const struct wf_map *prev = b->prev_pl->map;
	const uint32_t *bn = &b->base[(size_t)pg * b->R];
	uint32_t raw[WF_MAX_REPLICAS], bp[WF_MAX_REPLICAS], gone[WF_MAX_REPLICAS];
	uint32_t came[WF_MAX_REPLICAS], ng = 0, nc = 0;
	unsigned np = wf_place_pg(b->prev_pl, b->pool, pg, raw);

	for (unsigned i = 0; i < np; i++) {
		int t = wf_placer_target(b->pl, prev->targets[raw[i]].id);

		bp[i] = t < 0 ? WF_TARGET_NONE : (uint32_t)t;
	}
	for (unsigned i = np; i < b->R; i++)
		bp[i] = WF_TARGET_NONE;
	for (uint32_t i = 0; i < b->R; i++) {
		if (bp[i] != WF_TARGET_NONE && !wf_set_has(bn, b->R, bp[i]))
			gone[ng++] = bp[i];
		if (bn[i] != WF_TARGET_NONE && !wf_set_has(bp, b->R, bn[i]))
			came[nc++] = bn[i];
	}
	for (uint32_t i = 0; i < ng && i < nc; i++) {
		uint32_t x = gone[i], y = came[i], k;
		bool ok = b->fd[y] != WF_TARGET_NONE;

		for (k = 0; k < b->R && idx[k] != (int32_t)x; k++)
			;
		if (k == b->R)
			continue;
		for (uint32_t j = 0; j < b->R && ok; j++)
			ok = idx[j] != (int32_t)y &&
			     (j == k || idx[j] < 0 || b->fd[idx[j]] != b->fd[y]);
		if (ok)
			idx[k] = (int32_t)y;
	}
}

/* Current sets: overrides (following the rendezvous change against the
 * deployed epoch, then repaired if invalid), else rendezvous. */
static void load_cur(struct bal *b)
{
	const struct wf_map *map = b->pl->map;
	uint32_t R = b->R;

	for (uint32_t pg = 0; pg < b->P; pg++) {
		uint32_t *base = &b->base[(size_t)pg * R];
		unsigned n = wf_place_pg(b->pl, b->pool, pg, base);

		for (uint32_t i = n; i < R; i++)
			base[i] = WF_TARGET_NONE;
		memcpy(&b->cur[(size_t)pg * R], base, R * sizeof(*base));
	}
	/* Walk backwards so the first override of a PG is the one kept. */
	for (uint32_t i = map->noverrides; i-- > 0;) {
		const struct wf_override *ov = &map->overrides[i];
		int32_t idx[WF_MAX_REPLICAS];
		uint32_t *cur;

		if (ov->pool != b->pool || ov->pg >= b->P)
			continue;
		cur = &b->cur[(size_t)ov->pg * R];
		for (uint32_t k = 0; k < R; k++)
			idx[k] = k < ov->n && k < WF_MAX_REPLICAS ?
				 wf_placer_target(b->pl, ov->target[k]) : -1;
		if (b->prev_pl)
			follow_base(b, ov->pg, idx);
		/* Keep the members still usable in their slots; the rest are holes. */
		for (uint32_t k = 0; k < R; k++) {
			int32_t t = idx[k];
			bool clash = t < 0 || b->fd[t] == WF_TARGET_NONE;

			for (uint32_t j = 0; j < k && !clash; j++)
				clash = cur[j] == (uint32_t)t ||
					(cur[j] != WF_TARGET_NONE && b->fd[cur[j]] == b->fd[t]);
			cur[k] = clash ? WF_TARGET_NONE : (uint32_t)t;
		}
	}
}


/*
 * Primaries: the first member of an acting set leads the PG's writes, so
 * its count matters as much as the replica count.  Reordering a set moves
 * no data, so this pass only swaps a PG's primary with one of its other
 * members: from devices leading too many PGs to devices leading too few,
 * with the same band and hysteresis as the replica moves, preferring PGs
 * that already carry an override (the list grows less) and swaps that
 * restore the rendezvous order (an override disappears).  A device's
 * candidates are the slots it holds: as primary when it leads too many,
 * as another member when it leads too few.
 */
struct swap {
	uint32_t pg, k;
	int pref;                       /* 2: back to the rendezvous order,
	                                 * 1: already overridden, 0: new */
	double gain;
};

static bool swap_better(const struct swap *s, const struct swap *best)
{
	if (s->pref != best->pref)
		return s->pref > best->pref;
	if (s->gain > best->gain + EPS)
		return true;
	if (s->gain < best->gain - EPS)
		return false;
	return s->pg != best->pg ? s->pg < best->pg : s->k < best->k;
}

static void swap_weigh(const struct bal *b, const double *pd, uint32_t pg, uint32_t k,
		       struct swap *best)
{
	uint32_t R = b->R;
	const uint32_t *set = &b->cur[(size_t)pg * R], *base = &b->base[(size_t)pg * R];
	uint32_t x = set[0], y = set[k];
	struct swap s = { pg, k, 0, 0 };

	b->st->slots++;
	if (x == NONE || y == NONE)
		return;
	s.gain = pd[x] - pd[y];
	if (s.gain <= 1 + EPS)
		return;
	if (base[0] == y && base[k] == x &&
	    !memcmp(set + 1, base + 1, (k - 1) * sizeof(*set)) &&
	    !memcmp(set + k + 1, base + k + 1, (R - k - 1) * sizeof(*set)))
		s.pref = 2;
	else
		s.pref = memcmp(set, base, R * sizeof(*set)) ? 1 : 0;
	if (swap_better(&s, best))
		*best = s;
}

static uint32_t balance_primaries(struct bal *b, const double *share, double dev)
{
	uint32_t N = b->N, R = b->R, swaps = 0;
	double *pd = calloc(N + 1, sizeof(*pd)), *band = calloc(N + 1, sizeof(*band));
	double *tgt = calloc(N + 1, sizeof(*tgt));
	struct wf_worst w = { 0 };

	if (R < 2)
		goto out;
	if (!pd || !band || !tgt) {
		b->err = -ENOMEM;       /* not "balanced" without the swaps */
		goto out;
	}
	for (uint32_t t = 0; t < N; t++) {
		tgt[t] = share[t] * b->P;
		pd[t] = -tgt[t];
		band[t] = fmax(1.0, dev * tgt[t]);
	}
	for (uint32_t pg = 0; pg < b->P; pg++)
		if (b->cur[(size_t)pg * R] != NONE)
			pd[b->cur[(size_t)pg * R]] += 1;
	if (wf_worst_init(&w, N, b->fd, pd, tgt, band)) {
		b->err = -ENOMEM;
		goto out;
	}

	while (swaps < b->P && !b->err) {
		uint32_t t = wf_worst_pick(&w);
		struct swap best = { .pref = -1 };

		if (t == NONE)
			break;
		for (uint32_t i = 0; i < b->cells[t].n; i++) {
			uint32_t pg = b->cells[t].a[i] / R, k = b->cells[t].a[i] % R;

			b->st->scanned++;
			if (pd[t] > 0 && k == 0) {
				for (uint32_t j = 1; j < R; j++)
					swap_weigh(b, pd, pg, j, &best);
			} else if (pd[t] <= 0 && k != 0) {
				swap_weigh(b, pd, pg, k, &best);
			}
		}
		if (best.pref < 0) {
			wf_worst_stuck(&w, t);
			continue;
		}
		uint32_t c0 = best.pg * R, ck = c0 + best.k, x = b->cur[c0], y = b->cur[ck];

		account(b, best.pg, -1);
		unlink_cell(&b->cells[x], c0);
		unlink_cell(&b->cells[y], ck);
		link_cell(b, &b->cells[y], c0);
		link_cell(b, &b->cells[x], ck);
		b->cur[c0] = y;
		b->cur[ck] = x;
		account(b, best.pg, 1);
		track_pg(b, best.pg);
		pd[x] -= 1;
		pd[y] += 1;
		wf_worst_touch(&w, x);
		wf_worst_touch(&w, y);
		swaps++;
	}
out:
	wf_worst_free(&w);
	free(pd);
	free(band);
	free(tgt);
	return swaps;
}

static int balance_pool(struct bal *b, double max_dev, double primary_dev)
{
	uint32_t N = b->N, R = b->R;
	double *share = calloc(N ? N : 1, sizeof(*share));
	double total = 0;
	int ret = -ENOMEM;

	if (!share)
		goto out;
	ret = wf_pool_shares(b->pl, b->pool, share);
	if (ret)
		goto out;
	load_cur(b);
	ret = load_prev(b);
	if (ret)
		goto out;

	for (uint32_t t = 0; t < N; t++)
		b->dev[t] = 0;
	for (size_t i = 0; i < (size_t)b->P * R; i++) {
		if (b->cur[i] != NONE)
			b->dev[b->cur[i]] += 1;
		if (b->base[i] != NONE)
			total += 1;     /* what a full placement holds */
	}
	for (uint32_t t = 0; t < N; t++) {
		b->tgt[t] = share[t] * total;
		b->dev[t] -= b->tgt[t];
		b->band[t] = fmax(1.0, max_dev * b->tgt[t]);
	}
	ret = index_build(b);
	if (ret)
		goto out;

	fill_holes(b);
	while (b->moves < b->max_moves && !b->err) {
		if (free_move(b))
			continue;
		if (!paid_move(b))
			break;
	}
	if (primary_dev > 0 && !b->err)
		b->swaps = balance_primaries(b, share, primary_dev);
	ret = b->err;
	if (bal_bytes(b) > b->st->bytes)
		b->st->bytes = bal_bytes(b);
out:
	index_free(b);
	free(share);
	return ret;
}

static int ov_cmp(const void *a, const void *b)
{
	const struct wf_override *x = a, *y = b;

	if (x->pool != y->pool)
		return x->pool < y->pool ? -1 : 1;
	return x->pg < y->pg ? -1 : x->pg > y->pg;
}

int wf_balance(const struct wf_placer *pl, const struct wf_map *prev,
	       const struct wf_balance_opts *opts, struct wf_override **out,
	       uint32_t *nout, uint32_t *moves)
{
	const struct wf_map *map = pl->map;
	struct wf_override *ovs = NULL;
	uint32_t nov = 0, cap = 0, total_moves = 0;
	double max_dev = opts && opts->max_dev > 0 ? opts->max_dev : 0.01;
	double primary_dev = opts && opts->primary_dev ? opts->primary_dev : 0.01;
	struct wf_placer ppl;
	struct wf_balance_stats scratch, *st = opts && opts->stats ? opts->stats : &scratch;
	bool have_ppl = false;
	int ret = 0;

	memset(st, 0, sizeof(*st));
	*out = NULL;
	*nout = 0;
	if (prev) {
		ret = wf_placer_init(&ppl, prev);
		if (ret)
			return ret;
		have_ppl = true;
	}
	for (uint32_t p = 0; p < pl->npools; p++) {
		const struct wf_pl_pool *pp = &pl->pools[p];
		size_t cells = (size_t)pp->pg_num * pp->replicas;
		struct bal b = {
			.pl = pl, .pool = p, .R = pp->replicas, .P = pp->pg_num,
			.N = map->ntargets,
			.fd = &pl->fd_node[(size_t)p * map->ntargets],
			.max_moves = opts && opts->max_moves ? opts->max_moves : (uint32_t)cells,
			.st = st,
		};

		/* Follow rendezvous changes only within the same pool layout. */
		if (have_ppl && p < ppl.npools && ppl.pools[p].pool_id == pp->pool_id &&
		    ppl.pools[p].pg_num == pp->pg_num && ppl.pools[p].replicas == pp->replicas)
			b.prev_pl = &ppl;

		b.cur = malloc(cells * sizeof(*b.cur));
		b.base = malloc(cells * sizeof(*b.base));
		b.prev = malloc(cells * sizeof(*b.prev));
		b.dev = calloc(b.N + 1, sizeof(*b.dev));
		b.band = calloc(b.N + 1, sizeof(*b.band));
		b.tgt = calloc(b.N + 1, sizeof(*b.tgt));
		ret = -ENOMEM;
		if (b.cur && b.base && b.prev && b.dev && b.band && b.tgt)
			ret = balance_pool(&b, max_dev, primary_dev);
		for (uint32_t pg = 0; !ret && pg < b.P; pg++) {
			const uint32_t *cur = &b.cur[(size_t)pg * b.R];
			struct wf_override *ov;

			if (!memcmp(cur, &b.base[(size_t)pg * b.R], b.R * sizeof(*cur)) ||
			    wf_set_has(cur, b.R, WF_TARGET_NONE))
				continue;
			if (nov == cap) {
				struct wf_override *n;

				cap = cap ? 2 * cap : 64;
				n = realloc(ovs, cap * sizeof(*ovs));
				if (!n) {
					ret = -ENOMEM;
					break;
				}
				ovs = n;
			}
			ov = &ovs[nov++];
			memset(ov, 0, sizeof(*ov));
			ov->pool = p;
			ov->pg = pg;
			ov->n = (uint8_t)b.R;
			for (uint32_t i = 0; i < b.R; i++)
				ov->target[i] = map->targets[cur[i]].id;
		}
		total_moves += b.moves;
		st->moves += b.moves;
		st->swaps += b.swaps;
		free(b.cur);
		free(b.base);
		free(b.prev);
		free(b.dev);
		free(b.band);
		free(b.tgt);
		if (ret)
			break;
	}
	if (have_ppl)
		wf_placer_free(&ppl);
	if (ret) {
		free(ovs);
		return ret;
	}
	if (nov)
		qsort(ovs, nov, sizeof(*ovs), ov_cmp);
	*out = ovs;
	*nout = nov;
	if (moves)
		*moves = total_moves;
	return 0;
}
