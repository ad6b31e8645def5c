/*
 * drain.c - bring the writes the kernel still caches (writeback cache,
 * daemon path) into the daemon, without the daemon ever waiting on its
 * own mount.
 *
 * syncfs(2) does not wait for a FUSE server's writeback (the kernel does
 * not trust a server with its sync), but close(2) does: its FLUSH waits
 * for the file's pending writes. A close on our own mount made by a
 * thread of the daemon, though, waits for a request that the daemon
 * itself must serve:
 *
 * - from a FUSE worker it needs another free worker. libfuse 3.14 starts
 *   a worker only while fewer than max_threads (16) run, so 16 handlers
 *   draining at once, a -s loop, or valgrind (which runs close(2) while
 *   holding its lock on every other thread) leave none: deadlock;
 * - if the daemon is killed while a FLUSH that a worker already read is
 *   unanswered, the closing thread waits uninterruptibly, keeps
 *   /dev/fuse open, so the kernel never aborts the connection: the
 *   process can never exit and the mount hangs.
 *
 * So the opens and closes are made by a forked child that first closes
 * /dev/fuse, and the caller waits for it DRAIN_TIMEOUT_S at most. If the
 * daemon dies, the kernel aborts the connection and the child's close
 * returns; a child that does not finish in time is killed, kept in a
 * short list and reaped later (by the next drain, or at the end of the
 * mount: ll_drain_reap), so that no thread outlives the daemon. The callers are never FUSE workers either: the
 * control requests that drain are answered from the control thread
 * (control.c), the others are the commit and signal threads. Not the
 * place that decides when to drain.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../backing/source.h"
#include "../core/log.h"
#include "ll.h"

/*
 * Generous: the kernel may hold gigabytes of dirty pages, and valgrind
 * runs slowly; only a daemon that cannot serve at all reaches it.
 */
#define DRAIN_TIMEOUT_S 60

/*
 * Open the regular file `rel` beneath the mount for reading, as root may
 * do safely on a mount that every user changes: resolved beneath the
 * mount point with no symlink and no other filesystem on the way
 * (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV, or the same
 * walk by hand), pinned with O_PATH (which opens nothing) and reopened
 * only if it is a regular file: a name swapped meanwhile for a symlink,
 * a FIFO or a device node is never opened. Paths longer than PATH_MAX go
 * in pieces. No allocation and no stdio: called after fork.
 */
static int open_beneath(int mntfd, const char *rel)
{
	char piece[PATH_MAX], proc[32] = "/proc/self/fd/", digits[12];
	const char *p = rel;
	int dirfd = mntfd, fd, pin;
	size_t nd = 0, pl = strlen(proc);
	struct stat st;

	while (strlen(p) >= PATH_MAX) {
		const char *cut = p + PATH_MAX - 1;

		while (cut > p && *cut != '/')
			cut--;
		fd = -1;
		if (cut > p) {
			memcpy(piece, p, (size_t)(cut - p));
			piece[cut - p] = '\0';
			fd = src_openat_beneath(dirfd, piece,
						O_PATH | O_DIRECTORY, true);
		}
		if (dirfd != mntfd)
			close(dirfd);
		if (fd < 0)
			return -1;
		dirfd = fd;
		p = cut + 1;
	}
	pin = src_openat_beneath(dirfd, p, O_PATH, true);
	if (dirfd != mntfd)
		close(dirfd);
	if (pin < 0)
		return -1;
	if (fstat(pin, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(pin);
		return -1;
	}
	for (unsigned v = (unsigned)pin; nd == 0 || v; v /= 10)
		digits[nd++] = (char)('0' + v % 10);
	while (nd)
		proc[pl++] = digits[--nd];
	proc[pl] = '\0';
	fd = open(proc, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	close(pin);
	return fd;
}

/*
 * The child: only async-signal-safe calls after fork. `rels` are paths
 * relative to the mount point `mnt`. Never returns.
 */
static void child(int fuse_fd, char *const *rels, const char *mnt,
		  bool sync_all)
{
	int fd, mntfd;

#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3U, ~0U, 0) < 0)
#endif
		close(fuse_fd); /* all that matters: see the top of the file */
	/* the mount point itself is the administrator's, trusted */
	mntfd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (size_t i = 0; mntfd >= 0 && rels && rels[i]; i++) {
		fd = open_beneath(mntfd, rels[i]);
		if (fd >= 0)
			close(fd);
	}
	if (mntfd >= 0 && sync_all)
		syncfs(mntfd); /* starts writeback of mmap-dirtied pages */
	/*
	 * Not _exit: under valgrind that runs a leak check of the parent's
	 * memory, which only the threads left behind in the parent point
	 * to. SIGKILL ends the copy with no such work; the status is not
	 * looked at.
	 */
	kill(getpid(), SIGKILL);
	_exit(0);
}

/* Killed children not reaped yet (a kill may take a while to land). */
#define MAX_STRAYS 16
static pthread_mutex_t strays_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t strays[MAX_STRAYS];
static unsigned nstrays;

/* Reap the killed children; wait for each when `block`. */
static void reap(bool block)
{
	pthread_mutex_lock(&strays_lock);
	for (unsigned i = 0; i < nstrays;) {
		pid_t r = waitpid(strays[i], NULL, block ? 0 : WNOHANG);

		if (r == 0 || (r < 0 && errno == EINTR)) {
			i++;
			continue;
		}
		strays[i] = strays[--nstrays];
	}
	pthread_mutex_unlock(&strays_lock);
}

void ll_drain_reap(void)
{
	reap(true);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run the child on paths in the mount; syncfs it too with sync_all. */
static int run(struct h5m *m, char *const *rels, bool sync_all)
{
	double deadline = now() + DRAIN_TIMEOUT_S;
	struct timespec nap = { 0, 1000000 };
	pid_t pid, r;

	reap(false);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0)
		child(fuse_session_fd(m->se), rels, m->mountpoint, sync_all);
	for (;;) {
		r = waitpid(pid, NULL, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			return 0;
		if (now() > deadline)
			break;
		nanosleep(&nap, NULL);
		if (nap.tv_nsec < 32000000)
			nap.tv_nsec *= 2;
	}
	log_warn("the kernel's cached writes did not reach the daemon in "
		 "%d s; going on without them", DRAIN_TIMEOUT_S);
	kill(pid, SIGKILL);
	pthread_mutex_lock(&strays_lock);
	if (nstrays < MAX_STRAYS)
		strays[nstrays++] = pid;
	/* past MAX_STRAYS a zombie stays until the daemon exits: harmless */
	pthread_mutex_unlock(&strays_lock);
	return -ETIMEDOUT;
}

bool ll_drain_needed(struct h5m *m, struct node *n)
{
	bool open;

	if (!m->writeback_cache)
		return false;
	if (n == m->fs.ns.root)
		return true;
	pthread_mutex_lock(&m->fs.ns.lock);
	/* only an open file can have writes in the kernel's cache */
	open = n->nopen && S_ISREG(n->mode);
	pthread_mutex_unlock(&m->fs.ns.lock);
	return open;
}

int ll_drain_node(struct h5m *m, struct node *n)
{
	char *paths[2] = { NULL, NULL };
	bool unlinked;
	int err;

	if (n == m->fs.ns.root)
		return ll_drain_all(m);
	if (!ll_drain_needed(m, n))
		return 0;
	pthread_mutex_lock(&m->fs.ns.lock);
	paths[0] = ns_path(&m->fs.ns, n, &unlinked);
	pthread_mutex_unlock(&m->fs.ns.lock);
	if (!paths[0])
		return 0; /* no name: reached through handles only */
	err = run(m, paths, false);
	free(paths[0]);
	return err;
}

int ll_drain_all(struct h5m *m)
{
	char **paths;
	int err;

	if (!m->writeback_cache)
		return 0;
	paths = fs_open_paths(&m->fs);
	err = run(m, paths, true);
	for (size_t i = 0; paths && paths[i]; i++)
		free(paths[i]);
	free(paths);
	return err;
}

void ll_drain_all_cb(void *arg)
{
	ll_drain_all(arg);
}
