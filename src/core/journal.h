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

#include "node.h" /* struct src_ident */

enum jop_kind {
	J_MKDIR,	/* p1, mode */
	J_RMDIR,	/* p1 */
	J_UNLINK,	/* p1 */
	J_RENAME,	/* p1 -> p2, flags (RENAME_EXCHANGE, RENAME_NOREPLACE) */
	J_LINK,		/* existing p1, new name p2 */
	J_SYMLINK,	/* target p2, at p1 */
	J_MKNOD,	/* p1, mode, rdev */
};

/*
 * What the replay may find at the operation's target name in SOURCE (p2
 * of a rename or link, p1 of a creation) and still go on: what the mount
 * had there when the operation was made. Anything else was put there by
 * someone else since, and is never replaced (see replay.c).
 */
enum jop_expect {
	JX_NOTHING,	/* the mount had no entry there (jrn_add's default) */
	JX_IDENT,	/* the entry `was`, of type was_mode */
	JX_TYPE,	/* an entry of type was_mode the mount made, whose
			   identity it has not recorded yet */
};

struct jop {
	enum jop_kind kind;
	char *p1, *p2;
	mode_t mode;
	dev_t rdev;
	unsigned flags;
	enum jop_expect expect;
	mode_t was_mode;	/* type bits */
	struct src_ident was;	/* JX_IDENT: device, inode (and ctime: */
	bool was_ctime;		/* when known to be SOURCE's still) */
	bool settle;		/* `was` is being written back: what the
				   target holds is known when that ends */
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

/*
 * The replay put the object operation `done` (still in the journal) left
 * at SOURCE path `from` under the new name `to` (a sibling: a conflict
 * name), because `from` holds someone else's entry. Rewrites the later
 * operations so that they act on `to` where they meant the mount's
 * object at `from` (its renamed parents followed). When a name of the
 * mount still holds that object after the last operation, *mount_from
 * gets that mount path and *mount_to the one to give it instead (the
 * caller moves it in the namespace); otherwise both are NULL (a later
 * operation moved or removed it). 0 or -ENOMEM (then the journal may
 * be partly rewritten: *mount_from is NULL).
 */
int jrn_redirect(struct journal *j, const struct jop *done, const char *from,
		 const char *to, char **mount_from, char **mount_to);

/* Remove and free the oldest operation (after it was replayed). */
void jrn_pop(struct journal *j);

/*
 * Where PATH (a mount path) is in SOURCE now, undoing the pending
 * renames from the newest back. Returns a new string, or NULL on ENOMEM.
 */
char *jrn_source_path(const struct journal *j, const char *path);

#endif
