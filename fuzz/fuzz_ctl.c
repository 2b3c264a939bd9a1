/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the control socket's request decoder.  Any bytes are
 * either rejected with -EPROTO or decoded into a request that, encoded
 * again, decodes to the same fields.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "proto/ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wf_ctl_req a, b, w;
	int ret = wf_ctl_req_decode(data, size, &a);

	if (ret && ret != -EPROTO)
		abort();
	if (ret)
		return 0;
	/* Arguments only where the op takes them, from the op's version. */
	if (a.version < WF_CTL_VERSION_MIN || a.version > WF_CTL_VERSION ||
	    (a.arg && a.op != WF_CTL_VOLUME_USAGE && a.op != WF_CTL_SCRUB) ||
	    (a.arg2 && a.op != WF_CTL_SCRUB) ||
	    ((a.arg || a.arg2) && a.version < wf_ctl_op_version(a.op)))
		abort();
	wf_ctl_req_encode_v(&w, a.version, a.op, a.epoch, a.arg, a.arg2);
	if (wf_ctl_req_decode(&w, sizeof(w), &b) || b.op != a.op ||
	    b.epoch != a.epoch || b.arg != a.arg || b.arg2 != a.arg2 ||
	    b.version != a.version)
		abort();
	/* A STATUS answered in the request's version: one of the layouts,
	 * never beyond the struct, the whole of it in the current one. */
	if (wf_ctl_status_size(a.version) < WF_CTL_STATUS_V2_SIZE ||
	    wf_ctl_status_size(a.version) > sizeof(struct wf_ctl_status) ||
	    (a.version == WF_CTL_VERSION &&
	     wf_ctl_status_size(a.version) != sizeof(struct wf_ctl_status)))
		abort();
	wf_ctl_answer_check(data, size, size, a.op);
	return 0;
}
