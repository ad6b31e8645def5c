/*
 * Unit tests of the mount's operations over a real SOURCE directory,
 * without FUSE: lazy scan, load on open, journal replay and atomic
 * write-back, volatile.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "core/acl.h"
#include "fs/fs.h"
#include "fs/internal.h"

static char src[64];
static struct fs fs;

static void put(const char *rel, const char *data)
{
	char p[256];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", src, rel);
	f = fopen(p, "w");
	cr_assert_not_null(f);
	fputs(data, f);
	fclose(f);
}

static char *get(const char *rel)
{
	static char buf[256];
	char p[256];
	FILE *f;
	size_t n;

	snprintf(p, sizeof(p), "%s/%s", src, rel);
	f = fopen(p, "r");
	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* Write through the mount's one write path, as a FUSE WRITE does. */
struct bytes {
	const char *p;
	size_t len;
};

static ssize_t copy_bytes(void *arg, int fd, uint64_t off)
{
	struct bytes *b = arg;
	ssize_t r = pwrite(fd, b->p, b->len, (off_t)off);

	return r < 0 ? -errno : r;
}

static int write_at(struct node *n, const char *data, uint64_t off)
{
	struct bytes b = { data, strlen(data) };
	size_t done;
	int err = fs_write(&fs, n, off, b.len, copy_bytes, &b, &done);

	cr_assert(err || done == b.len);
	return err;
}

/* Read as a FUSE READ does: from the fd fs_data_fd gives. */
static int read_at(struct node *n, char *buf, size_t size, uint64_t off,
		   size_t *done)
{
	int fd = fs_data_fd(&fs, n);
	ssize_t r;

	if (fd < 0)
		return fd;
	r = pread(fd, buf, size, (off_t)off);
	if (r < 0)
		return -errno;
	*done = (size_t)r;
	return 0;
}

static void start(bool vol)
{
	/* source_timeout: SOURCE calls go through helper threads */
	struct fs_opts o = { .volatile_ = vol, .increment = 65536,
			     .page_size = 65536, .max_memory = 1 << 30,
			     .source_timeout = 5 };
	char p[128];

	strcpy(src, "/tmp/h5memfs-unit-XXXXXX");
	cr_assert_not_null(mkdtemp(src));
	snprintf(p, sizeof(p), "%s/d", src);
	mkdir(p, 0755);
	put("a", "alpha");
	put("d/b", "beta");
	cr_assert_eq(fs_init(&fs, src, &o), 0);
}

static void stop(void)
{
	char cmd[128];

	fs_destroy(&fs);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", src);
	cr_assert_eq(system(cmd), 0);
}

static struct node *look(struct node *dir, const char *name)
{
	struct node *n = NULL;
	struct stat st;

	cr_assert_eq(fs_lookup(&fs, dir, name, &n, &st), 0, "lookup %s",
		     name);
	return n;
}

static void setup(void)
{
	start(false);
}

TestSuite(fs, .init = setup, .fini = stop);

Test(fs, source_entries_appear_with_their_size_before_loading)
{
	struct node *a = look(fs.ns.root, "a");
	struct stat st;

	cr_assert_eq(fs_getattr(&fs, a, &st), 0);
	cr_assert_eq(st.st_size, 5);
	cr_assert_not(a->flags & N_LOADED);
	cr_assert(S_ISDIR(look(fs.ns.root, "d")->mode));
}

Test(fs, a_file_is_loaded_on_open_and_read_from_memory)
{
	struct node *a = look(fs.ns.root, "a");
	char buf[16];
	size_t done;

	cr_assert_eq(fs_open(&fs, a, O_RDWR, NULL), 0);
	cr_assert(a->flags & N_LOADED);
	put("a", "changed behind");
	cr_assert_eq(read_at(a, buf, sizeof(buf), 0, &done), 0);
	cr_assert_eq(done, 5);
	cr_assert_eq(memcmp(buf, "alpha", 5), 0);
	fs_close(&fs, a);
}

Test(fs, writes_reach_source_only_at_fsync)
{
	struct node *a = look(fs.ns.root, "a");

	cr_assert_eq(fs_open(&fs, a, O_RDWR, NULL), 0);
	cr_assert_eq(write_at(a, "ALPHA!", 0), 0);
	cr_assert_str_eq(get("a"), "alpha");
	cr_assert_eq(fs_fsync(&fs, a), 0);
	cr_assert_str_eq(get("a"), "ALPHA!");
	cr_assert_not(a->flags & N_DIRTY);
	fs_close(&fs, a);
}

Test(fs, a_file_renamed_before_loading_loads_from_its_old_place)
{
	struct node *d = look(fs.ns.root, "d"), *b;
	char buf[8];
	size_t done;

	cr_assert_eq(fs_rename(&fs, d, "b", fs.ns.root, "moved", 0), 0);
	b = look(fs.ns.root, "moved");
	cr_assert_eq(fs_open(&fs, b, O_RDWR, NULL), 0);
	cr_assert_eq(read_at(b, buf, sizeof(buf), 0, &done), 0);
	cr_assert_eq(memcmp(buf, "beta", 4), 0);
	fs_close(&fs, b);
	cr_assert_not_null(get("d/b"));
	cr_assert_eq(fs_sync_all(&fs, NULL), 0);
	cr_assert_null(get("d/b"));
	cr_assert_str_eq(get("moved"), "beta");
}

Test(fs, sync_all_mirrors_new_files_dirs_symlinks_and_deletions)
{
	struct node *n, *dir;
	struct stat st;
	char p[256], t[64];
	ssize_t l;

	cr_assert_eq(fs_mkdir(&fs, fs.ns.root, "new", 0700, 0, getuid(),
			      getgid(), &dir, &st), 0);
	cr_assert_eq(fs_mknod(&fs, dir, "f", S_IFREG | 0640, 0, 0, getuid(),
			      getgid(), &n, &st), 0);
	cr_assert_eq(fs_open(&fs, n, O_RDWR, NULL), 0);
	cr_assert_eq(write_at(n, "fresh", 0), 0);
	fs_close(&fs, n);
	cr_assert_eq(fs_symlink(&fs, fs.ns.root, "ln", "new/f", getuid(),
				getgid(), &n, &st), 0);
	cr_assert_eq(fs_unlink(&fs, fs.ns.root, "a"), 0);
	cr_assert_eq(fs_sync_all(&fs, NULL), 0);
	cr_assert_str_eq(get("new/f"), "fresh");
	cr_assert_null(get("a"));
	snprintf(p, sizeof(p), "%s/new/f", src);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0640);
	snprintf(p, sizeof(p), "%s/ln", src);
	l = readlink(p, t, sizeof(t) - 1);
	cr_assert_eq(l, 5);
	t[l] = '\0';
	cr_assert_str_eq(t, "new/f");
}

/* An ACL value: version 2, then {tag, perm, id} entries (little-endian). */
static size_t acl_value(unsigned char *buf, const uint16_t (*es)[2],
			const uint32_t *ids, size_t n)
{
	uint32_t v = 2;

	memcpy(buf, &v, 4);
	for (size_t i = 0; i < n; i++) {
		memcpy(buf + 4 + 8 * i, es[i], 4);
		memcpy(buf + 8 + 8 * i, &ids[i], 4);
	}
	return 4 + 8 * n;
}

Test(fs, a_default_acl_gives_new_nodes_their_acl_and_mode_in_source_too)
{
	/* setfacl -d -m u:65534:rx: u::rwx u:65534:r-x g::r-x m::r-x o::r-x */
	static const uint16_t def[][2] = { { 1, 7 }, { 2, 5 }, { 4, 5 },
					   { 0x10, 5 }, { 0x20, 5 } };
	static const uint16_t base[][2] = { { 1, 6 }, { 4, 4 }, { 0x20, 0 } };
	static const uint32_t ids[] = { -1u, 65534, -1u, -1u, -1u };
	unsigned char v[64], got[64], ondisk[64];
	size_t n = acl_value(v, def, ids, 5), len;
	struct node *dir, *f, *sub, *plain;
	struct stat st, set = { 0 };
	char p[256];

	cr_assert_eq(fs_mkdir(&fs, fs.ns.root, "acl", 0755, 0, getuid(),
			      getgid(), &dir, &st), 0);
	cr_assert_eq(fs_setxattr(&fs, dir, ACL_XATTR_DEFAULT, v, n, 0), 0);
	/* umask 077 does not apply under a default ACL */
	cr_assert_eq(fs_mknod(&fs, dir, "f", S_IFREG | 0666, 077, 0, getuid(),
			      getgid(), &f, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0644);
	cr_assert_eq(fs_getxattr(&fs, f, ACL_XATTR_ACCESS, got, sizeof(got),
				 &len), 0);
	cr_assert_eq(len, n);
	cr_assert_eq(got[4 + 8 * 3 + 2], 4); /* mask r-- */
	cr_assert_eq(fs_getxattr(&fs, f, ACL_XATTR_DEFAULT, got, sizeof(got),
				 &len), -ENODATA);
	cr_assert_eq(fs_mkdir(&fs, dir, "sub", 0777, 077, getuid(), getgid(),
			      &sub, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0755);
	cr_assert_eq(fs_getxattr(&fs, sub, ACL_XATTR_DEFAULT, got, sizeof(got),
				 &len), 0);
	cr_assert_eq(fs_mknod(&fs, fs.ns.root, "plain", S_IFREG | 0666, 077, 0,
			      getuid(), getgid(), &plain, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	/* chmod sets the mask */
	set.st_mode = 0604;
	cr_assert_eq(fs_setattr(&fs, f, &set, FS_SET_MODE, &st), 0);
	cr_assert_eq(fs_getxattr(&fs, f, ACL_XATTR_ACCESS, got, sizeof(got),
				 &len), 0);
	cr_assert_eq(got[4 + 8 * 3 + 2], 0);
	cr_assert_eq(fs_sync_all(&fs, NULL), 0);
	snprintf(p, sizeof(p), "%s/acl/f", src);
	cr_assert_eq(getxattr(p, ACL_XATTR_ACCESS, ondisk, sizeof(ondisk)),
		     (ssize_t)n);
	cr_assert_eq(memcmp(ondisk, got, n), 0);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0604);
	/* an ACL the mode says all of is not kept, and sets the mode */
	n = acl_value(v, base, ids, 3);
	cr_assert_eq(fs_setxattr(&fs, f, ACL_XATTR_ACCESS, v, n, 0), 0);
	cr_assert_eq(fs_getattr(&fs, f, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0640);
	cr_assert_eq(fs_getxattr(&fs, f, ACL_XATTR_ACCESS, got, sizeof(got),
				 &len), -ENODATA);
	cr_assert_eq(fs_setxattr(&fs, f, ACL_XATTR_DEFAULT, v, n, 0), -EACCES);
	v[0] = 1;
	cr_assert_eq(fs_setxattr(&fs, dir, ACL_XATTR_DEFAULT, v, n, 0),
		     -EINVAL);
	cr_assert_eq(fs_sync_all(&fs, NULL), 0);
	cr_assert_eq(getxattr(p, ACL_XATTR_ACCESS, ondisk, sizeof(ondisk)), -1);
	cr_assert_eq(errno, ENODATA);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0640);
}

Test(fs, no_temporary_remains_after_a_write_back)
{
	struct node *a = look(fs.ns.root, "a");
	struct dirent *de;
	DIR *d;

	cr_assert_eq(fs_open(&fs, a, O_RDWR | O_TRUNC, NULL), 0);
	cr_assert_eq(write_at(a, "x", 0), 0);
	fs_close(&fs, a);
	cr_assert_eq(fs_sync_all(&fs, NULL), 0);
	d = opendir(src);
	while ((de = readdir(d)))
		cr_assert_neq(strncmp(de->d_name, ".h5memfs-tmp.", 13), 0);
	closedir(d);
	cr_assert_str_eq(get("a"), "x");
}

Test(fs, names_errors_are_precise)
{
	struct node *n;
	struct stat st;

	cr_assert_eq(fs_lookup(&fs, fs.ns.root, "nope", &n, &st), -ENOENT);
	cr_assert_eq(fs_mkdir(&fs, fs.ns.root, "d", 0755, 0, 0, 0, &n, &st),
		     -EEXIST);
	cr_assert_eq(fs_rmdir(&fs, fs.ns.root, "d"), -ENOTEMPTY);
	cr_assert_eq(fs_unlink(&fs, fs.ns.root, "d"), -EISDIR);
	cr_assert_eq(fs_rmdir(&fs, fs.ns.root, "a"), -ENOTDIR);
	cr_assert_eq(fs_rename(&fs, fs.ns.root, "a", fs.ns.root, "d", 0),
		     -EISDIR);
	cr_assert_eq(fs_rename(&fs, fs.ns.root, "d", look(fs.ns.root, "d"),
			       "x", 0), -EINVAL);
	cr_assert_eq(fs_rename(&fs, fs.ns.root, "a", fs.ns.root, "d",
			       1 /* RENAME_NOREPLACE */), -EEXIST);
}

Test(fs, volatile_never_touches_source)
{
	struct node *a;

	stop();
	start(true);
	a = look(fs.ns.root, "a");
	cr_assert_eq(fs_open(&fs, a, O_RDWR, NULL), 0);
	cr_assert_eq(write_at(a, "zzzzz", 0), 0);
	cr_assert_eq(fs_fsync(&fs, a), 0);
	fs_close(&fs, a);
	cr_assert_eq(fs_unlink(&fs, fs.ns.root, "a"), 0);
	cr_assert_eq(fs_sync_all(&fs, NULL), 0);
	cr_assert_str_eq(get("a"), "alpha");
}

Test(fs, a_fifo_put_in_source_where_a_file_was_fails_an_open_at_once)
{
	struct node *a = look(fs.ns.root, "a"), *d;
	char p[128];
	struct stat st;
	time_t t0;

	/*
	 * Opening a FIFO without a writer would block for ever: the load
	 * pins the name (O_PATH) and never opens what is not a regular
	 * file. (A SOURCE that really hangs is tested in test_nested.py.)
	 */
	snprintf(p, sizeof(p), "%s/a", src);
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(mkfifo(p, 0644), 0);
	fs.o.source_timeout = 30;
	t0 = time(NULL);
	cr_assert_eq(fs_open(&fs, a, O_RDONLY, NULL), -EIO);
	cr_assert_leq(time(NULL) - t0, 20); /* not the 30 s deadline */
	cr_assert_not(a->flags & N_LOADED);
	/* the tree still answers */
	cr_assert_eq(fs_getattr(&fs, a, &st), 0);
	d = look(fs.ns.root, "d");
	cr_assert(S_ISDIR(d->mode));
	/* nothing is left blocked on it */
	cr_assert(fs_jobs_end(&fs, 5000));
	cr_assert_eq(fs.stuck_jobs, 0);
}

static void no_flush(void *arg)
{
	(void)arg;
}

/* The checks after fs_destroy; a new mount for the suite's teardown. */
static void destroy_and_restart(void (*check)(void))
{
	stop();
	check();
	start(false);
}

static void threads_ended(void)
{
	cr_assert_not(fs.preload.running);
	cr_assert_not(fs.committing);
	cr_assert_null(fs.helpers);
}

/* The end of a mount leaves no thread of src/fs running. */
Test(fs, destroy_ends_the_preload_and_commit_threads)
{
	fs.o.commit = 3600;
	cr_assert_eq(fs_preload_start(&fs), 0);
	cr_assert_eq(fs_commit_start(&fs, no_flush, NULL), 0);
	cr_assert(fs.preload.running);
	cr_assert(fs.committing);
	destroy_and_restart(threads_ended);
}

Test(fs, destroy_joins_the_source_helpers)
{
	struct node *a = look(fs.ns.root, "a");

	cr_assert_eq(fs_open(&fs, a, O_RDONLY, NULL), 0);
	fs_close(&fs, a);
	cr_assert_not_null(fs.helpers); /* the load ran in a helper */
	destroy_and_restart(threads_ended);
}
