/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The map's keys section (docs/security.md): auth, revoked_keys, peer_keys
 * and the
 * per-volume access list.  Part of the loader (map_load.c).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "placement/map_int.h"

static bool key_name_ok(const char *v)
{
	size_t len = strlen(v);

	return len && len < WF_MAP_KEY_NAME && v[0] != '.' && v[0] != '-' &&
	       strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		      "0123456789._-") == len;
}

static int revoked_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* NAME = [ "KEY", ... ] into *out (sorted, no name twice). */
static int parse_names(struct ld *ld, const config_setting_t *root,
		       const char *name, uint32_t max,
		       char (**out)[WF_MAP_KEY_NAME], uint32_t *nout)
{
	config_setting_t *s;
	char f[FIELD_MAX];
	char (*v)[WF_MAP_KEY_NAME];
	int r, n;

	r = wf_map_member(ld, root, "", name, T_SEQ, false, &s, f);
	if (r || !s)
		return r;
	n = config_setting_length(s);
	if (n > (int)max)
		return wf_map_fail(ld, wf_map_line_of(s), f, "%d names, more "
				   "than %u", n, max);
	v = calloc(n ? (size_t)n : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	*out = v;
	for (int j = 0; j < n; j++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)j);
		char tf[FIELD_MAX];
		const char *t;

		snprintf(tf, sizeof(tf), "%s[%d]", name, j);
		if (!wf_map_type_ok(config_setting_type(e), T_STR))
			return wf_map_fail(ld, wf_map_line_of(e), tf, "expected a "
					   "key name, not %s",
					   wf_map_type_name(config_setting_type(e)));
		t = config_setting_get_string(e);
		if (!key_name_ok(t))
			return wf_map_fail(ld, wf_map_line_of(e), tf, "\"%.40s\" is "
					   "not a key name (1..%u of [A-Za-z0-9._-])",
					   t, WF_MAP_KEY_NAME - 1);
		memcpy(v[j], t, strlen(t) + 1);
	}
	*nout = (uint32_t)n;
	qsort(v, *nout, sizeof(*v), revoked_cmp);
	for (uint32_t j = 1; j < *nout; j++)
		if (!strcmp(v[j - 1], v[j]))
			return wf_map_fail(ld, wf_map_line_of(s), f, "\"%s\" "
					   "appears twice", v[j]);
	return 0;
}

/* auth = "required" | "none"; revoked_keys = [ "NAME", ... ];
 * peer_keys = [ "NAME", ... ]. */
static int parse_auth(struct ld *ld, const config_setting_t *root)
{
	struct wf_map *m = ld->map;
	config_setting_t *s;
	const char *mode;
	char f[FIELD_MAX];
	int r;

	r = wf_map_member(ld, root, "", "auth", T_STR, false, &s, f);
	if (r)
		return r;
	mode = s ? config_setting_get_string(s) : NULL;
	if (!mode)
		m->auth = WF_MAP_AUTH_KEYRING;
	else if (!strcmp(mode, "required"))
		m->auth = WF_MAP_AUTH_REQUIRED;
	else if (!strcmp(mode, "none"))
		m->auth = WF_MAP_AUTH_NONE;
	else
		return wf_map_fail(ld, wf_map_line_of(s), "auth", "\"%.40s\" is "
				   "neither \"required\" nor \"none\"", mode);
	r = parse_names(ld, root, "revoked_keys", WF_MAP_MAX_REVOKED,
			&m->revoked, &m->nrevoked);
	if (!r)
		r = parse_names(ld, root, "peer_keys", WF_MAP_MAX_PEER_KEYS,
				&m->peers, &m->npeers);
	return r;
}

bool wf_map_peer_key(const struct wf_map *m, const char *name)
{
	return m->npeers && bsearch(name, m->peers, m->npeers, sizeof(*m->peers),
				    revoked_cmp) != NULL;
}

static int access_cmp(const void *pa, const void *pb)
{
	const struct wf_access *a = pa, *b = pb;

	if (a->volume != b->volume)
		return a->volume < b->volume ? -1 : 1;
	return strcmp(a->key, b->key);
}

/* access = ( { volume = "NAME"; key = "KEY"; mode = "ro" | "rw"; }, ... ) */
static int parse_access(struct ld *ld, const config_setting_t *root)
{
	static const char *const keys[] = { "volume", "key", "mode", NULL };
	struct wf_map *m = ld->map;
	config_setting_t *s;
	char f[FIELD_MAX];
	int r, n;

	r = wf_map_member(ld, root, "", "access", T_SEQ, false, &s, f);
	if (r || !s)
		return r;
	n = config_setting_length(s);
	m->access = calloc(n ? (size_t)n : 1, sizeof(*m->access));
	if (!m->access)
		return -ENOMEM;
	for (int j = 0; j < n; j++) {
		config_setting_t *e = config_setting_get_elem(s, (unsigned)j);
		struct wf_access *a = &m->access[j];
		char path[FIELD_MAX], vol[WF_NAME_MAX], key[WF_NAME_MAX], mode[8];
		int vi;

		snprintf(path, sizeof(path), "access[%d]", j);
		if (!wf_map_type_ok(config_setting_type(e), T_GROUP))
			return wf_map_fail(ld, wf_map_line_of(e), path, "expected a "
					   "group { volume; key; mode; }");
		r = wf_map_check_keys(ld, e, path, keys);
		if (!r)
			r = wf_map_get_str(ld, e, path, "volume", true, NULL, vol,
					   sizeof(vol), STR_NAME, NULL);
		if (!r)
			r = wf_map_get_str(ld, e, path, "key", true, NULL, key,
					   sizeof(key), STR_NAME, NULL);
		if (!r)
			r = wf_map_get_str(ld, e, path, "mode", false, "rw", mode,
					   sizeof(mode), STR_NAME, NULL);
		if (r)
			return r;
		vi = wf_map_volume_by_name(m, vol);
		if (vi < 0)
			return wf_map_fail(ld, wf_map_line_of(e), path, "no volume "
					   "\"%s\"", vol);
		if (!key_name_ok(key))
			return wf_map_fail(ld, wf_map_line_of(e), path, "\"%s\" is "
					   "not a key name", key);
		if (strcmp(mode, "ro") && strcmp(mode, "rw"))
			return wf_map_fail(ld, wf_map_line_of(e), path, "mode \"%s\" "
					   "is neither \"ro\" nor \"rw\"", mode);
		a->volume = m->volumes[vi].id;
		memcpy(a->key, key, strlen(key) + 1);
		a->ro = !strcmp(mode, "ro");
	}
	m->naccess = (uint32_t)n;
	qsort(m->access, m->naccess, sizeof(*m->access), access_cmp);
	for (uint32_t j = 1; j < m->naccess; j++)
		if (!access_cmp(&m->access[j - 1], &m->access[j]))
			return wf_map_fail(ld, wf_map_line_of(s), "access", "key "
					   "\"%s\" twice for one volume",
					   m->access[j].key);
	return 0;
}

void wf_map_keys_sort(struct wf_map *m)
{
	qsort(m->revoked, m->nrevoked, sizeof(*m->revoked), revoked_cmp);
	qsort(m->peers, m->npeers, sizeof(*m->peers), revoked_cmp);
	qsort(m->access, m->naccess, sizeof(*m->access), access_cmp);
}

int wf_map_parse_keys(struct ld *ld, const config_setting_t *root)
{
	int r = parse_auth(ld, root);

	return r ? r : parse_access(ld, root);
}
