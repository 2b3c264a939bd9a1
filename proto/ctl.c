/* SPDX-License-Identifier: Apache-2.0 */
/* The control socket's request decoder and answer check (proto/ctl.h). */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "proto/ctl.h"

int wf_ctl_req_decode(const void *buf, size_t n, struct wf_ctl_req *q)
{
	struct wf_ctl_req w;
	uint16_t ver;

	if (n != sizeof(w))
		return -EPROTO;
	memcpy(&w, buf, sizeof(w));
	ver = le16toh(w.version);
	if (le32toh(w.magic) != WF_CTL_MAGIC || ver < WF_CTL_VERSION_MIN ||
	    ver > WF_CTL_VERSION)
		return -EPROTO;
	q->magic = WF_CTL_MAGIC;
	q->version = ver;
	q->op = le16toh(w.op);
	q->epoch = le64toh(w.epoch);
	q->arg = le64toh(w.arg);
	q->arg2 = le64toh(w.arg2);
	/* Only VOLUME_USAGE (since version 3) and SCRUB (since 4) take an
	 * argument, only SCRUB a second one. */
	if (q->arg && (q->op != WF_CTL_VOLUME_USAGE && q->op != WF_CTL_SCRUB))
		return -EPROTO;
	if ((q->arg || q->arg2) && ver < wf_ctl_op_version(q->op))
		return -EPROTO;
	if (q->arg2 && q->op != WF_CTL_SCRUB)
		return -EPROTO;
	return 0;
}

int wf_ctl_answer_check(const void *buf, size_t n, size_t want, uint16_t op)
{
	uint32_t magic;
	uint16_t ver, aop;

	if (n != want || n < 8)
		return -EPROTO;
	memcpy(&magic, buf, 4);
	memcpy(&ver, (const char *)buf + 4, 2);
	memcpy(&aop, (const char *)buf + 6, 2);
	if (le32toh(magic) != WF_CTL_MAGIC || le16toh(ver) < WF_CTL_VERSION_MIN ||
	    le16toh(ver) > WF_CTL_VERSION || le16toh(aop) != op)
		return -EPROTO;
	return 0;
}

uint16_t wf_ctl_op_version(uint16_t op)
{
	return op == WF_CTL_SCRUB ? 4 : op == WF_CTL_VOLUME_USAGE ? 3 :
	       WF_CTL_VERSION_MIN;
}

void wf_ctl_req_encode_v(struct wf_ctl_req *q, uint16_t ver, uint16_t op,
			 uint64_t epoch, uint64_t arg, uint64_t arg2)
{
	memset(q, 0, sizeof(*q));
	q->magic = htole32(WF_CTL_MAGIC);
	q->version = htole16(ver);
	q->op = htole16(op);
	q->epoch = htole64(epoch);
	q->arg = htole64(arg);
	q->arg2 = htole64(arg2);
}

void wf_ctl_req_encode(struct wf_ctl_req *q, uint16_t op, uint64_t epoch,
		       uint64_t arg)
{
	wf_ctl_req_encode_v(q, wf_ctl_op_version(op), op, epoch, arg, 0);
}
