/*
 * pin.c - O_PATH handles on SOURCE's entries (see pin.h).
 */
#include "pin.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

/* fchmodat2(2), Linux 6.6: the first chmod that takes an O_PATH fd. */
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

int pin_at(int dirfd, const char *leaf, struct stat *st)
{
	int fd = openat(dirfd, *leaf ? leaf : ".",
			O_PATH | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, st) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

int pin_src(const struct src *s, const char *rel, struct stat *st)
{
	int fd = src_openat(s, rel, O_PATH);

	if (fd < 0)
		return fd;
	if (fstat(fd, st) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/* The errno for opening what st describes for I/O with `flags`, or 0. */
static int refuse(const struct stat *st, int flags)
{
	if (flags & O_DIRECTORY)
		return S_ISDIR(st->st_mode) ? 0 : -ENOTDIR;
	if (S_ISDIR(st->st_mode))
		return -EISDIR;
	return S_ISREG(st->st_mode) ? 0 : -EIO;
}

/* The descriptor now means blocking I/O again (O_NONBLOCK was for open). */
static int settle(int fd, const struct stat *want, int flags)
{
	struct stat st;
	int fl;

	if (fstat(fd, &st) < 0 || st.st_dev != want->st_dev ||
	    st.st_ino != want->st_ino) {
		close(fd);
		return -ESTALE; /* not the pinned inode: never use it */
	}
	if (!(flags & O_NONBLOCK) && (fl = fcntl(fd, F_GETFL)) >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return fd;
}

int pin_reopen(int pin, const struct stat *st, int flags)
{
	char proc[40];
	int err = refuse(st, flags), fd;

	if (err)
		return err;
	/*
	 * The magic link of a pinned fd reaches its inode whatever its name
	 * is now: no name is looked up again.
	 */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pin);
	fd = open(proc, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return settle(fd, st, flags);
}

int open_data_at(int dirfd, const char *leaf, int flags, struct stat *st)
{
	struct stat pst;
	int pin = pin_at(dirfd, leaf, &pst), fd;

	if (pin < 0)
		return pin;
	fd = pin_reopen(pin, &pst, flags);
	if (fd == -ENOENT && refuse(&pst, flags) == 0) {
		/*
		 * No /proc (a chroot): open the name, still never blocking
		 * (O_NONBLOCK) and only keeping it if it is the pinned file.
		 */
		fd = openat(dirfd, *leaf ? leaf : ".",
			    flags | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW |
				    O_CLOEXEC);
		fd = fd < 0 ? -errno : settle(fd, &pst, flags);
	}
	close(pin);
	if (fd >= 0 && st)
		*st = pst;
	return fd;
}

int src_open_data(const struct src *s, const char *rel, int flags,
		  struct stat *st)
{
	const char *leaf;
	int dirfd, fd;

	if (!*rel)
		return open_data_at(s->root, "", flags, st);
	dirfd = src_parent(s, rel, &leaf);
	if (dirfd < 0)
		return dirfd;
	fd = open_data_at(dirfd, leaf, flags, st);
	close(dirfd);
	return fd;
}

int pin_chown(int pin, uid_t uid, gid_t gid)
{
	return fchownat(pin, "", uid, gid, AT_EMPTY_PATH) < 0 ? -errno : 0;
}

int pin_chmod(int pin, const struct stat *st, mode_t mode)
{
	char proc[40];

	if (S_ISLNK(st->st_mode))
		return -EOPNOTSUPP;
	if (syscall(SYS_fchmodat2, pin, "", mode, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != ENOSYS && errno != EINVAL && errno != EPERM)
		return -errno;
	/*
	 * Before Linux 6.6 (or under a seccomp filter that answers EPERM
	 * for syscalls it does not know): chmod the magic link, which
	 * reaches the pinned inode; it is no symlink, so nothing further
	 * is followed.
	 */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pin);
	return chmod(proc, mode) < 0 ? -errno : 0;
}

int pin_utimens(int pin, const struct stat *st, const struct timespec ts[2])
{
	char proc[40];

	if (utimensat(pin, "", ts, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != EINVAL || S_ISLNK(st->st_mode))
		return -errno;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pin);
	return utimensat(AT_FDCWD, proc, ts, 0) < 0 ? -errno : 0;
}

int src_load_xattrs(const struct src *s, const char *rel, struct node *n)
{
	char *names = NULL, *p;
	ssize_t len;
	int fd, err = 0;

	if (!S_ISREG(n->mode) && !S_ISDIR(n->mode))
		return 0;
	/* never a FIFO or device that replaced the file behind the mount */
	fd = src_open_data(s, rel, O_RDONLY | (S_ISDIR(n->mode) ? O_DIRECTORY : 0),
			   NULL);
	if (fd == -EIO || fd == -EISDIR || fd == -ENOTDIR || fd == -ELOOP)
		return 0; /* not the file any more: none of its xattrs there */
	if (fd < 0)
		return fd;
	len = flistxattr(fd, NULL, 0);
	if (len <= 0) {
		err = len < 0 && errno != ENOTSUP ? -errno : 0;
		goto out;
	}
	names = malloc((size_t)len);
	if (!names) {
		err = -ENOMEM;
		goto out;
	}
	len = flistxattr(fd, names, (size_t)len);
	if (len < 0) {
		err = -errno;
		goto out;
	}
	for (p = names; p < names + len; p += strlen(p) + 1) {
		char val[XATTR_SIZE_MAX];
		ssize_t vl;

		if (!ns_xattr_kept(p))
			continue; /* only what ns_xattr_kept says is mirrored */
		vl = fgetxattr(fd, p, val, sizeof(val));
		if (vl < 0)
			continue;
		err = ns_xattr_set(n, p, val, (size_t)vl, 0);
		if (err)
			break;
	}
out:
	free(names);
	close(fd);
	return err;
}
