/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include "initiator/ctl.h"

int ctl_check(int argc, char **argv)
{
	(void)argc; (void)argv;
	fprintf(stderr, "weftctl check: not built yet\n");
	return 1;
}
