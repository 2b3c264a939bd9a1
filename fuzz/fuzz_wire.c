/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the wire header decoders.  Any bytes must be either
 * rejected with -EPROTO/-EINVAL and a reason, or accepted, in which case
 * encoding the result and decoding it again gives the same header.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_err(int ret, uint32_t why)
{
	if (ret != 0 && ret != -EPROTO && ret != -EINVAL)
		abort();
	if ((ret == 0) != (why == WF_WR_OK) || why >= WF_WR_MAX)
		abort();
}

static void req(const uint8_t *data, size_t size, const struct wf_req_limits *lim)
{
	struct wf_req a, b;
	struct wf_req_hdr h;
	uint32_t why = 12345;
	int ret = wf_req_decode(data, size, lim, &a, &why);

	check_err(ret, why);
	if (ret)
		return;
	wf_req_encode(&a, &h);
	if (wf_req_decode(&h, sizeof(h), lim, &b, &why))
		abort();
	if (a.opcode != b.opcode || a.flags != b.flags || a.tag != b.tag ||
	    a.volume != b.volume || a.offset != b.offset || a.epoch != b.epoch ||
	    a.length != b.length || a.slot != b.slot || a.data_crc != b.data_crc ||
	    a.buf.key != b.buf.key || a.buf.addr != b.buf.addr)
		abort();
	/* What the checks promise the data path. */
	if (a.slot >= lim->slot_count ||
	    ((a.opcode == WF_OP_READ || a.opcode == WF_OP_WRITE) &&
	     a.length > lim->slot_size))
		abort();
	if (a.opcode != WF_OP_FLUSH &&
	    (!a.length || a.length > lim->max_io || a.offset + a.length < a.offset))
		abort();
	if (memcmp(&h, data, sizeof(h)))
		abort();        /* accepted bytes are exactly the canonical image */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct wf_req_limits fixed = {
		.block_size = 512, .max_io = 1 << 20, .slot_count = 64,
		.slot_size = 131072,
	};
	struct wf_req_limits lim;
	struct wf_reply rp, rp2;
	struct wf_reply_hdr rh;
	struct wf_hello he, he2;
	struct wf_hello_hdr hh;
	struct wf_grant g, g2;
	struct wf_grant_hdr gh;
	uint32_t why = 12345;
	int ret;

	req(data, size, &fixed);
	if (size >= 16 + sizeof(struct wf_req_hdr)) {
		/* Limits from the input too, garbage included. */
		memcpy(&lim, data, sizeof(lim));
		req(data + 16, size - 16, &lim);
	}
	ret = wf_wire_peek(data, size, &why);
	if (ret < 0 ? ret != -EPROTO : (ret == 0 || ret >= WF_OP_MAX))
		abort();

	ret = wf_reply_decode(data, size, &rp, &why);
	check_err(ret, why);
	if (!ret) {
		wf_reply_encode(&rp, &rh);
		if (wf_reply_decode(&rh, sizeof(rh), &rp2, NULL) || rp.tag != rp2.tag ||
		    rp.status != rp2.status || memcmp(&rh, data, sizeof(rh)))
			abort();
	}
	ret = wf_hello_decode(data, size, &he, &why);
	check_err(ret, why);
	if (!ret) {
		wf_hello_encode(&he, &hh);
		if (wf_hello_decode(&hh, sizeof(hh), &he2, NULL) ||
		    he.client_id != he2.client_id || memcmp(&hh, data, sizeof(hh)))
			abort();
	}
	ret = wf_grant_decode(data, size, &g, &why);
	check_err(ret, why);
	if (!ret) {
		wf_grant_encode(&g, &gh);
		if (wf_grant_decode(&gh, sizeof(gh), &g2, NULL) ||
		    g.ring.len != g2.ring.len || memcmp(&gh, data, sizeof(gh)))
			abort();
		if (!g.status && (uint64_t)g.slot_count * g.slot_size != g.ring.len)
			abort();
	}
	(void)wf_crc32c(0, data, size);
	return 0;
}
