/* SPDX-License-Identifier: Apache-2.0 */
/*
 * No peer can starve the others (docs/target.md, "Limits"): a flood of
 * connections that say HELLO and then stay idle, peers that stop half way
 * through the handshake, a client that never reads and one peer host over
 * its share.  Each time an honest client's I/O goes on, and the target's
 * fds and memory stay bounded (counted in /proc/PID).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tests/target/tgt.h"

#define MAXC 8u                 /* tgt_start's --max-conns */

static unsigned fds_of(pid_t pid)
{
	char path[64];
	struct dirent *d;
	unsigned n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	cr_assert_not_null(dir, "%s", path);
	while ((d = readdir(dir)))
		if (d->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

/* Resident memory in KiB. */
static unsigned long rss_of(pid_t pid)
{
	char path[64], line[256];
	unsigned long kb = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %lu", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t base;           /* an extent whose primary is target 0 */

/* An honest write and read back through slot 0. */
static void honest_io(struct tgt_client *c, uint64_t seed)
{
	static char w[4096], r[4096];
	uint64_t off = base + (seed % 64) * 4096;
	int ret;

	tgt_pattern(w, sizeof(w), seed);
	ret = tgt_io(c, WF_OP_WRITE, TGT_VOL, off, 4096, w, 1);
	cr_assert_eq(ret, WF_WS_OK, "write: %d", ret);
	cr_assert_eq(tgt_io(c, WF_OP_READ, TGT_VOL, off, 4096, r, 1), WF_WS_OK);
	cr_assert_eq(memcmp(w, r, sizeof(w)), 0, "data differs");
}

/* Connect, retrying a refusal (what libweft does with backoff) for at most
 * ms, with an I/O of busy (if not NULL) between tries; the number of
 * tries, or 0 if it never got in. */
static unsigned connect_retry(struct tgt_client *c, const char *addr, int ms,
			      struct tgt_client *busy)
{
	int64_t end = now_ms() + ms;
	unsigned tries = 0;

	while (now_ms() < end) {
		tries++;
		if (!tgt_connect(c, addr, 4, 1))
			return tries;
		tgt_close(c);
		if (busy)
			honest_io(busy, tries);
		usleep(20000);
	}
	return 0;
}

/* Connections that say HELLO, get their GRANT and then say nothing fill
 * the pool; a newcomer still gets in: the one idle the longest is evicted.
 * Then two pools' worth more of them: each takes an idle one's place,
 * the honest client's I/O goes on between them, the target's fds and
 * memory stay where they were. */
Test(limits, idle_hello_flood_evicted, .timeout = 120)
{
	enum { FLOOD = 2 * MAXC };
	static struct tgt_client idle[MAXC + FLOOD];
	struct tgt_env e;
	struct tgt_client honest;
	char addr[256];
	unsigned fds0, fds;
	unsigned long rss0, rss;

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, false, NULL), 0);   /* default limits */
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%u", e.port);
	base = tgt_extent_of(&e, 0, 0);

	fds0 = fds_of(e.pid);
	rss0 = rss_of(e.pid);
	for (unsigned i = 0; i < MAXC; i++)
		cr_assert_eq(tgt_connect(&idle[i], addr, 4, 1), 0, "idle %u", i);
	/* Full of idle connections: the honest one gets in (after the
	 * eviction threshold; a refusal in between is retried). */
	cr_assert_neq(connect_retry(&honest, addr, 10000, NULL), 0,
		      "locked out by %u idle connections", MAXC);
	honest_io(&honest, 1);
	for (unsigned i = MAXC; i < MAXC + FLOOD; i++) {
		cr_assert_neq(connect_retry(&idle[i], addr, 10000, &honest), 0,
			      "flood %u", i);
		honest_io(&honest, i);
	}
	/* The first ones were closed to make room. */
	for (unsigned i = 0; i < MAXC; i++)
		cr_assert(tgt_wait_closed(&idle[i], 5000), "idle %u still open", i);
	fds = fds_of(e.pid);
	rss = rss_of(e.pid);
	cr_assert_leq(fds, fds0 + MAXC + 2, "%u fds, %u before the flood", fds,
		      fds0);
	cr_assert_lt(rss, rss0 + 16 * 1024, "%lu KiB resident, %lu before",
		     rss, rss0);
	honest_io(&honest, 999);
	tgt_close(&honest);
	for (unsigned i = 0; i < MAXC + FLOOD; i++)
		tgt_close(&idle[i]);
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}

/* Peers stopped half way: TCP sockets that say nothing, half a fabric
 * hello, a fabric hello but no HELLO (those hold pool entries).  The honest
 * client gets in while they are all still open, and the fds stay bounded
 * by the listener's cap (256 handshaking sockets) and the pool. */
Test(limits, half_open_peers, .timeout = 120)
{
	enum { SILENT = 300, HALF = 20 };
	struct wf_ctx_opts co = { .size = sizeof(co), .backend = WF_BACKEND_TCP };
	struct wf_ep_opts eo = { .size = sizeof(eo) };
	static struct tgt_client fab[MAXC];
	static int socks[SILENT + HALF];
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct tgt_env e;
	struct tgt_client honest;
	char addr[256];
	unsigned fds0, fds;

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, false, NULL), 0);   /* default limits */
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%u", e.port);
	base = tgt_extent_of(&e, 0, 0);

	fds0 = fds_of(e.pid);
	sa.sin_port = htons(e.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (unsigned i = 0; i < SILENT + HALF; i++) {
		socks[i] = socket(AF_INET, SOCK_STREAM, 0);
		cr_assert_geq(socks[i], 0);
		cr_assert_eq(connect(socks[i], (struct sockaddr *)&sa, sizeof(sa)),
			     0);
		if (i >= SILENT)        /* the first 10 bytes of a hello */
			cr_assert_eq(send(socks[i], "WFTH\1\0\1\0\0\0", 10, 0), 10);
	}
	for (unsigned i = 0; i < MAXC; i++) {
		memset(&fab[i], 0, sizeof(fab[i]));
		cr_assert_eq(wf_ctx_create(&co, &fab[i].ctx), 0);
		cr_assert_eq(wf_connect(fab[i].ctx, addr, &eo, &fab[i].ep), 0);
	}
	cr_assert_neq(connect_retry(&honest, addr, 10000, NULL), 0,
		      "locked out by half-open peers");
	honest_io(&honest, 7);
	/* It got in by evicting one fabric-only peer, not because their
	 * HELLO deadline closed them all: the others are still open. */
	{
		unsigned open = 0;

		for (unsigned i = 0; i < MAXC; i++)
			open += !tgt_wait_closed(&fab[i], 1);
		cr_assert_geq(open, MAXC - 2, "%u of %u half-open peers still open",
			      open, MAXC);
	}
	fds = fds_of(e.pid);
	cr_assert_leq(fds, fds0 + 256 + MAXC + 2, "%u fds, %u before", fds, fds0);
	for (unsigned i = 0; i < SILENT + HALF; i++)
		close(socks[i]);
	for (unsigned i = 0; i < MAXC; i++)
		tgt_close(&fab[i]);
	honest_io(&honest, 8);
	tgt_close(&honest);
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}

/* A client that posts reads and never reads anything again (stopped, or
 * buggy) holds its connection only until --idle-timeout; others are served
 * meanwhile. */
Test(limits, never_reading_client_closed, .timeout = 120)
{
	struct tgt_env e;
	struct tgt_client stuck, honest, third;
	char addr[256];

	tgt_env_init(&e, 1);
	/* Two connections, no eviction: only the idle timeout frees one. */
	cr_assert_eq(tgt_start(&e, false, "--max-conns", "2", "--idle-timeout",
			       "1000", "--evict-idle", "3600000", NULL), 0);
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%u", e.port);
	base = tgt_extent_of(&e, 0, 0);

	cr_assert_eq(tgt_connect(&stuck, addr, TGT_SLOTS, 1), 0);
	cr_assert_eq(tgt_connect(&honest, addr, 4, 1), 0);
	for (uint32_t s = 0; s < stuck.g.slot_count; s++)
		cr_assert_eq(tgt_post(&stuck, WF_OP_READ, TGT_VOL,
				      base + (uint64_t)s * TGT_SLOT_SZ, TGT_SLOT_SZ,
				      s, 0, 1), 0);
	/* The pool is full: a third client is refused while stuck holds its
	 * connection, then gets in once it is closed for idleness. */
	honest_io(&honest, 3);
	cr_assert_neq(connect_retry(&third, addr, 15000, &honest), 0,
		      "the never-reading client kept its connection");
	honest_io(&third, 4);
	honest_io(&honest, 5);
	cr_assert(tgt_wait_closed(&stuck, 5000), "stuck not closed");
	tgt_close(&stuck);
	tgt_close(&third);
	tgt_close(&honest);
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}

/* --max-conns-per-peer: loopback is one peer; past its share its idlest
 * connection makes room, or (none idle) the newcomer is refused. */
Test(limits, per_peer_share, .timeout = 120)
{
	struct tgt_env e;
	struct tgt_client c[3], d;
	char addr[256];

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, false, "--max-conns-per-peer", "2",
			       "--evict-idle", "3600000", NULL), 0);
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%u", e.port);
	base = tgt_extent_of(&e, 0, 0);

	cr_assert_eq(tgt_connect(&c[0], addr, 4, 1), 0);
	cr_assert_eq(tgt_connect(&c[1], addr, 4, 1), 0);
	/* A third from the same host: refused though the pool has room. */
	cr_assert_neq(tgt_connect(&c[2], addr, 4, 1), 0);
	tgt_close(&c[2]);
	honest_io(&c[0], 1);
	tgt_close(&c[1]);
	/* Room again once one of its own is gone. */
	cr_assert_neq(connect_retry(&d, addr, 10000, &c[0]), 0);
	honest_io(&d, 2);
	tgt_close(&d);
	tgt_close(&c[0]);
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}
