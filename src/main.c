/*
 * main.c - start-up and tear-down of the h5memfs daemon, nothing else.
 */
#include <stdlib.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/log.h"
#include "fuse/session.h"

int main(int argc, char **argv)
{
	struct opts o;
	int r, status;

	if (cmd_is_command(argc, argv))
		return cmd_main(argc, argv);
	if (cmd_is_unknown(argc, argv))
		return 1;
	r = opts_parse(&o, argc, argv);
	if (r != 0) {
		opts_free(&o);
		return r > 0 ? 0 : 1;
	}
	log_setup(false, (enum log_level)o.log_level, o.mountpoint);
	status = session_run(&o);
	opts_free(&o);
	return status;
}
