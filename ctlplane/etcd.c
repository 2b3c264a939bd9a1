/* SPDX-License-Identifier: Apache-2.0 */
/*
 * etcd v3 through its JSON gateway (etcd.h).  Requests are JSON objects
 * POSTed to /v3/<service>/<call>; integers of 64 bits travel as strings,
 * keys and values as base64 (OpenSSL's codec).  Answers are parsed with
 * jansson and every field used is type-checked: a malformed answer is
 * -EPROTO, never a crash.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "ctlplane/etcd.h"

#define BODY_MAX (96u << 20)    /* a map is at most 64 MiB, base64 4/3 */

struct wf_etcd {
	CURL    *curl;
	char     url[200];
	unsigned timeout_ms;
	char     err[512];
	/* The answer being received. */
	char    *buf;
	size_t   len, cap;
	bool     watch;             /* stop at the first event */
	bool     changed;
};

const char *wf_etcd_error(const struct wf_etcd *e)
{
	return e->err[0] ? e->err : "no error";
}

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
	struct wf_etcd *e = arg;
	size_t add = sz * n;

	if (e->len + add + 1 > e->cap) {
		size_t cap = e->cap ? e->cap : 4096;
		char *nb;

		while (cap < e->len + add + 1)
			cap *= 2;
		if (cap > BODY_MAX)
			return 0;
		nb = realloc(e->buf, cap);
		if (!nb)
			return 0;
		e->buf = nb;
		e->cap = cap;
	}
	memcpy(e->buf + e->len, p, add);
	e->len += add;
	e->buf[e->len] = '\0';
	if (e->watch && (strstr(e->buf, "\"events\"") ||
			 strstr(e->buf, "\"compact_revision\""))) {
		e->changed = true;
		return 0;       /* enough: stop the stream */
	}
	return add;
}

int wf_etcd_open(const char *url, unsigned timeout_ms, struct wf_etcd **out)
{
	static bool inited;
	struct wf_etcd *e;

	if (!url || strncmp(url, "http://", 7) || strlen(url) >= sizeof(e->url))
		return -EINVAL;
	if (!inited) {
		/* Once per process, before any thread uses curl. */
		if (curl_global_init(CURL_GLOBAL_DEFAULT))
			return -ENOMEM;
		inited = true;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->curl = curl_easy_init();
	if (!e->curl) {
		free(e);
		return -ENOMEM;
	}
	snprintf(e->url, sizeof(e->url), "%s", url);
	while (e->url[0] && e->url[strlen(e->url) - 1] == '/')
		e->url[strlen(e->url) - 1] = '\0';
	e->timeout_ms = timeout_ms ? timeout_ms : 2000;
	*out = e;
	return 0;
}

void wf_etcd_close(struct wf_etcd *e)
{
	if (!e)
		return;
	curl_easy_cleanup(e->curl);
	free(e->buf);
	free(e);
}

void wf_etcd_kv_free(struct wf_etcd_kv *kv)
{
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

/* ---- encoding ------------------------------------------------------------ */

static char *b64(const void *p, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	if (out)
		EVP_EncodeBlock((unsigned char *)out, p, (int)len);
	return out;
}

/* Decode s into a malloc'd NUL-terminated buffer; -EPROTO if not base64. */
static int unb64(const char *s, char **out, size_t *len)
{
	size_t n = strlen(s), pad = 0;
	char *buf;
	int got;

	if (n % 4 || n > BODY_MAX)
		return -EPROTO;
	buf = malloc(n / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	got = n ? EVP_DecodeBlock((unsigned char *)buf, (const unsigned char *)s, (int)n) : 0;
	if (got < 0) {
		free(buf);
		return -EPROTO;
	}
	if (n && s[n - 1] == '=')
		pad++;
	if (n > 1 && s[n - 2] == '=')
		pad++;
	*len = (size_t)got - pad;
	buf[*len] = '\0';
	*out = buf;
	return 0;
}

/* A 64-bit integer of an answer: a string of digits (or a number); 0 when
 * absent (proto3 leaves zero values out). */
static int get_i64(json_t *o, const char *key, int64_t *v)
{
	json_t *x = json_object_get(o, key);
	char *end;

	*v = 0;
	if (!x)
		return 0;
	if (json_is_integer(x)) {
		*v = json_integer_value(x);
		return 0;
	}
	if (!json_is_string(x))
		return -EPROTO;
	errno = 0;
	*v = strtoll(json_string_value(x), &end, 10);
	return errno || *end || end == json_string_value(x) ? -EPROTO : 0;
}

static json_t *jb64(const void *p, size_t len)
{
	char *s = b64(p, len);
	json_t *j = s ? json_string(s) : NULL;

	free(s);
	return j;
}

static json_t *ji64(int64_t v)
{
	char s[24];

	snprintf(s, sizeof(s), "%lld", (long long)v);
	return json_string(s);
}

/* ---- one call -------------------------------------------------------------- */

/* POST req (consumed) to path; *resp: the parsed answer (json_decref). */
static int call(struct wf_etcd *e, const char *path, json_t *req, json_t **resp,
		unsigned ms)
{
	char url[320], *body;
	struct curl_slist *hdr = NULL;
	json_error_t jerr;
	CURLcode cc;
	long code = 0;
	int ret = 0;

	*resp = NULL;
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body)
		return -ENOMEM;
	snprintf(url, sizeof(url), "%s%s", e->url, path);
	e->len = 0;
	e->changed = false;
	hdr = curl_slist_append(hdr, "Content-Type: application/json");
	curl_easy_reset(e->curl);
	curl_easy_setopt(e->curl, CURLOPT_URL, url);
	curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, e);
	curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, (long)ms);
	curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)e->timeout_ms);
	curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e->curl, CURLOPT_PROTOCOLS_STR, "http");
	cc = curl_easy_perform(e->curl);
	curl_slist_free_all(hdr);
	free(body);
	if (e->watch) {
		if (e->changed)
			return 1;
		if (cc == CURLE_OPERATION_TIMEDOUT)
			return 0;
		if (cc == CURLE_OK) {
			/* The stream ended by itself before ms without an
			 * event: the member went away or refused it. */
			snprintf(e->err, sizeof(e->err), "%.200s: the watch ended", e->url);
			return -EPROTO;
		}
	}
	if (cc != CURLE_OK) {
		snprintf(e->err, sizeof(e->err), "%.200s: %.200s", e->url,
			 curl_easy_strerror(cc));
		switch (cc) {
		case CURLE_COULDNT_CONNECT:     return -ECONNREFUSED;
		case CURLE_COULDNT_RESOLVE_HOST: return -EHOSTUNREACH;
		case CURLE_OPERATION_TIMEDOUT:  return -ETIMEDOUT;
		case CURLE_OUT_OF_MEMORY:       return -ENOMEM;
		default:                        return -EIO;
		}
	}
	curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &code);
	*resp = e->len ? json_loadb(e->buf, e->len, 0, &jerr) : NULL;
	if (!*resp || !json_is_object(*resp)) {
		snprintf(e->err, sizeof(e->err), "%.200s%.40s: HTTP %ld, not a JSON "
			 "object", e->url, path, code);
		ret = -EPROTO;
	} else if (code != 200) {
		json_t *m = json_object_get(*resp, "message");

		if (!json_is_string(m))
			m = json_object_get(*resp, "error");
		snprintf(e->err, sizeof(e->err), "%.200s%.40s: HTTP %ld: %.200s", e->url,
			 path, code, json_is_string(m) ? json_string_value(m) : "?");
		ret = m && strstr(json_string_value(m), "not found") ? -ENOENT : -EPROTO;
	}
	if (ret) {
		json_decref(*resp);
		*resp = NULL;
	}
	return ret;
}

static int header_rev(json_t *resp, int64_t *rev)
{
	json_t *h = json_object_get(resp, "header");

	if (!rev)
		return 0;
	if (!json_is_object(h))
		return -EPROTO;
	return get_i64(h, "revision", rev);
}

static int kv_of(json_t *j, struct wf_etcd_kv *kv, char **key)
{
	json_t *k = json_object_get(j, "key"), *v = json_object_get(j, "value");
	size_t klen;
	int ret;

	memset(kv, 0, sizeof(*kv));
	if (!json_is_object(j) || !json_is_string(k) || (v && !json_is_string(v)))
		return -EPROTO;
	ret = unb64(v ? json_string_value(v) : "", &kv->value, &kv->len);
	if (!ret && key)
		ret = unb64(json_string_value(k), key, &klen);
	if (!ret)
		ret = get_i64(j, "mod_revision", &kv->mod_rev);
	if (!ret)
		ret = get_i64(j, "lease", &kv->lease);
	if (ret) {
		wf_etcd_kv_free(kv);
		if (key && *key) {
			free(*key);
			*key = NULL;
		}
	}
	return ret;
}

/* ---- the calls ----------------------------------------------------------- */

int wf_etcd_get(struct wf_etcd *e, const char *key, struct wf_etcd_kv *kv,
		int64_t *rev)
{
	json_t *req = json_object(), *resp, *kvs;
	int ret;

	memset(kv, 0, sizeof(*kv));
	if (!req || json_object_set_new(req, "key", jb64(key, strlen(key))))
		return -ENOMEM;
	ret = call(e, "/v3/kv/range", req, &resp, e->timeout_ms);
	if (ret)
		return ret;
	ret = header_rev(resp, rev);
	kvs = json_object_get(resp, "kvs");
	if (!ret && (!kvs || (json_is_array(kvs) && !json_array_size(kvs))))
		ret = -ENOENT;
	else if (!ret && !json_is_array(kvs))
		ret = -EPROTO;
	else if (!ret)
		ret = kv_of(json_array_get(kvs, 0), kv, NULL);
	json_decref(resp);
	return ret;
}

int wf_etcd_put(struct wf_etcd *e, const char *key, const void *val, size_t len,
		int64_t expect, int64_t lease, int64_t *rev)
{
	json_t *put = json_object(), *resp, *req;
	bool ok = put != NULL;
	int ret;

	ok = ok && !json_object_set_new(put, "key", jb64(key, strlen(key)));
	ok = ok && !json_object_set_new(put, "value", jb64(val, len));
	if (ok && lease)
		ok = !json_object_set_new(put, "lease", ji64(lease));
	if (!ok) {
		json_decref(put);
		return -ENOMEM;
	}
	if (expect < 0) {
		ret = call(e, "/v3/kv/put", put, &resp, e->timeout_ms);
		if (!ret) {
			ret = header_rev(resp, rev);
			json_decref(resp);
		}
		return ret;
	}
	/* A transaction: put only if the key's last change is expect (a key
	 * that does not exist has mod_revision 0). */
	req = json_pack("{s:[{s:o,s:s,s:s,s:o}],s:[{s:o}]}",
			"compare", "key", jb64(key, strlen(key)), "target", "MOD",
			"result", "EQUAL", "mod_revision", ji64(expect),
			"success", "request_put", put);
	if (!req)
		return -ENOMEM;
	ret = call(e, "/v3/kv/txn", req, &resp, e->timeout_ms);
	if (ret)
		return ret;
	ret = header_rev(resp, rev);
	if (!ret && !json_is_true(json_object_get(resp, "succeeded"))) {
		snprintf(e->err, sizeof(e->err), "%.400s changed meanwhile", key);
		ret = -ECANCELED;
	}
	json_decref(resp);
	return ret;
}

int wf_etcd_put_guarded(struct wf_etcd *e, const char *key, const void *val,
			size_t len, int64_t expect, const char *guard,
			int64_t guard_rev, int64_t *rev)
{
	json_t *put = json_object(), *resp, *req;
	int ret;

	if (!put || json_object_set_new(put, "key", jb64(key, strlen(key))) ||
	    json_object_set_new(put, "value", jb64(val, len))) {
		json_decref(put);
		return -ENOMEM;
	}
	req = json_pack("{s:[{s:o,s:s,s:s,s:o},{s:o,s:s,s:s,s:o}],s:[{s:o}]}",
			"compare",
			"key", jb64(key, strlen(key)), "target", "MOD",
			"result", "EQUAL", "mod_revision", ji64(expect),
			"key", jb64(guard, strlen(guard)), "target", "CREATE",
			"result", "EQUAL", "create_revision", ji64(guard_rev),
			"success", "request_put", put);
	if (!req)
		return -ENOMEM;
	ret = call(e, "/v3/kv/txn", req, &resp, e->timeout_ms);
	if (ret)
		return ret;
	ret = header_rev(resp, rev);
	if (!ret && !json_is_true(json_object_get(resp, "succeeded"))) {
		snprintf(e->err, sizeof(e->err), "%.200s changed meanwhile or %.200s "
			 "is gone", key, guard);
		ret = -ECANCELED;
	}
	json_decref(resp);
	return ret;
}

void wf_etcd_leader_free(struct wf_etcd_leader *l)
{
	free(l->key);
	memset(l, 0, sizeof(*l));
}

int wf_etcd_campaign(struct wf_etcd *e, const char *name, int64_t lease,
		     const char *value, unsigned ms, struct wf_etcd_leader *leader)
{
	json_t *req, *resp, *ld, *k;
	size_t klen;
	int ret;

	memset(leader, 0, sizeof(*leader));
	req = json_pack("{s:o,s:o,s:o}", "name", jb64(name, strlen(name)),
			"lease", ji64(lease), "value", jb64(value, strlen(value)));
	if (!req)
		return -ENOMEM;
	ret = call(e, "/v3/election/campaign", req, &resp, ms);
	if (ret)
		return ret;
	ld = json_object_get(resp, "leader");
	k = json_object_get(ld, "key");
	if (!json_is_object(ld) || !json_is_string(k) ||
	    unb64(json_string_value(k), &leader->key, &klen) ||
	    get_i64(ld, "rev", &leader->rev) || !leader->rev) {
		wf_etcd_leader_free(leader);
		ret = -EPROTO;
	}
	json_decref(resp);
	return ret;
}

int wf_etcd_resign(struct wf_etcd *e, const char *name,
		   const struct wf_etcd_leader *leader, int64_t lease)
{
	json_t *req, *resp;
	int ret;

	req = json_pack("{s:{s:o,s:o,s:o,s:o}}", "leader",
			"name", jb64(name, strlen(name)),
			"key", jb64(leader->key, strlen(leader->key)),
			"rev", ji64(leader->rev), "lease", ji64(lease));
	if (!req)
		return -ENOMEM;
	ret = call(e, "/v3/election/resign", req, &resp, e->timeout_ms);
	json_decref(resp);
	return ret;
}

int wf_etcd_delete(struct wf_etcd *e, const char *key)
{
	json_t *req = json_object(), *resp;
	int ret;

	if (!req || json_object_set_new(req, "key", jb64(key, strlen(key))))
		return -ENOMEM;
	ret = call(e, "/v3/kv/deleterange", req, &resp, e->timeout_ms);
	json_decref(resp);
	return ret;
}

int wf_etcd_list(struct wf_etcd *e, const char *prefix,
		 void (*cb)(void *arg, const char *key, const struct wf_etcd_kv *kv),
		 void *arg)
{
	size_t n = strlen(prefix);
	char *end = malloc(n + 1);
	json_t *req = json_object(), *resp, *kvs;
	int ret;

	if (!end || !req || !n) {
		free(end);
		json_decref(req);
		return n ? -ENOMEM : -EINVAL;
	}
	/* range_end: the prefix with its last byte + 1 */
	memcpy(end, prefix, n);
	end[n - 1]++;
	if (json_object_set_new(req, "key", jb64(prefix, n)) ||
	    json_object_set_new(req, "range_end", jb64(end, n))) {
		free(end);
		json_decref(req);
		return -ENOMEM;
	}
	free(end);
	ret = call(e, "/v3/kv/range", req, &resp, e->timeout_ms);
	if (ret)
		return ret;
	kvs = json_object_get(resp, "kvs");
	if (kvs && !json_is_array(kvs)) {
		ret = -EPROTO;
	} else if (kvs) {
		for (size_t i = 0; i < json_array_size(kvs) && ret >= 0; i++) {
			struct wf_etcd_kv kv;
			char *key = NULL;

			ret = kv_of(json_array_get(kvs, i), &kv, &key);
			if (ret)
				break;
			cb(arg, key, &kv);
			free(key);
			wf_etcd_kv_free(&kv);
			ret = (int)i + 1;
		}
	}
	json_decref(resp);
	return ret;
}

int wf_etcd_lease_grant(struct wf_etcd *e, unsigned ttl_s, int64_t *id)
{
	json_t *req = json_pack("{s:I}", "TTL", (json_int_t)ttl_s), *resp;
	int ret;

	if (!req)
		return -ENOMEM;
	ret = call(e, "/v3/lease/grant", req, &resp, e->timeout_ms);
	if (ret)
		return ret;
	ret = get_i64(resp, "ID", id);
	if (!ret && !*id)
		ret = -EPROTO;
	json_decref(resp);
	return ret;
}

int wf_etcd_lease_keepalive(struct wf_etcd *e, int64_t id, int64_t *ttl)
{
	json_t *req = json_object(), *resp, *res;
	int ret;

	if (!req || json_object_set_new(req, "ID", ji64(id)))
		return -ENOMEM;
	ret = call(e, "/v3/lease/keepalive", req, &resp, e->timeout_ms);
	if (ret)
		return ret;
	res = json_object_get(resp, "result");
	ret = json_is_object(res) ? get_i64(res, "TTL", ttl) : -EPROTO;
	if (!ret && *ttl <= 0)
		ret = -ENOENT;          /* expired: grant a new one */
	json_decref(resp);
	return ret;
}

int wf_etcd_lease_revoke(struct wf_etcd *e, int64_t id)
{
	json_t *req = json_object(), *resp;
	int ret;

	if (!req || json_object_set_new(req, "ID", ji64(id)))
		return -ENOMEM;
	ret = call(e, "/v3/lease/revoke", req, &resp, e->timeout_ms);
	json_decref(resp);
	return ret;
}

int wf_etcd_watch(struct wf_etcd *e, const char *key, int64_t after_rev,
		  unsigned ms)
{
	json_t *req, *resp = NULL;
	int ret;

	req = json_pack("{s:{s:o,s:o}}", "create_request", "key",
			jb64(key, strlen(key)), "start_revision", ji64(after_rev + 1));
	if (!req)
		return -ENOMEM;
	e->watch = true;
	ret = call(e, "/v3/watch", req, &resp, ms);
	e->watch = false;
	json_decref(resp);
	return ret;
}
