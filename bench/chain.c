/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-bench chain: the floor of a replicated write's message topology,
 * with no device and no weft code.
 *
 *   pair:  client -> server -> client                  (one round trip)
 *   chain: client -> primary -> {secondary 1, secondary 2} -> primary -> client
 *
 * Each role is its own process, one TCP loopback connection per hop,
 * TCP_NODELAY on both ends (as fabric/tcp_conn.c sets it).  The request is
 * a 64-byte header and the bs-byte payload in one sendmsg(); every answer
 * is 16 bytes.  The secondaries check the payload's stamps, everyone checks
 * the sequence number it gets back, so a run that measured nothing fails.
 *
 * Waiting, --wait sleep (the default, what weft does by default): the
 * servers (server, primary, secondaries) sleep as weft's target does when
 * it has no work, in io_uring_submit_and_wait() on a one-shot POLL_ADD of
 * an epoll set holding their sockets (target/reactor.c, wf_store_wait), then
 * read with recv(MSG_DONTWAIT); the client sleeps in epoll_wait() as
 * libweft's weft_wait() does when it does not spin.  --wait spin: every
 * process retries recv(MSG_DONTWAIT) without sleeping.  Each process reads
 * what is ready before it sleeps again, so a level-triggered wake never
 * repeats.
 *
 * Per round and topology: fresh processes, a warmup, then iters timed
 * round trips (client's send to the client's receipt of the answer).
 * Rounds alternate the topologies (pair chain pair chain ...).  The
 * figures are the medians over rounds of each round's p50 and p99; the
 * context switches and CPU of all the processes (warmup and connection
 * set-up included) are reported per round trip: a voluntary switch is a
 * sleep, i.e. one wake-up.  Method and figures: docs/performance.md.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <liburing.h>

#include "bench/bench.h"
#include "bench/json.h"
#include "bench/stats.h"

#define HDR_LEN      64
#define ANS_LEN      16
#define MAX_ROUNDS   64
#define WAIT_MS      10000      /* a process waiting longer gives up */

enum topo { T_PAIR, T_CHAIN, T_COUNT };
static const char *const topo_name[T_COUNT] = { "pair", "chain" };
static const unsigned topo_procs[T_COUNT] = { 2, 4 };

struct copts {
	uint32_t bs, iters, warmup, rounds;
	bool spin;
	bool want[T_COUNT];
};

/* One process's way to sleep until one of its sockets is readable. */
struct waiter {
	bool spin, ring_ok;
	int epfd;
	struct io_uring ring;   /* servers: the poll sleeps in io_uring_enter */
	uint64_t deadline;
};

struct round {
	struct wf_lat_summary lat;
	uint64_t nvcsw, nivcsw;         /* all the processes */
	uint64_t cpu_ns;
};

struct topo_res {
	unsigned n;
	struct round r[MAX_ROUNDS];
	struct wf_hist all;
};

/* ---- waiting ------------------------------------------------------------ */

static int waiter_init(struct waiter *w, bool spin, bool ring, const int *fds, unsigned n)
{
	memset(w, 0, sizeof(*w));
	w->spin = spin;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0)
		return -errno;
	for (unsigned i = 0; i < n; i++) {
		struct epoll_event e = { .events = EPOLLIN, .data.fd = fds[i] };

		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fds[i], &e))
			return -errno;
	}
	if (ring && !spin) {
		int err = io_uring_queue_init(8, &w->ring, 0);

		if (err)
			return err;
		w->ring_ok = true;
	}
	return 0;
}

/* Sleeps until a socket may be readable (spin: returns at once). */
static int waiter_wait(struct waiter *w)
{
	if (w->spin) {
		/* The clock only now and then: it is what a spin costs. */
		static unsigned n;

		if (++n % 4096 == 0 && wf_now_ns() > w->deadline)
			return -ETIMEDOUT;
		return 0;
	}
	if (w->ring_ok) {
		struct __kernel_timespec ts = { .tv_sec = WAIT_MS / 1000 };
		struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
		struct io_uring_cqe *cqe;
		int ret;

		if (!sqe)
			return -EBUSY;
		io_uring_prep_poll_add(sqe, w->epfd, POLLIN);
		ret = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
		if (ret < 0)
			return ret == -ETIME ? -ETIMEDOUT : ret;
		io_uring_cqe_seen(&w->ring, cqe);
		return 0;
	} else {
		struct epoll_event e;
		int n = epoll_wait(w->epfd, &e, 1, WAIT_MS);

		if (n < 0 && errno != EINTR)
			return -errno;
		return n == 0 ? -ETIMEDOUT : 0;
	}
}

/*
 * Reads what is there of a message of len bytes (*got so far): 1 when
 * complete, 0 when more is to come, -errno (-ECONNRESET at end of stream).
 */
static int take(int fd, void *buf, size_t len, size_t *got)
{
	while (*got < len) {
		ssize_t n = recv(fd, (char *)buf + *got, len - *got, MSG_DONTWAIT);

		if (n > 0) {
			*got += (size_t)n;
			continue;
		}
		if (n == 0)
			return -ECONNRESET;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
	return 1;
}

/* One whole message from fd, sleeping as the policy says. */
static int recv_msg(struct waiter *w, int fd, void *buf, size_t len)
{
	size_t got = 0;
	int ret;

	while (!(ret = take(fd, buf, len, &got)))
		if ((ret = waiter_wait(w)))
			return ret;
	return ret < 0 ? ret : 0;
}

static int send_iov(int fd, struct iovec *iov, int n, size_t len)
{
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
	ssize_t s = sendmsg(fd, &mh, MSG_NOSIGNAL);

	/* Loopback buffers hold far more than one message: never partial. */
	if (s < 0)
		return -errno;
	return (size_t)s == len ? 0 : -EIO;
}

static int send_buf(int fd, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return send_iov(fd, &iov, 1, len);
}

/* ---- the roles ---------------------------------------------------------- */

static uint64_t stamp_at(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* server (pair) or secondary (chain): answer every request on fd. */
static int role_answer(const struct copts *o, int fd, uint8_t *buf)
{
	struct waiter w;
	uint8_t ans[ANS_LEN] = { 0 };
	int ret = waiter_init(&w, o->spin, true, &fd, 1);
	size_t len = HDR_LEN + o->bs;

	while (!ret) {
		w.deadline = wf_now_ns() + WAIT_MS * 1000000ull;
		ret = recv_msg(&w, fd, buf, len);
		if (ret)
			break;
		/* header, first and last payload words: the same sequence */
		if (stamp_at(buf) != stamp_at(buf + HDR_LEN) ||
		    stamp_at(buf) != stamp_at(buf + len - 8))
			return -EILSEQ;
		memcpy(ans, buf, 8);
		ret = send_buf(fd, ans, sizeof(ans));
	}
	return ret == -ECONNRESET ? 0 : ret;
}

/* primary: forward every request to both secondaries, answer once both did. */
static int role_primary(const struct copts *o, int cfd, const int sfd[2], uint8_t *buf)
{
	int fds[3] = { cfd, sfd[0], sfd[1] };
	uint8_t ans[2][ANS_LEN], out[ANS_LEN] = { 0 };
	size_t len = HDR_LEN + o->bs;
	struct waiter w;
	int ret = waiter_init(&w, o->spin, true, fds, 3);

	while (!ret) {
		struct iovec iov = { .iov_base = buf, .iov_len = len };
		size_t got[2] = { 0, 0 };
		bool done[2] = { false, false };

		w.deadline = wf_now_ns() + WAIT_MS * 1000000ull;
		ret = recv_msg(&w, cfd, buf, len);
		if (ret)
			break;
		ret = send_iov(sfd[0], &iov, 1, len);
		if (!ret)
			ret = send_iov(sfd[1], &iov, 1, len);
		/* both answers, in whichever order they come */
		while (!ret && !(done[0] && done[1])) {
			for (int k = 0; k < 2 && !ret; k++) {
				if (done[k])
					continue;
				ret = take(sfd[k], ans[k], ANS_LEN, &got[k]);
				if (ret == 1) {
					done[k] = true;
					ret = 0;
				}
			}
			if (!ret && !(done[0] && done[1]))
				ret = waiter_wait(&w);
		}
		if (ret)
			break;
		if (stamp_at(ans[0]) != stamp_at(buf) || stamp_at(ans[1]) != stamp_at(buf))
			return -EILSEQ;
		memcpy(out, buf, 8);
		ret = send_buf(cfd, out, sizeof(out));
	}
	return ret == -ECONNRESET ? 0 : ret;
}

/* client: warmup + iters timed round trips into h. */
static int role_client(const struct copts *o, int fd, uint8_t *buf, struct wf_hist *h)
{
	uint8_t ans[ANS_LEN];
	size_t len = HDR_LEN + o->bs;
	struct waiter w;
	int ret = waiter_init(&w, o->spin, false, &fd, 1);

	for (uint64_t i = 0; !ret && i < (uint64_t)o->warmup + o->iters; i++) {
		struct iovec iov = { .iov_base = buf, .iov_len = len };
		uint64_t seq = i + 1, t0;

		memcpy(buf, &seq, 8);
		memcpy(buf + HDR_LEN, &seq, 8);
		memcpy(buf + len - 8, &seq, 8);
		w.deadline = wf_now_ns() + WAIT_MS * 1000000ull;
		t0 = wf_now_ns();
		ret = send_iov(fd, &iov, 1, len);
		if (!ret)
			ret = recv_msg(&w, fd, ans, sizeof(ans));
		if (!ret && stamp_at(ans) != seq)
			ret = -EILSEQ;
		if (!ret && i >= o->warmup)
			wf_hist_record(h, wf_now_ns() - t0);
	}
	close(w.epfd);
	return ret;
}

/* ---- processes ---------------------------------------------------------- */

static void nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* A listening socket on 127.0.0.1, its port chosen by the kernel. */
static int listen_any(struct sockaddr_in *sa)
{
	socklen_t sl = sizeof(*sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)sa, sizeof(*sa)) || listen(fd, 4) ||
	    getsockname(fd, (struct sockaddr *)sa, &sl)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static int connect_to(const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa))) {
		int err = -errno;

		close(fd);
		return err;
	}
	nodelay(fd);
	return fd;
}

static int accept_one(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd >= 0)
		nodelay(fd);
	return fd < 0 ? -errno : fd;
}

/*
 * Server-side process: role 0 = server/secondary on listener lfd, role 1 =
 * primary (accepts the client on lfd, connects to the secondaries).
 */
static int child_main(const struct copts *o, int role, int lfd, const struct sockaddr_in *sec)
{
	uint8_t *buf;
	int fd, ret;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		return 1;
	buf = aligned_alloc(4096, HDR_LEN + o->bs + 4096);
	if (!buf)
		return 1;
	if (role == 0) {
		fd = accept_one(lfd);
		ret = fd < 0 ? fd : role_answer(o, fd, buf);
	} else {
		int sfd[2] = { connect_to(&sec[0]), connect_to(&sec[1]) };

		fd = sfd[0] < 0 || sfd[1] < 0 ? -ECONNREFUSED : accept_one(lfd);
		ret = fd < 0 ? fd : role_primary(o, fd, sfd, buf);
	}
	if (ret)
		fprintf(stderr, "chain: %s: %s\n", role ? "primary" : "server",
			strerror(-ret));
	return ret ? 1 : 0;
}

static uint64_t tv_ns(const struct timeval *tv)
{
	return (uint64_t)tv->tv_sec * 1000000000ull + (uint64_t)tv->tv_usec * 1000ull;
}

static void add_usage(struct round *r, const struct rusage *u, const struct rusage *base)
{
	r->nvcsw += (uint64_t)(u->ru_nvcsw - (base ? base->ru_nvcsw : 0));
	r->nivcsw += (uint64_t)(u->ru_nivcsw - (base ? base->ru_nivcsw : 0));
	r->cpu_ns += tv_ns(&u->ru_utime) + tv_ns(&u->ru_stime);
	if (base)
		r->cpu_ns -= tv_ns(&base->ru_utime) + tv_ns(&base->ru_stime);
}

/* One round of topology t: its processes, the timed loop, their usage. */
static int run_round(const struct copts *o, enum topo t, struct round *r, struct wf_hist *all)
{
	struct sockaddr_in sa[3];
	int lfd[3] = { -1, -1, -1 }, nl = t == T_PAIR ? 1 : 3, ret = 0, st, fd = -1;
	pid_t pid[3] = { 0, 0, 0 };
	struct rusage u0, u1, cu;
	struct wf_hist *h = calloc(1, sizeof(*h));
	uint8_t *buf = aligned_alloc(4096, HDR_LEN + o->bs + 4096);

	memset(r, 0, sizeof(*r));
	if (!h || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	wf_hist_reset(h);
	memset(buf, 0x5a, HDR_LEN + o->bs);
	/* lfd[0]: the client's peer (server or primary); 1, 2: secondaries */
	for (int i = 0; i < nl && !ret; i++) {
		lfd[i] = listen_any(&sa[i]);
		if (lfd[i] < 0)
			ret = lfd[i];
	}
	fflush(NULL);
	for (int i = 0; i < nl && !ret; i++) {
		pid[i] = fork();
		if (pid[i] < 0) {
			ret = -errno;
			pid[i] = 0;
		} else if (pid[i] == 0) {
			_exit(child_main(o, t == T_CHAIN && i == 0 ? 1 : 0, lfd[i], &sa[1]));
		}
	}
	for (int i = 0; i < nl; i++)
		if (lfd[i] >= 0)
			close(lfd[i]);
	if (!ret)
		fd = connect_to(&sa[0]);
	if (!ret && fd < 0)
		ret = fd;
	getrusage(RUSAGE_SELF, &u0);
	if (!ret)
		ret = role_client(o, fd, buf, h);
	getrusage(RUSAGE_SELF, &u1);
	if (fd >= 0)
		close(fd);      /* the server side ends at end of stream */
	add_usage(r, &u1, &u0);
	for (int i = 0; i < nl; i++) {
		if (!pid[i])
			continue;
		if (ret)
			kill(pid[i], SIGKILL);
		if (wait4(pid[i], &st, 0, &cu) == pid[i]) {
			add_usage(r, &cu, NULL);
			if (!ret && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
				ret = -EPROTO;
		}
	}
	if (!ret) {
		wf_hist_summary(h, &r->lat);
		wf_hist_merge(all, h);
	}
out:
	free(buf);
	free(h);
	return ret;
}

/* ---- report ------------------------------------------------------------- */

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median_of(const struct topo_res *t, size_t off)
{
	double v[MAX_ROUNDS];

	for (unsigned i = 0; i < t->n; i++)
		memcpy(&v[i], (const char *)&t->r[i] + off, sizeof(double));
	qsort(v, t->n, sizeof(double), cmp_dbl);
	return t->n % 2 ? v[t->n / 2] : (v[t->n / 2 - 1] + v[t->n / 2]) / 2;
}

#define MED(t, f) median_of((t), offsetof(struct round, lat.f))

static double per_rt(const struct copts *o, const struct topo_res *t, int what)
{
	uint64_t sum = 0, n = (uint64_t)t->n * (o->iters + o->warmup);

	for (unsigned i = 0; i < t->n; i++)
		sum += what == 0 ? t->r[i].nvcsw : what == 1 ? t->r[i].nivcsw : t->r[i].cpu_ns;
	return n ? (double)sum / (double)n : 0;
}

static void report_json(const struct copts *o, const struct topo_res *res)
{
	struct wf_json j;

	wf_json_init(&j, stdout, true);
	wf_json_obj_begin(&j, NULL);
	wf_json_str(&j, "bench", "chain");
	wf_json_str(&j, "transport", "tcp");
	wf_json_str(&j, "wait", o->spin ? "spin" : "sleep");
	wf_json_u64(&j, "bs", o->bs);
	wf_json_u64(&j, "header", HDR_LEN);
	wf_json_u64(&j, "answer", ANS_LEN);
	wf_json_u64(&j, "iters", o->iters);
	wf_json_u64(&j, "warmup", o->warmup);
	wf_json_u64(&j, "rounds", o->rounds);
	for (int t = 0; t < T_COUNT; t++) {
		const struct topo_res *r = &res[t];
		struct wf_lat_summary s;

		if (!o->want[t])
			continue;
		wf_json_obj_begin(&j, topo_name[t]);
		wf_json_u64(&j, "processes", topo_procs[t]);
		wf_json_dbl(&j, "p50_us", MED(r, p50_us));
		wf_json_dbl(&j, "p99_us", MED(r, p99_us));
		wf_json_dbl(&j, "mean_us", MED(r, mean_us));
		wf_json_dbl(&j, "voluntary_switches_per_rt", per_rt(o, r, 0));
		wf_json_dbl(&j, "involuntary_switches_per_rt", per_rt(o, r, 1));
		wf_json_dbl(&j, "cpu_us_per_rt", per_rt(o, r, 2) / 1000.0);
		wf_json_arr_begin(&j, "per_round");
		for (unsigned i = 0; i < r->n; i++) {
			wf_json_obj_begin(&j, NULL);
			wf_json_dbl(&j, "p50_us", r->r[i].lat.p50_us);
			wf_json_dbl(&j, "p99_us", r->r[i].lat.p99_us);
			wf_json_dbl(&j, "mean_us", r->r[i].lat.mean_us);
			wf_json_u64(&j, "round_trips", r->r[i].lat.count);
			wf_json_obj_end(&j);
		}
		wf_json_arr_end(&j);
		wf_hist_summary(&r->all, &s);
		wf_json_obj_begin(&j, "all_rounds");
		wf_json_u64(&j, "count", s.count);
		wf_json_lat(&j, "", &s);
		wf_json_obj_end(&j);
		wf_json_obj_end(&j);
	}
	wf_json_obj_end(&j);
	wf_json_finish(&j);
}

static void report_text(const struct copts *o, const struct topo_res *res)
{
	printf("chain floor: tcp loopback, %u+%u B requests, %u B answers, wait %s, "
	       "%u rounds of %u round trips (medians of the rounds)\n",
	       HDR_LEN, o->bs, ANS_LEN, o->spin ? "spin" : "sleep", o->rounds, o->iters);
	for (int t = 0; t < T_COUNT; t++) {
		const struct topo_res *r = &res[t];

		if (!o->want[t])
			continue;
		printf("  %-5s (%u processes): p50 %.1f us  p99 %.1f us  "
		       "%.2f sleeps, %.2f preemptions, %.1f us CPU per round trip\n",
		       topo_name[t], topo_procs[t], MED(r, p50_us), MED(r, p99_us),
		       per_rt(o, r, 0), per_rt(o, r, 1), per_rt(o, r, 2) / 1000.0);
	}
}

static int usage(FILE *f)
{
	fprintf(f,
		"usage: weft-bench chain [--topology pair,chain] [--wait sleep|spin]\n"
		"         [--bs 4096] [--iters N] [--warmup N] [--rounds R] [--json]\n"
		"  The replicated write's message topology with nothing else: a\n"
		"  client, a primary forwarding to two secondaries (chain) or one\n"
		"  server (pair), each its own process, over TCP loopback.  Rounds\n"
		"  alternate the topologies; medians of the rounds' p50 and p99.\n");
	return f == stdout ? 0 : 2;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *v)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(s, &end, 10);
	if (errno || end == s || *end || n < lo || n > hi)
		return -EINVAL;
	*v = (uint32_t)n;
	return 0;
}

int bench_chain(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "topology", required_argument, NULL, 'T' },
		{ "wait",     required_argument, NULL, 'w' },
		{ "bs",       required_argument, NULL, 'b' },
		{ "iters",    required_argument, NULL, 'i' },
		{ "warmup",   required_argument, NULL, 'W' },
		{ "rounds",   required_argument, NULL, 'r' },
		{ "json",     no_argument,       NULL, 'j' },
		{ "help",     no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct copts o = { .bs = 4096, .iters = 20000, .warmup = 2000, .rounds = 3,
			   .want = { true, true } };
	struct topo_res *res;
	bool json = false;
	int opt, idx = 0, err = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", lopts, &idx)) != -1) {
		switch (opt) {
		case 'T': {
			char tmp[64], *save = NULL;

			if (strlen(optarg) >= sizeof(tmp))
				goto bad;
			strcpy(tmp, optarg);
			o.want[T_PAIR] = o.want[T_CHAIN] = false;
			for (char *s = strtok_r(tmp, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
				if (!strcmp(s, "pair"))
					o.want[T_PAIR] = true;
				else if (!strcmp(s, "chain"))
					o.want[T_CHAIN] = true;
				else
					goto bad;
			}
			if (!o.want[T_PAIR] && !o.want[T_CHAIN])
				goto bad;
			break;
		}
		case 'w':
			if (!strcmp(optarg, "spin"))
				o.spin = true;
			else if (strcmp(optarg, "sleep"))
				goto bad;
			break;
		case 'b':
			if (parse_u32(optarg, 16, 1u << 20, &o.bs))
				goto bad;
			break;
		case 'i':
			if (parse_u32(optarg, 1, 100000000, &o.iters))
				goto bad;
			break;
		case 'W':
			if (parse_u32(optarg, 0, 100000000, &o.warmup))
				goto bad;
			break;
		case 'r':
			if (parse_u32(optarg, 1, MAX_ROUNDS, &o.rounds))
				goto bad;
			break;
		case 'j': json = true; break;
		case 'h': return usage(stdout);
		default:  return usage(stderr);
		}
	}
	if (optind != argc)
		return usage(stderr);
	signal(SIGPIPE, SIG_IGN);
	res = calloc(T_COUNT, sizeof(*res));
	if (!res)
		return 1;
	for (int t = 0; t < T_COUNT; t++)
		wf_hist_reset(&res[t].all);
	for (uint32_t k = 0; k < o.rounds && !err; k++) {
		for (int t = 0; t < T_COUNT && !err; t++) {
			struct topo_res *r = &res[t];

			if (!o.want[t])
				continue;
			err = run_round(&o, (enum topo)t, &r->r[r->n], &r->all);
			if (err)
				fprintf(stderr, "chain: %s round %u: %s\n", topo_name[t],
					k + 1, strerror(-err));
			else
				r->n++;
		}
	}
	if (!err) {
		if (json)
			report_json(&o, res);
		else
			report_text(&o, res);
	}
	free(res);
	return err ? 1 : 0;
bad:
	fprintf(stderr, "chain: bad value for --%s: %s\n", lopts[idx].name, optarg);
	return usage(stderr);
}
