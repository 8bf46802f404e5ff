#!/usr/bin/env bash
# load_chain.sh: what a TC program's memory loads cost on this machine when one waits for
# another (docs/benchmarks.md (b), session 9), from the kernel's BPF run-time stats.
#
#   tests/bench/load_chain.sh [ROUNDS]     (root, from the repository root, after `make build`)
#
# The five variants of tests/bench/load_chain.bpf.c (see there) are attached in turn to the TCX
# ingress and egress of the two lab pods' host-side veths (vigil_tcx_attach), each under a 4 s
# wrk run from pod 1 to pod 2 (wrk -t1 -c8, /bytes/64, as prog_stats.sh); ROUNDS (default 3)
# repeats the round of five, so that drift falls on every variant. Prints ns a run per variant
# and round (BPF stats add ~60 ns of their own to every run: compare variants, not absolutes),
# then one JSON object.
# Exit status: 0 measured, 1 could not measure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rounds=${1:-3}
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 && $rounds -le 20 ]] || bench_die "ROUNDS must be 1..20"
bench_init wrk curl bpftool python3 clang
bench_on_exit bench_attach_stop
names=(nothing counters-by-ifindex slot-then-counters counters-beside-slot stride-then-counters)
for v in 0 1 2 3 4; do
  clang -O2 -g -target bpf -mcpu=v3 -Wall -Werror -DVARIANT=$v -I/usr/include/"$(uname -m)"-linux-gnu \
    -c "$bench_repo/tests/bench/load_chain.bpf.c" -o "$bench_tmp/chain$v.o" || bench_die "clang -target bpf load_chain.bpf.c failed"
done
bench_lab_up 2 lc
lab serve-http 2 >/dev/null || bench_die "vigil-lab serve-http 2 failed"
url="http://$(lab ip 2):8080/bytes/64"
old=$(sysctl -n kernel.bpf_stats_enabled)
bench_on_exit "sysctl -qw kernel.bpf_stats_enabled=$old"
sysctl -qw kernel.bpf_stats_enabled=1

# "run_cnt run_time_ns" of the attached vigil_load_chain program.
stats() {
  bpftool -j prog show name vigil_load_chain | python3 -c '
import json, sys
p = json.load(sys.stdin)
p = p[0] if isinstance(p, list) else p
print(p.get("run_cnt", 0), p.get("run_time_ns", 0))'
}

records=()
for r in $(seq 1 "$rounds"); do
  for v in 0 1 2 3 4; do
    bench_attach_start "$bench_tmp/chain$v.o" "$(lab veth 1)" "$(lab veth 2)"
    sleep 1
    read -r c0 t0 < <(stats)
    lab exec 1 wrk -t1 -c8 -d4s "$url" >"$bench_tmp/wrk.txt" || bench_die "wrk failed"
    read -r c1 t1 < <(stats)
    bench_attach_stop
    [[ $c1 -gt $c0 ]] || bench_die "the program did not run"
    ns=$(awk -v c=$((c1 - c0)) -v t=$((t1 - t0)) 'BEGIN {printf "%.1f", t / c}')
    printf 'load_chain: round %d: %-22s ns/run %6s\n' "$r" "${names[v]}" "$ns" >&2
    records+=("{\"round\":$r,\"variant\":\"${names[v]}\",\"runs\":$((c1 - c0)),\"run_time_ns\":$((t1 - t0))}")
  done
done
echo "{\"benchmark\":\"load_chain\",\"date\":\"$(date -u +%FT%TZ)\",\"kernel\":\"$(uname -r)\",\"cpu\":\"$(bench_cpu)\",\"commit\":\"$(bench_commit)\",\"records\":[$(bench_join "${records[@]}")]}"
