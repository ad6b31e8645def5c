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

/* mkdir -p of every parent of root/rel, mode 0700. */
static int make_parents(const char *root, const char *rel)
{
	char *p;
	int err = 0;

	if (asprintf(&p, "%s/%s", root, rel) < 0)
		return -ENOMEM;
	for (char *s = p + 1; *s && !err; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			err = -errno;
		*s = '/';
	}
	free(p);
	return err;
}

static int save(const char *root, const char *rel, int from, uint64_t size)
{
	char *p;
	int fd, err;

	err = make_parents(root, rel);
	if (err)
		return err;
	if (asprintf(&p, "%s/%s", root, rel) < 0)
		return -ENOMEM;
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	free(p);
	if (fd < 0)
		return -errno;
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
		img_size(&n->img, &size);
		err = rel ? save(dir, rel, n->img.fd, size) : -ENOMEM;
		if (err) {
			log_err("LOST: %s could not be written back nor "
				"rescued to %s: %s", rel ? rel : "a file", dir,
				strerror(-err));
			bad++;
		} else {
			log_err("%s could not be written back to SOURCE (%s); "
				"saved as %s/%s", rel, n->wb.note, dir, rel);
			saved++;
		}
		free(rel);
	}
	pthread_mutex_unlock(&fs->ns.lock);
	if (lost)
		*lost = bad;
	return saved;
}
