/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small in-test target for libweft's unit tests: speaks the data-path
 * protocol (HELLO/GRANT, READ/WRITE/FLUSH/DISCARD, REPLY) over the real
 * fabric in a thread of the test, keeps the data in RAM per target, checks
 * what the library sends (slots, lengths, extent boundaries, primaries) and
 * injects faults on demand.  Integration tests use the real weft-target.
 */
#ifndef WEFT_TESTS_INITIATOR_PEER_H
#define WEFT_TESTS_INITIATOR_PEER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define PEER_MAXT 4

struct peer_counts {
	uint64_t reqs, reads, writes, flushes, discards, hellos;
	uint64_t bad;                   /* protocol violations seen */
	uint64_t notprim;               /* requests for a PG it is not primary of */
	uint64_t crossings;             /* requests crossing an extent */
	uint32_t max_len, max_inflight;
	uint32_t open;                  /* connections open now */
};

struct peer {
	/* configuration, set before peer_start */
	unsigned ntargets;
	uint32_t slot_count, slot_size; /* what GRANT offers (0: 64, 128 KiB) */
	const char *transport;          /* "tcp" (default) or "unix" */
	char dir[256];                  /* temp dir: map file, sockets */
	char map_path[300];
	uint64_t vol_size;              /* bytes (0: 64 MiB) */
	uint32_t extent_size;           /* 0: 1 MiB */

	/* fault knobs: set any time (atomics) */
	int stale_n;                    /* answer STALE (epoch + 1) this often */
	int busy_n;                     /* answer BUSY this often */
	int io_n;                       /* answer IO (no DNR) this often */
	int dnr_status;                 /* answer this | DNR to the next request */
	int drop_after;                 /* close the connection after N more */
	int silent;                     /* never answer (a hung target) */
	int dead[PEER_MAXT];            /* refuse to grant (target "down") */
	int no_vol3;                    /* next maps written omit vol3 */

	/* results */
	struct peer_counts c[PEER_MAXT];

	/* private */
	pthread_t thr;
	int stop;
	uint64_t epoch;
	uint16_t ports[PEER_MAXT];
	void *priv;
};

/* Create the dir, listen, write a map (epoch 1, pool rep1 and rep3 when
 * ntargets >= 3, volumes vol1 and vol3) and start the thread. */
void peer_start(struct peer *p);
void peer_stop(struct peer *p);
/* Rewrite the map with a new epoch (and the peer adopts it). */
void peer_bump_epoch(struct peer *p, uint64_t epoch);
/* Target t listens on a new port from now on (the old listener stays);
 * the map is rewritten with epoch. */
void peer_move_target(struct peer *p, unsigned t, uint64_t epoch);
/* Connections to target t the peer has open. */
unsigned peer_conns(struct peer *p, unsigned t);
/* Byte image of a volume on target t (for checks). */
const uint8_t *peer_image(struct peer *p, unsigned t, uint64_t vol_id);

#endif
