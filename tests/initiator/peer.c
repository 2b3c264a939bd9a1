/* SPDX-License-Identifier: Apache-2.0 */
/* The in-test target of libweft's unit tests (see peer.h). */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "fabric/fabric.h"
#include "proto/wire.h"
#include "placement/map.h"
#include "placement/placement.h"
#include "tests/initiator/peer.h"

#define NVOL 2                  /* volume ids 1 (rep3) and 2 (rep1) */

struct pconn {
	struct pconn *next, *prev;
	struct peer *p;
	unsigned t;
	struct wf_ep *ep;
	char *ring;
	struct wf_mr *mr;
	uint32_t inflight;
	bool granted;
};

struct priv {
	struct wf_ctx *ctx;
	struct wf_listener *l[PEER_MAXT];
	uint8_t *img[PEER_MAXT][NVOL];
	struct wf_map map;
	struct wf_placer pl;
	struct wf_pg_table tab;
	int reload;
	struct pconn *all;
	struct wf_listener *old[8];
	unsigned nold;
	int move;                       /* 1 + target to move (peer thread) */
};

#define LD(x) __atomic_load_n(&(x), __ATOMIC_SEQ_CST)
#define ST(x, v) __atomic_store_n(&(x), (v), __ATOMIC_SEQ_CST)

static int take(int *knob)
{
	int v = LD(*knob);

	while (v > 0) {
		if (__atomic_compare_exchange_n(knob, &v, v - 1, false,
						__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			return 1;
	}
	return 0;
}

static void write_map(struct peer *p, uint64_t epoch)
{
	char tmp[320];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", p->map_path);
	f = fopen(tmp, "w");
	cr_assert(f);
	fprintf(f, "epoch = %llu;\ncluster_id = 7;\nextent_size = %u;\n"
		"targets = (\n", (unsigned long long)epoch, p->extent_size);
	for (unsigned t = 0; t < p->ntargets; t++)
		fprintf(f, "  { id = %u; host = \"peerhost\"; addr = \"127.0.0.1\"; "
			"port = %u; device = \"/nonexistent/%u\"; weight = 1.0; "
			"state = \"up,in\"; }%s\n", t, p->ports[t], t,
			t + 1 < p->ntargets ? "," : "");
	fprintf(f, ");\npools = (\n"
		"  { name = \"rep1\"; id = 2; replicas = 1; min_size = 1; "
		"failure_domain = \"device\"; pg_num = 64; }");
	if (p->ntargets >= 3)
		fprintf(f, ",\n  { name = \"rep3\"; id = 1; replicas = 3; "
			"min_size = 2; failure_domain = \"device\"; pg_num = 64; }");
	fprintf(f, "\n);\nvolumes = (\n"
		"  { name = \"vol1\"; id = 2; size = %llu; pool = \"rep1\"; }",
		(unsigned long long)p->vol_size);
	if (p->ntargets >= 3 && !p->no_vol3)
		fprintf(f, ",\n  { name = \"vol3\"; id = 1; size = %llu; "
			"pool = \"rep3\"; }", (unsigned long long)p->vol_size);
	fprintf(f, "\n);\n");
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(rename(tmp, p->map_path), 0);
}

static void load_map(struct peer *p)
{
	struct priv *pv = p->priv;
	struct wf_map_err err;

	if (pv->map.ntargets) {
		wf_pg_table_free(&pv->tab);
		wf_placer_free(&pv->pl);
		wf_map_free(&pv->map);
	}
	cr_assert_eq(wf_map_load(p->map_path, &pv->map, &err), 0, "%s", err.msg);
	cr_assert_eq(wf_placer_init(&pv->pl, &pv->map), 0);
	cr_assert_eq(wf_pg_table_build(&pv->tab, &pv->pl), 0);
	ST(p->epoch, pv->map.epoch);
}

static void reply(struct pconn *pc, const struct wf_req *r, uint16_t status,
		  uint32_t len, uint32_t slot)
{
	struct wf_reply rep = {
		.status = status, .tag = r->tag, .epoch = LD(pc->p->epoch),
		.length = len, .slot = slot,
	};
	struct wf_reply_hdr h;

	wf_reply_encode(&rep, &h);
	if (wf_send(pc->ep, &h, sizeof(h), 0))
		__atomic_add_fetch(&pc->p->c[pc->t].bad, 1, __ATOMIC_SEQ_CST);
	pc->inflight--;
}

static void on_hello(struct pconn *pc, const void *msg, uint32_t len)
{
	struct peer *p = pc->p;
	struct priv *pv = p->priv;
	struct wf_hello h;
	struct wf_grant g = { .epoch = LD(p->epoch), .target_id = pc->t };
	struct wf_rkey rk;
	struct wf_grant_hdr gh;
	size_t ring = (size_t)p->slot_count * p->slot_size;

	__atomic_add_fetch(&p->c[pc->t].hellos, 1, __ATOMIC_SEQ_CST);
	if (wf_hello_decode(msg, len, &h, NULL)) {
		wf_ep_close(pc->ep);
		return;
	}
	if (LD(p->dead[pc->t])) {
		g.status = WF_WS_BUSY;
	} else {
		pc->ring = aligned_alloc(4096, ring);
		cr_assert(pc->ring);
		cr_assert_eq(wf_mr_reg(pv->ctx, pc->ring, ring,
				       WF_ACCESS_REMOTE_WRITE, &pc->mr), 0);
		g.slot_count = p->slot_count;
		g.slot_size = p->slot_size;
		cr_assert_eq(wf_mr_rkey(pc->mr, pc->ep, 0, (uint32_t)ring,
					&rk), 0);
		WF_BUF_COPY(g.ring, rk);
		pc->granted = true;
	}
	wf_grant_encode(&g, &gh);
	wf_send(pc->ep, &gh, sizeof(gh), 0);
}

static void on_req(struct pconn *pc, const void *msg, uint32_t len)
{
	struct peer *p = pc->p;
	struct priv *pv = p->priv;
	struct peer_counts *c = &p->c[pc->t];
	struct wf_req_limits lim = {
		.block_size = 4096, .slot_count = 1,
		.slot_size = p->slot_size + WF_REQ_HDR_LEN,
		.max_io = p->extent_size > p->slot_size ? p->extent_size :
			  p->slot_size,
	};
	struct wf_req_hdr h;
	struct wf_req r;
	struct wf_rkey buf;
	struct wf_extent_loc loc;
	uint32_t slot, v;
	const uint32_t *set;
	uint8_t *img;
	int vi;

	if (len != sizeof(h)) {
		c->bad++;
		wf_ep_close(pc->ep);
		return;
	}
	memcpy(&h, msg, sizeof(h));
	slot = le32toh(h.slot);
	h.slot = 0;
	if (wf_req_decode(&h, sizeof(h), &lim, &r, NULL) ||
	    slot >= p->slot_count) {
		__atomic_add_fetch(&c->bad, 1, __ATOMIC_SEQ_CST);
		wf_ep_close(pc->ep);
		return;
	}
	pc->inflight++;
	__atomic_add_fetch(&c->reqs, 1, __ATOMIC_SEQ_CST);
	if (pc->inflight > LD(c->max_inflight))
		ST(c->max_inflight, pc->inflight);
	if (r.length > LD(c->max_len))
		ST(c->max_len, r.length);
	if (LD(p->silent))
		return;
	if (take(&p->drop_after) && !LD(p->drop_after)) {
		wf_ep_close(pc->ep);
		return;
	}
	if (r.epoch < LD(p->epoch) || take(&p->stale_n)) {
		struct wf_reply rep = {
			.status = WF_WS_STALE, .tag = r.tag,
			.epoch = r.epoch < LD(p->epoch) ? LD(p->epoch) :
				 r.epoch + 1,
		};
		struct wf_reply_hdr rh;

		wf_reply_encode(&rep, &rh);
		wf_send(pc->ep, &rh, sizeof(rh), 0);
		pc->inflight--;
		return;
	}
	if (take(&p->busy_n)) {
		reply(pc, &r, WF_WS_BUSY, 0, slot);
		return;
	}
	if (take(&p->io_n)) {
		reply(pc, &r, WF_WS_IO, 0, slot);
		return;
	}
	v = (uint32_t)LD(p->dnr_status);
	if (v && __atomic_compare_exchange_n(&p->dnr_status, (int *)&v, 0, false,
					     __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
		reply(pc, &r, (uint16_t)(v | WF_WS_DNR), 0, slot);
		return;
	}
	if (r.opcode == WF_OP_FLUSH) {
		__atomic_add_fetch(&c->flushes, 1, __ATOMIC_SEQ_CST);
		reply(pc, &r, WF_WS_OK, 0, slot);
		return;
	}
	vi = wf_map_volume_by_id(&pv->map, r.volume);
	if (vi < 0) {
		reply(pc, &r, WF_WS_NOVOL | WF_WS_DNR, 0, slot);
		return;
	}
	if (r.offset + r.length > pv->map.volumes[vi].size) {
		reply(pc, &r, WF_WS_RANGE | WF_WS_DNR, 0, slot);
		return;
	}
	if (r.offset / p->extent_size != (r.offset + r.length - 1) / p->extent_size) {
		__atomic_add_fetch(&c->crossings, 1, __ATOMIC_SEQ_CST);
		reply(pc, &r, WF_WS_INVALID | WF_WS_DNR, 0, slot);
		return;
	}
	if (r.opcode != WF_OP_DISCARD && r.length > p->slot_size) {
		__atomic_add_fetch(&c->bad, 1, __ATOMIC_SEQ_CST);
		reply(pc, &r, WF_WS_INVALID | WF_WS_DNR, 0, slot);
		return;
	}
	cr_assert_eq(wf_place_extent(&pv->tab, &pv->map, (uint32_t)vi, r.offset,
				     &loc), 0);
	(void)set;
	if (!loc.n || loc.acting[0] != pc->t) {
		__atomic_add_fetch(&c->notprim, 1, __ATOMIC_SEQ_CST);
		reply(pc, &r, WF_WS_NOTPRIM, 0, slot);
		return;
	}
	img = pv->img[pc->t][r.volume - 1];
	switch (r.opcode) {
	case WF_OP_WRITE:
		__atomic_add_fetch(&c->writes, 1, __ATOMIC_SEQ_CST);
		memcpy(img + r.offset, pc->ring + (size_t)slot * p->slot_size,
		       r.length);
		break;
	case WF_OP_DISCARD:
		__atomic_add_fetch(&c->discards, 1, __ATOMIC_SEQ_CST);
		memset(img + r.offset, 0, r.length);
		break;
	case WF_OP_READ:
		__atomic_add_fetch(&c->reads, 1, __ATOMIC_SEQ_CST);
		memcpy(pc->ring + (size_t)slot * p->slot_size, img + r.offset,
		       r.length);
		WF_BUF_COPY(buf, r.buf);
		if (wf_write(pc->ep, pc->mr, (uint64_t)slot * p->slot_size,
			     r.length, &buf, 0, 0)) {
			__atomic_add_fetch(&c->bad, 1, __ATOMIC_SEQ_CST);
			wf_ep_close(pc->ep);
			return;
		}
		break;
	}
	reply(pc, &r, WF_WS_OK, r.length, slot);
}

static void pconn_free(struct pconn *pc)
{
	struct priv *pv = pc->p->priv;

	if (pc->prev)
		pc->prev->next = pc->next;
	else
		pv->all = pc->next;
	if (pc->next)
		pc->next->prev = pc->prev;
	wf_ep_destroy(pc->ep);
	if (pc->mr)
		wf_mr_dereg(pc->mr);
	free(pc->ring);
	free(pc);
}

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	struct priv *pv = p->priv;
	struct wf_cqe cq[64];

	while (!LD(p->stop)) {
		int n = wf_poll(pv->ctx, cq, 64);

		if (LD(pv->move)) {
			unsigned t = (unsigned)LD(pv->move) - 1;
			struct wf_ep_opts o = { .size = sizeof(o),
				.send_depth = 2 * p->slot_count + 8,
				.recv_depth = p->slot_count + 8 };
			char addr[128], *c;

			cr_assert_lt(pv->nold, 8);
			pv->old[pv->nold++] = pv->l[t];
			cr_assert_eq(wf_listen(pv->ctx, "tcp:127.0.0.1:0", &o,
					       &pv->l[t]), 0);
			cr_assert_eq(wf_listener_addr(pv->l[t], addr,
						      sizeof(addr)), 0);
			c = strrchr(addr, ':');
			p->ports[t] = (uint16_t)atoi(c + 1);
			ST(pv->move, 0);
		}
		if (LD(pv->reload)) {
			load_map(p);
			ST(pv->reload, 0);
		}
		if (n == 0) {
			usleep(20);
			continue;
		}
		for (int i = 0; i < n; i++) {
			struct wf_cqe *e = &cq[i];
			struct pconn *pc;

			if (e->op == WF_CQE_ACCEPT) {
				struct wf_ep *ep;
				unsigned t;

				for (t = 0; t < p->ntargets; t++)
					if (e->listener == pv->l[t])
						break;
				for (unsigned k = 0; t == p->ntargets && k < pv->nold; k++)
					if (e->listener == pv->old[k])
						t = 0;  /* only target 0 moves */
				for (;;) {
					pc = calloc(1, sizeof(*pc));
					cr_assert(pc);
					pc->p = p;
					pc->t = t;
					if (wf_accept(e->listener, pc, &ep)) {
						free(pc);
						break;
					}
					pc->ep = ep;
					__atomic_add_fetch(&p->c[t].open, 1,
							   __ATOMIC_SEQ_CST);
					pc->next = pv->all;
					if (pv->all)
						pv->all->prev = pc;
					pv->all = pc;
				}
				continue;
			}
			if (!e->ep)
				continue;
			pc = wf_ep_user(e->ep);
			if (e->op == WF_CQE_DISCONNECT) {
				__atomic_sub_fetch(&p->c[pc->t].open, 1,
						   __ATOMIC_SEQ_CST);
				pconn_free(pc);
				continue;
			}
			if (e->op != WF_CQE_RECV_MSG)
				continue;
			if (!pc->granted)
				on_hello(pc, e->msg, e->len);
			else
				on_req(pc, e->msg, e->len);
		}
	}
	return NULL;
}

void peer_start(struct peer *p)
{
	struct wf_ctx_opts co = { .size = sizeof(co), .backend = WF_BACKEND_TCP,
				  .cq_depth = 65536 };
	struct wf_ep_opts o = { .size = sizeof(o) };
	struct priv *pv = calloc(1, sizeof(*pv));
	char addr[400];

	cr_assert(pv);
	p->priv = pv;
	if (!p->slot_count)
		p->slot_count = 64;
	if (!p->slot_size)
		p->slot_size = 128 * 1024;
	if (!p->vol_size)
		p->vol_size = 64ull << 20;
	if (!p->extent_size)
		p->extent_size = 1u << 20;
	if (!p->transport)
		p->transport = "tcp";
	cr_assert(p->ntargets >= 1 && p->ntargets <= PEER_MAXT);
	snprintf(p->dir, sizeof(p->dir), "/var/tmp/weft-itest-XXXXXX");
	cr_assert(mkdtemp(p->dir));
	snprintf(p->map_path, sizeof(p->map_path), "%s/map.conf", p->dir);
	setenv("WEFT_RUN_DIR", p->dir, 1);
	cr_assert_eq(wf_ctx_create(&co, &pv->ctx), 0);
	o.send_depth = 2 * p->slot_count + 8;
	o.recv_depth = p->slot_count + 8;
	for (unsigned t = 0; t < p->ntargets; t++) {
		if (!strcmp(p->transport, "unix"))
			snprintf(addr, sizeof(addr), "unix:%s/target-%u.sock",
				 p->dir, t);
		else
			snprintf(addr, sizeof(addr), "tcp:127.0.0.1:0");
		cr_assert_eq(wf_listen(pv->ctx, addr, &o, &pv->l[t]), 0, "%s", addr);
		if (!strcmp(p->transport, "unix")) {
			p->ports[t] = (uint16_t)(7000 + t);
		} else {
			char *c;

			cr_assert_eq(wf_listener_addr(pv->l[t], addr, sizeof(addr)), 0);
			c = strrchr(addr, ':');
			p->ports[t] = (uint16_t)atoi(c + 1);
		}
		for (unsigned v = 0; v < NVOL; v++) {
			pv->img[t][v] = mmap(NULL, p->vol_size, PROT_READ | PROT_WRITE,
					     MAP_PRIVATE | MAP_ANONYMOUS |
					     MAP_NORESERVE, -1, 0);
			cr_assert(pv->img[t][v] != MAP_FAILED);
		}
	}
	write_map(p, 1);
	load_map(p);
	cr_assert_eq(pthread_create(&p->thr, NULL, peer_main, p), 0);
}

void peer_bump_epoch(struct peer *p, uint64_t epoch)
{
	struct priv *pv = p->priv;

	write_map(p, epoch);
	ST(pv->reload, 1);
	while (LD(pv->reload))
		usleep(100);
}

void peer_move_target(struct peer *p, unsigned t, uint64_t epoch)
{
	struct priv *pv = p->priv;

	cr_assert_eq(t, 0, "only target 0 moves");
	ST(pv->move, (int)t + 1);
	while (LD(pv->move))
		usleep(100);
	peer_bump_epoch(p, epoch);
}

unsigned peer_conns(struct peer *p, unsigned t)
{
	return __atomic_load_n(&p->c[t].open, __ATOMIC_SEQ_CST);
}

const uint8_t *peer_image(struct peer *p, unsigned t, uint64_t vol_id)
{
	return ((struct priv *)p->priv)->img[t][vol_id - 1];
}

void peer_stop(struct peer *p)
{
	struct priv *pv = p->priv;
	char cmd[300];

	ST(p->stop, 1);
	pthread_join(p->thr, NULL);
	while (pv->all)
		pconn_free(pv->all);
	for (unsigned k = 0; k < pv->nold; k++)
		wf_listener_destroy(pv->old[k]);
	for (unsigned t = 0; t < p->ntargets; t++) {
		wf_listener_destroy(pv->l[t]);
		for (unsigned v = 0; v < NVOL; v++)
			munmap(pv->img[t][v], p->vol_size);
	}
	wf_ctx_destroy(pv->ctx);
	wf_pg_table_free(&pv->tab);
	wf_placer_free(&pv->pl);
	wf_map_free(&pv->map);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p->dir);
	(void)!system(cmd);
	free(pv);
}
