/* SPDX-License-Identifier: Apache-2.0 */
/*
 * weft_null: a proof that weft can build an external fio ioengine against
 * fio's own headers (fetched by scripts/fio-src).  Every I/O completes at
 * once without touching data.  The real engine (libweft_fio.so) will follow
 * the same shape: an exported `ioengine` symbol, engine options in a struct
 * whose first member is reserved for fio, and no fio symbol that the fio
 * binary does not export.
 *
 *   fio --ioengine=external:build-fio/lib/libweft_null_fio.so --name=x \
 *       --size=16m --bs=4k --rw=randread --weft_null_tag=hello
 */
#include <string.h>

#include "fio.h"
#include "optgroup.h"

struct wf_null_opts {
	void *pad;		/* fio stores the thread pointer here */
	char *tag;
};

static struct fio_option wf_null_options[] = {
	{
		.name	  = "weft_null_tag",
		.lname	  = "weft null engine tag",
		.type	  = FIO_OPT_STR_STORE,
		.off1	  = offsetof(struct wf_null_opts, tag),
		.help	  = "free text the engine prints at init (proves option parsing)",
		.category = FIO_OPT_C_ENGINE,
		.group	  = FIO_OPT_G_INVALID,
	},
	{ .name = NULL },
};

static int wf_null_init(struct thread_data *td)
{
	struct wf_null_opts *o = td->eo;

	log_info("weft_null: loaded (tag=%s)\n", o && o->tag ? o->tag : "-");
	return 0;
}

static enum fio_q_status wf_null_queue(struct thread_data *td, struct io_u *io_u)
{
	fio_ro_check(td, io_u);
	io_u->error = 0;
	io_u->resid = 0;
	return FIO_Q_COMPLETED;
}

static int wf_null_open(struct thread_data *td, struct fio_file *f)
{
	(void)td;
	(void)f;
	return 0;
}

/* Exported by name: fio dlsym()s "ioengine" after dlopen(). */
struct ioengine_ops ioengine = {
	.name			= "weft_null",
	.version		= FIO_IOOPS_VERSION,
	.flags			= FIO_SYNCIO | FIO_DISKLESSIO | FIO_NOEXTEND |
				  FIO_NODISKUTIL,
	.init			= wf_null_init,
	.queue			= wf_null_queue,
	.open_file		= wf_null_open,
	.options		= wf_null_options,
	.option_struct_size	= sizeof(struct wf_null_opts),
};
