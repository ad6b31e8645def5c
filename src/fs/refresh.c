/*
 * refresh.c - names that others made or removed in SOURCE.
 *
 * A directory is read from SOURCE once (scan.c). When SOURCE is shared
 * (one mount per node over a network filesystem), other nodes add and
 * delete files in it afterwards. Two places notice:
 *
 * - a listing (opendir) or a name not found (lookup) of a directory
 *   listed more than a second ago asks SOURCE for the directory's mtime,
 *   and when it changed, lists it again and merges: names SOURCE has
 *   and the mount lacks are added; names the mount took from SOURCE,
 *   gone there, are dropped when the mount has nothing of its own in
 *   them (clean, closed, not a listed directory);
 * - an open of a file gone from SOURCE (fs_drop_gone_locked).
 *
 * Both only while the journal is empty: until this mount's own renames
 * and unlinks are written back, SOURCE differs from the mount by design.
 * A volatile mount never looks again: its namespace is its own.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/log.h"
#include "../core/ts.h"
#include "internal.h"

/* How often one directory's SOURCE mtime is asked for, at most. */
#define REFRESH_MS 1000

static bool mine_in_source(const struct fs *fs)
{
	return fs->has_source && !fs->o.volatile_ && fs->jrn.count == 0;
}

/*
 * Does the mount hold nothing of its own in n (so SOURCE may drop it)?
 * A loaded image is checked for changes the kernel made without a trace
 * (passthrough), under n->io: held by the caller (`io_held`), or taken
 * here if free (lock order is io, then ns), else n is kept for now.
 * ns.lock held.
 */
static bool only_sources(struct fs *fs, struct node *n, bool io_held)
{
	bool clean;

	if (!(n->flags & N_FROM_SOURCE) || n->nopen ||
	    (n->flags & (N_DIRTY | N_META_DIRTY | N_VOLATILE | N_LOADING |
			 N_CONFLICT | N_INVALID)))
		return false;
	if (S_ISDIR(n->mode))
		return !(n->flags & N_SCANNED);
	if (!fs_kernel_writes(fs) || !S_ISREG(n->mode) ||
	    !(n->flags & N_LOADED))
		return true; /* every change of it passed through the daemon */
	if (!io_held && pthread_mutex_trylock(&n->io) != 0)
		return false;
	clean = fs_image_clean_locked(fs, n);
	if (!io_held)
		pthread_mutex_unlock(&n->io);
	return clean;
}

/* Remove every name of n from the mount; the kernel gets ESTALE. */
static void drop_names(struct fs *fs, struct node *n)
{
	ns_pin(n);
	n->flags |= N_REBORN;
	if (fs_hlink_drop(fs, n))
		ns_unpin(&fs->ns, n);
	while (S_ISDIR(n->mode) ? n->links != NULL : n->nlinks > 0)
		ns_unlink(&fs->ns, n->links);
	ns_unpin(&fs->ns, n);
}

bool fs_drop_gone_locked(struct fs *fs, struct node *n)
{
	unsigned nopen = n->nopen;
	char *path;
	bool gone;

	if (!mine_in_source(fs) || !n->links)
		return false;
	n->nopen = 0; /* the open asking is not one of the mount's own */
	gone = only_sources(fs, n, true);
	n->nopen = nopen;
	if (!gone)
		return false;
	path = fs_log_path_locked(fs, n);
	log_info("%s was removed from SOURCE behind the mount; its names go "
		 "too", fs_named(path));
	free(path);
	drop_names(fs, n);
	return true;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct fs_entry *)a)->name,
		      ((const struct fs_entry *)b)->name);
}

static bool listed(const struct fs_entries *list, const char *name)
{
	struct fs_entry key = { .name = (char *)name };

	return bsearch(&key, list->v, list->n, sizeof(key), by_name) != NULL;
}

/* Merge a fresh listing into dir. ns.lock held. */
static void merge(struct fs *fs, struct node *dir, struct fs_entries *list)
{
	unsigned added = 0, dropped = 0;

	qsort(list->v, list->n, sizeof(*list->v), by_name);
	/* a drop may take several entries (hard links): start again */
	for (bool again = true; again;) {
		again = false;
		for (struct dentry *e = dir->first; e; e = e->next) {
			if (!listed(list, e->name) && only_sources(fs, e->node, false)) {
				drop_names(fs, e->node);
				dropped++;
				again = true;
				break;
			}
		}
	}
	for (size_t i = 0; i < list->n; i++) {
		if (ns_find(&fs->ns, dir, list->v[i].name))
			continue;
		if (fs_scan_add(fs, dir, &list->v[i]))
			break; /* ENOMEM: the rest next time */
		added++;
	}
	if (added || dropped)
		log_debug("SOURCE changed behind the mount: %u names added, %u "
			  "dropped in a directory", added, dropped);
}

static void refresh_run(struct fs_job *j)
{
	struct fs *fs = j->fs;
	struct node *dir = j->node;
	struct fs_entries list = { 0 };
	struct timespec mtime;
	char *path = NULL;
	int err;

	pthread_mutex_lock(&fs->replay_lock);
	pthread_mutex_lock(&fs->ns.lock);
	if (dir->links || dir == fs->ns.root)
		path = fs_source_path_locked(fs, dir);
	pthread_mutex_unlock(&fs->ns.lock);
	if (!path)
		goto out;
	err = fs_dir_mtime(fs, path, &mtime);
	if (err)
		goto out; /* gone, unreadable: keep what we have */
	pthread_mutex_lock(&fs->ns.lock);
	if (ts_equal(mtime, dir->listed_mtime)) {
		pthread_mutex_unlock(&fs->ns.lock);
		goto out;
	}
	pthread_mutex_unlock(&fs->ns.lock);
	err = src_scan(&fs->src, path, fs_collect_entry, &list);
	pthread_mutex_lock(&fs->ns.lock);
	if (!err && mine_in_source(fs) && (dir->flags & N_SCANNED)) {
		merge(fs, dir, &list);
		dir->listed_mtime = mtime;
	}
	pthread_mutex_unlock(&fs->ns.lock);
out:
	pthread_mutex_unlock(&fs->replay_lock);
	fs_entries_free(&list);
	free(path);
}

void fs_refresh(struct fs *fs, struct node *dir)
{
	struct fs_job *j;
	uint64_t now = fs_now_ms();

	pthread_mutex_lock(&fs->ns.lock);
	if (!mine_in_source(fs) || !S_ISDIR(dir->mode) ||
	    !(dir->flags & N_SCANNED) || !(dir->flags & N_FROM_SOURCE) ||
	    now - dir->checked_ms < REFRESH_MS || fs_source_hangs(fs)) {
		pthread_mutex_unlock(&fs->ns.lock);
		return;
	}
	dir->checked_ms = now;
	pthread_mutex_unlock(&fs->ns.lock);
	j = fs_job_new(fs, sizeof(*j), dir, refresh_run, NULL);
	if (!j)
		return;
	/* the listing in memory answers; the helper merges when it can */
	j->optional = true;
	if (fs_job_run(fs, j))
		log_info("SOURCE did not answer within %u ms: a directory is "
			 "listed from memory", FS_OPTIONAL_MS);
	fs_job_put(j);
}
