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
 *   fs_find_mapped_writes compares page checksums, for stores through a
 *   mapping that leave no mtime; fs_image_loaded takes those checksums.
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

/* Could n hold stores through a mapping that left no trace? ns.lock held. */
static bool may_hold_mapped_writes(const struct fs *fs, const struct node *n)
{
	return fs->o.kernel_writes && S_ISREG(n->mode) &&
	       (n->flags & N_LOADED) && !(n->flags & N_DIRTY) &&
	       n->file->img.sums;
}

/* Compare n's page checksums; mark n dirty when a page changed. */
static void find_mapped_writes_of(struct fs *fs, struct node *n)
{
	pthread_mutex_lock(&n->io);
	if (img_sums_mark(&n->file->img, NULL, NULL) == 0 &&
	    img_dirty_pages(&n->file->img)) {
		pthread_mutex_lock(&fs->ns.lock);
		n->flags |= N_DIRTY;
		n->file->wgen++;
		pthread_mutex_unlock(&fs->ns.lock);
	}
	pthread_mutex_unlock(&n->io);
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
	if (fs->o.kernel_writes)
		img_sums_take(im);
}
