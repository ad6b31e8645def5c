/*
 * uring.h - FUSE requests over io_uring (-o io_uring; Linux 6.14+ with
 * the fuse module's enable_uring on).
 *
 * After INIT the kernel hands requests to entries the daemon registered
 * on io_uring rings, one queue per possible CPU, instead of queueing
 * them for read(2) on /dev/fuse, and takes replies as the next command
 * on the same entry: one system call per request instead of two, and no
 * wake-up of a thread pool. libfuse 3.14 has no such transport, so each
 * ring thread rebuilds the request as /dev/fuse would have delivered it
 * and gives it to fuse_session_process_buf; the reply, which libfuse
 * writes through the custom I/O hooks (passthrough.c), is taken back
 * here when it belongs to a ring request. FORGET, INTERRUPT and
 * notifications still travel over /dev/fuse.
 */
#ifndef H5M_URING_H
#define H5M_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct h5m;

/* flags2 bit of fuse_init_in/out: FUSE_OVER_IO_URING (bit 41) */
#define URING_INIT_FLAG2 (1u << 9)

/* Whether this machine's CPU count allows the rings (the INIT flag). */
bool uring_possible(void);

/*
 * Start the ring threads, once, right after the INIT reply was written
 * (the kernel refuses registrations before). When registration fails
 * (enable_uring off, an old kernel), the kernel goes on with /dev/fuse
 * and a warning says why. 0 or -errno.
 */
int uring_start(struct h5m *m, int devfd);

/*
 * The writev hook's question: is this reply for a request that came over
 * a ring? Then it is taken (copied for its entry, which commits it) and
 * *ret is what writev would have returned.
 */
bool uring_take_reply(const struct iovec *iov, int count, ssize_t *ret);

/*
 * The same for a reply libfuse spliced into pipe `fdin` (a READ reply
 * of `len` bytes, header included).
 */
bool uring_take_spliced_reply(int fdin, size_t len, ssize_t *ret);

/*
 * Stop serving requests over the rings and join the threads: after the
 * request loop has ended, as no thread reads /dev/fuse then either.
 * Requests left on the rings wait for the unmount, as unread ones do.
 */
void uring_stop(void);

#endif
