#!/usr/bin/env bash
# agent_footprint.sh: the agent's own CPU and memory with 50 lab pods under light traffic.
#
#   tests/bench/agent_footprint.sh [PODS]     (root, from the repository root, after `make build`)
#
# PODS lab pods (default 50, even), all under traffic: pod 2k-1 sends HTTP GETs (512-byte
# responses) at 10 requests/s over one keep-alive connection to an HTTP server in pod 2k. The
# agent runs with the shipped rule pack, tick 1s and every family on (remote context for all
# pods, the Retina view). Once every pod is attached and WARMUP seconds (default 10) have
# passed, the agent is sampled for SAMPLE_SECONDS (default 60) while /metrics is scraped every
# SCRAPE_EVERY seconds (default 5; Prometheus' default is 15: the scrapes reach the memory the
# HTTP threads keep sooner, and cost a little more CPU than in production):
#   CPU: utime + stime of /proc/PID/stat (all threads, exited ones included), over the
#        wall-clock time, in % of one core;
#   memory: VmRSS of /proc/PID/status each second (the largest is reported) and VmHWM at the end.
# BPF programs run in the kernel's packet path and are not in these figures (see bpf_cost.sh).
# Prints one summary line, then one JSON object.
# Exit status: 0 measured (targets met or not, see the summary), 1 could not measure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pods=${1:-50}
warmup=${WARMUP:-10}
sample_seconds=${SAMPLE_SECONDS:-60}
scrape_every=${SCRAPE_EVERY:-5}
target_cpu_pct=2 target_rss_mib=64
[[ $pods =~ ^[0-9]+$ && $pods -ge 2 && $pods -le 200 && $((pods % 2)) -eq 0 ]] || bench_die "PODS must be even, 2..200"
[[ $warmup =~ ^[0-9]+$ && $warmup -le 120 ]] || bench_die "WARMUP must be 0..120"
[[ $sample_seconds =~ ^[0-9]+$ && $sample_seconds -ge 5 && $sample_seconds -le 600 ]] || bench_die "SAMPLE_SECONDS must be 5..600"
[[ $scrape_every =~ ^[0-9]+$ && $scrape_every -ge 1 && $scrape_every -le 600 ]] || bench_die "SCRAPE_EVERY must be 1..600"

bench_init curl
bench_lab_up "$pods" bf

# Light traffic on every pod for longer than the agent start, warm-up and sampling can take.
traffic_seconds=$((60 + warmup + sample_seconds))
for ((to = 2; to <= pods; to += 2)); do
  lab serve-http "$to" >/dev/null || bench_die "vigil-lab serve-http $to failed"
  bench_spawn /dev/null "$bench_repo/tests/lab/vigil-lab" --prefix "$bench_prefix" http $((to - 1)) "$to" 10 "$traffic_seconds" 1
done

config=$bench_tmp/vigil.yaml
bench_agent_config "$config" "$(bench_free_port)" 1s
bench_on_exit bench_agent_stop
bench_log "lab $bench_prefix: $pods pods, HTTP 10 req/s on each of $((pods / 2)) pod pairs; agent with the shipped rule pack, every family, tick 1s"
bench_agent_start "$config" "$pods"
pid=$bench_agent_pid
sleep "$warmup"

clk_tck=$(getconf CLK_TCK)
# utime + stime in clock ticks; the fields after the command name, which may hold spaces.
cpu_ticks() { sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}'; }
status_kib() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/status"; }
now() { date +%s.%N; }

t0=$(now) c0=$(cpu_ticks)
rss_max=0 rss_samples=()
for i in $(seq 1 "$sample_seconds"); do
  sleep 1
  if ((i % scrape_every == 0)); then
    curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$bench_agent_port/metrics" || bench_die "GET /metrics failed"
  fi
  kill -0 "$pid" 2>/dev/null || bench_die "the agent exited while being sampled (log: $bench_tmp/agent.log)"
  rss=$(status_kib VmRSS)
  rss_samples+=("$rss")
  if ((rss > rss_max)); then rss_max=$rss; fi
done
t1=$(now) c1=$(cpu_ticks)
hwm=$(status_kib VmHWM)
threads=$(status_kib Threads)

metrics=$(curl -s --max-time 2 "http://127.0.0.1:$bench_agent_port/metrics") || bench_die "GET /metrics failed"
attached=$(awk '$1 == "vigil_pods{state=\"attached\"}" {print $2 + 0}' <<<"$metrics")
[[ $attached == "$pods" ]] || bench_die "only ${attached:-0} of $pods pods attached at the end"
# Proof that the traffic was seen: pod-2's received packets.
pod2_rx=$(awk '/^vigil_forward_packets_total\{/ && /pod="pod-2"/ && /direction="ingress"/ {print $2 + 0}' <<<"$metrics")
((${pod2_rx:-0} > 0)) || bench_die "the agent counted no packets for pod-2: traffic not flowing?"
series=$(grep -c '^vigil_forward_packets_total{' <<<"$metrics" || true)
all_series=$(grep -vc '^#' <<<"$metrics" || true)
remote_series=$(grep -c '^vigil_remote_forward_packets_total{' <<<"$metrics" || true)
tick_sum=$(awk '$1 == "vigil_tick_duration_seconds_sum" {print $2}' <<<"$metrics")
tick_count=$(awk '$1 == "vigil_tick_duration_seconds_count" {print $2}' <<<"$metrics")
tick_mean_ms=$(awk -v s="${tick_sum:-0}" -v n="${tick_count:-0}" 'BEGIN {printf "%.2f", (n > 0 ? s / n * 1000 : -1)}')

cpu_pct=$(awk -v c=$((c1 - c0)) -v hz="$clk_tck" -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.2f", c / hz / (t1 - t0) * 100}')
rss_mib=$(awk -v k="$rss_max" 'BEGIN {printf "%.1f", k / 1024}')
hwm_mib=$(awk -v k="$hwm" 'BEGIN {printf "%.1f", k / 1024}')
cpu_met=$(awk -v a="$cpu_pct" -v t=$target_cpu_pct 'BEGIN {print (a < t) ? "true" : "false"}')
rss_met=$(awk -v a="$hwm_mib" -v t=$target_rss_mib 'BEGIN {print (a < t) ? "true" : "false"}')
verdict() { [[ $1 == true ]] && echo "target met" || echo "TARGET MISSED"; }

printf 'agent_footprint: %s pods, CPU %s%% of one core over %ss (target < %s%%: %s); RSS max %s MiB, peak (VmHWM) %s MiB (target < %s MiB: %s); mean tick %s ms\n' \
  "$pods" "$cpu_pct" "$sample_seconds" $target_cpu_pct "$(verdict "$cpu_met")" "$rss_mib" "$hwm_mib" $target_rss_mib "$(verdict "$rss_met")" "$tick_mean_ms"
printf '{"benchmark":"agent_footprint","date":"%s","kernel":"%s","cpu":"%s","commit":"%s","pods":%d,"sample_seconds":%d,"scrape_every_seconds":%d,"tick":"1s","packet_level":"'"${PACKET_LEVEL:-all}"'","tcx":'"$([[ ${TCX:-1} == 0 ]] && echo false || echo true)"',"ingress_hook":"'"${INGRESS_HOOK:-auto}"'","remote_context":%s,"retina_compat":%s,"netstat":"%s","malloc_arena_max":"%s",' \
  "$(date -u +%FT%TZ)" "$(uname -r)" "$(bench_cpu)" "$(bench_commit)" "$pods" "$sample_seconds" "$scrape_every" "$([[ ${REMOTE:-1} == 0 || ${PACKET_LEVEL:-all} == selected ]] && echo false || echo true)" \
  "$([[ ${RETINA:-1} == 0 ]] && echo false || echo true)" "${NETSTAT:-1}" "${MALLOC_ARENA_MAX:-}"
printf '"cpu_pct_one_core":%s,"cpu_ticks":%d,"clk_tck":%d,"rss_kib_samples":[%s],"max_rss_mib":%s,"vm_hwm_mib":%s,"threads":%s,' \
  "$cpu_pct" $((c1 - c0)) "$clk_tck" "$(bench_join "${rss_samples[@]}")" "$rss_mib" "$hwm_mib" "${threads:-0}"
printf '"forward_packet_series":%s,"remote_packet_series":%s,"metrics_series":%s,"metrics_bytes":%d,"mean_tick_ms":%s,"target_cpu_pct":%s,"target_rss_mib":%s,"cpu_target_met":%s,"rss_target_met":%s}\n' \
  "$series" "$remote_series" "$all_series" "${#metrics}" "$tick_mean_ms" $target_cpu_pct $target_rss_mib "$cpu_met" "$rss_met"
