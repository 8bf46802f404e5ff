// Retina compatibility (metrics.retina_compat): the same data under Microsoft Retina's metric
// names and labels, so that Retina's published Grafana dashboards work on Vigil unchanged.
// Derived at scrape time from Vigil's own families; nothing extra is stored or read from the
// kernel. The mapping is documented in docs/retina.md.
#pragma once

#include <prometheus/metric_family.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace vigil {

struct RetinaPodInfo {
  std::string ip;  // first address, "unknown" when none
};

using RetinaPods = std::map<std::pair<std::string, std::string>, RetinaPodInfo>;  // (namespace, pod)

std::vector<prometheus::MetricFamily> retina_view(const std::vector<prometheus::MetricFamily>& vigil,
                                                  const RetinaPods& pods);

}  // namespace vigil
