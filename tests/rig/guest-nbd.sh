# shellcheck shell=bash
# A weft volume as a Linux block device in the rig's guest (sourced by
# guest-lib.sh): nbdkit's weft plugin serves vol3 (three replicas on the
# three targets of conf/local.conf) and the kernel's NBD client attaches it
# as /dev/nbd0.
#
#   rig_nbd_fs FABRIC   FABRIC (tcp or verbs) is libweft's link to the
#                       targets.  mkfs.ext4, mount, a tree of files with
#                       SHA-256 sums, umount, fsck -n clean; NBD client and
#                       nbdkit stopped and started again (nothing left in
#                       any cache), mount, every sum verified; then fio
#                       through the raw device with verification.  The
#                       fio figures go to nbd-fio-FABRIC.json and never
#                       fail the step.

RIG_NBD_DEV=/dev/nbd0
RIG_NBD_MNT=/tmp/nbd-mnt

# nbdkit (daemon) on DIR/nbd.sock serving vol3 of the running cluster.
rig_nbdkit_up() {
	local dir=$1 fab=$2 t
	LD_LIBRARY_PATH=$RIG_BUILD/lib nbdkit -U "$dir/nbd.sock" \
		-P "$dir/nbdkit.pid" -t 16 "$RIG_BUILD/lib/nbdkit-weft-plugin.so" \
		map="$WEFT_MAP" volume=vol3 transport="$fab" \
		run_dir="$WEFT_RUN_DIR" key="$WEFT_KEY" keyring="$WEFT_KEYRING" \
		>>"$dir/nbdkit.log" 2>&1 || {
		cat "$dir/nbdkit.log"
		return 1
	}
	for ((t = 0; t < 100; t++)); do
		[[ -S $dir/nbd.sock && -s $dir/nbdkit.pid ]] && break
		sleep 0.1
	done
	nbd-client -unix "$dir/nbd.sock" "$RIG_NBD_DEV" -b 4096 -N vol3 \
		-t 60 || { cat "$dir/nbdkit.log"; return 1; }
	rig_wait_for 50 test -s "/sys/block/${RIG_NBD_DEV#/dev/}/size" || return 1
	echo "nbd: $RIG_NBD_DEV = vol3 over $fab," \
		"$(blockdev --getsize64 "$RIG_NBD_DEV") bytes"
}

# Disconnect the NBD client and stop nbdkit (SIGTERM, bounded wait).
rig_nbdkit_down() {
	local dir=$1 pid t
	nbd-client -d "$RIG_NBD_DEV" >/dev/null 2>&1
	pid=$(cat "$dir/nbdkit.pid" 2>/dev/null) || return 0
	kill -TERM "$pid" 2>/dev/null
	for ((t = 0; t < 100; t++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "nbdkit $pid did not stop in 10 s: SIGKILL"
		kill -KILL "$pid"
		return 1
	fi
	# nbdkit leaves its socket behind.
	rm -f "$dir/nbdkit.pid" "$dir/nbd.sock"
}

rig_nbd_cleanup() {
	local dir=$1
	mountpoint -q "$RIG_NBD_MNT" && umount "$RIG_NBD_MNT"
	rig_nbdkit_down "$dir"
	[[ -n ${WEFT_CLUSTER_DIR:-} ]] && "$WEFT_SRC/scripts/cluster" stop "$WEFT_CLUSTER_DIR"
	rm -rf "$dir"
}

# rig_cluster_up FABRIC DIR MAP [TARGET_ARGS...]: the three targets of
# conf/local.conf (on rxe1's address for verbs) with their files in DIR,
# 1 GiB each; the cluster's variables (WEFT_MAP, WEFT_RUN_DIR, WEFT_KEY,
# ...) exported.
rig_cluster_up() {
	local fab=$1 dir=$2 map=$3 env extra=(--)
	shift 3
	extra+=("$@")
	if [[ $fab == verbs ]]; then
		sed "s/\"127\\.0\\.0\\.1\"/\"$RIG_ADDR1\"/" "$WEFT_SRC/conf/local.conf" >"$map"
		extra+=(--transport verbs)
	else
		cp "$WEFT_SRC/conf/local.conf" "$map"
	fi
	rm -rf "$dir"
	env=$("$WEFT_SRC/scripts/cluster" start -c "$map" --dir "$dir" \
		--size "${RIG_CLUSTER_SIZE:-1G}" \
		--bin "$WEFT_BIN" "${extra[@]}") || { echo "$env"; return 1; }
	eval "export $env"
}

# rig_need_tools TOOL...: each is in the image, or the step is BLOCKED.
rig_need_tools() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null ||
			{ echo "BLOCKED: $t is not in the image"; return 1; }
	done
}

# rig_fail_logs LOG: the ends of the server's LOG and the targets' logs.
rig_fail_logs() {
	local t
	echo "--- $1"; tail -n 40 "$1"
	for t in "$WEFT_RUN_DIR"/target-*.log; do
		echo "--- $t"; tail -n 10 "$t"
	done
}

# rig_attach_run FABRIC NAME LOG [TARGET_ARGS...]: the cluster up with its
# files in /var/tmp/NAME-FABRIC, rig_NAME_fs_run DIR FABRIC, the server's
# LOG (in DIR) and the targets' logs shown when it failed,
# rig_NAME_cleanup DIR.
rig_attach_run() {
	local fab=$1 name=$2 dir=/var/tmp/$2-$1 log=$3 rc=0
	shift 3
	rig_cluster_up "$fab" "$dir" "/tmp/$name-$fab.conf" "$@" || return 1
	"rig_${name}_fs_run" "$dir" "$fab" || rc=1
	((rc)) && rig_fail_logs "$dir/$log"
	"rig_${name}_cleanup" "$dir" || rc=1
	return $rc
}

# 120 files of 4 KiB to 192 KiB of random bytes in 8 folders; their sums.
rig_nbd_tree() {
	local root=$1 sums=$2 d f
	for ((d = 0; d < 8; d++)); do
		mkdir -p "$root/tree/d$d"
		for ((f = 0; f < 15; f++)); do
			head -c $(((RANDOM % 48 + 1) * 4096)) /dev/urandom \
				>"$root/tree/d$d/f$f" || return 1
		done
	done
	(cd "$root" && find tree -type f -print0 | sort -z | xargs -0 sha256sum) >"$sums"
	echo "nbd: wrote $(wc -l <"$sums") files, $(du -sk "$root/tree" | cut -f1) KiB"
}

rig_nbd_fs() {
	rig_need_tools nbdkit nbd-client mkfs.ext4 fsck.ext4 fio blockdev || return 1
	[[ -f $RIG_BUILD/lib/nbdkit-weft-plugin.so ]] ||
		{ echo "no nbdkit-weft-plugin.so in the build"; return 1; }
	modprobe nbd nbds_max=2 || { echo "BLOCKED: no nbd module"; return 1; }
	rig_attach_run "$1" nbd nbdkit.log
}

rig_nbd_fs_run() {
	local dir=$1 fab=$2 dev=$RIG_NBD_DEV mnt=$RIG_NBD_MNT
	rig_nbdkit_up "$dir" "$fab" || return 1
	rig_fs_make "$dev" "$mnt" "$dir/sums" || return 1
	# A fresh client and a fresh nbdkit: what is read next comes from the
	# targets.
	rig_nbdkit_down "$dir" || return 1
	rig_nbdkit_up "$dir" "$fab" || return 1
	mount "$dev" "$mnt" || return 1
	(cd "$mnt" && sha256sum --quiet -c "$dir/sums") ||
		{ echo "nbd: checksums differ after remount"; return 1; }
	echo "nbd: every checksum verified after a remount through a new client"
	umount "$mnt" || return 1
	# The raw device: random 4 KiB writes at QD16, each block verified.
	rig_fio_verify "$dev" "nbd-$fab" "$RIG_RES/nbd-fio-$fab.json"
}

# rig_fs_make DEV MNT SUMS: mkfs.ext4 on DEV, mounted on MNT, a tree of
# files with their sums in SUMS, unmounted, fsck -n clean.
rig_fs_make() {
	local dev=$1 mnt=$2 sums=$3
	mkfs.ext4 -q -F "$dev" || return 1
	mkdir -p "$mnt"
	mount "$dev" "$mnt" || return 1
	rig_nbd_tree "$mnt" "$sums" || return 1
	umount "$mnt" || return 1
	fsck.ext4 -n -f "$dev" || { echo "fsck -n: not clean"; return 1; }
}

# rig_fio_verify DEV NAME JSON: fio 4 KiB random writes at QD16 over the
# first 32 MiB of DEV, each block verified (crc32c) after; figures to JSON.
rig_fio_verify() {
	local dev=$1 name=$2 json=$3
	fio --name="$name" --filename="$dev" --direct=1 --ioengine=libaio \
		--rw=randwrite --bs=4k --iodepth=16 --size=32M --verify=crc32c \
		--do_verify=1 --verify_fatal=1 --output-format=json \
		--output="$json" || { cat "$json"; return 1; }
	python3 - "$json" "$name" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
print("%s: fio randwrite 4k QD16 %.0f IOPS, then %.0f verify reads/s, errors %d"
      % (sys.argv[2], j["write"]["iops"], j["read"]["iops"], j["error"]))
sys.exit(1 if j["error"] else 0)
EOF
}
