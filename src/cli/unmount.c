/*
 * unmount.c - `h5memfs unmount [--lazy] [--timeout SECONDS] MNT...`:
 * detach the mount, follow the daemon's final write-back, wait for the
 * daemon to exit and exit with its status.
 *
 * fusermount3 -u and umount(2) return as soon as the mount is detached,
 * before the daemon has written anything back. Here the daemon's PID
 * comes from the root's user.h5memfs.pid and is held as a pidfd (no PID
 * reuse race); the outcome comes through an abstract AF_UNIX datagram socket
 * of ours whose name the daemon learns from the user.h5memfs.report
 * xattr (src/fuse/notify.h): progress lines, then "status N" just before
 * it exits. A daemon that dies without a word (killed) gives exit 1. The
 * PID and the registration are asked by a child process, so that
 * --timeout holds even when the daemon answers nothing (stopped, hung).
 */
#include "commands.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "mounts.h"

/* Detach: umount2 as root, else fusermount3. 0, or 1 after saying why. */
static int detach(const char *mnt, bool lazy)
{
	int st;
	pid_t pid;

	if (geteuid() == 0) {
		if (umount2(mnt, lazy ? MNT_DETACH : 0) == 0)
			return 0;
		if (errno == EBUSY)
			fprintf(stderr, "h5memfs: cannot unmount %s: it is busy "
				"(a process has a file or its working directory "
				"there; see fuser -vm); close them, or give "
				"--lazy\n", mnt);
		else
			fprintf(stderr, "h5memfs: cannot unmount %s: %s\n", mnt,
				strerror(errno));
		return 1;
	}
	pid = fork();
	if (pid == 0) {
		if (lazy)
			execlp("fusermount3", "fusermount3", "-u", "-z", "--",
			       mnt, (char *)NULL);
		else
			execlp("fusermount3", "fusermount3", "-u", "--", mnt,
			       (char *)NULL);
		fprintf(stderr, "h5memfs: cannot run fusermount3: %s\n",
			strerror(errno));
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) ||
	    WEXITSTATUS(st)) {
		/* fusermount3 said why */
		if (!lazy)
			fprintf(stderr, "h5memfs: %s was not unmounted (give "
				"--lazy if it is busy)\n", mnt);
		return 1;
	}
	return 0;
}

/* Wait for the daemon (pidfd) until `deadline` (0: for ever). */
static bool wait_exit(int pidfd, int sock, double deadline,
		      struct outcome *o, bool bar)
{
	struct pollfd p[2] = { { pidfd, POLLIN, 0 }, { sock, POLLIN, 0 } };

	for (;;) {
		int ms = -1;

		if (deadline > 0) {
			double left = deadline - mono_now();

			if (left <= 0)
				return false;
			ms = (int)(left * 1000) + 1;
		}
		if (poll(p, sock >= 0 ? 2 : 1, ms) < 0 && errno != EINTR)
			return false;
		read_reports(sock, o, bar);
		if (p[0].revents)
			return true;
	}
}

/*
 * What the daemon must answer before the unmount: its PID (the root's
 * user.h5memfs.pid) and our report socket's registration. With a deadline
 * the questions are asked by a child process, killed when the daemon
 * does not answer in time (a stopped or hung daemon): a request to FUSE
 * is only given up on for a fatal signal. Returns the PID, or -1 with
 * *err set (ETIMEDOUT: no answer in time); *sock: the socket or -1.
 */
static long ask_daemon(const char *mnt, double deadline, int *sock,
		       int *err)
{
	char name[108], v[32], buf[64] = "";
	struct pollfd p;
	size_t len = 0;
	long pid = -1;
	int fds[2], st, ms;
	pid_t child;

	*sock = report_bind(name, &len);
	if (pipe2(fds, O_CLOEXEC) < 0 || (child = fork()) < 0) {
		*err = errno;
		return -1;
	}
	if (child == 0) {
		/* the PID alone: no status document, no drain before it */
		ssize_t n = getxattr(mnt, X_PID, v, sizeof(v) - 1);
		int gerr = n < 0 ? errno : n == 0 ? EIO : 0, rerr = 0;

		v[n > 0 ? n : 0] = '\0';
		if (!gerr && (*sock < 0 ||
			      setxattr(mnt, X_REPORT, name, len, 0) < 0))
			rerr = *sock < 0 ? EINVAL : errno;
		snprintf(buf, sizeof(buf), "%s %d %d", gerr ? "-1" : v, gerr,
			 rerr);
		(void)!write(fds[1], buf, strlen(buf));
		_exit(0);
	}
	close(fds[1]);
	p = (struct pollfd){ fds[0], POLLIN, 0 };
	ms = deadline > 0 ? (int)((deadline - mono_now()) * 1000) + 1 : -1;
	if (poll(&p, 1, deadline > 0 && ms < 0 ? 0 : ms) <= 0) {
		kill(child, SIGKILL); /* fatal: its FUSE request gives up */
		*err = ETIMEDOUT;
	} else {
		int rerr = 0;
		ssize_t n = read(fds[0], buf, sizeof(buf) - 1);

		buf[n > 0 ? n : 0] = '\0';
		*err = EIO;
		if (sscanf(buf, "%ld %d %d", &pid, err, &rerr) == 3 && rerr)
			fprintf(stderr, "h5memfs: %s: cannot ask the daemon for "
				"its outcome: %s\n", mnt, strerror(rerr));
		if (rerr && *sock >= 0) {
			close(*sock);
			*sock = -1;
		}
	}
	close(fds[0]);
	/*
	 * Not a blocking wait after the kill: a request the daemon already
	 * took keeps the child until answered; it ends (or is reaped by
	 * init) without us.
	 */
	waitpid(child, &st, *err == ETIMEDOUT ? WNOHANG : 0);
	return pid > 0 ? pid : -1;
}

static int unmount_one(const char *path, bool lazy, double timeout)
{
	struct outcome o = { .status = -1 };
	bool bar = isatty(STDERR_FILENO);
	char *mnt = mount_point_at(path);
	int err = 0, pidfd, sock = -1, r = 1;
	double deadline = timeout > 0 ? mono_now() + timeout : 0;
	long pid;

	if (!mnt) {
		char *in = mount_of(path);

		if (in)
			fprintf(stderr, "h5memfs: %s is not a mount point; it "
				"is inside the h5memfs mount %s\n", path, in);
		else
			fprintf(stderr, "h5memfs: %s is not an h5memfs mount "
				"point\n", path);
		free(in);
		return 1;
	}
	pid = ask_daemon(mnt, deadline, &sock, &err);
	if (pid < 0) {
		if (err == ENOTCONN || err == ECONNABORTED) {
			if (detach(mnt, lazy) == 0)
				fprintf(stderr, "h5memfs: %s: the daemon was "
					"gone (%s); the dead mount is detached, "
					"and what the daemon had not written "
					"back is lost\n", mnt, strerror(err));
		} else if (err == ETIMEDOUT) {
			fprintf(stderr, "h5memfs: %s: the daemon did not answer "
				"within %g s (stopped or hung?); nothing "
				"was done\n", mnt, timeout);
		} else {
			fprintf(stderr, "h5memfs: cannot ask the daemon of "
				"%s for its PID: %s\n", mnt, strerror(err));
		}
		if (sock >= 0)
			close(sock);
		free(mnt);
		return 1;
	}
	pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (pidfd < 0) {
		fprintf(stderr, "h5memfs: %s: cannot follow the daemon (PID "
			"%ld): %s\n", mnt, pid, strerror(errno));
		if (sock >= 0)
			close(sock);
		free(mnt);
		return 1;
	}
	if (detach(mnt, lazy) != 0)
		goto out;
	if (!wait_exit(pidfd, sock, deadline, &o, bar)) {
		if (bar)
			fprintf(stderr, "\n");
		fprintf(stderr, "h5memfs: %s is detached, but the daemon (PID "
			"%ld) was still writing back after %g s; it goes on "
			"and exits when done\n", mnt, pid, timeout);
		goto out;
	}
	read_reports(sock, &o, bar);
	if (bar && o.t0 != 0)
		fprintf(stderr, "\n");
	if (o.status < 0) {
		fprintf(stderr, "h5memfs: %s: the daemon (PID %ld) exited "
			"without reporting an outcome (killed?): what it had "
			"not written back may be lost\n", mnt, pid);
		goto out;
	}
	r = o.status;
	if (r == 2 && o.rescue[0])
		fprintf(stderr, "h5memfs: %s: some files could not be written "
			"back to SOURCE; they were saved under %s\n", mnt,
			o.rescue);
	else if (r == 2)
		fprintf(stderr, "h5memfs: %s: some files could not be written "
			"back to SOURCE nor rescued (see the daemon's log)\n",
			mnt);
	else if (r != 0)
		fprintf(stderr, "h5memfs: %s: the daemon exited with status "
			"%d\n", mnt, r);
out:
	if (sock >= 0)
		close(sock);
	close(pidfd);
	free(mnt);
	return r;
}

static void unmount_help(FILE *f)
{
	fprintf(f,
"usage: h5memfs unmount [--lazy] [--timeout SECONDS] MOUNTPOINT...\n"
"\n"
"Unmount each h5memfs MOUNTPOINT, wait for its daemon to write every\n"
"change back to SOURCE and exit, and exit with the outcome: 0 when\n"
"everything is durable in SOURCE, 2 when some files could not be written\n"
"back (the message says where they were saved), 1 for other errors.\n"
"With several mount points, the highest of their statuses.\n"
"A progress line shows on a terminal (stderr), nothing on a pipe.\n"
"\n"
"    -l, --lazy             detach even a busy mount; the daemon writes\n"
"                           back and exits once the last process using\n"
"                           the mount lets go, and this command waits\n"
"                           for that too\n"
"    -t, --timeout SECONDS  wait at most SECONDS per mount point for the\n"
"                           daemon; then exit 1, leaving the mount\n"
"                           detached and the daemon writing back (or,\n"
"                           if it did not answer at all, both as they\n"
"                           were); never kills it (default 0: for ever)\n"
"    -h, --help             this text\n");
}

int cmd_unmount(int argc, char **argv)
{
	bool lazy = false;
	double timeout = 0;
	int worst = 0, n = 0;

	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *val = NULL;
		char *end;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			unmount_help(stdout);
			return 0;
		} else if (!strcmp(a, "-l") || !strcmp(a, "--lazy")) {
			lazy = true;
		} else if (!strcmp(a, "-t") || !strcmp(a, "--timeout")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "h5memfs unmount: %s needs a "
					"number of seconds\n", a);
				return 1;
			}
			val = argv[++i];
		} else if (!strncmp(a, "--timeout=", 10)) {
			val = a + 10;
		} else if (!strcmp(a, "--")) {
			n += argc - i - 1;
			break;
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "h5memfs unmount: unknown option '%s' "
				"(see h5memfs unmount --help)\n", a);
			return 1;
		} else {
			n++;
		}
		if (val) {
			errno = 0;
			timeout = strtod(val, &end);
			if (errno || *end || end == val || timeout < 0) {
				fprintf(stderr, "h5memfs unmount: invalid "
					"timeout '%s': expected a number of "
					"seconds\n", val);
				return 1;
			}
		}
	}
	if (!n) {
		unmount_help(stderr);
		return 1;
	}
	for (int i = 2, rest = 0; i < argc; i++) {
		const char *a = argv[i];
		int r;

		if (!rest && !strcmp(a, "--")) {
			rest = 1;
			continue;
		}
		if (!rest && (!strcmp(a, "-t") || !strcmp(a, "--timeout"))) {
			i++;
			continue;
		}
		if (!rest && a[0] == '-' && a[1])
			continue;
		r = unmount_one(a, lazy, timeout);
		if (r > worst)
			worst = r;
	}
	return worst;
}
