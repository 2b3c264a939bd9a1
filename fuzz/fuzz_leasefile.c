/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the lease file's parser (target/leasefile.c).  Any
 * bytes are refused with -EINVAL or -ESTALE or parse into a value that,
 * written again, is the same bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "target/leasefile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char boot[] = "0123abcd-0123-4567-89ab-cdef01234567";
	char out[WF_TGT_LEASEFILE_LEN];
	uint64_t until = 0;
	int ret = wf_tgt_leasefile_parse(data, size, boot, &until);

	if (ret == -EINVAL)
		return 0;
	if (ret == -ESTALE) {
		/* Well formed, another boot: parses under its own id. */
		if (size != WF_TGT_LEASEFILE_LEN ||
		    wf_tgt_leasefile_parse(data, size, (const char *)data + 14, &until))
			abort();
		return 0;
	}
	if (ret)
		abort();
	wf_tgt_leasefile_format(out, boot, until);
	if (memcmp(out, data, size))
		abort();
	return 0;
}
