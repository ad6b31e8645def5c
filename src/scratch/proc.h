/*
 * proc.h - child processes and signals for h5memfs-scratch.
 *
 * The tool takes SIGTERM, SIGINT and SIGHUP through a signalfd (blocked,
 * read when it suits the tool) and follows its children through pidfds,
 * so one poll() waits for "a child ended" and "a signal came" at once.
 * This is not a general process library: it knows only what the tool
 * needs, and nothing here touches the filesystem.
 */
#ifndef H5M_SCRATCH_PROC_H
#define H5M_SCRATCH_PROC_H

#include <stdbool.h>
#include <sys/signalfd.h>
#include <sys/types.h>

/* The tool's name in every message. */
#define SCRATCH_PROG "h5memfs-scratch"

/* Exit statuses of the tool's own failures (as env(1) and timeout(1)). */
enum {
	EXIT_TOOL = 125,	/* the tool failed; COMMAND did not run or ran */
	EXIT_CANNOT_RUN = 126,	/* COMMAND exists but cannot be executed */
	EXIT_NOT_FOUND = 127,	/* COMMAND not found */
};

/*
 * Block SIGTERM, SIGINT and SIGHUP (those not ignored when the tool was
 * started: an inherited SIG_IGN, as nohup sets, stays ignored for the tool
 * and its children) and return a non-blocking signalfd for them, or
 * -errno. Call once, before any child is started.
 */
int proc_signals_init(void);

/*
 * Read one pending signal from sigfd into *si. Returns 1 if one was read,
 * 0 if none was pending.
 */
int proc_read_signal(int sigfd, struct signalfd_siginfo *si);

/*
 * Whether a signal the tool received must be passed on to the child pid:
 * not when the terminal sent it to the whole foreground process group,
 * which the child is part of (it got its own copy already).
 */
bool proc_should_forward(const struct signalfd_siginfo *si, pid_t pid);

/*
 * Start argv[0] (looked up in PATH when it has no '/') as a child with the
 * signal mask the tool was started with. In the child, setup(arg) runs
 * first when given; it may _exit(). If the exec fails the child prints why
 * and exits 127 (not found) or 126 (any other reason).
 *
 * Returns the child's pid and stores a pidfd (close-on-exec) for it in
 * *pidfd; returns -1 with errno set and starts nothing on failure.
 */
pid_t proc_spawn(const char *const argv[], void (*setup)(void *), void *arg,
		 int *pidfd);

/*
 * Wait for the child (pid, pidfd) to exit, for at most timeout_ms (-1:
 * no limit), also watching sigfd when it is >= 0.
 *
 * Returns 0 once the child has exited: it is reaped, its wait status is in
 * *status and pidfd is closed. Returns 1 if a signal arrived first (stored
 * in *si; the child still runs), -ETIMEDOUT when the time ran out.
 */
int proc_wait(pid_t pid, int pidfd, int sigfd, int timeout_ms, int *status,
	      struct signalfd_siginfo *si);

/* A wait status as a shell reports it: the exit code, or 128 + signal. */
int proc_exit_code(int status);

#endif
