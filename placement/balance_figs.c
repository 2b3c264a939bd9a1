/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Balance figures: the share of a pool's replicas each target should hold,
 * the counts a table gives, and how far they are apart.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "placement/placement.h"

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
