/* SPDX-License-Identifier: Apache-2.0 */
/* bench/counts.c: which events `weft-bench io --count` asks perf for, and
 * how perf's output is read back, when a tracepoint is missing. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "bench/counts.h"

/* Every tracepoint present but the one named by arg. */
static bool all_but(const char *event, void *arg)
{
	return !arg || strcmp(event, (const char *)arg);
}

static bool has_arg(const char **argv, unsigned n, const char *a)
{
	for (unsigned i = 0; i < n; i++)
		if (!strcmp(argv[i], a))
			return true;
	return false;
}

Test(counts, all_present_all_asked)
{
	const char *argv[4 * WF_SC_N];
	unsigned mask = wf_sc_select(all_but, NULL);
	unsigned n = wf_sc_args(mask, argv);

	cr_assert_eq(mask, (1u << WF_SC_N) - 1);
	cr_assert(has_arg(argv, n, "raw_syscalls:sys_enter"));
	cr_assert(has_arg(argv, n, "io_uring:io_uring_submit_req"));
	cr_assert(has_arg(argv, n, "context-switches"));
	cr_assert(has_arg(argv, n, "block:block_unplug"));
}

/* perf exits on one unknown tracepoint and counts nothing: a missing one
 * is left out of its arguments, and only it. */
Test(counts, missing_tracepoint_left_out)
{
	static const char *const missing[] = {
		"syscalls:sys_enter_io_uring_enter", "io_uring:io_uring_submit_req",
		"block:block_rq_issue",
	};

	for (unsigned m = 0; m < 3; m++) {
		const char *argv[4 * WF_SC_N];
		unsigned mask = wf_sc_select(all_but, (void *)missing[m]);
		unsigned n = wf_sc_args(mask, argv);

		cr_assert_eq(__builtin_popcount(mask), WF_SC_N - 1, "%s", missing[m]);
		cr_assert(!has_arg(argv, n, missing[m]));
		cr_assert(has_arg(argv, n, "raw_syscalls:sys_enter"));
		cr_assert(has_arg(argv, n, "io_uring:io_uring_cqring_wait"));
		cr_assert(has_arg(argv, n, "context-switches"));
		cr_assert(has_arg(argv, n, "block:block_unplug"));
		/* The filter goes with its event. */
		cr_assert_eq(has_arg(argv, n, "--filter"), m != 0);
	}
	/* Without the syscalls' tracepoint the caller refuses to count. */
	cr_assert(!(wf_sc_select(all_but, (void *)"raw_syscalls:sys_enter") &
		    (1u << WF_SC_SYS)));
}

/* perf's lines for the events given: one left out does not stop the
 * reading of those after it, and stays unknown (-1, not 0). */
Test(counts, parse_without_an_event)
{
	unsigned mask = ((1u << WF_SC_N) - 1) & ~(1u << WF_SC_SQES);
	int64_t c[WF_SC_N];
	FILE *f = tmpfile();

	cr_assert(f);
	fprintf(f, "# started on Tue Dec  8 00:00:00 2026\n\n"
		"1000,,raw_syscalls:sys_enter,1,100.00,,\n"
		"200,,syscalls:sys_enter_io_uring_enter,1,100.00,,\n"
		"30,,io_uring:io_uring_cqring_wait,1,100.00,,\n"
		"40,,context-switches,1,100.00,,\n"
		"<not counted>,,block:block_rq_issue,0,0.00,,\n"
		"6,,block:block_unplug,1,100.00,,\n");
	rewind(f);
	cr_assert_eq(wf_sc_parse(f, mask, c), 0);
	fclose(f);
	cr_assert_eq(c[WF_SC_SYS], 1000);
	cr_assert_eq(c[WF_SC_SUBMITS], 200);
	cr_assert_eq(c[WF_SC_SQES], -1);
	cr_assert_eq(c[WF_SC_WAITS], 30);
	cr_assert_eq(c[WF_SC_CS], 40);
	cr_assert_eq(c[WF_SC_ISSUES], -1);
	cr_assert_eq(c[WF_SC_UNPLUGS], 6);
}
