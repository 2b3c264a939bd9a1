/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Placement: extent -> PG -> acting set.
 *
 *   pg     = XXH3_64(le64 volume id | le64 extent index, WF_PG_SEED) & (pg_num-1)
 *   acting = weighted rendezvous (straw2 draws) over the pool's devices, one
 *            replica per failure domain; then the map's PG overrides.
 *            A pool with algorithm "sparse" draws differently (a listed
 *            share of high draws per device) and ranks a PG's listed
 *            draws only when they decide; same properties otherwise.
 *
 * The algorithm is described, with its measured properties, in
 * docs/placement.md.  Everything here is integer arithmetic on fixed-width
 * types, so every host and build computes the same sets (the golden vectors
 * in tests/placement pin them).  Changing any output is a format change:
 * bump WF_PLACEMENT_VERSION.
 *
 * Use:
 *   wf_placer_init(&pl, map)          once per map epoch (allocates)
 *   wf_pg_table_build(&t, &pl)        once per map epoch (allocates), or
 *   wf_pg_table_derive(&t, &prev, ..) from the last epoch's table
 *   wf_place_extent(&t, map, vol, off, &loc) / wf_pg_acting(&t, pool, pg, &set)
 *                                     data path: no allocation, no locks
 */
#ifndef WEFT_PLACEMENT_PLACEMENT_H
#define WEFT_PLACEMENT_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "placement/map.h"

#define WF_PLACEMENT_VERSION 1
#define WF_PG_SEED      0x77656674u          /* "weft": seed of the extent -> PG hash */
#define WF_TARGET_NONE  UINT32_MAX           /* empty slot of an acting set */

/*
 * One candidate device of a pool, as the mapping loop wants it: its draw
 * for a PG is mum(pg_salt ^ a, b), mum the xor of the two halves of the
 * 128-bit product; a and b come from the device node's hash_id.
 */
struct wf_pl_dev {
	uint64_t a, b;
};

/*
 * A run of devices with one weight inside one failure domain.  Within a run
 * the best straw2 draw is simply the largest hash (ln is monotonic), so the
 * logarithm is taken once per run, not once per device.
 */
struct wf_pl_run {
	uint64_t inv_w;         /* floor(2^48 / weight), weight 16.16 > 0 */
	uint32_t first, n;      /* range in wf_pl_pool.devs */
	uint32_t weight;
	uint32_t fd;            /* failure domain ordinal within the pool */
};

/* WF_ALGO_SPARSE: a device's high draw in one PG (docs/placement.md). */
struct wf_pl_cand {
	uint32_t off;                   /* the draw is sparse_thr + (off << 32) *
	                                 * (2^64 - sparse_thr) / 2^64 */
	uint32_t dev;                   /* index into wf_pl_pool.devs */
};

struct wf_pl_pool {
	uint32_t pool_id;
	uint8_t  replicas;
	uint8_t  failure_domain;
	uint8_t  algorithm;             /* enum wf_pool_algorithm */
	uint32_t pg_num;
	uint32_t ndevs, nruns, nfds;
	struct wf_pl_dev *devs;
	uint32_t *target;               /* per dev: index into map->targets */
	uint32_t *hash_id;              /* per dev: tie-break, unique (target id) */
	struct wf_pl_run *runs;         /* sorted by fd */
	/* WF_ALGO_SPARSE only: */
	uint64_t sparse_thr;            /* draws at or above it are the high ones */
	uint64_t sparse_p64;            /* 2^64 - sparse_thr */
	uint64_t sparse_inv;            /* floor(2^64 / -log2(1 - p) in 32.32) */
	uint64_t sparse_bound;          /* a straw key below it cannot be beaten
	                                 * by a draw under sparse_thr */
	uint32_t *run_of;               /* per dev: its run */
	uint32_t *cand_off;             /* [pg_num + 1]: row of each PG in cand */
	struct wf_pl_cand *cand;        /* per PG, by dev */
};

/*
 * Compiled view of a map, built once per epoch.  Borrows the map: the map
 * must outlive the placer.  Per target: eligibility and failure domain node
 * for each pool's failure-domain type.
 */
struct wf_placer {
	const struct wf_map *map;
	uint32_t npools;
	struct wf_pl_pool *pools;
	uint32_t *fd_node;              /* [pool * ntargets + t]: node index of t's
	                                 * failure domain in that pool, or
	                                 * WF_TARGET_NONE when t is not eligible */
	uint32_t *by_id;                /* target indices sorted by target id */
	bool exhaustive;                /* tests: sparse pools always take the
	                                 * full evaluation, never the shortcut */
};

/* 0, or -ENOMEM / -EINVAL (a map the loader would not produce). */
int  wf_placer_init(struct wf_placer *pl, const struct wf_map *map);
void wf_placer_free(struct wf_placer *pl);

/* Index of the target with this id, or -ENOENT.  O(log n). */
int  wf_placer_target(const struct wf_placer *pl, uint32_t id);

/*
 * True if target index t may hold data for pool p: in, weight > 0, under
 * the root.  (Up/down does not matter to placement; see wf_pg_table.)
 */
bool wf_placer_eligible(const struct wf_placer *pl, uint32_t pool, uint32_t t);

/*
 * Acting set of one PG from scratch (no overrides): writes up to
 * pool.replicas target indices, primary first, into out[] and returns how
 * many (fewer than replicas only when the pool has fewer failure domains
 * with an eligible device).  Stack only; no allocation.  Down targets are
 * kept: placement is a function of weights and in/out only.
 */
unsigned wf_place_pg(const struct wf_placer *pl, uint32_t pool, uint32_t pg,
		     uint32_t out[WF_MAX_REPLICAS]);

/*
 * Whether a map override is usable: known pool and pg, n == replicas, every
 * target exists and is eligible, all distinct, one per failure domain.
 * On success writes the target indices into out[].
 */
bool wf_override_resolve(const struct wf_placer *pl, const struct wf_override *ov,
			 uint32_t out[WF_MAX_REPLICAS]);

/*
 * The first valid override of each PG of pool p (pool index), as
 * wf_place_pg_final() takes it, in one pass over the map's overrides:
 * ovi[pg] (pg < the pool's pg_num) its index in map->overrides, or -1;
 * with sets, its resolved set into sets[pg * stride ..] (stride at least
 * the pool's replicas).  No allocation.
 */
void wf_override_first(const struct wf_placer *pl, uint32_t p, int32_t *ovi,
		       uint32_t *sets, uint32_t stride);

/*
 * Placement set of one PG as the table holds it, before filtering down
 * targets: the first valid override for (pool, pg), else wf_place_pg().
 * Sets *overridden.  O(noverrides); table building uses an index instead.
 */
unsigned wf_place_pg_final(const struct wf_placer *pl, uint32_t pool, uint32_t pg,
			   uint32_t out[WF_MAX_REPLICAS], bool *overridden);

/* PG of an extent; pg_num a power of two. */
uint32_t wf_pg_of(uint64_t volume_id, uint64_t extent, uint32_t pg_num);

/* ---- per-epoch table --------------------------------------------------- */

struct wf_pg_pool_table {
	uint32_t  pg_num;
	uint32_t  stride;               /* == replicas */
	uint32_t *acting;               /* [pg * stride + i]: target index, primary
	                                 * first; WF_TARGET_NONE after the last */
	uint8_t  *n;                    /* members that are up, per PG */
	uint8_t  *placed;               /* members placed (incl. down), per PG */
	/* The up set: the placed members that are up, as placement (or an
	 * override) says.  It differs from the acting set only where the
	 * map pins the PG (pg_temp) while new members are brought up to
	 * date: those are up[] \ acting[]. */
	uint32_t *up;                   /* [pg * stride + i], WF_TARGET_NONE after */
	uint8_t  *nup;
};

/*
 * The acting sets of every PG of every pool for one epoch.  An acting set
 * holds the placed targets that are up, in placement order: a down target
 * keeps its place in the PG (no data moves for a short outage) but is not
 * acted on; the first up one is the primary.  Overrides that no longer fit
 * the map are ignored (the computed set is used).
 */
struct wf_pg_table {
	uint64_t epoch;
	uint32_t npools;
	uint32_t noverrides_used;       /* overrides honoured */
	uint32_t ntemps_used;           /* pg_temp entries honoured */
	struct wf_pg_pool_table *pools;
};

int  wf_pg_table_build(struct wf_pg_table *t, const struct wf_placer *pl);
void wf_pg_table_free(struct wf_pg_table *t);

/*
 * The table of the next epoch from the last one's, recomputing only the PGs
 * a change can affect, when the maps differ only in the weight, in/out or
 * up/down state of at most 64 targets (everything else placement reads:
 * hierarchy, pools, overrides, pg_temp, identical).  Otherwise it builds
 * the table from scratch (st->full).  prev stays valid and untouched.
 *
 * Which PGs: those with a changed target in their placed set, a down
 * member when a changed target was down (down members are not stored), or
 * an override or pin naming one; plus, for a target whose weight went up
 * or that came in, the PGs whose straws it now beats (the placed set is
 * the greedy basis of a partition matroid over the straws and only that
 * target's straw changed: one straw comparison per PG decides).  The
 * result equals wf_pg_table_build(t, pl) (tests/placement: randomised).
 * 0 or -ENOMEM.
 */
struct wf_pg_derive {
	bool     full;                  /* built from scratch */
	uint32_t changed_targets;
	uint64_t scanned;               /* PGs looked at */
	uint64_t recomputed;            /* PGs placed again */
	uint64_t changed;               /* of those, PGs whose sets differ */
};

int  wf_pg_table_derive(struct wf_pg_table *t, const struct wf_pg_table *prev,
			const struct wf_placer *prev_pl, const struct wf_placer *pl,
			struct wf_pg_derive *st);

/* Up set of (pool, pg) (struct wf_pg_pool_table.up); returns its size. */
static inline unsigned wf_pg_up(const struct wf_pg_table *t, uint32_t pool,
				uint32_t pg, const uint32_t **set)
{
	const struct wf_pg_pool_table *p = &t->pools[pool];

	pg &= p->pg_num - 1;
	*set = &p->up[(size_t)pg * p->stride];
	return p->nup[pg];
}

/* Data path: acting set of (pool, pg); returns the number of members. */
static inline unsigned wf_pg_acting(const struct wf_pg_table *t, uint32_t pool,
				    uint32_t pg, const uint32_t **set)
{
	const struct wf_pg_pool_table *p = &t->pools[pool];

	pg &= p->pg_num - 1;
	*set = &p->acting[(size_t)pg * p->stride];
	return p->n[pg];
}

/* Whether t is one of the n targets of set. */
static inline bool wf_set_has(const uint32_t *set, unsigned n, uint32_t t)
{
	for (unsigned i = 0; i < n; i++)
		if (set[i] == t)
			return true;
	return false;
}

/*
 * The newcomers of (pool, pg): members of its up set outside its acting
 * set (only while the map pins the PG, pg_temp), being brought up to date
 * by its primary.  Writes them to out (WF_MAX_REPLICAS); returns how many.
 */
static inline unsigned wf_pg_newcomers(const struct wf_pg_table *t, uint32_t pool,
				       uint32_t pg, uint32_t *out)
{
	const uint32_t *act, *up;
	unsigned na = wf_pg_acting(t, pool, pg, &act);
	unsigned nu = wf_pg_up(t, pool, pg, &up), n = 0;

	for (unsigned i = 0; i < nu; i++)
		if (!wf_set_has(act, na, up[i]))
			out[n++] = up[i];
	return n;
}

struct wf_extent_loc {
	uint64_t extent;                /* extent index in the volume */
	uint32_t pool;                  /* index into map->pools */
	uint32_t pg;
	unsigned n;                     /* members in acting[] */
	const uint32_t *acting;         /* target indices, primary first */
};

/*
 * Where the byte at offset of volume index vol lives.  0, -EINVAL (no such
 * volume) or -ERANGE (offset beyond the volume).  No allocation.
 */
int wf_place_extent(const struct wf_pg_table *t, const struct wf_map *map,
		    uint32_t vol, uint64_t offset, struct wf_extent_loc *loc);

/* ---- balance figures ---------------------------------------------------- */

/*
 * Ideal replica share of each target for a pool (sums to 1 over eligible
 * targets, 0 elsewhere): proportional to weight, water-filled so that no
 * failure domain is asked for more than one replica of every PG.
 */
int wf_pool_shares(const struct wf_placer *pl, uint32_t pool, double *share);

/* Replicas (all members) and primaries per target of one pool in a table. */
void wf_pg_counts(const struct wf_pg_table *t, uint32_t pool, uint32_t ntargets,
		  uint32_t *replicas, uint32_t *primaries);

/* max(load/expected) and coefficient of variation of load/expected over
 * targets with share > 0; expected = share * sum(load). */
void wf_load_stats(const double *load, const double *share, uint32_t n,
		   double *max_over_mean, double *cov);

/* ---- balancer (balance.c) ---------------------------------------------- */

struct wf_balance_opts {
	double   max_dev;       /* a device is out of balance when its PG count
	                         * differs from its target by more than
	                         * max(1, max_dev * target); default 0.01 */
	uint32_t max_moves;     /* cap on replica moves (0: pg_num * replicas) */
	double   primary_dev;   /* the same band for the PGs a device leads,
	                         * balanced by reordering acting sets (no data
	                         * moves); default 0.01, < 0 leaves primaries
	                         * to the rendezvous order */
	struct wf_balance_stats *stats; /* out, or NULL: what the run did */
};

/* What a wf_balance() run did and looked at (summed over pools). */
struct wf_balance_stats {
	uint64_t moves;         /* replica moves (as *moves) */
	uint64_t swaps;         /* primary reorders */
	uint64_t slots;         /* acting-set slots whose candidate moves were
	                         * weighed */
	uint64_t scanned;       /* slots looked at to find them */
	uint64_t searches;      /* neediest-device searches (a few segment-tree
	                         * range queries each) */
	uint64_t dirty_pgs;     /* most PGs differing from the deployed epoch at
	                         * once */
	uint64_t bytes;         /* working memory of the largest pool's run, at
	                         * its end (not counting the deployed map's
	                         * compiled placer, wf_placer_init) */
};

/*
 * Compute the PG overrides for the placer's map (its own overrides are the
 * starting point: still-valid ones are kept, invalid ones repaired).  prev,
 * when not NULL, is the map deployed now: moves that undo or redirect a
 * change against it are preferred, as they copy no extra data, and
 * overrides follow its rendezvous changes.  On success *out (malloc'd,
 * caller frees) holds *nout overrides sorted by (pool, pg), and *moves the
 * replica moves made (primary reorders not counted).
 */
int wf_balance(const struct wf_placer *pl, const struct wf_map *prev,
	       const struct wf_balance_opts *opts, struct wf_override **out,
	       uint32_t *nout, uint32_t *moves);

/* ---- synthetic maps and edits (map_edit.c) ----------------------------- */

/*
 * Maps built in code for benchmarks and tests.  Every array is allocated
 * separately with malloc, as the loader's are; wf_map_edit_free() is
 * wf_map_free().
 */
struct wf_synth {
	uint32_t racks, hosts_per_rack, devs_per_host;
	uint32_t weight;                /* 16.16 device weight */
	uint8_t  replicas, failure_domain;
	uint32_t pg_num;
	uint8_t  algorithm;             /* enum wf_pool_algorithm */
	uint32_t sparse_ppm;
};

int  wf_map_synth(struct wf_map *map, const struct wf_synth *s);
/* Deep copy of any map (loaded or synthetic). */
int  wf_map_copy(struct wf_map *dst, const struct wf_map *src);
/* Append a host with ndev devices of weight w under the bucket node
 * parent; target ids continue after the largest.  Returns the host's node
 * index or -errno. */
int  wf_map_add_host(struct wf_map *map, uint32_t parent, const char *name,
		     uint32_t ndev, uint32_t w);
/* Recompute the node weight sums from the targets' weights. */
void wf_map_reweigh(struct wf_map *map);
void wf_map_edit_free(struct wf_map *map);

/*
 * Before next replaces prev (a target marked up, in or out, reweighted,
 * overrides changed): pin (pg_temp) every PG whose up set in next has a
 * member outside prev's acting set for it, to prev's acting members that
 * are up in next, so reads and writes stay on members that hold the data
 * while the newcomers are brought up to date (docs/replication.md).  A PG
 * with no such holder left is not pinned (nothing could serve it).
 * Replaces next->temps.  Returns the number of PGs pinned, or -errno.
 */
int  wf_map_pin_moves(const struct wf_map *prev, struct wf_map *next);

#endif
