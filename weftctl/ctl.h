/* SPDX-License-Identifier: Apache-2.0 */
/* weftctl subcommands; each returns the process exit code. */
#ifndef WEFT_WEFTCTL_CTL_H
#define WEFT_WEFTCTL_CTL_H

#include <stdint.h>

int ctl_check(int argc, char **argv);      /* ctl_map.c */
int ctl_locate(int argc, char **argv);     /* ctl_place.c */
int ctl_map(int argc, char **argv);        /* ctl_place.c: "map show" */
int ctl_balance(int argc, char **argv);    /* ctl_place.c */
int ctl_status(int argc, char **argv);     /* ctl_status.c */
int ctl_volume(int argc, char **argv);     /* ctl_volume.c */
int ctl_target(int argc, char **argv);     /* ctl_target.c */
int ctl_recover(int argc, char **argv);    /* ctl_target.c */

struct wf_map;
struct wf_target;
struct wf_ctl_status;
/* STATUS of target t: its control socket in run_dir when it is on this
 * host, else its data address (*via says which).  0 or -errno. */
int  ctl_ask(const char *run_dir, const struct wf_target *t, uint64_t epoch,
	     int ms, struct wf_ctl_status *st, const char **via);
/* After getopt: 0 when the map was given (path) and no argument is left
 * over, else -EINVAL with the reason on stderr (a lone argument naming a
 * file: "the map goes after -c"). */
int  ctl_need_map(const char *cmd, const char *path, int argc, char **argv);
/* --timeout ARG of command cmd in ms (1 .. 600000): 0, or -EINVAL with
 * the reason on stderr. */
int  ctl_parse_ms(const char *cmd, const char *arg, int *ms);
/* Load the map at path into m as an editable copy (wf_map_edit_free);
 * 0, or -1 with the reason on stderr. */
int  ctl_map_load_copy(const char *path, struct wf_map *m);
struct wf_map_err;
/* Whether m, as it would be written, loads back: 0 or -errno (err). */
int  ctl_map_check_new(const struct wf_map *m, struct wf_map_err *err);
/* Ask every target of m on this host to reload its map file (RELOAD on
 * the control socket), printing what each answered. */
void ctl_tell_targets(const struct wf_map *m, const char *run_dir);

#endif
