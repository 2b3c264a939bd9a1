/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weftctl keeper: the process that decides epochs when targets come and
 * go (docs/control-plane.md, "The keeper").  Any number may run; etcd's
 * election API (v3election) makes one of them the leader, under a lease
 * it keeps alive.  The leader, twice a second:
 *
 *   - marks down every target that is up in the map but has no
 *     registration (its lease expired: it died or is cut off), and up
 *     every target that is down but registered again, pinning the PGs
 *     it returns to (recovery brings it up to date, as `weftctl target
 *     up` does);
 *   - marks out a target missing for --out-after seconds (its PGs move,
 *     pinned until copied), and in again one it marked out that returns;
 *   - ends the pins once every up target reports its recovery pass done
 *     for the epoch (as `weftctl recover`).
 *
 * Every write is a transaction that succeeds only if the map is still the
 * one it read and its leader key still exists: a keeper whose lease
 * expired (cut off from etcd, frozen) has lost the key, so its writes are
 * refused even before it notices; when it does, it stops acting and
 * campaigns again.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctlplane/etcd.h"
#include "placement/map.h"
#include "placement/placement.h"
#include "proto/ctl.h"
#include "weftctl/ctl.h"

static volatile sig_atomic_t stop_sig;

static void on_sig(int sig)
{
	stop_sig = sig;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap(unsigned ms)
{
	for (unsigned i = 0; i < ms / 50 && !stop_sig; i++)
		nanosleep(&(struct timespec){ .tv_nsec = 50000000 }, NULL);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	struct timespec ts;
	va_list ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	printf("%lld.%03ld keeper[%d]: ", (long long)ts.tv_sec, ts.tv_nsec / 1000000,
	       (int)getpid());
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

struct keeper {
	const char *url, *run_dir;
	char     k_map[192], k_targets[192], k_elect[192], k_out[192];
	unsigned ttl, out_after_s;
	int64_t  lease;                 /* atomic: the keepalive thread's */
	int      lost;                  /* atomic */
	int      quit;                  /* atomic */
	int64_t  missing_since[4096];   /* by map index: ms, 0 = present */
	bool     reg[4096];             /* registered, this round */
};

/* The lease stays alive, or `lost` says it could not be kept. */
static void *keepalive(void *arg)
{
	struct keeper *k = arg;
	struct wf_etcd *e;
	int64_t last_ok = now_ms();

	if (wf_etcd_open(k->url, 1000, &e))
		return NULL;
	while (!__atomic_load_n(&k->quit, __ATOMIC_ACQUIRE)) {
		int64_t id = __atomic_load_n(&k->lease, __ATOMIC_ACQUIRE), ttl;
		int ret;

		if (id) {
			ret = wf_etcd_lease_keepalive(e, id, &ttl);
			if (!ret)
				last_ok = now_ms();
			if (ret == -ENOENT ||
			    (ret && now_ms() - last_ok > (int64_t)k->ttl * 1000))
				__atomic_store_n(&k->lost, 1, __ATOMIC_RELEASE);
		} else {
			last_ok = now_ms();
		}
		for (unsigned i = 0; i < k->ttl * 1000 / 3 / 50 &&
		     !__atomic_load_n(&k->quit, __ATOMIC_ACQUIRE); i++)
			nanosleep(&(struct timespec){ .tv_nsec = 50000000 }, NULL);
	}
	wf_etcd_close(e);
	return NULL;
}

static void on_reg(void *arg, const char *key, const struct wf_etcd_kv *kv)
{
	struct keeper *k = arg;
	const char *id = strrchr(key, '/');

	(void)kv;
	if (id) {
		char *end;
		unsigned long v = strtoul(id + 1, &end, 10);

		if (!*end && v < 4096)
			k->reg[v] = true;
	}
}

/* The map as text (malloc'd). */
static char *map_text(const struct wf_map *m, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);

	if (!f)
		return NULL;
	if (wf_map_write(m, f)) {
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	return buf;
}

/* Did every up target finish its recovery pass for m's epoch? */
static bool recovered(const struct keeper *k, const struct wf_map *m)
{
	for (uint32_t i = 0; i < m->ntargets; i++) {
		const struct wf_target *t = &m->targets[i];
		struct wf_ctl_status st;
		const char *via;

		if (!t->up)
			continue;
		if (ctl_ask(k->run_dir, t, m->epoch, m->cluster_id, 1000, &st, &via) ||
		    le32toh(st.target_id) != t->id || le64toh(st.epoch) < m->epoch ||
		    le64toh(st.recovered_epoch) < m->epoch)
			return false;
	}
	return true;
}

/* One look while leading: 0, 1 (wrote an epoch), -ECANCELED (refused: the
 * map changed or the leadership is gone), -errno. */
static int act(struct keeper *k, struct wf_etcd *e, const struct wf_etcd_leader *ld)
{
	struct wf_etcd_kv kv;
	struct wf_map m0, prev, next;
	struct wf_map_err err;
	char why[256] = "";
	size_t len, wl = 0;
	char *text;
	int64_t rev;
	bool changed = false;
	int ret, pinned = 0;

	memset(k->reg, 0, sizeof(k->reg));
	ret = wf_etcd_list(e, k->k_targets, on_reg, k);
	if (ret < 0)
		return ret;
	ret = wf_etcd_get(e, k->k_map, &kv, NULL);
	if (ret)
		return ret;
	if (wf_map_load_buf(kv.value, kv.len, "the map in etcd", &m0, &err)) {
		say("the map in etcd does not load: %s", err.msg);
		wf_etcd_kv_free(&kv);
		return -EINVAL;
	}
	if (wf_map_copy(&prev, &m0) || wf_map_copy(&next, &m0)) {
		wf_map_free(&m0);
		wf_etcd_kv_free(&kv);
		return -ENOMEM;
	}
	wf_map_free(&m0);
	for (uint32_t i = 0; i < next.ntargets && i < 4096; i++) {
		struct wf_target *t = &next.targets[i];
		bool here = t->id < 4096 && k->reg[t->id];
		char okey[224];
		struct wf_etcd_kv ok;

		snprintf(okey, sizeof(okey), "%s%u", k->k_out, t->id);
		if (here) {
			k->missing_since[i] = 0;
			if (!t->up) {
				t->up = true;
				changed = true;
				wl += (size_t)snprintf(why + wl, sizeof(why) - wl,
						       "%starget %u up", wl ? ", " : "", t->id);
			}
			if (!t->in && !wf_etcd_get(e, okey, &ok, NULL)) {
				/* Ours to put back in. */
				wf_etcd_kv_free(&ok);
				wf_etcd_delete(e, okey);
				t->in = true;
				changed = true;
				wl += (size_t)snprintf(why + wl, sizeof(why) - wl,
						       "%starget %u in", wl ? ", " : "", t->id);
			}
			continue;
		}
		if (!k->missing_since[i])
			k->missing_since[i] = now_ms();
		if (t->up) {
			t->up = false;
			changed = true;
			wl += (size_t)snprintf(why + wl, sizeof(why) - wl,
					       "%starget %u down (no registration)",
					       wl ? ", " : "", t->id);
		} else if (t->in && k->out_after_s &&
			   now_ms() - k->missing_since[i] > (int64_t)k->out_after_s * 1000) {
			t->in = false;
			changed = true;
			wf_etcd_put(e, okey, "1", 1, -1, 0, NULL);
			wl += (size_t)snprintf(why + wl, sizeof(why) - wl,
					       "%starget %u out (missing %us)",
					       wl ? ", " : "", t->id, k->out_after_s);
		}
		if (wl >= sizeof(why))
			wl = sizeof(why) - 1;
	}
	if (changed) {
		wf_map_reweigh(&next);
		next.epoch++;
		pinned = wf_map_pin_moves(&prev, &next);
		if (pinned < 0) {
			ret = pinned;
			goto out;
		}
	} else if (next.ntemps && recovered(k, &next)) {
		/* Every new member is current: the pins go. */
		free(next.temps);
		next.temps = NULL;
		next.ntemps = 0;
		next.epoch++;
		changed = true;
		snprintf(why, sizeof(why), "new members up to date: pins removed");
	}
	if (!changed) {
		ret = 0;
		goto out;
	}
	text = map_text(&next, &len);
	ret = text ? wf_etcd_put_guarded(e, k->k_map, text, len, kv.mod_rev,
					 ld->key, ld->rev, &rev) : -ENOMEM;
	free(text);
	if (!ret) {
		say("epoch %" PRIu64 ": %s%s", next.epoch, why,
		    pinned > 0 ? " (PGs pinned while they are brought up to date)" : "");
		ret = 1;
	}
out:
	wf_map_edit_free(&next);
	wf_map_edit_free(&prev);
	wf_etcd_kv_free(&kv);
	return ret;
}

static int usage(FILE *f)
{
	fprintf(f, "usage: weftctl keeper --etcd URL [--etcd-prefix P] [--ttl S]\n"
		"                      [--out-after S] [--run-dir D]\n"
		"  Campaign (etcd election PREFIX/keeper) and, while leading, keep the\n"
		"  map in etcd true to the targets' registrations: a target whose\n"
		"  lease expired is marked down, out after --out-after seconds\n"
		"  (default 600; 0: never), up and in again when it returns; pins\n"
		"  end once every target reports its recovery done.  --ttl: the\n"
		"  keeper's own lease (default 5 s).  Runs until SIGTERM or SIGINT\n"
		"  (then resigns).  One line per event on stdout.\n");
	return f == stdout ? 0 : 2;
}

int ctl_keeper(int argc, char **argv, struct wf_json *j)
{
	static const struct option opts[] = {
		{ "etcd", required_argument, NULL, 'e' },
		{ "etcd-prefix", required_argument, NULL, 'P' },
		{ "ttl", required_argument, NULL, 't' },
		{ "out-after", required_argument, NULL, 'o' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct keeper *k = calloc(1, sizeof(*k));
	const char *prefix = "/weft/";
	struct sigaction sa = { .sa_handler = on_sig };
	struct wf_etcd *e = NULL;
	char value[96], host[64] = "?";
	pthread_t th;
	int c, ret = 1;

	if (!k)
		return 1;
	k->ttl = 5;
	k->out_after_s = 600;
	optind = 1;
	while ((c = getopt_long(argc, argv, "e:P:t:o:r:h", opts, NULL)) != -1) {
		char *end;
		unsigned long v;

		switch (c) {
		case 'e': k->url = optarg; break;
		case 'P': prefix = optarg; break;
		case 'r': k->run_dir = optarg; break;
		case 't':
		case 'o':
			v = strtoul(optarg, &end, 10);
			if (*end || v > 86400 || (c == 't' && v < 2)) {
				fprintf(stderr, "weftctl keeper: --%s: '%s' is not %s s\n",
					c == 't' ? "ttl" : "out-after", optarg,
					c == 't' ? "2 .. 86400" : "0 .. 86400");
				free(k);
				return 2;
			}
			if (c == 't')
				k->ttl = (unsigned)v;
			else
				k->out_after_s = (unsigned)v;
			break;
		case 'h': free(k); return usage(stdout);
		default: free(k); return usage(stderr);
		}
	}
	if (!k->url || optind != argc || strlen(prefix) > 128 || j) {
		if (j)
			fprintf(stderr, "weftctl keeper: no --json (it runs until stopped)\n");
		free(k);
		return usage(stderr);
	}
	k->run_dir = ctl_run_dir(k->run_dir);
	ctl_etcd_key(k->k_map, sizeof(k->k_map), prefix, "map");
	ctl_etcd_key(k->k_targets, sizeof(k->k_targets), prefix, "targets/");
	ctl_etcd_key(k->k_elect, sizeof(k->k_elect), prefix, "keeper");
	ctl_etcd_key(k->k_out, sizeof(k->k_out), prefix, "keeper-out/");
	if (wf_etcd_open(k->url, 2000, &e)) {
		fprintf(stderr, "weftctl keeper: --etcd %s is not an http:// URL\n", k->url);
		free(k);
		return 2;
	}
	gethostname(host, sizeof(host) - 1);
	snprintf(value, sizeof(value), "weftctl keeper pid %d on %s", (int)getpid(), host);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (pthread_create(&th, NULL, keepalive, k)) {
		wf_etcd_close(e);
		free(k);
		return 1;
	}
	say("campaigning at %s (lease ttl %us, out after %us)", k->k_elect, k->ttl,
	    k->out_after_s);
	while (!stop_sig) {
		struct wf_etcd_leader ld;
		int64_t lease;

		if (!__atomic_load_n(&k->lease, __ATOMIC_ACQUIRE)) {
			if (wf_etcd_lease_grant(e, k->ttl, &lease)) {
				nap(500);
				continue;
			}
			__atomic_store_n(&k->lost, 0, __ATOMIC_RELEASE);
			__atomic_store_n(&k->lease, lease, __ATOMIC_RELEASE);
		}
		lease = __atomic_load_n(&k->lease, __ATOMIC_ACQUIRE);
		ret = wf_etcd_campaign(e, k->k_elect, lease, value, 1000, &ld);
		if (__atomic_load_n(&k->lost, __ATOMIC_ACQUIRE)) {
			__atomic_store_n(&k->lease, 0, __ATOMIC_RELEASE);
			if (!ret)
				wf_etcd_leader_free(&ld);
			continue;
		}
		if (ret == -ETIMEDOUT)
			continue;       /* another leads: campaign again */
		if (ret) {
			nap(500);
			continue;
		}
		say("leading (%s)", ld.key);
		memset(k->missing_since, 0, sizeof(k->missing_since));
		while (!stop_sig && !__atomic_load_n(&k->lost, __ATOMIC_ACQUIRE)) {
			int r = act(k, e, &ld);

			if (r == -ECANCELED)
				say("a write was refused (the map changed, or the "
				    "leadership is gone): looking again");
			nap(r == 1 ? 100 : 500);
		}
		if (stop_sig) {
			wf_etcd_resign(e, k->k_elect, &ld, lease);
		} else {
			say("lost its lease: stops acting and campaigns again");
			__atomic_store_n(&k->lease, 0, __ATOMIC_RELEASE);
		}
		wf_etcd_leader_free(&ld);
	}
	__atomic_store_n(&k->quit, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	if (k->lease)
		wf_etcd_lease_revoke(e, k->lease);
	say("stopped (%s)", stop_sig == SIGINT ? "SIGINT" : "SIGTERM");
	wf_etcd_close(e);
	free(k);
	return 0;
}
