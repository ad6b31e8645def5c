/*
 * Unit tests of the POSIX ACL values (src/core/acl.c): the mode an ACL
 * stands for, chmod of a file with an ACL and the ACL a new node takes
 * from its directory's default ACL, with the answers ext4 gives (checked
 * with setfacl, getfacl and stat on ext4).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "core/acl.h"

enum { UO = 0x01, U = 0x02, GO = 0x04, G = 0x08, M = 0x10, O = 0x20 };

struct e {
	uint16_t tag, perm;
	uint32_t id;
};

/* An xattr value from entries (x86 is little-endian, like the format). */
static size_t acl(unsigned char *buf, const struct e *es, size_t n)
{
	uint32_t v = 2;

	memcpy(buf, &v, 4);
	for (size_t i = 0; i < n; i++)
		memcpy(buf + 4 + 8 * i, &es[i], 8);
	return 4 + 8 * n;
}

static unsigned perm_of(const unsigned char *buf, size_t size, unsigned tag,
			uint32_t id)
{
	for (size_t o = 4; o < size; o += 8) {
		struct e e;

		memcpy(&e, buf + o, 8);
		if (e.tag == tag && (id == (uint32_t)-1 || e.id == id))
			return e.perm;
	}
	return 99;
}

#define ANY ((uint32_t)-1)

Test(acl, malformed_values_are_refused)
{
	unsigned char b[64];
	struct e base[] = { { UO, 6, ANY }, { GO, 4, ANY }, { O, 0, ANY } };
	struct e named_no_mask[] = { { UO, 6, ANY }, { U, 4, 65534 },
				     { GO, 4, ANY }, { O, 0, ANY } };
	struct e no_other[] = { { UO, 6, ANY }, { GO, 4, ANY } };
	size_t n = acl(b, base, 3);
	mode_t mode = S_IFREG;

	cr_assert(acl_valid(b, n));
	cr_assert_not(acl_valid(b, n - 1));
	cr_assert_not(acl_valid(b, acl(b, named_no_mask, 4)));
	cr_assert_not(acl_valid(b, acl(b, no_other, 2)));
	cr_assert_eq(acl_to_mode(b, acl(b, no_other, 2), &mode), -EINVAL);
	n = acl(b, base, 3);
	b[0] = 1; /* version 1 */
	cr_assert_not(acl_valid(b, n));
}

Test(acl, the_mode_of_an_acl_takes_the_mask_for_its_group_bits)
{
	/* setfacl -m u:nobody:r on a 0600 file: mode 0640, kept */
	struct e es[] = { { UO, 6, ANY }, { U, 4, 65534 }, { GO, 0, ANY },
			  { M, 4, ANY }, { O, 0, ANY } };
	struct e base[] = { { UO, 7, ANY }, { GO, 5, ANY }, { O, 1, ANY } };
	unsigned char b[64];
	mode_t mode = S_IFREG | S_ISGID | 0600;

	cr_assert_eq(acl_to_mode(b, acl(b, es, 5), &mode), 1);
	cr_assert_eq(mode, S_IFREG | S_ISGID | 0640);
	/* three entries say no more than a mode: not kept */
	cr_assert_eq(acl_to_mode(b, acl(b, base, 3), &mode), 0);
	cr_assert_eq(mode, S_IFREG | S_ISGID | 0751);
}

Test(acl, chmod_sets_owner_mask_and_other_and_leaves_named_entries)
{
	struct e es[] = { { UO, 6, ANY }, { U, 6, 1 }, { U, 4, 65534 },
			  { GO, 0, ANY }, { M, 6, ANY }, { O, 0, ANY } };
	struct e base[] = { { UO, 6, ANY }, { GO, 4, ANY }, { O, 0, ANY } };
	unsigned char b[64];
	size_t n = acl(b, es, 6);

	/* chmod 604 after setfacl -m u:daemon:rw (ext4's getfacl) */
	cr_assert_eq(acl_chmod(b, n, 0604), 0);
	cr_assert_eq(perm_of(b, n, UO, ANY), 6);
	cr_assert_eq(perm_of(b, n, U, 1), 6);
	cr_assert_eq(perm_of(b, n, U, 65534), 4);
	cr_assert_eq(perm_of(b, n, GO, ANY), 0);
	cr_assert_eq(perm_of(b, n, M, ANY), 0);
	cr_assert_eq(perm_of(b, n, O, ANY), 4);
	/* without a mask the group entry takes the group bits */
	n = acl(b, base, 3);
	cr_assert_eq(acl_chmod(b, n, 0750), 0);
	cr_assert_eq(perm_of(b, n, GO, ANY), 5);
}

Test(acl, a_new_node_takes_the_default_acl_limited_by_its_mode)
{
	/* setfacl -d -m u:nobody:rx DIR, then touch and mkdir in it */
	struct e def[] = { { UO, 7, ANY }, { U, 5, 65534 }, { GO, 5, ANY },
			   { M, 5, ANY }, { O, 5, ANY } };
	struct e base[] = { { UO, 7, ANY }, { GO, 7, ANY }, { O, 0, ANY } };
	unsigned char b[64];
	size_t n = acl(b, def, 5);
	mode_t mode = S_IFREG | 0666;

	cr_assert_eq(acl_create_masq(b, n, &mode), 1);
	cr_assert_eq(mode, S_IFREG | 0644);
	cr_assert_eq(perm_of(b, n, UO, ANY), 6);
	cr_assert_eq(perm_of(b, n, U, 65534), 5); /* effective r-- */
	cr_assert_eq(perm_of(b, n, GO, ANY), 5);
	cr_assert_eq(perm_of(b, n, M, ANY), 4);
	cr_assert_eq(perm_of(b, n, O, ANY), 4);
	n = acl(b, def, 5);
	mode = S_IFDIR | S_ISGID | 0777;
	cr_assert_eq(acl_create_masq(b, n, &mode), 1);
	cr_assert_eq(mode, S_IFDIR | S_ISGID | 0755);
	/* a default ACL of three entries: the mode says it all */
	n = acl(b, base, 3);
	mode = S_IFREG | 0644;
	cr_assert_eq(acl_create_masq(b, n, &mode), 0);
	cr_assert_eq(mode, S_IFREG | 0640);
}
