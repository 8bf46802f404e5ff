#!/usr/bin/env bash
# bpf_cost.sh: nanoseconds that Vigil's TC programs add to each packet, from the kernel's own
# BPF run-time statistics (kernel.bpf_stats_enabled=1, restored on exit).
#
#   tests/bench/bpf_cost.sh [ROUNDS]     (root, from the repository root, after `make build`)
#
# Two lab pods, and small-packet traffic from pod 1 to pod 2 of each kind in TRAFFIC
# (default "udp tcp"):
#   udp: PACKETS (default 200000) datagrams of 64 bytes to a receiver in pod 2;
#   tcp: wrk -t1 -c8 -d2s http://<pod 2>:8080/bytes/64 (keep-alive; requests, responses and
#        ACKs of 66 to about 200 bytes: the TC programs also count TCP flags).
# Each round measures, on both pods' host-side veths (TC ingress and egress), one after the
# other (the order flips every round):
#   empty:  tests/bench/empty_tc.bpf.c (returns TC_ACT_UNSPEC, as Vigil's programs do), attached with tc;
#   vigil:  the agent's TC program (vigil_tc on both hooks; before 6.3 vigil_tc_ingress /
#           vigil_tc_egress), attached by `vigil agent` with every
#           family on (remote context for the lab pods, max 64 peers; DNS and TCP always on);
#   vigil_noremote (only with BREAKDOWN=1): the same agent without remote context;
#   vigil_pod (only with POD_SIDE=1): the same agent counting what pods receive on their own
#           ends (metrics.ingress_hook: pod): vigil_tc at the host-side veths' ingress and
#           vigil_tc_pod at ingress of each pod's eth0, in its namespace (with TCX=0, i.e.
#           metrics.tcx: false as kernels before 6.6 run: clsact filters, vigil_tc_podcls there).
# ns/run = delta run_time_ns / delta run_cnt over the traffic. A pod-to-pod packet is one run
# on the sender's veth and one on the receiver's. With the agent, its API server program
# (sock_ops on the cgroup v2 root) runs at connection events of every socket of the node, not
# per packet: how often it ran per TC run, and its ns/run, are reported next to the TC figures
# (its runs per TC run should be near 0). The kernel's timing itself costs tens of ns
# per run, so the cost Vigil adds per run is vigil - empty. The figures are medians over ROUNDS
# (default 7). Prints one summary line per traffic kind, then one JSON object.
# Exit status: 0 measured (target met or not, see the summary), 1 could not measure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rounds=${1:-7}
packets=${PACKETS:-200000}
read -r -a traffics <<<"${TRAFFIC:-udp tcp}"
size=64
target_ns=100
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 && $rounds -le 50 ]] || bench_die "ROUNDS must be 1..50"
[[ $packets =~ ^[0-9]+$ && $packets -ge 1000 && $packets -le 5000000 ]] || bench_die "PACKETS must be 1000..5000000"
((${#traffics[@]} > 0)) || bench_die "TRAFFIC must name udp, tcp or both"
for t in "${traffics[@]}"; do [[ $t == udp || $t == tcp ]] || bench_die "TRAFFIC must be udp, tcp or \"udp tcp\""; done
modes=(empty vigil)
[[ ${BREAKDOWN:-0} == 1 ]] && modes+=(vigil_noremote)
[[ ${POD_SIDE:-0} == 1 ]] && modes+=(vigil_pod)

bench_init clang bpftool tc curl wrk

clang -O2 -g -target bpf -Wall -Werror -I/usr/include/"$(uname -m)"-linux-gnu \
  -c "$bench_repo/tests/bench/empty_tc.bpf.c" -o "$bench_tmp/empty_tc.bpf.o" || bench_die "clang -target bpf empty_tc.bpf.c failed"

old_stats=$(sysctl -n kernel.bpf_stats_enabled)
bench_on_exit "sysctl -q kernel.bpf_stats_enabled=$old_stats"
sysctl -q kernel.bpf_stats_enabled=1

bench_lab_up 2 bc
veths=("$(lab veth 1)" "$(lab veth 2)")
dst=$(lab ip 2)

# Receivers in pod 2, for longer than the run can last: datagrams are delivered (no ICMP
# errors, no drops) and wrk has a server.
bench_spawn /dev/null ip netns exec "$bench_prefix-pod-2" "$bench_traffic" udp-sink 9000 1800
lab serve-http 2 >/dev/null || bench_die "vigil-lab serve-http 2 failed"

describe_traffic() {
  case $1 in
    udp) echo "UDP: $packets datagrams of $size bytes from pod 1 to pod 2 ($dst:9000)" ;;
    tcp) echo "TCP: wrk -t1 -c8 -d2s http://$dst:8080/bytes/64 in pod 1" ;;
  esac
}
send_traffic() {  # KIND [PACKETS]
  case $1 in
    udp) lab udp 1 2 "${2:-$packets}" "$size" >/dev/null || bench_die "vigil-lab udp 1 2 ${2:-$packets} $size failed" ;;
    tcp) timeout 20 ip netns exec "$bench_prefix-pod-1" wrk -t1 -c8 -d2s "http://$dst:8080/bytes/64" >/dev/null ||
           bench_die "wrk in pod 1 failed" ;;
  esac
}
min_runs() { [[ $1 == udp ]] && echo "$packets" || echo 10000; }

config_all=$bench_tmp/vigil.yaml config_noremote=$bench_tmp/vigil-noremote.yaml config_pod=$bench_tmp/vigil-pod.yaml
port=$(bench_free_port)
bench_agent_config "$config_all" "$port" 1s 1
bench_agent_config "$config_noremote" "$port" 1s 0
INGRESS_HOOK=pod bench_agent_config "$config_pod" "$port" 1s 1
bench_on_exit bench_agent_stop

# Our own clsact qdiscs and filters (preference 7; the agent uses 1), removed on exit.
empty_pref=7
for dev in "${veths[@]}"; do
  tc qdisc replace dev "$dev" clsact
  bench_on_exit "tc qdisc del dev $dev clsact"
done
attach_tc() {  # PROG PREF
  local dev dir
  for dev in "${veths[@]}"; do
    for dir in ingress egress; do
      tc filter add dev "$dev" "$dir" pref "$2" handle 1 bpf da obj "$bench_tmp/$1.bpf.o" sec tc ||
        bench_die "tc filter add dev $dev $dir bpf obj $1.bpf.o failed"
    done
  done
}
detach_tc() {  # PREF
  local dev dir
  for dev in "${veths[@]}"; do
    for dir in ingress egress; do tc filter del dev "$dev" "$dir" pref "$1" 2>/dev/null || true; done
  done
}
bench_on_exit detach_tc $empty_pref

# Program ids of the TC filters with preference PREF on the lab's veths; for the agent's
# (PREF 1), those of its TCX links on them and on the pods' own eth0 (Linux 6.6+, from
# /proc/PID/fdinfo; the agent watches the lab's pods only), else its clsact filters.
pod_ifindexes=$(for p in 1 2; do ip netns exec "$bench_prefix-pod-$p" cat /sys/class/net/eth0/ifindex; done | tr '\n' ' ')
prog_ids() {
  local pref=$1 dev dir f ifindexes
  if [[ $pref == 1 && -n ${bench_agent_pid:-} ]]; then
    ifindexes=" $(for dev in "${veths[@]}"; do cat "/sys/class/net/$dev/ifindex"; done | tr '\n' ' ')$pod_ifindexes"
    for f in /proc/"$bench_agent_pid"/fdinfo/*; do
      awk -v want="$ifindexes" '$1 == "link_type:" {tcx = ($2 == "tcx")} $1 == "prog_id:" {id = $2}
        $1 == "ifindex:" && tcx && index(want, " " $2 " ") {print id}' "$f" 2>/dev/null
    done | sort -un | grep . && return 0
  fi
  {
    for dev in "${veths[@]}"; do
      for dir in ingress egress; do
        tc filter show dev "$dev" "$dir" pref "$pref" | grep -o ' id [0-9]*' | awk '{print $2}'
      done
    done
    # The agent's filters on the pods' own eth0 (POD_SIDE=1 with TCX=0: vigil_tc_podcls).
    if [[ $pref == 1 ]]; then
      for p in 1 2; do
        ip netns exec "$bench_prefix-pod-$p" tc filter show dev eth0 ingress pref 1 | grep -o ' id [0-9]*' | awk '{print $2}'
      done
    fi
  } | sort -un
}

# Ids of the API server (sock_ops) programs of the agent whose TC program is TC_ID: other
# agents may run on this machine, and ours are the ones that share its maps.
api_prog_ids() {
  local maps
  maps=$(bpftool prog show id "$1" -j | jq -c '.map_ids // []') || return 0
  bpftool prog show -j | jq -r --argjson maps "$maps" \
    '.[] | select((.name // "" | startswith("vigil_api")) and any((.map_ids // [])[]; . as $m | $maps | index($m))) | .id'
}

# "run_time_ns run_cnt" summed over the given program ids (bpftool omits zero fields).
prog_stats() {
  local id json ns=0 cnt=0
  for id in "$@"; do
    json=$(bpftool prog show id "$id" -j) || bench_die "bpftool prog show id $id failed"
    ns=$((ns + $(grep -o '"run_time_ns":[0-9]*' <<<"$json" | cut -d: -f2 || echo 0)))
    cnt=$((cnt + $(grep -o '"run_cnt":[0-9]*' <<<"$json" | cut -d: -f2 || echo 0)))
  done
  echo "$ns $cnt"
}

# Sends traffic of KIND and prints the ns/run of the programs with preference PREF, then the
# agent's API server programs' ns/run and their runs per TC run when they are loaded ("- -"
# when not, or when they did not run).
measure() {
  local pref=$1 kind=$2 ids api before after api_before api_after ns0 cnt0 ns1 cnt1 runs api_ns=- api_runs=0
  mapfile -t ids < <(prog_ids "$pref")
  ((${#ids[@]} > 0)) || bench_die "no BPF filter with preference $pref on ${veths[*]}"
  api=()
  if [[ $pref == 1 ]]; then mapfile -t api < <(api_prog_ids "${ids[0]}"); fi
  before=$(prog_stats "${ids[@]}")
  if ((${#api[@]})); then api_before=$(prog_stats "${api[@]}"); fi
  send_traffic "$kind"
  after=$(prog_stats "${ids[@]}")
  if ((${#api[@]})); then
    api_after=$(prog_stats "${api[@]}")
    api_ns=$(awk -v a="$api_before" -v b="$api_after" 'BEGIN {split(a, x, " "); split(b, y, " "); n = y[2] - x[2]; if (n > 0) printf "%.2f", (y[1] - x[1]) / n; else print "-"}')
    api_runs=$(awk -v a="$api_before" -v b="$api_after" 'BEGIN {split(a, x, " "); split(b, y, " "); print y[2] - x[2]}')
  fi
  read -r ns0 cnt0 <<<"$before"
  read -r ns1 cnt1 <<<"$after"
  runs=$((cnt1 - cnt0))
  ((runs >= $(min_runs "$kind"))) ||
    bench_die "only $runs program runs for $kind traffic (expected $(min_runs "$kind") or more): stats not counting? (kernel.bpf_stats_enabled)"
  awk -v ns=$((ns1 - ns0)) -v n="$runs" -v api="$api_ns" -v ar="$api_runs" \
    'BEGIN {if (api == "-") printf "%.2f - -\n", ns / n; else printf "%.2f %s %.5f\n", ns / n, api, ar / n}'
}

# Attaches MODE's programs, measures every traffic kind into results[MODE.KIND], detaches.
declare -A results=()
run_mode() {
  local mode=$1 kind pref=1
  case $mode in
    empty) attach_tc empty_tc $empty_pref; pref=$empty_pref ;;
    vigil) bench_agent_start "$config_all" 2 ;;
    vigil_noremote) bench_agent_start "$config_noremote" 2 ;;
    vigil_pod) bench_agent_start "$config_pod" 2 ;;
  esac
  local m tc_ns api_ns api_per_run
  for kind in "${traffics[@]}"; do
    m=$(measure "$pref" "$kind")
    read -r tc_ns api_ns api_per_run <<<"$m"
    results[$mode.$kind]+="$tc_ns "
    if [[ $api_ns != - ]]; then
      results[api_$mode.$kind]+="$api_ns "
      results[apiruns_$mode.$kind]+="$api_per_run "
    fi
  done
  case $mode in
    empty) detach_tc $empty_pref ;;
    *) bench_agent_stop ;;
  esac
}

bench_log "lab $bench_prefix: $rounds rounds of ${modes[*]} (order flips each round) x ${traffics[*]}"
for kind in "${traffics[@]}"; do send_traffic "$kind" 20000; done  # warm up ARP, caches, receivers
for r in $(seq 1 "$rounds"); do
  order=("${modes[@]}")
  if ((r % 2 == 0)); then order=(); for ((i = ${#modes[@]} - 1; i >= 0; i--)); do order+=("${modes[i]}"); done; fi
  for mode in "${order[@]}"; do run_mode "$mode"; done
  line="round $r/$rounds:"
  for kind in "${traffics[@]}"; do
    for mode in "${modes[@]}"; do
      read -r -a so_far <<<"${results[$mode.$kind]}"
      line+=" $kind $mode ${so_far[-1]} ns/run;"
    done
  done
  bench_log "$line"
done

# The values are space-separated numbers: split them on purpose.
# shellcheck disable=SC2086
median_of() { printf '%s\n' $1 | bench_median; }
# shellcheck disable=SC2086
join_of() { bench_join $1; }
json_kinds=()
for kind in "${traffics[@]}"; do
  e=$(median_of "${results[empty.$kind]}")
  v=$(median_of "${results[vigil.$kind]}")
  added=$(awk -v a="$v" -v b="$e" 'BEGIN {printf "%.1f", a - b}')
  met=$(awk -v a="$added" -v t=$target_ns 'BEGIN {print (a < t) ? "true" : "false"}')
  verdict=$([[ $met == true ]] && echo "target met" || echo "TARGET MISSED")
  extra='' json_extra=''
  if [[ -n ${results[vigil_noremote.$kind]:-} ]]; then
    n=$(median_of "${results[vigil_noremote.$kind]}")
    extra=$(awk -v a="$n" -v b="$e" 'BEGIN {printf "; without remote context %.1f ns/run (added %.1f)", a, a - b}')
    json_extra=$(printf ',"vigil_noremote_ns_per_run":[%s],"median_vigil_noremote_ns":%s' \
      "$(join_of "${results[vigil_noremote.$kind]}")" "$n")
  fi
  if [[ -n ${results[vigil_pod.$kind]:-} ]]; then
    n=$(median_of "${results[vigil_pod.$kind]}")
    extra+=$(awk -v a="$n" -v b="$e" 'BEGIN {printf "; counting what pods receive on their own ends %.1f ns/run (added %.1f)", a, a - b}')
    json_extra+=$(printf ',"vigil_pod_ns_per_run":[%s],"median_vigil_pod_ns":%s' \
      "$(join_of "${results[vigil_pod.$kind]}")" "$n")
  fi
  if [[ -n ${results[api_vigil.$kind]:-} ]]; then
    ap=$(median_of "${results[api_vigil.$kind]}")
    ar=$(median_of "${results[apiruns_vigil.$kind]}")
    extra+=$(awk -v a="$ap" -v r="$ar" 'BEGIN {printf "; API server sock_ops program %.5f runs per TC run, %.1f ns/run, timing included (connection events, not packets; not in the TC figure)", r, a}')
    json_extra+=$(printf ',"apiserver_sockops_ns_per_run":[%s],"median_apiserver_sockops_ns":%s,"apiserver_sockops_runs_per_tc_run":[%s],"median_apiserver_sockops_runs_per_tc_run":%s' \
      "$(join_of "${results[api_vigil.$kind]}")" "$ap" "$(join_of "${results[apiruns_vigil.$kind]}")" "$ar")
  fi
  printf 'bpf_cost (%s): empty %.1f ns/run, vigil %.1f ns/run, added %s ns per packet per veth (medians of %d rounds; target < %d ns: %s)%s\n' \
    "$kind" "$e" "$v" "$added" "$rounds" $target_ns "$verdict" "$extra"
  json_kinds+=("$(printf '"%s":{"traffic":"%s","empty_ns_per_run":[%s],"vigil_ns_per_run":[%s],"median_empty_ns":%s,"median_vigil_ns":%s,"added_ns":%s,"target_met":%s%s}' \
    "$kind" "$(describe_traffic "$kind")" "$(join_of "${results[empty.$kind]}")" "$(join_of "${results[vigil.$kind]}")" \
    "$e" "$v" "$added" "$met" "$json_extra")")
done
printf '{"benchmark":"bpf_cost","date":"%s","kernel":"%s","cpu":"%s","commit":"%s","rounds":%d,"target_ns":%d,"tcx":%s,%s}\n' \
  "$(date -u +%FT%TZ)" "$(uname -r)" "$(bench_cpu)" "$(bench_commit)" "$rounds" $target_ns \
  "$([[ ${TCX:-1} == 0 ]] && echo false || echo true)" "$(bench_join "${json_kinds[@]}")"
