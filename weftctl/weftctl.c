/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weftctl: the admin command line.
 *
 * Every command takes --json (anywhere among its arguments): stdout then
 * carries one JSON object, {"command": ..., "ok": ..., ...}, written only
 * when the command ran (exit 0, or 1 with "ok": false and "error"); on
 * exit 2 (bad arguments) stdout stays empty.  The schemas are in
 * docs/schemas/weftctl-*.json, described in docs/weftctl.md.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weftctl/ctl.h"
#include "weft_version.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv, struct wf_json *j);
	const char *help;
} cmds[] = {
	{ "check",   ctl_check,   "check -c MAP                 validate a cluster map" },
	{ "locate",  ctl_locate,  "locate -c MAP VOLUME OFFSET  extent, PG, acting set of a byte; who answers" },
	{ "map",     ctl_map,     "map show -c MAP              hierarchy, weights, PGs per device, volumes" },
	{ "map",     ctl_map,     "map push -c MAP              tell every target of MAP (other hosts: send it)" },
	{ "map",     ctl_map,     "map import|export --etcd URL move a map between a file and etcd" },
	{ "map",     ctl_map,     "map watch --etcd URL -o FILE keep FILE etcd's map (hosts without targets)" },
	{ "balance", ctl_balance, "balance -c MAP [-o OUT]      compute PG overrides (epoch+1)" },
	{ "status",  ctl_status,  "status -c MAP                which targets answer, epoch, used/free" },
	{ "volume",  ctl_volume,  "volume list|info|create|resize|delete -c MAP [NAME ...]  see and edit volumes" },
	{ "target",  ctl_target,  "target down|up|out|in|reweight ID -c MAP  change a target (epoch+1)" },
	{ "recover", ctl_recover, "recover -c MAP [--wait]      bring new members up to date, end pins" },
	{ "scrub",   ctl_scrub,   "scrub -c MAP [VOLUME] [--repair]  compare replicas by CRC32C, repair" },
	{ "key",     ctl_key,     "key create|list|revoke|export|issue|peer [NAME] [--keyring F] [-c MAP]  keys of hosts and targets" },
	{ "keeper",  ctl_keeper,  "keeper --etcd URL            mark targets down/up/out/in from their leases" },
};

/* The last error message of the command, for the JSON document. */
static char last_err[512];

void ctl_err(const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(last_err, sizeof(last_err), fmt, ap);
	va_end(ap);
	fputs(last_err, stderr);
	n = strlen(last_err);
	if (n && last_err[n - 1] == '\n')
		last_err[n - 1] = 0;
}

static int usage(FILE *f)
{
	fprintf(f, "usage: weftctl COMMAND [ARGS] [--json]\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %s\n", cmds[i].help);
	fprintf(f, "  --version                    print the version\n"
		"Every command takes --json: one JSON object on stdout (docs/weftctl.md).\n"
		"Exit 0 on success, 1 when the command failed or found a fault\n"
		"(the message says which), 2 on bad arguments.\n");
	return f == stdout ? 0 : 2;
}

/* weftctl --etcd URL: the map of the command comes from etcd and a
 * change goes back there (ctl_etcd.c); NULL: a map file. */
static struct ctl_etcd_run *etcd_run;

/* Run cmd with its output as JSON: the document is held in memory and
 * printed only when the command ran (exit 0 or 1). */
static int run_json(int i, int argc, char **argv)
{
	struct wf_json j;
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	int rc, fin;

	if (!mem) {
		fprintf(stderr, "weftctl: out of memory\n");
		return 1;
	}
	wf_json_init(&j, mem, true);
	wf_json_obj_begin(&j, NULL);
	wf_json_str(&j, "command", cmds[i].name);
	rc = cmds[i].fn(argc, argv, &j);
	if (etcd_run)
		rc = ctl_etcd_end(etcd_run, rc, &j);
	wf_json_bool(&j, "ok", rc == 0);
	if (rc == 1)
		wf_json_str(&j, "error", last_err[0] ? last_err : "failed (see stderr)");
	wf_json_obj_end(&j);
	fin = wf_json_finish(&j);
	fclose(mem);
	if (rc != 2 && !fin)
		fwrite(buf, 1, len, stdout);
	free(buf);
	if (fin && rc != 2) {
		fprintf(stderr, "weftctl: internal error: the JSON document is not "
			"closed\n");
		rc = 1;
	}
	return fflush(stdout) && rc == 0 ? 1 : rc;
}

int main(int argc, char **argv)
{
	struct ctl_etcd_run er;
	const char *etcd = NULL, *prefix = "/weft/";
	bool json = false, own_etcd;
	int n = 0, rc;

	if (argc < 2)
		return usage(stderr);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
		return usage(stdout);
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("weftctl (weft) %s\n", WEFT_PROJECT_VERSION);
		return 0;
	}
	/* --json anywhere among the arguments. */
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
			continue;
		}
		argv[n++] = argv[i];
	}
	argc = n;
	argv[argc] = NULL;
	/* --etcd URL [--etcd-prefix P] anywhere: the map is etcd's (but
	 * `map import|export` take --etcd themselves). */
	own_etcd = (argc > 2 && !strcmp(argv[1], "map") &&
		    (!strcmp(argv[2], "import") || !strcmp(argv[2], "export") ||
		     !strcmp(argv[2], "watch"))) ||
		   (argc > 1 && !strcmp(argv[1], "keeper"));
	n = 0;
	for (int i = 0; i < argc; i++) {
		if (!own_etcd && i + 1 < argc && !strcmp(argv[i], "--etcd")) {
			etcd = argv[++i];
			continue;
		}
		if (!own_etcd && i + 1 < argc && !strcmp(argv[i], "--etcd-prefix")) {
			prefix = argv[++i];
			continue;
		}
		argv[n++] = argv[i];
	}
	argc = n;
	argv[argc] = NULL;
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char *args[argc + 3];

		if (strcmp(argv[1], cmds[i].name))
			continue;
		if (etcd) {
			for (int k = 0; k < argc; k++)
				if (!strcmp(argv[k], "-c") || !strcmp(argv[k], "--config")) {
					fprintf(stderr, "weftctl: give -c MAP or --etcd URL, "
						"not both\n");
					return 2;
				}
			rc = ctl_etcd_begin(&er, etcd, prefix);
			if (rc)
				return rc;
			etcd_run = &er;
			/* The command works on a copy of etcd's map. */
			memcpy(args, argv, (size_t)argc * sizeof(*args));
			args[argc] = (char *)"-c";
			args[argc + 1] = er.tmp;
			args[argc + 2] = NULL;
			argv = args;
			argc += 2;
		}
		if (json)
			return run_json((int)i, argc - 1, argv + 1);
		rc = cmds[i].fn(argc - 1, argv + 1, NULL);
		return etcd_run ? ctl_etcd_end(etcd_run, rc, NULL) : rc;
	}
	fprintf(stderr, "weftctl: unknown command '%s'\n", argv[1]);
	return usage(stderr);
}
