/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-bench writes over its working set.  So that it never does so to a
 * volume holding someone's data, it marks the volumes it writes: the
 * volume's last WF_IO_MARK_BLOCK bytes (never part of a working set).
 */
#ifndef WEFT_BENCH_IO_MARK_H
#define WEFT_BENCH_IO_MARK_H

#include <stdbool.h>
#include <stdint.h>

#include "weft.h"

#define WF_IO_MARK_BLOCK 4096u

/*
 * Whether weft-bench may write bytes 0 .. wsize of vol (named name):
 * 0 when the mark is there, when the volume reads as zeros where looked,
 * or with overwrite (said on stderr); 1 when refused (said why on
 * stderr); -errno on an I/O error.  buf: WF_IO_MARK_BLOCK bytes, no I/O
 * of the handle in flight.
 */
int wf_io_mark_check(struct weft_volume *vol, const char *name, uint64_t wsize,
		     bool overwrite, char *buf);
/* Write the mark (before the working set): 0 or -errno. */
int wf_io_mark_write(struct weft_volume *vol, const char *name, uint64_t seed,
		     uint64_t wsize, char *buf);

#endif
