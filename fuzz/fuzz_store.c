/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store's open path on an arbitrary device image: superblock, then
 * index blocks.  Must never crash, leak or touch memory out of bounds,
 * whatever the image says; an image that opens must also serve I/O.
 *
 * Input: one flags byte, then the image head (the rest of the device is
 * sparse zeros up to the size the superblock claims, at most 64 MiB).
 * Flags let the fuzzer get past the checksums to the checks behind them:
 *   bit 0  set the superblock magic and version
 *   bit 1  recompute the superblock CRC
 *   bit 2  recompute each index block's CRC (and its block/copy/nonce
 *          fields when bit 3 is set)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <isa-l/crc.h>

#include "target/store.h"

#define HEAD_MAX        (256u * 1024)
#define DEV_MAX         (64ull << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t crc32c(const uint8_t *p, size_t n)
{
	return crc32_iscsi((unsigned char *)p, (int)n, 0xffffffffu) ^ 0xffffffffu;
}

static void fix_crc(uint8_t *blk, size_t at)
{
	uint32_t c;

	memset(blk + at, 0, 4);
	c = crc32c(blk, 4096);
	memcpy(blk + at, &c, 4);
}

static void on_done(struct wf_store_req *req, int res)
{
	*(int *)req->user = res;
}

static void exercise(struct wf_store *s)
{
	struct wf_store_stat st;
	struct wf_store_req req;
	void *buf;
	int res = 1;

	wf_store_stat(s, &st);
	if (posix_memalign(&buf, 4096, 4096))
		return;
	memset(buf, 0x5a, 4096);
	wf_store_req_init(&req, on_done, &res);
	/* a read and a write on whatever the loaded index maps */
	if (!wf_store_read(s, &req, 1, 0, 4096, buf, -1)) {
		while (res == 1 && wf_store_submit_and_wait(s) >= 0)
			wf_store_poll(s, 16);
	}
	res = 1;
	if (!wf_store_write(s, &req, 1, st.extent_size, 4096, buf, -1, 0)) {
		while (res == 1 && wf_store_submit_and_wait(s) >= 0)
			wf_store_poll(s, 16);
	}
	free(buf);
}

/* Where the image goes: /dev/shm when it is there (tmpfs takes O_DIRECT
 * since Linux 6.6, and an input then costs memory, not the disk: about
 * 10x the executions a second), else /var/tmp.  WEFT_FUZZ_DIR chooses. */
static const char *img_dir(void)
{
	static const char *dir;

	if (!dir) {
		dir = getenv("WEFT_FUZZ_DIR");
		if (!dir || !*dir)
			dir = access("/dev/shm", W_OK) ? "/var/tmp" : "/dev/shm";
	}
	return dir;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wf_store_opts o = { .size = sizeof(o), .ring_entries = 8,
				   .lock_wait_ms = 1,
				   .cache = WF_STORE_CACHE_NONE };
	struct wf_store_err err;
	struct wf_store *s = NULL;
	uint64_t dev = 0, nonce;
	size_t head, n;
	uint8_t flags, *img;
	char path[4200];
	int fd;

	if (size < 1)
		return 0;
	flags = data[0];
	data++;
	size--;
	n = size < HEAD_MAX ? size : HEAD_MAX;
	head = (n + 4095) & ~(size_t)4095;
	if (head < 4096)
		head = 4096;
	img = calloc(1, head);
	if (!img)
		return 0;
	memcpy(img, data, n);

	if (flags & 1) {
		memcpy(img, "WEFTSTOR", 8);
		img[8] = 1;
		img[9] = img[10] = img[11] = 0;
	}
	if (flags & 2)
		fix_crc(img, 12);
	memcpy(&nonce, img + 72, 8);
	if (flags & 4) {
		for (size_t off = 4096; off + 4096 <= head; off += 4096) {
			uint8_t *b = img + off;

			if (flags & 8) {
				uint32_t blkno = (uint32_t)((off - 4096) / 8192);
				uint32_t copy = (uint32_t)((off - 4096) / 4096 % 2);

				memcpy(b, "WFIX", 4);
				memcpy(b + 16, &blkno, 4);
				memcpy(b + 20, &copy, 4);
				memcpy(b + 24, &nonce, 8);
			}
			fix_crc(b, 4);
		}
	}
	/* the device is as big as the superblock says, within reason */
	memcpy(&dev, img + 32, 8);
	if (dev < head || dev > DEV_MAX)
		dev = head;

	snprintf(path, sizeof(path), "%s/weft-fuzz-store-%d.img", img_dir(), (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto out;
	if (pwrite(fd, img, head, 0) != (ssize_t)head || ftruncate(fd, (off_t)dev)) {
		close(fd);
		goto out;
	}
	close(fd);
	if (wf_store_open(path, &o, &s, &err) == 0) {
		exercise(s);
		wf_store_close(s);
	}
out:
	unlink(path);
	free(img);
	return 0;
}
