/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The messages targets exchange for read leases and for pulling a newer
 * map from a peer (proto/ctl.h, struct wf_net_lease, wf_net_map_get, and
 * the WF_OP_MAP_PUT chunk that answers the latter).  Every field is
 * checked before anyone uses it (fuzz/fuzz_lease.c drives the decoders).
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "proto/ctl.h"
#include "proto/wire.h"

static int head_ok(const void *buf, uint8_t op)
{
	const uint8_t *b = buf;
	uint16_t magic;

	memcpy(&magic, b, 2);
	return le16toh(magic) == WF_WIRE_MAGIC && b[2] == WF_WIRE_VERSION &&
	       b[3] == op;
}

void wf_lease_encode(const struct wf_lease *l, struct wf_net_lease *w)
{
	memset(w, 0, sizeof(*w));
	w->magic = htole16(WF_WIRE_MAGIC);
	w->version = WF_WIRE_VERSION;
	w->opcode = WF_OP_LEASE;
	w->flags = htole16(l->flags);
	w->status = htole16(l->status);
	w->tag = htole64(l->tag);
	w->epoch = htole64(l->epoch);
	w->target_id = htole32(l->target_id);
	w->lease_ms = htole32(l->lease_ms);
}

int wf_lease_decode(const void *buf, size_t len, struct wf_lease *out)
{
	struct wf_net_lease w;

	if (!buf || len != sizeof(w) || !head_ok(buf, WF_OP_LEASE))
		return -EPROTO;
	memcpy(&w, buf, sizeof(w));
	out->flags = le16toh(w.flags);
	out->status = le16toh(w.status);
	out->tag = le64toh(w.tag);
	out->epoch = le64toh(w.epoch);
	out->target_id = le32toh(w.target_id);
	out->lease_ms = le32toh(w.lease_ms);
	if ((out->flags & ~(WF_LEASE_ANSWER | WF_LEASE_RELEASE)) || !out->epoch)
		return -EPROTO;
	if (out->flags & WF_LEASE_RELEASE)
		return out->flags != WF_LEASE_RELEASE || out->status ||
		       out->lease_ms ? -EPROTO : 0;
	if (!(out->flags & WF_LEASE_ANSWER))
		return out->status || !out->lease_ms ||
		       out->lease_ms > WF_LEASE_MAX_MS ? -EPROTO : 0;
	if (out->status != WF_WS_OK && out->status != WF_WS_STALE &&
	    out->status != WF_WS_BUSY)
		return -EPROTO;
	if (out->lease_ms > WF_LEASE_MAX_MS ||
	    (out->status != WF_WS_OK && out->lease_ms))
		return -EPROTO;
	return 0;
}

void wf_map_get_encode(const struct wf_map_get *g, struct wf_net_map_get *w)
{
	memset(w, 0, sizeof(*w));
	w->magic = htole16(WF_WIRE_MAGIC);
	w->version = WF_WIRE_VERSION;
	w->opcode = WF_OP_MAP_GET;
	w->tag = htole64(g->tag);
	w->epoch = htole64(g->epoch);
	w->offset = htole32(g->offset);
}

int wf_map_get_decode(const void *buf, size_t len, struct wf_map_get *out)
{
	struct wf_net_map_get w;

	if (!buf || len != sizeof(w) || !head_ok(buf, WF_OP_MAP_GET))
		return -EPROTO;
	memcpy(&w, buf, sizeof(w));
	if (w.flags || w.reserved0 || w.reserved1)
		return -EPROTO;
	out->tag = le64toh(w.tag);
	out->epoch = le64toh(w.epoch);
	out->offset = le32toh(w.offset);
	if (!out->epoch || out->offset >= WF_MAP_PUT_MAX)
		return -EPROTO;
	return 0;
}

void wf_map_chunk_encode(const struct wf_map_chunk *c, struct wf_net_map_put *w)
{
	memset(w, 0, sizeof(*w));
	w->magic = htole16(WF_WIRE_MAGIC);
	w->version = WF_WIRE_VERSION;
	w->opcode = WF_OP_MAP_PUT;
	w->tag = htole64(c->tag);
	w->epoch = htole64(c->epoch);
	w->total = htole32(c->total);
	w->offset = htole32(c->offset);
}

int wf_map_chunk_decode(const void *buf, size_t len, struct wf_map_chunk *out)
{
	struct wf_net_map_put w;

	if (!buf || len < sizeof(w) || len > sizeof(w) + WF_MAP_PUT_CHUNK ||
	    !head_ok(buf, WF_OP_MAP_PUT))
		return -EPROTO;
	memcpy(&w, buf, sizeof(w));
	if (w.flags || w.reserved0)
		return -EPROTO;
	out->tag = le64toh(w.tag);
	out->epoch = le64toh(w.epoch);
	out->total = le32toh(w.total);
	out->offset = le32toh(w.offset);
	out->len = (uint32_t)(len - sizeof(w));
	out->data = (const char *)buf + sizeof(w);
	if (out->total > WF_MAP_PUT_MAX)
		return -EPROTO;
	if (!out->total)
		return out->len || out->offset ? -EPROTO : 0;
	if (!out->len || !out->epoch || out->offset >= out->total ||
	    out->len > out->total - out->offset)
		return -EPROTO;
	return 0;
}
