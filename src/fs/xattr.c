/*
 * xattr.c - extended attributes: read from SOURCE the first time they
 * are asked for (in a SOURCE helper, job.c), then kept in the node and
 * written back with its metadata. user.h5memfs.volatile is not stored:
 * it is the node's N_VOLATILE flag.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../backing/pin.h"
#include "../core/acl.h"
#include "internal.h"

/*
 * Only the names ns_xattr_kept says are kept: they are what SOURCE can
 * take back (the kernel lets only CAP_SYS_ADMIN near trusted.* and set
 * security.*). Other namespaces: EOPNOTSUPP, except
 * security.capability, which tmpfs and ext4 know: reading or removing
 * it finds nothing (ENODATA), setting it is not supported. Returns 0,
 * or -ENODATA / -EOPNOTSUPP / -ERANGE.
 */
static int xattr_name_ok(const char *name, bool set)
{
	if (!ns_xattr_kept(name))
		return !set && strncmp(name, "security.", 9) == 0 ? -ENODATA
								  : -EOPNOTSUPP;
	if (strlen(name) > 255)
		return -ERANGE;
	return 0;
}

/*
 * user.h5memfs.volatile is not stored: it is the file's N_VOLATILE flag,
 * shown as "1" while set. Returns 1 when `name` is not that attribute.
 */
static int volatile_get(struct fs *fs, struct node *n, const char *name,
			void *buf, size_t size, size_t *len)
{
	int err = 0;

	if (strcmp(name, FS_VOLATILE_XATTR) != 0)
		return 1;
	pthread_mutex_lock(&fs->ns.lock);
	if (!(n->flags & N_VOLATILE))
		err = -ENODATA;
	else if (size && size < 1)
		err = -ERANGE;
	else if (size)
		*(char *)buf = '1';
	*len = 1;
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

static int volatile_set(struct fs *fs, struct node *n, const char *name,
			const void *value, size_t size, int flags)
{
	bool on;

	if (strcmp(name, FS_VOLATILE_XATTR) != 0)
		return 1;
	if (!S_ISREG(n->mode))
		return -EINVAL;
	if (size == 1 && (*(const char *)value == '1' ||
			  *(const char *)value == '0'))
		on = *(const char *)value == '1';
	else
		return -EINVAL;
	pthread_mutex_lock(&fs->ns.lock);
	if ((flags & XATTR_CREATE) && (n->flags & N_VOLATILE)) {
		pthread_mutex_unlock(&fs->ns.lock);
		return -EEXIST;
	}
	if (on)
		n->flags |= N_VOLATILE;
	else
		n->flags &= ~(unsigned)N_VOLATILE;
	pthread_mutex_unlock(&fs->ns.lock);
	return 0;
}

int fs_getxattr(struct fs *fs, struct node *n, const char *name, void *buf,
		size_t size, size_t *len)
{
	int err = volatile_get(fs, n, name, buf, size, len);

	if (err <= 0)
		return err;
	err = xattr_name_ok(name, false);
	if (err)
		return err;
	err = fs_load_xattrs(fs, n, true);
	if (err)
		return err;
	pthread_mutex_lock(&fs->ns.lock);
	err = ns_xattr_get(n, name, buf, size, len);
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

/*
 * Setting an access ACL sets the mode's permission bits from it (the
 * kernel leaves that to a FUSE server with POSIX ACLs), and an ACL the
 * mode says all of is not kept, as disk filesystems do
 * (posix_acl_update_mode). 1 when `name` is not the access ACL, 0 or
 * -errno when done. ns.lock held.
 */
static int acl_access_set_locked(struct node *n, const char *name,
				 const void *value, size_t size, int flags)
{
	mode_t mode = n->mode;
	int kept;

	if (strcmp(name, ACL_XATTR_ACCESS) != 0)
		return 1;
	kept = acl_to_mode(value, size, &mode);
	if (kept < 0)
		return kept;
	if (flags & FS_XATTR_KILL_SGID)
		mode &= ~(mode_t)S_ISGID;
	flags &= ~FS_XATTR_KILL_SGID;
	if (kept) {
		int err = ns_xattr_set(n, name, value, size, flags);

		if (err)
			return err;
	} else if (ns_xattr_find(n, name)) {
		if (flags & XATTR_CREATE)
			return -EEXIST;
		ns_xattr_remove(n, name);
	} else if (flags & XATTR_REPLACE) {
		return -ENODATA;
	}
	n->mode = mode;
	return 0;
}

int fs_setxattr(struct fs *fs, struct node *n, const char *name,
		const void *value, size_t size, int flags)
{
	int err, kill = flags & FS_XATTR_KILL_SGID;
	bool acl = !strncmp(name, "system.", 7);

	flags &= ~FS_XATTR_KILL_SGID;
	err = volatile_set(fs, n, name, value, size, flags);
	if (err <= 0)
		return err;
	err = xattr_name_ok(name, true);
	if (!err && !S_ISREG(n->mode) && !S_ISDIR(n->mode))
		/* as the kernel says for user.*; others not kept there */
		err = !strncmp(name, "user.", 5) ? -EPERM : -EOPNOTSUPP;
	if (!err && acl && !acl_valid(value, size))
		err = -EINVAL;
	if (!err && !strcmp(name, ACL_XATTR_DEFAULT) && !S_ISDIR(n->mode))
		err = -EACCES; /* as set_posix_acl says */
	if (!err)
		err = fs_load_xattrs(fs, n, true);
	if (err)
		return err;
	pthread_mutex_lock(&fs->ns.lock);
	/* its memory counts in max_memory: room first (a replaced value
	   is freed after, so this asks for a little more than it needs) */
	err = fs_meta_room_locked(fs, ns_xattr_cost(name, size));
	if (!err)
		err = acl_access_set_locked(n, name, value, size, flags | kill);
	if (err == 1)
		err = ns_xattr_set(n, name, value, size, flags);
	if (!err) {
		ns_meta_account(&fs->ns, n);
		fs_touch_c(n);
	}
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

int fs_listxattr(struct fs *fs, struct node *n, bool trusted, char *buf,
		 size_t size, size_t *len)
{
	int err = fs_load_xattrs(fs, n, true);

	if (err)
		return err;
	pthread_mutex_lock(&fs->ns.lock);
	err = ns_xattr_list(n, trusted, buf, size, len);
	if (n->flags & N_VOLATILE) {
		size_t extra = sizeof(FS_VOLATILE_XATTR);

		if (!err && size && size < *len + extra)
			err = -ERANGE;
		else if (!err && size)
			memcpy(buf + *len, FS_VOLATILE_XATTR, extra);
		*len += extra;
	}
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

int fs_removexattr(struct fs *fs, struct node *n, const char *name)
{
	int err;

	if (!strcmp(name, FS_VOLATILE_XATTR)) {
		pthread_mutex_lock(&fs->ns.lock);
		err = n->flags & N_VOLATILE ? 0 : -ENODATA;
		n->flags &= ~(unsigned)N_VOLATILE;
		pthread_mutex_unlock(&fs->ns.lock);
		return err;
	}
	err = xattr_name_ok(name, false);
	if (err)
		return err;
	err = fs_load_xattrs(fs, n, true);
	if (err)
		return err;
	pthread_mutex_lock(&fs->ns.lock);
	err = ns_xattr_remove(n, name);
	if (!err) {
		ns_meta_account(&fs->ns, n);
		fs_touch_c(n);
	}
	pthread_mutex_unlock(&fs->ns.lock);
	return err;
}

void fs_acl_follow_mode_locked(struct node *n)
{
	struct xattr *x = ns_xattr_find(n, ACL_XATTR_ACCESS);

	if (x)
		acl_chmod(x->value, x->size, n->mode);
}

int fs_acl_inherit_locked(struct node *dir, struct node *n, mode_t *mode,
			  mode_t umask)
{
	struct xattr *def = ns_xattr_find(dir, ACL_XATTR_DEFAULT);
	void *acl;
	int err = 0, kept;

	if (!def || !acl_valid(def->value, def->size)) {
		*mode &= ~(umask & 0777);
		return 0;
	}
	if (S_ISDIR(*mode))
		err = ns_xattr_set(n, ACL_XATTR_DEFAULT, def->value,
				   def->size, 0);
	acl = malloc(def->size);
	if (!acl)
		return -ENOMEM;
	memcpy(acl, def->value, def->size);
	kept = acl_create_masq(acl, def->size, mode);
	if (!err && kept > 0)
		err = ns_xattr_set(n, ACL_XATTR_ACCESS, acl, def->size, 0);
	free(acl);
	return err;
}

struct xattr_job {
	struct fs_job job;	/* job.node: the file */
	struct node tmp;	/* only its mode and xattrs are used */
	int err;
};

/*
 * Read the xattrs into a stand-in node under replay_lock only (SOURCE
 * may be slow; ns.lock is every request's), then hand them to n unless
 * someone was faster.
 */
static void xattr_run(struct fs_job *j)
{
	struct xattr_job *xj = (struct xattr_job *)j;
	struct fs *fs = j->fs;
	struct node *n = j->node;
	char *path = NULL;
	int err = 0;

	pthread_mutex_lock(&fs->replay_lock);
	pthread_mutex_lock(&fs->ns.lock);
	if (n->flags & N_XATTRS) {
		pthread_mutex_unlock(&fs->ns.lock);
		goto out;
	}
	xj->tmp.mode = n->mode;
	path = fs_source_path_locked(fs, n);
	if (!path) {
		err = n->links ? -ENOMEM : 0;
		pthread_mutex_unlock(&fs->ns.lock);
		goto out;
	}
	pthread_mutex_unlock(&fs->ns.lock);
	err = src_load_xattrs(&fs->src, path, &xj->tmp);
	/* replaced by another node just now: a shared fs needs a moment */
	for (int tries = 0; err == -ESTALE && tries < 20; tries++) {
		usleep(100 * 1000);
		ns_xattr_free_all(&xj->tmp);
		err = src_load_xattrs(&fs->src, path, &xj->tmp);
	}
	if (err == -ENOENT || err == -EACCES || err == -ELOOP ||
	    err == -ENXIO)
		err = 0; /* gone or unreadable in SOURCE: it has none */
	pthread_mutex_lock(&fs->ns.lock);
	if (!err && !(n->flags & N_XATTRS)) {
		struct xattr **tail = &xj->tmp.xattrs;

		/* ours first, then any set meanwhile (none expected) */
		while (*tail)
			tail = &(*tail)->next;
		*tail = n->xattrs;
		n->xattrs = xj->tmp.xattrs;
		n->xattr_bytes += xj->tmp.xattr_bytes;
		xj->tmp.xattrs = NULL;
		xj->tmp.xattr_bytes = 0;
		ns_meta_account(&fs->ns, n);
		n->flags |= N_XATTRS;
		fs_acl_follow_mode_locked(n);
	}
	pthread_mutex_unlock(&fs->ns.lock);
out:
	pthread_mutex_unlock(&fs->replay_lock);
	free(path);
	xj->err = err;
}

static void xattr_release(struct fs_job *j)
{
	struct xattr_job *xj = (struct xattr_job *)j;

	ns_xattr_free_all(&xj->tmp);
}

int fs_load_xattrs(struct fs *fs, struct node *n, bool deadline)
{
	struct xattr_job *xj;
	int err;

	pthread_mutex_lock(&fs->ns.lock);
	if (n->flags & N_XATTRS) {
		pthread_mutex_unlock(&fs->ns.lock);
		return 0;
	}
	pthread_mutex_unlock(&fs->ns.lock);
	xj = fs_job_new(fs, sizeof(*xj), n, xattr_run, xattr_release);
	if (!xj)
		return -ENOMEM;
	xj->job.no_deadline = !deadline;
	err = fs_job_run(fs, &xj->job);
	err = err ? fs_job_failed(&xj->job, "read the extended attributes of")
		  : xj->err;
	fs_job_put(&xj->job);
	return err;
}
