/*
 * meta.h - between writeback.c and meta.c only.
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

#endif
