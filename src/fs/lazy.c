/*
 * lazy.c - partial images: a file opened before all of it is in memory.
 *
 * Under load=lazy an open does not copy the file: its image is a memfd of
 * SOURCE's size, all hole, and a struct fs_lazy says which blocks
 * (FS_LAZY_BLOCK bytes, aligned) hold SOURCE's bytes yet. Blocks that
 * are holes in SOURCE are there at once. Reads (data.c) fetch the blocks
 * they need first, in the request (with the deadline of job.c), and one
 * thread per mount fills the others in order; when none is missing the
 * image is whole, the SOURCE fd closes, and SOURCE's identity is compared
 * with the one at the start. Writes and truncates: lazywrite.c; the
 * block map both share: lazy.h.
 *
 * Each block is missing, being fetched, being written, or present. A
 * fetch reads SOURCE into a buffer with no lock held, then, under the
 * struct's own mutex (a leaf lock: nothing else is taken while it is
 * held), writes it into the image only if the block is still its own
 * to fill. ns.lock is never held across SOURCE I/O.
 *
 * Calls nothing in src/fs above base.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/log.h"
#include "internal.h"
#include "lazy.h"

/* Blocks one run fetches at most (8 MiB: SOURCE reads it ahead at once). */
#define RUN_BLOCKS 32
#define PAGE 4096
/* Reads that jumped have been few while they fetched < size / this. */
#define JUMPED_FEW 16

void fs_lazy_ref(struct fs_lazy *lz)
{
	__atomic_add_fetch(&lz->refs, 1, __ATOMIC_RELAXED);
}

void fs_lazy_put(struct fs_lazy *lz)
{
	if (!lz || __atomic_sub_fetch(&lz->refs, 1, __ATOMIC_ACQ_REL))
		return;
	if (lz->src_fd >= 0)
		close(lz->src_fd);
	if (lz->img_fd >= 0)
		close(lz->img_fd);
	pthread_cond_destroy(&lz->cond);
	pthread_mutex_destroy(&lz->lock);
	free(lz->state);
	free(lz);
}

/* Blocks that lie wholly in a hole of SOURCE's file hold nothing. */
static void mark_holes(struct fs_lazy *lz)
{
	off_t pos = 0, size = (off_t)lz->size;

	while (pos < size) {
		off_t data = lseek(lz->src_fd, pos, SEEK_DATA), hole;
		uint64_t b;

		if (data < 0 && errno != ENXIO)
			return; /* cannot say: all of it is data */
		if (data < 0 || data > size)
			data = size;
		/* blocks inside [pos, data) */
		for (b = ((uint64_t)pos + FS_LAZY_BLOCK - 1) / FS_LAZY_BLOCK;
		     b < lz->nblocks; b++) {
			uint64_t end = (b + 1) * FS_LAZY_BLOCK;

			if (end > lz->size)
				end = lz->size;
			if (end > (uint64_t)data)
				break;
			if (lz->state[b] != B_PRESENT) {
				lz->state[b] = B_PRESENT;
				lz->missing--;
			}
		}
		if (data >= size)
			return;
		hole = lseek(lz->src_fd, data, SEEK_HOLE);
		if (hole <= data)
			return;
		pos = hole;
	}
}

int fs_lazy_make(int src_fd, const struct stat *st, struct img *im,
		 struct fs_lazy **out)
{
	struct fs_lazy *lz = calloc(1, sizeof(*lz));
	int err;

	*out = NULL;
	if (!lz)
		return -ENOMEM;
	lz->src_fd = lz->img_fd = -1;
	lz->size = lz->limit = (uint64_t)st->st_size;
	lz->nblocks = want_blocks(lz);
	lz->missing = lz->nblocks;
	lz->state = calloc(lz->nblocks ? lz->nblocks : 1, 1);
	lz->refs = 1;
	pthread_mutex_init(&lz->lock, NULL);
	pthread_cond_init(&lz->cond, NULL);
	err = lz->state ? img_open(im) : -ENOMEM;
	if (!err && ftruncate(im->fd, st->st_size) < 0)
		err = -errno;
	if (!err && (lz->img_fd = fcntl(im->fd, F_DUPFD_CLOEXEC, 0)) < 0)
		err = -errno;
	if (err) {
		fs_lazy_put(lz);
		return err;
	}
	src_ident_from_stat(&lz->start, st);
	lz->src_fd = src_fd; /* ours now */
	mark_holes(lz);
	/* read-ahead as cp asks for it: the loader reads in order */
	posix_fadvise(src_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	*out = lz;
	return 0;
}

/*
 * Write buf, SOURCE's bytes of [off, off+len), into the image, leaving
 * out pages of zeros: the block is a hole until filled, and holes stay
 * holes. lz->lock held. 0 or -errno.
 */
static int put_data(struct fs_lazy *lz, const char *buf, uint64_t off,
		    uint64_t len)
{
	static const char zero[PAGE];
	uint64_t pos = 0, run = 0;

	while (pos < len) {
		uint64_t n = len - pos - run < PAGE ? len - pos - run : PAGE;

		if (pos + run < len && memcmp(buf + pos + run, zero, n)) {
			run += n; /* a page of data: write it with the next */
			continue;
		}
		while (run) {
			ssize_t w = pwrite(lz->img_fd, buf + pos, run,
					   (off_t)(off + pos));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return w < 0 ? -errno : -EIO;
			pos += (uint64_t)w;
			run -= (uint64_t)w;
		}
		pos += pos < len ? n : 0; /* past the page of zeros */
	}
	return 0;
}

/* put_data for [off, off+len) but [skip, skip_end), written already. */
static int put_bytes(struct fs_lazy *lz, const char *buf, uint64_t off,
		     uint64_t len, uint64_t skip, uint64_t skip_end)
{
	int err = 0;

	if (skip >= skip_end || skip_end <= off || skip >= off + len)
		return put_data(lz, buf, off, len);
	if (skip > off)
		err = put_data(lz, buf, off, skip - off);
	if (!err && skip_end < off + len)
		err = put_data(lz, buf + (skip_end - off), skip_end,
			       off + len - skip_end);
	return err;
}

/* Block by block through one small buffer: see lazy.h. */
int lazy_fetch_run(struct fs *fs, struct fs_lazy *lz, uint64_t b,
		   uint64_t count, uint64_t skip, uint64_t skip_end)
{
	char *buf = malloc(FS_LAZY_BLOCK);
	int err = buf ? 0 : -ENOMEM;

	if (count > 1)
		posix_fadvise(lz->src_fd, (off_t)(b * FS_LAZY_BLOCK),
			      (off_t)(count * FS_LAZY_BLOCK),
			      POSIX_FADV_WILLNEED);
	for (uint64_t i = b; i < b + count; i++) {
		uint64_t bs = i * FS_LAZY_BLOCK, be = bs + FS_LAZY_BLOCK;
		uint64_t len = be > lz->size ? lz->size - bs : FS_LAZY_BLOCK;
		uint64_t got = 0;
		int e;

		while (!err && got < len) {
			ssize_t r = pread(lz->src_fd, buf + got, len - got,
					  (off_t)(bs + got));

			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				err = -errno;
			if (r <= 0)
				break; /* shorter now: the rest reads as zeros */
			got += (uint64_t)r;
		}
		if (!err && got < len)
			memset(buf + got, 0, len - got);
		__atomic_add_fetch(&fs->stats.fetch_bytes, got,
				   __ATOMIC_RELAXED);
		pthread_mutex_lock(&lz->lock);
		if (lz->state[i] == B_FETCHING) {
			/* else claimed by a write, or not wanted now */
			if (be > lz->limit)
				be = lz->limit;
			e = err;
			if (!e && !lz->dropped && be > bs)
				e = put_bytes(lz, buf, bs, be - bs, skip,
					      skip_end);
			if (e) {
				lz->state[i] = B_MISSING;
				err = e;
			} else {
				lz->state[i] = B_PRESENT;
				lz->missing--;
			}
			pthread_cond_broadcast(&lz->cond);
		}
		pthread_mutex_unlock(&lz->lock);
	}
	free(buf);
	return err;
}

int lazy_ensure(struct fs *fs, struct fs_lazy *lz, uint64_t first,
		uint64_t last)
{
	uint64_t b = first;
	int err = 0;

	pthread_mutex_lock(&lz->lock);
	while (!err && b <= last && b < want_blocks(lz) && !lz->dropped) {
		uint64_t n = 0;

		if (lz->state[b] == B_PRESENT) {
			b++;
			continue;
		}
		if (lz->state[b] != B_MISSING) {
			pthread_cond_wait(&lz->cond, &lz->lock);
			continue;
		}
		while (n < RUN_BLOCKS && b + n <= last &&
		       b + n < want_blocks(lz) &&
		       lz->state[b + n] == B_MISSING)
			lz->state[b + n++] = B_FETCHING;
		pthread_mutex_unlock(&lz->lock);
		err = lazy_fetch_run(fs, lz, b, n, 0, 0);
		pthread_mutex_lock(&lz->lock);
		b += n;
	}
	pthread_mutex_unlock(&lz->lock);
	return err;
}

struct fs_lazy *fs_lazy_get(struct fs *fs, struct node *n)
{
	struct fs_lazy *lz;

	if (!n->file || !__atomic_load_n(&n->file->lazy, __ATOMIC_ACQUIRE))
		return NULL; /* whole (the common case): no lock */
	pthread_mutex_lock(&fs->ns.lock);
	lz = n->file->lazy;
	if (lz)
		fs_lazy_ref(lz);
	pthread_mutex_unlock(&fs->ns.lock);
	return lz;
}

bool fs_lazy_has(struct fs_lazy *lz, uint64_t off, uint64_t len,
		 uint64_t readahead, uint64_t *want)
{
	uint64_t first = off / FS_LAZY_BLOCK, last, b;
	bool all = true;

	if (!len)
		len = 1;
	last = (off + len - 1) / FS_LAZY_BLOCK;
	pthread_mutex_lock(&lz->lock);
	/* sequential reads: fetch ahead of them, in the same request */
	if (off == lz->seq_end && off)
		*want = len + readahead;
	else
		*want = len;
	lz->seq_end = off + len;
	for (b = first; b <= last && b < want_blocks(lz) && all; b++)
		all = lz->state[b] == B_PRESENT || lz->dropped;
	pthread_mutex_unlock(&lz->lock);
	return all;
}

bool fs_lazy_jumped(struct fs_lazy *lz, uint64_t off, uint64_t len)
{
	bool few;

	pthread_mutex_lock(&lz->lock);
	/* the blocks it fetches, whole */
	lz->jumped += ((off + len + FS_LAZY_BLOCK - 1) / FS_LAZY_BLOCK -
		       off / FS_LAZY_BLOCK) * FS_LAZY_BLOCK;
	few = lz->jumped < lz->size / JUMPED_FEW;
	pthread_mutex_unlock(&lz->lock);
	return few;
}

int fs_lazy_fetch(struct fs *fs, struct fs_lazy *lz, uint64_t off,
		  uint64_t len, uint64_t ahead)
{
	if (!len)
		return 0;
	/* SOURCE reads on behind our back while we wait for this part */
	if (ahead && off + len < lz->size)
		posix_fadvise(lz->src_fd, (off_t)(off + len), (off_t)ahead,
			      POSIX_FADV_WILLNEED);
	return lazy_ensure(fs, lz, off / FS_LAZY_BLOCK,
		      (off + len - 1) / FS_LAZY_BLOCK);
}

uint64_t fs_lazy_loaded_locked(const struct node *n)
{
	struct fs_lazy *lz = n->file ? n->file->lazy : NULL;
	uint64_t have;

	if (!lz)
		return 0;
	pthread_mutex_lock(&lz->lock);
	have = lz->limit > lz->missing * FS_LAZY_BLOCK ?
		       lz->limit - lz->missing * FS_LAZY_BLOCK : 0;
	pthread_mutex_unlock(&lz->lock);
	return have;
}

void fs_lazy_cancel(struct fs_lazy *lz)
{
	pthread_mutex_lock(&lz->lock);
	lz->dropped = true;
	pthread_cond_broadcast(&lz->cond);
	pthread_mutex_unlock(&lz->lock);
}

void fs_lazy_release(struct fs_lazy *lz)
{
	fs_lazy_cancel(lz);
	fs_lazy_put(lz);
}

void fs_lazy_drop_locked(struct fs *fs, struct node *n)
{
	struct fs_lazy *lz = n->file ? n->file->lazy : NULL;

	if (!lz)
		return;
	n->file->lazy = NULL;
	n->file->img.floor = 0;
	ns_account(&fs->ns, n);
	fs_lazy_cancel(lz);
	fs_lazy_put(lz);
}

/*
 * Every block is in: the image is whole. Compare SOURCE's identity with
 * the one at the start: a file changed while it loaded holds a mix, so
 * it is loaded again at its next open (its identity is the start's,
 * which SOURCE no longer has), or, when written, its write-back is a
 * conflict. n->io held.
 */
static void finish(struct fs *fs, struct node *n, struct fs_lazy *lz)
{
	struct src_ident now;
	struct stat st;
	bool changed;
	char *path;

	if (n->file->lazy != lz)
		return; /* dropped (n->io held: it cannot change now) */
	changed = fstat(lz->src_fd, &st) == 0 &&
		  (src_ident_from_stat(&now, &st),
		   !fs_same_file(&now, &lz->start, true));
	/*
	 * Passthrough opens may come once it is whole; none came before (no
	 * kernel write behind us): take the checksums of the image as is.
	 */
	if (fs_kernel_writes(fs))
		img_sums_take(&n->file->img);
	pthread_mutex_lock(&fs->ns.lock);
	n->file->lazy = NULL;
	n->file->img.floor = 0;
	if (fs_kernel_writes(fs))
		img_seen_now(&n->file->img); /* our own fills */
	ns_account(&fs->ns, n);
	if (changed) {
		path = fs_log_path_locked(fs, n);
		log_warn("%s changed in SOURCE while it was being loaded: %s",
			 fs_named(path),
			 n->flags & N_DIRTY ?
				 "its write-back will be saved as a conflict" :
				 "it is loaded again at its next open");
		free(path);
	}
	pthread_mutex_unlock(&fs->ns.lock);
	fs_lazy_cancel(lz);
	fs_lazy_put(lz);
}

int fs_lazy_complete(struct fs *fs, struct node *n)
{
	struct fs_lazy *lz = n->file ? n->file->lazy : NULL;
	int err;

	if (!lz)
		return 0;
	fs_lazy_ref(lz);
	err = lazy_ensure(fs, lz, 0, UINT64_MAX - 1);
	if (!err) {
		pthread_mutex_lock(&lz->lock);
		err = lz->missing ? -EIO : 0;
		pthread_mutex_unlock(&lz->lock);
	}
	if (!err)
		finish(fs, n, lz);
	fs_lazy_put(lz);
	return err;
}

static uint64_t next_missing(const struct fs_lazy *lz, uint64_t b)
{
	while (b < want_blocks(lz) && lz->state[b] != B_MISSING)
		b++;
	return b;
}

int fs_lazy_step(struct fs *fs, struct fs_lazy *lz)
{
	uint64_t b, n = 0;

	pthread_mutex_lock(&lz->lock);
	for (;;) {
		if (lz->dropped || !lz->missing || lz->err) {
			pthread_mutex_unlock(&lz->lock);
			return 0;
		}
		/* from the cursor; then behind it: a fetch that failed */
		if ((b = next_missing(lz, lz->cursor)) < want_blocks(lz) ||
		    (b = next_missing(lz, 0)) < want_blocks(lz))
			break;
		/* only blocks others fetch or write now: wait for them */
		pthread_cond_wait(&lz->cond, &lz->lock);
	}
	while (n < RUN_BLOCKS && b + n < want_blocks(lz) &&
	       lz->state[b + n] == B_MISSING)
		lz->state[b + n++] = B_FETCHING;
	lz->cursor = b + n;
	pthread_mutex_unlock(&lz->lock);
	lz->err = lazy_fetch_run(fs, lz, b, n, 0, 0);
	return lz->err ? lz->err : 1;
}

void fs_lazy_done(struct fs *fs, struct node *n, struct fs_lazy *lz)
{
	bool whole;

	pthread_mutex_lock(&n->io);
	pthread_mutex_lock(&lz->lock);
	whole = !lz->missing && !lz->dropped;
	pthread_mutex_unlock(&lz->lock);
	if (whole)
		finish(fs, n, lz);
	pthread_mutex_unlock(&n->io);
}
