/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fault-injection suite, bounded: weft-bench thrash on the rep3 volume
 * of a real three-target cluster, ten cycles of a target killed, frozen or
 * taken out and brought back up to date while a verified workload runs;
 * nothing acknowledged may be lost, nothing read may mismatch, and every
 * target alone must hold every acknowledged write at the end
 * (docs/reliability.md).  WEFT_THRASH_CYCLES changes the count.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "tests/integration/sys.h"

SYS_SUITE(sys_thrash, 900);

static unsigned long long field(const char *json, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	cr_assert(p, "no %s in %s", key, json);
	return strtoull(p + strlen(pat), NULL, 10);
}

Test(sys_thrash, nothing_acknowledged_is_lost)
{
	const char *e = getenv("WEFT_THRASH_CYCLES");
	unsigned cycles = e ? (unsigned)atoi(e) : 10;
	char cmd[2048], out[4096] = "";
	size_t n;
	FILE *p;
	int st;

	snprintf(cmd, sizeof(cmd), "'%s/weft-bench' thrash -c '%s' --volume vol3 "
		 "--cycles %u --cycle-ms 800 --cluster-dir '%s' --run-dir '%s' "
		 "--bin '%s' --json", C.bin, C.map, cycles, C.dir, C.run, C.bin);
	p = popen(cmd, "r");
	cr_assert(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	st = pclose(p);
	fprintf(stderr, "  %s", out);
	cr_assert_eq(field(out, "lost"), 0, "acknowledged writes lost: %s", out);
	cr_assert_eq(field(out, "mismatches"), 0, "%s", out);
	cr_assert_eq(field(out, "cycles"), cycles, "%s", out);
	cr_assert_gt(field(out, "acked_writes"), 0, "%s", out);
	cr_assert_eq(st, 0, "weft-bench thrash failed: %s", out);
}
