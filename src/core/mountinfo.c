/*
 * mountinfo.c - one parser of /proc/self/mountinfo.
 *
 * A line is "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] -
 * FSTYPE SOURCE SUPEROPTIONS"; space, tab, newline and backslash in the
 * paths are written as octal escapes.
 */
#include "mountinfo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Undo the octal escapes (\040 for a space...) in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 |
				      (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* Split one line into e (in place). false: not a mountinfo line. */
static bool parse(char *line, struct mountinfo_entry *e)
{
	char *sep = strstr(line, " - "), *save = NULL, *tok[5];

	if (!sep)
		return false;
	*sep = '\0';
	e->fstype = strtok_r(sep + 3, " \n", &save);
	tok[0] = strtok_r(line, " ", &save);
	for (int i = 1; i < 5 && tok[i - 1]; i++)
		tok[i] = strtok_r(NULL, " ", &save);
	if (!e->fstype || !tok[0] || !tok[1] || !tok[2] || !tok[3] ||
	    !tok[4])
		return false;
	unescape(tok[4]);
	e->majmin = tok[2];
	e->mountpoint = tok[4];
	return true;
}

bool mountinfo_each(bool (*fn)(const struct mountinfo_entry *e, void *arg),
		    void *arg)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	bool stopped = false;
	struct mountinfo_entry e;

	while (f && !stopped && getline(&line, &cap, f) > 0)
		stopped = parse(line, &e) && fn(&e, arg);
	free(line);
	if (f)
		fclose(f);
	return stopped;
}
