/*
 * hlink.c - SOURCE's hard links: a file with several names in SOURCE
 * must be one node in the mount. Entries seen with st_nlink > 1 are
 * remembered by (dev, ino); the entry pins its node while names of it
 * may still be found in directories not listed yet. Every function here
 * expects ns.lock held; none does I/O.
 */
#include <stdlib.h>

#include "internal.h"

/* One file of SOURCE seen with several names; pins its node. */
struct hlink {
	dev_t dev;
	ino_t ino;
	struct node *node;
	struct hlink *next;
};

/* The entry of (dev, ino), or NULL. */
static struct hlink *hlink_find(struct fs *fs, dev_t dev, ino_t ino)
{
	struct hlink *h;

	for (h = fs->hlinks; h; h = h->next)
		if (h->dev == dev && h->ino == ino)
			return h;
	return NULL;
}

bool fs_hlink_drop(struct fs *fs, struct node *n)
{
	struct hlink **pp = &fs->hlinks;

	while (*pp && (*pp)->node != n)
		pp = &(*pp)->next;
	if (*pp) {
		struct hlink *h = *pp;

		*pp = h->next;
		free(h);
		return true;
	}
	return false;
}

void fs_hlink_moved(struct fs *fs, struct node *old, struct node *n)
{
	for (struct hlink *h = fs->hlinks; h; h = h->next) {
		if (h->node == old) {
			h->node = n;
			ns_pin(n);
			ns_unpin(&fs->ns, old);
		}
	}
}

void fs_hlinks_free(struct fs *fs)
{
	while (fs->hlinks) {
		struct hlink *h = fs->hlinks;

		fs->hlinks = h->next;
		free(h);
	}
}

struct node *fs_hlink_find(struct fs *fs, const struct stat *st)
{
	struct hlink *h;

	if (S_ISDIR(st->st_mode) || st->st_nlink <= 1)
		return NULL;
	h = hlink_find(fs, st->st_dev, st->st_ino);
	return h ? h->node : NULL;
}

void fs_hlink_named(struct fs *fs, struct node *n)
{
	if (n->src_nlink)
		n->src_nlink--;
	/* every name found: SOURCE holds no more of this file */
	if (!n->src_nlink && fs_hlink_drop(fs, n))
		ns_unpin(&fs->ns, n);
}

void fs_hlink_add(struct fs *fs, struct node *n, const struct stat *st)
{
	struct hlink *h;

	if (S_ISDIR(st->st_mode) || st->st_nlink <= 1)
		return;
	h = calloc(1, sizeof(*h));
	if (!h)
		return; /* its other names become nodes of their own */
	h->dev = st->st_dev;
	h->ino = st->st_ino;
	h->node = n;
	h->next = fs->hlinks;
	fs->hlinks = h;
	ns_pin(n);
}
