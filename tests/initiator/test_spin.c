/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft_wait's adaptive polling rule (initiator/spin.h): which waits spin,
 * for how long, how the latency estimate moves, and the back-off after the
 * spinning thread was seen off its CPU.  Pure functions: no clock, no peer.
 */
#include <stdint.h>

#include <criterion/criterion.h>

#include "initiator/spin.h"

/* The budget, and what the wait's completions will count for. */
static uint32_t b(struct wf_spin *s, uint32_t inflight, uint32_t fixed,
		  bool never, enum wf_spin_how *how)
{
	enum wf_spin_how h;

	return wf_spin_budget_us(s, inflight, fixed, never, how ? how : &h);
}

static uint32_t budget(uint32_t inflight, uint32_t est, uint32_t fixed,
		       bool never)
{
	struct wf_spin s = { .calm = WF_SPIN_CALM, .est_us = est };

	return b(&s, inflight, fixed, never, NULL);
}

Test(spin, spins_at_low_depth_for_twice_the_estimate)
{
	cr_assert_eq(budget(1, 60, 0, false), 120);
	cr_assert_eq(budget(1, 1, 0, false), 2);
	cr_assert_eq(budget(WF_SPIN_MAX_INFLIGHT, 100, 0, false), 200);
	cr_assert_eq(budget(2, WF_SPIN_EST_MAX_US, 0, false),
		     WF_SPIN_EST_MAX_US * WF_SPIN_FACTOR);
}

Test(spin, never_spins_at_high_depth)
{
	cr_assert_eq(budget(WF_SPIN_MAX_INFLIGHT + 1, 60, 0, false), 0);
	cr_assert_eq(budget(32, 60, 0, false), 0);
	cr_assert_eq(budget(UINT32_MAX, 1, 0, false), 0);
}

Test(spin, never_spins_with_nothing_in_flight_or_no_estimate)
{
	struct wf_spin s = { 0 };

	cr_assert_eq(budget(0, 60, 0, false), 0);
	cr_assert_eq(budget(1, 0, 0, false), 0);
	/* A new handle: not before WF_SPIN_CALM completions. */
	for (int i = 0; i < WF_SPIN_CALM - 1; i++)
		wf_spin_on_complete(&s, 60000, WF_SPIN_NONE);
	cr_assert_eq(b(&s, 1, 0, false, NULL), 0);
	wf_spin_on_complete(&s, 60000, WF_SPIN_NONE);
	cr_assert_eq(b(&s, 1, 0, false, NULL), 120);
}

Test(spin, never_spins_when_replies_are_slow)
{
	cr_assert_eq(budget(1, WF_SPIN_EST_MAX_US + 1, 0, false), 0);
	cr_assert_eq(budget(1, 5000, 0, false), 0);
}

Test(spin, explicit_settings_override_the_rule)
{
	struct wf_spin s = { .calm = WF_SPIN_CALM, .est_us = 60, .skip = 5, .penalty = 8 };

	/* spin_us > 0: that budget at any depth, estimate or none, even
	 * during a back-off (which it leaves alone). */
	cr_assert_eq(budget(32, 0, 1000000, false), 1000000);
	cr_assert_eq(budget(1, 5000, 20, false), 20);
	cr_assert_eq(b(&s, 1, 20, false, NULL), 20);
	cr_assert_eq(s.skip, 5);
	/* WEFT_F_NO_SPIN: never, where the rule would spin. */
	cr_assert_eq(budget(1, 60, 0, true), 0);
}

Test(spin, the_first_sample_is_the_estimate)
{
	struct wf_spin s = { 0 };

	wf_spin_on_complete(&s, 57000, WF_SPIN_NONE);
	cr_assert_eq(s.est_us, 57);
	s.est_us = 0;
	wf_spin_on_complete(&s, 10, WF_SPIN_NONE);
	cr_assert_eq(s.est_us, 1, "a sample below 1 us counts 1");
}

Test(spin, the_estimate_follows_the_recent_latency)
{
	struct wf_spin s = { .calm = WF_SPIN_CALM };

	wf_spin_on_complete(&s, 300000, WF_SPIN_NONE);        /* 300 us: no spin */
	cr_assert_eq(b(&s, 1, 0, false, NULL), 0);
	for (int i = 0; i < 64; i++)
		wf_spin_on_complete(&s, 60000, WF_SPIN_NONE);
	cr_assert(s.est_us >= 60 && s.est_us < 60 + (1 << WF_SPIN_EWMA_SHIFT),
		  "estimate %u after 64 samples of 60 us", s.est_us);
	cr_assert_neq(b(&s, 1, 0, false, NULL), 0);
	for (int i = 0; i < 64; i++)
		wf_spin_on_complete(&s, 400000, WF_SPIN_NONE);
	cr_assert_gt(s.est_us, WF_SPIN_EST_MAX_US, "estimate %u", s.est_us);
	cr_assert_eq(b(&s, 1, 0, false, NULL), 0);
}

Test(spin, one_slow_reply_stops_the_spinning_for_a_while)
{
	struct wf_spin s = { .calm = WF_SPIN_CALM, .est_us = 60 };
	int n = 0;

	/* A millisecond at QD1 is the CPU oversubscribed: no spinning for
	 * the next WF_SPIN_CALM completions, and the estimate moved by at
	 * most an eighth of the cap, so it spins right after them. */
	wf_spin_on_complete(&s, 50ull * 1000 * 1000, WF_SPIN_NONE);        /* 50 ms */
	cr_assert_leq(s.est_us, 60 + WF_SPIN_SAMPLE_MAX_US / (1 << WF_SPIN_EWMA_SHIFT),
		      "estimate %u after one 50 ms completion", s.est_us);
	while (!b(&s, 1, 0, false, NULL) && n < 1000) {
		wf_spin_on_complete(&s, 60000, WF_SPIN_NONE);
		n++;
	}
	cr_assert_eq(n, WF_SPIN_CALM, "%d ordinary completions before spinning "
		     "again", n);
	/* 999 us is not slow. */
	wf_spin_on_complete(&s, 999000, WF_SPIN_NONE);
	cr_assert_eq(s.calm, WF_SPIN_CALM);
	wf_spin_on_complete(&s, 1000000, WF_SPIN_NONE);
	cr_assert_eq(s.calm, 0);
}

Test(spin, a_preempted_spin_backs_off_doubling)
{
	struct wf_spin s = { .calm = WF_SPIN_CALM, .est_us = 60 };
	int quiet;

	for (uint32_t want = 1; want <= 8; want *= 2) {
		wf_spin_on_end(&s, false, true);
		for (quiet = 0; !b(&s, 1, 0, false, NULL) && quiet < 1000;)
			quiet++;
		cr_assert_eq((uint32_t)quiet, want, "back-off of %d waits, want %u",
			     quiet, want);
	}
	/* Bounded. */
	for (int i = 0; i < 20; i++)
		wf_spin_on_end(&s, false, true);
	cr_assert_eq(s.skip, WF_SPIN_BACKOFF_MAX);
}

Test(spin, the_back_off_counts_only_waits_that_would_spin)
{
	struct wf_spin s = { .calm = WF_SPIN_CALM, .est_us = 60 };

	wf_spin_on_end(&s, false, true);
	wf_spin_on_end(&s, false, true);                /* skip 2 */
	cr_assert_eq(b(&s, 32, 0, false, NULL), 0);
	cr_assert_eq(b(&s, 0, 0, false, NULL), 0);
	cr_assert_eq(s.skip, 2, "waits at depth do not use up the back-off");
}

Test(spin, clean_hits_forgive_and_misses_do_not_punish)
{
	struct wf_spin s = { .calm = WF_SPIN_CALM, .est_us = 60 };

	for (int i = 0; i < 4; i++)
		wf_spin_on_end(&s, false, true);
	cr_assert_eq(s.penalty, 8);
	s.skip = 0;
	wf_spin_on_end(&s, false, false);               /* budget ran out */
	cr_assert_eq(s.penalty, 8);
	cr_assert_eq(s.skip, 0, "a late reply is no reason to stop spinning");
	wf_spin_on_end(&s, true, false);
	wf_spin_on_end(&s, true, false);
	cr_assert_eq(s.penalty, 2);
	wf_spin_on_end(&s, false, true);
	cr_assert_eq(s.skip, 4, "the next preemption doubles what is left");
}

/* Feed n completions of lat_us to whatever the rule chooses, the way a
 * QD1 loop would; returns how many of the n waits spun. */
static int run(struct wf_spin *s, int n, uint32_t spun_lat, uint32_t slept_lat)
{
	int spun = 0;

	for (int i = 0; i < n; i++) {
		enum wf_spin_how how;
		uint32_t bud = b(s, 1, 0, false, &how);

		cr_assert_eq(how, bud ? WF_SPIN_SPUN : WF_SPIN_SLEPT);
		spun += bud != 0;
		wf_spin_on_complete(s, (uint64_t)(bud ? spun_lat : slept_lat) * 1000,
				    how);
	}
	return spun;
}

Test(spin, spins_while_spinning_is_faster)
{
	struct wf_spin s = { .calm = WF_SPIN_CALM };
	int spun;

	wf_spin_on_complete(&s, 70000, WF_SPIN_NONE);   /* first reply */
	spun = run(&s, 160, 55, 70);
	/* All but the probes, which sleep. */
	cr_assert_geq(spun, 160 - 160 / WF_SPIN_PROBE - 1, "spun %d of 160", spun);
	cr_assert_lt(spun, 160, "the probes slept");
	cr_assert_gt(s.slept_us, 0);
}

Test(spin, stops_when_spinning_is_slower)
{
	struct wf_spin s = { .calm = WF_SPIN_CALM };
	int spun;

	/* An oversubscribed CPU: waits that spin see their replies later
	 * (the spinner delays the target) than waits that sleep. */
	wf_spin_on_complete(&s, 70000, WF_SPIN_NONE);
	run(&s, 32, 150, 80);                   /* learn both */
	spun = run(&s, 160, 150, 80);
	cr_assert_leq(spun, 160 / WF_SPIN_PROBE + 1, "spun %d of 160", spun);
	cr_assert_gt(spun, 0, "the probes spin, to notice a change");
	/* The load goes: spinning becomes the faster again, which the
	 * probes see (each moves the average 1/8 of the way: about nine
	 * probes, 150 waits here, a few ms at QD1). */
	run(&s, 10 * WF_SPIN_PROBE, 50, 80);
	spun = run(&s, 160, 50, 80);
	cr_assert_geq(spun, 160 - 160 / WF_SPIN_PROBE - 1,
		      "spun %d of 160 once it was faster", spun);
}

Test(spin, what_a_wait_counts_for)
{
	struct wf_spin s = { .calm = WF_SPIN_CALM, .est_us = 60, .skip = 1 };
	enum wf_spin_how how;

	b(&s, 32, 0, false, &how);
	cr_assert_eq(how, WF_SPIN_NONE, "at depth there was no choice");
	b(&s, 1, 20, false, &how);
	cr_assert_eq(how, WF_SPIN_NONE, "a fixed budget is not scored");
	b(&s, 1, 0, true, &how);
	cr_assert_eq(how, WF_SPIN_NONE);
	cr_assert_eq(b(&s, 1, 0, false, &how), 0);
	cr_assert_eq(how, WF_SPIN_SLEPT, "a back-off sleep is a sleep");
	cr_assert_neq(b(&s, 1, 0, false, &how), 0);
	cr_assert_eq(how, WF_SPIN_SPUN);
	wf_spin_on_complete(&s, 40000, WF_SPIN_SPUN);
	cr_assert_eq(s.spun_us, 40);
	cr_assert_eq(s.slept_us, 0);
	wf_spin_on_complete(&s, 90000, WF_SPIN_NONE);
	cr_assert_eq(s.spun_us, 40);
	cr_assert_eq(s.slept_us, 0);
}

Test(spin, a_hand_off_to_the_target_is_no_preemption)
{
	/* The target that serves the request runs on the spinner's CPU for
	 * 10-60 us, twice per I/O (perf sched, docs/performance.md): the
	 * spinner must go on spinning through such gaps.  Off the CPU for a
	 * time slice of other work (1.5 ms), it stops. */
	cr_assert(!wf_spin_gap(1000, 1005), "one polling turn");
	cr_assert(!wf_spin_gap(1000, 1040), "the target's turn on our CPU");
	cr_assert(!wf_spin_gap(1000, 1000 + 100), "a slow hand-off");
	cr_assert(wf_spin_gap(1000, 1000 + WF_SPIN_GAP_US));
	cr_assert(wf_spin_gap(1000, 2500), "another process's time slice");
}

Test(spin, one_slow_spun_reply_does_not_stop_the_spinning)
{
	struct wf_spin s = { .calm = WF_SPIN_CALM };
	int spun;

	/* A quiet machine: spinning 80 us, sleeping 105 us. */
	wf_spin_on_complete(&s, 90000, WF_SPIN_NONE);
	run(&s, 64, 80, 105);
	cr_assert_lt(s.spun_us, s.slept_us);
	/* One spun reply of 900 us (under the calm limit): it counts for the
	 * score as the budget's length at most, so spinning stays ahead
	 * within a few replies instead of losing for hundreds of waits
	 * (only the probes would have brought its average back). */
	wf_spin_on_complete(&s, 900000, WF_SPIN_SPUN);
	cr_assert_leq(s.spun_us, s.slept_us + s.est_us * WF_SPIN_FACTOR / 8 + 1);
	run(&s, 8, 80, 105);
	spun = run(&s, 64, 80, 105);
	cr_assert_geq(spun, 64 - 64 / WF_SPIN_PROBE - 1, "spun %d of 64", spun);
}
