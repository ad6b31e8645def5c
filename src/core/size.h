/*
 * size.h - parsing of sizes given by users ("64K", "2G", "50%").
 */
#ifndef H5M_SIZE_H
#define H5M_SIZE_H

#include <stdint.h>

/*
 * Parse SIZE: a decimal number with an optional K, M, G or T suffix
 * (powers of 1024, either case), or "N%" of ram_bytes when ram_bytes != 0.
 * Returns 0 and stores the value, or -EINVAL for anything else (empty,
 * trailing junk, overflow, a percentage outside 1..100).
 */
int size_parse(const char *s, uint64_t ram_bytes, uint64_t *out);

/* Total physical memory in bytes (sysconf), 0 if unknown. */
uint64_t size_ram_bytes(void);

#endif
