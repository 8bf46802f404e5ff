#!/usr/bin/env bash
# agent_start.sh: how long the agent takes to start, and the CPU it spends doing it.
#
#   tests/bench/agent_start.sh [STARTS]     (root, from the repository root, after `make build`)
#
# Two lab pods, every family on (as in wrk_ratio.sh). Each start runs the agent, polls its
# /metrics every 20 ms until both pods are attached, then reads the process's CPU time (user +
# system, /proc/PID/stat) and stops it. Most of that CPU is the kernel's verifier checking the
# programs (tests/integration/verifier_test.cpp prints what each costs). STARTS defaults to 5;
# the figures are the medians. Prints one summary line, then one JSON object.
# Exit status: 0 measured, 1 could not measure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

starts=${1:-5}
[[ $starts =~ ^[0-9]+$ && $starts -ge 1 && $starts -le 50 ]] || bench_die "STARTS must be 1..50"
bench_init curl
bench_lab_up 2 as
config=$bench_tmp/vigil.yaml
bench_agent_config "$config" "$(bench_free_port)"
bench_on_exit bench_agent_stop
ticks=$(getconf CLK_TCK)

walls=() cpus=()
for ((i = 1; i <= starts; i++)); do
  rm -rf "$bench_tmp/state"
  t0=$(date +%s%N)
  "$bench_vigil" agent --config "$config" >>"$bench_tmp/agent.log" 2>&1 &
  bench_agent_pid=$!
  ready=
  for _ in $(seq 1 1500); do  # 30 s at most
    kill -0 "$bench_agent_pid" 2>/dev/null || { tail -20 "$bench_tmp/agent.log" >&2; bench_die "the agent exited during start"; }
    if [[ $(bench_attached_pods) == 2 ]]; then ready=1; break; fi
    sleep 0.02
  done
  [[ -n $ready ]] || bench_die "the agent did not attach 2 pods within 30 s"
  t1=$(date +%s%N)
  cpu=$(awk -v t="$ticks" '{printf "%.3f", ($14 + $15) / t}' "/proc/$bench_agent_pid/stat")
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
  bench_agent_stop
  bench_log "start $i/$starts: ready in $wall s, $cpu s of CPU"
  walls+=("$wall") cpus+=("$cpu")
done

wall_median=$(printf '%s\n' "${walls[@]}" | bench_median)
cpu_median=$(printf '%s\n' "${cpus[@]}" | bench_median)
echo "agent_start: ready (both pods attached) in $wall_median s, $cpu_median s of CPU (medians of $starts starts)"
printf '{"benchmark":"agent_start","date":"%s","kernel":"%s","cpu":"%s","commit":"%s","starts":%d,"ready_s":[%s],"cpu_s":[%s],"median_ready_s":%s,"median_cpu_s":%s}\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(uname -r)" "$(bench_cpu)" "$(bench_commit)" "$starts" \
  "$(bench_join "${walls[@]}")" "$(bench_join "${cpus[@]}")" "$wall_median" "$cpu_median"
