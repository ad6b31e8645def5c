/*
 * main.c - h5memfs-scratch: run a command inside a throw-away, volatile
 * h5memfs workspace, then remove the workspace whatever became of the
 * command, and pass its exit status on.
 *
 * This file holds the options and the order of one run: mount, command,
 * keep, unmount. Mounting is in workspace.c, --keep in keep.c, children
 * and signals in proc.c. No FUSE code: the tool only runs h5memfs.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keep.h"
#include "proc.h"
#include "workspace.h"

#ifndef H5MEMFS_VERSION
#define H5MEMFS_VERSION "unknown"
#endif

struct args {
	const char *from;
	const char *keep;
	char **opts;
	size_t nopts;
	char **command;
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: " SCRATCH_PROG " [--from DIR] [--keep DIR] [-o OPTIONS] [--] COMMAND [ARG...]\n"
"\n"
"Run COMMAND in a private, volatile h5memfs workspace: its working\n"
"directory and $H5MEMFS_SCRATCH are the workspace, held in memory. The\n"
"workspace is unmounted and its mount point removed when COMMAND ends,\n"
"however it ends.\n"
"\n"
"    --from DIR     load the workspace from DIR; DIR is never written to\n"
"    --keep DIR     when COMMAND exits, copy the workspace to DIR, which\n"
"                   must be new, empty, or the --from directory (then\n"
"                   replaced)\n"
"    -o OPTIONS     more h5memfs mount options (see h5memfs --help)\n"
"    -h, --help     this text\n"
"    -V, --version  the version\n"
"\n"
"Exit status: COMMAND's, or 128+N when a signal N ended it; 125 when\n"
"h5memfs-scratch itself failed, 126 when COMMAND cannot be run, 127 when\n"
"it is not found.\n"
"Environment: H5MEMFS names the h5memfs daemon; TMPDIR where the mount\n"
"point is made (default /tmp).\n");
}

static int parse_args(struct args *a, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "from", required_argument, NULL, 'F' },
		{ "keep", required_argument, NULL, 'K' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(a, 0, sizeof(*a));
	a->opts = calloc((size_t)argc, sizeof(*a->opts));
	if (!a->opts) {
		fprintf(stderr, SCRATCH_PROG ": out of memory\n");
		return -1;
	}
	/* "+": COMMAND's own options are not ours. */
	while ((c = getopt_long(argc, argv, "+o:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'F':
			a->from = optarg;
			break;
		case 'K':
			a->keep = optarg;
			break;
		case 'o':
			a->opts[a->nopts++] = optarg;
			break;
		case 'h':
			usage(stdout);
			return 1;
		case 'V':
			printf(SCRATCH_PROG " version %s\n", H5MEMFS_VERSION);
			return 1;
		default:
			fprintf(stderr, "Try '" SCRATCH_PROG " --help'.\n");
			return -1;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, SCRATCH_PROG ": missing COMMAND (usage: "
			SCRATCH_PROG " [--from DIR] [--keep DIR] [-o OPTIONS] "
			"-- COMMAND [ARG...])\n");
		return -1;
	}
	a->command = argv + optind;
	return 0;
}

/* A malloc'ed path of dir/name if that is an executable file. */
static char *executable_in(const char *dir, size_t dirlen, const char *name)
{
	struct stat st;
	char *p;

	if (asprintf(&p, "%.*s/%s", (int)dirlen, dir, name) < 0)
		return NULL;
	if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0)
		return p;
	free(p);
	return NULL;
}

/*
 * The daemon: $H5MEMFS, else h5memfs beside this program (an installed
 * pair, or a build tree), else in the bindir it was built for, else in
 * PATH. Returns a malloc'ed path, or NULL after a message.
 */
static char *find_daemon(void)
{
	const char *env = getenv("H5MEMFS"), *path, *end;
	char self[PATH_MAX], *slash, *p;
	ssize_t n;

	if (env && *env) {
		if (access(env, X_OK) == 0)
			return strdup(env);
		fprintf(stderr, SCRATCH_PROG ": H5MEMFS='%s' cannot be run: "
			"%s\n", env, strerror(errno));
		return NULL;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash && (p = executable_in(self, (size_t)(slash - self),
						"h5memfs")))
			return p;
	}
#ifdef H5MEMFS_BINDIR
	p = executable_in(H5MEMFS_BINDIR, strlen(H5MEMFS_BINDIR), "h5memfs");
	if (p)
		return p;
#endif
	for (path = getenv("PATH"); path && *path; path = end + !!*end) {
		end = strchrnul(path, ':');
		if (end > path && (p = executable_in(path, (size_t)(end - path),
						     "h5memfs")))
			return p;
	}
	fprintf(stderr, SCRATCH_PROG ": cannot find the h5memfs daemon (not "
		"beside " SCRATCH_PROG ", not in PATH); set H5MEMFS to its "
		"path\n");
	return NULL;
}

/* The canonical --from directory, or NULL after a message. */
static char *check_from(const char *from)
{
	struct stat st;
	char *real;

	if (stat(from, &st) < 0) {
		fprintf(stderr, SCRATCH_PROG ": --from '%s' cannot be used: "
			"%s\n", from, strerror(errno));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, SCRATCH_PROG ": --from '%s' is not a "
			"directory\n", from);
		return NULL;
	}
	if (access(from, R_OK | X_OK) < 0 || !(real = realpath(from, NULL))) {
		fprintf(stderr, SCRATCH_PROG ": --from '%s' cannot be read: "
			"%s\n", from, strerror(errno));
		return NULL;
	}
	return real;
}

/* Runs in COMMAND's child process, before exec. */
static void command_setup(void *arg)
{
	const char *mnt = arg;

	if (chdir(mnt) < 0 || setenv("H5MEMFS_SCRATCH", mnt, 1) < 0 ||
	    setenv("PWD", mnt, 1) < 0) {
		fprintf(stderr, SCRATCH_PROG ": cannot enter the workspace "
			"'%s': %s\n", mnt, strerror(errno));
		_exit(EXIT_TOOL);
	}
}

/*
 * Wait for COMMAND, passing signals on and noticing a daemon that ends
 * early. Returns COMMAND's wait status; *sig is the last signal the tool
 * received (0: none), *lost whether the workspace went away meanwhile.
 */
static int wait_command(pid_t pid, int pidfd, struct ws *ws, int sigfd,
			int *sig, bool *lost)
{
	struct pollfd p[3] = {
		{ .fd = pidfd, .events = POLLIN },
		{ .fd = sigfd, .events = POLLIN },
		{ .fd = ws->daemon_fd, .events = POLLIN },
	};
	struct signalfd_siginfo si;
	char what[64];
	int st;

	for (;;) {
		if (poll(p, 3, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents && proc_read_signal(sigfd, &si)) {
			*sig = (int)si.ssi_signo;
			if (proc_should_forward(&si, pid))
				kill(pid, (int)si.ssi_signo);
		}
		if (p[2].revents && !ws_daemon_alive(ws)) {
			p[2].fd = -1;
			*lost = true;
			ws_describe_exit(ws, what, sizeof(what));
			fprintf(stderr, SCRATCH_PROG ": h5memfs %s while the "
				"command ran; the workspace is lost\n", what);
		}
		if (p[0].revents)
			break;
	}
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR) {
			st = EXIT_TOOL << 8;
			break;
		}
	}
	close(pidfd);
	return st;
}

int main(int argc, char **argv)
{
	struct signalfd_siginfo si;
	struct ws_config cfg = { 0 };
	struct keep keep = { 0 };
	struct ws ws = { .daemon_fd = -1 };
	struct args a;
	char *from = NULL, *daemon = NULL;
	int code = EXIT_TOOL, sigfd = -1, sig = 0, st, pidfd, r;
	bool failed = false, lost = false;
	pid_t pid;

	r = parse_args(&a, argc, argv);
	if (r != 0) {
		code = r > 0 ? 0 : EXIT_TOOL;
		goto out;
	}
	if (a.from && !(from = check_from(a.from)))
		goto out;
	if (a.keep && keep_prepare(&keep, a.keep, from) < 0)
		goto out;
	daemon = find_daemon();
	if (!daemon)
		goto out;
	sigfd = proc_signals_init();
	if (sigfd < 0) {
		fprintf(stderr, SCRATCH_PROG ": cannot set up signals: %s\n",
			strerror(-sigfd));
		goto out;
	}
	cfg.daemon = daemon;
	cfg.from = from;
	cfg.opts = a.opts;
	cfg.nopts = a.nopts;
	r = ws_mount(&ws, &cfg, sigfd, &si);
	if (r != 0) {
		code = r > 0 ? 128 + (int)si.ssi_signo : EXIT_TOOL;
		goto out;
	}

	pid = proc_spawn((const char *const *)a.command, command_setup, ws.mnt,
			 &pidfd);
	if (pid < 0) {
		fprintf(stderr, SCRATCH_PROG ": cannot start '%s': %s\n",
			a.command[0], strerror(errno));
		ws_unmount(&ws, sigfd);
		goto out;
	}
	st = wait_command(pid, pidfd, &ws, sigfd, &sig, &lost);
	code = proc_exit_code(st);
	failed = lost;

	/* Nothing is kept from a command a signal ended, or interrupted. */
	if (a.keep && !lost && !sig && WIFEXITED(st)) {
		r = keep_copy(&keep, ws.mnt, sigfd, &si);
		if (r > 0 && code == 0)
			code = 128 + (int)si.ssi_signo;
		failed |= r != 0;
	} else if (a.keep && !lost) {
		fprintf(stderr, SCRATCH_PROG ": the command was interrupted; "
			"nothing was kept in '%s'\n", keep.path);
		/* A run that kept nothing must not look like a success. */
		if (code == 0)
			code = 128 + sig;
	}
	if (ws_unmount(&ws, sigfd) < 0)
		failed = true;
	if (failed && code == 0)
		code = EXIT_TOOL;
out:
	if (sigfd >= 0)
		close(sigfd);
	keep_destroy(&keep);
	free(daemon);
	free(from);
	free(a.opts);
	return code;
}
