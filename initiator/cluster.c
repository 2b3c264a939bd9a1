/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libweft: the cluster handle.  Options, map loading and epoch changes,
 * the connection table, volumes, teardown.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "initiator/weft_int.h"
#include "weft_version.h"

/* weft.h's version is the project's (CMakeLists.txt). */
_Static_assert(WEFT_VERSION_MAJOR == WEFT_PROJECT_VERSION_MAJOR &&
	       WEFT_VERSION_MINOR == WEFT_PROJECT_VERSION_MINOR,
	       "weft.h WEFT_VERSION_MAJOR/MINOR differ from project(weft VERSION)");

static int map_stat(const char *path, uint64_t *mtime_ns, uint64_t *size)
{
	struct stat st;

	if (stat(path, &st))
		return -errno;
	*mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ull +
		    (uint64_t)st.st_mtim.tv_nsec;
	*size = (uint64_t)st.st_size;
	return 0;
}

/*
 * Build the epoch state of map m (placer and PG table), or fail leaving
 * nothing allocated.  With the epoch in force (prev_pl, prev_t; its map
 * alive) the table is derived from its table: only the PGs a change of a
 * few targets' state or weight can affect are placed again.
 */
static int epoch_build(struct wf_map *m, struct wf_placer *pl, struct wf_pg_table *t,
		       const struct wf_placer *prev_pl, const struct wf_pg_table *prev_t)
{
	struct wf_pg_derive st;
	int ret = wf_placer_init(pl, m);

	if (ret)
		return ret;
	ret = prev_pl ? wf_pg_table_derive(t, prev_t, prev_pl, pl, &st) :
			wf_pg_table_build(t, pl);
	if (ret) {
		wf_placer_free(pl);
		return ret;
	}
	return 0;
}

/*
 * Move to a new map: connections are matched by target id and address;
 * those whose target left (or moved) are closed and their pieces re-routed
 * when the DISCONNECT comes.  Pieces in flight hold conn pointers, never
 * target indices, so nothing else needs translating.
 */
static int conns_rebuild(struct weft_cluster *cl, struct wf_map *nm)
{
	uint32_t n = nm->ntargets ? nm->ntargets : 1;
	struct wf_conn **nc = calloc(n, sizeof(*nc));
	bool *fresh = calloc(n, sizeof(*fresh));
	bool *keep = calloc(cl->nconns + 1, sizeof(*keep));
	struct wf_conn **nd;
	uint32_t i, j;

	if (!nc || !fresh || !keep)
		goto out_nomem;
	nd = realloc(cl->dying, (cl->ndying + cl->nconns + 1) * sizeof(*nd));
	if (!nd)
		goto out_nomem;
	cl->dying = nd;
	/* Pass 1, no side effects: which old connections stay. */
	for (i = 0; i < cl->nconns; i++) {
		struct wf_conn *c = cl->conns[i];
		const struct wf_target *ot = &cl->map.targets[i];
		int t;

		if (!c)
			continue;
		t = wf_map_target_by_id(nm, c->target_id);
		if (t >= 0 && !nc[t] && !strcmp(nm->targets[t].addr, ot->addr) &&
		    nm->targets[t].port == ot->port) {
			nc[t] = c;
			keep[i] = true;
		}
	}
	for (j = 0; j < nm->ntargets; j++) {
		if (nc[j])
			continue;
		nc[j] = wf_conn_new(cl, nm->targets[j].id);
		if (!nc[j])
			goto out_nomem;
		fresh[j] = true;
		/* A target that moved keeps its unflushed writes. */
		for (i = 0; i < cl->nconns; i++)
			if (cl->conns[i] && !keep[i] &&
			    cl->conns[i]->target_id == nc[j]->target_id) {
				nc[j]->wgen = cl->conns[i]->wgen;
				nc[j]->fgen = cl->conns[i]->fgen;
				nc[j]->wgen1 = cl->conns[i]->wgen1;
			}
	}
	/* Pass 2: commit. */
	for (i = 0; i < cl->nconns; i++) {
		struct wf_conn *c = cl->conns[i];

		if (!c || keep[i])
			continue;
		c->dead = true;
		wf_conn_drop_subs(c);
		if (c->state == CONN_IDLE && !c->wait_q.head) {
			wf_conn_free(c);
			continue;
		}
		cl->dying[cl->ndying++] = c;
		wf_conn_fail(c);
	}
	for (j = 0; j < nm->ntargets; j++) {
		nc[j]->idx = j;
		for (i = 1; nc[j]->sub && i < nc[j]->reactors; i++)
			if (nc[j]->sub[i])
				nc[j]->sub[i]->idx = j;
	}
	free(cl->conns);
	free(fresh);
	free(keep);
	cl->conns = nc;
	cl->nconns = nm->ntargets;
	return 0;

out_nomem:
	if (nc && fresh)
		for (j = 0; j < nm->ntargets; j++)
			if (fresh[j])
				free(nc[j]);
	free(nc);
	free(fresh);
	free(keep);
	return -ENOMEM;
}

/*
 * Connections to targets the new epoch marks down are closed at once: a
 * target that froze (SIGSTOP, a hung host) keeps its socket open and would
 * hold every request already sent to it until the request's deadline.
 * Closing fails those operations now, so their pieces are routed again by
 * the new epoch's acting sets, which no longer name the target.
 */
static void conns_fail_down(struct weft_cluster *cl)
{
	for (uint32_t j = 0; j < cl->nconns; j++) {
		struct wf_conn *c = cl->conns[j];

		if (!c || cl->map.targets[j].up)
			continue;
		for (uint32_t k = 1; c->sub && k < c->reactors; k++)
			if (c->sub[k])
				wf_conn_fail(c->sub[k]);
		wf_conn_fail(c);
	}
}

static void volumes_rebind(struct weft_cluster *cl)
{
	struct weft_volume *v;

	for (v = cl->volumes; v; v = v->next) {
		int i = wf_map_volume_by_id(&cl->map, v->id);

		if (i < 0) {
			v->gone = true;
			continue;
		}
		v->idx = (uint32_t)i;
		v->size = cl->map.volumes[i].size;
	}
}

int wf_map_refresh(struct weft_cluster *cl, bool force)
{
	struct wf_map nm;
	struct wf_placer pl;
	struct wf_pg_table t;
	struct wf_map_err err;
	uint64_t mt = 0, sz = 0;
	int ret;

	ret = map_stat(cl->map_path, &mt, &sz);
	if (ret)
		return ret;
	if (!force && mt == cl->map_mtime_ns && sz == cl->map_size)
		return 0;
	memset(&nm, 0, sizeof(nm));
	ret = wf_map_load(cl->map_path, &nm, &err);
	if (ret) {
		wf_log(cl, WEFT_LOG_ERR, "map reload: %s", err.msg);
		return ret;
	}
	cl->map_mtime_ns = mt;
	cl->map_size = sz;
	if (nm.epoch <= cl->map.epoch || nm.cluster_id != cl->map.cluster_id ||
	    nm.extent_size != cl->map.extent_size) {
		/* Not newer (or another cluster entirely): keep ours. */
		wf_map_free(&nm);
		return 0;
	}
	ret = epoch_build(&nm, &pl, &t, &cl->placer, &cl->table);
	if (ret) {
		wf_map_free(&nm);
		return ret;
	}
	ret = conns_rebuild(cl, &nm);
	if (ret) {
		wf_pg_table_free(&t);
		wf_placer_free(&pl);
		wf_map_free(&nm);
		return ret;
	}
	wf_pg_table_free(&cl->table);
	wf_placer_free(&cl->placer);
	wf_map_free(&cl->map);
	cl->map = nm;
	/* The placer borrows the map: point it at its new home. */
	pl.map = &cl->map;
	cl->placer = pl;
	cl->table = t;
	volumes_rebind(cl);
	wf_sc_rebuild(cl);
	conns_fail_down(cl);
	wf_log(cl, WEFT_LOG_INFO, "map epoch %llu", (unsigned long long)cl->map.epoch);
	wf_pieces_new_map(cl);
	return 1;
}

/* opts.key_name, with opts.key or from opts.keyring: the key every
 * connection authenticates with (conn.c).  The options' pointers are not
 * kept. */
static int key_setup(struct weft_cluster *cl)
{
	const struct weft_cluster_opts *o = &cl->opts;
	struct wf_keyring kr;
	const struct wf_key *k;
	char err[512];
	int ret;

	if (!o->key_name) {
		if (o->key || o->keyring)
			wf_log(cl, WEFT_LOG_WARNING, "a key or keyring but no key "
			       "name: connecting without a key");
		goto out;
	}
	if (!wf_key_name_ok(o->key_name)) {
		wf_log(cl, WEFT_LOG_ERR, "key name '%.64s' is not 1..%u characters "
		       "of [A-Za-z0-9._-]", o->key_name, WF_KEY_NAME_MAX - 1);
		return -EINVAL;
	}
	snprintf(cl->key_name, sizeof(cl->key_name), "%s", o->key_name);
	if (o->key) {
		memcpy(cl->key, o->key, WF_KEY_LEN);
	} else if (o->keyring) {
		ret = wf_keyring_load(o->keyring, &kr, err, sizeof(err));
		if (ret) {
			wf_log(cl, WEFT_LOG_ERR, "%s", err);
			return ret == -EPERM ? -EACCES : ret;
		}
		k = wf_keyring_find(&kr, cl->key_name);
		if (k)
			memcpy(cl->key, k->secret, WF_KEY_LEN);
		wf_keyring_free(&kr);
		if (!k) {
			wf_log(cl, WEFT_LOG_ERR, "keyring %s has no key %s",
			       o->keyring, cl->key_name);
			return -ENOENT;
		}
	} else {
		wf_log(cl, WEFT_LOG_ERR, "key %s: neither its secret (opts.key) "
		       "nor a keyring (opts.keyring) given", cl->key_name);
		return -EINVAL;
	}
	cl->has_key = true;
out:
	cl->opts.key_name = NULL;
	cl->opts.key = NULL;
	cl->opts.keyring = NULL;
	return 0;
}

int weft_cluster_open(const struct weft_cluster_opts *opts,
		      struct weft_cluster **out)
{
	struct weft_cluster *cl;
	struct wf_map_err err;
	struct wf_ctx_opts co = { .size = sizeof(co) };
	struct epoll_event ev = { .events = EPOLLIN };
	size_t arena;
	uint32_t budget;
	int ret;

	if (!opts || !out || opts->size < offsetof(struct weft_cluster_opts, flags) +
	    sizeof(opts->flags) || !opts->map_path ||
	    (opts->flags & ~(unsigned)(WEFT_F_NO_SHORT_CIRCUIT | WEFT_F_DEFER_SEND |
				       WEFT_F_NO_SPIN)))
		return -EINVAL;
	if ((opts->flags & WEFT_F_NO_SPIN) &&
	    opts->size > offsetof(struct weft_cluster_opts, spin_us) &&
	    opts->spin_us)
		return -EINVAL;         /* never spin, and spin: which? */
	cl = calloc(1, sizeof(*cl));
	if (!cl)
		return -ENOMEM;
	/* An older caller's struct ends earlier: the rest stays zero. */
	memcpy(&cl->opts, opts, opts->size < sizeof(cl->opts) ? opts->size :
	       sizeof(cl->opts));
	cl->opts.size = sizeof(cl->opts);
	cl->log = cl->opts.log;
	cl->log_arg = cl->opts.log_arg;
	cl->log_level = cl->opts.log_level ? cl->opts.log_level :
			WEFT_LOG_WARNING;
	cl->opts.run_dir = cl->opts.host = NULL;    /* copied below */
	cl->epfd = -1;
	cl->map_path = strdup(opts->map_path);
	if (!cl->map_path) {
		ret = -ENOMEM;
		goto out_free;
	}
	/* "rdma" is what the targets' logs call a verbs address: the same. */
	snprintf(cl->transport, sizeof(cl->transport), "%s",
		 !opts->transport ? "tcp" : !strcmp(opts->transport, "rdma") ?
		 "verbs" : opts->transport);
	if (strcmp(cl->transport, "tcp") && strcmp(cl->transport, "unix") &&
	    strcmp(cl->transport, "verbs")) {
		wf_log(cl, WEFT_LOG_ERR, "unknown transport \"%s\": tcp, unix or "
		       "verbs (also called rdma)", opts->transport);
		ret = -EINVAL;
		goto out_free;
	}
	ret = snprintf(cl->run_dir, sizeof(cl->run_dir), "%s",
		       opts->size > offsetof(struct weft_cluster_opts, run_dir) &&
		       opts->run_dir && *opts->run_dir ? opts->run_dir :
		       "/run/weft");
	if (ret < 0 || (size_t)ret >= sizeof(cl->run_dir)) {
		wf_log(cl, WEFT_LOG_ERR, "run_dir is too long");
		ret = -EINVAL;
		goto out_free;
	}
	if (opts->size > offsetof(struct weft_cluster_opts, host) &&
	    opts->host && *opts->host)
		snprintf(cl->host, sizeof(cl->host), "%s", opts->host);
	else if (gethostname(cl->host, sizeof(cl->host)))
		cl->host[0] = 0;
	cl->host[sizeof(cl->host) - 1] = 0;
	arena = cl->opts.buf_arena ? cl->opts.buf_arena : WF_ARENA_DEFAULT;
	cl->spin_us = cl->opts.spin_us;
	cl->spin_never = cl->opts.flags & WEFT_F_NO_SPIN;
	cl->qd = opts->queue_depth ? opts->queue_depth : WF_DEF_QD;
	if (cl->qd > 65536) {
		ret = -EINVAL;
		goto out_free;
	}
	cl->npieces = cl->qd;
	cl->piece_max = WF_PIECE_MAX;
	if (!cl->opts.timeout_ms)
		cl->opts.timeout_ms = WF_DEF_TIMEOUT_MS;
	if (getrandom(&cl->client_id, sizeof(cl->client_id), 0) !=
	    sizeof(cl->client_id))
		cl->client_id = (uint64_t)getpid() << 32 ^ wf_now_ms();
	cl->client_id |= 1;
	ret = key_setup(cl);
	if (ret)
		goto out_free;

	ret = map_stat(cl->map_path, &cl->map_mtime_ns, &cl->map_size);
	if (ret) {
		wf_log(cl, WEFT_LOG_ERR, "map file %s: %s", cl->map_path,
		       strerrordesc_np(-ret));
		goto out_free;
	}
	ret = wf_map_load(cl->map_path, &cl->map, &err);
	if (ret) {
		wf_log(cl, WEFT_LOG_ERR, "%s", err.msg);
		goto out_free;
	}
	ret = epoch_build(&cl->map, &cl->placer, &cl->table, NULL, NULL);
	if (ret)
		goto out_map;
	{
		/* Only the table exists before any I/O: an empty old map. */
		struct wf_map nm = cl->map;

		ret = conns_rebuild(cl, &nm);
		if (ret)
			goto out_epoch;
	}

	/* Completion credits: every endpoint reserves send + recv + 1. */
	budget = 2 * cl->npieces + 4 + cl->npieces + 4 + 1;
	co.backend = !strcmp(cl->transport, "verbs") ? WF_BACKEND_VERBS :
		     WF_BACKEND_TCP;
	co.cq_depth = budget * (cl->map.ntargets + 8);
	co.flags = WF_CTX_BATCH;        /* see submit() and wf_progress() */
	if (co.cq_depth < 4096)
		co.cq_depth = 4096;
	ret = wf_ctx_create(&co, &cl->ctx);
	if (ret)
		goto out_conns;
	ret = wf_mem_init(&cl->mem, cl->ctx, arena, cl->npieces);
	if (ret)
		goto out_ctx;
	ret = wf_io_init(cl);
	if (ret)
		goto out_mem;
	cl->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (cl->epfd < 0) {
		ret = -errno;
		goto out_io;
	}
	ev.data.u32 = 0;
	if (epoll_ctl(cl->epfd, EPOLL_CTL_ADD, wf_ctx_fd(cl->ctx), &ev)) {
		ret = -errno;
		goto out_ep;
	}
	cl->sc_enabled = !(opts->flags & WEFT_F_NO_SHORT_CIRCUIT);
	ret = wf_sc_init(cl);
	if (ret)
		goto out_ep;
	cl->now = wf_now_ms();
	*out = cl;
	return 0;

out_ep:
	close(cl->epfd);
out_io:
	wf_io_fini(cl);
out_mem:
	wf_mem_fini(&cl->mem);
out_ctx:
	wf_ctx_destroy(cl->ctx);
out_conns:
	for (uint32_t i = 0; i < cl->nconns; i++)
		free(cl->conns[i]);
	free(cl->conns);
	free(cl->dying);
out_epoch:
	wf_pg_table_free(&cl->table);
	wf_placer_free(&cl->placer);
out_map:
	wf_map_free(&cl->map);
out_free:
	explicit_bzero(cl->key, sizeof(cl->key));
	free(cl->map_path);
	free(cl);
	return ret;
}

void weft_cluster_close(struct weft_cluster *cl)
{
	struct weft_volume *v, *nv;

	if (!cl)
		return;
	wf_sc_fini(cl);
	/* Endpoints drain on destroy; nothing of ours is touched after. */
	for (uint32_t i = 0; i < cl->nconns; i++)
		wf_conn_free(cl->conns[i]);
	for (uint32_t i = 0; i < cl->ndying; i++)
		wf_conn_free(cl->dying[i]);
	free(cl->conns);
	free(cl->dying);
	close(cl->epfd);
	wf_io_fini(cl);
	wf_mem_fini(&cl->mem);
	wf_ctx_destroy(cl->ctx);
	for (v = cl->volumes; v; v = nv) {
		nv = v->next;
		free(v);
	}
	wf_pg_table_free(&cl->table);
	wf_placer_free(&cl->placer);
	wf_map_free(&cl->map);
	free(cl->map_path);
	explicit_bzero(cl->key, sizeof(cl->key));
	free(cl);
}

int weft_volume_open(struct weft_cluster *cl, const char *name,
		     struct weft_volume **out)
{
	struct weft_volume *v;
	int i;

	if (!cl || !name || !out)
		return -EINVAL;
	i = wf_map_volume_by_name(&cl->map, name);
	if (i < 0) {
		/* Maybe created since we loaded the map. */
		wf_map_refresh(cl, false);
		i = wf_map_volume_by_name(&cl->map, name);
		if (i < 0) {
			wf_log(cl, WEFT_LOG_ERR, "no volume \"%s\" in the map %s "
			       "(epoch %llu, %u volumes)", name, cl->map_path,
			       (unsigned long long)cl->map.epoch, cl->map.nvolumes);
			return -ENOENT;
		}
	}
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->cl = cl;
	v->idx = (uint32_t)i;
	v->id = cl->map.volumes[i].id;
	v->size = cl->map.volumes[i].size;
	v->next = cl->volumes;
	cl->volumes = v;
	*out = v;
	return 0;
}

void weft_volume_close(struct weft_volume *vol)
{
	struct weft_cluster *cl;
	struct weft_volume **pp;

	if (!vol)
		return;
	cl = vol->cl;
	for (pp = &cl->volumes; *pp; pp = &(*pp)->next)
		if (*pp == vol) {
			*pp = vol->next;
			break;
		}
	free(vol);
}

uint64_t weft_volume_size(const struct weft_volume *vol)
{
	return vol ? vol->size : 0;
}

uint32_t weft_volume_block_size(const struct weft_volume *vol)
{
	(void)vol;
	return WF_BLOCK;
}

void *weft_buf_alloc(struct weft_cluster *cl, size_t len)
{
	return cl && len ? wf_mem_alloc(&cl->mem, len) : NULL;
}

void weft_buf_free(struct weft_cluster *cl, void *buf)
{
	if (cl && buf)
		wf_mem_free(&cl->mem, buf);
}

const char *weft_strerror(int err)
{
	if (err > 0)
		err = -err;
	switch (err) {
	case 0:            return "success";
	case -ETIMEDOUT:   return "no acting replica answered in time";
	case -EAGAIN:      return "queue full: reap completions first";
	case -ERANGE:      return "range beyond the end of the volume";
	/* The same errno comes from different calls: name every cause it
	 * has (the log callback says which one it was). */
	case -EINVAL:      return "invalid argument or cluster map (an option, "
				  "a request's alignment, length or flags, or "
				  "the map's content)";
	case -ENOENT:      return "no such volume (weft_volume_open) or map "
				  "file (weft_cluster_open)";
	case -ESTALE:      return "cluster map epoch changed";
	case -EXDEV:       return "target is not the primary of the placement group";
	case -ENOSPC:      return "no space left on the target";
	case -EIO:         return "device I/O error on the target";
	case -EBADMSG:     return "payload checksum mismatch";
	case -EHOSTDOWN:   return "too few replicas up";
	case -EACCES:      return "permission denied (the map file or keyring "
				  "cannot be read, or a target refused our key or "
				  "the request: the log says which)";
	case -EDQUOT:      return "a target refused a connection: our key holds "
				  "all the connections or staging slots it "
				  "gives one key (the log says which target)";
	case -ECANCELED:   return "request cancelled";
	case -EPROTO:      return "protocol error";
	default:
		/* Not strerror(): no locale, no lock, the same English text
		 * wherever the library is loaded (under ASan in an
		 * uninstrumented host, strerror's locale path left a lock that
		 * hung the process at exit). */
		return strerrordesc_np(-err) ? strerrordesc_np(-err) : "unknown error";
	}
}
