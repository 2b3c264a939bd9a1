/* SPDX-License-Identifier: Apache-2.0 */
/* weft-bench subcommands; each returns the process exit code. */
#ifndef WEFT_BENCH_H
#define WEFT_BENCH_H

#include <stdint.h>

int bench_placement(int argc, char **argv);  /* placement.c */
int bench_fabric(int argc, char **argv);     /* fabric.c */
int bench_floor(int argc, char **argv);      /* io_floor.c */
int bench_io(int argc, char **argv);         /* io.c */
int bench_thrash(int argc, char **argv);     /* thrash.c */
int bench_connect(int argc, char **argv);    /* connect.c */
int bench_chain(int argc, char **argv);      /* chain.c */

/* ---- shared by the two-process runs of fabric.c and io.c (fabric.c) ---- */

struct wf_ctx;
struct wf_listener;
struct wf_ep;
struct wf_ep_opts;
struct wf_mr;

/* WF_BACKEND_* of a --transport name: tcp, unix or verbs. */
uint32_t wf_bench_backend(const char *transport);

/*
 * The peer process's start: a ctx of transport's backend listening on laddr,
 * the listener's real address (WF_BENCH_ADDR_LEN bytes) written to the
 * measuring process through pfd, which is then closed, and one endpoint
 * accepted.  deadline: wf_now_ns() value to give up at, 0 for never.
 * Returns 0, or -errno with *step naming what failed ("listen", "pipe",
 * "poll" or "accept"); after a failure to listen nothing is written to pfd,
 * so the measuring process reads end of file.
 */
#define WF_BENCH_ADDR_LEN 256
int wf_bench_peer_accept(const char *transport, const char *laddr,
			 const struct wf_ep_opts *eo, int pfd, uint64_t deadline,
			 struct wf_ctx **ctx, struct wf_listener **l,
			 struct wf_ep **ep, const char **step);
/* The peer's end, once the measuring process has disconnected: everything
 * wf_bench_peer_accept() made, and the region mr registered on buf. */
void wf_bench_peer_end(struct wf_ctx *ctx, struct wf_listener *l, struct wf_ep *ep,
		       struct wf_mr *mr, void *buf);

#endif
