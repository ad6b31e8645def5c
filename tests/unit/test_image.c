/*
 * Unit tests of the image store: growth, holes, truncate, dirty pages.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/image.h"

static struct img im;

static void setup(void)
{
	img_init(&im, 64 << 10);
}

static void teardown(void)
{
	img_destroy(&im);
}

TestSuite(image, .init = setup, .fini = teardown);

Test(image, an_empty_image_has_size_zero_and_no_memfd)
{
	uint64_t size = 1;

	cr_assert_eq(img_size(&im, &size), 0);
	cr_assert_eq(size, 0);
	cr_assert_eq(im.fd, -1);
}

Test(image, written_bytes_read_back_and_mark_their_pages_dirty)
{
	char buf[10];
	size_t done;

	cr_assert_eq(img_write(&im, "hello", 5, 70000, 1), 0);
	cr_assert_eq(img_read(&im, buf, sizeof(buf), 70000, &done), 0);
	cr_assert_eq(done, 5);
	cr_assert_eq(memcmp(buf, "hello", 5), 0);
	cr_assert(img_page_dirty(&im, 1));
	cr_assert_not(img_page_dirty(&im, 0));
	cr_assert_eq(img_dirty_pages(&im), 1);
	img_clear_dirty(&im);
	cr_assert_eq(img_dirty_pages(&im), 0);
}

Test(image, a_write_across_a_page_boundary_dirties_both_pages)
{
	cr_assert_eq(img_write(&im, "ab", 2, (64 << 10) - 1, 1), 0);
	cr_assert(img_page_dirty(&im, 0));
	cr_assert(img_page_dirty(&im, 1));
	cr_assert_eq(img_dirty_pages(&im), 2);
}

Test(image, a_hole_reads_as_zeros_and_costs_no_memory)
{
	char buf[4096];
	size_t done;

	cr_assert_eq(img_write(&im, "x", 1, UINT64_C(1) << 32, 1), 0);
	cr_assert_eq(img_read(&im, buf, sizeof(buf), 4096, &done), 0);
	cr_assert_eq(done, sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], 0);
	cr_assert_lt(img_mem_bytes(&im), 1 << 20);
}

Test(image, a_one_tib_truncate_allocates_nothing)
{
	uint64_t size;

	cr_assert_eq(img_truncate(&im, UINT64_C(1) << 40), 0);
	cr_assert_eq(img_size(&im, &size), 0);
	cr_assert_eq(size, UINT64_C(1) << 40);
	cr_assert_lt(img_mem_bytes(&im), 1 << 20);
	cr_assert_eq(img_dirty_pages(&im), 0);
	cr_assert_eq(im.capacity, 0);
}

Test(image, truncate_down_cuts_the_content)
{
	char buf[8];
	size_t done;

	cr_assert_eq(img_write(&im, "abcdefgh", 8, 0, 1), 0);
	cr_assert_eq(img_truncate(&im, 3), 0);
	cr_assert_eq(img_read(&im, buf, sizeof(buf), 0, &done), 0);
	cr_assert_eq(done, 3);
	cr_assert_eq(img_truncate(&im, 6), 0);
	cr_assert_eq(img_read(&im, buf, sizeof(buf), 0, &done), 0);
	cr_assert_eq(done, 6);
	cr_assert_eq(memcmp(buf, "abc\0\0\0", 6), 0);
}

Test(image, growth_by_one_byte_steps_is_amortised)
{
	/* 100,000 appends with a 1-byte increment: capacity grows
	 * geometrically, so only a few dozen growths happen. */
	for (uint64_t i = 0; i < 100000; i++)
		cr_assert_eq(img_write(&im, "z", 1, i, 1), 0);
	cr_assert_lt(im.grows, 40);
	cr_assert_geq(im.capacity, 100000);
}

Test(image, capacity_is_a_multiple_of_the_increment)
{
	cr_assert_eq(img_write(&im, "z", 1, 0, 1 << 20), 0);
	cr_assert_eq(im.capacity, 1 << 20);
	img_reserve(&im, (1 << 20) + 1, 1 << 20);
	cr_assert_eq(im.capacity % (1 << 20), 0);
}

Test(image, a_write_past_the_largest_offset_is_efbig)
{
	cr_assert_eq(img_write(&im, "z", 1, UINT64_C(1) << 63, 1), -EFBIG);
	cr_assert_eq(img_truncate(&im, UINT64_C(1) << 63), -EFBIG);
}

/* What a write can add to memory: only the pages that hold none yet. */
Test(image, new_bytes_counts_the_pages_a_write_would_fill)
{
	const uint64_t page = 4096, mib = 1 << 20;

	cr_assert_eq(img_write(&im, "a", 1, 0, 1), 0);
	cr_assert_eq(img_write(&im, "b", 1, mib, 1), 0); /* a hole between */
	cr_assert_eq(img_new_bytes(&im, 0, 100), 0);
	cr_assert_eq(img_new_bytes(&im, mib + 10, 100), 0);
	cr_assert_eq(img_new_bytes(&im, 2 * page, page), page);
	/* across data, hole and data: the hole's pages only */
	cr_assert_eq(img_new_bytes(&im, 0, mib + 1), mib - page);
	/* past the end: every page touched, a part page counting whole */
	cr_assert_eq(img_new_bytes(&im, 8 * mib + 1, 10), page);
	cr_assert_eq(img_new_bytes(&im, 8 * mib, 3 * mib), 3 * mib);
}

/* The answer does not depend on how far the file goes on. */
Test(image, new_bytes_of_a_small_write_into_a_large_full_file)
{
	static char buf[1 << 20];

	memset(buf, 'x', sizeof(buf));
	for (uint64_t off = 0; off < (64u << 20); off += sizeof(buf))
		cr_assert_eq(img_write(&im, buf, sizeof(buf), off, 1), 0);
	for (int i = 0; i < 10000; i++)
		cr_assert_eq(img_new_bytes(&im, (uint64_t)i * 4096, 4096), 0);
	cr_assert_eq(img_new_bytes(&im, 64u << 20, 4096), 4096);
}

/*
 * Page checksums of a sparse image: pages with data hash their bytes,
 * holes inside them as zeros; a page all hole hashes as zeros. Reading
 * them allocates nothing (holes are never touched).
 */
Test(image, checksums_read_data_only_and_count_holes_as_zeros)
{
	static unsigned char page[64 << 10];
	uint64_t *sums;
	size_t n;
	struct stat before, after;

	/* 4 KiB of data every 64 KiB page, in page 0 two extents apart */
	for (unsigned i = 0; i < 8; i++)
		cr_assert_eq(img_write(&im, "xyzw", 4, (uint64_t)i << 16, 1), 0);
	cr_assert_eq(img_write(&im, "late", 4, 40000, 1), 0);
	cr_assert_eq(img_truncate(&im, (9 << 16) + 100), 0); /* hole tail */
	cr_assert_eq(fstat(im.fd, &before), 0);
	sums = img_sums_now(&im, &n);
	cr_assert_not_null(sums);
	cr_assert_eq(n, 10);
	cr_assert_eq(fstat(im.fd, &after), 0);
	cr_assert_eq(after.st_blocks, before.st_blocks,
		     "checksums allocated %lld blocks",
		     (long long)(after.st_blocks - before.st_blocks));
	memset(page, 0, sizeof(page));
	memcpy(page, "xyzw", 4);
	memcpy(page + 40000, "late", 4);
	cr_assert_eq(sums[0], XXH3_64bits(page, sizeof(page)));
	memset(page + 40000, 0, 4);
	for (unsigned i = 1; i < 8; i++)
		cr_assert_eq(sums[i], XXH3_64bits(page, sizeof(page)), "%u", i);
	memset(page, 0, 4);
	cr_assert_eq(sums[8], XXH3_64bits(page, sizeof(page)));
	cr_assert_eq(sums[9], XXH3_64bits(page, 100));
	free(sums);
}

/* A store after the checksums were taken is found, in a hole too. */
Test(image, checksums_find_a_store_into_a_page_and_into_a_hole)
{
	cr_assert_eq(img_write(&im, "abcd", 4, 0, 1), 0);
	cr_assert_eq(img_truncate(&im, 4 << 16), 0);
	img_clear_dirty(&im);
	img_sums_take(&im);
	cr_assert_not_null(im.sums);
	cr_assert_eq(pwrite(im.fd, "Z", 1, 2), 1);
	cr_assert_eq(pwrite(im.fd, "Q", 1, (2 << 16) + 7), 1);
	cr_assert_eq(img_sums_mark(&im, NULL, NULL), 0);
	cr_assert(img_page_dirty(&im, 0));
	cr_assert_not(img_page_dirty(&im, 1));
	cr_assert(img_page_dirty(&im, 2));
	cr_assert_not(img_page_dirty(&im, 3));
}

/*
 * A write-back copies without holding writers back: the marks it took
 * are its own, writes during the copy are marked anew and survive its
 * success; on failure the taken marks and the older clean_size return.
 */
Test(image, a_write_during_a_write_back_stays_dirty_after_it)
{
	const uint64_t ps = 64 << 10;
	struct img snap;
	char b = 'x';

	cr_assert_eq(img_write(&im, &b, 1, 0, 1), 0);
	img_clear_dirty(&im);	/* SOURCE holds 1 byte */
	cr_assert_eq(img_write(&im, &b, 1, 3 * ps, 1), 0);
	img_wb_begin(&im, 3 * ps + 1, &snap);
	cr_assert(img_page_dirty(&snap, 3));
	cr_assert_eq(snap.clean_size, 1);
	cr_assert_eq(img_dirty_pages(&im), 0);
	cr_assert_eq(img_write(&im, &b, 1, 5 * ps, 1), 0); /* meanwhile */
	img_wb_end(&im, &snap, true);
	cr_assert(!img_page_dirty(&im, 3));
	cr_assert(img_page_dirty(&im, 5));
	cr_assert_eq(im.clean_size, 3 * ps + 1);
	cr_assert_null(snap.dirty);
}

Test(image, a_failed_write_back_gives_its_marks_back)
{
	const uint64_t ps = 64 << 10;
	struct img snap;
	char b = 'x';

	cr_assert_eq(img_write(&im, &b, 1, ps, 1), 0);
	img_clear_dirty(&im);
	cr_assert_eq(img_write(&im, &b, 1, 0, 1), 0);
	img_wb_begin(&im, ps + 1, &snap);
	cr_assert_eq(img_write(&im, &b, 1, 2 * ps, 1), 0);
	img_wb_end(&im, &snap, false);
	cr_assert(img_page_dirty(&im, 0));
	cr_assert(img_page_dirty(&im, 2));
	cr_assert_eq(im.clean_size, ps + 1);
}

Test(image, a_truncate_during_a_write_back_lowers_what_counts_as_clean)
{
	const uint64_t ps = 64 << 10;
	struct img snap;
	char b = 'x';

	cr_assert_eq(img_write(&im, &b, 1, 4 * ps, 1), 0);
	img_wb_begin(&im, 4 * ps + 1, &snap);
	cr_assert_eq(img_truncate(&im, ps), 0);
	cr_assert_eq(img_truncate(&im, 4 * ps + 1), 0); /* a hole now */
	img_wb_end(&im, &snap, true);
	/* the hole differs from what the copy may have taken: not clean */
	cr_assert_eq(im.clean_size, ps);
}
