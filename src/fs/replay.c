/*
 * replay.c - replaying the journal on SOURCE, so that SOURCE's namespace
 * becomes the mount's (renames, unlinks, directories, links, special
 * files), operation by operation, each durable before the next.
 */
#include <errno.h>
#include <string.h>

#include "../core/log.h"
#include "internal.h"

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

int fs_replay_and_lock(struct fs *fs, bool quiet)
{
	for (;;) {
		struct jop *op;
		int err;

		pthread_mutex_lock(&fs->ns.lock);
		op = fs->jrn.head;
		if (!op)
			return 0;
		pthread_mutex_unlock(&fs->ns.lock);
		err = wb_replay(&fs->src, op);
		if (err && structural(err)) {
			log_warn("SOURCE changed behind the mount: %s of %s "
				 "skipped (%s)",
				 op->kind == J_RENAME ? "rename" : "change",
				 op->p1, strerror(-err));
			err = 0;
		}
		pthread_mutex_lock(&fs->ns.lock);
		if (err) {
			if (!quiet)
				log_err("cannot update SOURCE for %s: %s",
					op->p1, strerror(-err));
			return err;
		}
		jrn_pop(&fs->jrn);
		pthread_mutex_unlock(&fs->ns.lock);
	}
}

int fs_replay_all(struct fs *fs)
{
	int err;

	pthread_mutex_lock(&fs->replay_lock);
	err = fs_replay_and_lock(fs, false);
	pthread_mutex_unlock(&fs->ns.lock);
	pthread_mutex_unlock(&fs->replay_lock);
	return err;
}
