/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-bench io's transport round-trip floor: the round trip of a weft
 * write without the device (a forked peer; bs bytes by wf_write plus a
 * 64-byte request, answered by a 16-byte reply; QD 1, 2,000 warmup +
 * 20,000 timed) over the same transport.
 */
#ifndef WEFT_BENCH_IO_RTT_H
#define WEFT_BENCH_IO_RTT_H

#include <stdint.h>

struct wf_hist;

/* Fills h (ns); 0 or -errno. */
int wf_io_rtt_floor(const char *transport, uint32_t bs, struct wf_hist *h);

#endif
