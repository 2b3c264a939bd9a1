/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nbdkit-weft-plugin.so: serve a weft volume over NBD with nbdkit.
 *
 *   nbdkit weft map=/etc/weft/map.conf volume=vol1 [transport=tcp]
 *          [timeout_ms=10000] [queue_depth=128] [run_dir=/run/weft]
 *          [host=NAME] [short_circuit=true] [log_level=warning]
 *          [key=NAME keyring=FILE]
 *
 * The plugin links libweft like any application (weft.h only) and reads
 * its settings from nbdkit's parameters, never from the environment.
 *
 * Threads (docs/attach.md, "Thread model").  A libweft cluster handle
 * belongs to one thread at a time and has no locks inside, while nbdkit
 * calls .pread & co from many worker threads at once
 * (NBDKIT_THREAD_MODEL_PARALLEL).  The process has one handle, and the
 * workers take turns on it under a mutex: a worker pushes its request on
 * a lock-free stack and, if it gets the mutex, queues what was pushed and,
 * when nobody reaps completions yet, becomes the leader that sleeps on
 * weft_fd() and answers the others; else it sleeps until the leader
 * answers it or hands it the lead (run()).  At QD1 the worker that asks is
 * the one that reaps, with no thread hop; at depth one wake-up per request,
 * and no worker ever sleeps on the mutex to submit.
 *
 * With one handle, a flush or FUA on any connection covers the writes of
 * every connection: that is what makes can_multi_conn true.  A handle per
 * worker thread (each request synchronous on it, a flush going through
 * every handle that wrote) was built and measured, and lost at QD1 and
 * QD32: docs/attach.md, "Thread model".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "weft.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

#define WN_BS          4096u              /* weft_volume_block_size() */
#define WN_MAX_REQ     (32u << 20)        /* largest read/write advertised */
#define WN_REAP        64                 /* completions reaped per call */
/*
 * The leader wakes at least this often even when no fd is readable:
 * libweft's retries and deadlines run inside its calls, and weft.h offers
 * no timer to sleep on (weft_wait has one, but the leader must also wake
 * when another worker answered its request).  Only a fault leaves
 * requests in flight without replies, so the tick costs nothing in normal
 * operation.
 */
#define WN_TICK_MS     5

enum wn_op {
	WN_READ,
	WN_WRITE,
	WN_DISCARD,
	WN_FLUSH,
};

/* Why a follower's semaphore was posted (written once, before the post). */
enum wn_wake {
	WAKE_DONE = 1,          /* res is set: return it */
	WAKE_LEAD,              /* the leader left: reap for the others */
};

/*
 * One NBD request, on the stack of the worker that waits for it.  Its
 * worker fills it and pushes it (next); then all but woke and res are
 * read and written under W.lock.
 */
struct wn_req {
	struct wn_req *next;    /* pushed (W.sq), then on the FIFO of requests
				 * refused -EAGAIN */
	struct wn_req *wnext, **wprev;  /* on W.waiters while waiting */
	enum wn_op op;
	unsigned   flags;       /* WEFT_FUA */
	void      *buf;
	uint64_t   len, off;
	int64_t    res;         /* bytes or -errno */
	bool       done;        /* res is set */
	bool       waiting;     /* a follower asleep on sem */
	bool       leader;      /* its worker leads */
	enum wn_wake woke;
	sem_t      sem;
};

/* Parameters (.config), then the shared handle. */
static struct {
	char       *map;                /* absolute (nbdkit may chdir /) */
	char       *volume;
	char       *transport;
	char       *run_dir;            /* absolute */
	char       *host;
	char       *key;                /* key name, in keyring */
	char       *keyring;            /* absolute */
	unsigned    timeout_ms;
	unsigned    queue_depth;
	unsigned    spin_us;
	int         log_level;
	bool        short_circuit;

	/* The handle, and who uses it: all under lock. */
	pthread_mutex_t lock;
	struct weft_cluster *cl;
	struct weft_volume  *vol;
	bool        leading;            /* a worker reaps for the others */
	bool        reap_now;           /* a completion no fd will announce */
	struct wn_req *waiters;         /* followers asleep on their sem */
	_Atomic(struct wn_req *) sq;    /* pushed, not yet taken (no lock) */
	struct wn_req *head, *tail;     /* refused -EAGAIN: issued in order */
	int         efd;                /* eventfd: wakes the leader */
	int         epfd;               /* efd + weft_fd(): the leader sleeps */
} W = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.efd = -1, .epfd = -1, .short_circuit = true,
};

/* ---- logging ------------------------------------------------------------ */

/* libweft's messages, from inside a call on the handle (under W.lock). */
static void wn_log(void *arg, int level, const char *msg)
{
	(void)arg;
	if (level <= WEFT_LOG_ERR)
		nbdkit_error("libweft: %s", msg);
	else if (level <= WEFT_LOG_WARNING)
		nbdkit_error("libweft warning: %s", msg);
	else
		nbdkit_debug("libweft: %s", msg);
}

static int parse_level(const char *v)
{
	if (!strcmp(v, "err") || !strcmp(v, "error"))
		return WEFT_LOG_ERR;
	if (!strcmp(v, "warning"))
		return WEFT_LOG_WARNING;
	if (!strcmp(v, "info"))
		return WEFT_LOG_INFO;
	if (!strcmp(v, "debug"))
		return WEFT_LOG_DEBUG;
	return -1;
}

/* ---- configuration ------------------------------------------------------ */

static int set_str(char **dst, const char *key, const char *value, bool path)
{
	free(*dst);
	*dst = path ? nbdkit_absolute_path(value) : strdup(value);
	if (!*dst) {
		if (!path)
			nbdkit_error("weft: %s: out of memory", key);
		return -1;
	}
	return 0;
}

static int wn_config(const char *key, const char *value)
{
	if (!strcmp(key, "map"))
		return set_str(&W.map, key, value, true);
	if (!strcmp(key, "volume"))
		return set_str(&W.volume, key, value, false);
	if (!strcmp(key, "transport"))
		return set_str(&W.transport, key, value, false);
	if (!strcmp(key, "run_dir"))
		return set_str(&W.run_dir, key, value, true);
	if (!strcmp(key, "host"))
		return set_str(&W.host, key, value, false);
	if (!strcmp(key, "key"))
		return set_str(&W.key, key, value, false);
	if (!strcmp(key, "keyring"))
		return set_str(&W.keyring, key, value, true);
	if (!strcmp(key, "timeout_ms"))
		return nbdkit_parse_unsigned(key, value, &W.timeout_ms);
	if (!strcmp(key, "queue_depth"))
		return nbdkit_parse_unsigned(key, value, &W.queue_depth);
	if (!strcmp(key, "spin_us"))
		return nbdkit_parse_unsigned(key, value, &W.spin_us);
	if (!strcmp(key, "short_circuit")) {
		int b = nbdkit_parse_bool(value);

		if (b < 0)
			return -1;
		W.short_circuit = b;
		return 0;
	}
	if (!strcmp(key, "log_level")) {
		W.log_level = parse_level(value);
		if (W.log_level < 0) {
			nbdkit_error("weft: log_level=%s: not err, warning, info or debug",
				     value);
			return -1;
		}
		return 0;
	}
	nbdkit_error("weft: unknown parameter '%s' (nbdkit weft --help)", key);
	return -1;
}

static int wn_config_complete(void)
{
	if (!W.map || !W.volume) {
		nbdkit_error("weft: map=MAP and volume=NAME are required");
		return -1;
	}
	return 0;
}

#define wn_config_help \
	"map=<FILE>          (required) the cluster map (libconfig).\n" \
	"volume=<NAME>       (required) the volume to serve.\n" \
	"transport=tcp|unix|verbs  fabric to the targets (default tcp).\n" \
	"timeout_ms=<MS>     a request no replica answered fails (EIO) (10000).\n" \
	"queue_depth=<N>     requests in flight to libweft (128).\n" \
	"run_dir=<DIR>       local targets' sockets (default /run/weft).\n" \
	"host=<NAME>         this host's name in the map (default: hostname).\n" \
	"short_circuit=<BOOL> read local replicas from the device (true).\n" \
	"spin_us=<US>        busy-poll before sleeping (0).\n" \
	"log_level=err|warning|info|debug  libweft's messages (warning).\n" \
	"key=<NAME>          the key to connect with (docs/security.md),\n" \
	"keyring=<FILE>      ... from this keyring (mode 0600)."

/* Open the handle and the volume; 0 or -1 with the reason given to
 * nbdkit_error (both callers make it fatal). */
static int open_volume(struct weft_cluster **cl, struct weft_volume **vol)
{
	struct weft_cluster_opts o = { .size = sizeof(o) };
	int ret;

	o.map_path = W.map;
	o.transport = W.transport;
	o.queue_depth = W.queue_depth;
	o.timeout_ms = W.timeout_ms;
	/* Requests taken together leave together (one send per target). */
	o.flags = WEFT_F_DEFER_SEND |
		  (W.short_circuit ? 0 : WEFT_F_NO_SHORT_CIRCUIT);
	o.log = wn_log;
	o.log_level = W.log_level;
	o.run_dir = W.run_dir;
	o.host = W.host;
	o.spin_us = W.spin_us;
	o.key_name = W.key;
	o.keyring = W.keyring;
	/* Worker buffers are nbdkit's, not registered: the bounce pool
	 * carries them, the arena is never used. */
	o.buf_arena = WN_BS;
	ret = weft_cluster_open(&o, cl);
	if (ret == -ENOENT) {
		nbdkit_error("weft: map %s: no such file", W.map);
		return -1;
	}
	if (ret) {
		/* -EINVAL: libweft said why through wn_log just before. */
		nbdkit_error("weft: cannot open the cluster of map %s: %s", W.map,
			     weft_strerror(ret));
		return -1;
	}
	ret = weft_volume_open(*cl, W.volume, vol);
	if (ret) {
		if (ret == -ENOENT)
			nbdkit_error("weft: volume '%s' does not exist in map %s",
				     W.volume, W.map);
		else
			nbdkit_error("weft: cannot open volume '%s': %s", W.volume,
				     weft_strerror(ret));
		weft_cluster_close(*cl);
		*cl = NULL;
		return -1;
	}
	return 0;
}

/*
 * Refuse to start on a map or volume that does not open, where the user
 * still sees the message (before nbdkit forks).  The handle is closed
 * again: it is reopened after the fork (.after_fork), so no fd, ring or
 * mapping crosses a fork.
 */
static int wn_get_ready(void)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;

	if (open_volume(&cl, &vol))
		return -1;
	nbdkit_debug("weft: volume %s: %" PRIu64 " bytes", W.volume,
		     weft_volume_size(vol));
	weft_volume_close(vol);
	weft_cluster_close(cl);
	return 0;
}

/* ---- sharing the handle ------------------------------------------------------ */

static void wake_leader(void)
{
	uint64_t one = 1;

	if (write(W.efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		nbdkit_error("weft: eventfd: %m");
}

static void drain_wake(const struct epoll_event *ev, int n)
{
	uint64_t v;

	for (int i = 0; i < n; i++)
		if (ev[i].data.fd == W.efd &&
		    read(W.efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			nbdkit_error("weft: eventfd: %m");
}

static void unlink_waiter(struct wn_req *r)
{
	if (r->wnext)
		r->wnext->wprev = r->wprev;
	*r->wprev = r->wnext;
	r->waiting = false;
}

static void add_waiter(struct wn_req *r)
{
	r->waiting = true;
	r->wprev = &W.waiters;
	r->wnext = W.waiters;
	if (W.waiters)
		W.waiters->wprev = &r->wnext;
	W.waiters = r;
}

/* Answers r: its worker may return once it sees done (under the lock) or
 * WAKE_DONE (after its semaphore), so r is not touched after that. */
static void complete(struct wn_req *r, int64_t res, struct wn_req *self)
{
	r->res = res;
	r->done = true;
	if (r->waiting) {
		unlink_waiter(r);
		r->woke = WAKE_DONE;
		sem_post(&r->sem);
	} else if (r->leader && r != self) {
		wake_leader();  /* asleep in epoll_wait: its request is done */
	}
}

/* Hands r to libweft: 0 (queued, or answered at once), -EAGAIN (full:
 * keep it for later). */
static int issue(struct wn_req *r, struct wn_req *self)
{
	uint64_t ud = (uint64_t)(uintptr_t)r;
	unsigned before = weft_inflight(W.cl);
	int ret;

	switch (r->op) {
	case WN_READ:
		ret = weft_read(W.vol, r->buf, r->len, r->off, ud);
		break;
	case WN_WRITE:
		ret = weft_write(W.vol, r->buf, r->len, r->off, r->flags, ud);
		break;
	case WN_DISCARD:
		ret = weft_discard(W.vol, r->off, r->len, ud);
		break;
	case WN_FLUSH:
		ret = weft_flush(W.vol, ud);
		break;
	default:
		ret = -EINVAL;
	}
	if (ret == -EAGAIN)
		return ret;
	if (ret)
		complete(r, ret, self);         /* refused: no completion follows */
	else if (weft_inflight(W.cl) == before)
		W.reap_now = true;      /* done inside the call (a flush with
					 * nothing to flush): no fd will say so */
	return 0;
}

/* Issues what waited for room (-EAGAIN), oldest first. */
static void issue_fifo(struct wn_req *self)
{
	struct wn_req *r;

	while ((r = W.head)) {
		if (issue(r, self) == -EAGAIN)
			return;         /* a completion frees room */
		W.head = r->next;
		if (!W.head)
			W.tail = NULL;
	}
}

static void submit(struct wn_req *r, struct wn_req *self)
{
	if (!W.head && issue(r, self) == 0)
		return;
	/* Behind the others that wait for room (FIFO). */
	r->next = NULL;
	if (W.tail)
		W.tail->next = r;
	else
		W.head = r;
	W.tail = r;
}

/* Reaps every completion libweft has and answers its requests. */
static void reap(struct wn_req *self)
{
	struct weft_cqe cqe[WN_REAP];
	int n;

	do {
		W.reap_now = false;
		n = weft_poll(W.cl, cqe, WN_REAP);
		if (n < 0) {
			nbdkit_error("weft: weft_poll: %s", weft_strerror(n));
			break;
		}
		for (int i = 0; i < n; i++)
			complete((struct wn_req *)(uintptr_t)cqe[i].user_data,
				 cqe[i].res, self);
		issue_fifo(self);
	} while (n > 0 || W.reap_now);  /* a poll that returns 0 arms the fd */
}

/* While requests are in flight someone must reap: with no leader, a
 * waiting worker is woken to lead. */
static void ensure_leader(void)
{
	struct wn_req *w = W.waiters;

	if (W.leading || !w)
		return;
	unlink_waiter(w);
	w->leader = true;
	W.leading = true;
	w->woke = WAKE_LEAD;
	sem_post(&w->sem);
}

/* Workers put their requests here without the lock (a Treiber stack). */
static void push(struct wn_req *r)
{
	struct wn_req *old = atomic_load(&W.sq);

	do
		r->next = old;
	while (!atomic_compare_exchange_weak(&W.sq, &old, r));
}

/* Under the lock: what was pushed, oldest first, is queued to libweft;
 * the other workers' requests wait on their semaphores. */
static void take(struct wn_req *self)
{
	struct wn_req *r = atomic_exchange(&W.sq, NULL), *fifo = NULL;
	int ret;

	while (r) {
		struct wn_req *next = r->next;

		r->next = fifo;
		fifo = r;
		r = next;
	}
	if (!fifo)
		return;
	while ((r = fifo)) {
		fifo = r->next;
		if (r != self)
			add_waiter(r);
		submit(r, self);
	}
	/* WEFT_F_DEFER_SEND held them: what was taken together leaves
	 * together, now (the leader may be asleep). */
	ret = weft_submit(W.cl);
	if (ret)
		nbdkit_error("weft: weft_submit: %s", weft_strerror(ret));
}

/*
 * Unlocks, then makes sure no pushed request is left behind: a worker
 * that pushed and found the lock taken sleeps at once, trusting the
 * holder to take its request.  The fence orders our unlock before the
 * look at the stack, as the pusher's CAS orders its push before its
 * trylock: one of the two sees the other.
 */
static void unlock(struct wn_req *self)
{
	for (;;) {
		pthread_mutex_unlock(&W.lock);
		atomic_thread_fence(memory_order_seq_cst);
		if (!atomic_load(&W.sq) || pthread_mutex_trylock(&W.lock))
			return;         /* nothing, or the new holder takes it */
		take(self);
		if (W.reap_now)
			reap(self);
		ensure_leader();
	}
}

/*
 * A worker's request, run on the process's one handle.  The worker pushes
 * it and, if it gets the lock, queues everything pushed so far and reaps
 * whatever completed (answering other workers' requests too).  If its own
 * is not done it either leads (no one else does): sleeps in epoll_wait on
 * weft_fd() without the lock, then reaps again; or it follows: sleeps on
 * its semaphore until a reaper answers it or hands it the lead.  A worker
 * that finds the lock taken sleeps at once: the holder queues its request.
 * So no worker ever sleeps on the lock to submit, at QD1 the worker that
 * asks is the one that reaps, with no thread in between, and at any depth
 * one thread at a time uses the handle.
 */
static int64_t run(struct wn_req *r)
{
	struct epoll_event ev[2];

	sem_init(&r->sem, 0, 0);
	push(r);
	if (pthread_mutex_trylock(&W.lock))
		goto sleep;
	if (r->waiting)
		unlink_waiter(r);       /* taken by a holder that just left */
	for (;;) {
		take(r);
		if (W.reap_now || !W.leading || r->leader)
			reap(r);
		if (r->done)
			break;
		if (!W.leading) {
			W.leading = true;
			r->leader = true;
		}
		if (r->leader) {
			unlock(r);
			drain_wake(ev, epoll_wait(W.epfd, ev, 2, WN_TICK_MS));
			pthread_mutex_lock(&W.lock);
			continue;
		}
		add_waiter(r);
		unlock(r);
sleep:
		while (sem_wait(&r->sem) && errno == EINTR)
			;
		if (r->woke == WAKE_DONE)
			goto out;
		pthread_mutex_lock(&W.lock);    /* WAKE_LEAD */
	}
	if (r->leader) {
		r->leader = false;
		W.leading = false;
		ensure_leader();
	}
	unlock(r);
out:
	sem_destroy(&r->sem);
	return r->res;
}

static int wn_after_fork(void)
{
	struct epoll_event ev = { .events = EPOLLIN };

	if (open_volume(&W.cl, &W.vol))
		return -1;
	W.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	W.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (W.efd < 0 || W.epfd < 0) {
		nbdkit_error("weft: eventfd/epoll: %m");
		return -1;
	}
	ev.data.fd = W.efd;
	if (epoll_ctl(W.epfd, EPOLL_CTL_ADD, W.efd, &ev))
		goto out_epoll;
	ev.data.fd = weft_fd(W.cl);
	if (epoll_ctl(W.epfd, EPOLL_CTL_ADD, ev.data.fd, &ev))
		goto out_epoll;
	return 0;
out_epoll:
	nbdkit_error("weft: epoll_ctl: %m");
	return -1;
}

/* Every connection is closed: nothing is in flight. */
static void wn_cleanup(void)
{
	if (W.vol)
		weft_volume_close(W.vol);
	if (W.cl)
		weft_cluster_close(W.cl);
	W.vol = NULL;
	W.cl = NULL;
	if (W.epfd >= 0)
		close(W.epfd);
	if (W.efd >= 0)
		close(W.efd);
	W.epfd = W.efd = -1;
}

static void wn_unload(void)
{
	free(W.map);
	free(W.volume);
	free(W.transport);
	free(W.run_dir);
	free(W.host);
	free(W.key);
	free(W.keyring);
}

/* ---- connections and requests -------------------------------------------- */

/* Connections share the process's handle: nothing per connection. */
static void *wn_open(int readonly)
{
	(void)readonly;
	return &W;
}

static int64_t wn_get_size(void *h)
{
	int64_t size;

	(void)h;
	pthread_mutex_lock(&W.lock);
	size = (int64_t)weft_volume_size(W.vol);
	unlock(NULL);           /* takes what was pushed meanwhile */
	return size;
}

static int wn_block_size(void *h, uint32_t *minimum, uint32_t *preferred,
			 uint32_t *maximum)
{
	(void)h;
	*minimum = WN_BS;
	*preferred = WN_BS;
	*maximum = WN_MAX_REQ;
	return 0;
}

static int wn_can_write(void *h)     { (void)h; return 1; }
static int wn_can_flush(void *h)     { (void)h; return 1; }
static int wn_can_trim(void *h)      { (void)h; return 1; }
static int wn_can_zero(void *h)      { (void)h; return 1; }
static int wn_can_fast_zero(void *h) { (void)h; return 1; }
static int wn_can_fua(void *h)       { (void)h; return NBDKIT_FUA_NATIVE; }
static int wn_is_rotational(void *h) { (void)h; return 0; }
/* One handle serves every connection: a flush or FUA on one covers the
 * writes completed on all, and reads go through the same map. */
static int wn_can_multi_conn(void *h) { (void)h; return 1; }

/*
 * libweft's error as the block layer expects it.  NBD carries EPERM, EIO,
 * ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP and ESHUTDOWN; a volume full
 * of extents is ENOSPC, a bad request EINVAL, everything the cluster failed
 * to do (a timeout, too few replicas, a target's I/O error, the volume
 * deleted from the map) EIO.
 */
static int nbd_errno(int64_t res)
{
	switch (-res) {
	case ENOSPC:
		return ENOSPC;
	case EINVAL:
	case ERANGE:
		return EINVAL;
	case EPERM:
	case EACCES:
	case EROFS:
		return EPERM;
	case ENOMEM:
		return ENOMEM;
	default:
		return EIO;
	}
}

static int fail(const char *what, uint64_t off, uint64_t len, int64_t res)
{
	if (len)
		nbdkit_error("weft: %s of %" PRIu64 " bytes at %" PRIu64
			     " on volume %s: %s", what, len, off, W.volume,
			     weft_strerror((int)res));
	else
		nbdkit_error("weft: %s of volume %s: %s", what, W.volume,
			     weft_strerror((int)res));
	nbdkit_set_error(nbd_errno(res));
	return -1;
}

/* Offsets and lengths go to libweft in whole blocks. */
static bool aligned(const char *what, uint64_t off, uint64_t len)
{
	if (!((off | len) & (WN_BS - 1)))
		return true;
	nbdkit_error("weft: %s of %" PRIu64 " bytes at %" PRIu64 ": not a multiple "
		     "of the volume's %u-byte block (the client ignored the block "
		     "size advertised; nbdkit's --filter=blocksize serves such "
		     "clients)", what, len, off, WN_BS);
	nbdkit_set_error(EINVAL);
	return false;
}

static int do_io(enum wn_op op, const char *what, void *buf, uint64_t len,
		 uint64_t off, unsigned flags)
{
	struct wn_req r = { .op = op, .buf = buf, .len = len, .off = off,
			    .flags = flags };
	int64_t res;

	if (!aligned(what, off, len))
		return -1;
	res = run(&r);
	return res < 0 ? fail(what, off, len, res) : 0;
}

static int wn_pread(void *h, void *buf, uint32_t count, uint64_t offset,
		    uint32_t flags)
{
	(void)h;
	(void)flags;
	return do_io(WN_READ, "read", buf, count, offset, 0);
}

static int wn_pwrite(void *h, const void *buf, uint32_t count, uint64_t offset,
		     uint32_t flags)
{
	(void)h;
	return do_io(WN_WRITE, "write", (void *)buf, count, offset,
		     flags & NBDKIT_FLAG_FUA ? WEFT_FUA : 0);
}

static int wn_flush(void *h, uint32_t flags)
{
	struct wn_req r = { .op = WN_FLUSH };
	int64_t res;

	(void)h;
	(void)flags;
	res = run(&r);
	return res < 0 ? fail("flush", 0, 0, res) : 0;
}

/* A discard, made durable when the client asked FUA (a discard carries no
 * FUA of its own in libweft: a flush follows). */
static int discard(const char *what, uint64_t off, uint64_t len, uint32_t flags)
{
	if (!len)
		return 0;
	if (do_io(WN_DISCARD, what, NULL, len, off, 0))
		return -1;
	return flags & NBDKIT_FLAG_FUA ? wn_flush(NULL, 0) : 0;
}

/* Trim is advisory: the whole blocks inside the range are discarded. */
static int wn_trim(void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
	uint64_t a = (offset + WN_BS - 1) & ~(uint64_t)(WN_BS - 1);
	uint64_t b = (offset + count) & ~(uint64_t)(WN_BS - 1);

	(void)h;
	return discard("trim", a, b > a ? b - a : 0, flags);
}

/*
 * Zero as a discard: the target frees whole extents and zeroes parts of
 * extents in place, both read as zeros afterwards (docs/store.md).  Only
 * when the client allows holes (MAY_TRIM: a freed extent is allocated again
 * by the next write, which may then find the device full) and on whole
 * blocks; otherwise ENOTSUP, and nbdkit writes zeros through .pwrite (or
 * answers a fast-zero request with ENOTSUP, as it must).
 */
static int wn_zero(void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
	(void)h;
	if (!(flags & NBDKIT_FLAG_MAY_TRIM) || ((offset | count) & (WN_BS - 1))) {
		nbdkit_set_error(ENOTSUP);
		return -1;
	}
	return discard("zero", offset, count, flags);
}

static void wn_dump_plugin(void)
{
	printf("weft_version=%d.%d\n", WEFT_VERSION_MAJOR, WEFT_VERSION_MINOR);
	printf("weft_thread_model=parallel, one libweft handle shared under a mutex\n");
}

static struct nbdkit_plugin plugin = {
	.name              = "weft",
	.longname          = "weft volume (libweft)",
	.version           = "0.1",
	.description       = "Serve a weft volume over NBD through libweft.",
	.config            = wn_config,
	.config_complete   = wn_config_complete,
	.config_help       = wn_config_help,
	.magic_config_key  = "volume",
	.get_ready         = wn_get_ready,
	.after_fork        = wn_after_fork,
	.cleanup           = wn_cleanup,
	.unload            = wn_unload,
	.dump_plugin       = wn_dump_plugin,
	.open              = wn_open,
	.get_size          = wn_get_size,
	.block_size        = wn_block_size,
	.can_write         = wn_can_write,
	.can_flush         = wn_can_flush,
	.can_trim          = wn_can_trim,
	.can_zero          = wn_can_zero,
	.can_fast_zero     = wn_can_fast_zero,
	.can_fua           = wn_can_fua,
	.can_multi_conn    = wn_can_multi_conn,
	.is_rotational     = wn_is_rotational,
	.pread             = wn_pread,
	.pwrite            = wn_pwrite,
	.flush             = wn_flush,
	.trim              = wn_trim,
	.zero              = wn_zero,
	.errno_is_preserved = 0,
};

/* What nbdkit looks up in the .so (the macro defines it). */
struct nbdkit_plugin *plugin_init(void);
NBDKIT_REGISTER_PLUGIN(plugin)
