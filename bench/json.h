/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tools' JSON writer (weft-bench, weftctl): a leaf that links nothing
 * of ours, so weftctl may use it without the bench helpers.
 */
#ifndef WEFT_BENCH_JSON_H
#define WEFT_BENCH_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/*
 * JSON writer: no allocation, tracks commas by nesting depth.  Keys and
 * string values are escaped (RFC 8259: quote, backslash, control chars);
 * non-finite numbers are written as null.
 */
#define WF_JSON_MAX_DEPTH 16

struct wf_json {
	FILE *f;
	int depth;
	bool pretty;
	bool need_comma[WF_JSON_MAX_DEPTH];
};

void wf_json_init(struct wf_json *j, FILE *f, bool pretty);
void wf_json_escape(FILE *f, const char *s);
/* key may be NULL inside arrays and for the outermost value. */
void wf_json_obj_begin(struct wf_json *j, const char *key);
void wf_json_obj_end(struct wf_json *j);
void wf_json_arr_begin(struct wf_json *j, const char *key);
void wf_json_arr_end(struct wf_json *j);
void wf_json_str(struct wf_json *j, const char *key, const char *v);
void wf_json_u64(struct wf_json *j, const char *key, uint64_t v);
void wf_json_i64(struct wf_json *j, const char *key, int64_t v);
void wf_json_dbl(struct wf_json *j, const char *key, double v);
void wf_json_bool(struct wf_json *j, const char *key, bool v);
/* Ends the document with a newline; returns 0, -EIO on a write error or
 * -EINVAL when an object or array was left open. */
int wf_json_finish(struct wf_json *j);

#endif
