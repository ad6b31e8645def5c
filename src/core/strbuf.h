/*
 * strbuf.h - a growing string, with JSON string escaping: enough to
 * build the status documents. Not a JSON library.
 */
#ifndef H5M_STRBUF_H
#define H5M_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
	char *s;
	size_t len, cap;
	bool oom;		/* an allocation failed: the result is NULL */
};

void sb_init(struct strbuf *b);
/* printf-style append. */
void sb_printf(struct strbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/*
 * Append `s` as a quoted JSON string; bytes that are not UTF-8 become
 * \udc80..\udcff (surrogateescape), so any file name gives valid JSON.
 */
void sb_json_str(struct strbuf *b, const char *s);
/* The string (caller frees), or NULL if memory ran out. */
char *sb_take(struct strbuf *b);

#endif
