/* SPDX-License-Identifier: Apache-2.0 */
/* weftctl check: load and validate a cluster map. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "weftctl/ctl.h"
#include "placement/map.h"
#include "placement/placement.h"

int ctl_map_load_copy(const char *path, struct wf_map *m)
{
	struct wf_map_err err;
	struct wf_map loaded;

	if (wf_map_load(path, &loaded, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	if (wf_map_copy(m, &loaded)) {
		wf_map_free(&loaded);
		fprintf(stderr, "weftctl: out of memory\n");
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

static int check_usage(FILE *f)
{
	fprintf(f, "usage: weftctl check -c MAP\n"
		"  Load MAP, validate it, print a one-line summary.\n"
		"  Exit 0 if valid, 1 if not (the message names file, line and field),\n"
		"  2 on bad arguments.\n");
	return f == stdout ? 0 : 2;
}

int ctl_check(int argc, char **argv)
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
	if (wf_map_load(path, &map, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	for (uint32_t i = 0; i < map.nnodes; i++) {
		racks += map.nodes[i].type == WF_NODE_RACK;
		hosts += map.nodes[i].type == WF_NODE_HOST;
	}
	printf("%s: ok: epoch %" PRIu64 ", %u racks, %u hosts, %u targets, weight %.4g, "
	       "%u pools, %u volumes, %u overrides\n", path, map.epoch, racks, hosts,
	       map.ntargets, (double)map.nodes[0].weight / WF_WEIGHT_ONE, map.npools,
	       map.nvolumes, map.noverrides);
	wf_map_free(&map);
	return 0;
}
