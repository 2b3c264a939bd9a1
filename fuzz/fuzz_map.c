/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the cluster map loader.  Any input must load or be
 * refused with a message; a map that loads must write out and load back
 * equal (the property epoch+1 maps depend on).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "placement/map.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
const char *__lsan_default_suppressions(void);

/*
 * libconfig 1.5 leaks its pending string buffer when a syntax error follows
 * a string value ("a = \"x\" b"): the parser does not free it on error.
 * That memory is allocated inside libconfig; none of ours has a libconfig
 * frame on its allocation stack, so this hides nothing of weft's.
 */
const char *__lsan_default_suppressions(void)
{
	return "leak:libconfig.so\n";
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct wf_map map, back;
	struct wf_map_err err;
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int r;

	r = wf_map_load_buf((const char *)data, size, "fuzz.conf", &map, &err);
	if (r) {
		/* every refusal explains itself, naming the input */
		if (strncmp(err.msg, "fuzz.conf", 9) || !memchr(err.msg, '\0', sizeof(err.msg)))
			abort();
		return 0;
	}
	f = open_memstream(&text, &len);
	if (!f)
		abort();
	if (wf_map_write(&map, f))
		abort();
	fclose(f);
	if (wf_map_load_buf(text, len, "fuzz-back.conf", &back, &err)) {
		fprintf(stderr, "written map does not load: %s\n%s", err.msg, text);
		abort();
	}
	if (!wf_map_equal(&map, &back)) {
		fprintf(stderr, "written map loads back different:\n%s", text);
		abort();
	}
	wf_map_free(&back);
	wf_map_free(&map);
	free(text);
	return 0;
}
