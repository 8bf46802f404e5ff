#!/usr/bin/env bash
# drop_cost.sh: what counting a drop costs, under a flood of drops, from the kernel's BPF stats.
#
#   tests/bench/drop_cost.sh [ROUNDS]    (root, from the repository root, after `make build`)
#
# Two lab pods; pod 2 drops UDP to port 9000 in an nftables input chain (kernel drop reason
# NETFILTER_DROP), and pod 1 sends it PACKETS (200,000) datagrams of 64 bytes with sendmmsg
# (vigil-lab-traffic udp-blast), so the kfree_skb tracepoint fires once per datagram. Each round
# measures, in an order that flips every round:
#   empty: tests/bench/empty_kfree_skb.bpf.c, a tp_btf/kfree_skb program that does nothing,
#          attached by vigil_tcx_attach;
#   vigil: the agent's vigil_kfree_skb (every family on, as in bpf_cost.sh: remote context for
#          the lab pods, so each drop is also counted by peer).
# ns/run = delta run_time_ns / delta run_cnt over the flood (kernel.bpf_stats_enabled, set for
# the run only). The stats' own clock reads cost tens of ns a run, so Vigil's cost per drop is
# vigil - empty. Medians over ROUNDS (default 5). Prints one summary line, then one JSON object.
# Exit status: 0 measured, 1 could not measure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rounds=${1:-5}
packets=${PACKETS:-200000}
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 && $rounds -le 30 ]] || bench_die "ROUNDS must be 1..30"
[[ $packets =~ ^[0-9]+$ && $packets -ge 1000 && $packets -le 10000000 ]] || bench_die "PACKETS must be 1000..10000000"
bench_init curl jq bpftool nft clang
clang -O2 -g -target bpf -Wall -Werror -I/usr/include/"$(uname -m)"-linux-gnu \
  -c "$bench_repo/tests/bench/empty_kfree_skb.bpf.c" -o "$bench_tmp/empty_kfree_skb.bpf.o" ||
  bench_die "clang -target bpf empty_kfree_skb.bpf.c failed"

bench_lab_up 2 dc
ip netns exec "$bench_prefix-pod-2" nft 'add table inet vigil_bench; add chain inet vigil_bench in { type filter hook input priority 0; }; add rule inet vigil_bench in udp dport 9000 drop' ||
  bench_die "nft in pod 2 failed"
config=$bench_tmp/vigil.yaml
bench_agent_config "$config" "$(bench_free_port)"
bench_on_exit bench_agent_stop
old_stats=$(sysctl -n kernel.bpf_stats_enabled)
bench_on_exit "sysctl -qw kernel.bpf_stats_enabled=$old_stats"
sysctl -qw kernel.bpf_stats_enabled=1

bench_on_exit bench_attach_stop

# "run_time_ns run_cnt" of the newest program called NAME.
stats_of() {
  bpftool prog show -j | jq -r --arg n "$1" '[.[] | select(.name == $n)] | last | "\(.run_time_ns // 0) \(.run_cnt // 0)"'
}
# Floods pod 2 and prints the ns/run of program NAME over the flood.
measure() {
  local name=$1 before after out
  before=$(stats_of "$name")
  [[ $before != "null null" && -n $before ]] || bench_die "no program $name loaded"
  out=$(ip netns exec "$bench_prefix-pod-1" "$bench_traffic" udp-blast "$(lab ip 2)" 9000 "$packets" 64) ||
    bench_die "udp-blast failed: $out"
  after=$(stats_of "$name")
  awk -v b="$before" -v a="$after" -v want="$packets" -v name="$name" 'BEGIN {
    split(b, x, " "); split(a, y, " "); n = y[2] - x[2]
    if (n < want / 2) { printf "drop_cost: %s ran %d times for %d datagrams dropped: stats not counting?\n", name, n, want > "/dev/stderr"; exit 1 }
    printf "%.2f %d\n", (y[1] - x[1]) / n, n }'
}

bench_log "lab $bench_prefix: $packets UDP datagrams of 64 bytes from pod 1, dropped by nftables in pod 2; $rounds rounds"
empty=() vigil=() runs=()
for r in $(seq 1 "$rounds"); do
  for side in $( ((r % 2)) && echo "empty vigil" || echo "vigil empty"); do
    if [[ $side == empty ]]; then
      bench_attach_start "$bench_tmp/empty_kfree_skb.bpf.o"
      read -r ns n < <(measure vigil_bench_empty_drop) || exit 1
      bench_attach_stop
      empty+=("$ns")
    else
      bench_agent_start "$config" 2
      read -r ns n < <(measure vigil_kfree_skb) || exit 1
      bench_agent_stop
      vigil+=("$ns") runs+=("$n")
    fi
  done
  bench_log "round $r/$rounds: empty ${empty[-1]} ns/run, vigil ${vigil[-1]} ns/run"
done
e=$(printf '%s\n' "${empty[@]}" | bench_median)
v=$(printf '%s\n' "${vigil[@]}" | bench_median)
added=$(awk -v a="$v" -v b="$e" 'BEGIN {printf "%.1f", a - b}')
printf 'drop_cost: empty %.1f ns/run, vigil_kfree_skb %.1f ns/run, added %s ns per dropped packet (medians of %d rounds of %d drops)\n' \
  "$e" "$v" "$added" "$rounds" "$packets"
printf '{"benchmark":"drop_cost","date":"%s","kernel":"%s","cpu":"%s","commit":"%s","rounds":%d,"packets":%d,"empty_ns_per_run":[%s],"vigil_ns_per_run":[%s],"vigil_runs":[%s],"median_empty_ns":%s,"median_vigil_ns":%s,"added_ns":%s}\n' \
  "$(date -u +%FT%TZ)" "$(uname -r)" "$(bench_cpu)" "$(bench_commit)" "$rounds" "$packets" \
  "$(bench_join "${empty[@]}")" "$(bench_join "${vigil[@]}")" "$(bench_join "${runs[@]}")" "$e" "$v" "$added"
