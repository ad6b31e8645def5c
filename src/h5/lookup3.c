/*
 * lookup3.c - Bob Jenkins' lookup3 hashlittle, byte by byte: the
 * checksum of HDF5 metadata (superblock v2/v3 and others). Needed to
 * clear the superblock status flags in a private page; libhdf5 does not
 * export its own.
 */
#include "h5check.h"

#include <stddef.h>

#define ROT(x, k) (((x) << (k)) | ((x) >> (32 - (k))))

#define MIX(a, b, c)                                                           \
	do {                                                                   \
		a -= c; a ^= ROT(c, 4); c += b;                                \
		b -= a; b ^= ROT(a, 6); a += c;                                \
		c -= b; c ^= ROT(b, 8); b += a;                                \
		a -= c; a ^= ROT(c, 16); c += b;                               \
		b -= a; b ^= ROT(a, 19); a += c;                               \
		c -= b; c ^= ROT(b, 4); b += a;                                \
	} while (0)

#define FINAL(a, b, c)                                                         \
	do {                                                                   \
		c ^= b; c -= ROT(b, 14);                                       \
		a ^= c; a -= ROT(c, 11);                                       \
		b ^= a; b -= ROT(a, 25);                                       \
		c ^= b; c -= ROT(b, 16);                                       \
		a ^= c; a -= ROT(c, 4);                                        \
		b ^= a; b -= ROT(a, 14);                                       \
		c ^= b; c -= ROT(b, 24);                                       \
	} while (0)

static uint32_t le32(const uint8_t *k, size_t n)
{
	uint32_t v = 0;

	for (size_t i = 0; i < n; i++)
		v |= (uint32_t)k[i] << (8 * i);
	return v;
}

uint32_t h5_lookup3(const void *key, size_t length, uint32_t initval)
{
	const uint8_t *k = key;
	uint32_t a, b, c;

	a = b = c = 0xdeadbeef + (uint32_t)length + initval;
	while (length > 12) {
		a += le32(k, 4);
		b += le32(k + 4, 4);
		c += le32(k + 8, 4);
		MIX(a, b, c);
		length -= 12;
		k += 12;
	}
	if (length == 0)
		return c;
	a += le32(k, length < 4 ? length : 4);
	if (length > 4)
		b += le32(k + 4, length < 8 ? length - 4 : 4);
	if (length > 8)
		c += le32(k + 8, length - 8);
	FINAL(a, b, c);
	return c;
}
