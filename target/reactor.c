/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The reactor: one event loop (one thread per --cores) that owns a queue
 * of the store, the fabric contexts, the connections and their slots;
 * reactor 0 also has the signalfd and the control socket.  Reactors share
 * nothing on the data path: another reactor reaches this one only through
 * struct wf_tgt (stop, reload: a generation number looked at once per
 * turn, plus the wake eventfd for a sleeping loop) and through the store,
 * which hands a request for an extent another queue owns over to that
 * queue's ring (target/store.h).
 *
 * One loop turn:
 *   wf_store_poll(): store completions run the request state machines
 *   wf_poll() every fabric ctx (flushing the replies just posted), a batch
 *   into a stack array; dispatch
 *   retry requests that waited for send credits
 *   wf_store_submit(): one io_uring_enter for everything queued this turn
 * After poll_us without work it sleeps in one io_uring_enter on its store
 * queue (wf_store_wait): device completions and messages from other queues
 * wake it directly, the fabric ctx fds and an epoll set (signalfd, wake
 * eventfd, control sockets) through polls in that ring.  While
 * busy it looks at the epoll set every CTL_EVERY turns.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "target/target.h"

#define CQE_BATCH   64
#define STORE_BATCH 64
#define CTL_EVERY   256         /* busy turns between control checks */
#define DRAIN_IO_MS   10000     /* store I/O in flight must finish by then */
#define DRAIN_SEND_MS 2000      /* posted replies must be sent by then */
#define DRAIN_QUIET_MS 20       /* ... and peers quiet this long */
#define CLOSE_MS      2000      /* endpoints must report DISCONNECT by then */

uint64_t wf_tgt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void wake(struct wf_tgt_reactor *r)
{
	uint64_t one = 1;

	if (r->wake_fd >= 0 && write(r->wake_fd, &one, sizeof(one)) < 0) {
		/* already signalled (counter full): it will look anyway */
	}
}

void wf_tgt_wake_one(struct wf_tgt *t, unsigned idx)
{
	if (idx < t->n && t->r[idx])
		wake(t->r[idx]);
}

/* Tell every reactor but `self` (NULL: all) that t->gen moved. */
void wf_tgt_wake_all(struct wf_tgt *t, struct wf_tgt_reactor *self)
{
	__atomic_add_fetch(&t->gen, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < t->n; i++)
		if (t->r[i] && t->r[i] != self)
			wake(t->r[i]);
}

void wf_tgt_stop_all(struct wf_tgt *t, int sig)
{
	__atomic_store_n(&t->stop, sig ? sig : SIGTERM, __ATOMIC_RELEASE);
	wf_tgt_wake_all(t, NULL);
}

static int reload_local(struct wf_tgt_reactor *r, const char *why, bool peer);
static void reclaim_start(struct wf_tgt_reactor *r);

static int reload(struct wf_tgt_reactor *r, const char *why, bool always)
{
	uint64_t old = r->map->epoch;
	int ret = reload_local(r, why, false);

	/* A request-driven reload that found nothing newer stays local: a
	 * peer sending bogus epochs to every reactor must not make each of
	 * them re-read the file for all the others. */
	if (!ret && r->t && r->t->n > 1 && (always || r->map->epoch != old)) {
		/* Every reactor serves from its own copy: make them load it
		 * too (they may find an even newer file; never an older
		 * epoch than theirs). */
		__atomic_add_fetch(&r->t->reload_gen, 1, __ATOMIC_RELEASE);
		r->seen_reload = __atomic_load_n(&r->t->reload_gen, __ATOMIC_ACQUIRE);
		wf_tgt_wake_all(r->t, r);
	}
	return ret;
}

int wf_tgt_reload(struct wf_tgt_reactor *r, const char *why)
{
	return reload(r, why, false);
}

int wf_tgt_reload_all(struct wf_tgt_reactor *r, const char *why)
{
	return reload(r, why, true);
}

static int reload_local(struct wf_tgt_reactor *r, const char *why, bool peer)
{
	struct wf_tgt_map *m;
	char err[512];
	int ret;

	ret = wf_tgt_map_load_next(r->cfg->map_path, r->cfg->id, r->map, &m, err, sizeof(err));
	{
		/* A map pulled from a peer (lease.c), when newer. */
		char pp[WF_PATH_MAX + 64], perr[64];
		struct wf_tgt_map *pm;

		if (!wf_tgt_pulled_path(r->cfg, pp, sizeof(pp)) && !access(pp, F_OK) &&
		    !wf_tgt_map_load_next(pp, r->cfg->id, r->map, &pm, perr, sizeof(perr))) {
			if (pm->map.cluster_id == r->map->map.cluster_id &&
			    (ret || pm->epoch > m->epoch)) {
				if (!ret)
					wf_tgt_map_free(m);
				m = pm;
				ret = 0;
			} else {
				wf_tgt_map_free(pm);
			}
		}
	}
	if (ret) {
		wf_tgt_logl(WF_TGT_LOG_WARNING, "map reload (%s) failed, keeping epoch %llu: %s", why,
			   (unsigned long long)r->map->epoch, err);
		return ret;
	}
	if (m->epoch < r->map->epoch ||
	    m->map.cluster_id != r->map->map.cluster_id ||
	    m->extent_size != r->map->extent_size) {
		wf_tgt_log("map reload (%s): %s, keeping epoch %llu", why,
			   m->epoch < r->map->epoch ? "older epoch in the file" :
			   "cluster id or extent size changed",
			   (unsigned long long)r->map->epoch);
		wf_tgt_map_free(m);
		return -ESTALE;
	}
	/* Refused at start too (main.c): serving it, we could not reach
	 * the other targets.  Said once per epoch, whichever reactor (or
	 * reload, every 100 ms a newer epoch asks) finds it first.  A map
	 * that no longer lists us loads whatever its peer_keys: we answer
	 * NOTPRIM to everything then. */
	if (m->self >= 0 && wf_tgt_peer_keys_check(r->cfg, m, err, sizeof(err))) {
		uint64_t seen = r->t ? __atomic_exchange_n(&r->t->peer_keys_warned,
							   m->epoch, __ATOMIC_RELAXED) : 0;

		if (seen != m->epoch)
			wf_tgt_logl(WF_TGT_LOG_WARNING, "map reload (%s) refused, "
				    "keeping epoch %llu: epoch %llu: %s", why,
				    (unsigned long long)r->map->epoch,
				    (unsigned long long)m->epoch, err);
		wf_tgt_map_free(m);
		return -EACCES;
	}
	if (m->self < 0 && !peer)
		wf_tgt_log("map epoch %llu no longer lists target %u: answering "
			   "NOTPRIM to everything", (unsigned long long)m->epoch,
			   r->cfg->id);
	if (m->epoch != r->map->epoch && !peer) {
		wf_tgt_log("map epoch %llu -> %llu (%s)",
			   (unsigned long long)r->map->epoch,
			   (unsigned long long)m->epoch, why);
		if (r->idx == 0 && m->derived)
			wf_tgt_log("map epoch %llu: PG table derived from epoch %llu, "
				   "%llu of %llu PGs placed again",
				   (unsigned long long)m->epoch,
				   (unsigned long long)r->map->epoch,
				   (unsigned long long)m->derive.recomputed,
				   (unsigned long long)m->derive.scanned);
	}
	if (r->idx == 0) {
		unsigned n = wf_tgt_stray_mark(r, r->map, m);

		if (n)
			wf_tgt_log("map epoch %llu: %u PGs left this target after "
				   "their new members were brought up to date: "
				   "their copies here are dropped",
				   (unsigned long long)m->epoch, n);
	}
	wf_tgt_pglog_map(r, r->map, m);
	/* Writes to PGs whose former primary may still read under a lease
	 * we granted wait (lease.c): from the old map and the new. */
	if (m->epoch != r->map->epoch)
		wf_tgt_hold_compute(r, m);
	/* Nothing keeps pointers into the old map: requests copied what
	 * they need while being validated. */
	wf_tgt_map_free(r->map);
	r->map = m;
	/* From here no read of ours is checked in an older epoch
	 * (wf_tgt_release_tick). */
	__atomic_store_n(&r->serving, m->epoch, __ATOMIC_RELEASE);
	/* The keyring is re-read with every map: a key removed from it, or
	 * revoked in this epoch, loses its connections now. */
	if (wf_tgt_keyring_load(r, err, sizeof(err)))
		wf_tgt_logl(WF_TGT_LOG_WARNING, "keyring reload (%s) failed, "
			    "keeping the keys read before: %s", why, err);
	wf_tgt_auth_recheck(r);
	if (r->idx == 0 && r->t)
		__atomic_store_n(&r->t->epoch, m->epoch, __ATOMIC_RELAXED);
	wf_store_view_publish_epoch(r->store, m->epoch);
	if (wf_tgt_peers_rebuild(r) || wf_tgt_lease_map(r))
		wf_tgt_logl(WF_TGT_LOG_ERR, "map epoch %llu: out of memory for peer links",
			   (unsigned long long)m->epoch);
	reclaim_start(r);
	/* A pass in flight finishes its copies first (recover_step).  The
	 * epoch whose pass is done, loaded again (a RELOAD of the epoch a
	 * peer's LEASE brought first), has nothing left to copy: a second
	 * pass would resend the logged ranges and count every PG twice. */
	if (!r->rec.active && r->rec.done_epoch != m->epoch)
		wf_tgt_recover_start(r);
	return 0;
}

/* ---- reclaiming deleted volumes' extents (struct wf_tgt_reclaim) ---- */

static void reclaim_start(struct wf_tgt_reactor *r)
{
	struct wf_tgt_reclaim *rc = &r->reclaim;

	if (r->idx != 0)
		return;         /* one scan per store: reactor 0's */
	if (rc->active) {
		rc->again = true;
		return;
	}
	rc->active = true;
	rc->cursor = 0;
	rc->freed = rc->strays = rc->failed = 0;
}

static void reclaim_done(struct wf_store_req *req, int res)
{
	struct wf_tgt_reactor *r = req->user;
	struct wf_tgt_reclaim *rc = &r->reclaim;

	rc->busy[req - rc->req] = false;
	rc->inflight--;
	if (res)
		rc->failed++;
}

/* One turn of the scan: a bounded number of index entries, a few discards
 * in flight; returns true when it did something. */
static bool reclaim_step(struct wf_tgt_reactor *r)
{
	struct wf_tgt_reclaim *rc = &r->reclaim;
	const struct wf_tgt_map *m = r->map;
	uint32_t es = m->extent_size;
	unsigned looked = 0;

	if (!rc->active || r->phase != PH_RUN)
		return false;
	while (rc->inflight < WF_TGT_RECLAIM_QD && looked < WF_TGT_RECLAIM_SCAN) {
		uint64_t vol;
		uint32_t ext, slot = 0;
		int ret = wf_store_extent_at(r->store, rc->cursor, &vol, &ext), vi;
		bool stray;

		if (ret < 0)
			break;                  /* past the last extent */
		rc->cursor++;
		looked++;
		if (ret == 0)
			continue;
		/* A deleted volume's extent, or a stray copy (stray.c). */
		vi = wf_tgt_map_volume(m, vol);
		stray = vi >= 0 && r->stray.n && wf_tgt_stray_is(r, vi, ext);
		if (!stray && (vi >= 0 || vol >= m->map.next_volume_id))
			continue;
		while (rc->busy[slot])
			slot++;
		wf_store_req_init(&rc->req[slot], reclaim_done, r);
		if (wf_store_discard(r->store, &rc->req[slot], vol,
				     (uint64_t)ext * es, es)) {
			rc->failed++;
			continue;
		}
		rc->busy[slot] = true;
		rc->inflight++;
		if (stray)
			rc->strays++;
		else
			rc->freed++;
	}
	if (wf_store_extent_at(r->store, rc->cursor, &(uint64_t){0},
			       &(uint32_t){0}) < 0 && !rc->inflight) {
		if (rc->freed || rc->strays || rc->failed)
			wf_tgt_log("reclaimed %llu extents of deleted volumes and "
				   "%llu stray copies%s",
				   (unsigned long long)rc->freed,
				   (unsigned long long)rc->strays,
				   rc->failed ? " (some discards failed: the next "
				   "map load tries again)" : "");
		__atomic_store_n(&rc->dropped, rc->dropped + rc->freed + rc->strays -
				 rc->failed, __ATOMIC_RELAXED);
		__atomic_store_n(&rc->scans, rc->scans + 1, __ATOMIC_RELEASE);
		rc->active = false;
		/* Every stray seen and dropped: forget the marks (a failed
		 * discard keeps them for the next map load's scan). */
		if (!rc->failed && !rc->again)
			r->stray.n = 0;
		if (rc->again) {
			rc->again = false;
			reclaim_start(r);
		}
	}
	return looked > 0;
}

static int ep_add(struct wf_tgt_reactor *r, int fd, uint64_t tag)
{
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = tag };

	return epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &e) ? -errno : 0;
}

static void fmt_addr(char *buf, size_t len, const char *scheme,
		     const char *host, unsigned port)
{
	if (strchr(host, ':'))
		snprintf(buf, len, "%s:[%s]:%u", scheme, host, port);
	else
		snprintf(buf, len, "%s:%s:%u", scheme, host, port);
}

/* Reactor k's address: reactor 0's (with its real port) + k. */
static int addr_plus(char *buf, size_t len, const char *addr0, unsigned k)
{
	const char *c = strrchr(addr0, ':');
	unsigned long port;
	char *end;

	if (!c)
		return -EINVAL;
	port = strtoul(c + 1, &end, 10);
	if (*end || !port || port + k > 65535)
		return -ERANGE;
	snprintf(buf, len, "%.*s:%lu", (int)(c - addr0), addr0, port + k);
	return 0;
}

int wf_tgt_reactor_init(struct wf_tgt_reactor *r, struct wf_tgt *tg,
			unsigned idx, struct wf_tgt_map *map,
			struct wf_store *store, char *err, size_t errlen)
{
	const struct wf_tgt_cfg *cfg = tg->cfg;
	const struct wf_target *t = &map->map.targets[map->self];
	size_t ring_len = (size_t)cfg->slots * cfg->slot_size;
	struct wf_ep_opts eo = { .size = sizeof(eo) };
	/* Batched posts: a turn's replies and read data leave in one send
	 * per connection, at the next wf_poll (or wf_ctx_arm) of the loop. */
	struct wf_ctx_opts co = { .size = sizeof(co), .flags = WF_CTX_BATCH };
	struct iovec *iov;
	/* One ring per client connection and one for recovery's copies. */
	uint32_t nrings = cfg->max_conns + 1;
	uint64_t per_ep;
	sigset_t ss;
	int ret;

	memset(r, 0, sizeof(*r));
	r->cfg = cfg;
	r->t = tg;
	r->idx = idx;
	r->map = map;
	r->serving = map->epoch;
	r->store = store;
	wf_store_view_publish_epoch(store, map->epoch);
	r->epfd = r->sigfd = r->wake_fd = -1;
	ret = wf_tgt_keyring_load(r, err, errlen);
	if (ret)
		return ret;
	r->seen_gen = __atomic_load_n(&tg->gen, __ATOMIC_ACQUIRE);
	r->seen_reload = __atomic_load_n(&tg->reload_gen, __ATOMIC_ACQUIRE);
	r->ctl.lfd = r->ctl.dev_ro = -1;
	for (unsigned i = 0; i < WF_TGT_CTL_CLIENTS; i++)
		r->ctl.cfd[i] = -1;
	wf_store_stat(store, &r->st0);
	r->started_ns = wf_tgt_now_ns();

	/* Credits: see conn.c.  One spare endpoint's worth of completion
	 * entries lets a full target still accept and drop a connection. */
	eo.recv_depth = cfg->slots + 2;
	eo.send_depth = 2 * cfg->slots + WF_TGT_SPARE_SENDS;
	eo.msg_size = 512;
	eo.keepalive_s = cfg->keepalive_s;
	per_ep = (uint64_t)eo.recv_depth + eo.send_depth + 1;
	/* Clients, one spare, and the peer links (peer.c: one per other
	 * target of the map, with room for a few added later). */
	co.cq_depth = (uint32_t)(per_ep * (cfg->max_conns + 1 +
					   map->map.ntargets + 8) + 8);

	if (idx > 0) {
		/* The port after reactor 0's real one (also when the map or
		 * --listen said 0), so one number tells the initiator all. */
		ret = addr_plus(r->net_addr, sizeof(r->net_addr),
				tg->r[0]->net_addr, idx);
		if (ret) {
			snprintf(err, errlen, "reactor %u: no port after %s", idx,
				 tg->r[0]->net_addr);
			return ret;
		}
		snprintf(r->unix_addr, sizeof(r->unix_addr),
			 "unix:%s/target-%u.sock.%u", cfg->run_dir, cfg->id, idx);
	} else {
		if (cfg->listen_override)
			snprintf(r->net_addr, sizeof(r->net_addr), "%s",
				 cfg->listen_override);
		else
			fmt_addr(r->net_addr, sizeof(r->net_addr),
				 cfg->backend == WF_BACKEND_VERBS ? "rdma" : "tcp",
				 t->addr, t->port);
		snprintf(r->unix_addr, sizeof(r->unix_addr),
			 "unix:%s/target-%u.sock", cfg->run_dir, cfg->id);
	}

	r->nfab = cfg->backend == WF_BACKEND_VERBS ? 2 : 1;
	for (unsigned f = 0; f < r->nfab; f++) {
		co.backend = f == 0 ? cfg->backend : WF_BACKEND_TCP;
		ret = wf_ctx_create(&co, &r->fab[f].ctx);
		if (ret) {
			snprintf(err, errlen, "fabric context (%s): %s",
				 co.backend == WF_BACKEND_VERBS ? "verbs" : "tcp",
				 strerror(-ret));
			goto fail;
		}
		r->fab[f].mrs = calloc(nrings, sizeof(*r->fab[f].mrs));
		if (!r->fab[f].mrs) {
			ret = -ENOMEM;
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}

	/* The rings: one mapping, one ring per connection, each registered
	 * with the fabric (its own region, so a peer's rkey covers only its
	 * ring) and with the store's io_uring (buffer index = ring index). */
	r->slab_len = ring_len * nrings;
	r->slab = mmap(NULL, r->slab_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (r->slab == MAP_FAILED) {
		r->slab = NULL;
		ret = -errno;
		snprintf(err, errlen, "slot memory (%zu bytes): %s", r->slab_len,
			 strerror(-ret));
		goto fail;
	}
	iov = calloc(nrings, sizeof(*iov));
	r->conns = calloc(nrings, sizeof(*r->conns));
	r->reqs = calloc((size_t)nrings * cfg->slots, sizeof(*r->reqs));
	r->keyuse = calloc(cfg->max_conns, sizeof(*r->keyuse));
	if (!iov || !r->conns || !r->reqs || !r->keyuse) {
		free(iov);
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (uint32_t i = nrings; i-- > 0;) {
		struct wf_tgt_conn *c = &r->conns[i];

		c->kind = WF_TGT_EP_CONN;
		c->r = r;
		c->idx = i;
		c->ring = r->slab + ring_len * i;
		c->reqs = &r->reqs[(size_t)i * cfg->slots];
		for (uint32_t s = 0; s < cfg->slots; s++)
			c->reqs[s].conn = c;
		if (i < cfg->max_conns) {
			c->next_free = r->free_conns;
			r->free_conns = c;
		} else {
			/* The recovery ring: never a client's (recover.c). */
			c->recovery = true;
			c->state = CONN_LIVE;
			c->lim.slot_count = cfg->slots;
			c->lim.slot_size = cfg->slot_size;
			r->rconn = c;
		}
		iov[i].iov_base = c->ring;
		iov[i].iov_len = ring_len;
		for (unsigned f = 0; f < r->nfab; f++) {
			/* Peers write payloads into slots; nobody reads them
			 * remotely (READ data is pushed with wf_write). */
			ret = wf_mr_reg(r->fab[f].ctx, c->ring, ring_len,
					WF_ACCESS_REMOTE_WRITE, &r->fab[f].mrs[i]);
			if (ret) {
				free(iov);
				snprintf(err, errlen, "registering ring %u: %s", i,
					 strerror(-ret));
				goto fail;
			}
		}
	}
	ret = wf_store_register_buffers(store, iov, nrings);
	free(iov);
	if (ret) {
		snprintf(err, errlen, "registering %u rings with io_uring: %s "
			 "(RLIMIT_MEMLOCK? see docs/target.md)", nrings,
			 strerror(-ret));
		goto fail;
	}

	/* Signals: a signalfd of reactor 0, so they arrive as events of its
	 * loop.  Blocked before the other reactors' threads exist, so they
	 * inherit the mask and no signal interrupts them. */
	if (idx == 0) {
		sigemptyset(&ss);
		sigaddset(&ss, SIGTERM);
		sigaddset(&ss, SIGINT);
		sigaddset(&ss, SIGHUP);
		if (sigprocmask(SIG_BLOCK, &ss, NULL)) {
			ret = -errno;
			snprintf(err, errlen, "sigprocmask: %s", strerror(-ret));
			goto fail;
		}
		signal(SIGPIPE, SIG_IGN);
		r->sigfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
		if (r->sigfd < 0) {
			ret = -errno;
			snprintf(err, errlen, "signalfd: %s", strerror(-ret));
			goto fail;
		}
	}
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->wake_fd < 0 || r->epfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "event fds: %s", strerror(-ret));
		goto fail;
	}
	ret = r->sigfd >= 0 ? ep_add(r, r->sigfd, WF_TGT_EV_SIGNAL) : 0;
	if (!ret)
		ret = ep_add(r, r->wake_fd, WF_TGT_EV_WAKE);
	if (ret) {
		snprintf(err, errlen, "epoll: %s", strerror(-ret));
		goto fail;
	}
	/* The loop sleeps in the store's ring (wf_store_wait): device
	 * completions wake it directly, the fabric fds and the epoll set of
	 * everything else through polls in that ring. */
	for (unsigned f = 0; f < r->nfab; f++) {
		ret = r->fab[f].watch = wf_store_watch(store,
						       wf_ctx_fd(r->fab[f].ctx));
		if (ret < 0)
			break;
	}
	if (ret >= 0)
		ret = r->ev_watch = wf_store_watch(store, r->epfd);
	if (ret < 0) {
		snprintf(err, errlen, "store watch: %s", strerror(-ret));
		goto fail;
	}

	ret = wf_listen(r->fab[0].ctx, r->net_addr, &eo, &r->fab[0].lst[0]);
	if (ret) {
		snprintf(err, errlen, "listening on %s: %s", r->net_addr,
			 strerror(-ret));
		goto fail;
	}
	r->fab[0].nlst = 1;
	/* Reactor 0 probes the control socket before anyone unlinks a
	 * socket path: the others come after it. */
	ret = idx == 0 ? wf_tgt_ctl_probe(r) : 0;
	if (ret) {
		snprintf(err, errlen, "another weft-target answers on %s/target-%u.ctl",
			 cfg->run_dir, cfg->id);
		goto fail;
	}
	unlink(r->unix_addr + 5);       /* a previous incarnation's */
	{
		struct wf_tgt_fab *uf = &r->fab[r->nfab - 1];

		ret = wf_listen(uf->ctx, r->unix_addr, &eo, &uf->lst[uf->nlst]);
		if (!ret) {
			uf->nlst++;
			ret = wf_tgt_sock_mode(cfg, r->unix_addr + 5);
		}
		if (ret) {
			snprintf(err, errlen, "listening on %s: %s", r->unix_addr,
				 strerror(-ret));
			goto fail;
		}
	}
	ret = idx == 0 ? wf_tgt_ctl_open(r) : 0;
	if (ret) {
		snprintf(err, errlen, "control socket %s: %s", r->ctl.path,
			 strerror(-ret));
		goto fail;
	}
	/* The real port, when the map (or --listen) said 0. */
	wf_listener_addr(r->fab[0].lst[0], r->net_addr, sizeof(r->net_addr));
	ret = wf_tgt_peers_rebuild(r);
	if (!ret)
		ret = wf_tgt_lease_map(r);
	if (ret) {
		snprintf(err, errlen, "peer links: %s", strerror(-ret));
		goto fail;
	}
	wf_tgt_hold_restart(r);
	reclaim_start(r);
	wf_tgt_pglog_map(r, NULL, map);
	wf_tgt_recover_start(r);
	return 0;

fail:
	wf_tgt_reactor_fini(r);
	return ret;
}

static void stop_listening(struct wf_tgt_reactor *r)
{
	for (unsigned f = 0; f < r->nfab; f++) {
		for (unsigned i = 0; i < r->fab[f].nlst; i++)
			wf_listener_destroy(r->fab[f].lst[i]);
		r->fab[f].nlst = 0;
	}
}

void wf_tgt_reactor_fini(struct wf_tgt_reactor *r)
{
	wf_keyring_free(&r->keyring);
	wf_tgt_stray_fini(r);
	wf_tgt_pglog_fini(r);
	wf_tgt_recover_fini(r);
	wf_tgt_ctl_close(r);
	stop_listening(r);
	if (r->conns)
		for (uint32_t i = 0; i < r->cfg->max_conns; i++)
			if (r->conns[i].ep) {
				wf_ep_destroy(r->conns[i].ep);
				r->conns[i].ep = NULL;
			}
	wf_tgt_peers_fini(r);
	wf_tgt_lease_fini(r);
	/* The store may still hold fixed-buffer I/O on the rings. */
	if (r->store && r->slab) {
		while (wf_store_inflight(r->store))
			if (wf_store_submit_and_wait(r->store) < 0 ||
			    wf_store_poll(r->store, STORE_BATCH) < 0)
				break;
		wf_store_unregister_buffers(r->store);
	}
	for (unsigned f = 0; f < 2; f++) {
		if (r->fab[f].mrs) {
			for (uint32_t i = 0; i < r->cfg->max_conns + 1; i++)
				if (r->fab[f].mrs[i])
					wf_mr_dereg(r->fab[f].mrs[i]);
			free(r->fab[f].mrs);
			r->fab[f].mrs = NULL;
		}
		if (r->fab[f].ctx)
			wf_ctx_destroy(r->fab[f].ctx);
		r->fab[f].ctx = NULL;
	}
	if (r->slab)
		munmap(r->slab, r->slab_len);
	r->slab = NULL;
	free(r->conns);
	free(r->reqs);
	free(r->keyuse);
	r->conns = NULL;
	r->reqs = NULL;
	r->keyuse = NULL;
	if (r->epfd >= 0)
		close(r->epfd);
	if (r->sigfd >= 0)
		close(r->sigfd);
	if (r->wake_fd >= 0)
		close(r->wake_fd);
	r->epfd = r->sigfd = r->wake_fd = -1;
}

static void begin_stop(struct wf_tgt_reactor *r, const char *why)
{
	if (r->phase != PH_RUN)
		return;
	if (r->t->n > 1)
		wf_tgt_log("%s: reactor %u draining %u requests in flight on %u "
			   "connections", why, r->idx, r->store_inflight, r->nconns);
	else
		wf_tgt_log("%s: draining %u requests in flight on %u connections",
			   why, r->store_inflight, r->nconns);
	stop_listening(r);
	r->phase = PH_DRAIN_IO;
	r->phase_deadline = wf_tgt_now_ns() + DRAIN_IO_MS * 1000000ull;
}

/* A daemon logs to RUN_DIR/target-ID.log: reopen it on SIGHUP, so log
 * rotation works (rename, then SIGHUP). */
static void reopen_log(struct wf_tgt_reactor *r)
{
	char path[PATH_MAX];
	int fd;

	if (r->cfg->foreground)
		return;
	snprintf(path, sizeof(path), "%s/target-%u.log", r->cfg->run_dir,
		 r->cfg->id);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0)
		return;
	dup2(fd, 2);
	close(fd);
}

static void on_signal(struct wf_tgt_reactor *r)
{
	struct signalfd_siginfo si;

	while (read(r->sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			reopen_log(r);
			wf_tgt_reload_all(r, "SIGHUP");
		}
		else
			wf_tgt_stop_all(r->t, (int)si.ssi_signo);
	}
}

/* t->gen moved: another reactor asked us to stop or to reload. */
static void on_peer(struct wf_tgt_reactor *r)
{
	uint32_t rg;
	int sig;

	r->seen_gen = __atomic_load_n(&r->t->gen, __ATOMIC_ACQUIRE);
	sig = __atomic_load_n(&r->t->stop, __ATOMIC_ACQUIRE);
	if (sig)
		begin_stop(r, sig == SIGINT ? "SIGINT" : "SIGTERM");
	rg = __atomic_load_n(&r->t->reload_gen, __ATOMIC_ACQUIRE);
	if (rg != r->seen_reload) {
		r->seen_reload = rg;
		reload_local(r, "another reactor reloaded", true);
	}
	wf_tgt_scrub_poll(r);
}

static void handle_cqes(struct wf_tgt_reactor *r, unsigned f,
			const struct wf_cqe *cq, int n)
{
	for (int i = 0; i < n; i++) {
		const uint8_t *kind = cq[i].ep ? wf_ep_user(cq[i].ep) : NULL;

		if (cq[i].op == WF_CQE_ACCEPT)
			wf_tgt_conn_accept(r, f, cq[i].listener);
		else if (kind && *kind == WF_TGT_EP_PEER)
			wf_tgt_peer_cqe(r, (struct wf_tgt_peer *)(void *)kind,
					&cq[i]);
		else
			wf_tgt_conn_cqe(r, &cq[i]);
	}
}

/*
 * wf_poll on fabric f.  The store ring holds a poll of each fabric fd (a
 * watch, armed at each sleep and at each submit that enters the kernel):
 * while it is pending nothing on that fabric's sockets is new, and the
 * poll need not ask the kernel (with the tcp backend, an epoll_wait or a
 * recv per connection saved on every turn that a device completion alone
 * started).  The turn that reaps the watch's completion polls in full.
 * Before a sleep (before_sleep) the poll is quiet either way: the sleep
 * arms the watch, which looks at the fd's state, so anything that raced in
 * ends the sleep at once.
 */
static int fab_poll(struct wf_tgt_reactor *r, unsigned f, struct wf_cqe *cq,
		    bool before_sleep)
{
	if (before_sleep || wf_store_watch_pending(r->store, r->fab[f].watch))
		wf_ctx_quiet(r->fab[f].ctx);
	return wf_poll(r->fab[f].ctx, cq, CQE_BATCH);
}

/* One pass over the epoll set: signals, control socket, wakeups.
 * timeout_ms 0 while busy. */
static void events(struct wf_tgt_reactor *r, int timeout_ms)
{
	struct epoll_event ev[16];
	uint64_t v;
	int n;

	n = epoll_wait(r->epfd, ev, 16, timeout_ms);
	for (int i = 0; i < n; i++) {
		uint64_t tag = ev[i].data.u64;

		if (tag == WF_TGT_EV_SIGNAL)
			on_signal(r);
		else if (tag == WF_TGT_EV_WAKE)
			while (read(r->wake_fd, &v, sizeof(v)) == sizeof(v))
				;
		else if (tag >= WF_TGT_EV_CTL)
			wf_tgt_ctl_event(r, tag);
		/* fabric fds: wf_poll in the next turn does the work */
	}
}

/* Moves the shutdown along; returns true when the loop may end. */
static bool stop_step(struct wf_tgt_reactor *r)
{
	uint64_t now = wf_tgt_now_ns();
	bool busy = false;

	switch (r->phase) {
	case PH_DRAIN_IO:
		if ((r->store_inflight || r->pend_head) && now < r->phase_deadline)
			return false;
		if (r->store_inflight)
			wf_tgt_logl(WF_TGT_LOG_WARNING, "drain: %u store requests still in flight after "
				   "%u ms", r->store_inflight, DRAIN_IO_MS);
		if (!r->io_drained) {
			r->io_drained = true;
			__atomic_sub_fetch(&r->t->draining, 1, __ATOMIC_ACQ_REL);
		}
		r->phase = PH_DRAIN_SEND;
		r->phase_deadline = now + DRAIN_SEND_MS * 1000000ull;
		return false;
	case PH_DRAIN_SEND:
		for (uint32_t i = 0; i < r->cfg->max_conns; i++)
			if (r->conns[i].state == CONN_LIVE && r->conns[i].sends_out)
				busy = true;
		/* A peer still sending gets BUSY answers until it pauses. */
		if (now - r->drain_rx_ns < DRAIN_QUIET_MS * 1000000ull)
			busy = true;
		if (busy && now < r->phase_deadline)
			return false;
		for (uint32_t i = 0; i < r->cfg->max_conns; i++)
			wf_tgt_conn_close(&r->conns[i], NULL);
		r->phase = PH_CLOSE;
		r->phase_deadline = now + CLOSE_MS * 1000000ull;
		return false;
	case PH_CLOSE:
		if (r->nconns && now < r->phase_deadline)
			return false;
		/* Our store queue may still run other reactors' requests (on
		 * extents it owns): stay until every reactor has drained. */
		if (__atomic_load_n(&r->t->draining, __ATOMIC_ACQUIRE) &&
		    now < r->phase_deadline + DRAIN_IO_MS * 1000000ull)
			return false;
		r->phase = PH_DONE;
		return true;
	default:
		return r->phase == PH_DONE;
	}
}

int wf_tgt_reactor_run(struct wf_tgt_reactor *r)
{
	struct wf_cqe cq[CQE_BATCH];
	uint64_t idle_since = wf_tgt_now_ns();
	uint64_t spin_ns = (uint64_t)r->cfg->poll_us * 1000;
	unsigned turn = 0, empty = 0;

	for (;;) {
		unsigned work = 0;
		int n;

		/* Store completions first: the replies they post leave with
		 * the flush that starts each wf_poll just below, in this
		 * turn rather than the next. */
		n = wf_store_poll(r->store, STORE_BATCH);
		if (n > 0)
			work += (unsigned)n;
		for (unsigned f = 0; f < r->nfab; f++) {
			n = fab_poll(r, f, cq, false);
			if (n > 0) {
				handle_cqes(r, f, cq, n);
				work += (unsigned)n;
			}
		}
		/* A peer told of a newer map (peer.c): reload now, outside
		 * its completion (gated like request-driven reloads). */
		if (r->reload_wanted) {
			uint64_t now = wf_tgt_now_ns();

			if (now - r->last_reload > 100000000ull) {
				r->reload_wanted = false;
				r->last_reload = now;
				wf_tgt_reload(r, "a peer has a newer map");
			}
		}
		if (r->peers_gone)
			wf_tgt_peers_reap(r);
		/* Signals, control sockets, wakeups from other reactors: after
		 * the requests that arrived with them were read. */
		if (wf_store_woken(r->store) & (1u << r->ev_watch))
			events(r, 0);
		if (r->pend_head)
			work += wf_tgt_conn_run_pending(r);
		/* After the store completions: they may have drained the
		 * old connection a held HELLO waits for. */
		if (r->nheld)
			wf_tgt_conn_run_held(r);
		/* Writes held for a lease granted to a former primary. */
		if (r->hold_head)
			work += wf_tgt_hold_run(r, wf_tgt_now_ns(), NULL);
		/* A former primary gave back leases we hold writes for. */
		if (r->nholds && __atomic_load_n(&r->t->release_gen, __ATOMIC_RELAXED) !=
		    r->seen_release)
			wf_tgt_hold_released(r);
		/* Reactor 0: leases of older epochs to give back. */
		if (r->rel_need)
			wf_tgt_release_tick(r, wf_tgt_now_ns());
		/* A read found no lease: ask the members now (reactor 0). */
		if (r->lease_need &&
		    __atomic_load_n(&r->t->lease_urgent, __ATOMIC_RELAXED)) {
			__atomic_store_n(&r->t->lease_urgent, 0, __ATOMIC_RELAXED);
			wf_tgt_lease_tick(r, wf_tgt_now_ns(), true);
		}
		if (r->reclaim.active && reclaim_step(r))
			work++;
		if (r->rec.active && wf_tgt_recover_step(r))
			work++;
		else if (r->scrub.active && wf_tgt_scrub_step(r))
			work++;
		wf_store_submit(r->store);

		if (__atomic_load_n(&r->t->gen, __ATOMIC_RELAXED) != r->seen_gen)
			on_peer(r);
		if (r->phase != PH_RUN && stop_step(r))
			break;
		if (++turn % CTL_EVERY == 0) {
			events(r, 0);
			wf_tgt_conn_sweep(r, wf_tgt_now_ns());
			if (r->peers)
				wf_tgt_peer_sweep(r, wf_tgt_now_ns());
			if (r->lease_need)
				wf_tgt_lease_tick(r, wf_tgt_now_ns(), false);
		}
		if (work) {
			idle_since = 0;
			empty = 0;
			continue;
		}
		/* Spinning: the clock only every few empty turns, it is most
		 * of what an empty turn costs.  Not spinning: sleep at the
		 * first empty turn (with the tcp backend an empty turn costs
		 * a recv() per connection). */
		if (spin_ns) {
			if (++empty % 8)
				continue;
			if (!idle_since) {
				idle_since = wf_tgt_now_ns();
				continue;
			}
			if (wf_tgt_now_ns() - idle_since < spin_ns)
				continue;
		}
		/* Sleep: arm every ctx, look once more (events may have
		 * raced in before arming), then wait. */
		{
			bool armed = true;
			unsigned w;

			for (unsigned f = 0; f < r->nfab; f++)
				if (wf_ctx_arm(r->fab[f].ctx))
					armed = false;
			for (unsigned f = 0; armed && f < r->nfab; f++) {
				n = fab_poll(r, f, cq, true);
				if (n > 0) {
					handle_cqes(r, f, cq, n);
					armed = false;
				}
			}
			if (!armed || wf_store_poll(r->store, STORE_BATCH) > 0) {
				idle_since = 0;
				continue;
			}
			/* A watch that fired meanwhile (its completion was
			 * reaped just now): its fd may have work that will
			 * not wake us again. */
			w = wf_store_woken(r->store);
			if (w) {
				if (w & (1u << r->ev_watch))
					events(r, 0);
				idle_since = 0;
				continue;
			}
			/* Timed while stopping (the phases have deadlines),
			 * while a connection owes its HELLO, while links owe
			 * a GRANT or replies, and while connections are open
			 * (their idleness is looked at once a second). */
			/* Held writes are looked at every few ms, and
			 * reactor 0 asks for leases every quarter lease. */
			{
				int ms = r->phase != PH_RUN ? 50 :
					 r->hold_head || r->rel_need ? 5 :
					 r->rec.active || r->scrub.active ||
					 r->reload_wanted ? 100 :
					 r->nhello || wf_tgt_peers_busy(r) ||
					 r->nconns ? 1000 : -1;
				int lm = (int)(r->lease_ms / 4);

				if (r->lease_need && lm > 0 && (ms < 0 || lm < ms))
					ms = lm;
				wf_store_wait(r->store, ms);
			}
			wf_tgt_conn_sweep(r, wf_tgt_now_ns());
			if (r->peers)
				wf_tgt_peer_sweep(r, wf_tgt_now_ns());
			if (r->lease_need)
				wf_tgt_lease_tick(r, wf_tgt_now_ns(), false);
			idle_since = 0;
		}
	}
	{
		char who[32] = "";

		char more[64] = "";
		struct wf_store_stat st;

		if (r->t->n > 1) {
			snprintf(who, sizeof(who), "reactor %u ", r->idx);
			/* Requests for extents another reactor owns: few when
			 * initiators route by wf_extent_reactor. */
			wf_store_stat(r->store, &st);
			snprintf(more, sizeof(more), ", %llu handed to their "
				 "owner reactor", (unsigned long long)st.handed_over);
		}
		wf_tgt_log("%sstopped: %llu reads, %llu writes, %llu errors, "
			   "%llu invalid requests, %llu connections closed for "
			   "garbage%s", who,
		   (unsigned long long)r->stats.reads,
		   (unsigned long long)r->stats.writes,
		   (unsigned long long)r->stats.errors,
		   (unsigned long long)r->stats.invalid,
		   (unsigned long long)r->stats.closed_bad, more);
	}
	return 0;
}

void wf_tgt_quiesce(struct wf_tgt *t, unsigned ms)
{
	uint64_t end = wf_tgt_now_ns() + (uint64_t)ms * 1000000ull;
	struct timespec ts = { 0, 1000000 };

	/* A request may wait on another queue's ring (its owner's, or the
	 * ring that writes its index block): turn all of them. */
	for (;;) {
		bool busy = false;

		for (unsigned i = 0; i < t->n; i++) {
			struct wf_tgt_reactor *r = t->r[i];

			if (!r || !r->store || !wf_store_inflight(r->store))
				continue;
			busy = true;
			wf_store_submit(r->store);
			wf_store_poll(r->store, STORE_BATCH);
		}
		if (!busy || wf_tgt_now_ns() > end)
			return;
		nanosleep(&ts, NULL);
	}
}
