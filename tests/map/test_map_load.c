/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shipped maps load, their trees have the expected shape and weights,
 * save -> load gives the identical structure, and the layout does not
 * depend on the order of entries in the file.
 */
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <xxhash.h>

#include "placement/map.h"
#include "placement/placement.h"

static const char *src_dir(void)
{
	const char *s = getenv("WEFT_SRC");

	cr_assert(s != NULL, "WEFT_SRC not set (weft_test sets it)");
	return s;
}

static void load_conf(const char *name, struct wf_map *m)
{
	struct wf_map_err err;
	char path[4096];

	snprintf(path, sizeof(path), "%s/conf/%s", src_dir(), name);
	cr_assert_eq(wf_map_load(path, m, &err), 0, "%s: %s", path, err.msg);
}

static void load_text(const char *text, struct wf_map *m)
{
	struct wf_map_err err;

	cr_assert_eq(wf_map_load_buf(text, strlen(text), "t.conf", m, &err), 0, "%s", err.msg);
}

/* Everything map.h promises about a loaded map. */
static void check_invariants(const struct wf_map *m)
{
	cr_assert_gt(m->nnodes, 0);
	cr_assert_eq(m->nchild, m->nnodes - 1);
	cr_assert_eq(m->nodes[0].type, WF_NODE_ROOT);
	cr_assert_eq(m->nodes[0].parent, -1);
	cr_assert_str_eq(m->nodes[0].name, "root");
	for (uint32_t i = 1; i < m->ntargets; i++)
		cr_assert_lt(m->targets[i - 1].id, m->targets[i].id, "targets not sorted by id");
	for (uint32_t i = 0; i < m->ntargets; i++) {
		const struct wf_target *t = &m->targets[i];
		const struct wf_node *n = &m->nodes[t->node];

		cr_assert_lt(t->node, m->nnodes);
		cr_assert_eq(n->type, WF_NODE_DEVICE);
		cr_assert_eq(n->target, i);
		cr_assert_eq(n->hash_id, t->id);
		cr_assert_eq(n->weight, t->weight);
		cr_assert_str_eq(m->nodes[n->parent].name, t->host);
	}
	for (uint32_t i = 0; i < m->nnodes; i++) {
		const struct wf_node *n = &m->nodes[i];
		uint64_t sum = 0;

		if (n->type != WF_NODE_DEVICE) {
			cr_assert_eq(n->hash_id, XXH32(n->name, strlen(n->name), 0),
				     "bucket %s hash", n->name);
		} else {
			cr_assert_eq(n->nchild, 0);
			cr_assert_lt(n->target, m->ntargets);
		}
		cr_assert_leq(n->first_child + n->nchild, m->nchild);
		for (uint32_t j = 0; j < n->nchild; j++) {
			uint32_t c = m->child[n->first_child + j];
			const struct wf_node *cn = &m->nodes[c];

			cr_assert_lt(c, m->nnodes);
			cr_assert_eq(cn->parent, (int32_t)i, "child %s of %s", cn->name, n->name);
			cr_assert_eq(cn->type + 1, n->type, "child %s of %s: type", cn->name, n->name);
			sum += cn->weight;
			if (j) {
				const struct wf_node *pn = &m->nodes[m->child[n->first_child + j - 1]];

				cr_assert(pn->hash_id < cn->hash_id ||
					  (pn->hash_id == cn->hash_id && strcmp(pn->name, cn->name) < 0),
					  "children of %s not sorted: %s, %s", n->name, pn->name,
					  cn->name);
			}
		}
		if (n->type != WF_NODE_DEVICE)
			cr_assert_eq(n->weight, sum, "weight of %s", n->name);
	}
	for (uint32_t i = 0; i < m->nvolumes; i++) {
		cr_assert_lt(m->volumes[i].pool, m->npools);
		cr_assert_eq(m->volumes[i].size % m->extent_size, 0);
	}
	for (uint32_t i = 0; i < m->npools; i++) {
		cr_assert(m->pools[i].pg_num && !(m->pools[i].pg_num & (m->pools[i].pg_num - 1)));
		cr_assert(m->pools[i].min_size >= 1 && m->pools[i].min_size <= m->pools[i].replicas);
	}
}

/* save -> load of m gives the same structure, and the text is a fixpoint. */
static void check_roundtrip(const struct wf_map *m)
{
	char dir[] = "/tmp/weft-map-XXXXXX", path[64];
	struct wf_map_err err;
	struct wf_map back, again;
	char *t1 = NULL, *t2 = NULL;
	size_t n1 = 0, n2 = 0;
	FILE *f;

	cr_assert(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/m.conf", dir);
	cr_assert_eq(wf_map_save(m, path, &err), 0, "%s", err.msg);
	cr_assert_eq(wf_map_load(path, &back, &err), 0, "reload: %s", err.msg);
	cr_assert(wf_map_equal(m, &back), "saved map loads back different");
	cr_assert_eq(access(path, F_OK), 0);
	unlink(path);
	rmdir(dir);

	f = open_memstream(&t1, &n1);
	cr_assert_eq(wf_map_write(m, f), 0);
	fclose(f);
	f = open_memstream(&t2, &n2);
	cr_assert_eq(wf_map_write(&back, f), 0);
	fclose(f);
	cr_assert_str_eq(t1, t2, "canonical text differs after a round trip");
	cr_assert_eq(wf_map_load_buf(t2, n2, "mem", &again, &err), 0, "%s", err.msg);
	cr_assert(wf_map_equal(m, &again));
	wf_map_free(&again);
	wf_map_free(&back);
	free(t1);
	free(t2);
}

Test(map_load, every_conf_loads_and_round_trips)
{
	char pat[4096];
	glob_t g;

	snprintf(pat, sizeof(pat), "%s/conf/*.conf", src_dir());
	cr_assert_eq(glob(pat, 0, NULL, &g), 0, "no maps under %s", pat);
	cr_assert_geq(g.gl_pathc, 2);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		struct wf_map_err err;
		struct wf_map m;

		cr_assert_eq(wf_map_load(g.gl_pathv[i], &m, &err), 0, "%s", err.msg);
		check_invariants(&m);
		check_roundtrip(&m);
		wf_map_free(&m);
	}
	globfree(&g);
}

Test(map_load, local_conf)
{
	struct wf_map m;
	int p3, p1, v;

	load_conf("local.conf", &m);
	cr_assert_eq(m.epoch, 1);
	cr_assert_eq(m.extent_size, 1u << 20);
	cr_assert_eq(m.ntargets, 3);
	/* root -> implicit rack "default" -> localhost -> 3 devices */
	cr_assert_eq(m.nnodes, 6);
	cr_assert_str_eq(m.nodes[1].name, "default");
	cr_assert_eq(m.nodes[1].type, WF_NODE_RACK);
	cr_assert_str_eq(m.nodes[2].name, "localhost");
	cr_assert_eq(m.nodes[2].type, WF_NODE_HOST);
	cr_assert_eq(m.nodes[2].nchild, 3);
	cr_assert_eq(m.nodes[0].weight, 3 * WF_WEIGHT_ONE);
	cr_assert_eq(m.nodes[1].weight, 3 * WF_WEIGHT_ONE);
	cr_assert_eq(m.nodes[2].weight, 3 * WF_WEIGHT_ONE);
	for (uint32_t i = 0; i < 3; i++) {
		const struct wf_target *t = &m.targets[i];
		char dev[64];

		snprintf(dev, sizeof(dev), "/var/tmp/weft/dev%u", i);
		cr_assert_eq(t->id, i);
		cr_assert_eq(t->port, 7400 + 16 * i);
		cr_assert_str_eq(t->addr, "127.0.0.1");
		cr_assert_str_eq(t->device, dev);
		cr_assert_eq(t->weight, WF_WEIGHT_ONE);
		cr_assert(t->up && t->in);
		cr_assert_eq(m.nodes[3 + i].hash_id, i);
	}
	p3 = wf_map_pool_by_name(&m, "rep3");
	p1 = wf_map_pool_by_name(&m, "rep1");
	cr_assert(p3 >= 0 && p1 >= 0);
	cr_assert_eq(m.pools[p3].replicas, 3);
	cr_assert_eq(m.pools[p3].min_size, 2);
	cr_assert_eq(m.pools[p3].failure_domain, WF_NODE_DEVICE);
	cr_assert_eq(m.pools[p3].pg_num, 64);
	cr_assert_eq(m.pools[p1].replicas, 1);
	cr_assert_eq(m.pools[p1].pg_num, 64);
	v = wf_map_volume_by_name(&m, "vol3");
	cr_assert(v >= 0);
	cr_assert_eq(m.volumes[v].size, 1ull << 30);
	cr_assert_eq(m.volumes[v].pool, (uint32_t)p3);
	v = wf_map_volume_by_name(&m, "vol1");
	cr_assert(v >= 0);
	cr_assert_eq(m.volumes[v].pool, (uint32_t)p1);
	cr_assert_eq(wf_map_volume_by_name(&m, "nope"), -ENOENT);
	cr_assert_eq(wf_map_pool_by_name(&m, "nope"), -ENOENT);
	/* No next_volume_id in the file: the largest volume id + 1. */
	cr_assert_eq(m.next_volume_id, 3);
	cr_assert_eq(wf_map_target_by_id(&m, 2), 2);
	cr_assert_eq(wf_map_target_by_id(&m, 3), -ENOENT);
	wf_map_free(&m);
}

Test(map_load, rack128_conf)
{
	struct wf_map m;
	const struct wf_node *root;

	load_conf("rack128.conf", &m);
	check_invariants(&m);
	cr_assert_eq(m.ntargets, 128);
	cr_assert_eq(m.nnodes, 1 + 4 + 32 + 128);
	root = &m.nodes[0];
	cr_assert_eq(root->nchild, 4);
	cr_assert_eq(root->weight, 128ull * WF_WEIGHT_ONE);
	for (uint32_t r = 0; r < 4; r++) {
		const struct wf_node *rack = &m.nodes[m.child[root->first_child + r]];

		cr_assert_eq(rack->type, WF_NODE_RACK);
		cr_assert_eq(rack->nchild, 8);
		cr_assert_eq(rack->weight, 32ull * WF_WEIGHT_ONE);
		for (uint32_t h = 0; h < 8; h++) {
			const struct wf_node *host = &m.nodes[m.child[rack->first_child + h]];

			cr_assert_eq(host->type, WF_NODE_HOST);
			cr_assert_eq(host->nchild, 4);
			cr_assert_eq(host->weight, 4ull * WF_WEIGHT_ONE);
			/* hosts are named r<rack>h<n> by conf/gen-rack.py */
			cr_assert_eq(host->name[1], rack->name[4], "%s in %s", host->name, rack->name);
		}
	}
	cr_assert_eq(m.npools, 1);
	cr_assert_eq(m.pools[0].replicas, 3);
	cr_assert_eq(m.pools[0].failure_domain, WF_NODE_HOST);
	cr_assert_eq(m.pools[0].pg_num, 4096);
	cr_assert_eq(m.nvolumes, 1);
	cr_assert_eq(m.volumes[0].size, 1ull << 40);
	wf_map_free(&m);
}

/* A 2 x 3 x 2 map with uneven weights, written forwards or backwards. */
static char *gen_map(bool reverse)
{
	static const char *const states[] = { "up,in", "down,in", "up,out", "down , out" };
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	fprintf(f, "epoch = 3000000000L;\ncluster_id = 5;\nextent_size = 65536;\ntargets = (\n");
	for (int k = 0; k < 12; k++) {
		int i = reverse ? 11 - k : k;

		fprintf(f, "%s{ id = %d; host = \"host%d\"; addr = \"10.0.0.%d\"; port = %d; "
			"device = \"/dev/nvme%dn1\"; weight = %d.%d; state = \"%s\"; }\n",
			k ? "," : "", 100 - i * 3, i / 2, i / 2, 7400 + i, i % 2, 1 + i % 3, i * 7,
			states[i % 4]);
	}
	fprintf(f, ");\nhierarchy = (\n");
	for (int k = 0; k < 2; k++) {
		int r = reverse ? 1 - k : k;

		fprintf(f, "%s{ rack = \"rack-%c\"; hosts = [", k ? "," : "", 'a' + r);
		for (int j = 0; j < 3; j++) {
			int h = reverse ? 2 - j : j;

			fprintf(f, "%s\"host%d\"", j ? ", " : "", r * 3 + h);
		}
		fprintf(f, "]; }\n");
	}
	fprintf(f, ");\npools = ( { name = \"ec\"; id = 9; replicas = 2; failure_domain = \"rack\"; "
		"pg_num = 8; } );\nvolumes = ( { name = \"big\"; id = 5000000000L; "
		"size = 3221291008L; pool = \"ec\"; } );\n"
		"overrides = (\n");
	/* overrides in opposite orders too: they are sorted by (pool, pg) */
	for (int k = 0; k < 3; k++) {
		int pg = reverse ? 2 - k : k;

		fprintf(f, "%s{ pool = \"ec\"; pg = %d; acting = [%d, %d]; }\n", k ? "," : "",
			pg * 2, 100 - pg * 3, 85 - pg * 3);
	}
	fprintf(f, ");\n");
	fclose(f);
	return buf;
}

Test(map_load, file_order_does_not_matter)
{
	char *fw = gen_map(false), *bw = gen_map(true);
	struct wf_map a, b;

	load_text(fw, &a);
	load_text(bw, &b);
	check_invariants(&a);
	cr_assert(wf_map_equal(&a, &b), "file order changed the map");
	/* and the odd values survive a round trip exactly */
	cr_assert_eq(a.epoch, 3000000000ull);
	cr_assert_eq(a.volumes[0].id, 5000000000ull);
	cr_assert_eq(a.volumes[0].size, 3221291008ull);
	cr_assert_eq(a.extent_size, 65536);
	cr_assert_eq(a.noverrides, 3);
	for (uint32_t i = 0; i < 3; i++) {
		cr_assert_eq(a.overrides[i].pg, i * 2);
		cr_assert_eq(wf_map_override_find(&a, 0, i * 2), (int)i);
	}
	cr_assert_eq(wf_map_override_find(&a, 0, 1), -ENOENT);
	check_roundtrip(&a);
	wf_map_free(&a);
	wf_map_free(&b);
	free(fw);
	free(bw);
}

Test(map_load, weights_and_states)
{
	char *text = gen_map(false);
	struct wf_map m;
	int t;

	load_text(text, &m);
	/* target i of gen_map: id 100 - 3i, weight (1 + i%3).(7i) */
	t = wf_map_target_by_id(&m, 100 - 3 * 5);
	cr_assert(t >= 0);
	cr_assert_eq(m.targets[t].weight, (uint32_t)llround(3.35 * 65536));
	cr_assert(!m.targets[t].up && m.targets[t].in);         /* "down,in" */
	t = wf_map_target_by_id(&m, 100 - 3 * 7);
	cr_assert(!m.targets[t].up && !m.targets[t].in);        /* "down , out" */
	t = wf_map_target_by_id(&m, 100 - 3 * 2);
	cr_assert(m.targets[t].up && !m.targets[t].in);         /* "up,out" */
	wf_map_free(&m);
	free(text);
}

Test(map_load, defaults_and_implicit_rack)
{
	static const char implicit[] =
		"epoch = 1; cluster_id = 0;\n"
		"targets = ( { id = 7; host = \"b\"; addr = \"::1\"; port = 1; device = \"d\"; },\n"
		"            { id = 3; host = \"a\"; addr = \"::1\"; port = 2; device = \"d\"; },\n"
		"            { id = 5; host = \"a\"; addr = \"localhost\"; port = 2; device = \"e\"; } );\n"
		"pools = ( { name = \"p\"; id = 0; replicas = 2; pg_num = 1; } );\n";
	static const char explicit[] =
		"epoch = 1; cluster_id = 0;\n"
		"targets = ( { id = 3; host = \"a\"; addr = \"::1\"; port = 2; device = \"d\"; weight = 1; },\n"
		"            { id = 5; host = \"a\"; addr = \"localhost\"; port = 2; device = \"e\"; },\n"
		"            { id = 7; host = \"b\"; addr = \"::1\"; port = 1; device = \"d\"; state = \"in,up\"; } );\n"
		"hierarchy = ( { rack = \"default\"; hosts = ( \"b\", \"a\" ); } );\n"
		"pools = ( { name = \"p\"; id = 0; replicas = 2; min_size = 1; pg_num = 1;\n"
		"            failure_domain = \"host\"; } );\n";
	struct wf_map a, b;

	load_text(implicit, &a);
	load_text(explicit, &b);
	cr_assert(wf_map_equal(&a, &b), "implicit rack differs from explicit \"default\"");
	cr_assert_eq(a.extent_size, 1u << 20);
	cr_assert_eq(a.targets[0].weight, WF_WEIGHT_ONE);
	cr_assert(a.targets[0].up && a.targets[0].in);
	cr_assert_eq(a.pools[0].min_size, 1);                   /* 2 - 2/2 */
	cr_assert_eq(a.pools[0].failure_domain, WF_NODE_HOST);
	wf_map_free(&a);
	wf_map_free(&b);
}

Test(map_load, min_size_default)
{
	static const char text[] =
		"epoch = 1; cluster_id = 0;\n"
		"targets = ( { id = 0; host = \"a\"; addr = \"h\"; port = 1; device = \"d0\"; },\n"
		"            { id = 1; host = \"a\"; addr = \"h\"; port = 2; device = \"d1\"; },\n"
		"            { id = 2; host = \"a\"; addr = \"h\"; port = 3; device = \"d2\"; },\n"
		"            { id = 3; host = \"a\"; addr = \"h\"; port = 4; device = \"d3\"; } );\n"
		"pools = ( { name = \"p3\"; id = 0; replicas = 3; pg_num = 2; failure_domain = \"device\"; },\n"
		"          { name = \"p4\"; id = 1; replicas = 4; pg_num = 2; failure_domain = \"device\"; },\n"
		"          { name = \"p1\"; id = 2; replicas = 1; pg_num = 2; } );\n";
	struct wf_map m;

	load_text(text, &m);
	cr_assert_eq(m.pools[0].min_size, 2);
	cr_assert_eq(m.pools[1].min_size, 2);
	cr_assert_eq(m.pools[2].min_size, 1);
	cr_assert_eq(wf_map_pool_by_id(&m, 1), 1);
	cr_assert_eq(wf_map_pool_by_id(&m, 7), -ENOENT);
	wf_map_free(&m);
}

/* pg_temp: loaded sorted, 1 .. replicas members, written back the same;
 * the table serves the pinned members and keeps the up set apart. */
Test(map_load, pg_temp_round_trips_and_pins)
{
	static const char text[] =
		"epoch = 3;\ncluster_id = 1;\nnext_volume_id = 9;\n"
		"targets = (\n"
		"  { id = 0; host = \"a\"; addr = \"127.0.0.1\"; port = 1; device = \"/d0\"; },\n"
		"  { id = 1; host = \"b\"; addr = \"127.0.0.1\"; port = 2; device = \"/d1\"; },\n"
		"  { id = 2; host = \"c\"; addr = \"127.0.0.1\"; port = 3; device = \"/d2\"; }\n);\n"
		"pools = ( { name = \"p\"; id = 1; replicas = 3; min_size = 2;"
		" failure_domain = \"device\"; pg_num = 8; } );\n"
		"volumes = ( { name = \"v\"; id = 3; size = \"1M\"; pool = \"p\"; } );\n"
		"pg_temp = ( { pool = \"p\"; pg = 6; acting = [2, 0]; },\n"
		"            { pool = \"p\"; pg = 1; acting = [1]; } );\n";
	struct wf_map m;
	struct wf_map_err err;
	struct wf_placer pl;
	struct wf_pg_table t;
	const uint32_t *set;

	cr_assert_eq(wf_map_load_buf(text, sizeof(text) - 1, "t", &m, &err), 0,
		     "%s", err.msg);
	cr_assert_eq(m.next_volume_id, 9);
	cr_assert_eq(m.ntemps, 2);
	cr_assert_eq(m.temps[0].pg, 1, "sorted by pg");
	cr_assert_eq(m.temps[1].n, 2);
	check_roundtrip(&m);
	cr_assert_eq(wf_placer_init(&pl, &m), 0);
	cr_assert_eq(wf_pg_table_build(&t, &pl), 0);
	cr_assert_eq(t.ntemps_used, 2);
	cr_assert_eq(wf_pg_acting(&t, 0, 6, &set), 2);
	cr_assert_eq(m.targets[set[0]].id, 2);
	cr_assert_eq(m.targets[set[1]].id, 0);
	cr_assert_eq(wf_pg_up(&t, 0, 6, &set), 3, "the up set is placement's");
	cr_assert_eq(wf_pg_acting(&t, 0, 2, &set), 3, "unpinned: acting = up");
	wf_pg_table_free(&t);
	wf_placer_free(&pl);
	wf_map_free(&m);
}

/* auth, revoked_keys and peer_keys (docs/security.md): loaded sorted,
 * written back, bad values refused with the field named. */
Test(map_load, auth_and_revoked_keys)
{
	static const char *const bad[][2] = {
		{ "auth = \"maybe\";\n", "auth" },
		{ "revoked_keys = [ \"a b\" ];\n", "revoked_keys[0]" },
		{ "revoked_keys = [ \"x\", \"x\" ];\n", "appears twice" },
		{ "revoked_keys = [ 3 ];\n", "revoked_keys[0]" },
		{ "peer_keys = [ \"t1\", \"-t\" ];\n", "peer_keys[1]" },
		{ "peer_keys = [ \"t1\", \"t1\" ];\n", "appears twice" },
		{ "peer_keys = \"t1\";\n", "peer_keys" },
		{ "access = ( { volume = \"nosuch\"; key = \"k\"; } );\n", "no volume" },
		{ "access = ( { volume = \"vol1\"; key = \"k\"; mode = \"rx\"; } );\n",
		  "mode" },
		{ "access = ( { volume = \"vol1\"; key = \"k\"; }, "
		  "{ volume = \"vol1\"; key = \"k\"; mode = \"ro\"; } );\n", "twice" },
	};
	char path[4096], *base, *text;
	struct wf_map_err err;
	struct wf_map m;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/conf/local.conf", src_dir());
	f = fopen(path, "r");
	cr_assert_not_null(f);
	base = calloc(1, 1 << 20);
	n = fread(base, 1, (1 << 20) - 1, f);
	fclose(f);
	base[n] = 0;
	text = malloc(n + 512);
	snprintf(text, n + 512, "%sauth = \"required\";\nrevoked_keys = "
		 "[ \"zed\", \"client.a\" ];\naccess = ( { volume = \"vol3\"; "
		 "key = \"b\"; mode = \"ro\"; }, { volume = \"vol3\"; key = \"a\"; "
		 "} );\npeer_keys = [ \"target-2\", \"target-10\", \"target-1\" ];\n",
		 base);
	load_text(text, &m);
	cr_assert_eq(m.npeers, 3);
	cr_assert_str_eq(m.peers[0], "target-1");
	cr_assert_str_eq(m.peers[1], "target-10");
	cr_assert_str_eq(m.peers[2], "target-2");
	cr_assert(wf_map_peer_key(&m, "target-10"));
	cr_assert(!wf_map_peer_key(&m, "target-3"));
	cr_assert(!wf_map_peer_key(&m, "client.a"));
	cr_assert_eq(m.naccess, 2);
	cr_assert_str_eq(m.access[0].key, "a");
	cr_assert_eq(m.access[0].ro, 0);
	cr_assert_str_eq(m.access[1].key, "b");
	cr_assert_eq(m.access[1].ro, 1);
	cr_assert_eq(m.auth, WF_MAP_AUTH_REQUIRED);
	cr_assert_eq(m.nrevoked, 2);
	cr_assert_str_eq(m.revoked[0], "client.a");
	cr_assert_str_eq(m.revoked[1], "zed");
	check_roundtrip(&m);
	wf_map_free(&m);
	load_text(base, &m);
	cr_assert_eq(m.auth, WF_MAP_AUTH_KEYRING);
	cr_assert_eq(m.nrevoked, 0);
	cr_assert_eq(m.npeers, 0);
	cr_assert(!wf_map_peer_key(&m, "target"));
	wf_map_free(&m);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, n + 512, "%s%s", base, bad[i][0]);
		cr_assert_eq(wf_map_load_buf(text, strlen(text), "t.conf", &m, &err),
			     -EINVAL, "%s", bad[i][0]);
		cr_assert_not_null(strstr(err.msg, bad[i][1]), "%s", err.msg);
	}
	free(text);
	free(base);
}

/* read_lease_ms: absent is not set (each target's own length); present it
 * is kept, written back and compared. */
Test(map_load, read_lease_ms)
{
	static const char *base =
		"epoch = 1;\ncluster_id = 7;\n"
		"targets = ( { id = 0; host = \"h0\"; addr = \"127.0.0.1\"; port = 7400; "
		"device = \"/dev/null\"; weight = 1.0; } );\n"
		"pools = ( { name = \"p\"; id = 1; replicas = 1; pg_num = 8; } );\n";
	char text[1024];
	struct wf_map m, z;

	load_text(base, &m);
	cr_assert(!m.read_lease_set);
	snprintf(text, sizeof(text), "%sread_lease_ms = 1500;\n", base);
	load_text(text, &z);
	cr_assert(z.read_lease_set);
	cr_assert_eq(z.read_lease_ms, 1500);
	cr_assert(!wf_map_equal(&m, &z));
	check_roundtrip(&z);
	wf_map_free(&z);
	snprintf(text, sizeof(text), "%sread_lease_ms = 0;\n", base);
	load_text(text, &z);
	cr_assert(z.read_lease_set);
	cr_assert_eq(z.read_lease_ms, 0);
	check_roundtrip(&z);
	wf_map_free(&z);
	wf_map_free(&m);
}
