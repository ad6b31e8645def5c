/*
 * control.c - the control channel: virtual xattrs in the user.h5memfs.
 * namespace, on the mount's files and on its root.
 *
 *   getxattr user.h5memfs.status     JSON status of the file (root: mount)
 *   getxattr user.h5memfs.files[.N]  (root) the files in memory, a page
 *   setxattr user.h5memfs.sync       write the file (root: all) back now
 *   setxattr user.h5memfs.discard    drop the file's unsaved changes
 *   setxattr user.h5memfs.evict      drop the file's clean image
 *   setxattr user.h5memfs.report     (root) where to send the outcome
 *   user.h5memfs.volatile            see src/fs/names.c
 *
 * The kernel checks permissions (default_permissions): reading a user.*
 * xattr needs read access and setting one needs write access, so only a
 * user who may write a file may change its state, with allow_other too.
 *
 * A request that must first drain the kernel's cached writes (drain.c)
 * is not answered by the FUSE worker that received it: the worker queues
 * it for the control thread and returns at once, so no worker ever waits
 * for something that needs the workers (the drain's FLUSHes), whatever
 * the number of concurrent commands or threads (-s included). Requests
 * that wait for a write-back (the sync command, and FSYNC, FSYNCDIR and
 * FLUSH from files.c and names.c) go to a second thread the same way:
 * however many wait for a SOURCE that hangs, no worker is held.
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
#include "notify.h"

enum ctl_kind { CTL_STATUS, CTL_FILES, CTL_SYNC, CTL_DISCARD, CTL_EVICT,
		CTL_FSYNC, CTL_FLUSH };

struct ctl_job {
	fuse_req_t req;
	fuse_ino_t ino;
	enum ctl_kind kind;
	size_t size;		/* CTL_STATUS, CTL_FILES: getxattr's size */
	uint64_t start;		/* CTL_FILES: the page's first file */
	struct ctl_job *next;
};

/*
 * Drain (when needed), act, reply exactly once. `worker`: called by a
 * FUSE worker (no drain was needed, or there is no control thread).
 */
static void run_job(struct h5m *m, const struct ctl_job *j, bool worker)
{
	struct node *n = ll_node(j->req, j->ino);
	bool inval = false, root = j->ino == FUSE_ROOT_ID;
	char *json = NULL;
	size_t len;
	int err = 0, derr;

	if (j->kind == CTL_FSYNC || j->kind == CTL_FLUSH) {
		/* the kernel wrote the file's cached pages before asking */
		fuse_reply_err(j->req, j->kind == CTL_FSYNC ?
			       -fs_fsync(&m->fs, n) : -fs_flush(&m->fs, n));
		return;
	}
	/* writes the kernel still caches land first */
	derr = ll_drain_node(m, n);
	switch (j->kind) {
	case CTL_STATUS:
	case CTL_FILES:
		/* report what the daemon has, drained or not */
		if (j->kind == CTL_FILES)
			err = fs_status_files(&m->fs, j->start, 60000, &json);
		else
			err = root ? fs_status_mount(&m->fs, &json)
				   : fs_status_file(&m->fs, n, &json);
		len = json ? strlen(json) : 0;
		if (err)
			fuse_reply_err(j->req, -err);
		else if (len > 65536)
			fuse_reply_err(j->req, E2BIG);
		else if (j->size == 0)
			fuse_reply_xattr(j->req, len);
		else if (j->size < len)
			fuse_reply_err(j->req, ERANGE);
		else
			fuse_reply_buf(j->req, json, len);
		free(json);
		return;
	case CTL_SYNC:
		/* write what the daemon has; a failed drain is still told */
		if (root) {
			notify_pass_begin();
			err = fs_sync_all(&m->fs, NULL);
			notify_pass_end();
		} else {
			err = fs_fsync(&m->fs, n);
		}
		if (!err)
			err = derr;
		break;
	case CTL_FSYNC:
	case CTL_FLUSH:
		break; /* answered above */
	case CTL_DISCARD:
	case CTL_EVICT:
		/* not with writes still on their way: they would land after */
		err = derr;
		if (!err)
			err = j->kind == CTL_DISCARD ? fs_discard(&m->fs, n)
						     : fs_evict(&m->fs, n);
		inval = !err;
		break;
	}
	/*
	 * The kernel must drop the pages it cached before the command
	 * returns, or a read right after it sees them. Pages are clean (the
	 * drain above), so invalidating needs no other request; the only
	 * worker of a -s loop does it after the reply all the same, to be
	 * safe.
	 */
	if (inval && !m->passthrough && !(worker && m->single_thread))
		fuse_lowlevel_notify_inval_inode(m->se, j->ino, 0, 0);
	fuse_reply_err(j->req, -err);
	if (inval && !m->passthrough && worker && m->single_thread)
		fuse_lowlevel_notify_inval_inode(m->se, j->ino, 0, 0);
}

static void *queue_thread(void *arg)
{
	struct ll_queue *q = arg;
	struct ctl_job *j;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (!q->head && !q->stop)
			pthread_cond_wait(&q->cond, &q->lock);
		j = q->head;
		if (!j)
			break; /* stopping, nothing left */
		q->head = j->next;
		if (!q->head)
			q->tail = &q->head;
		pthread_mutex_unlock(&q->lock);
		run_job(q->m, j, false);
		free(j);
		pthread_mutex_lock(&q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

static int queue_start(struct h5m *m, struct ll_queue *q)
{
	int err;

	q->m = m;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	q->head = NULL;
	q->tail = &q->head;
	q->stop = false;
	err = pthread_create(&q->thread, NULL, queue_thread, q);
	q->running = !err;
	if (err) {
		pthread_cond_destroy(&q->cond);
		pthread_mutex_destroy(&q->lock);
	}
	return -err;
}

static void queue_stop(struct ll_queue *q)
{
	if (!q->running)
		return;
	pthread_mutex_lock(&q->lock);
	q->stop = true;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	pthread_join(q->thread, NULL); /* answers what was queued */
	q->running = false;
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->lock);
}

int ll_control_start(struct h5m *m)
{
	int err = queue_start(m, &m->ctl);

	return err ? err : queue_start(m, &m->wbq);
}

void ll_control_stop(struct h5m *m)
{
	queue_stop(&m->ctl);
	queue_stop(&m->wbq);
}

/* Queue j (a copy of *local) on q; false when it must run here. */
static bool enqueue(struct ll_queue *q, const struct ctl_job *local)
{
	struct ctl_job *j;

	if (!q->running || !(j = malloc(sizeof(*j))))
		return false;
	*j = *local;
	pthread_mutex_lock(&q->lock);
	*q->tail = j;
	q->tail = &j->next;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	return true;
}

void ll_writeback_request(fuse_req_t req, fuse_ino_t ino,
			  enum ll_wait_kind kind)
{
	struct ctl_job local = { req, ino,
				 kind == LL_FLUSH ? CTL_FLUSH : CTL_FSYNC,
				 0, 0, NULL };
	struct h5m *m = ll_ctx(req);

	if (!enqueue(&m->wbq, &local))
		run_job(m, &local, true); /* no thread, no memory: wait here */
}

/* Run a job here when it needs no drain, else hand it over. */
static void submit(struct h5m *m, fuse_req_t req, fuse_ino_t ino,
		   enum ctl_kind kind, size_t size, uint64_t start)
{
	struct ctl_job local = { req, ino, kind, size, start, NULL };
	bool drain = ll_drain_needed(m, ll_node(req, ino));

	/*
	 * A sync waits for SOURCE: never in a worker. One that drains first
	 * goes to the control thread: the drain's FSYNCs and FLUSHes are
	 * answered by the write-back thread, which must not be the one
	 * waiting for them.
	 */
	if (kind == CTL_SYNC && !drain && enqueue(&m->wbq, &local))
		return;
	/* no thread (or no memory): the drain's timeout still holds */
	if (!drain || !enqueue(&m->ctl, &local))
		run_job(m, &local, true);
}

bool ll_control_get(fuse_req_t req, fuse_ino_t ino, const char *name,
		    size_t size)
{
	size_t fl = strlen(FS_FILES_XATTR);
	unsigned long long start = 0;
	char *end;

	if (!strcmp(name, FS_STATUS_XATTR)) {
		submit(ll_ctx(req), req, ino, CTL_STATUS, size, 0);
		return true;
	}
	if (!strcmp(name, LL_PID_XATTR)) {
		char pid[24];
		int n = snprintf(pid, sizeof(pid), "%ld", (long)getpid());

		if (ino != FUSE_ROOT_ID)
			fuse_reply_err(req, ENODATA); /* the mount's: root only */
		else if (!size)
			fuse_reply_xattr(req, (size_t)n);
		else if (size < (size_t)n)
			fuse_reply_err(req, ERANGE);
		else
			fuse_reply_buf(req, pid, (size_t)n);
		return true;
	}
	if (strncmp(name, FS_FILES_XATTR, fl) != 0 ||
	    (name[fl] && name[fl] != '.'))
		return false;
	if (name[fl]) { /* ".N": the page from the Nth file on */
		errno = 0;
		start = strtoull(name + fl + 1, &end, 10);
		if (errno || *end || end == name + fl + 1) {
			fuse_reply_err(req, ENODATA);
			return true;
		}
	}
	if (ino != FUSE_ROOT_ID)
		fuse_reply_err(req, ENODATA); /* the mount's list: root only */
	else
		submit(ll_ctx(req), req, ino, CTL_FILES, size, start);
	return true;
}

bool ll_control_set(fuse_req_t req, fuse_ino_t ino, const char *name,
		    const char *value, size_t size)
{
	enum ctl_kind kind;

	if (!strcmp(name, LL_REPORT_XATTR)) {
		/* the mount's outcome, so only on its root */
		fuse_reply_err(req, ino != FUSE_ROOT_ID ? EINVAL :
			       -notify_report_add(value, size));
		return true;
	}
	if (!strcmp(name, FS_SYNC_XATTR))
		kind = CTL_SYNC;
	else if (!strcmp(name, FS_DISCARD_XATTR))
		kind = CTL_DISCARD;
	else if (!strcmp(name, FS_EVICT_XATTR))
		kind = CTL_EVICT;
	else if (!strcmp(name, FS_STATUS_XATTR))
		kind = CTL_STATUS;
	else
		return false;
	if (kind == CTL_STATUS)
		fuse_reply_err(req, EPERM); /* read-only */
	else
		submit(ll_ctx(req), req, ino, kind, 0, 0);
	return true;
}
