/*
 * ll.h - shared pieces of the low-level FUSE glue: the per-mount
 * context, ino <-> node mapping, and the operation table.
 *
 * Every operation here replies exactly once; the work is done by
 * src/fs, which returns 0 or -errno.
 */
#ifndef H5M_LL_H
#define H5M_LL_H

#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>

#include <errno.h>
#include <pthread.h>

#include "../fs/fs.h"

struct h5m {
	struct fs fs;
	int notify_fd;		/* FIFO to write "ready" to, or -1 */
	double timeout;		/* entry and attr cache time, seconds */
	bool writeback_cache;
	bool passthrough;	/* data path: kernel passthrough wanted */
	bool pt_required;	/* passthrough=on: no fallback */
	bool pt_offered;	/* the kernel offered it at INIT */
	bool killpriv_offered;	/* HANDLE_KILLPRIV_V2 offered at INIT */
	bool pt_warned;		/* a registration failure was logged */
	bool single_thread;	/* -s: a handler must not wait for another */
	const char *mountpoint;
	struct fuse_session *se;
	/*
	 * Two threads with a queue each (control.c): `ctl` answers the
	 * control requests that need a drain; `wbq` answers every request
	 * that waits for a write-back (fsync, fsyncdir, a flush with
	 * sync_on_close, the sync command), so that no number of them,
	 * on a SOURCE however slow, ever holds a FUSE worker.
	 */
	struct ll_queue {
		struct h5m *m;
		pthread_t thread;
		pthread_mutex_t lock;
		pthread_cond_t cond;
		struct ctl_job *head, **tail;
		bool stop, running;
	} ctl, wbq;
};

static inline struct h5m *ll_ctx(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static inline struct node *ll_node(fuse_req_t req, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? ll_ctx(req)->fs.ns.root
				   : (struct node *)(uintptr_t)ino;
}

static inline fuse_ino_t ll_ino(const struct h5m *m, const struct node *n)
{
	return n == m->fs.ns.root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

/*
 * A change while the final write-back runs with the mount still serving
 * (fs_freeze): replied EROFS, and true. False: go on.
 */
static inline bool ll_frozen(fuse_req_t req)
{
	if (!fs_frozen(&ll_ctx(req)->fs))
		return false;
	fuse_reply_err(req, EROFS);
	return true;
}

/* Reply to a request that made or found `n` (err == 0) or failed. */
void ll_reply_entry(fuse_req_t req, int err, struct node *n,
		    const struct stat *st);

/* Reply with attributes or an error. */
void ll_reply_attr(fuse_req_t req, int err, const struct stat *st);

/*
 * The control xattrs (control.c): each returns true when `name` was one
 * and the request has been replied to.
 */
bool ll_control_get(fuse_req_t req, fuse_ino_t ino, const char *name,
		    size_t size);
bool ll_control_set(fuse_req_t req, fuse_ino_t ino, const char *name,
		    const char *value, size_t size);

/*
 * Set on the root by `h5memfs unmount`: the value is the name of an
 * abstract AF_UNIX datagram socket that gets the outcome (notify.h).
 */
#define LL_REPORT_XATTR "user.h5memfs.report"

/*
 * Read on the root by `h5memfs unmount`: the daemon's PID, answered at
 * once (the status document first drains the kernel's cached writes,
 * which the unmount itself does).
 */
#define LL_PID_XATTR "user.h5memfs.pid"

/*
 * Start the two threads of control.c (the control thread, and the one
 * that answers requests waiting for a write-back), and stop them (after
 * the request loop: they answer what is queued first). Without them the
 * requests are answered by the worker. Start: 0 or -errno.
 */
int ll_control_start(struct h5m *m);
void ll_control_stop(struct h5m *m);

/*
 * Answer an FSYNC, FSYNCDIR or (with sync_on_close) FLUSH of ino from
 * the write-back thread: the worker returns at once.
 */
enum ll_wait_kind { LL_FSYNC, LL_FLUSH };
void ll_writeback_request(fuse_req_t req, fuse_ino_t ino,
			  enum ll_wait_kind kind);

/*
 * drain.c: bring the writes the kernel still caches for open files (all,
 * or n's) into the daemon; writeback-cache path only, a no-op otherwise.
 * Done by a child process, waited for up to a fixed timeout: 0,
 * -ETIMEDOUT (the child was killed), or -errno (fork). Never call it
 * where the daemon must answer for it to end (see drain.c): not from a
 * FUSE worker that others may have to wait for.
 */
int ll_drain_all(struct h5m *m);
int ll_drain_node(struct h5m *m, struct node *n);
/*
 * Wait for the drain children that were killed after their timeout
 * (end of the mount, once /dev/fuse is closed and they can end).
 */
void ll_drain_reap(void);
/* ll_drain_all for fs_commit_start; arg is the struct h5m. */
void ll_drain_all_cb(void *arg);
/* Whether n (root: the mount) may have writes in the kernel's cache. */
bool ll_drain_needed(struct h5m *m, struct node *n);

/* The operations, from the files of this folder. */
extern const struct fuse_lowlevel_ops ll_ops;

void ll_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void ll_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void ll_op_forget_multi(fuse_req_t req, size_t count,
			struct fuse_forget_data *forgets);
void ll_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ll_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		   int to_set, struct fuse_file_info *fi);
void ll_op_readlink(fuse_req_t req, fuse_ino_t ino);
void ll_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode, dev_t rdev);
void ll_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode);
void ll_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void ll_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void ll_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		   const char *name);
void ll_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		  fuse_ino_t newparent, const char *newname,
		  unsigned int flags);
void ll_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		const char *newname);
void ll_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ll_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi);
void ll_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, struct fuse_file_info *fi);
void ll_op_releasedir(fuse_req_t req, fuse_ino_t ino,
		      struct fuse_file_info *fi);
void ll_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
		    struct fuse_file_info *fi);
void ll_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    const char *value, size_t size, int flags);
void ll_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    size_t size);
void ll_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void ll_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);
void ll_op_statfs(fuse_req_t req, fuse_ino_t ino);

void ll_op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		  mode_t mode, struct fuse_file_info *fi);
void ll_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ll_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi);
void ll_op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *bufv,
		     off_t off, struct fuse_file_info *fi);
void ll_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ll_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ll_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		 struct fuse_file_info *fi);
void ll_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		 struct fuse_file_info *fi);
void ll_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
		     off_t length, struct fuse_file_info *fi);

#endif
