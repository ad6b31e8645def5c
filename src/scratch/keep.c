/*
 * keep.c - copy the workspace out to --keep DIR: cp -a into a hidden
 * directory beside DIR, then one rename puts it in place (an exchange when
 * DIR is the --from directory). See keep.h for the contracts.
 */
#include "keep.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "path.h"
#include "proc.h"

static bool dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	bool empty = true;

	if (!d)
		return false;
	while (empty && (e = readdir(d)))
		empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
	closedir(d);
	return empty;
}

/* Fill k->parent and k->path for a DIR that does not exist yet. */
static int prepare_new(struct keep *k, const char *dir)
{
	char *a = strdup(dir), *b = strdup(dir), *name, *parent;
	int ret = -1;

	if (!a || !b) {
		fprintf(stderr, SCRATCH_PROG ": out of memory\n");
		goto out;
	}
	parent = dirname(a);
	name = basename(b);
	if (!strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, "/")) {
		fprintf(stderr, SCRATCH_PROG ": --keep '%s' does not name a "
			"directory\n", dir);
		goto out;
	}
	k->parent = realpath(parent, NULL);
	if (!k->parent) {
		fprintf(stderr, SCRATCH_PROG ": --keep '%s' cannot be made: "
			"'%s': %s\n", dir, parent, strerror(errno));
		goto out;
	}
	if (asprintf(&k->path, "%s%s%s", k->parent,
		     strcmp(k->parent, "/") ? "/" : "", name) < 0) {
		k->path = NULL;
		fprintf(stderr, SCRATCH_PROG ": out of memory\n");
		goto out;
	}
	k->mode = KEEP_NEW;
	ret = 0;
out:
	free(a);
	free(b);
	return ret;
}

/* Fill k for a DIR that exists, st being its stat. */
static int prepare_existing(struct keep *k, const char *dir,
			    const struct stat *st, const char *from)
{
	struct stat fst;
	char *copy;

	if (!S_ISDIR(st->st_mode)) {
		fprintf(stderr, SCRATCH_PROG ": --keep '%s' exists and is not "
			"a directory\n", dir);
		return -1;
	}
	k->path = realpath(dir, NULL);
	copy = k->path ? strdup(k->path) : NULL;
	if (copy)
		k->parent = strdup(dirname(copy));
	free(copy);
	if (!k->path || !k->parent) {
		fprintf(stderr, SCRATCH_PROG ": --keep '%s' cannot be used: "
			"%s\n", dir, strerror(errno));
		return -1;
	}
	if (from && stat(from, &fst) == 0 && fst.st_dev == st->st_dev &&
	    fst.st_ino == st->st_ino) {
		k->mode = KEEP_REPLACE;
		return 0;
	}
	if (!strcmp(k->path, "/") || !dir_is_empty(k->path)) {
		fprintf(stderr, SCRATCH_PROG ": --keep '%s' is not empty; give "
			"a new or empty directory, or the --from directory to "
			"replace it\n", dir);
		return -1;
	}
	k->mode = KEEP_EMPTY;
	return 0;
}

int keep_prepare(struct keep *k, const char *dir, const char *from)
{
	struct stat st;
	int r;

	memset(k, 0, sizeof(*k));
	if (stat(dir, &st) == 0) {
		r = prepare_existing(k, dir, &st, from);
	} else if (errno == ENOENT) {
		r = prepare_new(k, dir);
	} else {
		fprintf(stderr, SCRATCH_PROG ": --keep '%s' cannot be used: "
			"%s\n", dir, strerror(errno));
		r = -1;
	}
	if (r == 0 && from && k->mode != KEEP_REPLACE &&
	    path_inside(k->path, from)) {
		fprintf(stderr, SCRATCH_PROG ": --keep '%s' is inside --from "
			"'%s', which is never modified unless --keep names "
			"it\n", dir, from);
		r = -1;
	}
	if (r == 0 && access(k->parent, W_OK | X_OK) < 0) {
		fprintf(stderr, SCRATCH_PROG ": --keep '%s' cannot be written: "
			"'%s': %s\n", dir, k->parent, strerror(errno));
		r = -1;
	}
	if (r < 0)
		keep_destroy(k);
	return r;
}

void keep_destroy(struct keep *k)
{
	free(k->path);
	free(k->parent);
	k->path = k->parent = NULL;
}

/* Pre-order: let the owner into every directory, so that it can go. */
static int open_up(const char *fpath, const struct stat *st, int type,
		   struct FTW *ftw)
{
	(void)ftw;
	if (type == FTW_D && (st->st_mode & 0700) != 0700)
		chmod(fpath, (st->st_mode & 07777) | 0700);
	return 0;
}

static bool remove_failed;

/* Post-order: remove, and go on past what cannot be removed. */
static int remove_entry(const char *fpath, const struct stat *st, int type,
			struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	if (remove(fpath) < 0 && errno != ENOENT)
		remove_failed = true;
	return 0;
}

/* Remove the tree at path (never crossing into another filesystem). */
static int remove_tree(const char *path)
{
	remove_failed = false;
	nftw(path, open_up, 32, FTW_PHYS | FTW_MOUNT);
	if (nftw(path, remove_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
		remove_failed = true;
	return remove_failed ? -1 : 0;
}

/* Run cp -a; 0 when it succeeded, -1 when not, 1 on a signal. */
static int run_cp(const char *from, const char *to, int sigfd,
		  struct signalfd_siginfo *si)
{
	const char *argv[] = { "cp", "-a", "-T", "--", from, to, NULL };
	struct signalfd_siginfo ignored;
	int fd, st, r;
	pid_t pid;

	pid = proc_spawn(argv, NULL, NULL, &fd);
	if (pid < 0) {
		fprintf(stderr, SCRATCH_PROG ": cannot run cp: %s\n",
			strerror(errno));
		return -1;
	}
	r = proc_wait(pid, fd, sigfd, -1, &st, si);
	if (r == 1) {
		if (proc_should_forward(si, pid))
			kill(pid, SIGTERM);
		proc_wait(pid, fd, -1, -1, &st, &ignored);
		return 1;
	}
	return r == 0 && st == 0 ? 0 : -1;
}

/* Put the complete copy tmp in place of k->path. */
static int install(const struct keep *k, const char *tmp)
{
	char *old = NULL;
	int r, saved;

	switch (k->mode) {
	case KEEP_NEW:
		r = renameat2(AT_FDCWD, tmp, AT_FDCWD, k->path,
			      RENAME_NOREPLACE);
		if (r < 0 && errno == EINVAL)
			r = rename(tmp, k->path); /* no NOREPLACE here */
		return r;
	case KEEP_EMPTY:
		return rename(tmp, k->path); /* fails if no longer empty */
	case KEEP_REPLACE:
		break;
	}
	r = renameat2(AT_FDCWD, tmp, AT_FDCWD, k->path, RENAME_EXCHANGE);
	if (r == 0) {
		old = strdup(tmp);
	} else if (errno == EINVAL) {
		/* No exchange on this filesystem: two renames instead. */
		if (asprintf(&old, "%s/.h5memfs-scratch-old.XXXXXX",
			     k->parent) < 0 || !mkdtemp(old))
			r = -1;
		else if ((r = rename(k->path, old)) == 0 &&
			 (r = rename(tmp, k->path)) < 0)
			rename(old, k->path);
	}
	saved = errno;
	if (r == 0 && old && remove_tree(old) < 0)
		fprintf(stderr, SCRATCH_PROG ": the previous content of '%s' "
			"could not all be removed from '%s'\n", k->path, old);
	else if (r < 0 && old)
		rmdir(old);
	free(old);
	errno = saved;
	return r;
}

int keep_copy(const struct keep *k, const char *mnt, int sigfd,
	      struct signalfd_siginfo *si)
{
	char *tmp = NULL;
	int r;

	if (asprintf(&tmp, "%s/.h5memfs-scratch-keep.XXXXXX", k->parent) < 0) {
		fprintf(stderr, SCRATCH_PROG ": out of memory\n");
		return -1;
	}
	if (!mkdtemp(tmp)) {
		fprintf(stderr, SCRATCH_PROG ": cannot copy the workspace "
			"beside '%s': %s\n", k->path, strerror(errno));
		free(tmp);
		return -1;
	}
	r = run_cp(mnt, tmp, sigfd, si);
	if (r != 0) {
		remove_tree(tmp);
		if (r < 0)
			fprintf(stderr, SCRATCH_PROG ": copying the workspace "
				"to '%s' failed; nothing was kept\n", k->path);
		else
			fprintf(stderr, SCRATCH_PROG ": interrupted; nothing "
				"was kept in '%s'\n", k->path);
		free(tmp);
		return r;
	}
	if (install(k, tmp) < 0) {
		fprintf(stderr, SCRATCH_PROG ": cannot move the copy of the "
			"workspace to '%s': %s; it is in '%s'\n", k->path,
			strerror(errno), tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}
