/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to the tcp backend: the structs that fabric/tcp.c (framing and
 * the data path) and fabric/tcp_conn.c (set-up: the ctx, listeners, the
 * handshake, connect/accept and the endpoints' life) share, and the
 * functions one of them calls in the other.  The wire format is in
 * fabric/tcp_frame.h.
 */
#ifndef WEFT_FABRIC_TCP_INT_H
#define WEFT_FABRIC_TCP_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/un.h>

#include "fabric/fabric_int.h"
#include "fabric/tcp_frame.h"

#define HELLO_LEN     ((uint32_t)sizeof(struct wf_tcp_hello))
/*
 * Receive staging: small frames (messages, headers, short payloads) are read
 * many at a time into a per-endpoint buffer and taken from there; a payload
 * with at least RX_DIRECT bytes still to come is received straight into its
 * destination (with the buffer as a second iovec for what follows).
 */
#define RXB_SIZE      (64u * 1024)
#define RX_DIRECT     2048u

enum h_kind { H_EVENT = 1, H_LISTENER, H_EP };

/* What an epoll event points at. */
struct handle {
	int kind;
};

struct tcp_ctx;
struct tcp_ep;
struct tcp_addr;          /* a parsed address (tcp_conn.c) */

struct tcp_mr {
	struct wf_mr base;
	uint32_t     key;
	uint64_t     owner;     /* wf_mr_bind: uid of the only endpoint whose
	                         * peer may address it; 0: any */
};

struct mr_slot {
	struct tcp_mr *mr;
	uint16_t       gen;
};

struct cq_ent {
	struct wf_cqe cqe;
	int32_t       op;       /* op slot to free on delivery, or -1 */
};

struct tcp_listener {
	struct wf_listener base;
	struct handle      h;
	struct tcp_ctx    *ctx;
	int                fd;
	bool               accept_queued;  /* an ACCEPT cqe is in the ring */
	struct tcp_ep     *waiting;        /* not yet wf_accept'ed, newest
	                                    * first */
	uint32_t           nwaiting;
	struct tcp_listener *cnext;        /* ctx->lsts */
	char               path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

struct tcp_ctx {
	struct wf_ctx   base;
	struct handle   ev_h;
	int             epfd;
	int             evfd;
	struct cq_ent  *cq;
	uint32_t        cq_cap, cq_head, cq_count;
	uint32_t        cq_reserved;    /* entries promised to eps/listeners */
	struct mr_slot *mrs;
	uint32_t        nmrs;
	struct tcp_ep  *held;           /* eps with receive credits to return */
	struct tcp_ep  *txq;            /* WF_CTX_BATCH: eps with posts not yet
	                                 * written */
	bool            batch;          /* WF_CTX_BATCH */
	struct tcp_ep  *live;           /* EP_LIVE endpoints */
	uint32_t        nlive;
	uint32_t        turn;           /* wf_poll calls, for the epoll cadence */
	uint64_t        next_uid;       /* endpoint ids for wf_mr_bind (never
	                                 * reused, unlike addresses) */
	bool            io_skipped;     /* the last wf_poll did no socket I/O */
	bool            quiet;          /* wf_ctx_quiet: the next wf_poll
	                                 * does no socket I/O of its own */
	bool            armed;          /* the user sleeps on the fd: every poll
	                                 * asks epoll, until one returns work */
	struct tcp_listener *lsts;      /* every listener of the ctx */
	int64_t         hello_due;      /* coarse ms when the earliest hello
	                                 * deadline may pass; INT64_MAX: none */
	struct tcp_ep  *reap;           /* evicted during an event batch: freed
	                                 * after it (events may still name them) */
	struct tcp_ep  *conning;        /* EP_CONNECTING endpoints (lnext) */
};

enum ep_state {
	EP_HELLO,       /* accepted socket, waiting for the peer's hello */
	EP_WAITING,     /* handshake done, waiting for wf_accept */
	EP_LIVE,
	EP_DEAD,        /* socket closed, DISCONNECT queued (or, after
	                 * wf_connect_start, a failed CONNECT) */
	EP_CONNECTING,  /* wf_connect_start: on ctx->conning, see conn_phase */
};

/* Where an EP_CONNECTING endpoint is. */
enum conn_phase {
	CP_SOCKET,      /* connect() in progress: waiting for EPOLLOUT */
	CP_AGAIN,       /* AF_UNIX backlog full: connect() again at the next
	                 * sweep */
	CP_HELLO,       /* our hello sent: waiting for the listener's */
};

enum op_state { OP_FREE, OP_POSTED, OP_DONE };
enum op_kind { OPK_WRITE = 1, OPK_READ, OPK_SEND, OPK_PUT };  /* PUT: wf_write */

/* One send credit. */
struct tcp_op {
	uint64_t wr_id;
	uint8_t  state;         /* enum op_state */
	uint8_t  kind;          /* enum op_kind */
	uint32_t mr_key;        /* READ: local region (re-resolved at use) */
	uint64_t loff;
	uint32_t len;
};

/* One frame queued for the socket. */
struct tx_item {
	struct wf_tcp_frame hdr;        /* already little-endian */
	uint32_t src_key;               /* payload from a region (key, off) ... */
	uint64_t src_off;
	const char *src_ptr;            /* ... or from ep memory */
	uint32_t len;                   /* payload bytes */
	uint32_t done;                  /* bytes of hdr + payload sent */
	int32_t  op;                    /* op slot, or -1 for a read response */
};

enum rx_state {
	RX_HDR,         /* collecting a frame header in rxb */
	RX_DISPATCH,    /* header decoded; waiting for a receive credit */
	RX_PAYLOAD,     /* receiving the payload into its destination */
};

struct tcp_ep {
	struct wf_ep         base;
	struct handle        h;
	struct tcp_ctx      *ctx;
	struct tcp_listener *lst;       /* EP_HELLO, EP_WAITING */
	struct tcp_ep       *lnext;
	int64_t              hello_deadline; /* EP_HELLO, EP_CONNECTING: coarse
	                                      * ms */
	uint8_t              conn_phase;     /* EP_CONNECTING: enum conn_phase */
	struct tcp_addr     *conn_to;        /* CP_AGAIN: where to */
	struct tcp_ep       *held_next;
	struct tcp_ep       *txq_next;
	bool                 on_txq;
	struct tcp_ep       *live_next, *live_prev;
	bool                 on_held;
	bool                 in_epoll;
	bool                 reserved;  /* counted in ctx->cq_reserved */
	int                  fd;
	int                  state;
	uint64_t             uid;       /* unique in the ctx, never 0 */
	uint32_t             events;    /* current epoll interest */
	struct wf_ep_opts    opts;
	uint32_t             peer_send_depth, peer_msg, msg_max;

	/* send side */
	struct tcp_op       *ops;
	uint32_t            *op_free;   /* stack of free op slots */
	uint32_t             op_nfree;
	char                *op_msgs;   /* send_depth * msg_size copies */
	struct tx_item      *tx;
	uint32_t             tx_cap, tx_head, tx_count;
	uint32_t             resp_out;  /* read responses queued */

	/* receive side */
	uint8_t              rx_hdr[HELLO_LEN];  /* the hello */
	uint32_t             rx_hdr_got;
	char                *rxb;       /* RXB_SIZE staging, see RX_DIRECT */
	uint32_t             rxb_pos, rxb_len;   /* unread: [pos, len) */
	int                  rx_state;
	struct wf_tcp_frame  rx;        /* decoded header */
	uint32_t             rx_got;    /* payload bytes received */
	uint32_t             rx_slot;   /* msg slot of the current SEND */
	char                *msgs;      /* recv_depth * msg_size */
	uint32_t             recv_used, recv_held, msg_next;
};

static inline struct tcp_ctx *tctx(struct wf_ctx *c) { return (struct tcp_ctx *)c; }
static inline struct tcp_ep *tep(struct wf_ep *e) { return (struct tcp_ep *)e; }

/* ---- tcp.c: the data path ---- */

/* Queue a completion (cannot fail: every producer holds a reservation). */
void tcp_cq_push(struct tcp_ctx *c, struct tcp_ep *ep, uint32_t op,
		 int32_t status, uint64_t wr_id, uint32_t imm, uint32_t len,
		 const void *msg, int32_t opslot);
/* Drop every ring entry that names ep or l (they are being freed). */
void tcp_cq_purge(struct tcp_ctx *c, const struct tcp_ep *ep,
		  const struct tcp_listener *l);
int  tcp_ep_epoll_add(struct tcp_ep *ep);
void tcp_ep_epoll_del(struct tcp_ep *ep);
void tcp_held_unlink(struct tcp_ep *ep);         /* ctx->held */
void tcp_txq_unlink(struct tcp_ep *ep);          /* ctx->txq */
void tcp_live_add(struct tcp_ep *ep);            /* ctx->live */
void tcp_live_del(struct tcp_ep *ep);

/* ---- tcp_conn.c: set-up ---- */

/* Server side: the peer's hello (or part of it) is readable. */
void tcp_ep_hello_rx(struct tcp_ep *ep);
/* Free the handshaking sockets evicted during an event batch. */
void tcp_reap_free(struct tcp_ctx *c);
/* Close every socket whose hello is overdue; note the next deadline. */
void tcp_hello_sweep(struct tcp_ctx *c, int64_t now);
/* Client side: an event on an EP_CONNECTING endpoint. */
void tcp_ep_connect_ev(struct tcp_ep *ep, uint32_t events);
/* A listening socket is readable: take its new sockets. */
void tcp_listener_rx(struct tcp_listener *l);

/* wf_ops of the tcp backend (the table, wf_tcp_ops, is in tcp.c). */
int  tcp_ctx_create(const struct wf_ctx_opts *o, struct wf_ctx **out);
void tcp_ctx_destroy(struct wf_ctx *ctx);
int  tcp_ctx_fd(const struct wf_ctx *ctx);
int  tcp_listen(struct wf_ctx *ctx, const char *addr,
		const struct wf_ep_opts *o, struct wf_listener **out);
int  tcp_listener_addr(const struct wf_listener *lb, char *buf, size_t len);
int  tcp_accept(struct wf_listener *lb, struct wf_ep **out);
void tcp_listener_destroy(struct wf_listener *lb);
int  tcp_connect(struct wf_ctx *ctx, const char *addr,
		 const struct wf_ep_opts *o, struct wf_ep **out);
int  tcp_connect_start(struct wf_ctx *ctx, const char *addr,
		       const struct wf_ep_opts *o, struct wf_ep **out);
void tcp_ep_destroy(struct wf_ep *e);
int  tcp_ep_peer(const struct wf_ep *e, char *buf, size_t len);

#endif
