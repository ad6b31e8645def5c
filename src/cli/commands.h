/*
 * commands.h - `h5memfs status|sync|discard|evict|unmount`: the user's side of
 * the control channel (virtual xattrs, see src/fuse/control.c).
 */
#ifndef H5M_COMMANDS_H
#define H5M_COMMANDS_H

#include <stdbool.h>
#include <stdio.h>

/* Whether argv[1] names a command rather than a mount. */
bool cmd_is_command(int argc, char **argv);

/* Run the command; returns the exit status (0 ok, 1 some failure). */
int cmd_main(int argc, char **argv);

/*
 * Whether argv[1] looks like a command word that is not one: no '/', not
 * an existing path, not an option (a mount's SOURCE is a directory that
 * exists). Says so on stderr when true.
 */
bool cmd_is_unknown(int argc, char **argv);

/* help.c: a command's --help text on f (another word: the program's). */
void cmd_help(const char *cmd, FILE *f);

/* status.c: `h5memfs status`; exit status 0 or 1. */
int cmd_status(int argc, char **argv);

/* unmount.c: `h5memfs unmount`; exit status 0, 1 or 2 (see --help). */
int cmd_unmount(int argc, char **argv);

#endif
