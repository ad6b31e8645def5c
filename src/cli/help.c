/*
 * help.c - the commands' --help texts (the program's own: options.c).
 */
#include "commands.h"

#include "options.h"

#include <stdio.h>
#include <string.h>

void cmd_help(const char *cmd, FILE *f)
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
