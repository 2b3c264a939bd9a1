/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include "fabric/fabric.h"

Test(smoke, cqe_names)
{
	cr_assert_str_eq(wf_cqe_op_name(WF_CQE_RECV_IMM), "recv_imm");
	cr_assert_str_eq(wf_cqe_op_name(0), "unknown");
	cr_assert_str_eq(wf_cqe_op_name(1000), "unknown");
}
