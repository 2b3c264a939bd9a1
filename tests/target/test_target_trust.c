/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Local trust (docs/security.md): the sockets get their modes whatever the
 * umask the target was started with, and the control socket hands the
 * device fd and obeys RELOAD only for the peers it trusts (SO_PEERCRED:
 * root, its own uid, --trust-group); STATUS is answered to anyone who can
 * connect.  The untrusted client is a child that drops to uid 65534.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "proto/ctl.h"
#include "tests/target/tgt.h"

#define NOBODY 65534u

/* Start the target as if from a shell with umask 000. */
static void start_umask0(struct tgt_env *e, const char *group)
{
	mode_t old = umask(0);

	if (group)
		cr_assert_eq(tgt_start(e, false, "--trust-group", group, NULL), 0);
	else
		cr_assert_eq(tgt_start(e, false, NULL), 0);
	umask(old);
}

static mode_t mode_of(const char *path)
{
	struct stat sb;

	cr_assert_eq(stat(path, &sb), 0, "%s: %s", path, strerror(errno));
	return sb.st_mode & 07777;
}

/* What a child running as uid/gid NOBODY (no other groups) gets from the
 * control socket: bit 0 STATUS answered with 0, bit 1 SHORTCIRCUIT gave
 * fds, bit 2 SHORTCIRCUIT answered -EACCES, bit 3 RELOAD answered -EACCES,
 * bit 4 could not connect at all. */
static int as_nobody(const char *ctl)
{
	pid_t pid = fork();
	int st;

	cr_assert_geq(pid, 0);
	if (!pid) {
		struct wf_ctl_status s;
		struct wf_ctl_shortcircuit sc;
		int fds[2] = { -1, -1 }, out = 0, n;

		if (setgroups(0, NULL) || setgid(NOBODY) || setuid(NOBODY))
			_exit(100);
		n = tgt_ctl_call(ctl, WF_CTL_STATUS, &s, sizeof(s), NULL);
		if (n == -EACCES)
			_exit(16);
		if (n == sizeof(s) && !s.result)
			out |= 1;
		n = tgt_ctl_call(ctl, WF_CTL_SHORTCIRCUIT, &sc, sizeof(sc), fds);
		if (n == sizeof(sc) && !sc.result && fds[0] >= 0)
			out |= 2;
		if (n == sizeof(sc) && (int32_t)le32toh((uint32_t)sc.result) == -EACCES &&
		    fds[0] < 0)
			out |= 4;
		n = tgt_ctl_call(ctl, WF_CTL_RELOAD, &s, sizeof(s), NULL);
		if (n == sizeof(s) && (int32_t)le32toh((uint32_t)s.result) == -EACCES)
			out |= 8;
		_exit(out);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st));
	cr_assert_neq(WEXITSTATUS(st), 100, "could not drop to uid %u", NOBODY);
	return WEXITSTATUS(st);
}

/* Let uid NOBODY reach the run dir (the test's dirs are private). */
static void open_path(const struct tgt_env *e)
{
	cr_assert_eq(chmod(e->dir, 0755), 0);
	cr_assert_eq(chmod(e->run, 0755), 0);
}

Test(trust, sockets_private_whatever_the_umask, .timeout = 60)
{
	struct tgt_env e;
	char path[300];

	tgt_env_init(&e, 1);
	start_umask0(&e, NULL);
	snprintf(path, sizeof(path), "%s/target-0.sock", e.run);
	cr_assert_eq(mode_of(path), 0600, "data socket mode %o", mode_of(path));
	snprintf(path, sizeof(path), "%s/target-0.ctl", e.run);
	cr_assert_eq(mode_of(path), 0600, "control socket mode %o", mode_of(path));
	cr_assert_eq(mode_of(e.pidf) & 0022, 0, "pid file mode %o", mode_of(e.pidf));
	/* Nobody else gets in at all. */
	open_path(&e);
	cr_assert_eq(as_nobody(path), 16);
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}

/* A socket opened up by mistake (here: chmod 666) still hands nothing to
 * an untrusted peer but STATUS, and where keys are required (the target
 * has a keyring) not even that without a key. */
Test(trust, control_socket_checks_peer_credentials_without_keys, .timeout = 60)
{
	struct tgt_env e;
	char path[300];

	tgt_env_init(&e, 1);
	e.no_keys = true;
	start_umask0(&e, NULL);
	open_path(&e);
	snprintf(path, sizeof(path), "%s/target-0.ctl", e.run);
	cr_assert_eq(chmod(path, 0666), 0);
	cr_assert_eq(as_nobody(path), 1 | 4 | 8,
		     "untrusted: STATUS only, no device fd, no RELOAD");
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}

Test(trust, control_socket_checks_peer_credentials, .timeout = 60)
{
	struct tgt_env e;
	char path[300];

	tgt_env_init(&e, 1);
	start_umask0(&e, NULL);
	open_path(&e);
	snprintf(path, sizeof(path), "%s/target-0.ctl", e.run);
	cr_assert_eq(chmod(path, 0666), 0);
	cr_assert_eq(as_nobody(path), 4 | 8, "untrusted, no key, keys required: "
		     "not even STATUS, no device fd, no RELOAD");
	/* We (root) are trusted. */
	{
		struct wf_ctl_shortcircuit sc;
		int fds[2] = { -1, -1 };

		cr_assert_eq(tgt_ctl_call(path, WF_CTL_SHORTCIRCUIT, &sc,
					  sizeof(sc), fds), sizeof(sc));
		cr_assert_eq(sc.result, 0);
		cr_assert_geq(fds[0], 0);
		close(fds[0]);
		close(fds[1]);
	}
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}

/* --trust-group: the sockets are the group's (0660), its members get the
 * device fd. */
Test(trust, trust_group, .timeout = 60)
{
	struct tgt_env e;
	char path[300], gid[16];
	struct stat sb;

	snprintf(gid, sizeof(gid), "%u", NOBODY);
	tgt_env_init(&e, 1);
	start_umask0(&e, gid);
	open_path(&e);
	snprintf(path, sizeof(path), "%s/target-0.ctl", e.run);
	cr_assert_eq(mode_of(path), 0660);
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert_eq(sb.st_gid, NOBODY);
	cr_assert_eq(as_nobody(path) & 3, 3, "a member of --trust-group is "
		     "trusted");
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}
