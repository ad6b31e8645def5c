/*
 * kernel.c - what the kernel's data path implies for the daemon.
 *
 * Which path a mount takes is settled at INIT (src/fuse/ops.c) and told
 * here by two options; every difference between the paths is one of the
 * functions below, so that the rest of src/fs asks them rather than
 * testing the options itself:
 *
 * - passthrough (o.kernel_writes): reads, writes and mmap stores go from
 *   the kernel to the image without the daemon. fs_notice_kernel_writes
 *   takes the image's new mtime as a write (and its atime as a read);
 *   since mtime misses stores through a mapping made after its pages
 *   were first written, and writes within the clock's tick,
 *   fs_find_mapped_writes (before a write-back) and fs_image_clean_locked
 *   (before an image is unloaded) compare the size with clean_size and
 *   page checksums with those fs_image_loaded and write-backs take.
 * - daemon path with the writeback cache (o.kernel_times): the kernel
 *   owns mtime, ctime and the size of a file it caches, so writes here
 *   stamp no times (fs_data_changed_locked), and an image that must
 *   change under the kernel gives its names to a new node instead.
 * - atime on both: FUSE leaves it to the daemon (fs_atime_due,
 *   fs_accessed), under the mount's relatime/strictatime/noatime.
 *
 * Nothing here calls a file of src/fs above base.c.
 */
#include <stdlib.h>

#include "../core/ts.h"
#include "internal.h"

/* Whether a read at `when` moves n's atime. ns.lock held. */
static bool atime_due(const struct fs *fs, const struct node *n,
		      struct timespec when)
{
	switch (fs->o.atime) {
	case FS_NOATIME:
		return false;
	case FS_STRICTATIME:
		return true;
	default: /* as the kernel's relatime_need_update() */
		return !ts_before(n->mtime, n->atime) ||
		       !ts_before(n->ctime, n->atime) ||
		       when.tv_sec - n->atime.tv_sec >= 24 * 60 * 60;
	}
}

bool fs_atime_due(struct fs *fs, struct node *n)
{
	bool due;

	pthread_mutex_lock(&fs->ns.lock);
	due = atime_due(fs, n, ns_now());
	pthread_mutex_unlock(&fs->ns.lock);
	return due;
}

bool fs_open_alone(struct fs *fs, struct node *n)
{
	bool alone;

	pthread_mutex_lock(&fs->ns.lock);
	alone = n->nopen == 1;
	pthread_mutex_unlock(&fs->ns.lock);
	return alone;
}

bool fs_accessed(struct fs *fs, struct node *n)
{
	struct timespec now = ns_now();
	bool moved;

	pthread_mutex_lock(&fs->ns.lock);
	moved = atime_due(fs, n, now);
	if (moved)
		n->atime = now;
	pthread_mutex_unlock(&fs->ns.lock);
	return moved;
}

void fs_notice_kernel_writes(struct fs *fs, struct node *n)
{
	struct timespec mtime, atime;
	bool written;

	/* a partial image: only the daemon writes it (and moves mtime) */
	if (!fs->o.kernel_writes || !S_ISREG(n->mode) ||
	    !(n->flags & N_LOADED) || n->file->lazy)
		return;
	written = img_changed_behind(&n->file->img, &mtime, &atime);
	if (written) {
		/*
		 * The kernel stamps with its coarse clock, which can lag our
		 * CLOCK_REALTIME stamps: never let ctime go back.
		 */
		if (ts_before(mtime, n->ctime))
			mtime = n->ctime;
		n->mtime = n->ctime = mtime;
		n->flags |= N_DIRTY | N_META_DIRTY;
		n->file->wgen++;
	}
	/* read through passthrough (the image's atime moved) */
	if (atime.tv_nsec != UTIME_OMIT && atime_due(fs, n, atime))
		n->atime = atime;
}

/*
 * Could n hold writes the kernel made without a trace (stores through a
 * mapping, a write or an append within the clock's tick)? Not a partial
 * image: the kernel is given an image only once it is whole, and every
 * change before goes through the daemon. ns.lock held.
 */
static bool may_hold_mapped_writes(const struct fs *fs, const struct node *n)
{
	return fs->o.kernel_writes && S_ISREG(n->mode) &&
	       (n->flags & N_LOADED) && !(n->flags & N_DIRTY) &&
	       !n->file->lazy;
}

/*
 * Compare n's image with its clean state: its size with clean_size
 * (an append leaves the pages below it alone), then each page's
 * checksum, marking those that changed. 1 when it changed, 0 when it
 * is what it was, -1 when it cannot tell (no checksums: over 4M pages
 * or no memory when they were due; or no memory now). n->io held.
 */
static int image_changed(struct img *im)
{
	uint64_t size;

	if (img_size(im, &size))
		return -1;
	if (size != im->clean_size)
		return 1;
	if (!im->sums || img_sums_mark(im, NULL, NULL))
		return -1;
	return img_dirty_pages(im) != 0;
}

/* n's image changed behind the daemon: write it back. ns.lock held. */
static void mark_changed(struct node *n)
{
	n->flags |= N_DIRTY;
	n->file->wgen++;
}

/*
 * Find the kernel's untraced writes to n; mark n dirty if there are.
 * At the end of the mount an image that cannot be checked is written
 * back whole: nothing after that pass would save its changes.
 */
static void find_mapped_writes_of(struct fs *fs, struct node *n)
{
	int changed;

	pthread_mutex_lock(&n->io);
	changed = image_changed(&n->file->img);
	pthread_mutex_lock(&fs->ns.lock);
	if (changed > 0 || (changed < 0 && fs->ending &&
			    may_hold_mapped_writes(fs, n)))
		mark_changed(n);
	pthread_mutex_unlock(&fs->ns.lock);
	pthread_mutex_unlock(&n->io);
}

bool fs_image_clean_locked(struct fs *fs, struct node *n)
{
	int changed;

	fs_notice_kernel_writes(fs, n);
	if (n->flags & N_DIRTY)
		return false;
	if (!may_hold_mapped_writes(fs, n))
		return true; /* every change passed through the daemon */
	changed = image_changed(&n->file->img);
	if (changed > 0)
		mark_changed(n);
	return changed == 0;
}

void fs_find_mapped_writes_in(struct fs *fs, struct node *n)
{
	bool maybe;

	pthread_mutex_lock(&fs->ns.lock);
	maybe = may_hold_mapped_writes(fs, n);
	pthread_mutex_unlock(&fs->ns.lock);
	if (maybe)
		find_mapped_writes_of(fs, n);
}

void fs_find_mapped_writes(struct fs *fs)
{
	struct node **v;
	size_t count = 0, i = 0;

	if (!fs->o.kernel_writes)
		return;
	pthread_mutex_lock(&fs->ns.lock);
	for (struct node *n = fs->ns.all; n; n = n->all_next)
		count += may_hold_mapped_writes(fs, n);
	v = malloc((count ? count : 1) * sizeof(*v));
	for (struct node *n = fs->ns.all; v && n && i < count; n = n->all_next)
		if (may_hold_mapped_writes(fs, n)) {
			ns_pin(n);
			v[i++] = n;
		}
	pthread_mutex_unlock(&fs->ns.lock);
	for (size_t k = 0; v && k < i; k++) {
		find_mapped_writes_of(fs, v[k]);
		pthread_mutex_lock(&fs->ns.lock);
		ns_unpin(&fs->ns, v[k]);
		pthread_mutex_unlock(&fs->ns.lock);
	}
	free(v);
}

void fs_data_changed_locked(struct fs *fs, struct node *n)
{
	fs_notice_kernel_writes(fs, n);
	n->flags |= N_DIRTY;
	n->file->wgen++;
	/*
	 * With the writeback cache the kernel keeps mtime and ctime itself
	 * and sends them (SETATTR) with its writes: a WRITE that arrives
	 * late must not stamp a later time than the one programs saw.
	 */
	if (fs->o.kernel_times)
		n->flags |= N_META_DIRTY;
	else
		fs_touch_mc(n);
}

void fs_truncated_locked(struct fs *fs, struct node *n, bool changed)
{
	if (!fs->o.kernel_times) {
		fs_notice_kernel_writes(fs, n);
		n->flags |= N_DIRTY;
		fs_touch_mc(n);
	} else if (changed) {
		/* the kernel sends the times in the same SETATTR */
		n->flags |= N_DIRTY;
	}
}

void fs_write_refused(struct fs *fs, struct node *n, uint64_t end)
{
	/*
	 * The kernel's writeback cache already told the writer yes and
	 * counts the file this long; it reports the ENOSPC at fsync or
	 * close. Keep the sizes agreeing with a hole, which costs no
	 * memory, so that SOURCE gets the length programs saw; but only
	 * ever longer: a refused write inside the file changes nothing.
	 */
	uint64_t size;

	if (!fs->o.kernel_times)
		return;
	pthread_mutex_lock(&n->io);
	if (img_size(&n->file->img, &size) == 0 && end > size)
		img_truncate(&n->file->img, end);
	pthread_mutex_unlock(&n->io);
}

void fs_image_loaded(struct fs *fs, struct img *im)
{
	/* the kernel will write it without us: know what it was */
	if (fs->o.kernel_writes || fs->o.kernel_writes_wanted)
		img_sums_take(im);
}
