/*
 * commit.c - background write-back every `commit` seconds.
 *
 * A pass is an ordinary fs_sync_all: a file that fails (invalid HDF5,
 * full SOURCE) stays dirty and is tried again at the next tick.
 * Readers are never blocked (they take no lock); a writer waits only
 * while its own file is being copied out.
 */
#include <errno.h>
#include <time.h>

#include "../core/log.h"
#include "internal.h"

static void *committer(void *arg)
{
	struct fs *fs = arg;
	struct timespec until;

	pthread_mutex_lock(&fs->ns.lock);
	while (!fs->stop_commit) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += fs->o.commit;
		while (!fs->stop_commit &&
		       pthread_cond_timedwait(&fs->commit_cond, &fs->ns.lock,
					      &until) != ETIMEDOUT)
			;
		if (fs->stop_commit)
			break;
		pthread_mutex_unlock(&fs->ns.lock);
		if (fs->flush_kernel)
			fs->flush_kernel(fs->flush_arg);
		fs_sync_all(fs, NULL);
		pthread_mutex_lock(&fs->ns.lock);
		fs->stats.commits++;
	}
	pthread_mutex_unlock(&fs->ns.lock);
	return NULL;
}

int fs_commit_start(struct fs *fs, void (*flush)(void *), void *arg)
{
	pthread_condattr_t ca;
	int err;

	if (!fs->o.commit || fs->o.volatile_ || !fs->has_source)
		return 0;
	fs->flush_kernel = flush;
	fs->flush_arg = arg;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fs->commit_cond, &ca);
	pthread_condattr_destroy(&ca);
	err = pthread_create(&fs->committer, NULL, committer, fs);
	if (err) {
		pthread_cond_destroy(&fs->commit_cond);
		return -err;
	}
	fs->committing = true;
	return 0;
}

void fs_commit_stop(struct fs *fs)
{
	if (!fs->committing)
		return;
	pthread_mutex_lock(&fs->ns.lock);
	fs->stop_commit = true;
	pthread_cond_signal(&fs->commit_cond);
	pthread_mutex_unlock(&fs->ns.lock);
	pthread_join(fs->committer, NULL);
	pthread_cond_destroy(&fs->commit_cond);
	fs->committing = false;
}
