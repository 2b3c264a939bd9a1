/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weftctl volume create|resize|delete for the static (file) map: write
 * the map again with the change and epoch + 1, then ask every target with
 * a control socket on this host to reload it.  Targets elsewhere pick the
 * new epoch up from the first request that carries it (the file must be
 * copied there first: that is the deployment's job).
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
#include "placement/placement.h"
#include "proto/ctl.h"
#include "proto/wire.h"

static int volume_usage(FILE *f)
{
	fprintf(f, "usage: weftctl volume create -c MAP NAME --size SIZE --pool POOL [--id ID]\n"
		"       weftctl volume resize -c MAP NAME --size SIZE\n"
		"       weftctl volume delete -c MAP NAME\n"
		"  Rewrite MAP (or -o OUT) with the change and epoch + 1, then tell the\n"
		"  targets on this host to reload it (control socket in --run-dir,\n"
		"  $WEFT_RUN_DIR or /run/weft).  SIZE: bytes with K/M/G/T suffix, a\n"
		"  multiple of the map's extent size.  Shrinking or deleting does not\n"
		"  free the extents already written (discard them first).\n"
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

/* Validate by writing the map out and loading it back. */
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

void ctl_tell_targets(const struct wf_map *m, const char *path, const char *run_dir)
{
	char *text = NULL;
	uint32_t len = 0;

	for (uint32_t i = 0; i < m->ntargets; i++) {
		const struct wf_target *t = &m->targets[i];
		struct wf_ctl_status st;
		uint16_t ws = WF_WS_OK;
		int res;

		/* On this host: it reloads the map file we wrote. */
		if (!ctl_ask_local(run_dir, t->id, WF_CTL_RELOAD, m->epoch, 0, 0, 2000,
				   &st)) {
			res = (int32_t)le32toh((uint32_t)st.result);
			printf("target %u: %s, serving epoch %" PRIu64 "\n", t->id,
			       res ? strerror(-res) : "reloaded", (uint64_t)le64toh(st.epoch));
			continue;
		}
		/* Elsewhere: the file's text over its data address. */
		if (!text && !(text = read_text(path, &len))) {
			fprintf(stderr, "weftctl: cannot read %s back to push it to "
				"targets on other hosts\n", path);
			return;
		}
		res = ctl_data_call(t, m->epoch, 3000, text, len, &st, &ws);
		if (res)
			printf("target %u: not reached (%s): it loads epoch %" PRIu64
			       " when it learns of it from a peer or restarts with "
			       "this map\n", t->id, strerror(-res), m->epoch);
		else
			printf("target %u: map pushed over the network: %s, serving "
			       "epoch %" PRIu64 "\n", t->id,
			       ws == WF_WS_OK ? "loaded" :
			       ws == WF_WS_STALE ? "kept its own (not older)" :
			       wf_wire_status_name(ws),
			       (uint64_t)le64toh(st.epoch));
	}
	free(text);
}

static int push_usage(FILE *f)
{
	fprintf(f, "usage: weftctl map push -c MAP [--run-dir D]\n"
		"  Tell every target of MAP about it: a target on this host (control\n"
		"  socket D/target-ID.ctl) reloads its own map file; any other gets\n"
		"  MAP's text over its data address, saves it as its map file and\n"
		"  loads it if its epoch is newer than the one it serves (after\n"
		"  editing a map by hand: raise its epoch first).  Exit 0 when the\n"
		"  map is valid (what each target answered is printed), 1 if not,\n"
		"  2 on bad arguments.\n");
	return f == stdout ? 0 : 2;
}

int ctl_map_push(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *run_dir = getenv("WEFT_RUN_DIR");
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
	if (!path || optind != argc)
		return push_usage(stderr);
	if (!run_dir || !*run_dir)
		run_dir = "/run/weft";
	if (wf_map_load(path, &m, &err)) {
		fprintf(stderr, "weftctl map push: %s\n", err.msg);
		return 1;
	}
	ctl_tell_targets(&m, path, run_dir);
	wf_map_free(&m);
	return 0;
}

int ctl_volume(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "output", required_argument, NULL, 'o' },
		{ "size", required_argument, NULL, 's' },
		{ "pool", required_argument, NULL, 'p' },
		{ "id", required_argument, NULL, 'i' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *out = NULL, *pool = NULL, *verb, *name;
	const char *run_dir = getenv("WEFT_RUN_DIR");
	uint64_t size = 0, id = 0;
	struct wf_map_err err;
	struct wf_map m;
	struct wf_volume *v;
	bool have_size = false, have_id = false;
	int c, vi, ret = 1;
	char *end;

	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))
		return volume_usage(stdout);
	if (argc < 2)
		return volume_usage(stderr);
	verb = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "c:o:s:p:i:r:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'o': out = optarg; break;
		case 'p': pool = optarg; break;
		case 'r': run_dir = optarg; break;
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
	/* NAME may come before or after the options. */
	if (optind == argc - 1) {
		name = argv[optind];
	} else {
		return volume_usage(stderr);
	}
	if (!path)
		return volume_usage(stderr);
	if (!run_dir || !*run_dir)
		run_dir = "/run/weft";
	if (strcmp(verb, "create") && strcmp(verb, "resize") && strcmp(verb, "delete")) {
		fprintf(stderr, "weftctl volume: unknown action '%s'\n", verb);
		return volume_usage(stderr);
	}
	if ((!strcmp(verb, "create") && (!have_size || !pool)) ||
	    (!strcmp(verb, "resize") && !have_size) ||
	    (strcmp(verb, "create") && (pool || have_id)) ||
	    (!strcmp(verb, "delete") && have_size))
		return volume_usage(stderr);

	if (ctl_map_load_copy(path, &m))
		return 1;
	vi = wf_map_volume_by_name(&m, name);

	if (!strcmp(verb, "create")) {
		int pi = wf_map_pool_by_name(&m, pool);

		if (vi >= 0) {
			fprintf(stderr, "weftctl volume: %s already exists\n", name);
			goto out;
		}
		if (pi < 0) {
			fprintf(stderr, "weftctl volume: no pool '%s'\n", pool);
			goto out;
		}
		/* Ids are never reused: a deleted volume's blocks may still
		 * be on targets that have not reclaimed them. */
		if (!have_id)
			id = m.next_volume_id;
		if (wf_map_volume_by_id(&m, id) >= 0) {
			fprintf(stderr, "weftctl volume: id %" PRIu64 " is taken\n", id);
			goto out;
		}
		if (id < m.next_volume_id) {
			fprintf(stderr, "weftctl volume: id %" PRIu64 " may have been "
				"used by a deleted volume (ids are never reused: the "
				"next free one is %" PRIu64 ")\n", id, m.next_volume_id);
			goto out;
		}
		if (id == INT64_MAX) {
			fprintf(stderr, "weftctl volume: id %" PRIu64 " leaves no id "
				"for the next volume\n", id);
			goto out;
		}
		m.next_volume_id = id + 1;
		v = realloc(m.volumes, (m.nvolumes + 1) * sizeof(*v));
		if (!v) {
			fprintf(stderr, "weftctl volume: out of memory\n");
			goto out;
		}
		m.volumes = v;
		v = &m.volumes[m.nvolumes++];
		memset(v, 0, sizeof(*v));
		snprintf(v->name, sizeof(v->name), "%s", name);
		v->id = id;
		v->size = size;
		v->pool = (uint32_t)pi;
	} else if (vi < 0) {
		fprintf(stderr, "weftctl volume: no volume '%s'\n", name);
		goto out;
	} else if (!strcmp(verb, "resize")) {
		m.volumes[vi].size = size;
	} else {
		memmove(&m.volumes[vi], &m.volumes[vi + 1],
			(m.nvolumes - (uint32_t)vi - 1) * sizeof(*m.volumes));
		m.nvolumes--;
	}
	m.epoch++;
	if (ctl_map_check_new(&m, &err)) {
		fprintf(stderr, "weftctl volume: the new map is not valid: %s\n", err.msg);
		goto out;
	}
	if (wf_map_save(&m, out ? out : path, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		goto out;
	}
	printf("%s: volume %s %sd, epoch %" PRIu64 "\n", out ? out : path, name,
	       !strcmp(verb, "create") ? "create" : verb[0] == 'r' ? "resize" : "delete",
	       m.epoch);
	if (!out || !strcmp(out, path))
		ctl_tell_targets(&m, out ? out : path, run_dir);
	ret = 0;
out:
	wf_map_edit_free(&m);
	return ret;
}
