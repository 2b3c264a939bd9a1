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
#include "proto/wire.h"
#include "weftctl/ctl.h"
#include "placement/map.h"
#include "proto/ctl.h"

static int status_usage(FILE *f)
{
	fprintf(f, "usage: weftctl status -c MAP [--run-dir D] [--timeout MS]\n"
		"  Ask every target of MAP whether it answers: through its control\n"
		"  socket D/target-ID.ctl when it is on this host (D: --run-dir, else\n"
		"  $WEFT_RUN_DIR, else /run/weft), else through its data address.\n"
		"  Exit 0 if every target the map says is up answered, 1 if not,\n"
		"  2 on bad arguments.\n");
	return f == stdout ? 0 : 2;
}

/* 0 and *st filled, or -errno (no socket: the target is not local). */
static int ask_ctl(const char *run_dir, uint32_t id, uint64_t epoch, int ms,
		   struct wf_ctl_status *st)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct wf_ctl_req q = {
		.magic = htole32(WF_CTL_MAGIC), .version = htole16(WF_CTL_VERSION),
		.op = htole16(WF_CTL_STATUS), .epoch = htole64(epoch),
	};
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	int fd, n, ret = 0;

	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/target-%u.ctl", run_dir, id);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    send(fd, &q, sizeof(q), MSG_NOSIGNAL) != (ssize_t)sizeof(q))
		ret = -errno;
	else if (recv(fd, st, sizeof(*st), 0) != (ssize_t)sizeof(*st))
		ret = -EPROTO;
	else if (le32toh(st->magic) != WF_CTL_MAGIC ||
		 le16toh(st->version) != WF_CTL_VERSION)
		ret = -EPROTO;
	close(fd);
	return ret;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* WF_OP_STATUS over the data address (it needs no HELLO and holds no
 * slot); 0 and *st filled, or -errno. */
static int ask_data(const struct wf_target *t, uint64_t epoch, int ms,
		    struct wf_ctl_status *st)
{
	struct wf_ctx_opts co = { .size = sizeof(co), .backend = WF_BACKEND_TCP };
	struct wf_ep_opts eo = { .size = sizeof(eo), .send_depth = 4,
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
	int64_t end;
	int ret;

	if (strchr(t->addr, ':'))
		snprintf(addr, sizeof(addr), "tcp:[%s]:%u", t->addr, t->port);
	else
		snprintf(addr, sizeof(addr), "tcp:%s:%u", t->addr, t->port);
	ret = wf_ctx_create(&co, &ctx);
	if (ret)
		return ret;
	ret = wf_connect(ctx, addr, &eo, &ep);
	if (ret)
		goto out;
	ret = wf_send(ep, &q, sizeof(q), 1);
	if (ret)
		goto out;
	ret = -ETIMEDOUT;
	for (end = now_ms() + ms; now_ms() < end && ret == -ETIMEDOUT;) {
		int n = wf_poll(ctx, cq, 8);
		struct pollfd pfd = { .fd = wf_ctx_fd(ctx), .events = POLLIN };

		for (int i = 0; i < n; i++) {
			if (cq[i].op == WF_CQE_DISCONNECT) {
				ret = -ECONNRESET;
			} else if (cq[i].op == WF_CQE_RECV_MSG) {
				if (cq[i].len != sizeof(a) ||
				    wf_wire_peek(cq[i].msg, cq[i].len, NULL) !=
				    WF_OP_STATUS_REPLY) {
					ret = -EPROTO;
					continue;
				}
				memcpy(&a, cq[i].msg, sizeof(a));
				*st = a.body;
				ret = 0;
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

int ctl_ask(const char *run_dir, const struct wf_target *t, uint64_t epoch,
	    int ms, struct wf_ctl_status *st, const char **via)
{
	int ret = ask_ctl(run_dir, t->id, epoch, ms, st);

	*via = "control socket";
	if (ret) {
		*via = "data address";
		ret = ask_data(t, epoch, ms, st);
	}
	return ret;
}

int ctl_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *run_dir = getenv("WEFT_RUN_DIR");
	struct wf_map_err err;
	struct wf_map map;
	unsigned missing = 0, recovering = 0, degraded = 0;
	uint64_t copied = 0;
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
	if (!run_dir || !*run_dir)
		run_dir = "/run/weft";
	if (wf_map_load(path, &map, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	printf("map %s: epoch %" PRIu64 ", cluster %" PRIu64 ", %u targets\n", path,
	       map.epoch, map.cluster_id, map.ntargets);
	printf("%-6s %-24s %-6s %-8s %10s %10s %6s %6s %6s  %s\n", "TARGET", "ADDRESS",
	       "STATE", "EPOCH", "USED", "FREE", "CONNS", "RECOV", "DEGR", "VIA");
	for (uint32_t i = 0; i < map.ntargets; i++) {
		const struct wf_target *t = &map.targets[i];
		struct wf_ctl_status st;
		char addr[WF_NAME_MAX + 8];
		int ret;

		const char *via;

		snprintf(addr, sizeof(addr), "%s:%u", t->addr, t->port);
		ret = ctl_ask(run_dir, t, map.epoch, ms, &st, &via);
		if (!ret && le32toh(st.target_id) == t->id &&
		    le64toh(st.cluster_id) == map.cluster_id) {
			printf("%-6u %-24s %-6s %-8" PRIu64 " %10" PRIu64 " %10" PRIu64
			       " %6u %6u %6u  %s%s\n", t->id, addr, "up",
			       (uint64_t)le64toh(st.epoch), (uint64_t)le64toh(st.used),
			       (uint64_t)le64toh(st.free), le32toh(st.connections),
			       le32toh(st.pgs_recovering), le32toh(st.pgs_degraded), via,
			       le64toh(st.epoch) < map.epoch ? " (older epoch)" : "");
			recovering += le32toh(st.pgs_recovering);
			degraded += le32toh(st.pgs_degraded);
			copied += le64toh(st.recovery_bytes);
			continue;
		}
		printf("%-6u %-24s %-6s %-8s %10s %10s %6s %6s %6s  %s%s\n", t->id, addr,
		       "down", "-", "-", "-", "-", "-", "-",
		       !ret ? "answered as another target" : strerror(-ret),
		       t->up ? "" : " (map: down)");
		if (t->up)
			missing++;
	}
	{
		uint32_t pgs = 0;

		for (uint32_t p = 0; p < map.npools; p++)
			pgs += map.pools[p].pg_num;
		printf("PGs: %u in all; led by the targets that answered: %u "
		       "recovering (pinned: %u), %u degraded; %.1f MiB copied to "
		       "new members this epoch%s\n", pgs, recovering, map.ntemps,
		       degraded, copied / 1048576.0, map.ntemps ?
		       " (`weftctl recover --wait` ends the pins when done)" : "");
	}
	wf_map_free(&map);
	return missing ? 1 : 0;
}
