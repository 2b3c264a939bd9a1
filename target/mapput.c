/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A map pushed over a data connection (proto/ctl.h, struct
 * wf_net_map_put): `weftctl` writes the next epoch and sends it to every
 * target it cannot reach through a control socket (other hosts).  The
 * chunks arrive in order on one connection; once the text is whole it must
 * parse, be of this cluster and newer than the map served; it then
 * replaces the target's map file (written beside it and renamed over it,
 * so a crash leaves the old file or the new one) and every reactor loads
 * it, as after SIGHUP.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "placement/map.h"
#include "proto/ctl.h"
#include "proto/file.h"
#include "target/target.h"

static void put_reset(struct wf_tgt_conn *c)
{
	free(c->put_buf);
	c->put_buf = NULL;
	c->put_got = c->put_total = 0;
	c->put_epoch = 0;
}

/* The whole text is in: check, save, load; the wire status to answer. */
static uint16_t put_apply(struct wf_tgt_conn *c)
{
	struct wf_tgt_reactor *r = c->r;
	struct wf_map_err err;
	struct wf_map m;
	uint64_t cluster, epoch;
	int ret;

	ret = wf_map_load_buf(c->put_buf, c->put_total, "pushed map", &m, &err);
	if (ret) {
		wf_tgt_log("map pushed on connection %u refused: %s", c->idx, err.msg);
		return WF_WS_INVALID | WF_WS_DNR;
	}
	cluster = m.cluster_id;
	epoch = m.epoch;
	wf_map_free(&m);
	if (cluster != r->map->map.cluster_id || epoch != c->put_epoch) {
		wf_tgt_log("map pushed on connection %u refused: %s", c->idx,
			   cluster != r->map->map.cluster_id ?
			   "another cluster's map" : "its epoch is not the one announced");
		return WF_WS_INVALID | WF_WS_DNR;
	}
	if (epoch <= r->map->epoch)
		return WF_WS_STALE;
	ret = wf_file_replace(r->cfg->map_path, c->put_buf, c->put_total, 0644);
	if (ret) {
		wf_tgt_log("map epoch %llu pushed: cannot write %s: %s",
			   (unsigned long long)epoch, r->cfg->map_path, strerror(-ret));
		return WF_WS_IO;
	}
	ret = wf_tgt_reload_all(r, "map pushed over the network");
	return ret ? WF_WS_IO : WF_WS_OK;
}

void wf_tgt_map_put(struct wf_tgt_conn *c, const void *msg, uint32_t len)
{
	struct wf_net_map_put h;
	uint32_t total, off, n;
	uint64_t epoch;
	uint16_t st;

	if (len < sizeof(h) || len > sizeof(h) + WF_MAP_PUT_CHUNK) {
		wf_tgt_conn_close(c, "bad MAP_PUT");
		return;
	}
	memcpy(&h, msg, sizeof(h));
	total = le32toh(h.total);
	off = le32toh(h.offset);
	epoch = le64toh(h.epoch);
	n = len - (uint32_t)sizeof(h);
	if (h.flags || h.reserved0 || !total || total > WF_MAP_PUT_MAX || !n ||
	    off != c->put_got || n > total - off ||
	    (off && (total != c->put_total || epoch != c->put_epoch))) {
		put_reset(c);
		wf_tgt_conn_close(c, "bad MAP_PUT");
		return;
	}
	if (!off) {
		free(c->put_buf);
		c->put_buf = malloc(total);
		if (!c->put_buf) {
			put_reset(c);
			wf_tgt_conn_status_reply(c, le64toh(h.tag), WF_WS_BUSY);
			return;
		}
		c->put_total = total;
		c->put_epoch = epoch;
	}
	memcpy(c->put_buf + off, (const char *)msg + sizeof(h), n);
	c->put_got += n;
	if (c->put_got < c->put_total)
		return;
	st = put_apply(c);
	put_reset(c);
	wf_tgt_conn_status_reply(c, le64toh(h.tag), st);
}
