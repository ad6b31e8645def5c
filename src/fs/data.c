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

#include "../core/log.h"
#include "internal.h"

/* Load n from SOURCE; n->io held by the caller. */
static int load(struct fs *fs, struct node *n)
{
	struct src_ident id;
	char *path;
	int fd, err;

	pthread_mutex_lock(&fs->replay_lock);
	pthread_mutex_lock(&fs->ns.lock);
	path = fs_source_path_locked(fs, n);
	pthread_mutex_unlock(&fs->ns.lock);
	if (!path) {
		pthread_mutex_unlock(&fs->replay_lock);
		return -ENOMEM;
	}
	/* Open under replay_lock (the path is right), copy outside it. */
	fd = src_openat(&fs->src, path, O_RDONLY);
	pthread_mutex_unlock(&fs->replay_lock);
	if (fd < 0) {
		log_warn("cannot load %s from SOURCE: %s", path,
			 strerror(-fd));
		free(path);
		return fd == -ELOOP ? -EIO : fd;
	}
	err = src_load_fd(fd, &n->img, &id);
	close(fd);
	if (err) {
		log_warn("cannot load %s from SOURCE: %s", path,
			 strerror(-err));
		img_destroy(&n->img);
		img_init(&n->img, fs->o.page_size);
	}
	free(path);
	if (err)
		return err;
	if (fs->o.kernel_writes)
		err = img_sums_take(&n->img);
	if (err) {
		img_destroy(&n->img);
		img_init(&n->img, fs->o.page_size);
		return err;
	}
	pthread_mutex_lock(&fs->ns.lock);
	n->ident = id;
	n->flags |= N_LOADED;
	img_clear_dirty(&n->img);
	img_seen_now(&n->img);
	img_reserve(&n->img, id.size, fs->o.increment);
	fs->stats.loads++;
	fs->stats.load_bytes += id.size;
	pthread_mutex_unlock(&fs->ns.lock);
	return 0;
}

int fs_open(struct fs *fs, struct node *n, bool trunc)
{
	int err = 0;

	pthread_mutex_lock(&fs->ns.lock);
	n->nopen++;
	pthread_mutex_unlock(&fs->ns.lock);
	if (!S_ISREG(n->mode))
		return 0;
	pthread_mutex_lock(&n->io);
	if (n->flags & N_LOADED) {
		if (trunc)
			err = img_truncate(&n->img, 0);
	} else if (!trunc) {
		pthread_mutex_lock(&fs->ns.lock);
		n->flags |= N_LOADING;
		pthread_mutex_unlock(&fs->ns.lock);
		err = load(fs, n);
		pthread_mutex_lock(&fs->ns.lock);
		n->flags &= ~(unsigned)N_LOADING;
		pthread_mutex_unlock(&fs->ns.lock);
	}
	if (!err && trunc) {
		/* O_TRUNC: the old content is never needed, nor loaded */
		pthread_mutex_lock(&fs->ns.lock);
		n->flags |= N_LOADED | N_DIRTY;
		fs_touch_mc(n);
		pthread_mutex_unlock(&fs->ns.lock);
	}
	pthread_mutex_unlock(&n->io);
	if (err)
		fs_close(fs, n);
	return err;
}

void fs_unload_locked(struct fs *fs, struct node *n)
{
	uint64_t size = 0;

	img_size(&n->img, &size);
	n->size = size;
	img_destroy(&n->img);
	img_init(&n->img, fs->o.page_size);
	n->flags &= ~(unsigned)N_LOADED;
}

void fs_notice_kernel_writes(struct fs *fs, struct node *n)
{
	struct timespec mtime;

	if (!fs->o.kernel_writes || !S_ISREG(n->mode) ||
	    !(n->flags & N_LOADED))
		return;
	if (img_changed_behind(&n->img, &mtime)) {
		n->mtime = n->ctime = mtime;
		n->flags |= N_DIRTY | N_META_DIRTY;
	}
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
	if (--n->nopen == 0) {
		id = n->kernel_id;
		n->kernel_id = 0;
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
		err = img_open(&n->img);
		id = err ? err : reg(arg, n->img.fd);
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
	last = n->nopen <= 1 && (n->flags & N_DIRTY);
	pthread_mutex_unlock(&fs->ns.lock);
	return last ? fs_fsync(fs, n) : 0;
}

int fs_read(struct fs *fs, struct node *n, void *buf, size_t size,
	    uint64_t off, size_t *done)
{
	(void)fs;
	return img_read(&n->img, buf, size, off, done);
}

/* After data changed: stamp times, mark dirty. */
static void wrote(struct fs *fs, struct node *n)
{
	pthread_mutex_lock(&fs->ns.lock);
	fs_notice_kernel_writes(fs, n);
	n->flags |= N_DIRTY;
	fs_touch_mc(n);
	pthread_mutex_unlock(&fs->ns.lock);
}

int fs_write(struct fs *fs, struct node *n, const void *buf, size_t size,
	     uint64_t off)
{
	int err;

	pthread_mutex_lock(&n->io);
	err = img_write(&n->img, buf, size, off, fs->o.increment);
	pthread_mutex_unlock(&n->io);
	if (!err)
		wrote(fs, n);
	return err;
}

int fs_data_fd(struct fs *fs, struct node *n)
{
	int err;

	pthread_mutex_lock(&n->io);
	err = img_open(&n->img);
	pthread_mutex_unlock(&n->io);
	(void)fs;
	return err ? err : n->img.fd;
}

int fs_wrote(struct fs *fs, struct node *n, uint64_t off, uint64_t len)
{
	int err;

	pthread_mutex_lock(&n->io);
	err = img_mark_dirty(&n->img, off, len);
	img_reserve(&n->img, off + len, fs->o.increment);
	pthread_mutex_unlock(&n->io);
	if (!err)
		wrote(fs, n);
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
		wrote(fs, n);
	return err;
}
