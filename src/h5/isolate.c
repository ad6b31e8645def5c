/*
 * isolate.c - libhdf5 never parses an untrusted file inside the daemon.
 *
 * Anyone may craft the files a mount serves, and libhdf5 is not written
 * to survive hostile input: a crafted file can crash it, make it loop or
 * allocate without bound. Inside the daemon that would take every
 * user's unsaved data down with it. So h5_inspect runs in a forked child
 * that gets the image's descriptor, with an address-space limit, a CPU
 * limit and a wall-clock deadline; the report comes back over a pipe. A
 * child that dies, runs out of time or of memory gives "not valid" with
 * the reason. The child is forked with the libhdf5 lock held (h5check.c
 * serialises every libhdf5 call under it), so no other thread is inside
 * libhdf5 when its memory is copied; glibc keeps malloc usable across
 * fork. The child drops root (uid and gid 65534, no supplementary groups,
 * no new privileges) before libhdf5 sees a byte. Not the place that
 * decides what a verdict means (src/fs/sync.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "h5internal.h"

/* The overflow uid and gid: owns nothing. */
#define NOBODY ((uid_t)65534)

/* Room for libhdf5 beyond the image itself (metadata and chunk caches). */
#define H5_MEMORY_MARGIN (UINT64_C(512) << 20)

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The process's address space in bytes (0 when /proc cannot say). */
static uint64_t vm_bytes(void)
{
	char buf[64];
	unsigned long long pages = 0;
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (sscanf(buf, "%llu", &pages) != 1)
		return 0;
	return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* close_range(2) of [first, last], if not empty. 0 or -1. */
static int close_span(unsigned first, unsigned last)
{
	if (first > last)
		return 0;
	return (int)syscall(SYS_close_range, first, last, 0);
}

/* Close every descriptor but 0-2, `a` and `b` (both 3 or more). */
static void close_others(int a, int b)
{
	unsigned lo = (unsigned)(a < b ? a : b), hi = (unsigned)(a < b ? b : a);
	long max = sysconf(_SC_OPEN_MAX);

	if (close_span(3, lo - 1) < 0 || close_span(lo + 1, hi - 1) < 0 ||
	    close_span(hi + 1, ~0U) < 0) {
		/* before Linux 5.9: one by one, bounded */
		for (long i = 3; i < (max > 0 && max < 65536 ? max : 65536);
		     i++)
			if (i != a && i != b)
				close((int)i);
	}
}

/* The child: inspect, send the report, end. Never returns. */
static void child(int fd, uint64_t size, int wp, const struct h5_limits *lim)
{
	/* measured here: what the parent's other threads mapped meanwhile */
	uint64_t vm = vm_bytes();
	struct rlimit cpu = { lim->cpu_seconds, lim->cpu_seconds + 1 };
	struct h5_report r;
	int err;

	/* the image and the pipe only: never /dev/fuse, never SOURCE */
	close_others(fd, wp);
	/*
	 * Nothing left to be root for: the descriptors are open. A child
	 * taken over by a crafted file is then a nobody with two pipes.
	 */
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (geteuid() == 0 &&
	    (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
	     setresuid(NOBODY, NOBODY, NOBODY) < 0)) {
		kill(getpid(), SIGKILL); /* never parse as root */
		_exit(1);
	}
	setrlimit(RLIMIT_CPU, &cpu);
	if (vm && lim->memory) {
		struct rlimit as;

		as.rlim_cur = as.rlim_max = vm + size + lim->memory;
		setrlimit(RLIMIT_AS, &as);
	}
	err = h5_inspect_held(fd, size, &r);
	if (err) {
		memset(&r, 0, sizeof(r));
		r.is_hdf5 = true;
		r.sb_version = -1;
		snprintf(r.why, sizeof(r.why), "the image cannot be read: %s",
			 strerror(-err));
	}
	if (write(wp, &r, sizeof(r)) != (ssize_t)sizeof(r))
		err = -EIO;
	/*
	 * SIGKILL rather than _exit: under valgrind _exit runs a leak check
	 * of the copy of the parent's memory (see src/fuse/drain.c).
	 */
	kill(getpid(), SIGKILL);
	_exit(0);
}

/* Fill *r for an image whose check did not finish. */
static void not_finished(struct h5_report *r, const char *fmt, long v)
{
	memset(r, 0, sizeof(*r));
	r->is_hdf5 = true;
	r->sb_version = -1;
	r->unfinished = true;
	snprintf(r->why, sizeof(r->why), fmt, v);
}

int h5_inspect_isolated(int fd, uint64_t size, const struct h5_limits *lim,
			struct h5_report *r)
{
	struct h5_limits def = H5_LIMITS_DEFAULT;
	size_t got = 0;
	double deadline;
	int pfd[2], status = 0, sig;
	pid_t pid;

	if (!lim)
		lim = &def;
	if (h5_signature(fd, size) <= 0) /* not HDF5: no libhdf5 at all */
		return h5_inspect(fd, size, r);
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	h5_lock_take();
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		child(fd, size, pfd[1], lim);
	}
	h5_lock_drop();
	close(pfd[1]);
	if (pid < 0) {
		close(pfd[0]);
		return -errno;
	}
	deadline = now_s() + lim->seconds;
	while (got < sizeof(*r)) {
		struct pollfd p = { pfd[0], POLLIN, 0 };
		double left = deadline - now_s();
		int n;
		ssize_t rd;

		if (left <= 0)
			break;
		n = poll(&p, 1, (int)(left * 1000) + 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		rd = read(pfd[0], (char *)r + got, sizeof(*r) - got);
		if (rd < 0 && errno == EINTR)
			continue;
		if (rd <= 0)
			break; /* the child died before it could answer */
		got += (size_t)rd;
	}
	close(pfd[0]);
	if (got < sizeof(*r))
		kill(pid, SIGKILL); /* out of time (or already dead) */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got == sizeof(*r)) {
		r->why[sizeof(r->why) - 1] = '\0';
		return 0;
	}
	sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	if (sig == SIGXCPU)
		not_finished(r, "the check used more than %ld s of CPU",
			     (long)lim->cpu_seconds);
	else if (sig == SIGKILL && now_s() >= deadline)
		not_finished(r, "the check took more than %ld s",
			     (long)lim->seconds);
	else if (sig)
		not_finished(r, "libhdf5 crashed on the file (signal %ld)",
			     (long)sig);
	else
		not_finished(r, "the check ended without an answer (status "
				"%ld)", (long)WEXITSTATUS(status));
	return 0;
}
