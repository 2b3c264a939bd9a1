/* SPDX-License-Identifier: Apache-2.0 */
/* weft-bench subcommands; each returns the process exit code. */
#ifndef WEFT_BENCH_H
#define WEFT_BENCH_H

int bench_placement(int argc, char **argv);  /* placement.c */
int bench_fabric(int argc, char **argv);     /* fabric.c */
int bench_floor(int argc, char **argv);      /* io_floor.c */
int bench_io(int argc, char **argv);         /* io.c */

#endif
