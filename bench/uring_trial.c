/*
 * uring_trial.c - does FUSE over io_uring shorten a round trip here?
 *
 * A minimal FUSE filesystem (a root directory of N empty files) that
 * answers LOOKUP and GETATTR either the classic way (threads reading
 * /dev/fuse and writing replies) or over io_uring (Linux 6.14+, fuse
 * module parameter enable_uring): one ring per CPU, each with a few
 * entries registered with FUSE_IO_URING_CMD_REGISTER and answered with
 * FUSE_IO_URING_CMD_COMMIT_AND_FETCH. Entry and attribute timeouts are
 * 0, so every stat(2) of a name is one LOOKUP round trip; the figure is
 * stats per second by 1 and by 2 client processes.
 *
 *   uring_trial MNT classic|uring [NFILES [SECONDS]]
 *
 * Root only (it mounts with mount(2) and, for "uring", needs
 * enable_uring=Y, which bench/uring_trial.sh sets and restores). Prints
 * one JSON line. This is a measurement, not part of h5memfs: libfuse
 * 3.14 has no io_uring transport, so adopting it would mean speaking
 * the protocol in src/fuse, as the passthrough hooks already do.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* FUSE-over-io_uring ABI (protocol 7.42), absent from Debian 12 headers */
#define T_FLAGS2_OVER_IO_URING (1u << 9) /* FUSE_OVER_IO_URING, bit 41 */
#define T_INIT_EXT (1u << 30)
#define T_CMD_REGISTER 1
#define T_CMD_COMMIT_AND_FETCH 2

struct t_ent_in_out {
	uint64_t flags, commit_id;
	uint32_t payload_sz, padding;
	uint64_t reserved;
};

struct t_req_header {
	char in_out[128];	/* fuse_in_header in, fuse_out_header out */
	char op_in[128];	/* the request's first (fixed) argument */
	struct t_ent_in_out ent;
};

struct t_cmd_req {
	uint64_t flags, commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

/* fuse_init_out as of protocol 7.40+ (64 bytes) */
struct t_init_out {
	uint32_t major, minor, max_readahead, flags;
	uint16_t max_background, congestion_threshold;
	uint32_t max_write, time_gran;
	uint16_t max_pages, map_alignment;
	uint32_t flags2, max_stack_depth;
	uint16_t request_timeout, unused[11];
};

#define DEPTH 8			/* ring entries per queue */
#define PAYLOAD (1u << 20)	/* >= the kernel's max payload (128 KiB) */
#define MAXQ 64

static int devfd = -1;
static long nfiles = 10000;
static bool uring;
static atomic_bool inited;
static atomic_long by_dev, by_uring; /* requests answered each way */

/* ------------------------------------------------------------ answers */

static void fill_attr(struct fuse_attr *a, uint64_t ino)
{
	memset(a, 0, sizeof(*a));
	a->ino = ino;
	a->mode = ino == FUSE_ROOT_ID ? S_IFDIR | 0755 : S_IFREG | 0644;
	a->nlink = ino == FUSE_ROOT_ID ? 2 : 1;
	a->blksize = 4096;
}

/*
 * The reply to one request into out (up to 256 bytes): its size, or
 * -errno; -1000 when the request takes no reply (FORGET).
 */
static int answer(const struct fuse_in_header *in, const char *name,
		  void *out)
{
	switch (in->opcode) {
	case FUSE_LOOKUP: {
		struct fuse_entry_out *e = out;
		long i;
		char *end;

		if (in->nodeid != FUSE_ROOT_ID || name[0] != 'f')
			return -ENOENT;
		i = strtol(name + 1, &end, 10);
		if (*end || i < 0 || i >= nfiles)
			return -ENOENT;
		memset(e, 0, sizeof(*e));
		e->nodeid = (uint64_t)i + 2;
		fill_attr(&e->attr, e->nodeid);
		return sizeof(*e);
	}
	case FUSE_GETATTR: {
		struct fuse_attr_out *a = out;

		memset(a, 0, sizeof(*a));
		fill_attr(&a->attr, in->nodeid);
		return sizeof(*a);
	}
	case FUSE_FORGET:
	case FUSE_BATCH_FORGET:
		return -1000;
	case FUSE_DESTROY:
		return 0;
	default:
		return -ENOSYS;
	}
}

/* ------------------------------------------------------- /dev/fuse way */

static void reply_dev(uint64_t unique, int n, const void *body)
{
	struct fuse_out_header oh = {
		.len = sizeof(oh) + (n > 0 ? (uint32_t)n : 0),
		.error = n < 0 ? n : 0,
		.unique = unique,
	};
	struct iovec iov[2] = {
		{ &oh, sizeof(oh) }, { (void *)body, n > 0 ? (size_t)n : 0 },
	};

	if (writev(devfd, iov, 2) < 0 && errno != ENOENT)
		perror("writev /dev/fuse");
}

static void do_init(const struct fuse_in_header *in, const char *arg)
{
	const struct fuse_init_in *ii = (const void *)arg;
	struct t_init_out o = {
		.major = FUSE_KERNEL_VERSION,
		.minor = ii->minor,
		.max_readahead = ii->max_readahead,
		.flags = T_INIT_EXT,
		.max_background = 16,
		.congestion_threshold = 12,
		.max_write = 4096,
		.time_gran = 1,
		.flags2 = uring ? T_FLAGS2_OVER_IO_URING : 0,
	};

	reply_dev(in->unique, sizeof(o), &o);
	atomic_store(&inited, true);
}

static void *dev_thread(void *arg)
{
	static __thread char buf[PAYLOAD + 4096];
	char out[256];

	(void)arg;
	for (;;) {
		ssize_t n = read(devfd, buf, sizeof(buf));
		struct fuse_in_header *in = (void *)buf;
		int r;

		if (n < 0 && (errno == EINTR || errno == ENOENT))
			continue;
		if (n < (ssize_t)sizeof(*in))
			return NULL; /* ENODEV: unmounted */
		if (in->opcode == FUSE_INIT) {
			do_init(in, buf + sizeof(*in));
			continue;
		}
		r = answer(in, buf + sizeof(*in), out);
		atomic_fetch_add(&by_dev, 1);
		if (r != -1000)
			reply_dev(in->unique, r, out);
	}
}

/* -------------------------------------------------------- io_uring way */

struct ring {
	int fd;
	unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_cqe *cqes;
	unsigned char *sqes; /* 128-byte entries */
	unsigned to_submit;
};

struct entry {
	struct t_req_header hdr __attribute__((aligned(64)));
	struct iovec iov[2];
	char *payload;
};

static int ring_init(struct ring *r, unsigned entries)
{
	struct io_uring_params p;
	size_t sqsz, cqsz;
	char *sq, *cq;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128;
	r->fd = (int)syscall(__NR_io_uring_setup, entries, &p);
	if (r->fd < 0)
		return -errno;
	sqsz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	cqsz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP)
		sqsz = cqsz = sqsz > cqsz ? sqsz : cqsz;
	sq = mmap(NULL, sqsz, PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
	if (sq == MAP_FAILED)
		return -errno;
	cq = (p.features & IORING_FEAT_SINGLE_MMAP) ? sq :
	     mmap(NULL, cqsz, PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
	if (cq == MAP_FAILED)
		return -errno;
	r->sqes = mmap(NULL, p.sq_entries * 128, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (r->sqes == MAP_FAILED)
		return -errno;
	r->sq_head = (void *)(sq + p.sq_off.head);
	r->sq_tail = (void *)(sq + p.sq_off.tail);
	r->sq_mask = (void *)(sq + p.sq_off.ring_mask);
	r->sq_array = (void *)(sq + p.sq_off.array);
	r->cq_head = (void *)(cq + p.cq_off.head);
	r->cq_tail = (void *)(cq + p.cq_off.tail);
	r->cq_mask = (void *)(cq + p.cq_off.ring_mask);
	r->cqes = (void *)(cq + p.cq_off.cqes);
	r->to_submit = 0;
	return 0;
}

/* Queue one FUSE uring command for entry e (index idx). */
static void queue_cmd(struct ring *r, struct entry *e, unsigned idx,
		      uint32_t op, uint16_t qid)
{
	unsigned tail = *r->sq_tail, i = tail & *r->sq_mask;
	struct io_uring_sqe *sqe = (void *)(r->sqes + (size_t)i * 128);
	struct t_cmd_req cr = { .qid = qid };

	memset(sqe, 0, 128);
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = devfd;
	sqe->cmd_op = op;
	sqe->user_data = idx;
	if (op == T_CMD_REGISTER) {
		sqe->addr = (uint64_t)(uintptr_t)e->iov;
		sqe->len = 2;
	} else {
		cr.commit_id = e->hdr.ent.commit_id;
	}
	memcpy(sqe->cmd, &cr, sizeof(cr));
	r->sq_array[i] = i;
	__atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
	r->to_submit++;
}

static void serve_entry(struct ring *r, struct entry *e, unsigned idx,
			uint16_t qid)
{
	struct fuse_in_header in;
	struct fuse_out_header oh;
	int n;

	memcpy(&in, e->hdr.in_out, sizeof(in));
	e->payload[e->hdr.ent.payload_sz < PAYLOAD ?
		   e->hdr.ent.payload_sz : PAYLOAD - 1] = '\0';
	n = answer(&in, e->payload, e->payload);
	atomic_fetch_add(&by_uring, 1);
	if (n == -1000)
		n = 0; /* forgets do not come this way; never happens */
	oh = (struct fuse_out_header){
		.len = sizeof(oh) + (n > 0 ? (uint32_t)n : 0),
		.error = n < 0 ? n : 0,
		.unique = in.unique,
	};
	memcpy(e->hdr.in_out, &oh, sizeof(oh));
	e->hdr.ent.payload_sz = n > 0 ? (uint32_t)n : 0;
	queue_cmd(r, e, idx, T_CMD_COMMIT_AND_FETCH, qid);
}

static void *uring_thread(void *arg)
{
	uint16_t qid = (uint16_t)(uintptr_t)arg;
	struct entry *ents = calloc(DEPTH, sizeof(*ents));
	struct ring r;
	cpu_set_t set;
	int err;

	CPU_ZERO(&set);
	CPU_SET(qid, &set);
	sched_setaffinity(0, sizeof(set), &set);
	err = ring_init(&r, 2 * DEPTH);
	if (err || !ents) {
		fprintf(stderr, "io_uring_setup: %s\n", strerror(-err));
		exit(3);
	}
	for (unsigned i = 0; i < DEPTH; i++) {
		ents[i].payload = aligned_alloc(4096, PAYLOAD);
		ents[i].iov[0] = (struct iovec){ &ents[i].hdr,
						 sizeof(ents[i].hdr) };
		ents[i].iov[1] = (struct iovec){ ents[i].payload, PAYLOAD };
		queue_cmd(&r, &ents[i], i, T_CMD_REGISTER, qid);
	}
	for (;;) {
		unsigned head, tail;
		int n = (int)syscall(__NR_io_uring_enter, r.fd, r.to_submit, 1,
				     IORING_ENTER_GETEVENTS, NULL, 0);

		if (n < 0 && errno != EINTR) {
			perror("io_uring_enter");
			return NULL;
		}
		if (n >= 0)
			r.to_submit -= (unsigned)n < r.to_submit ?
					(unsigned)n : r.to_submit;
		head = *r.cq_head;
		tail = __atomic_load_n(r.cq_tail, __ATOMIC_ACQUIRE);
		for (; head != tail; head++) {
			struct io_uring_cqe *c = &r.cqes[head & *r.cq_mask];
			unsigned idx = (unsigned)c->user_data;

			if (c->res < 0) {
				if (c->res != -ENOTCONN && c->res != -ECANCELED)
					fprintf(stderr, "uring cmd: %s\n",
						strerror(-c->res));
				return NULL; /* unmounted (or refused) */
			}
			serve_entry(&r, &ents[idx], idx, qid);
		}
		__atomic_store_n(r.cq_head, head, __ATOMIC_RELEASE);
	}
}

/* ------------------------------------------------------------- clients */

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* stat names for `seconds` in `clients` processes: stats per second. */
static double stat_rate(const char *mnt, int clients, double seconds)
{
	int fds[2];
	long total = 0;
	double t0 = now(), t;

	if (pipe(fds))
		return -1;
	for (int c = 0; c < clients; c++) {
		if (fork() == 0) {
			char p[4096];
			struct stat st;
			long n = 0;
			double end = now() + seconds;

			while (now() < end) {
				for (int k = 0; k < 100; k++, n++) {
					snprintf(p, sizeof(p), "%s/f%ld", mnt,
						 (n * 7919 + c) % nfiles);
					if (stat(p, &st))
						_exit(2);
				}
			}
			if (write(fds[1], &n, sizeof(n)) != sizeof(n))
				_exit(3);
			_exit(0);
		}
	}
	close(fds[1]);
	for (int c = 0; c < clients; c++) {
		long n = 0;
		int st;

		if (read(fds[0], &n, sizeof(n)) == sizeof(n))
			total += n;
		wait(&st);
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			return -1;
	}
	t = now() - t0;
	close(fds[0]);
	return (double)total / t;
}

int main(int argc, char **argv)
{
	char opts[128];
	double secs = 3, r1, r2;
	int nq = (int)sysconf(_SC_NPROCESSORS_CONF);
	pthread_t th;

	if (argc < 3 || (strcmp(argv[2], "classic") && strcmp(argv[2], "uring"))) {
		fprintf(stderr, "usage: %s MNT classic|uring [NFILES [SECONDS]]\n",
			argv[0]);
		return 2;
	}
	uring = !strcmp(argv[2], "uring");
	if (argc > 3)
		nfiles = atol(argv[3]);
	if (argc > 4)
		secs = atof(argv[4]);
	if (nq > MAXQ)
		nq = MAXQ;
	devfd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (devfd < 0) {
		perror("/dev/fuse");
		return 1;
	}
	snprintf(opts, sizeof(opts),
		 "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other", devfd);
	if (mount("uring_trial", argv[1], "fuse.uring_trial",
		  MS_NOSUID | MS_NODEV, opts)) {
		perror("mount");
		return 1;
	}
	/* classic: two readers, like a small libfuse pool */
	for (int i = 0; i < 2; i++)
		pthread_create(&th, NULL, dev_thread, NULL);
	while (!atomic_load(&inited))
		usleep(1000);
	if (uring)
		for (int q = 0; q < nq; q++)
			pthread_create(&th, NULL, uring_thread,
				       (void *)(uintptr_t)q);
	r1 = stat_rate(argv[1], 1, 0.5); /* warm-up; rings registered */
	r1 = stat_rate(argv[1], 1, secs);
	r2 = stat_rate(argv[1], 2, secs);
	printf("{\"transport\": \"%s\", \"files\": %ld, "
	       "\"stats_per_s_1_client\": %.0f, "
	       "\"stats_per_s_2_clients\": %.0f, \"requests_dev\": %ld, "
	       "\"requests_uring\": %ld}\n",
	       argv[2], nfiles, r1, r2, atomic_load(&by_dev),
	       atomic_load(&by_uring));
	fflush(stdout);
	if (umount2(argv[1], MNT_DETACH))
		perror("umount");
	_exit(r1 > 0 && r2 > 0 ? 0 : 1);
}
