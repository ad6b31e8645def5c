/*
 * journal.h - namespace changes made in the mount and not yet made in
 * SOURCE, in the order they happened.
 *
 * Renames, unlinks, mkdir, rmdir, symlinks, hard links and special files
 * are recorded with the paths they had at the time. Replaying them in
 * order on SOURCE makes SOURCE's namespace the mount's, so every path in
 * the journal is right at the moment it is replayed. The journal also
 * answers the reverse question: where, in SOURCE as it is now, is the
 * thing the mount calls PATH? (jrn_source_path), which is how a file
 * renamed in the mount but not yet written back is still loaded from
 * its old place.
 *
 * File contents are not journalled: they are written by the data
 * write-back, which creates the files that are new.
 * Callers hold the namespace lock.
 */
#ifndef H5M_JOURNAL_H
#define H5M_JOURNAL_H

#include <stdbool.h>
#include <sys/types.h>

enum jop_kind {
	J_MKDIR,	/* p1, mode */
	J_RMDIR,	/* p1 */
	J_UNLINK,	/* p1 */
	J_RENAME,	/* p1 -> p2, flags (RENAME_EXCHANGE, RENAME_NOREPLACE) */
	J_LINK,		/* existing p1, new name p2 */
	J_SYMLINK,	/* target p2, at p1 */
	J_MKNOD,	/* p1, mode, rdev */
};

struct jop {
	enum jop_kind kind;
	char *p1, *p2;
	mode_t mode;
	dev_t rdev;
	unsigned flags;
	struct jop *next;
};

struct journal {
	struct jop *head, *tail;
	unsigned long count;
};

void jrn_init(struct journal *j);
void jrn_destroy(struct journal *j);

/*
 * Append an operation; p1 and p2 are copied (p2 may be NULL).
 * 0 or -ENOMEM (then nothing is recorded).
 */
int jrn_add(struct journal *j, enum jop_kind kind, const char *p1,
	    const char *p2, mode_t mode, dev_t rdev, unsigned flags);

/* Remove and free the oldest operation (after it was replayed). */
void jrn_pop(struct journal *j);

/*
 * Where PATH (a mount path) is in SOURCE now, undoing the pending
 * renames from the newest back. Returns a new string, or NULL on ENOMEM.
 */
char *jrn_source_path(const struct journal *j, const char *path);

#endif
