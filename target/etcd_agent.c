/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The target's side of the etcd control plane (docs/control-plane.md),
 * with `--etcd URL`: one thread beside the reactors, never on the data
 * path.
 *
 *   start   the map comes from etcd (PREFIX/map) and is saved as the
 *           target's map file, which stays the target's copy: the data
 *           path reads nothing else, and a target that cannot reach etcd
 *           starts on the file it has;
 *   lease   the target holds a lease (--etcd-ttl seconds) and registers
 *           under it (PREFIX/targets/ID: address, pid, epoch); a keeper
 *           sees the key vanish when the target dies;
 *   watch   a change of PREFIX/map of the same cluster and a newer epoch
 *           is saved over the map file and every reactor loads it (as
 *           after SIGHUP); recovery starts by itself where the new epoch
 *           pins PGs;
 *   lost    etcd unreachable: the data path goes on with the last map,
 *           map changes wait, the status says so (wf_ctl_status.etcd),
 *           and the agent tries again every half second.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctlplane/etcd.h"
#include "placement/map.h"
#include "proto/ctl.h"
#include "proto/file.h"
#include "target/target.h"

struct wf_tgt_etcd {
	const struct wf_tgt_cfg *cfg;
	struct wf_tgt *t;
	pthread_t th;
	int       stop;             /* atomic */
	uint64_t  cluster_id;
	int64_t   map_rev;          /* mod_revision of the map we have */
	int64_t   lease;
	char      key_map[192], key_reg[192];
};

static void key_of(char *buf, size_t len, const char *prefix, const char *what)
{
	snprintf(buf, len, "%s%s%s", prefix,
		 prefix[0] && prefix[strlen(prefix) - 1] == '/' ? "" : "/", what);
}

static void set_state(struct wf_tgt *t, uint32_t st)
{
	uint32_t old = __atomic_exchange_n(&t->etcd_state, st, __ATOMIC_RELAXED);

	if (old == st)
		return;
	if (st == WF_CTL_ETCD_OK)
		wf_tgt_log("etcd: connected");
	else
		wf_tgt_log("etcd: unreachable: serving epoch %llu from the last map; "
			   "map changes wait",
			   (unsigned long long)__atomic_load_n(&t->epoch, __ATOMIC_RELAXED));
}

/* Parse text; 0 and *epoch when it is a map of cluster (0: any). */
static int check_map(const char *text, size_t len, uint64_t cluster, uint64_t *epoch,
		     uint64_t *cl_out, char *err, size_t errlen)
{
	struct wf_map_err merr;
	struct wf_map m;

	if (wf_map_load_buf(text, len, "the map in etcd", &m, &merr)) {
		snprintf(err, errlen, "%s", merr.msg);
		return -EINVAL;
	}
	*epoch = m.epoch;
	if (cl_out)
		*cl_out = m.cluster_id;
	if (cluster && m.cluster_id != cluster) {
		snprintf(err, errlen, "the map in etcd is of cluster %llu, this target "
			 "serves cluster %llu", (unsigned long long)m.cluster_id,
			 (unsigned long long)cluster);
		wf_map_free(&m);
		return -EINVAL;
	}
	wf_map_free(&m);
	return 0;
}

int wf_tgt_etcd_fetch(const struct wf_tgt_cfg *cfg, char *err, size_t errlen)
{
	struct wf_etcd *e;
	struct wf_etcd_kv kv;
	struct wf_map_err merr;
	struct wf_map cur;
	char key[192];
	uint64_t epoch, cluster;
	bool have_file;
	int ret;

	key_of(key, sizeof(key), cfg->etcd_prefix, "map");
	have_file = !wf_map_load(cfg->map_path, &cur, &merr);
	ret = wf_etcd_open(cfg->etcd_url, 2000, &e);
	if (ret) {
		snprintf(err, errlen, "--etcd %s: not an http:// URL", cfg->etcd_url);
		goto out;
	}
	ret = wf_etcd_get(e, key, &kv, NULL);
	if (ret == -ENOENT) {
		snprintf(err, errlen, "etcd %s has no map at %s (put one there with "
			 "`weftctl map import`)", cfg->etcd_url, key);
		goto out_close;
	}
	if (ret) {
		if (have_file) {
			wf_tgt_log("etcd %s unreachable (%s): starting on %s, epoch %llu",
				   cfg->etcd_url, wf_etcd_error(e), cfg->map_path,
				   (unsigned long long)cur.epoch);
			ret = 0;
		} else {
			snprintf(err, errlen, "etcd %s unreachable (%s) and no map file "
				 "%s to start on", cfg->etcd_url, wf_etcd_error(e),
				 cfg->map_path);
		}
		goto out_close;
	}
	ret = check_map(kv.value, kv.len, have_file ? cur.cluster_id : 0, &epoch,
			&cluster, err, errlen);
	if (!ret && have_file && cur.epoch > epoch) {
		/* Epochs never go back: etcd was reset or is another one. */
		wf_tgt_log("etcd %s holds epoch %llu, older than %s (%llu): keeping "
			   "the file", cfg->etcd_url, (unsigned long long)epoch,
			   cfg->map_path, (unsigned long long)cur.epoch);
	} else if (!ret && (!have_file || cur.epoch < epoch)) {
		ret = wf_file_replace(cfg->map_path, kv.value, kv.len, 0644);
		if (ret)
			snprintf(err, errlen, "cannot write %s: %s", cfg->map_path,
				 strerror(-ret));
	}
	wf_etcd_kv_free(&kv);
out_close:
	wf_etcd_close(e);
out:
	if (have_file)
		wf_map_free(&cur);
	return ret;
}

/* (Re)register under a fresh lease; 0 or -errno. */
static int do_register(struct wf_tgt_etcd *a, struct wf_etcd *e)
{
	const struct wf_tgt_reactor *r0 = a->t->r[0];
	char val[512];
	int n, ret;

	ret = wf_etcd_lease_grant(e, a->cfg->etcd_ttl, &a->lease);
	if (ret)
		return ret;
	n = snprintf(val, sizeof(val), "{\"id\":%u,\"addr\":\"%s\",\"pid\":%d,"
		     "\"epoch\":%llu}", a->cfg->id, r0->net_addr, (int)getpid(),
		     (unsigned long long)__atomic_load_n(&a->t->epoch, __ATOMIC_RELAXED));
	ret = wf_etcd_put(e, a->key_reg, val, (size_t)n, -1, a->lease, NULL);
	if (ret)
		a->lease = 0;
	return ret;
}

/* The epoch of the map file (0: none, or it does not load). */
static uint64_t file_epoch(const char *path)
{
	struct wf_map_err merr;
	struct wf_map m;
	uint64_t epoch;

	if (wf_map_load(path, &m, &merr))
		return 0;
	epoch = m.epoch;
	wf_map_free(&m);
	return epoch;
}

/* The map changed in etcd: take it if it is newer than what we serve;
 * write it over the map file too when only the file is older (we may
 * serve the epoch already, pulled from a peer and kept beside the file:
 * the host's clients read the file). */
static int take_map(struct wf_tgt_etcd *a, struct wf_etcd *e)
{
	struct wf_etcd_kv kv;
	uint64_t epoch, served = __atomic_load_n(&a->t->epoch, __ATOMIC_RELAXED);
	char err[512];
	int ret = wf_etcd_get(e, a->key_map, &kv, NULL);

	if (ret)
		return ret;
	a->map_rev = kv.mod_rev;
	if (check_map(kv.value, kv.len, a->cluster_id, &epoch, NULL, err, sizeof(err))) {
		wf_tgt_log("etcd: map at revision %lld refused: %s",
			   (long long)kv.mod_rev, err);
	} else if (epoch > served) {
		ret = wf_file_replace(a->cfg->map_path, kv.value, kv.len, 0644);
		if (ret) {
			wf_tgt_log("etcd: cannot write %s: %s", a->cfg->map_path,
				   strerror(-ret));
		} else {
			wf_tgt_log("etcd: map epoch %llu -> %llu",
				   (unsigned long long)served, (unsigned long long)epoch);
			/* Every reactor loads it, reactor 0 too. */
			__atomic_add_fetch(&a->t->reload_gen, 1, __ATOMIC_RELEASE);
			wf_tgt_wake_all(a->t, NULL);
		}
	} else if (epoch > file_epoch(a->cfg->map_path)) {
		ret = wf_file_replace(a->cfg->map_path, kv.value, kv.len, 0644);
		if (ret)
			wf_tgt_log("etcd: cannot write %s: %s", a->cfg->map_path,
				   strerror(-ret));
		else
			wf_tgt_log("etcd: %s brought to epoch %llu (served already)",
				   a->cfg->map_path, (unsigned long long)epoch);
	}
	wf_etcd_kv_free(&kv);
	return 0;
}

static bool stopping(struct wf_tgt_etcd *a)
{
	return __atomic_load_n(&a->stop, __ATOMIC_ACQUIRE);
}

static void nap(struct wf_tgt_etcd *a, unsigned ms)
{
	for (unsigned i = 0; i < ms / 50 && !stopping(a); i++)
		nanosleep(&(struct timespec){ .tv_nsec = 50000000 }, NULL);
}

static void *agent(void *arg)
{
	struct wf_tgt_etcd *a = arg;
	struct wf_etcd *e = NULL;
	unsigned beat_ms = a->cfg->etcd_ttl * 1000 / 3;
	struct timespec last = { 0 };

	while (!stopping(a)) {
		struct timespec now;
		int64_t ttl;
		int ret = 0;

		if (!e && wf_etcd_open(a->cfg->etcd_url, 1000, &e)) {
			nap(a, 500);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!a->lease) {
			ret = do_register(a, e);
			last = now;
		} else if ((now.tv_sec - last.tv_sec) * 1000 +
			   (now.tv_nsec - last.tv_nsec) / 1000000 >= beat_ms) {
			ret = wf_etcd_lease_keepalive(e, a->lease, &ttl);
			if (ret == -ENOENT) {
				/* Expired (we were cut off longer than the
				 * TTL): a keeper may have marked us down;
				 * register again. */
				wf_tgt_log("etcd: lease expired: registering again");
				a->lease = 0;
				continue;
			}
			last = now;
		}
		/* The map: at the start, then on every change. */
		if (!ret && !a->map_rev)
			ret = take_map(a, e);
		if (!ret)
			set_state(a->t, WF_CTL_ETCD_OK);
		if (!ret) {
			/* Bounded so that a stop is not kept waiting. */
			ret = wf_etcd_watch(e, a->key_map, a->map_rev,
					    beat_ms < 1000 ? beat_ms : 1000);
			if (ret == 1)
				ret = take_map(a, e);
		}
		if (ret < 0) {
			set_state(a->t, WF_CTL_ETCD_UNREACHABLE);
			nap(a, 500);
			continue;
		}
	}
	if (e && a->lease)
		wf_etcd_lease_revoke(e, a->lease);      /* gone at once */
	wf_etcd_close(e);
	return NULL;
}

int wf_tgt_etcd_start(struct wf_tgt *t, const struct wf_tgt_cfg *cfg,
		      struct wf_tgt_etcd **out)
{
	struct wf_tgt_etcd *a = calloc(1, sizeof(*a));
	char id[32];
	int ret;

	if (!a)
		return -ENOMEM;
	a->cfg = cfg;
	a->t = t;
	a->cluster_id = t->r[0]->map->map.cluster_id;
	key_of(a->key_map, sizeof(a->key_map), cfg->etcd_prefix, "map");
	snprintf(id, sizeof(id), "targets/%u", cfg->id);
	key_of(a->key_reg, sizeof(a->key_reg), cfg->etcd_prefix, id);
	__atomic_store_n(&t->etcd_state, WF_CTL_ETCD_UNREACHABLE, __ATOMIC_RELAXED);
	ret = pthread_create(&a->th, NULL, agent, a);
	if (ret) {
		free(a);
		return -ret;
	}
	*out = a;
	return 0;
}

void wf_tgt_etcd_stop(struct wf_tgt_etcd *a)
{
	if (!a)
		return;
	__atomic_store_n(&a->stop, 1, __ATOMIC_RELEASE);
	pthread_join(a->th, NULL);
	free(a);
}
