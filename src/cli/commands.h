/*
 * commands.h - `h5memfs status|sync|discard|evict`: the user's side of
 * the control channel (virtual xattrs, see src/fuse/control.c).
 */
#ifndef H5M_COMMANDS_H
#define H5M_COMMANDS_H

#include <stdbool.h>

/* Whether argv[1] names a command rather than a mount. */
bool cmd_is_command(int argc, char **argv);

/* Run the command; returns the exit status (0 ok, 1 some failure). */
int cmd_main(int argc, char **argv);

#endif
