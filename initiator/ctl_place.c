/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include "initiator/ctl.h"

static int todo(const char *what)
{
	fprintf(stderr, "weftctl %s: not built yet\n", what);
	return 1;
}

int ctl_locate(int argc, char **argv) { (void)argc; (void)argv; return todo("locate"); }
int ctl_map(int argc, char **argv) { (void)argc; (void)argv; return todo("map"); }
int ctl_balance(int argc, char **argv) { (void)argc; (void)argv; return todo("balance"); }
