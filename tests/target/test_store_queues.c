/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store with several queues (one per reactor thread): threads submit
 * writes, reads and whole-extent discards through their own queue, on
 * extents owned by any queue, so requests travel between rings and new
 * extents are allocated (and freed) concurrently by different queues.
 * Every read is checked against the thread's model; after a reopen every
 * block and the used-extent count are checked again.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "target/store.h"

#define NQ      3u
#define EXT     (64u * 1024)            /* 16 blocks per extent */
#define BLK     4096u
#define BPE     (EXT / BLK)
#define V1      11u                     /* blocks interleaved by thread */
#define V1_EXT  192u
#define V2      12u                     /* whole extents per thread */
#define V2_EXT  (16u * NQ)
#define QD      16u
#define RUN_MS  2500

struct op {
	struct wf_store_req req;
	struct tq *t;
	char   *buf;
	uint64_t vol, blk;
	uint32_t ver;
	uint8_t  kind;                  /* 1 write, 2 read, 3 discard */
	bool     busy;
};

struct tq {
	struct wf_store *q;
	unsigned idx;
	uint32_t v1[V1_EXT * BPE];      /* version per block (0 = zeros) */
	uint32_t v2[V2_EXT * BPE];
	bool     busy1[V1_EXT * BPE], busy2[V2_EXT];
	bool     alloc2[V2_EXT];         /* written since the last discard */
	struct op ops[QD];
	unsigned out;
	uint64_t rng;
	unsigned errors, checked, writes, discards;
	char     why[160];
};

static unsigned finished;              /* threads whose own I/O is done */

static uint64_t rnd(struct tq *t)
{
	t->rng ^= t->rng << 13;
	t->rng ^= t->rng >> 7;
	t->rng ^= t->rng << 17;
	return t->rng;
}

static void fill(char *buf, uint64_t vol, uint64_t blk, uint32_t ver)
{
	uint64_t *w = (uint64_t *)(void *)buf;

	if (!ver) {
		memset(buf, 0, BLK);
		return;
	}
	for (unsigned i = 0; i < BLK / 8; i++)
		w[i] = (vol << 56) ^ (blk << 24) ^ ((uint64_t)ver << 8) ^ i;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void op_done(struct wf_store_req *req, int res)
{
	struct op *o = (struct op *)req;
	struct tq *t = o->t;
	char *want = o->buf + BLK;

	t->out--;
	o->busy = false;
	if (res) {
		if (!t->errors++)
			snprintf(t->why, sizeof(t->why), "op %u vol %llu blk %llu: %d",
				 o->kind, (unsigned long long)o->vol,
				 (unsigned long long)o->blk, res);
		goto out;
	}
	if (o->kind == 1) {
		if (o->vol == V1) {
			t->v1[o->blk] = o->ver;
		} else {
			t->v2[o->blk] = o->ver;
			t->alloc2[o->blk / BPE] = true;
		}
	} else if (o->kind == 2) {
		uint32_t ver = o->vol == V1 ? t->v1[o->blk] : t->v2[o->blk];

		fill(want, o->vol, o->blk, ver);
		t->checked++;
		if (memcmp(o->buf, want, BLK) && !t->errors++)
			snprintf(t->why, sizeof(t->why), "vol %llu blk %llu: not "
				 "version %u", (unsigned long long)o->vol,
				 (unsigned long long)o->blk, ver);
	} else {
		for (unsigned i = 0; i < BPE; i++)
			t->v2[o->blk * BPE + i] = 0;
		t->alloc2[o->blk] = false;
	}
out:
	if (o->vol == V1)
		t->busy1[o->blk] = false;
	else
		t->busy2[o->vol == V2 && o->kind == 3 ? o->blk : o->blk / BPE] = false;
}

/* Start one random operation in free op o; false if it picked a busy
 * block (try again later). */
static bool start(struct tq *t, struct op *o)
{
	uint64_t r = rnd(t);
	int ret;

	o->t = t;
	wf_store_req_init(&o->req, op_done, NULL);
	if (r % 4) {
		/* volume 1: blocks b with b % NQ == idx are this thread's */
		uint64_t b = (rnd(t) % (V1_EXT * BPE / NQ)) * NQ + t->idx;

		if (t->busy1[b])
			return false;
		o->vol = V1;
		o->blk = b;
		t->busy1[b] = true;
		if (r % 4 != 3) {
			o->kind = 1;
			o->ver = t->v1[b] + 1;
			fill(o->buf, V1, b, o->ver);
			ret = wf_store_write(t->q, &o->req, V1, b * BLK, BLK, o->buf,
					     -1, 0);
			t->writes++;
		} else {
			o->kind = 2;
			ret = wf_store_read(t->q, &o->req, V1, b * BLK, BLK, o->buf, -1);
		}
	} else {
		/* volume 2: extents e with e % NQ == idx are this thread's */
		uint64_t e = (rnd(t) % (V2_EXT / NQ)) * NQ + t->idx;
		uint64_t b = e * BPE + rnd(t) % BPE;
		unsigned k = (unsigned)(rnd(t) % 8);

		if (t->busy2[e])
			return false;
		t->busy2[e] = true;
		o->vol = V2;
		if (k == 0) {
			o->kind = 3;
			o->blk = e;
			ret = wf_store_discard(t->q, &o->req, V2, e * EXT, EXT);
			t->discards++;
		} else if (k < 5) {
			o->kind = 1;
			o->blk = b;
			o->ver = t->v2[b] + 1;
			fill(o->buf, V2, b, o->ver);
			ret = wf_store_write(t->q, &o->req, V2, b * BLK, BLK, o->buf,
					     -1, 0);
			t->writes++;
		} else {
			o->kind = 2;
			o->blk = b;
			ret = wf_store_read(t->q, &o->req, V2, b * BLK, BLK, o->buf, -1);
		}
	}
	cr_assert_eq(ret, 0, "submit: %d", ret);
	o->busy = true;
	t->out++;
	return true;
}

struct sync_req {
	struct wf_store_req req;
	int  res;
	bool done;
};

static void sync_done(struct wf_store_req *req, int res)
{
	struct sync_req *r = (struct sync_req *)req;

	r->res = res;
	r->done = true;
}

static int sync_read(struct wf_store *s, uint64_t vol, uint64_t blk, char *buf)
{
	struct sync_req r = { .done = false };
	int ret;

	wf_store_req_init(&r.req, sync_done, NULL);
	ret = wf_store_read(s, &r.req, vol, blk * BLK, BLK, buf, -1);
	while (!ret && !r.done) {
		wf_store_submit_and_wait(s);
		wf_store_poll(s, 64);
	}
	return ret ? ret : r.res;
}

/* Volume 2 extent e holds an allocation: written after its last discard
 * (even if only with zeros... never: versions start at 1). */
static bool v2_alloc(const struct tq *t, uint64_t e)
{
	return t->alloc2[e];
}

static void *worker(void *arg)
{
	struct tq *t = arg;
	int64_t end = now_ms() + RUN_MS;

	while (now_ms() < end) {
		for (unsigned i = 0; i < QD; i++)
			if (!t->ops[i].busy)
				start(t, &t->ops[i]);
		wf_store_submit_and_wait(t->q);
		wf_store_poll(t->q, 64);
	}
	while (t->out) {
		wf_store_submit_and_wait(t->q);
		wf_store_poll(t->q, 64);
	}
	/* Others' requests may still run on our ring: serve them until
	 * every thread is done. */
	__atomic_add_fetch(&finished, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&finished, __ATOMIC_SEQ_CST) < NQ ||
	       wf_store_inflight(t->q)) {
		wf_store_submit(t->q);
		wf_store_poll(t->q, 64);
		sched_yield();
	}
	return NULL;
}

Test(store_queues, threads_share_one_store, .timeout = 120)
{
	char path[] = "/var/tmp/weft-sq-XXXXXX";
	struct wf_store_opts so = { .size = sizeof(so) };
	struct wf_store_err err = { { 0 } };
	struct wf_store *q[NQ];
	struct wf_store_stat st;
	static struct tq t[NQ];
	pthread_t th[NQ];
	uint64_t used = 0;
	char *mem = NULL, *buf, *want;
	int fd, ret;

	fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(ftruncate(fd, 64 << 20), 0);
	close(fd);
	ret = wf_store_format(path, 1, 0, EXT, false, &err);
	cr_assert_eq(ret, 0, "format: %s", err.msg);
	so.cache = WF_STORE_CACHE_NONE;
	ret = wf_store_open(path, &so, &q[0], &err);
	cr_assert_eq(ret, 0, "open: %s", err.msg);
	for (unsigned i = 1; i < NQ; i++)
		cr_assert_eq(wf_store_add_queue(q[0], 0, &q[i]), 0);
	cr_assert_eq(wf_store_queues(q[0]), NQ);
	cr_assert(posix_memalign((void **)&mem, 4096, (size_t)NQ * QD * 2 * BLK) == 0);
	memset(t, 0, sizeof(t));
	for (unsigned i = 0; i < NQ; i++) {
		t[i].q = q[i];
		t[i].idx = i;
		t[i].rng = 0x9e3779b97f4a7c15ull * (i + 1);
		for (unsigned k = 0; k < QD; k++)
			t[i].ops[k].buf = mem + ((size_t)i * QD + k) * 2 * BLK;
	}
	for (unsigned i = 0; i < NQ; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, worker, &t[i]), 0);
	for (unsigned i = 0; i < NQ; i++)
		pthread_join(th[i], NULL);
	for (unsigned i = 0; i < NQ; i++) {
		cr_assert_eq(t[i].errors, 0, "thread %u: %u errors, first: %s", i,
			     t[i].errors, t[i].why);
		cr_assert(t[i].writes > 100 && t[i].checked > 20 && t[i].discards,
			  "thread %u did little: %u writes, %u checks", i,
			  t[i].writes, t[i].checked);
	}
	for (unsigned i = 0; i < NQ; i++)
		cr_log_info("thread %u: %u writes, %u reads checked, %u discards",
			    i, t[i].writes, t[i].checked, t[i].discards);
	for (unsigned i = NQ; i-- > 0;)
		wf_store_close(q[i]);

	/* Reopen with one queue: every block as the model says, and the
	 * allocator counts exactly the extents that hold data. */
	ret = wf_store_open(path, &so, &q[0], &err);
	cr_assert_eq(ret, 0, "reopen: %s", err.msg);
	buf = mem;
	want = mem + BLK;
	for (uint64_t e = 0; e < V1_EXT; e++) {
		bool any = false;

		for (uint64_t b = e * BPE; b < (e + 1) * BPE; b++) {
			uint32_t ver = t[b % NQ].v1[b];

			any |= ver != 0;
			fill(want, V1, b, ver);
			cr_assert_eq(sync_read(q[0], V1, b, buf), 0);
			cr_assert(!memcmp(buf, want, BLK),
				  "after reopen: vol 1 block %llu is not version %u",
				  (unsigned long long)b, ver);
		}
		used += any;
	}
	for (uint64_t e = 0; e < V2_EXT; e++) {
		struct tq *o = &t[e % NQ];
		bool any = false;

		for (uint64_t b = e * BPE; b < (e + 1) * BPE; b++) {
			any |= o->v2[b] != 0;
			fill(want, V2, b, o->v2[b]);
			cr_assert_eq(sync_read(q[0], V2, b, buf), 0);
			cr_assert(!memcmp(buf, want, BLK),
				  "after reopen: vol 2 block %llu is not version %u",
				  (unsigned long long)b, o->v2[b]);
		}
		/* Written since its last discard: allocated.  (A discard
		 * frees the extent; one never written after stays free.) */
		used += any || v2_alloc(o, e);
	}
	wf_store_stat(q[0], &st);
	cr_assert_eq(st.used, used, "used extents %llu, model says %llu",
		     (unsigned long long)st.used, (unsigned long long)used);
	wf_store_close(q[0]);
	free(mem);
	unlink(path);
}
