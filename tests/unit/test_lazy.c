/*
 * Unit tests of partial images (load=lazy) through the fs calls, over a
 * real SOURCE directory: reads see SOURCE's bytes, writes made while the
 * background loader runs are never overwritten and reach SOURCE, a
 * truncate never brings SOURCE's bytes back, holes stay holes, the
 * budget is charged at open. The loader races every step on purpose:
 * the outcomes asserted hold however far it got.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs.h"
#include "fs/internal.h"

#define MiB (1u << 20)
#define SIZE (24 * MiB + 777)

static char src[64];
static struct fs fs;
static unsigned char *model;

static void path_of(char *p, size_t len, const char *rel)
{
	snprintf(p, len, "%s/%s", src, rel);
}

/* SOURCE's file "f": SIZE bytes of a pattern, a hole at [8, 12) MiB. */
static void make_source(void)
{
	char p[128];
	int fd;

	model = malloc(SIZE);
	cr_assert_not_null(model);
	for (size_t i = 0; i < SIZE; i++)
		model[i] = (unsigned char)(i * 7 + i / 4093);
	memset(model + 8 * MiB, 0, 4 * MiB);
	path_of(p, sizeof(p), "f");
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, model, 8 * MiB, 0), 8 * MiB);
	cr_assert_eq(pwrite(fd, model + 12 * MiB, SIZE - 12 * MiB, 12 * MiB),
		     SIZE - 12 * MiB);
	close(fd);
}

static void setup(void)
{
	struct fs_opts o = { .increment = 65536, .page_size = 65536,
			     .max_memory = 1u << 30, .source_timeout = 5,
			     .validate = VALIDATE_OFF, .lazy = true };

	strcpy(src, "/tmp/h5memfs-lazy-XXXXXX");
	cr_assert_not_null(mkdtemp(src));
	make_source();
	cr_assert_eq(fs_init(&fs, src, &o), 0);
}

static void teardown(void)
{
	char cmd[128];

	fs_destroy(&fs);
	free(model);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", src);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(lazy, .init = setup, .fini = teardown);

static struct node *open_f(int flags)
{
	struct node *n = NULL;
	struct stat st;

	cr_assert_eq(fs_lookup(&fs, fs.ns.root, "f", &n, &st), 0);
	cr_assert_eq(fs_open(&fs, n, flags, NULL), 0);
	return n;
}

/* Read as a FUSE READ does: fs_read_ready, then the data fd. */
static void read_at(struct node *n, unsigned char *buf, size_t len,
		    uint64_t off)
{
	int fd = fs_data_fd(&fs, n);

	cr_assert_geq(fd, 0);
	cr_assert_eq(fs_read_ready(&fs, n, off, len), 0);
	cr_assert_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
}

struct bytes {
	const unsigned char *p;
	size_t len;
};

static ssize_t copy_bytes(void *arg, int fd, uint64_t off)
{
	struct bytes *b = arg;
	ssize_t r = pwrite(fd, b->p, b->len, (off_t)off);

	return r < 0 ? -errno : r;
}

static void write_at(struct node *n, unsigned char c, size_t len,
		     uint64_t off)
{
	unsigned char *p = malloc(len);
	struct bytes b = { p, len };
	size_t done;

	memset(p, c, len);
	cr_assert_eq(fs_write(&fs, n, off, len, copy_bytes, &b, &done), 0);
	cr_assert_eq(done, len);
	memcpy(model + off, p, len);
	free(p);
}

static void assert_source_is_model(size_t size)
{
	unsigned char *got = malloc(size + 1);
	char p[128];
	int fd;

	path_of(p, sizeof(p), "f");
	fd = open(p, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, got, size + 1, 0), (ssize_t)size);
	close(fd);
	cr_assert_eq(memcmp(got, model, size), 0);
	free(got);
}

Test(lazy, an_open_is_partial_and_charged_what_the_file_will_hold)
{
	struct node *n = open_f(O_RDONLY);

	cr_assert(n->flags & N_LOADED);
	cr_assert_eq(fs.stats.lazy_loads, 1);
	/* the file's data (holes excluded), whatever the loader got yet */
	cr_assert_geq(fs.ns.mem_used, SIZE - 4 * MiB - 4096);
	fs_close(&fs, n);
}

Test(lazy, reads_see_sources_bytes_anywhere)
{
	struct node *n = open_f(O_RDONLY);
	static const uint64_t at[] = { 20 * MiB + 3, 5, 9 * MiB, SIZE - 100,
				       12 * MiB - 10, 256 * 1024 - 1 };
	unsigned char buf[5000];

	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		size_t len = SIZE - at[i] < sizeof(buf) ? SIZE - at[i]
							: sizeof(buf);

		read_at(n, buf, len, at[i]);
		cr_assert_eq(memcmp(buf, model + at[i], len), 0, "at %llu",
			     (unsigned long long)at[i]);
	}
	fs_close(&fs, n);
}

Test(lazy, writes_survive_the_load_and_reach_source)
{
	struct node *n = open_f(O_RDWR);

	write_at(n, 'a', 10, 3);			/* in part */
	write_at(n, 'b', 3 * MiB, 5 * MiB - 1000);	/* part and whole */
	write_at(n, 'c', MiB, 16 * MiB);		/* aligned, whole */
	write_at(n, 'd', 100, 10 * MiB);		/* into the hole */
	write_at(n, 'e', 7, SIZE - 7);			/* the last bytes */
	cr_assert_eq(fs_fsync(&fs, n), 0);
	cr_assert_null(n->file->lazy); /* write-back completed it */
	assert_source_is_model(SIZE);
	fs_close(&fs, n);
}

Test(lazy, a_cut_then_an_extension_reads_zeros)
{
	struct node *n = open_f(O_RDWR);
	struct stat attr = { .st_size = 3 * MiB + 5 }, st;
	unsigned char buf[4096];

	cr_assert_eq(fs_setattr(&fs, n, &attr, FS_SET_SIZE, &st), 0);
	attr.st_size = SIZE;
	cr_assert_eq(fs_setattr(&fs, n, &attr, FS_SET_SIZE, &st), 0);
	memset(model + 3 * MiB + 5, 0, SIZE - 3 * MiB - 5);
	read_at(n, buf, sizeof(buf), 20 * MiB);
	cr_assert_eq(memcmp(buf, model + 20 * MiB, sizeof(buf)), 0);
	read_at(n, buf, sizeof(buf), 3 * MiB);
	cr_assert_eq(memcmp(buf, model + 3 * MiB, sizeof(buf)), 0);
	cr_assert_eq(fs_fsync(&fs, n), 0);
	assert_source_is_model(SIZE);
	fs_close(&fs, n);
}

Test(lazy, an_evicted_partial_image_loads_again)
{
	struct node *n = open_f(O_RDONLY);
	unsigned char buf[4096];

	fs_close(&fs, n);
	cr_assert_eq(fs_evict(&fs, n), 0);
	cr_assert_not(n->flags & N_LOADED);
	cr_assert_null(n->file->lazy);
	n = open_f(O_RDONLY);
	read_at(n, buf, sizeof(buf), 22 * MiB);
	cr_assert_eq(memcmp(buf, model + 22 * MiB, sizeof(buf)), 0);
	fs_close(&fs, n);
}

Test(lazy, small_files_and_load_whole_load_at_open)
{
	struct node *n = NULL;
	struct stat st;
	char p[128];
	FILE *f;

	path_of(p, sizeof(p), "small");
	f = fopen(p, "w");
	cr_assert_not_null(f);
	fputs("tiny", f);
	fclose(f);
	cr_assert_eq(fs_lookup(&fs, fs.ns.root, "small", &n, &st), 0);
	cr_assert_eq(fs_open(&fs, n, O_RDONLY, NULL), 0);
	cr_assert_null(n->file->lazy);
	fs_close(&fs, n);
	cr_assert_eq(fs_lookup(&fs, fs.ns.root, "f", &n, &st), 0);
	cr_assert_eq(fs_open_how(&fs, n, O_RDONLY, NULL, true), 0);
	cr_assert_null(n->file->lazy);
	cr_assert_eq(fs.stats.lazy_loads, 0);
	fs_close(&fs, n);
}
