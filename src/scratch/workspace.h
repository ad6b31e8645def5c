/*
 * workspace.h - the scratch workspace: a volatile h5memfs mount on a
 * private, freshly made temporary directory, and its complete removal.
 *
 * The daemon runs as a child of the tool in the foreground (-f), in its
 * own process group, and reports readiness through its notify pipe. This
 * file holds no FUSE code: it only starts, signals and reaps h5memfs.
 */
#ifndef H5M_SCRATCH_WORKSPACE_H
#define H5M_SCRATCH_WORKSPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/signalfd.h>
#include <sys/types.h>

struct ws_config {
	const char *daemon;	/* h5memfs: a path, or a name found in PATH */
	const char *from;	/* canonical SOURCE to load, or NULL */
	char *const *opts;	/* extra -o values for the daemon */
	size_t nopts;
};

struct ws {
	char *mnt;		/* the canonical mount point, or NULL */
	pid_t daemon;		/* the daemon while it runs, else 0 */
	int daemon_fd;		/* its pidfd while it runs, else -1 */
	int daemon_status;	/* its wait status once it has ended */
};

/*
 * Make a mount point (mode 0700) under $TMPDIR or /tmp and mount the
 * workspace on it. Waits, however long it takes, for the daemon to be
 * ready, to fail, or for a signal on sigfd.
 *
 * Returns 0 when the workspace serves requests. Returns -1 when it could
 * not be mounted (a message says why), and 1 when a signal arrived first
 * (stored in *si); in both cases nothing is left behind: no daemon, no
 * mount, no directory.
 */
int ws_mount(struct ws *ws, const struct ws_config *cfg, int sigfd,
	     struct signalfd_siginfo *si);

/*
 * Reap the daemon if it has ended (after its pidfd became readable).
 * Returns true if it still runs.
 */
bool ws_daemon_alive(struct ws *ws);

/* How the daemon ended, as a phrase ("exited with status 1"), into buf. */
void ws_describe_exit(const struct ws *ws, char *buf, size_t len);

/*
 * End the workspace: SIGTERM to the daemon, which unmounts (lazily, so a
 * process left inside cannot keep it) and exits; after 20 s, or at once if
 * a signal arrives on sigfd (>= 0), it is killed. A mount left behind is
 * detached, then the mount point removed.
 *
 * Returns 0, or -1 with a message when the daemon ended badly or
 * something could not be removed. ws is empty afterwards.
 */
int ws_unmount(struct ws *ws, int sigfd);

#endif
