#!/usr/bin/env bash
# wrk_ratio.sh: HTTP request rate between two lab pods with the agent attached, as a fraction
# of the rate without it.
#
#   tests/bench/wrk_ratio.sh [PAIRS]     (root, from the repository root, after `make build`)
#
# Pod 2 serves HTTP (vigil-lab serve-http); wrk runs inside pod 1:
#   wrk -t1 -c8 -d${SECONDS_PER_RUN:-3}s http://<pod 2>:8080/bytes/64
# Each pair is one run without the agent and one with it (started, pods attached, then
# stopped with SIGTERM, which detaches its filters; every family on, as in bpf_cost.sh); the
# order flips every pair so that drift
# on this shared machine falls on both sides; the attached run starts SETTLE seconds (default
# 2) after the agent has attached every pod, and an unattached run as long after it stopped,
# so that they measure steady states, not the agent's start or exit. PAIRS defaults to 30. The figure is the median of the per-pair ratios
# attached/not attached, with a distribution-free 95 % confidence interval for that median
# (order statistics): the verdict stands when the interval lies wholly on one side of the
# target, and is INCONCLUSIVE (whatever the median) when the target is inside it. Prints one
# summary line, then one JSON object.
# ATTACH=empty measures, instead of the agent, a program that does nothing
# (tests/bench/empty_tc.bpf.c) on the same TCX hooks of the two pods' host-side veths
# (vigil_tcx_attach): what the hooks cost on their own on this machine. HOOKS=ingress or
# HOOKS=egress puts it on that hook of the two veths only (with ATTACH=empty only).
# EMPTY_ON=idle puts it instead on both hooks of an idle interface the script makes (one end of
# a veth pair, up, no address, IPv6 off, so that no packet crosses it) (with ATTACH=empty only): whether a hook costs the stack anything beyond the packets it
# sees (the kernel's TCX static keys turn the hook checks on for every interface).
# NOPODS=1 gives the agent a pods file with no pod: it attaches no TC program, so the ratio is
# what its process, its tracing programs and its sock_ops program cost without the per-packet
# programs (with ATTACH=agent only).
# STAY=1 keeps one agent running for the whole run and attaches or detaches the pods by rewriting
# its pods file (the two pods, or none), as when pods come and go: no agent start or exit between
# runs, and its process, tracing and sock_ops programs on both sides, so the ratio is what the
# per-pod TC programs and the agent's per-pod work cost (with ATTACH=agent only; a diagnostic,
# not the acceptance figure, which counts the agent's process too).
# BASE=empty puts that empty program on the "not attached" side instead of nothing: the ratio is
# then what the agent costs beyond the hooks themselves, the part of the cost that is Vigil's own
# (with ATTACH=agent only).
# TRIO=1 measures three states in every round instead of two: nothing, the empty program on the
# hooks, and the agent, in an order that goes through all six permutations, so that the agent
# against nothing, the hooks' floor (empty against nothing) and Vigil's own share (agent against
# empty) come from the same minutes, not from runs an hour apart (ATTACH and BASE not set). PAIRS
# is then the number of rounds; the JSON line's "ratios" are agent/nothing, "ratios_empty_none"
# and "ratios_agent_empty" the other two.
# PACKET_LEVEL=selected runs the agent with no pod chosen for the per-packet programs
# (metrics.packet_level; lib.sh's bench_agent_config): forward counts from the interfaces'
# statistics, drops, TCP and netstat from the kernel's events and tables, no TC program on the
# pods' path, no remote context.
# Exit status: 0 measured (target met or not, see the summary), 1 could not measure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pairs=${1:-30}
run_seconds=${SECONDS_PER_RUN:-3}
settle=${SETTLE:-2}
target=0.97
[[ $pairs =~ ^[0-9]+$ && $pairs -ge 1 && $pairs -le 50 ]] || bench_die "PAIRS must be 1..50"
[[ $run_seconds =~ ^[0-9]+$ && $run_seconds -ge 1 && $run_seconds -le 30 ]] || bench_die "SECONDS_PER_RUN must be 1..30"
[[ $settle =~ ^[0-9]+$ && $settle -le 30 ]] || bench_die "SETTLE must be 0..30"

attach=${ATTACH:-agent}
base=${BASE:-none}
[[ $attach == agent || $attach == empty ]] || bench_die "ATTACH must be agent or empty"
[[ $base == none || $base == empty ]] || bench_die "BASE must be none or empty"
[[ $base == none || $attach == agent ]] || bench_die "BASE=empty compares the agent with the empty program: ATTACH=agent only"
stay=${STAY:-0}
[[ $stay == 0 || $stay == 1 ]] || bench_die "STAY must be 0 or 1"
[[ $stay == 0 || ($attach == agent && $base == none) ]] || bench_die "STAY=1 is for the agent against nothing: ATTACH=agent, BASE=none"
nopods=${NOPODS:-0}
[[ $nopods == 0 || $nopods == 1 ]] || bench_die "NOPODS must be 0 or 1"
[[ $nopods == 0 || $attach == agent ]] || bench_die "NOPODS=1 is for the agent: ATTACH=agent only"
[[ $nopods == 0 || $stay == 0 ]] || bench_die "STAY=1 and NOPODS=1 do not go together"
hooks=${HOOKS:-both}
[[ $hooks == both || $hooks == ingress || $hooks == egress ]] || bench_die "HOOKS must be both, ingress or egress"
[[ $hooks == both || ($attach == empty && $base == none) ]] || bench_die "HOOKS= is for ATTACH=empty only"
empty_on=${EMPTY_ON:-pods}
[[ $empty_on == pods || $empty_on == idle ]] || bench_die "EMPTY_ON must be pods or idle"
[[ $empty_on == pods || ($attach == empty && $base == none && $hooks == both) ]] || bench_die "EMPTY_ON=idle is for ATTACH=empty only"
trio=${TRIO:-0}
[[ $trio == 0 || $trio == 1 ]] || bench_die "TRIO must be 0 or 1"
[[ $trio == 0 || ($attach == agent && $base == none && $stay == 0 && $nopods == 0) ]] ||
  bench_die "TRIO=1 measures nothing, the empty program and the agent: no ATTACH, BASE, STAY or NOPODS"
# Remote context needs the programs: off with PACKET_LEVEL=selected (and said so in the JSON).
[[ ${PACKET_LEVEL:-all} == selected ]] && REMOTE=0
bench_init wrk curl
bench_lab_up 2 bw
lab serve-http 2 >/dev/null || bench_die "vigil-lab serve-http 2 failed"
url="http://$(lab ip 2):8080/bytes/64"

config=$bench_tmp/vigil.yaml
bench_agent_config "$config" "$(bench_free_port)"
agent_pods=2
# NOPODS=1 and STAY=1 give the agent a pods file of its own, empty to begin with (NOPODS: for good).
if [[ $nopods == 1 || $stay == 1 ]]; then
  pods_now=$bench_tmp/pods-now.yaml
  : >"$pods_now"
  sed -i "s|^pods: .*|pods: {source: file, file: $pods_now}|" "$config"
  grep -q "pods-now.yaml" "$config" || bench_die "could not rewrite the pods line of $config"
  agent_pods=0
fi
bench_on_exit bench_agent_stop
if [[ $stay == 1 ]]; then
  # Lists the pods ($1 = 1) or none, atomically, and waits (bounded) until the agent says so.
  stay_pods() {
    local want=0 i
    if [[ $1 == 1 ]]; then cp "$(lab pods-file)" "$pods_now.new"; want=2; else : >"$pods_now.new"; fi
    mv "$pods_now.new" "$pods_now"
    for i in $(seq 1 100); do
      [[ $(bench_attached_pods) == "$want" ]] && return 0
      sleep 0.1
    done
    bench_die "STAY=1: the agent did not get to $want attached pods within 10 s"
  }
fi

# What is attached for the "attached" side: the agent, or the empty program on its hooks.
if [[ $attach == empty || $base == empty || $trio == 1 ]]; then
  command -v clang >/dev/null || bench_die "clang is needed for ATTACH=empty"
  clang -O2 -g -target bpf -Wall -Werror -I/usr/include/"$(uname -m)"-linux-gnu \
    -c "$bench_repo/tests/bench/empty_tc.bpf.c" -o "$bench_tmp/empty_tc.bpf.o" || bench_die "clang -target bpf empty_tc.bpf.c failed"
fi
empty_devices=("$(lab veth 1)" "$(lab veth 2)")
if [[ $empty_on == idle ]]; then
  empty_devices=("$bench_prefix-idle")
  ip link add "${empty_devices[0]}" type veth peer name "$bench_prefix-idlep" || bench_die "ip link add ${empty_devices[0]} type veth failed"
  bench_on_exit ip link del "${empty_devices[0]}"
  for dev in "${empty_devices[0]}" "$bench_prefix-idlep"; do
    sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=1" && ip link set "$dev" up || bench_die "could not bring $dev up without IPv6"
  done
fi
empty_start() { VIGIL_TCX_HOOKS=$hooks bench_attach_start "$bench_tmp/empty_tc.bpf.o" "${empty_devices[@]}"; }
empty_stop() { bench_attach_stop; }
bench_on_exit bench_attach_stop
attach_start() {
  if [[ $stay == 1 ]]; then stay_pods 1
  elif [[ $attach == agent ]]; then bench_agent_start "$config" "$agent_pods"
  else empty_start; fi
}
attach_stop() {
  if [[ $stay == 1 ]]; then stay_pods 0
  elif [[ $attach == agent ]]; then bench_agent_stop
  else empty_stop; fi
}
# The "not attached" side: nothing, or (BASE=empty) the empty program on the same hooks.
base_start() { if [[ $base == empty ]]; then empty_start; sleep "$settle"; fi; }
base_stop() { if [[ $base == empty ]]; then empty_stop; fi; }

# Requests per second of one wrk run from pod 1.
wrk_rate() {
  local out rate
  out=$(timeout $((run_seconds + 15)) ip netns exec "$bench_prefix-pod-1" wrk -t1 -c8 -d"${run_seconds}s" "$url" 2>&1) ||
    bench_die "wrk failed: $out"
  rate=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  [[ -n $rate ]] || bench_die "no Requests/sec in wrk output: $out"
  if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then bench_log "wrk reported errors: $(grep 'Non-2xx\|Socket errors' <<<"$out")"; fi
  echo "$rate"
}

bench_log "lab $bench_prefix: wrk -t1 -c8 -d${run_seconds}s $url from pod 1, $pairs pairs, attached: $attach (hooks: $hooks on $empty_on), base: $base"
if [[ $stay == 1 ]]; then bench_agent_start "$config" "$agent_pods"; sleep "$settle"; fi
wrk_rate >/dev/null  # warm-up, not counted

pct() { awk -v r="$1" 'BEGIN {printf "%.1f", r * 100}'; }
# "NAME = median% (95 % interval low%..high%)" of the ratios on stdin.
ratio_summary() {
  local values med low high
  values=$(cat)
  med=$(bench_median <<<"$values")
  read -r low high < <(bench_median_ci <<<"$values")
  echo "$(pct "$med")% (95% interval $(pct "$low")%..$(pct "$high")%)"
}

if [[ $trio == 1 ]]; then
  # One state's wrk rate into rate[STATE]: started, settled, measured, stopped (nothing: only the
  # settle time). Not in a subshell, so that the exit trap stops what it started.
  state_rate() {
    case $1 in
      empty) empty_start ;;
      agent) bench_agent_start "$config" "$agent_pods" ;;
    esac
    sleep "$settle"
    rate[$1]=$(wrk_rate)
    case $1 in
      empty) empty_stop ;;
      agent) bench_agent_stop ;;
    esac
  }
  orders=("none empty agent" "agent none empty" "empty agent none" "none agent empty" "empty none agent" "agent empty none")
  r_none=() r_empty=() r_agent=() q_an=() q_en=() q_ae=()
  for p in $(seq 1 "$pairs"); do
    declare -A rate=()
    for state in ${orders[$(((p - 1) % 6))]}; do state_rate "$state"; done
    r_none+=("${rate[none]}") r_empty+=("${rate[empty]}") r_agent+=("${rate[agent]}")
    q_an+=("$(awk -v a="${rate[agent]}" -v b="${rate[none]}" 'BEGIN {printf "%.4f", a / b}')")
    q_en+=("$(awk -v a="${rate[empty]}" -v b="${rate[none]}" 'BEGIN {printf "%.4f", a / b}')")
    q_ae+=("$(awk -v a="${rate[agent]}" -v b="${rate[empty]}" 'BEGIN {printf "%.4f", a / b}')")
    bench_log "round $p/$pairs (${orders[$(((p - 1) % 6))]}): nothing ${rate[none]}, empty ${rate[empty]}, agent ${rate[agent]} req/s"
    unset rate
  done
  read -r low high < <(printf '%s\n' "${q_an[@]}" | bench_median_ci)
  med=$(printf '%s\n' "${q_an[@]}" | bench_median)
  verdict=$(bench_interval_verdict "$low" "$high" $target)
  printf 'wrk_ratio (trio, %d rounds): agent/nothing = %s, target >= %s%%: %s; empty hooks/nothing = %s; agent/empty hooks = %s; medians: nothing %.0f, empty %.0f, agent %.0f req/s\n' \
    "$pairs" "$(printf '%s\n' "${q_an[@]}" | ratio_summary)" "$(pct $target)" "$verdict" \
    "$(printf '%s\n' "${q_en[@]}" | ratio_summary)" "$(printf '%s\n' "${q_ae[@]}" | ratio_summary)" \
    "$(printf '%s\n' "${r_none[@]}" | bench_median)" "$(printf '%s\n' "${r_empty[@]}" | bench_median)" "$(printf '%s\n' "${r_agent[@]}" | bench_median)"
  printf '{"benchmark":"wrk_ratio","mode":"trio","attached":"agent","base":"none","nopods":false,"stay":false,"packet_level":"'"${PACKET_LEVEL:-all}"'","families":"apiserver=%s remote=%s retina=%s","date":"%s","kernel":"%s","cpu":"%s","commit":"%s","pairs":%d,"wrk":"-t1 -c8 -d%ds","url_path":"/bytes/64",' \
    "${APISERVER:-1}" "${REMOTE:-1}" "${RETINA:-1}" "$(date -u +%FT%TZ)" "$(uname -r)" "$(bench_cpu)" "$(bench_commit)" "$pairs" "$run_seconds"
  printf '"none_rps":[%s],"empty_rps":[%s],"agent_rps":[%s],"ratios":[%s],"ratios_empty_none":[%s],"ratios_agent_empty":[%s],"median_ratio":%s,"median_ci95":[%s,%s],"settle_s":%s,"target_ratio":%s}\n' \
    "$(bench_join "${r_none[@]}")" "$(bench_join "${r_empty[@]}")" "$(bench_join "${r_agent[@]}")" \
    "$(bench_join "${q_an[@]}")" "$(bench_join "${q_en[@]}")" "$(bench_join "${q_ae[@]}")" "$med" "$low" "$high" "$settle" $target
  exit 0
fi

off=() on=() ratios=()
for p in $(seq 1 "$pairs"); do
  if ((p % 2)); then
    base_start
    r_off=$(wrk_rate)
    base_stop
    attach_start
    sleep "$settle"
    r_on=$(wrk_rate)
    attach_stop
  else
    attach_start
    sleep "$settle"
    r_on=$(wrk_rate)
    attach_stop
    sleep "$settle"
    base_start
    r_off=$(wrk_rate)
    base_stop
  fi
  ratio=$(awk -v a="$r_on" -v b="$r_off" 'BEGIN {printf "%.4f", a / b}')
  off+=("$r_off") on+=("$r_on") ratios+=("$ratio")
  bench_log "pair $p/$pairs: not attached $r_off req/s, attached $r_on req/s, ratio $ratio"
done

ratio_med=$(printf '%s\n' "${ratios[@]}" | bench_median)
ratio_p25=$(printf '%s\n' "${ratios[@]}" | bench_quantile 0.25)
ratio_p75=$(printf '%s\n' "${ratios[@]}" | bench_quantile 0.75)
off_med=$(printf '%s\n' "${off[@]}" | bench_median)
on_med=$(printf '%s\n' "${on[@]}" | bench_median)
met=$(awk -v r="$ratio_med" -v t=$target 'BEGIN {print (r >= t) ? "true" : "false"}')
read -r ci_low ci_high < <(printf '%s\n' "${ratios[@]}" | bench_median_ci)
conclusive=$(awk -v a="$ci_low" -v b="$ci_high" -v t=$target 'BEGIN {print (a >= t || b < t) ? "true" : "false"}')
verdict=$([[ $met == true ]] && echo "target met" || echo "TARGET MISSED")
[[ $conclusive == true ]] ||
  verdict="INCONCLUSIVE: the target is inside the median's 95 % interval, too noisy to tell"

sides="attached/not attached"
[[ $base == empty ]] && sides="agent/empty program on the same hooks"
[[ $nopods == 1 ]] && sides="agent attaching no pod/not attached"
[[ $stay == 1 ]] && sides="pods attached/detached by the running agent"
printf 'wrk_ratio: %s = %s%% (median of %d pair ratios, 95%% interval %s%%..%s%%, quartiles %s%%..%s%%; not attached %.0f req/s, attached %.0f req/s, medians; target >= %s%%: %s)\n' \
  "$sides" "$(pct "$ratio_med")" "$pairs" "$(pct "$ci_low")" "$(pct "$ci_high")" "$(pct "$ratio_p25")" "$(pct "$ratio_p75")" "$off_med" "$on_med" "$(pct $target)" "$verdict"
printf '{"benchmark":"wrk_ratio","attached":"%s","hooks":"'"$hooks"'","empty_on":"'"$empty_on"'","base":"%s","nopods":%s,"stay":%s,"packet_level":"'"${PACKET_LEVEL:-all}"'","families":"apiserver=%s remote=%s retina=%s","date":"%s","kernel":"%s","cpu":"%s","commit":"%s","pairs":%d,"wrk":"-t1 -c8 -d%ds","url_path":"/bytes/64",' \
  "$attach" "$base" "$([[ $nopods == 1 ]] && echo true || echo false)" "$([[ $stay == 1 ]] && echo true || echo false)" \
  "${APISERVER:-1}" "${REMOTE:-1}" "${RETINA:-1}" "$(date -u +%FT%TZ)" "$(uname -r)" "$(bench_cpu)" "$(bench_commit)" "$pairs" "$run_seconds"
printf '"not_attached_rps":[%s],"attached_rps":[%s],"ratios":[%s],"median_not_attached_rps":%s,"median_attached_rps":%s,' \
  "$(bench_join "${off[@]}")" "$(bench_join "${on[@]}")" "$(bench_join "${ratios[@]}")" "$off_med" "$on_med"
printf '"median_ratio":%s,"median_ci95":[%s,%s],"ratio_p25":%s,"ratio_p75":%s,"settle_s":%s,"target_ratio":%s,"target_met":%s,"conclusive":%s}\n' \
  "$ratio_med" "$ci_low" "$ci_high" "$ratio_p25" "$ratio_p75" "$settle" $target "$met" "$conclusive"
