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

/* path is base or below it */
static bool under(const char *path, const char *base)
{
	size_t l = strlen(base);

	return strncmp(path, base, l) == 0 && (!path[l] || path[l] == '/');
}

/* *p = *p rebased from `from` onto `to`, when below it. 0 or -ENOMEM. */
static int move_path(char **p, const char *from, const char *to)
{
	char *r;

	if (!under(*p, from))
		return 0;
	r = rebase(*p, from, to);
	if (!r)
		return -ENOMEM;
	free(*p);
	*p = r;
	return 0;
}

/* Is p strictly below base? */
static bool below(const char *p, const char *base)
{
	return under(p, base) && strcmp(p, base) != 0;
}

int jrn_redirect(struct journal *j, const struct jop *done, const char *from,
		 const char *to, char **mount_from, char **mount_to)
{
	char *cur = strdup(from), *alias = strdup(to);
	bool held = true; /* a name of the mount is `cur`, SOURCE's `alias` */
	int err = cur && alias ? 0 : -ENOMEM;

	(void)j;
	*mount_from = *mount_to = NULL;
	for (struct jop *op = done->next; op && held && !err; op = op->next) {
		bool two = op->kind == J_RENAME || op->kind == J_LINK;
		bool gone = (op->kind == J_UNLINK || op->kind == J_RMDIR ||
			     (op->kind == J_RENAME &&
			      !(op->flags & RENAME_EXCHANGE))) &&
			    strcmp(op->p1, cur) == 0;
		char *c0 = NULL, *a0 = NULL;

		/* a parent of it renamed: both names move along */
		if (op->kind == J_RENAME && below(cur, op->p1)) {
			c0 = rebase(cur, op->p1, op->p2);
			a0 = rebase(alias, op->p1, op->p2);
		} else if (op->kind == J_RENAME &&
			   (op->flags & RENAME_EXCHANGE) &&
			   below(cur, op->p2)) {
			c0 = rebase(cur, op->p2, op->p1);
			a0 = rebase(alias, op->p2, op->p1);
		}
		/* the operation's own paths: the object, or inside it */
		err = move_path(&op->p1, cur, alias);
		if (!err && two)
			err = move_path(&op->p2, cur, alias);
		if (c0 && a0) {
			free(cur);
			free(alias);
			cur = c0;
			alias = a0;
		} else if (c0 || a0) {
			free(c0);
			free(a0);
			err = -ENOMEM;
		}
		if (gone)
			held = false; /* moved away or removed: not cur now */
	}
	if (!err && held) {
		*mount_from = cur;
		*mount_to = alias;
		return 0;
	}
	free(cur);
	free(alias);
	return err;
}
