// The pods file: how the agent learns its pods without Kubernetes.
//
//   - namespace: default
//     name: web-1
//     labels: {app: web}
//     netns: web-1          # a name under /run/netns (or an absolute path)
//   - namespace: default
//     name: db-1
//     ip: 10.0.0.2          # found by scanning the host's network namespaces
//     packet_level: false   # optional: overrides metrics.packet_level for this pod
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "rules/core/result.h"

namespace vigil {

struct PodSpec {
  std::string namespace_;
  std::string name;
  std::map<std::string, std::string> labels;
  std::string netns;  // absolute path of the namespace file, or empty
  std::string ip;     // or the pod's address
  // The owning workload when the source knows it (the Kubernetes API): "Deployment"/"web".
  // Empty for a bare pod or another source.
  std::string workload_kind, workload_name;
  // Whether the pod's packets get the TC programs, when the pod says so itself (the pods file's
  // packet_level, the vigil.dev/packet-level annotation of the pod or else its namespace);
  // unset: metrics.packet_level decides.
  std::optional<bool> packet_level;

  std::string key() const { return namespace_ + "/" + name; }
  bool operator==(const PodSpec&) const = default;
};

// A pod label's key as a metric label name: "label_" + the key with every character outside
// [a-zA-Z0-9_] as "_" (app.kubernetes.io/name -> label_app_kubernetes_io_name), as
// kube-state-metrics spells them; the prefix keeps them clear of Vigil's own labels. Two keys
// can have one name (a.b, a-b): the pods file and the label allow-list refuse that.
inline std::string series_label_name(const std::string& key) {
  std::string out = "label_";
  for (char c : key) out += (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ? c : '_';
  return out;
}

// When two of `keys` have one series label name: "'a.b' and 'a-b' are both label_a_b in series;
// keep one" (the pods file's and the label allow-list's error); else nothing.
template <class Keys>
std::optional<std::string> series_label_clash(const Keys& keys) {
  std::map<std::string, std::string> by_series;  // series label name -> key
  for (const auto& key : keys)
    if (auto [at, made] = by_series.emplace(series_label_name(key), key); !made)
      return "'" + at->second + "' and '" + key + "' are both " + at->first + " in series; keep one";
  return std::nullopt;
}

Result<std::vector<PodSpec>> parse_pods(const std::string& text, const std::string& origin);
Result<std::vector<PodSpec>> load_pods_file(const std::string& path);

// Every namespace under /run/netns whose name is a valid Kubernetes name, as a pod in
// namespace "default" (the `pods: {source: netns}` mode), sorted by name.
std::vector<PodSpec> pods_from_named_netns(const std::string& dir = "/run/netns");

}  // namespace vigil
