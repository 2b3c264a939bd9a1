# shellcheck shell=bash
# Helpers of the rig's guest, sourced by guest-init and by every step (each
# step runs in its own bash, its own session and under a hard timeout).

RIG_ADDR0=10.77.0.1     # veth0, rxe0: the "client" side
RIG_ADDR1=10.77.0.2     # veth1, rxe1: the "server" side
RIG_BUILD=/rig/build
RIG_RES=/results
export WEFT_BIN=$RIG_BUILD/bin WEFT_SRC=/rig/src

rig_poweroff() {
	sync
	umount /results 2>/dev/null
	echo o >/proc/sysrq-trigger
	sleep 30
}

# Seconds since boot, with centiseconds, for step timings.
rig_now() { cut -d' ' -f1 /proc/uptime; }

# rig_step NAME TIMEOUT_S FUNCTION_OR_COMMAND [ARGS...]
# Runs it in a new session under a hard timeout, output in logs/NAME.log, and
# appends one JSON line to steps.jsonl.  Anything the step left running is
# killed with its process group.
rig_step() {
	local name=$1 tmo=$2 t0 t1 rc pg
	shift 2
	t0=$(rig_now)
	echo "rig-guest: step $name ..." >/dev/console
	timeout -s KILL "$tmo" setsid bash -c \
		'echo $$ >/tmp/step.pg; . /rig/guest-lib.sh; "$@"' step "$@" \
		>"$RIG_RES/logs/$name.log" 2>&1
	rc=$?
	pg=$(cat /tmp/step.pg 2>/dev/null)
	[[ -n $pg ]] && kill -KILL -- "-$pg" 2>/dev/null
	rm -f /tmp/step.pg
	t1=$(rig_now)
	local secs
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
	local verdict=ok
	((rc == 0)) || verdict=FAILED
	((rc == 137)) && verdict="FAILED (timeout ${tmo}s)"
	printf '{"step":"%s","rc":%d,"seconds":%s}\n' "$name" "$rc" "$secs" \
		>>"$RIG_RES/steps.jsonl"
	echo "rig-guest: step $name: $verdict (${secs}s)" >/dev/console
	return "$rc"
}

# Index of the RoCE v2 GID that carries IPv4 address $2 on device $1.
rig_gid_index() {
	local dev=$1 ip=$2 want f
	want=$(printf '0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x' ${ip//./ })
	for f in /sys/class/infiniband/"$dev"/ports/1/gids/*; do
		if [[ $(cat "$f" 2>/dev/null) == "$want" ]]; then
			basename "$f"
			return 0
		fi
	done
	return 1
}

rig_wait_for() {
	local tries=$1
	shift
	while ((tries-- > 0)); do
		"$@" && return 0
		sleep 0.2
	done
	return 1
}

rig_tcp_listening() { ss -Hltn "sport = :$1" | grep -q .; }

rig_counters() {
	local d
	for d in veth0 veth1; do
		printf '%s rx=%s tx=%s\n' "$d" \
			"$(cat /sys/class/net/$d/statistics/rx_packets)" \
			"$(cat /sys/class/net/$d/statistics/tx_packets)"
	done
}

# Two rxe devices on the two ends of one veth pair, in one namespace.  Local
# addresses are normally routed through lo, which has no rxe device: the
# policy rules send locally generated packets for each address out of the
# other end of the pair, and the local table is consulted only after them
# (incoming packets still match it, since the rules are for iif lo only).
rig_topology() {
	set -ex
	modprobe veth
	modprobe ib_uverbs
	modprobe rdma_ucm
	modprobe rdma_rxe
	ip link set lo up
	ip link add veth0 type veth peer name veth1
	ip addr add "$RIG_ADDR0/24" dev veth0
	ip addr add "$RIG_ADDR1/24" dev veth1
	local k
	for k in all default veth0 veth1; do
		sysctl -qw "net.ipv4.conf.$k.rp_filter=0"
		sysctl -qw "net.ipv4.conf.$k.accept_local=1"
	done
	ip link set veth0 up
	ip link set veth1 up
	rig_wait_for 50 grep -qx up /sys/class/net/veth0/operstate
	rig_wait_for 50 grep -qx up /sys/class/net/veth1/operstate
	ip route add "$RIG_ADDR1" dev veth0 src "$RIG_ADDR0" table 100
	ip route add "$RIG_ADDR0" dev veth1 src "$RIG_ADDR1" table 101
	ip rule add pref 100 iif lo to "$RIG_ADDR1" lookup 100
	ip rule add pref 101 iif lo to "$RIG_ADDR0" lookup 101
	ip rule add pref 200 lookup local
	ip rule del pref 0 lookup local
	ip rule show
	ip route get "$RIG_ADDR1"
	ip route get "$RIG_ADDR0"
	rdma link add rxe0 type rxe netdev veth0
	rdma link add rxe1 type rxe netdev veth1
	rdma link show
	rig_wait_for 50 rig_gid_index rxe0 "$RIG_ADDR0"
	rig_wait_for 50 rig_gid_index rxe1 "$RIG_ADDR1"
	ibv_devinfo -v | grep -E 'hca_id|state|max_qp:|max_mr_size|active_mtu'
	ping -c 2 -W 2 "$RIG_ADDR1"
	rig_counters
}

# rig_perftest write|read SIZE: ib_${1}_lat between rxe1 (server) and rxe0,
# result in perftest-$1-$2.json.  Port exchange over TCP (not -R: rdma_cm
# mode fails to connect now and then on rxe), retried once.
rig_perftest() {
	local op=$1 size=$2 iters=${RIG_PERFTEST_ITERS:-2000} try
	for try in 1 2; do
		rig_perftest_once "$op" "$size" "$iters" && return 0
		echo "perftest try $try failed"
		sleep 1
	done
	return 1
}

rig_perftest_once() {
	local op=$1 size=$2 iters=$3 port=18515 g0 g1 spid line
	g0=$(rig_gid_index rxe0 "$RIG_ADDR0") || return 1
	g1=$(rig_gid_index rxe1 "$RIG_ADDR1") || return 1
	local tool=ib_${op}_lat
	local before after
	before=$(cat /sys/class/net/veth0/statistics/tx_packets)
	$tool -d rxe1 -x "$g1" -s "$size" -n "$iters" -F -p "$port" \
		>/tmp/perftest-srv.log 2>&1 &
	spid=$!
	if ! rig_wait_for 100 rig_tcp_listening "$port"; then
		kill "$spid"
		cat /tmp/perftest-srv.log
		return 1
	fi
	if ! $tool -d rxe0 -x "$g0" -s "$size" -n "$iters" -F -p "$port" \
		"$RIG_ADDR1" >/tmp/perftest-cli.log 2>&1; then
		kill "$spid" 2>/dev/null
		cat /tmp/perftest-cli.log /tmp/perftest-srv.log
		return 1
	fi
	wait "$spid"
	after=$(cat /sys/class/net/veth0/statistics/tx_packets)
	cat /tmp/perftest-cli.log
	# bytes iters t_min t_max t_typical t_avg t_stdev p99 p99.9
	line=$(awk -v s="$size" '$1 == s && NF >= 9 { print; exit }' /tmp/perftest-cli.log)
	[[ -n $line ]] || { echo "no result line"; return 1; }
	# The traffic must really cross the veth, not loop through lo.
	if ((after - before < iters)); then
		echo "veth0 sent $((after - before)) packets for $iters iterations: wrong route"
		return 1
	fi
	set -- $line
	printf '{"tool":"%s","size":%d,"iters":%d,"t_min_us":%s,"p50_us":%s,"avg_us":%s,"p99_us":%s,"p999_us":%s,"veth0_tx_packets":%d}\n' \
		"$tool" "$size" "$2" "$3" "$5" "$6" "$8" "$9" "$((after - before))" \
		>"$RIG_RES/perftest-$op-$size.json"
	cat "$RIG_RES/perftest-$op-$size.json"
}

# The verbs conformance suite: every test_fabric* binary of the build, over
# rdma_cm on the veth pair.
rig_conformance_one() {
	local t=$1 name=${2:-$(basename "$1")}
	WEFT_FABRIC=verbs WEFT_FABRIC_ADDR="rdma:$RIG_ADDR1:0" \
		"$t" --jobs 1 --timeout 120 --verbose=1 --json="$RIG_RES/$name.json"
}

rig_floor_p50() {
	awk -F'"p50_us":' 'NF > 1 { split($2, a, ","); print a[1] }' \
		"$RIG_RES/perftest-$1-$2.json" 2>/dev/null
}

# weft-bench fabric over verbs, busy-polling like perftest does (the
# sleeping path measures the host's scheduler more than the fabric under
# emulation; see docs/rig.md).  Its own floor is perftest; the rig adds the
# ratio to its own perftest run across the veth (perftest-write-SIZE.json),
# doubled: ib_write_lat reports half a round trip.
rig_bench() {
	local size=$1 out=$RIG_RES/bench-fabric-verbs-$1.json p50 floor
	"$WEFT_BIN/weft-bench" fabric --transport verbs --size "$size" \
		--iters "${RIG_BENCH_ITERS:-5000}" --spin-us 1000000 \
		--addr "rdma:$RIG_ADDR1:0" --device rxe1 --client-device rxe0 \
		--json >"$out"
	local rc=$?
	cat "$out"
	p50=$(awk -F: '/"p50_us"/ { gsub(/[ ,]/, "", $2); print $2; exit }' "$out")
	floor=$(rig_floor_p50 write "$size")
	if [[ -n $p50 && -n $floor ]]; then
		awk -v p="$p50" -v f="$floor" -v s="$size" 'BEGIN {
			printf "{\"size\":%d,\"p50_us\":%s,\"ib_write_lat_rtt_p50_us\":%.2f,\"ratio\":%.3f}\n",
				s, p, 2 * f, p / (2 * f) }' >"$RIG_RES/ratio-verbs-$size.json"
		cat "$RIG_RES/ratio-verbs-$size.json"
	fi
	return $rc
}

rig_bench_available() {
	[[ -x $WEFT_BIN/weft-bench ]] &&
		"$WEFT_BIN/weft-bench" fabric --help 2>&1 | grep -q -- --transport
}

# The command runs in a writable tree that looks like the checkout: the
# source files and build/ (the payload's copy of the build).
rig_user_cmd() {
	local f
	mkdir -p /tmp/tree
	for f in /rig/src/* /rig/src/.[!.]*; do
		[[ -e $f ]] && ln -s "$f" /tmp/tree/
	done
	rm -f /tmp/tree/build
	ln -s "$RIG_BUILD" /tmp/tree/build
	cd /tmp/tree
	export WEFT_FABRIC=verbs WEFT_FABRIC_ADDR="rdma:$RIG_ADDR1:0"
	bash -c "$(cat /rig/cmd)"
}

rig_main() {
	local failed=0 t
	: >"$RIG_RES/steps.jsonl"
	if ! rig_step topology 120 rig_topology; then
		rig_summary 1
		return 1
	fi
	if [[ -s /rig/cmd ]]; then
		rig_step cmd "${RIG_CMD_TIMEOUT:-900}" rig_user_cmd || failed=1
		rig_summary "$failed"
		return "$failed"
	fi
	if [[ $(cat /rig/suite 2>/dev/null) == ublk ]]; then
		rig_ublk_suite
		return
	fi
	local op size fab
	for op in write read; do
		for size in 64 4096; do
			rig_step "perftest-$op-$size" 120 rig_perftest "$op" "$size" ||
				failed=1
		done
	done
	local n=0
	for t in "$RIG_BUILD"/tests/test_fabric*; do
		[[ -x $t ]] || continue
		n=$((n + 1))
		rig_step "conformance-$(basename "$t")" 600 rig_conformance_one "$t" ||
			failed=1
	done
	for t in /rig/build-asan/tests/test_fabric*; do
		[[ -x $t ]] || continue
		rig_step "conformance-asan-$(basename "$t")" 900 \
			rig_conformance_one "$t" "asan-$(basename "$t")" || failed=1
	done
	if ((n == 0)); then
		echo "rig-guest: NOTICE: no build/tests/test_fabric* binary: verbs conformance suite SKIPPED" >/dev/console
		echo '{"step":"conformance","skipped":"not built"}' >>"$RIG_RES/steps.jsonl"
	fi
	if rig_bench_available; then
		for size in 64 4096; do
			rig_step "bench-fabric-verbs-$size" 300 rig_bench "$size" ||
				failed=1
		done
	else
		echo "rig-guest: NOTICE: weft-bench fabric has no --transport yet: fabric benchmark SKIPPED" >/dev/console
		echo '{"step":"bench-fabric","skipped":"not built"}' >>"$RIG_RES/steps.jsonl"
	fi
	# The data path over verbs (tests/rig/guest-io.sh).
	for t in test_sys_io test_sys_crash test_sys_repl; do
		if [[ -x $RIG_BUILD/tests/$t ]]; then
			rig_step "${t#test_}-verbs" 1500 rig_sys_verbs "$t" || failed=1
		else
			echo "rig-guest: NOTICE: no build/tests/$t: data-path tests over verbs SKIPPED" >/dev/console
			echo "{\"step\":\"${t#test_}-verbs\",\"skipped\":\"not built\"}" >>"$RIG_RES/steps.jsonl"
		fi
	done
	if [[ -x $WEFT_BIN/weft-target && -x $WEFT_BIN/weft-bench ]]; then
		rig_step io-verify-verbs 300 rig_io_verify_verbs || failed=1
		rig_step nvmf-compare 900 rig_nvmf_compare || failed=1
		# A volume as a block device: nbdkit + the kernel's NBD client
		# (tests/rig/guest-nbd.sh).
		for fab in tcp verbs; do
			rig_step "nbd-fs-$fab" 600 rig_nbd_fs "$fab" || failed=1
		done
	else
		echo "rig-guest: NOTICE: no weft-target/weft-bench: I/O over verbs and the NVMe-oF comparison SKIPPED" >/dev/console
		echo '{"step":"nvmf-compare","skipped":"not built"}' >>"$RIG_RES/steps.jsonl"
	fi
	rig_finish "$failed"
}

# The ublk suite (tests/rig/guest-ublk.sh), on the backports kernel: a
# volume as /dev/ublkbN through weft-ublk, libweft over tcp then verbs.
rig_ublk_suite() {
	local failed=0 fab
	if [[ -x $WEFT_BIN/weft-target && -x $WEFT_BIN/weft-ublk ]]; then
		for fab in tcp verbs; do
			rig_step "ublk-fs-$fab" 900 rig_ublk_fs "$fab" || failed=1
		done
		rig_step ublk-enospc-tcp 600 rig_ublk_enospc tcp || failed=1
	else
		rig_skip ublk-fs "no weft-target/weft-ublk: ublk steps"
	fi
	rig_finish "$failed"
}

# The last step, the summary; returns failed.
rig_finish() {
	rig_step rxe-state 30 rig_counters || true
	rig_summary "$1"
	return "$1"
}

# rig_skip STEP WHAT: WHAT is not built: said on the console and recorded.
rig_skip() {
	echo "rig-guest: NOTICE: $2 SKIPPED" >/dev/console
	echo "{\"step\":\"$1\",\"skipped\":\"not built\"}" >>"$RIG_RES/steps.jsonl"
}

rig_summary() {
	{
		printf '{"ok":%s,"kernel":"%s","steps":[' \
			"$( (($1 == 0)) && echo true || echo false)" "$(uname -r)"
		paste -sd, "$RIG_RES/steps.jsonl" | tr -d '\n'
		printf '],"perftest":['
		cat "$RIG_RES"/perftest-*.json 2>/dev/null | paste -sd, | tr -d '\n'
		printf '],"verbs_vs_perftest":['
		cat "$RIG_RES"/ratio-verbs-*.json 2>/dev/null | paste -sd, | tr -d '\n'
		printf '],"nvmf_compare":'
		python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["summary"]), end="")' \
			"$RIG_RES/nvmf-compare.json" 2>/dev/null || printf null
		printf '}\n'
	} >"$RIG_RES/summary.json"
}

# The data path over verbs and the NVMe-oF/RDMA comparison.
. /rig/guest-io.sh
# A volume as a block device through nbdkit and the kernel's NBD client.
. /rig/guest-nbd.sh
# ... and through the kernel's ublk driver (the ublk suite).
. /rig/guest-ublk.sh
