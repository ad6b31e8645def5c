/*
 * lazy.h - the block map of a partial image, shared by lazy.c (opening,
 * reads, the loader's steps) and lazywrite.c (writes, truncates). Not
 * for other files: they go through the fs_lazy_* calls of internal.h.
 */
#ifndef H5MEMFS_FS_LAZY_H
#define H5MEMFS_FS_LAZY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

/* Each block is missing, being fetched, being written, or present. */
enum { B_MISSING, B_FETCHING, B_WRITING, B_PRESENT };

struct fs_lazy {
	pthread_mutex_t lock;	/* leaf lock: state, missing, limit... */
	pthread_cond_t cond;	/* a fetch or a write of a block ended */
	int refs;		/* atomic */
	int src_fd;		/* SOURCE's file, read-only */
	int img_fd;		/* the image's memfd (our own dup) */
	uint64_t size;		/* SOURCE's size at the start */
	uint64_t limit;		/* SOURCE's bytes from here on never wanted
				   (the smallest size the file had since) */
	uint64_t nblocks;	/* blocks of `size` */
	unsigned char *state;	/* B_* per block */
	uint64_t missing;	/* blocks below limit not present */
	uint64_t cursor;	/* the loader's next block */
	uint64_t seq_end;	/* end of the last read: sequential? */
	uint64_t jumped;	/* bytes fetched for reads that jumped */
	bool dropped;		/* image dropped or whole: fill nothing */
	int err;		/* the loader's SOURCE error, or 0 */
	struct src_ident start;	/* SOURCE's identity at the start */
};

static inline uint64_t want_blocks(const struct fs_lazy *lz)
{
	return (lz->limit + FS_LAZY_BLOCK - 1) / FS_LAZY_BLOCK;
}

/* The part of block b that SOURCE fills: [*bs, *be). lz->lock held. */
static inline bool block_span(const struct fs_lazy *lz, uint64_t b,
			      uint64_t *bs, uint64_t *be)
{
	*bs = b * FS_LAZY_BLOCK;
	*be = *bs + FS_LAZY_BLOCK;
	if (*be > lz->limit)
		*be = lz->limit;
	return *be > *bs;
}

/*
 * Fill blocks [b, b+count), all B_FETCHING and ours, from SOURCE; bytes
 * in [skip, skip_end) are left as they are (written through the mount).
 * Block by block through one small buffer (it stays in the CPU's cache,
 * and a fork by a drain or a check leaves few of its pages to copy
 * back), SOURCE asked to read the whole run ahead meanwhile. Each block
 * ends present, or missing again on an error. Takes lz->lock.
 */
int lazy_fetch_run(struct fs *fs, struct fs_lazy *lz, uint64_t b,
		   uint64_t count, uint64_t skip, uint64_t skip_end);
/*
 * Make blocks [first, last] present: fetch the missing ones (in runs),
 * wait for those another thread fetches or writes. SOURCE I/O without
 * a deadline: callers with a request to answer run it in a job.
 */
int lazy_ensure(struct fs *fs, struct fs_lazy *lz, uint64_t first,
		uint64_t last);

#endif
