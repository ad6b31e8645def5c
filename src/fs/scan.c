/*
 * scan.c - bringing SOURCE's directories into the namespace, lazily:
 * a directory's entries are read (names and lstat, never contents) the
 * first time something looks inside it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/log.h"
#include "internal.h"

/*
 * A file with several names in SOURCE must be one node in the mount.
 * Entries seen with st_nlink > 1 are remembered by (dev, ino); the entry
 * pins its node while names of it may still be found in unscanned
 * directories.
 */
struct hlink {
	dev_t dev;
	ino_t ino;
	struct node *node;
	struct hlink *next;
};

struct scan_ctx {
	struct fs *fs;
	struct node *dir;
};

static struct hlink *hlink_find(struct fs *fs, dev_t dev, ino_t ino)
{
	struct hlink *h;

	for (h = fs->hlinks; h; h = h->next)
		if (h->dev == dev && h->ino == ino)
			return h;
	return NULL;
}

void fs_hlink_drop(struct fs *fs, struct node *n)
{
	struct hlink **pp = &fs->hlinks;

	while (*pp && (*pp)->node != n)
		pp = &(*pp)->next;
	if (*pp) {
		struct hlink *h = *pp;

		*pp = h->next;
		free(h);
	}
}

void fs_hlink_moved(struct fs *fs, struct node *old, struct node *n)
{
	for (struct hlink *h = fs->hlinks; h; h = h->next) {
		if (h->node == old) {
			h->node = n;
			ns_pin(n);
			ns_unpin(&fs->ns, old);
		}
	}
}

void fs_hlinks_free(struct fs *fs)
{
	while (fs->hlinks) {
		struct hlink *h = fs->hlinks;

		fs->hlinks = h->next;
		free(h);
	}
}

static struct node *node_from_stat(struct fs *fs, const struct stat *st,
				   const char *target)
{
	struct node *n = ns_node_new(&fs->ns, st->st_mode, st->st_uid,
				     st->st_gid);

	if (!n)
		return NULL;
	n->rdev = st->st_rdev;
	n->size = (uint64_t)st->st_size;
	n->atime = st->st_atim;
	n->mtime = st->st_mtim;
	n->ctime = st->st_ctim;
	n->flags = N_FROM_SOURCE;
	/* directories: st_nlink until scanned; others: names not seen yet */
	n->src_nlink = (unsigned)st->st_nlink - !S_ISDIR(st->st_mode);
	src_ident_from_stat(&n->ident, st);
	if (target && !(n->target = strdup(target))) {
		ns_maybe_free(&fs->ns, n);
		return NULL;
	}
	return n;
}

static int scan_entry(void *arg, const char *name, const struct stat *st,
		      const char *target)
{
	struct scan_ctx *c = arg;
	struct fs *fs = c->fs;
	struct hlink *h = NULL;
	struct node *n;
	int err;

	if (!S_ISDIR(st->st_mode) && st->st_nlink > 1)
		h = hlink_find(fs, st->st_dev, st->st_ino);
	n = h ? h->node : node_from_stat(fs, st, target);
	if (!n)
		return -ENOMEM;
	err = ns_link(&fs->ns, c->dir, name, n);
	if (err) {
		ns_maybe_free(&fs->ns, n);
		return err;
	}
	if (h) {
		if (n->src_nlink)
			n->src_nlink--;
		/* every name found: SOURCE holds no more of this file */
		if (!n->src_nlink) {
			fs_hlink_drop(fs, n);
			ns_unpin(&fs->ns, n);
		}
	} else if (!S_ISDIR(st->st_mode) && st->st_nlink > 1) {
		h = calloc(1, sizeof(*h));
		if (h) {
			h->dev = st->st_dev;
			h->ino = st->st_ino;
			h->node = n;
			h->next = fs->hlinks;
			fs->hlinks = h;
			ns_pin(n);
		}
	}
	return 0;
}

int fs_scan(struct fs *fs, struct node *dir)
{
	struct scan_ctx c = { fs, dir };
	char *path;
	int err = 0;

	pthread_mutex_lock(&fs->ns.lock);
	if (dir->flags & N_SCANNED) {
		pthread_mutex_unlock(&fs->ns.lock);
		return 0;
	}
	pthread_mutex_unlock(&fs->ns.lock);

	pthread_mutex_lock(&fs->replay_lock);
	pthread_mutex_lock(&fs->ns.lock);
	if (dir->flags & N_SCANNED)
		goto out;
	path = fs_source_path_locked(fs, dir);
	if (!path) {
		err = -ENOMEM;
		goto out;
	}
	err = src_scan(&fs->src, path, scan_entry, &c);
	if (err == -ENOENT) {
		log_warn("directory %s vanished from SOURCE",
			 fs_shown(path));
		err = 0; /* show it empty rather than fail every lookup */
	}
	if (err)
		log_warn("cannot list %s in SOURCE: %s", fs_shown(path),
			 strerror(-err));
	else
		dir->flags |= N_SCANNED;
	free(path);
out:
	pthread_mutex_unlock(&fs->ns.lock);
	pthread_mutex_unlock(&fs->replay_lock);
	return err;
}

int fs_load_xattrs(struct fs *fs, struct node *n)
{
	char *path;
	int err = 0;

	pthread_mutex_lock(&fs->replay_lock);
	pthread_mutex_lock(&fs->ns.lock);
	if (n->flags & N_XATTRS)
		goto out;
	path = fs_source_path_locked(fs, n);
	if (!path) {
		err = n->links ? -ENOMEM : 0;
		goto out;
	}
	err = src_load_xattrs(&fs->src, path, n);
	/* replaced by another node just now: a shared fs needs a moment */
	for (int tries = 0; err == -ESTALE && tries < 20; tries++) {
		usleep(100 * 1000);
		err = src_load_xattrs(&fs->src, path, n);
	}
	free(path);
	if (err == -ENOENT || err == -EACCES || err == -ELOOP ||
	    err == -ENXIO)
		err = 0; /* gone or unreadable in SOURCE: it has none */
	if (!err)
		n->flags |= N_XATTRS;
out:
	pthread_mutex_unlock(&fs->ns.lock);
	pthread_mutex_unlock(&fs->replay_lock);
	return err;
}
