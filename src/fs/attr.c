/*
 * attr.c - attributes of nodes: getattr, setattr (truncation included),
 * the set-user-ID clearing a write asks for, and statfs.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>

#include "../core/ts.h"
#include "internal.h"

bool fs_kill_suid(struct fs *fs, struct node *n)
{
	mode_t old;

	pthread_mutex_lock(&fs->ns.lock);
	old = n->mode;
	/* every non-directory, as the kernel's own rule (chown of a FIFO) */
	if (!S_ISDIR(n->mode) && (n->mode & (S_ISUID | S_ISGID))) {
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
 * Truncate or extend a regular file, loading it first when needed.
 * With the kernel's writeback cache the kernel owns mtime and ctime: it
 * sends them in the same SETATTR whenever it saw the size change (and
 * always for ftruncate), and keeps its own when it did not (truncate(2)
 * to the same size), so stamping here would only make SOURCE differ
 * from what the mount shows.
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
	if (size == 0 && fs_kernel_keeps_times(fs)) {
		/* that O_TRUNC only spares a load: the times stay */
		pthread_mutex_lock(&fs->ns.lock);
		n->mtime = mtime;
		n->ctime = ctime;
		pthread_mutex_unlock(&fs->ns.lock);
	}
	pthread_mutex_lock(&n->io);
	img_size(&n->file->img, &old);
	err = fs_lazy_truncate(fs, n, size);
	pthread_mutex_unlock(&n->io);
	pthread_mutex_lock(&fs->ns.lock);
	if (!err)
		fs_truncated_locked(fs, n, old != size);
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
	if (to_set & FS_SET_MODE) {
		n->mode = (n->mode & S_IFMT) | (attr->st_mode & 07777);
		fs_acl_follow_mode_locked(n); /* not loaded: done at load */
	}
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
	used = fs_budget_used_locked(fs);
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
