/*
 * lazywrite.c - writes and truncates of a partial image (lazy.c): a
 * write makes the blocks it covers present before copying (those it
 * covers in part fetched first, those it covers whole claimed, so that no
 * fetch ever fills them), and a truncate lowers `limit`, past which
 * SOURCE's bytes are never wanted again. What a write there costs in
 * memory (the blocks not in yet are charged already).
 *
 * Calls nothing in src/fs above base.c.
 */
#include <errno.h>
#include <stdint.h>

#include "../core/log.h"
#include "internal.h"
#include "lazy.h"

int fs_lazy_write_fetch(struct fs *fs, struct fs_lazy *lz, uint64_t off,
			uint64_t len)
{
	uint64_t first = off / FS_LAZY_BLOCK, last = (off + len - 1) /
						      FS_LAZY_BLOCK;
	uint64_t bs, be;
	bool head, tail;
	int err = 0;

	if (!len)
		return 0;
	/* only the blocks the write covers in part: the ends */
	pthread_mutex_lock(&lz->lock);
	head = block_span(lz, first, &bs, &be) && (off > bs || off + len < be);
	tail = last != first && block_span(lz, last, &bs, &be) &&
	       off + len < be;
	pthread_mutex_unlock(&lz->lock);
	if (head)
		err = lazy_ensure(fs, lz, first, first);
	if (!err && tail)
		err = lazy_ensure(fs, lz, last, last);
	return err;
}

void fs_lazy_write_claim(struct fs_lazy *lz, uint64_t off, uint64_t len)
{
	uint64_t b, bs, be;

	if (!len)
		return;
	pthread_mutex_lock(&lz->lock);
	for (b = off / FS_LAZY_BLOCK;
	     b <= (off + len - 1) / FS_LAZY_BLOCK && b < want_blocks(lz); b++)
		/* fully covered and not there: the write fills it */
		if (block_span(lz, b, &bs, &be) && off <= bs &&
		    off + len >= be && (lz->state[b] == B_MISSING ||
					lz->state[b] == B_FETCHING))
			lz->state[b] = B_WRITING; /* a fetch now drops its
						     bytes */
	pthread_mutex_unlock(&lz->lock);
}

void fs_lazy_write_done(struct fs *fs, struct fs_lazy *lz, uint64_t off,
			uint64_t len, uint64_t done)
{
	uint64_t b, bs, be;

	if (!len)
		return;
	pthread_mutex_lock(&lz->lock);
	for (b = off / FS_LAZY_BLOCK;
	     b <= (off + len - 1) / FS_LAZY_BLOCK && b < want_blocks(lz); b++) {
		if (lz->state[b] != B_WRITING || !block_span(lz, b, &bs, &be) ||
		    off > bs || off + len < be)
			continue;
		if (off + done >= be) {
			lz->state[b] = B_PRESENT;
			lz->missing--;
			continue;
		}
		/*
		 * A short write (the tmpfs full): SOURCE's bytes around the
		 * part written. Rare; waits for SOURCE.
		 */
		lz->state[b] = B_FETCHING;
		pthread_mutex_unlock(&lz->lock);
		if (lazy_fetch_run(fs, lz, b, 1, off, off + done))
			log_warn("a partly loaded file lost SOURCE's bytes "
				 "after a short write");
		pthread_mutex_lock(&lz->lock);
	}
	pthread_cond_broadcast(&lz->cond);
	pthread_mutex_unlock(&lz->lock);
}

int fs_lazy_truncate(struct fs *fs, struct node *n, uint64_t size)
{
	struct fs_lazy *lz = n->file->lazy;
	int err;

	(void)fs;
	if (!lz)
		return img_truncate(&n->file->img, size);
	pthread_mutex_lock(&lz->lock);
	if (size < lz->limit) {
		uint64_t keep = (size + FS_LAZY_BLOCK - 1) / FS_LAZY_BLOCK;

		for (uint64_t b = keep; b < want_blocks(lz); b++)
			if (lz->state[b] != B_PRESENT) {
				lz->state[b] = B_PRESENT; /* never wanted */
				lz->missing--;
			}
		lz->limit = size;
	}
	err = img_truncate(&n->file->img, size);
	pthread_cond_broadcast(&lz->cond);
	pthread_mutex_unlock(&lz->lock);
	return err;
}

uint64_t fs_lazy_missing_bytes(struct fs_lazy *lz, uint64_t off,
			       uint64_t len)
{
	uint64_t b, bs, be, sum = 0;

	if (!len)
		return 0;
	pthread_mutex_lock(&lz->lock);
	for (b = off / FS_LAZY_BLOCK;
	     b <= (off + len - 1) / FS_LAZY_BLOCK && b < want_blocks(lz); b++) {
		if (lz->state[b] == B_PRESENT || !block_span(lz, b, &bs, &be))
			continue;
		if (bs < off)
			bs = off;
		if (be > off + len)
			be = off + len;
		sum += be > bs ? be - bs : 0;
	}
	pthread_mutex_unlock(&lz->lock);
	return sum;
}
