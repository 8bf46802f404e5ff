#!/usr/bin/env bash
# capture_rate.sh: packets a capture of one pod keeps under a UDP flood, Vigil versus tcpdump
# on the same host-side veth, alternating in one run.
#
#   tests/bench/capture_rate.sh [PAIRS] [COUNT]   (root, from the repository root, after `make build`)
#
# Two lab pods; pod 1 sends COUNT (default 200000) 64-byte UDP datagrams to pod 2 with
# vigil-lab-traffic: SENDER=blast (default; sendmmsg, 64 a call, no pauses: as fast as this
# machine goes) or SENDER=paced (udp-send: bursts of 64, 200 us apart). Each pair is one run of each:
#   vigil:   the agent (lookback off, so the kernel copies packets only while a capture runs)
#            starts a manual capture of pod 1 with snaplen 128 and the filter "udp port 9000";
#            the figure is the capture manifest's packets and packets_lost;
#   tcpdump: tcpdump -i <pod 1's veth> -s 128 -B 8192 (8 MiB, the size of Vigil's ring buffer)
#            -w FILE udp port 9000, stopped after the flood; its "packets captured" and
#            "dropped by kernel".
# The order flips every pair. Both see the same traffic, from the same sender, with the agent
# attached (counters) in both. Prints per-run lines, a summary (median captured fraction and
# captured packets per second of each), then one JSON object. Exit 0 when measured.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pairs=${1:-5}
count=${2:-200000}
[[ $pairs =~ ^[0-9]+$ && $pairs -ge 1 && $pairs -le 30 ]] || bench_die "PAIRS must be 1..30"
[[ $count =~ ^[0-9]+$ && $count -ge 1000 && $count -le 5000000 ]] || bench_die "COUNT must be 1000..5000000"
case ${SENDER:-blast} in
  blast) send_mode=udp-blast ;;
  paced) send_mode=udp-send ;;
  *) bench_die "SENDER must be blast or paced" ;;
esac

bench_init tcpdump curl jq
bench_lab_up 2 bc
veth=$(lab veth 1)
dst=$(lab ip 2)

port=$(bench_free_port)
config=$bench_tmp/vigil.yaml
mkdir -p "$bench_tmp/state"
cat >"$config" <<YAML
tick: 1s
listen: "127.0.0.1:$port"
state_dir: $bench_tmp/state
pods: {source: file, file: $(lab pods-file)}
rules: []
notifiers: [{name: default, type: log}]
captures:
  disk_quota: 4GiB
  max_bytes: 1GiB
  max_packets: 10000000
  max_duration: 10m
  snaplen: 128
  lookback: {pods: none, ring_buffer: 8MiB}
YAML
bench_agent_port=$port
bench_on_exit bench_agent_stop
bench_agent_start "$config" 2
api=http://127.0.0.1:$port/api/v1/captures

# Sends the flood; prints the seconds it took.
flood() {
  local start end out
  start=$(date +%s.%N)
  out=$(ip netns exec "$bench_prefix-pod-1" "$bench_traffic" "$send_mode" "$dst" 9000 "$count" 64) ||
    bench_die "udp-send failed: $out"
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f\n", b - a}'
}

# One Vigil run: "captured lost seconds".
run_vigil() {
  local id secs m i
  id=$(curl -sf -X POST "$api" -H 'Content-Type: application/json' \
    -d '{"pods": ["lab/pod-1"], "before": "0s", "after": "8s", "filter": "udp port 9000", "snaplen": 128}' |
    jq -r .id) || bench_die "capture start failed"
  sleep 1.5  # the kernel starts copying at the end of the next tick
  secs=$(flood)
  for i in $(seq 1 100); do
    m=$(curl -sf "$api/$id") || bench_die "capture $id: manifest unreadable"
    [[ $(jq -r .status <<<"$m") != running ]] && break
    sleep 0.2
  done
  curl -sf -X DELETE "$api/$id" >/dev/null || true
  echo "$(jq -r '.packets' <<<"$m") $(jq -r '.packets_lost' <<<"$m") $secs"
}

# One tcpdump run: "captured dropped seconds".
run_tcpdump() {
  local log=$bench_tmp/tcpdump.log pid secs captured dropped i
  : >"$log"
  tcpdump -i "$veth" -s 128 -B 8192 -w "$bench_tmp/td.pcap" udp port 9000 >"$log" 2>&1 &
  pid=$!
  bench_on_exit "kill $pid"
  for i in $(seq 1 50); do
    grep -q "listening on" "$log" && break
    sleep 0.1
  done
  secs=$(flood)
  sleep 1
  kill -INT "$pid"
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  wait "$pid" 2>/dev/null || true
  captured=$(awk '/packets captured/ {print $1}' "$log")
  dropped=$(awk '/dropped by kernel/ {print $1}' "$log")
  rm -f "$bench_tmp/td.pcap"
  echo "${captured:-0} ${dropped:-0} $secs"
}

bench_log "lab $bench_prefix: $count UDP datagrams pod 1 -> pod 2 ($send_mode), $pairs pairs"
v_frac=() t_frac=() v_pps=() t_pps=()
for p in $(seq 1 "$pairs"); do
  for who in $( ((p % 2)) && echo "vigil tcpdump" || echo "tcpdump vigil"); do
    read -r got lost secs < <("run_$who")
    frac=$(awk -v g="$got" -v c="$count" 'BEGIN {printf "%.4f", g / c}')
    pps=$(awk -v g="$got" -v s="$secs" 'BEGIN {printf "%.0f", g / s}')
    bench_log "pair $p $who: captured $got of $count ($frac), lost/dropped $lost, flood ${secs}s, $pps captured/s"
    if [[ $who == vigil ]]; then v_frac+=("$frac"); v_pps+=("$pps"); else t_frac+=("$frac"); t_pps+=("$pps"); fi
  done
done
vf=$(printf '%s\n' "${v_frac[@]}" | bench_median)
tf=$(printf '%s\n' "${t_frac[@]}" | bench_median)
vp=$(printf '%s\n' "${v_pps[@]}" | bench_median)
tp=$(printf '%s\n' "${t_pps[@]}" | bench_median)
verdict=$(awk -v v="$vf" -v t="$tf" 'BEGIN {print (v >= t) ? "MET" : "MISSED"}')
echo "capture rate: vigil keeps $vf of the packets ($vp/s), tcpdump $tf ($tp/s); target vigil >= tcpdump: $verdict"
printf '{"benchmark":"capture_rate","sender":"%s","commit":"%s","cpu":"%s","count":%s,"pairs":%s,"vigil_fraction":[%s],"tcpdump_fraction":[%s],"vigil_pps":[%s],"tcpdump_pps":[%s],"median_vigil_fraction":%s,"median_tcpdump_fraction":%s,"verdict":"%s"}\n' \
  "$send_mode" "$(bench_commit)" "$(bench_cpu)" "$count" "$pairs" "$(bench_join "${v_frac[@]}")" "$(bench_join "${t_frac[@]}")" \
  "$(bench_join "${v_pps[@]}")" "$(bench_join "${t_pps[@]}")" "$vf" "$tf" "$verdict"
