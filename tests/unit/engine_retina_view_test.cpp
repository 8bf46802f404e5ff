// The Retina view's node-level series (metrics.retina_compat): sums over the pods' series that
// never fall when a pod's series go, are relabelled, or count again from 0.
#include <gtest/gtest.h>

#include "engine/families/retina.h"

namespace vigil {
namespace {

using Labels = std::map<std::string, std::string>;

struct Series {
  Labels labels;
  double value;
};

// Vigil's vigil_forward_packets_total with these series.
std::vector<prometheus::MetricFamily> forward(const std::vector<Series>& series) {
  prometheus::MetricFamily f;
  f.name = "vigil_forward_packets_total";
  f.type = prometheus::MetricType::Counter;
  for (const auto& s : series) {
    prometheus::ClientMetric m;
    for (const auto& [k, v] : s.labels) m.label.push_back({k, v});
    m.counter.value = s.value;
    f.metric.push_back(std::move(m));
  }
  return {f};
}

// The value of Retina's series `name` with exactly `labels`, or -1.
double value(const std::vector<prometheus::MetricFamily>& families, const std::string& name, const Labels& labels) {
  for (const auto& f : families) {
    if (f.name != name) continue;
    for (const auto& m : f.metric) {
      Labels l;
      for (const auto& p : m.label) l[p.name] = p.value;
      if (l == labels) return m.gauge.value;
    }
  }
  return -1;
}

Labels pod(const std::string& name, const std::string& direction = "egress") {
  return {{"namespace", "lab"}, {"pod", name}, {"direction", direction}};
}

const Labels kEgress{{"direction", "egress"}};
const char* kNode = "networkobservability_forward_count";

TEST(RetinaView, NodeCountsKeepWhatAPodThatWentCounted) {
  RetinaView view;
  RetinaPods pods{{{"lab", "a"}, {"10.0.0.1"}}, {{"lab", "b"}, {"10.0.0.2"}}};
  EXPECT_EQ(value(view.render(forward({{pod("a"), 100}, {pod("b"), 50}}), pods), kNode, kEgress), 150);
  // b's series went (its grace ran out): the node keeps its 50.
  EXPECT_EQ(value(view.render(forward({{pod("a"), 120}}), pods), kNode, kEgress), 170);
  // A new pod's counts add on top.
  EXPECT_EQ(value(view.render(forward({{pod("a"), 130}, {pod("c"), 7}}), pods), kNode, kEgress), 187);
  // Every pod gone: the node series stays at what they counted.
  const auto none = view.render(forward({}), pods);
  EXPECT_EQ(value(none, kNode, kEgress), 187);
  EXPECT_EQ(value(view.render(forward({}), pods), kNode, kEgress), 187);
  // Its help text stays too.
  for (const auto& f : none) {
    if (f.name == kNode) {
      EXPECT_EQ(f.help, "Forwarded packets (node)");
    }
  }
}

TEST(RetinaView, APodsSeriesUnderNewLabelsGoingOnFromItsValueIsCountedOnce) {
  RetinaView view;
  RetinaPods pods{{{"lab", "a"}, {"10.0.0.1"}}};
  Labels before = pod("a"), after = pod("a");
  before["label_app"] = "web";
  after["label_app"] = "api";
  EXPECT_EQ(value(view.render(forward({{before, 100}}), pods), kNode, kEgress), 100);
  EXPECT_EQ(value(view.render(forward({{after, 110}}), pods), kNode, kEgress), 110);
}

TEST(RetinaView, APodsCountsStartingAgainFromZeroDoNotTakeTheNodeDown) {
  RetinaView view;
  RetinaPods pods;
  EXPECT_EQ(value(view.render(forward({{pod("a"), 100}, {pod("a", "ingress"), 30}}), pods), kNode, kEgress), 100);
  const auto after = view.render(forward({{pod("a"), 4}, {pod("a", "ingress"), 31}}), pods);
  EXPECT_EQ(value(after, kNode, kEgress), 104);
  EXPECT_EQ(value(after, kNode, {{"direction", "ingress"}}), 31);
}

TEST(RetinaView, PodSeriesAreThePodsOwn) {
  RetinaView view;
  RetinaPods pods{{{"lab", "a"}, {"10.0.0.1"}}};
  view.render(forward({{pod("a"), 100}, {pod("b"), 50}}), pods);
  const auto now = view.render(forward({{pod("a"), 120}}), pods);
  const Labels adv_a{{"direction", "egress"},        {"source_ip", "10.0.0.1"},        {"source_namespace", "lab"},
                     {"source_podname", "a"},         {"source_workload_kind", "unknown"}, {"source_workload_name", "unknown"}};
  EXPECT_EQ(value(now, "networkobservability_adv_forward_count", adv_a), 120);
  Labels adv_b = adv_a;
  adv_b["source_ip"] = "unknown";
  adv_b["source_podname"] = "b";
  EXPECT_EQ(value(now, "networkobservability_adv_forward_count", adv_b), -1) << "a pod's own series go with it";
}

}  // namespace
}  // namespace vigil
