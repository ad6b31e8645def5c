/*
 * common.c - what the commands share: finding the mount a path is in,
 * reading a status document, picking values out of it, human sizes, the
 * progress line.
 */
#include "common.h"

#include "mounts.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <linux/limits.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <time.h>

char *get_status(const char *path, int *err)
{
	return get_doc(path, X_STATUS, err);
}

char *get_doc(const char *path, const char *name, int *err)
{
	/*
	 * One call with room for the largest value there is: each read
	 * first drains the kernel's cached writes (a fork and a syncfs),
	 * and a size probe would cost a second one.
	 */
	char *buf = malloc(XATTR_SIZE_MAX + 1), *fit;
	ssize_t n;

	if (!buf) {
		*err = ENOMEM;
		return NULL;
	}
	n = getxattr(path, name, buf, XATTR_SIZE_MAX);
	if (n < 0) {
		*err = errno;
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	fit = realloc(buf, (size_t)n + 1);
	return fit ? fit : buf;
}

/*
 * The raw value after "key": in our own flat-formatted JSON (the first
 * occurrence after `from`), copied into out. Strings keep no quotes.
 */
const char *jget(const char *json, const char *key, char *out,
			size_t size)
{
	char pat[64];
	const char *p;
	size_t i = 0;

	snprintf(pat, sizeof(pat), "\"%s\": ", key);
	p = strstr(json, pat);
	if (!p) {
		snprintf(out, size, "-");
		return out;
	}
	p += strlen(pat);
	if (*p == '"') {
		for (p++; *p && *p != '"' && i + 1 < size; p++) {
			if (*p == '\\' && p[1])
				p++;
			out[i++] = *p;
		}
	} else {
		while (*p && *p != ',' && *p != '}' && i + 1 < size)
			out[i++] = *p++;
	}
	out[i] = '\0';
	return out;
}

const char *human(const char *bytes, char *out, size_t size)
{
	static const char units[] = "BKMGTP";
	double v = strtod(bytes, NULL);
	int u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	snprintf(out, size, u ? "%.1f%c" : "%.0f%c", v, units[u]);
	return out;
}

/* One line of progress on a terminal: bytes, rate, time left. */
void progress(uint64_t done, uint64_t total, double t0)
{
	struct timespec ts;
	double now, rate, left;
	char h1[16], h2[16], h3[16], b[32];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	rate = now > t0 ? (double)done / (now - t0) : 0;
	left = rate > 0 ? (double)(total - done) / rate : 0;
	snprintf(b, sizeof(b), "%llu", (unsigned long long)done);
	human(b, h1, sizeof(h1));
	snprintf(b, sizeof(b), "%llu", (unsigned long long)total);
	human(b, h2, sizeof(h2));
	snprintf(b, sizeof(b), "%.0f", rate);
	human(b, h3, sizeof(h3));
	fprintf(stderr, "\r[%-30.*s] %s/%s %s/s %.0fs left ",
		total ? (int)(30 * done / total) : 30,
		"##############################", h1, h2, h3, left);
}


/* Append the UTF-8 encoding of cp. */
static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	o[0] = (char)(0xe0 | cp >> 12);
	o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[2] = (char)(0x80 | (cp & 0x3f));
	return 3;
}

char *jstr(const char *json, const char *key)
{
	char pat[64], *out, *o;
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\": \"", key);
	p = strstr(json, pat);
	if (!p)
		return NULL;
	p += strlen(pat);
	out = o = malloc(strlen(p) + 1); /* decoding never grows */
	if (!out)
		return NULL;
	for (; *p && *p != '"'; p++) {
		unsigned cp;

		if (*p != '\\' || !p[1]) {
			*o++ = *p;
			continue;
		}
		p++;
		switch (*p) {
		case 'n': *o++ = '\n'; break;
		case 't': *o++ = '\t'; break;
		case 'r': *o++ = '\r'; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'u':
			if (sscanf(p + 1, "%4x", &cp) != 1)
				break;
			p += 4;
			if (cp >= 0xdc80 && cp <= 0xdcff)
				*o++ = (char)(cp - 0xdc00); /* a raw byte */
			else
				o += put_utf8(o, cp);
			break;
		default: *o++ = *p; break;
		}
	}
	*o = '\0';
	return out;
}

const char *next_object(const char *p, size_t *len)
{
	int depth = 0;
	bool in_str = false;
	const char *start;

	while (*p && *p != '{' && *p != ']')
		p++;
	if (*p != '{')
		return NULL;
	start = p;
	for (; *p; p++) {
		if (in_str) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '"')
				in_str = false;
		} else if (*p == '"') {
			in_str = true;
		} else if (*p == '{') {
			depth++;
		} else if (*p == '}' && --depth == 0) {
			*len = (size_t)(p + 1 - start);
			return start;
		}
	}
	return NULL;
}

double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A socket with a kernel-chosen abstract name, given to the daemon. */
int report_bind(char *name, size_t *len)
{
	struct sockaddr_un sa;
	socklen_t sl = sizeof(sa_family_t);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	/* only the family: the kernel binds a unique abstract name */
	if (bind(fd, (struct sockaddr *)&sa, sl) < 0)
		goto fail;
	sl = sizeof(sa);
	if (getsockname(fd, (struct sockaddr *)&sa, &sl) < 0 ||
	    sl <= offsetof(struct sockaddr_un, sun_path) + 1) {
		errno = EINVAL;
		goto fail;
	}
	*len = sl - offsetof(struct sockaddr_un, sun_path) - 1;
	memcpy(name, sa.sun_path + 1, *len); /* after the leading NUL */
	return fd;
fail:
	close(fd);
	return -1;
}

int report_socket(const char *mnt, bool quiet)
{
	char name[sizeof(((struct sockaddr_un *)0)->sun_path)];
	size_t len;
	int fd = report_bind(name, &len);

	if (fd >= 0 && setxattr(mnt, X_REPORT, name, len, 0) == 0)
		return fd;
	if (!quiet)
		fprintf(stderr, "h5memfs: %s: cannot ask the daemon for its "
			"outcome: %s\n", mnt, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Read every queued report datagram. */
void read_reports(int fd, struct outcome *o, bool bar)
{
	char buf[8192];
	ssize_t n;

	/* >= 0: the daemon may probe with an empty datagram (notify.c) */
	while (fd >= 0 && (n = recv(fd, buf, sizeof(buf) - 1,
				    MSG_DONTWAIT)) >= 0) {
		unsigned long long f, tf, b, tb;
		char *save = NULL;

		buf[n] = '\0';
		for (char *l = strtok_r(buf, "\n", &save); l;
		     l = strtok_r(NULL, "\n", &save)) {
			if (sscanf(l, "progress %llu %llu %llu %llu", &f, &tf,
				   &b, &tb) == 4 && bar) {
				if (o->t0 == 0)
					o->t0 = mono_now();
				progress(b, tb, o->t0);
				fprintf(stderr, "%llu/%llu files ", f, tf);
			} else if (!strncmp(l, "status ", 7)) {
				o->status = atoi(l + 7);
			} else if (!strncmp(l, "rescue ", 7)) {
				snprintf(o->rescue, sizeof(o->rescue), "%s",
					 l + 7);
			}
		}
	}
}

/* Check that path is inside an h5memfs mount; say so if not. */
char *require_mount(const char *path)
{
	struct stat st;
	char *mnt;

	if (stat(path, &st) < 0) {
		if (errno == ENOTCONN || errno == ECONNABORTED)
			fprintf(stderr, "h5memfs: %s: the daemon of this mount "
				"is gone (a dead mount: h5memfs unmount "
				"MOUNTPOINT detaches it)\n", path);
		else
			fprintf(stderr, "h5memfs: %s: %s\n", path,
				strerror(errno));
		return NULL;
	}
	mnt = mount_of(path);
	if (!mnt && errno)
		fprintf(stderr, "h5memfs: %s: %s\n", path, strerror(errno));
	else if (!mnt)
		fprintf(stderr, "h5memfs: %s is not inside an h5memfs mount\n",
			path);
	return mnt;
}
