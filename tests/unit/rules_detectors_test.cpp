#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "rules/runtime/detectors.h"

using namespace vigil::rules;

namespace {

std::shared_ptr<const Detector> make(const char* kind, const Params& params, double tick = 1) {
  auto d = find_detector_kind(kind)->make(params, DetectorContext{tick});
  EXPECT_TRUE(d.ok()) << (d.ok() ? "" : d.error().message);
  if (!d.ok()) return nullptr;
  // A state refers to its detector's parameters: tests often write make(...)->new_state(), so
  // every detector made here lives until the test program ends.
  static std::vector<std::shared_ptr<const Detector>> keep;
  keep.push_back(*d);
  return *d;
}

std::string make_error(const char* kind, const Params& params, double tick = 1) {
  auto d = find_detector_kind(kind)->make(params, DetectorContext{tick});
  return d.ok() ? "" : d.error().message;
}

}  // namespace

TEST(RulesRollingStats, MeanAndPopulationStddev) {
  RollingStats s(10);
  for (double v : {1, 2, 3, 4}) s.add(v);
  EXPECT_EQ(s.size(), 4u);
  EXPECT_DOUBLE_EQ(s.mean(), 2.5);
  EXPECT_DOUBLE_EQ(s.stddev(), std::sqrt(1.25));
}

TEST(RulesRollingStats, WindowSlides) {
  RollingStats s(3);
  for (double v : {1, 2, 3, 4}) s.add(v);
  EXPECT_EQ(s.size(), 3u);
  EXPECT_DOUBLE_EQ(s.mean(), 3);
  EXPECT_NEAR(s.stddev(), std::sqrt(2.0 / 3.0), 1e-12);
}

TEST(RulesRollingStats, StableForLargeOffsetsAndLongRuns) {
  // Sums of squares would lose every digit here; the spread must still come out right.
  RollingStats s(3);
  for (int i = 0; i < 1000; ++i) s.add(1e9 + i % 3);
  EXPECT_NEAR(s.mean(), 1e9 + 1, 1e-6);
  EXPECT_NEAR(s.stddev(), std::sqrt(2.0 / 3.0), 1e-6);

  RollingStats long_run(7);
  double window[7] = {};
  for (int i = 0; i < 200000; ++i) {
    double v = std::sin(i * 0.37) * 1000 + (i % 11) * 0.001;
    long_run.add(v);
    window[i % 7] = v;
  }
  double mean = 0, m2 = 0;
  for (double v : window) mean += v / 7;
  for (double v : window) m2 += (v - mean) * (v - mean);
  EXPECT_NEAR(long_run.mean(), mean, 1e-9);
  EXPECT_NEAR(long_run.stddev(), std::sqrt(m2 / 7), 1e-9);
}

TEST(RulesRollingStats, LongWindowsAreSixteenBucketsOfTheLatestValues) {
  // 120 values in 15 buckets of 8: once full it covers the latest 113 to 120 values, and its
  // mean and spread are exactly theirs (large offset, small spread: no precision lost either).
  RollingStats s(120);
  EXPECT_EQ(s.bucket_size(), 8u);
  std::vector<double> all;
  int checked = 0;
  for (int i = 0; i < 2000; ++i) {
    const double v = 1e9 + std::sin(i * 0.1) * 50 + (i % 7) * 0.25;
    s.add(v);
    all.push_back(v);
    if (i < 150 || i % 13 != 0) continue;
    const size_t n = s.size();
    ASSERT_GE(n, 113u);
    ASSERT_LE(n, 120u);
    EXPECT_EQ((n - 1) % 8, static_cast<size_t>(i) % 8) << "the newest bucket holds the values since the last rotation";
    double offset = 0, m2 = 0;  // the reference, summed about the offset so that it is exact too
    for (size_t k = all.size() - n; k < all.size(); ++k) offset += (all[k] - 1e9) / static_cast<double>(n);
    const double mean = 1e9 + offset;
    for (size_t k = all.size() - n; k < all.size(); ++k) m2 += (all[k] - mean) * (all[k] - mean);
    EXPECT_NEAR(s.mean(), mean, 1e-6);
    EXPECT_NEAR(s.stddev(), std::sqrt(m2 / static_cast<double>(n)), 1e-6);
    ++checked;
  }
  EXPECT_GT(checked, 100);
  // Up to 16 values a value is a bucket: exact, as before buckets.
  EXPECT_EQ(RollingStats(16).bucket_size(), 1u);
  EXPECT_EQ(RollingStats(17).bucket_size(), 2u);
  EXPECT_EQ(RollingStats(86400).bucket_size(), 5400u);
}

TEST(RulesZScore, ScoreAgainstMeanAndStddev) {
  auto d = make("baseline.zscore", {{"window", "10s"}, {"threshold", 4.0}});
  auto st = d->new_state();
  for (int i = 0; i < 10; ++i) st->learn(i % 2 ? 30 : 10);  // mean 20, stddev 10
  auto v = st->evaluate(60, 100);
  EXPECT_DOUBLE_EQ(v.baseline, 20);
  EXPECT_DOUBLE_EQ(v.score, 4);
  EXPECT_TRUE(v.anomalous);  // a score equal to the threshold counts
  v = st->evaluate(59, 100);
  EXPECT_NEAR(v.score, 3.9, 1e-12);
  EXPECT_FALSE(v.anomalous);
}

TEST(RulesZScore, FlatZeroBaselineGivesLargeFiniteScore) {
  auto d = make("baseline.zscore", {{"window", "2m"}, {"threshold", 4.0}, {"min_rate", 1.0}, {"warmup", "20s"}});
  auto st = d->new_state();
  for (int i = 0; i < 30; ++i) st->learn(0);
  auto v = st->evaluate(120, 30);
  EXPECT_DOUBLE_EQ(v.baseline, 0);
  EXPECT_DOUBLE_EQ(v.score, 120);  // stddev floor of 1
  EXPECT_TRUE(v.anomalous);
}

TEST(RulesZScore, RelativeFloorForSteadyHighRates) {
  auto d = make("baseline.zscore", {{"window", "10s"}, {"threshold", 4.0}});
  auto st = d->new_state();
  for (int i = 0; i < 10; ++i) st->learn(1000);
  EXPECT_DOUBLE_EQ(st->evaluate(1500, 100).score, 5);  // floor = 10% of 1000
  EXPECT_DOUBLE_EQ(st->evaluate(1050, 100).score, 0.5);
}

TEST(RulesZScore, SilenceWarmupAndDirection) {
  auto up = make("baseline.zscore", {{"window", "10s"}, {"threshold", 4.0}, {"min_rate", 1.0}, {"warmup", "20s"}});
  auto st = up->new_state();
  for (int i = 0; i < 10; ++i) st->learn(0);
  EXPECT_FALSE(st->evaluate(0.5, 100).anomalous);  // below min_rate
  EXPECT_FALSE(st->evaluate(50, 19).anomalous);    // still warming up
  EXPECT_TRUE(st->evaluate(50, 20).anomalous);

  auto down = make("baseline.zscore", {{"window", "10s"}, {"threshold", 4.0}, {"direction", "down"}});
  auto both = make("baseline.zscore", {{"window", "10s"}, {"threshold", 4.0}, {"direction", "both"}});
  auto sd = down->new_state(), sb = both->new_state(), su = up->new_state();
  for (int i = 0; i < 10; ++i) sd->learn(100), sb->learn(100), su->learn(100);
  EXPECT_DOUBLE_EQ(sd->evaluate(50, 100).score, -5);
  EXPECT_TRUE(sd->evaluate(50, 100).anomalous);
  EXPECT_FALSE(sd->evaluate(150, 100).anomalous);
  EXPECT_TRUE(sb->evaluate(50, 100).anomalous);
  EXPECT_TRUE(sb->evaluate(150, 100).anomalous);
  EXPECT_FALSE(su->evaluate(50, 100).anomalous);
}

TEST(RulesZScore, NothingLearnedIsNeverAnomalous) {
  auto d = make("baseline.zscore", {{"window", "10s"}, {"threshold", 4.0}, {"warmup", 0.0}});
  EXPECT_FALSE(d->new_state()->evaluate(1e9, 1000).anomalous);
}

TEST(RulesZScore, WindowInTicks) {
  ZScoreParams p = *parse_zscore({{"window", "2m"}, {"threshold", 4.0}}, DetectorContext{0.5});
  EXPECT_EQ(p.window_ticks, 240u);
  EXPECT_DOUBLE_EQ(p.warmup, 120);  // defaults to the window
  EXPECT_EQ(p.direction, Direction::Up);
  EXPECT_DOUBLE_EQ(p.min_rate, 0);
}

TEST(RulesZScore, BadParameters) {
  EXPECT_EQ(make_error("baseline.zscore", {{"window", "2m"}, {"thresold", 4.0}}),
            "unknown field 'thresold' (did you mean 'threshold'?)");
  EXPECT_NE(make_error("baseline.zscore", {{"window", "2m"}}).find("missing required field 'threshold'"), std::string::npos);
  EXPECT_NE(make_error("baseline.zscore", {{"threshold", 4.0}}).find("missing required field 'window'"), std::string::npos);
  EXPECT_NE(make_error("baseline.zscore", {{"window", "1s"}, {"threshold", 4.0}}).find("fewer than 2 ticks"), std::string::npos);
  EXPECT_NE(make_error("baseline.zscore", {{"window", "2 min"}, {"threshold", 4.0}}).find("field 'window': bad duration"),
            std::string::npos);
  EXPECT_NE(make_error("baseline.zscore", {{"window", "2m"}, {"threshold", -1.0}}).find("must be > 0"), std::string::npos);
  EXPECT_NE(make_error("baseline.zscore", {{"window", "2m"}, {"threshold", "4"}}).find("must be a number (got string)"),
            std::string::npos);
  EXPECT_NE(make_error("baseline.zscore", {{"window", "2m"}, {"threshold", 4.0}, {"direction", "sideways"}})
                .find("'direction'"),
            std::string::npos);
  EXPECT_NE(make_error("baseline.zscore", {{"window", "30d"}, {"threshold", 4.0}}).find("ticks"), std::string::npos);
}

TEST(RulesThreshold, AboveBelowAndBoth) {
  auto above = make("threshold", {{"above", 100.0}})->new_state();
  EXPECT_FALSE(above->evaluate(100, 0).anomalous);
  auto v = above->evaluate(130, 0);
  EXPECT_TRUE(v.anomalous);
  EXPECT_DOUBLE_EQ(v.baseline, 100);
  EXPECT_DOUBLE_EQ(v.score, 30);

  auto below = make("threshold", {{"below", 5.0}})->new_state();
  EXPECT_TRUE(below->evaluate(4, 0).anomalous);
  EXPECT_FALSE(below->evaluate(5, 0).anomalous);

  auto band = make("threshold", {{"above", 10.0}, {"below", 2.0}})->new_state();
  EXPECT_TRUE(band->evaluate(1, 0).anomalous);
  EXPECT_FALSE(band->evaluate(5, 0).anomalous);
  EXPECT_TRUE(band->evaluate(11, 0).anomalous);

  EXPECT_NE(make_error("threshold", {}).find("needs 'above', 'below' or both"), std::string::npos);
  EXPECT_NE(make_error("threshold", {{"above", 1.0}, {"below", 2.0}}).find("less than"), std::string::npos);
  EXPECT_EQ(make_error("threshold", {{"abve", 1.0}}), "unknown field 'abve' (did you mean 'above'?)");
}

// A zscore state saved before windows were bucketed (vigil.zscore.v1: every value of the window
// in a ring) is read into buckets, so an upgrade keeps the learned baseline.
TEST(RulesZScore, RestoresTheFormatThatKeptEveryValue) {
  auto v1_blob = [](size_t capacity, size_t next, size_t count, const std::vector<double>& ring) {
    std::string out = "vigil.zscore.v1";
    out.push_back('\0');
    auto put = [&](auto v) {
      char buf[sizeof v];
      std::memcpy(buf, &v, sizeof v);
      out.append(buf, sizeof v);
    };
    put(static_cast<uint64_t>(capacity));
    for (double d : ring) put(d);
    put(static_cast<uint64_t>(next));
    put(static_cast<uint64_t>(count));
    put(static_cast<uint64_t>(0));
    put(0.0);  // mean and M2 as saved: recomputed from the values
    put(0.0);
    return out;
  };
  // 120 values 0..119 in time order, the oldest at ring[30] (the ring had wrapped).
  std::vector<double> ring(120);
  for (size_t i = 0; i < 120; ++i) ring[(30 + i) % 120] = static_cast<double>(i);
  auto d = make("baseline.zscore", {{"window", "2m"}, {"threshold", 4.0}});
  auto st = d->new_state();
  ASSERT_TRUE(st->restore(v1_blob(120, 30, 120, ring)));
  EXPECT_DOUBLE_EQ(st->evaluate(0, 1e6).baseline, 59.5);
  // The next value starts a new bucket and the oldest (0..7) goes: 8..119 and 1000.
  st->learn(1000);
  double mean = 1000;
  for (int i = 8; i < 120; ++i) mean += i;
  EXPECT_NEAR(st->evaluate(0, 1e6).baseline, mean / 113, 1e-9);
  // A ring that had not wrapped yet: 10 values from ring[0].
  std::vector<double> young(120, 0.0);
  for (size_t i = 0; i < 10; ++i) young[i] = 5.0 + static_cast<double>(i);
  auto st2 = d->new_state();
  ASSERT_TRUE(st2->restore(v1_blob(120, 10, 10, young)));
  EXPECT_DOUBLE_EQ(st2->evaluate(0, 1e6).baseline, 9.5);
  // Another window's values are refused, and the state is left as it was.
  EXPECT_FALSE(st2->restore(v1_blob(60, 0, 60, std::vector<double>(60, 1.0))));
  EXPECT_DOUBLE_EQ(st2->evaluate(0, 1e6).baseline, 9.5);
  // What it saves now is the bucketed form, which it reads back.
  std::string saved;
  st->save(saved);
  EXPECT_EQ(saved.rfind("vigil.zscore.v2", 0), 0u);
  auto st3 = d->new_state();
  ASSERT_TRUE(st3->restore(saved));
  EXPECT_NEAR(st3->evaluate(0, 1e6).baseline, mean / 113, 1e-9);
}
