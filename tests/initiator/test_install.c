/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `cmake --install` into a temp prefix, then a tiny program built against
 * the installed library with pkg-config only, run against a real target.
 * Also: libweft.so exports nothing but weft_*.
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

	cr_assert_eq(sh("cd '%s' && cp '%s/tests/initiator/tiny.c.in' tiny.c && "
			"cc -std=c11 -Wall -Werror " WEFT_TINY_CFLAGS " tiny.c -o tiny "
			"$(PKG_CONFIG_PATH='%s' pkg-config --cflags --libs weft) "
			"-Wl,-rpath,\"$(PKG_CONFIG_PATH='%s' pkg-config "
			"--variable=libdir weft)\" >build.log 2>&1",
			pfx, WEFT_SOURCE_DIR, pcdir, pcdir), 0,
		     "tiny program builds with pkg-config alone (see %s/build.log)",
		     pfx);

	/* run it against a real target, started from the installed binary */
	{
		char bindir[700];

		snprintf(bindir, sizeof(bindir), "%s/bin", pfx);
		setenv("WEFT_BIN", bindir, 1);
	}
	lc_init(&C, 1);
	cr_assert_eq(sh("'%s/tiny' '%s' vol1 >'%s/run.log' 2>&1", pfx, C.map,
			pfx), 0, "tiny runs (see %s/run.log)", pfx);
	cr_assert_eq(sh("grep -q 'tiny: ok' '%s/run.log'", pfx), 0);
	lc_fini(&C);
	sh("rm -rf '%s'", pfx);
}
