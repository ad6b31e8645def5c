/*
 * names.c - FUSE glue for names and attributes: lookup, forget,
 * getattr, setattr, create-like ops, unlink, rename, directories.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ll.h"

void ll_reply_entry(fuse_req_t req, int err, struct node *n,
		    const struct stat *st)
{
	struct h5m *m = ll_ctx(req);
	struct fuse_entry_param e;

	if (err == -ENOENT) {
		/*
		 * Cache the miss; for a second only over a SOURCE, where
		 * another node may make the name (refresh.c).
		 */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = m->fs.has_source && !m->fs.o.volatile_ ?
				  1.0 : m->timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = ll_ino(m, n);
	e.attr = *st;
	e.attr_timeout = m->timeout;
	e.entry_timeout = m->timeout;
	if (fuse_reply_entry(req, &e) == -ENOENT) /* interrupted: undo */
		fs_forget(&m->fs, n, 1);
}

void ll_reply_attr(fuse_req_t req, int err, const struct stat *st)
{
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_attr(req, st, ll_ctx(req)->timeout);
}

void ll_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct node *n = NULL;
	struct stat st;
	int err = fs_lookup(&ll_ctx(req)->fs, ll_node(req, parent), name, &n,
			    &st);

	ll_reply_entry(req, err, n, &st);
}

void ll_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	if (ino != FUSE_ROOT_ID)
		fs_forget(&ll_ctx(req)->fs, ll_node(req, ino), nlookup);
	fuse_reply_none(req);
}

void ll_op_forget_multi(fuse_req_t req, size_t count,
			struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		if (forgets[i].ino != FUSE_ROOT_ID)
			fs_forget(&ll_ctx(req)->fs,
				  ll_node(req, forgets[i].ino),
				  forgets[i].nlookup);
	fuse_reply_none(req);
}

void ll_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int err = fs_getattr(&ll_ctx(req)->fs, ll_node(req, ino), &st);

	(void)fi;
	ll_reply_attr(req, err, &st);
}

void ll_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		   int to_set, struct fuse_file_info *fi)
{
	static const struct {
		int fuse, fs;
	} map[] = {
		{ FUSE_SET_ATTR_MODE, FS_SET_MODE },
		{ FUSE_SET_ATTR_UID, FS_SET_UID },
		{ FUSE_SET_ATTR_GID, FS_SET_GID },
		{ FUSE_SET_ATTR_SIZE, FS_SET_SIZE },
		{ FUSE_SET_ATTR_ATIME, FS_SET_ATIME },
		{ FUSE_SET_ATTR_MTIME, FS_SET_MTIME },
		{ FUSE_SET_ATTR_ATIME_NOW, FS_SET_ATIME_NOW },
		{ FUSE_SET_ATTR_MTIME_NOW, FS_SET_MTIME_NOW },
		{ FUSE_SET_ATTR_CTIME, FS_SET_CTIME },
	};
	struct stat st;
	int set = 0, err;

	(void)fi;
	if (ll_frozen(req))
		return;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (to_set & map[i].fuse)
			set |= map[i].fs;
	err = fs_setattr(&ll_ctx(req)->fs, ll_node(req, ino), attr, set, &st);
	ll_reply_attr(req, err, &st);
}

void ll_op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char *target = NULL;
	int err = fs_readlink(&ll_ctx(req)->fs, ll_node(req, ino), &target);

	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_readlink(req, target);
	free(target);
}

void ll_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode, dev_t rdev)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	struct node *n = NULL;
	struct stat st;
	int err;

	if (ll_frozen(req))
		return;
	err = fs_mknod(&ll_ctx(req)->fs, ll_node(req, parent), name, mode,
		       c->umask, rdev, c->uid, c->gid, &n, &st);
	ll_reply_entry(req, err, n, &st);
}

void ll_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	struct node *n = NULL;
	struct stat st;
	int err;

	if (ll_frozen(req))
		return;
	err = fs_mkdir(&ll_ctx(req)->fs, ll_node(req, parent), name, mode,
		       c->umask, c->uid, c->gid, &n, &st);
	ll_reply_entry(req, err, n, &st);
}

void ll_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		   const char *name)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	struct node *n = NULL;
	struct stat st;
	int err;

	if (ll_frozen(req))
		return;
	err = fs_symlink(&ll_ctx(req)->fs, ll_node(req, parent), name,
		     link, c->uid, c->gid, &n, &st);
	ll_reply_entry(req, err, n, &st);
}

void ll_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		const char *newname)
{
	struct node *n = ll_node(req, ino);
	struct stat st;
	int err;

	if (ll_frozen(req))
		return;
	err = fs_link(&ll_ctx(req)->fs, n, ll_node(req, newparent),
		  newname, &st);
	ll_reply_entry(req, err, n, &st);
}

void ll_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (ll_frozen(req))
		return;
	fuse_reply_err(req, -fs_unlink(&ll_ctx(req)->fs, ll_node(req, parent),
				       name));
}

void ll_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (ll_frozen(req))
		return;
	fuse_reply_err(req, -fs_rmdir(&ll_ctx(req)->fs, ll_node(req, parent),
				      name));
}

void ll_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		  fuse_ino_t newparent, const char *newname,
		  unsigned int flags)
{
	if (ll_frozen(req))
		return;
	fuse_reply_err(req, -fs_rename(&ll_ctx(req)->fs, ll_node(req, parent),
				       name, ll_node(req, newparent), newname,
				       flags));
}

void ll_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_dir *d = NULL;
	int err = fs_opendir(&ll_ctx(req)->fs, ll_node(req, ino), &d);

	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	/*
	 * The kernel may keep listings. It drops its copy itself when the
	 * directory changes through the mount; when SOURCE changed it
	 * (fs_opendir merged new names), or when the next READDIR must
	 * come here to move atime, it is told to drop it now.
	 */
	fi->cache_readdir = 1;
	fi->keep_cache = d->unchanged &&
			 !fs_atime_due(&ll_ctx(req)->fs, ll_node(req, ino));
	if (fuse_reply_open(req, fi) == -ENOENT)
		fs_closedir(&ll_ctx(req)->fs, d);
}

/*
 * Position 0 is ".", 1 is "..", 2 + i the snapshot's entry i; the
 * offset given with each entry is the position of the next.
 * Readdirplus gives the kernel a reference to each entry but the dots.
 */
static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi, bool plus)
{
	struct h5m *m = ll_ctx(req);
	struct fs_dir *d = (struct fs_dir *)(uintptr_t)fi->fh;
	char *buf = malloc(size), *p = buf;
	size_t left = size;

	if (!buf || fs_readdir_fill(&m->fs, d) < 0) {
		free(buf);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	__atomic_add_fetch(&m->fs.stats.readdirs, 1, __ATOMIC_RELAXED);
	if (fs_accessed(&m->fs, ll_node(req, ino)))
		fuse_lowlevel_notify_inval_inode(m->se, ino, -1, 0);
	for (; (size_t)off < d->count + 2; off++) {
		struct fuse_entry_param e = { 0 };
		const char *name;
		struct node *n = NULL;
		size_t used;

		if (off < 2) {
			name = off == 0 ? "." : "..";
			e.attr.st_ino = ino;
			e.attr.st_mode = S_IFDIR;
		} else {
			n = d->ents[off - 2].node;
			name = d->ents[off - 2].name;
			if (plus) {
				fs_ref(&m->fs, n, &e.attr);
				e.ino = ll_ino(m, n);
				e.attr_timeout = e.entry_timeout = m->timeout;
			} else {
				fs_getattr(&m->fs, n, &e.attr);
			}
		}
		used = plus ? fuse_add_direntry_plus(req, p, left, name, &e,
						     off + 1)
			    : fuse_add_direntry(req, p, left, name, &e.attr,
						off + 1);
		if (used > left) {
			if (plus && n)
				fs_forget(&m->fs, n, 1);
			break;
		}
		p += used;
		left -= used;
	}
	fuse_reply_buf(req, buf, size - left);
	free(buf);
}

void ll_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, off, fi, false);
}

void ll_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, off, fi, true);
}

void ll_op_releasedir(fuse_req_t req, fuse_ino_t ino,
		      struct fuse_file_info *fi)
{
	(void)ino;
	fs_closedir(&ll_ctx(req)->fs, (struct fs_dir *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

void ll_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
		    struct fuse_file_info *fi)
{
	(void)datasync;
	(void)fi;
	ll_writeback_request(req, ino, LL_FSYNC);
}
