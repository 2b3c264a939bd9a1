/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Placement: PG of an extent, acting set of a PG, the per-epoch table.
 *
 * The acting set of a PG is a weighted rendezvous (straw2) choice made
 * "down the hierarchy" in its coupled form: every eligible device draws
 * E = -log2(u) from a hash of (pool, pg, device); its straw is E / weight
 * (smaller is better, the same order as ln(u)/weight largest-first); the
 * straw of a bucket is the best straw of the devices below it.  The acting
 * set is the R failure domains with the best straws, each represented by
 * its best device, primary first.
 *
 * That is the same distribution as drawing once per bucket with the
 * bucket's summed weight (the minimum of independent exponential clocks is
 * an exponential clock with the summed rate), but a bucket's outcome is now
 * a function of its devices' draws only.  So a weight change inside one
 * bucket cannot shuffle PGs between other buckets, and removing or adding a
 * device changes at most one member of a PG (the acting set is the greedy
 * basis of a partition matroid).  No collisions happen, so no retries are
 * needed.  Cost: one hash per device and one logarithm per (failure domain,
 * weight) run, rather than one of each per level; see docs/placement.md.
 *
 * All arithmetic is on fixed-width integers: the logarithm is a checked-in
 * table with linear interpolation, a straw is that times a fixed-point
 * reciprocal of the weight, ties go to the larger draw, then to the
 * smaller hash_id.  tests/placement/reference.py is an independent model.
 */
#define _GNU_SOURCE             /* qsort_r */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "placement/log2_tab.h"
#include "placement/placement.h"

#define SALT_PG  0x5bd1e9955bd1e995ull
#define SALT_DEV 0x27d4eb2f165667c5ull
#define SALT_SPARSE 0x94d049bb133111ebull

/* murmur3's 64-bit finalizer: a bijection with full avalanche. */
static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/*
 * -log2(x / 2^64) in 32.32 fixed point, for the 64-bit hash x (0 counts as
 * 1).  Table lookup on the 10 bits after the leading one, linear
 * interpolation on the next 32: absolute error below 2e-7, i.e. 2e-5
 * relative at the straws that win among a hundred devices.  Result > 0.
 */
static inline uint64_t nlog2(uint64_t x)
{
	unsigned lz, i;
	uint64_t f, r, lo;

	x += (x == 0);
	lz = (unsigned)__builtin_clzll(x);
	f = (x << lz) << 1;                     /* mantissa bits after the 1 */
	i = (unsigned)(f >> 54);
	r = (f >> 22) & 0xffffffffull;
	lo = wf_pl_log2_tab[i];
	lo += ((wf_pl_log2_tab[i + 1] - lo) * r) >> 32;
	return ((uint64_t)(lz + 1) << 32) - lo;
}

/*
 * The draw of a device: the xor of the two halves of a 64x64->128 bit
 * product (wyhash's "mum"), one multiply.  pg_salt is already a full
 * avalanche of (pool, pg), and a, b are per-device random constants.
 */
static inline uint64_t mum(uint64_t x, uint64_t y)
{
#if defined(__x86_64__) && defined(__GNUC__)
	/* The same product, spelled out: GCC 12 otherwise may bounce the two
	 * halves of the __int128 through the stack in the device loop. */
	uint64_t lo, hi;

	__asm__("mulq %3" : "=a"(lo), "=d"(hi) : "a"(x), "rm"(y) : "cc");
	return lo ^ hi;
#else
	unsigned __int128 m = (unsigned __int128)x * y;

	return (uint64_t)m ^ (uint64_t)(m >> 64);
#endif
}

/*
 * Straw of a device: key = E / weight in 32.32 (E = nlog2(u)), computed as
 * E * floor(2^48 / w) >> 32 so comparing straws is one integer compare.
 * Smaller is better; the rounding is deterministic and only matters for
 * straws within 2^-32 of each other.  Ties go to the larger draw, then to
 * the smaller hash_id.
 */
struct straw {
	uint64_t key;
	uint64_t u;             /* the draw */
	uint64_t inv_w;
	uint32_t dev;           /* index into wf_pl_pool.devs */
	uint32_t hash_id;
	uint32_t fd;
};

static inline bool straw_better(const struct straw *a, const struct straw *b)
{
	if (a->key != b->key)
		return a->key < b->key;
	if (a->u != b->u)
		return a->u > b->u;
	return a->hash_id < b->hash_id;
}

static inline uint64_t straw_key(uint64_t e, uint64_t inv_w)
{
	return (uint64_t)(((unsigned __int128)e * inv_w) >> 32);
}

static inline uint64_t pg_salt(uint32_t pool_id, uint32_t pg)
{
	return mix64((((uint64_t)pool_id << 32) | pg) ^ SALT_PG);
}

/*
 * Keep the best straw of each failure domain, the best cap domains sorted
 * best first.  Returns whether s got in.
 */
static inline __attribute__((always_inline)) bool
top_insert(struct straw *top, unsigned *n, unsigned cap,
			      const struct straw *s)
{
	unsigned i = *n, j;

	if (i == cap && !straw_better(s, &top[cap - 1]))
		return false;
	for (j = 0; j < *n; j++)
		if (top[j].fd == s->fd)
			break;
	if (j < *n) {
		if (!straw_better(s, &top[j]))
			return false;
		i = j;                  /* a better device of a listed domain */
	} else if (i == cap) {
		i--;
	} else {
		(*n)++;
	}
	while (i > 0 && straw_better(s, &top[i - 1])) {
		top[i] = top[i - 1];
		i--;
	}
	top[i] = *s;
	return true;
}

/* High 64 bits of x * y. */
static inline uint64_t mulhi(uint64_t x, uint64_t y)
{
	return (uint64_t)(((unsigned __int128)x * y) >> 64);
}

/* The high draw of a candidate. */
static inline uint64_t cand_u(const struct wf_pl_pool *pp, const struct wf_pl_cand *c)
{
	return pp->sparse_thr + mulhi((uint64_t)c->off << 32, pp->sparse_p64);
}

/*
 * Every device draws; the R failure domains with the best straws win.  For
 * a sparse pool (sparse == true, a constant where it is inlined) a device's
 * draw is its high draw when the PG is in its list (c..ce, sorted by dev),
 * else the hash scaled below sparse_thr.
 */
static inline __attribute__((always_inline)) unsigned
place_all(const struct wf_pl_pool *pp, uint32_t pg, uint32_t out[WF_MAX_REPLICAS],
	  bool sparse, const struct wf_pl_cand *c, const struct wf_pl_cand *ce)
{
	const struct wf_pl_dev *devs = pp->devs;
	const struct wf_pl_run *run, *rend = pp->runs + pp->nruns;
	struct straw top[WF_MAX_REPLICAS];
	unsigned ntop = 0, cap = pp->replicas;
	uint64_t salt = pg_salt(pp->pool_id, pg);
	uint64_t thr_u = 0, thr_w = 0;  /* draw and weight of top[cap - 1] */

	for (run = pp->runs; run < rend; run++) {
		const struct wf_pl_dev *d = devs + run->first, *dend = d + run->n, *bd = d;
		uint64_t best = mum(salt ^ d->a, d->b);
		struct straw s;

		if (sparse)
			best = mulhi(best, pp->sparse_thr);
		/* Same weight: the largest draw has the best straw. */
		for (d++; d < dend; d++) {
			uint64_t u = mum(salt ^ d->a, d->b);
			bool win;

			if (sparse)
				u = mulhi(u, pp->sparse_thr);
			win = u > best;
			/* Written to become conditional moves: the outcome
			 * is a coin flip, a branch would mispredict half the
			 * time. */
			best = win ? u : best;
			bd = win ? d : bd;
		}
		/* A high draw of the run beats every other draw of it. */
		for (; sparse && c < ce && c->dev < run->first + run->n; c++) {
			if (c->dev < run->first)
				continue;
			uint64_t cu = cand_u(pp, c);

			if (cu > best || (cu == best && devs + c->dev < bd)) {
				best = cu;
				bd = devs + c->dev;
			}
		}
		/*
		 * Same weight as the last of a full list and a smaller draw:
		 * the straw cannot get in (the key is monotonic in the draw
		 * and ties go to the larger draw), so skip the logarithm.
		 */
		if (best < thr_u && run->inv_w == thr_w)
			continue;
		s.key = straw_key(nlog2(best), run->inv_w);
		s.u = best;
		s.inv_w = run->inv_w;
		s.dev = (uint32_t)(bd - devs);
		s.hash_id = pp->hash_id[s.dev];
		s.fd = run->fd;
		if (top_insert(top, &ntop, cap, &s) && ntop == cap) {
			thr_u = top[cap - 1].u;
			thr_w = top[cap - 1].inv_w;
		}
	}
	for (unsigned i = 0; i < ntop; i++)
		out[i] = pp->target[top[i].dev];
	return ntop;
}

/*
 * Sparse pool: the PG's high draws alone decide when the R-th best of them
 * has a straw no draw under sparse_thr can reach (sparse_bound: the
 * heaviest device's straw for the largest such draw); else every device
 * draws (place_all), which is the definition.
 */
static __attribute__((noinline)) unsigned
place_sparse(const struct wf_placer *pl, const struct wf_pl_pool *pp, uint32_t pg,
	     uint32_t out[WF_MAX_REPLICAS])
{
	const struct wf_pl_cand *c = pp->cand + pp->cand_off[pg];
	const struct wf_pl_cand *ce = pp->cand + pp->cand_off[pg + 1];
	struct straw top[WF_MAX_REPLICAS];
	unsigned ntop = 0, cap = pp->replicas;

	if (pl->exhaustive)
		return place_all(pp, pg, out, true, c, ce);
	for (const struct wf_pl_cand *x = c; x < ce; x++) {
		const struct wf_pl_run *run = &pp->runs[pp->run_of[x->dev]];
		struct straw s;

		s.u = cand_u(pp, x);
		s.key = straw_key(nlog2(s.u), run->inv_w);
		s.inv_w = run->inv_w;
		s.dev = x->dev;
		s.hash_id = pp->hash_id[x->dev];
		s.fd = run->fd;
		top_insert(top, &ntop, cap, &s);
	}
	if (ntop < cap || top[cap - 1].key >= pp->sparse_bound)
		return place_all(pp, pg, out, true, c, ce);
	for (unsigned i = 0; i < ntop; i++)
		out[i] = pp->target[top[i].dev];
	return ntop;
}

static inline unsigned
place_straw2(const struct wf_pl_pool *pp, uint32_t pg, uint32_t out[WF_MAX_REPLICAS])
{
	return place_all(pp, pg, out, false, NULL, NULL);
}

unsigned wf_place_pg(const struct wf_placer *pl, uint32_t pool, uint32_t pg,
		     uint32_t out[WF_MAX_REPLICAS])
{
	const struct wf_pl_pool *pp = &pl->pools[pool];

	if (pp->algorithm == WF_ALGO_SPARSE)
		return place_sparse(pl, pp, pg, out);
	return place_straw2(pp, pg, out);
}

uint32_t wf_pg_of(uint64_t volume_id, uint64_t extent, uint32_t pg_num)
{
	uint8_t b[16];

	/* Little-endian bytes whatever the host, so every host agrees. */
	for (int i = 0; i < 8; i++) {
		b[i] = (uint8_t)(volume_id >> (8 * i));
		b[8 + i] = (uint8_t)(extent >> (8 * i));
	}
	return (uint32_t)XXH3_64bits_withSeed(b, sizeof(b), WF_PG_SEED) & (pg_num - 1);
}

/* ---- compiling a map ---------------------------------------------------- */

/* Failure domain node of a device node for type fdt, or -1 when the device
 * does not hang under nodes[0] (the root). */
static int64_t fd_of(const struct wf_map *map, uint32_t node, uint8_t fdt)
{
	int64_t fd = -1;
	uint32_t n = node;

	for (uint32_t steps = 0; steps <= map->nnodes; steps++) {
		const struct wf_node *nd = &map->nodes[n];

		if (fd < 0 && nd->type >= fdt)
			fd = n;
		if (nd->parent < 0)
			return n == 0 ? fd : -1;
		if ((uint32_t)nd->parent >= map->nnodes)
			return -1;
		n = (uint32_t)nd->parent;
	}
	return -1;                      /* a cycle */
}

struct sort_key {
	uint32_t fd, weight, hash_id, target;
};

static int key_cmp(const void *a, const void *b)
{
	const struct sort_key *x = a, *y = b;

	if (x->fd != y->fd)
		return x->fd < y->fd ? -1 : 1;
	if (x->weight != y->weight)
		return x->weight < y->weight ? -1 : 1;
	if (x->hash_id != y->hash_id)
		return x->hash_id < y->hash_id ? -1 : 1;
	return 0;
}

static int id_cmp(const void *a, const void *b, void *ctx)
{
	const struct wf_map *map = ctx;
	uint32_t x = map->targets[*(const uint32_t *)a].id;
	uint32_t y = map->targets[*(const uint32_t *)b].id;

	return x < y ? -1 : x > y;
}

/* The k-th number of a device's stream (splitmix64's step). */
static inline uint64_t stream(uint64_t seed, uint64_t k)
{
	return mix64(seed + k * 0x9e3779b97f4a7c15ull);
}

/*
 * A device's walk over the PGs: its stops are where it draws high.  Gaps
 * are geometric: gap = E * inv >> 64, E = -log2 of a uniform 64-bit number
 * from the device's own stream (number k for the k-th gap) and inv =
 * 2^64 / -log2(1 - p), so P(gap >= g) = (1 - p)^g.  At the k-th stop the
 * draw's 32 bits come from stream number k | 2^63.
 */
struct walker {
	uint64_t seed, pos, k;          /* pos: the k-th stop */
};

static inline void walk_start(const struct wf_pl_pool *pp, uint32_t d, struct walker *w)
{
	w->seed = mix64((((uint64_t)pp->pool_id << 32) | pp->hash_id[d]) ^ SALT_SPARSE);
	w->k = 0;
	w->pos = mulhi(nlog2(stream(w->seed, 0)), pp->sparse_inv);
}

static inline void walk_next(const struct wf_pl_pool *pp, struct walker *w)
{
	w->k++;
	w->pos += 1 + mulhi(nlog2(stream(w->seed, w->k)), pp->sparse_inv);
}

#define SPARSE_CHUNK 2048               /* PGs filled at a time */

/*
 * The high draws of a sparse pool, PG by PG: each device stops at a share
 * p = sparse_ppm / 10^6 of the PGs and draws there uniformly in
 * [2^64 (1 - p), 2^64).  The stops depend on neither pg_num (a PG split
 * keeps the low PGs' draws) nor any other device or weight.  The rows are
 * filled a chunk of PGs at a time, every device walking through the
 * chunk, so the writes stay in cache; rows list devices in dev order.
 */
static int compile_sparse(struct wf_pl_pool *pp, uint32_t ppm)
{
	uint64_t p64 = (uint64_t)(((unsigned __int128)ppm << 64) / 1000000u);
	uint64_t min_inv = UINT64_MAX;
	size_t cap = 1024 + (size_t)((double)pp->pg_num * pp->ndevs * (ppm / 1e6) * 1.05);
	size_t tcap = 1024, base = 0;
	struct walker *w = malloc(((size_t)pp->ndevs + 1) * sizeof(*w));
	struct { uint32_t pg, dev, off; } *tmp = malloc(tcap * sizeof(*tmp));
	uint32_t cnt[SPARSE_CHUNK + 1];
	int ret = -ENOMEM;

	pp->sparse_p64 = p64;
	pp->sparse_thr = (uint64_t)0 - p64;
	pp->sparse_inv = UINT64_MAX / nlog2(pp->sparse_thr);
	pp->run_of = calloc(pp->ndevs + 1, sizeof(*pp->run_of));
	pp->cand_off = calloc((size_t)pp->pg_num + 1, sizeof(*pp->cand_off));
	pp->cand = malloc(cap * sizeof(*pp->cand));
	if (!w || !tmp || !pp->run_of || !pp->cand_off || !pp->cand)
		goto out;
	for (uint32_t r = 0; r < pp->nruns; r++) {
		for (uint32_t i = 0; i < pp->runs[r].n; i++)
			pp->run_of[pp->runs[r].first + i] = r;
		if (pp->runs[r].inv_w < min_inv)
			min_inv = pp->runs[r].inv_w;
	}
	/* The best straw any draw below thr can have: the heaviest device's. */
	pp->sparse_bound = straw_key(nlog2(pp->sparse_thr - 1), min_inv);
	for (uint32_t d = 0; d < pp->ndevs; d++)
		walk_start(pp, d, &w[d]);
	for (uint32_t lo = 0; lo < pp->pg_num; lo += SPARSE_CHUNK) {
		uint32_t hi = pp->pg_num - lo < SPARSE_CHUNK ? pp->pg_num : lo + SPARSE_CHUNK;
		size_t nt = 0;

		for (uint32_t d = 0; d < pp->ndevs; d++) {
			for (; w[d].pos < hi; walk_next(pp, &w[d])) {
				if (nt == tcap) {
					void *nb = realloc(tmp, (tcap *= 2) * sizeof(*tmp));

					if (!nb)
						goto out;
					tmp = nb;
				}
				tmp[nt].pg = (uint32_t)w[d].pos - lo;
				tmp[nt].dev = d;
				tmp[nt].off = (uint32_t)(stream(w[d].seed, w[d].k | 1ull << 63) >> 32);
				nt++;
			}
		}
		if (base + nt > UINT32_MAX)     /* rows are indexed by uint32_t */
			goto out;
		if (base + nt > cap) {
			void *nc;

			cap = (base + nt) * 2;
			nc = realloc(pp->cand, cap * sizeof(*pp->cand));
			if (!nc)
				goto out;
			pp->cand = nc;
		}
		/* Counting sort of the chunk by PG, stable: dev order kept. */
		memset(cnt, 0, sizeof(cnt));
		for (size_t i = 0; i < nt; i++)
			cnt[tmp[i].pg + 1]++;
		for (uint32_t i = 0; i < hi - lo; i++) {
			cnt[i + 1] += cnt[i];
			pp->cand_off[lo + i] = (uint32_t)(base + cnt[i]);
		}
		for (size_t i = 0; i < nt; i++)
			pp->cand[base + cnt[tmp[i].pg]++] = (struct wf_pl_cand){ tmp[i].off, tmp[i].dev };
		base += nt;
	}
	pp->cand_off[pp->pg_num] = (uint32_t)base;
	ret = 0;
out:
	free(w);
	free(tmp);
	return ret;
}

static int compile_pool(struct wf_placer *pl, uint32_t p, struct sort_key *keys)
{
	const struct wf_map *map = pl->map;
	const struct wf_pool *pool = &map->pools[p];
	struct wf_pl_pool *pp = &pl->pools[p];
	uint32_t *fdn = &pl->fd_node[(size_t)p * map->ntargets];
	uint32_t n = 0;

	if (pool->replicas < 1 || pool->replicas > WF_MAX_REPLICAS ||
	    pool->pg_num == 0 || (pool->pg_num & (pool->pg_num - 1)))
		return -EINVAL;
	pp->pool_id = pool->id;
	pp->replicas = pool->replicas;
	pp->failure_domain = pool->failure_domain;
	pp->pg_num = pool->pg_num;

	for (uint32_t t = 0; t < map->ntargets; t++) {
		const struct wf_target *tg = &map->targets[t];
		int64_t fd;

		fdn[t] = WF_TARGET_NONE;
		if (!tg->in || tg->weight == 0 || tg->node >= map->nnodes ||
		    map->nodes[tg->node].type != WF_NODE_DEVICE)
			continue;
		fd = fd_of(map, tg->node, pool->failure_domain);
		if (fd < 0)
			continue;
		fdn[t] = (uint32_t)fd;
		keys[n++] = (struct sort_key){ (uint32_t)fd, tg->weight,
					       map->nodes[tg->node].hash_id, t };
	}
	qsort(keys, n, sizeof(*keys), key_cmp);

	pp->devs = calloc(n ? n : 1, sizeof(*pp->devs));
	pp->target = calloc(n ? n : 1, sizeof(*pp->target));
	pp->hash_id = calloc(n ? n : 1, sizeof(*pp->hash_id));
	pp->runs = calloc(n ? n : 1, sizeof(*pp->runs));
	if (!pp->devs || !pp->target || !pp->hash_id || !pp->runs)
		return -ENOMEM;
	pp->ndevs = n;
	for (uint32_t i = 0; i < n; i++) {
		struct wf_pl_dev *d = &pp->devs[i];

		pp->target[i] = keys[i].target;
		pp->hash_id[i] = keys[i].hash_id;
		d->a = mix64((uint64_t)keys[i].hash_id * 0x9e3779b97f4a7c15ull + SALT_DEV);
		d->b = mix64(d->a ^ SALT_PG) | 1;
		if (i == 0 || keys[i].fd != keys[i - 1].fd)
			pp->nfds++;
		if (i == 0 || keys[i].fd != keys[i - 1].fd ||
		    keys[i].weight != keys[i - 1].weight) {
			pp->runs[pp->nruns++] = (struct wf_pl_run){
				.inv_w = (1ull << 48) / keys[i].weight,
				.first = i, .n = 0, .weight = keys[i].weight,
				.fd = pp->nfds - 1 };
		}
		pp->runs[pp->nruns - 1].n++;
	}
	pp->algorithm = pool->algorithm;
	if (pool->algorithm == WF_ALGO_SPARSE) {
		if (pool->sparse_ppm < 1 || pool->sparse_ppm > WF_SPARSE_PPM_MAX)
			return -EINVAL;
		return compile_sparse(pp, pool->sparse_ppm);
	} else if (pool->algorithm != WF_ALGO_STRAW2) {
		return -EINVAL;
	}
	return 0;
}

int wf_placer_init(struct wf_placer *pl, const struct wf_map *map)
{
	struct sort_key *keys = NULL;
	int ret = -ENOMEM;

	memset(pl, 0, sizeof(*pl));
	pl->map = map;
	pl->npools = map->npools;
	pl->pools = calloc(map->npools ? map->npools : 1, sizeof(*pl->pools));
	pl->fd_node = calloc((size_t)map->npools * map->ntargets + 1, sizeof(*pl->fd_node));
	pl->by_id = calloc(map->ntargets + 1, sizeof(*pl->by_id));
	keys = calloc(map->ntargets + 1, sizeof(*keys));
	if (!pl->pools || !pl->fd_node || !pl->by_id || !keys)
		goto out_free;
	for (uint32_t t = 0; t < map->ntargets; t++)
		pl->by_id[t] = t;
	qsort_r(pl->by_id, map->ntargets, sizeof(*pl->by_id), id_cmp, (void *)map);
	for (uint32_t p = 0; p < map->npools; p++) {
		ret = compile_pool(pl, p, keys);
		if (ret)
			goto out_free;
	}
	free(keys);
	return 0;

out_free:
	free(keys);
	wf_placer_free(pl);
	return ret;
}

void wf_placer_free(struct wf_placer *pl)
{
	if (pl->pools) {
		for (uint32_t p = 0; p < pl->npools; p++) {
			free(pl->pools[p].devs);
			free(pl->pools[p].target);
			free(pl->pools[p].hash_id);
			free(pl->pools[p].runs);
			free(pl->pools[p].run_of);
			free(pl->pools[p].cand_off);
			free(pl->pools[p].cand);
		}
	}
	free(pl->pools);
	free(pl->fd_node);
	free(pl->by_id);
	memset(pl, 0, sizeof(*pl));
}

int wf_placer_target(const struct wf_placer *pl, uint32_t id)
{
	uint32_t lo = 0, hi = pl->map->ntargets;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		uint32_t mid_id = pl->map->targets[pl->by_id[mid]].id;

		if (mid_id == id)
			return (int)pl->by_id[mid];
		if (mid_id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

bool wf_placer_eligible(const struct wf_placer *pl, uint32_t pool, uint32_t t)
{
	return pool < pl->npools && t < pl->map->ntargets &&
	       pl->fd_node[(size_t)pool * pl->map->ntargets + t] != WF_TARGET_NONE;
}

bool wf_override_resolve(const struct wf_placer *pl, const struct wf_override *ov,
			 uint32_t out[WF_MAX_REPLICAS])
{
	const struct wf_map *map = pl->map;
	const uint32_t *fdn;

	if (ov->pool >= pl->npools)
		return false;
	if (ov->pg >= pl->pools[ov->pool].pg_num || ov->n != pl->pools[ov->pool].replicas)
		return false;
	fdn = &pl->fd_node[(size_t)ov->pool * map->ntargets];
	for (unsigned i = 0; i < ov->n; i++) {
		int t = wf_placer_target(pl, ov->target[i]);

		if (t < 0 || fdn[t] == WF_TARGET_NONE)
			return false;
		out[i] = (uint32_t)t;
		for (unsigned j = 0; j < i; j++)
			if (fdn[out[j]] == fdn[t])      /* also catches duplicates */
				return false;
	}
	return true;
}

unsigned wf_place_pg_final(const struct wf_placer *pl, uint32_t pool, uint32_t pg,
			   uint32_t out[WF_MAX_REPLICAS], bool *overridden)
{
	const struct wf_map *map = pl->map;

	for (uint32_t i = 0; i < map->noverrides; i++) {
		const struct wf_override *ov = &map->overrides[i];

		if (ov->pool == pool && ov->pg == pg && wf_override_resolve(pl, ov, out)) {
			*overridden = true;
			return ov->n;
		}
	}
	*overridden = false;
	return wf_place_pg(pl, pool, pg, out);
}

void wf_override_first(const struct wf_placer *pl, uint32_t p, int32_t *ovi,
		       uint32_t *sets, uint32_t stride)
{
	const struct wf_map *map = pl->map;
	uint32_t pg_num = pl->pools[p].pg_num;

	for (uint32_t pg = 0; pg < pg_num; pg++)
		ovi[pg] = -1;
	/* First valid override of each PG wins. */
	for (uint32_t i = 0; i < map->noverrides; i++) {
		const struct wf_override *ov = &map->overrides[i];
		uint32_t tmp[WF_MAX_REPLICAS];

		if (ov->pool == p && ov->pg < pg_num && ovi[ov->pg] < 0 &&
		    wf_override_resolve(pl, ov, sets ? &sets[(size_t)ov->pg * stride] : tmp))
			ovi[ov->pg] = (int32_t)i;
	}
}

/* ---- the per-epoch table ------------------------------------------------ */

/*
 * Per-PG indexes of one pool for building a table: the first valid
 * override of each PG (ovi, -1 for none) and its pg_temp entry (tmi).
 */
static void pool_index(const struct wf_placer *pl, uint32_t p, int32_t *ovi, int32_t *tmi)
{
	const struct wf_map *map = pl->map;
	uint32_t pg_num = pl->pools[p].pg_num;

	wf_override_first(pl, p, ovi, NULL, 0);
	for (uint32_t pg = 0; pg < pg_num; pg++)
		tmi[pg] = -1;
	/* pg_temp: the pinned acting set of a PG, if any. */
	for (uint32_t i = 0; i < map->ntemps; i++)
		if (map->temps[i].pool == p && map->temps[i].pg < pg_num)
			tmi[map->temps[i].pg] = (int32_t)i;
}

/* Placement, up and acting sets of one PG into the table. */
static void fill_pg(const struct wf_placer *pl, struct wf_pg_pool_table *pt, uint32_t p,
		    uint32_t pg, int32_t oi, int32_t ti)
{
	const struct wf_map *map = pl->map;
	uint32_t set[WF_MAX_REPLICAS], *a = &pt->acting[(size_t)pg * pt->stride];
	uint32_t *u = &pt->up[(size_t)pg * pt->stride];
	unsigned n, up = 0, act = 0;

	if (oi >= 0)
		n = wf_override_resolve(pl, &map->overrides[oi], set) ? pt->stride : 0;
	else
		n = wf_place_pg(pl, p, pg, set);
	for (unsigned i = 0; i < n; i++)
		if (map->targets[set[i]].up)
			u[up++] = set[i];
	pt->placed[pg] = (uint8_t)n;
	pt->nup[pg] = (uint8_t)up;
	for (unsigned i = up; i < pt->stride; i++)
		u[i] = WF_TARGET_NONE;
	if (ti >= 0) {
		/* Pinned: the members that hold the data and are up serve;
		 * the up set's others are brought up to date meanwhile. */
		const struct wf_override *tm = &map->temps[ti];

		for (unsigned i = 0; i < tm->n && act < pt->stride; i++) {
			int x = wf_placer_target(pl, tm->target[i]);

			if (x >= 0 && map->targets[x].up)
				a[act++] = (uint32_t)x;
		}
	} else {
		memcpy(a, u, up * sizeof(*a));
		act = up;
	}
	pt->n[pg] = (uint8_t)act;
	for (unsigned i = act; i < pt->stride; i++)
		a[i] = WF_TARGET_NONE;
}

/* Allocate the tables of every pool (contents undefined) and the index
 * scratch *ovi (2 * (max pg_num + 1) entries). */
static int table_alloc(struct wf_pg_table *t, const struct wf_placer *pl, int32_t **ovi)
{
	uint32_t maxpg = 0;

	memset(t, 0, sizeof(*t));
	t->epoch = pl->map->epoch;
	t->npools = pl->npools;
	t->pools = calloc(pl->npools ? pl->npools : 1, sizeof(*t->pools));
	if (!t->pools)
		return -ENOMEM;
	for (uint32_t p = 0; p < pl->npools; p++) {
		const struct wf_pl_pool *pp = &pl->pools[p];
		struct wf_pg_pool_table *pt = &t->pools[p];

		if (pp->pg_num > maxpg)
			maxpg = pp->pg_num;
		pt->pg_num = pp->pg_num;
		pt->stride = pp->replicas;
		pt->acting = malloc((size_t)pp->pg_num * pp->replicas * sizeof(*pt->acting));
		pt->n = calloc(pp->pg_num, 1);
		pt->placed = calloc(pp->pg_num, 1);
		pt->up = malloc((size_t)pp->pg_num * pp->replicas * sizeof(*pt->up));
		pt->nup = calloc(pp->pg_num, 1);
		if (!pt->acting || !pt->n || !pt->placed || !pt->up || !pt->nup)
			goto out_free;
	}
	*ovi = malloc(((size_t)maxpg + 1) * 2 * sizeof(**ovi));
	if (*ovi)
		return 0;
out_free:
	wf_pg_table_free(t);
	return -ENOMEM;
}

int wf_pg_table_build(struct wf_pg_table *t, const struct wf_placer *pl)
{
	int32_t *ovi;
	int ret = table_alloc(t, pl, &ovi);

	if (ret)
		return ret;
	for (uint32_t p = 0; p < pl->npools; p++) {
		struct wf_pg_pool_table *pt = &t->pools[p];
		int32_t *tmi = ovi + pt->pg_num;

		pool_index(pl, p, ovi, tmi);
		for (uint32_t pg = 0; pg < pt->pg_num; pg++) {
			fill_pg(pl, pt, p, pg, ovi[pg], tmi[pg]);
			t->noverrides_used += ovi[pg] >= 0;
			t->ntemps_used += tmi[pg] >= 0;
		}
	}
	free(ovi);
	return 0;
}

/* ---- the next epoch's table from the last one --------------------------- */

/* Whether two maps differ at most in targets' weight, in and up (and in
 * what placement ignores: epoch, names, addresses, volumes, node weight
 * sums).  Fills changed[] with the target indices that differ, up to max;
 * *nchanged = max + 1 when there are more. */
static bool same_shape(const struct wf_map *a, const struct wf_map *b, uint32_t *changed,
		       uint32_t max, uint32_t *nchanged)
{
	*nchanged = 0;
	if (a->ntargets != b->ntargets || a->nnodes != b->nnodes || a->nchild != b->nchild ||
	    a->npools != b->npools || a->noverrides != b->noverrides || a->ntemps != b->ntemps)
		return false;
	if (memcmp(a->child, b->child, a->nchild * sizeof(*a->child)))
		return false;
	for (uint32_t i = 0; i < a->nnodes; i++) {
		const struct wf_node *x = &a->nodes[i], *y = &b->nodes[i];

		if (x->type != y->type || x->parent != y->parent || x->hash_id != y->hash_id ||
		    x->first_child != y->first_child || x->nchild != y->nchild ||
		    (x->type == WF_NODE_DEVICE && x->target != y->target))
			return false;
	}
	for (uint32_t i = 0; i < a->npools; i++) {
		const struct wf_pool *x = &a->pools[i], *y = &b->pools[i];

		if (x->id != y->id || x->replicas != y->replicas ||
		    x->failure_domain != y->failure_domain || x->pg_num != y->pg_num ||
		    x->algorithm != y->algorithm || x->sparse_ppm != y->sparse_ppm)
			return false;
	}
	for (uint32_t i = 0; i < a->noverrides + a->ntemps; i++) {
		const struct wf_override *x = i < a->noverrides ? &a->overrides[i] :
					      &a->temps[i - a->noverrides];
		const struct wf_override *y = i < a->noverrides ? &b->overrides[i] :
					      &b->temps[i - a->noverrides];

		if (x->pool != y->pool || x->pg != y->pg || x->n != y->n ||
		    memcmp(x->target, y->target, x->n * sizeof(*x->target)))
			return false;
	}
	for (uint32_t t = 0; t < a->ntargets; t++) {
		const struct wf_target *x = &a->targets[t], *y = &b->targets[t];

		if (x->id != y->id || x->node != y->node)
			return false;
		if (x->weight == y->weight && x->in == y->in && x->up == y->up)
			continue;
		if (*nchanged < max)
			changed[*nchanged] = t;
		if (*nchanged <= max)
			(*nchanged)++;
	}
	return true;
}

/* What a target's straw needs, as compile_pool derives it for a device. */
struct tdraw {
	uint64_t a, b, inv_w;
	uint32_t hash_id;
};

/* Per target index, under pl's weights (eligible targets only are read). */
static struct tdraw *tdraws(const struct wf_placer *pl)
{
	const struct wf_map *map = pl->map;
	struct tdraw *d = calloc(map->ntargets + 1, sizeof(*d));

	for (uint32_t t = 0; d && t < map->ntargets; t++) {
		uint32_t hid = map->nodes[map->targets[t].node].hash_id;

		d[t].hash_id = hid;
		d[t].a = mix64((uint64_t)hid * 0x9e3779b97f4a7c15ull + SALT_DEV);
		d[t].b = mix64(d[t].a ^ SALT_PG) | 1;
		d[t].inv_w = map->targets[t].weight ? (1ull << 48) / map->targets[t].weight : 0;
	}
	return d;
}

/* Straw of target t (constants d) in PG pg of pool pp (salt its salt). */
static struct straw straw_of(const struct wf_pl_pool *pp, uint32_t pg, uint32_t t,
			     const struct tdraw *d, uint64_t salt)
{
	struct straw s = { 0 };

	s.u = mum(salt ^ d->a, d->b);
	if (pp->algorithm == WF_ALGO_SPARSE) {
		const struct wf_pl_cand *c = pp->cand + pp->cand_off[pg];
		const struct wf_pl_cand *ce = pp->cand + pp->cand_off[pg + 1];

		s.u = mulhi(s.u, pp->sparse_thr);
		for (; c < ce; c++)
			if (pp->target[c->dev] == t)
				s.u = cand_u(pp, c);    /* its high draw */
	}
	s.inv_w = d->inv_w;
	s.hash_id = d->hash_id;
	return s;
}

/*
 * Whether a changed target c that is not a member of the PG's placed set
 * set[0..n) (all up, no override in force) joins it under pl: the set is
 * the greedy basis of a partition matroid over the straws, and only c's
 * straw changed, so c gets in exactly when it beats the member of its
 * failure domain, or, its domain not represented, the set is short or c
 * beats its last member.
 */
static bool joins(const struct wf_placer *pl, const struct tdraw *td, uint32_t p,
		  uint32_t pg, uint32_t c, const uint32_t *set, unsigned n)
{
	const struct wf_pl_pool *pp = &pl->pools[p];
	const uint32_t *fdn = &pl->fd_node[(size_t)p * pl->map->ntargets];
	uint64_t salt = pg_salt(pp->pool_id, pg);
	struct straw sc, sm;
	unsigned i;

	if (fdn[c] == WF_TARGET_NONE)
		return false;
	for (i = 0; i < n && fdn[set[i]] != fdn[c]; i++)
		;
	if (i == n && n < pp->replicas)
		return true;
	i = i == n ? n - 1 : i;
	sc = straw_of(pp, pg, c, &td[c], salt);
	sm = straw_of(pp, pg, set[i], &td[set[i]], salt);
	if (sc.inv_w == sm.inv_w)               /* same weight: the draw decides */
		return sc.u > sm.u || (sc.u == sm.u && sc.hash_id < sm.hash_id);
	sc.key = straw_key(nlog2(sc.u), sc.inv_w);
	sm.key = straw_key(nlog2(sm.u), sm.inv_w);
	return straw_better(&sc, &sm);
}

#define DERIVE_MAX_CHANGED 64

int wf_pg_table_derive(struct wf_pg_table *t, const struct wf_pg_table *prev,
		       const struct wf_placer *prev_pl, const struct wf_placer *pl,
		       struct wf_pg_derive *st)
{
	const struct wf_map *map = pl->map;
	uint32_t changed[DERIVE_MAX_CHANGED], nch;
	bool up_only[DERIVE_MAX_CHANGED], was_down = false;
	uint8_t *flag = NULL;
	struct tdraw *td = NULL;
	int32_t *ovi;
	int ret;

	memset(st, 0, sizeof(*st));
	if (prev->npools != pl->npools ||
	    !same_shape(prev_pl->map, map, changed, DERIVE_MAX_CHANGED, &nch) ||
	    nch > DERIVE_MAX_CHANGED) {
		st->full = true;
		return wf_pg_table_build(t, pl);
	}
	for (uint32_t i = 0; i < pl->npools; i++)
		if (prev->pools[i].pg_num != pl->pools[i].pg_num ||
		    prev->pools[i].stride != pl->pools[i].replicas) {
			st->full = true;
			return wf_pg_table_build(t, pl);
		}
	/* A target whose straw can only have improved needs the join test;
	 * a state change of up alone moves nothing. */
	for (uint32_t i = 0; i < nch; i++) {
		const struct wf_target *x = &prev_pl->map->targets[changed[i]];
		const struct wf_target *y = &map->targets[changed[i]];

		up_only[i] = x->weight == y->weight && x->in == y->in;
		was_down |= !x->up;
	}
	st->changed_targets = nch;
	td = tdraws(pl);
	if (!td)
		return -ENOMEM;
	ret = table_alloc(t, pl, &ovi);
	if (ret) {
		free(td);
		return ret;
	}
	for (uint32_t p = 0; p < pl->npools; p++) {
		const struct wf_pg_pool_table *pv = &prev->pools[p];
		struct wf_pg_pool_table *pt = &t->pools[p];
		const uint32_t *fd0 = &prev_pl->fd_node[(size_t)p * map->ntargets];
		const uint32_t *fd1 = &pl->fd_node[(size_t)p * map->ntargets];
		int32_t *tmi = ovi + pt->pg_num;
		size_t sz = (size_t)pt->pg_num * pt->stride * sizeof(*pt->acting);
		bool gain[DERIVE_MAX_CHANGED];

		memcpy(pt->acting, pv->acting, sz);
		memcpy(pt->up, pv->up, sz);
		memcpy(pt->n, pv->n, pt->pg_num);
		memcpy(pt->placed, pv->placed, pt->pg_num);
		memcpy(pt->nup, pv->nup, pt->pg_num);
		free(flag);
		flag = calloc(pt->pg_num, 1);
		if (!flag) {
			ret = -ENOMEM;
			goto out_free;
		}
		pool_index(pl, p, ovi, tmi);
		for (uint32_t i = 0; i < nch; i++) {
			const struct wf_target *x = &prev_pl->map->targets[changed[i]];
			uint32_t c = changed[i];
			uint64_t w0 = fd0[c] == WF_TARGET_NONE ? 0 : x->weight;
			uint64_t w1 = fd1[c] == WF_TARGET_NONE ? 0 : map->targets[c].weight;

			gain[i] = !up_only[i] && w1 > w0;
		}
		/* Overrides and pins naming a changed target: their validity
		 * (eligibility) or their up members may have changed. */
		for (uint32_t k = 0; k < map->noverrides + map->ntemps; k++) {
			const struct wf_override *ov = k < map->noverrides ? &map->overrides[k] :
						       &map->temps[k - map->noverrides];

			if (ov->pool != p || ov->pg >= pt->pg_num)
				continue;
			for (unsigned j = 0; j < ov->n; j++)
				for (uint32_t i = 0; i < nch; i++)
					if (map->targets[changed[i]].id == ov->target[j])
						flag[ov->pg] = 1;
		}
		for (uint32_t pg = 0; pg < pt->pg_num; pg++) {
			const uint32_t *u = &pv->up[(size_t)pg * pv->stride];
			unsigned nu = pv->nup[pg];
			/* A changed target that was down is not in the stored
			 * up set: any PG with a down member may hold it. */
			bool redo = flag[pg] || (was_down && pv->placed[pg] != nu);

			for (uint32_t i = 0; i < nch && !redo; i++)
				redo = wf_set_has(u, nu, changed[i]);
			/* Not a member anywhere: only a straw that improved can
			 * get in, and not into a PG an override decides. */
			for (uint32_t i = 0; i < nch && !redo && ovi[pg] < 0; i++)
				redo = gain[i] && joins(pl, td, p, pg, changed[i], u, nu);
			t->noverrides_used += ovi[pg] >= 0;
			t->ntemps_used += tmi[pg] >= 0;
			if (!redo)
				continue;
			fill_pg(pl, pt, p, pg, ovi[pg], tmi[pg]);
			st->recomputed++;
			st->changed += pt->n[pg] != pv->n[pg] || pt->nup[pg] != pv->nup[pg] ||
				       memcmp(&pt->up[(size_t)pg * pt->stride], u,
					      pt->stride * sizeof(*u)) ||
				       memcmp(&pt->acting[(size_t)pg * pt->stride],
					      &pv->acting[(size_t)pg * pt->stride],
					      pt->stride * sizeof(*u));
		}
		st->scanned += pt->pg_num;
	}
	free(td);
	free(flag);
	free(ovi);
	return 0;

out_free:
	free(td);
	free(flag);
	free(ovi);
	wf_pg_table_free(t);
	return ret;
}

void wf_pg_table_free(struct wf_pg_table *t)
{
	if (t->pools) {
		for (uint32_t p = 0; p < t->npools; p++) {
			free(t->pools[p].acting);
			free(t->pools[p].n);
			free(t->pools[p].placed);
			free(t->pools[p].up);
			free(t->pools[p].nup);
		}
	}
	free(t->pools);
	memset(t, 0, sizeof(*t));
}

int wf_place_extent(const struct wf_pg_table *t, const struct wf_map *map,
		    uint32_t vol, uint64_t offset, struct wf_extent_loc *loc)
{
	const struct wf_volume *v;

	if (vol >= map->nvolumes || map->extent_size == 0)
		return -EINVAL;
	v = &map->volumes[vol];
	if (v->pool >= t->npools)
		return -EINVAL;
	if (offset >= v->size)
		return -ERANGE;
	loc->extent = offset / map->extent_size;
	loc->pool = v->pool;
	loc->pg = wf_pg_of(v->id, loc->extent, t->pools[v->pool].pg_num);
	loc->n = wf_pg_acting(t, v->pool, loc->pg, &loc->acting);
	return 0;
}
