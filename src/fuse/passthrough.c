/*
 * passthrough.c - custom /dev/fuse I/O carrying the passthrough flags.
 *
 * The read hook remembers which pending requests are INIT, OPEN or
 * CREATE (by their unique id) and whether the kernel offers
 * passthrough. The writev hook patches those replies: INIT gets
 * FUSE_PASSTHROUGH and a stack depth; OPEN and CREATE get
 * FOPEN_PASSTHROUGH and the backing id that the open handler left in
 * fh, marked with PT_MAGIC so that other handles are left alone.
 */
#include "passthrough.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "../core/log.h"
#include "kernel_abi.h"

#define PT_MAGIC UINT64_C(0x5048000000000000)
#define PT_SLOTS 128

/* Pending INIT/OPEN/CREATE requests; a handful at a time. */
static struct {
	pthread_mutex_t lock;
	uint64_t unique[PT_SLOTS];
	uint32_t opcode[PT_SLOTS];
	int devfd;
} pt = { .lock = PTHREAD_MUTEX_INITIALIZER, .devfd = -1 };

static uint32_t get32(const void *p, size_t off)
{
	uint32_t v;

	memcpy(&v, (const char *)p + off, sizeof(v));
	return v;
}

static void put32(void *p, size_t off, uint32_t v)
{
	memcpy((char *)p + off, &v, sizeof(v));
}

const char *pt_unavailable_reason(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	struct utsname u;
	int maj = 0, min = 0;

	if (uname(&u) == 0)
		sscanf(u.release, "%d.%d", &maj, &min);
	if (maj < 6 || (maj == 6 && min < 9))
		return "the kernel is older than 6.9 (no FUSE passthrough)";
	if (syscall(SYS_capget, &hdr, data) != 0 ||
	    !(data[CAP_SYS_ADMIN / 32].effective &
	      (1u << (CAP_SYS_ADMIN % 32))))
		return "the daemon lacks CAP_SYS_ADMIN (run as root)";
	return NULL;
}

static void remember(uint64_t unique, uint32_t opcode)
{
	pthread_mutex_lock(&pt.lock);
	for (int i = 0; i < PT_SLOTS; i++) {
		if (!pt.unique[i]) {
			pt.unique[i] = unique;
			pt.opcode[i] = opcode;
			break;
		}
	}
	pthread_mutex_unlock(&pt.lock);
}

static uint32_t forget(uint64_t unique)
{
	uint32_t op = 0;

	pthread_mutex_lock(&pt.lock);
	for (int i = 0; i < PT_SLOTS; i++) {
		if (pt.unique[i] == unique) {
			pt.unique[i] = 0;
			op = pt.opcode[i];
			break;
		}
	}
	pthread_mutex_unlock(&pt.lock);
	return op;
}

/*
 * Whether a request from the kernel asks the server to clear set-user-ID
 * and set-group-ID first (HANDLE_KILLPRIV_V2): a WRITE or SETATTR with
 * the kill flag, an O_TRUNC OPEN with FUSE_OPEN_KILL_SUIDGID (a CREATE
 * makes a new file: nothing to clear), or a SETATTR that sets nothing. The last is how the kernel passes on
 * file_remove_privs() of a passthrough write (backing_file_write_iter):
 * it drops ATTR_KILL_SUID/SGID and ATTR_MODE, leaving only ATTR_FORCE.
 * Nothing else sends an empty SETATTR here: the other source,
 * ATTR_KILL_PRIV for security.capability, needs that xattr, which the
 * mount never keeps (ns_xattr_kept).
 */
static bool kills_privileges(const void *buf, size_t n, uint32_t op)
{
	const char *in = (const char *)buf + KABI_IN_HEADER_SIZE;

	switch (op) {
	case FUSE_WRITE:
		return n >= KABI_IN_HEADER_SIZE + KABI_WRITE_IN_FLAGS + 4 &&
		       (get32(in, KABI_WRITE_IN_FLAGS) &
			KABI_WRITE_KILL_SUIDGID);
	case FUSE_SETATTR:
		return n >= KABI_IN_HEADER_SIZE + 4 &&
		       ((get32(in, KABI_SETATTR_IN_VALID) &
			 KABI_FATTR_KILL_SUIDGID) ||
			get32(in, KABI_SETATTR_IN_VALID) == 0);
	case FUSE_OPEN:
		return n >= KABI_IN_HEADER_SIZE + KABI_OPEN_IN_OPEN_FLAGS + 4 &&
		       (get32(in, KABI_OPEN_IN_OPEN_FLAGS) &
			KABI_OPEN_KILL_SUIDGID);
	default:
		return false;
	}
}

/* Status names of the request kinds (struct fs_stats.requests). */
static const char *const request_names[FS_REQUEST_KINDS] = {
	[FUSE_LOOKUP] = "lookup", [FUSE_FORGET] = "forget",
	[FUSE_GETATTR] = "getattr", [FUSE_SETATTR] = "setattr",
	[FUSE_READLINK] = "readlink", [FUSE_SYMLINK] = "symlink",
	[FUSE_MKNOD] = "mknod", [FUSE_MKDIR] = "mkdir",
	[FUSE_UNLINK] = "unlink", [FUSE_RMDIR] = "rmdir",
	[FUSE_RENAME] = "rename", [FUSE_LINK] = "link", [FUSE_OPEN] = "open",
	[FUSE_READ] = "read", [FUSE_WRITE] = "write",
	[FUSE_STATFS] = "statfs", [FUSE_RELEASE] = "release",
	[FUSE_FSYNC] = "fsync", [FUSE_SETXATTR] = "setxattr",
	[FUSE_GETXATTR] = "getxattr", [FUSE_LISTXATTR] = "listxattr",
	[FUSE_REMOVEXATTR] = "removexattr", [FUSE_FLUSH] = "flush",
	[FUSE_INIT] = "init", [FUSE_OPENDIR] = "opendir",
	[FUSE_READDIR] = "readdir", [FUSE_RELEASEDIR] = "releasedir",
	[FUSE_FSYNCDIR] = "fsyncdir", [FUSE_GETLK] = "getlk",
	[FUSE_SETLK] = "setlk", [FUSE_SETLKW] = "setlkw",
	[FUSE_ACCESS] = "access", [FUSE_CREATE] = "create",
	[FUSE_INTERRUPT] = "interrupt", [FUSE_BMAP] = "bmap",
	[FUSE_DESTROY] = "destroy", [FUSE_IOCTL] = "ioctl",
	[FUSE_POLL] = "poll", [FUSE_NOTIFY_REPLY] = "notify_reply",
	[FUSE_BATCH_FORGET] = "batch_forget", [FUSE_FALLOCATE] = "fallocate",
	[FUSE_READDIRPLUS] = "readdirplus", [FUSE_RENAME2] = "rename2",
	[FUSE_LSEEK] = "lseek", [FUSE_COPY_FILE_RANGE] = "copy_file_range",
	[FUSE_SYNCFS] = "syncfs", [FUSE_TMPFILE] = "tmpfile",
	[KABI_OP_STATX] = "statx",
};

const char *const *pt_request_names(void)
{
	return request_names;
}

/* The node a request read from /dev/fuse is about (its in_header). */
static struct node *in_node(struct h5m *m, const void *buf)
{
	uint64_t nodeid;

	memcpy(&nodeid, (const char *)buf + KABI_IN_NODEID, sizeof(nodeid));
	return nodeid == FUSE_ROOT_ID ? m->fs.ns.root
				      : (struct node *)(uintptr_t)nodeid;
}

static ssize_t pt_read(int fd, void *buf, size_t len, void *userdata)
{
	struct h5m *m = userdata;
	ssize_t n = read(fd, buf, len);
	uint32_t op;
	uint64_t unique;

	if (n < 16)
		return n;
	op = get32(buf, 4);
	memcpy(&unique, (char *)buf + 8, sizeof(unique));
	if (op < FS_REQUEST_KINDS)
		__atomic_add_fetch(&m->fs.stats.requests[op], 1,
				   __ATOMIC_RELAXED);
	if (op == FUSE_RELEASE && n >= KABI_IN_NODEID + 8)
		/* an OPEN read after it waits for it */
		fs_release_seen(in_node(m, buf));
	if (op == FUSE_INIT && n >= 40 + 20) {
		const char *in = (const char *)buf + 40; /* after in_header */
		uint32_t flags = get32(in, KABI_INIT_IN_FLAGS);

		m->pt_offered = (flags & KABI_INIT_EXT) &&
				(get32(in, KABI_INIT_IN_FLAGS2) &
				 KABI_PASSTHROUGH2);
		m->killpriv_offered = flags & KABI_HANDLE_KILLPRIV_V2;
		remember(unique, op);
	} else if (kills_privileges(buf, (size_t)n, op)) {
		struct node *node = in_node(m, buf);

		/* libfuse 3.14 drops these flags: act on them here */
		if (fs_kill_suid(&m->fs, node) && op == FUSE_OPEN)
			/* no attributes in an OPEN reply: the kernel
			 * would keep showing the old mode */
			fuse_lowlevel_notify_inval_inode(m->se, ll_ino(m, node),
							 -1, 0);
		if (op == FUSE_OPEN)
			remember(unique, op);
	} else if (op == FUSE_OPEN || op == FUSE_CREATE) {
		remember(unique, op);
	}
	return n;
}

/* The reply body as one buffer: libfuse sends header + one iovec. */
static void *body(struct iovec *iov, int count, size_t need)
{
	if (count < 2 || iov[1].iov_len < need)
		return NULL;
	return iov[1].iov_base;
}

static void patch_open(void *open_out)
{
	uint64_t fh;

	memcpy(&fh, open_out, sizeof(fh));
	if ((fh & ~UINT64_C(0xffffffff)) != PT_MAGIC)
		return;
	put32(open_out, KABI_OPEN_OUT_FLAGS,
	      get32(open_out, KABI_OPEN_OUT_FLAGS) | KABI_FOPEN_PASSTHROUGH);
	put32(open_out, KABI_OPEN_OUT_BACKING_ID, (uint32_t)fh);
}

static ssize_t pt_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct h5m *m = userdata;
	const char *hdr = iov[0].iov_base;
	uint64_t unique;
	int32_t error;
	uint32_t op;
	char *b;

	memcpy(&error, hdr + 4, sizeof(error));
	memcpy(&unique, hdr + 8, sizeof(unique));
	op = unique ? forget(unique) : 0;
	if (!error && op == FUSE_INIT &&
	    (b = body(iov, count, KABI_INIT_OUT_STACK_DEPTH + 4))) {
		if (m->killpriv_offered)
			put32(b, KABI_INIT_OUT_FLAGS,
			      get32(b, KABI_INIT_OUT_FLAGS) |
				      KABI_HANDLE_KILLPRIV_V2);
		if (m->passthrough) {
			put32(b, KABI_INIT_OUT_FLAGS,
			      (get32(b, KABI_INIT_OUT_FLAGS) | KABI_INIT_EXT) &
				      ~KABI_WRITEBACK_CACHE);
			put32(b, KABI_INIT_OUT_FLAGS2,
			      get32(b, KABI_INIT_OUT_FLAGS2) |
				      KABI_PASSTHROUGH2);
			put32(b, KABI_INIT_OUT_STACK_DEPTH, 1);
		}
	} else if (!error && op == FUSE_OPEN &&
		   (b = body(iov, count, 16))) {
		patch_open(b);
	} else if (!error && op == FUSE_CREATE &&
		   (b = body(iov, count, KABI_ENTRY_OUT_SIZE + 16))) {
		patch_open(b + KABI_ENTRY_OUT_SIZE);
	}
	return writev(fd, iov, count);
}

/*
 * READ replies, spliced from the image through a pipe (libfuse does so
 * only when the custom I/O has this hook: without it, every read was
 * copied into a freshly mapped buffer, a page fault per page, and the
 * daemon path read a cold file at a tenth of the speed). Nothing in a
 * READ reply needs patching, so the data goes as it is.
 */
static ssize_t pt_splice_send(int fdin, off_t *offin, int fdout,
			      off_t *offout, size_t len, unsigned int flags,
			      void *userdata)
{
	(void)userdata;
	/* never SPLICE_F_MOVE: the kernel could take the image's own page */
	return splice(fdin, offin, fdout, offout, len,
		      flags & ~(unsigned int)SPLICE_F_MOVE);
}

int pt_install(struct h5m *m, struct fuse_session *se)
{
	static const struct fuse_custom_io io = {
		.read = pt_read,
		.writev = pt_writev,
		.splice_send = pt_splice_send,
	};

	(void)m;
	pt.devfd = fuse_session_fd(se);
	return fuse_session_custom_io(se, &io, pt.devfd) < 0 ? -EIO : 0;
}

static int backing_open(void *arg, int fd)
{
	struct kabi_backing_map map = { .fd = fd };
	int r;

	(void)arg;
	r = ioctl(pt.devfd, KABI_DEV_IOC_BACKING_OPEN, &map);
	if (r < 0)
		return -errno;
	return r ? r : -EIO;
}

int pt_prepare_open(struct h5m *m, struct node *n, struct fuse_file_info *fi)
{
	int id, old;

	if (!m->passthrough)
		return -EOPNOTSUPP;
	id = fs_kernel_handle(&m->fs, n, backing_open, NULL, &old);
	pt_release(old); /* the reloaded image's: open files keep theirs */
	if (id < 0)
		return id;
	fi->fh = PT_MAGIC | (uint32_t)id;
	return 0;
}

void pt_release(int id)
{
	uint32_t v = (uint32_t)id;

	if (id <= 0)
		return;
	/* open files keep their own reference to the backing file */
	if (ioctl(pt.devfd, KABI_DEV_IOC_BACKING_CLOSE, &v) < 0)
		log_debug("backing close %d: %s", id, strerror(errno));
}

bool pt_is_passthrough(const struct fuse_file_info *fi)
{
	return (fi->fh & ~UINT64_C(0xffffffff)) == PT_MAGIC;
}
