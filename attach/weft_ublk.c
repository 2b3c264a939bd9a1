/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-ublk: a weft volume as a Linux block device, /dev/ublkbN, through
 * the kernel's ublk driver (ublk_drv, Linux 6.0 and later).
 *
 *   weft-ublk add -c MAP --volume NAME [--queues N] [--depth D] ...
 *   weft-ublk del N | /dev/ublkbN
 *   weft-ublk list
 *
 * How it talks to the driver (docs/attach.md, "ublk").  Control commands
 * go as io_uring URING_CMDs (128-byte SQEs) to /dev/ublk-control:
 * ADD_DEV (a device number, its queues and depth), SET_PARAMS (size, block
 * size, cache, discard), then, once every queue has fetched, START_DEV,
 * which makes /dev/ublkbN.  Each queue is a thread with its own io_uring
 * on /dev/ublkcN and its own libweft handle: it posts FETCH_REQ for every
 * tag, the driver completes one when the block layer has a request for
 * that tag (its descriptor in a read-only mmap of the driver's per-queue
 * array), the thread hands it to libweft, and when libweft completes it
 * posts COMMIT_AND_FETCH_REQ with the result, which also waits for the
 * tag's next request.  The same ring polls weft_fd(), so a queue thread
 * sleeps in one io_uring_enter for both sides.
 *
 * Buffers: the driver copies a request's pages to and from a per-tag
 * buffer the server names (no zero copy: the driver's zero-copy mode
 * hands out kernel buffers that only io_uring operations can use, and
 * libweft's sends are its fabric's).  The per-tag buffers come from
 * weft_buf_alloc, registered with the fabric, so libweft sends from them
 * without a second copy.
 *
 * Teardown: SIGTERM or SIGINT make the main thread send STOP_DEV, which
 * removes the disk once the requests in flight completed (libweft fails
 * those it cannot finish after timeout_ms) and then completes every
 * queue's fetches with UBLK_IO_RES_ABORT; the queue threads end, the
 * char device is closed and DEL_DEV frees the number.
 *
 * The program reads weft's usual variables (weft_env.h) and prints; the
 * library does neither.  The control commands, del and list are in
 * ublk_ctrl.c; the server and its queues here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"
#include "weft_env.h"

#include "ublk_ctrl.h"

#define WU_BS_SHIFT    12                 /* weft_volume_block_size() */
#define WU_MAX_IO      (256u << 10)       /* per tag: the largest request */
#define WU_MAX_QUEUES  16
#define WU_MAX_DEPTH   1024
#define WU_REAP        64
/*
 * While libweft has requests in flight a queue thread wakes at least this
 * often: libweft's retries and deadlines run inside its calls (weft.h has
 * no timer to sleep on), so a request to a dead target fails after
 * timeout_ms plus at most one tick.
 */
#define WU_TICK_MS     10

/* user_data of a queue ring's CQEs: a tag (< depth) or one of these. */
#define UD_WEFT_FD     (1ull << 62)       /* poll on weft_fd() */
#define UD_EVENT       (1ull << 61)       /* poll on the queue's eventfd */
/* user_data of libweft requests: a tag, or the flush asked by peers. */
#define UD_PEER_FLUSH  (1ull << 60)

/* What a tag waits for. */
enum wu_tag_state {
	TAG_FETCH,      /* a FETCH or COMMIT_AND_FETCH is posted: the driver has it */
	TAG_WEFT,       /* its request is in libweft */
	TAG_FULL,       /* libweft said -EAGAIN: on the queue's FIFO */
	TAG_PEERS,      /* a flush whose own part is done: waits for the
			 * other queues' flushes (tickets) */
	TAG_DEAD,       /* its fetch ended (ABORT or an error): no more requests */
};

struct wu_tag {
	enum wu_tag_state state;
	int32_t  result;        /* for the commit */
	uint32_t next;          /* FIFO link (TAG_FULL) */
};

struct wu_dev;

struct wu_queue {
	struct wu_dev *dev;
	unsigned     id;
	pthread_t    thread;
	bool         started;
	struct io_uring ring;
	struct weft_cluster *cl;
	struct weft_volume  *vol;
	const struct ublksrv_io_desc *iods;     /* the driver's, read-only */
	size_t       iods_len;
	char        *bufs;                      /* depth * WU_MAX_IO */
	struct wu_tag *tags;
	uint64_t    *tickets;                   /* depth * nr_queues */
	int          efd;                       /* peers' flush asks and dones */
	uint32_t     fifo_head, fifo_tail;      /* TAG_FULL tags, UINT32_MAX: none */
	unsigned     dead;                      /* tags in TAG_DEAD */
	unsigned     peers_waiting;             /* tags in TAG_PEERS */
	bool         weft_fd_armed, event_armed;
	/*
	 * Flushes other queues ask of this one's handle: a flush must cover
	 * every write completed before it, on any queue, and weft_flush()
	 * covers its own handle's.  asked counts the asks; a peer flush
	 * covers every ask made before it was issued; done and failed (the
	 * last ask a failed flush covered) are what askers read.
	 */
	_Atomic uint64_t asked, done, failed;
	uint64_t     issued;                    /* asks the flush in flight covers */
	bool         peer_flush_busy;
};

struct wu_dev {
	/* Options. */
	const char  *map, *volume, *transport, *run_dir, *host, *key, *keyring;
	const char  *log_path;
	unsigned     queues, depth, timeout_ms;
	int          dev_id;                    /* -1: the driver picks */
	int          log_level;
	bool         foreground;
	/* State. */
	struct wu_ctrl ctrl;
	int          cdev_fd;
	uint64_t     size;
	struct wu_queue q[WU_MAX_QUEUES];
	atomic_uint  fetched;                   /* queues whose fetches are posted */
	atomic_uint  exited;                    /* queue threads that ended */
	pthread_t    main_thread;
};

/* ---- messages ------------------------------------------------------------ */

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " add -c MAP --volume NAME [--queues N] [--depth D]\n"
		"                 [--transport tcp|unix|verbs] [--key NAME --keyring FILE]\n"
		"                 [--timeout-ms MS] [--run-dir DIR] [--host NAME]\n"
		"                 [--id N] [--foreground] [--log FILE]\n"
		"       " PROG " del N|/dev/ublkbN [--wait S]\n"
		"       " PROG " list\n"
		"  add: serve the volume as /dev/ublkbN through the kernel's ublk\n"
		"  driver (modprobe ublk_drv); prints the device and returns once it\n"
		"  exists, the server going on in the background (--foreground: in\n"
		"  this process, for a service manager).  N queues (1..%u, default 1),\n"
		"  each a thread with its own libweft handle, D requests each (1..%u,\n"
		"  default 64).  Requests libweft cannot finish in --timeout-ms\n"
		"  (10000) fail with EIO.  Keys: --key/--keyring, else $WEFT_KEY and\n"
		"  $WEFT_KEYRING (docs/security.md).\n"
		"  del: stop the server of /dev/ublkbN (SIGTERM, then STOP_DEV and\n"
		"  DEL_DEV if it is gone) and remove the device; waits S seconds (30).\n"
		"  list: the ublk devices, with the volume each serves.\n",
		WU_MAX_QUEUES, WU_MAX_DEPTH);
}

static void die_usage(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs(PROG ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs(" (" PROG " --help)\n", stderr);
	va_end(ap);
	exit(2);
}

static unsigned parse_uint(const char *opt, const char *v, unsigned lo, unsigned hi)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || end == v || *end || *v == '-' || n < lo || n > hi)
		die_usage("%s %s: not a number from %u to %u", opt, v, lo, hi);
	return (unsigned)n;
}

/* ---- the libweft side -------------------------------------------------------- */

static int open_volume(const struct wu_dev *d, size_t arena,
		       struct weft_cluster **cl, struct weft_volume **vol)
{
	struct weft_cluster_opts o = { .size = sizeof(o) };
	int ret;

	o.map_path = d->map;
	o.transport = d->transport;
	o.queue_depth = d->depth + 1;   /* every tag, and a peer flush */
	o.timeout_ms = d->timeout_ms;
	o.flags = WEFT_F_DEFER_SEND;
	o.log_level = d->log_level;
	o.run_dir = d->run_dir;
	o.host = d->host;
	o.key_name = d->key;
	o.keyring = d->keyring;
	o.buf_arena = arena;
	weft_env_opts(&o, PROG);
	ret = weft_cluster_open(&o, cl);
	if (ret == -ENOENT) {
		fprintf(stderr, PROG ": map %s: no such file\n", d->map);
		return ret;
	}
	if (ret) {
		fprintf(stderr, PROG ": cannot open the cluster of map %s: %s\n",
			d->map, weft_strerror(ret));
		return ret;
	}
	ret = weft_volume_open(*cl, d->volume, vol);
	if (ret) {
		if (ret == -ENOENT)
			fprintf(stderr, PROG ": volume '%s' does not exist in map %s\n",
				d->volume, d->map);
		else
			fprintf(stderr, PROG ": cannot open volume '%s': %s\n",
				d->volume, weft_strerror(ret));
		weft_cluster_close(*cl);
		*cl = NULL;
	}
	return ret;
}

/* libweft's error as the block layer takes it: a full device is ENOSPC
 * (BLK_STS_NOSPC), everything else the cluster failed to do EIO. */
static int32_t blk_errno(int64_t res)
{
	return res == -ENOSPC ? -ENOSPC : -EIO;
}

/* ---- a queue ------------------------------------------------------------------- */

static struct io_uring_sqe *get_sqe(struct wu_queue *q)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);

	if (!sqe) {             /* full: send what is there */
		io_uring_submit(&q->ring);
		sqe = io_uring_get_sqe(&q->ring);
	}
	return sqe;
}

/* Posts FETCH_REQ (first) or COMMIT_AND_FETCH_REQ for tag. */
static void post_io_cmd(struct wu_queue *q, unsigned tag, unsigned op, int32_t result)
{
	struct io_uring_sqe *sqe = get_sqe(q);
	struct ublksrv_io_cmd *c;

	/* The ring has room for every tag and both polls (ring_entries). */
	io_uring_prep_rw(IORING_OP_URING_CMD, sqe, q->dev->cdev_fd, NULL, 0, 0);
	sqe->cmd_op = op;
	c = (struct ublksrv_io_cmd *)sqe->cmd;
	c->q_id = (uint16_t)q->id;
	c->tag = (uint16_t)tag;
	c->result = result;
	c->addr = (uint64_t)(uintptr_t)(q->bufs + (size_t)tag * WU_MAX_IO);
	sqe->user_data = tag;
	q->tags[tag].state = TAG_FETCH;
}

static void commit(struct wu_queue *q, unsigned tag, int32_t result)
{
	post_io_cmd(q, tag, UBLK_U_IO_COMMIT_AND_FETCH_REQ, result);
}

static void arm_poll(struct wu_queue *q, int fd, uint64_t ud, bool *armed)
{
	struct io_uring_sqe *sqe;

	if (*armed)
		return;
	sqe = get_sqe(q);
	io_uring_prep_poll_add(sqe, fd, POLLIN);
	sqe->user_data = ud;
	*armed = true;
}

static void wake(int efd)
{
	uint64_t one = 1;

	if (write(efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		fprintf(stderr, PROG ": eventfd: %s\n", strerror(errno));
}

/* Peers: a flush of this queue's handle covering every ask so far. */
static void peer_flush_issue(struct wu_queue *q)
{
	uint64_t asked = atomic_load(&q->asked);
	int ret;

	if (q->peer_flush_busy || asked == q->issued)
		return;
	ret = weft_flush(q->vol, UD_PEER_FLUSH);
	if (ret == -EAGAIN)
		return;         /* room comes with a completion */
	q->issued = asked;
	if (ret) {
		atomic_store(&q->failed, asked);
		atomic_store(&q->done, asked);
		for (unsigned i = 0; i < q->dev->queues; i++)
			if (i != q->id)
				wake(q->dev->q[i].efd);
		return;
	}
	q->peer_flush_busy = true;
}

static void peer_flush_done(struct wu_queue *q, int64_t res)
{
	q->peer_flush_busy = false;
	if (res < 0)
		atomic_store(&q->failed, q->issued);
	/* release: failed is seen by whoever sees done */
	atomic_store(&q->done, q->issued);
	for (unsigned i = 0; i < q->dev->queues; i++)
		if (i != q->id)
			wake(q->dev->q[i].efd);
	peer_flush_issue(q);
}

/* A flush tag whose own part succeeded: done when every peer flushed past
 * its ticket; an error if a peer's covering flush failed. */
static bool peers_done(struct wu_queue *q, unsigned tag, int32_t *result)
{
	const uint64_t *t = q->tickets + (size_t)tag * q->dev->queues;

	for (unsigned i = 0; i < q->dev->queues; i++) {
		struct wu_queue *p = &q->dev->q[i];

		if (i == q->id)
			continue;
		if (atomic_load(&p->done) < t[i])
			return false;
		if (atomic_load(&p->failed) >= t[i])
			*result = -EIO;
	}
	return true;
}

static void peers_check(struct wu_queue *q)
{
	for (unsigned tag = 0; q->peers_waiting && tag < q->dev->depth; tag++) {
		struct wu_tag *t = &q->tags[tag];

		if (t->state == TAG_PEERS && peers_done(q, tag, &t->result)) {
			q->peers_waiting--;
			commit(q, tag, t->result);
		}
	}
}

/* The flush arrived here: ask every other queue to flush its handle too. */
static void peers_ask(struct wu_queue *q, unsigned tag)
{
	uint64_t *t = q->tickets + (size_t)tag * q->dev->queues;

	for (unsigned i = 0; i < q->dev->queues; i++) {
		struct wu_queue *p = &q->dev->q[i];

		if (i == q->id)
			continue;
		t[i] = atomic_fetch_add(&p->asked, 1) + 1;
		wake(p->efd);
	}
}

/* Hands the tag's request to libweft: 0, or -EAGAIN (libweft is full). */
static int issue(struct wu_queue *q, unsigned tag)
{
	const struct ublksrv_io_desc *iod = &q->iods[tag];
	unsigned op = ublksrv_get_op(iod);
	uint64_t off = iod->start_sector << 9;
	size_t len = (size_t)iod->nr_sectors << 9;
	void *buf = q->bufs + (size_t)tag * WU_MAX_IO;
	unsigned fua = ublksrv_get_flags(iod) & (UBLK_IO_F_FUA >> 8) ? WEFT_FUA : 0;
	int ret;

	switch (op) {
	case UBLK_IO_OP_READ:
		ret = weft_read(q->vol, buf, len, off, tag);
		break;
	case UBLK_IO_OP_WRITE:
		ret = weft_write(q->vol, buf, len, off, fua, tag);
		break;
	case UBLK_IO_OP_FLUSH:
		ret = weft_flush(q->vol, tag);
		if (!ret && q->dev->queues > 1)
			peers_ask(q, tag);
		break;
	case UBLK_IO_OP_DISCARD:
	case UBLK_IO_OP_WRITE_ZEROES:
		/* A discarded range reads as zeros (docs/store.md). */
		ret = weft_discard(q->vol, off, len, tag);
		break;
	default:
		ret = -EOPNOTSUPP;
	}
	if (ret == -EAGAIN)
		return ret;
	if (ret) {
		commit(q, tag, ret == -EOPNOTSUPP ? -EOPNOTSUPP : blk_errno(ret));
		return 0;
	}
	q->tags[tag].state = TAG_WEFT;
	return 0;
}

static void fifo_push(struct wu_queue *q, unsigned tag)
{
	q->tags[tag].state = TAG_FULL;
	q->tags[tag].next = UINT32_MAX;
	if (q->fifo_tail != UINT32_MAX)
		q->tags[q->fifo_tail].next = tag;
	else
		q->fifo_head = tag;
	q->fifo_tail = tag;
}

static void fifo_issue(struct wu_queue *q)
{
	uint32_t tag;

	while ((tag = q->fifo_head) != UINT32_MAX) {
		if (issue(q, tag) == -EAGAIN)
			return;
		q->fifo_head = q->tags[tag].next;
		if (q->fifo_head == UINT32_MAX)
			q->fifo_tail = UINT32_MAX;
	}
}

/* A request libweft completed. */
static void weft_done(struct wu_queue *q, const struct weft_cqe *c)
{
	unsigned tag;
	struct wu_tag *t;

	if (c->user_data == UD_PEER_FLUSH) {
		peer_flush_done(q, c->res);
		return;
	}
	tag = (unsigned)c->user_data;
	t = &q->tags[tag];
	if (c->res < 0) {
		commit(q, tag, blk_errno(c->res));
		return;
	}
	switch (ublksrv_get_op(&q->iods[tag])) {
	case UBLK_IO_OP_READ:
	case UBLK_IO_OP_WRITE:
		commit(q, tag, (int32_t)c->res);        /* bytes */
		return;
	case UBLK_IO_OP_FLUSH:
		t->result = 0;
		if (q->dev->queues > 1 && !peers_done(q, tag, &t->result)) {
			t->state = TAG_PEERS;
			q->peers_waiting++;
			return;
		}
		commit(q, tag, t->result);
		return;
	default:
		commit(q, tag, 0);
	}
}

/* Every completion libweft has; then what waited for room. */
static void reap(struct wu_queue *q)
{
	struct weft_cqe cqe[WU_REAP];
	int n;

	do {
		n = weft_poll(q->cl, cqe, WU_REAP);
		if (n < 0) {
			fprintf(stderr, PROG ": queue %u: weft_poll: %s\n", q->id,
				weft_strerror(n));
			return;
		}
		for (int i = 0; i < n; i++)
			weft_done(q, &cqe[i]);
		fifo_issue(q);
	} while (n > 0);        /* a poll that returns 0 arms the fd */
}

/* A CQE of the queue's ring. */
static void ring_event(struct wu_queue *q, const struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data, v;
	unsigned tag;

	if (ud == UD_WEFT_FD) {
		q->weft_fd_armed = false;
		return;         /* reaped after the batch */
	}
	if (ud == UD_EVENT) {
		q->event_armed = false;
		if (read(q->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			fprintf(stderr, PROG ": eventfd: %s\n", strerror(errno));
		peer_flush_issue(q);
		peers_check(q);
		return;
	}
	tag = (unsigned)ud;
	if (cqe->res == UBLK_IO_RES_OK) {
		if (issue(q, tag) == -EAGAIN)
			fifo_push(q, tag);
		return;
	}
	/* ABORT: the device stops, this tag gets no more requests. */
	if (cqe->res != UBLK_IO_RES_ABORT)
		fprintf(stderr, PROG ": queue %u tag %u: the driver refused a "
			"command: %s\n", q->id, tag, strerror(-cqe->res));
	q->tags[tag].state = TAG_DEAD;
	q->dead++;
}

static int queue_setup(struct wu_queue *q)
{
	struct wu_dev *d = q->dev;
	long page = sysconf(_SC_PAGESIZE);
	size_t max_cmd = ((UBLK_MAX_QUEUE_DEPTH * sizeof(struct ublksrv_io_desc)) +
			  page - 1) & ~(size_t)(page - 1);
	unsigned entries = 1;
	int ret;

	q->iods_len = ((d->depth * sizeof(struct ublksrv_io_desc)) + page - 1) &
		      ~(size_t)(page - 1);
	q->iods = mmap(NULL, q->iods_len, PROT_READ, MAP_SHARED | MAP_POPULATE,
		       d->cdev_fd, UBLKSRV_CMD_BUF_OFFSET + (off_t)(q->id * max_cmd));
	if (q->iods == MAP_FAILED) {
		q->iods = NULL;
		ret = -errno;
		fprintf(stderr, PROG ": queue %u: mmap of the descriptors: %s\n",
			q->id, strerror(-ret));
		return ret;
	}
	/* Every tag's command and both polls fit at once. */
	while (entries < d->depth + 2)
		entries <<= 1;
	ret = io_uring_queue_init(entries, &q->ring, 0);
	if (ret) {
		fprintf(stderr, PROG ": queue %u: io_uring: %s\n", q->id, strerror(-ret));
		return ret;
	}
	q->fifo_head = q->fifo_tail = UINT32_MAX;
	return 0;
}

/*
 * The queue's thread: posts every tag's fetch, then serves requests until
 * every fetch ended (the device stopped) and libweft has nothing in flight.
 */
static void *queue_main(void *arg)
{
	struct wu_queue *q = arg;
	struct wu_dev *d = q->dev;
	struct __kernel_timespec tick = { .tv_nsec = WU_TICK_MS * 1000000L };
	struct io_uring_cqe *cqe;
	unsigned head, n;
	int ret;

	for (unsigned tag = 0; tag < d->depth; tag++)
		post_io_cmd(q, tag, UBLK_U_IO_FETCH_REQ, 0);
	ret = io_uring_submit(&q->ring);
	if (ret < 0)
		fprintf(stderr, PROG ": queue %u: io_uring_submit: %s\n", q->id,
			strerror(-ret));
	atomic_fetch_add(&d->fetched, 1);
	pthread_kill(d->main_thread, SIGUSR1);
	while (q->dead < d->depth || weft_inflight(q->cl)) {
		arm_poll(q, weft_fd(q->cl), UD_WEFT_FD, &q->weft_fd_armed);
		arm_poll(q, q->efd, UD_EVENT, &q->event_armed);
		ret = weft_submit(q->cl);       /* WEFT_F_DEFER_SEND */
		if (ret)
			fprintf(stderr, PROG ": queue %u: weft_submit: %s\n", q->id,
				weft_strerror(ret));
		ret = io_uring_submit_and_wait_timeout(&q->ring, &cqe, 1,
			weft_inflight(q->cl) ? &tick : NULL, NULL);
		if (ret < 0 && ret != -ETIME && ret != -EINTR) {
			fprintf(stderr, PROG ": queue %u: io_uring: %s\n", q->id,
				strerror(-ret));
			break;
		}
		n = 0;
		io_uring_for_each_cqe(&q->ring, head, cqe) {
			ring_event(q, cqe);
			n++;
		}
		io_uring_cq_advance(&q->ring, n);
		reap(q);
	}
	atomic_fetch_add(&d->exited, 1);
	pthread_kill(d->main_thread, SIGUSR1);
	return NULL;
}

static void queue_free(struct wu_queue *q)
{
	if (q->ring.ring_fd > 0)
		io_uring_queue_exit(&q->ring);
	if (q->iods)
		munmap((void *)q->iods, q->iods_len);
	if (q->bufs)
		weft_buf_free(q->cl, q->bufs);
	if (q->vol)
		weft_volume_close(q->vol);
	if (q->cl)
		weft_cluster_close(q->cl);
	if (q->efd >= 0)
		close(q->efd);
	free(q->tags);
	free(q->tickets);
	memset(q, 0, sizeof(*q));
	q->efd = -1;
}

/* ---- add ------------------------------------------------------------------------- */

static int set_params(struct wu_dev *d, uint32_t id)
{
	struct ublk_params p = { .len = sizeof(p) };

	p.types = UBLK_PARAM_TYPE_BASIC | UBLK_PARAM_TYPE_DISCARD;
	/* weft_flush and WEFT_FUA: the block layer sends flushes and FUA. */
	p.basic.attrs = UBLK_ATTR_VOLATILE_CACHE | UBLK_ATTR_FUA;
	p.basic.logical_bs_shift = WU_BS_SHIFT;
	p.basic.physical_bs_shift = WU_BS_SHIFT;
	p.basic.io_min_shift = WU_BS_SHIFT;
	p.basic.io_opt_shift = WU_BS_SHIFT;
	p.basic.max_sectors = WU_MAX_IO >> 9;
	p.basic.dev_sectors = d->size >> 9;
	p.discard.discard_granularity = 1u << WU_BS_SHIFT;
	p.discard.max_discard_sectors = UINT32_MAX >> 9 & ~7u;
	p.discard.max_write_zeroes_sectors = UINT32_MAX >> 9 & ~7u;
	p.discard.max_discard_segments = 1;
	return wu_ctrl_cmd(&d->ctrl, UBLK_U_CMD_SET_PARAMS, id, &p, sizeof(p), 0);
}

/* /dev/ublkcN appears when devtmpfs (or udev) makes it: a bounded wait. */
static int open_cdev(uint32_t id)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/dev/ublkc%u", id);
	for (int i = 0; i < 100; i++) {
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd >= 0 || errno != ENOENT)
			break;
		usleep(50 * 1000);
	}
	if (fd < 0)
		fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
	return fd < 0 ? -errno : fd;
}

static void stop_threads(struct wu_dev *d, uint32_t id)
{
	int ret;

	/* STOP_DEV completes the fetches with ABORT once the disk is gone;
	 * a device never started has its fetches ended by it too. */
	ret = wu_ctrl_cmd(&d->ctrl, UBLK_U_CMD_STOP_DEV, id, NULL, 0, 0);
	if (ret && ret != -ENODEV)
		fprintf(stderr, PROG ": STOP_DEV of ublkb%u: %s\n", id, strerror(-ret));
	for (unsigned i = 0; i < d->queues; i++)
		if (d->q[i].started)
			pthread_join(d->q[i].thread, NULL);
}

/*
 * The server: the device made, served until a signal or until the driver
 * ends it (weft-ublk del from elsewhere).  report: the pipe to the parent
 * that waits for the device (-1 in the foreground).  Returns the exit code.
 */
static int serve(struct wu_dev *d, int report)
{
	struct ublksrv_ctrl_dev_info info = { 0 };
	sigset_t set;
	uint32_t id;
	int ret, sig, code = 1;
	bool stopped = false;
	char msg[64];

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);         /* threads inherit it */
	d->main_thread = pthread_self();

	for (unsigned i = 0; i < d->queues; i++) {
		struct wu_queue *q = &d->q[i];

		q->dev = d;
		q->id = i;
		q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		q->tags = calloc(d->depth, sizeof(*q->tags));
		q->tickets = calloc((size_t)d->depth * d->queues, sizeof(*q->tickets));
		if (q->efd < 0 || !q->tags || !q->tickets) {
			fprintf(stderr, PROG ": out of memory\n");
			return 1;
		}
		if (open_volume(d, (size_t)d->depth * WU_MAX_IO, &q->cl, &q->vol))
			return 1;
		q->bufs = weft_buf_alloc(q->cl, (size_t)d->depth * WU_MAX_IO);
		if (!q->bufs) {
			fprintf(stderr, PROG ": queue %u: no registered buffers\n", i);
			return 1;
		}
	}
	d->size = weft_volume_size(d->q[0].vol);

	if (wu_ctrl_open(&d->ctrl))
		return 1;
	info.nr_hw_queues = (uint16_t)d->queues;
	info.queue_depth = (uint16_t)d->depth;
	info.max_io_buf_bytes = WU_MAX_IO;
	info.dev_id = d->dev_id < 0 ? UINT32_MAX : (uint32_t)d->dev_id;
	info.ublksrv_pid = getpid();
	ret = wu_ctrl_cmd(&d->ctrl, UBLK_U_CMD_ADD_DEV, info.dev_id, &info, sizeof(info), 0);
	if (ret) {
		fprintf(stderr, PROG ": ADD_DEV: %s%s\n", strerror(-ret),
			ret == -EEXIST ? " (that device number is taken)" : "");
		return 1;
	}
	id = info.dev_id;
	ret = set_params(d, id);
	if (ret) {
		fprintf(stderr, PROG ": SET_PARAMS of ublkb%u: %s\n", id, strerror(-ret));
		goto out_del;
	}
	d->cdev_fd = open_cdev(id);
	if (d->cdev_fd < 0)
		goto out_del;
	for (unsigned i = 0; i < d->queues; i++) {
		if (queue_setup(&d->q[i]))
			goto out_stop;
		if (pthread_create(&d->q[i].thread, NULL, queue_main, &d->q[i])) {
			fprintf(stderr, PROG ": pthread_create failed\n");
			goto out_stop;
		}
		d->q[i].started = true;
	}
	/* START_DEV waits in the driver until every tag was fetched; wait
	 * for the threads to have posted them first. */
	while (atomic_load(&d->fetched) < d->queues && !atomic_load(&d->exited))
		sigwait(&set, &sig);
	ret = wu_ctrl_cmd(&d->ctrl, UBLK_U_CMD_START_DEV, id, NULL, 0, (uint64_t)getpid());
	if (ret) {
		fprintf(stderr, PROG ": START_DEV of ublkb%u: %s\n", id, strerror(-ret));
		goto out_stop;
	}
	wu_state_write(id, d->volume, d->map);
	snprintf(msg, sizeof(msg), "/dev/ublkb%u\n", id);
	if (report >= 0) {
		if (write(report, msg, strlen(msg)) < 0)
			fprintf(stderr, PROG ": the waiting parent is gone\n");
		close(report);
	} else {
		fputs(msg, stdout);
		fflush(stdout);
	}
	fprintf(stderr, PROG ": /dev/ublkb%u serves volume %s (%" PRIu64 " bytes), "
		"%u queue(s) of depth %u\n", id, d->volume, d->size, d->queues, d->depth);
	for (;;) {
		sigwait(&set, &sig);
		if (sig == SIGUSR1 && atomic_load(&d->exited) == 0)
			continue;
		if (sig == SIGUSR1) {
			/* The driver stopped the device (del from elsewhere) or a
			 * queue thread failed: end the others too. */
			fprintf(stderr, PROG ": ublkb%u: a queue ended: stopping\n", id);
		} else {
			fprintf(stderr, PROG ": ublkb%u: %s: stopping\n", id, strsignal(sig));
		}
		break;
	}
	code = 0;
out_stop:
	stop_threads(d, id);
	stopped = true;
out_del:
	for (unsigned i = 0; i < d->queues; i++)
		queue_free(&d->q[i]);
	if (d->cdev_fd >= 0)
		close(d->cdev_fd);
	d->cdev_fd = -1;
	if (!stopped)
		wu_ctrl_cmd(&d->ctrl, UBLK_U_CMD_STOP_DEV, id, NULL, 0, 0);
	/* After the char device is closed and unmapped: DEL_DEV waits for it. */
	ret = wu_ctrl_cmd(&d->ctrl, UBLK_U_CMD_DEL_DEV, id, NULL, 0, 0);
	if (ret && ret != -ENODEV) {
		fprintf(stderr, PROG ": DEL_DEV of ublkb%u: %s\n", id, strerror(-ret));
		code = 1;
	}
	wu_state_remove(id);
	wu_ctrl_close(&d->ctrl);
	if (code == 0)
		fprintf(stderr, PROG ": ublkb%u removed\n", id);
	return code;
}

static int cmd_add(struct wu_dev *d)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	int pfd[2], ret, st;
	char buf[64];
	ssize_t n;
	pid_t pid;

	/* Refuse at once, where the user sees it: a map or volume that does
	 * not open, a kernel without the driver.  Nothing crosses the fork:
	 * the server opens its own handles. */
	if (open_volume(d, 1u << WU_BS_SHIFT, &cl, &vol))
		return 1;
	weft_volume_close(vol);
	weft_cluster_close(cl);
	if (wu_ctrl_open(&d->ctrl))
		return 1;
	wu_ctrl_close(&d->ctrl);
	if (d->foreground)
		return serve(d, -1);

	if (pipe2(pfd, O_CLOEXEC))
		return perror(PROG ": pipe"), 1;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return perror(PROG ": fork"), 1;
	if (pid == 0) {
		int fd;

		close(pfd[0]);
		setsid();
		fd = open(d->log_path ? d->log_path : "/dev/null",
			  O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
		fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			dup2(fd, STDIN_FILENO);
			close(fd);
		}
		_exit(serve(d, pfd[1]));
	}
	close(pfd[1]);
	/* The device's name, or EOF when the server failed and ended. */
	do
		n = read(pfd[0], buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	close(pfd[0]);
	if (n > 0) {
		buf[n] = 0;
		fputs(buf, stdout);
		return 0;
	}
	while ((ret = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		;
	fprintf(stderr, PROG ": the server failed to start the device%s%s\n",
		d->log_path ? ": see " : " (--log FILE keeps its messages)",
		d->log_path ? d->log_path : "");
	return 1;
}

/* ---- main --------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "map", required_argument, NULL, 'c' },
		{ "volume", required_argument, NULL, 'v' },
		{ "queues", required_argument, NULL, 'q' },
		{ "depth", required_argument, NULL, 'd' },
		{ "transport", required_argument, NULL, 't' },
		{ "key", required_argument, NULL, 'k' },
		{ "keyring", required_argument, NULL, 'K' },
		{ "timeout-ms", required_argument, NULL, 'T' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "host", required_argument, NULL, 'H' },
		{ "id", required_argument, NULL, 'n' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "log", required_argument, NULL, 'l' },
		{ "wait", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct wu_dev d = { .queues = 1, .depth = 64, .dev_id = -1,
			    .ctrl.fd = -1, .cdev_fd = -1 };
	const char *cmd;
	unsigned wait_s = 30;
	uint32_t id;
	int c;

	for (unsigned i = 0; i < WU_MAX_QUEUES; i++)
		d.q[i].efd = -1;
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "--version")) {
		printf(PROG " %d.%d (libweft)\n", WEFT_VERSION_MAJOR, WEFT_VERSION_MINOR);
		return 0;
	}
	if (argc < 2)
		die_usage("a command is required: add, del or list");
	cmd = argv[1];
	if (strcmp(cmd, "add") && strcmp(cmd, "del") && strcmp(cmd, "list"))
		die_usage("unknown command '%s': add, del or list", cmd);
	optind = 2;
	while ((c = getopt_long(argc, argv, "c:n:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': d.map = optarg; break;
		case 'v': d.volume = optarg; break;
		case 'q': d.queues = parse_uint("--queues", optarg, 1, WU_MAX_QUEUES); break;
		case 'd': d.depth = parse_uint("--depth", optarg, 1, WU_MAX_DEPTH); break;
		case 't': d.transport = optarg; break;
		case 'k': d.key = optarg; break;
		case 'K': d.keyring = optarg; break;
		case 'T': d.timeout_ms = parse_uint("--timeout-ms", optarg, 1, 3600000); break;
		case 'r': d.run_dir = optarg; break;
		case 'H': d.host = optarg; break;
		case 'n': d.dev_id = (int)parse_uint("--id", optarg, 0, 1u << 20); break;
		case 'f': d.foreground = true; break;
		case 'l': d.log_path = optarg; break;
		case 'w': wait_s = parse_uint("--wait", optarg, 1, 3600); break;
		case 'h': usage(stdout); return 0;
		default: exit(2);       /* getopt said why */
		}
	}
	if (!strcmp(cmd, "add")) {
		if (optind != argc)
			die_usage("add: unexpected argument '%s'", argv[optind]);
		if (!d.map || !d.volume)
			die_usage("add: -c MAP and --volume NAME are required");
		return cmd_add(&d);
	}
	if (!strcmp(cmd, "del")) {
		if (optind == argc && d.dev_id >= 0) {
			id = (uint32_t)d.dev_id;
		} else if (optind + 1 != argc || wu_parse_dev(argv[optind], &id)) {
			die_usage("del: one device is required: N, ublkbN or /dev/ublkbN");
		}
		return wu_cmd_del(&d.ctrl, id, wait_s);
	}
	if (optind != argc)
		die_usage("list: unexpected argument '%s'", argv[optind]);
	return wu_cmd_list(&d.ctrl);
}
