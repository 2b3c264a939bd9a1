/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ctlplane/etcd.c against a real etcd on loopback (scripts/etcd start: a
 * private member on free ports, its own data folder, stopped after each
 * test): values round trip byte for byte, compare-and-swap lets exactly
 * one of racing writers through per revision, leases expire and take
 * their keys with them, a watch sees a change and times out without one,
 * and an unreachable etcd is a clear error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "ctlplane/etcd.h"

static char url[128], dir[256];

static void up(void)
{
	char cmd[600];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "'%s/scripts/etcd' start", getenv("WEFT_SRC"));
	p = popen(cmd, "r");
	cr_assert(p);
	cr_assert_eq(fscanf(p, "WEFT_ETCD=%127s WEFT_ETCD_DIR=%255s", url, dir), 2,
		     "scripts/etcd start failed");
	cr_assert_eq(pclose(p), 0);
}

static void down(void)
{
	char cmd[600];

	if (!dir[0])
		return;
	snprintf(cmd, sizeof(cmd), "'%s/scripts/etcd' stop '%s'", getenv("WEFT_SRC"),
		 dir);
	if (system(cmd))
		fprintf(stderr, "stopping etcd in %s failed\n", dir);
}

TestSuite(etcd, .init = up, .fini = down, .timeout = 60);

static struct wf_etcd *open_e(void)
{
	struct wf_etcd *e;

	cr_assert_eq(wf_etcd_open(url, 2000, &e), 0);
	return e;
}

Test(etcd, values_round_trip_byte_for_byte)
{
	struct wf_etcd *e = open_e();
	struct wf_etcd_kv kv;
	char val[3000];
	int64_t rev = 0, rev2 = 0;

	for (size_t i = 0; i < sizeof(val); i++)
		val[i] = (char)(i * 7);         /* NULs and high bytes too */
	for (size_t n = 0; n < 5; n++) {
		char key[32];

		snprintf(key, sizeof(key), "/t/v%zu", n);
		cr_assert_eq(wf_etcd_put(e, key, val, sizeof(val) - n, -1, 0, &rev), 0,
			     "%s", wf_etcd_error(e));
		cr_assert_eq(wf_etcd_get(e, key, &kv, &rev2), 0);
		cr_assert_eq(kv.len, sizeof(val) - n);
		cr_assert(!memcmp(kv.value, val, kv.len));
		cr_assert_eq(kv.mod_rev, rev);
		cr_assert_geq(rev2, rev);
		wf_etcd_kv_free(&kv);
	}
	cr_assert_eq(wf_etcd_put(e, "/t/empty", "", 0, -1, 0, NULL), 0);
	cr_assert_eq(wf_etcd_get(e, "/t/empty", &kv, NULL), 0);
	cr_assert_eq(kv.len, 0);
	wf_etcd_kv_free(&kv);
	cr_assert_eq(wf_etcd_get(e, "/t/none", &kv, NULL), -ENOENT);
	cr_assert_eq(wf_etcd_delete(e, "/t/v0"), 0);
	cr_assert_eq(wf_etcd_get(e, "/t/v0", &kv, NULL), -ENOENT);
	wf_etcd_close(e);
}

static void count_key(void *arg, const char *key, const struct wf_etcd_kv *kv)
{
	(void)kv;
	cr_assert_eq(strncmp(key, "/l/", 3), 0);
	(*(int *)arg)++;
}

Test(etcd, list_a_prefix)
{
	struct wf_etcd *e = open_e();
	int n = 0;

	cr_assert_eq(wf_etcd_put(e, "/l/a", "1", 1, -1, 0, NULL), 0);
	cr_assert_eq(wf_etcd_put(e, "/l/b", "2", 1, -1, 0, NULL), 0);
	cr_assert_eq(wf_etcd_put(e, "/lx", "3", 1, -1, 0, NULL), 0);
	cr_assert_eq(wf_etcd_put(e, "/m", "4", 1, -1, 0, NULL), 0);
	cr_assert_eq(wf_etcd_list(e, "/l/", count_key, &n), 2);
	cr_assert_eq(n, 2);
	wf_etcd_close(e);
}

Test(etcd, compare_and_swap)
{
	struct wf_etcd *e = open_e();
	struct wf_etcd_kv kv;
	int64_t r1, r2;

	cr_assert_eq(wf_etcd_put(e, "/c", "a", 1, 0, 0, &r1), 0, "%s", wf_etcd_error(e));
	cr_assert_eq(wf_etcd_put(e, "/c", "b", 1, 0, 0, NULL), -ECANCELED,
		     "created twice");
	cr_assert_eq(wf_etcd_put(e, "/c", "c", 1, r1, 0, &r2), 0);
	cr_assert_eq(wf_etcd_put(e, "/c", "d", 1, r1, 0, NULL), -ECANCELED,
		     "a stale compare went through");
	cr_assert_eq(wf_etcd_get(e, "/c", &kv, NULL), 0);
	cr_assert_eq(kv.value[0], 'c');
	cr_assert_eq(kv.mod_rev, r2);
	wf_etcd_kv_free(&kv);
	wf_etcd_close(e);
}

#define RACERS 6
#define ROUNDS 25

/*
 * Writers in separate processes each read the counter, add one and write
 * it back by compare-and-swap, retrying on a failed compare: every value
 * is written exactly once (no two writers ever produce the same one).
 */
Test(etcd, racing_writers_never_write_the_same_value)
{
	struct wf_etcd *e = open_e();
	struct wf_etcd_kv kv;
	pid_t pid[RACERS];
	int pfd[2];
	char seen[RACERS * ROUNDS + 1] = { 0 };
	unsigned v;

	cr_assert_eq(wf_etcd_put(e, "/race", "0", 1, -1, 0, NULL), 0);
	cr_assert_eq(pipe(pfd), 0);
	for (int i = 0; i < RACERS; i++) {
		pid[i] = fork();
		cr_assert_geq(pid[i], 0);
		if (!pid[i]) {
			struct wf_etcd *c;

			close(pfd[0]);
			if (wf_etcd_open(url, 2000, &c))
				_exit(2);
			for (int r = 0; r < ROUNDS;) {
				struct wf_etcd_kv k;
				char nv[16];
				int n, ret;

				if (wf_etcd_get(c, "/race", &k, NULL))
					_exit(3);
				n = snprintf(nv, sizeof(nv), "%u",
					     (unsigned)strtoul(k.value, NULL, 10) + 1);
				ret = wf_etcd_put(c, "/race", nv, (size_t)n, k.mod_rev, 0,
						  NULL);
				wf_etcd_kv_free(&k);
				if (ret == -ECANCELED)
					continue;
				if (ret)
					_exit(4);
				if (write(pfd[1], nv, 16) != 16)
					_exit(5);
				r++;
			}
			wf_etcd_close(c);
			_exit(0);
		}
	}
	close(pfd[1]);
	for (;;) {
		char nv[16];
		ssize_t n = read(pfd[0], nv, 16);

		if (n <= 0)
			break;
		cr_assert_eq(n, 16);
		v = (unsigned)strtoul(nv, NULL, 10);
		cr_assert(v >= 1 && v <= RACERS * ROUNDS, "value %u", v);
		cr_assert(!seen[v], "value %u written twice", v);
		seen[v] = 1;
	}
	for (int i = 0; i < RACERS; i++) {
		int st;

		cr_assert_eq(waitpid(pid[i], &st, 0), pid[i]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d: %d", i,
			  WEXITSTATUS(st));
	}
	cr_assert_eq(wf_etcd_get(e, "/race", &kv, NULL), 0);
	cr_assert_eq(strtoul(kv.value, NULL, 10), RACERS * ROUNDS);
	wf_etcd_kv_free(&kv);
	wf_etcd_close(e);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

Test(etcd, a_lease_takes_its_keys_when_it_expires)
{
	struct wf_etcd *e = open_e();
	struct wf_etcd_kv kv;
	int64_t id, ttl, t0;
	int ret;

	cr_assert_eq(wf_etcd_lease_grant(e, 2, &id), 0, "%s", wf_etcd_error(e));
	cr_assert_eq(wf_etcd_put(e, "/leased", "x", 1, -1, id, NULL), 0);
	cr_assert_eq(wf_etcd_get(e, "/leased", &kv, NULL), 0);
	cr_assert_eq(kv.lease, id);
	wf_etcd_kv_free(&kv);
	/* Kept alive past its TTL, it stays. */
	for (int i = 0; i < 6; i++) {
		cr_assert_eq(wf_etcd_lease_keepalive(e, id, &ttl), 0);
		cr_assert_gt(ttl, 0);
		nanosleep(&(struct timespec){ .tv_nsec = 500000000 }, NULL);
	}
	cr_assert_eq(wf_etcd_get(e, "/leased", &kv, NULL), 0);
	wf_etcd_kv_free(&kv);
	/* Left alone, it expires and takes the key (bounded wait). */
	t0 = now_ms();
	while ((ret = wf_etcd_get(e, "/leased", &kv, NULL)) == 0 &&
	       now_ms() - t0 < 10000) {
		wf_etcd_kv_free(&kv);
		nanosleep(&(struct timespec){ .tv_nsec = 100000000 }, NULL);
	}
	cr_assert_eq(ret, -ENOENT, "the key outlived its lease");
	cr_assert_eq(wf_etcd_lease_keepalive(e, id, &ttl), -ENOENT);
	/* Revoking takes the keys at once. */
	cr_assert_eq(wf_etcd_lease_grant(e, 60, &id), 0);
	cr_assert_eq(wf_etcd_put(e, "/leased", "y", 1, -1, id, NULL), 0);
	cr_assert_eq(wf_etcd_lease_revoke(e, id), 0);
	cr_assert_eq(wf_etcd_get(e, "/leased", &kv, NULL), -ENOENT);
	wf_etcd_close(e);
}

Test(etcd, a_watch_sees_changes_and_times_out_without)
{
	struct wf_etcd *e = open_e(), *w = open_e();
	int64_t rev, t0;

	cr_assert_eq(wf_etcd_put(e, "/w", "1", 1, -1, 0, &rev), 0);
	t0 = now_ms();
	cr_assert_eq(wf_etcd_watch(w, "/w", rev, 300), 0, "%s", wf_etcd_error(w));
	cr_assert_geq(now_ms() - t0, 250);
	/* A change after rev, made before the watch starts: seen at once. */
	cr_assert_eq(wf_etcd_put(e, "/w", "2", 1, -1, 0, NULL), 0);
	cr_assert_eq(wf_etcd_watch(w, "/w", rev, 5000), 1);
	/* Another key's change is not this key's. */
	cr_assert_eq(wf_etcd_put(e, "/w2", "3", 1, -1, 0, &rev), 0);
	cr_assert_eq(wf_etcd_watch(w, "/w", rev, 300), 0);
	/* A change while watching. */
	if (!fork()) {
		struct wf_etcd *c;

		nanosleep(&(struct timespec){ .tv_nsec = 200000000 }, NULL);
		if (wf_etcd_open(url, 2000, &c) ||
		    wf_etcd_put(c, "/w", "4", 1, -1, 0, NULL))
			_exit(1);
		_exit(0);
	}
	cr_assert_eq(wf_etcd_watch(w, "/w", rev, 10000), 1);
	wait(NULL);
	wf_etcd_close(w);
	wf_etcd_close(e);
}

Test(etcd, an_unreachable_etcd_is_a_clear_error)
{
	struct wf_etcd *e;
	struct wf_etcd_kv kv;

	/* The suite's etcd stopped: its port refuses. */
	down();
	dir[0] = '\0';
	cr_assert_eq(wf_etcd_open(url, 500, &e), 0);
	cr_assert_eq(wf_etcd_get(e, "/x", &kv, NULL), -ECONNREFUSED);
	cr_assert(strstr(wf_etcd_error(e), url), "%s", wf_etcd_error(e));
	wf_etcd_close(e);
	cr_assert_eq(wf_etcd_open("https://x", 500, &e), -EINVAL);
	cr_assert_eq(wf_etcd_open("ftp://x", 500, &e), -EINVAL);
}

/* Election: one leader at a time; a leader whose lease is gone has lost
 * its key, so a write guarded by it is refused. */
Test(etcd, a_stale_leaders_guarded_write_is_refused)
{
	struct wf_etcd *e = open_e(), *o = open_e();
	struct wf_etcd_leader a, b;
	struct wf_etcd_kv kv;
	int64_t la, lb, rev;

	cr_assert_eq(wf_etcd_lease_grant(e, 30, &la), 0);
	cr_assert_eq(wf_etcd_lease_grant(o, 30, &lb), 0);
	cr_assert_eq(wf_etcd_campaign(e, "/el", la, "a", 2000, &a), 0, "%s",
		     wf_etcd_error(e));
	/* The second waits while the first leads. */
	cr_assert_eq(wf_etcd_campaign(o, "/el", lb, "b", 500, &b), -ETIMEDOUT);
	cr_assert_eq(wf_etcd_put(e, "/gm", "1", 1, 0, 0, &rev), 0);
	cr_assert_eq(wf_etcd_put_guarded(e, "/gm", "2", 1, rev, a.key, a.rev, &rev), 0);
	/* The leader's lease goes (it froze, was cut off): its key too. */
	cr_assert_eq(wf_etcd_lease_revoke(e, la), 0);
	cr_assert_eq(wf_etcd_put_guarded(e, "/gm", "3", 1, rev, a.key, a.rev, NULL),
		     -ECANCELED, "a stale leader's write went through");
	cr_assert_eq(wf_etcd_get(e, "/gm", &kv, NULL), 0);
	cr_assert_eq(kv.value[0], '2');
	wf_etcd_kv_free(&kv);
	/* The other one leads now. */
	cr_assert_eq(wf_etcd_campaign(o, "/el", lb, "b", 2000, &b), 0);
	cr_assert_eq(wf_etcd_put_guarded(o, "/gm", "4", 1, rev, b.key, b.rev, NULL), 0);
	cr_assert_eq(wf_etcd_resign(o, "/el", &b, lb), 0);
	wf_etcd_leader_free(&a);
	wf_etcd_leader_free(&b);
	wf_etcd_close(o);
	wf_etcd_close(e);
}
