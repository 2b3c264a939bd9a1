/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control socket's request decoder and answer check (proto/ctl.c):
 * the byte image, the versions a target takes (2 and 3, answered in the
 * asker's), and every rule that rejects a packet.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include "proto/ctl.h"

Test(ctl, request_image_and_round_trip)
{
	struct wf_ctl_req q, d;
	const uint8_t *b = (const uint8_t *)&q;

	wf_ctl_req_encode(&q, WF_CTL_VOLUME_USAGE, 9, 0x0102030405060708ull);
	cr_assert_eq(b[0], 0x57);               /* "WCTL" */
	cr_assert_eq(b[3], 0x4c);
	cr_assert_eq(b[4], 3);                  /* VOLUME_USAGE is an op of 3 */
	cr_assert_eq(b[6], WF_CTL_VOLUME_USAGE);
	cr_assert_eq(b[8], 9);
	cr_assert_eq(b[16], 0x08);              /* arg, low byte first */
	cr_assert_eq(b[23], 0x01);
	cr_assert_eq(wf_ctl_req_decode(&q, sizeof(q), &d), 0);
	cr_assert_eq(d.version, 3);
	cr_assert_eq(d.op, WF_CTL_VOLUME_USAGE);
	cr_assert_eq(d.epoch, 9);
	cr_assert_eq(d.arg, 0x0102030405060708ull);
}

/* Ops a version-2 target knows still go out as version 2. */
Test(ctl, old_ops_go_in_version_2)
{
	static const uint16_t ops[] = { WF_CTL_STATUS, WF_CTL_SHORTCIRCUIT, WF_CTL_RELOAD };
	struct wf_ctl_req q, d;

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		wf_ctl_req_encode(&q, ops[i], 4, 0);
		cr_assert_eq(le16toh(q.version), 2);
		cr_assert_eq(wf_ctl_req_decode(&q, sizeof(q), &d), 0);
		cr_assert_eq(d.op, ops[i]);
		cr_assert_eq(d.arg, 0);
	}
}

Test(ctl, request_rejections)
{
	struct wf_ctl_req q, d, bad;
	char big[sizeof(q) + 1];

	wf_ctl_req_encode(&q, WF_CTL_VOLUME_USAGE, 1, 5);
	cr_assert_eq(wf_ctl_req_decode(&q, sizeof(q) - 1, &d), -EPROTO, "short");
	memcpy(big, &q, sizeof(q));
	big[sizeof(q)] = 0;
	cr_assert_eq(wf_ctl_req_decode(big, sizeof(big), &d), -EPROTO, "long");
	bad = q;
	bad.magic ^= htole32(1);
	cr_assert_eq(wf_ctl_req_decode(&bad, sizeof(bad), &d), -EPROTO, "magic");
	bad = q;
	bad.version = htole16(1);
	cr_assert_eq(wf_ctl_req_decode(&bad, sizeof(bad), &d), -EPROTO, "version 1");
	bad.version = htole16(WF_CTL_VERSION + 1);
	cr_assert_eq(wf_ctl_req_decode(&bad, sizeof(bad), &d), -EPROTO, "future");
	bad = q;
	bad.arg2 = htole64(1);
	cr_assert_eq(wf_ctl_req_decode(&bad, sizeof(bad), &d), -EPROTO, "arg2");
	/* SCRUB (version 4) takes both; not in version 3. */
	wf_ctl_req_encode_v(&bad, 4, WF_CTL_SCRUB, 1, 5, WF_CTL_SCRUB_REPAIR);
	cr_assert_eq(wf_ctl_req_decode(&bad, sizeof(bad), &d), 0);
	cr_assert_eq(d.arg, 5);
	cr_assert_eq(d.arg2, WF_CTL_SCRUB_REPAIR);
	bad.version = htole16(3);
	cr_assert_eq(wf_ctl_req_decode(&bad, sizeof(bad), &d), -EPROTO, "SCRUB in v3");
	cr_assert_eq(wf_ctl_status_size(2), 144);
	cr_assert_eq(wf_ctl_status_size(3), 144);
	cr_assert_eq(wf_ctl_status_size(4), 256);
	cr_assert_eq(wf_ctl_status_size(5), 336);
	cr_assert_eq(wf_ctl_status_size(6), 368);
	cr_assert_eq(wf_ctl_status_size(7), sizeof(struct wf_ctl_status));
	cr_assert_eq(sizeof(struct wf_ctl_status), 376);
	cr_assert_eq(offsetof(struct wf_ctl_status, recovery_bytes_left), 368);
	cr_assert_eq(sizeof(struct wf_net_status_reply), 392);
	cr_assert_eq(WF_NET_STATUS_REPLY_V6_SIZE,
		     offsetof(struct wf_net_status_reply, body) + WF_CTL_STATUS_V6_SIZE);
	/* An argument only where the op takes one, and only from version 3
	 * (version 2 had the field reserved). */
	bad = q;
	bad.version = htole16(2);
	cr_assert_eq(wf_ctl_req_decode(&bad, sizeof(bad), &d), -EPROTO, "arg in v2");
	wf_ctl_req_encode(&bad, WF_CTL_STATUS, 1, 0);
	bad.arg = htole64(7);
	cr_assert_eq(wf_ctl_req_decode(&bad, sizeof(bad), &d), -EPROTO, "STATUS + arg");
	/* An unknown op decodes: the target answers it with -EPROTO. */
	wf_ctl_req_encode(&bad, 77, 1, 0);
	cr_assert_eq(wf_ctl_req_decode(&bad, sizeof(bad), &d), 0);
	cr_assert_eq(d.op, 77);
}

Test(ctl, answer_check)
{
	struct wf_ctl_volume_usage a;
	struct wf_ctl_status st;

	memset(&a, 0, sizeof(a));
	a.magic = htole32(WF_CTL_MAGIC);
	a.version = htole16(3);
	a.op = htole16(WF_CTL_VOLUME_USAGE);
	cr_assert_eq(wf_ctl_answer_check(&a, sizeof(a), sizeof(a), WF_CTL_VOLUME_USAGE), 0);
	cr_assert_eq(wf_ctl_answer_check(&a, sizeof(a), sizeof(a), WF_CTL_STATUS), -EPROTO);
	cr_assert_eq(wf_ctl_answer_check(&a, sizeof(a) - 8, sizeof(a),
					 WF_CTL_VOLUME_USAGE), -EPROTO, "short");
	a.version = htole16(1);
	cr_assert_eq(wf_ctl_answer_check(&a, sizeof(a), sizeof(a),
					 WF_CTL_VOLUME_USAGE), -EPROTO);
	/* A version-2 target answers an op it lacks with a status (-EPROTO
	 * in it): the size tells it from the answer asked for. */
	memset(&st, 0, sizeof(st));
	st.magic = htole32(WF_CTL_MAGIC);
	st.version = htole16(2);
	st.op = htole16(WF_CTL_VOLUME_USAGE);
	cr_assert_eq(wf_ctl_answer_check(&st, sizeof(st), sizeof(a),
					 WF_CTL_VOLUME_USAGE), -EPROTO);
	st.op = htole16(WF_CTL_STATUS);
	cr_assert_eq(wf_ctl_answer_check(&st, sizeof(st), sizeof(st), WF_CTL_STATUS), 0);
	cr_assert_eq(wf_ctl_answer_check(&st, 4, 4, WF_CTL_STATUS), -EPROTO);
}
