/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include "bench/bench.h"

int bench_placement(int argc, char **argv)
{
	(void)argc; (void)argv;
	fprintf(stderr, "weft-bench placement: not built yet\n");
	return 1;
}
