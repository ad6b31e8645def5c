/*
 * passthrough.h - kernel FUSE passthrough with libfuse 3.14, which has
 * no API for it: the daemon's /dev/fuse reads and writes go through
 * fuse_session_custom_io hooks that set the passthrough flags in the
 * INIT reply and in OPEN and CREATE replies, and each open file's image
 * is registered with the kernel as its backing file. Reads, writes and
 * mmap of such a file then never reach the daemon.
 */
#ifndef H5M_PASSTHROUGH_H
#define H5M_PASSTHROUGH_H

#include <stdbool.h>
#include <stdint.h>

#include "ll.h"

/* Why passthrough cannot work here, or NULL when it may. */
const char *pt_unavailable_reason(void);

/*
 * Install the hooks on the mounted session. 0 or -errno. The read hook
 * also counts every request by kind (fs.stats.requests), on both paths.
 */
int pt_install(struct h5m *m, struct fuse_session *se);

/*
 * Make the open being replied to a passthrough open of n's image: the
 * image is registered as a backing file once while n has open handles
 * (the kernel looks the id up after the reply, so it must outlive it),
 * and fi->fh carries the id to the reply hook. 0 or -errno.
 */
int pt_prepare_open(struct h5m *m, struct node *n, struct fuse_file_info *fi);

/* Status names of the request kinds, indexed by FUSE opcode. */
const char *const *pt_request_names(void);

/* Drop a backing id returned by fs_close (0: nothing to do). */
void pt_release(int id);

/* Whether the handle fi was made a passthrough open by pt_prepare_open. */
bool pt_is_passthrough(const struct fuse_file_info *fi);

#endif
