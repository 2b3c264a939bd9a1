/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weftctl key create|list|revoke|export: the keyring of this host
 * (proto/auth.h, docs/security.md).  Secrets are never printed: they
 * move between hosts as keyring files (key export).  A revocation also
 * goes into the map (-c MAP or --etcd): its revoked_keys list, which every
 * target refuses from that epoch on.
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
		"  The keyring (default $WEFT_KEYRING, else %s) holds one\n"
		"  32-byte random secret per key name, mode 0600.  create adds a key\n"
		"  (refused when MAP lists NAME as revoked: names are not reused);\n"
		"  list names the keys (never the secrets) and MAP's revoked ones;\n"
		"  revoke removes the key and, with -c MAP (or --etcd), writes the\n"
		"  next epoch of MAP listing NAME in revoked_keys and tells the\n"
		"  targets, which refuse it from then on; export writes a keyring\n"
		"  FILE holding only NAME, to copy to the host that uses it.\n",
		WF_CTL_KEYRING_DEFAULT);
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
		{
			char (*nr)[WF_MAP_KEY_NAME] = realloc(next.revoked,
				(next.nrevoked + 1) * sizeof(*nr));

			if (!nr) {
				ctl_err("weftctl key revoke: out of memory\n");
				wf_map_edit_free(&next);
				return 1;
			}
			next.revoked = nr;
		}
		memset(next.revoked[next.nrevoked], 0, WF_MAP_KEY_NAME);
		memcpy(next.revoked[next.nrevoked], name, strlen(name));
		next.nrevoked++;
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

int ctl_key(int argc, char **argv, struct wf_json *j)
{
	static const struct option opts[] = {
		{ "keyring", required_argument, NULL, 'k' },
		{ "config", required_argument, NULL, 'c' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *kpath = NULL, *map_path = NULL, *run_dir = NULL, *out = NULL;
	const char *verb, *name = NULL;
	bool named;
	int c;

	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))
		return key_usage(stdout);
	if (argc < 2)
		return key_usage(stderr);
	verb = argv[1];
	if (strcmp(verb, "create") && strcmp(verb, "list") &&
	    strcmp(verb, "revoke") && strcmp(verb, "export")) {
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
	if (!strcmp(verb, "export") != !!out) {
		fprintf(stderr, "weftctl key: -o FILE goes with export only\n");
		return 2;
	}
	kpath = ctl_keyring_path(kpath);
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
