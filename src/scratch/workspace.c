/*
 * workspace.c - mount a volatile h5memfs workspace on a private temporary
 * directory, and take it all down again: daemon, mount and directory.
 * See workspace.h for the contracts.
 */
#include "workspace.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/mountinfo.h"
#include "path.h"
#include "proc.h"

#define STOP_TIMEOUT_MS 20000	/* SIGTERM to SIGKILL */
#define KILL_TIMEOUT_MS 10000	/* SIGKILL to giving up */

/*
 * The directory to make the mount point in: $TMPDIR, else /tmp. The
 * daemon refuses a mount point inside SOURCE, so when --from contains that
 * directory the next of /tmp, $XDG_RUNTIME_DIR, /var/tmp, /dev/shm that
 * --from does not contain is used. Returns a malloc'ed canonical path, or
 * NULL after a message.
 */
static char *pick_base(const char *from)
{
	const char *tmpdir = getenv("TMPDIR");
	const char *cands[] = {
		tmpdir && *tmpdir ? tmpdir : "/tmp", "/tmp",
		getenv("XDG_RUNTIME_DIR"), "/var/tmp", "/dev/shm",
	};
	size_t i;
	char *base;

	base = realpath(cands[0], NULL);
	if (!base) {
		fprintf(stderr, SCRATCH_PROG ": cannot make a mount point in "
			"'%s': %s\n", cands[0], strerror(errno));
		return NULL;
	}
	if (!from || !path_inside(base, from))
		return base;
	for (i = 1; i < sizeof(cands) / sizeof(cands[0]); i++) {
		free(base);
		base = cands[i] && *cands[i] ? realpath(cands[i], NULL) : NULL;
		if (base && !path_inside(base, from) &&
		    access(base, W_OK | X_OK) == 0)
			return base;
	}
	free(base);
	fprintf(stderr, SCRATCH_PROG ": --from '%s' contains every temporary "
		"directory (TMPDIR, /tmp, ...); set TMPDIR to a directory "
		"outside it\n", from);
	return NULL;
}

static bool is_at(const struct mountinfo_entry *e, void *mnt)
{
	return !strcmp(e->mountpoint, mnt);
}

/* Whether something is mounted on the canonical path mnt. */
static bool is_mounted(const char *mnt)
{
	return mountinfo_each(is_at, (void *)mnt);
}

/* Detach whatever is mounted on mnt: directly as root, else fusermount3. */
static void detach(const char *mnt)
{
	const char *argv[] = { "fusermount3", "-u", "-z", "-q", mnt, NULL };
	struct signalfd_siginfo si;
	int fd, st;
	pid_t pid;

	while (is_mounted(mnt)) {
		if (umount2(mnt, MNT_DETACH) == 0)
			continue;
		pid = proc_spawn(argv, NULL, NULL, &fd);
		if (pid < 0 || proc_wait(pid, fd, -1, KILL_TIMEOUT_MS, &st,
					 &si) != 0 || st != 0) {
			if (pid > 0 && kill(pid, 0) == 0) {
				kill(pid, SIGKILL);
				proc_wait(pid, fd, -1, -1, &st, &si);
			}
			break;
		}
	}
}

struct daemon_setup {
	pid_t parent;
	int notify_w;
};

/* Runs in the daemon's child process, before exec. */
static void daemon_setup(void *arg)
{
	const struct daemon_setup *s = arg;
	int fd;

	/*
	 * Its own process group: Ctrl-C at the terminal is for COMMAND, and
	 * the workspace must outlive COMMAND's clean-up. It ends when the
	 * tool says so, or when the tool dies (SIGKILL) and cannot.
	 */
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != s->parent)
		_exit(1);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && fd != STDIN_FILENO)
		dup2(fd, STDIN_FILENO);
	/* The daemon opens /proc/self/fd/N, which must survive the exec. */
	fcntl(s->notify_w, F_SETFD, 0);
}

static const char **daemon_argv(const struct ws_config *cfg, const char *mnt,
				const char *notify_opt)
{
	const char **argv = calloc(cfg->nopts * 2 + 10, sizeof(*argv));
	size_t n = 0, i;

	if (!argv)
		return NULL;
	argv[n++] = cfg->daemon;
	argv[n++] = "-f";
	argv[n++] = "-o";
	argv[n++] = "volatile";
	argv[n++] = "-o";
	argv[n++] = notify_opt;
	for (i = 0; i < cfg->nopts; i++) {
		argv[n++] = "-o";
		argv[n++] = cfg->opts[i];
	}
	if (cfg->from)
		argv[n++] = cfg->from;
	argv[n++] = mnt;
	return argv;
}

/*
 * Wait for "ready" on the notify pipe. Returns 0 when ready, -1 when the
 * daemon failed or ended (it may still have to be reaped), 1 on a signal.
 */
static int wait_ready(struct ws *ws, int notify_r, int sigfd,
		      struct signalfd_siginfo *si)
{
	struct pollfd p[3] = {
		{ .fd = notify_r, .events = POLLIN },
		{ .fd = ws->daemon_fd, .events = POLLIN },
		{ .fd = sigfd, .events = POLLIN },
	};
	char buf[32];
	size_t len = 0;
	ssize_t n;

	for (;;) {
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (p[2].revents && proc_read_signal(sigfd, si))
			return 1;
		if (p[0].revents) {
			n = read(notify_r, buf + len, sizeof(buf) - 1 - len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return -1; /* the daemon is gone */
			len += (size_t)n;
			buf[len] = '\0';
			if (strchr(buf, '\n') || len == sizeof(buf) - 1)
				return strcmp(buf, "ready\n") ? -1 : 0;
			continue;
		}
		if (p[1].revents)
			return -1; /* exited without a word */
	}
}

bool ws_daemon_alive(struct ws *ws)
{
	struct pollfd p = { .fd = ws->daemon_fd, .events = POLLIN };

	if (!ws->daemon)
		return false;
	if (poll(&p, 1, 0) != 1)
		return true;
	while (waitpid(ws->daemon, &ws->daemon_status, 0) < 0 &&
	       errno == EINTR)
		;
	close(ws->daemon_fd);
	ws->daemon = 0;
	ws->daemon_fd = -1;
	return false;
}

void ws_describe_exit(const struct ws *ws, char *buf, size_t len)
{
	int st = ws->daemon_status;

	if (WIFSIGNALED(st))
		snprintf(buf, len, "was killed by signal %d", WTERMSIG(st));
	else
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
}

/* ws_unmount; report: whether a daemon that ended badly is worth a word. */
static int teardown(struct ws *ws, int sigfd, bool report)
{
	struct signalfd_siginfo si;
	char what[64];
	int ret = 0, r;

	if (!ws->mnt)
		return 0;
	if (ws->daemon) {
		/* SIGTERM is an unmount for h5memfs: it detaches and exits. */
		kill(ws->daemon, SIGTERM);
		r = proc_wait(ws->daemon, ws->daemon_fd, sigfd,
			      STOP_TIMEOUT_MS, &ws->daemon_status, &si);
		if (r != 0) {
			/* Too slow, or hurried by a signal: nothing to lose. */
			kill(ws->daemon, SIGKILL);
			r = proc_wait(ws->daemon, ws->daemon_fd, -1,
				      KILL_TIMEOUT_MS, &ws->daemon_status,
				      &si);
		}
		if (r != 0) {
			fprintf(stderr, SCRATCH_PROG ": h5memfs (pid %d) does "
				"not stop; the workspace is left at '%s'\n",
				(int)ws->daemon, ws->mnt);
			return -1;
		}
		ws->daemon = 0;
		ws->daemon_fd = -1;
		if (report && ws->daemon_status != 0) {
			ws_describe_exit(ws, what, sizeof(what));
			fprintf(stderr, SCRATCH_PROG ": h5memfs %s while "
				"unmounting '%s'\n", what, ws->mnt);
			ret = -1;
		}
	}
	detach(ws->mnt);
	if (rmdir(ws->mnt) < 0) {
		fprintf(stderr, SCRATCH_PROG ": cannot remove the mount point "
			"'%s': %s\n", ws->mnt, strerror(errno));
		ret = -1;
	}
	free(ws->mnt);
	ws->mnt = NULL;
	return ret;
}

int ws_unmount(struct ws *ws, int sigfd)
{
	return teardown(ws, sigfd, true);
}

int ws_mount(struct ws *ws, const struct ws_config *cfg, int sigfd,
	     struct signalfd_siginfo *si)
{
	struct daemon_setup setup = { .parent = getpid() };
	struct signalfd_siginfo dummy;
	char *base, *notify_opt = NULL, what[64];
	const char **argv = NULL;
	int notify[2] = { -1, -1 }, r = -1;
	struct stat st_base, st_mnt;

	ws->mnt = NULL;
	ws->daemon = 0;
	ws->daemon_fd = -1;
	ws->daemon_status = 0;
	base = pick_base(cfg->from);
	if (!base)
		return -1;
	if (asprintf(&ws->mnt, "%s/h5memfs-scratch.XXXXXX", base) < 0) {
		ws->mnt = NULL;
		goto oom;
	}
	if (!mkdtemp(ws->mnt)) {
		fprintf(stderr, SCRATCH_PROG ": cannot make a mount point in "
			"'%s': %s\n", base, strerror(errno));
		free(ws->mnt);
		ws->mnt = NULL;
		goto out;
	}
	if (pipe2(notify, O_CLOEXEC) < 0)
		goto fail_errno;
	setup.notify_w = notify[1];
	if (asprintf(&notify_opt, "notify_pipe=/proc/self/fd/%d",
		     notify[1]) < 0) {
		notify_opt = NULL;
		goto oom;
	}
	argv = daemon_argv(cfg, ws->mnt, notify_opt);
	if (!argv)
		goto oom;
	ws->daemon = proc_spawn(argv, daemon_setup, &setup, &ws->daemon_fd);
	if (ws->daemon < 0) {
		ws->daemon = 0;
		goto fail_errno;
	}
	close(notify[1]);
	notify[1] = -1;
	r = wait_ready(ws, notify[0], sigfd, si);
	if (r < 0) {
		/* It said "fail" or closed the pipe: let it finish exiting. */
		if (proc_wait(ws->daemon, ws->daemon_fd, -1, STOP_TIMEOUT_MS,
			      &ws->daemon_status, &dummy) == 0) {
			ws->daemon = 0;
			ws->daemon_fd = -1;
		}
		if (!ws->daemon) {
			ws_describe_exit(ws, what, sizeof(what));
			fprintf(stderr, SCRATCH_PROG ": the workspace could "
				"not be mounted (h5memfs %s)\n", what);
		} else {
			fprintf(stderr, SCRATCH_PROG ": the workspace could "
				"not be mounted: h5memfs failed to start\n");
		}
	} else if (r == 0 && (stat(base, &st_base) < 0 ||
			      stat(ws->mnt, &st_mnt) < 0 ||
			      st_base.st_dev == st_mnt.st_dev)) {
		fprintf(stderr, SCRATCH_PROG ": h5memfs reported ready, but "
			"nothing is mounted on '%s'\n", ws->mnt);
		r = -1;
	}
	if (r != 0)
		teardown(ws, -1, false);
	goto out;

fail_errno:
	fprintf(stderr, SCRATCH_PROG ": cannot start h5memfs: %s\n",
		strerror(errno));
	teardown(ws, -1, false);
	goto out;
oom:
	fprintf(stderr, SCRATCH_PROG ": out of memory\n");
	teardown(ws, -1, false);
out:
	if (notify[0] >= 0)
		close(notify[0]);
	if (notify[1] >= 0)
		close(notify[1]);
	free(notify_opt);
	free(argv);
	free(base);
	return r;
}
