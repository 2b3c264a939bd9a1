/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Devices ranked by deviation for the balancer: see rank.h.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "placement/placement.h"
#include "placement/rank.h"

#define NONE WF_TARGET_NONE
#define EPS  WF_RANK_EPS

static bool rank_better(const struct wf_rank *s, uint32_t a, uint32_t b)
{
	double d;

	if (a == NONE)
		return false;
	if (b == NONE)
		return true;
	d = (s->key[b] - s->key[a]) * s->dir;
	if (d > EPS)
		return true;
	if (d < -EPS)
		return false;
	return a < b;
}

uint32_t wf_rank_pick(const struct wf_rank *s, uint32_t a, uint32_t b)
{
	return rank_better(s, b, a) ? b : a;
}

static uint32_t rank_leaf(const struct wf_rank *s, uint32_t pos)
{
	uint32_t d;

	if (pos >= s->n)
		return NONE;
	d = s->leaf ? s->leaf[pos] : pos;
	return s->mask && s->mask[d] ? NONE : d;
}

/* Position pos changed (its key or mask): fix the path to the root. */
void wf_rank_fix(struct wf_rank *s, uint32_t pos)
{
	uint32_t i = s->size + pos;

	s->node[i] = rank_leaf(s, pos);
	for (i >>= 1; i; i >>= 1)
		s->node[i] = wf_rank_pick(s, s->node[2 * i], s->node[2 * i + 1]);
}

int wf_rank_init(struct wf_rank *s, uint32_t n, const uint32_t *leaf, const double *key,
		 int dir, const bool *mask)
{
	*s = (struct wf_rank){ .size = 1, .n = n, .leaf = leaf, .key = key, .dir = dir, .mask = mask };
	while (s->size < n)
		s->size <<= 1;
	s->node = malloc(2 * (size_t)s->size * sizeof(*s->node));
	if (!s->node)
		return -ENOMEM;
	for (uint32_t p = 0; p < s->size; p++)
		s->node[s->size + p] = rank_leaf(s, p);
	for (uint32_t i = s->size - 1; i; i--)
		s->node[i] = wf_rank_pick(s, s->node[2 * i], s->node[2 * i + 1]);
	return 0;
}

/* Best device at positions [lo, hi). */
uint32_t wf_rank_query(const struct wf_rank *s, uint32_t lo, uint32_t hi)
{
	uint32_t best = NONE;

	for (lo += s->size, hi += s->size; lo < hi; lo >>= 1, hi >>= 1) {
		if (lo & 1)
			best = wf_rank_pick(s, best, s->node[lo++]);
		if (hi & 1)
			best = wf_rank_pick(s, best, s->node[--hi]);
	}
	return best;
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

int wf_worst_init(struct wf_worst *w, uint32_t n, const uint32_t *fd, const double *dev,
		  const double *tgt, const double *band)
{
	*w = (struct wf_worst){ .dev = dev, .tgt = tgt, .band = band, .fd = fd };
	w->eff = calloc(n + 1, sizeof(*w->eff));
	w->active = calloc(n + 1, sizeof(*w->active));
	w->stuck = calloc(n + 1, sizeof(*w->stuck));
	w->isdirty = calloc(n + 1, sizeof(*w->isdirty));
	w->dirty = calloc(n + 1, sizeof(*w->dirty));
	if (!w->eff || !w->active || !w->stuck || !w->isdirty || !w->dirty)
		return -ENOMEM;
	for (uint32_t t = 0; t < n; t++) {
		w->dirty[t] = t;
		w->isdirty[t] = true;
	}
	w->ndirty = n;
	return wf_rank_init(&w->t, n, NULL, w->eff, -1, NULL);
}

void wf_worst_free(struct wf_worst *w)
{
	free(w->eff);
	free(w->active);
	free(w->stuck);
	free(w->isdirty);
	free(w->dirty);
	free(w->t.node);
}

void wf_worst_touch(struct wf_worst *w, uint32_t t)
{
	if (!w->isdirty[t]) {
		w->isdirty[t] = true;
		w->dirty[w->ndirty++] = t;
	}
}

void wf_worst_stuck(struct wf_worst *w, uint32_t t)
{
	w->stuck[t] = true;
	wf_worst_touch(w, t);
}

/* The device to fix next, or NONE when every device is in its band. */
uint32_t wf_worst_pick(struct wf_worst *w)
{
	uint32_t t;

	for (uint32_t i = 0; i < w->ndirty; i++) {
		double v = 0;

		t = w->dirty[i];
		w->isdirty[t] = false;
		if (w->fd[t] != NONE && !w->stuck[t]) {
			v = outside(w->dev[t], w->tgt[t], w->band[t]);
			if (v > 1.5)
				w->active[t] = true;
			if (v < 0.5)
				w->active[t] = false;
			if (!w->active[t])
				v = 0;
		}
		w->eff[t] = v;
		wf_rank_fix(&w->t, t);
	}
	w->ndirty = 0;
	t = w->t.node[1];
	return t != NONE && w->eff[t] > 0 ? t : NONE;
}
