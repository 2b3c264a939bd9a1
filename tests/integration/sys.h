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
	char etcd[128];         /* WEFT_SYS_ETCD=1: the cluster's etcd URL */
	char keyring[300];      /* scripts/cluster's: keys "target-ID" (one
	                         * per target, the map's peer_keys), "client" */
	bool up;
};

/* scripts/cluster start on conf/local.conf with ports from the pid
 * (extra: NULL or one more word for weft-target, e.g. "--poll-us=0");
 * sets WEFT_RUN_DIR, which the tests' libweft handles take as run_dir
 * (weft_env_opts), and WEFT_KEYRING and WEFT_KEY (the key "client"), with
 * which they and the programs the tests run authenticate.  Asserts on failure. */
void sys_start(struct sys_cluster *c);
void sys_stop(struct sys_cluster *c);
pid_t sys_pid(const struct sys_cluster *c, unsigned id);
/* The pid in DIR/target-ID.pid (as scripts/cluster writes it), or 0. */
pid_t sys_pid_in(const char *dir, unsigned id);

/* The suite's cluster C, started before each of its tests and stopped
 * after it (also after a failed assertion). */
#define SYS_SUITE(name, timeout_s)					\
	static struct sys_cluster C;					\
	static void name##_up(void)					\
	{								\
		sys_start(&C);						\
	}								\
	static void name##_down(void)					\
	{								\
		sys_stop(&C);						\
	}								\
	TestSuite(name, .init = name##_up, .fini = name##_down,		\
		  .timeout = (timeout_s))

/* Skips the running test of a SYS_SUITE, stopping its cluster first:
 * Criterion runs no .fini after cr_skip_test, so the targets the suite's
 * .init started would outlive the test (scripts/test fails a stage that
 * leaves any behind). */
#define SYS_SKIP(...)							\
	do {								\
		sys_stop(&C);						\
		cr_skip_test(__VA_ARGS__);				\
	} while (0)

/* SIGKILL target id and wait (bounded) until it is gone. */
void sys_kill9(struct sys_cluster *c, unsigned id);
/* Start target id again on its store (daemon; returns once it listens). */
void sys_restart(struct sys_cluster *c, unsigned id);
/* The same with its own map file and run directory (as on another host:
 * no control socket where the tools look). */
void sys_restart_as(struct sys_cluster *c, unsigned id, const char *map,
		    const char *run);
/* The same with more weft-target options (extra: words for the shell). */
void sys_restart_with(struct sys_cluster *c, unsigned id, const char *map,
		      const char *run, const char *extra);

/* A cluster handle and vol on the test's map (flags: WEFT_F_*). */
void sys_open(const struct sys_cluster *c, unsigned flags, unsigned timeout_ms,
	      struct weft_cluster **cl, struct weft_volume **vol, const char *name);

/* The next epoch of c's map file with the targets of up_mask up and the
 * others down (they keep their place in their PGs: no data moves); the
 * targets take it with the next request of a newer epoch. */
void sys_map_set_up(const struct sys_cluster *c, unsigned up_mask);
/* Read [0, len) of volume through a fresh handle (no short-circuit) and
 * compare block by block with img (asserts, naming what). */
void sys_expect_image(const struct sys_cluster *c, const char *volume,
		      const char *what, const char *img, size_t len);
/* weftctl ARGS (words for the shell) on c's map and run dir, output
 * dropped: its exit status. */
int sys_weftctl(const struct sys_cluster *c, const char *args);

/*
 * `weftctl key issue` as an operator runs it for a new client host, on
 * c's map file or (c->etcd) on etcd's map: a key app7 granted vol1 only
 * (vol3 first closed to every key but "client"), written to a keyring
 * file of its own that must be mode 0600 and hold that key alone; a
 * handle with that file and key then writes and reads back vol1 and gets
 * -EACCES on vol3.  Asserts.
 */
void sys_key_issue_check(struct sys_cluster *c);

/* Versioned block contents: 8-byte version header + seeded pattern, so a
 * block read back says which write it came from.  Version 0 = zeros. */
void sys_fill(void *buf, uint64_t off, uint64_t version);
/* The version a block holds (0 for zeros), or -1 if it matches none. */
int64_t sys_decode(const void *buf, uint64_t off);

/*
 * A stream of single-block writes of versioned blocks (sys_fill) through a
 * fault: per block the last acknowledged version and the version of a
 * failed write, which may have reached the disk before the fault, so that
 * a read back tells a lost acknowledged write from a write of unknown fate.
 */
struct sys_stream {
	uint64_t *acked;                /* last version acknowledged (0: none) */
	uint64_t *maybe;                /* a failed write's version: may have landed */
	uint8_t  *busy;                 /* a write of it in flight */
	uint32_t nblk;
	uint64_t (*off)(uint32_t b);    /* block b's offset in the volume */
	uint64_t ver, rng, acks, fails;
};

#define SYS_STREAM_QD 64u

/* One round of sys_stream_round. */
struct sys_stream_opts {
	/* A handle on the stream's volume (asserts). */
	void (*open)(unsigned qd, unsigned timeout_ms, struct weft_cluster **cl,
		     struct weft_volume **vol);
	unsigned qd;                    /* writes in flight, at most SYS_STREAM_QD */
	unsigned timeout_ms;            /* the writing handle's request timeout */
	unsigned act_ms;                /* act this long after the start */
	unsigned give_up_ms;            /* the drain's bound after the stop */
	bool refused_fails;             /* a write refused at submission counts as
					 * failed (else the test fails) */
	void (*act)(void *arg);         /* the fault: kill a target, ... */
	void (*after)(void *arg);       /* NULL, or before reading back (restart) */
	void *arg;
	unsigned verify_timeout_ms;     /* the reading handle's request timeout */
	unsigned verify_run;            /* blocks read at once: off() is
					 * contiguous over runs of this many */
};

/* calloc'd arrays for nblk blocks, rng seeded from the pid. */
void sys_stream_init(struct sys_stream *s, uint32_t nblk, uint64_t (*off)(uint32_t));
void sys_stream_free(struct sys_stream *s);
uint64_t sys_stream_rnd(struct sys_stream *s);
/* On a handle of its own: writes at o->qd until act_ms, acts, goes on
 * 300 ms and drains (counting s->acks and s->fails); asserts that some
 * write was acknowledged.  Then o->after, and on another handle every
 * block reads back as its acknowledged version or that of a failed write
 * (which may have reached the disk before the fault). */
void sys_stream_round(struct sys_stream *s, const struct sys_stream_opts *o,
		      unsigned round);

struct wf_ctl_status;
/* STATUS of target id from its control socket in run_dir (asserts). */
struct wf_ctl_status sys_ctl_status(const char *run_dir, unsigned id);
/* Control op `op` (WF_CTL_RELOAD, ...) to target id; its status answer
 * (asserts it succeeded). */
struct wf_ctl_status sys_ctl_op(const char *run_dir, unsigned id, uint16_t op);

/* Runs a shell command, returns its exit status (-1 on failure to run). */
int sys_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
