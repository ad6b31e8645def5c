/*
 * Unit tests of HDF5 validation in place: valid, truncated, scribbled,
 * not HDF5, userblock, and a file still open by its writer; the same
 * check in a child process under a deadline and a memory limit.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5/h5check.h"

static char path[64];

static void setup(void)
{
	int fd;

	strcpy(path, "/tmp/h5check-XXXXXX");
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	close(fd);
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void teardown(void)
{
	unlink(path);
}

TestSuite(h5check, .init = setup, .fini = teardown);

/* A file with a group and a dataset; userblock and libver as asked. */
static hid_t make_file(hsize_t userblock, bool latest, bool keep_open)
{
	hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
	hsize_t dims[1] = { 100 };
	int data[100];
	hid_t f, sp, ds, g;

	for (int i = 0; i < 100; i++)
		data[i] = i;
	if (userblock)
		H5Pset_userblock(fcpl, userblock);
	if (latest)
		H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
	f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
	cr_assert_geq(f, 0);
	g = H5Gcreate2(f, "g", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
	sp = H5Screate_simple(1, dims, NULL);
	ds = H5Dcreate2(g, "d", H5T_NATIVE_INT, sp, H5P_DEFAULT, H5P_DEFAULT,
			H5P_DEFAULT);
	H5Dwrite(ds, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
	H5Dclose(ds);
	H5Sclose(sp);
	H5Gclose(g);
	H5Pclose(fcpl);
	H5Pclose(fapl);
	if (keep_open) {
		H5Fflush(f, H5F_SCOPE_GLOBAL);
		return f;
	}
	H5Fclose(f);
	return -1;
}

/* Inspect a copy of `path`'s bytes in a memfd, as the daemon does. */
static struct h5_report inspect_copy(void (*edit)(char *, size_t *))
{
	struct h5_report r;
	struct stat st;
	int in = open(path, O_RDONLY), m = memfd_create("t", 0);
	char *buf;
	size_t size;

	cr_assert_geq(in, 0);
	fstat(in, &st);
	size = (size_t)st.st_size;
	buf = malloc(size + 1);
	cr_assert_eq(pread(in, buf, size, 0), (ssize_t)size);
	if (edit)
		edit(buf, &size);
	cr_assert_eq(write(m, buf, size), (ssize_t)size);
	cr_assert_eq(h5_inspect(m, size, &r), 0);
	free(buf);
	close(in);
	close(m);
	return r;
}

Test(h5check, a_valid_file_opens_and_every_object_is_read)
{
	struct h5_report r;

	make_file(0, false, false);
	r = inspect_copy(NULL);
	cr_assert(r.is_hdf5);
	cr_assert(r.opens, "why: %s", r.why);
	cr_assert_eq(r.base, 0);
	cr_assert_eq(r.objects, 3);
	cr_assert_eq(r.sb_version, 0);
}

static void cut_half(char *buf, size_t *size)
{
	(void)buf;
	*size /= 2;
}

Test(h5check, a_truncated_file_does_not_open)
{
	struct h5_report r;

	make_file(0, false, false);
	r = inspect_copy(cut_half);
	cr_assert(r.is_hdf5);
	cr_assert_not(r.opens);
	cr_assert_neq(r.why[0], '\0');
}

static void scribble(char *buf, size_t *size)
{
	/* everything after the superblock: object headers, B-trees, heaps */
	memset(buf + 96, 0xAB, *size - 96 - 400);
}

Test(h5check, a_scribbled_file_does_not_open)
{
	struct h5_report r;

	make_file(0, false, false);
	r = inspect_copy(scribble);
	cr_assert(r.is_hdf5);
	cr_assert_not(r.opens);
}

Test(h5check, plain_bytes_are_not_hdf5)
{
	struct h5_report r;
	FILE *f = fopen(path, "w");

	fputs("just some text, long enough to look at\n", f);
	fclose(f);
	r = inspect_copy(NULL);
	cr_assert_not(r.is_hdf5);
	cr_assert_not(r.opens);
}

Test(h5check, the_signature_is_found_after_a_userblock)
{
	struct h5_report r;

	make_file(1024, false, false);
	r = inspect_copy(NULL);
	cr_assert(r.is_hdf5);
	cr_assert_eq(r.base, 1024);
	cr_assert(r.opens, "why: %s", r.why);
}

Test(h5check, a_file_its_writer_still_has_open_is_valid_by_structure)
{
	struct h5_report r;
	hid_t f = make_file(0, true, true);

	r = inspect_copy(NULL);
	H5Fclose(f);
	cr_assert(r.is_hdf5);
	cr_assert_geq(r.sb_version, 2);
	cr_assert(r.writer_open);
	cr_assert(r.opens, "why: %s", r.why);
}

Test(h5check, lookup3_matches_the_checksum_libhdf5_wrote)
{
	unsigned char sb[48];
	int fd;
	uint32_t stored;

	make_file(0, true, false);
	fd = open(path, O_RDONLY);
	cr_assert_eq(pread(fd, sb, sizeof(sb), 0), (ssize_t)sizeof(sb));
	close(fd);
	cr_assert_eq(sb[8], 3);
	stored = (uint32_t)sb[44] | (uint32_t)sb[45] << 8 |
		 (uint32_t)sb[46] << 16 | (uint32_t)sb[47] << 24;
	cr_assert_eq(h5_lookup3(sb, 44, 0), stored);
}

/* The memfd of a copy of `path`, edited, for the isolated check. */
static int memfd_copy(void (*edit)(char *, size_t *), size_t *sizep)
{
	struct stat st;
	int in = open(path, O_RDONLY), m = memfd_create("t", 0);
	char *buf;
	size_t size;

	cr_assert_geq(in, 0);
	fstat(in, &st);
	size = (size_t)st.st_size;
	buf = malloc(size + 1);
	cr_assert_eq(pread(in, buf, size, 0), (ssize_t)size);
	if (edit)
		edit(buf, &size);
	cr_assert_eq(write(m, buf, size), (ssize_t)size);
	free(buf);
	close(in);
	*sizep = size;
	return m;
}

Test(h5check, the_isolated_check_gives_the_same_answers)
{
	struct h5_report r;
	size_t size;
	int m;

	make_file(0, false, false);
	m = memfd_copy(NULL, &size);
	cr_assert_eq(h5_inspect_isolated(m, size, NULL, &r), 0);
	close(m);
	cr_assert(r.is_hdf5);
	cr_assert(r.opens, "why: %s", r.why);
	cr_assert_not(r.unfinished);
	cr_assert_eq(r.objects, 3);
	cr_assert_eq(r.sb_version, 0);
	m = memfd_copy(scribble, &size);
	cr_assert_eq(h5_inspect_isolated(m, size, NULL, &r), 0);
	close(m);
	cr_assert(r.is_hdf5);
	cr_assert_not(r.opens);
	cr_assert_not(r.unfinished, "libhdf5 refused it: %s", r.why);
	cr_assert_neq(r.why[0], '\0');
}

Test(h5check, an_isolated_check_past_its_deadline_is_not_valid)
{
	struct h5_limits lim = { .seconds = 0, .cpu_seconds = 10,
				 .memory = 0 };
	struct h5_report r;
	size_t size;
	int m;

	make_file(0, false, false);
	m = memfd_copy(NULL, &size);
	cr_assert_eq(h5_inspect_isolated(m, size, &lim, &r), 0);
	close(m);
	cr_assert(r.is_hdf5);
	cr_assert_not(r.opens);
	cr_assert(r.unfinished);
	cr_assert(strstr(r.why, "took more than 0 s"), "why: %s", r.why);
}

Test(h5check, an_isolated_check_out_of_memory_is_not_valid)
{
	/* no room beyond the image: libhdf5 cannot allocate its caches */
	struct h5_limits lim = { .seconds = 60, .cpu_seconds = 10,
				 .memory = 1 };
	struct h5_report r;
	size_t size;
	int m;

	make_file(0, false, false);
	m = memfd_copy(NULL, &size);
	cr_assert_eq(h5_inspect_isolated(m, size, &lim, &r), 0);
	close(m);
	cr_assert(r.is_hdf5);
	cr_assert_not(r.opens, "opened within a 1-byte margin");
	cr_assert_neq(r.why[0], '\0');
}
