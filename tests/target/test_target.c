/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-target as a process: start it on loopback, talk to it with the raw
 * fabric + wire API.  Grant, write/read/verify through slots, every error
 * status, garbage peers, SIGTERM drain, SIGHUP and newer-epoch reloads,
 * the control socket, startup errors.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "proto/ctl.h"
#include "target/store.h"
#include "tests/target/tgt.h"

static void addr_tcp(const struct tgt_env *e, char *buf, size_t len)
{
	snprintf(buf, len, "tcp:127.0.0.1:%u", e->port);
}

static void addr_unix(const struct tgt_env *e, char *buf, size_t len)
{
	snprintf(buf, len, "unix:%s/target-0.sock", e->run);
}

Test(target, grant_and_rw_over_tcp_and_unix, .timeout = 60)
{
	struct tgt_env e;
	struct tgt_client c;
	char addr[256];
	static char w[TGT_SLOT_SZ], r[TGT_SLOT_SZ];
	uint64_t base = 0;

	tgt_env_init(&e, 3);
	cr_assert_eq(tgt_start(&e, false, NULL), 0);
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 0)
			addr_tcp(&e, addr, sizeof(addr));
		else
			addr_unix(&e, addr, sizeof(addr));
		cr_assert_eq(tgt_connect(&c, addr, 64, 3), 0, "connect %s", addr);
		cr_assert_eq(c.g.status, WF_WS_OK);
		cr_assert_eq(c.g.target_id, 0);
		cr_assert_eq(c.g.epoch, 3);
		cr_assert_eq(c.g.slot_count, TGT_SLOTS, "asked 64, target has 16");
		cr_assert_eq(c.g.slot_size, TGT_SLOT_SZ);
		cr_assert_eq(c.g.ring.len, TGT_SLOTS * TGT_SLOT_SZ);

		/* Never written: zeros, without the device. */
		base = tgt_extent_of(&e, 0, pass);
		memset(r, 0xee, sizeof(r));
		cr_assert_eq(tgt_io(&c, WF_OP_READ, TGT_VOL, base, 8192, r, 3), WF_WS_OK);
		for (int i = 0; i < 8192; i++)
			cr_assert_eq(r[i], 0);
		/* Sizes from one block to a full slot, up to the extent end. */
		for (uint32_t len = 4096, i = 0; len <= TGT_SLOT_SZ; len *= 2, i++) {
			uint64_t off = base + TGT_EXT - len * (i + 1);

			tgt_pattern(w, len, off + len + pass);
			cr_assert_eq(tgt_io(&c, WF_OP_WRITE, TGT_VOL, off, len, w, 3),
				     WF_WS_OK, "write %u at %llu", len,
				     (unsigned long long)off);
			cr_assert_eq(c.last.length, len);
			memset(r, 0, sizeof(r));
			cr_assert_eq(tgt_io(&c, WF_OP_READ, TGT_VOL, off, len, r, 3),
				     WF_WS_OK);
			cr_assert_eq(c.last.length, len);
			cr_assert_eq(memcmp(w, r, len), 0, "read back %u", len);
		}
		/* READ with CRC: the reply carries the data's CRC32C. */
		{
			struct wf_reply rep;
			uint64_t off = base + TGT_EXT - 8192;

			cr_assert_eq(tgt_post(&c, WF_OP_READ, TGT_VOL, off, 8192, 3,
					      WF_REQ_CRC, 3), 0);
			cr_assert_eq(tgt_reply(&c, &rep, 5000), 0);
			cr_assert_eq(rep.status, WF_WS_OK);
			cr_assert_eq(rep.data_crc,
				     wf_crc32c(0, c.buf + 3u * c.g.slot_size, 8192));
			cr_assert_neq(rep.data_crc, 0);
		}
		cr_assert_eq(tgt_io(&c, WF_OP_FLUSH, TGT_VOL, 0, 0, NULL, 3), WF_WS_OK);
		cr_assert_eq(c.last.length, 0);
		/* Discard part of an extent (half of it, FUA): zeros there,
		 * the rest intact. */
		{
			/* The last (largest) write of the loop above. */
			uint32_t len = TGT_SLOT_SZ;
			uint64_t off = base + TGT_EXT - 5ull * len;

			cr_assert_eq(tgt_post(&c, WF_OP_DISCARD, TGT_VOL, base, TGT_EXT / 2,
					      1, WF_REQ_FUA, 3), 0);
			{
				struct wf_reply rep;

				cr_assert_eq(tgt_reply(&c, &rep, 5000), 0);
				cr_assert_eq(rep.status, WF_WS_OK, "partial discard: %s",
					     wf_wire_status_name(rep.status));
				/* libweft checks it: bytes done. */
				cr_assert_eq(rep.length, TGT_EXT / 2);
			}
			cr_assert_eq(tgt_io(&c, WF_OP_DISCARD, TGT_VOL, base + 4096,
					    8192, NULL, 3), WF_WS_OK);
			cr_assert_eq(tgt_io(&c, WF_OP_READ, TGT_VOL, base, 4096, r, 3),
				     WF_WS_OK);
			for (int i = 0; i < 4096; i++)
				cr_assert_eq(r[i], 0);
			tgt_pattern(w, len, off + len + pass);
			cr_assert_eq(tgt_io(&c, WF_OP_READ, TGT_VOL, off, len, r, 3),
				     WF_WS_OK);
			cr_assert_eq(memcmp(w, r, len), 0, "outside the discard");
		}
		/* Discard the whole extent: zeros again. */
		cr_assert_eq(tgt_io(&c, WF_OP_DISCARD, TGT_VOL, base, TGT_EXT, NULL, 3),
			     WF_WS_OK);
		cr_assert_eq(tgt_io(&c, WF_OP_READ, TGT_VOL, base + TGT_EXT - 4096,
				    4096, r, 3), WF_WS_OK);
		for (int i = 0; i < 4096; i++)
			cr_assert_eq(r[i], 0);
		tgt_close(&c);
	}
	cr_assert_eq(tgt_kill(&e, SIGTERM, true), 0);
	tgt_env_fini(&e);
}

/* Many requests in flight through all slots, different extents. */
Test(target, pipelined_slots, .timeout = 60)
{
	struct tgt_env e;
	struct tgt_client c;
	struct wf_reply rep;
	char addr[256];
	uint64_t off[TGT_SLOTS];
	static char r[4096];
	unsigned done = 0;

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, false, NULL), 0);
	addr_tcp(&e, addr, sizeof(addr));
	cr_assert_eq(tgt_connect(&c, addr, TGT_SLOTS, 1), 0);
	for (uint32_t s = 0; s < TGT_SLOTS; s++) {
		off[s] = tgt_extent_of(&e, 0, s % 4) + (uint64_t)s * 8192;
		tgt_pattern(c.buf + (size_t)s * c.g.slot_size, 8192, off[s]);
		cr_assert_eq(tgt_post(&c, WF_OP_WRITE, TGT_VOL, off[s], 8192, s,
				      s & 1 ? WF_REQ_FUA : 0, 1), 0);
	}
	while (done < TGT_SLOTS) {
		cr_assert_eq(tgt_reply(&c, &rep, 5000), 0);
		cr_assert_eq(rep.status, WF_WS_OK, "slot %u: %s", rep.slot,
			     wf_wire_status_name(rep.status));
		done++;
	}
	tgt_close(&c);
	cr_assert_eq(tgt_connect(&c, addr, TGT_SLOTS, 1), 0);
	for (uint32_t s = 0; s < TGT_SLOTS; s++) {
		static char w[8192];

		tgt_pattern(w, 8192, off[s]);
		cr_assert_eq(tgt_io(&c, WF_OP_READ, TGT_VOL, off[s] + 4096, 4096, r, 1),
			     WF_WS_OK);
		cr_assert_eq(memcmp(r, w + 4096, 4096), 0, "slot %u data", s);
	}
	tgt_close(&c);
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}

static int status_of(struct tgt_client *c, uint8_t op, uint64_t vol, uint64_t off,
		     uint32_t len, uint32_t slot, uint16_t flags, uint64_t epoch)
{
	struct wf_reply rep;
	int ret = tgt_post(c, op, vol, off, len, slot, flags, epoch);

	if (ret)
		return ret;
	ret = tgt_reply(c, &rep, 5000);
	if (ret)
		return ret;
	cr_assert_eq(rep.tag, c->tag);
	return rep.status;
}

Test(target, error_statuses, .timeout = 60)
{
	struct tgt_env e;
	struct tgt_client c;
	struct wf_reply rep;
	char addr[256];
	uint64_t mine, other;
	const uint16_t inval = WF_WS_INVALID | WF_WS_DNR;

	tgt_env_init(&e, 5);
	cr_assert_eq(tgt_start(&e, false, NULL), 0);
	addr_tcp(&e, addr, sizeof(addr));
	cr_assert_eq(tgt_connect(&c, addr, TGT_SLOTS, 5), 0);
	mine = tgt_extent_of(&e, 0, 0);
	other = tgt_extent_of(&e, 1, 0);

	cr_assert_eq(status_of(&c, WF_OP_WRITE, TGT_VOL, mine + 512, 4096, 0, 0, 5), inval,
		     "unaligned offset");
	cr_assert_eq(status_of(&c, WF_OP_READ, TGT_VOL, mine, 1000, 0, 0, 5), inval,
		     "unaligned length");
	cr_assert_eq(status_of(&c, WF_OP_WRITE, TGT_VOL, mine, 2 * TGT_SLOT_SZ, 0, 0, 5),
		     inval, "larger than a slot");
	cr_assert_eq(status_of(&c, WF_OP_READ, TGT_VOL, mine, 0, 0, 0, 5), inval,
		     "zero length");
	cr_assert_eq(status_of(&c, WF_OP_READ, TGT_VOL, mine + TGT_EXT - 4096, 8192, 0,
			       0, 5), inval, "crosses an extent");
	cr_assert_eq(status_of(&c, WF_OP_READ, TGT_VOL, TGT_VOL_SIZE, 4096, 0, 0, 5),
		     WF_WS_RANGE | WF_WS_DNR, "beyond the volume");
	cr_assert_eq(status_of(&c, WF_OP_READ, TGT_VOL, 1ull << 50, 4096, 0, 0, 5),
		     WF_WS_RANGE | WF_WS_DNR, "far beyond the volume");
	cr_assert_eq(status_of(&c, WF_OP_READ, TGT_VOL, UINT64_MAX - 4095, 4096, 0, 0, 5),
		     inval, "offset + length wraps");
	cr_assert_eq(status_of(&c, WF_OP_READ, 999, 0, 4096, 0, 0, 5),
		     WF_WS_NOVOL | WF_WS_DNR, "unknown volume");
	cr_assert_eq(status_of(&c, WF_OP_READ, TGT_VOL, other, 4096, 0, 0, 5),
		     WF_WS_NOTPRIM, "not the primary");
	cr_assert_eq(status_of(&c, WF_OP_WRITE, TGT_VOL, mine, 4096, TGT_SLOTS, 0, 5),
		     inval, "slot out of the ring");
	cr_assert_eq(c.last.slot, TGT_SLOTS);
	/* Older epoch: STALE with ours. */
	cr_assert_eq(status_of(&c, WF_OP_READ, TGT_VOL, mine, 4096, 0, 0, 4),
		     WF_WS_STALE, "stale epoch");
	cr_assert_eq(c.last.epoch, 5);
	/* Newer epoch than the file: BUSY (after trying a reload). */
	cr_assert_eq(status_of(&c, WF_OP_READ, TGT_VOL, mine, 4096, 0, 0, 6),
		     WF_WS_BUSY, "newer epoch, file not yet updated");
	/* The file catches up: the request makes the target load it. */
	tgt_env_write_map(&e, 6);
	usleep(150 * 1000);     /* past the reload rate limit */
	cr_assert_eq(status_of(&c, WF_OP_READ, TGT_VOL, mine, 4096, 0, 0, 6), WF_WS_OK,
		     "newer epoch after the map file changed");
	cr_assert_eq(c.last.epoch, 6);
	cr_assert_eq(status_of(&c, WF_OP_READ, TGT_VOL, mine, 4096, 0, 0, 5),
		     WF_WS_STALE);
	/* CRC: a wrong one is refused, a right one accepted and returned. */
	{
		struct wf_req q = { .opcode = WF_OP_WRITE, .flags = WF_REQ_CRC,
				    .tag = ++c.tag, .volume = TGT_VOL,
				    .offset = mine, .epoch = 6, .length = 4096,
				    .slot = 1 };
		struct wf_req_hdr h;

		tgt_pattern(c.buf + c.g.slot_size, 4096, 77);
		q.data_crc = wf_crc32c(0, c.buf + c.g.slot_size, 4096) ^ 1;
		cr_assert_eq(wf_write(c.ep, c.mr, c.g.slot_size, 4096, &c.ring,
				      c.g.slot_size, 9), 0);
		wf_req_encode(&q, &h);
		cr_assert_eq(tgt_send_raw(&c, &h, sizeof(h)), 0);
		cr_assert_eq(tgt_reply(&c, &rep, 5000), 0);
		cr_assert_eq(rep.status, WF_WS_CRC);
		q.data_crc ^= 1;
		q.tag = ++c.tag;
		wf_req_encode(&q, &h);
		cr_assert_eq(tgt_send_raw(&c, &h, sizeof(h)), 0);
		cr_assert_eq(tgt_reply(&c, &rep, 5000), 0);
		cr_assert_eq(rep.status, WF_WS_OK);
	}
	/* The connection survived all of that (fewer than 16 invalid). */
	cr_assert_eq(status_of(&c, WF_OP_FLUSH, TGT_VOL, 0, 0, 0, 0, 6), WF_WS_OK);
	tgt_close(&c);
	cr_assert_eq(tgt_kill(&e, SIGTERM, true), 0);
	tgt_env_fini(&e);
}

Test(target, garbage_peers_closed_others_served, .timeout = 60)
{
	struct tgt_env e;
	struct tgt_client good, bad;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char addr[256], junk[4096];
	static char w[4096], r[4096];
	uint64_t off;
	int fd, i;
	ssize_t n;
	struct timeval tv = { .tv_sec = 5 };

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, false, NULL), 0);
	addr_tcp(&e, addr, sizeof(addr));
	off = tgt_extent_of(&e, 0, 0);
	cr_assert_eq(tgt_connect(&good, addr, 4, 1), 0);
	tgt_pattern(w, 4096, 1);
	cr_assert_eq(tgt_io(&good, WF_OP_WRITE, TGT_VOL, off, 4096, w, 1), WF_WS_OK);

	/* 1: a raw TCP socket sending junk instead of the fabric's frames. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_port = htons(e.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (i = 0; i < (int)sizeof(junk); i++)
		junk[i] = (char)(i * 131 + 7);
	cr_assert_eq(send(fd, junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));
	while ((n = recv(fd, junk, sizeof(junk), 0)) > 0)
		;
	/* EOF, or a reset when it closed with our junk unread. */
	cr_assert(n == 0 || errno == ECONNRESET,
		  "the target must close a junk socket (%s)", strerror(errno));
	close(fd);
	cr_assert_eq(tgt_io(&good, WF_OP_READ, TGT_VOL, off, 4096, r, 1), WF_WS_OK);
	cr_assert_eq(memcmp(w, r, 4096), 0);

	/* 2: a fabric peer sending a malformed weft header. */
	cr_assert_eq(tgt_connect(&bad, addr, 4, 1), 0);
	memset(junk, 0x5a, 64);
	cr_assert_eq(tgt_send_raw(&bad, junk, 64), 0);
	cr_assert(tgt_wait_closed(&bad, 5000), "malformed header: not closed");
	tgt_close(&bad);

	/* 3: a request before HELLO. */
	{
		struct wf_ctx_opts co = { .size = sizeof(co), .backend = WF_BACKEND_TCP };
		struct wf_ep_opts eo = { .size = sizeof(eo) };
		struct wf_req q = { .opcode = WF_OP_READ, .tag = 1, .volume = TGT_VOL,
				    .epoch = 1, .length = 4096 };
		struct wf_req_hdr h;

		memset(&bad, 0, sizeof(bad));
		cr_assert_eq(wf_ctx_create(&co, &bad.ctx), 0);
		cr_assert_eq(wf_connect(bad.ctx, addr, &eo, &bad.ep), 0);
		wf_req_encode(&q, &h);
		cr_assert_eq(wf_send(bad.ep, &h, sizeof(h), 1), 0);
		cr_assert(tgt_wait_closed(&bad, 5000), "request before HELLO: not closed");
		tgt_close(&bad);
	}

	/* 4: well-formed but invalid requests, over and over. */
	cr_assert_eq(tgt_connect(&bad, addr, 4, 1), 0);
	for (i = 0; i < 40 && !bad.gone; i++) {
		struct wf_reply rep;

		if (tgt_post(&bad, WF_OP_READ, TGT_VOL, off + 512, 4096, 0, 0, 1))
			break;
		if (tgt_reply(&bad, &rep, 5000))
			break;
		cr_assert_eq(rep.status, WF_WS_INVALID | WF_WS_DNR);
	}
	cr_assert(tgt_wait_closed(&bad, 5000), "invalid stream: not closed");
	cr_assert_leq(i, 17, "closed after %d invalid requests", i);
	tgt_close(&bad);

	/* 5: reusing a slot that is in flight. */
	cr_assert_eq(tgt_connect(&bad, addr, 4, 1), 0);
	/* Flushes back to back: they reach the target in one batch while
	 * the first is still with the device. */
	for (i = 0; i < 8; i++)
		if (tgt_post(&bad, WF_OP_FLUSH, TGT_VOL, 0, 0, 2, 0, 1))
			break;          /* already closed by the target */
	cr_assert_geq(i, 2);
	cr_assert(tgt_wait_closed(&bad, 5000), "slot reuse: not closed");
	tgt_close(&bad);

	/* The good client was served throughout. */
	cr_assert_eq(tgt_io(&good, WF_OP_READ, TGT_VOL, off, 4096, r, 1), WF_WS_OK);
	cr_assert_eq(memcmp(w, r, 4096), 0);
	tgt_close(&good);
	cr_assert(tgt_alive(e.pid));
	cr_assert_eq(tgt_kill(&e, SIGTERM, true), 0);
	tgt_env_fini(&e);
}

/* SIGTERM with writes in flight: every one is answered, then the target
 * exits 0 and removes its sockets and pid file. */
Test(target, sigterm_drains, .timeout = 60)
{
	struct tgt_env e;
	struct tgt_client c;
	struct wf_reply rep;
	char addr[256], path[256];
	unsigned answered = 0, ok = 0;
	int ret;

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, true, NULL), 0);
	addr_tcp(&e, addr, sizeof(addr));
	cr_assert_eq(tgt_connect(&c, addr, TGT_SLOTS, 1), 0);
	for (uint32_t s = 0; s < TGT_SLOTS; s++) {
		uint64_t off = tgt_extent_of(&e, 0, s) + 65536;

		tgt_pattern(c.buf + (size_t)s * c.g.slot_size, TGT_SLOT_SZ, s);
		cr_assert_eq(tgt_post(&c, WF_OP_WRITE, TGT_VOL, off, TGT_SLOT_SZ, s,
				      WF_REQ_FUA, 1), 0);
	}
	kill(e.pid, SIGTERM);
	while (answered < TGT_SLOTS) {
		ret = tgt_reply(&c, &rep, 10000);
		cr_assert_eq(ret, 0, "request %u unanswered: %s", answered, strerror(-ret));
		cr_assert(rep.status == WF_WS_OK || rep.status == WF_WS_BUSY,
			  "status %s", wf_wire_status_name(rep.status));
		ok += rep.status == WF_WS_OK;
		answered++;
	}
	cr_assert(tgt_wait_closed(&c, 10000), "not disconnected after the drain");
	cr_assert_eq(tgt_kill(&e, 0, true), 0, "exit status");
	cr_assert_neq(access(e.pidf, F_OK), 0, "pid file left behind");
	snprintf(path, sizeof(path), "%s/target-0.sock", e.run);
	cr_assert_neq(access(path, F_OK), 0, "unix socket left behind");
	snprintf(path, sizeof(path), "%s/target-0.ctl", e.run);
	cr_assert_neq(access(path, F_OK), 0, "control socket left behind");
	tgt_close(&c);

	/* What was acknowledged is there after a restart. */
	cr_assert_eq(tgt_start(&e, false, NULL), 0);
	cr_assert_eq(tgt_connect(&c, addr, TGT_SLOTS, 1), 0);
	for (uint32_t s = 0; s < TGT_SLOTS && ok == TGT_SLOTS; s++) {
		static char w[TGT_SLOT_SZ], r[TGT_SLOT_SZ];

		tgt_pattern(w, TGT_SLOT_SZ, s);
		cr_assert_eq(tgt_io(&c, WF_OP_READ, TGT_VOL,
				    tgt_extent_of(&e, 0, s) + 65536, TGT_SLOT_SZ, r, 1),
			     WF_WS_OK);
		cr_assert_eq(memcmp(w, r, TGT_SLOT_SZ), 0);
	}
	tgt_close(&c);
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}

Test(target, control_socket_and_sighup, .timeout = 60)
{
	struct tgt_env e;
	struct tgt_client c;
	struct wf_ctl_status st;
	struct wf_ctl_shortcircuit sc;
	struct wf_view v;
	char addr[256], path[256];
	static char w[4096], r[4096];
	uint32_t phys, seq;
	int fds[2] = { -1, -1 };
	uint64_t off;

	tgt_env_init(&e, 2);
	cr_assert_eq(tgt_start(&e, false, NULL), 0);
	addr_tcp(&e, addr, sizeof(addr));
	snprintf(path, sizeof(path), "%s/target-0.ctl", e.run);
	off = tgt_extent_of(&e, 0, 0);
	cr_assert_eq(tgt_connect(&c, addr, 4, 2), 0);
	tgt_pattern(w, 4096, 9);
	cr_assert_eq(tgt_io(&c, WF_OP_WRITE, TGT_VOL, off + 8192, 4096, w, 2), WF_WS_OK);

	cr_assert_eq(tgt_ctl_call(path, WF_CTL_STATUS, &st, sizeof(st), NULL), sizeof(st));
	cr_assert_eq(le32toh(st.magic), WF_CTL_MAGIC);
	cr_assert_eq(st.result, 0);
	cr_assert_eq(le32toh(st.target_id), 0);
	cr_assert_eq(le64toh(st.cluster_id), 7);
	cr_assert_eq(le64toh(st.epoch), 2);
	cr_assert_eq(le64toh(st.used), 1);
	cr_assert_eq(le64toh(st.used) + le64toh(st.free), le64toh(st.extents));
	cr_assert_eq(le32toh(st.connections), 1);
	cr_assert_eq(le32toh(st.extent_size), TGT_EXT);

	/* Short circuit: the fds read the block we wrote. */
	cr_assert_eq(tgt_ctl_call(path, WF_CTL_SHORTCIRCUIT, &sc, sizeof(sc), fds),
		     sizeof(sc));
	cr_assert_eq(sc.result, 0);
	cr_assert_geq(fds[0], 0);
	cr_assert_geq(fds[1], 0);
	cr_assert_eq(wf_view_open(fds[1], &v), 0);
	cr_assert_eq(wf_view_lookup(&v, TGT_VOL, (uint32_t)(off / TGT_EXT), &phys,
					  &seq), 1);
	{
		void *al = NULL;

		cr_assert_eq(posix_memalign(&al, 4096, 4096), 0);
		cr_assert_eq(pread(fds[0], al, 4096,
				   (off_t)wf_view_dev_offset(&v, phys, 8192)), 4096);
		cr_assert_eq(memcmp(al, w, 4096), 0);
		free(al);
		/* Read-only: writing through it fails. */
		cr_assert_lt(pwrite(fds[0], w, 4096, 0), 0);
	}
	cr_assert_eq(le64toh(sc.data_off), v.hdr->data_off);
	wf_view_close(&v);
	close(fds[0]);
	close(fds[1]);

	/* SIGHUP reloads the map. */
	tgt_env_write_map(&e, 4);
	kill(e.pid, SIGHUP);
	for (int i = 0; i < 500; i++) {
		cr_assert_eq(tgt_ctl_call(path, WF_CTL_STATUS, &st, sizeof(st), NULL),
			     sizeof(st));
		if (le64toh(st.epoch) == 4)
			break;
		usleep(10000);
	}
	cr_assert_eq(le64toh(st.epoch), 4);
	cr_assert_eq(status_of(&c, WF_OP_READ, TGT_VOL, off, 4096, 0, 0, 2), WF_WS_STALE);
	/* RELOAD over the control socket. */
	tgt_env_write_map(&e, 5);
	cr_assert_eq(tgt_ctl_call(path, WF_CTL_RELOAD, &st, sizeof(st), NULL), sizeof(st));
	cr_assert_eq(st.result, 0);
	cr_assert_eq(le64toh(st.epoch), 5);
	/* An older file is refused and the epoch kept. */
	tgt_env_write_map(&e, 3);
	cr_assert_eq(tgt_ctl_call(path, WF_CTL_RELOAD, &st, sizeof(st), NULL), sizeof(st));
	cr_assert_neq(st.result, 0);
	cr_assert_eq(le64toh(st.epoch), 5);
	cr_assert_eq(tgt_io(&c, WF_OP_READ, TGT_VOL, off + 8192, 4096, r, 5), WF_WS_OK);
	cr_assert_eq(memcmp(w, r, 4096), 0);
	tgt_close(&c);
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}

Test(target, startup_errors, .timeout = 60)
{
	struct tgt_env e;
	char err[2048], bad[256];

	tgt_env_init(&e, 1);
	/* Bad arguments: exit 2 with a message. */
	cr_assert_eq(tgt_run(err, sizeof(err), "--id", "0", NULL), 2);
	cr_assert(strstr(err, "-c MAP"), "%s", err);
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e.map, NULL), 2);
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e.map, "--id", "x", NULL), 2);
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e.map, "--id", "0", "--slots",
			     "0", NULL), 2);
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e.map, "--id", "0",
			     "--slot-size", "1000", NULL), 2);
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e.map, "--id", "0",
			     "--transport", "carrier-pigeon", NULL), 2);
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e.map, "--id", "0", "--bogus",
			     NULL), 2);
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e.map, "--id", "0", "--force",
			     NULL), 2);
	/* Startup failures: exit 1 with the reason. */
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", "/nonexistent/map", "--id", "0",
			     NULL), 1);
	cr_assert(strstr(err, "map"), "%s", err);
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e.map, "--id", "9", "--run-dir",
			     e.run, NULL), 1);
	cr_assert(strstr(err, "no target 9"), "%s", err);
	/* Format refuses an existing store without --force. */
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e.map, "--id", "0", "--format",
			     NULL), 1);
	cr_assert(strstr(err, "--force"), "%s", err);
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e.map, "--id", "0", "--format",
			     "--force", NULL), 0, "%s", err);
	/* Device formatted for another target id: target 1's entry pointed
	 * at our device. */
	snprintf(bad, sizeof(bad), "%s/dev1", e.dir);
	cr_assert_eq(symlink(e.dev, bad), 0);
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e.map, "--id", "1", "--run-dir",
			     e.run, NULL), 1);
	cr_assert(strstr(err, "another cluster or target"), "%s", err);
	unlink(bad);
	/* Device missing. */
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e.map, "--id", "1", "--run-dir",
			     e.run, NULL), 1);
	cr_assert(strstr(err, "missing"), "%s", err);
	/* Not formatted. */
	cr_assert_eq(truncate(e.dev, 0), 0);
	cr_assert_eq(truncate(e.dev, 96ll << 20), 0);
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e.map, "--id", "0", "--run-dir",
			     e.run, NULL), 1);
	cr_assert(strstr(err, "--format"), "%s", err);
	tgt_env_fini(&e);
}

/* weftctl status and volume commands against a running target. */
static int weftctl(char *out, size_t len, const char *args)
{
	char cmd[1024];
	const char *d = getenv("WEFT_BIN");
	size_t got = 0, n;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "%s/weftctl %s 2>&1", d ? d : WEFT_TEST_BIN_DIR, args);
	f = popen(cmd, "r");
	cr_assert_not_null(f);
	while (got < len - 1 && (n = fread(out + got, 1, len - 1 - got, f)) > 0)
		got += n;
	out[got] = 0;
	n = (size_t)pclose(f);
	return WIFEXITED((int)n) ? WEXITSTATUS((int)n) : -1;
}

Test(target, weftctl_status_and_volumes, .timeout = 60)
{
	struct tgt_env e;
	struct tgt_client c;
	char out[4096], args[600], addr[256];
	static char w[4096], r[4096];

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, false, NULL), 0);
	/* Target 1 is in the map (up) but not running: exit 1. */
	snprintf(args, sizeof(args), "status -c %s --run-dir %s --timeout 1000", e.map,
		 e.run);
	cr_assert_eq(weftctl(out, sizeof(out), args), 1, "%s", out);
	cr_assert(strstr(out, "control socket"), "%s", out);
	cr_assert(strstr(out, "down"), "%s", out);
	/* Elsewhere (no control socket): the data address answers. */
	snprintf(args, sizeof(args), "status -c %s --run-dir %s/none --timeout 1000",
		 e.map, e.dir);
	cr_assert_eq(weftctl(out, sizeof(out), args), 1, "%s", out);
	cr_assert(strstr(out, "data address"), "%s", out);

	/* A new volume: the target reloads and serves it at the new epoch. */
	snprintf(args, sizeof(args), "volume create -c %s nv --size 8M --pool p "
		 "--id 77 --run-dir %s", e.map, e.run);
	cr_assert_eq(weftctl(out, sizeof(out), args), 0, "%s", out);
	cr_assert(strstr(out, "serving epoch 2"), "%s", out);
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%u", e.port);
	cr_assert_eq(tgt_connect(&c, addr, 4, 2), 0);
	{
		/* Some extent of the 8 extents of nv led by target 0. */
		int st = -1;

		tgt_pattern(w, 4096, 3);
		for (uint64_t off = 0; off < (8u << 20) && st != WF_WS_OK; off += TGT_EXT) {
			st = tgt_io(&c, WF_OP_WRITE, 77, off, 4096, w, 2);
			if (st == WF_WS_OK) {
				cr_assert_eq(tgt_io(&c, WF_OP_READ, 77, off, 4096, r, 2),
					     WF_WS_OK);
				cr_assert_eq(memcmp(w, r, 4096), 0);
			} else {
				cr_assert_eq(st, WF_WS_NOTPRIM);
			}
		}
		cr_assert_eq(st, WF_WS_OK, "no extent of the new volume served");
	}
	cr_assert_eq(tgt_io(&c, WF_OP_READ, 77, 8u << 20, 4096, r, 2),
		     WF_WS_RANGE | WF_WS_DNR);
	snprintf(args, sizeof(args), "volume delete -c %s nv --yes --run-dir %s", e.map, e.run);
	cr_assert_eq(weftctl(out, sizeof(out), args), 0, "%s", out);
	cr_assert_eq(tgt_io(&c, WF_OP_READ, 77, 0, 4096, r, 3), WF_WS_NOVOL | WF_WS_DNR);
	snprintf(args, sizeof(args), "volume resize -c %s v --size 1000 --yes --run-dir %s",
		 e.map, e.run);
	cr_assert_eq(weftctl(out, sizeof(out), args), 1, "%s", out);
	cr_assert_eq(weftctl(out, sizeof(out), "volume create"), 2, "%s", out);
	tgt_close(&c);
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}

/* A peer that connects and never says HELLO loses its connection, and
 * idle sockets cannot hold the pool (8 connections here). */
Test(target, hello_timeout, .timeout = 60)
{
	struct tgt_env e;
	struct tgt_client idle[8], c;
	struct wf_ctx_opts co = { .size = sizeof(co), .backend = WF_BACKEND_TCP };
	struct wf_ep_opts eo = { .size = sizeof(eo) };
	char addr[256];

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, false, NULL), 0);
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%u", e.port);
	for (int i = 0; i < 8; i++) {
		memset(&idle[i], 0, sizeof(idle[i]));
		cr_assert_eq(wf_ctx_create(&co, &idle[i].ctx), 0);
		cr_assert_eq(wf_connect(idle[i].ctx, addr, &eo, &idle[i].ep), 0);
	}
	/* The pool is full: a ninth connection is dropped. */
	cr_assert_neq(tgt_connect(&c, addr, 4, 1), 0);
	tgt_close(&c);
	for (int i = 0; i < 8; i++) {
		cr_assert(tgt_wait_closed(&idle[i], 10000), "idle %d not closed", i);
		tgt_close(&idle[i]);
	}
	cr_assert_eq(tgt_connect(&c, addr, 4, 1), 0, "pool not freed");
	cr_assert_eq(tgt_io(&c, WF_OP_FLUSH, TGT_VOL, 0, 0, NULL, 1), WF_WS_OK);
	tgt_close(&c);
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}

/* Several connections at once (past the tcp backend's direct-read
 * threshold), requests interleaved, each sees its own data. */
Test(target, many_clients_interleaved, .timeout = 60)
{
	enum { N = 7, ROUNDS = 20 };
	struct tgt_env e;
	static struct tgt_client c[N];
	static char w[4096], r[4096];
	struct wf_reply rep;
	char addr[256];
	uint64_t base;

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, false, NULL), 0);
	base = tgt_extent_of(&e, 0, 2);
	for (int i = 0; i < N; i++) {
		if (i & 1)
			snprintf(addr, sizeof(addr), "unix:%s/target-0.sock", e.run);
		else
			snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%u", e.port);
		cr_assert_eq(tgt_connect(&c[i], addr, 4, 1), 0, "client %d", i);
	}
	for (int k = 0; k < ROUNDS; k++) {
		/* All post, then all reap: the target has N requests at once. */
		for (int i = 0; i < N; i++) {
			tgt_pattern(c[i].buf, 4096, (uint64_t)k * N + i);
			cr_assert_eq(tgt_post(&c[i], WF_OP_WRITE, TGT_VOL,
					      base + (uint64_t)i * 4096, 4096, 0, 0, 1), 0);
		}
		for (int i = 0; i < N; i++) {
			cr_assert_eq(tgt_reply(&c[i], &rep, 5000), 0);
			cr_assert_eq(rep.status, WF_WS_OK);
		}
		for (int i = N - 1; i >= 0; i--) {
			tgt_pattern(w, 4096, (uint64_t)k * N + i);
			cr_assert_eq(tgt_io(&c[(i + 1) % N], WF_OP_READ, TGT_VOL,
					    base + (uint64_t)i * 4096, 4096, r, 1), WF_WS_OK);
			cr_assert_eq(memcmp(w, r, 4096), 0, "round %d block %d", k, i);
		}
	}
	for (int i = 0; i < N; i++)
		tgt_close(&c[i]);
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}

/* A new epoch that takes target 0 out: its primaries move away, requests
 * at the new epoch get NOTPRIM, at the old one STALE. */
Test(target, epoch_change_moves_primaries, .timeout = 60)
{
	struct tgt_env e;
	struct tgt_client c;
	char addr[256], path[256];
	struct wf_ctl_status st;
	uint64_t mine;

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, false, NULL), 0);
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%u", e.port);
	snprintf(path, sizeof(path), "%s/target-0.ctl", e.run);
	mine = tgt_extent_of(&e, 0, 0);
	cr_assert_eq(tgt_connect(&c, addr, 4, 1), 0);
	cr_assert_eq(status_of(&c, WF_OP_READ, TGT_VOL, mine, 4096, 0, 0, 1), WF_WS_OK);
	e.t0_state = "up,out";
	tgt_env_write_map(&e, 2);
	cr_assert_eq(tgt_ctl_call(path, WF_CTL_RELOAD, &st, sizeof(st), NULL), sizeof(st));
	cr_assert_eq(st.result, 0);
	cr_assert_eq(le64toh(st.epoch), 2);
	cr_assert_eq(status_of(&c, WF_OP_READ, TGT_VOL, mine, 4096, 0, 0, 2), WF_WS_NOTPRIM);
	cr_assert_eq(status_of(&c, WF_OP_WRITE, TGT_VOL, mine, 4096, 1, 0, 2),
		     WF_WS_NOTPRIM);
	cr_assert_eq(status_of(&c, WF_OP_READ, TGT_VOL, mine, 4096, 0, 0, 1), WF_WS_STALE);
	cr_assert_eq(c.last.epoch, 2);
	/* Back in: served again at epoch 3. */
	e.t0_state = NULL;
	tgt_env_write_map(&e, 3);
	kill(e.pid, SIGHUP);
	for (int i = 0; i < 500; i++) {
		cr_assert_eq(tgt_ctl_call(path, WF_CTL_STATUS, &st, sizeof(st), NULL),
			     sizeof(st));
		if (le64toh(st.epoch) == 3)
			break;
		usleep(10000);
	}
	cr_assert_eq(status_of(&c, WF_OP_READ, TGT_VOL, mine, 4096, 0, 0, 3), WF_WS_OK);
	tgt_close(&c);
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}

/*
 * A client that reconnects (same client_id) resends what was not answered;
 * a write of the dropped connection still running in the target must not
 * land after the new connection's newer write to the same block.  The old
 * writes are deferred behind whole-extent discards, the old connection is
 * dropped with all of them in flight (even rounds: closed; odd rounds:
 * abandoned, still open as far as the target knows, so only the new HELLO
 * tells it the old connection is dead), and the new connection at once
 * writes newer data to the same blocks: the newer data must stay.
 */
Test(target, reconnect_fenced_behind_old_writes, .timeout = 120)
{
	enum { NEXT = 8, ROUNDS = 10 };
	struct tgt_env e;
	char addr[256], log[256], line[512];
	uint64_t base[NEXT];
	unsigned held = 0;
	FILE *f;

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, false, NULL), 0);
	addr_tcp(&e, addr, sizeof(addr));
	for (unsigned k = 0; k < NEXT; k++)
		base[k] = tgt_extent_of(&e, 0, k);
	for (unsigned round = 0; round < ROUNDS; round++)
		tgt_reconnect_round(addr, base, NEXT, round);
	/* How often the GRANT was held (timing dependent: informational). */
	snprintf(log, sizeof(log), "%s/target-0.log", e.run);
	f = fopen(log, "r");
	if (f) {
		while (fgets(line, sizeof(line), f))
			if (strstr(line, "GRANT held"))
				held++;
		fclose(f);
	}
	cr_log_info("GRANT held in %u of %u reconnects", held, ROUNDS);
	cr_assert_eq(tgt_kill(&e, SIGTERM, true), 0);
	tgt_env_fini(&e);
}

/*
 * HELLOs with a newer epoch reload the map at most once per 100 ms, like
 * requests: a peer reconnecting with a bogus epoch cannot make the target
 * parse the map file for every HELLO.  The map file is made unloadable so
 * each reload attempt leaves a line in the log.
 */
Test(target, hello_reload_rate_limited, .timeout = 60)
{
	enum { N = 20 };
	struct tgt_env e;
	struct tgt_client c;
	struct timespec t0, t1;
	char addr[256], log[256], line[512];
	unsigned reloads = 0;
	uint64_t ms;
	FILE *f;

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, false, NULL), 0);
	addr_tcp(&e, addr, sizeof(addr));
	f = fopen(e.map, "w");
	cr_assert_not_null(f);
	fputs("not a map\n", f);
	fclose(f);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(tgt_connect(&c, addr, 4, 99), 0, "HELLO %d", i);
		cr_assert_eq(c.g.epoch, 1);
		tgt_close(&c);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000 +
	     (uint64_t)(t1.tv_nsec / 1000000) - (uint64_t)(t0.tv_nsec / 1000000);
	/* The target logs before the test's next line: stop it first. */
	cr_assert_eq(tgt_kill(&e, SIGTERM, true), 0);
	snprintf(log, sizeof(log), "%s/target-0.log", e.run);
	f = fopen(log, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "map reload (HELLO with a newer epoch)"))
			reloads++;
	fclose(f);
	cr_assert_geq(reloads, 1, "no reload attempted at all");
	cr_assert_leq(reloads, ms / 100 + 1, "%u reloads for %d HELLOs in %llu ms",
		      reloads, N, (unsigned long long)ms);
	tgt_env_fini(&e);
}

/* Grep the daemon's log (RUN_DIR/target-0.log) for s. */
static bool log_has(const struct tgt_env *e, const char *s)
{
	char path[256], line[1024];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "%s/target-0.log", e->run);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, s) != NULL;
	fclose(f);
	return found;
}

/* --cache none trusts completions; on a regular file that leaves the file
 * system's metadata unsynced: the target says so at startup (and not with
 * --cache auto). */
Test(target, cache_none_on_a_file_warns, .timeout = 60)
{
	struct tgt_env e;

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, false, NULL), 0);     /* --cache none */
	cr_assert(log_has(&e, "--cache none on a regular file"),
		  "no warning for --cache none on a file");
	tgt_kill(&e, SIGTERM, true);
	unlink(e.pidf);
	{
		char path[256];

		snprintf(path, sizeof(path), "%s/target-0.log", e.run);
		unlink(path);
	}
	cr_assert_eq(tgt_start(&e, false, "--cache", "auto", NULL), 0);
	cr_assert(!log_has(&e, "--cache none on a regular file"));
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}

/* The GRANT's features word (once reserved0) goes only to another target's
 * link that says it reads it (docs/protocol.md, "Builds on a link"): an
 * older libweft, nbdkit plugin or fio engine refuses a GRANT whose word is
 * not 0, and libweft's client ids are random with bit 0 set, so half of
 * them have the top bit too.  Such an id, and a link of an older build,
 * get 0; a link with WF_LINK_FEATURES gets the features. */
Test(target, grant_features_only_to_links_that_read_them, .timeout = 60)
{
	const uint64_t ids[] = {
		WF_LINK_ID | 0x5a5a5a5a5a5a5a5bull,     /* libweft-like: bit 0 */
		WF_LINK_ID | WF_LINK_FEATURES | 0x2345ull << 16 | 1,
		WF_LINK_ID | 7ull << 16 | 1u << 1,      /* an older link */
		WF_LINK_ID | WF_LINK_FEATURES | 7ull << 16 | 1u << 1,
	};
	const uint16_t want[] = { 0, 0, 0, WF_FEAT_LEASE | WF_FEAT_RELEASE };
	struct tgt_env e;
	struct tgt_client c;
	char addr[256];

	tgt_env_init(&e, 1);
	cr_assert_eq(tgt_start(&e, false, NULL), 0);
	addr_tcp(&e, addr, sizeof(addr));
	for (unsigned i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		cr_assert_eq(tgt_connect_as(&c, addr, 4, 1, ids[i]), 0, "id %u", i);
		cr_assert_eq(c.g.features, want[i], "id %u (%#llx): features %#x",
			     i, (unsigned long long)ids[i], c.g.features);
		tgt_close(&c);
	}
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}
