/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The map epoch a target serves, and the request validator.  Both are pure
 * code apart from loading the map file: the validator only reads its
 * arguments, so the fuzzer calls it directly.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "target/target.h"

static int vol_cmp(const void *a, const void *b)
{
	const struct wf_tgt_vol *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* prev, when given, is the epoch in force: the PG table is derived from
 * its table (only the PGs a change of a few targets' state or weight can
 * affect are placed again; anything else is a full build). */
static int map_build(struct wf_map *map, uint32_t target_id, const struct wf_tgt_map *prev,
		     struct wf_tgt_map **out, char *err, size_t errlen)
{
	struct wf_tgt_map *m;
	int ret;

	m = calloc(1, sizeof(*m));
	if (!m) {
		wf_map_free(map);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	m->map = *map;
	memset(map, 0, sizeof(*map));
	m->epoch = m->map.epoch;
	m->extent_size = m->map.extent_size;
	ret = wf_map_target_by_id(&m->map, target_id);
	m->self = ret < 0 ? -1 : ret;
	ret = wf_placer_init(&m->pl, &m->map);
	if (ret) {
		snprintf(err, errlen, "placement: %s", strerror(-ret));
		goto out_map;
	}
	if (prev) {
		ret = wf_pg_table_derive(&m->table, &prev->table, &prev->pl, &m->pl, &m->derive);
		m->derived = !ret && !m->derive.full;
	} else {
		ret = wf_pg_table_build(&m->table, &m->pl);
	}
	if (ret) {
		snprintf(err, errlen, "PG table: %s", strerror(-ret));
		goto out_placer;
	}
	m->nvols = m->map.nvolumes;
	m->vols = calloc(m->nvols ? m->nvols : 1, sizeof(*m->vols));
	if (!m->vols) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out_table;
	}
	for (uint32_t i = 0; i < m->nvols; i++) {
		m->vols[i].id = m->map.volumes[i].id;
		m->vols[i].size = m->map.volumes[i].size;
		m->vols[i].idx = i;
	}
	qsort(m->vols, m->nvols, sizeof(*m->vols), vol_cmp);
	*out = m;
	return 0;

out_table:
	wf_pg_table_free(&m->table);
out_placer:
	wf_placer_free(&m->pl);
out_map:
	wf_map_free(&m->map);
	free(m);
	return ret;
}

int wf_tgt_map_build(struct wf_map *map, uint32_t target_id,
		     struct wf_tgt_map **out, char *err, size_t errlen)
{
	return map_build(map, target_id, NULL, out, err, errlen);
}

int wf_tgt_map_load_next(const char *path, uint32_t target_id, const struct wf_tgt_map *prev,
			 struct wf_tgt_map **out, char *err, size_t errlen)
{
	struct wf_map_err merr;
	struct wf_map map;
	int ret;

	memset(&map, 0, sizeof(map));
	ret = wf_map_load(path, &map, &merr);
	if (ret) {
		snprintf(err, errlen, "%s", merr.msg);
		return ret;
	}
	return map_build(&map, target_id, prev, out, err, errlen);
}

int wf_tgt_map_load(const char *path, uint32_t target_id,
		    struct wf_tgt_map **out, char *err, size_t errlen)
{
	return wf_tgt_map_load_next(path, target_id, NULL, out, err, errlen);
}

void wf_tgt_map_free(struct wf_tgt_map *m)
{
	if (!m)
		return;
	free(m->vols);
	wf_pg_table_free(&m->table);
	wf_placer_free(&m->pl);
	wf_map_free(&m->map);
	free(m);
}

int wf_tgt_map_volume(const struct wf_tgt_map *m, uint64_t id)
{
	uint32_t lo = 0, hi = m->nvols;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (m->vols[mid].id == id)
			return (int)m->vols[mid].idx;
		if (m->vols[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

static int reject(struct wf_tgt_parsed *out, uint16_t status, uint32_t reason)
{
	out->status = status;
	out->reason = reason;
	return WF_TGT_REJECT;
}

int wf_tgt_req_parse(const void *msg, size_t len,
		     const struct wf_tgt_limits *lim,
		     const struct wf_tgt_map *m, struct wf_tgt_parsed *out)
{
	struct wf_req_limits wl;
	struct wf_req_hdr h;
	const struct wf_volume *v;
	struct wf_extent_loc loc;
	struct wf_req *q = &out->req;
	uint32_t slot, reason = WF_WR_OK, newc[WF_MAX_REPLICAS];
	unsigned nnew;
	uint64_t es;
	int ret, vi;

	memset(out, 0, sizeof(*out));
	out->vol_idx = -1;
	if (!msg || len != sizeof(h))
		goto malformed_short;
	/* A copy: the message may be in memory the peer can still change. */
	memcpy(&h, msg, sizeof(h));
	slot = le32toh(h.slot);
	wl.block_size = WF_STORE_BLOCK;
	wl.slot_count = lim->slot_count;
	wl.slot_size = lim->slot_size;
	es = m->extent_size;
	/* Discards may cover a whole extent; reads and writes are bounded by
	 * the slot in the decoder. */
	wl.max_io = (uint32_t)(es > lim->slot_size ? es : lim->slot_size);
	ret = wf_req_decode(&h, sizeof(h), &wl, q, &reason);
	if (ret == -EPROTO) {
		out->reason = reason;
		return WF_TGT_MALFORMED;
	}
	if (ret) {
		/* The decoder fills nothing on failure; the reply still
		 * needs the tag, and the slot decides who answers. */
		q->opcode = h.opcode;
		q->tag = le64toh(h.tag);
		q->length = le32toh(h.length);
		q->slot = slot;
		out->slot_ok = slot < lim->slot_count;
		return reject(out, WF_WS_INVALID | WF_WS_DNR, reason);
	}

	out->slot_ok = slot < lim->slot_count;
	/* Epoch first: a newer map may know the volume or the primary. */
	if (q->epoch < m->epoch)
		return reject(out, WF_WS_STALE, WF_TGT_R_STALE);
	if (q->epoch > m->epoch) {
		out->status = WF_WS_BUSY;
		out->reason = WF_TGT_R_NEWER;
		return WF_TGT_NEWER;
	}
	vi = wf_tgt_map_volume(m, q->volume);
	if (vi < 0)
		return reject(out, WF_WS_NOVOL | WF_WS_DNR, WF_TGT_R_NOVOL);
	out->vol_idx = vi;
	if (q->opcode == WF_OP_FLUSH)
		return WF_TGT_OK;
	v = &m->map.volumes[vi];
	/* The decoder has checked offset + length does not wrap. */
	if (q->offset >= v->size || q->length > v->size - q->offset)
		return reject(out, WF_WS_RANGE | WF_WS_DNR, WF_TGT_R_RANGE);
	if (q->offset / es != (q->offset + q->length - 1) / es)
		return reject(out, WF_WS_INVALID | WF_WS_DNR, WF_TGT_R_EXTENT);
	if (m->self < 0 ||
	    wf_place_extent(&m->table, &m->map, (uint32_t)vi, q->offset, &loc) ||
	    !loc.n)
		return reject(out, WF_WS_NOTPRIM, WF_TGT_R_NOTPRIM);
	out->pool = loc.pool;
	out->pg = loc.pg;
	nnew = wf_pg_newcomers(&m->table, loc.pool, loc.pg, newc);
	if (q->flags & WF_REQ_REPL) {
		/* A forward from the primary (the decoder allows the flag on
		 * WRITE, DISCARD and FLUSH): we must be a secondary of the PG
		 * in this epoch, or a member of its up set being brought up
		 * to date.  Not: the sender's map and ours disagree,
		 * retryable once they converge. */
		for (unsigned i = 1; i < loc.n; i++)
			if (loc.acting[i] == (uint32_t)m->self)
				return WF_TGT_OK;
		if (wf_set_has(newc, nnew, (uint32_t)m->self))
			return WF_TGT_OK;
		return reject(out, WF_WS_NOTPRIM, WF_TGT_R_REPL);
	}
	if (loc.acting[0] != (uint32_t)m->self)
		return reject(out, WF_WS_NOTPRIM, WF_TGT_R_NOTPRIM);
	/* Whose read leases a read needs (conn.c). */
	for (unsigned i = 1; i < loc.n; i++)
		out->others[out->nothers++] = loc.acting[i];
	if (q->opcode == WF_OP_WRITE || q->opcode == WF_OP_DISCARD) {
		/* Writes need min_size acting members (reads do not: the
		 * primary has every acknowledged write). */
		if (loc.n < m->map.pools[loc.pool].min_size)
			return reject(out, WF_WS_DEGRADED, WF_TGT_R_DEGRADED);
		for (unsigned i = 1; i < loc.n; i++)
			out->secondaries[out->nsec++] = loc.acting[i];
		/* Members being brought up to date get every write too, so
		 * the copy the primary sends them (recover.c) and the writes
		 * that follow it leave them current. */
		for (unsigned i = 0; i < nnew; i++)
			out->secondaries[out->nsec++] = newc[i];
	}
	return WF_TGT_OK;

malformed_short:
	out->reason = WF_WR_SHORT;
	return WF_TGT_MALFORMED;
}

const char *wf_tgt_reason_name(uint32_t reason)
{
	switch (reason) {
	case WF_TGT_R_STALE:   return "stale-epoch";
	case WF_TGT_R_NEWER:   return "newer-epoch";
	case WF_TGT_R_NOVOL:   return "unknown-volume";
	case WF_TGT_R_RANGE:   return "out-of-range";
	case WF_TGT_R_EXTENT:  return "crosses-extent";
	case WF_TGT_R_NOTPRIM: return "not-primary";
	case WF_TGT_R_REPL:    return "not-a-replica";
	case WF_TGT_R_DEGRADED: return "below-min-size";
	default:               return wf_wire_reason_name(reason);
	}
}
