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
