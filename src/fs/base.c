/*
 * base.c - the ground floor of src/fs: helpers every other file of it
 * uses (SOURCE paths through the journal, journalling, file identity,
 * clocks and time stamps). Nothing here calls another file of src/fs;
 * nothing here does I/O on SOURCE.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../core/ts.h"
#include "internal.h"

/*
 * What the replay may find at the target name: what `was` is in SOURCE
 * as far as the mount knows (nothing when `was` is NULL). If `was`, or
 * the file it stands in for, is being written back right now, SOURCE's
 * file changes when that ends: the write-back settles it (wbfile.c).
 * ns.lock held.
 */
static void expect(struct fs *fs, struct jop *op, const struct node *was)
{
	if (!was)
		return; /* JX_NOTHING */
	if (fs_wb_replacing(fs, was)) {
		op->settle = true;
		fs->wb_busy_replaced = true;
	}
	op->was_mode = was->mode & S_IFMT;
	if ((was->flags & N_FROM_SOURCE) && was->ident.ino) {
		op->expect = JX_IDENT;
		op->was = was->ident;
		/* moved by a replay since its ctime was taken: not known */
		op->was_ctime = !S_ISDIR(was->mode) &&
				!(was->flags & N_SRC_MOVED);
	} else if (S_ISREG(was->mode) && was->replaces.ino) {
		/* a new file: in SOURCE, the file it was renamed over */
		op->expect = JX_IDENT;
		op->was = was->replaces;
	} else if (S_ISREG(was->mode)) {
		op->was_mode = 0; /* new, not written back: nothing there */
	} else if (was->ident.ino) {
		op->expect = JX_IDENT; /* made here, its identity recorded */
		op->was = was->ident;
	} else {
		op->expect = JX_TYPE;
	}
}

int fs_journal(struct fs *fs, enum jop_kind kind, const char *p1,
	       const char *p2, mode_t mode, dev_t rdev, unsigned flags,
	       struct node *n, const struct node *was)
{
	int err;

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
	err = jrn_add(&fs->jrn, kind, p1, p2, mode, rdev, flags);
	if (!err)
		expect(fs, fs->jrn.tail, was);
	return err;
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

bool fs_same_file(const struct src_ident *a, const struct src_ident *b,
		  bool ctime)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       ts_equal(a->mtime, b->mtime) &&
	       (!ctime || ts_equal(a->ctime, b->ctime));
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

/* "dir/data.h5" -> "dir/data.conflict-HOST-20261126-054500.h5" */
char *fs_conflict_name(const struct fs *fs, const char *path, int seq)
{
	const char *slash = strrchr(path, '/'), *leaf = slash ? slash + 1 : path;
	const char *dot = strrchr(leaf, '.');
	size_t stem = dot && dot != leaf ? (size_t)(dot - path) : strlen(path);
	char when[32], *out;
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y%m%d-%H%M%S", &tm);
	if (asprintf(&out, "%.*s.conflict-%s-%s%s%.0d%s", (int)stem, path,
		     fs->host, when, seq ? "-" : "", seq,
		     dot && dot != leaf ? dot : "") < 0)
		return NULL;
	return out;
}
