/*
 * common.h - helpers shared by the commands (commands.c, unmount.c).
 */
#ifndef H5M_CLI_COMMON_H
#define H5M_CLI_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define X_STATUS "user.h5memfs.status"
#define X_SYNC "user.h5memfs.sync"
#define X_DISCARD "user.h5memfs.discard"
#define X_EVICT "user.h5memfs.evict"
#define X_REPORT "user.h5memfs.report"
#define X_PID "user.h5memfs.pid"
#define X_FILES "user.h5memfs.files"

/* The status document (JSON) of path; NULL with *err set. Caller frees. */
char *get_status(const char *path, int *err);

/*
 * The mount point of the h5memfs mount that path is inside (malloc'd),
 * or NULL after saying on stderr why not (no such path, a dead mount,
 * not inside a mount).
 */
char *require_mount(const char *path);
/* The same for any of the daemon's xattr documents. */
char *get_doc(const char *path, const char *name, int *err);

/*
 * The string value of "key" in json, decoded (\udc80..\udcff give back
 * the raw bytes of a name that is not UTF-8), or NULL. Caller frees.
 */
char *jstr(const char *json, const char *key);

/*
 * The next JSON object at or after p within an array (NULL at its ']'
 * or the end); *len gets its length.
 */
const char *next_object(const char *p, size_t *len);

/*
 * The raw value after "key": in our own flat-formatted JSON (the first
 * occurrence), copied into out ("-" when absent). Strings keep no quotes.
 */
const char *jget(const char *json, const char *key, char *out, size_t size);

/* A decimal byte count as 1.5M and the like. */
const char *human(const char *bytes, char *out, size_t size);

/* One line of progress on stderr (a terminal): bytes, rate, time left. */
void progress(uint64_t done, uint64_t total, double t0);

/* CLOCK_MONOTONIC in seconds. */
double mono_now(void);

/* What the daemon reported on a report socket (src/fuse/notify.h). */
struct outcome {
	int status;		/* -1: no report */
	char rescue[4096];
	double t0;		/* first progress line */
};

/*
 * A datagram socket with a kernel-chosen abstract name, given to the
 * daemon of the mount at mnt (user.h5memfs.report on its root). The fd,
 * or -1 (said on stderr unless quiet).
 */
int report_socket(const char *mnt, bool quiet);

/*
 * The socket alone: its fd (or -1), its abstract name (without the
 * leading NUL, up to 107 bytes) into name and *len, to give with setxattr.
 */
int report_bind(char *name, size_t *len);

/* Read every queued report; draw progress lines on stderr when bar. */
void read_reports(int fd, struct outcome *o, bool bar);

#endif
