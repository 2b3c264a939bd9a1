/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cluster map validator: the checks the loader (map_load.c) runs on the
 * text and on every field, so that a bad map is refused with
 * "FILE:LINE: FIELD: what is wrong".  A lexical pass over the raw text
 * before libconfig sees it; typed and range-checked reads of one field;
 * the kinds of strings a map may hold; duplicate detection across the
 * elements of a list.
 *
 * The reference for the format is docs/configuration.md.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include "placement/map.h"
#include "placement/map_int.h"

__attribute__((format(printf, 4, 5)))
int wf_map_fail(struct ld *ld, int line, const char *field, const char *fmt, ...)
{
	char *m = ld->err->msg;
	size_t sz = sizeof(ld->err->msg);
	va_list ap;
	int n;

	n = snprintf(m, sz, "%s:%d: %s: ", ld->name, line < 1 ? 1 : line, field);
	if (n < 0 || (size_t)n >= sz)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(m + n, sz - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int wf_map_line_of(const config_setting_t *s)
{
	return s ? config_setting_source_line(s) : 1;
}

/* "targets[3]" + "weight" -> "targets[3].weight"; top level has no prefix. */
const char *wf_map_field(char *buf, const char *path, const char *key)
{
	if (path[0])
		snprintf(buf, FIELD_MAX, "%.48s.%.40s", path, key);
	else
		snprintf(buf, FIELD_MAX, "%.40s", key);
	return buf;
}

const char *wf_map_type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_GROUP:  return "a group { }";
	case CONFIG_TYPE_INT:    return "an integer";
	case CONFIG_TYPE_INT64:  return "an integer";
	case CONFIG_TYPE_FLOAT:  return "a float";
	case CONFIG_TYPE_STRING: return "a string";
	case CONFIG_TYPE_BOOL:   return "a boolean";
	case CONFIG_TYPE_ARRAY:  return "an array [ ]";
	case CONFIG_TYPE_LIST:   return "a list ( )";
	default:                 return "nothing";
	}
}

/*
 * libconfig 1.5 silently truncates an integer literal too big for its type
 * (1099511627776 without the L suffix reads as 0; 2147483648 as a negative
 * number), and it would follow @include to any file.  One lexical pass that
 * mirrors libconfig's comments, strings and numbers rejects both before
 * libconfig sees the text.
 */
int wf_map_prescan(struct ld *ld, const char *s, size_t len)
{
	const char *key = "(top)";
	size_t keylen = 5;
	int line = 1;
	size_t i = 0;

#define AT(k) ((k) < len ? s[k] : '\0')
	while (i < len) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\n') {
			line++;
			i++;
		} else if (c == '"') {
			for (i++; i < len && s[i] != '"'; i++) {
				if (s[i] == '\\' && i + 1 < len)
					i++;
				if (s[i] == '\n')
					line++;
			}
			i++;
		} else if (c == '#' || (c == '/' && AT(i + 1) == '/')) {
			while (i < len && s[i] != '\n')
				i++;
		} else if (c == '/' && AT(i + 1) == '*') {
			for (i += 2; i < len && !(s[i] == '*' && AT(i + 1) == '/'); i++)
				if (s[i] == '\n')
					line++;
			i += 2;
		} else if (c == '@') {
			return wf_map_fail(ld, line, "@include",
					   "directives are not allowed in a cluster map");
		} else if (isalpha(c) || c == '*') {
			size_t st = i;

			while (i < len && (isalnum((unsigned char)s[i]) ||
					   s[i] == '_' || s[i] == '-' || s[i] == '*'))
				i++;
			key = s + st;
			keylen = i - st;
		} else if (c == '.' && isdigit((unsigned char)AT(i + 1))) {
			while (i < len && (isdigit((unsigned char)s[i]) ||
					   strchr(".eE+-", s[i])))
				i++;
		} else if (isdigit(c) ||
			   ((c == '-' || c == '+') && isdigit((unsigned char)AT(i + 1)))) {
			size_t st = i;
			bool neg = c == '-', ovf = false, wide = false;
			uint64_t v = 0, lim;

			if (c == '-' || c == '+')
				i++;
			if (s[i] == '0' && (AT(i + 1) == 'x' || AT(i + 1) == 'X')) {
				for (i += 2; i < len && isxdigit((unsigned char)s[i]); i++) {
					unsigned d = isdigit((unsigned char)s[i]) ? s[i] - '0' :
						     (tolower((unsigned char)s[i]) - 'a' + 10);
					ovf |= v > (UINT64_MAX >> 4);
					v = v << 4 | d;
				}
			} else {
				for (; i < len && isdigit((unsigned char)s[i]); i++) {
					unsigned d = s[i] - '0';
					ovf |= v > (UINT64_MAX - d) / 10;
					v = v * 10 + d;
				}
				if (i < len && strchr(".eE", s[i])) {
					/* a float: libconfig reads it with strtod */
					while (i < len && (isdigit((unsigned char)s[i]) ||
							   strchr(".eE+-", s[i])))
						i++;
					continue;
				}
			}
			if (AT(i) == 'L') {
				wide = true;
				i += AT(i + 1) == 'L' ? 2 : 1;
			}
			lim = wide ? INT64_MAX : INT32_MAX;
			if (ovf || v > lim + neg) {
				char f[FIELD_MAX];

				snprintf(f, sizeof(f), "%.*s", (int)(keylen < 64 ? keylen : 64), key);
				return wf_map_fail(ld, line, f,
						   "integer %.*s does not fit in %d bits%s",
						   (int)((i - st) < 40 ? i - st : 40), s + st,
						   wide ? 64 : 32,
						   wide ? "" : " (append L for a 64-bit integer)");
			}
		} else {
			i++;
		}
	}
#undef AT
	return 0;
}

bool wf_map_type_ok(int type, unsigned want)
{
	switch (type) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:  return want & T_INT;
	case CONFIG_TYPE_FLOAT:  return want & T_FLOAT;
	case CONFIG_TYPE_STRING: return want & T_STR;
	case CONFIG_TYPE_GROUP:  return want & T_GROUP;
	case CONFIG_TYPE_ARRAY:
	case CONFIG_TYPE_LIST:   return want & T_SEQ;
	default:                 return false;
	}
}

static const char *want_name(unsigned want)
{
	if (want == T_NUM)
		return "a number";
	if (want & T_INT)
		return "an integer";
	if (want & T_FLOAT)
		return "a float";
	if (want & T_STR)
		return "a string";
	if (want & T_GROUP)
		return "a group { }";
	return "a list ( )";
}

/* Every key of group g must be in keys[] (NULL-terminated). */
int wf_map_check_keys(struct ld *ld, const config_setting_t *g, const char *path,
		      const char *const *keys)
{
	int n = config_setting_length(g);

	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		const char *const *k;
		char f[FIELD_MAX];

		if (!name)
			name = "?";
		for (k = keys; *k; k++)
			if (!strcmp(*k, name))
				break;
		if (!*k)
			return wf_map_fail(ld, wf_map_line_of(s), wf_map_field(f, path, name),
					   "unknown key");
	}
	return 0;
}

/*
 * Finds g.key and checks its type.  *out is NULL when an optional key is
 * absent.  *f receives the field name for further messages.
 */
int wf_map_member(struct ld *ld, const config_setting_t *g, const char *path,
		  const char *key, unsigned want, bool required,
		  config_setting_t **out, char *f)
{
	config_setting_t *s = config_setting_get_member(g, key);

	wf_map_field(f, path, key);
	*out = s;
	if (!s)
		return required ? wf_map_fail(ld, wf_map_line_of(g), f, "missing") : 0;
	if (!wf_map_type_ok(config_setting_type(s), want))
		return wf_map_fail(ld, wf_map_line_of(s), f, "expected %s, not %s",
				   want_name(want), wf_map_type_name(config_setting_type(s)));
	return 0;
}

int wf_map_get_int(struct ld *ld, const config_setting_t *g, const char *path,
		   const char *key, bool required, int64_t def, int64_t min,
		   int64_t max, int64_t *out)
{
	config_setting_t *s;
	char f[FIELD_MAX];
	int64_t v;
	int r;

	r = wf_map_member(ld, g, path, key, T_INT, required, &s, f);
	if (r)
		return r;
	v = s ? config_setting_get_int64(s) : def;
	if (v < min || v > max)
		return wf_map_fail(ld, wf_map_line_of(s), f, "%" PRId64 " is out of range %" PRId64
				   "..%" PRId64, v, min, max);
	*out = v;
	return 0;
}

static bool is_name(const char *v)
{
	for (; *v; v++)
		if (!isalnum((unsigned char)*v) && !strchr("_.-", *v))
			return false;
	return true;
}

/* Printable ASCII without the characters the writer would have to escape. */
static bool is_plain(const char *v)
{
	for (; *v; v++)
		if (*v < 0x20 || *v > 0x7e || *v == '"' || *v == '\\')
			return false;
	return true;
}

/* A DNS name (letters, digits, '-', dots) whose last label is not numeric. */
static bool is_hostname(const char *v)
{
	const char *label = v;
	bool numeric = true;
	size_t n = 0;

	for (;; v++) {
		if (*v == '.' || !*v) {
			if (n == 0 || label[0] == '-' || label[n - 1] == '-')
				return false;
			if (!*v)
				return !numeric;
			label = v + 1;
			n = 0;
			numeric = true;
			continue;
		}
		if (!isalnum((unsigned char)*v) && *v != '-')
			return false;
		if (!isdigit((unsigned char)*v))
			numeric = false;
		n++;
	}
}

int wf_map_check_str(struct ld *ld, const config_setting_t *s, const char *f,
		     const char *v, size_t cap, enum str_kind kind)
{
	unsigned char a[16];
	size_t n = strlen(v);

	if (n == 0)
		return wf_map_fail(ld, wf_map_line_of(s), f, "empty");
	if (n >= cap)
		return wf_map_fail(ld, wf_map_line_of(s), f, "longer than %zu bytes", cap - 1);
	switch (kind) {
	case STR_NAME:
		if (!is_name(v))
			return wf_map_fail(ld, wf_map_line_of(s), f,
					   "\"%s\": names use only letters, "
					   "digits, '_', '.' and '-'", v);
		break;
	case STR_ADDR:
		if (inet_pton(AF_INET, v, a) != 1 && inet_pton(AF_INET6, v, a) != 1 &&
		    !is_hostname(v))
			return wf_map_fail(ld, wf_map_line_of(s), f,
					   "\"%s\" is neither an IPv4 or IPv6 "
					   "address nor a host name", v);
		break;
	case STR_PATH:
	case STR_ANY:
		if (!is_plain(v))
			return wf_map_fail(ld, wf_map_line_of(s), f, "only printable ASCII without "
					   "quotes or backslashes");
		break;
	}
	return 0;
}

/* Reads a string into out[cap]; def (if not required) when absent. */
int wf_map_get_str(struct ld *ld, const config_setting_t *g, const char *path,
		   const char *key, bool required, const char *def, char *out,
		   size_t cap, enum str_kind kind, config_setting_t **sp)
{
	config_setting_t *s;
	char f[FIELD_MAX];
	const char *v;
	int r;

	r = wf_map_member(ld, g, path, key, T_STR, required, &s, f);
	if (r)
		return r;
	v = s ? config_setting_get_string(s) : def;
	r = wf_map_check_str(ld, s ? s : g, f, v, cap, kind);
	if (r)
		return r;
	memcpy(out, v, strlen(v) + 1);
	if (sp)
		*sp = s;
	return 0;
}

/* ---- duplicate detection: sort keys, report the earliest repeat ---- */

static int strcmp0(const char *a, const char *b)
{
	return a && b ? strcmp(a, b) : (a != NULL) - (b != NULL);
}

static int key_cmp_val(const struct key *a, const struct key *b)
{
	int c;

	if (a->n != b->n)
		return a->n < b->n ? -1 : 1;
	c = strcmp0(a->s, b->s);
	return c ? c : strcmp0(a->s2, b->s2);
}

int wf_map_key_cmp(const void *pa, const void *pb)
{
	const struct key *a = pa, *b = pb;
	int c = key_cmp_val(a, b);

	return c ? c : (a->idx > b->idx) - (a->idx < b->idx);
}

/*
 * Sorts k[] and returns true when two keys are equal; *first and *dup are
 * then the file indices of the pair whose second entry comes first in the
 * file, so the message points at the first repeat a reader meets.
 */
bool wf_map_find_dup(struct key *k, uint32_t n, uint32_t *first, uint32_t *dup)
{
	bool found = false;

	qsort(k, n, sizeof(*k), wf_map_key_cmp);
	for (uint32_t i = 1; i < n; i++) {
		if (key_cmp_val(&k[i - 1], &k[i]))
			continue;
		/* k[i-1] is the first of its run only if not preceded by equal */
		if (i >= 2 && !key_cmp_val(&k[i - 2], &k[i - 1]))
			continue;
		if (!found || k[i].idx < *dup) {
			*first = k[i - 1].idx;
			*dup = k[i].idx;
			found = true;
		}
	}
	return found;
}

/*
 * Reports a repeat at sec[dup].key, on the line of that key (so a reader
 * lands on the value to change); the caller's message names the first one.
 */
__attribute__((format(printf, 6, 7)))
int wf_map_dup_fail(struct ld *ld, config_setting_t *const *el, const char *sec,
		    const char *key, uint32_t dup, const char *fmt, ...)
{
	char f[FIELD_MAX], msg[sizeof(ld->err->msg)];
	va_list ap;

	snprintf(f, sizeof(f), "%s[%u].%s", sec, dup, key);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return wf_map_fail(ld, wf_map_line_of(config_setting_get_member(el[dup], key)), f,
			   "%s", msg);
}

/*
 * Names, then ids, must be unique within list sec of n elements (noun: what
 * one element is called in the message).  0, -EINVAL with the message, or
 * -ENOMEM.
 */
int wf_map_names_ids_unique(struct ld *ld, const char *sec, const char *noun, uint32_t n,
			    config_setting_t *const *el, name_id_fn get)
{
	const char *name;
	uint32_t a, b;
	struct key *k;
	uint64_t id;
	int r = 0;

	if (!n)
		return 0;
	k = calloc(n, sizeof(*k));
	if (!k)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		get(ld->map, i, &name, &id);
		k[i] = (struct key){ .s = name, .idx = i };
	}
	if (wf_map_find_dup(k, n, &a, &b)) {
		get(ld->map, b, &name, &id);
		r = wf_map_dup_fail(ld, el, sec, "name", b,
				    "duplicate %s \"%s\" (also %s[%u], line %d)", noun, name, sec,
				    a, wf_map_line_of(el[a]));
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		get(ld->map, i, &name, &id);
		k[i] = (struct key){ .n = id, .idx = i };
	}
	if (wf_map_find_dup(k, n, &a, &b)) {
		get(ld->map, b, &name, &id);
		r = wf_map_dup_fail(ld, el, sec, "id", b,
				    "duplicate id %" PRIu64 " (also %s[%u], line %d)", id, sec, a,
				    wf_map_line_of(el[a]));
	}
out:
	free(k);
	return r;
}

/* Canonical text of an address so "::1" and "0::1" count as the same. */
static void addr_norm(const char *a, char *out, size_t cap)
{
	unsigned char b[16];

	if (inet_pton(AF_INET, a, b) == 1 && inet_ntop(AF_INET, b, out, (socklen_t)cap))
		return;
	if (inet_pton(AF_INET6, a, b) == 1 && inet_ntop(AF_INET6, b, out, (socklen_t)cap))
		return;
	snprintf(out, cap, "%s", a);
	for (; *out; out++)
		*out = (char)tolower((unsigned char)*out);
}

int wf_map_targets_unique(struct ld *ld)
{
	uint32_t n = ld->nt, a, b;
	char (*norm)[WF_NAME_MAX];
	struct key *k;
	int r = 0;

	k = calloc(n, sizeof(*k));
	norm = calloc(n, sizeof(*norm));
	if (!k || !norm) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < n; i++)
		k[i] = (struct key){ .n = ld->ft[i].id, .idx = i };
	if (wf_map_find_dup(k, n, &a, &b)) {
		r = wf_map_dup_fail(ld, ld->tel, "targets", "id", b,
				    "duplicate id %u (also targets[%u], line %d)", ld->ft[b].id, a,
				    wf_map_line_of(ld->tel[a]));
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		addr_norm(ld->ft[i].addr, norm[i], sizeof(norm[i]));
		k[i] = (struct key){ .n = ld->ft[i].port, .s = norm[i], .idx = i };
	}
	if (wf_map_find_dup(k, n, &a, &b)) {
		bool v6 = strchr(ld->ft[b].addr, ':') != NULL;

		r = wf_map_dup_fail(ld, ld->tel, "targets", "port", b,
				    "%s%s%s:%u is already used by targets[%u] (line %d)",
				    v6 ? "[" : "", ld->ft[b].addr, v6 ? "]" : "", ld->ft[b].port, a,
				    wf_map_line_of(ld->tel[a]));
		goto out;
	}
	for (uint32_t i = 0; i < n; i++)
		k[i] = (struct key){ .s = ld->ft[i].host, .s2 = ld->ft[i].device, .idx = i };
	if (wf_map_find_dup(k, n, &a, &b))
		r = wf_map_dup_fail(ld, ld->tel, "targets", "device", b,
				    "%s on host %s is already used by targets[%u] (line %d)",
				    ld->ft[b].device, ld->ft[b].host, a,
				    wf_map_line_of(ld->tel[a]));
out:
	free(norm);
	free(k);
	return r;
}
