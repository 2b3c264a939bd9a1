/* SPDX-License-Identifier: Apache-2.0 */
/* A real local cluster of weft-target processes (see cluster.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "proto/auth.h"
#include "tests/initiator/cluster.h"

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void bin(char *path, size_t len)
{
	const char *d = getenv("WEFT_BIN");

	snprintf(path, len, "%s/weft-target", d ? d : WEFT_TEST_BIN_DIR);
}

static uint16_t free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

void lc_write_map(struct lcluster *c, uint64_t epoch)
{
	char tmp[256];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", c->map);
	f = fopen(tmp, "w");
	cr_assert_not_null(f);
	fprintf(f, "epoch = %llu;\ncluster_id = 9;\nextent_size = %u;\n"
		"targets = (\n", (unsigned long long)epoch, CL_EXT);
	for (unsigned t = 0; t < c->n; t++)
		fprintf(f, "  { id = %u; host = \"%s\"; addr = \"127.0.0.1\"; "
			"port = %u; device = \"%s/dev%u\"; }%s\n", t,
			c->host ? c->host : "testhost", c->port[t], c->dir, t,
			t + 1 < c->n ? "," : "");
	fprintf(f, ");\npools = (\n  { name = \"rep1\"; id = 2; replicas = 1; "
		"min_size = 1; failure_domain = \"device\"; pg_num = 64; }");
	if (c->n >= 3)
		fprintf(f, ",\n  { name = \"rep3\"; id = 1; replicas = 3; "
			"min_size = 2; failure_domain = \"device\"; pg_num = 64; }");
	fprintf(f, "\n);\nvolumes = (\n  { name = \"vol1\"; id = 2; size = %llu; "
		"pool = \"rep1\"; }", (unsigned long long)CL_VOL_SIZE);
	if (c->n >= 3)
		fprintf(f, ",\n  { name = \"vol3\"; id = 1; size = %llu; "
			"pool = \"rep3\"; }", (unsigned long long)CL_VOL_SIZE);
	fprintf(f, "\n);\n");
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(rename(tmp, c->map), 0);
	c->epoch = epoch;
}

static int run(const char *const *argv)
{
	pid_t pid = fork();
	int st = 0;

	cr_assert_geq(pid, 0);
	if (!pid) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0)
			dup2(fd, 1);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void lc_start(struct lcluster *c, unsigned t)
{
	char b[512], id[16], pidf[256], sock[256];
	const char *argv[24];
	int64_t end = now_ms() + 10000;
	int n = 0;
	pid_t pid;

	bin(b, sizeof(b));
	snprintf(id, sizeof(id), "%u", t);
	snprintf(pidf, sizeof(pidf), "%s/target-%u.pid", c->dir, t);
	snprintf(sock, sizeof(sock), "%s/target-%u.ctl", c->run, t);
	unlink(pidf);
	argv[n++] = b;
	argv[n++] = "-c"; argv[n++] = c->map;
	argv[n++] = "--id"; argv[n++] = id;
	argv[n++] = "--run-dir"; argv[n++] = c->run;
	argv[n++] = "--pid-file"; argv[n++] = pidf;
	argv[n++] = "--max-conns"; argv[n++] = "8";
	argv[n++] = "--cache"; argv[n++] = "none";
	argv[n++] = "--keyring"; argv[n++] = c->keyring;
	argv[n++] = "--key"; argv[n++] = "target";
	argv[n++] = "--foreground";
	argv[n] = NULL;
	pid = fork();
	cr_assert_geq(pid, 0);
	if (!pid) {
		/* A test that fails an assertion exits without lc_fini: the
		 * target must not outlive it (nor hold its output pipe). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	c->pid[t] = pid;
	/* Listening once the pid file exists. */
	while (access(pidf, F_OK)) {
		int st;

		cr_assert_eq(waitpid(pid, &st, WNOHANG), 0,
			     "weft-target %u exited at start", t);
		cr_assert_lt(now_ms(), end, "weft-target %u did not start", t);
		usleep(2000);
	}
}

void lc_kill(struct lcluster *c, unsigned t, int sig, bool wait)
{
	int64_t end = now_ms() + 10000;
	int st;

	if (!c->pid[t])
		return;
	kill(c->pid[t], sig);
	if (!wait)
		return;
	while (waitpid(c->pid[t], &st, WNOHANG) == 0) {
		if (now_ms() > end) {
			kill(c->pid[t], SIGKILL);
			waitpid(c->pid[t], &st, 0);
			break;
		}
		usleep(2000);
	}
	c->pid[t] = 0;
}

void lc_init(struct lcluster *c, unsigned n)
{
	const char *host = c->host;
	char b[512];

	memset(c, 0, sizeof(*c));
	c->host = host;
	c->n = n;
	cr_assert(n >= 1 && n <= CL_MAXT);
	snprintf(c->dir, sizeof(c->dir), "/var/tmp/weft-lt-XXXXXX");
	cr_assert_not_null(mkdtemp(c->dir));
	snprintf(c->map, sizeof(c->map), "%s/map.conf", c->dir);
	snprintf(c->run, sizeof(c->run), "%s/run", c->dir);
	cr_assert_eq(mkdir(c->run, 0755), 0);
	for (unsigned t = 0; t < n; t++)
		c->port[t] = free_port();
	lc_write_map(c, 1);
	bin(b, sizeof(b));
	for (unsigned t = 0; t < n; t++) {
		char dev[256], id[16];
		const char *argv[] = { b, "-c", c->map, "--id", id, "--format",
				       NULL };
		int fd;

		snprintf(dev, sizeof(dev), "%s/dev%u", c->dir, t);
		snprintf(id, sizeof(id), "%u", t);
		fd = open(dev, O_CREAT | O_WRONLY, 0644);
		cr_assert_geq(fd, 0);
		cr_assert_eq(ftruncate(fd, 256ll << 20), 0);
		close(fd);
		cr_assert_eq(run(argv), 0, "format dev%u", t);
	}
	snprintf(c->keyring, sizeof(c->keyring), "%s/keyring", c->dir);
	{
		struct wf_keyring kr = { 0 };

		cr_assert_eq(wf_keyring_add(&kr, "target"), 0);
		cr_assert_eq(wf_keyring_add(&kr, "client"), 0);
		cr_assert_eq(wf_keyring_save(c->keyring, &kr), 0);
		wf_keyring_free(&kr);
	}
	setenv("WEFT_RUN_DIR", c->run, 1);
	setenv("WEFT_KEYRING", c->keyring, 1);
	setenv("WEFT_KEY", "client", 1);
	for (unsigned t = 0; t < n; t++)
		lc_start(c, t);
}

void lc_fini(struct lcluster *c)
{
	char cmd[300];

	for (unsigned t = 0; t < c->n; t++)
		lc_kill(c, t, SIGTERM, true);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
	(void)!system(cmd);
}
