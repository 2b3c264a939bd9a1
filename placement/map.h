/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cluster map in memory: what the libconfig loader (map_load.c)
 * produces and what placement (placement.c) consumes.  Pure data: no I/O,
 * no threads.
 *
 * Every array is owned by the map and freed by wf_map_free().  Indices, not
 * pointers, link the pieces so a map can be copied or compared with memcmp
 * on the arrays.
 */
#ifndef WEFT_PLACEMENT_MAP_H
#define WEFT_PLACEMENT_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define WF_NAME_MAX     64      /* names, hosts, addresses, incl. NUL */
#define WF_PATH_MAX     256     /* device paths, incl. NUL */
#define WF_MAX_REPLICAS 8
/* Longest read lease a map may set (read_lease_ms; weft-target caps its
 * --read-lease-ms the same, docs/replication.md). */
#define WF_MAP_LEASE_MAX_MS 3000u
#define WF_WEIGHT_ONE   0x10000u /* weights are 16.16 fixed point */
#define WF_MAP_KEY_NAME 32      /* key names, incl. NUL (proto/auth.h) */
#define WF_MAP_MAX_REVOKED 4096
#define WF_MAP_MAX_PEER_KEYS 4096

/* Node types of the hierarchy, leaf first; also the failure domain types. */
enum wf_node_type {
	WF_NODE_DEVICE = 0,
	WF_NODE_HOST   = 1,
	WF_NODE_RACK   = 2,
	WF_NODE_ROOT   = 3,
};

struct wf_target {
	uint32_t id;                    /* unique, as written in the map */
	char     host[WF_NAME_MAX];     /* name of the hierarchy host holding it */
	char     addr[WF_NAME_MAX];     /* address it listens on (IPv4/IPv6 literal or name) */
	uint16_t port;
	char     device[WF_PATH_MAX];   /* block device or file backing the store */
	uint32_t weight;                /* 16.16; 0 means it takes no data */
	bool     up;                    /* process answers (state "up"/"down") */
	bool     in;                    /* takes data (state "in"/"out") */
	uint32_t node;                  /* index into wf_map.nodes of its device node */
};

/*
 * One node of the weighted hierarchy.  nodes[0] is the root.  Children of a
 * node are nodes[child[first_child]] .. nodes[child[first_child + nchild - 1]].
 */
struct wf_node {
	char     name[WF_NAME_MAX];
	uint8_t  type;                  /* enum wf_node_type */
	int32_t  parent;                /* node index, -1 for the root */
	uint32_t hash_id;               /* stable id fed to placement hashes:
	                                 * target id for devices, XXH32(name, 0)
	                                 * for buckets; independent of file order */
	uint32_t first_child, nchild;   /* range in wf_map.child[] */
	uint32_t target;                /* devices only: index into wf_map.targets */
	uint64_t weight;                /* 16.16 sum of the configured device
	                                 * weights below (state not applied) */
};

struct wf_pool {
	char     name[WF_NAME_MAX];
	uint32_t id;                    /* unique pool id */
	uint8_t  replicas;              /* 1 .. WF_MAX_REPLICAS */
	uint8_t  min_size;              /* 1 .. replicas */
	uint8_t  failure_domain;        /* enum wf_node_type */
	uint32_t pg_num;                /* power of two */
	uint8_t  algorithm;             /* enum wf_pool_algorithm */
	uint32_t sparse_ppm;            /* WF_ALGO_SPARSE: share of PGs, in
	                                 * millionths, in which each device
	                                 * draws high (docs/placement.md) */
};

/* Placement algorithm of a pool (map field "algorithm"). */
enum wf_pool_algorithm {
	WF_ALGO_STRAW2 = 0,             /* "straw2": coupled straw2, the default */
	WF_ALGO_SPARSE = 1,             /* "sparse": the same with sparse draws */
};
#define WF_SPARSE_PPM_MAX 500000

struct wf_volume {
	char     name[WF_NAME_MAX];
	uint64_t id;                    /* unique volume id, hashed for placement */
	uint64_t size;                  /* bytes, multiple of the extent size */
	uint32_t pool;                  /* index into wf_map.pools */
};

/*
 * An explicit acting set for one PG (written by `weftctl balance`, versioned
 * with the epoch).  Placement ignores an override that no longer fits the
 * map (a target out, a failure domain violated) and falls back to the
 * computed set for that PG.
 */
struct wf_override {
	uint32_t pool;                  /* index into wf_map.pools */
	uint32_t pg;
	uint8_t  n;                     /* == pool replicas */
	uint32_t target[WF_MAX_REPLICAS]; /* target ids, primary first */
};

/*
 * Order of the arrays (independent of the order of entries in the file):
 * targets sorted by id; nodes breadth first (root, racks, hosts, devices),
 * siblings sorted by (hash_id, name), devices of a host by target id, so
 * child[] is 1..nnodes-1; pools and volumes as written; overrides sorted
 * by (pool, pg).  Device nodes are named "target.<id>".
 */
struct wf_map {
	uint64_t epoch;
	uint64_t cluster_id;
	uint32_t extent_size;           /* bytes, power of two, >= 4096 */
	/* The id the next new volume gets: ids are never reused, so a new
	 * volume never sees blocks a deleted one left on a target that has
	 * not reclaimed them yet.  Above every volume's id (loader: default
	 * the largest + 1). */
	uint64_t next_volume_id;
	/* The targets' read lease length in ms (docs/replication.md, "Read
	 * leases"), 0 .. WF_MAP_LEASE_MAX_MS, when read_lease_set; a target's
	 * --read-lease-ms wins over it. */
	uint32_t read_lease_ms;
	bool     read_lease_set;

	struct wf_target   *targets;   uint32_t ntargets;
	struct wf_node     *nodes;     uint32_t nnodes;
	uint32_t           *child;     uint32_t nchild;
	struct wf_pool     *pools;     uint32_t npools;
	struct wf_volume   *volumes;   uint32_t nvolumes;
	struct wf_override *overrides; uint32_t noverrides;
	/* Acting sets pinned while new members of a PG are brought up to
	 * date (recovery): n is 1 .. replicas, the members that hold the
	 * data, primary first.  Sorted by (pool, pg). */
	struct wf_override *temps;     uint32_t ntemps;
	/* Keys (docs/security.md): whether targets require them, and the
	 * names of revoked keys, which every target refuses from the epoch
	 * that lists them on (names are never reused).  Sorted. */
	uint8_t             auth;       /* enum wf_map_auth */
	char              (*revoked)[WF_MAP_KEY_NAME]; uint32_t nrevoked;
	/* Per-volume access (docs/security.md): a volume with entries is
	 * open to the keys they name only.  Sorted by (volume, key). */
	struct wf_access   *access;    uint32_t naccess;
	/* The keys of targets (docs/security.md, "Keys of targets"): a
	 * connection that proved one of them may send what only targets
	 * send (forwarded writes, CSUMs, MAP_PUT, LEASE, MAP_GET), passes
	 * every volume and is exempt from the limits per key.  Empty: the
	 * clusters of before, where a target recognises the others by its
	 * own --key.  Sorted. */
	char              (*peers)[WF_MAP_KEY_NAME]; uint32_t npeers;
};

struct wf_access {
	uint64_t volume;                /* volume id */
	char     key[WF_MAP_KEY_NAME];
	uint8_t  ro;                    /* 1: read-only, 0: read-write */
};

/* The map's auth = "...": */
enum wf_map_auth {
	WF_MAP_AUTH_KEYRING = 0,        /* absent: a target with a keyring
	                                 * requires keys, one without none */
	WF_MAP_AUTH_REQUIRED,           /* "required": a target without a
	                                 * keyring refuses to start (or to take
	                                 * the map) */
	WF_MAP_AUTH_NONE,               /* "none": no target asks for keys
	                                 * (a client that offers one is still
	                                 * answered) */
};

/* Error detail from the loader: names file, line and field. */
struct wf_map_err {
	char msg[512];
};

/*
 * Load and validate a map file.  Returns 0 and fills *map, or -errno
 * (-ENOENT, -EINVAL for any content error, -ENOMEM) with a message
 * "FILE:LINE: FIELD: what is wrong" in *err.  Never crashes on any input.
 */
int  wf_map_load(const char *path, struct wf_map *map, struct wf_map_err *err);
/* The same from a buffer; name is used in messages. */
int  wf_map_load_buf(const char *buf, size_t len, const char *name,
		     struct wf_map *map, struct wf_map_err *err);
/* Whether m's peer_keys lists name (bisecting). */
bool wf_map_peer_key(const struct wf_map *m, const char *name);
/* Sort m's revoked_keys, peer_keys and access list into the order the loader gives
 * them (after an edit). */
void wf_map_keys_sort(struct wf_map *m);
/* Write a map back as libconfig (used by weftctl for epoch+1 maps). */
int  wf_map_save(const struct wf_map *map, const char *path, struct wf_map_err *err);
void wf_map_free(struct wf_map *map);
/* The canonical text of a map to f (what wf_map_save writes); 0 or -EIO. */
int  wf_map_write(const struct wf_map *map, FILE *f);
/* Same content: scalars and every array byte for byte. */
bool wf_map_equal(const struct wf_map *a, const struct wf_map *b);

/* Lookups; return an index or -ENOENT. */
int  wf_map_target_by_id(const struct wf_map *map, uint32_t id);
int  wf_map_pool_by_name(const struct wf_map *map, const char *name);
int  wf_map_volume_by_name(const struct wf_map *map, const char *name);
int  wf_map_pool_by_id(const struct wf_map *map, uint32_t id);
int  wf_map_volume_by_id(const struct wf_map *map, uint64_t id);
/* Index into map->overrides of (pool index, pg), bisecting; or -ENOENT. */
int  wf_map_override_find(const struct wf_map *map, uint32_t pool, uint32_t pg);

#endif
