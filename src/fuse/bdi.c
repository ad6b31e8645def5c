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
#include <string.h>
#include <unistd.h>

#include "../core/log.h"
#include "../core/mountinfo.h"

/* What the kernel's dirty throttling allows the mount (percent). */
#define BDI_MAX_RATIO "50"

struct find {
	const char *mountpoint;
	char dev[32];
	bool found;
};

/* Keep the last FUSE mount at the mount point: the newest is ours. */
static bool consider(const struct mountinfo_entry *e, void *arg)
{
	struct find *f = arg;

	if (!strcmp(e->mountpoint, f->mountpoint) &&
	    !strncmp(e->fstype, "fuse", 4) &&
	    strlen(e->majmin) < sizeof(f->dev)) {
		strcpy(f->dev, e->majmin);
		f->found = true;
	}
	return false;
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
	struct find f = { real_mountpoint, "", false };

	if (geteuid() != 0 || !real_mountpoint)
		return;
	mountinfo_each(consider, &f);
	if (!f.found) {
		log_debug("no mountinfo line for %s: dirty limit kept",
			  real_mountpoint);
	} else if (write_attr(f.dev, "max_ratio", BDI_MAX_RATIO) < 0 ||
		   write_attr(f.dev, "strict_limit", "0") < 0) {
		/* kernels without strict_limit in sysfs (before 6.2) */
		log_debug("cannot lift the dirty limit of bdi %s: %m", f.dev);
	}
}
