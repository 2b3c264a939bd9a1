/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the authentication exchange's parser (WF_OP_AUTH,
 * proto/auth.h), the first thing a target reads from any peer.  Any bytes
 * are either rejected with -EPROTO/-EINVAL and a reason, or accepted, in
 * which case encoding the result and decoding it again gives the same
 * message; a client taking an accepted message as the target's CHALLENGE
 * refuses it (the MAC cannot match) without touching anything else.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/auth.h"
#include "proto/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t key[WF_KEY_LEN] = { 1, 2, 3 };
	struct wf_auth a, b;
	struct wf_auth_hdr h;
	struct wf_auth_ctx x;
	uint32_t why = 12345;
	int ret = wf_auth_decode(data, size, &a, &why);

	if (ret != 0 && ret != -EPROTO && ret != -EINVAL)
		abort();
	if ((ret == 0) != (why == WF_WR_OK) || why >= WF_WR_MAX)
		abort();
	if (ret)
		return 0;
	if (a.step == WF_AUTH_OFFER && !wf_key_name_ok(a.name))
		abort();
	wf_auth_encode(&a, &h);
	if (wf_auth_decode(&h, sizeof(h), &b, &why) || memcmp(&a, &b, sizeof(a)))
		abort();
	/* As a CHALLENGE to a client that offered key "k" to target 0. */
	memset(&x, 0, sizeof(x));
	strcpy(x.name, "k");
	x.cluster_id = 7;
	x.client_id = 9;
	ret = wf_auth_answer(key, &x, &a, &h);
	if (ret != -EPROTO && ret != -EACCES && ret != -EBADMSG)
		abort();
	return 0;
}
