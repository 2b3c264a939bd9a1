/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Recovery: bringing new members of a PG up to date (docs/replication.md,
 * "Recovery").  The map pins a PG whose up set has members that lack its
 * data (pg_temp: the acting set stays the members that hold it); the
 * PG's primary then copies every extent of the PG it owns to the members
 * of the up set outside the acting set, while client writes of the PG go
 * to them too (req.c).  `weftctl recover` ends the pin once every primary
 * reports its pass done for the epoch (struct wf_ctl_status).
 *
 * One pass per reactor and map epoch, over the volumes of the map: for
 * each extent whose PG this target leads with such members, and whose
 * owner reactor is this one:
 *
 *   held here      copies of slot_size chunks: read (store, into a slot of
 *                  the reactor's recovery ring) then forward as a replica
 *                  WRITE (peer.c) from that slot, no CPU copy;
 *   not held here  a replica DISCARD of the whole extent (the member may
 *                  hold stale blocks of it from an earlier membership).
 *
 * Every copy enters the order list (conn.c) for its range before its read:
 * client writes to the same blocks that came earlier are done (at every
 * member) before it reads, later ones wait until its forwards are done, so
 * a member never ends with older data than the primary.  A copy that
 * fails (a member unreachable, of another epoch) makes the pass run again
 * a second later; the pass of a newer epoch replaces it.
 *
 * Limits: --recovery-qd copies in flight per reactor, --recovery-mbps of
 * copied bytes per reactor, and client first: no copy starts in a turn
 * where client store I/O is in flight beyond the copies' own share.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "target/target.h"

#define AGAIN_MS 1000u

/* The members of (pool, pg) this target must bring up to date: the up
 * set's members outside the acting set, when it is the acting primary.
 * Returns their number (0: nothing to do here). */
static unsigned targets_of(const struct wf_tgt_map *m, uint32_t pool,
			   uint32_t pg, uint32_t *out)
{
	const uint32_t *act;
	unsigned nact = wf_pg_acting(&m->table, pool, pg, &act);

	if (m->self < 0 || !nact || act[0] != (uint32_t)m->self)
		return 0;
	return wf_pg_newcomers(&m->table, pool, pg, out);
}

void wf_tgt_recover_fini(struct wf_tgt_reactor *r)
{
	free(r->rec.held);
	r->rec.held = r->rec.held_base = NULL;
}

/* The pass's table of held extents per PG (struct wf_tgt_recover), all
 * zero: 0, or -ENOMEM (then the plan counts the logged ranges only). */
static int held_alloc(struct wf_tgt_reactor *r)
{
	const struct wf_tgt_map *m = r->map;
	struct wf_tgt_recover *rc = &r->rec;
	size_t n = m->map.npools;

	wf_tgt_recover_fini(r);
	for (uint32_t p = 0; p < m->map.npools; p++)
		n += m->map.pools[p].pg_num;
	rc->held = calloc(n ? n : 1, sizeof(*rc->held));
	if (!rc->held)
		return -ENOMEM;
	rc->held_base = rc->held;
	n = m->map.npools;
	for (uint32_t p = 0; p < m->map.npools; p++) {
		rc->held_base[p] = (uint32_t)n;
		n += m->map.pools[p].pg_num;
	}
	return 0;
}

/*
 * Fill the table: for every PG this reactor brings up to date, the
 * extents of it held here and owned by this reactor.  One walk of the
 * store's index (its physical extents, not the volumes' sizes) when a
 * pass starts or runs again, never on the data path.  An estimate: a
 * client write that allocates an extent before the scan reaches it adds
 * a copy, a discard takes one away.
 */
static void held_walk(struct wf_tgt_reactor *r)
{
	const struct wf_tgt_map *m = r->map;
	struct wf_tgt_recover *rc = &r->rec;
	uint32_t to[WF_MAX_REPLICAS], ext;
	uint64_t vol;
	int k;

	if (!rc->held)
		return;
	for (uint32_t p = 0; p < m->map.npools; p++)
		memset(rc->held + rc->held_base[p], 0,
		       m->map.pools[p].pg_num * sizeof(*rc->held));
	for (uint32_t phys = 0;
	     (k = wf_store_extent_at(r->store, phys, &vol, &ext)) >= 0; phys++) {
		const struct wf_volume *v;
		uint32_t pg;
		int vi;

		if (!k || (vi = wf_tgt_map_volume(m, vol)) < 0)
			continue;
		v = &m->map.volumes[vi];
		if (ext >= v->size / m->extent_size ||
		    wf_extent_reactor(vol, ext, r->t->n) != r->idx)
			continue;
		pg = wf_pg_of(vol, ext, m->map.pools[v->pool].pg_num);
		if (targets_of(m, v->pool, pg, to))
			rc->held[rc->held_base[v->pool] + pg]++;
	}
}

/* The bytes the pass copies of (pool, pg)'s held extents, each of its
 * nto newcomers counted (from the table). */
static uint64_t held_bytes(const struct wf_tgt_reactor *r, uint32_t pool,
			   uint32_t pg, unsigned nto)
{
	const struct wf_tgt_recover *rc = &r->rec;

	if (!rc->held)
		return 0;
	return (uint64_t)rc->held[rc->held_base[pool] + pg] *
	       r->map->extent_size * nto;
}

/* What the pass copies from here on (after a walk): the held extents of
 * the PGs copied whole, and the logged ranges of the others (each member
 * counted). */
static uint64_t plan_bytes(struct wf_tgt_reactor *r)
{
	const struct wf_tgt_map *m = r->map;
	const struct wf_tgt_pglog *l = &r->pglog;
	uint32_t to[WF_MAX_REPLICAS];
	uint64_t n = 0;

	held_walk(r);
	for (uint32_t p = 0; p < m->map.npools; p++)
		for (uint32_t pg = 0; pg < m->map.pools[p].pg_num; pg++) {
			unsigned nto = targets_of(m, p, pg, to);

			if (nto && wf_tgt_pglog_mode(r, p, pg) != WF_TGT_PGL_LOG)
				n += held_bytes(r, p, pg, nto);
		}
	for (uint32_t i = 0; i < l->npg; i++)
		if (l->pg[i].mode == WF_TGT_PGL_LOG)
			n += l->pg[i].unsent * targets_of(m, l->pg[i].pool,
							  l->pg[i].pgno, to);
	return n;
}

static void bytes_done(struct wf_tgt_recover *rc, uint64_t n)
{
	rc->bytes_left -= n < rc->bytes_left ? n : rc->bytes_left;
}

void wf_tgt_recover_start(struct wf_tgt_reactor *r)
{
	struct wf_tgt_recover *rc = &r->rec;
	const struct wf_tgt_map *m = r->map;
	uint32_t tmp[WF_MAX_REPLICAS];

	rc->epoch = m->epoch;
	rc->pgs = rc->degraded = 0;
	rc->bytes = rc->copied = rc->erased = 0;
	rc->vol = 0;
	rc->ext = 0;
	rc->chunk = 0;
	rc->in_extent = false;
	rc->failed = false;
	rc->left = 0;
	rc->bytes_left = 0;
	rc->log_pgs = rc->full_pgs = 0;
	rc->lpg = 0;
	for (uint32_t p = 0; p < m->map.npools; p++) {
		const struct wf_pool *pool = &m->map.pools[p];

		for (uint32_t pg = 0; pg < pool->pg_num; pg++) {
			const uint32_t *act;
			unsigned nact = wf_pg_acting(&m->table, p, pg, &act);

			if (m->self < 0 || !nact || act[0] != (uint32_t)m->self)
				continue;
			unsigned nto = targets_of(m, p, pg, tmp);

			if (nto) {
				rc->pgs++;
				if (wf_tgt_pglog_plan(r, p, pg, tmp, nto) == WF_TGT_PGL_LOG)
					rc->log_pgs++;
				else
					rc->full_pgs++;
			} else if (nact < pool->replicas)
				rc->degraded++;
		}
	}
	if (!rc->pgs) {
		wf_tgt_recover_fini(r);
		rc->active = false;
		rc->done_epoch = m->epoch;
		return;
	}
	for (uint32_t v = 0; v < m->map.nvolumes; v++)
		rc->left += m->map.volumes[v].size / m->extent_size;
	if (held_alloc(r))
		wf_tgt_logl(WF_TGT_LOG_WARNING, "reactor %u: epoch %llu: no "
			    "memory for the table of held extents: bytes left "
			    "count the logged ranges only", r->idx,
			    (unsigned long long)m->epoch);
	rc->bytes_left = plan_bytes(r);
	rc->active = true;
	wf_tgt_log("reactor %u: epoch %llu: bringing new members of %u PGs up "
		   "to date (%u from the log of recent writes, %u whole)", r->idx,
		   (unsigned long long)m->epoch, rc->pgs, rc->log_pgs, rc->full_pgs);
}

/* A slot of the recovery ring for a copy, or NULL. */
static struct wf_tgt_req *op_get(struct wf_tgt_reactor *r)
{
	struct wf_tgt_conn *c = r->rconn;

	for (uint32_t s = 0; s < r->cfg->recovery_qd; s++)
		if (c->reqs[s].state == RQ_FREE) {
			c->reqs[s].slot = s;
			return &c->reqs[s];
		}
	return NULL;
}

void wf_tgt_rop_put(struct wf_tgt_req *q)
{
	q->state = RQ_FREE;
	q->conn->r->rec.inflight--;
}

/* The op's range may go now (it is first on the order list for it). */
static void op_go(struct wf_tgt_req *q)
{
	struct wf_tgt_conn *c = q->conn;
	struct wf_tgt_reactor *r = c->r;
	int ret;

	if (q->op == WF_OP_DISCARD) {
		wf_tgt_forward(r, q);
		return;
	}
	/* Read the chunk into the op's slot; the forwards follow. */
	wf_tgt_store_req_init(q);
	ret = wf_store_read(r->store, &q->sreq, q->volume, q->offset, q->length,
			    c->ring + (size_t)q->slot * c->lim.slot_size,
			    (int)c->idx);
	if (ret) {
		wf_tgt_recover_op_done(q, wf_wire_status_from_errno(ret));
		return;
	}
	q->state = RQ_STORE;
	c->store_inflight++;
	WF_TGT_ADD(r->store_inflight, 1);
}

void wf_tgt_recover_resume(struct wf_tgt_req *q)
{
	/* Waited across a map change: the pass of the new epoch copies
	 * again (its members may differ). */
	if (q->epoch != q->conn->r->map->epoch) {
		wf_tgt_recover_op_done(q, WF_WS_DEGRADED);
		return;
	}
	op_go(q);
}

void wf_tgt_recover_op_done(struct wf_tgt_req *q, uint16_t status)
{
	struct wf_tgt_reactor *r = q->conn->r;
	struct wf_tgt_recover *rc = &r->rec;

	if (q->state == RQ_STORE && status == WF_WS_OK) {
		/* The read is in: now the same slot to every member (a
		 * scrub's CSUM: the question about it). */
		if (q->op == WF_OP_CSUM)
			q->crc = wf_crc32c(0, q->conn->ring + (size_t)q->slot *
					   q->conn->lim.slot_size, q->length);
		wf_tgt_forward(r, q);
		return;
	}
	if (q->op == WF_OP_CSUM || q->repair) {
		wf_tgt_scrub_op_done(q, status);
		return;
	}
	if (status != WF_WS_OK) {
		if (!rc->failed)
			wf_tgt_log("reactor %u: recovery copy of volume %llu at %llu "
				   "failed (%s): the pass runs again", r->idx,
				   (unsigned long long)q->volume,
				   (unsigned long long)q->offset,
				   wf_wire_status_name(status));
		rc->failed = true;
	} else if (q->op == WF_OP_WRITE) {
		const struct wf_tgt_map *m = r->map;
		int32_t vi = wf_tgt_map_volume(m, q->volume);
		uint64_t n = (uint64_t)q->length * q->nfwd;    /* per member */

		rc->bytes += n;
		bytes_done(rc, n);
		if (vi >= 0 && wf_tgt_pglog_mode(r, m->map.volumes[vi].pool,
				wf_pg_of(q->volume, q->offset / m->extent_size,
					 m->map.pools[m->map.volumes[vi].pool].pg_num)) ==
		    WF_TGT_PGL_LOG)
			WF_TGT_ADD(rc->log_bytes, n);
		else
			WF_TGT_ADD(rc->full_bytes, n);
	}
	/* After forwards part_done took it off the order list; after a
	 * failed read (or a read that could not start) it is still on. */
	if (q->ord_prev || q->ord_next || r->ord_head == q)
		wf_tgt_order_leave(r, q);
	wf_tgt_rop_put(q);
}

bool wf_tgt_rop_start(struct wf_tgt_reactor *r, uint8_t op, uint64_t vol,
		      uint64_t off, uint32_t len, const uint32_t *to,
		      unsigned nto, bool repair, uint8_t tries)
{
	struct wf_tgt_req *q = op_get(r);

	if (!q)
		return false;
	r->rec.inflight++;
	q->repair = repair;
	q->tries = tries;
	q->epoch = r->map->epoch;
	q->op = op;
	q->flags = 0;
	q->volume = vol;
	q->offset = off;
	q->length = len;
	q->nfwd = (uint8_t)nto;
	memcpy(q->secondaries, to, nto * sizeof(*to));
	q->state = RQ_STORE;            /* taken (not RQ_FREE) */
	if (wf_tgt_order_enter(r, q))
		op_go(q);               /* may end it at once */
	return true;
}

static bool op_start(struct wf_tgt_reactor *r, uint8_t op, uint64_t vol,
		     uint64_t off, uint32_t len, const uint32_t *to, unsigned nto)
{
	return wf_tgt_rop_start(r, op, vol, off, len, to, nto, false, 0);
}

/* Refill the byte budget: recovery_mbps MiB per second. */
bool wf_tgt_rop_budget(struct wf_tgt_reactor *r, uint32_t want)
{
	struct wf_tgt_recover *rc = &r->rec;
	uint64_t now, cap;

	if (!r->cfg->recovery_mbps)
		return true;
	now = wf_tgt_now_ns();
	cap = (uint64_t)r->cfg->recovery_mbps << 20;
	rc->tokens += (now - rc->tok_ns) * cap / 1000000000ull;
	if (rc->tokens > cap / 10 + want)       /* bursts of 100 ms */
		rc->tokens = cap / 10 + want;
	rc->tok_ns = now;
	if (rc->tokens < want)
		return false;
	rc->tokens -= want;
	return true;
}

/*
 * After the extent scan: the PGs brought up to date from the log, entry
 * by entry in the order they were written (a DISCARD forwarded as one, a
 * WRITE's range copied from what the primary holds now, in slot_size
 * chunks; every op through the order list like the extent copies).  True
 * when every entry is started.  An entry overwritten before it was
 * started turns its PG into a backfill and makes the pass run again.
 */
static bool log_step(struct wf_tgt_reactor *r, unsigned *started)
{
	struct wf_tgt_recover *rc = &r->rec;
	struct wf_tgt_pglog *l = &r->pglog;
	uint32_t chunk = r->cfg->slot_size, to[WF_MAX_REPLICAS];

	for (; rc->lpg < l->npg; rc->lpg++) {
		struct wf_tgt_pglog_pg *g = &l->pg[rc->lpg];
		const struct wf_tgt_pglog_ent *e;
		unsigned nto;
		bool lost;

		if (g->mode != WF_TGT_PGL_LOG)
			continue;
		nto = targets_of(r->map, g->pool, g->pgno, to);
		while ((e = wf_tgt_pglog_next(r, rc->lpg, &lost)) != NULL) {
			uint32_t len = e->length - g->sub;

			if (!nto)
				break;
			if (len > chunk)
				len = chunk;
			if (rc->inflight >= r->cfg->recovery_qd ||
			    (e->op == WF_OP_WRITE && !wf_tgt_rop_budget(r, len)))
				return false;
			if (e->op == WF_OP_DISCARD)
				len = e->length - g->sub;
			if (!op_start(r, e->op, e->volume, e->offset + g->sub, len,
				      to, nto))
				return false;
			(*started)++;
			g->sub += len;
			if (e->op == WF_OP_WRITE)
				g->unsent -= len < g->unsent ? len : g->unsent;
		}
		if (lost) {
			wf_tgt_logl(WF_TGT_LOG_WARNING, "reactor %u: epoch %llu: the "
				    "log of PG %u.%u wrapped before its copy: the "
				    "whole PG is copied", r->idx,
				    (unsigned long long)rc->epoch, g->pool, g->pgno);
			/* Its ranges not started go; its held extents come
			 * (copied when the pass runs again). */
			bytes_done(rc, g->unsent * nto);
			g->unsent = 0;
			g->mode = WF_TGT_PGL_FULL;
			rc->bytes_left += held_bytes(r, g->pool, g->pgno, nto);
			rc->log_pgs--;
			rc->full_pgs++;
			rc->failed = true;
		}
	}
	return true;
}

bool wf_tgt_recover_step(struct wf_tgt_reactor *r)
{
	struct wf_tgt_recover *rc = &r->rec;
	const struct wf_tgt_map *m = r->map;
	uint32_t es = m->extent_size, chunk = r->cfg->slot_size, to[WF_MAX_REPLICAS];
	unsigned looked = 0, started = 0;

	if (!rc->active || r->phase != PH_RUN)
		return false;
	if (rc->epoch != m->epoch) {
		/* A newer map: its own pass, once this one's copies are in. */
		if (rc->inflight)
			return false;
		wf_tgt_recover_start(r);
		if (!rc->active)
			return true;
	}
	if (rc->again_at) {
		if (wf_tgt_now_ns() < rc->again_at)
			return false;
		rc->again_at = 0;
	}
	/* Clients first: copies wait while client store I/O beyond the
	 * copies' own is in flight. */
	if (r->store_inflight - r->rconn->store_inflight > 4)
		return false;
	while (rc->vol < m->map.nvolumes && looked < WF_TGT_RECOVER_SCAN) {
		const struct wf_volume *v = &m->map.volumes[rc->vol];
		uint64_t next = v->size / es;
		uint32_t pg;
		unsigned nto;

		if (rc->ext >= next) {
			rc->vol++;
			rc->ext = 0;
			continue;
		}
		pg = wf_pg_of(v->id, rc->ext, m->map.pools[v->pool].pg_num);
		nto = targets_of(m, v->pool, pg, to);
		if (nto && wf_tgt_pglog_mode(r, v->pool, pg) == WF_TGT_PGL_LOG)
			nto = 0;        /* its logged ranges: log_step() */
		if (!nto || wf_extent_reactor(v->id, (uint32_t)rc->ext, r->t->n) != r->idx) {
			rc->ext++;
			looked++;
			if (rc->left)
				rc->left--;
			continue;
		}
		if (!rc->in_extent) {
			/* Held here?  A hint (the copies read under the order
			 * list: an extent discarded since reads back as
			 * zeros, and a write that allocates it meanwhile
			 * goes to the members itself). */
			if (!wf_store_holds(r->store, v->id, (uint32_t)rc->ext)) {
				if (rc->inflight >= r->cfg->recovery_qd ||
				    !op_start(r, WF_OP_DISCARD, v->id,
					      rc->ext * es, es, to, nto))
					break;
				rc->erased++;
				started++;
				rc->ext++;
				looked++;
				if (rc->left)
					rc->left--;
				continue;
			}
			rc->in_extent = true;
			rc->chunk = 0;
		}
		if (rc->inflight >= r->cfg->recovery_qd || !wf_tgt_rop_budget(r, chunk))
			break;
		if (!op_start(r, WF_OP_WRITE, v->id,
			      rc->ext * es + (uint64_t)rc->chunk * chunk,
			      chunk < es ? chunk : es, to, nto))
			break;
		started++;
		if (++rc->chunk * (uint64_t)chunk >= es) {
			rc->in_extent = false;
			rc->copied++;
			rc->ext++;
			looked++;
			if (rc->left)
				rc->left--;
		}
	}
	if (rc->vol >= m->map.nvolumes && log_step(r, &started) && !rc->inflight) {
		if (rc->failed) {
			rc->vol = 0;
			rc->ext = 0;
			rc->lpg = 0;
			wf_tgt_pglog_rewind(r);
			/* Everything is copied again: planned again. */
			rc->bytes_left = plan_bytes(r);
			rc->failed = false;
			rc->again_at = wf_tgt_now_ns() + AGAIN_MS * 1000000ull;
			return started || looked;
		}
		wf_tgt_log("reactor %u: epoch %llu: new members are up to date "
			   "(%llu extents copied, %llu erased, %llu MiB)", r->idx,
			   (unsigned long long)rc->epoch,
			   (unsigned long long)rc->copied,
			   (unsigned long long)rc->erased,
			   (unsigned long long)(rc->bytes >> 20));
		WF_TGT_ADD(rc->log_total, rc->log_pgs);
		WF_TGT_ADD(rc->full_total, rc->full_pgs);
		rc->active = false;
		rc->done_epoch = rc->epoch;
		rc->left = 0;
		rc->bytes_left = 0;
		wf_tgt_recover_fini(r);
	}
	return started || looked;
}
