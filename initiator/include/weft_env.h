/* SPDX-License-Identifier: Apache-2.0 */
/*
 * For programs that link libweft, not for the library: the library reads
 * no environment variable and prints nothing.  A program (weft-bench, the
 * fio engine, the tests) that wants weft's usual variables maps them onto
 * the options with this, and may log to stderr:
 *
 *   WEFT_RUN_DIR       -> opts.run_dir    (the local targets' sockets)
 *   WEFT_HOST          -> opts.host       (this host's name in the map)
 *   WEFT_SPIN_US       -> opts.spin_us    (N > 0: busy-poll N us before
 *                                         sleeping; 0: never, the flag
 *                                         WEFT_F_NO_SPIN; unset: adaptive)
 *   WEFT_BUF_ARENA_MB  -> opts.buf_arena  (weft_buf_alloc's arena)
 *   WEFT_LOG_LEVEL     -> opts.log_level  (err, warning, info, debug)
 *   WEFT_KEY           -> opts.key_name   (the key to connect with)
 *   WEFT_KEYRING       -> opts.keyring    (the keyring file holding it)
 *
 * Fields already set are kept.  The strings stay owned by the environment.
 */
#ifndef WEFT_ENV_H
#define WEFT_ENV_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft.h"

static inline void weft_env_log_stderr(void *arg, int level, const char *msg)
{
	static const char *const names[8] = {
		[WEFT_LOG_ERR] = "error", [WEFT_LOG_WARNING] = "warning",
		[WEFT_LOG_INFO] = "info", [WEFT_LOG_DEBUG] = "debug",
	};
	const char *name = level >= 0 && level < 8 && names[level] ?
			   names[level] : "log";

	fprintf(stderr, "%s: libweft %s: %s\n", arg ? (const char *)arg : "weft",
		name, msg);
}

/* Fill unset fields of o from the environment; prog names the program in
 * log lines (NULL: no stderr logger is installed). */
static inline void weft_env_opts(struct weft_cluster_opts *o, const char *prog)
{
	const char *e;

	if (!o->run_dir && (e = getenv("WEFT_RUN_DIR")) && *e)
		o->run_dir = e;
	if (!o->host && (e = getenv("WEFT_HOST")) && *e)
		o->host = e;
	if (!o->spin_us && !(o->flags & WEFT_F_NO_SPIN) &&
	    (e = getenv("WEFT_SPIN_US")) && *e) {
		if (atoi(e) > 0)
			o->spin_us = (unsigned)atoi(e);
		else if (!strcmp(e, "0"))
			o->flags |= WEFT_F_NO_SPIN;
	}
	if (!o->buf_arena && (e = getenv("WEFT_BUF_ARENA_MB")) && atoi(e) > 0)
		o->buf_arena = (size_t)atoi(e) << 20;
	if (!o->log_level && (e = getenv("WEFT_LOG_LEVEL"))) {
		if (!strcmp(e, "err") || !strcmp(e, "error"))
			o->log_level = WEFT_LOG_ERR;
		else if (!strcmp(e, "warning"))
			o->log_level = WEFT_LOG_WARNING;
		else if (!strcmp(e, "info"))
			o->log_level = WEFT_LOG_INFO;
		else if (!strcmp(e, "debug"))
			o->log_level = WEFT_LOG_DEBUG;
	}
	if (!o->key_name && (e = getenv("WEFT_KEY")) && *e)
		o->key_name = e;
	if (!o->keyring && (e = getenv("WEFT_KEYRING")) && *e)
		o->keyring = e;
	if (!o->log && prog) {
		o->log = weft_env_log_stderr;
		o->log_arg = (void *)(uintptr_t)prog;
	}
}

#endif
