/* SPDX-License-Identifier: Apache-2.0 */
/* weft-target's log lines (target/target.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "target/target.h"

/* Set once by wf_tgt_log_setup before the reactors start; only read
 * after that, from every thread. */
static struct {
	uint32_t id;
	int level;
	bool syslog;
} logcfg = { .level = WF_TGT_LOG_INFO };

static const char *const level_name[8] = {
	[WF_TGT_LOG_ERR] = "error", [WF_TGT_LOG_WARNING] = "warning",
	[WF_TGT_LOG_INFO] = "info", [WF_TGT_LOG_DEBUG] = "debug",
};

void wf_tgt_log_setup(uint32_t target_id, int level, bool use_syslog)
{
	logcfg.id = target_id;
	logcfg.level = level;
	logcfg.syslog = use_syslog;
	if (use_syslog)
		openlog("weft-target", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

int wf_tgt_log_level(const char *name)
{
	if (!strcmp(name, "err") || !strcmp(name, "error"))
		return WF_TGT_LOG_ERR;
	if (!strcmp(name, "warning"))
		return WF_TGT_LOG_WARNING;
	if (!strcmp(name, "info"))
		return WF_TGT_LOG_INFO;
	if (!strcmp(name, "debug"))
		return WF_TGT_LOG_DEBUG;
	return -EINVAL;
}

static void vlog(int level, const char *fmt, va_list ap)
{
	char buf[512], when[32];
	struct timespec ts;
	struct tm tm;
	int n;

	if (level > logcfg.level)
		return;
	if (logcfg.syslog) {
		n = snprintf(buf, sizeof(buf), "target %u: ", logcfg.id);
		if (n > 0 && (size_t)n < sizeof(buf))
			vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
		syslog(level, "%s", buf);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(buf, sizeof(buf), "%s.%03ldZ weft-target[%d]: target %u: %s%s",
		     when, ts.tv_nsec / 1000000, (int)getpid(), logcfg.id,
		     level == WF_TGT_LOG_INFO ? "" : level_name[level & 7],
		     level == WF_TGT_LOG_INFO ? "" : ": ");
	if (n > 0 && (size_t)n < sizeof(buf))
		vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	fprintf(stderr, "%s\n", buf);
}

void wf_tgt_logl(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(level, fmt, ap);
	va_end(ap);
}

void wf_tgt_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(WF_TGT_LOG_INFO, fmt, ap);
	va_end(ap);
}
