/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weftctl volume list|info: the volumes of a map, and how much of one the
 * targets on this host hold (VOLUME_USAGE on their control sockets).
 * weftctl volume create|resize|delete for the static (file) map: write
 * the map again with the change and epoch + 1 (the old file kept as
 * MAP.bak), then ask every target with a control socket on this host to
 * reload it.  Targets elsewhere pick the new epoch up from the first
 * request that carries it (the file must be copied there first: that is
 * the deployment's job).
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "weftctl/ctl.h"
#include "placement/map.h"
#include "placement/placement.h"
#include "proto/ctl.h"
#include "proto/wire.h"

static int volume_usage(FILE *f)
{
	fprintf(f, "usage: weftctl volume allow VOLUME KEY [--ro] -c MAP | deny VOLUME KEY -c MAP\n"
		"       weftctl volume list -c MAP\n"
		"       weftctl volume info -c MAP NAME [--run-dir D] [--timeout MS]\n"
		"       weftctl volume create -c MAP NAME --size SIZE --pool POOL [--id ID]\n"
		"       weftctl volume resize -c MAP NAME --size SIZE [--yes]\n"
		"       weftctl volume delete -c MAP NAME --yes\n"
		"  (every form also takes --json)\n"
		"  list: name, id, pool, replicas and size of every volume.  info: the\n"
		"  same for NAME, and the extents and bytes each target on this host\n"
		"  holds of it (asked on its control socket).\n"
		"  create, resize, delete: rewrite MAP (or -o OUT) with the change and\n"
		"  epoch + 1, keeping the old file as MAP.bak (the map is written anew:\n"
		"  comments are not kept), then tell the targets on this host to\n"
		"  reload it (control socket in --run-dir, $WEFT_RUN_DIR or\n"
		"  /run/weft).  SIZE: bytes with K/M/G/T suffix, a multiple of the\n"
		"  map's extent size.  Volumes are thin: create and resize warn when\n"
		"  the pool's devices cannot hold every volume at once.  Shrinking and\n"
		"  deleting lose data: they need --yes.  Deleted volumes' extents are\n"
		"  reclaimed by the targets; shrinking does not free the extents\n"
		"  already written past the new end (discard them first).\n"
		"  Exit 0 on success, 1 if the change is refused, 2 on bad arguments.\n");
	return f == stdout ? 0 : 2;
}

static int parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;
	int sh = 0;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	switch (*end) {
	case 'K': case 'k': sh = 10; end++; break;
	case 'M': case 'm': sh = 20; end++; break;
	case 'G': case 'g': sh = 30; end++; break;
	case 'T': case 't': sh = 40; end++; break;
	}
	if (*end || !v || v > (UINT64_MAX >> sh))
		return -EINVAL;
	*out = (uint64_t)v << sh;
	return 0;
}

/* The whole file at path (malloc'd, *len), or NULL. */
static char *read_text(const char *path, uint32_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (f && !fseek(f, 0, SEEK_END) && (n = ftell(f)) > 0 &&
	    (uint64_t)n <= WF_MAP_PUT_MAX && !fseek(f, 0, SEEK_SET) &&
	    (buf = malloc((size_t)n)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
		*len = (uint32_t)n;
	} else {
		free(buf);
		buf = NULL;
	}
	if (f)
		fclose(f);
	return buf;
}

void ctl_tell_targets(const struct wf_map *m, const char *path, const char *run_dir,
		      struct wf_json *j)
{
	char *text = NULL, what[160];
	uint32_t len = 0;

	if (ctl_etcd_mode)
		return;         /* the targets watch etcd's map */
	if (j)
		wf_json_arr_begin(j, "reloaded");
	for (uint32_t i = 0; i < m->ntargets; i++) {
		const struct wf_target *t = &m->targets[i];
		struct wf_ctl_status st;
		uint16_t ws = WF_WS_OK;
		const char *how = "control socket";
		int32_t res;
		int ret;

		/* On this host: it reloads the map file we wrote. */
		ret = ctl_ask_local(run_dir, t->id, WF_CTL_RELOAD, m->epoch, 0, 0, 2000,
				    &st);
		if (ret) {
			/* Elsewhere: the file's text over its data address. */
			how = "network";
			if (!text && !(text = read_text(path, &len))) {
				ctl_err("weftctl: cannot read %s back to push it to "
					"targets on other hosts\n", path);
				break;
			}
			ret = ctl_data_call(t, m->epoch, m->cluster_id, 3000, text, len, &st, &ws);
		}
		res = ret ? 0 : (int32_t)le32toh((uint32_t)st.result);
		if (ret)
			snprintf(what, sizeof(what), "not reached (%s): it loads epoch %"
				 PRIu64 " when it restarts with this map or `weftctl map "
				 "push` reaches it", strerror(-ret), m->epoch);
		else if (!strcmp(how, "network"))
			snprintf(what, sizeof(what), "map pushed over the network: %s",
				 ws == WF_WS_OK ? "loaded" : ws == WF_WS_STALE ?
				 "kept its own (not older)" : wf_wire_status_name(ws));
		else
			snprintf(what, sizeof(what), "%s", res ? strerror(-res) : "reloaded");
		if (j) {
			wf_json_obj_begin(j, NULL);
			wf_json_u64(j, "id", t->id);
			wf_json_str(j, "via", how);
			wf_json_bool(j, "answered", !ret);
			if (ret) {
				wf_json_str(j, "error", what);
			} else {
				wf_json_i64(j, "result", res);
				wf_json_u64(j, "epoch", le64toh(st.epoch));
				if (!strcmp(how, "network"))
					wf_json_str(j, "pushed", ws == WF_WS_OK ? "loaded" :
						    ws == WF_WS_STALE ? "stale" :
						    wf_wire_status_name(ws));
			}
			wf_json_obj_end(j);
		} else if (ret) {
			printf("target %u: %s\n", t->id, what);
		} else {
			printf("target %u: %s, serving epoch %" PRIu64 "\n", t->id, what,
			       (uint64_t)le64toh(st.epoch));
		}
	}
	if (j)
		wf_json_arr_end(j);
	free(text);
}

static int push_usage(FILE *f)
{
	fprintf(f, "usage: weftctl map push -c MAP [--run-dir D] [--json]\n"
		"  Tell every target of MAP about it: a target on this host (control\n"
		"  socket D/target-ID.ctl) reloads its own map file; any other gets\n"
		"  MAP's text over its data address, saves it as its map file and\n"
		"  loads it if its epoch is newer than the one it serves (after\n"
		"  editing a map by hand: raise its epoch first).  Exit 0 when the\n"
		"  map is valid (what each target answered is printed), 1 if not,\n"
		"  2 on bad arguments.\n");
	return f == stdout ? 0 : 2;
}

int ctl_map_push(int argc, char **argv, struct wf_json *j)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *run_dir = NULL;
	struct wf_map_err err;
	struct wf_map m;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:r:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'r': run_dir = optarg; break;
		case 'h': return push_usage(stdout);
		default: return push_usage(stderr);
		}
	}
	if (ctl_need_map("map push", path, argc, argv))
		return push_usage(stderr);
	run_dir = ctl_run_dir(run_dir);
	if (wf_map_load(path, &m, &err)) {
		ctl_err("weftctl map push: %s\n", err.msg);
		return 1;
	}
	if (j) {
		wf_json_str(j, "map", path);
		wf_json_u64(j, "epoch", m.epoch);
	}
	ctl_tell_targets(&m, path, run_dir, j);
	wf_map_free(&m);
	return 0;
}

static const char *const fd_name[] = { "device", "host", "rack", "root" };

static void json_volume(struct wf_json *j, const struct wf_map *m,
			const struct wf_volume *v)
{
	const struct wf_pool *p = &m->pools[v->pool];

	wf_json_str(j, "name", v->name);
	wf_json_u64(j, "id", v->id);
	wf_json_str(j, "pool", p->name);
	wf_json_u64(j, "replicas", p->replicas);
	wf_json_u64(j, "size", v->size);
	wf_json_u64(j, "extents", (v->size + m->extent_size - 1) / m->extent_size);
}

static int vol_list(const struct wf_map *m, struct wf_json *j)
{
	if (j) {
		wf_json_u64(j, "epoch", m->epoch);
		wf_json_u64(j, "extent_size", m->extent_size);
		wf_json_arr_begin(j, "volumes");
		for (uint32_t i = 0; i < m->nvolumes; i++) {
			wf_json_obj_begin(j, NULL);
			json_volume(j, m, &m->volumes[i]);
			wf_json_obj_end(j);
		}
		wf_json_arr_end(j);
		return 0;
	}
	printf("%-24s %-8s %-16s %8s %12s\n", "VOLUME", "ID", "POOL", "REPLICAS", "SIZE");
	for (uint32_t i = 0; i < m->nvolumes; i++) {
		const struct wf_volume *v = &m->volumes[i];
		char sb[32];

		printf("%-24s %-8" PRIu64 " %-16s %8u %12s\n", v->name, v->id,
		       m->pools[v->pool].name, m->pools[v->pool].replicas,
		       ctl_bytes(sb, sizeof(sb), v->size));
	}
	printf("%u volumes, map epoch %" PRIu64 "\n", m->nvolumes, m->epoch);
	return 0;
}

static int vol_info(const struct wf_map *m, int vi, const char *run_dir, int ms,
		    struct wf_json *j)
{
	const struct wf_volume *v = &m->volumes[vi];
	const struct wf_pool *p = &m->pools[v->pool];
	uint64_t ext = (v->size + m->extent_size - 1) / m->extent_size, held = 0;
	unsigned asked = 0;
	char a[32], b[32];

	if (j) {
		wf_json_u64(j, "epoch", m->epoch);
		wf_json_u64(j, "extent_size", m->extent_size);
		wf_json_obj_begin(j, "volume");
		json_volume(j, m, v);
		wf_json_str(j, "failure_domain", fd_name[p->failure_domain & 3]);
		wf_json_u64(j, "min_size", p->min_size);
		wf_json_arr_begin(j, "targets");
	} else {
		printf("volume %s (id %" PRIu64 "): %s in pool %s (%u replicas, min_size "
		       "%u, failure domain %s), %" PRIu64 " extents of %s\n", v->name,
		       v->id, ctl_bytes(a, sizeof(a), v->size), p->name, p->replicas,
		       p->min_size, fd_name[p->failure_domain & 3], ext,
		       ctl_bytes(b, sizeof(b), m->extent_size));
		printf("%-6s %-24s %10s %12s\n", "TARGET", "ADDRESS", "EXTENTS", "BYTES");
	}
	for (uint32_t i = 0; i < m->ntargets; i++) {
		const struct wf_target *t = &m->targets[i];
		struct wf_ctl_volume_usage u;
		char addr[WF_NAME_MAX + 8];
		int ret = ctl_call(run_dir, t->id, WF_CTL_VOLUME_USAGE, m->epoch, v->id, 0,
				   ms, &u, sizeof(u));
		uint64_t n = le64toh(u.extents), bytes;

		if (!ret && (le32toh(u.target_id) != t->id || le64toh(u.volume_id) != v->id))
			ret = -EPROTO;
		if (!ret && u.result)
			ret = (int32_t)le32toh((uint32_t)u.result);
		snprintf(addr, sizeof(addr), "%s:%u", t->addr, t->port);
		if (j) {
			wf_json_obj_begin(j, NULL);
			wf_json_u64(j, "id", t->id);
			wf_json_bool(j, "answered", !ret);
		}
		if (ret) {
			const char *why = ret == -ENOENT ? "no control socket here (not on "
				"this host, or not running)" : ret == -EPROTO ?
				"no answer it understands (an older target?)" :
				strerror(-ret);

			if (j) {
				wf_json_str(j, "error", why);
				wf_json_obj_end(j);
			} else {
				printf("%-6u %-24s %10s %12s  %s\n", t->id, addr, "-", "-", why);
			}
			continue;
		}
		asked++;
		held += n;
		bytes = n * le32toh(u.extent_size);
		if (j) {
			wf_json_u64(j, "extents", n);
			wf_json_u64(j, "bytes", bytes);
			wf_json_obj_end(j);
		} else {
			printf("%-6u %-24s %10" PRIu64 " %12s\n", t->id, addr, n,
			       ctl_bytes(a, sizeof(a), bytes));
		}
	}
	if (j) {
		wf_json_arr_end(j);
		wf_json_u64(j, "targets_answered", asked);
		wf_json_u64(j, "extents_held", held);
		wf_json_u64(j, "bytes_held", held * m->extent_size);
		wf_json_obj_end(j);
		return 0;
	}
	printf("held: %" PRIu64 " extents (%s, every replica) on the %u targets that "
	       "answered; about %" PRIu64 " of the volume's %" PRIu64 " extents "
	       "written (held / replicas)\n", held,
	       ctl_bytes(a, sizeof(a), held * m->extent_size), asked,
	       held / p->replicas, ext);
	return 0;
}

/*
 * Volumes are thin: nothing is reserved at create.  Warn when the pool's
 * volumes, full, need more than its targets' devices hold (counted on the
 * targets that answer).  The warning goes to stderr and to j.
 */
static void space_check(const struct wf_map *m, uint32_t pool, const char *run_dir,
			struct wf_json *j)
{
	const struct wf_pool *p = &m->pools[pool];
	uint64_t need = 0, have = 0;
	unsigned asked = 0, members = 0;
	char a[32], b[32], msg[400];
	const char *via;

	for (uint32_t i = 0; i < m->nvolumes; i++)
		if (m->volumes[i].pool == pool)
			need += m->volumes[i].size;
	for (uint32_t i = 0; i < m->ntargets; i++) {
		struct wf_ctl_status st;

		if (!m->targets[i].in || !m->targets[i].weight)
			continue;
		members++;
		if (ctl_ask(run_dir, &m->targets[i], m->epoch, m->cluster_id, 2000, &st, &via) ||
		    le32toh(st.target_id) != m->targets[i].id)
			continue;
		asked++;
		have += le64toh(st.extents) * le32toh(st.extent_size);
	}
	have /= p->replicas;
	if (j) {
		wf_json_obj_begin(j, "space");
		wf_json_u64(j, "pool_provisioned_bytes", need);
		wf_json_u64(j, "pool_capacity_bytes", have);
		wf_json_u64(j, "targets_answered", asked);
		wf_json_u64(j, "targets_in", members);
		wf_json_bool(j, "overcommitted", asked && need > have);
		wf_json_obj_end(j);
	}
	if (!asked) {
		snprintf(msg, sizeof(msg), "no target of pool %s answered: its space "
			 "is not known (volumes are thin: nothing is reserved)", p->name);
	} else if (need > have) {
		snprintf(msg, sizeof(msg), "pool %s's volumes add up to %s, more than "
			 "its devices hold (%s with %u replicas, on the %u of %u "
			 "targets that answered): thin provisioning, writes fail with "
			 "'no space left' once the devices fill", p->name,
			 ctl_bytes(a, sizeof(a), need), ctl_bytes(b, sizeof(b), have),
			 p->replicas, asked, members);
	} else {
		return;
	}
	fprintf(stderr, "weftctl volume: warning: %s\n", msg);
	if (j) {
		wf_json_arr_begin(j, "warnings");
		wf_json_str(j, NULL, msg);
		wf_json_arr_end(j);
	}
}

int ctl_volume(int argc, char **argv, struct wf_json *j)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "output", required_argument, NULL, 'o' },
		{ "size", required_argument, NULL, 's' },
		{ "pool", required_argument, NULL, 'p' },
		{ "id", required_argument, NULL, 'i' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 't' },
		{ "yes", no_argument, NULL, 'y' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *out = NULL, *pool = NULL, *verb, *name = NULL;
	const char *run_dir = NULL;
	uint64_t size = 0, id = 0;
	struct wf_map m;
	struct wf_volume *v;
	bool have_size = false, have_id = false, yes = false, edit;
	int c, vi, ms = 2000, ret = 1;
	char *end, a[32], b[32];

	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))
		return volume_usage(stdout);
	if (argc < 2)
		return volume_usage(stderr);
	verb = argv[1];
	if (!strcmp(verb, "allow") || !strcmp(verb, "deny"))
		return ctl_volume_access(argc, argv, j);
	optind = 2;
	while ((c = getopt_long(argc, argv, "c:o:s:p:i:r:t:yh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'o': out = optarg; break;
		case 'p': pool = optarg; break;
		case 'r': run_dir = optarg; break;
		case 'y': yes = true; break;
		case 't':
			if (ctl_parse_ms("volume", optarg, &ms))
				return 2;
			break;
		case 's':
			if (parse_size(optarg, &size)) {
				fprintf(stderr, "weftctl volume: --size: '%s' is not a size\n",
					optarg);
				return 2;
			}
			have_size = true;
			break;
		case 'i':
			errno = 0;
			id = strtoull(optarg, &end, 0);
			if (errno || *end || !id || *optarg == '-') {
				fprintf(stderr, "weftctl volume: --id: '%s' is not a nonzero "
					"volume id\n", optarg);
				return 2;
			}
			have_id = true;
			break;
		case 'h':
			return volume_usage(stdout);
		default:
			return volume_usage(stderr);
		}
	}
	if (strcmp(verb, "create") && strcmp(verb, "resize") && strcmp(verb, "delete") &&
	    strcmp(verb, "list") && strcmp(verb, "info")) {
		fprintf(stderr, "weftctl volume: unknown action '%s'\n", verb);
		return volume_usage(stderr);
	}
	edit = strcmp(verb, "list") && strcmp(verb, "info");
	/* NAME may come before or after the options. */
	if (optind == argc - 1 && strcmp(verb, "list"))
		name = argv[optind];
	else if (optind != argc)
		return volume_usage(stderr);
	if (!path) {
		fprintf(stderr, "weftctl volume: no map: -c MAP is required\n");
		return volume_usage(stderr);
	}
	if ((strcmp(verb, "list") && !name) ||
	    (!strcmp(verb, "create") && (!have_size || !pool)) ||
	    (!strcmp(verb, "resize") && !have_size) ||
	    (strcmp(verb, "create") && (pool || have_id)) ||
	    (strcmp(verb, "create") && strcmp(verb, "resize") && have_size) ||
	    (!edit && (out || yes)))
		return volume_usage(stderr);
	run_dir = ctl_run_dir(run_dir);

	if (ctl_map_load_copy(path, &m))
		return 1;
	vi = name ? wf_map_volume_by_name(&m, name) : -1;
	if (j && name)
		wf_json_str(j, "action", verb);
	if (!strcmp(verb, "list")) {
		if (j) {
			wf_json_str(j, "action", verb);
			wf_json_str(j, "map", path);
		}
		ret = vol_list(&m, j);
		goto out;
	}
	if (vi < 0 && strcmp(verb, "create")) {
		ctl_err("weftctl volume: no volume '%s' in %s\n", name, path);
		goto out;
	}
	if (!strcmp(verb, "info")) {
		if (j)
			wf_json_str(j, "map", path);
		ret = vol_info(&m, vi, run_dir, ms, j);
		goto out;
	}
	if (j)
		wf_json_str(j, "volume", name);

	if (!strcmp(verb, "create")) {
		int pi = wf_map_pool_by_name(&m, pool);

		if (vi >= 0) {
			ctl_err("weftctl volume: %s already exists\n", name);
			goto out;
		}
		if (pi < 0) {
			ctl_err("weftctl volume: no pool '%s'\n", pool);
			goto out;
		}
		/* Ids are never reused: a deleted volume's blocks may still
		 * be on targets that have not reclaimed them. */
		if (!have_id)
			id = m.next_volume_id;
		if (wf_map_volume_by_id(&m, id) >= 0) {
			ctl_err("weftctl volume: id %" PRIu64 " is taken\n", id);
			goto out;
		}
		if (id < m.next_volume_id) {
			ctl_err("weftctl volume: id %" PRIu64 " may have been used by a "
				"deleted volume (ids are never reused: the next free one "
				"is %" PRIu64 ")\n", id, m.next_volume_id);
			goto out;
		}
		if (id == INT64_MAX) {
			ctl_err("weftctl volume: id %" PRIu64 " leaves no id for the "
				"next volume\n", id);
			goto out;
		}
		m.next_volume_id = id + 1;
		v = realloc(m.volumes, (m.nvolumes + 1) * sizeof(*v));
		if (!v) {
			ctl_err("weftctl volume: out of memory\n");
			goto out;
		}
		m.volumes = v;
		v = &m.volumes[m.nvolumes++];
		memset(v, 0, sizeof(*v));
		snprintf(v->name, sizeof(v->name), "%s", name);
		v->id = id;
		v->size = size;
		v->pool = (uint32_t)pi;
		vi = (int)m.nvolumes - 1;
	} else if (!strcmp(verb, "resize")) {
		if (size < m.volumes[vi].size && !yes) {
			ctl_err("weftctl volume: shrinking %s from %s to %s loses the "
				"data past the new end: add --yes\n", name,
				ctl_bytes(a, sizeof(a), m.volumes[vi].size),
				ctl_bytes(b, sizeof(b), size));
			goto out;
		}
		m.volumes[vi].size = size;
	} else {
		if (!yes) {
			ctl_err("weftctl volume: deleting %s (%s) loses its data: add "
				"--yes\n", name, ctl_bytes(a, sizeof(a), m.volumes[vi].size));
			goto out;
		}
		memmove(&m.volumes[vi], &m.volumes[vi + 1],
			(m.nvolumes - (uint32_t)vi - 1) * sizeof(*m.volumes));
		m.nvolumes--;
	}
	m.epoch++;
	if (j && strcmp(verb, "delete")) {
		wf_json_u64(j, "id", m.volumes[vi].id);
		wf_json_u64(j, "size", m.volumes[vi].size);
	}
	ret = ctl_map_save(&m, path, out, run_dir, j);
	if (!ret && !j)
		printf("volume %s %s, epoch %" PRIu64 "\n", name,
		       !strcmp(verb, "create") ? "created" : verb[0] == 'r' ?
		       "resized" : "deleted", m.epoch);
	if (!ret && strcmp(verb, "delete"))
		space_check(&m, m.volumes[vi].pool, run_dir, j);
out:
	wf_map_edit_free(&m);
	return ret;
}
