/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-ublk's side of /dev/ublk-control (ublk_ctrl.c): the control
 * commands, the state files list reads, and the del and list commands.
 * The server and its queues are weft_ublk.c's.
 */
#ifndef WEFT_UBLK_CTRL_H
#define WEFT_UBLK_CTRL_H

#include <stdint.h>
#include <sys/ioctl.h>

#include <liburing.h>
#include <linux/ublk_cmd.h>

#define PROG "weft-ublk"

/*
 * Older UAPI headers (Debian 12's are 6.1) have only the plain opcodes;
 * kernels since 6.4 also take them ioctl-encoded, and may be built to take
 * nothing else (CONFIG_BLKDEV_UBLK_LEGACY_OPCODES unset).  Both kinds
 * carry the opcode in _IOC_NR, which is all the driver reads.
 */
#ifndef UBLK_U_CMD_ADD_DEV
#define UBLK_U_CMD_GET_DEV_INFO  _IOR('u', UBLK_CMD_GET_DEV_INFO, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_ADD_DEV       _IOWR('u', UBLK_CMD_ADD_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_DEL_DEV       _IOWR('u', UBLK_CMD_DEL_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_START_DEV     _IOWR('u', UBLK_CMD_START_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_STOP_DEV      _IOWR('u', UBLK_CMD_STOP_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_SET_PARAMS    _IOWR('u', UBLK_CMD_SET_PARAMS, struct ublksrv_ctrl_cmd)
#define UBLK_U_IO_FETCH_REQ      _IOWR('u', UBLK_IO_FETCH_REQ, struct ublksrv_io_cmd)
#define UBLK_U_IO_COMMIT_AND_FETCH_REQ \
	_IOWR('u', UBLK_IO_COMMIT_AND_FETCH_REQ, struct ublksrv_io_cmd)
#endif

#define WU_CONTROL     "/dev/ublk-control"
#define WU_SYS_CHAR    "/sys/class/ublk-char"
#define WU_STATE_DIR   "/run/weft-ublk"
#define WU_CTRL_MS     30000              /* a control command's bound */

/* /dev/ublk-control and the ring its commands go through. */
struct wu_ctrl {
	int             fd;
	struct io_uring ring;
};

/* Open /dev/ublk-control and its ring: 0, or -errno with the reason
 * printed (a kernel without the driver: how to load it). */
int  wu_ctrl_open(struct wu_ctrl *c);
void wu_ctrl_close(struct wu_ctrl *c);
/* One control command (UBLK_U_CMD_*), waited for at most WU_CTRL_MS: the
 * driver's result, or -ETIMEDOUT (the command is still with the driver). */
int  wu_ctrl_cmd(struct wu_ctrl *c, unsigned op, uint32_t dev_id, void *buf,
		 uint16_t len, uint64_t data0);

/* WU_STATE_DIR/ublkbN: the volume, map and pid that list shows. */
void wu_state_write(uint32_t id, const char *volume, const char *map);
void wu_state_remove(uint32_t id);

/* N, ublkbN or /dev/ublkbN: 0 and *id, or -EINVAL. */
int  wu_parse_dev(const char *v, uint32_t *id);
/* The commands: the process's exit code. */
int  wu_cmd_del(struct wu_ctrl *c, uint32_t id, unsigned wait_s);
int  wu_cmd_list(struct wu_ctrl *c);

#endif
