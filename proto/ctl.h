/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The target's control socket: RUN_DIR/target-ID.ctl, AF_UNIX
 * SOCK_SEQPACKET, on the target's host only.  Part of proto/: the target
 * serves it, libweft asks it for short-circuit reads, weftctl for status.
 *
 * A wire format: every struct is fixed-size, every integer little-endian
 * (convert with htole and le*toh), checked with _Static_assert.  One
 * request per packet, one answer per request, in order.  A request that is
 * not exactly a struct wf_ctl_req with this magic and version gets an
 * answer with result -EPROTO (when its op can be told) or the connection
 * closed.  Full description: docs/protocol.md, "Control socket".
 */
#ifndef WEFT_PROTO_CTL_H
#define WEFT_PROTO_CTL_H

#include <stdint.h>

#define WF_CTL_MAGIC    0x4c544357u     /* "WCTL" on the wire */
#define WF_CTL_VERSION  3u      /* 2: recovery fields in the status;
                                 * 3: fua_writes, flushes */

enum wf_ctl_op {
	WF_CTL_STATUS       = 1,    /* answer: struct wf_ctl_status */
	WF_CTL_SHORTCIRCUIT = 2,    /* answer: struct wf_ctl_shortcircuit plus
	                             * two fds (SCM_RIGHTS): [0] the device,
	                             * read-only, O_DIRECT; [1] the store's
	                             * index memfd (sealed; map it read-only
	                             * with wf_view_open) */
	WF_CTL_RELOAD       = 3,    /* reload the map file; answer:
	                             * struct wf_ctl_status (the new epoch) */
};

struct wf_ctl_req {
	uint32_t magic;             /* WF_CTL_MAGIC */
	uint16_t version;           /* WF_CTL_VERSION */
	uint16_t op;                /* enum wf_ctl_op */
	uint64_t epoch;             /* sender's map epoch, 0 if none */
	uint64_t reserved[2];       /* 0 */
};
_Static_assert(sizeof(struct wf_ctl_req) == 32, "ctl request is 32 bytes");

struct wf_ctl_status {
	uint32_t magic;
	uint16_t version;
	uint16_t op;                /* the request's op */
	int32_t  result;            /* 0 or -errno (RELOAD: why it failed; the
	                             * rest then describes the kept map) */
	uint32_t target_id;
	uint64_t cluster_id;
	uint64_t epoch;             /* the map epoch the target serves */
	uint64_t extents;           /* data extents on the device */
	uint64_t used;              /* allocated extents */
	uint64_t free;
	uint32_t extent_size;
	uint32_t connections;       /* open data connections */
	uint32_t max_conns;
	uint32_t slots;             /* per connection */
	uint32_t slot_size;
	uint32_t inflight;          /* store requests in flight */
	uint64_t reads, writes;     /* requests served since start */
	uint64_t errors;            /* requests answered with an error */
	uint64_t uptime_ms;
	/* Recovery (docs/replication.md): of the PGs this target leads in
	 * `epoch`, how many have up-set members still being brought up to
	 * date and how many have fewer acting members than replicas; the
	 * last epoch whose bringing up to date it finished (== epoch: every
	 * PG it leads is clean or degraded, none recovering). */
	uint64_t recovered_epoch;
	uint32_t pgs_recovering;
	uint32_t pgs_degraded;
	uint64_t recovery_bytes;    /* copied to new members (each counted),
	                             * this epoch */
	uint64_t recovery_left;     /* extents left to look at, this epoch */
	uint64_t fua_writes;        /* of writes, those with WF_REQ_FUA */
	uint64_t flushes;           /* FLUSH requests served since start */
};
_Static_assert(sizeof(struct wf_ctl_status) == 160, "ctl status is 160 bytes");

struct wf_ctl_shortcircuit {
	uint32_t magic;
	uint16_t version;
	uint16_t op;                /* WF_CTL_SHORTCIRCUIT */
	int32_t  result;            /* 0, or -errno and no fds attached */
	uint32_t target_id;
	uint64_t cluster_id;
	uint64_t epoch;
	uint64_t data_off;          /* device byte offset of physical extent 0
	                             * (also in the view header) */
	uint32_t extent_size;
	uint32_t reserved;          /* 0 */
};
_Static_assert(sizeof(struct wf_ctl_shortcircuit) == 48,
	       "ctl short-circuit answer is 48 bytes");

/*
 * The same status over a data connection (remote targets): the message
 * WF_OP_STATUS (proto/wire.h), answered with WF_OP_STATUS_REPLY.  A
 * connection may send it before (instead of) its HELLO; it holds no slot.
 * Headers start like every wire header (magic WF_WIRE_MAGIC, version
 * WF_WIRE_VERSION, opcode).
 */
struct wf_net_status_req {
	uint16_t magic;             /* WF_WIRE_MAGIC */
	uint8_t  version;           /* WF_WIRE_VERSION */
	uint8_t  opcode;            /* WF_OP_STATUS */
	uint16_t flags;             /* 0 */
	uint16_t reserved0;         /* 0 */
	uint64_t tag;               /* echoed */
	uint64_t epoch;             /* sender's map epoch, 0 if none (newer
	                             * than the target's: it reloads first) */
	uint64_t reserved1;         /* 0 */
};
_Static_assert(sizeof(struct wf_net_status_req) == 32,
	       "status request is 32 bytes");

struct wf_net_status_reply {
	uint16_t magic;
	uint8_t  version;
	uint8_t  opcode;            /* WF_OP_STATUS_REPLY */
	uint16_t status;            /* enum wf_wire_status */
	uint16_t reserved0;
	uint64_t tag;
	struct wf_ctl_status body;  /* as on the control socket (op STATUS) */
};
_Static_assert(sizeof(struct wf_net_status_reply) == 176,
	       "status reply is 176 bytes");

#endif
