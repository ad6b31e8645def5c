/*
 * xattrs.c - a node's extended attributes, kept in memory (what SOURCE
 * holds is read once, src/fs/xattr.c), and what they cost.
 */
#include "node.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint64_t ns_xattr_cost(const char *name, size_t size)
{
	return sizeof(struct xattr) + strlen(name) + 1 + size;
}

struct xattr *ns_xattr_find(const struct node *n, const char *name)
{
	struct xattr *x;

	for (x = n->xattrs; x; x = x->next)
		if (strcmp(x->name, name) == 0)
			return x;
	return NULL;
}

int ns_xattr_get(const struct node *n, const char *name, void *buf,
		 size_t size, size_t *len)
{
	struct xattr *x = ns_xattr_find(n, name);

	if (!x)
		return -ENODATA;
	*len = x->size;
	if (size == 0)
		return 0;
	if (size < x->size)
		return -ERANGE;
	memcpy(buf, x->value, x->size);
	return 0;
}

int ns_xattr_set(struct node *n, const char *name, const void *value,
		 size_t size, int flags)
{
	struct xattr *x = ns_xattr_find(n, name);
	void *v;

	if (x && (flags & 0x1 /* XATTR_CREATE */))
		return -EEXIST;
	if (!x && (flags & 0x2 /* XATTR_REPLACE */))
		return -ENODATA;
	v = malloc(size ? size : 1);
	if (!v)
		return -ENOMEM;
	memcpy(v, value, size);
	if (!x) {
		x = calloc(1, sizeof(*x));
		if (!x || !(x->name = strdup(name))) {
			free(x);
			free(v);
			return -ENOMEM;
		}
		x->next = n->xattrs;
		n->xattrs = x;
	} else {
		n->xattr_bytes -= ns_xattr_cost(x->name, x->size);
		free(x->value);
	}
	x->value = v;
	x->size = size;
	n->xattr_bytes += ns_xattr_cost(x->name, x->size);
	return 0;
}

int ns_xattr_remove(struct node *n, const char *name)
{
	struct xattr **pp = &n->xattrs, *x;

	while (*pp && strcmp((*pp)->name, name) != 0)
		pp = &(*pp)->next;
	if (!*pp)
		return -ENODATA;
	x = *pp;
	*pp = x->next;
	n->xattr_bytes -= ns_xattr_cost(x->name, x->size);
	free(x->name);
	free(x->value);
	free(x);
	return 0;
}

bool ns_xattr_trusted(const char *name)
{
	return strncmp(name, "trusted.", 8) == 0;
}

bool ns_xattr_security(const char *name)
{
	return strncmp(name, "security.", 9) == 0;
}

bool ns_xattr_kept(const char *name)
{
	return strncmp(name, "user.", 5) == 0 || ns_xattr_trusted(name) ||
	       (ns_xattr_security(name) &&
		strcmp(name, "security.capability") != 0) ||
	       strcmp(name, "system.posix_acl_access") == 0 ||
	       strcmp(name, "system.posix_acl_default") == 0;
}

int ns_xattr_list(const struct node *n, bool trusted, char *buf,
		  size_t size, size_t *len)
{
	size_t need = 0;
	struct xattr *x;

	for (x = n->xattrs; x; x = x->next)
		if (trusted || !ns_xattr_trusted(x->name))
			need += strlen(x->name) + 1;
	*len = need;
	if (size == 0)
		return 0;
	if (size < need)
		return -ERANGE;
	for (x = n->xattrs; x; x = x->next) {
		size_t l = strlen(x->name) + 1;

		if (!trusted && ns_xattr_trusted(x->name))
			continue;
		memcpy(buf, x->name, l);
		buf += l;
	}
	return 0;
}

void ns_xattr_free_all(struct node *n)
{
	struct xattr *x, *next;

	for (x = n->xattrs; x; x = next) {
		next = x->next;
		free(x->name);
		free(x->value);
		free(x);
	}
	n->xattrs = NULL;
	n->xattr_bytes = 0;
}
