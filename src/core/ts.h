/*
 * ts.h - comparing struct timespec values (times of files).
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

#endif
