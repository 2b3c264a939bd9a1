/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libweft: how long weft_wait busy-polls before it sleeps on the handle's
 * fd (adaptive polling, docs/performance.md "Adaptive polling").  Pure
 * integer code on a small per-handle state; weft_wait asks
 * wf_spin_budget_us() once per sleep it is about to take, the completions
 * feed wf_spin_on_complete(), the end of each spin wf_spin_on_end().
 *
 * Why: at queue depth 1 a sleeping client pays a wake-up (tens of us on a
 * VM) on top of the device and the round trip; spinning for the short
 * time until the reply is cheaper in latency, and costs one core only
 * while few requests are out.  At high depth every wake-up reaps many
 * completions, and a spinning client takes the CPU the targets need
 * (QD32 on two vCPUs), so it never spins there.  When the CPU is
 * oversubscribed even at QD1 (the spinning thread gets descheduled: the
 * targets or other work wanted its CPU), spinning delays the very reply
 * it waits for, so it backs off.  And it keeps score: the latency of the
 * requests reaped by waits that chose to spin and by waits that chose to
 * sleep, each a running average; it spins only while spinning is the
 * faster of the two (every WF_SPIN_PROBE-th eligible wait tries the other
 * choice, so both averages stay current).  On a CPU shared with the
 * targets and other work, spinning can make the replies slower on
 * average (measured: docs/performance.md), and then it stops.
 */
#ifndef WF_SPIN_H
#define WF_SPIN_H

#include <stdbool.h>
#include <stdint.h>

/*
 * The rule:
 * - an explicit fixed budget (weft_cluster_opts.spin_us > 0) wins;
 * - WEFT_F_NO_SPIN: never;
 * - otherwise spin only with 1..WF_SPIN_MAX_INFLIGHT requests in flight,
 *   an estimate (from at least one completion) of at most
 *   WF_SPIN_EST_MAX_US, none of the last WF_SPIN_CALM completions slower
 *   than WF_SPIN_SAMPLE_MAX_US, no back-off pending, and spinning not measured
 *   slower than sleeping (but the other way every WF_SPIN_PROBE-th such
 *   wait); the budget is WF_SPIN_FACTOR times the estimate.
 */
#define WF_SPIN_MAX_INFLIGHT 4     /* "few": beyond this a wake-up reaps
				    * several completions and the spinning
				    * core is better left to the targets */
#define WF_SPIN_EST_MAX_US   200   /* a reply expected later than this is
				    * not worth a core: the wake-up (tens
				    * of us) is then a small share */
#define WF_SPIN_FACTOR       2     /* budget = 2 x estimate: a reply later
				    * than twice the usual is an outlier;
				    * sleep rather than burn the core */
#define WF_SPIN_SAMPLE_MAX_US 1000 /* one slow request (a 10 ms p99.99)
				    * moves the estimate by at most 1/8 of
				    * this; it also ends the calm (below),
				    * so spinning resumes only after
				    * WF_SPIN_CALM fast completions */
#define WF_SPIN_EWMA_SHIFT   3     /* estimate += (sample - estimate) / 8 */
#define WF_SPIN_GAP_US       150   /* off the CPU this long between two
				    * polling turns (1-10 us each): other
				    * work took the CPU for a time slice
				    * (1.5 ms on two CPUs).  Shorter gaps
				    * are hand-offs, not preemptions: the
				    * target that serves the request runs
				    * on the spinner's CPU (woken there by
				    * the loopback softirq of our send and
				    * of its device completion) for 10-60
				    * us, twice per I/O, and the spinner
				    * gets the CPU back with its reply
				    * (docs/performance.md, "Adaptive
				    * polling", 2026-12-07 evening) */
#define WF_SPIN_PROBE        16    /* 1 in 16 eligible waits takes the
				    * choice the score does not favour: a
				    * sixteenth of the gain, for averages
				    * that follow the machine's load */
#define WF_SPIN_CALM         128   /* spin only after this many
				    * completions in a row under
				    * WF_SPIN_SAMPLE_MAX_US: a QD1 reply
				    * taking a millisecond means the CPU is
				    * oversubscribed (or the device stalls),
				    * and there a spinning thread pays in
				    * the tail of its later wake-ups
				    * (docs/performance.md, "Adaptive
				    * polling"); on a quiet machine fewer
				    * than 1 in 1000 replies take that long */
#define WF_SPIN_BACKOFF_MAX  256   /* waits without spinning after repeated
				    * preemptions (doubling from 1); halved
				    * by each spin a completion ends */

/* What the wait that reaps a completion chose (wf_spin_on_complete). */
enum wf_spin_how {
	WF_SPIN_NONE,           /* no choice: reaped before any, by
				 * weft_poll, or at depth */
	WF_SPIN_SPUN,           /* the wait chose to spin */
	WF_SPIN_SLEPT,          /* the wait could have spun and slept */
};

struct wf_spin {
	uint32_t est_us;        /* latency estimate (0: no completion yet) */
	uint32_t spun_us;       /* the same, of requests reaped by waits
				 * that chose to spin (0: none yet) */
	uint32_t slept_us;      /* ... that chose to sleep (0: none yet) */
	uint32_t eligible;      /* waits the rule let choose (probe count) */
	uint32_t calm;          /* completions since the last slow one
				 * (saturates at WF_SPIN_CALM) */
	uint32_t penalty;       /* next back-off length, in waits */
	uint32_t skip;          /* waits left that must not spin */
	uint64_t skipped;       /* waits a back-off kept from spinning */
	uint64_t declined;      /* waits that slept on the score (or probe) */
};

/* est += (sample - est) / 2^WF_SPIN_EWMA_SHIFT; the first sample is the
 * estimate; at least 1 once a sample is in. */
static inline uint32_t wf_spin_ewma(uint32_t est, uint32_t v)
{
	int64_t d;

	if (!est)
		return v;
	d = (int64_t)v - (int64_t)est;
	est = (uint32_t)((int64_t)est + d / (1 << WF_SPIN_EWMA_SHIFT));
	return est ? est : 1;
}

/* Spin budget in us for one wait (0: sleep at once).  inflight: requests
 * queued and not completed; fixed_us: opts.spin_us; never:
 * WEFT_F_NO_SPIN.  *how: what the completions this wait reaps count for.
 * Consumes one wait of a pending back-off. */
static inline uint32_t wf_spin_budget_us(struct wf_spin *s, uint32_t inflight,
					 uint32_t fixed_us, bool never,
					 enum wf_spin_how *how)
{
	bool spin;

	*how = WF_SPIN_NONE;
	if (fixed_us)
		return fixed_us;
	if (never || !inflight || inflight > WF_SPIN_MAX_INFLIGHT)
		return 0;
	if (!s->est_us || s->est_us > WF_SPIN_EST_MAX_US ||
	    s->calm < WF_SPIN_CALM)
		return 0;
	*how = WF_SPIN_SLEPT;
	if (s->skip) {
		s->skip--;
		s->skipped++;
		return 0;
	}
	/* Spin unless measured slower than sleeping; an average not taken
	 * yet counts as the better one, so both get tried. */
	spin = !s->slept_us || (s->spun_us && s->spun_us <= s->slept_us);
	if (++s->eligible % WF_SPIN_PROBE == 0)
		spin = !spin;
	if (!spin) {
		s->declined++;
		return 0;
	}
	*how = WF_SPIN_SPUN;
	return s->est_us * WF_SPIN_FACTOR;
}

/* Fold one completed request's latency (ns) into the estimate and into
 * the score of how its wait chose (enum wf_spin_how). */
static inline void wf_spin_on_complete(struct wf_spin *s, uint64_t lat_ns,
				       enum wf_spin_how how)
{
	uint64_t v = lat_ns / 1000, sv;

	if (v >= WF_SPIN_SAMPLE_MAX_US) {
		v = WF_SPIN_SAMPLE_MAX_US;
		s->calm = 0;
	} else if (s->calm < WF_SPIN_CALM) {
		s->calm++;
	}
	if (!v)
		v = 1;
	/* The score compares the bulk of the replies, each sample at most
	 * the budget a spin would have had (WF_SPIN_FACTOR x the estimate):
	 * the tail is the calm condition's.  Unclamped, one slow reply of a
	 * spin (up to 1 ms: +115 us on the average) made spinning score
	 * slower, and while sleeping is favoured only the probes (1 in 16)
	 * can bring that average back: hundreds of waits without spinning
	 * for one outlier (measured: docs/performance.md). */
	sv = s->est_us ? (uint64_t)s->est_us * WF_SPIN_FACTOR : v;
	sv = v < sv ? v : sv;
	s->est_us = wf_spin_ewma(s->est_us, (uint32_t)v);
	if (how == WF_SPIN_SPUN)
		s->spun_us = wf_spin_ewma(s->spun_us, (uint32_t)sv);
	else if (how == WF_SPIN_SLEPT)
		s->slept_us = wf_spin_ewma(s->slept_us, (uint32_t)sv);
}

/* Two clock reads of a spin, last_us then now_us: was the thread off its
 * CPU in between for longer than a hand-off (WF_SPIN_GAP_US)? */
static inline bool wf_spin_gap(uint64_t last_us, uint64_t now_us)
{
	return now_us - last_us >= WF_SPIN_GAP_US;
}

/* A spin ended: hit (a completion came while spinning) or not, and whether
 * the thread was seen off its CPU during it (a gap >= WF_SPIN_GAP_US). */
static inline void wf_spin_on_end(struct wf_spin *s, bool hit, bool preempted)
{
	if (preempted) {
		s->penalty = s->penalty ? s->penalty * 2 : 1;
		if (s->penalty > WF_SPIN_BACKOFF_MAX)
			s->penalty = WF_SPIN_BACKOFF_MAX;
		s->skip = s->penalty;
	} else if (hit) {
		s->penalty /= 2;
	}
}

#endif
