/*
 * data.c - file contents: loading on first open, read, write, truncate.
 *
 * A regular file from SOURCE is read whole into its image the first time
 * it is opened; until then its size and times come from SOURCE's stat.
 * Reads go to the image without any lock (the memfd is stable while a
 * handle is open); writes take the node's io mutex so that a write-back
 * sees whole writes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../backing/pin.h"
#include "../core/log.h"
#include "../core/ts.h"
#include "internal.h"

/* Open n's file in SOURCE, where it is now. n->io held. */
static int open_source(struct fs *fs, struct node *n, char **pathp)
{
	char *path;
	int fd;

	pthread_mutex_lock(&fs->replay_lock);
	pthread_mutex_lock(&fs->ns.lock);
	path = fs_source_path_locked(fs, n);
	pthread_mutex_unlock(&fs->ns.lock);
	/* Open under replay_lock (the path is right), read outside it. */
	/* never blocks, never opens a FIFO or device put in its place */
	fd = path ? src_open_data(&fs->src, path, O_RDONLY, NULL) : -ENOMEM;
	pthread_mutex_unlock(&fs->replay_lock);
	if (fd == -ELOOP)
		fd = -EIO; /* replaced by a symlink behind the mount */
	*pathp = path;
	return fd;
}

/*
 * Take the image a load job filled (ownership moves to n), and count the
 * room held for it (*held, then 0). n->io held, n not loaded.
 */
static void install(struct fs *fs, struct node *n, struct img *im,
		    const struct src_ident *id, uint64_t *held)
{
	pthread_mutex_lock(&fs->ns.lock);
	img_destroy(&n->img);
	n->img = *im;
	img_init(im, fs->o.page_size);
	n->ident = *id;
	n->size = id->size;
	n->flags |= N_LOADED;
	img_clear_dirty(&n->img);
	img_seen_now(&n->img);
	img_reserve(&n->img, id->size, fs->o.increment);
	ns_account(&fs->ns, n);
	fs->ns.mem_reserved -= *held;
	*held = 0;
	fs->stats.loads++;
	fs->stats.load_bytes += id->size;
	pthread_mutex_unlock(&fs->ns.lock);
}

/* Oldest use first. */
static int by_use(const void *a, const void *b)
{
	uint64_t ua = (*(struct node *const *)a)->last_use;
	uint64_t ub = (*(struct node *const *)b)->last_use;

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
		    S_ISREG(n->mode) && !n->nopen && !n->pins)
			v[count++] = n;
	qsort(v, count, sizeof(*v), by_use);
	for (i = 0; i < count && !room_for(fs, need); i++) {
		/* lock order is io, then ns: only take an idle image */
		if (pthread_mutex_trylock(&v[i]->io) != 0)
			continue;
		fs_notice_kernel_writes(fs, v[i]);
		if (!(v[i]->flags & N_DIRTY)) {
			log_debug("evicting a clean image of %llu bytes",
				  (unsigned long long)v[i]->img.accounted);
			fs_unload_locked(fs, v[i]);
			fs->stats.evictions++;
		}
		pthread_mutex_unlock(&v[i]->io);
	}
	free(v);
	return room_for(fs, need) ? 0 : -ENOSPC;
}

/*
 * Make room for `need` bytes and hold them until unreserve: the memory a
 * load or a write takes is counted only after it is there, and two of
 * them running at once must not both be given the same free room (the
 * private tmpfs, sized to the budget, would refuse the second).
 */
static int make_room(struct fs *fs, uint64_t need)
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

/*
 * A clean image whose file changed in SOURCE since it was loaded (a
 * write-back by another node, another program) is read again, so that
 * nobody is served stale bytes. n->io held, n has no other handle.
 * Returns 1 when the image was dropped, 0 when it is current, -ESTALE
 * when n's names moved to a new node (writeback-cache path).
 */
struct ident_job {
	struct fs_job job;	/* job.node: the file */
	struct src_ident id;
	int err;
};

static void ident_run(struct fs_job *j)
{
	struct ident_job *ij = (struct ident_job *)j;
	struct fs *fs = j->fs;
	char *path;

	pthread_mutex_lock(&fs->replay_lock);
	pthread_mutex_lock(&fs->ns.lock);
	path = fs_source_path_locked(fs, j->node);
	pthread_mutex_unlock(&fs->ns.lock);
	ij->err = path ? wb_ident(&fs->src, path, &ij->id) : -ENOMEM;
	pthread_mutex_unlock(&fs->replay_lock);
	free(path);
}

int fs_source_ident(struct fs *fs, struct node *n, struct src_ident *id)
{
	struct ident_job *ij = fs_job_new(fs, sizeof(*ij), n, ident_run, NULL);
	int err;

	if (!ij)
		return -ENOMEM;
	err = fs_job_run(fs, &ij->job);
	if (err)
		err = fs_job_failed(fs, n, "check for a newer version of");
	else if (!(err = ij->err))
		*id = ij->id;
	fs_job_put(&ij->job);
	return err;
}

static int drop_if_stale(struct fs *fs, struct node *n)
{
	struct src_ident now;
	int err;

	/* SOURCE hangs: serve what we have rather than wait again */
	if (fs_source_hangs(fs))
		return 0;
	err = fs_source_ident(fs, n, &now);
	if (err == -ENOENT) {
		pthread_mutex_lock(&fs->ns.lock);
		fs_notice_kernel_writes(fs, n);
		err = fs_drop_gone_locked(fs, n) ? -ESTALE : 0;
		pthread_mutex_unlock(&fs->ns.lock);
		return err; /* gone: dropped, or the mount's own to keep */
	}
	if (err || fs_same_file(&now, &n->ident))
		return 0; /* unanswered, or unchanged: keep ours */
	pthread_mutex_lock(&fs->ns.lock);
	fs_notice_kernel_writes(fs, n);
	if (n->flags & N_DIRTY) {
		pthread_mutex_unlock(&fs->ns.lock);
		return 0;
	}
	log_info("a file changed in SOURCE; loading it again");
	if (fs->o.kernel_times) {
		/*
		 * The kernel's writeback cache trusts the size it knows of
		 * this inode over ours: give the names a new node, and have
		 * the open fail with ESTALE, on which the kernel looks the
		 * name up again and opens the new one.
		 */
		struct node *fresh = ns_rebirth(&fs->ns, n);

		if (fresh) {
			fresh->size = now.size;
			fresh->mtime = now.mtime;
			fs_hlink_moved(fs, n, fresh);
			pthread_mutex_unlock(&fs->ns.lock);
			return -ESTALE;
		}
	}
	fs_unload_locked(fs, n);
	n->size = now.size;
	pthread_mutex_unlock(&fs->ns.lock);
	return 1;
}

struct load_job {
	struct fs_job job;	/* job.node: the file */
	int flags;		/* of the open */
	/* results */
	int err;
	int fd;			/* SOURCE's file, kept when `direct` */
	bool direct;		/* larger than the budget: serve from fd */
	struct img img;		/* the loaded image */
	struct src_ident id;
	uint64_t held;		/* room make_room holds for it */
};

/*
 * Read n's file from SOURCE into a new image of the job's own: a caller
 * that gave up waiting leaves nothing half-loaded in n.
 */
static void load_run(struct fs_job *j)
{
	struct load_job *lj = (struct load_job *)j;
	struct fs *fs = j->fs;
	char *path = NULL;
	struct stat st;
	int err;

	lj->fd = open_source(fs, j->node, &path);
	if (lj->fd < 0) {
		err = lj->fd;
		log_warn("cannot load %s from SOURCE: %s", path ? path : "",
			 strerror(-err));
		goto out;
	}
	err = fstat(lj->fd, &st) < 0 ? -errno : 0;
	if (!err && (uint64_t)st.st_size > fs->o.max_memory) {
		/* larger than the whole budget: never in memory */
		if ((lj->flags & O_ACCMODE) != O_RDONLY) {
			log_err("%s (%llu bytes) is larger than max_memory; "
				"it can only be opened read-only", path,
				(unsigned long long)st.st_size);
			err = -ENOSPC;
		} else {
			lj->direct = true;
		}
		goto out;
	}
	if (!err)
		err = make_room(fs, (uint64_t)st.st_size);
	if (err) {
		log_err("no room in max_memory to load %s (%llu bytes)", path,
			(unsigned long long)st.st_size);
		goto out;
	}
	lj->held = (uint64_t)st.st_size;
	err = src_load_fd(lj->fd, &lj->img, &lj->id);
	if (!err && fs->o.kernel_writes)
		img_sums_take(&lj->img);
	if (err)
		log_warn("cannot load %s from SOURCE: %s", path,
			 strerror(-err));
out:
	if (!lj->direct && lj->fd >= 0) {
		close(lj->fd);
		lj->fd = -1;
	}
	free(path);
	lj->err = err;
}

static void load_release(struct fs_job *j)
{
	struct load_job *lj = (struct load_job *)j;

	if (lj->fd >= 0)
		close(lj->fd);
	img_destroy(&lj->img);
	fs_unreserve(j->fs, lj->held); /* not installed: nothing counted */
}

/*
 * Bring n's content into memory, or decide to serve it from SOURCE.
 * n->io held. SOURCE gets o.source_timeout to answer (job.c).
 */
static int bring_in(struct fs *fs, struct node *n, int flags)
{
	struct load_job *lj = fs_job_new(fs, sizeof(*lj), n, load_run,
					 load_release);
	int err;

	if (!lj)
		return -ENOMEM;
	lj->flags = flags;
	lj->fd = -1;
	img_init(&lj->img, fs->o.page_size);
	pthread_mutex_lock(&fs->ns.lock);
	n->flags |= N_LOADING;
	pthread_mutex_unlock(&fs->ns.lock);
	err = fs_job_run(fs, &lj->job);
	if (err) {
		err = fs_job_failed(fs, n, "load");
	} else if (!(err = lj->err)) {
		if (lj->direct) {
			if (n->direct_fd < 0) {
				n->direct_fd = lj->fd;
				lj->fd = -1;
			}
		} else {
			install(fs, n, &lj->img, &lj->id, &lj->held);
		}
	}
	pthread_mutex_lock(&fs->ns.lock);
	n->flags &= ~(unsigned)N_LOADING;
	pthread_mutex_unlock(&fs->ns.lock);
	fs_job_put(&lj->job);
	return err;
}

int fs_open(struct fs *fs, struct node *n, int flags, bool *fresh)
{
	bool trunc = flags & O_TRUNC, first;
	int err = 0;

	if (fresh)
		*fresh = false;
	pthread_mutex_lock(&fs->ns.lock);
	if (n->flags & N_REBORN) { /* the kernel must look the name up */
		pthread_mutex_unlock(&fs->ns.lock);
		return -ESTALE;
	}
	first = n->nopen++ == 0;
	n->last_use = ++fs->use_clock;
	pthread_mutex_unlock(&fs->ns.lock);
	if (!S_ISREG(n->mode))
		return 0;
	pthread_mutex_lock(&n->io);
	if ((n->flags & N_LOADED) && first && !trunc && fs->has_source &&
	    (n->flags & N_FROM_SOURCE) && !(n->flags & N_DIRTY)) {
		err = drop_if_stale(fs, n);
		if (err > 0 && fresh)
			*fresh = true;
		if (err < 0) {
			pthread_mutex_unlock(&n->io);
			fs_close(fs, n);
			return err;
		}
		err = 0;
	}
	if (n->direct_fd >= 0 && (flags & O_ACCMODE) != O_RDONLY) {
		err = -ENOSPC; /* served from SOURCE: read-only */
	} else if (n->flags & N_LOADED) {
		if (trunc)
			err = img_truncate(&n->img, 0);
	} else if (trunc) {
		if (n->direct_fd >= 0) {
			close(n->direct_fd);
			n->direct_fd = -1;
		}
	} else if (n->direct_fd < 0) {
		err = bring_in(fs, n, flags);
		if (err == -ENOENT) {
			/* removed from SOURCE behind the mount? */
			pthread_mutex_lock(&fs->ns.lock);
			if (fs_drop_gone_locked(fs, n))
				err = -ESTALE;
			pthread_mutex_unlock(&fs->ns.lock);
		}
	}
	if (!err && trunc) {
		/* O_TRUNC: the old content is never needed, nor loaded */
		pthread_mutex_lock(&fs->ns.lock);
		n->flags |= N_LOADED | N_DIRTY;
		fs_touch_mc(n);
		ns_account(&fs->ns, n);
		pthread_mutex_unlock(&fs->ns.lock);
	}
	pthread_mutex_unlock(&n->io);
	if (!err && fs->o.kernel_writes && (flags & O_ACCMODE) != O_RDONLY) {
		/*
		 * The kernel writes these images itself and meets the
		 * budget's ENOSPC without asking us to evict: keep an eighth
		 * of it free for the writes to come, where clean images
		 * allow.
		 */
		pthread_mutex_lock(&fs->ns.lock);
		fs_make_room_locked(fs, fs->o.max_memory / 8);
		pthread_mutex_unlock(&fs->ns.lock);
	}
	if (err)
		fs_close(fs, n);
	return err;
}

void fs_unload_locked(struct fs *fs, struct node *n)
{
	uint64_t size = 0;

	if (n->flags & N_LOADED) {
		img_size(&n->img, &size);
		n->size = size;
	}
	fs->ns.mem_used -= n->img.accounted;
	img_destroy(&n->img);
	img_init(&n->img, fs->o.page_size);
	n->flags &= ~(unsigned)N_LOADED;
}

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

	if (!fs->o.kernel_writes || !S_ISREG(n->mode) ||
	    !(n->flags & N_LOADED))
		return;
	written = img_changed_behind(&n->img, &mtime, &atime);
	if (written) {
		/*
		 * The kernel stamps with its coarse clock, which can lag our
		 * CLOCK_REALTIME stamps: never let ctime go back.
		 */
		if (ts_before(mtime, n->ctime))
			mtime = n->ctime;
		n->mtime = n->ctime = mtime;
		n->flags |= N_DIRTY | N_META_DIRTY;
		n->wgen++;
	}
	/* read through passthrough (the image's atime moved) */
	if (atime.tv_nsec != UTIME_OMIT && atime_due(fs, n, atime))
		n->atime = atime;
}

/* Could n hold stores through a mapping that left no trace? ns.lock held. */
static bool may_hold_mapped_writes(const struct fs *fs, const struct node *n)
{
	return fs->o.kernel_writes && S_ISREG(n->mode) &&
	       (n->flags & N_LOADED) && !(n->flags & N_DIRTY) && n->img.sums;
}

/* Compare n's page checksums; mark n dirty when a page changed. */
static void find_mapped_writes_of(struct fs *fs, struct node *n)
{
	pthread_mutex_lock(&n->io);
	if (img_sums_mark(&n->img, NULL, NULL) == 0 &&
	    img_dirty_pages(&n->img)) {
		pthread_mutex_lock(&fs->ns.lock);
		n->flags |= N_DIRTY;
		n->wgen++;
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

char **fs_open_paths(struct fs *fs)
{
	size_t count = 0, i = 0;
	char **v;
	struct node *n;

	pthread_mutex_lock(&fs->ns.lock);
	for (n = fs->ns.all; n; n = n->all_next)
		count += S_ISREG(n->mode) && n->nopen && n->links;
	v = calloc(count + 1, sizeof(*v));
	for (n = fs->ns.all; v && n && i < count; n = n->all_next) {
		bool unlinked;

		if (S_ISREG(n->mode) && n->nopen && n->links &&
		    (v[i] = ns_path(&fs->ns, n, &unlinked)))
			i++;
	}
	pthread_mutex_unlock(&fs->ns.lock);
	return v;
}

int fs_close(struct fs *fs, struct node *n)
{
	int id = 0;

	pthread_mutex_lock(&fs->ns.lock);
	fs_notice_kernel_writes(fs, n);
	n->last_use = ++fs->use_clock;
	if (--n->nopen == 0) {
		id = n->kernel_id;
		n->kernel_id = 0;
		if (n->direct_fd >= 0) {
			close(n->direct_fd);
			n->direct_fd = -1;
		}
	}
	ns_maybe_free(&fs->ns, n);
	pthread_mutex_unlock(&fs->ns.lock);
	return id;
}

int fs_kernel_handle(struct fs *fs, struct node *n,
		     int (*reg)(void *arg, int fd), void *arg)
{
	int id, err;

	pthread_mutex_lock(&n->io);
	pthread_mutex_lock(&fs->ns.lock);
	id = n->kernel_id;
	pthread_mutex_unlock(&fs->ns.lock);
	if (!id) {
		/* a file served from SOURCE is backed by SOURCE's file */
		err = n->direct_fd >= 0 ? 0 : img_open(&n->img);
		id = err ? err : reg(arg, n->direct_fd >= 0 ? n->direct_fd
							 : n->img.fd);
		if (id > 0) {
			pthread_mutex_lock(&fs->ns.lock);
			n->kernel_id = id;
			pthread_mutex_unlock(&fs->ns.lock);
		}
	}
	pthread_mutex_unlock(&n->io);
	return id;
}

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

int fs_read(struct fs *fs, struct node *n, void *buf, size_t size,
	    uint64_t off, size_t *done)
{
	(void)fs;
	if (n->direct_fd >= 0) {
		ssize_t r = pread(n->direct_fd, buf, size, (off_t)off);

		if (r < 0)
			return -errno;
		*done = (size_t)r;
		return 0;
	}
	return img_read(&n->img, buf, size, off, done);
}

/*
 * After data changed: mark dirty, stamp times. With the kernel's
 * writeback cache the kernel keeps mtime and ctime itself and sends
 * them (SETATTR) with its writes: a WRITE that arrives late must not
 * stamp a later time than the one programs saw. `held`: the room
 * fs_reserve held for the write, counted now.
 */
static void wrote(struct fs *fs, struct node *n, uint64_t held)
{
	pthread_mutex_lock(&fs->ns.lock);
	fs_notice_kernel_writes(fs, n);
	n->flags |= N_DIRTY;
	n->wgen++;
	if (fs->o.kernel_times)
		n->flags |= N_META_DIRTY;
	else
		fs_touch_mc(n);
	ns_account(&fs->ns, n);
	fs->ns.mem_reserved -= held;
	pthread_mutex_unlock(&fs->ns.lock);
}

int fs_reserve(struct fs *fs, struct node *n, uint64_t off, uint64_t len,
	       uint64_t *held)
{
	uint64_t need;

	*held = 0;
	if (n->direct_fd >= 0)
		return -EBADF; /* opened read-only: the kernel checks first */
	/* memory the write can take, not its end: a far write is a hole */
	need = img_new_bytes(&n->img, off, len);
	if (!need || make_room(fs, need) == 0) {
		*held = need;
		return 0;
	}
	/*
	 * Refused. The kernel's writeback cache already told the writer
	 * yes and counts the file this long; it reports the ENOSPC at
	 * fsync or close. Keep the sizes agreeing with a hole, which costs
	 * no memory, so that SOURCE gets the length programs saw.
	 */
	if (fs->o.kernel_times) {
		pthread_mutex_lock(&n->io);
		img_truncate(&n->img, off + len);
		pthread_mutex_unlock(&n->io);
	}
	return -ENOSPC;
}

int fs_write(struct fs *fs, struct node *n, const void *buf, size_t size,
	     uint64_t off)
{
	int err;

	pthread_mutex_lock(&n->io);
	err = img_write(&n->img, buf, size, off, fs->o.increment);
	pthread_mutex_unlock(&n->io);
	if (!err)
		wrote(fs, n, 0);
	return err;
}

int fs_data_fd(struct fs *fs, struct node *n)
{
	int err;

	if (n->direct_fd >= 0)
		return n->direct_fd; /* stable while a handle is open */
	pthread_mutex_lock(&n->io);
	err = img_open(&n->img);
	pthread_mutex_unlock(&n->io);
	(void)fs;
	return err ? err : n->img.fd;
}

int fs_wrote(struct fs *fs, struct node *n, uint64_t off, uint64_t len,
	     uint64_t held)
{
	int err;

	pthread_mutex_lock(&n->io);
	err = img_mark_dirty(&n->img, off, len);
	img_reserve(&n->img, off + len, fs->o.increment);
	pthread_mutex_unlock(&n->io);
	if (!err)
		wrote(fs, n, held);
	else
		fs_unreserve(fs, held);
	return err;
}

int fs_lseek(struct fs *fs, struct node *n, off_t off, int whence,
	     off_t *out)
{
	uint64_t size;
	off_t r;
	int err;

	(void)fs;
	if (n->img.fd < 0) {
		/* an empty image: all one hole of size 0 */
		err = img_size(&n->img, &size);
		if (err)
			return err;
		return -ENXIO;
	}
	r = lseek(n->img.fd, off, whence);
	if (r < 0)
		return -errno;
	*out = r;
	return 0;
}

int fs_fallocate(struct fs *fs, struct node *n, int mode, off_t off,
		 off_t len)
{
	int err;

	if (off < 0 || len <= 0)
		return -EINVAL;
	pthread_mutex_lock(&n->io);
	err = img_open(&n->img);
	if (!err && fallocate(n->img.fd, mode, off, len) < 0)
		err = -errno;
	if (!err)
		err = img_mark_dirty(&n->img, (uint64_t)off, (uint64_t)len);
	pthread_mutex_unlock(&n->io);
	if (!err)
		wrote(fs, n, 0);
	return err;
}
