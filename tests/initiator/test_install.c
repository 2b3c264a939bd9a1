/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `cmake --install` into a temp prefix, then a tiny program built against
 * the installed library with pkg-config only (no -rpath of its own), run
 * against a real target without LD_LIBRARY_PATH; fio through the
 * installed engine the same way.  Also: libweft.so exports nothing but
 * weft_*, the man pages render, the systemd unit template verifies.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tests/initiator/cluster.h"

static struct lcluster C;

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return st == -1 ? -1 : WEXITSTATUS(st);
}

Test(install, tiny_program_against_installed_library, .timeout = 240)
{
	char pfx[] = "/var/tmp/weft-install-XXXXXX";
	char pcdir[600];
	FILE *f;

	cr_assert_not_null(mkdtemp(pfx));
	cr_assert_eq(sh("cmake --install '%s' --prefix '%s' >'%s/install.log' 2>&1",
			WEFT_BUILD_DIR, pfx, pfx), 0, "cmake --install");
	for (const char *p = "bin/weftctl\0bin/weft-bench\0bin/weft-target\0"
			     "include/weft.h\0"; *p; p += strlen(p) + 1)
		cr_assert_eq(sh("test -e '%s/%s'", pfx, p), 0, "installed %s", p);
	/* wherever GNUInstallDirs put the library */
	snprintf(pcdir, sizeof(pcdir), "%s/pcdir", pfx);
	cr_assert_eq(sh("dirname \"$(find '%s' -name weft.pc | head -1)\" >'%s'",
			pfx, pcdir), 0);
	f = fopen(pcdir, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(pcdir, sizeof(pcdir), f));
	fclose(f);
	pcdir[strcspn(pcdir, "\n")] = 0;
	cr_assert_eq(sh("test -f '%s/weft.pc'", pcdir), 0, "pkg-config file");

	/* only weft_* leaves the shared library */
	cr_assert_eq(sh("nm -D --defined-only \"$(PKG_CONFIG_PATH='%s' "
			"pkg-config --variable=libdir weft)/libweft.so\" | "
			"awk '$2 ~ /[TDBRtdbr]/ {print $3}' | grep -v '^weft_' | "
			"grep -q .", pcdir), 1, "no symbol but weft_* exported");

	cr_assert_eq(sh("nm -D --defined-only \"$(PKG_CONFIG_PATH='%s' "
			"pkg-config --variable=libdir weft)/libweft.so\" | "
			"grep -q ' T weft_cluster_open'", pcdir), 0,
		     "the API is exported");

	/* pkg-config's flags carry the run path: no -rpath of our own. */
	cr_assert_eq(sh("cd '%s' && cp '%s/tests/initiator/tiny.c.in' tiny.c && "
			"cc -std=c11 -Wall -Werror " WEFT_TINY_CFLAGS " tiny.c -o tiny "
			"$(PKG_CONFIG_PATH='%s' pkg-config --cflags --libs weft) "
			">build.log 2>&1", pfx, WEFT_SOURCE_DIR, pcdir), 0,
		     "tiny program builds with pkg-config alone (see %s/build.log)",
		     pfx);
	cr_assert_eq(sh("env -u LD_LIBRARY_PATH ldd '%s/tiny' | grep -q "
			"'libweft.so.0 => %s/'", pfx, pfx), 0,
		     "the installed program finds the installed libweft.so");

	/* Man pages (help2man), and the unit template systemd accepts. */
	for (const char *m = "weftctl\0weft-target\0weft-bench\0"; *m; m += strlen(m) + 1)
		cr_assert_eq(sh("man -l '%s/share/man/man1/%s.1' 2>/dev/null | "
				"grep -q 'SYNOPSIS\\|DESCRIPTION'", pfx, m), 0,
			     "man page of %s", m);
	cr_assert_eq(sh("u='%s/lib/systemd/system/weft-target@.service' && "
			"grep -qx 'LimitMEMLOCK=infinity' \"$u\" && "
			"grep -qx 'PIDFile=/run/weft/target-%%i.pid' \"$u\" && "
			"grep -q '^ExecStart=%s/bin/weft-target .*--pid-file "
			"/run/weft/target-%%i.pid' \"$u\"", pfx, pfx), 0,
		     "unit template: memlock, pid file, the installed binary");
	if (!sh("command -v systemd-analyze >/dev/null"))
		cr_assert_eq(sh("cd '%s' && cp lib/systemd/system/weft-target@.service "
				"weft-target@0.service && systemd-analyze verify "
				"--man=no ./weft-target@0.service >verify.log 2>&1 && "
				"! grep -v '^$' verify.log", pfx), 0,
			     "systemd-analyze verify (see %s/verify.log)", pfx);

	/* run it against a real target, started from the installed binary */
	{
		char bindir[700];

		snprintf(bindir, sizeof(bindir), "%s/bin", pfx);
		setenv("WEFT_BIN", bindir, 1);
	}
	lc_init(&C, 1);
	cr_assert_eq(sh("env -u LD_LIBRARY_PATH '%s/tiny' '%s' vol1 >'%s/run.log' 2>&1",
			pfx, C.map, pfx), 0, "tiny runs (see %s/run.log)", pfx);
	cr_assert_eq(sh("grep -q 'tiny: ok' '%s/run.log'", pfx), 0);
#ifdef WEFT_FIO_ENGINE
	/* fio loads the installed engine, which finds libweft.so by $ORIGIN
	 * (fio is not instrumented: not under the sanitizers). */
	cr_assert_eq(sh("test -f \"$(PKG_CONFIG_PATH='%s' pkg-config "
			"--variable=libdir weft)/libweft_fio.so\"", pcdir), 0,
		     "libweft_fio.so installed beside libweft.so");
	if (!WEFT_TINY_CFLAGS[0])
		cr_assert_eq(sh("env -u LD_LIBRARY_PATH WEFT_RUN_DIR='%s' fio "
				"--ioengine=external:\"$(PKG_CONFIG_PATH='%s' "
				"pkg-config --variable=libdir weft)/libweft_fio.so\" "
				"--weft_map='%s' --weft_volume=vol1 --name=i "
				"--rw=randwrite --bs=4k --size=4m --verify=crc32c "
				"--do_verify=1 --verify_fatal=1 >'%s/fio.log' 2>&1",
				C.run, pcdir, C.map, pfx), 0,
			     "fio with the installed engine (see %s/fio.log)", pfx);
#endif
	lc_fini(&C);
	sh("rm -rf '%s'", pfx);
}
