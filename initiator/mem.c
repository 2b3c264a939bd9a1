/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libweft: registered memory.  One arena registered once for
 * weft_buf_alloc() (first fit over a sorted segment list: control path
 * only), and a bounce pool with one chunk per piece, so a piece never
 * waits for bounce memory and the data path never searches for it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "initiator/weft_int.h"

#define ACCESS (WF_ACCESS_REMOTE_WRITE | WF_ACCESS_REMOTE_READ)

static void *map_region(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

int wf_mem_init(struct wf_mem *m, struct wf_ctx *ctx, size_t arena_len,
		uint32_t npieces)
{
	int ret;

	memset(m, 0, sizeof(*m));
	arena_len = (arena_len + WF_BLOCK - 1) & ~(size_t)(WF_BLOCK - 1);
	m->arena = map_region(arena_len);
	if (!m->arena)
		return -ENOMEM;
	m->arena_len = arena_len;
	ret = wf_mr_reg(ctx, m->arena, arena_len, ACCESS, &m->arena_mr);
	if (ret)
		goto out_unmap_arena;
	m->cap = 16;
	m->segs = calloc(m->cap, sizeof(*m->segs));
	if (!m->segs) {
		ret = -ENOMEM;
		goto out_dereg_arena;
	}
	m->segs[0].off = 0;
	m->segs[0].len = arena_len;
	m->nsegs = 1;
	m->bounce_len = (size_t)npieces * WF_PIECE_MAX;
	m->bounce = map_region(m->bounce_len);
	if (!m->bounce) {
		ret = -ENOMEM;
		goto out_free_segs;
	}
	ret = wf_mr_reg(ctx, m->bounce, m->bounce_len, ACCESS, &m->bounce_mr);
	if (ret)
		goto out_unmap_bounce;
	return 0;

out_unmap_bounce:
	munmap(m->bounce, m->bounce_len);
out_free_segs:
	free(m->segs);
out_dereg_arena:
	wf_mr_dereg(m->arena_mr);
out_unmap_arena:
	munmap(m->arena, m->arena_len);
	memset(m, 0, sizeof(*m));
	return ret;
}

void wf_mem_fini(struct wf_mem *m)
{
	if (m->bounce_mr)
		wf_mr_dereg(m->bounce_mr);
	if (m->bounce)
		munmap(m->bounce, m->bounce_len);
	if (m->arena_mr)
		wf_mr_dereg(m->arena_mr);
	if (m->arena)
		munmap(m->arena, m->arena_len);
	free(m->segs);
	memset(m, 0, sizeof(*m));
}

void *wf_mem_alloc(struct wf_mem *m, size_t len)
{
	uint32_t i;

	if (!len || len > m->arena_len)
		return NULL;
	len = (len + WF_BLOCK - 1) & ~(size_t)(WF_BLOCK - 1);
	for (i = 0; i < m->nsegs; i++) {
		struct wf_arena_seg *s = &m->segs[i];

		if (s->used || s->len < len)
			continue;
		if (s->len > len) {
			/* Split: the rest stays free right after. */
			if (m->nsegs == m->cap) {
				struct wf_arena_seg *n = realloc(m->segs,
					2 * m->cap * sizeof(*n));

				if (!n)
					return NULL;
				m->segs = n;
				m->cap *= 2;
				s = &m->segs[i];
			}
			memmove(&m->segs[i + 2], &m->segs[i + 1],
				(m->nsegs - i - 1) * sizeof(*s));
			m->segs[i + 1].off = s->off + len;
			m->segs[i + 1].len = s->len - len;
			m->segs[i + 1].used = false;
			s->len = len;
			m->nsegs++;
		}
		s->used = true;
		return m->arena + s->off;
	}
	return NULL;
}

static void seg_del(struct wf_mem *m, uint32_t i)
{
	memmove(&m->segs[i], &m->segs[i + 1],
		(m->nsegs - i - 1) * sizeof(m->segs[0]));
	m->nsegs--;
}

int wf_mem_free(struct wf_mem *m, void *p)
{
	size_t off;
	uint32_t lo = 0, hi;

	if (!wf_mem_in_arena(m, p, 1))
		return -EINVAL;
	off = (size_t)((char *)p - m->arena);
	hi = m->nsegs;
	while (lo < hi) {       /* segments are sorted by offset */
		uint32_t mid = (lo + hi) / 2;

		if (m->segs[mid].off < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo >= m->nsegs || m->segs[lo].off != off || !m->segs[lo].used)
		return -EINVAL;
	m->segs[lo].used = false;
	/* Coalesce with free neighbours. */
	if (lo + 1 < m->nsegs && !m->segs[lo + 1].used) {
		m->segs[lo].len += m->segs[lo + 1].len;
		seg_del(m, lo + 1);
	}
	if (lo > 0 && !m->segs[lo - 1].used) {
		m->segs[lo - 1].len += m->segs[lo].len;
		seg_del(m, lo);
	}
	return 0;
}
