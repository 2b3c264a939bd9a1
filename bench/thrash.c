/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-bench thrash: a verified mixed workload against real targets while
 * their members come and go (docs/reliability.md).
 *
 * Two threads.  The I/O thread keeps --qd requests in flight on a
 * libweft handle: single-block writes of versioned blocks (the block says
 * which write it came from) and reads that check what comes back against
 * what was acknowledged.  The chaos thread, once per cycle, takes one
 * target away (SIGKILL, SIGSTOP, or marked out), marks it down in the map
 * with `weftctl target down` (the operator's step; with etcd a keeper's),
 * lets I/O run, brings it back (restart, SIGCONT or marked in) with
 * `weftctl target up|in`, and runs `weftctl recover --wait` while I/O goes
 * on, timing the recovery.  At most --max-away targets are away at once
 * (default 1: the rep3 pool's min_size 2 keeps taking writes).
 *
 * At the end every block is read back, and (unless --no-replicas) read
 * again through each target alone, the others marked down: each must hold
 * every acknowledged write.  A block that reads back older than its last
 * acknowledged version is lost; one that is no version at all, or a
 * version never written there, is a mismatch.  A write that failed (its
 * fate unknown) may have landed or not: both are accepted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/pattern.h"
#include "bench/proc.h"
#include "bench/stats.h"
#include "placement/map.h"
#include "weft.h"
#include "weft_env.h"

#define BS 4096u
#define MAX_TARGETS 64

struct topts {
	const char *map, *volume, *cluster_dir, *run_dir, *bin;
	const char *etcd;               /* --etcd URL: a keeper decides */
	unsigned cycles, qd, max_away, cycle_ms, blocks;
	uint64_t seed;
	bool json, replicas;
};

struct tstate {
	const struct topts *o;
	/* Per block: last acknowledged version, a failed write's version
	 * (may have landed), in flight. */
	uint64_t *acked, *maybe;
	uint8_t  *busy;
	uint64_t ver, rng;
	uint64_t acks, fails, reads, lost, mismatches;
	uint64_t stall_ms_max, last_done_ms;
	/* chaos */
	volatile int stop;              /* I/O thread: finish */
	volatile int chaos_done;
	unsigned cycles_done;
	double rec_s[4096];
	unsigned nrec;
	double down_s[4096];            /* --etcd: death to marked down */
	unsigned ndown;
	char err[256];
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t rnd(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return wf_mix64(*s);
}

/* Block b's offset: 32 blocks per MiB, so the blocks spread over many
 * extents (and PGs) of the volume: 4096 blocks over 128 MiB. */
static uint64_t blk_off(uint32_t b)
{
	return (uint64_t)b / 32 * (1u << 20) + (uint64_t)(b % 32) * (1u << 15);
}

/* ---- the chaos thread -------------------------------------------------- */

/* The map file's epoch (the targets keep it current with --etcd), or 0. */
static uint64_t file_epoch(const struct topts *o, struct wf_map *keep)
{
	struct wf_map m;
	struct wf_map_err err;
	uint64_t e;

	if (wf_map_load(o->map, &m, &err))
		return 0;
	e = m.epoch;
	if (keep)
		*keep = m;
	else
		wf_map_free(&m);
	return e;
}

static int weftctl(const struct topts *o, const char *args)
{
	int ret;

	if (!o->etcd)
		return wf_sh("'%s/weftctl' %s -c '%s' --run-dir '%s' >/dev/null",
			     o->bin, args, o->map, o->run_dir);
	/* On etcd's map; then wait (bounded) until the targets have saved
	 * the epoch it wrote as the map file the clients read. */
	ret = wf_sh("'%s/weftctl' %s --etcd %s --run-dir '%s' >/dev/null", o->bin,
		    args, o->etcd, o->run_dir);
	if (!ret) {
		char out[700];
		FILE *p;
		unsigned long long want = 0;

		snprintf(out, sizeof(out), "'%s/weftctl' map export --etcd %s",
			 o->bin, o->etcd);
		p = popen(out, "r");
		if (p) {
			while (fgets(out, sizeof(out), p))
				if (sscanf(out, "epoch = %llu;", &want) == 1)
					break;
			pclose(p);
		}
		for (int i = 0; i < 200 && file_epoch(o, NULL) < want; i++)
			wf_sleep_ms(25);
	}
	return ret;
}

/* --etcd: wait (bounded by ms) until the map file says target id is up
 * (up) or down (!up) and, when clean, that no PG is pinned. */
static bool wait_map(const struct topts *o, uint32_t id, bool up, bool clean,
		     unsigned ms)
{
	for (uint64_t t0 = now_ms(); now_ms() - t0 < ms; wf_sleep_ms(25)) {
		struct wf_map m;
		int ti;
		bool ok;

		if (!file_epoch(o, &m))
			continue;
		ti = wf_map_target_by_id(&m, id);
		ok = ti >= 0 && m.targets[ti].up == up && m.targets[ti].in &&
		     (!clean || !m.ntemps);
		wf_map_free(&m);
		if (ok)
			return true;
	}
	return false;
}

static pid_t pid_of(const struct topts *o, uint32_t id)
{
	char path[512];
	long pid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/target-%u.pid", o->cluster_dir, id);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	return (pid_t)pid;
}

/* The key pid was started with (--key NAME, or --key=NAME) into key
 * (empty: none, it took $WEFT_KEY). */
static void key_of(pid_t pid, char *key, size_t n)
{
	char path[64], args[4096];
	size_t len;
	FILE *f;

	key[0] = 0;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return;
	len = fread(args, 1, sizeof(args) - 1, f);
	fclose(f);
	args[len] = 0;
	for (size_t i = 0; i < len; i += strlen(args + i) + 1) {
		const char *a = args + i, *v = NULL;

		if (!strncmp(a, "--key=", 6))
			v = a + 6;
		else if (!strcmp(a, "--key") && i + 6 < len)
			v = a + 6;
		if (v && strlen(v) < n &&
		    strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			   "0123456789._-") == strlen(v))
			memcpy(key, v, strlen(v) + 1);
	}
}

/* SIGKILL and wait until the process is gone (bounded); the key it was
 * started with into key (its restart proves the same one: each target of
 * a cluster may have its own). */
static void kill9(const struct topts *o, uint32_t id, char *key, size_t n)
{
	pid_t pid = pid_of(o, id);

	key[0] = 0;
	if (pid > 0) {
		key_of(pid, key, n);
		wf_kill9_wait(pid, 5000);
	}
}

static int restart(const struct topts *o, uint32_t id, const char *key)
{
	return wf_sh("'%s/weft-target' -c '%s' --id %u --run-dir '%s' --pid-file "
		   "'%s/target-%u.pid'%s%s%s%s >/dev/null 2>&1", o->bin, o->map, id,
		   o->run_dir, o->cluster_dir, id, o->etcd ? " --etcd " : "",
		   o->etcd ? o->etcd : "", *key ? " --key " : "", key);
}

/* --etcd: a keeper of our own (weftctl keeper), stopped at the end. */
static pid_t keeper_start(const struct topts *o)
{
	char bin[600], log[600];
	pid_t pid = fork();

	if (pid)
		return pid;
	/* Killed with us (a bounded test's timeout), never left acting. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	snprintf(bin, sizeof(bin), "%s/weftctl", o->bin);
	snprintf(log, sizeof(log), "%s/thrash-keeper.log", o->cluster_dir);
	if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr))
		_exit(127);
	execl(bin, bin, "keeper", "--etcd", o->etcd, "--run-dir", o->run_dir,
	      "--out-after", "0", (char *)NULL);
	_exit(127);
}

enum away_kind { AWAY_KILL, AWAY_STOP, AWAY_OUT, AWAY_KINDS };

static void *chaos(void *arg)
{
	struct tstate *s = arg;
	const struct topts *o = s->o;
	struct wf_map m;
	struct wf_map_err err;
	uint32_t ids[MAX_TARGETS], n;
	char cmd[128], key[64] = "";
	uint64_t rng = o->seed ^ 0xc4a05;

	if (wf_map_load(o->map, &m, &err)) {
		snprintf(s->err, sizeof(s->err), "%.200s", err.msg);
		goto out;
	}
	n = m.ntargets < MAX_TARGETS ? m.ntargets : MAX_TARGETS;
	for (uint32_t i = 0; i < n; i++)
		ids[i] = m.targets[i].id;
	wf_map_free(&m);

	for (unsigned c = 0; c < o->cycles; c++) {
		uint32_t victim = ids[rnd(&rng) % n];
		enum away_kind k = (enum away_kind)(rnd(&rng) % AWAY_KINDS);
		uint64_t t0;

		/* Away: the target fails (or is taken out), the operator
		 * marks it; with --etcd the keeper marks a failed one, once
		 * its lease expires. */
		t0 = now_ms();
		if (k == AWAY_KILL)
			kill9(o, victim, key, sizeof(key));
		else if (k == AWAY_STOP)
			kill(pid_of(o, victim), SIGSTOP);
		snprintf(cmd, sizeof(cmd), "target %s %u", k == AWAY_OUT ? "out" : "down",
			 victim);
		if (o->etcd && k != AWAY_OUT) {
			if (!wait_map(o, victim, false, false, 30000)) {
				snprintf(s->err, sizeof(s->err), "cycle %u: the keeper did "
					 "not mark target %u down in 30 s", c, victim);
				goto out;
			}
			if (s->ndown < sizeof(s->down_s) / sizeof(s->down_s[0]))
				s->down_s[s->ndown++] = (double)(now_ms() - t0) / 1000.0;
		} else if (weftctl(o, cmd)) {
			snprintf(s->err, sizeof(s->err), "weftctl %s failed", cmd);
			goto out;
		}
		wf_sleep_ms(o->cycle_ms / 2 + (unsigned)(rnd(&rng) % (o->cycle_ms / 2 + 1)));
		/* Back, then brought up to date while I/O goes on. */
		if (k == AWAY_KILL && restart(o, victim, key)) {
			snprintf(s->err, sizeof(s->err), "restarting target %u failed",
				 victim);
			goto out;
		}
		if (k == AWAY_STOP)
			kill(pid_of(o, victim), SIGCONT);
		snprintf(cmd, sizeof(cmd), "target %s %u", k == AWAY_OUT ? "in" : "up",
			 victim);
		t0 = now_ms();
		if (o->etcd && k != AWAY_OUT) {
			/* The keeper marks it up, pins, ends the pins. */
			if (!wait_map(o, victim, true, true, 120000)) {
				snprintf(s->err, sizeof(s->err), "cycle %u: target %u not "
					 "back and clean in 120 s", c, victim);
				goto out;
			}
		} else if (o->etcd) {
			if (weftctl(o, cmd) || !wait_map(o, victim, true, true, 120000)) {
				snprintf(s->err, sizeof(s->err), "cycle %u: target %u not "
					 "back in and clean in 120 s", c, victim);
				goto out;
			}
		} else if (weftctl(o, cmd) || weftctl(o, "recover --wait --timeout 120")) {
			snprintf(s->err, sizeof(s->err), "cycle %u: bringing target %u "
				 "back (%s) failed", c, victim, cmd);
			goto out;
		}
		if (s->nrec < sizeof(s->rec_s) / sizeof(s->rec_s[0]))
			s->rec_s[s->nrec++] = (double)(now_ms() - t0) / 1000.0;
		s->cycles_done++;
	}
out:
	__atomic_store_n(&s->chaos_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* ---- the I/O thread ---------------------------------------------------- */

static void check(struct tstate *s, uint32_t b, const char *buf)
{
	int64_t v = wf_block_version(buf, BS, blk_off(b));

	s->reads++;
	if (v == (int64_t)s->acked[b] || (s->maybe[b] && v == (int64_t)s->maybe[b]))
		return;
	if (v >= 0 && (uint64_t)v < s->acked[b])
		s->lost++;
	else
		s->mismatches++;
	if (s->lost + s->mismatches <= 10)
		fprintf(stderr, "weft-bench thrash: block %u (offset %" PRIu64 ") holds "
			"version %" PRId64 ", acknowledged %" PRIu64 "\n", b,
			blk_off(b), v, s->acked[b]);
}

struct slot {
	char *buf;
	uint32_t blk;
	uint64_t ver;                   /* write: the version; read: 0 */
};

static int io_loop(struct tstate *s, struct weft_cluster *cl, struct weft_volume *vol)
{
	const struct topts *o = s->o;
	struct slot *sl = calloc(o->qd, sizeof(*sl));
	struct weft_cqe cqe[64];
	unsigned out = 0, free_n = o->qd;
	unsigned *freel = calloc(o->qd, sizeof(*freel));

	if (!sl || !freel)
		return -ENOMEM;
	for (unsigned i = 0; i < o->qd; i++) {
		sl[i].buf = weft_buf_alloc(cl, BS);
		if (!sl[i].buf)
			return -ENOMEM;
		freel[i] = i;
	}
	s->last_done_ms = now_ms();
	for (;;) {
		bool draining = __atomic_load_n(&s->chaos_done, __ATOMIC_ACQUIRE);
		int n;

		if (draining && !out)
			break;
		while (!draining && free_n) {
			unsigned i = freel[free_n - 1];
			uint32_t b = (uint32_t)(rnd(&s->rng) % o->blocks);
			int ret;

			if (s->busy[b])
				break;
			sl[i].blk = b;
			if (rnd(&s->rng) % 10 < 7) {
				sl[i].ver = ++s->ver;
				wf_block_fill(sl[i].buf, BS, blk_off(b), sl[i].ver);
				ret = weft_write(vol, sl[i].buf, BS, blk_off(b), 0, i);
			} else {
				sl[i].ver = 0;
				ret = weft_read(vol, sl[i].buf, BS, blk_off(b), i);
			}
			if (ret == -EAGAIN)
				break;
			if (ret)
				return ret;
			s->busy[b] = 1;
			free_n--;
			out++;
		}
		if (!out)
			continue;
		n = weft_wait(cl, cqe, 1, 64, 200);
		if (n < 0)
			return n;
		if (n > 0) {
			uint64_t t = now_ms();

			if (t - s->last_done_ms > s->stall_ms_max)
				s->stall_ms_max = t - s->last_done_ms;
			s->last_done_ms = t;
		}
		for (int k = 0; k < n; k++) {
			unsigned i = (unsigned)cqe[k].user_data;
			uint32_t b = sl[i].blk;

			if (sl[i].ver) {
				if (cqe[k].res == BS) {
					s->acked[b] = sl[i].ver;
					s->maybe[b] = 0;
					s->acks++;
				} else {
					s->maybe[b] = sl[i].ver;
					s->fails++;
				}
			} else if (cqe[k].res == BS) {
				check(s, b, sl[i].buf);
			}
			s->busy[b] = 0;
			freel[free_n++] = i;
			out--;
		}
	}
	for (unsigned i = 0; i < o->qd; i++)
		weft_buf_free(cl, sl[i].buf);
	free(sl);
	free(freel);
	return 0;
}

static int open_vol(const struct topts *o, unsigned timeout_ms, struct weft_cluster **cl,
		    struct weft_volume **vol)
{
	struct weft_cluster_opts co = { .size = sizeof(co) };
	int ret;

	co.map_path = o->map;
	co.queue_depth = o->qd;
	co.timeout_ms = timeout_ms;
	co.flags = WEFT_F_NO_SHORT_CIRCUIT;
	co.run_dir = o->run_dir;
	weft_env_opts(&co, "weft-bench thrash");
	ret = weft_cluster_open(&co, cl);
	if (ret)
		return ret;
	ret = weft_volume_open(*cl, o->volume, vol);
	if (ret)
		weft_cluster_close(*cl);
	return ret;
}

/* Every block read back on a fresh handle. */
static int verify_all(struct tstate *s, const char *what)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *buf;
	uint64_t lost0 = s->lost, mm0 = s->mismatches;
	int ret = open_vol(s->o, 20000, &cl, &vol);

	if (ret)
		return ret;
	buf = weft_buf_alloc(cl, BS);
	for (uint32_t b = 0; b < s->o->blocks && buf; b++) {
		ssize_t n = weft_pread(vol, buf, BS, blk_off(b));

		if (n != BS) {
			fprintf(stderr, "weft-bench thrash: %s: read of block %u: %s\n",
				what, b, weft_strerror((int)n));
			s->mismatches++;
			continue;
		}
		check(s, b, buf);
	}
	weft_buf_free(cl, buf);
	weft_cluster_close(cl);
	if (s->lost != lost0 || s->mismatches != mm0)
		fprintf(stderr, "weft-bench thrash: %s: %" PRIu64 " lost, %" PRIu64
			" mismatches\n", what, s->lost - lost0, s->mismatches - mm0);
	return buf ? 0 : -ENOMEM;
}

static int usage(FILE *f)
{
	fprintf(f, "usage: weft-bench thrash -c MAP --volume V [options]\n"
"  A verified mixed workload while targets are killed, frozen, taken out\n"
"  and brought back (docs/reliability.md).  Needs the cluster that\n"
"  scripts/cluster started: its folder (pid files) and run directory.\n"
"  --cycles N         away-and-back cycles (default 10)\n"
"  --cycle-ms MS      time a target stays away, about (default 1500)\n"
"  --qd N             requests in flight (default 16)\n"
"  --blocks N         4 KiB blocks in the working set (default 4096)\n"
"  --max-away N       targets away at once (default 1)\n"
"  --seed N           (default: from the clock)\n"
"  --cluster-dir D    default $WEFT_CLUSTER_DIR\n"
"  --run-dir D        default $WEFT_RUN_DIR\n"
"  --bin DIR          weftctl and weft-target (default: beside weft-bench)\n"
"  --no-replicas      skip reading every block through each target alone\n"
"  --etcd URL         the cluster's map is in etcd (targets started with\n"
"                     --etcd): a keeper of its own marks failed targets\n"
"                     down and up; the JSON adds failover_seconds_p50/max\n"
"                     (death to marked down)\n"
"  --json             one JSON object on stdout\n"
"  Exit 0 when nothing acknowledged was lost and nothing mismatched.\n");
	return f == stdout ? 0 : 2;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int bench_thrash(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "volume", required_argument, NULL, 'v' },
		{ "cycles", required_argument, NULL, 'n' },
		{ "cycle-ms", required_argument, NULL, 'm' },
		{ "qd", required_argument, NULL, 'q' },
		{ "blocks", required_argument, NULL, 'b' },
		{ "max-away", required_argument, NULL, 'a' },
		{ "seed", required_argument, NULL, 's' },
		{ "cluster-dir", required_argument, NULL, 'd' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "bin", required_argument, NULL, 'B' },
		{ "no-replicas", no_argument, NULL, 'N' },
		{ "etcd", required_argument, NULL, 'E' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct topts o = {
		.cycles = 10, .cycle_ms = 1500, .qd = 16, .blocks = 4096,
		.max_away = 1, .replicas = true,
		.cluster_dir = getenv("WEFT_CLUSTER_DIR"),
		.run_dir = getenv("WEFT_RUN_DIR"),
	};
	static char bindir[512];
	struct tstate s;
	struct weft_cluster *cl;
	struct weft_volume *vol;
	pthread_t th;
	pid_t keeper = 0;
	uint64_t t0;
	int c, ret;

	o.seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 20;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:v:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': o.map = optarg; break;
		case 'v': o.volume = optarg; break;
		case 'n': o.cycles = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'm': o.cycle_ms = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'q': o.qd = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'b': o.blocks = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'a': o.max_away = (unsigned)strtoul(optarg, NULL, 10); break;
		case 's': o.seed = strtoull(optarg, NULL, 0); break;
		case 'd': o.cluster_dir = optarg; break;
		case 'r': o.run_dir = optarg; break;
		case 'B': o.bin = optarg; break;
		case 'N': o.replicas = false; break;
		case 'E': o.etcd = optarg; break;
		case 'j': o.json = true; break;
		case 'h': return usage(stdout);
		default: return usage(stderr);
		}
	}
	if (!o.map || !o.volume || !o.cluster_dir || !o.run_dir || !o.qd ||
	    o.qd > 1024 || !o.blocks || o.blocks > (1u << 22) || o.cycle_ms < 100 ||
	    o.max_away != 1)
		return usage(stderr);
	if (!o.bin) {
		ssize_t n = readlink("/proc/self/exe", bindir, sizeof(bindir) - 1);

		if (n <= 0)
			return usage(stderr);
		bindir[n] = 0;
		*strrchr(bindir, '/') = 0;
		o.bin = bindir;
	}
	memset(&s, 0, sizeof(s));
	s.o = &o;
	s.rng = o.seed;
	s.acked = calloc(o.blocks, sizeof(*s.acked));
	s.maybe = calloc(o.blocks, sizeof(*s.maybe));
	s.busy = calloc(o.blocks, 1);
	if (!s.acked || !s.maybe || !s.busy)
		return 1;
	/* A long request timeout: a write waits through a member's absence
	 * until the map routes around it, rather than failing. */
	ret = open_vol(&o, 30000, &cl, &vol);
	if (ret) {
		fprintf(stderr, "weft-bench thrash: %s: %s\n", ret == -ENOENT ?
			o.map : o.volume, ret == -ENOENT ? "no such map file or "
			"no volume of that name in it (the line above says which)" :
			weft_strerror(ret));
		return 1;
	}
	t0 = now_ms();
	if (o.etcd && (keeper = keeper_start(&o)) < 0) {
		fprintf(stderr, "weft-bench thrash: cannot start a keeper\n");
		return 1;
	}
	pthread_create(&th, NULL, chaos, &s);
	ret = io_loop(&s, cl, vol);
	pthread_join(th, NULL);
	weft_cluster_close(cl);
	if (keeper > 0) {
		/* The checks below mark targets down by hand: no keeper then. */
		kill(keeper, SIGTERM);
		waitpid(keeper, NULL, 0);
	}
	if (ret) {
		fprintf(stderr, "weft-bench thrash: I/O: %s\n", weft_strerror(ret));
		return 1;
	}
	if (s.err[0])
		fprintf(stderr, "weft-bench thrash: %s\n", s.err);
	verify_all(&s, "all targets up");
	if (o.replicas && !s.err[0]) {
		struct wf_map m;
		struct wf_map_err err;

		if (!wf_map_load(o.map, &m, &err)) {
			for (uint32_t i = 0; i < m.ntargets; i++) {
				char cmd[64], what[64];

				for (uint32_t j = 0; j < m.ntargets; j++) {
					snprintf(cmd, sizeof(cmd), "target down %u",
						 m.targets[j].id);
					if (j != i)
						weftctl(&o, cmd);
				}
				snprintf(what, sizeof(what), "target %u alone",
					 m.targets[i].id);
				verify_all(&s, what);
				for (uint32_t j = 0; j < m.ntargets; j++) {
					snprintf(cmd, sizeof(cmd), "target up %u",
						 m.targets[j].id);
					if (j != i)
						weftctl(&o, cmd);
				}
				weftctl(&o, "recover --wait --timeout 120");
			}
			wf_map_free(&m);
		}
	}
	qsort(s.rec_s, s.nrec, sizeof(double), cmp_dbl);
	qsort(s.down_s, s.ndown, sizeof(double), cmp_dbl);
	if (o.json) {
		struct wf_json js;

		wf_json_init(&js, stdout, false);
		wf_json_obj_begin(&js, NULL);
		wf_json_u64(&js, "cycles", s.cycles_done);
		wf_json_u64(&js, "acked_writes", s.acks);
		wf_json_u64(&js, "failed_writes", s.fails);
		wf_json_u64(&js, "verified_reads", s.reads);
		wf_json_u64(&js, "lost", s.lost);
		wf_json_u64(&js, "mismatches", s.mismatches);
		wf_json_dbl(&js, "recovery_seconds_p50", s.nrec ? s.rec_s[s.nrec / 2] : 0);
		wf_json_dbl(&js, "recovery_seconds_max", s.nrec ? s.rec_s[s.nrec - 1] : 0);
		wf_json_u64(&js, "client_stall_ms_max", s.stall_ms_max);
		if (o.etcd) {
			wf_json_u64(&js, "failovers", s.ndown);
			wf_json_dbl(&js, "failover_seconds_p50",
				    s.ndown ? s.down_s[s.ndown / 2] : 0);
			wf_json_dbl(&js, "failover_seconds_max",
				    s.ndown ? s.down_s[s.ndown - 1] : 0);
		}
		wf_json_dbl(&js, "runtime_s", (double)(now_ms() - t0) / 1000.0);
		wf_json_u64(&js, "seed", o.seed);
		wf_json_str(&js, "error", s.err);
		wf_json_obj_end(&js);
		wf_json_finish(&js);
	} else {
		printf("thrash: %u cycles, %" PRIu64 " writes acknowledged, %" PRIu64
		       " failed, %" PRIu64 " reads verified; lost %" PRIu64
		       ", mismatches %" PRIu64 "; recovery p50 %.1f s, max %.1f s; "
		       "longest client stall %" PRIu64 " ms (seed %" PRIu64 ")\n",
		       s.cycles_done, s.acks, s.fails, s.reads, s.lost, s.mismatches,
		       s.nrec ? s.rec_s[s.nrec / 2] : 0.0,
		       s.nrec ? s.rec_s[s.nrec - 1] : 0.0, s.stall_ms_max, o.seed);
	}
	free(s.acked);
	free(s.maybe);
	free(s.busy);
	return s.lost || s.mismatches || s.err[0] || s.cycles_done != o.cycles ? 1 : 0;
}
