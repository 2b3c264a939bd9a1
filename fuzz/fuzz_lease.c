/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the target-to-target lease and map-pull decoders
 * (proto/lease.c: asks, answers, releases).  Any bytes are rejected with -EPROTO or decode into
 * fields that keep the documented bounds and, encoded again, decode to the
 * same fields.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ctl.h"
#include "proto/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wf_lease l, l2;
	struct wf_map_get g, g2;
	struct wf_map_chunk c, c2;
	struct wf_net_lease wl;
	struct wf_net_map_get wg;
	char wc[sizeof(struct wf_net_map_put) + WF_MAP_PUT_CHUNK];
	int ret;

	ret = wf_lease_decode(data, size, &l);
	if (ret && ret != -EPROTO)
		abort();
	if (!ret) {
		if (!l.epoch || l.lease_ms > WF_LEASE_MAX_MS ||
		    (l.flags != 0 && l.flags != WF_LEASE_ANSWER &&
		     l.flags != WF_LEASE_RELEASE))
			abort();
		/* A release carries nothing but who and which epoch. */
		if (l.flags == WF_LEASE_RELEASE && (l.status || l.lease_ms))
			abort();
		wf_lease_encode(&l, &wl);
		if (wf_lease_decode(&wl, sizeof(wl), &l2) || l2.flags != l.flags ||
		    l2.status != l.status || l2.tag != l.tag || l2.epoch != l.epoch ||
		    l2.target_id != l.target_id || l2.lease_ms != l.lease_ms)
			abort();
	}
	ret = wf_map_get_decode(data, size, &g);
	if (ret && ret != -EPROTO)
		abort();
	if (!ret) {
		wf_map_get_encode(&g, &wg);
		if (wf_map_get_decode(&wg, sizeof(wg), &g2) || g2.tag != g.tag ||
		    g2.epoch != g.epoch || g2.offset != g.offset)
			abort();
	}
	ret = wf_map_chunk_decode(data, size, &c);
	if (ret && ret != -EPROTO)
		abort();
	if (!ret) {
		if (c.len > WF_MAP_PUT_CHUNK || c.total > WF_MAP_PUT_MAX ||
		    (c.total && (c.offset >= c.total || c.len > c.total - c.offset)) ||
		    (const uint8_t *)c.data + c.len > data + size)
			abort();
		wf_map_chunk_encode(&c, (struct wf_net_map_put *)(void *)wc);
		memcpy(wc + sizeof(struct wf_net_map_put), c.data, c.len);
		if (wf_map_chunk_decode(wc, sizeof(struct wf_net_map_put) + c.len, &c2) ||
		    c2.tag != c.tag || c2.epoch != c.epoch || c2.total != c.total ||
		    c2.offset != c.offset || c2.len != c.len ||
		    memcmp(c2.data, c.data, c.len))
			abort();
	}
	return 0;
}
