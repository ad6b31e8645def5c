/*
 * ts.h - comparing struct timespec values (times of files), and the
 * deadlines of timed waits.
 */
#ifndef H5M_TS_H
#define H5M_TS_H

#include <stdbool.h>
#include <time.h>

static inline bool ts_equal(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

static inline bool ts_before(struct timespec a, struct timespec b)
{
	return a.tv_sec < b.tv_sec ||
	       (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

/* `ms` milliseconds from now on `clock`: a pthread timed wait's deadline. */
static inline struct timespec ts_in_ms(clockid_t clock, unsigned long ms)
{
	struct timespec t;

	clock_gettime(clock, &t);
	t.tv_nsec += (long)(ms % 1000) * 1000000L;
	t.tv_sec += (time_t)(ms / 1000) + t.tv_nsec / 1000000000L;
	t.tv_nsec %= 1000000000L;
	return t;
}

#endif
