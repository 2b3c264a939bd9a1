/* SPDX-License-Identifier: Apache-2.0 */
/* weft-bench: placement, fabric and I/O benchmarks. */
#include <stdio.h>
#include <string.h>

static int usage(FILE *f)
{
	fprintf(f, "usage: weft-bench placement|fabric|io [OPTIONS]\n");
	return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
		return usage(stdout);
	fprintf(stderr, "weft-bench: unknown benchmark '%s'\n", argv[1]);
	return usage(stderr);
}
