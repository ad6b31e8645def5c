/*
 * source.h - reading SOURCE, the directory a mount mirrors.
 *
 * SOURCE is reached only through its directory file descriptor: every
 * path below is relative to it and resolved with openat2(RESOLVE_BENEATH
 * | RESOLVE_NO_SYMLINKS), or where openat2 is missing by a walk of one
 * O_NOFOLLOW component at a time, so no "..", no symlink and no absolute
 * path can lead out of it. Leaf names are used with *at() calls that do
 * not follow symlinks. Not aware of FUSE, of the namespace tree or of HDF5.
 */
#ifndef H5M_SOURCE_H
#define H5M_SOURCE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "../core/image.h"
#include "../core/node.h"

/* Prefix of write-back temporaries; names with it are never shown. */
#define SRC_TMP_PREFIX ".h5memfs-tmp."

struct src {
	int root;		/* O_RDONLY|O_DIRECTORY fd of SOURCE */
};

/* Open SOURCE. 0 or -errno (ENOENT, ENOTDIR, EACCES). */
int src_open(struct src *s, const char *path);
void src_close(struct src *s);

/*
 * Open `rel` ("" is SOURCE itself) beneath SOURCE with open flags
 * `flags` (O_NOFOLLOW and O_CLOEXEC are added). Returns an fd or -errno.
 */
int src_openat(const struct src *s, const char *rel, int flags);

/*
 * Open `rel` (shorter than PATH_MAX) beneath the directory `dirfd` as
 * src_openat does: no "..", no symlink, nothing outside; with `same_fs`
 * also nothing on another filesystem mounted beneath (RESOLVE_NO_XDEV).
 * Allocates nothing, so a child may call it between fork and exit.
 * Returns an fd or -errno.
 */
int src_openat_beneath(int dirfd, const char *rel, int flags, bool same_fs);

/*
 * Use openat2(2) (the default) or walk paths one component at a time
 * with O_NOFOLLOW from SOURCE's fd, with the same guarantees: no "..",
 * no symlink on the way, nothing outside SOURCE. The walk is chosen by
 * itself the first time openat2 answers ENOSYS; tests force it here.
 * Process-wide.
 */
void src_use_openat2(bool on);

/*
 * Open the directory holding `rel` (O_RDONLY|O_DIRECTORY) and point
 * *leaf at the last component of rel. Returns an fd or -errno.
 */
int src_parent(const struct src *s, const char *rel, const char **leaf);

/* Called once per entry of a scanned directory; non-zero stops. */
typedef int (*src_entry_fn)(void *arg, const char *name,
			    const struct stat *st, const char *link_target);

/*
 * List directory `rel`, lstat-ing every entry (contents are not read),
 * skipping "." "..", and write-back temporaries. 0 or -errno.
 */
int src_scan(const struct src *s, const char *rel, src_entry_fn fn,
	     void *arg);

/* Record a file's identity from its stat. */
void src_ident_from_stat(struct src_ident *id, const struct stat *st);

/*
 * Load the regular file open at fd into image `im` (which must be
 * empty), holes kept as holes. Fills *id with the identity of what was
 * read. The fd stays open. 0 or -errno (EIO when fd is not a regular
 * file, ENOMEM, ENOSPC from the memfd...).
 */
int src_load_fd(int fd, struct img *im, struct src_ident *id);

/*
 * Copy the data of `from` (regions holding data only; holes stay holes)
 * to `to` (empty) at the same offsets, then set to's size to `size`.
 * 0/-errno.
 */
int src_copy_data(int from, int to, uint64_t size);

/*
 * As src_copy_data, for [start, end) only, leaving to's size alone.
 * *copied gets the bytes of data copied. 0 or -errno.
 */
int src_copy_span(int from, int to, uint64_t start, uint64_t end,
		  uint64_t *copied);

/*
 * As src_copy_span for a changed span of an image onto a clone of the
 * old file: the image's holes in [start, end) (punched through the
 * mount, or never written) become holes in `to` as well, where the old
 * file may have had data (zeros written where `to` cannot punch).
 */
int src_copy_changed_span(int from, int to, uint64_t start, uint64_t end,
			  uint64_t *copied);

#endif
