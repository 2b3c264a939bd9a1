/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weftctl target down|up|out|in|reweight and weftctl recover, for the
 * static (file) map: each writes the next epoch of the map file and asks
 * the targets on this host to load it.  A change that gives a PG members
 * that lack its data pins the PG (pg_temp) to the members that hold it
 * (wf_map_pin_moves); the PG's primary then brings the newcomers up to
 * date, and `weftctl recover` ends the pins once every target reports it
 * done (docs/replication.md, "Recovery").
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "placement/placement.h"
#include "proto/ctl.h"
#include "weftctl/ctl.h"

static int target_usage(FILE *f)
{
	fprintf(f, "usage: weftctl target down|up|out|in ID -c MAP [--run-dir D] [--json]\n"
		"       weftctl target reweight ID WEIGHT -c MAP [--run-dir D] [--json]\n"
		"  Write the next epoch of MAP with target ID marked down (its PGs\n"
		"  are served by their other members; no data moves), up, out (its\n"
		"  data moves to other targets), in, or with a new weight, and ask\n"
		"  the targets on this host to load it.  PGs that gain members\n"
		"  lacking their data stay on the members that hold it (pg_temp)\n"
		"  until they are brought up to date: run `weftctl recover`.  MAP is\n"
		"  written anew (comments are not kept); the old file stays as\n"
		"  MAP.bak.  Exit 0 on success, 1 if refused, 2 on bad arguments.\n");
	return f == stdout ? 0 : 2;
}

static int recover_usage(FILE *f)
{
	fprintf(f, "usage: weftctl recover -c MAP [--wait] [--timeout S] [--run-dir D] [--json]\n"
		"  Report how far the targets are in bringing new members of PGs\n"
		"  up to date; when all are done for the map's epoch, write the next\n"
		"  epoch without the pins (pg_temp), so the new members serve.\n"
		"  --wait: repeat until done (at most --timeout seconds, default\n"
		"  3600), printing progress.  Exit 0 when no PG is pinned any more,\n"
		"  1 if not, 2 on bad arguments.\n");
	return f == stdout ? 0 : 2;
}

int ctl_target(int argc, char **argv, struct wf_json *j)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *run_dir = NULL, *verb;
	struct wf_map prev, next;
	struct wf_target *t;
	double weight = 0;
	unsigned long id;
	char *end;
	int c, ti, pinned, ret = 1;
	bool rw;

	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))
		return target_usage(stdout);
	if (argc < 3)
		return target_usage(stderr);
	verb = argv[1];
	rw = !strcmp(verb, "reweight");
	if (!rw && strcmp(verb, "down") && strcmp(verb, "up") &&
	    strcmp(verb, "out") && strcmp(verb, "in")) {
		fprintf(stderr, "weftctl target: unknown action '%s'\n", verb);
		return target_usage(stderr);
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "c:r:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'r': run_dir = optarg; break;
		case 'h': return target_usage(stdout);
		default: return target_usage(stderr);
		}
	}
	if (!path)
		fprintf(stderr, "weftctl target: no map: -c MAP is required\n");
	if (!path || optind != argc - (rw ? 2 : 1))
		return target_usage(stderr);
	errno = 0;
	id = strtoul(argv[optind], &end, 10);
	if (errno || *end || id > UINT32_MAX || *argv[optind] == '-') {
		fprintf(stderr, "weftctl target: '%s' is not a target id\n", argv[optind]);
		return 2;
	}
	if (rw) {
		weight = strtod(argv[optind + 1], &end);
		if (*end || !(weight >= 0) || weight > 65535) {
			fprintf(stderr, "weftctl target: weight '%s' is not 0 .. 65535\n",
				argv[optind + 1]);
			return 2;
		}
	}
	run_dir = ctl_run_dir(run_dir);
	if (ctl_map_load_copy(path, &prev))
		return 1;
	if (wf_map_copy(&next, &prev)) {
		wf_map_edit_free(&prev);
		ctl_err("weftctl: out of memory\n");
		return 1;
	}
	ti = wf_map_target_by_id(&next, (uint32_t)id);
	if (ti < 0) {
		ctl_err("weftctl target: no target %lu in %s\n", id, path);
		goto out;
	}
	t = &next.targets[ti];
	if (!strcmp(verb, "down"))
		t->up = false;
	else if (!strcmp(verb, "up"))
		t->up = true;
	else if (!strcmp(verb, "out"))
		t->in = false;
	else if (!strcmp(verb, "in"))
		t->in = true;
	else
		t->weight = (uint32_t)lround(weight * 65536.0);
	wf_map_reweigh(&next);
	next.epoch++;
	pinned = wf_map_pin_moves(&prev, &next);
	if (pinned < 0) {
		ctl_err("weftctl target: %s\n", strerror(-pinned));
		goto out;
	}
	if (j) {
		wf_json_str(j, "action", verb);
		wf_json_u64(j, "target", id);
		if (rw)
			wf_json_dbl(j, "weight", weight);
		wf_json_u64(j, "pgs_pinned", (uint64_t)pinned);
	}
	ret = ctl_map_save(&next, path, NULL, run_dir, j);
	if (!ret && !j)
		printf("%s: target %lu %s, epoch %" PRIu64 "; %d PGs pinned to the "
		       "members that hold their data%s\n", path, id,
		       rw ? "reweighted" : verb, next.epoch, pinned,
		       pinned ? " (run `weftctl recover` to bring the new ones "
		       "up to date)" : "");
out:
	wf_map_edit_free(&next);
	wf_map_edit_free(&prev);
	return ret;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct progress {
	uint64_t bytes, left;
	uint64_t bytes_left;            /* to copy, when every target that
	                                 * recovers reports it (version 7) */
	bool     bytes_known;
	uint32_t pgs, degraded, behind, missing;
	uint32_t log_pgs, full_pgs;     /* of pgs: from the log, whole */
};

/* One look at every up target: 1 when all are done with m's epoch, 0 if
 * not (progress printed unless quiet), -1 when one does not answer. */
static int look(const struct wf_map *m, const char *run_dir, bool quiet,
		struct progress *pr)
{
	uint64_t bytes = 0, left = 0, bleft = 0;
	uint32_t pgs = 0, degraded = 0, behind = 0, log_pgs = 0, full_pgs = 0;
	bool known = true;
	int missing = 0;

	for (uint32_t i = 0; i < m->ntargets; i++) {
		const struct wf_target *t = &m->targets[i];
		struct wf_ctl_status st;
		const char *via;

		if (!t->up)
			continue;
		if (ctl_ask(run_dir, t, m->epoch, m->cluster_id, 2000, &st, &via) ||
		    le32toh(st.target_id) != t->id) {
			ctl_err("weftctl recover: target %u does not answer\n", t->id);
			missing++;
			continue;
		}
		if (le64toh(st.epoch) < m->epoch ||
		    le64toh(st.recovered_epoch) < m->epoch)
			behind++;
		pgs += le32toh(st.pgs_recovering);
		degraded += le32toh(st.pgs_degraded);
		bytes += le64toh(st.recovery_bytes);
		left += le64toh(st.recovery_left);
		if (!ctl_add_bytes_left(&st, &bleft))
			known = false;
		log_pgs += le32toh(st.recovery_log_pgs);
		full_pgs += le32toh(st.recovery_full_pgs);
	}
	*pr = (struct progress){ .bytes = bytes, .left = left,
				 .bytes_left = bleft, .bytes_known = known,
				 .pgs = pgs,
				 .degraded = degraded, .behind = behind,
				 .missing = (uint32_t)missing,
				 .log_pgs = log_pgs, .full_pgs = full_pgs };
	if (missing)
		return -1;
	if (!quiet && known)
		printf("epoch %" PRIu64 ": %u PGs pinned, %u recovering (%u from "
		       "the log of recent writes, %u whole), %u degraded; "
		       "%.1f MiB copied, %.1f MiB left to copy; %u targets not "
		       "done\n", m->epoch, m->ntemps, pgs, log_pgs, full_pgs,
		       degraded, bytes / 1048576.0, bleft / 1048576.0, behind);
	else if (!quiet)
		printf("epoch %" PRIu64 ": %u PGs pinned, %u recovering (%u from "
		       "the log of recent writes, %u whole), %u degraded; "
		       "%.1f MiB copied; %" PRIu64 " extents left to look at; %u "
		       "targets not done\n", m->epoch, m->ntemps, pgs, log_pgs,
		       full_pgs, degraded, bytes / 1048576.0, left, behind);
	return behind ? 0 : 1;
}

/* Seconds until `left` is done at the rate seen since the first look of
 * this pass (`done` of the same unit since then, over elapsed_ms); -1
 * without progress to go by.  The unit: bytes copied and bytes left to
 * copy (targets of version 7), else extents looked at and left. */
static double ctl_recover_eta_s(uint64_t done, uint64_t left, int64_t elapsed_ms)
{
	if (!done || elapsed_ms <= 0)
		return -1;
	return (double)left * ((double)elapsed_ms / 1000.0) / (double)done;
}

int ctl_recover(int argc, char **argv, struct wf_json *j)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "wait", no_argument, NULL, 'w' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *run_dir = NULL;
	struct progress pr = { 0 };
	int64_t first_ms = 0;           /* this pass's first look */
	uint64_t first_left = 0, first_bytes = 0;
	bool first_known = false;
	double eta_s = -1;
	bool wait = false;
	long timeout_s = 3600;
	int64_t end;
	char *e;
	int c, ret = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+c:r:wt:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'r': run_dir = optarg; break;
		case 'w': wait = true; break;
		case 't':
			timeout_s = strtol(optarg, &e, 10);
			if (*e || timeout_s <= 0 || timeout_s > 86400 * 7) {
				fprintf(stderr, "weftctl recover: --timeout: '%s' is "
					"not 1 .. 604800 s\n", optarg);
				return 2;
			}
			break;
		case 'h': return recover_usage(stdout);
		default: return recover_usage(stderr);
		}
	}
	if (ctl_need_map("recover", path, argc, argv))
		return recover_usage(stderr);
	run_dir = ctl_run_dir(run_dir);
	end = now_ms() + timeout_s * 1000;
	for (;;) {
		struct wf_map m;
		uint32_t pinned;
		int st;

		if (ctl_map_load_copy(path, &m))
			return 1;
		pinned = m.ntemps;
		if (!m.ntemps) {
			if (j) {
				wf_json_u64(j, "pgs_pinned", 0);
				wf_json_bool(j, "done", true);
				wf_json_str(j, "map", path);
				wf_json_u64(j, "epoch", m.epoch);
			} else {
				printf("%s: epoch %" PRIu64 ": no PG is pinned: nothing "
				       "to recover\n", path, m.epoch);
			}
			wf_map_edit_free(&m);
			return 0;
		}
		st = look(&m, run_dir, j != NULL, &pr);
		if (st == 0) {
			int64_t t = now_ms();

			/* A new pass (more extents left than at the first
			 * look, fewer bytes copied: a pass starts at 0), or
			 * a change of unit, starts the estimate over. */
			if (!first_ms || pr.left > first_left ||
			    pr.bytes < first_bytes || pr.bytes_known != first_known) {
				first_ms = t;
				first_left = pr.left;
				first_bytes = pr.bytes;
				first_known = pr.bytes_known;
				eta_s = -1;
			} else if (pr.bytes_known) {
				eta_s = ctl_recover_eta_s(pr.bytes - first_bytes,
							 pr.bytes_left, t - first_ms);
			} else {
				eta_s = ctl_recover_eta_s(first_left - pr.left,
							 pr.left, t - first_ms);
			}
			if (eta_s >= 0 && !j)
				printf("  at the rate so far: about %.0f s left\n",
				       eta_s);
		}
		if (st == 1) {
			/* Every primary is done: the new members serve. */
			free(m.temps);
			m.temps = malloc(1);
			m.ntemps = 0;
			m.epoch++;
			if (j) {
				wf_json_u64(j, "pgs_pinned", pinned);
				wf_json_bool(j, "done", true);
				wf_json_u64(j, "recovery_bytes", pr.bytes);
			}
			ret = m.temps ? ctl_map_save(&m, path, NULL, run_dir, j) : 1;
			if (!ret && !j)
				printf("%s: epoch %" PRIu64 ": every PG's new members "
				       "are up to date; pins removed\n", path, m.epoch);
			wf_map_edit_free(&m);
			return ret;
		}
		if (!wait || now_ms() >= end) {
			if (j) {
				wf_json_str(j, "map", path);
				wf_json_u64(j, "epoch", m.epoch);
				wf_json_u64(j, "pgs_pinned", pinned);
				wf_json_bool(j, "done", false);
				wf_json_u64(j, "pgs_recovering", pr.pgs);
				wf_json_u64(j, "pgs_degraded", pr.degraded);
				wf_json_u64(j, "recovery_log_pgs", pr.log_pgs);
				wf_json_u64(j, "recovery_full_pgs", pr.full_pgs);
				wf_json_u64(j, "recovery_bytes", pr.bytes);
				wf_json_u64(j, "extents_left", pr.left);
				if (pr.bytes_known)
					wf_json_u64(j, "bytes_left", pr.bytes_left);
				wf_json_str(j, "estimate_from", pr.bytes_known ?
					    "bytes" : "extents");
				if (eta_s >= 0)
					wf_json_dbl(j, "seconds_left_estimate", eta_s);
				wf_json_u64(j, "targets_not_done", pr.behind);
				wf_json_u64(j, "targets_missing", pr.missing);
			}
			if (st == 0)
				ctl_err("weftctl recover: %u target(s) not done yet%s\n",
					pr.behind, wait ? " when --timeout ran out" : "");
			wf_map_edit_free(&m);
			return 1;
		}
		wf_map_edit_free(&m);
		nanosleep(&(struct timespec){ .tv_nsec = 250000000 }, NULL);
	}
}
