/*
 * acl.c - POSIX ACL values: checks and the mode <-> ACL rules of the
 * kernel (posix_acl_equiv_mode, posix_acl_chmod, posix_acl_create).
 */
#include "acl.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#define HDR 4
#define ENTRY 8
#define VERSION 2

enum { T_USER_OBJ = 0x01, T_USER = 0x02, T_GROUP_OBJ = 0x04,
       T_GROUP = 0x08, T_MASK = 0x10, T_OTHER = 0x20 };

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static void put16(unsigned char *p, unsigned v)
{
	p[0] = (unsigned char)(v & 0xff);
	p[1] = (unsigned char)(v >> 8);
}

bool acl_valid(const void *v, size_t size)
{
	const unsigned char *p = v;
	unsigned seen = 0;

	if (!v || size < HDR + 3 * ENTRY || (size - HDR) % ENTRY ||
	    (p[0] | p[1] << 8 | p[2] << 16 | (unsigned)p[3] << 24) != VERSION)
		return false;
	for (size_t o = HDR; o < size; o += ENTRY) {
		unsigned tag = get16(p + o);

		if (tag != T_USER_OBJ && tag != T_USER && tag != T_GROUP_OBJ &&
		    tag != T_GROUP && tag != T_MASK && tag != T_OTHER)
			return false;
		if (get16(p + o + 2) & ~7u)
			return false;
		seen |= tag;
	}
	if ((seen & (T_USER_OBJ | T_GROUP_OBJ | T_OTHER)) !=
	    (T_USER_OBJ | T_GROUP_OBJ | T_OTHER))
		return false;
	/* named entries need a mask */
	return !(seen & (T_USER | T_GROUP)) || (seen & T_MASK);
}

int acl_to_mode(const void *v, size_t size, mode_t *mode)
{
	const unsigned char *p = v;
	mode_t bits = 0, group = 0, mask = 0;
	bool extended = false, has_mask = false;

	if (!acl_valid(v, size))
		return -EINVAL;
	for (size_t o = HDR; o < size; o += ENTRY) {
		mode_t perm = get16(p + o + 2);

		switch (get16(p + o)) {
		case T_USER_OBJ:
			bits |= perm << 6;
			break;
		case T_GROUP_OBJ:
			group = perm;
			break;
		case T_OTHER:
			bits |= perm;
			break;
		case T_MASK:
			mask = perm;
			has_mask = extended = true;
			break;
		default:
			extended = true;
		}
	}
	bits |= (has_mask ? mask : group) << 3;
	*mode = (*mode & ~(mode_t)0777) | bits;
	return extended;
}

int acl_chmod(void *v, size_t size, mode_t mode)
{
	unsigned char *p = v, *group = NULL, *mask = NULL;

	if (!acl_valid(v, size))
		return -EINVAL;
	for (size_t o = HDR; o < size; o += ENTRY) {
		switch (get16(p + o)) {
		case T_USER_OBJ:
			put16(p + o + 2, (mode >> 6) & 7);
			break;
		case T_GROUP_OBJ:
			group = p + o;
			break;
		case T_MASK:
			mask = p + o;
			break;
		case T_OTHER:
			put16(p + o + 2, mode & 7);
			break;
		}
	}
	put16((mask ? mask : group) + 2, (mode >> 3) & 7);
	return 0;
}

int acl_create_masq(void *v, size_t size, mode_t *mode)
{
	unsigned char *p = v, *group = NULL, *mask = NULL, *e;
	mode_t m = *mode;
	bool extended = false;
	unsigned perm;

	if (!acl_valid(v, size))
		return -EINVAL;
	for (size_t o = HDR; o < size; o += ENTRY) {
		e = p + o;
		perm = get16(e + 2);
		switch (get16(e)) {
		case T_USER_OBJ:
			perm &= (m >> 6) & 7;
			put16(e + 2, perm);
			m &= (perm << 6) | ~(mode_t)S_IRWXU;
			break;
		case T_GROUP_OBJ:
			group = e;
			break;
		case T_MASK:
			mask = e;
			extended = true;
			break;
		case T_OTHER:
			perm &= m & 7;
			put16(e + 2, perm);
			m &= perm | ~(mode_t)S_IRWXO;
			break;
		default:
			extended = true;
		}
	}
	e = mask ? mask : group;
	perm = get16(e + 2) & ((m >> 3) & 7);
	put16(e + 2, perm);
	m &= (perm << 3) | ~(mode_t)S_IRWXG;
	*mode = (*mode & ~(mode_t)0777) | (m & 0777);
	return extended;
}
