/*
 * commands.c - status, sync, discard and evict.
 *
 * Each command talks to the daemon through xattrs of the mounted files:
 * no socket, no daemon-side permission code, the kernel checks access.
 */
#include "commands.h"

#include "common.h"
#include "mounts.h"
#include "options.h"
#include "../core/strbuf.h"
#include "../h5/h5check.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <sys/wait.h>
#include <limits.h>
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

static void help(const char *cmd, FILE *f)
{
	if (!strcmp(cmd, "status"))
		fprintf(f,
"usage: h5memfs status [--json] [--all] [--hdf5] MOUNTPOINT\n"
"\n"
"The mount's totals against max_memory, the daemon's PID, preload\n"
"progress, and each file in memory (loading, clean, dirty, volatile,\n"
"invalid HDF5, conflict...) with its size, memory, unsaved bytes and last\n"
"write-back. Cheap whatever the size of the tree: no file is read.\n"
"\n"
"    --json    one JSON document (names that are not UTF-8 have their\n"
"              bytes as \\udc80-\\udcff, Python's surrogateescape)\n"
"    --all     every file of the mount, loaded or not (walks the tree)\n"
"    --hdf5    what libhdf5 sees in each file in memory, computed here\n"
"              and not in the daemon: superblock version, whether a\n"
"              writer has it open (or left it so), whether it opens\n"
"    -h, --help\n");
	else if (!strcmp(cmd, "sync"))
		fprintf(f,
"usage: h5memfs sync PATH...\n"
"       h5memfs sync MOUNTPOINT PATH...\n"
"\n"
"Write back now, and return once durable in SOURCE: every PATH given (a\n"
"file, or a mount point for the whole mount). A first argument that is a\n"
"mount point followed by more paths only names the mount: the paths\n"
"are written back. A progress line shows on a terminal (stderr); on a\n"
"pipe, one line per path on stdout. Exit 1 if any path failed, with\n"
"the reason.\n");
	else if (!strcmp(cmd, "discard"))
		fprintf(f,
"usage: h5memfs discard PATH...\n"
"\n"
"Drop each file's unsaved changes: it becomes SOURCE's version again, as\n"
"closing a core-driver file with backing_store=0 does. Fails for a file\n"
"that has no version in SOURCE.\n");
	else if (!strcmp(cmd, "evict"))
		fprintf(f,
"usage: h5memfs evict PATH...\n"
"\n"
"Drop each file's clean image from memory; it is loaded again when next\n"
"opened. Fails for a file with unsaved changes or open.\n");
	else
		opts_print_help("h5memfs");
}

/* Print s as a JSON string (see sb_json_str for names not UTF-8). */
static void print_json_str(const char *s)
{
	struct strbuf b;
	char *t;

	sb_init(&b);
	sb_json_str(&b, s);
	t = sb_take(&b);
	fputs(t ? t : "\"\"", stdout);
	free(t);
}

/* Check that path is inside an h5memfs mount; say so if not. */
static char *require_mount(const char *path)
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

/* How status shows what it finds (one command per process). */
static struct {
	bool json, all, hdf5, first;
	unsigned shown, failed;
} so;

/*
 * What libhdf5 sees in the file at `full`, read through the mount by a
 * child of this process (not the daemon; a crafted file can only crash
 * that child, which drops root first): a JSON value into b and one line
 * of text.
 */
static void hdf5_outside(const char *full, struct strbuf *b, char *text,
			 size_t size)
{
	struct h5_report r;
	struct stat st;
	int fd = open(full, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	text[0] = '\0';
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    h5_inspect_isolated(fd, (uint64_t)st.st_size, NULL, &r) < 0 ||
	    !r.is_hdf5) {
		sb_printf(b, "null");
		snprintf(text, size, "not HDF5");
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	sb_printf(b, "{\"superblock_version\": %d, \"userblock\": %llu, "
		  "\"writer_open\": %s, \"swmr_writer\": %s, \"opens\": %s, "
		  "\"objects\": %lu, \"unknown_to_libhdf5\": %s, "
		  "\"error\": ", r.sb_version,
		  (unsigned long long)r.base, r.writer_open ? "true" : "false",
		  r.swmr ? "true" : "false", r.opens ? "true" : "false",
		  r.objects, r.newer ? "true" : "false");
	if (r.opens)
		sb_printf(b, "null}");
	else {
		sb_json_str(b, r.why);
		sb_printf(b, "}");
	}
	snprintf(text, size, "HDF5 superblock v%d%s%s, %s%s", r.sb_version,
		 r.writer_open ? ", open by a writer (or left so)" : "",
		 r.swmr ? ", SWMR writer" : "",
		 r.opens ? "opens" : "does not open: ", r.opens ? "" : r.why);
}

/* One file's document: a JSON array member, or a table line. */
static void show_file(const char *doc, size_t len, const char *full)
{
	char state[32], size[32], mem[32], dirty[32], when[40];
	char h1[16], h2[16], h3[16], text[400] = "";
	const char *lw = strstr(doc, "\"last_writeback\"");
	char *note = jstr(lw ? lw : doc, "note");
	struct strbuf h;

	sb_init(&h);
	jget(doc, "state", state, sizeof(state));
	if (so.hdf5 && strcmp(state, "not loaded") != 0)
		hdf5_outside(full, &h, text, sizeof(text));
	else if (so.hdf5)
		sb_printf(&h, "null");
	if (so.json) {
		char *hj = so.hdf5 ? sb_take(&h) : NULL;

		printf("%s\n    ", so.first ? "" : ",");
		/* the document without its closing brace */
		printf("%.*s", (int)(len - 1), doc);
		if (so.hdf5)
			printf(", \"hdf5\": %s", hj ? hj : "null");
		printf("}");
		free(hj);
		so.first = false;
	} else {
		bool show_note = note && note[0] && strcmp(note, "written");

		jget(doc, "size", size, sizeof(size));
		if (!strcmp(jget(doc, "partial", h1, sizeof(h1)), "true")) {
			/* a partial image: how much of it is in */
			uint64_t all = strtoull(size, NULL, 10), have;
			char num[32];

			have = strtoull(jget(doc, "loaded_bytes", num,
					     sizeof(num)), NULL, 10);
			snprintf(state + strlen(state),
				 sizeof(state) - strlen(state), " %u%%",
				 all ? (unsigned)(have * 100 / all) : 100u);
		}
		jget(doc, "memory_bytes", mem, sizeof(mem));
		jget(doc, "dirty_bytes", dirty, sizeof(dirty));
		jget(lw ? lw : doc, "time", when, sizeof(when));
		printf("%-13s %8s %8s %8s  %-20s %s%s%s%s\n", state,
		       human(size, h1, sizeof(h1)), human(mem, h2, sizeof(h2)),
		       human(dirty, h3, sizeof(h3)),
		       strcmp(when, "null") ? when : "-", full,
		       show_note ? "  (" : "", show_note ? note : "",
		       show_note ? ")" : "");
		if (text[0])
			printf("%-13s %s\n", "", text);
	}
	free(sb_take(&h));
	free(note);
	so.shown++;
}

static int walk_file(const char *path, const struct stat *st, int type,
		     struct FTW *ftw)
{
	char *json;
	int err = 0;

	(void)st;
	(void)ftw;
	if (type != FTW_F)
		return 0;
	json = get_status(path, &err);
	if (!json) {
		so.failed++;
		fprintf(stderr, "h5memfs: %s: %s\n", path, strerror(err));
		return 0;
	}
	show_file(json, strlen(json), path);
	free(json);
	return 0;
}

/* The files in memory, page by page from the daemon (no tree walk). */
static void list_loaded(const char *mnt)
{
	unsigned long long start = 0;
	char name[64], v[32];

	for (;;) {
		const char *p, *obj;
		size_t len;
		char *doc;
		int err = 0;

		if (start)
			snprintf(name, sizeof(name), "%s.%llu", X_FILES, start);
		else
			snprintf(name, sizeof(name), "%s", X_FILES);
		doc = get_doc(mnt, name, &err);
		if (!doc) {
			fprintf(stderr, "h5memfs: cannot list the files in "
				"memory of %s: %s\n", mnt, strerror(err));
			so.failed++;
			return;
		}
		p = strchr(doc, '[');
		while (p && (obj = next_object(p, &len))) {
			char *one = strndup(obj, len), *rel, *full = NULL;

			rel = one ? jstr(one, "path") : NULL;
			if (rel && asprintf(&full, "%s%s%s", mnt,
					    strcmp(mnt, "/") ? "/" : "",
					    rel) < 0)
				full = NULL;
			if (full)
				show_file(one, len, full);
			free(full);
			free(rel);
			free(one);
			p = obj + len;
		}
		/* "next" follows the array: no name can hide it */
		jget(p ? p : doc, "next", v, sizeof(v));
		free(doc);
		if (!strcmp(v, "null") || !strcmp(v, "-"))
			return;
		start = strtoull(v, NULL, 10);
	}
}

static void status_table_head(const char *mnt, const char *json)
{
	char *source = jstr(json, "source"), v[64], v2[64], h[16];
	const char *pre = strstr(json, "\"preload\"");

	printf("mount %s (source %s)\n", mnt, source ? source : "-");
	free(source);
	printf("  daemon PID %s,", jget(json, "pid", v, sizeof(v)));
	printf(" data path %s, volatile %s\n",
	       jget(json, "data_path", v, sizeof(v)),
	       jget(json, "volatile", h, sizeof(h)));
	printf("  memory %s", human(jget(json, "memory_used", v, sizeof(v)),
				    h, sizeof(h)));
	printf(" of %s,", human(jget(json, "max_memory", v, sizeof(v)), h,
				sizeof(h)));
	printf(" %s file(s) loaded,", jget(json, "files_loaded", v,
					   sizeof(v)));
	printf(" dirty %s in %s file(s)\n",
	       human(jget(json, "dirty_bytes", v, sizeof(v)), h, sizeof(h)),
	       jget(json, "dirty_files", v2, sizeof(v2)));
	if (pre && strcmp(jget(pre, "state", v, sizeof(v)), "off")) {
		printf("  preload %s:", v);
		printf(" %s file(s),", jget(pre, "files", v, sizeof(v)));
		printf(" %s loaded,", human(jget(pre, "bytes", v, sizeof(v)), h,
					    sizeof(h)));
		printf(" %s skipped (no room)\n",
		       jget(pre, "skipped", v, sizeof(v)));
	}
	if (strcmp(jget(json, "partial_files", v, sizeof(v)), "0")) {
		uint64_t all, have;

		all = strtoull(jget(json, "partial_bytes", v2, sizeof(v2)),
			       NULL, 10);
		have = strtoull(jget(json, "partial_loaded_bytes", v2,
				     sizeof(v2)), NULL, 10);
		printf("  loading %s file(s): %s", v,
		       human(jget(json, "partial_loaded_bytes", v2, sizeof(v2)),
			     h, sizeof(h)));
		printf(" of %s in memory (%u%%)\n",
		       human(jget(json, "partial_bytes", v2, sizeof(v2)), h,
			     sizeof(h)),
		       all ? (unsigned)(have * 100 / all) : 100u);
	}
	printf("  write-backs %s", jget(json, "writebacks", v, sizeof(v)));
	printf(" (%s errors,", jget(json, "writeback_errors", v, sizeof(v)));
	printf(" %s conflicts,", jget(json, "conflicts", v, sizeof(v)));
	printf(" %s refused as invalid HDF5,",
	       jget(json, "invalid", v, sizeof(v)));
	printf(" %s namespace changes refused by SOURCE)\n\n",
	       jget(json, "namespace_errors", v, sizeof(v)));
	printf("%-13s %8s %8s %8s  %-20s %s\n", "STATE", "SIZE", "MEMORY",
	       "DIRTY", "LAST WRITE-BACK", "PATH");
}

static int cmd_status(int argc, char **argv)
{
	const char *path = NULL;
	char *mnt, *json;
	int err = 0;

	so = (typeof(so)){ .first = true };
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			so.json = true;
		else if (!strcmp(argv[i], "--all"))
			so.all = true;
		else if (!strcmp(argv[i], "--hdf5"))
			so.hdf5 = true;
		else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "h5memfs status: unknown option '%s' "
				"(see h5memfs status --help)\n", argv[i]);
			return 1;
		} else if (!path) {
			path = argv[i];
		} else {
			fprintf(stderr, "h5memfs status: one MOUNTPOINT only "
				"(got '%s' too)\n", argv[i]);
			return 1;
		}
	}
	if (!path) {
		help("status", stderr);
		return 1;
	}
	mnt = require_mount(path);
	if (!mnt)
		return 1;
	json = get_status(mnt, &err);
	if (!json) {
		fprintf(stderr, "h5memfs: cannot read the status of %s: %s\n",
			mnt, err == ENOTCONN || err == ECONNABORTED ?
			"the daemon of this mount is gone (a dead mount: "
			"h5memfs unmount MOUNTPOINT detaches it)" :
			strerror(err));
		free(mnt);
		return 1;
	}
	if (so.json) {
		printf("{\"mount\": %s,\n \"mountpoint\": ", json);
		print_json_str(mnt);
		printf(",\n \"files\": [");
	} else {
		status_table_head(mnt, json);
	}
	if (so.all)
		nftw(mnt, walk_file, 64, FTW_PHYS | FTW_MOUNT);
	else
		list_loaded(mnt);
	if (so.json)
		printf("\n ]}\n");
	else if (!so.shown && !so.all)
		printf("(no file in memory; --all lists every file)\n");
	free(json);
	free(mnt);
	return so.failed ? 1 : 0;
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
			help(cmd, stdout);
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
		help(cmd, stderr);
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
