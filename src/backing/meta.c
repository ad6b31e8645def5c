/*
 * meta.c - metadata of SOURCE's entries: owner, mode, times, xattrs.
 *
 * Through a descriptor the caller opened (the write-back's temporary),
 * or through a pin on an existing entry that is checked to be the entry
 * the mount knows (wb_set_meta): never by a name that may have changed.
 */
#include "meta.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../core/ts.h"
#include "pin.h"

/* SOURCE cannot hold this xattr (size, room, support): not fatal. */
static bool refusable(int e, const char *name)
{
	/* security.*: a daemon without CAP_SYS_ADMIN may not set them */
	return e == EOPNOTSUPP || e == E2BIG || e == ENOSPC || e == ERANGE ||
	       (e == EPERM && ns_xattr_security(name));
}

static int refuse(struct wb_refused *ref, const char *name, int e)
{
	if (!ref || !refusable(e, name))
		return -e;
	if (!ref->count++) {
		ref->err = -e;
		snprintf(ref->name, sizeof(ref->name), "%.255s", name);
	}
	return 0;
}

/*
 * Make the file's kept xattrs (ns_xattr_kept: user.*, trusted.*,
 * security.*, the POSIX ACLs) exactly `want`. Without CAP_SYS_ADMIN the
 * daemon neither sees nor may set trusted.* names in SOURCE: those are
 * left alone.
 */
static int xattrs_sync(int fd, const struct xattr *want,
		       struct wb_refused *ref)
{
	char names[65536], *p;
	ssize_t len = flistxattr(fd, names, sizeof(names));
	const struct xattr *x;
	int err;

	if (len < 0 && errno != ENOTSUP)
		return -errno;
	for (p = names; len > 0 && p < names + len; p += strlen(p) + 1) {
		bool keep = false;

		if (!ns_xattr_kept(p))
			continue;
		for (x = want; x && !keep; x = x->next)
			keep = strcmp(x->name, p) == 0;
		if (!keep && fremovexattr(fd, p) < 0 && errno != ENODATA &&
		    (err = refuse(ref, p, errno)))
			return err;
	}
	for (x = want; x; x = x->next) {
		if (!ns_xattr_kept(x->name))
			continue;
		if (fsetxattr(fd, x->name, x->value, x->size, 0) == 0 ||
		    (errno == EPERM && ns_xattr_trusted(x->name)))
			continue;
		err = refuse(ref, x->name, errno);
		if (err)
			return err;
	}
	return 0;
}

/* chown where we may: as non-root only our own ids can be given. */
static int owner_set(int dirfd, const char *leaf, uid_t uid, gid_t gid)
{
	if (fchownat(dirfd, leaf, uid, gid,
		     AT_SYMLINK_NOFOLLOW | (*leaf ? 0 : AT_EMPTY_PATH)) < 0) {
		if (errno == EPERM && geteuid() != 0)
			return 0;
		return -errno;
	}
	return 0;
}

int wb_set_fd_meta(int fd, mode_t mode, uid_t uid, gid_t gid,
		       const struct timespec *atime,
		       const struct timespec *mtime, const struct xattr *xa,
		       struct wb_refused *ref)
{
	struct timespec ts[2] = { *atime, *mtime };
	int err;

	/*
	 * The mode after the ACLs: setting an access ACL sets the mode's
	 * permission bits from it, and may clear set-group-ID.
	 */
	err = owner_set(fd, "", uid, gid);
	if (!err)
		err = xattrs_sync(fd, xa, ref);
	if (!err && fchmod(fd, mode & 07777) < 0)
		err = -errno;
	if (!err && futimens(fd, ts) < 0)
		err = -errno;
	return err;
}

/* Is the pinned entry the one the mount knows? */
static bool is_known(const struct stat *st, const struct wb_meta *m)
{
	if ((st->st_mode & S_IFMT) != (m->mode & S_IFMT))
		return false;
	if (!m->expect.ino)
		return true;
	return st->st_dev == m->expect.dev && st->st_ino == m->expect.ino &&
	       (!m->check_ctime || ts_equal(st->st_ctim, m->expect.ctime));
}

/* Owner, mode and times of a pinned entry that is not opened for I/O. */
static int set_pin_meta(int pin, const struct stat *st,
			const struct wb_meta *m)
{
	struct timespec ts[2] = { m->atime, m->mtime };
	int err = pin_chown(pin, m->uid, m->gid);

	if (err == -EPERM && geteuid() != 0)
		err = 0; /* as non-root only our own ids can be given */
	if (!err && !S_ISLNK(st->st_mode))
		err = pin_chmod(pin, st, m->mode & 07777);
	if (!err)
		err = pin_utimens(pin, st, ts);
	return err;
}

int wb_set_meta(const struct src *s, const char *rel,
		const struct wb_meta *m, struct src_ident *now)
{
	const char *leaf = "";
	int dirfd, pin, fd = -1, err = 0;
	struct stat st;

	dirfd = *rel ? src_parent(s, rel, &leaf)
		     : src_openat(s, "", O_RDONLY | O_DIRECTORY);
	if (dirfd < 0)
		return dirfd;
	/*
	 * Pin the entry (O_PATH|O_NOFOLLOW opens nothing, follows nothing)
	 * and act on that inode only, and only if it is still what the
	 * mount knows: a name swapped for a symlink to a file outside
	 * SOURCE, a FIFO or a device is never touched.
	 */
	pin = pin_at(dirfd, leaf, &st);
	if (pin < 0) {
		err = pin;
		goto out;
	}
	if (!is_known(&st, m)) {
		err = WB_OTHER;
		goto out;
	}
	if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
		/* xattrs and fsync need a real descriptor: reopen the pin */
		fd = pin_reopen(pin, &st, O_RDONLY |
			       (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
		if (fd < 0) {
			err = fd;
			goto out;
		}
		err = wb_set_fd_meta(fd, m->mode, m->uid, m->gid, &m->atime,
				  &m->mtime, m->xattrs, m->refused);
		if (!err && fsync(fd) < 0)
			err = -errno;
	} else {
		err = set_pin_meta(pin, &st, m);
		if (!err && fsync(dirfd) < 0)
			err = -errno;
	}
	if (!err && fstat(pin, &st) == 0)
		src_ident_from_stat(now, &st);
out:
	if (fd >= 0)
		close(fd);
	if (pin >= 0)
		close(pin);
	close(dirfd);
	return err;
}
