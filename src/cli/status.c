/*
 * status.c - `h5memfs status`: the mount's state, its loaded files, and
 * with --hdf5 what libhdf5 sees in each (read by a child of this process,
 * never by the daemon).
 */
#include "commands.h"

#include "common.h"
#include "mounts.h"
#include "../core/strbuf.h"
#include "../h5/h5check.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

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

int cmd_status(int argc, char **argv)
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
		cmd_help("status", stderr);
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
