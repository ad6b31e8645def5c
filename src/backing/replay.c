/*
 * replay.c - one journalled namespace operation made in SOURCE, without
 * ever replacing an entry someone else put at its target name since the
 * mount last saw that name (another node, another program): the mount's
 * object then goes beside it under a conflict name.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/log.h"
#include "../core/ts.h"
#include "meta.h"
#include "writeback.h"

/* Is the entry st at the target name what the journal expects there? */
static bool expected(const struct stat *st, const struct jop *op)
{
	const struct src_ident *w = &op->was;

	if (op->expect == JX_NOTHING ||
	    (st->st_mode & S_IFMT) != op->was_mode)
		return false;
	if (op->expect == JX_TYPE)
		return true;
	if (st->st_dev != w->dev || st->st_ino != w->ino)
		return false;
	if (op->was_ctime && !ts_equal(st->st_ctim, w->ctime))
		return false;
	/* a file edited in place keeps its inode, not its size and mtime */
	return !S_ISREG(st->st_mode) ||
	       ((uint64_t)st->st_size == w->size &&
		ts_equal(st->st_mtim, w->mtime));
}

/*
 * The target d/leaf (its stat to *st): 1 someone else's, 0 ours to
 * replace, -ENOENT none.
 */
static int foreign(int d, const char *leaf, const struct jop *op,
		   struct stat *st)
{
	if (fstatat(d, leaf, st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return !expected(st, op);
}

/* renameat2(RENAME_NOREPLACE) across directories; see wb_rename_noreplace */
static int move_noreplace(int d1, const char *l1, int d2, const char *l2)
{
	struct stat st;

	if (renameat2(d1, l1, d2, l2, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	if (fstatat(d1, l1, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode)) /* no link for a directory: last resort */
		return renameat(d1, l1, d2, l2) < 0 ? -errno : 0;
	if (linkat(d1, l1, d2, l2, 0) < 0)
		return -errno;
	return unlinkat(d1, l1, 0) < 0 ? -errno : 0;
}

/*
 * Make the mount's object at a free name beside `path` (in directory d)
 * with `make`, trying names until one is free. WB_OTHER with aside->put
 * set, or -errno.
 */
static int put_aside(int d, const char *path, struct wb_aside *a,
		     int (*make)(void *ctx, int d, const char *leaf),
		     void *ctx)
{
	for (int seq = 0; seq < 100; seq++) {
		char *name = a->name(a->arg, path, seq);
		const char *slash, *leaf;
		int err;

		if (!name)
			return -ENOMEM;
		slash = strrchr(name, '/');
		leaf = slash ? slash + 1 : name;
		err = make(ctx, d, leaf);
		if (!err) {
			a->put = name;
			return WB_OTHER;
		}
		free(name);
		if (err != -EEXIST)
			return err;
	}
	return -EEXIST;
}

struct mover {
	int d1;
	const char *l1;
};

static int make_moved(void *ctx, int d, const char *leaf)
{
	struct mover *m = ctx;

	return move_noreplace(m->d1, m->l1, d, leaf);
}

static int make_linked(void *ctx, int d, const char *leaf)
{
	struct mover *m = ctx;

	return linkat(m->d1, m->l1, d, leaf, 0) < 0 ? -errno : 0;
}

static int make_created(void *ctx, int d, const char *leaf)
{
	const struct jop *op = ctx;
	int r;

	if (op->kind == J_SYMLINK)
		r = symlinkat(op->p2, d, leaf);
	else if (op->kind == J_MKNOD)
		r = mknodat(d, leaf, op->mode, op->rdev);
	else
		r = mkdirat(d, leaf, op->mode & 07777);
	return r < 0 ? -errno : 0;
}

/*
 * What a replay step returns when SOURCE had nothing to change (a file
 * not written back yet): then no directory needs an fsync, which spares
 * a long journal of such steps one or two directory syncs each.
 */
#define NOTHING_DONE (WB_OTHER + 1)

/* renameat2 with a fallback for an exchange with one side missing. */
static int replay_exchange(int d1, const char *l1, int d2, const char *l2)
{
	if (renameat2(d1, l1, d2, l2, RENAME_EXCHANGE) == 0)
		return 0;
	if (errno != ENOENT)
		return -errno;
	/* One side is a file not yet written: move the other over. */
	if (renameat(d1, l1, d2, l2) == 0 ||
	    (errno == ENOENT && renameat(d2, l2, d1, l1) == 0))
		return 0;
	return errno == ENOENT ? NOTHING_DONE : -errno;
}

/*
 * Rename d1/l1 over d2/l2, whose entry `was` (just checked) is what the
 * mount replaced, with no moment at which an entry someone else made
 * meanwhile could be replaced: exchange the two names, check that what
 * came out is still that inode, remove it; otherwise exchange back and
 * put the mount's entry beside. A directory someone filled meanwhile
 * cannot be removed: it is put back the same way. Where exchanges are
 * refused (NFS, GlusterFS), a plain rename.
 */
static int replace(const struct jop *op, const struct stat *was, int d1,
		   const char *l1, int d2, const char *l2,
		   struct wb_aside *a)
{
	struct mover m = { d1, l1 };
	struct stat st;

	if (renameat2(d1, l1, d2, l2, RENAME_EXCHANGE) < 0) {
		if (errno != EINVAL && errno != ENOSYS)
			return errno == ENOENT ? -EAGAIN : -errno;
		return renameat(d1, l1, d2, l2) < 0 ? -errno : 0;
	}
	/* the exchange moved both ctimes: the inode tells */
	if (fstatat(d1, l1, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    st.st_dev == was->st_dev && st.st_ino == was->st_ino &&
	    unlinkat(d1, l1, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) == 0)
		return 0;
	if (renameat2(d1, l1, d2, l2, RENAME_EXCHANGE) < 0)
		return -errno;
	return put_aside(d2, op->p2, a, make_moved, &m);
}

static int replay_rename(const struct jop *op, int d1, const char *l1,
			 int d2, const char *l2, struct wb_aside *a)
{
	struct mover m = { d1, l1 };
	struct stat st;

	if (op->flags & RENAME_EXCHANGE)
		return replay_exchange(d1, l1, d2, l2);
	if (fstatat(d1, l1, &st, AT_SYMLINK_NOFOLLOW) < 0)
		/* not written back yet */
		return errno == ENOENT ? NOTHING_DONE : -errno;
	/*
	 * Two names of one file in SOURCE that were two files in the mount
	 * (a new file not yet written back leaves, at its name, the file
	 * it replaced, and that may be a hard link of the target): rename(2)
	 * would do nothing, but the old name must go.
	 */
	if (wb_same_inode(d1, l1, d2, l2))
		return unlinkat(d1, l1, 0) < 0 && errno != ENOENT ? -errno : 0;
	for (int tries = 0; tries < 100; tries++) {
		int f = foreign(d2, l2, op, &st), err;

		if (f == 1)
			return put_aside(d2, op->p2, a, make_moved, &m);
		if (f == 0) /* what the mount replaced: replace it too */
			err = replace(op, &st, d1, l1, d2, l2, a);
		else if (f == -ENOENT)
			err = move_noreplace(d1, l1, d2, l2);
		else
			return f;
		/* else the target changed meanwhile: look at it again */
		if (err != -EEXIST && err != -EAGAIN)
			return err == -ENOENT ? 0 : err;
	}
	return -EBUSY;
}

static int replay_link(const struct src *s, const struct jop *op, int d1,
		       const char *l1, int d2, const char *l2,
		       struct wb_aside *a)
{
	struct mover m = { d1, l1 };
	struct stat st;

	if (linkat(d1, l1, d2, l2, 0) == 0)
		return 0;
	if (errno != EEXIST)
		return errno == ENOENT ? NOTHING_DONE : -errno;
	if (wb_same_inode(d1, l1, d2, l2))
		return 0;
	if (foreign(d2, l2, op, &st) == 0)
		return wb_link_over(s, d1, l1, op->p2);
	return put_aside(d2, op->p2, a, make_linked, &m);
}

static int replay_two(const struct src *s, const struct jop *op,
		      struct wb_aside *a)
{
	const char *l1, *l2;
	int d1 = src_parent(s, op->p1, &l1), d2 = -1, err = 0;

	if (d1 < 0)
		return d1 == -ENOENT ? 0 : d1;
	d2 = src_parent(s, op->p2, &l2);
	if (d2 < 0) {
		err = d2;
		goto out;
	}
	if (op->kind == J_RENAME)
		err = replay_rename(op, d1, l1, d2, l2, a);
	else
		err = replay_link(s, op, d1, l1, d2, l2, a);
	if (err == NOTHING_DONE) {
		err = 0;
		goto out;
	}
	if (err >= 0 && fsync(d2) < 0)
		err = -errno;
	if (err >= 0 && fsync(d1) < 0)
		err = -errno;
out:
	if (d2 >= 0)
		close(d2);
	close(d1);
	return err;
}

/* mkdir, symlink, mknod at p1. */
static int replay_create(const struct jop *op, int d, const char *leaf,
			 struct wb_aside *a)
{
	struct stat st;
	int err = make_created((void *)op, d, leaf);

	if (err != -EEXIST)
		return err;
	if (fstatat(d, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (op->kind == J_MKDIR && S_ISDIR(st.st_mode))
		return 0; /* made there too: the two are one directory */
	if (!expected(&st, op))
		return put_aside(d, op->p1, a, make_created, (void *)op);
	/* what the mount removed and made again: replace it */
	if (unlinkat(d, leaf, 0) < 0)
		return -errno;
	return make_created((void *)op, d, leaf);
}

int wb_replay(const struct src *s, const struct jop *op,
	      struct wb_aside *aside)
{
	const char *leaf;
	int dirfd, err = 0;

	aside->put = NULL;
	if (op->kind == J_RENAME || op->kind == J_LINK)
		return replay_two(s, op, aside);
	dirfd = src_parent(s, op->p1, &leaf);
	if (dirfd < 0)
		return dirfd;
	switch (op->kind) {
	case J_MKDIR:
	case J_SYMLINK:
	case J_MKNOD:
		err = replay_create(op, dirfd, leaf, aside);
		break;
	case J_RMDIR:
		if (unlinkat(dirfd, leaf, AT_REMOVEDIR) < 0)
			err = errno == ENOENT ? NOTHING_DONE : -errno;
		break;
	case J_UNLINK:
		if (unlinkat(dirfd, leaf, 0) < 0)
			err = errno == ENOENT ? NOTHING_DONE : -errno;
		break;
	default:
		err = -EINVAL;
	}
	if (err == NOTHING_DONE)
		err = 0; /* not in SOURCE: no directory to sync */
	else if (err >= 0 && fsync(dirfd) < 0)
		err = -errno;
	close(dirfd);
	if (err < 0)
		log_debug("replay of %s failed: %s", op->p1, strerror(-err));
	return err;
}
