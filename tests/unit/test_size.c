/*
 * Unit tests of size parsing.
 */
#include <criterion/criterion.h>
#include <errno.h>

#include "core/size.h"

Test(size, suffixes_are_powers_of_1024)
{
	uint64_t v;

	cr_assert_eq(size_parse("64K", 0, &v), 0);
	cr_assert_eq(v, 65536);
	cr_assert_eq(size_parse("2g", 0, &v), 0);
	cr_assert_eq(v, UINT64_C(2) << 30);
	cr_assert_eq(size_parse("1T", 0, &v), 0);
	cr_assert_eq(v, UINT64_C(1) << 40);
	cr_assert_eq(size_parse("123", 0, &v), 0);
	cr_assert_eq(v, 123);
}

Test(size, a_percentage_is_of_the_given_ram)
{
	uint64_t v;

	cr_assert_eq(size_parse("50%", 1000, &v), 0);
	cr_assert_eq(v, 500);
	cr_assert_eq(size_parse("50%", 0, &v), -EINVAL);
	cr_assert_eq(size_parse("0%", 1000, &v), -EINVAL);
	cr_assert_eq(size_parse("101%", 1000, &v), -EINVAL);
}

Test(size, junk_is_refused)
{
	uint64_t v;

	cr_assert_eq(size_parse("", 0, &v), -EINVAL);
	cr_assert_eq(size_parse("abc", 0, &v), -EINVAL);
	cr_assert_eq(size_parse("12KB", 0, &v), -EINVAL);
	cr_assert_eq(size_parse("-1", 0, &v), -EINVAL);
	cr_assert_eq(size_parse("99999999999999999999", 0, &v), -EINVAL);
	cr_assert_eq(size_parse("16777216T", 0, &v), -EINVAL);
}
