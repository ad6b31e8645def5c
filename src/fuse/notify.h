/*
 * notify.h - what the daemon tells the outside world about its life:
 * systemd's notify protocol, and the outcome reports that
 * `h5memfs unmount` asks for.
 *
 * systemd: when NOTIFY_SOCKET is set, datagrams READY=1 (the mount
 * serves), STATUS=... (preload and final write-back progress),
 * EXTEND_TIMEOUT_USEC=... (while the final write-back makes progress)
 * and STOPPING=1 (the request loop ended) go to that socket, as
 * sd_notify(3) documents the protocol.
 *
 * Reports: `h5memfs unmount` binds an abstract AF_UNIX datagram socket
 * and gives its name through the root's user.h5memfs.report xattr; the
 * daemon sends it "progress FILES_DONE FILES BYTES_DONE BYTES" lines
 * during the final write-back (and any whole-mount sync) and, last,
 * "status N" (the exit status)
 * with "rescue DIR" when files were saved there. A lost datagram costs
 * a progress update, never the outcome: the command reads it after the
 * daemon has exited, from its own socket's queue.
 */
#ifndef H5M_NOTIFY_H
#define H5M_NOTIFY_H

#include <stddef.h>

struct fs;

/* Send one message to systemd (no-op without NOTIFY_SOCKET). */
void notify_systemd(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/*
 * Register an abstract socket name (bytes, no leading NUL) for the
 * outcome. 0, -EINVAL (empty or too long), -ENOSPC (too many).
 */
int notify_report_add(const char *name, size_t len);

/* Send the outcome to every registered socket (end of the daemon). */
void notify_report_outcome(int status, const char *rescue_dir);

/*
 * A thread that sends progress once a second: preload progress while
 * the mount serves, then (after notify_watch_final) the final write-back
 * progress to systemd and to the reports. Start: 0 or -errno; stop
 * joins it.
 */
int notify_watch_start(struct fs *fs);
void notify_watch_final(void);
void notify_watch_stop(void);

/*
 * Around a whole-mount sync (h5memfs sync MOUNTPOINT): the progress
 * thread sends its progress to the reports too, as for the final
 * write-back (the sync command draws it on a terminal).
 */
void notify_pass_begin(void);
void notify_pass_end(void);

#endif
