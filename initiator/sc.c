/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libweft: short-circuit local reads (placeholder until the target's
 * control protocol lands: every read goes through the target).
 */
#include <stdbool.h>

#include "initiator/weft_int.h"

int wf_sc_init(struct weft_cluster *cl)
{
	(void)cl;
	return 0;
}

void wf_sc_fini(struct weft_cluster *cl)
{
	(void)cl;
}

void wf_sc_rebuild(struct weft_cluster *cl)
{
	(void)cl;
}

bool wf_sc_try(struct weft_cluster *cl, struct wf_piece *p,
	       const struct wf_extent_loc *loc)
{
	(void)cl; (void)p; (void)loc;
	return false;
}

int wf_sc_poll(struct weft_cluster *cl)
{
	(void)cl;
	return 0;
}

int wf_sc_fd(const struct weft_cluster *cl)
{
	(void)cl;
	return -1;
}
