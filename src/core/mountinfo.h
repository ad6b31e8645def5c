/*
 * mountinfo.h - reading /proc/self/mountinfo, once for every user of it
 * (the commands, the daemon's dirty limits, h5memfs-scratch).
 */
#ifndef H5M_MOUNTINFO_H
#define H5M_MOUNTINFO_H

#include <stdbool.h>

/* One line, its fields unescaped (\040 is a space again). */
struct mountinfo_entry {
	const char *majmin;	/* "MAJ:MIN" of the mounted filesystem */
	const char *mountpoint;
	const char *fstype;	/* "fuse.h5memfs", "xfs", ... */
};

/*
 * Call fn for each mount, in the kernel's order (oldest first), until it
 * returns true. Lines of any length. Returns whether fn stopped the walk
 * (false too when mountinfo cannot be read).
 */
bool mountinfo_each(bool (*fn)(const struct mountinfo_entry *e, void *arg),
		    void *arg);

#endif
