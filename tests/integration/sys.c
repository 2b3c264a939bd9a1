/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "bench/pattern.h"
#include "bench/proc.h"
#include "bench/stats.h"
#include "initiator/include/weft_env.h"
#include "placement/map.h"
#include "proto/auth.h"
#include "proto/ctl.h"
#include "tests/integration/sys.h"

int sys_sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return wf_sh("%s", cmd);
}

/*
 * The transport of the tests (WEFT_FABRIC=tcp|unix|verbs, as in
 * tests/fabric; default tcp).  verbs also needs WEFT_SYS_MAP: a map like
 * conf/local.conf whose addresses are on an RDMA device (the soft-RoCE rig
 * writes one for its veth pair).
 */
static const char *sys_transport(void)
{
	const char *t = getenv("WEFT_FABRIC");

	return t && *t ? t : "tcp";
}

static const char *sys_target_args(void)
{
	return strcmp(sys_transport(), "verbs") ? "" : " --transport verbs";
}

void sys_start(struct sys_cluster *c)
{
	const char *src = getenv("WEFT_SRC"), *bin = getenv("WEFT_BIN");
	const char *map = getenv("WEFT_SYS_MAP"), *tr = sys_transport();
	char cmd[2048], line[1024], mapbuf[300];
	FILE *p;

	memset(c, 0, sizeof(*c));
	cr_assert(src && bin, "WEFT_SRC and WEFT_BIN must be set (run through ctest)");
	cr_assert(!strcmp(tr, "tcp") || !strcmp(tr, "unix") || !strcmp(tr, "verbs"),
		  "WEFT_FABRIC=%s: not tcp, unix or verbs", tr);
	cr_assert(strcmp(tr, "verbs") || (map && *map),
		  "WEFT_FABRIC=verbs needs WEFT_SYS_MAP (addresses on an RDMA device)");
	if (!map || !*map) {
		snprintf(mapbuf, sizeof(mapbuf), "%s/conf/local.conf", src);
		map = mapbuf;
	}
	snprintf(c->src, sizeof(c->src), "%s", src);
	snprintf(c->bin, sizeof(c->bin), "%s", bin);
	/* Free ports below the ephemeral range, found by scripts/cluster. */
	snprintf(cmd, sizeof(cmd), "exec 3>&1; WEFT_BIN='%s' '%s/scripts/cluster' start -c "
		 "'%s' --size 512M --port-base auto%s -- %s 2>&1 >&3 | "
		 "sed 's/^/  /' >&2", bin, src, map,
		 getenv("WEFT_SYS_ETCD") ? " --etcd" : "", sys_target_args());
	/* stdout (the env line) through fd 3 into the pipe; messages to
	 * the test's stderr. */
	p = popen(cmd, "r");
	cr_assert(p, "popen: %s", strerror(errno));
	line[0] = 0;
	if (!fgets(line, sizeof(line), p))
		line[0] = 0;
	cr_assert(pclose(p) == 0 && line[0], "scripts/cluster start failed");
	cr_assert(sscanf(line, "WEFT_CLUSTER_DIR=%255s WEFT_MAP=%299s WEFT_RUN_DIR=%299s",
			 c->dir, c->map, c->run) == 3, "unexpected output: %s", line);
	cr_assert(strstr(line, "WEFT_KEYRING=") &&
		  sscanf(strstr(line, "WEFT_KEYRING="), "WEFT_KEYRING=%299s",
			 c->keyring) == 1, "no keyring: %s", line);
	if (strstr(line, "WEFT_ETCD="))
		sscanf(strstr(line, "WEFT_ETCD="), "WEFT_ETCD=%127s", c->etcd);
	cr_assert(!getenv("WEFT_SYS_ETCD") || c->etcd[0], "no etcd: %s", line);
	setenv("WEFT_RUN_DIR", c->run, 1);
	setenv("WEFT_CLUSTER_DIR", c->dir, 1);
	setenv("WEFT_KEYRING", c->keyring, 1);
	setenv("WEFT_KEY", "client", 1);
	c->up = true;
}

void sys_stop(struct sys_cluster *c)
{
	if (!c->up)
		return;
	sys_sh("'%s/scripts/cluster' stop '%s'", c->src, c->dir);
	c->up = false;
}

pid_t sys_pid_in(const char *dir, unsigned id)
{
	char path[400];
	long pid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/target-%u.pid", dir, id);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	return (pid_t)pid;
}

pid_t sys_pid(const struct sys_cluster *c, unsigned id)
{
	return sys_pid_in(c->dir, id);
}

void sys_kill9(struct sys_cluster *c, unsigned id)
{
	pid_t pid = sys_pid(c, id);
	char path[400];

	cr_assert(pid > 0, "no pid for target %u", id);
	cr_assert(wf_kill9_wait(pid, 5000) == 0, "kill: %s", strerror(errno));
	snprintf(path, sizeof(path), "%s/target-%u.pid", c->dir, id);
	unlink(path);
}

void sys_restart(struct sys_cluster *c, unsigned id)
{
	sys_restart_as(c, id, c->map, c->run);
}

void sys_restart_as(struct sys_cluster *c, unsigned id, const char *map,
		    const char *run)
{
	sys_restart_with(c, id, map, run, "");
}

void sys_restart_with(struct sys_cluster *c, unsigned id, const char *map,
		      const char *run, const char *extra)
{
	int st = sys_sh("'%s/weft-target' -c '%s' --id %u --run-dir '%s' "
			"--pid-file '%s/target-%u.pid' --keyring '%s' --key target-%u"
			"%s%s%s %s", c->bin, map, id, run, c->dir, id, c->keyring, id,
			sys_target_args(),
			c->etcd[0] ? " --etcd " : "", c->etcd, extra);

	cr_assert(st == 0, "restarting target %u failed (%d)", id, st);
}

void sys_open(const struct sys_cluster *c, unsigned flags, unsigned timeout_ms,
	      struct weft_cluster **cl, struct weft_volume **vol, const char *name)
{
	struct weft_cluster_opts o = { .size = sizeof(o) };
	int ret;

	o.map_path = c->map;
	o.transport = sys_transport();
	o.queue_depth = 64;
	o.timeout_ms = timeout_ms;
	o.flags = flags;
	weft_env_opts(&o, "test");
	ret = weft_cluster_open(&o, cl);
	cr_assert(ret == 0, "weft_cluster_open: %s", weft_strerror(ret));
	ret = weft_volume_open(*cl, name, vol);
	cr_assert(ret == 0, "weft_volume_open %s: %s", name, weft_strerror(ret));
}

void sys_fill(void *buf, uint64_t off, uint64_t version)
{
	wf_block_fill(buf, SYS_BS, off, version);
}

int64_t sys_decode(const void *buf, uint64_t off)
{
	return wf_block_version(buf, SYS_BS, off);
}

void sys_stream_init(struct sys_stream *s, uint32_t nblk, uint64_t (*off)(uint32_t))
{
	memset(s, 0, sizeof(*s));
	s->acked = calloc(nblk, sizeof(*s->acked));
	s->maybe = calloc(nblk, sizeof(*s->maybe));
	s->busy = calloc(nblk, 1);
	cr_assert(s->acked && s->maybe && s->busy);
	s->nblk = nblk;
	s->off = off;
	s->rng = (uint64_t)getpid();
}

void sys_stream_free(struct sys_stream *s)
{
	free(s->busy);
	free(s->maybe);
	free(s->acked);
	memset(s, 0, sizeof(*s));
}

uint64_t sys_stream_rnd(struct sys_stream *s)
{
	s->rng += 0x9e3779b97f4a7c15ull;
	return wf_mix64(s->rng);
}

/* Fills the free slots with writes to random idle blocks, up to a full
 * queue (-EAGAIN). */
static void stream_submit(struct sys_stream *s, struct weft_volume *vol,
			  const struct sys_stream_opts *o, char **buf,
			  uint32_t *blk, uint64_t *v, bool *inflight,
			  unsigned *n_in)
{
	for (unsigned i = 0; i < o->qd; i++) {
		uint32_t b;
		int ret;

		if (inflight[i])
			continue;
		/* A block with a write of unknown fate is left alone until
		 * the verify pass settles it. */
		do
			b = (uint32_t)(sys_stream_rnd(s) % s->nblk);
		while (s->busy[b] || s->maybe[b]);
		v[i] = ++s->ver;
		blk[i] = b;
		sys_fill(buf[i], s->off(b), v[i]);
		ret = weft_write(vol, buf[i], SYS_BS, s->off(b), 0, i);
		if (ret == -EAGAIN)
			return;
		if (ret && o->refused_fails) {
			/* refused before it was sent: never lands */
			s->fails++;
			continue;
		}
		cr_assert_eq(ret, 0, "weft_write: %s", weft_strerror(ret));
		s->busy[b] = 1;
		inflight[i] = true;
		(*n_in)++;
	}
}

/* Writes at o->qd until act_ms, acts, goes on 300 ms and drains. */
static void stream_write(struct sys_stream *s, struct weft_cluster *cl,
			 struct weft_volume *vol, const struct sys_stream_opts *o)
{
	struct weft_cqe cq[SYS_STREAM_QD];
	char *buf[SYS_STREAM_QD];
	uint32_t blk[SYS_STREAM_QD];
	uint64_t v[SYS_STREAM_QD];
	bool inflight[SYS_STREAM_QD] = { false };
	unsigned n_in = 0;
	uint64_t act_at = wf_now_ns() + o->act_ms * 1000000ull;
	uint64_t stop_at = act_at + 300000000ull;
	uint64_t give_up = stop_at + o->give_up_ms * 1000000ull;
	bool acted = false;

	cr_assert(o->qd && o->qd <= SYS_STREAM_QD);
	for (unsigned i = 0; i < o->qd; i++) {
		buf[i] = weft_buf_alloc(cl, SYS_BS);
		cr_assert(buf[i]);
	}
	for (;;) {
		uint64_t now = wf_now_ns();
		int n;

		if (!acted && now >= act_at) {
			o->act(o->arg);
			acted = true;
		}
		if (now < stop_at)
			stream_submit(s, vol, o, buf, blk, v, inflight, &n_in);
		if (!n_in && now >= stop_at)
			break;
		cr_assert(now < give_up, "writes still pending %u ms after the fault",
			  o->give_up_ms);
		n = weft_wait(cl, cq, 1, o->qd, 100);
		cr_assert(n >= 0, "weft_wait: %s", weft_strerror(n));
		for (int k = 0; k < n; k++) {
			unsigned i = (unsigned)cq[k].user_data;
			uint32_t b;

			cr_assert(i < o->qd && inflight[i]);
			b = blk[i];
			inflight[i] = false;
			n_in--;
			s->busy[b] = 0;
			if (cq[k].res == SYS_BS) {
				s->acked[b] = v[i];
				s->acks++;
			} else {
				cr_assert(cq[k].res < 0, "short write %lld",
					  (long long)cq[k].res);
				s->maybe[b] = v[i];
				s->fails++;
			}
		}
	}
	for (unsigned i = 0; i < o->qd; i++)
		weft_buf_free(cl, buf[i]);
	cr_assert(acted);
}

/* Block b read back into buf holds its acknowledged version, or that of
 * a write that failed (which then becomes the block's version). */
static void stream_check(struct sys_stream *s, uint32_t b, const void *buf,
			 unsigned round)
{
	int64_t got = sys_decode(buf, s->off(b));

	cr_assert(got == (int64_t)s->acked[b] ||
		  (s->maybe[b] && got == (int64_t)s->maybe[b]),
		  "round %u: block %u (offset %llu) holds version %lld; "
		  "acknowledged %llu, unacknowledged %llu", round, b,
		  (unsigned long long)s->off(b), (long long)got,
		  (unsigned long long)s->acked[b],
		  (unsigned long long)s->maybe[b]);
	if (s->maybe[b]) {
		s->acked[b] = (uint64_t)got;
		s->maybe[b] = 0;
	}
}

/* Reads every block back, o->verify_run consecutive blocks at a time. */
static void stream_verify(struct sys_stream *s, struct weft_cluster *cl,
			  struct weft_volume *vol, const struct sys_stream_opts *o,
			  unsigned round)
{
	const unsigned run = o->verify_run;
	char *buf;

	cr_assert(run && s->nblk % run == 0);
	buf = weft_buf_alloc(cl, run * SYS_BS);
	cr_assert(buf);
	for (uint32_t b = 0; b < s->nblk; b += run) {
		ssize_t r = weft_pread(vol, buf, run * SYS_BS, s->off(b));

		cr_assert_eq(r, (ssize_t)(run * SYS_BS), "round %u: read at %llu: %s",
			     round, (unsigned long long)s->off(b),
			     weft_strerror((int)r));
		for (uint32_t j = 0; j < run; j++) {
			cr_assert_eq(s->off(b + j), s->off(b) + j * SYS_BS,
				     "a run of blocks is not contiguous");
			stream_check(s, b + j, buf + j * SYS_BS, round);
		}
	}
	weft_buf_free(cl, buf);
}

void sys_stream_round(struct sys_stream *s, const struct sys_stream_opts *o,
		      unsigned round)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	uint64_t acks = s->acks;

	o->open(o->qd, o->timeout_ms, &cl, &vol);
	stream_write(s, cl, vol, o);
	weft_cluster_close(cl);
	cr_assert(s->acks > acks, "round %u: no write was acknowledged", round);
	if (o->after)
		o->after(o->arg);
	o->open(8, o->verify_timeout_ms, &cl, &vol);
	stream_verify(s, cl, vol, o, round);
	weft_cluster_close(cl);
}

struct wf_ctl_status sys_ctl_status(const char *run_dir, unsigned id)
{
	return sys_ctl_op(run_dir, id, WF_CTL_STATUS);
}

struct wf_ctl_status sys_ctl_op(const char *run_dir, unsigned id, uint16_t op)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct wf_ctl_req q = { 0 };
	struct wf_ctl_status s;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%.80s/target-%u.ctl",
			 run_dir, id);

	cr_assert(fd >= 0);
	cr_assert(n > 0 && (size_t)n < sizeof(sa.sun_path));
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0,
		     "control socket of target %u: %s", id, strerror(errno));
	q.magic = htole32(WF_CTL_MAGIC);
	q.version = htole16(WF_CTL_VERSION);
	q.op = htole16(op);
	cr_assert_eq(send(fd, &q, sizeof(q), 0), (ssize_t)sizeof(q));
	cr_assert_eq(recv(fd, &s, sizeof(s), 0), (ssize_t)sizeof(s));
	close(fd);
	cr_assert_eq(le32toh((uint32_t)s.result), 0, "control op %u of target %u "
		     "answered %d", op, id, (int)le32toh((uint32_t)s.result));
	return s;
}

void sys_map_set_up(const struct sys_cluster *c, unsigned up_mask)
{
	struct wf_map m;
	struct wf_map_err err;

	cr_assert_eq(wf_map_load(c->map, &m, &err), 0, "%s", err.msg);
	m.epoch++;
	for (uint32_t i = 0; i < m.ntargets; i++)
		m.targets[i].up = (up_mask >> m.targets[i].id) & 1;
	cr_assert_eq(wf_map_save(&m, c->map, &err), 0, "%s", err.msg);
	wf_map_free(&m);
}

void sys_expect_image(const struct sys_cluster *c, const char *volume,
		      const char *what, const char *img, size_t len)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	char *buf = aligned_alloc(4096, 128 * 1024);

	cr_assert(buf);
	sys_open(c, WEFT_F_NO_SHORT_CIRCUIT, 5000, &cl, &vol, volume);
	for (size_t off = 0; off < len; off += 128 * 1024) {
		ssize_t n = weft_pread(vol, buf, 128 * 1024, off);

		cr_assert_eq(n, 128 * 1024, "%s: read at %zu: %s", what, off,
			     weft_strerror((int)n));
		for (size_t b = 0; b < 128 * 1024; b += SYS_BS)
			cr_assert(!memcmp(buf + b, img + off + b, SYS_BS),
				  "%s: block at %zu differs (holds version %lld)",
				  what, off + b,
				  (long long)sys_decode(buf + b, off + b));
	}
	weft_cluster_close(cl);
	free(buf);
}

int sys_weftctl(const struct sys_cluster *c, const char *args)
{
	return sys_sh("'%s/weftctl' %s -c '%s' --run-dir '%s' >/dev/null", c->bin,
		      args, c->map, c->run);
}

/* weftctl ARGS on c's map: its file, or etcd's with c->etcd. */
static int ctl_on_map(const struct sys_cluster *c, const char *args)
{
	if (!c->etcd[0])
		return sys_weftctl(c, args);
	return sys_sh("'%s/weftctl' %s --etcd %s --run-dir '%s' >/dev/null",
		      c->bin, args, c->etcd, c->run);
}

/* One 4 KiB write of version ver at off and its read back, as the key
 * in the environment: 0, or the first error. */
static int key_io(const struct sys_cluster *c, const char *volume, uint64_t off,
		  uint64_t ver)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	void *buf;
	ssize_t r;

	sys_open(c, WEFT_F_NO_SHORT_CIRCUIT, 2000, &cl, &vol, volume);
	buf = weft_buf_alloc(cl, SYS_BS);
	cr_assert_not_null(buf);
	sys_fill(buf, off, ver);
	r = weft_pwrite(vol, buf, SYS_BS, off, 0);
	if (r == (ssize_t)SYS_BS) {
		memset(buf, 0, SYS_BS);
		r = weft_pread(vol, buf, SYS_BS, off);
		if (r == (ssize_t)SYS_BS)
			r = sys_decode(buf, off) == (int64_t)ver ? 0 : -EIO;
	}
	weft_buf_free(cl, buf);
	weft_cluster_close(cl);
	return r < 0 ? (int)r : 0;
}

void sys_key_issue_check(struct sys_cluster *c)
{
	char out[400], args[1024], err[256];
	struct wf_keyring kr;
	struct stat st;
	int r1 = -1, r3 = 0;

	snprintf(out, sizeof(out), "%s/app7.keyring", c->dir);
	cr_assert_eq(ctl_on_map(c, "volume allow vol3 client"), 0);
	snprintf(args, sizeof(args), "key issue app7 --host app7.example "
		 "--volume vol1 -o '%s' --keyring '%s'", out, c->keyring);
	cr_assert_eq(ctl_on_map(c, args), 0, "key issue failed");
	cr_assert_eq(stat(out, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
	cr_assert_eq(wf_keyring_load(out, &kr, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(kr.n, 1, "%u keys in the host's file", kr.n);
	cr_assert_str_eq(kr.keys[0].name, "app7");
	wf_keyring_free(&kr);
	setenv("WEFT_KEYRING", out, 1);
	setenv("WEFT_KEY", "app7", 1);
	/* The targets take the epoch at once (RELOAD) or from etcd's watch:
	 * until then they do not know app7 (-EACCES), bounded. */
	for (int i = 0; i < 100 && r1; i++) {
		r1 = key_io(c, "vol1", (uint64_t)i * SYS_EXT % (64u << 20), 3);
		if (r1)
			usleep(100000);
	}
	cr_assert_eq(r1, 0, "app7 on vol1: %d (%s)", r1, weft_strerror(r1));
	for (unsigned i = 0; i < 6; i++) {
		r3 = key_io(c, "vol3", (uint64_t)i * SYS_EXT, 4);
		cr_assert_eq(r3, -EACCES, "app7 on vol3, extent %u: %d (%s)", i,
			     r3, weft_strerror(r3));
	}
	setenv("WEFT_KEYRING", c->keyring, 1);
	setenv("WEFT_KEY", "client", 1);
	/* The cluster's own key still has vol3. */
	cr_assert_eq(key_io(c, "vol3", 0, 5), 0);
}
