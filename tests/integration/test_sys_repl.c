/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replication on real targets (conf/local.conf: vol3 in pool rep3, three
 * replicas, min_size 2, one per target): every acknowledged write is on
 * every acting member, proven by reading the volume back through a map in
 * which only one target is up (it is then the primary of every PG it
 * holds); writes below min_size fail with -EHOSTDOWN; a member killed
 * during writes and marked down loses nothing acknowledged; overlapping
 * writes in flight together leave the same bytes on every replica; scrub
 * finds a member whose device returns other bytes and repairs it from the
 * primary, and never copies a primary that is the odd one out; a
 * secondary killed mid-forward, a primary killed between its write and
 * its answer (weft-target --fault-exit-after-local-write), a member back
 * with stale data and a full device on one member lose nothing
 * acknowledged (docs/reliability.md, "What the tests prove").
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "placement/map.h"
#include "placement/placement.h"
#include "proto/ctl.h"
#include "proto/view.h"
#include "tests/integration/sys.h"

SYS_SUITE(sys_repl, 300);

#define ALL_UP ((1u << SYS_TARGETS) - 1)

static void map_set_up(unsigned up_mask)
{
	sys_map_set_up(&C, up_mask);
}

static void open_vol3(unsigned timeout_ms, struct weft_cluster **cl,
		      struct weft_volume **vol)
{
	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, timeout_ms, cl, vol, "vol3");
}

/* Read [0, len) of vol3 through a fresh handle and compare with img. */
static void expect_image(const char *what, const char *img, size_t len)
{
	sys_expect_image(&C, "vol3", what, img, len);
}

/* Under a map where only target t is up, vol3 reads back as img. */
static void expect_on_each_replica(const char *img, size_t len)
{
	char what[64];

	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		map_set_up(1u << t);
		snprintf(what, sizeof(what), "target %u alone", t);
		expect_image(what, img, len);
	}
	map_set_up(ALL_UP);
}

#define SPAN (24u << 20)        /* 24 extents: most PGs' primaries */

/* Reap at least one completion of single-block writes; each must be
 * acknowledged in full.  user_data is the block index (busy[] cleared). */
static unsigned reap_writes(struct weft_cluster *cl, uint8_t *busy)
{
	struct weft_cqe cqe[32];
	int n = weft_wait(cl, cqe, 1, 32, 10000);

	cr_assert_gt(n, 0, "no completion in 10 s");
	for (int k = 0; k < n; k++) {
		cr_assert_eq(cqe[k].res, SYS_BS, "write of block %llu: %s",
			     (unsigned long long)cqe[k].user_data,
			     weft_strerror((int)cqe[k].res));
		busy[cqe[k].user_data] = 0;
	}
	return (unsigned)n;
}

/* n single-block writes at QD 32 to random blocks of [0, span), each a
 * new version in img; a block is never written twice at once (its buffer
 * is the image). */
static void overwrite(struct weft_volume *vol, struct weft_cluster *cl,
		      char *img, size_t span, unsigned n, uint64_t *rng,
		      uint64_t version0)
{
	uint32_t nblk = (uint32_t)(span / SYS_BS);
	uint8_t *busy = calloc(nblk, 1);
	unsigned out = 0;

	cr_assert(busy);
	for (unsigned i = 0; i < n; i++) {
		uint32_t b;

		do {
			*rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
			b = (uint32_t)((*rng >> 20) % nblk);
		} while (busy[b]);
		while (out >= 32)
			out -= reap_writes(cl, busy);
		if (busy[b]) {
			i--;
			continue;
		}
		sys_fill(img + (size_t)b * SYS_BS, (uint64_t)b * SYS_BS,
			 version0 + i);
		cr_assert_eq(weft_write(vol, img + (size_t)b * SYS_BS, SYS_BS,
					(uint64_t)b * SYS_BS, 0, b), 0);
		busy[b] = 1;
		out++;
	}
	while (out)
		out -= reap_writes(cl, busy);
	free(busy);
}

Test(sys_repl, every_replica_holds_every_acknowledged_write)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *img = aligned_alloc(4096, SPAN);
	uint64_t rng = 42;

	cr_assert(img);
	open_vol3(5000, &cl, &vol);
	/* Whole span in 128 KiB writes, FUA on every other one. */
	for (uint64_t off = 0; off < SPAN; off += 128 * 1024) {
		for (uint64_t b = 0; b < 128 * 1024; b += SYS_BS)
			sys_fill(img + off + b, off + b, 1);
		cr_assert_eq(weft_pwrite(vol, img + off, 128 * 1024, off,
					 (off >> 17) & 1 ? WEFT_FUA : 0),
			     128 * 1024);
	}
	/* Then 4 KiB overwrites at QD 32: blocks of one extent in flight
	 * together on every replica. */
	overwrite(vol, cl, img, SPAN, 3000, &rng, 2);
	weft_cluster_close(cl);
	expect_on_each_replica(img, SPAN);
	free(img);
}

/* Overlapping writes in flight together (128 KiB writes over 4 KiB ones
 * of the same range, all at once): the primary orders them, so every
 * replica ends with the same bytes, whichever the primary applied last. */
Test(sys_repl, overlapping_writes_leave_replicas_identical)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	struct weft_cqe cqe[64];
	const size_t span = 256 * 1024;
	char *src = aligned_alloc(4096, 64 * 128 * 1024);
	char *img[SYS_TARGETS], *buf = aligned_alloc(4096, span);
	unsigned out = 0;

	cr_assert(src && buf);
	open_vol3(5000, &cl, &vol);
	for (unsigned round = 0; round < 20; round++) {
		for (unsigned i = 0; i < 64; i++) {
			/* Even: a whole 128 KiB half; odd: one block. */
			uint64_t off = (uint64_t)(i % 2) * 128 * 1024;
			uint32_t len = i % 4 < 2 ? 128 * 1024 : SYS_BS;
			char *p = src + (size_t)i * 128 * 1024;

			if (len == SYS_BS)
				off += (uint64_t)(i * 7 % 32) * SYS_BS;
			for (uint32_t b = 0; b < len; b += SYS_BS)
				sys_fill(p + b, off + b, 1 + round * 64 + i);
			cr_assert_eq(weft_write(vol, p, len, off, 0, i), 0);
			out++;
		}
		while (out) {
			int n = weft_wait(cl, cqe, 1, 64, 10000);

			cr_assert_gt(n, 0);
			for (int k = 0; k < n; k++)
				cr_assert_gt(cqe[k].res, 0, "%s",
					     weft_strerror((int)cqe[k].res));
			out -= (unsigned)n;
		}
	}
	weft_cluster_close(cl);
	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		struct weft_cluster *c2;
		struct weft_volume *v2;

		map_set_up(1u << t);
		open_vol3(5000, &c2, &v2);
		img[t] = aligned_alloc(4096, span);
		cr_assert(img[t]);
		cr_assert_eq(weft_pread(v2, img[t], span, 0), (ssize_t)span);
		weft_cluster_close(c2);
		for (size_t b = 0; b < span; b += SYS_BS)
			cr_assert_geq(sys_decode(img[t] + b, b), 1,
				      "target %u: block %zu holds no write", t, b);
	}
	for (unsigned t = 1; t < SYS_TARGETS; t++)
		for (size_t b = 0; b < span; b += SYS_BS)
			cr_assert(!memcmp(img[0] + b, img[t] + b, SYS_BS),
				  "block %zu: target 0 holds version %lld, target "
				  "%u version %lld", b, (long long)sys_decode(img[0] + b, b),
				  t, (long long)sys_decode(img[t] + b, b));
	for (unsigned t = 0; t < SYS_TARGETS; t++)
		free(img[t]);
	free(src);
	free(buf);
}

/* With one target up (min_size 2): reads still answer, writes fail with
 * -EHOSTDOWN once the request timeout passes, never acknowledged with
 * fewer copies than min_size. */
Test(sys_repl, writes_below_min_size_fail_with_ehostdown)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *img = aligned_alloc(4096, 1 << 20), *buf = aligned_alloc(4096, 1 << 20);

	cr_assert(img && buf);
	open_vol3(5000, &cl, &vol);
	for (uint64_t b = 0; b < (1u << 20); b += SYS_BS)
		sys_fill(img + b, b, 7);
	cr_assert_eq(weft_pwrite(vol, img, 1 << 20, 0, 0), 1 << 20);
	weft_cluster_close(cl);

	map_set_up(1u << 1);
	open_vol3(1500, &cl, &vol);
	cr_assert_eq(weft_pread(vol, buf, 1 << 20, 0), 1 << 20, "reads go on");
	cr_assert(!memcmp(buf, img, 1 << 20));
	sys_fill(buf, 0, 8);
	cr_assert_eq(weft_pwrite(vol, buf, SYS_BS, 0, 0), -EHOSTDOWN);
	weft_cluster_close(cl);

	/* Back to full strength: the refused write never landed. */
	map_set_up(ALL_UP);
	expect_image("after the refused write", img, 1 << 20);
	free(img);
	free(buf);
}

static unsigned victim;

static void kill_and_mark_down(void *arg)
{
	(void)arg;
	sys_kill9(&C, victim);
	map_set_up(ALL_UP & ~(1u << victim));
}

static uint64_t blk_off(uint32_t b)
{
	return (uint64_t)b / 8 * SYS_EXT + (uint64_t)(b % 8) * (SYS_EXT / 8);
}

static void open_stream(unsigned qd, unsigned timeout_ms, struct weft_cluster **cl,
			struct weft_volume **vol)
{
	(void)qd;
	open_vol3(timeout_ms, cl, vol);
}

/* A member (the primary of a third of the PGs, a secondary of the rest)
 * killed in the middle of a write stream and marked down: the others
 * take over, every acknowledged write reads back from each of them. */
Test(sys_repl, member_killed_during_writes_loses_nothing)
{
	struct sys_stream s;
	const uint32_t nblk = 512;

	sys_stream_init(&s, nblk, blk_off);
	victim = (unsigned)(getpid() % SYS_TARGETS);
	{
		struct sys_stream_opts o = {
			.open = open_stream, .qd = 16, .timeout_ms = 8000,
			.act_ms = 150, .give_up_ms = 30000, .refused_fails = true,
			.act = kill_and_mark_down, .verify_timeout_ms = 10000,
			.verify_run = 1,
		};

		sys_stream_round(&s, &o, 0);
	}
	/* Each survivor alone holds every acknowledged write. */
	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		struct weft_cluster *cl;
		struct weft_volume *vol;
		char *buf;

		if (t == victim)
			continue;
		buf = aligned_alloc(4096, SYS_BS);
		cr_assert_not_null(buf);
		map_set_up(1u << t);
		open_vol3(10000, &cl, &vol);
		for (uint32_t b = 0; b < nblk; b++) {
			int64_t v;

			cr_assert_eq(weft_pread(vol, buf, SYS_BS, blk_off(b)), SYS_BS);
			v = sys_decode(buf, blk_off(b));
			cr_assert(v == (int64_t)s.acked[b] ||
				  (s.maybe[b] && v == (int64_t)s.maybe[b]),
				  "target %u alone: block %u holds version %lld, "
				  "acknowledged %llu", t, b, (long long)v,
				  (unsigned long long)s.acked[b]);
		}
		weft_cluster_close(cl);
		free(buf);
	}
	cr_assert_gt(s.acks, 0);
	fprintf(stderr, "  target %u killed: %llu writes acknowledged and found on "
		"both survivors, %llu failed cleanly\n", victim,
		(unsigned long long)s.acks, (unsigned long long)s.fails);
	sys_stream_free(&s);
}

static int weftctl(const char *args);

/* Extents of vol3 the victim is a secondary of (it leads none of them). */
#define SEC_EXTS 64u
static uint32_t sec_ext[SEC_EXTS];

static uint64_t sec_off(uint32_t b)
{
	return (uint64_t)sec_ext[b / 8] * SYS_EXT + (uint64_t)(b % 8) * (SYS_EXT / 8);
}

static unsigned member_of(uint64_t off, unsigned rank, const char **dev);

/*
 * A secondary killed while forwards to it are in flight (a stream of
 * writes at QD 16 to extents it does not lead) and marked down: every
 * write is acknowledged (the primaries answer DEGRADED for the lost
 * forwards and the client's retries in the next epoch go through; none
 * waits for its deadline), both survivors alone hold every one, and the
 * secondary, back and brought up to date, too.
 */
Test(sys_repl, a_secondary_killed_mid_forward_loses_nothing)
{
	struct sys_stream s;
	const uint32_t nblk = SEC_EXTS * 8;
	const char *dev;
	char cmd[64];
	unsigned n = 0;

	victim = (unsigned)(getpid() % SYS_TARGETS);
	for (uint32_t e = 0; n < SEC_EXTS; e++)
		if (member_of((uint64_t)e * SYS_EXT, 0, &dev) != victim)
			sec_ext[n++] = e;
	sys_stream_init(&s, nblk, sec_off);
	{
		struct sys_stream_opts o = {
			.open = open_stream, .qd = 16, .timeout_ms = 30000,
			.act_ms = 300, .give_up_ms = 40000, .refused_fails = true,
			.act = kill_and_mark_down, .verify_timeout_ms = 10000,
			.verify_run = 1,
		};

		sys_stream_round(&s, &o, 0);
	}
	cr_assert_gt(s.acks, 0);
	cr_assert_eq(s.fails, 0, "%llu writes failed with their primaries up",
		     (unsigned long long)s.fails);
	sys_restart(&C, victim);
	snprintf(cmd, sizeof(cmd), "target up %u", victim);
	cr_assert_eq(weftctl(cmd), 0);
	cr_assert_eq(weftctl("recover --wait --timeout 60"), 0,
		     "recovery did not finish");
	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		struct weft_cluster *cl;
		struct weft_volume *vol;
		char *buf = aligned_alloc(4096, SYS_BS);

		map_set_up(1u << t);
		open_vol3(10000, &cl, &vol);
		for (uint32_t b = 0; b < nblk; b++) {
			cr_assert_eq(weft_pread(vol, buf, SYS_BS, sec_off(b)), SYS_BS);
			cr_assert_eq(sys_decode(buf, sec_off(b)), (int64_t)s.acked[b],
				     "target %u alone: block %u holds version %lld, "
				     "acknowledged %llu", t, b,
				     (long long)sys_decode(buf, sec_off(b)),
				     (unsigned long long)s.acked[b]);
		}
		weft_cluster_close(cl);
		free(buf);
	}
	map_set_up(ALL_UP);
	fprintf(stderr, "  secondary %u killed: %llu writes acknowledged, none "
		"failed, found on every member\n", victim, (unsigned long long)s.acks);
	sys_stream_free(&s);
}

/* weftctl on the suite's cluster; its exit status. */
static int weftctl(const char *args)
{
	return sys_weftctl(&C, args);
}

/*
 * A member marked down misses writes; marked up again it is pinned out of
 * its PGs' acting sets while their primaries bring it up to date, then
 * `weftctl recover` lets it serve: it alone reads back every write,
 * discard and overwrite made while it was away.
 */
Test(sys_repl, member_back_from_down_is_brought_up_to_date)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *img = aligned_alloc(4096, SPAN);
	unsigned away = (unsigned)(getpid() % SYS_TARGETS);
	uint64_t rng = 7;
	char cmd[64];

	cr_assert(img);
	open_vol3(5000, &cl, &vol);
	for (uint64_t off = 0; off < SPAN; off += 128 * 1024) {
		for (uint64_t b = 0; b < 128 * 1024; b += SYS_BS)
			sys_fill(img + off + b, off + b, 1);
		cr_assert_eq(weft_pwrite(vol, img + off, 128 * 1024, off, 0),
			     128 * 1024);
	}
	weft_cluster_close(cl);

	snprintf(cmd, sizeof(cmd), "target down %u", away);
	cr_assert_eq(weftctl(cmd), 0);
	open_vol3(8000, &cl, &vol);
	overwrite(vol, cl, img, SPAN, 1500, &rng, 100);
	/* A whole extent and part of another discarded while it is away. */
	cr_assert_eq(weft_discard_sync(vol, 3 * SYS_EXT, SYS_EXT), 0);
	memset(img + 3 * SYS_EXT, 0, SYS_EXT);
	cr_assert_eq(weft_discard_sync(vol, 5 * SYS_EXT + 64 * 1024, 256 * 1024), 0);
	memset(img + 5 * SYS_EXT + 64 * 1024, 0, 256 * 1024);
	weft_cluster_close(cl);

	snprintf(cmd, sizeof(cmd), "target up %u", away);
	cr_assert_eq(weftctl(cmd), 0);
	/* Pinned: clients read the members that hold the data meanwhile. */
	expect_image("while it is brought up to date", img, SPAN);
	cr_assert_eq(weftctl("recover --wait --timeout 60"), 0,
		     "recovery did not finish");
	{
		struct wf_map m;
		struct wf_map_err err;

		cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
		cr_assert_eq(m.ntemps, 0, "pins left after recover");
		wf_map_free(&m);
	}
	expect_on_each_replica(img, SPAN);
	free(img);
}

/* Flushes after replicated writes return at once (replicas are written
 * FUA; a flush reaches the primaries only), also after a member was lost
 * and marked down, from a handle that wrote through it and from a new one. */
Test(sys_repl, flush_reaches_primaries_only)
{
	struct weft_cluster *cl, *cl2;
	struct weft_volume *vol, *vol2;
	char *img = aligned_alloc(4096, SPAN);

	cr_assert(img);
	open_vol3(8000, &cl, &vol);
	for (uint64_t off = 0; off < SPAN; off += 128 * 1024) {
		for (uint64_t b = 0; b < 128 * 1024; b += SYS_BS)
			sys_fill(img + off + b, off + b, 1);
		cr_assert_eq(weft_pwrite(vol, img + off, 128 * 1024, off, 0),
			     128 * 1024);
	}
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(weft_fsync(vol), 0, "flush %d", i);
		cr_assert_eq(weft_pwrite(vol, img, 128 * 1024, 0, 0), 128 * 1024);
	}
	/* Target 2 dies with writes of this handle not flushed. */
	sys_kill9(&C, 2);
	map_set_up(ALL_UP & ~(1u << 2));
	cr_assert_eq(weft_fsync(vol), 0, "the old handle's flush");
	open_vol3(8000, &cl2, &vol2);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(weft_pwrite(vol2, img, 128 * 1024, 0, 0), 128 * 1024,
			     "writes go on with min_size 2");
	cr_assert_eq(weft_fsync(vol2), 0, "a new handle's flush");
	weft_cluster_close(cl2);
	weft_cluster_close(cl);
	free(img);
}

/* A secondary answers from a newer epoch that moved it: the primary
 * reloads after the completion (not inside it, where the rebuild freed
 * the link under the caller), and every target stays up. */
Test(sys_repl, reload_told_by_a_peer_keeps_targets_up)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *img = aligned_alloc(4096, 1 << 20);
	struct wf_map m;
	struct wf_map_err err;

	cr_assert(img);
	open_vol3(3000, &cl, &vol);
	for (uint64_t b = 0; b < (1u << 20); b += SYS_BS)
		sys_fill(img + b, b, 1);
	cr_assert_eq(weft_pwrite(vol, img, 1 << 20, 0, 0), 1 << 20);
	cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
	m.epoch++;
	for (uint32_t i = 0; i < m.ntargets; i++)
		if (m.targets[i].id == 2)
			m.targets[i].port += 3;
	cr_assert_eq(wf_map_save(&m, C.map, &err), 0, "%s", err.msg);
	wf_map_free(&m);
	/* Only target 2 loads it: the others learn it from its answers. */
	cr_assert_eq(kill(sys_pid(&C, 2), SIGHUP), 0);
	nanosleep(&(struct timespec){ .tv_nsec = 300000000 }, NULL);
	for (uint64_t off = 0; off < (1u << 20); off += 128 * 1024)
		(void)weft_pwrite(vol, img + off, 128 * 1024, off, 0);
	weft_cluster_close(cl);
	for (unsigned t = 0; t < SYS_TARGETS; t++)
		cr_assert_eq(kill(sys_pid(&C, t), 0), 0, "target %u died", t);
	free(img);
}

/* ---- scrub ------------------------------------------------------------ */

/* Map index of the member `rank` (0: primary) of the PG holding byte off
 * of vol3, and that target's device path (static buffer). */
static unsigned member_of(uint64_t off, unsigned rank, const char **dev)
{
	static char path[WF_PATH_MAX];
	struct wf_map m;
	struct wf_map_err err;
	struct wf_placer pl;
	struct wf_pg_table t;
	struct wf_extent_loc loc;
	unsigned id;

	cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
	cr_assert_eq(wf_placer_init(&pl, &m), 0);
	cr_assert_eq(wf_pg_table_build(&t, &pl), 0);
	cr_assert_eq(wf_place_extent(&t, &m, 0, off, &loc), 0);
	cr_assert_eq(strcmp(m.volumes[0].name, "vol3"), 0);
	cr_assert_gt(loc.n, rank);
	id = m.targets[loc.acting[rank]].id;
	snprintf(path, sizeof(path), "%s", m.targets[loc.acting[rank]].device);
	*dev = path;
	wf_pg_table_free(&t);
	wf_placer_free(&pl);
	wf_map_free(&m);
	return id;
}

/* The hierarchy host of target id in the suite's map. */
static void host_of(unsigned id, char *out, size_t n)
{
	struct wf_map m;
	struct wf_map_err err;
	bool found = false;

	cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
	for (uint32_t i = 0; i < m.ntargets; i++)
		if (m.targets[i].id == id) {
			snprintf(out, n, "%s", m.targets[i].host);
			found = true;
		}
	wf_map_free(&m);
	cr_assert(found, "no target %u in %s", id, C.map);
}

/* Overwrite the 4 KiB at off of vol3 on target id's device, behind the
 * target's back (a device returning other bytes than were written): the
 * extent's place comes from the target's short-circuit view. */
static void corrupt_on(unsigned id, const char *dev, uint64_t off)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct wf_ctl_req q = { .magic = htole32(WF_CTL_MAGIC),
				.version = htole16(WF_CTL_VERSION),
				.op = htole16(WF_CTL_SHORTCIRCUIT) };
	struct wf_ctl_shortcircuit a;
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = &a, .iov_len = sizeof(a) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct wf_view v;
	uint32_t phys, seq;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), fds[2], dfd;
	void *junk = NULL;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.80s/target-%u.ctl", C.run, id);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(send(fd, &q, sizeof(q), 0), (ssize_t)sizeof(q));
	cr_assert_eq(recvmsg(fd, &mh, 0), (ssize_t)sizeof(a));
	close(fd);
	cr_assert_eq(a.result, 0);
	memcpy(fds, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(fds));
	cr_assert_eq(wf_view_open(fds[1], &v), 0);
	cr_assert_eq(wf_view_lookup(&v, 1, (uint32_t)(off / SYS_EXT), &phys, &seq), 1,
		     "target %u does not hold the extent", id);
	dfd = open(dev, O_WRONLY | O_DIRECT | O_CLOEXEC);
	cr_assert_geq(dfd, 0, "%s: %s", dev, strerror(errno));
	cr_assert_eq(posix_memalign(&junk, 4096, SYS_BS), 0);
	memset(junk, 0xa5, SYS_BS);
	cr_assert_eq(pwrite(dfd, junk, SYS_BS,
			    (off_t)wf_view_dev_offset(&v, phys, off % SYS_EXT)),
		     SYS_BS);
	close(dfd);
	free(junk);
	wf_view_close(&v);
	close(fds[0]);
	close(fds[1]);
}

/* The scrub figures of every target, summed. */
static void scrub_totals(uint64_t *mis, uint64_t *rep, uint64_t *errs,
			 uint64_t *bytes)
{
	*mis = *rep = *errs = *bytes = 0;
	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		struct wf_ctl_status s = sys_ctl_status(C.run, t);

		cr_assert_eq(le32toh(s.scrub_done), le32toh(s.scrub_gen),
			     "target %u: scrub not done", t);
		*mis += le64toh(s.scrub_mismatches);
		*rep += le64toh(s.scrub_repaired);
		*errs += le64toh(s.scrub_errors);
		*bytes += le64toh(s.scrub_bytes);
	}
}

/* Write SCRUB_SPAN of vol3 (versioned blocks) into img. */
#define SCRUB_SPAN (8u << 20)
static void write_span(char *img)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;

	open_vol3(5000, &cl, &vol);
	for (uint64_t off = 0; off < SCRUB_SPAN; off += 128 * 1024) {
		for (uint64_t b = 0; b < 128 * 1024; b += SYS_BS)
			sys_fill(img + off + b, off + b, 3);
		cr_assert_eq(weft_pwrite(vol, img + off, 128 * 1024, off, 0),
			     128 * 1024);
	}
	weft_cluster_close(cl);
}

/*
 * A secondary whose device returns other bytes than were written: scrub
 * finds the chunk (and only it), --repair rewrites it from the primary,
 * a scrub after finds nothing, and every member alone reads back every
 * block.
 */
Test(sys_repl, scrub_finds_and_repairs_a_differing_secondary)
{
	char *img = aligned_alloc(4096, SCRUB_SPAN);
	uint64_t off = 5 * SYS_EXT + 40960, mis, rep, errs, bytes;
	const char *dev;
	unsigned sec;

	cr_assert(img);
	write_span(img);
	cr_assert_eq(weftctl("scrub vol3"), 0, "scrub of clean replicas failed");
	scrub_totals(&mis, &rep, &errs, &bytes);
	cr_assert_eq(mis, 0);
	cr_assert_eq(errs, 0);
	/* Every chunk of the 1 GiB volume against two members. */
	cr_assert_eq(bytes, 2ull << 30, "compared %llu bytes",
		     (unsigned long long)bytes);

	sec = member_of(off, 1, &dev);
	corrupt_on(sec, dev, off);
	cr_assert_eq(weftctl("scrub vol3"), 1, "scrub missed a differing member");
	scrub_totals(&mis, &rep, &errs, &bytes);
	cr_assert_eq(mis, 1);
	cr_assert_eq(rep, 0);
	cr_assert_eq(weftctl("scrub vol3 --repair"), 0, "repair failed");
	scrub_totals(&mis, &rep, &errs, &bytes);
	cr_assert_eq(mis, 1);
	cr_assert_eq(rep, 1);
	cr_assert_eq(errs, 0);
	cr_assert_eq(weftctl("scrub"), 0, "differences left after the repair");
	scrub_totals(&mis, &rep, &errs, &bytes);
	cr_assert_eq(mis, 0);
	expect_on_each_replica(img, SCRUB_SPAN);
	free(img);
}

/*
 * A primary whose device returns other bytes: both secondaries agree with
 * each other, so scrub reports it and --repair does not copy the primary's
 * bytes over them (each still reads back what was written).
 */
Test(sys_repl, scrub_never_spreads_a_differing_primary)
{
	char *img = aligned_alloc(4096, SCRUB_SPAN);
	uint64_t off = 2 * SYS_EXT, mis, rep, errs, bytes;
	const char *dev;
	unsigned prim, s1, s2;
	char what[64];

	cr_assert(img);
	write_span(img);
	prim = member_of(off, 0, &dev);
	corrupt_on(prim, dev, off);
	cr_assert_eq(weftctl("scrub vol3 --repair"), 1);
	scrub_totals(&mis, &rep, &errs, &bytes);
	cr_assert_eq(mis, 1);
	cr_assert_eq(rep, 0);
	s1 = member_of(off, 1, &dev);
	s2 = member_of(off, 2, &dev);
	cr_assert_neq(s1, prim);
	cr_assert_neq(s2, prim);
	map_set_up(1u << s1);
	snprintf(what, sizeof(what), "secondary %u alone", s1);
	expect_image(what, img, SCRUB_SPAN);
	map_set_up(1u << s2);
	snprintf(what, sizeof(what), "secondary %u alone", s2);
	expect_image(what, img, SCRUB_SPAN);
	map_set_up(ALL_UP);
	free(img);
}

/*
 * A primary that freezes (SIGSTOP: its sockets stay open, nothing is
 * answered) holds the requests already sent to it.  When the next epoch
 * marks it down, the client must send them again to the PG's new primary
 * instead of waiting for their deadline: here 30 s, so without that the
 * write fails with -ETIMEDOUT, and the 20 s wait below sees nothing.  The
 * client is told of the epoch by nothing but its map file (no other
 * target has a reply for it), so this also proves it looks at the map by
 * itself when its requests stop completing.
 */
Test(sys_repl, a_write_held_by_a_frozen_primary_follows_the_next_epoch)
{
	char *img = aligned_alloc(4096, SCRUB_SPAN);
	char *buf = aligned_alloc(4096, SYS_BS);
	const uint64_t off = SYS_EXT + 8 * SYS_BS;
	struct weft_cluster *cl;
	struct weft_volume *vol;
	struct weft_cqe cqe;
	struct timespec t0, t1;
	const char *dev;
	unsigned prim;
	char cmd[64];
	int n;

	cr_assert(img && buf);
	write_span(img);
	prim = member_of(off, 0, &dev);
	open_vol3(30000, &cl, &vol);
	/* Connections are up before the freeze. */
	cr_assert_eq(weft_pread(vol, buf, SYS_BS, off), SYS_BS);
	cr_assert(!memcmp(buf, img + off, SYS_BS));
	cr_assert_eq(kill(sys_pid(&C, prim), SIGSTOP), 0);
	sys_fill(img + off, off, 4);
	cr_assert_eq(weft_write(vol, img + off, SYS_BS, off, 0, 7), 0);
	n = weft_wait(cl, &cqe, 1, 1, 300);
	cr_assert_eq(n, 0, "a write answered by frozen primary %u", prim);
	map_set_up(ALL_UP & ~(1u << prim));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	n = weft_wait(cl, &cqe, 1, 1, 20000);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_eq(kill(sys_pid(&C, prim), SIGCONT), 0);
	cr_assert_eq(n, 1, "the write held by frozen primary %u did not follow "
		     "the epoch that marks it down", prim);
	cr_assert_eq(cqe.res, SYS_BS, "write: %s", weft_strerror((int)cqe.res));
	cr_assert_eq(cqe.user_data, 7);
	fprintf(stderr, "  primary %u frozen: the held write was acknowledged "
		"%.2f s after the epoch that marks it down\n", prim,
		(double)(t1.tv_sec - t0.tv_sec) +
		(double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	weft_cluster_close(cl);

	/* Back, brought up to date, and every member alone has the write. */
	snprintf(cmd, sizeof(cmd), "target up %u", prim);
	cr_assert_eq(weftctl(cmd), 0);
	cr_assert_eq(weftctl("recover --wait --timeout 60"), 0,
		     "recovery did not finish");
	expect_on_each_replica(img, SCRUB_SPAN);
	free(buf);
	free(img);
}

/* The targets' fabric counts (their status), summed. */
static void target_fab(uint64_t *sends, uint64_t *writes)
{
	*sends = *writes = 0;
	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		struct wf_ctl_status s = sys_ctl_status(C.run, t);

		/* Not the read leases' asks and answers: they go every
		 * quarter lease whatever the requests. */
		*sends += le64toh(s.fab_sends) - le64toh(s.lease_sends);
		*writes += le64toh(s.fab_writes);
	}
}

/*
 * A replicated 4 KiB write costs exactly the minimum docs/replication.md
 * names: on the client link 1 one-sided write + 1 send (and the reply);
 * on each of the two peer links 1 one-sided write + 1 send, and each
 * member's reply: 5 sends and 2 one-sided writes at the targets.  A read:
 * 1 send at the client, 1 one-sided write + 1 send at the primary.
 */
Test(sys_repl, a_replicated_write_costs_the_minimum_fabric_operations)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	struct weft_stats a = { .size = sizeof(a) }, b = { .size = sizeof(b) };
	char *buf = aligned_alloc(4096, SYS_BS);
	uint64_t ts0, tw0, ts1, tw1;
	const unsigned n = 200;

	cr_assert(buf);
	open_vol3(5000, &cl, &vol);
	/* Warm up: every connection and peer link made, every primary's
	 * read leases held (a read answers once they are). */
	for (uint64_t off = 0; off < 16 * SYS_EXT; off += SYS_EXT) {
		sys_fill(buf, off, 1);
		cr_assert_eq(weft_pwrite(vol, buf, SYS_BS, off, 0), SYS_BS);
		cr_assert_eq(weft_pread(vol, buf, SYS_BS, off), SYS_BS);
	}
	cr_assert_eq(weft_stats(cl, &a), 0);
	target_fab(&ts0, &tw0);
	for (unsigned i = 0; i < n; i++) {
		uint64_t off = (uint64_t)(i % 16) * SYS_EXT + (i / 16) * SYS_BS;

		sys_fill(buf, off, 2);
		cr_assert_eq(weft_pwrite(vol, buf, SYS_BS, off, 0), SYS_BS);
	}
	cr_assert_eq(weft_stats(cl, &b), 0);
	target_fab(&ts1, &tw1);
	cr_assert_eq(b.writes - a.writes, n);
	cr_assert_eq(b.write_bytes - a.write_bytes, (uint64_t)n * SYS_BS);
	cr_assert_eq(b.fabric_sends - a.fabric_sends, n, "client sends %llu",
		     (unsigned long long)(b.fabric_sends - a.fabric_sends));
	cr_assert_eq(b.fabric_writes - a.fabric_writes, n);
	cr_assert_eq(ts1 - ts0, 5ull * n, "target sends %llu for %u writes",
		     (unsigned long long)(ts1 - ts0), n);
	cr_assert_eq(tw1 - tw0, 2ull * n);
	{
		uint64_t la = 0, lb = 0;

		for (unsigned k = 0; k < WEFT_STATS_LAT_BUCKETS; k++) {
			la += a.write_latency[k];
			lb += b.write_latency[k];
		}
		cr_assert_eq(lb - la, n, "every write in the latency histogram");
		cr_assert_gt(b.write_latency_ns, a.write_latency_ns);
		cr_assert_eq(b.inflight, 0);
		cr_assert_geq(b.connections, 3);
		cr_assert_gt(b.map_epoch, 0);
	}

	for (unsigned i = 0; i < n; i++) {
		uint64_t off = (uint64_t)(i % 16) * SYS_EXT + (i / 16) * SYS_BS;

		cr_assert_eq(weft_pread(vol, buf, SYS_BS, off), SYS_BS);
		cr_assert_eq(sys_decode(buf, off), 2);
	}
	cr_assert_eq(weft_stats(cl, &a), 0);
	target_fab(&ts0, &tw0);
	cr_assert_eq(a.reads - b.reads, n);
	cr_assert_eq(a.fabric_sends - b.fabric_sends, n);
	cr_assert_eq(a.fabric_writes - b.fabric_writes, 0);
	cr_assert_eq(ts0 - ts1, n);
	cr_assert_eq(tw0 - tw1, n);
	cr_assert_eq(a.errors, 0);
	weft_cluster_close(cl);
	free(buf);
}

/* Version v written to and read back from the first block of 8 extents
 * of vol3 through a fresh handle. */
static void write_read_8(int v)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *buf = aligned_alloc(4096, SYS_BS);

	cr_assert(buf);
	open_vol3(5000, &cl, &vol);
	for (uint64_t off = 0; off < 8 * SYS_EXT; off += SYS_EXT) {
		sys_fill(buf, off, v);
		cr_assert_eq(weft_pwrite(vol, buf, SYS_BS, off, 0), SYS_BS);
		cr_assert_eq(weft_pread(vol, buf, SYS_BS, off), SYS_BS);
		cr_assert_eq(sys_decode(buf, off), v);
	}
	weft_cluster_close(cl);
	free(buf);
}

/*
 * A target "on another host" (its own copy of the map file, its control
 * socket elsewhere): weftctl cannot reach it through a control socket, so
 * it pushes the new map over the target's data address; the target saves
 * it as its own map file and serves the new epoch.  An older map pushed
 * later changes nothing.  Pushing takes a target's key: the client's is
 * refused.
 */
Test(sys_repl, a_map_change_reaches_targets_on_other_hosts)
{
	char other[400], omap[420], orun[420], cmd[1200];
	struct wf_map m;
	struct wf_map_err err;
	struct wf_ctl_status s;
	uint64_t e0;

	snprintf(other, sizeof(other), "%s/other-host", C.dir);
	snprintf(omap, sizeof(omap), "%s/map.conf", other);
	snprintf(orun, sizeof(orun), "%s/run", other);
	cr_assert_eq(sys_sh("mkdir -p '%s' && cp '%s' '%s'", orun, C.map, omap), 0);
	sys_kill9(&C, 2);
	/* Without read leases of its own: it would pull the new map from
	 * the others, which refuse its asks in the older epoch, possibly
	 * before weftctl's push arrives (docs/replication.md, "Read
	 * leases"); here the push is what is tested. */
	sys_restart_with(&C, 2, omap, orun, "--read-lease-ms 0");
	cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
	e0 = m.epoch;
	wf_map_free(&m);

	/* Only a target's key may push a map (docs/security.md, "Keys of
	 * targets"): the client's is refused, and says so. */
	snprintf(cmd, sizeof(cmd), "'%s/weftctl' target down 1 -c '%s' --run-dir '%s' "
		 "2>&1 | grep -q 'target 2 refused the map: key client is not a "
		 "target.s key'", C.bin, C.map, C.run);
	cr_assert_eq(sys_sh("%s", cmd), 0, "a client key's push was not refused");
	cr_assert_eq(le64toh(sys_ctl_status(orun, 2).epoch), e0);
	snprintf(cmd, sizeof(cmd), "WEFT_KEY=target-0 '%s/weftctl' map push -c '%s' "
		 "--run-dir '%s' | grep -q 'target 2: map pushed over the network: "
		 "loaded, serving epoch %llu'", C.bin, C.map, C.run,
		 (unsigned long long)e0 + 1);
	cr_assert_eq(sys_sh("%s", cmd), 0, "no push to target 2");
	s = sys_ctl_status(orun, 2);
	cr_assert_eq(le64toh(s.epoch), e0 + 1);
	cr_assert_eq(wf_map_load(omap, &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m.epoch, e0 + 1, "the pushed map was not saved");
	cr_assert(!m.targets[1].up);
	wf_map_free(&m);

	/* The same epoch pushed again: refused as not newer, nothing
	 * changes. */
	snprintf(cmd, sizeof(cmd), "WEFT_KEY=target-0 '%s/weftctl' map push -c '%s' --run-dir '%s' "
		 "| grep -q 'target 2: map pushed over the network: kept its own (not older), serving "
		 "epoch %llu'", C.bin, C.map, C.run, (unsigned long long)e0 + 1);
	cr_assert_eq(sys_sh("%s", cmd), 0, "a push of the same epoch was not refused");
	snprintf(cmd, sizeof(cmd), "WEFT_KEY=target-0 '%s/weftctl' target up 1 -c '%s' "
		 "--run-dir '%s' | grep -q 'target 2: map pushed over the network: loaded'",
		 C.bin, C.map, C.run);
	cr_assert_eq(sys_sh("%s", cmd), 0, "no second push");
	s = sys_ctl_status(orun, 2);
	cr_assert_eq(le64toh(s.epoch), e0 + 2);
	/* Data goes on through every target. */
	write_read_8(9);
}

/*
 * A target "on another host" that nobody tells of a new epoch: the other
 * two load it; when it next asks them to confirm its epoch for its read
 * leases they refuse with theirs, and it pulls their map (WF_OP_MAP_GET),
 * keeps it in its run directory and serves it.  Data goes on after.
 */
Test(sys_repl, a_target_pulls_a_newer_map_from_a_peer)
{
	char other[400], omap[420], orun[420];
	struct wf_map m;
	struct wf_map_err err;
	uint64_t e0;
	unsigned waited = 0;

	snprintf(other, sizeof(other), "%s/other-host", C.dir);
	snprintf(omap, sizeof(omap), "%s/map.conf", other);
	snprintf(orun, sizeof(orun), "%s/run", other);
	cr_assert_eq(sys_sh("mkdir -p '%s' && cp '%s' '%s'", orun, C.map, omap), 0);
	sys_kill9(&C, 2);
	sys_restart_as(&C, 2, omap, orun);
	cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
	e0 = m.epoch;
	wf_map_free(&m);
	map_set_up(ALL_UP);             /* epoch e0 + 1, in C.map only */
	cr_assert_eq(kill(sys_pid(&C, 0), SIGHUP), 0);
	cr_assert_eq(kill(sys_pid(&C, 1), SIGHUP), 0);
	/* Bounded: a lease ask goes every quarter lease (500 ms). */
	while (le64toh(sys_ctl_status(orun, 2).epoch) != e0 + 1 && waited++ < 200)
		nanosleep(&(struct timespec){ .tv_nsec = 50000000 }, NULL);
	cr_assert_eq(le64toh(sys_ctl_status(orun, 2).epoch), e0 + 1,
		     "target 2 did not pull epoch %llu", (unsigned long long)e0 + 1);
	/* Kept beside its run files, never over its map file (which other
	 * targets of a host share, and weftctl writes). */
	snprintf(omap, sizeof(omap), "%.380s/target-2.pulled.conf", orun);
	cr_assert_eq(wf_map_load(omap, &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m.epoch, e0 + 1, "the pulled map was not kept");
	wf_map_free(&m);
	write_read_8(4);
}

/* ---- a primary dead between its write and its answer ------------------ */

/*
 * A primary that dies after its own write is done and before it answers
 * (weft-target --fault-exit-after-local-write 1: SIGKILL at that point):
 * the client has no acknowledgement, the operator marks the primary down,
 * and the client's retry on the PG's new primary must be acknowledged and
 * leave the same bytes on every member: each survivor alone, the dead
 * primary alone (its own write had landed: the fault point is after it),
 * and all of them after it is back and brought up to date.
 */
Test(sys_repl, a_primary_dead_between_its_write_and_its_answer)
{
	char *img = aligned_alloc(4096, SCRUB_SPAN);
	const uint64_t off = 3 * SYS_EXT + 5 * SYS_BS;
	struct weft_cluster *cl;
	struct weft_volume *vol;
	struct weft_cqe cqe;
	const char *dev;
	unsigned prim;
	char cmd[64], what[64];
	pid_t pid;
	int n;

	cr_assert(img);
	write_span(img);
	prim = member_of(off, 0, &dev);
	sys_kill9(&C, prim);
	sys_restart_with(&C, prim, C.map, C.run, "--fault-exit-after-local-write 1");
	pid = sys_pid(&C, prim);
	cr_assert_gt(pid, 0);
	open_vol3(30000, &cl, &vol);
	/* Connected before the write (libweft connects as it is polled). */
	cr_assert_eq(weft_pread(vol, img + off, SYS_BS, off), SYS_BS);
	sys_fill(img + off, off, 4);
	cr_assert_eq(weft_write(vol, img + off, SYS_BS, off, 0, 9), 0);
	n = 0;
	for (int i = 0; i < 200 && !n && kill(pid, 0) == 0; i++)
		n = weft_wait(cl, &cqe, 1, 1, 25);
	cr_assert(n == 0 || cqe.res != SYS_BS,
		  "a write acknowledged by a primary that died before answering");
	for (int i = 0; i < 200 && kill(pid, 0) == 0; i++)
		nanosleep(&(struct timespec){ .tv_nsec = 25000000 }, NULL);
	cr_assert_neq(kill(pid, 0), 0, "primary %u did not die at its fault point",
		      prim);
	if (!n)
		n = weft_wait(cl, &cqe, 1, 1, 0);
	cr_assert_eq(n, 0, "the write failed before the map changed: %s",
		     weft_strerror((int)cqe.res));
	map_set_up(ALL_UP & ~(1u << prim));
	n = weft_wait(cl, &cqe, 1, 1, 20000);
	cr_assert_eq(n, 1, "the retry on the new primary was not answered");
	cr_assert_eq(cqe.res, SYS_BS, "the retry: %s", weft_strerror((int)cqe.res));
	cr_assert_eq(cqe.user_data, 9);
	weft_cluster_close(cl);
	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		if (t == prim)
			continue;
		map_set_up(1u << t);
		snprintf(what, sizeof(what), "survivor %u alone", t);
		expect_image(what, img, SCRUB_SPAN);
	}
	/* Back without the fault: its own copy has the write. */
	{
		char pidf[400];

		snprintf(pidf, sizeof(pidf), "%s/target-%u.pid", C.dir, prim);
		unlink(pidf);
	}
	sys_restart(&C, prim);
	map_set_up(1u << prim);
	snprintf(what, sizeof(what), "dead primary %u alone", prim);
	expect_image(what, img, SCRUB_SPAN);
	map_set_up(ALL_UP & ~(1u << prim));
	snprintf(cmd, sizeof(cmd), "target up %u", prim);
	cr_assert_eq(weftctl(cmd), 0);
	cr_assert_eq(weftctl("recover --wait --timeout 60"), 0,
		     "recovery did not finish");
	expect_on_each_replica(img, SCRUB_SPAN);
	free(img);
}

/* ---- a full device on one replica ------------------------------------- */

/*
 * One member's device has room for a few extents only (a 9 MiB store:
 * eight).  Writes that need a new extent there fail with -ENOSPC at once
 * (not retried: NOSPC|DNR from the target), both when it is a secondary
 * (the forward's status reaches the client as it is) and when it is the
 * primary; nothing acknowledged is lost on any member, the full one
 * included (an acknowledgement with its copy missing would show there as
 * zeros), and overwrites of extents it holds go on.
 */
Test(sys_repl, a_full_device_on_one_replica_fails_with_enospc)
{
	const unsigned want = 16, span_ext = 48;
	char *img = calloc(1, (size_t)span_ext * SYS_EXT);
	char *buf = aligned_alloc(4096, 128 * 1024);
	unsigned small = (unsigned)(getpid() % SYS_TARGETS), k = 0, e, led = 0;
	struct weft_cluster *cl;
	struct weft_volume *vol;
	struct wf_map m;
	struct wf_map_err err;
	const char *dev;
	ssize_t r = 0;

	cr_assert(img && buf);
	cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m.targets[small].id, small);
	sys_kill9(&C, small);
	/* The killed store's lock goes with its io_uring, a moment later. */
	cr_assert_eq(sys_sh("truncate -s 9M '%s' && for i in $(seq 50); do "
			    "'%s/weft-target' -c '%s' --id %u --format --force "
			    ">/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1",
			    m.targets[small].device, C.bin, C.map, small), 0,
		     "formatting a small store");
	wf_map_free(&m);
	sys_restart(&C, small);

	open_vol3(5000, &cl, &vol);
	/* 128 KiB at the start of each extent it does not lead, one after
	 * another: it is a secondary of each. */
	for (e = 0; e < span_ext && k < want; e++) {
		uint64_t off = (uint64_t)e * SYS_EXT;

		if (member_of(off, 0, &dev) == small) {
			led = led ? led : e;
			continue;
		}
		for (uint64_t b = 0; b < 128 * 1024; b += SYS_BS)
			sys_fill(buf + b, off + b, 1 + e);
		r = weft_pwrite(vol, buf, 128 * 1024, off, 0);
		if (r != 128 * 1024)
			break;
		memcpy(img + off, buf, 128 * 1024);
		k++;
	}
	cr_assert_lt(k, want, "%u extents written on a store of eight", want);
	cr_assert_eq(r, -ENOSPC, "extent %u (target %u its secondary): %s, not "
		     "-ENOSPC", e, small, weft_strerror((int)r));
	cr_assert_geq(k, 1, "not even the first extent was written");
	fprintf(stderr, "  target %u full after %u extents: -ENOSPC\n", small, k);
	/* The failed write may have landed on the other members (as a
	 * failed write may, docs/replication.md): discarded, it reads as
	 * zeros everywhere again. */
	cr_assert_eq(weft_discard_sync(vol, (uint64_t)e * SYS_EXT, SYS_EXT), 0);
	/* A new extent it leads: its own store's NOSPC. */
	for (e = led; e < span_ext && member_of((uint64_t)e * SYS_EXT, 0, &dev) != small; e++)
		;
	for (; e < span_ext; e++) {
		uint64_t off = (uint64_t)e * SYS_EXT;

		if (member_of(off, 0, &dev) != small || sys_decode(img + off, off))
			continue;
		sys_fill(buf, off, 200);
		cr_assert_eq(weft_pwrite(vol, buf, SYS_BS, off, 0), -ENOSPC,
			     "a new extent led by the full target %u", small);
		cr_assert_eq(weft_discard_sync(vol, off, SYS_EXT), 0);
		break;
	}
	cr_assert_lt(e, span_ext, "no extent led by target %u", small);
	/* Extents it holds still take overwrites. */
	for (e = 0; !sys_decode(img + (size_t)e * SYS_EXT, (uint64_t)e * SYS_EXT); e++)
		;
	sys_fill(buf, (uint64_t)e * SYS_EXT, 100);
	cr_assert_eq(weft_pwrite(vol, buf, SYS_BS, (uint64_t)e * SYS_EXT, 0), SYS_BS);
	memcpy(img + (size_t)e * SYS_EXT, buf, SYS_BS);
	weft_cluster_close(cl);
	/* Nothing acknowledged lost, on any member. */
	expect_on_each_replica(img, (size_t)span_ext * SYS_EXT);
	free(img);
	free(buf);
}

/* ---- a target back with stale data ------------------------------------ */

/*
 * A member frozen (SIGSTOP) and marked down misses an overwrite of every
 * extent, those it leads too; then it runs again with its old bytes.
 * Marked up, it is pinned out of its PGs while their primaries bring it
 * up to date: a fresh handle reads the new bytes while it is pinned and
 * after `weftctl recover`, and then it alone holds them too.  (A client
 * still on the epoch before the one that marked it down is another
 * matter: docs/reliability.md, "Findings".)
 */
Test(sys_repl, a_target_back_with_stale_data_never_serves_it)
{
	char *img = aligned_alloc(4096, SCRUB_SPAN);
	struct weft_cluster *cl;
	struct weft_volume *vol;
	const char *dev;
	unsigned away = (unsigned)(getpid() % SYS_TARGETS), led = 0;
	char cmd[64];

	cr_assert(img);
	write_span(img);
	for (uint64_t o = 0; o < SCRUB_SPAN; o += SYS_EXT)
		led += member_of(o, 0, &dev) == away;
	cr_assert_gt(led, 0, "target %u leads none of the extents", away);
	cr_assert_eq(kill(sys_pid(&C, away), SIGSTOP), 0);
	map_set_up(ALL_UP & ~(1u << away));
	open_vol3(10000, &cl, &vol);
	for (uint64_t o = 0; o < SCRUB_SPAN; o += SYS_EXT / 4) {
		for (uint64_t b = 0; b < 64 * 1024; b += SYS_BS)
			sys_fill(img + o + b, o + b, 5);
		cr_assert_eq(weft_pwrite(vol, img + o, 64 * 1024, o, 0), 64 * 1024);
	}
	weft_cluster_close(cl);
	cr_assert_eq(kill(sys_pid(&C, away), SIGCONT), 0);
	snprintf(cmd, sizeof(cmd), "target up %u", away);
	cr_assert_eq(weftctl(cmd), 0);
	expect_image("while it is pinned", img, SCRUB_SPAN);
	cr_assert_eq(weftctl("recover --wait --timeout 60"), 0,
		     "recovery did not finish");
	expect_image("after recover", img, SCRUB_SPAN);
	expect_on_each_replica(img, SCRUB_SPAN);
	free(img);
}

/* write_span, then the first extent of it that target id leads. */
static uint64_t span_led_by(char *img, unsigned id)
{
	const char *dev;
	uint64_t off;

	write_span(img);
	for (off = 0; off < SCRUB_SPAN && member_of(off, 0, &dev) != id;
	     off += SYS_EXT)
		;
	cr_assert_lt(off, SCRUB_SPAN, "target %u leads none of the extents", id);
	return off;
}

/* Freeze target id (the primary of off), mark it down in a new epoch (the
 * map file only: it is told nothing) and overwrite the block at off with
 * version 5 through the new primary (img too). */
static void freeze_and_overwrite(char *img, unsigned id, uint64_t off)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;

	cr_assert_eq(kill(sys_pid(&C, id), SIGSTOP), 0);
	map_set_up(ALL_UP & ~(1u << id));
	open_vol3(10000, &cl, &vol);
	sys_fill(img + off, off, 5);
	cr_assert_eq(weft_pwrite(vol, img + off, SYS_BS, off, 0), SYS_BS);
	weft_cluster_close(cl);
}

/*
 * A reader that connected to a member before the epoch that marks it down
 * (frozen meanwhile, told nothing), and talks to nobody else, is not
 * served that member's old bytes after it runs again: the member's read
 * leases lapsed while it was frozen (the new primary held the overwrite
 * until they had), the other members refuse to renew them in the older
 * epoch, so it answers DEGRADED and the client finds the newer map
 * (docs/replication.md, "Read leases").
 */
Test(sys_repl, a_client_on_the_older_epoch_never_reads_stale_bytes)
{
	char *img = aligned_alloc(4096, SCRUB_SPAN);
	char *buf = aligned_alloc(4096, SYS_BS);
	struct weft_cluster *rcl;
	struct weft_volume *rvol;
	unsigned away = (unsigned)(getpid() % SYS_TARGETS);
	uint64_t off;

	cr_assert(img && buf);
	off = span_led_by(img, away);
	open_vol3(10000, &rcl, &rvol);
	cr_assert_eq(weft_pread(rvol, buf, SYS_BS, off), SYS_BS);
	freeze_and_overwrite(img, away, off);
	cr_assert_eq(kill(sys_pid(&C, away), SIGCONT), 0);
	cr_assert_eq(weft_pread(rvol, buf, SYS_BS, off), SYS_BS);
	cr_assert_eq(sys_decode(buf, off), 5, "the older epoch's reader was "
		     "served version %lld by target %u", (long long)sys_decode(buf, off),
		     away);
	weft_cluster_close(rcl);
	free(buf);
	free(img);
}

/*
 * The same through a short-circuit reader (the primary's device is on this
 * host): its local reads go straight to the device, past the target, so
 * they must check the target's read leases too (the view's lease_epoch and
 * lease_until, proto/view.h).  The reader keeps its own copy of the older
 * map (a client on another host, say), so nothing but the targets can
 * tell it of the newer epoch.  It reads while the primary is still frozen
 * (the target publishes nothing then): the primary's leases lapsed, so
 * the read goes through the network, where the frozen primary answers
 * nothing; the read fails at its deadline, it never returns the old bytes.
 */
Test(sys_repl, a_short_circuit_reader_on_the_older_epoch_never_reads_stale_bytes)
{
	char *img = aligned_alloc(4096, SCRUB_SPAN);
	char *buf = aligned_alloc(4096, SYS_BS);
	struct sys_cluster rc = C;
	struct weft_cluster *rcl;
	struct weft_volume *rvol;
	struct weft_stats st = { .size = sizeof(st) };
	unsigned away = (unsigned)(getpid() % SYS_TARGETS);
	char host[WF_NAME_MAX];
	uint64_t off;
	ssize_t n;

	cr_assert(img && buf);
	off = span_led_by(img, away);
	snprintf(rc.map, sizeof(rc.map), "%s/reader.conf", C.dir);
	cr_assert_eq(sys_sh("cp '%s' '%s'", C.map, rc.map), 0);
	/* On the primary's host, whatever its address: over verbs in the rig
	 * the targets listen on an RDMA device's address, not a loopback
	 * one, and the guest's own name is none of the map's hosts. */
	host_of(away, host, sizeof(host));
	cr_assert_eq(setenv("WEFT_HOST", host, 1), 0);
	sys_open(&rc, 0, 2000, &rcl, &rvol, "vol3");
	cr_assert_eq(unsetenv("WEFT_HOST"), 0);
	/* Sessions open without waiting: read until one went local. */
	for (int round = 0; round < 500; round++) {
		cr_assert_eq(weft_pread(rvol, buf, SYS_BS, off), SYS_BS);
		cr_assert_eq(sys_decode(buf, off), 3);
		cr_assert_eq(weft_stats(rcl, &st), 0);
		if (st.sc_reads)
			break;
		usleep(10 * 1000);
	}
	cr_assert_gt(st.sc_reads, 0, "no read of target %u's extent went local", away);
	freeze_and_overwrite(img, away, off);
	n = weft_pread(rvol, buf, SYS_BS, off);
	cr_assert(n < 0 || sys_decode(buf, off) == 5, "the older epoch's "
		  "short-circuit reader read version %lld from target %u's device",
		  (long long)sys_decode(buf, off), away);
	cr_assert_eq(kill(sys_pid(&C, away), SIGCONT), 0);
	weft_cluster_close(rcl);
	expect_image("after", img, SCRUB_SPAN);
	free(buf);
	free(img);
}

/* Writes every target held for a read lease so far (status version 5). */
static uint64_t writes_held(unsigned id)
{
	return le64toh(sys_ctl_status(C.run, id).writes_held);
}

/* PG holds a release ended on target id so far (status version 6). */
static uint64_t holds_released(unsigned id)
{
	return le64toh(sys_ctl_status(C.run, id).holds_released);
}

/*
 * The other side of read leases: the member that leads a PG in the epoch
 * after its primary is marked down had granted that primary a lease, so
 * it holds the first write to the PG until the lease has lapsed (its
 * writes_held counter says so), then applies and acknowledges it; every
 * member ends up with every acknowledged byte, the frozen one too once it
 * is back and brought up to date.
 */
Test(sys_repl, a_new_primary_holds_writes_until_the_old_primarys_lease_lapsed)
{
	char *img = aligned_alloc(4096, SCRUB_SPAN);
	char *buf = aligned_alloc(4096, SYS_BS);
	struct weft_cluster *cl;
	struct weft_volume *vol;
	const char *dev;
	unsigned away = (unsigned)(getpid() % SYS_TARGETS), next;
	uint64_t off, held[SYS_TARGETS], sum = 0, rel[SYS_TARGETS];
	char cmd[64];

	cr_assert(img && buf);
	off = span_led_by(img, away);
	/* Served by the primary: it holds leases from both other members. */
	open_vol3(10000, &cl, &vol);
	cr_assert_eq(weft_pread(vol, buf, SYS_BS, off), SYS_BS);
	cr_assert(!memcmp(buf, img + off, SYS_BS));
	weft_cluster_close(cl);
	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		held[t] = writes_held(t);
		rel[t] = holds_released(t);
	}
	cr_assert_eq(kill(sys_pid(&C, away), SIGSTOP), 0);
	map_set_up(ALL_UP & ~(1u << away));
	next = member_of(off, 0, &dev);
	cr_assert_neq(next, away);
	cr_log_info("extent at %llu: primary %u frozen, %u leads it next",
		    (unsigned long long)off, away, next);
	open_vol3(10000, &cl, &vol);
	sys_fill(img + off, off, 6);
	cr_assert_eq(weft_pwrite(vol, img + off, SYS_BS, off, 0), SYS_BS);
	weft_cluster_close(cl);
	cr_assert_gt(writes_held(next), held[next], "the new primary %u took the "
		     "write at once, with the old primary's read lease valid", next);
	for (unsigned t = 0; t < SYS_TARGETS; t++)
		if (t != away)
			sum += writes_held(t) - held[t];
	cr_assert_gt(sum, 0);
	/* A frozen target gives nothing back: the hold ran its course. */
	for (unsigned t = 0; t < SYS_TARGETS; t++)
		cr_assert(t == away || holds_released(t) == rel[t], "target %u "
			  "ended a hold early while the old primary %u was frozen",
			  t, away);
	cr_assert_eq(kill(sys_pid(&C, away), SIGCONT), 0);
	snprintf(cmd, sizeof(cmd), "target up %u", away);
	cr_assert_eq(weftctl(cmd), 0);
	cr_assert_eq(weftctl("recover --wait --timeout 60"), 0,
		     "recovery did not finish");
	expect_image("after recover", img, SCRUB_SPAN);
	expect_on_each_replica(img, SCRUB_SPAN);
	free(buf);
	free(img);
}

/* ---- leases across a restart (docs/replication.md, "Read leases") ------ */

/* The next epoch with leases of ms (the map's read_lease_ms), loaded by
 * every target (SIGHUP; bounded wait for their status to show it). */
static void map_set_lease(uint32_t ms)
{
	struct wf_map m;
	struct wf_map_err err;
	uint64_t epoch;
	unsigned t = 0;

	cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
	epoch = ++m.epoch;
	m.read_lease_ms = ms;
	m.read_lease_set = true;
	cr_assert_eq(wf_map_save(&m, C.map, &err), 0, "%s", err.msg);
	wf_map_free(&m);
	for (unsigned i = 0; i < SYS_TARGETS; i++)
		cr_assert_eq(kill(sys_pid(&C, i), SIGHUP), 0);
	for (int i = 0; i < 1000 && t < SYS_TARGETS; i++) {
		if (le64toh(sys_ctl_status(C.run, t).epoch) == epoch)
			t++;
		else
			nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	cr_assert_eq(t, SYS_TARGETS, "target %u never loaded epoch %llu", t,
		     (unsigned long long)epoch);
}

/* Bounded wait until target id granted two more leases (in the epoch
 * every target serves now: of the length that epoch says). */
static void await_grants(unsigned id)
{
	uint64_t g0 = le64toh(sys_ctl_status(C.run, id).leases_granted), g = g0;

	for (int i = 0; i < 1000 && g < g0 + 2; i++) {
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
		g = le64toh(sys_ctl_status(C.run, id).leases_granted);
	}
	cr_assert_geq(g, g0 + 2, "target %u granted no lease in 10 s", id);
}

/* Overwrite the first 64 KiB of each quarter extent of the span with
 * version v (img too), through a fresh handle. */
static void overwrite_quarters(char *img, uint64_t v)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;

	open_vol3(10000, &cl, &vol);
	for (uint64_t o = 0; o < SCRUB_SPAN; o += SYS_EXT / 4) {
		for (uint64_t b = 0; b < 64 * 1024; b += SYS_BS)
			sys_fill(img + o + b, o + b, v);
		cr_assert_eq(weft_pwrite(vol, img + o, 64 * 1024, o, 0), 64 * 1024);
	}
	weft_cluster_close(cl);
}

/* RUN_DIR/target-ID.leases's expiry (CLOCK_BOOTTIME ns) and boot id. */
static uint64_t lease_file(unsigned id, char boot[37])
{
	char path[400], line[128];
	unsigned long long until = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/target-%u.leases", C.run, id);
	f = fopen(path, "r");
	cr_assert(f, "%s: %s", path, strerror(errno));
	cr_assert(fgets(line, sizeof(line), f), "%s is empty", path);
	fclose(f);
	cr_assert_eq(strlen(line), 72, "%s: %s", path, line);
	cr_assert_eq(sscanf(line, "weft-leases 1 %36s %llu", boot, &until), 2,
		     "%s: %s", path, line);
	return until;
}

static uint64_t boottime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Start target id again (as sys_restart); the hold its start announced
 * (ms; its messages before it detached), or -1 when it announced none. */
static long restart_hold(unsigned id)
{
	static const char said[] = "leases granted before this start may run until ";
	char path[400], redir[420], line[1024];
	long ms = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/restart-%u.err", C.dir, id);
	snprintf(redir, sizeof(redir), "2>'%s'", path);
	sys_restart_with(&C, id, C.map, C.run, redir);
	f = fopen(path, "r");
	cr_assert(f, "%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, said);

		if (p)
			ms = strtol(p + sizeof(said) - 1, NULL, 10);
	}
	fclose(f);
	return ms;
}

/*
 * A member SIGKILLed right after granting read leases and started again
 * at once forgot them, but its lease file did not: it holds the writes to
 * its replicated PGs (its writes_held counter says so) until the leases it
 * granted have lapsed, then applies them; every member alone reads back
 * every acknowledged block.
 */
Test(sys_repl, a_member_restarted_within_its_leases_holds_writes)
{
	char *img = aligned_alloc(4096, SCRUB_SPAN);
	unsigned away = (unsigned)(getpid() % SYS_TARGETS);
	char boot[37];
	long ms;

	cr_assert(img);
	map_set_lease(3000);
	(void)span_led_by(img, away);
	await_grants(away);
	cr_assert_gt(lease_file(away, boot), boottime_ns(),
		     "target %u's lease file ends before its last grant", away);
	sys_kill9(&C, away);
	ms = restart_hold(away);
	cr_assert(ms > 0 && ms <= 3198, "target %u logged a hold of %ld ms", away, ms);
	overwrite_quarters(img, 5);
	cr_assert_gt(writes_held(away), 0, "target %u took writes at once, with "
		     "leases it granted before its restart still valid", away);
	expect_image("after", img, SCRUB_SPAN);
	expect_on_each_replica(img, SCRUB_SPAN);
	free(img);
}

/*
 * A lease file that cannot bind this start holds nothing: one of another
 * boot (with a time far ahead), one whose time has passed, one malformed.
 * And one of this boot with a time far ahead holds at most the longest
 * lease and its margin (the start's log line says how long).
 */
Test(sys_repl, a_stale_lease_file_holds_nothing)
{
	char *img = aligned_alloc(4096, SCRUB_SPAN);
	unsigned away = (unsigned)(getpid() % SYS_TARGETS);
	char boot[37], path[400];
	uint64_t until;
	long ms;

	cr_assert(img);
	map_set_lease(3000);
	(void)span_led_by(img, away);
	await_grants(away);
	snprintf(path, sizeof(path), "%s/target-%u.leases", C.run, away);

	/* Its time passed: killed, then started after it. */
	sys_kill9(&C, away);
	until = lease_file(away, boot);
	while (boottime_ns() <= until + 100000000ull)
		nanosleep(&(struct timespec){ .tv_nsec = 50000000 }, NULL);
	cr_assert_eq(restart_hold(away), -1);
	overwrite_quarters(img, 5);
	cr_assert_eq(writes_held(away), 0, "target %u held writes for leases "
		     "that had lapsed", away);

	/* Another boot's, ahead by a minute. */
	sys_kill9(&C, away);
	cr_assert_eq(sys_sh("printf 'weft-leases 1 %s %020llu\\n' > '%s'",
			    "00000000-0000-4000-8000-000000000000",
			    (unsigned long long)(boottime_ns() + 60000000000ull),
			    path), 0);
	cr_assert_eq(restart_hold(away), -1);
	overwrite_quarters(img, 6);
	cr_assert_eq(writes_held(away), 0, "target %u held writes for another "
		     "boot's leases", away);

	/* Malformed: a digit short. */
	sys_kill9(&C, away);
	cr_assert_eq(sys_sh("printf 'weft-leases 1 %s %019llu\\n' > '%s'", boot,
			    (unsigned long long)(boottime_ns() + 60000000000ull),
			    path), 0);
	cr_assert_eq(restart_hold(away), -1);
	overwrite_quarters(img, 7);
	cr_assert_eq(writes_held(away), 0);

	/* This boot's, ahead by a minute: held, but no longer than the
	 * longest lease (3,000 ms) and its margin (197 ms). */
	sys_kill9(&C, away);
	cr_assert_eq(sys_sh("printf 'weft-leases 1 %s %020llu\\n' > '%s'", boot,
			    (unsigned long long)(boottime_ns() + 60000000000ull),
			    path), 0);
	ms = restart_hold(away);
	cr_assert(ms > 0 && ms <= 3198, "target %u logged a hold of %ld ms", away, ms);
	overwrite_quarters(img, 8);
	cr_assert_gt(writes_held(away), 0);
	expect_image("after", img, SCRUB_SPAN);
	expect_on_each_replica(img, SCRUB_SPAN);
	free(img);
}

/* ---- leases given back early (docs/replication.md, "Early release") --- */

/* The release counters of target id (status version 6), and writes_held. */
struct rel_counts {
	uint64_t sent, received, holds, writes, held;
};

static struct rel_counts rel_counts(unsigned id)
{
	struct wf_ctl_status st = sys_ctl_status(C.run, id);

	return (struct rel_counts){
		.sent = le64toh(st.releases_sent),
		.received = le64toh(st.releases_received),
		.holds = le64toh(st.holds_released),
		.writes = le64toh(st.writes_released),
		.held = le64toh(st.writes_held),
	};
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define REL_BLKS 512u           /* blk_off's layout: 64 extents of vol3 */

/*
 * Single-block writes at QD 8 to random blocks of REL_BLKS (img holds
 * what each was last written with: every write must be acknowledged in
 * full), for after_ms after act(arg) ran, which runs once the stream has
 * gone for 300 ms.  Returns the longest gap between two acknowledgements
 * from the act on (ns).
 */
static uint64_t stream_through(char *img, uint64_t version0, void (*act)(void *),
			       void *arg, unsigned after_ms)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	uint8_t busy[REL_BLKS] = { 0 };
	uint64_t rng = (uint64_t)getpid(), start, acted = 0;
	uint64_t last = 0, gap = 0, v = version0, after = 0;
	unsigned out = 0;

	open_vol3(8000, &cl, &vol);
	start = mono_ns();
	for (;;) {
		uint64_t now = mono_ns();
		struct weft_cqe cqe[8];
		int n;

		if (!acted && now - start > 300000000ull) {
			act(arg);
			acted = last = now = mono_ns();
		}
		while (out < 8 && (!acted || now - acted < after_ms * 1000000ull)) {
			uint32_t b;

			do {
				rng = rng * 6364136223846793005ull + 1442695040888963407ull;
				b = (uint32_t)((rng >> 20) % REL_BLKS);
			} while (busy[b]);
			sys_fill(img + (size_t)b * SYS_BS, blk_off(b), ++v);
			cr_assert_eq(weft_write(vol, img + (size_t)b * SYS_BS, SYS_BS,
						blk_off(b), 0, b), 0);
			busy[b] = 1;
			out++;
		}
		if (!out)
			break;
		n = weft_wait(cl, cqe, 1, 8, 10000);
		cr_assert_gt(n, 0, "no write acknowledged in 10 s");
		now = mono_ns();
		for (int k = 0; k < n; k++) {
			cr_assert_eq(cqe[k].res, SYS_BS, "write of block %llu: %s",
				     (unsigned long long)cqe[k].user_data,
				     weft_strerror((int)cqe[k].res));
			busy[cqe[k].user_data] = 0;
			out--;
			after += acted != 0;
		}
		if (acted && now - last > gap)
			gap = now - last;
		last = now;
	}
	weft_cluster_close(cl);
	/* The stream went on through the change. */
	cr_assert(!after_ms || after > 8, "%llu writes acknowledged after the act",
		  (unsigned long long)after);
	return gap;
}

/* Every block of REL_BLKS reads back as img, through the map as it is. */
static void expect_blocks(const char *what, const char *img)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *buf = aligned_alloc(4096, SYS_BS);

	cr_assert(buf);
	open_vol3(10000, &cl, &vol);
	for (uint32_t b = 0; b < REL_BLKS; b++) {
		cr_assert_eq(weft_pread(vol, buf, SYS_BS, blk_off(b)), SYS_BS,
			     "%s: block %u", what, b);
		cr_assert(!memcmp(buf, img + (size_t)b * SYS_BS, SYS_BS),
			  "%s: block %u holds version %lld", what, b,
			  (long long)sys_decode(buf, blk_off(b)));
	}
	weft_cluster_close(cl);
	free(buf);
}

/* Every block of REL_BLKS written with version 1 (img too). */
static void fill_blocks(char *img)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;

	open_vol3(8000, &cl, &vol);
	for (uint32_t b = 0; b < REL_BLKS; b++) {
		sys_fill(img + (size_t)b * SYS_BS, blk_off(b), 1);
		cr_assert_eq(weft_pwrite(vol, img + (size_t)b * SYS_BS, SYS_BS,
					 blk_off(b), 0), SYS_BS);
	}
	weft_cluster_close(cl);
}

static void mark_out(void *arg)
{
	char cmd[64];

	snprintf(cmd, sizeof(cmd), "target out %u", *(const unsigned *)arg);
	cr_assert_eq(weftctl(cmd), 0);
}

/* Weight 0.25 beside the others' 1.0: it leads fewer PGs, still a member
 * of every PG of vol3 (three replicas on three targets), so nothing to
 * copy and no pins, only primaries move. */
static void reweight_low(void *arg)
{
	char cmd[64];

	snprintf(cmd, sizeof(cmd), "target reweight %u 0.25", *(const unsigned *)arg);
	cr_assert_eq(weftctl(cmd), 0);
}

/*
 * A planned change (act(&away): an edit of target `away`, a live primary)
 * under a stream of writes.  The members that granted it read leases must
 * hold the first writes to the PGs it led until those leases end; it is
 * alive and told the new epoch too, so once it serves that epoch it gives
 * them back and the holds end early: its releases_sent and the members'
 * holds_released move (a hold that only lapsed moves neither).  Every
 * block reads back as acknowledged, from each target of `members` (those
 * that hold every block after the change) alone too.  The stream's
 * longest gap between acknowledgements is logged (docs/replication.md).
 */
static void planned_change(const char *what, void (*act)(void *), unsigned away,
			   unsigned members)
{
	char *img = aligned_alloc(4096, (size_t)REL_BLKS * SYS_BS);
	struct rel_counts c0[SYS_TARGETS], c1[SYS_TARGETS];
	uint64_t holds = 0, received = 0, gap;

	cr_assert(img);
	memset(img, 0, (size_t)REL_BLKS * SYS_BS);
	/* Every block written once, and read: the primaries hold leases. */
	fill_blocks(img);
	expect_blocks("before", img);
	for (unsigned t = 0; t < SYS_TARGETS; t++)
		c0[t] = rel_counts(t);
	gap = stream_through(img, 1000000, act, &away, 2500);
	for (unsigned t = 0; t < SYS_TARGETS; t++)
		c1[t] = rel_counts(t);
	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		cr_log_info("target %u: releases sent %llu received %llu, holds "
			    "released %llu, writes held %llu released %llu", t,
			    (unsigned long long)(c1[t].sent - c0[t].sent),
			    (unsigned long long)(c1[t].received - c0[t].received),
			    (unsigned long long)(c1[t].holds - c0[t].holds),
			    (unsigned long long)(c1[t].held - c0[t].held),
			    (unsigned long long)(c1[t].writes - c0[t].writes));
		if (t == away)
			continue;
		holds += c1[t].holds - c0[t].holds;
		received += c1[t].received - c0[t].received;
	}
	fprintf(stderr, "  target %u %s under QD 8 writes: longest gap between "
		"acknowledgements %.1f ms\n", away, what, gap / 1e6);
	cr_assert_gt(c1[away].sent, c0[away].sent, "target %u, %s, gave back "
		     "no lease", away, what);
	cr_assert_gt(received, 0, "no member got target %u's release", away);
	cr_assert_gt(holds, 0, "no hold for target %u's leases ended by its "
		     "release", away);
	expect_blocks("after", img);
	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		char alone[64];

		if (!(members >> t & 1))
			continue;
		map_set_up(1u << t);
		snprintf(alone, sizeof(alone), "target %u alone", t);
		expect_blocks(alone, img);
	}
	map_set_up(ALL_UP);
	free(img);
}

/* `weftctl target out` of a live primary: the other two hold every block. */
Test(sys_repl, a_planned_change_ends_the_holds_by_release)
{
	unsigned away = (unsigned)(getpid() % SYS_TARGETS);

	planned_change("out", mark_out, away, ALL_UP & ~(1u << away));
}

/* `weftctl target reweight` of a live primary: the PGs whose primary
 * moves off it are held until its release; all three hold every block. */
Test(sys_repl, a_reweight_ends_the_holds_by_release)
{
	unsigned away = (unsigned)(getpid() % SYS_TARGETS);

	planned_change("reweighted to 0.25", reweight_low, away, ALL_UP);
}

/* ---- a rolling upgrade (docs/replication.md, "Mixed builds") ---------- */

/*
 * A member of a build before read leases (weft-target --fault-no-lease
 * stands in for it: its links announce nothing, its GRANTs say nothing,
 * and it closes a connection that sends LEASE or MAP_GET, as that build
 * does) beside two of this build.  They never send it a LEASE (its link
 * stays up) and serve the reads of the PGs it shares as before leases:
 * every extent, whoever leads it, reads back and takes writes.  Started
 * again without the option (upgraded), it is asked and grants again.
 */
Test(sys_repl, a_member_of_an_older_build_is_never_sent_a_lease)
{
	char *img = aligned_alloc(4096, SCRUB_SPAN);
	unsigned old = (unsigned)(getpid() % SYS_TARGETS);

	cr_assert(img);
	write_span(img);
	sys_kill9(&C, old);
	sys_restart_with(&C, old, C.map, C.run, "--fault-no-lease");
	expect_image("beside an older build", img, SCRUB_SPAN);
	overwrite_quarters(img, 5);
	expect_image("written beside an older build", img, SCRUB_SPAN);
	cr_assert_eq(le64toh(sys_ctl_status(C.run, old).leases_granted), 0);
	/* The upgrade. */
	sys_kill9(&C, old);
	sys_restart(&C, old);
	await_grants(old);
	overwrite_quarters(img, 6);
	expect_image("upgraded", img, SCRUB_SPAN);
	free(img);
}
