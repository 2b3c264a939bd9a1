/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to fabric/ (and its tests and fuzzers): the framing the tcp
 * backend puts on a byte stream (TCP or AF_UNIX).  Upper layers never see
 * it; their headers are in proto/wire.h.
 *
 * A connection starts with one hello each way (struct wf_tcp_hello), then
 * carries frames: a fixed 24-byte header (struct wf_tcp_frame), followed by
 * `len` payload bytes for WRITE_IMM, SEND and READ_RESP.  All integers are
 * little-endian.
 */
#ifndef WEFT_FABRIC_TCP_FRAME_H
#define WEFT_FABRIC_TCP_FRAME_H

#include <stdint.h>

#include "fabric/fabric.h"

#define WF_TCP_HELLO_MAGIC   0x48544657u /* "WFTH" little-endian */
#define WF_TCP_VERSION       1u
#define WF_TCP_FRAME_MAGIC   0xf7u
#define WF_TCP_MAX_DEPTH     65536u      /* send/recv depth accepted in a hello */
#define WF_TCP_MAX_MSG       (1u << 20)  /* msg_size accepted in a hello */

enum wf_tcp_hello_kind {
	WF_TCP_HELLO  = 1,      /* connector -> listener */
	WF_TCP_ACCEPT = 2,      /* listener -> connector: go ahead */
	WF_TCP_REFUSE = 3,      /* listener -> connector: status says why */
};

struct wf_tcp_hello {
	uint32_t magic;         /* WF_TCP_HELLO_MAGIC */
	uint16_t version;       /* WF_TCP_VERSION */
	uint16_t kind;          /* enum wf_tcp_hello_kind */
	uint32_t send_depth;    /* sender's send_depth: bounds its reads in
	                         * flight, so the receiver sizes its response
	                         * queue from it */
	uint32_t recv_depth;    /* informational */
	uint32_t msg_size;      /* largest message the sender accepts */
	int32_t  status;        /* REFUSE: positive errno */
	uint64_t reserved;      /* 0 */
};
_Static_assert(sizeof(struct wf_tcp_hello) == 32, "tcp hello is 32 bytes");

enum wf_tcp_frame_type {
	WF_TCP_WRITE_IMM = 1,   /* key/addr: where `len` payload bytes go in the
	                         * receiver's region; imm: the immediate */
	WF_TCP_READ_REQ  = 2,   /* key/addr/len: what to read; imm: request id;
	                         * no payload */
	WF_TCP_READ_RESP = 3,   /* imm: request id; `len` payload bytes follow */
	WF_TCP_SEND      = 4,   /* `len` payload bytes: a two-sided message */
	WF_TCP_WRITE     = 5,   /* as WRITE_IMM, but raises nothing at the
	                         * receiver and takes no receive credit;
	                         * imm must be 0 */
};

struct wf_tcp_frame {
	uint8_t  magic;         /* WF_TCP_FRAME_MAGIC */
	uint8_t  type;          /* enum wf_tcp_frame_type */
	uint16_t reserved;      /* 0 */
	uint32_t len;
	uint32_t key;           /* WRITE_IMM, READ_REQ: region key; else 0 */
	uint32_t imm;
	uint64_t addr;          /* WRITE_IMM, READ_REQ: offset in the region;
	                         * else 0 */
};
_Static_assert(sizeof(struct wf_tcp_frame) == 24, "tcp frame header is 24 bytes");

/*
 * Testing hook (fuzzers, tests): make a live tcp endpoint of an already
 * connected stream socket, skipping the hello, as if the peer had sent the
 * given depths.  o must be complete (no defaults applied).  Takes the fd.
 */
int wf_tcp_ep_adopt(struct wf_ctx *ctx, int fd, const struct wf_ep_opts *o,
		    uint32_t peer_send_depth, uint32_t peer_msg_size,
		    struct wf_ep **out);

#endif
