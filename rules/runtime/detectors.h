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
#include <variant>
#include <vector>

#include "rules/core/result.h"

namespace vigil::rules {

struct Verdict {
  bool anomalous = false;
  double score = 0;     // z-score, or distance past a threshold
  double baseline = 0;  // the expected value (mean, or the threshold crossed)
};

// One group's detector state (e.g. its rolling window).
class DetectorState {
 public:
  virtual ~DetectorState() = default;
  // `age` is how long the group has existed, in seconds.
  virtual Verdict evaluate(double value, double age) const = 0;
  // Called only for values judged normal, so that a baseline never learns the fault.
  virtual void learn(double value) = 0;
};

// A configured detector, shared by all groups of one rule.
class Detector {
 public:
  virtual ~Detector() = default;
  virtual const char* name() const = 0;  // as written in Lua: "threshold", "baseline.zscore"
  virtual std::unique_ptr<DetectorState> new_state() const = 0;
  // The default anomaly summary; placeholders are filled by render_summary().
  virtual const char* default_summary() const = 0;
};

// Detector parameters as read from Lua; durations stay strings until the factory parses them.
using ParamValue = std::variant<double, std::string, bool>;
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

// Mean and population standard deviation of the last `capacity` values.
// Welford's updates keep it stable for large values with small spread; an exact recompute
// every `capacity` replacements stops rounding drift from accumulating over days.
class RollingStats {
 public:
  explicit RollingStats(size_t capacity);
  void add(double value);
  size_t size() const { return count_; }
  size_t capacity() const { return ring_.size(); }
  double mean() const { return mean_; }
  double stddev() const;

 private:
  void recompute();

  std::vector<double> ring_;
  size_t next_ = 0;
  size_t count_ = 0;
  size_t replaced_since_recompute_ = 0;
  double mean_ = 0;
  double m2_ = 0;  // sum of squared deviations from the mean
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
