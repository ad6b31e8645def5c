/*
 * Unit tests of the JSON string escaping of status documents: any file
 * name, UTF-8 or not, gives a valid JSON string from which the bytes can
 * be recovered.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "core/strbuf.h"

static char *esc(const char *s)
{
	struct strbuf b;

	sb_init(&b);
	sb_json_str(&b, s);
	return sb_take(&b);
}

#define ESC_IS(in, want)                                                  \
	do {                                                              \
		char *got = esc(in);                                      \
		cr_assert_str_eq(got, want);                              \
		free(got);                                                \
	} while (0)

Test(strbuf, quotes_backslashes_and_controls_are_escaped)
{
	ESC_IS("a\"b\\c", "\"a\\\"b\\\\c\"");
	ESC_IS("t\tn\n\x01\x7f", "\"t\\u0009n\\u000a\\u0001\\u007f\"");
	ESC_IS("", "\"\"");
}

Test(strbuf, valid_utf8_passes_through)
{
	ESC_IS("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
	       "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
}

Test(strbuf, bytes_that_are_not_utf8_become_lone_surrogates)
{
	/* latin-1 e-acute, a stray continuation, a truncated sequence */
	ESC_IS("caf\xe9", "\"caf\\udce9\"");
	ESC_IS("\x80x", "\"\\udc80x\"");
	ESC_IS("\xe2\x82", "\"\\udce2\\udc82\"");
	/* overlong '/' and an encoded surrogate are not UTF-8 either */
	ESC_IS("\xc0\xaf", "\"\\udcc0\\udcaf\"");
	ESC_IS("\xed\xa0\x80", "\"\\udced\\udca0\\udc80\"");
	/* past U+10FFFF */
	ESC_IS("\xf4\x90\x80\x80", "\"\\udcf4\\udc90\\udc80\\udc80\"");
}
