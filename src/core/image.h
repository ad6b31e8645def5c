/*
 * image.h - one file's bytes held in memory: the core-driver image.
 *
 * An image lives in a memfd, a memory-backed file the kernel can also be
 * handed (FUSE passthrough), so the daemon and the kernel share one copy.
 * Holes stay holes: a 1 TiB truncate costs no memory. The image also keeps
 * which pages were written since the last write-back (the core driver's
 * write tracking) and its reserved capacity, which grows in steps of the
 * mount's increment, geometrically, so growth is amortised O(1) however
 * small the step.
 *
 * Not thread-safe by itself: callers serialise changes to one image.
 * Not aware of SOURCE, FUSE or HDF5.
 */
#ifndef H5M_IMAGE_H
#define H5M_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct img {
	int fd;			/* memfd, or -1 while the image is empty */
	uint64_t capacity;	/* bytes reserved; >= size once written */
	unsigned grows;		/* times capacity grew (amortisation check) */
	unsigned page_shift;	/* log2 of the dirty-tracking page */
	uint64_t *dirty;	/* bitmap of dirty pages, grown on demand */
	size_t dirty_words;	/* words in the bitmap */
	uint64_t clean_size;	/* smallest size since the last clean state:
				   bytes past it differ from SOURCE even
				   where no page is marked */
	/*
	 * When the kernel writes the image itself (passthrough), the image
	 * sees no write: a change shows as a new mtime of the memfd, and
	 * which pages changed is found by comparing per-page checksums
	 * (xxh3) with those taken when the image was last clean.
	 */
	struct timespec seen_mtime;
	struct timespec seen_atime;	/* the image's atime when last seen */
	uint64_t *sums;
	size_t nsums;
	uint64_t accounted;	/* memory counted against the budget */
	uint64_t floor;		/* counted at least this much: a partial
				   image is charged what it will hold */
};

/*
 * Where images live: memfds (the default), or O_TMPFILE files in the
 * directory `dirfd` (a private tmpfs sized to the budget, so that the
 * kernel itself refuses growth past it, even for writes it makes on its
 * own in passthrough mode). Set once, before any image is opened.
 */
void img_store_use(int dirfd);

/*
 * Make a private tmpfs instance, mounted nowhere, of `size` bytes.
 * Returns its root fd, or -errno (EPERM without CAP_SYS_ADMIN).
 */
int img_store_private_tmpfs(uint64_t size);

/*
 * Set the size of the private tmpfs (img_store_use) to `size` bytes.
 * 0 (also without a private tmpfs), or -errno: EINVAL when its images
 * take more than that.
 */
int img_store_resize(uint64_t size);

/* Prepare an empty image. page_size must be a power of two >= 4096. */
void img_init(struct img *im, uint64_t page_size);

/* Close the memfd and free the bitmap; the image is empty afterwards. */
void img_destroy(struct img *im);

/* Make sure the memfd exists. Returns 0 or -errno (EMFILE, ENOMEM...). */
int img_open(struct img *im);

/* Current size in bytes (0 while there is no memfd). 0 or -errno. */
int img_size(const struct img *im, uint64_t *size);

/* Bytes of memory the image really uses (holes excluded). */
uint64_t img_mem_bytes(const struct img *im);

/*
 * The most memory a write of [off, off+len) can add: the bytes of the
 * memory pages it touches that hold no memory now (holes, past the end,
 * and pages swapped out). An upper bound where the kernel cannot say:
 * every page touched. Costs the same whatever the file's size.
 */
uint64_t img_new_bytes(const struct img *im, uint64_t off, uint64_t len);

/*
 * Reserve capacity for `end` bytes: on growth the new capacity is the
 * larger of `end` and 1.5x the old one, rounded up to `increment`.
 */
void img_reserve(struct img *im, uint64_t end, uint64_t increment);

/* Read up to len bytes at off; *done gets the count (short at EOF). */
int img_read(const struct img *im, void *buf, size_t len, uint64_t off,
	     size_t *done);

/*
 * Write len bytes at off, growing the image as needed and marking the
 * pages dirty. On error nothing is marked and the errno (ENOSPC, EFBIG,
 * ENOMEM) is returned negated.
 */
int img_write(struct img *im, const void *buf, size_t len, uint64_t off,
	      uint64_t increment);

/*
 * Set the size; an added region is a hole that reads as zeros. Marks no
 * page dirty (the caller records the size change). 0 or -errno.
 */
int img_truncate(struct img *im, uint64_t size);

/* Mark [off, off+len) dirty (for writes the image did not see itself). */
int img_mark_dirty(struct img *im, uint64_t off, uint64_t len);

/* Whether page number `page` is dirty. */
bool img_page_dirty(const struct img *im, uint64_t page);

/*
 * Has the memfd changed since seen_mtime? If so, remember its new mtime
 * in seen_mtime and *mtime, and return true. With the same fstat: was
 * it read since seen_atime (passthrough reads move the image's atime:
 * the private tmpfs is strictatime, the daemon's own fd O_NOATIME)? If
 * so *atime gets the time, else tv_nsec = UTIME_OMIT.
 */
bool img_changed_behind(struct img *im, struct timespec *mtime,
			struct timespec *atime);

/* Remember the current mtime as seen (after our own change). */
void img_seen_now(struct img *im);

/*
 * Take per-page checksums of the clean image: img_sums_set(img_sums_now).
 * Where they cannot be taken (too many pages, no memory, an I/O error)
 * the image has no checksums at all, never stale ones.
 */
void img_sums_take(struct img *im);

/*
 * Checksums of every page as it is now (*count of them), to be installed
 * with img_sums_set once what they describe is safely written: a change
 * made after this call is then found by the next img_sums_mark. NULL
 * (and *count 0) where they cannot be taken.
 */
uint64_t *img_sums_now(struct img *im, size_t *count);

/* Install checksums from img_sums_now (taking them); NULL: none. */
void img_sums_set(struct img *im, uint64_t *sums, size_t count);

/*
 * Mark dirty every page below clean_size whose checksum changed since
 * the checksums were taken (all of them when the new ones cannot be
 * computed); without checksums nothing is marked. With `next`, the new
 * checksums of the whole image (what img_sums_now gives, from the same
 * pass) are handed over in *next, *nnext. 0 or -errno.
 */
int img_sums_mark(struct img *im, uint64_t **next, size_t *nnext);

/* Number of dirty pages. */
uint64_t img_dirty_pages(const struct img *im);

/*
 * Forget all dirty marks: the image now equals what SOURCE holds (after
 * a load or a successful write-back); clean_size becomes the size.
 */
void img_clear_dirty(struct img *im);

/*
 * The same after a write-back of the image's first `size` bytes (its
 * size when the copy began): bytes from `size` on, added by writes the
 * write-back did not wait for, stay new.
 */
void img_written(struct img *im, uint64_t size);

/*
 * A write-back of the image's first `size` bytes (its size now) begins
 * without holding writers back: the dirty marks and clean_size move to
 * *snap (what the copy reads: pages, clean_size, fd), and the image
 * starts again as if the write-back had succeeded, so that a write made
 * while the copy runs is marked anew and never cleared by it. *snap
 * shares the fd and owns the moved bitmap until img_wb_end.
 */
void img_wb_begin(struct img *im, uint64_t size, struct img *snap);

/*
 * The write-back begun with img_wb_begin ended. `written`: SOURCE now
 * holds the copy (the image keeps only the marks made since, and the
 * smallest size it had since). Otherwise the moved marks and the older
 * clean_size come back (where the bitmap cannot grow for them, the whole
 * image is counted as new: clean_size 0). Frees *snap's bitmap.
 */
void img_wb_end(struct img *im, struct img *snap, bool written);

#endif
