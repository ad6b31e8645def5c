/*
 * kernel_abi.h - the few FUSE passthrough ABI facts (protocol 7.40,
 * Linux 6.9+) that Debian 12's kernel headers (6.1) and libfuse 3.14
 * lack. Values from include/uapi/linux/fuse.h; offsets are of the wire
 * structures, little-endian.
 */
#ifndef H5M_KERNEL_ABI_H
#define H5M_KERNEL_ABI_H

#include <stdint.h>
#include <sys/ioctl.h>

/*
 * struct fuse_in_header: len u32 @0, opcode u32 @4, unique @8; the
 * opcodes are <linux/fuse.h>'s, but this one, which 6.1 lacks
 */
#define KABI_OP_STATX 52 /* Linux 6.6+ */

/* struct fuse_init_in: flags u32 @12, flags2 u32 @16 (with INIT_EXT) */
#define KABI_INIT_IN_FLAGS 12
#define KABI_INIT_IN_FLAGS2 16
/* struct fuse_init_out: flags u32 @12, flags2 u32 @32, depth u32 @36 */
#define KABI_INIT_OUT_FLAGS 12
#define KABI_INIT_OUT_FLAGS2 32
#define KABI_INIT_OUT_STACK_DEPTH 36
#define KABI_INIT_EXT (1u << 30)		/* in flags */
#define KABI_WRITEBACK_CACHE (1u << 16)		/* in flags */
#define KABI_PASSTHROUGH2 (1u << 5)		/* bit 37: in flags2 */
#define KABI_HANDLE_KILLPRIV_V2 (1u << 28)	/* in flags */

/*
 * With HANDLE_KILLPRIV_V2 the kernel no longer asks for
 * security.capability before every write; it marks the requests after
 * which the server must clear set-user-ID and set-group-ID instead:
 * struct fuse_write_in: write_flags u32 @20; struct fuse_setattr_in:
 * valid u32 @0. The request body follows the 40-byte fuse_in_header,
 * whose nodeid is the u64 @16.
 */
#define KABI_IN_HEADER_SIZE 40
#define KABI_IN_NODEID 16
#define KABI_WRITE_IN_FLAGS 20
#define KABI_WRITE_KILL_SUIDGID (1u << 2)
#define KABI_SETATTR_IN_VALID 0
#define KABI_FATTR_KILL_SUIDGID (1u << 11)
/*
 * struct fuse_open_in: flags u32 @0, open_flags u32 @4. The kernel sets
 * FUSE_OPEN_KILL_SUIDGID for an O_TRUNC open by a caller without
 * CAP_FSETID.
 */
#define KABI_OPEN_IN_OPEN_FLAGS 4
#define KABI_OPEN_KILL_SUIDGID (1u << 0)

/* struct fuse_open_out: fh u64 @0, open_flags u32 @8, backing_id @12 */
#define KABI_OPEN_OUT_FLAGS 8
#define KABI_OPEN_OUT_BACKING_ID 12
#define KABI_FOPEN_PASSTHROUGH (1u << 7)
/* A CREATE reply is a fuse_entry_out, then a fuse_open_out. */
#define KABI_ENTRY_OUT_SIZE 128

struct kabi_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};

#define KABI_DEV_IOC_BACKING_OPEN _IOW(229, 1, struct kabi_backing_map)
#define KABI_DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

#endif
