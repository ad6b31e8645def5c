/*
 * base.c - the ground floor of src/fs: helpers every other file of it
 * uses (SOURCE paths through the journal, journalling, file identity,
 * clocks and time stamps). Nothing here calls another file of src/fs;
 * nothing here does I/O on SOURCE.
 */
#include <stdlib.h>
#include <time.h>

#include "../core/ts.h"
#include "internal.h"

int fs_journal(struct fs *fs, enum jop_kind kind, const char *p1,
	       const char *p2, mode_t mode, dev_t rdev, unsigned flags,
	       struct node *n)
{
	if (!fs->has_source)
		return 0;
	if (n)
		n->flags |= N_SRC_MOVED; /* its replay moves SOURCE's ctime */
	/*
	 * A volatile mount never replays the journal, but still needs the
	 * renames and links that move files it may load from SOURCE later:
	 * those of SOURCE's files and of directories (which may hold them).
	 */
	if (fs->o.volatile_ &&
	    ((kind != J_RENAME && kind != J_LINK) || !n ||
	     (!(n->flags & N_FROM_SOURCE) && !S_ISDIR(n->mode) &&
	      !(flags & RENAME_EXCHANGE))))
		return 0;
	return jrn_add(&fs->jrn, kind, p1, p2, mode, rdev, flags);
}

char *fs_log_path_locked(struct fs *fs, struct node *n)
{
	bool unlinked;

	return ns_path(&fs->ns, n, &unlinked);
}

char *fs_source_path_locked(struct fs *fs, const struct node *n)
{
	bool unlinked;
	char *p = ns_path(&fs->ns, n, &unlinked), *s;

	if (!p)
		return NULL;
	s = jrn_source_path(&fs->jrn, p);
	free(p);
	return s;
}

bool fs_same_file(const struct src_ident *a, const struct src_ident *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       ts_equal(a->mtime, b->mtime);
}

uint64_t fs_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

const struct wb_result *fs_wb_result(const struct node *n)
{
	static const struct wb_result none; /* never written back */

	return n->wb ? n->wb : &none;
}

void fs_touch_mc(struct node *n)
{
	n->mtime = n->ctime = ns_now();
	n->flags |= N_META_DIRTY;
}

void fs_touch_c(struct node *n)
{
	n->ctime = ns_now();
	n->flags |= N_META_DIRTY;
}
