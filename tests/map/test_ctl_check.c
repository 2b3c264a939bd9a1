/* SPDX-License-Identifier: Apache-2.0 */
/* weftctl check: exit 0 on a good map, 1 with the loader message, 2 on bad usage. */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

extern char **environ;

struct run {
	int status;             /* exit code, or -1 if it did not exit */
	char out[4096], err[4096];
};

static void slurp(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;

	if (f) {
		n = fread(buf, 1, cap - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
}

/* Runs $WEFT_BIN/weftctl with args, capturing stdout and stderr. */
static void weftctl(struct run *r, const char *const *args)
{
	char dir[] = "/tmp/weft-ctl-XXXXXX", out[64], err[64], bin[4096];
	const char *bindir = getenv("WEFT_BIN");
	posix_spawn_file_actions_t fa;
	char *argv[16];
	int n = 0, st;
	pid_t pid;

	cr_assert(bindir != NULL, "WEFT_BIN not set");
	snprintf(bin, sizeof(bin), "%s/weftctl", bindir);
	cr_assert(mkdtemp(dir) != NULL);
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(err, sizeof(err), "%s/err", dir);
	argv[n++] = bin;
	for (; *args && n < 15; args++)
		argv[n++] = (char *)*args;
	argv[n] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_eq(posix_spawn(&pid, bin, &fa, NULL, argv, environ), 0, "spawn %s", bin);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	slurp(out, r->out, sizeof(r->out));
	slurp(err, r->err, sizeof(r->err));
	unlink(out);
	unlink(err);
	rmdir(dir);
}

Test(ctl_check, good_maps)
{
	static const char *const maps[] = { "local.conf", "rack128.conf" };

	for (size_t i = 0; i < 2; i++) {
		char path[4096];
		struct run r;

		snprintf(path, sizeof(path), "%s/conf/%s", getenv("WEFT_SRC"), maps[i]);
		weftctl(&r, (const char *const[]){ "check", "-c", path, NULL });
		cr_assert_eq(r.status, 0, "%s: %s", maps[i], r.err);
		cr_assert(strstr(r.out, ": ok: epoch 1") != NULL, "%s", r.out);
		cr_assert_eq(strchr(r.out, '\n') - r.out + 1, (long)strlen(r.out),
			     "summary is not one line: %s", r.out);
	}
}

Test(ctl_check, bad_map)
{
	char path[] = "/tmp/weft-bad-XXXXXX", want[128];
	static const char text[] =
		"epoch = 1;\ncluster_id = 1;\n"
		"targets = ( { id = 0; host = \"a\"; addr = \"127.0.0.1\"; port = 1;\n"
		"              device = \"d\"; weight = 99999.0; } );\n";
	struct run r;
	int fd = mkstemp(path);

	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
	close(fd);
	weftctl(&r, (const char *const[]){ "check", "-c", path, NULL });
	unlink(path);
	snprintf(want, sizeof(want), "%s:4: targets[0].weight: ", path);
	cr_assert_eq(r.status, 1);
	cr_assert(!strncmp(r.err, want, strlen(want)), "stderr: %s", r.err);
	cr_assert_str_eq(r.out, "");

	weftctl(&r, (const char *const[]){ "check", "-c", "/nonexistent.conf", NULL });
	cr_assert_eq(r.status, 1);
	cr_assert(strstr(r.err, "/nonexistent.conf: cannot open") != NULL, "%s", r.err);
}

Test(ctl_check, usage)
{
	struct run r;

	weftctl(&r, (const char *const[]){ "check", NULL });
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "usage: weftctl check -c MAP") != NULL, "%s", r.err);
	weftctl(&r, (const char *const[]){ "check", "-x", NULL });
	cr_assert_eq(r.status, 2);
	weftctl(&r, (const char *const[]){ "check", "-c", "a.conf", "extra", NULL });
	cr_assert_eq(r.status, 2);
	weftctl(&r, (const char *const[]){ "check", "-c", NULL });
	cr_assert_eq(r.status, 2);
	weftctl(&r, (const char *const[]){ "check", "-h", NULL });
	cr_assert_eq(r.status, 0);
	cr_assert(strstr(r.out, "usage: weftctl check") != NULL, "%s", r.out);
}
