/*
 * path.h - the one path test h5memfs-scratch needs, on canonical paths
 * (realpath output: absolute, no "..", no trailing slash).
 */
#ifndef H5M_SCRATCH_PATH_H
#define H5M_SCRATCH_PATH_H

#include <stdbool.h>
#include <string.h>

/* Whether canonical path `in` is `dir` itself or below it. */
static inline bool path_inside(const char *in, const char *dir)
{
	size_t l = strlen(dir);

	if (l == 1)
		return true; /* "/" holds everything */
	return !strncmp(in, dir, l) && (in[l] == '/' || in[l] == '\0');
}

#endif
