/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Messages between the queues of one store (IORING_OP_MSG_RING): a
 * request runs on the queue that owns its extent.  Submitted elsewhere, it
 * travels there (TAG_EXEC) and back (TAG_DONE); an index write carries
 * requests of any queue and hands each back to its queue the same way
 * (TAG_BLKDONE); a message we sent that failed comes back to us
 * (TAG_XSRC).  Sending (with an outbox for when the SQ is full) and
 * handling the CQEs that arrive; the state machines they start or
 * continue are store_io.c's.  See docs/store.md, "Queues".
 */
#define _GNU_SOURCE
#include <stdbool.h>

#include "target/store_int.h"

/* The CQE lands in dst's ring with user_data req | kind and res, and
 * wakes dst like any completion (a wait in its ring, or a poll of its
 * ring fd).  Our own CQE only comes on failure. */
void sio_msg_send(struct wf_store *s, struct wf_store *dst,
		  struct wf_store_req *req, uint8_t kind, int res)
{
	struct io_uring_sqe *sqe = sio_sqe_get(s);

	req->xkind = kind;
	req->xdst = dst;
	req->xres = res;
	if (!sqe) {
		/* Sent from the next wf_store_poll. */
		req->next = s->outbox;
		s->outbox = req;
		return;
	}
	io_uring_prep_msg_ring(sqe, dst->ring.ring_fd, (unsigned)res,
			       (uintptr_t)req | kind, 0);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(sqe, (uintptr_t)req | TAG_XSRC);
}

void sio_outbox_flush(struct wf_store *s)
{
	struct wf_store_req *req = s->outbox;

	s->outbox = NULL;
	while (req) {
		struct wf_store_req *next = req->next;

		sio_msg_send(s, req->xdst, req, req->xkind, req->xres);
		req = next;
	}
}

/* A message we sent did not arrive (res < 0). */
static void msg_failed(struct wf_store *s, struct wf_store_req *req, int res)
{
	if (req->xkind == TAG_EXEC) {
		/* Never reached the owner: answer it here. */
		req->q = s;
		req->res = res;
		s->inflight--;
		req->done(req, res);
		return;
	}
	/* DONE or BLKDONE: the request is still ours to deliver.  Only a
	 * closed destination ring refuses, which teardown order excludes. */
	req->next = s->outbox;
	s->outbox = req;
}

/* A message CQE (tag TAG_EXEC, TAG_DONE, TAG_BLKDONE or TAG_XSRC) for req,
 * from wf_store_poll.  True when a handed-back continuation ran: an extent
 * state it changed may let deferred requests go. */
bool sio_msg_cqe(struct wf_store *s, struct wf_store_req *req, unsigned tag,
		 int res)
{
	switch (tag) {
	case TAG_EXEC:
		/* We own its extent: run it here. */
		s->guests++;
		sio_dispatch(s, req);
		break;
	case TAG_DONE:
		s->inflight--;
		req->done(req, res);
		break;
	case TAG_BLKDONE:
		sio_blk_cont(s, req, res);
		return true;
	default:
		msg_failed(s, req, res);
		break;
	}
	return false;
}
