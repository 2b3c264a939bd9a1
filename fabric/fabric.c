/* SPDX-License-Identifier: Apache-2.0 */
#include "fabric/fabric.h"

const char *wf_cqe_op_name(uint32_t op)
{
	static const char *const names[] = {
		[WF_CQE_WRITE_IMM] = "write_imm", [WF_CQE_READ] = "read",
		[WF_CQE_SEND] = "send", [WF_CQE_RECV_IMM] = "recv_imm",
		[WF_CQE_RECV_MSG] = "recv_msg", [WF_CQE_ACCEPT] = "accept",
		[WF_CQE_DISCONNECT] = "disconnect",
	};
	if (op < sizeof(names) / sizeof(names[0]) && names[op])
		return names[op];
	return "unknown";
}
