/*
 * bdi.c - the kernel's dirty-page limits for the mount's pages.
 *
 * The kernel gives every FUSE mount's backing device `strict_limit` and
 * a `max_ratio` of 1%: about 47 MiB of dirty pages on this kind of
 * machine, so that a daemon that cannot write back does not pin the
 * system's memory. On the daemon path a write-back here is a copy into
 * memory bounded by max_memory, so that guard only throttles: random 4K
 * writes over 512 MiB drop from over 150k to under 2k per second. As
 * root the daemon lifts it to the limits of an ordinary disk, still
 * within the system's dirty_ratio; others cannot (the files are
 * root's), and the docs say what that costs.
 */
#include "bdi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/log.h"

/* What the kernel's dirty throttling allows the mount (percent). */
#define BDI_MAX_RATIO "50"

/* path as /proc/self/mountinfo writes it: \ooo for space, tab, \n, \ */
static char *mountinfo_escape(const char *path)
{
	char *out = malloc(strlen(path) * 4 + 1), *o = out;

	if (!out)
		return NULL;
	for (; *path; path++) {
		if (strchr(" \t\n\\", *path))
			o += sprintf(o, "\\%03o", (unsigned char)*path);
		else
			*o++ = *path;
	}
	*o = '\0';
	return out;
}

/*
 * The "MAJ:MIN" of the last FUSE mount listed at `escaped` (the newest
 * one there is ours), or false.
 */
static bool find_device(const char *escaped, char dev[32])
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL, *sep;
	size_t cap = 0;
	bool found = false;

	if (!f)
		return false;
	while (getline(&line, &cap, f) > 0) {
		char majmin[32], mnt[4096 + 1];

		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... - FSTYPE ... */
		if (sscanf(line, "%*u %*u %31s %*s %4096s", majmin, mnt) != 2 ||
		    strcmp(mnt, escaped) != 0)
			continue;
		sep = strstr(line, " - ");
		if (sep && strncmp(sep + 3, "fuse", 4) == 0) {
			strcpy(dev, majmin);
			found = true;
		}
	}
	free(line);
	fclose(f);
	return found;
}

static int write_attr(const char *dev, const char *name, const char *value)
{
	char path[96];
	FILE *f;
	int err;

	snprintf(path, sizeof(path), "/sys/class/bdi/%s/%s", dev, name);
	f = fopen(path, "we");
	if (!f)
		return -1;
	err = fputs(value, f) < 0;
	return (fclose(f) != 0 || err) ? -1 : 0;
}

void bdi_lift_dirty_limit(const char *real_mountpoint)
{
	char dev[32], *escaped;

	if (geteuid() != 0 || !real_mountpoint)
		return;
	escaped = mountinfo_escape(real_mountpoint);
	if (!escaped)
		return;
	if (!find_device(escaped, dev)) {
		log_debug("no mountinfo line for %s: dirty limit kept",
			  real_mountpoint);
	} else if (write_attr(dev, "max_ratio", BDI_MAX_RATIO) < 0 ||
		   write_attr(dev, "strict_limit", "0") < 0) {
		/* kernels without strict_limit in sysfs (before 6.2) */
		log_debug("cannot lift the dirty limit of bdi %s: %m", dev);
	}
	free(escaped);
}
