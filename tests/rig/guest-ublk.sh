# shellcheck shell=bash
# A weft volume as a Linux block device through the kernel's ublk driver
# (sourced by guest-lib.sh; the ublk suite, booted on the backports kernel:
# the stock 6.1 kernel has no ublk_drv).  weft-ublk serves vol3 (three
# replicas on the three targets of conf/local.conf) as /dev/ublkbN.
#
#   rig_ublk_fs FABRIC   FABRIC (tcp or verbs) is libweft's link to the
#                        targets.  weft-ublk add (2 queues, so flushes fan
#                        out to both handles), mkfs.ext4, mount, a tree of
#                        files with SHA-256 sums, umount, fsck -n clean,
#                        weft-ublk del (the device goes), add again, mount,
#                        every sum verified; fio through the raw device
#                        with verification (and the same job on a
#                        null_blk device, the floor); a flush on one queue
#                        reaches the targets the other queue wrote to;
#                        add of a volume that does not
#                        exist refused; SIGTERM to the server removes the
#                        device; SIGKILL to it: the disk goes, del frees
#                        the number; the targets stopped: reads fail with EIO
#                        after the timeout and del still removes the device.
#                        Between the flush and the refusal, the same 4 KiB
#                        jobs through /dev/ublkbN and through weft's fio
#                        engine on the same volume (rig_ublk_vs_engine: a
#                        benchmark; it fails only when an I/O fails).

RIG_UBLK_MNT=/tmp/ublk-mnt

# weft-ublk add on vol3 of the running cluster; prints /dev/ublkbN.
rig_ublk_add() {
	local dir=$1 fab=$2 dev
	shift 2
	dev=$("$WEFT_BIN/weft-ublk" add -c "$WEFT_MAP" --volume "${RIG_UBLK_VOL:-vol3}" \
		--transport "$fab" --run-dir "$WEFT_RUN_DIR" --key "$WEFT_KEY" \
		--keyring "$WEFT_KEYRING" --queues 2 --depth 32 \
		--log "$dir/ublk.log" "$@") || { tail -n 20 "$dir/ublk.log" >&2; return 1; }
	[[ $dev == /dev/ublkb* ]] || { echo "weft-ublk add printed '$dev'" >&2; return 1; }
	rig_wait_for 50 test -b "$dev" || { echo "$dev: no device node" >&2; return 1; }
	echo "ublk: $dev = ${RIG_UBLK_VOL:-vol3} over $fab, $(blockdev --getsize64 "$dev") bytes" >&2
	echo "$dev"
}

# The device and its char device are gone (bounded wait).
rig_ublk_gone() {
	local n=${1#/dev/ublkb}
	rig_wait_for 100 eval "[[ ! -e /sys/block/ublkb$n && ! -e /sys/class/ublk-char/ublkc$n ]]" ||
		{ echo "ublk: ublkb$n still there"; "$WEFT_BIN/weft-ublk" list; return 1; }
	echo "ublk: ublkb$n removed"
}

rig_ublk_del() {
	local dev=$1
	timeout 120 "$WEFT_BIN/weft-ublk" del "$dev" || { echo "ublk: del $dev failed"; return 1; }
	rig_ublk_gone "$dev"
}

rig_ublk_cleanup() {
	local dir=$1 d
	mountpoint -q "$RIG_UBLK_MNT" && umount "$RIG_UBLK_MNT"
	for d in /sys/class/ublk-char/ublkc*; do
		[[ -e $d ]] && timeout 60 "$WEFT_BIN/weft-ublk" del "${d##*ublkc}"
	done
	[[ -n ${WEFT_CLUSTER_DIR:-} ]] && "$WEFT_SRC/scripts/cluster" stop "$WEFT_CLUSTER_DIR"
	# The servers' messages (a sanitizer's report too) outlive the step.
	cp "$dir/ublk.log" "$RIG_RES/logs/ublk-server-${dir##*-}.log" 2>/dev/null
	rm -rf "$dir"
}

rig_ublk_fs() {
	rig_need_tools mkfs.ext4 fsck.ext4 fio blockdev dd || return 1
	[[ -x $WEFT_BIN/weft-ublk ]] || { echo "no weft-ublk in the build"; return 1; }
	modprobe ublk_drv || { echo "BLOCKED: no ublk_drv module (kernel $(uname -r))"; return 1; }
	# The targets' metrics count the flushes they served.
	rig_attach_run "$1" ublk ublk.log --metrics 127.0.0.1:0
}

# rig_ublk_enospc FABRIC: the targets' devices of 64 MiB under vol1 (1 GiB,
# one replica) as /dev/ublkbN: 4 KiB written with O_DIRECT at the start of
# each 1 MiB extent until four writes failed; each failure is ENOSPC ("No
# space left on device", BLK_STS_NOSPC from weft-ublk), never EIO; every
# extent written before reads back and takes an overwrite in place.
rig_ublk_enospc() {
	rig_need_tools dd cmp || return 1
	[[ -x $WEFT_BIN/weft-ublk ]] || { echo "no weft-ublk in the build"; return 1; }
	modprobe ublk_drv || { echo "BLOCKED: no ublk_drv module (kernel $(uname -r))"; return 1; }
	RIG_CLUSTER_SIZE=64M RIG_UBLK_VOL=vol1 rig_attach_run "$1" ublkfull ublk.log
}

# The 4 KiB block of extent $1, version $2.
rig_ublk_block() {
	{ printf 'weft rig: vol1 extent %08d version %d\n' "$1" "$2"; head -c 4096 /dev/zero; } |
		head -c 4096
}

rig_ublkfull_fs_run() {
	local dir=$1 fab=$2 dev e err fails=0 bad=0 acked=()
	dev=$(rig_ublk_add "$dir" "$fab") || return 1
	for ((e = 0; e < 1024 && fails < 4; e++)); do
		rig_ublk_block "$e" 1 >"$dir/blk"
		if err=$(dd if="$dir/blk" of="$dev" bs=4096 seek=$((e * 256)) count=1 \
			oflag=direct conv=notrunc status=none 2>&1); then
			acked+=("$e")
			continue
		fi
		fails=$((fails + 1))
		echo "ublk: extent $e: $err"
		[[ $err == *"No space left on device"* ]] || bad=1
	done
	echo "ublk: ${#acked[@]} extents written, then $fails failed writes"
	((${#acked[@]} && fails)) || { echo "ublk: the devices never filled"; return 1; }
	((!bad)) || { echo "ublk: a write to a full target failed with another error than ENOSPC"; return 1; }
	for e in "${acked[@]}"; do
		rig_ublk_block "$e" 1 >"$dir/blk"
		dd if="$dev" bs=4096 skip=$((e * 256)) count=1 iflag=direct status=none |
			cmp -s - "$dir/blk" || { echo "ublk: extent $e does not read back"; return 1; }
		rig_ublk_block "$e" 2 >"$dir/blk"
		dd if="$dir/blk" of="$dev" bs=4096 seek=$((e * 256)) count=1 oflag=direct \
			conv=notrunc status=none || { echo "ublk: overwrite of extent $e failed"; return 1; }
		dd if="$dev" bs=4096 skip=$((e * 256)) count=1 iflag=direct status=none |
			cmp -s - "$dir/blk" || { echo "ublk: extent $e: overwrite does not read back"; return 1; }
	done
	echo "ublk: every extent written before the devices filled reads back, and takes an overwrite"
}

rig_ublkfull_cleanup() {
	rig_ublk_cleanup "$@"
}

# Flushes every target served (weft_requests_total{op="flush"}, summed).
rig_target_flushes() {
	python3 - "$WEFT_RUN_DIR" <<'EOF'
import glob, re, sys, urllib.request
n = 0
for f in glob.glob(sys.argv[1] + "/target-*.metrics"):
    url = open(f).read().strip()
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    m = re.search(r'^weft_requests_total\{op="flush"\} (\d+)$', text, re.M)
    n += int(m.group(1))
print(n)
EOF
}

# A flush that reaches queue 0 covers the writes queue 1 completed: each
# queue has its own libweft handle, and weft_flush() flushes only the
# targets its own handle wrote to, so queue 0 must have queue 1 flush too.
# With 2 queues on the guest's 2 CPUs, blk-mq sends CPU 0's requests to
# queue 0 and CPU 1's to queue 1; fsync of the block device sends a flush.
rig_ublk_flush_across() {
	local dev=$1 before after
	rig_need_tools taskset || return 1
	fsync0() { taskset -c 0 python3 -c 'import os, sys; os.fsync(os.open(sys.argv[1], os.O_RDONLY))' "$dev"; }
	fsync0 || return 1      # nothing either queue wrote is left unflushed
	before=$(rig_target_flushes) || return 1
	taskset -c 1 dd if=/dev/urandom of="$dev" bs=4k count=16 seek=4096 oflag=direct status=none || return 1
	fsync0 || return 1
	after=$(rig_target_flushes) || return 1
	echo "ublk: targets served $((after - before)) flushes for a flush on queue 0 after writes on queue 1"
	((after > before)) || { echo "ublk: the flush did not cover the other queue's writes"; return 1; }
}

rig_ublk_fs_run() {
	local dir=$1 fab=$2 mnt=$RIG_UBLK_MNT dev pid out rc
	dev=$(rig_ublk_add "$dir" "$fab") || return 1
	"$WEFT_BIN/weft-ublk" list
	rig_fs_make "$dev" "$mnt" "$dir/sums" || return 1
	# A fresh server and a fresh device: what is read next comes from the
	# targets.
	rig_ublk_del "$dev" || return 1
	dev=$(rig_ublk_add "$dir" "$fab") || return 1
	mount "$dev" "$mnt" || return 1
	(cd "$mnt" && sha256sum --quiet -c "$dir/sums") ||
		{ echo "ublk: checksums differ after del and add"; return 1; }
	echo "ublk: every checksum verified after del and add"
	umount "$mnt" || return 1
	rig_fio_verify "$dev" "ublk-$fab" "$RIG_RES/ublk-fio-$fab.json" || return 1
	rig_ublk_flush_across "$dev" || return 1
	rig_ublk_vs_engine "$dev" "$fab" || return 1
	# The floor in the same boot: the same job on a memory-backed null_blk
	# device (the guest's block layer and fio alone, no server).
	out=$(rig_nullb ublkfloor) || { echo "no null_blk device"; return 1; }
	rig_fio_verify "$out" "floor-$fab" "$RIG_RES/ublk-fio-floor-$fab.json" || return 1

	# A volume that does not exist: refused, with a message that says so.
	out=$("$WEFT_BIN/weft-ublk" add -c "$WEFT_MAP" --volume nosuch \
		--run-dir "$WEFT_RUN_DIR" 2>&1) && { echo "add of nosuch succeeded"; return 1; }
	echo "$out"
	grep -q "volume 'nosuch' does not exist" <<<"$out" || return 1

	# SIGTERM to the server: the device goes.
	pid=$(sed -n 's/^pid=//p' "/run/weft-ublk/${dev#/dev/}")
	[[ -n $pid ]] || { echo "no pid in /run/weft-ublk/${dev#/dev/}"; return 1; }
	kill -TERM "$pid"
	rig_wait_for 150 eval "! kill -0 $pid 2>/dev/null" ||
		{ echo "ublk: server $pid still running 30 s after SIGTERM"; return 1; }
	rig_ublk_gone "$dev" || return 1

	# SIGKILL to the server: the driver stops the device, del frees it.
	dev=$(rig_ublk_add "$dir" "$fab") || return 1
	pid=$(sed -n 's/^pid=//p' "/run/weft-ublk/${dev#/dev/}")
	kill -KILL "$pid"
	rig_wait_for 150 eval "[[ ! -e /sys/block/${dev#/dev/} ]]" ||
		{ echo "ublk: $dev still there 30 s after its server was killed"; return 1; }
	rig_ublk_del "$dev" || return 1

	# Every target stopped: a read fails (EIO) once libweft's timeout
	# (3 s here) passed, it never hangs; del still removes the device.
	dev=$(rig_ublk_add "$dir" "$fab" --timeout-ms 3000) || return 1
	"$WEFT_SRC/scripts/cluster" stop "$WEFT_CLUSTER_DIR" || return 1
	timeout 120 dd if="$dev" of=/dev/null bs=4k count=1 skip=12345 iflag=direct
	rc=$?
	((rc == 124)) && { echo "ublk: a read hung with the targets down"; return 1; }
	((rc != 0)) || { echo "ublk: a read succeeded with every target down"; return 1; }
	echo "ublk: with every target down a read failed (dd exit $rc)"
	rig_ublk_del "$dev"
}

RIG_UBLK_ROUNDS=${RIG_UBLK_ROUNDS:-2}

# Fabric operations the targets made so far (weft_fabric_operations_total
# of every target's metrics, summed per op), as "send=N write=N ...".
rig_target_fabops() {
	python3 - "$WEFT_RUN_DIR" <<'EOF'
import glob, re, sys, urllib.request
n = {}
for f in glob.glob(sys.argv[1] + "/target-*.metrics"):
    url = open(f).read().strip()
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    for op, v in re.findall(r'^weft_fabric_operations_total\{op="(\w+)"\} (\d+)$', text, re.M):
        n[op] = n.get(op, 0) + int(v)
print(" ".join("%s=%d" % kv for kv in sorted(n.items())))
EOF
}

# rig_ublk_vs_engine DEV FABRIC: a benchmark, not a check.  The same 4 KiB
# randread/randwrite jobs at QD1 and QD32 (RIG_IO_RUNTIME s each, over the
# first RIG_IO_SIZE_MB of vol3) through DEV (fio io_uring, direct=1) and
# through weft's fio engine on vol3 over FABRIC, in the same boot, the two
# paths alternating job by job for RIG_UBLK_ROUNDS rounds.  Prints per job
# and round each path's IOPS, their ratio and the targets' fabric
# operations per I/O (under emulation the counts are what is comparable;
# the timings move 2x between runs); ublk-vs-engine-FABRIC.json holds it
# all.  Fails only when a job fails (an I/O error ends fio non-zero).
rig_ublk_vs_engine() {
	local dev=$1 fab=$2 r rw qd path a b
	local res=$RIG_RES/ublk-cmp-$fab
	local engine=$RIG_BUILD/lib/libweft_fio.so
	[[ -f $engine ]] || { echo "BLOCKED: no libweft_fio.so in the build"; return 1; }
	mkdir -p "$res"
	rig_fio_fill "$dev" || { echo "ublk: fill failed"; return 1; }
	for ((r = 1; r <= RIG_UBLK_ROUNDS; r++)); do
		for rw in randread randwrite; do
			for qd in 1 32; do
				for path in ublk engine; do
					local args=(--ioengine=io_uring --direct=1 --filename="$dev")
					[[ $path == engine ]] && args=(--ioengine=external:"$engine"
						--weft_map="$WEFT_MAP" --weft_volume=vol3
						--weft_transport="$fab")
					a=$(rig_target_fabops) || return 1
					LD_LIBRARY_PATH=$RIG_BUILD/lib fio "${args[@]}" --name="$path" \
						--rw="$rw" --bs=4k --iodepth="$qd" \
						--size="${RIG_IO_SIZE_MB}M" --runtime="$RIG_IO_RUNTIME" \
						--time_based --randrepeat=0 --lat_percentiles=1 \
						--output-format=json --output="$res/$path-$rw-$qd-$r.json" ||
						{ echo "ublk: fio $path $rw QD$qd failed"; cat "$res/$path-$rw-$qd-$r.json"; return 1; }
					b=$(rig_target_fabops) || return 1
					printf '%s\n%s\n' "$a" "$b" >"$res/$path-$rw-$qd-$r.ops"
				done
			done
		done
	done
	python3 - "$res" "$RIG_UBLK_ROUNDS" "$fab" >"$RIG_RES/ublk-vs-engine-$fab.json" <<'EOF'
import json, sys
res, rounds, fab = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def job(path, rw, qd, r):
    base = "%s/%s-%s-%d-%d" % (res, path, rw, qd, r)
    j = json.load(open(base + ".json"))["jobs"][0]
    if j["error"]:
        sys.exit("fio %s: error %d" % (base, j["error"]))
    d = j["read" if rw == "randread" else "write"]
    a, b = (dict(w.split("=") for w in l.split()) for l in open(base + ".ops"))
    n = d["total_ios"] or 1
    ops = {k: round((int(b[k]) - int(a.get(k, 0))) / n, 2) for k in b}
    return {"iops": round(d["iops"], 1),
            "p50_us": d["clat_ns"]["percentile"]["50.000000"] / 1e3,
            "ios": d["total_ios"], "target_fabric_ops_per_io": ops}
fmt = lambda o: " ".join("%s %.2f" % kv for kv in sorted(o.items()))
rows = []
print("ublk vs fio engine over %s (emulated: compare within a round)" % fab,
      file=sys.stderr)
for rw in ("randread", "randwrite"):
    for qd in (1, 32):
        for r in range(1, rounds + 1):
            u, e = job("ublk", rw, qd, r), job("engine", rw, qd, r)
            row = {"rw": rw, "qd": qd, "round": r, "ublk": u, "engine": e,
                   "ublk_over_engine": round(u["iops"] / e["iops"], 3) if e["iops"] else None}
            rows.append(row)
            print("%-9s QD%-2d round %d: ublk %8.1f IOPS, engine %8.1f IOPS, "
                  "ratio %s; targets' fabric ops per I/O: ublk %s | engine %s" %
                  (rw, qd, r, u["iops"], e["iops"], row["ublk_over_engine"],
                   fmt(u["target_fabric_ops_per_io"]),
                   fmt(e["target_fabric_ops_per_io"])), file=sys.stderr)
json.dump({"fabric": fab, "bs": 4096, "rounds": rounds, "rows": rows}, sys.stdout, indent=1)
EOF
}
