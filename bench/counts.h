/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counts that do not depend on the machine's noise (docs/performance.md,
 * "Counts"): the fabric operations of the targets (their control-socket
 * status) and the syscalls of a set of processes (perf's raw_syscalls
 * tracepoint), read before and after a measured run.
 */
#ifndef WEFT_BENCH_COUNTS_H
#define WEFT_BENCH_COUNTS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/types.h>

struct wf_ctl_status;

/* STATUS of target id through RUN_DIR/target-ID.ctl: 0, or -errno. */
int wf_ctl_status_of(const char *run_dir, unsigned id, struct wf_ctl_status *st);

/* The fabric counts of a set of targets, summed. */
struct wf_tcounts {
	uint64_t sends, writes, reads, recvs, cqes;
};

/* Sum over the targets of the map at map_path found in run_dir; returns
 * how many answered (0: none, the counts are then unknown), or -errno. */
int wf_tcounts_read(const char *map_path, const char *run_dir,
		    struct wf_tcounts *out);

/* Syscalls of pids[0 .. n) between start and stop, counted by a `perf
 * stat` child on the raw_syscalls:sys_enter tracepoint (needs perf and a
 * mounted tracefs), and beside them (counts.c, sc_events) the parts of
 * the kernel's work per I/O at depth: */
enum wf_sc {
	WF_SC_SYS,              /* every syscall */
	WF_SC_SUBMITS,          /* io_uring_enter calls that submit */
	WF_SC_SQES,             /* SQEs submitted */
	WF_SC_WAITS,            /* io_uring waits that found too few CQEs */
	WF_SC_CS,               /* context switches (sleeps, preemptions) */
	WF_SC_ISSUES,           /* block requests issued to a device */
	WF_SC_UNPLUGS,          /* block plug flushes */
	WF_SC_N
};

struct wf_syscount {
	pid_t    perf;
	unsigned events;                /* bit e: enum wf_sc e is counted */
	char     out[64];
};

/* The events this kernel can count, as a mask of bits 1 << enum wf_sc: a
 * tracepoint ("sys:name") when present(name, arg) says it exists, perf's
 * software events always.  perf refuses the whole list for one unknown
 * tracepoint, so the missing ones are left out. */
unsigned wf_sc_select(bool (*present)(const char *event, void *arg), void *arg);
/* The perf arguments of the events in mask ("-e EVENT" and "--filter F")
 * into argv (room for 4 * WF_SC_N); returns how many. */
unsigned wf_sc_args(unsigned mask, const char **argv);
/* Reads `perf stat -x ,` output of the events in mask into count[] (-1:
 * not given or not counted); 0, or -EPROTO without the syscalls. */
int wf_sc_parse(FILE *f, unsigned mask, int64_t count[WF_SC_N]);

/* 0, or -errno (-ENOENT: no perf or no raw_syscalls tracepoint; why in
 * the text).  The other events' tracepoints missing here are not counted
 * (their counts -1), the rest still are. */
int wf_syscount_start(struct wf_syscount *s, const pid_t *pids, unsigned n,
		      char *why, size_t whylen);
/* Stop and read: 0 and count[] (-1: that event unknown), or -errno
 * (then the syscalls are unknown). */
int wf_syscount_stop(struct wf_syscount *s, int64_t count[WF_SC_N]);

/* Per I/O of a run: the client's fabric operations (weft_stats) and the
 * targets' (their status), and with syscall counting those of each side;
 * a negative value: unknown. */
struct wf_per_io {
	double c_sends, c_writes, c_reads, c_cqes, c_sys;
	double t_sends, t_writes, t_reads, t_cqes, t_sys;
	/* With syscalls: the rest of enum wf_sc per I/O, each side. */
	double c_sc[WF_SC_N], t_sc[WF_SC_N];
	/* User-space instructions (wf_instr_mark), and the two windows they
	 * come from: I/Os, client and targets instructions of each. */
	double c_instr, t_instr, t_idle_per_s;
	uint64_t win_ios[2], win_c[2], win_t[2];
	double win_s[2];                /* each window's wall time */
};

/*
 * User-space instructions, counted by valgrind's callgrind when this
 * process and the targets run under it as bench/count-instructions starts
 * them: the client with --collect-atstart=no and --toggle-collect on
 * weft_read, weft_write and weft_wait (libweft's work only, not the
 * benchmark's pattern checks) and --dump-before=wf_instr_mark; each target
 * with --dump-before=wf_tgt_fill_status, which the STATUS query here makes
 * it run.  Every dump holds the costs since the previous one.  Each call
 * dumps both sides and reads the dumps back from dir (files
 * callgrind.out.PID.N): the instructions since the previous call, of this
 * process in *client and of the targets tpids[0 .. n) summed in *targets.
 * 0, or -errno (-ENOENT: a dump is missing, e.g. not under callgrind).
 */
int wf_instr_mark(const char *dir, const char *map, const pid_t *tpids,
		  unsigned n, uint64_t *client, uint64_t *targets);

/* The counts at a run's start (wf_counts_begin) and end (wf_counts_end). */
struct weft_cluster;
struct wf_run_counts {
	uint64_t c[4];                  /* client sends, writes, reads, cqes */
	struct wf_tcounts t;
	int have_t;
	struct wf_syscount sc_client, sc_targets;
	bool have_csys, have_tsys;
};

/* map: the map path (its targets are asked in $WEFT_RUN_DIR); pids: the
 * targets' processes, for syscalls (when syscalls). */
void wf_counts_begin(struct wf_run_counts *k, struct weft_cluster *cl,
		     const char *map, const pid_t *pids, unsigned npids,
		     bool syscalls);
void wf_counts_end(struct wf_run_counts *k, struct weft_cluster *cl,
		   const char *map, uint64_t ios, struct wf_per_io *out);
/* One line under a job's line of the table; an object key of the JSON. */
void wf_per_io_print(FILE *f, const struct wf_per_io *p);
struct wf_json;
void wf_per_io_json(struct wf_json *js, const char *key, const struct wf_per_io *p);

#endif
