/*
 * log.c - stderr or syslog output for the daemon and the library.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

static bool log_syslog;
static enum log_level log_max = LOG_LVL_WARN;
static const char *log_mount;

void log_setup(bool use_syslog, enum log_level max, const char *mount)
{
	log_syslog = use_syslog;
	log_max = max;
	log_mount = mount;
	if (use_syslog)
		openlog("h5memfs", LOG_PID, LOG_DAEMON);
}

int log_level_parse(const char *word)
{
	static const char *const names[] = { "error", "warn", "info",
					     "debug" };

	for (int i = 0; i < 4; i++)
		if (!strcmp(word, names[i]))
			return i;
	return -1;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	va_list ap;

	if (lvl > log_max)
		return;
	char line[1024];

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (log_syslog)
		syslog(prio[lvl], "%s%s%s", log_mount ? log_mount : "",
		       log_mount ? ": " : "", line);
	else
		fprintf(stderr, "h5memfs%s%s%s: %s\n", log_mount ? "[" : "",
			log_mount ? log_mount : "", log_mount ? "]" : "", line);
}
