/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weftctl status: which targets of a map answer, their epoch, used and
 * free extents.  A target on this host is asked through its control
 * socket (RUN_DIR/target-ID.ctl); any other through its data address
 * (WF_OP_STATUS, the same answer).
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fabric/fabric.h"
#include "proto/auth.h"
#include "proto/wire.h"
#include "weftctl/ctl.h"
#include "placement/map.h"
#include "proto/ctl.h"

static int status_usage(FILE *f)
{
	fprintf(f, "usage: weftctl status -c MAP [--run-dir D] [--timeout MS] [--json]\n"
		"  Ask every target of MAP whether it answers: through its control\n"
		"  socket D/target-ID.ctl when it is on this host (D: --run-dir, else\n"
		"  $WEFT_RUN_DIR, else /run/weft), else through its data address.\n"
		"  USED and FREE: bytes of the device's extents (every replica).\n"
		"  Exit 0 if every target the map says is up answered, 1 if not,\n"
		"  2 on bad arguments.\n");
	return f == stdout ? 0 : 2;
}

int ctl_ask_local(const char *run_dir, uint32_t id, uint16_t op, uint64_t epoch,
		  uint64_t arg0, uint64_t arg1, int ms, struct wf_ctl_status *st)
{
	int ret = ctl_call(run_dir, id, op, epoch, arg0, arg1, ms, st, sizeof(*st));

	/* A target of version 6 closes on a request of 7: a STATUS (which
	 * changes nothing) asked again in 6, the rest of *st zero
	 * (st->version says which layout came). */
	if (ret == -EPROTO && op == WF_CTL_STATUS) {
		memset(st, 0, sizeof(*st));
		ret = ctl_call(run_dir, id, op, epoch, arg0, arg1, ms, st,
			       WF_CTL_STATUS_V6_SIZE);
	}
	return ret;
}

int ctl_call(const char *run_dir, uint32_t id, uint16_t op, uint64_t epoch,
	     uint64_t arg, uint64_t arg2, int ms, void *ans, size_t len)
{
	/* The lowest version that has the op, and for a whole status the
	 * version whose layout it is. */
	uint16_t ver = wf_ctl_op_version(op);

	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const struct wf_key *k;
	struct wf_ctl_req q;
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	ssize_t got;
	int fd, n, ret = 0;

	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/target-%u.ctl", run_dir, id);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (op != WF_CTL_SHORTCIRCUIT && op != WF_CTL_VOLUME_USAGE &&
	    len > WF_CTL_STATUS_V2_SIZE)
		ver = len == WF_CTL_STATUS_V6_SIZE ? 6 : WF_CTL_VERSION;
	wf_ctl_req_encode_v(&q, ver, op, epoch, arg, arg2);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		ret = -errno;
	/* With a key, proved first (the control socket's transcript is
	 * over cluster id 0, docs/protocol.md). */
	if (!ret && (k = ctl_auth_key()) != NULL) {
		ret = wf_auth_client_fd(fd, k->secret, k->name, 0,
					1ull << 62 | (uint64_t)getpid(), id);
		if (ret == -EACCES)
			fprintf(stderr, "weftctl: key %s failed on the control "
				"socket of target %u (unknown or revoked there, or "
				"another secret under that name)\n", k->name, id);
	}
	if (!ret && send(fd, &q, sizeof(q), MSG_NOSIGNAL) != (ssize_t)sizeof(q))
		ret = -errno;
	if (!ret && (got = recv(fd, ans, len, MSG_TRUNC)) < 0)
		ret = -errno;
	else if (!ret && wf_ctl_answer_check(ans, (size_t)got, len, op))
		ret = -EPROTO;  /* an older target answers an op it lacks
				 * with a short status (-EPROTO too) */
	close(fd);
	return ret;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Post msg on ep, reaping completions while the send queue is full. */
static int send_all(struct wf_ctx *ctx, struct wf_ep *ep, const void *msg,
		    uint32_t len, int64_t end)
{
	struct wf_cqe cq[8];
	int ret;

	while ((ret = wf_send(ep, msg, len, 1)) == -EAGAIN && now_ms() < end) {
		int n = wf_poll(ctx, cq, 8);

		for (int i = 0; i < n; i++)
			if (cq[i].op == WF_CQE_DISCONNECT)
				return -ECONNRESET;
		if (!n)
			nanosleep(&(struct timespec){ .tv_nsec = 100000 }, NULL);
	}
	return ret;
}

/*
 * Over t's data address (no HELLO, no slot): text NULL, a STATUS; else
 * push the map text (len bytes, epoch) in WF_OP_MAP_PUT chunks.  Either
 * way the answer is a STATUS_REPLY: 0 with *st (and *wstatus, the wire
 * status), or -errno.
 */
/* One message of the peer before end (ms): 0 with it in buf (its length
 * in *got), or -errno. */
static int recv_one(struct wf_ctx *ctx, int64_t end, void *buf, size_t cap,
		    uint32_t *got)
{
	struct wf_cqe cq[8];

	while (now_ms() < end) {
		struct pollfd pfd = { .fd = wf_ctx_fd(ctx), .events = POLLIN };
		int n = wf_poll(ctx, cq, 8), ret = -ETIMEDOUT;

		for (int i = 0; i < n; i++) {
			if (cq[i].op == WF_CQE_DISCONNECT && ret == -ETIMEDOUT)
				ret = -ECONNRESET;
			else if (cq[i].op == WF_CQE_RECV_MSG && ret == -ETIMEDOUT) {
				if (cq[i].len > cap)
					return -EPROTO;
				memcpy(buf, cq[i].msg, cq[i].len);
				*got = cq[i].len;
				ret = 0;
			}
		}
		if (ret != -ETIMEDOUT)
			return ret;
		if (!n && !wf_ctx_arm(ctx))
			poll(&pfd, 1, 10);
	}
	return -ETIMEDOUT;
}

/* The exchange of docs/protocol.md ("Authentication") on ep, as a client
 * with ctl_auth_key's key: 0 (or no key: nothing done), -EACCES (refused,
 * or the target did not prove it holds the key; said on stderr), -errno. */
static int authenticate(struct wf_ctx *ctx, struct wf_ep *ep,
			const struct wf_target *t, uint64_t cluster_id, int64_t end)
{
	const struct wf_key *k = ctl_auth_key();
	struct wf_net_status_reply buf;
	struct wf_auth_ctx x;
	struct wf_auth_hdr h;
	struct wf_auth a;
	uint32_t got;
	int ret;

	if (!k)
		return 0;
	ret = wf_auth_offer(&x, cluster_id, k->name, 1ull << 62 | (uint64_t)getpid(),
			    t->id, &h);
	if (!ret)
		ret = send_all(ctx, ep, &h, sizeof(h), end);
	if (!ret)
		ret = recv_one(ctx, end, &buf, sizeof(buf), &got);
	if (!ret && wf_auth_decode(&buf, got, &a, NULL))
		ret = -EPROTO;
	if (!ret) {
		ret = wf_auth_answer(k->secret, &x, &a, &h);
		if (ret == -EACCES || ret == -EBADMSG) {
			fprintf(stderr, "weftctl: target %u %s key %s\n", t->id,
				ret == -EACCES ? "refused" : "did not prove it holds",
				k->name);
			return -EACCES;
		}
	}
	if (!ret)
		ret = send_all(ctx, ep, &h, sizeof(h), end);
	if (!ret)
		ret = recv_one(ctx, end, &buf, sizeof(buf), &got);
	if (!ret && (wf_auth_decode(&buf, got, &a, NULL) || a.step != WF_AUTH_RESULT))
		ret = -EPROTO;
	if (!ret && a.status != WF_WS_OK) {
		fprintf(stderr, "weftctl: target %u refused our proof of key %s "
			"(it holds another secret under that name)\n", t->id, k->name);
		ret = -EACCES;
	}
	explicit_bzero(&x, sizeof(x));
	return ret;
}

static int data_call_on(uint32_t backend, const struct wf_target *t, uint64_t epoch,
			uint64_t cluster_id, int ms, const char *text, uint32_t len,
			struct wf_ctl_status *st, uint16_t *wstatus)
{
	struct wf_ctx_opts co = { .size = sizeof(co), .backend = backend };
	const char *scheme = backend == WF_BACKEND_VERBS ? "rdma" : "tcp";
	struct wf_ep_opts eo = { .size = sizeof(eo), .send_depth = 32,
				 .recv_depth = 4, .timeout_ms = ms };
	struct wf_net_status_req q = {
		.magic = htole16(WF_WIRE_MAGIC), .version = WF_WIRE_VERSION,
		.opcode = WF_OP_STATUS, .tag = htole64(1), .epoch = htole64(epoch),
	};
	struct wf_net_status_reply a;
	struct wf_ctx *ctx;
	struct wf_ep *ep = NULL;
	struct wf_cqe cq[8];
	char addr[WF_NAME_MAX + 16];
	int64_t end = now_ms() + ms;
	int ret;

	if (strchr(t->addr, ':'))
		snprintf(addr, sizeof(addr), "%s:[%s]:%u", scheme, t->addr, t->port);
	else
		snprintf(addr, sizeof(addr), "%s:%s:%u", scheme, t->addr, t->port);
	ret = wf_ctx_create(&co, &ctx);
	if (ret)
		return ret;
	ret = wf_connect(ctx, addr, &eo, &ep);
	if (!ret)
		ret = authenticate(ctx, ep, t, cluster_id, end);
	if (ret)
		goto out;
	if (!text) {
		ret = send_all(ctx, ep, &q, sizeof(q), end);
	} else {
		for (uint32_t off = 0; off < len && !ret; off += WF_MAP_PUT_CHUNK) {
			struct {
				struct wf_net_map_put h;
				char data[WF_MAP_PUT_CHUNK];
			} m;
			uint32_t n = len - off < WF_MAP_PUT_CHUNK ? len - off :
				     WF_MAP_PUT_CHUNK;

			memset(&m.h, 0, sizeof(m.h));
			m.h.magic = htole16(WF_WIRE_MAGIC);
			m.h.version = WF_WIRE_VERSION;
			m.h.opcode = WF_OP_MAP_PUT;
			m.h.tag = htole64(1);
			m.h.epoch = htole64(epoch);
			m.h.total = htole32(len);
			m.h.offset = htole32(off);
			memcpy(m.data, text + off, n);
			ret = send_all(ctx, ep, &m, (uint32_t)sizeof(m.h) + n, end);
		}
	}
	if (ret)
		goto out;
	ret = -ETIMEDOUT;
	while (now_ms() < end && ret == -ETIMEDOUT) {
		int n = wf_poll(ctx, cq, 8);
		struct pollfd pfd = { .fd = wf_ctx_fd(ctx), .events = POLLIN };

		for (int i = 0; i < n; i++) {
			if (cq[i].op == WF_CQE_DISCONNECT && ret == -ETIMEDOUT) {
				ret = -ECONNRESET;
			} else if (cq[i].op == WF_CQE_RECV_MSG && ret == -ETIMEDOUT) {
				/* The first answer (a refused push has one
				 * per chunk).  The request has no version, so
				 * a target answers its own layout: an older
				 * one (version 6) a shorter reply, the rest
				 * read as 0; a newer one a longer reply, of
				 * which the fields this build knows. */
				if (cq[i].len < WF_NET_STATUS_REPLY_V6_SIZE ||
				    wf_wire_peek(cq[i].msg, cq[i].len, NULL) !=
				    WF_OP_STATUS_REPLY) {
					ret = -EPROTO;
					continue;
				}
				memset(&a, 0, sizeof(a));
				memcpy(&a, cq[i].msg, cq[i].len < sizeof(a) ?
				       cq[i].len : sizeof(a));
				*st = a.body;
				if (wstatus)
					*wstatus = le16toh(a.status);
				ret = 0;
				if ((le16toh(a.status) & ~WF_WS_DNR) == WF_WS_AUTH) {
					fprintf(stderr, "weftctl: target %u requires a "
						"key: set WEFT_KEY (and WEFT_KEYRING)\n",
						t->id);
					ret = -EACCES;
				}
				if (text && (le16toh(a.status) & ~WF_WS_DNR) ==
				    WF_WS_ACCESS) {
					fprintf(stderr, "weftctl: target %u refused "
						"the map: key %s is not a target's "
						"key (the map's peer_keys), and only "
						"those may push a map over the "
						"network\n", t->id, ctl_auth_key() ?
						ctl_auth_key()->name : "(none)");
					ret = -EACCES;
				}
			}
		}
		if (!n && ret == -ETIMEDOUT && !wf_ctx_arm(ctx))
			poll(&pfd, 1, 10);
	}
out:
	if (ep)
		wf_ep_destroy(ep);
	wf_ctx_destroy(ctx);
	return ret;
}

int ctl_parse_ms(const char *cmd, const char *arg, int *ms)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v <= 0 || v > 600000) {
		fprintf(stderr, "weftctl %s: --timeout: '%s' is not 1 .. 600000 ms\n",
			cmd, arg);
		return -EINVAL;
	}
	*ms = (int)v;
	return 0;
}

int ctl_data_call(const struct wf_target *t, uint64_t epoch, uint64_t cluster_id,
		  int ms, const char *text, uint32_t len, struct wf_ctl_status *st,
		  uint16_t *wstatus)
{
	int ret = data_call_on(WF_BACKEND_TCP, t, epoch, cluster_id, ms, text,
			       len, st, wstatus);

	/* A target started with --transport verbs listens on RDMA only:
	 * the same address over verbs, where this host has a device. */
	if (ret == -ECONNREFUSED || ret == -ETIMEDOUT || ret == -EHOSTUNREACH) {
		if (!data_call_on(WF_BACKEND_VERBS, t, epoch, cluster_id, ms, text,
				  len, st, wstatus))
			ret = 0;        /* else the tcp attempt's error says it */
	}
	return ret;
}

bool ctl_add_bytes_left(const struct wf_ctl_status *st, uint64_t *sum)
{
	/* Version 6 and older: the pass counts extents only. */
	if (le16toh(st->version) < 7)
		return !st->pgs_recovering;
	*sum += le64toh(st->recovery_bytes_left);
	return true;
}

int ctl_ask(const char *run_dir, const struct wf_target *t, uint64_t epoch,
	    uint64_t cluster_id, int ms, struct wf_ctl_status *st, const char **via)
{
	int ret = ctl_ask_local(run_dir, t->id, WF_CTL_STATUS, epoch, 0, 0, ms, st);

	*via = "control socket";
	if (ret) {
		*via = "data address";
		ret = ctl_data_call(t, epoch, cluster_id, ms, NULL, 0, st, NULL);
	}
	return ret;
}

int ctl_status(int argc, char **argv, struct wf_json *j)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *run_dir = NULL;
	struct wf_map_err err;
	struct wf_map map;
	unsigned missing = 0, recovering = 0, degraded = 0, etcd_ok = 0, etcd_lost = 0;
	uint64_t copied = 0, used_b = 0, free_b = 0;
	uint64_t log_n = 0, full_n = 0, log_b = 0, full_b = 0;
	uint64_t left_b = 0, rel_s = 0, rel_r = 0, holds_r = 0, writes_r = 0;
	unsigned left_unknown = 0;      /* recovering targets of version 6 */
	uint32_t pgs = 0;
	int c, ms = 2000;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+c:r:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'r':
			run_dir = optarg;
			break;
		case 't':
			if (ctl_parse_ms("status", optarg, &ms))
				return 2;
			break;
		case 'h':
			return status_usage(stdout);
		default:
			return status_usage(stderr);
		}
	}
	if (ctl_need_map("status", path, argc, argv))
		return status_usage(stderr);
	run_dir = ctl_run_dir(run_dir);
	if (wf_map_load(path, &map, &err)) {
		ctl_err("%s\n", err.msg);
		return 1;
	}
	if (j) {
		wf_json_str(j, "map", path);
		wf_json_u64(j, "epoch", map.epoch);
		wf_json_u64(j, "cluster_id", map.cluster_id);
		wf_json_arr_begin(j, "targets");
	} else {
		printf("map %s: epoch %" PRIu64 ", cluster %" PRIu64 ", %u targets\n",
		       path, map.epoch, map.cluster_id, map.ntargets);
		printf("%-6s %-24s %-6s %-8s %10s %10s %6s %6s %6s  %s\n", "TARGET",
		       "ADDRESS", "STATE", "EPOCH", "USED", "FREE", "CONNS", "RECOV",
		       "DEGR", "VIA");
	}
	for (uint32_t i = 0; i < map.ntargets; i++) {
		const struct wf_target *t = &map.targets[i];
		struct wf_ctl_status st;
		char addr[WF_NAME_MAX + 8], ub[32], fb[32];
		const char *via = NULL;
		bool up;
		int ret;

		snprintf(addr, sizeof(addr), "%s:%u", t->addr, t->port);
		ret = ctl_ask(run_dir, t, map.epoch, map.cluster_id, ms, &st, &via);
		up = !ret && le32toh(st.target_id) == t->id &&
		     le64toh(st.cluster_id) == map.cluster_id;
		if (j) {
			wf_json_obj_begin(j, NULL);
			wf_json_u64(j, "id", t->id);
			wf_json_str(j, "addr", t->addr);
			wf_json_u64(j, "port", t->port);
			wf_json_str(j, "host", t->host);
			wf_json_bool(j, "map_up", t->up);
			wf_json_bool(j, "map_in", t->in);
			wf_json_str(j, "state", up ? "up" : "down");
		}
		if (up) {
			uint64_t es = le32toh(st.extent_size);
			uint64_t u = le64toh(st.used) * es, f = le64toh(st.free) * es;

			used_b += u;
			free_b += f;
			etcd_ok += le32toh(st.etcd) == WF_CTL_ETCD_OK;
			etcd_lost += le32toh(st.etcd) == WF_CTL_ETCD_UNREACHABLE;
			recovering += le32toh(st.pgs_recovering);
			degraded += le32toh(st.pgs_degraded);
			copied += le64toh(st.recovery_bytes);
			log_n += le64toh(st.recovery_log_total);
			full_n += le64toh(st.recovery_full_total);
			log_b += le64toh(st.recovery_log_bytes);
			full_b += le64toh(st.recovery_full_bytes);
			rel_s += le64toh(st.releases_sent);
			rel_r += le64toh(st.releases_received);
			holds_r += le64toh(st.holds_released);
			writes_r += le64toh(st.writes_released);
			left_unknown += !ctl_add_bytes_left(&st, &left_b);
			if (j) {
				wf_json_str(j, "via", via);
				wf_json_u64(j, "epoch", le64toh(st.epoch));
				wf_json_u64(j, "extent_size", es);
				wf_json_u64(j, "extents", le64toh(st.extents));
				wf_json_u64(j, "used_extents", le64toh(st.used));
				wf_json_u64(j, "free_extents", le64toh(st.free));
				wf_json_u64(j, "used_bytes", u);
				wf_json_u64(j, "free_bytes", f);
				wf_json_u64(j, "connections", le32toh(st.connections));
				wf_json_u64(j, "pgs_recovering", le32toh(st.pgs_recovering));
				wf_json_u64(j, "pgs_degraded", le32toh(st.pgs_degraded));
				wf_json_u64(j, "recovery_bytes", le64toh(st.recovery_bytes));
				if (le16toh(st.version) >= 7)
					wf_json_u64(j, "recovery_bytes_left",
						    le64toh(st.recovery_bytes_left));
				wf_json_u64(j, "recovery_extents_left",
					    le64toh(st.recovery_left));
				wf_json_u64(j, "recovery_log_pgs", le32toh(st.recovery_log_pgs));
				wf_json_u64(j, "recovery_full_pgs", le32toh(st.recovery_full_pgs));
				wf_json_u64(j, "recoveries_log", le64toh(st.recovery_log_total));
				wf_json_u64(j, "recoveries_full", le64toh(st.recovery_full_total));
				wf_json_u64(j, "recovery_log_bytes", le64toh(st.recovery_log_bytes));
				wf_json_u64(j, "recovery_full_bytes", le64toh(st.recovery_full_bytes));
				wf_json_u64(j, "reads", le64toh(st.reads));
				wf_json_u64(j, "writes", le64toh(st.writes));
				wf_json_u64(j, "fua_writes", le64toh(st.fua_writes));
				wf_json_u64(j, "flushes", le64toh(st.flushes));
				wf_json_u64(j, "errors", le64toh(st.errors));
				wf_json_u64(j, "releases_sent", le64toh(st.releases_sent));
				wf_json_u64(j, "releases_received",
					    le64toh(st.releases_received));
				wf_json_u64(j, "holds_released", le64toh(st.holds_released));
				wf_json_u64(j, "writes_released", le64toh(st.writes_released));
				wf_json_u64(j, "uptime_ms", le64toh(st.uptime_ms));
				wf_json_str(j, "etcd", le32toh(st.etcd) == WF_CTL_ETCD_OK ?
					    "connected" : le32toh(st.etcd) ==
					    WF_CTL_ETCD_UNREACHABLE ? "unreachable" : "off");
				wf_json_obj_end(j);
			} else {
				printf("%-6u %-24s %-6s %-8" PRIu64 " %10s %10s %6u %6u %6u  "
				       "%s%s\n", t->id, addr, "up",
				       (uint64_t)le64toh(st.epoch), ctl_bytes(ub, sizeof(ub), u),
				       ctl_bytes(fb, sizeof(fb), f), le32toh(st.connections),
				       le32toh(st.pgs_recovering), le32toh(st.pgs_degraded),
				       via, le64toh(st.epoch) < map.epoch ?
				       " (older epoch)" : "");
			}
			continue;
		}
		if (t->up)
			missing++;
		if (j) {
			wf_json_str(j, "error", !ret ? "answered as another target" :
				    strerror(-ret));
			wf_json_obj_end(j);
			continue;
		}
		printf("%-6u %-24s %-6s %-8s %10s %10s %6s %6s %6s  %s%s\n", t->id, addr,
		       "down", "-", "-", "-", "-", "-", "-",
		       !ret ? "answered as another target" : strerror(-ret),
		       t->up ? "" : " (map: down)");
	}
	for (uint32_t p = 0; p < map.npools; p++)
		pgs += map.pools[p].pg_num;
	if (j) {
		wf_json_arr_end(j);
		wf_json_obj_begin(j, "summary");
		wf_json_u64(j, "targets_missing", missing);
		wf_json_u64(j, "used_bytes", used_b);
		wf_json_u64(j, "free_bytes", free_b);
		wf_json_u64(j, "pgs", pgs);
		wf_json_u64(j, "pgs_recovering", recovering);
		wf_json_u64(j, "pgs_pinned", map.ntemps);
		wf_json_u64(j, "pgs_degraded", degraded);
		wf_json_u64(j, "recovery_bytes", copied);
		wf_json_u64(j, "recovery_bytes_left", left_b);
		wf_json_u64(j, "recovery_bytes_left_unknown", left_unknown);
		wf_json_u64(j, "recoveries_log", log_n);
		wf_json_u64(j, "recoveries_full", full_n);
		wf_json_u64(j, "recovery_log_bytes", log_b);
		wf_json_u64(j, "recovery_full_bytes", full_b);
		wf_json_u64(j, "releases_sent", rel_s);
		wf_json_u64(j, "releases_received", rel_r);
		wf_json_u64(j, "holds_released", holds_r);
		wf_json_u64(j, "writes_released", writes_r);
		wf_json_u64(j, "etcd_connected", etcd_ok);
		wf_json_u64(j, "etcd_unreachable", etcd_lost);
		wf_json_obj_end(j);
	} else {
		char ub[32], fb[32], cb[32];

		printf("space: %s used, %s free on the targets that answered (all "
		       "replicas)\n", ctl_bytes(ub, sizeof(ub), used_b),
		       ctl_bytes(fb, sizeof(fb), free_b));
		printf("PGs: %u in all; led by the targets that answered: %u "
		       "recovering (pinned: %u), %u degraded; %s copied to new "
		       "members this epoch, %.1f MiB left to copy%s%s\n", pgs,
		       recovering, map.ntemps, degraded,
		       ctl_bytes(cb, sizeof(cb), copied), left_b / 1048576.0,
		       left_unknown ? " (and what targets of an older version "
		       "have left)" : "", map.ntemps ?
		       " (`weftctl recover --wait` ends the pins when done)" : "");
		printf("read leases released early: %" PRIu64 " sent, %" PRIu64
		       " received; %" PRIu64 " holds ended, %" PRIu64 " held "
		       "writes started before their hold lapsed\n", rel_s, rel_r,
		       holds_r, writes_r);
		if (log_n || full_n)
			printf("recoveries since the targets started: %" PRIu64
			       " PGs from the log of recent writes (%s copied), %"
			       PRIu64 " whole (%s copied)\n", log_n,
			       ctl_bytes(ub, sizeof(ub), log_b), full_n,
			       ctl_bytes(fb, sizeof(fb), full_b));
		if (etcd_ok || etcd_lost)
			printf("control plane: etcd connected on %u targets, "
			       "unreachable from %u%s\n", etcd_ok, etcd_lost, etcd_lost ?
			       " (they serve their last map; map changes wait)" : "");
	}
	if (missing)
		ctl_err("weftctl status: %u target(s) the map says are up did not "
			"answer\n", missing);
	wf_map_free(&map);
	return missing ? 1 : 0;
}
