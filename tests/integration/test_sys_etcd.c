/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control plane on a real etcd (docs/control-plane.md): three targets
 * started with --etcd by scripts/cluster (a private etcd on loopback, the
 * map imported into it).  A map change in etcd reaches every target and
 * its map file; each target holds a lease and its registration goes when
 * it dies; with etcd killed the data path goes on and the status says so,
 * and when etcd returns the targets take the changes made meanwhile; a
 * target started while etcd is down starts on its map file.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "ctlplane/etcd.h"
#include "placement/map.h"
#include "proto/ctl.h"
#include "tests/integration/sys.h"
#include "weft_env.h"

static struct sys_cluster C;

static void up(void)
{
	setenv("WEFT_SYS_ETCD", "1", 1);
	sys_start(&C);
}

static void keepers_stop(void);

static void down(void)
{
	keepers_stop();
	sys_stop(&C);
	unsetenv("WEFT_SYS_ETCD");
}

TestSuite(sys_etcd, .init = up, .fini = down, .timeout = 300);

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap(unsigned ms)
{
	nanosleep(&(struct timespec){ ms / 1000, (long)(ms % 1000) * 1000000 }, NULL);
}

/* The cluster's map with epoch + 1 and target `down` marked down, put in
 * etcd by `weftctl map import`. */
static uint64_t import_next(unsigned down_id)
{
	struct wf_map m;
	struct wf_map_err err;
	char path[400];
	uint64_t e;

	snprintf(path, sizeof(path), "%s/next.conf", C.dir);
	cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
	m.epoch++;
	e = m.epoch;
	m.targets[down_id].up = false;
	cr_assert_eq(wf_map_save(&m, path, &err), 0, "%s", err.msg);
	wf_map_free(&m);
	cr_assert_eq(sys_sh("'%s/weftctl' map import -c '%s' --etcd %s >/dev/null",
			    C.bin, path, C.etcd), 0, "import failed");
	return e;
}

/* Wait (bounded) until every target serves epoch e; the ms it took. */
static int64_t wait_epoch(uint64_t e, unsigned mask)
{
	int64_t t0 = now_ms();

	for (;;) {
		unsigned ok = 0;

		for (unsigned t = 0; t < SYS_TARGETS; t++)
			ok += !((mask >> t) & 1) ||
			      le64toh(sys_ctl_status(C.run, t).epoch) >= e;
		if (ok == SYS_TARGETS)
			return now_ms() - t0;
		cr_assert_lt(now_ms() - t0, 15000, "epoch %llu not served in 15 s",
			     (unsigned long long)e);
		nap(20);
	}
}

Test(sys_etcd, a_map_change_in_etcd_reaches_every_target)
{
	struct wf_map m;
	struct wf_map_err err;
	int64_t ms;
	uint64_t e = import_next(1);

	ms = wait_epoch(e, 7);
	fprintf(stderr, "  epoch %llu served by every target %lld ms after the "
		"import\n", (unsigned long long)e, (long long)ms);
	/* Saved as their map file (the one the clients of this host read). */
	cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m.epoch, e);
	cr_assert(!m.targets[1].up);
	wf_map_free(&m);
	for (unsigned t = 0; t < SYS_TARGETS; t++)
		cr_assert_eq(le32toh(sys_ctl_status(C.run, t).etcd), WF_CTL_ETCD_OK);
	/* And I/O goes on in the new epoch. */
	{
		struct weft_cluster *cl;
		struct weft_volume *vol;
		char *buf = aligned_alloc(4096, SYS_BS);

		sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 5000, &cl, &vol, "vol3");
		for (uint64_t off = 0; off < 8 * SYS_EXT; off += SYS_EXT) {
			sys_fill(buf, off, 5);
			cr_assert_eq(weft_pwrite(vol, buf, SYS_BS, off, 0), SYS_BS);
			cr_assert_eq(weft_pread(vol, buf, SYS_BS, off), SYS_BS);
			cr_assert_eq(sys_decode(buf, off), 5);
		}
		weft_cluster_close(cl);
		free(buf);
	}
}

static int registered(struct wf_etcd *e, unsigned id)
{
	struct wf_etcd_kv kv;
	char key[64];
	int ret;

	snprintf(key, sizeof(key), "/weft/targets/%u", id);
	ret = wf_etcd_get(e, key, &kv, NULL);
	if (!ret) {
		cr_assert(kv.lease != 0, "registration without a lease");
		wf_etcd_kv_free(&kv);
	}
	return ret;
}

Test(sys_etcd, a_dead_target_s_registration_goes_with_its_lease)
{
	struct wf_etcd *e;
	int64_t t0;

	cr_assert_eq(wf_etcd_open(C.etcd, 2000, &e), 0);
	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		t0 = now_ms();
		while (registered(e, t) == -ENOENT && now_ms() - t0 < 5000)
			nap(50);
		cr_assert_eq(registered(e, t), 0, "target %u not registered", t);
	}
	sys_kill9(&C, 2);
	t0 = now_ms();
	while (registered(e, 2) == 0 && now_ms() - t0 < 20000)
		nap(100);
	cr_assert_eq(registered(e, 2), -ENOENT, "registration outlived its lease");
	fprintf(stderr, "  target 2 killed: its registration went after %lld ms "
		"(lease 5 s)\n", (long long)(now_ms() - t0));
	cr_assert_eq(registered(e, 0), 0, "a live target lost its registration");
	/* Restarted, it registers again. */
	sys_restart(&C, 2);
	t0 = now_ms();
	while (registered(e, 2) == -ENOENT && now_ms() - t0 < 10000)
		nap(50);
	cr_assert_eq(registered(e, 2), 0);
	wf_etcd_close(e);
}

Test(sys_etcd, without_etcd_the_data_path_goes_on)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *buf = aligned_alloc(4096, SYS_BS);
	char edir[400];
	uint64_t e;
	int64_t t0;

	snprintf(edir, sizeof(edir), "%s/etcd", C.dir);
	cr_assert_eq(sys_sh("'%s/scripts/etcd' stop '%s'", C.src, edir), 0);
	/* Every target notices and says so; I/O goes on. */
	t0 = now_ms();
	for (unsigned t = 0; t < SYS_TARGETS; t++)
		while (le32toh(sys_ctl_status(C.run, t).etcd) != WF_CTL_ETCD_UNREACHABLE)
			{
				cr_assert_lt(now_ms() - t0, 15000, "target %u did not "
					     "notice etcd is gone", t);
				nap(50);
			}
	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 5000, &cl, &vol, "vol3");
	for (uint64_t off = 0; off < 8 * SYS_EXT; off += SYS_EXT) {
		sys_fill(buf, off, 6);
		cr_assert_eq(weft_pwrite(vol, buf, SYS_BS, off, 0), SYS_BS);
	}
	/* A target restarted meanwhile starts on its map file. */
	sys_kill9(&C, 1);
	sys_restart(&C, 1);
	for (uint64_t off = 0; off < 8 * SYS_EXT; off += SYS_EXT) {
		cr_assert_eq(weft_pread(vol, buf, SYS_BS, off), SYS_BS);
		cr_assert_eq(sys_decode(buf, off), 6);
	}
	weft_cluster_close(cl);
	/* etcd back (same address): a change made there reaches everyone. */
	cr_assert_eq(sys_sh("'%s/scripts/etcd' start '%s' >/dev/null", C.src, edir), 0);
	e = import_next(2);
	wait_epoch(e, 7);
	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		t0 = now_ms();
		while (le32toh(sys_ctl_status(C.run, t).etcd) != WF_CTL_ETCD_OK) {
			cr_assert_lt(now_ms() - t0, 15000, "target %u: etcd not back", t);
			nap(50);
		}
	}
	free(buf);
}

/* ---- weftctl --etcd, the keeper ---------------------------------------- */

static pid_t keepers[4];

/* weftctl keeper in the background, its lines in C.dir/keeper-N.log. */
static pid_t keeper_start(unsigned n)
{
	char log[400];
	pid_t pid;

	snprintf(log, sizeof(log), "%s/keeper-%u.log", C.dir, n);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (!pid) {
		char bin[300];
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		snprintf(bin, sizeof(bin), "%s/weftctl", C.bin);
		execl(bin, bin, "keeper", "--etcd", C.etcd, "--run-dir", C.run,
		      "--out-after", "0", (char *)NULL);
		_exit(127);
	}
	keepers[n] = pid;
	return pid;
}

static void keepers_stop(void)
{
	for (unsigned i = 0; i < 4; i++)
		if (keepers[i] > 0) {
			kill(keepers[i], SIGTERM);
			waitpid(keepers[i], NULL, 0);
			keepers[i] = 0;
		}
}

/* Lines of keeper n's log containing what. */
static int keeper_said(unsigned n, const char *what)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "exit $(grep -c '%s' '%s/keeper-%u.log')", what,
		 C.dir, n);
	return sys_sh("%s", cmd);
}

/* The map in etcd, parsed (asserts). */
static void etcd_map(struct wf_map *m)
{
	struct wf_etcd *e;
	struct wf_etcd_kv kv;
	struct wf_map_err err;

	cr_assert_eq(wf_etcd_open(C.etcd, 2000, &e), 0);
	cr_assert_eq(wf_etcd_get(e, "/weft/map", &kv, NULL), 0, "%s", wf_etcd_error(e));
	cr_assert_eq(wf_map_load_buf(kv.value, kv.len, "etcd", m, &err), 0, "%s", err.msg);
	wf_etcd_kv_free(&kv);
	wf_etcd_close(e);
}

Test(sys_etcd, weftctl_changes_the_map_in_etcd_by_compare_and_swap)
{
	struct wf_map m;
	uint64_t e0;
	char out[400];
	int ok = 0, raced = 0;

	etcd_map(&m);
	e0 = m.epoch;
	wf_map_free(&m);
	cr_assert_eq(sys_sh("'%s/weftctl' target down 1 --etcd %s >/dev/null", C.bin,
			    C.etcd), 0);
	wait_epoch(e0 + 1, 7);
	etcd_map(&m);
	cr_assert_eq(m.epoch, e0 + 1);
	cr_assert(!m.targets[1].up);
	wf_map_free(&m);
	cr_assert_eq(sys_sh("'%s/weftctl' target up 1 --etcd %s -c '%s' 2>/dev/null",
			    C.bin, C.etcd, C.map), 2, "-c and --etcd together");
	/* Six writers at once: each either writes its own epoch or is told
	 * the map changed meanwhile; never two with the same epoch. */
	snprintf(out, sizeof(out), "%s/race", C.dir);
	cr_assert_eq(sys_sh("for i in 1 2 3 4 5 6; do '%s/weftctl' target reweight 0 1 "
			    "--etcd %s > '%s'.$i 2>&1 & done; wait", C.bin, C.etcd,
			    out), 0);
	raced = sys_sh("exit $(cat '%s'.? | grep -c 'changed since it was read')", out);
	cr_assert_eq(sys_sh("test $(cat '%s'.? | grep '^etcd: epoch' | sort | uniq -d "
			    "| wc -l) = 0", out), 0, "two writers wrote the same epoch");
	ok = sys_sh("exit $(cat '%s'.? | grep -c '^etcd: epoch .* written')", out);
	cr_assert_eq(ok + raced, 6, "%d written, %d told to run again", ok, raced);
	cr_assert_geq(ok, 1);
	etcd_map(&m);
	cr_assert_eq(m.epoch, e0 + 1 + (uint64_t)ok);
	wf_map_free(&m);
}

/*
 * Automatic failover: a keeper marks a SIGKILLed target down once its
 * lease expires; writes to its PGs go on with the two others; restarted,
 * it is marked up, brought up to date, and the pins end by themselves;
 * then every replica is the same (scrub) and every block reads back.
 */
Test(sys_etcd, a_keeper_fails_a_dead_target_over_and_back)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	struct wf_map m;
	char *img = aligned_alloc(4096, 8u << 20);
	int64_t t0, down_ms;
	uint64_t e0;

	cr_assert(img);
	keeper_start(0);
	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 20000, &cl, &vol, "vol3");
	for (uint64_t off = 0; off < (8u << 20); off += SYS_BS) {
		sys_fill(img + off, off, 1);
		cr_assert_eq(weft_pwrite(vol, img + off, SYS_BS, off, 0), SYS_BS);
	}
	etcd_map(&m);
	e0 = m.epoch;
	wf_map_free(&m);
	sys_kill9(&C, 2);
	t0 = now_ms();
	/* Writes of every extent: those of target 2's PGs wait for the
	 * keeper's epoch (DEGRADED, retried), then go on. */
	for (uint64_t off = 0; off < (8u << 20); off += SYS_EXT / 4) {
		sys_fill(img + off, off, 2);
		cr_assert_eq(weft_pwrite(vol, img + off, SYS_BS, off, 0), SYS_BS,
			     "a write after the kill failed");
	}
	etcd_map(&m);
	cr_assert_gt(m.epoch, e0);
	cr_assert(!m.targets[2].up, "target 2 not marked down");
	wf_map_free(&m);
	down_ms = now_ms() - t0;
	fprintf(stderr, "  target 2 killed: writes to every extent done %lld ms "
		"later (lease 5 s)\n", (long long)down_ms);
	/* The keeper logs its change after etcd took it: give the line a
	 * moment (bounded) on a loaded machine. */
	for (int i = 0; i < 50 && keeper_said(0, "target 2 down") == 0; i++)
		usleep(100 * 1000);
	cr_assert_eq(keeper_said(0, "target 2 down"), 1);
	weft_cluster_close(cl);

	sys_restart(&C, 2);
	t0 = now_ms();
	for (;;) {
		etcd_map(&m);
		if (m.targets[2].up && !m.ntemps) {
			wf_map_free(&m);
			break;
		}
		wf_map_free(&m);
		cr_assert_lt(now_ms() - t0, 30000, "target 2 not back and clean in 30 s");
		nap(100);
	}
	cr_assert_eq(keeper_said(0, "target 2 up"), 1);
	cr_assert_eq(keeper_said(0, "pins removed"), 1);
	etcd_map(&m);
	wait_epoch(m.epoch, 7);
	wf_map_free(&m);
	cr_assert_eq(sys_sh("'%s/weftctl' scrub vol3 --etcd %s --run-dir '%s' >/dev/null",
			    C.bin, C.etcd, C.run), 0, "replicas differ after the failover");
	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 5000, &cl, &vol, "vol3");
	for (uint64_t off = 0; off < (8u << 20); off += SYS_BS) {
		char b[SYS_BS] __attribute__((aligned(4096)));

		cr_assert_eq(weft_pread(vol, b, SYS_BS, off), SYS_BS);
		cr_assert(!memcmp(b, img + off, SYS_BS), "block at %llu",
			  (unsigned long long)off);
	}
	weft_cluster_close(cl);
	keepers_stop();
	free(img);
}

/* Two keepers: one leads; when it dies the other takes over. */
Test(sys_etcd, racing_keepers_one_leads)
{
	int64_t t0 = now_ms();

	keeper_start(0);
	while (keeper_said(0, "leading") == 0 && now_ms() - t0 < 10000)
		nap(50);
	cr_assert_eq(keeper_said(0, "leading"), 1);
	keeper_start(1);
	nap(2000);
	cr_assert_eq(keeper_said(1, "leading"), 0, "two keepers lead");
	kill(keepers[0], SIGKILL);
	waitpid(keepers[0], NULL, 0);
	keepers[0] = 0;
	t0 = now_ms();
	while (keeper_said(1, "leading") == 0 && now_ms() - t0 < 15000)
		nap(50);
	cr_assert_eq(keeper_said(1, "leading"), 1, "nobody took over");
	fprintf(stderr, "  the second keeper leads %lld ms after the first was "
		"killed (lease 5 s)\n", (long long)(now_ms() - t0));
	keepers_stop();
}

/* A target on "another host" (its own run directory, no map file at all)
 * gets the map from etcd: nothing is copied by hand. */
Test(sys_etcd, a_target_with_no_map_file_takes_etcds)
{
	char other[400], omap[420], orun[420];
	struct wf_map m;
	struct wf_map_err err;
	uint64_t e, e2 = 0;

	snprintf(other, sizeof(other), "%s/host-b", C.dir);
	snprintf(omap, sizeof(omap), "%s/map.conf", other);
	snprintf(orun, sizeof(orun), "%s/run", other);
	cr_assert_eq(sys_sh("mkdir -p '%s'", orun), 0);
	cr_assert_neq(access(omap, F_OK), 0);
	sys_kill9(&C, 2);
	sys_restart_as(&C, 2, omap, orun);
	cr_assert_eq(wf_map_load(omap, &m, &err), 0, "%s", err.msg);
	e = m.epoch;
	wf_map_free(&m);
	cr_assert_eq(le64toh(sys_ctl_status(orun, 2).epoch), e);
	/* And it follows etcd from there. */
	e = import_next(1);
	for (int i = 0; i < 300 && le64toh(sys_ctl_status(orun, 2).epoch) < e; i++)
		nap(50);
	cr_assert_eq(le64toh(sys_ctl_status(orun, 2).epoch), e);
	/* The target may serve the epoch before its file holds it: a lease
	 * ask answered STALE makes it pull the map from a peer, kept beside
	 * the file (docs/replication.md); the file follows etcd's watch. */
	for (int i = 0; i < 300; i++) {
		cr_assert_eq(wf_map_load(omap, &m, &err), 0, "%s", err.msg);
		e2 = m.epoch;
		wf_map_free(&m);
		if (e2 == e)
			break;
		nap(50);
	}
	cr_assert_eq(e2, e, "%s holds epoch %llu, etcd's is %llu", omap,
		     (unsigned long long)e2, (unsigned long long)e);
}

/* The fault-injection suite with a keeper: targets killed and frozen are
 * marked down by the keeper once their leases expire, and back up and
 * clean by themselves; nothing acknowledged is lost (docs/reliability.md). */
Test(sys_etcd, thrash_with_a_keeper_loses_nothing)
{
	const char *e = getenv("WEFT_THRASH_CYCLES");
	unsigned cycles = e ? (unsigned)atoi(e) : 5;
	char cmd[2048], out[4096] = "";
	size_t n;
	FILE *p;
	int st;

	snprintf(cmd, sizeof(cmd), "'%s/weft-bench' thrash -c '%s' --volume vol3 "
		 "--cycles %u --cycle-ms 800 --cluster-dir '%s' --run-dir '%s' "
		 "--bin '%s' --etcd %s --json", C.bin, C.map, cycles, C.dir, C.run,
		 C.bin, C.etcd);
	p = popen(cmd, "r");
	cr_assert(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	st = pclose(p);
	fprintf(stderr, "  %s", out);
	cr_assert(strstr(out, "\"lost\":0,"), "acknowledged writes lost: %s", out);
	cr_assert(strstr(out, "\"mismatches\":0,"), "%s", out);
	cr_assert_eq(st, 0, "weft-bench thrash --etcd failed: %s", out);
}

/* A host with clients and no target: `weftctl map watch` keeps a map file
 * current from etcd, and a libweft handle on that file follows the epochs
 * (its data path reads nothing else). */
Test(sys_etcd, a_client_only_host_follows_etcd_through_map_watch)
{
	char file[400], log[420];
	struct weft_cluster_opts o = { .size = sizeof(o) };
	struct weft_cluster *cl;
	struct weft_volume *vol;
	struct weft_stats st = { .size = sizeof(st) };
	char *buf = aligned_alloc(4096, SYS_BS);
	pid_t w;
	uint64_t e;

	snprintf(file, sizeof(file), "%s/client-host.conf", C.dir);
	snprintf(log, sizeof(log), "%s/map-watch.log", C.dir);
	w = fork();
	cr_assert_geq(w, 0);
	if (!w) {
		char bin[300];
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		snprintf(bin, sizeof(bin), "%s/weftctl", C.bin);
		execl(bin, bin, "map", "watch", "--etcd", C.etcd, "-o", file, (char *)NULL);
		_exit(127);
	}
	keepers[3] = w;         /* stopped by the suite's fini if we fail */
	for (int i = 0; i < 200 && access(file, F_OK); i++)
		nap(25);
	cr_assert_eq(access(file, F_OK), 0, "map watch wrote no file");
	o.map_path = file;
	o.flags = WEFT_F_NO_SHORT_CIRCUIT;
	o.timeout_ms = 10000;
	weft_env_opts(&o, "test");
	cr_assert_eq(weft_cluster_open(&o, &cl), 0);
	cr_assert_eq(weft_volume_open(cl, "vol3", &vol), 0);
	sys_fill(buf, 0, 3);
	cr_assert_eq(weft_pwrite(vol, buf, SYS_BS, 0, 0), SYS_BS);
	e = import_next(1);
	wait_epoch(e, 7);
	for (int i = 0; i < 200; i++) {
		struct wf_map m;
		struct wf_map_err err;
		bool done = false;

		if (!wf_map_load(file, &m, &err)) {
			done = m.epoch == e;
			wf_map_free(&m);
		}
		if (done)
			break;
		nap(25);
	}
	/* Writes go on in the new epoch; the handle took it. */
	for (uint64_t off = 0; off < 8 * SYS_EXT; off += SYS_EXT) {
		sys_fill(buf, off, 4);
		cr_assert_eq(weft_pwrite(vol, buf, SYS_BS, off, 0), SYS_BS);
		cr_assert_eq(weft_pread(vol, buf, SYS_BS, off), SYS_BS);
		cr_assert_eq(sys_decode(buf, off), 4);
	}
	cr_assert_eq(weft_stats(cl, &st), 0);
	cr_assert_eq(st.map_epoch, e, "the client's epoch is %llu, not %llu",
		     (unsigned long long)st.map_epoch, (unsigned long long)e);
	weft_cluster_close(cl);
	free(buf);
	kill(w, SIGTERM);
	waitpid(w, NULL, 0);
	keepers[3] = 0;
}

/* key issue with --etcd: the grant goes into etcd's map, which the
 * targets follow (test_sys_auth runs it on the map file). */
Test(sys_etcd, key_issue_through_etcd, .timeout = 120)
{
	sys_key_issue_check(&C);
}
