/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "placement/map.h"
#include "placement/placement.h"
#include "proto/auth.h"
#include "proto/ctl.h"
#include "tests/target/tgt.h"

const char *tgt_key_name = "client";
static char tgt_keyring_path[192];       /* of the last tgt_env_init */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *bin(void)
{
	static char path[512];     /* test-process constant, set once */
	const char *d = getenv("WEFT_BIN");

	snprintf(path, sizeof(path), "%s/weft-target", d ? d : WEFT_TEST_BIN_DIR);
	return path;
}

/*
 * A port P with P .. P + 7 all free (reactor k of a --cores target listens
 * on P + k; the map's second target is at P + 1), outside the kernel's
 * ephemeral range, where client sockets of parallel tests would take them.
 */
static uint16_t free_port(void)
{
	static unsigned seed;

	if (!seed)
		seed = (unsigned)getpid() ^ (unsigned)time(NULL);
	for (int tries = 0; tries < 500; tries++) {
		uint16_t p = (uint16_t)(20000 + rand_r(&seed) % 9990);
		int fds[8], n;

		for (n = 0; n < 8; n++) {
			struct sockaddr_in sa = { .sin_family = AF_INET,
						  .sin_port = htons((uint16_t)(p + n)),
						  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

			fds[n] = socket(AF_INET, SOCK_STREAM, 0);
			cr_assert_geq(fds[n], 0);
			if (bind(fds[n], (struct sockaddr *)&sa, sizeof(sa))) {
				close(fds[n]);
				break;
			}
		}
		for (int i = 0; i < n; i++)
			close(fds[i]);
		if (n == 8)
			return p;
	}
	cr_assert_fail("no run of 8 free ports in 20000-29999");
	return 0;
}

void tgt_env_write_map(struct tgt_env *e, uint64_t epoch)
{
	char tmp[256];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", e->map);
	f = fopen(tmp, "w");
	cr_assert_not_null(f);
	fprintf(f,
		"epoch = %llu;\ncluster_id = 7;\nextent_size = %u;\n"
		"targets = (\n"
		"  { id = 0; host = \"h0\"; addr = \"127.0.0.1\"; port = %u;"
		" device = \"%s\"; state = \"%s\"; },\n"
		"  { id = 1; host = \"h1\"; addr = \"127.0.0.1\"; port = %u;"
		" device = \"%s/dev1\"; state = \"%s\"; }\n);\n"
		"pools = ( { name = \"p\"; id = 1; replicas = 1; min_size = 1;"
		" failure_domain = \"device\"; pg_num = 16; } );\n"
		"volumes = ( { name = \"v\"; id = %u; size = %llu; pool = \"p\"; } );\n",
		(unsigned long long)epoch, TGT_EXT, e->port, e->dev,
		e->t0_state ? e->t0_state : "up,in",
		e->port == 65535 ? 65534 : e->port + 1, e->dir,
		e->t1_state ? e->t1_state : "up,in", TGT_VOL,
		(unsigned long long)TGT_VOL_SIZE);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(rename(tmp, e->map), 0);
	e->epoch = epoch;
}

/*
 * A failed assertion ends the test before tgt_env_fini: the daemon (in its
 * own session) and the directory would be left behind.  Criterion runs
 * each test in its own process, which exits normally after a failure, so
 * an atexit handler cleans up the one environment of the test.
 */
static struct {
	bool  on, registered;
	pid_t pid;
	char  dir[128];
} live;

static void env_atexit(void)
{
	char cmd[300];

	if (!live.on)
		return;
	live.on = false;
	if (live.pid > 0 && tgt_alive(live.pid))
		kill(live.pid, SIGKILL);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", live.dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", live.dir);
}

void tgt_env_init(struct tgt_env *e, uint64_t epoch)
{
	char err[512];
	int fd;

	memset(e, 0, sizeof(*e));
	if (!live.registered)
		atexit(env_atexit);
	live.registered = true;
	snprintf(e->dir, sizeof(e->dir), "/var/tmp/weft-tt-XXXXXX");
	cr_assert_not_null(mkdtemp(e->dir));
	snprintf(live.dir, sizeof(live.dir), "%s", e->dir);
	live.pid = 0;
	live.on = true;
	snprintf(e->map, sizeof(e->map), "%s/map.conf", e->dir);
	snprintf(e->run, sizeof(e->run), "%s/run", e->dir);
	snprintf(e->pidf, sizeof(e->pidf), "%s/target.pid", e->dir);
	snprintf(e->dev, sizeof(e->dev), "%s/dev0", e->dir);
	snprintf(e->keyring, sizeof(e->keyring), "%s/keyring", e->dir);
	{
		struct wf_keyring kr = { 0 };

		cr_assert_eq(wf_keyring_add(&kr, "target"), 0);
		cr_assert_eq(wf_keyring_add(&kr, "client"), 0);
		cr_assert_eq(wf_keyring_save(e->keyring, &kr), 0);
		wf_keyring_free(&kr);
	}
	snprintf(tgt_keyring_path, sizeof(tgt_keyring_path), "%s", e->keyring);
	tgt_key_name = "client";
	/* weftctl and the other programs a test runs use the client key. */
	setenv("WEFT_KEYRING", e->keyring, 1);
	setenv("WEFT_KEY", "client", 1);
	e->port = free_port();
	tgt_env_write_map(e, epoch);
	fd = open(e->dev, O_CREAT | O_WRONLY, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 96ll << 20), 0);
	close(fd);
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e->map, "--id", "0",
			     "--format", NULL), 0, "format: %s", err);
}

void tgt_env_fini(struct tgt_env *e)
{
	char cmd[300];

	char log[256], line[512];
	bool bad = false;
	FILE *f;

	live.on = false;
	if (e->pid && tgt_alive(e->pid))
		tgt_kill(e, SIGKILL, true);
	/* Daemons log to RUN_DIR/target-0.log: sanitizer reports land there
	 * (and would be lost with the directory). */
	snprintf(log, sizeof(log), "%s/target-0.log", e->run);
	f = fopen(log, "r");
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "Sanitizer") || strstr(line, "runtime error:")) {
			fprintf(stderr, "%s: %s", log, line);
			bad = true;
		}
	if (f)
		fclose(f);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", e->dir);
	cr_assert(!bad, "the target's log has sanitizer reports");
}

static int vrun(char *err, size_t errlen, const char *const *argv, bool wait_it,
		pid_t *pidp)
{
	int p[2], st = 0;
	pid_t pid;
	size_t got = 0;
	ssize_t n;

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (!pid) {
		dup2(p[1], 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	if (pidp)
		*pidp = pid;
	if (!wait_it) {
		close(p[0]);
		return 0;
	}
	while ((n = read(p[0], err + got, errlen - 1 - got)) > 0)
		got += (size_t)n;
	err[got] = 0;
	close(p[0]);
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int tgt_run(char *err, size_t errlen, const char *arg0, ...)
{
	const char *argv[32];
	va_list ap;
	int n = 0;

	argv[n++] = bin();
	argv[n++] = arg0;
	va_start(ap, arg0);
	while (arg0 && n < 31 && (argv[n] = va_arg(ap, const char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;
	return vrun(err, errlen, argv, true, NULL);
}

int tgt_start(struct tgt_env *e, bool foreground, ...)
{
	const char *argv[40];
	char err[2048];
	const char *a;
	va_list ap;
	int n = 0, ret;
	FILE *f;

	unlink(e->pidf);
	argv[n++] = bin();
	argv[n++] = "-c"; argv[n++] = e->map;
	argv[n++] = "--id"; argv[n++] = "0";
	argv[n++] = "--run-dir"; argv[n++] = e->run;
	argv[n++] = "--pid-file"; argv[n++] = e->pidf;
	argv[n++] = "--slots"; argv[n++] = "16";
	argv[n++] = "--slot-size"; argv[n++] = "64K";
	argv[n++] = "--max-conns"; argv[n++] = "8";
	argv[n++] = "--cache"; argv[n++] = "none";
	if (!e->no_keys) {
		argv[n++] = "--keyring"; argv[n++] = e->keyring;
		argv[n++] = "--key"; argv[n++] = "target";
	}
	if (foreground)
		argv[n++] = "--foreground";
	va_start(ap, foreground);
	while (n < 38 && (a = va_arg(ap, const char *)))
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	if (e->no_keys) {
		/* Not even through the environment. */
		unsetenv("WEFT_KEYRING");
		unsetenv("WEFT_KEY");
	}
	if (foreground) {
		int64_t end = now_ms() + 10000;

		vrun(err, sizeof(err), argv, false, &e->pid);
		if (e->no_keys) {
			setenv("WEFT_KEYRING", e->keyring, 1);
			setenv("WEFT_KEY", "client", 1);
		}
		live.pid = e->pid;
		e->child = true;
		while (access(e->pidf, F_OK) && now_ms() < end) {
			int st;

			if (waitpid(e->pid, &st, WNOHANG) == e->pid) {
				e->pid = 0;
				return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
			}
			usleep(2000);
		}
		cr_assert_eq(access(e->pidf, F_OK), 0, "target did not start");
		return 0;
	}
	ret = vrun(err, sizeof(err), argv, true, NULL);
	if (e->no_keys) {
		setenv("WEFT_KEYRING", e->keyring, 1);
		setenv("WEFT_KEY", "client", 1);
	}
	if (ret)
		return ret;
	f = fopen(e->pidf, "r");
	cr_assert_not_null(f, "pid file missing right after start");
	cr_assert_eq(fscanf(f, "%d", &e->pid), 1);
	fclose(f);
	live.pid = e->pid;
	e->child = false;
	return 0;
}

/* A daemon is not our child: once dead it stays a zombie until init reaps
 * it (seconds in some containers), so a zombie counts as gone. */
unsigned tgt_log_count(const struct tgt_env *e, const char *s)
{
	char path[256], line[1024];
	unsigned n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/target-0.log", e->run);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, s) != NULL;
	if (f)
		fclose(f);
	return n;
}

bool tgt_alive(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	size_t n;

	if (pid <= 0 || kill(pid, 0))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/* The target ignored its signal: SIGKILL it (a failed test must not leave
 * a daemon behind), then fail. */
static void stuck(struct tgt_env *e)
{
	kill(e->pid, SIGKILL);
	for (int i = 0; i < 1000 && tgt_alive(e->pid); i++)
		usleep(2000);
	e->pid = 0;
	cr_assert_fail("target did not exit (SIGKILLed)");
}

int tgt_kill(struct tgt_env *e, int sig, bool wait)
{
	int64_t end = now_ms() + 20000;
	int st = 0;

	cr_assert(e->pid > 0);
	kill(e->pid, sig);
	if (!wait)
		return 0;
	if (e->child) {
		while (waitpid(e->pid, &st, WNOHANG) != e->pid) {
			if (now_ms() >= end)
				stuck(e);
			usleep(2000);
		}
		e->pid = 0;
		return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
	while (tgt_alive(e->pid)) {
		if (now_ms() >= end)
			stuck(e);
		usleep(2000);
	}
	e->pid = 0;
	return 0;
}

uint64_t tgt_extent_of(const struct tgt_env *e, uint32_t primary, unsigned nth)
{
	struct wf_map map;
	struct wf_map_err merr;
	struct wf_placer pl;
	struct wf_pg_table t;
	struct wf_extent_loc loc;
	uint64_t off, found = UINT64_MAX;

	cr_assert_eq(wf_map_load(e->map, &map, &merr), 0, "%s", merr.msg);
	cr_assert_eq(wf_placer_init(&pl, &map), 0);
	cr_assert_eq(wf_pg_table_build(&t, &pl), 0);
	for (off = 0; off < TGT_VOL_SIZE; off += TGT_EXT) {
		cr_assert_eq(wf_place_extent(&t, &map, 0, off, &loc), 0);
		if (loc.n && map.targets[loc.acting[0]].id == primary && nth-- == 0) {
			found = off;
			break;
		}
	}
	wf_pg_table_free(&t);
	wf_placer_free(&pl);
	wf_map_free(&map);
	cr_assert_neq(found, UINT64_MAX, "no extent %u with primary %u", nth, primary);
	return found;
}

int tgt_connect(struct tgt_client *c, const char *addr, uint32_t want_slots,
		uint64_t epoch)
{
	/* A HELLO supersedes a live connection of the same client id: each
	 * test client is a client of its own. */
	static uint64_t next_id = 1000;

	return tgt_connect_as(c, addr, want_slots, epoch, ++next_id);
}

int tgt_connect_as(struct tgt_client *c, const char *addr, uint32_t want_slots,
		   uint64_t epoch, uint64_t client_id)
{
	struct wf_ctx_opts co = { .size = sizeof(co), .backend = WF_BACKEND_TCP };
	struct wf_ep_opts eo = { .size = sizeof(eo), .send_depth = 128,
				 .recv_depth = 128, .timeout_ms = 5000 };
	struct wf_hello he = { .client_id = client_id, .epoch = epoch,
			       .want_slots = want_slots, .max_io = TGT_SLOT_SZ };
	struct wf_hello_hdr hh;
	struct wf_cqe cq[16];
	int64_t end = now_ms() + 5000;
	size_t len = (size_t)TGT_SLOTS * 4 * TGT_SLOT_SZ;
	int ret;

	memset(c, 0, sizeof(*c));
	c->epoch = epoch;
	ret = wf_ctx_create(&co, &c->ctx);
	if (ret)
		return ret;
	c->buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(c->buf, MAP_FAILED);
	ret = wf_mr_reg(c->ctx, c->buf, len,
			WF_ACCESS_REMOTE_WRITE | WF_ACCESS_REMOTE_READ, &c->mr);
	cr_assert_eq(ret, 0);
	ret = wf_connect(c->ctx, addr, &eo, &c->ep);
	if (ret)
		return ret;
	if (tgt_key_name) {
		ret = tgt_auth(c->ctx, c->ep, tgt_keyring_path, tgt_key_name,
			       client_id, 7, 0);
		if (ret == -ECONNRESET)
			c->gone = true;
		if (ret)
			return ret;
	}
	wf_hello_encode(&he, &hh);
	ret = wf_send(c->ep, &hh, sizeof(hh), 1);
	if (ret)
		return ret;
	while (now_ms() < end) {
		int n = wf_poll(c->ctx, cq, 16);

		for (int i = 0; i < n; i++) {
			if (cq[i].op == WF_CQE_DISCONNECT) {
				c->gone = true;
				return -ECONNRESET;
			}
			if (cq[i].op != WF_CQE_RECV_MSG)
				continue;
			ret = wf_grant_decode(cq[i].msg, cq[i].len, &c->g, NULL);
			WF_BUF_COPY(c->ring, c->g.ring);
			if (ret)
				return ret;
			return c->g.status ? -wf_wire_status_errno(c->g.status) : 0;
		}
	}
	return -ETIMEDOUT;
}

int tgt_recv_msg(struct wf_ctx *ctx, void *buf, size_t cap, int ms)
{
	int64_t end = now_ms() + ms;
	struct wf_cqe cq[16];

	while (now_ms() < end) {
		int n = wf_poll(ctx, cq, 16);

		for (int i = 0; i < n; i++) {
			if (cq[i].op == WF_CQE_DISCONNECT)
				return -ECONNRESET;
			if (cq[i].op != WF_CQE_RECV_MSG)
				continue;
			if (cq[i].len > cap)
				return -EMSGSIZE;
			memcpy(buf, cq[i].msg, cq[i].len);
			return (int)cq[i].len;
		}
		if (!n)
			usleep(200);
	}
	return -ETIMEDOUT;
}

/* Send h (unless NULL), then one AUTH message into *a: 0 or -errno. */
static int auth_step(struct wf_ctx *ctx, struct wf_ep *ep,
		     const struct wf_auth_hdr *h, struct wf_auth *a)
{
	char buf[512];
	int n;

	if (h && (n = wf_send(ep, h, sizeof(*h), 1)))
		return n;
	n = tgt_recv_msg(ctx, buf, sizeof(buf), 5000);
	if (n < 0)
		return n;
	return wf_auth_decode(buf, (size_t)n, a, NULL) ? -EPROTO : 0;
}

int tgt_auth(struct wf_ctx *ctx, struct wf_ep *ep, const char *keyring,
	     const char *name, uint64_t client_id, uint64_t cluster_id,
	     uint32_t target_id)
{
	static const uint8_t none[WF_KEY_LEN];
	struct wf_keyring kr;
	const struct wf_key *k;
	struct wf_auth_ctx x;
	struct wf_auth_hdr h;
	struct wf_auth a;
	char err[256];
	int ret;

	ret = wf_keyring_load(keyring, &kr, err, sizeof(err));
	cr_assert_eq(ret, 0, "%s", err);
	k = wf_keyring_find(&kr, name);
	ret = wf_auth_offer(&x, cluster_id, name, client_id, target_id, &h);
	if (!ret)
		ret = auth_step(ctx, ep, &h, &a);
	/* An unknown name: any secret (the target refuses it anyway). */
	if (!ret)
		ret = wf_auth_answer(k ? k->secret : none, &x, &a, &h);
	if (ret == -EBADMSG)
		ret = -EACCES;
	if (!ret)
		ret = auth_step(ctx, ep, &h, &a);
	if (!ret && a.step != WF_AUTH_RESULT)
		ret = -EPROTO;
	if (!ret && a.status != WF_WS_OK)
		ret = -EACCES;
	wf_keyring_free(&kr);
	return ret;
}

void tgt_close(struct tgt_client *c)
{
	if (c->ep)
		wf_ep_destroy(c->ep);
	if (c->mr)
		wf_mr_dereg(c->mr);
	if (c->ctx)
		wf_ctx_destroy(c->ctx);
	if (c->buf)
		munmap(c->buf, (size_t)TGT_SLOTS * 4 * TGT_SLOT_SZ);
	memset(c, 0, sizeof(*c));
}

static int post_retry(int (*fn)(struct tgt_client *, void *), struct tgt_client *c,
		      void *arg)
{
	struct wf_cqe cq[16];
	int64_t end = now_ms() + 5000;
	int ret;

	while ((ret = fn(c, arg)) == -EAGAIN && now_ms() < end) {
		int n = wf_poll(c->ctx, cq, 16);

		/* Only send completions can be reaped here without losing
		 * anything: replies are not expected while posting in the
		 * tests that fill the send queue. */
		for (int i = 0; i < n; i++)
			cr_assert(cq[i].op != WF_CQE_RECV_MSG,
				  "reply dropped while waiting for a credit");
	}
	return ret;
}

struct post_args {
	uint32_t slot, len;
	const void *msg;
};

static int do_put(struct tgt_client *c, void *a)
{
	struct post_args *p = a;

	return wf_write(c->ep, c->mr, (uint64_t)p->slot * c->g.slot_size, p->len,
			&c->ring, (uint64_t)p->slot * c->g.slot_size, 2);
}

static int do_send(struct tgt_client *c, void *a)
{
	struct post_args *p = a;

	return wf_send(c->ep, p->msg, p->len, 3);
}

int tgt_send_raw(struct tgt_client *c, const void *msg, uint32_t len)
{
	struct post_args p = { .msg = msg, .len = len };

	return post_retry(do_send, c, &p);
}

int tgt_post(struct tgt_client *c, uint8_t op, uint64_t vol, uint64_t off,
	     uint32_t len, uint32_t slot, uint16_t flags, uint64_t epoch)
{
	struct wf_req r = { .opcode = op, .flags = flags, .tag = ++c->tag,
			    .volume = vol, .offset = off, .epoch = epoch,
			    .length = len, .slot = slot };
	struct wf_req_hdr h;
	struct post_args p = { .slot = slot, .len = len };
	int ret;

	if (op == WF_OP_WRITE && slot < c->g.slot_count &&
	    len <= c->g.slot_size && len) {
		ret = post_retry(do_put, c, &p);
		if (ret)
			return ret;
	}
	if (op == WF_OP_READ) {
		uint32_t l = len ? len : 4096;
		uint64_t o = (uint64_t)(slot % (TGT_SLOTS * 4)) * c->g.slot_size;

		if (o + l > (size_t)TGT_SLOTS * 4 * TGT_SLOT_SZ)
			o = 0;
		struct wf_rkey buf;

		ret = wf_mr_rkey(c->mr, c->ep, o, l, &buf);
		cr_assert_eq(ret, 0);
		WF_BUF_COPY(r.buf, buf);
	}
	wf_req_encode(&r, &h);
	p.msg = &h;
	p.len = sizeof(h);
	return post_retry(do_send, c, &p);
}

int tgt_reply(struct tgt_client *c, struct wf_reply *r, int ms)
{
	struct wf_cqe cq[1];
	int64_t end = now_ms() + ms;

	while (now_ms() < end) {
		int n = wf_poll(c->ctx, cq, 1);

		if (n < 0)
			return n;
		if (!n)
			continue;
		if (cq[0].op == WF_CQE_DISCONNECT) {
			c->gone = true;
			return -ECONNRESET;
		}
		if (cq[0].op != WF_CQE_RECV_MSG)
			continue;
		cr_assert_eq(wf_reply_decode(cq[0].msg, cq[0].len, r, NULL), 0,
			     "undecodable reply");
		c->last = *r;
		return 0;
	}
	return -ETIMEDOUT;
}

int tgt_io(struct tgt_client *c, uint8_t op, uint64_t vol, uint64_t off,
	   uint32_t len, void *data, uint64_t epoch)
{
	struct wf_reply r;
	int ret;

	if (op == WF_OP_WRITE && data && len <= c->g.slot_size)
		memcpy(c->buf, data, len);
	ret = tgt_post(c, op, vol, off, len, 0, 0, epoch);
	if (ret)
		return ret;
	ret = tgt_reply(c, &r, 5000);
	if (ret)
		return ret;
	cr_assert_eq(r.tag, c->tag, "reply for another request");
	if (op == WF_OP_READ && data && !r.status)
		memcpy(data, c->buf, len);
	return r.status;
}

bool tgt_wait_closed(struct tgt_client *c, int ms)
{
	struct wf_cqe cq[16];
	int64_t end = now_ms() + ms;

	while (!c->gone && now_ms() < end) {
		int n = wf_poll(c->ctx, cq, 16);

		for (int i = 0; i < n; i++)
			if (cq[i].op == WF_CQE_DISCONNECT)
				c->gone = true;
	}
	return c->gone;
}

void tgt_pattern(void *buf, uint32_t len, uint64_t seed)
{
	uint64_t *p = buf, x = seed * 0x9e3779b97f4a7c15ull + 1;

	for (uint32_t i = 0; i < len / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = x;
	}
}

void tgt_reconnect_round(const char *addr, const uint64_t *base, unsigned next,
			 unsigned round)
{
	enum { LEN = 65536 };
	static char w[LEN], r[LEN];
	struct tgt_client c, old;
	struct wf_cqe cq[16];
	unsigned sent = 0;

	cr_assert_leq(2 * next, TGT_SLOTS);
	cr_assert_eq(tgt_connect_as(&old, addr, TGT_SLOTS, 1, 42), 0);
	for (unsigned k = 0; k < next; k++) {
		cr_assert_eq(tgt_post(&old, WF_OP_DISCARD, TGT_VOL, base[k],
				      TGT_EXT, 2 * k, 0, 1), 0);
		tgt_pattern(old.buf + (size_t)(2 * k + 1) * old.g.slot_size,
			    LEN, 1000 * round + k);
		cr_assert_eq(tgt_post(&old, WF_OP_WRITE, TGT_VOL, base[k],
				      LEN, 2 * k + 1, 0, 1), 0);
	}
	/* Until the requests have left (their send completions, and the
	 * write payloads'), then drop without waiting for replies. */
	for (int spins = 0; sent < 3 * next && spins < 1000000; spins++) {
		int n = wf_poll(old.ctx, cq, 16);

		for (int i = 0; i < n; i++)
			if (cq[i].op == WF_CQE_SEND || cq[i].op == WF_CQE_WRITE)
				sent++;
	}
	if (!(round & 1))
		tgt_close(&old);
	cr_assert_eq(tgt_connect_as(&c, addr, TGT_SLOTS, 1, 42), 0);
	for (unsigned k = 0; k < next; k++) {
		int st = WF_WS_BUSY;

		tgt_pattern(w, LEN, 1000 * round + 500 + k);
		/* BUSY while the old connection's I/O runs: retry */
		for (unsigned i = 0; i < 500 && st == WF_WS_BUSY; i++) {
			st = tgt_io(&c, WF_OP_WRITE, TGT_VOL, base[k], LEN, w, 1);
			if (st == WF_WS_BUSY)
				usleep(2000);
		}
		cr_assert_eq(st, WF_WS_OK, "round %u extent %u: %s", round, k,
			     wf_wire_status_name((uint16_t)st));
	}
	for (unsigned k = 0; k < next; k++) {
		tgt_pattern(w, LEN, 1000 * round + 500 + k);
		cr_assert_eq(tgt_io(&c, WF_OP_READ, TGT_VOL, base[k], LEN, r, 1),
			     WF_WS_OK);
		cr_assert_eq(memcmp(r, w, LEN), 0, "round %u extent %u: an old "
			     "write landed after the newer one", round, k);
	}
	tgt_close(&c);
	if (round & 1) {
		cr_assert(tgt_wait_closed(&old, 10000), "round %u: the superseded "
			  "connection is still open", round);
		tgt_close(&old);
	}
}

int tgt_ctl_call(const char *path, uint16_t op, void *ans, size_t anslen,
		 int *fds)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct wf_ctl_req q = { .magic = htole32(WF_CTL_MAGIC),
				.version = htole16(WF_CTL_VERSION), .op = htole16(op) };
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr a;
	} u;
	struct iovec iov = { .iov_base = ans, .iov_len = anslen };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	ssize_t n;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), ret;

	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    send(fd, &q, sizeof(q), 0) != (ssize_t)sizeof(q)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	ret = n < 0 ? -errno : (int)n;
	close(fd);
	cm = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
	if (fds && cm && cm->cmsg_type == SCM_RIGHTS)
		memcpy(fds, CMSG_DATA(cm), 2 * sizeof(int));
	return ret;
}
