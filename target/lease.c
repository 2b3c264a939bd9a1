/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Read leases (docs/replication.md, "Read leases").  A primary answers a
 * read only while every other acting member of the PG has confirmed, within
 * the lease length L, that it serves the same epoch; a member that loads an
 * epoch in which the asker no longer leads a PG holds writes to that PG
 * until the lease it granted has lapsed.  So a primary that missed an epoch
 * (frozen, cut off) stops serving reads before any newer write can be
 * acknowledged without it.
 *
 *   asker (reactor 0, every L/4, and at once when a read found no lease):
 *     WF_OP_LEASE(epoch, L) on its link to each member of the PGs it leads;
 *     an OK answer makes the lease valid until (time the ask was SENT) + L,
 *     for that epoch; a STALE answer (the member is newer) starts pulling
 *     the member's map (WF_OP_MAP_GET, chunk by chunk).
 *   member (the connection the ask came on): OK when its epoch equals the
 *     asker's, recording (epoch, now, L) for the asker; STALE when newer;
 *     BUSY when older (it tries to load the newer map first) or stopping.
 *   member, at each map load (every reactor, wf_tgt_hold_compute): for
 *     each PG whose primary in the old epoch was an asker granted a lease
 *     in that epoch, and is another target in the new one, writes wait
 *     until grant + L + margin (RQ_HELD, conn.c).
 *
 * Clocks are CLOCK_MONOTONIC (a stopped process's clock runs on).  The
 * asker measures from before its ask left, the member from after it
 * arrived, so the member's hold always ends after the asker's lease.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "placement/map.h"
#include "proto/ctl.h"
#include "proto/file.h"
#include "target/leasefile.h"
#include "target/target.h"

static uint64_t lease_ns(const struct wf_tgt_reactor *r)
{
	return (uint64_t)r->lease_ms * 1000000ull;
}

/* The lease slot of target id in t->leases, claimed if new (a CAS: any
 * reactor may claim, none ever frees); UINT32_MAX when the table is full. */
static uint32_t lease_slot(struct wf_tgt *t, uint32_t id)
{
	uint32_t h = (id * 2654435761u) % WF_TGT_LEASES;

	for (uint32_t i = 0; i < WF_TGT_LEASES; i++) {
		struct wf_tgt_lease *e = &t->leases[(h + i) % WF_TGT_LEASES];
		uint32_t cur = __atomic_load_n(&e->id1, __ATOMIC_ACQUIRE);

		if (cur == id + 1)
			return (h + i) % WF_TGT_LEASES;
		if (cur)
			continue;
		if (__atomic_compare_exchange_n(&e->id1, &cur, id + 1, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) ||
		    cur == id + 1)
			return (h + i) % WF_TGT_LEASES;
	}
	return UINT32_MAX;
}

/*
 * Reactor 0: tell short-circuit readers (the store's view) until when the
 * leases of every member we ask hold for our epoch: the earliest of them
 * (one lapsed, none: 0); UINT64_MAX when we need none.  Coarser than the
 * per-PG check of network reads: a member out of reach sends every local
 * reader through the network.
 */
static void lease_publish(struct wf_tgt_reactor *r)
{
	uint64_t until = UINT64_MAX;

	if (r->idx != 0 || !r->t || !r->store)
		return;
	for (struct wf_tgt_peer *p = r->peers; p && r->lease_ms; p = p->next) {
		uint32_t k;
		const struct wf_tgt_lease *e;
		uint64_t u;

		if (!p->lease_need || p->gone)
			continue;
		k = lease_slot(r->t, p->target_id);
		if (k == UINT32_MAX) {
			until = 0;
			break;
		}
		e = &r->t->leases[k];
		u = __atomic_load_n(&e->epoch, __ATOMIC_ACQUIRE) == r->map->epoch ?
		    __atomic_load_n(&e->until, __ATOMIC_RELAXED) : 0;
		if (u < until)
			until = u;
	}
	wf_store_view_publish_lease(r->store, r->map->epoch, until);
}

/* The lease length for r->map: --read-lease-ms, else the map's, else the
 * default; with etcd at most half the registration's TTL (main.c). */
static uint32_t lease_len(const struct wf_tgt_reactor *r)
{
	const struct wf_tgt_cfg *cfg = r->cfg;
	uint32_t ms = cfg->read_lease_set || !r->map->map.read_lease_set ?
		      cfg->read_lease_ms : r->map->map.read_lease_ms;

	if (cfg->fault_no_lease)
		return 0;       /* a build before leases */

	if (cfg->etcd_url && ms > cfg->etcd_ttl * 500u)
		ms = cfg->etcd_ttl * 500u;
	return ms > WF_TGT_MAX_LEASE_MS ? WF_TGT_MAX_LEASE_MS : ms;
}

/*
 * Reactor 0, at a map load: the members that granted us a lease for an
 * older epoch still running are told we give it back (wf_tgt_release_tick)
 * once no read can use it any more, so that the writes they hold for it
 * (we lead a PG no longer) start at once instead of when it lapses.  Told
 * after any epoch change: a member that holds nothing for it ignores it.
 * Worth trying only while its hold may run: L + margin from now.
 */
static void release_plan(struct wf_tgt_reactor *r)
{
	uint64_t now = wf_tgt_now_ns(), len = WF_TGT_MAX_LEASE_MS * 1000000ull;

	r->rel_need = 0;
	for (struct wf_tgt_peer *p = r->peers; p; p = p->next) {
		const struct wf_tgt_lease *e;
		uint32_t k;
		uint64_t ep, until;

		if (p->gone || (k = lease_slot(r->t, p->target_id)) == UINT32_MAX) {
			p->rel_epoch = 0;
			continue;
		}
		e = &r->t->leases[k];
		ep = __atomic_load_n(&e->epoch, __ATOMIC_ACQUIRE);
		until = __atomic_load_n(&e->until, __ATOMIC_RELAXED);
		if (ep && ep < r->map->epoch && until != UINT64_MAX &&
		    until + len / 16 + 10000000ull > now) {
			p->rel_epoch = r->map->epoch;
			p->rel_until = until + len + WF_TGT_LEASE_MARGIN(len);
		}
		if (p->rel_epoch)
			r->rel_need++;
	}
}

int wf_tgt_lease_map(struct wf_tgt_reactor *r)
{
	const struct wf_tgt_map *m = r->map;
	uint32_t n = m->map.ntargets;
	uint32_t *of = calloc(n ? n : 1, sizeof(*of));
	bool *need;

	if (!of)
		return -ENOMEM;
	r->lease_ms = lease_len(r);
	for (uint32_t i = 0; i < n; i++)
		of[i] = r->t && (int32_t)i != m->self ?
			lease_slot(r->t, m->map.targets[i].id) : UINT32_MAX;
	free(r->lease_of);
	r->lease_of = of;
	r->nlease_of = n;
	if (r->idx != 0 || !r->t)
		return 0;
	/* Reactor 0 asks the other acting members of every PG we lead. */
	need = calloc(n ? n : 1, sizeof(*need));
	if (!need)
		return -ENOMEM;
	for (uint32_t p = 0; m->self >= 0 && p < m->table.npools; p++) {
		const struct wf_pg_pool_table *pt = &m->table.pools[p];

		for (uint32_t pg = 0; pg < pt->pg_num; pg++) {
			const uint32_t *act;
			unsigned k = wf_pg_acting(&m->table, p, pg, &act);

			if (k < 2 || act[0] != (uint32_t)m->self)
				continue;
			for (unsigned j = 1; j < k; j++)
				if (act[j] < n)
					need[act[j]] = true;
		}
	}
	r->lease_need = 0;
	for (struct wf_tgt_peer *p = r->peers; p; p = p->next)
		p->lease_need = false;
	release_plan(r);
	for (uint32_t i = 0; i < n && i < r->npeer_of; i++) {
		struct wf_tgt_peer *p = r->peer_of[i];

		if (!p || !need[i] || !r->lease_ms)
			continue;
		p->lease_need = true;
		r->lease_need++;
	}
	free(need);
	/* A new epoch (or a start) needs new confirmations: asked on the
	 * loop's next turn (reactor.c), not from under a map load. */
	r->lease_next = 0;
	if (r->lease_need)
		__atomic_store_n(&r->t->lease_urgent, 1, __ATOMIC_RELAXED);
	lease_publish(r);
	return 0;
}

void wf_tgt_lease_fini(struct wf_tgt_reactor *r)
{
	free(r->lease_of);
	r->lease_of = NULL;
	r->nlease_of = 0;
	for (uint32_t i = 0; i < r->nholds; i++) {
		free(r->holds[i].until);
		free(r->holds[i].by);
	}
	free(r->holds);
	r->holds = NULL;
	r->nholds = 0;
}

/* ---- the member's side: holds at a map load ------------------------- */

static const struct wf_tgt_hold *hold_find(const struct wf_tgt_hold *h, uint32_t n,
					   uint32_t pool_id)
{
	for (uint32_t i = 0; i < n; i++)
		if (h[i].pool_id == pool_id)
			return &h[i];
	return NULL;
}

/* Until when the leases we granted target id in epoch `epoch` bind us;
 * *rel: it gave them back already (a release of a later epoch), so they
 * bind us no more. */
static uint64_t granted_until(struct wf_tgt *t, uint32_t id, uint64_t epoch,
			      bool *rel)
{
	uint32_t k = lease_slot(t, id);
	uint64_t u = 0;

	*rel = false;
	if (k == UINT32_MAX)
		return 0;
	*rel = __atomic_load_n(&t->leases[k].rel_epoch, __ATOMIC_ACQUIRE) > epoch;
	for (int i = 0; i < 2; i++) {
		const struct wf_tgt_lease *e = &t->leases[k];
		uint64_t ge = __atomic_load_n(&e->g_epoch[i], __ATOMIC_ACQUIRE);
		uint64_t g = __atomic_load_n(&e->g_ns[i], __ATOMIC_RELAXED);
		uint64_t len = __atomic_load_n(&e->g_len[i], __ATOMIC_RELAXED);

		if (ge == epoch && g && g + len + WF_TGT_LEASE_MARGIN(len) > u)
			u = g + len + WF_TGT_LEASE_MARGIN(len);
	}
	return u;
}

/* Whether the grant a PG's hold is for was given back (a release of a
 * later epoch from its asker). */
static bool hold_given_back(struct wf_tgt *t, const struct wf_tgt_hold_by *b)
{
	uint32_t k;

	return b->id1 && b->id1 != WF_TGT_HOLD_ANY &&
	       (k = lease_slot(t, b->id1 - 1)) != UINT32_MAX &&
	       __atomic_load_n(&t->leases[k].rel_epoch, __ATOMIC_ACQUIRE) > b->epoch;
}

/* PG pg of h held until u for the lease granted target id in epoch ep:
 * the later of that and what it held; a hold for two askers, or two
 * grants, is ended by no release. */
static void hold_note(struct wf_tgt_hold *h, uint32_t pg, uint64_t u, uint64_t now,
		      uint32_t id, uint64_t ep)
{
	struct wf_tgt_hold_by *b = h->by ? &h->by[pg] : NULL;

	if (b && (h->until[pg] <= now || !b->id1))
		*b = (struct wf_tgt_hold_by){ .id1 = id + 1, .epoch = ep };
	else if (b && (b->id1 != id + 1 || b->epoch != ep))
		b->id1 = WF_TGT_HOLD_ANY;
	if (u > h->until[pg])
		h->until[pg] = u;
}

void wf_tgt_hold_compute(struct wf_tgt_reactor *r, const struct wf_tgt_map *nw)
{
	const struct wf_tgt_map *old = r->map;
	uint32_t np = nw->table.npools, nt = old->map.ntargets;
	struct wf_tgt_hold *h = calloc(np ? np : 1, sizeof(*h));
	uint64_t *gu = calloc(nt ? nt : 1, sizeof(*gu));
	bool *rel = calloc(nt ? nt : 1, sizeof(*rel));
	uint64_t spared = 0;
	uint64_t now, max = 0;
	bool any = false, short_mem = false;

	if (r->t) {
		/* Before any rel_epoch is read (granted_until): a release
		 * that comes after is seen by wf_tgt_hold_released. */
		r->seen_release = __atomic_load_n(&r->t->release_gen, __ATOMIC_ACQUIRE);
		/* Published before the grants are read: a grant made after
		 * this (reactor 0 still on the old epoch) sees it and is
		 * answered BUSY instead (wf_tgt_lease_ask), so no lease of
		 * the old epoch escapes this computation. */
		uint64_t cur = __atomic_load_n(&r->t->newest_epoch, __ATOMIC_SEQ_CST);

		while (cur < nw->epoch &&
		       !__atomic_compare_exchange_n(&r->t->newest_epoch, &cur, nw->epoch,
						    false, __ATOMIC_SEQ_CST,
						    __ATOMIC_SEQ_CST))
			;
	}
	now = wf_tgt_now_ns();
	if (!h || !gu || !rel) {
		/* No memory for the table: hold every write for the longest
		 * lease any target may hold (WF_TGT_MAX_LEASE_MS). */
		uint64_t len = WF_TGT_MAX_LEASE_MS * 1000000ull;

		free(h);
		free(gu);
		free(rel);
		for (uint32_t i = 0; i < r->nholds; i++)
			for (uint32_t pg = 0; pg < r->holds[i].pg_num; pg++)
				r->holds[i].until[pg] = now + len + WF_TGT_LEASE_MARGIN(len);
		r->hold_max = now + len + WF_TGT_LEASE_MARGIN(len);
		return;
	}
	for (uint32_t i = 0; r->t && i < nt; i++) {
		if ((int32_t)i == old->self)
			continue;
		gu[i] = granted_until(r->t, old->map.targets[i].id, old->epoch, &rel[i]);
		any |= gu[i] > now;
	}
	for (uint32_t p = 0; p < np; p++) {
		const struct wf_pg_pool_table *npt = &nw->table.pools[p];
		uint32_t pid = nw->map.pools[p].id;
		const struct wf_tgt_hold *oh = hold_find(r->holds, r->nholds, pid);
		int32_t op = -1;
		uint64_t omax = 0, gmax = 0;

		h[p].pool_id = pid;
		h[p].pg_num = npt->pg_num;
		h[p].until = calloc(npt->pg_num, sizeof(uint64_t));
		/* Without it the pool's holds simply run their course. */
		h[p].by = calloc(npt->pg_num, sizeof(*h[p].by));
		if (!h[p].until) {
			/* As above, for this pool: a pg_num of 0 holds all of
			 * it until hold_max (conn.c). */
			h[p].pg_num = 0;
			free(h[p].by);
			h[p].by = NULL;
			short_mem = true;
			continue;
		}
		if (oh && oh->pg_num == npt->pg_num) {
			memcpy(h[p].until, oh->until, npt->pg_num * sizeof(uint64_t));
			for (uint32_t pg = 0; h[p].by && pg < npt->pg_num; pg++) {
				h[p].by[pg] = !oh->by ? (struct wf_tgt_hold_by){
					.id1 = oh->until[pg] > now ? WF_TGT_HOLD_ANY : 0 } :
					oh->until[pg] > now ? oh->by[pg] :
					(struct wf_tgt_hold_by){ 0 };
				/* A release this reactor had not applied yet
				 * (seen_release moved on above). */
				if (hold_given_back(r->t, &h[p].by[pg])) {
					h[p].until[pg] = 0;
					h[p].by[pg].id1 = 0;
					spared++;
				}
			}
		} else if (oh)
			for (uint32_t pg = 0; pg < oh->pg_num; pg++)
				omax = oh->until[pg] > omax ? oh->until[pg] : omax;
		for (uint32_t q = 0; q < old->table.npools; q++)
			if (old->map.pools[q].id == pid)
				op = (int32_t)q;
		if (any && op >= 0) {
			const struct wf_pg_pool_table *opt = &old->table.pools[op];
			bool same = opt->pg_num == npt->pg_num;

			for (uint32_t pg = 0; pg < opt->pg_num; pg++) {
				const uint32_t *oa, *na;
				unsigned on = wf_pg_acting(&old->table, (uint32_t)op, pg, &oa);
				unsigned nn;
				uint64_t u;

				if (!on || oa[0] >= nt || (u = gu[oa[0]]) <= now)
					continue;
				if (!same) {
					/* PGs split or merged: the pool. */
					if (rel[oa[0]])
						spared++;
					else
						gmax = u > gmax ? u : gmax;
					continue;
				}
				nn = wf_pg_acting(&nw->table, p, pg, &na);
				if (nn && na[0] < nw->map.ntargets &&
				    nw->map.targets[na[0]].id == old->map.targets[oa[0]].id)
					continue;       /* it still leads the PG */
				if (rel[oa[0]]) {
					/* Given back before we got here. */
					spared++;
					continue;
				}
				hold_note(&h[p], pg, u, now,
					  old->map.targets[oa[0]].id, old->epoch);
			}
		}
		/* A pool new in this epoch (op < 0): nobody led its PGs. */
		if (omax < gmax)
			omax = gmax;
		for (uint32_t pg = 0; pg < npt->pg_num; pg++) {
			if (h[p].until[pg] < omax) {
				h[p].until[pg] = omax;
				if (h[p].by)
					h[p].by[pg].id1 = WF_TGT_HOLD_ANY;
			}
			if (h[p].until[pg] > max)
				max = h[p].until[pg];
		}
	}
	if (short_mem) {
		uint64_t len = WF_TGT_MAX_LEASE_MS * 1000000ull;

		if (now + len + WF_TGT_LEASE_MARGIN(len) > max)
			max = now + len + WF_TGT_LEASE_MARGIN(len);
	}
	for (uint32_t i = 0; i < r->nholds; i++) {
		free(r->holds[i].until);
		free(r->holds[i].by);
	}
	free(r->holds);
	free(gu);
	free(rel);
	if (spared)
		WF_TGT_ADD(r->stats.holds_released, spared);
	r->holds = h;
	r->nholds = np;
	r->hold_max = max;
	if (max > now && r->lease_ms)
		wf_tgt_logl(WF_TGT_LOG_DEBUG, "reactor %u: map epoch %llu: writes to "
			    "PGs a former primary may still read held for up to %llu ms",
			    r->idx, (unsigned long long)nw->epoch,
			    (unsigned long long)((max - now) / 1000000));
}

/* ---- the member's side: leases remembered across a restart ---------- */

/*
 * A restarted process forgets t->leases, yet a former primary may still
 * read under a lease granted before the kill.  So the grant path keeps
 * RUN_DIR/target-ID.leases at or past every expiry granted (CLOCK_BOOTTIME:
 * one system-wide clock across processes of one boot), and a start within
 * it holds writes until then.  No fsync: a host crash is a reboot, and a
 * new boot id voids the file.
 */
static uint64_t boot_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void wf_tgt_leases_open(struct wf_tgt *t)
{
	const struct wf_tgt_cfg *cfg = t->cfg;
	char path[WF_PATH_MAX + 64], buf[WF_TGT_LEASEFILE_LEN + 1];
	uint64_t until, cap = WF_TGT_MAX_LEASE_MS * 1000000ull, now;
	ssize_t n;
	int fd;

	cap += WF_TGT_LEASE_MARGIN(cap);
	t->lease_file = false;
	t->restart_until = 0;
	t->lease_saved = 0;
	if (cfg->fault_no_lease)
		return;         /* a build before leases: no file */
	fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	n = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;
	if (fd >= 0)
		close(fd);
	if (n != WF_TGT_BOOT_ID_LEN + 1 || buf[WF_TGT_BOOT_ID_LEN] != '\n' ||
	    wf_tgt_boot_id_check(buf, WF_TGT_BOOT_ID_LEN)) {
		wf_tgt_logl(WF_TGT_LOG_WARNING, "no boot id in /proc/sys/kernel/"
			    "random/boot_id: read leases are not granted");
		return;
	}
	memcpy(t->boot_id, buf, WF_TGT_BOOT_ID_LEN);
	snprintf(path, sizeof(path), "%s/target-%u.leases", cfg->run_dir, cfg->id);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		wf_tgt_logl(WF_TGT_LOG_WARNING, "%s: %s: read leases are not "
			    "granted", path, strerror(errno));
		return;
	}
	/* One byte more than the line: a longer file is refused. */
	n = pread(fd, buf, sizeof(buf), 0);
	now = boot_ns();
	if (n > 0 && !wf_tgt_leasefile_parse(buf, (size_t)n, t->boot_id, &until) &&
	    until > now) {
		/* Kept: a grant after this start never writes an earlier
		 * time over one a former primary may still count on. */
		t->lease_saved = until;
		if (until - now > cap)
			until = now + cap;
		t->restart_until = wf_tgt_now_ns() + (until - now);
		wf_tgt_log("leases granted before this start may run until %llu ms "
			   "from now: writes to replicated PGs held until then",
			   (unsigned long long)((until - now + 999999) / 1000000));
	}
	t->lease_fd = fd;
	t->lease_file = true;
}

/* Before a grant of len ns is answered OK: the file covers it.  Written
 * half a lease ahead, so about once per half lease under steady asks. */
static int leases_note(struct wf_tgt *t, uint64_t len)
{
	char line[WF_TGT_LEASEFILE_LEN];
	uint64_t need, saved, to;

	if (!t->lease_file)
		return -ENOENT;
	need = boot_ns() + len + WF_TGT_LEASE_MARGIN(len);
	saved = __atomic_load_n(&t->lease_saved, __ATOMIC_ACQUIRE);
	if (need <= saved)
		return 0;
	to = need + len / 2;
	wf_tgt_leasefile_format(line, t->boot_id, to);
	if (pwrite(t->lease_fd, line, sizeof(line), 0) != (ssize_t)sizeof(line))
		return -EIO;
	/* Grants come on reactor 0 (peers' links reach its port); should
	 * two reactors race, the later store wins here and a grant made
	 * by the other may later be covered by the file only up to its
	 * own time minus half a lease. */
	while (saved < to &&
	       !__atomic_compare_exchange_n(&t->lease_saved, &saved, to, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
	return 0;
}

void wf_tgt_hold_restart(struct wf_tgt_reactor *r)
{
	const struct wf_tgt_map *m = r->map;
	uint64_t until = r->t ? r->t->restart_until : 0;
	uint32_t np = m->table.npools;

	if (until <= wf_tgt_now_ns() || r->holds)
		return;
	r->holds = calloc(np ? np : 1, sizeof(*r->holds));
	r->hold_max = until;
	if (!r->holds) {
		wf_tgt_logl(WF_TGT_LOG_WARNING, "reactor %u: no memory for the "
			    "hold at start: writes not held", r->idx);
		return;
	}
	r->nholds = np;
	for (uint32_t p = 0; p < np; p++) {
		const struct wf_pg_pool_table *pt = &m->table.pools[p];
		struct wf_tgt_hold *h = &r->holds[p];

		h->pool_id = m->map.pools[p].id;
		h->until = calloc(pt->pg_num ? pt->pg_num : 1, sizeof(uint64_t));
		if (!h->until)
			continue;       /* pg_num 0: the pool held whole */
		h->pg_num = pt->pg_num;
		for (uint32_t pg = 0; pg < pt->pg_num; pg++) {
			const uint32_t *act;

			if (wf_pg_acting(&m->table, p, pg, &act) > 1)
				h->until[pg] = until;
		}
	}
}

/* ---- the member's side: answering asks ------------------------------- */

static void lease_release(struct wf_tgt_conn *c, const struct wf_lease *l);

static void lease_send(struct wf_tgt_conn *c, const struct wf_lease *l)
{
	struct wf_net_lease w;

	wf_lease_encode(l, &w);
	/* A send credit of the spares (WF_TGT_SPARE_SENDS): a link has one
	 * ask in flight at a time. */
	if (wf_send(c->ep, &w, sizeof(w), WR_ERRREPLY)) {
		wf_tgt_conn_close(c, "no send credit for a LEASE answer");
		return;
	}
	c->sends_out++;
	WF_TGT_ADD(c->r->stats.lease_sends, 1);
}

void wf_tgt_lease_ask(struct wf_tgt_conn *c, const void *msg, uint32_t len)
{
	struct wf_tgt_reactor *r = c->r;
	struct wf_lease l, a = { .flags = WF_LEASE_ANSWER };
	struct wf_tgt_lease *e;
	uint32_t k;
	uint64_t now;

	if (wf_lease_decode(msg, len, &l) || (l.flags & WF_LEASE_ANSWER) ||
	    !(c->client_id >> 63)) {
		/* Asks come from other targets' links only (their client
		 * ids have the top bit, peer.c). */
		r->stats.closed_bad++;
		wf_tgt_conn_close(c, "bad LEASE");
		return;
	}
	if (l.flags & WF_LEASE_RELEASE) {
		lease_release(c, &l);
		return;
	}
	if (l.epoch > r->map->epoch) {
		now = wf_tgt_now_ns();
		if (now - r->last_reload > 100000000ull) {
			r->last_reload = now;
			wf_tgt_reload(r, "LEASE with a newer epoch");
		}
	}
	a.tag = l.tag;
	a.epoch = r->map->epoch;
	a.target_id = r->cfg->id;
	if (l.epoch < r->map->epoch) {
		a.status = WF_WS_STALE;
	} else if (l.epoch > r->map->epoch || r->phase != PH_RUN || !r->t ||
		   (k = lease_slot(r->t, l.target_id)) == UINT32_MAX) {
		a.status = WF_WS_BUSY;
	} else {
		/* Recorded before the answer goes (and before we look at
		 * newest_epoch: wf_tgt_hold_compute's other half). */
		e = &r->t->leases[k];
		now = wf_tgt_now_ns();
		if (__atomic_load_n(&e->g_epoch[0], __ATOMIC_RELAXED) != l.epoch) {
			__atomic_store_n(&e->g_len[1], e->g_len[0], __ATOMIC_RELAXED);
			__atomic_store_n(&e->g_ns[1], e->g_ns[0], __ATOMIC_RELAXED);
			__atomic_store_n(&e->g_epoch[1], e->g_epoch[0], __ATOMIC_RELEASE);
			__atomic_store_n(&e->g_ns[0], 0, __ATOMIC_RELAXED);
			__atomic_store_n(&e->g_epoch[0], l.epoch, __ATOMIC_RELEASE);
		}
		__atomic_store_n(&e->g_len[0], (uint64_t)l.lease_ms * 1000000ull,
				 __ATOMIC_RELAXED);
		__atomic_store_n(&e->g_ns[0], now, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&r->t->newest_epoch, __ATOMIC_SEQ_CST) > l.epoch) {
			/* Another reactor already loaded a newer epoch:
			 * its holds may not have seen this grant. */
			a.status = WF_WS_BUSY;
		} else if (leases_note(r->t, (uint64_t)l.lease_ms * 1000000ull)) {
			/* Not remembered across a restart: not granted. */
			a.status = WF_WS_BUSY;
		} else {
			a.status = WF_WS_OK;
			a.lease_ms = l.lease_ms;
		}
	}
	if (a.status == WF_WS_OK)
		WF_TGT_ADD(r->stats.lease_granted, 1);
	else
		WF_TGT_ADD(r->stats.lease_refused, 1);
	lease_send(c, &a);
}

void wf_tgt_map_get(struct wf_tgt_conn *c, const void *msg, uint32_t len)
{
	struct wf_tgt_reactor *r = c->r;
	struct wf_map_get g;
	struct wf_map_chunk ch = { 0 };
	char out[sizeof(struct wf_net_map_put) + WF_MAP_PUT_CHUNK];
	uint32_t n = 0;

	if (wf_map_get_decode(msg, len, &g) || !(c->client_id >> 63)) {
		r->stats.closed_bad++;
		wf_tgt_conn_close(c, "bad MAP_GET");
		return;
	}
	if (g.offset == 0) {
		/* A fresh copy of the text: the later chunks come from it. */
		int fd = open(r->cfg->map_path, O_RDONLY | O_CLOEXEC);
		struct stat st;

		free(c->get_buf);
		c->get_buf = NULL;
		c->get_total = 0;
		if (fd >= 0 && !fstat(fd, &st) && st.st_size > 0 &&
		    st.st_size <= WF_MAP_PUT_MAX &&
		    (c->get_buf = malloc((size_t)st.st_size))) {
			ssize_t got = 0, k;

			while (got < st.st_size &&
			       (k = read(fd, c->get_buf + got, (size_t)(st.st_size - got))) > 0)
				got += k;
			if (got == st.st_size) {
				c->get_total = (uint32_t)got;
			} else {
				free(c->get_buf);
				c->get_buf = NULL;
			}
		}
		if (fd >= 0)
			close(fd);
	}
	ch.tag = g.tag;
	ch.epoch = r->map->epoch;
	if (c->get_buf && g.offset < c->get_total) {
		n = c->get_total - g.offset;
		if (n > WF_MAP_PUT_CHUNK)
			n = WF_MAP_PUT_CHUNK;
		ch.total = c->get_total;
		ch.offset = g.offset;
		memcpy(out + sizeof(struct wf_net_map_put), c->get_buf + g.offset, n);
	}
	wf_map_chunk_encode(&ch, (struct wf_net_map_put *)(void *)out);
	if (wf_send(c->ep, out, (uint32_t)sizeof(struct wf_net_map_put) + n, 4)) {
		wf_tgt_conn_close(c, "no send credit for a map chunk");
	} else {
		c->sends_out++;
		WF_TGT_ADD(r->stats.lease_sends, 1);
	}
	if (c->get_buf && (!n || g.offset + n >= c->get_total)) {
		free(c->get_buf);
		c->get_buf = NULL;
		c->get_total = 0;
	}
}

/* ---- early release: the member's side -------------------------------- */

/* A former primary gives back the leases we granted it in epochs below
 * l->epoch (WF_LEASE_RELEASE): their holds end on every reactor. */
static void lease_release(struct wf_tgt_conn *c, const struct wf_lease *l)
{
	struct wf_tgt_reactor *r = c->r;
	struct wf_tgt_lease *e;
	uint64_t cur, rel;
	uint32_t k;

	/* A link gives back its own target's leases only (its client id
	 * names it, peer.c; with keys the link proved its key first). */
	if ((uint32_t)(c->client_id >> 16) != l->target_id) {
		r->stats.closed_bad++;
		wf_tgt_conn_close(c, "a release for another target's leases");
		return;
	}
	WF_TGT_ADD(r->stats.releases_received, 1);
	if (!r->t || (k = lease_slot(r->t, l->target_id)) == UINT32_MAX)
		return;         /* we granted it nothing we could record */
	e = &r->t->leases[k];
	/* No grant of ours is newer than our epoch: a release beyond it (a
	 * bug, a bogus map) must not give back leases we grant later. */
	rel = l->epoch < r->map->epoch + 1 ? l->epoch : r->map->epoch + 1;
	cur = __atomic_load_n(&e->rel_epoch, __ATOMIC_ACQUIRE);
	while (cur < rel &&
	       !__atomic_compare_exchange_n(&e->rel_epoch, &cur, rel, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
	if (cur >= rel)
		return;         /* an older or repeated release: nothing new */
	/* After rel_epoch: a reactor that sees the new gen sees it. */
	__atomic_add_fetch(&r->t->release_gen, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < r->t->n; i++)
		if (i != r->idx)
			wf_tgt_wake_one(r->t, i);
	wf_tgt_hold_released(r);
}

void wf_tgt_hold_released(struct wf_tgt_reactor *r)
{
	uint32_t gen;
	uint64_t now, max = 0;
	unsigned ended = 0;

	if (!r->t || !r->nholds)
		return;
	gen = __atomic_load_n(&r->t->release_gen, __ATOMIC_ACQUIRE);
	if (gen == r->seen_release)
		return;
	r->seen_release = gen;
	now = wf_tgt_now_ns();
	/* What goes anyway at now (holds lapsed, requests of an epoch or a
	 * connection gone) goes first and is not counted: writes_released
	 * counts the writes a release started before their hold lapsed. */
	if (r->hold_head)
		wf_tgt_hold_run(r, now, NULL);
	for (uint32_t i = 0; i < r->nholds; i++) {
		struct wf_tgt_hold *h = &r->holds[i];

		if (!h->pg_num) {
			max = r->hold_max;      /* a pool held whole stays so */
			continue;
		}
		for (uint32_t pg = 0; pg < h->pg_num; pg++) {
			if (h->until[pg] <= now)
				continue;
			/* The release ends a hold for a grant of an epoch
			 * below its own, never one of a newer grant. */
			if (h->by && hold_given_back(r->t, &h->by[pg])) {
				h->until[pg] = 0;
				ended++;
				continue;
			}
			if (h->until[pg] > max)
				max = h->until[pg];
		}
	}
	if (!ended)
		return;
	WF_TGT_ADD(r->stats.holds_released, ended);
	r->hold_max = max;
	if (r->hold_head) {
		/* The same now: left on the list were writes of this epoch
		 * on live connections whose hold ran past it. */
		unsigned started = 0;

		wf_tgt_hold_run(r, now, &started);
		WF_TGT_ADD(r->stats.writes_released, started);
	}
	wf_tgt_logl(WF_TGT_LOG_DEBUG, "reactor %u: a release ended the holds of "
		    "%u PGs", r->idx, ended);
}

/* ---- early release: the asker's side --------------------------------- */

unsigned wf_tgt_release_tick(struct wf_tgt_reactor *r, uint64_t now)
{
	uint64_t ep = r->map->epoch;

	if (r->idx != 0 || !r->rel_need || !r->t)
		return 0;
	/*
	 * No read may use a lease of an older epoch once every reactor
	 * serves ours: each checks a read against its own map's epoch, and
	 * our short-circuit view shows this epoch's leases since reactor 0
	 * loaded it (lease_publish), so a local reader's after-the-read
	 * check fails for an older one.  A read that passed its check
	 * before may still be in flight: it arrived before this release
	 * leaves, so before any write it held can be acknowledged, and
	 * either bytes are an answer it may get (docs/replication.md).
	 */
	for (unsigned i = 0; i < r->t->n; i++) {
		const struct wf_tgt_reactor *o = r->t->r[i];

		if (o && __atomic_load_n(&o->serving, __ATOMIC_ACQUIRE) < ep)
			return r->rel_need;
	}
	r->rel_need = 0;
	for (struct wf_tgt_peer *p = r->peers; p; p = p->next) {
		struct wf_lease l = {
			.flags = WF_LEASE_RELEASE, .epoch = p->rel_epoch,
			.target_id = r->cfg->id,
		};
		struct wf_net_lease w;

		if (!p->rel_epoch)
			continue;
		if (p->gone || now > p->rel_until ||
		    (p->state == PEER_LIVE && !(p->features & WF_FEAT_RELEASE))) {
			/* Its holds lapse by themselves (or it holds none:
			 * a build without releases holds as before). */
			p->rel_epoch = 0;
			continue;
		}
		if (p->state != PEER_LIVE) {
			wf_tgt_peer_wake(p);
			r->rel_need++;
			continue;
		}
		wf_lease_encode(&l, &w);
		if (wf_tgt_peer_send(p, &w, sizeof(w))) {
			r->rel_need++;
			continue;
		}
		WF_TGT_ADD(r->stats.releases_sent, 1);
		p->rel_epoch = 0;
	}
	return r->rel_need;
}

/* ---- the asker's side ------------------------------------------------- */

/*
 * Reactor 0's link to p is up: a member of an older build (no LEASE in
 * its GRANT) is never asked, and is taken as confirming every epoch, so
 * reads of the PGs it shares are served as before leases; one that says
 * it understands them (again, say after its upgrade) is asked anew.
 */
static void lease_unfenced(struct wf_tgt_reactor *r, struct wf_tgt_peer *p)
{
	uint32_t k = lease_slot(r->t, p->target_id);
	struct wf_tgt_lease *e;

	if (k == UINT32_MAX)
		return;
	e = &r->t->leases[k];
	if (!(p->features & WF_FEAT_LEASE)) {
		if (__atomic_load_n(&e->epoch, __ATOMIC_RELAXED) == r->map->epoch &&
		    __atomic_load_n(&e->until, __ATOMIC_RELAXED) == UINT64_MAX)
			return;
		__atomic_store_n(&e->until, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&e->epoch, r->map->epoch, __ATOMIC_RELEASE);
		__atomic_store_n(&e->until, UINT64_MAX, __ATOMIC_RELEASE);
	} else if (__atomic_load_n(&e->until, __ATOMIC_RELAXED) == UINT64_MAX) {
		__atomic_store_n(&e->until, 0, __ATOMIC_RELEASE);
	}
	lease_publish(r);
}

void wf_tgt_lease_link_up(struct wf_tgt_peer *p)
{
	struct wf_tgt_reactor *r = p->r;

	if (r->idx != 0 || !r->t || !r->lease_ms)
		return;
	lease_unfenced(r, p);
}

void wf_tgt_lease_urge(struct wf_tgt_reactor *r)
{
	uint32_t was;

	if (!r->t || !r->lease_ms)
		return;
	was = __atomic_exchange_n(&r->t->lease_urgent, 1, __ATOMIC_ACQ_REL);
	if (!was && r->idx != 0)
		wf_tgt_wake_one(r->t, 0);
}

static void ask(struct wf_tgt_peer *p, uint64_t now)
{
	struct wf_tgt_reactor *r = p->r;
	struct wf_lease l = {
		.tag = ++p->lease_tag,
		.epoch = r->map->epoch,
		.target_id = r->cfg->id,
		.lease_ms = r->lease_ms,
	};
	struct wf_net_lease w;

	wf_lease_encode(&l, &w);
	/* The lease counts from before the ask leaves. */
	p->lease_sent = now;
	p->lease_epoch = l.epoch;
	if (wf_tgt_peer_send(p, &w, sizeof(w)))
		return;
	p->lease_out = true;
}

void wf_tgt_lease_tick(struct wf_tgt_reactor *r, uint64_t now, bool force)
{
	uint64_t len = lease_ns(r);

	if (r->idx != 0 || !r->lease_need || !len)
		return;
	if (!force && now < r->lease_next)
		return;
	r->lease_next = now + len / 4;
	for (struct wf_tgt_peer *p = r->peers; p; p = p->next) {
		if (!p->lease_need || p->gone)
			continue;
		/* One ask at a time per link; an unanswered one is given up
		 * after a lease length (its answer would be too old). */
		if (p->lease_out && now - p->lease_sent < len)
			continue;
		p->lease_out = false;
		if (p->state != PEER_LIVE) {
			wf_tgt_peer_wake(p);
			continue;
		}
		if (!(p->features & WF_FEAT_LEASE)) {
			/* An older build: it would close the link. */
			lease_unfenced(r, p);
			continue;
		}
		ask(p, now);
	}
}

void wf_tgt_lease_answer(struct wf_tgt_peer *p, const void *msg, uint32_t len)
{
	struct wf_tgt_reactor *r = p->r;
	struct wf_tgt_lease *e;
	struct wf_lease a;
	uint32_t k;
	uint64_t until;

	if (wf_lease_decode(msg, len, &a) || !(a.flags & WF_LEASE_ANSWER) ||
	    a.target_id != p->target_id) {
		wf_tgt_log("reactor %u: link to target %u: bad LEASE answer",
			   r->idx, p->target_id);
		return;
	}
	if (!p->lease_out || a.tag != p->lease_tag)
		return;         /* an answer to an ask given up */
	p->lease_out = false;
	if (a.status == WF_WS_STALE && a.epoch > r->map->epoch) {
		/* It serves a newer epoch: take its map. */
		if (!p->get_out) {
			struct wf_map_get g = {
				.tag = ++p->get_tag, .epoch = r->map->epoch, .offset = 0,
			};
			struct wf_net_map_get w;

			wf_map_get_encode(&g, &w);
			free(p->get_buf);
			p->get_buf = NULL;
			p->get_got = p->get_total = 0;
			if (!wf_tgt_peer_send(p, &w, sizeof(w)))
				p->get_out = true;
		}
		return;
	}
	if (a.status != WF_WS_OK || a.epoch != p->lease_epoch ||
	    p->lease_epoch != r->map->epoch || !r->t)
		return;
	k = p->target_id < UINT32_MAX ? lease_slot(r->t, p->target_id) : UINT32_MAX;
	if (k == UINT32_MAX)
		return;
	e = &r->t->leases[k];
	until = p->lease_sent + (uint64_t)a.lease_ms * 1000000ull;
	if (__atomic_load_n(&e->epoch, __ATOMIC_RELAXED) != a.epoch) {
		__atomic_store_n(&e->until, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&e->epoch, a.epoch, __ATOMIC_RELEASE);
	} else if (until <= e->until) {
		return;
	}
	__atomic_store_n(&e->until, until, __ATOMIC_RELEASE);
	lease_publish(r);
}

int wf_tgt_pulled_path(const struct wf_tgt_cfg *cfg, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/target-%u.pulled.conf", cfg->run_dir, cfg->id);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/*
 * The pulled text is whole: keep it in RUN_DIR/target-ID.pulled.conf and
 * load it (reactor.c's reload takes the newer of that and the map file).
 * Not over the map file: other targets of the host, weftctl or the etcd
 * agent may write that one meanwhile, and an older text must never
 * replace a newer one there.
 */
static void pull_apply(struct wf_tgt_peer *p)
{
	char path[WF_PATH_MAX + 64];
	struct wf_tgt_reactor *r = p->r;
	struct wf_map_err err;
	struct wf_map m;
	int ret;

	ret = wf_map_load_buf(p->get_buf, p->get_total, "pulled map", &m, &err);
	if (ret) {
		wf_tgt_log("map pulled from target %u refused: %s", p->target_id,
			   err.msg);
		return;
	}
	if (m.cluster_id != r->map->map.cluster_id || m.epoch <= r->map->epoch) {
		if (m.cluster_id != r->map->map.cluster_id)
			wf_tgt_log("map pulled from target %u refused: another "
				   "cluster's map", p->target_id);
		wf_map_free(&m);
		return;
	}
	wf_map_free(&m);
	ret = wf_tgt_pulled_path(r->cfg, path, sizeof(path));
	if (!ret)
		ret = wf_file_replace(path, p->get_buf, p->get_total, 0644);
	if (ret) {
		wf_tgt_log("map pulled from target %u: cannot write %s: %s",
			   p->target_id, path, strerror(-ret));
		return;
	}
	WF_TGT_ADD(r->stats.maps_pulled, 1);
	wf_tgt_log("map pulled from target %u, which serves a newer epoch",
		   p->target_id);
	/* Loaded after this turn's completions (reactor.c), never under
	 * the link's own completion. */
	r->reload_wanted = true;
	r->last_reload = 0;
}

void wf_tgt_map_chunk(struct wf_tgt_peer *p, const void *msg, uint32_t len)
{
	struct wf_map_chunk ch;
	struct wf_map_get g;
	struct wf_net_map_get w;

	if (wf_map_chunk_decode(msg, len, &ch) || !p->get_out ||
	    ch.tag != p->get_tag) {
		wf_tgt_log("reactor %u: link to target %u: map chunk for no ask",
			   p->r->idx, p->target_id);
		return;
	}
	p->get_out = false;
	if (!ch.total || ch.offset != p->get_got ||
	    (p->get_got && ch.total != p->get_total))
		goto out_drop;
	if (!p->get_got) {
		free(p->get_buf);
		p->get_buf = malloc(ch.total);
		if (!p->get_buf)
			goto out_drop;
		p->get_total = ch.total;
	}
	memcpy(p->get_buf + ch.offset, ch.data, ch.len);
	p->get_got += ch.len;
	if (p->get_got == p->get_total) {
		pull_apply(p);
		goto out_drop;
	}
	g.tag = ++p->get_tag;
	g.epoch = p->r->map->epoch;
	g.offset = p->get_got;
	wf_map_get_encode(&g, &w);
	if (!wf_tgt_peer_send(p, &w, sizeof(w))) {
		p->get_out = true;
		return;
	}
out_drop:
	free(p->get_buf);
	p->get_buf = NULL;
	p->get_got = p->get_total = 0;
}
