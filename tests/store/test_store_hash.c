/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The index hash table on its own (white box, through store_int.h): linear
 * probing with backward-shift deletion.  Many insert/remove cycles at the
 * table's highest load with every lookup checked, and lock-free readers
 * (the shared view's lookup, and the store's own protocol: wf_ht_find
 * bracketed by table_seq) probing from another thread while entries are
 * removed and moved: a present key is never reported missing.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <time.h>

#include "target/store_int.h"
#include "tests/store/helpers.h"

static char img[128];

static void teardown(void)
{
	if (img[0])
		unlink(img);
}

TestSuite(store_hash, .fini = teardown, .timeout = 60);

/* 4 KiB extents on 8 MiB: about 2000 extents, 3000 buckets. */
static struct wf_store *fresh(const char *tag)
{
	struct wf_store_err err = { "" };

	img_create(img, sizeof(img), tag, 8 * MiB);
	cr_assert_eq(wf_store_format(img, 1, 1, 4096, false, &err), 0, "%s", err.msg);
	return store_open_ok(img, WF_STORE_CACHE_NONE);
}

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Keys are (k % NVOL, k / NVOL) for k < nkeys. */
#define NVOL    5

/* The test's model and its writer side: key -> phys, phys -> key. */
struct model {
	struct wf_store *s;
	uint32_t *phys_of;      /* per key: phys + 1, 0 when absent */
	uint32_t *key_of;       /* per phys: key + 1, 0 when free */
	uint32_t *freel;        /* free phys */
	uint32_t *gen;          /* per key: odd while in the table (for
	                         * readers on other threads) */
	uint64_t nfree, nkeys, n;
};

static void model_init(struct model *m, struct wf_store *s, uint64_t nkeys)
{
	memset(m, 0, sizeof(*m));
	m->s = s;
	m->n = s->sb.extents;
	m->nkeys = nkeys;
	m->phys_of = calloc(nkeys, sizeof(*m->phys_of));
	m->key_of = calloc(m->n, sizeof(*m->key_of));
	m->freel = calloc(m->n, sizeof(*m->freel));
	m->gen = calloc(nkeys, sizeof(*m->gen));
	cr_assert(m->phys_of && m->key_of && m->freel && m->gen);
	for (uint64_t p = 0; p < m->n; p++)
		m->freel[m->nfree++] = (uint32_t)(m->n - 1 - p);
}

static void model_free(struct model *m)
{
	free(m->phys_of);
	free(m->key_of);
	free(m->freel);
	free(m->gen);
}

/* As write_dispatch does it: fill the extent table entry, then insert. */
static void put(struct model *m, uint64_t key)
{
	struct wf_store *s = m->s;
	uint32_t p = m->freel[--m->nfree];

	__atomic_store_n(&s->pe[p].volume, key % NVOL, __ATOMIC_RELAXED);
	__atomic_store_n(&s->pe[p].extent, (uint32_t)(key / NVOL), __ATOMIC_RELAXED);
	pthread_mutex_lock(&s->sh->lock);
	wf_ht_insert(s, p);
	pthread_mutex_unlock(&s->sh->lock);
	__atomic_store_n(&m->phys_of[key], p + 1, __ATOMIC_RELAXED);
	m->key_of[p] = (uint32_t)key + 1;
	/* odd: present from here on */
	__atomic_store_n(&m->gen[key], m->gen[key] + 1, __ATOMIC_RELEASE);
}

/* As free_extent does it: find, remove, then clear the entry. */
static void del(struct model *m, uint32_t p)
{
	struct wf_store *s = m->s;
	uint64_t key = m->key_of[p] - 1, bucket;

	/* even before the entry goes: a reader that sees it gone sees this */
	__atomic_store_n(&m->gen[key], m->gen[key] + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	pthread_mutex_lock(&s->sh->lock);
	cr_assert_eq(wf_ht_find(s, key % NVOL, (uint32_t)(key / NVOL), &bucket),
		     (int)p);
	wf_ht_remove(s, bucket);
	pthread_mutex_unlock(&s->sh->lock);
	__atomic_store_n(&s->pe[p].extent, WF_STORE_EXTENT_NONE, __ATOMIC_RELAXED);
	__atomic_store_n(&s->pe[p].volume, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&m->phys_of[key], 0, __ATOMIC_RELAXED);
	m->key_of[p] = 0;
	m->freel[m->nfree++] = p;
}

/* A random free key; its phys from the free list. */
static void put_random(struct model *m, uint64_t *x)
{
	uint64_t key;

	do
		key = rnd(x) % m->nkeys;
	while (m->phys_of[key]);
	put(m, key);
}

static void check_key(struct model *m, uint64_t key)
{
	uint64_t bucket;
	int f = wf_ht_find(m->s, key % NVOL, (uint32_t)(key / NVOL), &bucket);

	if (m->phys_of[key])
		cr_assert_eq(f, (int)(m->phys_of[key] - 1), "key %llu: %d",
			     (unsigned long long)key, f);
	else
		cr_assert_eq(f, -1, "absent key %llu found at %d",
			     (unsigned long long)key, f);
}

/*
 * 200000 random inserts and removals, the load swinging between half and
 * all of the extents (2/3 of the buckets): after each, the key touched and
 * a few random ones are looked up; every 2000 steps every key, and the
 * table's shape (no tombstones, every entry reachable from its home).
 */
Test(store_hash, insert_remove_cycles_every_lookup)
{
	struct wf_store *s = fresh("hash");
	struct wf_view v;
	struct model m;
	uint64_t x = 0xfeedface, live = 0, probes;
	bool filling = true;
	const char *bad;

	cr_assert_eq(wf_view_open(wf_store_index_fd(s), &v), 0);
	model_init(&m, s, 4 * s->sb.extents);
	for (int step = 0; step < 200000; step++) {
		if (live == m.n)
			filling = false;
		else if (live <= m.n / 2)
			filling = true;
		if (live < m.n && (!live || rnd(&x) % 8 < (filling ? 6u : 2u))) {
			put_random(&m, &x);
			live++;
		} else {
			uint32_t p;

			do
				p = (uint32_t)(rnd(&x) % m.n);
			while (!m.key_of[p]);
			del(&m, p);
			live--;
		}
		for (int k = 0; k < 4; k++)
			check_key(&m, rnd(&x) % m.nkeys);
		if (step % 2000 == 0) {
			for (uint64_t k = 0; k < m.nkeys; k++)
				check_key(&m, k);
			bad = view_ht_check(&v, live, &probes);
			cr_assert_null(bad, "step %d: %s", step, bad);
			cr_assert_eq(s->sh->live, live);
		}
	}
	cr_assert_gt(s->sh->ht_moves, 10000, "removals moved %llu entries",
		     (unsigned long long)s->sh->ht_moves);
	model_free(&m);
	wf_view_close(&v);
	wf_store_close(s);
}

/* The reader thread: a key present from before a lookup began until
 * after it ended must be found, at its phys. */
struct probe {
	struct wf_store *s;
	struct wf_view v;
	const struct model *m;
	int stop;
	uint64_t found, retries, missing, wrong, slow;
};

/* The store's own lock-free lookup protocol (wf_ht_lookup, store_hash.c),
 * except that it spins instead of waiting on the lock. */
static int store_lookup(struct wf_store *s, uint64_t vol, uint32_t ext,
			uint64_t *retries)
{
	for (;;) {
		uint32_t t = __atomic_load_n(&s->hdr->table_seq, __ATOMIC_ACQUIRE);
		uint64_t bucket;
		int p;

		if (!(t & 1)) {
			p = wf_ht_find(s, vol, ext, &bucket);
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (__atomic_load_n(&s->hdr->table_seq, __ATOMIC_RELAXED) == t)
				return p;
		}
		(*retries)++;
	}
}

/*
 * The view's lookup protocol (wf_view_lookup), probing slowly: a
 * pause after every bucket (a spin, or a sleep: the time slice of a
 * preempted reader), so one probe overlaps many removals and the
 * writer's announcement of moves (table_seq), not the luck of timing, is
 * what keeps it right.  1: found (*phys), 0: not found, -EAGAIN: retry.
 */
static int slow_lookup(const struct wf_view *v, uint64_t vol,
		       uint32_t ext, uint32_t *phys, bool sleep)
{
	struct timespec ts = { 0, 1000 };
	uint64_t n = v->hdr->buckets, i = wf_view_hash(vol, ext, n);
	uint32_t t1 = __atomic_load_n(&v->hdr->table_seq, __ATOMIC_ACQUIRE);
	int ret = 0;

	if (t1 & 1)
		return -EAGAIN;
	for (uint64_t probes = 0; probes < n; probes++) {
		uint32_t b = __atomic_load_n(&v->ht[i], __ATOMIC_ACQUIRE);

		if (b == 0)
			break;
		if (b - 1 < v->hdr->extents &&
		    __atomic_load_n(&v->pe[b - 1].volume, __ATOMIC_RELAXED) == vol &&
		    __atomic_load_n(&v->pe[b - 1].extent, __ATOMIC_RELAXED) == ext) {
			*phys = b - 1;
			ret = 1;
			break;
		}
		if (sleep)
			nanosleep(&ts, NULL);
		else
			for (int spin = 0; spin < 300; spin++)
				__asm__ volatile("" ::: "memory");
		if (++i == n)
			i = 0;
	}
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(&v->hdr->table_seq, __ATOMIC_RELAXED) == t1 ?
	       ret : -EAGAIN;
}

static void *prober(void *arg)
{
	struct probe *pr = arg;
	uint64_t x = 0x5eed;

	while (!__atomic_load_n(&pr->stop, __ATOMIC_ACQUIRE)) {
		uint64_t k = rnd(&x) % pr->m->nkeys;
		uint32_t g = __atomic_load_n(&pr->m->gen[k], __ATOMIC_ACQUIRE);
		uint32_t phys, seq, want;
		int r;

		if (!(g & 1))
			continue;       /* absent: nothing to check */
		want = __atomic_load_n(&pr->m->phys_of[k], __ATOMIC_RELAXED) - 1;

		if ((x >> 8) % 4 == 0) {
			r = slow_lookup(&pr->v, k % NVOL, (uint32_t)(k / NVOL), &phys,
					(x >> 16) % 16 == 0);
			if (r == -EAGAIN) {
				pr->retries++;
				continue;
			}
			pr->slow += r == 1;
		} else if (x & 1) {
			r = wf_view_lookup(&pr->v, k % NVOL, (uint32_t)(k / NVOL),
						 &phys, &seq);
			if (r == -EAGAIN) {
				pr->retries++;
				continue;
			}
		} else {
			r = store_lookup(pr->s, k % NVOL, (uint32_t)(k / NVOL),
					 &pr->retries);
			phys = (uint32_t)r;
			r = r >= 0;
		}
		/* Removed meanwhile: the answer may be either. */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&pr->m->gen[k], __ATOMIC_RELAXED) != g)
			continue;
		if (r == 0)
			pr->missing++;
		else if (phys != want)
			pr->wrong++;
		else
			pr->found++;
	}
	return NULL;
}

/*
 * The table full (every removal followed by an insert), the main thread
 * removes and inserts random keys as fast as it can for a second, so
 * removals keep shifting entries back.  The reader thread looks up keys
 * that stay present throughout its lookup, a quarter of them with a slow
 * probe: never missing, never another phys.  (Without the table_seq
 * bracket around moves the slow probes miss at once.)
 */
Test(store_hash, concurrent_lookups_never_miss_present_keys)
{
	struct wf_store *s = fresh("hashmt");
	struct probe pr = { .s = s };
	struct model m;
	uint64_t x = 0xc0ffee, ops = 0, moves0;
	pthread_t th;
	double end;

	model_init(&m, s, 4 * s->sb.extents);
	while (m.nfree)
		put_random(&m, &x);
	pr.m = &m;
	cr_assert_eq(wf_view_open(wf_store_index_fd(s), &pr.v), 0);
	moves0 = s->sh->ht_moves;
	cr_assert_eq(pthread_create(&th, NULL, prober, &pr), 0);

	end = now() + 1.0;
	while (ops % 1024 || now() < end) {
		uint32_t p;

		do
			p = (uint32_t)(rnd(&x) % m.n);
		while (!m.key_of[p]);
		del(&m, p);
		put_random(&m, &x);
		ops++;
	}
	__atomic_store_n(&pr.stop, 1, __ATOMIC_RELEASE);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_log_info("%llu removals (%llu moves); reader: %llu found (%llu by "
		    "slow probes), %llu retried", (unsigned long long)ops,
		    (unsigned long long)(s->sh->ht_moves - moves0),
		    (unsigned long long)pr.found, (unsigned long long)pr.slow,
		    (unsigned long long)pr.retries);
	cr_assert_eq(pr.missing, 0, "%llu lookups missed a present key",
		     (unsigned long long)pr.missing);
	cr_assert_eq(pr.wrong, 0, "%llu lookups returned another extent",
		     (unsigned long long)pr.wrong);
	cr_assert_gt(pr.found, 10000, "the reader did too few lookups to mean much");
	cr_assert_gt(pr.slow, 100, "too few slow probes got through");
	cr_assert_gt(s->sh->ht_moves - moves0, 10000, "too few entries moved");
	for (uint64_t k = 0; k < m.nkeys; k++)
		check_key(&m, k);
	cr_assert_null(view_ht_check(&pr.v, m.n, NULL));
	wf_view_close(&pr.v);
	model_free(&m);
	wf_store_close(s);
}
