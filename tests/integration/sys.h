/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Whole-system tests: a local cluster started the way a user starts one
 * (scripts/cluster on conf/local.conf: three weft-target daemons on
 * 127.0.0.1, file devices under /var/tmp), libweft and the tools against
 * it.  Every wait is bounded.  WEFT_FABRIC=tcp|unix|verbs picks the
 * transport (default tcp); WEFT_SYS_MAP another map to start (verbs needs
 * one whose addresses are on an RDMA device: the soft-RoCE rig's).
 */
#ifndef WEFT_TESTS_INTEGRATION_SYS_H
#define WEFT_TESTS_INTEGRATION_SYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "weft.h"

#define SYS_TARGETS 3
#define SYS_EXT     (1u << 20)          /* conf/local.conf's extent size */
#define SYS_BS      4096u

struct sys_cluster {
	char dir[256];
	char map[300];
	char run[300];
	char bin[256];
	char src[256];
	bool up;
};

/* scripts/cluster start on conf/local.conf with ports from the pid
 * (extra: NULL or one more word for weft-target, e.g. "--poll-us=0");
 * sets WEFT_RUN_DIR for libweft.  Asserts on failure. */
void sys_start(struct sys_cluster *c);
void sys_stop(struct sys_cluster *c);
pid_t sys_pid(const struct sys_cluster *c, unsigned id);
/* The pid in DIR/target-ID.pid (as scripts/cluster writes it), or 0. */
pid_t sys_pid_in(const char *dir, unsigned id);
/* SIGKILL target id and wait (bounded) until it is gone. */
void sys_kill9(struct sys_cluster *c, unsigned id);
/* Start target id again on its store (daemon; returns once it listens). */
void sys_restart(struct sys_cluster *c, unsigned id);

/* A cluster handle and vol on the test's map (flags: WEFT_F_*). */
void sys_open(const struct sys_cluster *c, unsigned flags, unsigned timeout_ms,
	      struct weft_cluster **cl, struct weft_volume **vol, const char *name);

/* Versioned block contents: 8-byte version header + seeded pattern, so a
 * block read back says which write it came from.  Version 0 = zeros. */
void sys_fill(void *buf, uint64_t off, uint64_t version);
/* The version a block holds (0 for zeros), or -1 if it matches none. */
int64_t sys_decode(const void *buf, uint64_t off);

/* Runs a shell command, returns its exit status (-1 on failure to run). */
int sys_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
