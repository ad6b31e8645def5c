/*
 * writeback.h - changing SOURCE: atomic file replacement, metadata,
 * and replay of journalled namespace operations.
 *
 * A file's new version is written to a temporary `.h5memfs-tmp.XXXXXX`
 * (O_EXCL, mode 0600) in the same directory, given the old file's
 * chattr flags that say how to store it (no dump, no copy-on-write...),
 * its owner, xattrs (POSIX ACLs and security labels included), mode and
 * times, fsynced, renamed over the old name, and the directory is
 * fsynced. At every moment the name holds the old or the new version
 * whole. Everything goes through struct src, so nothing escapes SOURCE.
 */
#ifndef H5M_WRITEBACK_H
#define H5M_WRITEBACK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "../core/journal.h"
#include "../core/node.h"
#include "source.h"

/*
 * xattrs SOURCE would not store (EOPNOTSUPP, E2BIG, ENOSPC, ERANGE: too
 * large for its xattr area, or none there; EPERM for security.* when the
 * daemon lacks CAP_SYS_ADMIN): skipped, so that the data and the rest of
 * the metadata still land. The caller logs and reports them.
 */
struct wb_refused {
	unsigned count;
	int err;		/* -errno of the first */
	char name[256];		/* name of the first */
};

/* What to write for one regular file. */
struct wb_file {
	char **paths;		/* every name of the file, relative to SOURCE */
	size_t npaths;
	int fd;			/* the image (memfd), or -1 for empty */
	uint64_t size;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	struct timespec atime, mtime;
	const struct xattr *xattrs;
	bool noreplace;		/* fail with EEXIST rather than replace */
	/*
	 * The file being replaced, opened and checked by the caller against
	 * what the mount knows (wb_lock), or -1: the clone's base and whose
	 * chattr flags are kept. Never reopened by name: another node may
	 * put a different file there at any moment.
	 */
	int old;
	/*
	 * Only-changed-pages: when `pages` is set and SOURCE's filesystem
	 * can clone (FICLONE), the old file is cloned into the temporary
	 * and only these pages, plus everything from clean_size on, are
	 * written. Elsewhere the whole image is written.
	 */
	const struct img *pages;
	/*
	 * Called with the temporary (readable) once its data is complete,
	 * before fsync and rename: the bytes checked are the bytes that
	 * land. Non-zero (-errno) abandons the write. NULL: no check.
	 */
	int (*check)(void *arg, int fd, uint64_t size);
	void *check_arg;
	uint64_t written;	/* out: bytes of data written */
	bool cloned;		/* out: the clone path was taken */
	struct wb_refused refused; /* out: xattrs SOURCE would not store */
};

/*
 * Replace (or create) the file at every path in f->paths with the image,
 * atomically and durably; on success *id is the new file's identity.
 * On failure SOURCE keeps the old version, no temporary remains, and the
 * errno is returned negated (ENOSPC, EROFS, EACCES, EIO...); -EEXIST:
 * the first path holds a file other than f->old (made there since the
 * caller's check, or any file with f->noreplace), which stays.
 */
int wb_write_file(const struct src *s, struct wb_file *f,
		  struct src_ident *id);

/*
 * Lock the file at `rel` against other writers (an open file
 * description's write lock, which shared filesystems pass between
 * nodes), so that checking its identity and replacing it are one step
 * for every h5memfs over the same SOURCE. On filesystems whose clients
 * cache names, the identity is confirmed by a fresh listing. Returns
 * the locked fd (close it to unlock) with *id the identity of what the
 * name holds now, -ENOENT when there is no file,
 * or another -errno. Where locks are not supported it returns the fd
 * unlocked.
 */
int wb_lock(const struct src *s, const char *rel, struct src_ident *id);

/*
 * Identity of the file at `rel` now. 0, -ENOENT when there is none, or
 * another -errno.
 */
int wb_ident(const struct src *s, const char *rel, struct src_ident *id);

/*
 * Metadata of an existing entry, made to match; durably. The entry is
 * pinned (O_PATH|O_NOFOLLOW) and changed through the pin only if it is
 * what the mount knows: the type of `mode`, and the device and inode of
 * `expect` when expect.ino is set (and its ctime with check_ctime, which
 * tells a new entry from an old one whose inode number was reused).
 * Returns 0 with *now the entry's identity after the change, WB_OTHER
 * when the name holds something else (nothing is changed), or -errno.
 */
struct wb_meta {
	mode_t mode;		/* with type bits */
	uid_t uid;
	gid_t gid;
	struct timespec atime, mtime;
	const struct xattr *xattrs;
	struct src_ident expect;
	bool check_ctime;	/* expect.ctime too (no user sets it back) */
	struct wb_refused *refused; /* out (may be NULL): xattrs skipped */
};
#define WB_OTHER 1
int wb_set_meta(const struct src *s, const char *rel,
		const struct wb_meta *m, struct src_ident *now);

/*
 * Make one journalled namespace operation in SOURCE, durably (the
 * directories involved are fsynced). A missing source of a rename, link
 * or unlink is not an error: it names a file not yet written back, which
 * the data write-back creates.
 *
 * The target name (p2 of a rename or link, p1 of a creation) is replaced
 * only when it holds what the journal expects there (op->expect: device,
 * inode, type, and ctime where known); anything else someone else put
 * there is kept, and the mount's object is put beside it under a name
 * from aside->name (RENAME_NOREPLACE, linkat, symlinkat, mknodat and
 * mkdirat, which never replace, so that a name made meanwhile is not
 * replaced either). Then WB_OTHER is returned and aside->put is that
 * SOURCE path (the caller frees it). An existing directory where the
 * mount made one is used as it is. Exchanges are not checked. 0,
 * WB_OTHER or -errno.
 */
struct wb_aside {
	/* a free name beside `path`, try `seq` (0, 1, ...); NULL: ENOMEM */
	char *(*name)(void *arg, const char *path, int seq);
	void *arg;
	char *put;		/* out */
};
int wb_replay(const struct src *s, const struct jop *op,
	      struct wb_aside *aside);

#endif
