/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weftctl subcommands; each returns the process exit code (0 done, 1
 * failed or found a fault, 2 bad arguments).  j is NULL for text output,
 * else the open JSON object of the command (weftctl.c wrote "command"
 * and writes "ok" and "error" after it): the command adds its fields and
 * prints no text on stdout.
 */
#ifndef WEFT_WEFTCTL_CTL_H
#define WEFT_WEFTCTL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/json.h"

int ctl_check(int argc, char **argv, struct wf_json *j);    /* ctl_map.c */
int ctl_locate(int argc, char **argv, struct wf_json *j);   /* ctl_place.c */
int ctl_map(int argc, char **argv, struct wf_json *j);      /* ctl_place.c: "map show" */
int ctl_balance(int argc, char **argv, struct wf_json *j);  /* ctl_place.c */
int ctl_status(int argc, char **argv, struct wf_json *j);   /* ctl_status.c */
int ctl_volume(int argc, char **argv, struct wf_json *j);   /* ctl_volume.c */
int ctl_target(int argc, char **argv, struct wf_json *j);   /* ctl_target.c */
int ctl_recover(int argc, char **argv, struct wf_json *j);  /* ctl_target.c */
int ctl_scrub(int argc, char **argv, struct wf_json *j);    /* ctl_scrub.c */
int ctl_map_push(int argc, char **argv, struct wf_json *j); /* ctl_volume.c: "map push" */
int ctl_map_etcd(int argc, char **argv, struct wf_json *j); /* ctl_etcd.c: "map import|export" */
int ctl_keeper(int argc, char **argv, struct wf_json *j);   /* ctl_keeper.c */
int ctl_key(int argc, char **argv, struct wf_json *j);      /* ctl_key.c */
/* weftctl volume allow|deny (ctl_key.c): the map's access list. */
int ctl_volume_access(int argc, char **argv, struct wf_json *j);
/* The keyring: given, else $WEFT_KEYRING, else WF_CTL_KEYRING_DEFAULT. */
#define WF_CTL_KEYRING_DEFAULT "/etc/weft/keyring"
const char *ctl_keyring_path(const char *given);
/* The key weftctl proves to targets: $WEFT_KEY in the keyring (loaded
 * once; NULL when unset, or said on stderr why not). */
struct wf_key;
const struct wf_key *ctl_auth_key(void);
/* PREFIX + what, with one '/' between. */
void ctl_etcd_key(char *buf, size_t len, const char *prefix, const char *what);

/*
 * weftctl --etcd URL COMMAND (ctl_etcd.c): begin fetches etcd's map into
 * a private file (tmp) the command gets as -c; end, after the command
 * (its exit code rc), writes that file back to etcd when the command
 * raised its epoch, by compare-and-swap on the revision it was read at
 * (a writer that raced us wins, and we fail saying so), and removes the
 * file.  While it runs, ctl_tell_targets tells nobody: targets with
 * --etcd watch the map.  Both return an exit code (0, 1, 2).
 */
struct wf_etcd;
struct ctl_etcd_run {
	struct wf_etcd *e;
	char     key[192];
	char     tmp[64];
	int64_t  rev;           /* mod_revision of the map read */
	uint64_t epoch;         /* its epoch */
};
extern bool ctl_etcd_mode;
extern char ctl_etcd_where[256];        /* "etcd URL KEY", for messages */
int  ctl_etcd_begin(struct ctl_etcd_run *x, const char *url, const char *prefix);
int  ctl_etcd_end(struct ctl_etcd_run *x, int rc, struct wf_json *j);

/* An error message to stderr (printf format, ending in a newline), kept
 * as the JSON document's "error" (weftctl.c). */
void ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct wf_map;
struct wf_target;
struct wf_ctl_status;
/* Add st's bytes left to copy (status version 7 on) to *sum; false when
 * st is of an older version and its pass runs (bytes left not known). */
bool ctl_add_bytes_left(const struct wf_ctl_status *st, uint64_t *sum);
/* STATUS of target t: its control socket in run_dir when it is on this
 * host, else its data address (*via says which).  0 or -errno. */
int  ctl_ask(const char *run_dir, const struct wf_target *t, uint64_t epoch,
	     uint64_t cluster_id, int ms, struct wf_ctl_status *st,
	     const char **via);
/* Request op (proto/ctl.h, with its arguments) of the target with id
 * on this host, through its control socket in run_dir, for a whole
 * status: 0 and *st filled, or -errno (no socket: the target is not
 * local). */
int  ctl_ask_local(const char *run_dir, uint32_t id, uint16_t op,
		   uint64_t epoch, uint64_t arg0, uint64_t arg1, int ms,
		   struct wf_ctl_status *st);
/* Over t's data address (with ctl_auth_key's key first, where there is
 * one: the exchange of docs/protocol.md over cluster_id): text NULL, a
 * STATUS; else push the map text (len bytes, of epoch) in MAP_PUT chunks.  0 with *st and *wstatus (the
 * wire status of the answer; may be NULL), or -errno. */
int  ctl_data_call(const struct wf_target *t, uint64_t epoch,
		   uint64_t cluster_id, int ms,
		   const char *text, uint32_t len, struct wf_ctl_status *st,
		   uint16_t *wstatus);
/* One request op (arg, arg2: its arguments) to target id's control socket
 * in run_dir; 0 and the answer of exactly len bytes in ans (checked:
 * magic, version, op), or -errno (-ENOENT: no socket, the target is not on
 * this host or not running; -EPROTO: a malformed answer, or an older
 * target that lacks op).  A whole status (len > WF_CTL_STATUS_V2_SIZE) is
 * asked in the current version. */
int  ctl_call(const char *run_dir, uint32_t id, uint16_t op, uint64_t epoch,
	      uint64_t arg, uint64_t arg2, int ms, void *ans, size_t len);
/* After getopt: 0 when the map was given (path) and no argument is left
 * over, else -EINVAL with the reason on stderr (a lone argument naming a
 * file: "the map goes after -c"). */
int  ctl_need_map(const char *cmd, const char *path, int argc, char **argv);
/* --timeout ARG of command cmd in ms (1 .. 600000): 0, or -EINVAL with
 * the reason on stderr. */
int  ctl_parse_ms(const char *cmd, const char *arg, int *ms);
/* "1.5 GiB", "512 B": bytes with a binary unit, into buf. */
const char *ctl_bytes(char *buf, size_t len, uint64_t bytes);
/* The run directory of the targets' control sockets: dir when set, else
 * $WEFT_RUN_DIR, else /run/weft. */
const char *ctl_run_dir(const char *dir);
/* Load the map at path into m as an editable copy (wf_map_edit_free);
 * 0, or -1 with the reason on stderr. */
int  ctl_map_load_copy(const char *path, struct wf_map *m);
struct wf_map_err;
/* Whether m, as it would be written, loads back: 0 or -errno (err). */
int  ctl_map_check_new(const struct wf_map *m, struct wf_map_err *err);
/*
 * Write m (epoch already bumped) to out: checked first (ctl_map_check_new);
 * when out is the file m was loaded from (path), that file is first
 * copied to path.bak, since the map is written anew from its parsed form
 * (comments and layout are not kept) and the operator's copy must
 * survive.  Says so on stdout (text) or as "backup" (JSON).  Then tells
 * the targets of the new map (when out == path): ctl_tell_targets.  0 or 1.
 */
int  ctl_map_save(const struct wf_map *m, const char *path, const char *out,
		  const char *run_dir, struct wf_json *j);
/* Tell every target of m (just written to path) of the new map, printed
 * or as a "reloaded" array in j: on this host a RELOAD of its map file
 * (control socket), elsewhere the file's text pushed over its data address
 * (WF_OP_MAP_PUT), which the target saves as its map file and loads. */
void ctl_tell_targets(const struct wf_map *m, const char *path, const char *run_dir,
		      struct wf_json *j);

#endif
