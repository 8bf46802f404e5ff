#!/usr/bin/env bash
# audit_cost.sh: what metrics.tracepoint_audit costs a dropped packet, under a flood of drops.
#
#   tests/bench/audit_cost.sh [ROUNDS]    (root, from the repository root, after `make build`)
#
# The audit writes a record into a tracefs ring buffer for every hit of the tracepoints Vigil's
# tracing programs run on; a drop is one hit of skb:kfree_skb. BPF stats cannot see that write
# (it is not in a BPF program), so this times the flood itself: two lab pods, pod 2 drops UDP to
# port 9000 in an nftables input chain, pod 1 sends it PACKETS (500,000) datagrams of 64 bytes with
# sendmmsg. On a veth the drop runs in the sender's own softirq, so the sender's wall time per
# datagram holds the drop's cost. Each round runs the agent (every family on) without the audit
# and with it, in an order that flips every round; the audit's cost per drop is the median of the
# rounds' differences. Prints one summary line, then one JSON object.
# Exit status: 0 measured, 1 could not measure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rounds=${1:-7}
packets=${PACKETS:-500000}
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 && $rounds -le 30 ]] || bench_die "ROUNDS must be 1..30"
[[ $packets =~ ^[0-9]+$ && $packets -ge 1000 && $packets -le 10000000 ]] || bench_die "PACKETS must be 1000..10000000"
[[ -d /sys/kernel/tracing/instances ]] || bench_die "tracefs is not mounted at /sys/kernel/tracing (bash .ci/setup.sh)"
bench_init curl nft

bench_lab_up 2 ac
ip netns exec "$bench_prefix-pod-2" nft 'add table inet vigil_bench; add chain inet vigil_bench in { type filter hook input priority 0; }; add rule inet vigil_bench in udp dport 9000 drop' ||
  bench_die "nft in pod 2 failed"
port=$(bench_free_port)
AUDIT=0 bench_agent_config "$bench_tmp/off.yaml" "$port"
AUDIT=1 bench_agent_config "$bench_tmp/on.yaml" "$port"
bench_on_exit bench_agent_stop

# ns per datagram of one flood.
flood() {
  local t0 t1 out
  t0=$(date +%s%N)
  out=$(ip netns exec "$bench_prefix-pod-1" "$bench_traffic" udp-blast "$(lab ip 2)" 9000 "$packets" 64) ||
    bench_die "udp-blast failed: $out"
  t1=$(date +%s%N)
  awk -v a="$t0" -v b="$t1" -v n="$packets" 'BEGIN {printf "%.1f", (b - a) / n}'
}

bench_log "lab $bench_prefix: $packets UDP datagrams of 64 bytes from pod 1, dropped by nftables in pod 2; $rounds rounds"
off=() on=() diff=()
for r in $(seq 1 "$rounds"); do
  for side in $( ((r % 2)) && echo "off on" || echo "on off"); do
    bench_agent_start "$bench_tmp/$side.yaml" 2
    ns=$(flood)
    bench_agent_stop
    if [[ $side == off ]]; then off+=("$ns"); else on+=("$ns"); fi
  done
  diff+=("$(awk -v a="${on[-1]}" -v b="${off[-1]}" 'BEGIN {printf "%.1f", a - b}')")
  bench_log "round $r/$rounds: audit off ${off[-1]} ns, on ${on[-1]} ns a dropped datagram (sent and dropped)"
done
o=$(printf '%s\n' "${off[@]}" | bench_median)
a=$(printf '%s\n' "${on[@]}" | bench_median)
d=$(printf '%s\n' "${diff[@]}" | bench_median)
printf 'audit_cost: %s ns a dropped datagram without the audit, %s with it; the audit adds %s ns a drop (median of %d rounds'"'"' differences, %d drops each)\n' \
  "$o" "$a" "$d" "$rounds" "$packets"
printf '{"benchmark":"audit_cost","date":"%s","kernel":"%s","cpu":"%s","commit":"%s","rounds":%d,"packets":%d,"off_ns":[%s],"on_ns":[%s],"median_off_ns":%s,"median_on_ns":%s,"added_ns":%s}\n' \
  "$(date -u +%FT%TZ)" "$(uname -r)" "$(bench_cpu)" "$(bench_commit)" "$rounds" "$packets" \
  "$(bench_join "${off[@]}")" "$(bench_join "${on[@]}")" "$o" "$a" "$d"
