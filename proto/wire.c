/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Wire headers: little-endian encoding and the validating decoders.  The
 * decoders copy the bytes out first (received buffers may be unaligned and
 * may change under us in registered memory), then check every field, and
 * only then fill the caller's host struct.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include <isa-l/crc.h>

#include "proto/wire.h"

uint32_t wf_crc32c(uint32_t crc, const void *buf, size_t len)
{
	/* ISA-L works on the raw register; the standard CRC32C inverts it
	 * at both ends, which also makes results chainable. */
	return crc32_iscsi((unsigned char *)(uintptr_t)buf, (int)len, ~crc) ^ 0xffffffffu;
}

static void ref_encode(const struct wf_wire_buf *k, struct wf_wire_ref *w)
{
	w->addr = htole64(k->addr);
	w->key = htole32(k->key);
	w->len = htole32(k->len);
}

static void ref_decode(const struct wf_wire_ref *w, struct wf_wire_buf *k)
{
	k->addr = le64toh(w->addr);
	k->key = le32toh(w->key);
	k->len = le32toh(w->len);
}

static void head_encode(uint16_t *magic, uint8_t *version, uint8_t *opcode,
			uint8_t op)
{
	*magic = htole16(WF_WIRE_MAGIC);
	*version = WF_WIRE_VERSION;
	*opcode = op;
}

void wf_req_encode(const struct wf_req *r, struct wf_req_hdr *h)
{
	memset(h, 0, sizeof(*h));
	head_encode(&h->magic, &h->version, &h->opcode, r->opcode);
	h->flags = htole16(r->flags);
	h->tag = htole64(r->tag);
	h->volume = htole64(r->volume);
	h->offset = htole64(r->offset);
	h->epoch = htole64(r->epoch);
	h->length = htole32(r->length);
	h->slot = htole32(r->slot);
	h->data_crc = htole32(r->data_crc);
	if (r->opcode == WF_OP_READ) {
		h->buf_key = htole32(r->buf.key);
		h->buf_addr = htole64(r->buf.addr);
	}
}

void wf_reply_encode(const struct wf_reply *r, struct wf_reply_hdr *h)
{
	memset(h, 0, sizeof(*h));
	head_encode(&h->magic, &h->version, &h->opcode, WF_OP_REPLY);
	h->status = htole16(r->status);
	h->tag = htole64(r->tag);
	h->epoch = htole64(r->epoch);
	h->length = htole32(r->length);
	h->data_crc = htole32(r->data_crc);
	h->slot = htole32(r->slot);
}

void wf_hello_encode(const struct wf_hello *r, struct wf_hello_hdr *h)
{
	memset(h, 0, sizeof(*h));
	head_encode(&h->magic, &h->version, &h->opcode, WF_OP_HELLO);
	h->client_id = htole64(r->client_id);
	h->epoch = htole64(r->epoch);
	h->want_slots = htole32(r->want_slots);
	h->max_io = htole32(r->max_io);
}

void wf_grant_encode(const struct wf_grant *r, struct wf_grant_hdr *h)
{
	memset(h, 0, sizeof(*h));
	head_encode(&h->magic, &h->version, &h->opcode, WF_OP_GRANT);
	h->status = htole16(r->status);
	h->features = htole16(r->features);
	h->epoch = htole64(r->epoch);
	h->target_id = htole32(r->target_id);
	h->slot_count = htole32(r->slot_count);
	h->slot_size = htole32(r->slot_size);
	/* One reactor stays 0 on the wire, as before the field existed. */
	h->reactors = htole32(r->reactors > 1 ? r->reactors : 0);
	ref_encode(&r->ring, &h->ring);
}

static int fail(uint32_t *reason, uint32_t why, int err)
{
	if (reason)
		*reason = why;
	return err;
}

/* The three leading fields every header shares. */
static int head_check(const void *buf, size_t len, size_t need, uint32_t *reason,
		      uint8_t *opcode)
{
	const unsigned char *b = buf;
	uint16_t magic;

	if (!buf || len < 4)
		return fail(reason, WF_WR_SHORT, -EPROTO);
	magic = (uint16_t)(b[0] | b[1] << 8);
	if (magic != WF_WIRE_MAGIC)
		return fail(reason, WF_WR_MAGIC, -EPROTO);
	if (b[2] != WF_WIRE_VERSION)
		return fail(reason, WF_WR_VERSION, -EPROTO);
	if (!b[3] || b[3] >= WF_OP_MAX)
		return fail(reason, WF_WR_OPCODE, -EPROTO);
	if (len < need)
		return fail(reason, WF_WR_SHORT, -EPROTO);
	*opcode = b[3];
	return 0;
}

int wf_wire_peek(const void *buf, size_t len, uint32_t *reason)
{
	uint8_t op;
	int ret = head_check(buf, len, 4, reason, &op);

	if (ret)
		return ret;
	if (reason)
		*reason = WF_WR_OK;
	return op;
}

static int is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

int wf_req_decode(const void *buf, size_t len, const struct wf_req_limits *lim,
		  struct wf_req *out, uint32_t *reason)
{
	struct wf_req_hdr h;
	struct wf_req r;
	uint8_t op;
	int ret;

	ret = head_check(buf, len, sizeof(h), reason, &op);
	if (ret)
		return ret;
	memcpy(&h, buf, sizeof(h));
	if (!wf_wire_op_is_req(op))
		return fail(reason, WF_WR_OPCODE, -EPROTO);
	memset(&r, 0, sizeof(r));
	r.opcode = op;
	r.flags = le16toh(h.flags);
	r.tag = le64toh(h.tag);
	r.volume = le64toh(h.volume);
	r.offset = le64toh(h.offset);
	r.epoch = le64toh(h.epoch);
	r.length = le32toh(h.length);
	r.slot = le32toh(h.slot);
	r.data_crc = le32toh(h.data_crc);
	r.buf.key = le32toh(h.buf_key);
	r.buf.addr = le64toh(h.buf_addr);
	r.buf.len = r.length;

	if (h.reserved0)
		return fail(reason, WF_WR_RESERVED, -EPROTO);
	if (r.flags & ~(uint32_t)WF_REQ_FLAGS_ALL)
		return fail(reason, WF_WR_FLAGS, -EPROTO);
	if (!lim || !is_pow2(lim->block_size))
		return fail(reason, WF_WR_GEOMETRY, -EINVAL);
	if (!r.volume)
		return fail(reason, WF_WR_VOLUME, -EINVAL);
	if (!r.epoch)
		return fail(reason, WF_WR_EPOCH, -EINVAL);
	/* FUA means something only where data is made durable. */
	if ((r.flags & WF_REQ_FUA) && op != WF_OP_WRITE && op != WF_OP_DISCARD)
		return fail(reason, WF_WR_FLAGS, -EINVAL);
	if ((r.flags & WF_REQ_CRC) && op != WF_OP_WRITE && op != WF_OP_READ)
		return fail(reason, WF_WR_FLAGS, -EINVAL);
	/* Only writes and discards are forwarded to replicas; a CSUM is
	 * only asked of one (and carries no CRC of its own). */
	if ((r.flags & WF_REQ_REPL) && op != WF_OP_WRITE && op != WF_OP_DISCARD &&
	    op != WF_OP_CSUM)
		return fail(reason, WF_WR_FLAGS, -EINVAL);
	if (op == WF_OP_CSUM && r.flags != WF_REQ_REPL)
		return fail(reason, WF_WR_FLAGS, -EINVAL);
	if (op != WF_OP_READ && (r.buf.key || r.buf.addr))
		return fail(reason, WF_WR_FIELD, -EINVAL);
	/* Every request holds one staging slot credit until its reply. */
	if (r.slot >= lim->slot_count)
		return fail(reason, WF_WR_SLOT, -EINVAL);
	if (!(r.flags & WF_REQ_CRC) && r.data_crc)
		return fail(reason, WF_WR_FIELD, -EINVAL);

	if (op == WF_OP_FLUSH) {
		if (r.length || r.offset)
			return fail(reason, WF_WR_LENGTH, -EINVAL);
		goto ok;
	}
	if (!r.length || r.length > lim->max_io)
		return fail(reason, WF_WR_LENGTH, -EINVAL);
	if ((r.offset | r.length) & (lim->block_size - 1))
		return fail(reason, WF_WR_ALIGN, -EINVAL);
	if (r.offset > UINT64_MAX - r.length)
		return fail(reason, WF_WR_OVERFLOW, -EINVAL);
	/* Reads and writes pass through the slot (payload at its start), a
	 * CSUM's data too. */
	if ((op == WF_OP_WRITE || op == WF_OP_READ || op == WF_OP_CSUM) &&
	    r.length > lim->slot_size)
		return fail(reason, WF_WR_SLOT_SIZE, -EINVAL);
	if (op == WF_OP_READ && !r.buf.key)
		return fail(reason, WF_WR_BUF, -EINVAL);
ok:
	if (out)
		*out = r;
	if (reason)
		*reason = WF_WR_OK;
	return 0;
}

int wf_reply_decode(const void *buf, size_t len, struct wf_reply *out,
		    uint32_t *reason)
{
	struct wf_reply_hdr h;
	struct wf_reply r;
	uint8_t op;
	int ret;

	ret = head_check(buf, len, sizeof(h), reason, &op);
	if (ret)
		return ret;
	if (op != WF_OP_REPLY)
		return fail(reason, WF_WR_OPCODE, -EPROTO);
	memcpy(&h, buf, sizeof(h));
	if (h.reserved0 || h.reserved1)
		return fail(reason, WF_WR_RESERVED, -EPROTO);
	r.status = le16toh(h.status);
	r.tag = le64toh(h.tag);
	r.epoch = le64toh(h.epoch);
	r.length = le32toh(h.length);
	r.data_crc = le32toh(h.data_crc);
	r.slot = le32toh(h.slot);
	if ((r.status & ~(uint32_t)WF_WS_DNR) >= WF_WS_MAX)
		return fail(reason, WF_WR_STATUS, -EPROTO);
	if (r.status == WF_WS_DNR)      /* "success, do not retry" is nonsense */
		return fail(reason, WF_WR_STATUS, -EPROTO);
	if (!r.epoch)
		return fail(reason, WF_WR_EPOCH, -EINVAL);
	if (out)
		*out = r;
	if (reason)
		*reason = WF_WR_OK;
	return 0;
}

int wf_hello_decode(const void *buf, size_t len, struct wf_hello *out,
		    uint32_t *reason)
{
	struct wf_hello_hdr h;
	struct wf_hello r;
	uint8_t op;
	int ret;

	ret = head_check(buf, len, sizeof(h), reason, &op);
	if (ret)
		return ret;
	if (op != WF_OP_HELLO)
		return fail(reason, WF_WR_OPCODE, -EPROTO);
	memcpy(&h, buf, sizeof(h));
	if (h.flags)
		return fail(reason, WF_WR_FLAGS, -EPROTO);
	if (h.reserved0)
		return fail(reason, WF_WR_RESERVED, -EPROTO);
	r.client_id = le64toh(h.client_id);
	r.epoch = le64toh(h.epoch);
	r.want_slots = le32toh(h.want_slots);
	r.max_io = le32toh(h.max_io);
	if (!r.client_id)
		return fail(reason, WF_WR_FIELD, -EINVAL);
	if (!r.epoch)
		return fail(reason, WF_WR_EPOCH, -EINVAL);
	if (!r.want_slots)
		return fail(reason, WF_WR_SLOT, -EINVAL);
	if (!r.max_io)
		return fail(reason, WF_WR_LENGTH, -EINVAL);
	if (out)
		*out = r;
	if (reason)
		*reason = WF_WR_OK;
	return 0;
}

int wf_grant_decode(const void *buf, size_t len, struct wf_grant *out,
		    uint32_t *reason)
{
	struct wf_grant_hdr h;
	struct wf_grant r;
	uint8_t op;
	int ret;

	ret = head_check(buf, len, sizeof(h), reason, &op);
	if (ret)
		return ret;
	if (op != WF_OP_GRANT)
		return fail(reason, WF_WR_OPCODE, -EPROTO);
	memcpy(&h, buf, sizeof(h));
	/* Bits of a later build are not ours to refuse: what we know of
	 * them is what we use. */
	r.features = le16toh(h.features);
	r.reactors = le32toh(h.reactors);
	if (r.reactors == 1 || r.reactors > WF_WIRE_MAX_REACTORS)
		return fail(reason, WF_WR_FIELD, -EPROTO);
	if (!r.reactors)
		r.reactors = 1;
	r.status = le16toh(h.status);
	r.epoch = le64toh(h.epoch);
	r.target_id = le32toh(h.target_id);
	r.slot_count = le32toh(h.slot_count);
	r.slot_size = le32toh(h.slot_size);
	ref_decode(&h.ring, &r.ring);
	if ((r.status & ~(uint32_t)WF_WS_DNR) >= WF_WS_MAX || r.status == WF_WS_DNR)
		return fail(reason, WF_WR_STATUS, -EPROTO);
	if (!r.epoch)
		return fail(reason, WF_WR_EPOCH, -EINVAL);
	if (r.status == WF_WS_OK) {
		/* The ring must be exactly the slots it claims. */
		if (!r.slot_count || r.slot_size < WF_REQ_HDR_LEN || !r.ring.key ||
		    (uint64_t)r.slot_count * r.slot_size != r.ring.len)
			return fail(reason, WF_WR_GEOMETRY, -EINVAL);
	} else if (r.slot_count || r.slot_size || r.ring.key || r.ring.len ||
		   r.ring.addr) {
		return fail(reason, WF_WR_FIELD, -EINVAL);
	}
	if (out)
		*out = r;
	if (reason)
		*reason = WF_WR_OK;
	return 0;
}

int wf_wire_status_errno(uint16_t status)
{
	switch (status & ~(uint32_t)WF_WS_DNR) {
	case WF_WS_OK:       return 0;
	case WF_WS_INVALID:  return -EINVAL;
	case WF_WS_NOVOL:    return -ENOENT;
	case WF_WS_RANGE:    return -ERANGE;
	case WF_WS_STALE:    return -ESTALE;
	case WF_WS_NOTPRIM:  return -EXDEV;
	case WF_WS_IO:       return -EIO;
	case WF_WS_NOSPC:    return -ENOSPC;
	case WF_WS_BUSY:     return -EAGAIN;
	case WF_WS_CRC:      return -EBADMSG;
	case WF_WS_DEGRADED: return -EHOSTDOWN;
	case WF_WS_ACCESS:   return -EACCES;
	case WF_WS_AUTH:     return -EACCES;
	case WF_WS_QUOTA:    return -EDQUOT;
	default:             return -EPROTO;
	}
}

uint16_t wf_wire_status_from_errno(int err)
{
	/* Whether a retry may help decides the DNR bit. */
	switch (err) {
	case 0:           return WF_WS_OK;
	case -EINVAL:     return WF_WS_INVALID | WF_WS_DNR;
	case -ENOENT:     return WF_WS_NOVOL | WF_WS_DNR;
	case -ERANGE:     return WF_WS_RANGE | WF_WS_DNR;
	case -ESTALE:     return WF_WS_STALE;
	case -EXDEV:      return WF_WS_NOTPRIM;
	case -ENOSPC:     return WF_WS_NOSPC | WF_WS_DNR;
	case -EAGAIN:     return WF_WS_BUSY;
	case -EBADMSG:    return WF_WS_CRC;
	case -EHOSTDOWN:  return WF_WS_DEGRADED;
	case -EDQUOT:     return WF_WS_QUOTA | WF_WS_DNR;
	case -EACCES:
	case -EPERM:      return WF_WS_ACCESS | WF_WS_DNR;
	default:          return WF_WS_IO;
	}
}

const char *wf_wire_status_name(uint16_t status)
{
	static const char *const names[] = {
		[WF_WS_OK] = "ok", [WF_WS_INVALID] = "invalid",
		[WF_WS_NOVOL] = "no-volume", [WF_WS_RANGE] = "range",
		[WF_WS_STALE] = "stale-epoch", [WF_WS_NOTPRIM] = "not-primary",
		[WF_WS_IO] = "io-error", [WF_WS_NOSPC] = "no-space",
		[WF_WS_BUSY] = "busy", [WF_WS_CRC] = "crc-mismatch",
		[WF_WS_DEGRADED] = "degraded", [WF_WS_ACCESS] = "access",
		[WF_WS_AUTH] = "auth", [WF_WS_QUOTA] = "quota",
	};
	uint32_t s = status & ~(uint32_t)WF_WS_DNR;

	return s < WF_WS_MAX ? names[s] : "unknown";
}

const char *wf_wire_reason_name(uint32_t reason)
{
	static const char *const names[] = {
		[WF_WR_OK] = "ok", [WF_WR_SHORT] = "short",
		[WF_WR_MAGIC] = "magic", [WF_WR_VERSION] = "version",
		[WF_WR_OPCODE] = "opcode", [WF_WR_FLAGS] = "flags",
		[WF_WR_RESERVED] = "reserved", [WF_WR_VOLUME] = "volume",
		[WF_WR_EPOCH] = "epoch", [WF_WR_LENGTH] = "length",
		[WF_WR_ALIGN] = "alignment", [WF_WR_OVERFLOW] = "overflow",
		[WF_WR_SLOT] = "slot", [WF_WR_SLOT_SIZE] = "slot-size",
		[WF_WR_BUF] = "buffer", [WF_WR_FIELD] = "field",
		[WF_WR_STATUS] = "status", [WF_WR_GEOMETRY] = "geometry",
	};

	return reason < WF_WR_MAX ? names[reason] : "unknown";
}
