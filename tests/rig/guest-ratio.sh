# shellcheck shell=bash
# In the guest: alternate perftest and weft-bench fabric over verbs, ROUNDS
# times per size, and print the p50 ratios (docs/rig.md, "Measured verbs
# figures").  Usage: tests/rig/run OUT -- bash /rig/guest-ratio.sh [ROUNDS]
. /rig/guest-lib.sh
rounds=${1:-2}
iters=${RIG_RATIO_ITERS:-5000}
for s in 64 4096; do
	for ((k = 1; k <= rounds; k++)); do
		RIG_PERFTEST_ITERS=$iters rig_perftest write "$s" >/dev/null || exit 1
		pw=$(rig_floor_p50 write "$s")
		RIG_PERFTEST_ITERS=$iters rig_perftest read "$s" >/dev/null || exit 1
		pr=$(rig_floor_p50 read "$s")
		out=$("$WEFT_BIN/weft-bench" fabric --transport verbs --size "$s" \
			--iters "$iters" --spin-us 1000000 --addr "rdma:$RIG_ADDR1:0" \
			--no-floor --json) || exit 1
		w=$(echo "$out" | awk -F: '/"p50_us"/ { gsub(/[ ,]/, "", $2); print $2; exit }')
		r=$(echo "$out" | awk -F: '/"read_p50_us"/ { gsub(/[ ,]/, "", $2); print $2; exit }')
		awk -v s="$s" -v k="$k" -v pw="$pw" -v pr="$pr" -v w="$w" -v r="$r" 'BEGIN {
			printf "size %d round %d: write rtt %.1f us vs 2 x ib_write_lat %.1f (%.2fx); read %.1f vs ib_read_lat %.1f (%.2fx)\n",
				s, k, w, 2 * pw, w / (2 * pw), r, pr, r / pr }'
	done
done
