/* SPDX-License-Identifier: Apache-2.0 */
/* Wire headers: exact images, round trips, and every validation rule. */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include "proto/ctl.h"
#include "proto/wire.h"

static const struct wf_req_limits lim = {
	.block_size = 512, .max_io = 1 << 20, .slot_count = 32,
	.slot_size = 131072,
};

static struct wf_req good_write(void)
{
	return (struct wf_req){
		.opcode = WF_OP_WRITE, .flags = WF_REQ_FUA | WF_REQ_CRC,
		.tag = 0x1122334455667788ull, .volume = 7, .offset = 1 << 20,
		.epoch = 3, .length = 4096, .slot = 5, .data_crc = 0xabcdef01,
	};
}

Test(wire, crc32c_standard_vector)
{
	cr_assert_eq(wf_crc32c(0, "123456789", 9), 0xe3069283u);
	/* Chainable: two pieces give the same as one. */
	cr_assert_eq(wf_crc32c(wf_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
	cr_assert_eq(wf_crc32c(0, "", 0), 0);
}

Test(wire, request_image_is_little_endian)
{
	struct wf_req r = good_write();
	struct wf_req_hdr h;
	const uint8_t *b = (const uint8_t *)&h;

	wf_req_encode(&r, &h);
	cr_assert_eq(b[0], 0x46);
	cr_assert_eq(b[1], 0x57);
	cr_assert_eq(b[2], WF_WIRE_VERSION);
	cr_assert_eq(b[3], WF_OP_WRITE);
	cr_assert_eq(b[4], WF_REQ_FUA | WF_REQ_CRC);
	cr_assert_eq(b[8], 0x88);       /* tag, low byte first */
	cr_assert_eq(b[15], 0x11);
	cr_assert_eq(b[16], 7);         /* volume */
	cr_assert_eq(b[26], 0x10);      /* offset 1 MiB: 00 00 10 00 ... */
	cr_assert_eq(b[32], 3);         /* epoch */
	cr_assert_eq(b[41], 0x10);      /* length 4096 */
	cr_assert_eq(b[44], 5);         /* slot */
	cr_assert_eq(b[48], 0x01);      /* crc */
	cr_assert_eq(b[51], 0xab);
}

Test(wire, request_round_trip)
{
	struct wf_req r = good_write(), out;
	struct wf_req_hdr h;
	uint32_t why = 99;
	char unaligned[1 + sizeof(h)];

	wf_req_encode(&r, &h);
	memcpy(unaligned + 1, &h, sizeof(h));
	cr_assert_eq(wf_req_decode(unaligned + 1, sizeof(h), &lim, &out, &why), 0);
	cr_assert_eq(why, WF_WR_OK);
	cr_assert_eq(out.tag, r.tag);
	cr_assert_eq(out.offset, r.offset);
	cr_assert_eq(out.length, r.length);
	cr_assert_eq(out.slot, 5);
	cr_assert_eq(out.flags, r.flags);
	cr_assert_eq(out.data_crc, r.data_crc);

	struct wf_req rd = { .opcode = WF_OP_READ, .tag = 1, .volume = 2,
			     .offset = 0, .epoch = 1, .length = 8192,
			     .buf = { .addr = 0xfeed000, .key = 77 } };
	wf_req_encode(&rd, &h);
	cr_assert_eq(wf_req_decode(&h, sizeof(h), &lim, &out, NULL), 0);
	cr_assert_eq(out.buf.key, 77);
	cr_assert_eq(out.buf.addr, 0xfeed000);
	cr_assert_eq(out.buf.len, 8192);
}

/* Change one thing of a good write and expect a given verdict. */
static void expect(void (*mut)(struct wf_req_hdr *), int err, uint32_t reason)
{
	struct wf_req r = good_write(), out;
	struct wf_req_hdr h;
	uint32_t why = 0;

	wf_req_encode(&r, &h);
	mut(&h);
	cr_assert_eq(wf_req_decode(&h, sizeof(h), &lim, &out, &why), err);
	cr_assert_eq(why, reason, "reason %s, wanted %s", wf_wire_reason_name(why),
		     wf_wire_reason_name(reason));
}

static void m_magic(struct wf_req_hdr *h) { h->magic ^= 1; }
static void m_version(struct wf_req_hdr *h) { h->version = 2; }
static void m_op0(struct wf_req_hdr *h) { h->opcode = 0; }
static void m_op_reply(struct wf_req_hdr *h) { h->opcode = WF_OP_REPLY; }
static void m_op_big(struct wf_req_hdr *h) { h->opcode = 200; }
static void m_flags(struct wf_req_hdr *h) { h->flags = htole16(0x100); }
static void m_resv(struct wf_req_hdr *h) { h->reserved0 = 1; }
static void m_vol(struct wf_req_hdr *h) { h->volume = 0; }
static void m_epoch(struct wf_req_hdr *h) { h->epoch = 0; }
static void m_len0(struct wf_req_hdr *h) { h->length = 0; }
static void m_len_big(struct wf_req_hdr *h) { h->length = htole32((1 << 20) + 512); }
static void m_align_off(struct wf_req_hdr *h) { h->offset = htole64(100); }
static void m_align_len(struct wf_req_hdr *h) { h->length = htole32(1000); }
static void m_wrap(struct wf_req_hdr *h) { h->offset = htole64(UINT64_MAX - 511); }
static void m_slot(struct wf_req_hdr *h) { h->slot = htole32(32); }
static void m_slot_size(struct wf_req_hdr *h) { h->length = htole32(131072 + 512); }
static void m_read_nobuf(struct wf_req_hdr *h) { h->opcode = WF_OP_READ; h->slot = 0; h->flags = 0; h->data_crc = 0; }
static void m_flush_len(struct wf_req_hdr *h) { h->opcode = WF_OP_FLUSH; h->slot = 0; h->flags = 0; h->data_crc = 0; }
static void m_fua_read(struct wf_req_hdr *h) { h->opcode = WF_OP_READ; h->slot = 0; h->flags = htole16(WF_REQ_FUA); h->data_crc = 0; h->buf_key = 1; }
static void m_buf_on_write(struct wf_req_hdr *h) { h->buf_key = htole32(3); }
static void m_crc_without_flag(struct wf_req_hdr *h) { h->flags = htole16(WF_REQ_FUA); }
static void m_slot_on_discard(struct wf_req_hdr *h) { h->opcode = WF_OP_DISCARD; h->flags = 0; h->data_crc = 0; h->slot = htole32(32); }
static void m_csum_norepl(struct wf_req_hdr *h) { h->opcode = WF_OP_CSUM; h->flags = 0; h->data_crc = 0; }
static void m_csum_fua(struct wf_req_hdr *h) { h->opcode = WF_OP_CSUM; h->flags = htole16(WF_REQ_REPL | WF_REQ_FUA); h->data_crc = 0; }
static void m_csum_buf(struct wf_req_hdr *h) { h->opcode = WF_OP_CSUM; h->flags = htole16(WF_REQ_REPL); h->data_crc = 0; h->buf_key = 1; }
static void m_csum_big(struct wf_req_hdr *h) { h->opcode = WF_OP_CSUM; h->flags = htole16(WF_REQ_REPL); h->data_crc = 0; h->length = htole32(131072 + 512); }
static void m_op_status(struct wf_req_hdr *h) { h->opcode = WF_OP_STATUS; }
static void m_read_repl(struct wf_req_hdr *h) { h->opcode = WF_OP_READ; h->flags = htole16(WF_REQ_REPL); h->data_crc = 0; h->buf_key = 1; }

Test(wire, request_validation_rules)
{
	expect(m_magic, -EPROTO, WF_WR_MAGIC);
	expect(m_version, -EPROTO, WF_WR_VERSION);
	expect(m_op0, -EPROTO, WF_WR_OPCODE);
	expect(m_op_reply, -EPROTO, WF_WR_OPCODE);
	expect(m_op_big, -EPROTO, WF_WR_OPCODE);
	expect(m_flags, -EPROTO, WF_WR_FLAGS);
	expect(m_resv, -EPROTO, WF_WR_RESERVED);
	expect(m_vol, -EINVAL, WF_WR_VOLUME);
	expect(m_epoch, -EINVAL, WF_WR_EPOCH);
	expect(m_len0, -EINVAL, WF_WR_LENGTH);
	expect(m_len_big, -EINVAL, WF_WR_LENGTH);
	expect(m_align_off, -EINVAL, WF_WR_ALIGN);
	expect(m_align_len, -EINVAL, WF_WR_ALIGN);
	expect(m_wrap, -EINVAL, WF_WR_OVERFLOW);
	expect(m_slot, -EINVAL, WF_WR_SLOT);
	expect(m_slot_size, -EINVAL, WF_WR_SLOT_SIZE);
	expect(m_read_nobuf, -EINVAL, WF_WR_BUF);
	expect(m_flush_len, -EINVAL, WF_WR_LENGTH);
	expect(m_fua_read, -EINVAL, WF_WR_FLAGS);
	expect(m_buf_on_write, -EINVAL, WF_WR_FIELD);
	expect(m_crc_without_flag, -EINVAL, WF_WR_FIELD);
	expect(m_slot_on_discard, -EINVAL, WF_WR_SLOT);
	/* CSUM (scrub): only between targets, no buffer, one slot's worth. */
	expect(m_csum_norepl, -EINVAL, WF_WR_FLAGS);
	expect(m_csum_fua, -EINVAL, WF_WR_FLAGS);
	expect(m_csum_buf, -EINVAL, WF_WR_FIELD);
	expect(m_csum_big, -EINVAL, WF_WR_SLOT_SIZE);
	expect(m_op_status, -EPROTO, WF_WR_OPCODE);
	expect(m_read_repl, -EINVAL, WF_WR_FLAGS);
}

Test(wire, csum_request)
{
	struct wf_req r = { .opcode = WF_OP_CSUM, .flags = WF_REQ_REPL, .tag = 3,
			    .volume = 2, .offset = 1 << 20, .epoch = 7,
			    .length = 131072, .slot = 4 }, out;
	struct wf_reply rp = { .status = WF_WS_OK, .tag = 3, .epoch = 7,
			       .length = 131072, .data_crc = 0xdeadbeef, .slot = 4 }, rpo;
	struct wf_req_hdr h;
	struct wf_reply_hdr rh;

	wf_req_encode(&r, &h);
	cr_assert_eq(wf_req_decode(&h, sizeof(h), &lim, &out, NULL), 0);
	cr_assert_eq(out.opcode, WF_OP_CSUM);
	cr_assert_eq(out.flags, WF_REQ_REPL);
	cr_assert_eq(out.length, 131072);
	wf_reply_encode(&rp, &rh);
	cr_assert_eq(wf_reply_decode(&rh, sizeof(rh), &rpo, NULL), 0);
	cr_assert_eq(rpo.data_crc, 0xdeadbeef);
}

Test(wire, short_buffers_and_peek)
{
	struct wf_req r = good_write();
	struct wf_req_hdr h;
	uint32_t why;

	wf_req_encode(&r, &h);
	for (size_t n = 0; n < sizeof(h); n++)
		cr_assert_eq(wf_req_decode(&h, n, &lim, NULL, &why), -EPROTO);
	cr_assert_eq(wf_wire_peek(&h, sizeof(h), &why), WF_OP_WRITE);
	cr_assert_eq(wf_wire_peek(&h, 3, &why), -EPROTO);
	cr_assert_eq(why, WF_WR_SHORT);
	cr_assert_eq(wf_req_decode(NULL, 64, &lim, NULL, NULL), -EPROTO);
}

Test(wire, reply_hello_grant)
{
	struct wf_reply rp = { .status = WF_WS_STALE, .tag = 9, .epoch = 4,
			       .length = 4096, .slot = 3 }, rpo;
	struct wf_reply_hdr rh;
	struct wf_hello he = { .client_id = 5, .epoch = 1, .want_slots = 32,
			       .max_io = 131072 }, heo;
	struct wf_hello_hdr hh;
	struct wf_grant g = { .status = WF_WS_OK, .epoch = 2, .target_id = 1,
			      .slot_count = 4, .slot_size = 4160,
			      .ring = { .addr = 0x1000, .key = 9, .len = 4 * 4160 } }, go;
	struct wf_grant_hdr gh;
	uint32_t why;

	wf_reply_encode(&rp, &rh);
	cr_assert_eq(wf_reply_decode(&rh, sizeof(rh), &rpo, &why), 0);
	cr_assert_eq(rpo.status, WF_WS_STALE);
	cr_assert_eq(rpo.slot, 3);
	rh.status = htole16(WF_WS_MAX);
	cr_assert_eq(wf_reply_decode(&rh, sizeof(rh), &rpo, &why), -EPROTO);
	cr_assert_eq(why, WF_WR_STATUS);
	rh.status = htole16(WF_WS_IO | WF_WS_DNR);
	cr_assert_eq(wf_reply_decode(&rh, sizeof(rh), &rpo, &why), 0);
	rh.reserved1 = 1;
	cr_assert_eq(wf_reply_decode(&rh, sizeof(rh), &rpo, &why), -EPROTO);

	wf_hello_encode(&he, &hh);
	cr_assert_eq(wf_hello_decode(&hh, sizeof(hh), &heo, &why), 0);
	cr_assert_eq(heo.want_slots, 32);
	hh.want_slots = 0;
	cr_assert_eq(wf_hello_decode(&hh, sizeof(hh), &heo, &why), -EINVAL);
	cr_assert_eq(why, WF_WR_SLOT);
	cr_assert_eq(wf_reply_decode(&hh, sizeof(hh), &rpo, &why), -EPROTO,
		     "a hello is not a reply");

	wf_grant_encode(&g, &gh);
	cr_assert_eq(wf_grant_decode(&gh, sizeof(gh), &go, &why), 0);
	cr_assert_eq(go.ring.key, 9);
	cr_assert_eq(go.slot_size, 4160);
	g.ring.len--;
	wf_grant_encode(&g, &gh);
	cr_assert_eq(wf_grant_decode(&gh, sizeof(gh), &go, &why), -EINVAL);
	cr_assert_eq(why, WF_WR_GEOMETRY);
	g = (struct wf_grant){ .status = WF_WS_NOSPC | WF_WS_DNR, .epoch = 2 };
	wf_grant_encode(&g, &gh);
	cr_assert_eq(wf_grant_decode(&gh, sizeof(gh), &go, &why), 0);
	cr_assert_eq(go.features, 0, "a GRANT of an older build has no features");
	/* The features word (once reserved0): what it says comes through,
	 * bits of a later build too. */
	g.features = WF_FEAT_LEASE | WF_FEAT_RELEASE | 0x8000;
	wf_grant_encode(&g, &gh);
	cr_assert_eq(le16toh(gh.features), 0x8003);
	cr_assert_eq(wf_grant_decode(&gh, sizeof(gh), &go, &why), 0);
	cr_assert_eq(go.features, 0x8003);
}

/* A lease release: flags WF_LEASE_RELEASE alone, status and length 0. */
Test(wire, lease_release)
{
	struct wf_lease l = { .flags = WF_LEASE_RELEASE, .epoch = 7, .target_id = 2 }, o;
	struct wf_net_lease w;

	wf_lease_encode(&l, &w);
	cr_assert_eq(wf_lease_decode(&w, sizeof(w), &o), 0);
	cr_assert_eq(o.flags, WF_LEASE_RELEASE);
	cr_assert_eq(o.epoch, 7);
	cr_assert_eq(o.target_id, 2);
	l.lease_ms = 1;
	wf_lease_encode(&l, &w);
	cr_assert_eq(wf_lease_decode(&w, sizeof(w), &o), -EPROTO);
	l.lease_ms = 0;
	l.status = WF_WS_BUSY;
	wf_lease_encode(&l, &w);
	cr_assert_eq(wf_lease_decode(&w, sizeof(w), &o), -EPROTO);
	l.status = 0;
	l.flags = WF_LEASE_RELEASE | WF_LEASE_ANSWER;
	wf_lease_encode(&l, &w);
	cr_assert_eq(wf_lease_decode(&w, sizeof(w), &o), -EPROTO);
	l.flags = 4;
	wf_lease_encode(&l, &w);
	cr_assert_eq(wf_lease_decode(&w, sizeof(w), &o), -EPROTO);
	l = (struct wf_lease){ .flags = WF_LEASE_RELEASE };
	wf_lease_encode(&l, &w);
	cr_assert_eq(wf_lease_decode(&w, sizeof(w), &o), -EPROTO, "epoch 0");
}

Test(wire, status_mapping)
{
	cr_assert_eq(wf_wire_status_errno(WF_WS_OK), 0);
	cr_assert_eq(wf_wire_status_errno(WF_WS_STALE), -ESTALE);
	cr_assert_eq(wf_wire_status_errno(WF_WS_IO | WF_WS_DNR), -EIO);
	cr_assert_eq(wf_wire_status_errno(999), -EPROTO);
	cr_assert(wf_wire_status_from_errno(-EINVAL) & WF_WS_DNR, "EINVAL: no retry");
	cr_assert_not(wf_wire_status_from_errno(-EAGAIN) & WF_WS_DNR, "EAGAIN: retry");
	cr_assert_eq(wf_wire_status_from_errno(-ESTALE), WF_WS_STALE);
	for (int e = 1; e < 140; e++)
		cr_assert_eq(wf_wire_status_errno(wf_wire_status_from_errno(-e)) != 0, 1);
	cr_assert_str_eq(wf_wire_status_name(WF_WS_CRC | WF_WS_DNR), "crc-mismatch");
	/* A key over its limits on a target (docs/security.md). */
	cr_assert_eq(wf_wire_status_errno(WF_WS_QUOTA | WF_WS_DNR), -EDQUOT);
	cr_assert_eq(wf_wire_status_from_errno(-EDQUOT), WF_WS_QUOTA | WF_WS_DNR);
	cr_assert_str_eq(wf_wire_status_name(WF_WS_QUOTA), "quota");
	cr_assert_str_eq(wf_wire_reason_name(WF_WR_SLOT_SIZE), "slot-size");
	cr_assert_str_eq(wf_wire_reason_name(1000), "unknown");

}

/* A buffer reference (the grant's ring) is little-endian on the wire and
 * comes back as it went. */
Test(wire, buffer_ref_roundtrip)
{
	struct wf_grant g = {
		.status = WF_WS_OK, .epoch = 3, .target_id = 1, .slot_count = 4,
		.slot_size = 4096,
		.ring = { .addr = 0x0102030405060708ull, .key = 0x0a0b0c0d,
			  .len = 4 * 4096 },
	}, g2;
	struct wf_grant_hdr h;

	wf_grant_encode(&g, &h);
	cr_assert_eq(((uint8_t *)&h.ring)[0], 0x08);
	cr_assert_eq(((uint8_t *)&h.ring)[8], 0x0d);
	cr_assert_eq(wf_grant_decode(&h, sizeof(h), &g2, NULL), 0);
	cr_assert_eq(memcmp(&g.ring, &g2.ring, sizeof(g.ring)), 0);
}
