/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Processes, for the tools that drive a cluster (weft-bench thrash) and the
 * whole-system tests: a shell command's exit status, and a SIGKILL that
 * waits until the process is gone.
 */
#ifndef WEFT_BENCH_PROC_H
#define WEFT_BENCH_PROC_H

#include <sys/types.h>

/* system() of the formatted command: its exit status, -1 if it did not
 * exit normally (or could not run). */
int  wf_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* SIGKILL pid and wait until it is gone or a zombie (at most ms);
 * 0, or -errno from kill(). */
int  wf_kill9_wait(pid_t pid, unsigned ms);
void wf_sleep_ms(unsigned ms);

#endif
