/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/counts.h"
#include "bench/proc.h"
#include "bench/stats.h"
#include "initiator/include/weft.h"
#include "placement/map.h"
#include "proto/ctl.h"

int wf_ctl_status_of(const char *run_dir, unsigned id, struct wf_ctl_status *st)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct wf_ctl_req q = { .magic = htole32(WF_CTL_MAGIC),
				.version = htole16(WF_CTL_VERSION),
				.op = htole16(WF_CTL_STATUS) };
	struct timeval tv = { .tv_sec = 2 };
	int fd, n, ret = 0;

	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/target-%u.ctl", run_dir, id);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    send(fd, &q, sizeof(q), MSG_NOSIGNAL) != (ssize_t)sizeof(q))
		ret = -errno;
	else if (recv(fd, st, sizeof(*st), 0) != (ssize_t)sizeof(*st) ||
		 le32toh(st->magic) != WF_CTL_MAGIC ||
		 le16toh(st->version) != WF_CTL_VERSION)
		ret = -EPROTO;
	close(fd);
	return ret;
}

int wf_tcounts_read(const char *map_path, const char *run_dir,
		    struct wf_tcounts *out)
{
	struct wf_map m;
	struct wf_map_err err;
	int n = 0;

	memset(out, 0, sizeof(*out));
	if (!run_dir || !*run_dir)
		run_dir = "/run/weft";
	if (wf_map_load(map_path, &m, &err))
		return -EINVAL;
	for (uint32_t i = 0; i < m.ntargets; i++) {
		struct wf_ctl_status st;

		if (wf_ctl_status_of(run_dir, m.targets[i].id, &st))
			continue;
		/* Requests' sends: not the read leases' background asks and
		 * answers (counted apart since status version 5). */
		out->sends += le64toh(st.fab_sends) - le64toh(st.lease_sends);
		out->writes += le64toh(st.fab_writes);
		out->reads += le64toh(st.fab_reads);
		out->recvs += le64toh(st.fab_recvs);
		out->cqes += le64toh(st.fab_cqes);
		n++;
	}
	wf_map_free(&m);
	return n;
}

/*
 * What `perf stat` counts (enum wf_sc order): every syscall, and what
 * makes up the CPU per I/O in the kernel at depth (docs/performance.md,
 * "CPU per I/O at depth"): io_uring_enter calls that submit, SQEs
 * submitted, waits for completions that found too few (each then sleeps
 * unless one lands meanwhile), context switches (sleeps, and preemptions),
 * requests issued to a block device and plug flushes (each ends in one
 * doorbell of a virtio queue at most: the device notifications).  The
 * block events count what the counted threads do themselves.
 */
static const struct {
	const char *event, *filter;
	const char *name;       /* past the syscalls: the table's word and
				 * the JSON's key */
} sc_events[WF_SC_N] = {
	[WF_SC_SYS]     = { "raw_syscalls:sys_enter", NULL, NULL },
	[WF_SC_SUBMITS] = { "syscalls:sys_enter_io_uring_enter", "to_submit > 0",
			    "submits" },
	[WF_SC_SQES]    = { "io_uring:io_uring_submit_req", NULL, "sqes" },
	[WF_SC_WAITS]   = { "io_uring:io_uring_cqring_wait", NULL, "waits" },
	[WF_SC_CS]      = { "context-switches", NULL, "switches" },
	[WF_SC_ISSUES]  = { "block:block_rq_issue", NULL, "blk_issues" },
	[WF_SC_UNPLUGS] = { "block:block_unplug", NULL, "blk_unplugs" },
};

/* A tracepoint "sys:name" is present when tracefs lists its directory. */
static bool tracepoint_present(const char *event, void *arg)
{
	static const char *const roots[] = { "/sys/kernel/tracing/events",
					     "/sys/kernel/debug/tracing/events" };
	char path[256];

	(void)arg;
	for (unsigned r = 0; r < 2; r++) {
		int n = snprintf(path, sizeof(path), "%s/%s", roots[r], event);
		char *colon = n > 0 && (size_t)n < sizeof(path) ?
			      strchr(path + strlen(roots[r]), ':') : NULL;

		if (!colon)
			return false;
		*colon = '/';
		if (!access(path, F_OK))
			return true;
	}
	return false;
}

unsigned wf_sc_select(bool (*present)(const char *event, void *arg), void *arg)
{
	unsigned mask = 0;

	for (unsigned e = 0; e < WF_SC_N; e++)
		/* No colon: a perf software event (context-switches), always
		 * there. */
		if (!strchr(sc_events[e].event, ':') || present(sc_events[e].event, arg))
			mask |= 1u << e;
	return mask;
}

unsigned wf_sc_args(unsigned mask, const char **argv)
{
	unsigned na = 0;

	for (unsigned e = 0; e < WF_SC_N; e++) {
		if (!(mask & (1u << e)))
			continue;
		argv[na++] = "-e";
		argv[na++] = sc_events[e].event;
		if (sc_events[e].filter) {
			argv[na++] = "--filter";
			argv[na++] = sc_events[e].filter;
		}
	}
	return na;
}

int wf_sc_parse(FILE *f, unsigned mask, int64_t count[WF_SC_N])
{
	char line[256];
	unsigned e = 0;

	for (unsigned i = 0; i < WF_SC_N; i++)
		count[i] = -1;
	/* One line per event given, in order ("<not counted>" or "<not
	 * supported>" leave -1); those not given stay -1. */
	for (;;) {
		uint64_t v;

		while (e < WF_SC_N && !(mask & (1u << e)))
			e++;
		if (e == WF_SC_N || !fgets(line, sizeof(line), f))
			break;
		if (!strstr(line, sc_events[e].event))
			continue;
		if (sscanf(line, "%" SCNu64 ",", &v) == 1)
			count[e] = (int64_t)v;
		e++;
	}
	return count[WF_SC_SYS] >= 0 ? 0 : -EPROTO;
}

int wf_syscount_start(struct wf_syscount *s, const pid_t *pids, unsigned n,
		      char *why, size_t whylen)
{
	char list[512] = "";
	const char *argv[8 + 4 * WF_SC_N];
	unsigned na = 0;
	size_t off = 0;
	int fd;

	s->perf = 0;
	if (!n) {
		snprintf(why, whylen, "no process to count");
		return -ENOENT;
	}
	/* Each tracepoint missing on this kernel (perf would refuse the
	 * whole list) is left out; the syscalls are required. */
	s->events = wf_sc_select(tracepoint_present, NULL);
	if (!(s->events & (1u << WF_SC_SYS))) {
		snprintf(why, whylen, "no raw_syscalls tracepoint (mount -t tracefs "
			 "nodev /sys/kernel/tracing)");
		return -ENOENT;
	}
	if (wf_sh("command -v perf >/dev/null 2>&1")) {
		snprintf(why, whylen, "perf is not installed (linux-perf)");
		return -ENOENT;
	}
	argv[na++] = "perf";
	argv[na++] = "stat";
	argv[na++] = "-x";
	argv[na++] = ",";
	for (unsigned i = 0; i < n && off < sizeof(list) - 16; i++)
		off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%d",
					i ? "," : "", (int)pids[i]);
	snprintf(s->out, sizeof(s->out), "/tmp/weft-syscount.%d.%d", (int)getpid(),
		 (int)pids[0]);
	na += wf_sc_args(s->events, argv + na);
	argv[na++] = "-o";
	argv[na++] = s->out;
	argv[na++] = "-p";
	argv[na++] = list;
	argv[na] = NULL;
	s->perf = fork();
	if (s->perf < 0) {
		s->perf = 0;
		snprintf(why, whylen, "fork: %s", strerror(errno));
		return -errno;
	}
	if (!s->perf) {
		fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp("perf", (char **)argv);
		_exit(127);
	}
	/* perf attaches before it counts: give it a moment. */
	wf_sleep_ms(200);
	return 0;
}

int wf_syscount_stop(struct wf_syscount *s, int64_t count[WF_SC_N])
{
	FILE *f;
	int st, ret;

	for (unsigned i = 0; i < WF_SC_N; i++)
		count[i] = -1;

	if (!s->perf)
		return -ENOENT;
	kill(s->perf, SIGINT);
	if (waitpid(s->perf, &st, 0) < 0)
		return -errno;
	s->perf = 0;
	f = fopen(s->out, "r");
	if (!f)
		return -errno;
	ret = wf_sc_parse(f, s->events, count);
	fclose(f);
	unlink(s->out);
	return ret;
}

/* The Ir of pid's newest dump in dir (callgrind.out.PID.N, largest N). */
static int newest_dump(const char *dir, pid_t pid, uint64_t *ir)
{
	char pre[64], path[4096], line[256];
	unsigned best = 0;
	struct dirent *e;
	size_t plen;
	DIR *d = opendir(dir);
	FILE *f;
	int ret = -ENOENT;

	if (!d)
		return -errno;
	plen = (size_t)snprintf(pre, sizeof(pre), "callgrind.out.%d.", (int)pid);
	while ((e = readdir(d))) {
		char *end;
		unsigned long k;

		if (strncmp(e->d_name, pre, plen))
			continue;
		k = strtoul(e->d_name + plen, &end, 10);
		if (!*end && k > best)
			best = (unsigned)k;
	}
	closedir(d);
	if (!best)
		return -ENOENT;
	snprintf(path, sizeof(path), "%s/%s%u", dir, pre, best);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "summary: %" SCNu64, ir) == 1) {
			ret = 0;
			break;
		}
	fclose(f);
	return ret;
}

int wf_instr_mark(const char *dir, const char *map, const pid_t *tpids,
		  unsigned n, uint64_t *client, uint64_t *targets)
{
	struct wf_tcounts t;
	uint64_t ir;
	int ret;

	/* callgrind dumped this process on entering here. */
	ret = newest_dump(dir, getpid(), client);
	if (ret)
		return ret;
	/* Each target dumps on entering its STATUS answer, before replying. */
	ret = wf_tcounts_read(map, getenv("WEFT_RUN_DIR"), &t);
	if (ret < 0)
		return ret;
	if ((unsigned)ret != n)
		return -ENOENT;
	*targets = 0;
	for (unsigned i = 0; i < n; i++) {
		ret = newest_dump(dir, tpids[i], &ir);
		if (ret)
			return ret;
		*targets += ir;
	}
	return 0;
}

static int client_counts(struct weft_cluster *cl, uint64_t c[4])
{
	struct weft_stats st = { .size = sizeof(st) };
	int ret = weft_stats(cl, &st);

	c[0] = st.fabric_sends;
	c[1] = st.fabric_writes;
	c[2] = st.fabric_reads;
	c[3] = st.fabric_cqes;
	return ret;
}

void wf_counts_begin(struct wf_run_counts *k, struct weft_cluster *cl,
		     const char *map, const pid_t *pids, unsigned npids,
		     bool syscalls)
{
	char why[160];
	pid_t self = getpid();

	memset(k, 0, sizeof(*k));
	if (syscalls) {
		k->have_csys = !wf_syscount_start(&k->sc_client, &self, 1, why,
						  sizeof(why));
		if (!k->have_csys)
			fprintf(stderr, "syscall counts: %s\n", why);
		k->have_tsys = k->have_csys &&
			!wf_syscount_start(&k->sc_targets, pids, npids, why, sizeof(why));
		if (k->have_csys && !k->have_tsys)
			fprintf(stderr, "syscall counts of the targets: %s\n", why);
	}
	client_counts(cl, k->c);
	k->have_t = wf_tcounts_read(map, getenv("WEFT_RUN_DIR"), &k->t);
}

static double per(uint64_t a, uint64_t b, uint64_t ios)
{
	return ios ? (double)(a - b) / (double)ios : -1;
}

void wf_counts_end(struct wf_run_counts *k, struct weft_cluster *cl,
		   const char *map, uint64_t ios, struct wf_per_io *p)
{
	struct wf_tcounts t;
	uint64_t c[4];
	int64_t n[WF_SC_N];

	client_counts(cl, c);
	p->c_sends = per(c[0], k->c[0], ios);
	p->c_writes = per(c[1], k->c[1], ios);
	p->c_reads = per(c[2], k->c[2], ios);
	p->c_cqes = per(c[3], k->c[3], ios);
	p->t_sends = p->t_writes = p->t_reads = p->t_cqes = -1;
	if (k->have_t > 0 && wf_tcounts_read(map, getenv("WEFT_RUN_DIR"), &t) ==
	    k->have_t) {
		p->t_sends = per(t.sends, k->t.sends, ios);
		p->t_writes = per(t.writes, k->t.writes, ios);
		p->t_reads = per(t.reads, k->t.reads, ios);
		p->t_cqes = per(t.cqes, k->t.cqes, ios);
	}
	p->c_sys = p->t_sys = -1;
	p->c_instr = p->t_instr = p->t_idle_per_s = -1;
	for (unsigned e = 0; e < WF_SC_N; e++)
		p->c_sc[e] = p->t_sc[e] = -1;
	if (k->have_tsys && !wf_syscount_stop(&k->sc_targets, n))
		for (unsigned e = 0; e < WF_SC_N; e++)
			p->t_sc[e] = n[e] >= 0 ? per((uint64_t)n[e], 0, ios) : -1;
	if (k->have_csys && !wf_syscount_stop(&k->sc_client, n))
		for (unsigned e = 0; e < WF_SC_N; e++)
			p->c_sc[e] = n[e] >= 0 ? per((uint64_t)n[e], 0, ios) : -1;
	p->t_sys = p->t_sc[WF_SC_SYS];
	p->c_sys = p->c_sc[WF_SC_SYS];
}

static void print_sc(FILE *f, const char *who, const double *v)
{
	fprintf(f, "; %s:", who);
	for (unsigned e = WF_SC_SYS + 1; e < WF_SC_N; e++)
		if (v[e] >= 0)
			fprintf(f, " %.2f %s", v[e], sc_events[e].name);
}

static void print_count(FILE *f, const char *what, double v)
{
	if (v >= 0)
		fprintf(f, " %.2f %s", v, what);
	else
		fprintf(f, " - %s", what);
}

void wf_per_io_print(FILE *f, const struct wf_per_io *p)
{
	fprintf(f, "          per I/O, client:");
	print_count(f, "sends", p->c_sends);
	print_count(f, "writes", p->c_writes);
	print_count(f, "cqes", p->c_cqes);
	print_count(f, "syscalls", p->c_sys);
	fprintf(f, "; targets:");
	print_count(f, "sends", p->t_sends);
	print_count(f, "writes", p->t_writes);
	print_count(f, "cqes", p->t_cqes);
	print_count(f, "syscalls", p->t_sys);
	fputc('\n', f);
	if (p->t_sys >= 0 || p->c_sys >= 0) {
		fprintf(f, "          per I/O, kernel");
		print_sc(f, "client", p->c_sc);
		print_sc(f, "targets", p->t_sc);
		fputc('\n', f);
	}
	if (p->c_instr >= 0)
		fprintf(f, "          user-space instructions per I/O (callgrind): "
			"client %.0f, targets %.0f (windows of %" PRIu64 " and %"
			PRIu64 " I/Os; targets idle: %.0f per s)\n", p->c_instr,
			p->t_instr, p->win_ios[0], p->win_ios[1], p->t_idle_per_s);
}

static void json_count(struct wf_json *js, const char *key, double v)
{
	wf_json_dbl(js, key, v >= 0 ? v : 0.0 / 0.0);     /* null: unknown */
}

void wf_per_io_json(struct wf_json *js, const char *key, const struct wf_per_io *p)
{
	wf_json_obj_begin(js, key);
	wf_json_obj_begin(js, "client");
	json_count(js, "fabric_sends", p->c_sends);
	json_count(js, "fabric_writes", p->c_writes);
	json_count(js, "fabric_reads", p->c_reads);
	json_count(js, "fabric_completions", p->c_cqes);
	json_count(js, "syscalls", p->c_sys);
	for (unsigned e = WF_SC_SYS + 1; e < WF_SC_N; e++)
		json_count(js, sc_events[e].name, p->c_sc[e]);
	json_count(js, "instructions", p->c_instr);
	wf_json_obj_end(js);
	wf_json_obj_begin(js, "targets");
	json_count(js, "fabric_sends", p->t_sends);
	json_count(js, "fabric_writes", p->t_writes);
	json_count(js, "fabric_reads", p->t_reads);
	json_count(js, "fabric_completions", p->t_cqes);
	json_count(js, "syscalls", p->t_sys);
	for (unsigned e = WF_SC_SYS + 1; e < WF_SC_N; e++)
		json_count(js, sc_events[e].name, p->t_sc[e]);
	json_count(js, "instructions", p->t_instr);
	json_count(js, "idle_instructions_per_s", p->t_idle_per_s);
	wf_json_obj_end(js);
	if (p->c_instr >= 0) {
		/* The raw windows: the client's instructions per I/O are
		 * (b - a) / (ios_b - ios_a); the targets' the same less their
		 * idle rate times (seconds_b - seconds_a). */
		wf_json_obj_begin(js, "instruction_windows");
		wf_json_u64(js, "ios_a", p->win_ios[0]);
		wf_json_u64(js, "ios_b", p->win_ios[1]);
		wf_json_u64(js, "client_a", p->win_c[0]);
		wf_json_u64(js, "client_b", p->win_c[1]);
		wf_json_u64(js, "targets_a", p->win_t[0]);
		wf_json_u64(js, "targets_b", p->win_t[1]);
		wf_json_dbl(js, "seconds_a", p->win_s[0]);
		wf_json_dbl(js, "seconds_b", p->win_s[1]);
		wf_json_obj_end(js);
	}
	wf_json_obj_end(js);
}
