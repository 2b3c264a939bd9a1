/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weftctl locate / map show / balance: placement seen from the command line.
 *
 *   weftctl locate -c MAP VOLUME OFFSET
 *   weftctl map show -c MAP
 *   weftctl balance -c MAP [-o OUT] [--prev DEPLOYED] [--max-dev F]
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weftctl/ctl.h"
#include "placement/placement.h"
#include "proto/ctl.h"

/* A loaded map with its placer and table. */
struct ctx {
	struct wf_map map;
	struct wf_placer pl;
	struct wf_pg_table t;
	int stage;                      /* what to undo: 1 map, 2 placer, 3 table */
};

static void ctx_free(struct ctx *c)
{
	if (c->stage >= 3)
		wf_pg_table_free(&c->t);
	if (c->stage >= 2)
		wf_placer_free(&c->pl);
	if (c->stage >= 1)
		wf_map_free(&c->map);
	c->stage = 0;
}

static int ctx_load(struct ctx *c, const char *path)
{
	struct wf_map_err err;
	int ret;

	memset(c, 0, sizeof(*c));
	ret = wf_map_load(path, &c->map, &err);
	if (ret) {
		ctl_err("%s\n", err.msg);
		return ret;
	}
	c->stage = 1;
	ret = wf_placer_init(&c->pl, &c->map);
	if (!ret) {
		c->stage = 2;
		ret = wf_pg_table_build(&c->t, &c->pl);
	}
	if (ret) {
		ctl_err("%s: placement: %s\n", path, strerror(-ret));
		ctx_free(c);
		return ret;
	}
	c->stage = 3;
	return 0;
}

/* "4096", "0x1000", "4K", "1M", "2G", "1T" (powers of 1024). */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	switch (*end) {
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	case 'T': case 't': shift = 40; end++; break;
	case '\0': break;
	default: return -EINVAL;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static const char *state(const struct wf_target *t)
{
	if (!t->in)
		return t->up ? "up,out" : "down,out";
	return t->up ? "up,in" : "down,in";
}

/* ---- locate ------------------------------------------------------------- */

static int locate_usage(FILE *f)
{
	fprintf(f, "usage: weftctl locate -c MAP VOLUME OFFSET [--run-dir D] [--timeout MS]\n"
		"                      [--map-only] [--json]\n"
		"  Print the extent holding byte OFFSET (suffixes K M G T) of VOLUME\n"
		"  (name or numeric id), its PG and acting set, primary first, and\n"
		"  whether each member answers (asked as `weftctl status` asks;\n"
		"  --map-only: the map alone, nothing asked).  Exit 0 when located\n"
		"  (whatever the members answered), 1 if not (no such volume, offset\n"
		"  past its end, bad map), 2 on bad arguments.\n");
	return f == stdout ? 0 : 2;
}

int ctl_locate(int argc, char **argv, struct wf_json *j)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 't' },
		{ "map-only", no_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *vname, *off, *run_dir = NULL;
	bool ask = true;
	struct wf_extent_loc loc;
	struct ctx c;
	uint64_t offset;
	int opt, vol = -1, ret, ms = 2000;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:r:t:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'r': run_dir = optarg; break;
		case 'm': ask = false; break;
		case 't':
			if (ctl_parse_ms("locate", optarg, &ms))
				return 2;
			break;
		case 'h': return locate_usage(stdout);
		default: return locate_usage(stderr);
		}
	}
	run_dir = ctl_run_dir(run_dir);
	if (!path) {
		fprintf(stderr, "weftctl locate: no map: -c MAP is required\n");
		return locate_usage(stderr);
	}
	if (argc - optind != 2)
		return locate_usage(stderr);
	vname = argv[optind];
	off = argv[optind + 1];
	if (parse_size(off, &offset)) {
		fprintf(stderr, "weftctl locate: bad offset '%s'\n", off);
		return 2;
	}
	if (ctx_load(&c, path))
		return 1;
	for (uint32_t i = 0; i < c.map.nvolumes && vol < 0; i++)
		if (!strcmp(c.map.volumes[i].name, vname))
			vol = (int)i;
	for (uint32_t i = 0; i < c.map.nvolumes && vol < 0; i++) {
		char id[32];

		snprintf(id, sizeof(id), "%" PRIu64, c.map.volumes[i].id);
		if (!strcmp(id, vname))
			vol = (int)i;
	}
	if (vol < 0) {
		ctl_err("weftctl locate: %s: no volume '%s'\n", path, vname);
		ctx_free(&c);
		return 1;
	}
	ret = wf_place_extent(&c.t, &c.map, (uint32_t)vol, offset, &loc);
	if (ret) {
		ctl_err("weftctl locate: offset %" PRIu64 " is beyond volume '%s' "
			"(%" PRIu64 " bytes)\n", offset, vname, c.map.volumes[vol].size);
		ctx_free(&c);
		return 1;
	}
	if (j) {
		wf_json_str(j, "map", path);
		wf_json_u64(j, "epoch", c.map.epoch);
		wf_json_str(j, "volume", c.map.volumes[vol].name);
		wf_json_u64(j, "volume_id", c.map.volumes[vol].id);
		wf_json_str(j, "pool", c.map.pools[loc.pool].name);
		wf_json_u64(j, "offset", offset);
		wf_json_u64(j, "extent", loc.extent);
		wf_json_u64(j, "extent_first_byte", loc.extent * c.map.extent_size);
		wf_json_u64(j, "extent_last_byte", (loc.extent + 1) * c.map.extent_size - 1);
		wf_json_u64(j, "pg", loc.pg);
		wf_json_u64(j, "pg_num", c.map.pools[loc.pool].pg_num);
		wf_json_u64(j, "replicas", c.map.pools[loc.pool].replicas);
		wf_json_bool(j, "asked", ask);
		wf_json_arr_begin(j, "acting");
	} else {
		printf("volume  %s (id %" PRIu64 "), pool %s, epoch %" PRIu64 "\n",
		       c.map.volumes[vol].name, c.map.volumes[vol].id,
		       c.map.pools[loc.pool].name, c.map.epoch);
		printf("offset  %" PRIu64 " -> extent %" PRIu64 " (bytes %" PRIu64 "..%"
		       PRIu64 ")\n", offset, loc.extent, loc.extent * c.map.extent_size,
		       (loc.extent + 1) * c.map.extent_size - 1);
		printf("pg      %u of %u\n", loc.pg, c.map.pools[loc.pool].pg_num);
		printf("acting  %u of %u replicas up\n", loc.n,
		       c.map.pools[loc.pool].replicas);
	}
	/* The map says who should serve; the targets say who does. */
	for (unsigned i = 0; i < loc.n; i++) {
		const struct wf_target *t = &c.map.targets[loc.acting[i]];
		bool v6 = strchr(t->addr, ':') != NULL;
		struct wf_ctl_status st;
		const char *via = NULL;
		char says[160];

		says[0] = 0;
		ret = ask ? ctl_ask(run_dir, t, c.map.epoch, c.map.cluster_id, ms, &st, &via) : 0;
		if (ask && !ret && le32toh(st.target_id) != t->id)
			ret = -EPROTO;
		if (ret) {
			snprintf(says, sizeof(says), "DOWN: %s", ret == -EPROTO ?
				 "answered as another target" : strerror(-ret));
		} else if (ask) {
			snprintf(says, sizeof(says), "answers (epoch %" PRIu64 "%s)",
				 (uint64_t)le64toh(st.epoch),
				 le64toh(st.epoch) < c.map.epoch ? ", older" : "");
		}
		if (j) {
			wf_json_obj_begin(j, NULL);
			wf_json_str(j, "role", i == 0 ? "primary" : "replica");
			wf_json_u64(j, "id", t->id);
			wf_json_str(j, "addr", t->addr);
			wf_json_u64(j, "port", t->port);
			wf_json_str(j, "host", t->host);
			wf_json_str(j, "device", t->device);
			wf_json_bool(j, "map_up", t->up);
			if (!ask) {
				wf_json_str(j, "answers", NULL);
			} else {
				wf_json_bool(j, "answers", !ret);
				if (ret)
					wf_json_str(j, "error", says + 6);
				else
					wf_json_u64(j, "target_epoch", le64toh(st.epoch));
			}
			wf_json_obj_end(j);
			continue;
		}
		printf("  %-8s target %-5u %s%s%s:%u  host %s  %s  %s\n",
		       i == 0 ? "primary" : "replica", t->id, v6 ? "[" : "", t->addr,
		       v6 ? "]" : "", t->port, t->host, t->device, says);
	}
	if (j)
		wf_json_arr_end(j);
	ctx_free(&c);
	return 0;
}

/* ---- map show ------------------------------------------------------------ */

static const char *const node_type[] = { "device", "host", "rack", "root" };

static void json_node(struct wf_json *j, const struct ctx *c, uint32_t n, int depth,
		      uint32_t **counts, uint32_t **prim, const double *const *share)
{
	const struct wf_node *nd = &c->map.nodes[n];

	wf_json_obj_begin(j, NULL);
	wf_json_str(j, "name", nd->name);
	wf_json_str(j, "type", node_type[nd->type & 3]);
	wf_json_u64(j, "depth", (uint64_t)depth);
	wf_json_dbl(j, "weight", (double)nd->weight / WF_WEIGHT_ONE);
	if (nd->type == WF_NODE_DEVICE && nd->target < c->map.ntargets) {
		const struct wf_target *t = &c->map.targets[nd->target];

		wf_json_u64(j, "target", t->id);
		wf_json_bool(j, "up", t->up);
		wf_json_bool(j, "in", t->in);
		wf_json_arr_begin(j, "pools");
		for (uint32_t p = 0; p < c->map.npools; p++) {
			wf_json_obj_begin(j, NULL);
			wf_json_str(j, "pool", c->map.pools[p].name);
			wf_json_u64(j, "pgs", counts[p][nd->target]);
			wf_json_u64(j, "primaries", prim[p][nd->target]);
			wf_json_dbl(j, "share_pgs", share[p][nd->target] *
				    c->map.pools[p].pg_num * c->map.pools[p].replicas);
			wf_json_obj_end(j);
		}
		wf_json_arr_end(j);
	}
	wf_json_obj_end(j);
	for (uint32_t i = 0; i < nd->nchild; i++) {
		uint32_t ch = nd->first_child + i;

		if (ch < c->map.nchild && c->map.child[ch] < c->map.nnodes && depth < 8)
			json_node(j, c, c->map.child[ch], depth + 1, counts, prim, share);
	}
}

static void show_node(const struct ctx *c, uint32_t n, int depth, uint32_t **counts,
		      uint32_t **prim, const double *const *share)
{
	const char *const *type = node_type;
	const struct wf_node *nd = &c->map.nodes[n];

	printf("%*s%-*s %-6s %9.4f", depth * 2, "", 24 - depth * 2, nd->name,
	       type[nd->type & 3], (double)nd->weight / WF_WEIGHT_ONE);
	if (nd->type == WF_NODE_DEVICE && nd->target < c->map.ntargets) {
		const struct wf_target *t = &c->map.targets[nd->target];

		printf("  id %-5u %-8s", t->id, state(t));
		for (uint32_t p = 0; p < c->map.npools; p++)
			printf("  %6u %5u %7.1f", counts[p][nd->target], prim[p][nd->target],
			       share[p][nd->target] * c->map.pools[p].pg_num *
			       c->map.pools[p].replicas);
	}
	printf("\n");
	for (uint32_t i = 0; i < nd->nchild; i++) {
		uint32_t ch = nd->first_child + i;

		if (ch < c->map.nchild && c->map.child[ch] < c->map.nnodes && depth < 8)
			show_node(c, c->map.child[ch], depth + 1, counts, prim, share);
	}
}

static int map_usage(FILE *f)
{
	fprintf(f, "usage: weftctl map show -c MAP [--json]\n"
		"  Print the hierarchy with weights, target states and, per pool,\n"
		"  PGs held (all replicas), PGs led (primary) and the weight share;\n"
		"  then the pools and the volumes.\n");
	return f == stdout ? 0 : 2;
}

int ctl_map(int argc, char **argv, struct wf_json *j)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	uint32_t **counts = NULL, **prim = NULL;
	double **share = NULL;
	struct ctx c;
	int opt, ret = 1;

	if (argc >= 2 && !strcmp(argv[1], "push"))
		return ctl_map_push(argc - 1, argv + 1, j);
	if (argc >= 2 && (!strcmp(argv[1], "import") || !strcmp(argv[1], "export") ||
			  !strcmp(argv[1], "watch")))
		return ctl_map_etcd(argc - 1, argv + 1, j);
	if (argc < 2 || strcmp(argv[1], "show"))
		return map_usage(argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr);
	argc--;
	argv++;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'h': return map_usage(stdout);
		default: return map_usage(stderr);
		}
	}
	if (ctl_need_map("map show", path, argc, argv))
		return map_usage(stderr);
	if (ctx_load(&c, path))
		return 1;
	counts = calloc(c.map.npools + 1, sizeof(*counts));
	prim = calloc(c.map.npools + 1, sizeof(*prim));
	share = calloc(c.map.npools + 1, sizeof(*share));
	if (!counts || !prim || !share)
		goto out;
	for (uint32_t p = 0; p < c.map.npools; p++) {
		counts[p] = calloc(c.map.ntargets + 1, sizeof(**counts));
		prim[p] = calloc(c.map.ntargets + 1, sizeof(**prim));
		share[p] = calloc(c.map.ntargets + 1, sizeof(**share));
		if (!counts[p] || !prim[p] || !share[p] ||
		    wf_pool_shares(&c.pl, p, share[p]))
			goto out;
		wf_pg_counts(&c.t, p, c.map.ntargets, counts[p], prim[p]);
	}

	if (j) {
		wf_json_str(j, "map", path);
		wf_json_u64(j, "epoch", c.map.epoch);
		wf_json_u64(j, "cluster_id", c.map.cluster_id);
		wf_json_u64(j, "extent_size", c.map.extent_size);
		wf_json_u64(j, "overrides", c.map.noverrides);
		wf_json_u64(j, "overrides_honoured", c.t.noverrides_used);
		wf_json_u64(j, "pgs_pinned", c.map.ntemps);
		wf_json_arr_begin(j, "nodes");
		json_node(j, &c, 0, 0, counts, prim, (const double *const *)share);
		wf_json_arr_end(j);
		wf_json_arr_begin(j, "pools");
	} else {
		printf("epoch %" PRIu64 ", cluster %" PRIu64 ", extent size %u, %u "
		       "overrides (%u honoured)\n\n", c.map.epoch, c.map.cluster_id,
		       c.map.extent_size, c.map.noverrides, c.t.noverrides_used);
		printf("%-24s %-6s %9s  %-8s %-8s", "node", "type", "weight", "id", "state");
		for (uint32_t p = 0; p < c.map.npools; p++)
			printf("  %-22s", c.map.pools[p].name);
		printf("\n%-59s", "");
		for (uint32_t p = 0; p < c.map.npools; p++)
			printf("  %6s %5s %7s", "pgs", "prim", "target");
		printf("\n");
		show_node(&c, 0, 0, counts, prim, (const double *const *)share);
		printf("\n");
	}
	for (uint32_t p = 0; p < c.map.npools; p++) {
		const struct wf_pool *pool = &c.map.pools[p];
		double *load = calloc(c.map.ntargets + 1, sizeof(*load));
		double mom, cov, pmom, pcov;

		if (!load)
			goto out;
		for (uint32_t t = 0; t < c.map.ntargets; t++)
			load[t] = counts[p][t];
		wf_load_stats(load, share[p], c.map.ntargets, &mom, &cov);
		for (uint32_t t = 0; t < c.map.ntargets; t++)
			load[t] = prim[p][t];
		wf_load_stats(load, share[p], c.map.ntargets, &pmom, &pcov);
		free(load);
		if (j) {
			wf_json_obj_begin(j, NULL);
			wf_json_str(j, "name", pool->name);
			wf_json_u64(j, "id", pool->id);
			wf_json_u64(j, "replicas", pool->replicas);
			wf_json_u64(j, "min_size", pool->min_size);
			wf_json_str(j, "failure_domain", node_type[pool->failure_domain & 3]);
			wf_json_u64(j, "pg_num", pool->pg_num);
			wf_json_dbl(j, "max_over_mean", mom);
			wf_json_dbl(j, "cov", cov);
			wf_json_dbl(j, "primary_max_over_mean", pmom);
			wf_json_dbl(j, "primary_cov", pcov);
			wf_json_obj_end(j);
			continue;
		}
		printf("pool %s: %u replicas, failure domain %s, pg_num %u: "
		       "max/mean %.3f cov %.3f (primaries %.3f, %.3f)\n",
		       pool->name, pool->replicas, node_type[pool->failure_domain & 3],
		       pool->pg_num, mom, cov, pmom, pcov);
	}
	if (j) {
		wf_json_arr_end(j);
		wf_json_arr_begin(j, "volumes");
	} else {
		printf("\n%-24s %-8s %-16s %12s\n", "volume", "id", "pool", "size");
	}
	for (uint32_t i = 0; i < c.map.nvolumes; i++) {
		const struct wf_volume *v = &c.map.volumes[i];
		char sb[32];

		if (j) {
			wf_json_obj_begin(j, NULL);
			wf_json_str(j, "name", v->name);
			wf_json_u64(j, "id", v->id);
			wf_json_str(j, "pool", c.map.pools[v->pool].name);
			wf_json_u64(j, "size", v->size);
			wf_json_obj_end(j);
		} else {
			printf("%-24s %-8" PRIu64 " %-16s %12s\n", v->name, v->id,
			       c.map.pools[v->pool].name, ctl_bytes(sb, sizeof(sb), v->size));
		}
	}
	if (j)
		wf_json_arr_end(j);
	ret = 0;
out:
	for (uint32_t p = 0; p < c.map.npools; p++) {
		if (counts)
			free(counts[p]);
		if (prim)
			free(prim[p]);
		if (share)
			free(share[p]);
	}
	free(counts);
	free(prim);
	free(share);
	ctx_free(&c);
	if (ret)
		ctl_err("weftctl map show: out of memory\n");
	return ret;
}

/* ---- balance ------------------------------------------------------------- */

static int balance_usage(FILE *f)
{
	fprintf(f, "usage: weftctl balance -c MAP [-o OUT] [--prev DEPLOYED] [--max-dev F]\n"
		"                       [--primary-dev F] [--json]\n"
		"  Compute the PG overrides that bring every device within\n"
		"  max(1, F * target) PGs of its weight share (default F 0.01), keeping\n"
		"  the overrides of MAP that are still valid.  DEPLOYED is the map the\n"
		"  cluster runs now (default: MAP itself); moves that only redirect data\n"
		"  which has to move anyway are preferred.  Primaries are then balanced\n"
		"  the same way by reordering acting sets (--primary-dev, default 0.01;\n"
		"  -1 leaves them alone).  With -o, write MAP with the new overrides\n"
		"  and epoch + 1 to OUT, every PG that gains a member pinned to the\n"
		"  members that hold its data (pg_temp) until `weftctl recover` has\n"
		"  seen them bring it up to date.\n");
	return f == stdout ? 0 : 2;
}

static void pool_figs(const struct ctx *c, uint32_t p, bool primaries, double *mom,
		      double *cov)
{
	uint32_t n = c->map.ntargets;
	uint32_t *cnt = calloc(n + 1, sizeof(*cnt));
	double *load = calloc(n + 1, sizeof(*load)), *share = calloc(n + 1, sizeof(*share));

	*mom = *cov = 0;
	if (cnt && load && share && !wf_pool_shares(&c->pl, p, share)) {
		wf_pg_counts(&c->t, p, n, primaries ? NULL : cnt, primaries ? cnt : NULL);
		for (uint32_t t = 0; t < n; t++)
			load[t] = cnt[t];
		wf_load_stats(load, share, n, mom, cov);
	}
	free(cnt);
	free(load);
	free(share);
}

int ctl_balance(int argc, char **argv, struct wf_json *j)
{
	static const struct option opts[] = {
		{ "config",  required_argument, NULL, 'c' },
		{ "output",  required_argument, NULL, 'o' },
		{ "prev",    required_argument, NULL, 'p' },
		{ "max-dev", required_argument, NULL, 'd' },
		{ "primary-dev", required_argument, NULL, 'P' },
		{ "help",    no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *outp = NULL, *prevp = NULL;
	struct wf_balance_opts bo = { .max_dev = 0.01 };
	struct wf_override *ov = NULL, *old_ov;
	struct ctx c, prev, after;
	uint32_t nov = 0, moves = 0, old_n;
	uint64_t old_epoch;
	int opt, ret;
	char *end;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:o:p:d:P:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'o': outp = optarg; break;
		case 'p': prevp = optarg; break;
		case 'd':
			bo.max_dev = strtod(optarg, &end);
			if (*end || !(bo.max_dev > 0 && bo.max_dev < 1))
				return balance_usage(stderr);
			break;
		case 'P':
			bo.primary_dev = strtod(optarg, &end);
			if (*end || !(bo.primary_dev < 1) || bo.primary_dev == 0)
				return balance_usage(stderr);
			break;
		case 'h': return balance_usage(stdout);
		default: return balance_usage(stderr);
		}
	}
	if (ctl_need_map("balance", path, argc, argv))
		return balance_usage(stderr);
	if (ctx_load(&c, path))
		return 1;
	if (prevp && ctx_load(&prev, prevp)) {
		ctx_free(&c);
		return 1;
	}
	ret = wf_balance(&c.pl, prevp ? &prev.map : NULL, &bo, &ov, &nov, &moves);
	if (ret) {
		ctl_err("weftctl balance: %s\n", strerror(-ret));
		goto out;
	}

	/* The same map with the new overrides, one epoch later. */
	old_ov = c.map.overrides;
	old_n = c.map.noverrides;
	old_epoch = c.map.epoch;
	c.map.overrides = ov;
	c.map.noverrides = nov;
	c.map.epoch++;
	memset(&after, 0, sizeof(after));
	after.stage = 0;
	ret = wf_placer_init(&after.pl, &c.map);
	if (!ret) {
		after.stage = 2;
		ret = wf_pg_table_build(&after.t, &after.pl);
		if (!ret)
			after.stage = 3;
	}
	if (!ret) {
		after.map = c.map;
		if (j) {
			wf_json_str(j, "map", path);
			wf_json_arr_begin(j, "pools");
		}
		for (uint32_t p = 0; p < c.map.npools; p++) {
			double m0, c0, m1, c1, pm0, pc0, pm1, pc1;

			pool_figs(&c, p, false, &m0, &c0);
			pool_figs(&after, p, false, &m1, &c1);
			pool_figs(&c, p, true, &pm0, &pc0);
			pool_figs(&after, p, true, &pm1, &pc1);
			if (j) {
				wf_json_obj_begin(j, NULL);
				wf_json_str(j, "name", c.map.pools[p].name);
				wf_json_dbl(j, "max_over_mean_before", m0);
				wf_json_dbl(j, "max_over_mean_after", m1);
				wf_json_dbl(j, "cov_before", c0);
				wf_json_dbl(j, "cov_after", c1);
				wf_json_dbl(j, "primary_max_over_mean_before", pm0);
				wf_json_dbl(j, "primary_max_over_mean_after", pm1);
				wf_json_dbl(j, "primary_cov_before", pc0);
				wf_json_dbl(j, "primary_cov_after", pc1);
				wf_json_obj_end(j);
				continue;
			}
			printf("pool %s: PGs per device max/mean %.3f -> %.3f, cov %.3f -> %.3f; "
			       "primaries max/mean %.3f -> %.3f, cov %.3f -> %.3f\n",
			       c.map.pools[p].name, m0, m1, c0, c1, pm0, pm1, pc0, pc1);
		}
		if (j) {
			wf_json_arr_end(j);
			wf_json_u64(j, "overrides", nov);
			wf_json_u64(j, "overrides_before", old_n);
			wf_json_u64(j, "replica_moves", moves);
			wf_json_u64(j, "epoch_before", old_epoch);
		} else {
			printf("%u overrides (was %u), %u replica moves, epoch %" PRIu64
			       " -> %" PRIu64 "\n", nov, old_n, moves, old_epoch,
			       c.map.epoch);
		}
	}
	if (after.stage >= 3)
		wf_pg_table_free(&after.t);
	if (after.stage >= 2)
		wf_placer_free(&after.pl);
	if (!ret && outp) {
		/* Written with pins (pg_temp): every PG that gains a member
		 * stays on the members that hold its data until they have
		 * brought the newcomer up to date (`weftctl recover`). */
		struct wf_map next;
		int pinned;

		c.map.overrides = old_ov;
		c.map.noverrides = old_n;
		c.map.epoch = old_epoch;
		ret = wf_map_copy(&next, &c.map) ? -ENOMEM : 0;
		if (!ret) {
			struct wf_override *o2 = malloc(nov ? nov * sizeof(*o2) : 1);

			if (o2) {
				memcpy(o2, ov, nov * sizeof(*o2));
				free(next.overrides);
				next.overrides = o2;
				next.noverrides = nov;
				next.epoch = old_epoch + 1;
				pinned = wf_map_pin_moves(&c.map, &next);
				ret = pinned < 0 ? pinned : 0;
			} else {
				ret = -ENOMEM;
			}
			if (ret == -ENOMEM)
				ctl_err("weftctl balance: out of memory\n");
			if (!ret && j)
				wf_json_u64(j, "pgs_pinned", (uint64_t)pinned);
			/* Over MAP itself: the old file stays as MAP.bak;
			 * the targets are not told (copy it where it
			 * belongs, as with any other OUT). */
			if (!ret)
				ret = ctl_map_save(&next, path, outp, NULL, j) ? -EIO : 0;
			if (!ret && !j)
				printf("%d PGs pinned to the members that hold their "
				       "data: run `weftctl recover` to move it\n", pinned);
			wf_map_edit_free(&next);
		}
	}
	/* Give the map back its own overrides so wf_map_free frees those. */
	c.map.overrides = old_ov;
	c.map.noverrides = old_n;
	free(ov);
out:
	if (prevp)
		ctx_free(&prev);
	ctx_free(&c);
	return ret ? 1 : 0;
}
