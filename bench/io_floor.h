/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The raw device floor: what the file or device does with nothing but
 * io_uring in front of it.  One thread, one ring, O_DIRECT, the file and the
 * buffers registered with the ring, QD requests kept in flight at random
 * bs-aligned offsets drawn from a seeded generator.  Every weft figure is
 * reported beside this one, measured in the same run (`weft-bench io` calls
 * wf_floor_run() before and after its own measurement).
 *
 * It writes: the layout of a new/short/sparse file and every randwrite or
 * randrw run overwrite the target.  Never aim it at a live weft store except
 * with read_only set.
 */
#ifndef WEFT_BENCH_IO_FLOOR_H
#define WEFT_BENCH_IO_FLOOR_H

#include <stdbool.h>
#include <stdint.h>

#include "bench/stats.h"

enum wf_rw {
	WF_RW_READ,		/* randread */
	WF_RW_WRITE,		/* randwrite */
	WF_RW_RW,		/* randrw, rwmix_read % reads */
};

struct wf_floor_opts {
	const char *path;	/* file or block device */
	enum wf_rw rw;
	uint32_t bs;		/* bytes, multiple of 512 */
	uint32_t qd;		/* requests kept in flight, 1..1024 */
	double runtime_s;	/* timed phase */
	uint64_t size;		/* bytes of the file to address; 0 = its size
				 * (a missing file is created with 1 GiB) */
	uint64_t seed;		/* offsets and the write pattern derive from it */
	uint32_t rwmix_read;	/* percent reads for WF_RW_RW (default 50) */
	bool verify;		/* re-read every block written and check it */
	bool quiet;		/* no progress messages on stderr */
	bool read_only;		/* open O_RDONLY, never lay out (randread only):
				 * safe on a live store; a sparse file is then
				 * measured as it is, with a warning */
	bool dsync;		/* every write RWF_DSYNC: what a weft target does
				 * with --cache auto on a device with a volatile
				 * cache (a file) */
	bool layout_progress;	/* the layout's progress on stderr even when
				 * quiet (it may take a while, once) */
};

/* Fills defaults: randread, 4 KiB, QD 1, 5 s, seed 1, verify on. */
void wf_floor_opts_init(struct wf_floor_opts *o);

struct wf_floor_result {
	uint64_t ops, reads, writes;
	uint64_t bytes;
	double elapsed_s;	/* first submit to last completion */
	double iops;
	double mbps;		/* 10^6 bytes per second */
	/* This process's CPU during the timed phase; the kernel's submission
	 * work is in sys (io_uring submits inline), interrupt time is not. */
	uint64_t cpu_user_ns, cpu_sys_ns, cpu_total_ns;
	double cpu_us_per_io;
	uint64_t size;		/* bytes addressed */
	bool laid_out;		/* the file was (re)written before the run */
	uint32_t ring_flags;	/* IORING_SETUP_* the kernel accepted */
	uint64_t pattern_seed;	/* what the written blocks hold */
	/* Verify pass (writes only): blocks re-read, mismatches, first bad. */
	uint64_t verified, verify_errors, first_bad_offset;
	double verify_s;
	struct wf_hist lat;	/* all I/Os, ns */
	struct wf_hist read_lat;
	struct wf_hist write_lat;
};

/*
 * Runs the floor.  r is filled (it is large: allocate it).  Returns 0 when
 * the run completed and, with verify, every written block read back intact;
 * -EILSEQ when the verify pass found a mismatch (r says where); -EINVAL for
 * bad options; or the -errno of the failing setup step or I/O.
 */
int wf_floor_run(const struct wf_floor_opts *o, struct wf_floor_result *r);

/* Prints the human table / the JSON object for one result. */
void wf_floor_print(FILE *f, const struct wf_floor_opts *o,
		    const struct wf_floor_result *r);
void wf_floor_json(struct wf_json *j, const char *key,
		   const struct wf_floor_opts *o, const struct wf_floor_result *r);

const char *wf_rw_name(enum wf_rw rw);
/* Parses "randread" etc.; returns 0 or -EINVAL. */
int wf_rw_parse(const char *s, enum wf_rw *rw);

#endif
