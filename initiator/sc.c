/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libweft: short-circuit local reads.
 *
 * When the primary of a read's PG is a target on this host (its map host is
 * ours, weft_cluster_opts.host or the kernel's, or its address is a loopback one)
 * and its control socket RUN_DIR/target-ID.ctl answers, the target hands us
 * a read-only O_DIRECT descriptor of its device and the memfd of its index
 * view (SCM_RIGHTS, proto/ctl.h).  Reads then go device -> caller's
 * buffer through our own io_uring, following the view's seqlock protocol
 * (proto/view.h):
 *
 *   lookup (vol, extent)   -EAGAIN or not mapped -> through the target
 *   read the device        straight into the caller's buffer when it is
 *                          4 KiB aligned, else into the piece's bounce chunk
 *   check the sequence     unchanged -> the data is what the extent held
 *                          when the read was issued or later; changed (a
 *                          discard or a reassignment started) -> the piece
 *                          is sent through the target instead
 *
 * So no read returns data of an extent discarded or reassigned meanwhile;
 * overwrites in place race like on a disk.  Only the primary is read: until
 * replication lands, secondaries do not hold the data (and later only a
 * clean one may be read).  Unmapped extents also go through the target,
 * which answers zeros without device I/O.
 *
 * Setup (connect, SCM_RIGHTS, mmap) never waits: the first read that could
 * use a target sends the request and goes through the network, a later
 * call picks the answer up (sc_get); a local target that said no, or did
 * not answer within SC_CTL_MS, is asked again after a second (it may be
 * starting), one on another host never.
 * SQEs are queued by routing and submitted once
 * at the end of the submitting call and of each progress turn
 * (wf_sc_flush): one io_uring_enter for all pieces of a request.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <sys/un.h>
#include <unistd.h>

#include "initiator/weft_int.h"
#include "proto/ctl.h"
#include "proto/view.h"

#define SC_CTL_MS 1000          /* bound of the control exchange */
#define SC_RETRY_MS 1000        /* ask a target that said no again after */
#define SC_LIVE_MAX 16          /* local targets checked per batch */

enum wf_sc_state {
	SC_NONE,        /* not local, or the target said no: use the network
	                 * (asked again after retry_at) */
	SC_READY,       /* device fd and index view in hand, control socket
	                 * open: the target process that owns the view is
	                 * alive while that socket is */
	SC_DEAD,        /* the owner died or the epoch changed: reads in
	                 * flight fall back; freed at close */
	SC_ASKING,      /* request sent on ctl_fd, the answer not read yet:
	                 * reads go through the network meanwhile */
};

struct wf_sc {
	struct wf_sc *next;         /* orphan list */
	struct wf_sc *live_next;    /* READY sessions */
	int      state;             /* enum wf_sc_state */
	uint32_t target_id;
	uint32_t tidx;              /* in cl->sc (this epoch) */
	uint64_t retry_at;          /* SC_NONE: ms */
	uint64_t ask_deadline;      /* SC_ASKING: ms */
	uint64_t looked_at;         /* SC_ASKING: ms of the last look */
	uint64_t checked;           /* batch whose liveness check it passed */
	uint32_t reads;             /* reads in flight on its view */
	int      dev_fd;
	int      ctl_fd;
	bool     busy_logged;       /* -EBUSY said once */
	struct wf_view view;
};

struct wf_sc_ring {
	struct io_uring ring;
	uint64_t batch;             /* completion batches seen */
	unsigned queued;            /* SQEs not yet submitted */
	unsigned inflight;
};

static bool is_loopback(const char *addr)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (!strcmp(addr, "localhost"))
		return true;
	if (inet_pton(AF_INET, addr, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, addr, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false;
}

static void sc_close(struct wf_sc *s)
{
	if (!s)
		return;
	if (s->dev_fd >= 0) {
		wf_view_close(&s->view);
		close(s->dev_fd);
	}
	if (s->ctl_fd >= 0)
		close(s->ctl_fd);
	free(s);
}

int wf_sc_init(struct weft_cluster *cl)
{
	struct wf_sc_ring *r;
	struct epoll_event ev = { .events = EPOLLIN };
	int ret;

	if (!cl->sc_enabled)
		return 0;
	cl->sc = calloc(cl->map.ntargets ? cl->map.ntargets : 1, sizeof(*cl->sc));
	cl->nsc = cl->map.ntargets;
	r = calloc(1, sizeof(*r));
	if (!cl->sc || !r) {
		free(r);
		free(cl->sc);
		cl->sc = NULL;
		return -ENOMEM;
	}
	ret = io_uring_queue_init(cl->npieces < 4096 ? cl->npieces : 4096,
				  &r->ring, 0);
	if (ret) {
		/* No io_uring here (seccomp, old kernel): reads go through
		 * the targets. */
		free(r);
		free(cl->sc);
		cl->sc = NULL;
		cl->sc_enabled = false;
		return 0;
	}
	ev.data.u32 = 1;
	if (epoll_ctl(cl->epfd, EPOLL_CTL_ADD, r->ring.ring_fd, &ev)) {
		ret = -errno;
		io_uring_queue_exit(&r->ring);
		free(r);
		free(cl->sc);
		cl->sc = NULL;
		return ret;
	}
	cl->scr = r;
	return 0;
}

void wf_sc_fini(struct weft_cluster *cl)
{
	if (cl->scr) {
		/* Reads in flight target pieces we are about to free: wait
		 * for them (bounded by the device). */
		while (cl->scr->inflight) {
			struct io_uring_cqe *cqe;

			if (cl->scr->queued) {
				io_uring_submit(&cl->scr->ring);
				cl->scr->queued = 0;
			}
			if (io_uring_wait_cqe(&cl->scr->ring, &cqe))
				break;
			io_uring_cqe_seen(&cl->scr->ring, cqe);
			cl->scr->inflight--;
		}
		io_uring_queue_exit(&cl->scr->ring);
		free(cl->scr);
		cl->scr = NULL;
	}
	while (cl->sc_orphans) {
		struct wf_sc *s = cl->sc_orphans;

		cl->sc_orphans = s->next;
		sc_close(s);
	}
	if (cl->sc) {
		for (uint32_t i = 0; i < cl->nsc; i++)
			sc_close(cl->sc[i]);
		free(cl->sc);
		cl->sc = NULL;
	}
}

/* The map changed: target indices moved; ask again lazily.  A session
 * with reads in flight stays mapped until close (an orphan). */
void wf_sc_rebuild(struct weft_cluster *cl)
{
	struct wf_sc **n;

	if (!cl->sc)
		return;
	n = calloc(cl->map.ntargets ? cl->map.ntargets : 1, sizeof(*n));
	if (!n) {
		cl->sc_enabled = false;
		return;
	}
	for (uint32_t i = 0; i < cl->nsc; i++) {
		struct wf_sc *s = cl->sc[i];

		if (!s)
			continue;
		if (s->reads) {
			/* A read in flight still uses its view: keep it
			 * mapped until close; its check now fails (state),
			 * so that read goes through the target. */
			s->next = cl->sc_orphans;
			cl->sc_orphans = s;
			s->state = SC_DEAD;
		} else {
			sc_close(s);
		}
	}
	free(cl->sc);
	cl->sc = n;
	cl->nsc = cl->map.ntargets;
	cl->sc_live = NULL;
}

/*
 * Ask target t's control socket for its device and index view: connect and
 * send, never wait (the answer takes a turn of the target's reactor; it is
 * read by sc_answer on a later call).  0 with s->ctl_fd set, or -errno.
 */
static int sc_ask(struct weft_cluster *cl, uint32_t t, struct wf_sc *s)
{
	const struct wf_target *tg = &cl->map.targets[t];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct wf_ctl_req q;
	int fd, ret;

	if (strcmp(tg->host, cl->host) && !is_loopback(tg->addr))
		return -EREMOTE;
	ret = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/target-%u.ctl",
		       cl->run_dir, tg->id);
	if (ret < 0 || (size_t)ret >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	if (access(sa.sun_path, F_OK))
		return -ENOENT;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* Non-blocking: a full backlog is -EAGAIN, asked again later. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		close(fd);
		return ret;
	}
	wf_ctl_req_encode(&q, WF_CTL_SHORTCIRCUIT, cl->map.epoch, 0);
	if (send(fd, &q, sizeof(q), MSG_NOSIGNAL) != sizeof(q)) {
		close(fd);
		return -EIO;
	}
	s->ctl_fd = fd;
	return 0;
}

/*
 * The answer to sc_ask, if it is there: 0 (device fd and view in s; the
 * control socket stays open: it hangs up when the target process ends,
 * which is how a restarted target's old view is told apart, check_live),
 * -EAGAIN (not yet), or -errno (no; s->ctl_fd is then closed).
 */
static int sc_answer(struct weft_cluster *cl, uint32_t t, struct wf_sc *s)
{
	const struct wf_target *tg = &cl->map.targets[t];
	struct wf_ctl_shortcircuit a;
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = &a, .iov_len = sizeof(a) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	int fds[2] = { -1, -1 }, ret;
	ssize_t n;

	memset(&u, 0, sizeof(u));
	n = recvmsg(s->ctl_fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return -EAGAIN;
	if (n == 0) {
		ret = -EBUSY;   /* closed unanswered: no free session */
		goto out_close;
	}
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(fds)))
			memcpy(fds, CMSG_DATA(cm), sizeof(fds));
	ret = -EPROTO;
	if (n < 0 || wf_ctl_answer_check(&a, (size_t)n, sizeof(a), WF_CTL_SHORTCIRCUIT))
		goto out_fds;
	ret = (int32_t)le32toh((uint32_t)a.result);
	if (ret)
		goto out_fds;
	ret = -ESTALE;
	if (fds[0] < 0 || fds[1] < 0 || le32toh(a.target_id) != tg->id ||
	    le64toh(a.cluster_id) != cl->map.cluster_id ||
	    le32toh(a.extent_size) != cl->map.extent_size)
		goto out_fds;
	/* The target serves a newer map than ours: the extent may have moved
	 * or been deleted under our view.  Read through the network, which
	 * answers STALE and makes us reload; ask again later. */
	if (le64toh(a.epoch) > cl->map.epoch)
		goto out_fds;
	ret = wf_view_open(fds[1], &s->view);
	if (ret)
		goto out_fds;
	if (s->view.hdr->target_id != tg->id ||
	    s->view.hdr->extent_size != cl->map.extent_size) {
		wf_view_close(&s->view);
		ret = -ESTALE;
		goto out_fds;
	}
	close(fds[1]);          /* the mapping stays */
	s->dev_fd = fds[0];
	return 0;

out_fds:
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
out_close:
	close(s->ctl_fd);
	s->ctl_fd = -1;
	return ret;
}

/* A session that died: reads in flight on it fall back; the next read
 * asks the (restarted) target again. */
static void sc_kill(struct weft_cluster *cl, struct wf_sc *s)
{
	struct wf_sc **pp;

	for (pp = &cl->sc_live; *pp; pp = &(*pp)->live_next)
		if (*pp == s) {
			*pp = s->live_next;
			break;
		}
	s->state = SC_DEAD;
	if (s->tidx < cl->nsc && cl->sc[s->tidx] == s)
		cl->sc[s->tidx] = NULL;
	s->next = cl->sc_orphans;
	cl->sc_orphans = s;
}

/*
 * Target t's session if it is ready, else NULL (the read goes through the
 * network).  Opening one never waits: the first call asks, later calls
 * pick the answer up once it is there (within SC_CTL_MS, else no, and ask
 * again after SC_RETRY_MS).
 */
static struct wf_sc *sc_get(struct weft_cluster *cl, uint32_t t)
{
	struct wf_sc *s;
	int ret;

	if (t >= cl->nsc)
		return NULL;
	s = cl->sc[t];
	if (s && s->state == SC_READY)
		return s;
	if (s && s->state == SC_ASKING) {
		/* One look (a recvmsg) per millisecond, not one per piece. */
		if (cl->now == s->looked_at)
			return NULL;
		s->looked_at = cl->now;
		ret = sc_answer(cl, t, s);
		if (ret == -EAGAIN) {
			if (cl->now < s->ask_deadline)
				return NULL;
			close(s->ctl_fd);
			s->ctl_fd = -1;
			ret = -ETIMEDOUT;
		}
		if (!ret) {
			s->state = SC_READY;
			s->live_next = cl->sc_live;
			cl->sc_live = s;
			return s;
		}
		goto refused;
	}
	if (s && cl->now < s->retry_at)
		return NULL;
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		cl->sc[t] = s;
	}
	s->target_id = cl->map.targets[t].id;
	s->tidx = t;
	s->dev_fd = s->ctl_fd = -1;
	ret = sc_ask(cl, t, s);
	if (!ret) {
		s->state = SC_ASKING;
		s->ask_deadline = cl->now + SC_CTL_MS;
		s->looked_at = cl->now;
		return NULL;
	}
refused:
	if (ret == -EBUSY && !s->busy_logged) {
		wf_log(cl, WEFT_LOG_WARNING, "target %u has no free control "
		       "session: reading its extents through the network, "
		       "asking again every %d ms", s->target_id, SC_RETRY_MS);
		s->busy_logged = true;
	}
	if (ret == -EACCES)
		wf_log(cl, WEFT_LOG_WARNING, "target %u does not trust this "
		       "process with its device (socket mode or peer "
		       "credentials, docs/security.md): reading its extents "
		       "through the network", s->target_id);
	s->state = SC_NONE;
	/* Not on this host, or not trusted: never; otherwise maybe later
	 * (the target starting, restarting). */
	s->retry_at = ret == -EREMOTE || ret == -EACCES ? UINT64_MAX :
		      cl->now + SC_RETRY_MS;
	return NULL;
}

bool wf_sc_read(struct weft_cluster *cl, uint32_t tidx, uint64_t volume,
		uint32_t extent, uint64_t in_ext, void *dst, uint32_t len,
		uint64_t tag, bool leased, struct wf_sc_read *rd)
{
	struct wf_sc *s;
	struct io_uring_sqe *sqe;
	uint32_t phys, seq;

	if (!cl->scr)
		return false;
	s = sc_get(cl, tidx);
	if (!s)
		return false;
	/* The target serves a newer map: the extent may have a new primary
	 * that took writes.  Through the network, which answers STALE, and
	 * libweft moves to the new map. */
	if (wf_view_epoch(&s->view) > cl->map.epoch)
		return false;
	/* Its read leases lapsed (a target that missed an epoch, or cannot
	 * reach a member): through the network too, which says DEGRADED
	 * until they hold again. */
	if (leased && !wf_view_leased(&s->view, cl->map.epoch, cl->now_us * 1000))
		return false;
	if (wf_view_lookup(&s->view, volume, extent, &phys, &seq) != 1)
		return false;   /* changing, or unmapped: the target answers */
	sqe = io_uring_get_sqe(&cl->scr->ring);
	if (!sqe)
		return false;
	io_uring_prep_read(sqe, s->dev_fd, dst, len,
			   wf_view_dev_offset(&s->view, phys, in_ext));
	io_uring_sqe_set_data64(sqe, tag);
	rd->s = s;
	rd->phys = phys;
	rd->seq = seq;
	rd->epoch = cl->map.epoch;
	rd->leased = leased;
	s->reads++;
	cl->scr->queued++;
	cl->scr->inflight++;
	return true;
}

/* Submit what routing queued: one system call per progress turn. */
void wf_sc_flush(struct weft_cluster *cl)
{
	if (cl->scr && cl->scr->queued) {
		io_uring_submit(&cl->scr->ring);
		cl->scr->queued = 0;
	}
}

/*
 * Before any read of a batch is accepted: is every target whose view we
 * use still the process that gave it?  A restarted target has a new index
 * (its old view never changes again, so its sequence checks would pass on
 * stale data).  Its death hung up our control socket before any write
 * through the new process could be acknowledged, so a hang-up seen now
 * covers every read that completed before: one poll() per batch.
 */
static void check_live(struct weft_cluster *cl)
{
	struct pollfd pfd[SC_LIVE_MAX];
	struct wf_sc *ss[SC_LIVE_MAX], *s;
	int np = 0;

	for (s = cl->sc_live; s && np < SC_LIVE_MAX; s = s->live_next) {
		pfd[np].fd = s->ctl_fd;
		pfd[np].events = POLLRDHUP;
		pfd[np].revents = 0;
		ss[np++] = s;
	}
	cl->scr->batch++;
	if (np && poll(pfd, (nfds_t)np, 0) < 0)
		np = 0;         /* none checked: all fall back */
	for (int i = 0; i < np; i++) {
		if (pfd[i].revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL))
			sc_kill(cl, ss[i]);
		else
			ss[i]->checked = cl->scr->batch;
	}
}

int wf_sc_reap(struct weft_cluster *cl, struct wf_sc_cqe *out, int max)
{
	struct wf_sc_ring *r = cl->scr;
	struct io_uring_cqe *cqe;
	unsigned head;
	int n = 0;

	wf_sc_flush(cl);
	if (!r || !r->inflight || !io_uring_cq_ready(&r->ring))
		return 0;
	check_live(cl);
	io_uring_for_each_cqe(&r->ring, head, cqe) {
		if (n == max)
			break;
		out[n].tag = io_uring_cqe_get_data64(cqe);
		out[n].res = cqe->res;
		n++;
	}
	io_uring_cq_advance(&r->ring, (unsigned)n);
	r->inflight -= (unsigned)n;
	return n;
}

bool wf_sc_read_ok(struct weft_cluster *cl, struct wf_sc_read *rd, int32_t res,
		   uint32_t len)
{
	struct wf_sc *s = rd->s;
	struct timespec ts;
	bool ok;

	/* Short read, device error, the extent changed under the read, the
	 * target moved to a newer map meanwhile, or its read leases had
	 * lapsed by the time the read completed (the clock read now, after
	 * the completion: the same host's CLOCK_MONOTONIC the target's
	 * leases are in): not ok, the target answers instead (never stale
	 * data). */
	ok = res == (int32_t)len && s->state == SC_READY &&
	     s->checked == cl->scr->batch &&
	     wf_view_check(&s->view, rd->phys, rd->seq) &&
	     wf_view_epoch(&s->view) <= rd->epoch;
	if (ok && rd->leased) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ok = wf_view_leased(&s->view, rd->epoch,
				    (uint64_t)ts.tv_sec * 1000000000ull +
				    (uint64_t)ts.tv_nsec);
	}
	s->reads--;
	rd->s = NULL;
	if (ok)
		cl->stats.sc_reads++;
	else
		cl->stats.sc_fallbacks++;
	return ok;
}
