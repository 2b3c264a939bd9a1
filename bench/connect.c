/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-bench connect: the time from a new handle's first read to its
 * answer, which is the connect (fabric connect, the key exchange when the
 * handle has a key, HELLO and GRANT) plus one 4 KiB read, repeated with a
 * fresh handle each time; against it, the same read on the warm handle.
 * With --no-key the handle offers no key (targets must not require one:
 * the map's auth = "none"), so the two can be compared in one run
 * (docs/security.md).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "bench/json.h"
#include "weft.h"
#include "weft_env.h"

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int usage(FILE *f)
{
	fprintf(f, "usage: weft-bench connect -c MAP --volume V [--count N] "
		"[--transport T] [--no-key] [--json]\n"
		"  N times (default 200): open a handle, read 4 KiB at offset 0\n"
		"  (connect, key exchange, HELLO/GRANT, read), read again (warm),\n"
		"  close.  Prints the medians and p90 of both, in us.  The key is\n"
		"  WEFT_KEY in WEFT_KEYRING; --no-key: none.\n");
	return f == stdout ? 0 : 2;
}

int bench_connect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "volume", required_argument, NULL, 'v' },
		{ "count", required_argument, NULL, 'n' },
		{ "transport", required_argument, NULL, 't' },
		{ "no-key", no_argument, NULL, 'K' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *map = NULL, *vname = NULL, *transport = NULL;
	bool nokey = false, json = false;
	unsigned count = 200;
	double *cold, *warm;
	int c, ret = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:v:n:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': map = optarg; break;
		case 'v': vname = optarg; break;
		case 'n': count = (unsigned)atoi(optarg); break;
		case 't': transport = optarg; break;
		case 'K': nokey = true; break;
		case 'j': json = true; break;
		case 'h': return usage(stdout);
		default: return usage(stderr);
		}
	}
	if (!map || !vname || !count || count > 100000 || optind != argc)
		return usage(stderr);
	cold = calloc(count, sizeof(*cold));
	warm = calloc(count, sizeof(*warm));
	if (!cold || !warm)
		return 1;
	for (unsigned i = 0; i < count && !ret; i++) {
		struct weft_cluster_opts o = { .size = sizeof(o) };
		struct weft_cluster *cl;
		struct weft_volume *v;
		double t0, t1, t2;
		void *buf;

		o.map_path = map;
		o.transport = transport;
		o.queue_depth = 4;
		o.flags = WEFT_F_NO_SHORT_CIRCUIT;
		weft_env_opts(&o, "weft-bench");
		if (nokey)
			o.key_name = NULL, o.keyring = NULL;
		ret = weft_cluster_open(&o, &cl);
		if (ret) {
			fprintf(stderr, "weft-bench connect: open: %s\n", weft_strerror(ret));
			break;
		}
		ret = weft_volume_open(cl, vname, &v);
		buf = ret ? NULL : weft_buf_alloc(cl, 4096);
		if (!ret && !buf)
			ret = -ENOMEM;
		if (!ret) {
			t0 = now_us();
			if (weft_pread(v, buf, 4096, 0) != 4096)
				ret = -EIO;
			t1 = now_us();
			if (!ret && weft_pread(v, buf, 4096, 0) != 4096)
				ret = -EIO;
			t2 = now_us();
			cold[i] = t1 - t0;
			warm[i] = t2 - t1;
			weft_buf_free(cl, buf);
		}
		if (ret)
			fprintf(stderr, "weft-bench connect: read: %s\n", weft_strerror(ret));
		weft_cluster_close(cl);
	}
	if (!ret) {
		qsort(cold, count, sizeof(*cold), cmp_dbl);
		qsort(warm, count, sizeof(*warm), cmp_dbl);
		if (json) {
			struct wf_json j;

			wf_json_init(&j, stdout, true);
			wf_json_obj_begin(&j, NULL);
			wf_json_str(&j, "benchmark", "connect");
			wf_json_bool(&j, "key", !nokey && getenv("WEFT_KEY"));
			wf_json_u64(&j, "count", count);
			wf_json_dbl(&j, "first_read_p50_us", cold[count / 2]);
			wf_json_dbl(&j, "first_read_p90_us", cold[count * 9 / 10]);
			wf_json_dbl(&j, "warm_read_p50_us", warm[count / 2]);
			wf_json_dbl(&j, "warm_read_p90_us", warm[count * 9 / 10]);
			wf_json_obj_end(&j);
			ret = wf_json_finish(&j) ? 1 : 0;
			putchar('\n');
		} else {
			printf("connect %s key, %u handles: first read p50 %.1f us "
			       "p90 %.1f us; warm read p50 %.1f us p90 %.1f us\n",
			       !nokey && getenv("WEFT_KEY") ? "with a" : "without a",
			       count, cold[count / 2], cold[count * 9 / 10],
			       warm[count / 2], warm[count * 9 / 10]);
		}
	}
	free(cold);
	free(warm);
	return ret ? 1 : 0;
}
