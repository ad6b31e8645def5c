/*
 * control.c - what the status, sync, discard and evict commands act on:
 * status documents (JSON) of a file and of the mount, dropping unsaved
 * changes, dropping a clean image from memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../backing/pin.h"
#include "../core/strbuf.h"
#include "../h5/h5check.h"
#include "internal.h"

const char *fs_state_name(const struct fs *fs, const struct node *n)
{
	if (!S_ISREG(n->mode))
		return S_ISDIR(n->mode) ? "directory" : "special";
	if (n->flags & N_LOADING)
		return "loading";
	if (n->direct_fd >= 0)
		return "from SOURCE";
	if (!(n->flags & N_LOADED))
		return "not loaded";
	if (n->flags & N_INVALID)
		return "invalid HDF5";
	if (n->flags & N_CONFLICT)
		return "conflict";
	if ((n->flags & N_VOLATILE) || fs->o.volatile_ || !fs->has_source)
		return "volatile";
	return n->flags & N_DIRTY ? "dirty" : "clean";
}

/* Bytes a write-back would write (daemon path: exact; else estimate). */
static uint64_t dirty_bytes(const struct fs *fs, const struct node *n)
{
	uint64_t size = 0, ps = UINT64_C(1) << n->img.page_shift, d;

	if (!(n->flags & N_DIRTY))
		return 0;
	img_size(&n->img, &size);
	if (!(n->flags & N_FROM_SOURCE) || (fs->o.kernel_writes && !n->img.sums))
		return size;
	d = img_dirty_pages(&n->img) * ps;
	if (size > n->img.clean_size)
		d += size - n->img.clean_size;
	return d < size ? d : size;
}

static void time_json(struct strbuf *b, const struct timespec *t)
{
	char when[40];
	struct tm tm;

	if (!t->tv_sec) {
		sb_printf(b, "null");
		return;
	}
	gmtime_r(&t->tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	sb_json_str(b, when);
}

/* The hdf5 member: what libhdf5 sees in a loaded image. */
static void hdf5_json(struct strbuf *b, struct node *n)
{
	struct h5_report r;
	uint64_t size = 0;

	img_size(&n->img, &size);
	if (n->img.fd < 0 || h5_inspect_isolated(n->img.fd, size, NULL, &r) < 0 ||
	    !r.is_hdf5) {
		sb_printf(b, "null");
		return;
	}
	sb_printf(b, "{\"superblock_version\": %d, \"userblock\": %llu, "
		  "\"writer_open\": %s, \"swmr_writer\": %s, \"opens\": %s, "
		  "\"objects\": %lu, \"unknown_to_libhdf5\": %s, "
		  "\"error\": ", r.sb_version,
		  (unsigned long long)r.base, r.writer_open ? "true" : "false",
		  r.swmr ? "true" : "false", r.opens ? "true" : "false",
		  r.objects, r.newer ? "true" : "false");
	if (r.opens)
		sb_printf(b, "null}");
	else {
		sb_json_str(b, r.why);
		sb_printf(b, "}");
	}
}

int fs_status_file(struct fs *fs, struct node *n, char **json)
{
	struct strbuf b;
	bool unlinked, loaded;
	char *path;
	uint64_t size = 0;

	sb_init(&b);
	pthread_mutex_lock(&n->io); /* a stable image for libhdf5 */
	pthread_mutex_lock(&fs->ns.lock);
	fs_notice_kernel_writes(fs, n);
	if (fs->o.kernel_writes && (n->flags & N_DIRTY))
		img_sums_mark(&n->img, NULL, NULL);
	path = ns_path(&fs->ns, n, &unlinked);
	loaded = S_ISREG(n->mode) && (n->flags & N_LOADED);
	if (loaded)
		img_size(&n->img, &size);
	else
		size = n->size;
	sb_printf(&b, "{\"path\": ");
	sb_json_str(&b, path ? path : "");
	sb_printf(&b, ", \"state\": ");
	sb_json_str(&b, fs_state_name(fs, n));
	sb_printf(&b, ", \"size\": %llu, \"memory_bytes\": %llu, "
		  "\"dirty_bytes\": %llu, \"volatile\": %s, "
		  "\"last_writeback\": {\"time\": ",
		  (unsigned long long)size,
		  (unsigned long long)(loaded ? img_mem_bytes(&n->img) : 0),
		  (unsigned long long)(loaded ? dirty_bytes(fs, n) : 0),
		  n->flags & N_VOLATILE ? "true" : "false");
	time_json(&b, &n->wb.when);
	sb_printf(&b, ", \"ok\": %s, \"error\": ",
		  n->wb.when.tv_sec && !n->wb.err ? "true" : "false");
	if (n->wb.err)
		sb_json_str(&b, strerror(-n->wb.err));
	else
		sb_printf(&b, "null");
	sb_printf(&b, ", \"note\": ");
	sb_json_str(&b, n->wb.note);
	sb_printf(&b, "}, \"hdf5\": ");
	pthread_mutex_unlock(&fs->ns.lock);
	if (loaded)
		hdf5_json(&b, n);
	else
		sb_printf(&b, "null");
	sb_printf(&b, "}");
	pthread_mutex_unlock(&n->io);
	free(path);
	*json = sb_take(&b);
	return *json ? 0 : -ENOMEM;
}

int fs_status_mount(struct fs *fs, char **json)
{
	uint64_t used = 0, dirty = 0, loaded = 0, ndirty = 0, nodes;
	struct fs_stats st;
	struct strbuf b;

	sb_init(&b);
	pthread_mutex_lock(&fs->ns.lock);
	for (struct node *n = fs->ns.all; n; n = n->all_next) {
		if (!S_ISREG(n->mode) || !(n->flags & N_LOADED))
			continue;
		fs_notice_kernel_writes(fs, n);
		ns_account(&fs->ns, n);
		loaded++;
		if (n->flags & N_DIRTY) {
			ndirty++;
			dirty += dirty_bytes(fs, n);
		}
	}
	st = fs->stats;
	nodes = fs->ns.nodes;
	used = fs->ns.mem_used;
	pthread_mutex_unlock(&fs->ns.lock);
	sb_printf(&b, "{\"format\": 1, \"source\": ");
	sb_json_str(&b, fs->source_path ? fs->source_path : "");
	sb_printf(&b, ", \"volatile\": %s, \"data_path\": \"%s\", "
		  "\"max_memory\": %llu, \"memory_used\": %llu, "
		  "\"files_loaded\": %llu, \"dirty_files\": %llu, "
		  "\"dirty_bytes\": %llu, \"nodes\": %llu, "
		  "\"journal_pending\": %lu, \"writebacks\": %llu, "
		  "\"writeback_bytes\": %llu, \"writeback_errors\": %llu, "
		  "\"conflicts\": %llu, \"invalid\": %llu, \"commits\": %llu, "
		  "\"loads\": %llu, \"load_bytes\": %llu, "
		  "\"read_requests\": %llu, \"write_requests\": %llu, "
		  "\"evictions\": %llu, \"preload\": {\"state\": \"%s\", "
		  "\"files\": %llu, \"bytes\": %llu, \"skipped\": %llu}}",
		  fs->o.volatile_ || !fs->has_source ? "true" : "false",
		  fs->o.kernel_writes ? "passthrough" : "daemon",
		  (unsigned long long)fs->o.max_memory,
		  (unsigned long long)used, (unsigned long long)loaded,
		  (unsigned long long)ndirty, (unsigned long long)dirty,
		  (unsigned long long)nodes, fs->jrn.count,
		  (unsigned long long)st.writebacks,
		  (unsigned long long)st.writeback_bytes,
		  (unsigned long long)st.writeback_errors,
		  (unsigned long long)st.conflicts,
		  (unsigned long long)st.invalid,
		  (unsigned long long)st.commits,
		  (unsigned long long)st.loads,
		  (unsigned long long)st.load_bytes,
		  (unsigned long long)st.reads,
		  (unsigned long long)st.writes,
		  (unsigned long long)st.evictions,
		  !fs->preload.running && !fs->preload.done ? "off" :
		  fs->preload.done ? "done" : "running",
		  (unsigned long long)fs->preload.files,
		  (unsigned long long)fs->preload.bytes,
		  (unsigned long long)fs->preload.skipped);
	*json = sb_take(&b);
	return *json ? 0 : -ENOMEM;
}

int fs_discard(struct fs *fs, struct node *n)
{
	struct src_ident id;
	struct stat st;
	struct img fresh;
	bool partial = false;
	char *path;
	int fd, err = 0;

	int id_err = -ENODATA;

	if (!S_ISREG(n->mode))
		return -EISDIR;
	/*
	 * SOURCE's identity of the file, asked first and with the deadline:
	 * a hung SOURCE must not be waited for with ns.lock held.
	 */
	if (fs->o.kernel_times && fs->has_source)
		id_err = fs_source_ident(fs, n, &id);
	pthread_mutex_lock(&n->io);
	pthread_mutex_lock(&fs->replay_lock);
	pthread_mutex_lock(&fs->ns.lock);
	if (!(n->flags & N_LOADED)) {
		err = 0; /* nothing in memory: SOURCE's version already */
		goto unlock_all;
	}
	if (!(n->flags & N_FROM_SOURCE) || !fs->has_source) {
		err = -ENODATA; /* no SOURCE version to go back to */
		goto unlock_all;
	}
	if (fs->o.kernel_times && !(n->flags & N_REBORN)) {
		/*
		 * The kernel's writeback cache keeps the size it knows: the
		 * names go to a new node, unloaded, that reads SOURCE's
		 * version when next opened. Not while the file is open.
		 */
		struct node *fresh;

		uint64_t size = 0;

		fs_notice_kernel_writes(fs, n);
		img_size(&n->img, &size);
		err = id_err;
		if (err)
			goto unlock_all;
		if (n->nopen && size == id.size)
			goto in_place; /* the kernel's size stays right */
		if (n->nopen) {
			err = -EBUSY;
			goto unlock_all;
		}
		fresh = ns_rebirth(&fs->ns, n);
		if (!fresh) {
			err = -ENOMEM;
			goto unlock_all;
		}
		fs_hlink_moved(fs, n, fresh);
		fresh->size = id.size;
		fresh->mtime = id.mtime;
		fresh->ctime = id.ctime;
		fresh->flags &= ~(unsigned)(N_DIRTY | N_META_DIRTY);
		err = 0;
		goto unlock_all;
	}
in_place:
	path = fs_source_path_locked(fs, n);
	pthread_mutex_unlock(&fs->ns.lock);
	fd = path ? src_open_data(&fs->src, path, O_RDONLY, NULL) : -ENOMEM;
	free(path);
	pthread_mutex_unlock(&fs->replay_lock);
	if (fd < 0) {
		err = fd;
		goto unlock_io;
	}
	/*
	 * Into a fresh image first: a load that fails (SOURCE's I/O error,
	 * no room) leaves the file as it was, changes and all.
	 */
	img_init(&fresh, fs->o.page_size);
	err = src_load_fd(fd, &fresh, &id);
	if (!err && fstat(fd, &st) < 0)
		err = -errno;
	close(fd);
	if (!err) {
		/* in place: open handles and the kernel keep the same memfd */
		partial = true;
		err = img_truncate(&n->img, 0);
		if (!err)
			err = src_copy_data(fresh.fd, n->img.fd, id.size);
	}
	img_destroy(&fresh);
	pthread_mutex_lock(&fs->ns.lock);
	if (!err) {
		n->ident = id;
		n->mode = (n->mode & S_IFMT) | (st.st_mode & 07777);
		n->uid = st.st_uid;
		n->gid = st.st_gid;
		n->atime = st.st_atim;
		n->mtime = st.st_mtim;
		n->ctime = st.st_ctim;
		n->flags &= ~(unsigned)(N_DIRTY | N_META_DIRTY | N_INVALID |
					N_CONFLICT);
		img_clear_dirty(&n->img);
		img_seen_now(&n->img);
		if (fs->o.kernel_writes)
			img_sums_take(&n->img);
	} else if (partial) {
		/*
		 * Half copied: neither version. Never written back, and
		 * loaded again (identity unknown) at its next open.
		 */
		n->flags &= ~(unsigned)(N_DIRTY | N_META_DIRTY);
		img_clear_dirty(&n->img);
		memset(&n->ident, 0, sizeof(n->ident));
	}
	pthread_mutex_unlock(&fs->ns.lock);
	goto unlock_io;
unlock_all:
	pthread_mutex_unlock(&fs->ns.lock);
	pthread_mutex_unlock(&fs->replay_lock);
unlock_io:
	pthread_mutex_unlock(&n->io);
	return err;
}

int fs_evict(struct fs *fs, struct node *n)
{
	int err = 0;

	if (!S_ISREG(n->mode))
		return -EISDIR;
	pthread_mutex_lock(&n->io);
	pthread_mutex_lock(&fs->ns.lock);
	fs_notice_kernel_writes(fs, n);
	if (!(n->flags & N_LOADED)) {
		err = 0;
	} else if (n->flags & N_DIRTY) {
		err = -EBUSY; /* unsaved changes: sync or discard first */
	} else if (n->nopen || !(n->flags & N_FROM_SOURCE)) {
		err = -EBUSY;
	} else {
		fs_unload_locked(fs, n);
	}
	pthread_mutex_unlock(&fs->ns.lock);
	pthread_mutex_unlock(&n->io);
	return err;
}
