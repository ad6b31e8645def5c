/*
 * mounts.c - finding h5memfs mounts in /proc/self/mountinfo, for the
 * commands.
 */
#include "mounts.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/mountinfo.h"

struct scan {
	const char *real;
	bool exact;
	char *best;
	size_t best_len;
};

static bool consider(const struct mountinfo_entry *e, void *arg)
{
	struct scan *sc = arg;
	const char *mnt = e->mountpoint, *real = sc->real;
	size_t l = strlen(mnt);

	if (strcmp(e->fstype, "fuse.h5memfs") != 0)
		return false;
	if (sc->exact ? strcmp(real, mnt) != 0 :
		        strncmp(real, mnt, l) || (real[l] && real[l] != '/' &&
						  strcmp(mnt, "/")))
		return false;
	if (l >= sc->best_len) {
		free(sc->best);
		sc->best = strdup(mnt);
		sc->best_len = l;
	}
	return false;
}

/*
 * The longest fuse.h5memfs mount point that holds `real` (`exact`: that
 * is `real`), from one read of /proc/self/mountinfo. NULL when none (or
 * on error).
 */
static char *scan_mountinfo(const char *real, bool exact)
{
	struct scan sc = { real, exact, NULL, 0 };

	mountinfo_each(consider, &sc);
	return sc.best;
}

/*
 * The h5memfs mount holding path, or NULL: errno is then that of
 * realpath, or 0 when path is simply not in such a mount.
 */
char *mount_of(const char *path)
{
	char *real = realpath(path, NULL), *best = NULL;

	if (!real)
		return NULL;
	/*
	 * The kernel lists mountinfo a page at a time: mounts coming and
	 * going between two reads may hide a line. Look again before
	 * saying no.
	 */
	for (int tries = 0; !best && tries < 3; tries++) {
		if (tries)
			usleep(20000);
		best = scan_mountinfo(real, false);
	}
	free(real);
	errno = 0;
	return best;
}

/*
 * The absolute path of `path` with symlinks resolved, without looking
 * at its last component when that fails (a dead mount answers ENOTCONN).
 */
static char *canonical(const char *path)
{
	char *real = realpath(path, NULL), *d1, *d2, *dir, *out = NULL;
	const char *base;

	if (real)
		return real;
	d1 = strdup(path);
	d2 = strdup(path);
	if (d1 && d2) {
		dir = realpath(dirname(d1), NULL);
		base = basename(d2);
		if (dir && asprintf(&out, "%s%s%s", dir,
				    strcmp(dir, "/") ? "/" : "", base) < 0)
			out = NULL;
		free(dir);
	}
	free(d1);
	free(d2);
	return out;
}

char *mount_point_at(const char *path)
{
	char *real = canonical(path), *mnt = NULL;

	if (!real)
		return NULL;
	for (int tries = 0; !mnt && tries < 3; tries++) {
		if (tries)
			usleep(20000);
		mnt = scan_mountinfo(real, true);
	}
	free(real);
	errno = 0;
	return mnt;
}

