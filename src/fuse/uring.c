/*
 * uring.c - FUSE requests over io_uring (see uring.h).
 *
 * Threads: for each queue (one per possible CPU: the kernel hands a
 * request to the queue of the CPU its caller runs on) a few threads,
 * each with its own small io_uring and ONE registered entry. A thread
 * busy with a request (one waiting for SOURCE, say) then holds no entry
 * the kernel could give the next request to: that goes to another
 * thread of the queue, as with the /dev/fuse thread pool.
 *
 * An entry is a header (the request's fuse_in_header and first
 * argument, later the reply's fuse_out_header) and a payload buffer
 * (the other arguments, later the reply's body). The payload sits just
 * after some slack, so that the header and first argument can be put
 * back in front of it: the request is then one buffer, as libfuse reads
 * it from /dev/fuse, without copying the payload.
 */
#include "uring.h"

#include <errno.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../core/log.h"
#include "ll.h"
#include "passthrough.h"

/* The FUSE-over-io_uring ABI (protocol 7.42), absent from 6.1 headers. */
#define CMD_REGISTER 1
#define CMD_COMMIT_AND_FETCH 2

struct ent_in_out {
	uint64_t flags, commit_id;
	uint32_t payload_sz, padding;
	uint64_t reserved;
};

struct req_header {
	char in_out[128];	/* fuse_in_header, then fuse_out_header */
	char op_in[128];	/* the first argument of the request */
	struct ent_in_out ent;
};

struct cmd_req {
	uint64_t flags, commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

#define IN_HEADER 40		/* sizeof(struct fuse_in_header) */
#define OUT_HEADER 16		/* sizeof(struct fuse_out_header) */
#define SLACK 4096		/* room for header + first argument */
#define PAYLOAD ((1u << 20) + 4096) /* >= max_write and max_pages */
#define MAX_QUEUES 32		/* more CPUs: /dev/fuse instead */
#define THREADS 16		/* in all, at least 2 per queue */

struct ring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_cqe *cqes;
	unsigned char *sqes;	/* 128-byte entries (SQE128) */
	unsigned to_submit;
};

struct worker {
	pthread_t thread;
	struct ring ring;
	uint16_t qid;
	bool started;
	/* the entry */
	struct req_header hdr __attribute__((aligned(64)));
	struct iovec iov[2];
	char *buf;		/* SLACK + PAYLOAD */
	_Atomic uint64_t unique;	/* request in hand, 0 when none */
	/* a reply made by another thread, kept until the owner commits */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool replied;
	char *side;
	size_t side_len;
};

static struct {
	struct h5m *m;
	int devfd;
	struct worker *w;
	int n;
	atomic_bool stop;
	atomic_bool refused;	/* a registration failed: /dev/fuse it is */
} U = { .devfd = -1 };

static __thread struct worker *self;

/* ---------------------------------------------------------- the ring */

static int ring_setup(struct ring *r, unsigned entries)
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
	cq = sq == MAP_FAILED || (p.features & IORING_FEAT_SINGLE_MMAP) ? sq :
	     mmap(NULL, cqsz, PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
	r->sqes = mmap(NULL, p.sq_entries * 128, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED) {
		int err = -errno;

		close(r->fd); /* the mappings go with the process */
		return err;
	}
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

/* Queue the entry's next command: REGISTER or COMMIT_AND_FETCH. */
static void queue_cmd(struct worker *w, uint32_t op)
{
	struct ring *r = &w->ring;
	unsigned tail = *r->sq_tail, i = tail & *r->sq_mask;
	struct io_uring_sqe *sqe = (void *)(r->sqes + (size_t)i * 128);
	struct cmd_req cr = { .qid = w->qid };

	memset(sqe, 0, 128);
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = U.devfd;
	sqe->cmd_op = op;
	if (op == CMD_REGISTER) {
		sqe->addr = (uint64_t)(uintptr_t)w->iov;
		sqe->len = 2;
	} else {
		cr.commit_id = w->hdr.ent.commit_id;
	}
	memcpy(sqe->cmd, &cr, sizeof(cr));
	r->sq_array[i] = i;
	__atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
	r->to_submit++;
}

/* Submit what is queued and wait up to 200 ms for a completion. */
static int ring_enter(struct ring *r)
{
	struct __kernel_timespec ts = { .tv_nsec = 200 * 1000 * 1000 };
	struct io_uring_getevents_arg arg = {
		.ts = (uint64_t)(uintptr_t)&ts,
	};
	int n = (int)syscall(__NR_io_uring_enter, r->fd, r->to_submit, 1,
			     IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
			     &arg, sizeof(arg));

	if (n < 0)
		return errno == ETIME || errno == EINTR ? 0 : -errno;
	r->to_submit -= (unsigned)n < r->to_submit ? (unsigned)n
						    : r->to_submit;
	return 0;
}

/* ---------------------------------------------------------- requests */

static void reply_error(struct worker *w, uint64_t unique, int err)
{
	int32_t e = -err;
	uint32_t len = OUT_HEADER;

	memcpy(w->hdr.in_out, &len, 4);
	memcpy(w->hdr.in_out + 4, &e, 4);
	memcpy(w->hdr.in_out + 8, &unique, 8);
	w->hdr.ent.payload_sz = 0;
}

/* Serve the request the entry holds; its reply is then in the entry. */
static void serve(struct worker *w)
{
	uint32_t len, pay = w->hdr.ent.payload_sz;
	uint64_t unique;
	size_t arg0;
	char *start;

	memcpy(&len, w->hdr.in_out, 4);
	memcpy(&unique, w->hdr.in_out + 8, 8);
	if (len < IN_HEADER + (uint64_t)pay || pay > PAYLOAD ||
	    len - IN_HEADER - pay > sizeof(w->hdr.op_in)) {
		log_warn("io_uring: malformed request (%u bytes, payload %u)",
			 len, pay);
		reply_error(w, unique, -EIO);
		return;
	}
	/* header and first argument back in front of the payload */
	arg0 = len - IN_HEADER - pay;
	start = w->buf + SLACK - arg0 - IN_HEADER;
	memcpy(start, w->hdr.in_out, IN_HEADER);
	memcpy(start + IN_HEADER, w->hdr.op_in, arg0);
	pt_inspect_request(U.m, start, len);
	w->replied = false;
	atomic_store(&w->unique, unique);
	self = w;
	fuse_session_process_buf(U.m->se,
				 &(struct fuse_buf){ .size = len,
						     .mem = start });
	self = NULL;
	/* a reply made by another thread (after a wait, say) */
	pthread_mutex_lock(&w->lock);
	while (!w->replied)
		pthread_cond_wait(&w->cond, &w->lock);
	atomic_store(&w->unique, 0);
	if (w->side) {
		memcpy(w->hdr.in_out, w->side, OUT_HEADER);
		memcpy(w->buf + SLACK, w->side + OUT_HEADER,
		       w->side_len - OUT_HEADER);
		w->hdr.ent.payload_sz = (uint32_t)(w->side_len - OUT_HEADER);
		free(w->side);
		w->side = NULL;
	}
	pthread_mutex_unlock(&w->lock);
	__atomic_add_fetch(&U.m->fs.stats.uring_requests, 1, __ATOMIC_RELAXED);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	queue_cmd(w, CMD_REGISTER);
	while (!atomic_load(&U.stop)) {
		struct ring *r = &w->ring;
		unsigned head, tail;
		int err = ring_enter(r);

		if (err) {
			log_warn("io_uring: %s", strerror(-err));
			break;
		}
		head = *r->cq_head;
		tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
		for (; head != tail; head++) {
			int res = r->cqes[head & *r->cq_mask].res;

			if (res < 0) {
				/* ENOTCONN, ECANCELED: unmounted */
				if (res != -ENOTCONN && res != -ECANCELED &&
				    res != -ENODEV &&
				    !atomic_exchange(&U.refused, true))
					log_warn("io_uring refused: %s; requests "
						 "go through /dev/fuse",
						 strerror(-res));
				__atomic_store_n(r->cq_head, head + 1,
						 __ATOMIC_RELEASE);
				return NULL;
			}
			/*
			 * Once the request loop has ended nothing is served
			 * (the final write-back is running): the request
			 * waits for the unmount, like one nobody reads.
			 */
			if (atomic_load(&U.stop) || fuse_session_exited(U.m->se))
				break;
			serve(w);
			queue_cmd(w, CMD_COMMIT_AND_FETCH);
		}
		__atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
		if (fuse_session_exited(U.m->se))
			break;
	}
	return NULL;
}

/* The number of possible CPUs: the kernel makes one queue for each. */
static int possible_cpus(void)
{
	FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
	int lo = 0, hi = -1, n = 0;
	char sep;

	if (!f)
		return -1;
	/* "0-3" or "0" or "0-3,8-11" */
	while (fscanf(f, "%d", &lo) == 1) {
		hi = lo;
		if (fscanf(f, "%c", &sep) == 1 && sep == '-' &&
		    fscanf(f, "%d", &hi) == 1)
			(void)fscanf(f, "%c", &sep);
		n = hi + 1;
	}
	fclose(f);
	return n;
}

/*
 * Make the kernel give up on io_uring for this connection: until every
 * queue has an entry it holds requests back, and a failed registration
 * is what sends them to /dev/fuse again.
 */
static void fall_back(void)
{
	struct worker *w = calloc(1, sizeof(*w));
	struct io_uring_cqe *c;

	if (!w || ring_setup(&w->ring, 4) < 0) {
		log_err("io_uring: cannot fall back to /dev/fuse");
		free(w);
		return;
	}
	queue_cmd(w, CMD_REGISTER);
	w->iov[0].iov_len = 0; /* refused: the header is too small */
	while (*w->ring.cq_head == __atomic_load_n(w->ring.cq_tail,
						   __ATOMIC_ACQUIRE))
		if (ring_enter(&w->ring) < 0)
			break;
	c = &w->ring.cqes[*w->ring.cq_head & *w->ring.cq_mask];
	log_warn("io_uring: requests go through /dev/fuse (%s)",
		 strerror(-c->res));
	close(w->ring.fd);
	free(w);
}

bool uring_possible(void)
{
	int nq = possible_cpus();

	return nq > 0 && nq <= MAX_QUEUES;
}

int uring_start(struct h5m *m, int devfd)
{
	int nq = possible_cpus(), per, err = 0;

	if (U.w)
		return 0;
	U.devfd = devfd;
	if (nq <= 0 || nq > MAX_QUEUES) {
		fall_back();
		return -ENOTSUP;
	}
	per = THREADS / nq < 2 ? 2 : THREADS / nq;
	U.m = m;
	U.n = nq * per;
	U.w = calloc((size_t)U.n, sizeof(*U.w));
	if (!U.w) {
		fall_back();
		return -ENOMEM;
	}
	for (int i = 0; i < U.n; i++) {
		struct worker *w = &U.w[i];

		w->qid = (uint16_t)(i % nq);
		pthread_mutex_init(&w->lock, NULL);
		pthread_cond_init(&w->cond, NULL);
		w->buf = aligned_alloc(4096, SLACK + PAYLOAD);
		if (!w->buf || (err = ring_setup(&w->ring, 4)) < 0) {
			err = err ? err : -ENOMEM;
			break;
		}
		w->iov[0] = (struct iovec){ &w->hdr, sizeof(w->hdr) };
		w->iov[1] = (struct iovec){ w->buf + SLACK, PAYLOAD };
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
			close(w->ring.fd);
			err = -EAGAIN;
			break;
		}
		w->started = true;
	}
	if (err)
		log_warn("io_uring: cannot set up the rings: %s", strerror(-err));
	else
		log_info("requests over io_uring: %d queues, %d threads", nq,
			 U.n);
	if (err) {
		/* some queue may lack an entry: /dev/fuse for all */
		uring_stop();
		fall_back();
	}
	return err;
}

static struct worker *owner(uint64_t unique)
{
	if (!U.w || !unique)
		return NULL;
	if (self && atomic_load(&self->unique) == unique)
		return self;
	for (int i = 0; i < U.n; i++)
		if (atomic_load(&U.w[i].unique) == unique)
			return &U.w[i];
	return NULL;
}

/* The reply's bytes into w: the payload when w's own thread replies. */
static void deliver(struct worker *w, const struct iovec *iov, int count,
		    size_t total)
{
	char *dst;

	pthread_mutex_lock(&w->lock);
	if (w == self) {
		dst = NULL;
		w->hdr.ent.payload_sz = (uint32_t)(total - OUT_HEADER);
	} else {
		dst = w->side = malloc(total);
		w->side_len = total;
	}
	for (int i = 0, at = 0; i < count; i++) {
		size_t n = iov[i].iov_len;

		if (dst) {
			memcpy(dst + at, iov[i].iov_base, n);
		} else if (at < OUT_HEADER) {
			/* the header comes first and whole (libfuse) */
			memcpy(w->hdr.in_out + at, iov[i].iov_base, n);
		} else {
			memcpy(w->buf + SLACK + at - OUT_HEADER,
			       iov[i].iov_base, n);
		}
		at += (int)n;
	}
	w->replied = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

bool uring_take_reply(const struct iovec *iov, int count, ssize_t *ret)
{
	size_t total = 0;
	uint64_t unique;
	struct worker *w;

	if (!U.w || count < 1 || iov[0].iov_len != OUT_HEADER)
		return false;
	memcpy(&unique, (const char *)iov[0].iov_base + 8, 8);
	w = owner(unique);
	if (!w)
		return false;
	for (int i = 0; i < count; i++)
		total += iov[i].iov_len;
	if (total - OUT_HEADER > PAYLOAD) {
		*ret = -1;
		errno = EINVAL;
		return true;
	}
	deliver(w, iov, count, total);
	*ret = (ssize_t)total;
	return true;
}

bool uring_take_spliced_reply(int fdin, size_t len, ssize_t *ret)
{
	char hdr[OUT_HEADER], *body;
	struct worker *w = self;
	uint64_t unique;
	size_t got = 0;

	/* only the ring thread itself splices a reply to its request */
	if (!w || !atomic_load(&w->unique) || len < OUT_HEADER ||
	    len - OUT_HEADER > PAYLOAD)
		return false;
	if (read(fdin, hdr, OUT_HEADER) != OUT_HEADER) {
		*ret = -1;
		return true;
	}
	memcpy(&unique, hdr + 8, 8);
	if (unique != atomic_load(&w->unique)) {
		/* not ours after all: never happens (one request a thread) */
		log_err("io_uring: spliced reply for another request");
		*ret = -1;
		errno = EIO;
		return true;
	}
	body = w->buf + SLACK;
	while (got < len - OUT_HEADER) {
		ssize_t n = read(fdin, body + got, len - OUT_HEADER - got);

		if (n <= 0) {
			*ret = -1;
			return true;
		}
		got += (size_t)n;
	}
	pthread_mutex_lock(&w->lock);
	memcpy(w->hdr.in_out, hdr, OUT_HEADER);
	w->hdr.ent.payload_sz = (uint32_t)got;
	w->replied = true;
	pthread_mutex_unlock(&w->lock);
	*ret = (ssize_t)len;
	return true;
}

void uring_stop(void)
{
	if (!U.w)
		return;
	atomic_store(&U.stop, true);
	for (int i = 0; i < U.n; i++) {
		struct worker *w = &U.w[i];

		if (!w->started)
			continue;
		pthread_join(w->thread, NULL);
		w->started = false;
		close(w->ring.fd);
	}
}
