/* SPDX-License-Identifier: Apache-2.0 */
#include "proto/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int wf_file_sync_dir(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;
	int fd, ret = 0;

	if (n >= sizeof(dir))
		return -ENAMETOOLONG;
	if (!slash)
		dir[n++] = '.';
	else if (!n)
		dir[n++] = '/';         /* a file in the root */
	else
		memcpy(dir, path, n);
	dir[n] = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		ret = -errno;
	close(fd);
	return ret;
}

int wf_file_replace(const char *path, const void *buf, size_t len, unsigned mode)
{
	char tmp[PATH_MAX];
	const char *p = buf;
	size_t off = 0;
	int fd, ret = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >=
	    sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
	if (fd < 0)
		return -errno;
	/* Exactly mode, whatever the umask or a leftover file's mode. */
	if (fchmod(fd, (mode_t)mode))
		ret = -errno;
	while (off < len && !ret) {
		ssize_t n = write(fd, p + off, len - off);

		if (n < 0 && errno != EINTR)
			ret = -errno;
		else if (n > 0)
			off += (size_t)n;
	}
	if (!ret && fsync(fd))
		ret = -errno;
	if (close(fd) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret) {
		unlink(tmp);
		return ret;
	}
	/* The new file is in place and every reader sees it: the caller must
	 * go on as after a success (load it, tell the targets), so a failed
	 * sync of the directory is not an error here (the file system that
	 * failed it fails the next write that needs it). */
	(void)wf_file_sync_dir(path);
	return 0;
}
