/*
 * strbuf.c - growing strings for status documents.
 */
#include "strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_init(struct strbuf *b)
{
	memset(b, 0, sizeof(*b));
}

static bool reserve(struct strbuf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 256;
	char *s;

	if (b->oom)
		return false;
	while (cap < b->len + more + 1)
		cap *= 2;
	if (cap == b->cap)
		return true;
	s = realloc(b->s, cap);
	if (!s) {
		b->oom = true;
		return false;
	}
	b->s = s;
	b->cap = cap;
	return true;
}

void sb_printf(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s, or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s)
{
	size_t n;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* no overlong forms, no surrogates, nothing past U+10FFFF */
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

/*
 * A byte that is not part of valid UTF-8 (file names are bytes) becomes
 * the lone surrogate U+DC80..U+DCFF, as Python's surrogateescape does:
 * the document stays JSON and the exact name can be recovered
 * (os.fsencode in Python).
 */
void sb_json_str(struct strbuf *b, const char *s)
{
	sb_printf(b, "\"");
	while (s && *s) {
		const unsigned char *u = (const unsigned char *)s;
		size_t n = utf8_len(u);

		if (n == 0) {
			sb_printf(b, "\\udc%02x", u[0]);
			s++;
		} else if (n > 1) {
			sb_printf(b, "%.*s", (int)n, s);
			s += n;
		} else {
			if (u[0] == '"' || u[0] == '\\')
				sb_printf(b, "\\%c", u[0]);
			else if (u[0] < 0x20 || u[0] == 0x7f)
				sb_printf(b, "\\u%04x", u[0]);
			else
				sb_printf(b, "%c", u[0]);
			s++;
		}
	}
	sb_printf(b, "\"");
}

char *sb_take(struct strbuf *b)
{
	char *s = b->oom ? NULL : b->s;

	if (b->oom)
		free(b->s);
	else if (!s)
		s = strdup("");
	sb_init(b);
	return s;
}
