/* SPDX-License-Identifier: Apache-2.0 */
/* The lease file's line (leasefile.h): written and read back strictly. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "target/leasefile.h"

static const char magic[] = "weft-leases 1 ";   /* 14 characters */

int wf_tgt_boot_id_check(const char *s, size_t len)
{
	if (len != WF_TGT_BOOT_ID_LEN)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		char c = s[i];

		if (dash ? c != '-' :
		    !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return -EINVAL;
	}
	return 0;
}

void wf_tgt_leasefile_format(char out[WF_TGT_LEASEFILE_LEN],
			     const char boot[WF_TGT_BOOT_ID_LEN], uint64_t until)
{
	char digits[21];

	memcpy(out, magic, sizeof(magic) - 1);
	memcpy(out + 14, boot, WF_TGT_BOOT_ID_LEN);
	out[50] = ' ';
	snprintf(digits, sizeof(digits), "%020llu", (unsigned long long)until);
	memcpy(out + 51, digits, 20);
	out[71] = '\n';
}

int wf_tgt_leasefile_parse(const void *buf, size_t len,
			   const char boot[WF_TGT_BOOT_ID_LEN], uint64_t *until)
{
	const char *s = buf;
	uint64_t v = 0;

	if (len != WF_TGT_LEASEFILE_LEN || memcmp(s, magic, sizeof(magic) - 1) ||
	    wf_tgt_boot_id_check(s + 14, WF_TGT_BOOT_ID_LEN) || s[50] != ' ' ||
	    s[71] != '\n')
		return -EINVAL;
	for (unsigned i = 51; i < 71; i++) {
		unsigned d = (unsigned char)s[i] - '0';

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	if (memcmp(s + 14, boot, WF_TGT_BOOT_ID_LEN))
		return -ESTALE;
	*until = v;
	return 0;
}
