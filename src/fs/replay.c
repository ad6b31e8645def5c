/*
 * replay.c - replaying the journal on SOURCE, so that SOURCE's namespace
 * becomes the mount's (renames, unlinks, directories, links, special
 * files), operation by operation, each durable before the next.
 *
 * An operation whose target name in SOURCE holds something the mount
 * did not see there (another node made it since) puts the mount's object
 * beside it under a conflict name (wb_replay); the later operations and
 * the mount's own name follow it there, so that the mount shows what
 * SOURCE holds. An operation SOURCE refuses for good is reported and
 * dropped: it does not block every later one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../core/log.h"
#include "internal.h"

/*
 * Errors that will not go away by trying again: SOURCE's namespace no
 * longer matches the journal (someone changed it behind the mount), or
 * SOURCE refuses the operation itself (permissions, an immutable
 * directory, a name too long for it, a mount point in the way). The
 * operation is dropped and reported instead of blocking every later
 * write-back. Anything else (EIO, ENOSPC, EROFS, ...) is tried again at
 * the next pass.
 */
static bool permanent(int err)
{
	return err == -EEXIST || err == -ENOTEMPTY || err == -ENOTDIR ||
	       err == -EISDIR || err == -ELOOP || err == -EINVAL ||
	       err == -EXDEV || err == -EMLINK || err == -EPERM ||
	       err == -EACCES || err == -ENAMETOOLONG;
}

static const char *kind_name(enum jop_kind k)
{
	switch (k) {
	case J_MKDIR:
		return "mkdir";
	case J_RMDIR:
		return "rmdir";
	case J_UNLINK:
		return "unlink";
	case J_RENAME:
		return "rename";
	case J_LINK:
		return "link";
	case J_SYMLINK:
		return "symlink";
	default:
		return "mknod";
	}
}

static char *aside_name(void *arg, const char *path, int seq)
{
	return fs_conflict_name(arg, path, seq);
}

/* The dentry at mount path `path`, or NULL. ns.lock held. */
static struct dentry *find_path(struct fs *fs, const char *path)
{
	struct node *dir = fs->ns.root;
	struct dentry *d = NULL;
	char *copy = strdup(path), *save = NULL, *c;

	c = copy ? strtok_r(copy, "/", &save) : NULL;
	while (c) {
		d = dir ? ns_find(&fs->ns, dir, c) : NULL;
		if (!d)
			break;
		dir = S_ISDIR(d->node->mode) ? d->node : NULL;
		c = strtok_r(NULL, "/", &save);
		if (c)
			d = NULL;
	}
	free(copy);
	return d;
}

/*
 * `op` (first in the journal) left the mount's object at `put` in
 * SOURCE, its target holding someone else's entry: the later operations
 * and the mount's name follow it there. ns.lock held.
 */
static void follow_aside(struct fs *fs, const struct jop *op,
			 const char *put)
{
	const char *target = op->kind == J_RENAME || op->kind == J_LINK ?
				     op->p2 : op->p1;
	char *from = NULL, *to = NULL;
	struct dentry *d;
	const char *leaf;

	fs->stats.conflicts++;
	fs->stats.namespace_conflicts++;
	log_warn("conflict: %s in SOURCE was made by someone else since the "
		 "mount last saw it; kept, and the mount's %s put beside it "
		 "as %s", target, kind_name(op->kind), put);
	if (jrn_redirect(&fs->jrn, op, target, put, &from, &to) || !from)
		return;
	d = find_path(fs, from);
	leaf = strrchr(to, '/');
	leaf = leaf ? leaf + 1 : to;
	if (d && !ns_find(&fs->ns, d->dir, leaf) &&
	    ns_move(&fs->ns, d, d->dir, leaf) == 0)
		d->dir->flags |= N_META_DIRTY;
	free(from);
	free(to);
}

/*
 * `op` (first in the journal) was refused for good: reported, and the
 * file it concerned, if the mount holds its data, is made dirty so that
 * the data write-back tries its name in the mount, and the rescue
 * directory takes it at the end if that fails too. ns.lock held.
 */
static void refused(struct fs *fs, const struct jop *op, int err)
{
	const char *target = op->kind == J_RENAME || op->kind == J_LINK ?
				     op->p2 : op->p1;
	char *from = NULL, *to = NULL;
	struct dentry *d;

	fs->stats.namespace_errors++;
	log_err("SOURCE refused the %s of %s%s%s (%s): dropped; the mount "
		"keeps its name", kind_name(op->kind), op->p1,
		op->kind == J_RENAME || op->kind == J_LINK ? " to " : "",
		op->kind == J_RENAME || op->kind == J_LINK ? op->p2 : "",
		strerror(-err));
	if (op->kind == J_UNLINK || op->kind == J_RMDIR ||
	    jrn_redirect(&fs->jrn, op, target, target, &from, &to) || !from)
		goto out;
	d = find_path(fs, from);
	if (d && S_ISREG(d->node->mode) && (d->node->flags & N_LOADED) &&
	    !(d->node->flags & N_VOLATILE)) {
		uint64_t size = 0;

		d->node->flags |= N_DIRTY | N_META_DIRTY;
		if (img_size(&d->node->file->img, &size) == 0)
			img_mark_dirty(&d->node->file->img, 0, size);
	}
out:
	free(from);
	free(to);
}

int fs_replay_and_lock(struct fs *fs, bool quiet)
{
	for (;;) {
		struct wb_aside aside = { aside_name, fs, NULL };
		struct jop *op;
		int err;

		pthread_mutex_lock(&fs->ns.lock);
		op = fs->jrn.head;
		if (!op)
			return 0;
		pthread_mutex_unlock(&fs->ns.lock);
		err = wb_replay(&fs->src, op, &aside);
		pthread_mutex_lock(&fs->ns.lock);
		if (err == WB_OTHER) {
			follow_aside(fs, op, aside.put);
			err = 0;
		} else if (err && permanent(err)) {
			refused(fs, op, err);
			err = 0;
		}
		free(aside.put);
		if (err) {
			if (!quiet)
				log_err("cannot update SOURCE for %s: %s",
					op->p1, strerror(-err));
			return err;
		}
		jrn_pop(&fs->jrn);
		pthread_mutex_unlock(&fs->ns.lock);
	}
}

int fs_replay_all(struct fs *fs)
{
	int err;

	pthread_mutex_lock(&fs->replay_lock);
	err = fs_replay_and_lock(fs, false);
	pthread_mutex_unlock(&fs->ns.lock);
	pthread_mutex_unlock(&fs->replay_lock);
	return err;
}
