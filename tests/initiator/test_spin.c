/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft_wait's adaptive polling rule (initiator/spin.h): which waits spin,
 * for how long, and how the latency estimate moves.  Pure functions: no
 * clock, no peer.
 */
#include <stdint.h>

#include <criterion/criterion.h>

#include "initiator/spin.h"

Test(spin, spins_at_low_depth_for_twice_the_estimate)
{
	cr_assert_eq(wf_spin_budget_us(1, 60, 0, false), 120);
	cr_assert_eq(wf_spin_budget_us(1, 1, 0, false), 2);
	cr_assert_eq(wf_spin_budget_us(WF_SPIN_MAX_INFLIGHT, 100, 0, false), 200);
	cr_assert_eq(wf_spin_budget_us(2, WF_SPIN_EST_MAX_US, 0, false),
		     WF_SPIN_EST_MAX_US * WF_SPIN_FACTOR);
}

Test(spin, never_spins_at_high_depth)
{
	cr_assert_eq(wf_spin_budget_us(WF_SPIN_MAX_INFLIGHT + 1, 60, 0, false), 0);
	cr_assert_eq(wf_spin_budget_us(32, 60, 0, false), 0);
	cr_assert_eq(wf_spin_budget_us(UINT32_MAX, 1, 0, false), 0);
}

Test(spin, never_spins_with_nothing_in_flight_or_no_estimate)
{
	cr_assert_eq(wf_spin_budget_us(0, 60, 0, false), 0);
	cr_assert_eq(wf_spin_budget_us(1, 0, 0, false), 0);
}

Test(spin, never_spins_when_replies_are_slow)
{
	cr_assert_eq(wf_spin_budget_us(1, WF_SPIN_EST_MAX_US + 1, 0, false), 0);
	cr_assert_eq(wf_spin_budget_us(1, 5000, 0, false), 0);
}

Test(spin, explicit_settings_override_the_rule)
{
	/* spin_us > 0: that budget at any depth, estimate or none. */
	cr_assert_eq(wf_spin_budget_us(32, 0, 1000000, false), 1000000);
	cr_assert_eq(wf_spin_budget_us(1, 5000, 20, false), 20);
	/* WEFT_F_NO_SPIN: never, where the rule would spin. */
	cr_assert_eq(wf_spin_budget_us(1, 60, 0, true), 0);
}

Test(spin, the_first_sample_is_the_estimate)
{
	cr_assert_eq(wf_spin_est_update(0, 57000), 57);
	cr_assert_eq(wf_spin_est_update(0, 10), 1, "a sample below 1 us counts 1");
}

Test(spin, the_estimate_follows_the_recent_latency)
{
	uint32_t e = wf_spin_est_update(0, 300000);    /* 300 us: no spin */

	cr_assert_eq(wf_spin_budget_us(1, e, 0, false), 0);
	for (int i = 0; i < 64; i++)
		e = wf_spin_est_update(e, 60000);
	cr_assert(e >= 60 && e < 60 + (1 << WF_SPIN_EWMA_SHIFT),
		  "estimate %u after 64 samples of 60 us", e);
	cr_assert_neq(wf_spin_budget_us(1, e, 0, false), 0);
	for (int i = 0; i < 64; i++)
		e = wf_spin_est_update(e, 400000);
	cr_assert_gt(e, WF_SPIN_EST_MAX_US, "estimate %u", e);
	cr_assert_eq(wf_spin_budget_us(1, e, 0, false), 0);
}

Test(spin, one_outlier_does_not_stop_the_spinning_for_long)
{
	uint32_t e = 60;
	int n = 0;

	e = wf_spin_est_update(e, 50ull * 1000 * 1000);        /* 50 ms */
	cr_assert_leq(e, 60 + WF_SPIN_SAMPLE_MAX_US / (1 << WF_SPIN_EWMA_SHIFT),
		      "estimate %u after one 50 ms completion", e);
	while (!wf_spin_budget_us(1, e, 0, false) && n < 100) {
		e = wf_spin_est_update(e, 60000);
		n++;
	}
	cr_assert_lt(n, 8, "%d ordinary completions before spinning again", n);
}
