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
#include "internal.h"

const char *fs_state_name(const struct fs *fs, const struct node *n)
{
	if (!S_ISREG(n->mode))
		return S_ISDIR(n->mode) ? "directory" : "special";
	if (n->flags & N_LOADING)
		return "loading";
	if (n->file->direct_fd >= 0)
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
	uint64_t size = 0, ps = UINT64_C(1) << n->file->img.page_shift, d;

	if (!(n->flags & N_DIRTY))
		return 0;
	img_size(&n->file->img, &size);
	if (!(n->flags & N_FROM_SOURCE) ||
	    (fs_kernel_writes(fs) && !n->file->img.sums))
		return size;
	d = img_dirty_pages(&n->file->img) * ps;
	if (size > n->file->img.clean_size)
		d += size - n->file->img.clean_size;
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

/*
 * The members of a file's document up to last_writeback, without the
 * closing brace. ns.lock held.
 */
static void file_members(struct fs *fs, struct node *n, struct strbuf *b,
			 const char *path)
{
	bool loaded = S_ISREG(n->mode) && (n->flags & N_LOADED);
	uint64_t size = 0;

	if (loaded)
		img_size(&n->file->img, &size);
	else
		size = n->size;
	sb_printf(b, "{\"path\": ");
	sb_json_str(b, path ? path : "");
	sb_printf(b, ", \"state\": ");
	sb_json_str(b, fs_state_name(fs, n));
	sb_printf(b, ", \"size\": %llu, \"partial\": %s, "
		  "\"loaded_bytes\": %llu, \"memory_bytes\": %llu, "
		  "\"dirty_bytes\": %llu, \"volatile\": %s, "
		  "\"last_writeback\": {\"time\": ",
		  (unsigned long long)size,
		  loaded && n->file->lazy ? "true" : "false",
		  (unsigned long long)(!loaded ? 0 : n->file->lazy ?
			fs_lazy_loaded_locked(n) : size),
		  (unsigned long long)(loaded ? img_mem_bytes(&n->file->img)
					      : 0),
		  (unsigned long long)(loaded ? dirty_bytes(fs, n) : 0),
		  n->flags & N_VOLATILE ? "true" : "false");
	time_json(b, &fs_wb_result(n)->when);
	sb_printf(b, ", \"ok\": %s, \"error\": ",
		  fs_wb_result(n)->when.tv_sec && !fs_wb_result(n)->err ? "true" : "false");
	if (fs_wb_result(n)->err)
		sb_json_str(b, strerror(-fs_wb_result(n)->err));
	else
		sb_printf(b, "null");
	sb_printf(b, ", \"note\": ");
	sb_json_str(b, fs_wb_result(n)->note);
	sb_printf(b, "}");
}

int fs_status_file(struct fs *fs, struct node *n, char **json)
{
	struct strbuf b;
	bool unlinked;
	char *path;

	sb_init(&b);
	pthread_mutex_lock(&n->io); /* a stable image for the page marks */
	pthread_mutex_lock(&fs->ns.lock);
	fs_notice_kernel_writes(fs, n);
	if (fs_kernel_writes(fs) && n->file && (n->flags & N_DIRTY))
		img_sums_mark(&n->file->img, NULL, NULL);
	path = ns_path(&fs->ns, n, &unlinked);
	/* no libhdf5 here: h5memfs status --hdf5 asks it outside */
	file_members(fs, n, &b, path);
	sb_printf(&b, "}");
	pthread_mutex_unlock(&fs->ns.lock);
	pthread_mutex_unlock(&n->io);
	free(path);
	*json = sb_take(&b);
	return *json ? 0 : -ENOMEM;
}

int fs_status_files(struct fs *fs, uint64_t start, size_t max, char **json)
{
	uint64_t i = 0;
	struct strbuf b;
	bool first = true, more = false;

	sb_init(&b);
	sb_printf(&b, "{\"files\": [");
	pthread_mutex_lock(&fs->ns.lock);
	for (struct node *n = fs->ns.all; n; n = n->all_next) {
		size_t before = b.len;
		bool unlinked;
		char *path;

		if (!S_ISREG(n->mode) || !(n->flags & N_LOADED))
			continue;
		if (i++ < start)
			continue;
		fs_notice_kernel_writes(fs, n);
		path = ns_path(&fs->ns, n, &unlinked);
		if (!path || unlinked) {
			free(path); /* open but without a name: not listed */
			continue;
		}
		sb_printf(&b, "%s", first ? "" : ", ");
		file_members(fs, n, &b, path);
		sb_printf(&b, "}");
		free(path);
		if (b.len + 64 > max) { /* room for the tail */
			b.len = before;
			b.s[before] = '\0';
			more = true;
			i--;
			break;
		}
		first = false;
	}
	pthread_mutex_unlock(&fs->ns.lock);
	if (more && first) {
		free(sb_take(&b));
		return -E2BIG; /* one entry does not fit a page */
	}
	if (more)
		sb_printf(&b, "], \"next\": %llu}", (unsigned long long)i);
	else
		sb_printf(&b, "], \"next\": null}");
	*json = sb_take(&b);
	return *json ? 0 : -ENOMEM;
}

/* ", \"requests\": {\"lookup\": N, ...}": the kinds seen so far. */
static void status_requests(struct fs *fs, struct strbuf *b)
{
	const char *sep = "";

	sb_printf(b, ", \"requests\": {");
	for (int i = 0; i < FS_REQUEST_KINDS; i++) {
		uint64_t n = __atomic_load_n(&fs->stats.requests[i],
					     __ATOMIC_RELAXED);

		if (!n || !fs->request_names || !fs->request_names[i])
			continue;
		sb_printf(b, "%s\"%s\": %llu", sep, fs->request_names[i],
			  (unsigned long long)n);
		sep = ", ";
	}
	sb_printf(b, "}");
}

int fs_status_mount(struct fs *fs, char **json)
{
	uint64_t used = 0, dirty = 0, loaded = 0, ndirty = 0, nodes, meta;
	uint64_t npartial = 0, partial_size = 0, partial_have = 0;
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
		if (n->file->lazy) {
			uint64_t size = 0;

			img_size(&n->file->img, &size);
			npartial++;
			partial_size += size;
			partial_have += fs_lazy_loaded_locked(n);
		}
		if (n->flags & N_DIRTY) {
			ndirty++;
			dirty += dirty_bytes(fs, n);
		}
	}
	st = fs->stats;
	nodes = fs->ns.nodes;
	meta = fs->ns.meta_used;
	used = fs_budget_used_locked(fs);
	pthread_mutex_unlock(&fs->ns.lock);
	sb_printf(&b, "{\"format\": 1, \"pid\": %d, \"source\": ",
		  (int)getpid());
	sb_json_str(&b, fs->source_path ? fs->source_path : "");
	sb_printf(&b, ", \"max_memory_from\": ");
	sb_json_str(&b, fs->o.max_memory_from ? fs->o.max_memory_from : "");
	sb_printf(&b, ", \"images\": \"%s\", \"metadata_bytes\": %llu",
		  fs->o.images_tmpfs ? "tmpfs" : "memfd",
		  (unsigned long long)meta);
	sb_printf(&b, ", \"volatile\": %s, \"data_path\": \"%s\", "
		  "\"max_memory\": %llu, \"memory_used\": %llu, "
		  "\"files_loaded\": %llu, \"dirty_files\": %llu, "
		  "\"dirty_bytes\": %llu, \"nodes\": %llu, "
		  "\"journal_pending\": %lu, \"writebacks\": %llu, "
		  "\"writeback_bytes\": %llu, \"writeback_errors\": %llu, "
		  "\"conflicts\": %llu, \"namespace_conflicts\": %llu, "
		  "\"namespace_errors\": %llu, "
		  "\"invalid\": %llu, \"commits\": %llu, "
		  "\"loads\": %llu, \"load_bytes\": %llu, "
		  "\"lazy_loads\": %llu, \"fetch_bytes\": %llu, "
		  "\"partial_files\": %llu, \"partial_bytes\": %llu, "
		  "\"partial_loaded_bytes\": %llu, "
		  "\"read_requests\": %llu, \"write_requests\": %llu, "
		  "\"readdir_requests\": %llu, \"evictions\": %llu, \"preload\": {\"state\": \"%s\", "
		  "\"files\": %llu, \"bytes\": %llu, \"skipped\": %llu}",
		  fs->o.volatile_ || !fs->has_source ? "true" : "false",
		  fs_kernel_writes(fs) ? "passthrough" : "daemon",
		  (unsigned long long)fs->o.max_memory,
		  (unsigned long long)used, (unsigned long long)loaded,
		  (unsigned long long)ndirty, (unsigned long long)dirty,
		  (unsigned long long)nodes, fs->jrn.count,
		  (unsigned long long)st.writebacks,
		  (unsigned long long)st.writeback_bytes,
		  (unsigned long long)st.writeback_errors,
		  (unsigned long long)st.conflicts,
		  (unsigned long long)st.namespace_conflicts,
		  (unsigned long long)st.namespace_errors,
		  (unsigned long long)st.invalid,
		  (unsigned long long)st.commits,
		  (unsigned long long)st.loads,
		  (unsigned long long)st.load_bytes,
		  (unsigned long long)st.lazy_loads,
		  (unsigned long long)st.fetch_bytes,
		  (unsigned long long)npartial,
		  (unsigned long long)partial_size,
		  (unsigned long long)partial_have,
		  (unsigned long long)st.reads,
		  (unsigned long long)st.writes,
		  (unsigned long long)st.readdirs,
		  (unsigned long long)st.evictions,
		  !fs->preload.running && !fs->preload.done ? "off" :
		  fs->preload.done ? "done" : "running",
		  (unsigned long long)fs->preload.files,
		  (unsigned long long)fs->preload.bytes,
		  (unsigned long long)fs->preload.skipped);
	status_requests(fs, &b);
	sb_printf(&b, "}");
	*json = sb_take(&b);
	return *json ? 0 : -ENOMEM;
}

void fs_progress(struct fs *fs, struct fs_progress *p)
{
	*p = (struct fs_progress){ 0 };
	pthread_mutex_lock(&fs->ns.lock);
	for (struct node *n = fs->ns.all; n; n = n->all_next) {
		if (!S_ISREG(n->mode) || !(n->flags & N_LOADED) ||
		    !(n->flags & N_DIRTY) || (n->flags & N_VOLATILE) ||
		    fs->o.volatile_ || !fs->has_source)
			continue;
		p->dirty_files++;
		p->dirty_bytes += dirty_bytes(fs, n);
	}
	p->writebacks = fs->stats.writebacks;
	p->writeback_bytes = fs->stats.writeback_bytes;
	p->writeback_errors = fs->stats.writeback_errors;
	p->preload_files = fs->preload.files;
	p->preload_bytes = fs->preload.bytes;
	p->preload_running = fs->preload.running && !fs->preload.done;
	p->preload_done = fs->preload.done;
	pthread_mutex_unlock(&fs->ns.lock);
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
	if (fs_kernel_keeps_times(fs) && fs->has_source)
		id_err = fs_source_ident(fs, n, &id, false);
	pthread_mutex_lock(&n->io);
	pthread_mutex_lock(&fs->replay_lock);
	pthread_mutex_lock(&fs->ns.lock);
	if (!(n->flags & N_LOADED)) {
		err = 0; /* nothing in memory: SOURCE's version already */
		goto unlock_all;
	}
	if (fs->wb_busy == n) {
		/* its write-back copies it without io: not under its feet */
		err = -EBUSY;
		goto unlock_all;
	}
	if (!(n->flags & N_FROM_SOURCE) || !fs->has_source) {
		err = -ENODATA; /* no SOURCE version to go back to */
		goto unlock_all;
	}
	if (fs_kernel_keeps_times(fs) && !(n->flags & N_REBORN)) {
		/*
		 * The kernel's writeback cache keeps the size it knows: the
		 * names go to a new node, unloaded, that reads SOURCE's
		 * version when next opened. Not while the file is open.
		 */
		struct node *fresh;

		uint64_t size = 0;

		fs_notice_kernel_writes(fs, n);
		img_size(&n->file->img, &size);
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
		pthread_mutex_lock(&fs->ns.lock);
		fs_lazy_drop_locked(fs, n); /* no fill after this copy */
		pthread_mutex_unlock(&fs->ns.lock);
		err = img_truncate(&n->file->img, 0);
		if (!err)
			err = src_copy_data(fresh.fd, n->file->img.fd, id.size);
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
		img_clear_dirty(&n->file->img);
		img_seen_now(&n->file->img);
		fs_image_loaded(fs, &n->file->img);
	} else if (partial) {
		/*
		 * Half copied: neither version. Never written back, and
		 * loaded again (identity unknown) at its next open.
		 */
		n->flags &= ~(unsigned)(N_DIRTY | N_META_DIRTY);
		img_clear_dirty(&n->file->img);
		/* its clean state, so that no check takes it for changed */
		img_seen_now(&n->file->img);
		fs_image_loaded(fs, &n->file->img);
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
	} else if (n->nopen || !(n->flags & N_FROM_SOURCE)) {
		err = -EBUSY;
	} else if (!fs_image_clean_locked(fs, n)) {
		err = -EBUSY; /* unsaved changes: sync or discard first */
	} else {
		fs_unload_locked(fs, n);
	}
	pthread_mutex_unlock(&fs->ns.lock);
	pthread_mutex_unlock(&n->io);
	return err;
}
