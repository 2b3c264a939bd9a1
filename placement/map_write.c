/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cluster map writer.
 *
 * Prints the canonical text of a map; loading it gives a map equal to the
 * original (wf_map_equal), which is what epoch+1 maps rely on.
 * wf_map_save writes it aside and renames it into place.
 *
 * The reference for the format is docs/configuration.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "placement/map.h"
#include "placement/map_int.h"

/* 16.16 -> exact decimal: 65536 divides 10^16, so 16 digits are enough. */
static void fmt_weight(char *out, size_t cap, uint32_t w)
{
	uint64_t frac = (uint64_t)(w & 0xffff) * 152587890625ull; /* 10^16 / 2^16 */
	char digits[17];
	int n;

	snprintf(digits, sizeof(digits), "%016" PRIu64, frac);
	for (n = 16; n > 1 && digits[n - 1] == '0'; n--)
		;
	snprintf(out, cap, "%u.%.*s", w >> 16, n, digits);
}

static void fmt_size(char *out, size_t cap, uint64_t size)
{
	static const char units[] = "PTGMK";
	unsigned shift = 50;

	for (const char *u = units; *u; u++, shift -= 10) {
		if (!(size & ((1ull << shift) - 1))) {
			snprintf(out, cap, "\"%" PRIu64 "%c\"", size >> shift, *u);
			return;
		}
	}
	snprintf(out, cap, "%" PRIu64 "L", size);
}

/* libconfig integer literal: L only where 32 bits do not hold the value. */
static const char *int_sfx(uint64_t v)
{
	return v > INT32_MAX ? "L" : "";
}

static void write_pgsets(const struct wf_map *m, FILE *f,
			 const struct wf_override *o, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++, o++) {
		fprintf(f, "\t{ pool = \"%s\"; pg = %u; acting = [",
			o->pool < m->npools ? m->pools[o->pool].name : "?", o->pg);
		for (uint32_t j = 0; j < o->n && j < WF_MAX_REPLICAS; j++)
			fprintf(f, "%s%u", j ? ", " : " ", o->target[j]);
		fprintf(f, " ]; }%s\n", i + 1 < n ? "," : "");
	}
}

int wf_map_write(const struct wf_map *m, FILE *f)
{
	char a[64], b[64];

	fprintf(f, "# weft cluster map, epoch %" PRIu64 " (see docs/configuration.md)\n",
		m->epoch);
	fprintf(f, "epoch = %" PRIu64 "%s;\n", m->epoch, int_sfx(m->epoch));
	fprintf(f, "cluster_id = %" PRIu64 "%s;\n", m->cluster_id, int_sfx(m->cluster_id));
	fprintf(f, "extent_size = %u;\n", m->extent_size);
	if (m->auth == WF_MAP_AUTH_REQUIRED || m->auth == WF_MAP_AUTH_NONE)
		fprintf(f, "auth = \"%s\";  # docs/security.md\n",
			m->auth == WF_MAP_AUTH_REQUIRED ? "required" : "none");
	if (m->nrevoked) {
		fprintf(f, "revoked_keys = [");
		for (uint32_t i = 0; i < m->nrevoked; i++)
			fprintf(f, "%s\"%s\"", i ? ", " : " ", m->revoked[i]);
		fprintf(f, " ];\n");
	}
	if (m->npeers) {
		fprintf(f, "peer_keys = [");
		for (uint32_t i = 0; i < m->npeers; i++)
			fprintf(f, "%s\"%s\"", i ? ", " : " ", m->peers[i]);
		fprintf(f, " ];  # the targets' keys\n");
	}
	if (m->naccess) {
		fprintf(f, "access = (  # docs/security.md\n");
		for (uint32_t i = 0; i < m->naccess; i++) {
			const struct wf_access *ac = &m->access[i];
			int vi = wf_map_volume_by_id(m, ac->volume);

			fprintf(f, "\t{ volume = \"%s\"; key = \"%s\"; mode = \"%s\"; }%s\n",
				vi >= 0 ? m->volumes[vi].name : "?", ac->key,
				ac->ro ? "ro" : "rw", i + 1 < m->naccess ? "," : "");
		}
		fprintf(f, ");\n");
	}
	if (m->read_lease_set)
		fprintf(f, "read_lease_ms = %u;  # docs/replication.md\n",
			m->read_lease_ms);
	if (m->next_volume_id)
		fprintf(f, "next_volume_id = %" PRIu64 "%s;  # ids are never reused\n",
			m->next_volume_id, int_sfx(m->next_volume_id));
	fprintf(f, "\ntargets = (\n");
	for (uint32_t i = 0; i < m->ntargets; i++) {
		const struct wf_target *t = &m->targets[i];

		fmt_weight(a, sizeof(a), t->weight);
		fprintf(f, "\t{ id = %u; host = \"%s\"; addr = \"%s\"; port = %u;\n"
			"\t  device = \"%s\"; weight = %s; state = \"%s,%s\"; }%s\n",
			t->id, t->host, t->addr, t->port, t->device, a,
			t->up ? "up" : "down", t->in ? "in" : "out",
			i + 1 < m->ntargets ? "," : "");
	}
	fprintf(f, ");\n\nhierarchy = (\n");
	if (m->nnodes) {
		const struct wf_node *root = &m->nodes[0];

		for (uint32_t i = 0; i < root->nchild; i++) {
			const struct wf_node *rk = &m->nodes[m->child[root->first_child + i]];

			fprintf(f, "\t{ rack = \"%s\"; hosts = (", rk->name);
			for (uint32_t j = 0; j < rk->nchild; j++)
				fprintf(f, "%s\"%s\"", j ? ", " : " ",
					m->nodes[m->child[rk->first_child + j]].name);
			fprintf(f, "%s); }%s\n", rk->nchild ? " " : "",
				i + 1 < root->nchild ? "," : "");
		}
	}
	fprintf(f, ");\n\npools = (\n");
	for (uint32_t i = 0; i < m->npools; i++) {
		const struct wf_pool *p = &m->pools[i];

		fprintf(f, "\t{ name = \"%s\"; id = %u; replicas = %u; min_size = %u;\n"
			"\t  failure_domain = \"%s\"; pg_num = %u;", p->name, p->id,
			p->replicas, p->min_size,
			p->failure_domain < 3 ? wf_map_fd_names[p->failure_domain] : "?",
			p->pg_num);
		/* Written only when not the default, so the text of a map
		 * without the field does not change. */
		if (p->algorithm == WF_ALGO_SPARSE)
			fprintf(f, "\n\t  algorithm = \"sparse\"; sparse_ppm = %u;", p->sparse_ppm);
		fprintf(f, " }%s\n", i + 1 < m->npools ? "," : "");
	}
	fprintf(f, ");\n\nvolumes = (\n");
	for (uint32_t i = 0; i < m->nvolumes; i++) {
		const struct wf_volume *v = &m->volumes[i];

		fmt_size(b, sizeof(b), v->size);
		fprintf(f, "\t{ name = \"%s\"; id = %" PRIu64 "%s; size = %s; pool = \"%s\"; }%s\n",
			v->name, v->id, int_sfx(v->id), b,
			v->pool < m->npools ? m->pools[v->pool].name : "?",
			i + 1 < m->nvolumes ? "," : "");
	}
	fprintf(f, ");\n\noverrides = (\n");
	write_pgsets(m, f, m->overrides, m->noverrides);
	fprintf(f, ");\n");
	if (m->ntemps) {
		fprintf(f, "\n# Acting sets pinned while new members are brought up "
			"to date (recovery).\npg_temp = (\n");
		write_pgsets(m, f, m->temps, m->ntemps);
		fprintf(f, ");\n");
	}
	return ferror(f) ? -EIO : 0;
}

/* fsync the directory path is in, which makes the rename durable.  Its own
 * copy of proto's wf_file_sync_dir: placement depends on nothing of ours. */
static int sync_dir(const char *path)
{
	char dir[WF_PATH_MAX + 16];
	const char *slash = strrchr(path, '/');
	int fd, r = 0;

	if (slash && (size_t)(slash - path) >= sizeof(dir))
		return -ENAMETOOLONG;
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		r = -errno;
	close(fd);
	return r;
}

int wf_map_save(const struct wf_map *map, const char *path, struct wf_map_err *err)
{
	char tmp[WF_PATH_MAX + 16];
	FILE *f;
	int r;

	err->msg[0] = '\0';
	/* write aside and rename, so a reader never sees half a map */
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		snprintf(err->msg, sizeof(err->msg), "%s: path too long", path);
		return -ENAMETOOLONG;
	}
	f = fopen(tmp, "we");
	if (!f) {
		r = -errno;
		snprintf(err->msg, sizeof(err->msg), "%s: cannot create: %s", tmp, wf_errdesc(-r));
		return r;
	}
	r = wf_map_write(map, f);
	if (!r && fflush(f))
		r = -errno;
	if (!r && fsync(fileno(f)))
		r = -errno;
	if (fclose(f) && !r)
		r = -errno;
	if (!r && rename(tmp, path))
		r = -errno;
	if (r) {
		snprintf(err->msg, sizeof(err->msg), "%s: cannot write: %s", path, wf_errdesc(-r));
		unlink(tmp);
		return r;
	}
	/* The new name is durable only once its directory is.  The map is in
	 * place either way and the caller goes on (tells the targets), as
	 * wf_file_replace does. */
	(void)sync_dir(path);
	return 0;
}
