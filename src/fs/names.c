/*
 * names.c - namespace operations of the mount: lookup, attributes,
 * create, link, unlink, rename, directories, xattrs, statfs.
 *
 * Each change is made in memory at once and journalled for SOURCE.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "../core/log.h"
#include "../core/ts.h"
#include "internal.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE (1 << 1)
#endif

/*
 * Write-back temporaries share SOURCE's directories, and a scan hides
 * their names as leftovers. In the mount such a name may still be given
 * to a new regular file or a new hard link (`tmp_ok`): both fail with
 * EEXIST rather than reuse a name, and they are exactly what the
 * write-back of another h5memfs does when this mount is its SOURCE.
 * Directories, symlinks, special files and rename targets keep EPERM.
 */
static int check_name(const char *name, bool tmp_ok)
{
	size_t l = strlen(name);

	if (l > NAME_MAX)
		return -ENAMETOOLONG;
	if (!tmp_ok &&
	    !strncmp(name, SRC_TMP_PREFIX, sizeof(SRC_TMP_PREFIX) - 1))
		return -EPERM;
	return 0;
}

void fs_touch_mc(struct node *n)
{
	n->mtime = n->ctime = ns_now();
	n->flags |= N_META_DIRTY;
}

void fs_touch_c(struct node *n)
{
	n->ctime = ns_now();
	n->flags |= N_META_DIRTY;
}

/* Hand the kernel a reference and the attributes. ns.lock held. */
static void give_ref(struct node *n, struct stat *st)
{
	n->nlookup++;
	ns_stat(n, st);
}

void fs_ref(struct fs *fs, struct node *n, struct stat *st)
{
	pthread_mutex_lock(&fs->ns.lock);
	give_ref(n, st);
	pthread_mutex_unlock(&fs->ns.lock);
}

int fs_lookup(struct fs *fs, struct node *dir, const char *name,
	      struct node **out, struct stat *st)
{
	struct dentry *d;
	bool refreshed = false;
	int err;

	if (strlen(name) > NAME_MAX)
		return -ENAMETOOLONG;
	err = fs_scan(fs, dir);
	if (err)
		return err;
again:
	pthread_mutex_lock(&fs->ns.lock);
	if (!S_ISDIR(dir->mode)) {
		err = -ENOTDIR;
	} else if (!(d = ns_find(&fs->ns, dir, name)) && !refreshed) {
		/* made in SOURCE by another node since it was listed? */
		pthread_mutex_unlock(&fs->ns.lock);
		fs_refresh(fs, dir);
		refreshed = true;
		goto again;
	} else if (!d) {
		err = -ENOENT;
	} else {
		*out = d->node;
		give_ref(d->node, st);
	}
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

void fs_forget(struct fs *fs, struct node *n, uint64_t nlookup)
{
	pthread_mutex_lock(&fs->ns.lock);
	ns_forget(&fs->ns, n, nlookup);
	pthread_mutex_unlock(&fs->ns.lock);
}

bool fs_kill_suid(struct fs *fs, struct node *n)
{
	mode_t old;

	pthread_mutex_lock(&fs->ns.lock);
	old = n->mode;
	if (S_ISREG(n->mode) && (n->mode & (S_ISUID | S_ISGID))) {
		n->mode &= ~(mode_t)S_ISUID;
		if (n->mode & S_IXGRP)
			n->mode &= ~(mode_t)S_ISGID;
		if (n->mode != old)
			fs_touch_c(n);
	}
	pthread_mutex_unlock(&fs->ns.lock);
	return n->mode != old;
}

int fs_getattr(struct fs *fs, struct node *n, struct stat *st)
{
	pthread_mutex_lock(&fs->ns.lock);
	if (n->flags & N_REBORN) {
		pthread_mutex_unlock(&fs->ns.lock);
		return -ESTALE; /* the kernel looks the name up again */
	}
	fs_notice_kernel_writes(fs, n);
	ns_stat(n, st);
	pthread_mutex_unlock(&fs->ns.lock);
	return 0;
}

/*
 * Truncate or extend a regular file, loading it first when needed. With the kernel's writeback cache
 * the kernel owns mtime and ctime: it sends them in the same SETATTR
 * whenever it saw the size change (and always for ftruncate), and keeps
 * its own when it did not (truncate(2) to the same size), so stamping
 * here would only make SOURCE differ from what the mount shows.
 */
static int set_size(struct fs *fs, struct node *n, uint64_t size)
{
	struct timespec mtime, ctime;
	uint64_t old = 0;
	int err;

	if (S_ISDIR(n->mode))
		return -EISDIR;
	if (!S_ISREG(n->mode))
		return -EINVAL;
	pthread_mutex_lock(&fs->ns.lock);
	mtime = n->mtime;
	ctime = n->ctime;
	pthread_mutex_unlock(&fs->ns.lock);
	err = fs_open(fs, n, O_RDWR | (size == 0 ? O_TRUNC : 0), NULL);
	if (err)
		return err;
	if (size == 0 && fs->o.kernel_times) {
		/* that O_TRUNC only spares a load: the times stay */
		pthread_mutex_lock(&fs->ns.lock);
		n->mtime = mtime;
		n->ctime = ctime;
		pthread_mutex_unlock(&fs->ns.lock);
	}
	pthread_mutex_lock(&n->io);
	img_size(&n->img, &old);
	err = img_truncate(&n->img, size);
	pthread_mutex_unlock(&n->io);
	pthread_mutex_lock(&fs->ns.lock);
	if (!err && !fs->o.kernel_times) {
		fs_notice_kernel_writes(fs, n);
		n->flags |= N_DIRTY;
		fs_touch_mc(n);
	} else if (!err && old != size) {
		n->flags |= N_DIRTY;
	}
	pthread_mutex_unlock(&fs->ns.lock);
	fs_close(fs, n);
	return err;
}

/* What write-back puts in SOURCE besides data and xattrs. */
struct kept_meta {
	mode_t mode;
	uid_t uid;
	gid_t gid;
	struct timespec atime, mtime;
};

static struct kept_meta kept_meta(const struct node *n)
{
	return (struct kept_meta){ n->mode, n->uid, n->gid, n->atime,
				   n->mtime };
}

static bool meta_differs(const struct kept_meta *a, const struct kept_meta *b)
{
	return a->mode != b->mode || a->uid != b->uid || a->gid != b->gid ||
	       !ts_equal(a->atime, b->atime) ||
	       !ts_equal(a->mtime, b->mtime);
}

int fs_setattr(struct fs *fs, struct node *n, const struct stat *attr,
	       int to_set, struct stat *st)
{
	struct timespec now = ns_now();
	struct kept_meta was, now_meta;
	int err = 0;

	if (to_set & FS_SET_SIZE) {
		err = set_size(fs, n, (uint64_t)attr->st_size);
		if (err)
			return err;
	}
	pthread_mutex_lock(&fs->ns.lock);
	fs_notice_kernel_writes(fs, n);
	was = kept_meta(n);
	if (to_set & FS_SET_MODE)
		n->mode = (n->mode & S_IFMT) | (attr->st_mode & 07777);
	if (to_set & FS_SET_UID)
		n->uid = attr->st_uid;
	if (to_set & FS_SET_GID)
		n->gid = attr->st_gid;
	if (to_set & FS_SET_ATIME_NOW)
		n->atime = now;
	else if (to_set & FS_SET_ATIME)
		n->atime = attr->st_atim;
	if (to_set & FS_SET_MTIME_NOW)
		n->mtime = now;
	else if (to_set & FS_SET_MTIME)
		n->mtime = attr->st_mtim;
	if (to_set & FS_SET_CTIME)
		n->ctime = attr->st_ctim;
	else if (to_set & ~FS_SET_SIZE)
		n->ctime = now;
	/*
	 * Only what SOURCE keeps makes the metadata dirty: a SETATTR that
	 * sets the values the file has (the kernel's writeback cache sends
	 * its mtime and ctime after a setxattr or a close) must not touch
	 * SOURCE, whose ctime would change for nothing.
	 */
	now_meta = kept_meta(n);
	if (meta_differs(&was, &now_meta))
		n->flags |= N_META_DIRTY;
	ns_stat(n, st);
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

/*
 * Common part of every create: scan, check, make the node, link it.
 * On success *out has a kernel reference and ns.lock is released.
 */
static int create_node(struct fs *fs, struct node *dir, const char *name,
		       mode_t mode, uid_t uid, gid_t gid, struct node **out,
		       struct stat *st, struct node **made)
{
	struct node *n;
	int err = check_name(name, S_ISREG(mode));

	if (!err)
		err = fs_scan(fs, dir);
	if (err)
		return err;
	pthread_mutex_lock(&fs->ns.lock);
	if (!dir->links && dir != fs->ns.root) {
		err = -ENOENT; /* removed while we looked */
		goto out;
	}
	if (ns_find(&fs->ns, dir, name)) {
		err = -EEXIST;
		goto out;
	}
	if (dir->mode & S_ISGID) { /* BSD group semantics, as ext4/tmpfs */
		gid = dir->gid;
		if (S_ISDIR(mode))
			mode |= S_ISGID;
	}
	n = ns_node_new(&fs->ns, mode, uid, gid);
	if (!n) {
		err = -ENOMEM;
		goto out;
	}
	n->flags |= N_META_DIRTY; /* its owner and times go to SOURCE too */
	err = ns_link(&fs->ns, dir, name, n);
	if (err) {
		ns_maybe_free(&fs->ns, n);
		goto out;
	}
	fs_touch_mc(dir);
	*made = n;
	*out = n;
	give_ref(n, st);
	return 0; /* still locked: the caller journals and unlocks */
out:
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

/* Undo create_node after a journal failure. ns.lock held; unlocks. */
static int create_undo(struct fs *fs, struct node *dir, const char *name,
		       struct node *n, int err)
{
	n->nlookup--;
	ns_unlink(&fs->ns, ns_find(&fs->ns, dir, name));
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

int fs_mknod(struct fs *fs, struct node *dir, const char *name, mode_t mode,
	     dev_t rdev, uid_t uid, gid_t gid, struct node **out,
	     struct stat *st)
{
	struct node *n;
	char *path;
	int err;

	if (!S_ISREG(mode) && !S_ISFIFO(mode) && !S_ISSOCK(mode) &&
	    !S_ISCHR(mode) && !S_ISBLK(mode))
		return -EINVAL;
	err = create_node(fs, dir, name, mode, uid, gid, out, st, &n);
	if (err)
		return err;
	n->rdev = rdev;
	st->st_rdev = rdev;
	if (S_ISREG(mode)) {
		/* new content: the data write-back creates it in SOURCE */
		n->flags |= N_LOADED | N_DIRTY;
		pthread_mutex_unlock(&fs->ns.lock);
		return 0;
	}
	path = ns_child_path(&fs->ns, dir, name);
	err = path ? fs_journal(fs, J_MKNOD, path, NULL, mode, rdev, 0, NULL) :
		     -ENOMEM;
	free(path);
	if (err)
		return create_undo(fs, dir, name, n, err);
	pthread_mutex_unlock(&fs->ns.lock);
	return 0;
}

int fs_mkdir(struct fs *fs, struct node *dir, const char *name, mode_t mode,
	     uid_t uid, gid_t gid, struct node **out, struct stat *st)
{
	struct node *n;
	char *path;
	int err;

	err = create_node(fs, dir, name, S_IFDIR | (mode & 07777), uid, gid,
			  out, st, &n);
	if (err)
		return err;
	path = ns_child_path(&fs->ns, dir, name);
	err = path ? fs_journal(fs, J_MKDIR, path, NULL, n->mode, 0, 0, NULL) :
		     -ENOMEM;
	free(path);
	if (err)
		return create_undo(fs, dir, name, n, err);
	ns_stat(n, st);
	pthread_mutex_unlock(&fs->ns.lock);
	return 0;
}

int fs_symlink(struct fs *fs, struct node *dir, const char *name,
	       const char *target, uid_t uid, gid_t gid, struct node **out,
	       struct stat *st)
{
	struct node *n;
	char *path;
	int err;

	if (strlen(target) >= PATH_MAX)
		return -ENAMETOOLONG;
	err = create_node(fs, dir, name, S_IFLNK | 0777, uid, gid, out, st,
			  &n);
	if (err)
		return err;
	n->target = strdup(target);
	path = ns_child_path(&fs->ns, dir, name);
	err = n->target && path ?
		      fs_journal(fs, J_SYMLINK, path, target, 0, 0, 0, NULL) :
		      -ENOMEM;
	free(path);
	if (err)
		return create_undo(fs, dir, name, n, err);
	ns_stat(n, st);
	pthread_mutex_unlock(&fs->ns.lock);
	return 0;
}

int fs_link(struct fs *fs, struct node *n, struct node *dir,
	    const char *name, struct stat *st)
{
	char *from = NULL, *to = NULL;
	bool unlinked;
	int err = check_name(name, true);

	if (!err)
		err = fs_scan(fs, dir);
	if (err)
		return err;
	pthread_mutex_lock(&fs->ns.lock);
	if (S_ISDIR(n->mode)) {
		err = -EPERM;
	} else if (!n->links) {
		err = -ENOENT; /* linkat of an unlinked open file */
	} else if (ns_find(&fs->ns, dir, name)) {
		err = -EEXIST;
	} else if (n->nlinks >= 65000) {
		err = -EMLINK;
	}
	if (err)
		goto out;
	from = ns_path(&fs->ns, n, &unlinked);
	to = ns_child_path(&fs->ns, dir, name);
	if (!from || !to) {
		err = -ENOMEM;
		goto out;
	}
	err = ns_link(&fs->ns, dir, name, n);
	if (err)
		goto out;
	err = fs_journal(fs, J_LINK, from, to, 0, 0, 0, n);
	if (err) {
		ns_unlink(&fs->ns, ns_find(&fs->ns, dir, name));
		goto out;
	}
	fs_touch_c(n);
	fs_touch_mc(dir);
	give_ref(n, st);
out:
	pthread_mutex_unlock(&fs->ns.lock);
	free(from);
	free(to);
	return err;
}

/* Remove a name (unlink or rmdir). ns.lock held. */
static int remove_name(struct fs *fs, struct node *dir, const char *name,
		       bool want_dir)
{
	struct dentry *d = ns_find(&fs->ns, dir, name);
	struct node *n;
	char *path;
	int err;

	if (!d)
		return -ENOENT;
	n = d->node;
	if (want_dir && !S_ISDIR(n->mode))
		return -ENOTDIR;
	if (!want_dir && S_ISDIR(n->mode))
		return -EISDIR;
	if (want_dir && n->nchildren)
		return -ENOTEMPTY;
	path = ns_child_path(&fs->ns, dir, name);
	if (!path)
		return -ENOMEM;
	err = fs_journal(fs, want_dir ? J_RMDIR : J_UNLINK, path, NULL, 0, 0,
			 0, n);
	free(path);
	if (err)
		return err;
	fs_touch_mc(dir);
	if (!want_dir)
		fs_touch_c(n);
	ns_unlink(&fs->ns, d);
	return 0;
}

int fs_unlink(struct fs *fs, struct node *dir, const char *name)
{
	int err = fs_scan(fs, dir);

	if (err)
		return err;
	pthread_mutex_lock(&fs->ns.lock);
	err = remove_name(fs, dir, name, false);
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

int fs_rmdir(struct fs *fs, struct node *dir, const char *name)
{
	struct dentry *d;
	int err = fs_scan(fs, dir);

	if (err)
		return err;
	/* the directory must be scanned to know whether it is empty */
	pthread_mutex_lock(&fs->ns.lock);
	d = ns_find(&fs->ns, dir, name);
	pthread_mutex_unlock(&fs->ns.lock);
	if (d && S_ISDIR(d->node->mode)) {
		err = fs_scan(fs, d->node);
		if (err)
			return err;
	}
	pthread_mutex_lock(&fs->ns.lock);
	err = remove_name(fs, dir, name, true);
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

/* Checks of rename(2) once both names are known. ns.lock held. */
static int rename_check(struct dentry *src, struct dentry *dst,
			struct node *newdir, unsigned flags)
{
	struct node *s = src->node;

	if (flags & RENAME_EXCHANGE) {
		if (!dst)
			return -ENOENT;
		if (S_ISDIR(dst->node->mode) &&
		    ns_is_ancestor(dst->node, src->dir))
			return -EINVAL;
	} else if (dst && (flags & RENAME_NOREPLACE)) {
		return -EEXIST;
	}
	if (S_ISDIR(s->mode) && ns_is_ancestor(s, newdir))
		return -EINVAL;
	if (!dst || (flags & RENAME_EXCHANGE))
		return 0;
	if (S_ISDIR(s->mode) && !S_ISDIR(dst->node->mode))
		return -ENOTDIR;
	if (!S_ISDIR(s->mode) && S_ISDIR(dst->node->mode))
		return -EISDIR;
	if (S_ISDIR(dst->node->mode) && dst->node->nchildren)
		return -ENOTEMPTY;
	return 0;
}

/*
 * New file s is renamed over d: its stand-in in SOURCE is d's file there
 * (or d's own stand-in). If d's file is being replaced in SOURCE right
 * now (a write-back of d, or of the file whose stand-in d waits for),
 * its identity is known only when that write-back ends
 * (standin_settle in sync.c). ns.lock held.
 */
static void stand_in(struct fs *fs, struct node *s, struct node *d)
{
	if (fs->wb_busy && (d == fs->wb_busy || (d->flags & N_STANDIN_BUSY))) {
		s->flags |= N_STANDIN_BUSY;
		fs->wb_busy_replaced = true;
		return;
	}
	s->replaces = d->flags & N_FROM_SOURCE ? d->ident : d->replaces;
}

int fs_rename(struct fs *fs, struct node *dir, const char *name,
	      struct node *newdir, const char *newname, unsigned flags)
{
	struct dentry *src, *dst;
	char *from = NULL, *to = NULL;
	int err;

	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) ||
	    (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE))
		return -EINVAL;
	err = check_name(newname, false);
	if (!err)
		err = fs_scan(fs, dir);
	if (!err)
		err = fs_scan(fs, newdir);
	if (err)
		return err;
	/* a directory replaced by the rename must be known to be empty */
	pthread_mutex_lock(&fs->ns.lock);
	dst = ns_find(&fs->ns, newdir, newname);
	pthread_mutex_unlock(&fs->ns.lock);
	if (dst && S_ISDIR(dst->node->mode) && (err = fs_scan(fs, dst->node)))
		return err;

	pthread_mutex_lock(&fs->ns.lock);
	src = ns_find(&fs->ns, dir, name);
	dst = ns_find(&fs->ns, newdir, newname);
	if (!src) {
		err = -ENOENT;
		goto out;
	}
	if (src == dst || (dst && src->node == dst->node &&
			   !(flags & RENAME_EXCHANGE)))
		goto out; /* same file: rename(2) does nothing */
	err = rename_check(src, dst, newdir, flags);
	if (err)
		goto out;
	from = ns_child_path(&fs->ns, dir, name);
	to = ns_child_path(&fs->ns, newdir, newname);
	if (!from || !to) {
		err = -ENOMEM;
		goto out;
	}
	err = fs_journal(fs, J_RENAME, from, to, 0, 0,
			 flags & RENAME_EXCHANGE, src->node);
	if (err)
		goto out;
	if (dst) /* its SOURCE ctime moves too (sync.c, write_meta) */
		dst->node->flags |= N_SRC_MOVED;
	fs_touch_mc(dir);
	fs_touch_mc(newdir);
	fs_touch_c(src->node);
	if (flags & RENAME_EXCHANGE) {
		fs_touch_c(dst->node);
		ns_exchange(&fs->ns, src, dst);
	} else {
		if (dst) {
			fs_touch_c(dst->node);
			/*
			 * A new file may replace, in SOURCE, the file it was
			 * first renamed over and no other: the replay leaves
			 * that file at the new file's name (the new file is
			 * not in SOURCE to be moved), and moves it along with
			 * every later rename, over whatever it replaces.
			 */
			if (!(src->node->flags & N_FROM_SOURCE) &&
			    !src->node->replaces.ino &&
			    !(src->node->flags & N_STANDIN_BUSY))
				stand_in(fs, src->node, dst->node);
		}
		err = ns_move(&fs->ns, src, newdir, newname);
	}
out:
	pthread_mutex_unlock(&fs->ns.lock);
	free(from);
	free(to);
	return err;
}

int fs_readlink(struct fs *fs, struct node *n, char **target)
{
	int err = 0;

	pthread_mutex_lock(&fs->ns.lock);
	if (!S_ISLNK(n->mode))
		err = -EINVAL;
	else if (!(*target = strdup(n->target)))
		err = -ENOMEM;
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

int fs_opendir(struct fs *fs, struct node *dir, struct fs_dir **out)
{
	struct fs_dir *d;
	struct dentry *e;
	size_t i = 0;
	int err = fs_scan(fs, dir);

	if (err)
		return err;
	fs_refresh(fs, dir);
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	pthread_mutex_lock(&fs->ns.lock);
	d->ents = calloc(dir->nchildren + 1, sizeof(*d->ents));
	if (!d->ents) {
		err = -ENOMEM;
		goto out;
	}
	for (e = dir->first; e; e = e->next, i++) {
		d->ents[i].name = strdup(e->name);
		d->ents[i].node = e->node;
		ns_pin(e->node);
		if (!d->ents[i].name) {
			d->count = i + 1;
			err = -ENOMEM;
			goto out;
		}
	}
	d->count = i;
	d->next = fs->dirs;
	if (fs->dirs)
		fs->dirs->prev = d;
	fs->dirs = d;
out:
	pthread_mutex_unlock(&fs->ns.lock);
	if (err) {
		fs_closedir(fs, d);
		return err;
	}
	*out = d;
	return 0;
}

void fs_closedir(struct fs *fs, struct fs_dir *d)
{
	pthread_mutex_lock(&fs->ns.lock);
	for (size_t i = 0; i < d->count; i++) {
		free(d->ents[i].name);
		ns_unpin(&fs->ns, d->ents[i].node);
	}
	if (d->prev)
		d->prev->next = d->next;
	else if (fs->dirs == d)
		fs->dirs = d->next;
	if (d->next)
		d->next->prev = d->prev;
	pthread_mutex_unlock(&fs->ns.lock);
	free(d->ents);
	free(d);
}

/*
 * Only user.* and trusted.* names are kept: they are what SOURCE can
 * take back (the kernel lets only CAP_SYS_ADMIN near trusted.*). Other
 * namespaces: EOPNOTSUPP, except security.*, which tmpfs and ext4 know:
 * reading or removing a name there finds nothing (ENODATA), setting one
 * is not supported. Returns 0, or -ENODATA / -EOPNOTSUPP / -ERANGE.
 */
static int xattr_name_ok(const char *name, bool set)
{
	if (!ns_xattr_kept(name))
		return !set && strncmp(name, "security.", 9) == 0 ? -ENODATA
								  : -EOPNOTSUPP;
	if (strlen(name) > 255)
		return -ERANGE;
	return 0;
}

/*
 * user.h5memfs.volatile is not stored: it is the file's N_VOLATILE flag,
 * shown as "1" while set. Returns 1 when `name` is not that attribute.
 */
static int volatile_get(struct fs *fs, struct node *n, const char *name,
			void *buf, size_t size, size_t *len)
{
	int err = 0;

	if (strcmp(name, FS_VOLATILE_XATTR) != 0)
		return 1;
	pthread_mutex_lock(&fs->ns.lock);
	if (!(n->flags & N_VOLATILE))
		err = -ENODATA;
	else if (size && size < 1)
		err = -ERANGE;
	else if (size)
		*(char *)buf = '1';
	*len = 1;
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

static int volatile_set(struct fs *fs, struct node *n, const char *name,
			const void *value, size_t size, int flags)
{
	bool on;

	if (strcmp(name, FS_VOLATILE_XATTR) != 0)
		return 1;
	if (!S_ISREG(n->mode))
		return -EINVAL;
	if (size == 1 && (*(const char *)value == '1' ||
			  *(const char *)value == '0'))
		on = *(const char *)value == '1';
	else
		return -EINVAL;
	pthread_mutex_lock(&fs->ns.lock);
	if ((flags & XATTR_CREATE) && (n->flags & N_VOLATILE)) {
		pthread_mutex_unlock(&fs->ns.lock);
		return -EEXIST;
	}
	if (on)
		n->flags |= N_VOLATILE;
	else
		n->flags &= ~(unsigned)N_VOLATILE;
	pthread_mutex_unlock(&fs->ns.lock);
	return 0;
}

int fs_getxattr(struct fs *fs, struct node *n, const char *name, void *buf,
		size_t size, size_t *len)
{
	int err = volatile_get(fs, n, name, buf, size, len);

	if (err <= 0)
		return err;
	err = xattr_name_ok(name, false);
	if (err)
		return err;
	err = fs_load_xattrs(fs, n, true);
	if (err)
		return err;
	pthread_mutex_lock(&fs->ns.lock);
	err = ns_xattr_get(n, name, buf, size, len);
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

int fs_setxattr(struct fs *fs, struct node *n, const char *name,
		const void *value, size_t size, int flags)
{
	int err = volatile_set(fs, n, name, value, size, flags);

	if (err <= 0)
		return err;
	err = xattr_name_ok(name, true);
	if (!err && !S_ISREG(n->mode) && !S_ISDIR(n->mode))
		/* as the kernel says for user.*; trusted.* not kept there */
		err = ns_xattr_trusted(name) ? -EOPNOTSUPP : -EPERM;
	if (!err)
		err = fs_load_xattrs(fs, n, true);
	if (err)
		return err;
	pthread_mutex_lock(&fs->ns.lock);
	err = ns_xattr_set(n, name, value, size, flags);
	if (!err)
		fs_touch_c(n);
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

int fs_listxattr(struct fs *fs, struct node *n, bool trusted, char *buf,
		 size_t size, size_t *len)
{
	int err = fs_load_xattrs(fs, n, true);

	if (err)
		return err;
	pthread_mutex_lock(&fs->ns.lock);
	err = ns_xattr_list(n, trusted, buf, size, len);
	if (n->flags & N_VOLATILE) {
		size_t extra = sizeof(FS_VOLATILE_XATTR);

		if (!err && size && size < *len + extra)
			err = -ERANGE;
		else if (!err && size)
			memcpy(buf + *len, FS_VOLATILE_XATTR, extra);
		*len += extra;
	}
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

int fs_removexattr(struct fs *fs, struct node *n, const char *name)
{
	int err;

	if (!strcmp(name, FS_VOLATILE_XATTR)) {
		pthread_mutex_lock(&fs->ns.lock);
		err = n->flags & N_VOLATILE ? 0 : -ENODATA;
		n->flags &= ~(unsigned)N_VOLATILE;
		pthread_mutex_unlock(&fs->ns.lock);
		return err;
	}
	err = xattr_name_ok(name, false);
	if (err)
		return err;
	err = fs_load_xattrs(fs, n, true);
	if (err)
		return err;
	pthread_mutex_lock(&fs->ns.lock);
	err = ns_xattr_remove(n, name);
	if (!err)
		fs_touch_c(n);
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

int fs_statfs(struct fs *fs, struct statvfs *sv)
{
	uint64_t used, bsize = 4096;

	pthread_mutex_lock(&fs->ns.lock);
	for (struct node *n = fs->ns.all; n; n = n->all_next) {
		if (!(n->flags & N_LOADED))
			continue;
		fs_notice_kernel_writes(fs, n);
		ns_account(&fs->ns, n);
	}
	used = fs->ns.mem_used;
	memset(sv, 0, sizeof(*sv));
	sv->f_bsize = sv->f_frsize = bsize;
	sv->f_blocks = fs->o.max_memory / bsize;
	sv->f_bfree = sv->f_bavail =
		used >= fs->o.max_memory ? 0 : (fs->o.max_memory - used) / bsize;
	sv->f_files = fs->ns.nodes + sv->f_bfree;
	sv->f_ffree = sv->f_favail = sv->f_bfree;
	sv->f_namemax = NAME_MAX;
	pthread_mutex_unlock(&fs->ns.lock);
	return 0;
}
