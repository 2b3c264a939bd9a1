/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers of the weft-target tests: a per-test directory under /var/tmp
 * with a map and a formatted device file, real weft-target processes, and
 * a raw client speaking the wire protocol through the fabric API.
 * Every wait is bounded.
 */
#ifndef WEFT_TESTS_TARGET_TGT_H
#define WEFT_TESTS_TARGET_TGT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "fabric/fabric.h"
#include "proto/wire.h"

#define TGT_VOL      5u                  /* volume id in the test map */
#define TGT_VOL_SIZE (64ull << 20)
#define TGT_EXT      (1u << 20)
#define TGT_SLOTS    16u
#define TGT_SLOT_SZ  (64u * 1024)

struct tgt_env {
	char     dir[128];
	char     map[192];
	char     run[192];
	char     pidf[192];
	char     dev[192];
	uint16_t port;
	uint64_t epoch;
	pid_t    pid;                   /* running target, 0 if none */
	bool     child;                 /* --foreground child of ours */
	const char *t0_state;           /* target 0's state in the map
	                                 * (NULL: "up,in") */
	const char *t1_state;           /* target 1's (NULL: "up,in") */
	char     keyring[192];          /* keys "target" and "client" (mode
	                                 * 0600): tgt_start gives the target
	                                 * --keyring and --key target */
	bool     no_keys;               /* tgt_start without a keyring */
};

/* Keys of the test clients (docs/security.md): tgt_connect* authenticate
 * with tgt_key_name ("client"; NULL: offer none) from the keyring of the
 * last tgt_env_init, over cluster 7 and target 0. */
extern const char *tgt_key_name;
/* The client side of the exchange on ep with key name from keyring: 0,
 * -EACCES (refused, or the target's proof was wrong), -errno. */
int  tgt_auth(struct wf_ctx *ctx, struct wf_ep *ep, const char *keyring,
	      const char *name, uint64_t client_id, uint64_t cluster_id,
	      uint32_t target_id);
/* One message on ctx within ms: its length (copied to buf), or -errno
 * (-ECONNRESET: the peer closed). */
int  tgt_recv_msg(struct wf_ctx *ctx, void *buf, size_t cap, int ms);

/* Make the directory, write a map (two targets: 0 is ours, 1 never runs,
 * so some extents have another primary) with this epoch, format dev0. */
void tgt_env_init(struct tgt_env *e, uint64_t epoch);
void tgt_env_write_map(struct tgt_env *e, uint64_t epoch);
void tgt_env_fini(struct tgt_env *e);
/* Start weft-target as a daemon (returns once it listens) or, with
 * foreground, as our child (waits for the pid file).  Extra args
 * NULL-terminated.  Returns the exit status of the start command. */
int  tgt_start(struct tgt_env *e, bool foreground, ...);
/* Run weft-target with args (NULL-terminated), capture stderr; returns
 * the exit status. */
int  tgt_run(char *err, size_t errlen, const char *arg0, ...);
/* Send sig; with wait, wait (bounded) for the process to be gone and
 * return its exit status (child) or 0. */
int  tgt_kill(struct tgt_env *e, int sig, bool wait);
bool tgt_alive(pid_t pid);
/* Lines of the target's log (RUN_DIR/target-0.log) that contain s. */
unsigned tgt_log_count(const struct tgt_env *e, const char *s);
/* Offsets of extents whose primary is target 0 / target 1. */
uint64_t tgt_extent_of(const struct tgt_env *e, uint32_t primary, unsigned nth);

struct tgt_client {
	struct wf_ctx  *ctx;
	struct wf_ep   *ep;
	struct wf_mr   *mr;
	char           *buf;            /* slot_count * slot_size, mirrors the ring */
	struct wf_grant g;
	struct wf_rkey ring;            /* g.ring as the fabric takes it */
	uint64_t        epoch;
	uint64_t        tag;
	bool            gone;           /* DISCONNECT seen */
	uint32_t        busy;           /* bitmap of slots in flight */
	struct wf_reply last;
};

/* Connect to addr, HELLO/GRANT, as a client id of its own.  0 or -errno. */
int  tgt_connect(struct tgt_client *c, const char *addr, uint32_t want_slots,
		 uint64_t epoch);
/* The same as a given client id (a reconnecting client). */
int  tgt_connect_as(struct tgt_client *c, const char *addr, uint32_t want_slots,
		    uint64_t epoch, uint64_t client_id);
void tgt_close(struct tgt_client *c);
/* Post a request through slot (payload: WRITE data already in
 * c->buf at the slot).  0 or -errno. */
int  tgt_post(struct tgt_client *c, uint8_t op, uint64_t vol, uint64_t off,
	      uint32_t len, uint32_t slot, uint16_t flags, uint64_t epoch);
/* Send raw bytes as a message. */
int  tgt_send_raw(struct tgt_client *c, const void *msg, uint32_t len);
/* Wait for one reply (into *r).  0, -ETIMEDOUT, -ECONNRESET when the
 * target closed the connection. */
int  tgt_reply(struct tgt_client *c, struct wf_reply *r, int ms);
/* Synchronous request through slot 0; returns the reply status or
 * -errno.  WRITE: data copied from src; READ: data copied to dst. */
int  tgt_io(struct tgt_client *c, uint8_t op, uint64_t vol, uint64_t off,
	    uint32_t len, void *data, uint64_t epoch);
/* Wait until the target closes the connection. */
bool tgt_wait_closed(struct tgt_client *c, int ms);

/*
 * One round of the reconnect fence check, as client 42 on addr: an old
 * connection discards each extent at base[0 .. next) whole and writes old
 * data into it (deferred behind the discard), the requests leave, the old
 * connection is dropped (even rounds: closed; odd rounds: abandoned, open
 * as far as the target knows) and a new connection of the same client at
 * once writes newer data (retrying BUSY) and reads it back: the newer
 * data must stay, and an abandoned connection must be closed by the
 * target.  next <= TGT_SLOTS / 2.
 */
void tgt_reconnect_round(const char *addr, const uint64_t *base, unsigned next,
			 unsigned round);

void tgt_pattern(void *buf, uint32_t len, uint64_t seed);
/* One request of op on the control socket at path; the answer into ans
 * (and, SHORTCIRCUIT, the fds into fds[2]).  Bytes received or -errno. */
int  tgt_ctl_call(const char *path, uint16_t op, void *ans, size_t anslen,
		  int *fds);

#endif
