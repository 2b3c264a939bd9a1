/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-ublk's control side: commands to /dev/ublk-control as io_uring
 * commands (128-byte SQEs: a control command is 32 bytes), the state
 * files in WU_STATE_DIR, and the del and list commands (weft_ublk.c has
 * the server).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "ublk_ctrl.h"

/* ---- control commands ------------------------------------------------------ */

/* Opens /dev/ublk-control and its ring; 0 or -errno with the reason said. */
int wu_ctrl_open(struct wu_ctrl *c)
{
	int ret;

	c->fd = open(WU_CONTROL, O_RDWR | O_CLOEXEC);
	if (c->fd < 0) {
		ret = -errno;
		if (ret == -ENOENT)
			fprintf(stderr, PROG ": the kernel's ublk driver is not loaded: "
				WU_CONTROL " does not exist (modprobe ublk_drv; it needs "
				"Linux 6.0 or later built with CONFIG_BLK_DEV_UBLK)\n");
		else
			fprintf(stderr, PROG ": " WU_CONTROL ": %s\n", strerror(-ret));
		return ret;
	}
	/* A control command is 32 bytes: it needs 128-byte SQEs. */
	ret = io_uring_queue_init(4, &c->ring, IORING_SETUP_SQE128);
	if (ret) {
		fprintf(stderr, PROG ": io_uring for " WU_CONTROL ": %s\n", strerror(-ret));
		close(c->fd);
		c->fd = -1;
	}
	return ret;
}

void wu_ctrl_close(struct wu_ctrl *c)
{
	if (c->fd < 0)
		return;
	io_uring_queue_exit(&c->ring);
	close(c->fd);
	c->fd = -1;
}

/* One control command, waited for at most WU_CTRL_MS: its result, or
 * -ETIMEDOUT (the command is still with the driver). */
int wu_ctrl_cmd(struct wu_ctrl *c, unsigned op, uint32_t dev_id, void *buf,
		uint16_t len, uint64_t data0)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);
	struct ublksrv_ctrl_cmd *cmd;
	struct __kernel_timespec ts = { .tv_sec = WU_CTRL_MS / 1000 };
	struct io_uring_cqe *cqe;
	int ret;

	if (!sqe)
		return -EBUSY;
	memset(sqe, 0, 2 * sizeof(*sqe));       /* 128-byte SQE */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = c->fd;
	sqe->cmd_op = op;
	cmd = (struct ublksrv_ctrl_cmd *)sqe->cmd;
	cmd->dev_id = dev_id;
	cmd->queue_id = (uint16_t)-1;
	cmd->addr = (uint64_t)(uintptr_t)buf;
	cmd->len = len;
	cmd->data[0] = data0;
	ret = io_uring_submit(&c->ring);
	if (ret < 0)
		return ret;
	ret = io_uring_wait_cqe_timeout(&c->ring, &cqe, &ts);
	if (ret == -ETIME)
		return -ETIMEDOUT;
	if (ret)
		return ret;
	ret = cqe->res;
	io_uring_cqe_seen(&c->ring, cqe);
	return ret;
}

static int dev_info(struct wu_ctrl *c, uint32_t id, struct ublksrv_ctrl_dev_info *info)
{
	memset(info, 0, sizeof(*info));
	info->dev_id = id;
	return wu_ctrl_cmd(c, UBLK_U_CMD_GET_DEV_INFO, id, info, sizeof(*info), 0);
}

void wu_state_write(uint32_t id, const char *volume, const char *map)
{
	char path[96];
	FILE *f;

	mkdir(WU_STATE_DIR, 0755);
	snprintf(path, sizeof(path), WU_STATE_DIR "/ublkb%u", id);
	f = fopen(path, "w");
	if (!f)
		return;         /* list shows less, nothing else needs it */
	fprintf(f, "volume=%s\nmap=%s\npid=%d\n", volume, map, (int)getpid());
	fclose(f);
}

void wu_state_remove(uint32_t id)
{
	char path[96];

	snprintf(path, sizeof(path), WU_STATE_DIR "/ublkb%u", id);
	unlink(path);
}

/* ---- del, list ---------------------------------------------------------------------- */

int wu_parse_dev(const char *v, uint32_t *id)
{
	const char *s = v;
	char *end;
	unsigned long n;

	if (!strncmp(s, "/dev/ublkb", 10))
		s += 10;
	else if (!strncmp(s, "ublkb", 5))
		s += 5;
	errno = 0;
	n = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || n >= INT_MAX)
		return -EINVAL;
	*id = (uint32_t)n;
	return 0;
}

/* Waits up to ms for pid to end; true when it did. */
static bool wait_pid(pid_t pid, int ms)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	struct pollfd p = { .events = POLLIN };
	bool gone;

	if (fd < 0)
		return errno == ESRCH;
	p.fd = fd;
	gone = poll(&p, 1, ms) == 1;
	close(fd);
	return gone;
}

int wu_cmd_del(struct wu_ctrl *c, uint32_t id, unsigned wait_s)
{
	struct ublksrv_ctrl_dev_info info;
	int ret;

	if (wu_ctrl_open(c))
		return 1;
	ret = dev_info(c, id, &info);
	if (ret) {
		fprintf(stderr, PROG ": ublkb%u: %s\n", id,
			ret == -ENODEV ? "no such device" : strerror(-ret));
		wu_ctrl_close(c);
		return 1;
	}
	/* A live server tears down itself (STOP_DEV, DEL_DEV). */
	if (info.ublksrv_pid > 0 && kill(info.ublksrv_pid, SIGTERM) == 0 &&
	    !wait_pid(info.ublksrv_pid, (int)wait_s * 1000))
		fprintf(stderr, PROG ": ublkb%u: server %d did not end in %u s: "
			"stopping the device\n", id, (int)info.ublksrv_pid, wait_s);
	/* Its server died, or never answered: the device goes all the same
	 * (its requests fail). */
	ret = dev_info(c, id, &info);
	if (ret == 0) {
		wu_ctrl_cmd(c, UBLK_U_CMD_STOP_DEV, id, NULL, 0, 0);
		ret = wu_ctrl_cmd(c, UBLK_U_CMD_DEL_DEV, id, NULL, 0, 0);
		if (ret && ret != -ENODEV) {
			fprintf(stderr, PROG ": DEL_DEV of ublkb%u: %s\n", id, strerror(-ret));
			wu_ctrl_close(c);
			return 1;
		}
		wu_state_remove(id);
	}
	wu_ctrl_close(c);
	return 0;
}

static void state_read(uint32_t id, char *volume, size_t vlen)
{
	char path[96], line[512];
	FILE *f;

	snprintf(path, sizeof(path), WU_STATE_DIR "/ublkb%u", id);
	snprintf(volume, vlen, "-");
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "volume=", 7)) {
			line[strcspn(line, "\n")] = 0;
			snprintf(volume, vlen, "%.*s", (int)(vlen - 1), line + 7);
		}
	fclose(f);
}

int wu_cmd_list(struct wu_ctrl *c)
{
	static const char *const states[] = { "dead", "live", "quiesced" };
	struct ublksrv_ctrl_dev_info info;
	struct dirent *e;
	DIR *dir;
	uint32_t id;
	char volume[256], name[32];

	if (wu_ctrl_open(c))
		return 1;
	dir = opendir(WU_SYS_CHAR);
	printf("%-12s %-8s %8s %6s %6s %s\n", "DEVICE", "STATE", "PID", "QUEUES",
	       "DEPTH", "VOLUME");
	while (dir && (e = readdir(dir))) {
		if (strncmp(e->d_name, "ublkc", 5) ||
		    wu_parse_dev(e->d_name + 5, &id) || dev_info(c, id, &info))
			continue;
		state_read(id, volume, sizeof(volume));
		snprintf(name, sizeof(name), "ublkb%u", id);
		printf("%-12s %-8s %8d %6u %6u %s\n", name,
		       info.state < 3 ? states[info.state] : "?", (int)info.ublksrv_pid,
		       info.nr_hw_queues, info.queue_depth, volume);
	}
	if (dir)
		closedir(dir);
	wu_ctrl_close(c);
	return 0;
}

