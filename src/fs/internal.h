/*
 * internal.h - helpers shared by the files of src/fs, not part of its API.
 *
 * The files of src/fs stand in floors: each calls only files on the
 * floors below it, never one above, so there is no circle of calls.
 * This header lists them from the ground up:
 *
 *   1  base.c     SOURCE paths through the journal, journalling, file
 *                 identity, write-back results, clocks, time stamps
 *   2  job.c      SOURCE calls with a deadline, in helper threads
 *      lazy.c     partial images: which blocks are in, fetching them
 *      hlink.c    SOURCE's hard links
 *      kernel.c   what the kernel's data path implies (passthrough,
 *                 the writeback cache, atime)
 *      replay.c   replaying the journal on SOURCE
 *   3  memory.c   the max_memory budget and eviction
 *      loader.c   the thread filling partial images in the background
 *      scan.c     listing SOURCE's directories into the namespace
 *      xattr.c    extended attributes
 *   4  refresh.c  names others made or removed in SOURCE since
 *      wbfile.c   writing one node back
 *   5  open.c     open, load, close
 *      sync.c     write-back passes (fsync, the whole mount)
 *   6  names.c, attr.c, data.c, preload.c, commit.c, control.c,
 *      rescue.c   the operations of fs.h
 *   7  mount.c    fs_init, fs_destroy
 *
 * Locks: a function whose name ends in _locked expects its caller to
 * hold ns.lock (and its header names any other lock it needs); one whose
 * name ends in _and_lock returns holding ns.lock, one in _and_unlock is
 * called holding it and returns without it; any other takes and lets go
 * of the locks it needs, unless its header says otherwise.
 */
#ifndef H5M_FS_INTERNAL_H
#define H5M_FS_INTERNAL_H

#include <errno.h>
#include <stdio.h> /* RENAME_NOREPLACE, RENAME_EXCHANGE (glibc) */

#include "../backing/writeback.h"
#include "fs.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE (1 << 1)
#endif

/* 1: base.c */

/* A SOURCE path for a log line: SOURCE itself ("") shows as ".". */
static inline const char *fs_shown(const char *path)
{
	return *path ? path : ".";
}

/*
 * n's path in SOURCE as SOURCE is now (pending renames undone).
 * Caller holds replay_lock and ns.lock. NULL: no name (or ENOMEM).
 */
char *fs_source_path_locked(struct fs *fs, const struct node *n);

/*
 * n's path in the mount, for a log line: free it, print it with
 * fs_named(). NULL when n has no name left (or ENOMEM). ns.lock held.
 */
char *fs_log_path_locked(struct fs *fs, struct node *n);
static inline const char *fs_named(const char *path)
{
	return path ? path : "a file";
}

/*
 * Record a namespace change for SOURCE. `n` is the node the change
 * moves (renames, links, unlinks), else NULL; it is marked N_SRC_MOVED.
 * `was` is the node the mount had at the target name, replaced by the
 * change (NULL: none): the replay replaces in SOURCE only that
 * (enum jop_expect), and keeps anything else there.
 * A volatile mount keeps only what finding files in SOURCE needs
 * (jrn_source_path).
 */
int fs_journal(struct fs *fs, enum jop_kind kind, const char *p1,
	       const char *p2, mode_t mode, dev_t rdev, unsigned flags,
	       struct node *n, const struct node *was);

/*
 * Is SOURCE's file for n being replaced right now: n is the file the
 * running write-back copies, or a new file standing in for it? What is
 * there is then known only when that write-back ends (wbfile.c,
 * standin_settle). ns.lock held.
 */
static inline bool fs_wb_replacing(const struct fs *fs, const struct node *n)
{
	return fs->wb_busy &&
	       (n == fs->wb_busy || (n->flags & N_STANDIN_BUSY));
}

/*
 * A conflict name beside `path`, try `seq` (0: none):
 * "dir/data.h5" -> "dir/data.conflict-HOST-20261126-054500[-SEQ].h5".
 * NULL on ENOMEM.
 */
char *fs_conflict_name(const struct fs *fs, const char *path, int seq);

/*
 * The same file in SOURCE as when loaded: device, inode, size, mtime,
 * and with `ctime` its ctime, which nobody can set back (a file edited
 * and given its old mtime with touch -d still differs). Leave ctime out
 * where the journal moved it (N_SRC_MOVED: a replayed rename or link
 * changes it) until the next write-back records it again.
 */
bool fs_same_file(const struct src_ident *a, const struct src_ident *b,
		  bool ctime);

/* n's last write-back (all zero before the first). ns.lock held. */
const struct wb_result *fs_wb_result(const struct node *n);

/* A monotonic clock in milliseconds. */
uint64_t fs_now_ms(void);

/* Stamp mtime and ctime with now. */
void fs_touch_mc(struct node *n);
/* Stamp ctime (and mark metadata dirty). */
void fs_touch_c(struct node *n);

/* 2: job.c, hlink.c, kernel.c, replay.c */

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
	/*
	 * A check the request can do without (is a clean image stale? did
	 * a listed directory change?): waited for FS_OPTIONAL_MS at most,
	 * whatever source_timeout says; then the request goes on from
	 * memory and the helper finishes (or hangs) on its own.
	 */
	bool optional;
	bool crowded;		/* refused: FS_MAX_WAITING already wait */
	/* private to job.c */
	struct fs *fs;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct fs_helper *helper;	/* its thread, if it has one */
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
#define FS_OPTIONAL_MS 1000
int fs_job_run(struct fs *fs, struct fs_job *j);
void fs_job_put(struct fs_job *j);
/* Log why j got no answer from SOURCE for `what` of its node; -EIO. */
int fs_job_failed(struct fs_job *j, const char *what);
/*
 * Lock n->io for an open, which may find it held by a load waiting for
 * SOURCE: waited for source_timeout at most, as one of FS_MAX_WAITING.
 * 0, or -EIO (logged).
 */
int fs_io_lock_for_open(struct fs *fs, struct node *n);
/* Count a request waiting for SOURCE (false: FS_MAX_WAITING do), and
 * its end. */
bool fs_wait_begin(struct fs *fs);
void fs_wait_end(struct fs *fs);
/*
 * Wait up to ms for every helper thread to end, and join each that
 * did. Returns false if some still run (blocked on SOURCE): those can
 * neither be joined nor stopped, and keep using fs.
 */
bool fs_jobs_end(struct fs *fs, unsigned ms);
/* Whether a SOURCE call is hanging right now (past its deadline). */
bool fs_source_hangs(struct fs *fs);

/*
 * SOURCE's hard links (hlink.c). ns.lock held for all of these.
 * fs_hlink_find: the node already made for the file `st` describes
 * (st_nlink > 1, not a directory), or NULL. fs_hlink_add: remember n as
 * that node (pins it; on ENOMEM its other names become nodes of their
 * own). fs_hlink_named: one more name of n was listed; once all are,
 * the entry goes.
 */
struct node *fs_hlink_find(struct fs *fs, const struct stat *st);
void fs_hlink_add(struct fs *fs, struct node *n, const struct stat *st);
void fs_hlink_named(struct fs *fs, struct node *n);
/* Forget the entry for n: true if there was one (its pin of n is then
 * the caller's to drop). */
bool fs_hlink_drop(struct fs *fs, struct node *n);
void fs_hlinks_free(struct fs *fs);
/* n took over old's names (ns_rebirth). */
void fs_hlink_moved(struct fs *fs, struct node *old, struct node *n);

/*
 * The kernel's data path (kernel.c): every difference between the
 * passthrough and the daemon path is one of these.
 */
/* Passthrough: the kernel reads, writes and maps images without us. */
static inline bool fs_kernel_writes(const struct fs *fs)
{
	return fs->o.kernel_writes;
}
/* Writeback cache: the kernel owns mtime, ctime and a cached size. */
static inline bool fs_kernel_keeps_times(const struct fs *fs)
{
	return fs->o.kernel_times;
}
/*
 * Passthrough: notice writes the kernel made to n's image itself (its
 * memfd has a new mtime): take that time, mark n dirty; and reads (a
 * new atime): move n's atime by the mount's rule. ns.lock held.
 */
void fs_notice_kernel_writes(struct fs *fs, struct node *n);
/*
 * Passthrough: stores through a writable shared mapping of an image
 * change no mtime once the page is mapped. Before a write-back, compare
 * the page checksums of every clean loaded image and mark those that
 * changed. Takes the locks.
 */
void fs_find_mapped_writes(struct fs *fs);
/* The same for one file. Takes the locks. */
void fs_find_mapped_writes_in(struct fs *fs, struct node *n);
/*
 * May n's image be unloaded (evicted, dropped as stale or gone), that
 * is, does it hold what SOURCE holds? Not when n is dirty. Passthrough:
 * not either when the kernel changed it without a trace: its size
 * differs from clean_size, or a page's checksum from the one taken
 * when it was last clean (n is then marked dirty), or it has no
 * checksums to tell. Reads the image's data (not its holes) with
 * ns.lock held. n->io and ns.lock held.
 */
bool fs_image_clean_locked(struct fs *fs, struct node *n);
/*
 * n's data changed through the daemon (a write, fallocate): mark it
 * dirty, and stamp mtime and ctime unless the kernel keeps them.
 * ns.lock held.
 */
void fs_data_changed_locked(struct fs *fs, struct node *n);
/* n was truncated (`changed`: to another size). ns.lock held. */
void fs_truncated_locked(struct fs *fs, struct node *n, bool changed);
/*
 * A write ending at `end` was refused (ENOSPC): with the writeback
 * cache, a file shorter than `end` still takes that size, as a hole
 * (the kernel counts it so); a longer one keeps its size and bytes.
 * Takes n->io.
 */
void fs_write_refused(struct fs *fs, struct node *n, uint64_t end);
/* An image was just read from SOURCE (passthrough: take checksums). */
void fs_image_loaded(struct fs *fs, struct img *im);

/*
 * Replay the journal on SOURCE until it is empty (replay.c).
 * fs_replay_and_lock: replay_lock held; returns holding ns.lock too,
 * whatever the result: on success the journal is empty then, so that
 * paths resolved before the caller lets go of ns.lock are SOURCE's paths
 * as they are (a directory made in the mount is there too). On an error
 * the failed operation stays first in the journal; it is logged unless
 * `quiet`. fs_replay_all takes and releases both locks. 0 or -errno.
 */
int fs_replay_and_lock(struct fs *fs, bool quiet);
int fs_replay_all(struct fs *fs);

/*
 * Partial images (lazy.c): under load=lazy a file of more than
 * FS_LAZY_MIN bytes opens before it is in memory; its image has
 * SOURCE's size and fills in blocks of FS_LAZY_BLOCK bytes. n->file->lazy
 * is set and cleared under ns.lock, and only with n->io held too, so
 * either lock keeps it still. The functions that take a struct fs_lazy
 * need a reference (fs_lazy_get, fs_lazy_ref; fs_lazy_put drops it);
 * those that fetch do SOURCE I/O without a deadline and hold no lock of
 * the caller's: run them in a job (job.c) where a request waits.
 */
#define FS_LAZY_BLOCK (UINT64_C(1) << 18)
#define FS_LAZY_MIN (UINT64_C(4) << 20)
struct fs_lazy;
/*
 * A partial image of the SOURCE file open at src_fd (`st` its stat) in
 * im (empty): the memfd made and sized, blocks in SOURCE's holes marked
 * present. On success src_fd is the struct's (closed with it). 0/-errno.
 */
int fs_lazy_make(int src_fd, const struct stat *st, struct img *im,
		 struct fs_lazy **out);
/* A reference to n's partial state, or NULL when n's image is whole. */
struct fs_lazy *fs_lazy_get(struct fs *fs, struct node *n);
void fs_lazy_ref(struct fs_lazy *lz);
void fs_lazy_put(struct fs_lazy *lz);
/*
 * Are the blocks of [off, off+len) present? Also notes the read: *want
 * gets the bytes to fetch from off, with `readahead` more when it
 * continues the previous read.
 */
bool fs_lazy_has(struct fs_lazy *lz, uint64_t off, uint64_t len,
		 uint64_t readahead, uint64_t *want);
/*
 * A read that jumped (did not go on where the last ended) fetches the
 * blocks of [off, off+len): true while such reads have fetched less
 * than a sixteenth of the file (a program looking in a few places, h5ls
 * walking headers), false once they read it all over.
 */
bool fs_lazy_jumped(struct fs_lazy *lz, uint64_t off, uint64_t len);
/*
 * Make the blocks of [off, off+len) present (fetch, or wait); with
 * `ahead`, SOURCE is asked to read that many bytes past them meanwhile
 * (POSIX_FADV_WILLNEED). 0/-errno.
 */
int fs_lazy_fetch(struct fs *fs, struct fs_lazy *lz, uint64_t off,
		  uint64_t len, uint64_t ahead);
/*
 * A write of [off, off+len): fs_lazy_write_fetch fetches the blocks it
 * covers in part (SOURCE I/O); fs_lazy_write_claim, just before the copy,
 * takes those it covers whole (no fetch ever fills them); after the copy
 * (`done` bytes of it), fs_lazy_write_done makes them present.
 */
int fs_lazy_write_fetch(struct fs *fs, struct fs_lazy *lz, uint64_t off,
			uint64_t len);
void fs_lazy_write_claim(struct fs_lazy *lz, uint64_t off, uint64_t len);
void fs_lazy_write_done(struct fs *fs, struct fs_lazy *lz, uint64_t off,
			uint64_t len, uint64_t done);
/*
 * Set n's image's size (img_truncate), partial or not: SOURCE's bytes
 * past a smaller size are never fetched again. n->io held. 0/-errno.
 */
int fs_lazy_truncate(struct fs *fs, struct node *n, uint64_t size);
/*
 * Fetch everything n's partial image still lacks and make it whole, now
 * (no deadline: write-back, rescue). n->io held, no other lock. 0 when
 * whole (or it was), -errno from SOURCE (it stays partial).
 */
int fs_lazy_complete(struct fs *fs, struct node *n);
/*
 * Bytes of [off, off+len) in blocks not present yet: their memory is
 * already charged (the image's floor), a write there adds none.
 */
uint64_t fs_lazy_missing_bytes(struct fs_lazy *lz, uint64_t off,
			       uint64_t len);
/* Bytes of n's partial image present (0 when whole). ns.lock held. */
uint64_t fs_lazy_loaded_locked(const struct node *n);
/* Forget n's partial state (its image is being dropped). ns.lock held. */
void fs_lazy_drop_locked(struct fs *fs, struct node *n);
/* Fill nothing more (wakes waiters). */
void fs_lazy_cancel(struct fs_lazy *lz);
/* Cancel and drop the node's reference (its node is freed: ns.lazy_release). */
void fs_lazy_release(struct fs_lazy *lz);
/*
 * The loader's steps: fs_lazy_step fetches the next missing run (1:
 * call again; 0: nothing left to fetch; -errno: SOURCE failed);
 * fs_lazy_done makes n's image whole if every block is in (takes n->io).
 */
int fs_lazy_step(struct fs *fs, struct fs_lazy *lz);
void fs_lazy_done(struct fs *fs, struct node *n, struct fs_lazy *lz);

/* 3: memory.c, loader.c, scan.c, xattr.c */

/*
 * The background loader (loader.c). fs_lazy_install_locked: n's image
 * is the partial one lz describes (the reference passes to n), queued
 * for the loader (started at the first). ns.lock held, n->io held.
 * fs_lazy_stop: stop it and forget what is queued, waiting ms at most;
 * false when it is blocked on SOURCE (then nothing may be freed).
 */
void fs_lazy_install_locked(struct fs *fs, struct node *n,
			    struct fs_lazy *lz);
bool fs_lazy_stop(struct fs *fs, unsigned ms);


/*
 * The max_memory budget (memory.c). fs_make_room_locked: evict clean
 * images nobody has open, least recently used first, until `need` more
 * bytes fit beside the images and what loads and writes in progress
 * hold; ns.lock held. fs_hold_room: the same, taking ns.lock, and hold
 * the room against other loads and writes until fs_unreserve(held)
 * (the memory a load or a write takes is counted only after it is
 * there, and two of them running at once must not both be given the
 * same free room: the private tmpfs, sized to the budget, would refuse
 * the second). 0 or -ENOSPC.
 */
int fs_make_room_locked(struct fs *fs, uint64_t need);
/*
 * Room for `need` more bytes of the namespace (a node, a name, an xattr)
 * before adding them: as fs_make_room_locked, and where images live in
 * the private tmpfs, which the kernel fills without asking, that room is
 * set aside from it (fs->meta_held, grown in steps of 64 KiB, never
 * given back). 0 or -ENOSPC. ns.lock held.
 */
int fs_meta_room_locked(struct fs *fs, uint64_t need);
/* Memory counted against max_memory: images and namespace. ns.lock. */
uint64_t fs_budget_used_locked(const struct fs *fs);
int fs_hold_room(struct fs *fs, uint64_t need);
void fs_unreserve(struct fs *fs, uint64_t held);
/* Free n's image; n reads from SOURCE again. ns.lock and n->io held. */
void fs_unload_locked(struct fs *fs, struct node *n);

/*
 * Descriptors (memory.c). Every image holds one, so as many loaded files
 * as RLIMIT_NOFILE allows would leave a write-back none: FS_FD_SPARE
 * descriptors (of /dev/null) are held from the start (fs_spares_take).
 * fs_fds_free, where a write-back, a load or a rescue met EMFILE, ENFILE
 * or ENOMEM: close the spares (with `spares`: write-back and rescue
 * only, never a load, which would keep them) and unload up to
 * FS_FD_SPARE clean images nobody has open (all of them with `all`), so
 * that the same call, made again, has descriptors and memory; true when
 * anything was freed. The caller takes the spares again when done.
 * Both take ns.lock.
 */
#define FS_FD_SPARE 16
void fs_spares_take(struct fs *fs);
bool fs_fds_free(struct fs *fs, bool spares, bool all);
/* Is err a lack of descriptors or memory that fs_fds_free may cure? */
static inline bool fs_out_of_room(int err)
{
	return err == -EMFILE || err == -ENFILE || err == -ENOMEM;
}

/* Read `dir`'s entries from SOURCE if not done yet. Takes the locks. */
int fs_scan(struct fs *fs, struct node *dir);

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

/*
 * Read n's xattrs from SOURCE if not done yet. Takes the locks. With
 * `deadline`, SOURCE has o.source_timeout to answer (-EIO otherwise, see
 * fs_job_run); without, it is waited for (write-back).
 */
int fs_load_xattrs(struct fs *fs, struct node *n, bool deadline);

/*
 * After a chmod, or once SOURCE's ACL is read: n's access ACL, if it
 * has one, takes the permission bits of its mode (as posix_acl_chmod),
 * so that the mode the kernel checks and the ACL agree. ns.lock held.
 */
void fs_acl_follow_mode_locked(struct node *n);

/*
 * A node `n` made in `dir` with the permission bits asked for, *mode:
 * where dir has a default ACL (dir's xattrs loaded), n's access ACL
 * (and, for a directory, its default ACL) comes from it and *mode is
 * limited by it, as on a disk filesystem (posix_acl_create); elsewhere
 * *mode loses the creator's `umask`. ns.lock held; 0 or -ENOMEM.
 */
int fs_acl_inherit_locked(struct node *dir, struct node *n, mode_t *mode,
			  mode_t umask);

/* 4: refresh.c, wbfile.c */

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
 * kernel looks the name up again and finds it gone. n->io and ns.lock
 * held.
 */
bool fs_drop_gone_locked(struct fs *fs, struct node *n);

/*
 * Write back one node (wbfile.c); sync_lock held, no other lock.
 * fs_write_file: a dirty regular file's data (and metadata with it).
 * Returns 0, FS_WB_CONFLICT (saved beside a file changed behind the
 * mount: durable, but fsync reports EIO), or -errno (the file stays
 * dirty). fs_write_meta: make SOURCE's metadata of n the mount's.
 */
#define FS_WB_CONFLICT 1
int fs_write_file(struct fs *fs, struct node *n);
int fs_write_meta(struct fs *fs, struct node *n);

/* 5: open.c (sync.c has only the API of fs.h) */

/*
 * n's identity in SOURCE now, asked with the deadline (job.c); takes
 * the locks, so call it with none held. 0 or -errno (-EIO: no answer).
 */
int fs_source_ident(struct fs *fs, struct node *n, struct src_ident *id,
		    bool optional);

#endif
