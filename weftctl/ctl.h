/* SPDX-License-Identifier: Apache-2.0 */
/* weftctl subcommands; each returns the process exit code. */
#ifndef WEFT_INITIATOR_CTL_H
#define WEFT_INITIATOR_CTL_H

int ctl_check(int argc, char **argv);      /* ctl_map.c */
int ctl_locate(int argc, char **argv);     /* ctl_place.c */
int ctl_map(int argc, char **argv);        /* ctl_place.c: "map show" */
int ctl_balance(int argc, char **argv);    /* ctl_place.c */
int ctl_status(int argc, char **argv);     /* ctl_status.c */
int ctl_volume(int argc, char **argv);     /* ctl_volume.c */

#endif
