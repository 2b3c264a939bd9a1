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

#include <stddef.h>
#include <stdint.h>

#define WF_CTL_MAGIC    0x4c544357u     /* "WCTL" on the wire */
/*
 * Versions: 2 added the recovery fields of the status; 3 the op
 * VOLUME_USAGE and the request's arg (reserved and 0 before); 4 the op
 * SCRUB, the request's arg2, and fields appended to the status (FUA
 * writes and flushes, scrub, fabric counts, reclaim, etcd); 5 the
 * recovery figures of the log of recent writes and the read lease
 * counters appended to the status; 6 the counters of leases released
 * early appended to the status; 7 the recovery's bytes left to copy
 * appended to the status.  A target
 * takes requests of any version from WF_CTL_VERSION_MIN on and answers in
 * the request's version: a STATUS asked in version 2 or 3 gets the first
 * WF_CTL_STATUS_V2_SIZE bytes of the status (those versions' layout,
 * unchanged), in version 4 the first WF_CTL_STATUS_V4_SIZE, in version 5
 * the first WF_CTL_STATUS_V5_SIZE, in version 6 the first
 * WF_CTL_STATUS_V6_SIZE, in version 7 all of it.  A client
 * sends each op in the lowest version that has what it needs
 * (wf_ctl_req_encode) and accepts answers in that range.  The status over a data connection (below)
 * carries the whole current layout.
 */
#define WF_CTL_VERSION      7u
#define WF_CTL_VERSION_MIN  2u
#define WF_CTL_STATUS_VERSION 7u   /* the status layout's version (data
                                    * connection) */

enum wf_ctl_op {
	WF_CTL_STATUS       = 1,    /* answer: struct wf_ctl_status */
	WF_CTL_SHORTCIRCUIT = 2,    /* answer: struct wf_ctl_shortcircuit plus
	                             * two fds (SCM_RIGHTS): [0] the device,
	                             * read-only, O_DIRECT; [1] the store's
	                             * index memfd (sealed; map it read-only
	                             * with wf_view_open) */
	WF_CTL_RELOAD       = 3,    /* reload the map file; answer:
	                             * struct wf_ctl_status (the new epoch) */
	WF_CTL_VOLUME_USAGE = 4,    /* since 3; arg: a volume id; answer:
	                             * struct wf_ctl_volume_usage */
	WF_CTL_SCRUB        = 5,    /* since 4: start a scrub of the PGs this
	                             * target leads: arg the volume id (0:
	                             * every volume), arg2 WF_CTL_SCRUB_*
	                             * flags; answer: struct wf_ctl_status,
	                             * whose scrub_gen names the pass (result
	                             * -ENOENT: no such volume in its map) */
};

enum {
	WF_CTL_SCRUB_REPAIR = 1u << 0,  /* rewrite differing members from
	                                 * the primary */
};

struct wf_ctl_req {
	uint32_t magic;             /* WF_CTL_MAGIC */
	uint16_t version;           /* WF_CTL_VERSION_MIN .. WF_CTL_VERSION */
	uint16_t op;                /* enum wf_ctl_op */
	uint64_t epoch;             /* sender's map epoch, 0 if none */
	uint64_t arg;               /* VOLUME_USAGE, SCRUB: the volume id;
	                             * else 0 (version 2: reserved, 0) */
	uint64_t arg2;              /* SCRUB: its flags; else 0 (versions 2
	                             * and 3: reserved, 0) */
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
	/* ---- version 4: what follows is answered to version 4 only ---- */
	uint64_t fua_writes;        /* of writes, those with WF_REQ_FUA */
	uint64_t flushes;           /* FLUSH requests served since start */
	/* Scrub (docs/replication.md, "Scrub"): passes asked of this target
	 * and the last one finished (== scrub_gen: none running); the
	 * figures are the current or last pass's. */
	uint32_t scrub_gen;
	uint32_t scrub_done;
	uint64_t scrub_bytes;       /* compared, each member counted */
	uint64_t scrub_mismatches;  /* chunks where a member differed */
	uint64_t scrub_repaired;    /* chunks rewritten at the members */
	uint64_t scrub_errors;      /* chunks that could not be compared or
	                             * repaired (a member unreachable, a
	                             * read error, a map change) */
	/* Fabric operations of every reactor since start, its clients' and
	 * its peer links' (docs/performance.md, "Counts"). */
	uint64_t fab_sends;         /* messages posted */
	uint64_t fab_writes;        /* one-sided writes posted */
	uint64_t fab_reads;         /* one-sided reads posted */
	uint64_t fab_recvs;         /* messages received */
	uint64_t fab_cqes;          /* completions reaped */
	/* The reclaim scan (after every map load): scans finished since
	 * start, and extents dropped by them (deleted volumes' and stray
	 * copies', docs/replication.md). */
	uint32_t reclaim_scans;
	uint32_t etcd;              /* WF_CTL_ETCD_*: the control plane as
	                             * this target sees it */
	uint64_t reclaimed;
	/* ---- version 5 ---- */
	/* Recovery by the log of recent writes (docs/replication.md): of
	 * this epoch's PGs being brought up to date, those sent only the
	 * ranges written while their members were away, and those copied
	 * whole (backfill); since start, such recoveries finished each way
	 * and the bytes each way copied (each member counted).  With
	 * --cores N each reactor counts the PGs of its own extents. */
	uint32_t recovery_log_pgs;
	uint32_t recovery_full_pgs;
	uint64_t recovery_log_total;
	uint64_t recovery_full_total;
	uint64_t recovery_log_bytes;
	uint64_t recovery_full_bytes;
	/* Read leases (docs/replication.md, "Read leases"), since start. */
	uint64_t leases_granted;    /* other targets' asks we granted */
	uint64_t leases_refused;    /* ... we refused (another epoch) */
	uint64_t reads_unleased;    /* reads answered DEGRADED: a member's
	                             * lease was missing or had lapsed */
	uint64_t writes_held;       /* writes held until a lease granted to
	                             * a former primary lapsed */
	uint64_t lease_sends;       /* messages sent for leases and map
	                             * pulls (asks, answers, chunks): of
	                             * fab_sends, those not of requests */
	/* ---- version 6 ---- */
	/* Leases given back early (docs/replication.md, "Early release"),
	 * since start. */
	uint64_t releases_sent;     /* to members, after an epoch in which
	                             * we lead fewer PGs (or none) */
	uint64_t releases_received; /* from former primaries */
	uint64_t holds_released;    /* PG holds a release ended before they
	                             * lapsed (each reactor counts its own) */
	uint64_t writes_released;   /* held writes started by a release,
	                             * before their hold would have lapsed */
	/* ---- version 7 ---- */
	uint64_t recovery_bytes_left;   /* of this epoch's pass, the bytes
	                             * still to copy (each member counted,
	                             * as recovery_bytes): planned when the
	                             * pass starts, less each copy done
	                             * (docs/replication.md, "Progress") */
};

enum {
	WF_CTL_ETCD_OFF = 0,            /* a map file only (no --etcd) */
	WF_CTL_ETCD_OK = 1,             /* registered, watching the map */
	WF_CTL_ETCD_UNREACHABLE = 2,    /* serving the last map; map changes
	                                 * wait */
};
_Static_assert(sizeof(struct wf_ctl_status) == 376, "ctl status is 376 bytes");
/* The status of versions 2 and 3: the fields before fua_writes. */
#define WF_CTL_STATUS_V2_SIZE 144u
_Static_assert(offsetof(struct wf_ctl_status, fua_writes) == WF_CTL_STATUS_V2_SIZE,
	       "the version 4 fields follow the version 2 layout");

/* The status of version 4: the fields before recovery_log_pgs. */
#define WF_CTL_STATUS_V4_SIZE 256u
_Static_assert(offsetof(struct wf_ctl_status, recovery_log_pgs) == WF_CTL_STATUS_V4_SIZE,
	       "the version 5 fields follow the version 4 layout");

/* The status of version 5: the fields before releases_sent. */
#define WF_CTL_STATUS_V5_SIZE 336u
_Static_assert(offsetof(struct wf_ctl_status, releases_sent) == WF_CTL_STATUS_V5_SIZE,
	       "the version 6 fields follow the version 5 layout");

/* The status of version 6: the fields before recovery_bytes_left. */
#define WF_CTL_STATUS_V6_SIZE 368u
_Static_assert(offsetof(struct wf_ctl_status, recovery_bytes_left) == WF_CTL_STATUS_V6_SIZE,
	       "the version 7 fields follow the version 6 layout");

/* The bytes of a status answered in version ver. */
static inline size_t wf_ctl_status_size(uint16_t ver)
{
	return ver >= 7 ? sizeof(struct wf_ctl_status) :
	       ver == 6 ? WF_CTL_STATUS_V6_SIZE :
	       ver == 5 ? WF_CTL_STATUS_V5_SIZE :
	       ver == 4 ? WF_CTL_STATUS_V4_SIZE : WF_CTL_STATUS_V2_SIZE;
}

/* How much of one volume this target holds (a scan of its index: the
 * count may change right after; extents of a deleted volume not yet
 * reclaimed still count). */
struct wf_ctl_volume_usage {
	uint32_t magic;
	uint16_t version;
	uint16_t op;                /* WF_CTL_VOLUME_USAGE */
	int32_t  result;            /* 0 or -errno */
	uint32_t target_id;
	uint64_t cluster_id;
	uint64_t epoch;             /* the map epoch the target serves */
	uint64_t volume_id;         /* the request's arg */
	uint64_t extents;           /* extents of the volume allocated here
	                             * (every replica this target holds) */
	uint32_t extent_size;
	uint32_t reserved;          /* 0 */
};
_Static_assert(sizeof(struct wf_ctl_volume_usage) == 56,
	       "ctl volume usage answer is 56 bytes");

/*
 * Decoders, for both ends.  wf_ctl_req_decode: a request packet of n
 * bytes; 0 and *q in host byte order, or -EPROTO (wrong size, magic,
 * version outside WF_CTL_VERSION_MIN .. WF_CTL_VERSION, an arg on an op
 * that takes none or in a version before the op's, an arg2 on any op but
 * SCRUB).  The op itself
 * is not judged (an unknown op gets an answer with -EPROTO).
 * wf_ctl_answer_check: the first 8 bytes of any answer of n bytes to a
 * request of op: 0 when magic, version and op fit and n == want, else
 * -EPROTO.
 */
int wf_ctl_req_decode(const void *buf, size_t n, struct wf_ctl_req *q);
int wf_ctl_answer_check(const void *buf, size_t n, size_t want, uint16_t op);
/* A request in wire order, in the lowest version that has op (a target
 * of an older version still takes the ops it knows); _v: in version ver
 * (a STATUS in 4 gets the fields of version 4), with arg2. */
void wf_ctl_req_encode(struct wf_ctl_req *q, uint16_t op, uint64_t epoch,
		       uint64_t arg);
void wf_ctl_req_encode_v(struct wf_ctl_req *q, uint16_t ver, uint16_t op,
			 uint64_t epoch, uint64_t arg, uint64_t arg2);
/* The lowest version that has op. */
uint16_t wf_ctl_op_version(uint16_t op);

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
_Static_assert(sizeof(struct wf_net_status_reply) == 392,
	       "status reply is 392 bytes");
/* The reply of a target of version 6 (its body WF_CTL_STATUS_V6_SIZE). */
#define WF_NET_STATUS_REPLY_V6_SIZE 384u

/*
 * A map pushed over a data connection (weftctl, to the targets it cannot
 * reach through a control socket: other hosts): WF_OP_MAP_PUT messages,
 * each this header and then up to WF_MAP_PUT_CHUNK bytes of the map's
 * text, in order of offset, on one connection (before or instead of a
 * HELLO).  After the last chunk the target answers WF_OP_STATUS_REPLY:
 * status OK (saved as its map file and loaded; body.epoch), STALE (not
 * newer than the map it serves), INVALID|DNR (does not parse, another
 * cluster's, a chunk out of order), IO (its map file could not be
 * written).  Only a map of the same cluster and a newer epoch replaces
 * the target's.
 */
#define WF_MAP_PUT_CHUNK 480u           /* 512-byte messages */
#define WF_MAP_PUT_MAX   (64u << 20)    /* as a map file (placement) */

struct wf_net_map_put {
	uint16_t magic;             /* WF_WIRE_MAGIC */
	uint8_t  version;           /* WF_WIRE_VERSION */
	uint8_t  opcode;            /* WF_OP_MAP_PUT */
	uint16_t flags;             /* 0 */
	uint16_t reserved0;         /* 0 */
	uint64_t tag;               /* echoed in the answer */
	uint64_t epoch;             /* the pushed map's epoch */
	uint32_t total;             /* bytes of the whole text, 1 .. MAX */
	uint32_t offset;            /* of this chunk: the bytes before it */
};
_Static_assert(sizeof(struct wf_net_map_put) == 32, "map put header is 32 bytes");

/*
 * Read leases between targets (docs/replication.md, "Read leases"): a
 * primary asks each member of the PGs it leads to confirm its epoch with a
 * WF_OP_LEASE on its link to that member; the member answers with a
 * WF_OP_LEASE that has WF_LEASE_ANSWER set, on the same connection:
 *
 *   OK      granted: same epoch; it records when, and for that long it will
 *           not take writes to a PG the asker leaves in a newer epoch
 *   STALE   its epoch (the answer's epoch) is newer: the asker pulls that
 *           map from it (WF_OP_MAP_GET)
 *   BUSY    its epoch is older (it could not load the asker's), or it is
 *           stopping: nothing granted, asked again later
 *
 * A release (flags WF_LEASE_RELEASE, status 0, lease_ms 0, no answer): the
 * asker, whose every reactor now serves `epoch` and whose short-circuit
 * view no longer shows an older epoch's lease, gives up every lease the
 * member granted it in an epoch older than `epoch`; the member ends the
 * holds those leases caused (never one of a grant in `epoch` or later).
 * Sent only to a member whose GRANT has WF_FEAT_RELEASE (proto/wire.h).
 */
#define WF_LEASE_ANSWER  1u             /* flags: this is the answer */
#define WF_LEASE_RELEASE 2u             /* flags: a release (see above) */
#define WF_LEASE_MAX_MS  60000u         /* longest lease a target asks for */

struct wf_net_lease {
	uint16_t magic;             /* WF_WIRE_MAGIC */
	uint8_t  version;           /* WF_WIRE_VERSION */
	uint8_t  opcode;            /* WF_OP_LEASE */
	uint16_t flags;             /* 0 (ask), WF_LEASE_ANSWER or
	                             * WF_LEASE_RELEASE */
	uint16_t status;            /* ask, release: 0; answer: OK, STALE or
	                             * BUSY */
	uint64_t tag;               /* the asker's, echoed in the answer */
	uint64_t epoch;             /* the sender's map epoch (nonzero) */
	uint32_t target_id;         /* the sender's target id */
	uint32_t lease_ms;          /* ask: the lease asked for, 1 ..
	                             * WF_LEASE_MAX_MS; answer: as asked (OK)
	                             * or 0; release: 0 */
};
_Static_assert(sizeof(struct wf_net_lease) == 32, "lease message is 32 bytes");

/* A target pulling the map of a peer that has a newer one: one chunk per
 * WF_OP_MAP_GET, answered by a WF_OP_MAP_PUT chunk (struct wf_net_map_put
 * and up to WF_MAP_PUT_CHUNK bytes: tag echoed, epoch of the text, total,
 * offset as asked).  total 0 and no bytes: nothing to give (no map file,
 * offset beyond it).  A chunk at offset 0 takes a fresh copy of the
 * text; the later ones come from that copy, so they belong together. */
struct wf_net_map_get {
	uint16_t magic;             /* WF_WIRE_MAGIC */
	uint8_t  version;           /* WF_WIRE_VERSION */
	uint8_t  opcode;            /* WF_OP_MAP_GET */
	uint16_t flags;             /* 0 */
	uint16_t reserved0;         /* 0 */
	uint64_t tag;               /* echoed in the chunk */
	uint64_t epoch;             /* the asker's map epoch (nonzero) */
	uint32_t offset;            /* of the chunk wanted */
	uint32_t reserved1;         /* 0 */
};
_Static_assert(sizeof(struct wf_net_map_get) == 32, "map get is 32 bytes");

/* Host-order views. */
struct wf_lease {
	uint16_t flags, status;
	uint64_t tag, epoch;
	uint32_t target_id, lease_ms;
};

struct wf_map_get {
	uint64_t tag, epoch;
	uint32_t offset;
};

struct wf_map_chunk {
	uint64_t tag, epoch;
	uint32_t total, offset, len;    /* len bytes at data */
	const void *data;               /* into the decoded buffer */
};

/*
 * Encoders fill the wire image; decoders check every field of len
 * received bytes and return 0 or -EPROTO (a broken peer: close the link).
 * A lease ask has status 0, a nonzero epoch and 1 .. WF_LEASE_MAX_MS; an
 * answer OK, STALE or BUSY, and lease_ms 0 unless OK; a release status 0
 * and lease_ms 0 (never with WF_LEASE_ANSWER).  A chunk has at
 * most WF_MAP_PUT_CHUNK bytes, total <= WF_MAP_PUT_MAX, and its bytes
 * inside total (total 0: none).
 */
void wf_lease_encode(const struct wf_lease *l, struct wf_net_lease *w);
int  wf_lease_decode(const void *buf, size_t len, struct wf_lease *out);
void wf_map_get_encode(const struct wf_map_get *g, struct wf_net_map_get *w);
int  wf_map_get_decode(const void *buf, size_t len, struct wf_map_get *out);
/* The header of a chunk; its bytes follow in the same message. */
void wf_map_chunk_encode(const struct wf_map_chunk *c, struct wf_net_map_put *w);
int  wf_map_chunk_decode(const void *buf, size_t len, struct wf_map_chunk *out);

#endif
