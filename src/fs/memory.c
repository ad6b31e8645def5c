/*
 * memory.c - the max_memory budget: what images take, room held for
 * loads and writes in progress, and eviction of clean images nobody
 * has open, least recently used first.
 */
#include <errno.h>
#include <stdlib.h>

#include "../core/log.h"
#include "internal.h"

/* Oldest use first. */
static int by_use(const void *a, const void *b)
{
	uint64_t ua = (*(struct node *const *)a)->file->last_use;
	uint64_t ub = (*(struct node *const *)b)->file->last_use;

	return ua < ub ? -1 : ua > ub;
}

static bool room_for(const struct fs *fs, uint64_t need)
{
	return fs->ns.mem_used + fs->ns.mem_reserved + need <=
	       fs->o.max_memory;
}

int fs_make_room_locked(struct fs *fs, uint64_t need)
{
	struct node **v, *n;
	size_t count = 0, i = 0;

	if (room_for(fs, need))
		return 0;
	for (n = fs->ns.all; n; n = n->all_next)
		count += (n->flags & N_LOADED) != 0;
	v = malloc((count ? count : 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	count = 0;
	for (n = fs->ns.all; n; n = n->all_next)
		if ((n->flags & (N_LOADED | N_DIRTY | N_FROM_SOURCE |
				 N_LOADING)) == (N_LOADED | N_FROM_SOURCE) &&
		    S_ISREG(n->mode) && !n->nopen &&
		    /* a partial image's loader pin does not keep it */
		    n->pins <= (n->file->lazy ? 1u : 0u))
			v[count++] = n;
	qsort(v, count, sizeof(*v), by_use);
	for (i = 0; i < count && !room_for(fs, need); i++) {
		/* lock order is io, then ns: only take an idle image */
		if (pthread_mutex_trylock(&v[i]->io) != 0)
			continue;
		fs_notice_kernel_writes(fs, v[i]);
		if (!(v[i]->flags & N_DIRTY)) {
			log_debug("evicting a clean image of %llu bytes",
				  (unsigned long long)
					  v[i]->file->img.accounted);
			fs_unload_locked(fs, v[i]);
			fs->stats.evictions++;
		}
		pthread_mutex_unlock(&v[i]->io);
	}
	free(v);
	return room_for(fs, need) ? 0 : -ENOSPC;
}

int fs_hold_room(struct fs *fs, uint64_t need)
{
	int err;

	pthread_mutex_lock(&fs->ns.lock);
	err = fs_make_room_locked(fs, need);
	if (!err)
		fs->ns.mem_reserved += need;
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

void fs_unreserve(struct fs *fs, uint64_t held)
{
	if (!held)
		return;
	pthread_mutex_lock(&fs->ns.lock);
	fs->ns.mem_reserved -= held;
	pthread_mutex_unlock(&fs->ns.lock);
}

void fs_unload_locked(struct fs *fs, struct node *n)
{
	uint64_t size = 0;

	if (n->flags & N_LOADED) {
		img_size(&n->file->img, &size);
		n->size = size;
	}
	fs_lazy_drop_locked(fs, n);
	fs->ns.mem_used -= n->file->img.accounted;
	img_destroy(&n->file->img);
	img_init(&n->file->img, fs->o.page_size);
	n->flags &= ~(unsigned)N_LOADED;
}
