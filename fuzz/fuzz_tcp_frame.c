/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the tcp backend's receive path.  The input is what a
 * peer sends after the hello; it goes through a real AF_UNIX socketpair
 * into a live endpoint.  Nothing may crash or touch memory outside the
 * regions (ASan), and the connection must end exactly as an independent
 * reading of the frame rules predicts: closed with -EPROTO at the first
 * bad frame, otherwise with -ECONNRESET when the input runs out.
 */
#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fabric/fabric.h"
#include "fabric/tcp_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REGION   4096u
#define MSG      256u
#define PEER_SD  8u     /* the peer's send_depth, as if from its hello */

struct rig {
	struct wf_ctx *ctx;
	struct wf_mr  *rw, *ro, *wo;
	uint32_t       krw, kro, kwo;
	char          *brw, *bro, *bwo;
};

static struct rig *rig(void)
{
	static struct rig r;
	struct wf_ctx_opts co = { .size = sizeof(co), .backend = WF_BACKEND_TCP };
	struct wf_rkey k;

	if (r.ctx)
		return &r;
	r.brw = calloc(1, REGION);
	r.bro = calloc(1, REGION);
	r.bwo = calloc(1, REGION);
	if (wf_ctx_create(&co, &r.ctx) ||
	    wf_mr_reg(r.ctx, r.brw, REGION, WF_ACCESS_REMOTE_READ | WF_ACCESS_REMOTE_WRITE, &r.rw) ||
	    wf_mr_reg(r.ctx, r.bro, REGION, WF_ACCESS_REMOTE_READ, &r.ro) ||
	    wf_mr_reg(r.ctx, r.bwo, REGION, WF_ACCESS_REMOTE_WRITE, &r.wo))
		abort();
	wf_mr_rkey(r.rw, NULL, 0, REGION, &k);
	r.krw = k.key;
	wf_mr_rkey(r.ro, NULL, 0, REGION, &k);
	r.kro = k.key;
	wf_mr_rkey(r.wo, NULL, 0, REGION, &k);
	r.kwo = k.key;
	return &r;
}

/* The rules, restated independently of fabric/tcp.c. */
static bool span_ok(const struct rig *r, uint32_t key, uint64_t addr, uint32_t len,
		    bool write)
{
	bool rd_ok = key == r->krw || key == r->kro;
	bool wr_ok = key == r->krw || key == r->kwo;

	if (write ? !wr_ok : !rd_ok)
		return false;
	return addr <= REGION && len <= REGION - addr;
}

/* 1: a bad frame comes first; 0: the input ends (cleanly or mid-frame). */
static int predict(const struct rig *r, const uint8_t *d, size_t n)
{
	size_t pos = 0;

	while (n - pos >= sizeof(struct wf_tcp_frame)) {
		struct wf_tcp_frame f;
		uint32_t len, key, imm;
		uint64_t addr;
		size_t payload = 0;

		memcpy(&f, d + pos, sizeof(f));
		len = le32toh(f.len);
		key = le32toh(f.key);
		imm = le32toh(f.imm);
		addr = le64toh(f.addr);
		if (f.magic != WF_TCP_FRAME_MAGIC || f.reserved)
			return 1;
		switch (f.type) {
		case WF_TCP_WRITE:
			if (imm)
				return 1;
			/* fall through */
		case WF_TCP_WRITE_IMM:
			if (!span_ok(r, key, addr, len, true))
				return 1;
			payload = len;
			break;
		case WF_TCP_READ_REQ:
			if (imm >= PEER_SD || !span_ok(r, key, addr, len, false))
				return 1;
			break;
		case WF_TCP_READ_RESP:
			return 1;       /* we never asked */
		case WF_TCP_SEND:
			if (key || addr || imm || len > MSG)
				return 1;
			payload = len;
			break;
		default:
			return 1;
		}
		pos += sizeof(f);
		if (n - pos < payload)
			return 0;
		pos += payload;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rig *r = rig();
	struct wf_ep_opts o = { .size = sizeof(o), .send_depth = 8, .recv_depth = 16,
				.msg_size = MSG, .timeout_ms = 1000 };
	struct wf_ep *ep;
	int sv[2], status = 1, big = 4 << 20;
	size_t off = 0;
	bool shut = false;
	char sink[65536];

	if (size > 65536)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	/* Room for every read response, so the endpoint's response queue
	 * never backs up while we drain it between polls. */
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	if (wf_tcp_ep_adopt(r->ctx, sv[0], &o, PEER_SD, MSG, &ep))
		abort();
	for (int iter = 0; iter < 200000 && status == 1; iter++) {
		struct wf_cqe c[32];
		int n;

		if (off < size) {
			ssize_t w = send(sv[1], data + off, size - off,
					 MSG_DONTWAIT | MSG_NOSIGNAL);

			if (w > 0)
				off += (size_t)w;
			else if (w < 0 && errno != EAGAIN)
				off = size;     /* the endpoint closed on us */
		}
		if (off == size && !shut) {
			shutdown(sv[1], SHUT_WR);
			shut = true;
		}
		n = wf_poll(r->ctx, c, 32);
		if (n < 0)
			abort();
		for (int i = 0; i < n; i++) {
			if (c[i].ep != ep)
				abort();
			if (c[i].op == WF_CQE_DISCONNECT)
				status = c[i].status;
			else if (c[i].op == WF_CQE_RECV_MSG && c[i].len > MSG)
				abort();
			else if (c[i].op == WF_CQE_RECV_IMM && c[i].len > REGION)
				abort();
			else if (c[i].op != WF_CQE_RECV_MSG && c[i].op != WF_CQE_RECV_IMM)
				abort();
		}
		while (recv(sv[1], sink, sizeof(sink), MSG_DONTWAIT) > 0)
			;
	}
	if (status == 1)
		abort();        /* hung: the input must end the connection */
	if (status != (predict(r, data, size) ? -EPROTO : -ECONNRESET))
		abort();
	wf_ep_destroy(ep);
	close(sv[1]);
	return 0;
}
