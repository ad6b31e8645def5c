/*
 * acl.h - POSIX ACLs in the form the kernel passes them as extended
 * attributes (system.posix_acl_access, system.posix_acl_default): a
 * 4-byte version (2), then 8-byte entries {u16 tag, u16 perm, u32 id},
 * little-endian. The mount keeps them as xattrs of its nodes; these
 * calls keep a node's mode and its access ACL telling the same story,
 * as the kernel's posix_acl_* helpers do for disk filesystems. No I/O.
 */
#ifndef H5M_ACL_H
#define H5M_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define ACL_XATTR_ACCESS "system.posix_acl_access"
#define ACL_XATTR_DEFAULT "system.posix_acl_default"

/* A well-formed value: version 2, whole entries, the three base ones. */
bool acl_valid(const void *v, size_t size);

/*
 * The permission bits an access ACL stands for (owner: its USER_OBJ,
 * group: its MASK, or GROUP_OBJ without one, other: OTHER) put into
 * *mode, whose other bits stay. Returns 1 when the ACL says more than
 * the mode can (named entries or a mask), 0 when the mode says it all
 * (the ACL need not be kept), -EINVAL for a malformed value.
 */
int acl_to_mode(const void *v, size_t size, mode_t *mode);

/*
 * chmod of a file with an access ACL: USER_OBJ, MASK (or GROUP_OBJ
 * without one) and OTHER take the mode's bits, in place. 0 or -EINVAL.
 */
int acl_chmod(void *v, size_t size, mode_t mode);

/*
 * A new node under a directory with a default ACL: `v` (a copy of that
 * default ACL) becomes its access ACL, each base entry limited by the
 * mode asked for, and *mode limited by the ACL, in place (the umask
 * does not apply). Returns 1 when the result must be kept as an ACL, 0
 * when the mode says it all, -EINVAL for a malformed value.
 */
int acl_create_masq(void *v, size_t size, mode_t *mode);

#endif
