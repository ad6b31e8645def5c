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
 * the number of concurrent commands or threads (-s included).
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

enum ctl_kind { CTL_STATUS, CTL_FILES, CTL_SYNC, CTL_DISCARD, CTL_EVICT };

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

static void *control_thread(void *arg)
{
	struct h5m *m = arg;
	struct ctl_job *j;

	pthread_mutex_lock(&m->ctl_lock);
	for (;;) {
		while (!m->ctl_head && !m->ctl_stop)
			pthread_cond_wait(&m->ctl_cond, &m->ctl_lock);
		j = m->ctl_head;
		if (!j)
			break; /* stopping, nothing left */
		m->ctl_head = j->next;
		if (!m->ctl_head)
			m->ctl_tail = &m->ctl_head;
		pthread_mutex_unlock(&m->ctl_lock);
		run_job(m, j, false);
		free(j);
		pthread_mutex_lock(&m->ctl_lock);
	}
	pthread_mutex_unlock(&m->ctl_lock);
	return NULL;
}

int ll_control_start(struct h5m *m)
{
	int err;

	pthread_mutex_init(&m->ctl_lock, NULL);
	pthread_cond_init(&m->ctl_cond, NULL);
	m->ctl_head = NULL;
	m->ctl_tail = &m->ctl_head;
	m->ctl_stop = false;
	err = pthread_create(&m->ctl_thread, NULL, control_thread, m);
	m->ctl_running = !err;
	return -err;
}

void ll_control_stop(struct h5m *m)
{
	if (!m->ctl_running)
		return;
	pthread_mutex_lock(&m->ctl_lock);
	m->ctl_stop = true;
	pthread_cond_signal(&m->ctl_cond);
	pthread_mutex_unlock(&m->ctl_lock);
	pthread_join(m->ctl_thread, NULL); /* answers what was queued */
	m->ctl_running = false;
	pthread_cond_destroy(&m->ctl_cond);
	pthread_mutex_destroy(&m->ctl_lock);
}

/* Run a job here when it needs no drain, else hand it over. */
static void submit(struct h5m *m, fuse_req_t req, fuse_ino_t ino,
		   enum ctl_kind kind, size_t size, uint64_t start)
{
	struct ctl_job local = { req, ino, kind, size, start, NULL }, *j;

	if (!m->ctl_running || !ll_drain_needed(m, ll_node(req, ino)) ||
	    !(j = malloc(sizeof(*j)))) {
		/* no thread (or no memory): the drain's timeout still holds */
		run_job(m, &local, true);
		return;
	}
	*j = local;
	pthread_mutex_lock(&m->ctl_lock);
	*m->ctl_tail = j;
	m->ctl_tail = &j->next;
	pthread_cond_signal(&m->ctl_cond);
	pthread_mutex_unlock(&m->ctl_lock);
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
