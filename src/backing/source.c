/*
 * source.c - confined reads of SOURCE: scan, load, xattrs.
 */
#include "source.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>


int src_open(struct src *s, const char *path)
{
	s->root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return s->root < 0 ? -errno : 0;
}

void src_close(struct src *s)
{
	if (s->root >= 0)
		close(s->root);
	s->root = -1;
}

/*
 * openat2(2) is missing before Linux 5.6, under seccomp filters that do
 * not know it and under valgrind 3.19: then every path is walked one
 * component at a time. Set once ENOSYS is seen (or by a test).
 */
static atomic_bool no_openat2;

void src_use_openat2(bool on)
{
	atomic_store(&no_openat2, !on);
}

/*
 * The walk openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) does, by hand:
 * each directory is opened from the one before with O_NOFOLLOW, ".." is
 * refused (EXDEV, as RESOLVE_BENEATH refuses escapes), a symlink on the
 * way is ELOOP. The last component gets `flags` (O_NOFOLLOW included),
 * so a symlink there is ELOOP, or ENOTDIR with O_DIRECTORY: the errors
 * openat2 gives.
 * Paths of any depth work: nothing is copied but one name at a time.
 */
static int walk_openat(int root, const char *rel, int flags, mode_t mode,
		       bool same_fs)
{
	int dir = root, fd;
	struct stat rst;

	if (same_fs && fstat(root, &rst) < 0)
		return -errno;

	if (*rel == '/')
		return -EXDEV; /* absolute: outside, as RESOLVE_BENEATH says */
	for (;;) {
		const char *slash;
		char name[NAME_MAX + 1];
		size_t l;

		while (*rel == '/')
			rel++;
		slash = strchr(rel, '/');
		l = slash ? (size_t)(slash - rel) : strlen(rel);
		while (slash && slash[1] == '/')
			slash++;
		if (slash && !slash[1])
			slash = NULL; /* a trailing slash: rel names a directory */
		if (l > NAME_MAX) {
			fd = -ENAMETOOLONG;
			break;
		}
		memcpy(name, rel, l);
		name[l] = '\0';
		if (!strcmp(name, "..")) {
			fd = -EXDEV;
			break;
		}
		if (!l)
			strcpy(name, "."); /* "" is the directory itself */
		if (slash)
			fd = openat(dir, name, O_PATH | O_DIRECTORY |
						       O_NOFOLLOW | O_CLOEXEC);
		else
			fd = openat(dir, name, flags, mode);
		if (fd < 0) {
			struct stat st;

			fd = -errno;
			/*
			 * O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR;
			 * on the way (not at the leaf) openat2 says ELOOP
			 */
			if (fd == -ENOTDIR && slash &&
			    fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISLNK(st.st_mode))
				fd = -ELOOP; /* what RESOLVE_NO_SYMLINKS says */
			break;
		}
		if (same_fs) {
			struct stat st;

			if (fstat(fd, &st) < 0 || st.st_dev != rst.st_dev) {
				close(fd);
				fd = -EXDEV; /* what RESOLVE_NO_XDEV says */
				break;
			}
		}
		if (!slash)
			break;
		if (dir != root)
			close(dir);
		dir = fd;
		rel = slash + 1;
	}
	if (dir != root)
		close(dir);
	return fd;
}

static int openat2_beneath(int dirfd, const char *rel, int flags,
			   bool same_fs)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
			   RESOLVE_NO_MAGICLINKS |
			   (same_fs ? RESOLVE_NO_XDEV : 0),
	};
	long fd = -1;

	if (flags & O_CREAT)
		how.mode = 0600;
	while (!atomic_load(&no_openat2)) {
		fd = syscall(SYS_openat2, dirfd, *rel ? rel : ".", &how,
			     sizeof(how));
		if (fd >= 0 || errno != EAGAIN)
			break;
	}
	if (fd < 0 && (atomic_load(&no_openat2) || errno == ENOSYS)) {
		atomic_store(&no_openat2, true);
		return walk_openat(dirfd, rel, (int)how.flags,
				   (mode_t)how.mode, same_fs);
	}
	/* RESOLVE_NO_SYMLINKS reports a symlink leaf as ELOOP, like O_NOFOLLOW */
	return fd < 0 ? -errno : (int)fd;
}

/*
 * A path the kernel would refuse as too long (trees deeper than
 * PATH_MAX) is resolved in pieces shorter than PATH_MAX, each beneath
 * the directory the previous one reached: confined all the same.
 */
int src_openat(const struct src *s, const char *rel, int flags)
{
	const char *p = rel;
	int dirfd = s->root, fd;

	while (strlen(p) >= PATH_MAX) {
		char *piece;
		const char *cut = p + PATH_MAX - 1;

		while (cut > p && *cut != '/')
			cut--;
		if (cut == p) {
			fd = -ENAMETOOLONG;
			goto out;
		}
		piece = strndup(p, (size_t)(cut - p));
		if (!piece) {
			fd = -ENOMEM;
			goto out;
		}
		fd = openat2_beneath(dirfd, piece, O_PATH | O_DIRECTORY,
				     false);
		free(piece);
		if (fd < 0)
			goto out;
		if (dirfd != s->root)
			close(dirfd);
		dirfd = fd;
		p = cut + 1;
	}
	fd = openat2_beneath(dirfd, p, flags, false);
out:
	if (dirfd != s->root)
		close(dirfd);
	return fd;
}

int src_openat_beneath(int dirfd, const char *rel, int flags, bool same_fs)
{
	return openat2_beneath(dirfd, rel, flags, same_fs);
}

int src_parent(const struct src *s, const char *rel, const char **leaf)
{
	const char *slash = strrchr(rel, '/');
	char *dir;
	int fd;

	if (!slash) {
		*leaf = rel;
		return src_openat(s, "", O_RDONLY | O_DIRECTORY);
	}
	dir = strndup(rel, (size_t)(slash - rel));
	if (!dir)
		return -ENOMEM;
	*leaf = slash + 1;
	fd = src_openat(s, dir, O_RDONLY | O_DIRECTORY);
	free(dir);
	return fd;
}

int src_scan(const struct src *s, const char *rel, src_entry_fn fn,
	     void *arg)
{
	int fd = src_openat(s, rel, O_RDONLY | O_DIRECTORY), err = 0;
	struct dirent *de;
	DIR *dir;

	if (fd < 0)
		return fd;
	dir = fdopendir(fd);
	if (!dir) {
		err = -errno;
		close(fd);
		return err;
	}
	while ((errno = 0, de = readdir(dir))) {
		char target[PATH_MAX];
		const char *tp = NULL;
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    !strncmp(de->d_name, SRC_TMP_PREFIX,
			     sizeof(SRC_TMP_PREFIX) - 1))
			continue;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue; /* removed behind us meanwhile */
			err = -errno;
			break;
		}
		if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlinkat(fd, de->d_name, target,
					       sizeof(target) - 1);
			if (n < 0) {
				err = -errno;
				break;
			}
			target[n] = '\0';
			tp = target;
		}
		err = fn(arg, de->d_name, &st, tp);
		if (err)
			break;
	}
	if (!err && errno)
		err = -errno;
	closedir(dir);
	return err;
}

void src_ident_from_stat(struct src_ident *id, const struct stat *st)
{
	id->dev = st->st_dev;
	id->ino = st->st_ino;
	id->size = (uint64_t)st->st_size;
	id->mtime = st->st_mtim;
	id->ctime = st->st_ctim;
}

/*
 * Copy [off, off+len) from `from` to `to` with sendfile, read/write else;
 * *done: the bytes copied (fewer when `from` is shorter).
 */
static int copy_range(int from, int to, uint64_t off, uint64_t len,
		      uint64_t *done)
{
	static const size_t chunk = 1 << 20;
	char *buf = NULL;
	int err = 0;

	*done = 0;
	if (lseek(to, (off_t)off, SEEK_SET) < 0)
		return -errno;
	while (len) {
		off_t in = (off_t)off;
		size_t want = len > 0x7ffff000 ? 0x7ffff000 : (size_t)len;
		ssize_t n = buf ? -1 : sendfile(to, from, &in, want);

		if (n < 0 && !buf && (errno == EINVAL || errno == ENOSYS)) {
			buf = malloc(chunk);
			if (!buf)
				return -ENOMEM;
		}
		if (buf) {
			n = pread(from, buf, len < chunk ? len : chunk,
				  (off_t)off);
			if (n > 0) {
				ssize_t w = pwrite(to, buf, (size_t)n,
						   (off_t)off);
				if (w != n)
					n = w < 0 ? -1 : (errno = EIO, -1);
			}
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			break;
		}
		if (n == 0)
			break; /* source shorter than expected: stop there */
		off += (uint64_t)n;
		len -= (uint64_t)n;
		*done += (uint64_t)n;
	}
	free(buf);
	return err;
}

/* src_copy_span; *reached: the end of the last data copied (or start) */
static int copy_span(int from, int to, uint64_t start, uint64_t end,
		     uint64_t *copied, uint64_t *reached)
{
	off_t pos = (off_t)start;
	uint64_t done;
	int err;

	*copied = 0;
	*reached = start;
	while ((uint64_t)pos < end) {
		off_t data = lseek(from, pos, SEEK_DATA), hole;

		if (data < 0) {
			if (errno == ENXIO)
				break; /* only a hole is left */
			if (errno != EINVAL)
				return -errno;
			data = pos; /* no SEEK_DATA support: copy it all */
			hole = (off_t)end;
		} else {
			hole = lseek(from, data, SEEK_HOLE);
			if (hole < 0)
				return -errno;
		}
		if ((uint64_t)data >= end)
			break;
		if ((uint64_t)hole > end)
			hole = (off_t)end;
		err = copy_range(from, to, (uint64_t)data,
				 (uint64_t)(hole - data), &done);
		if (err)
			return err;
		*copied += (uint64_t)(hole - data);
		*reached = (uint64_t)data + done;
		pos = hole;
	}
	return 0;
}

int src_copy_span(int from, int to, uint64_t start, uint64_t end,
		  uint64_t *copied)
{
	uint64_t reached;

	return copy_span(from, to, start, end, copied, &reached);
}

/*
 * Make [start, len) of `fd` read as zeros: a hole where the filesystem
 * punches one (the clone shares the old blocks: writing zeros would
 * allocate), zeros written elsewhere. 0 or -errno.
 */
static int zero_span(int fd, uint64_t start, uint64_t len)
{
	static const char zeros[65536];

	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)start, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	while (len) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		ssize_t w = pwrite(fd, zeros, n, (off_t)start);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		start += (uint64_t)w;
		len -= (uint64_t)w;
	}
	return 0;
}

int src_copy_changed_span(int from, int to, uint64_t start, uint64_t end,
			  uint64_t *copied)
{
	uint64_t pos = start, c;
	int err;

	*copied = 0;
	while (pos < end) {
		off_t data = lseek(from, (off_t)pos, SEEK_DATA);
		uint64_t d;

		if (data < 0 && errno == EINVAL) /* no SEEK_DATA: all data */
			return src_copy_span(from, to, pos, end, copied);
		if (data < 0 && errno != ENXIO)
			return -errno;
		d = data < 0 || (uint64_t)data > end ? end : (uint64_t)data;
		if (d > pos && (err = zero_span(to, pos, d - pos)))
			return err;
		if (d >= end)
			break;
		off_t hole = lseek(from, (off_t)d, SEEK_HOLE);

		if (hole < 0)
			return -errno;
		pos = (uint64_t)hole < end ? (uint64_t)hole : end;
		err = src_copy_span(from, to, d, pos, &c);
		*copied += c;
		if (err)
			return err;
	}
	return 0;
}

int src_copy_data(int from, int to, uint64_t size)
{
	uint64_t copied, reached;
	int err = copy_span(from, to, 0, size, &copied, &reached);

	/* a hole at the end (or nothing at all) sets no size by itself */
	if (!err && reached != size && ftruncate(to, (off_t)size) < 0)
		err = -errno;
	return err;
}

int src_load_fd(int fd, struct img *im, struct src_ident *id)
{
	struct stat st;
	int err;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EIO; /* replaced by something else behind the mount */
	/* read-ahead as cp asks for it: loads run at the disk's speed */
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	err = img_open(im);
	if (!err)
		err = src_copy_data(fd, im->fd, (uint64_t)st.st_size);
	if (!err)
		src_ident_from_stat(id, &st);
	return err;
}

