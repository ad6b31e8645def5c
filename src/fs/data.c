/*
 * data.c - the contents of open files: the fd reads are spliced from,
 * the one write path (room, copy, dirty pages, in that order), lseek,
 * fallocate, and the write-back a close may ask for. Opening, loading
 * and closing are in open.c.
 *
 * Reads go to the image without any lock (the memfd is stable while a
 * handle is open), once fs_read_ready has fetched what a partial image
 * lacks of them (lazy.c); marking written pages takes the node's io
 * mutex so that a write-back sees whole writes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/log.h"
#include "internal.h"

int fs_flush(struct fs *fs, struct node *n)
{
	bool last;

	if (!fs->o.sync_on_close || !S_ISREG(n->mode))
		return 0;
	pthread_mutex_lock(&fs->ns.lock);
	fs_notice_kernel_writes(fs, n);
	/*
	 * Every close of a dirty file, not only the one we count as the
	 * last: RELEASE of another handle may still be on its way, so a
	 * count would miss the real last close.
	 */
	last = n->flags & N_DIRTY;
	pthread_mutex_unlock(&fs->ns.lock);
	return last ? fs_fsync(fs, n) : 0;
}

int fs_data_fd(struct fs *fs, struct node *n)
{
	int err;

	if (n->file->direct_fd >= 0)
		return n->file->direct_fd; /* stable while a handle is open */
	pthread_mutex_lock(&n->io);
	err = img_open(&n->file->img);
	pthread_mutex_unlock(&n->io);
	(void)fs;
	return err ? err : n->file->img.fd;
}

int fs_source_read_begin(struct fs *fs, struct node *n)
{
	static unsigned long refused;

	if (n->file->direct_fd < 0)
		return 0;
	if (fs_wait_begin(fs))
		return 1;
	if (__atomic_fetch_add(&refused, 1, __ATOMIC_RELAXED) % 1000 == 0)
		log_err("%u requests already wait for SOURCE: a read of a "
			"file served from SOURCE fails with EIO",
			FS_MAX_WAITING);
	return -EIO;
}

void fs_source_read_end(struct fs *fs, int counted)
{
	if (counted > 0)
		fs_wait_end(fs);
}

/* Bytes fetched past a read that continues the one before. */
#define READAHEAD (UINT64_C(8) << 20)

/* Fetching blocks of a partial image for a request, with the deadline. */
struct fetch_job {
	struct fs_job job;	/* job.node: the file */
	struct fs_lazy *lz;	/* a reference */
	uint64_t off, len;
	uint64_t ahead;		/* SOURCE to read on past them, or 0 */
	bool write;		/* only the blocks a write covers in part */
	int err;
};

static void fetch_job_run(struct fs_job *j)
{
	struct fetch_job *fj = (struct fetch_job *)j;

	fj->err = fj->write ? fs_lazy_write_fetch(j->fs, fj->lz, fj->off,
						  fj->len)
			    : fs_lazy_fetch(j->fs, fj->lz, fj->off, fj->len,
					    fj->ahead);
}

static void fetch_job_release(struct fs_job *j)
{
	fs_lazy_put(((struct fetch_job *)j)->lz);
}

/* Fetch [off, off+len) of n's partial image (see fs_lazy_*). 0/-errno. */
static int lazy_fetch(struct fs *fs, struct node *n, struct fs_lazy *lz,
		      uint64_t off, uint64_t len, uint64_t ahead, bool write)
{
	struct fetch_job *fj = fs_job_new(fs, sizeof(*fj), n, fetch_job_run,
					  fetch_job_release);
	int err;

	if (!fj)
		return -ENOMEM;
	fs_lazy_ref(lz);
	fj->lz = lz;
	fj->off = off;
	fj->len = len;
	fj->ahead = ahead;
	fj->write = write;
	err = fs_job_run(fs, &fj->job);
	if (err)
		err = fs_job_failed(&fj->job, "read");
	else
		err = fj->err;
	fs_job_put(&fj->job);
	return err;
}

int fs_read_ready(struct fs *fs, struct node *n, uint64_t off, size_t len)
{
	struct fs_lazy *lz = fs_lazy_get(fs, n);
	uint64_t want;
	int err = 0;

	if (!lz)
		return 0; /* whole (or served from SOURCE) */
	if (!fs_lazy_has(lz, off, len, READAHEAD, &want)) {
		/*
		 * A read that jumps (a program walking headers) waits for
		 * each fetch: the background loader makes way for a few of
		 * them (loader.c); once they have read the file all over,
		 * loading the rest in order alongside serves them soonest.
		 * One that goes on where the last ended fetches ahead, and
		 * has SOURCE read on further meanwhile.
		 */
		if (want == len && fs_lazy_jumped(lz, off, want))
			__atomic_store_n(&fs->loader.busy_ms, fs_now_ms(),
					 __ATOMIC_RELAXED);
		err = lazy_fetch(fs, n, lz, off, want,
				 want > len ? 2 * READAHEAD : 0, false);
	}
	fs_lazy_put(lz);
	return err;
}

/*
 * Before a write of len bytes at off: make room within max_memory for
 * the memory pages it fills (holes now, past the end included; a write
 * far past the end costs its own pages only), and hold it (*held bytes)
 * against other loads and writes until it is counted. 0, or -ENOSPC
 * when even eviction cannot make it fit (*held is 0).
 * lz: n's partial image (its missing blocks are charged), or NULL.
 */
static int reserve(struct fs *fs, struct node *n, struct fs_lazy *lz,
		   uint64_t off, uint64_t len, uint64_t *held)
{
	uint64_t need;

	*held = 0;
	if (n->file->direct_fd >= 0)
		return -EBADF; /* opened read-only: the kernel checks first */
	/* memory the write can take, not its end: a far write is a hole */
	need = img_new_bytes(&n->file->img, off, len);
	if (lz) {
		/* SOURCE's blocks not in yet are charged already */
		uint64_t charged = fs_lazy_missing_bytes(lz, off, len);

		need = need > charged ? need - charged : 0;
	}
	if (!need || fs_hold_room(fs, need) == 0) {
		*held = need;
		return 0;
	}
	fs_write_refused(fs, n, off + len);
	return -ENOSPC;
}

/*
 * After data changed: mark dirty, stamp times (as the data path says).
 * `held`: the room reserve held for the write, counted now.
 */
static void wrote(struct fs *fs, struct node *n, uint64_t held)
{
	pthread_mutex_lock(&fs->ns.lock);
	fs_data_changed_locked(fs, n);
	ns_account(&fs->ns, n);
	fs->ns.mem_reserved -= held;
	pthread_mutex_unlock(&fs->ns.lock);
}

/* [off, off+len) was written into the image: mark its pages dirty. */
static int mark_written(struct fs *fs, struct node *n, uint64_t off,
			uint64_t len, uint64_t held)
{
	int err;

	pthread_mutex_lock(&n->io);
	err = img_mark_dirty(&n->file->img, off, len);
	img_reserve(&n->file->img, off + len, fs->o.increment);
	pthread_mutex_unlock(&n->io);
	if (!err)
		wrote(fs, n, held);
	else
		fs_unreserve(fs, held);
	return err;
}

int fs_write(struct fs *fs, struct node *n, uint64_t off, size_t len,
	     fs_copy_fn copy, void *arg, size_t *done)
{
	uint64_t held;
	ssize_t copied;
	struct fs_lazy *lz;
	int fd = fs_data_fd(fs, n), err;

	*done = 0;
	if (fd < 0)
		return fd;
	lz = fs_lazy_get(fs, n); /* a partial image, or NULL */
	err = reserve(fs, n, lz, off, len, &held);
	/*
	 * A partial image: SOURCE's bytes around the write first; the
	 * blocks it covers whole are its own, never filled from SOURCE.
	 */
	if (!err && lz && (err = lazy_fetch(fs, n, lz, off, len, 0, true)))
		fs_unreserve(fs, held);
	if (err) {
		fs_lazy_put(lz);
		return err;
	}
	if (lz)
		fs_lazy_write_claim(lz, off, len);
	copied = copy(arg, fd, off);
	if (lz) {
		fs_lazy_write_done(fs, lz, off, len,
				   copied > 0 ? (uint64_t)copied : 0);
		fs_lazy_put(lz);
	}
	/*
	 * Marked after the copy: a write-back that ran meanwhile took the
	 * new bytes already, or sees the mark; marking first could let one
	 * clear the mark before the bytes arrived.
	 */
	if (copied <= 0) {
		fs_unreserve(fs, held);
		return copied < 0 ? (int)copied : 0;
	}
	err = mark_written(fs, n, off, (uint64_t)copied, held);
	if (!err)
		*done = (size_t)copied;
	return err;
}

int fs_lseek(struct fs *fs, struct node *n, off_t off, int whence,
	     off_t *out)
{
	uint64_t size;
	off_t r;
	int err;

	(void)fs;
	if (n->file->direct_fd >= 0) { /* served from SOURCE */
		r = lseek(n->file->direct_fd, off, whence);
		if (r < 0)
			return -errno;
		*out = r;
		return 0;
	}
	if (__atomic_load_n(&n->file->lazy, __ATOMIC_ACQUIRE)) {
		/*
		 * A partial image cannot say where SOURCE's holes are yet:
		 * all of it is data, one hole at the end (always true of
		 * the bytes; what the kernel answers without us too).
		 */
		err = img_size(&n->file->img, &size);
		if (err)
			return err;
		if (off < 0 || (uint64_t)off >= size)
			return -ENXIO;
		*out = whence == SEEK_DATA ? off : (off_t)size;
		return 0;
	}
	if (n->file->img.fd < 0) {
		/* an empty image: all one hole of size 0 */
		err = img_size(&n->file->img, &size);
		if (err)
			return err;
		return -ENXIO;
	}
	r = lseek(n->file->img.fd, off, whence);
	if (r < 0)
		return -errno;
	*out = r;
	return 0;
}

/*
 * Room for a fallocate of [off, off+len): the pages it fills, as for a
 * write (a punched hole fills none). Checked against the budget on
 * every store: memfds have no size limit of their own. A range longer
 * than the budget plus all the image holds now cannot fit, whatever is
 * evicted: refused before mincore walks it.
 */
static int fallocate_room(struct fs *fs, struct node *n, int mode,
			  uint64_t off, uint64_t len, uint64_t *held)
{
	uint64_t need;

	*held = 0;
	if (mode & FALLOC_FL_PUNCH_HOLE)
		return 0;
	if (n->file->direct_fd >= 0)
		return -EBADF; /* opened read-only: the kernel checks first */
	if (len > fs->o.max_memory + img_mem_bytes(&n->file->img))
		return -ENOSPC;
	need = img_new_bytes(&n->file->img, off, len);
	if (need && fs_hold_room(fs, need))
		return -ENOSPC;
	*held = need;
	return 0;
}

int fs_fallocate(struct fs *fs, struct node *n, int mode, off_t off,
		 off_t len)
{
	uint64_t held;
	struct fs_lazy *lz;
	int err;

	if (off < 0 || len <= 0)
		return -EINVAL;
	/* a partial image: SOURCE's bytes of the range in first */
	lz = fs_lazy_get(fs, n);
	if (lz) {
		err = lazy_fetch(fs, n, lz, (uint64_t)off, (uint64_t)len, 0,
				 false);
		fs_lazy_put(lz);
		if (err)
			return err;
	}
	err = fallocate_room(fs, n, mode, (uint64_t)off, (uint64_t)len,
			     &held);
	if (err)
		return err;
	pthread_mutex_lock(&n->io);
	err = img_open(&n->file->img);
	if (!err && fallocate(n->file->img.fd, mode, off, len) < 0)
		err = -errno;
	if (!err)
		err = img_mark_dirty(&n->file->img, (uint64_t)off,
				     (uint64_t)len);
	pthread_mutex_unlock(&n->io);
	if (!err)
		wrote(fs, n, held);
	else
		fs_unreserve(fs, held);
	return err;
}
