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

/* Undo mountinfo's octal escapes (\040 for a space...) in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 |
				      (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/*
 * The longest fuse.h5memfs mount point that holds `real`, from one read
 * of /proc/self/mountinfo. Lines of any length (getline: another mount's
 * options may be long). NULL when none (or on error).
 */
static char *scan_mountinfo(const char *real, bool exact)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL, *best = NULL;
	size_t cap = 0, best_len = 0;

	while (f && getline(&line, &cap, f) > 0) {
		char *sep = strstr(line, " - "), *save = NULL, *mnt = NULL;
		char *tok, *type;
		size_t l;
		int i = 0;

		if (!sep)
			continue;
		*sep = '\0';
		type = strtok_r(sep + 3, " \n", &save);
		if (!type || strcmp(type, "fuse.h5memfs") != 0)
			continue;
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... */
		for (tok = strtok_r(line, " ", &save); tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		if (!(mnt = tok))
			continue;
		unescape(mnt);
		l = strlen(mnt);
		if (exact ? strcmp(real, mnt) != 0 :
			    strncmp(real, mnt, l) || (real[l] && real[l] != '/' &&
						      strcmp(mnt, "/")))
			continue;
		if (l >= best_len) {
			free(best);
			best = strdup(mnt);
			best_len = l;
		}
	}
	free(line);
	if (f)
		fclose(f);
	return best;
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

