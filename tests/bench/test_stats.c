/* SPDX-License-Identifier: Apache-2.0 */
/* bench/stats.c and bench/pattern.c: histogram percentiles against a sorted
 * reference, data patterns, JSON escaping, CPU time, plot files. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "bench/pattern.h"
#include "bench/stats.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The sample of rank ceil(p/100 * n), the definition wf_hist_percentile
 * documents. */
static uint64_t ref_percentile(const uint64_t *sorted, size_t n, double p)
{
	size_t rank = (size_t)ceil(p / 100.0 * (double)n - 1e-9);

	if (rank < 1)
		rank = 1;
	return sorted[rank - 1];
}

static uint64_t rng_next(uint64_t *s)
{
	return wf_mix64((*s)++);
}

enum dist { UNIFORM, LOGUNIFORM, SMALL, BIMODAL };

static uint64_t draw(enum dist d, uint64_t *s)
{
	uint64_t r = rng_next(s);

	switch (d) {
	case UNIFORM:
		return r % 1000000;
	case LOGUNIFORM:	/* 1 us .. ~1 s in ns, spanning 20 doublings */
		return (uint64_t)exp(log(1e3) + (double)(r >> 11) / 9007199254740992.0 *
				     (log(1e9) - log(1e3)));
	case SMALL:
		return r % 128;
	case BIMODAL:		/* device-like: a mode near 45 us, a tail near 2 ms */
		return r % 100 < 97 ? 40000 + r % 10000 : 1500000 + r % 1000000;
	}
	return 0;
}

static void check_against_reference(enum dist d, size_t n, uint64_t seed)
{
	static const double ps[] = { 0.001, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100 };
	struct wf_hist *h = calloc(1, sizeof(*h));
	uint64_t *v = malloc(n * sizeof(*v));
	long double sum = 0;

	cr_assert(h && v);
	wf_hist_reset(h);
	for (size_t i = 0; i < n; i++) {
		v[i] = draw(d, &seed);
		sum += v[i];
		wf_hist_record(h, v[i]);
	}
	qsort(v, n, sizeof(*v), cmp_u64);
	cr_assert_eq(h->count, n);
	cr_assert_eq(h->min, v[0]);
	cr_assert_eq(h->max, v[n - 1]);
	cr_assert(fabs(wf_hist_mean(h) - (double)(sum / n)) < 1e-6 * (double)(sum / n) + 1e-9);
	for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++) {
		uint64_t want = ref_percentile(v, n, ps[k]);
		uint64_t got = wf_hist_percentile(h, ps[k]);
		/* Within half a bucket: the bucket midpoint against any sample
		 * of that bucket; buckets are 2^-SUB of their value wide. */
		double tol = (double)want / (double)(1u << WF_HIST_SUB_BITS) / 2 + 0.5;

		cr_assert(fabs((double)got - (double)want) <= tol,
			  "dist %d p%g: got %llu want %llu (tol %.1f)", (int)d, ps[k],
			  (unsigned long long)got, (unsigned long long)want, tol);
		if (d == SMALL)	/* below 2^SUB every value has its own bucket */
			cr_assert_eq(got, want, "p%g exact: %llu vs %llu", ps[k],
				     (unsigned long long)got, (unsigned long long)want);
	}
	free(v);
	free(h);
}

Test(hist, percentiles_uniform) { check_against_reference(UNIFORM, 200000, 1); }
Test(hist, percentiles_loguniform) { check_against_reference(LOGUNIFORM, 200000, 2); }
Test(hist, percentiles_small_exact) { check_against_reference(SMALL, 50000, 3); }
Test(hist, percentiles_bimodal) { check_against_reference(BIMODAL, 100000, 4); }
Test(hist, percentiles_tiny_samples)
{
	for (size_t n = 1; n < 40; n++)
		check_against_reference(LOGUNIFORM, n, 100 + n);
}

Test(hist, buckets_cover_values)
{
	uint64_t s = 7, prev_idx = 0;

	/* Every value falls inside the bucket its index names. */
	for (int i = 0; i < 100000; i++) {
		uint64_t v = rng_next(&s) >> (rng_next(&s) % 64);
		unsigned idx;

		if (v >= (1ull << WF_HIST_MAX_BITS))
			continue;
		idx = wf_hist_index(v);
		cr_assert_lt(idx, WF_HIST_BUCKETS);
		cr_assert(wf_hist_bucket_low(idx) <= v &&
			  v < wf_hist_bucket_low(idx) + wf_hist_bucket_width(idx),
			  "v %llu idx %u", (unsigned long long)v, idx);
	}
	/* Buckets tile the range with no gap or overlap, indices increasing. */
	for (unsigned i = 1; i < WF_HIST_BUCKETS; i++) {
		cr_assert_eq(wf_hist_bucket_low(i),
			     wf_hist_bucket_low(i - 1) + wf_hist_bucket_width(i - 1), "i %u", i);
		cr_assert_eq(wf_hist_index(wf_hist_bucket_low(i)), i);
		cr_assert_eq(wf_hist_index(wf_hist_bucket_low(i) - 1), i - 1);
		prev_idx = i;
	}
	cr_assert_eq(wf_hist_bucket_low((unsigned)prev_idx) + wf_hist_bucket_width((unsigned)prev_idx),
		     1ull << WF_HIST_MAX_BITS);
}

Test(hist, overflow_clamps_but_keeps_max)
{
	struct wf_hist *h = calloc(1, sizeof(*h));
	uint64_t big = 1ull << 45;

	wf_hist_record(h, 100);
	wf_hist_record(h, big);
	cr_assert_eq(h->overflow, 1);
	cr_assert_eq(h->max, big);
	cr_assert_eq(wf_hist_percentile(h, 100), big);
	cr_assert_eq(wf_hist_percentile(h, 50), 100);
	/* The clamped sample lands in the top bucket: p99 reports at most max. */
	cr_assert_leq(wf_hist_percentile(h, 99), big);
	cr_assert_geq(wf_hist_percentile(h, 99), wf_hist_bucket_low(WF_HIST_BUCKETS - 1));
	free(h);
}

Test(hist, empty_and_merge)
{
	struct wf_hist *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b)),
		       *all = calloc(1, sizeof(*all));
	struct wf_lat_summary s;
	uint64_t seed = 9;

	cr_assert_eq(wf_hist_percentile(a, 50), 0);
	wf_hist_summary(a, &s);
	cr_assert_eq(s.count, 0);
	cr_assert_eq(s.p99_us, 0);
	for (int i = 0; i < 10000; i++) {
		uint64_t v = draw(LOGUNIFORM, &seed);

		wf_hist_record(i % 3 ? a : b, v);
		wf_hist_record(all, v);
	}
	wf_hist_merge(a, b);
	cr_assert_eq(a->count, all->count);
	cr_assert_eq(a->min, all->min);
	cr_assert_eq(a->max, all->max);
	cr_assert_eq(memcmp(a->buckets, all->buckets, sizeof(a->buckets)), 0);
	for (double p = 1; p <= 100; p += 0.5)
		cr_assert_eq(wf_hist_percentile(a, p), wf_hist_percentile(all, p));
	free(a);
	free(b);
	free(all);
}

Test(hist, summary_in_microseconds)
{
	struct wf_hist *h = calloc(1, sizeof(*h));
	struct wf_lat_summary s;

	for (int i = 1; i <= 100; i++)
		wf_hist_record(h, 100);	/* 100 ns, exact bucket */
	wf_hist_summary(h, &s);
	cr_assert_float_eq(s.p50_us, 0.1, 1e-9);
	cr_assert_float_eq(s.p9999_us, 0.1, 1e-9);
	cr_assert_float_eq(s.mean_us, 0.1, 1e-9);
	free(h);
}

/* ---- patterns ----------------------------------------------------------- */

Test(pattern, roundtrip_any_alignment)
{
	uint8_t buf[8192 + 16];

	for (size_t off = 0; off < 24; off++)
		for (size_t len = 0; len < 40; len += 3) {
			wf_pattern_fill(buf, len, 42, 1000000 + off);
			cr_assert_eq(wf_pattern_check(buf, len, 42, 1000000 + off, NULL), 0,
				     "off %zu len %zu", off, len);
		}
	wf_pattern_fill(buf, 8192, 42, 4096);
	cr_assert_eq(wf_pattern_check(buf, 8192, 42, 4096, NULL), 0);
}

Test(pattern, subrange_matches_whole)
{
	uint8_t whole[4096], part[4096];

	/* A byte's value depends only on (seed, absolute offset): a short
	 * fill at an odd offset equals the matching slice of a long one. */
	wf_pattern_fill(whole, sizeof(whole), 5, 8192);
	for (size_t s = 0; s < 64; s += 5) {
		size_t len = 1000 + s;

		wf_pattern_fill(part, len, 5, 8192 + s);
		cr_assert_eq(memcmp(part, whole + s, len), 0, "start %zu", s);
	}
}

Test(pattern, detects_single_flipped_byte)
{
	uint8_t buf[4096];
	static const size_t where[] = { 0, 1, 7, 8, 9, 2047, 4088, 4095 };

	for (size_t k = 0; k < sizeof(where) / sizeof(where[0]); k++) {
		size_t bad = 12345;

		wf_pattern_fill(buf, sizeof(buf), 77, 3 * 4096);
		buf[where[k]] ^= 0x01;
		cr_assert_eq(wf_pattern_check(buf, sizeof(buf), 77, 3 * 4096, &bad), -EILSEQ);
		cr_assert_eq(bad, where[k]);
		/* Also at an unaligned offset, where head bytes are checked singly. */
		wf_pattern_fill(buf, 4000, 77, 3);
		buf[where[k] % 4000] ^= 0x80;
		cr_assert_eq(wf_pattern_check(buf, 4000, 77, 3, &bad), -EILSEQ);
		cr_assert_eq(bad, where[k] % 4000);
	}
}

Test(pattern, depends_on_offset_and_seed)
{
	uint8_t buf[4096];

	wf_pattern_fill(buf, sizeof(buf), 1, 4096 * 10);
	cr_assert_eq(wf_pattern_check(buf, sizeof(buf), 1, 4096 * 10, NULL), 0);
	/* Misdirected: the same block checked at another offset. */
	cr_assert_eq(wf_pattern_check(buf, sizeof(buf), 1, 4096 * 11, NULL), -EILSEQ);
	cr_assert_eq(wf_pattern_check(buf, sizeof(buf), 1, 4096 * 10 + 8, NULL), -EILSEQ);
	cr_assert_eq(wf_pattern_check(buf, sizeof(buf), 1, 0, NULL), -EILSEQ);
	/* Stale: the right offset from another run (seed). */
	cr_assert_eq(wf_pattern_check(buf, sizeof(buf), 2, 4096 * 10, NULL), -EILSEQ);
	/* All-zero data (an unwritten block) never passes. */
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(wf_pattern_check(buf, sizeof(buf), 1, 4096 * 10, NULL), -EILSEQ);
}

/* ---- JSON ---------------------------------------------------------------- */

static char *capture_escape(const char *s)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	wf_json_escape(f, s);
	fclose(f);
	return out;
}

Test(json, escaping)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "", "\"\"" },
		{ "plain", "\"plain\"" },
		{ "a\"b", "\"a\\\"b\"" },
		{ "back\\slash", "\"back\\\\slash\"" },
		{ "nl\ncr\rtab\t", "\"nl\\ncr\\rtab\\t\"" },
		{ "\b\f", "\"\\b\\f\"" },
		{ "\x01\x1f", "\"\\u0001\\u001f\"" },
		{ "caf\xc3\xa9 /x\x7f", "\"caf\xc3\xa9 /x\x7f\"" },	/* UTF-8, /, DEL pass */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = capture_escape(cases[i].in);

		cr_assert_str_eq(got, cases[i].out, "case %zu", i);
		free(got);
	}
}

Test(json, document_compact)
{
	struct wf_lat_summary s = { .min_us = 1, .mean_us = 2.5, .max_us = 9,
				    .p50_us = 2, .p99_us = 3, .p999_us = 4, .p9999_us = 5 };
	struct wf_json j;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	wf_json_init(&j, f, false);
	wf_json_obj_begin(&j, NULL);
	wf_json_str(&j, "name", "q\"d");
	wf_json_u64(&j, "n", 18446744073709551615ull);
	wf_json_i64(&j, "neg", -3);
	wf_json_dbl(&j, "nan", NAN);
	wf_json_dbl(&j, "inf", INFINITY);
	wf_json_dbl(&j, "x", 0.25);
	wf_json_bool(&j, "ok", true);
	wf_json_str(&j, "none", NULL);
	wf_json_arr_begin(&j, "list");
	wf_json_u64(&j, NULL, 1);
	wf_json_obj_begin(&j, NULL);
	wf_json_obj_end(&j);
	wf_json_arr_begin(&j, NULL);
	wf_json_arr_end(&j);
	wf_json_arr_end(&j);
	wf_json_obj_begin(&j, "lat");
	wf_json_lat(&j, "read_", &s);
	wf_json_obj_end(&j);
	wf_json_obj_end(&j);
	cr_assert_eq(wf_json_finish(&j), 0);
	fclose(f);
	cr_assert_str_eq(out,
		"{\"name\":\"q\\\"d\",\"n\":18446744073709551615,\"neg\":-3,"
		"\"nan\":null,\"inf\":null,\"x\":0.25,\"ok\":true,\"none\":null,"
		"\"list\":[1,{},[]],"
		"\"lat\":{\"read_min_us\":1,\"read_mean_us\":2.5,\"read_p50_us\":2,"
		"\"read_p99_us\":3,\"read_p999_us\":4,\"read_p9999_us\":5,"
		"\"read_max_us\":9}}\n");
	free(out);
}

Test(json, document_pretty)
{
	struct wf_json j;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	wf_json_init(&j, f, true);
	wf_json_obj_begin(&j, NULL);
	wf_json_u64(&j, "a", 1);
	wf_json_obj_begin(&j, "b");
	wf_json_u64(&j, "c", 2);
	wf_json_obj_end(&j);
	wf_json_obj_begin(&j, "e");
	wf_json_obj_end(&j);
	wf_json_obj_end(&j);
	wf_json_finish(&j);
	fclose(f);
	cr_assert_str_eq(out, "{\n  \"a\": 1,\n  \"b\": {\n    \"c\": 2\n  },\n  \"e\": {}\n}\n");
	free(out);
}

/* ---- CPU time ------------------------------------------------------------ */

static void burn_cpu_ms(unsigned ms)
{
	struct wf_cpu c0, c;
	volatile uint64_t x = 0;

	wf_cpu_self(&c0);
	do {
		for (int i = 0; i < 100000; i++)
			x += wf_mix64(x);
		wf_cpu_self(&c);
	} while (c.total_ns - c0.total_ns < ms * 1000000ull);
}

Test(cpu, self_and_proc_agree)
{
	struct wf_cpu s0, s1, p1;

	cr_assert_eq(wf_cpu_self(&s0), 0);
	burn_cpu_ms(200);
	cr_assert_eq(wf_cpu_self(&s1), 0);
	cr_assert_eq(wf_cpu_proc(getpid(), &p1), 0);
	cr_assert_geq(s1.total_ns - s0.total_ns, 200000000ull);
	cr_assert_geq(s1.user_ns + s1.sys_ns, 150000000ull);
	/* /proc sees the same process: at least what we burnt, and (ticks are
	 * coarse, schedstat is not) not far above our own clock. */
	cr_assert_geq(p1.total_ns, 180000000ull);
	cr_assert_leq(p1.total_ns, s1.total_ns + 50000000ull);
	cr_assert_geq(p1.user_ns + p1.sys_ns + 30000000ull, s1.total_ns - s0.total_ns);
}

Test(cpu, proc_comm_with_parens)
{
	struct wf_cpu c;

	/* comm is user-controlled: a ') ' inside it must not shift fields. */
	prctl(PR_SET_NAME, "a) 1 2 (b", 0, 0, 0);
	burn_cpu_ms(30);
	cr_assert_eq(wf_cpu_proc(getpid(), &c), 0);
	cr_assert_gt(c.total_ns, 0);
	cr_assert_lt(c.user_ns + c.sys_ns, 3600ull * 1000000000ull);
}

Test(cpu, proc_gone)
{
	struct wf_cpu c;
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	cr_assert_gt(pid, 0);
	waitpid(pid, NULL, 0);
	cr_assert_eq(wf_cpu_proc(pid, &c), -ESRCH);
}

/* ---- plots --------------------------------------------------------------- */

static size_t count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;
	int ch;

	if (!f)
		return 0;
	while ((ch = fgetc(f)) != EOF)
		n += ch == '\n';
	fclose(f);
	return n;
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

Test(plot, writes_dat_and_svg)
{
	char dir[] = "/tmp/weft-plot-XXXXXX", sub[128], path[256];
	struct wf_hist *h = calloc(1, sizeof(*h));
	uint64_t seed = 3;
	int err;

	cr_assert(mkdtemp(dir));
	for (int i = 0; i < 20000; i++)
		wf_hist_record(h, draw(BIMODAL, &seed));
	snprintf(sub, sizeof(sub), "%s/a/b", dir);	/* created on the way */
	cr_assert_eq(wf_plot_latency(h, sub, "bad name", "t"), -EINVAL);
	err = wf_plot_latency(h, sub, "lat-qd1", "it's a test");
	cr_assert_eq(err, 0, "wf_plot_latency: %s (gnuplot-nox is in scripts/deps)",
		     strerror(-err));
	snprintf(path, sizeof(path), "%s/lat-qd1-cdf.dat", sub);
	cr_assert_gt(count_lines(path), 10);
	snprintf(path, sizeof(path), "%s/lat-qd1-hist.dat", sub);
	cr_assert_gt(count_lines(path), 5);
	snprintf(path, sizeof(path), "%s/lat-qd1-cdf.svg", sub);
	cr_assert_gt(file_size(path), 1000);
	snprintf(path, sizeof(path), "%s/lat-qd1-hist.svg", sub);
	cr_assert_gt(file_size(path), 1000);
	free(h);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	cr_assert_eq(system(path), 0);
}

static bool file_has(const char *path, const char *what)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;
	bool yes;

	if (!f)
		return false;
	buf = calloc(1, 1 << 22);
	n = fread(buf, 1, (1 << 22) - 1, f);
	fclose(f);
	buf[n] = 0;
	yes = strstr(buf, what) != NULL;
	free(buf);
	return yes;
}

/* weft and the raw device in one figure, on the same axes, each named in
 * the legend; titles as written (io_uring keeps its underscore); axis
 * labels in words. */
Test(plot, series_on_the_same_axes)
{
	char dir[] = "/tmp/weft-plot-XXXXXX", path[256];
	struct wf_hist *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct wf_plot_series ser[2] = { { a, "weft reads" },
					 { b, "raw device (io_uring, O_DIRECT)" } };
	uint64_t seed = 5;
	int err;

	cr_assert(mkdtemp(dir) && a && b);
	for (int i = 0; i < 20000; i++) {
		wf_hist_record(a, draw(BIMODAL, &seed));
		wf_hist_record(b, draw(BIMODAL, &seed) / 3);
	}
	err = wf_plot_series(ser, 2, dir, "weft-randread-qd1",
			     "randread 4096 B over tcp_x and io_uring");
	cr_assert_eq(err, 0, "wf_plot_series: %s (gnuplot-nox is in scripts/deps)",
		     strerror(-err));
	snprintf(path, sizeof(path), "%s/weft-randread-qd1-s1-cdf.dat", dir);
	cr_assert_gt(count_lines(path), 10, "the second series' data");
	snprintf(path, sizeof(path), "%s/weft-randread-qd1.gp", dir);
	cr_assert(file_has(path, "noenhanced"));
	for (const char *svg = "cdf\0hist\0"; *svg; svg += strlen(svg) + 1) {
		snprintf(path, sizeof(path), "%s/weft-randread-qd1-%s.svg", dir, svg);
		cr_assert(file_has(path, "tcp_x and io_uring"), "%s: title as written", path);
		cr_assert(file_has(path, "weft reads"), "%s: weft in the legend", path);
		cr_assert(file_has(path, "raw device (io_uring, O_DIRECT)"),
			  "%s: the device in the same figure", path);
		cr_assert(file_has(path, "latency in microseconds"), "%s: x label", path);
	}
	free(a);
	free(b);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	cr_assert_eq(system(path), 0);
}
