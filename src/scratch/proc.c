/*
 * proc.c - child processes and signals for h5memfs-scratch: a signalfd for
 * the signals the tool forwards, pidfds for its children, one poll() loop
 * to wait on both. See proc.h for the contracts.
 */
#include "proc.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static sigset_t orig_mask;	/* the mask the tool was started with */

int proc_signals_init(void)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	struct sigaction sa;
	sigset_t set;
	size_t i;
	int fd;

	/* An inherited "ignore SIGCHLD" would make children reap themselves. */
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&set);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		if (sigaction(sigs[i], NULL, &sa) == 0 &&
		    sa.sa_handler == SIG_IGN)
			continue; /* nohup and friends: keep it ignored */
		sigaddset(&set, sigs[i]);
	}
	if (sigprocmask(SIG_BLOCK, &set, &orig_mask) < 0)
		return -errno;
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int proc_read_signal(int sigfd, struct signalfd_siginfo *si)
{
	ssize_t n;

	do {
		n = read(sigfd, si, sizeof(*si));
	} while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(*si);
}

bool proc_should_forward(const struct signalfd_siginfo *si, pid_t pid)
{
	/*
	 * Ctrl-C, Ctrl-\ and a terminal hang-up come from the kernel and go to
	 * the whole foreground process group: if the child is in ours, it has
	 * its own copy, and a second one could make it give up its own
	 * clean-up (sudo reasons the same way).
	 */
	if (si->ssi_code == SI_KERNEL && getpgid(pid) == getpgrp())
		return false;
	return true;
}

static int pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

pid_t proc_spawn(const char *const argv[], void (*setup)(void *), void *arg,
		 int *pidfd)
{
	pid_t pid;
	int fd, saved;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (setup)
			setup(arg);
		sigprocmask(SIG_SETMASK, &orig_mask, NULL);
		/* execvp() does not write to argv; its prototype predates const */
		execvp(argv[0], (char *const *)argv);
		saved = errno;
		fprintf(stderr, SCRATCH_PROG ": cannot run '%s': %s\n", argv[0],
			strerror(saved));
		_exit(saved == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_RUN);
	}
	fd = pidfd_open(pid);
	if (fd < 0) {
		saved = errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		errno = saved;
		return -1;
	}
	*pidfd = fd;
	return pid;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

int proc_wait(pid_t pid, int pidfd, int sigfd, int timeout_ms, int *status,
	      struct signalfd_siginfo *si)
{
	long long deadline = now_ms() + timeout_ms;
	struct pollfd p[2] = {
		{ .fd = pidfd, .events = POLLIN },
		{ .fd = sigfd, .events = POLLIN },	/* ignored when < 0 */
	};
	int left = timeout_ms, r;

	for (;;) {
		r = poll(p, 2, left);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r > 0 && p[0].revents) {
			while (waitpid(pid, status, 0) < 0) {
				if (errno != EINTR)
					return -errno;
			}
			close(pidfd);
			return 0;
		}
		if (r > 0 && p[1].revents && proc_read_signal(sigfd, si))
			return 1;
		if (timeout_ms >= 0) {
			left = (int)(deadline - now_ms());
			if (left <= 0)
				return -ETIMEDOUT;
		}
	}
}

int proc_exit_code(int status)
{
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
