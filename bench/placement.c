/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-bench placement: cost, balance and movement of the placement
 * function on a map (docs/placement.md explains every figure).
 *
 *   weft-bench placement -c conf/rack128.conf [--pool NAME] [--json]
 *   weft-bench placement --synth 4x8x4 [--json]       (map built in code)
 *   weft-bench placement -c MAP --mapping-only        (for callgrind)
 *
 * Movement is measured the way an operator would change the cluster: the
 * deployed epoch is the map balanced by `weftctl balance`; the change (add
 * a host, take a device out, take a host out, halve a device's weight) is
 * applied, the balancer is run again against the deployed epoch (`--prev`;
 * --blind runs it without), and the replicas that differ between the two
 * tables are counted against the ideal minimum.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "bench/stats.h"
#include "placement/placement.h"

#define EXTENTS_1M (1u << 20)

/* One deployed epoch: a map (owned copy), its placer and table. */
struct epoch {
	struct wf_map map;
	struct wf_placer pl;
	struct wf_pg_table t;
	bool live;
};

struct fig {
	double max_over_mean, cov;
};

struct result {
	uint32_t targets, pg_num, replicas, overrides, balance_moves;
	uint64_t mappings;
	double ns_per_mapping, table_build_ms, table_lookup_ns, place_extent_ns;
	double table_lookup_tput_ns;
	struct fig pg_base, pg_bal, prim_bal, ext_base, ext_bal;
	double mv[4], mv_base[4];               /* add_host, device_out, host_out, device_half */
	uint32_t mv_overrides[4];
	struct bal_run {
		double ms, cpu_ms;              /* wf_balance() alone: wall, CPU */
		struct wf_balance_stats st;
	} bal, mv_bal[4];                       /* from rendezvous; after each change */
	uint64_t fd_violations;
	double heavy, heavy_base;
	double placer_init_ms;
	struct inc {
		double ms;                      /* placer init + derive */
		uint64_t recomputed, changed;
	} inc[4];                               /* out, in, weight_up, down */
};

static const char *const inc_name[4] = { "device_out", "device_in", "weight_up", "device_down" };

static const char *const mv_name[4] = { "add_host", "device_out", "host_out", "device_half" };

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* This thread's CPU time: on a shared machine the wall clock of a long
 * run is mostly other processes' turns. */
static double cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), dbl_cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void epoch_free(struct epoch *e)
{
	if (!e->live)
		return;
	wf_pg_table_free(&e->t);
	wf_placer_free(&e->pl);
	wf_map_edit_free(&e->map);
	e->live = false;
}

/* Compile and tabulate e->map (already filled). */
static int epoch_build(struct epoch *e)
{
	int ret = wf_placer_init(&e->pl, &e->map);

	if (ret)
		return ret;
	ret = wf_pg_table_build(&e->t, &e->pl);
	if (ret) {
		wf_placer_free(&e->pl);
		return ret;
	}
	e->live = true;
	return 0;
}

/*
 * Run the balancer on e (against prev when given) and rebuild e with the
 * overrides it computed, as `weftctl balance` would write them.
 */
static int epoch_balance(struct epoch *e, const struct epoch *prev, uint32_t *moves,
			 struct bal_run *br)
{
	struct wf_balance_stats st;
	struct wf_balance_opts o = { .stats = &st };
	struct wf_override *ov;
	uint32_t nov;
	double t0 = now_ns(), c0 = cpu_ns();
	int ret;

	ret = wf_balance(&e->pl, prev ? &prev->map : NULL, &o, &ov, &nov, moves);
	if (br) {
		br->ms = (now_ns() - t0) / 1e6;
		br->cpu_ms = (cpu_ns() - c0) / 1e6;
		br->st = st;
	}
	if (ret)
		return ret;
	wf_pg_table_free(&e->t);
	wf_placer_free(&e->pl);
	free(e->map.overrides);
	e->map.overrides = ov;
	e->map.noverrides = nov;
	e->map.epoch++;
	e->live = false;
	return epoch_build(e);
}

static int epoch_from(struct epoch *e, const struct wf_map *src, bool keep_overrides)
{
	int ret = wf_map_copy(&e->map, src);

	if (ret)
		return ret;
	if (!keep_overrides)
		e->map.noverrides = 0;
	return 0;
}

static uint64_t fd_violations(const struct epoch *e)
{
	const struct wf_map *map = &e->map;
	uint64_t bad = 0;

	for (uint32_t p = 0; p < e->t.npools; p++) {
		const uint32_t *fdn = &e->pl.fd_node[(size_t)p * map->ntargets];

		for (uint32_t pg = 0; pg < e->t.pools[p].pg_num; pg++) {
			const uint32_t *a;
			unsigned n = wf_pg_acting(&e->t, p, pg, &a);

			for (unsigned i = 0; i < n; i++)
				for (unsigned j = 0; j < i; j++)
					bad += fdn[a[i]] == WF_TARGET_NONE ||
					       fdn[a[i]] == fdn[a[j]];
		}
	}
	return bad;
}

/* Replica-count balance at pg_num (all members, or primaries). */
static int pg_fig(const struct epoch *e, uint32_t pool, bool primaries, struct fig *f)
{
	uint32_t n = e->map.ntargets;
	uint32_t *cnt = calloc(n, sizeof(*cnt));
	double *load = calloc(n, sizeof(*load)), *share = calloc(n, sizeof(*share));
	int ret = -ENOMEM;

	if (!cnt || !load || !share)
		goto out;
	ret = wf_pool_shares(&e->pl, pool, share);
	if (ret)
		goto out;
	wf_pg_counts(&e->t, pool, n, primaries ? NULL : cnt, primaries ? cnt : NULL);
	for (uint32_t i = 0; i < n; i++)
		load[i] = cnt[i];
	wf_load_stats(load, share, n, &f->max_over_mean, &f->cov);
out:
	free(cnt);
	free(load);
	free(share);
	return ret;
}

/*
 * 1M extents (16 volumes of 64Ki extents) through the table: per-target
 * replica load vs share; optionally the share of load landing on targets
 * flagged in heavy[] divided by their share.
 */
static int extent_fig(const struct epoch *e, uint32_t pool, struct fig *f,
		      const bool *heavy, double *heavy_ratio)
{
	uint32_t n = e->map.ntargets, pg_num = e->t.pools[pool].pg_num;
	double *load = calloc(n, sizeof(*load)), *share = calloc(n, sizeof(*share));
	double hl = 0, hs = 0, tot = 0;
	int ret = -ENOMEM;

	if (!load || !share)
		goto out;
	ret = wf_pool_shares(&e->pl, pool, share);
	if (ret)
		goto out;
	for (uint32_t i = 0; i < EXTENTS_1M; i++) {
		const uint32_t *a;
		unsigned m = wf_pg_acting(&e->t, pool, wf_pg_of(1000 + (i >> 16), i & 0xffff, pg_num), &a);

		for (unsigned k = 0; k < m; k++)
			load[a[k]] += 1;
	}
	wf_load_stats(load, share, n, &f->max_over_mean, &f->cov);
	if (heavy) {
		for (uint32_t i = 0; i < n; i++) {
			tot += load[i];
			if (heavy[i]) {
				hl += load[i];
				hs += share[i];
			}
		}
		*heavy_ratio = hs > 0 && tot > 0 ? (hl / tot) / hs : 0;
	}
out:
	free(load);
	free(share);
	return ret;
}

/* Replicas of the pool that are in b's set but not in a's (by target id). */
static uint64_t moved(const struct epoch *a, const struct epoch *b, uint32_t pool)
{
	uint64_t m = 0;

	for (uint32_t pg = 0; pg < b->t.pools[pool].pg_num; pg++) {
		const uint32_t *sa, *sb;
		unsigned na = wf_pg_acting(&a->t, pool, pg, &sa);
		unsigned nb = wf_pg_acting(&b->t, pool, pg, &sb);

		for (unsigned i = 0; i < nb; i++) {
			bool found = false;

			for (unsigned j = 0; j < na && !found; j++)
				found = a->map.targets[sa[j]].id == b->map.targets[sb[i]].id;
			m += !found;
		}
	}
	return m;
}

static uint64_t pool_replicas(const struct epoch *e, uint32_t pool)
{
	uint64_t r = 0;

	for (uint32_t pg = 0; pg < e->t.pools[pool].pg_num; pg++)
		r += e->t.pools[pool].n[pg];
	return r;
}

/* Share (of the pool's replicas) held by targets with ids in [lo, hi]
 * in e: from its table when use_table, else from its ideal shares. */
static double id_share(const struct epoch *e, uint32_t pool, uint32_t lo, uint32_t hi,
		       bool use_table)
{
	uint32_t n = e->map.ntargets;
	double s = 0;

	if (use_table) {
		uint32_t *cnt = calloc(n, sizeof(*cnt));

		if (!cnt)
			return 0;
		wf_pg_counts(&e->t, pool, n, cnt, NULL);
		for (uint32_t i = 0; i < n; i++)
			if (e->map.targets[i].id >= lo && e->map.targets[i].id <= hi)
				s += cnt[i];
		free(cnt);
		return s / (double)pool_replicas(e, pool);
	}
	double *share = calloc(n, sizeof(*share));

	if (!share || wf_pool_shares(&e->pl, pool, share)) {
		free(share);
		return 0;
	}
	for (uint32_t i = 0; i < n; i++)
		if (e->map.targets[i].id >= lo && e->map.targets[i].id <= hi)
			s += share[i];
	free(share);
	return s;
}

enum change { ADD_HOST, DEVICE_OUT, HOST_OUT, DEVICE_HALF };

/* First bucket of type rack under the root (or the root itself). */
static uint32_t first_rack(const struct wf_map *map)
{
	for (uint32_t n = 0; n < map->nnodes; n++)
		if (map->nodes[n].type == WF_NODE_RACK)
			return n;
	return 0;
}

/* The host holding target index t, and the id range of its devices. */
static uint32_t host_of(const struct wf_map *map, uint32_t t)
{
	return (uint32_t)map->nodes[map->targets[t].node].parent;
}

static int apply_change(struct wf_map *m, enum change c, uint32_t *lo, uint32_t *hi)
{
	uint32_t victim = m->ntargets / 3;      /* a device in the middle */
	uint32_t h = host_of(m, victim);
	int ret;

	switch (c) {
	case ADD_HOST: {
		uint32_t ndev = m->nodes[h].nchild, w = m->targets[victim].weight;

		ret = wf_map_add_host(m, first_rack(m), "bench-new-host", ndev, w);
		if (ret < 0)
			return ret;
		*lo = m->targets[m->ntargets - ndev].id;
		*hi = m->targets[m->ntargets - 1].id;
		return 0;
	}
	case DEVICE_OUT:
		m->targets[victim].in = false;
		*lo = *hi = m->targets[victim].id;
		return 0;
	case DEVICE_HALF:
		m->targets[victim].weight /= 2;
		wf_map_reweigh(m);
		*lo = *hi = m->targets[victim].id;
		return 0;
	case HOST_OUT:
		*lo = UINT32_MAX;
		*hi = 0;
		for (uint32_t t = 0; t < m->ntargets; t++) {
			if (host_of(m, t) != h)
				continue;
			m->targets[t].in = false;
			*lo = m->targets[t].id < *lo ? m->targets[t].id : *lo;
			*hi = m->targets[t].id > *hi ? m->targets[t].id : *hi;
		}
		return 0;
	}
	return -EINVAL;
}

/*
 * Movement of one change divided by its ideal: for capacity added, the
 * share the new devices should hold; for capacity removed, the share the
 * removed devices held; for a weight halved, the share the device gave up.  (Devices are numbered so that the changed ones
 * form one id range.)
 */
/* blind: balance without telling the balancer the deployed epoch. */
static int movement(const struct epoch *dep, uint32_t pool, enum change c,
		    bool balance, bool blind, double *ratio, uint32_t *nov, struct bal_run *br)
{
	struct epoch e = { 0 };
	uint32_t lo = 0, hi = 0;
	double ideal;
	int ret;

	ret = epoch_from(&e, &dep->map, balance);
	if (ret)
		return ret;
	ret = apply_change(&e.map, c, &lo, &hi);
	if (!ret)
		ret = epoch_build(&e);
	if (!ret && balance)
		ret = epoch_balance(&e, blind ? NULL : dep, NULL, br);
	if (!ret) {
		if (c == ADD_HOST)
			ideal = id_share(&e, pool, lo, hi, false);
		else if (c == DEVICE_HALF)      /* what it gave up */
			ideal = id_share(dep, pool, lo, hi, true) - id_share(&e, pool, lo, hi, true);
		else
			ideal = id_share(dep, pool, lo, hi, true);
		*ratio = (double)moved(dep, &e, pool) / (double)pool_replicas(&e, pool) / ideal;
		*nov = e.map.noverrides;
	}
	epoch_free(&e);
	if (!e.live)
		wf_map_edit_free(&e.map);
	return ret;
}

/*
 * Timings are medians of REPS short repetitions: on a shared machine a
 * repetition that was preempted is an outlier the median drops, where one
 * long loop would average it in.
 */
#define REPS 15

static void time_mapping(const struct epoch *e, uint32_t pool, struct result *r)
{
	uint32_t pg_num = e->t.pools[pool].pg_num, out[WF_MAX_REPLICAS];
	double v[REPS], sink = 0;

	for (int rep = 0; rep < REPS; rep++) {
		double t0 = now_ns();

		for (uint32_t pg = 0; pg < pg_num; pg++)
			sink += wf_place_pg(&e->pl, pool, pg, out) + out[0];
		v[rep] = (now_ns() - t0) / pg_num;
	}
	r->mappings = (uint64_t)REPS * pg_num;
	r->ns_per_mapping = median(v, REPS) + sink * 0;

	for (int rep = 0; rep < 5; rep++) {
		struct wf_pg_table t;
		double t0 = now_ns();

		if (wf_pg_table_build(&t, &e->pl))
			break;
		v[rep] = (now_ns() - t0) / 1e6;
		wf_pg_table_free(&t);
	}
	r->table_build_ms = median(v, 5);

	/* Lookups of pseudo-random PGs, each depending on the previous one's
	 * result: the latency of one lookup (the conservative figure). */
	for (int rep = 0; rep < REPS; rep++) {
		const uint32_t n = 1u << 20;
		uint64_t x = 0x9e3779b97f4a7c15ull, acc = 0;
		double t0 = now_ns();

		for (uint32_t i = 0; i < n; i++) {
			const uint32_t *a;

			x = x * 6364136223846793005ull + 1442695040888963407ull + acc;
			acc += wf_pg_acting(&e->t, pool, (uint32_t)(x >> 40), &a) + a[0];
		}
		v[rep] = (now_ns() - t0) / n;
		sink += (double)(acc & 1);
	}
	r->table_lookup_ns = median(v, REPS) + sink * 0;

	/* Independent lookups, as a stream of requests issues them: loads
	 * overlap, so this is the throughput cost per lookup. */
	for (int rep = 0; rep < REPS; rep++) {
		const uint32_t n = 1u << 20;
		uint64_t x = 0x9e3779b97f4a7c15ull, acc = 0;
		double t0 = now_ns();

		for (uint32_t i = 0; i < n; i++) {
			const uint32_t *a;

			x = x * 6364136223846793005ull + 1442695040888963407ull;
			acc += wf_pg_acting(&e->t, pool, (uint32_t)(x >> 40), &a) + a[0];
		}
		v[rep] = (now_ns() - t0) / n;
		sink += (double)(acc & 1);
	}
	r->table_lookup_tput_ns = median(v, REPS) + sink * 0;

	for (int rep = 0; rep < REPS; rep++) {
		const uint32_t n = 1u << 18;
		const struct wf_map *map = &e->map;
		struct wf_extent_loc loc = { 0 };
		uint32_t vol = UINT32_MAX;
		double t0;

		for (uint32_t i = 0; i < map->nvolumes && vol == UINT32_MAX; i++)
			if (map->volumes[i].pool == pool && map->volumes[i].size)
				vol = i;
		if (vol == UINT32_MAX) {
			v[rep] = 0;
			continue;
		}
		t0 = now_ns();
		for (uint32_t i = 0; i < n; i++) {
			uint64_t off = ((uint64_t)i * 0x9e3779b1u * map->extent_size) %
				       map->volumes[vol].size;

			wf_place_extent(&e->t, map, vol, off, &loc);
			sink += loc.acting[0];
		}
		v[rep] = (now_ns() - t0) / n;
	}
	r->place_extent_ns = median(v, REPS) + sink * 0;
}

/*
 * Incremental epoch switch: one target changes (out; back in; weight
 * +25%; down), and the next table is derived from the last one
 * (wf_pg_table_derive) instead of built; the time includes compiling the
 * new map (wf_placer_init).  The derived table is checked against a full
 * build.
 */
static int time_incremental(const struct epoch *base, uint32_t pool, struct result *r)
{
	uint32_t victim = base->map.ntargets / 3;
	struct epoch from = { 0 };
	double v[5];
	int ret;

	for (int rep = 0; rep < 5; rep++) {
		struct wf_placer pl;
		double t0 = now_ns();

		if ((ret = wf_placer_init(&pl, &base->map)))
			return ret;
		v[rep] = (now_ns() - t0) / 1e6;
		wf_placer_free(&pl);
	}
	r->placer_init_ms = median(v, 5);
	(void)pool;
	/* The map with the victim out: where "device_in" starts from. */
	if ((ret = epoch_from(&from, &base->map, false)))
		return ret;
	from.map.targets[victim].in = false;
	from.map.epoch++;
	if ((ret = epoch_build(&from))) {
		wf_map_edit_free(&from.map);
		return ret;
	}
	for (int c = 0; c < 4; c++) {
		const struct epoch *prev = c == 1 ? &from : base;
		struct epoch next = { 0 };
		struct wf_pg_table t;
		struct wf_pg_derive st;

		if ((ret = epoch_from(&next, &base->map, false)))
			break;
		switch (c) {
		case 0: next.map.targets[victim].in = false; break;
		case 1: break;                  /* from: the map with it out */
		case 2: next.map.targets[victim].weight += next.map.targets[victim].weight / 4; break;
		case 3: next.map.targets[victim].up = false; break;
		}
		next.map.epoch++;
		ret = epoch_build(&next);       /* the full build, to compare */
		for (int rep = 0; !ret && rep < 5; rep++) {
			struct wf_placer pl;
			double t0 = now_ns();

			ret = wf_placer_init(&pl, &next.map);
			if (ret)
				break;
			ret = wf_pg_table_derive(&t, &prev->t, &prev->pl, &pl, &st);
			v[rep] = (now_ns() - t0) / 1e6;
			if (!ret) {
				for (uint32_t p = 0; p < t.npools && !ret; p++)
					if (memcmp(t.pools[p].acting, next.t.pools[p].acting,
						   (size_t)t.pools[p].pg_num * t.pools[p].stride *
						   sizeof(uint32_t)) || st.full)
						ret = -EPROTO;
				wf_pg_table_free(&t);
			}
			wf_placer_free(&pl);
		}
		if (!ret) {
			r->inc[c].ms = median(v, 5);
			r->inc[c].recomputed = st.recomputed;
			r->inc[c].changed = st.changed;
		}
		epoch_free(&next);
		if (!next.live)
			wf_map_edit_free(&next.map);
		if (ret)
			break;
	}
	epoch_free(&from);
	return ret;
}

static int heavy_share(const struct epoch *dep, uint32_t pool, bool balance, double *ratio)
{
	struct epoch e = { 0 };
	bool *heavy = NULL;
	uint32_t rack = UINT32_MAX;
	struct fig f;
	int ret;

	ret = epoch_from(&e, &dep->map, false);
	if (ret)
		return ret;
	/* The last rack weighs 1.25x: all its devices' weights scaled. */
	for (uint32_t n = 0; n < e.map.nnodes; n++)
		if (e.map.nodes[n].type == WF_NODE_RACK)
			rack = n;
	heavy = calloc(e.map.ntargets, sizeof(*heavy));
	ret = -ENOMEM;
	if (!heavy)
		goto out;
	for (uint32_t t = 0; t < e.map.ntargets; t++) {
		int32_t n = (int32_t)e.map.targets[t].node;

		while (n >= 0 && (uint32_t)n != rack)
			n = e.map.nodes[n].parent;
		if (rack != UINT32_MAX && n >= 0) {
			heavy[t] = true;
			e.map.targets[t].weight = e.map.targets[t].weight / 4 * 5;
		}
	}
	wf_map_reweigh(&e.map);
	ret = epoch_build(&e);
	if (!ret && balance)
		ret = epoch_balance(&e, NULL, NULL, NULL);
	if (!ret)
		ret = extent_fig(&e, pool, &f, heavy, ratio);
out:
	free(heavy);
	epoch_free(&e);
	if (!e.live)
		wf_map_edit_free(&e.map);
	return ret;
}

static void json_fig(struct wf_json *j, const char *name, const struct fig *x)
{
	wf_json_obj_begin(j, name);
	wf_json_dbl(j, "max_over_mean", x->max_over_mean);
	wf_json_dbl(j, "cov", x->cov);
	wf_json_obj_end(j);
}

/* A movement ratio the map cannot give (no host to add or take out in a
 * one-host map) is NaN: written as null. */
static void json_movement(struct wf_json *j, const double mv[4])
{
	wf_json_obj_begin(j, "movement");
	for (int i = 0; i < 4; i++)
		wf_json_dbl(j, mv_name[i], mv[i]);
	wf_json_obj_end(j);
}

/* What a balancer run cost: time, and what it looked at per move. */
static void json_bal(struct wf_json *j, const char *name, const struct bal_run *b)
{
	double per = b->st.moves + b->st.swaps ? (double)(b->st.moves + b->st.swaps) : 1;

	wf_json_obj_begin(j, name);
	wf_json_dbl(j, "ms", b->ms);
	wf_json_dbl(j, "cpu_ms", b->cpu_ms);
	wf_json_u64(j, "moves", b->st.moves);
	wf_json_u64(j, "swaps", b->st.swaps);
	wf_json_dbl(j, "slots_weighed_per_step", (double)b->st.slots / per);
	wf_json_dbl(j, "slots_scanned_per_step", (double)b->st.scanned / per);
	wf_json_dbl(j, "searches_per_step", (double)b->st.searches / per);
	wf_json_u64(j, "changed_pgs_max", b->st.dirty_pgs);
	wf_json_u64(j, "bytes", b->st.bytes);
	wf_json_obj_end(j);
}

static void print_bal(const char *name, const struct bal_run *b)
{
	double per = b->st.moves + b->st.swaps ? (double)(b->st.moves + b->st.swaps) : 1;

	printf("  %-34s %12.1f   (CPU %.1f; %.1f MB; %llu moves + %llu swaps; per step %.0f "
	       "slots weighed, %.0f scanned, %.1f searches)\n", name, b->ms, b->cpu_ms,
	       b->st.bytes / 1e6,
	       (unsigned long long)b->st.moves, (unsigned long long)b->st.swaps,
	       (double)b->st.slots / per, (double)b->st.scanned / per,
	       (double)b->st.searches / per);
}

static int print_json(const struct result *r)
{
	struct wf_json j;

	wf_json_init(&j, stdout, false);
	wf_json_obj_begin(&j, NULL);
	wf_json_u64(&j, "targets", r->targets);
	wf_json_u64(&j, "pg_num", r->pg_num);
	wf_json_u64(&j, "replicas", r->replicas);
	wf_json_u64(&j, "mappings", r->mappings);
	wf_json_dbl(&j, "ns_per_mapping", r->ns_per_mapping);
	wf_json_dbl(&j, "table_build_ms", r->table_build_ms);
	wf_json_dbl(&j, "table_lookup_ns", r->table_lookup_ns);
	wf_json_dbl(&j, "table_lookup_tput_ns", r->table_lookup_tput_ns);
	wf_json_dbl(&j, "place_extent_ns", r->place_extent_ns);
	wf_json_dbl(&j, "placer_init_ms", r->placer_init_ms);
	wf_json_obj_begin(&j, "incremental");
	for (int i = 0; i < 4; i++) {
		wf_json_obj_begin(&j, inc_name[i]);
		wf_json_dbl(&j, "ms", r->inc[i].ms);
		wf_json_u64(&j, "recomputed", r->inc[i].recomputed);
		wf_json_u64(&j, "changed", r->inc[i].changed);
		wf_json_obj_end(&j);
	}
	wf_json_obj_end(&j);
	wf_json_dbl(&j, "max_over_mean", r->pg_bal.max_over_mean);
	wf_json_dbl(&j, "cov", r->pg_bal.cov);
	json_fig(&j, "extents_1m", &r->ext_bal);
	json_fig(&j, "pg_num_balance", &r->pg_bal);
	json_fig(&j, "primary_balance", &r->prim_bal);
	wf_json_u64(&j, "overrides", r->overrides);
	wf_json_u64(&j, "balance_moves", r->balance_moves);
	json_movement(&j, r->mv);
	json_bal(&j, "balance", &r->bal);
	for (int i = 0; i < 4; i++) {
		char name[64];

		snprintf(name, sizeof(name), "balance_%s", mv_name[i]);
		json_bal(&j, name, &r->mv_bal[i]);
	}
	wf_json_u64(&j, "fd_violations", r->fd_violations);
	wf_json_dbl(&j, "heavy_domain_share", r->heavy);
	wf_json_obj_begin(&j, "unbalanced");
	json_fig(&j, "pg_num", &r->pg_base);
	json_fig(&j, "extents_1m", &r->ext_base);
	json_movement(&j, r->mv_base);
	wf_json_dbl(&j, "heavy_domain_share", r->heavy_base);
	wf_json_obj_end(&j);
	wf_json_obj_end(&j);
	return wf_json_finish(&j);
}

static void print_table(const struct result *r)
{
	printf("placement: %u targets, pg_num %u, %u replicas\n\n",
	       r->targets, r->pg_num, r->replicas);
	printf("  %-34s %12.1f   (%llu mappings)\n", "ns per mapping (from scratch)",
	       r->ns_per_mapping, (unsigned long long)r->mappings);
	printf("  %-34s %12.2f\n", "table build, ms", r->table_build_ms);
	printf("  %-34s %12.2f\n", "table lookup (latency), ns", r->table_lookup_ns);
	printf("  %-34s %12.2f\n", "table lookup (throughput), ns", r->table_lookup_tput_ns);
	printf("  %-34s %12.1f\n", "place_extent (hash + lookup), ns", r->place_extent_ns);
	printf("  %-34s %12.2f\n", "placer init (compile map), ms", r->placer_init_ms);
	for (int i = 0; i < 4; i++) {
		char name[64];

		snprintf(name, sizeof(name), "derive after %s, ms", inc_name[i]);
		printf("  %-34s %12.2f   (%llu PGs recomputed, %llu changed)\n", name,
		       r->inc[i].ms, (unsigned long long)r->inc[i].recomputed,
		       (unsigned long long)r->inc[i].changed);
	}
	printf("\n  %-34s %12s %12s\n", "", "balanced", "rendezvous");
	printf("  %-34s %12.4f %12.4f\n", "max/mean at pg_num", r->pg_bal.max_over_mean,
	       r->pg_base.max_over_mean);
	printf("  %-34s %12.4f %12.4f\n", "cov at pg_num", r->pg_bal.cov, r->pg_base.cov);
	printf("  %-34s %12.4f %12.4f\n", "max/mean, 1M extents", r->ext_bal.max_over_mean,
	       r->ext_base.max_over_mean);
	printf("  %-34s %12.4f %12.4f\n", "cov, 1M extents", r->ext_bal.cov, r->ext_base.cov);
	printf("  %-34s %12.4f %12s\n", "primaries max/mean at pg_num",
	       r->prim_bal.max_over_mean, "");
	printf("  %-34s %12.4f %12s\n", "primaries cov at pg_num", r->prim_bal.cov, "");
	for (int i = 0; i < 4; i++) {
		char name[64];

		snprintf(name, sizeof(name), "movement/ideal, %s", mv_name[i]);
		printf("  %-34s %12.4f %12.4f\n", name, r->mv[i], r->mv_base[i]);
	}
	printf("  %-34s %12.4f %12.4f\n", "heavy_domain_share", r->heavy, r->heavy_base);
	printf("  %-34s %12llu\n", "fd_violations", (unsigned long long)r->fd_violations);
	printf("  %-34s %12u   (%u replica moves)\n", "overrides", r->overrides,
	       r->balance_moves);
	print_bal("balance, ms", &r->bal);
	for (int i = 0; i < 4; i++) {
		char name[64];

		snprintf(name, sizeof(name), "balance after %s, ms", mv_name[i]);
		print_bal(name, &r->mv_bal[i]);
	}
}

/* Only the from-scratch mappings: what callgrind should look at. */
static int run_mapping_only(const struct wf_map *src, uint32_t pool)
{
	struct epoch e = { 0 };
	uint32_t out[WF_MAX_REPLICAS], sink = 0;
	int ret = epoch_from(&e, src, false);

	if (!ret)
		ret = epoch_build(&e);
	if (ret)
		return 1;
	for (uint32_t pg = 0; pg < e.t.pools[pool].pg_num; pg++)
		sink += wf_place_pg(&e.pl, pool, pg, out);
	printf("mappings %u (members %u)\n", e.t.pools[pool].pg_num, sink);
	epoch_free(&e);
	return 0;
}

/*
 * no_balance: skip the balancer (it runs five times: from the rendezvous,
 * after each change, and for the heavy domain; seconds to minutes at
 * 10,000 devices), so only the cost figures and the rendezvous-alone
 * quality figures are measured; the balanced ones are NaN.
 */
static int run(const struct wf_map *src, uint32_t pool, bool json, bool blind,
	       bool no_balance)
{
	struct epoch base = { 0 }, bal = { 0 };
	struct result r = { 0 };
	uint32_t nov;
	int ret;

	ret = epoch_from(&base, src, false);
	if (!ret)
		ret = epoch_build(&base);
	if (!ret && !no_balance)
		ret = epoch_from(&bal, src, true);
	if (!ret && !no_balance)
		ret = epoch_build(&bal);
	if (!ret && !no_balance)
		ret = epoch_balance(&bal, NULL, &r.balance_moves, &r.bal);
	if (ret)
		goto out;
	r.targets = src->ntargets;
	r.pg_num = src->pools[pool].pg_num;
	r.replicas = src->pools[pool].replicas;
	r.overrides = bal.map.noverrides;

	time_mapping(&base, pool, &r);
	if ((ret = time_incremental(&base, pool, &r)))
		goto out;
	if ((ret = pg_fig(&base, pool, false, &r.pg_base)) ||
	    (ret = extent_fig(&base, pool, &r.ext_base, NULL, NULL)))
		goto out;
	r.fd_violations = fd_violations(&base);
	for (int c = 0; c < 4; c++)
		if ((ret = movement(&base, pool, c, false, false, &r.mv_base[c], &nov, NULL)))
			goto out;
	if ((ret = heavy_share(&base, pool, false, &r.heavy_base)))
		goto out;
	if (no_balance) {
		r.pg_bal.max_over_mean = r.pg_bal.cov = NAN;
		r.prim_bal = r.ext_bal = r.pg_bal;
		r.heavy = NAN;
		for (int c = 0; c < 4; c++)
			r.mv[c] = NAN;
	} else {
		if ((ret = pg_fig(&bal, pool, false, &r.pg_bal)) ||
		    (ret = pg_fig(&bal, pool, true, &r.prim_bal)) ||
		    (ret = extent_fig(&bal, pool, &r.ext_bal, NULL, NULL)))
			goto out;
		r.fd_violations += fd_violations(&bal);
		for (int c = 0; c < 4; c++)
			if ((ret = movement(&bal, pool, c, true, blind, &r.mv[c],
					    &r.mv_overrides[c], &r.mv_bal[c])))
				goto out;
		if ((ret = heavy_share(&base, pool, true, &r.heavy)))
			goto out;
	}
	if (json)
		ret = print_json(&r);
	else
		print_table(&r);
out:
	epoch_free(&base);
	epoch_free(&bal);
	if (ret)
		fprintf(stderr, "weft-bench placement: %s\n", strerror(-ret));
	return ret ? 1 : 0;
}

/*
 * pg_num of a generated map: the power of two nearest (on a log scale) to
 * 100 replicas per device, the density the balancer's band is sized for
 * (128 devices: 4096; 3,840: 131,072; 10,000: 262,144).
 */
static uint32_t synth_pg_num(uint64_t devs, unsigned replicas)
{
	double want = 100.0 * (double)devs / replicas;
	uint32_t p = 1;

	while (p < (1u << 30) && (double)p * 2 <= want)
		p *= 2;
	/* p <= want < 2p: take 2p when want is past the geometric middle. */
	if ((double)p * 2 <= (1u << 30) && want * want > (double)p * p * 2)
		p *= 2;
	return p;
}

int bench_placement(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "pool",   required_argument, NULL, 'p' },
		{ "synth",  required_argument, NULL, 's' },
		{ "json",   no_argument,       NULL, 'j' },
		{ "mapping-only", no_argument, NULL, 'm' },
		{ "blind",  no_argument,       NULL, 'b' },
		{ "pg-num", required_argument, NULL, 'g' },
		{ "no-balance", no_argument,   NULL, 'n' },
		{ "sparse", optional_argument, NULL, 'S' },
		{ "help",   no_argument,       NULL, 'h' },
		{ 0 },
	};
	const char *conf = NULL, *pool_name = NULL, *synth = NULL;
	struct wf_map map;
	struct wf_map_err err = { { 0 } };
	bool json = false, loaded = false, mapping_only = false, blind = false;
	bool no_balance = false;
	uint32_t pg_num = 0, sparse_k = 0;
	int opt, ret, pool = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:p:s:jmbg:nh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': conf = optarg; break;
		case 'p': pool_name = optarg; break;
		case 's': synth = optarg; break;
		case 'j': json = true; break;
		case 'm': mapping_only = true; break;
		case 'b': blind = true; break;
		case 'n': no_balance = true; break;
		case 'S':
			sparse_k = optarg ? (uint32_t)strtoul(optarg, NULL, 0) : 16;
			if (!sparse_k) {
				fprintf(stderr, "weft-bench placement: --sparse=K wants K > 0\n");
				return 2;
			}
			break;
		case 'g':
			pg_num = (uint32_t)strtoul(optarg, NULL, 0);
			if (!pg_num || (pg_num & (pg_num - 1))) {
				fprintf(stderr, "weft-bench placement: --pg-num wants a power of two\n");
				return 2;
			}
			break;
		case 'h':
			printf("usage: weft-bench placement (-c MAP | --synth RxHxD) [--pool NAME] [--pg-num N]\n"
			       "       [--sparse[=K]] [--json] [--mapping-only] [--blind] [--no-balance]\n");
			return 0;
		default:
			return 2;
		}
	}
	if (!conf == !synth) {
		fprintf(stderr, "weft-bench placement: need -c MAP or --synth RxHxD\n");
		return 2;
	}
	if (conf) {
		ret = wf_map_load(conf, &map, &err);
		if (ret) {
			fprintf(stderr, "weft-bench placement: %s\n", err.msg);
			return 1;
		}
		loaded = true;
	} else {
		struct wf_synth s = { .weight = WF_WEIGHT_ONE, .replicas = 3,
				      .failure_domain = WF_NODE_HOST };

		if (sscanf(synth, "%ux%ux%u", &s.racks, &s.hosts_per_rack,
			   &s.devs_per_host) != 3 ||
		    (s.pg_num = pg_num ? pg_num :
		     synth_pg_num((uint64_t)s.racks * s.hosts_per_rack * s.devs_per_host,
				  s.replicas)) == 0 ||
		    wf_map_synth(&map, &s)) {
			fprintf(stderr, "weft-bench placement: bad --synth '%s'\n", synth);
			return 2;
		}
	}
	if (conf && pg_num)                     /* every pool of the map */
		for (uint32_t p = 0; p < map.npools; p++)
			map.pools[p].pg_num = pg_num;
	/* --sparse=K: every pool sparse, sized for K high draws a PG. */
	for (uint32_t p = 0; sparse_k && p < map.npools; p++) {
		uint64_t ppm = (uint64_t)sparse_k * 1000000u / (map.ntargets ? map.ntargets : 1);

		map.pools[p].algorithm = WF_ALGO_SPARSE;
		map.pools[p].sparse_ppm = (uint32_t)(ppm < 1 ? 1 : ppm > WF_SPARSE_PPM_MAX ?
						     WF_SPARSE_PPM_MAX : ppm);
	}
	if (pool_name) {
		pool = -1;
		for (uint32_t p = 0; p < map.npools; p++)
			if (!strcmp(map.pools[p].name, pool_name))
				pool = (int)p;
	}
	if (pool < 0 || (uint32_t)pool >= map.npools) {
		fprintf(stderr, "weft-bench placement: no such pool\n");
		ret = 2;
	} else if (mapping_only) {
		ret = run_mapping_only(&map, (uint32_t)pool);
	} else {
		ret = run(&map, (uint32_t)pool, json, blind, no_balance);
	}
	if (loaded)
		wf_map_free(&map);
	else
		wf_map_edit_free(&map);
	return ret;
}
