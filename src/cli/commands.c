/*
 * commands.c - status, sync, discard and evict.
 *
 * Each command talks to the daemon through xattrs of the mounted files:
 * no socket, no daemon-side permission code, the kernel checks access.
 */
#include "commands.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define X_STATUS "user.h5memfs.status"
#define X_SYNC "user.h5memfs.sync"
#define X_DISCARD "user.h5memfs.discard"
#define X_EVICT "user.h5memfs.evict"

bool cmd_is_command(int argc, char **argv)
{
	static const char *const words[] = { "status", "sync", "discard",
					     "evict", NULL };

	if (argc < 2)
		return false;
	for (const char *const *w = words; *w; w++)
		if (!strcmp(argv[1], *w))
			return true;
	return false;
}

/* Undo mountinfo's octal escapes (\040 for a space...) in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 |
				      (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/*
 * The longest fuse.h5memfs mount point that holds `real`, from one read
 * of /proc/self/mountinfo. Lines of any length (getline: another mount's
 * options may be long). NULL when none (or on error).
 */
static char *scan_mountinfo(const char *real)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL, *best = NULL;
	size_t cap = 0, best_len = 0;

	while (f && getline(&line, &cap, f) > 0) {
		char *sep = strstr(line, " - "), *save = NULL, *mnt = NULL;
		char *tok, *type;
		size_t l;
		int i = 0;

		if (!sep)
			continue;
		*sep = '\0';
		type = strtok_r(sep + 3, " \n", &save);
		if (!type || strcmp(type, "fuse.h5memfs") != 0)
			continue;
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... */
		for (tok = strtok_r(line, " ", &save); tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		if (!(mnt = tok))
			continue;
		unescape(mnt);
		l = strlen(mnt);
		if (strncmp(real, mnt, l) || (real[l] && real[l] != '/' &&
					      strcmp(mnt, "/")))
			continue;
		if (l >= best_len) {
			free(best);
			best = strdup(mnt);
			best_len = l;
		}
	}
	free(line);
	if (f)
		fclose(f);
	return best;
}

/*
 * The h5memfs mount holding path, or NULL: errno is then that of
 * realpath, or 0 when path is simply not in such a mount.
 */
static char *mount_of(const char *path)
{
	char *real = realpath(path, NULL), *best = NULL;

	if (!real)
		return NULL;
	/*
	 * The kernel lists mountinfo a page at a time: mounts coming and
	 * going between two reads may hide a line. Look again before
	 * saying no.
	 */
	for (int tries = 0; !best && tries < 3; tries++) {
		if (tries)
			usleep(20000);
		best = scan_mountinfo(real);
	}
	free(real);
	errno = 0;
	return best;
}

static char *get_status(const char *path, int *err)
{
	/* the document may grow between the size probe and the read */
	for (int tries = 0; tries < 8; tries++) {
		ssize_t n = getxattr(path, X_STATUS, NULL, 0);
		char *buf;

		if (n < 0) {
			*err = errno;
			return NULL;
		}
		n += 256;
		buf = malloc((size_t)n + 1);
		if (!buf) {
			*err = ENOMEM;
			return NULL;
		}
		n = getxattr(path, X_STATUS, buf, (size_t)n);
		if (n >= 0) {
			buf[n] = '\0';
			return buf;
		}
		*err = errno;
		free(buf);
		if (*err != ERANGE)
			return NULL;
	}
	return NULL;
}

/*
 * The raw value after "key": in our own flat-formatted JSON (the first
 * occurrence after `from`), copied into out. Strings keep no quotes.
 */
static const char *jget(const char *json, const char *key, char *out,
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

static const char *human(const char *bytes, char *out, size_t size)
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

/* Check that path is inside an h5memfs mount; say so if not. */
static char *require_mount(const char *path)
{
	struct stat st;
	char *mnt;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "h5memfs: %s: %s\n", path, strerror(errno));
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

struct walk {
	bool json;
	bool first;
	unsigned shown, failed;
};

static struct walk walk_state;

static int walk_file(const char *path, const struct stat *st, int type,
		     struct FTW *ftw)
{
	char state[32], size[32], mem[32], dirty[32], when[40], note[320];
	char h1[16], h2[16], h3[16], *json, *lw;
	int err = 0;

	(void)st;
	(void)ftw;
	if (type != FTW_F)
		return 0;
	json = get_status(path, &err);
	if (!json) {
		walk_state.failed++;
		fprintf(stderr, "h5memfs: %s: %s\n", path, strerror(err));
		return 0;
	}
	if (walk_state.json) {
		printf("%s\n    %s", walk_state.first ? "" : ",", json);
		walk_state.first = false;
	} else {
		lw = strstr(json, "\"last_writeback\"");
		jget(json, "state", state, sizeof(state));
		jget(json, "size", size, sizeof(size));
		jget(json, "memory_bytes", mem, sizeof(mem));
		jget(json, "dirty_bytes", dirty, sizeof(dirty));
		jget(lw ? lw : json, "time", when, sizeof(when));
		jget(lw ? lw : json, "note", note, sizeof(note));
		printf("%-13s %8s %8s %8s  %-20s %s%s%s%s\n", state,
		       human(size, h1, sizeof(h1)), human(mem, h2, sizeof(h2)),
		       human(dirty, h3, sizeof(h3)),
		       strcmp(when, "null") ? when : "-", path,
		       note[0] && strcmp(note, "written") ? "  (" : "",
		       note[0] && strcmp(note, "written") ? note : "",
		       note[0] && strcmp(note, "written") ? ")" : "");
	}
	walk_state.shown++;
	free(json);
	return 0;
}

static int cmd_status(int argc, char **argv)
{
	char *mnt, *json, v[64], v2[64], h[16];
	int err = 0;
	bool as_json = false;
	const char *path = NULL;

	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			as_json = true;
		else if (!path)
			path = argv[i];
		else {
			fprintf(stderr, "usage: h5memfs status MOUNTPOINT "
				"[--json]\n");
			return 1;
		}
	}
	if (!path) {
		fprintf(stderr, "usage: h5memfs status MOUNTPOINT [--json]\n");
		return 1;
	}
	mnt = require_mount(path);
	if (!mnt)
		return 1;
	json = get_status(mnt, &err);
	if (!json) {
		fprintf(stderr, "h5memfs: cannot read the status of %s: %s\n",
			mnt, strerror(err));
		free(mnt);
		return 1;
	}
	walk_state = (struct walk){ .json = as_json, .first = true };
	if (as_json) {
		printf("{\"mount\": %s,\n \"mountpoint\": ", json);
		printf("\"%s\",\n \"files\": [", mnt);
	} else {
		printf("mount %s (source %s)\n", mnt,
		       jget(json, "source", v, sizeof(v)));
		printf("  data path %s, volatile %s\n",
		       jget(json, "data_path", v, sizeof(v)),
		       jget(json, "volatile", h, sizeof(h)));
		printf("  memory %s", human(jget(json, "memory_used", v,
						 sizeof(v)), h, sizeof(h)));
		printf(" of %s,", human(jget(json, "max_memory", v, sizeof(v)),
					h, sizeof(h)));
		printf(" dirty %s in %s file(s)\n",
		       human(jget(json, "dirty_bytes", v, sizeof(v)), h,
			     sizeof(h)),
		       jget(json, "dirty_files", v2, sizeof(v2)));
		printf("  write-backs %s", jget(json, "writebacks", v,
						 sizeof(v)));
		printf(" (%s errors,", jget(json, "writeback_errors", v,
					     sizeof(v)));
		printf(" %s conflicts,", jget(json, "conflicts", v, sizeof(v)));
		printf(" %s refused as invalid HDF5)\n\n",
		       jget(json, "invalid", v, sizeof(v)));
		printf("%-13s %8s %8s %8s  %-20s %s\n", "STATE", "SIZE",
		       "MEMORY", "DIRTY", "LAST WRITE-BACK", "PATH");
	}
	nftw(mnt, walk_file, 64, FTW_PHYS | FTW_MOUNT);
	if (as_json)
		printf("\n ]}\n");
	free(json);
	free(mnt);
	return walk_state.failed ? 1 : 0;
}

/* One line of progress on a terminal: bytes, rate, time left. */
static void progress(uint64_t done, uint64_t total, double t0)
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

/* setxattr X on each path, one line per path. */
static int act(const char *verb, const char *done_msg, const char *xattr,
	       char **paths, int n, bool bar)
{
	uint64_t total = 0, done = 0, *sizes = calloc((size_t)n, 8);
	struct timespec ts;
	double t0;
	int failed = 0;

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
		if (setxattr(paths[i], xattr, "1", 1, 0) < 0) {
			if (bar)
				fprintf(stderr, "\n");
			fprintf(stderr, "h5memfs: cannot %s %s: %s\n", verb,
				paths[i],
				errno == EACCES || errno == EPERM ?
					"permission denied (you may not "
					"write it)" :
				errno == EBUSY ?
					"it is open or has unsaved changes" :
				errno == ENODATA ?
					"it has no version in SOURCE" :
				errno == ETIMEDOUT ?
					"the writes the kernel still caches "
					"did not reach the daemon in time" :
					strerror(errno));
			failed++;
			continue;
		}
		done += sizes ? sizes[i] : 0;
		if (bar)
			progress(done, total, t0);
		else
			printf("%s: %s\n", paths[i], done_msg);
	}
	if (bar)
		fprintf(stderr, "\n");
	free(sizes);
	return failed ? 1 : 0;
}

int cmd_main(int argc, char **argv)
{
	const char *cmd = argv[1];

	if (!strcmp(cmd, "status"))
		return cmd_status(argc, argv);
	if (argc < 3) {
		fprintf(stderr, "usage: h5memfs %s %s\n", cmd,
			!strcmp(cmd, "sync") ? "MOUNTPOINT [PATH...]" :
					       "PATH...");
		return 1;
	}
	if (!strcmp(cmd, "sync")) {
		bool bar = isatty(STDERR_FILENO);

		if (argc == 3) { /* the whole mount */
			char *mnt = require_mount(argv[2]);

			if (!mnt)
				return 1;
			free(mnt);
			return act("sync", "written back", X_SYNC, argv + 2, 1,
				   bar);
		}
		return act("sync", "written back", X_SYNC, argv + 3, argc - 3,
			   bar);
	}
	if (!strcmp(cmd, "discard"))
		return act("discard", "changes dropped", X_DISCARD, argv + 2,
			   argc - 2, false);
	return act("evict", "dropped from memory", X_EVICT, argv + 2,
		   argc - 2, false);
}
