#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <limits>
#include <set>
#include <sstream>
#include <tuple>

#include "engine/series_store.h"

namespace vigil {
namespace {

std::string text_of(const SeriesStore& s) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, s.Collect());
  return out.str();
}

TEST(SeriesStore, ExportsCountersAndGaugesInTextFormat) {
  SeriesStore s;
  s.describe("vigil_forward_packets_total", "Packets.", SeriesKind::Counter);
  s.describe("vigil_pods", "Pods.", SeriesKind::Gauge);
  s.set("vigil_forward_packets_total", make_labels({{"pod", "a"}, {"direction", "ingress"}}), 42);
  s.set("vigil_pods", make_labels({{"state", "attached"}}), 3);
  std::string text = text_of(s);
  EXPECT_NE(text.find("# TYPE vigil_forward_packets_total counter"), std::string::npos) << text;
  EXPECT_NE(text.find("vigil_forward_packets_total{direction=\"ingress\",pod=\"a\"} 42"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE vigil_pods gauge"), std::string::npos);
  EXPECT_NE(text.find("vigil_pods{state=\"attached\"} 3"), std::string::npos);
}

TEST(SeriesStore, SnapshotAndRemoval) {
  SeriesStore s;
  s.describe("m_total", "M.", SeriesKind::Counter);
  s.set("m_total", make_labels({{"pod", "a"}}), 1);
  s.set("m_total", make_labels({{"pod", "b"}}), 2);
  s.set("m_total", make_labels({{"pod", "a"}}), 5);  // overwrite, not a new series
  ASSERT_EQ(s.size(), 2u);
  s.remove_if([](const Labels& l) { return *find_label(l, "pod") == "a"; });
  auto snap = s.snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].value, 2);
  EXPECT_EQ(snap[0].kind, SeriesKind::Counter);
  // Clearing a family takes all of its series and nothing of another's.
  s.describe("g", "G.", SeriesKind::Gauge);
  s.set("g", make_labels({{"pod", "b"}}), 7);
  s.set("g", make_labels({{"pod", "c"}}), 8);
  s.clear("g");
  snap = s.snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].metric, "m_total");
  EXPECT_THROW(s.clear("nope"), std::logic_error);
}

TEST(SeriesStore, RemovalWithinOneFamily) {
  SeriesStore s;
  s.describe("flags_total", "F.", SeriesKind::Counter);
  s.describe("forward_total", "F.", SeriesKind::Counter);
  s.describe("latency_seconds", "L.", SeriesKind::Histogram);
  for (const char* pod : {"a", "b"}) {
    s.set("flags_total", make_labels({{"pod", pod}}), 1);
    s.set("forward_total", make_labels({{"pod", pod}}), 2);
    s.set_histogram("latency_seconds", make_labels({{"pod", pod}}), {0.1, 1}, {1, 2}, 0.5);
  }
  const auto is_a = [](const Labels& l) { return *find_label(l, "pod") == "a"; };
  s.remove_if("flags_total", is_a);
  s.remove_if("latency_seconds", is_a);
  s.remove_if("never_described", is_a);  // nothing, and no error
  EXPECT_FALSE(s.value("flags_total", make_labels({{"pod", "a"}})));
  EXPECT_TRUE(s.value("flags_total", make_labels({{"pod", "b"}})));
  EXPECT_TRUE(s.value("forward_total", make_labels({{"pod", "a"}})));  // another family keeps pod a
  std::set<std::string> histogram_pods;
  for (const auto& sample : s.snapshot())
    if (sample.metric == "latency_seconds_count") histogram_pods.insert(*find_label(sample.labels, "pod"));
  EXPECT_EQ(histogram_pods, std::set<std::string>{"b"});
}

// A pod's counters in the kernel start again at each attach of the pod; its series go on.
TEST(SeriesStore, ContinuedCountersGoOnWhenTheirSourceStartsAgain) {
  SeriesStore s;
  s.describe("drops_total", "D.", SeriesKind::Counter);
  const Labels a = make_labels({{"pod", "a"}});
  auto value = [&] { return s.value("drops_total", a).value_or(-1); };
  s.set_continued("drops_total", a, 5, 1);
  EXPECT_EQ(value(), 5);  // a new series: all the source has
  s.set_continued("drops_total", a, 8, 1);
  EXPECT_EQ(value(), 8);
  s.set_continued("drops_total", a, 2, 2);  // attached again: counts from 0 again
  EXPECT_EQ(value(), 10);
  s.set_continued("drops_total", a, 9, 2);
  EXPECT_EQ(value(), 17);
  s.set_continued("drops_total", a, 9, 2);
  EXPECT_EQ(value(), 17);
  s.set_continued("drops_total", a, 3, 2);  // the kernel's entry made again within the attach
  EXPECT_EQ(value(), 20);
  // An epoch a source has more than ever had at the change: still all of it is new.
  s.set_continued("drops_total", a, 30, 3);
  EXPECT_EQ(value(), 50);
  // A series removed (its pod's grace time over) starts from nothing.
  s.remove_if([](const Labels&) { return true; });
  s.set_continued("drops_total", a, 4, 3);
  EXPECT_EQ(value(), 4);

  s.describe("rtt_seconds", "R.", SeriesKind::Histogram);
  const std::vector<double> bounds = {0.1, 1, std::numeric_limits<double>::infinity()};
  s.set_histogram_continued("rtt_seconds", a, bounds, {1, 2, 0}, 1.5, 1);
  s.set_histogram_continued("rtt_seconds", a, bounds, {2, 2, 1}, 4.0, 1);
  s.set_histogram_continued("rtt_seconds", a, bounds, {0, 1, 0}, 0.5, 2);  // attached again
  s.set_histogram_continued("rtt_seconds", a, bounds, {1, 1, 0}, 0.55, 2);
  const std::string text = text_of(s);
  EXPECT_NE(text.find("rtt_seconds_bucket{pod=\"a\",le=\"0.1\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("rtt_seconds_bucket{pod=\"a\",le=\"1\"} 6\n"), std::string::npos) << text;
  EXPECT_NE(text.find("rtt_seconds_bucket{pod=\"a\",le=\"+Inf\"} 7\n"), std::string::npos) << text;
  EXPECT_NE(text.find("rtt_seconds_count{pod=\"a\"} 7\n"), std::string::npos) << text;
  EXPECT_NE(text.find("rtt_seconds_sum{pod=\"a\"} 4.55\n"), std::string::npos) << text;
  // One bucket fell back within the attach: the source started again.
  s.set_histogram_continued("rtt_seconds", a, bounds, {0, 2, 0}, 0.6, 2);
  EXPECT_NE(text_of(s).find("rtt_seconds_count{pod=\"a\"} 9\n"), std::string::npos) << text_of(s);
}

TEST(SeriesStore, UndescribedFamilyIsAProgrammingError) {
  SeriesStore s;
  EXPECT_THROW(s.set("nope_total", {}, 1), std::logic_error);
  EXPECT_THROW(s.set_read_time("nope_total", 1), std::logic_error);
}

TEST(SeriesStore, SnapshotsCarryTheReadTimesOfFamiliesReadOnTheirOwnSchedule) {
  SeriesStore s;
  s.describe("tick_total", "Read every tick.", SeriesKind::Counter);
  s.describe("slow_total", "Read every 10 s.", SeriesKind::Counter);
  s.describe("slow_seconds", "A histogram read every 10 s.", SeriesKind::Histogram);
  s.set("tick_total", {}, 1);
  s.set("slow_total", {}, 2);
  s.set_histogram("slow_seconds", {}, {1, 2}, {3, 4}, 5.5);
  s.set_read_time("slow_total", 100);
  s.set_read_time("slow_seconds", 100);
  s.set_read_time("slow_total", 100);  // the same read again: the one before stays unknown
  auto times = [&](const std::string& metric) {
    for (const auto& x : s.snapshot())
      if (x.metric == metric) return std::pair{x.read_time, x.previous_read_time};
    ADD_FAILURE() << "no sample " << metric;
    return std::pair{-1.0, -1.0};
  };
  EXPECT_EQ(times("tick_total"), std::pair(0.0, 0.0));  // read at the tick
  EXPECT_EQ(times("slow_total"), std::pair(100.0, 0.0));
  EXPECT_EQ(times("slow_seconds_sum"), std::pair(100.0, 0.0));
  s.set_read_time("slow_total", 110);
  s.set_read_time("slow_seconds", 110);
  EXPECT_EQ(times("slow_total"), std::pair(110.0, 100.0));
  EXPECT_EQ(times("slow_seconds_count"), std::pair(110.0, 100.0));
  EXPECT_EQ(times("tick_total"), std::pair(0.0, 0.0));
  // A series whose owner is read for the first time has no read before, until the next read.
  s.set("slow_total", make_labels({{"pod", "new"}}), 400);
  s.mark_first_read("slow_total", make_labels({{"pod", "new"}}));
  auto of_new = [&] {
    for (const auto& x : s.snapshot())
      if (x.metric == "slow_total" && find_label(x.labels, "pod")) return std::pair{x.read_time, x.previous_read_time};
    return std::pair{-1.0, -1.0};
  };
  EXPECT_EQ(of_new(), std::pair(110.0, 0.0));
  EXPECT_EQ(times("slow_total"), std::pair(110.0, 100.0));  // the family's other series
  s.set_read_time("slow_total", 120);
  EXPECT_EQ(of_new(), std::pair(120.0, 110.0));
}

// The store finds series through a hash index beside its ordered map: after removals and
// re-insertions every series is found by its labels, none twice, and snapshots and /metrics
// still list them in label order.
TEST(SeriesStore, IndexStaysTrueThroughRemovalsAndKeepsLabelOrder) {
  SeriesStore s;
  s.describe("m_total", "M.", SeriesKind::Counter);
  s.describe("h_seconds", "H.", SeriesKind::Histogram);
  auto labels = [](int pod, const char* dir) {
    return make_labels({{"namespace", "ns" + std::to_string(pod % 3)}, {"pod", "p" + std::to_string(pod)}, {"direction", dir}});
  };
  for (int pod = 99; pod >= 0; --pod)
    for (const char* dir : {"ingress", "egress"}) {
      s.set("m_total", labels(pod, dir), pod);
      s.set_histogram("h_seconds", labels(pod, dir), {1, 2}, {static_cast<uint64_t>(pod), 1}, pod);
    }
  ASSERT_EQ(s.size(), 400u);
  // Every other pod goes, then half of those come back with new values.
  s.remove_if([](const Labels& l) { return std::stoi(find_label(l, "pod")->substr(1)) % 2 == 1; });
  ASSERT_EQ(s.size(), 200u);
  for (int pod = 1; pod < 100; pod += 4) s.set("m_total", labels(pod, "egress"), 1000 + pod);
  for (int pod = 0; pod < 100; ++pod) {
    const auto v = s.value("m_total", labels(pod, "egress"));
    if (pod % 2 == 0) {
      ASSERT_TRUE(v.has_value()) << pod;
      EXPECT_EQ(*v, pod);
    } else if (pod % 4 == 1) {
      ASSERT_TRUE(v.has_value()) << pod;
      EXPECT_EQ(*v, 1000 + pod);
    } else {
      EXPECT_FALSE(v.has_value()) << pod;
    }
    EXPECT_EQ(s.value("m_total", labels(pod, "ingress")).has_value(), pod % 2 == 0) << pod;
  }
  EXPECT_EQ(s.size(), 225u);
  // Overwriting is not adding.
  s.set("m_total", labels(0, "egress"), 7);
  EXPECT_EQ(s.size(), 225u);
  EXPECT_EQ(*s.value("m_total", labels(0, "egress")), 7);

  std::vector<Labels> order;
  for (const auto& x : s.snapshot())
    if (x.metric == "m_total") order.push_back(x.labels);
  ASSERT_EQ(order.size(), 125u);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
  EXPECT_EQ(std::adjacent_find(order.begin(), order.end()), order.end());
  for (const auto& f : s.Collect()) {
    std::vector<std::vector<prometheus::ClientMetric::Label>> seen;
    for (const auto& m : f.metric) seen.push_back(m.label);
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end(), [](const auto& a, const auto& b) {
      return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
        return std::tie(x.name, x.value) < std::tie(y.name, y.value);
      });
    })) << f.name;
    EXPECT_EQ(f.metric.size(), f.name == "m_total" ? 125u : 100u) << f.name;
  }
  s.clear("m_total");
  EXPECT_FALSE(s.value("m_total", labels(0, "egress")).has_value());
  s.set("m_total", labels(0, "egress"), 3);
  EXPECT_EQ(*s.value("m_total", labels(0, "egress")), 3);
  EXPECT_EQ(s.size(), 101u);
}

// The agent hands the rules only the series they watch: a family by its name, a histogram's sum
// and count each by its own, in the order of the whole snapshot.
TEST(SeriesStore, SnapshotOfTheNamesAskedForOnly) {
  SeriesStore s;
  s.describe("a_total", "A.", SeriesKind::Counter);
  s.describe("b", "B.", SeriesKind::Gauge);
  s.describe("h_seconds", "H.", SeriesKind::Histogram);
  for (const char* pod : {"p1", "p2"}) {
    s.set("a_total", make_labels({{"pod", pod}}), 1);
    s.set("b", make_labels({{"pod", pod}}), 2);
    s.set_histogram("h_seconds", make_labels({{"pod", pod}}), {1, 2}, {3, 4}, 5.5);
  }
  auto names = [](const std::vector<Sample>& samples) {
    std::vector<std::string> out;
    for (const auto& x : samples) out.push_back(x.metric + *find_label(x.labels, "pod"));
    return out;
  };
  const auto all = s.snapshot();
  EXPECT_EQ(names(all), (std::vector<std::string>{"a_totalp1", "a_totalp2", "bp1", "bp2", "h_seconds_sump1",
                                                  "h_seconds_countp1", "h_seconds_sump2", "h_seconds_countp2"}));
  const std::set<std::string> some{"a_total", "h_seconds_count", "not_a_family"};
  const auto picked = s.snapshot(&some);
  EXPECT_EQ(names(picked), (std::vector<std::string>{"a_totalp1", "a_totalp2", "h_seconds_countp1", "h_seconds_countp2"}));
  EXPECT_EQ(picked[2].value, 7);
  const std::set<std::string> sum_only{"h_seconds_sum"};
  const auto sums = s.snapshot(&sum_only);
  ASSERT_EQ(sums.size(), 2u);
  EXPECT_EQ(sums[0].value, 5.5);
  // A histogram's own name is not a series the rules can watch.
  const std::set<std::string> bare{"h_seconds"};
  EXPECT_TRUE(s.snapshot(&bare).empty());
  const std::set<std::string> none;
  EXPECT_TRUE(s.snapshot(&none).empty());
}

}  // namespace
}  // namespace vigil
