/*
 * keep.h - --keep DIR: the workspace's final content, copied out of the
 * mount into DIR before the workspace is thrown away.
 *
 * The copy is made by cp -a into a new hidden directory beside DIR, then
 * renamed into place, so DIR never holds half a result. This file checks
 * DIR before the run and installs the copy after it; it does not know
 * about mounts.
 */
#ifndef H5M_SCRATCH_KEEP_H
#define H5M_SCRATCH_KEEP_H

#include <sys/signalfd.h>

enum keep_mode {
	KEEP_NEW,	/* DIR does not exist: it is created */
	KEEP_EMPTY,	/* DIR is an empty directory: it is replaced */
	KEEP_REPLACE,	/* DIR is the --from directory: it is replaced */
};

struct keep {
	char *path;	/* canonical DIR (parent canonical, for KEEP_NEW) */
	char *parent;	/* canonical directory that holds DIR */
	enum keep_mode mode;
};

/*
 * Check DIR before anything is mounted or run: its parent must be a
 * directory; DIR must not exist, or be an empty directory, or be the same
 * directory as from (canonical, or NULL). DIR inside from is refused:
 * --from is modified only when --keep names it.
 *
 * Returns 0 and fills k, or -1 after a message.
 */
int keep_prepare(struct keep *k, const char *dir, const char *from);

/*
 * Copy the content of directory mnt to k's DIR, watching sigfd meanwhile.
 * With KEEP_REPLACE the previous content of DIR is removed once the copy
 * has taken its place.
 *
 * Returns 0 once DIR holds the copy. Returns -1 after a message when the
 * copy or its move failed (DIR is then as it was; a complete copy that
 * could not be moved is left where the message says), and 1 when a signal
 * interrupted the copy (stored in *si; nothing was kept).
 */
int keep_copy(const struct keep *k, const char *mnt, int sigfd,
	      struct signalfd_siginfo *si);

void keep_destroy(struct keep *k);

#endif
