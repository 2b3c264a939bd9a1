/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Scrub: comparing the replicas of the PGs this target leads
 * (docs/replication.md, "Scrub").  `weftctl scrub` asks on the control
 * socket (ctl.c: t->scrub_gen); every reactor then runs one pass over the
 * extents it owns of the PGs it leads as acting primary:
 *
 *   check   (a CSUM op of the recovery ring, for each slot-size chunk)
 *           enter the order list for the chunk, read it into the op's
 *           slot, CRC32C it, ask every acting secondary for the CRC32C of
 *           the same bytes (WF_OP_CSUM over the peer links: no data
 *           moves), compare;
 *   repair  (with WF_CTL_SCRUB_REPAIR, for the members that differed) a
 *           copy like recovery's: order list, read again, WRITE forwarded
 *           from the slot to those members only.
 *
 * Because the check holds the chunk on the order list, no replicated
 * write of those bytes is in flight while the members answer: the CRCs
 * compare the same history.  The repair reads again under the order list,
 * so it writes what the primary holds then, never an older image.
 *
 * The primary is the reference: it has every acknowledged write (an
 * acknowledgement needs every acting member) and it is what clients read.
 * When two or more secondaries agree with each other and not with the
 * primary, the primary is the odd one out (a device that returned wrong
 * bytes): that chunk is reported and never "repaired" from it.
 *
 * Pinned PGs (recovering) are skipped: their newcomers are not current
 * yet.  The pass waits while a recovery pass is active; its ops share the
 * recovery ring's slots, --recovery-qd and --recovery-mbps (the bytes read
 * of extents the primary holds), and wait while clients have store I/O in
 * flight.
 */
#include <errno.h>
#include <string.h>

#include "proto/ctl.h"
#include "target/target.h"

void wf_tgt_scrub_poll(struct wf_tgt_reactor *r)
{
	struct wf_tgt_scrub *sc = &r->scrub;
	uint32_t gen;

	if (!r->t)
		return;
	gen = __atomic_load_n(&r->t->scrub_gen, __ATOMIC_ACQUIRE);
	if (gen == sc->gen)
		return;
	/* A pass in flight is replaced: its ops finish under the new
	 * pass's counters (they are few and end soon). */
	sc->gen = gen;
	sc->vol_id = __atomic_load_n(&r->t->scrub_vol, __ATOMIC_RELAXED);
	sc->repair = __atomic_load_n(&r->t->scrub_flags, __ATOMIC_RELAXED) &
		     WF_CTL_SCRUB_REPAIR;
	sc->vol = 0;
	sc->ext = 0;
	sc->chunk = 0;
	sc->bytes = sc->mismatches = sc->repaired = sc->errors = 0;
	sc->said = false;
	sc->nretry = 0;
	sc->link_wait = 0;
	sc->active = true;
	if (r->idx == 0)
		wf_tgt_log("scrub %u: %s%s", gen, sc->vol_id ? "one volume" :
			   "every volume", sc->repair ? ", repairing" : "");
}

/* The acting secondaries of the PG of (v, ext) when this reactor scrubs
 * it (this target its primary, the extent ours, nothing pinned); their
 * number, 0 otherwise. */
static unsigned members(struct wf_tgt_reactor *r, const struct wf_volume *v,
			uint64_t ext, uint32_t *to);

/* A chunk to ask again later; false when it cannot be (too many tries,
 * no room): it then counts as not compared. */
static bool retry_later(struct wf_tgt_scrub *sc, uint64_t vol, uint64_t off,
			uint32_t len, uint8_t tries)
{
	if (tries + 1u >= WF_TGT_SCRUB_TRIES || sc->nretry == WF_TGT_SCRUB_RETRIES)
		return false;
	sc->retry[sc->nretry].vol = vol;
	sc->retry[sc->nretry].off = off;
	sc->retry[sc->nretry].len = len;
	sc->retry[sc->nretry].tries = (uint8_t)(tries + 1);
	if (!sc->nretry++)
		sc->retry_at = wf_tgt_now_ns() + 300000000ull;  /* 300 ms */
	return true;
}

/* Start the chunks waiting to be asked again, in the map served now. */
static unsigned retry_step(struct wf_tgt_reactor *r)
{
	struct wf_tgt_scrub *sc = &r->scrub;
	const struct wf_tgt_map *m = r->map;
	uint32_t to[WF_MAX_REPLICAS];
	unsigned started = 0;

	if (!sc->nretry || wf_tgt_now_ns() < sc->retry_at)
		return 0;
	while (sc->nretry && r->rec.inflight < r->cfg->recovery_qd) {
		unsigned k = sc->nretry - 1, nto = 0;
		int vi = wf_tgt_map_volume(m, sc->retry[k].vol);

		if (vi >= 0)
			nto = members(r, &m->map.volumes[vi],
				      sc->retry[k].off / m->extent_size, to);
		sc->nretry--;
		if (!nto)
			continue;       /* no longer ours to scrub */
		sc->inflight++;
		if (!wf_tgt_rop_start(r, WF_OP_CSUM, sc->retry[k].vol, sc->retry[k].off,
				      sc->retry[k].len, to, nto, false,
				      sc->retry[k].tries)) {
			sc->inflight--;
			sc->nretry++;
			break;
		}
		started++;
	}
	return started;
}

static bool links_live(struct wf_tgt_reactor *r, const uint32_t *to, unsigned nto)
{
	struct wf_tgt_scrub *sc = &r->scrub;
	unsigned live = 0;

	for (unsigned i = 0; i < nto; i++)
		live += wf_tgt_peer_live(r, to[i]);
	if (live == nto) {
		sc->link_wait = 0;
		return true;
	}
	if (!sc->link_wait)
		sc->link_wait = wf_tgt_now_ns();
	return wf_tgt_now_ns() - sc->link_wait > 10000000000ull;
}

static unsigned members(struct wf_tgt_reactor *r, const struct wf_volume *v,
			uint64_t ext, uint32_t *to)
{
	const struct wf_tgt_map *m = r->map;
	uint32_t pg = wf_pg_of(v->id, ext, m->map.pools[v->pool].pg_num);
	uint32_t newc[WF_MAX_REPLICAS];
	const uint32_t *act;
	unsigned nact = wf_pg_acting(&m->table, v->pool, pg, &act);

	if (m->self < 0 || nact < 2 || act[0] != (uint32_t)m->self)
		return 0;
	if (r->t && wf_extent_reactor(v->id, (uint32_t)ext, r->t->n) != r->idx)
		return 0;
	if (wf_pg_newcomers(&m->table, v->pool, pg, newc))
		return 0;
	memcpy(to, act + 1, (nact - 1) * sizeof(*to));
	return nact - 1;
}

bool wf_tgt_scrub_step(struct wf_tgt_reactor *r)
{
	struct wf_tgt_scrub *sc = &r->scrub;
	const struct wf_tgt_map *m = r->map;
	uint32_t es = m->extent_size, chunk = r->cfg->slot_size, to[WF_MAX_REPLICAS];
	uint32_t len = chunk < es ? chunk : es;
	unsigned looked = 0, started = 0;

	if (!sc->active || r->phase != PH_RUN || r->rec.active)
		return false;
	/* Clients first, as for recovery copies. */
	if (r->store_inflight - r->rconn->store_inflight > 4)
		return false;
	started += retry_step(r);
	while (sc->vol < m->map.nvolumes && looked < WF_TGT_RECOVER_SCAN) {
		const struct wf_volume *v = &m->map.volumes[sc->vol];
		uint64_t off;
		unsigned nto;

		if ((sc->vol_id && v->id != sc->vol_id) || sc->ext >= v->size / es) {
			sc->vol++;
			sc->ext = 0;
			sc->chunk = 0;
			continue;
		}
		nto = members(r, v, sc->ext, to);
		if (!nto) {
			sc->ext++;
			looked++;
			continue;
		}
		if (r->rec.inflight >= r->cfg->recovery_qd)
			break;
		/* The members' links first: a link that is still connecting
		 * would fail every chunk queued on it at once.  Not forever: a
		 * member unreachable for 10 s is asked anyway (its chunks then
		 * count as not compared). */
		if (!links_live(r, to, nto))
			break;
		/* Holes cost no device time here (they read as zeros); the
		 * members may still hold blocks there, so they are asked
		 * too. */
		if (wf_store_holds(r->store, v->id, (uint32_t)sc->ext) &&
		    !wf_tgt_rop_budget(r, len))
			break;
		off = sc->ext * es + (uint64_t)sc->chunk * len;
		sc->inflight++;
		if (!wf_tgt_rop_start(r, WF_OP_CSUM, v->id, off, len, to, nto,
				      false, 0)) {
			sc->inflight--;
			break;
		}
		started++;
		if ((uint64_t)++sc->chunk * len >= es) {
			sc->chunk = 0;
			sc->ext++;
			looked++;
		}
	}
	if (sc->vol >= m->map.nvolumes && !sc->inflight && !sc->nretry) {
		sc->active = false;
		sc->done_gen = sc->gen;
		if (sc->mismatches || sc->errors || r->idx == 0)
			wf_tgt_log("reactor %u: scrub %u done: %llu MiB compared, "
				   "%llu chunks differed, %llu repaired, %llu "
				   "could not be compared", r->idx, sc->gen,
				   (unsigned long long)(sc->bytes >> 20),
				   (unsigned long long)sc->mismatches,
				   (unsigned long long)sc->repaired,
				   (unsigned long long)sc->errors);
	}
	return started || looked;
}

/* Which members differ from the primary's CRC; -1 when the primary is
 * the odd one out (two or more members agree on another CRC). */
static int differing(const struct wf_tgt_req *q, uint32_t *bad, unsigned *nbad,
		     unsigned *unanswered)
{
	*nbad = 0;
	*unanswered = 0;
	for (unsigned i = 0; i < q->nfwd; i++) {
		const struct wf_tgt_fwd *f = &q->fwd[i];

		if (f->status != WF_WS_OK) {
			(*unanswered)++;
			continue;
		}
		if (f->crc != q->crc)
			bad[(*nbad)++] = q->secondaries[i];
	}
	for (unsigned i = 0; i < q->nfwd; i++)
		for (unsigned j = i + 1; j < q->nfwd; j++)
			if (q->fwd[i].status == WF_WS_OK &&
			    q->fwd[j].status == WF_WS_OK &&
			    q->fwd[i].crc == q->fwd[j].crc &&
			    q->fwd[i].crc != q->crc)
				return -1;
	return 0;
}

void wf_tgt_scrub_op_done(struct wf_tgt_req *q, uint16_t status)
{
	struct wf_tgt_reactor *r = q->conn->r;
	struct wf_tgt_scrub *sc = &r->scrub;
	uint64_t vol = q->volume, off = q->offset;
	uint32_t len = q->length, bad[WF_TGT_MAX_FWD];
	unsigned nbad = 0, unanswered = 0;
	bool forwarded = q->state == RQ_FORWARD, odd = false, repair = q->repair;
	uint8_t tries = q->tries;

	if (repair) {
		if (forwarded && status == WF_WS_OK)
			sc->repaired++;
		else if (!retry_later(sc, vol, off, len, tries))
			sc->errors++;   /* (a retry compares it again) */
	} else if (!forwarded) {
		/* Our own read failed, or it waited across a map change. */
		if (!retry_later(sc, vol, off, len, tries))
			sc->errors++;
	} else if (differing(q, bad, &nbad, &unanswered), unanswered &&
		   retry_later(sc, vol, off, len, tries)) {
		/* A member did not answer: the whole chunk again, later. */
		nbad = 0;
	} else {
		odd = differing(q, bad, &nbad, &unanswered) < 0;
		sc->bytes += (uint64_t)len * (q->nfwd - unanswered);
		if (unanswered)
			sc->errors++;   /* out of tries */
		if (nbad || odd) {
			sc->mismatches++;
			if (!sc->said || odd)
				wf_tgt_log("scrub: volume %llu bytes %llu+%u: %s",
					   (unsigned long long)vol,
					   (unsigned long long)off, len, odd ?
					   "the primary (this target) differs from "
					   "members that agree with each other: not "
					   "repaired from it, check its device" :
					   "a member differs from the primary");
			sc->said = true;
		}
	}
	/* After forwards the order list was left (part_done); after a failed
	 * read, or a wait across a map change, it is still held. */
	if (q->ord_prev || q->ord_next || r->ord_head == q)
		wf_tgt_order_leave(r, q);
	wf_tgt_rop_put(q);
	if (!repair && nbad && !odd && sc->repair) {
		/* The slot just freed takes the repair: it reads the chunk
		 * again under the order list and writes it to those members
		 * only. */
		if (!wf_tgt_rop_start(r, WF_OP_WRITE, vol, off, len, bad, nbad, true,
				      tries)) {
			sc->errors++;
			sc->inflight--;
		}
		return;         /* the repair carries the pass's count on */
	}
	sc->inflight--;
}
