/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: weft-target's request parser and validator
 * (wf_tgt_req_parse, target/req.c), the function every received request
 * goes through before anything touches the store or a slot.
 *
 * Input: byte 0 picks the connection's slot count (1..64), byte 1 the slot
 * size (4 KiB .. 256 KiB), byte 2 the map epoch (1..4) the target serves;
 * the rest is the message.  Whatever the bytes, the verdict is one of the
 * four, and an accepted request satisfies every promise the data path
 * relies on (slot in the ring, payload fits the slot, aligned, inside the
 * volume, inside one extent, this target leads the PG).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "target/target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char map_text[] =
	"epoch = %d;\ncluster_id = 1;\nextent_size = 65536;\n"
	"targets = (\n"
	"  { id = 0; host = \"a\"; addr = \"127.0.0.1\"; port = 1; device = \"/d0\"; },\n"
	"  { id = 1; host = \"b\"; addr = \"127.0.0.1\"; port = 2; device = \"/d1\"; }\n);\n"
	"pools = ( { name = \"p\"; id = 1; replicas = 1; min_size = 1;"
	" failure_domain = \"device\"; pg_num = 8; } );\n"
	"volumes = ( { name = \"v\"; id = 3; size = \"1M\"; pool = \"p\"; },\n"
	"            { name = \"w\"; id = 9; size = \"2M\"; pool = \"p\"; } );\n";

/* Maps of epochs 1..4, built once (the fuzzer's only state). */
static struct wf_tgt_map *maps[4];

static const struct wf_tgt_map *map_for(unsigned e)
{
	if (!maps[e]) {
		struct wf_map map;
		struct wf_map_err merr;
		char buf[sizeof(map_text) + 16], err[256];
		int n = snprintf(buf, sizeof(buf), map_text, (int)e + 1);

		if (wf_map_load_buf(buf, (size_t)n, "fuzz", &map, &merr) ||
		    wf_tgt_map_build(&map, 0, &maps[e], err, sizeof(err)))
			abort();
	}
	return maps[e];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wf_tgt_limits lim;
	struct wf_tgt_parsed p;
	const struct wf_tgt_map *m;
	const struct wf_req *q = &p.req;
	struct wf_extent_loc loc;
	int v, vi;

	if (size < 3)
		return 0;
	lim.slot_count = 1u + data[0] % 64;
	lim.slot_size = 4096u * (1u + data[1] % 64);
	m = map_for(data[2] % 4);
	v = wf_tgt_req_parse(data + 3, size - 3, &lim, m, &p);

	switch (v) {
	case WF_TGT_MALFORMED:
		return 0;
	case WF_TGT_NEWER:
		if (q->epoch <= m->epoch || p.status != WF_WS_BUSY)
			abort();
		return 0;
	case WF_TGT_REJECT:
		if (!p.status || (p.status & ~WF_WS_DNR) >= WF_WS_MAX)
			abort();
		if (p.slot_ok && q->slot >= lim.slot_count)
			abort();
		return 0;
	case WF_TGT_OK:
		break;
	default:
		abort();
	}
	/* Accepted: what conn.c and the store rely on. */
	if (size - 3 != sizeof(struct wf_req_hdr))
		abort();
	if (!wf_wire_op_is_req(q->opcode))
		abort();
	/* A CSUM only between targets. */
	if (q->opcode == WF_OP_CSUM && q->flags != WF_REQ_REPL)
		abort();
	if (!p.slot_ok || q->slot >= lim.slot_count || q->epoch != m->epoch)
		abort();
	vi = wf_tgt_map_volume(m, q->volume);
	if (vi < 0 || vi != p.vol_idx)
		abort();
	if (q->opcode == WF_OP_FLUSH)
		return 0;
	if (!q->length || (q->offset | q->length) % WF_STORE_BLOCK)
		abort();
	if ((q->opcode == WF_OP_READ || q->opcode == WF_OP_WRITE ||
	     q->opcode == WF_OP_CSUM) && q->length > lim.slot_size)
		abort();
	if (q->offset + q->length > m->map.volumes[vi].size ||
	    q->offset + q->length < q->offset)
		abort();
	if (q->offset / m->extent_size != (q->offset + q->length - 1) / m->extent_size)
		abort();
	if (wf_place_extent(&m->table, &m->map, (uint32_t)vi, q->offset, &loc) ||
	    !loc.n || loc.acting[0] != (uint32_t)m->self)
		abort();
	if (q->opcode == WF_OP_READ && !q->buf.key)
		abort();
	return 0;
}
