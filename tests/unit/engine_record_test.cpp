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

// A counter the agent reads every 10 s, scraped every 2 s: its rate between the agent's reads,
// at every scrape, not 0 four times and five times the rate once.
TEST(Record, CountersReadOnAScheduleGiveTheRateBetweenReads) {
  const std::string text =
      "# TYPE vigil_netstat_total counter\n"
      "vigil_netstat_total{pod=\"a\",statistic=\"NoPorts\"} 130\n"
      "# TYPE vigil_series_read_timestamp_seconds gauge\n"
      "vigil_series_read_timestamp_seconds{metric=\"vigil_netstat_total\"} 1000.5\n"
      "vigil_series_read_timestamp_seconds{metric=\"vigil_node_netstat_total\"} 990\n";
  auto v = scrape_value(text, "vigil_netstat_total", {{"pod", "a"}});
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(v->value, 130);
  EXPECT_EQ(v->read_time, 1000.5);
  auto plain = scrape_value("# TYPE vigil_x_total counter\nvigil_x_total 3\n", "vigil_x_total", {});
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->read_time);

  RecordSeries r;
  EXPECT_EQ(r.add(1001, {100.0, true, 1000.0}), "") << "one read: no rate yet";
  EXPECT_EQ(r.add(1003, {100.0, true, 1000.0}), "");
  EXPECT_EQ(r.add(1011, {150.0, true, 1010.0}), "1011.000,5\n");
  EXPECT_EQ(r.add(1013, {150.0, true, 1010.0}), "1013.000,5\n") << "held until the next read";
  EXPECT_EQ(r.add(1021, {170.0, true, 1020.0}), "1021.000,2\n");
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
