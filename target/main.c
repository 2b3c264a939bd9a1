/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-target: serve target N of a cluster map.  Command line, --format,
 * daemonizing, the pid file and the startup checks; the serving itself is
 * in reactor.c and conn.c.  Exit codes: 0 clean stop, 1 startup failure
 * (with the reason on stderr), 2 bad arguments.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "target/target.h"
#include "weft_version.h"

static const char usage_text[] =
"usage: weft-target -c MAP --id N [options]\n"
"  -c, --config MAP       cluster map (libconfig); the device and address\n"
"                         come from target N's entry\n"
"  -i, --id N             target id to serve\n"
"  -f, --foreground       do not daemonize (log to stderr)\n"
"  -p, --pid-file P       write the pid here once listening\n"
"  -r, --run-dir D        unix data and control sockets (default /run/weft)\n"
"      --cores N          reactors: threads, each with its own io_uring,\n"
"                         connections and slots (default 1); reactor k\n"
"                         listens on the port + k (docs/target.md, Cores)\n"
"  -t, --transport T      tcp (default) or verbs (also called rdma)\n"
"      --slots N          staging slots per connection (default 32)\n"
"      --slot-size BYTES  bytes per slot, multiple of 4096 (default 128K)\n"
"      --max-conns N      connections served at once per reactor (default\n"
"                         16); slot memory = slots x slot-size x max-conns\n"
"                         x cores\n"
"      --max-conns-per-peer N  of those, at most N from one peer host (tcp,\n"
"                         rdma) or local uid (unix); 0 (default): no limit\n"
"                         of its own\n"
"      --max-conns-per-key N  of those, at most N of one key (the targets'\n"
"                         own key excepted); 0 (default): no limit\n"
"      --max-slots-per-key N  staging slots granted to one key's\n"
"                         connections together: a GRANT gets what is left,\n"
"                         none left is refused; 0 (default): no limit\n"
"      --max-inflight-per-key N  requests of one key in service at once;\n"
"                         more wait their turn; 0 (default): no limit\n"
"      --idle-timeout MS  close a connection with no traffic this long\n"
"                         (default 300000; 0: never)\n"
"      --evict-idle MS    pool (or a peer's share) full: the connection idle\n"
"                         the longest, at least MS, makes room (default 1000)\n"
"      --trust-group G    local peers of group G (name or gid) may also\n"
"                         use the sockets, get the device fd for short-circuit\n"
"                         reads and RELOAD (default: only root and our uid)\n"
"      --keyring F        keys (docs/security.md; default $WEFT_KEYRING):\n"
"                         every connection must prove a key of F (unless\n"
"                         the map says auth = \"none\")\n"
"      --key NAME         our key in F, shown to other targets (default\n"
"                         $WEFT_KEY): one of the map's peer_keys\n"
"      --keepalive S      TCP keepalive: probe a peer idle S seconds, drop it\n"
"                         after 3 unanswered probes S/3 apart (default 30;\n"
"                         0: off)\n"
"      --poll-us US       busy-poll this long before sleeping (default 0:\n"
"                         sleep at once; spin on dedicated cores)\n"
"      --recovery-qd N    copies to members being brought up to date in\n"
"                         flight per reactor (default 4; 1 .. slots)\n"
"      --recovery-mbps N  their bandwidth per reactor in MiB/s (default\n"
"                         256; 0: no limit)\n"
"      --pg-log N         entries of each PG's log of recent writes, per\n"
"                         reactor (default 256, 24 bytes each; 0: no log,\n"
"                         members coming back get the whole PG)\n"
"      --cache MODE       auto (default), volatile or none: the device's\n"
"                         write cache (docs/store.md, durability)\n"
"      --listen ADDR      listen here instead of the map's addr:port\n"
"                         (tests: tcp:127.0.0.1:0)\n"
"      --etcd URL         the map from etcd (http://HOST:PORT): saved as\n"
"                         MAP at start and on every change; lease and\n"
"                         registration (docs/control-plane.md)\n"
"      --etcd-prefix P    its keys under P (default /weft/)\n"
"      --etcd-ttl S       lease time to live (default 5 s; 2 .. 3600)\n"
"      --read-lease-ms MS  read leases this long (default 2000; 0: off, a\n"
"                         primary that missed an epoch may serve stale\n"
"                         reads; at most 3000, and with --etcd under half\n"
"                         the --etcd-ttl; docs/replication.md)\n"
"      --metrics HOST:PORT  Prometheus metrics at http://HOST:PORT/metrics\n"
"                         (off by default; port 0: any free one, written\n"
"                         to RUN_DIR/target-ID.metrics)\n"
"      --log-level L      err, warning, info (default) or debug: lines\n"
"                         above L are dropped\n"
"      --syslog           log to syslog (facility daemon; the journal under\n"
"                         systemd) instead of stderr or the log file\n"
"      --fault-exit-after-local-write N  for fault tests only: die (SIGKILL)\n"
"                         once the own write of the Nth replicated write\n"
"                         this target leads is done, before it answers\n"
"                         (default 0: never)\n"
"      --fault-no-lease   for upgrade tests only: behave as a build before\n"
"                         read leases (no leases asked, granted or told;\n"
"                         a link that sends LEASE or MAP_GET is closed)\n"
"      --format           initialise the device and exit\n"
"      --force            with --format: overwrite an existing store\n"
"  -h, --help\n"
"  -V, --version\n"
"Exit 0 on a clean stop (SIGTERM/SIGINT: in-flight requests drained), 1 when\n"
"it cannot start or fails, 2 on bad arguments.\n";

static int __attribute__((format(printf, 1, 2))) bad_arg(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "weft-target: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(weft-target --help for usage)\n", stderr);
	return 2;
}

/* Size with an optional K/M/G suffix (binary). */
static int parse_u32(const char *s, uint32_t *out, bool suffix)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno)
		return -EINVAL;
	if (suffix && *end) {
		int sh = *end == 'K' || *end == 'k' ? 10 : *end == 'M' || *end == 'm' ?
			 20 : *end == 'G' || *end == 'g' ? 30 : -1;

		if (sh < 0 || v > (UINT32_MAX >> sh))
			return -EINVAL;
		v <<= sh;
		end++;
	}
	if (*end || v > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

enum {
	O_CORES = 256, O_SLOTS, O_SLOT_SIZE, O_MAX_CONNS, O_POLL, O_CACHE,
	O_LISTEN, O_FORMAT, O_FORCE, O_REC_QD, O_REC_MBPS, O_PG_LOG, O_LOG_LEVEL, O_SYSLOG,
	O_ETCD, O_ETCD_PREFIX, O_ETCD_TTL, O_READ_LEASE, O_METRICS, O_FAULT_WRITES, O_FAULT_NO_LEASE, O_PER_PEER, O_PER_KEY, O_SLOTS_PER_KEY, O_INFLIGHT_PER_KEY, O_IDLE, O_EVICT, O_KEEPALIVE,
	O_TRUST_GROUP, O_KEYRING, O_KEY,
};

/* Keys (docs/security.md): a keyring that loads (mode 0600) and holds
 * our own key, which the map neither revokes nor leaves out of its
 * peer_keys (when it has them); none when the map requires keys is
 * refused. */
static int check_keys(const struct wf_tgt_cfg *cfg, const struct wf_tgt_map *m)
{
	struct wf_keyring kr;
	char err[512];
	bool ours;

	if (wf_auth_selftest()) {
		fprintf(stderr, "weft-target: libcrypto's HMAC-SHA256 or RNG does "
			"not work\n");
		return 1;
	}
	if (!cfg->keyring) {
		if (m->map.auth != WF_MAP_AUTH_REQUIRED)
			return 0;
		fprintf(stderr, "weft-target: the map says auth = \"required\": "
			"give --keyring F (or $WEFT_KEYRING) and --key NAME\n");
		return 1;
	}
	if (wf_keyring_load(cfg->keyring, &kr, err, sizeof(err))) {
		fprintf(stderr, "weft-target: %s\n", err);
		return 1;
	}
	ours = wf_keyring_find(&kr, cfg->key_name) != NULL;
	wf_keyring_free(&kr);
	if (!ours) {
		fprintf(stderr, "weft-target: keyring %s has no key %s (--key)\n",
			cfg->keyring, cfg->key_name);
		return 1;
	}
	if (wf_tgt_key_revoked(m, cfg->key_name)) {
		fprintf(stderr, "weft-target: key %s is revoked in the map\n",
			cfg->key_name);
		return 1;
	}
	/* A map that names the targets' keys must name ours, or every
	 * other target would refuse what we send it as a client's. */
	if (wf_tgt_peer_keys_check(cfg, m, err, sizeof(err))) {
		fprintf(stderr, "weft-target: %s\n", err);
		return 1;
	}
	return 0;
}

/* A limit of the pool's (0: none of its own): connections per peer or
 * per key (0 .. --max-conns' cap), slots or requests per key (0 .. what
 * a reactor can hold).  0, or the exit code of bad arguments. */
static int parse_limit(int o, const char *arg, struct wf_tgt_cfg *cfg)
{
	static const struct {
		int o;
		const char *name;
		uint32_t max;
		size_t off;
	} lim[] = {
		{ O_PER_PEER, "max-conns-per-peer", WF_TGT_MAX_CONNS,
		  offsetof(struct wf_tgt_cfg, max_conns_per_peer) },
		{ O_PER_KEY, "max-conns-per-key", WF_TGT_MAX_CONNS,
		  offsetof(struct wf_tgt_cfg, max_conns_per_key) },
		{ O_SLOTS_PER_KEY, "max-slots-per-key",
		  WF_TGT_MAX_CONNS * WF_TGT_MAX_SLOTS,
		  offsetof(struct wf_tgt_cfg, max_slots_per_key) },
		{ O_INFLIGHT_PER_KEY, "max-inflight-per-key",
		  WF_TGT_MAX_CONNS * WF_TGT_MAX_SLOTS,
		  offsetof(struct wf_tgt_cfg, max_inflight_per_key) },
	};
	uint32_t v;

	for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]); i++) {
		if (lim[i].o != o)
			continue;
		if (parse_u32(arg, &v, false) || v > lim[i].max)
			return bad_arg("--%s: '%s' is not 0 .. %u", lim[i].name,
				       arg, lim[i].max);
		memcpy((char *)cfg + lim[i].off, &v, sizeof(v));
		return 0;
	}
	return 2;
}

static int parse_args(int argc, char **argv, struct wf_tgt_cfg *cfg)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "id", required_argument, NULL, 'i' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "pid-file", required_argument, NULL, 'p' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "transport", required_argument, NULL, 't' },
		{ "cores", required_argument, NULL, O_CORES },
		{ "slots", required_argument, NULL, O_SLOTS },
		{ "slot-size", required_argument, NULL, O_SLOT_SIZE },
		{ "max-conns", required_argument, NULL, O_MAX_CONNS },
		{ "max-conns-per-peer", required_argument, NULL, O_PER_PEER },
		{ "max-conns-per-key", required_argument, NULL, O_PER_KEY },
		{ "max-slots-per-key", required_argument, NULL, O_SLOTS_PER_KEY },
		{ "max-inflight-per-key", required_argument, NULL, O_INFLIGHT_PER_KEY },
		{ "idle-timeout", required_argument, NULL, O_IDLE },
		{ "evict-idle", required_argument, NULL, O_EVICT },
		{ "keepalive", required_argument, NULL, O_KEEPALIVE },
		{ "trust-group", required_argument, NULL, O_TRUST_GROUP },
		{ "keyring", required_argument, NULL, O_KEYRING },
		{ "key", required_argument, NULL, O_KEY },
		{ "poll-us", required_argument, NULL, O_POLL },
		{ "recovery-qd", required_argument, NULL, O_REC_QD },
		{ "recovery-mbps", required_argument, NULL, O_REC_MBPS },
		{ "pg-log", required_argument, NULL, O_PG_LOG },
		{ "cache", required_argument, NULL, O_CACHE },
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "format", no_argument, NULL, O_FORMAT },
		{ "force", no_argument, NULL, O_FORCE },
		{ "etcd", required_argument, NULL, O_ETCD },
		{ "etcd-prefix", required_argument, NULL, O_ETCD_PREFIX },
		{ "etcd-ttl", required_argument, NULL, O_ETCD_TTL },
		{ "read-lease-ms", required_argument, NULL, O_READ_LEASE },
		{ "metrics", required_argument, NULL, O_METRICS },
		{ "fault-exit-after-local-write", required_argument, NULL,
		  O_FAULT_WRITES },
		{ "fault-no-lease", no_argument, NULL, O_FAULT_NO_LEASE },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "log-level", required_argument, NULL, O_LOG_LEVEL },
		{ "syslog", no_argument, NULL, O_SYSLOG },
		{ NULL, 0, NULL, 0 },
	};
	bool have_id = false, lease_set = false;
	uint32_t v;
	int o;

	memset(cfg, 0, sizeof(*cfg));
	cfg->run_dir = WF_TGT_DEFAULT_RUN_DIR;
	cfg->cores = 1;
	cfg->log_level = WF_TGT_LOG_INFO;
	cfg->backend = WF_BACKEND_TCP;
	cfg->slots = WF_TGT_DEFAULT_SLOTS;
	cfg->slot_size = WF_TGT_DEFAULT_SLOT_SIZE;
	cfg->max_conns = WF_TGT_DEFAULT_MAX_CONNS;
	cfg->idle_ms = WF_TGT_DEFAULT_IDLE_MS;
	cfg->evict_ms = WF_TGT_DEFAULT_EVICT_MS;
	cfg->keepalive_s = WF_TGT_DEFAULT_KEEPALIVE;
	cfg->trust_gid = (gid_t)-1;
	cfg->poll_us = 0;      /* see docs/target.md: spinning starves
	                        * peers on shared cores */
	cfg->recovery_qd = 4;
	cfg->recovery_mbps = 256;
	cfg->pg_log = WF_TGT_DEFAULT_PG_LOG;
	cfg->ready_fd = -1;
	cfg->etcd_prefix = "/weft/";
	cfg->etcd_ttl = 5;
	cfg->read_lease_ms = WF_TGT_DEFAULT_LEASE_MS;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":c:i:fp:r:t:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			cfg->map_path = optarg;
			break;
		case 'i':
			if (parse_u32(optarg, &v, false) || v > INT32_MAX)
				return bad_arg("--id: '%s' is not a target id (0 .. 2^31-1)",
					       optarg);
			cfg->id = v;
			have_id = true;
			break;
		case 'f':
			cfg->foreground = true;
			break;
		case 'p':
			cfg->pid_file = optarg;
			break;
		case 'r':
			cfg->run_dir = optarg;
			break;
		case 't':
			if (!strcmp(optarg, "tcp"))
				cfg->backend = WF_BACKEND_TCP;
			else if (!strcmp(optarg, "verbs") || !strcmp(optarg, "rdma"))
				cfg->backend = WF_BACKEND_VERBS;
			else
				return bad_arg("--transport: '%s' is not tcp or verbs "
					       "(also called rdma)", optarg);
			break;
		case O_CORES:
			if (parse_u32(optarg, &v, false) || !v ||
			    v > WF_TGT_MAX_CORES)
				return bad_arg("--cores: '%s' is not 1 .. 256", optarg);
			cfg->cores = v;
			break;
		case O_SLOTS:
			if (parse_u32(optarg, &v, false) || !v || v > WF_TGT_MAX_SLOTS)
				return bad_arg("--slots: '%s' is not 1 .. 1024", optarg);
			cfg->slots = v;
			break;
		case O_SLOT_SIZE:
			if (parse_u32(optarg, &v, true) || v < WF_STORE_BLOCK ||
			    v > WF_TGT_MAX_SLOT_SIZE || v % WF_STORE_BLOCK)
				return bad_arg("--slot-size: '%s' is not a multiple of "
					       "4096 in 4K .. 16M", optarg);
			cfg->slot_size = v;
			break;
		case O_MAX_CONNS:
			if (parse_u32(optarg, &v, false) || !v || v > WF_TGT_MAX_CONNS)
				return bad_arg("--max-conns: '%s' is not 1 .. 4096",
					       optarg);
			cfg->max_conns = v;
			break;
		case O_PER_PEER:
		case O_PER_KEY:
		case O_SLOTS_PER_KEY:
		case O_INFLIGHT_PER_KEY:
			if (parse_limit(o, optarg, cfg))
				return 2;
			break;
		case O_IDLE:
			if (parse_u32(optarg, &v, false) || (v && v < 100))
				return bad_arg("--idle-timeout: '%s' is not 0 or "
					       "at least 100 (ms)", optarg);
			cfg->idle_ms = v;
			break;
		case O_EVICT:
			if (parse_u32(optarg, &v, false) || v > 86400000)
				return bad_arg("--evict-idle: '%s' is not 0 .. "
					       "86400000 (ms)", optarg);
			cfg->evict_ms = v;
			break;
		case O_KEEPALIVE:
			if (parse_u32(optarg, &v, false) || v > 86400)
				return bad_arg("--keepalive: '%s' is not 0 .. 86400 "
					       "(s)", optarg);
			cfg->keepalive_s = v;
			break;
		case O_TRUST_GROUP: {
			struct group *g = getgrnam(optarg);

			if (g)
				cfg->trust_gid = g->gr_gid;
			else if (!parse_u32(optarg, &v, false) && v != UINT32_MAX)
				cfg->trust_gid = (gid_t)v;
			else
				return bad_arg("--trust-group: no group '%s'", optarg);
			break;
		}
		case O_POLL:
			if (parse_u32(optarg, &v, false) || v > 1000000)
				return bad_arg("--poll-us: '%s' is not 0 .. 1000000",
					       optarg);
			cfg->poll_us = v;
			break;
		case O_REC_QD:
			if (parse_u32(optarg, &v, false) || !v || v > WF_TGT_MAX_SLOTS)
				return bad_arg("--recovery-qd: '%s' is not 1 .. 1024",
					       optarg);
			cfg->recovery_qd = v;
			break;
		case O_REC_MBPS:
			if (parse_u32(optarg, &v, false) || v > 1000000)
				return bad_arg("--recovery-mbps: '%s' is not 0 .. 1000000",
					       optarg);
			cfg->recovery_mbps = v;
			break;
		case O_PG_LOG:
			if (parse_u32(optarg, &v, false) || v > WF_TGT_MAX_PG_LOG)
				return bad_arg("--pg-log: '%s' is not 0 .. %u", optarg,
					       WF_TGT_MAX_PG_LOG);
			cfg->pg_log = v;
			break;
		case O_CACHE:
			if (!strcmp(optarg, "auto"))
				cfg->cache = WF_STORE_CACHE_AUTO;
			else if (!strcmp(optarg, "volatile"))
				cfg->cache = WF_STORE_CACHE_VOLATILE;
			else if (!strcmp(optarg, "none"))
				cfg->cache = WF_STORE_CACHE_NONE;
			else
				return bad_arg("--cache: '%s' is not auto, volatile "
					       "or none", optarg);
			break;
		case O_LISTEN:
			cfg->listen_override = optarg;
			break;
		case O_FORMAT:
			cfg->format = true;
			break;
		case O_FORCE:
			cfg->force = true;
			break;
		case O_ETCD:
			if (strncmp(optarg, "http://", 7))
				return bad_arg("--etcd: '%s' is not an http:// URL", optarg);
			cfg->etcd_url = optarg;
			break;
		case O_ETCD_PREFIX:
			if (!optarg[0] || strlen(optarg) > 128)
				return bad_arg("--etcd-prefix: '%s' is not 1 .. 128 "
					       "characters", optarg);
			cfg->etcd_prefix = optarg;
			break;
		case O_METRICS:
			cfg->metrics = optarg;
			break;
		case O_FAULT_WRITES:
			if (parse_u32(optarg, &v, false))
				return bad_arg("--fault-exit-after-local-write: '%s' is "
					       "not a number", optarg);
			cfg->fault_after_writes = v;
			break;
		case O_FAULT_NO_LEASE:
			cfg->fault_no_lease = true;
			break;
		case O_KEYRING:
			cfg->keyring = optarg;
			break;
		case O_KEY:
			if (!wf_key_name_ok(optarg))
				return bad_arg("--key: '%s' is not a key name (1 .. %u "
					       "of [A-Za-z0-9._-])", optarg,
					       WF_KEY_NAME_MAX - 1);
			cfg->key_name = optarg;
			break;
		case O_ETCD_TTL:
			if (parse_u32(optarg, &v, false) || v < 2 || v > 3600)
				return bad_arg("--etcd-ttl: '%s' is not 2 .. 3600 s", optarg);
			cfg->etcd_ttl = v;
			break;
		case O_READ_LEASE:
			if (parse_u32(optarg, &v, false) || v > WF_TGT_MAX_LEASE_MS)
				return bad_arg("--read-lease-ms: '%s' is not 0 .. %u",
					       optarg, WF_TGT_MAX_LEASE_MS);
			cfg->read_lease_ms = v;
			cfg->read_lease_set = lease_set = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		case 'V':
			printf("weft-target (weft) %s\n", WEFT_PROJECT_VERSION);
			exit(0);
		case O_LOG_LEVEL:
			cfg->log_level = wf_tgt_log_level(optarg);
			if (cfg->log_level < 0)
				return bad_arg("--log-level: '%s' is not err, warning, "
					       "info or debug", optarg);
			break;
		case O_SYSLOG:
			cfg->syslog = true;
			break;
		case ':':
			return bad_arg("option '%s' needs a value", argv[optind - 1]);
		default:
			return bad_arg("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return bad_arg("unexpected argument '%s'", argv[optind]);
	if (!cfg->map_path)
		return bad_arg("%s", "-c MAP is required");
	if (!have_id)
		return bad_arg("%s", "--id N is required");
	/* The environment as weft's other programs read it. */
	if (!cfg->keyring && getenv("WEFT_KEYRING") && *getenv("WEFT_KEYRING"))
		cfg->keyring = getenv("WEFT_KEYRING");
	if (!cfg->key_name && getenv("WEFT_KEY") && wf_key_name_ok(getenv("WEFT_KEY")))
		cfg->key_name = getenv("WEFT_KEY");
	if (cfg->key_name && !cfg->keyring)
		return bad_arg("--key %s: no --keyring (nor $WEFT_KEYRING) holds it",
			       cfg->key_name);
	if (cfg->keyring && !cfg->key_name)
		return bad_arg("%s", "--keyring without --key NAME (nor $WEFT_KEY): "
			       "the key this target shows other targets");
	/* In etcd mode a dead target's leases must lapse before the keeper
	 * marks it down (its etcd lease, --etcd-ttl), so that failing over
	 * never waits for them: half the TTL at most. */
	if (cfg->etcd_url && cfg->read_lease_ms > cfg->etcd_ttl * 500u) {
		if (lease_set)
			return bad_arg("--read-lease-ms %u: with --etcd at most half "
				       "the --etcd-ttl (%u ms)", cfg->read_lease_ms,
				       cfg->etcd_ttl * 500u);
		cfg->read_lease_ms = cfg->etcd_ttl * 500u;
	}
	if (cfg->force && !cfg->format)
		return bad_arg("%s", "--force only goes with --format");
	if (cfg->recovery_qd > cfg->slots)
		cfg->recovery_qd = cfg->slots;  /* one slot of the recovery ring each */
	if ((uint64_t)cfg->slots * cfg->slot_size > (1u << 30))
		return bad_arg("%s", "--slots x --slot-size must be at most 1 GiB "
			       "(one io_uring registered buffer per ring)");
	/* Completion entries: (3 x slots + 23) per connection (reactor.c). */
	if ((3ull * cfg->slots + WF_TGT_SPARE_SENDS + 3) * (cfg->max_conns + 1ull) >
	    (1ull << 22))
		return bad_arg("%s", "slots x max-conns too large (completion queue "
			       "over 4M entries): lower --slots or --max-conns");
	if ((uint64_t)cfg->slots * cfg->slot_size * cfg->max_conns * cfg->cores >
	    (64ull << 30))
		return bad_arg("%s", "slot memory (slots x slot-size x max-conns x "
			       "cores) over 64 GiB");
	return 0;
}

/*
 * Daemonize before opening anything that must belong to the serving
 * process (io_uring, RDMA resources do not survive fork): fork, setsid,
 * fork again; the original process waits on a pipe until the daemon
 * reports that it listens (then exits 0) or why it failed (prints it,
 * exits 1).  A script can connect as soon as weft-target returns.
 */
static int daemonize(struct wf_tgt_cfg *cfg)
{
	int p[2], st;
	pid_t pid;
	char buf[1024];
	ssize_t n, got = 0;

	if (pipe2(p, O_CLOEXEC)) {
		fprintf(stderr, "weft-target: pipe: %s\n", strerror(errno));
		return 1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "weft-target: fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid > 0) {
		close(p[1]);
		while ((n = read(p[0], buf + got, sizeof(buf) - 1 - (size_t)got)) > 0 ||
		       (n < 0 && errno == EINTR))
			if (n > 0)
				got += n;
		buf[got] = 0;
		waitpid(pid, &st, 0);
		if (got > 0 && buf[0] == '0')
			exit(0);
		fprintf(stderr, "weft-target: %s\n",
			got > 1 ? buf + 1 : "the daemon died during startup");
		exit(1);
	}
	close(p[0]);
	if (setsid() < 0)
		_exit(1);
	pid = fork();
	if (pid < 0)
		_exit(1);
	if (pid > 0)
		_exit(0);
	cfg->ready_fd = p[1];
	/* Relative paths (map, device, run dir) keep working: the cwd
	 * stays as the user left it.  The umask is main()'s. */
	return 0;
}

/*
 * The run dir, made if missing with an explicit mode (0750, group
 * --trust-group if given): its sockets reach the device
 * (docs/security.md).
 * One that exists keeps its mode; its sockets get theirs at bind.
 */
static int run_dir(const struct wf_tgt_cfg *cfg)
{
	bool group = cfg->trust_gid != (gid_t)-1;
	struct stat sb;

	if (!stat(cfg->run_dir, &sb))
		return 0;
	if (mkdir(cfg->run_dir, 0700) && errno != EEXIST)
		goto fail;
	if ((group && chown(cfg->run_dir, (uid_t)-1, cfg->trust_gid)) ||
	    chmod(cfg->run_dir, 0750))
		goto fail;
	return 0;
fail:
	fprintf(stderr, "weft-target: run dir %s: %s\n", cfg->run_dir,
		strerror(errno));
	return 1;
}

/* Report the startup result: '0' or '1' + message. */
static void ready(struct wf_tgt_cfg *cfg, const char *err)
{
	char buf[1024];
	int n;

	if (cfg->ready_fd < 0) {
		if (err)
			fprintf(stderr, "weft-target: %s\n", err);
		return;
	}
	n = snprintf(buf, sizeof(buf), "%c%s", err ? '1' : '0', err ? err : "");
	if (n > 0 && write(cfg->ready_fd, buf, (size_t)n) < 0) {
		/* the parent is gone; nothing to tell */
	}
	close(cfg->ready_fd);
	cfg->ready_fd = -1;
}

/* Point stdio at /dev/null and stderr at RUN_DIR/target-ID.log. */
static void detach_stdio(const struct wf_tgt_cfg *cfg)
{
	char path[PATH_MAX];
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		close(fd);
	}
	snprintf(path, sizeof(path), "%s/target-%u.log", cfg->run_dir, cfg->id);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd >= 0) {
		dup2(fd, 2);
		close(fd);
	}
}

static const char *open_hint(int err)
{
	switch (err) {
	case -ENOENT:          return "device missing";
	case -EMEDIUMTYPE:     return "not a weft store (run weft-target --format)";
	case -ESTALE:          return "formatted for another cluster or target id";
	case -EBUSY:           return "another process holds the device";
	case -EPROTONOSUPPORT: return "store format version not supported";
	case -EBADMSG:         return "superblock checksum mismatch";
	case -EUCLEAN:         return "store damaged";
	default:               return strerror(-err);
	}
}

static int write_pid_file(const char *path, char *err, size_t errlen)
{
	char tmp[PATH_MAX], buf[32];
	int fd, n;

	n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		snprintf(err, errlen, "pid file path too long");
		return -ENAMETOOLONG;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		goto fail;
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (write(fd, buf, (size_t)n) != n) {
		close(fd);
		goto fail;
	}
	close(fd);
	/* Renamed into place, so a reader never sees a half-written file. */
	if (rename(tmp, path))
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "pid file %s: %s", path, strerror(errno));
	unlink(tmp);
	return -errno;
}

static int do_format(const struct wf_tgt_cfg *cfg, const struct wf_tgt_map *m)
{
	const struct wf_target *t = &m->map.targets[m->self];
	struct wf_store_err err = { { 0 } };
	int ret;

	ret = wf_store_format(t->device, m->map.cluster_id, cfg->id,
			      m->extent_size, cfg->force, &err);
	if (ret == -EEXIST) {
		fprintf(stderr, "weft-target: %s already holds a weft store; "
			"add --force to overwrite it\n", t->device);
		return 1;
	}
	if (ret) {
		fprintf(stderr, "weft-target: formatting %s: %s%s%s\n", t->device,
			err.msg[0] ? err.msg : strerror(-ret),
			ret == -ENOENT ? " (create the file first, e.g. "
			"truncate -s 10G FILE)" : "", "");
		return 1;
	}
	printf("formatted %s: cluster %llu, target %u, extent size %u\n",
	       t->device, (unsigned long long)m->map.cluster_id, cfg->id,
	       m->extent_size);
	return 0;
}

/* ---- reactors ---------------------------------------------------------- */

static void *reactor_thread(void *arg)
{
	struct wf_tgt_reactor *r = arg;

	return (void *)(intptr_t)wf_tgt_reactor_run(r);
}

/* Pin reactor k to the k-th CPU the process may use, when there is one
 * for every reactor; otherwise the scheduler places them. */
static void pin(pthread_t th, unsigned k, unsigned n, const cpu_set_t *allowed)
{
	cpu_set_t one;
	unsigned seen = 0;

	if ((unsigned)CPU_COUNT(allowed) < n)
		return;
	for (unsigned c = 0; c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, allowed) || seen++ != k)
			continue;
		CPU_ZERO(&one);
		CPU_SET(c, &one);
		if (pthread_setaffinity_np(th, sizeof(one), &one))
			wf_tgt_logl(WF_TGT_LOG_WARNING, "reactor %u: cannot pin to CPU %u", k, c);
		return;
	}
}

/*
 * One queue of the store and one map copy per reactor, then the reactors
 * in order (reactor 0 first: the others listen on its port + k).  Takes
 * map (also on failure).
 */
static int start_reactors(struct wf_tgt *tg, const struct wf_tgt_cfg *cfg,
			  struct wf_tgt_map *map, struct wf_store *store,
			  char *err, size_t errlen)
{
	struct wf_store *q = store;
	int ret;

	tg->cfg = cfg;
	tg->n = cfg->cores;
	tg->draining = cfg->cores;
	/* Before any reactor: their first map holds writes by it. */
	wf_tgt_leases_open(tg);
	tg->r = calloc(tg->n, sizeof(*tg->r));
	tg->th = calloc(tg->n, sizeof(*tg->th));
	if (!tg->r || !tg->th) {
		wf_tgt_map_free(map);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* Every queue exists before the first request: an extent's owner
	 * depends on how many there are. */
	for (unsigned k = 1; k < tg->n; k++) {
		ret = wf_store_add_queue(store, 256, &q);
		if (ret) {
			wf_tgt_map_free(map);
			snprintf(err, errlen, "store queue for reactor %u: %s "
				 "(io_uring)", k, strerror(-ret));
			return ret;
		}
	}
	for (unsigned k = 0; k < tg->n; k++) {
		struct wf_tgt_map *m = map;

		if (k > 0) {
			ret = wf_tgt_map_load(cfg->map_path, cfg->id, &m, err, errlen);
			if (ret)
				return ret;
		}
		q = k == 0 ? store : wf_store_queue_of(store, k);
		tg->r[k] = calloc(1, sizeof(*tg->r[k]));
		if (!tg->r[k]) {
			wf_tgt_map_free(m);
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		ret = wf_tgt_reactor_init(tg->r[k], tg, k, m, q, err, errlen);
		if (ret) {
			wf_tgt_map_free(m);
			free(tg->r[k]);
			tg->r[k] = NULL;
			return ret;
		}
	}
	return 0;
}

/* Reactor 0 runs on this thread, the others on their own. */
static int run_reactors(struct wf_tgt *tg)
{
	cpu_set_t allowed;
	bool can_pin = tg->n > 1 &&
		       !sched_getaffinity(0, sizeof(allowed), &allowed);
	int ret;

	for (unsigned k = 1; k < tg->n; k++) {
		ret = pthread_create(&tg->th[k], NULL, reactor_thread, tg->r[k]);
		if (ret) {
			wf_tgt_logl(WF_TGT_LOG_ERR, "reactor %u: no thread: %s", k, strerror(ret));
			wf_tgt_stop_all(tg, SIGTERM);
			break;
		}
		tg->started++;
		if (can_pin)
			pin(tg->th[k], k, tg->n, &allowed);
	}
	if (can_pin)
		pin(pthread_self(), 0, tg->n, &allowed);
	ret = wf_tgt_reactor_run(tg->r[0]);
	/* Reactor 0 leaves its loop last of all only by chance: make sure
	 * the others stop too (they do once stop is set). */
	wf_tgt_stop_all(tg, SIGTERM);
	for (unsigned k = 1; k <= tg->started; k++) {
		void *res;

		pthread_join(tg->th[k], &res);
		if (res)
			ret = -EIO;
	}
	return ret;
}

/* Teardown after the threads: store I/O of every queue done, reactors
 * freed with their maps, then the queues (the first one last). */
static void stop_reactors(struct wf_tgt *tg, struct wf_store *store)
{
	wf_tgt_quiesce(tg, 5000);
	for (unsigned k = 0; tg->r && k < tg->n; k++) {
		struct wf_tgt_reactor *r = tg->r[k];
		struct wf_tgt_map *m;

		if (!r)
			continue;
		m = r->map;     /* reloads replace it */
		wf_tgt_reactor_fini(r);
		wf_tgt_map_free(m);
	}
	for (unsigned k = 0; tg->r && k < tg->n; k++) {
		free(tg->r[k]);
		tg->r[k] = NULL;
	}
	for (unsigned k = wf_store_queues(store); k-- > 1;)
		wf_store_close(wf_store_queue_of(store, k));
	wf_store_close(store);
	free(tg->r);
	free(tg->th);
	tg->r = NULL;
	tg->th = NULL;
}

int main(int argc, char **argv)
{
	struct wf_tgt_cfg cfg;
	struct wf_tgt_map *map = NULL;
	struct wf_tgt_reactor *r;
	struct wf_tgt tg;
	struct wf_store_opts so = { .size = sizeof(so) };
	struct wf_store_err serr = { { 0 } };
	struct wf_store *store = NULL;
	struct wf_store_stat st;
	struct wf_tgt_etcd *agent = NULL;
	struct wf_tgt_metrics *metrics = NULL;
	char err[1024];
	bool cache_none_file;
	int ret;

	ret = parse_args(argc, argv, &cfg);
	if (ret)
		return ret;
	wf_tgt_log_setup(cfg.id, cfg.log_level, cfg.syslog);
	/* Whatever the caller's umask (000 included): files and sockets we
	 * make are never writable by others, and nobody else can connect
	 * to a socket before it gets its mode (wf_tgt_sock_mode). */
	umask(027);
	memset(&tg, 0, sizeof(tg));
	if (cfg.etcd_url && !cfg.format &&
	    wf_tgt_etcd_fetch(&cfg, err, sizeof(err))) {
		fprintf(stderr, "weft-target: %s\n", err);
		return 1;
	}
	ret = wf_tgt_map_load(cfg.map_path, cfg.id, &map, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "weft-target: cannot load the map: %s\n", err);
		return 1;
	}
	if (map->self < 0) {
		fprintf(stderr, "weft-target: %s (epoch %llu) has no target %u\n",
			cfg.map_path, (unsigned long long)map->epoch, cfg.id);
		wf_tgt_map_free(map);
		return 1;
	}
	if (!cfg.format && check_keys(&cfg, map)) {
		wf_tgt_map_free(map);
		return 1;
	}
	if (cfg.format) {
		ret = do_format(&cfg, map);
		wf_tgt_map_free(map);
		return ret;
	}
	if (run_dir(&cfg)) {
		wf_tgt_map_free(map);
		return 1;
	}
	if (!cfg.foreground && (ret = daemonize(&cfg)) != 0) {
		wf_tgt_map_free(map);
		return ret;
	}

	so.flags = WF_STORE_EXPECT_CLUSTER | WF_STORE_EXPECT_TARGET;
	so.cluster_id = map->map.cluster_id;
	so.target_id = cfg.id;
	so.cache = cfg.cache;
	/* Enough SQEs for every slot of every connection in one turn would
	 * be wasteful; the store queues internally past the SQ size. */
	so.ring_entries = 256;
	ret = wf_store_open(map->map.targets[map->self].device, &so, &store, &serr);
	if (ret) {
		snprintf(err, sizeof(err), "cannot open %s: %s%s%s",
			 map->map.targets[map->self].device, open_hint(ret),
			 serr.msg[0] ? ": " : "", serr.msg);
		goto fail;
	}
	wf_store_stat(store, &st);
	{
		struct stat sb;

		/* O_DIRECT completions on a file do not persist the file
		 * system's metadata (a write into a hole allocates blocks):
		 * only an fdatasync does, which --cache none never sends. */
		cache_none_file = cfg.cache == WF_STORE_CACHE_NONE &&
				  !stat(map->map.targets[map->self].device, &sb) &&
				  S_ISREG(sb.st_mode);
	}
	if (st.extent_size != map->extent_size) {
		snprintf(err, sizeof(err), "%s has extent size %u but the map says "
			 "%u", map->map.targets[map->self].device, st.extent_size,
			 map->extent_size);
		ret = -EINVAL;
		goto fail_store;
	}
	if (st.torn_blocks)
		wf_tgt_logl(WF_TGT_LOG_WARNING, "store: %u index block copies were torn or corrupt "
			   "(the other copies were used)", st.torn_blocks);
	if (wf_store_index_fd(store) < 0)
		wf_tgt_logl(WF_TGT_LOG_WARNING, "short-circuit reads disabled: this kernel cannot seal "
			   "the index view against writable mappings "
			   "(F_SEAL_FUTURE_WRITE)");

	{
		/* The rings are pinned (io_uring registered buffers): take
		 * all the locked memory the hard limit allows. */
		struct rlimit rl;

		if (!getrlimit(RLIMIT_MEMLOCK, &rl) && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_MEMLOCK, &rl);
		}
		/* Every connection and control session is a descriptor: the
		 * soft default (1024) is below --max-conns and the control
		 * sessions together. */
		if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	ret = start_reactors(&tg, &cfg, map, store, err, sizeof(err));
	map = NULL;     /* the reactors own their maps now */
	if (ret)
		goto fail_tg;
	r = tg.r[0];
	if (cfg.pid_file && write_pid_file(cfg.pid_file, err, sizeof(err))) {
		ret = -EIO;
		goto fail_tg;
	}
	if (!cfg.foreground)
		detach_stdio(&cfg);
	{
		char more[96] = "";

		if (tg.n > 1)
			snprintf(more, sizeof(more), " per reactor, %u reactors "
				 "(ports + 0 .. %u)", tg.n, tg.n - 1);
		wf_tgt_log("target %u serving %s (%llu extents of %u bytes, %llu "
			   "used) on %s and %s, map epoch %llu, %u x %u-byte slots "
			   "x %u connections%s",
			   cfg.id, r->map->map.targets[r->map->self].device,
			   (unsigned long long)st.extents, st.extent_size,
			   (unsigned long long)st.used, r->net_addr, r->unix_addr,
			   (unsigned long long)r->map->epoch, cfg.slots,
			   cfg.slot_size, cfg.max_conns, more);
		if (cache_none_file)
			wf_tgt_log("warning: --cache none on a regular file: its "
				   "file system metadata is never synced, so "
				   "acknowledged writes can be lost on a power "
				   "failure or kernel crash; --cache auto is "
				   "durable (docs/store.md)");
	}
	tg.epoch = r->map->epoch;
	if (cfg.etcd_url && (ret = wf_tgt_etcd_start(&tg, &cfg, &agent)) != 0) {
		snprintf(err, sizeof(err), "cannot start the etcd agent: %s",
			 strerror(-ret));
		goto fail_tg;
	}
	if (cfg.metrics &&
	    (ret = wf_tgt_metrics_start(&tg, &cfg, store, &metrics, err, sizeof(err))) != 0) {
		wf_tgt_etcd_stop(agent);
		goto fail_tg;
	}
	ready(&cfg, NULL);

	ret = run_reactors(&tg);
	wf_tgt_metrics_stop(metrics);
	wf_tgt_etcd_stop(agent);
	stop_reactors(&tg, store);
	if (cfg.pid_file)
		unlink(cfg.pid_file);
	wf_tgt_log("exit");
	return ret ? 1 : 0;

fail_tg:
	stop_reactors(&tg, store);
	ready(&cfg, err);
	return 1;

fail_store:
	wf_store_close(store);
fail:
	ready(&cfg, err);
	wf_tgt_map_free(map);
	return 1;
}
