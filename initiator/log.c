/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libweft: the one way the library speaks.  A line goes to the callback
 * the application set in weft_cluster_opts, if its level is wanted; with
 * no callback the library is silent.  Never stderr: the library is linked
 * into applications that own their output.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>

#include "initiator/weft_int.h"

void wf_log(const struct weft_cluster *cl, int level, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	if (!cl->log || level > cl->log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	cl->log(cl->log_arg, level, line);
}
