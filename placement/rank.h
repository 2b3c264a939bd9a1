/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Devices ranked by a key, for the balancer (balance.c): a segment tree
 * whose nodes hold the best device of their range, and on top of it the
 * device furthest out of its band, refreshed only where counts changed.
 * Not on the data path.
 */
#ifndef WEFT_PLACEMENT_RANK_H
#define WEFT_PLACEMENT_RANK_H

#include <stdbool.h>
#include <stdint.h>

#define WF_RANK_EPS 1e-9        /* keys closer than this are a tie */

/*
 * A segment tree over leaf positions: every node holds the best device of
 * its range (NONE if none) under one order of key[], ties to the lower
 * device index.  Masked devices are left out.
 */
struct wf_rank {
	uint32_t size;                  /* leaves, a power of two */
	uint32_t n;                     /* leaves in use */
	uint32_t *node;                 /* [2 * size], root at 1 */
	const uint32_t *leaf;           /* device at each position, NULL: itself */
	const double *key;
	int dir;                        /* +1: smallest key first, -1: largest */
	const bool *mask;               /* or NULL */
};

/* Build over n leaf positions (leaf[pos] the device there, NULL: pos
 * itself), ordered by key (dir +1: smallest first, -1: largest), masked
 * devices left out.  0 or -ENOMEM; free(s->node) after. */
int wf_rank_init(struct wf_rank *s, uint32_t n, const uint32_t *leaf, const double *key,
		 int dir, const bool *mask);
/* Position pos changed (its key or mask): fix the path to the root. */
void wf_rank_fix(struct wf_rank *s, uint32_t pos);
/* The better of two devices (either may be WF_TARGET_NONE). */
uint32_t wf_rank_pick(const struct wf_rank *s, uint32_t a, uint32_t b);
/* Best device at positions [lo, hi), or WF_TARGET_NONE. */
uint32_t wf_rank_query(const struct wf_rank *s, uint32_t lo, uint32_t hi);

/*
 * The device furthest out of its band, with hysteresis: a device is only
 * taken up once it is two PGs beyond its band, and then brought back
 * within the band.  Without it every device left at the edge of the band
 * by the last run would cost a move as soon as a map change nudges it.
 * Devices found stuck (no move helps them) are left alone.  Only the
 * devices whose count changed since the last pick are looked at again.
 */
struct wf_worst {
	struct wf_rank t;                 /* largest eff first */
	double *eff;                    /* outside() if being fixed, else 0 */
	bool *active, *stuck, *isdirty;
	uint32_t *dirty, ndirty;
	const double *dev, *tgt, *band;
	const uint32_t *fd;
};

/* Over n devices whose deviation, target and band are dev, tgt, band;
 * fd[t] WF_TARGET_NONE for ineligible ones.  0 or -ENOMEM. */
int  wf_worst_init(struct wf_worst *w, uint32_t n, const uint32_t *fd, const double *dev,
		   const double *tgt, const double *band);
void wf_worst_free(struct wf_worst *w);
/* t's deviation changed. */
void wf_worst_touch(struct wf_worst *w, uint32_t t);
/* No move helps t: leave it alone from now on. */
void wf_worst_stuck(struct wf_worst *w, uint32_t t);
/* The device to fix next, or WF_TARGET_NONE when every device is in its band. */
uint32_t wf_worst_pick(struct wf_worst *w);

#endif
