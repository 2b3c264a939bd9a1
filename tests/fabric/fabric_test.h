/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers of the fabric conformance suite (test_fabric_*.c, one binary per
 * feature).  Every binary runs against any backend:
 *   WEFT_FABRIC       tcp (default) | unix | verbs
 *   WEFT_FABRIC_ADDR  listen address: tcp default "tcp:127.0.0.1:0"; unix a
 *                     path prefix (default a fresh /tmp path per listener);
 *                     verbs e.g. "rdma:10.9.0.1:0" (required).  Keep port 0:
 *                     some cases listen twice at once.
 * Every wait is bounded by a deadline (longer under verbs: the rig runs
 * soft-RoCE under emulation).
 */
#ifndef WEFT_TESTS_FABRIC_TEST_H
#define WEFT_TESTS_FABRIC_TEST_H

#include <stdbool.h>
#include <stdint.h>

#include "fabric/fabric.h"

#define FT_MAXC   4096
#define FT_MSGCAP 256            /* bytes kept of each message */
#define FT_MSGS   512            /* messages kept (the first ones) */

struct ft_got {
	struct wf_cqe c[FT_MAXC];
	uint8_t       msg[FT_MSGS][FT_MSGCAP]; /* copies of the first messages */
	int           n;
};

struct ft_pair {
	struct wf_ctx      *sctx, *cctx;    /* server (listening) and client */
	struct wf_listener *l;
	struct wf_ep       *sep, *cep;
	char                addr[256];
};

const char *ft_backend_name(void);
bool     ft_is_verbs(void);
uint32_t ft_backend(void);
int      ft_wait_ms(void);              /* default bound of one wait */
void     ft_listen_addr(char *buf, size_t len);
uint32_t ft_ctx_flags(void);
struct wf_ctx *ft_ctx(uint32_t cq_depth);
struct wf_ep_opts ft_opts(uint32_t send_depth, uint32_t recv_depth, uint32_t msg_size);

/* Listen on sctx, connect cctx to it (a helper thread accepts). */
void ft_pair_open(struct ft_pair *p, const struct wf_ep_opts *so,
		  const struct wf_ep_opts *co);
void ft_pair_close(struct ft_pair *p);
/* With p listening (ft_pair_open done): connect `want` more client eps into
 * ceps while a helper thread accepts them into eps.  0 or -errno. */
int  ft_accept_many(struct ft_pair *p, struct wf_ep **eps, int want,
		    struct wf_ep **ceps, const struct wf_ep_opts *co);

/* Poll ctx once, appending to g (messages copied out). */
int  ft_poll_into(struct wf_ctx *ctx, struct ft_got *g);
/* Poll both ctxs until gs has ns entries and gc nc (either may be NULL);
 * fails the test after ms milliseconds. */
void ft_pump(struct wf_ctx *s, struct ft_got *gs, int ns,
	     struct wf_ctx *c, struct ft_got *gc, int nc, int ms);
int  ft_count(const struct ft_got *g, uint32_t op);
const struct wf_cqe *ft_find(const struct ft_got *g, uint32_t op, int nth);
int64_t ft_now_ms(void);

/* n zeroed bytes, page-aligned (free() them). */
void    *ft_xalloc(size_t n);
/* wf_mr_reg that must succeed. */
struct wf_mr *ft_reg(struct wf_ctx *ctx, void *buf, size_t len, unsigned acc);
/* A byte pattern that differs with seed and offset. */
void     ft_fill(void *buf, size_t len, uint32_t seed);

#endif
