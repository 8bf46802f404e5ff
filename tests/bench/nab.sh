#!/usr/bin/env bash
# Detection quality on the NAB corpus: replays tests/bench/nab-rule.lua over every file with
# `vigil replay` and scores the output with the project's own scorer (nab_score.py), printing
# the normalised score of the three NAB profiles. About a minute on 2 cores.
#   BUILD=build-det tests/bench/nab.sh [RULE_FILE]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-build}
[[ $build = /* ]] || build="$root/$build"
nab=${NAB_DIR:-/work/shared/data/nab}
rule=${1:-$here/nab-rule.lua}
vigil=${VIGIL:-$build/vigil}
[[ -x $vigil ]] || vigil="$build/engine/vigil"
[[ -x $vigil ]] || { echo "nab: no vigil binary under $build (build it first)" >&2; exit 1; }
[[ -d $nab/data ]] || { echo "nab: no NAB corpus at $nab" >&2; exit 1; }

# NAB_KEEP=DIR keeps the replay output there (for a look at the scores); else a temp dir.
if [[ -n ${NAB_KEEP:-} ]]; then
  out=$NAB_KEEP
  rm -rf "$out/results"
  mkdir -p "$out"
else
  out=$(mktemp -d /tmp/vigil-nab.XXXXXX)
  trap 'rm -rf "$out"' EXIT
fi
start=$(date +%s)
(cd "$nab/data" && find . -name '*.csv' | sed 's|^\./||' | sort) > "$out/files"
while read -r f; do mkdir -p "$out/results/$(dirname "$f")"; done < "$out/files"
# Two replays at a time; each failure is reported and fails the run.
xargs -P "${JOBS:-2}" -I{} sh -c '"$1" replay --rules "$2" --input "$3/data/{}" --output "$4/results/{}" || { echo "nab: replay failed for {}" >&2; exit 255; }' \
  _ "$vigil" "$rule" "$nab" "$out" < "$out/files"
python3 "$here/nab_score.py" --labels "$nab/labels/combined_windows.json" --results "$out/results" ${NAB_JSON:+--json}
echo "nab: $(wc -l < "$out/files") files in $(( $(date +%s) - start ))s, rule $rule"
