/*
 * node.c - nodes, dentries and the (directory, name) hash table.
 */
#include "node.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

static size_t hash_name(const struct node *dir, const char *name)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)dir;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ULL;
	return (size_t)(h ^ (h >> 29));
}

static int table_grow(struct ns *ns)
{
	size_t nb = ns->buckets ? ns->buckets * 2 : 1024;
	struct dentry **t = calloc(nb, sizeof(*t));

	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < ns->buckets; i++) {
		struct dentry *d = ns->table[i], *next;

		for (; d; d = next) {
			size_t b = hash_name(d->dir, d->name) & (nb - 1);

			next = d->hnext;
			d->hnext = t[b];
			t[b] = d;
		}
	}
	free(ns->table);
	ns->table = t;
	ns->buckets = nb;
	return 0;
}

struct timespec ns_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

struct node *ns_node_new(struct ns *ns, mode_t mode, uid_t uid, gid_t gid)
{
	struct node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	if (S_ISREG(mode)) {
		n->file = calloc(1, sizeof(*n->file));
		if (!n->file) {
			free(n);
			return NULL;
		}
		n->file->direct_fd = -1;
		img_init(&n->file->img, ns->page_size);
	}
	n->ino = ns->next_ino++;
	n->mode = mode;
	n->uid = uid;
	n->gid = gid;
	n->atime = n->mtime = n->ctime = ns_now();
	n->flags = N_SCANNED | N_XATTRS;
	pthread_mutex_init(&n->io, NULL);
	n->all_next = ns->all;
	if (ns->all)
		ns->all->all_prev = n;
	ns->all = n;
	ns->nodes++;
	ns_meta_account(ns, n);
	return n;
}

uint64_t ns_node_cost(bool reg)
{
	return sizeof(struct node) + (reg ? sizeof(struct node_file) : 0);
}

uint64_t ns_name_cost(const char *name)
{
	return sizeof(struct dentry) + strlen(name) + 1;
}

void ns_meta_account(struct ns *ns, struct node *n)
{
	uint64_t now = ns_node_cost(n->file != NULL) + n->xattr_bytes +
		       (n->target ? strlen(n->target) + 1 : 0);

	ns->meta_used += now - n->meta;
	n->meta = now;
}

int ns_init(struct ns *ns, mode_t root_mode, uint64_t page_size)
{
	memset(ns, 0, sizeof(*ns));
	pthread_mutex_init(&ns->lock, NULL);
	ns->next_ino = 1;
	ns->page_size = page_size;
	if (table_grow(ns))
		return -ENOMEM;
	ns->root = ns_node_new(ns, S_IFDIR | (root_mode & 07777), getuid(),
			       getgid());
	if (!ns->root)
		return -ENOMEM;
	ns->root->pins = 1;
	return 0;
}

void ns_account(struct ns *ns, struct node *n)
{
	uint64_t now;

	if (!n->file)
		return;
	now = img_mem_bytes(&n->file->img);
	if (now < n->file->img.floor)
		now = n->file->img.floor;
	ns->mem_used += now - n->file->img.accounted;
	n->file->img.accounted = now;
}

static void node_free(struct ns *ns, struct node *n)
{
	if (n->file) {
		ns->mem_used -= n->file->img.accounted;
		if (n->file->lazy && ns->lazy_release)
			ns->lazy_release(n->file->lazy);
		if (n->file->direct_fd >= 0)
			close(n->file->direct_fd);
		img_destroy(&n->file->img);
		free(n->file);
	}
	ns_xattr_free_all(n);
	free(n->wb);
	pthread_mutex_destroy(&n->io);
	free(n->target);
	if (n->all_prev)
		n->all_prev->all_next = n->all_next;
	else
		ns->all = n->all_next;
	if (n->all_next)
		n->all_next->all_prev = n->all_prev;
	ns->meta_used -= n->meta;
	free(n);
	ns->nodes--;
}

void ns_destroy(struct ns *ns)
{
	for (size_t i = 0; i < ns->buckets; i++) {
		struct dentry *d, *next;

		for (d = ns->table[i]; d; d = next) {
			next = d->hnext;
			free(d->name);
			free(d);
		}
	}
	while (ns->all)
		node_free(ns, ns->all);
	free(ns->table);
	pthread_mutex_destroy(&ns->lock);
	ns->root = NULL;
	ns->table = NULL;
}

struct dentry *ns_find(const struct ns *ns, const struct node *dir,
		       const char *name)
{
	struct dentry *d = ns->table[hash_name(dir, name) & (ns->buckets - 1)];

	for (; d; d = d->hnext)
		if (d->dir == dir && strcmp(d->name, name) == 0)
			return d;
	return NULL;
}

static void hash_insert(struct ns *ns, struct dentry *d)
{
	size_t b = hash_name(d->dir, d->name) & (ns->buckets - 1);

	d->hnext = ns->table[b];
	ns->table[b] = d;
	ns->count++;
}

static void hash_remove(struct ns *ns, struct dentry *d)
{
	struct dentry **pp =
		&ns->table[hash_name(d->dir, d->name) & (ns->buckets - 1)];

	while (*pp != d)
		pp = &(*pp)->hnext;
	*pp = d->hnext;
	ns->count--;
}

static void dir_append(struct node *dir, struct dentry *d)
{
	d->prev = dir->last;
	d->next = NULL;
	if (dir->last)
		dir->last->next = d;
	else
		dir->first = d;
	dir->last = d;
	dir->nchildren++;
	dir->list_gen++;
	if (S_ISDIR(d->node->mode))
		dir->nsubdirs++;
}

static void dir_remove(struct node *dir, struct dentry *d)
{
	if (d->prev)
		d->prev->next = d->next;
	else
		dir->first = d->next;
	if (d->next)
		d->next->prev = d->prev;
	else
		dir->last = d->prev;
	dir->nchildren--;
	dir->list_gen++;
	if (S_ISDIR(d->node->mode))
		dir->nsubdirs--;
}

static void links_add(struct node *n, struct dentry *d)
{
	d->lnext = n->links;
	n->links = d;
	n->nlinks++;
}

static void links_remove(struct node *n, struct dentry *d)
{
	struct dentry **pp = &n->links;

	while (*pp != d)
		pp = &(*pp)->lnext;
	*pp = d->lnext;
	n->nlinks--;
}

int ns_link(struct ns *ns, struct node *dir, const char *name,
	    struct node *node)
{
	struct dentry *d = calloc(1, sizeof(*d));

	if (!d || !(d->name = strdup(name))) {
		free(d);
		return -ENOMEM;
	}
	if (ns->count >= ns->buckets && table_grow(ns) < 0) {
		free(d->name);
		free(d);
		return -ENOMEM;
	}
	d->dir = dir;
	d->node = node;
	hash_insert(ns, d);
	dir_append(dir, d);
	links_add(node, d);
	ns->meta_used += ns_name_cost(name);
	return 0;
}

void ns_maybe_free(struct ns *ns, struct node *n)
{
	if (n->nlinks == 0 && n->nlookup == 0 && n->nopen == 0 &&
	    n->pins == 0)
		node_free(ns, n);
}

void ns_unlink(struct ns *ns, struct dentry *d)
{
	struct node *n = d->node;

	hash_remove(ns, d);
	dir_remove(d->dir, d);
	links_remove(n, d);
	ns->meta_used -= ns_name_cost(d->name);
	free(d->name);
	free(d);
	ns_maybe_free(ns, n);
}

int ns_move(struct ns *ns, struct dentry *d, struct node *dir,
	    const char *name)
{
	struct dentry *old = ns_find(ns, dir, name);
	char *copy;

	if (old == d)
		return 0;
	copy = strdup(name);
	if (!copy)
		return -ENOMEM;
	if (old)
		ns_unlink(ns, old);
	hash_remove(ns, d);
	dir_remove(d->dir, d);
	ns->meta_used += ns_name_cost(copy) - ns_name_cost(d->name);
	free(d->name);
	d->name = copy;
	d->dir = dir;
	hash_insert(ns, d);
	dir_append(dir, d);
	return 0;
}

void ns_exchange(struct ns *ns, struct dentry *a, struct dentry *b)
{
	struct node *na = a->node, *nb = b->node;
	bool da = S_ISDIR(na->mode), db = S_ISDIR(nb->mode);

	(void)ns;
	links_remove(na, a);
	links_remove(nb, b);
	a->node = nb;
	b->node = na;
	links_add(nb, a);
	links_add(na, b);
	a->dir->list_gen++; /* the entries' inode numbers and types */
	b->dir->list_gen++;
	if (a->dir != b->dir && da != db) {
		a->dir->nsubdirs += db ? 1 : -1;
		b->dir->nsubdirs += da ? 1 : -1;
	}
}

struct node *ns_rebirth(struct ns *ns, struct node *old)
{
	struct node *n = ns_node_new(ns, old->mode, old->uid, old->gid);

	if (!n)
		return NULL;
	n->ino = old->ino; /* same file for programs; new for the kernel */
	n->rdev = old->rdev;
	n->atime = old->atime;
	n->mtime = old->mtime;
	n->ctime = old->ctime;
	n->size = old->size;
	n->flags = old->flags & (N_FROM_SOURCE | N_XATTRS | N_VOLATILE);
	n->ident = old->ident;
	n->src_nlink = old->src_nlink;
	n->xattrs = old->xattrs;
	n->xattr_bytes = old->xattr_bytes;
	old->xattrs = NULL;
	old->xattr_bytes = 0;
	ns_meta_account(ns, old);
	ns_meta_account(ns, n);
	n->links = old->links;
	n->nlinks = old->nlinks;
	for (struct dentry *d = n->links; d; d = d->lnext)
		d->node = n;
	old->links = NULL;
	old->nlinks = 0;
	old->src_nlink = 0;
	old->flags |= N_REBORN;
	ns_maybe_free(ns, old);
	return n;
}

void ns_pin(struct node *n)
{
	n->pins++;
}

void ns_unpin(struct ns *ns, struct node *n)
{
	n->pins--;
	ns_maybe_free(ns, n);
}

void ns_forget(struct ns *ns, struct node *n, uint64_t nlookup)
{
	n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
	ns_maybe_free(ns, n);
}

static size_t path_len(const struct node *n)
{
	size_t len = 0;

	while (n->links) {
		len += strlen(n->links->name) + 1;
		n = n->links->dir;
	}
	return len;
}

char *ns_path(const struct ns *ns, const struct node *n, bool *unlinked)
{
	size_t len;
	char *p;
	const struct node *c;

	*unlinked = false;
	for (c = n; c != ns->root; c = c->links->dir) {
		if (!c->links) {
			*unlinked = true;
			return NULL;
		}
	}
	len = path_len(n);
	p = malloc(len ? len : 1);
	if (!p)
		return NULL;
	p[len ? len - 1 : 0] = '\0';
	for (c = n; c != ns->root; c = c->links->dir) {
		size_t l = strlen(c->links->name);

		len -= l + 1;
		memcpy(p + len, c->links->name, l);
		if (len)
			p[len - 1] = '/';
	}
	return p;
}

char *ns_child_path(const struct ns *ns, const struct node *dir,
		    const char *name)
{
	bool unlinked;
	char *d = ns_path(ns, dir, &unlinked), *p;

	if (!d)
		return NULL;
	if (asprintf(&p, "%s%s%s", d, *d ? "/" : "", name) < 0)
		p = NULL;
	free(d);
	return p;
}

bool ns_is_ancestor(const struct node *anc, const struct node *n)
{
	for (;;) {
		if (n == anc)
			return true;
		if (!n->links)
			return false;
		n = n->links->dir;
	}
}

unsigned ns_nlink(const struct node *n)
{
	if (S_ISDIR(n->mode))
		return n->flags & N_SCANNED ? 2 + n->nsubdirs : n->src_nlink;
	return n->nlinks + n->src_nlink;
}

void ns_stat(const struct node *n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_mode = n->mode;
	st->st_nlink = ns_nlink(n);
	st->st_uid = n->uid;
	st->st_gid = n->gid;
	st->st_rdev = n->rdev;
	st->st_size = (off_t)n->size;
	st->st_blksize = 4096;
	st->st_atim = n->atime;
	st->st_mtim = n->mtime;
	st->st_ctim = n->ctime;
	if (S_ISREG(n->mode) && (n->flags & N_LOADED)) {
		uint64_t sz = 0;

		img_size(&n->file->img, &sz);
		st->st_size = (off_t)sz;
		st->st_blocks = (blkcnt_t)(img_mem_bytes(&n->file->img) / 512);
	} else if (S_ISLNK(n->mode)) {
		st->st_size = n->target ? (off_t)strlen(n->target) : 0;
	} else if (S_ISDIR(n->mode)) {
		st->st_size = 4096;
		st->st_blocks = 8;
	} else {
		st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
	}
}
