/*
 * memory.c - the max_memory budget: what images take, room held for
 * loads and writes in progress, and eviction of clean images nobody
 * has open, least recently used first; and the descriptors kept spare
 * for write-back and rescue.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "../core/log.h"
#include "internal.h"

/* Oldest use first. */
static int by_use(const void *a, const void *b)
{
	uint64_t ua = (*(struct node *const *)a)->file->last_use;
	uint64_t ub = (*(struct node *const *)b)->file->last_use;

	return ua < ub ? -1 : ua > ub;
}

/* What the namespace counts against the budget. ns.lock held. */
static uint64_t meta_counted(const struct fs *fs)
{
	return fs->ns.meta_used > fs->meta_held ? fs->ns.meta_used
						: fs->meta_held;
}

uint64_t fs_budget_used_locked(const struct fs *fs)
{
	return fs->ns.mem_used + meta_counted(fs);
}

static bool room_for(const struct fs *fs, uint64_t need)
{
	return fs_budget_used_locked(fs) + fs->ns.mem_reserved + need <=
	       fs->o.max_memory;
}

/*
 * Evict clean images nobody has open, least recently used first, until
 * `need` more bytes fit and at least `want` were evicted. ns.lock held.
 * The number evicted, or -ENOMEM.
 */
static long evict(struct fs *fs, uint64_t need, size_t want)
{
	struct node **v, *n;
	size_t count = 0, i = 0, done = 0;

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
	for (i = 0; i < count && (!room_for(fs, need) || done < want); i++) {
		/* lock order is io, then ns: only take an idle image */
		if (pthread_mutex_trylock(&v[i]->io) != 0)
			continue;
		if (fs_image_clean_locked(fs, v[i])) {
			log_debug("evicting a clean image of %llu bytes",
				  (unsigned long long)
					  v[i]->file->img.accounted);
			fs_unload_locked(fs, v[i]);
			fs->stats.evictions++;
			done++;
		}
		pthread_mutex_unlock(&v[i]->io);
	}
	free(v);
	return (long)done;
}

int fs_make_room_locked(struct fs *fs, uint64_t need)
{
	if (room_for(fs, need))
		return 0;
	if (evict(fs, need, 0) < 0)
		return -ENOMEM;
	return room_for(fs, need) ? 0 : -ENOSPC;
}

/*
 * The namespace's room grows in steps of this much: small, so that the
 * first name made costs the images little; a resize of the tmpfs is
 * cheap (a million files of 400 bytes take some 6000 of them).
 */
#define META_STEP UINT64_C(65536)

int fs_meta_room_locked(struct fs *fs, uint64_t need)
{
	uint64_t want, step = META_STEP;
	int err;

	if (!fs->o.images_tmpfs)
		return fs_make_room_locked(fs, need);
	if (fs->ns.meta_used + need <= fs->meta_held)
		return 0;
	/*
	 * The kernel fills the private tmpfs without asking (passthrough):
	 * the namespace's room is taken from it, a step at a time, by
	 * shrinking it, which fails when its images already use the room.
	 */
	want = fs->ns.meta_used + need;
	want += step - want % step;
	if (want > fs->o.max_memory)
		return -ENOSPC;
	err = fs_make_room_locked(fs, want - meta_counted(fs));
	if (err)
		return err;
	if (img_store_resize(fs->o.max_memory - want) < 0)
		return -ENOSPC;
	fs->meta_held = want;
	return 0;
}

void fs_spares_take(struct fs *fs)
{
	pthread_mutex_lock(&fs->ns.lock);
	for (int i = 0; i < FS_FD_SPARE; i++)
		if (fs->spare_fd[i] < 0)
			fs->spare_fd[i] = open("/dev/null",
					       O_RDONLY | O_CLOEXEC);
	pthread_mutex_unlock(&fs->ns.lock);
}

bool fs_fds_free(struct fs *fs, bool spares, bool all)
{
	bool freed = false;

	pthread_mutex_lock(&fs->ns.lock);
	for (int i = 0; spares && i < FS_FD_SPARE; i++) {
		if (fs->spare_fd[i] >= 0) {
			close(fs->spare_fd[i]);
			fs->spare_fd[i] = -1;
			freed = true;
		}
	}
	/* clean images hold a descriptor and memory each */
	if (evict(fs, 0, all ? SIZE_MAX : FS_FD_SPARE) > 0)
		freed = true;
	pthread_mutex_unlock(&fs->ns.lock);
	if (freed)
		log_info("out of descriptors or memory: %s given back, "
			 "trying again", spares ? "spare descriptors and clean "
			 "images" : "clean images");
	return freed;
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
