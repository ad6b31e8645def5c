/*
 * fs.h - the mount's operations as plain C calls: the namespace, loading
 * from SOURCE and write-back put together, without FUSE.
 *
 * Every call returns 0 or a negative errno, results through out-params.
 * Node pointers handed out by lookup, create, mknod, mkdir, symlink and
 * link carry one kernel reference (nlookup), dropped by fs_forget. The
 * FUSE layer (src/fuse) is only glue over these; the unit tests drive
 * them directly.
 *
 * Locking (in this order, never the reverse): a node's io mutex, then
 * fs.replay_lock (keeps SOURCE's namespace still), then ns.lock.
 */
#ifndef H5M_FS_H
#define H5M_FS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include "../backing/source.h"
#include "../core/journal.h"
#include "../core/node.h"

enum fs_validate { VALIDATE_STRICT, VALIDATE_WARN, VALIDATE_OFF };

/* When a read or readdir updates atime (the mount's atime words). */
enum fs_atime {
	FS_RELATIME,	/* atime <= mtime or ctime, or a day old (default) */
	FS_STRICTATIME,	/* always */
	FS_NOATIME,	/* never */
};

struct fs_opts {
	bool volatile_;		/* never write SOURCE */
	bool sync_on_close;	/* write a file back at its last close */
	enum fs_validate validate;
	unsigned commit;	/* seconds between background write-backs */
	unsigned source_timeout; /* seconds to wait for SOURCE; 0: for ever */
	const char *rescue;	/* where unwritable images go at the end */
	bool kernel_writes;	/* passthrough: the kernel writes images */
	/*
	 * Passthrough is wanted: the kernel may write images once INIT has
	 * settled the path (kernel_writes). Images loaded before then (by
	 * preload) take their checksums too, which the final pass needs to
	 * tell them clean.
	 */
	bool kernel_writes_wanted;
	bool kernel_times;	/* writeback cache: the kernel keeps times */
	uint64_t increment;	/* image growth step */
	uint64_t page_size;	/* dirty tracking granularity */
	uint64_t max_memory;	/* budget in bytes; statfs reports it */
	bool images_tmpfs;	/* images in a private tmpfs (else memfds) */
	const char *max_memory_from; /* where that figure came from */
	enum fs_atime atime;
	bool lazy;		/* load=lazy: open before the file is in
				   memory, fetch the rest on demand and in
				   the background (lazy.c) */
};

/* Request kinds counted by kind (the FUSE opcode, below this). */
#define FS_REQUEST_KINDS 64

struct fs_stats {
	uint64_t reads, writes, readdirs; /* requests the daemon served */
	/*
	 * Every request the kernel sent, by kind, counted by the FUSE layer;
	 * status shows those with a name in request_names (set by that
	 * layer) and a non-zero count, so that a benchmark can see how many
	 * round trips an operation took.
	 */
	uint64_t requests[FS_REQUEST_KINDS];
	uint64_t writebacks, writeback_bytes, writeback_errors;
	uint64_t conflicts, invalid, commits, evictions;
	uint64_t loads, load_bytes;
	/*
	 * Namespace changes replayed beside someone else's entry (also
	 * counted in conflicts), and refused by SOURCE for good (dropped).
	 */
	uint64_t namespace_conflicts, namespace_errors;
	uint64_t lazy_loads;	/* loads that opened a partial image */
	uint64_t fetch_bytes;	/* bytes partial images read from SOURCE */
};

struct fs {
	struct ns ns;
	struct journal jrn;
	struct src src;
	bool has_source;
	/*
	 * The final write-back runs while the mount still serves (after a
	 * signal): changes are refused with EROFS from then on, so that
	 * what the pass writes is all there is. Read with fs_frozen.
	 */
	bool frozen;
	struct fs_opts o;
	pthread_mutex_t replay_lock;	/* held while SOURCE's namespace moves */
	pthread_mutex_t sync_lock;	/* one write-back pass at a time */
	struct fs_stats stats;
	const char *const *request_names; /* FS_REQUEST_KINDS, NULL gaps */
	/*
	 * The file a write-back is replacing in SOURCE now (sync_lock makes
	 * it one at a time), and whether a new file was renamed over it
	 * meanwhile (N_STANDIN_BUSY). ns.lock.
	 */
	struct node *wb_busy;
	bool wb_busy_replaced;
	struct hlink *hlinks;		/* SOURCE hard links seen so far */
	struct fs_dir *dirs;		/* open directory snapshots */
	char host[64];			/* for conflict names */
	char *source_path;		/* as given, for status */
	uint64_t use_clock;		/* LRU clock for eviction */
	struct {
		pthread_t thread;
		bool running, done;
		volatile bool stop;
		uint64_t files, bytes, skipped;
	} preload;
	/* commit thread */
	pthread_t committer;
	bool committing, stop_commit;
	pthread_cond_t commit_cond;
	pthread_cond_t released;	/* with ns.lock: a RELEASE was handled */
	void (*flush_kernel)(void *);	/* push kernel-cached writes to us */
	void *flush_arg;
	/* the thread filling partial images in the background (lazy.c) */
	struct {
		pthread_t thread;
		bool running, stop, ended;
		uint64_t busy_ms;	/* when a request last fetched (atomic) */
		pthread_cond_t cond;	/* with ns.lock: work queued, stop */
		struct fs_loadq *head;	/* its queue, under ns.lock */
	} loader;
	unsigned stuck_jobs;		/* SOURCE calls past their deadline */
	bool ending;			/* the final pass runs (ns.lock) */
	uint64_t meta_held;		/* budget set aside for ns.meta_used,
					   taken from the private tmpfs
					   (fs_meta_room_locked; ns.lock) */
	unsigned waiting;		/* requests waiting for SOURCE now */
	int spare_fd[16];		/* FS_FD_SPARE, or -1 (memory.c) */
	pthread_mutex_t jobs_lock;	/* guards helpers */
	struct fs_helper *helpers;	/* SOURCE helper threads to join */
};

/* The xattr that makes one file volatile (never written back). */
#define FS_VOLATILE_XATTR "user.h5memfs.volatile"

/* Attribute bits for fs_setattr. */
enum {
	FS_SET_MODE = 1 << 0,
	FS_SET_UID = 1 << 1,
	FS_SET_GID = 1 << 2,
	FS_SET_SIZE = 1 << 3,
	FS_SET_ATIME = 1 << 4,
	FS_SET_MTIME = 1 << 5,
	FS_SET_ATIME_NOW = 1 << 6,
	FS_SET_MTIME_NOW = 1 << 7,
	FS_SET_CTIME = 1 << 8,
};

/*
 * Set up a mount of `source` (NULL: an empty scratch namespace).
 * Returns 0 or -errno (ENOENT, ENOTDIR, EACCES from opening SOURCE).
 */
int fs_init(struct fs *fs, const char *source, const struct fs_opts *o);

/*
 * List SOURCE's root now rather than at the first lookup, so that the
 * mount's root can be listed even if SOURCE stops answering later.
 * Failures are logged (and the first lookup tries again). 0 or -errno.
 */
int fs_scan_root(struct fs *fs);

/*
 * Stop the preload and commit threads, join every SOURCE helper thread,
 * and free everything (no write-back: call fs_sync_all first). A helper
 * blocked in a SOURCE call that still hangs after 2 s cannot be joined:
 * then nothing is freed (its thread may wake and use it), and that
 * thread is still blocked when the process exits.
 */
void fs_destroy(struct fs *fs);

int fs_lookup(struct fs *fs, struct node *dir, const char *name,
	      struct node **out, struct stat *st);
void fs_forget(struct fs *fs, struct node *n, uint64_t nlookup);
int fs_getattr(struct fs *fs, struct node *n, struct stat *st);
int fs_setattr(struct fs *fs, struct node *n, const struct stat *attr,
	       int to_set, struct stat *st);

/*
 * Make a regular file, fifo, socket or device (S_IFMT in mode), or a
 * directory. `umask` is the creator's: it limits `mode` unless `dir`
 * has a default ACL, which then gives the new node its ACL and limits
 * the mode instead (with POSIX ACLs the kernel leaves both to us).
 */
int fs_mknod(struct fs *fs, struct node *dir, const char *name, mode_t mode,
	     mode_t umask, dev_t rdev, uid_t uid, gid_t gid,
	     struct node **out, struct stat *st);
int fs_mkdir(struct fs *fs, struct node *dir, const char *name, mode_t mode,
	     mode_t umask, uid_t uid, gid_t gid, struct node **out,
	     struct stat *st);
int fs_symlink(struct fs *fs, struct node *dir, const char *name,
	       const char *target, uid_t uid, gid_t gid, struct node **out,
	       struct stat *st);
int fs_link(struct fs *fs, struct node *n, struct node *dir,
	    const char *name, struct stat *st);
int fs_unlink(struct fs *fs, struct node *dir, const char *name);
int fs_rmdir(struct fs *fs, struct node *dir, const char *name);
/* flags: RENAME_NOREPLACE, RENAME_EXCHANGE (others: EINVAL). */
int fs_rename(struct fs *fs, struct node *dir, const char *name,
	      struct node *newdir, const char *newname, unsigned flags);
/* *target is a copy the caller frees. */
int fs_readlink(struct fs *fs, struct node *n, char **target);

/*
 * Open with open(2) `flags`: loads a regular file from SOURCE on first
 * open (under o.lazy, a file over 4 MiB as a partial image that fills in
 * while the open returns: see fs_read_ready), making room within
 * max_memory by evicting clean images nobody has open, least recently
 * used first. O_TRUNC empties it without
 * loading it. A clean image whose file changed in SOURCE is loaded again
 * (*fresh set, when not NULL: cached pages are stale). A file larger than
 * max_memory is served from SOURCE, read-only; a write open gets ENOSPC.
 * Counts the handle.
 */
int fs_open(struct fs *fs, struct node *n, int flags, bool *fresh);
/* The same, loading the file whole when `whole`, as preload does. */
int fs_open_how(struct fs *fs, struct node *n, int flags, bool *fresh,
		bool whole);

/*
 * Passthrough mounts: may this open of n be handed to the kernel? Not
 * while n's image is partial (its reads must reach the daemon) nor while
 * a handle served by the daemon is open (the kernel refuses the mix):
 * then the open is counted as such a handle (*first: the first of them,
 * the kernel's cached pages may be stale). fs_cached_open counts one
 * after all (the image could not be handed over); fs_cached_close: one
 * such handle was released.
 */
bool fs_kernel_open_begin(struct fs *fs, struct node *n, bool *first);
void fs_cached_open(struct fs *fs, struct node *n);
void fs_cached_close(struct fs *fs, struct node *n);

/*
 * Before a read of [off, off+len) is answered from fs_data_fd: make
 * sure a partial image holds those bytes (fetched from SOURCE with the
 * deadline, with read-ahead when the reads are sequential). 0 or -EIO.
 */
int fs_read_ready(struct fs *fs, struct node *n, uint64_t off, size_t len);

/*
 * Mount paths of the regular files that have open handles (their pages
 * may still sit in the kernel's cache). NULL-terminated; caller frees
 * each and the array. NULL on ENOMEM.
 */
char **fs_open_paths(struct fs *fs);

/*
 * Last step of a handle. Returns the kernel handle of the image to
 * release now that no handle is open (see fs_kernel_handle), or 0.
 */
int fs_close(struct fs *fs, struct node *n);

/*
 * The kernel sends a closed file's RELEASE on its own, and another
 * thread may take an OPEN queued after it first: then the open would
 * not be the file's first (no check for a newer version in SOURCE).
 * fs_release_seen is told of each RELEASE as it is read from the
 * device, fs_release ends the handle instead of fs_close, and an open
 * waits (a second at most) for the RELEASEs of its file read before it.
 */
void fs_release_seen(struct node *n);
int fs_release(struct fs *fs, struct node *n);

/*
 * The handle by which the kernel knows n's image (passthrough), made by
 * reg(arg, image fd) at the first open and kept while a handle is open.
 * Returns the id (> 0) or -errno. *old: the id of an image reloaded
 * while other handles were open, for the caller to release now, or 0.
 */
int fs_kernel_handle(struct fs *fs, struct node *n,
		     int (*reg)(void *arg, int fd), void *arg, int *old);

/*
 * A handle is being closed (close(2)); with sync_on_close, a dirty file
 * is written back now, so that it is in SOURCE when its last handle's
 * close returns. 0 or -errno.
 */
int fs_flush(struct fs *fs, struct node *n);

/*
 * The fd holding an open regular file's data, for reads (splice, pread
 * at the file's offsets): its image, or SOURCE's file for one served
 * from there (see fs_open). Stable while a handle is open; not the
 * caller's to close. -errno (ENOMEM, EMFILE...) when the image cannot
 * be made.
 */
int fs_data_fd(struct fs *fs, struct node *n);

/*
 * A read of an open file served from SOURCE (fs_data_fd is SOURCE's
 * file) waits for SOURCE: fs_source_read_begin counts it as one of
 * FS_MAX_WAITING and returns 1 (0 for an image: nothing counted; -EIO
 * when that many wait already), and fs_source_read_end(its result)
 * ends it.
 */
int fs_source_read_begin(struct fs *fs, struct node *n);
void fs_source_read_end(struct fs *fs, int counted);

/*
 * Copies the bytes of a write into fd at off (fuse_buf_copy, pwrite...).
 * Returns how many it wrote, or -errno.
 */
typedef ssize_t (*fs_copy_fn)(void *arg, int fd, uint64_t off);

/*
 * Write len bytes at off into an open regular file, the only way data
 * reaches an image through the daemon: makes room within max_memory for
 * the memory pages the write fills (holes now, past the end included; a
 * write far past the end costs its own pages only), held against other
 * loads and writes; then copy(arg, fd, off) puts the bytes in; then the
 * pages written are marked dirty and times stamped. *done: the bytes
 * copy wrote. 0 or -errno: ENOSPC (no room even after eviction; with
 * the writeback cache the file still takes the size, as a hole), EBADF
 * (a file served from SOURCE is read-only), copy's own error.
 */
int fs_write(struct fs *fs, struct node *n, uint64_t off, size_t len,
	     fs_copy_fn copy, void *arg, size_t *done);
/*
 * atime (FUSE leaves it to the daemon). fs_atime_due: whether a read
 * now would move n's atime under the mount's rule (relatime: atime not
 * later than mtime or ctime, or a day old; strictatime; noatime).
 * fs_accessed: a read or readdir reached the daemon: move it; returns
 * whether it moved (the kernel's cached attributes are then stale). An
 * atime alone never makes a file dirty: it goes to SOURCE with the
 * file's other metadata.
 */
bool fs_atime_due(struct fs *fs, struct node *n);
bool fs_accessed(struct fs *fs, struct node *n);
/*
 * Whether n has one open handle (the open being answered): the kernel
 * then holds no dirty page of it, since the last release wrote them.
 */
bool fs_open_alone(struct fs *fs, struct node *n);

/* lseek SEEK_DATA / SEEK_HOLE on an open regular file. */
int fs_lseek(struct fs *fs, struct node *n, off_t off, int whence,
	     off_t *out);
int fs_fallocate(struct fs *fs, struct node *n, int mode, off_t off,
		 off_t len);

/*
 * An open directory: a snapshot of its entries (pinned), taken by
 * fs_readdir_fill at the first READDIR, not at OPENDIR, since the
 * kernel often answers from the listing it keeps and never asks.
 */
struct fs_dirent {
	char *name;
	struct node *node;
};
struct fs_dir {
	struct node *dir;		/* pinned */
	struct fs_dirent *ents;
	size_t count;
	bool filled;
	/*
	 * The directory lists as it did at the last OPENDIR: a listing the
	 * kernel kept since is still right.
	 */
	bool unchanged;
	struct fs_dir *prev, *next;	/* open directories, freed at the end */
};
/* Look at SOURCE (scan, refresh) and open dir. 0 or -errno. */
int fs_opendir(struct fs *fs, struct node *dir, struct fs_dir **out);
/* Take d's snapshot if not taken yet. 0 or -ENOMEM. Takes ns.lock. */
int fs_readdir_fill(struct fs *fs, struct fs_dir *d);
void fs_closedir(struct fs *fs, struct fs_dir *d);
/* Give the kernel a reference to a snapshot entry (readdirplus). */
void fs_ref(struct fs *fs, struct node *n, struct stat *st);

int fs_getxattr(struct fs *fs, struct node *n, const char *name, void *buf,
		size_t size, size_t *len);
/*
 * flags: XATTR_CREATE, XATTR_REPLACE, and FS_XATTR_KILL_SGID for an
 * access ACL set by a caller outside the file's group without
 * CAP_FSETID (the mode loses set-group-ID, as on ext4).
 */
#define FS_XATTR_KILL_SGID 0x100
int fs_setxattr(struct fs *fs, struct node *n, const char *name,
		const void *value, size_t size, int flags);
/*
 * xattrs: user.*, trusted.*, security.* (but security.capability) and
 * the POSIX ACLs are kept (the kernel checks CAP_SYS_ADMIN for trusted.*
 * reads and writes and for security.* writes); other namespaces
 * EOPNOTSUPP, but security.capability reads and removals ENODATA.
 * Setting an access ACL sets the mode's permission bits from it (an ACL
 * the mode says all of is not kept); a malformed ACL is EINVAL, a
 * default ACL on a non-directory EACCES, ACLs and security.* on special
 * files and symlinks EOPNOTSUPP. listxattr shows trusted.* only when
 * `trusted` (the caller has CAP_SYS_ADMIN), as tmpfs does.
 */
int fs_listxattr(struct fs *fs, struct node *n, bool trusted, char *buf,
		 size_t size, size_t *len);
int fs_removexattr(struct fs *fs, struct node *n, const char *name);

int fs_statfs(struct fs *fs, struct statvfs *sv);

/*
 * Write back one file: pending namespace changes first, then its data
 * and metadata. Returns once durable in SOURCE. 0 or -errno (ENOSPC,
 * EROFS, EIO...; the file stays dirty in memory then). No-op when
 * volatile.
 */
int fs_fsync(struct fs *fs, struct node *n);

/*
 * Write back everything: namespace, every dirty file, then metadata.
 * Returns 0 or the first error; *failed (may be NULL) gets the number of
 * files that could not be written. A file that conflicts with a change
 * made in SOURCE behind the mount is saved beside it under a conflict
 * name; that counts as written (the data is durable), and is logged.
 */
int fs_sync_all(struct fs *fs, unsigned *failed);
/*
 * The pass at the end of the mount: fs_sync_all, where a passthrough
 * image whose changes cannot be checked (no page checksums) is written
 * back whole, since no later pass would find them.
 */
int fs_sync_last(struct fs *fs, unsigned *failed);

/*
 * Requests waiting for SOURCE at once, at most (SOURCE calls with a
 * deadline, and opens waiting for a file's io mutex held by a load):
 * the request loop runs up to FS_WORKERS threads, so FS_WORKERS -
 * FS_MAX_WAITING of them are always free for requests served from
 * memory, however many wait for a SOURCE that hangs. Past it a request
 * fails with EIO at once. Write-back is not counted: it waits for
 * SOURCE in threads of its own (commit, the write-back requests' thread
 * of the FUSE layer, the final pass), never in a worker.
 */
#define FS_WORKERS 32
#define FS_MAX_WAITING 24

/* Refuse changes from now on (fs.frozen), and whether they are. */
static inline void fs_freeze(struct fs *fs)
{
	__atomic_store_n(&fs->frozen, true, __ATOMIC_RELEASE);
}

static inline bool fs_frozen(const struct fs *fs)
{
	return __atomic_load_n(&fs->frozen, __ATOMIC_ACQUIRE);
}

/*
 * At the end of a mount, after fs_sync_all: copy every image that still
 * could not be written back (SOURCE full, read-only, invalid HDF5...)
 * under `dir` (created 0700), at its path in the mount. Logs each file
 * and where it went. Returns the number of files rescued; *lost gets the
 * number that could not even be rescued.
 */
unsigned fs_rescue(struct fs *fs, const char *dir, unsigned *lost);

/*
 * Make the default rescue directory and return its path (caller frees;
 * NULL when none can be made): a fresh directory made by mkdtemp,
 * NAME-DATE-PID-XXXXXX (NAME the last component of `mountpoint`), in a
 * base directory only this daemon's user can write to: the 0700
 * /var/tmp/h5memfs-rescue owned by root for root, /var/tmp/h5memfs-
 * rescue-UID for any other user. A base another user made (or a symlink
 * there) is never used: a fresh mkdtemp directory in /var/tmp is.
 */
char *fs_rescue_default(const char *mountpoint);

/*
 * A write or truncate by a caller without CAP_FSETID, or a chown (the
 * kernel says so): clear set-user-ID, and set-group-ID where group
 * execute is set, of any non-directory (FIFOs, sockets and devices too,
 * as ext4 and tmpfs). Returns whether the mode changed.
 */
bool fs_kill_suid(struct fs *fs, struct node *n);

/* Control: see src/fs/control.c. */
#define FS_CONTROL_PREFIX "user.h5memfs."
#define FS_STATUS_XATTR "user.h5memfs.status"
/* root: fs_status_files pages, "user.h5memfs.files" then ".files.N" */
#define FS_FILES_XATTR "user.h5memfs.files"
#define FS_SYNC_XATTR "user.h5memfs.sync"
#define FS_DISCARD_XATTR "user.h5memfs.discard"
#define FS_EVICT_XATTR "user.h5memfs.evict"

/* The state word status shows for n ("clean", "dirty", ...). */
const char *fs_state_name(const struct fs *fs, const struct node *n);

/*
 * JSON status of one file (no libhdf5 facts: the status command computes
 * them itself), or of the mount; caller frees. 0/-errno.
 */
int fs_status_file(struct fs *fs, struct node *n, char **json);
int fs_status_mount(struct fs *fs, char **json);

/*
 * The documents (without the hdf5 member) of the files in memory, from
 * the `start`th on, as {"files": [...], "next": N|null} of at most `max`
 * bytes: "next" is where the following page starts. Cheap: no image is
 * read. 0, -E2BIG (one document over max), -ENOMEM.
 */
int fs_status_files(struct fs *fs, uint64_t start, size_t max, char **json);

/* Counters for progress reports (systemd, unmount), one consistent read. */
struct fs_progress {
	uint64_t dirty_files, dirty_bytes;	/* now */
	uint64_t writebacks, writeback_bytes, writeback_errors; /* so far */
	uint64_t preload_files, preload_bytes;
	bool preload_running, preload_done;
};
void fs_progress(struct fs *fs, struct fs_progress *p);

/*
 * Drop n's unsaved changes: the image becomes SOURCE's version again,
 * in place (open handles see it). -ENODATA for a file not in SOURCE.
 */
int fs_discard(struct fs *fs, struct node *n);

/*
 * Drop n's clean image from memory; it is loaded again on next open.
 * -EBUSY when it has unsaved changes or open handles.
 */
int fs_evict(struct fs *fs, struct node *n);

/*
 * Start the background write-back every o.commit seconds (no-op when 0
 * or volatile); flush (may be NULL) is called first each time. 0/-errno.
 */
int fs_commit_start(struct fs *fs, void (*flush)(void *), void *arg);
void fs_commit_stop(struct fs *fs);

/*
 * Load every file of SOURCE in the background, as far as max_memory
 * allows without evicting; progress in the mount's status. 0/-errno.
 */
int fs_preload_start(struct fs *fs);
void fs_preload_stop(struct fs *fs);

#endif
