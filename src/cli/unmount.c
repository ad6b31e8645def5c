/*
 * unmount.c - `h5memfs unmount [--lazy] [--timeout SECONDS] MNT...`:
 * detach the mount, follow the daemon's final write-back, wait for the
 * daemon to exit and exit with its status.
 *
 * fusermount3 -u and umount(2) return as soon as the mount is detached,
 * before the daemon has written anything back. Here the daemon's PID
 * comes from the mount's status and is held as a pidfd (no PID reuse
 * race); the outcome comes through an abstract AF_UNIX datagram socket
 * of ours whose name the daemon learns from the user.h5memfs.report
 * xattr (src/fuse/notify.h): progress lines, then "status N" just before
 * it exits. A daemon that dies without a word (killed) gives exit 1.
 */
#include "commands.h"

#include <errno.h>
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

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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
			double left = deadline - now();

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

static int unmount_one(const char *path, bool lazy, double timeout)
{
	struct outcome o = { .status = -1 };
	bool bar = isatty(STDERR_FILENO);
	char *mnt = mount_point_at(path), *json, v[32];
	int err = 0, pidfd, sock, r = 1;
	double deadline = timeout > 0 ? now() + timeout : 0;
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
	json = get_status(mnt, &err);
	if (!json) {
		if (err == ENOTCONN || err == ECONNABORTED) {
			if (detach(mnt, lazy) == 0)
				fprintf(stderr, "h5memfs: %s: the daemon was "
					"gone (%s); the dead mount is detached, "
					"and what the daemon had not written "
					"back is lost\n", mnt, strerror(err));
		} else {
			fprintf(stderr, "h5memfs: cannot read the status of "
				"%s: %s\n", mnt, strerror(err));
		}
		free(mnt);
		return 1;
	}
	pid = strtol(jget(json, "pid", v, sizeof(v)), NULL, 10);
	free(json);
	pidfd = pid > 0 ? (int)syscall(SYS_pidfd_open, (pid_t)pid, 0) : -1;
	if (pidfd < 0) {
		fprintf(stderr, "h5memfs: %s: cannot follow the daemon (PID "
			"%ld): %s\n", mnt, pid, strerror(errno));
		free(mnt);
		return 1;
	}
	sock = report_socket(mnt, false);
	if (detach(mnt, lazy) != 0)
		goto out;
	if (!wait_exit(pidfd, sock, deadline, &o, bar)) {
		if (bar)
			fprintf(stderr, "\n");
		fprintf(stderr, "h5memfs: %s is detached, but the daemon (PID "
			"%ld) was still writing back after %.0f s; it goes on "
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
"                           detached and the daemon writing back\n"
"                           (default 0: wait for ever)\n"
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
