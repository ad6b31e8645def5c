/*
 * meta.h - between the files of src/backing that change SOURCE
 * (writeback.c, meta.c, replay.c) only.
 */
#ifndef H5M_META_H
#define H5M_META_H

#include "writeback.h"

/*
 * Owner, the kept xattrs (ns_xattr_kept), mode, then times, on the open
 * descriptor fd. xattrs SOURCE refuses go to *ref (may be NULL: then
 * they fail the call). 0 or -errno.
 */
int wb_set_fd_meta(int fd, mode_t mode, uid_t uid, gid_t gid,
		   const struct timespec *atime, const struct timespec *mtime,
		   const struct xattr *xa, struct wb_refused *ref);

/* Two names (not directories) of one inode? */
bool wb_same_inode(int d1, const char *l1, int d2, const char *l2);

/*
 * Give an extra name `path` to the file at dirfd/leaf, replacing
 * atomically; nothing to do when the name already holds that file.
 * 0 or -errno.
 */
int wb_link_over(const struct src *s, int dirfd, const char *leaf,
		 const char *path);

/*
 * Rename within dirfd that never replaces. Network filesystems (NFS, the
 * GlusterFS FUSE client) refuse RENAME_NOREPLACE with EINVAL: there a
 * hard link, which fails with EEXIST just as atomically, does the same
 * (not for directories). 0 or -errno (-EEXIST: the name is taken).
 */
int wb_rename_noreplace(int dirfd, const char *tmp, const char *leaf);

#endif
