/*
 * writeback.c - atomic, durable changes to SOURCE.
 */
#include "writeback.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../core/log.h"
#include "meta.h"
#include "pin.h"

/* Create a fresh temporary in dirfd; its name goes to name[32]. */
static int tmp_create(int dirfd, char name[32])
{
	for (int tries = 0; tries < 100; tries++) {
		uint64_t r;
		int fd;

		if (getrandom(&r, sizeof(r), 0) != sizeof(r))
			r = (uint64_t)rand() << 32 ^ (uint64_t)rand();
		snprintf(name, 32, SRC_TMP_PREFIX "%012llx",
			 (unsigned long long)(r & 0xffffffffffffULL));
		fd = openat(dirfd, name,
			    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
				    O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			return fd < 0 ? -errno : fd;
	}
	return -EEXIST;
}

bool wb_same_inode(int d1, const char *l1, int d2, const char *l2)
{
	struct stat a, b;

	return fstatat(d1, l1, &a, AT_SYMLINK_NOFOLLOW) == 0 &&
	       fstatat(d2, l2, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
	       !S_ISDIR(a.st_mode) && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

int wb_link_over(const struct src *s, int dirfd, const char *leaf,
		 const char *path)
{
	const char *leaf2;
	int d2 = src_parent(s, path, &leaf2), err = 0;
	char tmp[32];

	if (d2 < 0)
		return d2;
	if (wb_same_inode(dirfd, leaf, d2, leaf2))
		goto out; /* rename(2) would leave the temporary behind */
	for (int tries = 0; tries < 100; tries++) {
		uint64_t r = 0;

		getrandom(&r, sizeof(r), 0);
		snprintf(tmp, sizeof(tmp), SRC_TMP_PREFIX "%012llx",
			 (unsigned long long)(r & 0xffffffffffffULL));
		if (linkat(dirfd, leaf, d2, tmp, 0) == 0)
			break;
		if (errno != EEXIST) {
			err = -errno;
			goto out;
		}
	}
	if (renameat(d2, tmp, d2, leaf2) < 0) {
		err = -errno;
		unlinkat(d2, tmp, 0);
		goto out;
	}
	if (fsync(d2) < 0)
		err = -errno;
out:
	close(d2);
	return err;
}

/*
 * Clone the old file into the temporary, then write only what changed:
 * dirty pages below clean_size, and everything from clean_size on.
 * Returns 0, -EOPNOTSUPP (or -EXDEV, -EINVAL) when SOURCE cannot clone,
 * or another -errno.
 */
static int write_changed(int tmp, struct wb_file *f)
{
	const struct img *im = f->pages;
	uint64_t ps = UINT64_C(1) << im->page_shift;
	uint64_t low = im->clean_size < f->size ? im->clean_size : f->size;
	uint64_t copied, npages = (low + ps - 1) / ps;
	int err = 0;

	if (ioctl(tmp, FICLONE, f->old) < 0)
		err = -errno;
	if (err)
		return err == -ENOTTY || err == -EBADF ? -EOPNOTSUPP : err;
	f->cloned = true;
	if (ftruncate(tmp, (off_t)low) < 0)
		return -errno;
	for (uint64_t p = 0; p < npages && !err; p++) {
		uint64_t q = p;

		if (!img_page_dirty(im, p))
			continue;
		while (q + 1 < npages && img_page_dirty(im, q + 1))
			q++;
		uint64_t end = (q + 1) * ps < low ? (q + 1) * ps : low;

		err = src_copy_changed_span(f->fd, tmp, p * ps, end,
					     &copied);
		f->written += copied;
		p = q;
	}
	if (!err && f->size > low) {
		err = src_copy_span(f->fd, tmp, low, f->size, &copied);
		f->written += copied;
	}
	if (!err && ftruncate(tmp, (off_t)f->size) < 0)
		err = -errno;
	return err;
}

int wb_rename_noreplace(int dirfd, const char *tmp, const char *leaf)
{
	if (renameat2(dirfd, tmp, dirfd, leaf, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	if (linkat(dirfd, tmp, dirfd, leaf, 0) < 0)
		return -errno;
	unlinkat(dirfd, tmp, 0);
	return 0;
}

/*
 * Clients of shared filesystems (FUSE ones such as GlusterFS's, NFS, SMB,
 * Ceph, 9p, AFS) cache attributes and names: for a while after another
 * node replaced a file, fstatat can still show the old inode. A fresh
 * listing is read from the server.
 */
static bool names_may_be_cached(int dirfd)
{
	struct statfs sf;

	if (fstatfs(dirfd, &sf) < 0)
		return false;
	switch ((unsigned long)sf.f_type) {
	case FUSE_SUPER_MAGIC:
	case NFS_SUPER_MAGIC:
	case CIFS_SUPER_MAGIC:
	case SMB2_SUPER_MAGIC:
	case SMB_SUPER_MAGIC:
	case CEPH_SUPER_MAGIC:
	case V9FS_MAGIC:
	case AFS_SUPER_MAGIC:
	case AFS_FS_MAGIC:
		return true;
	default:
		return false;
	}
}

/* Does a fresh listing of dirfd show `leaf` with inode `ino`? */
static bool listed_with_ino(int dirfd, const char *leaf, ino_t ino)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	bool found = false;
	DIR *d;

	if (fd < 0)
		return false;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return false;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, leaf) == 0) {
			found = de->d_ino == ino;
			break;
		}
	closedir(d);
	return found;
}

/* Does the name at dirfd/leaf hold the open file fd (as of now)? */
static bool name_holds(int dirfd, const char *leaf, int fd, struct stat *a)
{
	struct stat b;

	if (fstat(fd, a) < 0 ||
	    fstatat(dirfd, leaf, &b, AT_SYMLINK_NOFOLLOW) < 0 ||
	    a->st_dev != b.st_dev || a->st_ino != b.st_ino)
		return false;
	return !names_may_be_cached(dirfd) ||
	       listed_with_ino(dirfd, leaf, a->st_ino);
}

/*
 * An open-file-description lock: closing another descriptor of the same
 * file (the clone source of the write-back, a load by another thread)
 * would drop a classic POSIX lock of the whole process. Classic locks
 * where OFD locks are refused.
 */
static int lock_fd(int fd, struct flock *fl)
{
	fl->l_pid = 0;
	if (fcntl(fd, F_OFD_SETLK, fl) == 0)
		return 0;
	if (errno != EINVAL)
		return -1;
	return fcntl(fd, F_SETLK, fl);
}

int wb_lock(const struct src *s, const char *rel, struct src_ident *id)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	const char *leaf;

	for (int tries = 0; tries < 300; tries++) {
		struct stat a;
		int fd = src_open_data(s, rel, O_RDWR, NULL), dirfd;

		if (fd == -EACCES || fd == -EROFS || fd == -ETXTBSY)
			fd = src_open_data(s, rel, O_RDONLY, NULL);
		if (fd == -EIO || fd == -EISDIR || fd == -ELOOP) {
			/*
			 * Not a regular file any more (a FIFO, a device, a
			 * directory, a symlink): never opened, only pinned;
			 * its identity is not the file's, so the caller saves
			 * the data beside it.
			 */
			fd = pin_src(s, rel, &a);
			if (fd >= 0)
				src_ident_from_stat(id, &a);
			return fd;
		}
		if (fd == -ESTALE) { /* replaced by another node just now */
			usleep(100 * 1000);
			continue;
		}
		if (fd < 0)
			return fd;
		if (lock_fd(fd, &fl) < 0) {
			int e = errno;

			if (e == EAGAIN || e == EACCES) {
				close(fd); /* another node writes it back */
				usleep(100 * 1000);
				continue;
			}
			/* no locks here (or a read-only fd): go on unlocked */
		}
		/* still the file that the name holds? */
		dirfd = src_parent(s, rel, &leaf);
		if (dirfd < 0) {
			close(fd);
			return dirfd;
		}
		if (name_holds(dirfd, leaf, fd, &a)) {
			close(dirfd);
			src_ident_from_stat(id, &a);
			return fd;
		}
		close(dirfd);
		close(fd); /* replaced meanwhile: lock the new one */
		usleep(20 * 1000);
	}
	return -EBUSY;
}

/*
 * The chattr flags a new version takes over from the file it replaces,
 * where SOURCE's filesystem has them: those that only say how to store
 * or back up the file (no dump, no atime, synchronous, compression, no
 * copy-on-write, data journalling...). Immutable and append-only are
 * not among them: a file that has either cannot be replaced at all
 * (rename over it fails with EPERM, and so does the write-back).
 */
#define KEPT_FLAGS (FS_SECRM_FL | FS_UNRM_FL | FS_COMPR_FL | FS_SYNC_FL | \
		    FS_NODUMP_FL | FS_NOATIME_FL | FS_JOURNAL_DATA_FL |     \
		    FS_NOTAIL_FL | FS_NOCOW_FL | FS_NOCOMP_FL)

/*
 * Give the temporary the kept flags of the file it replaces (old), while
 * it is still empty (btrfs takes no-copy-on-write only then). Where a
 * flag is refused (a filesystem without it, data journalling without
 * CAP_SYS_RESOURCE) the others are still set; nothing here fails the
 * write-back.
 */
static void flags_copy(int old, const char *leaf, int tmp)
{
	int want = 0, have;

	if (ioctl(old, FS_IOC_GETFLAGS, &want) < 0)
		want = 0;
	want &= KEPT_FLAGS;
	if (!want || ioctl(tmp, FS_IOC_GETFLAGS, &have) < 0)
		return;
	if ((have & want) == want)
		return;
	if (ioctl(tmp, FS_IOC_SETFLAGS, &(int){ have | want }) == 0)
		return;
	for (int bit = 1; bit; bit <<= 1) {
		int one = have | bit;

		if ((want & bit) && ioctl(tmp, FS_IOC_SETFLAGS, &one) == 0)
			have = one;
		else if (want & bit)
			log_debug("flag %#x of %s not kept: %s", bit, leaf,
				  strerror(errno));
	}
}

/*
 * Rename dirfd/tmp over dirfd/leaf, which held the file `old` when the
 * caller checked it, with no moment at which a file another node put
 * there meanwhile could be replaced: exchange the two names, check that
 * what came out is still old, remove it; otherwise exchange back and
 * return -EEXIST (tmp is ours again). A name emptied meanwhile is taken
 * only if still empty. Where exchanges are refused (NFS, GlusterFS), a
 * plain rename. *ours: false when tmp no longer holds our temporary (the
 * exchange back failed: the other file is there, never to be removed).
 */
static int rename_over(int dirfd, const char *tmp, const char *leaf, int old,
		       bool *ours)
{
	struct stat was, st;

	*ours = true;

	if (old < 0 || fstat(old, &was) < 0 ||
	    renameat2(dirfd, tmp, dirfd, leaf, RENAME_EXCHANGE) < 0) {
		if (old >= 0 && errno == ENOENT)
			return wb_rename_noreplace(dirfd, tmp, leaf);
		if (old >= 0 && errno != EINVAL && errno != ENOSYS &&
		    errno != EOPNOTSUPP)
			return -errno;
		return renameat(dirfd, tmp, dirfd, leaf) < 0 ? -errno : 0;
	}
	/* the exchange moved both ctimes: the inode tells */
	if (fstatat(dirfd, tmp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    st.st_dev == was.st_dev && st.st_ino == was.st_ino &&
	    unlinkat(dirfd, tmp, 0) == 0)
		return 0;
	if (renameat2(dirfd, tmp, dirfd, leaf, RENAME_EXCHANGE) < 0) {
		int e = errno;

		*ours = false;
		log_err("%s was replaced in SOURCE while it was written back, "
			"and the file put there cannot be put back (%s): it is "
			"%s now, and the name holds the mount's version", leaf,
			strerror(e), tmp);
		return -e;
	}
	return -EEXIST;
}

static bool cannot_clone(int err)
{
	return err == -EOPNOTSUPP || err == -EXDEV || err == -EINVAL ||
	       err == -ENOSYS || err == -ENOENT || err == -ETXTBSY;
}

int wb_write_file(const struct src *s, struct wb_file *f,
		  struct src_ident *id)
{
	const char *leaf;
	int dirfd = src_parent(s, f->paths[0], &leaf), fd = -1, err;
	char tmp[32];
	struct stat st;
	bool ours = true;

	if (dirfd < 0)
		return dirfd;
	fd = tmp_create(dirfd, tmp);
	if (fd < 0) {
		err = fd;
		goto out;
	}
	f->written = 0;
	f->cloned = false;
	memset(&f->refused, 0, sizeof(f->refused));
	if (!f->noreplace && f->old >= 0)
		flags_copy(f->old, leaf, fd);
	err = -EOPNOTSUPP;
	if (f->pages && f->fd >= 0 && f->pages->clean_size &&
	    !f->noreplace && f->old >= 0)
		err = write_changed(fd, f);
	if (err && cannot_clone(err) && !f->cloned) {
		err = 0;
		if (f->fd >= 0) {
			err = src_copy_data(f->fd, fd, f->size);
			f->written = f->size;
		}
	}
	if (!err && f->check)
		err = f->check(f->check_arg, fd, f->size);
	if (!err)
		err = wb_set_fd_meta(fd, f->mode, f->uid, f->gid, &f->atime,
				  &f->mtime, f->xattrs, &f->refused);
	if (!err && fsync(fd) < 0)
		err = -errno;
	if (!err && f->noreplace)
		err = wb_rename_noreplace(dirfd, tmp, leaf);
	else if (!err)
		err = rename_over(dirfd, tmp, leaf, f->old, &ours);
	if (err) {
		if (ours)
			unlinkat(dirfd, tmp, 0);
		goto out;
	}
	if (fsync(dirfd) < 0) {
		err = -errno;
		goto out;
	}
	for (size_t i = 1; i < f->npaths && !err; i++)
		err = wb_link_over(s, dirfd, leaf, f->paths[i]);
	if (!err && fstat(fd, &st) == 0)
		src_ident_from_stat(id, &st);
out:
	if (fd >= 0)
		close(fd);
	close(dirfd);
	return err;
}

int wb_ident(const struct src *s, const char *rel, struct src_ident *id)
{
	const char *leaf;
	int dirfd = src_parent(s, rel, &leaf), err = 0;
	struct stat st;

	if (dirfd < 0)
		return dirfd;
	if (fstatat(dirfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
		err = -errno;
	else
		src_ident_from_stat(id, &st);
	close(dirfd);
	return err;
}
