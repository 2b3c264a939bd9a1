/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Process crash: a child writes (and discards) a stream with many requests
 * in flight and reports each acknowledged one through a pipe; the parent
 * SIGKILLs it at a random moment, reopens the store and checks that every
 * acknowledged write reads back intact.  Repeated over one store, so later
 * rounds also check what earlier ones left.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "tests/store/helpers.h"

#define EXT     (64 * KiB)
#define NV      3
#define NE      32
#define BPE     (EXT / 4096)
#define QD      24
#define ROUNDS  30

static char img[128];

static void teardown(void)
{
	if (img[0])
		unlink(img);
}

/* Pipe records, written by the child, in acknowledgement order. */
enum { REC_WRITE = 1, REC_DISCARD_INTENT, REC_DISCARD };
struct rec {
	uint8_t  kind, v, e, b;         /* b: first block */
	uint8_t  n;                     /* blocks */
	uint8_t  pad[3];
	uint32_t gen;
};

/* Block content: header (gen, v, e, b), then a pattern seeded by them. */
static void fill(uint8_t *blk, uint32_t gen, int v, int e, int b)
{
	uint32_t h[4] = { gen, (uint32_t)v, (uint32_t)e, (uint32_t)b };

	pattern(blk, 4096, (uint64_t)v, (uint64_t)e * EXT + b * 4096ull, gen);
	memcpy(blk, h, sizeof(h));
}

/* 0 if zero; the gen if intact; -1 if torn or foreign. */
static long decode(const uint8_t *blk, int v, int e, int b)
{
	static uint8_t want[4096] __attribute__((aligned(4096)));
	uint32_t h[4];

	if (all_zero(blk, 4096))
		return 0;
	memcpy(h, blk, sizeof(h));
	if (h[1] != (uint32_t)v || h[2] != (uint32_t)e || h[3] != (uint32_t)b || !h[0])
		return -1;
	fill(want, h[0], v, e, b);
	return memcmp(want, blk, 4096) ? -1 : (long)h[0];
}

struct creq {
	struct wf_store_req req;
	struct rec rec;
	uint8_t *buf;
	bool busy;
};

static int rec_fd;
static int ext_busy[NV][NE];            /* requests in flight per extent */
static bool ext_discarding[NV][NE];
static bool blk_busy[NV][NE][BPE];

static void child_done(struct wf_store_req *req, int res)
{
	struct creq *c = (struct creq *)req;

	if (res)
		_exit(10 + (-res & 0x3f));
	if (write(rec_fd, &c->rec, sizeof(c->rec)) != sizeof(c->rec))
		_exit(3);
	ext_busy[c->rec.v][c->rec.e]--;
	if (c->rec.kind == REC_DISCARD)
		ext_discarding[c->rec.v][c->rec.e] = false;
	else
		for (int k = 0; k < c->rec.n; k++)
			blk_busy[c->rec.v][c->rec.e][c->rec.b + k] = false;
	c->busy = false;
}

static void child(const char *path, uint32_t gen, uint64_t seed, uint32_t cache)
{
	struct wf_store_opts o = { .size = sizeof(o), .cache = cache };
	static struct creq q[QD];
	struct wf_store *s;
	struct iovec iov;
	uint8_t *pool;
	uint64_t x = seed | 1;

	if (wf_store_open(path, &o, &s, NULL))
		_exit(2);
	if (posix_memalign((void **)&pool, 4096, QD * 4 * 4096))
		_exit(2);
	iov.iov_base = pool;
	iov.iov_len = QD * 4 * 4096;
	if (wf_store_register_buffers(s, &iov, 1))
		_exit(2);
	for (int i = 0; i < QD; i++) {
		q[i].buf = pool + i * 4 * 4096;
		wf_store_req_init(&q[i].req, child_done, NULL);
	}
	for (int ops = 0; ops < 200000; ) {
		for (int i = 0; i < QD; i++) {
			struct rec *r = &q[i].rec;
			int v, e, b, n, k;

			if (q[i].busy)
				continue;
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			v = (int)(x % NV);
			e = (int)((x >> 8) % NE);
			n = 1 + (int)((x >> 16) % 4);
			b = (int)((x >> 24) % (BPE - n + 1));
			if (ext_discarding[v][e])
				continue;
			memset(r, 0, sizeof(*r));
			r->v = (uint8_t)v;
			r->e = (uint8_t)e;
			r->gen = ++gen;
			if ((x >> 40) % 40 == 0) {
				/* a discard owns its extent alone; the parent
				 * hears of it before it is issued */
				if (ext_busy[v][e])
					continue;
				r->kind = REC_DISCARD_INTENT;
				if (write(rec_fd, r, sizeof(*r)) != sizeof(*r))
					_exit(3);
				r->kind = REC_DISCARD;
				ext_discarding[v][e] = true;
				ext_busy[v][e]++;
				q[i].busy = true;
				if (wf_store_discard(s, &q[i].req, (uint64_t)v,
						     (uint64_t)e * EXT, EXT))
					_exit(4);
				ops++;
				continue;
			}
			for (k = 0; k < n && !blk_busy[v][e][b + k]; k++)
				;
			if (k < n)
				continue;
			r->kind = REC_WRITE;
			r->b = (uint8_t)b;
			r->n = (uint8_t)n;
			for (k = 0; k < n; k++) {
				blk_busy[v][e][b + k] = true;
				fill(q[i].buf + k * 4096, gen, v, e, b + k);
			}
			ext_busy[v][e]++;
			q[i].busy = true;
			if (wf_store_write(s, &q[i].req, (uint64_t)v,
					   (uint64_t)e * EXT + b * 4096ull,
					   (uint32_t)n * 4096, q[i].buf, 0,
					   (x >> 50) % 5 == 0 ? WF_STORE_FUA : 0))
				_exit(4);
			ops++;
		}
		if (wf_store_submit_and_wait(s) < 0)
			_exit(5);
		wf_store_poll(s, 64);
	}
	wf_store_close(s);
	_exit(0);
}

/* What the parent knows from acknowledgements. */
static uint32_t acked[NV][NE][BPE];     /* newest acknowledged gen, 0: zeros */
static bool maybe_zero[NV][NE];         /* a discard was issued, not acked */

static void apply(const struct rec *r)
{
	switch (r->kind) {
	case REC_WRITE:
		for (int k = 0; k < r->n; k++)
			acked[r->v][r->e][r->b + k] = r->gen;
		break;
	case REC_DISCARD_INTENT:
		maybe_zero[r->v][r->e] = true;
		break;
	case REC_DISCARD:
		memset(acked[r->v][r->e], 0, sizeof(acked[r->v][r->e]));
		maybe_zero[r->v][r->e] = false;
		break;
	default:
		cr_assert_fail("bad record kind %d", r->kind);
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Every acknowledged block reads back as that write or a newer one (a
 * write in flight at the kill may have landed), or as zeros only where
 * nothing was acknowledged or a discard was in flight. */
static unsigned verify(struct wf_store *s, int round)
{
	uint8_t *buf = abuf(EXT);
	unsigned checked = 0;

	for (int v = 0; v < NV; v++)
		for (int e = 0; e < NE; e++) {
			cr_assert_eq(s_read(s, (uint64_t)v, (uint64_t)e * EXT, EXT, buf), 0);
			for (int b = 0; b < (int)BPE; b++) {
				long g = decode(buf + b * 4096, v, e, b);
				uint32_t want = acked[v][e][b];

				cr_assert_geq(g, 0, "round %d: v%d e%d b%d torn/foreign",
					      round, v, e, b);
				if (g == 0)
					cr_assert(!want || maybe_zero[v][e],
						  "round %d: v%d e%d b%d lost gen %u (zeros)",
						  round, v, e, b, want);
				else
					cr_assert_geq((uint32_t)g, want,
						      "round %d: v%d e%d b%d has gen %ld, acked %u",
						      round, v, e, b, g, want);
				/* the device now holds g: that is the floor */
				acked[v][e][b] = (uint32_t)g;
				checked += want != 0;
			}
			maybe_zero[v][e] = false;
		}
	free(buf);
	return checked;
}

Test(store_crash, sigkill_keeps_acknowledged_writes, .fini = teardown, .timeout = 240)
{
	struct wf_store_err err = { "" };
	uint64_t seed = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
	unsigned total_acks = 0, total_checked = 0, killed = 0;
	uint64_t deadline = now_ms() + 120000;

	img_create(img, sizeof(img), "crash", 16 * MiB);
	cr_assert_eq(wf_store_format(img, 1, 1, EXT, false, &err), 0, "%s", err.msg);
	cr_log_info("seed %llu", (unsigned long long)seed);
	srand((unsigned)seed);
	for (int round = 0; round < ROUNDS && now_ms() < deadline; round++) {
		/* odd rounds flush index updates (the volatile-cache path) */
		uint32_t cache = round & 1 ? WF_STORE_CACHE_VOLATILE : WF_STORE_CACHE_NONE;
		unsigned delay = 5 + (unsigned)(rand() % 120), acks = 0;
		struct wf_store *s;
		struct rec r;
		int p[2], status;
		uint64_t t_kill;
		pid_t pid;
		ssize_t n;

		cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
		pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			close(p[0]);
			rec_fd = p[1];
			child(img, (uint32_t)(round + 1) * 10000000u,
			      seed + (uint64_t)round, cache);
		}
		close(p[1]);
		t_kill = now_ms() + delay;
		for (;;) {
			struct pollfd pfd = { .fd = p[0], .events = POLLIN };
			int64_t left = (int64_t)(t_kill - now_ms());

			if (left <= 0)
				break;
			if (poll(&pfd, 1, (int)left) <= 0)
				continue;
			n = read(p[0], &r, sizeof(r));
			if (n <= 0)
				break;
			cr_assert_eq(n, (ssize_t)sizeof(r));
			apply(&r);
			acks++;
		}
		kill(pid, SIGKILL);
		/* what the child acknowledged before it died is in the pipe */
		while ((n = read(p[0], &r, sizeof(r))) > 0) {
			cr_assert_eq(n, (ssize_t)sizeof(r));
			apply(&r);
			acks++;
		}
		close(p[0]);
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		if (WIFSIGNALED(status))
			killed++;
		else
			cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
				  "child failed: status %#x", status);

		s = store_open_ok(img, WF_STORE_CACHE_NONE);
		total_checked += verify(s, round);
		wf_store_close(s);
		total_acks += acks;
	}
	cr_log_info("%u kills, %u acknowledged ops, %u block checks",
		    killed, total_acks, total_checked);
	cr_assert_geq(killed, 10);
	cr_assert_geq(total_acks, 1000, "too few acknowledged writes to mean much");
}
