/* SPDX-License-Identifier: Apache-2.0 */
/* weftctl check: load and validate a cluster map; helpers of every
 * command (map saving with its backup, sizes with units). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weftctl/ctl.h"
#include "placement/map.h"
#include "placement/placement.h"

int ctl_map_load_copy(const char *path, struct wf_map *m)
{
	struct wf_map_err err;
	struct wf_map loaded;

	if (wf_map_load(path, &loaded, &err)) {
		ctl_err("%s\n", err.msg);
		return -1;
	}
	if (wf_map_copy(m, &loaded)) {
		wf_map_free(&loaded);
		ctl_err("weftctl: out of memory\n");
		return -1;
	}
	wf_map_free(&loaded);
	return 0;
}

int ctl_map_check_new(const struct wf_map *m, struct wf_map_err *err)
{
	struct wf_map back;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int ret;

	if (!f)
		return -ENOMEM;
	ret = wf_map_write(m, f);
	fclose(f);
	if (!ret)
		ret = wf_map_load_buf(buf, len, "new map", &back, err);
	if (!ret)
		wf_map_free(&back);
	free(buf);
	return ret;
}

int ctl_need_map(const char *cmd, const char *path, int argc, char **argv)
{
	if (!path && optind == argc - 1 && !access(argv[optind], F_OK)) {
		fprintf(stderr, "weftctl %s: the map goes after -c: weftctl %s "
			"-c %s\n", cmd, cmd, argv[optind]);
		return -EINVAL;
	}
	if (!path) {
		fprintf(stderr, "weftctl %s: no map: -c MAP is required\n", cmd);
		return -EINVAL;
	}
	if (optind < argc) {
		fprintf(stderr, "weftctl %s: unexpected argument '%s'\n", cmd,
			argv[optind]);
		return -EINVAL;
	}
	return 0;
}

const char *ctl_bytes(char *buf, size_t len, uint64_t bytes)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)bytes;
	unsigned u = 0;

	while (v >= 1024 && u < 6) {
		v /= 1024;
		u++;
	}
	if (!u)
		snprintf(buf, len, "%" PRIu64 " B", bytes);
	else
		snprintf(buf, len, "%.*f %s", v < 10 ? 2 : v < 100 ? 1 : 0, v, unit[u]);
	return buf;
}

const char *ctl_run_dir(const char *dir)
{
	if (!dir || !*dir)
		dir = getenv("WEFT_RUN_DIR");
	return dir && *dir ? dir : "/run/weft";
}

/* Copy path to path.bak (write aside, fsync, rename): 0 or -errno. */
static int backup(const char *path, char *bak, size_t len)
{
	char tmp[PATH_MAX + 16], buf[65536];
	int in, out, ret = 0;
	ssize_t n;

	if ((size_t)snprintf(bak, len, "%s.bak", path) >= len ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s.bak.tmp", path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	in = open(path, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		ret = -errno;
		close(in);
		return ret;
	}
	while (!ret && (n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0 || write(out, buf, (size_t)n) != n)
			ret = n < 0 ? -errno : -EIO;
	}
	if (!ret && fsync(out))
		ret = -errno;
	close(in);
	if (close(out) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, bak))
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

int ctl_map_save(const struct wf_map *m, const char *path, const char *out,
		 const char *run_dir, struct wf_json *j)
{
	struct wf_map_err err;
	char bak[PATH_MAX + 8];
	bool same = !out || !strcmp(out, path);
	int ret;

	if (ctl_map_check_new(m, &err)) {
		ctl_err("weftctl: the new map is not valid: %s\n", err.msg);
		return 1;
	}
	/* The file is written anew from the parsed map: comments and layout
	 * are lost, so the operator's file is kept aside first (with --etcd
	 * the file is weftctl's own copy of etcd's map: no backup). */
	if (same && !ctl_etcd_mode && (ret = backup(path, bak, sizeof(bak)))) {
		ctl_err("weftctl: %s: cannot keep a copy as %s.bak (%s): map not "
			"changed\n", path, path, strerror(-ret));
		return 1;
	}
	if (wf_map_save(m, same ? path : out, &err)) {
		ctl_err("%s\n", err.msg);
		return 1;
	}
	if (j) {
		wf_json_str(j, "map", ctl_etcd_mode ? ctl_etcd_where : same ? path : out);
		wf_json_u64(j, "epoch", m->epoch);
		wf_json_str(j, "backup", same && !ctl_etcd_mode ? bak : NULL);
	} else if (ctl_etcd_mode) {
		/* ctl_etcd_end says where it went */
	} else if (same) {
		printf("%s: written anew at epoch %" PRIu64 " (comments and layout "
		       "are not kept); the previous file is %s\n", path, m->epoch, bak);
	} else {
		printf("%s: written at epoch %" PRIu64 "\n", out, m->epoch);
	}
	if (same && run_dir && !ctl_etcd_mode)
		ctl_tell_targets(m, path, run_dir, j);
	return 0;
}

static int check_usage(FILE *f)
{
	fprintf(f, "usage: weftctl check -c MAP [--json]\n"
		"  Load MAP, validate it, print a one-line summary.\n"
		"  Exit 0 if valid, 1 if not (the message names file, line and field),\n"
		"  2 on bad arguments.\n");
	return f == stdout ? 0 : 2;
}

int ctl_check(int argc, char **argv, struct wf_json *j)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	struct wf_map_err err;
	struct wf_map map;
	uint32_t racks = 0, hosts = 0;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'h':
			return check_usage(stdout);
		default:
			return check_usage(stderr);
		}
	}
	if (ctl_need_map("check", path, argc, argv))
		return check_usage(stderr);
	if (j)
		wf_json_str(j, "map", path);
	if (wf_map_load(path, &map, &err)) {
		ctl_err("%s\n", err.msg);
		if (j)
			wf_json_bool(j, "valid", false);
		return 1;
	}
	for (uint32_t i = 0; i < map.nnodes; i++) {
		racks += map.nodes[i].type == WF_NODE_RACK;
		hosts += map.nodes[i].type == WF_NODE_HOST;
	}
	if (j) {
		wf_json_bool(j, "valid", true);
		wf_json_u64(j, "epoch", map.epoch);
		wf_json_u64(j, "cluster_id", map.cluster_id);
		wf_json_u64(j, "racks", racks);
		wf_json_u64(j, "hosts", hosts);
		wf_json_u64(j, "targets", map.ntargets);
		wf_json_dbl(j, "weight", (double)map.nodes[0].weight / WF_WEIGHT_ONE);
		wf_json_u64(j, "pools", map.npools);
		wf_json_u64(j, "volumes", map.nvolumes);
		wf_json_u64(j, "overrides", map.noverrides);
	} else {
		printf("%s: ok: epoch %" PRIu64 ", %u racks, %u hosts, %u targets, "
		       "weight %.4g, %u pools, %u volumes, %u overrides\n", path,
		       map.epoch, racks, hosts, map.ntargets,
		       (double)map.nodes[0].weight / WF_WEIGHT_ONE, map.npools,
		       map.nvolumes, map.noverrides);
	}
	wf_map_free(&map);
	return 0;
}
