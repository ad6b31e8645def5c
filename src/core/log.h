/*
 * log.h - the project's one way to report: to stderr in the foreground,
 * to syslog once daemonised. Not a tracing framework: debug lines appear
 * only with -d.
 */
#ifndef H5M_LOG_H
#define H5M_LOG_H

#include <stdbool.h>

enum log_level { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Set where messages go and the most verbose level printed. */
void log_setup(bool use_syslog, enum log_level max);

/* printf-style message, prefixed "h5memfs: " and ended with a newline. */
void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
