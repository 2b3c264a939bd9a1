/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libweft_fio.so: a fio external ioengine that drives a weft volume through
 * libweft, asynchronously, with fio's buffers allocated by weft_buf_alloc()
 * (registered with the fabric: no bounce copy).
 *
 *   fio --ioengine=external:build/lib/libweft_fio.so \
 *       --weft_map=MAP --weft_volume=vol1 [--weft_transport=tcp] \
 *       --name=j --rw=randread --bs=4k --iodepth=32 --runtime=10 --time_based
 *
 * Each fio job (thread or process) opens its own cluster handle in init()
 * (a libweft cluster handle belongs to one thread).  The volume's size is
 * the job's file size (setup() asks libweft once).  Offsets and lengths
 * must be multiples of 4096 (the volume block size) and the range inside
 * the volume: setup() refuses other jobs before they start.  reads,
 * writes, trims (weft_discard) and syncs (weft_flush) are supported;
 * --sync=1 makes every write FUA (durable when it completes, as O_SYNC on
 * a file is).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fio.h"
#include "optgroup.h"

#include "weft.h"
#include "weft_env.h"

struct wf_fio_opts {
	void *pad;		/* fio stores the thread pointer here */
	char *map;
	char *volume;
	char *transport;
	unsigned int short_circuit;
	unsigned int timeout_ms;
	unsigned int stats;
};

struct wf_fio {
	struct weft_cluster *cl;
	struct weft_volume  *vol;
	struct weft_cqe     *cqes;
	struct io_u        **events;
	unsigned             depth;
	unsigned             queued;
};

static struct fio_option wf_fio_options[] = {
	{
		.name	  = "weft_map",
		.lname	  = "weft cluster map",
		.type	  = FIO_OPT_STR_STORE,
		.off1	  = offsetof(struct wf_fio_opts, map),
		.help	  = "cluster map file (libconfig) of the weft cluster",
		.category = FIO_OPT_C_ENGINE,
		.group	  = FIO_OPT_G_INVALID,
	},
	{
		.name	  = "weft_volume",
		.lname	  = "weft volume",
		.type	  = FIO_OPT_STR_STORE,
		.off1	  = offsetof(struct wf_fio_opts, volume),
		.help	  = "name of the volume in the map",
		.category = FIO_OPT_C_ENGINE,
		.group	  = FIO_OPT_G_INVALID,
	},
	{
		.name	  = "weft_transport",
		.lname	  = "weft transport",
		.type	  = FIO_OPT_STR_STORE,
		.off1	  = offsetof(struct wf_fio_opts, transport),
		.help	  = "tcp (default), unix or verbs (also called rdma)",
		.category = FIO_OPT_C_ENGINE,
		.group	  = FIO_OPT_G_INVALID,
	},
	{
		.name	  = "weft_short_circuit",
		.lname	  = "weft short-circuit reads",
		.type	  = FIO_OPT_BOOL,
		.off1	  = offsetof(struct wf_fio_opts, short_circuit),
		.def	  = "1",
		.help	  = "read extents with a local replica straight from its device",
		.category = FIO_OPT_C_ENGINE,
		.group	  = FIO_OPT_G_INVALID,
	},
	{
		.name	  = "weft_timeout_ms",
		.lname	  = "weft request timeout",
		.type	  = FIO_OPT_INT,
		.off1	  = offsetof(struct wf_fio_opts, timeout_ms),
		.def	  = "0",
		.help	  = "fail a request no replica answered in this long (0: libweft's default)",
		.category = FIO_OPT_C_ENGINE,
		.group	  = FIO_OPT_G_INVALID,
	},
	{
		.name	  = "weft_stats",
		.lname	  = "weft statistics",
		.type	  = FIO_OPT_BOOL,
		.off1	  = offsetof(struct wf_fio_opts, stats),
		.def	  = "0",
		.help	  = "print libweft's counters (weft_stats) when the job ends",
		.category = FIO_OPT_C_ENGINE,
		.group	  = FIO_OPT_G_INVALID,
	},
	{ .name = NULL },
};

static int wf_fio_open_cluster(struct thread_data *td, unsigned depth,
			       struct weft_cluster **cl, struct weft_volume **vol)
{
	struct wf_fio_opts *o = td->eo;
	struct weft_cluster_opts co = { .size = sizeof(co) };
	int ret;

	if (!o || !o->map || !o->volume) {
		log_err("weft: --weft_map=MAP and --weft_volume=NAME are required\n");
		return -EINVAL;
	}
	co.map_path = o->map;
	co.transport = o->transport;
	co.queue_depth = depth;
	co.timeout_ms = o->timeout_ms;
	co.flags = (o->short_circuit ? 0 : WEFT_F_NO_SHORT_CIRCUIT) |
		   WEFT_F_DEFER_SEND;   /* sent by wf_fio_commit */
	weft_env_opts(&co, "fio");
	ret = weft_cluster_open(&co, cl);
	if (ret == -ENOENT) {
		log_err("weft: no map file %s (--weft_map)\n", o->map);
		return ret;
	}
	if (ret) {
		log_err("weft: cannot open the cluster of %s: %s\n", o->map,
			ret == -EINVAL ? "invalid map or option (the line above "
			"says which)" : weft_strerror(ret));
		return ret;
	}
	ret = weft_volume_open(*cl, o->volume, vol);
	if (ret) {
		log_err("weft: cannot open volume %s: %s\n", o->volume,
			ret == -ENOENT ? "the map has no volume of that name" :
			weft_strerror(ret));
		weft_cluster_close(*cl);
		*cl = NULL;
	}
	return ret;
}

/*
 * What libweft would refuse at the first I/O, refused before the job runs:
 * block sizes, block alignment and offsets that are not multiples of the
 * volume's block size, and a range (--offset + --size) past the volume's
 * end (fio would silently shrink it to the volume).  0 or -EINVAL.
 */
static int wf_fio_check_job(struct thread_data *td, uint64_t vsize, uint32_t bsz)
{
	struct thread_options *o = &td->o;

	for (int d = DDIR_READ; d < DDIR_RWDIR_CNT; d++) {
		if (o->min_bs[d] % bsz || o->max_bs[d] % bsz || o->ba[d] % bsz) {
			log_err("weft: %s: block size %llu..%llu (alignment %llu) is "
				"not a multiple of the volume's block size %u\n",
				td->o.name, o->min_bs[d], o->max_bs[d], o->ba[d], bsz);
			return -EINVAL;
		}
	}
	if (o->bs_unaligned) {
		log_err("weft: %s: bs_unaligned: weft volumes take multiples of "
			"%u bytes only\n", td->o.name, bsz);
		return -EINVAL;
	}
	if (o->start_offset % bsz || o->offset_increment % bsz) {
		log_err("weft: %s: offset %llu (increment %llu) is not a multiple "
			"of %u\n", td->o.name, o->start_offset,
			o->offset_increment, bsz);
		return -EINVAL;
	}
	if (!o->size_percent && !o->start_offset_percent &&
	    (o->start_offset > vsize || o->size > vsize - o->start_offset)) {
		log_err("weft: %s: offset %llu + size %llu is past the end of "
			"the volume (%llu bytes): lower --size or --offset\n",
			td->o.name, o->start_offset, o->size,
			(unsigned long long)vsize);
		return -EINVAL;
	}
	return 0;
}

/* Runs once per job in the main fio process: the file is the volume. */
static int wf_fio_setup(struct thread_data *td)
{
	struct weft_cluster *cl;
	struct weft_volume *vol;
	struct fio_file *f;
	uint32_t bsz;
	int ret;

	/* No disk files: pretend one file whose size is the volume's (as
	 * fio's rbd and nbd engines do). */
	if (!td->files_index) {
		add_file(td, td->o.filename ? td->o.filename : "weft", 0, 0);
		td->o.nr_files = td->o.nr_files ? td->o.nr_files : 1;
		td->o.open_files++;
	}
	ret = wf_fio_open_cluster(td, 1, &cl, &vol);
	if (ret)
		return 1;
	f = td->files[0];
	f->real_file_size = weft_volume_size(vol);
	bsz = weft_volume_block_size(vol);
	weft_cluster_close(cl);
	return wf_fio_check_job(td, f->real_file_size, bsz) ? 1 : 0;
}

static void wf_fio_cleanup(struct thread_data *td)
{
	struct wf_fio *d = td->io_ops_data;

	if (!d)
		return;
	if (d->cl && ((struct wf_fio_opts *)td->eo)->stats) {
		struct weft_stats s = { .size = sizeof(s) };
		uint64_t ios;

		weft_stats(d->cl, &s);
		ios = s.reads + s.writes + s.flushes + s.discards;
		log_info("weft: %llu reads (%llu bytes), %llu writes (%llu bytes), "
			 "%llu flushes, %llu discards, %llu errors, %llu retries, "
			 "%llu reconnects, %llu short-circuit reads; per I/O: %.2f "
			 "sends, %.2f one-sided writes, %.2f completions; map epoch "
			 "%llu, %u connections\n",
			 (unsigned long long)s.reads, (unsigned long long)s.read_bytes,
			 (unsigned long long)s.writes, (unsigned long long)s.write_bytes,
			 (unsigned long long)s.flushes, (unsigned long long)s.discards,
			 (unsigned long long)s.errors, (unsigned long long)s.retries,
			 (unsigned long long)s.reconnects, (unsigned long long)s.sc_reads,
			 ios ? (double)s.fabric_sends / ios : 0.0,
			 ios ? (double)s.fabric_writes / ios : 0.0,
			 ios ? (double)s.fabric_cqes / ios : 0.0,
			 (unsigned long long)s.map_epoch, s.connections);
	}
	if (d->cl)
		weft_cluster_close(d->cl);   /* closes the volume too */
	free(d->cqes);
	free(d->events);
	free(d);
	td->io_ops_data = NULL;
}

/* Runs in the job's own thread or process, before its buffers exist. */
static int wf_fio_init(struct thread_data *td)
{
	struct wf_fio *d;

	d = calloc(1, sizeof(*d));
	if (!d)
		return 1;
	td->io_ops_data = d;
	d->depth = td->o.iodepth ? td->o.iodepth : 1;
	d->cqes = calloc(d->depth, sizeof(*d->cqes));
	d->events = calloc(d->depth, sizeof(*d->events));
	if (!d->cqes || !d->events ||
	    wf_fio_open_cluster(td, d->depth, &d->cl, &d->vol)) {
		wf_fio_cleanup(td);
		return 1;
	}
	return 0;
}

/* fio's I/O buffers in registered memory: zero-copy through libweft. */
static int wf_fio_iomem_alloc(struct thread_data *td, size_t total)
{
	struct wf_fio *d = td->io_ops_data;

	if (!d || !d->cl)
		return 1;
	td->orig_buffer = weft_buf_alloc(d->cl, total);
	return td->orig_buffer == NULL;
}

static void wf_fio_iomem_free(struct thread_data *td)
{
	struct wf_fio *d = td->io_ops_data;

	if (d && d->cl && td->orig_buffer)
		weft_buf_free(d->cl, td->orig_buffer);
}

static enum fio_q_status wf_fio_queue(struct thread_data *td, struct io_u *io_u)
{
	struct wf_fio *d = td->io_ops_data;
	uint64_t ud = (uint64_t)(uintptr_t)io_u;
	int ret;

	fio_ro_check(td, io_u);
	switch (io_u->ddir) {
	case DDIR_READ:
		ret = weft_read(d->vol, io_u->xfer_buf, io_u->xfer_buflen,
				io_u->offset, ud);
		break;
	case DDIR_WRITE:
		/* --sync=1 (O_SYNC on a file): each write durable when it
		 * completes, so FUA; without it fio's fsync/fdatasync
		 * options (DDIR_SYNC below) say when. */
		ret = weft_write(d->vol, io_u->xfer_buf, io_u->xfer_buflen,
				 io_u->offset, td->o.sync_io ? WEFT_FUA : 0, ud);
		break;
	case DDIR_TRIM:
		ret = weft_discard(d->vol, io_u->offset, io_u->xfer_buflen, ud);
		break;
	case DDIR_SYNC:
	case DDIR_DATASYNC:
	case DDIR_SYNC_FILE_RANGE:
		ret = weft_flush(d->vol, ud);
		break;
	default:
		ret = -EINVAL;
		break;
	}
	if (ret == -EAGAIN)
		return FIO_Q_BUSY;     /* queue_depth in flight: reap first */
	if (ret) {
		io_u->error = -ret;
		td_verror(td, io_u->error, "weft queue");
		return FIO_Q_COMPLETED;
	}
	d->queued++;
	return FIO_Q_QUEUED;
}

/* fio queues a batch, then commits it: the whole batch leaves in one send
 * per target (the cluster is opened with WEFT_F_DEFER_SEND). */
static int wf_fio_commit(struct thread_data *td)
{
	struct wf_fio *d = td->io_ops_data;
	int ret = weft_submit(d->cl);

	if (ret)
		td_verror(td, -ret, "weft_submit");
	return ret;
}

static int wf_fio_getevents(struct thread_data *td, unsigned int min,
			    unsigned int max, const struct timespec *t)
{
	struct wf_fio *d = td->io_ops_data;
	int timeout = t ? (int)(t->tv_sec * 1000 + t->tv_nsec / 1000000) : -1;
	unsigned got = 0;

	if (max > d->depth)
		max = d->depth;
	do {
		int n = weft_wait(d->cl, d->cqes, (int)(min > got ? min - got : 0),
				  (int)(max - got), timeout);

		if (n < 0) {
			td_verror(td, -n, "weft_wait");
			return n;
		}
		for (int i = 0; i < n; i++) {
			struct io_u *io_u = (struct io_u *)(uintptr_t)d->cqes[i].user_data;
			int64_t res = d->cqes[i].res;

			if (res < 0) {
				io_u->error = (int)-res;
			} else {
				io_u->error = 0;
				/* flush completes with 0, data ops with bytes */
				io_u->resid = io_u->ddir == DDIR_READ ||
					      io_u->ddir == DDIR_WRITE ||
					      io_u->ddir == DDIR_TRIM ?
					      io_u->xfer_buflen - (uint64_t)res : 0;
			}
			d->events[got + (unsigned)i] = io_u;
		}
		got += (unsigned)n;
		d->queued -= (unsigned)n;
		if (n == 0 && t)
			break;         /* timed out */
	} while (got < min);
	return (int)got;
}

static struct io_u *wf_fio_event(struct thread_data *td, int event)
{
	struct wf_fio *d = td->io_ops_data;

	return d->events[event];
}

static int wf_fio_open_file(struct thread_data *td, struct fio_file *f)
{
	(void)td;
	(void)f;
	return 0;
}

static int wf_fio_close_file(struct thread_data *td, struct fio_file *f)
{
	(void)td;
	(void)f;
	return 0;
}

static int wf_fio_invalidate(struct thread_data *td, struct fio_file *f)
{
	(void)td;
	(void)f;
	return 0;       /* no page cache between fio and the targets */
}

/* Exported by name: fio dlsym()s "ioengine" after dlopen(). */
struct ioengine_ops ioengine = {
	.name			= "weft",
	.version		= FIO_IOOPS_VERSION,
	.flags			= FIO_DISKLESSIO | FIO_NOEXTEND | FIO_NODISKUTIL,
	.setup			= wf_fio_setup,
	.init			= wf_fio_init,
	.cleanup		= wf_fio_cleanup,
	.queue			= wf_fio_queue,
	.commit			= wf_fio_commit,
	.getevents		= wf_fio_getevents,
	.event			= wf_fio_event,
	.open_file		= wf_fio_open_file,
	.close_file		= wf_fio_close_file,
	.invalidate		= wf_fio_invalidate,
	.iomem_alloc		= wf_fio_iomem_alloc,
	.iomem_free		= wf_fio_iomem_free,
	.options		= wf_fio_options,
	.option_struct_size	= sizeof(struct wf_fio_opts),
};
