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
void ctl_tell_targets(const struct wf_map *m, const char *run_dir)
{
	for (uint32_t i = 0; i < m->ntargets; i++) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		struct wf_ctl_req q = {
			.magic = htole32(WF_CTL_MAGIC), .version = htole16(WF_CTL_VERSION),
			.op = htole16(WF_CTL_RELOAD), .epoch = htole64(m->epoch),
		};
		struct wf_ctl_status st;
		struct timeval tv = { .tv_sec = 2 };
		int fd;

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/target-%u.ctl", run_dir,
			 m->targets[i].id);
		fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
		    send(fd, &q, sizeof(q), MSG_NOSIGNAL) == (ssize_t)sizeof(q) &&
		    recv(fd, &st, sizeof(st), 0) == (ssize_t)sizeof(st)) {
			int32_t res = (int32_t)le32toh((uint32_t)st.result);

			printf("target %u: %s, serving epoch %" PRIu64 "\n",
			       m->targets[i].id, res ? strerror(-res) : "reloaded",
			       (uint64_t)le64toh(st.epoch));
		}
		close(fd);
	}
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
	if (!path) {
		fprintf(stderr, "weftctl volume: no map: -c MAP is required\n");
		return volume_usage(stderr);
	}
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
		ctl_tell_targets(&m, run_dir);
	ret = 0;
out:
	wf_map_edit_free(&m);
	return ret;
}
