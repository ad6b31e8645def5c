/*
 * rescue.c - the last resort at the end of a mount: images that could
 * not be written back to SOURCE are copied to a rescue directory
 * outside it, at their path in the mount, so nothing is lost with the
 * daemon.
 *
 * The rescue directory must not be steerable by the users of the mount:
 * the default one is made fresh with mkdtemp inside a base directory
 * that only the daemon's user can write to, and every file and
 * directory in it is created exclusively (O_EXCL, O_NOFOLLOW), so no
 * name or symlink planted there beforehand is followed or overwritten;
 * a name taken already gets another, never loses the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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
	fd = openat(dirfd, name,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	for (int seq = 1; fd < 0 && errno == EEXIST && seq < 100; seq++) {
		char other[NAME_MAX + 1];

		/* taken (by an earlier rescue, or planted): another name */
		if (snprintf(other, sizeof(other), "%.200s.rescued-%d", name,
			     seq) >= (int)sizeof(other))
			break;
		fd = openat(dirfd, other, O_WRONLY | O_CREAT | O_EXCL |
						  O_NOFOLLOW | O_CLOEXEC,
			    0600);
	}
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

	/*
	 * A directory on the way that is not one (a file or symlink planted
	 * there) makes the file go to the top, its path flattened.
	 */
	if ((fd == -ENOTDIR || fd == -ELOOP) && strchr(rel, '/')) {
		char *flat = strdup(rel);

		for (char *c = flat; c && *c; c++)
			if (*c == '/')
				*c = '%';
		fd = flat && strlen(flat) <= NAME_MAX ? create_at(root, flat)
						       : fd;
		free(flat);
	}

	if (fd < 0)
		return fd;
	err = from >= 0 ? src_copy_data(from, fd, size) : 0;
	if (!err && fsync(fd) < 0)
		err = -errno;
	close(fd);
	return err;
}

/*
 * Partial images with changes are made whole before they are copied
 * (their missing blocks would read as zeros).
 */
static void complete_partial(struct fs *fs)
{
	struct node **v;
	size_t count = 0, i = 0;

	pthread_mutex_lock(&fs->ns.lock);
	for (struct node *n = fs->ns.all; n; n = n->all_next)
		count += n->file && n->file->lazy && (n->flags & N_DIRTY);
	v = count ? malloc(count * sizeof(*v)) : NULL;
	for (struct node *n = fs->ns.all; v && n && i < count; n = n->all_next)
		if (n->file && n->file->lazy && (n->flags & N_DIRTY)) {
			ns_pin(n);
			v[i++] = n;
		}
	pthread_mutex_unlock(&fs->ns.lock);
	for (size_t k = 0; k < i; k++) {
		int err;

		pthread_mutex_lock(&v[k]->io);
		err = fs_lazy_complete(fs, v[k]);
		pthread_mutex_unlock(&v[k]->io);
		pthread_mutex_lock(&fs->ns.lock);
		if (err) {
			char *path = fs_log_path_locked(fs, v[k]);

			log_err("%s was not all loaded from SOURCE (%s): its "
				"rescued copy has zeros where SOURCE's bytes "
				"were not read", fs_named(path), strerror(-err));
			free(path);
		}
		ns_unpin(&fs->ns, v[k]);
		pthread_mutex_unlock(&fs->ns.lock);
	}
	free(v);
}

unsigned fs_rescue(struct fs *fs, const char *dir, unsigned *lost)
{
	unsigned saved = 0, bad = 0;
	bool made = false;

	/* the last resort has the spare descriptors, and all clean ones */
	fs_fds_free(fs, true, true);
	complete_partial(fs);
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

/*
 * Open `base` as a directory this process's user owns that nobody else
 * may write to, making it if missing. fd or -errno (-EPERM when it is
 * someone else's, -ELOOP for a symlink).
 */
static int own_base(const char *base)
{
	struct stat st;
	int fd;

	if (mkdir(base, 0700) < 0 && errno != EEXIST)
		return -errno;
	fd = open(base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || st.st_uid != geteuid()) {
		close(fd);
		return -EPERM;
	}
	/* an older h5memfs made it 01777: ours, so it can be closed */
	if ((st.st_mode & 077) && fchmod(fd, 0700) < 0) {
		close(fd);
		return -EPERM;
	}
	return fd;
}

char *fs_rescue_default(const char *mountpoint)
{
	const char *name = strrchr(mountpoint, '/');
	char base[64], when[32], *dir = NULL;
	time_t now = time(NULL);
	struct tm tm;
	int fd;

	if (geteuid() == 0)
		snprintf(base, sizeof(base), "/var/tmp/h5memfs-rescue");
	else
		snprintf(base, sizeof(base), "/var/tmp/h5memfs-rescue-%u",
			 (unsigned)geteuid());
	fd = own_base(base);
	if (fd < 0) {
		log_warn("%s is not this daemon's own directory (%s); "
			 "rescuing in a new directory of /var/tmp instead",
			 base, strerror(-fd));
		snprintf(base, sizeof(base), "/var/tmp/h5memfs-rescue-XXXXXX");
		if (!mkdtemp(base))
			return NULL;
	} else {
		close(fd);
	}
	localtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y%m%d-%H%M%S", &tm);
	if (asprintf(&dir, "%s/%.100s-%s-%d-XXXXXX", base,
		     name && name[1] ? name + 1 : "mount", when,
		     (int)getpid()) < 0)
		return NULL;
	if (!mkdtemp(dir)) {
		log_err("cannot create a rescue directory in %s: %s", base,
			strerror(errno));
		free(dir);
		return NULL;
	}
	return dir;
}
