#!/usr/bin/env python3
"""The rule engine's memory target as a test: 50,000 series with the shipped pack must hold
under 512 bytes a series (docs/benchmarks.md, "Rule engine"). Heap bytes are counted, not
timed, so the figure is the same on a busy machine; the pack growing past it fails here
instead of going unnoticed until the next benchmark run.

    check_rules_memory.py VIGIL_RULES_BENCH
"""
import json
import subprocess
import sys

LIMIT = 512
BENCH = "BM_TickPodSeries/50000"


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: check_rules_memory.py VIGIL_RULES_BENCH", file=sys.stderr)
        return 2
    run = subprocess.run([sys.argv[1], f"--benchmark_filter=^{BENCH}/", "--benchmark_format=json",
                          "--benchmark_min_time=0.1"], capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        print(f"{sys.argv[1]} failed ({run.returncode}):\n{run.stderr}", file=sys.stderr)
        return 1
    try:
        results = [b for b in json.loads(run.stdout)["benchmarks"] if b["name"].startswith(BENCH + "/")]
    except (ValueError, KeyError) as e:
        print(f"{BENCH}: no JSON results ({e}):\n{run.stdout}{run.stderr}", file=sys.stderr)
        return 1
    if not results:
        print(f"{BENCH} did not run:\n{run.stdout}", file=sys.stderr)
        return 1
    per_series = results[0]["bytes_per_series"]
    print(f"{BENCH}: {per_series:.1f} bytes a series (limit {LIMIT})")
    if per_series >= LIMIT:
        print(f"over the target of {LIMIT} B a series: what grew? (docs/benchmarks.md, Rule engine)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
