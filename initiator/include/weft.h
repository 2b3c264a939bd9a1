/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libweft: the weft initiator library.
 *
 * An application opens a cluster from a map file, opens volumes by name,
 * and reads and writes them.  The library computes where every extent lives
 * from the map (no metadata server on the data path), talks to the targets
 * over the fabric (tcp, unix or verbs), and reads extents whose clean replica
 * is on this host straight from the device (short-circuit reads).
 *
 * Threads: a struct weft_cluster and the volumes opened from it belong to
 * one thread at a time (no locks inside).  Open one cluster handle per
 * thread that does I/O.
 *
 * Errors: every function that can fail returns a negative errno value
 * (-EINVAL, -ENOMEM, ...) and 0 or a non-negative count on success.
 * Completions carry the same convention in struct weft_cqe.res.
 *
 * Asynchronous I/O, liburing style:
 *
 *	weft_read(vol, buf, len, off, user_data);     queue requests
 *	weft_write(vol, buf, len, off, 0, user_data);
 *	n = weft_wait(cl, cqes, 1, 64, -1);            reap completions
 *
 * or sleep on weft_fd(cl) in the application's own loop and call
 * weft_poll() when it is readable.  The synchronous calls (weft_pread ...)
 * are built on the same machinery and must not be mixed with outstanding
 * asynchronous requests on the same cluster handle.
 */
#ifndef WEFT_H
#define WEFT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 2

struct weft_cluster;
struct weft_volume;

/* Log levels (syslog's numbers). */
enum {
	WEFT_LOG_ERR     = 3,     /* a request or a connection failed */
	WEFT_LOG_WARNING = 4,     /* something degraded: a peer misbehaved, a
	                           * fallback was taken */
	WEFT_LOG_INFO    = 6,     /* a map epoch change */
	WEFT_LOG_DEBUG   = 7,
};

/*
 * The library never writes to stderr: each event is one line (no newline)
 * passed to this function, called from inside a libweft call on the
 * handle's thread.  level is a WEFT_LOG_* value.
 */
typedef void (*weft_log_fn)(void *arg, int level, const char *msg);

/*
 * Options grow at the end only: set .size = sizeof(opts) (zero what you do
 * not set).  The library reads no environment variable: tools that want
 * one map it onto these fields.
 */
struct weft_cluster_opts {
	size_t      size;
	const char *map_path;     /* cluster map (libconfig), required */
	const char *transport;    /* "tcp" (default), "unix" or "verbs" (also
	                           * accepted as "rdma") */
	unsigned    queue_depth;  /* most requests in flight (0: 128) */
	unsigned    timeout_ms;   /* a request no acting replica answered in
	                           * this long fails with -ETIMEDOUT (0: 10000) */
	unsigned    flags;        /* WEFT_F_* */
	/* Since 0.2: */
	weft_log_fn log;          /* NULL: silent */
	void       *log_arg;
	int         log_level;    /* most verbose level passed to log (0:
	                           * WEFT_LOG_WARNING) */
	const char *run_dir;      /* the local targets' control sockets, for
	                           * short-circuit reads and the unix
	                           * transport (NULL: "/run/weft") */
	const char *host;         /* this host's name in the map (NULL: the
	                           * kernel's host name) */
	unsigned    spin_us;      /* weft_wait busy-polls this long before it
	                           * sleeps, at any depth (0, the default:
	                           * adaptive, see WEFT_F_NO_SPIN) */
	size_t      buf_arena;    /* bytes weft_buf_alloc can hand out (0:
	                           * 64 MiB), registered once at open */
	/* Appended after 0.2: the key the handle proves it holds at every
	 * connect, and checks each target holds (docs/security.md).  key_name
	 * NULL: no key (a target that requires keys refuses the connection
	 * and requests to it fail with -EACCES, the log says why; one whose
	 * limits per key the key has used up refuses it too, and requests
	 * to it fail with -EDQUOT until a later connect gets in).  key: the
	 * 32-byte secret; NULL: read from the keyring file named (mode
	 * 0600, "NAME HEX" lines: weftctl key create|export). */
	const char *key_name;
	const unsigned char *key;
	const char *keyring;
};

enum {
	WEFT_F_NO_SHORT_CIRCUIT = 1u << 0, /* always read through the target */
	/*
	 * Requests queued by weft_read/write/discard/flush leave at the next
	 * weft_submit(), weft_poll() or weft_wait() on the handle, so a batch
	 * of them costs one send per target connection and one io_uring_enter
	 * for its short-circuit reads.  Without it each call sends at once.
	 * With it, call weft_submit() before sleeping on weft_fd().
	 */
	WEFT_F_DEFER_SEND       = 1u << 1,
	/*
	 * Added after 0.2.  weft_wait never busy-polls: it sleeps on the fd at
	 * once (what spin_us = 0 meant in 0.2).  Without it and with
	 * spin_us = 0 (a zeroed field means "not set", as for every
	 * option), weft_wait polls adaptively: it spins before sleeping
	 * only while 1 to 4 requests are in flight and the handle's running
	 * estimate of a request's latency (an average of the recent
	 * completions, reads and writes, each counted at most 1 ms) is at
	 * most 200 us and none of the last 128 completions took 1 ms or
	 * more (a sign of an oversubscribed CPU), and then for at most
	 * twice that estimate; at higher depth, or with slow replies, it
	 * sleeps at once; and when a spin
	 * finds its thread was off the CPU (30 us between two polls: the
	 * CPU is wanted elsewhere), it stops and skips spinning for the
	 * next 1, 2, 4 ... 256 waits that would spin.  It also keeps the
	 * average latency of the requests reaped by waits that chose to
	 * spin and by waits that chose to sleep, and spins only while
	 * spinning is not the slower (1 in 16 of those waits tries the
	 * other choice, to follow the machine's load).  At queue depth 1
	 * this takes about one core of the caller's thread while a request
	 * is out and saves the wake-up (tens of us).  spin_us > 0 overrides
	 * both: spin that long at every wait.  Setting this flag with
	 * spin_us > 0 is -EINVAL.  docs/performance.md, "Adaptive polling".
	 */
	WEFT_F_NO_SPIN          = 1u << 2,
};

/*
 * Open a cluster handle: load and validate the map, build the placement
 * table.  Connections to targets are made on first use.  Returns 0 and
 * *out, or -errno (-ENOENT: no map file; -EINVAL: the map or an option is
 * invalid; the reason goes to opts->log).  Free with weft_cluster_close().
 */
int  weft_cluster_open(const struct weft_cluster_opts *opts,
		       struct weft_cluster **out);
/* Close every volume and connection of the handle, then free it.
 * Outstanding requests complete with -ECANCELED first (not reported). */
void weft_cluster_close(struct weft_cluster *cl);

/* Open a volume by name (-ENOENT if the map has none).  The handle stays
 * valid until weft_volume_close() or weft_cluster_close(). */
int  weft_volume_open(struct weft_cluster *cl, const char *name,
		      struct weft_volume **out);
void weft_volume_close(struct weft_volume *vol);
uint64_t weft_volume_size(const struct weft_volume *vol);
/* Offsets and lengths must be multiples of this (4096). */
uint32_t weft_volume_block_size(const struct weft_volume *vol);

/*
 * What the handle has done since it was opened.  Request counts are of
 * requests accepted by weft_read/write/discard/flush (and their
 * synchronous forms); fabric counts are every operation the handle posted
 * or reaped on its fabric context (sends of request headers, one-sided
 * writes of payloads, completions), so per I/O they are exact costs
 * (docs/performance.md, "Counts").  Call from the handle's thread.
 */
#define WEFT_STATS_LAT_BUCKETS 14

struct weft_stats {
	size_t   size;                  /* set to sizeof(struct weft_stats) */
	uint64_t reads, writes, flushes, discards;
	uint64_t read_bytes, write_bytes;
	uint64_t errors;                /* completions with res < 0 */
	uint64_t retries;               /* pieces sent again (map change,
	                                 * reconnect, busy target) */
	uint64_t reconnects;            /* connections made again */
	uint64_t sc_reads;              /* pieces read short-circuit */
	uint64_t fabric_sends, fabric_writes, fabric_reads;
	uint64_t fabric_recvs, fabric_cqes;
	/* Appended in 0.2 (a caller's smaller size gets the fields above):
	 * requests in flight, connections up, the map epoch, and the time
	 * from submission to completion of reads and writes in
	 * WEFT_STATS_LAT_BUCKETS buckets (not cumulative) whose upper bounds
	 * are 10, 25, 50, 100, 250, 500 us, 1, 2.5, 5, 10, 25, 100 ms, 1 s and
	 * +infinity, with the sum of the times in ns (the target's metrics
	 * use the same bounds, docs/target.md). */
	uint32_t inflight;
	uint32_t connections;
	uint64_t map_epoch;
	uint64_t read_latency[WEFT_STATS_LAT_BUCKETS];
	uint64_t write_latency[WEFT_STATS_LAT_BUCKETS];
	uint64_t read_latency_ns, write_latency_ns;
	/* Appended after 0.2: weft_wait's polling (WEFT_F_NO_SPIN).  spins:
	 * waits that busy-polled before sleeping; spin_hits: those of them
	 * whose polling found a completion (the others slept after the
	 * budget); spin_ns: time spent polling; spin_est_us: the current
	 * latency estimate the adaptive rule uses (0: no completion yet). */
	uint64_t spins, spin_hits, spin_ns;
	uint32_t spin_est_us;
	/* Appended after 0.2, why waits did not spin or stopped: spin_gaps:
	 * spinning turns that found the thread had been off its CPU for
	 * longer than a hand-off (150 us; the adaptive rule then stops, a
	 * fixed spin_us goes on); spin_skips: waits the rule let choose that
	 * a back-off kept from spinning; spin_declined: ... that slept
	 * because spinning scored slower (or as the probe of the other
	 * choice). */
	uint64_t spin_gaps, spin_skips, spin_declined;
};

/* Fill *st (st->size set by the caller; a smaller struct of an older
 * header gets its fields only).  0, or -EINVAL. */
int  weft_stats(struct weft_cluster *cl, struct weft_stats *st);

/*
 * Buffers registered with the fabric: I/O from and into them is zero-copy.
 * Other buffers work too, through a registered bounce pool (one copy).
 * Returns page-aligned memory of at least len bytes, or NULL.
 */
void *weft_buf_alloc(struct weft_cluster *cl, size_t len);
void  weft_buf_free(struct weft_cluster *cl, void *buf);

/* Request flags. */
enum {
	WEFT_FUA = 1u << 0,       /* write: durable before it completes, also
	                           * on devices with a volatile cache */
};

/* A completion: the request's user_data and its result: bytes transferred
 * (read, write, discard), 0 (flush), or -errno. */
struct weft_cqe {
	uint64_t user_data;
	int64_t  res;
};

/*
 * Queue a request.  off and len must be multiples of the block size, the
 * range inside the volume, len > 0; buf (read/write) must stay valid and
 * untouched until the completion.  Returns 0 when queued (one completion
 * follows), -EINVAL/-ERANGE for a bad request (no completion), -EAGAIN when
 * requests in flight plus completions not yet reaped reach queue_depth
 * (reap some first).
 */
int weft_read(struct weft_volume *vol, void *buf, size_t len, uint64_t off,
	      uint64_t user_data);
int weft_write(struct weft_volume *vol, const void *buf, size_t len,
	       uint64_t off, unsigned flags, uint64_t user_data);
/* Free the range: reads return zeros afterwards. */
int weft_discard(struct weft_volume *vol, uint64_t off, uint64_t len,
		 uint64_t user_data);
/*
 * Make every write completed before this call durable past volatile device
 * caches on every replica that holds it.  What a completed write promises
 * (docs/replication.md): it is on the device of every acting member of its
 * placement group (O_DIRECT completion on each; past a volatile cache with
 * WEFT_FUA or after a flush), so it survives the loss of up to replicas - 1
 * of them once the map marks them down.  A write to a placement group with
 * fewer acting members than the pool's min_size is retried until the
 * timeout and then fails with -EHOSTDOWN; it is never acknowledged with
 * fewer copies.  A write that needs a new extent on a member whose device
 * has none free fails at once with -ENOSPC (primary or secondary alike; not
 * retried); writes to extents every member already holds go on.  A failed
 * write may have reached some members: its blocks read back old or new.
 */
int weft_flush(struct weft_volume *vol, uint64_t user_data);

/* Send every request queued so far (see WEFT_F_DEFER_SEND; without that
 * flag there is never anything left to send).  Returns 0 or -errno. */
int weft_submit(struct weft_cluster *cl);
/* Reap up to max completions without blocking; returns the count. */
int weft_poll(struct weft_cluster *cl, struct weft_cqe *cqes, int max);
/* Reap at least min (up to max) completions, waiting up to timeout_ms
 * (-1: no limit).  Returns the count (may be < min on timeout) or -errno. */
int weft_wait(struct weft_cluster *cl, struct weft_cqe *cqes, int min,
	      int max, int timeout_ms);
/* An fd that is readable when weft_poll() may return something. */
int weft_fd(struct weft_cluster *cl);
/* Requests queued and not yet completed. */
unsigned weft_inflight(const struct weft_cluster *cl);

/* Synchronous calls: return len (bytes) or 0 (fsync) on success, -errno. */
ssize_t weft_pread(struct weft_volume *vol, void *buf, size_t len,
		   uint64_t off);
ssize_t weft_pwrite(struct weft_volume *vol, const void *buf, size_t len,
		    uint64_t off, unsigned flags);
int     weft_fsync(struct weft_volume *vol);
int     weft_discard_sync(struct weft_volume *vol, uint64_t off, uint64_t len);

/* Readable text of an error returned by libweft (like strerror). */
const char *weft_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
