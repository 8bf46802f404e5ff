# shellcheck shell=bash
# Shared by the benchmark scripts in this folder (sourced, not run). Each script creates its
# own lab with a unique prefix, starts its own agent, and undoes everything it did on exit,
# failure and interrupt included: `bench_on_exit CMD` queues a cleanup step, run in reverse.
#
# Environment: BUILD (default build), a build directory relative to the repository root or
# absolute, with `vigil` and `tests/tools/vigil-lab-traffic` built (`make build`); VIGIL_COMMIT,
# the commit recorded in the JSON (default: this checkout's HEAD, "+dirty" if modified).

bench_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bench_build=${BUILD:-build}
[[ $bench_build == /* ]] || bench_build=$bench_repo/$bench_build
bench_vigil=$bench_build/vigil
bench_traffic=$bench_build/tests/tools/vigil-lab-traffic
export VIGIL_LAB_TRAFFIC=$bench_traffic

bench_name=$(basename "$0" .sh)
bench_cleanup=()
bench_tmp=
bench_prefix=
bench_agent_pid=

bench_die() { echo "$bench_name: $*" >&2; exit 1; }
bench_log() { echo "$bench_name: $*" >&2; }

bench_on_exit() { bench_cleanup+=("$*"); }
bench_run_cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  for ((i = ${#bench_cleanup[@]} - 1; i >= 0; i--)); do eval "${bench_cleanup[i]}" >/dev/null 2>&1 || true; done
  exit "$rc"
}

# Checks privileges and binaries, makes a temp dir and arms the cleanup trap.
bench_init() {
  [[ $(id -u) -eq 0 ]] || bench_die "run as root (lab namespaces, TC filters, BPF stats)"
  [[ -x $bench_vigil ]] || bench_die "$bench_vigil not built (make build, or BUILD=<build dir>)"
  [[ -x $bench_traffic ]] || bench_die "$bench_traffic not built (make build, or BUILD=<build dir>)"
  local tool
  for tool in "$@"; do command -v "$tool" >/dev/null || bench_die "$tool not installed (bash .ci/setup.sh)"; done
  trap bench_run_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  bench_tmp=$(mktemp -d "/tmp/vigil-$bench_name.XXXXXX")
  bench_on_exit "rm -rf '$bench_tmp'"
}

# Runs CMD... in the background, output to LOG, and kills that very process (by pid) on exit.
# Sets bench_spawned_pid.
bench_spawn() {
  local log=$1
  shift
  "$@" >>"$log" 2>&1 &
  bench_spawned_pid=$!
  bench_on_exit "kill $bench_spawned_pid"
}

# Runs vigil_tcx_attach OBJ [IFNAME...] (built with the agent) in the background: OBJ's first
# program on each interface's TCX hooks, or where its section says when no interface is named.
# Returns once it printed "attached" (10 s at most); bench_attach_stop detaches it. Callers queue
# bench_on_exit bench_attach_stop.
bench_attach_pid=
bench_attach_start() {
  local tool=$bench_build/tests/bench/vigil_tcx_attach out=$bench_tmp/attach.out i
  [[ -x $tool ]] || bench_die "$tool not built (make build)"
  "$tool" "$@" >"$out" 2>&1 &
  bench_attach_pid=$!
  for i in $(seq 1 100); do
    grep -q '^attached' "$out" 2>/dev/null && return 0
    kill -0 "$bench_attach_pid" 2>/dev/null || bench_die "vigil_tcx_attach failed: $(cat "$out")"
    sleep 0.1
  done
  bench_die "vigil_tcx_attach did not attach within 10 s"
}
bench_attach_stop() {
  [[ -n $bench_attach_pid ]] || return 0
  kill -TERM "$bench_attach_pid" 2>/dev/null || true
  wait "$bench_attach_pid" 2>/dev/null || true
  bench_attach_pid=
}

# vigil-lab with this run's prefix.
lab() { "$bench_repo/tests/lab/vigil-lab" --prefix "$bench_prefix" "$@"; }

# Brings up N lab pods under a prefix no other lab on this machine uses; `lab down` on exit.
bench_lab_up() {
  local n=$1 stem=$2
  for _ in $(seq 1 20); do
    bench_prefix=$stem$((RANDOM % 10000))
    [[ -e /run/vigil-lab/$bench_prefix ]] && continue
    ip netns list | awk '{print $1}' | grep -q "^$bench_prefix-pod-" && continue
    ip link show "${bench_prefix}-br0" >/dev/null 2>&1 && continue
    bench_on_exit lab down
    lab up "$n" >/dev/null || bench_die "vigil-lab up $n failed"
    return 0
  done
  bench_die "no free lab prefix found"
}

# A localhost port nobody listens on, for the agent's HTTP server.
bench_free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 30000))
    ss -Hltn "sport = :$port" | grep -q . || { echo "$port"; return 0; }
  done
  bench_die "no free TCP port found"
}

# Writes an agent config for the lab's pods file with the shipped rule pack and every metric
# family on: remote context for all lab pods (namespace "lab", at most 64 peers each), the
# Retina view and API server latency (its sock_ops program then sees every socket's connection
# events; the address, 10.96.0.1:443, is a Kubernetes default that the lab never talks to). DNS and TCP
# counting have no switch; they are always on. REMOTE=0, RETINA=0 and APISERVER=0 leave those
# off (to see what they cost); NETSTAT=0 turns the netstat family off, NETSTAT=all counts every
# pod's TCP sockets by state too (metrics.netstat.sockets: all). PACKET_LEVEL=selected gives no
# pod the per-packet TC programs (metrics.packet_level: {pods: selected}, nothing selected): the
# pods are then counted from their interfaces' statistics and the kernel's events, and remote
# context, which needs the programs, is left off.
bench_agent_config() {
  local file=$1 port=$2 tick=${3:-1s} remote=${4:-${REMOTE:-1}} retina=true netstat="{sockets: node}" packet_level=""
  case ${PACKET_LEVEL:-all} in
    all) ;;
    selected) packet_level=", packet_level: {pods: selected}" remote=0 ;;
    *) bench_die "PACKET_LEVEL must be all or selected" ;;
  esac
  [[ ${RETINA:-1} == 0 ]] && retina=false
  [[ ${NETSTAT:-1} == 0 ]] && netstat="{enabled: false}"
  [[ ${NETSTAT:-1} == all ]] && netstat="{sockets: all}"
  local audit=""
  case ${AUDIT:-0} in
    0) ;;
    1) audit=", tracepoint_audit: true" ;;
    *) bench_die "AUDIT must be 0 or 1" ;;
  esac
  local ingress=""  # metrics.ingress_hook (INGRESS_HOOK=auto|host|pod); the lab has no CNI programs: auto is host
  [[ -n ${INGRESS_HOOK:-} ]] && ingress=", ingress_hook: $INGRESS_HOOK"
  local tcx=""  # TCX=0: metrics.tcx: false, clsact filters as kernels before 6.6 get
  case ${TCX:-1} in
    1) ;;
    0) tcx=", tcx: false" ;;
    *) bench_die "TCX must be 0 or 1" ;;
  esac
  mkdir -p "$bench_tmp/state"
  cat >"$file" <<YAML
tick: $tick
listen: "127.0.0.1:$port"
state_dir: $bench_tmp/state
pods: {source: file, file: $(lab pods-file)}
rules: ["$bench_repo/rules/pack/*.lua"]
notifiers:
  - {name: default, type: log}
metrics: {retina_compat: $retina, netstat: $netstat$packet_level$audit$ingress$tcx}
YAML
  if [[ ${APISERVER:-1} == 1 ]]; then echo "apiserver: {addresses: [10.96.0.1:443]}" >>"$file"; fi
  if [[ $remote == 1 ]]; then echo "remote_context: {namespaces: [lab], max_peers: 64}" >>"$file"; fi
  bench_agent_port=$port
}

# Value of vigil_pods{state="attached"} from the agent's /metrics, or nothing.
bench_attached_pods() {
  curl -s --max-time 2 "http://127.0.0.1:$bench_agent_port/metrics" 2>/dev/null |
    awk '$1 == "vigil_pods{state=\"attached\"}" {print $2 + 0}'
}

# Starts the agent and waits (bounded) until all N pods are attached.
bench_agent_start() {
  local config=$1 want=$2 log=$bench_tmp/agent.log i
  "$bench_vigil" agent --config "$config" >>"$log" 2>&1 &
  bench_agent_pid=$!
  for i in $(seq 1 300); do
    if ! kill -0 "$bench_agent_pid" 2>/dev/null; then
      tail -20 "$log" >&2
      bench_die "the agent exited during start (log above)"
    fi
    [[ $(bench_attached_pods) == "$want" ]] && return 0
    sleep 0.1
  done
  tail -20 "$log" >&2
  bench_die "the agent did not attach $want pods within 30 s (log above)"
}

# SIGTERM (the agent detaches its TC filters), bounded wait, then SIGKILL.
bench_agent_stop() {
  [[ -n $bench_agent_pid ]] || return 0
  local i
  kill -TERM "$bench_agent_pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 "$bench_agent_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$bench_agent_pid" 2>/dev/null || true
  wait "$bench_agent_pid" 2>/dev/null || true
  bench_agent_pid=
}

# Median of the numbers on stdin, one per line.
bench_median() {
  sort -g | awk '{v[NR] = $1} END {if (NR == 0) exit 1; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# The Q-quantile (0..1, linear interpolation) of the numbers on stdin, one per line.
bench_quantile() {
  sort -g | awk -v q="$1" '{v[NR] = $1} END {if (NR == 0) exit 1; h = (NR - 1) * q + 1; l = int(h); u = (l < NR) ? l + 1 : l; printf "%.4f\n", v[l] + (h - l) * (v[u] - v[l])}'
}

# The verdict of a median's 95 % interval LOW..HIGH against TARGET: met when it lies wholly at or
# above, missed when wholly below, else inconclusive, whatever the median.
bench_interval_verdict() {
  awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN {print (a >= t) ? "target met" : (b < t) ? "TARGET MISSED" : "INCONCLUSIVE"}'
}

# A distribution-free confidence interval for the median of the numbers on stdin: prints "LOW
# HIGH", the k-th smallest and k-th largest, with k the largest rank such that the interval
# holds the median with probability >= 95 % (binomial order statistics; needs at least 6
# numbers, else it prints the smallest and largest).
bench_median_ci() {
  sort -g | awk '{v[NR] = $1} END {
    n = NR; if (n == 0) exit 1
    # P(Bin(n, 1/2) <= j) for growing j; k - 1 is the largest j with 2 * P <= 0.05. The terms
    # are summed from their logarithms: 0.5^n itself underflows to 0 beyond n = 1074, which
    # made k = n and swapped the ends of the interval.
    lp = n * log(0.5); cdf = exp(lp); k = 0
    for (j = 0; j < n; ++j) {
      if (2 * cdf > 0.05) break
      k = j + 1
      lp += log((n - j) / (j + 1)); cdf += exp(lp)
    }
    if (k < 1) k = 1
    if (k > n - k + 1) k = n - k + 1
    printf "%s %s\n", v[k], v[n - k + 1]
  }'
}

# "a,b,c" from the arguments, for JSON arrays.
bench_join() { local IFS=,; echo "$*"; }

# The source commit, "+dirty" when files that go into the agent differ from it. VIGIL_COMMIT
# overrides it, for a build made from another tree than this checkout.
bench_commit() {
  local c
  if [[ -n ${VIGIL_COMMIT:-} ]]; then echo "$VIGIL_COMMIT"; return; fi
  c=$(git -C "$bench_repo" rev-parse --short HEAD 2>/dev/null) || { echo unknown; return; }
  git -C "$bench_repo" diff --quiet HEAD -- bpf engine rules actions CMakeLists.txt 2>/dev/null || c+=+dirty
  echo "$c"
}

# "N x model" of this machine's CPUs, for the records.
bench_cpu() {
  echo "$(nproc) x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
}
