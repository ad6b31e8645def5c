/*
 * control.c - the control channel: virtual xattrs in the user.h5memfs.
 * namespace, on the mount's files and on its root.
 *
 *   getxattr user.h5memfs.status     JSON status of the file (root: mount)
 *   setxattr user.h5memfs.sync       write the file (root: all) back now
 *   setxattr user.h5memfs.discard    drop the file's unsaved changes
 *   setxattr user.h5memfs.evict      drop the file's clean image
 *   user.h5memfs.volatile            see src/fs/names.c
 *
 * The kernel checks permissions (default_permissions): reading a user.*
 * xattr needs read access and setting one needs write access, so only a
 * user who may write a file may change its state, with allow_other too.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/log.h"
#include "ll.h"

/*
 * Open and close `rel` in the mount: close(2) waits for its writes. A
 * path longer than PATH_MAX is walked in shorter pieces.
 */
static void reopen(const struct h5m *m, const char *rel)
{
	const char *p = rel;
	int dirfd = open(m->mountpoint, O_PATH | O_DIRECTORY | O_CLOEXEC);
	int fd;

	while (dirfd >= 0 && strlen(p) >= PATH_MAX) {
		const char *cut = p + PATH_MAX - 1;
		char *piece;

		while (cut > p && *cut != '/')
			cut--;
		piece = cut > p ? strndup(p, (size_t)(cut - p)) : NULL;
		fd = piece ? openat(dirfd, piece, O_PATH | O_DIRECTORY |
						  O_NOFOLLOW | O_CLOEXEC)
			   : -1;
		free(piece);
		close(dirfd);
		dirfd = fd;
		p = cut + 1;
	}
	if (dirfd < 0)
		return;
	fd = openat(dirfd, p, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0)
		close(fd);
	close(dirfd);
}

/*
 * Pour the kernel's cached writes of n into the daemon. syncfs does not
 * wait for FUSE writeback (the kernel does not trust a server with its
 * sync), but close(2) does: FLUSH waits for the file's pending writes.
 * Served by the other worker threads; skipped single-threaded, where it
 * would wait for itself, and on the passthrough path, which has no
 * cache in between.
 */
static void drain(struct h5m *m, struct node *n)
{
	bool unlinked;
	char *rel;

	if (m->single_thread || !m->writeback_cache)
		return;
	pthread_mutex_lock(&m->fs.ns.lock);
	/* only an open file can have writes in the kernel's cache */
	rel = n->nopen && S_ISREG(n->mode) ? ns_path(&m->fs.ns, n, &unlinked)
					    : NULL;
	pthread_mutex_unlock(&m->fs.ns.lock);
	if (rel)
		reopen(m, rel);
	free(rel);
}

void ll_drain_all(void *arg)
{
	struct h5m *m = arg;
	char **paths;
	int fd;

	if (m->single_thread || !m->writeback_cache)
		return;
	paths = fs_open_paths(&m->fs);
	for (size_t i = 0; paths && paths[i]; i++) {
		reopen(m, paths[i]);
		free(paths[i]);
	}
	free(paths);
	fd = open(m->mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		syncfs(fd); /* starts writeback of mmap-dirtied pages */
		close(fd);
	}
}

bool ll_control_get(fuse_req_t req, fuse_ino_t ino, const char *name,
		    size_t size)
{
	struct h5m *m = ll_ctx(req);
	char *json = NULL;
	size_t len;
	int err;

	if (strcmp(name, FS_STATUS_XATTR) != 0)
		return false;
	/* report what programs wrote, not what the kernel still holds */
	if (ino == FUSE_ROOT_ID)
		ll_drain_all(m);
	else
		drain(m, ll_node(req, ino));
	err = ino == FUSE_ROOT_ID ? fs_status_mount(&m->fs, &json)
				  : fs_status_file(&m->fs, ll_node(req, ino),
						   &json);
	len = json ? strlen(json) : 0;
	if (err)
		fuse_reply_err(req, -err);
	else if (len > 65536)
		fuse_reply_err(req, E2BIG);
	else if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, json, len);
	free(json);
	return true;
}

bool ll_control_set(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct h5m *m = ll_ctx(req);
	struct node *n = ll_node(req, ino);
	bool inval = false;
	int err;

	if (!strcmp(name, FS_SYNC_XATTR)) {
		if (ino == FUSE_ROOT_ID) {
			ll_drain_all(m);
			err = fs_sync_all(&m->fs, NULL);
		} else {
			drain(m, n);
			err = fs_fsync(&m->fs, n);
		}
	} else if (!strcmp(name, FS_DISCARD_XATTR)) {
		/* writes the kernel still caches land first, then go */
		drain(m, n);
		err = fs_discard(&m->fs, n);
		inval = !err;
	} else if (!strcmp(name, FS_EVICT_XATTR)) {
		drain(m, n);
		err = fs_evict(&m->fs, n);
		inval = !err;
	} else if (!strcmp(name, FS_STATUS_XATTR)) {
		err = -EPERM; /* read-only */
	} else {
		return false;
	}
	/*
	 * The kernel must drop the pages it cached before the command
	 * returns, or a read right after it sees them. Pages are clean (the
	 * drain above), so invalidating needs no other request; single-
	 * threaded, do it after the reply all the same, to be safe.
	 */
	if (inval && !m->passthrough && !m->single_thread)
		fuse_lowlevel_notify_inval_inode(m->se, ino, 0, 0);
	fuse_reply_err(req, -err);
	if (inval && !m->passthrough && m->single_thread)
		fuse_lowlevel_notify_inval_inode(m->se, ino, 0, 0);
	return true;
}
