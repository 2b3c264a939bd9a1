/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libweft: how long weft_wait busy-polls before it sleeps on the handle's
 * fd (adaptive polling, docs/performance.md "Adaptive polling").  Pure
 * integer code, no state of its own: the handle keeps the estimate and
 * weft_wait asks wf_spin_budget_us() once per sleep it is about to take.
 *
 * Why: at queue depth 1 a sleeping client pays a wake-up (tens of us on a
 * VM) on top of the device and the round trip; spinning for the short
 * time until the reply is cheaper in latency, and costs one core only
 * while few requests are out.  At high depth every wake-up reaps many
 * completions, and a spinning client takes the CPU the targets need
 * (QD32 on two vCPUs), so it never spins there.
 */
#ifndef WF_SPIN_H
#define WF_SPIN_H

#include <stdbool.h>
#include <stdint.h>

/*
 * The rule (constants explained where they are used):
 * - an explicit fixed budget (weft_cluster_opts.spin_us > 0) wins;
 * - WEFT_F_NO_SPIN: never;
 * - otherwise spin only with 1..WF_SPIN_MAX_INFLIGHT requests in flight,
 *   an estimate (from at least one completion), and that estimate at most
 *   WF_SPIN_EST_MAX_US; the budget is WF_SPIN_FACTOR times the estimate.
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
				    * this, so spinning resumes after a few
				    * ordinary completions */
#define WF_SPIN_EWMA_SHIFT   3     /* estimate += (sample - estimate) / 8 */

/* Spin budget in us for one wait (0: sleep at once).  inflight: requests
 * queued and not completed; est_us: the handle's estimate of a request's
 * latency (0: none yet); fixed_us: opts.spin_us; never: WEFT_F_NO_SPIN. */
static inline uint32_t wf_spin_budget_us(uint32_t inflight, uint32_t est_us,
					 uint32_t fixed_us, bool never)
{
	if (fixed_us)
		return fixed_us;
	if (never || !inflight || inflight > WF_SPIN_MAX_INFLIGHT)
		return 0;
	if (!est_us || est_us > WF_SPIN_EST_MAX_US)
		return 0;
	return est_us * WF_SPIN_FACTOR;
}

/* Fold one completed request's latency (ns) into the estimate (us; 0: no
 * sample yet).  Returns the new estimate, at least 1 once a sample is in. */
static inline uint32_t wf_spin_est_update(uint32_t est_us, uint64_t lat_ns)
{
	uint64_t s = lat_ns / 1000;
	int64_t d;

	if (s > WF_SPIN_SAMPLE_MAX_US)
		s = WF_SPIN_SAMPLE_MAX_US;
	if (!s)
		s = 1;
	if (!est_us)
		return (uint32_t)s;
	d = (int64_t)s - (int64_t)est_us;
	est_us = (uint32_t)((int64_t)est_us + d / (1 << WF_SPIN_EWMA_SHIFT));
	return est_us ? est_us : 1;
}

#endif
