/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keys and the authentication exchange (proto/auth.h): the wire image of
 * WF_OP_AUTH, the MACs over the transcript, and keyring files.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "proto/auth.h"
#include "proto/file.h"
#include "proto/wire.h"

int wf_key_name_ok(const char *name)
{
	size_t n = name ? strnlen(name, WF_KEY_NAME_MAX) : 0;

	if (!n || n >= WF_KEY_NAME_MAX || name[0] == '.' || name[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

void wf_auth_encode(const struct wf_auth *a, struct wf_auth_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->magic = htole16(WF_WIRE_MAGIC);
	h->version = WF_WIRE_VERSION;
	h->opcode = WF_OP_AUTH;
	h->step = a->step;
	h->alg = WF_AUTH_ALG_HMAC_SHA256;
	h->status = htole16(a->status);
	h->id = htole64(a->id);
	if (a->step == WF_AUTH_OFFER)
		memcpy(h->name, a->name, strnlen(a->name, sizeof(h->name) - 1));
	if (a->step == WF_AUTH_OFFER || a->step == WF_AUTH_CHALLENGE)
		memcpy(h->nonce, a->nonce, sizeof(h->nonce));
	if (a->step == WF_AUTH_CHALLENGE || a->step == WF_AUTH_PROOF)
		memcpy(h->mac, a->mac, sizeof(h->mac));
}

static int fail(uint32_t *reason, uint32_t why, int err)
{
	if (reason)
		*reason = why;
	return err;
}

static int all_zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	unsigned char acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= b[i];
	return !acc;
}

int wf_auth_decode(const void *buf, size_t len, struct wf_auth *out,
		   uint32_t *reason)
{
	struct wf_auth_hdr h;
	struct wf_auth a;
	int op = wf_wire_peek(buf, len, reason);

	if (op < 0)
		return op;
	if (op != WF_OP_AUTH)
		return fail(reason, WF_WR_OPCODE, -EPROTO);
	if (len != sizeof(h))
		return fail(reason, WF_WR_SHORT, -EPROTO);
	memcpy(&h, buf, sizeof(h));
	memset(&a, 0, sizeof(a));
	a.step = h.step;
	a.status = le16toh(h.status);
	a.id = le64toh(h.id);
	if (!a.step || a.step >= WF_AUTH_STEP_MAX)
		return fail(reason, WF_WR_OPCODE, -EPROTO);
	if (h.alg != WF_AUTH_ALG_HMAC_SHA256)
		return fail(reason, WF_WR_FIELD, -EPROTO);
	if ((a.status & ~(uint32_t)WF_WS_DNR) >= WF_WS_MAX || a.status == WF_WS_DNR)
		return fail(reason, WF_WR_STATUS, -EPROTO);
	/* What each step carries; the rest must be 0. */
	if (a.step == WF_AUTH_OFFER) {
		memcpy(a.name, h.name, sizeof(h.name));
		if (a.name[WF_KEY_NAME_MAX - 1] || !wf_key_name_ok(a.name) ||
		    !all_zero(a.name + strlen(a.name), WF_KEY_NAME_MAX - strlen(a.name)))
			return fail(reason, WF_WR_FIELD, -EINVAL);
		if (!a.id)
			return fail(reason, WF_WR_FIELD, -EINVAL);
	} else if (!all_zero(h.name, sizeof(h.name))) {
		return fail(reason, WF_WR_RESERVED, -EPROTO);
	}
	if (a.step == WF_AUTH_OFFER || a.step == WF_AUTH_CHALLENGE)
		memcpy(a.nonce, h.nonce, sizeof(h.nonce));
	else if (!all_zero(h.nonce, sizeof(h.nonce)))
		return fail(reason, WF_WR_RESERVED, -EPROTO);
	if (a.step == WF_AUTH_CHALLENGE || a.step == WF_AUTH_PROOF)
		memcpy(a.mac, h.mac, sizeof(h.mac));
	else if (!all_zero(h.mac, sizeof(h.mac)))
		return fail(reason, WF_WR_RESERVED, -EPROTO);
	if ((a.step == WF_AUTH_OFFER || a.step == WF_AUTH_PROOF) && a.status)
		return fail(reason, WF_WR_STATUS, -EPROTO);
	if ((a.step == WF_AUTH_PROOF || a.step == WF_AUTH_RESULT) && a.id)
		return fail(reason, WF_WR_RESERVED, -EPROTO);
	if (out)
		*out = a;
	if (reason)
		*reason = WF_WR_OK;
	return 0;
}

int wf_auth_selftest(void)
{
	/* RFC 4231, test case 2: key "Jefe". */
	static const char data[] = "what do ya want for nothing?";
	static const uint8_t want[32] = {
		0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
		0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
		0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43,
	};
	uint8_t out[32], r[16];
	unsigned int len = 0;

	if (!HMAC(EVP_sha256(), "Jefe", 4, (const uint8_t *)data, sizeof(data) - 1,
		  out, &len) || len != 32 || CRYPTO_memcmp(out, want, 32))
		return -EIO;
	return wf_auth_random(r, sizeof(r));
}

int wf_auth_random(void *buf, size_t n)
{
	return RAND_bytes(buf, (int)n) == 1 ? 0 : -EIO;
}

/* The transcript, in a fixed little-endian layout, after a label that
 * says whose MAC it is (a MAC of one side is never one of the other). */
int wf_auth_mac(const uint8_t key[WF_KEY_LEN], const struct wf_auth_ctx *x,
		int side, uint8_t out[WF_AUTH_MAC_LEN])
{
	static const char label[2][20] = { "weft-auth-1 client", "weft-auth-1 target" };
	uint8_t t[20 + 8 + WF_KEY_NAME_MAX + 8 + 8 + 2 * WF_AUTH_NONCE_LEN];
	uint64_t v;
	unsigned int mlen = 0;
	size_t o = 0;

	memset(t, 0, sizeof(t));
	memcpy(t + o, label[side ? 1 : 0], 20);
	o += 20;
	v = htole64(x->cluster_id);
	memcpy(t + o, &v, 8);
	o += 8;
	memcpy(t + o, x->name, strnlen(x->name, WF_KEY_NAME_MAX - 1));
	o += WF_KEY_NAME_MAX;
	v = htole64(x->client_id);
	memcpy(t + o, &v, 8);
	o += 8;
	v = htole64(x->target_id);
	memcpy(t + o, &v, 8);
	o += 8;
	memcpy(t + o, x->nc, WF_AUTH_NONCE_LEN);
	o += WF_AUTH_NONCE_LEN;
	memcpy(t + o, x->nt, WF_AUTH_NONCE_LEN);
	o += WF_AUTH_NONCE_LEN;
	if (!HMAC(EVP_sha256(), key, WF_KEY_LEN, t, o, out, &mlen) ||
	    mlen != WF_AUTH_MAC_LEN)
		return -EIO;
	return 0;
}

int wf_auth_check(const uint8_t key[WF_KEY_LEN], const struct wf_auth_ctx *x,
		  int side, const uint8_t mac[WF_AUTH_MAC_LEN])
{
	uint8_t want[WF_AUTH_MAC_LEN];
	int ok;

	if (wf_auth_mac(key, x, side, want))
		return 0;
	ok = !CRYPTO_memcmp(want, mac, WF_AUTH_MAC_LEN);
	OPENSSL_cleanse(want, sizeof(want));
	return ok;
}

int wf_auth_offer(struct wf_auth_ctx *x, uint64_t cluster_id, const char *name,
		  uint64_t client_id, uint32_t target_id, struct wf_auth_hdr *out)
{
	struct wf_auth a = { .step = WF_AUTH_OFFER, .id = client_id };
	size_t n = strnlen(name, WF_KEY_NAME_MAX - 1);

	memset(x, 0, sizeof(*x));
	x->cluster_id = cluster_id;
	memcpy(x->name, name, n);
	x->client_id = client_id;
	x->target_id = target_id;
	if (wf_auth_random(x->nc, sizeof(x->nc)))
		return -EIO;
	memcpy(a.name, x->name, sizeof(a.name));
	memcpy(a.nonce, x->nc, sizeof(a.nonce));
	wf_auth_encode(&a, out);
	return 0;
}

int wf_auth_answer(const uint8_t key[WF_KEY_LEN], struct wf_auth_ctx *x,
		   const struct wf_auth *ch, struct wf_auth_hdr *out)
{
	struct wf_auth p = { .step = WF_AUTH_PROOF };
	int ret = 0;

	if (ch->step != WF_AUTH_CHALLENGE)
		ret = -EPROTO;
	else if (ch->status != WF_WS_OK)
		ret = -EACCES;
	else if (ch->id != x->target_id)
		ret = -EBADMSG;
	if (!ret) {
		memcpy(x->nt, ch->nonce, sizeof(x->nt));
		if (!wf_auth_check(key, x, 1, ch->mac))
			ret = -EBADMSG;
		else if (wf_auth_mac(key, x, 0, p.mac))
			ret = -EIO;
		else
			wf_auth_encode(&p, out);
	}
	OPENSSL_cleanse(x, sizeof(*x));
	OPENSSL_cleanse(&p, sizeof(p));
	return ret;
}

/* One AUTH message of step from fd. */
static int recv_auth(int fd, uint8_t step, struct wf_auth *a)
{
	struct wf_auth_hdr h;
	ssize_t n = recv(fd, &h, sizeof(h), MSG_TRUNC);

	if (n < 0)
		return -errno;
	if (n == 0)
		return -ECONNRESET;
	if (wf_auth_decode(&h, (size_t)n, a, NULL) || a->step != step)
		return -EPROTO;
	return 0;
}

int wf_auth_client_fd(int fd, const uint8_t key[WF_KEY_LEN], const char *name,
		      uint64_t cluster_id, uint64_t client_id, uint32_t target_id)
{
	struct wf_auth_ctx x;
	struct wf_auth_hdr h;
	struct wf_auth a;
	int ret;

	ret = wf_auth_offer(&x, cluster_id, name, client_id, target_id, &h);
	if (!ret && send(fd, &h, sizeof(h), MSG_NOSIGNAL) != sizeof(h))
		ret = -errno;
	if (!ret)
		ret = recv_auth(fd, WF_AUTH_CHALLENGE, &a);
	if (!ret) {
		ret = wf_auth_answer(key, &x, &a, &h);
		if (ret == -EBADMSG)
			ret = -EACCES;
	}
	if (!ret && send(fd, &h, sizeof(h), MSG_NOSIGNAL) != sizeof(h))
		ret = -errno;
	if (!ret)
		ret = recv_auth(fd, WF_AUTH_RESULT, &a);
	if (!ret && a.status != WF_WS_OK)
		ret = -EACCES;
	OPENSSL_cleanse(&x, sizeof(x));
	return ret;
}

/* ---- keyring files ---- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int kr_push(struct wf_keyring *kr, const struct wf_key *k)
{
	struct wf_key *n = realloc(kr->keys, (kr->n + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	kr->keys = n;
	kr->keys[kr->n++] = *k;
	return 0;
}

static int parse_line(char *s, struct wf_key *k)
{
	char *name, *hex, *rest;

	name = strtok_r(s, " \t\r\n", &rest);
	if (!name || name[0] == '#')
		return 1;               /* blank or comment */
	hex = strtok_r(NULL, " \t\r\n", &rest);
	if (!hex || strtok_r(NULL, " \t\r\n", &rest))
		return -1;
	if (!wf_key_name_ok(name) || strlen(hex) != 2 * WF_KEY_LEN)
		return -1;
	memset(k, 0, sizeof(*k));
	memcpy(k->name, name, strlen(name));
	for (unsigned i = 0; i < WF_KEY_LEN; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		k->secret[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int wf_keyring_load(const char *path, struct wf_keyring *kr, char *err,
		    size_t errlen)
{
	char line[256];
	struct stat st;
	unsigned lno = 0;
	FILE *f;
	int fd, ret = 0;

	memset(kr, 0, sizeof(*kr));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "keyring %s: %s", path, strerrordesc_np(errno));
		return ret;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "keyring %s: not a regular file", path);
		close(fd);
		return -EINVAL;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen, "keyring %s: mode %04o lets its group or "
			 "others read it; it must be 0600 (chmod 600 %s)", path,
			 (unsigned)(st.st_mode & 07777), path);
		close(fd);
		return -EPERM;
	}
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		snprintf(err, errlen, "keyring %s: out of memory", path);
		return -ENOMEM;
	}
	while (fgets(line, sizeof(line), f)) {
		struct wf_key k;
		int r;

		lno++;
		if (!strchr(line, '\n') && !feof(f)) {
			snprintf(err, errlen, "keyring %s:%u: line too long", path, lno);
			ret = -EINVAL;
			break;
		}
		r = parse_line(line, &k);
		if (r > 0)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "keyring %s:%u: not \"NAME HEX\" (a "
				 "name of [A-Za-z0-9._-], 64 hex digits)", path, lno);
			ret = -EINVAL;
			break;
		}
		if (wf_keyring_find(kr, k.name)) {
			snprintf(err, errlen, "keyring %s:%u: key %s twice", path,
				 lno, k.name);
			ret = -EINVAL;
			break;
		}
		ret = kr_push(kr, &k);
		OPENSSL_cleanse(&k, sizeof(k));
		if (ret) {
			snprintf(err, errlen, "keyring %s: out of memory", path);
			break;
		}
	}
	OPENSSL_cleanse(line, sizeof(line));
	fclose(f);
	if (ret)
		wf_keyring_free(kr);
	return ret;
}

int wf_keyring_save(const char *path, const struct wf_keyring *kr)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int ret;

	if (!f)
		return -ENOMEM;
	fprintf(f, "# weft keyring (docs/security.md): NAME SECRET, mode 0600\n");
	for (uint32_t i = 0; i < kr->n; i++) {
		fprintf(f, "%s ", kr->keys[i].name);
		for (unsigned b = 0; b < WF_KEY_LEN; b++)
			fprintf(f, "%02x", kr->keys[i].secret[b]);
		fputc('\n', f);
	}
	ret = ferror(f) ? -ENOMEM : 0;
	if (fclose(f) && !ret)
		ret = -ENOMEM;
	if (!ret)
		ret = wf_file_replace(path, text, len, 0600);
	if (text)
		explicit_bzero(text, len);      /* the secrets, in text */
	free(text);
	return ret;
}

void wf_keyring_free(struct wf_keyring *kr)
{
	if (kr->keys)
		OPENSSL_cleanse(kr->keys, kr->n * sizeof(*kr->keys));
	free(kr->keys);
	kr->keys = NULL;
	kr->n = 0;
}

const struct wf_key *wf_keyring_find(const struct wf_keyring *kr, const char *name)
{
	for (uint32_t i = 0; kr && name && i < kr->n; i++)
		if (!strncmp(kr->keys[i].name, name, WF_KEY_NAME_MAX))
			return &kr->keys[i];
	return NULL;
}

int wf_keyring_add(struct wf_keyring *kr, const char *name)
{
	struct wf_key k;
	int ret;

	if (!wf_key_name_ok(name))
		return -EINVAL;
	if (wf_keyring_find(kr, name))
		return -EEXIST;
	memset(&k, 0, sizeof(k));
	memcpy(k.name, name, strlen(name));
	ret = wf_auth_random(k.secret, sizeof(k.secret));
	if (!ret)
		ret = kr_push(kr, &k);
	OPENSSL_cleanse(&k, sizeof(k));
	return ret;
}

int wf_keyring_del(struct wf_keyring *kr, const char *name)
{
	const struct wf_key *k = wf_keyring_find(kr, name);
	uint32_t i;

	if (!k)
		return -ENOENT;
	i = (uint32_t)(k - kr->keys);
	memmove(&kr->keys[i], &kr->keys[i + 1], (kr->n - i - 1) * sizeof(*k));
	kr->n--;
	OPENSSL_cleanse(&kr->keys[kr->n], sizeof(*k));
	return 0;
}
