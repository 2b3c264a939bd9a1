/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

#include "bench/proc.h"

int wf_sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return st < 0 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

void wf_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

int wf_kill9_wait(pid_t pid, unsigned ms)
{
	char path[64];

	if (kill(pid, SIGKILL))
		return -errno;
	/* A daemon is not our child: poll /proc until it is gone (or a
	 * zombie of init). */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	for (unsigned waited = 0; waited < ms; waited += 10) {
		char st = 0;
		FILE *f = fopen(path, "r");

		if (!f)
			break;
		if (fscanf(f, "%*d %*s %c", &st) != 1)
			st = 0;
		fclose(f);
		if (st == 'Z' || st == 'X')
			break;
		wf_sleep_ms(10);
	}
	return 0;
}
