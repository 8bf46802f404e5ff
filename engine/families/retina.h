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

// Retina's node-level series (forward, drop, TCP flag and DNS counts of the node) are sums over
// the pods' series, and those come and go with the pods. Retina's own node counts never fall, so
// a sum that fell whenever a pod's series went would look like a counter reset to rate() (a spike
// of the whole node's total on Retina's dashboards). The view remembers what each pod added to
// each node series at the last render and keeps the counts of pods whose series have gone (or
// fell back: a counter reset) in the node series: these only ever grow. A pod's series that
// changes labels (relabelled, its workload learnt) but goes on from its value is the same pod.
// Not thread-safe: the caller serialises render().
class RetinaView {
 public:
  std::vector<prometheus::MetricFamily> render(const std::vector<prometheus::MetricFamily>& vigil, const RetinaPods& pods);

  using Labels = std::map<std::string, std::string>;
  struct NodeSeries {
    std::string help;
    double kept = 0;                // counts of pods no longer there, and of resets
    std::map<Labels, double> last;  // what each pod (family, namespace, pod) added at the last render
  };

 private:
  std::map<std::pair<std::string, Labels>, NodeSeries> node_;  // (name, labels)
};

}  // namespace vigil
