/*
 * options.c - fuse_opt table, value checks and --help for the daemon.
 */
#define FUSE_USE_VERSION 312
#include "options.h"

#include <fuse3/fuse_lowlevel.h>

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "../core/log.h"
#include "../core/memroom.h"
#include "../core/size.h"

#define OPT(t, p, v) { t, offsetof(struct opts, p), v }

enum { KEY_HELP, KEY_VERSION, KEY_FG, KEY_DEBUG, KEY_ST };

static const struct fuse_opt opt_table[] = {
	OPT("volatile", volatile_, 1),
	OPT("backing_store=%s", backing_store, 0),
	OPT("increment=%s", increment_s, 0),
	OPT("page_size=%s", page_size_s, 0),
	OPT("notify_pipe=%s", notify_pipe, 0),
	OPT("validate=%s", validate_s, 0),
	OPT("commit=%s", commit_s, 0),
	OPT("source_timeout=%s", source_timeout_s, 0),
	OPT("rescue=%s", rescue, 0),
	OPT("log_level=%s", log_level_s, 0),
	OPT("passthrough=%s", passthrough_s, 0),
	OPT("images=%s", images_s, 0),
	OPT("load=%s", load_s, 0),
	OPT("max_memory=%s", max_memory_s, 0),
	OPT("preload", preload, 1),
	OPT("sync_on_close", sync_on_close, 1),
	OPT("ro", ro, 1),
	FUSE_OPT_KEY("ro", FUSE_OPT_KEY_KEEP),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_KEY("-f", KEY_FG),
	FUSE_OPT_KEY("-d", KEY_DEBUG),
	FUSE_OPT_KEY("debug", KEY_DEBUG),
	FUSE_OPT_KEY("-s", KEY_ST),
	FUSE_OPT_END
};

/* Mount options libfuse or the kernel understand, passed on as they are. */
static const char *const fuse_words[] = {
	"rw", "allow_other", "allow_root", "default_permissions",
	"auto_unmount", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
	"atime", "noatime", "relatime", "norelatime", "strictatime",
	"sync", "async", "dirsync", "fsname=", "subtype=", "max_read=",
	"blksize=", NULL
};

/*
 * Words that only mean something to mount(8) and /etc/fstab. They may
 * reach us through mount.fuse3 or a helper; ignore them as sshfs does.
 */
static const char *const fstab_words[] = {
	"defaults", "noauto", "auto", "user", "users", "nouser", "nofail",
	"_netdev", "owner", "group", "comment=", "x-", NULL
};

static bool word_in(const char *arg, const char *const *list)
{
	for (; *list; list++) {
		size_t l = strlen(*list);

		if ((*list)[l - 1] == '=' || (*list)[l - 1] == '-') {
			if (!strncmp(arg, *list, l))
				return true;
		} else if (!strcmp(arg, *list)) {
			return true;
		}
	}
	return false;
}

static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct opts *o = data;

	(void)outargs;
	switch (key) {
	case KEY_HELP:
		o->show_help = 1;
		return 0;
	case KEY_VERSION:
		o->show_version = 1;
		return 0;
	case KEY_FG:
		o->foreground = 1;
		return 0;
	case KEY_DEBUG:
		o->debug = o->foreground = 1;
		return 1; /* libfuse prints requests too */
	case KEY_ST:
		o->single_thread = 1;
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		if (!o->mountpoint) {
			o->mountpoint = strdup(arg);
		} else if (!o->source) {
			o->source = o->mountpoint;
			o->mountpoint = strdup(arg);
		} else {
			fprintf(stderr, "h5memfs: unexpected argument '%s': "
				"give SOURCE and MOUNTPOINT only\n", arg);
			return -1;
		}
		return 0;
	case FUSE_OPT_KEY_OPT:
		/*
		 * FUSE leaves atime to the daemon: it must know the rule
		 * (enum fs_atime: 0 relatime, 1 strictatime, 2 noatime).
		 * libfuse 3.14 knows only atime and noatime: the others
		 * stay here.
		 */
		if (!strcmp(arg, "noatime"))
			o->atime = 2;
		else if (!strcmp(arg, "strictatime") ||
			 !strcmp(arg, "norelatime"))
			o->atime = 1;
		else if (!strcmp(arg, "relatime") || !strcmp(arg, "atime"))
			o->atime = 0;
		if (!strcmp(arg, "strictatime") || !strcmp(arg, "norelatime") ||
		    !strcmp(arg, "relatime"))
			return 0;
		if (word_in(arg, fuse_words))
			return 1;
		if (word_in(arg, fstab_words))
			return 0;
		fprintf(stderr, "h5memfs: unknown option '%s' (see "
			"h5memfs --help)\n", arg);
		return -1;
	}
	return 1;
}

/*
 * max_memory: as given (a size, or a percentage of the room), else half
 * the room: RAM, or what the memory cgroup leaves (memroom.h), so that a
 * job under a memory limit meets ENOSPC rather than the OOM killer.
 */
static int set_max_memory(struct opts *o)
{
	const char *from;
	char *group;
	uint64_t room = memroom_bytes(&from, &group);
	int n;

	if (o->max_memory_s) {
		if (size_parse(o->max_memory_s, room, &o->max_memory) < 0 ||
		    o->max_memory < (1 << 20)) {
			fprintf(stderr, "h5memfs: invalid value '%s' for "
				"option max_memory: expected a size of at "
				"least 1M (K, M, G, T suffixes) or a "
				"percentage like 50%% (of %s)\n",
				o->max_memory_s,
				group ? "what the memory cgroup leaves" : "RAM");
			free(group);
			return -1;
		}
		n = asprintf(&o->max_memory_from, "max_memory=%s",
			     o->max_memory_s);
	} else {
		o->max_memory = room / 2;
		n = group ? asprintf(&o->max_memory_from,
				     "half of what cgroup %s leaves", group)
			  : asprintf(&o->max_memory_from, "half of RAM");
	}
	free(group);
	if (n < 0)
		o->max_memory_from = NULL;
	return 0;
}

static int check_size(const char *name, const char *val, uint64_t def,
		      uint64_t min, bool pow2, uint64_t *out)
{
	if (!val) {
		*out = def;
		return 0;
	}
	if (size_parse(val, 0, out) < 0 || *out < min ||
	    (pow2 && (*out & (*out - 1)))) {
		fprintf(stderr, "h5memfs: invalid value '%s' for option %s: "
			"expected a size%s of at least %llu bytes, "
			"like 64K\n", val, name,
			pow2 ? " that is a power of two" : "",
			(unsigned long long)min);
		return -1;
	}
	return 0;
}

static int check_dir(const char *what, const char *path, int mode)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "h5memfs: %s '%s' cannot be used: %s\n", what,
			path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "h5memfs: %s '%s' is not a directory\n", what,
			path);
		return -1;
	}
	if (access(path, mode) < 0) {
		fprintf(stderr, "h5memfs: %s '%s' is not accessible: %s\n",
			what, path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Whether directory `in` is `dir` or below it (both canonical). */
static bool inside(const char *in, const char *dir)
{
	size_t l = strlen(dir);

	if (l == 1) /* "/" contains everything */
		return true;
	return !strncmp(in, dir, l) && (in[l] == '/' || in[l] == '\0');
}

static int check_paths(struct opts *o)
{
	char *src = NULL, *mnt = NULL;
	int ret = -1;

	if (!o->mountpoint) {
		fprintf(stderr, "h5memfs: missing MOUNTPOINT (usage: h5memfs "
			"[OPTIONS] SOURCE MOUNTPOINT)\n");
		return -1;
	}
	if (!o->source && !o->volatile_) {
		fprintf(stderr, "h5memfs: missing SOURCE: give SOURCE "
			"MOUNTPOINT, or -o volatile MOUNTPOINT for an empty "
			"workspace\n");
		return -1;
	}
	if (check_dir("MOUNTPOINT", o->mountpoint, R_OK | X_OK) < 0)
		return -1;
	if (o->source &&
	    check_dir("SOURCE", o->source,
		      R_OK | X_OK | (o->volatile_ ? 0 : W_OK)) < 0)
		return -1;
	mnt = realpath(o->mountpoint, NULL);
	if (o->source)
		src = realpath(o->source, NULL);
	if (!mnt || (o->source && !src)) {
		fprintf(stderr, "h5memfs: cannot resolve '%s': %s\n",
			mnt ? o->source : o->mountpoint, strerror(errno));
		goto out;
	}
	if (src && inside(mnt, src)) {
		fprintf(stderr, "h5memfs: MOUNTPOINT '%s' is inside SOURCE "
			"'%s'; choose a mountpoint outside it\n", mnt, src);
		goto out;
	}
	if (src && inside(src, mnt)) {
		fprintf(stderr, "h5memfs: SOURCE '%s' is inside MOUNTPOINT "
			"'%s'; choose a mountpoint outside it\n", src, mnt);
		goto out;
	}
	free(o->mountpoint);
	o->mountpoint = mnt;
	mnt = NULL;
	if (src) {
		free(o->source);
		o->source = src;
		src = NULL;
	}
	ret = 0;
out:
	free(src);
	free(mnt);
	return ret;
}

/*
 * A whole number of seconds, at most `max`, for option `name`; *out is
 * left alone when the option was not given. 0, or -1 after saying why.
 */
static int check_seconds(const char *name, const char *s, unsigned long max,
			 unsigned *out)
{
	char *end;
	unsigned long v;

	if (!s)
		return 0;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno == ERANGE || (!errno && *end == '\0' && end != s &&
				s[0] != '-' && v > max)) {
		fprintf(stderr, "h5memfs: invalid value '%s' for option %s: "
			"at most %lu seconds (%lu days)\n", s, name, max,
			max / 86400);
		return -1;
	}
	if (errno || *end || end == s || s[0] == '-') {
		fprintf(stderr, "h5memfs: invalid value '%s' for option %s: "
			"expected a whole number of seconds from 0 to %lu\n",
			s, name, max);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

static int check_values(struct opts *o)
{
	if (o->backing_store) {
		if (!strcmp(o->backing_store, "0")) {
			o->volatile_ = 1;
		} else if (strcmp(o->backing_store, "1") != 0) {
			fprintf(stderr, "h5memfs: invalid value '%s' for "
				"option backing_store: expected 0 or 1\n",
				o->backing_store);
			return -1;
		}
	}
	if (check_size("increment", o->increment_s, 64 << 10, 1, false,
		       &o->increment) < 0 ||
	    check_size("page_size", o->page_size_s, 64 << 10, 4096, true,
		       &o->page_size) < 0)
		return -1;
	if (set_max_memory(o) < 0)
		return -1;
	if (!o->validate_s || !strcmp(o->validate_s, "strict")) {
		o->validate = 0;
	} else if (!strcmp(o->validate_s, "warn")) {
		o->validate = 1;
	} else if (!strcmp(o->validate_s, "off")) {
		o->validate = 2;
	} else {
		fprintf(stderr, "h5memfs: invalid value '%s' for option "
			"validate: expected strict, warn or off\n",
			o->validate_s);
		return -1;
	}
	o->source_timeout = 10;
	if (check_seconds("commit", o->commit_s, 86400 * 365,
			  &o->commit) < 0 ||
	    check_seconds("source_timeout", o->source_timeout_s, 86400,
			  &o->source_timeout) < 0)
		return -1;
	o->log_level = o->debug ? LOG_LVL_DEBUG : LOG_LVL_WARN;
	if (o->log_level_s &&
	    (o->log_level = log_level_parse(o->log_level_s)) < 0) {
		fprintf(stderr, "h5memfs: invalid value '%s' for option "
			"log_level: expected error, warn, info or debug\n",
			o->log_level_s);
		return -1;
	}
	if (!o->passthrough_s || !strcmp(o->passthrough_s, "auto")) {
		o->passthrough = 0;
	} else if (!strcmp(o->passthrough_s, "on")) {
		o->passthrough = 1;
	} else if (!strcmp(o->passthrough_s, "off")) {
		o->passthrough = 2;
	} else {
		fprintf(stderr, "h5memfs: invalid value '%s' for option "
			"passthrough: expected auto, on or off\n",
			o->passthrough_s);
		return -1;
	}
	if (!o->images_s || !strcmp(o->images_s, "tmpfs")) {
		o->images_memfd = false;
	} else if (!strcmp(o->images_s, "memfd")) {
		o->images_memfd = true;
	} else {
		fprintf(stderr, "h5memfs: invalid value '%s' for option "
			"images: expected tmpfs or memfd\n", o->images_s);
		return -1;
	}
	if (!o->load_s || !strcmp(o->load_s, "lazy")) {
		o->lazy = 1;
	} else if (!strcmp(o->load_s, "whole")) {
		o->lazy = 0;
	} else {
		fprintf(stderr, "h5memfs: invalid value '%s' for option "
			"load: expected lazy or whole\n", o->load_s);
		return -1;
	}
	if (o->rescue && o->rescue[0] != '/') {
		fprintf(stderr, "h5memfs: invalid value '%s' for option "
			"rescue: expected an absolute directory path\n",
			o->rescue);
		return -1;
	}
	return 0;
}

/* Add "-o NAME" to libfuse's arguments. */
static int add_fuse_opt(struct opts *o, const char *fmt, const char *val)
{
	char *s;
	int r;

	if (asprintf(&s, fmt, val) < 0)
		return -1;
	r = fuse_opt_add_arg(&o->fuse_args, "-o") ||
	    fuse_opt_add_arg(&o->fuse_args, s);
	free(s);
	return r ? -1 : 0;
}

/* fsname is shown in /proc/mounts: commas there would split options */
static char *escape_commas(const char *s)
{
	char *out = malloc(strlen(s) * 2 + 1), *p = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		if (*s == ',' || *s == '\\')
			*p++ = '\\';
		*p++ = *s;
	}
	*p = '\0';
	return out;
}

int opts_parse(struct opts *o, int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	char *fsname;
	int r;

	memset(o, 0, sizeof(*o));
	if (fuse_opt_parse(&args, o, opt_table, opt_proc) < 0) {
		o->fuse_args = args;
		return -1;
	}
	o->fuse_args = args;
	if (o->show_help) {
		opts_print_help(argv[0]);
		return 1;
	}
	if (o->show_version) {
		unsigned maj = 0, min = 0, rel = 0;

		H5get_libversion(&maj, &min, &rel);
		printf("h5memfs version %s\nlibfuse version %s\n"
		       "libhdf5 version %u.%u.%u\n", H5MEMFS_VERSION,
		       fuse_pkgversion(), maj, min, rel);
		return 1;
	}
	if (check_values(o) < 0 || check_paths(o) < 0)
		return -1;
	fsname = escape_commas(o->source ? o->source : "h5memfs");
	r = !fsname || add_fuse_opt(o, "subtype=%s", "h5memfs") ||
	    add_fuse_opt(o, "fsname=%s", fsname) ||
	    add_fuse_opt(o, "%s", "default_permissions");
	free(fsname);
	if (r) {
		fprintf(stderr, "h5memfs: out of memory\n");
		return -1;
	}
	return 0;
}

void opts_free(struct opts *o)
{
	free(o->source);
	free(o->mountpoint);
	free(o->backing_store);
	free(o->increment_s);
	free(o->page_size_s);
	free(o->notify_pipe);
	free(o->validate_s);
	free(o->commit_s);
	free(o->source_timeout_s);
	free(o->log_level_s);
	free(o->rescue);
	free(o->passthrough_s);
	free(o->images_s);
	free(o->load_s);
	free(o->max_memory_s);
	free(o->max_memory_from);
	fuse_opt_free_args(&o->fuse_args);
}

void opts_print_help(const char *prog)
{
	printf(
"usage: %s [OPTIONS] SOURCE MOUNTPOINT\n"
"       %s -o volatile [OPTIONS] [SOURCE] MOUNTPOINT\n"
"       h5memfs unmount [--lazy] [--timeout SECONDS] MOUNTPOINT...\n"
"                              write back, unmount, wait for the daemon\n"
"                              and exit with its status\n"
"       h5memfs status [--json] [--all] [--hdf5] MOUNTPOINT\n"
"       h5memfs sync MOUNTPOINT|PATH...      write back now\n"
"       h5memfs discard PATH...              drop unsaved changes\n"
"       h5memfs evict PATH...                drop clean images from memory\n"
"       h5memfs COMMAND --help               each command's own help\n"
"\n"
"Mount SOURCE at MOUNTPOINT, holding every file opened through the mount\n"
"in memory. fsync, unmount and SIGTERM write changes back to SOURCE.\n"
"\n"
"h5memfs options:\n"
"    -o volatile            never write anything to SOURCE (alias\n"
"                           backing_store=0); SOURCE may be read-only\n"
"    -o backing_store=0|1   0 is volatile; 1 (default) writes back\n"
"    -o increment=SIZE      image growth step (default 64K)\n"
"    -o page_size=SIZE      dirty tracking page, a power of two >= 4K\n"
"                           (default 64K)\n"
"    -o max_memory=SIZE     cap on the memory of all images together\n"
"                           (K/M/G/T, or N%% of RAM or of the memory\n"
"                           cgroup's room; default 50%%): clean\n"
"                           images nobody has open are evicted first,\n"
"                           then writes fail with ENOSPC\n"
"    -o preload             load every file at mount, in the background\n"
"    -o load=lazy|whole     lazy (default): an open returns at once, the\n"
"                           file fills in from SOURCE as it is read and\n"
"                           in the background; whole: an open loads it\n"
"                           all first\n"
"    -o validate=strict|warn|off\n"
"                           check HDF5 images with libhdf5 before they\n"
"                           replace their file; strict refuses an image\n"
"                           that does not open (default strict)\n"
"    -o commit=SECONDS      write dirty files back every SECONDS\n"
"                           (default 0: only on fsync and unmount)\n"
"    -o source_timeout=SECONDS\n"
"                           give up on SOURCE after SECONDS without an\n"
"                           answer: the open or listing that needed it\n"
"                           fails with EIO (default 10; 0 waits for ever)\n"
"    -o sync_on_close       write a file back when its last handle closes\n"
"    -o rescue=DIR          where images that cannot be written back at\n"
"                           unmount are saved (default\n"
"                           /var/tmp/h5memfs-rescue/NAME-DATE-PID)\n"
"    -o passthrough=auto|on|off\n"
"                           data path: the kernel serves reads, writes\n"
"                           and mmap from the images itself (Linux 6.9+,\n"
"                           root); off: the daemon serves them with the\n"
"                           kernel's writeback cache (default auto)\n"
"    -o images=tmpfs|memfd  where images live: a private tmpfs sized to\n"
"                           max_memory (default, when the daemon may\n"
"                           mount), or memfds, as without CAP_SYS_ADMIN\n"
"    -o notify_pipe=PATH    write \"ready\" to the FIFO at PATH once the\n"
"                           mount serves requests\n"
"    -o log_level=error|warn|info|debug\n"
"                           the most verbose messages logged, to stderr\n"
"                           in the foreground, to syslog (identifier\n"
"                           h5memfs) in the background (default warn;\n"
"                           -d: debug)\n"
"\n"
"FUSE and mount options:\n"
"    -o ro                  read-only mount\n"
"    -o allow_other         let other users in (needs user_allow_other\n"
"                           in /etc/fuse.conf when not root)\n"
"    -o default_permissions kernel permission checks (always on)\n"
"    -f                     stay in the foreground\n"
"    -d                     foreground, with a debug log of requests\n"
"    -s                     single-threaded\n"
"    -h, --help             this text\n"
"    -V, --version          the version\n"
"\n"
"SIZE: a number with an optional K, M, G or T suffix.\n"
"One file can be made volatile: setfattr -n user.h5memfs.volatile -v 1 FILE\n"
"fstab-only words (noauto, user, users, nouser, nofail, _netdev, x-*)\n"
"are accepted and ignored.\n", prog, prog);
}
