/*
 * preload.c - loading every file of SOURCE at mount, in the background.
 *
 * The mount serves at once; a thread walks the tree breadth-first and
 * loads each file that still fits in max_memory without evicting
 * anything. Opening a file that is being loaded waits for that file only
 * (its io mutex), not for the whole preload.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>

#include "../core/log.h"
#include "internal.h"

/* Pinned children of dir, NULL-terminated; caller unpins and frees. */
static struct node **children(struct fs *fs, struct node *dir)
{
	struct node **v;
	size_t i = 0;

	pthread_mutex_lock(&fs->ns.lock);
	v = calloc(dir->nchildren + 1, sizeof(*v));
	for (struct dentry *d = dir->first; v && d; d = d->next) {
		ns_pin(d->node);
		v[i++] = d->node;
	}
	pthread_mutex_unlock(&fs->ns.lock);
	return v;
}

static void preload_file(struct fs *fs, struct node *n)
{
	bool fits;

	pthread_mutex_lock(&fs->ns.lock);
	fits = !(n->flags & N_LOADED) && (n->flags & N_FROM_SOURCE) &&
	       fs_budget_used_locked(fs) + fs->ns.mem_reserved + n->size <=
		       fs->o.max_memory;
	if (!(n->flags & N_LOADED) && !fits)
		fs->preload.skipped++;
	pthread_mutex_unlock(&fs->ns.lock);
	if (!fits)
		return;
	if (fs_open_how(fs, n, O_RDONLY, NULL, true) == 0) {
		fs_close(fs, n);
		pthread_mutex_lock(&fs->ns.lock);
		fs->preload.files++;
		fs->preload.bytes += n->size;
		pthread_mutex_unlock(&fs->ns.lock);
	}
}

static void *preloader(void *arg)
{
	struct fs *fs = arg;
	struct node **queue = NULL;
	size_t head = 0, tail = 0, cap = 0;

	pthread_mutex_lock(&fs->ns.lock);
	ns_pin(fs->ns.root);
	pthread_mutex_unlock(&fs->ns.lock);
	queue = malloc(sizeof(*queue) * (cap = 64));
	if (queue)
		queue[tail++] = fs->ns.root;
	while (queue && head < tail && !fs->preload.stop) {
		struct node *dir = queue[head++], **kids;

		if (fs_scan(fs, dir) == 0 && (kids = children(fs, dir))) {
			for (size_t i = 0; kids[i]; i++) {
				struct node *k = kids[i];

				if (S_ISDIR(k->mode) && tail < (size_t)-1) {
					if (tail == cap) {
						struct node **q = realloc(
							queue, sizeof(*q) *
								       (cap *= 2));
						if (!q) {
							pthread_mutex_lock(&fs->ns.lock);
							ns_unpin(&fs->ns, k);
							pthread_mutex_unlock(&fs->ns.lock);
							continue;
						}
						queue = q;
					}
					queue[tail++] = k; /* keeps its pin */
					continue;
				}
				if (S_ISREG(k->mode) && !fs->preload.stop)
					preload_file(fs, k);
				pthread_mutex_lock(&fs->ns.lock);
				ns_unpin(&fs->ns, k);
				pthread_mutex_unlock(&fs->ns.lock);
			}
			free(kids);
		}
		pthread_mutex_lock(&fs->ns.lock);
		ns_unpin(&fs->ns, dir);
		pthread_mutex_unlock(&fs->ns.lock);
	}
	pthread_mutex_lock(&fs->ns.lock);
	while (head < tail)
		ns_unpin(&fs->ns, queue[head++]);
	fs->preload.done = true;
	pthread_mutex_unlock(&fs->ns.lock);
	free(queue);
	log_info("preload done: %llu file(s), %llu bytes, %llu skipped",
		 (unsigned long long)fs->preload.files,
		 (unsigned long long)fs->preload.bytes,
		 (unsigned long long)fs->preload.skipped);
	return NULL;
}

int fs_preload_start(struct fs *fs)
{
	int err;

	if (!fs->has_source)
		return 0;
	err = pthread_create(&fs->preload.thread, NULL, preloader, fs);
	if (err)
		return -err;
	fs->preload.running = true;
	return 0;
}

void fs_preload_stop(struct fs *fs)
{
	if (!fs->preload.running)
		return;
	fs->preload.stop = true;
	pthread_join(fs->preload.thread, NULL);
	fs->preload.running = false;
}
