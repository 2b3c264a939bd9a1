/* SPDX-License-Identifier: Apache-2.0 */
/* proto/auth.c: the WF_OP_AUTH codec, the transcript MACs, keyring files. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "proto/auth.h"
#include "proto/wire.h"

static void ctx(struct wf_auth_ctx *x)
{
	memset(x, 0, sizeof(*x));
	x->cluster_id = 42;
	strcpy(x->name, "client.a");
	x->client_id = 7;
	x->target_id = 3;
	cr_assert_eq(wf_auth_random(x->nc, sizeof(x->nc)), 0);
	cr_assert_eq(wf_auth_random(x->nt, sizeof(x->nt)), 0);
}

Test(auth, codec_round_trip)
{
	struct wf_auth a = { .step = WF_AUTH_OFFER, .id = 9 }, b;
	struct wf_auth_hdr h;
	uint32_t why;

	strcpy(a.name, "k1");
	memset(a.nonce, 0xab, sizeof(a.nonce));
	wf_auth_encode(&a, &h);
	cr_assert_eq(wf_auth_decode(&h, sizeof(h), &b, &why), 0);
	cr_assert_str_eq(b.name, "k1");
	cr_assert_eq(b.id, 9);
	cr_assert_eq(memcmp(b.nonce, a.nonce, sizeof(a.nonce)), 0);
	/* Short, a bad name, a field a step does not use, a bad step. */
	cr_assert_eq(wf_auth_decode(&h, sizeof(h) - 1, &b, &why), -EPROTO);
	h.name[0] = '/';
	cr_assert_eq(wf_auth_decode(&h, sizeof(h), &b, &why), -EINVAL);
	a.step = WF_AUTH_RESULT;
	a.status = WF_WS_AUTH | WF_WS_DNR;
	wf_auth_encode(&a, &h);
	cr_assert_eq(wf_auth_decode(&h, sizeof(h), &b, &why), -EPROTO,
		     "a RESULT carries no id");
	a.id = 0;
	wf_auth_encode(&a, &h);
	cr_assert_eq(wf_auth_decode(&h, sizeof(h), &b, &why), 0);
	cr_assert_eq(b.status, WF_WS_AUTH | WF_WS_DNR);
	h.mac[5] = 1;
	cr_assert_eq(wf_auth_decode(&h, sizeof(h), &b, &why), -EPROTO);
	h.mac[5] = 0;
	h.step = 9;
	cr_assert_eq(wf_auth_decode(&h, sizeof(h), &b, &why), -EPROTO);
}

Test(auth, selftest)
{
	cr_assert_eq(wf_auth_selftest(), 0);
}

Test(auth, names)
{
	cr_assert(wf_key_name_ok("client.host-1_a"));
	cr_assert(!wf_key_name_ok(""));
	cr_assert(!wf_key_name_ok(".hidden"));
	cr_assert(!wf_key_name_ok("-x"));
	cr_assert(!wf_key_name_ok("a b"));
	cr_assert(!wf_key_name_ok("0123456789012345678901234567890123"));
}

Test(auth, macs)
{
	uint8_t k[WF_KEY_LEN], k2[WF_KEY_LEN], m[WF_AUTH_MAC_LEN];
	struct wf_auth_ctx x, y;

	ctx(&x);
	cr_assert_eq(wf_auth_random(k, sizeof(k)), 0);
	memcpy(k2, k, sizeof(k));
	k2[0] ^= 1;
	cr_assert_eq(wf_auth_mac(k, &x, 0, m), 0);
	cr_assert(wf_auth_check(k, &x, 0, m));
	cr_assert(!wf_auth_check(k, &x, 1, m), "a client's MAC is not a target's");
	cr_assert(!wf_auth_check(k2, &x, 0, m), "wrong key");
	/* Replayed on a new connection: the target's nonce is fresh. */
	y = x;
	cr_assert_eq(wf_auth_random(y.nt, sizeof(y.nt)), 0);
	cr_assert(!wf_auth_check(k, &y, 0, m));
	/* Every field of the transcript counts. */
	y = x; y.cluster_id++;
	cr_assert(!wf_auth_check(k, &y, 0, m));
	y = x; y.client_id++;
	cr_assert(!wf_auth_check(k, &y, 0, m));
	y = x; y.target_id++;
	cr_assert(!wf_auth_check(k, &y, 0, m));
	y = x; y.name[0] = 'd';
	cr_assert(!wf_auth_check(k, &y, 0, m));
}

Test(auth, keyring_files)
{
	char dir[] = "/tmp/weft-auth-XXXXXX", path[128], err[256];
	struct wf_keyring kr = { 0 }, kb;
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/keyring", dir);
	cr_assert_eq(wf_keyring_load(path, &kb, err, sizeof(err)), -ENOENT);
	cr_assert_eq(wf_keyring_add(&kr, "a"), 0);
	cr_assert_eq(wf_keyring_add(&kr, "b"), 0);
	cr_assert_eq(wf_keyring_add(&kr, "a"), -EEXIST);
	cr_assert_eq(wf_keyring_add(&kr, "a b"), -EINVAL);
	cr_assert_neq(memcmp(kr.keys[0].secret, kr.keys[1].secret, WF_KEY_LEN), 0);
	umask(0);
	cr_assert_eq(wf_keyring_save(path, &kr), 0);
	{
		struct stat st;

		cr_assert_eq(stat(path, &st), 0);
		cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	}
	cr_assert_eq(wf_keyring_load(path, &kb, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(kb.n, 2);
	cr_assert_eq(memcmp(wf_keyring_find(&kb, "b")->secret, kr.keys[1].secret,
			    WF_KEY_LEN), 0);
	cr_assert_eq(wf_keyring_del(&kb, "a"), 0);
	cr_assert_eq(wf_keyring_del(&kb, "a"), -ENOENT);
	cr_assert_null(wf_keyring_find(&kb, "a"));
	cr_assert_not_null(wf_keyring_find(&kb, "b"));
	wf_keyring_free(&kb);
	/* Readable by others: refused, saying how to fix it. */
	cr_assert_eq(chmod(path, 0644), 0);
	cr_assert_eq(wf_keyring_load(path, &kb, err, sizeof(err)), -EPERM);
	cr_assert_not_null(strstr(err, "chmod 600"), "%s", err);
	/* A bad line. */
	f = fopen(path, "w");
	fprintf(f, "# c\n\nx 00\n");
	fclose(f);
	cr_assert_eq(chmod(path, 0600), 0);
	cr_assert_eq(wf_keyring_load(path, &kb, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, ":3:"), "%s", err);
	wf_keyring_free(&kr);
	unlink(path);
	rmdir(dir);
}
