/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tools on a real cluster: fio through the external engine with
 * crc32c verification, and weft-bench io (its JSON contract, its
 * verification, its floors).  Behaviour only: no timing is asserted.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <endian.h>

#include <criterion/criterion.h>

#include "proto/ctl.h"
#include "tests/integration/sys.h"

SYS_SUITE(sys_tools, 180);

#ifdef WEFT_FIO_ENGINE
/* Under ASan the engine needs the ASan runtime loaded first into fio. */
#ifdef WEFT_ASAN_PRELOAD
#define FIO_ENV "LD_PRELOAD=" WEFT_ASAN_PRELOAD " ASAN_OPTIONS=detect_leaks=0 "
#else
#define FIO_ENV ""
#endif

static int fio(const char *args, const char *out)
{
	return sys_sh(FIO_ENV "fio --ioengine=external:%s --weft_map='%s' "
		      "--weft_volume=vol1 --output-format=json --output='%s' %s "
		      ">/dev/null 2>'%s.err' || { cat '%s.err' >&2; exit 1; }",
		      WEFT_FIO_ENGINE, C.map, out, args, out, out);
}
#endif

Test(sys_tools, fio_verify)
{
#ifndef WEFT_FIO_ENGINE
	SYS_SKIP("libweft_fio.so was not built (no fio source; see fio/CMakeLists.txt)");
#else
	char out[400];

	cr_assert(sys_sh("command -v fio >/dev/null") == 0, "fio is not installed "
		  "although the engine was built (scripts/deps installs it)");
	snprintf(out, sizeof(out), "%s/fio.json", C.dir);
	/* Random writes of 4k..64k across extent boundaries, then every
	 * block read back and its crc32c and header checked by fio. */
	cr_assert_eq(fio("--name=w --rw=randwrite --bsrange=4k-64k --iodepth=16 "
			 "--offset=1020k --size=24m --verify=crc32c --do_verify=1 "
			 "--verify_fatal=1 --randseed=11", out), 0,
		     "fio write+verify job failed");
	cr_assert(sys_sh("grep -q '\"error\" : 0' '%s'", out) == 0,
		  "fio reports an error (%s)", out);
	/* Trim then write every block (weft_discard, weft_write), verify
	 * with short-circuit reads off (every read through a target).  QD 1:
	 * fio issues a block's trim and its write without waiting for the
	 * trim, and two requests in flight at once have no order (as on
	 * NVMe), so at a higher depth the trim may land last. */
	cr_assert_eq(fio("--name=t --rw=trimwrite --bs=16k --iodepth=1 --size=8m "
			 "--offset=200m --verify=crc32c --do_verify=1 --verify_fatal=1 "
			 "--weft_short_circuit=0", out), 0,
		     "fio trim+verify job failed");
#endif
}

#ifdef WEFT_FIO_ENGINE
/* FUA writes and flushes the targets served, all of them. */
static void fua_flushes(uint64_t *fua, uint64_t *flushes)
{
	*fua = *flushes = 0;
	for (unsigned id = 0; id < SYS_TARGETS; id++) {
		struct wf_ctl_status s = sys_ctl_status(C.run, id);

		*fua += le64toh(s.fua_writes);
		*flushes += le64toh(s.flushes);
	}
}
#endif

/* fio --sync=1 (O_SYNC writes) is durable per write: every write goes FUA
 * (seen in the targets' counters); without it none does, and --fsync=N
 * sends flushes instead.  vol1 has one replica: no forwards. */
Test(sys_tools, fio_sync_is_fua)
{
#ifndef WEFT_FIO_ENGINE
	SYS_SKIP("libweft_fio.so was not built (no fio source; see fio/CMakeLists.txt)");
#else
	char out[400];
	uint64_t f0, l0, f1, l1, f2, l2;

	cr_assert(sys_sh("command -v fio >/dev/null") == 0);
	snprintf(out, sizeof(out), "%s/fio.json", C.dir);
	fua_flushes(&f0, &l0);
	cr_assert_eq(fio("--name=s --rw=write --bs=4k --size=256k --iodepth=4 "
			 "--sync=1", out), 0, "fio --sync=1 job failed");
	fua_flushes(&f1, &l1);
	cr_assert_geq(f1 - f0, 64, "64 writes with --sync=1, %llu FUA",
		      (unsigned long long)(f1 - f0));
	cr_assert_eq(fio("--name=n --rw=write --bs=4k --size=256k --iodepth=4 "
			 "--offset=1m --fsync=16", out), 0, "fio --fsync job failed");
	fua_flushes(&f2, &l2);
	cr_assert_eq(f2, f1, "writes without --sync=1 went FUA");
	cr_assert_geq(l2 - l1, 4, "--fsync=16 over 64 writes: %llu flushes",
		      (unsigned long long)(l2 - l1));
#endif
}

/* Keys that docs/performance.md and the demo rely on. */
static const char *json_check =
	"import json, sys\n"
	"d = json.load(open(sys.argv[1]))\n"
	"runs = d['runs'] if 'runs' in d else [d]\n"
	"assert len(runs) == int(sys.argv[2]), len(runs)\n"
	"for r in runs:\n"
	"    for k in ('iops', 'p50_us', 'p99_us', 'p999_us', 'p9999_us',\n"
	"              'target_cpu_us_per_io', 'client_cpu_us_per_io',\n"
	"              'ratio_to_floor', 'mbps'):\n"
	"        assert isinstance(r[k], (int, float)), (k, r[k])\n"
	"    f = r['floor']\n"
	"    for k in ('device_iops', 'device_p50_us', 'rtt_p50_us'):\n"
	"        assert f[k] > 0, (k, f)\n"
	"    assert r['iops'] > 0 and r['ios'] > 0\n"
	"    assert r['p50_us'] <= r['p99_us'] <= r['p999_us']\n"
	"    assert abs(r['ratio_to_floor'] - r['iops'] / f['device_iops']) < 1e-6\n"
	"    if r['rw'] != 'randwrite':\n"
	"        assert r['verified_reads'] == r['reads'] > 0\n"
	"    assert r['target_pids'] == 3\n";

Test(sys_tools, bench_io_json)
{
	char json[400], py[400], plots[400];
	FILE *f;

	snprintf(json, sizeof(json), "%s/bench.json", C.dir);
	snprintf(py, sizeof(py), "%s/check.py", C.dir);
	snprintf(plots, sizeof(plots), "%s/plots", C.dir);
	f = fopen(py, "w");
	cr_assert(f);
	fputs(json_check, f);
	fclose(f);
	/* WEFT_CLUSTER_DIR is set: the target pids come from its pid files. */
	cr_assert_eq(sys_sh("'%s/weft-bench' io -c '%s' --volume vol1 --rw randrw "
			    "--qd 1,8 --runtime 0.5 --size 16M --plot '%s' --json "
			    ">'%s'", C.bin, C.map, plots, json), 0,
		     "weft-bench io failed");
	cr_assert_eq(sys_sh("python3 '%s' '%s' 2", py, json), 0,
		     "weft-bench io JSON lacks keys or is inconsistent");
	cr_assert_eq(sys_sh("test -s '%s/weft-randrw-qd8-cdf.dat' && "
			    "test -s '%s/weft-randrw-qd8-hist.dat'", plots, plots), 0,
		     "no plot data written");
	/* One job: a single object. */
	cr_assert_eq(sys_sh("'%s/weft-bench' io -c '%s' --volume vol1 --rw randread "
			    "--qd 4 --runtime 0.3 --size 8M --json >'%s'", C.bin,
			    C.map, json), 0);
	cr_assert_eq(sys_sh("python3 '%s' '%s' 1", py, json), 0);
	/* The write/verify pass of the demo. */
	cr_assert_eq(sys_sh("'%s/weft-bench' io -c '%s' --volume vol1 --size 32M "
			    "--verify-only >/dev/null", C.bin, C.map), 0);
	/* Bad arguments are refused with exit 2, not run. */
	cr_assert_eq(sys_sh("'%s/weft-bench' io -c '%s' --volume vol1 --bs 1000 "
			    "2>/dev/null", C.bin, C.map), 2);
	cr_assert_eq(sys_sh("'%s/weft-bench' io -c '%s' --volume nosuch --no-floor "
			    "--runtime 0.1 2>/dev/null", C.bin, C.map), 1);
}

/*
 * bench/count-instructions: user-space instructions per I/O of client and
 * targets under callgrind, in weft-bench io's JSON.  The machinery only:
 * the counts exist and are positive, the windows are N and 2N I/Os, the
 * fabric operations are the documented minimum, and three replicas cost
 * the targets more than one.  It starts its own cluster (targets under
 * callgrind); this suite's cluster is not used.
 */
static const char *instr_check =
	"import json, sys\n"
	"out, n = sys.argv[1], int(sys.argv[2])\n"
	"w = {}\n"
	"for v in ('vol1', 'vol3'):\n"
	"    d = json.load(open(f'{out}/{v}.json'))\n"
	"    for r in d['runs']:\n"
	"        p = r['per_io']; c = p['client']; t = p['targets']\n"
	"        win = p['instruction_windows']\n"
	"        assert n <= win['ios_a'] < n + r['qd'], win\n"
	"        assert 2 * n <= win['ios_b'] < 2 * n + r['qd'], win\n"
	"        assert 100 < c['instructions'] < 1e6, c\n"
	"        assert 100 < t['instructions'] < 1e6, t\n"
	"        assert t['idle_instructions_per_s'] > 0, t\n"
	"        wr = r['rw'] == 'randwrite'\n"
	"        assert (c['fabric_sends'], c['fabric_writes']) == (1, 1 if wr else 0), c\n"
	"        want = ((5, 2) if v == 'vol3' else (1, 0)) if wr else (1, 1)\n"
	"        assert (t['fabric_sends'], t['fabric_writes']) == want, (v, t)\n"
	"        w[v, r['rw']] = t['instructions']\n"
	"assert w['vol3', 'randwrite'] > 2 * w['vol1', 'randwrite'], w\n";

Test(sys_tools, count_instructions, .timeout = 300)
{
	char py[400], out[400];
	FILE *f;

#if defined(__SANITIZE_ADDRESS__)
	SYS_SKIP("an ASan build: valgrind cannot run it (bench/count-instructions "
		     "runs on the normal build)");
#endif
	if (sys_sh("command -v valgrind >/dev/null"))
		SYS_SKIP("valgrind is not installed (scripts/deps)");
	snprintf(py, sizeof(py), "%s/instr.py", C.dir);
	snprintf(out, sizeof(out), "%s/instr", C.dir);
	f = fopen(py, "w");
	cr_assert(f);
	fputs(instr_check, f);
	fclose(f);
	cr_assert_eq(sys_sh("WEFT_BIN='%s' '%s/bench/count-instructions' --ios 200 "
			    "--qd 1 --out '%s' >'%s.md'", C.bin, C.src, out, out), 0,
		     "bench/count-instructions failed");
	cr_assert_eq(sys_sh("python3 '%s' '%s' 200", py, out), 0,
		     "instruction counts missing, not positive or inconsistent");
}
