/* SPDX-License-Identifier: Apache-2.0 */
/* weftctl: the admin command line. */
#include <stdio.h>
#include <string.h>

#include "weftctl/ctl.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
} cmds[] = {
	{ "check",   ctl_check,   "check -c MAP                 validate a cluster map" },
	{ "locate",  ctl_locate,  "locate -c MAP VOLUME OFFSET  extent, PG and acting set of a byte" },
	{ "map",     ctl_map,     "map show -c MAP              hierarchy, weights, PGs per device" },
	{ "map",     ctl_map,     "map push -c MAP              tell every target of MAP (other hosts: send it)" },
	{ "map",     ctl_map,     "map import|export --etcd URL move a map between a file and etcd" },
	{ "balance", ctl_balance, "balance -c MAP [-o OUT]      compute PG overrides (epoch+1)" },
	{ "status",  ctl_status,  "status -c MAP                which targets answer, epoch, used/free" },
	{ "volume",  ctl_volume,  "volume create|resize|delete -c MAP NAME ...  edit volumes (epoch+1)" },
	{ "target",  ctl_target,  "target down|up|out|in|reweight ID -c MAP  change a target (epoch+1)" },
	{ "recover", ctl_recover, "recover -c MAP [--wait]      bring new members up to date, end pins" },
	{ "scrub",   ctl_scrub,   "scrub -c MAP [VOLUME] [--repair]  compare replicas by CRC32C, repair" },
};

static int usage(FILE *f)
{
	fprintf(f, "usage: weftctl COMMAND [ARGS]\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %s\n", cmds[i].help);
	return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
		return usage(stdout);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "weftctl: unknown command '%s'\n", argv[1]);
	return usage(stderr);
}
