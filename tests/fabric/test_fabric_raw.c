/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fabric conformance suite, tcp only: a raw socket speaks the framing
 * directly (bad frames, hellos of another version, silent sockets and
 * the hello deadline).  Built and run like the rest of the suite (see
 * fabric_test.h for the environment that picks the backend): tcp and unix
 * run these cases, verbs skips them.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "fabric/tcp_frame.h"
#include "tests/fabric/fabric_test.h"

static struct ft_got gs, gc;    /* one test per process (Criterion forks) */

/* ---- tcp only: a raw socket speaks the framing directly ---- */

static int raw_connect(const char *addr)
{
	int fd;

	if (!strncmp(addr, "unix:", 5)) {
		struct sockaddr_un un = { .sun_family = AF_UNIX };

		snprintf(un.sun_path, sizeof(un.sun_path), "%s", addr + 5);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		cr_assert_eq(connect(fd, (struct sockaddr *)&un, sizeof(un)), 0);
	} else {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
		const char *h = addr + 4, *colon = strrchr(h, ':');
		char host[128];

		cr_assert_not_null(colon);
		snprintf(host, sizeof(host), "%.*s", (int)(colon - h), h);
		if (host[0] == '[') {   /* [v6] */
			memmove(host, host + 1, strlen(host));
			host[strlen(host) - 1] = 0;
		}
		cr_assert_eq(getaddrinfo(host, colon + 1, &hints, &res), 0);
		fd = socket(res->ai_family, SOCK_STREAM, 0);
		cr_assert_eq(connect(fd, res->ai_addr, res->ai_addrlen), 0);
		freeaddrinfo(res);
	}
	return fd;
}

/* Hello from a raw socket; returns the reply's kind (0: closed). */
static int raw_hello(struct ft_pair *p, int fd, uint16_t version,
		     struct wf_tcp_hello *reply)
{
	struct wf_tcp_hello h = {
		.magic = htole32(WF_TCP_HELLO_MAGIC), .version = htole16(version),
		.kind = htole16(WF_TCP_HELLO), .send_depth = htole32(8),
		.recv_depth = htole32(8), .msg_size = htole32(256),
	};
	size_t got = 0;
	int64_t end = ft_now_ms() + ft_wait_ms();

	cr_assert_eq(write(fd, &h, sizeof(h)), (ssize_t)sizeof(h));
	while (got < sizeof(*reply)) {
		ssize_t n;

		cr_assert_lt(ft_now_ms(), end, "no hello reply");
		ft_poll_into(p->sctx, &gs);
		n = recv(fd, (char *)reply + got, sizeof(*reply) - got, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			return 0;
		if (n > 0)
			got += (size_t)n;
	}
	return le16toh(reply->kind);
}

/* After a bad frame: the server's endpoint is gone with -EPROTO (or
 * -ECONNRESET for a truncated stream), and the raw socket sees the close. */
static void expect_rejected(struct ft_pair *p, struct wf_ep *ep, int fd,
			    int status, const char *what)
{
	int64_t end = ft_now_ms() + ft_wait_ms();
	const struct wf_cqe *d = NULL;
	char b[256];

	while (!d) {
		cr_assert_lt(ft_now_ms(), end, "%s: not rejected", what);
		ft_poll_into(p->sctx, &gs);
		for (int i = 0; i < gs.n; i++)
			if (gs.c[i].op == WF_CQE_DISCONNECT && gs.c[i].ep == ep)
				d = &gs.c[i];
	}
	cr_assert_eq(d->status, status, "%s: status %d", what, d->status);
	for (int i = 0; i < gs.n; i++)
		cr_assert(gs.c[i].ep != ep || gs.c[i].op == WF_CQE_DISCONNECT,
			  "%s: a bad frame raised a completion", what);
	for (;;) {     /* the server closed: EOF (or reset) after any data */
		ssize_t n = recv(fd, b, sizeof(b), 0);

		if (n <= 0)
			break;
	}
	close(fd);
	wf_ep_destroy(ep);
}

/* The good client still works after each rejection. */
static void still_serving(struct ft_pair *p, struct wf_mr *cmr, struct wf_rkey *rk,
			  uint32_t imm)
{
	gs.n = gc.n = 0;
	cr_assert_eq(wf_write_imm(p->cep, cmr, 0, 128, rk, 0, imm, imm), 0);
	ft_pump(p->sctx, &gs, 1, p->cctx, &gc, 1, ft_wait_ms());
	cr_assert_eq(gs.c[0].op, WF_CQE_RECV_IMM);
	cr_assert_eq(gs.c[0].imm, imm);
	gs.n = gc.n = 0;
}

static struct wf_tcp_frame frame(uint8_t type, uint32_t len, uint32_t key,
				 uint32_t imm, uint64_t addr)
{
	return (struct wf_tcp_frame){
		.magic = WF_TCP_FRAME_MAGIC, .type = type, .len = htole32(len),
		.key = htole32(key), .imm = htole32(imm), .addr = htole64(addr),
	};
}

Test(fabric, bad_frames_rejected_listener_survives)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts o = ft_opts(8, 8, 256);
	char *wbuf = ft_xalloc(8192), *rbuf = ft_xalloc(8192), *cbuf = ft_xalloc(8192);
	struct wf_mr *wmr, *rmr, *cmr;
	struct wf_rkey wk, rok, good;
	static char payload[1 << 16];

	if (ft_is_verbs())
		cr_skip_test("raw frames need the tcp backend");
	ft_pair_open(&p, &o, &o);
	wmr = ft_reg(p.sctx, wbuf, 8192, WF_ACCESS_REMOTE_WRITE);
	rmr = ft_reg(p.sctx, rbuf, 8192, WF_ACCESS_REMOTE_READ);
	cmr = ft_reg(p.cctx, cbuf, 8192, 0);
	cr_assert_eq(wf_mr_rkey(wmr, p.sep, 0, 8192, &wk), 0);
	cr_assert_eq(wf_mr_rkey(rmr, p.sep, 0, 8192, &rok), 0);
	good = wk;
	still_serving(&p, cmr, &good, 1);

	struct wf_tcp_frame bad_magic = frame(WF_TCP_WRITE_IMM, 8, wk.key, 0, 0);
	struct wf_tcp_frame bad_resv = frame(WF_TCP_WRITE_IMM, 8, wk.key, 0, 0);
	bad_magic.magic = 0x17;
	bad_resv.reserved = 1;
	const struct {
		const char *what;
		struct wf_tcp_frame f;
		uint32_t payload;
		int status;
	} cases[] = {
		{ "write past the end", frame(WF_TCP_WRITE_IMM, 100, wk.key, 1, 8192 - 10), 100, -EPROTO },
		{ "write at a wrapping offset", frame(WF_TCP_WRITE_IMM, 100, wk.key, 1, UINT64_MAX - 10), 100, -EPROTO },
		{ "write with a stale key", frame(WF_TCP_WRITE_IMM, 8, wk.key + 0x10000, 1, 0), 8, -EPROTO },
		{ "plain write past the end", frame(WF_TCP_WRITE, 16, wk.key, 0, 8190), 16, -EPROTO },
		{ "plain write with an immediate", frame(WF_TCP_WRITE, 8, wk.key, 5, 0), 8, -EPROTO },
		{ "plain write into a read-only region", frame(WF_TCP_WRITE, 8, rok.key, 0, 0), 8, -EPROTO },
		{ "write with an unknown key", frame(WF_TCP_WRITE_IMM, 8, 0x1234, 1, 0), 8, -EPROTO },
		{ "write into a read-only region", frame(WF_TCP_WRITE_IMM, 8, rok.key, 1, 0), 8, -EPROTO },
		{ "read from a write-only region", frame(WF_TCP_READ_REQ, 8, wk.key, 0, 0), 0, -EPROTO },
		{ "read past the end", frame(WF_TCP_READ_REQ, 9000, rok.key, 0, 0), 0, -EPROTO },
		{ "read with a bad request id", frame(WF_TCP_READ_REQ, 8, rok.key, 8, 0), 0, -EPROTO },
		{ "response nobody asked for", frame(WF_TCP_READ_RESP, 8, 0, 0, 0), 8, -EPROTO },
		{ "oversized message", frame(WF_TCP_SEND, 257, 0, 0, 0), 257, -EPROTO },
		{ "message with stray fields", frame(WF_TCP_SEND, 4, 5, 0, 0), 4, -EPROTO },
		{ "unknown frame type", frame(9, 0, 0, 0, 0), 0, -EPROTO },
		{ "bad magic", bad_magic, 8, -EPROTO },
		{ "reserved bits", bad_resv, 8, -EPROTO },
		{ "truncated frame", frame(WF_TCP_WRITE_IMM, 4000, wk.key, 1, 0), 100, -ECONNRESET },
	};
	memset(payload, 0xee, sizeof(payload));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct wf_tcp_hello reply;
		struct wf_ep *ep = NULL;
		int fd = raw_connect(p.addr), k;
		int64_t end = ft_now_ms() + ft_wait_ms();

		gs.n = 0;
		cr_assert_eq(raw_hello(&p, fd, WF_TCP_VERSION, &reply), WF_TCP_ACCEPT,
			     "%s: handshake", cases[i].what);
		while ((k = wf_accept(p.l, NULL, &ep)) == -EAGAIN) {
			cr_assert_lt(ft_now_ms(), end);
			ft_poll_into(p.sctx, &gs);
		}
		cr_assert_eq(k, 0);
		cr_assert_eq(write(fd, &cases[i].f, sizeof(cases[i].f)),
			     (ssize_t)sizeof(cases[i].f));
		if (cases[i].payload)
			cr_assert_eq(write(fd, payload, cases[i].payload),
				     (ssize_t)cases[i].payload);
		if (cases[i].status == -ECONNRESET)
			shutdown(fd, SHUT_WR);
		expect_rejected(&p, ep, fd, cases[i].status, cases[i].what);
		cr_assert_eq((uint8_t)wbuf[8191], 0, "%s: wrote out of bounds", cases[i].what);
		still_serving(&p, cmr, &good, 2 + (uint32_t)i);
	}

	/* A hello of another version is refused before any accept. */
	{
		struct wf_tcp_hello reply;
		struct wf_ep *ep;
		int fd = raw_connect(p.addr);
		int kind = raw_hello(&p, fd, WF_TCP_VERSION + 1, &reply);

		cr_assert(kind == 0 || kind == WF_TCP_REFUSE, "version mismatch accepted");
		if (kind == WF_TCP_REFUSE)
			cr_assert_eq((int)le32toh((uint32_t)reply.status), EPROTONOSUPPORT);
		for (int i = 0; i < 20; i++)
			ft_poll_into(p.sctx, &gs);
		cr_assert_eq(wf_accept(p.l, NULL, &ep), -EAGAIN);
		close(fd);
	}
	still_serving(&p, cmr, &good, 100);
	wf_mr_dereg(wmr);
	wf_mr_dereg(rmr);
	wf_mr_dereg(cmr);
	ft_pair_close(&p);
	free(wbuf);
	free(rbuf);
	free(cbuf);
}

/* A listener of another protocol version: wf_connect refuses it. */
Test(fabric, connect_to_other_version_refused)
{
	struct sockaddr_in in = { .sin_family = AF_INET };
	socklen_t sl = sizeof(in);
	struct wf_ctx *ctx;
	struct wf_ep *ep;
	struct wf_ep_opts o = ft_opts(4, 4, 64);
	char addr[64];
	int lfd, status;
	pid_t pid;

	if (ft_is_verbs())
		cr_skip_test("raw hello needs the tcp backend");
	in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&in, sizeof(in)), 0);
	cr_assert_eq(listen(lfd, 1), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&in, &sl), 0);
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%u", ntohs(in.sin_port));
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct wf_tcp_hello h;
		int c = accept(lfd, NULL, NULL);

		alarm(20);
		if (c < 0 || read(c, &h, sizeof(h)) != sizeof(h))
			_exit(1);
		h.version = htole16(WF_TCP_VERSION + 1);
		h.kind = htole16(WF_TCP_ACCEPT);
		if (write(c, &h, sizeof(h)) != sizeof(h))
			_exit(2);
		sleep(5);
		_exit(0);
	}
	close(lfd);
	ctx = ft_ctx(0);
	cr_assert_eq(wf_connect(ctx, addr, &o, &ep), -EPROTONOSUPPORT);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	wf_ctx_destroy(ctx);
}

/* The server closed fd (EOF or reset) within ms; polls sctx meanwhile. */
static bool closed_within(struct wf_ctx *sctx, int fd, int ms)
{
	int64_t end = ft_now_ms() + ms;
	char b[64];

	for (;;) {
		ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno != EAGAIN))
			return true;
		if (ft_now_ms() >= end)
			return false;
		ft_poll_into(sctx, &gs);
		usleep(200);
	}
}

#define SILENT 264      /* more than the listener's 256 handshake slots */

/* Sockets that never say hello fill every handshake slot of a listener (its
 * deadline far away): a real initiator still gets in, promptly, because the
 * oldest silent socket yields its slot. */
Test(fabric, silent_sockets_cannot_lock_out)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts so = ft_opts(4, 4, 64), co = ft_opts(4, 4, 64);
	struct wf_ep *sep = NULL, *cep = NULL;
	static int fds[SILENT];
	int64_t t0;
	int ret;

	if (ft_is_verbs())
		cr_skip_test("raw sockets need the tcp backend");
	so.timeout_ms = 60000;
	ft_pair_open(&p, &so, &co);
	for (int i = 0; i < SILENT; i++) {
		fds[i] = raw_connect(p.addr);
		ft_poll_into(p.sctx, &gs);
	}
	for (int i = 0; i < 200; i++) {         /* let the listener take them */
		ft_poll_into(p.sctx, &gs);
		usleep(500);
	}
	t0 = ft_now_ms();
	ret = ft_accept_many(&p, &sep, 1, &cep, &co);
	cr_assert_eq(ret, 0, "locked out by silent sockets: %s", strerror(-ret));
	cr_assert_lt(ft_now_ms() - t0, 3000, "connect took %lld ms",
		     (long long)(ft_now_ms() - t0));
	/* The oldest silent socket made room; the newest keeps its slot. */
	cr_assert(closed_within(p.sctx, fds[0], 2000), "oldest silent socket kept");
	cr_assert_not(closed_within(p.sctx, fds[SILENT - 1], 50),
		      "newest silent socket closed");
	/* The new endpoint works. */
	gs.n = gc.n = 0;
	cr_assert_eq(wf_send(cep, "hi", 2, 7), 0);
	ft_pump(p.sctx, &gs, 1, p.cctx, &gc, 1, ft_wait_ms());
	cr_assert_eq(gs.c[0].op, WF_CQE_RECV_MSG);
	cr_assert_eq(gs.c[0].ep, sep);
	for (int i = 0; i < SILENT; i++)
		close(fds[i]);
	wf_ep_destroy(cep);
	wf_ep_destroy(sep);
	ft_pair_close(&p);
}

/* A socket without a (complete) hello is closed once the listener's
 * timeout_ms has passed; one that finished its hello waits for wf_accept. */
Test(fabric, hello_deadline_closes_silent_socket)
{
	struct ft_pair p = { 0 };
	struct wf_ep_opts so = ft_opts(4, 4, 64), co = ft_opts(4, 4, 64);
	struct wf_tcp_hello reply;
	struct wf_ep *ep = NULL;
	static const char part[10];
	int silent, partial, good;
	int64_t t0, dt;

	if (ft_is_verbs())
		cr_skip_test("raw sockets need the tcp backend");
	so.timeout_ms = 300;
	ft_pair_open(&p, &so, &co);
	t0 = ft_now_ms();
	silent = raw_connect(p.addr);
	partial = raw_connect(p.addr);
	cr_assert_eq(write(partial, part, sizeof(part)), (ssize_t)sizeof(part));
	good = raw_connect(p.addr);
	cr_assert_eq(raw_hello(&p, good, WF_TCP_VERSION, &reply), WF_TCP_ACCEPT);
	cr_assert(closed_within(p.sctx, silent, ft_wait_ms()), "silent socket kept");
	dt = ft_now_ms() - t0;
	cr_assert_geq(dt, 250, "closed after %lld ms, before the deadline", (long long)dt);
	cr_assert_lt(dt, 2300, "closed only after %lld ms", (long long)dt);
	cr_assert(closed_within(p.sctx, partial, 1000), "half a hello kept");
	/* Handshaken: not subject to the deadline, still accepted. */
	cr_assert_not(closed_within(p.sctx, good, 200), "handshaken socket closed");
	cr_assert_eq(wf_accept(p.l, NULL, &ep), 0);
	close(silent);
	close(partial);
	close(good);
	wf_ep_destroy(ep);
	ft_pair_close(&p);
}
