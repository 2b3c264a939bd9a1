/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Keys and the authentication at connect (docs/security.md,
 * docs/protocol.md "Authentication").  Part of proto/: what target,
 * initiator and weftctl share.  The primitives are OpenSSL's libcrypto
 * (HMAC-SHA256, RAND_bytes, CRYPTO_memcmp); nothing here is home-made
 * cryptography.
 *
 * A key is a name and a 32-byte random secret, shared by the two ends of
 * a connection.  The exchange, in the spirit of NVMe DH-HMAC-CHAP (without
 * the Diffie-Hellman part), runs in WF_OP_AUTH messages before anything
 * else on a connection:
 *
 *   client -> target  OFFER      key name, client id, nonce Nc
 *   target -> client  CHALLENGE  status, target id, nonce Nt,
 *                                Mt = HMAC(K, "weft-auth-1 target" | T)
 *   client -> target  PROOF      Mc = HMAC(K, "weft-auth-1 client" | T)
 *   target -> client  RESULT     status
 *
 * where T is the transcript: cluster id, key name, client id, target id,
 * Nc, Nt.  Each side checks the other's MAC with a constant-time compare
 * before it trusts anything; the secret never travels.  A recorded
 * PROOF is worth nothing on a new connection: the target's nonce is new.
 */
#ifndef WEFT_PROTO_AUTH_H
#define WEFT_PROTO_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define WF_KEY_LEN        32u   /* secret bytes */
#define WF_KEY_NAME_MAX   32u   /* name bytes with the NUL: names of 1..31 */
#define WF_AUTH_NONCE_LEN 32u
#define WF_AUTH_MAC_LEN   32u   /* HMAC-SHA256 */
#define WF_AUTH_ALG_HMAC_SHA256 1u

enum wf_auth_step {
	WF_AUTH_OFFER     = 1,  /* client -> target */
	WF_AUTH_CHALLENGE = 2,  /* target -> client */
	WF_AUTH_PROOF     = 3,  /* client -> target */
	WF_AUTH_RESULT    = 4,  /* target -> client */
	WF_AUTH_STEP_MAX
};

/* Every step in one fixed-size header (WF_OP_AUTH); fields a step does
 * not use are 0. */
struct wf_auth_hdr {
	uint16_t magic;         /* WF_WIRE_MAGIC */
	uint8_t  version;       /* WF_WIRE_VERSION */
	uint8_t  opcode;        /* WF_OP_AUTH */
	uint8_t  step;          /* enum wf_auth_step */
	uint8_t  alg;           /* WF_AUTH_ALG_HMAC_SHA256 */
	uint16_t status;        /* CHALLENGE, RESULT: enum wf_wire_status */
	uint64_t id;            /* OFFER: client id; CHALLENGE: target id */
	char     name[WF_KEY_NAME_MAX];  /* OFFER: key name, NUL-padded */
	uint8_t  nonce[WF_AUTH_NONCE_LEN]; /* OFFER: Nc; CHALLENGE: Nt */
	uint8_t  mac[WF_AUTH_MAC_LEN];     /* CHALLENGE: Mt; PROOF: Mc */
};
_Static_assert(sizeof(struct wf_auth_hdr) == 112, "auth header is 112 bytes");

/* Host view. */
struct wf_auth {
	uint8_t  step;
	uint16_t status;
	uint64_t id;
	char     name[WF_KEY_NAME_MAX];
	uint8_t  nonce[WF_AUTH_NONCE_LEN];
	uint8_t  mac[WF_AUTH_MAC_LEN];
};

void wf_auth_encode(const struct wf_auth *a, struct wf_auth_hdr *h);
/* Checks magic, version, opcode, step, alg, the name (OFFER: a valid key
 * name; else all zero) and that unused fields are 0.  0, -EPROTO or
 * -EINVAL (reason: WF_WR_*), as the other decoders (proto/wire.h). */
int  wf_auth_decode(const void *buf, size_t len, struct wf_auth *out,
		    uint32_t *reason);

/* A key name: 1..31 bytes of [A-Za-z0-9._-], not starting with '.' or
 * '-'.  1 or 0. */
int  wf_key_name_ok(const char *name);

/* The secrets of one side of an exchange. */
struct wf_auth_ctx {
	uint64_t cluster_id;
	char     name[WF_KEY_NAME_MAX];
	uint64_t client_id, target_id;
	uint8_t  nc[WF_AUTH_NONCE_LEN], nt[WF_AUTH_NONCE_LEN];
};

/* libcrypto answers: HMAC-SHA256 gives RFC 4231's test case 2, and the
 * RNG gives bytes.  0 or -EIO.  Also loads what libcrypto loads on first
 * use, so a daemon pays it at start, not at its first connection. */
int  wf_auth_selftest(void);
/* Fill buf with n bytes from libcrypto's RNG: 0 or -EIO. */
int  wf_auth_random(void *buf, size_t n);
/* The MAC of side (0: client, 1: target) over x's transcript with key:
 * 0 or -EIO. */
int  wf_auth_mac(const uint8_t key[WF_KEY_LEN], const struct wf_auth_ctx *x,
		 int side, uint8_t out[WF_AUTH_MAC_LEN]);
/* Whether mac is side's MAC over x with key (constant-time compare):
 * 1 or 0. */
int  wf_auth_check(const uint8_t key[WF_KEY_LEN], const struct wf_auth_ctx *x,
		   int side, const uint8_t mac[WF_AUTH_MAC_LEN]);

/*
 * The client's two steps, for every client (libweft, peer links, weftctl):
 * wf_auth_offer fills x (a fresh Nc) and the OFFER to send; wf_auth_answer
 * takes the decoded CHALLENGE: 0 and the PROOF to send, -EACCES when the
 * target refused the key (ch->status), -EBADMSG when the target did not
 * prove it holds the key (or is not target_id), -EIO.  x is wiped after.
 */
int  wf_auth_offer(struct wf_auth_ctx *x, uint64_t cluster_id, const char *name,
		   uint64_t client_id, uint32_t target_id, struct wf_auth_hdr *out);
int  wf_auth_answer(const uint8_t key[WF_KEY_LEN], struct wf_auth_ctx *x,
		    const struct wf_auth *ch, struct wf_auth_hdr *out);

/* Both client steps over a connected message socket fd (SOCK_SEQPACKET,
 * blocking within its timeouts): 0, -EACCES (refused, or the target did
 * not prove it holds the key), -EPROTO, -errno. */
int  wf_auth_client_fd(int fd, const uint8_t key[WF_KEY_LEN], const char *name,
		       uint64_t cluster_id, uint64_t client_id, uint32_t target_id);

/*
 * A keyring file: one key a line, "NAME HEX" (64 hex digits), '#'
 * comments.  Mode 0600: a file that its group or others can read is
 * refused.  Loaded whole (a few keys per host).
 */
struct wf_key {
	char    name[WF_KEY_NAME_MAX];
	uint8_t secret[WF_KEY_LEN];
};

struct wf_keyring {
	struct wf_key *keys;
	uint32_t       n;
};

/* Load path into kr: 0, or -errno with a one-line reason in err (-ENOENT:
 * no file; -EPERM: readable by group or others; -EINVAL: a bad line). */
int  wf_keyring_load(const char *path, struct wf_keyring *kr, char *err,
		     size_t errlen);
/* Write kr to path (a file beside it, mode 0600, fsynced, renamed over):
 * 0 or -errno. */
int  wf_keyring_save(const char *path, const struct wf_keyring *kr);
void wf_keyring_free(struct wf_keyring *kr);
/* The key called name, or NULL. */
const struct wf_key *wf_keyring_find(const struct wf_keyring *kr, const char *name);
/* Add a key called name with a fresh random secret (-EEXIST, -EINVAL,
 * -ENOMEM, -EIO) or remove it (-ENOENT). */
int  wf_keyring_add(struct wf_keyring *kr, const char *name);
int  wf_keyring_del(struct wf_keyring *kr, const char *name);

#endif
