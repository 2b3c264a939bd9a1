/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keys between targets (docs/security.md): on the three-target cluster of
 * scripts/cluster (keys required), target 2 restarted with a keyring whose
 * key "target" has another secret: the other targets' links to it fail
 * the exchange and say so (a replicated write with target 2 acting then
 * waits for its ack: -EHOSTDOWN at the deadline, until the map marks it
 * down), and clients that hold the cluster's key get -EACCES from target
 * 2 (which does not know their secret) while the other targets keep
 * serving them (vol1, one replica).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

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

Test(sys_auth, peer_links_refuse_a_wrong_key, .timeout = 200)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	struct wf_keyring kr = { 0 };
	char other[300], run2[300];
	unsigned acc = 0, ok = 0;
	void *buf;

	/* Target 2 with its own keyring: "target" and "client" under new
	 * secrets. */
	snprintf(other, sizeof(other), "%s/other-keyring", C.dir);
	cr_assert_eq(wf_keyring_add(&kr, "target"), 0);
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
	cr_assert(log_has(2, "key target differs"),
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
