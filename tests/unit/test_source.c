/*
 * Unit tests of SOURCE access (src/backing/source.c), on both ways of
 * resolving a path: openat2(2), and the component-by-component walk used
 * where openat2 is missing. Both must keep every path beneath SOURCE and
 * follow no symlink.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backing/source.h"

static char dir[64];
static struct src s;

static void mk(const char *rel, const char *data)
{
	char p[256];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	if (!data) {
		cr_assert_eq(mkdir(p, 0755), 0);
		return;
	}
	f = fopen(p, "w");
	cr_assert_not_null(f);
	fputs(data, f);
	fclose(f);
}

static void setup(bool walk)
{
	char p[256];

	src_use_openat2(!walk);
	strcpy(dir, "/tmp/h5memfs-src-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	mk("d", NULL);
	mk("d/e", NULL);
	mk("d/e/f", "deep");
	mk("top", "top");
	snprintf(p, sizeof(p), "%s/d/up", dir);
	cr_assert_eq(symlink("..", p), 0);
	snprintf(p, sizeof(p), "%s/d/ln", dir);
	cr_assert_eq(symlink("e/f", p), 0);
	snprintf(p, sizeof(p), "%s/etc", dir);
	cr_assert_eq(symlink("/etc", p), 0);
	cr_assert_eq(src_open(&s, dir), 0);
}

static void teardown(void)
{
	char cmd[128];

	src_close(&s);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
	src_use_openat2(true);
}

static char *read_fd(int fd)
{
	static char buf[64];
	ssize_t n;

	cr_assert_geq(fd, 0, "open failed: %s", strerror(-fd));
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	cr_assert_geq(n, 0);
	buf[n] = '\0';
	return buf;
}

static void opens_what_is_beneath(void)
{
	cr_assert_str_eq(read_fd(src_openat(&s, "d/e/f", O_RDONLY)), "deep");
	cr_assert_str_eq(read_fd(src_openat(&s, "top", O_RDONLY)), "top");
	cr_assert_str_eq(read_fd(src_openat(&s, "./d//e/f", O_RDONLY)),
			 "deep");
	int fd = src_openat(&s, "", O_RDONLY | O_DIRECTORY);
	struct stat a, b;

	cr_assert_geq(fd, 0);
	fstat(fd, &a);
	stat(dir, &b);
	close(fd);
	cr_assert_eq(a.st_ino, b.st_ino, "\"\" is SOURCE itself");
}

static void refuses_ways_out(void)
{
	cr_assert_eq(src_openat(&s, "d/ln", O_RDONLY), -ELOOP);
	cr_assert_eq(src_openat(&s, "d/up/top", O_RDONLY), -ELOOP);
	cr_assert_eq(src_openat(&s, "etc/passwd", O_RDONLY), -ELOOP);
	cr_assert_eq(src_openat(&s, "etc", O_RDONLY | O_DIRECTORY), -ENOTDIR);
	cr_assert_eq(src_openat(&s, "../etc/passwd", O_RDONLY), -EXDEV);
	cr_assert_eq(src_openat(&s, "d/../../etc/passwd", O_RDONLY), -EXDEV);
	cr_assert_eq(src_openat(&s, "/etc/passwd", O_RDONLY), -EXDEV);
	cr_assert_eq(src_openat(&s, "top/x", O_RDONLY), -ENOTDIR);
	cr_assert_eq(src_openat(&s, "d/nope/f", O_RDONLY), -ENOENT);
}

static void creates_exclusively_with_mode_0600(void)
{
	struct stat st;
	int fd = src_openat(&s, "d/e/new", O_WRONLY | O_CREAT | O_EXCL);

	cr_assert_geq(fd, 0);
	fstat(fd, &st);
	close(fd);
	cr_assert_eq(st.st_mode & 07777, 0600 & ~0);
	cr_assert_eq(src_openat(&s, "d/e/new", O_WRONLY | O_CREAT | O_EXCL),
		     -EEXIST);
	cr_assert_eq(src_openat(&s, "d/ln", O_WRONLY | O_CREAT), -ELOOP);
}

static int count(void *arg, const char *name, const struct stat *st,
		 const char *target)
{
	(void)name, (void)st, (void)target;
	++*(int *)arg;
	return 0;
}

static void scans_and_parents(void)
{
	const char *leaf;
	int n = 0, fd;

	cr_assert_eq(src_scan(&s, "", count, &n), 0);
	cr_assert_eq(n, 3); /* d top etc, no "." ".." */
	n = 0;
	cr_assert_eq(src_scan(&s, "d", count, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert_eq(src_scan(&s, "d/ln", count, &n), -ENOTDIR);
	fd = src_parent(&s, "d/e/f", &leaf);
	cr_assert_geq(fd, 0);
	cr_assert_str_eq(leaf, "f");
	cr_assert_str_eq(read_fd(openat(fd, leaf, O_RDONLY)), "deep");
	close(fd);
}

Test(source_openat2, opens_what_is_beneath, .fini = teardown)
{
	setup(false);
	opens_what_is_beneath();
}

Test(source_openat2, refuses_every_way_out, .fini = teardown)
{
	setup(false);
	refuses_ways_out();
}

Test(source_openat2, creates_exclusively_with_mode_0600, .fini = teardown)
{
	setup(false);
	creates_exclusively_with_mode_0600();
}

Test(source_openat2, scans_and_opens_parents, .fini = teardown)
{
	setup(false);
	scans_and_parents();
}

Test(source_walk, opens_what_is_beneath, .fini = teardown)
{
	setup(true);
	opens_what_is_beneath();
}

Test(source_walk, refuses_every_way_out, .fini = teardown)
{
	setup(true);
	refuses_ways_out();
}

Test(source_walk, creates_exclusively_with_mode_0600, .fini = teardown)
{
	setup(true);
	creates_exclusively_with_mode_0600();
}

Test(source_walk, scans_and_opens_parents, .fini = teardown)
{
	setup(true);
	scans_and_parents();
}

Test(source_walk, opens_paths_longer_than_path_max, .fini = teardown)
{
	char *rel = malloc(PATH_MAX * 2), *p = rel;
	int fd;

	setup(true);
	fd = src_openat(&s, "", O_RDONLY | O_DIRECTORY);
	for (int i = 0; i < 200; i++) {
		int next;

		cr_assert_eq(mkdirat(fd, "dddddddddddddddddddddddddddddd", 0755),
			     0);
		next = openat(fd, "dddddddddddddddddddddddddddddd",
			      O_RDONLY | O_DIRECTORY);
		close(fd);
		fd = next;
		p += sprintf(p, "dddddddddddddddddddddddddddddd/");
	}
	close(openat(fd, "leaf", O_WRONLY | O_CREAT, 0644));
	close(fd);
	strcpy(p, "leaf");
	cr_assert_gt(strlen(rel), PATH_MAX);
	fd = src_openat(&s, rel, O_RDONLY);
	cr_assert_geq(fd, 0, "%s", strerror(-fd));
	close(fd);
	free(rel);
}
