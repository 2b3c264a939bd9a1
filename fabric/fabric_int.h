/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to fabric/: the backend ops table and the base structs every
 * backend embeds as its first member.  Nothing outside fabric/ includes this.
 */
#ifndef WEFT_FABRIC_INT_H
#define WEFT_FABRIC_INT_H

#include <time.h>

#include "fabric/fabric.h"

struct wf_ops {
	const char *name;
	int   (*ctx_create)(const struct wf_ctx_opts *o, struct wf_ctx **out);
	void  (*ctx_destroy)(struct wf_ctx *ctx);
	int   (*ctx_fd)(const struct wf_ctx *ctx);
	int   (*ctx_arm)(struct wf_ctx *ctx);
	int   (*poll)(struct wf_ctx *ctx, struct wf_cqe *cqes, int max);
	int   (*poll_wait)(struct wf_ctx *ctx, struct wf_cqe *cqes, int max,
			   int timeout_ms);   /* NULL: arm, poll, sleep, poll */
	int   (*flush)(struct wf_ctx *ctx);        /* NULL: posts never wait */
	void  (*quiet)(struct wf_ctx *ctx);        /* NULL: the hint is ignored */

	int   (*listen)(struct wf_ctx *ctx, const char *addr,
			const struct wf_ep_opts *o, struct wf_listener **out);
	int   (*listener_addr)(const struct wf_listener *l, char *buf, size_t len);
	int   (*accept)(struct wf_listener *l, struct wf_ep **out);
	void  (*listener_destroy)(struct wf_listener *l);
	int   (*connect)(struct wf_ctx *ctx, const char *addr,
			 const struct wf_ep_opts *o, struct wf_ep **out);
	/* NULL: wf_connect_start connects synchronously with connect */
	int   (*connect_start)(struct wf_ctx *ctx, const char *addr,
			       const struct wf_ep_opts *o, struct wf_ep **out);
	int   (*ep_close)(struct wf_ep *ep);
	int   (*ep_peer)(const struct wf_ep *ep, char *buf, size_t len);
	void  (*ep_destroy)(struct wf_ep *ep);

	int   (*mr_reg)(struct wf_ctx *ctx, void *addr, size_t len,
			unsigned access, struct wf_mr **out);
	void  (*mr_dereg)(struct wf_mr *mr);
	int   (*mr_rkey)(const struct wf_mr *mr, const struct wf_ep *ep,
			 uint64_t off, uint32_t len, struct wf_rkey *out);
	int   (*mr_bind)(struct wf_mr *mr, const struct wf_ep *ep); /* NULL:
	                                                 * not supported */

	int   (*write_imm)(struct wf_ep *ep, const struct wf_mr *mr, uint64_t loff,
			   uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
			   uint32_t imm, uint64_t wr_id);
	int   (*write)(struct wf_ep *ep, const struct wf_mr *mr, uint64_t loff,
		       uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
		       uint64_t wr_id);
	int   (*read)(struct wf_ep *ep, const struct wf_mr *mr, uint64_t loff,
		      uint32_t len, const struct wf_rkey *rkey, uint64_t roff,
		      uint64_t wr_id);
	int   (*send)(struct wf_ep *ep, const void *msg, uint32_t len,
		      uint64_t wr_id);
};

/* Base structs: each backend's struct starts with one of these. */
struct wf_ctx {
	const struct wf_ops *ops;
	struct wf_ctx_opts   opts;      /* defaults filled in */
	struct wf_fab_counts counts;    /* fabric.c; its thread only writes */
};

struct wf_listener {
	struct wf_ctx     *ctx;
	struct wf_ep_opts  opts;        /* defaults filled in */
};

struct wf_ep {
	struct wf_ctx *ctx;
	void          *user;
};

struct wf_mr {
	struct wf_ctx *ctx;
	void          *addr;
	size_t         len;
	unsigned       access;
};

extern const struct wf_ops wf_tcp_ops;
extern const struct wf_ops wf_verbs_ops;

/* Option defaults, applied once in fabric.c before a backend sees them. */
#define WF_DEFAULT_CQ_DEPTH   4096u
#define WF_DEFAULT_SEND_DEPTH 64u
#define WF_DEFAULT_RECV_DEPTH 64u
#define WF_DEFAULT_MSG_SIZE   512u
#define WF_DEFAULT_TIMEOUT_MS 5000

/* ---- what both backends share ---- */

struct sockaddr;

/* An IPv4 or IPv6 address as wf_listener_addr() gives it: "SCHEME:HOST:PORT"
 * or "SCHEME:[HOST]:PORT".  0, or -ENOSPC when buf is too short. */
int wf_inet_addr_str(const struct sockaddr *sa, const char *scheme, char *buf,
		     size_t len);
/* The same without the port: "SCHEME:HOST" (wf_ep_peer). */
int wf_inet_host_str(const struct sockaddr *sa, const char *scheme, char *buf,
		     size_t len);

/* Milliseconds of a monotonic clock: CLOCK_MONOTONIC for deadlines,
 * CLOCK_MONOTONIC_COARSE (a vDSO read without a system call, a few ms of
 * resolution) for timers of seconds and for pacing. */
static inline int64_t wf_clock_ms(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
