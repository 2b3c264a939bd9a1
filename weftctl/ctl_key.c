/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weftctl key create|list|revoke|export|issue|peer: the keyring of this
 * host (proto/auth.h, docs/security.md).  Secrets are never printed: they
 * move between hosts as keyring files (key export, key issue).  A
 * revocation also goes into the map (-c MAP or --etcd): its revoked_keys
 * list, which every target refuses from that epoch on; key issue writes
 * the new key's access entries (and peer_keys with --peer) there, key peer
 * the map's peer_keys (the keys of targets).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "placement/placement.h"
#include "proto/auth.h"
#include "weftctl/ctl.h"

static int key_usage(FILE *f)
{
	fprintf(f, "usage: weftctl key create NAME [--keyring F] [-c MAP] [--json]\n"
		"       weftctl key list [--keyring F] [-c MAP] [--json]\n"
		"       weftctl key revoke NAME [--keyring F] [-c MAP] [--run-dir D] [--json]\n"
		"       weftctl key export NAME -o FILE [--keyring F] [--json]\n"
		"       weftctl key issue NAME --host HOST [--volume V [--ro|--rw]]...\n"
		"                         [--peer] -o FILE [--keyring F] -c MAP [--run-dir D] [--json]\n"
		"       weftctl key peer NAME [--remove [--yes]] [--keyring F] -c MAP [--run-dir D] [--json]\n"
		"  The keyring (default $WEFT_KEYRING, else %s) holds one\n"
		"  32-byte random secret per key name, mode 0600.  create adds a key\n"
		"  (refused when MAP lists NAME as revoked: names are not reused);\n"
		"  list names the keys (never the secrets) and MAP's revoked ones;\n"
		"  revoke removes the key and, with -c MAP (or --etcd), writes the\n"
		"  next epoch of MAP listing NAME in revoked_keys and tells the\n"
		"  targets, which refuse it from then on; export writes a keyring\n"
		"  FILE holding only NAME, to copy to the host that uses it.\n"
		"  issue creates NAME for HOST: adds it to the keyring, writes the\n"
		"  next epoch of MAP giving it each --volume (read-write, or\n"
		"  read-only with --ro after it; --peer: a target's key, listed in\n"
		"  peer_keys), tells the targets, and writes FILE holding NAME only\n"
		"  (mode 0600) to copy to HOST:%s.\n"
		"  peer lists NAME in MAP's peer_keys (the keys targets prove to\n"
		"  each other), or --remove takes it out.\n",
		WF_CTL_KEYRING_DEFAULT, WF_CTL_KEYRING_DEFAULT);
	return f == stdout ? 0 : 2;
}

const char *ctl_keyring_path(const char *given)
{
	const char *e = getenv("WEFT_KEYRING");

	if (given)
		return given;
	return e && *e ? e : WF_CTL_KEYRING_DEFAULT;
}

static struct wf_key ctl_own_key;
static int ctl_own_state;       /* 0 not looked, 1 none, 2 loaded, -errno */

const struct wf_key *ctl_auth_key(void)
{
	const char *name = getenv("WEFT_KEY");
	const char *path = ctl_keyring_path(NULL);
	struct wf_keyring kr;
	const struct wf_key *k;
	char err[512];
	int r;

	if (ctl_own_state)
		return ctl_own_state == 2 ? &ctl_own_key : NULL;
	ctl_own_state = 1;
	if (!name || !*name)
		return NULL;
	r = wf_keyring_load(path, &kr, err, sizeof(err));
	if (r) {
		fprintf(stderr, "weftctl: WEFT_KEY=%s: %s\n", name, err);
		return NULL;
	}
	k = wf_keyring_find(&kr, name);
	if (k) {
		ctl_own_key = *k;
		ctl_own_state = 2;
	} else {
		fprintf(stderr, "weftctl: WEFT_KEY=%s: keyring %s has no such key\n",
			name, path);
	}
	wf_keyring_free(&kr);
	return ctl_own_state == 2 ? &ctl_own_key : NULL;
}

/* The keyring at path into kr; a missing file is an empty keyring when
 * may_be_new.  0 or 1 (said). */
static int load(const char *path, struct wf_keyring *kr, bool may_be_new)
{
	char err[512];
	int r = wf_keyring_load(path, kr, err, sizeof(err));

	if (r == -ENOENT && may_be_new)
		return 0;
	if (r) {
		ctl_err("weftctl key: %s\n", err);
		return 1;
	}
	return 0;
}

static bool revoked_in(const struct wf_map *m, const char *name)
{
	for (uint32_t i = 0; i < m->nrevoked; i++)
		if (!strcmp(m->revoked[i], name))
			return true;
	return false;
}

/* Append name to a map's list of names (revoked_keys, peer_keys): 0 or
 * -ENOMEM.  The caller sorts (wf_map_keys_sort). */
static int names_add(char (**v)[WF_MAP_KEY_NAME], uint32_t *n, const char *name)
{
	char (*nv)[WF_MAP_KEY_NAME] = realloc(*v, (*n + 1) * sizeof(*nv));

	if (!nv)
		return -ENOMEM;
	*v = nv;
	memset(nv[*n], 0, WF_MAP_KEY_NAME);
	memcpy(nv[*n], name, strlen(name));
	(*n)++;
	return 0;
}

static int key_create(const char *kpath, const char *name, const char *map_path,
		      struct wf_json *j)
{
	struct wf_keyring kr;
	int r, ret = 1;

	if (map_path) {
		struct wf_map m;

		if (ctl_map_load_copy(map_path, &m))
			return 1;
		r = revoked_in(&m, name);
		wf_map_edit_free(&m);
		if (r) {
			ctl_err("weftctl key create: %s lists key %s as revoked: "
				"pick another name\n", map_path, name);
			return 1;
		}
	}
	if (load(kpath, &kr, true))
		return 1;
	r = wf_keyring_add(&kr, name);
	if (r == -EEXIST)
		ctl_err("weftctl key create: %s already has a key %s\n", kpath, name);
	else if (r)
		ctl_err("weftctl key create: %s\n", strerror(-r));
	else if ((r = wf_keyring_save(kpath, &kr)))
		ctl_err("weftctl key create: cannot write %s: %s\n", kpath,
			strerror(-r));
	else
		ret = 0;
	if (!ret && j) {
		wf_json_str(j, "action", "create");
		wf_json_str(j, "name", name);
		wf_json_str(j, "keyring", kpath);
	} else if (!ret) {
		printf("%s: key %s created\n", kpath, name);
	}
	wf_keyring_free(&kr);
	return ret;
}

static int key_list(const char *kpath, const char *map_path, struct wf_json *j)
{
	struct wf_keyring kr;
	struct wf_map m;

	memset(&m, 0, sizeof(m));
	if (map_path && ctl_map_load_copy(map_path, &m))
		return 1;
	if (load(kpath, &kr, false)) {
		wf_map_edit_free(&m);
		return 1;
	}
	if (j) {
		wf_json_str(j, "action", "list");
		wf_json_str(j, "keyring", kpath);
		wf_json_arr_begin(j, "keys");
		for (uint32_t i = 0; i < kr.n; i++) {
			wf_json_obj_begin(j, NULL);
			wf_json_str(j, "name", kr.keys[i].name);
			wf_json_bool(j, "revoked", revoked_in(&m, kr.keys[i].name));
			wf_json_obj_end(j);
		}
		wf_json_arr_end(j);
		if (map_path) {
			wf_json_arr_begin(j, "revoked");
			for (uint32_t i = 0; i < m.nrevoked; i++)
				wf_json_str(j, NULL, m.revoked[i]);
			wf_json_arr_end(j);
		}
	} else {
		printf("%s: %u key%s\n", kpath, kr.n, kr.n == 1 ? "" : "s");
		for (uint32_t i = 0; i < kr.n; i++)
			printf("  %s%s\n", kr.keys[i].name, revoked_in(&m, kr.keys[i].name) ?
			       "  (revoked in the map)" : "");
		if (map_path) {
			printf("%s: %u revoked\n", map_path, m.nrevoked);
			for (uint32_t i = 0; i < m.nrevoked; i++)
				printf("  %s\n", m.revoked[i]);
		}
	}
	wf_keyring_free(&kr);
	wf_map_edit_free(&m);
	return 0;
}

static int key_revoke(const char *kpath, const char *name, const char *map_path,
		      const char *run_dir, struct wf_json *j)
{
	struct wf_keyring kr;
	bool removed = false;
	int r, ret = 0;

	if (load(kpath, &kr, !!map_path))
		return 1;
	r = wf_keyring_del(&kr, name);
	if (!r) {
		removed = true;
		r = wf_keyring_save(kpath, &kr);
		if (r) {
			ctl_err("weftctl key revoke: cannot write %s: %s\n", kpath,
				strerror(-r));
			wf_keyring_free(&kr);
			return 1;
		}
	} else if (!map_path) {
		ctl_err("weftctl key revoke: %s has no key %s\n", kpath, name);
		wf_keyring_free(&kr);
		return 1;
	}
	wf_keyring_free(&kr);
	if (j) {
		wf_json_str(j, "action", "revoke");
		wf_json_str(j, "name", name);
		wf_json_str(j, "keyring", kpath);
		wf_json_bool(j, "removed", removed);
	} else {
		printf("%s: key %s %s\n", kpath, name, removed ? "removed" :
		       "was not there");
	}
	if (map_path) {
		struct wf_map prev, next;

		if (ctl_map_load_copy(map_path, &prev))
			return 1;
		if (revoked_in(&prev, name)) {
			if (!j)
				printf("%s: key %s was already revoked (epoch %" PRIu64
				       ")\n", map_path, name, prev.epoch);
			else
				wf_json_bool(j, "already_revoked", true);
			wf_map_edit_free(&prev);
			return 0;
		}
		if (prev.nrevoked >= WF_MAP_MAX_REVOKED || wf_map_copy(&next, &prev)) {
			ctl_err("weftctl key revoke: %s\n", prev.nrevoked >=
				WF_MAP_MAX_REVOKED ? "the map's revoked_keys is full" :
				"out of memory");
			wf_map_edit_free(&prev);
			return 1;
		}
		wf_map_edit_free(&prev);
		if (names_add(&next.revoked, &next.nrevoked, name)) {
			ctl_err("weftctl key revoke: out of memory\n");
			wf_map_edit_free(&next);
			return 1;
		}
		wf_map_keys_sort(&next);
		next.epoch++;
		if (j)
			wf_json_bool(j, "already_revoked", false);
		ret = ctl_map_save(&next, map_path, NULL, run_dir, j);
		if (!ret && !j)
			printf("%s: key %s revoked from epoch %" PRIu64 "\n", map_path,
			       name, next.epoch);
		wf_map_edit_free(&next);
	}
	return ret;
}

static int key_export(const char *kpath, const char *name, const char *out,
		      struct wf_json *j)
{
	struct wf_keyring kr, one = { 0 };
	const struct wf_key *k;
	int r;

	if (load(kpath, &kr, false))
		return 1;
	k = wf_keyring_find(&kr, name);
	if (!k) {
		ctl_err("weftctl key export: %s has no key %s\n", kpath, name);
		wf_keyring_free(&kr);
		return 1;
	}
	one.keys = (struct wf_key *)k;
	one.n = 1;
	r = wf_keyring_save(out, &one);
	wf_keyring_free(&kr);
	if (r) {
		ctl_err("weftctl key export: cannot write %s: %s\n", out, strerror(-r));
		return 1;
	}
	if (j) {
		wf_json_str(j, "action", "export");
		wf_json_str(j, "name", name);
		wf_json_str(j, "keyring", kpath);
		wf_json_str(j, "output", out);
	} else {
		printf("%s: key %s (mode 0600)\n", out, name);
	}
	return 0;
}

/* What key issue grants: volumes (with their mode) and the peer role. */
struct issue {
	const char *host;
	const char *vol[64];
	bool        ro[64];
	unsigned    nvol;
	bool        peer;
};

/* m's access entry of key on volume index vi set to ro: 0 or -ENOMEM. */
static int access_set(struct wf_map *m, int vi, const char *key, bool ro)
{
	struct wf_access *na;

	for (uint32_t i = 0; i < m->naccess; i++)
		if (m->access[i].volume == m->volumes[vi].id &&
		    !strcmp(m->access[i].key, key)) {
			m->access[i].ro = ro;
			return 0;
		}
	na = realloc(m->access, (m->naccess + 1) * sizeof(*na));
	if (!na)
		return -ENOMEM;
	m->access = na;
	memset(&na[m->naccess], 0, sizeof(*na));
	na[m->naccess].volume = m->volumes[vi].id;
	memcpy(na[m->naccess].key, key, strlen(key));
	na[m->naccess].ro = ro;
	m->naccess++;
	return 0;
}

/*
 * key issue: the key in the keyring first (targets re-read their keyring
 * with the map, so on this host they know it when the epoch that grants
 * it arrives), then the epoch, then FILE.  A failure after the keyring
 * was written takes the key out again.
 */
static int key_issue(const char *kpath, const char *name, const struct issue *is,
		     const char *map_path, const char *out, const char *run_dir,
		     struct wf_json *j)
{
	struct wf_keyring kr, one = { 0 };
	struct wf_map prev, next;
	int r, ret = 1;

	if (ctl_map_load_copy(map_path, &prev))
		return 1;
	if (revoked_in(&prev, name)) {
		ctl_err("weftctl key issue: %s lists key %s as revoked: pick "
			"another name\n", map_path, name);
		wf_map_edit_free(&prev);
		return 1;
	}
	for (unsigned i = 0; i < is->nvol; i++)
		if (wf_map_volume_by_name(&prev, is->vol[i]) < 0) {
			ctl_err("weftctl key issue: %s has no volume %s\n",
				map_path, is->vol[i]);
			wf_map_edit_free(&prev);
			return 1;
		}
	r = wf_map_copy(&next, &prev);
	wf_map_edit_free(&prev);
	if (r) {
		ctl_err("weftctl key issue: out of memory\n");
		return 1;
	}
	for (unsigned i = 0; i < is->nvol && !r; i++)
		r = access_set(&next, wf_map_volume_by_name(&next, is->vol[i]),
			       name, is->ro[i]);
	if (!r && is->peer && !wf_map_peer_key(&next, name))
		r = names_add(&next.peers, &next.npeers, name);
	if (r) {
		ctl_err("weftctl key issue: out of memory\n");
		wf_map_edit_free(&next);
		return 1;
	}
	wf_map_keys_sort(&next);
	next.epoch++;
	if (load(kpath, &kr, true)) {
		wf_map_edit_free(&next);
		return 1;
	}
	r = wf_keyring_add(&kr, name);
	if (r == -EEXIST) {
		ctl_err("weftctl key issue: %s already has a key %s (give the "
			"host a new name, or `key export` that one)\n", kpath, name);
		goto out;
	}
	if (r || (r = wf_keyring_save(kpath, &kr))) {
		ctl_err("weftctl key issue: cannot write %s: %s\n", kpath,
			strerror(-r));
		goto out;
	}
	if (j) {
		wf_json_str(j, "action", "issue");
		wf_json_str(j, "name", name);
		wf_json_str(j, "keyring", kpath);
		wf_json_str(j, "host", is->host);
		wf_json_bool(j, "peer", is->peer);
		wf_json_arr_begin(j, "volumes");
		for (unsigned i = 0; i < is->nvol; i++) {
			wf_json_obj_begin(j, NULL);
			wf_json_str(j, "volume", is->vol[i]);
			wf_json_str(j, "mode", is->ro[i] ? "ro" : "rw");
			wf_json_obj_end(j);
		}
		wf_json_arr_end(j);
	}
	if (ctl_map_save(&next, map_path, NULL, run_dir, j)) {
		/* No epoch grants it: the keyring goes back. */
		if (!wf_keyring_del(&kr, name))
			wf_keyring_save(kpath, &kr);
		goto out;
	}
	one.keys = (struct wf_key *)wf_keyring_find(&kr, name);
	one.n = 1;
	r = wf_keyring_save(out, &one);
	if (r) {
		ctl_err("weftctl key issue: cannot write %s: %s (the key is in "
			"%s and granted from epoch %" PRIu64 ": `weftctl key export "
			"%s -o FILE` writes it again)\n", out, strerror(-r), kpath,
			next.epoch, name);
		goto out;
	}
	ret = 0;
	if (j) {
		char step[512];

		snprintf(step, sizeof(step), "copy %s to %s:%s (mode 0600) and "
			 "use key %s there (WEFT_KEY=%s)", out, is->host,
			 WF_CTL_KEYRING_DEFAULT, name, name);
		wf_json_str(j, "output", out);
		wf_json_str(j, "next_step", step);
	} else {
		printf("%s: key %s for host %s (mode 0600)%s%s, epoch %" PRIu64 "\n",
		       out, name, is->host, is->nvol ? ", granted volumes" :
		       ", no volume granted", is->peer ? ", a target's key" : "",
		       next.epoch);
		for (unsigned i = 0; i < is->nvol; i++)
			printf("  %s %s\n", is->vol[i], is->ro[i] ? "ro" : "rw");
		printf("next: copy %s to %s:%s (mode 0600) and use key %s there "
		       "(WEFT_KEY=%s)\n", out, is->host, WF_CTL_KEYRING_DEFAULT,
		       name, name);
	}
out:
	wf_keyring_free(&kr);
	wf_map_edit_free(&next);
	return ret;
}

/* key peer NAME [--remove [--yes]]: NAME in (or out of) the map's
 * peer_keys; the last name goes only with --yes. */
static int key_peer(const char *kpath, const char *name, bool remove, bool yes,
		    const char *map_path, const char *run_dir, struct wf_json *j)
{
	struct wf_map prev, next;
	bool listed;
	int ret = 1;

	if (ctl_map_load_copy(map_path, &prev))
		return 1;
	listed = wf_map_peer_key(&prev, name);
	if (!remove && revoked_in(&prev, name)) {
		ctl_err("weftctl key peer: %s lists key %s as revoked\n",
			map_path, name);
		wf_map_edit_free(&prev);
		return 1;
	}
	if (j) {
		wf_json_str(j, "action", remove ? "unpeer" : "peer");
		wf_json_str(j, "name", name);
		wf_json_str(j, "keyring", kpath);
	}
	if (listed != remove) {
		if (!j)
			printf("%s: key %s is %s peer_keys already (epoch %" PRIu64
			       ")\n", map_path, name, listed ? "in" : "not in",
			       prev.epoch);
		wf_map_edit_free(&prev);
		return 0;
	}
	/* Without peer_keys every target takes its own --key as the one
	 * targets prove: targets with keys of their own would then refuse
	 * each other's forwards, and every replicated write would fail. */
	if (remove && prev.npeers == 1 && !yes) {
		ctl_err("weftctl key peer: %s is the last key of peer_keys in %s: "
			"without it each target takes its own --key as the "
			"targets' key, and targets with keys of their own refuse "
			"each other's forwards (every replicated write fails).  "
			"Give --yes if the targets share one --key\n", name, map_path);
		wf_map_edit_free(&prev);
		return 1;
	}
	if (wf_map_copy(&next, &prev)) {
		ctl_err("weftctl key peer: out of memory\n");
		wf_map_edit_free(&prev);
		return 1;
	}
	wf_map_edit_free(&prev);
	if (!remove) {
		if (names_add(&next.peers, &next.npeers, name)) {
			ctl_err("weftctl key peer: out of memory\n");
			goto out;
		}
	} else {
		uint32_t i = 0;

		while (strcmp(next.peers[i], name))
			i++;
		memmove(next.peers[i], next.peers[i + 1],
			(next.npeers - i - 1) * sizeof(*next.peers));
		next.npeers--;
	}
	wf_map_keys_sort(&next);
	next.epoch++;
	ret = ctl_map_save(&next, map_path, NULL, run_dir, j);
	if (!ret && !j)
		printf("%s: key %s %s peer_keys from epoch %" PRIu64 "%s\n",
		       map_path, name, remove ? "taken out of" : "listed in",
		       next.epoch, remove && !next.npeers ? " (now empty: targets "
		       "again take the key they share, their own --key, as a target's)" : "");
out:
	wf_map_edit_free(&next);
	return ret;
}

int ctl_key(int argc, char **argv, struct wf_json *j)
{
	static const struct option opts[] = {
		{ "keyring", required_argument, NULL, 'k' },
		{ "config", required_argument, NULL, 'c' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "output", required_argument, NULL, 'o' },
		{ "host", required_argument, NULL, 'H' },
		{ "volume", required_argument, NULL, 'V' },
		{ "ro", no_argument, NULL, 'R' },
		{ "rw", no_argument, NULL, 'W' },
		{ "peer", no_argument, NULL, 'P' },
		{ "remove", no_argument, NULL, 'D' },
		{ "yes", no_argument, NULL, 'y' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *kpath = NULL, *map_path = NULL, *run_dir = NULL, *out = NULL;
	const char *verb, *name = NULL;
	struct issue is = { 0 };
	bool named, issue, remove = false, yes = false, grants = false;
	int c;

	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))
		return key_usage(stdout);
	if (argc < 2)
		return key_usage(stderr);
	verb = argv[1];
	if (strcmp(verb, "create") && strcmp(verb, "list") &&
	    strcmp(verb, "revoke") && strcmp(verb, "export") &&
	    strcmp(verb, "issue") && strcmp(verb, "peer")) {
		fprintf(stderr, "weftctl key: unknown action '%s'\n", verb);
		return key_usage(stderr);
	}
	named = strcmp(verb, "list");
	optind = 2;
	while ((c = getopt_long(argc, argv, "k:c:r:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'k': kpath = optarg; break;
		case 'c': map_path = optarg; break;
		case 'r': run_dir = optarg; break;
		case 'o': out = optarg; break;
		case 'H': is.host = optarg; grants = true; break;
		case 'V':
			if (is.nvol == sizeof(is.vol) / sizeof(is.vol[0])) {
				fprintf(stderr, "weftctl key issue: at most %zu "
					"--volume\n", sizeof(is.vol) / sizeof(is.vol[0]));
				return 2;
			}
			is.vol[is.nvol++] = optarg;
			grants = true;
			break;
		case 'R':
		case 'W':
			if (!is.nvol) {
				fprintf(stderr, "weftctl key issue: --%s goes after "
					"the --volume it is for\n", c == 'R' ? "ro" : "rw");
				return 2;
			}
			is.ro[is.nvol - 1] = c == 'R';
			break;
		case 'P': is.peer = true; grants = true; break;
		case 'D': remove = true; break;
		case 'y': yes = true; break;
		case 'h': return key_usage(stdout);
		default: return key_usage(stderr);
		}
	}
	if (optind != argc - (named ? 1 : 0))
		return key_usage(stderr);
	if (named) {
		name = argv[optind];
		if (!wf_key_name_ok(name)) {
			fprintf(stderr, "weftctl key: '%s' is not a key name (1 to %u "
				"characters of [A-Za-z0-9._-], not starting with "
				"'.' or '-')\n", name, WF_KEY_NAME_MAX - 1);
			return 2;
		}
	}
	issue = !strcmp(verb, "issue");
	if ((!strcmp(verb, "export") || issue) != !!out) {
		fprintf(stderr, "weftctl key: -o FILE goes with export and issue "
			"(and they need it)\n");
		return 2;
	}
	if (grants && !issue) {
		fprintf(stderr, "weftctl key: --host, --volume and --peer go with "
			"issue only\n");
		return 2;
	}
	if (issue && (!is.host || !*is.host || is.host[strcspn(is.host, " \t\n/")])) {
		fprintf(stderr, "weftctl key issue: --host HOST (the host the key "
			"is for: a name or an address) is required\n");
		return 2;
	}
	if (remove && strcmp(verb, "peer")) {
		fprintf(stderr, "weftctl key: --remove goes with peer only\n");
		return 2;
	}
	if (yes && !remove) {
		fprintf(stderr, "weftctl key: --yes goes with peer --remove only\n");
		return 2;
	}
	if ((issue || !strcmp(verb, "peer")) && !map_path) {
		fprintf(stderr, "weftctl key %s: -c MAP (or --etcd URL) is "
			"required: the map says what the key may do\n", verb);
		return 2;
	}
	kpath = ctl_keyring_path(kpath);
	if (issue)
		return key_issue(kpath, name, &is, map_path, out,
				 ctl_run_dir(run_dir), j);
	if (!strcmp(verb, "peer"))
		return key_peer(kpath, name, remove, yes, map_path,
				ctl_run_dir(run_dir), j);
	if (!strcmp(verb, "create"))
		return key_create(kpath, name, map_path, j);
	if (!strcmp(verb, "list"))
		return key_list(kpath, map_path, j);
	if (!strcmp(verb, "export"))
		return key_export(kpath, name, out, j);
	return key_revoke(kpath, name, map_path, ctl_run_dir(run_dir), j);
}

/*
 * weftctl volume allow VOLUME KEY [--ro] | deny VOLUME KEY: the next epoch
 * of the map with KEY's entry in VOLUME's access list set (read-write, or
 * read-only) or removed.  A volume with no entry is open to every key; the
 * first allow closes it to the others.
 */
int ctl_volume_access(int argc, char **argv, struct wf_json *j)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "ro", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *run_dir = NULL, *verb = argv[1], *vol, *key;
	struct wf_map prev, next;
	bool ro = false, allow = !strcmp(verb, "allow");
	uint32_t i, open_before = 0;
	int c, vi, ret = 1;

	optind = 2;
	while ((c = getopt_long(argc, argv, "c:r:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'r': run_dir = optarg; break;
		case 'R': ro = true; break;
		default:
			fprintf(stderr, "usage: weftctl volume allow VOLUME KEY [--ro] "
				"-c MAP | deny VOLUME KEY -c MAP\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if (!path || optind != argc - 2 || (ro && !allow)) {
		fprintf(stderr, "usage: weftctl volume allow VOLUME KEY [--ro] -c MAP "
			"| deny VOLUME KEY -c MAP\n");
		return 2;
	}
	vol = argv[optind];
	key = argv[optind + 1];
	if (!wf_key_name_ok(key)) {
		fprintf(stderr, "weftctl volume %s: '%s' is not a key name\n", verb, key);
		return 2;
	}
	if (ctl_map_load_copy(path, &prev))
		return 1;
	vi = wf_map_volume_by_name(&prev, vol);
	if (vi < 0 || wf_map_copy(&next, &prev)) {
		ctl_err("weftctl volume %s: %s\n", verb, vi < 0 ? "no such volume" :
			"out of memory");
		wf_map_edit_free(&prev);
		return 1;
	}
	for (i = 0; i < next.naccess; i++)
		if (next.access[i].volume == next.volumes[vi].id) {
			open_before++;
			if (!strcmp(next.access[i].key, key))
				break;
		}
	if (allow && i == next.naccess) {
		struct wf_access *na = realloc(next.access, (next.naccess + 1) *
					       sizeof(*na));

		if (!na) {
			ctl_err("weftctl volume allow: out of memory\n");
			goto out;
		}
		next.access = na;
		memset(&na[next.naccess], 0, sizeof(*na));
		na[next.naccess].volume = next.volumes[vi].id;
		memcpy(na[next.naccess].key, key, strlen(key));
		i = next.naccess++;
	} else if (!allow && i == next.naccess) {
		ctl_err("weftctl volume deny: volume %s has no entry for key %s%s\n",
			vol, key, open_before ? "" : " (it is open to every key: "
			"allow the keys that may use it)");
		goto out;
	}
	if (allow) {
		next.access[i].ro = ro;
	} else {
		memmove(&next.access[i], &next.access[i + 1],
			(next.naccess - i - 1) * sizeof(*next.access));
		next.naccess--;
	}
	wf_map_keys_sort(&next);
	next.epoch++;
	if (j) {
		wf_json_str(j, "action", verb);
		wf_json_str(j, "volume_name", vol);
		wf_json_str(j, "key", key);
		if (allow)
			wf_json_str(j, "mode", ro ? "ro" : "rw");
	}
	ret = ctl_map_save(&next, path, NULL, ctl_run_dir(run_dir), j);
	if (!ret && !j)
		printf("%s: volume %s: key %s %s, epoch %" PRIu64 "\n", path, vol, key,
		       allow ? (ro ? "may read" : "may read and write") :
		       "removed from its access list", next.epoch);
out:
	wf_map_edit_free(&next);
	wf_map_edit_free(&prev);
	return ret;
}
