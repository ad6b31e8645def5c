/*
 * pin.h - acting on SOURCE's entries through handles, never through names.
 *
 * SOURCE is changed by others at any moment: between the moment a name is
 * checked and the moment it is used, it may have become a symlink to a
 * file outside SOURCE, a FIFO that blocks every open, or a device that
 * root must never open. So every entry is first "pinned": opened with
 * O_PATH|O_NOFOLLOW, which opens nothing (no device driver runs, no FIFO
 * blocks) and refers to one inode for good. Its type and identity are
 * checked on the pin; metadata is changed through the pin; data is read
 * or written only through a descriptor reopened from the pin, and only
 * for regular files and directories. Not aware of the namespace tree.
 */
#ifndef H5M_PIN_H
#define H5M_PIN_H

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "source.h"

/*
 * Pin `leaf` in directory `dirfd` ("" pins dirfd itself) with
 * O_PATH|O_NOFOLLOW; *st gets its lstat. A symlink is pinned as itself.
 * Returns the pin fd or -errno.
 */
int pin_at(int dirfd, const char *leaf, struct stat *st);

/* pin_at for a path beneath SOURCE (confined as src_openat). */
int pin_src(const struct src *s, const char *rel, struct stat *st);

/*
 * Reopen a pinned regular file or directory with open flags `flags`
 * (O_NOCTTY and O_CLOEXEC added; O_NONBLOCK is used for the open only)
 * through /proc/self/fd: the pinned inode itself, whatever its name is
 * now. Refuses anything else: -EISDIR
 * for a directory unless O_DIRECTORY is asked, -ENOTDIR for a
 * non-directory with O_DIRECTORY, -EIO for a FIFO, socket, device or
 * symlink. The result is the pinned inode itself. fd or -errno.
 */
int pin_reopen(int pin, const struct stat *st, int flags);

/*
 * Open the regular file (or, with O_DIRECTORY, the directory) at `rel`
 * beneath SOURCE for I/O, never blocking and never opening a FIFO or a
 * device: pin, check, reopen. *st (may be NULL) gets its stat. The
 * errors of pin_reopen (a symlink at the name is -EIO), and of the
 * lookup (-ELOOP for a symlink on the way, -ENOENT...).
 */
int src_open_data(const struct src *s, const char *rel, int flags,
		  struct stat *st);

/* As src_open_data, for `leaf` in directory `dirfd`. */
int open_data_at(int dirfd, const char *leaf, int flags, struct stat *st);

/*
 * Metadata through a pin, for any type but where noted. Each returns
 * 0 or -errno. pin_chmod refuses symlinks (-EOPNOTSUPP): their mode
 * cannot be set, and a path to a symlink would be followed.
 */
int pin_chown(int pin, uid_t uid, gid_t gid);
int pin_chmod(int pin, const struct stat *st, mode_t mode);
int pin_utimens(int pin, const struct stat *st, const struct timespec ts[2]);

/*
 * Read the xattrs of `rel` (regular files and directories only) into
 * node `n`'s list. Missing support (EOPNOTSUPP) counts as none. 0/-errno.
 */
int src_load_xattrs(const struct src *s, const char *rel, struct node *n);

#endif
