/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libweft against the in-test peer (tests/initiator/peer.c) over the real
 * fabric: splitting, routing, slot credits, the completion ring, retries,
 * timeouts, registered and bounced buffers.  The real weft-target is in
 * test_libweft_target.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "initiator/include/weft.h"
#include "initiator/weft_int.h"
#include "tests/initiator/peer.h"
#include "tests/initiator/util.h"

static struct peer P;

static struct weft_cluster *open_cl(unsigned qd, unsigned timeout_ms,
				    const char *transport)
{
	return tu_open(P.map_path, qd, timeout_ms, transport, 0);
}

static void start3(void)
{
	memset(&P, 0, sizeof(P));
	P.ntargets = 3;
	peer_start(&P);
}

static void stop(void)
{
	peer_stop(&P);
}

/* Where (target) the primary of the byte at off of vol1 is, by the
 * library's own table. */
static unsigned primary_of(struct weft_cluster *cl, struct weft_volume *v,
			   uint64_t off)
{
	struct wf_extent_loc loc;

	cr_assert_eq(wf_place_extent(&cl->table, &cl->map, v->idx, off, &loc), 0);
	return cl->map.targets[loc.acting[0]].id;
}

/* The last ERR line of the library. */
static void last_err(void *arg, int level, const char *msg)
{
	if (level <= WEFT_LOG_ERR)
		snprintf(arg, 512, "%s", msg);
}

Test(libweft, open_errors, .init = start3, .fini = stop)
{
	char said[512] = "";
	struct weft_cluster_opts o = { .size = sizeof(o), .map_path = "/nonexistent",
				       .log = last_err, .log_arg = said };
	struct weft_cluster *cl;
	struct weft_volume *v;
	int ret;

	/* Each -ENOENT says which: the map file or the volume. */
	cr_assert_eq(weft_cluster_open(&o, &cl), -ENOENT);
	cr_assert(strstr(said, "map file /nonexistent"), "said: %s", said);
	o.map_path = P.map_path;
	o.transport = "carrier-pigeon";
	cr_assert_eq(weft_cluster_open(&o, &cl), -EINVAL);
	cr_assert(strstr(said, "tcp, unix or verbs"), "names the transports: %s", said);
	/* rdma is verbs by its other name: not an unknown transport (it may
	 * fail for want of an RDMA device). */
	said[0] = 0;
	o.transport = "rdma";
	ret = weft_cluster_open(&o, &cl);
	cr_assert(!strstr(said, "unknown transport"), "said: %s", said);
	if (!ret)
		weft_cluster_close(cl);
	o.transport = NULL;
	cr_assert_eq(weft_cluster_open(&o, &cl), 0);
	cr_assert_eq(weft_volume_open(cl, "nope", &v), -ENOENT);
	cr_assert(strstr(said, "no volume \"nope\""), "said: %s", said);
	weft_cluster_close(cl);
	o.transport = NULL;
	/* A map that does not parse and one that cannot be read: their
	 * texts name the map, not a request's alignment or the target. */
	{
		char bad[] = "/tmp/weft-badmap-XXXXXX";
		int fd = mkstemp(bad);
		pid_t pid;
		int st;

		cr_assert_geq(fd, 0);
		cr_assert_eq(write(fd, "epoch = ;\n", 10), 10);
		close(fd);
		o.map_path = bad;
		ret = weft_cluster_open(&o, &cl);
		cr_assert_eq(ret, -EINVAL);
		cr_assert(strstr(weft_strerror(ret), "map"), "%s",
			  weft_strerror(ret));
		cr_assert_null(strstr(weft_strerror(ret), "target"));
		/* Mode 0600, read as uid 65534. */
		o.map_path = P.map_path;
		cr_assert_eq(chmod(P.map_path, 0600), 0);
		pid = fork();
		cr_assert_geq(pid, 0);
		if (!pid) {
			if (setgid(65534) || setuid(65534))
				_exit(2);
			ret = weft_cluster_open(&o, &cl);
			_exit(ret == -EACCES &&
			      strstr(weft_strerror(ret), "map file") ? 0 : 1);
		}
		cr_assert_eq(waitpid(pid, &st, 0), pid);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			  "unreadable map: wrong errno or text (%d)",
			  WEXITSTATUS(st));
		unlink(bad);
	}
	cl = open_cl(0, 0, NULL);
	cr_assert_eq(weft_volume_open(cl, "nope", &v), -ENOENT);
	v = tu_vol(cl, "vol1");
	cr_assert_eq(weft_volume_size(v), P.vol_size);
	cr_assert_eq(weft_volume_block_size(v), 4096);
	weft_volume_close(v);
	weft_cluster_close(cl);
}

Test(libweft, bad_requests, .init = start3, .fini = stop)
{
	struct weft_cluster *cl = open_cl(4, 0, NULL);
	struct weft_volume *v = tu_vol(cl, "vol1");
	char *buf = weft_buf_alloc(cl, 64 * KiB);

	cr_assert(buf);
	cr_assert_eq(weft_read(v, buf, 0, 0, 1), -EINVAL, "zero length");
	cr_assert_eq(weft_read(v, buf, 4096, 512, 1), -EINVAL, "unaligned offset");
	cr_assert_eq(weft_read(v, buf, 1000, 0, 1), -EINVAL, "unaligned length");
	cr_assert_eq(weft_read(v, NULL, 4096, 0, 1), -EINVAL, "no buffer");
	cr_assert_eq(weft_read(v, buf, 8192, P.vol_size - 4096, 1), -ERANGE);
	cr_assert_eq(weft_read(v, buf, 4096, P.vol_size, 1), -ERANGE);
	cr_assert_eq(weft_write(v, buf, 4096, 0, 0x80, 1), -EINVAL, "flags");
	cr_assert_eq(weft_pread(v, buf, 4096, UINT64_MAX - 4095), -ERANGE);
	cr_assert_eq(weft_inflight(cl), 0, "no request was queued");
	/* queue_depth parents at most */
	for (int i = 0; i < 4; i++)
		cr_assert_eq(weft_read(v, buf + i * 4096, 4096, 0, (uint64_t)i), 0);
	cr_assert_eq(weft_read(v, buf, 4096, 0, 9), -EAGAIN);
	{
		struct weft_cqe e[4];
		int got = 0;

		while (got < 4) {
			int n = weft_wait(cl, e + got, 1, 4 - got, 5000);

			cr_assert_gt(n, 0);
			got += n;
		}
	}
	cr_assert_eq(weft_inflight(cl), 0);
	weft_buf_free(cl, buf);
	weft_cluster_close(cl);
}

/* Write then read back a pattern across extents with both kinds of buffer;
 * the peer's images hold it on each extent's primary. */
static void roundtrip(struct weft_cluster *cl, struct weft_volume *v,
		      bool registered)
{
	size_t len = 3 * MiB + 64 * KiB;
	uint64_t off = MiB - 8 * KiB;   /* crosses four extent boundaries */
	struct tu_bufs b;

	tu_bufs_get(cl, len, registered, &b);
	tu_roundtrip(v, &b, off, len, registered ? 11 : 12);
	for (uint64_t o = off; o < off + len; o += 4096) {
		unsigned t = primary_of(cl, v, o);

		cr_assert_eq(memcmp(peer_image(&P, t, v->id) + o,
				    b.w + (o - off), 4096), 0,
			     "block at %llu is on its primary %u",
			     (unsigned long long)o, t);
	}
	for (unsigned t = 0; t < P.ntargets; t++) {
		cr_assert_eq(P.c[t].crossings, 0, "no request crosses an extent");
		cr_assert_eq(P.c[t].notprim, 0, "every request went to a primary");
		cr_assert_eq(P.c[t].bad, 0);
		cr_assert_leq(P.c[t].max_len, P.slot_size);
	}
	tu_bufs_put(cl, &b);
}

/* roundtrip on a handle of its own; returns how much the handle bounced. */
static uint64_t roundtrip_bounced(bool registered)
{
	struct weft_cluster *cl = open_cl(0, 0, NULL);
	uint64_t bounced;

	roundtrip(cl, tu_vol(cl, "vol1"), registered);
	bounced = cl->stats.bounced;
	weft_cluster_close(cl);
	return bounced;
}

Test(libweft, roundtrip_registered, .init = start3, .fini = stop)
{
	cr_assert_eq(roundtrip_bounced(true), 0, "registered buffers are not copied");
}

Test(libweft, roundtrip_bounced, .init = start3, .fini = stop)
{
	cr_assert_gt(roundtrip_bounced(false), 0, "heap buffers go through the pool");
}

Test(libweft, roundtrip_rep3_and_unix)
{
	struct weft_cluster *cl;
	struct weft_volume *v;

	memset(&P, 0, sizeof(P));
	P.ntargets = 3;
	P.transport = "unix";
	peer_start(&P);
	cl = open_cl(0, 0, "unix");
	v = tu_vol(cl, "vol3");
	roundtrip(cl, v, true);
	weft_cluster_close(cl);
	peer_stop(&P);
}

/* Few slots granted: the library never has more requests out on a
 * connection than slots, and everything still completes. */
Test(libweft, slot_credits)
{
	struct weft_cluster *cl;
	struct weft_volume *v;
	struct weft_cqe e[64];
	char *buf;
	int got = 0;

	memset(&P, 0, sizeof(P));
	P.ntargets = 1;
	P.slot_count = 3;
	peer_start(&P);
	cl = open_cl(64, 0, NULL);
	v = tu_vol(cl, "vol1");
	buf = weft_buf_alloc(cl, 64 * 4096);
	for (int i = 0; i < 64; i++)
		cr_assert_eq(weft_write(v, buf + i * 4096, 4096,
					(uint64_t)i * 4096 * 33, 0,
					(uint64_t)i), 0);
	cr_assert_eq(weft_inflight(cl), 64);
	while (got < 64) {
		int n = weft_wait(cl, e + got, 1, 64 - got, 5000);

		cr_assert_gt(n, 0, "completions keep coming");
		got += n;
	}
	for (int i = 0; i < 64; i++)
		cr_assert_eq(e[i].res, 4096);
	cr_assert_leq(P.c[0].max_inflight, 3, "at most slot_count in flight");
	cr_assert_eq(P.c[0].writes, 64);
	weft_cluster_close(cl);
	peer_stop(&P);
}

/* Slots smaller than the piece size: pieces are split to fit. */
Test(libweft, small_slots_split)
{
	struct weft_cluster *cl;
	struct weft_volume *v;
	char *w, *r;

	memset(&P, 0, sizeof(P));
	P.ntargets = 2;
	P.slot_size = 16 * KiB;
	peer_start(&P);
	cl = open_cl(8, 0, NULL);
	v = tu_vol(cl, "vol1");
	w = malloc(2 * MiB);
	r = malloc(2 * MiB);
	tu_fill(w, 2 * MiB, 5);
	cr_assert_eq(weft_pwrite(v, w, 2 * MiB, 512 * KiB, 0), 2 * MiB);
	cr_assert_eq(weft_pread(v, r, 2 * MiB, 512 * KiB), 2 * MiB);
	cr_assert_eq(memcmp(w, r, 2 * MiB), 0);
	for (unsigned t = 0; t < 2; t++) {
		cr_assert_leq(P.c[t].max_len, 16 * KiB);
		cr_assert_eq(P.c[t].bad, 0);
	}
	cr_assert_gt(cl->stats.splits, 0);
	free(w);
	free(r);
	weft_cluster_close(cl);
	peer_stop(&P);
}

/* More pieces than the pool: parents wait for pieces, in order. */
Test(libweft, carving_waits_for_pieces, .init = start3, .fini = stop)
{
	struct weft_cluster *cl = open_cl(4, 0, NULL);
	struct weft_volume *v = tu_vol(cl, "vol1");
	char *w = weft_buf_alloc(cl, 8 * MiB), *r = weft_buf_alloc(cl, 8 * MiB);
	struct weft_cqe e[4];
	int got = 0;

	cr_assert(w && r);
	tu_fill(w, 8 * MiB, 9);
	/* 4 parents of 2 MiB each = 64 pieces of 128 KiB with a pool of 4 */
	for (int i = 0; i < 4; i++)
		cr_assert_eq(weft_write(v, w + (size_t)i * 2 * MiB, 2 * MiB,
					(uint64_t)i * 2 * MiB, 0, (uint64_t)i), 0);
	while (got < 4) {
		int n = weft_wait(cl, e + got, 1, 4 - got, 5000);

		cr_assert_gt(n, 0);
		got += n;
	}
	for (int i = 0; i < 4; i++)
		cr_assert_eq(e[i].res, 2 * MiB);
	cr_assert_eq(weft_pread(v, r, 8 * MiB, 0), 8 * MiB);
	cr_assert_eq(memcmp(w, r, 8 * MiB), 0);
	weft_cluster_close(cl);
}

Test(libweft, discard_and_flush, .init = start3, .fini = stop)
{
	struct weft_cluster *cl = open_cl(0, 0, NULL);
	struct weft_volume *v = tu_vol(cl, "vol1");
	char *w = weft_buf_alloc(cl, 4 * MiB), *z = calloc(1, 4 * MiB);
	uint64_t flushes = 0, written = 0;

	tu_fill(w, 4 * MiB, 3);
	cr_assert_eq(weft_fsync(v), 0, "nothing to flush yet");
	cr_assert_eq(weft_pwrite(v, w, 4 * MiB, 0, WEFT_FUA), 4 * MiB);
	cr_assert_eq(weft_fsync(v), 0);
	for (unsigned t = 0; t < 3; t++) {
		flushes += P.c[t].flushes;
		written += P.c[t].writes ? 1 : 0;
	}
	cr_assert_eq(flushes, written, "one flush per target written to");
	cr_assert_eq(weft_discard_sync(v, MiB - 8192, 2 * MiB + 8192), 0);
	cr_assert_eq(weft_pread(v, w, 4 * MiB, 0), 4 * MiB);
	cr_assert_eq(memcmp(w + MiB - 8192, z, 2 * MiB + 8192), 0, "zeros");
	cr_assert_neq(memcmp(w, z, 4096), 0, "outside the discard: data");
	cr_assert_neq(memcmp(w + 3 * MiB, z, 4096), 0);
	free(z);
	weft_cluster_close(cl);
}

/* The map changes under a running client: STALE, reload, retry. */
Test(libweft, stale_epoch_reloads_map, .init = start3, .fini = stop)
{
	struct weft_cluster *cl = open_cl(0, 0, NULL);
	struct weft_volume *v = tu_vol(cl, "vol1");
	char *b = weft_buf_alloc(cl, MiB);

	cr_assert_eq(weft_pwrite(v, b, MiB, 0, 0), MiB);
	peer_bump_epoch(&P, 5);
	cr_assert_eq(weft_pread(v, b, MiB, 0), MiB);
	cr_assert_gt(cl->stats.stale, 0, "the target said STALE");
	cr_assert_eq(cl->map.epoch, 5, "the library loaded the new map");
	weft_cluster_close(cl);
}

Test(libweft, busy_is_retried, .init = start3, .fini = stop)
{
	struct weft_cluster *cl = open_cl(0, 0, NULL);
	struct weft_volume *v = tu_vol(cl, "vol1");
	char *b = weft_buf_alloc(cl, 64 * KiB);

	P.busy_n = 5;
	cr_assert_eq(weft_pwrite(v, b, 64 * KiB, 0, 0), 64 * KiB);
	cr_assert_eq(P.busy_n, 0);
	cr_assert_geq(cl->stats.retries, 5);
	/* STALE without a newer map file: retried with backoff, then fine */
	P.stale_n = 2;
	cr_assert_eq(weft_pread(v, b, 64 * KiB, 0), 64 * KiB);
	weft_cluster_close(cl);
}

Test(libweft, dnr_fails_at_once, .init = start3, .fini = stop)
{
	struct weft_cluster *cl = open_cl(0, 0, NULL);
	struct weft_volume *v = tu_vol(cl, "vol1");
	char *b = weft_buf_alloc(cl, 64 * KiB);

	cr_assert_eq(weft_pwrite(v, b, 4096, 0, 0), 4096);   /* connected */
	P.dnr_status = WF_WS_IO;
	cr_assert_eq(weft_pwrite(v, b, 4096, 0, 0), -EIO);
	P.dnr_status = WF_WS_NOSPC;
	cr_assert_eq(weft_pwrite(v, b, 4096, 0, 0), -ENOSPC);
	/* without DNR: a few tries (a transient error passes), then the
	 * errno, quickly */
	P.io_n = 2;
	cr_assert_eq(weft_pwrite(v, b, 4096, 0, 0), 4096);
	P.io_n = 100;
	{
		double t0 = tu_now_s();

		cr_assert_eq(weft_pwrite(v, b, 4096, 0, 0), -EIO);
		cr_assert_lt(tu_now_s() - t0, 2.0);
	}
	P.io_n = 0;
	P.dnr_status = WF_WS_BUSY;      /* even a transient one, with DNR */
	cr_assert_eq(weft_pread(v, b, 4096, 0), -EAGAIN);
	cr_assert_eq(weft_pread(v, b, 4096, 0), 4096);
	weft_cluster_close(cl);
}

Test(libweft, connection_loss_reconnects, .init = start3, .fini = stop)
{
	struct weft_cluster *cl = open_cl(0, 0, NULL);
	struct weft_volume *v = tu_vol(cl, "vol1");
	char *w = weft_buf_alloc(cl, 4 * MiB), *r = weft_buf_alloc(cl, 4 * MiB);
	uint64_t hellos = 0;

	tu_fill(w, 4 * MiB, 77);
	cr_assert_eq(weft_pwrite(v, w, 4 * MiB, 0, 0), 4 * MiB);
	for (int i = 0; i < 5; i++) {
		P.drop_after = 3;
		cr_assert_eq(weft_pread(v, r, 4 * MiB, 0), 4 * MiB);
		cr_assert_eq(memcmp(w, r, 4 * MiB), 0);
	}
	for (unsigned t = 0; t < 3; t++)
		hellos += P.c[t].hellos;
	cr_assert_gt(hellos, 3, "reconnected after drops");
	weft_cluster_close(cl);
}

/* A target that accepts and never answers: -ETIMEDOUT near timeout_ms. */
Test(libweft, hung_target_times_out, .init = start3, .fini = stop)
{
	struct weft_cluster *cl = open_cl(0, 300, NULL);
	struct weft_volume *v = tu_vol(cl, "vol1");
	char *b = weft_buf_alloc(cl, 64 * KiB);
	double t0;
	ssize_t r;

	cr_assert_eq(weft_pwrite(v, b, 4096, 0, 0), 4096);
	P.silent = 1;
	t0 = tu_now_s();
	r = weft_pread(v, b, 4096, 0);
	cr_assert_eq(r, -ETIMEDOUT, "%zd", r);
	cr_assert_lt(tu_now_s() - t0, 3.0, "bounded by the timeout");
	P.silent = 0;
	cr_assert_eq(weft_pread(v, b, 4096, 0), 4096, "works again after");
	weft_cluster_close(cl);
}

/* Nobody listens at all: -ETIMEDOUT, not a hang. */
Test(libweft, absent_target_times_out)
{
	struct weft_cluster *cl;
	struct weft_volume *v;
	char b[4096];
	double t0;

	memset(&P, 0, sizeof(P));
	P.ntargets = 1;
	peer_start(&P);
	cl = open_cl(0, 400, NULL);
	v = tu_vol(cl, "vol1");
	{
		/* keep the map, lose the listener */
		struct peer keep = P;

		peer_stop(&P);
		P = keep;
	}
	t0 = tu_now_s();
	cr_assert_eq(weft_pread(v, b, 4096, 0), -ETIMEDOUT);
	cr_assert_lt(tu_now_s() - t0, 3.0);
	weft_cluster_close(cl);
}

/* The ring as an application event loop uses it: weft_fd + weft_poll. */
Test(libweft, fd_and_poll, .init = start3, .fini = stop)
{
	struct weft_cluster *cl = open_cl(32, 0, NULL);
	struct weft_volume *v = tu_vol(cl, "vol1");
	char *b = weft_buf_alloc(cl, 32 * 4096);
	struct weft_cqe e[32];
	bool seen[32] = { false };
	int got = 0, fd = weft_fd(cl);
	double t0 = tu_now_s();

	cr_assert_geq(fd, 0);
	cr_assert_eq(weft_wait(cl, e, 1, 1, 50), 0, "nothing queued: returns");
	for (int i = 0; i < 32; i++)
		cr_assert_eq(weft_read(v, b + i * 4096, 4096,
				       (uint64_t)i * 3 * MiB / 2 & ~4095ull, 7000 + (uint64_t)i), 0);
	while (got < 32) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int n = weft_poll(cl, e + got, 32 - got);

		cr_assert_geq(n, 0);
		got += n;
		if (!n)
			cr_assert_geq(poll(&pfd, 1, 1000), 0);
		cr_assert_lt(tu_now_s() - t0, 10.0, "completions arrive");
	}
	for (int i = 0; i < 32; i++) {
		cr_assert_geq(e[i].user_data, 7000);
		cr_assert_lt(e[i].user_data, 7032);
		cr_assert_not(seen[e[i].user_data - 7000], "each completes once");
		seen[e[i].user_data - 7000] = true;
		cr_assert_eq(e[i].res, 4096);
	}
	cr_assert_eq(weft_poll(cl, e, 32), 0);
	weft_cluster_close(cl);
}

/* The registered arena's allocator. */
Test(libweft, buf_alloc, .init = start3, .fini = stop)
{
	struct weft_cluster *cl = open_cl(0, 0, NULL);
	void *a = weft_buf_alloc(cl, 1), *b = weft_buf_alloc(cl, 10000);
	void *c = weft_buf_alloc(cl, 4096), *d;

	cr_assert(a && b && c);
	cr_assert_eq((uintptr_t)a % 4096, 0);
	cr_assert_eq((uintptr_t)b % 4096, 0);
	cr_assert_eq((char *)b - (char *)a, 4096, "first fit, rounded to pages");
	cr_assert_eq((char *)c - (char *)b, 12288);
	weft_buf_free(cl, b);
	d = weft_buf_alloc(cl, 8192);
	cr_assert_eq(d, b, "the freed hole is reused");
	weft_buf_free(cl, a);
	weft_buf_free(cl, c);
	weft_buf_free(cl, d);
	cr_assert_eq(cl->mem.nsegs, 1, "everything coalesced");
	cr_assert_null(weft_buf_alloc(cl, cl->mem.arena_len + 1));
	a = weft_buf_alloc(cl, cl->mem.arena_len);
	cr_assert_not_null(a, "the whole arena");
	cr_assert_null(weft_buf_alloc(cl, 4096));
	weft_buf_free(cl, a);
	weft_cluster_close(cl);
}

/* A new epoch moves target 0 to another port and deletes vol3: the old
 * connection is closed, a new one made, vol3's handle answers -ENOENT. */
Test(libweft, map_change_moves_target_and_deletes_volume, .init = start3,
     .fini = stop)
{
	struct weft_cluster *cl = open_cl(0, 0, NULL);
	struct weft_volume *v = tu_vol(cl, "vol1"), *v3 = tu_vol(cl, "vol3");
	char *w = weft_buf_alloc(cl, 8 * MiB), *r = weft_buf_alloc(cl, 8 * MiB);
	double t0;

	tu_fill(w, 8 * MiB, 31);
	cr_assert_eq(weft_pwrite(v, w, 8 * MiB, 0, 0), 8 * MiB);
	cr_assert_eq(weft_pwrite(v3, w, 4096, 0, 0), 4096);
	cr_assert_eq(peer_conns(&P, 0), 1);
	P.no_vol3 = 1;
	peer_move_target(&P, 0, 3);
	cr_assert_eq(weft_pread(v, r, 8 * MiB, 0), 8 * MiB);
	cr_assert_eq(memcmp(w, r, 8 * MiB), 0);
	cr_assert_eq(cl->map.epoch, 3);
	cr_assert_eq(weft_pread(v3, r, 4096, 0), -ENOENT, "vol3 is gone");
	cr_assert_eq(weft_volume_open(cl, "vol3", &v3), -ENOENT);
	t0 = tu_now_s();
	while (peer_conns(&P, 0) != 1 && tu_now_s() - t0 < 5)
		usleep(1000);
	cr_assert_eq(peer_conns(&P, 0), 1, "the connection to the old "
		     "address was closed, one to the new one is open");
	cr_assert_gt(P.c[0].hellos, 1);
	weft_cluster_close(cl);
}

/* qd=2: both complete, one is reaped, two more are offered.  The ring has
 * room for one more request only; every user_data comes back exactly once
 * (an unreaped completion must never be overwritten). */
Test(libweft, unreaped_completion_not_overwritten, .init = start3,
     .fini = stop)
{
	struct weft_cluster *cl = open_cl(2, 0, NULL);
	struct weft_volume *v = tu_vol(cl, "vol1");
	char *b = weft_buf_alloc(cl, 4 * 4096);
	unsigned seen[5] = { 0 }, submitted = 0, got = 0;
	struct weft_cqe e[4];
	double t0;
	int n, ret;

	cr_assert(b);
	cr_assert_eq(weft_write(v, b, 4096, 0, 0, 1), 0);
	cr_assert_eq(weft_write(v, b + 4096, 4096, 4096, 0, 2), 0);
	submitted = 2;
	/* Both complete; nothing reaped yet. */
	t0 = tu_now_s();
	while (cl->cq_count < 2 && tu_now_s() - t0 < 5)
		cr_assert_geq(wf_progress(cl), 0);
	cr_assert_eq(cl->cq_count, 2);
	cr_assert_eq(weft_poll(cl, e, 1), 1);
	seen[e[0].user_data]++;
	got = 1;
	for (uint64_t id = 3; id <= 4; id++) {
		ret = weft_write(v, b + (id - 1) * 4096, 4096, (id - 1) * 4096,
				 0, id);
		if (ret == -EAGAIN)
			break;
		cr_assert_eq(ret, 0);
		submitted++;
	}
	/* Let everything complete before reaping (where an overwrite
	 * would happen). */
	t0 = tu_now_s();
	while (cl->inflight && tu_now_s() - t0 < 5)
		cr_assert_geq(wf_progress(cl), 0);
	cr_assert_eq(cl->inflight, 0);
	while (got < submitted) {
		n = weft_wait(cl, e, 1, 4, 5000);
		cr_assert_gt(n, 0);
		for (int i = 0; i < n; i++) {
			cr_assert_lt(e[i].user_data, 5);
			cr_assert_eq(e[i].res, 4096);
			seen[e[i].user_data]++;
		}
		got += (unsigned)n;
	}
	cr_assert_eq(weft_poll(cl, e, 4), 0, "no extra completion");
	for (unsigned id = 1; id <= submitted; id++)
		cr_assert_eq(seen[id], 1, "user_data %u delivered %u times", id,
			     seen[id]);
	cr_assert_eq(submitted, 3, "room for one more request only");
	/* Once reaped, the full depth is usable again. */
	cr_assert_eq(weft_write(v, b, 4096, 0, 0, 1), 0);
	cr_assert_eq(weft_write(v, b, 4096, 4096, 0, 2), 0);
	cr_assert_eq(weft_write(v, b, 4096, 8192, 0, 3), -EAGAIN);
	weft_buf_free(cl, b);
	weft_cluster_close(cl);
}

/* A handle on vol1 with block 0 written from *b (one registered block)
 * and not flushed yet; returns the target primary for it. */
static unsigned dirty_block0(struct weft_cluster **cl, struct weft_volume **v,
			     char **b)
{
	*cl = open_cl(0, 0, NULL);
	*v = tu_vol(*cl, "vol1");
	*b = weft_buf_alloc(*cl, 4096);
	cr_assert(*b);
	cr_assert_eq(weft_pwrite(*v, *b, 4096, 0, 0), 4096);
	return primary_of(*cl, *v, 0);
}

/* A flush that fails leaves its target to be flushed again. */
Test(libweft, failed_flush_is_redone, .init = start3, .fini = stop)
{
	struct weft_cluster *cl;
	struct weft_volume *v;
	char *b;
	unsigned t = dirty_block0(&cl, &v, &b);

	P.dnr_status = WF_WS_IO;
	cr_assert_eq(weft_fsync(v), -EIO);
	cr_assert_eq(P.c[t].flushes, 0);
	cr_assert_eq(weft_fsync(v), 0);
	cr_assert_eq(P.c[t].flushes, 1, "the retried fsync flushed target %u", t);
	cr_assert_eq(weft_fsync(v), 0);
	cr_assert_eq(P.c[t].flushes, 1, "nothing written since: no flush");
	weft_cluster_close(cl);
}

/* A target that moves (new connection) keeps its unflushed writes. */
Test(libweft, dirty_survives_map_change, .init = start3, .fini = stop)
{
	struct weft_cluster *cl;
	struct weft_volume *v;
	char *b;
	unsigned t = dirty_block0(&cl, &v, &b);

	peer_move_target(&P, t, 3);
	/* Any request now meets STALE: the map is reloaded, t's connection
	 * replaced. */
	cr_assert_eq(weft_pread(v, b, 4096, 0), 4096);
	cr_assert_eq(cl->map.epoch, 3);
	cr_assert_eq(weft_fsync(v), 0);
	cr_assert_eq(P.c[t].flushes, 1, "the moved target %u was flushed", t);
	weft_cluster_close(cl);
}

/* weft_wait's polling, by the handle's counters (never by time): the
 * default handle spins exactly when the rule of spin.h says so for the
 * requests in flight and its estimate; WEFT_F_NO_SPIN never spins; a
 * fixed spin_us spins at every wait; and "never" with a budget is refused. */
#define SPIN_IOS (WF_SPIN_CALM + 100)  /* the rule needs WF_SPIN_CALM first */

static void spin_ios(struct weft_cluster *cl, unsigned *predicted,
		     unsigned *wrong)
{
	struct weft_volume *v = tu_vol(cl, "vol1");
	char *b = weft_buf_alloc(cl, 4096);

	cr_assert(b);
	*predicted = *wrong = 0;
	for (int i = 0; i < SPIN_IOS; i++) {
		struct weft_stats s0 = { .size = sizeof(s0) }, s1 = { .size = sizeof(s1) };
		uint64_t off = (uint64_t)(i % 16) * MiB;
		bool spin;

		cr_assert_eq(weft_stats(cl, &s0), 0);
		{
			/* Whether the rule lets a wait choose at all (its
			 * score and back-off aside): estimate, depth and
			 * settings do not change until the completion, so
			 * where this says no, no wait may spin. */
			struct wf_spin st = { .est_us = cl->spin.est_us,
					      .calm = cl->spin.calm };
			enum wf_spin_how how;

			cr_assert_eq(st.est_us, s0.spin_est_us);
			spin = wf_spin_budget_us(&st, 1, cl->spin_us,
						 cl->spin_never, &how) != 0;
		}
		*predicted += spin;
		memset(b, i, 4096);
		cr_assert_eq(i & 1 ? weft_pread(v, b, 4096, off) :
			     weft_pwrite(v, b, 4096, off, 0), 4096);
		cr_assert_eq(weft_stats(cl, &s1), 0);
		cr_assert_gt(s1.spin_est_us, 0, "a completion gives an estimate");
		cr_assert_leq(s1.spin_hits, s1.spins);
		if (!spin)
			cr_assert_eq(s1.spins, s0.spins, "spun against the rule "
				     "(estimate %u us)", s0.spin_est_us);
		else
			*wrong += s1.spins == s0.spins;     /* chose to sleep,
							     * backed off, or the
							     * reply was in at once */
	}
	weft_buf_free(cl, b);
	weft_volume_close(v);
}

Test(libweft, adaptive_polling, .init = start3, .fini = stop)
{
	struct weft_cluster_opts o = { .size = sizeof(o), .map_path = P.map_path,
				       .spin_us = 5, .flags = WEFT_F_NO_SPIN };
	struct weft_stats s = { .size = sizeof(s) };
	struct weft_cluster *cl;
	unsigned predicted, missed;

	cr_assert_eq(weft_cluster_open(&o, &cl), -EINVAL, "never, and spin 5 us");

	/* The default (spin_us 0, no flag): adaptive. */
	o.spin_us = 0;
	o.flags = 0;
	cr_assert_eq(weft_cluster_open(&o, &cl), 0);
	spin_ios(cl, &predicted, &missed);
	cr_assert_eq(weft_stats(cl, &s), 0);
	/* The estimate is of this loaded machine: when it stayed above the
	 * rule's bound no wait may spin (checked above), else they did. */
	if (predicted >= 10)
		cr_assert_lt(missed, predicted, "the rule said spin %u times, "
			     "no wait spun", predicted);
	cr_assert_leq(s.spin_hits, s.spins);
	weft_cluster_close(cl);

	o.flags = WEFT_F_NO_SPIN;
	cr_assert_eq(weft_cluster_open(&o, &cl), 0);
	spin_ios(cl, &predicted, &missed);
	cr_assert_eq(predicted, 0);
	cr_assert_eq(weft_stats(cl, &s), 0);
	cr_assert_eq(s.spins, 0, "WEFT_F_NO_SPIN spun");
	cr_assert_eq(s.spin_ns, 0);
	weft_cluster_close(cl);

	/* A fixed budget: every wait spins, and a second is longer than any
	 * reply here, so they are hits. */
	o.flags = 0;
	o.spin_us = 1000000;
	cr_assert_eq(weft_cluster_open(&o, &cl), 0);
	spin_ios(cl, &predicted, &missed);
	cr_assert_eq(predicted, SPIN_IOS);
	cr_assert_eq(weft_stats(cl, &s), 0);
	cr_assert_geq(s.spins, SPIN_IOS - 5, "fixed spin_us: %llu of %d waits "
		      "spun", (unsigned long long)s.spins, SPIN_IOS);
	cr_assert_geq(s.spin_hits, SPIN_IOS - 5);
	cr_assert_gt(s.spin_ns, 0);
	weft_cluster_close(cl);
}
