/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A real local cluster for libweft's integration tests: a temp dir under
 * /var/tmp, a map of N targets on 127.0.0.1 (free ports), file devices
 * formatted with weft-target --format, and weft-target processes (children
 * of the test, --foreground).  Every wait is bounded.
 */
#ifndef WEFT_TESTS_INITIATOR_CLUSTER_H
#define WEFT_TESTS_INITIATOR_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define CL_MAXT 4
#define CL_VOL_SIZE (128ull << 20)
#define CL_EXT      (1u << 20)

struct lcluster {
	unsigned n;
	char     dir[128];
	char     map[192];
	char     run[192];
	uint16_t port[CL_MAXT];
	pid_t    pid[CL_MAXT];
	uint64_t epoch;
	const char *host;               /* host name written in the map */
	char     keyring[192];          /* keys "target" (the targets'
	                                 * --key) and "client" (WEFT_KEY) */
};

/* Make the dir, map (epoch 1; pool rep1 with volume vol1, and with n >= 3
 * pool rep3 with vol3), a keyring (WEFT_KEYRING and WEFT_KEY=client are
 * set: the tests' handles authenticate), format the devices, start every
 * target. */
void lc_init(struct lcluster *c, unsigned n);
void lc_fini(struct lcluster *c);
void lc_write_map(struct lcluster *c, uint64_t epoch);
void lc_start(struct lcluster *c, unsigned t);
/* Send sig to target t; with wait, reap it (bounded). */
void lc_kill(struct lcluster *c, unsigned t, int sig, bool wait);

#endif
