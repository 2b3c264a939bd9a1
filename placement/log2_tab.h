/* SPDX-License-Identifier: Apache-2.0 */
/* Private to placement/: the table behind placement.c's fixed-point logarithm. */
#ifndef WEFT_PLACEMENT_LOG2_TAB_H
#define WEFT_PLACEMENT_LOG2_TAB_H

#include <stdint.h>

/* log2(1 + i/1024) in 32.32 fixed point, i = 0..1024 (log2_tab.c). */
extern const uint64_t wf_pl_log2_tab[1025] __attribute__((visibility("hidden")));

#endif
