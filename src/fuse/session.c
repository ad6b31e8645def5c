/*
 * session.c - the life of a mount, from fuse_session_new to the last
 * write-back.
 *
 * Signals are taken by one thread with sigwait(), not by handlers: on
 * SIGTERM it first syncs the mount (the kernel's writeback cache pours
 * its dirty pages into the daemon, which is still serving), then stops
 * the loop. The write-back itself happens in session_run once the loop
 * has returned, for a signal and an unmount alike.
 */
#include "session.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/log.h"
#include "bdi.h"
#include "ll.h"
#include "notify.h"
#include "passthrough.h"

struct sigctx {
	struct fuse_session *se;
	struct fs *fs;
	struct h5m *m;
	pthread_t main;
	sigset_t set;
	volatile sig_atomic_t quit;	/* woken only to end (session_run) */
};

static void wake(int sig)
{
	(void)sig; /* only interrupts the loop's wait */
}

static int logged_pass(struct h5m *m, const char *what,
		       struct fs_progress *after, unsigned *failed);

static void *signal_thread(void *arg)
{
	struct sigctx *c = arg;
	struct fs_progress after;
	unsigned failed = 0;
	int sig;

	if (sigwait(&c->set, &sig) != 0 || c->quit)
		return NULL;
	log_info("signal %d: writing back and unmounting", sig);
	/* stopped while the loop still serves: a tick may be in syncfs */
	fs_commit_stop(c->fs);
	ll_drain_all(c->m);
	/*
	 * The final write-back runs while the loop still serves: a SOURCE
	 * that is slow or hangs leaves the mount's users with answers
	 * (reads; changes get EROFS from now on) instead of a hang. What
	 * fails here is tried once more, and rescued, after the loop.
	 */
	notify_systemd("STOPPING=1\nSTATUS=Writing back");
	fs_freeze(c->fs);
	notify_watch_final();
	logged_pass(c->m, "final write-back (serving)", &after, &failed);
	fuse_session_exit(c->se);
	pthread_kill(c->main, SIGUSR1);
	return NULL;
}

/*
 * libfuse ends the request loop with pthread_cancel, and glibc loads
 * libgcc_s for it then, on first use: with every descriptor taken (as
 * many images as RLIMIT_NOFILE allows) that load fails and glibc aborts,
 * before the final write-back. Loaded now, once, it is there.
 */
static void load_unwinder(void)
{
	if (!dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NODELETE))
		log_warn("cannot load libgcc_s.so.1 (%s): out of descriptors, "
			 "the end of the mount could abort", dlerror());
}

/* Let images use as many descriptors as the hard limit allows. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int serve(struct fuse_session *se, const struct opts *o)
{
	struct fuse_loop_config *cfg;
	int ret;

	if (o->single_thread)
		return fuse_session_loop(se);
	cfg = fuse_loop_cfg_create();
	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	/* FS_MAX_WAITING of them at most wait for SOURCE (fs.h) */
	fuse_loop_cfg_set_max_threads(cfg, FS_WORKERS);
	fuse_loop_cfg_set_idle_threads(cfg, 16); /* little thread churn */
	ret = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return ret;
}

static int notify_open(const char *path)
{
	int fd;

	if (!path)
		return -1;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fprintf(stderr, "h5memfs: cannot open notify_pipe '%s': %s\n",
			path, strerror(errno));
	return fd;
}

/*
 * A whole-mount pass, `what` logged at its start and its end with
 * counts, bytes and time; *after: the progress at its end. 0 or the
 * first error.
 */
static int logged_pass(struct h5m *m, const char *what,
		       struct fs_progress *after, unsigned *failed)
{
	struct fs_progress before;
	struct timespec t0, t1;
	int err;

	fs_progress(&m->fs, &before);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	log_info("%s of %s: %llu dirty file(s), %llu bytes", what,
		 m->mountpoint, (unsigned long long)before.dirty_files,
		 (unsigned long long)before.dirty_bytes);
	/* final: images whose cleanness cannot be checked go too */
	err = fs_sync_last(&m->fs, failed);
	fs_progress(&m->fs, after);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	log_info("%s of %s ended in %.3f s: %llu file(s), %llu bytes "
		 "written, %u failed", what,
		 m->mountpoint, (double)(t1.tv_sec - t0.tv_sec) +
				(double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
		 (unsigned long long)(after->writebacks - before.writebacks),
		 (unsigned long long)(after->writeback_bytes -
				      before.writeback_bytes), *failed);
	return err;
}

/*
 * Write everything back; what cannot be written, or changed while it was
 * (never exit 0 then), goes to the rescue directory (*rescued: where,
 * when it was used; caller frees). Returns the exit status.
 */
static int final_writeback(struct h5m *m, const struct opts *o,
			   char **rescued)
{
	unsigned failed = 0, lost = 0, saved;
	struct fs_progress after;
	char *dir;
	int err;

	*rescued = NULL;
	err = logged_pass(m, "final write-back", &after, &failed);
	if (!err && after.dirty_files) {
		/* changed behind the pass (a passthrough writer): not durable */
		log_err("%s: %llu file(s) changed during the final write-back",
			o->mountpoint, (unsigned long long)after.dirty_files);
		err = -EIO;
	}
	if (!err)
		return 0;
	/* made now, fresh and unguessable: see fs_rescue_default */
	dir = o->rescue ? strdup(o->rescue) : fs_rescue_default(o->mountpoint);
	if (!dir) {
		log_err("%s: no rescue directory: %u file(s) not written back",
			o->mountpoint, failed);
		return 2;
	}
	saved = fs_rescue(&m->fs, dir, &lost);
	if (saved)
		log_err("%s: %u file(s) could not be written back to SOURCE; "
			"they were saved under %s", o->mountpoint, saved, dir);
	if (lost)
		log_err("%s: %u file(s) could not be written back nor "
			"rescued: their changes are lost", o->mountpoint, lost);
	if (saved)
		*rescued = dir;
	else
		free(dir);
	return 2;
}

int session_run(struct opts *o)
{
	struct fs_opts fo = {
		.volatile_ = o->volatile_,
		.increment = o->increment,
		.page_size = o->page_size,
		.max_memory = o->max_memory,
		.max_memory_from = o->max_memory_from,
		.sync_on_close = o->sync_on_close,
		.validate = (enum fs_validate)o->validate,
		.commit = o->commit,
		.atime = (enum fs_atime)o->atime,
		.source_timeout = o->source_timeout,
		.lazy = o->lazy,
	};
	struct sigaction sa = { .sa_handler = wake };
	struct sigctx sc = { 0 };
	struct fuse_session *se = NULL;
	struct h5m *m;
	pthread_t sigthr;
	bool sig_started = false;
	char *rescued = NULL;
	int err, status = 1, notify, store = -1;
	char *real_mnt = NULL;

	notify = notify_open(o->notify_pipe);
	if (o->notify_pipe && notify < 0)
		return 1;
	m = calloc(1, sizeof(*m));
	if (!m) {
		fprintf(stderr, "h5memfs: out of memory\n");
		goto out_notify;
	}
	m->notify_fd = notify;
	m->timeout = 3600.0;
	m->writeback_cache = true;
	if (o->passthrough != 2) {
		const char *why = pt_unavailable_reason();

		if (why && o->passthrough == 1) {
			fprintf(stderr, "h5memfs: passthrough=on cannot be "
				"honoured: %s\n", why);
			goto out_free;
		}
		m->passthrough = !why;
		m->pt_required = o->passthrough == 1;
	}
	raise_fd_limit();
	load_unwinder();
	/*
	 * Images in a private tmpfs sized to the budget: the kernel refuses
	 * growth past it, passthrough writes included. Needs CAP_SYS_ADMIN;
	 * memfds otherwise (the daemon checks the budget on growth).
	 */
	store = o->images_memfd ? -EPERM
				: img_store_private_tmpfs(o->max_memory);
	if (store >= 0)
		img_store_use(store);
	fo.images_tmpfs = store >= 0;
	fo.kernel_writes_wanted = m->passthrough;
	err = fs_init(&m->fs, o->source, &fo);
	if (err) {
		fprintf(stderr, "h5memfs: cannot open SOURCE '%s': %s\n",
			o->source, strerror(-err));
		goto out_free;
	}
	m->fs.request_names = pt_request_names();
	se = fuse_session_new(&o->fuse_args, &ll_ops, sizeof(ll_ops), m);
	if (!se)
		goto out_fs; /* libfuse printed why */
	m->se = se;
	m->mountpoint = o->mountpoint;
	m->single_thread = o->single_thread;
	/*
	 * Block the signals before the mount exists: one arriving before the
	 * signal thread runs stays pending for it, instead of killing the
	 * daemon and leaving a dead mount behind.
	 */
	sigemptyset(&sc.set);
	sigaddset(&sc.set, SIGTERM);
	sigaddset(&sc.set, SIGINT);
	sigaddset(&sc.set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sc.set, NULL);
	real_mnt = realpath(o->mountpoint, NULL); /* before it is ours */
	if (fuse_session_mount(se, o->mountpoint) != 0)
		goto out_session;
	bdi_lift_dirty_limit(real_mnt);
	/* both paths: the hooks also carry HANDLE_KILLPRIV_V2 */
	if (pt_install(m, se) < 0) {
		log_warn("cannot install the /dev/fuse hooks: daemon path");
		m->passthrough = false;
	}
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (fuse_daemonize(o->foreground) != 0)
		goto out_unmount;
	/*
	 * The root is listed before the loop serves, so it answers even if
	 * SOURCE hangs later; after the fork, so that no thread of the
	 * listing (a SOURCE job) is left behind in the parent that exits.
	 */
	fs_scan_root(&m->fs);
	if (!o->foreground)
		log_setup(true, (enum log_level)o->log_level, o->mountpoint);
	sc.se = se;
	sc.fs = &m->fs;
	sc.m = m;
	sc.main = pthread_self();
	if (pthread_create(&sigthr, NULL, signal_thread, &sc) != 0) {
		log_err("cannot start the signal thread");
		goto out_unmount;
	}
	sig_started = true;
	if ((err = notify_watch_start(&m->fs)) < 0)
		log_warn("cannot start the progress thread: %s",
			 strerror(-err));
	if ((err = ll_control_start(m)) < 0)
		log_warn("cannot start the control thread: %s", strerror(-err));
	err = fs_commit_start(&m->fs, ll_drain_all_cb, m);
	if (err)
		log_warn("cannot start the commit thread: %s", strerror(-err));
	if (o->preload && (err = fs_preload_start(&m->fs)) < 0)
		log_warn("cannot start preloading: %s", strerror(-err));
	err = serve(se, o);
	if (err < 0 && err != -EINTR)
		log_warn("request loop ended: %s", strerror(-err));
	/* after a signal, its thread said so and began the final pass */
	if (!fs_frozen(&m->fs))
		notify_systemd("STOPPING=1\nSTATUS=Writing back");
	fs_preload_stop(&m->fs);
	fs_commit_stop(&m->fs);
	ll_control_stop(m);
	if (!fs_frozen(&m->fs))
		notify_watch_final();
	status = final_writeback(m, o, &rescued);
	notify_watch_stop();
out_unmount:
	if (sig_started) {
		/* woken with one of its own signals, told to just end */
		sc.quit = 1;
		pthread_kill(sigthr, SIGTERM);
		pthread_join(sigthr, NULL);
	}
	fuse_session_unmount(se);
out_session:
	fuse_session_destroy(se);
	free(real_mnt);
	/* /dev/fuse closed: a killed drain child stuck on a FLUSH can end */
	ll_drain_reap();
out_fs:
	fs_destroy(&m->fs);
	if (store >= 0)
		close(store);
out_free:
	notify = m->notify_fd;
	free(m);
out_notify:
	if (notify >= 0) {
		if (status)
			(void)!write(notify, "fail\n", 5);
		close(notify);
	}
	notify_report_outcome(status, rescued);
	free(rescued);
	return status;
}
