/*
 * log.h - the project's one way to report: to stderr in the foreground,
 * to syslog (identifier h5memfs, facility daemon) once daemonised. The
 * most verbose level printed is the same in both (-o log_level, default
 * warn; -d: debug). Every line names the mount point once it is known.
 * Not a tracing framework.
 */
#ifndef H5M_LOG_H
#define H5M_LOG_H

#include <stdbool.h>

enum log_level { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/*
 * Set where messages go, the most verbose level printed and the mount
 * point every line names (NULL: none). `mount` must outlive the logging.
 */
void log_setup(bool use_syslog, enum log_level max, const char *mount);

/* The level named by `word` (error, warn, info, debug), or -1. */
int log_level_parse(const char *word);

/* printf-style message, prefixed "h5memfs: " and ended with a newline. */
void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
