/*
 * loader.c - the mount's background loader: one thread that fills the
 * partial images (lazy.c) one after the other, in the order they were
 * opened, each from its start, and makes each whole. Started by the
 * first partial image, stopped at the end of the mount. A SOURCE that
 * stops answering blocks this thread only: reads fetch what they need
 * themselves, with their deadline.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/log.h"
#include "internal.h"

/* One partial image waiting for the loader; its node is pinned. */
struct fs_loadq {
	struct fs_lazy *lz;
	struct node *node;
	struct fs_loadq *next;
};

/*
 * How long the loader waits after a request had to fetch: SOURCE is
 * then serving a program waiting for its answer (h5ls walking a file's
 * headers), which a background read of 8 MiB ahead of it only delays.
 */
#define MAKE_WAY_MS 100

static void make_way(struct fs *fs)
{
	while (!fs->loader.stop &&
	       fs_now_ms() - __atomic_load_n(&fs->loader.busy_ms,
					     __ATOMIC_RELAXED) < MAKE_WAY_MS)
		usleep(10000);
}

static void load_one(struct fs *fs, struct fs_loadq *q)
{
	int r = 0;

	while (!fs->loader.stop) {
		make_way(fs);
		if (fs->loader.stop || (r = fs_lazy_step(fs, q->lz)) != 1)
			break;
	}
	if (fs->loader.stop)
		return;
	if (r < 0) {
		char *path;

		pthread_mutex_lock(&fs->ns.lock);
		path = fs_log_path_locked(fs, q->node);
		pthread_mutex_unlock(&fs->ns.lock);
		log_warn("cannot load the rest of %s from SOURCE: %s (reads "
			 "fetch what they need)", fs_named(path),
			 strerror(-r));
		free(path);
		return;
	}
	fs_lazy_done(fs, q->node, q->lz);
}

static void *loader(void *arg)
{
	struct fs *fs = arg;

	pthread_mutex_lock(&fs->ns.lock);
	while (!fs->loader.stop) {
		struct fs_loadq *q = fs->loader.head;

		if (!q) {
			pthread_cond_wait(&fs->loader.cond, &fs->ns.lock);
			continue;
		}
		pthread_mutex_unlock(&fs->ns.lock);
		load_one(fs, q);
		pthread_mutex_lock(&fs->ns.lock);
		if (fs->loader.stop)
			break; /* fs_lazy_stop empties the queue */
		fs->loader.head = q->next;
		ns_unpin(&fs->ns, q->node);
		fs_lazy_put(q->lz);
		free(q);
	}
	fs->loader.ended = true;
	pthread_mutex_unlock(&fs->ns.lock);
	return NULL;
}

void fs_lazy_install_locked(struct fs *fs, struct node *n,
			    struct fs_lazy *lz)
{
	struct fs_loadq *q = calloc(1, sizeof(*q)), **pp;

	n->file->lazy = lz;
	if (!q)
		return; /* reads fetch it, write-back completes it */
	if (!fs->loader.running) {
		pthread_cond_init(&fs->loader.cond, NULL);
		fs->loader.stop = fs->loader.ended = false;
		if (pthread_create(&fs->loader.thread, NULL, loader, fs)) {
			pthread_cond_destroy(&fs->loader.cond);
			free(q);
			log_warn("cannot start the background loader");
			return;
		}
		fs->loader.running = true;
	}
	/*
	 * Its program reads where it wants first (h5ls the superblock and
	 * then the headers, cat from the start): the loader's first 8 MiB
	 * would only be in the way of those reads.
	 */
	__atomic_store_n(&fs->loader.busy_ms, fs_now_ms(), __ATOMIC_RELAXED);
	fs_lazy_ref(lz);
	ns_pin(n);
	q->lz = lz;
	q->node = n;
	for (pp = &fs->loader.head; *pp;
	     pp = &(*pp)->next)
		;
	*pp = q;
	pthread_cond_signal(&fs->loader.cond);
}

bool fs_lazy_stop(struct fs *fs, unsigned ms)
{
	struct fs_loadq *q;
	bool ended;

	pthread_mutex_lock(&fs->ns.lock);
	if (!fs->loader.running) {
		pthread_mutex_unlock(&fs->ns.lock);
		return true;
	}
	fs->loader.stop = true;
	pthread_cond_signal(&fs->loader.cond);
	/* wake it where it waits for another thread's fetch */
	for (q = fs->loader.head; q; q = q->next)
		fs_lazy_cancel(q->lz);
	pthread_mutex_unlock(&fs->ns.lock);
	for (unsigned i = 0; i <= ms / 10; i++) {
		pthread_mutex_lock(&fs->ns.lock);
		ended = fs->loader.ended;
		pthread_mutex_unlock(&fs->ns.lock);
		if (ended)
			break;
		usleep(10000);
	}
	if (!ended)
		return false; /* blocked on SOURCE: cannot be joined */
	pthread_join(fs->loader.thread, NULL);
	pthread_cond_destroy(&fs->loader.cond);
	fs->loader.running = false;
	pthread_mutex_lock(&fs->ns.lock);
	while ((q = fs->loader.head)) {
		fs->loader.head = q->next;
		if (q->node->file->lazy == q->lz)
			fs_lazy_drop_locked(fs, q->node);
		ns_unpin(&fs->ns, q->node);
		fs_lazy_put(q->lz);
		free(q);
	}
	pthread_mutex_unlock(&fs->ns.lock);
	return true;
}
