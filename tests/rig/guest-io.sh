# shellcheck shell=bash
# The data path over verbs in the rig's guest (sourced by guest-lib.sh):
# weft-target processes on rxe1, libweft on rxe0.
#
#   rig_sys_verbs TEST    tests/integration's TEST over verbs: three targets
#                         on files (scripts/cluster), WEFT_FABRIC=verbs
#   rig_io_verify_verbs   one target on a memory-backed null_blk device,
#                         weft-bench io --verify-only over verbs
#   rig_nvmf_compare      weft-bench io over verbs against the kernel's
#                         NVMe-oF/RDMA target (nvmet-rdma) with fio over the
#                         nvme-rdma host, on the same kind of null_blk device,
#                         4 KiB randread/randwrite at QD1 and QD32, rounds
#                         alternating; nvmf-compare.json
#
# Verification errors and crashes fail a step; the figures never do.  JSON
# is summarised with python3 (in the image: fio's tools pull it in, and
# scripts/cluster needs it).

RIG_IO_SIZE_MB=${RIG_IO_SIZE_MB:-16}       # working set of every I/O job
RIG_IO_RUNTIME=${RIG_IO_RUNTIME:-3}        # seconds per job
RIG_NVMF_ROUNDS=${RIG_NVMF_ROUNDS:-3}
RIG_NVMF_WEFT_MODES=${RIG_NVMF_WEFT_MODES:-default spin}   # see rig_nvmf_compare
RIG_NVMF_NVMET_MODES=${RIG_NVMF_NVMET_MODES:-irq}
RIG_NULLB_MB=256                           # each null_blk device
RIG_WEFT_PORT=7500
RIG_NVMF_PORT=4420
RIG_NQN=nqn.2026-11.io.weft:rig-compare

rig_configfs() {
	mountpoint -q /sys/kernel/config ||
		mount -t configfs configfs /sys/kernel/config
}

# rig_nullb NAME: a memory-backed null_blk device of RIG_NULLB_MB with
# 4 KiB blocks (configfs), made once per boot; prints its /dev path.  Memory
# backed so that weft's verification reads back what was written, and so
# that both stacks measure their software, not the emulated disk.
rig_nullb() {
	local name=$1 d=/sys/kernel/config/nullb/$1
	rig_configfs || return 1
	if [[ ! -d /sys/kernel/config/nullb ]]; then
		modprobe null_blk nr_devices=0 || return 1
	fi
	if [[ ! -d $d ]]; then
		mkdir "$d" || return 1
		echo 1 >"$d/memory_backed"
		echo 4096 >"$d/blocksize"
		echo "$RIG_NULLB_MB" >"$d/size"
		echo 1 >"$d/power" || return 1
	fi
	local dev=/dev/nullb$(cat "$d/index")
	[[ -b /dev/$name ]] && dev=/dev/$name   # kernels naming it after the item
	rig_wait_for 50 test -b "$dev" || return 1
	echo "$dev"
}

# A one-target map on DEV: target 0 listens on rxe1's address; volume vol1
# (pool rep1, 64 PGs, all on target 0) spans the device less the store's
# metadata.
rig_io_map() {
	local map=$1 dev=$2
	cat >"$map" <<EOF
epoch = 1;
cluster_id = 7;
extent_size = 1048576;
targets = (
	{ id = 0; host = "rig-server"; addr = "$RIG_ADDR1"; port = $RIG_WEFT_PORT;
	  device = "$dev"; weight = 1.0; state = "up,in"; }
);
pools = (
	{ name = "rep1"; id = 2; replicas = 1; min_size = 1;
	  failure_domain = "device"; pg_num = 64; }
);
volumes = (
	{ name = "vol1"; id = 2; size = "$((RIG_NULLB_MB - 32))M"; pool = "rep1"; }
);
EOF
}

# rig_weft_up DIR DEV: format DEV and start weft-target over verbs on it
# (daemon; returns once it listens).  Its pid in DIR/target-0.pid.
rig_weft_up() {
	local dir=$1 dev=$2
	mkdir -p "$dir/run"
	rig_io_map "$dir/map.conf" "$dev"
	"$WEFT_BIN/weft-target" -c "$dir/map.conf" --id 0 --format --force >/dev/null ||
		return 1
	"$WEFT_BIN/weft-target" -c "$dir/map.conf" --id 0 --transport verbs \
		--run-dir "$dir/run" --pid-file "$dir/target-0.pid" --max-conns 4 \
		${RIG_WEFT_POLL_US:+--poll-us "$RIG_WEFT_POLL_US"} || {
		cat "$dir/run/target-0.log"
		return 1
	}
	echo "weft-target pid $(cat "$dir/target-0.pid") on $dev, rdma:$RIG_ADDR1:$RIG_WEFT_PORT"
}

# Stops the target (SIGTERM: it drains and exits 0).  Fails when it had
# died already, needed SIGKILL, or its log does not end with its clean
# exit: the daemon is not our child, so the log is the only witness.
rig_weft_down() {
	local dir=$1 pid t log
	log=$dir/run/target-0.log       # not on the line above: bash expands
	                                # every word of `local` before assigning
	pid=$(cat "$dir/target-0.pid" 2>/dev/null) || { echo "no target pid file"; return 1; }
	rm -f "$dir/target-0.pid"
	kill -TERM "$pid" 2>/dev/null || { echo "weft-target $pid was gone before SIGTERM"; tail -n 20 "$log"; return 1; }
	for ((t = 0; t < 150; t++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "weft-target $pid did not stop in 15 s: SIGKILL"
		kill -KILL "$pid"
		return 1
	fi
	tail -n 3 "$log"
	tail -n 1 "$log" | grep -q ': exit$' || { echo "weft-target $pid: no clean exit"; return 1; }
}

# rig_sys_verbs TEST: one of tests/integration's binaries (test_sys_io,
# test_sys_crash, test_sys_repl: replication, its peer links and recovery)
# over verbs: conf/local.conf with its addresses on rxe1
# (all three targets listen there; libweft reaches them through rxe0, per
# the policy routes), WEFT_FABRIC=verbs (sys.c starts the targets with
# --transport verbs).  Devices: scripts/cluster's files under /var/tmp
# (ext4 on the root image).
rig_sys_verbs() {
	local t=$RIG_BUILD/tests/$1 map=/tmp/sys-verbs.conf
	[[ -x $t ]] || { echo "no $t"; return 1; }
	sed "s/\"127\\.0\\.0\\.1\"/\"$RIG_ADDR1\"/" "$WEFT_SRC/conf/local.conf" >"$map"
	grep -n 'addr' "$map"
	WEFT_FABRIC=verbs WEFT_SYS_MAP=$map \
		"$t" --jobs 1 --verbose=1 --json="$RIG_RES/$1-verbs.json"
}

rig_io_verify_verbs() {
	local dir=/tmp/io-verify dev rc=0
	dev=$(rig_nullb nullb0) || { echo "no null_blk device"; return 1; }
	rig_weft_up "$dir" "$dev" || return 1
	"$WEFT_BIN/weft-bench" io -c "$dir/map.conf" --volume vol1 --transport verbs \
		--size "${RIG_IO_SIZE_MB}M" --verify-only --seed 11 --json \
		>"$RIG_RES/io-verify-verbs.json" || rc=1
	cat "$RIG_RES/io-verify-verbs.json"
	rig_weft_down "$dir" || rc=1
	return $rc
}

# --- the kernel NVMe-oF/RDMA target ---------------------------------------

# nvmet on DEV, port on rxe1's address; the nvme-rdma host connects through
# rxe0.  Prints the host's namespace device.
rig_nvmet_up() {
	local dev=$1 n=/sys/kernel/config/nvmet m
	for m in nvmet nvmet-rdma nvme-rdma; do
		modprobe "$m" || { echo "BLOCKED: kernel module $m missing" >&2; return 1; }
	done
	rig_configfs || return 1
	mkdir -p "$n/subsystems/$RIG_NQN/namespaces/1" || return 1
	echo 1 >"$n/subsystems/$RIG_NQN/attr_allow_any_host"
	echo "$dev" >"$n/subsystems/$RIG_NQN/namespaces/1/device_path"
	echo 1 >"$n/subsystems/$RIG_NQN/namespaces/1/enable" || return 1
	mkdir -p "$n/ports/1"
	echo rdma >"$n/ports/1/addr_trtype"
	echo ipv4 >"$n/ports/1/addr_adrfam"
	echo "$RIG_ADDR1" >"$n/ports/1/addr_traddr"
	echo "$RIG_NVMF_PORT" >"$n/ports/1/addr_trsvcid"
	ln -s "$n/subsystems/$RIG_NQN" "$n/ports/1/subsystems/$RIG_NQN" || return 1
	local hostnqn
	hostnqn=nqn.2014-08.org.nvmexpress:uuid:$(cat /proc/sys/kernel/random/uuid)
	# One poll queue beside the interrupt-driven ones, for fio --hipri.
	nvme connect -t rdma -a "$RIG_ADDR1" -s "$RIG_NVMF_PORT" -n "$RIG_NQN" \
		--hostnqn "$hostnqn" --nr-poll-queues 1 >&2 || return 1
	# The namespace's block device: under the subsystem with native
	# multipath (nvmeXnY; the controller's nvmeXcZnY paths are hidden),
	# under the controller without it.
	local c s b
	for ((c = 0; c < 100; c++)); do
		for s in /sys/class/nvme-subsystem/* /sys/class/nvme/*; do
			[[ $(cat "$s/subsysnqn" 2>/dev/null) == "$RIG_NQN" ]] || continue
			for b in "$s"/nvme*n*; do
				[[ -b /dev/${b##*/} ]] && { echo "/dev/${b##*/}"; return 0; }
			done
		done
		sleep 0.1
	done
	echo "no namespace device after connect:" >&2
	ls -l /sys/class/nvme/ /sys/class/nvme-subsystem/ /sys/class/nvme/*/ /dev/nvme* >&2
	return 1
}

rig_nvmet_down() {
	local n=/sys/kernel/config/nvmet
	nvme disconnect -n "$RIG_NQN" 2>/dev/null
	rm -f "$n/ports/1/subsystems/$RIG_NQN" 2>/dev/null
	rmdir "$n/ports/1" 2>/dev/null
	echo 0 >"$n/subsystems/$RIG_NQN/namespaces/1/enable" 2>/dev/null
	rmdir "$n/subsystems/$RIG_NQN/namespaces/1" "$n/subsystems/$RIG_NQN" 2>/dev/null
	return 0
}

# rig_fio DEV OUT [FIO ARGS]: the four jobs (randread, randwrite x QD1,
# QD32) on DEV, one after the other, over the first RIG_IO_SIZE_MB; fio JSON
# in OUT.
rig_fio() {
	local dev=$1 out=$2 rw qd args=()
	shift 2
	for rw in randread randwrite; do
		for qd in 1 32; do
			args+=(--name="$rw-qd$qd" --rw="$rw" --iodepth="$qd" --stonewall)
		done
	done
	fio --ioengine=io_uring --direct=1 --bs=4k --filename="$dev" \
		--size="${RIG_IO_SIZE_MB}M" --runtime="$RIG_IO_RUNTIME" --time_based \
		--lat_percentiles=1 --randrepeat=0 --output-format=json \
		--output="$out" "$@" "${args[@]}" || return 1
}

# One pass over the working set so that reads find data (both stacks would
# answer unwritten blocks without touching memory).
rig_fio_fill() {
	fio --name=fill --ioengine=io_uring --direct=1 --bs=128k --iodepth=8 \
		--rw=write --filename="$1" --size="${RIG_IO_SIZE_MB}M" >/dev/null
}

# rig_weft_jobs DIR OUT SEED: the same four jobs with weft-bench io over
# verbs (prefill, jobs, whole working set read back and verified: exit 1 on
# any mismatch).  WEFT_RUN_DIR: where weft-bench finds the target's control
# socket for its fabric counts per I/O (per_io in the JSON).
rig_weft_jobs() {
	local dir=$1 out=$2 seed=$3
	WEFT_RUN_DIR="$dir/run" "$WEFT_BIN/weft-bench" io -c "$dir/map.conf" --volume vol1 --transport verbs \
		--rw randread,randwrite --qd 1,32 --bs 4k --runtime "$RIG_IO_RUNTIME" \
		--size "${RIG_IO_SIZE_MB}M" --no-floor --seed "$seed" \
		--pid-file "$dir/target-0.pid" --json >"$out"
}

# Each side runs in one or more modes; every pair is compared.
# weft (RIG_NVMF_WEFT_MODES, default "default spin"):
#   default  as installed: weft-target's default --poll-us (0 since
#            2026-11-29, 50 before), libweft sleeps at once
#   spin     the target sleeps at once (--poll-us 0), the client busy-polls
#            (WEFT_SPIN_US=1000000): on the rig's two vCPUs the best of the
#            configurations tried (docs/performance.md)
#   poll     both busy-poll (--poll-us and WEFT_SPIN_US 1 s)
# nvmet (RIG_NVMF_NVMET_MODES, default "irq"):
#   irq      fio's io_uring on the nvme-rdma host, interrupt-driven
#   hipri    fio --hipri on the host's poll queue (nvme connect
#            --nr-poll-queues 1).  Not in the suite: under TCG the poller
#            starves rxe's softirq work and jobs overrun their runtime.
# Rounds alternate the sides: nvmet's four jobs, then weft's per mode (a
# fresh target per mode and round: --poll-us is a start option).
rig_nvmf_compare() {
	local dir=/tmp/io-cmp wdev ndev host r mode rc=0 blocked=
	wdev=$(rig_nullb nullb0) || { echo "no null_blk device"; return 1; }
	ndev=$(rig_nullb nullb1) || { echo "no second null_blk device"; return 1; }
	rm -f "$RIG_RES"/nvmf-*.json
	echo "== device reference: fio on $ndev in the guest"
	rig_fio_fill "$ndev" && rig_fio "$ndev" "$RIG_RES/nvmf-device.json" ||
		echo "fio on the raw device failed"
	if host=$(rig_nvmet_up "$ndev"); then
		echo "nvmet-rdma: $ndev exported, host device $host"
		rig_fio_fill "$host" || { echo "fill over nvme-rdma failed"; rc=1; }
	else
		blocked=$(rig_nvmet_up_reason)
		echo "nvmet-rdma unavailable: $blocked"
		host=
	fi
	for ((r = 1; r <= RIG_NVMF_ROUNDS; r++)); do
		for mode in $RIG_NVMF_NVMET_MODES; do
			[[ -n $host ]] || break
			local hipri=()
			[[ $mode == hipri ]] && hipri=(--hipri)
			echo "== round $r: nvmet-rdma $mode (fio on $host)"
			rig_fio "$host" "$RIG_RES/nvmf-nvmet-$mode-$r.json" "${hipri[@]}" ||
				{ echo "fio failed"; rc=1; }
		done
		for mode in $RIG_NVMF_WEFT_MODES; do
			local poll_us= spin_us=
			case $mode in
			spin) poll_us=0 spin_us=1000000 ;;
			poll) poll_us=1000000 spin_us=1000000 ;;
			esac
			echo "== round $r: weft over verbs $mode (weft-bench io)"
			RIG_WEFT_POLL_US=$poll_us rig_weft_up "$dir" "$wdev" || { rc=1; continue; }
			# Exit 1 on any verification error: the step fails.
			if ! WEFT_SPIN_US=$spin_us rig_weft_jobs "$dir" \
				"$RIG_RES/nvmf-weft-$mode-$r.json" "$r"; then
				echo "weft-bench io failed (round $r, $mode)"
				rc=1
			fi
			rig_weft_down "$dir" || rc=1
		done
	done
	rig_nvmet_down
	rig_nvmf_summary "$blocked" >"$RIG_RES/nvmf-compare.json" || rc=1
	cat "$RIG_RES/nvmf-compare.json"
	[[ -z $blocked ]] || rc=1
	return $rc
}

rig_nvmet_up_reason() {
	local m
	for m in nvmet nvmet-rdma nvme-rdma; do
		modinfo "$m" >/dev/null 2>&1 || { echo "kernel module $m missing"; return; }
	done
	echo "setup failed (see logs/nvmf-compare.log)"
}

# The comparison: per job and round both sides, medians over the rounds and
# weft's IOPS over nvmet's (the issue's goal: >= 1.25 at QD1 and QD32).
rig_nvmf_summary() {
	python3 - "$RIG_RES" "$RIG_NVMF_ROUNDS" "$RIG_IO_RUNTIME" "$RIG_IO_SIZE_MB" "$1" \
		"$RIG_NVMF_WEFT_MODES" "$RIG_NVMF_NVMET_MODES" <<'EOF'
import json, os, statistics, sys
res, rounds, runtime, size_mb, blocked = sys.argv[1], int(sys.argv[2]), \
    float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
wmodes, nmodes = sys.argv[6].split(), sys.argv[7].split()

def load(p):
    try:
        with open(os.path.join(res, p)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def fio_jobs(doc):
    out = {}
    for j in (doc or {}).get("jobs", []):
        rw, qd = j["jobname"].split("-qd")
        side = j["read" if rw == "randread" else "write"]
        pct = side.get("lat_ns", {}).get("percentile", {})
        out[(rw, int(qd))] = {"iops": side["iops"],
                              "p50_us": pct.get("50.000000", 0) / 1e3,
                              "p99_us": pct.get("99.000000", 0) / 1e3}
    return out

def weft_jobs(doc):
    out = {}
    runs = (doc or {}).get("runs", [doc] if doc and "iops" in doc else [])
    for j in runs:
        out[(j["rw"], int(j["qd"]))] = {
            "iops": j["iops"], "p50_us": j["p50_us"], "p99_us": j["p99_us"],
            "target_cpu_us_per_io": j.get("target_cpu_us_per_io"),
            "client_cpu_us_per_io": j.get("client_cpu_us_per_io"),
            "verified_reads": j.get("verified_reads"),
            "per_io": j.get("per_io")}
    return out

# weft's operations per I/O (docs/performance.md, "Counts"): exact, so the
# same in every round unless a retry happened; the median per figure.
def per_io_median(per):
    out = {}
    for side in ("client", "targets"):
        vals = {}
        for p in per:
            d = ((p.get("weft") or {}).get("per_io") or {}).get(side) or {}
            for k, v in d.items():
                if isinstance(v, (int, float)):
                    vals.setdefault(k, []).append(v)
        out[side] = {k: round(statistics.median(v), 2) for k, v in vals.items()}
    return out

device = fio_jobs(load("nvmf-device.json"))
rows, summary = [], []
for wm in wmodes:
    for nm in nmodes:
        for rw in ("randread", "randwrite"):
            for qd in (1, 32):
                k = (rw, qd)
                per = []
                for r in range(1, rounds + 1):
                    w = weft_jobs(load("nvmf-weft-%s-%d.json" % (wm, r))).get(k)
                    n = fio_jobs(load("nvmf-nvmet-%s-%d.json" % (nm, r))).get(k)
                    row = {"weft_mode": wm, "nvmet_mode": nm, "rw": rw, "qd": qd,
                           "round": r, "weft": w, "nvmet": n}
                    if w and n and n["iops"]:
                        row["ratio"] = round(w["iops"] / n["iops"], 3)
                    rows.append(row)
                    per.append(row)

                def med(side, key):
                    v = [p[side][key] for p in per if p.get(side)]
                    return round(statistics.median(v), 1) if v else None
                ratios = [p["ratio"] for p in per if "ratio" in p]
                s = {"weft_mode": wm, "nvmet_mode": nm, "rw": rw, "qd": qd,
                     "weft_iops": med("weft", "iops"),
                     "weft_p50_us": med("weft", "p50_us"),
                     "nvmet_iops": med("nvmet", "iops"),
                     "nvmet_p50_us": med("nvmet", "p50_us"),
                     "ratio_median": round(statistics.median(ratios), 3) if ratios else None,
                     "ratios": ratios,
                     "device_iops": round(device[k]["iops"], 1) if k in device else None,
                     "device_p50_us": round(device[k]["p50_us"], 1) if k in device else None,
                     "weft_per_io": per_io_median(per)}
                s["goal_1_25x"] = None if s["ratio_median"] is None else \
                    s["ratio_median"] >= 1.25
                summary.append(s)
doc = {"bs": 4096, "runtime_s": runtime, "working_set_mib": size_mb,
       "rounds": rounds, "backing": "null_blk memory_backed, 4 KiB blocks (both)",
       "modes": {"weft default": "weft-target default --poll-us (0; 50 before 2026-11-29), client waits by libweft's default rule (adaptive polling since 2026-12-07: spins only for replies expected within 200 us, so under emulation it sleeps)",
                 "weft spin": "weft-target --poll-us 0, WEFT_SPIN_US=1000000",
                 "weft poll": "weft-target --poll-us 1000000, WEFT_SPIN_US=1000000",
                 "nvmet irq": "fio io_uring on the nvme-rdma host, interrupts",
                 "nvmet hipri": "fio io_uring --hipri, nvme-rdma poll queue"},
       "nvmet_blocked": blocked or None, "summary": summary, "rows": rows}
json.dump(doc, sys.stdout, indent=1)
print()
print("%-14s %-9s %4s %10s %9s %10s %9s %7s %s" % ("weft/nvmet", "rw", "qd",
      "weft IOPS", "p50 us", "nvmet IOPS", "p50 us", "ratio", "(per round)"),
      file=sys.stderr)
for s in summary:
    print("%-14s %-9s %4d %10s %9s %10s %9s %7s %s" % (
          s["weft_mode"] + "/" + s["nvmet_mode"], s["rw"], s["qd"],
          s["weft_iops"], s["weft_p50_us"], s["nvmet_iops"], s["nvmet_p50_us"],
          s["ratio_median"], s["ratios"]), file=sys.stderr)
    c, t = s["weft_per_io"]["client"], s["weft_per_io"]["targets"]
    if c or t:
        print("%14s weft per I/O: client %s sends %s writes %s completions; "
              "target %s sends %s writes %s completions (the minimum: "
              "docs/performance.md, Counts)" % ("", c.get("fabric_sends"),
              c.get("fabric_writes"), c.get("fabric_completions"),
              t.get("fabric_sends"), t.get("fabric_writes"),
              t.get("fabric_completions")), file=sys.stderr)
EOF
}
