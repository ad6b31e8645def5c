/*
 * h5check.h - what libhdf5 sees in an image: the only place hdf5.h is
 * included.
 *
 * An image is HDF5 when the signature is at offset 0, 512, 1024, 2048...
 * Such an image is opened by libhdf5 in place (the memfd is mapped and
 * given to the core driver through the file image API, not copied), and
 * every object header is read. A superblock whose status flags say a
 * writer has the file open (HDF5 1.10+ writers, SWMR writers) is
 * validated as if closed: the flags are cleared in a private copy-on-
 * write page, with the superblock checksum recomputed, because validation
 * judges structure, not whether the writer has closed it.
 *
 * libhdf5 is not thread-safe here: calls are serialised inside. The
 * daemon calls only h5_inspect_isolated (isolate.c).
 */
#ifndef H5M_H5CHECK_H
#define H5M_H5CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct h5_report {
	bool is_hdf5;		/* signature found */
	bool opens;		/* libhdf5 opened it and read every object */
	uint64_t base;		/* offset of the superblock */
	int sb_version;		/* superblock version, -1 unknown */
	bool writer_open;	/* status flags: open for writing */
	bool swmr;		/* status flags: open by a SWMR writer */
	unsigned long objects;	/* objects visited */
	bool unfinished;	/* the isolated check crashed or ran out of
				   time or memory: not valid */
	bool sb_sound;		/* signature, a known superblock version,
				   sane sizes, checksum (v2, v3) */
	bool newer;		/* not opened because libhdf5 does not know
				   a version number in it: "unknown to this
				   libhdf5" rather than damaged */
	char why[256];		/* libhdf5's reason when it does not open */
};

/*
 * Look at the image of `size` bytes in fd. Returns 0 with *r filled
 * (a file that is not HDF5 gives is_hdf5 false), or -errno when the
 * image cannot be read or mapped.
 */
int h5_inspect(int fd, uint64_t size, struct h5_report *r);

/* What an isolated check may use. */
struct h5_limits {
	unsigned seconds;	/* wall clock, then the child is killed */
	unsigned cpu_seconds;	/* RLIMIT_CPU */
	uint64_t memory;	/* address space beyond the image (RLIMIT_AS);
				   0: no limit */
};
#define H5_LIMITS_DEFAULT { 300, 120, UINT64_C(1) << 30 }

/*
 * h5_inspect in a child process (forked with the descriptor; no other
 * descriptor of the daemon stays open in it) under `lim` (NULL: the
 * defaults). A child that crashes, exceeds a limit or misses the
 * deadline gives 0 with is_hdf5, !opens, unfinished and the reason in
 * why. An image without the signature is answered without a child.
 * -errno only when no child can be made (EMFILE, EAGAIN, ENOMEM).
 * libhdf5 parses untrusted files here, never in the daemon.
 */
int h5_inspect_isolated(int fd, uint64_t size, const struct h5_limits *lim,
			struct h5_report *r);

/* Jenkins lookup3 (hashlittle), as HDF5 checksums metadata with. */
uint32_t h5_lookup3(const void *key, size_t length, uint32_t initval);

#endif
