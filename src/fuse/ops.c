/*
 * ops.c - the operation table, INIT, statfs and xattrs.
 */
#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/acl.h"
#include "../core/log.h"
#include "ll.h"
#include "notify.h"

/* Settle the data path now that the kernel said what it offers. */
static void choose_data_path(struct h5m *m)
{
	if (m->passthrough && !m->pt_offered) {
		if (m->pt_required)
			log_err("passthrough=on, but the kernel did not offer "
				"FUSE passthrough: using the daemon path");
		else
			log_info("the kernel did not offer FUSE passthrough: "
				 "using the daemon path");
		m->passthrough = false;
	}
	m->writeback_cache = !m->passthrough;
	m->fs.o.kernel_writes = m->passthrough;
	log_info("data path: %s", m->passthrough ? "passthrough" : "daemon");
}

static void ll_op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct h5m *m = userdata;

	choose_data_path(m);
	conn->max_write = 1 << 20;
	conn->max_readahead = 1 << 20;
	/* READ replies spliced from the image; never moved (passthrough.c) */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
	/* nothing else changes files: no invalidation on attribute change */
	conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
	if (m->writeback_cache && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
		m->fs.o.kernel_times = true;
	}
	/*
	 * POSIX ACLs as SOURCE has them: the kernel checks them (it asks
	 * for system.posix_acl_* and caches the answer), and leaves the
	 * umask and default ACL inheritance of new nodes to us (fs_mknod).
	 */
	if ((conn->capable & FUSE_CAP_POSIX_ACL) &&
	    (conn->capable & FUSE_CAP_DONT_MASK))
		conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
	/* locks stay in the kernel: correct for one mount, and fast */
	conn->want &= ~(unsigned)(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
	if (m->notify_fd >= 0) {
		if (write(m->notify_fd, "ready\n", 6) != 6)
			log_warn("cannot write to notify_pipe: %s",
				 strerror(errno));
		close(m->notify_fd);
		m->notify_fd = -1;
	}
	/* after fuse_daemonize: the PID systemd must follow is ours */
	notify_systemd("READY=1\nMAINPID=%d\nSTATUS=Serving %s",
		       (int)getpid(), m->mountpoint);
}

void ll_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	int err = fs_statfs(&ll_ctx(req)->fs, &sv);

	(void)ino;
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_statfs(req, &sv);
}


/* getxattr and listxattr share the size-probe protocol. */
static void reply_xattr(fuse_req_t req, int err, const char *buf,
			size_t size, size_t len)
{
	if (err)
		fuse_reply_err(req, -err);
	else if (size == 0)
		fuse_reply_xattr(req, len);
	else
		fuse_reply_buf(req, buf, len);
}

void ll_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    size_t size)
{
	char *buf;
	size_t len = 0;
	int err;

	if (ll_control_get(req, ino, name, size))
		return;
	buf = size ? malloc(size) : NULL;
	err = size && !buf ? -ENOMEM :
		fs_getxattr(&ll_ctx(req)->fs, ll_node(req, ino), name, buf,
			    size, &len);

	reply_xattr(req, err, buf, size, len);
	free(buf);
}

/*
 * Whether the caller has capability `cap` (CAP_SYS_ADMIN: may see
 * trusted.* names): its effective set in /proc, or, where that cannot be
 * read (a pid from another namespace), whether it is root.
 */
static bool caller_has(fuse_req_t req, int cap)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	unsigned long long eff;
	char path[64], line[256];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)c->pid);
	f = c->pid > 0 ? fopen(path, "re") : NULL;
	if (!f)
		return c->uid == 0;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "CapEff: %llx", &eff) == 1;
	fclose(f);
	if (!found)
		return c->uid == 0;
	return (eff >> cap) & 1;
}

/* Whether the caller is in group `gid`, as the kernel's in_group_p. */
static bool caller_in_group(fuse_req_t req, gid_t gid)
{
	gid_t groups[64], *list = groups;
	int n = fuse_req_getgroups(req, 64, groups);
	bool in = fuse_req_ctx(req)->gid == gid;

	if (n > 64 && (list = malloc((size_t)n * sizeof(*list))))
		n = fuse_req_getgroups(req, n, list);
	for (int i = 0; !in && list && i < n; i++)
		in = list[i] == gid;
	if (list != groups)
		free(list);
	return in;
}

void ll_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
		    const char *value, size_t size, int flags)
{
	struct h5m *m = ll_ctx(req);
	struct node *n = ll_node(req, ino);
	struct stat st;

	if (ll_control_set(req, ino, name, value, size) || ll_frozen(req))
		return;
	/*
	 * An access ACL set by a caller outside the file's group without
	 * CAP_FSETID clears set-group-ID, as posix_acl_update_mode does:
	 * the kernel says so only with FUSE_SETXATTR_EXT, which libfuse
	 * 3.14 does not offer, so ask here.
	 */
	if (!strcmp(name, ACL_XATTR_ACCESS) && !fs_getattr(&m->fs, n, &st) &&
	    (st.st_mode & S_ISGID) && !caller_in_group(req, st.st_gid) &&
	    !caller_has(req, CAP_FSETID))
		flags |= FS_XATTR_KILL_SGID;
	fuse_reply_err(req, -fs_setxattr(&m->fs, n, name, value, size,
					 flags));
}

void ll_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	size_t len = 0;
	int err = size && !buf ? -ENOMEM :
		fs_listxattr(&ll_ctx(req)->fs, ll_node(req, ino),
			     caller_has(req, CAP_SYS_ADMIN), buf,
			     size, &len);

	reply_xattr(req, err, buf, size, len);
	free(buf);
}

void ll_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	if (ll_frozen(req))
		return;
	fuse_reply_err(req, -fs_removexattr(&ll_ctx(req)->fs,
					    ll_node(req, ino), name));
}

const struct fuse_lowlevel_ops ll_ops = {
	.init = ll_op_init,
	.lookup = ll_op_lookup,
	.forget = ll_op_forget,
	.forget_multi = ll_op_forget_multi,
	.getattr = ll_op_getattr,
	.setattr = ll_op_setattr,
	.readlink = ll_op_readlink,
	.mknod = ll_op_mknod,
	.mkdir = ll_op_mkdir,
	.unlink = ll_op_unlink,
	.rmdir = ll_op_rmdir,
	.symlink = ll_op_symlink,
	.rename = ll_op_rename,
	.link = ll_op_link,
	.open = ll_op_open,
	.read = ll_op_read,
	.write_buf = ll_op_write_buf,
	.flush = ll_op_flush,
	.release = ll_op_release,
	.fsync = ll_op_fsync,
	.opendir = ll_op_opendir,
	.readdir = ll_op_readdir,
	.readdirplus = ll_op_readdirplus,
	.releasedir = ll_op_releasedir,
	.fsyncdir = ll_op_fsyncdir,
	.statfs = ll_op_statfs,
	.setxattr = ll_op_setxattr,
	.getxattr = ll_op_getxattr,
	.listxattr = ll_op_listxattr,
	.removexattr = ll_op_removexattr,
	.create = ll_op_create,
	.lseek = ll_op_lseek,
	.fallocate = ll_op_fallocate,
};
