/* SPDX-License-Identifier: Apache-2.0 */
/* weftctl: the admin command line. */
#include <stdio.h>
#include <string.h>
#include "placement/map.h"

static int usage(FILE *f)
{
	fprintf(f, "usage: weftctl COMMAND [ARGS]\n"
		   "  check -c MAP                 validate a cluster map\n");
	return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
		return usage(stdout);
	fprintf(stderr, "weftctl: unknown command '%s'\n", argv[1]);
	return usage(stderr);
}
