/*
 * scan.c - bringing SOURCE's directories into the namespace, lazily:
 * a directory's entries are read (names and lstat, never contents) the
 * first time something looks inside it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/log.h"
#include "internal.h"

struct scan_ctx {
	struct fs *fs;
	struct node *dir;
};

static struct node *node_from_stat(struct fs *fs, const struct stat *st,
				   const char *target)
{
	struct node *n = ns_node_new(&fs->ns, st->st_mode, st->st_uid,
				     st->st_gid);

	if (!n)
		return NULL;
	n->rdev = st->st_rdev;
	n->size = (uint64_t)st->st_size;
	n->atime = st->st_atim;
	n->mtime = st->st_mtim;
	n->ctime = st->st_ctim;
	n->flags = N_FROM_SOURCE;
	/* directories: st_nlink until scanned; others: names not seen yet */
	n->src_nlink = (unsigned)st->st_nlink - !S_ISDIR(st->st_mode);
	src_ident_from_stat(&n->ident, st);
	if (target && !(n->target = strdup(target))) {
		ns_maybe_free(&fs->ns, n);
		return NULL;
	}
	ns_meta_account(&fs->ns, n);
	return n;
}

static int scan_entry(void *arg, const char *name, const struct stat *st,
		      const char *target)
{
	struct scan_ctx c = *(struct scan_ctx *)arg;
	struct fs *fs = c.fs;
	struct node *seen = fs_hlink_find(fs, st), *n;
	int err;

	n = seen ? seen : node_from_stat(fs, st, target);
	if (!n)
		return -ENOMEM;
	err = ns_link(&fs->ns, c.dir, name, n);
	if (err) {
		ns_maybe_free(&fs->ns, n);
		return err;
	}
	if (seen)
		fs_hlink_named(fs, n);
	else
		fs_hlink_add(fs, n, st);
	return 0;
}

struct scan_job {
	struct fs_job job;	/* job.node: the directory */
	int err;
};

int fs_collect_entry(void *arg, const char *name, const struct stat *st,
		     const char *target)
{
	struct fs_entries *list = arg;
	struct fs_entry *e;

	if (list->n == list->cap) {
		size_t cap = list->cap ? 2 * list->cap : 64;

		e = realloc(list->v, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		list->v = e;
		list->cap = cap;
	}
	e = &list->v[list->n];
	e->name = strdup(name);
	e->target = target ? strdup(target) : NULL;
	e->st = *st;
	if (!e->name || (target && !e->target)) {
		free(e->name);
		free(e->target);
		return -ENOMEM;
	}
	list->n++;
	return 0;
}

void fs_entries_free(struct fs_entries *list)
{
	for (size_t i = 0; i < list->n; i++) {
		free(list->v[i].name);
		free(list->v[i].target);
	}
	free(list->v);
	*list = (struct fs_entries){ 0 };
}

int fs_dir_mtime(struct fs *fs, const char *path, struct timespec *mtime)
{
	int fd = src_openat(&fs->src, path, O_RDONLY | O_DIRECTORY);
	struct stat st;
	int err = 0;

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0)
		err = -errno;
	else
		*mtime = st.st_mtim;
	close(fd);
	return err;
}

int fs_scan_add(struct fs *fs, struct node *dir, const struct fs_entry *e)
{
	struct scan_ctx c = { fs, dir };

	return scan_entry(&c, e->name, &e->st, e->target);
}

/*
 * List the directory under replay_lock (SOURCE's namespace holds still)
 * but without ns.lock, which every request needs: a slow SOURCE must not
 * stop the mount. Then add the entries, unless someone was faster. No
 * request changes an unscanned directory (each scans it first), so the
 * listing is still right when it is added.
 */
static void scan_run(struct fs_job *j)
{
	struct scan_job *sj = (struct scan_job *)j;
	struct fs *fs = j->fs;
	struct node *dir = j->node;
	struct fs_entries list = { 0 };
	struct timespec mtime = { 0 };
	char *path = NULL;
	int err = 0;

	pthread_mutex_lock(&fs->replay_lock);
	pthread_mutex_lock(&fs->ns.lock);
	if (dir->flags & N_SCANNED) {
		pthread_mutex_unlock(&fs->ns.lock);
		goto out;
	}
	path = fs_source_path_locked(fs, dir);
	pthread_mutex_unlock(&fs->ns.lock);
	if (!path) {
		err = -ENOMEM;
		goto out;
	}
	err = fs_dir_mtime(fs, path, &mtime);
	if (!err)
		err = src_scan(&fs->src, path, fs_collect_entry, &list);
	if (err == -ENOENT) {
		log_warn("directory %s vanished from SOURCE",
			 fs_shown(path));
		err = 0; /* show it empty rather than fail every lookup */
	}
	if (err) {
		log_warn("cannot list %s in SOURCE: %s", fs_shown(path),
			 strerror(-err));
		goto out;
	}
	pthread_mutex_lock(&fs->ns.lock);
	for (size_t i = 0; i < list.n && !err && !(dir->flags & N_SCANNED);
	     i++)
		err = fs_scan_add(fs, dir, &list.v[i]);
	if (!err && !(dir->flags & N_SCANNED)) {
		dir->flags |= N_SCANNED;
		dir->listed_mtime = mtime;
		dir->checked_ms = fs_now_ms();
	}
	pthread_mutex_unlock(&fs->ns.lock);
out:
	pthread_mutex_unlock(&fs->replay_lock);
	fs_entries_free(&list);
	free(path);
	sj->err = err;
}

int fs_scan(struct fs *fs, struct node *dir)
{
	struct scan_job *sj;
	int err;

	pthread_mutex_lock(&fs->ns.lock);
	if (dir->flags & N_SCANNED) {
		pthread_mutex_unlock(&fs->ns.lock);
		return 0;
	}
	pthread_mutex_unlock(&fs->ns.lock);
	sj = fs_job_new(fs, sizeof(*sj), dir, scan_run, NULL);
	if (!sj)
		return -ENOMEM;
	err = fs_job_run(fs, &sj->job);
	err = err ? fs_job_failed(&sj->job, "list") : sj->err;
	fs_job_put(&sj->job);
	return err;
}

int fs_scan_root(struct fs *fs)
{
	return fs->has_source ? fs_scan(fs, fs->ns.root) : 0;
}
