/*
 * journal.c - ordered record of namespace changes awaiting SOURCE.
 */
#include "journal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

void jrn_init(struct journal *j)
{
	memset(j, 0, sizeof(*j));
}

static void jop_free(struct jop *op)
{
	free(op->p1);
	free(op->p2);
	free(op);
}

void jrn_destroy(struct journal *j)
{
	while (j->head)
		jrn_pop(j);
}

int jrn_add(struct journal *j, enum jop_kind kind, const char *p1,
	    const char *p2, mode_t mode, dev_t rdev, unsigned flags)
{
	struct jop *op = calloc(1, sizeof(*op));

	if (!op)
		return -ENOMEM;
	op->kind = kind;
	op->mode = mode;
	op->rdev = rdev;
	op->flags = flags;
	op->p1 = strdup(p1);
	op->p2 = p2 ? strdup(p2) : NULL;
	if (!op->p1 || (p2 && !op->p2)) {
		jop_free(op);
		return -ENOMEM;
	}
	if (j->tail)
		j->tail->next = op;
	else
		j->head = op;
	j->tail = op;
	j->count++;
	return 0;
}

void jrn_pop(struct journal *j)
{
	struct jop *op = j->head;

	if (!op)
		return;
	j->head = op->next;
	if (!j->head)
		j->tail = NULL;
	j->count--;
	jop_free(op);
}

/* If path is `from` or below it, return it rebased onto `to`. */
static char *rebase(const char *path, const char *from, const char *to)
{
	size_t l = strlen(from);
	char *out;

	if (strncmp(path, from, l) != 0 || (path[l] && path[l] != '/'))
		return NULL;
	if (asprintf(&out, "%s%s", to, path + l) < 0)
		return NULL;
	return out;
}

/*
 * The journal is singly linked, oldest first; undoing needs newest first,
 * so collect the renames into an array.
 */
char *jrn_source_path(const struct journal *j, const char *path)
{
	struct jop **ops, *op;
	size_t n = 0;
	char *cur = strdup(path);

	if (!cur || !j->count)
		return cur;
	ops = malloc(j->count * sizeof(*ops));
	if (!ops) {
		free(cur);
		return NULL;
	}
	for (op = j->head; op; op = op->next)
		if (op->kind == J_RENAME || op->kind == J_LINK)
			ops[n++] = op;
	while (n--) {
		char *r;

		op = ops[n];
		r = rebase(cur, op->p2, op->p1);
		if (!r && op->kind == J_RENAME && (op->flags & RENAME_EXCHANGE))
			r = rebase(cur, op->p1, op->p2);
		if (r) {
			free(cur);
			cur = r;
		}
	}
	free(ops);
	return cur;
}
