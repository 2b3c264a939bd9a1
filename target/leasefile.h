/* SPDX-License-Identifier: Apache-2.0 */
/*
 * RUN_DIR/target-ID.leases: until when the leases this target granted may
 * still bind it, kept across a restart of the process (lease.c).  One
 * fixed-size line: "weft-leases 1 BOOT_ID UNTIL\n", BOOT_ID the kernel's
 * (/proc/sys/kernel/random/boot_id, 36 characters), UNTIL CLOCK_BOOTTIME
 * nanoseconds in 20 decimal digits.  Pure code (fuzz/fuzz_leasefile.c).
 */
#ifndef WEFT_TARGET_LEASEFILE_H
#define WEFT_TARGET_LEASEFILE_H

#include <stddef.h>
#include <stdint.h>

#define WF_TGT_BOOT_ID_LEN   36u
#define WF_TGT_LEASEFILE_LEN 72u        /* 12 + 2 + 36 + 1 + 20 + 1 */

/* Write the line for (boot, until) into out (no terminating NUL). */
void wf_tgt_leasefile_format(char out[WF_TGT_LEASEFILE_LEN],
			     const char boot[WF_TGT_BOOT_ID_LEN], uint64_t until);

/* 0 and *until when buf is exactly one well-formed line naming boot;
 * -ESTALE when well formed but of another boot; -EINVAL otherwise. */
int wf_tgt_leasefile_parse(const void *buf, size_t len,
			   const char boot[WF_TGT_BOOT_ID_LEN], uint64_t *until);

/* 0 when s is a boot id as the kernel prints it (8-4-4-4-12 lower-case
 * hex digits), else -EINVAL. */
int wf_tgt_boot_id_check(const char *s, size_t len);

#endif
