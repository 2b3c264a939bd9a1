/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control socket (proto/ctl.h): status, short-circuit setup
 * (device fd + index memfd over SCM_RIGHTS) and map reload.  Served by the
 * reactor between data-path turns; every call is non-blocking, and a
 * client that does not read its answers is dropped.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto/ctl.h"
#include "target/target.h"

int wf_tgt_ctl_probe(struct wf_tgt_reactor *r)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, n, ret = 0;

	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/target-%u.ctl",
		     r->cfg->run_dir, r->cfg->id);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		return 0;       /* wf_tgt_ctl_open reports it */
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		ret = -EADDRINUSE;
	close(fd);
	return ret;
}

int wf_tgt_ctl_open(struct wf_tgt_reactor *r)
{
	struct wf_tgt_ctl *c = &r->ctl;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = WF_TGT_EV_CTL };
	struct stat a, b;
	int n, ret;

	n = snprintf(c->path, sizeof(c->path), "%s/target-%u.ctl",
		     r->cfg->run_dir, r->cfg->id);
	if (n < 0 || (size_t)n >= sizeof(c->path) || (size_t)n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, c->path, (size_t)n + 1);

	/* Short-circuit readers get their own read-only descriptor of the
	 * same file, never the store's read-write one. */
	c->dev_ro = open(r->map->map.targets[r->map->self].device,
			 O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (c->dev_ro >= 0 && (fstat(c->dev_ro, &a) ||
			       fstat(wf_store_dev_fd(r->store), &b) ||
			       a.st_dev != b.st_dev || a.st_ino != b.st_ino ||
			       a.st_rdev != b.st_rdev)) {
		close(c->dev_ro);
		c->dev_ro = -1;
	}
	if (c->dev_ro < 0)
		wf_tgt_logl(WF_TGT_LOG_WARNING, "short-circuit reads disabled: cannot reopen the device "
			   "read-only");

	c->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->lfd < 0)
		return -errno;
	unlink(c->path);
	/* Bound under the process umask (027, main.c): nobody else can
	 * connect before the mode is set. */
	if (bind(c->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    (errno = -wf_tgt_sock_mode(r->cfg, c->path)) ||
	    listen(c->lfd, 16) || epoll_ctl(r->epfd, EPOLL_CTL_ADD, c->lfd, &e)) {
		ret = -errno;
		close(c->lfd);
		c->lfd = -1;
		return ret;
	}
	return 0;
}

int wf_tgt_sock_mode(const struct wf_tgt_cfg *cfg, const char *path)
{
	bool group = cfg->trust_gid != (gid_t)-1;

	if (group && chown(path, (uid_t)-1, cfg->trust_gid))
		return -errno;
	if (chmod(path, group ? 0660 : 0600))
		return -errno;
	return 0;
}

/*
 * Who may have the device fd (a short-circuit reader can read every
 * volume on the device) and ask for RELOAD: root, our own uid, and with
 * --trust-group a peer whose gid or supplementary groups include it.
 * STATUS is answered to anyone who can connect (it tells figures, changes
 * nothing).
 */
static bool peer_trusted(const struct wf_tgt_cfg *cfg, int fd, char *who,
			 size_t len)
{
	struct ucred cr;
	socklen_t l = sizeof(cr);
	gid_t groups[64];
	socklen_t gl = sizeof(groups);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l)) {
		snprintf(who, len, "unknown peer");
		return false;
	}
	snprintf(who, len, "pid %d uid %u gid %u", (int)cr.pid,
		 (unsigned)cr.uid, (unsigned)cr.gid);
	if (cr.uid == 0 || cr.uid == geteuid())
		return true;
	if (cfg->trust_gid == (gid_t)-1)
		return false;
	if (cr.gid == cfg->trust_gid)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &gl))
		return false;
	for (size_t i = 0; i < gl / sizeof(gid_t); i++)
		if (groups[i] == cfg->trust_gid)
			return true;
	return false;
}

static void drop(struct wf_tgt_reactor *r, unsigned i)
{
	epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->ctl.cfd[i], NULL);
	close(r->ctl.cfd[i]);
	r->ctl.cfd[i] = -1;
	r->ctl.full_logged = false;
}

void wf_tgt_ctl_close(struct wf_tgt_reactor *r)
{
	struct wf_tgt_ctl *c = &r->ctl;

	for (unsigned i = 0; i < WF_TGT_CTL_CLIENTS; i++)
		if (c->cfd[i] >= 0)
			drop(r, i);
	if (c->lfd >= 0) {
		close(c->lfd);
		unlink(c->path);
		c->lfd = -1;
	}
	if (c->dev_ro >= 0)
		close(c->dev_ro);
	c->dev_ro = -1;
}

void wf_tgt_fill_status(struct wf_tgt_reactor *r, uint16_t op, int result,
			struct wf_ctl_status *s)
{
	struct wf_store_stat st;
	uint64_t reads = 0, writes = 0, errors = 0, rbytes = 0, rleft = 0;
	uint64_t rlogt = 0, rfullt = 0, rlogb = 0, rfullb = 0;
	uint32_t rlogp = 0, rfullp = 0;
	uint64_t rdone = UINT64_MAX, sbytes = 0, smis = 0, srep = 0, serr = 0;
	uint64_t fua = 0, flushes = 0, lg = 0, lr = 0, ru = 0, wh = 0, ls = 0;
	uint64_t rs = 0, rr = 0, hr = 0, wr = 0, rbleft = 0;
	uint32_t conns = 0, inflight = 0, rpgs = 0, rdeg = 0, sdone = 0;
	uint32_t sgen = r->t ? __atomic_load_n(&r->t->scrub_gen, __ATOMIC_ACQUIRE) : 0;
	bool sall = true;
	struct wf_fab_counts fc;

	/* The whole target: every reactor's counters (each written by its
	 * own thread; atomic loads here), the store's shared allocator. */
	for (unsigned i = 0; i < r->t->n; i++) {
		const struct wf_tgt_reactor *o = r->t->r[i];

		if (!o)
			continue;
		reads += WF_TGT_GET(o->stats.reads);
		writes += WF_TGT_GET(o->stats.writes);
		errors += WF_TGT_GET(o->stats.errors);
		fua += WF_TGT_GET(o->stats.fua_writes);
		flushes += WF_TGT_GET(o->stats.flushes);
		lg += WF_TGT_GET(o->stats.lease_granted);
		lr += WF_TGT_GET(o->stats.lease_refused);
		ru += WF_TGT_GET(o->stats.reads_unleased);
		wh += WF_TGT_GET(o->stats.writes_held);
		ls += WF_TGT_GET(o->stats.lease_sends);
		rs += WF_TGT_GET(o->stats.releases_sent);
		rr += WF_TGT_GET(o->stats.releases_received);
		hr += WF_TGT_GET(o->stats.holds_released);
		wr += WF_TGT_GET(o->stats.writes_released);
		conns += WF_TGT_GET(o->nconns);
		inflight += WF_TGT_GET(o->store_inflight);
		/* Another reactor's: plain loads of counters it writes (a
		 * status is a snapshot; torn 64-bit loads do not happen on
		 * the 64-bit hosts weft runs on). */
		if (__atomic_load_n(&o->rec.done_epoch, __ATOMIC_RELAXED) < rdone)
			rdone = __atomic_load_n(&o->rec.done_epoch, __ATOMIC_RELAXED);
		/* Every reactor counts the same PGs (by PG, not by the
		 * extents it owns): the largest, not the sum. */
		if (__atomic_load_n(&o->rec.active, __ATOMIC_RELAXED)) {
			uint32_t p = __atomic_load_n(&o->rec.pgs, __ATOMIC_RELAXED);

			rpgs = p > rpgs ? p : rpgs;
			rleft += __atomic_load_n(&o->rec.left, __ATOMIC_RELAXED);
			rbleft += __atomic_load_n(&o->rec.bytes_left, __ATOMIC_RELAXED);
		}
		rdeg = __atomic_load_n(&o->rec.degraded, __ATOMIC_RELAXED);
		rbytes += __atomic_load_n(&o->rec.bytes, __ATOMIC_RELAXED);
		if (__atomic_load_n(&o->rec.active, __ATOMIC_RELAXED)) {
			rlogp += __atomic_load_n(&o->rec.log_pgs, __ATOMIC_RELAXED);
			rfullp += __atomic_load_n(&o->rec.full_pgs, __ATOMIC_RELAXED);
		}
		rlogt += WF_TGT_GET(o->rec.log_total);
		rfullt += WF_TGT_GET(o->rec.full_total);
		rlogb += WF_TGT_GET(o->rec.log_bytes);
		rfullb += WF_TGT_GET(o->rec.full_bytes);
		/* The scrub is done when every reactor finished the pass
		 * asked last (a reactor that has not seen it yet is not). */
		if (__atomic_load_n(&o->scrub.done_gen, __ATOMIC_RELAXED) != sgen)
			sall = false;
		sbytes += __atomic_load_n(&o->scrub.bytes, __ATOMIC_RELAXED);
		smis += __atomic_load_n(&o->scrub.mismatches, __ATOMIC_RELAXED);
		srep += __atomic_load_n(&o->scrub.repaired, __ATOMIC_RELAXED);
		serr += __atomic_load_n(&o->scrub.errors, __ATOMIC_RELAXED);
	}
	sdone = sall ? sgen : sgen - 1;
	memset(&fc, 0, sizeof(fc));
	for (unsigned i = 0; i < r->t->n; i++) {
		const struct wf_tgt_reactor *o = r->t->r[i];

		for (unsigned f = 0; o && f < o->nfab; f++) {
			struct wf_fab_counts k;

			wf_ctx_counts(o->fab[f].ctx, &k);
			fc.sends += k.sends;
			fc.writes += k.writes;
			fc.reads += k.reads;
			fc.recvs += k.recvs;
			fc.cqes += k.cqes;
		}
	}
	wf_store_stat(r->store, &st);
	memset(s, 0, sizeof(*s));
	s->magic = htole32(WF_CTL_MAGIC);
	s->version = htole16(WF_CTL_STATUS_VERSION);
	s->op = htole16(op);
	s->result = (int32_t)htole32((uint32_t)result);
	s->target_id = htole32(r->cfg->id);
	s->cluster_id = htole64(st.cluster_id);
	s->epoch = htole64(r->map->epoch);
	s->extents = htole64(st.extents);
	s->used = htole64(st.used);
	s->free = htole64(st.free);
	s->extent_size = htole32(st.extent_size);
	s->connections = htole32(conns);
	s->max_conns = htole32(r->cfg->max_conns * r->t->n);
	s->slots = htole32(r->cfg->slots);
	s->slot_size = htole32(r->cfg->slot_size);
	s->inflight = htole32(inflight);
	s->reads = htole64(reads);
	s->writes = htole64(writes);
	s->errors = htole64(errors);
	s->recovered_epoch = htole64(rdone == UINT64_MAX ? 0 : rdone);
	s->pgs_recovering = htole32(rpgs);
	s->pgs_degraded = htole32(rdeg);
	s->recovery_bytes = htole64(rbytes);
	s->recovery_left = htole64(rleft);
	s->recovery_log_pgs = htole32(rlogp);
	s->recovery_full_pgs = htole32(rfullp);
	s->recovery_log_total = htole64(rlogt);
	s->recovery_full_total = htole64(rfullt);
	s->recovery_log_bytes = htole64(rlogb);
	s->recovery_full_bytes = htole64(rfullb);
	s->fua_writes = htole64(fua);
	s->flushes = htole64(flushes);
	s->scrub_gen = htole32(sgen);
	s->scrub_done = htole32(sdone);
	s->scrub_bytes = htole64(sbytes);
	s->scrub_mismatches = htole64(smis);
	s->scrub_repaired = htole64(srep);
	s->scrub_errors = htole64(serr);
	s->fab_sends = htole64(fc.sends);
	s->fab_writes = htole64(fc.writes);
	s->fab_reads = htole64(fc.reads);
	s->fab_recvs = htole64(fc.recvs);
	s->fab_cqes = htole64(fc.cqes);
	/* Reactor 0's scan; another reactor reads it (relaxed). */
	s->reclaim_scans = htole32(__atomic_load_n(&r->t->r[0]->reclaim.scans,
						   __ATOMIC_ACQUIRE));
	s->reclaimed = htole64(__atomic_load_n(&r->t->r[0]->reclaim.dropped,
					       __ATOMIC_RELAXED));
	s->etcd = htole32(__atomic_load_n(&r->t->etcd_state, __ATOMIC_RELAXED));
	s->uptime_ms = htole64((wf_tgt_now_ns() - r->started_ns) / 1000000);
	s->leases_granted = htole64(lg);
	s->leases_refused = htole64(lr);
	s->reads_unleased = htole64(ru);
	s->writes_held = htole64(wh);
	s->lease_sends = htole64(ls);
	s->releases_sent = htole64(rs);
	s->releases_received = htole64(rr);
	s->holds_released = htole64(hr);
	s->writes_released = htole64(wr);
	s->recovery_bytes_left = htole64(rbleft);
}

/* VOLUME_USAGE: the extents of volume vid this target holds, counted by
 * a scan of the index (lock-free looks, as the reclaimer's: O(extents) on
 * the reactor's thread, a few ms for millions of extents; an operator's
 * command, not the data path). */
static int answer_usage(struct wf_tgt_reactor *r, int fd, uint16_t ver,
			uint64_t vid)
{
	struct wf_ctl_volume_usage a;
	uint64_t n = 0, vol;
	uint32_t ext;
	int k;

	for (uint32_t phys = 0;
	     (k = wf_store_extent_at(r->store, phys, &vol, &ext)) >= 0; phys++)
		n += k == 1 && vol == vid;
	memset(&a, 0, sizeof(a));
	a.magic = htole32(WF_CTL_MAGIC);
	a.version = htole16(ver);
	a.op = htole16(WF_CTL_VOLUME_USAGE);
	a.result = (int32_t)htole32((uint32_t)(vid ? 0 : -EINVAL));
	a.target_id = htole32(r->cfg->id);
	a.cluster_id = htole64(r->st0.cluster_id);
	a.epoch = htole64(r->map->epoch);
	a.volume_id = htole64(vid);
	a.extents = htole64(n);
	a.extent_size = htole32(r->st0.extent_size);
	return send(fd, &a, sizeof(a), MSG_DONTWAIT | MSG_NOSIGNAL) == sizeof(a) ? 0 : -1;
}

/* The device and index fds, or (refused) result alone. */
static int answer_sc(struct wf_tgt_reactor *r, int fd, uint16_t ver, int refused)
{
	struct wf_ctl_shortcircuit a;
	const struct wf_view_hdr *vh;
	struct wf_view v;
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = &a, .iov_len = sizeof(a) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fds[2] = { r->ctl.dev_ro, wf_store_index_fd(r->store) };
	int result = refused;
	uint64_t data_off = 0;

	if (!result && (fds[0] < 0 || fds[1] < 0))
		result = -EOPNOTSUPP;
	if (!result && !wf_view_open(fds[1], &v)) {
		vh = v.hdr;
		data_off = vh->data_off;
		wf_view_close(&v);
	} else if (!result) {
		result = -EIO;
	}
	memset(&a, 0, sizeof(a));
	a.magic = htole32(WF_CTL_MAGIC);
	a.version = htole16(ver);
	a.op = htole16(WF_CTL_SHORTCIRCUIT);
	a.result = (int32_t)htole32((uint32_t)result);
	a.target_id = htole32(r->cfg->id);
	a.cluster_id = htole64(r->st0.cluster_id);
	a.epoch = htole64(r->map->epoch);
	a.data_off = htole64(data_off);
	a.extent_size = htole32(r->st0.extent_size);
	if (!result) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(fds));
		memcpy(CMSG_DATA(cm), fds, sizeof(fds));
	}
	return sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == sizeof(a) ? 0 : -1;
}

/* WF_CTL_SCRUB: every reactor starts a pass (scrub.c). */
static int scrub_ask(struct wf_tgt_reactor *r, uint64_t vol, uint64_t flags)
{
	struct wf_tgt *t = r->t;

	if (flags & ~(uint64_t)WF_CTL_SCRUB_REPAIR)
		return -EINVAL;
	if (vol && wf_tgt_map_volume(r->map, vol) < 0)
		return -ENOENT;
	if (!t)
		return -EOPNOTSUPP;
	__atomic_store_n(&t->scrub_vol, vol, __ATOMIC_RELAXED);
	__atomic_store_n(&t->scrub_flags, (uint32_t)flags, __ATOMIC_RELAXED);
	__atomic_add_fetch(&t->scrub_gen, 1, __ATOMIC_RELEASE);
	wf_tgt_wake_all(t, r);
	wf_tgt_scrub_poll(r);
	return 0;
}

/*
 * A key on the control socket (docs/security.md): a peer may prove one
 * before its request, as on a data connection (the transcript's cluster
 * id is 0 here: the socket is this host's, its path names the target).
 * Where keys are required, a peer that is not trusted by its credentials
 * must; a key offered is always checked.  Returns false when the session
 * was dropped.
 */
static bool ctl_auth(struct wf_tgt_reactor *r, unsigned i, const void *msg,
		     size_t len)
{
	struct wf_tgt_ctl *c = &r->ctl;
	struct wf_auth_hdr h;
	struct wf_auth a;
	char why[160], who[80];
	int ret;

	if (wf_auth_decode(msg, len, &a, NULL) ||
	    a.step != (c->auth[i] == 0 ? WF_AUTH_OFFER : WF_AUTH_PROOF) ||
	    c->auth[i] == 2) {
		wf_tgt_logl(WF_TGT_LOG_WARNING, "control: bad AUTH message, "
			    "dropping the client");
		drop(r, i);
		return false;
	}
	ret = a.step == WF_AUTH_OFFER ?
	      wf_tgt_auth_offer(r, &a, 0, &c->ax[i], &h, why, sizeof(why)) :
	      wf_tgt_auth_proof(r, &c->ax[i], &a, &h, why, sizeof(why));
	if (ret != -EIO &&
	    send(c->cfd[i], &h, sizeof(h), MSG_DONTWAIT | MSG_NOSIGNAL) != sizeof(h) &&
	    !ret)
		ret = -EPIPE;
	if (ret) {
		peer_trusted(r->cfg, c->cfd[i], who, sizeof(who));
		wf_tgt_log("control: %s: authentication refused: %s", who,
			   ret == -EACCES ? why : "cannot answer");
		r->stats.auth_refused += ret == -EACCES;
		explicit_bzero(&c->ax[i], sizeof(c->ax[i]));
		drop(r, i);
		return false;
	}
	c->auth[i] = a.step == WF_AUTH_OFFER ? 1 : 2;
	if (c->auth[i] == 2) {
		explicit_bzero(&c->ax[i], sizeof(c->ax[i]));
		r->stats.auth_ok++;
	}
	return true;
}

static void serve(struct wf_tgt_reactor *r, unsigned i)
{
	int fd = r->ctl.cfd[i];
	union {
		struct wf_ctl_req req;
		struct wf_auth_hdr auth;
	} m;
	struct wf_ctl_req q;
	struct wf_ctl_status s;
	ssize_t n;
	uint16_t op;
	int result = 0;
	bool bare = false;

	n = recv(fd, &m, sizeof(m), MSG_DONTWAIT | MSG_TRUNC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0 && (size_t)n <= sizeof(m) && wf_wire_peek(&m, (size_t)n, NULL) ==
	    WF_OP_AUTH) {
		ctl_auth(r, i, &m, (size_t)n);
		return;
	}
	if (n == 0 && r->ctl.auth[i] == 1) {
		char who[80];

		peer_trusted(r->cfg, fd, who, sizeof(who));
		wf_tgt_log("control: %s: authentication abandoned by the peer "
			   "after our CHALLENGE: key %s differs between it and "
			   "this target's keyring", who, r->ctl.ax[i].name);
		r->stats.auth_refused++;
		explicit_bzero(&r->ctl.ax[i], sizeof(r->ctl.ax[i]));
	}
	if (n <= 0 || wf_ctl_req_decode(&m.req, (size_t)n, &q)) {
		if (n > 0)
			wf_tgt_logl(WF_TGT_LOG_WARNING, "control: malformed request, "
				    "dropping the client");
		drop(r, i);
		return;
	}
	op = q.op;
	/* Keys required: a key proved, or a peer trusted by its credentials
	 * (who may have the device fd anyway); a half-done exchange never. */
	if (r->ctl.auth[i] == 1 || (r->ctl.auth[i] != 2 && !r->ctl.trusted[i] &&
				    wf_tgt_auth_required(r))) {
		char who[80];

		peer_trusted(r->cfg, fd, who, sizeof(who));
		wf_tgt_log("control: %s: authentication refused: %s", who,
			   r->ctl.auth[i] == 1 ? "a request before the "
			   "authentication finished" : "no key offered and not "
			   "a trusted local peer");
		r->stats.auth_refused++;
		result = -EACCES;
		if (op == WF_CTL_SHORTCIRCUIT) {
			answer_sc(r, fd, q.version, result);
			drop(r, i);
			return;
		}
		op = WF_CTL_STATUS;     /* answered with the refusal only */
		bare = true;
	}
	/* Figures for anyone who can connect; the device fd, RELOAD and
	 * SCRUB (which rewrites members) for the trusted only. */
	if (op != WF_CTL_STATUS && op != WF_CTL_VOLUME_USAGE && !r->ctl.trusted[i]) {
		char who[80];

		peer_trusted(r->cfg, fd, who, sizeof(who));
		wf_tgt_log("control: %s refused to %s (trusted: root, uid %u%s)",
			   op == WF_CTL_SHORTCIRCUIT ? "the device fd" :
			   op == WF_CTL_RELOAD ? "RELOAD" : op == WF_CTL_SCRUB ?
			   "SCRUB" : "an unknown request",
			   who, (unsigned)geteuid(), r->cfg->trust_gid != (gid_t)-1 ?
			   " and --trust-group" : "");
		result = -EACCES;
	}
	switch (op) {
	case WF_CTL_SHORTCIRCUIT:
		/* Refused: answered, then dropped (one log line a session). */
		if (answer_sc(r, fd, q.version, result) || result)
			drop(r, i);
		return;
	case WF_CTL_VOLUME_USAGE:
		if (q.version < 3)
			result = -EPROTO;       /* not an op of version 2 */
		else if (answer_usage(r, fd, q.version, q.arg))
			drop(r, i);
		if (!result)
			return;
		break;
	case WF_CTL_RELOAD:
		if (!result)
			result = wf_tgt_reload_all(r, "control RELOAD");
		break;
	case WF_CTL_STATUS:
		break;
	case WF_CTL_SCRUB:
		if (!result)
			result = q.version < 4 ? -EPROTO : scrub_ask(r, q.arg, q.arg2);
		break;
	default:
		result = -EPROTO;
		break;
	}
	if (q.epoch > r->map->epoch && op == WF_CTL_STATUS)
		wf_tgt_reload(r, "control request with a newer epoch");
	wf_tgt_fill_status(r, op, result, &s);
	if (bare) {
		/* No figures for a peer that may not have them. */
		struct wf_ctl_status z;

		memset(&z, 0, sizeof(z));
		z.magic = s.magic;
		z.op = htole16(q.op);
		z.result = s.result;
		s = z;
	}
	/* Answered in the asker's version: versions 2 and 3 get their
	 * layout, the first WF_CTL_STATUS_V2_SIZE bytes. */
	s.version = htole16(q.version);
	if (send(fd, &s, wf_ctl_status_size(q.version), MSG_DONTWAIT | MSG_NOSIGNAL) !=
	    (ssize_t)wf_ctl_status_size(q.version) || result == -EACCES)
		drop(r, i);
}

void wf_tgt_ctl_event(struct wf_tgt_reactor *r, uint64_t ev)
{
	struct epoll_event e = { .events = EPOLLIN };
	unsigned i;
	int fd;

	if (ev > WF_TGT_EV_CTL) {
		i = (unsigned)(ev - WF_TGT_EV_CTL - 1);
		if (i < WF_TGT_CTL_CLIENTS && r->ctl.cfd[i] >= 0)
			serve(r, i);
		return;
	}
	while ((fd = accept4(r->ctl.lfd, NULL, NULL,
			     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		for (i = 0; i < WF_TGT_CTL_CLIENTS; i++)
			if (r->ctl.cfd[i] < 0)
				break;
		e.data.u64 = WF_TGT_EV_CTL + 1 + i;
		if (i == WF_TGT_CTL_CLIENTS && !r->ctl.full_logged) {
			wf_tgt_log("control socket: all %u sessions in use; new "
				   "local clients read through the network",
				   WF_TGT_CTL_CLIENTS);
			r->ctl.full_logged = true;
		}
		if (i == WF_TGT_CTL_CLIENTS ||
		    epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &e)) {
			close(fd);      /* full: the client sees EOF */
			continue;
		}
		r->ctl.cfd[i] = fd;
		r->ctl.auth[i] = 0;
		{
			char who[80];

			r->ctl.trusted[i] = peer_trusted(r->cfg, fd, who,
							 sizeof(who));
		}
	}
}

/* ---- STATUS over a data connection ------------------------------- */

/* STATUS over the data connection: answered directly, holds no slot. */
void wf_tgt_conn_on_status(struct wf_tgt_conn *c, const void *msg, uint32_t len)
{
	struct wf_tgt_reactor *r = c->r;
	struct wf_net_status_req q;

	if (len != sizeof(q)) {
		wf_tgt_conn_close(c, "bad STATUS");
		return;
	}
	memcpy(&q, msg, sizeof(q));
	if (q.flags || q.reserved0 || q.reserved1) {
		wf_tgt_conn_close(c, "bad STATUS");
		return;
	}
	if (le64toh(q.epoch) > r->map->epoch) {
		uint64_t now = wf_tgt_now_ns();

		if (now - r->last_reload > 100000000ull) {
			r->last_reload = now;
			wf_tgt_reload(r, "STATUS with a newer epoch");
		}
	}
	wf_tgt_conn_status_reply(c, le64toh(q.tag), WF_WS_OK);
}

void wf_tgt_conn_status_reply(struct wf_tgt_conn *c, uint64_t tag, uint16_t status)
{
	struct wf_net_status_reply a;

	memset(&a, 0, sizeof(a));
	a.magic = htole16(WF_WIRE_MAGIC);
	a.version = WF_WIRE_VERSION;
	a.opcode = WF_OP_STATUS_REPLY;
	a.status = htole16(status);
	a.tag = htole64(tag);
	/* Figures only for peers that may have them. */
	if ((status & ~(uint32_t)WF_WS_DNR) != WF_WS_AUTH)
		wf_tgt_fill_status(c->r, WF_CTL_STATUS, 0, &a.body);
	if (wf_send(c->ep, &a, sizeof(a), WR_ERRREPLY))
		wf_tgt_conn_close(c, "no send credit for a STATUS reply");
	else
		c->sends_out++;
}
