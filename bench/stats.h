/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Benchmark statistics: a latency histogram that records without allocating,
 * CPU time of this and of another process, JSON output helpers and a gnuplot
 * plot writer.  Used by every weft-bench subcommand.
 */
#ifndef WEFT_BENCH_STATS_H
#define WEFT_BENCH_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "bench/json.h"

/*
 * Log-linear histogram (the HDR idea).  Values below 2^SUB are counted
 * exactly; above, every power of two [2^m, 2^(m+1)) is split into 2^SUB
 * buckets of width 2^(m-SUB), so a reported percentile is within 2^-SUB
 * (0.8 %) of the true sample.  Values are nanoseconds by convention; the top
 * bucket ends at 2^WF_HIST_MAX_BITS ns (about 18 minutes) and larger values
 * are clamped into it (min/max/mean stay exact).  The struct is self
 * contained (35 KiB): recording is an index computation and an increment.
 */
#define WF_HIST_SUB_BITS	7
#define WF_HIST_MAX_BITS	40
#define WF_HIST_BUCKETS		((WF_HIST_MAX_BITS - WF_HIST_SUB_BITS + 1) << WF_HIST_SUB_BITS)

struct wf_hist {
	uint64_t count;
	uint64_t min;
	uint64_t max;
	uint64_t overflow;		/* values clamped into the top bucket */
	long double sum;		/* exact enough for a mean over 2^64 ns */
	uint64_t buckets[WF_HIST_BUCKETS];
};

void wf_hist_reset(struct wf_hist *h);

/* Index of the bucket holding v, and that bucket's [low, low + width). */
static inline unsigned wf_hist_index(uint64_t v)
{
	unsigned m, idx;

	if (v < (1u << WF_HIST_SUB_BITS))
		return (unsigned)v;
	m = 63 - (unsigned)__builtin_clzll(v);
	if (m >= WF_HIST_MAX_BITS)
		return WF_HIST_BUCKETS - 1;
	idx = ((m - WF_HIST_SUB_BITS + 1) << WF_HIST_SUB_BITS) +
	      (unsigned)((v >> (m - WF_HIST_SUB_BITS)) - (1u << WF_HIST_SUB_BITS));
	return idx;
}

uint64_t wf_hist_bucket_low(unsigned idx);
uint64_t wf_hist_bucket_width(unsigned idx);

/* Data-path safe: no allocation, no branches beyond min/max. */
static inline void wf_hist_record(struct wf_hist *h, uint64_t v)
{
	if (v >= (1ull << WF_HIST_MAX_BITS))
		h->overflow++;
	h->buckets[wf_hist_index(v)]++;
	if (h->count == 0 || v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->count++;
	h->sum += (long double)v;
}

/* Adds src into dst (per-reactor histograms merged after a run). */
void wf_hist_merge(struct wf_hist *dst, const struct wf_hist *src);

/*
 * Value at percentile p (0 < p <= 100): the sample of rank ceil(p/100 * n)
 * in sorted order, located to its bucket and reported as the bucket's
 * midpoint clamped to [min, max].  Returns 0 for an empty histogram.
 */
uint64_t wf_hist_percentile(const struct wf_hist *h, double p);
double wf_hist_mean(const struct wf_hist *h);

/* The summary every benchmark reports, in microseconds. */
struct wf_lat_summary {
	uint64_t count;
	double min_us, mean_us, max_us;
	double p50_us, p99_us, p999_us, p9999_us;
};

void wf_hist_summary(const struct wf_hist *h, struct wf_lat_summary *s);

/* CPU time, nanoseconds. */
struct wf_cpu {
	uint64_t user_ns;
	uint64_t sys_ns;
	uint64_t total_ns;	/* best available total (may exceed user+sys
				 * resolution: see the functions) */
};

/*
 * This process: total from CLOCK_PROCESS_CPUTIME_ID (ns resolution), the
 * user/sys split from getrusage.  Returns 0 or -errno.
 */
int wf_cpu_self(struct wf_cpu *c);

/*
 * Another process (the target, for CPU per I/O): user/sys from
 * /proc/PID/stat, which counts in clock ticks (usually 10 ms: measure over
 * seconds, not milliseconds); total from the sum of the threads'
 * /proc/PID/task/TID/schedstat run times (ns) when available, else
 * user + sys.  Returns 0, -ESRCH when the process is gone, or -errno.
 */
int wf_cpu_proc(pid_t pid, struct wf_cpu *c);

/* Monotonic clock in ns. */
uint64_t wf_now_ns(void);

/*
 * Progress of a long pass (prefill, verify, a file's layout) on stderr:
 * on a terminal one line rewritten every 0.25 s, else a line every 5 s
 * (logs stay short; $WEFT_BENCH_PROGRESS_MS sets another interval); a
 * pass shorter than that prints nothing.  what names the pass
 * ("prefill"); total and done are bytes.
 */
struct wf_prog {
	const char *what;
	uint64_t total;
	uint64_t t0, last;      /* ns */
	uint64_t every_ns;
	bool tty, shown;
};

void wf_prog_start(struct wf_prog *p, const char *what, uint64_t total);
void wf_prog_update(struct wf_prog *p, uint64_t done);
/* Clears the terminal line (the caller prints its own summary). */
void wf_prog_end(struct wf_prog *p);

/* Writes p50_us ... max_us keys (flat, prefix may be "" or e.g. "read_"). */
void wf_json_lat(struct wf_json *j, const char *prefix,
		 const struct wf_lat_summary *s);

/*
 * Plots for a person to look at: DIR/NAME-cdf.dat (latency us, cumulative
 * fraction), DIR/NAME-hist.dat (bucket low us, width us, count), a gnuplot
 * script DIR/NAME.gp, and runs gnuplot to make DIR/NAME-cdf.svg and
 * DIR/NAME-hist.svg.  DIR is created if missing.  Returns 0, -ENOENT when
 * gnuplot is not installed (the .dat and .gp files are still written), or
 * -errno.
 */
int wf_plot_latency(const struct wf_hist *h, const char *dir,
		    const char *name, const char *title);

/*
 * Several latency distributions on the same axes (weft beside the raw
 * device, reads beside writes): series k's data in NAME-sK-cdf.dat and
 * NAME-sK-hist.dat (the first's as above), one NAME-cdf.svg and one
 * NAME-hist.svg with a legend of the labels (with each one's p50 and p99
 * on the CDF).  Titles and labels are printed as given.  1..6 series.
 */
struct wf_plot_series {
	const struct wf_hist *h;
	const char *label;
};
int wf_plot_series(const struct wf_plot_series *s, unsigned n, const char *dir,
		   const char *name, const char *title);

#endif
