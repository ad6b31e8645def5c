/*
 * sync.c - write-back passes: fsync of one file, and the pass over the
 * whole mount (commit thread, sync command, the end of the mount).
 *
 * Write-back order: replay the journal (SOURCE's namespace becomes the
 * mount's, replay.c), write every dirty file atomically, then metadata,
 * deepest directories last, so that directory times end as the mount
 * shows them (wbfile.c). One pass at a time (sync_lock); since only a
 * pass replays the journal, SOURCE's namespace holds still while a pass
 * writes files.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static bool writes_source(const struct fs *fs)
{
	return fs->has_source && !fs->o.volatile_;
}

/*
 * Out of descriptors or memory (as many loaded files as RLIMIT_NOFILE
 * allows, a huge journal): give back the spares and clean images, and
 * try once more; nothing is half done by the failed try (the file stays
 * dirty, the journal keeps the operation).
 */
static int with_room(struct fs *fs, struct node *n,
		     int (*fn)(struct fs *fs, struct node *n))
{
	int err = fn(fs, n);

	if (fs_out_of_room(err) && fs_fds_free(fs, true, false)) {
		err = fn(fs, n);
		fs_spares_take(fs);
	}
	return err;
}

static int replay_all(struct fs *fs, struct node *unused)
{
	(void)unused;
	return fs_replay_all(fs);
}

int fs_fsync(struct fs *fs, struct node *n)
{
	int err;

	if (!writes_source(fs))
		return 0;
	pthread_mutex_lock(&fs->sync_lock);
	err = with_room(fs, NULL, replay_all);
	pthread_mutex_lock(&fs->ns.lock);
	fs_notice_kernel_writes(fs, n);
	pthread_mutex_unlock(&fs->ns.lock);
	fs_find_mapped_writes_in(fs, n); /* stores through a mapping */
	if (!err && S_ISREG(n->mode) && (n->flags & N_DIRTY))
		err = with_room(fs, n, fs_write_file);
	if (err == FS_WB_CONFLICT)
		err = -EIO;
	if (!err)
		err = with_room(fs, n, fs_write_meta);
	if (err == FS_WB_CONFLICT)
		err = -EIO; /* metadata kept, SOURCE's entry is not ours */
	pthread_mutex_unlock(&fs->sync_lock);
	return err;
}

static unsigned depth(const struct node *n)
{
	unsigned d = 0;

	while (n->links) {
		d++;
		n = n->links->dir;
	}
	return d;
}

/* Pin every node with one of `flags` set. ns.lock held. */
static struct node **collect(struct fs *fs, unsigned flags, size_t *count)
{
	struct node **v, *n;
	size_t i = 0, cap = 0;

	for (n = fs->ns.all; n; n = n->all_next)
		cap += (n->flags & flags) != 0;
	v = malloc((cap ? cap : 1) * sizeof(*v));
	if (!v)
		return NULL;
	for (n = fs->ns.all; n && i < cap; n = n->all_next) {
		if (n->flags & flags) {
			ns_pin(n);
			v[i++] = n;
		}
	}
	*count = i;
	return v;
}

static int by_depth_desc(const void *a, const void *b)
{
	unsigned da = depth(*(struct node *const *)a);
	unsigned db = depth(*(struct node *const *)b);

	return da < db ? 1 : da > db ? -1 : 0;
}

static void release(struct fs *fs, struct node **v, size_t count)
{
	pthread_mutex_lock(&fs->ns.lock);
	for (size_t i = 0; i < count; i++)
		ns_unpin(&fs->ns, v[i]);
	pthread_mutex_unlock(&fs->ns.lock);
	free(v);
}

int fs_sync_all(struct fs *fs, unsigned *failed)
{
	struct node **v;
	size_t count = 0;
	unsigned bad = 0;
	int err, first = 0;

	if (failed)
		*failed = 0;
	if (!writes_source(fs))
		return 0;
	pthread_mutex_lock(&fs->sync_lock);
	fs_find_mapped_writes(fs);
	err = with_room(fs, NULL, replay_all);
	if (err) {
		first = err;
		bad++;
	}
	pthread_mutex_lock(&fs->ns.lock);
	for (struct node *n = fs->ns.all; n; n = n->all_next)
		fs_notice_kernel_writes(fs, n);
	v = collect(fs, N_DIRTY, &count);
	pthread_mutex_unlock(&fs->ns.lock);
	for (size_t i = 0; v && i < count; i++) {
		if (!S_ISREG(v[i]->mode))
			continue;
		err = with_room(fs, v[i], fs_write_file);
		if (err == FS_WB_CONFLICT)
			err = 0; /* durable beside the other version */
		if (err && !first)
			first = err;
		bad += err != 0;
	}
	if (v)
		release(fs, v, count);
	pthread_mutex_lock(&fs->ns.lock);
	v = collect(fs, N_META_DIRTY, &count);
	pthread_mutex_unlock(&fs->ns.lock);
	if (v) {
		pthread_mutex_lock(&fs->ns.lock);
		qsort(v, count, sizeof(*v), by_depth_desc);
		pthread_mutex_unlock(&fs->ns.lock);
		for (size_t i = 0; i < count; i++) {
			err = with_room(fs, v[i], fs_write_meta);
			if (err == FS_WB_CONFLICT)
				err = 0; /* reported; SOURCE's entry is not ours */
			if (err && !first)
				first = err;
			bad += err != 0;
		}
		release(fs, v, count);
	}
	pthread_mutex_unlock(&fs->sync_lock);
	if (!v && !first)
		first = -ENOMEM;
	if (failed)
		*failed = bad;
	return first;
}

int fs_sync_last(struct fs *fs, unsigned *failed)
{
	pthread_mutex_lock(&fs->ns.lock);
	fs->ending = true;
	pthread_mutex_unlock(&fs->ns.lock);
	return fs_sync_all(fs, failed);
}
