#!/usr/bin/env bash
# Installs what Vigil needs on Debian 12 (idempotent) and mounts bpffs and tracefs when they
# are missing. Called by `make run` and `make test`; safe to run again.
set -euo pipefail

packages=(
  # build
  cmake make g++ clang llvm pkg-config bpftool libbpf-dev libelf-dev zlib1g-dev
  liblua5.4-dev prometheus-cpp-dev libcpp-httplib-dev libssl-dev libspdlog-dev libfmt-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev libpcap-dev nlohmann-json3-dev libyaml-cpp-dev
  # run and lab
  iproute2 nftables dnsmasq-base bind9-dnsutils curl jq procps kmod
  # real peers for tests
  prometheus prometheus-alertmanager tshark tcpdump wrk iperf3
  # chart checks (tests/charts): YAML, JSON Schema
  python3 python3-yaml python3-jsonschema
)

if [[ $(id -u) -ne 0 ]]; then
  echo "setup: run as root (apt-get install, mounting bpffs)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # tshark asks whether non-root users may capture; the default answer is fine.
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Prometheus and Alertmanager packages start system services; tests start their own copies.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
# The API server latency programs attach to the cgroup v2 hierarchy: /sys/fs/cgroup on unified
# hosts, /sys/fs/cgroup/unified on hybrid ones; mount it there when no v2 hierarchy exists.
if ! grep -q ' cgroup2 ' /proc/self/mounts; then
  if mountpoint -q /sys/fs/cgroup; then mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
  else mount -t cgroup2 cgroup2 /sys/fs/cgroup; fi
fi
mkdir -p /run/netns
echo "setup: ok"
