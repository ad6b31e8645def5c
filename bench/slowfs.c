/*
 * slowfs - a passthrough FUSE filesystem that waits before every
 * operation, to stand in for a slow SOURCE (NFS over a network with
 * ~1 ms round trips) in the h5memfs benchmarks.
 *
 *     slowfs [-f] [-o delay_us=N] [-o read_delay_us=N] [-o timeout=S]
 *            [FUSE options] DIR MNT
 *
 * Every request that reaches this daemon (lookup, getattr, open, read,
 * write, fsync, readdir, ...) sleeps delay_us microseconds (default
 * 1000) before it is served from DIR; a read waits read_delay_us more
 * (default 0: a disk or server slow to deliver data, not to answer). Requests run on libfuse's thread
 * pool, so concurrent requests wait concurrently, as round trips to a
 * server do.
 *
 * Caching is what an NFS client with short attribute caching does:
 * names and attributes are cached for `timeout` seconds (default 1,
 * 0 for actimeo=0). File data is dropped from the page cache at every
 * open unless `-o auto_cache` (keep it while mtime and size are
 * unchanged, the NFS close-to-open model) or `-o kernel_cache` is
 * given. Writes go through to DIR one request at a time (no
 * writeback_cache).
 *
 * Built with the FUSE 3 high-level API (path based), from Debian's
 * libfuse3-dev:
 *     gcc -O2 -Wall bench/slowfs.c $(pkg-config --cflags --libs fuse3) \
 *         -o bench/slowfs
 */
#define FUSE_USE_VERSION 31
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

struct slow_opts {
	unsigned delay_us;
	unsigned read_delay_us;
	double timeout;
	int show_help;
};

static struct slow_opts so = { .delay_us = 1000, .timeout = 1.0 };
static int root_fd = -1;

#define OPT(t, p) { t, offsetof(struct slow_opts, p), 1 }
static const struct fuse_opt slow_optspec[] = {
	OPT("delay_us=%u", delay_us),
	OPT("read_delay_us=%u", read_delay_us),
	OPT("timeout=%lf", timeout),
	OPT("-h", show_help),
	OPT("--help", show_help),
	FUSE_OPT_END
};

static void wait_us(unsigned us)
{
	struct timespec ts, rem;

	if (!us)
		return;
	ts.tv_sec = us / 1000000;
	ts.tv_nsec = (long)(us % 1000000) * 1000;
	while (nanosleep(&ts, &rem) < 0 && errno == EINTR)
		ts = rem;
}

/* The round trip: every operation pays it before it is served. */
static void slow(void)
{
	wait_us(so.delay_us);
}

/* FUSE paths start with '/'; the backing tree is reached relative to root_fd. */
static const char *rel(const char *path)
{
	while (*path == '/')
		path++;
	return *path ? path : ".";
}

static void *slow_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	cfg->use_ino = 1;
	cfg->entry_timeout = so.timeout;
	cfg->attr_timeout = so.timeout;
	cfg->negative_timeout = so.timeout;
	/* Ops get fi where the kernel has a handle; paths stay valid. */
	cfg->nullpath_ok = 0;
	return NULL;
}

static int slow_getattr(const char *path, struct stat *st,
			struct fuse_file_info *fi)
{
	int r;

	slow();
	if (fi)
		r = fstat((int)fi->fh, st);
	else
		r = fstatat(root_fd, rel(path), st, AT_SYMLINK_NOFOLLOW);
	return r < 0 ? -errno : 0;
}

static int slow_access(const char *path, int mask)
{
	slow();
	return faccessat(root_fd, rel(path), mask, 0) < 0 ? -errno : 0;
}

static int slow_readlink(const char *path, char *buf, size_t size)
{
	ssize_t n;

	slow();
	n = readlinkat(root_fd, rel(path), buf, size - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static int slow_opendir(const char *path, struct fuse_file_info *fi)
{
	int fd;
	DIR *d;

	slow();
	fd = openat(root_fd, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		int e = errno;
		close(fd);
		return -e;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	return 0;
}

static int slow_readdir(const char *path, void *buf, fuse_fill_dir_t fill,
			off_t off, struct fuse_file_info *fi,
			enum fuse_readdir_flags flags)
{
	DIR *d = (DIR *)(uintptr_t)fi->fh;
	struct dirent *de;

	(void)path;
	(void)flags;
	slow();
	seekdir(d, off);
	while ((de = readdir(d)) != NULL) {
		struct stat st = { 0 };

		st.st_ino = de->d_ino;
		st.st_mode = (mode_t)de->d_type << 12;
		if (fill(buf, de->d_name, &st, telldir(d), 0))
			break;
	}
	return 0;
}

static int slow_releasedir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	slow();
	closedir((DIR *)(uintptr_t)fi->fh);
	return 0;
}

static int slow_mknod(const char *path, mode_t mode, dev_t rdev)
{
	slow();
	return mknodat(root_fd, rel(path), mode, rdev) < 0 ? -errno : 0;
}

static int slow_mkdir(const char *path, mode_t mode)
{
	slow();
	return mkdirat(root_fd, rel(path), mode) < 0 ? -errno : 0;
}

static int slow_unlink(const char *path)
{
	slow();
	return unlinkat(root_fd, rel(path), 0) < 0 ? -errno : 0;
}

static int slow_rmdir(const char *path)
{
	slow();
	return unlinkat(root_fd, rel(path), AT_REMOVEDIR) < 0 ? -errno : 0;
}

static int slow_symlink(const char *target, const char *path)
{
	slow();
	return symlinkat(target, root_fd, rel(path)) < 0 ? -errno : 0;
}

static int slow_rename(const char *from, const char *to, unsigned int flags)
{
	slow();
	return renameat2(root_fd, rel(from), root_fd, rel(to), flags) < 0 ?
		-errno : 0;
}

static int slow_link(const char *from, const char *to)
{
	slow();
	return linkat(root_fd, rel(from), root_fd, rel(to), 0) < 0 ? -errno : 0;
}

static int slow_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int r;

	slow();
	if (fi)
		r = fchmod((int)fi->fh, mode);
	else
		r = fchmodat(root_fd, rel(path), mode, 0);
	return r < 0 ? -errno : 0;
}

static int slow_chown(const char *path, uid_t uid, gid_t gid,
		      struct fuse_file_info *fi)
{
	int r;

	slow();
	if (fi)
		r = fchown((int)fi->fh, uid, gid);
	else
		r = fchownat(root_fd, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW);
	return r < 0 ? -errno : 0;
}

static int slow_truncate(const char *path, off_t size,
			 struct fuse_file_info *fi)
{
	int r, fd;

	slow();
	if (fi)
		return ftruncate((int)fi->fh, size) < 0 ? -errno : 0;
	fd = openat(root_fd, rel(path), O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = ftruncate(fd, size) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static int slow_utimens(const char *path, const struct timespec tv[2],
			struct fuse_file_info *fi)
{
	int r;

	slow();
	if (fi)
		r = futimens((int)fi->fh, tv);
	else
		r = utimensat(root_fd, rel(path), tv, AT_SYMLINK_NOFOLLOW);
	return r < 0 ? -errno : 0;
}

static int slow_create(const char *path, mode_t mode,
		       struct fuse_file_info *fi)
{
	int fd;

	slow();
	fd = openat(root_fd, rel(path), (fi->flags & ~O_NOFOLLOW) | O_CREAT |
		    O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	return 0;
}

static int slow_open(const char *path, struct fuse_file_info *fi)
{
	int fd;

	slow();
	fd = openat(root_fd, rel(path), (fi->flags & ~O_NOFOLLOW) | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	return 0;
}

static int slow_read(const char *path, char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	ssize_t n;

	(void)path;
	slow();
	wait_us(so.read_delay_us);
	n = pread((int)fi->fh, buf, size, off);
	return n < 0 ? -errno : (int)n;
}

static int slow_write(const char *path, const char *buf, size_t size,
		      off_t off, struct fuse_file_info *fi)
{
	ssize_t n;

	(void)path;
	slow();
	n = pwrite((int)fi->fh, buf, size, off);
	return n < 0 ? -errno : (int)n;
}

static int slow_statfs(const char *path, struct statvfs *st)
{
	(void)path;
	slow();
	return fstatvfs(root_fd, st) < 0 ? -errno : 0;
}

static int slow_flush(const char *path, struct fuse_file_info *fi)
{
	int fd;

	(void)path;
	slow();
	/* close() of a dup reports deferred errors without closing fh. */
	fd = dup((int)fi->fh);
	if (fd < 0)
		return -errno;
	return close(fd) < 0 ? -errno : 0;
}

static int slow_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	slow();
	close((int)fi->fh);
	return 0;
}

static int slow_fsync(const char *path, int datasync,
		      struct fuse_file_info *fi)
{
	int r;

	(void)path;
	slow();
	r = datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh);
	return r < 0 ? -errno : 0;
}

static int slow_fsyncdir(const char *path, int datasync,
			 struct fuse_file_info *fi)
{
	DIR *d = (DIR *)(uintptr_t)fi->fh;
	int r;

	(void)path;
	slow();
	r = datasync ? fdatasync(dirfd(d)) : fsync(dirfd(d));
	return r < 0 ? -errno : 0;
}

static int slow_fallocate(const char *path, int mode, off_t off, off_t len,
			  struct fuse_file_info *fi)
{
	(void)path;
	slow();
	return fallocate((int)fi->fh, mode, off, len) < 0 ? -errno : 0;
}

/* xattrs by /proc/self/fd path of an O_PATH descriptor: works for all types. */
#define XPATH(buf, path, fd)                                                  \
	int fd = openat(root_fd, rel(path), O_PATH | O_NOFOLLOW | O_CLOEXEC); \
	char buf[64];                                                         \
	if (fd < 0)                                                           \
		return -errno;                                                \
	snprintf(buf, sizeof(buf), "/proc/self/fd/%d", fd)

static int slow_setxattr(const char *path, const char *name, const char *val,
			 size_t size, int flags)
{
	int r;

	slow();
	XPATH(p, path, fd);
	r = setxattr(p, name, val, size, flags) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static int slow_getxattr(const char *path, const char *name, char *val,
			 size_t size)
{
	ssize_t r;

	slow();
	XPATH(p, path, fd);
	r = getxattr(p, name, val, size);
	r = r < 0 ? -errno : r;
	close(fd);
	return (int)r;
}

static int slow_listxattr(const char *path, char *list, size_t size)
{
	ssize_t r;

	slow();
	XPATH(p, path, fd);
	r = listxattr(p, list, size);
	r = r < 0 ? -errno : r;
	close(fd);
	return (int)r;
}

static int slow_removexattr(const char *path, const char *name)
{
	int r;

	slow();
	XPATH(p, path, fd);
	r = removexattr(p, name) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static const struct fuse_operations slow_ops = {
	.init = slow_init,
	.getattr = slow_getattr,
	.access = slow_access,
	.readlink = slow_readlink,
	.opendir = slow_opendir,
	.readdir = slow_readdir,
	.releasedir = slow_releasedir,
	.mknod = slow_mknod,
	.mkdir = slow_mkdir,
	.symlink = slow_symlink,
	.unlink = slow_unlink,
	.rmdir = slow_rmdir,
	.rename = slow_rename,
	.link = slow_link,
	.chmod = slow_chmod,
	.chown = slow_chown,
	.truncate = slow_truncate,
	.utimens = slow_utimens,
	.create = slow_create,
	.open = slow_open,
	.read = slow_read,
	.write = slow_write,
	.statfs = slow_statfs,
	.flush = slow_flush,
	.release = slow_release,
	.fsync = slow_fsync,
	.fsyncdir = slow_fsyncdir,
	.fallocate = slow_fallocate,
	.setxattr = slow_setxattr,
	.getxattr = slow_getxattr,
	.listxattr = slow_listxattr,
	.removexattr = slow_removexattr,
};

static void usage(const char *prog)
{
	printf("usage: %s [options] DIR MOUNTPOINT\n\n"
	       "Passthrough of DIR that sleeps before every operation.\n\n"
	       "slowfs options:\n"
	       "    -o delay_us=N   wait N microseconds per operation (1000)\n"
	       "    -o read_delay_us=N  and N more per read (0)\n"
	       "    -o timeout=S    name and attribute cache seconds (1.0)\n"
	       "    -o auto_cache   keep file data cached across opens while\n"
	       "                    mtime and size are unchanged\n\n",
	       prog);
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	const char *dir = NULL;
	int ret, i, nonopt = 0;

	if (fuse_opt_parse(&args, &so, slow_optspec, NULL) == -1)
		return 1;
	if (so.show_help) {
		usage(argv[0]);
		fuse_lib_help(&args);
		fuse_opt_free_args(&args);
		return 0;
	}
	/* The first non-option argument is DIR; take it out of args. */
	for (i = 1; i < args.argc; i++) {
		const char *a = args.argv[i];

		if (a[0] == '-') {
			if (strcmp(a, "-o") == 0)
				i++;
			continue;
		}
		if (nonopt++ == 0) {
			dir = a;
			memmove(&args.argv[i], &args.argv[i + 1],
				(size_t)(args.argc - i) * sizeof(char *));
			args.argc--;
			break;
		}
	}
	if (!dir) {
		usage(argv[0]);
		return 1;
	}
	root_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0) {
		fprintf(stderr, "slowfs: cannot open '%s': %s\n", dir,
			strerror(errno));
		return 1;
	}
	umask(0);
	ret = fuse_main(args.argc, args.argv, &slow_ops, NULL);
	fuse_opt_free_args(&args);
	close(root_fd);
	return ret;
}
