/*
 * mounts.h - where the h5memfs mounts are (/proc/self/mountinfo, type
 * fuse.h5memfs), for the commands.
 */
#ifndef H5M_MOUNTS_H
#define H5M_MOUNTS_H

#include <stdbool.h>

/*
 * The mount point of the h5memfs mount holding path (the longest that
 * does), or NULL: errno is then that of realpath, or 0 when path is not
 * in such a mount. Caller frees.
 */
char *mount_of(const char *path);

/*
 * The mount point of the h5memfs mount at path itself (not one holding
 * it), or NULL (errno 0: none there). Works for a dead mount, whose root
 * cannot be stat'ed. Caller frees.
 */
char *mount_point_at(const char *path);

#endif
