/*
 * image.c - memfd-backed images with dirty-page tracking.
 */
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "ts.h"

static int store_dir = -1;

void img_store_use(int dirfd)
{
	store_dir = dirfd;
}

int img_store_private_tmpfs(uint64_t size)
{
	char val[32];
	int fs, mnt;

	fs = (int)syscall(SYS_fsopen, "tmpfs", 1 /* FSOPEN_CLOEXEC */);
	if (fs < 0)
		return -errno;
	snprintf(val, sizeof(val), "%llu", (unsigned long long)size);
	if (syscall(SYS_fsconfig, fs, 1 /* SET_STRING */, "size", val, 0) < 0)
		goto fail;
	/*
	 * No huge pages: one written byte would cost 2 MiB and holes would
	 * fill in; tmpfs, the bar, uses small pages by default too.
	 */
	syscall(SYS_fsconfig, fs, 1, "mode", "0700", 0);
	if (syscall(SYS_fsconfig, fs, 6 /* CMD_CREATE */, NULL, NULL, 0) < 0)
		goto fail;
	/*
	 * strictatime: a passthrough read moves the image's atime, which
	 * is how the daemon learns of it (img_changed_behind).
	 */
	mnt = (int)syscall(SYS_fsmount, fs, 1 /* FSMOUNT_CLOEXEC */,
			   0x20 /* MOUNT_ATTR_STRICTATIME */);
	if (mnt < 0)
		goto fail;
	close(fs);
	return mnt;
fail:
	mnt = -errno;
	close(fs);
	return mnt;
}

int img_store_resize(uint64_t size)
{
	char val[32];
	int fs, err = 0;

	if (store_dir < 0)
		return 0;
	fs = (int)syscall(SYS_fspick, store_dir, "",
			  1 /* FSPICK_CLOEXEC */ | 8 /* FSPICK_EMPTY_PATH */);
	if (fs < 0)
		return -errno;
	snprintf(val, sizeof(val), "%llu", (unsigned long long)size);
	if (syscall(SYS_fsconfig, fs, 1 /* SET_STRING */, "size", val, 0) < 0 ||
	    syscall(SYS_fsconfig, fs, 7 /* CMD_RECONFIGURE */, NULL, NULL,
		    0) < 0)
		err = -errno;
	close(fs);
	return err;
}

void img_init(struct img *im, uint64_t page_size)
{
	memset(im, 0, sizeof(*im));
	im->fd = -1;
	im->page_shift = 12;
	while ((UINT64_C(1) << im->page_shift) < page_size)
		im->page_shift++;
}

void img_destroy(struct img *im)
{
	if (im->fd >= 0)
		close(im->fd);
	free(im->dirty);
	free(im->sums);
	im->sums = NULL;
	im->nsums = 0;
	im->fd = -1;
	im->dirty = NULL;
	im->dirty_words = 0;
	im->capacity = 0;
}

/*
 * Set the image's atime to 0, so that any read, even within the coarse
 * clock's tick, moves it.
 */
static void atime_reset(struct img *im)
{
	const struct timespec t[2] = { { 0, 0 }, { 0, UTIME_OMIT } };

	if (futimens(im->fd, t) == 0)
		im->seen_atime = t[0];
}

int img_open(struct img *im)
{
	if (im->fd >= 0)
		return 0;
	if (store_dir >= 0)
		im->fd = openat(store_dir, ".", O_TMPFILE | O_RDWR | O_CLOEXEC,
				0600);
	else
		im->fd = memfd_create("h5memfs-image", MFD_CLOEXEC);
	if (im->fd < 0)
		return -errno;
	/* our own reads (write-back, READ) are no access by a program */
	fcntl(im->fd, F_SETFL, fcntl(im->fd, F_GETFL) | O_NOATIME);
	atime_reset(im);
	return 0;
}

int img_size(const struct img *im, uint64_t *size)
{
	struct stat st;

	if (im->fd < 0) {
		*size = 0;
		return 0;
	}
	if (fstat(im->fd, &st) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

uint64_t img_mem_bytes(const struct img *im)
{
	struct stat st;

	if (im->fd < 0 || fstat(im->fd, &st) < 0)
		return 0;
	return (uint64_t)st.st_blocks * 512;
}

/*
 * Which pages of [pos, end) hold memory, asked of the kernel with
 * mincore(2) on a mapping that is never touched. SEEK_HOLE would do, but
 * on tmpfs it walks to the next hole, which in a file written whole is
 * its end: a random 4K write into 1 GiB cost a millisecond there.
 */
uint64_t img_new_bytes(const struct img *im, uint64_t off, uint64_t len)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), pos, end;
	uint64_t holes = 0;
	unsigned char vec[256];

	if (!len)
		return 0;
	pos = off - off % page;
	end = off + len > UINT64_MAX - page ? UINT64_MAX - page + 1
					    : off + len;
	end += (page - end % page) % page;
	if (im->fd < 0)
		return end - pos;
	while (pos < end) {
		uint64_t span = end - pos, i;
		void *map;

		if (span > sizeof(vec) * page)
			span = sizeof(vec) * page;
		if (pos > (uint64_t)INT64_MAX - span)
			return holes + end - pos; /* cannot say: all of it */
		map = mmap(NULL, span, PROT_NONE, MAP_SHARED, im->fd,
			   (off_t)pos);
		if (map == MAP_FAILED)
			return holes + end - pos;
		if (mincore(map, span, vec) < 0) {
			munmap(map, span);
			return holes + end - pos;
		}
		munmap(map, span);
		for (i = 0; i < span / page; i++)
			if (!(vec[i] & 1)) /* a hole, or past the end */
				holes += page;
		pos += span;
	}
	return holes;
}

void img_reserve(struct img *im, uint64_t end, uint64_t increment)
{
	uint64_t cap;

	if (end <= im->capacity)
		return;
	cap = im->capacity + im->capacity / 2;
	if (cap < end)
		cap = end;
	if (increment > 1 && cap % increment)
		cap += increment - cap % increment;
	im->capacity = cap;
	im->grows++;
}

int img_read(const struct img *im, void *buf, size_t len, uint64_t off,
	     size_t *done)
{
	size_t got = 0;

	while (im->fd >= 0 && got < len) {
		ssize_t n = pread(im->fd, (char *)buf + got, len - got,
				  (off_t)(off + got));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*done = got;
	return 0;
}

static int dirty_grow(struct img *im, uint64_t last_page)
{
	size_t need = (size_t)(last_page / 64) + 1, words;
	uint64_t *bits;

	if (need <= im->dirty_words)
		return 0;
	words = im->dirty_words ? im->dirty_words : 4;
	while (words < need)
		words *= 2;
	bits = realloc(im->dirty, words * sizeof(*bits));
	if (!bits)
		return -ENOMEM;
	memset(bits + im->dirty_words, 0,
	       (words - im->dirty_words) * sizeof(*bits));
	im->dirty = bits;
	im->dirty_words = words;
	return 0;
}

/* Pages a bitmap may cover without need (16 MiB of bitmap). */
#define DIRTY_SPARE_PAGES (UINT64_C(1) << 27)

int img_mark_dirty(struct img *im, uint64_t off, uint64_t len)
{
	uint64_t first, last, p, below;
	int err;

	if (len == 0)
		return 0;
	first = off >> im->page_shift;
	last = (off + len - 1) >> im->page_shift;
	if (last >= DIRTY_SPARE_PAGES) {
		/*
		 * Far out (a sparse write at 100 GiB, 8 EiB): pages from
		 * clean_size on are written back whole, marked or not, so
		 * mark only those below it rather than grow a bitmap
		 * for the whole offset.
		 */
		below = (im->clean_size >> im->page_shift) +
			((im->clean_size & ((UINT64_C(1) << im->page_shift) - 1))
				 != 0);
		if (last >= below) {
			if (!below || first >= below)
				return 0;
			last = below - 1;
		}
	}
	err = dirty_grow(im, last);
	if (err)
		return err;
	for (p = first; p <= last; p++)
		im->dirty[p / 64] |= UINT64_C(1) << (p % 64);
	return 0;
}

bool img_page_dirty(const struct img *im, uint64_t page)
{
	if (page / 64 >= im->dirty_words)
		return false;
	return im->dirty[page / 64] >> (page % 64) & 1;
}

uint64_t img_dirty_pages(const struct img *im)
{
	uint64_t n = 0;

	for (size_t i = 0; i < im->dirty_words; i++)
		n += (uint64_t)__builtin_popcountll(im->dirty[i]);
	return n;
}

void img_clear_dirty(struct img *im)
{
	if (im->dirty)
		memset(im->dirty, 0, im->dirty_words * sizeof(*im->dirty));
	img_size(im, &im->clean_size);
}

void img_written(struct img *im, uint64_t size)
{
	img_clear_dirty(im);
	if (im->clean_size > size)
		im->clean_size = size;
}

void img_wb_begin(struct img *im, uint64_t size, struct img *snap)
{
	*snap = *im;
	snap->sums = NULL; /* still the image's */
	snap->nsums = 0;
	im->dirty = NULL;
	im->dirty_words = 0;
	/* a truncate during the copy lowers it again (img_truncate) */
	im->clean_size = size;
}

void img_wb_end(struct img *im, struct img *snap, bool written)
{
	if (!written) {
		if (snap->clean_size < im->clean_size)
			im->clean_size = snap->clean_size;
		if (snap->dirty_words &&
		    dirty_grow(im, snap->dirty_words * 64 - 1) < 0)
			im->clean_size = 0; /* no bitmap: all of it is new */
		for (size_t i = 0; im->clean_size && i < snap->dirty_words;
		     i++)
			im->dirty[i] |= snap->dirty[i];
	}
	free(snap->dirty);
	snap->dirty = NULL;
	snap->dirty_words = 0;
}

int img_write(struct img *im, const void *buf, size_t len, uint64_t off,
	      uint64_t increment)
{
	size_t put = 0;
	int err;

	if (len == 0)
		return 0;
	if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
		return -EFBIG;
	err = img_open(im);
	if (err)
		return err;
	err = img_mark_dirty(im, off, len);
	if (err)
		return err;
	while (put < len) {
		ssize_t n = pwrite(im->fd, (const char *)buf + put, len - put,
				   (off_t)(off + put));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		put += (size_t)n;
	}
	img_reserve(im, off + len, increment);
	return 0;
}

int img_truncate(struct img *im, uint64_t size)
{
	uint64_t old;
	int err;

	if (size > (uint64_t)INT64_MAX)
		return -EFBIG;
	err = img_size(im, &old);
	if (err || size == old)
		return err;
	err = img_open(im);
	if (err)
		return err;
	/*
	 * No page is marked: a cut or an extension changes no byte that
	 * stays (the extension is a hole). The owner records that the size
	 * changed. Capacity is not reserved either: holes cost no memory.
	 */
	if (ftruncate(im->fd, (off_t)size) < 0)
		return -errno;
	if (size < im->clean_size)
		im->clean_size = size;
	return 0;
}

bool img_changed_behind(struct img *im, struct timespec *mtime,
			struct timespec *atime)
{
	struct stat st;

	atime->tv_nsec = UTIME_OMIT;
	if (im->fd < 0 || fstat(im->fd, &st) < 0)
		return false;
	if (!ts_equal(st.st_atim, im->seen_atime)) {
		im->seen_atime = st.st_atim;
		*atime = st.st_atim;
		atime_reset(im);
	}
	if (ts_equal(st.st_mtim, im->seen_mtime))
		return false;
	im->seen_mtime = st.st_mtim;
	*mtime = st.st_mtim;
	return true;
}

void img_seen_now(struct img *im)
{
	struct stat st;

	if (im->fd >= 0 && fstat(im->fd, &st) == 0)
		im->seen_mtime = st.st_mtim;
}

/* Bytes read at a time while checksumming: whole pages, about 1 MiB. */
#define SUM_CHUNK (UINT64_C(1) << 20)

/* Checksum [cstart, cend) of buf (whole pages but the file's last). */
static void sum_chunk(const unsigned char *buf, uint64_t cstart,
		      uint64_t cend, uint64_t ps, uint64_t *sums, size_t n)
{
	for (uint64_t off = cstart; off < cend; off += ps) {
		uint64_t len = cend - off < ps ? cend - off : ps;

		if (off / ps < n)
			sums[off / ps] = XXH3_64bits(buf + (off - cstart), len);
	}
}

/*
 * Read len bytes at off into buf. A short count (the file shrank
 * meanwhile) leaves the rest as it was: zeros.
 */
static int read_span(int fd, unsigned char *buf, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t got = pread(fd, buf, len, (off_t)off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -errno;
		if (got == 0)
			return 0;
		buf += got;
		off += (uint64_t)got;
		len -= (uint64_t)got;
	}
	return 0;
}

/*
 * Checksum every page of [0, size) into sums (n entries): the xxh3 of
 * the page's bytes, holes read as zeros. Only the data extents are read
 * (SEEK_DATA/SEEK_HOLE), with pread into a buffer that starts as zeros:
 * a hole is never touched, so checking a sparse file allocates nothing
 * in the image's tmpfs, and a full private tmpfs cannot turn a check
 * into SIGBUS (reading a tmpfs hole through a mapping allocates a page
 * for it). A page all hole gets the checksum of zeros, computed once.
 */
static int page_sums(const struct img *im, uint64_t size, uint64_t *sums,
		     size_t n)
{
	uint64_t ps = UINT64_C(1) << im->page_shift;
	uint64_t chunk = ps > SUM_CHUNK ? ps : SUM_CHUNK;
	uint64_t pos = 0, cstart = 0, cend = 0, zero;
	unsigned char *buf;
	int err = 0;

	if (size == 0)
		return 0;
	buf = calloc(1, chunk);
	if (!buf)
		return -ENOMEM;
	zero = XXH3_64bits(buf, ps);
	for (size_t i = 0; i < n; i++)
		sums[i] = zero;
	if (size % ps)
		sums[n - 1] = XXH3_64bits(buf, size % ps);
	while (pos < size && !err) {
		off_t data = lseek(im->fd, (off_t)pos, SEEK_DATA), hole;

		if (data < 0) {
			if (errno != ENXIO) /* ENXIO: only a hole is left */
				err = -errno;
			break;
		}
		if ((uint64_t)data >= size)
			break;
		hole = lseek(im->fd, data, SEEK_HOLE);
		if (hole < 0) {
			err = -errno;
			break;
		}
		if ((uint64_t)hole > size)
			hole = (off_t)size;
		/* the extent [data, hole), a chunk of whole pages at a time */
		for (uint64_t at = (uint64_t)data; at < (uint64_t)hole && !err;) {
			uint64_t end;

			if (at >= cend) {
				sum_chunk(buf, cstart, cend, ps, sums, n);
				cstart = at - at % ps;
				cend = size - cstart < chunk ? size
							     : cstart + chunk;
				memset(buf, 0, cend - cstart);
			}
			end = (uint64_t)hole < cend ? (uint64_t)hole : cend;
			err = read_span(im->fd, buf + (at - cstart), end - at, at);
			at = end;
		}
		pos = (uint64_t)hole;
	}
	if (!err)
		sum_chunk(buf, cstart, cend, ps, sums, n);
	free(buf);
	return err;
}

uint64_t *img_sums_now(struct img *im, size_t *count)
{
	uint64_t size, ps = UINT64_C(1) << im->page_shift;
	uint64_t *sums;
	size_t n;

	*count = 0;
	if (img_size(im, &size))
		return NULL;
	n = (size_t)((size + ps - 1) / ps);
	if (n > (size_t)1 << 22)
		return NULL; /* over 4M pages: whole-file write-back */
	sums = malloc((n ? n : 1) * sizeof(*sums));
	if (!sums)
		return NULL;
	if (im->fd >= 0 && page_sums(im, size, sums, n)) {
		free(sums);
		return NULL;
	}
	*count = n;
	return sums;
}

void img_sums_set(struct img *im, uint64_t *sums, size_t count)
{
	free(im->sums);
	im->sums = sums;
	im->nsums = sums ? count : 0;
}

void img_sums_take(struct img *im)
{
	size_t n;
	uint64_t *sums = img_sums_now(im, &n);

	img_sums_set(im, sums, n); /* none rather than stale ones */
}

int img_sums_mark(struct img *im, uint64_t **next, size_t *nnext)
{
	uint64_t size, ps = UINT64_C(1) << im->page_shift, limit;
	uint64_t *now = NULL;
	size_t count = 0, n;
	int err = 0;

	if (next) {
		*next = NULL;
		*nnext = 0;
	}
	if (!im->sums && !next)
		return 0;
	err = img_size(im, &size);
	if (err)
		return err;
	now = img_sums_now(im, &count);
	if (im->sums) {
		limit = size < im->clean_size ? size : im->clean_size;
		if (!now) /* cannot compare: all of it may have changed */
			err = img_mark_dirty(im, 0, limit);
		/*
		 * Pages below clean_size. The last one may be partial: when
		 * the file grew since, its sum covers more bytes now and it
		 * is marked too (rewritten with the same bytes below
		 * clean_size).
		 */
		n = (size_t)((limit + ps - 1) / ps);
		if (n > im->nsums)
			n = im->nsums;
		for (size_t i = 0; now && !err && i < n && i < count; i++)
			if (now[i] != im->sums[i])
				err = img_mark_dirty(im, (uint64_t)i * ps, 1);
	}
	if (next && !err) {
		*next = now;
		*nnext = count;
		now = NULL;
	}
	free(now);
	return err;
}
