/*
 * job.c - SOURCE calls with a deadline.
 *
 * A SOURCE that stops answering (a hung NFS server, a stopped FUSE
 * daemon) blocks whatever syscall touches it, and nothing can interrupt
 * that. A call that a FUSE request needs (listing a directory, loading a
 * file, reading its xattrs) is therefore made by a helper thread of its
 * own; the request waits o.source_timeout seconds at most, then fails
 * with EIO while the helper goes on: it finishes when SOURCE answers
 * again (its result is then kept, or thrown away, by the job itself), or
 * stays blocked. The job's memory is freed by whichever of the two is
 * done last. One short-lived thread per call: it costs far less than the
 * SOURCE I/O it wraps. No helper is detached: each is joined by the next
 * job that finds it ended, and the rest by fs_jobs_end when the mount
 * ends. Write-back does not use this: it waits for SOURCE for as long as
 * it takes.
 *
 * So that SOURCE never holds every FUSE worker, at most FS_MAX_WAITING
 * requests wait for it at once (jobs, opens behind a load, reads of
 * files served from SOURCE); past that a request fails with EIO at once.
 * A check the request can do without (`optional`) is waited for
 * FS_OPTIONAL_MS at most.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/log.h"
#include "../core/ts.h"
#include "internal.h"

/* Helpers allowed to hang at once; past that, fail at once. */
#define MAX_STUCK 16

/*
 * A helper thread, joined by whoever next finds it ended (the next
 * job, or fs_jobs_end): the list is under fs.jobs_lock.
 */
struct fs_helper {
	pthread_t thread;
	bool ended;
	struct fs_helper *next;
};

static void *helper(void *arg)
{
	struct fs_job *j = arg;
	struct fs *fs = j->fs;
	struct fs_helper *h = j->helper;

	j->run(j);
	pthread_mutex_lock(&j->lock);
	j->done = true;
	if (j->late)
		__atomic_sub_fetch(&j->fs->stuck_jobs, 1, __ATOMIC_RELAXED);
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->lock);
	fs_job_put(j);
	pthread_mutex_lock(&fs->jobs_lock);
	h->ended = true; /* the last touch of fs: it may go once joined */
	pthread_mutex_unlock(&fs->jobs_lock);
	return NULL;
}

/*
 * Join the helpers that ended. Returns how many still run (blocked on
 * SOURCE, or about to end).
 */
static unsigned reap(struct fs *fs)
{
	struct fs_helper *ended = NULL, **pp;
	unsigned running = 0;

	pthread_mutex_lock(&fs->jobs_lock);
	for (pp = &fs->helpers; *pp;) {
		struct fs_helper *h = *pp;

		if (h->ended) {
			*pp = h->next;
			h->next = ended;
			ended = h;
		} else {
			running++;
			pp = &h->next;
		}
	}
	pthread_mutex_unlock(&fs->jobs_lock);
	while (ended) {
		struct fs_helper *h = ended;

		ended = h->next;
		pthread_join(h->thread, NULL);
		free(h);
	}
	return running;
}

void *fs_job_new(struct fs *fs, size_t size, struct node *n,
		 void (*run)(struct fs_job *j),
		 void (*release)(struct fs_job *j))
{
	struct fs_job *j = calloc(1, size);

	if (!j)
		return NULL;
	j->run = run;
	j->release = release;
	j->node = n;
	j->fs = fs;
	pthread_mutex_lock(&fs->ns.lock);
	ns_pin(n);
	pthread_mutex_unlock(&fs->ns.lock);
	return j;
}

void fs_job_put(struct fs_job *j)
{
	struct fs *fs = j->fs;
	bool last;

	pthread_mutex_lock(&j->lock);
	last = --j->refs == 0;
	pthread_mutex_unlock(&j->lock);
	if (!last)
		return;
	pthread_cond_destroy(&j->cond);
	pthread_mutex_destroy(&j->lock);
	pthread_mutex_lock(&fs->ns.lock);
	ns_unpin(&fs->ns, j->node);
	pthread_mutex_unlock(&fs->ns.lock);
	if (j->release)
		j->release(j);
	free(j);
}

/* One more request waits for SOURCE; false when FS_MAX_WAITING do. */
bool fs_wait_begin(struct fs *fs)
{
	if (__atomic_add_fetch(&fs->waiting, 1, __ATOMIC_RELAXED) <=
	    FS_MAX_WAITING)
		return true;
	__atomic_sub_fetch(&fs->waiting, 1, __ATOMIC_RELAXED);
	return false;
}

void fs_wait_end(struct fs *fs)
{
	__atomic_sub_fetch(&fs->waiting, 1, __ATOMIC_RELAXED);
}

static int run_waiting(struct fs *fs, struct fs_job *j);

int fs_job_run(struct fs *fs, struct fs_job *j)
{
	pthread_condattr_t ca;
	int rc;

	j->fs = fs;
	j->done = j->late = j->crowded = false;
	j->refs = 1; /* the caller's: fs_job_put frees, whatever happens */
	pthread_mutex_init(&j->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&j->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (j->no_deadline)
		return run_waiting(fs, j); /* write-back: not a worker */
	if (!fs_wait_begin(fs)) {
		j->crowded = true;
		return -EIO;
	}
	rc = run_waiting(fs, j);
	fs_wait_end(fs);
	return rc;
}

static int run_waiting(struct fs *fs, struct fs_job *j)
{
	struct timespec until;
	int rc = 0;

	if ((!fs->o.source_timeout && !j->optional) || j->no_deadline) {
		j->run(j); /* source_timeout=0: wait for ever */
		return 0;
	}
	if (__atomic_load_n(&fs->stuck_jobs, __ATOMIC_RELAXED) >= MAX_STUCK)
		return -EIO; /* SOURCE still hangs: do not pile up threads */
	reap(fs);
	j->helper = calloc(1, sizeof(*j->helper));
	j->refs = 2;
	pthread_mutex_lock(&fs->jobs_lock);
	if (!j->helper ||
	    pthread_create(&j->helper->thread, NULL, helper, j) != 0) {
		pthread_mutex_unlock(&fs->jobs_lock);
		free(j->helper);
		j->refs = 1;
		j->run(j); /* no thread to spare: wait here */
		return 0;
	}
	j->helper->next = fs->helpers;
	fs->helpers = j->helper;
	pthread_mutex_unlock(&fs->jobs_lock);
	if (j->optional &&
	    (!fs->o.source_timeout ||
	     fs->o.source_timeout * 1000ULL > FS_OPTIONAL_MS))
		until = ts_in_ms(CLOCK_MONOTONIC, FS_OPTIONAL_MS);
	else
		until = ts_in_ms(CLOCK_MONOTONIC,
				 fs->o.source_timeout * 1000UL);
	pthread_mutex_lock(&j->lock);
	while (!j->done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&j->cond, &j->lock, &until);
	if (!j->done) {
		j->late = true;
		__atomic_add_fetch(&fs->stuck_jobs, 1, __ATOMIC_RELAXED);
	}
	rc = j->done ? 0 : -EIO;
	pthread_mutex_unlock(&j->lock);
	return rc;
}

bool fs_source_hangs(struct fs *fs)
{
	return __atomic_load_n(&fs->stuck_jobs, __ATOMIC_RELAXED) > 0;
}

static void log_unanswered(struct fs *fs, struct node *n, bool crowded,
			   const char *what)
{
	bool unlinked;
	char *path;

	pthread_mutex_lock(&fs->ns.lock);
	path = ns_path(&fs->ns, n, &unlinked);
	pthread_mutex_unlock(&fs->ns.lock);
	if (crowded)
		log_err("%u requests already wait for SOURCE: cannot %s %s",
			FS_MAX_WAITING, what,
			path && *path ? path : path ? "." : "a file");
	else
		log_err("SOURCE did not answer within %u s: cannot %s %s",
			fs->o.source_timeout, what,
			path && *path ? path : path ? "." : "a file");
	free(path);
}

int fs_job_failed(struct fs_job *j, const char *what)
{
	log_unanswered(j->fs, j->node, j->crowded, what);
	return -EIO;
}

int fs_io_lock_for_open(struct fs *fs, struct node *n)
{
	struct timespec until;
	bool loading;
	int rc;

	if (pthread_mutex_trylock(&n->io) == 0)
		return 0;
	pthread_mutex_lock(&fs->ns.lock);
	loading = n->flags & N_LOADING;
	pthread_mutex_unlock(&fs->ns.lock);
	if (!loading) {
		/* a write or a mark: held for a moment, not for SOURCE */
		pthread_mutex_lock(&n->io);
		return 0;
	}
	if (!fs_wait_begin(fs)) {
		log_unanswered(fs, n, true, "open");
		return -EIO;
	}
	if (!fs->o.source_timeout) {
		rc = pthread_mutex_lock(&n->io);
	} else {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += fs->o.source_timeout;
		rc = pthread_mutex_timedlock(&n->io, &until);
	}
	fs_wait_end(fs);
	if (rc == 0)
		return 0;
	log_unanswered(fs, n, false, "open (another open loads it)");
	return -EIO;
}

bool fs_jobs_end(struct fs *fs, unsigned ms)
{
	for (unsigned i = 0; i < ms / 10; i++) {
		if (!reap(fs))
			return true;
		usleep(10000);
	}
	return !reap(fs);
}
