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
 * Not on the data path: plain doubles and O(pg_num * replicas) scans per
 * move are fine here.  Deterministic: ties go to the lower index.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "placement/placement.h"

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
	bool *active;                   /* being fixed: went beyond band + 1 */
	uint32_t moves, max_moves;
	uint32_t swaps;                 /* primary reorders */
};

/* May slot k of pg hold target y? */
static bool fits(const struct bal *b, uint32_t pg, uint32_t k, uint32_t y)
{
	const uint32_t *set = &b->cur[(size_t)pg * b->R];

	if (b->fd[y] == WF_TARGET_NONE)
		return false;
	for (uint32_t i = 0; i < b->R; i++) {
		if (set[i] == y)
			return false;
		if (i != k && set[i] != WF_TARGET_NONE && b->fd[set[i]] == b->fd[y])
			return false;
	}
	return true;
}

/* Extra replicas copied if slot k of pg changes to y. */
static int cost(const struct bal *b, uint32_t pg, uint32_t k, uint32_t y)
{
	const uint32_t *pv = &b->prev[(size_t)pg * b->R];
	uint32_t x = b->cur[(size_t)pg * b->R + k];
	int c = wf_set_has(pv, b->R, y) ? 0 : 1;

	if (x != WF_TARGET_NONE && !wf_set_has(pv, b->R, x))
		c--;
	return c;
}

static void apply(struct bal *b, uint32_t pg, uint32_t k, uint32_t y)
{
	uint32_t *slot = &b->cur[(size_t)pg * b->R + k];

	if (*slot != WF_TARGET_NONE)
		b->dev[*slot] -= 1;
	b->dev[y] += 1;
	*slot = y;
	b->moves++;
}

struct move {
	uint32_t pg, k, y;
	int cost;
	double gain;                    /* dev[x] - dev[y] */
	bool ok;
};

/* Is m better than best?  Lower cost, then larger gain, then lower ids. */
static bool move_better(const struct move *m, const struct move *best)
{
	if (!best->ok)
		return true;
	if (m->cost != best->cost)
		return m->cost < best->cost;
	if (m->gain != best->gain)
		return m->gain > best->gain + 1e-9;
	return false;
}

/* Fill the empty slots left by repaired overrides: the neediest device. */
static void fill_holes(struct bal *b)
{
	for (uint32_t pg = 0; pg < b->P; pg++) {
		for (uint32_t k = 0; k < b->R; k++) {
			struct move best = { .ok = false };

			if (b->cur[(size_t)pg * b->R + k] != WF_TARGET_NONE)
				continue;
			for (uint32_t y = 0; y < b->N; y++) {
				struct move m = { pg, k, y, 0, -b->dev[y], true };

				if (!fits(b, pg, k, y))
					continue;
				m.cost = cost(b, pg, k, y);
				if (move_better(&m, &best))
					best = m;
			}
			if (best.ok)
				apply(b, pg, k, best.y);
		}
	}
}

/*
 * Best improving move out of (pg, slot k) holding x: to the device that
 * costs least, then is neediest.  Only moves with gain > 1 lower the sum of
 * squared deviations, which is what guarantees termination.
 */
static void best_from(const struct bal *b, uint32_t pg, uint32_t k, int max_cost,
		      struct move *best)
{
	uint32_t x = b->cur[(size_t)pg * b->R + k];

	if (x == WF_TARGET_NONE)
		return;
	for (uint32_t y = 0; y < b->N; y++) {
		struct move m = { pg, k, y, 0, b->dev[x] - b->dev[y], true };

		if (m.gain <= 1 + 1e-9 || !fits(b, pg, k, y))
			continue;
		m.cost = cost(b, pg, k, y);
		if (m.cost <= max_cost && move_better(&m, best))
			*best = m;
	}
}

/* One free move (cost <= 0) that improves balance, anywhere. */
static bool free_move(struct bal *b)
{
	struct move best = { .ok = false };

	for (uint32_t pg = 0; pg < b->P; pg++) {
		const uint32_t *set = &b->cur[(size_t)pg * b->R];
		const uint32_t *pv = &b->prev[(size_t)pg * b->R];

		for (uint32_t k = 0; k < b->R; k++) {
			/* Only a member not yet copied, or a PG that lost a
			 * deployed member, can move for free. */
			if (set[k] == WF_TARGET_NONE ||
			    (wf_set_has(pv, b->R, set[k]) && memcmp(set, pv, b->R * sizeof(*set)) == 0))
				continue;
			if (b->dev[set[k]] <= 0)
				continue;
			best_from(b, pg, k, 0, &best);
		}
	}
	if (!best.ok)
		return false;
	apply(b, best.pg, best.k, best.y);
	return true;
}

/*
 * Whole PGs by which a device holding tgt + dev is outside its band
 * [floor(tgt - band), ceil(tgt + band)].  Integer bounds: a map change
 * that shifts every target by a fraction of a PG must not push the
 * devices sitting at the edge of the band out of it.
 */
static double outside(double dev, double tgt, double band)
{
	double c = round(dev + tgt), lo = floor(tgt - band), hi = ceil(tgt + band);

	return c > hi ? c - hi : (c < lo ? lo - c : 0);
}

/*
 * One paid move for the device furthest out of its band.  Hysteresis: a
 * device is only taken up once it is two PGs beyond its band, and then
 * brought back within the band.  Without it every device left at the
 * edge of the band by the last run would cost a move as soon as a map
 * change nudges it.
 */
static bool paid_move(struct bal *b, bool *stuck)
{
	double worst = 0;
	uint32_t w = UINT32_MAX;
	struct move best = { .ok = false };

	for (uint32_t t = 0; t < b->N; t++) {
		double v = outside(b->dev[t], b->tgt[t], b->band[t]);

		if (b->fd[t] == WF_TARGET_NONE || stuck[t])
			continue;
		if (v > 1.5)
			b->active[t] = true;
		if (v < 0.5)
			b->active[t] = false;
		if (!b->active[t])
			continue;
		if (v > worst) {
			worst = v;
			w = t;
		}
	}
	if (w == UINT32_MAX)
		return false;
	for (uint32_t pg = 0; pg < b->P; pg++) {
		const uint32_t *set = &b->cur[(size_t)pg * b->R];

		for (uint32_t k = 0; k < b->R; k++) {
			if (b->dev[w] > 0) {
				if (set[k] == w)
					best_from(b, pg, k, 1, &best);
				continue;
			}
			/* Under-full: pull the most over-full member that w may replace. */
			if (set[k] == WF_TARGET_NONE || !fits(b, pg, k, w))
				continue;
			struct move m = { pg, k, w, cost(b, pg, k, w),
					  b->dev[set[k]] - b->dev[w], true };
			if (m.gain > 1 + 1e-9 && move_better(&m, &best))
				best = m;
		}
	}
	if (!best.ok) {
		stuck[w] = true;
		return true;
	}
	apply(b, best.pg, best.k, best.y);
	return true;
}

/*
 * Deployed placement sets of this pool (down members included: their data
 * is still there), as target indices of the new map; without a deployed
 * epoch, the sets the map gives now.
 */
static void load_prev(struct bal *b)
{
	if (!b->prev_pl) {
		memcpy(b->prev, b->cur, (size_t)b->P * b->R * sizeof(*b->prev));
		return;
	}
	for (uint32_t pg = 0; pg < b->P; pg++) {
		uint32_t raw[WF_MAX_REPLICAS], *pv = &b->prev[(size_t)pg * b->R];
		bool ov;
		unsigned n = wf_place_pg_final(b->prev_pl, b->pool, pg, raw, &ov);

		for (uint32_t i = 0; i < b->R; i++) {
			int t = i < n ? wf_placer_target(b->pl, b->prev_pl->map->targets[raw[i]].id) : -1;

			pv[i] = t < 0 ? WF_TARGET_NONE : (uint32_t)t;
		}
	}
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
 * restore the rendezvous order (an override disappears).
 */
static uint32_t balance_primaries(struct bal *b, const double *share, double dev)
{
	uint32_t N = b->N, R = b->R, swaps = 0;
	double *pd = calloc(N + 1, sizeof(*pd)), *band = calloc(N + 1, sizeof(*band));
	double *tgt = calloc(N + 1, sizeof(*tgt));
	bool *active = calloc(N + 1, sizeof(*active)), *stuck = calloc(N + 1, sizeof(*stuck));

	if (!pd || !band || !tgt || !active || !stuck || R < 2)
		goto out;
	for (uint32_t t = 0; t < N; t++) {
		tgt[t] = share[t] * b->P;
		pd[t] = -tgt[t];
		band[t] = fmax(1.0, dev * tgt[t]);
	}
	for (uint32_t pg = 0; pg < b->P; pg++)
		if (b->cur[(size_t)pg * R] != WF_TARGET_NONE)
			pd[b->cur[(size_t)pg * R]] += 1;

	while (swaps < b->P) {
		double worst = 0, best_gain = 0;
		uint32_t w = UINT32_MAX, bpg = 0, bk = 0;
		int best_pref = -1;

		for (uint32_t t = 0; t < N; t++) {
			double v = outside(pd[t], tgt[t], band[t]);

			if (b->fd[t] == WF_TARGET_NONE || stuck[t])
				continue;
			if (v > 1.5)
				active[t] = true;
			if (v < 0.5)
				active[t] = false;
			if (active[t] && v > worst) {
				worst = v;
				w = t;
			}
		}
		if (w == UINT32_MAX)
			break;
		for (uint32_t pg = 0; pg < b->P; pg++) {
			uint32_t *set = &b->cur[(size_t)pg * R];
			const uint32_t *base = &b->base[(size_t)pg * R];

			for (uint32_t k = 1; k < R; k++) {
				uint32_t x = set[0], y = set[k];
				double gain;
				int pref;

				if (x == WF_TARGET_NONE || y == WF_TARGET_NONE)
					continue;
				if (pd[w] > 0 ? x != w : y != w)
					continue;
				gain = pd[x] - pd[y];
				if (gain <= 1 + 1e-9)
					continue;
				/* 2: back to the rendezvous order, 1: already
				 * overridden, 0: a new override. */
				if (base[0] == y && base[k] == x &&
				    !memcmp(set + 1, base + 1, (k - 1) * sizeof(*set)) &&
				    !memcmp(set + k + 1, base + k + 1, (R - k - 1) * sizeof(*set)))
					pref = 2;
				else
					pref = memcmp(set, base, R * sizeof(*set)) ? 1 : 0;
				if (pref > best_pref || (pref == best_pref && gain > best_gain + 1e-9)) {
					best_pref = pref;
					best_gain = gain;
					bpg = pg;
					bk = k;
				}
			}
		}
		if (best_pref < 0) {
			stuck[w] = true;
			continue;
		}
		uint32_t *set = &b->cur[(size_t)bpg * R], x = set[0];

		set[0] = set[bk];
		set[bk] = x;
		pd[x] -= 1;
		pd[set[0]] += 1;
		swaps++;
	}
out:
	free(pd);
	free(band);
	free(tgt);
	free(active);
	free(stuck);
	return swaps;
}

static int balance_pool(struct bal *b, double max_dev, double primary_dev)
{
	uint32_t N = b->N, R = b->R;
	double *share = calloc(N ? N : 1, sizeof(*share));
	bool *stuck = calloc(N ? N : 1, sizeof(*stuck));
	double total = 0;
	int ret = -ENOMEM;

	if (!share || !stuck)
		goto out;
	ret = wf_pool_shares(b->pl, b->pool, share);
	if (ret)
		goto out;
	load_cur(b);
	load_prev(b);

	for (uint32_t t = 0; t < N; t++)
		b->dev[t] = 0;
	for (size_t i = 0; i < (size_t)b->P * R; i++) {
		if (b->cur[i] != WF_TARGET_NONE)
			b->dev[b->cur[i]] += 1;
		if (b->base[i] != WF_TARGET_NONE)
			total += 1;     /* what a full placement holds */
	}
	for (uint32_t t = 0; t < N; t++) {
		b->tgt[t] = share[t] * total;
		b->dev[t] -= b->tgt[t];
		b->band[t] = fmax(1.0, max_dev * b->tgt[t]);
	}

	fill_holes(b);
	while (b->moves < b->max_moves) {
		if (free_move(b))
			continue;
		if (!paid_move(b, stuck))
			break;
	}
	if (primary_dev > 0)
		b->swaps = balance_primaries(b, share, primary_dev);
	ret = 0;
out:
	free(share);
	free(stuck);
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
	bool have_ppl = false;
	int ret = 0;

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
		b.active = calloc(b.N + 1, sizeof(*b.active));
		ret = -ENOMEM;
		if (b.cur && b.base && b.prev && b.dev && b.band && b.tgt && b.active)
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
		free(b.cur);
		free(b.base);
		free(b.prev);
		free(b.dev);
		free(b.band);
		free(b.tgt);
		free(b.active);
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

/* ---- balance figures ---------------------------------------------------- */

int wf_pool_shares(const struct wf_placer *pl, uint32_t pool, double *share)
{
	const struct wf_map *map = pl->map;
	const struct wf_pl_pool *pp;
	double *fdw, *fds, total = 0;
	bool *capped;
	uint32_t nf;

	if (pool >= pl->npools)
		return -EINVAL;
	pp = &pl->pools[pool];
	nf = pp->nfds;
	for (uint32_t t = 0; t < map->ntargets; t++)
		share[t] = 0;
	if (nf == 0)
		return 0;
	fdw = calloc(nf, sizeof(*fdw));
	fds = calloc(nf, sizeof(*fds));
	capped = calloc(nf, sizeof(*capped));
	if (!fdw || !fds || !capped) {
		free(fdw);
		free(fds);
		free(capped);
		return -ENOMEM;
	}
	for (uint32_t r = 0; r < pp->nruns; r++) {
		fdw[pp->runs[r].fd] += (double)pp->runs[r].weight * pp->runs[r].n;
		total += (double)pp->runs[r].weight * pp->runs[r].n;
	}
	/*
	 * Water-fill: a failure domain holds at most one replica of each PG,
	 * i.e. at most 1/R of the pool's replicas; what a capped domain cannot
	 * take goes to the others in proportion to weight.
	 */
	if (nf <= pp->replicas) {
		for (uint32_t f = 0; f < nf; f++)
			fds[f] = 1.0 / nf;
	} else {
		double cap = 1.0 / pp->replicas, left = 1.0, wleft = total;
		bool again = true;

		while (again) {
			again = false;
			for (uint32_t f = 0; f < nf; f++) {
				if (capped[f])
					continue;
				fds[f] = left * fdw[f] / wleft;
				if (fds[f] > cap) {
					capped[f] = true;
					fds[f] = cap;
					left -= cap;
					wleft -= fdw[f];
					again = true;
					break;
				}
			}
		}
	}
	for (uint32_t r = 0; r < pp->nruns; r++) {
		const struct wf_pl_run *run = &pp->runs[r];

		for (uint32_t i = 0; i < run->n; i++)
			share[pp->target[run->first + i]] =
				fds[run->fd] * run->weight / fdw[run->fd];
	}
	free(fdw);
	free(fds);
	free(capped);
	return 0;
}

void wf_pg_counts(const struct wf_pg_table *t, uint32_t pool, uint32_t ntargets,
		  uint32_t *replicas, uint32_t *primaries)
{
	const struct wf_pg_pool_table *pt = &t->pools[pool];

	for (uint32_t i = 0; i < ntargets; i++) {
		if (replicas)
			replicas[i] = 0;
		if (primaries)
			primaries[i] = 0;
	}
	for (uint32_t pg = 0; pg < pt->pg_num; pg++) {
		const uint32_t *a = &pt->acting[(size_t)pg * pt->stride];

		for (unsigned i = 0; i < pt->n[pg]; i++) {
			if (a[i] >= ntargets)
				continue;
			if (replicas)
				replicas[a[i]]++;
			if (primaries && i == 0)
				primaries[a[i]]++;
		}
	}
}

void wf_load_stats(const double *load, const double *share, uint32_t n,
		   double *max_over_mean, double *cov)
{
	double total = 0, sum = 0, sq = 0, mx = 0;
	uint32_t k = 0;

	for (uint32_t i = 0; i < n; i++)
		total += load[i];
	for (uint32_t i = 0; i < n; i++) {
		double r;

		if (share[i] <= 0)
			continue;
		r = total > 0 ? load[i] / (share[i] * total) : 0;
		sum += r;
		sq += r * r;
		if (r > mx)
			mx = r;
		k++;
	}
	if (k == 0) {
		*max_over_mean = 0;
		*cov = 0;
		return;
	}
	*max_over_mean = mx;
	sum /= k;
	*cov = sum > 0 ? sqrt(fmax(sq / k - sum * sum, 0)) / sum : 0;
}
