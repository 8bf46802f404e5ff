#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <sstream>

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
  s.set_first_read("slow_total", make_labels({{"pod", "new"}}), 400);
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

}  // namespace
}  // namespace vigil
