/* SPDX-License-Identifier: Apache-2.0 */
#ifndef WEFT_PROTO_FILE_H
#define WEFT_PROTO_FILE_H

#include <stddef.h>

/*
 * Replace the file at path with len bytes of buf, whole or not at all: they
 * are written beside it (path.tmp.PID, so writers in several processes do
 * not meet), made durable with fsync and renamed over it, so a reader sees
 * the old file or the new one, never part of either.  The new file has
 * exactly mode, whatever the umask.  The directory is synced after the
 * rename, so the new name survives a crash once this returns 0.  0, or
 * -errno of the step that failed (the file beside is removed then).  Once
 * renamed the file is in place and 0 is returned whatever the directory's
 * sync said: the caller must then act as after a success.
 */
int wf_file_replace(const char *path, const void *buf, size_t len, unsigned mode);

/* fsync the directory that holds path (".", for a bare name): what makes a
 * rename or a new name in it durable.  0 or -errno. */
int wf_file_sync_dir(const char *path);

#endif
