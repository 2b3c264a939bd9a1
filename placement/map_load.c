/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cluster map loader.
 *
 * libconfig parses the text; the loader walks it section by section and
 * checks it field by field (the checks themselves are in map_check.c) so
 * that a bad map is refused with "FILE:LINE: FIELD: what is wrong" and a
 * good one becomes a struct wf_map whose layout does not depend on the
 * order of entries in the file: targets are sorted by id, the node tree is
 * sorted by (hash_id, name) at every level, overrides by (pool, pg).
 *
 * The reference for the format is docs/configuration.md.
 */
#define _GNU_SOURCE             /* qsort_r */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libconfig.h>
#include <xxhash.h>

#include "placement/map.h"
#include "placement/map_int.h"

#define MAP_MAX_BYTES   (64u << 20)     /* refuse bigger files outright */
#define EXTENT_DEFAULT  (1u << 20)
#define EXTENT_MIN      4096u
#define EXTENT_MAX      (1u << 30)
#define PG_NUM_MAX      (1u << 20)
#define WEIGHT_MAX      65535.0

/* ---- list sections: targets, pools, volumes, overrides ---- */

/* Parses element i of a list, already known to be a group of known keys;
 * path is its field name ("pools[3]"). */
typedef int (*parse_one_fn)(struct ld *ld, uint32_t i, config_setting_t *el,
			    const char *path);

/*
 * The part every top-level list shares: find it, insist on ( ... ), allocate
 * the caller's array (count elements of size bytes; parr is the address of
 * its struct foo * pointer) and *els (the elements' settings, kept for the
 * line numbers of later messages), then parse each element in file order.
 * An absent optional list or an empty one leaves *count 0 and both arrays
 * NULL; empty, when set, is the complaint for an empty list instead.  Every
 * element must be a group whose keys are all in keys[]; keys[0] is the one
 * the message for a non-group shows.  On failure the arrays may be half
 * filled: the caller's owners free them.
 */
static int parse_section(struct ld *ld, const config_setting_t *root, const char *name,
			 bool required, const char *empty, const char *const *keys,
			 size_t size, uint32_t *count, void *parr,
			 config_setting_t ***els, parse_one_fn one)
{
	config_setting_t *list;
	char f[FIELD_MAX], path[FIELD_MAX];
	uint32_t n;
	void *arr;
	int r;

	r = wf_map_member(ld, root, "", name, T_SEQ, required, &list, f);
	if (r || !list)
		return r;
	if (config_setting_type(list) != CONFIG_TYPE_LIST)
		return wf_map_fail(ld, wf_map_line_of(list), f,
				   "expected a list ( { ... }, ... ), not %s",
				   wf_map_type_name(config_setting_type(list)));
	n = (uint32_t)config_setting_length(list);
	if (!n)
		return empty ? wf_map_fail(ld, wf_map_line_of(list), f, "%s", empty) : 0;
	*count = n;
	/* memcpy: storing through a void * lvalue would break strict aliasing */
	arr = calloc(n, size);
	memcpy(parr, &arr, sizeof(arr));
	*els = calloc(n, sizeof(**els));
	if (!arr || !*els)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		config_setting_t *el = config_setting_get_elem(list, i);

		(*els)[i] = el;
		snprintf(path, sizeof(path), "%s[%u]", name, i);
		if (config_setting_type(el) != CONFIG_TYPE_GROUP)
			return wf_map_fail(ld, wf_map_line_of(el), path,
					   "expected a group { %s = ...; }, not %s", keys[0],
					   wf_map_type_name(config_setting_type(el)));
		r = wf_map_check_keys(ld, el, path, keys);
		if (!r)
			r = one(ld, i, el, path);
		if (r)
			return r;
	}
	return 0;
}

/* ---- targets ---- */

static int parse_state(struct ld *ld, const config_setting_t *s, const char *f,
		       const char *v, bool *up, bool *in)
{
	int seen_up = 0, seen_in = 0;
	const char *p = v;

	*up = *in = true;
	for (;;) {
		const char *e;
		size_t n;

		while (*p == ' ')
			p++;
		e = p;
		while (*e && *e != ',' && *e != ' ')
			e++;
		n = (size_t)(e - p);
		if (n == 2 && !strncmp(p, "up", 2)) {
			seen_up++;
		} else if (n == 4 && !strncmp(p, "down", 4)) {
			seen_up++;
			*up = false;
		} else if (n == 2 && !strncmp(p, "in", 2)) {
			seen_in++;
		} else if (n == 3 && !strncmp(p, "out", 3)) {
			seen_in++;
			*in = false;
		} else {
			return wf_map_fail(ld, wf_map_line_of(s), f,
					   "unknown state \"%.*s\" in \"%s\" "
					   "(use up|down and in|out, e.g. \"up,in\")",
					   (int)(n > 32 ? 32 : n), p, v);
		}
		if (seen_up > 1 || seen_in > 1)
			return wf_map_fail(ld, wf_map_line_of(s), f, "\"%s\" gives %s twice", v,
					   seen_up > 1 ? "up/down" : "in/out");
		while (*e == ' ')
			e++;
		if (!*e)
			return 0;
		if (*e != ',')
			return wf_map_fail(ld, wf_map_line_of(s), f,
					   "separate states with ',' in \"%s\"", v);
		p = e + 1;
	}
}

static const char *const target_keys[] = {
	"id", "host", "addr", "port", "device", "weight", "state", NULL
};

static int parse_target(struct ld *ld, uint32_t i, config_setting_t *el,
			const char *path)
{
	struct wf_target *t = &ld->ft[i];
	char f[FIELD_MAX], state[WF_NAME_MAX];
	config_setting_t *s;
	int64_t v;
	double w;
	int r;

	r = wf_map_get_int(ld, el, path, "id", true, 0, 0, INT32_MAX, &v);
	if (r)
		return r;
	t->id = (uint32_t)v;
	r = wf_map_get_str(ld, el, path, "host", true, NULL, t->host, sizeof(t->host),
			   STR_NAME, NULL);
	if (!r)
		r = wf_map_get_str(ld, el, path, "addr", true, NULL, t->addr, sizeof(t->addr),
				   STR_ADDR, NULL);
	if (!r)
		r = wf_map_get_int(ld, el, path, "port", true, 0, 1, 65535, &v);
	if (r)
		return r;
	t->port = (uint16_t)v;
	r = wf_map_get_str(ld, el, path, "device", true, NULL, t->device, sizeof(t->device),
			   STR_PATH, NULL);
	if (!r)
		r = wf_map_member(ld, el, path, "weight", T_NUM, false, &s, f);
	if (r)
		return r;
	w = s ? config_setting_get_float(s) : 1.0;
	if (s && config_setting_type(s) != CONFIG_TYPE_FLOAT)
		w = (double)config_setting_get_int64(s);
	if (!(w >= 0.0 && w <= WEIGHT_MAX))
		return wf_map_fail(ld, wf_map_line_of(s), f, "%g is out of range 0..65535", w);
	t->weight = (uint32_t)lround(w * WF_WEIGHT_ONE);
	if (w > 0.0 && t->weight == 0)
		return wf_map_fail(ld, wf_map_line_of(s), f, "%g is below the resolution 1/65536 "
				   "(write 0 for no data)", w);
	r = wf_map_get_str(ld, el, path, "state", false, "up,in", state, sizeof(state),
			   STR_ANY, &s);
	if (r)
		return r;
	return parse_state(ld, s ? s : el, wf_map_field(f, path, "state"), state, &t->up, &t->in);
}

static int parse_targets(struct ld *ld, const config_setting_t *root)
{
	int r;

	r = parse_section(ld, root, "targets", true, "empty: a map needs at least one target",
			  target_keys, sizeof(*ld->ft), &ld->nt, &ld->ft, &ld->tel,
			  parse_target);
	if (r)
		return r;
	/* filled by parse_hosts */
	ld->thost = calloc(ld->nt, sizeof(*ld->thost));
	if (!ld->thost)
		return -ENOMEM;
	return wf_map_targets_unique(ld);
}

/* ---- hierarchy ---- */

static int host_by_name(const struct ld *ld, const char *name)
{
	uint32_t lo = 0, hi = ld->nhosts;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, ld->hosts[ld->hsorted[mid]].name);

		if (!c)
			return (int)ld->hsorted[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -ENOENT;
}

static int index_hosts(struct ld *ld)
{
	struct key *k = calloc(ld->nhosts ? ld->nhosts : 1, sizeof(*k));

	ld->hsorted = calloc(ld->nhosts ? ld->nhosts : 1, sizeof(*ld->hsorted));
	if (!k || !ld->hsorted) {
		free(k);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < ld->nhosts; i++)
		k[i] = (struct key){ .s = ld->hosts[i].name, .idx = i };
	qsort(k, ld->nhosts, sizeof(*k), wf_map_key_cmp);
	for (uint32_t i = 0; i < ld->nhosts; i++)
		ld->hsorted[i] = k[i].idx;
	free(k);
	return 0;
}

/* No hierarchy in the file: one rack "default" holding every host. */
static int implicit_hierarchy(struct ld *ld)
{
	struct key *k;
	uint32_t n = 0;

	ld->racks = calloc(1, sizeof(*ld->racks));
	ld->hosts = calloc(ld->nt, sizeof(*ld->hosts));
	k = calloc(ld->nt, sizeof(*k));
	if (!ld->racks || !ld->hosts || !k) {
		free(k);
		return -ENOMEM;
	}
	ld->nracks = 1;
	strcpy(ld->racks[0].name, "default");
	ld->racks[0].el = config_root_setting(&ld->cfg);
	for (uint32_t i = 0; i < ld->nt; i++)
		k[i] = (struct key){ .s = ld->ft[i].host, .idx = i };
	qsort(k, ld->nt, sizeof(*k), wf_map_key_cmp);
	for (uint32_t i = 0; i < ld->nt; i++) {
		if (i && !strcmp(k[i].s, k[i - 1].s))
			continue;
		ld->hosts[n].name = k[i].s;
		ld->hosts[n].el = ld->tel[k[i].idx];
		ld->hosts[n].rack = 0;
		n++;
	}
	ld->nhosts = n;
	free(k);
	return index_hosts(ld);
}

static const char *const rack_keys[] = { "rack", "hosts", NULL };

static int parse_hierarchy(struct ld *ld, config_setting_t *list, const char *lf)
{
	uint32_t nr, nh = 0, a, b;
	char path[FIELD_MAX], f[FIELD_MAX];
	config_setting_t *hs;
	struct key *k;
	int r;

	if (config_setting_type(list) != CONFIG_TYPE_LIST)
		return wf_map_fail(ld, wf_map_line_of(list), lf,
				   "expected a list ( { rack = ...; }, ... ), "
				   "not %s", wf_map_type_name(config_setting_type(list)));
	nr = (uint32_t)config_setting_length(list);
	ld->racks = calloc(nr ? nr : 1, sizeof(*ld->racks));
	if (!ld->racks)
		return -ENOMEM;
	ld->nracks = nr;
	/* first pass: shape, names, and how many hosts in all */
	for (uint32_t i = 0; i < nr; i++) {
		config_setting_t *el = config_setting_get_elem(list, i);

		snprintf(path, sizeof(path), "hierarchy[%u]", i);
		ld->racks[i].el = el;
		if (config_setting_type(el) != CONFIG_TYPE_GROUP)
			return wf_map_fail(ld, wf_map_line_of(el), path,
					   "expected a group { rack = ...; "
					   "hosts = (...); }, not %s",
					   wf_map_type_name(config_setting_type(el)));
		r = wf_map_check_keys(ld, el, path, rack_keys);
		if (!r)
			r = wf_map_get_str(ld, el, path, "rack", true, NULL, ld->racks[i].name,
					   WF_NAME_MAX, STR_NAME, NULL);
		if (!r)
			r = wf_map_member(ld, el, path, "hosts", T_SEQ, true, &hs, f);
		if (r)
			return r;
		for (int j = 0; j < config_setting_length(hs); j++) {
			config_setting_t *h = config_setting_get_elem(hs, (unsigned)j);
			char hf[FIELD_MAX];

			snprintf(hf, sizeof(hf), "%.48s.hosts[%d]", path, j);
			if (config_setting_type(h) != CONFIG_TYPE_STRING)
				return wf_map_fail(ld, wf_map_line_of(h), hf,
						   "expected a host name string, not %s",
						   wf_map_type_name(config_setting_type(h)));
			r = wf_map_check_str(ld, h, hf, config_setting_get_string(h), WF_NAME_MAX,
					     STR_NAME);
			if (r)
				return r;
			nh++;
		}
	}
	k = calloc(nr > nh ? nr + 1 : nh + 1, sizeof(*k));
	ld->hosts = calloc(nh ? nh : 1, sizeof(*ld->hosts));
	if (!k || !ld->hosts) {
		free(k);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < nr; i++)
		k[i] = (struct key){ .s = ld->racks[i].name, .idx = i };
	if (wf_map_find_dup(k, nr, &a, &b)) {
		snprintf(f, sizeof(f), "hierarchy[%u].rack", b);
		r = wf_map_fail(ld, wf_map_line_of(config_setting_get_member(ld->racks[b].el,
									     "rack")), f,
				"duplicate rack \"%s\" (also hierarchy[%u], line %d)",
				ld->racks[b].name, a, wf_map_line_of(ld->racks[a].el));
		free(k);
		return r;
	}
	for (uint32_t i = 0; i < nr; i++) {
		hs = config_setting_get_member(ld->racks[i].el, "hosts");
		for (int j = 0; j < config_setting_length(hs); j++) {
			struct host *h = &ld->hosts[ld->nhosts];

			h->el = config_setting_get_elem(hs, (unsigned)j);
			h->name = config_setting_get_string(h->el);
			h->rack = i;
			k[ld->nhosts] = (struct key){ .s = h->name, .idx = ld->nhosts };
			ld->nhosts++;
		}
	}
	if (wf_map_find_dup(k, nh, &a, &b)) {
		const struct host *ha = &ld->hosts[a], *hb = &ld->hosts[b];

		snprintf(f, sizeof(f), "hierarchy[%u].hosts", hb->rack);
		if (ha->rack == hb->rack)
			r = wf_map_fail(ld, wf_map_line_of(hb->el), f,
					"host \"%s\" is listed twice", hb->name);
		else
			r = wf_map_fail(ld, wf_map_line_of(hb->el), f,
					"host \"%s\" is in two racks: "
					"\"%s\" (line %d) and \"%s\"", hb->name,
					ld->racks[ha->rack].name, wf_map_line_of(ha->el),
					ld->racks[hb->rack].name);
		free(k);
		return r;
	}
	free(k);
	return index_hosts(ld);
}

static int parse_hosts(struct ld *ld, const config_setting_t *root)
{
	config_setting_t *list;
	char f[FIELD_MAX];
	int r;

	r = wf_map_member(ld, root, "", "hierarchy", T_SEQ, false, &list, f);
	if (r)
		return r;
	r = list ? parse_hierarchy(ld, list, f) : implicit_hierarchy(ld);
	if (r)
		return r;
	for (uint32_t i = 0; i < ld->nt; i++) {
		int h = host_by_name(ld, ld->ft[i].host);

		if (h < 0) {
			snprintf(f, sizeof(f), "targets[%u].host", i);
			return wf_map_fail(ld, wf_map_line_of(config_setting_get_member(ld->tel[i],
											"host")),
					   f, "host \"%s\" is in no rack of the hierarchy",
					   ld->ft[i].host);
		}
		ld->thost[i] = (uint32_t)h;
	}
	return 0;
}

/* ---- the node tree ---- */

static int cmp_rack(const void *pa, const void *pb, void *arg)
{
	const struct ld *ld = arg;
	const struct rack *a = &ld->racks[*(const uint32_t *)pa];
	const struct rack *b = &ld->racks[*(const uint32_t *)pb];

	if (a->hash != b->hash)
		return a->hash < b->hash ? -1 : 1;
	return strcmp(a->name, b->name);
}

static int cmp_host(const void *pa, const void *pb, void *arg)
{
	const struct ld *ld = arg;
	const struct host *a = &ld->hosts[*(const uint32_t *)pa];
	const struct host *b = &ld->hosts[*(const uint32_t *)pb];
	uint32_t ra = ld->racks[a->rack].node, rb = ld->racks[b->rack].node;

	if (ra != rb)
		return ra < rb ? -1 : 1;
	if (a->hash != b->hash)
		return a->hash < b->hash ? -1 : 1;
	return strcmp(a->name, b->name);
}

/* Sorted targets: by host node, then id. */
static int cmp_dev(const void *pa, const void *pb, void *arg)
{
	const struct ld *ld = arg;
	uint32_t ia = *(const uint32_t *)pa, ib = *(const uint32_t *)pb;
	uint32_t ha = ld->hosts[ld->thost[ia]].node, hb = ld->hosts[ld->thost[ib]].node;

	if (ha != hb)
		return ha < hb ? -1 : 1;
	return (ld->ft[ia].id > ld->ft[ib].id) - (ld->ft[ia].id < ld->ft[ib].id);
}

static int cmp_tid(const void *pa, const void *pb, void *arg)
{
	const struct ld *ld = arg;
	uint32_t a = ld->ft[*(const uint32_t *)pa].id, b = ld->ft[*(const uint32_t *)pb].id;

	return (a > b) - (a < b);
}

static uint32_t name_hash(const char *name)
{
	return XXH32(name, strlen(name), 0);
}

static void set_node(struct wf_node *n, const char *name, uint8_t type, int32_t parent,
		     uint32_t hash)
{
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->type = type;
	n->parent = parent;
	n->hash_id = hash;
}

/*
 * Lays the tree out breadth first: root, racks, hosts, devices, each level
 * grouped by parent and sorted by (hash_id, name), so every node's
 * children are one contiguous run and the layout ignores file order.
 */
static int build_tree(struct ld *ld)
{
	struct wf_map *m = ld->map;
	uint32_t R = ld->nracks, H = ld->nhosts, T = ld->nt;
	uint32_t nn = 1 + R + H + T, maxn = R > H ? R : H;
	uint32_t *ord, *byid;
	int r = 0;

	maxn = maxn > T ? maxn : T;
	ord = calloc(maxn, sizeof(*ord));
	byid = calloc(T, sizeof(*byid));
	m->nodes = calloc(nn, sizeof(*m->nodes));
	m->child = calloc(nn, sizeof(*m->child));
	m->targets = calloc(T, sizeof(*m->targets));
	if (!ord || !byid || !m->nodes || !m->child || !m->targets) {
		r = -ENOMEM;
		goto out;
	}
	m->nnodes = nn;
	m->nchild = nn - 1;
	m->ntargets = T;

	/* targets sorted by id: wf_map_target_by_id bisects */
	for (uint32_t i = 0; i < T; i++)
		byid[i] = i;
	qsort_r(byid, T, sizeof(*byid), cmp_tid, ld);

	set_node(&m->nodes[0], "root", WF_NODE_ROOT, -1, name_hash("root"));
	for (uint32_t i = 0; i < R; i++) {
		ld->racks[i].hash = name_hash(ld->racks[i].name);
		ord[i] = i;
	}
	qsort_r(ord, R, sizeof(*ord), cmp_rack, ld);
	for (uint32_t p = 0; p < R; p++) {
		struct rack *rk = &ld->racks[ord[p]];

		rk->node = 1 + p;
		set_node(&m->nodes[rk->node], rk->name, WF_NODE_RACK, 0, rk->hash);
	}
	for (uint32_t i = 0; i < H; i++) {
		ld->hosts[i].hash = name_hash(ld->hosts[i].name);
		ord[i] = i;
	}
	qsort_r(ord, H, sizeof(*ord), cmp_host, ld);
	for (uint32_t p = 0; p < H; p++) {
		struct host *h = &ld->hosts[ord[p]];

		h->node = 1 + R + p;
		set_node(&m->nodes[h->node], h->name, WF_NODE_HOST,
			 (int32_t)ld->racks[h->rack].node, h->hash);
	}
	for (uint32_t i = 0; i < T; i++) {
		/* file index -> sorted index, through byid */
		memcpy(&m->targets[i], &ld->ft[byid[i]], sizeof(m->targets[i]));
		ord[i] = byid[i];
	}
	qsort_r(ord, T, sizeof(*ord), cmp_dev, ld);
	for (uint32_t p = 0; p < T; p++) {
		uint32_t fi = ord[p], ti = (uint32_t)wf_map_target_by_id(m, ld->ft[fi].id);
		struct wf_node *n = &m->nodes[1 + R + H + p];
		char name[WF_NAME_MAX];

		snprintf(name, sizeof(name), "target.%u", ld->ft[fi].id);
		set_node(n, name, WF_NODE_DEVICE, (int32_t)ld->hosts[ld->thost[fi]].node,
			 ld->ft[fi].id);
		n->target = ti;
		n->weight = m->targets[ti].weight;
		m->targets[ti].node = 1 + R + H + p;
	}
	/* parents come in nondecreasing order, so child[] is just 1..nn-1 */
	for (uint32_t i = 1; i < nn; i++) {
		struct wf_node *p = &m->nodes[m->nodes[i].parent];

		m->child[i - 1] = i;
		if (!p->nchild)
			p->first_child = i - 1;
		p->nchild++;
	}
	for (uint32_t i = nn - 1; i >= 1; i--)
		m->nodes[m->nodes[i].parent].weight += m->nodes[i].weight;
	/*
	 * Rendezvous draws hash the sibling's hash_id: two buckets with the
	 * same one would draw the same numbers.  Rare (XXH32), so refuse.
	 */
	for (uint32_t i = 2; i < 1 + R + H; i++) {
		const struct wf_node *a = &m->nodes[i - 1], *b = &m->nodes[i];

		if (a->parent == b->parent && a->type == b->type && a->hash_id == b->hash_id) {
			r = wf_map_fail(ld, 1, "hierarchy", "\"%s\" and \"%s\" have the same "
					"XXH32 hash %08x; rename one", a->name, b->name,
					a->hash_id);
			goto out;
		}
	}
out:
	free(byid);
	free(ord);
	return r;
}

/* ---- pools, volumes, overrides ---- */

static const char *const pool_keys[] = {
	"name", "id", "replicas", "min_size", "failure_domain", "pg_num", "algorithm",
	"sparse_ppm", NULL
};

static int parse_pool(struct ld *ld, uint32_t i, config_setting_t *el,
		      const char *path)
{
	struct wf_pool *p = &ld->map->pools[i];
	char f[FIELD_MAX], fd[WF_NAME_MAX];
	config_setting_t *s;
	uint32_t domains = 0;
	int64_t v;
	int r;

	r = wf_map_get_str(ld, el, path, "name", true, NULL, p->name, sizeof(p->name),
			   STR_NAME, NULL);
	if (!r)
		r = wf_map_get_int(ld, el, path, "id", true, 0, 0, INT32_MAX, &v);
	if (r)
		return r;
	p->id = (uint32_t)v;
	r = wf_map_get_int(ld, el, path, "replicas", true, 0, 1, WF_MAX_REPLICAS, &v);
	if (r)
		return r;
	p->replicas = (uint8_t)v;
	r = wf_map_get_int(ld, el, path, "min_size", false, p->replicas - p->replicas / 2, 1,
			   p->replicas, &v);
	if (r)
		return r;
	p->min_size = (uint8_t)v;
	r = wf_map_get_int(ld, el, path, "pg_num", true, 0, 1, PG_NUM_MAX, &v);
	if (r)
		return r;
	if (v & (v - 1))
		return wf_map_fail(ld, wf_map_line_of(config_setting_get_member(el, "pg_num")),
				   wf_map_field(f, path, "pg_num"),
				   "%" PRId64 " is not a power of two", v);
	p->pg_num = (uint32_t)v;
	/* Maps without the field keep the placement they were written for. */
	r = wf_map_get_str(ld, el, path, "algorithm", false, "straw2", fd, sizeof(fd),
			   STR_NAME, &s);
	if (r)
		return r;
	if (!strcmp(fd, "straw2"))
		p->algorithm = WF_ALGO_STRAW2;
	else if (!strcmp(fd, "sparse"))
		p->algorithm = WF_ALGO_SPARSE;
	else
		return wf_map_fail(ld, wf_map_line_of(s), wf_map_field(f, path, "algorithm"),
				   "unknown algorithm \"%s\" (straw2 or sparse)", fd);
	r = wf_map_get_int(ld, el, path, "sparse_ppm", p->algorithm == WF_ALGO_SPARSE, 0,
			   p->algorithm == WF_ALGO_SPARSE, WF_SPARSE_PPM_MAX, &v);
	if (r)
		return r;
	if (p->algorithm != WF_ALGO_SPARSE && config_setting_get_member(el, "sparse_ppm"))
		return wf_map_fail(ld, wf_map_line_of(config_setting_get_member(el, "sparse_ppm")),
				   wf_map_field(f, path, "sparse_ppm"),
				   "only for algorithm \"sparse\"");
	p->sparse_ppm = p->algorithm == WF_ALGO_SPARSE ? (uint32_t)v : 0;
	r = wf_map_get_str(ld, el, path, "failure_domain", false, "host", fd, sizeof(fd),
			   STR_NAME, &s);
	if (r)
		return r;
	wf_map_field(f, path, "failure_domain");
	for (p->failure_domain = 0; p->failure_domain < 3; p->failure_domain++)
		if (!strcmp(fd, wf_map_fd_names[p->failure_domain]))
			break;
	if (p->failure_domain == 3)
		return wf_map_fail(ld, wf_map_line_of(s), f,
				   "unknown type \"%s\" (device, host or rack)", fd);
	for (uint32_t n = 0; n < ld->map->nnodes; n++)
		if (ld->map->nodes[n].type == p->failure_domain && ld->map->nodes[n].weight)
			domains++;
	if (domains < p->replicas)
		return wf_map_fail(ld, wf_map_line_of(s ? s : el), f,
				   "pool \"%s\" needs %u %ss with "
				   "nonzero weight for %u replicas; the map has %u", p->name,
				   p->replicas, fd, p->replicas, domains);
	return 0;
}

static void pool_name_id(const struct wf_map *m, uint32_t i, const char **name,
			 uint64_t *id)
{
	*name = m->pools[i].name;
	*id = m->pools[i].id;
}

static int parse_pools(struct ld *ld, const config_setting_t *root)
{
	struct wf_map *m = ld->map;
	int r;

	r = parse_section(ld, root, "pools", false, NULL, pool_keys, sizeof(*m->pools),
			  &m->npools, &m->pools, &ld->pel, parse_pool);
	if (r)
		return r;
	return wf_map_names_ids_unique(ld, "pools", "pool", m->npools, ld->pel, pool_name_id);
}

/* "1G", "512MiB", "4096": bytes, binary units. */
static bool parse_size(const char *v, uint64_t *out)
{
	static const char units[] = "KMGTP";
	uint64_t n = 0;
	const char *u;
	unsigned shift = 0;

	if (!isdigit((unsigned char)*v))
		return false;
	for (; isdigit((unsigned char)*v); v++) {
		if (n > (UINT64_MAX - 9) / 10)
			return false;
		n = n * 10 + (uint64_t)(*v - '0');
	}
	if (*v) {
		u = strchr(units, toupper((unsigned char)*v));
		if (!u)
			return false;
		shift = 10 * (unsigned)(u - units + 1);
		v++;
		if (!strcmp(v, "iB") || !strcmp(v, "B"))
			v += strlen(v);
		if (*v)
			return false;
	}
	if (n > (UINT64_MAX >> shift))
		return false;
	*out = n << shift;
	return true;
}

static const char *const volume_keys[] = { "name", "id", "size", "pool", NULL };

static int parse_volume(struct ld *ld, uint32_t i, config_setting_t *el,
			const char *path)
{
	struct wf_volume *vol = &ld->map->volumes[i];
	char f[FIELD_MAX], pool[WF_NAME_MAX];
	config_setting_t *s;
	int64_t v;
	int r;

	r = wf_map_get_str(ld, el, path, "name", true, NULL, vol->name, sizeof(vol->name),
			   STR_NAME, NULL);
	if (!r)
		r = wf_map_get_int(ld, el, path, "id", true, 0, 0, INT64_MAX, &v);
	if (r)
		return r;
	vol->id = (uint64_t)v;
	r = wf_map_member(ld, el, path, "size", T_INT | T_STR, true, &s, f);
	if (r)
		return r;
	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		if (!parse_size(config_setting_get_string(s), &vol->size))
			return wf_map_fail(ld, wf_map_line_of(s), f,
					   "\"%.32s\" is not a size (bytes, or a "
					   "number with K, M, G, T or P)",
					   config_setting_get_string(s));
	} else {
		v = config_setting_get_int64(s);
		if (v < 0)
			return wf_map_fail(ld, wf_map_line_of(s), f, "negative");
		vol->size = (uint64_t)v;
	}
	if (vol->size == 0)
		return wf_map_fail(ld, wf_map_line_of(s), f, "zero");
	if (vol->size > INT64_MAX)
		return wf_map_fail(ld, wf_map_line_of(s), f, "larger than 2^63 - 1 bytes");
	if (vol->size % ld->map->extent_size)
		return wf_map_fail(ld, wf_map_line_of(s), f,
				   "%" PRIu64 " is not a multiple of the extent "
				   "size %u", vol->size, ld->map->extent_size);
	r = wf_map_get_str(ld, el, path, "pool", true, NULL, pool, sizeof(pool), STR_NAME, &s);
	if (r)
		return r;
	r = wf_map_pool_by_name(ld->map, pool);
	if (r < 0)
		return wf_map_fail(ld, wf_map_line_of(s), wf_map_field(f, path, "pool"),
				   "unknown pool \"%s\"", pool);
	vol->pool = (uint32_t)r;
	return 0;
}

static void volume_name_id(const struct wf_map *m, uint32_t i, const char **name,
			   uint64_t *id)
{
	*name = m->volumes[i].name;
	*id = m->volumes[i].id;
}

static int parse_volumes(struct ld *ld, const config_setting_t *root)
{
	struct wf_map *m = ld->map;
	int r;

	r = parse_section(ld, root, "volumes", false, NULL, volume_keys, sizeof(*m->volumes),
			  &m->nvolumes, &m->volumes, &ld->vel, parse_volume);
	if (r)
		return r;
	return wf_map_names_ids_unique(ld, "volumes", "volume", m->nvolumes, ld->vel,
				       volume_name_id);
}

static const char *const override_keys[] = { "pool", "pg", "acting", NULL };

/* An override or a pg_temp entry: pool, pg and a list of target ids (all
 * replicas of the pool, or with partial 1 .. replicas of them). */
static int parse_pgset(struct ld *ld, config_setting_t *el, const char *path,
		       struct wf_override *o, bool partial)
{
	char f[FIELD_MAX], pool[WF_NAME_MAX];
	const struct wf_pool *p;
	config_setting_t *s;
	int64_t v;
	int r, n;

	r = wf_map_get_str(ld, el, path, "pool", true, NULL, pool, sizeof(pool), STR_NAME, &s);
	if (r)
		return r;
	r = wf_map_pool_by_name(ld->map, pool);
	if (r < 0)
		return wf_map_fail(ld, wf_map_line_of(s), wf_map_field(f, path, "pool"),
				   "unknown pool \"%s\"", pool);
	o->pool = (uint32_t)r;
	p = &ld->map->pools[o->pool];
	r = wf_map_get_int(ld, el, path, "pg", true, 0, 0, INT32_MAX, &v);
	if (r)
		return r;
	if (v >= p->pg_num)
		return wf_map_fail(ld, wf_map_line_of(config_setting_get_member(el, "pg")),
				   wf_map_field(f, path, "pg"),
				   "%" PRId64 " is not below pg_num %u of "
				   "pool \"%s\"", v, p->pg_num, p->name);
	o->pg = (uint32_t)v;
	r = wf_map_member(ld, el, path, "acting", T_SEQ, true, &s, f);
	if (r)
		return r;
	n = config_setting_length(s);
	if (partial ? n < 1 || n > p->replicas : n != p->replicas)
		return wf_map_fail(ld, wf_map_line_of(s), f,
				   "%d targets for pool \"%s\" of %u replicas",
				   n, p->name, p->replicas);
	o->n = (uint8_t)n;
	for (int j = 0; j < n; j++) {
		const config_setting_t *t = config_setting_get_elem(s, (unsigned)j);
		char tf[FIELD_MAX];

		snprintf(tf, sizeof(tf), "%.80s[%d]", f, j);
		if (!wf_map_type_ok(config_setting_type(t), T_INT))
			return wf_map_fail(ld, wf_map_line_of(t), tf,
					   "expected a target id, not %s",
					   wf_map_type_name(config_setting_type(t)));
		v = config_setting_get_int64(t);
		if (v < 0 || v > INT32_MAX || wf_map_target_by_id(ld->map, (uint32_t)v) < 0)
			return wf_map_fail(ld, wf_map_line_of(t), tf, "unknown target %" PRId64, v);
		o->target[j] = (uint32_t)v;
		for (int q = 0; q < j; q++)
			if (o->target[q] == o->target[j])
				return wf_map_fail(ld, wf_map_line_of(t), tf,
						   "target %u appears twice", o->target[j]);
	}
	return 0;
}

static int parse_override(struct ld *ld, uint32_t i, config_setting_t *el,
			  const char *path)
{
	return parse_pgset(ld, el, path, &ld->map->overrides[i], false);
}

static int parse_temp(struct ld *ld, uint32_t i, config_setting_t *el,
		      const char *path)
{
	return parse_pgset(ld, el, path, &ld->map->temps[i], true);
}

static int cmp_override(const void *pa, const void *pb)
{
	const struct wf_override *a = pa, *b = pb;

	if (a->pool != b->pool)
		return a->pool < b->pool ? -1 : 1;
	return (a->pg > b->pg) - (a->pg < b->pg);
}

/* overrides and pg_temp: a list of (pool, pg, targets), one per (pool,
 * pg), sorted by it.  what: how a duplicate is said ("already has an
 * override"). */
static int parse_pgsets(struct ld *ld, const config_setting_t *root,
			const char *name, struct wf_override **arr, uint32_t *n,
			config_setting_t ***els, parse_one_fn one, const char *what)
{
	struct wf_map *m = ld->map;
	uint32_t a, b;
	struct key *k;
	int r;

	r = parse_section(ld, root, name, false, NULL, override_keys, sizeof(**arr),
			  n, arr, els, one);
	if (r || !*n)
		return r;
	k = calloc(*n, sizeof(*k));
	if (!k)
		return -ENOMEM;
	for (uint32_t i = 0; i < *n; i++)
		k[i] = (struct key){ .n = (uint64_t)(*arr)[i].pool << 32 | (*arr)[i].pg,
				     .idx = i };
	if (wf_map_find_dup(k, *n, &a, &b))
		r = wf_map_dup_fail(ld, *els, name, "pg", b,
				    "pool \"%s\" pg %u %s (%s[%u], line %d)",
				    m->pools[(*arr)[b].pool].name, (*arr)[b].pg, what,
				    name, a, wf_map_line_of((*els)[a]));
	free(k);
	if (!r)
		qsort(*arr, *n, sizeof(**arr), cmp_override);
	return r;
}

static int parse_overrides(struct ld *ld, const config_setting_t *root)
{
	return parse_pgsets(ld, root, "overrides", &ld->map->overrides,
			    &ld->map->noverrides, &ld->oel, parse_override,
			    "already has an override");
}

static int parse_temps(struct ld *ld, const config_setting_t *root)
{
	return parse_pgsets(ld, root, "pg_temp", &ld->map->temps, &ld->map->ntemps,
			    &ld->pel_temp, parse_temp, "is already pinned");
}

/* next_volume_id: optional, above every volume id (default: the largest
 * + 1, so a map from before the field keeps its meaning). */
static int parse_next_volume_id(struct ld *ld, const config_setting_t *root)
{
	struct wf_map *m = ld->map;
	uint64_t max = 0;
	int64_t v;
	int r;

	for (uint32_t i = 0; i < m->nvolumes; i++)
		if (m->volumes[i].id > max)
			max = m->volumes[i].id;
	if (max == INT64_MAX)
		return wf_map_fail(ld, 0, "volumes", "a volume id of %" PRIu64
				   " leaves no id for the next volume", max);
	r = wf_map_get_int(ld, root, "", "next_volume_id", false,
			   (int64_t)max + 1, 1, INT64_MAX, &v);
	if (r)
		return r;
	if ((uint64_t)v <= max)
		return wf_map_fail(ld, wf_map_line_of(config_setting_get_member(
					   root, "next_volume_id")),
				   "next_volume_id", "%" PRId64 " is not above every "
				   "volume id (the largest is %" PRIu64 "): ids are "
				   "never reused", v, max);
	m->next_volume_id = (uint64_t)v;
	return 0;
}

/* ---- entry points ---- */

static const char *const top_keys[] = {
	"epoch", "cluster_id", "extent_size", "targets", "hierarchy", "pools",
	"volumes", "overrides", "pg_temp", "next_volume_id", "auth", "read_lease_ms",
	"revoked_keys", "access", "peer_keys", NULL
};

static int parse(struct ld *ld, const char *text)
{
	const config_setting_t *root;
	struct wf_map *m = ld->map;
	int64_t v;
	int r;

	if (config_read_string(&ld->cfg, text) != CONFIG_TRUE)
		return wf_map_fail(ld, config_error_line(&ld->cfg), "syntax", "%s",
				   config_error_text(&ld->cfg) ? config_error_text(&ld->cfg) :
				   "parse error");
	root = config_root_setting(&ld->cfg);
	r = wf_map_check_keys(ld, root, "", top_keys);
	if (!r)
		r = wf_map_get_int(ld, root, "", "epoch", true, 0, 1, INT64_MAX, &v);
	if (r)
		return r;
	m->epoch = (uint64_t)v;
	r = wf_map_get_int(ld, root, "", "cluster_id", true, 0, 0, INT64_MAX, &v);
	if (r)
		return r;
	m->cluster_id = (uint64_t)v;
	r = wf_map_get_int(ld, root, "", "extent_size", false, EXTENT_DEFAULT, EXTENT_MIN,
			   EXTENT_MAX, &v);
	if (r)
		return r;
	if (v & (v - 1))
		return wf_map_fail(ld, wf_map_line_of(config_setting_get_member(root,
										"extent_size")),
				   "extent_size", "%" PRId64 " is not a power of two", v);
	m->extent_size = (uint32_t)v;
	m->read_lease_set = config_setting_get_member(root, "read_lease_ms") != NULL;
	r = wf_map_get_int(ld, root, "", "read_lease_ms", false, 0, 0,
			   WF_MAP_LEASE_MAX_MS, &v);
	if (r)
		return r;
	m->read_lease_ms = (uint32_t)v;
	r = parse_targets(ld, root);
	if (!r)
		r = parse_hosts(ld, root);
	if (!r)
		r = build_tree(ld);
	if (!r)
		r = parse_pools(ld, root);
	if (!r)
		r = parse_volumes(ld, root);
	if (!r)
		r = parse_overrides(ld, root);
	if (!r)
		r = parse_temps(ld, root);
	if (!r)
		r = parse_next_volume_id(ld, root);
	if (!r)
		r = wf_map_parse_keys(ld, root);
	return r;
}

int wf_map_load_buf(const char *buf, size_t len, const char *name,
		    struct wf_map *map, struct wf_map_err *err)
{
	struct ld ld = { .name = name ? name : "(map)", .err = err, .map = map };
	const char *nul;
	char *text;
	int r;

	memset(map, 0, sizeof(*map));
	err->msg[0] = '\0';
	if (len > MAP_MAX_BYTES) {
		snprintf(err->msg, sizeof(err->msg), "%s: larger than %u MiB", ld.name,
			 MAP_MAX_BYTES >> 20);
		return -EINVAL;
	}
	nul = memchr(buf, '\0', len);
	if (nul) {
		int line = 1;

		for (const char *p = buf; p < nul; p++)
			line += *p == '\n';
		return wf_map_fail(&ld, line, "text", "NUL byte in the file");
	}
	r = wf_map_prescan(&ld, buf, len);
	if (r)
		return r;
	/* libconfig wants a C string */
	text = malloc(len + 1);
	if (!text)
		return -ENOMEM;
	memcpy(text, buf, len);
	text[len] = '\0';

	config_init(&ld.cfg);
	r = parse(&ld, text);
	config_destroy(&ld.cfg);
	free(text);
	free(ld.vel);
	free(ld.oel);
	free(ld.pel_temp);
	free(ld.pel);
	free(ld.hsorted);
	free(ld.hosts);
	free(ld.racks);
	free(ld.thost);
	free(ld.tel);
	free(ld.ft);
	if (r) {
		if (r == -ENOMEM)
			snprintf(err->msg, sizeof(err->msg), "%s: out of memory", ld.name);
		wf_map_free(map);
	}
	return r;
}

int wf_map_load(const char *path, struct wf_map *map, struct wf_map_err *err)
{
	size_t len = 0, cap = 1 << 16;
	char *buf, *nb;
	ssize_t n;
	int fd, r;

	memset(map, 0, sizeof(*map));
	err->msg[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err->msg, sizeof(err->msg), "%s: cannot open: %s", path, wf_errdesc(-r));
		return r;
	}
	/* read whole, growing: a pipe (weftctl check -c /dev/stdin) has no size */
	buf = malloc(cap);
	r = buf ? 0 : -ENOMEM;
	while (!r) {
		if (len == cap) {
			if (cap > MAP_MAX_BYTES) {
				r = -EFBIG;
				break;
			}
			nb = realloc(buf, cap * 2);
			if (!nb) {
				r = -ENOMEM;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			r = -errno;
		else if (n == 0)
			break;
		else
			len += (size_t)n;
	}
	close(fd);
	if (r == -EFBIG) {
		snprintf(err->msg, sizeof(err->msg), "%s: larger than %u MiB", path,
			 MAP_MAX_BYTES >> 20);
		r = -EINVAL;
	} else if (r) {
		snprintf(err->msg, sizeof(err->msg), "%s: cannot read: %s", path, wf_errdesc(-r));
	}
	if (!r)
		r = wf_map_load_buf(buf, len, path, map, err);
	free(buf);
	return r;
}
