/* SPDX-License-Identifier: Apache-2.0 */
/* weft-bench: placement, fabric and I/O benchmarks. */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "weft_version.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
} cmds[] = {
	{ "placement", bench_placement, "placement -c MAP [--json]" },
	{ "fabric",    bench_fabric,    "fabric --transport tcp|unix|verbs --size N [--json]" },
	{ "chain",     bench_chain,     "chain [--topology pair,chain] [--wait sleep|spin] [--iters N] [--rounds R] [--json]: a replicated write's message topology over tcp loopback, nothing else" },
	{ "floor",     bench_floor,     "floor --file PATH --rw randread|randwrite|randrw --bs 4k --qd N --runtime S [--size BYTES] [--json] [--plot DIR]" },
	{ "thrash",    bench_thrash,    "thrash -c MAP --volume V [--cycles N] [--json]: verified I/O while targets fail and return" },
	{ "connect",   bench_connect,   "connect -c MAP --volume V [--count N] [--no-key] [--json]: a new handle's first read (connect, keys) against a warm one" },
	{ "io",        bench_io,        "io -c MAP --volume V --rw randread|randwrite|randrw --bs 4k --qd 1|32 --runtime S [--json] [--plot DIR] [--transport tcp|unix|verbs]" },
};

static int usage(FILE *f)
{
	fprintf(f, "usage: weft-bench BENCHMARK [OPTIONS]\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %s\n", cmds[i].help);
	fprintf(f, "  --version\n"
		"Exit 0 when the benchmark ran (and its data verified), 1 when it\n"
		"failed or found a fault, 2 on bad arguments.\n");
	return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
		return usage(stdout);
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
		printf("weft-bench (weft) %s\n", WEFT_PROJECT_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "weft-bench: unknown benchmark '%s'\n", argv[1]);
	return usage(stderr);
}
