#include <linux/types.h>

#include <algorithm>

#include "engine/families/family.h"
#include "vigil_abi.h"

namespace vigil {

std::vector<std::unique_ptr<Family>> make_families(const Config& config) {
  std::vector<std::unique_ptr<Family>> out;
  out.push_back(make_traffic_family());
  out.push_back(make_drop_family());
  out.push_back(make_tcp_family());
  out.push_back(make_dns_family(config.metrics.dns_timeout_seconds));
  out.push_back(make_remote_family());
  if (!config.apiserver.addresses.empty()) out.push_back(make_apiserver_family(config.apiserver.no_response_seconds));
  if (config.metrics.netstat.enabled) out.push_back(make_netstat_family(config.metrics.netstat));
  out.push_back(make_health_family());  // last: its occupancy gauges reuse the walks above (MapCensus)
  return out;
}

const std::vector<std::string>& packet_level_series() {
  static const std::vector<std::string> names = {
      "vigil_tcp_flags_total",          "vigil_tcp_resets_total",          "vigil_malformed_packets_total",
      "vigil_dns_requests_total",       "vigil_dns_responses_total",       "vigil_dns_latency_seconds",
      "vigil_dns_timeouts_total",       "vigil_dns_request_retries_total", "vigil_dns_unmatched_responses_total",
      "vigil_remote_forward_packets_total", "vigil_remote_forward_bytes_total"};
  return names;
}

Labels pod_labels(const WatchedPod& pod) { return pod.metric_labels; }

Labels pod_labels(const WatchedPod& pod, std::initializer_list<std::pair<std::string, std::string>> extra) {
  // The pod's labels are sorted already: each extra one goes in at its place.
  Labels out;
  out.reserve(pod.metric_labels.size() + extra.size());
  out.assign(pod.metric_labels.begin(), pod.metric_labels.end());
  for (const auto& e : extra) {
    auto at = std::lower_bound(out.begin(), out.end(), e, [](const auto& a, const auto& b) { return a.first < b.first; });
    out.insert(at, e);
  }
  return out;
}

const char* direction_name(int direction) { return direction == VIGIL_DIR_INGRESS ? "ingress" : "egress"; }

}  // namespace vigil
