/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weftctl map import|export: moving a map between a file and etcd
 * (docs/control-plane.md).  The map lives at PREFIX/map as the text of the
 * file; every change is a compare-and-swap on the key's revision, and the
 * new text's epoch must be above the one it replaces, so two writers
 * racing never leave two maps of the same epoch.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctlplane/etcd.h"
#include "placement/map.h"
#include "proto/file.h"
#include "weftctl/ctl.h"

static int usage(FILE *f)
{
	fprintf(f, "usage: weftctl map import -c MAP --etcd URL [--prefix P]\n"
		"       weftctl map export --etcd URL [--prefix P] [-o FILE]\n"
		"       weftctl map watch --etcd URL [--prefix P] -o FILE\n"
		"  import: put MAP's text in etcd at P/map (default P: /weft/) if its\n"
		"  epoch is above the one there (or there is none) and it is of the\n"
		"  same cluster; export: the map in etcd to FILE (default stdout;\n"
		"  with --json, -o FILE is needed); watch: keep FILE the map in etcd\n"
		"  (each newer epoch, atomically) until SIGTERM, for the clients of a\n"
		"  host without targets.\n"
		"  Exit 0 done, 1 refused or etcd unreachable, 2 bad arguments.\n");
	return f == stdout ? 0 : 2;
}

void ctl_etcd_key(char *buf, size_t len, const char *prefix, const char *what)
{
	snprintf(buf, len, "%s%s%s", prefix,
		 prefix[0] && prefix[strlen(prefix) - 1] == '/' ? "" : "/", what);
}

/* The whole file (malloc'd), or NULL with the reason on stderr. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n = -1;

	if (f && !fseek(f, 0, SEEK_END))
		n = ftell(f);
	if (n >= 0 && !fseek(f, 0, SEEK_SET) && (buf = malloc((size_t)n + 1)) &&
	    fread(buf, 1, (size_t)n, f) == (size_t)n) {
		*len = (size_t)n;
	} else {
		ctl_err("weftctl map import: cannot read %s\n", path);
		free(buf);
		buf = NULL;
	}
	if (f)
		fclose(f);
	return buf;
}

static int do_import(struct wf_etcd *e, const char *key, const char *path,
		     struct wf_json *j)
{
	struct wf_map_err err;
	struct wf_map m, cur;
	struct wf_etcd_kv kv;
	char *text;
	size_t len = 0;
	int64_t expect = 0, rev;
	int ret;

	text = slurp(path, &len);
	if (!text)
		return 1;
	if (wf_map_load_buf(text, len, path, &m, &err)) {
		ctl_err("weftctl map import: %s\n", err.msg);
		free(text);
		return 1;
	}
	ret = wf_etcd_get(e, key, &kv, NULL);
	if (ret && ret != -ENOENT) {
		ctl_err("weftctl map import: %s\n", wf_etcd_error(e));
		goto out;
	}
	if (!ret) {
		expect = kv.mod_rev;
		if (wf_map_load_buf(kv.value, kv.len, "the map in etcd", &cur, &err)) {
			ctl_err("weftctl map import: the map in etcd does not "
				"load (%s): delete %s by hand to replace it\n", err.msg,
				key);
			wf_etcd_kv_free(&kv);
			ret = -EINVAL;
			goto out;
		}
		wf_etcd_kv_free(&kv);
		if (cur.cluster_id != m.cluster_id || cur.epoch >= m.epoch) {
			ctl_err("weftctl map import: etcd holds cluster %" PRIu64
				" epoch %" PRIu64 "; %s is cluster %" PRIu64 " epoch %"
				PRIu64 ": %s\n", cur.cluster_id, cur.epoch, path,
				m.cluster_id, m.epoch, cur.cluster_id != m.cluster_id ?
				"another cluster" : "not newer");
			wf_map_free(&cur);
			ret = -ESTALE;
			goto out;
		}
		wf_map_free(&cur);
	}
	ret = wf_etcd_put(e, key, text, len, expect, 0, &rev);
	if (ret == -ECANCELED)
		ctl_err("weftctl map import: the map in etcd changed "
			"meanwhile: look again\n");
	else if (ret)
		ctl_err("weftctl map import: %s\n", wf_etcd_error(e));
	else if (j) {
		wf_json_str(j, "map", path);
		wf_json_u64(j, "epoch", m.epoch);
		wf_json_str(j, "key", key);
		wf_json_i64(j, "revision", rev);
	} else {
		printf("%s: epoch %" PRIu64 " imported into etcd at %s (revision %"
		       PRId64 ")\n", path, m.epoch, key, rev);
	}
out:
	wf_map_free(&m);
	free(text);
	return ret ? 1 : 0;
}

static int do_export(struct wf_etcd *e, const char *key, const char *out,
		     struct wf_json *j)
{
	struct wf_etcd_kv kv;
	FILE *f = stdout;
	int ret = wf_etcd_get(e, key, &kv, NULL);

	if (ret == -ENOENT) {
		ctl_err("weftctl map export: no map at %s\n", key);
		return 1;
	}
	if (ret) {
		ctl_err("weftctl map export: %s\n", wf_etcd_error(e));
		return 1;
	}
	if (out && !(f = fopen(out, "wb"))) {
		ctl_err("weftctl map export: cannot write %s\n", out);
		wf_etcd_kv_free(&kv);
		return 1;
	}
	ret = fwrite(kv.value, 1, kv.len, f) == kv.len ? 0 : 1;
	if (out && fclose(f))
		ret = 1;
	if (j) {
		wf_json_str(j, "key", key);
		wf_json_str(j, "output", out);
		wf_json_i64(j, "revision", kv.mod_rev);
	}
	wf_etcd_kv_free(&kv);
	return ret;
}

static volatile sig_atomic_t watch_stop;

static void on_stop(int sig)
{
	watch_stop = sig;
}

/*
 * weftctl map watch --etcd URL -o FILE: keep FILE the map in etcd, for the
 * clients of a host that runs no target (libweft reads its map file: the
 * data path never asks etcd).  Only a newer epoch of the same cluster
 * replaces FILE, atomically.  Runs until SIGTERM or SIGINT.
 */
static int do_watch(struct wf_etcd *e, const char *key, const char *out)
{
	struct sigaction sa = { .sa_handler = on_stop };
	uint64_t have = 0, cluster = 0;
	int64_t rev = 0;
	bool said = false;

	{
		struct wf_map m;
		struct wf_map_err err;

		if (!wf_map_load(out, &m, &err)) {
			have = m.epoch;
			cluster = m.cluster_id;
			wf_map_free(&m);
		}
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (!watch_stop) {
		struct wf_etcd_kv kv;
		struct wf_map m;
		struct wf_map_err err;
		int ret = rev ? wf_etcd_watch(e, key, rev, 1000) : 1;

		if (ret == 1)
			ret = wf_etcd_get(e, key, &kv, NULL);
		else if (!ret)
			continue;
		if (ret) {
			if (!said)
				printf("etcd unreachable (%s): %s keeps epoch %" PRIu64
				       "\n", wf_etcd_error(e), out, have);
			said = true;
			nanosleep(&(struct timespec){ .tv_nsec = 500000000 }, NULL);
			continue;
		}
		if (said)
			printf("etcd back\n");
		said = false;
		rev = kv.mod_rev;
		if (wf_map_load_buf(kv.value, kv.len, "the map in etcd", &m, &err)) {
			printf("the map in etcd at revision %" PRId64 " does not load: %s\n",
			       rev, err.msg);
		} else {
			if (cluster && m.cluster_id != cluster)
				printf("the map in etcd is of cluster %" PRIu64 ", %s of %"
				       PRIu64 ": not taken\n", m.cluster_id, out, cluster);
			else if (m.epoch > have && !wf_file_replace(out, kv.value, kv.len, 0644)) {
				printf("%s: epoch %" PRIu64 "\n", out, m.epoch);
				have = m.epoch;
				cluster = m.cluster_id;
			}
			wf_map_free(&m);
		}
		wf_etcd_kv_free(&kv);
	}
	return 0;
}

int ctl_map_etcd(int argc, char **argv, struct wf_json *j)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "etcd", required_argument, NULL, 'e' },
		{ "prefix", required_argument, NULL, 'P' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *url = NULL, *prefix = "/weft/", *out = NULL;
	bool import = !strcmp(argv[0], "import"), watch = !strcmp(argv[0], "watch");
	struct wf_etcd *e;
	char key[192];
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:e:P:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'e': url = optarg; break;
		case 'P': prefix = optarg; break;
		case 'o': out = optarg; break;
		case 'h': return usage(stdout);
		default: return usage(stderr);
		}
	}
	/* With --json, stdout is the document: an export needs -o. */
	if (!url || optind != argc || (import && (!path || out)) ||
	    (!import && path) || (!import && j && !out) || strlen(prefix) > 128 ||
	    (watch && (!out || j)))
		return usage(stderr);
	if (wf_etcd_open(url, 3000, &e)) {
		fprintf(stderr, "weftctl map %s: --etcd %s is not an http:// URL\n",
			argv[0], url);
		return 2;
	}
	ctl_etcd_key(key, sizeof(key), prefix, "map");
	ret = import ? do_import(e, key, path, j) : watch ? do_watch(e, key, out) :
	      do_export(e, key, out, j);
	wf_etcd_close(e);
	return ret;
}

/* ---- weftctl --etcd URL COMMAND -------------------------------------------- */

bool ctl_etcd_mode;
char ctl_etcd_where[256];

int ctl_etcd_begin(struct ctl_etcd_run *x, const char *url, const char *prefix)
{
	struct wf_etcd_kv kv;
	struct wf_map_err err;
	struct wf_map m;
	int fd, ret;

	memset(x, 0, sizeof(*x));
	if (strlen(prefix) > 128 || wf_etcd_open(url, 3000, &x->e)) {
		fprintf(stderr, "weftctl: --etcd %s: not an http:// URL (or the "
			"prefix is too long)\n", url);
		return 2;
	}
	ctl_etcd_key(x->key, sizeof(x->key), prefix, "map");
	ret = wf_etcd_get(x->e, x->key, &kv, NULL);
	if (ret) {
		fprintf(stderr, "weftctl: %s\n", ret == -ENOENT ?
			"no map in etcd (put one there: weftctl map import)" :
			wf_etcd_error(x->e));
		wf_etcd_close(x->e);
		return 1;
	}
	if (wf_map_load_buf(kv.value, kv.len, "the map in etcd", &m, &err)) {
		fprintf(stderr, "weftctl: %s\n", err.msg);
		wf_etcd_kv_free(&kv);
		wf_etcd_close(x->e);
		return 1;
	}
	x->epoch = m.epoch;
	x->rev = kv.mod_rev;
	wf_map_free(&m);
	snprintf(x->tmp, sizeof(x->tmp), "/tmp/weftctl-etcd.XXXXXX");
	fd = mkstemp(x->tmp);
	if (fd < 0 || write(fd, kv.value, kv.len) != (ssize_t)kv.len) {
		fprintf(stderr, "weftctl: cannot write a copy of the map in /tmp\n");
		if (fd >= 0) {
			close(fd);
			unlink(x->tmp);
		}
		wf_etcd_kv_free(&kv);
		wf_etcd_close(x->e);
		return 1;
	}
	close(fd);
	wf_etcd_kv_free(&kv);
	snprintf(ctl_etcd_where, sizeof(ctl_etcd_where), "etcd %.120s %.120s", url,
		 x->key);
	ctl_etcd_mode = true;
	return 0;
}

int ctl_etcd_end(struct ctl_etcd_run *x, int rc, struct wf_json *j)
{
	struct wf_map_err err;
	struct wf_map m;
	char bak[80], *text = NULL;
	size_t len = 0;
	int64_t rev = 0;
	int ret;

	if (!rc && !wf_map_load(x->tmp, &m, &err)) {
		if (m.epoch > x->epoch) {
			text = slurp(x->tmp, &len);
			ret = text ? wf_etcd_put(x->e, x->key, text, len, x->rev, 0, &rev) :
				     -EIO;
			if (ret == -ECANCELED) {
				ctl_err("weftctl: the map in etcd changed since it was "
					"read (another writer): epoch %" PRIu64 " not "
					"written; run the command again\n", m.epoch);
				rc = 1;
			} else if (ret) {
				ctl_err("weftctl: epoch %" PRIu64 " not written to etcd: "
					"%s\n", m.epoch, wf_etcd_error(x->e));
				rc = 1;
			} else if (j) {
				wf_json_i64(j, "etcd_revision", rev);
			} else {
				printf("etcd: epoch %" PRIu64 " written at %s (revision %"
				       PRId64 ")\n", m.epoch, x->key, rev);
			}
			free(text);
		}
		wf_map_free(&m);
	}
	snprintf(bak, sizeof(bak), "%s.bak", x->tmp);
	unlink(bak);
	unlink(x->tmp);
	wf_etcd_close(x->e);
	ctl_etcd_mode = false;
	return rc;
}
