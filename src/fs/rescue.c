/*
 * rescue.c - the last resort at the end of a mount: images that could
 * not be written back to SOURCE are copied to a rescue directory
 * outside it, at their path in the mount, so nothing is lost with the
 * daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/log.h"
#include "internal.h"

/* mkdir -p root, mode 0700. */
static void make_root(const char *root)
{
	char *p = strdup(root);

	for (char *s = p ? p + 1 : NULL; s && *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		mkdir(p, 0700);
		*s = '/';
	}
	if (p)
		mkdir(p, 0700);
	free(p);
}

/*
 * Create root/rel, making its parents (mode 0700) on the way, one
 * directory at a time, so that no path is longer than a name. Returns
 * an fd open for writing or -errno.
 */
static int create_at(const char *root, const char *rel)
{
	char *copy = strdup(rel), *name, *slash;
	int dirfd, fd;

	make_root(root);
	dirfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!copy || dirfd < 0) {
		fd = !copy ? -ENOMEM : -errno;
		goto out;
	}
	for (name = copy; (slash = strchr(name, '/')); name = slash + 1) {
		*slash = '\0';
		if (!*name)
			continue;
		if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST) {
			fd = -errno;
			goto out;
		}
		fd = openat(dirfd, name,
			    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			fd = -errno;
			goto out;
		}
		close(dirfd);
		dirfd = fd;
	}
	fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		    0600);
	if (fd < 0)
		fd = -errno;
out:
	if (dirfd >= 0)
		close(dirfd);
	free(copy);
	return fd;
}

static int save(const char *root, const char *rel, int from, uint64_t size)
{
	int fd = create_at(root, rel), err;

	if (fd < 0)
		return fd;
	err = from >= 0 ? src_copy_data(from, fd, size) : 0;
	if (!err && fsync(fd) < 0)
		err = -errno;
	close(fd);
	return err;
}

unsigned fs_rescue(struct fs *fs, const char *dir, unsigned *lost)
{
	unsigned saved = 0, bad = 0;
	bool made = false;

	pthread_mutex_lock(&fs->ns.lock);
	for (struct node *n = fs->ns.all; n; n = n->all_next) {
		uint64_t size = 0;
		bool unlinked;
		char *rel;
		int err;

		if (!S_ISREG(n->mode) || !(n->flags & N_DIRTY) || !n->links ||
		    (n->flags & N_VOLATILE))
			continue;
		if (!made) {
			made = true;
			if (mkdir(dir, 0700) < 0 && errno != EEXIST)
				log_err("cannot create rescue directory %s: %s",
					dir, strerror(errno));
		}
		rel = ns_path(&fs->ns, n, &unlinked);
		img_size(&n->file->img, &size);
		err = rel ? save(dir, rel, n->file->img.fd, size) : -ENOMEM;
		if (err) {
			log_err("LOST: %s could not be written back nor "
				"rescued to %s: %s", rel ? rel : "a file", dir,
				strerror(-err));
			bad++;
		} else {
			log_err("%s could not be written back to SOURCE (%s); "
				"saved as %s/%s", rel, fs_wb_result(n)->note, dir, rel);
			saved++;
		}
		free(rel);
	}
	pthread_mutex_unlock(&fs->ns.lock);
	if (lost)
		*lost = bad;
	return saved;
}
