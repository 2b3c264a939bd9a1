/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft-bench floor: the raw device's latency and IOPS through a bare
 * io_uring loop.  See io_floor.h; the method is in docs/benchmarks.md.
 */
#define _GNU_SOURCE		/* O_DIRECT */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "bench/bench.h"
#include "bench/io_floor.h"
#include "bench/pattern.h"
#include "bench/stats.h"

#define DEFAULT_SIZE	(1ull << 30)	/* a new file: 1 GiB */
#define VERIFY_QD	32		/* the verify pass is not timed: go deep */
#define LAYOUT_CHUNK	(1u << 20)
#define MAX_QD		1024
#define SUBMIT_BATCH	8		/* refills submitted at most this many at once */

enum { OP_READ, OP_WRITE };

/* One in-flight request; its index is also its registered buffer index. */
struct slot {
	uint64_t off;
	uint64_t t0;		/* submit time, ns */
	uint32_t op;
};

/* Everything the run allocates, so that one function can undo it. */
struct floor_ctx {
	const struct wf_floor_opts *o;
	struct wf_floor_result *r;
	int fd;
	bool ring_ok;
	struct io_uring ring;
	uint32_t nslots;
	uint8_t *bufs;		/* nslots * bs, page aligned, registered */
	struct slot *slots;
	uint32_t *queued;	/* slots prepared this loop turn */
	uint64_t *written;	/* bitmap of blocks written (writes only) */
	uint64_t nblocks;
	uint64_t rng;		/* counter for wf_mix64 */
};

void wf_floor_opts_init(struct wf_floor_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->rw = WF_RW_READ;
	o->bs = 4096;
	o->qd = 1;
	o->runtime_s = 5;
	o->seed = 1;
	o->rwmix_read = 50;
	o->verify = true;
}

const char *wf_rw_name(enum wf_rw rw)
{
	switch (rw) {
	case WF_RW_READ:  return "randread";
	case WF_RW_WRITE: return "randwrite";
	case WF_RW_RW:    return "randrw";
	}
	return "?";
}

int wf_rw_parse(const char *s, enum wf_rw *rw)
{
	if (!strcmp(s, "randread"))
		*rw = WF_RW_READ;
	else if (!strcmp(s, "randwrite"))
		*rw = WF_RW_WRITE;
	else if (!strcmp(s, "randrw"))
		*rw = WF_RW_RW;
	else
		return -EINVAL;
	return 0;
}

static inline uint64_t rnd(struct floor_ctx *c)
{
	return wf_mix64(c->rng++);
}

/* Uniform block index without modulo bias worth mentioning. */
static inline uint64_t pick_block(struct floor_ctx *c)
{
	return (uint64_t)(((unsigned __int128)rnd(c) * c->nblocks) >> 64);
}

static inline uint8_t *slot_buf(struct floor_ctx *c, uint32_t i)
{
	return c->bufs + (size_t)i * c->o->bs;
}

/* ---- setup -------------------------------------------------------------- */

static int open_target(struct floor_ctx *c, struct stat *st)
{
	const struct wf_floor_opts *o = c->o;
	struct statfs sfs;
	int fd;

	if (o->read_only)
		fd = open(o->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	else
		fd = open(o->path, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && !o->read_only)
		fd = open(o->path, O_RDWR | O_DIRECT | O_CLOEXEC | O_CREAT, 0644);
	if (fd < 0 && (errno == EACCES || errno == EROFS) && o->rw == WF_RW_READ)
		fd = open(o->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0) {
		int err = -errno;

		if (err == -EINVAL)
			fprintf(stderr, "floor: %s: O_DIRECT not supported here "
				"(tmpfs?); use a file on a real disk such as /var/tmp\n",
				o->path);
		else
			fprintf(stderr, "floor: open %s: %s\n", o->path, strerror(-err));
		return err;
	}
	c->fd = fd;
	if (fstat(fd, st) < 0)
		return -errno;
	/* tmpfs takes O_DIRECT on recent kernels: the run then measures
	 * memory copies, not a device.  Allowed (tests), but said. */
	if (!o->quiet && fstatfs(fd, &sfs) == 0 &&
	    (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC))
		fprintf(stderr, "floor: warning: %s is in memory (tmpfs), not on a "
			"device; use /var/tmp or a block device\n", o->path);
	return 0;
}

/* Sizes the run; returns whether the file must be laid out first. */
static int size_target(struct floor_ctx *c, const struct stat *st, bool *layout)
{
	const struct wf_floor_opts *o = c->o;
	uint64_t size = o->size, have;

	*layout = false;
	if (S_ISBLK(st->st_mode)) {
		if (ioctl(c->fd, BLKGETSIZE64, &have) < 0)
			return -errno;
		if (!size || size > have)
			size = have;
	} else if (S_ISREG(st->st_mode)) {
		have = (uint64_t)st->st_size;
		if (!size)
			size = have ? have : DEFAULT_SIZE;
		if (c->o->read_only && size > have)
			size = have;	/* cannot extend: address what exists */
		/* A sparse or short file would be read from holes (no device
		 * I/O at all) or written with allocation on the way: neither is
		 * the device floor.  fio lays its files out the same way. */
		if (have < size || (uint64_t)st->st_blocks * 512 < size)
			*layout = true;
	} else {
		fprintf(stderr, "floor: %s is neither a file nor a block device\n", o->path);
		return -EINVAL;
	}
	size -= size % o->bs;
	if (size < o->bs) {
		fprintf(stderr, "floor: %s: size below one block\n", o->path);
		return -EINVAL;
	}
	c->r->size = size;
	c->nblocks = size / o->bs;
	return 0;
}

static int layout_file(struct floor_ctx *c)
{
	uint64_t size = c->r->size, seed = wf_mix64(c->o->seed ^ 0x6c61796f7574ull);
	bool show = !c->o->quiet || c->o->layout_progress;
	struct wf_prog pr;
	void *buf;
	int err = 0;

	if (show)
		fprintf(stderr, "floor: laying out %s (%.2f GiB, once: a sparse "
			"file would not measure the device)...\n", c->o->path,
			(double)size / (1u << 30));
	wf_prog_start(&pr, "floor layout", size);
	if (posix_memalign(&buf, 4096, LAYOUT_CHUNK))
		return -ENOMEM;
	for (uint64_t off = 0; off < size; ) {
		size_t len = size - off < LAYOUT_CHUNK ? size - off : LAYOUT_CHUNK;
		ssize_t n;

		wf_pattern_fill(buf, len, seed, off);
		n = pwrite(c->fd, buf, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : -EIO;
			fprintf(stderr, "floor: layout write at %" PRIu64 ": %s\n",
				off, strerror(-err));
			goto out;
		}
		off += (uint64_t)n;
		if (show)
			wf_prog_update(&pr, off);
	}
	if (fdatasync(c->fd) < 0)
		err = -errno;
	c->r->laid_out = true;
out:
	wf_prog_end(&pr);
	free(buf);
	return err;
}

static int setup_ring(struct floor_ctx *c)
{
	struct iovec *iov;
	int err;

	/* Ring entries >= slots in flight, so a get_sqe never fails and the
	 * completion queue (twice the entries) never overflows.  The flags are
	 * the ones fio's io_uring engine asks for, with the same fallbacks, so
	 * that the floor and fio measure the same kernel path: completion work
	 * deferred to the single issuing task and run when it waits
	 * (DEFER_TASKRUN), instead of interrupting it on every completion. */
	static const unsigned tries[] = {
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
			IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};

	err = -EINVAL;
	for (size_t k = 0; k < sizeof(tries) / sizeof(tries[0]) && err == -EINVAL; k++) {
		struct io_uring_params p = { .flags = tries[k] };

		err = io_uring_queue_init_params(c->nslots, &c->ring, &p);
		if (!err)
			c->r->ring_flags = tries[k];
	}
	if (err < 0) {
		fprintf(stderr, "floor: io_uring_queue_init: %s\n", strerror(-err));
		return err;
	}
	c->ring_ok = true;
	err = io_uring_register_files(&c->ring, &c->fd, 1);
	if (err < 0) {
		fprintf(stderr, "floor: io_uring_register_files: %s\n", strerror(-err));
		return err;
	}
	iov = calloc(c->nslots, sizeof(*iov));
	if (!iov)
		return -ENOMEM;
	for (uint32_t i = 0; i < c->nslots; i++) {
		iov[i].iov_base = slot_buf(c, i);
		iov[i].iov_len = c->o->bs;
	}
	/* Registration pins the pages once; fixed-buffer I/O then skips the
	 * per-request page walk, as weft's target does with its slots. */
	err = io_uring_register_buffers(&c->ring, iov, c->nslots);
	free(iov);
	if (err < 0)
		fprintf(stderr, "floor: io_uring_register_buffers: %s%s\n", strerror(-err),
			err == -ENOMEM ? " (RLIMIT_MEMLOCK?)" : "");
	return err;
}

static void ctx_destroy(struct floor_ctx *c)
{
	if (c->ring_ok)
		io_uring_queue_exit(&c->ring);	/* also unregisters */
	free(c->written);
	free(c->queued);
	free(c->slots);
	free(c->bufs);
	if (c->fd >= 0)
		close(c->fd);
}

/* ---- the timed loop ----------------------------------------------------- */

static void prep_io(struct floor_ctx *c, uint32_t i, uint32_t op, uint64_t off)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);
	struct slot *s = &c->slots[i];

	s->op = op;
	s->off = off;
	if (op == OP_WRITE) {
		io_uring_prep_write_fixed(sqe, 0, slot_buf(c, i), c->o->bs, off, (int)i);
		if (c->o->dsync)
			sqe->rw_flags = RWF_DSYNC;
	} else
		io_uring_prep_read_fixed(sqe, 0, slot_buf(c, i), c->o->bs, off, (int)i);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, s);
}

/* Next random request for slot i: pattern written before it is queued. */
static void next_io(struct floor_ctx *c, uint32_t i)
{
	const struct wf_floor_opts *o = c->o;
	uint64_t blk = pick_block(c), off = blk * o->bs;
	uint32_t op;

	if (o->rw == WF_RW_READ)
		op = OP_READ;
	else if (o->rw == WF_RW_WRITE)
		op = OP_WRITE;
	else
		op = rnd(c) % 100 < o->rwmix_read ? OP_READ : OP_WRITE;
	if (op == OP_WRITE) {
		/* Every write of a block carries the same bytes (the pattern is
		 * a function of seed and offset), so overlapping writes to one
		 * block cannot leave it in a state the verify pass rejects. */
		wf_pattern_fill(slot_buf(c, i), o->bs, c->r->pattern_seed, off);
		c->written[blk >> 6] |= 1ull << (blk & 63);
	}
	prep_io(c, i, op, off);
}

static int cqe_error(const struct io_uring_cqe *cqe, uint32_t bs, const struct slot *s)
{
	int err = cqe->res < 0 ? cqe->res : -EIO;

	fprintf(stderr, "floor: %s at %" PRIu64 ": %s\n",
		s->op == OP_WRITE ? "write" : "read", s->off,
		cqe->res < 0 ? strerror(-cqe->res) : "short transfer");
	(void)bs;
	return err;
}

/* Stamps the n slots queued last just before they are submitted: preparing
 * them (a write's pattern fill) is not I/O time. */
static void stamp(struct floor_ctx *c, uint32_t n)
{
	uint64_t now = wf_now_ns();

	for (uint32_t k = 0; k < n; k++)
		c->slots[c->queued[k]].t0 = now;
}

static int timed_loop(struct floor_ctx *c)
{
	const struct wf_floor_opts *o = c->o;
	struct wf_floor_result *r = c->r;
	uint64_t start, deadline, end, now;
	struct wf_cpu cpu0, cpu1;
	uint32_t inflight = 0, nq = 0;
	int err = 0, ret;

	ret = wf_cpu_self(&cpu0);
	if (ret)
		return ret;
	for (uint32_t i = 0; i < o->qd; i++) {
		next_io(c, i);
		c->queued[nq++] = i;
	}
	start = wf_now_ns();
	deadline = start + (uint64_t)(o->runtime_s * 1e9);
	end = start;
	while (nq || inflight) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		stamp(c, nq);
		inflight += nq;
		nq = 0;
		ret = io_uring_submit_and_wait(&c->ring, 1);
		if (ret < 0 && ret != -EINTR) {
			fprintf(stderr, "floor: io_uring_submit_and_wait: %s\n", strerror(-ret));
			return ret;	/* ring state unknown: caller tears it down */
		}
		now = wf_now_ns();
		io_uring_for_each_cqe(&c->ring, head, cqe) {
			struct slot *s = io_uring_cqe_get_data(cqe);
			uint32_t i = (uint32_t)(s - c->slots);
			uint64_t lat;

			/* Submitted inside this loop (SUBMIT_BATCH) after now
			 * was read, and already done (a hole, the page cache):
			 * this loop sees its CQE too.  Read the clock again
			 * rather than record a negative latency. */
			if (s->t0 > now)
				now = wf_now_ns();
			lat = now - s->t0;

			seen++;
			inflight--;
			if (cqe->res != (int)o->bs) {
				if (!err)
					err = cqe_error(cqe, o->bs, s);
				continue;
			}
			wf_hist_record(&r->lat, lat);
			if (s->op == OP_WRITE) {
				wf_hist_record(&r->write_lat, lat);
				r->writes++;
			} else {
				wf_hist_record(&r->read_lat, lat);
				r->reads++;
			}
			if (!err && now < deadline) {
				next_io(c, i);
				c->queued[nq++] = i;
				/* Do not hold refilled slots back while the rest
				 * of a large batch is prepared (a write's pattern
				 * costs ~0.5 us): the device would run below QD. */
				if (nq == SUBMIT_BATCH) {
					stamp(c, nq);
					ret = io_uring_submit(&c->ring);
					if (ret < 0 && !err)
						err = ret;
					inflight += nq;
					nq = 0;
				}
			}
		}
		io_uring_cq_advance(&c->ring, seen);
		end = now;
	}
	ret = wf_cpu_self(&cpu1);
	if (ret)
		return ret;
	r->ops = r->reads + r->writes;
	r->bytes = r->ops * o->bs;
	r->elapsed_s = (double)(end - start) / 1e9;
	r->iops = r->elapsed_s > 0 ? (double)r->ops / r->elapsed_s : 0;
	r->mbps = r->elapsed_s > 0 ? (double)r->bytes / r->elapsed_s / 1e6 : 0;
	r->cpu_user_ns = cpu1.user_ns - cpu0.user_ns;
	r->cpu_sys_ns = cpu1.sys_ns - cpu0.sys_ns;
	r->cpu_total_ns = cpu1.total_ns - cpu0.total_ns;
	r->cpu_us_per_io = r->ops ? (double)r->cpu_total_ns / 1e3 / (double)r->ops : 0;
	return err;
}

/* ---- verify pass -------------------------------------------------------- */

static void verify_done(struct floor_ctx *c, const struct slot *s, uint32_t i)
{
	struct wf_floor_result *r = c->r;
	size_t bad;

	r->verified++;
	if (wf_pattern_check(slot_buf(c, i), c->o->bs, r->pattern_seed, s->off, &bad)) {
		if (r->verify_errors++ == 0)
			r->first_bad_offset = s->off + bad;
	}
}

static int verify_pass(struct floor_ctx *c)
{
	uint64_t blk = 0, t0 = wf_now_ns();
	uint32_t inflight = 0, nfree = 0;
	int err = 0, ret;

	/* c->queued doubles as the free-slot stack here. */
	for (uint32_t i = 0; i < c->nslots; i++)
		c->queued[nfree++] = c->nslots - 1 - i;
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		while (nfree && !err) {
			while (blk < c->nblocks &&
			       !(c->written[blk >> 6] & (1ull << (blk & 63))))
				blk++;
			if (blk >= c->nblocks)
				break;
			prep_io(c, c->queued[--nfree], OP_READ, blk * c->o->bs);
			inflight++;
			blk++;
		}
		if (!inflight)
			break;
		ret = io_uring_submit_and_wait(&c->ring, 1);
		if (ret < 0 && ret != -EINTR)
			return ret;
		io_uring_for_each_cqe(&c->ring, head, cqe) {
			struct slot *s = io_uring_cqe_get_data(cqe);
			uint32_t i = (uint32_t)(s - c->slots);

			seen++;
			inflight--;
			if (cqe->res != (int)c->o->bs) {
				if (!err)
					err = cqe_error(cqe, c->o->bs, s);
			} else {
				verify_done(c, s, i);
			}
			c->queued[nfree++] = i;
		}
		io_uring_cq_advance(&c->ring, seen);
	}
	c->r->verify_s = (double)(wf_now_ns() - t0) / 1e9;
	if (err)
		return err;
	return c->r->verify_errors ? -EILSEQ : 0;
}

/* ---- entry points --------------------------------------------------------- */

int wf_floor_run(const struct wf_floor_opts *o, struct wf_floor_result *r)
{
	struct floor_ctx c = { .o = o, .r = r, .fd = -1 };
	struct stat st;
	struct timespec rt;
	bool layout;
	int err;

	if (!o->path || o->bs < 512 || o->bs % 512 || o->qd < 1 || o->qd > MAX_QD ||
	    !(o->runtime_s > 0) || o->rwmix_read > 100 ||
	    (o->read_only && o->rw != WF_RW_READ))
		return -EINVAL;
	memset(r, 0, sizeof(*r));
	/* The pattern seed mixes in the wall clock: a block left over from an
	 * earlier run with the same --seed must not pass the verify pass. */
	clock_gettime(CLOCK_REALTIME, &rt);
	r->pattern_seed = wf_mix64(o->seed ^ wf_mix64((uint64_t)rt.tv_sec * 1000000000ull +
						      (uint64_t)rt.tv_nsec));
	c.rng = wf_mix64(o->seed);
	c.nslots = o->qd > VERIFY_QD ? o->qd : VERIFY_QD;

	err = open_target(&c, &st);
	if (err)
		goto out;
	err = size_target(&c, &st, &layout);
	if (err)
		goto out;
	if (layout && o->read_only) {
		if (!o->quiet)
			fprintf(stderr, "floor: warning: %s is sparse or short; read-only "
				"run reads holes, which is not the device floor\n", o->path);
	} else if (layout) {
		err = layout_file(&c);
		if (err)
			goto out;
	}
	err = -ENOMEM;
	if (posix_memalign((void **)&c.bufs, 4096, (size_t)c.nslots * o->bs))
		goto out;
	c.slots = calloc(c.nslots, sizeof(*c.slots));
	c.queued = calloc(c.nslots, sizeof(*c.queued));
	c.written = calloc((c.nblocks + 63) / 64, sizeof(*c.written));
	if (!c.slots || !c.queued || !c.written)
		goto out;
	err = setup_ring(&c);
	if (err)
		goto out;
	err = timed_loop(&c);
	if (err)
		goto out;
	if (o->verify && r->writes)
		err = verify_pass(&c);
out:
	ctx_destroy(&c);
	return err;
}

void wf_floor_print(FILE *f, const struct wf_floor_opts *o,
		    const struct wf_floor_result *r)
{
	struct wf_lat_summary s;

	fprintf(f, "floor: %s bs=%u qd=%u file=%s size=%.2f GiB runtime=%.2f s%s%s\n",
		wf_rw_name(o->rw), o->bs, o->qd, o->path,
		(double)r->size / (1u << 30), r->elapsed_s,
		r->laid_out ? " (laid out first)" : "", o->dsync ? " dsync" : "");
	fprintf(f, "  %-6s %10s %10s %9s %9s %9s %9s %9s %9s %9s %10s\n",
		"op", "ios", "iops", "MB/s", "min_us", "p50_us", "p99_us",
		"p99.9_us", "p99.99_us", "max_us", "cpu_us/io");
	for (int k = 0; k < 3; k++) {
		const struct wf_hist *h = k == 0 ? &r->lat : k == 1 ? &r->read_lat : &r->write_lat;
		const char *name = k == 0 ? "all" : k == 1 ? "read" : "write";
		double iops;

		/* One row for a pure workload, three for a mix. */
		if (k > 0 && (o->rw != WF_RW_RW || !h->count))
			continue;
		wf_hist_summary(h, &s);
		iops = r->elapsed_s > 0 ? (double)h->count / r->elapsed_s : 0;
		fprintf(f, "  %-6s %10" PRIu64 " %10.0f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f",
			name, h->count, iops, iops * o->bs / 1e6, s.min_us, s.p50_us,
			s.p99_us, s.p999_us, s.p9999_us, s.max_us);
		if (k == 0)
			fprintf(f, " %10.2f", r->cpu_us_per_io);
		fputc('\n', f);
	}
	if (r->writes) {
		if (!o->verify)
			fprintf(f, "  verify: off\n");
		else if (r->verify_errors)
			fprintf(f, "  verify: FAILED: %" PRIu64 " of %" PRIu64 " blocks differ, "
				"first bad byte at offset %" PRIu64 "\n",
				r->verify_errors, r->verified, r->first_bad_offset);
		else
			fprintf(f, "  verify: %" PRIu64 " blocks written and read back intact (%.2f s)\n",
				r->verified, r->verify_s);
	}
}

void wf_floor_json(struct wf_json *j, const char *key,
		   const struct wf_floor_opts *o, const struct wf_floor_result *r)
{
	struct wf_lat_summary s;

	wf_json_obj_begin(j, key);
	wf_json_str(j, "bench", "floor");
	wf_json_str(j, "file", o->path);
	wf_json_str(j, "rw", wf_rw_name(o->rw));
	wf_json_u64(j, "bs", o->bs);
	wf_json_u64(j, "qd", o->qd);
	wf_json_u64(j, "size", r->size);
	wf_json_u64(j, "seed", o->seed);
	wf_json_bool(j, "dsync", o->dsync);
	if (o->rw == WF_RW_RW)
		wf_json_u64(j, "rwmix_read", o->rwmix_read);
	wf_json_dbl(j, "runtime_s", r->elapsed_s);
	wf_json_u64(j, "ios", r->ops);
	wf_json_u64(j, "reads", r->reads);
	wf_json_u64(j, "writes", r->writes);
	wf_json_dbl(j, "iops", r->iops);
	wf_json_dbl(j, "mbps", r->mbps);
	wf_hist_summary(&r->lat, &s);
	wf_json_lat(j, "", &s);
	wf_json_dbl(j, "cpu_us_per_io", r->cpu_us_per_io);
	wf_json_dbl(j, "cpu_user_s", (double)r->cpu_user_ns / 1e9);
	wf_json_dbl(j, "cpu_sys_s", (double)r->cpu_sys_ns / 1e9);
	wf_json_u64(j, "ring_flags", r->ring_flags);
	if (o->rw == WF_RW_RW) {
		wf_json_obj_begin(j, "read");
		wf_hist_summary(&r->read_lat, &s);
		wf_json_u64(j, "ios", r->reads);
		wf_json_lat(j, "", &s);
		wf_json_obj_end(j);
		wf_json_obj_begin(j, "write");
		wf_hist_summary(&r->write_lat, &s);
		wf_json_u64(j, "ios", r->writes);
		wf_json_lat(j, "", &s);
		wf_json_obj_end(j);
	}
	wf_json_obj_begin(j, "verify");
	wf_json_bool(j, "enabled", o->verify && r->writes);
	wf_json_u64(j, "blocks", r->verified);
	wf_json_u64(j, "errors", r->verify_errors);
	wf_json_bool(j, "ok", r->verify_errors == 0);
	wf_json_obj_end(j);
	wf_json_obj_end(j);
}

/* ---- weft-bench floor --------------------------------------------------- */

/* "4k", "1g", "512": binary multiples, as fio reads bs and size. */
static int parse_size(const char *s, uint64_t *v)
{
	char *end;
	unsigned long long n;
	int shift = 0;

	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	}
	if (*end == 'i' || *end == 'b' || *end == 'B')
		end++;
	if (*end == 'B')
		end++;
	if (*end || (shift && n > (UINT64_MAX >> shift)))
		return -EINVAL;
	*v = (uint64_t)n << shift;
	return 0;
}

static int floor_usage(FILE *f)
{
	fprintf(f,
		"usage: weft-bench floor --file PATH [--rw randread|randwrite|randrw]\n"
		"         [--bs 4k] [--qd N] [--runtime S] [--size BYTES] [--seed N]\n"
		"         [--rwmixread PCT] [--no-verify] [--read-only] [--json]\n"
		"         [--plot DIR] [--quiet] [--dsync]\n"
		"  Raw device floor: io_uring, O_DIRECT, registered file and buffers,\n"
		"  seeded random aligned offsets, QD kept full.  A missing, short or\n"
		"  sparse file is laid out (written) first.  randwrite/randrw write\n"
		"  seeded patterns and re-read every written block afterwards.\n"
		"  It WRITES the file; --read-only (randread) never does.  --dsync:\n"
		"  every write RWF_DSYNC (a target's writes with --cache auto).\n");
	return f == stdout ? 0 : 2;
}

int bench_floor(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "file",      required_argument, NULL, 'f' },
		{ "rw",        required_argument, NULL, 'r' },
		{ "bs",        required_argument, NULL, 'b' },
		{ "qd",        required_argument, NULL, 'q' },
		{ "runtime",   required_argument, NULL, 't' },
		{ "size",      required_argument, NULL, 's' },
		{ "seed",      required_argument, NULL, 'S' },
		{ "rwmixread", required_argument, NULL, 'm' },
		{ "no-verify", no_argument,       NULL, 'V' },
		{ "json",      no_argument,       NULL, 'j' },
		{ "plot",      required_argument, NULL, 'p' },
		{ "quiet",     no_argument,       NULL, 'Q' },
		{ "read-only", no_argument,       NULL, 'R' },
		{ "dsync",     no_argument,       NULL, 'D' },
		{ "help",      no_argument,       NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct wf_floor_opts o;
	struct wf_floor_result *r;
	const char *plot = NULL;
	bool json = false;
	uint64_t v;
	char *end;
	int opt, idx = 0, err;

	wf_floor_opts_init(&o);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", lopts, &idx)) != -1) {
		switch (opt) {
		case 'f': o.path = optarg; break;
		case 'r':
			if (wf_rw_parse(optarg, &o.rw))
				goto bad;
			break;
		case 'b':
			if (parse_size(optarg, &v) || v > (1u << 26))
				goto bad;
			o.bs = (uint32_t)v;
			break;
		case 'q':
			if (parse_size(optarg, &v) || v < 1 || v > MAX_QD)
				goto bad;
			o.qd = (uint32_t)v;
			break;
		case 't':
			o.runtime_s = strtod(optarg, &end);
			if (end == optarg || (*end && strcmp(end, "s")) || !(o.runtime_s > 0))
				goto bad;
			break;
		case 's':
			if (parse_size(optarg, &o.size))
				goto bad;
			break;
		case 'S':
			if (parse_size(optarg, &o.seed))
				goto bad;
			break;
		case 'm':
			if (parse_size(optarg, &v) || v > 100)
				goto bad;
			o.rwmix_read = (uint32_t)v;
			break;
		case 'V': o.verify = false; break;
		case 'j': json = true; break;
		case 'p': plot = optarg; break;
		case 'Q': o.quiet = true; break;
		case 'R': o.read_only = true; break;
		case 'D': o.dsync = true; break;
		case 'h': return floor_usage(stdout);
		default:  return floor_usage(stderr);
		}
	}
	if (!o.path || optind != argc)
		return floor_usage(stderr);
	if (o.bs < 512 || o.bs % 512) {
		fprintf(stderr, "floor: --bs must be a multiple of 512\n");
		return 2;
	}

	r = malloc(sizeof(*r));
	if (!r)
		return 1;
	err = wf_floor_run(&o, r);
	if (err && err != -EILSEQ) {
		fprintf(stderr, "floor: %s\n", strerror(-err));
		free(r);
		return 1;
	}
	if (json) {
		struct wf_json j;

		wf_json_init(&j, stdout, true);
		wf_floor_json(&j, NULL, &o, r);
		wf_json_finish(&j);
	} else {
		wf_floor_print(stdout, &o, r);
	}
	if (plot) {
		char name[64], title[128];
		int perr;

		snprintf(name, sizeof(name), "floor-%s-qd%u", wf_rw_name(o.rw), o.qd);
		snprintf(title, sizeof(title), "raw device floor: %s %u B QD%u",
			 wf_rw_name(o.rw), o.bs, o.qd);
		perr = wf_plot_latency(&r->lat, plot, name, title);
		if (perr)
			fprintf(stderr, "floor: plot in %s: %s%s\n", plot, strerror(-perr),
				perr == -ENOENT ? " (install gnuplot-nox)" : "");
		else if (!json)
			fprintf(stdout, "  plots: %s/%s-cdf.svg %s/%s-hist.svg\n",
				plot, name, plot, name);
		if (perr && !err)
			err = perr;
	}
	free(r);
	return err ? 1 : 0;
bad:
	fprintf(stderr, "floor: bad value for --%s: %s\n", lopts[idx].name, optarg);
	return floor_usage(stderr);
}
