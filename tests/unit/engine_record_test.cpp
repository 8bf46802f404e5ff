// `vigil record`'s pieces: picking and summing a series out of Prometheus text, counters vs
// gauges from the TYPE lines, and rates between scrapes (with a counter reset).
#include <gtest/gtest.h>

#include "engine/record.h"

namespace vigil {
namespace {

const char* kText =
    "# HELP vigil_forward_packets_total Packets.\n"
    "# TYPE vigil_forward_packets_total counter\n"
    "vigil_forward_packets_total{namespace=\"shop\",pod=\"web-1\",direction=\"ingress\"} 10\n"
    "vigil_forward_packets_total{namespace=\"shop\",pod=\"web-1\",direction=\"egress\"} 5\n"
    "vigil_forward_packets_total{namespace=\"shop\",pod=\"db-1\",direction=\"ingress\"} 100\n"
    "# TYPE vigil_bpf_map_entries gauge\n"
    "vigil_bpf_map_entries{map=\"vigil_drops\"} 7\n"
    "vigil_bpf_map_entries{map=\"odd \\\"name\\\", with comma\"} 3 1764000000000\n"
    "# TYPE vigil_tick_duration_seconds histogram\n"
    "vigil_tick_duration_seconds_bucket{le=\"+Inf\"} 42\n"
    "vigil_tick_duration_seconds_sum 0.5\n"
    "vigil_tick_duration_seconds_count 42\n";

TEST(Record, SumsTheMatchingSeriesAndKnowsCountersFromGauges) {
  auto web = scrape_value(kText, "vigil_forward_packets_total", {{"pod", "web-1"}});
  ASSERT_TRUE(web.ok()) << web.error().message;
  EXPECT_EQ(web->value, 15);
  EXPECT_TRUE(web->counter);
  auto in = scrape_value(kText, "vigil_forward_packets_total", {{"direction", "ingress"}});
  EXPECT_EQ(in->value, 110);
  auto gauge = scrape_value(kText, "vigil_bpf_map_entries", {{"map", "odd \"name\", with comma"}});
  EXPECT_EQ(gauge->value, 3);  // the escaped label value matched; the timestamp is not the value
  EXPECT_FALSE(gauge->counter);
  auto count = scrape_value(kText, "vigil_tick_duration_seconds_count", {});
  EXPECT_EQ(count->value, 42);
  EXPECT_TRUE(count->counter) << "a histogram's _count is a counter";
  auto none = scrape_value(kText, "vigil_forward_packets_total", {{"pod", "nope"}});
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->value.has_value());
  auto bad = scrape_value("vigil_x{a=\"1\" 3\n", "vigil_x", {});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("metrics line 1"), std::string::npos) << bad.error().message;
}

TEST(Record, RatesForCountersValuesForGauges) {
  RecordSeries counter;
  EXPECT_EQ(counter.add(100, {10.0, true}), "") << "a rate needs two scrapes";
  EXPECT_EQ(counter.add(102, {30.0, true}), "102.000,10\n");
  EXPECT_EQ(counter.add(104, {4.0, true}), "104.000,2\n") << "after a reset the rate is the new count over the interval";
  EXPECT_EQ(counter.add(105, {std::nullopt, true}), "");
  RecordSeries gauge;
  EXPECT_EQ(gauge.add(100.25, {7.5, false}), "100.250,7.5\n");
}

TEST(Record, WhereListsLabelEqualsValue) {
  auto w = parse_where("pod=web-1,direction=ingress");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->size(), 2u);
  EXPECT_EQ(w->at("direction"), "ingress");
  auto bad = parse_where("pod");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("'pod' is not label=value"), std::string::npos);
}

}  // namespace
}  // namespace vigil
