/*
 * sync.c - setting up a mount and writing it back to SOURCE.
 *
 * Write-back order: replay the journal (SOURCE's namespace becomes the
 * mount's), write every dirty file atomically, then metadata, deepest
 * directories last, so that directory times end as the mount shows them.
 * One pass at a time (sync_lock); since only a pass replays the journal,
 * SOURCE's namespace holds still while a pass writes files.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../backing/writeback.h"
#include "../core/log.h"
#include "internal.h"

int fs_init(struct fs *fs, const char *source, const struct fs_opts *o)
{
	struct stat st = { .st_mode = S_IFDIR | 0755 };
	int err;

	memset(fs, 0, sizeof(*fs));
	fs->o = *o;
	fs->src.root = -1;
	jrn_init(&fs->jrn);
	pthread_mutex_init(&fs->replay_lock, NULL);
	pthread_mutex_init(&fs->sync_lock, NULL);
	if (source) {
		err = src_open(&fs->src, source);
		if (!err && fstat(fs->src.root, &st) < 0)
			err = -errno;
		if (err) {
			src_close(&fs->src);
			return err;
		}
		fs->has_source = true;
	}
	err = ns_init(&fs->ns, st.st_mode, o->page_size);
	if (err) {
		src_close(&fs->src);
		return err;
	}
	if (source) {
		struct node *r = fs->ns.root;

		r->uid = st.st_uid;
		r->gid = st.st_gid;
		r->atime = st.st_atim;
		r->mtime = st.st_mtim;
		r->ctime = st.st_ctim;
		r->flags = N_FROM_SOURCE;
		r->src_nlink = (unsigned)st.st_nlink;
	}
	return 0;
}

void fs_destroy(struct fs *fs)
{
	fs_hlinks_free(fs);
	ns_destroy(&fs->ns);
	jrn_destroy(&fs->jrn);
	src_close(&fs->src);
	pthread_mutex_destroy(&fs->replay_lock);
	pthread_mutex_destroy(&fs->sync_lock);
}

int fs_journal(struct fs *fs, enum jop_kind kind, const char *p1,
	       const char *p2, mode_t mode, dev_t rdev, unsigned flags)
{
	if (fs->o.volatile_ || !fs->has_source)
		return 0;
	return jrn_add(&fs->jrn, kind, p1, p2, mode, rdev, flags);
}

char *fs_source_path_locked(struct fs *fs, const struct node *n)
{
	bool unlinked;
	char *p = ns_path(&fs->ns, n, &unlinked), *s;

	if (!p)
		return NULL;
	s = jrn_source_path(&fs->jrn, p);
	free(p);
	return s;
}

static bool writes_source(const struct fs *fs)
{
	return fs->has_source && !fs->o.volatile_;
}

/*
 * Errors that say SOURCE's namespace no longer matches the journal
 * (someone changed it behind the mount): the operation is dropped with a
 * warning instead of blocking every later write-back.
 */
static bool structural(int err)
{
	return err == -EEXIST || err == -ENOTEMPTY || err == -ENOTDIR ||
	       err == -EISDIR || err == -ELOOP || err == -EINVAL ||
	       err == -EXDEV || err == -EMLINK;
}

static int replay_all(struct fs *fs)
{
	int err = 0;

	pthread_mutex_lock(&fs->replay_lock);
	for (;;) {
		struct jop *op;

		pthread_mutex_lock(&fs->ns.lock);
		op = fs->jrn.head;
		pthread_mutex_unlock(&fs->ns.lock);
		if (!op)
			break;
		err = wb_replay(&fs->src, op);
		if (err && structural(err)) {
			log_warn("SOURCE changed behind the mount: %s of %s "
				 "skipped (%s)",
				 op->kind == J_RENAME ? "rename" : "change",
				 op->p1, strerror(-err));
			err = 0;
		}
		if (err) {
			log_err("cannot update SOURCE for %s: %s", op->p1,
				strerror(-err));
			break;
		}
		pthread_mutex_lock(&fs->ns.lock);
		jrn_pop(&fs->jrn);
		pthread_mutex_unlock(&fs->ns.lock);
	}
	pthread_mutex_unlock(&fs->replay_lock);
	return err;
}

static void xattrs_free(struct xattr *x)
{
	while (x) {
		struct xattr *next = x->next;

		free(x->name);
		free(x->value);
		free(x);
		x = next;
	}
}

static struct xattr *xattrs_copy(const struct xattr *x)
{
	struct xattr *head = NULL, **tail = &head;

	for (; x; x = x->next) {
		struct xattr *c = calloc(1, sizeof(*c));

		if (!c || !(c->name = strdup(x->name)) ||
		    !(c->value = malloc(x->size ? x->size : 1))) {
			if (c)
				free(c->name);
			free(c);
			xattrs_free(head);
			return NULL;
		}
		memcpy(c->value, x->value, x->size);
		c->size = x->size;
		*tail = c;
		tail = &c->next;
	}
	return head;
}

static void paths_free(char **p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(p[i]);
	free(p);
}

/*
 * The SOURCE paths of every name of n, and a copy of what the write
 * needs. Caller holds replay_lock and ns.lock.
 */
static int snapshot_file(struct fs *fs, struct node *n, struct wb_file *f)
{
	struct dentry *d;
	size_t i = 0;

	memset(f, 0, sizeof(*f));
	f->paths = calloc(n->nlinks, sizeof(*f->paths));
	if (!f->paths)
		return -ENOMEM;
	for (d = n->links; d; d = d->lnext, i++) {
		char *mp = ns_child_path(&fs->ns, d->dir, d->name);

		f->paths[i] = mp ? jrn_source_path(&fs->jrn, mp) : NULL;
		free(mp);
		if (!f->paths[i]) {
			paths_free(f->paths, i);
			return -ENOMEM;
		}
	}
	f->npaths = i;
	f->fd = n->img.fd;
	f->mode = n->mode;
	f->uid = n->uid;
	f->gid = n->gid;
	f->atime = n->atime;
	f->mtime = n->mtime;
	f->xattrs = xattrs_copy(n->xattrs);
	if (n->xattrs && !f->xattrs) {
		paths_free(f->paths, i);
		return -ENOMEM;
	}
	return img_size(&n->img, &f->size);
}

/* Parents of n: their time in SOURCE changed; fix it at the next pass. */
static void parents_touched(struct node *n)
{
	for (struct dentry *d = n->links; d; d = d->lnext)
		d->dir->flags |= N_META_DIRTY;
}

/* Write one dirty regular file. sync_lock held. */
static int write_file(struct fs *fs, struct node *n)
{
	struct src_ident id;
	struct wb_file f;
	int err;

	err = fs_load_xattrs(fs, n);
	if (err)
		return err;
	pthread_mutex_lock(&n->io);
	pthread_mutex_lock(&fs->replay_lock);
	pthread_mutex_lock(&fs->ns.lock);
	if (!(n->flags & N_DIRTY) || !n->links) {
		if (!n->links) /* deleted: nothing to write, ever */
			n->flags &= ~(unsigned)(N_DIRTY | N_META_DIRTY);
		pthread_mutex_unlock(&fs->ns.lock);
		pthread_mutex_unlock(&fs->replay_lock);
		pthread_mutex_unlock(&n->io);
		return 0;
	}
	err = snapshot_file(fs, n, &f);
	pthread_mutex_unlock(&fs->ns.lock);
	pthread_mutex_unlock(&fs->replay_lock);
	if (!err) {
		err = wb_write_file(&fs->src, &f, &id);
		if (err)
			log_err("cannot write back %s: %s", f.paths[0],
				strerror(-err));
		paths_free(f.paths, f.npaths);
		xattrs_free((struct xattr *)f.xattrs);
	}
	pthread_mutex_lock(&fs->ns.lock);
	if (!err) {
		n->flags &= ~(unsigned)(N_DIRTY | N_META_DIRTY);
		n->flags |= N_FROM_SOURCE;
		n->ident = id;
		img_clear_dirty(&n->img);
		parents_touched(n);
		fs->stats.writebacks++;
		fs->stats.writeback_bytes += f.size;
	} else {
		fs->stats.writeback_errors++;
	}
	pthread_mutex_unlock(&fs->ns.lock);
	pthread_mutex_unlock(&n->io);
	return err;
}

/* Make SOURCE's metadata of n the mount's. sync_lock held. */
static int write_meta(struct fs *fs, struct node *n)
{
	struct wb_meta m;
	struct xattr *xa = NULL;
	char *path;
	int err;

	err = fs_load_xattrs(fs, n);
	if (err)
		return err;
	pthread_mutex_lock(&fs->replay_lock);
	pthread_mutex_lock(&fs->ns.lock);
	if (!(n->flags & N_META_DIRTY) ||
	    (!n->links && n != fs->ns.root)) {
		pthread_mutex_unlock(&fs->ns.lock);
		pthread_mutex_unlock(&fs->replay_lock);
		return 0;
	}
	n->flags &= ~(unsigned)N_META_DIRTY;
	path = fs_source_path_locked(fs, n);
	m = (struct wb_meta){ n->mode, n->uid, n->gid, n->atime, n->mtime,
			      NULL };
	xa = xattrs_copy(n->xattrs);
	m.xattrs = xa;
	pthread_mutex_unlock(&fs->ns.lock);
	pthread_mutex_unlock(&fs->replay_lock);
	err = path ? wb_set_meta(&fs->src, path, &m) : -ENOMEM;
	if (err == -ENOENT)
		err = 0; /* not in SOURCE (yet): its creation sets it */
	if (err) {
		log_err("cannot set attributes of %s in SOURCE: %s", path,
			strerror(-err));
		pthread_mutex_lock(&fs->ns.lock);
		n->flags |= N_META_DIRTY;
		pthread_mutex_unlock(&fs->ns.lock);
	}
	xattrs_free(xa);
	free(path);
	return err;
}

int fs_fsync(struct fs *fs, struct node *n)
{
	int err;

	if (!writes_source(fs))
		return 0;
	pthread_mutex_lock(&fs->sync_lock);
	err = replay_all(fs);
	if (!err && S_ISREG(n->mode) && (n->flags & N_DIRTY))
		err = write_file(fs, n);
	if (!err)
		err = write_meta(fs, n);
	pthread_mutex_unlock(&fs->sync_lock);
	return err;
}

static unsigned depth(const struct node *n)
{
	unsigned d = 0;

	while (n->links) {
		d++;
		n = n->links->dir;
	}
	return d;
}

/* Pin every node with one of `flags` set. ns.lock held. */
static struct node **collect(struct fs *fs, unsigned flags, size_t *count)
{
	struct node **v, *n;
	size_t i = 0, cap = 0;

	for (n = fs->ns.all; n; n = n->all_next)
		cap += (n->flags & flags) != 0;
	v = malloc((cap ? cap : 1) * sizeof(*v));
	if (!v)
		return NULL;
	for (n = fs->ns.all; n && i < cap; n = n->all_next) {
		if (n->flags & flags) {
			ns_pin(n);
			v[i++] = n;
		}
	}
	*count = i;
	return v;
}

static int by_depth_desc(const void *a, const void *b)
{
	unsigned da = depth(*(struct node *const *)a);
	unsigned db = depth(*(struct node *const *)b);

	return da < db ? 1 : da > db ? -1 : 0;
}

static void release(struct fs *fs, struct node **v, size_t count)
{
	pthread_mutex_lock(&fs->ns.lock);
	for (size_t i = 0; i < count; i++)
		ns_unpin(&fs->ns, v[i]);
	pthread_mutex_unlock(&fs->ns.lock);
	free(v);
}

int fs_sync_all(struct fs *fs, unsigned *failed)
{
	struct node **v;
	size_t count = 0;
	unsigned bad = 0;
	int err, first = 0;

	if (failed)
		*failed = 0;
	if (!writes_source(fs))
		return 0;
	pthread_mutex_lock(&fs->sync_lock);
	err = replay_all(fs);
	if (err) {
		first = err;
		bad++;
	}
	pthread_mutex_lock(&fs->ns.lock);
	v = collect(fs, N_DIRTY, &count);
	pthread_mutex_unlock(&fs->ns.lock);
	for (size_t i = 0; v && i < count; i++) {
		if (!S_ISREG(v[i]->mode))
			continue;
		err = write_file(fs, v[i]);
		if (err && !first)
			first = err;
		bad += err != 0;
	}
	if (v)
		release(fs, v, count);
	pthread_mutex_lock(&fs->ns.lock);
	v = collect(fs, N_META_DIRTY, &count);
	pthread_mutex_unlock(&fs->ns.lock);
	if (v) {
		pthread_mutex_lock(&fs->ns.lock);
		qsort(v, count, sizeof(*v), by_depth_desc);
		pthread_mutex_unlock(&fs->ns.lock);
		for (size_t i = 0; i < count; i++) {
			err = write_meta(fs, v[i]);
			if (err && !first)
				first = err;
			bad += err != 0;
		}
		release(fs, v, count);
	}
	pthread_mutex_unlock(&fs->sync_lock);
	if (!v && !first)
		first = -ENOMEM;
	if (failed)
		*failed = bad;
	return first;
}
