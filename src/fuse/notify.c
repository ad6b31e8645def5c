/*
 * notify.c - systemd's notify protocol and the unmount reports (see
 * notify.h), with the thread that sends progress.
 *
 * The protocol is one datagram per message to the AF_UNIX socket named
 * by NOTIFY_SOCKET (a path, or '@' for the abstract namespace), as
 * sd_notify(3) documents; no libsystemd needed.
 */
#include "notify.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../core/log.h"
#include "../fs/fs.h"

#define MAX_REPORTS 16
/* How far each EXTEND_TIMEOUT_USEC pushes systemd's stop timeout. */
#define EXTEND_USEC 30000000ULL

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	struct sockaddr_un sa;
	socklen_t len;
} reports[MAX_REPORTS];
static unsigned nreports;

/* Send msg to an AF_UNIX datagram address; errors ignored (best effort). */
static void send_to(const struct sockaddr_un *sa, socklen_t len,
		    const char *msg)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return;
	(void)!sendto(fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL,
		      (const struct sockaddr *)sa, len);
	close(fd);
}

void notify_systemd(const char *fmt, ...)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t l;
	char msg[512];
	va_list ap;

	if (!path || !*path || (path[0] != '/' && path[0] != '@'))
		return;
	l = strlen(path);
	if (l >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, path, l);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	send_to(&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l),
		msg);
}

/*
 * Whether the socket at sa is gone (its command ended: a busy mount it
 * could not unmount, a timeout): an empty datagram is refused.
 */
static bool report_gone(const struct sockaddr_un *sa, socklen_t len)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool gone = false;

	if (fd < 0)
		return false;
	if (sendto(fd, "", 0, MSG_DONTWAIT | MSG_NOSIGNAL,
		   (const struct sockaddr *)sa, len) < 0)
		gone = errno == ECONNREFUSED || errno == ENOENT;
	close(fd);
	return gone;
}

int notify_report_add(const char *name, size_t len)
{
	int err = 0;

	if (!len || len + 1 > sizeof(reports[0].sa.sun_path))
		return -EINVAL;
	pthread_mutex_lock(&lock);
	/* full: make room by forgetting the commands that are gone */
	for (unsigned i = 0; nreports == MAX_REPORTS && i < nreports;) {
		if (report_gone(&reports[i].sa, reports[i].len))
			reports[i] = reports[--nreports];
		else
			i++;
	}
	if (nreports == MAX_REPORTS) {
		err = -ENOSPC;
	} else {
		struct sockaddr_un *sa = &reports[nreports].sa;

		memset(sa, 0, sizeof(*sa));
		sa->sun_family = AF_UNIX;
		memcpy(sa->sun_path + 1, name, len); /* abstract: leading NUL */
		reports[nreports++].len = (socklen_t)(
			offsetof(struct sockaddr_un, sun_path) + 1 + len);
	}
	pthread_mutex_unlock(&lock);
	return err;
}

static void report_all(const char *msg)
{
	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < nreports; i++)
		send_to(&reports[i].sa, reports[i].len, msg);
	pthread_mutex_unlock(&lock);
}

void notify_report_outcome(int status, const char *rescue_dir)
{
	char msg[4200];

	if (rescue_dir)
		snprintf(msg, sizeof(msg), "rescue %s\nstatus %d\n",
			 rescue_dir, status);
	else
		snprintf(msg, sizeof(msg), "status %d\n", status);
	report_all(msg);
}

static struct {
	pthread_t thread;
	pthread_cond_t cond;
	struct fs *fs;
	bool running, stop, final;
	struct fs_progress start;	/* when the final write-back began */
	unsigned passes;		/* whole-mount syncs under way */
	struct fs_progress pass_start;	/* when the first of them began */
} w = { .cond = PTHREAD_COND_INITIALIZER };

static void human(uint64_t v, char *out, size_t size)
{
	static const char units[] = "BKMGTP";
	double d = (double)v;
	int u = 0;

	while (d >= 1024 && u < 5) {
		d /= 1024;
		u++;
	}
	snprintf(out, size, u ? "%.1f%c" : "%.0f%c", d, units[u]);
}

/* Files and bytes written since start, and the totals to reach. */
struct done {
	uint64_t files, bytes, tf, tb;
};

static struct done done_since(const struct fs_progress *start,
			      const struct fs_progress *now)
{
	struct done d;

	d.files = now->writebacks + now->writeback_errors -
		  start->writebacks - start->writeback_errors;
	d.bytes = now->writeback_bytes - start->writeback_bytes;
	d.tb = start->dirty_bytes > d.bytes ? start->dirty_bytes : d.bytes;
	d.tf = start->dirty_files > d.files ? start->dirty_files : d.files;
	return d;
}

/* Progress of a write-back to the reports (unmount, sync commands). */
static void report_tick(const struct fs_progress *start,
			const struct fs_progress *now)
{
	struct done d = done_since(start, now);
	char msg[128];

	snprintf(msg, sizeof(msg), "progress %llu %llu %llu %llu\n",
		 (unsigned long long)d.files, (unsigned long long)d.tf,
		 (unsigned long long)d.bytes, (unsigned long long)d.tb);
	report_all(msg);
}

/* One tick of the final write-back: STATUS, EXTEND on progress, reports. */
static void final_tick(const struct fs_progress *start,
		       const struct fs_progress *now, uint64_t *last_done)
{
	struct done d = done_since(start, now);
	char h1[16], h2[16];

	human(d.bytes, h1, sizeof(h1));
	human(d.tb, h2, sizeof(h2));
	if (d.files + d.bytes != *last_done)
		notify_systemd("EXTEND_TIMEOUT_USEC=%llu\nSTATUS=Writing back: "
			       "%llu/%llu files, %s/%s",
			       EXTEND_USEC, (unsigned long long)d.files,
			       (unsigned long long)d.tf, h1, h2);
	*last_done = d.files + d.bytes;
	report_tick(start, now);
}

static void *watcher(void *arg)
{
	struct fs_progress now;
	uint64_t last_done = UINT64_MAX;
	bool preload_told = false;
	struct timespec t;
	char h[16];

	(void)arg;
	pthread_mutex_lock(&lock);
	while (!w.stop) {
		bool final = w.final;
		unsigned passes = w.passes;
		struct fs_progress pass_start = w.pass_start;

		pthread_mutex_unlock(&lock);
		fs_progress(w.fs, &now);
		if (passes && !final)
			report_tick(&pass_start, &now);
		if (final) {
			final_tick(&w.start, &now, &last_done);
		} else if (now.preload_running) {
			human(now.preload_bytes, h, sizeof(h));
			notify_systemd("STATUS=Serving; preloading: %llu files, "
				       "%s loaded",
				       (unsigned long long)now.preload_files, h);
		} else if (now.preload_done && !preload_told) {
			human(now.preload_bytes, h, sizeof(h));
			notify_systemd("STATUS=Serving; preloaded %llu files, %s",
				       (unsigned long long)now.preload_files, h);
			preload_told = true;
		}
		clock_gettime(CLOCK_REALTIME, &t);
		t.tv_sec += 1;
		pthread_mutex_lock(&lock);
		if (!w.stop && w.final == final && w.passes == passes)
			pthread_cond_timedwait(&w.cond, &lock, &t);
	}
	pthread_mutex_unlock(&lock);
	if (w.final) { /* where it ended, however short it was */
		fs_progress(w.fs, &now);
		final_tick(&w.start, &now, &last_done);
	}
	return NULL;
}

int notify_watch_start(struct fs *fs)
{
	int err;

	w.fs = fs;
	w.stop = w.final = false;
	err = pthread_create(&w.thread, NULL, watcher, NULL);
	w.running = !err;
	return -err;
}

void notify_watch_final(void)
{
	struct fs_progress start;

	if (!w.running)
		return;
	fs_progress(w.fs, &start);
	pthread_mutex_lock(&lock);
	w.start = start;
	w.final = true;
	pthread_cond_signal(&w.cond);
	pthread_mutex_unlock(&lock);
}

void notify_pass_begin(void)
{
	struct fs_progress start;

	if (!w.running)
		return;
	fs_progress(w.fs, &start);
	pthread_mutex_lock(&lock);
	if (w.passes++ == 0)
		w.pass_start = start;
	pthread_cond_signal(&w.cond);
	pthread_mutex_unlock(&lock);
}

void notify_pass_end(void)
{
	struct fs_progress start, now;

	if (!w.running)
		return;
	fs_progress(w.fs, &now);
	pthread_mutex_lock(&lock);
	start = w.pass_start;
	w.passes--;
	pthread_mutex_unlock(&lock);
	report_tick(&start, &now); /* where it ended, however short */
}

void notify_watch_stop(void)
{
	if (!w.running)
		return;
	pthread_mutex_lock(&lock);
	w.stop = true;
	pthread_cond_signal(&w.cond);
	pthread_mutex_unlock(&lock);
	pthread_join(w.thread, NULL);
	w.running = false;
}
