/*
 * wbfile.c - writing one node back to SOURCE: a dirty file's data
 * (validated, checked for a conflict with a change made in SOURCE
 * behind the mount, written atomically), and a node's metadata. The
 * passes that call these are in sync.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../backing/writeback.h"
#include "../core/log.h"
#include "../h5/h5check.h"
#include "internal.h"

/*
 * The write-back of fs->wb_busy ended: SOURCE's file at its name is now
 * `now` (NULL: still `before`). New files renamed over it meanwhile take
 * that file as their stand-in, and operations journalled over it
 * meanwhile expect that file at their target (base.c, expect); without
 * `now` they keep what they expected. ns.lock held.
 */
static void standin_settle(struct fs *fs, const struct src_ident *before,
			   const struct src_ident *now)
{
	fs->wb_busy = NULL;
	if (!fs->wb_busy_replaced)
		return;
	fs->wb_busy_replaced = false;
	for (struct node *m = fs->ns.all; m; m = m->all_next) {
		if (!(m->flags & N_STANDIN_BUSY))
			continue;
		m->flags &= ~(unsigned)N_STANDIN_BUSY;
		m->replaces = now ? *now : *before;
	}
	for (struct jop *op = fs->jrn.head; op; op = op->next) {
		if (!op->settle)
			continue;
		op->settle = false;
		if (!now)
			continue;
		op->expect = JX_IDENT;
		op->was_mode = S_IFREG;
		op->was = *now;
		op->was_ctime = true; /* our own rename made it */
	}
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
	f->old = -1;
	f->fd = n->file->img.fd;
	f->mode = n->mode;
	f->uid = n->uid;
	f->gid = n->gid;
	f->atime = n->atime;
	f->mtime = n->mtime;
	f->xattrs = xattrs_copy(n->xattrs);
	/* only changed pages, when the image is SOURCE's file plus edits */
	if ((n->flags & N_FROM_SOURCE) && n->ident.ino &&
	    (!fs_kernel_writes(fs) || n->file->img.sums))
		f->pages = &n->file->img;
	if (n->xattrs && !f->xattrs) {
		paths_free(f->paths, i);
		return -ENOMEM;
	}
	return img_size(&n->file->img, &f->size);
}

/* Parents of n: their time in SOURCE changed; fix it at the next pass. */
static void parents_touched(struct node *n)
{
	for (struct dentry *d = n->links; d; d = d->lnext)
		d->dir->flags |= N_META_DIRTY;
}

static void set_result(struct node *n, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_result(struct node *n, int err, const char *fmt, ...)
{
	va_list ap;

	if (!n->wb && !(n->wb = calloc(1, sizeof(*n->wb))))
		return; /* ENOMEM: status shows the previous result */
	n->wb->err = err;
	n->wb->when = ns_now();
	va_start(ap, fmt);
	vsnprintf(n->wb->note, sizeof(n->wb->note), fmt, ap);
	va_end(ap);
}

/*
 * xattrs SOURCE would not store: logged and reported, never a reason to
 * keep the data from landing. The mount keeps them. ns.lock held.
 */
static void report_refused(struct fs *fs, struct node *n, const char *path,
			   const struct wb_refused *ref)
{
	if (!ref->count)
		return;
	log_warn("SOURCE refused %u extended attribute(s) of %s (%s: %s); "
		 "the rest is written, the mount keeps them", ref->count,
		 path ? fs_shown(path) : "a file", ref->name,
		 strerror(-ref->err));
	fs->stats.writeback_errors++;
	set_result(n, 0, "written; SOURCE refused %u xattr(s) (%s: %s)",
		   ref->count, ref->name, strerror(-ref->err));
}

/*
 * Under validate=strict an HDF5 image libhdf5 cannot open is not
 * written. It is the temporary that is checked, once its data is
 * complete and before it is fsynced and renamed: the bytes validated are
 * the bytes that land, whatever writers do to the image meanwhile. The
 * check runs in a child process (h5_inspect_isolated). Returns 0 to go
 * on, -EIO to refuse. ns.lock not held.
 */
struct check_ctx {
	struct fs *fs;
	struct node *n;
	const char *name;
};

static int validate(void *arg, int fd, uint64_t size)
{
	struct check_ctx *c = arg;
	struct fs *fs = c->fs;
	struct node *n = c->n;
	struct h5_report r;
	int err;

	err = h5_inspect_isolated(fd, size, NULL, &r);
	if (!err && r.is_hdf5 && !r.opens && r.newer && r.sb_sound) {
		/* a newer format, not damage: its frame is sound */
		log_warn("%s is unknown to this libhdf5 (%s), likely a newer "
			 "HDF5 format; its signature and superblock are sound: "
			 "writing it back", c->name, r.why);
		r.opens = true;
	}
	if (err || !r.is_hdf5 || r.opens) {
		pthread_mutex_lock(&fs->ns.lock);
		n->flags &= ~(unsigned)N_INVALID;
		pthread_mutex_unlock(&fs->ns.lock);
		return 0;
	}
	if (fs->o.validate == VALIDATE_WARN) {
		log_warn("%s is not valid HDF5 (%s); writing it back anyway "
			 "(validate=warn)", c->name, r.why);
		return 0;
	}
	pthread_mutex_lock(&fs->ns.lock);
	if (!(n->flags & N_INVALID))
		log_err("not writing back %s: libhdf5 cannot open it (%s%s); "
			"SOURCE keeps its previous version", c->name, r.why,
			r.newer ? ": unknown to this libhdf5, and its "
				  "superblock is not sound" : "");
	n->flags |= N_INVALID;
	fs->stats.invalid++;
	set_result(n, -EIO, "invalid HDF5: %s%s", r.why,
		   r.newer ? " (unknown to this libhdf5)" : "");
	pthread_mutex_unlock(&fs->ns.lock);
	return -EIO;
}

/*
 * If SOURCE's file changed since it was loaded (with `ctime`, its ctime
 * too), point the write at a conflict name beside it. Returns 1 when redirected, 0 when not, or
 * -errno. SOURCE's file stays locked (*lockfd) against other mounts
 * until the caller has replaced it. ns.lock not held; sync_lock held,
 * so this mount's names hold still.
 */
static int check_conflict(struct fs *fs, struct node *n, struct wb_file *f,
			  bool ctime, char **cname, int *lockfd)
{
	struct src_ident now;
	int fd;

	bool source = (n->flags & N_FROM_SOURCE) && n->ident.ino;

	fd = wb_lock(&fs->src, f->paths[0], &now);
	if (fd == -ENOENT) {
		/*
		 * Nothing there (a new file, or gone behind us): write only
		 * where nothing is, since another node may make the name
		 * meanwhile (or a client's stale cache may hide its new file).
		 */
		f->noreplace = true;
		return 0;
	}
	if (fd < 0)
		return fd;
	*lockfd = fd; /* held until the new version is in place */
	/*
	 * Ours to replace: the file we loaded, or the one a new file was
	 * renamed over. A new file meeting anything else (another node made
	 * the same name) is a conflict too.
	 */
	/* a stand-in's ctime moved with the replays that made it one */
	if (fs_same_file(&now, source ? &n->ident : &n->replaces,
			 source && ctime)) {
		f->old = fd; /* what the new version is based on */
		return 0;
	}
	*cname = fs_conflict_name(fs, f->paths[0], 0);
	if (!*cname)
		return -ENOMEM;
	f->paths[0] = *cname;	/* the caller keeps the original to free */
	f->npaths = 1;
	f->noreplace = true;
	return 1;
}

int fs_write_file(struct fs *fs, struct node *n)
{
	struct src_ident id;
	struct wb_file f;
	char *orig = NULL, *cname = NULL, *name = NULL;
	size_t npaths = 0;
	struct src_ident before;
	uint64_t written = 0, gen = 0, snap_size = 0, *sums = NULL;
	size_t nsums = 0;
	int err, conflict = 0, lockfd = -1;
	bool ctime = false;
	struct check_ctx vctx = { fs, n, NULL };
	struct img pages;	/* the marks the copy reads (img_wb_begin) */
	bool io_held = true, begun = false;

	err = fs_load_xattrs(fs, n, false);
	if (err) {
		pthread_mutex_lock(&fs->ns.lock);
		if (fs_wb_result(n)->err != err) {
			char *path = fs_log_path_locked(fs, n);

			log_err("cannot read the xattrs of %s in SOURCE: %s; "
				"it stays in memory", fs_named(path),
				strerror(-err));
			free(path);
		}
		set_result(n, err, "reading its xattrs in SOURCE: %s",
			   strerror(-err));
		pthread_mutex_unlock(&fs->ns.lock);
		return err;
	}
	pthread_mutex_lock(&n->io);
	/* a partial image: SOURCE's bytes it lacks first, however long */
	err = fs_lazy_complete(fs, n);
	if (err) {
		pthread_mutex_lock(&fs->ns.lock);
		set_result(n, err, "loading the rest of it from SOURCE: %s",
			   strerror(-err));
		pthread_mutex_unlock(&fs->ns.lock);
		pthread_mutex_unlock(&n->io);
		return err;
	}
	pthread_mutex_lock(&fs->replay_lock);
	/*
	 * Namespace changes made since the pass replayed (a directory the
	 * file was just created in) go first; on an error the paths are
	 * resolved through the journal as before.
	 */
	fs_replay_and_lock(fs, true);
	fs_notice_kernel_writes(fs, n);
	if (!(n->flags & N_DIRTY) || !n->links || (n->flags & N_VOLATILE)) {
		if (!n->links) /* deleted: nothing to write, ever */
			n->flags &= ~(unsigned)(N_DIRTY | N_META_DIRTY);
		pthread_mutex_unlock(&fs->ns.lock);
		pthread_mutex_unlock(&fs->replay_lock);
		pthread_mutex_unlock(&n->io);
		return 0;
	}
	err = snapshot_file(fs, n, &f);
	gen = n->file->wgen;
	/*
	 * The copy carries the times and mode taken now: a SETATTR that
	 * comes while it is written (the writeback cache sends the times
	 * a program saw after its data) must set the flag again.
	 */
	if (!err)
		n->flags &= ~(unsigned)N_META_DIRTY;
	before = n->flags & N_FROM_SOURCE ? n->ident : n->replaces;
	/* ctime is SOURCE's still unless a replay moved it */
	ctime = !(n->flags & N_SRC_MOVED);
	fs->wb_busy = n;
	pthread_mutex_unlock(&fs->ns.lock);
	pthread_mutex_unlock(&fs->replay_lock);
	if (err)
		goto out;
	npaths = f.npaths;
	snap_size = f.size;
	orig = f.paths[0];
	vctx.name = orig;
	name = strdup(orig);
	if (fs_kernel_writes(fs)) {
		/*
		 * Writes did not pass here: find the changed pages, and take
		 * the checksums the copy will be at least as new as (changes
		 * made during the copy must still differ from them after).
		 */
		img_seen_now(&n->file->img);
		err = img_sums_mark(&n->file->img, &sums, &nsums);
	}
	/*
	 * The copy reads the marks as they are now; io is not held across
	 * SOURCE's I/O, so writes, opens and truncates of this file go on
	 * while SOURCE is slow or hangs (a write made meanwhile is marked
	 * anew, and wgen keeps the file dirty).
	 */
	if (!err) {
		img_wb_begin(&n->file->img, snap_size, &pages);
		begun = true;
		if (f.pages)
			f.pages = &pages;
	}
	pthread_mutex_unlock(&n->io);
	io_held = false;
	if (!err && fs->o.validate != VALIDATE_OFF) {
		f.check = validate;
		f.check_arg = &vctx;
	}
	if (!err)
		err = conflict = check_conflict(fs, n, &f, ctime, &cname,
						&lockfd);
	if (!conflict && !err) {
		err = wb_write_file(&fs->src, &f, &id);
		written = f.written;
		if (!err)
			log_debug("wrote back %s: %llu bytes%s", orig,
				  (unsigned long long)written,
				  f.cloned ? " (changed pages on a clone)" : "");
		if (err == -EEXIST) {
			/* the name was made or replaced since the check */
			cname = fs_conflict_name(fs, orig, 0);
			f.paths[0] = cname;
			f.npaths = 1;
			f.noreplace = true;
			err = cname ? 0 : -ENOMEM;
			conflict = cname ? 1 : 0;
		}
	}
	for (int seq = 1; conflict > 0 && err >= 0 && seq < 100; seq++) {
		err = wb_write_file(&fs->src, &f, &id);
		if (err != -EEXIST)
			break;
		free(cname);
		cname = fs_conflict_name(fs, orig, seq);
		f.paths[0] = cname;
		err = cname ? 0 : -ENOMEM;
	}
	if (lockfd >= 0)
		close(lockfd); /* the new version is in place: unlock */
	f.paths[0] = orig;
	paths_free(f.paths, npaths);
	xattrs_free((struct xattr *)f.xattrs);
out:
	if (!io_held)
		pthread_mutex_lock(&n->io);
	pthread_mutex_lock(&fs->ns.lock);
	if (begun) /* saved, at its name or beside: the copy is clean */
		img_wb_end(&n->file->img, &pages, !err);
	if (err)
		n->flags |= N_META_DIRTY; /* with the data, next time */
	if (!err && conflict > 0) {
		/* the data is durable beside; the image stays the mount's */
		n->flags &= ~(unsigned)(N_DIRTY | N_META_DIRTY);
		n->flags |= N_CONFLICT;
		parents_touched(n); /* the conflict name is new there */
		if (fs_kernel_writes(fs)) {
			img_sums_set(&n->file->img, sums, nsums);
			sums = NULL;
		}
		if (n->file->wgen != gen) /* written while we copied */
			n->flags |= N_DIRTY;
		fs->stats.conflicts++;
		set_result(n, -EIO, "SOURCE changed behind the mount; saved "
			   "as %s", cname);
		log_warn("conflict: the file changed in SOURCE since it was "
			 "loaded; the mount's version is saved as %s", cname);
		err = FS_WB_CONFLICT;
	} else if (!err) {
		n->flags &= ~(unsigned)(N_DIRTY | N_INVALID | N_CONFLICT);
		/* written while we copied: not clean, write it again */
		if (n->file->wgen != gen)
			n->flags |= N_DIRTY | N_META_DIRTY;
		n->flags |= N_FROM_SOURCE;
		n->ident = id;
		if (fs_kernel_writes(fs)) {
			img_sums_set(&n->file->img, sums, nsums);
			sums = NULL;
		}
		parents_touched(n);
		fs->stats.writebacks++;
		fs->stats.writeback_bytes += written;
		set_result(n, 0, "written");
		report_refused(fs, n, name, &f.refused);
	} else if (err != -EIO || !(n->flags & N_INVALID)) {
		if (fs_wb_result(n)->err != err)
			log_err("cannot write back %s to SOURCE: %s; it stays "
				"in memory", name ? name : "a file",
				strerror(-err));
		fs->stats.writeback_errors++;
		set_result(n, err, "%s", strerror(-err));
	}
	if (fs->wb_busy == n)
		standin_settle(fs, &before, err || conflict > 0 ? NULL : &id);
	pthread_mutex_unlock(&fs->ns.lock);
	pthread_mutex_unlock(&n->io);
	free(cname);
	free(name);
	free(sums);
	return err;
}

int fs_write_meta(struct fs *fs, struct node *n)
{
	struct src_ident before, now;
	struct wb_refused refused = { 0 };
	struct wb_meta m;
	struct xattr *xa = NULL;
	char *path;
	bool pending, busy;
	int err;

	err = fs_load_xattrs(fs, n, false);
	if (err)
		return err;
	pthread_mutex_lock(&fs->replay_lock);
	/*
	 * Namespace changes still to replay would move the times of the
	 * directories they touch (and make the directories made since the
	 * pass replayed): they go first.
	 */
	pending = fs_replay_and_lock(fs, true) != 0;
	/*
	 * A file whose data could not be written (invalid HDF5, SOURCE
	 * full) or must not be (volatile) keeps SOURCE's file untouched,
	 * times and mode included: they go with the data.
	 */
	if (!(n->flags & N_META_DIRTY) ||
	    (!n->links && n != fs->ns.root) ||
	    (S_ISREG(n->mode) && (n->flags & (N_DIRTY | N_VOLATILE)))) {
		pthread_mutex_unlock(&fs->ns.lock);
		pthread_mutex_unlock(&fs->replay_lock);
		return 0;
	}
	xa = xattrs_copy(n->xattrs);
	if (n->xattrs && !xa) {
		/* never applied without them: SOURCE's would be removed */
		pthread_mutex_unlock(&fs->ns.lock);
		pthread_mutex_unlock(&fs->replay_lock);
		return -ENOMEM;
	}
	n->flags &= ~(unsigned)N_META_DIRTY;
	path = fs_source_path_locked(fs, n);
	m = (struct wb_meta){ n->mode, n->uid, n->gid, n->atime, n->mtime,
			      NULL, n->ident };
	m.xattrs = xa;
	/*
	 * SOURCE's ctime is ours to know unless a replayed rename, link or
	 * unlink moved it (the journal is empty now: none is pending), or a
	 * directory's entries changed (our own write-backs do that).
	 */
	m.check_ctime = !S_ISDIR(n->mode) && !(n->flags & N_SRC_MOVED);
	m.refused = &refused;
	n->flags &= ~(unsigned)N_SRC_MOVED;
	/* utimens changes the identity of SOURCE's file */
	busy = S_ISREG(n->mode);
	if (busy) {
		before = n->ident;
		fs->wb_busy = n;
	}
	pthread_mutex_unlock(&fs->ns.lock);
	pthread_mutex_unlock(&fs->replay_lock);
	err = path ? wb_set_meta(&fs->src, path, &m, &now) : -ENOMEM;
	pthread_mutex_lock(&fs->ns.lock);
	if (!err && busy) {
		/* our own utimens and chmod: no change behind the mount */
		n->ident.mtime = m.mtime;
		n->ident.ctime = now.ctime;
	}
	else if (!err)
		n->ident = now; /* what the next change must find there */
	if (!err)
		report_refused(fs, n, path, &refused);
	if (err == WB_OTHER) {
		/* kept in the mount, never applied to what is there now */
		if (!(n->flags & N_CONFLICT))
			log_warn("conflict: %s in SOURCE was replaced behind "
				 "the mount; its mode, owner, times and xattrs "
				 "are not applied there",
				 fs_shown(path));
		n->flags |= N_CONFLICT;
		fs->stats.conflicts++;
		set_result(n, -EIO, "SOURCE's entry was replaced behind the "
			   "mount; metadata not applied");
		err = FS_WB_CONFLICT;
	}
	if (busy)
		standin_settle(fs, &before, err ? NULL : &n->ident);
	if (err == -ENOENT) {
		/* not in SOURCE: its creation sets it, or a replay to come */
		if (pending)
			n->flags |= N_META_DIRTY;
		err = 0;
	}
	if (err && err != FS_WB_CONFLICT) {
		log_err("cannot set attributes of %s in SOURCE: %s",
			path ? fs_shown(path) : "?", strerror(-err));
		n->flags |= N_META_DIRTY;
	}
	pthread_mutex_unlock(&fs->ns.lock);
	xattrs_free(xa);
	free(path);
	return err;
}
