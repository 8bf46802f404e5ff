#!/usr/bin/env bash
# The chart's alerting rules: `promtool check rules` and `promtool test rules` (one firing and
# one not-firing case per alert). promtool comes with Debian's prometheus package (.ci/setup.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rules="$here/../../charts/vigil/prometheus/vigil-alerts.yaml"
if ! command -v promtool >/dev/null; then
  echo "FAIL: promtool is not installed (apt-get install prometheus; .ci/setup.sh does)" >&2
  exit 1
fi
timeout 60 promtool check rules "$rules"
timeout 120 promtool test rules "$here/vigil-alerts.test.yaml"
# Every alert of the file has a test case that expects it to fire.
missing=0
for a in $(grep -oP '^\s+- alert: \K\w+' "$rules"); do
  if ! grep -q "alertname: $a\$" "$here/vigil-alerts.test.yaml"; then echo "FAIL: no test for $a"; missing=1; fi
done
exit $missing
