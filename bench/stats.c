/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/stats.h"

/* ---- histogram ---------------------------------------------------------- */

void wf_hist_reset(struct wf_hist *h)
{
	memset(h, 0, sizeof(*h));
}

uint64_t wf_hist_bucket_low(unsigned idx)
{
	unsigned o = idx >> WF_HIST_SUB_BITS;
	uint64_t sub = idx & ((1u << WF_HIST_SUB_BITS) - 1);

	if (o == 0)
		return idx;
	return ((1ull << WF_HIST_SUB_BITS) + sub) << (o - 1);
}

uint64_t wf_hist_bucket_width(unsigned idx)
{
	unsigned o = idx >> WF_HIST_SUB_BITS;

	return o == 0 ? 1 : 1ull << (o - 1);
}

void wf_hist_merge(struct wf_hist *dst, const struct wf_hist *src)
{
	if (src->count == 0)
		return;
	if (dst->count == 0 || src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
	dst->count += src->count;
	dst->overflow += src->overflow;
	dst->sum += src->sum;
	for (unsigned i = 0; i < WF_HIST_BUCKETS; i++)
		dst->buckets[i] += src->buckets[i];
}

uint64_t wf_hist_percentile(const struct wf_hist *h, double p)
{
	uint64_t rank, seen = 0;

	if (h->count == 0)
		return 0;
	if (!(p > 0))
		return h->min;
	if (p >= 100)
		return h->max;
	/* Rank of the sample, 1-based: the smallest r with r >= p% of n.
	 * The small epsilon keeps p * n that is exact in decimal (99.9 % of
	 * 1000) from rounding up past the intended rank in binary. */
	rank = (uint64_t)ceil(p / 100.0 * (double)h->count - 1e-9);
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < WF_HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank) {
			uint64_t v = wf_hist_bucket_low(i) +
				     (wf_hist_bucket_width(i) - 1) / 2;

			if (v < h->min)
				v = h->min;
			if (v > h->max)
				v = h->max;
			return v;
		}
	}
	return h->max;
}

double wf_hist_mean(const struct wf_hist *h)
{
	return h->count ? (double)(h->sum / (long double)h->count) : 0.0;
}

void wf_hist_summary(const struct wf_hist *h, struct wf_lat_summary *s)
{
	s->count = h->count;
	s->min_us = h->count ? (double)h->min / 1e3 : 0;
	s->max_us = (double)h->max / 1e3;
	s->mean_us = wf_hist_mean(h) / 1e3;
	s->p50_us = (double)wf_hist_percentile(h, 50) / 1e3;
	s->p99_us = (double)wf_hist_percentile(h, 99) / 1e3;
	s->p999_us = (double)wf_hist_percentile(h, 99.9) / 1e3;
	s->p9999_us = (double)wf_hist_percentile(h, 99.99) / 1e3;
}

/* ---- CPU time ----------------------------------------------------------- */

uint64_t wf_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void wf_prog_start(struct wf_prog *p, const char *what, uint64_t total)
{
	const char *e;

	memset(p, 0, sizeof(*p));
	p->what = what;
	p->total = total;
	p->t0 = p->last = wf_now_ns();
	p->tty = isatty(STDERR_FILENO) == 1;
	p->every_ns = p->tty ? 250000000ull : 5000000000ull;
	/* WEFT_BENCH_PROGRESS_MS: another interval (tests: 0, every step). */
	e = getenv("WEFT_BENCH_PROGRESS_MS");
	if (e && *e)
		p->every_ns = strtoull(e, NULL, 10) * 1000000ull;
}

void wf_prog_update(struct wf_prog *p, uint64_t done)
{
	uint64_t now = wf_now_ns();
	double s = (double)(now - p->t0) / 1e9;

	if (now - p->last < p->every_ns)
		return;
	p->last = now;
	p->shown = true;
	fprintf(stderr, "%s%s: %llu of %llu MiB (%.0f%%), %.0f MB/s, %.0f s%s",
		p->tty ? "\r" : "", p->what, (unsigned long long)(done >> 20),
		(unsigned long long)(p->total >> 20),
		p->total ? 100.0 * (double)done / (double)p->total : 100.0,
		s > 0 ? (double)done / s / 1e6 : 0.0, s, p->tty ? "\033[K" : "\n");
}

void wf_prog_end(struct wf_prog *p)
{
	if (p->tty && p->shown)
		fputs("\r\033[K", stderr);
	p->shown = false;
}

static uint64_t tv_ns(const struct timeval *tv)
{
	return (uint64_t)tv->tv_sec * 1000000000ull + (uint64_t)tv->tv_usec * 1000ull;
}

int wf_cpu_self(struct wf_cpu *c)
{
	struct timespec ts;
	struct rusage ru;

	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) < 0)
		return -errno;
	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return -errno;
	c->total_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	c->user_ns = tv_ns(&ru.ru_utime);
	c->sys_ns = tv_ns(&ru.ru_stime);
	return 0;
}

static int read_small(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	err = errno;
	close(fd);
	if (n < 0)
		return -err;
	buf[n] = '\0';
	return (int)n;
}

/* Sum of the threads' on-CPU time (ns) from schedstat; 0 if unavailable. */
static uint64_t proc_schedstat_ns(pid_t pid)
{
	char path[64], buf[128];
	struct dirent *de;
	uint64_t sum = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		unsigned long long run;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.16s/schedstat",
			 (int)pid, de->d_name);
		if (read_small(path, buf, sizeof(buf)) > 0 &&
		    sscanf(buf, "%llu", &run) == 1)
			sum += run;
	}
	closedir(d);
	return sum;
}

int wf_cpu_proc(pid_t pid, struct wf_cpu *c)
{
	unsigned long long utime, stime;
	char path[64], buf[1024];
	long tck = sysconf(_SC_CLK_TCK);
	char *p;
	int n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	n = read_small(path, buf, sizeof(buf));
	if (n < 0)
		return n == -ENOENT ? -ESRCH : n;
	/* comm (field 2) may hold spaces and parens: parse after the last ')'.
	 * Then field 3 is state; utime and stime are fields 14 and 15. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
			 &utime, &stime) != 2)
		return -EINVAL;
	if (tck <= 0)
		tck = 100;
	c->user_ns = utime * (1000000000ull / (uint64_t)tck);
	c->sys_ns = stime * (1000000000ull / (uint64_t)tck);
	c->total_ns = proc_schedstat_ns(pid);
	/* Threads that exited are in stat's totals but not in task/: never
	 * report less than the coarse figure. */
	if (c->total_ns < c->user_ns + c->sys_ns)
		c->total_ns = c->user_ns + c->sys_ns;
	return 0;
}

void wf_json_lat(struct wf_json *j, const char *prefix,
		 const struct wf_lat_summary *s)
{
	static const struct {
		const char *name;
		size_t off;
	} keys[] = {
		{ "min_us",   offsetof(struct wf_lat_summary, min_us) },
		{ "mean_us",  offsetof(struct wf_lat_summary, mean_us) },
		{ "p50_us",   offsetof(struct wf_lat_summary, p50_us) },
		{ "p99_us",   offsetof(struct wf_lat_summary, p99_us) },
		{ "p999_us",  offsetof(struct wf_lat_summary, p999_us) },
		{ "p9999_us", offsetof(struct wf_lat_summary, p9999_us) },
		{ "max_us",   offsetof(struct wf_lat_summary, max_us) },
	};
	char key[64];

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		double v;

		memcpy(&v, (const char *)s + keys[i].off, sizeof(v));
		snprintf(key, sizeof(key), "%s%s", prefix ? prefix : "", keys[i].name);
		wf_json_dbl(j, key, v);
	}
}

/* ---- plots --------------------------------------------------------------- */

static int mkdir_p(const char *dir)
{
	char tmp[4096];
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, dir, len + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static FILE *open_in(const char *dir, const char *name, const char *suffix)
{
	char path[4096];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s%s", dir, name, suffix) >= sizeof(path)) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	return fopen(path, "w");
}

static int close_checked(FILE *f)
{
	int bad = ferror(f);

	if (fclose(f) != 0 || bad)
		return -EIO;
	return 0;
}

/* Histogram plot bins: 2^PLOT_SUB per power of two, coarser than the
 * recording buckets so that a person sees a shape, not comb teeth. */
#define PLOT_SUB 4

static int write_dat(const struct wf_hist *h, const char *dir, const char *name)
{
	uint64_t cum = 0, bin_lo = 0, bin_hi = 0, bin_n = 0;
	unsigned shift = WF_HIST_SUB_BITS - PLOT_SUB;
	FILE *cdf, *hist;
	int err;

	cdf = open_in(dir, name, "-cdf.dat");
	if (!cdf)
		return -errno;
	hist = open_in(dir, name, "-hist.dat");
	if (!hist) {
		err = -errno;
		fclose(cdf);
		return err;
	}
	fprintf(cdf, "# latency_us fraction_le (%" PRIu64 " samples)\n", h->count);
	fprintf(hist, "# low_us high_us count\n");
	if (h->count)
		fprintf(cdf, "%.3f 0\n", (double)h->min / 1e3);
	for (unsigned i = 0; i < WF_HIST_BUCKETS; i++) {
		uint64_t lo = wf_hist_bucket_low(i), hi = lo + wf_hist_bucket_width(i);
		uint64_t n = h->buckets[i];

		/* Coarse bin: recording buckets that share their top bits.  The
		 * exact range below 2^SUB is binned the same way, by value. */
		if (i == 0 || (i >> shift) != ((i - 1) >> shift)) {
			if (bin_n)
				fprintf(hist, "%.3f %.3f %" PRIu64 "\n", (double)bin_lo / 1e3,
					(double)bin_hi / 1e3, bin_n);
			bin_lo = lo;
			bin_n = 0;
		}
		bin_hi = hi;
		bin_n += n;
		if (!n)
			continue;
		cum += n;
		/* The bucket's upper edge, clamped to the exact max. */
		fprintf(cdf, "%.3f %.9f\n",
			(double)(hi - 1 < h->max ? hi - 1 : h->max) / 1e3,
			(double)cum / (double)h->count);
	}
	if (bin_n)
		fprintf(hist, "%.3f %.3f %" PRIu64 "\n", (double)bin_lo / 1e3,
			(double)bin_hi / 1e3, bin_n);
	err = close_checked(hist);
	if (close_checked(cdf) < 0)
		err = -EIO;
	return err;
}

/* A title inside a single-quoted gnuplot string: '' stands for '. */
static void gp_quote(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputc('\'', f);
		if ((unsigned char)*s >= 0x20)
			fputc(*s, f);
	}
	fputc('\'', f);
}

static const char *const series_color[] = { "#1f5fa8", "#cc6600", "#2a9d3a",
					    "#8e44ad", "#888888", "#b03030" };

/* Data file prefix of series k: NAME for the first, NAME-sK after. */
static void series_name(char *buf, size_t len, const char *name, unsigned k)
{
	if (k)
		snprintf(buf, len, "%s-s%u", name, k);
	else
		snprintf(buf, len, "%s", name);
}

/*
 * The script: every series on the same axes, a legend naming each with
 * its p50 and p99.  Text is written as given ("noenhanced": gnuplot would
 * turn io_uring's underscore into a subscript), labels in plain words.
 */
static int write_gp(const struct wf_plot_series *ser, unsigned n, const char *dir,
		    const char *name, const char *title)
{
	FILE *f = open_in(dir, name, ".gp");
	char dat[256];

	if (!f)
		return -errno;
	fprintf(f, "# written by weft-bench; run from this folder: gnuplot %s.gp\n", name);
	fprintf(f, "set terminal svg size 900,520 dynamic noenhanced font 'sans,12' "
		"background '#ffffff'\n");
	fprintf(f, "set grid\nset logscale x\n"
		"set xlabel 'latency in microseconds (log scale)'\n");
	fprintf(f, "set output '%s-cdf.svg'\nset title ", name);
	gp_quote(f, title);
	fprintf(f, ".' - share of I/Os done within each latency'\n");
	fprintf(f, "set ylabel 'share of I/Os that took at most this long'\n");
	fprintf(f, "set yrange [0:1.02]\nset key bottom right\n");
	if (n == 1) {
		struct wf_lat_summary s;

		/* One series: dashed markers at the percentiles the tables
		 * report. */
		wf_hist_summary(ser[0].h, &s);
		fprintf(f, "set arrow 1 from %.3f, graph 0 to %.3f, graph 1 nohead dt 2 lc rgb '#888888'\n",
			s.p50_us, s.p50_us);
		fprintf(f, "set arrow 2 from %.3f, graph 0 to %.3f, graph 1 nohead dt 2 lc rgb '#cc6600'\n",
			s.p99_us, s.p99_us);
		fprintf(f, "set arrow 3 from %.3f, graph 0 to %.3f, graph 1 nohead dt 2 lc rgb '#cc0000'\n",
			s.p999_us, s.p999_us);
		fprintf(f, "set label 1 sprintf('p50 %%.1f', %.3f) at %.3f, graph 0.05 offset 0.5,0\n",
			s.p50_us, s.p50_us);
		fprintf(f, "set label 2 sprintf('p99 %%.1f', %.3f) at %.3f, graph 0.15 offset 0.5,0\n",
			s.p99_us, s.p99_us);
		fprintf(f, "set label 3 sprintf('p99.9 %%.1f', %.3f) at %.3f, graph 0.25 offset 0.5,0\n",
			s.p999_us, s.p999_us);
	}
	fprintf(f, "plot ");
	for (unsigned k = 0; k < n; k++) {
		struct wf_lat_summary s;
		char key[200];

		wf_hist_summary(ser[k].h, &s);
		series_name(dat, sizeof(dat), name, k);
		snprintf(key, sizeof(key), "%s: %" PRIu64 " I/Os, p50 %.1f us, p99 %.1f us",
			 ser[k].label, ser[k].h->count, s.p50_us, s.p99_us);
		fprintf(f, "%s'%s-cdf.dat' using 1:2 with steps lw 2 lc rgb '%s' title ",
			k ? ", \\\n     " : "", dat, series_color[k % 6]);
		gp_quote(f, key);
	}
	fprintf(f, "\nunset arrow\nunset label\nset autoscale y\nset yrange [0:*]\n");
	fprintf(f, "set key top right\n");
	fprintf(f, "set output '%s-hist.svg'\nset title ", name);
	gp_quote(f, title);
	fprintf(f, ".' - how many I/Os took each latency'\n");
	fprintf(f, "set ylabel 'I/Os, per 1/%d of a doubling of latency'\n", 1 << PLOT_SUB);
	fprintf(f, "set style fill transparent solid 0.45 border\n");
	/* Bins are equal in linear width within a doubling, so they are
	 * unequal on the log axis: scale each count to a fixed log width, or
	 * every power of two shows a false step.  boxxyerror draws each bin
	 * between its true edges. */
	fprintf(f, "d(lo, hi, n) = n / (%d * log(hi / lo) / log(2))\n", 1 << PLOT_SUB);
	fprintf(f, "plot ");
	for (unsigned k = 0; k < n; k++) {
		series_name(dat, sizeof(dat), name, k);
		fprintf(f, "%s'%s-hist.dat' using (sqrt($1*$2)):(d($1,$2,$3)/2):1:2:(0):"
			"(d($1,$2,$3)) with boxxyerror lc rgb '%s' title ",
			k ? ", \\\n     " : "", dat, series_color[k % 6]);
		gp_quote(f, ser[k].label);
	}
	fprintf(f, "\n");
	return close_checked(f);
}

static int run_gnuplot(const char *dir, const char *name)
{
	char script[512];
	pid_t pid;
	int status;

	snprintf(script, sizeof(script), "%s.gp", name);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		if (chdir(dir) < 0)
			_exit(126);
		execlp("gnuplot", "gnuplot", script, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		return -ENOENT;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -EIO;
	return 0;
}

int wf_plot_series(const struct wf_plot_series *ser, unsigned n, const char *dir,
		   const char *name, const char *title)
{
	char dat[256];
	int err;

	/* The name becomes file names and goes into the script unquoted. */
	if (!*name || strlen(name) > 200 || !n || n > 6)
		return -EINVAL;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
			return -EINVAL;
	err = mkdir_p(dir);
	if (err)
		return err;
	for (unsigned k = 0; k < n; k++) {
		series_name(dat, sizeof(dat), name, k);
		err = write_dat(ser[k].h, dir, dat);
		if (err)
			return err;
	}
	err = write_gp(ser, n, dir, name, title ? title : name);
	if (err)
		return err;
	return run_gnuplot(dir, name);
}

int wf_plot_latency(const struct wf_hist *h, const char *dir,
		    const char *name, const char *title)
{
	struct wf_plot_series s = { .h = h, .label = "all I/Os" };

	return wf_plot_series(&s, 1, dir, name, title);
}
