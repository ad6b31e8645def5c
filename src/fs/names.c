/*
 * names.c - namespace operations of the mount: lookup, create, link,
 * unlink, rename, readlink, directory snapshots for readdir.
 *
 * Each change is made in memory at once and journalled for SOURCE.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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

/*
 * Common part of every create: scan, check, make the node, link it.
 * On success returns 0 holding ns.lock (the caller journals the change
 * and unlocks, or undoes it with create_undo_and_unlock); *out and *made
 * are the new node, *out with a kernel reference, *st its attributes.
 * On failure returns -errno with no lock held.
 */
static int create_node_and_lock(struct fs *fs, struct node *dir,
				const char *name, mode_t mode, mode_t umask,
				uid_t uid, gid_t gid, struct node **out,
				struct stat *st, struct node **made)
{
	struct node *n;
	int err = check_name(name, S_ISREG(mode));

	if (!err)
		err = fs_scan(fs, dir);
	/* its default ACL, if any, decides the new node's permissions */
	if (!err && !S_ISLNK(mode))
		err = fs_load_xattrs(fs, dir, true);
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
	/* the node and its name count in max_memory too */
	err = fs_meta_room_locked(fs, ns_node_cost(S_ISREG(mode)) +
					      ns_name_cost(name));
	if (err)
		goto out;
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
	err = S_ISLNK(mode) ? 0 : fs_acl_inherit_locked(dir, n, &n->mode,
							 umask);
	if (!err)
		err = ns_link(&fs->ns, dir, name, n);
	if (err) {
		ns_maybe_free(&fs->ns, n);
		goto out;
	}
	fs_touch_mc(dir);
	*made = n;
	*out = n;
	give_ref(n, st);
	return 0; /* still locked: see above */
out:
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

/*
 * Undo create_node_and_lock after a journal failure. ns.lock held;
 * returns `err` without it.
 */
static int create_undo_and_unlock(struct fs *fs, struct node *dir,
				  const char *name, struct node *n, int err)
{
	n->nlookup--;
	ns_unlink(&fs->ns, ns_find(&fs->ns, dir, name));
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

int fs_mknod(struct fs *fs, struct node *dir, const char *name, mode_t mode,
	     mode_t umask, dev_t rdev, uid_t uid, gid_t gid,
	     struct node **out, struct stat *st)
{
	struct node *n;
	char *path;
	int err;

	if (!S_ISREG(mode) && !S_ISFIFO(mode) && !S_ISSOCK(mode) &&
	    !S_ISCHR(mode) && !S_ISBLK(mode))
		return -EINVAL;
	err = create_node_and_lock(fs, dir, name, mode, umask, uid, gid, out,
				   st, &n);
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
	err = path ? fs_journal(fs, J_MKNOD, path, NULL, n->mode, rdev, 0,
				NULL, NULL) :
		     -ENOMEM;
	free(path);
	if (err)
		return create_undo_and_unlock(fs, dir, name, n, err);
	pthread_mutex_unlock(&fs->ns.lock);
	return 0;
}

int fs_mkdir(struct fs *fs, struct node *dir, const char *name, mode_t mode,
	     mode_t umask, uid_t uid, gid_t gid, struct node **out,
	     struct stat *st)
{
	struct node *n;
	char *path;
	int err;

	err = create_node_and_lock(fs, dir, name, S_IFDIR | (mode & 07777),
				   umask, uid, gid, out, st, &n);
	if (err)
		return err;
	path = ns_child_path(&fs->ns, dir, name);
	err = path ? fs_journal(fs, J_MKDIR, path, NULL, n->mode, 0, 0, NULL,
				 NULL) :
		     -ENOMEM;
	free(path);
	if (err)
		return create_undo_and_unlock(fs, dir, name, n, err);
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
	err = create_node_and_lock(fs, dir, name, S_IFLNK | 0777, 0, uid, gid,
				   out, st, &n);
	if (err)
		return err;
	n->target = strdup(target);
	ns_meta_account(&fs->ns, n);
	path = ns_child_path(&fs->ns, dir, name);
	err = n->target && path ?
		      fs_journal(fs, J_SYMLINK, path, target, 0, 0, 0,
				 NULL, NULL) :
		      -ENOMEM;
	free(path);
	if (err)
		return create_undo_and_unlock(fs, dir, name, n, err);
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
	} else {
		err = fs_meta_room_locked(fs, ns_name_cost(name));
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
	err = fs_journal(fs, J_LINK, from, to, 0, 0, 0, n, NULL);
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
			 0, n, NULL);
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
 * (standin_settle in wbfile.c). ns.lock held.
 */
static void stand_in(struct fs *fs, struct node *s, struct node *d)
{
	if (fs_wb_replacing(fs, d)) {
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
			 flags & RENAME_EXCHANGE, src->node,
			 dst ? dst->node : NULL);
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

/* Free a snapshot's entries and unpin their nodes. ns.lock held. */
static void release_entries(struct fs *fs, struct fs_dir *d)
{
	for (size_t i = 0; i < d->count; i++) {
		free(d->ents[i].name);
		ns_unpin(&fs->ns, d->ents[i].node);
	}
	free(d->ents);
	d->ents = NULL;
	d->count = 0;
}

int fs_opendir(struct fs *fs, struct node *dir, struct fs_dir **out)
{
	struct fs_dir *d;
	int err = fs_scan(fs, dir);

	if (err)
		return err;
	fs_refresh(fs, dir);
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	pthread_mutex_lock(&fs->ns.lock);
	d->dir = dir;
	ns_pin(dir);
	d->unchanged = dir->listed_gen == dir->list_gen;
	dir->listed_gen = dir->list_gen;
	d->next = fs->dirs;
	if (fs->dirs)
		fs->dirs->prev = d;
	fs->dirs = d;
	pthread_mutex_unlock(&fs->ns.lock);
	*out = d;
	return 0;
}

int fs_readdir_fill(struct fs *fs, struct fs_dir *d)
{
	struct node *dir = d->dir;
	struct dentry *e;
	size_t i = 0;
	int err = 0;

	pthread_mutex_lock(&fs->ns.lock);
	if (d->filled)
		goto out;
	d->ents = calloc(dir->nchildren + 1, sizeof(*d->ents));
	if (!d->ents) {
		err = -ENOMEM;
		goto out;
	}
	for (e = dir->first; e; e = e->next, i++) {
		d->ents[i].name = strdup(e->name);
		if (!d->ents[i].name) {
			err = -ENOMEM;
			break;
		}
		d->ents[i].node = e->node;
		ns_pin(e->node);
	}
	d->count = i;
	if (err) { /* try again at the next READDIR */
		release_entries(fs, d);
		goto out;
	}
	d->filled = true;
out:
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

void fs_closedir(struct fs *fs, struct fs_dir *d)
{
	pthread_mutex_lock(&fs->ns.lock);
	release_entries(fs, d);
	if (d->prev)
		d->prev->next = d->next;
	else if (fs->dirs == d)
		fs->dirs = d->next;
	if (d->next)
		d->next->prev = d->prev;
	ns_unpin(&fs->ns, d->dir);
	pthread_mutex_unlock(&fs->ns.lock);
	free(d);
}
