// Agent configuration (YAML, documented key by key in docs/config.md). Every key is checked:
// an unknown key, a wrong type or a missing file is an error naming the file, line and key,
// e.g. "vigil.yaml:7: notifiers[1].url: expected a string". Defaults live here.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "actions/capture.h"
#include "actions/notifier.h"
#include "engine/kube/kube_options.h"
#include "rules/core/result.h"

namespace vigil {

struct PodsSourceConfig {
  // "file": the pods file; "netns": every namespace under /run/netns is a pod (namespace
  // "default", named after the namespace); "kubernetes": the node's pods from the API server
  // (engine/kube); "none".
  std::string source = "netns";
  std::string file;             // for source: file; absolute after loading
  kube::KubeOptions kubernetes;  // for source: kubernetes; node = Config::node after loading
};

// The statistics exported unless metrics.netstat.statistics says otherwise: drops, errors,
// failures and resets (docs/config.md). A kernel that lacks one (MPTcpExt without MPTCP) skips it.
const std::vector<std::string>& default_netstat_statistics();
// SNMP entries that are settings or gauges, not counters (Tcp:MaxConn, Ip:Forwarding, ...).
bool is_mib_setting(const std::string& statistic);

// The kernel's own network statistics per pod and for the node (engine/netns_stats.h): SNMP
// counters as `nstat` shows them and sockets by TCP state as `ss` counts them.
struct NetstatConfig {
  bool enabled = true;
  double interval_seconds = 10;  // read every this often (never more often than the tick)
  // TCP sockets by state for "node" (the agent's namespace), "all" (the node and every pod) or
  // "none": each namespace's count costs a walk of the node's whole TCP hash table.
  std::string sockets = "node";
  // "Group:Name" as nstat spells them split ("TcpExt:ListenDrops"); exported when non-zero.
  std::vector<std::string> statistics = default_netstat_statistics();
  std::vector<int> statistic_lines;     // the line each was written on; empty for the defaults
  // The node's conntrack entries counted by pod (one ctnetlink dump of the whole table) while the
  // table holds at least this share of nf_conntrack_max: "50%" by default, "always" (0), "never"
  // (above 1).
  double conntrack_by_pod_above = 0.5;
};

struct MetricsConfig {
  // How long the series of a pod that is gone stay in /metrics (so that a last scrape sees
  // their final values) before they are removed.
  double series_grace_seconds = 60;
  // Also export the data under Microsoft Retina's metric names and labels (docs/retina.md).
  bool retina_compat = false;
  // A DNS request with no response this long after its first send counts as timed out
  // (vigil_dns_timeouts_total), answered later or not at all.
  double dns_timeout_seconds = 5;
  // DNS requests that can wait for their response at once, node-wide (the datapath's
  // vigil_dns_pending). Beyond it a new request is not tracked and counted in
  // vigil_bpf_errors_total{site="dns_pending_full"}; the waiting ones still time out.
  uint32_t dns_max_pending = 131072;  // VIGIL_DNS_MAX_PENDING (DatapathOptions' default)
  NetstatConfig netstat;
  // Count the hits of the tracepoints Vigil's tracing programs run on (kfree_skb,
  // tcp_retransmit_skb, inet_sock_set_state) in tracefs instances of its own, and compare them
  // with the programs' runs: vigil_tracepoint_undelivered_total (engine/tracepoint_audit.h). Costs
  // a ring-buffer write per hit, so off by default.
  bool tracepoint_audit = false;
  // Where the TC programs count what a pod receives: "host", TC egress of the pod's host-side
  // veth; "pod", TC ingress of the pod's own end of it, inside its namespace, which also sees
  // packets a CNI puts straight into the namespace (bpf_redirect_peer: Cilium), past the
  // host-side veth; "auto", "pod" for the pods whose host-side veth carries another tool's TC
  // program (a CNI with an eBPF datapath: a TCX link or a clsact filter), "host" for the others.
  std::string ingress_hook = "auto";
  // TCX links where the kernel has them (6.6+); false: clsact filters on every kernel, as on the
  // older ones (as Cilium's bpf.enableTCX chooses).
  bool tcx = true;
  // Which pods get the TC programs that see each packet (forward counts, TCP flags, DNS,
  // malformed packets, remote context, captures). The others are counted with nothing on
  // their packets' path: forward counts from their interface's statistics, drops, TCP and
  // netstat from the kernel's events and tables as for every pod. A pod that opts in to
  // remote context gets the programs too; a capture of a pod attaches them while it runs.
  struct PacketLevel {
    bool all = true;  // pods: all; false: pods: selected
    std::vector<std::string> namespaces;
    std::map<std::string, std::string> pod_labels;
  } packet_level;
};

// Whether a pod of namespace `ns` with labels `labels` is chosen by a selector of namespaces
// (any of them) or labels (all of them); nothing listed chooses nobody.
inline bool pod_selected(const std::vector<std::string>& namespaces, const std::map<std::string, std::string>& want_labels,
                         const std::string& ns, const std::map<std::string, std::string>& labels) {
  for (const auto& n : namespaces)
    if (n == ns) return true;
  if (want_labels.empty()) return false;
  for (const auto& [k, v] : want_labels) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

// Traffic by remote peer, for the pods that opt in (a namespace listed, or all the labels
// given). Off unless something opts in: its cardinality is bounded by max_peers per pod.
struct RemoteContextConfig {
  std::vector<std::string> namespaces;
  std::map<std::string, std::string> pod_labels;
  uint32_t max_peers = 100;  // distinct peers per pod and direction pool; the rest count as "other"
  uint32_t max_keys = 16384; // peer entries for all opted-in pods together (an entry per CPU each)
  bool enabled() const { return !namespaces.empty() || !pod_labels.empty(); }
};

// Latency of connections to the Kubernetes API server, node-wide (Retina's API server
// metrics). Off unless addresses are given.
struct ApiServerConfig {
  struct Address {
    std::string ip;  // IPv4 or IPv6, without brackets
    uint16_t port = 0;
  };
  // The service address and its endpoints: a socket's packets carry the endpoint on the way
  // out after the node's DNAT but the service address on the way in.
  std::vector<Address> addresses;
  double no_response_seconds = 5;  // a handshake or first answer still missing after this counts as no response
  std::string cgroup;              // cgroup v2 directory whose sockets are watched; "" = the mounted v2 root
};

// Packet captures (docs/captures.md): limits, defaults and the lookback (flight recorder).
struct CapturesConfig {
  bool enabled = true;                 // false: no ring buffer, no lookback, every capture refused
  actions::CaptureConfig limits;       // limits.dir "" = <state_dir>/captures
  // Which pods keep a lookback ring: "rules" (pods in the groups of rules with a `capture`
  // option), "all" (every watched pod) or "none" (captures start at the trigger).
  std::string lookback_pods = "rules";
  // Also a ring, under "rules", for the pod of each group that is pending (anomalous, waiting
  // out the rule's `pending`) in a rule that can capture (a `capture` option or an on_anomaly
  // handler): its capture at the firing then holds the anomaly's onset.
  bool lookback_pending = true;
  uint32_t ring_buffer_bytes = 8u << 20;  // the kernel's ring buffer (power of two, >= 64 KiB)
};

// The HTTP API. Captures hold payload data: /api/v1/captures needs `Authorization: Bearer
// <token>` whenever a token is set, and is refused outright when the listener is not
// loopback-only and no token is set.
struct ApiConfig {
  std::string token;                // read from token_file or token_env at load; never logged
  std::string token_file, token_env;
};

// What a rule file may use (docs/rules.md "Budgets"): the Lua sandbox's limits.
struct RuleLimitsConfig {
  uint64_t memory_bytes = 32u << 20;       // per rule file (its Lua state)
  uint64_t instructions = 10'000'000;      // per call into Lua; per tick for custom detectors
  int quarantine_after = 3;                // consecutive failed calls that disable a rule
};

struct Config {
  std::string path;                       // the file this came from ("" for defaults)
  std::string node;                       // default: the host name
  std::string listen = "127.0.0.1:9965";  // host:port of /metrics, /healthz and the API
  double tick_seconds = 1.0;              // `tick`: "1s", "500ms" or a number of seconds
  std::string state_dir = "/var/lib/vigil";
  PodsSourceConfig pods;
  // Pod interfaces watched at once; sizes the per-CPU counter maps (kubelet's maxPods is 110).
  uint32_t max_pods = 256;
  // Rule files after glob expansion, in order, without duplicates. A file without `rules:`
  // gets the shipped pack (shipped_rule_pack()); `rules: []` means no rules.
  std::vector<std::string> rules;
  // The `rules:` entries as written, and the directory relative ones are read from: the agent
  // expands them again every tick, so that a rule file added where a pattern points (a
  // ConfigMap key, say) is loaded like an edited one. Empty without `rules:` (the pack).
  std::vector<std::string> rule_patterns;
  std::string rules_base_dir;
  RuleLimitsConfig rule_limits;
  // A file without `notifiers:` gets {name: default, type: log}; `notifiers: []` means none.
  std::vector<actions::NotifierConfig> notifiers;
  MetricsConfig metrics;
  RemoteContextConfig remote_context;
  ApiServerConfig apiserver;
  CapturesConfig captures;
  ApiConfig api;
};

// Parses durations such as "500ms", "2s", "2m", "1h", "1h30m", "1.5s" or a plain number of
// seconds ("2", "0.5"). Units: ms, s, m, h. Zero is accepted; callers check their own range.
Result<double> parse_duration(const std::string& text);

// Parses sizes such as "64MiB", "1GiB", "512KiB", "4096" (bytes); also KB/MB/GB (powers of
// 1000). Refuses negative, fractional byte counts and overflow.
Result<uint64_t> parse_size(const std::string& text);

// Loads and validates a config file. Relative paths (state_dir, the pods file, rule globs)
// resolve against the config file's directory. Never throws.
Result<Config> load_config(const std::string& path);

// Parses config text; `origin` names the file in error messages and `base_dir` resolves
// relative paths ("" leaves them relative to the working directory). Never throws. When there
// are several errors, the message holds one per line.
Result<Config> parse_config(const std::string& text, const std::string& origin, const std::string& base_dir);

// Expands rule paths and glob(3) patterns, each relative to `base_dir` unless absolute. Each
// pattern's matches are sorted; a pattern that matches nothing, a missing file or a directory
// is an error. Later duplicates of a file are dropped.
Result<std::vector<std::string>> expand_rule_paths(const std::vector<std::string>& patterns,
                                                   const std::string& base_dir);

// The shipped rule pack: the *.lua files of the first directory that exists among
// <executable dir>/../share/vigil/rules and <source tree>/rules/pack. Empty if neither does.
std::vector<std::string> shipped_rule_pack();

// The configuration used when the agent is started without --config: the defaults above,
// node = host name, rules = shipped_rule_pack(), notifiers = {name: default, type: log}.
Config default_config();

}  // namespace vigil
