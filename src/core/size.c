/*
 * size.c - parse user sizes.
 */
#include "size.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

int size_parse(const char *s, uint64_t ram_bytes, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end == '%') {
		if (end[1] || !ram_bytes || v == 0 || v > 100)
			return -EINVAL;
		*out = ram_bytes / 100 * v;
		return 0;
	}
	switch (toupper((unsigned char)*end)) {
	case 'T': shift = 40; break;
	case 'G': shift = 30; break;
	case 'M': shift = 20; break;
	case 'K': shift = 10; break;
	case '\0': break;
	default: return -EINVAL;
	}
	if (*end && end[1])
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

uint64_t size_ram_bytes(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

	return pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
}
