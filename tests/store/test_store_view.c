/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared index view under fire: a reader process looks extents up in
 * the view and reads the device itself (the short-circuit path) while the
 * store allocates, writes and discards, reusing a few physical extents for
 * many (volume, extent) keys.  A read the view validates must never return
 * another key's data, and a key mapped throughout a lookup is always found
 * (removals move other keys' hash table entries meanwhile).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "tests/store/helpers.h"

#define EXT     (64 * KiB)
#define NV      4
#define NEXT    8

static char img[128];
/* Shared with the reader: per key, odd while the key is mapped (set by
 * the store side after its write completed, cleared before a discard is
 * submitted). */
static uint32_t (*present)[NEXT];

static void teardown(void)
{
	if (img[0])
		unlink(img);
}

/* Every 8-byte word of block b of key (v, e) says so. */
static uint64_t tag(uint64_t v, uint64_t e, uint64_t b)
{
	return (v << 48) | (e << 24) | (b + 1);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Child: short-circuit reads until killed; exit 1 on stale data, 5 when a
 * key mapped throughout the lookup is reported unmapped (which a reader
 * would take for zeros).  Reports (validated reads with data, lookups
 * refused) through the pipe often. */
static void reader(int index_fd, int out)
{
	struct wf_view v;
	uint64_t x = 0x9e3779b97f4a7c15ull, counts[2] = { 0, 0 };
	uint64_t *buf;
	int fd;

	if (wf_view_open(index_fd, &v))
		_exit(2);
	fd = open(img, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0 || posix_memalign((void **)&buf, 4096, 4096))
		_exit(2);
	for (uint64_t i = 0; ; i++) {
		uint32_t phys, seq, g;
		uint64_t vol, ext, b, want;
		int r;

		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		vol = 1 + x % NV;
		ext = (x >> 8) % NEXT;
		b = (x >> 16) % (EXT / 4096);
		g = __atomic_load_n(&present[vol - 1][ext], __ATOMIC_ACQUIRE);
		r = wf_view_lookup(&v, vol, (uint32_t)ext, &phys, &seq);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (r == 0 && (g & 1) &&
		    __atomic_load_n(&present[vol - 1][ext], __ATOMIC_RELAXED) == g) {
			fprintf(stderr, "key %llu/%llu mapped but not found\n",
				(unsigned long long)vol, (unsigned long long)ext);
			_exit(5);
		}
		if (r == -EAGAIN)
			counts[1]++;
		if (r != 1)
			continue;
		/* A slow reader half the time: the store gets to discard,
		 * reallocate and rewrite the extent meanwhile. */
		if (x & (1ull << 40))
			usleep((useconds_t)((x >> 41) % 2000));
		if (pread(fd, buf, 4096, (off_t)wf_view_dev_offset(&v, phys,
								      b * 4096)) != 4096)
			_exit(3);
		if (!wf_view_check(&v, phys, seq))
			continue;
		want = tag(vol, ext, b);
		for (int w = 0; w < 512; w++) {
			if (buf[w] && buf[w] != want) {
				fprintf(stderr, "stale: key %llu/%llu block %llu phys %u "
					"word %d = %#llx\n", (unsigned long long)vol,
					(unsigned long long)ext, (unsigned long long)b,
					phys, w, (unsigned long long)buf[w]);
				_exit(1);
			}
		}
		counts[0] += buf[0] == want;
		if (i % 256 == 0 &&
		    write(out, counts, sizeof(counts)) != sizeof(counts))
			_exit(4);
	}
}

Test(store_view, short_circuit_reads_never_stale, .fini = teardown, .timeout = 120)
{
	struct wf_store_err err = { "" };
	struct wf_store_stat st;
	struct wf_store *s;
	bool mapped[NV][NEXT] = { { false } };
	uint64_t *buf = abuf(EXT), counts[2] = { 0, 0 }, x = 12345, ops = 0;
	int p[2], status;
	unsigned nmapped = 0;
	double end;
	pid_t pid;

	/* about 15 physical extents for 32 keys: constant reuse */
	present = mmap(NULL, sizeof(uint32_t) * NV * NEXT, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(present, MAP_FAILED);
	img_create(img, sizeof(img), "view", 1 * MiB);
	cr_assert_eq(wf_store_format(img, 1, 1, EXT, false, &err), 0, "%s", err.msg);
	s = store_open_ok(img, WF_STORE_CACHE_NONE);
	wf_store_stat(s, &st);
	cr_assert_geq(st.extents, 8);
	cr_assert_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(p[0]);
		reader(wf_store_index_fd(s), p[1]);
	}
	close(p[1]);

	end = now() + 3.0;
	while (now() < end) {
		uint64_t v, e;

		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		v = x % NV;
		e = (x >> 8) % NEXT;
		if (mapped[v][e]) {
			__atomic_store_n(&present[v][e], present[v][e] + 1,
					 __ATOMIC_RELEASE);
			cr_assert_eq(s_discard(s, v + 1, e * EXT, EXT), 0);
			mapped[v][e] = false;
			nmapped--;
		} else if (nmapped < st.extents - 1) {
			for (uint64_t b = 0; b < EXT / 4096; b++)
				for (int w = 0; w < 512; w++)
					buf[b * 512 + w] = tag(v + 1, e, b);
			cr_assert_eq(s_write(s, v + 1, e * EXT, EXT, buf, 0), 0);
			__atomic_store_n(&present[v][e], present[v][e] + 1,
					 __ATOMIC_RELEASE);
			mapped[v][e] = true;
			nmapped++;
		}
		ops++;
	}
	kill(pid, SIGKILL);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status), "reader exited %d: stale data (1), a mapped "
		  "key not found (5) or error", WEXITSTATUS(status));
	while (read(p[0], counts, sizeof(counts)) == sizeof(counts))
		;
	close(p[0]);
	cr_log_info("%llu store ops, %llu validated reads with data, %llu refused",
		    (unsigned long long)ops, (unsigned long long)counts[0],
		    (unsigned long long)counts[1]);
	cr_assert_geq(ops, 100);
	cr_assert_geq(counts[0], 100, "the reader validated too few reads to mean much");
	wf_store_close(s);
	munmap(present, sizeof(uint32_t) * NV * NEXT);
	free(buf);
}
