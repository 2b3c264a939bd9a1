/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weftctl scrub: compare the replicas of a volume (or of every volume) by
 * CRC32C and, with --repair, rewrite the members that differ from their
 * PG's primary (docs/replication.md, "Scrub").  Each target scrubs the PGs
 * it leads; weftctl starts the pass on every up target of this host
 * (control socket, WF_CTL_SCRUB) and waits for them to finish.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "placement/map.h"
#include "proto/ctl.h"
#include "weftctl/ctl.h"

static int scrub_usage(FILE *f)
{
	fprintf(f, "usage: weftctl scrub -c MAP [VOLUME] [--repair] [--no-wait] [--json]\n"
		"                     [--timeout S] [--run-dir D]\n"
		"  Compare every replica of VOLUME (default: every volume) with its\n"
		"  PG's primary, chunk by chunk, by CRC32C; --repair rewrites the\n"
		"  members that differ from the primary's copy.  Every up target of\n"
		"  MAP must be on this host (control socket D/target-ID.ctl).\n"
		"  Waits for the pass (default timeout 3600 s) unless --no-wait.\n"
		"  Exit 0: every chunk compared and every member equal (or\n"
		"  repaired); 1: differences left, chunks not compared, a target\n"
		"  not reached; 2: bad arguments.\n");
	return f == stdout ? 0 : 2;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ctl_scrub(int argc, char **argv, struct wf_json *j)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "repair", no_argument, NULL, 'R' },
		{ "no-wait", no_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *run_dir = getenv("WEFT_RUN_DIR"), *name = NULL;
	bool repair = false, wait = true;
	long timeout_s = 3600;
	uint64_t vol = 0, bytes = 0, mis = 0, rep = 0, errs = 0;
	struct wf_map_err err;
	struct wf_map m;
	uint32_t *gen = NULL;
	unsigned started = 0, missing = 0;
	int64_t end;
	char *e;
	int c, ret = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:r:Rnt:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'r': run_dir = optarg; break;
		case 'R': repair = true; break;
		case 'n': wait = false; break;
		case 't':
			timeout_s = strtol(optarg, &e, 10);
			if (*e || timeout_s <= 0 || timeout_s > 86400 * 7) {
				fprintf(stderr, "weftctl scrub: --timeout: '%s' is not "
					"1 .. 604800 s\n", optarg);
				return 2;
			}
			break;
		case 'h': return scrub_usage(stdout);
		default: return scrub_usage(stderr);
		}
	}
	if (optind < argc)
		name = argv[optind++];
	if (!path || optind != argc)
		return scrub_usage(stderr);
	if (!run_dir || !*run_dir)
		run_dir = "/run/weft";
	if (wf_map_load(path, &m, &err)) {
		ctl_err("weftctl scrub: %s\n", err.msg);
		return 1;
	}
	if (name) {
		for (uint32_t i = 0; i < m.nvolumes; i++)
			if (!strcmp(m.volumes[i].name, name))
				vol = m.volumes[i].id;
		if (!vol) {
			ctl_err("weftctl scrub: no volume '%s' in %s\n", name, path);
			goto out;
		}
	}
	gen = calloc(m.ntargets ? m.ntargets : 1, sizeof(*gen));
	if (!gen) {
		fprintf(stderr, "weftctl scrub: out of memory\n");
		goto out;
	}
	for (uint32_t i = 0; i < m.ntargets; i++) {
		const struct wf_target *t = &m.targets[i];
		struct wf_ctl_status st;
		int r;

		if (!t->up)
			continue;
		r = ctl_ask_local(run_dir, t->id, WF_CTL_SCRUB, m.epoch, vol,
				  repair ? WF_CTL_SCRUB_REPAIR : 0, 2000, &st);
		if (r) {
			fprintf(stderr, "weftctl scrub: target %u: no control socket "
				"in %s (%s): start its scrub on its own host\n",
				t->id, run_dir, strerror(-r));
			missing++;
			continue;
		}
		r = (int32_t)le32toh((uint32_t)st.result);
		if (r || le32toh(st.target_id) != t->id) {
			fprintf(stderr, "weftctl scrub: target %u: %s\n", t->id,
				r == -ENOENT ? "does not know the volume (an older map?)" :
				r ? strerror(-r) : "another target answers there");
			missing++;
			continue;
		}
		gen[i] = le32toh(st.scrub_gen);
		started++;
	}
	if (j) {
		wf_json_str(j, "volume", name);
		wf_json_bool(j, "repair", repair);
		wf_json_u64(j, "targets_started", started);
	} else {
		printf("scrub of %s%s started on %u targets%s\n", name ? "volume " :
		       "every volume", name ? name : "", started,
		       repair ? ", repairing" : "");
	}
	if (!wait) {
		if (j)
			wf_json_u64(j, "targets_missing", missing);
		if (missing)
			ctl_err("weftctl scrub: %u targets not reached\n", missing);
		ret = missing ? 1 : 0;
		goto out;
	}
	end = now_ms() + timeout_s * 1000;
	for (;;) {
		unsigned busy = 0, lost = 0;

		bytes = mis = rep = errs = 0;
		for (uint32_t i = 0; i < m.ntargets; i++) {
			struct wf_ctl_status st;

			if (!gen[i])
				continue;
			if (ctl_ask_local(run_dir, m.targets[i].id, WF_CTL_STATUS, 0, 0,
					  0, 2000, &st) ||
			    le32toh(st.scrub_gen) != gen[i]) {
				/* Gone, restarted or asked again by someone
				 * else: this pass's figures are lost. */
				lost++;
				continue;
			}
			if (le32toh(st.scrub_done) != gen[i])
				busy++;
			bytes += le64toh(st.scrub_bytes);
			mis += le64toh(st.scrub_mismatches);
			rep += le64toh(st.scrub_repaired);
			errs += le64toh(st.scrub_errors);
		}
		if (lost) {
			fprintf(stderr, "weftctl scrub: %u targets stopped answering "
				"for this pass (restarted, or another scrub was "
				"asked)\n", lost);
			missing += lost;
			break;
		}
		if (!busy)
			break;
		if (now_ms() >= end) {
			fprintf(stderr, "weftctl scrub: %u targets not done after "
				"%ld s\n", busy, timeout_s);
			missing += busy;
			break;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 200000000 }, NULL);
	}
	if (j) {
		wf_json_u64(j, "bytes_compared", bytes);
		wf_json_u64(j, "chunks_differed", mis);
		wf_json_u64(j, "chunks_repaired", rep);
		wf_json_u64(j, "chunks_not_compared", errs);
		wf_json_u64(j, "targets_missing", missing);
	} else {
		printf("%.1f MiB compared (each member counted); %" PRIu64 " chunks "
		       "differed, %" PRIu64 " repaired; %" PRIu64 " could not be "
		       "compared%s\n", bytes / 1048576.0, mis, rep, errs,
		       missing ? "; not every target finished" : "");
	}
	ret = missing || errs || mis > rep ? 1 : 0;
	if (ret)
		ctl_err("weftctl scrub: %s\n", missing ? "not every target finished" :
			errs ? "chunks could not be compared" :
			"members differ from their primary");
out:
	free(gen);
	wf_map_free(&m);
	return ret;
}
