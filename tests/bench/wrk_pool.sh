#!/usr/bin/env bash
# wrk_pool.sh: the median pair ratio of several wrk_ratio.sh runs taken together, with the same
# distribution-free 95 % confidence interval for the median (order statistics) over all pairs.
#
#   tests/bench/wrk_pool.sh OUTPUT...    (files holding wrk_ratio.sh output: every JSON line in them
#                                         is one run)
#
# Runs of different settings are never pooled: the script refuses runs whose "mode" (pairs or
# TRIO=1 rounds), "attached", "hooks", "base", "nopods", "stay", "packet_level", "families", "wrk" (run length) or
# "settle_s" differ. Of TRIO=1 runs it pools the agent/nothing ratios, or with
# RATIOS=ratios_empty_none or RATIOS=ratios_agent_empty the hooks' floor or Vigil's own share. Runs of different commits
# only with MIXED=1 (say, when only rules or docs changed between them). Needs no root and no build.
# Exit status: 0 pooled, 1 could not (a file without a wrk_ratio JSON line, runs that differ).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
(($# >= 1)) || bench_die "usage: wrk_pool.sh OUTPUT..."
command -v python3 >/dev/null || bench_die "python3 is needed to read the JSON lines"
field=${RATIOS:-ratios}
[[ $field == ratios || $field == ratios_empty_none || $field == ratios_agent_empty ]] ||
  bench_die "RATIOS must be ratios, ratios_empty_none or ratios_agent_empty"
ratios=$(python3 - "${MIXED:-0}" "$field" "$@" <<'PY'
import json, sys
mixed, field, files = sys.argv[1] == "1", sys.argv[2], sys.argv[3:]
seen, ratios = None, []
for f in files:
    runs = []
    try:
        with open(f) as fh:
            for number, line in enumerate(fh, 1):
                if line.startswith('{"benchmark":"wrk_ratio"'):
                    try:
                        runs.append((number, json.loads(line)))
                    except ValueError as e:
                        sys.exit(f"wrk_pool: {f}:{number}: not JSON: {e}")
    except OSError as e:
        sys.exit(f"wrk_pool: {f}: {e.strerror}")
    if not runs:
        sys.exit(f"wrk_pool: {f}: no wrk_ratio JSON line")
    for number, run in runs:
        if field not in run:
            sys.exit(f"wrk_pool: {f}:{number}: no {field} in this run (only TRIO=1 runs have the other ratios)")
        kind = (run.get("mode", "pairs"), run["attached"], run.get("hooks", "both"), run.get("empty_on", "pods"), run["base"], run.get("nopods", False), run.get("stay", False),
                run.get("packet_level", "all"), run.get("families", "apiserver=1 remote=1 retina=1"), run.get("wrk", "-t1 -c8 -d3s"), run.get("settle_s", 2))
        if seen is not None and kind != seen[1]:
            sys.exit(f"wrk_pool: {f}:{number}: mode/attached/hooks/empty_on/base/nopods/stay/packet_level/families/wrk/settle {kind} differ from {seen[1]}")
        if seen is not None and run["commit"] != seen[0] and not mixed:
            sys.exit(f"wrk_pool: {f}:{number}: commit {run['commit']} differs from {seen[0]} (MIXED=1 pools anyway)")
        seen = seen or (run["commit"], kind)
        print(f"wrk_pool: {f}:{number}: {run['pairs']} {'rounds' if run.get('mode') == 'trio' else 'pairs'}, commit {run['commit']}, median {run['median_ratio']:.4f}",
              file=sys.stderr)
        ratios += run[field]
print("\n".join(str(r) for r in ratios))
PY
) || exit 1
n=$(wc -l <<<"$ratios")
med=$(bench_median <<<"$ratios")
read -r low high < <(bench_median_ci <<<"$ratios")
verdict=$(bench_interval_verdict "$low" "$high" 0.97)
awk -v n="$n" -v m="$med" -v a="$low" -v b="$high" -v v="$verdict" 'BEGIN {printf "wrk_pool: %d pairs, median ratio %.1f%%, 95%% interval %.1f%%..%.1f%% (target >= 97%%: %s)\n", n, m * 100, a * 100, b * 100, v}'
