/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keys between targets (docs/security.md): on the three-target cluster of
 * scripts/cluster (keys required, a key per target), target 2 restarted
 * with a keyring whose keys have other secrets: the other targets' links
 * to it fail
 * the exchange and say so (a replicated write with target 2 acting then
 * waits for its ack: -EHOSTDOWN at the deadline, until the map marks it
 * down), and clients that hold the cluster's key get -EACCES from target
 * 2 (which does not know their secret) while the other targets keep
 * serving them (vol1, one replica).  And limits per key: a handle whose
 * key holds all its connections gets -EDQUOT while another key's handle
 * does verified I/O.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "placement/map.h"
#include "proto/auth.h"
#include "tests/integration/sys.h"

SYS_SUITE(sys_auth, 300);

/* Lines with s in target id's log. */
static bool log_has(unsigned id, const char *s)
{
	char path[400], line[1024];
	bool found = false;

	snprintf(path, sizeof(path), "%s/target-%u.log", C.run, id);
	for (int tries = 0; tries < 500 && !found; tries++) {
		FILE *f = fopen(path, "r");

		while (f && fgets(line, sizeof(line), f))
			found |= strstr(line, s) != NULL;
		if (f)
			fclose(f);
		if (!found)
			usleep(10000);
	}
	return found;
}

/* Whether target id's log has s now (no waiting). */
static bool log_has_now(unsigned id, const char *s)
{
	char path[400];

	snprintf(path, sizeof(path), "%s/target-%u.log", C.run, id);
	return sys_sh("grep -qF -- '%s' '%s'", s, path) == 0;
}

Test(sys_auth, peer_links_refuse_a_wrong_key, .timeout = 200)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	struct wf_keyring kr = { 0 };
	char other[300], run2[300];
	unsigned acc = 0, ok = 0;
	void *buf;

	/* Target 2 with its own keyring: the targets' keys and "client"
	 * under new secrets. */
	snprintf(other, sizeof(other), "%s/other-keyring", C.dir);
	cr_assert_eq(wf_keyring_add(&kr, "target-0"), 0);
	cr_assert_eq(wf_keyring_add(&kr, "target-1"), 0);
	cr_assert_eq(wf_keyring_add(&kr, "target-2"), 0);
	cr_assert_eq(wf_keyring_add(&kr, "client"), 0);
	cr_assert_eq(wf_keyring_save(other, &kr), 0);
	wf_keyring_free(&kr);
	sys_kill9(&C, 2);
	snprintf(run2, sizeof(run2), "%s", C.keyring);
	snprintf(C.keyring, sizeof(C.keyring), "%s", other);
	sys_restart(&C, 2);
	snprintf(C.keyring, sizeof(C.keyring), "%s", run2);

	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 1000, &cl, &vol, "vol3");
	buf = weft_buf_alloc(cl, SYS_BS);
	cr_assert_not_null(buf);
	/* vol3: every extent has target 2 acting.  Led by it: -EACCES at
	 * once; led by another: its link to 2 is refused, -EHOSTDOWN. */
	for (unsigned i = 0; i < 6; i++) {
		ssize_t r;

		sys_fill(buf, (uint64_t)i * SYS_EXT, 1);
		r = weft_pwrite(vol, buf, SYS_BS, (uint64_t)i * SYS_EXT, 0);
		cr_assert(r == -EACCES || r == -EHOSTDOWN, "vol3 write %u: %zd (%s)",
			  i, r, weft_strerror((int)r));
		acc += r == -EACCES;
	}
	cr_assert(log_has(0, "link to target 2") || log_has(1, "link to target 2"),
		  "no link to target 2 was tried");
	cr_assert(log_has(2, "key target-0 differs") || log_has(2, "key target-1 differs"),
		  "target 2 does not log the peer links it refused");
	weft_volume_close(vol);
	/* vol1 (one replica): target 2's extents -EACCES, the others'
	 * served and read back. */
	cr_assert_eq(weft_volume_open(cl, "vol1", &vol), 0);
	for (unsigned i = 0; i < 24; i++) {
		ssize_t r;

		sys_fill(buf, (uint64_t)i * SYS_EXT, 2);
		r = weft_pwrite(vol, buf, SYS_BS, (uint64_t)i * SYS_EXT, 0);
		if (r == -EACCES) {
			acc++;
			continue;
		}
		cr_assert_eq(r, (ssize_t)SYS_BS, "vol1 write %u: %zd (%s)", i, r,
			     weft_strerror((int)r));
		memset(buf, 0, SYS_BS);
		cr_assert_eq(weft_pread(vol, buf, SYS_BS, (uint64_t)i * SYS_EXT),
			     (ssize_t)SYS_BS);
		/* An acknowledged write reads back (a piece refused by target
		 * 2 once completed a later write's piece from inside routing:
		 * acknowledged, never sent). */
		cr_assert_eq(sys_decode(buf, (uint64_t)i * SYS_EXT), 2,
			     "vol1 extent %u reads back version %lld", i,
			     (long long)sys_decode(buf, (uint64_t)i * SYS_EXT));
		ok++;
	}
	cr_log_info("%u writes refused by target 2, %u served by the others",
		    acc, ok);
	cr_assert_gt(acc, 0, "no extent led by target 2");
	cr_assert_gt(ok, 0, "the healthy targets stopped serving");
	cr_assert(log_has(2, "key client differs"),
		  "target 2 does not log the client it refused");
	weft_buf_free(cl, buf);
	weft_volume_close(vol);
	weft_cluster_close(cl);
	/* Back with the cluster's keyring, for the suites after us. */
	sys_kill9(&C, 2);
	sys_restart(&C, 2);
}

/* One block of vol at extent i: write version v, read it back (0), or
 * the error of the write or the read. */
static ssize_t block_io(struct weft_volume *vol, void *buf, unsigned i,
			uint64_t v)
{
	uint64_t off = (uint64_t)i * SYS_EXT;
	ssize_t r;

	sys_fill(buf, off, v);
	r = weft_pwrite(vol, buf, SYS_BS, off, 0);
	if (r != (ssize_t)SYS_BS)
		return r < 0 ? r : -EIO;
	memset(buf, 0, SYS_BS);
	r = weft_pread(vol, buf, SYS_BS, off);
	if (r != (ssize_t)SYS_BS)
		return r < 0 ? r : -EIO;
	cr_assert_eq(sys_decode(buf, off), (int64_t)v, "extent %u reads back "
		     "version %lld, not %llu", i, (long long)sys_decode(buf, off),
		     (unsigned long long)v);
	return 0;
}

/* A handle of key k (WEFT_KEY) on vol1. */
static void open_as(const char *k, struct weft_cluster **cl,
		    struct weft_volume **vol, void **buf)
{
	setenv("WEFT_KEY", k, 1);
	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, 2000, cl, vol, "vol1");
	setenv("WEFT_KEY", "client", 1);
	*buf = weft_buf_alloc(*cl, SYS_BS);
	cr_assert_not_null(*buf);
}

/*
 * Limits per key through libweft: every target with
 * --max-conns-per-key 1.  Handle A of key client holds its connection to
 * each target; handle B of the same key gets -EDQUOT for every request
 * (its connects are refused QUOTA, each target logs the key and the
 * peer) while handle C of key client2 does verified I/O on the same
 * extents and A goes on; once A is closed, B gets in (after its backoff)
 * and its writes read back.
 */
Test(sys_auth, a_key_over_its_connections_gets_edquot, .timeout = 200)
{
	struct weft_cluster *ca, *cb, *cc;
	struct weft_volume *va, *vb, *vc;
	struct wf_keyring kr;
	void *ba, *bb, *bc;
	char err[256];
	ssize_t r = 0;

	cr_assert_eq(wf_keyring_load(C.keyring, &kr, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(wf_keyring_add(&kr, "client2"), 0);
	cr_assert_eq(wf_keyring_save(C.keyring, &kr), 0);
	wf_keyring_free(&kr);
	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		sys_kill9(&C, t);
		sys_restart_with(&C, t, C.map, C.run,
				 "--max-conns-per-key 1 --evict-idle 3600000");
	}
	open_as("client", &ca, &va, &ba);
	open_as("client", &cb, &vb, &bb);
	open_as("client2", &cc, &vc, &bc);
	/* vol1's first 12 extents: every target leads some (the log
	 * checks below need each to have refused B). */
	for (unsigned i = 0; i < 12; i++)
		cr_assert_eq(block_io(va, ba, i, 1), 0, "A, extent %u", i);
	for (unsigned i = 0; i < 12; i++) {
		r = block_io(vb, bb, i, 2);
		cr_assert_eq(r, -EDQUOT, "B (key client, over its limit), extent "
			     "%u: %zd (%s)", i, r, weft_strerror((int)r));
		cr_assert_eq(block_io(vc, bc, i, 3), 0, "C (key client2), extent %u", i);
		cr_assert_eq(block_io(va, ba, i, 4), 0, "A, extent %u", i);
	}
	for (unsigned t = 0; t < SYS_TARGETS; t++)
		cr_assert(log_has(t, "refused: key client holds 1 connections "
				  "(--max-conns-per-key 1)"), "target %u", t);
	weft_buf_free(ca, ba);
	weft_volume_close(va);
	weft_cluster_close(ca);
	/* A's connections are gone: B gets in once its backoff ends. */
	for (unsigned tries = 0; tries < 200; tries++) {
		r = block_io(vb, bb, 0, 5);
		if (r != -EDQUOT)
			break;
		usleep(50000);
	}
	cr_assert_eq(r, 0, "B after A closed: %zd (%s)", r, weft_strerror((int)r));
	for (unsigned i = 0; i < 12; i++) {
		for (unsigned tries = 0; tries < 200; tries++) {
			r = block_io(vb, bb, i, 6);
			if (r != -EDQUOT)
				break;
			usleep(50000);
		}
		cr_assert_eq(r, 0, "B, extent %u: %zd (%s)", i, r,
			     weft_strerror((int)r));
	}
	weft_buf_free(cb, bb);
	weft_volume_close(vb);
	weft_cluster_close(cb);
	weft_buf_free(cc, bc);
	weft_volume_close(vc);
	weft_cluster_close(cc);
	/* Back without the limit, for the suites after us. */
	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		sys_kill9(&C, t);
		sys_restart(&C, t);
	}
}

#define SPAN (24u << 20)        /* 24 extents of vol3: every target leads some */
#define ALL_UP ((1u << SYS_TARGETS) - 1)

/* vol3's [0, SPAN) written with version ver (every block) in 128 KiB
 * writes, as img. */
static void write_span(char *img, uint64_t ver, unsigned timeout_ms)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;

	sys_open(&C, WEFT_F_NO_SHORT_CIRCUIT, timeout_ms, &cl, &vol, "vol3");
	for (uint64_t off = 0; off < SPAN; off += 128 * 1024) {
		for (uint64_t b = 0; b < 128 * 1024; b += SYS_BS)
			sys_fill(img + off + b, off + b, ver);
		cr_assert_eq(weft_pwrite(vol, img + off, 128 * 1024, off, 0),
			     128 * 1024, "vol3 write at %llu", (unsigned long long)off);
	}
	weft_cluster_close(cl);
}

/* vol3 read back as img from each target of mask alone. */
static void expect_on_each(const char *img, unsigned mask)
{
	char what[64];

	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		if (!(mask >> t & 1))
			continue;
		sys_map_set_up(&C, 1u << t);
		snprintf(what, sizeof(what), "target %u alone", t);
		sys_expect_image(&C, "vol3", what, img, SPAN);
	}
}

/* The map of scripts/cluster names a key per target, and vol3 is closed
 * to every key but "client": what the targets send each other passes as
 * a target's key (peer_keys), not by the access list. */
static void distinct_keys_and_closed_vol3(void)
{
	struct wf_map m;
	struct wf_map_err err;

	cr_assert_eq(wf_map_load(C.map, &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m.npeers, SYS_TARGETS, "peer_keys has %u names", m.npeers);
	for (unsigned t = 0; t < SYS_TARGETS; t++) {
		char name[16];

		snprintf(name, sizeof(name), "target-%u", t);
		cr_assert(wf_map_peer_key(&m, name), "no %s in peer_keys", name);
	}
	wf_map_free(&m);
	cr_assert_eq(sys_weftctl(&C, "volume allow vol3 client"), 0);
}

/*
 * Three targets, each proving its own key: a three-replica volume
 * written, one target killed and the data read back from the others,
 * more writes while it is away, then restarted and brought up to date
 * (recovery copies between targets): each target alone reads back every
 * block.
 */
Test(sys_auth, distinct_target_keys_replicate_and_recover, .timeout = 250)
{
	char *img = aligned_alloc(4096, SPAN);

	cr_assert(img);
	distinct_keys_and_closed_vol3();
	write_span(img, 1, 5000);
	sys_kill9(&C, 1);
	cr_assert_eq(sys_weftctl(&C, "target down 1"), 0);
	sys_expect_image(&C, "vol3", "target 1 killed", img, SPAN);
	write_span(img, 2, 8000);
	sys_restart(&C, 1);
	cr_assert_eq(sys_weftctl(&C, "target up 1"), 0);
	cr_assert_eq(sys_weftctl(&C, "recover --wait --timeout 90"), 0,
		     "recovery did not finish");
	expect_on_each(img, ALL_UP);
	sys_map_set_up(&C, ALL_UP);
	for (unsigned t = 0; t < SYS_TARGETS; t++)
		cr_assert(!log_has_now(t, "is not a target's key"),
			  "target %u refused a target's key", t);
	free(img);
}

/*
 * One target's key revoked in the map: the other targets close the links
 * it opened to them (the bound of any revocation: the epoch's arrival),
 * and, with it marked down, go on replicating to each other: every block
 * written afterwards reads back from each of them alone.
 */
Test(sys_auth, a_revoked_target_key_loses_its_links, .timeout = 200)
{
	char *img = aligned_alloc(4096, SPAN);

	cr_assert(img);
	distinct_keys_and_closed_vol3();
	write_span(img, 1, 5000);
	cr_assert_eq(sys_weftctl(&C, "key revoke target-2"), 0);
	cr_assert(log_has(0, "key target-2 revoked"),
		  "target 0 kept target 2's link");
	cr_assert(log_has(1, "key target-2 revoked"),
		  "target 1 kept target 2's link");
	cr_assert_eq(sys_weftctl(&C, "target down 2"), 0);
	write_span(img, 2, 8000);
	expect_on_each(img, 3);
	sys_map_set_up(&C, 3);
	free(img);
}

/* key issue on the map file (test_sys_etcd runs it on etcd's). */
Test(sys_auth, key_issue_gives_one_host_its_volume, .timeout = 120)
{
	sys_key_issue_check(&C);
}
