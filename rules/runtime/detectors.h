// Detectors: the maths that decides whether one group's value is anomalous. Rules configure
// them from Lua (`threshold {...}`, `baseline.zscore {...}`); the maths stays in C++ so it can
// be tested with exact numbers and costs nothing per call into Lua.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "rules/core/result.h"

namespace vigil::rules {

namespace detail {
class SnapshotWriter;
class SnapshotReader;
}  // namespace detail

struct Verdict {
  bool anomalous = false;
  double score = 0;     // z-score, or distance past a threshold
  double baseline = 0;  // the expected value (mean, or the threshold crossed)
  // Values inside [band_low, band_high] are normal right now (infinite where a side is not
  // watched: direction = "up" has band_low = -inf).
  double band_low = 0;
  double band_high = 0;
  // How anomalous the value is, in [0, 1]: r^2 / (1 + r^2) with r = score / threshold in the
  // watched direction (0 in the other), so 0.5 at the threshold, 0.9 at three times it, and 0
  // while warming up. Comparable across detectors; `vigil replay` prints it as anomaly_score.
  double probability = 0;
};

// One group's detector state (e.g. its rolling window). Its size is fixed when the state is
// made: nothing grows with time. A state refers to the parameters of the Detector that made it
// (not a copy in every group): it must not outlive that detector.
class DetectorState {
 public:
  virtual ~DetectorState() = default;
  // `age` is how long the group has existed, in seconds.
  virtual Verdict evaluate(double value, double age) const = 0;
  // Called only for values judged normal, so that a baseline never learns the fault.
  virtual void learn(double value) = 0;

  // The forms the rule evaluator calls; `now` is unix seconds (simulated in replay). Detectors
  // that need the time of day (baseline.seasonal) override them.
  virtual Verdict evaluate_at(double value, double age, double /*now*/) const { return evaluate(value, age); }
  virtual void learn_at(double value, double /*now*/) { learn(value); }
  // Called instead of learn for values not learned (the group is pending or firing), so that a
  // detector can restart an accumulation (change.cusum) or, after `relearn_after`, accept a
  // lasting level shift as the new normal.
  virtual void hold(double /*value*/, double /*now*/) {}

  // Versioned binary snapshot of the state, for persisted baselines. restore() accepts only
  // what save() of a state of the same detector with the same parameters wrote, and leaves the
  // state unchanged when it refuses.
  virtual void save(std::string& out) const = 0;
  virtual bool restore(std::string_view in) = 0;

  // Bytes this state holds (the object and what it owns), for the memory-per-series budget.
  virtual size_t memory_bytes() const = 0;
};

// A configured detector, shared by all groups of one rule.
class Detector {
 public:
  virtual ~Detector() = default;
  virtual const char* name() const = 0;  // as written in Lua: "threshold", "baseline.zscore"
  virtual std::unique_ptr<DetectorState> new_state() const = 0;
  // The default anomaly summary; placeholders are filled by render_summary().
  virtual const char* default_summary() const = 0;
  // The parameters in effect, defaults included, as "half_life=10m threshold=4".
  virtual std::string describe() const { return ""; }
  // Whether a pod that has no series of the rule's yet, judged as a rate of 0, matters to this
  // detector: it learns from the quiet (a baseline, first_seen's learning clock), or a 0 can be
  // anomalous. When not, the rule's groups are made by its series only, not for every known pod
  // (a group per pod per rule is most of the engine's memory).
  virtual bool judges_quiet_pods() const { return true; }
};

// Detector parameters as read from Lua; durations stay strings until the factory parses them.
// A detector value is a sub-detector given to a combinator (`any { d1, d2 }`, keys "1", "2").
using ParamValue = std::variant<double, std::string, bool, std::shared_ptr<const Detector>>;
using Params = std::map<std::string, ParamValue>;

struct DetectorContext {
  double tick_seconds = 1.0;
};

struct DetectorKind {
  const char* name;  // dotted names live in a Lua table: "baseline.zscore" -> baseline.zscore
  Result<std::shared_ptr<const Detector>> (*make)(const Params& params, const DetectorContext& ctx);
};

// Every detector Vigil knows, listed explicitly (no static registration).
std::span<const DetectorKind> detector_kinds();
const DetectorKind* find_detector_kind(const std::string& name);

// Mean and population standard deviation of the last `capacity` values, in at most
// kMaxBuckets buckets of consecutive values (each its count, mean and sum of squared
// deviations, by Welford's updates): a window of up to kMaxBuckets values is exact; a longer one
// drops its oldest bucket at a time, so it covers between capacity - bucket + 1 and capacity
// values (a bucket is capacity / kMaxBuckets, rounded up). Memory is fixed by kMaxBuckets, not
// by the window (a value per tick of a 5-minute window was 2.4 KB a group). The totals are
// combined from the buckets after each value (Chan's pairwise formula): nothing drifts.
class RollingStats {
 public:
  static constexpr size_t kMaxBuckets = 16;
  explicit RollingStats(size_t capacity);
  void add(double value);
  size_t size() const { return count_; }
  size_t capacity() const { return capacity_; }
  size_t bucket_size() const { return per_bucket_; }
  size_t heap_bytes() const { return buckets_.capacity() * sizeof(Bucket); }
  double mean() const { return mean_; }
  double stddev() const;
  void save(detail::SnapshotWriter& w) const;
  bool restore(detail::SnapshotReader& r);  // false (and unchanged) unless the capacity matches
  // Reads the format of vigil.zscore.v1 (every value of the window) into buckets, oldest first.
  bool restore_values(detail::SnapshotReader& r);

 private:
  struct Bucket {
    double mean = 0;
    double m2 = 0;  // sum of squared deviations from the bucket's mean
    uint32_t n = 0;
  };
  void total();

  std::vector<Bucket> buckets_;
  uint32_t capacity_ = 1;
  uint32_t per_bucket_ = 1;
  uint32_t head_ = 0;  // the bucket being filled
  uint32_t used_ = 0;  // buckets holding values
  uint64_t count_ = 0;
  double mean_ = 0;
  double m2_ = 0;
};

enum class Direction { Up, Down, Both };

struct ZScoreParams {
  double window = 0;     // seconds
  size_t window_ticks = 0;
  double threshold = 0;
  double min_rate = 0;
  double warmup = 0;     // seconds
  Direction direction = Direction::Up;
  double min_stddev = 1;
};

// The floor under the standard deviation: a flat baseline (stddev 0) must still give a finite
// score, and a steady high rate should not alarm on a few percent of jitter.
double stddev_floor(double mean, double min_stddev);
constexpr double kRelativeStddevFloor = 0.1;

struct ThresholdParams {
  std::optional<double> above;
  std::optional<double> below;
};

Result<ZScoreParams> parse_zscore(const Params& params, const DetectorContext& ctx);
Result<ThresholdParams> parse_threshold(const Params& params);

}  // namespace vigil::rules
