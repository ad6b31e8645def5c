/*
 * memroom.c - the memory a batch job's cgroup leaves this process.
 *
 * A default budget of half the machine's RAM is wrong inside a job
 * limited to a few GiB: the kernel's OOM killer ends the daemon, and
 * every unsaved image with it, long before the budget says ENOSPC.
 * Only the conventional mount points are looked at (systemd's, on every
 * distribution that has cgroups); elsewhere RAM is the room.
 */
#include "memroom.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "size.h"

/* A number from a cgroup file ("max" and absurd values: no limit). */
static bool read_u64(const char *dir, const char *name, uint64_t *out)
{
	char path[4096 + 64], buf[64];
	unsigned long long v;
	FILE *f;
	bool ok;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "re");
	if (!f)
		return false;
	ok = fgets(buf, sizeof(buf), f) && sscanf(buf, "%llu", &v) == 1;
	fclose(f);
	if (ok)
		*out = v;
	return ok;
}

/*
 * The group of this process for a controller: from /proc/self/cgroup,
 * the line "0::PATH" (v2, want == NULL) or "N:...memory...:PATH" (v1).
 */
static char *own_group(const char *want)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	char *line = NULL, *found = NULL;
	size_t cap = 0;

	if (!f)
		return NULL;
	while (!found && getline(&line, &cap, f) > 0) {
		char *ctrl = strchr(line, ':'), *path;

		if (!ctrl || !(path = strchr(++ctrl, ':')))
			continue;
		*path++ = '\0';
		path[strcspn(path, "\n")] = '\0';
		if (want ? strstr(ctrl, want) != NULL
			 : (*ctrl == '\0' && line[0] == '0'))
			found = strdup(path);
	}
	free(line);
	fclose(f);
	return found;
}

/*
 * The least room (limit minus use) over `group` and its parents under
 * the hierarchy mounted at `root`; UINT64_MAX when none is limited.
 */
static uint64_t least_room(const char *root, char *group, const char *max,
			   const char *cur)
{
	uint64_t room = UINT64_MAX, limit, used;
	char dir[4096 + 64];

	for (;;) {
		snprintf(dir, sizeof(dir), "%s%s", root, group);
		/* v1 says "no limit" with a page-rounded LONG_MAX */
		if (read_u64(dir, max, &limit) && limit < (UINT64_C(1) << 60)) {
			if (!read_u64(dir, cur, &used) || used > limit)
				used = limit;
			if (limit - used < room)
				room = limit - used;
		}
		char *slash = strrchr(group, '/');

		if (!slash || slash == group)
			break;
		*slash = '\0';
	}
	return room;
}

uint64_t memroom_bytes(const char **from, char **group)
{
	static const char *const v2[] = { "/sys/fs/cgroup",
					  "/sys/fs/cgroup/unified" };
	uint64_t ram = size_ram_bytes(), room = UINT64_MAX;
	char *g, probe[64];

	*from = "RAM";
	*group = NULL;
	for (size_t i = 0; i < 2 && room == UINT64_MAX; i++) {
		snprintf(probe, sizeof(probe), "%s/cgroup.controllers", v2[i]);
		if (access(probe, R_OK) != 0 || !(g = own_group(NULL)))
			continue;
		*group = strdup(g);
		room = least_room(v2[i], g, "memory.max", "memory.current");
		free(g);
	}
	if (room == UINT64_MAX && (g = own_group("memory"))) {
		free(*group);
		*group = strdup(g);
		room = least_room("/sys/fs/cgroup/memory", g,
				  "memory.limit_in_bytes",
				  "memory.usage_in_bytes");
		free(g);
	}
	if (room == UINT64_MAX || (ram && room >= ram)) {
		free(*group);
		*group = NULL;
		return ram;
	}
	*from = "cgroup";
	return room;
}
