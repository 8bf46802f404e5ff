#!/usr/bin/env bash
# prog_stats.sh: what each eBPF program costs per request in wrk_ratio.sh's workload, from the
# kernel's own BPF run-time stats: runs per request and nanoseconds per run and per request.
#
#   tests/bench/prog_stats.sh [RUNS]     (root, from the repository root, after `make build`)
#
# Pod 2 serves HTTP (vigil-lab serve-http); with the agent attached (every family on, as in
# wrk_ratio.sh; APISERVER=0 / REMOTE=0 / RETINA=0 turn one off), kernel.bpf_stats_enabled is
# set for the run only (put back on exit) and wrk runs inside pod 1 for SECONDS_PER_RUN (5) s:
#   wrk -t1 -c8 -d5s http://<pod 2>:8080/bytes/64
# The programs' run counts and times are read before and after; RUNS (default 1) repeats the
# wrk run under the same agent. ATTACH=empty measures the empty program of wrk_ratio.sh's
# ATTACH=empty on the same TCX hooks instead: BPF stats put about 60 ns of their own (two clock
# reads) on every run, so a program's own cost is its ns/run minus the empty program's.
# Prints one line per program and run, then one JSON object.
# Exit status: 0 measured, 1 could not measure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

runs=${1:-1}
run_seconds=${SECONDS_PER_RUN:-5}
[[ $runs =~ ^[0-9]+$ && $runs -ge 1 && $runs -le 20 ]] || bench_die "RUNS must be 1..20"
[[ $run_seconds =~ ^[0-9]+$ && $run_seconds -ge 1 && $run_seconds -le 60 ]] || bench_die "SECONDS_PER_RUN must be 1..60"
attach=${ATTACH:-agent}
[[ $attach == agent || $attach == empty ]] || bench_die "ATTACH must be agent or empty"
bench_init wrk curl bpftool python3
bench_lab_up 2 ps
lab serve-http 2 >/dev/null || bench_die "vigil-lab serve-http 2 failed"
url="http://$(lab ip 2):8080/bytes/64"

if [[ $attach == agent ]]; then
  config=$bench_tmp/vigil.yaml
  bench_agent_config "$config" "$(bench_free_port)"
  bench_on_exit bench_agent_stop
  bench_agent_start "$config" 2
else
  command -v clang >/dev/null || bench_die "clang is needed for ATTACH=empty"
  clang -O2 -g -target bpf -Wall -Werror -I/usr/include/"$(uname -m)"-linux-gnu \
    -c "$bench_repo/tests/bench/empty_tc.bpf.c" -o "$bench_tmp/empty_tc.bpf.o" || bench_die "clang -target bpf empty_tc.bpf.c failed"
  bench_on_exit bench_attach_stop
  bench_attach_start "$bench_tmp/empty_tc.bpf.o" "$(lab veth 1)" "$(lab veth 2)"
fi
sleep 2

old=$(sysctl -n kernel.bpf_stats_enabled)
bench_on_exit "sysctl -qw kernel.bpf_stats_enabled=$old"
sysctl -qw kernel.bpf_stats_enabled=1

# "id name run_cnt run_time_ns" of every loaded program.
snapshot() {
  bpftool -j prog show | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    print(p["id"], p.get("name", "?"), p.get("run_cnt", 0), p.get("run_time_ns", 0))'
}

records=()
for r in $(seq 1 "$runs"); do
  snapshot >"$bench_tmp/before"
  lab exec 1 wrk -t1 -c8 -d"${run_seconds}s" "$url" >"$bench_tmp/wrk.txt" || bench_die "wrk failed"
  snapshot >"$bench_tmp/after"
  requests=$(awk '/requests in/ {print $1}' "$bench_tmp/wrk.txt")
  [[ $requests =~ ^[0-9]+$ && $requests -gt 0 ]] || bench_die "wrk made no requests: $(cat "$bench_tmp/wrk.txt")"
  # Programs that ran during the wrk run: name, runs, ns.
  while read -r name count ns; do
    awk -v n="$name" -v c="$count" -v t="$ns" -v q="$requests" -v r="$r" 'BEGIN {
      printf "prog_stats: run %d: %-22s runs %9d  runs/request %5.2f  ns/run %7.1f  ns/request %7.1f\n", r, n, c, c / q, t / c, t / q }' >&2
    records+=("{\"run\":$r,\"program\":\"$name\",\"requests\":$requests,\"runs\":$count,\"run_time_ns\":$ns}")
  done < <(join <(sort "$bench_tmp/before") <(sort "$bench_tmp/after") | awk '$6 > $3 {print $2, $6 - $3, $7 - $4}')
done

echo "{\"benchmark\":\"prog_stats\",\"attached\":\"$attach\",\"date\":\"$(date -u +%FT%TZ)\",\"kernel\":\"$(uname -r)\",\"cpu\":\"$(bench_cpu)\",\"commit\":\"$(bench_commit)\",\"wrk\":\"-t1 -c8 -d${run_seconds}s\",\"records\":[$(bench_join "${records[@]}")]}"
