/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Malformed maps, one per row: each must be refused with -EINVAL and a
 * message "t.conf:LINE: FIELD: ..." that names the right line and field.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "placement/map.h"

/* A valid map of 8 lines that the rows below bend in one place. */
#define HDR  "epoch = 1;\ncluster_id = 7;\ntargets = (\n"              /* 1-3 */
#define TG(id, host, port, extra)                                          \
	"{ id = " #id "; host = \"" host "\"; addr = \"127.0.0.1\"; port = " \
	#port "; device = \"/d" #id "\";" extra " }"
#define T0   TG(0, "h0", 7400, "") ",\n"                                   /* 4 */
#define T1   TG(1, "h1", 7401, "") ",\n"                                   /* 5 */
#define T2   TG(2, "h2", 7402, "") "\n);\n"                                /* 6-7 */
#define TGTS T0 T1 T2
#define POOL(extra) "pools = ( { name = \"p\"; id = 1; replicas = 3; pg_num = 64;" \
	extra " } );\n"                                                    /* 8 */
#define BASE HDR TGTS POOL("")
#define VOL(extra) "volumes = ( { name = \"v\"; id = 1; pool = \"p\";" extra " } );\n"
#define OVR(extra) "overrides = ( { pool = \"p\"; " extra " } );\n"
#define LONG64 "h123456789012345678901234567890123456789012345678901234567890123"

struct bad {
	const char *text;
	size_t len;             /* 0: strlen(text) */
	int line;
	const char *field;
	const char *what;       /* substring of the rest of the message */
};

static const struct bad bad[] = {
	/* syntax and lexical */
	{ "epoch = 1;\ncluster_id = 7;\ntargets = ( ;\n", 0, 3, "syntax", "syntax error" },
	{ "epoch = 1;\ncluster_id = 7;\ntargets = (\n" TG(0, "h0", 7400, "") ",\n);\n", 0, 5,
	  "syntax", "syntax error" },
	{ BASE "@include \"/etc/passwd\"\n", 0, 9, "@include", "not allowed" },
	{ BASE "volumes = ();\0junk", sizeof(BASE "volumes = ();\0junk") - 1, 9, "text",
	  "NUL byte" },
	{ BASE VOL(" size = 1099511627776;"), 0, 9, "size", "does not fit in 32 bits" },
	{ "epoch = 1;\ncluster_id = 99999999999999999999L;\n", 0, 2, "cluster_id",
	  "does not fit in 64 bits" },
	{ "epoch = 1;\ncluster_id = 0x80000000;\n", 0, 2, "cluster_id", "does not fit" },

	/* read_lease_ms: 0 .. 3000 */
	{ BASE "read_lease_ms = 3001;\n", 0, 9, "read_lease_ms", "out of range" },
	{ BASE "read_lease_ms = -1;\n", 0, 9, "read_lease_ms", "out of range" },
	{ BASE "read_lease_ms = \"2s\";\n", 0, 9, "read_lease_ms", "" },

	/* next_volume_id: never at or below a volume's id */
	{ BASE VOL(" size = \"1G\";") "next_volume_id = 1;\n", 0, 10, "next_volume_id",
	  "not above every volume id" },
	{ BASE "next_volume_id = 0;\n", 0, 9, "next_volume_id", "" },

	/* unknown keys at every level */
	{ BASE "colour = \"red\";\n", 0, 9, "colour", "unknown key" },
	{ HDR TG(0, "h0", 7400, " weigth = 2.0;") ",\n" T1 T2 POOL(""), 0, 4,
	  "targets[0].weigth", "unknown key" },
	{ HDR TGTS POOL(" size = 3;"), 0, 8, "pools[0].size", "unknown key" },
	{ BASE VOL(" size = \"1G\"; owner = \"me\";"), 0, 9, "volumes[0].owner", "unknown key" },
	{ BASE "hierarchy = ( { rack = \"r\"; hosts = (\"h0\", \"h1\", \"h2\"); room = 1; } );\n",
	  0, 9, "hierarchy[0].room", "unknown key" },
	{ BASE OVR("pg = 1; acting = [0, 1, 2]; why = 1;"), 0, 9, "overrides[0].why",
	  "unknown key" },

	/* missing fields */
	{ "cluster_id = 7;\ntargets = (\n" T0 T1 T2 POOL(""), 0, 1, "epoch", "missing" },
	{ "epoch = 1;\ntargets = (\n" T0 T1 T2 POOL(""), 0, 1, "cluster_id", "missing" },
	{ "epoch = 1;\ncluster_id = 7;\n", 0, 1, "targets", "missing" },
	{ HDR T0 "{ id = 1; host = \"h1\"; addr = \"127.0.0.1\"; device = \"/d1\"; },\n" T2
	  POOL(""), 0, 5, "targets[1].port", "missing" },
	{ HDR "{ host = \"h0\"; addr = \"127.0.0.1\"; port = 7400; device = \"/d0\"; },\n" T1 T2
	  POOL(""), 0, 4, "targets[0].id", "missing" },
	{ HDR TGTS "pools = ( { name = \"p\"; id = 1; replicas = 3; } );\n", 0, 8,
	  "pools[0].pg_num", "missing" },
	{ BASE VOL(""), 0, 9, "volumes[0].size", "missing" },
	{ BASE OVR("pg = 1;"), 0, 9, "overrides[0].acting", "missing" },
	{ BASE "hierarchy = ( { rack = \"r\"; } );\n", 0, 9, "hierarchy[0].hosts", "missing" },

	/* wrong types */
	{ "epoch = \"1\";\ncluster_id = 7;\n", 0, 1, "epoch", "expected an integer, not a string" },
	{ HDR "{ id = 0; host = \"h0\"; addr = \"127.0.0.1\"; port = 7400.0; device = \"/d0\"; },\n"
	  T1 T2 POOL(""), 0, 4, "targets[0].port", "expected an integer, not a float" },
	{ HDR TG(0, "h0", 7400, " weight = \"heavy\";") ",\n" T1 T2 POOL(""), 0, 4,
	  "targets[0].weight", "expected a number" },
	{ "epoch = 1;\ncluster_id = 7;\ntargets = { a = 1; };\n", 0, 3, "targets",
	  "expected a list" },
	{ "epoch = 1;\ncluster_id = 7;\ntargets = ( 1 );\n", 0, 3, "targets[0]",
	  "expected a group" },
	{ BASE OVR("pg = 1; acting = ( 0, 1, \"x\" );"), 0, 9, "overrides[0].acting[2]",
	  "expected a target id" },
	{ BASE "hierarchy = ( { rack = \"r\"; hosts = ( \"h0\", 1 ); } );\n", 0, 9,
	  "hierarchy[0].hosts[1]", "expected a host name string" },

	/* ranges and formats */
	{ "epoch = 0;\ncluster_id = 7;\n", 0, 1, "epoch", "out of range 1.." },
	{ BASE "extent_size = 6144;\n", 0, 9, "extent_size", "not a power of two" },
	{ BASE "extent_size = 2048;\n", 0, 9, "extent_size", "out of range 4096.." },
	{ HDR TG(0, "h0", 0, "") ",\n" T1 T2 POOL(""), 0, 4, "targets[0].port",
	  "out of range 1..65535" },
	{ HDR TG(0, "h0", 70000, "") ",\n" T1 T2 POOL(""), 0, 4, "targets[0].port",
	  "out of range 1..65535" },
	{ HDR T0 TG(1, "h1", 7401, " weight = 70000.0;") ",\n" T2 POOL(""), 0, 5,
	  "targets[1].weight", "out of range 0..65535" },
	{ HDR T0 T1 TG(2, "h2", 7402, " weight = -1.0;") "\n);\n" POOL(""), 0, 6,
	  "targets[2].weight", "out of range 0..65535" },
	{ HDR TG(0, "h0", 7400, " state = \"up,sideways\";") ",\n" T1 T2 POOL(""), 0, 4,
	  "targets[0].state", "unknown state \"sideways\"" },
	{ HDR TG(0, "h0", 7400, " state = \"up,down\";") ",\n" T1 T2 POOL(""), 0, 4,
	  "targets[0].state", "up/down twice" },
	{ HDR "{ id = 0; host = \"h0\"; addr = \"127.0.0.256\"; port = 7400; device = \"/d0\"; },\n"
	  T1 T2 POOL(""), 0, 4, "targets[0].addr", "neither an IPv4" },
	{ HDR TG(0, "h 0", 7400, "") ",\n" T1 T2 POOL(""), 0, 4, "targets[0].host",
	  "names use only" },
	{ HDR TG(0, LONG64, 7400, "") ",\n" T1 T2 POOL(""), 0, 4, "targets[0].host",
	  "longer than 63 bytes" },
	{ "epoch = 1;\ncluster_id = 7;\ntargets = ();\n", 0, 3, "targets", "empty" },

	/* duplicates */
	{ HDR T0 TG(0, "h1", 7401, "") ",\n" T2 POOL(""), 0, 5, "targets[1].id",
	  "duplicate id 0" },
	{ HDR T0 TG(1, "h1", 7400, "") ",\n" T2 POOL(""), 0, 5, "targets[1].port",
	  "127.0.0.1:7400 is already used by targets[0]" },
	{ HDR "{ id = 0; host = \"h0\"; addr = \"::1\"; port = 7400; device = \"/d0\"; },\n"
	  "{ id = 1; host = \"h1\"; addr = \"0:0::1\"; port = 7400; device = \"/d1\"; },\n"
	  T2 POOL(""), 0, 5, "targets[1].port", "already used" },
	{ HDR T0 "{ id = 1; host = \"h0\"; addr = \"127.0.0.1\"; port = 7401; device = \"/d0\"; },\n"
	  T2 POOL(""), 0, 5, "targets[1].device", "already used" },
	{ BASE "hierarchy = (\n{ rack = \"r0\"; hosts = (\"h0\", \"h1\"); },\n"
	  "{ rack = \"r0\"; hosts = (\"h2\"); }\n);\n", 0, 11, "hierarchy[1].rack",
	  "duplicate rack \"r0\"" },
	{ BASE "hierarchy = (\n{ rack = \"r0\"; hosts = (\"h0\", \"h1\"); },\n"
	  "{ rack = \"r1\"; hosts = (\"h2\",\n\"h1\"); }\n);\n", 0, 12, "hierarchy[1].hosts",
	  "host \"h1\" is in two racks" },
	{ BASE "hierarchy = ( { rack = \"r0\"; hosts = (\"h0\", \"h1\", \"h0\", \"h2\"); } );\n",
	  0, 9, "hierarchy[0].hosts", "listed twice" },
	{ HDR TGTS "pools = (\n{ name = \"p\"; id = 1; replicas = 1; pg_num = 64; },\n"
	  "{ name = \"p\"; id = 2; replicas = 1; pg_num = 64; }\n);\n", 0, 10, "pools[1].name",
	  "duplicate pool \"p\"" },
	{ HDR TGTS "pools = (\n{ name = \"p\"; id = 1; replicas = 1; pg_num = 64; },\n"
	  "{ name = \"q\"; id = 1; replicas = 1; pg_num = 64; }\n);\n", 0, 10, "pools[1].id",
	  "duplicate id 1" },
	{ BASE "volumes = (\n{ name = \"v\"; id = 1; size = \"1G\"; pool = \"p\"; },\n"
	  "{ name = \"v\"; id = 2; size = \"1G\"; pool = \"p\"; }\n);\n", 0, 11,
	  "volumes[1].name", "duplicate volume \"v\"" },
	{ BASE "volumes = (\n{ name = \"v\"; id = 1; size = \"1G\"; pool = \"p\"; },\n"
	  "{ name = \"w\"; id = 1; size = \"1G\"; pool = \"p\"; }\n);\n", 0, 11,
	  "volumes[1].id", "duplicate id 1" },
	{ BASE "overrides = (\n{ pool = \"p\"; pg = 5; acting = [0, 1, 2]; },\n"
	  "{ pool = \"p\"; pg = 5; acting = [2, 1, 0]; }\n);\n", 0, 11, "overrides[1].pg",
	  "already has an override" },
	/* pg_temp: 1 .. replicas targets, one entry per PG */
	{ BASE "pg_temp = (\n{ pool = \"p\"; pg = 5; acting = [0, 1]; },\n"
	  "{ pool = \"p\"; pg = 5; acting = [2]; }\n);\n", 0, 11, "pg_temp[1].pg",
	  "is already pinned" },
	{ BASE "pg_temp = ( { pool = \"p\"; pg = 1; acting = []; } );\n", 0, 9,
	  "pg_temp[0].acting", "0 targets" },
	{ BASE "pg_temp = ( { pool = \"p\"; pg = 1; acting = [0, 0]; } );\n", 0, 9,
	  "pg_temp[0].acting[1]", "appears twice" },
	{ BASE "pg_temp = ( { pool = \"p\"; pg = 1; acting = [9]; } );\n", 0, 9,
	  "pg_temp[0].acting[0]", "unknown target 9" },

	/* hierarchy */
	{ BASE "hierarchy = ( { rack = \"r0\"; hosts = (\"h0\", \"h1\"); } );\n", 0, 6,
	  "targets[2].host", "host \"h2\" is in no rack" },

	/* pools */
	{ HDR TGTS POOL(" failure_domain = \"rack\";"), 0, 8, "pools[0].failure_domain",
	  "needs 3 racks with nonzero weight for 3 replicas; the map has 1" },
	{ HDR T0 T1 TG(2, "h2", 7402, " weight = 0.0;") "\n);\n" POOL(""), 0, 8,
	  "pools[0].failure_domain", "needs 3 hosts with nonzero weight for 3 replicas; the map has 2" },
	{ HDR TGTS POOL(" failure_domain = \"room\";"), 0, 8, "pools[0].failure_domain",
	  "unknown type \"room\"" },
	{ HDR TGTS POOL(" min_size = 4;"), 0, 8, "pools[0].min_size", "out of range 1..3" },
	{ HDR TGTS POOL(" min_size = 0;"), 0, 8, "pools[0].min_size", "out of range 1..3" },
	{ HDR TGTS "pools = ( { name = \"p\"; id = 1; replicas = 9; pg_num = 64; } );\n", 0, 8,
	  "pools[0].replicas", "out of range 1..8" },
	{ HDR TGTS "pools = ( { name = \"p\"; id = 1; replicas = 0; pg_num = 64; } );\n", 0, 8,
	  "pools[0].replicas", "out of range 1..8" },
	{ HDR TGTS "pools = ( { name = \"p\"; id = 1; replicas = 3; pg_num = 100; } );\n", 0, 8,
	  "pools[0].pg_num", "100 is not a power of two" },
	{ HDR TGTS "pools = ( { name = \"p\"; id = 1; replicas = 3; pg_num = 0; } );\n", 0, 8,
	  "pools[0].pg_num", "out of range 1..1048576" },
	{ HDR TGTS "pools = ( { name = \"p\"; id = 1; replicas = 3; pg_num = 2097152; } );\n", 0,
	  8, "pools[0].pg_num", "out of range 1..1048576" },

	/* volumes */
	{ BASE VOL(" size = 0;"), 0, 9, "volumes[0].size", "zero" },
	{ BASE VOL(" size = 1000;"), 0, 9, "volumes[0].size",
	  "not a multiple of the extent size 1048576" },
	{ BASE VOL(" size = \"1X\";"), 0, 9, "volumes[0].size", "not a size" },
	{ BASE VOL(" size = -1048576;"), 0, 9, "volumes[0].size", "negative" },
	{ BASE "volumes = ( { name = \"v\"; id = 1; pool = \"q\"; size = \"1G\"; } );\n", 0, 9,
	  "volumes[0].pool", "unknown pool \"q\"" },

	/* overrides */
	{ BASE "overrides = ( { pool = \"q\"; pg = 1; acting = [0, 1, 2]; } );\n", 0, 9,
	  "overrides[0].pool", "unknown pool \"q\"" },
	{ BASE OVR("pg = 1; acting = [0, 1, 9];"), 0, 9, "overrides[0].acting[2]",
	  "unknown target 9" },
	{ BASE OVR("pg = 64; acting = [0, 1, 2];"), 0, 9, "overrides[0].pg",
	  "not below pg_num 64" },
	{ BASE OVR("pg = 1; acting = [0, 1];"), 0, 9, "overrides[0].acting",
	  "2 targets for pool \"p\" of 3 replicas" },
	{ BASE OVR("pg = 1; acting = [0, 1, 0];"), 0, 9, "overrides[0].acting[2]",
	  "target 0 appears twice" },
};

Test(map_errors, table)
{
	cr_assert_geq(sizeof(bad) / sizeof(bad[0]), 30);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const struct bad *b = &bad[i];
		size_t len = b->len ? b->len : strlen(b->text);
		struct wf_map_err err;
		struct wf_map map;
		char prefix[160];
		int r;

		memset(&map, 0xa5, sizeof(map));
		r = wf_map_load_buf(b->text, len, "t.conf", &map, &err);
		snprintf(prefix, sizeof(prefix), "t.conf:%d: %s: ", b->line, b->field);
		cr_expect_eq(r, -EINVAL, "row %zu: returned %d (%s)", i, r, err.msg);
		cr_expect(!strncmp(err.msg, prefix, strlen(prefix)),
			  "row %zu: message \"%s\" does not start with \"%s\"", i, err.msg, prefix);
		cr_expect(strstr(err.msg, b->what) != NULL,
			  "row %zu: message \"%s\" lacks \"%s\"", i, err.msg, b->what);
		/* a failed load leaves an empty map that is safe to free */
		cr_expect(map.targets == NULL && map.nodes == NULL && map.ntargets == 0,
			  "row %zu: map not cleared", i);
		wf_map_free(&map);
	}
}

Test(map_errors, missing_file)
{
	struct wf_map_err err;
	struct wf_map map;

	cr_assert_eq(wf_map_load("/nonexistent/weft.conf", &map, &err), -ENOENT);
	cr_assert(strstr(err.msg, "/nonexistent/weft.conf: cannot open") != NULL, "%s", err.msg);
}

Test(map_errors, base_is_valid)
{
	/* the rows above each break this one valid map in one place */
	static const char text[] = BASE VOL(" size = \"1G\";") OVR("pg = 1; acting = [0, 1, 2];");
	struct wf_map_err err;
	struct wf_map map;

	cr_assert_eq(wf_map_load_buf(text, strlen(text), "t.conf", &map, &err), 0, "%s", err.msg);
	wf_map_free(&map);
}
