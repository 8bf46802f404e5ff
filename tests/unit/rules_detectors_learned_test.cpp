// baseline.ewma, baseline.mad, baseline.seasonal, baseline.range, change.cusum, rate_of_change and any{}:
// exact numbers for each, snapshots that round-trip, and Lua load errors with file and line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "rules/runtime/detectors.h"
#include "rules/runtime/engine.h"

using namespace vigil;
using namespace vigil::rules;
namespace fs = std::filesystem;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kOld = 1e6;  // an age past every warmup

std::shared_ptr<const Detector> make(const char* kind, const Params& params, double tick = 1) {
  auto d = find_detector_kind(kind)->make(params, DetectorContext{tick});
  EXPECT_TRUE(d.ok()) << kind << ": " << (d.ok() ? "" : d.error().message);
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

TEST(RulesEwma, MeanVarianceScoreBandAndProbability) {
  // half_life of one tick: alpha = 0.5.
  auto st = make("baseline.ewma", {{"half_life", "1s"}, {"threshold", 4.0}, {"direction", "both"}})->new_state();
  EXPECT_FALSE(st->evaluate(1e9, kOld).anomalous);  // nothing learned
  st->learn(10);
  st->learn(20);  // mean 15, variance 0.5 * (0 + 0.5 * 100) = 25
  auto v = st->evaluate(35, kOld);
  EXPECT_DOUBLE_EQ(v.baseline, 15);
  EXPECT_DOUBLE_EQ(v.score, 4);
  EXPECT_TRUE(v.anomalous);
  EXPECT_DOUBLE_EQ(v.band_low, -5);
  EXPECT_DOUBLE_EQ(v.band_high, 35);
  EXPECT_DOUBLE_EQ(v.probability, 0.5);  // at the threshold
  v = st->evaluate(3, kOld);             // z = -2.4: r = 0.6, r^2/(1+r^2) = 0.36/1.36
  EXPECT_DOUBLE_EQ(v.score, -2.4);
  EXPECT_FALSE(v.anomalous);
  EXPECT_DOUBLE_EQ(v.probability, 0.36 / 1.36);
  st->learn(15);  // d = 0: mean 15, variance 12.5
  EXPECT_DOUBLE_EQ(st->evaluate(15 + 2 * std::sqrt(12.5), kOld).score, 2);
}

TEST(RulesEwma, WarmupDirectionAndDefaults) {
  auto up = make("baseline.ewma", {{"half_life", "10s"}});  // threshold 4, warmup 20s, up
  auto st = up->new_state();
  st->learn(0);
  st->learn(2);
  EXPECT_FALSE(st->evaluate(100, 19).anomalous);
  EXPECT_DOUBLE_EQ(st->evaluate(100, 19).probability, 0);
  EXPECT_TRUE(st->evaluate(100, 20).anomalous);
  EXPECT_FALSE(st->evaluate(-100, 20).anomalous);
  EXPECT_EQ(st->evaluate(100, 20).band_low, -kInf);
  EXPECT_EQ(up->describe(), "half_life=10s threshold=4 direction=up warmup=20s min_stddev=0");
}

TEST(RulesEwma, FlatBaselineUsesMinStddev) {
  auto st = make("baseline.ewma", {{"half_life", "5s"}, {"min_stddev", 2.0}})->new_state();
  for (int i = 0; i < 10; ++i) st->learn(7);
  EXPECT_DOUBLE_EQ(st->evaluate(15, kOld).score, 4);
}

TEST(RulesEwma, RelearnAfterAcceptsALastingShift) {
  // Held values (the group is firing) are not learned until relearn_after has passed.
  auto st = make("baseline.ewma", {{"half_life", "1s"}, {"relearn_after", "3s"}, {"min_stddev", 1.0}})->new_state();
  st->learn(0);
  st->learn(0);
  st->hold(100, 1);
  st->hold(100, 2);
  EXPECT_DOUBLE_EQ(st->evaluate(0, kOld).baseline, 0);
  st->hold(100, 3);  // the third held value in a row is learned: mean 50
  EXPECT_DOUBLE_EQ(st->evaluate(0, kOld).baseline, 50);
}

TEST(RulesMad, MedianAndMadOfTheWindow) {
  auto st = make("baseline.mad", {{"window", "5s"}, {"threshold", 5.0}})->new_state();
  for (double v : {1, 2, 3, 4, 100}) st->learn(v);  // median 3, MAD 1: the outlier does not move it
  auto v = st->evaluate(3 + 5 * 1.4826, kOld);
  EXPECT_DOUBLE_EQ(v.baseline, 3);
  EXPECT_NEAR(v.score, 5, 1e-12);
  EXPECT_TRUE(v.anomalous);
  EXPECT_DOUBLE_EQ(v.band_high, 3 + 5 * 1.4826);
  st->learn(6);  // window 2,3,4,100,6: median 4, MAD 2
  EXPECT_DOUBLE_EQ(st->evaluate(4 + 2 * 1.4826, kOld).score, 1);
}

TEST(RulesMad, LongWindowsKeepOneValueInStride) {
  // 64 ticks in 32 samples: one value in two is kept (0, 2, 4, 6, 8): median 4, MAD 2.
  auto st = make("baseline.mad", {{"window", "64s"}})->new_state();
  for (int i = 0; i < 10; ++i) st->learn(i);
  auto v = st->evaluate(4 + 2 * 1.4826, kOld);
  EXPECT_DOUBLE_EQ(v.baseline, 4);
  EXPECT_DOUBLE_EQ(v.score, 1);
}

TEST(RulesSeasonal, SlotsLearnTheirTimeOfPeriod) {
  // A period of 4s in 2 slots: t mod 4 in [0,2) is slot 0, [2,4) slot 1; 2 values per visit.
  auto d = make("baseline.seasonal", {{"period", "4s"}, {"slots", 2.0}, {"half_life", "4s"}, {"min_stddev", 1.0}});
  auto st = d->new_state();
  st->learn_at(10, 0);
  EXPECT_DOUBLE_EQ(st->evaluate_at(50, kOld, 4).score, 0);  // a slot judges after 2 values
  st->learn_at(10, 1);
  st->learn_at(50, 2);
  st->learn_at(50, 3);
  auto v = st->evaluate_at(50, kOld, 4);  // slot 0
  EXPECT_DOUBLE_EQ(v.baseline, 10);
  EXPECT_DOUBLE_EQ(v.score, 40);
  EXPECT_TRUE(v.anomalous);
  EXPECT_DOUBLE_EQ(st->evaluate_at(50, kOld, 86402).score, 0);  // slot 1 on a later period
  // half_life of one period = 2 values of the slot: alpha = 1 - 2^(-1/2).
  st->learn_at(20, 4);
  const double a = 1 - std::exp2(-0.5);
  v = st->evaluate_at(20, kOld, 5);
  EXPECT_DOUBLE_EQ(v.baseline, 10 + a * 10);
  EXPECT_NEAR(v.score, (20 - (10 + a * 10)) / std::sqrt((1 - a) * a * 100), 1e-12);
  EXPECT_EQ(d->describe(), "period=4s slots=2 half_life=4s threshold=4 direction=up warmup=4s min_stddev=1");
}

TEST(RulesCusum, SmallShiftsAddUp) {
  auto st = make("change.cusum", {{"half_life", "1s"}, {"threshold", 5.0}, {"slack", 0.5}})->new_state();
  st->learn(10);
  st->learn(20);  // mean 15, variance 25, sums start now
  auto v = st->evaluate(25, kOld);  // z = 2: S+ = 1.5
  EXPECT_DOUBLE_EQ(v.score, 1.5);
  EXPECT_FALSE(v.anomalous);
  EXPECT_DOUBLE_EQ(v.band_high, 15 + (5 + 0.5) * 5);  // the value that brings S+ to 5 now
  st->learn(25);  // S+ = 1.5; mean 20, variance 0.5 * (25 + 0.5 * 100) = 37.5
  const double sd = std::sqrt(37.5);
  v = st->evaluate(20 + 4 * sd, kOld);  // z = 4: S+ = 1.5 + 4 - 0.5 = 5
  EXPECT_NEAR(v.score, 5, 1e-12);
  EXPECT_TRUE(v.anomalous);
  st->hold(20 + 4 * sd, 0);  // not learned: the sums restart
  EXPECT_NEAR(st->evaluate(20 + 4 * sd, kOld).score, 3.5, 1e-12);
}

TEST(RulesCusum, DownwardShiftsWithDirectionBoth) {
  auto st = make("change.cusum", {{"half_life", "1s"}, {"threshold", 2.0}, {"direction", "both"}})->new_state();
  st->learn(10);
  st->learn(20);
  auto v = st->evaluate(0, kOld);  // z = -3: S- = 2.5
  EXPECT_DOUBLE_EQ(v.score, -2.5);
  EXPECT_TRUE(v.anomalous);
}

TEST(RulesRateOfChange, SlopeOverTheWindow) {
  auto st = make("rate_of_change", {{"above", 10.0}, {"window", "2s"}})->new_state();
  st->learn(0);
  EXPECT_FALSE(st->evaluate(1000, kOld).anomalous);  // not a full window yet
  st->learn(10);
  auto v = st->evaluate(30, kOld);  // (30 - 0) / 2s = 15/s
  EXPECT_TRUE(v.anomalous);
  EXPECT_DOUBLE_EQ(v.score, 5);
  EXPECT_DOUBLE_EQ(v.baseline, 10);
  EXPECT_DOUBLE_EQ(v.band_high, 20);
  EXPECT_DOUBLE_EQ(v.probability, 1);
  st->hold(30, 2);  // remembered even when not learned: (30 - 10) / 2 = 10/s
  EXPECT_FALSE(st->evaluate(30, kOld).anomalous);
  auto falling = make("rate_of_change", {{"below", -1.0}, {"window", "2s"}}, 0.5)->new_state();  // 4 ticks
  for (double x : {8, 8, 8, 8}) falling->learn(x);
  EXPECT_DOUBLE_EQ(falling->evaluate(5, kOld).score, -0.5);  // (5 - 8) / 2s = -1.5/s
}

TEST(RulesRange, PastTheExtremesInUnitsOfTheRange) {
  auto st = make("baseline.range", {{"direction", "both"}})->new_state();
  st->learn(5);
  EXPECT_FALSE(st->evaluate(100, kOld).anomalous);  // one value: no range yet
  st->learn(6);                                       // range [5, 6]
  auto v = st->evaluate(7, kOld);                     // one range past the top
  EXPECT_TRUE(v.anomalous);
  EXPECT_DOUBLE_EQ(v.score, 1);
  EXPECT_DOUBLE_EQ(v.baseline, 6);
  EXPECT_DOUBLE_EQ(v.band_low, 5);
  EXPECT_DOUBLE_EQ(v.band_high, 6);
  EXPECT_DOUBLE_EQ(v.probability, 0.5 + 0.5 * 1 / 1.1);
  v = st->evaluate(4.5, kOld);  // half a range below the bottom
  EXPECT_TRUE(v.anomalous);
  EXPECT_DOUBLE_EQ(v.score, -0.5);
  EXPECT_DOUBLE_EQ(v.baseline, 5);
  EXPECT_DOUBLE_EQ(v.probability, 0.5 + 0.5 * 0.5 / 0.6);
  v = st->evaluate(5.8, kOld);  // inside
  EXPECT_FALSE(v.anomalous);
  EXPECT_DOUBLE_EQ(v.score, 0);
  EXPECT_DOUBLE_EQ(v.probability, 0);
  EXPECT_FALSE(st->evaluate(6, kOld).anomalous);  // at the edge is inside
  st->learn(7);
  EXPECT_FALSE(st->evaluate(7, kOld).anomalous);  // learned: the range grew
}

TEST(RulesRange, ToleranceDirectionAndWarmup) {
  auto d = make("baseline.range", {{"tolerance", 0.1}, {"warmup", "5s"}});  // direction up
  auto st = d->new_state();
  st->learn(0);
  st->learn(10);
  EXPECT_FALSE(st->evaluate(11, kOld).anomalous);  // exactly the tolerance past the top
  auto v = st->evaluate(12, kOld);                  // 0.2 past: 0.1 beyond the tolerance
  EXPECT_TRUE(v.anomalous);
  EXPECT_DOUBLE_EQ(v.probability, 0.75);
  EXPECT_DOUBLE_EQ(v.band_high, 11);
  EXPECT_EQ(v.band_low, -kInf);
  EXPECT_FALSE(st->evaluate(-50, kOld).anomalous);  // not watched
  EXPECT_FALSE(st->evaluate(12, 4).anomalous);      // warming up
  EXPECT_EQ(d->describe(), "tolerance=0.1 smooth=0s direction=up warmup=5s");
}

TEST(RulesRange, SmoothJudgesTheMovingAverage) {
  auto st = make("baseline.range", {{"smooth", "3s"}, {"direction", "both"}})->new_state();
  st->learn(1);
  st->learn(2);
  EXPECT_FALSE(st->evaluate(100, kOld).anomalous);  // no full window yet
  st->learn(3);  // average 2
  st->learn(4);  // average 3: range [2, 3]
  auto v = st->evaluate(8, kOld);  // average of 3, 4, 8 = 5: two ranges past the top
  EXPECT_TRUE(v.anomalous);
  EXPECT_DOUBLE_EQ(v.score, 2);
  EXPECT_FALSE(st->evaluate(2, kOld).anomalous);  // average 3: at the top
  // A held value enters the moving average but does not move the extremes.
  st->hold(14, 5);                                  // window 3, 4, 14: average 7, not learned
  v = st->evaluate(14, kOld);                       // window 4, 14, 14: average 32 / 3
  EXPECT_DOUBLE_EQ(v.score, (32.0 / 3 - 3) / 1);
}

TEST(RulesRange, SeasonJudgesTheDistanceFromTheSlotMean) {
  // season 24s at a 1 s tick: 24 slots of one tick, each needs 2 values before it judges.
  auto st = make("baseline.range", {{"season", "24s"}, {"direction", "both"}})->new_state();
  auto plain = make("baseline.range", {{"direction", "both"}})->new_state();
  double now = 0;
  for (int lap = 0; lap < 4; ++lap)
    for (int s = 0; s < 24; ++s, ++now) {
      if (lap == 0 && s == 23) {
        EXPECT_FALSE(st->evaluate_at(1000, kOld, now).anomalous);  // slot not learned yet
      }
      const double x = 10.0 * s + (lap % 2);  // a rhythm of 0..230, a wobble of 1
      st->learn_at(x, now);
      plain->learn_at(x, now);
    }
  // Slot 5: 54 is well inside the values seen (0 to 231) but 3 to 4 above the slot's mean,
  // when the distances learned span about one.
  EXPECT_FALSE(plain->evaluate_at(54, kOld, now + 5).anomalous);
  auto v = st->evaluate_at(54, kOld, now + 5);
  EXPECT_TRUE(v.anomalous);
  EXPECT_GT(v.score, 2);
  EXPECT_FALSE(st->evaluate_at(50.5, kOld, now + 5).anomalous);
  EXPECT_EQ(make("baseline.range", {{"season", "1d"}, {"smooth", "6h"}}, 300)->describe(),
            "tolerance=0 smooth=6h season=24h direction=up warmup=6h");
}

TEST(RulesRange, HalfLifeForgetsOldExtremes) {
  // alpha 0.5: the extremes relax half way to the running mean on each learned value.
  auto forgetting = make("baseline.range", {{"half_life", "1s"}, {"direction", "both"}})->new_state();
  auto keeping = make("baseline.range", {{"direction", "both"}})->new_state();
  for (double x : {0.0, 10.0, 10.0}) {
    forgetting->learn(x);
    keeping->learn(x);
  }
  // mean 0 -> 5 -> 7.5; bottom 0 -> 2.5 -> 5, top stays 10.
  auto v = forgetting->evaluate(4, kOld);
  EXPECT_TRUE(v.anomalous);
  EXPECT_DOUBLE_EQ(v.baseline, 5);
  EXPECT_DOUBLE_EQ(v.score, -0.2);
  EXPECT_FALSE(keeping->evaluate(4, kOld).anomalous);
}

TEST(RulesRange, MinSurpriseScoresHowRareTheCrossingIs) {
  // min_surprise: a crossing is scored by log10((1 + n) / (1 + g)) + log10(1 + e / 0.1), n the
  // averages judged so far, g those that went at least as far past their edge, e the excess.
  auto d = make("baseline.range", {{"direction", "both"}, {"min_surprise", 1.0}});
  EXPECT_EQ(d->describe(), "tolerance=0 smooth=0s min_surprise=1 direction=both warmup=1s");
  auto st = d->new_state();
  st->learn(10);
  st->learn(11);                               // range [10, 11]; nothing judged yet (no width before)
  for (int i = 0; i < 8; ++i) st->learn(10.5);  // 8 judged, none past an edge
  auto v = st->evaluate(11.5, kOld);            // half a range past the top, the first crossing
  const double first = std::log10(9.0 / 1) + std::log10(1 + 0.5 / 0.1);  // 1.73
  EXPECT_TRUE(v.anomalous);
  EXPECT_DOUBLE_EQ(v.score, 0.5);  // score, baseline and band as without min_surprise
  EXPECT_DOUBLE_EQ(v.baseline, 11);
  EXPECT_NEAR(v.probability, 0.5 + 0.5 * (first - 1) / (first - 1 + 1), 1e-12);
  v = st->evaluate(9.5, kOld);  // the same below: one histogram for both edges
  EXPECT_NEAR(v.probability, 0.5 + 0.5 * (first - 1) / (first - 1 + 1), 1e-12);
  // A hair past the edge is not surprising enough: log10(9) + log10(1.1) < 1.
  v = st->evaluate(11.01, kOld);
  EXPECT_FALSE(v.anomalous);
  EXPECT_DOUBLE_EQ(v.probability, 0);
  EXPECT_NEAR(v.score, 0.01, 1e-9);
  // Once the series has gone a whole range past its edge (11 -> 12), a half-range crossing
  // of the wider range [10, 12] is less rare: one of the 10 judged averages went at least that far.
  st->learn(12);
  st->learn(11);
  v = st->evaluate(13, kOld);
  const double second = std::log10(11.0 / 2) + std::log10(1 + 0.5 / 0.1);  // 1.52
  EXPECT_TRUE(v.anomalous);
  EXPECT_NEAR(v.probability, 0.5 + 0.5 * (second - 1) / (second - 1 + 1), 1e-12);
  // Only the share of a histogram bin above the value counts: a crossing a tenth of a range further
  // than the past one (1.1 against 1) counts it in part; twice as far, not at all.
  v = st->evaluate(12 + 2 * 1.1, kOld);  // 1.1 ranges past
  const double c = (std::log10(1.1) + 3) * 4;  // its bin coordinate: bin 12, the past one's too
  const double part = 1 - (c - std::floor(c));
  const double partial = std::log10(11.0 / (1 + part)) + std::log10(1 + 1.1 / 0.1) - 1;
  EXPECT_NEAR(v.probability, 0.5 + 0.5 * partial / (partial + 1), 1e-12);
  v = st->evaluate(12 + 2 * 2, kOld);  // 2 ranges past: a bin above
  const double far = std::log10(11.0 / 1) + std::log10(1 + 2 / 0.1) - 1;
  EXPECT_NEAR(v.probability, 0.5 + 0.5 * far / (far + 1), 1e-12);
}

TEST(RulesRange, MinSurpriseForgetsWithTheHalfLife) {
  // With a half-life the crossings' histogram and count decay as the extremes do: what happened
  // many half-lives ago no longer changes a verdict. P sees a burst of record crossings, then a quiet
  // stretch; Q only the quiet stretch. Right after the burst they judge a half-range crossing
  // differently; 100 ticks later (50 half-lives) alike.
  const Params params{{"direction", "both"}, {"min_surprise", 0.5}, {"half_life", "2s"}};
  const double alpha = 1 - std::exp2(-0.5);
  auto p = make("baseline.range", params)->new_state();
  auto q = make("baseline.range", params)->new_state();
  for (auto* st : {&p, &q}) {
    (*st)->learn(10);
    (*st)->learn(11);
  }
  for (double spike : {20.0, 10.0, 40.0, 10.0, 80.0, 10.0, 160.0}) p->learn(spike);  // 4 records
  // The probe: half a range past the top of each state's own range (tolerance 0: the band is it).
  auto probe = [](DetectorState& st) {
    const auto inside = st.evaluate(10.5, kOld);
    const double range = inside.band_high - inside.band_low;
    EXPECT_GT(range, 0);
    return st.evaluate(inside.band_high + 0.5 * range, kOld);
  };
  auto quiet = [](DetectorState& st, int ticks) {
    for (int i = 0; i < ticks; ++i) st.learn(i % 2 ? 11 : 10);
  };
  quiet(*p, 6);
  quiet(*q, 6);
  const double p_soon = probe(*p).probability, q_soon = probe(*q).probability;
  EXPECT_GT(std::abs(p_soon - q_soon), 1e-3);  // the burst is still remembered
  quiet(*p, 100);
  quiet(*q, 100);
  const auto vp = probe(*p), vq = probe(*q);
  EXPECT_TRUE(vq.anomalous);
  EXPECT_NEAR(vp.probability, vq.probability, 1e-9);  // forgotten
  // The memory is about 1 / alpha judged averages: no crossing is rarer than 1 in 1 + 1 / alpha.
  const double most = std::log10(1 + 1 / alpha) + std::log10(1 + 0.5 / 0.1) - 0.5;
  EXPECT_LE(vq.probability, 0.5 + 0.5 * most / (most + 1) + 1e-9);
}

TEST(RulesRange, MinSurpriseWithToleranceAndDirection) {
  // The tolerance still gates: the excess e is past it, the rarity is of the distance past the edge.
  auto st = make("baseline.range", {{"tolerance", 0.1}, {"min_surprise", 0.5}})->new_state();  // up
  st->learn(0);
  st->learn(10);
  for (int i = 0; i < 9; ++i) st->learn(5);  // 9 judged
  EXPECT_FALSE(st->evaluate(11, kOld).anomalous);  // at the tolerance
  auto v = st->evaluate(12, kOld);                  // 0.2 past the top, 0.1 past the tolerance
  const double s = std::log10(10.0) + std::log10(2.0) - 0.5;
  EXPECT_TRUE(v.anomalous);
  EXPECT_NEAR(v.probability, 0.5 + 0.5 * s / (s + 1), 1e-12);
  EXPECT_FALSE(st->evaluate(-50, kOld).anomalous);  // not watched
}

TEST(RulesAny, MostAnomalousChildSpeaks) {
  auto ewma = make("baseline.ewma", {{"half_life", "1s"}, {"threshold", 4.0}});
  auto thr = make("threshold", {{"above", 100.0}});
  auto any = make("any", {{"1", ewma}, {"2", thr}});
  auto st = any->new_state();
  st->learn(10);
  st->learn(20);  // ewma: mean 15, sd 5
  auto v = st->evaluate(30, kOld);  // ewma z = 3 (not anomalous), threshold not crossed
  EXPECT_FALSE(v.anomalous);
  EXPECT_DOUBLE_EQ(v.score, 3);
  v = st->evaluate(101, kOld);  // both anomalous; threshold's probability is 1
  EXPECT_TRUE(v.anomalous);
  EXPECT_DOUBLE_EQ(v.baseline, 100);
  EXPECT_EQ(any->describe(), "baseline.ewma {half_life=1s threshold=4 direction=up warmup=2s min_stddev=0}; threshold {above=100}");
}

TEST(RulesDetectors, BadParametersNameTheField) {
  EXPECT_NE(make_error("baseline.ewma", {}).find("missing required field 'half_life'"), std::string::npos);
  EXPECT_EQ(make_error("baseline.ewma", {{"half_life", "1m"}, {"treshold", 3.0}}),
            "unknown field 'treshold' (did you mean 'threshold'?)");
  EXPECT_NE(make_error("baseline.ewma", {{"half_life", "1m"}, {"threshold", 0.0}}).find("field 'threshold' must be > 0"),
            std::string::npos);
  EXPECT_NE(make_error("baseline.mad", {{"window", "2s"}}).find("field 'window': 2s spans fewer than 3 ticks"),
            std::string::npos);
  EXPECT_NE(make_error("baseline.seasonal", {}).find("missing required field 'period'"), std::string::npos);
  EXPECT_NE(make_error("baseline.seasonal", {{"period", "1d"}, {"slots", 1.5}}).find("field 'slots'"), std::string::npos);
  EXPECT_NE(make_error("baseline.seasonal", {{"period", "10s"}, {"slots", 24.0}}).find("field 'period'"), std::string::npos);
  EXPECT_NE(make_error("baseline.seasonal", {{"period", "1d"}, {"half_life", "1h"}}).find("field 'half_life'"),
            std::string::npos);
  EXPECT_NE(make_error("change.cusum", {{"half_life", "1m"}, {"slack", -1.0}}).find("field 'slack' must be >= 0"),
            std::string::npos);
  EXPECT_NE(make_error("rate_of_change", {{"window", "1m"}}).find("needs 'above', 'below' or both"), std::string::npos);
  EXPECT_NE(make_error("rate_of_change", {{"above", 1.0}, {"window", "2h"}}).find("field 'window'"), std::string::npos);
  EXPECT_NE(make_error("baseline.ewma", {{"half_life", "1m"}, {"direction", "left"}}).find("field 'direction'"),
            std::string::npos);
  EXPECT_NE(make_error("baseline.range", {{"tolerance", -0.1}}).find("field 'tolerance' must be >= 0"),
            std::string::npos);
  EXPECT_NE(make_error("baseline.range", {{"smooth", "2h"}}).find("field 'smooth'"), std::string::npos);
  EXPECT_NE(make_error("baseline.range", {{"threshold", 3.0}}).find("unknown field 'threshold'"), std::string::npos);
  EXPECT_NE(make_error("baseline.range", {{"season", "10s"}}).find("24 slots"), std::string::npos);
  EXPECT_NE(make_error("baseline.range", {{"min_surprise", -1.0}}).find("field 'min_surprise' must be >= 0"),
            std::string::npos);
  EXPECT_NE(make_error("any", {}).find("needs at least one detector"), std::string::npos);
  EXPECT_NE(make_error("any", {{"1", 3.0}}).find("entry 1 must be a detector"), std::string::npos);
  EXPECT_NE(make_error("baseline.ewma", {{"half_life", "1m"}, {"relearn_after", "soon"}}).find("field 'relearn_after'"),
            std::string::npos);
}

// Every detector's state survives save -> restore into a fresh state, exactly.
TEST(RulesDetectors, SnapshotsRoundTrip) {
  struct Case {
    const char* kind;
    Params params;
  };
  auto ewma = make("baseline.ewma", {{"half_life", "3s"}});
  std::vector<Case> cases = {
      {"threshold", {{"above", 5.0}}},
      {"baseline.zscore", {{"window", "7s"}, {"threshold", 3.0}}},
      {"baseline.ewma", {{"half_life", "3s"}, {"relearn_after", "2s"}}},
      {"baseline.mad", {{"window", "100s"}}},
      {"baseline.seasonal", {{"period", "10s"}, {"slots", 5.0}}},
      {"change.cusum", {{"half_life", "4s"}, {"direction", "both"}}},
      {"baseline.range", {{"smooth", "4s"}, {"half_life", "20s"}, {"direction", "both"}}},
      {"baseline.range", {{"smooth", "3s"}, {"season", "24s"}, {"direction", "both"}}},
      {"baseline.range", {{"smooth", "2s"}, {"min_surprise", 1.0}, {"direction", "both"}}},
      {"rate_of_change", {{"above", 1.0}, {"window", "3s"}}},
      {"any", {{"1", ewma}, {"2", make("change.cusum", {{"half_life", "4s"}})}}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.kind);
    auto d = make(c.kind, c.params);
    auto a = d->new_state();
    for (int i = 0; i < 57; ++i) {
      double x = std::sin(i * 0.7) * 10 + i * 0.1;
      if (i % 9 == 4) a->hold(x + 50, i);
      else a->learn_at(x, i);
    }
    std::string blob;
    a->save(blob);
    auto b = d->new_state();
    ASSERT_TRUE(b->restore(blob));
    std::string again;
    b->save(again);
    EXPECT_EQ(blob, again);
    for (double x : {-20.0, 0.0, 3.0, 40.0}) {
      auto va = a->evaluate_at(x, 100, 57), vb = b->evaluate_at(x, 100, 57);
      EXPECT_EQ(va.score, vb.score);
      EXPECT_EQ(va.baseline, vb.baseline);
      EXPECT_EQ(va.anomalous, vb.anomalous);
      EXPECT_EQ(va.probability, vb.probability);
    }
    // Refused: truncated, trailing bytes, another detector's snapshot; the state is unchanged.
    EXPECT_FALSE(b->restore(std::string_view(blob).substr(0, blob.size() - 1)));
    EXPECT_FALSE(b->restore(blob + "x"));
    EXPECT_FALSE(b->restore("vigil.nothing.v1"));
    b->save(again);
    EXPECT_EQ(blob, again);
  }
  // A snapshot from a state sized by other parameters is refused.
  std::string blob;
  make("baseline.zscore", {{"window", "7s"}, {"threshold", 3.0}})->new_state()->save(blob);
  EXPECT_FALSE(make("baseline.zscore", {{"window", "8s"}, {"threshold", 3.0}})->new_state()->restore(blob));
  EXPECT_FALSE(make("baseline.ewma", {{"half_life", "8s"}})->new_state()->restore(blob));
}

namespace {

class TempDir {
 public:
  TempDir() {
    static int n = 0;
    dir_ = fs::temp_directory_path() / ("vigil-learned-" + std::to_string(getpid()) + "-" + std::to_string(n++));
    fs::create_directories(dir_);
  }
  ~TempDir() { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

 private:
  fs::path dir_;
};

std::string load_error(const std::string& path) {
  auto engine = RuleEngine::load({path}, EngineOptions{}, nullptr);
  return engine.ok() ? "" : engine.error().message;
}

}  // namespace

TEST(RulesDetectors, EveryDetectorLoadsFromLua) {
  TempDir dir;
  std::string path = dir.write("all.lua", R"lua(
local m = "vigil_forward_bytes_total"
rule { name = "ewma", metric = m, detect = baseline.ewma { half_life = "10m", threshold = 4 } }
rule { name = "mad", metric = m, detect = baseline.mad { window = "30m", threshold = 5 } }
rule { name = "seasonal", metric = m, detect = baseline.seasonal { period = "1d", slots = 24, threshold = 4 } }
rule { name = "cusum", metric = m, detect = change.cusum { half_life = "1h", slack = 0.5, threshold = 5 } }
rule { name = "rate", metric = m, detect = rate_of_change { above = 1000, window = "1m" } }
rule { name = "range", metric = m, detect = baseline.range { smooth = "10m", tolerance = 0.05, direction = "both" } }
rule { name = "any", metric = m, detect = any {
  baseline.ewma { half_life = "10m" },
  change.cusum { half_life = "1h", direction = "both" },
} }
)lua");
  auto engine = RuleEngine::load({path}, EngineOptions{}, nullptr);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  EXPECT_EQ((*engine)->status().size(), 7u);
}

TEST(RulesDetectors, LuaParameterErrorsNameFileLineAndField) {
  TempDir dir;
  std::string path = dir.write("ewma.lua", "\nrule {\n  name = \"r\", metric = \"m\",\n  detect = baseline.ewma { half_life = \"10 m\" },\n}\n");
  // The detector's line, not the rule's first (2).
  EXPECT_EQ(load_error(path), path + ":4: rule 'r': baseline.ewma: field 'half_life': bad duration '10 m' "
                                     "(use e.g. 500ms, 20s, 2m, 1h30m or a number of seconds)");
  path = dir.write("any.lua", "rule { name = \"r\", metric = \"m\",\n  detect = any { baseline.mad { window = \"1h\", treshold = 3 } } }\n");
  EXPECT_EQ(load_error(path), path + ":2: rule 'r': any: entry 1: baseline.mad: unknown field 'treshold' (did you mean 'threshold'?)");
  // Inside any { ... } the line of the sub-detector at fault.
  path = dir.write("any3.lua", "rule { name = \"r\", metric = \"m\", detect = any {\n  threshold { above = 1 },\n"
                               "  baseline.zscore { window = \"5m\", threshold = 4, direction = \"sideways\" },\n} }\n");
  EXPECT_EQ(load_error(path).rfind(path + ":3: rule 'r': any: entry 2: baseline.zscore: field 'direction'", 0), 0u) << load_error(path);
  path = dir.write("nested.lua", "rule { name = \"r\", metric = \"m\", detect = baseline.ewma { baseline.mad { window = \"1h\" } } }\n");
  EXPECT_NE(load_error(path).find(":1: rule 'r': baseline.ewma: takes no sub-detectors"), std::string::npos);
  path = dir.write("mixed.lua", "rule { name = \"r\", metric = \"m\", detect = any { threshold { above = 1 }, window = \"1m\" } }\n");
  EXPECT_NE(load_error(path).find(":1: rule 'r': any: takes a list of detectors and 'suppress'"), std::string::npos);
}

// The table "Memory per series" in docs/rules.md (x86-64, libstdc++).
TEST(RulesDetectors, MemoryPerSeries) {
  auto bytes = [](const char* kind, const Params& p) { return make(kind, p)->new_state()->memory_bytes(); };
  EXPECT_EQ(bytes("threshold", {{"above", 1.0}}), 16u);
  // At most 16 buckets of (mean, M2, count): 2m at 1s is 15 buckets of 8 ticks, 5m 16 of 19.
  EXPECT_EQ(bytes("baseline.zscore", {{"window", "2m"}, {"threshold", 4.0}}), 80u + 24 * 15);
  EXPECT_EQ(bytes("baseline.zscore", {{"window", "5m"}, {"threshold", 4.0}}), 80u + 24 * 16);
  EXPECT_EQ(bytes("baseline.zscore", {{"window", "1h"}, {"threshold", 4.0}}), 80u + 24 * 16);
  EXPECT_EQ(bytes("baseline.zscore", {{"window", "10s"}, {"threshold", 4.0}}), 80u + 24 * 10);  // exact: a value a bucket
  EXPECT_EQ(bytes("baseline.ewma", {{"half_life", "10m"}}), 64u);
  EXPECT_EQ(bytes("baseline.mad", {{"window", "30m"}}), 344u);
  EXPECT_EQ(bytes("baseline.mad", {{"window", "30d"}}), 344u);  // any window: 32 kept values
  EXPECT_EQ(bytes("baseline.seasonal", {{"period", "1d"}}), 112u + 20 * 24);
  EXPECT_EQ(bytes("baseline.seasonal", {{"period", "1d"}, {"slots", 12.0}}), 112u + 20 * 12);
  EXPECT_EQ(bytes("change.cusum", {{"half_life", "1h"}}), 80u);
  EXPECT_EQ(bytes("rate_of_change", {{"above", 1.0}, {"window", "1m"}}), 56u + 8 * 60);
  EXPECT_EQ(bytes("baseline.range", {}), 192u + 8);
  EXPECT_EQ(bytes("baseline.range", {{"smooth", "2m"}}), 192u + 8 * 120);  // a value per tick of smooth
  EXPECT_EQ(bytes("baseline.range", {{"season", "1d"}}), 192u + 8 + 12 * 24);  // a mean and count per slot
  EXPECT_EQ(bytes("baseline.range", {{"min_surprise", 2.0}}), 192u + 8 + 8 * 27);  // 26 bins and a count
}
