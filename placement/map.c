/* SPDX-License-Identifier: Apache-2.0 */
/* Placeholder until the loader lands. */
#include <errno.h>
#include <string.h>
#include "placement/map.h"

int wf_map_load(const char *path, struct wf_map *map, struct wf_map_err *err)
{
	(void)path;
	memset(map, 0, sizeof(*map));
	strcpy(err->msg, "map loader not built yet");
	return -ENOSYS;
}

void wf_map_free(struct wf_map *map)
{
	memset(map, 0, sizeof(*map));
}
