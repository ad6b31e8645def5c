/*
 * h5internal.h - between h5check.c and isolate.c only.
 */
#ifndef H5M_H5INTERNAL_H
#define H5M_H5INTERNAL_H

#include <stdint.h>

#include "h5check.h"

/*
 * The lock every libhdf5 call is made under. Held across fork(), so that
 * the child's copy of libhdf5 is in no other thread's middle.
 */
void h5_lock_take(void);
void h5_lock_drop(void);

/* h5_inspect, with the lock already held by the caller. */
int h5_inspect_held(int fd, uint64_t size, struct h5_report *r);

/* 1 when the HDF5 signature is in the image, 0 when not, -1 too small. */
int h5_signature(int fd, uint64_t size);

#endif
