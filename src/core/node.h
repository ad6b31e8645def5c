/*
 * node.h - the namespace of a mount: nodes (inodes) and the names that
 * link them into a tree.
 *
 * A node is a file, directory, symlink or special file as the mount sees
 * it; a dentry is one name of a node inside a directory (a file with hard
 * links has several). Every dentry is also in one hash table keyed by
 * (directory, name), so lookups cost O(1) however large a directory is.
 *
 * Node lifetime: a node is freed when it has no name, the kernel has
 * forgotten it (nlookup == 0), no handle is open and nobody pins it.
 * All functions here expect the caller to hold the namespace lock
 * (struct ns.lock); none does I/O on SOURCE.
 */
#ifndef H5M_NODE_H
#define H5M_NODE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "image.h"

struct node;
struct fs_lazy;

struct dentry {
	char *name;
	struct node *dir;		/* directory holding this name */
	struct node *node;		/* what the name refers to */
	struct dentry *hnext;		/* hash chain */
	struct dentry *prev, *next;	/* order within the directory */
	struct dentry *lnext;		/* next name of the same node */
};

struct xattr {
	char *name;
	void *value;
	size_t size;
	struct xattr *next;
};

/* Identity of a file in SOURCE, to notice changes made behind the mount. */
struct src_ident {
	dev_t dev;
	ino_t ino;
	uint64_t size;
	struct timespec mtime, ctime;
};

enum node_flags {
	N_FROM_SOURCE = 1 << 0,	/* came from SOURCE; may be loaded from it */
	N_LOADED = 1 << 1,	/* regular file: image holds the content */
	N_DIRTY = 1 << 2,	/* content differs from SOURCE */
	N_META_DIRTY = 1 << 3,	/* mode, owner, times or xattrs differ */
	N_SCANNED = 1 << 4,	/* directory: children read from SOURCE */
	N_XATTRS = 1 << 5,	/* xattrs read from SOURCE (or new node) */
	N_VOLATILE = 1 << 6,	/* user.h5memfs.volatile: never written */
	N_INVALID = 1 << 7,	/* last write-back refused: HDF5 invalid */
	N_CONFLICT = 1 << 8,	/* SOURCE changed behind: saved beside it */
	N_LOADING = 1 << 9,	/* being read from SOURCE now */
	N_REBORN = 1 << 10,	/* names moved to a new node: ESTALE */
	N_STANDIN_BUSY = 1 << 11, /* new file renamed over the file being
				     written back now: `replaces` is set
				     when that write-back ends */
	N_SRC_MOVED = 1 << 12,	/* a name of it changed in SOURCE by the
				   journal since `ident` was taken: its
				   ctime there is not ident.ctime */
};

/* The outcome of a file's last write-back, for status and logs. */
struct wb_result {
	int err;		/* 0 or -errno */
	struct timespec when;	/* 0 if never */
	char note[320];		/* why it failed, or where it went */
};

/* What only a regular file carries (node.file, made with the node). */
struct node_file {
	struct img img;			/* the content */
	int kernel_id;			/* passthrough backing id, or 0 */
	int kernel_old;			/* the id of an image reloaded while
					   handles were open, to release */
	int direct_fd;			/* too big for memory: SOURCE's file,
					   open read-only, or -1 */
	uint64_t last_use;		/* LRU clock of the last open/close */
	uint64_t wgen;			/* bumped by every change of content */
	struct fs_lazy *lazy;		/* partial image: the blocks still in
					   SOURCE (src/fs/lazy.c), or NULL */
	unsigned cached_opens;		/* passthrough mounts: handles the
					   daemon serves (no FOPEN_PASSTHROUGH) */
};

struct node {
	uint64_t ino;			/* st_ino shown to programs */
	mode_t mode;
	uid_t uid;
	gid_t gid;
	dev_t rdev;
	struct timespec atime, mtime, ctime;
	uint64_t size;			/* size while not loaded / not regular */
	char *target;			/* symlink target */
	unsigned flags;
	unsigned nlinks;		/* names (dentries) of a non-directory */
	struct dentry *links;		/* those names */
	struct dentry *first, *last;	/* directory entries, in order */
	unsigned nchildren, nsubdirs;
	/*
	 * Directories: list_gen moves whenever an entry is added, removed
	 * or given another file; listed_gen is the list_gen of the last
	 * listing handed to the kernel, which may cache it (fs_opendir).
	 */
	uint64_t list_gen, listed_gen;
	unsigned src_nlink;		/* dir: st_nlink until scanned; others:
					   SOURCE names not yet scanned */
	struct xattr *xattrs;
	uint64_t xattr_bytes;		/* their names, values and records */
	uint64_t meta;			/* this node's share of meta_used */
	uint64_t nlookup;		/* kernel references */
	unsigned nopen;			/* open handles */
	unsigned releasing;		/* RELEASEs read, not yet handled
					   (atomic; fs_release_seen) */
	unsigned pins;			/* internal references */
	struct node_file *file;		/* regular files only, else NULL */
	struct src_ident ident;		/* SOURCE identity when loaded */
	struct timespec listed_mtime;	/* dir: SOURCE's mtime when listed */
	uint64_t checked_ms;		/* dir: when SOURCE was last asked */
	struct src_ident replaces;	/* new file renamed over this one */
	struct wb_result *wb;		/* last write-back of this file; NULL
					   until its first (only files
					   written back pay for it) */
	pthread_mutex_t io;		/* serialises loading and write-back */
	struct node *all_prev, *all_next; /* every live node, for teardown */
};

struct ns {
	pthread_mutex_t lock;		/* protects everything in this file */
	struct node *root;
	struct dentry **table;
	size_t buckets, count;
	uint64_t next_ino;
	uint64_t page_size;
	uint64_t nodes;			/* live nodes */
	uint64_t mem_used;		/* memory of all images */
	uint64_t meta_used;		/* memory of the namespace itself:
					   nodes, names, xattrs, symlink
					   targets (ns_meta_account) */
	uint64_t mem_reserved;		/* promised to loads and writes in
					   progress, not in mem_used yet */
	struct node *all;		/* list of every live node */
	/* frees what node_file.lazy holds when its node goes (src/fs) */
	void (*lazy_release)(struct fs_lazy *lz);
};

/* Set up a namespace with an empty root directory. 0 or -ENOMEM. */
int ns_init(struct ns *ns, mode_t root_mode, uint64_t page_size);

/* Free every node and name. No node may be in use. */
void ns_destroy(struct ns *ns);

/*
 * Create a node of the given mode (type bits included) with its times set
 * to now, not yet linked anywhere; a regular file gets its node_file,
 * with an empty image. NULL on ENOMEM.
 */
struct node *ns_node_new(struct ns *ns, mode_t mode, uid_t uid, gid_t gid);

/* The dentry named `name` in `dir`, or NULL. */
struct dentry *ns_find(const struct ns *ns, const struct node *dir,
		       const char *name);

/* Link `node` under `name` in `dir` (which must not have it). 0/-ENOMEM. */
int ns_link(struct ns *ns, struct node *dir, const char *name,
	    struct node *node);

/*
 * Remove the name; the node is freed if nothing else holds it. The
 * caller updates times.
 */
void ns_unlink(struct ns *ns, struct dentry *d);

/*
 * Move dentry `d` to `name` in `dir`, replacing whatever had that name
 * (the caller has checked that replacing is allowed). 0 or -ENOMEM.
 */
int ns_move(struct ns *ns, struct dentry *d, struct node *dir,
	    const char *name);

/* Swap the nodes two dentries point at (RENAME_EXCHANGE). */
void ns_exchange(struct ns *ns, struct dentry *a, struct dentry *b);

/*
 * A new node takes over all of old's names, attributes and xattrs, but
 * not its image (the new one is not loaded): for a kernel that caches
 * what it knew of `old` (its size, with a writeback cache) and must meet
 * a new inode. `old` keeps its kernel references and is freed with the
 * last. NULL on ENOMEM (nothing changed).
 */
struct node *ns_rebirth(struct ns *ns, struct node *old);

/* Take or drop a reference; dropping may free the node. */
void ns_pin(struct node *n);
void ns_unpin(struct ns *ns, struct node *n);

/* Drop kernel references (FUSE forget). May free the node. */
void ns_forget(struct ns *ns, struct node *n, uint64_t nlookup);

/* Free the node if nothing holds it any more. */
void ns_maybe_free(struct ns *ns, struct node *n);

/*
 * The node's path relative to the root ("" for the root, "a/b" else),
 * through its first name; NULL on ENOMEM or when the node has no name
 * (*unlinked set true then). Caller frees.
 */
char *ns_path(const struct ns *ns, const struct node *n, bool *unlinked);

/* Path of `name` inside `dir` (as ns_path). Caller frees. */
char *ns_child_path(const struct ns *ns, const struct node *dir,
		    const char *name);

/* Whether `anc` is `n` or one of its ancestors (directories only). */
bool ns_is_ancestor(const struct node *anc, const struct node *n);

/* st_nlink as a program expects it. */
unsigned ns_nlink(const struct node *n);

/* Bring n's share of mem_used up to date with its image. */
void ns_account(struct ns *ns, struct node *n);

/*
 * Bring n's share of meta_used up to date: its node (and file) record,
 * xattrs and symlink target; names are counted as they are linked.
 * Nodes are counted from ns_node_new on; call this after changing n's
 * xattrs or target.
 */
void ns_meta_account(struct ns *ns, struct node *n);

/* What a name in a directory costs (in meta_used). */
uint64_t ns_name_cost(const char *name);

/* What a new node costs, a regular file's if `reg`, with no xattrs. */
uint64_t ns_node_cost(bool reg);

/* What an xattr costs (in meta_used). */
uint64_t ns_xattr_cost(const char *name, size_t size);

/* Fill a struct stat from the node (size from the image when loaded). */
void ns_stat(const struct node *n, struct stat *st);

/* Current time, for stamping nodes. */
struct timespec ns_now(void);

/* xattrs: 0 or -errno (ENODATA, ERANGE, EEXIST, ENOMEM). */
int ns_xattr_get(const struct node *n, const char *name, void *buf,
		 size_t size, size_t *len);
int ns_xattr_set(struct node *n, const char *name, const void *value,
		 size_t size, int flags);
int ns_xattr_remove(struct node *n, const char *name);
/*
 * NUL-separated names; with size 0 only *len is set. trusted.* names
 * are left out unless `trusted` (the caller has CAP_SYS_ADMIN).
 */
int ns_xattr_list(const struct node *n, bool trusted, char *buf,
		  size_t size, size_t *len);
/*
 * The names kept and mirrored to SOURCE: user.*, trusted.*, security.*
 * but security.capability (the mount is nosuid, and a write takes a
 * file's capabilities away on any filesystem: a write-back of new data
 * must not carry them over), and the POSIX ACLs system.posix_acl_access
 * and system.posix_acl_default.
 */
bool ns_xattr_kept(const char *name);
bool ns_xattr_trusted(const char *name);
bool ns_xattr_security(const char *name);
/* The node's attribute `name`, or NULL. */
struct xattr *ns_xattr_find(const struct node *n, const char *name);
void ns_xattr_free_all(struct node *n);

#endif
