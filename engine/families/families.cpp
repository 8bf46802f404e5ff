#include <linux/types.h>

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

Labels pod_labels(const WatchedPod& pod) {
  return make_labels({{"namespace", pod.spec.namespace_}, {"pod", pod.spec.name}});
}

Labels pod_labels(const WatchedPod& pod, std::initializer_list<std::pair<std::string, std::string>> extra) {
  Labels l = pod_labels(pod);
  l.insert(l.end(), extra.begin(), extra.end());
  sort_labels(l);
  return l;
}

const char* direction_name(int direction) { return direction == VIGIL_DIR_INGRESS ? "ingress" : "egress"; }

}  // namespace vigil
