/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libweft: the request calls.  Admission of parents (struct wf_io), the
 * progress turn (fabric completions, short-circuit completions, map
 * changes, the piece machine's timers), reaping and waiting, and the
 * synchronous calls built on them.  What happens to a request between
 * admission and completion is piece.c's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "initiator/weft_int.h"

/* A progress turn; wait_ms != 0: its first fabric poll may sleep that
 * long (wf_poll_wait), for a caller with nothing else to sleep on. */
static int progress(struct weft_cluster *cl, int wait_ms)
{
	struct wf_cqe cqes[WF_POLL_BATCH];
	int n, i, total = 0;
	bool first = true;

	do {
		n = first && wait_ms ?
		    wf_poll_wait(cl->ctx, cqes, WF_POLL_BATCH, wait_ms) :
		    wf_poll(cl->ctx, cqes, WF_POLL_BATCH);
		if (first) {
			struct timespec ts;

			/* One clock read per turn (vDSO), after its first
			 * poll (and sleep): ms for timers, us for the
			 * busy-poll budget of weft_wait. */
			clock_gettime(CLOCK_MONOTONIC, &ts);
			cl->now_us = (uint64_t)ts.tv_sec * 1000000 +
				     (uint64_t)ts.tv_nsec / 1000;
			cl->now = cl->now_us / 1000;
			first = false;
		}
		if (n < 0)
			return n;
		for (i = 0; i < n; i++)
			wf_pieces_on_cqe(cl, &cqes[i]);
		total += n;
	} while (n == WF_POLL_BATCH);
	if (cl->scr)
		total += wf_pieces_sc_reap(cl);
	if (total || !cl->inflight) {
		cl->last_progress = cl->now;
	} else if (cl->now - cl->last_progress >= WF_STUCK_MS &&
		   cl->now >= cl->next_map_look) {
		/* Requests out and nothing back for a while: a target may
		 * have frozen with them, and nobody left to tell us of the
		 * epoch that marks it down.  A stat() of the map file every
		 * 100 ms while it lasts. */
		cl->next_map_look = cl->now + WF_STUCK_LOOK_MS;
		cl->map_stale = true;
	}
	if (cl->map_stale) {
		/* A reply or a grant told of a newer epoch, or a piece found
		 * no replica up: one look at the map file. */
		cl->map_stale = false;
		wf_map_refresh(cl, false);
	}
	wf_pieces_turn(cl);
	/* Retries and freed pieces may have queued short-circuit reads and
	 * network pieces. */
	wf_sc_flush(cl);
	wf_flush(cl->ctx);
	return total;
}

int wf_progress(struct weft_cluster *cl)
{
	return progress(cl, 0);
}

/* ---- the public request calls ------------------------------------------ */

static int submit(struct weft_volume *vol, uint8_t op, void *buf, uint64_t len,
		  uint64_t off, uint16_t wflags, uint64_t user_data)
{
	struct weft_cluster *cl;
	struct wf_io *io;

	if (!vol)
		return -EINVAL;
	cl = vol->cl;
	if (vol->gone)
		return -ENOENT;
	if (op != WF_OP_FLUSH) {
		if (!len || ((off | len) & (WF_BLOCK - 1)))
			return -EINVAL;
		if (op != WF_OP_DISCARD && !buf)
			return -EINVAL;
		if (off > vol->size || len > vol->size - off)
			return -ERANGE;
	}
	/* A parent's completion takes a ring entry until it is reaped: a
	 * request may only start while the ring has room for its completion
	 * too, or an unreaped entry would be overwritten. */
	io = cl->io_free;
	if (!io || cl->inflight + cl->cq_count >= cl->qd)
		return -EAGAIN;
	cl->io_free = io->next;
	io->next = NULL;
	io->state = IO_WAITING;
	io->op = op;
	io->wflags = wflags;
	io->vol = vol;
	io->buf = buf;
	io->zc = buf && wf_mem_in_arena(&cl->mem, buf, len);
	io->off = off;
	io->len = len;
	io->cursor = 0;
	io->pieces_out = 0;
	io->err = 0;
	io->done = 0;
	io->user_data = user_data;
	io->t0_ns = wf_clock_ns();
	cl->now = io->t0_ns / 1000000;
	io->deadline = cl->now + cl->opts.timeout_ms;
	cl->inflight++;
	switch (op) {
	case WF_OP_READ:
		cl->api.reads++;
		cl->api.read_bytes += len;
		break;
	case WF_OP_WRITE:
		cl->api.writes++;
		cl->api.write_bytes += len;
		break;
	case WF_OP_FLUSH:
		cl->api.flushes++;
		break;
	default:
		cl->api.discards++;
		break;
	}
	wf_io_start(cl, io);
	/* The pieces of this request leave now, all at once: its
	 * short-circuit reads in one io_uring_enter, its network pieces in
	 * one send per connection (the fabric ctx batches posts).  A caller
	 * may sleep on weft_fd() next, and nothing else would send them.
	 * WEFT_F_DEFER_SEND: the caller sends with weft_submit() (or the
	 * next poll), after queueing more. */
	if (!(cl->opts.flags & WEFT_F_DEFER_SEND))
		weft_submit(cl);
	return 0;
}

int weft_stats(struct weft_cluster *cl, struct weft_stats *st)
{
	struct weft_stats s;
	struct wf_fab_counts k;
	size_t n;

	if (!cl || !st || st->size < sizeof(st->size))
		return -EINVAL;
	n = st->size < sizeof(s) ? st->size : sizeof(s);
	s = cl->api;
	wf_ctx_counts(cl->ctx, &k);
	s.size = n;
	s.inflight = cl->inflight;
	s.map_epoch = cl->map.epoch;
	s.connections = 0;
	for (uint32_t i = 0; i < cl->nconns; i++) {
		const struct wf_conn *c = cl->conns[i];

		if (!c)
			continue;
		s.connections += c->state == CONN_LIVE;
		for (uint32_t rk = 1; c->sub && rk < c->reactors; rk++)
			s.connections += c->sub[rk] && c->sub[rk]->state == CONN_LIVE;
	}
	s.retries = cl->stats.retries;
	s.reconnects = cl->stats.reconnects;
	s.sc_reads = cl->stats.sc_reads;
	s.fabric_sends = k.sends;
	s.fabric_writes = k.writes;
	s.fabric_reads = k.reads;
	s.fabric_recvs = k.recvs;
	s.fabric_cqes = k.cqes;
	s.spins = cl->spins;
	s.spin_hits = cl->spin_hits;
	s.spin_ns = cl->spin_ns;
	s.spin_est_us = cl->spin.est_us;
	s.spin_gaps = cl->spin_gaps;
	s.spin_skips = cl->spin.skipped;
	s.spin_declined = cl->spin.declined;
	memcpy(st, &s, n);
	return 0;
}

int weft_submit(struct weft_cluster *cl)
{
	if (!cl)
		return -EINVAL;
	wf_sc_flush(cl);
	return wf_flush(cl->ctx);
}

int weft_read(struct weft_volume *vol, void *buf, size_t len, uint64_t off,
	      uint64_t user_data)
{
	return submit(vol, WF_OP_READ, buf, len, off, 0, user_data);
}

int weft_write(struct weft_volume *vol, const void *buf, size_t len,
	       uint64_t off, unsigned flags, uint64_t user_data)
{
	if (flags & ~(unsigned)WEFT_FUA)
		return -EINVAL;
	return submit(vol, WF_OP_WRITE, (void *)(uintptr_t)buf, len, off,
		      flags & WEFT_FUA ? WF_REQ_FUA : 0, user_data);
}

int weft_discard(struct weft_volume *vol, uint64_t off, uint64_t len,
		 uint64_t user_data)
{
	return submit(vol, WF_OP_DISCARD, NULL, len, off, 0, user_data);
}

int weft_flush(struct weft_volume *vol, uint64_t user_data)
{
	return submit(vol, WF_OP_FLUSH, NULL, 0, 0, 0, user_data);
}

static int reap(struct weft_cluster *cl, struct weft_cqe *cqes, int max)
{
	int n = 0;

	while (n < max && cl->cq_count) {
		if (cl->cq[cl->cq_head].res < 0)
			cl->api.errors++;
		cqes[n++] = cl->cq[cl->cq_head];
		cl->cq_head = (cl->cq_head + 1) % cl->qd;
		cl->cq_count--;
	}
	return n;
}

int weft_poll(struct weft_cluster *cl, struct weft_cqe *cqes, int max)
{
	int ret, n;

	if (!cl || max < 0 || (max && !cqes))
		return -EINVAL;
	if (cl->cq_count < (uint32_t)max) {
		ret = wf_progress(cl);
		if (ret < 0)
			return ret;
	}
	n = reap(cl, cqes, max);
	if (!n && max) {
		/* Nothing: make weft_fd() readable for whatever the fabric
		 * holds internally, so a caller may sleep on it now. */
		wf_ctx_arm(cl->ctx);
	}
	return n;
}

/* A spin of weft_wait ended (spin.h): account it. */
static void spin_end_at(struct weft_cluster *cl, uint64_t spin_start, bool hit,
			bool preempted)
{
	if (hit)
		cl->spin_hits++;
	cl->spin_ns += (cl->now_us - spin_start) * 1000;
	wf_spin_on_end(&cl->spin, hit, preempted);
}

int weft_wait(struct weft_cluster *cl, struct weft_cqe *cqes, int min, int max,
	      int timeout_ms)
{
	uint64_t start, end, spin_start = 0, spin_end = 0, last_us = 0;
	bool spinning = false, fresh = false;
	int got = 0, got_at_spin = 0, ret;

	if (!cl || min < 0 || max < min || (max && !cqes))
		return -EINVAL;
	start = wf_now_ms();
	end = timeout_ms < 0 ? UINT64_MAX : start + (uint64_t)timeout_ms;
	for (;;) {
		/* After a sleep in the fabric the turn has just run. */
		if (!fresh && cl->cq_count < (uint32_t)(max - got)) {
			ret = wf_progress(cl);
			if (ret < 0)
				break;
		}
		fresh = false;
		got += reap(cl, cqes + got, max - got);
		if (got >= min || got == max || !cl->inflight || cl->now >= end) {
			/* Done, nothing could ever arrive, or timed out. */
			if (spinning)       /* a hit: one came while spinning */
				spin_end_at(cl, spin_start, got > got_at_spin,
					    false);
			cl->wait_how = WF_SPIN_NONE;
			return got;
		}
		/* Busy-poll a little when the reply is expected sooner than
		 * a sleep and wake-up would cost (spin.h): decided once per
		 * sleep, from the requests in flight and the latency
		 * estimate the completions keep (no system call: now_us is
		 * wf_progress's clock read). */
		if (!spin_end) {
			uint32_t b = wf_spin_budget_us(&cl->spin, cl->inflight,
						       cl->spin_us,
						       cl->spin_never,
						       &cl->wait_how);

			spin_start = last_us = cl->now_us;
			spin_end = cl->now_us + b;
			got_at_spin = got;
			spinning = b != 0;
			cl->spins += spinning;
		}
		if (spinning) {
			/* Off the CPU between two turns for longer than a
			 * hand-off to the target (spin.h): other work wants
			 * the CPU, so stop and sleep.  Not for a fixed
			 * spin_us: that one spins as told. */
			bool gap = wf_spin_gap(last_us, cl->now_us);

			/* Counted for a fixed spin too (weft_stats), acted
			 * on only by the adaptive rule. */
			cl->spin_gaps += gap;
			gap = gap && !cl->spin_us;
			last_us = cl->now_us;
			if (!gap && cl->now_us < spin_end)
				continue;
			spin_end_at(cl, spin_start, false, gap);
			spinning = false;
		}
		{
			struct epoll_event ev[4];
			int t = wf_pieces_timer_ms(cl), left;

			left = end == UINT64_MAX ? -1 :
			       (int)(end > cl->now ? end - cl->now : 0);
			if (t >= 0 && (left < 0 || t < left))
				left = t;
			/* A map look asked for after the last turn's own
			 * (wf_pieces_turn can ask one) is due now, not after
			 * the sleep. */
			if (cl->map_stale)
				left = 0;
			if (!cl->scr) {
				/* weft_fd() holds the fabric's fd alone: sleep
				 * in the fabric, which reaps what woke it in
				 * the same call (tcp: the epoll_wait that
				 * names the socket is the sleep; a sleeping
				 * QD1 wait is then a send, that epoll_wait
				 * and the recv of the reply). */
				ret = progress(cl, left);
				if (ret < 0)
					break;
				spin_end = 0;
				fresh = true;
				continue;
			}
			wf_ctx_arm(cl->ctx);
			/* The look after arming is for what the fabric holds
			 * (queued completions, credits: no system call) and
			 * for our own timers and retries.  The sockets need
			 * no look now: the fabric's fd is in epfd, and
			 * whatever reached them since the last poll keeps it
			 * readable (level-triggered), so the sleep below
			 * returns at once.  (tcp: one epoll_wait(0) per sleep
			 * less.) */
			wf_ctx_quiet(cl->ctx);
			ret = wf_progress(cl);
			if (ret < 0)
				break;
			if (cl->cq_count || ret > 0) {
				spin_end = 0;
				continue;
			}
			epoll_wait(cl->epfd, ev, 4, left);
			spin_end = 0;
		}
	}
	/* A progress turn failed. */
	if (spinning)
		spin_end_at(cl, spin_start, false, false);
	cl->wait_how = WF_SPIN_NONE;
	return got ? got : ret;
}

int weft_fd(struct weft_cluster *cl)
{
	return cl ? cl->epfd : -EINVAL;
}

unsigned weft_inflight(const struct weft_cluster *cl)
{
	return cl ? cl->inflight : 0;
}

/* ---- synchronous calls ------------------------------------------------------ */

#define SYNC_TAG 0x53594e4377656674ull

static int64_t sync_wait(struct weft_cluster *cl)
{
	struct weft_cqe e;

	for (;;) {
		int n = weft_wait(cl, &e, 1, 1, -1);

		if (n < 0)
			return n;
		if (n == 1 && e.user_data == SYNC_TAG)
			return e.res;
		if (n == 0 && !cl->inflight)
			return -EIO;
	}
}

ssize_t weft_pread(struct weft_volume *vol, void *buf, size_t len, uint64_t off)
{
	int ret = weft_read(vol, buf, len, off, SYNC_TAG);

	return ret ? ret : (ssize_t)sync_wait(vol->cl);
}

ssize_t weft_pwrite(struct weft_volume *vol, const void *buf, size_t len,
		    uint64_t off, unsigned flags)
{
	int ret = weft_write(vol, buf, len, off, flags, SYNC_TAG);

	return ret ? ret : (ssize_t)sync_wait(vol->cl);
}

int weft_fsync(struct weft_volume *vol)
{
	int ret = weft_flush(vol, SYNC_TAG);

	return ret ? ret : (int)sync_wait(vol->cl);
}

int weft_discard_sync(struct weft_volume *vol, uint64_t off, uint64_t len)
{
	int ret = weft_discard(vol, off, len, SYNC_TAG);
	int64_t r;

	if (ret)
		return ret;
	r = sync_wait(vol->cl);
	return r < 0 ? (int)r : 0;
}
