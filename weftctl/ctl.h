/* SPDX-License-Identifier: Apache-2.0 */
/* weftctl subcommands; each returns the process exit code. */
#ifndef WEFT_WEFTCTL_CTL_H
#define WEFT_WEFTCTL_CTL_H

#include <stddef.h>
#include <stdint.h>

int ctl_check(int argc, char **argv);      /* ctl_map.c */
int ctl_locate(int argc, char **argv);     /* ctl_place.c */
int ctl_map(int argc, char **argv);        /* ctl_place.c: "map show" */
int ctl_balance(int argc, char **argv);    /* ctl_place.c */
int ctl_status(int argc, char **argv);     /* ctl_status.c */
int ctl_volume(int argc, char **argv);     /* ctl_volume.c */
int ctl_target(int argc, char **argv);     /* ctl_target.c */
int ctl_recover(int argc, char **argv);    /* ctl_target.c */
int ctl_scrub(int argc, char **argv);      /* ctl_scrub.c */
int ctl_map_push(int argc, char **argv);   /* ctl_volume.c: "map push" */
int ctl_map_etcd(int argc, char **argv);   /* ctl_etcd.c: "map import|export" */
/* PREFIX + what, with one '/' between. */
void ctl_etcd_key(char *buf, size_t len, const char *prefix, const char *what);

struct wf_map;
struct wf_target;
struct wf_ctl_status;
/* STATUS of target t: its control socket in run_dir when it is on this
 * host, else its data address (*via says which).  0 or -errno. */
int  ctl_ask(const char *run_dir, const struct wf_target *t, uint64_t epoch,
	     int ms, struct wf_ctl_status *st, const char **via);
/* Request op (proto/ctl.h, with its arguments) of the target with id
 * on this host, through its control socket in run_dir: 0 and *st filled,
 * or -errno (no socket: the target is not local). */
int  ctl_ask_local(const char *run_dir, uint32_t id, uint16_t op,
		   uint64_t epoch, uint64_t arg0, uint64_t arg1, int ms,
		   struct wf_ctl_status *st);
/* Over t's data address: text NULL, a STATUS; else push the map text
 * (len bytes, of epoch) in MAP_PUT chunks.  0 with *st and *wstatus (the
 * wire status of the answer; may be NULL), or -errno. */
int  ctl_data_call(const struct wf_target *t, uint64_t epoch, int ms,
		   const char *text, uint32_t len, struct wf_ctl_status *st,
		   uint16_t *wstatus);
/* Load the map at path into m as an editable copy (wf_map_edit_free);
 * 0, or -1 with the reason on stderr. */
int  ctl_map_load_copy(const char *path, struct wf_map *m);
struct wf_map_err;
/* Whether m, as it would be written, loads back: 0 or -errno (err). */
int  ctl_map_check_new(const struct wf_map *m, struct wf_map_err *err);
/* Tell every target of m (just written to path) of the new map, printing
 * what each answered: on this host a RELOAD of its map file (control
 * socket), elsewhere the file's text pushed over its data address
 * (WF_OP_MAP_PUT), which the target saves as its map file and loads. */
void ctl_tell_targets(const struct wf_map *m, const char *path, const char *run_dir);

#endif
