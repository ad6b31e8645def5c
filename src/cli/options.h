/*
 * options.h - the command line of the daemon: parsing with fuse_opt,
 * checking every value and path, --help.
 *
 * Not the place for mounting: the result is a struct opts and the FUSE
 * arguments (ro, allow_other, fsname, ...) to hand to libfuse.
 */
#ifndef H5M_OPTIONS_H
#define H5M_OPTIONS_H

#include <fuse3/fuse_opt.h>
#include <stdbool.h>
#include <stdint.h>

struct opts {
	/* as given */
	char *source;		/* NULL for an empty volatile workspace */
	char *mountpoint;
	int volatile_;
	char *backing_store;
	char *increment_s, *page_size_s;
	char *notify_pipe;
	char *validate_s, *commit_s, *rescue, *passthrough_s, *max_memory_s;
	char *source_timeout_s;
	char *load_s;
	char *log_level_s;
	char *images_s;
	int preload;
	int sync_on_close;
	int foreground, debug, single_thread;
	int show_help, show_version;
	int ro;
	/* checked and converted */
	uint64_t increment, page_size, max_memory;
	char *max_memory_from;	/* why max_memory is what it is (status) */
	int validate;			/* enum fs_validate */
	unsigned commit;		/* seconds, 0 = off */
	unsigned source_timeout;	/* seconds, 0 = wait for ever */
	int passthrough;		/* 0 auto, 1 on, 2 off */
	bool images_memfd;		/* images=memfd: no private tmpfs */
	int lazy;			/* load=lazy (1, default) or whole */
	int log_level;			/* enum log_level */
	int atime;			/* enum fs_atime: 0 relatime, 1 strict,
				   2 noatime */
	struct fuse_args fuse_args;	/* what libfuse parses */
};

/*
 * Parse argv. Returns 0 when the daemon should go on, 1 when it should
 * exit 0 (--help, --version, already printed), or -1 after printing one
 * sentence naming the wrong option, value or path to stderr.
 * opts_free() releases what was allocated, in every case.
 */
int opts_parse(struct opts *o, int argc, char **argv);
void opts_free(struct opts *o);

/* The usage and option list, as --help prints it. */
void opts_print_help(const char *prog);

#endif
