/*
 * commands.c - the command words, their help, and sync, discard and
 * evict (status: status.c).
 *
 * Each command talks to the daemon through xattrs of the mounted files:
 * no socket, no daemon-side permission code, the kernel checks access.
 */
#include "commands.h"

#include "common.h"
#include "mounts.h"

#include <errno.h>
#include <poll.h>
#include <sys/wait.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>


static const char *const words[] = { "status", "sync", "discard", "evict",
				     "unmount", NULL };

bool cmd_is_command(int argc, char **argv)
{
	if (argc < 2)
		return false;
	for (const char *const *w = words; *w; w++)
		if (!strcmp(argv[1], *w))
			return true;
	return false;
}

bool cmd_is_unknown(int argc, char **argv)
{
	const char *a = argc >= 2 ? argv[1] : NULL;
	struct stat st;

	if (!a || !a[0] || a[0] == '-' || strchr(a, '/') ||
	    lstat(a, &st) == 0 || errno != ENOENT)
		return false;
	fprintf(stderr, "h5memfs: unknown command '%s' (the commands are "
		"status, sync, discard, evict and unmount; to mount, SOURCE "
		"must be an existing directory; see h5memfs --help)\n", a);
	return true;
}

/* Why setxattr `verb` failed on path, in the user's terms. */
static const char *why(const char *verb, const char *path, int err)
{
	static char state[32];
	char *json;
	int e2;

	switch (err) {
	case EACCES:
	case EPERM:
		return "permission denied (only a user who may write a file "
		       "may change its state)";
	case ENOTCONN:
	case ECONNABORTED:
		return "the daemon is gone (a dead mount: h5memfs unmount "
		       "detaches it)";
	case ETIMEDOUT:
		return "the writes the kernel still caches did not reach the "
		       "daemon in time";
	case ENOSPC:
		if (!strcmp(verb, "discard"))
			return "no space in max_memory for SOURCE's version "
			       "(the file keeps its changes)";
		return "SOURCE is full (the changes stay in memory; a later "
		       "sync retries)";
	case EROFS:
		return "SOURCE is read-only (the changes stay in memory; a "
		       "later sync retries)";
	case EDQUOT:
		return "over the disk quota in SOURCE (the changes stay in "
		       "memory)";
	case EIO:
		if (!strcmp(verb, "sync"))
			return "input/output error writing to SOURCE, or an "
			       "HDF5 image that libhdf5 refuses (validate=); "
			       "the changes stay in memory; h5memfs status "
			       "--hdf5 and the log say why";
		break;
	case EISDIR:
		return "it is a directory (give files)";
	case ENODATA:
		if (!strcmp(verb, "discard"))
			return "it has no version in SOURCE to go back to (a "
			       "file made in the mount)";
		break;
	case EBUSY:
		if (!strcmp(verb, "discard"))
			return "it is open and its size differs from "
			       "SOURCE's version; close it first";
		json = get_status(path, &e2);
		jget(json ? json : "", "state", state, sizeof(state));
		free(json);
		if (!strcmp(state, "dirty") || !strcmp(state, "invalid HDF5") ||
		    !strcmp(state, "conflict"))
			return "it has unsaved changes; sync or discard it "
			       "first";
		return "it is open, or it was never written to SOURCE "
		       "(sync it first)";
	}
	return strerror(err);
}

static uint64_t dirty_of(const char *path)
{
	char v[32], *json;
	int err;
	uint64_t d;

	json = get_status(path, &err);
	if (!json)
		return 0;
	d = strtoull(jget(json, "dirty_bytes", v, sizeof(v)), NULL, 10);
	free(json);
	return d;
}

/* Whether path is the root of an h5memfs mount. */
static bool is_mount_root(const char *path)
{
	char *mnt = mount_point_at(path);
	bool yes = mnt != NULL;

	free(mnt);
	return yes;
}

/*
 * Sync a whole mount from a child process while this one draws the
 * progress the daemon reports (files, bytes, rate). 0 or an errno.
 */
static int sync_root_live(const char *mnt)
{
	struct outcome o = { .status = -1 };
	int sock = report_socket(mnt, true), st = 0, err = 0;
	pid_t pid = fork();

	if (pid == 0)
		_exit(setxattr(mnt, X_SYNC, "1", 1, 0) < 0 ? errno : 0);
	if (pid < 0) {
		err = errno;
		goto out;
	}
	for (;;) {
		struct pollfd p = { sock, POLLIN, 0 }; /* -1: just waits */
		pid_t r;

		poll(&p, 1, 200);
		read_reports(sock, &o, true);
		r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			err = errno;
			goto out;
		}
	}
	read_reports(sock, &o, true);
	err = WIFEXITED(st) ? WEXITSTATUS(st) : EINTR;
out:
	if (sock >= 0)
		close(sock);
	return err;
}

/* setxattr `xattr` on each path, one line per path. */
static int act(const char *verb, const char *done_msg, const char *xattr,
	       char **paths, int n, bool bar)
{
	uint64_t total = 0, done = 0, *sizes = calloc((size_t)n, 8);
	struct timespec ts;
	double t0;
	int failed = 0;
	bool live;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	for (int i = 0; bar && sizes && i < n; i++)
		total += sizes[i] = dirty_of(paths[i]);
	for (int i = 0; i < n; i++) {
		char *mnt = require_mount(paths[i]);

		if (!mnt) {
			failed++;
			continue;
		}
		free(mnt);
		live = bar && !strcmp(xattr, X_SYNC) && is_mount_root(paths[i]);
		errno = live ? sync_root_live(paths[i]) /* draws its own bar */
			     : setxattr(paths[i], xattr, "1", 1, 0) < 0 ? errno
								     : 0;
		if (errno) {
			int err = errno;

			if (bar)
				fprintf(stderr, "\n");
			fprintf(stderr, "h5memfs: cannot %s %s: %s\n", verb,
				paths[i], why(verb, paths[i], err));
			failed++;
			continue;
		}
		done += sizes ? sizes[i] : 0;
		if (!bar) {
			printf("%s: %s\n", paths[i], done_msg);
		} else if (!live) {
			progress(done, total, t0);
			fprintf(stderr, "%d/%d paths ", i + 1, n);
		}
	}
	if (bar)
		fprintf(stderr, "\n");
	free(sizes);
	return failed ? 1 : 0;
}

int cmd_main(int argc, char **argv)
{
	const char *cmd = argv[1];
	int first = 2;

	for (int i = 2; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			if (!strcmp(cmd, "unmount"))
				break; /* its own parser prints it */
			cmd_help(cmd, stdout);
			return 0;
		}
	if (!strcmp(cmd, "status"))
		return cmd_status(argc, argv);
	if (!strcmp(cmd, "unmount"))
		return cmd_unmount(argc, argv);
	if (argc > 2 && !strcmp(argv[2], "--"))
		first = 3;
	else if (argc > 2 && argv[2][0] == '-' && argv[2][1]) {
		fprintf(stderr, "h5memfs %s: unknown option '%s' (see h5memfs "
			"%s --help)\n", cmd, argv[2], cmd);
		return 1;
	}
	if (argc <= first) {
		cmd_help(cmd, stderr);
		return 1;
	}
	if (!strcmp(cmd, "sync")) {
		/* "MOUNTPOINT PATH...": the mount point only names the mount */
		if (argc - first >= 2 && is_mount_root(argv[first]))
			first++;
		return act("sync", "written back", X_SYNC, argv + first,
			   argc - first, isatty(STDERR_FILENO));
	}
	if (!strcmp(cmd, "discard"))
		return act("discard", "changes dropped", X_DISCARD,
			   argv + first, argc - first, false);
	return act("evict", "dropped from memory", X_EVICT, argv + first,
		   argc - first, false);
}
