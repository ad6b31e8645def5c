/*
 * log.c - stderr or syslog output for the daemon and the library.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

static bool log_syslog;
static enum log_level log_max = LOG_LVL_WARN;

void log_setup(bool use_syslog, enum log_level max)
{
	log_syslog = use_syslog;
	log_max = max;
	if (use_syslog)
		openlog("h5memfs", LOG_PID, LOG_DAEMON);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	va_list ap;

	if (lvl > log_max)
		return;
	va_start(ap, fmt);
	if (log_syslog) {
		vsyslog(prio[lvl], fmt, ap);
	} else {
		char line[1024];

		vsnprintf(line, sizeof(line), fmt, ap);
		fprintf(stderr, "h5memfs: %s\n", line);
	}
	va_end(ap);
}
