/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Authentication at connect on a real weft-target (docs/security.md): the
 * right key is served over tcp and unix; a missing key, an unknown key, a
 * wrong secret (either side finds it), a replayed PROOF and a revoked key
 * are each refused with WF_WS_AUTH and one log line naming the peer; a
 * revocation closes the live connections of that key; a client hammering
 * with a wrong key does not disturb a good one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <endian.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "proto/auth.h"
#include "proto/ctl.h"
#include "proto/wire.h"
#include "tests/target/tgt.h"

static char tcp_addr[64], unix_addr[256];

static void addrs(const struct tgt_env *e)
{
	snprintf(tcp_addr, sizeof(tcp_addr), "tcp:127.0.0.1:%u", e->port);
	snprintf(unix_addr, sizeof(unix_addr), "unix:%s/target-0.sock", e->run);
}

/* The log gains a line with s within 5 s. */
static bool log_has(const struct tgt_env *e, const char *s)
{
	for (int i = 0; i < 500; i++) {
		if (tgt_log_count(e, s))
			return true;
		usleep(10000);
	}
	return false;
}

/* A bare endpoint to the target (no HELLO). */
static void bare(struct tgt_client *c, const char *addr)
{
	struct wf_ctx_opts co = { .size = sizeof(co), .backend = WF_BACKEND_TCP };
	struct wf_ep_opts eo = { .size = sizeof(eo), .send_depth = 16,
				 .recv_depth = 16, .timeout_ms = 5000 };

	memset(c, 0, sizeof(*c));
	cr_assert_eq(wf_ctx_create(&co, &c->ctx), 0);
	cr_assert_eq(wf_connect(c->ctx, addr, &eo, &c->ep), 0);
}

/* Send h on c, then take one AUTH message into *a. */
static void step(struct tgt_client *c, const struct wf_auth_hdr *h,
		 struct wf_auth *a)
{
	char buf[256];
	int n;

	cr_assert_eq(wf_send(c->ep, h, sizeof(*h), 1), 0);
	n = tgt_recv_msg(c->ctx, buf, sizeof(buf), 5000);
	cr_assert_eq(n, (int)sizeof(*h), "no AUTH answer (%d)", n);
	cr_assert_eq(wf_auth_decode(buf, (size_t)n, a, NULL), 0);
}

static void start(struct tgt_env *e)
{
	tgt_env_init(e, 1);
	cr_assert_eq(tgt_start(e, false, NULL), 0);
	addrs(e);
}

/* A keyring beside e's with key name under another secret. */
static void other_keyring(const struct tgt_env *e, const char *name, char *path,
			  size_t len)
{
	struct wf_keyring kr = { 0 };

	snprintf(path, len, "%s/other-keyring", e->dir);
	cr_assert_eq(wf_keyring_add(&kr, name), 0);
	cr_assert_eq(wf_keyring_save(path, &kr), 0);
	wf_keyring_free(&kr);
}

static int io_roundtrip(struct tgt_client *c, uint64_t off, uint64_t seed)
{
	static char w[4096], r[4096];
	int ret;

	tgt_pattern(w, sizeof(w), seed);
	ret = tgt_io(c, WF_OP_WRITE, TGT_VOL, off, sizeof(w), w, c->epoch);
	if (ret)
		return ret;
	memset(r, 0, sizeof(r));
	ret = tgt_io(c, WF_OP_READ, TGT_VOL, off, sizeof(r), r, c->epoch);
	if (ret)
		return ret;
	return memcmp(w, r, sizeof(w)) ? -EIO : 0;
}

Test(auth, right_key_over_tcp_and_unix, .timeout = 60)
{
	struct tgt_env e;
	struct tgt_client c;
	uint64_t off;

	start(&e);
	off = tgt_extent_of(&e, 0, 0);
	cr_assert_eq(tgt_connect(&c, tcp_addr, 4, e.epoch), 0);
	cr_assert_eq(io_roundtrip(&c, off, 1), 0);
	tgt_close(&c);
	cr_assert_eq(tgt_connect(&c, unix_addr, 4, e.epoch), 0);
	cr_assert_eq(io_roundtrip(&c, off, 2), 0);
	tgt_close(&c);
	tgt_env_fini(&e);
}

Test(auth, missing_key_refused_with_a_log_line, .timeout = 60)
{
	struct tgt_env e;
	struct tgt_client c;

	start(&e);
	tgt_key_name = NULL;
	/* tgt_connect gives a refused GRANT's errno positive. */
	cr_assert_eq(tgt_connect(&c, tcp_addr, 4, e.epoch), EACCES);
	cr_assert_eq(c.g.status, WF_WS_AUTH | WF_WS_DNR);
	cr_assert(c.g.ring.addr == 0 && c.g.slot_count == 0, "a refused GRANT "
		  "grants nothing");
	tgt_close(&c);
	cr_assert(log_has(&e, "tcp:127.0.0.1) closed: authentication refused: "
			  "no key offered"));
	/* Over unix too. */
	cr_assert_eq(tgt_connect(&c, unix_addr, 4, e.epoch), EACCES);
	tgt_close(&c);
	tgt_env_fini(&e);
}

Test(auth, unknown_and_wrong_keys_refused, .timeout = 60)
{
	char other[256];
	struct tgt_env e;
	struct tgt_client c;
	struct wf_auth_ctx x;
	struct wf_auth_hdr h;
	struct wf_auth a;

	start(&e);
	/* A name the keyring lacks: the CHALLENGE says AUTH. */
	tgt_key_name = "nobody";
	cr_assert_eq(tgt_connect(&c, tcp_addr, 4, e.epoch), -EACCES);
	tgt_close(&c);
	cr_assert(log_has(&e, "key nobody is not in the keyring"));
	/* The right name, another secret: the client finds the target's
	 * proof wrong and leaves; the target says so. */
	other_keyring(&e, "client", other, sizeof(other));
	bare(&c, tcp_addr);
	cr_assert_eq(tgt_auth(c.ctx, c.ep, other, "client", 77, 7, 0), -EACCES);
	tgt_close(&c);
	cr_assert(log_has(&e, "key client differs"));
	/* The same, with a client that sends its PROOF anyway: the target
	 * refuses it (RESULT AUTH) and says so. */
	bare(&c, tcp_addr);
	cr_assert_eq(wf_auth_offer(&x, 7, "client", 78, 0, &h), 0);
	step(&c, &h, &a);
	cr_assert_eq(a.status, WF_WS_OK);
	{
		struct wf_keyring kr;
		struct wf_auth p = { .step = WF_AUTH_PROOF };
		char err[256];

		cr_assert_eq(wf_keyring_load(other, &kr, err, sizeof(err)), 0, "%s", err);
		memcpy(x.nt, a.nonce, sizeof(x.nt));
		cr_assert_eq(wf_auth_mac(kr.keys[0].secret, &x, 0, p.mac), 0);
		wf_keyring_free(&kr);
		wf_auth_encode(&p, &h);
	}
	step(&c, &h, &a);
	cr_assert_eq(a.step, WF_AUTH_RESULT);
	cr_assert_eq(a.status, WF_WS_AUTH | WF_WS_DNR);
	cr_assert(tgt_wait_closed(&c, 5000));
	tgt_close(&c);
	cr_assert(log_has(&e, "key client: wrong proof"));
	tgt_env_fini(&e);
}

/* A recorded PROOF is worth nothing on a new connection: the target's
 * nonce is new. */
Test(auth, replayed_transcript_refused, .timeout = 60)
{
	struct wf_keyring kr;
	struct tgt_env e;
	struct tgt_client c;
	struct wf_auth_hdr offer, proof;
	struct wf_auth_ctx x;
	struct wf_auth a;
	char err[256];

	start(&e);
	cr_assert_eq(wf_keyring_load(e.keyring, &kr, err, sizeof(err)), 0, "%s", err);
	/* A real exchange, recorded. */
	bare(&c, tcp_addr);
	cr_assert_eq(wf_auth_offer(&x, 7, "client", 99, 0, &offer), 0);
	step(&c, &offer, &a);
	cr_assert_eq(wf_auth_answer(wf_keyring_find(&kr, "client")->secret, &x,
				    &a, &proof), 0);
	step(&c, &proof, &a);
	cr_assert_eq(a.status, WF_WS_OK, "the recorded exchange itself works");
	tgt_close(&c);
	/* Played again, byte for byte. */
	bare(&c, tcp_addr);
	step(&c, &offer, &a);
	step(&c, &proof, &a);
	cr_assert_eq(a.step, WF_AUTH_RESULT);
	cr_assert_eq(a.status, WF_WS_AUTH | WF_WS_DNR);
	tgt_close(&c);
	cr_assert(log_has(&e, "or a replayed transcript"));
	wf_keyring_free(&kr);
	tgt_env_fini(&e);
}

/* Nothing but AUTH before the exchange: a HELLO after the OFFER, a
 * request before anything. */
Test(auth, nothing_served_before_the_exchange, .timeout = 60)
{
	struct tgt_env e;
	struct tgt_client c;
	struct wf_auth_ctx x;
	struct wf_auth_hdr h;
	struct wf_auth a;
	struct wf_hello he = { .client_id = 5, .epoch = 1, .want_slots = 4,
			       .max_io = TGT_SLOT_SZ };
	struct wf_hello_hdr hh;
	char buf[256];
	int n;

	start(&e);
	bare(&c, tcp_addr);
	cr_assert_eq(wf_auth_offer(&x, 7, "client", 5, 0, &h), 0);
	step(&c, &h, &a);
	wf_hello_encode(&he, &hh);
	cr_assert_eq(wf_send(c.ep, &hh, sizeof(hh), 1), 0);
	n = tgt_recv_msg(c.ctx, buf, sizeof(buf), 5000);
	cr_assert_eq(n, (int)sizeof(struct wf_grant_hdr));
	{
		struct wf_grant g;

		cr_assert_eq(wf_grant_decode(buf, (size_t)n, &g, NULL), 0);
		cr_assert_eq(g.status, WF_WS_AUTH | WF_WS_DNR);
		cr_assert_eq(g.slot_count, 0);
	}
	cr_assert(tgt_wait_closed(&c, 5000));
	tgt_close(&c);
	cr_assert(log_has(&e, "a message before the authentication finished"));
	tgt_env_fini(&e);
}

/*
 * Revocation: the next epoch lists the key in revoked_keys; on its reload
 * (SIGHUP here; weftctl key revoke -c MAP sends RELOAD) the target closes
 * that key's connections and refuses new ones, while other keys go on.
 */
Test(auth, revoked_key_closed_and_refused, .timeout = 60)
{
	struct wf_keyring kr;
	struct tgt_env e;
	struct tgt_client a, b;
	char err[256], extra[128];
	struct timespec t0, t1;
	uint64_t off;
	FILE *f;

	start(&e);
	off = tgt_extent_of(&e, 0, 0);
	cr_assert_eq(wf_keyring_load(e.keyring, &kr, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(wf_keyring_add(&kr, "client2"), 0);
	cr_assert_eq(wf_keyring_save(e.keyring, &kr), 0);
	wf_keyring_free(&kr);
	/* The keyring is re-read with the map: a reload of the same epoch. */
	kill(e.pid, SIGHUP);
	tgt_key_name = "client2";
	for (int i = 0; i < 100 && tgt_connect(&a, tcp_addr, 4, e.epoch); i++) {
		tgt_close(&a);
		usleep(50000);
	}
	cr_assert_eq(io_roundtrip(&a, off, 3), 0, "client2 works once added");
	tgt_key_name = "client";
	cr_assert_eq(tgt_connect(&b, tcp_addr, 4, e.epoch), 0);
	/* Epoch 2 revokes client2. */
	tgt_env_write_map(&e, 2);
	f = fopen(e.map, "a");
	snprintf(extra, sizeof(extra), "revoked_keys = [ \"client2\" ];\n");
	fputs(extra, f);
	fclose(f);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	kill(e.pid, SIGHUP);
	cr_assert(tgt_wait_closed(&a, 5000), "the revoked key's connection "
		  "stays open");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_log_info("revoked connection closed %.1f ms after the SIGHUP",
		    (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
		    (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	tgt_close(&a);
	cr_assert(log_has(&e, "key client2 revoked (epoch 2)"));
	b.epoch = 2;
	cr_assert_eq(io_roundtrip(&b, off, 4), 0, "the other key is served");
	tgt_key_name = "client2";
	cr_assert_eq(tgt_connect(&a, tcp_addr, 4, 2), -EACCES);
	tgt_close(&a);
	cr_assert(log_has(&e, "key client2 is revoked in the map"));
	tgt_close(&b);
	tgt_env_fini(&e);
}

/* A client hammering with a wrong key while a good one streams: every
 * request of the good one is answered and verified. */
Test(auth, bad_client_does_not_disturb_a_good_one, .timeout = 120)
{
	char other[256];
	struct tgt_env e;
	struct tgt_client good, bad;
	unsigned refused = 0;
	uint64_t off;

	start(&e);
	off = tgt_extent_of(&e, 0, 0);
	other_keyring(&e, "client", other, sizeof(other));
	cr_assert_eq(tgt_connect(&good, tcp_addr, 4, e.epoch), 0);
	for (unsigned i = 0; i < 200; i++) {
		int r;

		bare(&bad, tcp_addr);
		r = tgt_auth(bad.ctx, bad.ep, i & 1 ? other : e.keyring,
			     i & 1 ? "client" : "nobody", 1000 + i, 7, 0);
		refused += r == -EACCES;
		tgt_close(&bad);
		cr_assert_eq(io_roundtrip(&good, off + (i % 8) * 4096, i), 0,
			     "good client failed at round %u", i);
	}
	cr_assert_eq(refused, 200);
	tgt_close(&good);
	tgt_env_fini(&e);
}

/* A target without a keyring asks for nothing (the map says nothing);
 * with auth = "required" it refuses to start without one. */
Test(auth, required_by_the_map, .timeout = 60)
{
	struct tgt_env e;
	struct tgt_client c;
	char err[2048];
	FILE *f;

	tgt_env_init(&e, 1);
	e.no_keys = true;
	cr_assert_eq(tgt_start(&e, false, NULL), 0);
	addrs(&e);
	tgt_key_name = NULL;
	cr_assert_eq(tgt_connect(&c, tcp_addr, 4, e.epoch), 0);
	tgt_close(&c);
	tgt_kill(&e, SIGTERM, true);
	f = fopen(e.map, "a");
	fputs("auth = \"required\";\n", f);
	fclose(f);
	unsetenv("WEFT_KEYRING");
	unsetenv("WEFT_KEY");
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e.map, "--id", "0",
			     "--run-dir", e.run, "--foreground", NULL), 1);
	cr_assert(strstr(err, "auth = \"required\""), "%s", err);
	/* A keyring others can read: refused at start, saying how to fix. */
	chmod(e.keyring, 0644);
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e.map, "--id", "0",
			     "--run-dir", e.run, "--foreground", "--keyring",
			     e.keyring, "--key", "target", NULL), 1);
	cr_assert(strstr(err, "chmod 600"), "%s", err);
	tgt_env_fini(&e);
}

/* The control socket: a key offered there is checked like on a data
 * connection (the transcript over cluster id 0). */
static int ctl_with_key(const struct tgt_env *e, const char *keyring,
			const char *name, struct wf_ctl_status *st)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 5 };
	struct wf_keyring kr;
	const struct wf_key *k;
	struct wf_ctl_req q;
	uint8_t none[WF_KEY_LEN] = { 0 };
	char err[256];
	int fd, ret;

	cr_assert_eq(wf_keyring_load(keyring, &kr, err, sizeof(err)), 0, "%s", err);
	k = wf_keyring_find(&kr, name);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.90s/target-0.ctl", e->run);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ret = wf_auth_client_fd(fd, k ? k->secret : none, name, 0, 4242, 0);
	wf_keyring_free(&kr);
	if (!ret) {
		wf_ctl_req_encode(&q, WF_CTL_STATUS, 0, 0);
		cr_assert_eq(send(fd, &q, sizeof(q), 0), (ssize_t)sizeof(q));
		memset(st, 0, sizeof(*st));
		ret = recv(fd, st, sizeof(*st), 0) >= 64 ? 0 : -EIO;
	}
	close(fd);
	return ret;
}

Test(auth, control_socket_checks_an_offered_key, .timeout = 60)
{
	char other[256];
	struct wf_ctl_status st;
	struct tgt_env e;

	start(&e);
	cr_assert_eq(ctl_with_key(&e, e.keyring, "client", &st), 0);
	cr_assert_eq(le32toh(st.target_id), 0);
	cr_assert_eq(ctl_with_key(&e, e.keyring, "nobody", &st), -EACCES);
	cr_assert(log_has(&e, "control: pid"));
	cr_assert(log_has(&e, "authentication refused: key nobody is not in "
			  "the keyring"));
	other_keyring(&e, "client", other, sizeof(other));
	cr_assert_eq(ctl_with_key(&e, other, "client", &st), -EACCES);
	cr_assert(log_has(&e, "control: pid"));
	cr_assert(log_has(&e, "key client differs between it and this target"));
	tgt_env_fini(&e);
}

/* Writes the next epoch of e's map with extra appended, and has the target
 * load it (SIGHUP). */
static void next_map(struct tgt_env *e, const char *extra)
{
	FILE *f;

	tgt_env_write_map(e, e->epoch + 1);
	f = fopen(e->map, "a");
	cr_assert_not_null(f);
	fputs(extra, f);
	fclose(f);
	kill(e->pid, SIGHUP);
}

/* One 4 KiB op at off as c in epoch: the reply status. */
static int op_status(struct tgt_client *c, uint8_t op, uint64_t off, uint64_t epoch)
{
	static char b[4096];

	tgt_pattern(b, sizeof(b), off);
	return tgt_io(c, op, TGT_VOL, off, sizeof(b), b, epoch);
}

/* The map's access list: a volume with entries is open to the keys they
 * name only, read-only or read-write, checked on every request; the
 * targets' own key passes; a change of the list reaches live connections
 * with the map. */
Test(auth, volume_access_ro_rw_none, .timeout = 60)
{
	struct wf_keyring kr;
	struct tgt_env e;
	struct tgt_client ro, other, peer;
	char err[256];
	uint64_t off;
	int st = -1;

	start(&e);
	off = tgt_extent_of(&e, 0, 0);
	cr_assert_eq(wf_keyring_load(e.keyring, &kr, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(wf_keyring_add(&kr, "reader"), 0);
	cr_assert_eq(wf_keyring_save(e.keyring, &kr), 0);
	wf_keyring_free(&kr);
	next_map(&e, "access = ( { volume = \"v\"; key = \"reader\"; mode = \"ro\"; } );\n");
	tgt_key_name = "reader";
	for (int i = 0; i < 100 && tgt_connect(&ro, tcp_addr, 4, e.epoch); i++) {
		tgt_close(&ro);
		usleep(50000);
	}
	cr_assert_eq(op_status(&ro, WF_OP_READ, off, e.epoch), WF_WS_OK,
		     "a read-only key reads");
	cr_assert_eq(op_status(&ro, WF_OP_WRITE, off, e.epoch),
		     WF_WS_ACCESS | WF_WS_DNR, "a read-only key's write is refused");
	tgt_key_name = "client";
	cr_assert_eq(tgt_connect(&other, tcp_addr, 4, e.epoch), 0);
	cr_assert_eq(op_status(&other, WF_OP_READ, off, e.epoch),
		     WF_WS_ACCESS | WF_WS_DNR, "a key the list does not name");
	tgt_key_name = "target";
	cr_assert_eq(tgt_connect(&peer, tcp_addr, 4, e.epoch), 0);
	cr_assert_eq(op_status(&peer, WF_OP_WRITE, off, e.epoch), WF_WS_OK,
		     "the targets' key passes");
	/* reader becomes read-write: its live connection may write once the
	 * target has the epoch (BUSY/STALE in between are retried). */
	next_map(&e, "access = ( { volume = \"v\"; key = \"reader\"; mode = \"rw\"; } );\n");
	for (int i = 0; i < 200; i++) {
		st = op_status(&ro, WF_OP_WRITE, off, e.epoch);
		if (st == WF_WS_OK)
			break;
		usleep(10000);
	}
	cr_assert_eq(st, WF_WS_OK, "reader may write in the new epoch (%d)", st);
	tgt_close(&ro);
	tgt_close(&other);
	tgt_close(&peer);
	tgt_env_fini(&e);
}

/* A peer op (only targets send them) of op as c: the header of a
 * LEASE, MAP_GET or MAP_PUT, which share magic, version, opcode, tag and
 * epoch. */
static void send_peer_op(struct tgt_client *c, uint8_t op, uint64_t epoch)
{
	struct wf_net_map_put m;

	memset(&m, 0, sizeof(m));
	m.magic = htole16(WF_WIRE_MAGIC);
	m.version = WF_WIRE_VERSION;
	m.opcode = op;
	m.tag = htole64(7);
	m.epoch = htole64(epoch);
	m.total = htole32(16);
	cr_assert_eq(tgt_send_raw(c, &m, sizeof(m)), 0);
}

/* A forwarded (REPL) 4 KiB write at off as key (a new connection to
 * e's target, left in *c): its reply status. */
static uint16_t forward_as(const struct tgt_env *e, struct tgt_client *c,
			   const char *key, uint64_t off)
{
	struct wf_reply rep;

	tgt_key_name = key;
	cr_assert_eq(tgt_connect(c, tcp_addr, 4, e->epoch), 0);
	tgt_pattern(c->buf, 4096, off);
	cr_assert_eq(tgt_post(c, WF_OP_WRITE, TGT_VOL, off, 4096, 0,
			      WF_REQ_REPL | WF_REQ_FUA, e->epoch), 0);
	cr_assert_eq(tgt_reply(c, &rep, 5000), 0);
	return rep.status;
}

/* What only targets send each other (forwarded writes, LEASE, MAP_GET,
 * MAP_PUT) is refused from a client's key: ACCESS where it has an answer,
 * one log line naming the key and the peer, the connection closed (a
 * MAP_PUT's stays: the pusher reads ACCESS and leaves); the
 * targets' key (here the shared --key of a map without peer_keys) may. */
Test(auth, peer_ops_need_a_targets_key, .timeout = 60)
{
	static const struct { uint8_t op; const char *what; } ops[] = {
		{ WF_OP_LEASE, "a LEASE" }, { WF_OP_MAP_GET, "a MAP_GET" },
	};
	struct wf_net_status_reply st;
	struct tgt_env e;
	struct tgt_client c, peer;
	char line[160];
	uint16_t st16;
	uint64_t off;

	start(&e);
	off = tgt_extent_of(&e, 0, 0);
	st16 = forward_as(&e, &c, "client", off);
	cr_assert_eq(st16, WF_WS_ACCESS | WF_WS_DNR,
		     "a client's forwarded write: status %u", st16);
	cr_assert(tgt_wait_closed(&c, 5000), "the connection stays open");
	cr_assert(log_has(&e, "refused: key client is not a target's key (the "
			  "map's peer_keys) and sent a forwarded replica request"));
	cr_assert(log_has(&e, "tcp:127.0.0.1"), "the line names no peer");
	tgt_close(&c);
	for (unsigned i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		cr_assert_eq(tgt_connect(&c, tcp_addr, 4, e.epoch), 0);
		send_peer_op(&c, ops[i].op, e.epoch);
		cr_assert(tgt_wait_closed(&c, 5000), "%s left the connection "
			  "open", ops[i].what);
		snprintf(line, sizeof(line), "key client is not a target's key "
			 "(the map's peer_keys) and sent %s", ops[i].what);
		cr_assert(log_has(&e, line), "no line: %s", line);
		tgt_close(&c);
	}
	/* A MAP_PUT's chunks are answered ACCESS, the pusher told why. */
	cr_assert_eq(tgt_connect(&c, tcp_addr, 4, e.epoch), 0);
	for (int i = 0; i < 3; i++) {
		send_peer_op(&c, WF_OP_MAP_PUT, e.epoch + 1);
		cr_assert_eq(tgt_recv_msg(c.ctx, &st, sizeof(st), 5000),
			     (int)sizeof(st), "no answer to a MAP_PUT");
		cr_assert_eq(le16toh(st.status), WF_WS_ACCESS | WF_WS_DNR,
			     "MAP_PUT of a client's key: status %u", le16toh(st.status));
	}
	cr_assert_eq(tgt_log_count(&e, "and sent a MAP_PUT (answered ACCESS)"), 1,
		     "not one line for the pushes of one connection");
	tgt_close(&c);
	/* The target's key: the forward is taken up (this target is not a
	 * secondary of the extent: NOTPRIM, not ACCESS) and the link stays. */
	cr_assert_neq(forward_as(&e, &peer, "target", off) & ~WF_WS_DNR,
		      WF_WS_ACCESS, "the targets' key was refused a forward");
	cr_assert_eq(op_status(&peer, WF_OP_READ, off, e.epoch), WF_WS_OK);
	tgt_close(&peer);
	tgt_key_name = "client";
	tgt_env_fini(&e);
}

/* A map whose peer_keys leaves out the target's own key: refused at
 * start, saying what to run; listed, it starts and its key is a
 * target's (the forward passes). */
Test(auth, peer_keys_must_list_our_key, .timeout = 60)
{
	struct tgt_env e;
	struct tgt_client peer;
	char err[2048];
	uint64_t off;
	FILE *f;

	tgt_env_init(&e, 1);
	f = fopen(e.map, "a");
	fputs("peer_keys = [ \"target-9\" ];\n", f);
	fclose(f);
	cr_assert_eq(tgt_run(err, sizeof(err), "-c", e.map, "--id", "0",
			     "--run-dir", e.run, "--foreground", "--keyring",
			     e.keyring, "--key", "target", NULL), 1);
	cr_assert(strstr(err, "peer_keys does not list our key target") &&
		  strstr(err, "weftctl key peer target -c MAP"), "%s", err);
	tgt_env_write_map(&e, e.epoch);
	f = fopen(e.map, "a");
	fputs("peer_keys = [ \"target\", \"target-9\" ];\n", f);
	fclose(f);
	cr_assert_eq(tgt_start(&e, false, NULL), 0);
	addrs(&e);
	off = tgt_extent_of(&e, 0, 0);
	cr_assert_neq(forward_as(&e, &peer, "target", off) & ~WF_WS_DNR,
		      WF_WS_ACCESS, "a key of peer_keys was refused a forward");
	tgt_close(&peer);
	tgt_key_name = "client";
	tgt_env_fini(&e);
}

/* The map at epoch with this peer_keys line appended. */
static void map_with_peers(struct tgt_env *e, uint64_t epoch, const char *peers)
{
	FILE *f;

	tgt_env_write_map(e, epoch);
	f = fopen(e->map, "a");
	cr_assert_not_null(f);
	fprintf(f, "peer_keys = [ %s ];\n", peers);
	cr_assert_eq(fclose(f), 0);
}

/* The map at epoch without target 0 (this target), the same peer_keys
 * line appended. */
static void map_without_us(struct tgt_env *e, uint64_t epoch, const char *peers)
{
	static char text[8192];
	char *p;
	size_t n;
	FILE *f;

	map_with_peers(e, epoch, peers);
	f = fopen(e->map, "r");
	cr_assert_not_null(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = 0;
	p = strstr(text, "  { id = 0;");
	cr_assert_not_null(p);
	memmove(p, strchr(p, '\n') + 1, strlen(strchr(p, '\n') + 1) + 1);
	f = fopen(e->map, "w");
	cr_assert_not_null(f);
	cr_assert_eq(fputs(text, f) >= 0, true);
	cr_assert_eq(fclose(f), 0);
}

/* Wait (5 s at most) until the target has read sig off its signalfd
 * (the process no longer has it pending) and then answered a STATUS:
 * reactor 0 reads both, the signal's handling (a SIGHUP's reload) runs
 * where it reads it, so it has finished.  False when it has not. */
static bool signal_handled(const struct tgt_env *e, const char *ctl, int sig)
{
	struct wf_ctl_status st;
	char path[64], line[256];

	snprintf(path, sizeof(path), "/proc/%d/status", (int)e->pid);
	for (int i = 0; i < 500; i++) {
		FILE *f = fopen(path, "r");
		unsigned long long pnd = ~0ull;

		cr_assert_not_null(f);
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "ShdPnd: %llx", &pnd) == 1)
				break;
		fclose(f);
		if (!(pnd & 1ull << (sig - 1)))
			return tgt_ctl_call(ctl, WF_CTL_STATUS, &st, sizeof(st),
					    NULL) == sizeof(st);
		usleep(10000);
	}
	return false;
}

/* A target of map epoch 1 with peer_keys "target" and "target-9", c
 * connected to it, its control socket's path in ctl, and block 0 of its
 * first extent (at *off) written with pattern seed; the block in w. */
static void started_with_a_block(struct tgt_env *e, struct tgt_client *c,
				 char *ctl, size_t ctl_len, uint64_t *off,
				 char *w, unsigned seed)
{
	tgt_env_init(e, 1);
	map_with_peers(e, 1, "\"target\", \"target-9\"");
	cr_assert_eq(tgt_start(e, false, NULL), 0);
	addrs(e);
	snprintf(ctl, ctl_len, "%s/target-0.ctl", e->run);
	*off = tgt_extent_of(e, 0, 0);
	cr_assert_eq(tgt_connect(c, tcp_addr, 4, 1), 0);
	tgt_pattern(w, 4096, seed);
	cr_assert_eq(tgt_io(c, WF_OP_WRITE, TGT_VOL, *off, 4096, w, 1), WF_WS_OK);
}

/* A reload (RELOAD, SIGHUP, a request of the newer epoch) of a map whose
 * peer_keys leaves out our own key is refused as at start: the target
 * keeps serving the epoch it has and says once what to run; a map that
 * lists the key again loads. */
Test(auth, a_reload_whose_peer_keys_leaves_out_our_key_keeps_the_epoch, .timeout = 60)
{
	const char *warn = "peer_keys does not list our key target";
	struct wf_ctl_status st;
	struct tgt_client c;
	struct tgt_env e;
	static char w[4096], rd[4096];
	char ctl[256];
	uint64_t off;

	started_with_a_block(&e, &c, ctl, sizeof(ctl), &off, w, 11);

	map_with_peers(&e, 2, "\"target-9\"");
	cr_assert_eq(tgt_ctl_call(ctl, WF_CTL_RELOAD, &st, sizeof(st), NULL), sizeof(st));
	cr_assert_neq(st.result, 0, "RELOAD took a map whose peer_keys leaves out our key");
	cr_assert_eq(le64toh(st.epoch), 1);
	cr_assert(log_has(&e, warn));
	cr_assert_eq(tgt_log_count(&e, "weftctl key peer target -c MAP"), 1);
	cr_assert_eq(tgt_log_count(&e, "keeping epoch 1"), 1);
	/* Again by SIGHUP and by a request of epoch 2: refused, not said
	 * again. */
	cr_assert_eq(kill(e.pid, SIGHUP), 0);
	cr_assert(signal_handled(&e, ctl, SIGHUP), "SIGHUP not handled in 5 s");
	cr_assert_neq(tgt_io(&c, WF_OP_READ, TGT_VOL, off, 4096, rd, 2), WF_WS_OK);
	cr_assert_eq(tgt_ctl_call(ctl, WF_CTL_STATUS, &st, sizeof(st), NULL), sizeof(st));
	cr_assert_eq(le64toh(st.epoch), 1);
	cr_assert_eq(tgt_log_count(&e, warn), 1);
	/* Epoch 1 is still served. */
	cr_assert_eq(tgt_io(&c, WF_OP_READ, TGT_VOL, off, 4096, rd, 1), WF_WS_OK);
	cr_assert_eq(memcmp(w, rd, sizeof(w)), 0);

	map_with_peers(&e, 3, "\"target\"");
	cr_assert_eq(tgt_ctl_call(ctl, WF_CTL_RELOAD, &st, sizeof(st), NULL), sizeof(st));
	cr_assert_eq(st.result, 0);
	cr_assert_eq(le64toh(st.epoch), 3);
	cr_assert_eq(tgt_io(&c, WF_OP_READ, TGT_VOL, off, 4096, rd, 3), WF_WS_OK);
	cr_assert_eq(memcmp(w, rd, sizeof(w)), 0);
	tgt_close(&c);
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}

/* A map that no longer lists this target, nor its key in peer_keys (the
 * target and its key removed in one epoch), loads: the target answers
 * NOTPRIM to everything instead of keeping the old epoch (and warns of
 * no peer_keys). */
Test(auth, a_map_without_the_target_and_its_key_loads, .timeout = 60)
{
	struct wf_ctl_status st;
	struct tgt_client c;
	struct tgt_env e;
	static char w[4096];
	char ctl[256];
	uint64_t off;

	started_with_a_block(&e, &c, ctl, sizeof(ctl), &off, w, 12);

	map_without_us(&e, 2, "\"target-9\"");
	cr_assert_eq(tgt_ctl_call(ctl, WF_CTL_RELOAD, &st, sizeof(st), NULL), sizeof(st));
	cr_assert_eq(st.result, 0, "RELOAD refused a map that no longer lists us");
	cr_assert_eq(le64toh(st.epoch), 2);
	cr_assert(log_has(&e, "map epoch 2 no longer lists target 0"));
	cr_assert_eq(tgt_log_count(&e, "peer_keys does not list our key"), 0);
	cr_assert_eq(tgt_io(&c, WF_OP_READ, TGT_VOL, off, 4096, w, 2) & ~WF_WS_DNR,
		     WF_WS_NOTPRIM);
	tgt_close(&c);
	tgt_kill(&e, SIGTERM, true);
	tgt_env_fini(&e);
}
