/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft's wire protocol: the headers the initiator and the targets exchange
 * over any fabric backend (see docs/protocol.md).  Part of proto/, what
 * target and initiator share: it depends on nothing of ours (not even the
 * fabric: a peer's buffer is three numbers here, struct wf_wire_buf, which
 * the user converts to and from the fabric's struct wf_rkey).
 *
 * Every struct here is the exact wire image: fixed size (_Static_assert),
 * all integers little-endian.  Never read a field of a received header
 * directly: run the matching wf_*_decode() first, which converts to host
 * order into a separate host struct and checks every field; it returns 0,
 * -EPROTO (not a weft header at all, or a version/reserved-field violation:
 * the peer is broken, close the connection if it persists) or -EINVAL
 * (well-formed, but not acceptable here: answer with an error reply), and
 * sets *reason to a WF_WR_* code saying which check failed.
 *
 * Versioning: each header starts with magic, version, opcode.  A receiver
 * accepts exactly WF_WIRE_VERSION; a new version bumps it and both sides
 * negotiate in HELLO/GRANT.
 */
#ifndef WEFT_PROTO_WIRE_H
#define WEFT_PROTO_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WF_WIRE_MAGIC   0x5746u         /* "FW" on the wire: 46 57 */
#define WF_WIRE_VERSION 1u

enum wf_wire_op {
	WF_OP_READ    = 1,      /* read length bytes into the initiator's buf */
	WF_OP_WRITE   = 2,      /* payload already placed in the slot */
	WF_OP_FLUSH   = 3,      /* make every acknowledged write durable */
	WF_OP_DISCARD = 4,      /* free the range; reads return zeros */
	WF_OP_HELLO   = 5,      /* initiator -> target at connect */
	WF_OP_GRANT   = 6,      /* target -> initiator: connect grant with
	                         * the staging ring (struct wf_grant_hdr) */
	WF_OP_REPLY   = 7,      /* answer to any request (struct wf_reply_hdr) */
	WF_OP_STATUS  = 8,      /* -> target: status query, allowed before the
	                         * HELLO (struct wf_net_status_req in
	                         * proto/ctl.h) */
	WF_OP_STATUS_REPLY = 9, /* target ->: its answer (struct
	                         * wf_net_status_reply, proto/ctl.h) */
	WF_OP_CSUM    = 10,     /* target-to-target (WF_REQ_REPL, scrub): the
	                         * CRC32C of length bytes in the reply's
	                         * data_crc; no data moves (no buf) */
	WF_OP_MAP_PUT = 11,     /* -> target: a chunk of a newer map's text,
	                         * allowed before the HELLO (struct
	                         * wf_net_map_put in proto/ctl.h); answered
	                         * after the last with WF_OP_STATUS_REPLY */
	WF_OP_AUTH    = 12,     /* either way, before anything else: the
	                         * authentication at connect (struct
	                         * wf_auth_hdr in proto/auth.h) */
	WF_OP_LEASE   = 13,     /* target -> target on a live link: confirm
	                         * my epoch (a read lease), and its answer
	                         * (struct wf_net_lease in proto/ctl.h) */
	WF_OP_MAP_GET = 14,     /* target -> target on a live link: send me
	                         * a chunk of your map's text (struct
	                         * wf_net_map_get in proto/ctl.h); answered
	                         * with one WF_OP_MAP_PUT chunk */
	WF_OP_MAX
};

/* The ops that travel in a struct wf_req_hdr. */
static inline int wf_wire_op_is_req(int op)
{
	return (op >= WF_OP_READ && op <= WF_OP_DISCARD) || op == WF_OP_CSUM;
}

/* Request flags. */
enum {
	WF_REQ_FUA  = 1u << 0,  /* write (or discard): durable before the reply,
	                         * even with a volatile device cache */
	WF_REQ_CRC  = 1u << 1,  /* data_crc holds the CRC32C of the payload
	                         * (write) or is asked for in the reply (read) */
	WF_REQ_REPL = 1u << 2,  /* target-to-target: a replica write forwarded
	                         * by the primary (do not forward again), or
	                         * its CSUM (required there) */
	WF_REQ_FLAGS_ALL = WF_REQ_FUA | WF_REQ_CRC | WF_REQ_REPL,
};

/* A peer's registered buffer, as the fabric names it (its struct wf_rkey:
 * opaque address, key, length). */
struct wf_wire_ref {
	uint64_t addr;
	uint32_t key;
	uint32_t len;
};
_Static_assert(sizeof(struct wf_wire_ref) == 16, "wire buffer ref is 16 bytes");

/* The same in host order. */
struct wf_wire_buf {
	uint64_t addr;
	uint32_t key;
	uint32_t len;
};

/* Copy a buffer reference between a struct wf_wire_buf and the fabric's
 * struct wf_rkey (any struct with addr, key and len): the two modules do
 * not know each other; their user does. */
#define WF_BUF_COPY(dst, src) \
	((dst).addr = (src).addr, (dst).key = (src).key, (dst).len = (src).len)

/*
 * Request header: every READ, WRITE, FLUSH, DISCARD (and CSUM between
 * targets), sent as a message
 * (wf_send).  Each request holds one staging slot of the connection's ring
 * (hdr.slot) from send until its REPLY.  WRITE: the initiator first places
 * the payload at the start of the slot with a plain one-sided write
 * (wf_write), then sends the header on the same endpoint, so the payload is
 * in place when the header arrives.  READ: the target reads into the slot,
 * writes the data into the initiator's registered buffer (buf), then
 * replies.  Slot payloads start 4 KiB aligned, ready for O_DIRECT.
 */
struct wf_req_hdr {
	uint16_t magic;         /* WF_WIRE_MAGIC */
	uint8_t  version;       /* WF_WIRE_VERSION */
	uint8_t  opcode;        /* enum wf_wire_op: READ..DISCARD */
	uint16_t flags;         /* WF_REQ_* */
	uint16_t reserved0;     /* 0 */
	uint64_t tag;           /* initiator's request id, echoed in the reply */
	uint64_t volume;        /* volume id (nonzero) */
	uint64_t offset;        /* bytes into the volume */
	uint64_t epoch;         /* sender's cluster map epoch (nonzero) */
	uint32_t length;        /* bytes (FLUSH: 0) */
	uint32_t slot;          /* staging slot this request holds */
	uint32_t data_crc;      /* CRC32C of the payload if WF_REQ_CRC */
	uint32_t buf_key;       /* READ: initiator buffer's key; else 0 */
	uint64_t buf_addr;      /* READ: initiator buffer's address; else 0 */
};
_Static_assert(sizeof(struct wf_req_hdr) == 64, "request header is 64 bytes");
#define WF_REQ_HDR_LEN 64u

/* Wire status: separate from errno, stable across platforms. */
enum wf_wire_status {
	WF_WS_OK       = 0,
	WF_WS_INVALID  = 1,     /* malformed or unacceptable request */
	WF_WS_NOVOL    = 2,     /* unknown volume */
	WF_WS_RANGE    = 3,     /* beyond the end of the volume */
	WF_WS_STALE    = 4,     /* sender's epoch is older: fetch the map
	                         * (reply.epoch says which) and retry */
	WF_WS_NOTPRIM  = 5,     /* not the primary of that PG in this epoch */
	WF_WS_IO       = 6,     /* device error */
	WF_WS_NOSPC    = 7,     /* out of space */
	WF_WS_BUSY     = 8,     /* transient: retry later */
	WF_WS_CRC      = 9,     /* payload CRC mismatch: resend */
	WF_WS_DEGRADED = 10,    /* fewer than min_size replicas up */
	WF_WS_ACCESS   = 11,    /* not allowed */
	WF_WS_AUTH     = 12,    /* authentication failed or missing: no key
	                         * offered where one is required, a key the
	                         * target does not know or that is revoked,
	                         * a wrong proof (docs/security.md) */
	WF_WS_QUOTA    = 13,    /* in a GRANT: the connection's key holds
	                         * all the connections or staging slots its
	                         * limits give it on that target */
	WF_WS_MAX,
	/* Do-not-retry bit: set when retrying the same request cannot succeed
	 * (nvmet's DNR); the initiator then fails it at once. */
	WF_WS_DNR      = 0x8000,
};

/* Reply header: the answer to a request; the staging slot's credit returns
 * with it. */
struct wf_reply_hdr {
	uint16_t magic;         /* WF_WIRE_MAGIC */
	uint8_t  version;       /* WF_WIRE_VERSION */
	uint8_t  opcode;        /* WF_OP_REPLY */
	uint16_t status;        /* enum wf_wire_status, maybe | WF_WS_DNR */
	uint16_t reserved0;     /* 0 */
	uint64_t tag;           /* the request's tag */
	uint64_t epoch;         /* replier's map epoch */
	uint32_t length;        /* bytes done (READ: written into buf) */
	uint32_t data_crc;      /* READ with WF_REQ_CRC, CSUM: CRC32C of the
	                         * data */
	uint32_t slot;          /* the request's slot, now free again */
	uint32_t reserved1;     /* 0 */
};
_Static_assert(sizeof(struct wf_reply_hdr) == 40, "reply header is 40 bytes");

/* Initiator -> target at connect: who I am, what I want. */
struct wf_hello_hdr {
	uint16_t magic;
	uint8_t  version;
	uint8_t  opcode;        /* WF_OP_HELLO */
	uint16_t flags;         /* 0 */
	uint16_t reserved0;     /* 0 */
	uint64_t client_id;     /* nonzero */
	uint64_t epoch;         /* sender's map epoch (nonzero) */
	uint32_t want_slots;    /* staging slots asked for (>= 1) */
	uint32_t max_io;        /* largest request payload it will send */
};
_Static_assert(sizeof(struct wf_hello_hdr) == 32, "hello header is 32 bytes");

/* Target -> initiator: the connect grant, describing the staging ring the
 * initiator may write requests into (its credits). */
struct wf_grant_hdr {
	uint16_t magic;
	uint8_t  version;
	uint8_t  opcode;        /* WF_OP_GRANT */
	uint16_t status;        /* WF_WS_OK, or why the connection is refused */
	uint16_t features;      /* WF_FEAT_*: only to a link whose HELLO's
	                         * client id has WF_LINK_FEATURES (older
	                         * receivers take only 0 here: it was
	                         * reserved) */
	uint64_t epoch;         /* target's map epoch */
	uint32_t target_id;
	uint32_t slot_count;    /* credits: slots 0..slot_count-1 */
	uint32_t slot_size;     /* payload bytes per slot */
	uint32_t reactors;      /* the target's reactors, 2..WF_WIRE_MAX_REACTORS;
	                         * 0 (was reserved) means one.  Reactor k
	                         * listens on the target's port + k (unix: the
	                         * socket path + ".k"); the initiator sends
	                         * each extent's requests to reactor
	                         * wf_extent_reactor(volume, extent, reactors)
	                         * (proto/view.h)
	                         * (docs/protocol.md, "Reactors") */
	struct wf_wire_ref ring;  /* the ring: slot i at ring.addr + i*slot_size */
};
_Static_assert(sizeof(struct wf_grant_hdr) == 48, "grant header is 48 bytes");
#define WF_WIRE_MAX_REACTORS 256u

/*
 * What a target understands of the messages between targets, told in the
 * GRANT of another target's link (docs/protocol.md, "Builds on a link").
 * A link's client id has the top bit (WF_LINK_ID); with WF_LINK_FEATURES
 * too (and bit 0 clear), the asker reads the GRANT's features word, so a
 * target of a build without it (which refuses a GRANT whose word is not
 * 0) is never sent one, and one that never sets it is a target of an
 * older build: features 0, so no LEASE, MAP_GET or release is sent to it.
 * Bit 62, not bit 0: libweft's client ids are random with bit 0 set, so
 * half of them have the top bit too, and an older libweft refuses a
 * nonzero word; a link id always had bits 48 to 62 and bit 0 clear.
 */
#define WF_LINK_ID          (1ull << 63)
#define WF_LINK_FEATURES    (1ull << 62)
/* Whether a HELLO's client id is a link of a build that reads features. */
#define WF_LINK_READS_FEATURES(id) \
	(((id) & (WF_LINK_ID | WF_LINK_FEATURES | 1ull)) == \
	 (WF_LINK_ID | WF_LINK_FEATURES))
enum {
	WF_FEAT_LEASE   = 1u << 0,      /* WF_OP_LEASE asks, WF_OP_MAP_GET */
	WF_FEAT_RELEASE = 1u << 1,      /* WF_OP_LEASE with WF_LEASE_RELEASE */
};

/* Why a decode failed (for logs and tests). */
enum wf_wire_reason {
	WF_WR_OK = 0,
	WF_WR_SHORT,            /* fewer bytes than the header */
	WF_WR_MAGIC,
	WF_WR_VERSION,
	WF_WR_OPCODE,           /* unknown, or not allowed in this header */
	WF_WR_FLAGS,            /* unknown bit, or not allowed with this op */
	WF_WR_RESERVED,         /* a reserved field is not 0 */
	WF_WR_VOLUME,
	WF_WR_EPOCH,
	WF_WR_LENGTH,           /* zero where data is needed, or too long */
	WF_WR_ALIGN,            /* offset or length not block-aligned */
	WF_WR_OVERFLOW,         /* offset + length wraps */
	WF_WR_SLOT,             /* slot index out of the ring */
	WF_WR_SLOT_SIZE,        /* read or write payload larger than a slot */
	WF_WR_BUF,              /* READ without a buffer, or one too small */
	WF_WR_FIELD,            /* a field that must be 0 for this op is not */
	WF_WR_STATUS,           /* unknown status code */
	WF_WR_GEOMETRY,         /* ring size != slot_count * slot_size, ... */
	WF_WR_MAX
};

/* What a receiver accepts; callers fill it from their configuration. */
struct wf_req_limits {
	uint32_t block_size;    /* offsets and lengths are multiples (power of 2) */
	uint32_t max_io;        /* largest length of one request */
	uint32_t slot_count;    /* staging ring of this connection */
	uint32_t slot_size;     /* payload bytes per slot */
};

/* Host-order views (what the decoders produce and the encoders take). */
struct wf_req {
	uint8_t  opcode;
	uint16_t flags;
	uint64_t tag, volume, offset, epoch;
	uint32_t length, slot, data_crc;
	struct wf_wire_buf buf; /* READ: addr, key, len = length */
};

struct wf_reply {
	uint16_t status;
	uint64_t tag, epoch;
	uint32_t length, data_crc, slot;
};

struct wf_hello {
	uint64_t client_id, epoch;
	uint32_t want_slots, max_io;
};

struct wf_grant {
	uint16_t status;
	uint16_t features;      /* WF_FEAT_* (0 from an older build) */
	uint64_t epoch;
	uint32_t target_id, slot_count, slot_size;
	uint32_t reactors;      /* 0 or 1: one */
	struct wf_wire_buf ring;
};

/* Encoders fill the wire image (no checks: senders build valid ones). */
void wf_req_encode(const struct wf_req *r, struct wf_req_hdr *h);
void wf_reply_encode(const struct wf_reply *r, struct wf_reply_hdr *h);
void wf_hello_encode(const struct wf_hello *r, struct wf_hello_hdr *h);
void wf_grant_encode(const struct wf_grant *r, struct wf_grant_hdr *h);

/*
 * Decoders: buf holds len received bytes (any alignment).  They check
 * every field and return 0, -EPROTO or -EINVAL (see top), with *reason set
 * (reason may be NULL).  wf_req_decode checks against lim: every
 * request's slot must be < slot_count, and a READ's or WRITE's length
 * <= slot_size.
 */
int wf_req_decode(const void *buf, size_t len, const struct wf_req_limits *lim,
		  struct wf_req *out, uint32_t *reason);
int wf_reply_decode(const void *buf, size_t len, struct wf_reply *out,
		    uint32_t *reason);
int wf_hello_decode(const void *buf, size_t len, struct wf_hello *out,
		    uint32_t *reason);
int wf_grant_decode(const void *buf, size_t len, struct wf_grant *out,
		    uint32_t *reason);

/* The opcode of a received header, after checking magic and version only
 * (to pick the decoder); -EPROTO if it is not a weft header. */
int wf_wire_peek(const void *buf, size_t len, uint32_t *reason);

/* Wire status <-> errno, and names for logs. */
int         wf_wire_status_errno(uint16_t status);   /* 0 or -errno */
uint16_t    wf_wire_status_from_errno(int err);      /* err: 0 or -errno */
const char *wf_wire_status_name(uint16_t status);
const char *wf_wire_reason_name(uint32_t reason);

/* CRC32C (Castagnoli, as iSCSI/NVMe use), chainable: pass the previous
 * result as crc, 0 to start. */
uint32_t wf_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
