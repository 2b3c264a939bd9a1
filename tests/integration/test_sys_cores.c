/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-target --cores N from libweft: two targets (one store each) with
 * 2 or 3 reactors, a 1-replica pool of 64 PGs over both, 64 KiB extents so
 * that a small volume has many extents and writes cross their boundaries.
 *  - several cluster handles (threads) write at once into blocks that
 *    share extents, so new extents are allocated concurrently through
 *    different connections and reactors; everything reads back, through
 *    the targets and by short-circuit reads of the shared index view, the
 *    targets' used-extent counts match the extents written, and every
 *    reactor served reads;
 *  - kill -9 in the middle of a write stream, restart, every acknowledged
 *    write reads back (repeated);
 *  - SIGTERM with writes in flight on every reactor: the target drains
 *    and exits, leaves no socket behind, and what was acknowledged is
 *    there after a restart.
 * The cluster is started here (not by scripts/cluster, whose consecutive
 * ports leave no room for reactor k's port + k).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "bench/pattern.h"
#include "proto/ctl.h"
#include "initiator/include/weft_env.h"
#include "tests/integration/sys.h"

#define NT        2u                    /* targets */
#define PORT_GAP  16u                   /* target k at base + 16 k */
#define EXT       (64u * 1024)
#define BPE       (EXT / SYS_BS)        /* 16 blocks per extent */
#define VOL_SIZE  (64ull << 20)         /* 1024 extents */
#define NBLK      (VOL_SIZE / SYS_BS)

struct cores_env {
	char dir[128], map[192], run[192], bin[256];
	unsigned base, cores;
};

static struct cores_env E;

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static bool port_free(unsigned port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && !bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (fd >= 0)
		close(fd);
	return ok;
}

/* NT * PORT_GAP free ports below the ephemeral range. */
static unsigned free_base(void)
{
	for (unsigned tries = 0; tries < 200; tries++) {
		unsigned base = 20000 + (unsigned)((getpid() * 7919u + tries * 104729u) %
						   10000u);
		bool ok = true;

		for (unsigned p = 0; ok && p < NT * PORT_GAP; p++)
			ok = port_free(base + p);
		if (ok)
			return base;
	}
	cr_assert_fail("no free ports");
	return 0;
}

static pid_t target_pid(unsigned id)
{
	return sys_pid_in(E.dir, id);
}

static void target_start(unsigned id)
{
	int st = sys_sh("'%s/weft-target' -c '%s' --id %u --run-dir '%s' "
			"--pid-file '%s/target-%u.pid' --cores %u --cache none",
			E.bin, E.map, id, E.run, E.dir, id, E.cores);

	cr_assert_eq(st, 0, "starting target %u with %u reactors failed", id,
		     E.cores);
}

static bool gone(pid_t pid)
{
	char path[64], st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return true;
	if (fscanf(f, "%*d %*s %c", &st) != 1)
		st = 0;
	fclose(f);
	return st == 'Z' || st == 'X';
}

/* Send sig to target id and wait (bounded) until the process is gone. */
static void target_kill(unsigned id, int sig, unsigned ms)
{
	pid_t pid = target_pid(id);
	char path[256];

	cr_assert(pid > 0, "no pid for target %u", id);
	cr_assert_eq(kill(pid, sig), 0);
	for (unsigned i = 0; i < ms / 10 && !gone(pid); i++)
		sleep_ms(10);
	if (!gone(pid)) {
		/* A test's failure must not leave a daemon behind. */
		kill(pid, SIGKILL);
		for (unsigned i = 0; i < 200 && !gone(pid); i++)
			sleep_ms(10);
		cr_assert_fail("target %u still there %u ms after signal %d "
			       "(SIGKILLed)", id, ms, sig);
	}
	snprintf(path, sizeof(path), "%s/target-%u.pid", E.dir, id);
	unlink(path);
}

static void setup(unsigned cores)
{
	const char *bin = getenv("WEFT_BIN");
	FILE *f;

	cr_assert(bin, "WEFT_BIN must be set (run through ctest)");
	memset(&E, 0, sizeof(E));
	snprintf(E.bin, sizeof(E.bin), "%s", bin);
	snprintf(E.dir, sizeof(E.dir), "/var/tmp/weft-cores-XXXXXX");
	cr_assert(mkdtemp(E.dir));
	snprintf(E.map, sizeof(E.map), "%s/map.conf", E.dir);
	snprintf(E.run, sizeof(E.run), "%s/run", E.dir);
	cr_assert_eq(sys_sh("mkdir -p '%s' && truncate -s 96M '%s/dev0' '%s/dev1'",
			    E.run, E.dir, E.dir), 0);
	E.base = free_base();
	E.cores = cores;
	f = fopen(E.map, "w");
	cr_assert(f);
	fprintf(f, "epoch = 1;\ncluster_id = 9;\nextent_size = %u;\ntargets = (\n", EXT);
	for (unsigned t = 0; t < NT; t++)
		fprintf(f, "  { id = %u; host = \"h%u\"; addr = \"127.0.0.1\"; "
			"port = %u; device = \"%s/dev%u\"; }%s\n", t, t,
			E.base + t * PORT_GAP, E.dir, t, t + 1 < NT ? "," : "");
	fprintf(f, ");\npools = ( { name = \"p\"; id = 1; replicas = 1; "
		"min_size = 1; failure_domain = \"device\"; pg_num = 64; } );\n"
		"volumes = ( { name = \"v\"; id = 3; size = %llu; pool = \"p\"; } );\n",
		(unsigned long long)VOL_SIZE);
	cr_assert_eq(fclose(f), 0);
	for (unsigned t = 0; t < NT; t++) {
		cr_assert_eq(sys_sh("'%s/weft-target' -c '%s' --id %u --format "
				    ">/dev/null", E.bin, E.map, t), 0);
		target_start(t);
	}
	setenv("WEFT_RUN_DIR", E.run, 1);
}

/* Each test's .fini: also after a failed assertion, so no daemon stays. */
static void teardown(void)
{
	bool bad = false;

	if (!E.dir[0])
		return;
	for (unsigned t = 0; t < NT; t++) {
		pid_t pid = target_pid(t);

		if (pid > 0 && !gone(pid))
			target_kill(t, SIGTERM, 20000);
	}
	/* Sanitizer reports of the daemons land in their logs. */
	for (unsigned t = 0; t < NT; t++)
		if (sys_sh("grep -qE 'ERROR: AddressSanitizer|runtime error:|"
			   "ERROR: LeakSanitizer' '%s/target-%u.log' 2>/dev/null",
			   E.run, t) == 0) {
			sys_sh("cat '%s/target-%u.log' >&2", E.run, t);
			bad = true;
		}
	if (!bad)
		sys_sh("rm -rf '%s'", E.dir);
	cr_assert(!bad, "a target's log has sanitizer reports");
}

static void open_cl_sc(unsigned qd, unsigned timeout_ms, bool sc,
		       struct weft_cluster **cl, struct weft_volume **vol)
{
	struct weft_cluster_opts o = { .size = sizeof(o) };
	int ret;

	o.map_path = E.map;
	o.transport = "tcp";
	o.queue_depth = qd;
	o.timeout_ms = timeout_ms;
	o.flags = sc ? 0 : WEFT_F_NO_SHORT_CIRCUIT;
	weft_env_opts(&o, "test");
	ret = weft_cluster_open(&o, cl);
	cr_assert_eq(ret, 0, "weft_cluster_open: %s", weft_strerror(ret));
	ret = weft_volume_open(*cl, "v", vol);
	cr_assert_eq(ret, 0, "weft_volume_open: %s", weft_strerror(ret));
}

static void open_cl(unsigned qd, unsigned timeout_ms, struct weft_cluster **cl,
		    struct weft_volume **vol)
{
	open_cl_sc(qd, timeout_ms, false, cl, vol);
}

/* STATUS of target id, from its control socket. */
static struct wf_ctl_status ctl_status(unsigned id)
{
	return sys_ctl_status(E.run, id);
}

/* Used extents of target id (the store's shared allocator). */
static uint64_t used_extents(unsigned id)
{
	struct wf_ctl_status s = ctl_status(id);

	cr_assert_eq(le64toh(s.used) + le64toh(s.free), le64toh(s.extents));
	return le64toh(s.used);
}

static uint64_t target_reads(void)
{
	uint64_t n = 0;

	for (unsigned t = 0; t < NT; t++)
		n += le64toh(ctl_status(t).reads);
	return n;
}

/* ---- several handles at once ------------------------------------------ */

/*
 * Block b belongs to writer ((b + 2) / 4) % NW: 4-block stripes that start
 * 2 blocks before an extent boundary, so a stripe write crosses it, and
 * every extent is shared by several writers.
 */
#define NW        3u
#define WQD       32u
#define OWNER(b)  ((unsigned)(((b) + 2) / 4 % NW))

struct writer {
	unsigned idx;
	uint64_t *ver;                  /* shared array, own blocks only */
	uint64_t rng, writes, bytes;
	char     why[200];
};

static uint64_t wrnd(struct writer *w)
{
	w->rng += 0x9e3779b97f4a7c15ull;
	return wf_mix64(w->rng);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct weft_cluster *cl;
	struct weft_volume *vol;
	struct weft_cqe cq[WQD];
	char *buf[WQD];
	uint64_t first[WQD], nb[WQD], sent = 0;
	bool inf[WQD] = { false };
	uint8_t *busy = calloc(NBLK / 4 + 1, 1);
	unsigned out = 0;
	/* Every stripe of ours once (allocating extents everywhere), in a
	 * shuffled order, then random overwrites. */
	uint64_t nstripes = NBLK / 4, total = nstripes / NW + 2000;

	open_cl(WQD, 20000, &cl, &vol);
	for (unsigned i = 0; i < WQD; i++) {
		buf[i] = weft_buf_alloc(cl, 4 * SYS_BS);
		cr_assert(buf[i]);
	}
	cr_assert(busy);
	while (sent < total || out) {
		int n;

		for (unsigned i = 0; i < WQD && sent < total; i++) {
			uint64_t s, b0, k;
			int ret;

			if (inf[i])
				continue;
			/* a stripe of ours (stripe s covers blocks 4s-2 .. 4s+1) */
			do
				s = wrnd(w) % nstripes;
			while (s % NW != w->idx || s == 0 || busy[s]);
			b0 = 4 * s - 2;
			k = 1 + wrnd(w) % 4;    /* 1..4 blocks from the start */
			for (uint64_t j = 0; j < k; j++)
				sys_fill(buf[i] + j * SYS_BS, (b0 + j) * SYS_BS,
					 ++w->ver[b0 + j] | (uint64_t)w->idx << 32);
			first[i] = b0;
			nb[i] = k;
			inf[i] = true;
			ret = weft_write(vol, buf[i], k * SYS_BS, b0 * SYS_BS, 0, i);
			cr_assert_eq(ret, 0, "weft_write: %s", weft_strerror(ret));
			busy[s] = 1;
			out++;
			sent++;
			w->bytes += k * SYS_BS;
		}
		n = weft_wait(cl, cq, 1, WQD, 1000);
		cr_assert(n >= 0, "weft_wait: %s", weft_strerror(n));
		for (int j = 0; j < n; j++) {
			unsigned i = (unsigned)cq[j].user_data;

			cr_assert_eq(cq[j].res, (int64_t)(nb[i] * SYS_BS),
				     "writer %u: write at block %llu: %s", w->idx,
				     (unsigned long long)first[i],
				     weft_strerror((int)cq[j].res));
			busy[(first[i] + 2) / 4] = 0;
			inf[i] = false;
			out--;
			w->writes++;
		}
	}
	for (unsigned i = 0; i < WQD; i++)
		weft_buf_free(cl, buf[i]);
	free(busy);
	weft_cluster_close(cl);
	return NULL;
}

/* sc: short-circuit reads allowed (both targets are on loopback): they
 * read the store's shared index view that every reactor updated. */
/* The counts of target t's reactor k in its log's last "stopped" line. */
static void last_stop_line(unsigned t, unsigned k, unsigned long long *reads,
			   unsigned long long *handed)
{
	char path[256], line[512], pat[32];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "%s/target-%u.log", E.run, t);
	snprintf(pat, sizeof(pat), "reactor %u stopped: ", k);
	f = fopen(path, "r");
	cr_assert(f, "%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, pat), *h;

		if (!p || !(h = strstr(p, " handed to")))
			continue;
		while (h > p && h[-1] != ' ')
			h--;
		found = sscanf(p + strlen(pat), "%llu reads", reads) == 1 &&
			sscanf(h, "%llu", handed) == 1;
	}
	fclose(f);
	cr_assert(found, "%s: no stop line of reactor %u", path, k);
}

static void verify_all(const uint64_t *ver, const char *when, bool sc)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *buf;

	open_cl_sc(8, 20000, sc, &cl, &vol);
	buf = weft_buf_alloc(cl, EXT);
	cr_assert(buf);
	for (uint64_t e = 0; e < VOL_SIZE / EXT; e++) {
		/* Whole extents: also reads that the target splits nowhere. */
		ssize_t r = weft_pread(vol, buf, EXT, e * EXT);

		cr_assert_eq(r, (ssize_t)EXT, "%s: read extent %llu: %s", when,
			     (unsigned long long)e, weft_strerror((int)r));
		for (uint64_t b = e * BPE; b < (e + 1) * BPE; b++) {
			int64_t got = sys_decode(buf + (b - e * BPE) * SYS_BS,
						 b * SYS_BS);
			uint64_t want = ver[b] ? ver[b] | (uint64_t)OWNER(b) << 32 : 0;

			cr_assert_eq(got, (int64_t)want, "%s: block %llu holds "
				     "version %llx, expected %llx", when,
				     (unsigned long long)b, (long long)got,
				     (unsigned long long)want);
		}
	}
	weft_buf_free(cl, buf);
	weft_cluster_close(cl);
}

static void concurrent_handles(unsigned cores)
{
	static uint64_t ver[NBLK];
	struct writer w[NW];
	pthread_t th[NW];
	uint64_t used = 0, want = 0, reads;

	setup(cores);
	memset(ver, 0, sizeof(ver));
	for (unsigned i = 0; i < NW; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].idx = i;
		w[i].ver = ver;
		w[i].rng = (uint64_t)getpid() * 31 + i;
		cr_assert_eq(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
	}
	for (unsigned i = 0; i < NW; i++)
		pthread_join(th[i], NULL);
	verify_all(ver, "after concurrent writers", false);
	reads = target_reads();
	verify_all(ver, "short-circuit, after concurrent writers", true);
	reads = target_reads() - reads;
	fprintf(stderr, "  short-circuit pass: %llu of %llu extent reads through "
		"the targets\n", (unsigned long long)reads,
		(unsigned long long)(VOL_SIZE / EXT));
	cr_assert(reads < VOL_SIZE / EXT, "no read took the short circuit");
	/* The allocator counted each written extent once, on one target. */
	for (uint64_t e = 0; e < VOL_SIZE / EXT; e++)
		for (uint64_t b = e * BPE; b < (e + 1) * BPE; b++)
			if (ver[b]) {
				want++;
				break;
			}
	for (unsigned t = 0; t < NT; t++)
		used += used_extents(t);
	cr_assert_eq(used, want, "targets report %llu used extents, %llu written",
		     (unsigned long long)used, (unsigned long long)want);
	/* The same after a restart of both (index persisted by any reactor). */
	for (unsigned t = 0; t < NT; t++) {
		target_kill(t, SIGKILL, 5000);
		target_start(t);
	}
	verify_all(ver, "after kill -9 of both targets", false);
	/* libweft spread the reads over every reactor, each to the reactor
	 * that owns its extent (each reactor logs its counts when it stops;
	 * the few handed over are reads sent before reactor 0's GRANT). */
	for (unsigned t = 0; t < NT; t++) {
		target_kill(t, SIGTERM, 20000);
		for (unsigned k = 0; k < cores; k++) {
			unsigned long long nr, handed;

			last_stop_line(t, k, &nr, &handed);
			cr_assert(nr > 0, "target %u: reactor %u served no read", t, k);
			cr_assert(handed * 10 < nr, "target %u: reactor %u handed "
				  "%llu of %llu requests to other reactors", t, k,
				  handed, nr);
		}
	}
	fprintf(stderr, "  %u reactors: %llu + %llu + %llu writes by 3 handles, "
		"%llu extents\n", cores, (unsigned long long)w[0].writes,
		(unsigned long long)w[1].writes, (unsigned long long)w[2].writes,
		(unsigned long long)want);
}

Test(sys_cores, two_reactors_concurrent_handles, .fini = teardown, .timeout = 180)
{
	concurrent_handles(2);
}

Test(sys_cores, three_reactors_concurrent_handles, .fini = teardown, .timeout = 180)
{
	concurrent_handles(3);
}

/* ---- kill -9 and SIGTERM during writes ------------------------------- */

#define SQD 32u

static uint64_t blk_off(uint32_t b)
{
	return (uint64_t)b * SYS_BS;
}

struct fault {
	unsigned victim;
	int sig;
};

/* Signal the victim (SIGKILL: then start it again at once; SIGTERM: wait
 * for its exit, then start it). */
static void signal_victim(void *arg)
{
	const struct fault *f = arg;
	char path[256];

	target_kill(f->victim, f->sig, 20000);
	if (f->sig == SIGTERM) {
		/* drained: every socket of every reactor gone */
		snprintf(path, sizeof(path), "%s/target-%u.ctl", E.run, f->victim);
		cr_assert_neq(access(path, F_OK), 0, "%s left", path);
		for (unsigned k = 0; k < E.cores; k++) {
			if (k)
				snprintf(path, sizeof(path), "%s/target-%u.sock.%u",
					 E.run, f->victim, k);
			else
				snprintf(path, sizeof(path), "%s/target-%u.sock",
					 E.run, f->victim);
			cr_assert_neq(access(path, F_OK), 0, "%s left behind", path);
		}
		cr_assert_eq(sys_sh("grep -q 'exit$' '%s/target-%u.log'", E.run,
				    f->victim), 0,
			     "target %u did not log its exit", f->victim);
	}
	target_start(f->victim);
}

Test(sys_cores, kill9_and_sigterm_during_writes, .fini = teardown, .timeout = 300)
{
	struct sys_stream s;
	const char *e = getenv("WEFT_CRASH_ITERS");
	unsigned rounds = e ? (unsigned)atoi(e) : 4;

	setup(3);
	sys_stream_init(&s, NBLK, blk_off);
	for (unsigned r = 0; r < rounds; r++) {
		struct fault f = { .victim = r % NT, .sig = r % 2 ? SIGTERM : SIGKILL };
		/* Writes at SQD, the signal after 100-300 ms; whole extents
		 * read back. */
		struct sys_stream_opts o = {
			.open = open_cl, .qd = SQD, .timeout_ms = 15000,
			.act_ms = 100 + (unsigned)(sys_stream_rnd(&s) % 200),
			.give_up_ms = 60000, .act = signal_victim, .arg = &f,
			.verify_timeout_ms = 20000, .verify_run = BPE,
		};

		sys_stream_round(&s, &o, r);
	}
	fprintf(stderr, "  %u rounds (kill -9 / SIGTERM, 3 reactors): %llu writes "
		"acknowledged and verified, %llu failed\n", rounds,
		(unsigned long long)s.acks, (unsigned long long)s.fails);
	sys_stream_free(&s);
}

/* One handle stays open while both targets restart with another reactor
 * count (3 -> 1 -> 2): its reactor connections are dropped or made anew
 * from the new GRANTs, and every write lands. */
Test(sys_cores, reactor_count_changes_under_an_open_handle, .fini = teardown, .timeout = 180)
{
	static const unsigned counts[] = { 1, 2 };
	static uint64_t ver[NBLK];
	struct weft_cluster *cl;
	struct weft_volume *vol;
	uint64_t rng = (uint64_t)getpid(), n = 0;
	char *buf;

	setup(3);
	memset(ver, 0, sizeof(ver));
	open_cl(8, 20000, &cl, &vol);
	buf = weft_buf_alloc(cl, SYS_BS);
	cr_assert(buf);
	for (unsigned round = 0; round <= 2; round++) {
		for (unsigned i = 0; i < 400; i++) {
			uint64_t b;
			ssize_t r;

			rng += 0x9e3779b97f4a7c15ull;
			b = wf_mix64(rng) % NBLK;
			/* the owner tag verify_all expects */
			sys_fill(buf, b * SYS_BS, ++ver[b] | (uint64_t)OWNER(b) << 32);
			r = weft_pwrite(vol, buf, SYS_BS, b * SYS_BS, 0);
			cr_assert_eq(r, (ssize_t)SYS_BS, "round %u: write: %s", round,
				     weft_strerror((int)r));
			n++;
		}
		if (round == 2)
			break;
		E.cores = counts[round];
		for (unsigned t = 0; t < NT; t++) {
			target_kill(t, round ? SIGTERM : SIGKILL, 20000);
			target_start(t);
		}
	}
	weft_buf_free(cl, buf);
	weft_cluster_close(cl);
	verify_all(ver, "after reactor count changes", false);
	fprintf(stderr, "  %llu writes across 3 -> 1 -> 2 reactors\n",
		(unsigned long long)n);
}
