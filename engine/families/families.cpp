#include <linux/types.h>

#include <cctype>

#include "engine/families/family.h"
#include "vigil_abi.h"

namespace vigil {

std::vector<std::unique_ptr<Family>> make_families(const Config& config) {
  std::vector<std::unique_ptr<Family>> out;
  out.push_back(make_traffic_family());
  out.push_back(make_drop_family());
  out.push_back(make_tcp_family());
  out.push_back(make_dns_family());
  out.push_back(make_remote_family());
  if (!config.apiserver.addresses.empty()) out.push_back(make_apiserver_family(config.apiserver.no_response_seconds));
  out.push_back(make_health_family());
  return out;
}

namespace {

// A pod label's key as a metric label name: "label_" + the key with every character outside
// [a-zA-Z0-9_] as "_" (app.kubernetes.io/name -> label_app_kubernetes_io_name), as
// kube-state-metrics spells them; the prefix keeps them clear of Vigil's own labels.
std::string metric_label_name(const std::string& key) {
  std::string out = "label_";
  for (char c : key) out += std::isalnum(static_cast<unsigned char>(c)) || c == '_' ? c : '_';
  return out;
}

}  // namespace

Labels pod_labels(const WatchedPod& pod) {
  // The pod's allow-listed labels (pods.kubernetes.label_allowlist, or the pods file's) and its
  // workload become metric labels: one value per pod, so no series more than pods.
  Labels l = make_labels({{"namespace", pod.spec.namespace_}, {"pod", pod.spec.name}});
  for (const auto& [k, v] : pod.spec.labels)
    if (!v.empty()) l.emplace_back(metric_label_name(k), v);
  if (!pod.spec.workload_kind.empty()) {
    l.emplace_back("workload_kind", pod.spec.workload_kind);
    l.emplace_back("workload", pod.spec.workload_name);
  }
  sort_labels(l);
  return l;
}

Labels pod_labels(const WatchedPod& pod, std::initializer_list<std::pair<std::string, std::string>> extra) {
  Labels l = pod_labels(pod);
  l.insert(l.end(), extra.begin(), extra.end());
  sort_labels(l);
  return l;
}

const char* direction_name(int direction) { return direction == VIGIL_DIR_INGRESS ? "ingress" : "egress"; }

}  // namespace vigil
