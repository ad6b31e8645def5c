/*
 * files.c - FUSE glue for open files: create, open, read, write, flush,
 * release, fsync, lseek, fallocate.
 *
 * Reads are spliced from the image's memfd straight into /dev/fuse;
 * writes are copied from the request into the memfd.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "../core/log.h"
#include "ll.h"
#include "passthrough.h"

/*
 * Set up the reply of an open: on the passthrough path, the image
 * becomes the kernel's backing file, unless the file must be served by
 * the daemon (a partial image, or such handles open: see
 * fs_kernel_open_begin); elsewhere keep the page cache across opens,
 * since nothing but this daemon changes a file.
 */
static void open_flags(struct h5m *m, struct node *n,
		       struct fuse_file_info *fi)
{
	bool first;
	int err;

	fi->keep_cache = 1;
	fi->fh = 0;
	if (!m->passthrough || !S_ISREG(n->mode))
		return;
	if (!fs_kernel_open_begin(&m->fs, n, &first)) {
		/*
		 * The first handle served by the daemon since passthrough
		 * ones: pages cached before may be stale (passthrough writes
		 * bypass them). No handle of ours holds a dirty page.
		 */
		if (first)
			fi->keep_cache = 0;
		return;
	}
	err = pt_prepare_open(m, n, fi);
	if (!err) {
		fi->keep_cache = 0; /* the kernel refuses it with passthrough */
		return;
	}
	fs_cached_open(&m->fs, n);
	fi->keep_cache = 0;
	if (!m->pt_warned) {
		bool unlinked;
		char *path;

		m->pt_warned = true;
		pthread_mutex_lock(&m->fs.ns.lock);
		path = ns_path(&m->fs.ns, n, &unlinked);
		pthread_mutex_unlock(&m->fs.ns.lock);
		log_warn("cannot hand the image of %s to the kernel (%s): such "
			 "files are served by the daemon", path ? path : "a file",
			 strerror(-err));
		free(path);
	}
}

/*
 * The handle fi of n goes: count it, release its backing id if last.
 * release: it goes by the kernel's RELEASE (counted by fs_release_seen).
 */
static void handle_gone(struct h5m *m, struct node *n,
			const struct fuse_file_info *fi, bool release)
{
	if (m->passthrough && S_ISREG(n->mode) && !pt_is_passthrough(fi))
		fs_cached_close(&m->fs, n);
	pt_release(release ? fs_release(&m->fs, n) : fs_close(&m->fs, n));
}

void ll_op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		  mode_t mode, struct fuse_file_info *fi)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	struct h5m *m = ll_ctx(req);
	struct fuse_entry_param e = { 0 };
	struct node *n = NULL;
	int err;

	if (ll_frozen(req))
		return;
	err = fs_mknod(&m->fs, ll_node(req, parent), name, S_IFREG | mode,
		       c->umask, 0, c->uid, c->gid, &n, &e.attr);
	if (!err) {
		err = fs_open(&m->fs, n, O_RDWR, NULL);
		if (err)
			fs_forget(&m->fs, n, 1);
	}
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	e.ino = ll_ino(m, n);
	e.attr_timeout = e.entry_timeout = m->timeout;
	open_flags(m, n, fi);
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		handle_gone(m, n, fi, false);
		fs_forget(&m->fs, n, 1);
	}
}

void ll_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct h5m *m = ll_ctx(req);
	struct node *n = ll_node(req, ino);
	bool fresh;
	int err;

	/* the final write-back runs: no new writer (see ll_frozen) */
	if ((fi->flags & (O_ACCMODE | O_TRUNC)) != O_RDONLY &&
	    ll_frozen(req))
		return;
	err = fs_open(&m->fs, n, fi->flags, &fresh);
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	open_flags(m, n, fi);
	if (fresh) {
		/* reloaded from SOURCE: cached pages and size are stale */
		fi->keep_cache = 0;
		fuse_lowlevel_notify_inval_inode(m->se, ino, -1, 0);
	} else if (fi->keep_cache && (fi->flags & O_ACCMODE) != O_WRONLY &&
		   fs_atime_due(&m->fs, n)) {
		/*
		 * Reads served from the page cache never reach us: when the
		 * next read must move atime, let it (once: then atime is
		 * later than mtime and ctime again). Dropping only the first
		 * page keeps the rest cached (a file read right after it was
		 * written stays in memory); this is safe before the reply
		 * only when no other handle may hold dirty pages that the
		 * kernel would first write back through us. Otherwise the
		 * kernel drops the whole cache itself, in the opener.
		 */
		if (fs_open_alone(&m->fs, n))
			fuse_lowlevel_notify_inval_inode(m->se, ino, 0, 1);
		else
			fi->keep_cache = 0;
	}
	if (fuse_reply_open(req, fi) == -ENOENT)
		handle_gone(m, n, fi, false);
}

void ll_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi)
{
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
	struct h5m *m = ll_ctx(req); /* req is gone once replied */
	struct node *n = ll_node(req, ino);
	int fd = fs_data_fd(&m->fs, n), counted;

	(void)fi;
	/* a partial image: the bytes come from SOURCE first */
	if (fd >= 0 && off >= 0) {
		int err = fs_read_ready(&m->fs, n, (uint64_t)off, size);

		if (err)
			fd = err;
	}
	if (fs_accessed(&m->fs, n))
		/* the kernel caches attributes for an hour */
		fuse_lowlevel_notify_inval_inode(m->se, ino, -1, 0);
	__atomic_add_fetch(&m->fs.stats.reads, 1, __ATOMIC_RELAXED);
	if (fd < 0) {
		fuse_reply_err(req, -fd);
		return;
	}
	/* served from SOURCE's file: one of those waiting for SOURCE */
	counted = fs_source_read_begin(&m->fs, n);
	if (counted < 0) {
		fuse_reply_err(req, -counted);
		return;
	}
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = fd;
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, 0);
	fs_source_read_end(&m->fs, counted);
}

/* fs_copy_fn: the request's buffers (in memory or in a pipe) into fd. */
static ssize_t copy_bufv(void *arg, int fd, uint64_t off)
{
	struct fuse_bufvec *bufv = arg;
	struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(bufv));

	out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	out.buf[0].fd = fd;
	out.buf[0].pos = (off_t)off;
	return fuse_buf_copy(&out, bufv, 0);
}

void ll_op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *bufv,
		     off_t off, struct fuse_file_info *fi)
{
	struct h5m *m = ll_ctx(req);
	size_t done;
	int err;

	if (ll_frozen(req))
		return;
	(void)fi;
	__atomic_add_fetch(&m->fs.stats.writes, 1, __ATOMIC_RELAXED);
	err = fs_write(&m->fs, ll_node(req, ino), (uint64_t)off,
		       fuse_buf_size(bufv), copy_bufv, bufv, &done);
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_write(req, done);
}

void ll_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct h5m *m = ll_ctx(req);

	(void)fi;
	if (!m->fs.o.sync_on_close) {
		/*
		 * Nothing to do at a close: ENOSYS makes the kernel stop
		 * sending FLUSH on this connection, one round trip less per
		 * close (it still writes its cached pages first, and reports
		 * their errors itself).
		 */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	ll_writeback_request(req, ino, LL_FLUSH);
}

void ll_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	handle_gone(ll_ctx(req), ll_node(req, ino), fi, true);
	fuse_reply_err(req, 0);
}

void ll_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		 struct fuse_file_info *fi)
{
	(void)datasync; /* times go with the data: no cheaper path */
	(void)fi;
	ll_writeback_request(req, ino, LL_FSYNC);
}

/*
 * SEEK_DATA / SEEK_HOLE. With the writeback cache the kernel may hold
 * written pages the image has not seen (it flushes nothing before
 * FUSE_LSEEK), so the image cannot answer: ENOSYS makes the kernel
 * answer from its own size for this connection from now on (all data,
 * one hole at the end), which is always consistent with the data.
 */
void ll_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		 struct fuse_file_info *fi)
{
	off_t res = 0;
	int err;

	(void)fi;
	if (ll_ctx(req)->writeback_cache) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	err = fs_lseek(&ll_ctx(req)->fs, ll_node(req, ino), off, whence, &res);
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_lseek(req, res);
}

void ll_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
		     off_t length, struct fuse_file_info *fi)
{
	if (ll_frozen(req))
		return;
	(void)fi;
	fuse_reply_err(req, -fs_fallocate(&ll_ctx(req)->fs, ll_node(req, ino),
					  mode, offset, length));
}
