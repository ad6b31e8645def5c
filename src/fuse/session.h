/*
 * session.h - running a mount: FUSE session, signals, the request loop
 * and the final write-back.
 */
#ifndef H5M_SESSION_H
#define H5M_SESSION_H

#include "../cli/options.h"

/*
 * Mount per `o`, serve until unmounted or signalled (SIGTERM, SIGINT,
 * SIGHUP act as an unmount: kernel caches are flushed, then everything
 * is written back). Returns the process exit status: 0 when everything
 * is durable in SOURCE, 1 when the mount could not be made, 2 when some
 * changes could not be written back.
 */
int session_run(struct opts *o);

#endif
