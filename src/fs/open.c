/*
 * open.c - opening and closing files: a regular file from SOURCE is read
 * into its image the first time it is opened (in a SOURCE helper,
 * job.c), whole, or under load=lazy as a partial image that fills in
 * while it is used (lazy.c, loader.c); until then its size and times
 * come from SOURCE's stat. A clean image whose file changed in SOURCE is
 * loaded again. Reads and writes of open files are in data.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/log.h"
#include "../core/ts.h"
#include "../backing/pin.h"
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
		    const struct src_ident *id, uint64_t *held,
		    struct fs_lazy **lz)
{
	pthread_mutex_lock(&fs->ns.lock);
	img_destroy(&n->file->img);
	n->file->img = *im;
	img_init(im, fs->o.page_size);
	if (*lz) {
		/* charged now what it will hold, as a whole load is */
		n->file->img.floor = *held;
		fs_lazy_install_locked(fs, n, *lz);
		*lz = NULL;
		fs->stats.lazy_loads++;
	}
	n->ident = *id;
	n->size = id->size;
	n->flags |= N_LOADED;
	img_clear_dirty(&n->file->img);
	img_seen_now(&n->file->img);
	img_reserve(&n->file->img, id->size, fs->o.increment);
	ns_account(&fs->ns, n);
	fs->ns.mem_reserved -= *held;
	*held = 0;
	fs->stats.loads++;
	fs->stats.load_bytes += id->size;
	pthread_mutex_unlock(&fs->ns.lock);
}

/*
 * A clean image whose file changed in SOURCE since it was loaded (a
 * write-back by another node, another program) is read again, so that
 * nobody is served stale bytes (checked at every open; with other
 * handles open, see drop_if_stale). n->io held. Returns 1 when the image
 * was dropped, 0 when it is current or kept, -ESTALE when n's names
 * moved to a new node (writeback-cache path).
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

int fs_source_ident(struct fs *fs, struct node *n, struct src_ident *id,
		    bool optional)
{
	struct ident_job *ij = fs_job_new(fs, sizeof(*ij), n, ident_run, NULL);
	int err;

	if (!ij)
		return -ENOMEM;
	ij->job.optional = optional;
	err = fs_job_run(fs, &ij->job);
	if (err && optional)
		log_info("SOURCE did not answer within %u ms: a file is "
			 "opened without checking for a newer version",
			 FS_OPTIONAL_MS);
	else if (err)
		err = fs_job_failed(&ij->job, "check for a newer version of");
	else if (!(err = ij->err))
		*id = ij->id;
	fs_job_put(&ij->job);
	return err;
}

/*
 * Another handle of n counts as open (alone false): if it is one whose
 * RELEASE the kernel queued before this open but no worker had counted
 * yet (fs_release_seen), it ends in moments. Wait for that, a little:
 * true when this open is the only one now. ns.lock held.
 */
#define ALONE_WAIT_MS 200

static bool wait_alone_locked(struct fs *fs, struct node *n)
{
	struct timespec until = ts_in_ms(CLOCK_REALTIME, ALONE_WAIT_MS);

	while (n->nopen > 1 &&
	       pthread_cond_timedwait(&fs->released, &fs->ns.lock,
				      &until) != ETIMEDOUT)
		;
	return n->nopen <= 1;
}

/*
 * Drop n's clean image if its file changed in SOURCE (see above). With
 * other handles open (alone false) it is kept, unless they turn out to
 * be closed already (wait_alone_locked).
 */
static int drop_if_stale(struct fs *fs, struct node *n, bool alone)
{
	struct src_ident now;
	char *path;
	int err;

	/* SOURCE hangs: serve what we have rather than wait again */
	if (fs_source_hangs(fs))
		return 0;
	err = fs_source_ident(fs, n, &now, true);
	if (err == -ENOENT && !alone)
		return 0; /* others hold it: theirs to keep */
	if (err == -ENOENT) {
		pthread_mutex_lock(&fs->ns.lock);
		fs_notice_kernel_writes(fs, n);
		err = fs_drop_gone_locked(fs, n) ? -ESTALE : 0;
		pthread_mutex_unlock(&fs->ns.lock);
		return err; /* gone: dropped, or the mount's own to keep */
	}
	if (err || fs_same_file(&now, &n->ident, !(n->flags & N_SRC_MOVED)))
		return 0; /* unanswered, or unchanged: keep ours */
	pthread_mutex_lock(&fs->ns.lock);
	if (!alone && (n->file->kernel_old || !wait_alone_locked(fs, n))) {
		pthread_mutex_unlock(&fs->ns.lock);
		return 0; /* others read this image: keep it for them */
	}
	if (!fs_image_clean_locked(fs, n)) {
		pthread_mutex_unlock(&fs->ns.lock);
		return 0; /* ours changed: written back, as a conflict */
	}
	path = fs_log_path_locked(fs, n);
	log_info("%s changed in SOURCE; loading it again", fs_named(path));
	free(path);
	if (fs_kernel_keeps_times(fs)) {
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
	/* the kernel knows the old image by an id: not for the new one */
	n->file->kernel_old = n->file->kernel_id;
	n->file->kernel_id = 0;
	fs_unload_locked(fs, n);
	n->size = now.size;
	pthread_mutex_unlock(&fs->ns.lock);
	return 1;
}

struct load_job {
	struct fs_job job;	/* job.node: the file */
	int flags;		/* of the open */
	bool whole;		/* load it all now, even under load=lazy */
	/* results */
	int err;
	int fd;			/* SOURCE's file, kept when `direct` */
	bool direct;		/* larger than the budget: serve from fd */
	struct img img;		/* the loaded image */
	struct src_ident id;
	uint64_t held;		/* room fs_hold_room holds for it */
	struct fs_lazy *lz;	/* a partial image: what it lacks */
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
	uint64_t need = 0;
	int err;

	lj->fd = open_source(fs, j->node, &path);
	if (lj->fd < 0) {
		err = lj->fd;
		log_warn("cannot load %s from SOURCE: %s", path ? path : "",
			 strerror(-err));
		goto out;
	}
	err = fstat(lj->fd, &st) < 0 ? -errno : 0;
	/*
	 * What the image will hold: the file's allocated blocks (holes stay
	 * holes), never more than its size; its size where the filesystem
	 * reports no blocks at all (some FUSE ones do).
	 */
	need = (uint64_t)st.st_blocks * 512;
	if (!err && (need > (uint64_t)st.st_size || !st.st_blocks))
		need = (uint64_t)st.st_size;
	if (!err && need > fs->o.max_memory) {
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
	if (!err && (err = fs_hold_room(fs, need)) == 0) {
		lj->held = need;
		if (!lj->whole && fs->o.lazy &&
		    (uint64_t)st.st_size > FS_LAZY_MIN && S_ISREG(st.st_mode)) {
			/* open now, fill in later: the fd goes to lz */
			err = fs_lazy_make(lj->fd, &st, &lj->img, &lj->lz);
			if (!err) {
				src_ident_from_stat(&lj->id, &st);
				lj->fd = -1;
			}
		} else {
			err = src_load_fd(lj->fd, &lj->img, &lj->id);
		}
		if (err == -ENOSPC) {
			/*
			 * The private tmpfs is full though the count said
			 * otherwise (the kernel's own writes on the
			 * passthrough path are counted later).
			 */
			img_destroy(&lj->img);
			img_init(&lj->img, fs->o.page_size);
			fs_unreserve(fs, lj->held);
			lj->held = 0;
		}
	}
	if (err == -ENOSPC && (lj->flags & O_ACCMODE) == O_RDONLY) {
		/* the budget is full of unsaved data: read SOURCE's file */
		log_info("no room in max_memory for %s (%llu bytes): served "
			 "from SOURCE, read-only", path,
			 (unsigned long long)st.st_size);
		lj->direct = true;
		err = 0;
	} else if (err == -ENOSPC) {
		log_err("no room in max_memory (%llu bytes) to load %s "
			"(%llu bytes) for writing: it is held by images with "
			"unsaved changes or open (h5memfs status lists them; "
			"sync or close them, or raise max_memory)",
			(unsigned long long)fs->o.max_memory, path,
			(unsigned long long)st.st_size);
	} else if (err) {
		log_warn("cannot load %s from SOURCE: %s", path,
			 strerror(-err));
	} else if (!lj->lz) {
		fs_image_loaded(fs, &lj->img);
	}
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
	fs_lazy_put(lj->lz); /* not installed */
	img_destroy(&lj->img);
	fs_unreserve(j->fs, lj->held); /* not installed: nothing counted */
}

/*
 * Bring n's content into memory, or decide to serve it from SOURCE.
 * n->io held. SOURCE gets o.source_timeout to answer (job.c).
 */
static int bring_in_once(struct fs *fs, struct node *n, int flags,
			 bool whole)
{
	struct load_job *lj = fs_job_new(fs, sizeof(*lj), n, load_run,
					 load_release);
	int err;

	if (!lj)
		return -ENOMEM;
	lj->flags = flags;
	lj->whole = whole;
	lj->fd = -1;
	img_init(&lj->img, fs->o.page_size);
	pthread_mutex_lock(&fs->ns.lock);
	n->flags |= N_LOADING;
	pthread_mutex_unlock(&fs->ns.lock);
	err = fs_job_run(fs, &lj->job);
	if (err) {
		err = fs_job_failed(&lj->job, "load");
	} else if (!(err = lj->err)) {
		if (lj->direct) {
			if (n->file->direct_fd < 0) {
				n->file->direct_fd = lj->fd;
				lj->fd = -1;
			}
		} else {
			install(fs, n, &lj->img, &lj->id, &lj->held,
				&lj->lz);
		}
	}
	pthread_mutex_lock(&fs->ns.lock);
	n->flags &= ~(unsigned)N_LOADING;
	pthread_mutex_unlock(&fs->ns.lock);
	fs_job_put(&lj->job);
	return err;
}

static int bring_in(struct fs *fs, struct node *n, int flags, bool whole)
{
	int err = bring_in_once(fs, n, flags, whole);

	/* out of descriptors: clean images give theirs, never the spares */
	if (fs_out_of_room(err) && fs_fds_free(fs, false, false))
		err = bring_in_once(fs, n, flags, whole);
	return err;
}

void fs_release_seen(struct node *n)
{
	__atomic_add_fetch(&n->releasing, 1, __ATOMIC_RELAXED);
}

/* RELEASEs of n read before this open end first. ns.lock held. */
static void after_releases_locked(struct fs *fs, struct node *n)
{
	struct timespec until;

	if (!__atomic_load_n(&n->releasing, __ATOMIC_RELAXED))
		return;
	/* they take no SOURCE call: never that long */
	until = ts_in_ms(CLOCK_REALTIME, 1000);
	while (__atomic_load_n(&n->releasing, __ATOMIC_RELAXED) &&
	       pthread_cond_timedwait(&fs->released, &fs->ns.lock,
				      &until) != ETIMEDOUT)
		;
}

int fs_open_how(struct fs *fs, struct node *n, int flags, bool *fresh,
		bool whole)
{
	bool trunc = flags & O_TRUNC, first;
	int err = 0;

	if (fresh)
		*fresh = false;
	pthread_mutex_lock(&fs->ns.lock);
	after_releases_locked(fs, n);
	if (n->flags & N_REBORN) { /* the kernel must look the name up */
		pthread_mutex_unlock(&fs->ns.lock);
		return -ESTALE;
	}
	first = n->nopen++ == 0;
	++fs->use_clock;
	if (n->file)
		n->file->last_use = fs->use_clock;
	pthread_mutex_unlock(&fs->ns.lock);
	if (!S_ISREG(n->mode))
		return 0;
	err = fs_io_lock_for_open(fs, n);
	if (err) {
		fs_close(fs, n);
		return err;
	}
	if ((n->flags & N_LOADED) && !trunc && fs->has_source &&
	    (n->flags & N_FROM_SOURCE) && !(n->flags & N_DIRTY)) {
		err = drop_if_stale(fs, n, first);
		if (err > 0 && fresh)
			*fresh = true;
		if (err < 0) {
			pthread_mutex_unlock(&n->io);
			fs_close(fs, n);
			return err;
		}
		err = 0;
	}
	if (n->file->direct_fd >= 0 && (flags & O_ACCMODE) != O_RDONLY) {
		err = -ENOSPC; /* served from SOURCE: read-only */
	} else if (n->flags & N_LOADED) {
		if (trunc)
			err = fs_lazy_truncate(fs, n, 0);
	} else if (trunc) {
		if (n->file->direct_fd >= 0) {
			close(n->file->direct_fd);
			n->file->direct_fd = -1;
		}
	} else if (n->file->direct_fd < 0) {
		err = bring_in(fs, n, flags, whole);
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
	if (!err && fs_kernel_writes(fs) && (flags & O_ACCMODE) != O_RDONLY) {
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

int fs_open(struct fs *fs, struct node *n, int flags, bool *fresh)
{
	return fs_open_how(fs, n, flags, fresh, !fs->o.lazy);
}

bool fs_kernel_open_begin(struct fs *fs, struct node *n, bool *first)
{
	bool pt;

	pthread_mutex_lock(&fs->ns.lock);
	/*
	 * The kernel refuses cached and passthrough handles of one inode at
	 * once (EIO): while a partial image is read through the daemon, or
	 * any handle is, new ones are too.
	 */
	pt = !n->file->lazy && !n->file->cached_opens;
	*first = !n->file->cached_opens;
	if (!pt)
		n->file->cached_opens++;
	pthread_mutex_unlock(&fs->ns.lock);
	return pt;
}

void fs_cached_open(struct fs *fs, struct node *n)
{
	pthread_mutex_lock(&fs->ns.lock);
	n->file->cached_opens++;
	pthread_mutex_unlock(&fs->ns.lock);
}

void fs_cached_close(struct fs *fs, struct node *n)
{
	pthread_mutex_lock(&fs->ns.lock);
	if (n->file && n->file->cached_opens)
		n->file->cached_opens--;
	pthread_mutex_unlock(&fs->ns.lock);
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

/* The end of a handle. ns.lock held. */
static int close_locked(struct fs *fs, struct node *n)
{
	int id = 0;

	fs_notice_kernel_writes(fs, n);
	++fs->use_clock;
	if (n->file)
		n->file->last_use = fs->use_clock;
	if (--n->nopen == 0 && n->file) {
		/* at most one is set: fs_kernel_handle takes kernel_old */
		id = n->file->kernel_id ? n->file->kernel_id
					: n->file->kernel_old;
		n->file->kernel_id = n->file->kernel_old = 0;
		if (n->file->direct_fd >= 0) {
			close(n->file->direct_fd);
			n->file->direct_fd = -1;
		}
	}
	ns_maybe_free(&fs->ns, n);
	return id;
}

int fs_release(struct fs *fs, struct node *n)
{
	int id;

	pthread_mutex_lock(&fs->ns.lock);
	__atomic_sub_fetch(&n->releasing, 1, __ATOMIC_RELAXED);
	id = close_locked(fs, n);
	pthread_cond_broadcast(&fs->released);
	pthread_mutex_unlock(&fs->ns.lock);
	return id;
}

int fs_close(struct fs *fs, struct node *n)
{
	int id;

	pthread_mutex_lock(&fs->ns.lock);
	id = close_locked(fs, n);
	pthread_mutex_unlock(&fs->ns.lock);
	return id;
}

int fs_kernel_handle(struct fs *fs, struct node *n,
		     int (*reg)(void *arg, int fd), void *arg, int *old)
{
	struct node_file *f = n->file;
	int id, err;

	*old = 0;
	if (!f)
		return -EINVAL; /* only regular files are opened */
	pthread_mutex_lock(&n->io);
	pthread_mutex_lock(&fs->ns.lock);
	id = f->kernel_id;
	pthread_mutex_unlock(&fs->ns.lock);
	if (!id) {
		/* a file served from SOURCE is backed by SOURCE's file */
		err = f->direct_fd >= 0 ? 0 : img_open(&f->img);
		if (!err)
			err = reg(arg, f->direct_fd >= 0 ? f->direct_fd
							 : f->img.fd);
		id = err;
		if (id > 0) {
			pthread_mutex_lock(&fs->ns.lock);
			f->kernel_id = id;
			*old = f->kernel_old;
			f->kernel_old = 0;
			pthread_mutex_unlock(&fs->ns.lock);
		}
	}
	pthread_mutex_unlock(&n->io);
	return id;
}
