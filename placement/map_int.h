/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to placement/: what the map loader (map_load.c) and the
 * validator (map_check.c) share, and the failure domain names the loader
 * and the writer (map_write.c) share.  Nothing outside placement/ includes
 * this.
 */
#ifndef WEFT_PLACEMENT_MAP_INT_H
#define WEFT_PLACEMENT_MAP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libconfig.h>

#include "placement/map.h"

#define FIELD_MAX       96      /* room for a field name: "targets[3].weight" */

/* Loader state; everything but map is scratch freed at the end. */
struct ld {
	const char *name;               /* file name used in messages */
	struct wf_map_err *err;
	struct wf_map *map;
	config_t cfg;

	/* targets in file order, before sorting by id */
	struct wf_target *ft;
	config_setting_t **tel;         /* their list elements (for lines) */
	uint32_t *thost;                /* host index of each */
	uint32_t nt;

	struct rack {
		char name[WF_NAME_MAX];
		config_setting_t *el;
		uint32_t hash, node;
	} *racks;
	uint32_t nracks;

	struct host {
		const char *name;       /* in cfg or in ft[] */
		config_setting_t *el;   /* hierarchy string, or first target */
		uint32_t rack, hash, node;
	} *hosts;
	uint32_t nhosts;
	uint32_t *hsorted;              /* host indices sorted by name */

	config_setting_t **pel;         /* pool elements */
	config_setting_t **oel;         /* override elements */
	config_setting_t **pel_temp;    /* pg_temp elements */
	config_setting_t **vel;         /* volume elements */
};

/* Types wf_map_member accepts, or'ed together. */
enum {
	T_INT = 1, T_FLOAT = 2, T_STR = 4, T_GROUP = 8, T_SEQ = 16,
	T_NUM = T_INT | T_FLOAT,
};

/* The kinds of string wf_map_check_str accepts. */
enum str_kind { STR_NAME, STR_ADDR, STR_PATH, STR_ANY };

/* A sort key for wf_map_find_dup: number, then strings; idx is the file index. */
struct key {
	uint64_t n;
	const char *s, *s2;
	uint32_t idx;
};

/* Element i of a named list (pools, volumes): its name and its id. */
typedef void (*name_id_fn)(const struct wf_map *m, uint32_t i, const char **name,
			   uint64_t *id);

/* Failure domain types as the map text names them (defined in map.c). */
extern const char *const wf_map_fd_names[];

/* ---- map_check.c: messages "FILE:LINE: FIELD: what is wrong" ---- */

/* Formats the message into ld->err and returns -EINVAL. */
__attribute__((format(printf, 4, 5)))
int  wf_map_fail(struct ld *ld, int line, const char *field, const char *fmt, ...);
/* Source line of s; 1 for NULL. */
int  wf_map_line_of(const config_setting_t *s);
/* path.key into buf[FIELD_MAX]; returns buf. */
const char *wf_map_field(char *buf, const char *path, const char *key);
/* A libconfig type for messages: "an integer", "a list ( )"... */
const char *wf_map_type_name(int type);

/* ---- map_check.c: the raw text and single fields ---- */

/* Refuses @include and integer literals libconfig would truncate. */
int  wf_map_prescan(struct ld *ld, const char *s, size_t len);
/* Whether a libconfig type is one of want (T_*). */
bool wf_map_type_ok(int type, unsigned want);
/* Every key of group g must be in keys[] (NULL-terminated). */
int  wf_map_check_keys(struct ld *ld, const config_setting_t *g, const char *path,
		       const char *const *keys);
/* Finds g.key and checks its type; *out NULL when optional and absent. */
int  wf_map_member(struct ld *ld, const config_setting_t *g, const char *path,
		   const char *key, unsigned want, bool required,
		   config_setting_t **out, char *f);
/* Reads an integer in min..max; def when optional and absent. */
int  wf_map_get_int(struct ld *ld, const config_setting_t *g, const char *path,
		    const char *key, bool required, int64_t def, int64_t min,
		    int64_t max, int64_t *out);
/* Checks a string value: not empty, below cap bytes, of the kind. */
int  wf_map_check_str(struct ld *ld, const config_setting_t *s, const char *f,
		      const char *v, size_t cap, enum str_kind kind);
/* Reads a checked string into out[cap]; def when optional and absent. */
int  wf_map_get_str(struct ld *ld, const config_setting_t *g, const char *path,
		    const char *key, bool required, const char *def, char *out,
		    size_t cap, enum str_kind kind, config_setting_t **sp);

/* ---- map_keys.c: auth, revoked_keys, access ---- */

int  wf_map_parse_keys(struct ld *ld, const config_setting_t *root);

/* ---- map_check.c: duplicates across the elements of a list ---- */

/* qsort comparator of struct key, file index last. */
int  wf_map_key_cmp(const void *pa, const void *pb);
/* Sorts k[]; true with the earliest repeat's file indices when two match. */
bool wf_map_find_dup(struct key *k, uint32_t n, uint32_t *first, uint32_t *dup);
/* wf_map_fail at sec[dup].key, on the line of that key. */
__attribute__((format(printf, 6, 7)))
int  wf_map_dup_fail(struct ld *ld, config_setting_t *const *el, const char *sec,
		     const char *key, uint32_t dup, const char *fmt, ...);
/* Names, then ids, unique within list sec of n elements. */
int  wf_map_names_ids_unique(struct ld *ld, const char *sec, const char *noun,
			     uint32_t n, config_setting_t *const *el, name_id_fn get);
/* Target ids, addr:port and host:device unique. */
int  wf_map_targets_unique(struct ld *ld);

/* An errno's text for messages: strerrordesc_np (no locale, no lock:
 * these messages reach libweft's callers), declared here so that no
 * _GNU_SOURCE is needed by the includer. */
const char *strerrordesc_np(int errnum);
static inline const char *wf_errdesc(int err)
{
	const char *d = strerrordesc_np(err);

	return d ? d : "unknown error";
}

#endif
