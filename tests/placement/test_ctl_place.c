/* SPDX-License-Identifier: Apache-2.0 */
/* weftctl locate / map show / balance, run as processes on the conf maps. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "placement/placement.h"

/* Run a shell command line; returns its exit code, output in out. */
static int run(char *out, size_t cap, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	FILE *f;
	size_t n = 0;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	f = popen(cmd, "r");
	cr_assert(f, "popen %s", cmd);
	while (n + 1 < cap && (n += fread(out + n, 1, cap - 1 - n, f)) && !feof(f))
		;
	out[n] = '\0';
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *env(const char *name)
{
	const char *v = getenv(name);

	cr_assert(v, "%s not set (run through ctest)", name);
	return v;
}

Test(ctl, locate_prints_extent_pg_and_acting_set)
{
	static char out[8192];
	const char *bin = env("WEFT_BIN"), *src = env("WEFT_SRC");
	struct wf_map m;
	struct wf_map_err err;
	struct wf_placer pl;
	struct wf_pg_table t;
	struct wf_extent_loc loc;
	char want[256];
	char path[512];

	cr_assert_eq(run(out, sizeof(out), "%s/weftctl locate -c %s/conf/rack128.conf vol0 5G",
			 bin, src), 0);
	snprintf(path, sizeof(path), "%s/conf/rack128.conf", src);
	cr_assert_eq(wf_map_load(path, &m, &err), 0, "%s", err.msg);
	cr_assert_eq(wf_placer_init(&pl, &m), 0);
	cr_assert_eq(wf_pg_table_build(&t, &pl), 0);
	cr_assert_eq(wf_place_extent(&t, &m, 0, 5ull << 30, &loc), 0);
	snprintf(want, sizeof(want), "-> extent %llu ", (unsigned long long)loc.extent);
	cr_assert(strstr(out, want), "no '%s' in:\n%s", want, out);
	snprintf(want, sizeof(want), "pg      %u of 4096", loc.pg);
	cr_assert(strstr(out, want), "no '%s' in:\n%s", want, out);
	for (unsigned i = 0; i < loc.n; i++) {
		const struct wf_target *tg = &m.targets[loc.acting[i]];

		snprintf(want, sizeof(want), "%-8s target %-5u %s:%u", i ? "replica" : "primary",
			 tg->id, tg->addr, tg->port);
		cr_assert(strstr(out, want), "no '%s' in:\n%s", want, out);
	}
	wf_pg_table_free(&t);
	wf_placer_free(&pl);
	wf_map_free(&m);

	cr_assert_eq(run(out, sizeof(out), "%s/weftctl locate -c %s/conf/local.conf vol3 1T 2>&1",
			 bin, src), 1, "%s", out);
	cr_assert_eq(run(out, sizeof(out), "%s/weftctl locate -c %s/conf/local.conf nosuch 0 2>&1",
			 bin, src), 1, "%s", out);
	cr_assert_eq(run(out, sizeof(out), "%s/weftctl locate -c %s/conf/local.conf vol3 2>&1",
			 bin, src), 2, "%s", out);
}

Test(ctl, map_show_lists_devices_with_pg_counts)
{
	static char out[65536];
	const char *bin = env("WEFT_BIN"), *src = env("WEFT_SRC");

	cr_assert_eq(run(out, sizeof(out), "%s/weftctl map show -c %s/conf/local.conf", bin, src), 0);
	/* Three devices, each in all 64 PGs of rep3. */
	cr_assert(strstr(out, "rep3") && strstr(out, "rep1"), "%s", out);
	cr_assert(strstr(out, "pool rep3: 3 replicas, failure domain device, pg_num 64: "
			      "max/mean 1.000"), "%s", out);
	for (int id = 0; id < 3; id++) {
		char want[64];

		snprintf(want, sizeof(want), "id %-5d up,in         64", id);
		cr_assert(strstr(out, want), "no '%s' in:\n%s", want, out);
	}
}

Test(ctl, balance_writes_next_epoch_and_is_idempotent)
{
	static char out[8192];
	const char *bin = env("WEFT_BIN"), *src = env("WEFT_SRC");
	char tmp[] = "/tmp/weft-balance-XXXXXX", path[600];
	struct wf_map m;
	struct wf_map_err err;
	int fd = mkstemp(tmp);

	cr_assert_geq(fd, 0);
	close(fd);
	snprintf(path, sizeof(path), "%s.conf", tmp);
	cr_assert_eq(run(out, sizeof(out), "%s/weftctl balance -c %s/conf/rack128.conf -o %s",
			 bin, src, path), 0, "%s", out);
	cr_assert(strstr(out, "epoch 1 -> 2"), "%s", out);
	cr_assert_eq(wf_map_load(path, &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m.epoch, 2);
	cr_assert_gt(m.noverrides, 0);
	/* Every PG that gained a member is pinned to its old members (all
	 * up in this map: rack128's targets hold nothing yet, but the rule
	 * does not know that) until `weftctl recover` says they are current. */
	cr_assert_gt(m.ntemps, 0, "%s", out);
	cr_assert(strstr(out, "PGs pinned"), "%s", out);
	for (uint32_t i = 0; i < m.ntemps; i++)
		cr_assert_eq(m.temps[i].n, m.pools[m.temps[i].pool].replicas,
			     "pg %u: every old member is up, all serve", m.temps[i].pg);
	wf_map_free(&m);
	cr_assert_eq(run(out, sizeof(out), "%s/weftctl balance -c %s", bin, path), 0, "%s", out);
	cr_assert(strstr(out, " 0 replica moves"), "%s", out);
	cr_assert_eq(run(out, sizeof(out), "%s/weftctl balance -c %s --prev %s/conf/rack128.conf",
			 bin, path, src), 0, "%s", out);
	unlink(path);
	unlink(tmp);
}
