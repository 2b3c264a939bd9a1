/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder: the tcp backend lands in its own change. */
#include "fabric/fabric_int.h"

const struct wf_ops wf_tcp_ops = { .name = "tcp" };
