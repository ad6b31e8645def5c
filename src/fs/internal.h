/*
 * internal.h - helpers shared by the files of src/fs, not part of its API.
 */
#ifndef H5M_FS_INTERNAL_H
#define H5M_FS_INTERNAL_H

#include "../backing/writeback.h"
#include "fs.h"

/* A SOURCE path for a log line: SOURCE itself ("") shows as ".". */
static inline const char *fs_shown(const char *path)
{
	return *path ? path : ".";
}

/*
 * A SOURCE call with a deadline (job.c). The caller makes the job with
 * fs_job_new (embedding struct fs_job first), and calls fs_job_run, which runs
 * `run` in a helper thread and waits for it o.source_timeout seconds at
 * most (0: runs it here). Returns 0 when run finished (its own result in
 * the job), or -EIO when it did not finish in time or SOURCE already
 * has too many calls hanging; run may then still finish later. In every
 * case the caller then reads what it needs and calls fs_job_put, after
 * which it must not touch the job: once the helper is done with it too,
 * the node is unpinned and `release` (if any) frees what the job holds,
 * then the job is freed. run must not touch what the caller may have
 * freed (copy what it needs).
 */
struct fs_job {
	void (*run)(struct fs_job *j);
	void (*release)(struct fs_job *j);	/* NULL: nothing but the job */
	struct node *node;	/* the job's node, pinned while it lives */
	bool no_deadline;	/* run here and wait, however long */
	/* private to job.c */
	struct fs *fs;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done, late;
	int refs;
};
/*
 * A zeroed job of `size` bytes (struct fs_job first) for node n, pinned
 * until the job is freed. Takes ns.lock. NULL on ENOMEM.
 */
void *fs_job_new(struct fs *fs, size_t size, struct node *n,
		 void (*run)(struct fs_job *j),
		 void (*release)(struct fs_job *j));
int fs_job_run(struct fs *fs, struct fs_job *j);
void fs_job_put(struct fs_job *j);
/* Log that SOURCE did not answer for `what` of n; returns -EIO. */
int fs_job_failed(struct fs *fs, struct node *n, const char *what);
/* Wait up to ms for every helper to end; false if some still run. */
bool fs_jobs_settle(struct fs *fs, unsigned ms);
/* Whether a SOURCE call is hanging right now (past its deadline). */
bool fs_source_hangs(struct fs *fs);

/*
 * n's identity in SOURCE now, asked with the deadline (job.c); takes
 * the locks, so call it with none held. 0 or -errno (-EIO: no answer).
 */
int fs_source_ident(struct fs *fs, struct node *n, struct src_ident *id);

/* Read `dir`'s entries from SOURCE if not done yet. Takes the locks. */
int fs_scan(struct fs *fs, struct node *dir);

/*
 * Look again at a listed directory of SOURCE, for names other nodes
 * (or programs) made or removed there since (refresh.c). A no-op more
 * often than once a second, when SOURCE's directory kept its mtime, and
 * while this mount has namespace changes not yet written back (until
 * then SOURCE differs from the mount by design). Takes the locks.
 */
void fs_refresh(struct fs *fs, struct node *dir);

/*
 * n's file is gone from SOURCE (open found ENOENT): when nothing of it
 * is the mount's own (clean, from SOURCE, no pending namespace change),
 * drop its names and return true: the caller fails with ESTALE, so the
 * kernel looks the name up again and finds it gone. ns.lock held.
 */
bool fs_drop_gone_locked(struct fs *fs, struct node *n);

/* A directory listing read from SOURCE before the namespace is locked. */
struct fs_entry {
	char *name, *target;
	struct stat st;
};
struct fs_entries {
	struct fs_entry *v;
	size_t n, cap;
};
/* src_entry_fn collecting into a struct fs_entries. */
int fs_collect_entry(void *arg, const char *name, const struct stat *st,
		     const char *target);
void fs_entries_free(struct fs_entries *list);
/* Add one listed entry under dir (hard links joined). ns.lock held. */
int fs_scan_add(struct fs *fs, struct node *dir, const struct fs_entry *e);
/* SOURCE's mtime of the directory at path. 0 or -errno. */
int fs_dir_mtime(struct fs *fs, const char *path, struct timespec *mtime);
/* A monotonic clock in milliseconds. */
uint64_t fs_now_ms(void);

/*
 * Read n's xattrs from SOURCE if not done yet. Takes the locks. With
 * `deadline`, SOURCE has o.source_timeout to answer (-EIO otherwise, see
 * fs_job_run); without, it is waited for (write-back).
 */
int fs_load_xattrs(struct fs *fs, struct node *n, bool deadline);

/*
 * n's path in SOURCE as SOURCE is now (pending renames undone).
 * Caller holds replay_lock and ns.lock. NULL: no name (or ENOMEM).
 */
char *fs_source_path_locked(struct fs *fs, const struct node *n);

/*
 * Record a namespace change for SOURCE. `n` is the node the change
 * moves (renames, links, unlinks), else NULL; it is marked N_SRC_MOVED.
 * A volatile mount keeps only what finding files in SOURCE needs
 * (jrn_source_path).
 */
int fs_journal(struct fs *fs, enum jop_kind kind, const char *p1,
	       const char *p2, mode_t mode, dev_t rdev, unsigned flags,
	       struct node *n);

/*
 * Passthrough: notice writes the kernel made to n's image itself (its
 * memfd has a new mtime): take that time, mark n dirty; and reads (a
 * new atime): move n's atime by the mount's rule. ns.lock held.
 */
void fs_notice_kernel_writes(struct fs *fs, struct node *n);

/* The same file in SOURCE as when loaded? (ctime left out: renames) */
bool fs_same_file(const struct src_ident *a, const struct src_ident *b);

/*
 * Passthrough: stores through a writable shared mapping of an image
 * change no mtime once the page is mapped. Before a write-back, compare
 * the page checksums of every clean loaded image and mark those that
 * changed. Takes the locks.
 */
void fs_find_mapped_writes(struct fs *fs);
/* The same for one file. Takes the locks. */
void fs_find_mapped_writes_in(struct fs *fs, struct node *n);

/* Free n's image; n reads from SOURCE again. ns.lock and n->io held. */
void fs_unload_locked(struct fs *fs, struct node *n);

/* Stamp mtime and ctime with now. */
void fs_touch_mc(struct node *n);
/* Stamp ctime (and mark metadata dirty). */
void fs_touch_c(struct node *n);

/* Forget the SOURCE hard link entry for n: true if there was one (its
 * pin of n is then the caller's to drop). */
bool fs_hlink_drop(struct fs *fs, struct node *n);
void fs_hlinks_free(struct fs *fs);
/* n took over old's names (ns_rebirth). ns.lock held. */
void fs_hlink_moved(struct fs *fs, struct node *old, struct node *n);

#endif
