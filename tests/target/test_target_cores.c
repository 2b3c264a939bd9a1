/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-target --cores N, seen through the wire protocol: the GRANT says
 * how many reactors there are, reactor k listens on the port + k and on
 * the unix socket path + ".k", a request reaches the store through any
 * reactor (the extent's owner does the I/O), a map reload reaches every
 * reactor, status counts every reactor, SIGTERM drains them all.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto/ctl.h"
#include "tests/target/tgt.h"

static void addr_k(const struct tgt_env *e, unsigned k, char *buf, size_t len)
{
	snprintf(buf, len, "tcp:127.0.0.1:%u", e->port + k);
}

static void sleep_ms(unsigned ms)
{
	usleep(ms * 1000);
}

static struct wf_ctl_status ctl(const struct tgt_env *e, uint16_t op)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct wf_ctl_req q = { 0 };
	struct wf_ctl_status s;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	int n;

	cr_assert(fd >= 0);
	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%.90s/target-0.ctl", e->run);
	cr_assert(n > 0 && (size_t)n < sizeof(sa.sun_path));
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	q.magic = htole32(WF_CTL_MAGIC);
	q.version = htole16(WF_CTL_VERSION);
	q.op = htole16(op);
	cr_assert_eq(send(fd, &q, sizeof(q), 0), (ssize_t)sizeof(q));
	cr_assert_eq(recv(fd, &s, sizeof(s), 0), (ssize_t)sizeof(s));
	close(fd);
	return s;
}

Test(target_cores, grant_encoding)
{
	struct wf_grant g = { .status = WF_WS_OK, .epoch = 3, .target_id = 1,
			      .slot_count = 2, .slot_size = 4096, .reactors = 1,
			      .ring = { .addr = 4096, .key = 5, .len = 8192 } }, o;
	struct wf_grant_hdr h;
	uint32_t why;

	/* One reactor: the field stays 0, as before it existed. */
	wf_grant_encode(&g, &h);
	cr_assert_eq(h.reactors, 0);
	cr_assert_eq(wf_grant_decode(&h, sizeof(h), &o, &why), 0);
	cr_assert_eq(o.reactors, 1);
	g.reactors = 0;
	wf_grant_encode(&g, &h);
	cr_assert_eq(h.reactors, 0);
	g.reactors = 3;
	wf_grant_encode(&g, &h);
	cr_assert_eq(le32toh(h.reactors), 3);
	cr_assert_eq(wf_grant_decode(&h, sizeof(h), &o, &why), 0);
	cr_assert_eq(o.reactors, 3);
	/* 1 is never sent (it is 0); past the limit is not a weft grant. */
	h.reactors = htole32(1);
	cr_assert_eq(wf_grant_decode(&h, sizeof(h), &o, &why), -EPROTO);
	h.reactors = htole32(WF_WIRE_MAX_REACTORS + 1);
	cr_assert_eq(wf_grant_decode(&h, sizeof(h), &o, &why), -EPROTO);
}

Test(target_cores, bad_core_counts_refused)
{
	char err[512];

	cr_assert_eq(tgt_run(err, sizeof(err), "-c", "/nonexistent", "--id", "0",
			     "--cores", "0", NULL), 2);
	cr_assert(strstr(err, "--cores"), "%s", err);
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", "/nonexistent", "--id", "0",
			     "--cores", "257", NULL), 2);
}

/* Every extent written through one reactor reads back through the other
 * (whichever owns it does the store I/O); unix sockets per reactor. */
Test(target_cores, any_reactor_serves_any_extent, .timeout = 60)
{
	static char w[65536], r[65536];
	struct tgt_env e;
	struct tgt_client c[3];
	struct wf_ctl_status st;
	char addr[256];

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, false, "--cores", "2", NULL), 0);
	for (unsigned k = 0; k < 2; k++) {
		addr_k(&e, k, addr, sizeof(addr));
		cr_assert_eq(tgt_connect(&c[k], addr, TGT_SLOTS, 1), 0, "reactor %u", k);
		cr_assert_eq(c[k].g.reactors, 2, "GRANT of reactor %u", k);
	}
	snprintf(addr, sizeof(addr), "unix:%s/target-0.sock.1", e.run);
	cr_assert_eq(tgt_connect(&c[2], addr, TGT_SLOTS, 1), 0);
	cr_assert_eq(c[2].g.reactors, 2);

	st = ctl(&e, WF_CTL_STATUS);
	cr_assert_eq(le32toh(st.connections), 3, "status counts every reactor");
	for (unsigned i = 0; i < 12; i++) {
		uint64_t off = tgt_extent_of(&e, 0, i) + (i % 4) * 65536;
		struct tgt_client *wc = &c[i % 3], *rc = &c[(i + 1) % 3];

		tgt_pattern(w, sizeof(w), 1000 + i);
		cr_assert_eq(tgt_io(wc, WF_OP_WRITE, TGT_VOL, off, sizeof(w), w, 1),
			     WF_WS_OK, "write %u", i);
		memset(r, 0, sizeof(r));
		cr_assert_eq(tgt_io(rc, WF_OP_READ, TGT_VOL, off, sizeof(r), r, 1),
			     WF_WS_OK, "read %u", i);
		cr_assert_eq(memcmp(w, r, sizeof(w)), 0, "extent %u differs", i);
	}
	/* A whole-extent discard through one reactor, read through another. */
	{
		uint64_t off = tgt_extent_of(&e, 0, 0);

		cr_assert_eq(tgt_io(&c[1], WF_OP_DISCARD, TGT_VOL, off, TGT_EXT, NULL,
				    1), WF_WS_OK);
		memset(r, 0xff, sizeof(r));
		cr_assert_eq(tgt_io(&c[0], WF_OP_READ, TGT_VOL, off, sizeof(r), r, 1),
			     WF_WS_OK);
		for (size_t i = 0; i < sizeof(r); i++)
			cr_assert_eq(r[i], 0, "discarded extent not zero at %zu", i);
	}
	st = ctl(&e, WF_CTL_STATUS);
	cr_assert_eq(le64toh(st.used), 11, "12 extents written, 1 discarded");
	cr_assert(le64toh(st.writes) >= 12 && le64toh(st.reads) >= 13);
	for (unsigned k = 0; k < 3; k++)
		tgt_close(&c[k]);
	cr_assert_eq(tgt_kill(&e, SIGTERM, true), 0);
	tgt_env_fini(&e);
}

/* SIGHUP (and RELOAD) reach reactor 1 too: a request with the old epoch
 * is answered STALE there with the new one. */
Test(target_cores, map_reload_reaches_every_reactor, .timeout = 60)
{
	static char buf[4096];
	struct tgt_env e;
	struct tgt_client c[2];
	struct wf_ctl_status st;
	char addr[256];
	uint64_t off;

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, false, "--cores", "2", NULL), 0);
	off = tgt_extent_of(&e, 0, 1);
	for (unsigned k = 0; k < 2; k++) {
		addr_k(&e, k, addr, sizeof(addr));
		cr_assert_eq(tgt_connect(&c[k], addr, TGT_SLOTS, 1), 0);
		cr_assert_eq(tgt_io(&c[k], WF_OP_READ, TGT_VOL, off, 4096, buf, 1),
			     WF_WS_OK);
	}
	tgt_env_write_map(&e, 2);
	cr_assert_eq(tgt_kill(&e, SIGHUP, false), 0);
	for (unsigned k = 0; k < 2; k++) {
		int ret = -1;

		/* The reload is asynchronous: a short bounded wait. */
		for (unsigned i = 0; i < 100; i++) {
			ret = tgt_io(&c[k], WF_OP_READ, TGT_VOL, off, 4096, buf, 1);
			if (ret == WF_WS_STALE)
				break;
			sleep_ms(20);
		}
		cr_assert_eq(ret, WF_WS_STALE, "reactor %u still serves epoch 1", k);
		cr_assert_eq(c[k].last.epoch, 2);
		cr_assert_eq(tgt_io(&c[k], WF_OP_READ, TGT_VOL, off, 4096, buf, 2),
			     WF_WS_OK);
	}
	/* The control socket's RELOAD too. */
	tgt_env_write_map(&e, 3);
	st = ctl(&e, WF_CTL_RELOAD);
	cr_assert_eq(le64toh(st.epoch), 3);
	for (unsigned k = 0; k < 2; k++) {
		int ret = -1;

		for (unsigned i = 0; i < 100; i++) {
			ret = tgt_io(&c[k], WF_OP_READ, TGT_VOL, off, 4096, buf, 2);
			if (ret == WF_WS_STALE)
				break;
			sleep_ms(20);
		}
		cr_assert_eq(ret, WF_WS_STALE, "reactor %u still serves epoch 2", k);
		cr_assert_eq(c[k].last.epoch, 3);
	}
	for (unsigned k = 0; k < 2; k++)
		tgt_close(&c[k]);
	cr_assert_eq(tgt_kill(&e, SIGTERM, true), 0);
	tgt_env_fini(&e);
}

/* SIGTERM with writes in flight on three reactors: all answered, clean
 * exit, no socket left, acknowledged data there after a restart. */
Test(target_cores, sigterm_drains_every_reactor, .timeout = 60)
{
	struct tgt_env e;
	struct tgt_client c[3];
	struct wf_reply rep;
	char addr[256], path[256];
	unsigned ok[3] = { 0 };
	int ret;

	tgt_env_init(&e, 1);
	/* target 1 of the test map is port + 1: never started, so free */
	cr_assert_eq(tgt_start(&e, true, "--cores", "3", NULL), 0);
	for (unsigned k = 0; k < 3; k++) {
		addr_k(&e, k, addr, sizeof(addr));
		cr_assert_eq(tgt_connect(&c[k], addr, TGT_SLOTS, 1), 0);
		for (uint32_t s = 0; s < TGT_SLOTS; s++) {
			uint64_t off = tgt_extent_of(&e, 0, k) + s * 65536ull;

			tgt_pattern(c[k].buf + (size_t)s * c[k].g.slot_size,
				    TGT_SLOT_SZ, k * 100 + s);
			cr_assert_eq(tgt_post(&c[k], WF_OP_WRITE, TGT_VOL, off,
					      TGT_SLOT_SZ, s, WF_REQ_FUA, 1), 0);
		}
	}
	kill(e.pid, SIGTERM);
	for (unsigned k = 0; k < 3; k++) {
		for (unsigned n = 0; n < TGT_SLOTS; n++) {
			ret = tgt_reply(&c[k], &rep, 10000);
			cr_assert_eq(ret, 0, "reactor %u: request %u unanswered: %s", k,
				     n, strerror(-ret));
			cr_assert(rep.status == WF_WS_OK || rep.status == WF_WS_BUSY,
				  "status %s", wf_wire_status_name(rep.status));
			if (rep.status == WF_WS_OK)
				ok[k] |= 1u << rep.slot;
		}
		cr_assert(tgt_wait_closed(&c[k], 10000), "reactor %u: not closed", k);
	}
	cr_assert_eq(tgt_kill(&e, 0, true), 0, "exit status");
	for (unsigned k = 0; k < 3; k++) {
		if (k)
			snprintf(path, sizeof(path), "%s/target-0.sock.%u", e.run, k);
		else
			snprintf(path, sizeof(path), "%s/target-0.sock", e.run);
		cr_assert_neq(access(path, F_OK), 0, "%s left behind", path);
		tgt_close(&c[k]);
	}
	cr_assert_eq(tgt_start(&e, false, "--cores", "2", NULL), 0);
	addr_k(&e, 1, addr, sizeof(addr));
	cr_assert_eq(tgt_connect(&c[0], addr, TGT_SLOTS, 1), 0);
	for (unsigned k = 0; k < 3; k++)
		for (uint32_t s = 0; s < TGT_SLOTS; s++) {
			static char w[TGT_SLOT_SZ], r[TGT_SLOT_SZ];
			uint64_t off = tgt_extent_of(&e, 0, k) + s * 65536ull;

			if (!(ok[k] & 1u << s))
				continue;
			tgt_pattern(w, TGT_SLOT_SZ, k * 100 + s);
			cr_assert_eq(tgt_io(&c[0], WF_OP_READ, TGT_VOL, off, TGT_SLOT_SZ,
					    r, 1), WF_WS_OK);
			cr_assert_eq(memcmp(w, r, TGT_SLOT_SZ), 0,
				     "acknowledged write %u/%u lost", k, s);
		}
	tgt_close(&c[0]);
	cr_assert_eq(tgt_kill(&e, SIGTERM, true), 0);
	tgt_env_fini(&e);
}

/*
 * The reconnect fence with reactors: a client's old connection to reactor
 * 1 has writes in flight, deferred behind whole-extent discards, on
 * extents owned by either reactor (so some run on reactor 0's queue); it
 * is dropped (even rounds: closed; odd: abandoned) and a new connection
 * of the same client to reactor 1 at once writes newer data to the same
 * blocks: the newer data must stay.
 */
Test(target_cores, reconnect_fenced_across_reactor_queues, .timeout = 120)
{
	enum { NEXT = 8, ROUNDS = 8 };
	struct tgt_env e;
	char addr[256];
	uint64_t base[NEXT];

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, false, "--cores", "2", NULL), 0);
	addr_k(&e, 1, addr, sizeof(addr));
	for (unsigned k = 0; k < NEXT; k++)
		base[k] = tgt_extent_of(&e, 0, k);
	for (unsigned round = 0; round < ROUNDS; round++)
		tgt_reconnect_round(addr, base, NEXT, round);
	cr_assert_eq(tgt_kill(&e, SIGTERM, true), 0);
	tgt_env_fini(&e);
}
