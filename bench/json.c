/* SPDX-License-Identifier: Apache-2.0 */
/* The tools' JSON writer (bench/json.h). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "bench/json.h"

void wf_json_init(struct wf_json *j, FILE *f, bool pretty)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	j->pretty = pretty;
}

void wf_json_escape(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':  fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		case '\b': fputs("\\b", f); break;
		case '\f': fputs("\\f", f); break;
		default:
			if (*p < 0x20)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

static void indent(struct wf_json *j)
{
	if (!j->pretty)
		return;
	fputc('\n', j->f);
	for (int i = 0; i < j->depth; i++)
		fputs("  ", j->f);
}

/* Comma, newline and key before every value. */
static void member(struct wf_json *j, const char *key)
{
	if (j->need_comma[j->depth])
		fputc(',', j->f);
	j->need_comma[j->depth] = true;
	if (j->depth > 0)
		indent(j);
	if (key) {
		wf_json_escape(j->f, key);
		fputs(j->pretty ? ": " : ":", j->f);
	}
}

static void open_(struct wf_json *j, const char *key, char c)
{
	member(j, key);
	fputc(c, j->f);
	/* Deeper nesting than any report needs is a programming error; keep
	 * the output well formed by sharing the last level's comma state. */
	if (j->depth < WF_JSON_MAX_DEPTH - 1)
		j->depth++;
	j->need_comma[j->depth] = false;
}

static void close_(struct wf_json *j, char c)
{
	bool had = j->need_comma[j->depth];

	if (j->depth > 0)
		j->depth--;
	if (had)
		indent(j);
	fputc(c, j->f);
}

void wf_json_obj_begin(struct wf_json *j, const char *key) { open_(j, key, '{'); }
void wf_json_obj_end(struct wf_json *j) { close_(j, '}'); }
void wf_json_arr_begin(struct wf_json *j, const char *key) { open_(j, key, '['); }
void wf_json_arr_end(struct wf_json *j) { close_(j, ']'); }

void wf_json_str(struct wf_json *j, const char *key, const char *v)
{
	member(j, key);
	if (v)
		wf_json_escape(j->f, v);
	else
		fputs("null", j->f);
}

void wf_json_u64(struct wf_json *j, const char *key, uint64_t v)
{
	member(j, key);
	fprintf(j->f, "%" PRIu64, v);
}

void wf_json_i64(struct wf_json *j, const char *key, int64_t v)
{
	member(j, key);
	fprintf(j->f, "%" PRId64, v);
}

void wf_json_dbl(struct wf_json *j, const char *key, double v)
{
	member(j, key);
	if (isfinite(v))
		fprintf(j->f, "%.10g", v);
	else
		fputs("null", j->f);
}

void wf_json_bool(struct wf_json *j, const char *key, bool v)
{
	member(j, key);
	fputs(v ? "true" : "false", j->f);
}

int wf_json_finish(struct wf_json *j)
{
	fputc('\n', j->f);
	if (fflush(j->f) || ferror(j->f))
		return -EIO;
	/* An object or array left open is a bug of the caller: the document
	 * is not JSON, say so instead of exiting 0. */
	return j->depth ? -EINVAL : 0;
}
