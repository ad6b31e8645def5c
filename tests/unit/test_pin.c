/*
 * Unit tests of the pinned handles on SOURCE's entries (src/backing/pin.c)
 * and of metadata write-back through them (wb_set_meta): nothing that
 * replaced a name behind the mount is opened, followed or changed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "backing/pin.h"
#include "backing/writeback.h"

static char dir[64], outside[96];
static struct src s;

static void path(char *p, size_t n, const char *rel)
{
	snprintf(p, n, "%s/%s", dir, rel);
}

static void setup(void)
{
	char p[128];
	FILE *f;

	strcpy(dir, "/tmp/h5memfs-pin-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(outside, sizeof(outside), "%s.outside", dir);
	f = fopen(outside, "w");
	cr_assert_not_null(f);
	fputs("secret", f);
	fclose(f);
	cr_assert_eq(chmod(outside, 0600), 0);
	path(p, sizeof(p), "fifo");
	cr_assert_eq(mkfifo(p, 0640), 0);
	path(p, sizeof(p), "dir");
	cr_assert_eq(mkdir(p, 0755), 0);
	path(p, sizeof(p), "file");
	f = fopen(p, "w");
	cr_assert_not_null(f);
	fputs("data", f);
	fclose(f);
	path(p, sizeof(p), "link");
	cr_assert_eq(symlink(outside, p), 0);
	cr_assert_eq(src_open(&s, dir), 0);
}

static void teardown(void)
{
	char cmd[256];

	src_close(&s);
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir, outside);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(pin, .init = setup, .fini = teardown);

Test(pin, data_opens_only_regular_files_and_never_block)
{
	struct stat st;
	int fd;

	fd = src_open_data(&s, "file", O_RDONLY, &st);
	cr_assert_geq(fd, 0);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0,
		     "O_NONBLOCK is for the open only");
	close(fd);
	/* a FIFO without a writer would block an open for ever */
	cr_assert_eq(src_open_data(&s, "fifo", O_RDONLY, NULL), -EIO);
	cr_assert_eq(src_open_data(&s, "fifo", O_RDWR, NULL), -EIO);
	cr_assert_eq(src_open_data(&s, "dir", O_RDONLY, NULL), -EISDIR);
	cr_assert_eq(src_open_data(&s, "file", O_RDONLY | O_DIRECTORY, NULL),
		     -ENOTDIR);
	cr_assert_eq(src_open_data(&s, "link", O_RDONLY, NULL), -EIO);
	fd = src_open_data(&s, "dir", O_RDONLY | O_DIRECTORY, NULL);
	cr_assert_geq(fd, 0);
	close(fd);
}

Test(pin, metadata_through_a_pin_never_reaches_a_symlink_target)
{
	struct timespec ts[2] = { { 1000, 0 }, { 2000, 0 } };
	struct stat st, out0, out1;
	int pin;

	cr_assert_eq(stat(outside, &out0), 0);
	pin = pin_src(&s, "link", &st);
	cr_assert_geq(pin, 0);
	cr_assert(S_ISLNK(st.st_mode), "the symlink itself is pinned");
	cr_assert_eq(pin_chmod(pin, &st, 04755), -EOPNOTSUPP);
	cr_assert_eq(pin_utimens(pin, &st, ts), 0);
	cr_assert_eq(pin_chown(pin, 1234, 1234), 0);
	close(pin);
	cr_assert_eq(stat(outside, &out1), 0);
	cr_assert_eq(out1.st_mode, out0.st_mode);
	cr_assert_eq(out1.st_uid, out0.st_uid);
	cr_assert_eq(out1.st_mtim.tv_sec, out0.st_mtim.tv_sec);
	cr_assert_eq(out1.st_ctim.tv_nsec, out0.st_ctim.tv_nsec);
}

Test(pin, metadata_of_a_fifo_goes_through_its_pin)
{
	struct timespec ts[2] = { { 1000, 0 }, { 2000, 0 } };
	struct stat st;
	char p[128];
	int pin = pin_src(&s, "fifo", &st);

	cr_assert_geq(pin, 0);
	cr_assert_eq(pin_chmod(pin, &st, 0604), 0);
	cr_assert_eq(pin_utimens(pin, &st, ts), 0);
	close(pin);
	path(p, sizeof(p), "fifo");
	cr_assert_eq(lstat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0604);
	cr_assert_eq(st.st_mtim.tv_sec, 2000);
}

static struct wb_meta meta_of(const char *rel, mode_t mode)
{
	struct wb_meta m = { .mode = mode, .uid = geteuid(),
			     .gid = getegid() };
	struct stat st;
	char p[128];

	path(p, sizeof(p), rel);
	cr_assert_eq(lstat(p, &st), 0);
	src_ident_from_stat(&m.expect, &st);
	m.check_ctime = true;
	m.atime = m.mtime = (struct timespec){ 3000, 0 };
	return m;
}

Test(pin, set_meta_refuses_a_name_that_holds_another_entry)
{
	struct wb_meta m = meta_of("fifo", S_IFIFO | 04755);
	struct src_ident now;
	struct stat out0, out1, st;
	char p[128];

	cr_assert_eq(stat(outside, &out0), 0);
	/* the FIFO becomes a symlink to a file outside SOURCE */
	path(p, sizeof(p), "fifo");
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(symlink(outside, p), 0);
	cr_assert_eq(wb_set_meta(&s, "fifo", &m, &now), WB_OTHER);
	cr_assert_eq(stat(outside, &out1), 0);
	cr_assert_eq(out1.st_mode, out0.st_mode);
	cr_assert_eq(out1.st_mtim.tv_sec, out0.st_mtim.tv_sec);
	/* ... then a new FIFO: same type, not the same entry */
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(mkfifo(p, 0600), 0);
	cr_assert_eq(wb_set_meta(&s, "fifo", &m, &now), WB_OTHER);
	cr_assert_eq(lstat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	/* the entry the mount knows is changed, and its identity given */
	m = meta_of("fifo", S_IFIFO | 0644);
	cr_assert_eq(wb_set_meta(&s, "fifo", &m, &now), 0);
	cr_assert_eq(lstat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0644);
	cr_assert_eq(st.st_mtim.tv_sec, 3000);
	cr_assert_eq(now.ino, st.st_ino);
	cr_assert_eq(now.ctime.tv_nsec, st.st_ctim.tv_nsec);
	/* a regular file swapped for a directory */
	m = meta_of("file", S_IFREG | 0644);
	path(p, sizeof(p), "file");
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(mkdir(p, 0700), 0);
	cr_assert_eq(wb_set_meta(&s, "file", &m, &now), WB_OTHER);
	cr_assert_eq(lstat(p, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0700);
}

static void same_fs_stays_on_one_filesystem(bool walk)
{
	int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC), fd;

	src_use_openat2(!walk);
	cr_assert_geq(root, 0);
	/* /proc is another filesystem beneath / */
	cr_assert_eq(src_openat_beneath(root, "proc/self", O_PATH, true),
		     -EXDEV);
	fd = src_openat_beneath(root, "proc/self", O_PATH, false);
	cr_assert_geq(fd, 0, "without same_fs: %s", strerror(-fd));
	close(fd);
	cr_assert_eq(src_openat_beneath(s.root, "link", O_RDONLY, true),
		     -ELOOP);
	cr_assert_eq(src_openat_beneath(s.root, "../x", O_RDONLY, true),
		     -EXDEV);
	close(root);
	src_use_openat2(true);
}

Test(pin, beneath_with_same_fs_openat2)
{
	same_fs_stays_on_one_filesystem(false);
}

Test(pin, beneath_with_same_fs_walk)
{
	same_fs_stays_on_one_filesystem(true);
}
