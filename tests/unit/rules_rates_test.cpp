#include <gtest/gtest.h>

#include "rules/runtime/series_rates.h"

using namespace vigil;
using namespace vigil::rules;

namespace {

Sample counter(const std::string& pod, double v) {
  return Sample{"drops", make_labels({{"namespace", "ns"}, {"pod", pod}}), v, SeriesKind::Counter};
}

std::optional<double> value_of(const std::vector<SeriesValue>& values, const std::string& pod) {
  for (const auto& v : values)
    if (*find_label(v.sample->labels, "pod") == pod) return v.value;
  ADD_FAILURE() << "no value for " << pod;
  return std::nullopt;
}

}  // namespace

TEST(RulesRates, CountersBecomePerSecondRates) {
  SeriesRates rates;
  std::set<std::string> metrics{"drops", "depth"};

  TickInput t1{10, {counter("a", 100), Sample{"depth", {}, 7, SeriesKind::Gauge}, Sample{"other", {}, 1}}, {}};
  auto v1 = rates.update(t1, metrics);
  ASSERT_EQ(v1.size(), 2u);  // "other" is not watched
  EXPECT_FALSE(value_of(v1, "a"));  // no rate on the first tick
  EXPECT_EQ(v1[1].value, 7);        // gauges pass through, even on the first tick

  TickInput t2{12, {counter("a", 110), counter("b", 8)}, {}};
  auto v2 = rates.update(t2, metrics);
  EXPECT_DOUBLE_EQ(*value_of(v2, "a"), 5);  // 10 over 2 s
  EXPECT_DOUBLE_EQ(*value_of(v2, "b"), 4);  // new series: it was 0 at the previous tick

  TickInput t3{13, {counter("a", 3), counter("b", 8)}, {}};
  auto v3 = rates.update(t3, metrics);
  EXPECT_DOUBLE_EQ(*value_of(v3, "a"), 3);  // reset: the new value is the delta
  EXPECT_DOUBLE_EQ(*value_of(v3, "b"), 0);
}

TEST(RulesRates, GapsAndForgetting) {
  SeriesRates rates;
  std::set<std::string> metrics{"drops"};
  TickInput t1{0, {counter("a", 0)}, {}};
  (void)rates.update(t1, metrics);
  TickInput t2{1, {counter("a", 10)}, {}};
  (void)rates.update(t2, metrics);
  TickInput gap{5, {counter("a", 30)}, {}};  // absent for 3 ticks: the rate spans the gap
  EXPECT_DOUBLE_EQ(*rates.update(gap, metrics)[0].value, 5);

  TickInput empty{400, {}, {}};
  (void)rates.update(empty, metrics);
  EXPECT_EQ(rates.tracked(), 0u);  // unseen for more than 5 minutes
  TickInput back{401, {counter("a", 50)}, {}};
  EXPECT_DOUBLE_EQ(*rates.update(back, metrics)[0].value, 50);  // counted from zero again
}

// A family read every 10 s while the rules tick every second (the netstat family): each read's
// increase is spread over the time since the read before and held until the next read, not
// 0 for nine ticks and ten times the rate on the tenth.
TEST(RulesRates, SeriesReadOnTheirOwnScheduleHoldTheirRateBetweenReads) {
  SeriesRates rates;
  std::set<std::string> metrics{"drops"};
  auto slow = [](const std::string& pod, double v, double read, double before) {
    Sample s = counter(pod, v);
    s.read_time = read;
    s.previous_read_time = before;
    return s;
  };
  std::vector<std::optional<double>> a, b;
  for (int tick = 0; tick < 35; ++tick) {
    const double now = 1000 + tick;
    const double read = 1000 + 10 * (tick / 10) - 0.01;  // read just before the tick that read it
    const double before = tick < 10 ? 0 : read - 10;
    const double a_value = 30 * (tick / 10 + 1);         // 3/s, read every 10 s
    TickInput in{now, {slow("a", a_value, read, before)}, {}};
    if (tick >= 20) in.samples.push_back(slow("b", 50 * (tick / 10 - 1), read, before));  // appears at the third read
    auto v = rates.update(in, metrics);
    a.push_back(value_of(v, "a"));
    b.push_back(tick >= 20 ? value_of(v, "b") : std::nullopt);
  }
  for (int tick = 0; tick < 10; ++tick) EXPECT_FALSE(a[tick]) << tick;  // nothing known before the second read
  for (int tick = 10; tick < 35; ++tick) {
    ASSERT_TRUE(a[tick]) << tick;
    EXPECT_NEAR(*a[tick], 3, 1e-9) << tick;
  }
  // b was not there at the second read, so it was 0 then: 50 in 10 s, then 50 more in 10 s.
  for (int tick = 20; tick < 35; ++tick) {
    ASSERT_TRUE(b[tick]) << tick;
    EXPECT_NEAR(*b[tick], 5, 1e-9) << tick;
  }
}

// Started between two reads: the values were not seen at the read before, so no rate until the
// next read, then the rate over that interval; held series are not forgotten between reads an
// hour apart.
TEST(RulesRates, ScheduledSeriesFirstSeenBetweenReadsAndReadRarely) {
  SeriesRates rates;
  std::set<std::string> metrics{"drops"};
  auto slow = [](double v, double read, double before) {
    Sample s = counter("a", v);
    s.read_time = read;
    s.previous_read_time = before;
    return s;
  };
  TickInput t1{105, {slow(500, 100, 90)}, {}};
  EXPECT_FALSE(rates.update(t1, metrics)[0].value);  // the first tick: no rate
  TickInput t2{106, {slow(500, 100, 90)}, {}};
  EXPECT_FALSE(rates.update(t2, metrics)[0].value);
  TickInput t3{110, {slow(540, 110, 100)}, {}};
  EXPECT_DOUBLE_EQ(*rates.update(t3, metrics)[0].value, 4);
  // Reads an hour apart, ticks every 10 s: still tracked, the rate held.
  for (int k = 1; k <= 360; ++k) {
    TickInput t{110.0 + 10 * k, {slow(540, 110, 100)}, {}};
    auto v = rates.update(t, metrics);
    ASSERT_TRUE(v[0].value) << k;
    EXPECT_DOUBLE_EQ(*v[0].value, 4) << k;
  }
  TickInput t4{3720, {slow(900, 3710, 110)}, {}};
  EXPECT_DOUBLE_EQ(*rates.update(t4, metrics)[0].value, 0.1);
  EXPECT_EQ(rates.tracked(), 1u);
}
