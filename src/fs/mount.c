/*
 * mount.c - the start and the end of a mount's fs: fs_init opens
 * SOURCE and makes the root; fs_destroy ends every thread src/fs
 * started (preload, commit, SOURCE helpers) and frees everything. No
 * write-back here (sync.c): the caller runs the final pass first.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int fs_init(struct fs *fs, const char *source, const struct fs_opts *o)
{
	struct stat st = { .st_mode = S_IFDIR | 0755 };
	int err;

	memset(fs, 0, sizeof(*fs));
	fs->o = *o;
	for (int i = 0; i < FS_FD_SPARE; i++)
		fs->spare_fd[i] = -1;
	if (gethostname(fs->host, sizeof(fs->host) - 1) < 0 || !fs->host[0])
		strcpy(fs->host, "host");
	fs->src.root = -1;
	jrn_init(&fs->jrn);
	pthread_mutex_init(&fs->replay_lock, NULL);
	pthread_cond_init(&fs->released, NULL);
	pthread_mutex_init(&fs->sync_lock, NULL);
	pthread_mutex_init(&fs->jobs_lock, NULL);
	if (source) {
		err = src_open(&fs->src, source);
		if (!err && fstat(fs->src.root, &st) < 0)
			err = -errno;
		if (err) {
			src_close(&fs->src);
			return err;
		}
		fs->has_source = true;
		fs->source_path = strdup(source);
	}
	err = ns_init(&fs->ns, st.st_mode, o->page_size);
	if (err) {
		src_close(&fs->src);
		return err;
	}
	fs->ns.lazy_release = fs_lazy_release; /* partial images (lazy.c) */
	if (source) {
		struct node *r = fs->ns.root;

		r->uid = st.st_uid;
		r->gid = st.st_gid;
		r->atime = st.st_atim;
		r->mtime = st.st_mtim;
		r->ctime = st.st_ctim;
		r->flags = N_FROM_SOURCE;
		r->src_nlink = (unsigned)st.st_nlink;
	}
	/* before any image: write-back keeps descriptors however many */
	if (fs->has_source && !o->volatile_)
		fs_spares_take(fs);
	return 0;
}

/* What fs_destroy left allocated on purpose (see there). */
static struct fs *volatile fs_left;

void fs_destroy(struct fs *fs)
{
	fs_preload_stop(fs);
	fs_commit_stop(fs);
	/*
	 * A helper blocked on a SOURCE that stopped answering cannot be
	 * interrupted, nor joined: wait 2 s for it. Past that it may wake
	 * up any time and would use all this: leave it allocated, the
	 * process is ending anyway (and exits with that thread still
	 * blocked). A copy of the struct stays reachable, so that leak
	 * checkers (LeakSanitizer, valgrind) do not report what was kept
	 * on purpose.
	 */
	if (!fs_lazy_stop(fs, 2000) || !fs_jobs_end(fs, 2000)) {
		fs_left = malloc(sizeof(*fs));
		if (fs_left)
			memcpy(fs_left, fs, sizeof(*fs));
		return;
	}
	for (int i = 0; i < FS_FD_SPARE; i++)
		if (fs->spare_fd[i] >= 0)
			close(fs->spare_fd[i]);
	while (fs->dirs) /* never released: the kernel went first */
		fs_closedir(fs, fs->dirs);
	fs_hlinks_free(fs);
	ns_destroy(&fs->ns);
	jrn_destroy(&fs->jrn);
	src_close(&fs->src);
	free(fs->source_path);
	pthread_mutex_destroy(&fs->replay_lock);
	pthread_cond_destroy(&fs->released);
	pthread_mutex_destroy(&fs->sync_lock);
	pthread_mutex_destroy(&fs->jobs_lock);
}
