/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Prometheus metrics (`weft-target --metrics ADDR:PORT`, off by default):
 * GET /metrics answers the text exposition format (version 0.0.4) from
 * libmicrohttpd's own thread.  It reads only what other threads may read:
 * the reactors' counters (each written by its reactor alone, loaded
 * relaxed), the store's allocator counts, the epoch reactor 0 publishes.
 * Nothing here touches the data path; a scrape costs the reactors
 * nothing.  Names and meanings: docs/target.md, "Metrics".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "fabric/fabric.h"
#include "proto/ctl.h"
#include "proto/wire.h"
#include "target/target.h"
#include "weft_version.h"

struct wf_tgt_metrics {
	struct MHD_Daemon *d;
	struct wf_tgt *t;
	const struct wf_tgt_cfg *cfg;
	struct wf_store *store;
	uint64_t started_ns;
};

/* The bucket bounds of stats.lat, in seconds (conn.c: lat_bucket). */
static const char *const lat_le[WF_TGT_LAT_BUCKETS] = {
	"1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001",
	"0.0025", "0.005", "0.01", "0.025", "0.1", "1", "+Inf",
};

struct out {
	char  *buf;
	size_t len, cap;
	bool   oom;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(o->buf ? o->buf + o->len : NULL,
			      o->buf ? o->cap - o->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->oom = true;
			return;
		}
		if (o->buf && o->len + (size_t)n < o->cap) {
			o->len += (size_t)n;
			return;
		}
		{
			size_t cap = o->cap ? 2 * o->cap : 16384;
			char *nb;

			while (cap < o->len + (size_t)n + 1)
				cap *= 2;
			nb = realloc(o->buf, cap);
			if (!nb) {
				o->oom = true;
				return;
			}
			o->buf = nb;
			o->cap = cap;
		}
	}
}

static void head(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *status_label(unsigned s)
{
	static char buf[8][24];
	static unsigned k;
	const char *n = wf_wire_status_name((uint16_t)s);

	/* wf_wire_status_name gives short names already; keep them. */
	snprintf(buf[k % 8], sizeof(buf[0]), "%s", n ? n : "unknown");
	return buf[k++ % 8];
}

static void render(struct wf_tgt_metrics *m, struct out *o)
{
	struct wf_tgt *t = m->t;
	struct wf_tgt_stats sum;
	struct wf_store_stat st;
	struct wf_fab_counts fc = { 0 };
	uint64_t lat[2][WF_TGT_LAT_BUCKETS] = { { 0 } }, lat_ns[2] = { 0 };
	uint64_t by_status[16] = { 0 }, rbytes = 0, rleft = 0, scrub_mis = 0, scrub_rep = 0;
	uint64_t rlog[2] = { 0 }, rfull[2] = { 0 };   /* PGs, bytes */
	uint32_t conns = 0, inflight = 0, rpgs = 0, rdeg = 0;

	memset(&sum, 0, sizeof(sum));
	for (unsigned i = 0; i < t->n; i++) {
		const struct wf_tgt_reactor *r = t->r[i];

		if (!r)
			continue;
		sum.reads += WF_TGT_GET(r->stats.reads);
		sum.writes += WF_TGT_GET(r->stats.writes);
		sum.flushes += WF_TGT_GET(r->stats.flushes);
		sum.discards += WF_TGT_GET(r->stats.discards);
		sum.read_bytes += WF_TGT_GET(r->stats.read_bytes);
		sum.write_bytes += WF_TGT_GET(r->stats.write_bytes);
		sum.fua_writes += WF_TGT_GET(r->stats.fua_writes);
		sum.errors += WF_TGT_GET(r->stats.errors);
		sum.invalid += WF_TGT_GET(r->stats.invalid);
		sum.closed_bad += WF_TGT_GET(r->stats.closed_bad);
		sum.accepted += WF_TGT_GET(r->stats.accepted);
		sum.refused += WF_TGT_GET(r->stats.refused);
		sum.auth_ok += WF_TGT_GET(r->stats.auth_ok);
		sum.auth_refused += WF_TGT_GET(r->stats.auth_refused);
		sum.auth_revoked += WF_TGT_GET(r->stats.auth_revoked);
		sum.key_refused += WF_TGT_GET(r->stats.key_refused);
		sum.key_waits += WF_TGT_GET(r->stats.key_waits);
		sum.lease_granted += WF_TGT_GET(r->stats.lease_granted);
		sum.lease_refused += WF_TGT_GET(r->stats.lease_refused);
		sum.reads_unleased += WF_TGT_GET(r->stats.reads_unleased);
		sum.writes_held += WF_TGT_GET(r->stats.writes_held);
		sum.maps_pulled += WF_TGT_GET(r->stats.maps_pulled);
		sum.releases_sent += WF_TGT_GET(r->stats.releases_sent);
		sum.releases_received += WF_TGT_GET(r->stats.releases_received);
		sum.holds_released += WF_TGT_GET(r->stats.holds_released);
		sum.writes_released += WF_TGT_GET(r->stats.writes_released);
		sum.forwards += WF_TGT_GET(r->stats.forwards);
		sum.csums += WF_TGT_GET(r->stats.csums);
		for (unsigned s = 0; s < 16; s++)
			by_status[s] += WF_TGT_GET(r->stats.by_status[s]);
		for (unsigned w = 0; w < 2; w++) {
			for (unsigned b = 0; b < WF_TGT_LAT_BUCKETS; b++)
				lat[w][b] += WF_TGT_GET(r->stats.lat[w][b]);
			lat_ns[w] += WF_TGT_GET(r->stats.lat_ns[w]);
		}
		conns += WF_TGT_GET(r->nconns);
		inflight += WF_TGT_GET(r->store_inflight);
		rbytes += __atomic_load_n(&r->rec.bytes, __ATOMIC_RELAXED);
		rlog[0] += WF_TGT_GET(r->rec.log_total);
		rlog[1] += WF_TGT_GET(r->rec.log_bytes);
		rfull[0] += WF_TGT_GET(r->rec.full_total);
		rfull[1] += WF_TGT_GET(r->rec.full_bytes);
		if (__atomic_load_n(&r->rec.active, __ATOMIC_RELAXED)) {
			uint32_t p = __atomic_load_n(&r->rec.pgs, __ATOMIC_RELAXED);

			rpgs = p > rpgs ? p : rpgs;
			rleft += __atomic_load_n(&r->rec.bytes_left, __ATOMIC_RELAXED);
		}
		rdeg = __atomic_load_n(&r->rec.degraded, __ATOMIC_RELAXED);
		scrub_mis += __atomic_load_n(&r->scrub.mismatches, __ATOMIC_RELAXED);
		scrub_rep += __atomic_load_n(&r->scrub.repaired, __ATOMIC_RELAXED);
		for (unsigned f = 0; f < r->nfab; f++) {
			struct wf_fab_counts k;

			wf_ctx_counts(r->fab[f].ctx, &k);
			fc.sends += k.sends;
			fc.writes += k.writes;
			fc.reads += k.reads;
			fc.recvs += k.recvs;
			fc.cqes += k.cqes;
		}
	}
	wf_store_stat(m->store, &st);

	head(o, "weft_target_info", "gauge", "The target: its id and weft's version (value 1).");
	put(o, "weft_target_info{target=\"%u\",version=\"%s\"} 1\n", m->cfg->id,
	    WEFT_PROJECT_VERSION);
	head(o, "weft_map_epoch", "gauge", "The cluster map epoch the target serves.");
	put(o, "weft_map_epoch %llu\n",
	    (unsigned long long)__atomic_load_n(&t->epoch, __ATOMIC_RELAXED));
	head(o, "weft_uptime_seconds", "gauge", "Seconds since the target started.");
	put(o, "weft_uptime_seconds %.3f\n", (wf_tgt_now_ns() - m->started_ns) / 1e9);

	head(o, "weft_requests_total", "counter", "Requests served, by operation.");
	put(o, "weft_requests_total{op=\"read\"} %llu\n", (unsigned long long)sum.reads);
	put(o, "weft_requests_total{op=\"write\"} %llu\n", (unsigned long long)sum.writes);
	put(o, "weft_requests_total{op=\"flush\"} %llu\n", (unsigned long long)sum.flushes);
	put(o, "weft_requests_total{op=\"discard\"} %llu\n", (unsigned long long)sum.discards);
	put(o, "weft_requests_total{op=\"csum\"} %llu\n", (unsigned long long)sum.csums);
	head(o, "weft_bytes_total", "counter", "Bytes read and written by requests.");
	put(o, "weft_bytes_total{op=\"read\"} %llu\n", (unsigned long long)sum.read_bytes);
	put(o, "weft_bytes_total{op=\"write\"} %llu\n", (unsigned long long)sum.write_bytes);
	head(o, "weft_fua_writes_total", "counter", "Writes with FUA (durable before the answer).");
	put(o, "weft_fua_writes_total %llu\n", (unsigned long long)sum.fua_writes);
	head(o, "weft_answers_total", "counter", "Answers by wire status (docs/protocol.md).");
	for (unsigned s = 0; s < WF_WS_MAX && s < 16; s++)
		put(o, "weft_answers_total{status=\"%s\"} %llu\n", status_label(s),
		    (unsigned long long)by_status[s]);
	head(o, "weft_request_errors_total", "counter", "Requests answered with an error.");
	put(o, "weft_request_errors_total %llu\n", (unsigned long long)sum.errors);
	for (unsigned w = 0; w < 2; w++) {
		uint64_t cum = 0;

		if (!w)
			head(o, "weft_request_latency_seconds", "histogram",
			     "From a client's request arriving to its answer being "
			     "posted (reads and writes; replica forwards not counted).");
		for (unsigned b = 0; b < WF_TGT_LAT_BUCKETS; b++) {
			cum += lat[w][b];
			put(o, "weft_request_latency_seconds_bucket{op=\"%s\",le=\"%s\"} %llu\n",
			    w ? "write" : "read", lat_le[b], (unsigned long long)cum);
		}
		put(o, "weft_request_latency_seconds_sum{op=\"%s\"} %.9f\n",
		    w ? "write" : "read", lat_ns[w] / 1e9);
		put(o, "weft_request_latency_seconds_count{op=\"%s\"} %llu\n",
		    w ? "write" : "read", (unsigned long long)cum);
	}
	head(o, "weft_connections", "gauge", "Data connections open.");
	put(o, "weft_connections %u\n", conns);
	head(o, "weft_connections_max", "gauge", "Connections that can be open (--max-conns x reactors).");
	put(o, "weft_connections_max %u\n", m->cfg->max_conns * t->n);
	head(o, "weft_connections_total", "counter", "Connections accepted and refused.");
	put(o, "weft_connections_total{result=\"accepted\"} %llu\n", (unsigned long long)sum.accepted);
	put(o, "weft_connections_total{result=\"refused\"} %llu\n", (unsigned long long)sum.refused);
	put(o, "weft_connections_total{result=\"closed_bad\"} %llu\n", (unsigned long long)sum.closed_bad);
	head(o, "weft_auth_total", "counter", "Key exchanges (data connections and the control socket): proved, refused, and connections closed by a revocation.");
	put(o, "weft_auth_total{result=\"ok\"} %llu\n", (unsigned long long)sum.auth_ok);
	put(o, "weft_auth_total{result=\"refused\"} %llu\n", (unsigned long long)sum.auth_refused);
	put(o, "weft_auth_total{result=\"revoked\"} %llu\n", (unsigned long long)sum.auth_revoked);
	head(o, "weft_key_limits_total", "counter", "Limits per key (docs/security.md): connections refused QUOTA (a key over --max-conns-per-key or --max-slots-per-key), requests that waited for --max-inflight-per-key.");
	put(o, "weft_key_limits_total{result=\"refused\"} %llu\n", (unsigned long long)sum.key_refused);
	put(o, "weft_key_limits_total{result=\"waited\"} %llu\n", (unsigned long long)sum.key_waits);
	head(o, "weft_read_leases_total", "counter",
	     "Read lease asks of other targets, granted or refused (docs/replication.md).");
	put(o, "weft_read_leases_total{result=\"granted\"} %llu\n",
	    (unsigned long long)sum.lease_granted);
	put(o, "weft_read_leases_total{result=\"refused\"} %llu\n",
	    (unsigned long long)sum.lease_refused);
	head(o, "weft_reads_unleased_total", "counter",
	     "Reads answered DEGRADED because a member's read lease was missing or had lapsed.");
	put(o, "weft_reads_unleased_total %llu\n", (unsigned long long)sum.reads_unleased);
	head(o, "weft_writes_held_total", "counter",
	     "Writes held until a read lease granted to a former primary lapsed.");
	put(o, "weft_writes_held_total %llu\n", (unsigned long long)sum.writes_held);
	head(o, "weft_lease_releases_total", "counter",
	     "Read leases of older epochs given back early: sent to members, received from former primaries.");
	put(o, "weft_lease_releases_total{dir=\"sent\"} %llu\n",
	    (unsigned long long)sum.releases_sent);
	put(o, "weft_lease_releases_total{dir=\"received\"} %llu\n",
	    (unsigned long long)sum.releases_received);
	head(o, "weft_holds_released_total", "counter",
	     "PG write holds a release ended before they lapsed (each reactor counts its own).");
	put(o, "weft_holds_released_total %llu\n", (unsigned long long)sum.holds_released);
	head(o, "weft_writes_released_total", "counter",
	     "Held writes started by a release, before their hold would have lapsed.");
	put(o, "weft_writes_released_total %llu\n", (unsigned long long)sum.writes_released);
	head(o, "weft_maps_pulled_total", "counter",
	     "Newer maps pulled from another target that refused a lease.");
	put(o, "weft_maps_pulled_total %llu\n", (unsigned long long)sum.maps_pulled);
	head(o, "weft_inflight_requests", "gauge", "Store requests (and forwards) in flight: staging slots in use.");
	put(o, "weft_inflight_requests %u\n", inflight);
	head(o, "weft_slots", "gauge", "Staging slots per connection and their size in bytes.");
	put(o, "weft_slots{what=\"per_connection\"} %u\n", m->cfg->slots);
	put(o, "weft_slots{what=\"bytes\"} %u\n", m->cfg->slot_size);
	head(o, "weft_store_extents", "gauge", "Extents of the device, by state.");
	put(o, "weft_store_extents{state=\"used\"} %llu\n", (unsigned long long)st.used);
	put(o, "weft_store_extents{state=\"free\"} %llu\n", (unsigned long long)st.free);
	head(o, "weft_store_extent_bytes", "gauge", "Bytes per extent.");
	put(o, "weft_store_extent_bytes %u\n", st.extent_size);
	head(o, "weft_forwards_total", "counter", "Replica forwards posted to other targets.");
	put(o, "weft_forwards_total %llu\n", (unsigned long long)sum.forwards);
	head(o, "weft_pgs", "gauge", "PGs this target leads, by state.");
	put(o, "weft_pgs{state=\"recovering\"} %u\n", rpgs);
	put(o, "weft_pgs{state=\"degraded\"} %u\n", rdeg);
	head(o, "weft_recovery_bytes_total", "counter", "Bytes copied to new members this epoch.");
	put(o, "weft_recovery_bytes_total %llu\n", (unsigned long long)rbytes);
	head(o, "weft_recovery_bytes_left", "gauge", "Bytes this epoch's recovery pass "
	     "has still to copy (each member counted; 0 when none runs).");
	put(o, "weft_recovery_bytes_left %llu\n", (unsigned long long)rleft);
	head(o, "weft_recovered_pgs_total", "counter", "PG recoveries finished since start, "
	     "from the log of recent writes or whole.");
	put(o, "weft_recovered_pgs_total{how=\"log\"} %llu\n", (unsigned long long)rlog[0]);
	put(o, "weft_recovered_pgs_total{how=\"whole\"} %llu\n", (unsigned long long)rfull[0]);
	head(o, "weft_recovered_bytes_total", "counter", "Bytes copied by those recoveries "
	     "(each member counted).");
	put(o, "weft_recovered_bytes_total{how=\"log\"} %llu\n", (unsigned long long)rlog[1]);
	put(o, "weft_recovered_bytes_total{how=\"whole\"} %llu\n", (unsigned long long)rfull[1]);
	head(o, "weft_scrub_chunks_total", "counter", "Chunks of the current or last scrub, by outcome.");
	put(o, "weft_scrub_chunks_total{result=\"differed\"} %llu\n", (unsigned long long)scrub_mis);
	put(o, "weft_scrub_chunks_total{result=\"repaired\"} %llu\n", (unsigned long long)scrub_rep);
	head(o, "weft_fabric_operations_total", "counter", "Fabric operations of every reactor.");
	put(o, "weft_fabric_operations_total{op=\"send\"} %llu\n", (unsigned long long)fc.sends);
	put(o, "weft_fabric_operations_total{op=\"write\"} %llu\n", (unsigned long long)fc.writes);
	put(o, "weft_fabric_operations_total{op=\"read\"} %llu\n", (unsigned long long)fc.reads);
	put(o, "weft_fabric_operations_total{op=\"recv\"} %llu\n", (unsigned long long)fc.recvs);
	put(o, "weft_fabric_operations_total{op=\"completion\"} %llu\n", (unsigned long long)fc.cqes);
	head(o, "weft_etcd_state", "gauge", "0: a map file only, 1: etcd connected, 2: etcd unreachable.");
	put(o, "weft_etcd_state %u\n", __atomic_load_n(&t->etcd_state, __ATOMIC_RELAXED));
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version,
			      const char *data, size_t *len, void **state)
{
	struct wf_tgt_metrics *m = cls;
	struct MHD_Response *resp;
	struct out o = { 0 };
	enum MHD_Result ret;
	unsigned code = MHD_HTTP_OK;

	(void)version;
	(void)data;
	(void)len;
	(void)state;
	if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
		put(&o, "only GET\n");
		code = MHD_HTTP_METHOD_NOT_ALLOWED;
	} else if (strcmp(url, "/metrics")) {
		put(&o, "weft-target serves /metrics\n");
		code = MHD_HTTP_NOT_FOUND;
	} else {
		render(m, &o);
	}
	if (o.oom) {
		free(o.buf);
		return MHD_NO;
	}
	resp = MHD_create_response_from_buffer(o.len, o.buf, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(o.buf);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", code == MHD_HTTP_OK ?
				"text/plain; version=0.0.4; charset=utf-8" : "text/plain");
	ret = MHD_queue_response(c, code, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* "HOST:PORT" (IPv4, or [IPv6]:PORT) into sa. */
static int parse_addr(const char *s, struct sockaddr_storage *sa, socklen_t *len)
{
	char host[64];
	const char *c = strrchr(s, ':');
	char *end;
	unsigned long port;
	size_t hl;

	if (!c || c == s)
		return -EINVAL;
	port = strtoul(c + 1, &end, 10);
	if (*end || port > 65535 || c[1] == '\0')
		return -EINVAL;
	hl = (size_t)(c - s);
	if (s[0] == '[' && hl > 2 && s[hl - 1] == ']') {
		s++;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	memset(sa, 0, sizeof(*sa));
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)sa)->sin_addr) == 1) {
		((struct sockaddr_in *)sa)->sin_family = AF_INET;
		((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
		*len = sizeof(struct sockaddr_in);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)sa)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)sa)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
		*len = sizeof(struct sockaddr_in6);
		return 0;
	}
	return -EINVAL;
}

int wf_tgt_metrics_start(struct wf_tgt *t, const struct wf_tgt_cfg *cfg,
			 struct wf_store *store, struct wf_tgt_metrics **out,
			 char *err, size_t errlen)
{
	struct wf_tgt_metrics *m;
	struct sockaddr_storage sa;
	socklen_t salen;
	const union MHD_DaemonInfo *di;
	char path[300];
	FILE *f;
	unsigned port;

	if (parse_addr(cfg->metrics, &sa, &salen)) {
		snprintf(err, errlen, "--metrics %s: not HOST:PORT (an IPv4 or [IPv6] "
			 "address)", cfg->metrics);
		return -EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->t = t;
	m->cfg = cfg;
	m->store = store;
	m->started_ns = wf_tgt_now_ns();
	m->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
				(sa.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
				0, NULL, NULL, answer, m,
				MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				MHD_OPTION_CONNECTION_LIMIT, 16u,
				MHD_OPTION_CONNECTION_TIMEOUT, 10u,
				MHD_OPTION_END);
	if (!m->d) {
		snprintf(err, errlen, "--metrics %s: cannot listen there", cfg->metrics);
		free(m);
		return -EADDRINUSE;
	}
	di = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
	port = di ? di->port : 0;
	/* Where it listens (a port 0 was picked by the kernel), for tools. */
	snprintf(path, sizeof(path), "%s/target-%u.metrics", cfg->run_dir, cfg->id);
	f = fopen(path, "w");
	if (f) {
		char host[64] = "";
		const char *c = strrchr(cfg->metrics, ':');

		snprintf(host, sizeof(host), "%.*s", (int)(c - cfg->metrics), cfg->metrics);
		fprintf(f, "http://%s:%u/metrics\n", host, port);
		fclose(f);
	}
	wf_tgt_log("metrics on http://%s (port %u)/metrics", cfg->metrics, port);
	*out = m;
	return 0;
}

void wf_tgt_metrics_stop(struct wf_tgt_metrics *m)
{
	char path[300];

	if (!m)
		return;
	MHD_stop_daemon(m->d);
	snprintf(path, sizeof(path), "%s/target-%u.metrics", m->cfg->run_dir, m->cfg->id);
	unlink(path);
	free(m);
}
