/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-bench fabric: round-trip latency of the fabric between two processes,
 * beside its floor measured in the same run.
 *
 *   write: A write-with-immediates SIZE bytes into B's region; B, polling,
 *          answers with a write-with-immediate of the same bytes back into
 *          A's region.  One round trip = post on A -> RECV_IMM on A.
 *   read:  A reads SIZE bytes of B's region (B polls: the tcp backend
 *          answers reads inside wf_poll).  One round trip = post -> READ.
 * Two waiting policies, each measured on both the fabric and its floor:
 * busy-poll (wf_poll until a completion, no sleeping, as a latency-bound
 * reactor would) and sleep (arm and sleep on the ctx fd at the first empty
 * poll).  --spin-us N measures one policy instead: busy-poll N us, then
 * sleep.  Queue depth 1.
 *
 * Floor: tcp/unix, the fastest plain program doing the same exchange with
 * the same policy: a socket ping-pong of the same sizes on the same kind of
 * socket (write: SIZE each way; read: a 24-byte request and a SIZE answer)
 * whose receives spin on non-blocking recv() (busy-poll) or block in recv()
 * (sleep), both sides; verbs, perftest's ib_write_lat / ib_read_lat at the
 * same size (t_typical; perftest busy-polls), run on the device of --device
 * (or $WEFT_IB_DEV).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/stats.h"
#include "fabric/fabric.h"
#include "proto/wire.h"

struct fopts {
	const char *transport;
	char        addr[256];  /* listen address */
	const char *device;     /* verbs: RDMA device of perftest's server */
	const char *cdevice;    /* ... and of its client (default: device) */
	uint32_t    size;
	uint32_t    iters;
	uint32_t    warmup;
	bool        json;
	bool        floor;
};

/* The policy being measured, fabric and floor alike: busy-poll this long
 * before sleeping (on the ctx fd, or in recv() for the floor).  UINT64_MAX:
 * never sleep (the lowest latency on an otherwise idle machine); 0: sleep
 * at once, which is what a loaded machine rewards. */
static uint64_t spin_ns = UINT64_MAX;
static int pin = -1;    /* --pin C: measuring process on CPU C, peer on C+1 */
static bool yield;      /* --yield: sched_yield() after an empty poll */

static void pin_to(int cpu)
{
	cpu_set_t set;

	if (pin < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		perror("weft-bench fabric: sched_setaffinity");
}

struct result {
	struct wf_lat_summary lat;
	double ops_per_s;
};

static void die(const char *what, int err)
{
	fprintf(stderr, "weft-bench fabric: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

uint32_t wf_bench_backend(const char *transport)
{
	return !strcmp(transport, "verbs") ? WF_BACKEND_VERBS : WF_BACKEND_TCP;
}

int wf_bench_peer_accept(const char *transport, const char *laddr,
			 const struct wf_ep_opts *eo, int pfd, uint64_t deadline,
			 struct wf_ctx **ctx, struct wf_listener **l,
			 struct wf_ep **ep, const char **step)
{
	struct wf_ctx_opts co = { .size = sizeof(co), .backend = wf_bench_backend(transport) };
	char real[WF_BENCH_ADDR_LEN] = "";
	int ret;

	*ep = NULL;
	*step = "listen";
	ret = wf_ctx_create(&co, ctx);
	if (!ret)
		ret = wf_listen(*ctx, laddr, eo, l);
	if (!ret)
		ret = wf_listener_addr(*l, real, sizeof(real));
	if (ret)
		return ret;
	*step = "pipe";
	if (write(pfd, real, sizeof(real)) != sizeof(real))
		return -errno;
	close(pfd);
	while ((ret = wf_accept(*l, NULL, ep)) == -EAGAIN) {
		struct wf_cqe c[4];

		*step = "poll";
		if (wf_poll(*ctx, c, 4) < 0)
			return -EIO;
		if (deadline && wf_now_ns() > deadline)
			return -ETIMEDOUT;
	}
	*step = "accept";
	return ret;
}

void wf_bench_peer_end(struct wf_ctx *ctx, struct wf_listener *l, struct wf_ep *ep,
		       struct wf_mr *mr, void *buf)
{
	wf_ep_destroy(ep);
	wf_mr_dereg(mr);
	wf_listener_destroy(l);
	wf_ctx_destroy(ctx);
	free(buf);
}

/*
 * wf_poll as a reactor would: busy-poll for spin_ns, then arm and sleep on
 * the ctx fd.  On a loaded machine with both processes spinning, the
 * sleeping half gives the peer its CPU back.  Returns n > 0.
 */
static int poll_wait(struct wf_ctx *ctx, struct wf_cqe *c, int max)
{
	uint64_t start = 0;

	for (;;) {
		int n = wf_poll(ctx, c, max);

		if (n)
			return n;
		if (yield)
			sched_yield();  /* a peer sharing our CPU runs now */
		if (spin_ns) {
			if (!start) {
				start = wf_now_ns();
				continue;
			}
			if (wf_now_ns() - start < spin_ns)
				continue;
		}
		if (wf_ctx_arm(ctx))
			continue;
		n = wf_poll(ctx, c, max);
		if (n)
			return n;
		struct pollfd p = { .fd = wf_ctx_fd(ctx), .events = POLLIN };
		poll(&p, 1, 100);
		start = 0;
	}
}

/* Poll until a completion of kind op arrives; dies on any error cqe. */
static void wait_op(struct wf_ctx *ctx, uint32_t op, struct wf_cqe *out, void *copy)
{
	uint64_t end = wf_now_ns() + 30ull * 1000000000ull;

	for (;;) {
		struct wf_cqe c[8];
		int n = poll_wait(ctx, c, 8);

		if (n < 0)
			die("wf_poll", n);
		for (int i = 0; i < n; i++) {
			if (c[i].status)
				die(wf_cqe_op_name(c[i].op), c[i].status);
			if (c[i].op == WF_CQE_DISCONNECT)
				die("peer disconnected", ECONNRESET);
			if (c[i].op == op) {
				if (copy && c[i].msg)
					memcpy(copy, c[i].msg, c[i].len);
				if (out)
					*out = c[i];
				/* later cqes of this batch are only local
				 * completions in this benchmark: dropped */
				return;
			}
		}
		if (wf_now_ns() > end)
			die("timed out waiting", ETIMEDOUT);
	}
}

/* ---- B: the peer process ---- */

static int peer_main(const struct fopts *o, int pfd)
{
	struct wf_ep_opts eo = { .size = sizeof(eo), .send_depth = 64, .recv_depth = 64 };
	struct wf_ctx *ctx;
	struct wf_listener *l;
	struct wf_ep *ep;
	struct wf_mr *mr;
	struct wf_rkey mine, theirs;
	struct wf_wire_rkey w;
	const char *step;
	char what[32];
	void *buf;
	int ret;

	ret = wf_bench_peer_accept(o->transport, o->addr, &eo, pfd, 0, &ctx, &l, &ep, &step);
	if (ret) {
		snprintf(what, sizeof(what), "peer: %s", step);
		die(what, ret);
	}
	if (posix_memalign(&buf, 4096, o->size ? o->size : 1))
		die("peer: alloc", ENOMEM);
	memset(buf, 0x5a, o->size);
	ret = wf_mr_reg(ctx, buf, o->size ? o->size : 1,
			WF_ACCESS_REMOTE_WRITE | WF_ACCESS_REMOTE_READ, &mr);
	if (!ret)
		ret = wf_mr_rkey(mr, ep, 0, o->size, &mine);
	if (ret)
		die("peer: register", ret);
	wait_op(ctx, WF_CQE_RECV_MSG, NULL, &w);
	wf_rkey_decode(&w, &theirs);
	wf_rkey_encode(&mine, &w);
	ret = wf_send(ep, &w, sizeof(w), 0);
	if (ret)
		die("peer: send", ret);
	/* Serve: echo every write back; reads are served by polling. */
	for (;;) {
		struct wf_cqe c[16];
		int n = poll_wait(ctx, c, 16);

		if (n < 0)
			die("peer: poll", n);
		for (int i = 0; i < n; i++) {
			if (c[i].op == WF_CQE_DISCONNECT) {
				wf_bench_peer_end(ctx, l, ep, mr, buf);
				return 0;
			}
			if (c[i].status)
				die(wf_cqe_op_name(c[i].op), c[i].status);
			if (c[i].op == WF_CQE_RECV_IMM) {
				ret = wf_write_imm(ep, mr, 0, c[i].len, &theirs, 0,
						   c[i].imm, 0);
				if (ret)
					die("peer: write_imm", ret);
			}
		}
	}
}

/* ---- A: the measuring process ---- */

static void run_fabric(const struct fopts *o, struct result *wr, struct result *rd)
{
	struct wf_ctx_opts co = { .size = sizeof(co),
				  .backend = wf_bench_backend(o->transport) };
	struct wf_ep_opts eo = { .size = sizeof(eo), .send_depth = 64, .recv_depth = 64,
				 .timeout_ms = 30000 };
	static struct wf_hist hw, hr;
	struct wf_ctx *ctx;
	struct wf_ep *ep;
	struct wf_mr *src, *dst;
	struct wf_rkey mine, theirs;
	struct wf_wire_rkey w;
	char addr[WF_BENCH_ADDR_LEN];
	void *sbuf, *dbuf;
	int pfd[2], ret, status;
	uint32_t total = o->warmup + o->iters;
	uint64_t t0, t1;
	pid_t pid;

	if (pipe(pfd))
		die("pipe", errno);
	pid = fork();
	if (pid < 0)
		die("fork", errno);
	if (pid == 0) {
		close(pfd[0]);
		pin_to(pin + 1);
		_exit(peer_main(o, pfd[1]));
	}
	close(pfd[1]);
	if (read(pfd[0], addr, sizeof(addr)) != sizeof(addr))
		die("peer did not start", EIO);
	close(pfd[0]);

	ret = wf_ctx_create(&co, &ctx);
	if (!ret)
		ret = wf_connect(ctx, addr, &eo, &ep);
	if (ret)
		die("connect", ret);
	if (posix_memalign(&sbuf, 4096, o->size + 1) || posix_memalign(&dbuf, 4096, o->size + 1))
		die("alloc", ENOMEM);
	memset(sbuf, 0xa5, o->size);
	memset(dbuf, 0, o->size);
	ret = wf_mr_reg(ctx, sbuf, o->size + 1, 0, &src);
	if (!ret)
		ret = wf_mr_reg(ctx, dbuf, o->size + 1, WF_ACCESS_REMOTE_WRITE, &dst);
	if (!ret)
		ret = wf_mr_rkey(dst, ep, 0, o->size, &mine);
	if (ret)
		die("register", ret);
	wf_rkey_encode(&mine, &w);
	ret = wf_send(ep, &w, sizeof(w), 0);
	if (ret)
		die("send", ret);
	wait_op(ctx, WF_CQE_RECV_MSG, NULL, &w);
	wf_rkey_decode(&w, &theirs);

	wf_hist_reset(&hw);
	wf_hist_reset(&hr);
	t0 = 0;
	for (uint32_t i = 0; i < total; i++) {
		uint64_t s = wf_now_ns();
		struct wf_cqe c;

		if (i == o->warmup)
			t0 = s;
		ret = wf_write_imm(ep, src, 0, o->size, &theirs, 0, i, i);
		if (ret)
			die("write_imm", ret);
		wait_op(ctx, WF_CQE_RECV_IMM, &c, NULL);
		if (c.imm != i)
			die("echo out of order", EPROTO);
		if (i >= o->warmup)
			wf_hist_record(&hw, wf_now_ns() - s);
	}
	t1 = wf_now_ns();
	if (memcmp(sbuf, dbuf, o->size))
		die("echoed bytes differ", EIO);
	wf_hist_summary(&hw, &wr->lat);
	wr->ops_per_s = o->iters / ((double)(t1 - t0) / 1e9);

	/* Reads land in dst (local access is enough for that). */
	for (uint32_t i = 0; i < total; i++) {
		uint64_t s = wf_now_ns();

		if (i == o->warmup)
			t0 = s;
		ret = wf_read(ep, dst, 0, o->size, &theirs, 0, i);
		if (ret)
			die("read", ret);
		wait_op(ctx, WF_CQE_READ, NULL, NULL);
		if (i >= o->warmup)
			wf_hist_record(&hr, wf_now_ns() - s);
	}
	t1 = wf_now_ns();
	wf_hist_summary(&hr, &rd->lat);
	rd->ops_per_s = o->iters / ((double)(t1 - t0) / 1e9);

	wf_ep_close(ep);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		fprintf(stderr, "weft-bench fabric: peer exited badly (%d)\n", status);
	wf_ep_destroy(ep);
	wf_mr_dereg(src);
	wf_mr_dereg(dst);
	wf_ctx_destroy(ctx);
	free(sbuf);
	free(dbuf);
}

/* ---- the floor: a plain socket ping-pong, same policy ---- */

/*
 * Sends block (at queue depth 1 the socket buffer never fills).  Receives
 * follow spin_ns as poll_wait() does: non-blocking recv() until the spin
 * time is over (for ever when busy-polling; sched_yield() between with
 * --yield), then a blocking recv(), the cheapest way to sleep until data.
 */
static int io_all(int fd, void *buf, size_t len, bool wr)
{
	uint64_t start = 0;
	size_t done = 0;

	while (done < len) {
		bool spin = spin_ns == UINT64_MAX ||
			    (spin_ns && (!start || wf_now_ns() - start < spin_ns));
		ssize_t n = wr ? send(fd, (char *)buf + done, len - done, MSG_NOSIGNAL)
			       : recv(fd, (char *)buf + done, len - done,
				      spin ? MSG_DONTWAIT : 0);

		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n == 0)
			return -ECONNRESET;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -errno;
		if (yield)
			sched_yield();
		if (!start)
			start = wf_now_ns();
	}
	return 0;
}

/* A listening socket of the transport's kind; *conn_addr filled. */
static int floor_listen(const char *transport, struct sockaddr_storage *ss,
			socklen_t *len)
{
	int fd, one = 1;

	memset(ss, 0, sizeof(*ss));
	if (!strcmp(transport, "unix")) {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;

		un->sun_family = AF_UNIX;
		snprintf(un->sun_path, sizeof(un->sun_path), "/tmp/weft-floor-%d.sock",
			 (int)getpid());
		unlink(un->sun_path);
		*len = sizeof(*un);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		*len = sizeof(*in);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	}
	if (fd < 0 || bind(fd, (struct sockaddr *)ss, *len) || listen(fd, 4) ||
	    getsockname(fd, (struct sockaddr *)ss, len))
		die("floor: listen", errno);
	return fd;
}

static void nodelay(int fd, const char *transport)
{
	int one = 1;

	if (strcmp(transport, "unix"))
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Round trips of req bytes out and resp bytes back, spin_ns's policy. */
static void run_floor(const struct fopts *o, uint32_t req, uint32_t resp,
		      struct result *res)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	static struct wf_hist h;
	uint32_t total = o->warmup + o->iters;
	int lfd = floor_listen(o->transport, &ss, &sl), fd, status;
	char *buf = calloc(1, (req > resp ? req : resp) + 1);
	uint64_t t0 = 0, t1;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		die("fork", errno);
	if (pid == 0) {
		int c;

		pin_to(pin + 1);
		c = accept(lfd, NULL, NULL);

		if (c < 0)
			_exit(1);
		nodelay(c, o->transport);
		for (uint32_t i = 0; i < total; i++)
			if (io_all(c, buf, req, false) || io_all(c, buf, resp, true))
				_exit(2);
		_exit(0);
	}
	fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl))
		die("floor: connect", errno);
	nodelay(fd, o->transport);
	wf_hist_reset(&h);
	for (uint32_t i = 0; i < total; i++) {
		uint64_t s = wf_now_ns();

		if (i == o->warmup)
			t0 = s;
		if (io_all(fd, buf, req, true) || io_all(fd, buf, resp, false))
			die("floor: ping-pong", EIO);
		if (i >= o->warmup)
			wf_hist_record(&h, wf_now_ns() - s);
	}
	t1 = wf_now_ns();
	close(fd);
	waitpid(pid, &status, 0);
	close(lfd);
	if (ss.ss_family == AF_UNIX)
		unlink(((struct sockaddr_un *)&ss)->sun_path);
	wf_hist_summary(&h, &res->lat);
	res->ops_per_s = o->iters / ((double)(t1 - t0) / 1e9);
	free(buf);
}

/* ---- the floor under verbs: perftest ---- */

/*
 * Runs `TOOL -R -s SIZE -n ITERS [-d DEV]` as server, then as client towards
 * the IP of --addr (rdma_cm, like the fabric), and returns the client's
 * t_typical in microseconds (or a negative value if perftest is missing or
 * failed).  perftest's -R client fails to connect about once in three under
 * soft-RoCE: up to three attempts.
 */
static double perftest(const char *tool, const struct fopts *o)
{
	char ip[128] = "", cmd[512], line[512];
	const char *a = o->addr, *colon;
	double typical = -1;

	if (!strncmp(a, "rdma:", 5))
		a += 5;
	colon = strrchr(a, ':');
	snprintf(ip, sizeof(ip), "%.*s", colon ? (int)(colon - a) : (int)strlen(a), a);
	for (int attempt = 0; attempt < 3 && typical < 0; attempt++) {
		char dev[96] = "", cdev[96] = "";
		FILE *p;
		pid_t srv;

		if (o->device)
			snprintf(dev, sizeof(dev), " -d %s", o->device);
		if (o->cdevice || o->device)
			snprintf(cdev, sizeof(cdev), " -d %s",
				 o->cdevice ? o->cdevice : o->device);
		srv = fork();
		if (srv == 0) {
			snprintf(cmd, sizeof(cmd), "exec %s -R -s %u -n %u%s >/dev/null 2>&1",
				 tool, o->size, o->iters, dev);
			execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
			_exit(127);
		}
		usleep(1000 * 1000);    /* the listener must exist first */
		snprintf(cmd, sizeof(cmd), "%s -R -s %u -n %u%s %s 2>&1", tool, o->size,
			 o->iters, cdev, ip);
		p = popen(cmd, "r");
		while (p && fgets(line, sizeof(line), p)) {
			double v[6];

			/* " #bytes #iterations t_min t_max t_typical ..." */
			if (sscanf(line, " %lf %lf %lf %lf %lf", &v[0], &v[1], &v[2],
				   &v[3], &v[4]) == 5 && v[0] == o->size)
				typical = v[4];
		}
		if (p)
			pclose(p);
		kill(srv, SIGTERM);
		waitpid(srv, NULL, 0);
	}
	return typical;
}

/* ---- output ---- */

/* One waiting policy's figures: the fabric's and its floor's. */
struct policy {
	const char   *name;
	uint64_t      spin_ns;
	struct result wr, rd, fw, fr;
};

static void print_text(const struct fopts *o, const struct policy *p,
		       const char *what, const struct result *r,
		       const struct result *f)
{
	printf("%-5s %-9s %-5s %6u B  p50 %8.2f us  p99 %8.2f us  p99.9 %8.2f us  %9.0f ops/s",
	       o->transport, p->name, what, o->size, r->lat.p50_us, r->lat.p99_us,
	       r->lat.p999_us, r->ops_per_s);
	if (f && f->lat.p50_us > 0)
		printf("  | floor p50 %8.2f us  ratio %.2f", f->lat.p50_us,
		       r->lat.p50_us / f->lat.p50_us);
	printf("\n");
}

static void json_one(struct wf_json *j, const char *prefix, const struct result *r,
		     const struct result *f)
{
	char k[64];

	snprintf(k, sizeof(k), "%sp50_us", prefix);
	wf_json_dbl(j, k, r->lat.p50_us);
	snprintf(k, sizeof(k), "%sp99_us", prefix);
	wf_json_dbl(j, k, r->lat.p99_us);
	snprintf(k, sizeof(k), "%sp999_us", prefix);
	wf_json_dbl(j, k, r->lat.p999_us);
	snprintf(k, sizeof(k), "%smean_us", prefix);
	wf_json_dbl(j, k, r->lat.mean_us);
	snprintf(k, sizeof(k), "%sops_per_s", prefix);
	wf_json_dbl(j, k, r->ops_per_s);
	snprintf(k, sizeof(k), "%sfloor_p50_us", prefix);
	wf_json_dbl(j, k, f->lat.p50_us > 0 ? f->lat.p50_us : 0.0 / 0.0);
	snprintf(k, sizeof(k), "%sfloor_p99_us", prefix);
	wf_json_dbl(j, k, f->lat.p99_us > 0 ? f->lat.p99_us : 0.0 / 0.0);
	snprintf(k, sizeof(k), "%sratio_to_floor", prefix);
	wf_json_dbl(j, k, f->lat.p50_us > 0 ? r->lat.p50_us / f->lat.p50_us : 0.0 / 0.0);
}

static int usage(void)
{
	fprintf(stderr,
		"usage: weft-bench fabric --transport tcp|unix|verbs --size N\n"
		"         [--iters N] [--warmup N] [--addr LISTEN_ADDR]\n"
		"         [--device IBDEV] [--client-device IBDEV]\n"
		"         [--spin-us N] [--yield] [--pin CPU] [--no-floor] [--json]\n");
	return 2;
}

int bench_fabric(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "transport", required_argument, NULL, 't' },
		{ "size",      required_argument, NULL, 's' },
		{ "iters",     required_argument, NULL, 'n' },
		{ "warmup",    required_argument, NULL, 'w' },
		{ "addr",      required_argument, NULL, 'a' },
		{ "device",    required_argument, NULL, 'd' },
		{ "client-device", required_argument, NULL, 'D' },
		{ "no-floor",  no_argument,       NULL, 'F' },
		{ "spin-us",   required_argument, NULL, 'S' },
		{ "pin",       required_argument, NULL, 'P' },
		{ "yield",     no_argument,       NULL, 'Y' },
		{ "json",      no_argument,       NULL, 'j' },
		{ "help",      no_argument,       NULL, 'h' },
		{ 0 },
	};
	struct fopts o = { .transport = "tcp", .size = 64, .iters = 20000,
			   .warmup = 1000, .floor = true, .device = getenv("WEFT_IB_DEV"),
			   .cdevice = getenv("WEFT_IB_DEV_CLIENT") };
	struct policy pol[2] = { { .name = "busy-poll", .spin_ns = UINT64_MAX },
				 { .name = "sleep", .spin_ns = 0 } };
	unsigned npol = 2;
	const char *addr = NULL;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "t:s:n:w:a:d:D:FS:P:Yjh", lo, NULL)) != -1) {
		switch (c) {
		case 't': o.transport = optarg; break;
		case 's': o.size = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'n': o.iters = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'w': o.warmup = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'a': addr = optarg; break;
		case 'd': o.device = optarg; break;
		case 'D': o.cdevice = optarg; break;
		case 'F': o.floor = false; break;
		case 'S':
			/* One policy, this one, on both sides of the comparison. */
			pol[0].spin_ns = strtoull(optarg, NULL, 0) * 1000;
			pol[0].name = pol[0].spin_ns ? "spin" : "sleep";
			npol = 1;
			break;
		case 'P': pin = atoi(optarg); break;
		case 'Y': yield = true; break;
		case 'j': o.json = true; break;
		default:  return usage();
		}
	}
	if (strcmp(o.transport, "tcp") && strcmp(o.transport, "unix") &&
	    strcmp(o.transport, "verbs"))
		return usage();
	if (!o.iters || o.size > (64u << 20))
		return usage();
	if (addr)
		snprintf(o.addr, sizeof(o.addr), "%s", addr);
	else if (!strcmp(o.transport, "tcp"))
		snprintf(o.addr, sizeof(o.addr), "tcp:127.0.0.1:0");
	else if (!strcmp(o.transport, "unix"))
		snprintf(o.addr, sizeof(o.addr), "unix:/tmp/weft-bench-%d.sock", (int)getpid());
	else {
		fprintf(stderr, "weft-bench fabric: verbs needs --addr rdma:IP:PORT\n");
		return 2;
	}

	/* perftest busy-polls: over verbs only that policy has a floor. */
	if (!strcmp(o.transport, "verbs"))
		npol = 1;
	pin_to(pin);
	for (unsigned i = 0; i < npol; i++) {
		struct policy *p = &pol[i];

		spin_ns = p->spin_ns;   /* poll_wait() and io_all(), both sides */
		run_fabric(&o, &p->wr, &p->rd);
		if (o.floor && strcmp(o.transport, "verbs")) {
			run_floor(&o, o.size, o.size, &p->fw);
			/* a read: small ask, SIZE back */
			run_floor(&o, 24, o.size, &p->fr);
		} else if (o.floor) {
			/* perftest reports one-way-ish t_typical for write_lat
			 * (half the ping-pong); double it to compare with our
			 * round trip. */
			double t = perftest("ib_write_lat", &o);

			p->fw.lat.p50_us = t > 0 ? 2 * t : 0;
			t = perftest("ib_read_lat", &o);
			p->fr.lat.p50_us = t > 0 ? t : 0;
			if (p->fw.lat.p50_us <= 0 || p->fr.lat.p50_us <= 0)
				fprintf(stderr, "weft-bench fabric: perftest floor unavailable\n");
		}
	}

	if (o.json) {
		struct wf_json j;

		wf_json_init(&j, stdout, true);
		wf_json_obj_begin(&j, NULL);
		wf_json_str(&j, "benchmark", "fabric");
		wf_json_str(&j, "transport", o.transport);
		wf_json_u64(&j, "size", o.size);
		wf_json_u64(&j, "iters", o.iters);
		wf_json_i64(&j, "spin_us", pol[0].spin_ns == UINT64_MAX ? -1 :
			    (int64_t)(pol[0].spin_ns / 1000));
		wf_json_str(&j, "policy", pol[0].name);
		wf_json_str(&j, "floor", !o.floor ? "none" :
			    strcmp(o.transport, "verbs") ? "socket-ping-pong" : "perftest");
		{       /* how busy the machine was: numbers mean little without it */
			double la = -1;
			FILE *f = fopen("/proc/loadavg", "r");

			if (f) {
				if (fscanf(f, "%lf", &la) != 1)
					la = -1;
				fclose(f);
			}
			wf_json_dbl(&j, "loadavg_1m", la);
		}
		wf_json_bool(&j, "yield", yield);
		/* The first policy unprefixed (what --spin-us asked, else
		 * busy-poll); the second, when measured, prefixed "sleep_". */
		json_one(&j, "", &pol[0].wr, &pol[0].fw);
		json_one(&j, "read_", &pol[0].rd, &pol[0].fr);
		if (npol > 1) {
			json_one(&j, "sleep_", &pol[1].wr, &pol[1].fw);
			json_one(&j, "sleep_read_", &pol[1].rd, &pol[1].fr);
		}
		wf_json_obj_end(&j);
		return wf_json_finish(&j) ? 1 : 0;
	}
	for (unsigned i = 0; i < npol; i++) {
		print_text(&o, &pol[i], "write", &pol[i].wr, o.floor ? &pol[i].fw : NULL);
		print_text(&o, &pol[i], "read", &pol[i].rd, o.floor ? &pol[i].fr : NULL);
	}
	printf("(floor: %s with the same waiting policy on both sides; ratio: "
	       "p50 / floor p50)\n", !o.floor ? "none" : strcmp(o.transport, "verbs") ?
	       "a plain socket ping-pong" : "perftest");
	return 0;
}
