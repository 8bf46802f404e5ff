#!/usr/bin/env bash
# tc_profile.sh: where the TC program's time goes under wrk_ratio.sh's workload, source line by
# source line, from perf samples (no BPF stats, so nothing is added to each run).
#
#   tests/bench/tc_profile.sh [SECONDS]   (root, from the repository root, after `make build`;
#                                          needs perf: apt-get install linux-perf)
#
# Pod 2 serves HTTP (vigil-lab serve-http); with the agent attached (every family on, as in
# wrk_ratio.sh), `perf record -a -F 2999` runs for as long as
#   wrk -t1 -c8 -d${SECONDS}s http://<pod 2>:8080/bytes/64     (SECONDS: default 10)
# runs inside pod 1. Samples whose address falls in the agent's vigil_tc program (its main
# function or a subprogram) are charged to the source line of the nearest line-info record at or
# before them (vigil_jit_lines: the JIT image's line table, which bpftool prints only when built
# with libbfd). A sample lands on the instruction after the one that stalled more often than on
# the stalled one, so read a line's share together with the line before it.
# Prints: requests/s, the program's samples per request as ns (samples / frequency / requests),
# the kernel's tc_run (the legacy TC layer the kernel enters after a TCX program that passes the
# packet on) the same way, then the 25 hottest source lines with their share of the program's
# samples; then one JSON object.
# Exit status: 0 measured, 1 could not measure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

run_seconds=${1:-10}
[[ $run_seconds =~ ^[0-9]+$ && $run_seconds -ge 1 && $run_seconds -le 60 ]] || bench_die "SECONDS must be 1..60"
freq=2999
jit_lines=$bench_build/tests/bench/vigil_jit_lines
bench_init wrk curl perf bpftool python3
[[ -x $jit_lines ]] || bench_die "$jit_lines not built (make build)"
bench_lab_up 2 tp
lab serve-http 2 >/dev/null || bench_die "vigil-lab serve-http 2 failed"
url="http://$(lab ip 2):8080/bytes/64"
config=$bench_tmp/vigil.yaml
bench_agent_config "$config" "$(bench_free_port)"
bench_on_exit bench_agent_stop

# perf names a BPF program's samples only with its JIT symbols published; put the setting back.
kallsyms=$(sysctl -n net.core.bpf_jit_kallsyms)
bench_on_exit "sysctl -qw net.core.bpf_jit_kallsyms=$kallsyms"
sysctl -qw net.core.bpf_jit_kallsyms=1

bench_agent_start "$config" 2
# This agent's vigil_tc: the newest program of that name (the lab's pods are attached to it).
prog_id=$(bpftool -j prog show name vigil_tc | python3 -c 'import json, sys
progs = json.load(sys.stdin)
progs = progs if isinstance(progs, list) else [progs]
print(max(p["id"] for p in progs) if progs else "")')
[[ -n $prog_id ]] || bench_die "no vigil_tc program loaded"
"$jit_lines" "$prog_id" >"$bench_tmp/lines" || bench_die "vigil_jit_lines $prog_id failed"
sleep 2

bench_log "lab $bench_prefix: perf record -a -F $freq during wrk -t1 -c8 -d${run_seconds}s $url from pod 1 (vigil_tc id $prog_id)"
perf record -q -a -F "$freq" -o "$bench_tmp/perf.data" -- \
  timeout $((run_seconds + 15)) ip netns exec "$bench_prefix-pod-1" wrk -t1 -c8 -d"${run_seconds}s" "$url" \
  >"$bench_tmp/wrk.out" 2>"$bench_tmp/perf.err" || bench_die "perf record or wrk failed: $(cat "$bench_tmp/perf.err")"
bench_agent_stop
requests=$(awk '/requests in/ {print $1}' "$bench_tmp/wrk.out")
rate=$(awk '/^Requests\/sec:/ {print $2}' "$bench_tmp/wrk.out")
[[ -n $requests && -n $rate ]] || bench_die "no request count in wrk output: $(cat "$bench_tmp/wrk.out")"
perf script -i "$bench_tmp/perf.data" -F ip,sym 2>/dev/null >"$bench_tmp/samples" || bench_die "perf script failed"

python3 - "$bench_tmp/lines" "$bench_tmp/samples" "$requests" "$rate" "$freq" "$(bench_commit)" <<'PY'
import bisect, collections, json, sys
lines_file, samples_file, requests, rate, freq, commit = sys.argv[1:]
requests, rate, freq = int(requests), float(rate), int(freq)
funcs, records = [], collections.defaultdict(list)
for l in open(lines_file):
    p = l.rstrip("\n").split(" ", 5)
    if p[0] == "func":
        funcs.append((int(p[2], 16), int(p[3])))
    elif p[0] == "line":
        records[int(p[1])].append((int(p[2], 16), p[4], p[5] if len(p) > 5 else ""))
for f in records:
    records[f].sort()
offsets = {f: [r[0] for r in recs] for f, recs in records.items()}  # searched once a sample
in_prog, tc_run, by_line = 0, 0, collections.Counter()
for l in open(samples_file):
    p = l.split()
    if not p:
        continue
    sym = p[1] if len(p) > 1 else ""
    if sym == "tc_run":
        tc_run += 1
        continue
    try:
        ip = int(p[0], 16)
    except ValueError:
        continue
    for f, (start, length) in enumerate(funcs):
        if start <= ip < start + length:
            in_prog += 1
            recs = records.get(f, [])
            k = bisect.bisect_right(offsets.get(f, []), ip - start) - 1
            by_line[(recs[k][1], recs[k][2]) if k >= 0 else ("?", "")] += 1
            break
ns = lambda n: n / freq / requests * 1e9
print(f"tc_profile: {rate:.0f} requests/s; vigil_tc {in_prog} samples, {ns(in_prog):.0f} ns a request; "
      f"tc_run {tc_run} samples, {ns(tc_run):.0f} ns a request")
top = by_line.most_common(25)
for (where, src), n in top:
    print(f"  {100 * n / max(in_prog, 1):5.1f} %  {where:<22} {src[:90]}")
print(json.dumps({"benchmark": "tc_profile", "commit": commit, "requests_per_s": rate, "requests": requests,
                  "perf_hz": freq, "vigil_tc_samples": in_prog, "vigil_tc_ns_per_request": round(ns(in_prog), 1),
                  "tc_run_samples": tc_run, "tc_run_ns_per_request": round(ns(tc_run), 1),
                  "top_lines": [{"where": w, "source": s, "share": round(n / max(in_prog, 1), 4)} for (w, s), n in top]}))
PY
