/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-bench io: 4 KiB-class random I/O through libweft against running
 * targets, beside its floors measured in the same run:
 *
 *   device  the raw io_uring loop of io_floor.h (O_DIRECT, registered file
 *           and buffers) on a scratch file in the folder of the targets'
 *           backing files (same file system, same disk), same rw/bs/qd/
 *           runtime, over a file as large as the working set; run before
 *           AND after each weft job (the machine drifts), the mean is the
 *           floor.  A live store is never written by the floor.
 *   rtt     the transport round trip of a weft write without the device:
 *           a forked peer, bs bytes by wf_write plus a 64-byte message,
 *           answered by a 16-byte message, QD 1, over the same transport.
 *
 * Every byte read back is verified: the working set is prefilled with
 * seeded patterns (bench/pattern.h), every block has a version (bumped by
 * each write, the pattern seed derives from it), and no two I/Os to one
 * block are in flight at once, so every read has exactly one right answer.
 * After the jobs the whole working set is read back and checked.
 *
 * Timing: per I/O from just before weft_read/weft_write to just after the
 * weft_wait that returned its completion (fio's "lat").  CPU per I/O: this
 * process (CLOCK_PROCESS_CPUTIME_ID) and the targets (/proc/PID, pids from
 * --target-pid, --pid-file or $WEFT_CLUSTER_DIR/target-*.pid) over the
 * timed phase, divided by the I/Os.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/counts.h"
#include "bench/io_floor.h"
#include "bench/io_mark.h"
#include "bench/io_rtt.h"
#include "bench/pattern.h"
#include "bench/proc.h"
#include "bench/stats.h"
#include "fabric/fabric.h"
#include "proto/wire.h"
#include "placement/map.h"
#include "weft.h"
#include "weft_env.h"

#define MAX_JOBS        8
#define MAX_PIDS        64
#define FILL_IO         (64u * 1024)    /* prefill / verify request size */
#define FILL_QD         16u

struct iopts {
	const char *map;
	const char *volume;
	const char *transport;
	const char *plot;
	const char *floor_file;
	enum wf_rw  rw[MAX_JOBS];
	unsigned    nrw;
	uint32_t    qd[MAX_JOBS];
	unsigned    nqd;
	uint32_t    bs;
	double      runtime;
	uint64_t    size;
	uint64_t    seed;
	uint32_t    rwmix;
	bool        json;
	bool        floor;
	bool        short_circuit;
	bool        verify_only;
	bool        overwrite;
	bool        count;          /* --count: syscalls too (perf) */
	const char *instr;          /* --instructions DIR: callgrind's dumps */
	uint64_t    ios;            /* --ios N: its window (I/Os) */
	double      idle_per_s;     /* the targets' idle instructions per s */
	pid_t       pids[MAX_PIDS];
	unsigned    npids;
};

/* One weft job's figures (and its floors). */
struct job {
	enum wf_rw rw;
	uint32_t   qd;
	uint64_t   ios, reads, writes, verified;
	double     elapsed_s, iops, mbps;
	double     client_cpu_us, target_cpu_us;  /* per I/O; <0: unknown */
	struct weft_stats spin0, spin1; /* weft_wait's polling: before, after */
	struct wf_hist lat, rlat, wlat;
	bool       have_floor;
	struct wf_floor_result *fl[2];            /* before, after */
	double     dev_iops, dev_p50_us, dev_p99_us;
	struct wf_per_io per_io;        /* docs/performance.md, "Counts" */
};

/* Working-set state: the run's seed and each block's version. */
struct wset {
	struct weft_cluster *cl;
	struct weft_volume  *vol;
	uint64_t  size;         /* bytes addressed from offset 0 */
	uint64_t  nblocks;
	uint32_t  bs;
	uint64_t  seed;
	uint32_t *ver;          /* [nblocks] */
	uint8_t  *busy;         /* [nblocks]: an I/O is in flight */
	uint64_t  rng;
};

static void die(const char *what, int err)
{
	fprintf(stderr, "weft-bench io: %s: %s\n", what,
		err < 0 ? weft_strerror(err) : strerror(err));
	exit(1);
}

static uint64_t rnd(struct wset *w)
{
	w->rng += 0x9e3779b97f4a7c15ull;
	return wf_mix64(w->rng);
}

/* The pattern seed of a block's version: data of an older version (or of
 * another run) fails the check. */
static uint64_t ver_seed(const struct wset *w, uint32_t v)
{
	return wf_mix64(w->seed ^ ((uint64_t)v * 0xd1b54a32d192ed03ull));
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	}
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* "1,32" or "randread,randwrite" lists. */
static int parse_qd_list(const char *s, struct iopts *o)
{
	char buf[128], *save = NULL, *t;

	snprintf(buf, sizeof(buf), "%s", s);
	for (t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *end;
		unsigned long v = strtoul(t, &end, 10);

		if (*end || !v || v > 1024 || o->nqd == MAX_JOBS)
			return -EINVAL;
		o->qd[o->nqd++] = (uint32_t)v;
	}
	return o->nqd ? 0 : -EINVAL;
}

static int parse_rw_list(const char *s, struct iopts *o)
{
	char buf[128], *save = NULL, *t;

	snprintf(buf, sizeof(buf), "%s", s);
	for (t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (o->nrw == MAX_JOBS || wf_rw_parse(t, &o->rw[o->nrw]))
			return -EINVAL;
		o->nrw++;
	}
	return o->nrw ? 0 : -EINVAL;
}

static int add_pid_file(struct iopts *o, const char *path)
{
	FILE *f = fopen(path, "r");
	long pid;
	int ok;

	if (!f)
		return -errno;
	ok = fscanf(f, "%ld", &pid) == 1 && pid > 0;
	fclose(f);
	if (!ok)
		return -EINVAL;
	if (o->npids < MAX_PIDS)
		o->pids[o->npids++] = (pid_t)pid;
	return 0;
}

static int usage(FILE *f)
{
	fprintf(f,
"usage: weft-bench io -c MAP --volume V [options]\n"
"  Writes the working set (bytes 0 .. --size of V: what was there is\n"
"  replaced) and marks the volume in its last 4 KiB; refuses a volume\n"
"  holding data it did not write unless --overwrite.  Each job runs\n"
"  between two device-floor runs of the same length, and the whole\n"
"  working set is written first and read back last: the run takes\n"
"  about 3 x runtime per job plus those passes (it says so up front).\n"
"  --rw LIST          randread, randwrite, randrw (comma list; default randread)\n"
"  --bs SIZE          block size (default 4k)\n"
"  --qd LIST          queue depths (comma list, default 1)\n"
"  --runtime S        seconds per job (default 5)\n"
"  --size SIZE        working set from offset 0 (default min(volume, 1G))\n"
"  --transport T      tcp (default), unix or verbs (also called rdma)\n"
"  --short-circuit    allow short-circuit local reads (default: every read\n"
"                     goes through the target)\n"
"  --target-pid PID   a target process for CPU per I/O (repeatable)\n"
"  --pid-file FILE    ... from a pid file (repeatable; default\n"
"                     $WEFT_CLUSTER_DIR/target-*.pid)\n"
"  --floor-file PATH  scratch file for the device floor, kept for reuse\n"
"                     (default: weft-bench-floor.dat beside\n"
"                     the first target's device)\n"
"  --no-floor         skip the device and round-trip floors\n"
"  --verify-only      prefill, read everything back, verify, exit\n"
"  --overwrite        run on a volume holding data weft-bench did not write\n"
"                     (without it such a volume is refused: the working set\n"
"                     is written over)\n"
"  --rwmixread PCT    reads in randrw (default 50)\n"
"  --seed N           pattern and offset seed (default: from the clock)\n"
"  --json             one JSON object on stdout\n"
"  --count            also count syscalls per I/O of the client and the\n"
"                     targets (perf stat on the raw_syscalls tracepoint),\n"
"                     and io_uring submits, SQEs and waits, context\n"
"                     switches, block requests issued and plug flushes\n"
"                     (fabric operations per I/O are always reported)\n"
"  --instructions DIR user-space instructions per I/O of the client and the\n"
"                     targets, from callgrind's dumps in DIR (run by\n"
"                     bench/count-instructions, which starts both sides\n"
"                     under callgrind): each job runs a warmup of N/5 I/Os,\n"
"                     a window of N and one of 2N (per I/O: the\n"
"                     difference over N), instead of --runtime\n"
"  --ios N            that N (default 1000)\n"
"  --plot DIR         latency CDF and histogram SVGs per job\n");
	return f == stdout ? 0 : 2;
}

enum { O_VOL = 256, O_RW, O_BS, O_QD, O_RT, O_SIZE, O_TR, O_SC, O_TPID, O_PIDF,
       O_FLF, O_NOFL, O_VO, O_MIX, O_SEED, O_JSON, O_PLOT, O_OVER, O_COUNT,
       O_INSTR, O_IOS };

static int parse(int argc, char **argv, struct iopts *o)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "volume", required_argument, NULL, O_VOL },
		{ "rw", required_argument, NULL, O_RW },
		{ "bs", required_argument, NULL, O_BS },
		{ "qd", required_argument, NULL, O_QD },
		{ "runtime", required_argument, NULL, O_RT },
		{ "size", required_argument, NULL, O_SIZE },
		{ "transport", required_argument, NULL, O_TR },
		{ "short-circuit", no_argument, NULL, O_SC },
		{ "target-pid", required_argument, NULL, O_TPID },
		{ "pid-file", required_argument, NULL, O_PIDF },
		{ "floor-file", required_argument, NULL, O_FLF },
		{ "no-floor", no_argument, NULL, O_NOFL },
		{ "verify-only", no_argument, NULL, O_VO },
		{ "overwrite", no_argument, NULL, O_OVER },
		{ "rwmixread", required_argument, NULL, O_MIX },
		{ "seed", required_argument, NULL, O_SEED },
		{ "json", no_argument, NULL, O_JSON },
		{ "count", no_argument, NULL, O_COUNT },
		{ "instructions", required_argument, NULL, O_INSTR },
		{ "ios", required_argument, NULL, O_IOS },
		{ "plot", required_argument, NULL, O_PLOT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c, ret;

	memset(o, 0, sizeof(*o));
	o->transport = "tcp";
	o->bs = 4096;
	o->runtime = 5;
	o->rwmix = 50;
	o->floor = true;
	o->ios = 1000;
	o->seed = wf_mix64(wf_now_ns() ^ (uint64_t)getpid());
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': o->map = optarg; break;
		case O_VOL: o->volume = optarg; break;
		case O_RW:
			if (parse_rw_list(optarg, o))
				return fprintf(stderr, "weft-bench io: bad --rw '%s'\n", optarg), 2;
			break;
		case O_BS:
			if (parse_size(optarg, &v) || !v || v % 4096 || v > (1u << 20))
				return fprintf(stderr, "weft-bench io: --bs must be a multiple of 4k up to 1M\n"), 2;
			o->bs = (uint32_t)v;
			break;
		case O_QD:
			if (parse_qd_list(optarg, o))
				return fprintf(stderr, "weft-bench io: bad --qd '%s' (1..1024)\n", optarg), 2;
			break;
		case O_RT:
			o->runtime = strtod(optarg, NULL);
			if (!(o->runtime > 0 && o->runtime <= 3600))
				return fprintf(stderr, "weft-bench io: bad --runtime\n"), 2;
			break;
		case O_SIZE:
			if (parse_size(optarg, &o->size) || !o->size)
				return fprintf(stderr, "weft-bench io: bad --size\n"), 2;
			break;
		case O_TR:
			if (strcmp(optarg, "tcp") && strcmp(optarg, "unix") &&
			    strcmp(optarg, "verbs") && strcmp(optarg, "rdma"))
				return fprintf(stderr, "weft-bench io: --transport: '%s' "
					       "is not tcp, unix or verbs (rdma)\n",
					       optarg), 2;
			o->transport = strcmp(optarg, "rdma") ? optarg : "verbs";
			break;
		case O_SC: o->short_circuit = true; break;
		case O_TPID:
			if (o->npids < MAX_PIDS)
				o->pids[o->npids++] = (pid_t)atol(optarg);
			break;
		case O_PIDF:
			ret = add_pid_file(o, optarg);
			if (ret)
				return fprintf(stderr, "weft-bench io: pid file %s: %s\n",
					       optarg, strerror(-ret)), 2;
			break;
		case O_FLF: o->floor_file = optarg; break;
		case O_NOFL: o->floor = false; break;
		case O_VO: o->verify_only = true; break;
		case O_OVER: o->overwrite = true; break;
		case O_MIX:
			o->rwmix = (uint32_t)atoi(optarg);
			if (o->rwmix > 100)
				return fprintf(stderr, "weft-bench io: bad --rwmixread\n"), 2;
			break;
		case O_SEED: o->seed = strtoull(optarg, NULL, 0); break;
		case O_JSON: o->json = true; break;
		case O_COUNT: o->count = true; break;
		case O_INSTR: o->instr = optarg; break;
		case O_IOS:
			if (parse_size(optarg, &o->ios) || o->ios < 10)
				return fprintf(stderr, "weft-bench io: bad --ios (at least 10)\n"), 2;
			break;
		case O_PLOT: o->plot = optarg; break;
		case 'h': exit(usage(stdout));
		default: return usage(stderr);
		}
	}
	if (!o->map || !o->volume) {
		fprintf(stderr, "weft-bench io: -c MAP and --volume V are required\n");
		return usage(stderr);
	}
	if (!o->nrw)
		o->rw[o->nrw++] = WF_RW_READ;
	if (!o->nqd)
		o->qd[o->nqd++] = 1;
	if (!o->npids) {
		const char *d = getenv("WEFT_CLUSTER_DIR");
		char pat[PATH_MAX];
		glob_t g;

		if (d && *d) {
			snprintf(pat, sizeof(pat), "%s/target-*.pid", d);
			if (!glob(pat, 0, NULL, &g)) {
				for (size_t i = 0; i < g.gl_pathc; i++)
					add_pid_file(o, g.gl_pathv[i]);
				globfree(&g);
			}
		}
	}
	return 0;
}

/* ---- prefill and verify ------------------------------------------------ */

/* Block b's current contents into buf (len = n blocks). */
static void fill_blocks(const struct wset *w, void *buf, uint64_t b, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		wf_pattern_fill((char *)buf + (size_t)i * w->bs, w->bs,
				ver_seed(w, w->ver[b + i]), (b + i) * w->bs);
}

static int check_blocks(const struct wset *w, const void *buf, uint64_t b,
			uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		size_t bad;

		if (wf_pattern_check((const char *)buf + (size_t)i * w->bs, w->bs,
				     ver_seed(w, w->ver[b + i]), (b + i) * w->bs,
				     &bad)) {
			fprintf(stderr, "weft-bench io: VERIFY FAILED: block %llu "
				"(volume offset %llu, version %u): first bad byte "
				"at +%zu\n", (unsigned long long)(b + i),
				(unsigned long long)((b + i) * w->bs),
				w->ver[b + i], bad);
			return -EILSEQ;
		}
	}
	return 0;
}

/*
 * Sequential pass over the working set at FILL_QD, FILL_IO per request:
 * writes the current versions (prefill) or reads and checks them.
 * Returns 0 or -errno (-EILSEQ on a mismatch).
 */
static int pass(struct wset *w, bool write, char **bufs, double *secs)
{
	struct weft_cqe cq[FILL_QD];
	uint32_t per = FILL_IO / w->bs ? FILL_IO / w->bs : 1;
	uint64_t next = 0, done = 0, t0 = wf_now_ns();
	uint64_t at[FILL_QD];
	uint32_t cnt[FILL_QD];
	bool busy[FILL_QD] = { false };
	struct wf_prog pr;
	int ret;

	wf_prog_start(&pr, write ? "prefill" : "verify", w->size);

	while (done < w->nblocks) {
		for (unsigned s = 0; s < FILL_QD && next < w->nblocks; s++) {
			uint32_t n;

			if (busy[s])
				continue;
			n = (uint32_t)(w->nblocks - next < per ? w->nblocks - next : per);
			if (write) {
				fill_blocks(w, bufs[s], next, n);
				ret = weft_write(w->vol, bufs[s], (size_t)n * w->bs,
						 next * w->bs, 0, s);
			} else {
				ret = weft_read(w->vol, bufs[s], (size_t)n * w->bs,
						next * w->bs, s);
			}
			if (ret)
				return ret;
			at[s] = next;
			cnt[s] = n;
			busy[s] = true;
			next += n;
		}
		ret = weft_wait(w->cl, cq, 1, FILL_QD, 30000);
		if (ret < 0)
			return ret;
		if (ret == 0)
			return -ETIMEDOUT;
		for (int i = 0, n = ret; i < n; i++) {
			unsigned s = (unsigned)cq[i].user_data;

			if (s >= FILL_QD || !busy[s])
				return -EPROTO;
			busy[s] = false;
			if (cq[i].res != (int64_t)cnt[s] * w->bs)
				return cq[i].res < 0 ? (int)cq[i].res : -EIO;
			if (!write && (ret = check_blocks(w, bufs[s], at[s], cnt[s])))
				return ret;
			done += cnt[s];
		}
		wf_prog_update(&pr, done * w->bs);
	}
	wf_prog_end(&pr);
	*secs = (double)(wf_now_ns() - t0) / 1e9;
	return 0;
}

/* ---- one timed job ----------------------------------------------------- */

static int target_cpu(const struct iopts *o, uint64_t *ns)
{
	*ns = 0;
	for (unsigned i = 0; i < o->npids; i++) {
		struct wf_cpu c;
		int ret = wf_cpu_proc(o->pids[i], &c);

		if (ret)
			return ret;
		*ns += c.total_ns;
	}
	return o->npids ? 0 : -ENOENT;
}

/* A random block with no I/O in flight (bounded redraws; at QD <= 1024
 * over thousands of blocks a free one comes within a few draws). */
static uint64_t pick(struct wset *w)
{
	uint64_t b;

	do
		b = rnd(w) % w->nblocks;
	while (w->busy[b]);
	return b;
}

static int run_job(const struct iopts *o, struct wset *w, char **bufs, struct job *j)
{
	struct weft_cqe *cq = calloc(j->qd, sizeof(*cq));
	uint64_t *blk = calloc(j->qd, sizeof(*blk));
	uint64_t *t = calloc(j->qd, sizeof(*t));
	uint8_t *isw = calloc(j->qd, 1);
	uint64_t start, stop, tend, tcpu0 = 0, tcpu1 = 0;
	struct wf_cpu c0, c1;
	struct wf_run_counts k;
	unsigned inflight = 0;
	bool have_tcpu;
	int ret = 0;
	/* --instructions: marks after a warmup, after a window of N I/Os and
	 * after one of 2N (completions counted), with qd more I/Os armed so
	 * the queue stays full up to the last mark. */
	uint64_t armed = 0, limit = UINT64_MAX, at[3] = { 0 }, ci[3], ti[3], tm[3];
	unsigned marks = 0;

	if (!cq || !blk || !t || !isw)
		die("alloc", ENOMEM);
	if (w->nblocks < 4ull * j->qd)
		die("working set too small for this queue depth", EINVAL);
	wf_hist_reset(&j->lat);
	wf_hist_reset(&j->rlat);
	wf_hist_reset(&j->wlat);
	if (o->instr) {
		at[0] = o->ios / 5;
		at[1] = at[0] + o->ios;
		at[2] = at[1] + 2 * o->ios;
		limit = at[2] + j->qd;
	}
	wf_counts_begin(&k, w->cl, o->map, o->pids, o->npids, o->count);
	j->spin0.size = j->spin1.size = sizeof(j->spin0);
	weft_stats(w->cl, &j->spin0);
	have_tcpu = !target_cpu(o, &tcpu0);
	wf_cpu_self(&c0);
	start = wf_now_ns();
	tend = start + (uint64_t)(o->runtime * 1e9);

	/* Arms slot s with a new I/O; called only while time remains. */
#define ARM(s) do {							\
		uint64_t b_ = pick(w);					\
		bool wr_ = j->rw == WF_RW_WRITE ||			\
			   (j->rw == WF_RW_RW && rnd(w) % 100 >= o->rwmix); \
		w->busy[b_] = 1;					\
		blk[s] = b_;						\
		isw[s] = wr_;						\
		if (wr_) {						\
			w->ver[b_]++;					\
			fill_blocks(w, bufs[s], b_, 1);			\
			t[s] = wf_now_ns();				\
			ret = weft_write(w->vol, bufs[s], w->bs, b_ * w->bs, 0, s); \
		} else {						\
			t[s] = wf_now_ns();				\
			ret = weft_read(w->vol, bufs[s], w->bs, b_ * w->bs, s); \
		}							\
		if (ret)						\
			goto out;					\
		inflight++;						\
		armed++;						\
	} while (0)

	for (uint32_t s = 0; s < j->qd; s++)
		ARM(s);
	while (inflight) {
		int n = weft_wait(w->cl, cq, 1, (int)j->qd, 30000);
		uint64_t now = wf_now_ns();

		if (n < 0) {
			ret = n;
			goto out;
		}
		if (n == 0) {
			ret = -ETIMEDOUT;
			goto out;
		}
		for (int i = 0; i < n; i++) {
			uint32_t s = (uint32_t)cq[i].user_data;
			uint64_t lat = now - t[s];

			inflight--;
			if (cq[i].res != (int64_t)w->bs) {
				ret = cq[i].res < 0 ? (int)cq[i].res : -EIO;
				goto out;
			}
			wf_hist_record(&j->lat, lat);
			if (isw[s]) {
				wf_hist_record(&j->wlat, lat);
				j->writes++;
			} else {
				wf_hist_record(&j->rlat, lat);
				j->reads++;
				ret = check_blocks(w, bufs[s], blk[s], 1);
				if (ret)
					goto out;
				j->verified++;
			}
			w->busy[blk[s]] = 0;
			if (o->instr ? armed < limit : now < tend)
				ARM(s);
		}
		if (marks < 3 && o->instr && j->reads + j->writes >= at[marks]) {
			ret = wf_instr_mark(o->instr, o->map, o->pids, o->npids,
					    &ci[marks], &ti[marks]);
			if (ret) {
				fprintf(stderr, "weft-bench io: no instruction counts "
					"from callgrind's dumps in %s for this process "
					"and %u target(s) (run under bench/count-"
					"instructions)\n", o->instr, o->npids);
				goto out;
			}
			tm[marks] = wf_now_ns();
			at[marks++] = j->reads + j->writes;
		}
	}
#undef ARM
	stop = wf_now_ns();
	wf_cpu_self(&c1);
	if (have_tcpu && target_cpu(o, &tcpu1))
		have_tcpu = false;
	j->ios = j->reads + j->writes;
	j->elapsed_s = (double)(stop - start) / 1e9;
	j->iops = (double)j->ios / j->elapsed_s;
	j->mbps = j->iops * w->bs / 1e6;
	j->client_cpu_us = (double)(c1.total_ns - c0.total_ns) / 1e3 / (double)j->ios;
	j->target_cpu_us = have_tcpu ?
		(double)(tcpu1 - tcpu0) / 1e3 / (double)j->ios : -1;
	wf_counts_end(&k, w->cl, o->map, j->ios, &j->per_io);
	weft_stats(w->cl, &j->spin1);
	if (marks == 3) {
		struct wf_per_io *p = &j->per_io;

		p->win_ios[0] = at[1] - at[0];
		p->win_ios[1] = at[2] - at[1];
		p->win_c[0] = ci[1];
		p->win_c[1] = ci[2];
		p->win_t[0] = ti[1];
		p->win_t[1] = ti[2];
		/* (B - A) / (ios B - ios A): what a window costs apart from its
		 * I/Os (the STATUS answer that ends it, the first calls of a
		 * path) cancels out. */
		p->c_instr = ((double)ci[2] - (double)ci[1]) /
			     (double)(p->win_ios[1] - p->win_ios[0]);
		/* The targets' idle work (timers, the control thread) runs
		 * by the second, not by the I/O: window B lasts longer than
		 * A, so take its idle rate times the difference out. */
		p->win_s[0] = (double)(tm[1] - tm[0]) / 1e9;
		p->win_s[1] = (double)(tm[2] - tm[1]) / 1e9;
		p->t_instr = ((double)ti[2] - (double)ti[1] -
			      o->idle_per_s * (p->win_s[1] - p->win_s[0])) /
			     (double)(p->win_ios[1] - p->win_ios[0]);
		p->t_idle_per_s = o->idle_per_s;
	}
out:
	if (ret) {
		/* Drain what is in flight so the volume is quiet. */
		while (inflight) {
			int n = weft_wait(w->cl, cq, 1, (int)j->qd, 10000);

			if (n <= 0)
				break;
			inflight -= (unsigned)n;
		}
	}
	free(cq);
	free(blk);
	free(t);
	free(isw);
	return ret;
}

/* ---- floors ------------------------------------------------------------ */

static void default_floor_file(const struct iopts *o, char *out, size_t len)
{
	struct wf_map m;
	struct wf_map_err err;
	char dev[WF_PATH_MAX];

	snprintf(out, len, "/var/tmp/weft-bench-floor.dat");
	if (wf_map_load(o->map, &m, &err))
		return;
	if (m.ntargets) {
		snprintf(dev, sizeof(dev), "%s", m.targets[0].device);
		/* A block device's folder is /dev: keep /var/tmp then. */
		if (strncmp(dev, "/dev/", 5))
			snprintf(out, len, "%s/weft-bench-floor.dat", dirname(dev));
	}
	wf_map_free(&m);
}

static int run_floor(const struct iopts *o, const char *path, uint64_t size,
		     struct job *j, unsigned which)
{
	struct wf_floor_opts fo;
	int ret;

	wf_floor_opts_init(&fo);
	fo.path = path;
	fo.rw = j->rw;
	fo.bs = o->bs;
	fo.qd = j->qd;
	fo.runtime_s = o->runtime;
	fo.size = size;
	fo.seed = o->seed + which;
	fo.rwmix_read = o->rwmix;
	fo.verify = false;      /* the floor's own tests verify it */
	fo.quiet = true;
	fo.layout_progress = true;      /* the first run may lay out 1 GiB */
	if (!j->fl[which])
		j->fl[which] = malloc(sizeof(*j->fl[which]));
	if (!j->fl[which])
		return -ENOMEM;
	ret = wf_floor_run(&fo, j->fl[which]);
	return ret;
}

/* ---- output ------------------------------------------------------------ */

static void print_header(FILE *f)
{
	fprintf(f, "%-9s %3s %9s %7s %8s %8s %8s %8s | %6s %6s | %9s %8s %6s | %6s\n",
		"rw", "qd", "iops", "MB/s", "p50_us", "p99_us", "p99.9", "p99.99",
		"tgtCPU", "cliCPU", "dev_iops", "dev_p50", "ratio", "rtt50");
}

static void print_job(FILE *f, const struct job *j, const struct wf_lat_summary *rtt)
{
	struct wf_lat_summary s;

	wf_hist_summary(&j->lat, &s);
	fprintf(f, "%-9s %3u %9.0f %7.1f %8.1f %8.1f %8.1f %8.1f | ",
		wf_rw_name(j->rw), j->qd, j->iops, j->mbps, s.p50_us, s.p99_us,
		s.p999_us, s.p9999_us);
	if (j->target_cpu_us >= 0)
		fprintf(f, "%6.1f ", j->target_cpu_us);
	else
		fprintf(f, "%6s ", "-");
	fprintf(f, "%6.1f | ", j->client_cpu_us);
	if (j->have_floor)
		fprintf(f, "%9.0f %8.1f %5.2fx | ", j->dev_iops, j->dev_p50_us,
			j->iops / j->dev_iops);
	else
		fprintf(f, "%9s %8s %6s | ", "-", "-", "-");
	if (rtt)
		fprintf(f, "%6.1f\n", rtt->p50_us);
	else
		fprintf(f, "%6s\n", "-");
}

static void json_job(struct wf_json *js, const char *key, const struct iopts *o,
		     const struct job *j, const struct wf_lat_summary *rtt)
{
	struct wf_lat_summary s;

	wf_json_obj_begin(js, key);
	wf_json_str(js, "volume", o->volume);
	wf_json_str(js, "transport", o->transport);
	wf_json_str(js, "rw", wf_rw_name(j->rw));
	wf_json_u64(js, "bs", o->bs);
	wf_json_u64(js, "qd", j->qd);
	wf_json_bool(js, "short_circuit", o->short_circuit);
	wf_json_dbl(js, "runtime_s", j->elapsed_s);
	wf_json_u64(js, "ios", j->ios);
	wf_json_u64(js, "reads", j->reads);
	wf_json_u64(js, "writes", j->writes);
	wf_json_u64(js, "verified_reads", j->verified);
	wf_json_dbl(js, "iops", j->iops);
	wf_json_dbl(js, "mbps", j->mbps);
	wf_hist_summary(&j->lat, &s);
	wf_json_lat(js, "", &s);
	if (j->rw == WF_RW_RW) {
		wf_hist_summary(&j->rlat, &s);
		wf_json_obj_begin(js, "read");
		wf_json_lat(js, "", &s);
		wf_json_obj_end(js);
		wf_hist_summary(&j->wlat, &s);
		wf_json_obj_begin(js, "write");
		wf_json_lat(js, "", &s);
		wf_json_obj_end(js);
	}
	if (j->target_cpu_us >= 0)
		wf_json_dbl(js, "target_cpu_us_per_io", j->target_cpu_us);
	else
		wf_json_dbl(js, "target_cpu_us_per_io", 0.0 / 0.0);
	wf_json_u64(js, "target_pids", o->npids);
	wf_per_io_json(js, "per_io", &j->per_io);
	wf_json_dbl(js, "client_cpu_us_per_io", j->client_cpu_us);
	{
		/* weft_wait's polling over the job (docs/performance.md,
		 * "Adaptive polling"): waits that spun per I/O, the share of
		 * them a completion ended, polling time per I/O, and the
		 * latency estimate at the end. */
		uint64_t sp = j->spin1.spins - j->spin0.spins;
		uint64_t ios = j->ios ? j->ios : 1;

		wf_json_obj_begin(js, "spin");
		wf_json_dbl(js, "spins_per_io", (double)sp / (double)ios);
		wf_json_dbl(js, "hit_ratio", sp ? (double)(j->spin1.spin_hits -
				j->spin0.spin_hits) / (double)sp : 0.0);
		wf_json_dbl(js, "us_per_io", (double)(j->spin1.spin_ns -
				j->spin0.spin_ns) / 1e3 / (double)ios);
		wf_json_u64(js, "estimate_us", j->spin1.spin_est_us);
		wf_json_dbl(js, "gaps_per_io", (double)(j->spin1.spin_gaps -
				j->spin0.spin_gaps) / (double)ios);
		wf_json_dbl(js, "skips_per_io", (double)(j->spin1.spin_skips -
				j->spin0.spin_skips) / (double)ios);
		wf_json_dbl(js, "declined_per_io", (double)(j->spin1.spin_declined -
				j->spin0.spin_declined) / (double)ios);
		wf_json_obj_end(js);
	}
	wf_json_obj_begin(js, "floor");
	if (j->have_floor) {
		wf_json_dbl(js, "device_iops", j->dev_iops);
		wf_json_dbl(js, "device_p50_us", j->dev_p50_us);
		wf_json_dbl(js, "device_p99_us", j->dev_p99_us);
		wf_json_dbl(js, "device_iops_before", j->fl[0]->iops);
		wf_json_dbl(js, "device_iops_after", j->fl[1]->iops);
		wf_json_dbl(js, "device_cpu_us_per_io",
			    (j->fl[0]->cpu_us_per_io + j->fl[1]->cpu_us_per_io) / 2);
	}
	if (rtt) {
		wf_json_dbl(js, "rtt_p50_us", rtt->p50_us);
		wf_json_dbl(js, "rtt_p99_us", rtt->p99_us);
	}
	wf_json_obj_end(js);
	wf_json_dbl(js, "ratio_to_floor", j->have_floor ? j->iops / j->dev_iops : 0.0 / 0.0);
	wf_json_dbl(js, "p50_ratio_to_floor",
		    j->have_floor ? s.p50_us / j->dev_p50_us : 0.0 / 0.0);
	wf_json_obj_end(js);
}

/* One figure per job: weft and the raw device on the same axes; randrw's
 * reads and writes apart. */
static void plot_job(const struct iopts *o, const struct job *j)
{
	struct wf_plot_series ser[4];
	char name[64], title[160];
	unsigned n = 0;
	bool rw = j->rw == WF_RW_RW;
	int ret;

	if (rw) {
		ser[n++] = (struct wf_plot_series){ &j->rlat, "weft reads" };
		ser[n++] = (struct wf_plot_series){ &j->wlat, "weft writes" };
	} else {
		ser[n++] = (struct wf_plot_series){ &j->lat, "weft" };
	}
	if (j->have_floor && rw) {
		ser[n++] = (struct wf_plot_series){ &j->fl[0]->read_lat,
						    "raw device reads (io_uring, O_DIRECT)" };
		ser[n++] = (struct wf_plot_series){ &j->fl[0]->write_lat,
						    "raw device writes (io_uring, O_DIRECT)" };
	} else if (j->have_floor) {
		ser[n++] = (struct wf_plot_series){ &j->fl[0]->lat,
						    "raw device (io_uring, O_DIRECT)" };
	}
	snprintf(name, sizeof(name), "weft-%s-qd%u", wf_rw_name(j->rw), j->qd);
	snprintf(title, sizeof(title), "%s %u B, queue depth %u, weft over %s (%s) "
		 "and the raw device", wf_rw_name(j->rw), o->bs, j->qd, o->transport,
		 o->volume);
	ret = wf_plot_series(ser, n, o->plot, name, title);
	if (ret && ret != -ENOENT)
		fprintf(stderr, "weft-bench io: plot %s: %s\n", name, strerror(-ret));
}

/* ---- main -------------------------------------------------------------- */

int bench_io(int argc, char **argv)
{
	struct weft_cluster_opts co = { .size = sizeof(co) };
	struct iopts o;
	struct wset w = { 0 };
	struct job *jobs;
	struct wf_hist *rtt_h = NULL;
	struct wf_lat_summary rtt_s, *rtt = NULL;
	char floor_path[PATH_MAX];
	char *bufs[2 * 1024];
	unsigned njobs, maxqd = FILL_QD;
	double fill_s = 0, verify_s = 0, jobs_s = 0, floor_s = 0, rtt_s_wall = 0;
	uint64_t t_start = wf_now_ns();
	FILE *out;
	int ret;

	ret = parse(argc, argv, &o);
	if (ret)
		return ret;
	out = o.json ? stderr : stdout;
	njobs = o.nrw * o.nqd;
	jobs = calloc(njobs, sizeof(*jobs));
	if (!jobs)
		die("alloc", ENOMEM);
	for (unsigned i = 0; i < o.nqd; i++)
		if (o.qd[i] > maxqd)
			maxqd = o.qd[i];

	co.map_path = o.map;
	co.transport = o.transport;
	co.queue_depth = maxqd;
	/* Deferred sends: the requests armed after a weft_wait leave together
	 * at the next weft_wait (fio does the same with its commit hook). */
	co.flags = (o.short_circuit ? 0 : WEFT_F_NO_SHORT_CIRCUIT) |
		   WEFT_F_DEFER_SEND;
	weft_env_opts(&co, "weft-bench");
	ret = weft_cluster_open(&co, &w.cl);
	if (ret == -ENOENT) {
		fprintf(stderr, "weft-bench io: no map file %s\n", o.map);
		exit(1);
	}
	if (ret)
		die(o.map, ret);
	ret = weft_volume_open(w.cl, o.volume, &w.vol);
	if (ret == -ENOENT) {
		fprintf(stderr, "weft-bench io: no volume '%s' in the map %s "
			"(`weftctl volume list -c %s` lists them)\n", o.volume,
			o.map, o.map);
		exit(1);
	}
	if (ret)
		die(o.volume, ret);
	w.bs = o.bs;
	w.size = o.size ? o.size : (1ull << 30);
	/* The volume's last 4 KiB hold the mark, never the working set. */
	if (weft_volume_size(w.vol) < 2 * WF_IO_MARK_BLOCK)
		die("volume too small for a working set and the mark", EINVAL);
	if (w.size > weft_volume_size(w.vol) - WF_IO_MARK_BLOCK)
		w.size = weft_volume_size(w.vol) - WF_IO_MARK_BLOCK;
	w.size -= w.size % o.bs;
	w.nblocks = w.size / o.bs;
	w.seed = o.seed;
	w.rng = o.seed;
	w.ver = calloc(w.nblocks, sizeof(*w.ver));
	w.busy = calloc(w.nblocks, 1);
	if (!w.nblocks || !w.ver || !w.busy)
		die("working set", w.nblocks ? ENOMEM : EINVAL);
	memset(bufs, 0, sizeof(bufs));
	for (unsigned s = 0; s < maxqd; s++) {
		size_t len = o.bs > FILL_IO ? o.bs : FILL_IO;

		bufs[s] = weft_buf_alloc(w.cl, len);
		if (!bufs[s])
			die("weft_buf_alloc", ENOMEM);
	}

	fprintf(out, "weft-bench io: %s volume %s over %s, working set %llu MiB "
		"(%llu blocks of %u), seed %llu, %u target pid(s)%s\n", o.map,
		o.volume, o.transport, (unsigned long long)(w.size >> 20),
		(unsigned long long)w.nblocks, o.bs, (unsigned long long)o.seed,
		o.npids, o.short_circuit ? ", short-circuit reads allowed" : "");
	ret = wf_io_mark_check(w.vol, o.volume, w.size, o.overwrite, bufs[0]);
	if (ret < 0)
		die("reading the volume's mark", ret);
	if (ret)
		exit(1);
	fprintf(stderr, "weft-bench io: writes the working set: bytes 0 .. %llu "
		"of volume %s are replaced (the mark in its last 4 KiB says "
		"weft-bench wrote them)\n", (unsigned long long)w.size, o.volume);
	if (!o.verify_only)
		fprintf(stderr, "weft-bench io: plan: prefill %llu MiB, %u job(s) "
			"of %.1f s%s, then the read-back of all of it: about %.0f s "
			"of timed runs, plus the prefill and the read-back at the "
			"volume's speed%s\n", (unsigned long long)(w.size >> 20),
			njobs, o.runtime, o.floor ? " each between two device-floor "
			"runs of the same length" : "",
			njobs * o.runtime * (o.floor ? 3 : 1) + (o.floor ? 1 : 0),
			o.floor ? " and the floor file's layout (once per size)" : "");
	ret = wf_io_mark_write(w.vol, o.volume, o.seed, w.size, bufs[0]);
	if (ret)
		die("writing the volume's mark", ret);
	ret = pass(&w, true, bufs, &fill_s);
	if (ret)
		die("prefill", ret);
	fprintf(out, "prefill: %llu MiB written in %.2f s (%.0f MB/s)\n",
		(unsigned long long)(w.size >> 20), fill_s, w.size / fill_s / 1e6);
	if (o.verify_only) {
		ret = pass(&w, false, bufs, &verify_s);
		if (ret)
			die("verify", ret);
		fprintf(out, "verify: %llu MiB read back and checked in %.2f s: OK\n",
			(unsigned long long)(w.size >> 20), verify_s);
		if (o.json) {
			struct wf_json js;

			wf_json_init(&js, stdout, true);
			wf_json_obj_begin(&js, NULL);
			wf_json_u64(&js, "bytes", w.size);
			wf_json_dbl(&js, "write_s", fill_s);
			wf_json_dbl(&js, "verify_s", verify_s);
			wf_json_bool(&js, "ok", true);
			wf_json_obj_end(&js);
			wf_json_finish(&js);
		}
		goto done;
	}

	if (o.floor) {
		uint64_t t = wf_now_ns();

		rtt_h = malloc(sizeof(*rtt_h));
		if (!rtt_h)
			die("alloc", ENOMEM);
		ret = wf_io_rtt_floor(o.transport, o.bs, rtt_h);
		rtt_s_wall = (double)(wf_now_ns() - t) / 1e9;
		if (ret) {
			fprintf(stderr, "weft-bench io: round-trip floor failed: %s\n",
				strerror(-ret));
		} else {
			wf_hist_summary(rtt_h, &rtt_s);
			rtt = &rtt_s;
			fprintf(out, "transport round trip (%s, %u B write + request/"
				"reply): p50 %.1f us, p99 %.1f us\n", o.transport,
				o.bs, rtt_s.p50_us, rtt_s.p99_us);
		}
		if (o.floor_file)
			snprintf(floor_path, sizeof(floor_path), "%s", o.floor_file);
		else
			default_floor_file(&o, floor_path, sizeof(floor_path));
		fprintf(out, "device floor: %s (%llu MiB, laid out once)\n",
			floor_path, (unsigned long long)(w.size >> 20));
	}

	if (o.instr) {
		/* The targets' instructions while idle, for scale: a window
		 * of 2 s without I/O. */
		uint64_t c, t0, t1, ns;

		ret = wf_instr_mark(o.instr, o.map, o.pids, o.npids, &c, &t0);
		ns = wf_now_ns();
		if (!ret) {
			wf_sleep_ms(2000);
			ns = wf_now_ns() - ns;
			ret = wf_instr_mark(o.instr, o.map, o.pids, o.npids, &c, &t1);
		}
		if (ret) {
			fprintf(stderr, "weft-bench io: --instructions %s: no callgrind "
				"dumps for this process and %u target(s): run it "
				"through bench/count-instructions\n", o.instr, o.npids);
			exit(1);
		}
		o.idle_per_s = (double)t1 / ((double)ns / 1e9);
		fprintf(out, "targets idle under callgrind: %.0f instructions per s\n",
			o.idle_per_s);
	}
	for (unsigned i = 0; i < njobs; i++) {
		struct job *j = &jobs[i];
		uint64_t t;

		j->rw = o.rw[i / o.nqd];
		j->qd = o.qd[i % o.nqd];
		if (o.floor) {
			t = wf_now_ns();
			ret = run_floor(&o, floor_path, w.size, j, 0);
			if (ret)
				die("device floor", ret);
			floor_s += (double)(wf_now_ns() - t) / 1e9;
		}
		t = wf_now_ns();
		ret = run_job(&o, &w, bufs, j);
		if (ret)
			die(wf_rw_name(j->rw), ret);
		jobs_s += (double)(wf_now_ns() - t) / 1e9;
		if (o.floor) {
			t = wf_now_ns();
			ret = run_floor(&o, floor_path, w.size, j, 1);
			if (ret)
				die("device floor", ret);
			floor_s += (double)(wf_now_ns() - t) / 1e9;
			j->have_floor = true;
			j->dev_iops = (j->fl[0]->iops + j->fl[1]->iops) / 2;
			j->dev_p50_us = (wf_hist_percentile(&j->fl[0]->lat, 50) +
					 wf_hist_percentile(&j->fl[1]->lat, 50)) / 2e3;
			j->dev_p99_us = (wf_hist_percentile(&j->fl[0]->lat, 99) +
					 wf_hist_percentile(&j->fl[1]->lat, 99)) / 2e3;
		}
		if (i == 0)
			print_header(out);
		print_job(out, j, rtt);
		wf_per_io_print(out, &j->per_io);
		fflush(out);
		if (o.plot)
			plot_job(&o, j);
	}

	ret = pass(&w, false, bufs, &verify_s);
	if (ret)
		die("final verify", ret);
	fprintf(out, "verify: the whole working set (%llu MiB) read back and "
		"checked in %.2f s: OK\n", (unsigned long long)(w.size >> 20),
		verify_s);
	fprintf(out, "time: prefill %.1f s, jobs %.1f s, device floors %.1f s "
		"(with the layout), round trip %.1f s, verify %.1f s; %.1f s in "
		"all\n", fill_s, jobs_s, floor_s, rtt_s_wall, verify_s,
		(double)(wf_now_ns() - t_start) / 1e9);
	fprintf(out, "(latency in us; tgtCPU/cliCPU: CPU us per I/O of the "
		"targets/this process; ratio: IOPS / raw device IOPS)\n");
	if (o.plot)
		fprintf(out, "plots: %s/weft-*-cdf.svg, *-hist.svg (weft and the "
			"raw device on the same axes)\n", o.plot);

	if (o.json) {
		struct wf_json js;

		wf_json_init(&js, stdout, true);
		if (njobs == 1) {
			json_job(&js, NULL, &o, &jobs[0], rtt);
		} else {
			wf_json_obj_begin(&js, NULL);
			wf_json_arr_begin(&js, "runs");
			for (unsigned i = 0; i < njobs; i++)
				json_job(&js, NULL, &o, &jobs[i], rtt);
			wf_json_arr_end(&js);
			wf_json_obj_end(&js);
		}
		if (wf_json_finish(&js))
			die("stdout", EIO);
	}
done:
	for (unsigned s = 0; s < maxqd; s++)
		weft_buf_free(w.cl, bufs[s]);
	weft_volume_close(w.vol);
	weft_cluster_close(w.cl);
	for (unsigned i = 0; i < njobs; i++) {
		free(jobs[i].fl[0]);
		free(jobs[i].fl[1]);
	}
	free(jobs);
	free(rtt_h);
	free(w.ver);
	free(w.busy);
	return 0;
}
