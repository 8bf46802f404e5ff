#include "rules/runtime/detectors.h"

#include <algorithm>
#include <cmath>

#include "rules/runtime/durations.h"
#include "rules/runtime/field_names.h"

namespace vigil::rules {

// ---- RollingStats ----------------------------------------------------------------------------

RollingStats::RollingStats(size_t capacity) : ring_(std::max<size_t>(capacity, 1)) {}

void RollingStats::add(double value) {
  const size_t cap = ring_.size();
  if (count_ < cap) {
    ring_[next_] = value;
    next_ = (next_ + 1) % cap;
    ++count_;
    double delta = value - mean_;
    mean_ += delta / static_cast<double>(count_);
    m2_ += delta * (value - mean_);
    return;
  }
  // Replacing the oldest value keeps n fixed, so mean and M2 update in one step.
  double old = ring_[next_];
  ring_[next_] = value;
  next_ = (next_ + 1) % cap;
  double old_mean = mean_;
  mean_ += (value - old) / static_cast<double>(count_);
  m2_ += (value - old) * (value - mean_ + old - old_mean);
  if (m2_ < 0) m2_ = 0;
  if (++replaced_since_recompute_ >= cap) recompute();
}

void RollingStats::recompute() {
  replaced_since_recompute_ = 0;
  double sum = 0;
  for (size_t i = 0; i < count_; ++i) sum += ring_[i];
  mean_ = sum / static_cast<double>(count_);
  double m2 = 0;
  for (size_t i = 0; i < count_; ++i) m2 += (ring_[i] - mean_) * (ring_[i] - mean_);
  m2_ = m2;
}

double RollingStats::stddev() const {
  if (count_ == 0) return 0;
  return std::sqrt(m2_ / static_cast<double>(count_));
}

double stddev_floor(double mean, double min_stddev) {
  return std::max(min_stddev, kRelativeStddevFloor * std::fabs(mean));
}

// ---- parameter helpers -------------------------------------------------------------------------

namespace {

const char* type_name(const ParamValue& v) {
  if (std::holds_alternative<double>(v)) return "number";
  if (std::holds_alternative<std::string>(v)) return "string";
  return "boolean";
}

Result<void> only_known(const Params& params, const std::vector<std::string_view>& known) {
  for (const auto& [key, value] : params)
    if (std::find(known.begin(), known.end(), key) == known.end()) return make_error(unknown_field(key, known));
  return {};
}

Result<std::optional<double>> number_field(const Params& params, const std::string& key) {
  auto it = params.find(key);
  if (it == params.end()) return std::optional<double>{};
  const double* n = std::get_if<double>(&it->second);
  if (!n) return make_error("field '" + key + "' must be a number (got " + type_name(it->second) + ")");
  if (!std::isfinite(*n)) return make_error("field '" + key + "' must be a finite number");
  return std::optional<double>{*n};
}

Result<std::optional<double>> duration_field(const Params& params, const std::string& key) {
  auto it = params.find(key);
  if (it == params.end()) return std::optional<double>{};
  if (const double* n = std::get_if<double>(&it->second)) {
    if (!std::isfinite(*n) || *n < 0) return make_error("field '" + key + "': a duration must be >= 0 seconds");
    return std::optional<double>{*n};
  }
  if (const std::string* s = std::get_if<std::string>(&it->second)) {
    auto d = parse_duration(*s);
    if (!d) return context("field '" + key + "'", d.error());
    return std::optional<double>{*d};
  }
  return make_error("field '" + key + "' must be a duration like \"20s\" (got boolean)");
}

// ---- baseline.zscore --------------------------------------------------------------------------

class ZScoreState : public DetectorState {
 public:
  explicit ZScoreState(const ZScoreParams& p) : p_(p), stats_(p.window_ticks) {}

  Verdict evaluate(double value, double age) const override {
    Verdict v;
    if (stats_.size() == 0) return v;  // nothing learned yet: no baseline to compare with
    v.baseline = stats_.mean();
    double spread = std::max(stats_.stddev(), stddev_floor(v.baseline, p_.min_stddev));
    v.score = (value - v.baseline) / spread;
    bool beyond = false;
    switch (p_.direction) {
      case Direction::Up: beyond = v.score >= p_.threshold; break;
      case Direction::Down: beyond = v.score <= -p_.threshold; break;
      case Direction::Both: beyond = std::fabs(v.score) >= p_.threshold; break;
    }
    // Tolerate rounding in age: ticks are seconds since the epoch as doubles.
    v.anomalous = age + 1e-6 >= p_.warmup && value >= p_.min_rate && beyond;
    return v;
  }

  void learn(double value) override { stats_.add(value); }

 private:
  ZScoreParams p_;
  RollingStats stats_;
};

class ZScoreDetector : public Detector {
 public:
  explicit ZScoreDetector(ZScoreParams p) : p_(p) {}
  const char* name() const override { return "baseline.zscore"; }
  std::unique_ptr<DetectorState> new_state() const override { return std::make_unique<ZScoreState>(p_); }
  const char* default_summary() const override {
    return "{metric} for {scope} is {value}{unit}, expected {baseline}{unit} (z={score})";
  }

 private:
  ZScoreParams p_;
};

// ---- threshold --------------------------------------------------------------------------------

class ThresholdState : public DetectorState {
 public:
  explicit ThresholdState(const ThresholdParams& p) : p_(p) {}

  Verdict evaluate(double value, double /*age*/) const override {
    Verdict v;
    if (p_.above && (!p_.below || value >= *p_.below)) {
      v.baseline = *p_.above;
      v.anomalous = value > *p_.above;
    } else {
      v.baseline = *p_.below;
      v.anomalous = value < *p_.below;
    }
    v.score = value - v.baseline;
    return v;
  }

  void learn(double) override {}

 private:
  ThresholdParams p_;
};

class ThresholdDetector : public Detector {
 public:
  explicit ThresholdDetector(ThresholdParams p) : p_(p) {}
  const char* name() const override { return "threshold"; }
  std::unique_ptr<DetectorState> new_state() const override { return std::make_unique<ThresholdState>(p_); }
  const char* default_summary() const override {
    return "{metric} for {scope} is {value}{unit}, past the threshold {baseline}{unit}";
  }

 private:
  ThresholdParams p_;
};

Result<std::shared_ptr<const Detector>> make_zscore(const Params& params, const DetectorContext& ctx) {
  auto p = parse_zscore(params, ctx);
  if (!p) return p.error();
  return std::shared_ptr<const Detector>(std::make_shared<ZScoreDetector>(*p));
}

Result<std::shared_ptr<const Detector>> make_threshold(const Params& params, const DetectorContext&) {
  auto p = parse_threshold(params);
  if (!p) return p.error();
  return std::shared_ptr<const Detector>(std::make_shared<ThresholdDetector>(*p));
}

constexpr size_t kMaxWindowTicks = 100'000;  // bounds memory per group

const DetectorKind kKinds[] = {
    {"threshold", make_threshold},
    {"baseline.zscore", make_zscore},
};

}  // namespace

Result<ZScoreParams> parse_zscore(const Params& params, const DetectorContext& ctx) {
  if (auto r = only_known(params, {"window", "threshold", "min_rate", "warmup", "direction", "min_stddev"}); !r)
    return r.error();
  ZScoreParams p;

  auto window = duration_field(params, "window");
  if (!window) return window.error();
  if (!*window) return make_error("missing required field 'window' (e.g. window = \"5m\")");
  p.window = **window;
  double ticks = std::round(p.window / ctx.tick_seconds);
  if (ticks < 2)
    return make_error("field 'window': " + format_duration(p.window) + " spans fewer than 2 ticks of " +
                      format_duration(ctx.tick_seconds));
  if (ticks > static_cast<double>(kMaxWindowTicks))
    return make_error("field 'window': " + format_duration(p.window) + " is more than " +
                      std::to_string(kMaxWindowTicks) + " ticks; use a longer tick or a shorter window");
  p.window_ticks = static_cast<size_t>(ticks);

  auto threshold = number_field(params, "threshold");
  if (!threshold) return threshold.error();
  if (!*threshold) return make_error("missing required field 'threshold' (e.g. threshold = 4)");
  if (**threshold <= 0) return make_error("field 'threshold' must be > 0");
  p.threshold = **threshold;

  auto min_rate = number_field(params, "min_rate");
  if (!min_rate) return min_rate.error();
  p.min_rate = min_rate->value_or(0);
  if (p.min_rate < 0) return make_error("field 'min_rate' must be >= 0");

  auto warmup = duration_field(params, "warmup");
  if (!warmup) return warmup.error();
  p.warmup = warmup->value_or(p.window);

  auto min_stddev = number_field(params, "min_stddev");
  if (!min_stddev) return min_stddev.error();
  p.min_stddev = min_stddev->value_or(1.0);
  if (p.min_stddev <= 0) return make_error("field 'min_stddev' must be > 0");

  if (auto it = params.find("direction"); it != params.end()) {
    const std::string* d = std::get_if<std::string>(&it->second);
    if (d && *d == "up") p.direction = Direction::Up;
    else if (d && *d == "down") p.direction = Direction::Down;
    else if (d && *d == "both") p.direction = Direction::Both;
    else return make_error("field 'direction' must be \"up\", \"down\" or \"both\"");
  }
  return p;
}

Result<ThresholdParams> parse_threshold(const Params& params) {
  if (auto r = only_known(params, {"above", "below"}); !r) return r.error();
  ThresholdParams p;
  auto above = number_field(params, "above");
  if (!above) return above.error();
  auto below = number_field(params, "below");
  if (!below) return below.error();
  p.above = *above;
  p.below = *below;
  if (!p.above && !p.below) return make_error("needs 'above', 'below' or both");
  if (p.above && p.below && *p.below >= *p.above)
    return make_error("'below' must be less than 'above' (otherwise every value is anomalous)");
  return p;
}

std::span<const DetectorKind> detector_kinds() { return kKinds; }

const DetectorKind* find_detector_kind(const std::string& name) {
  for (const auto& k : kKinds)
    if (name == k.name) return &k;
  return nullptr;
}

}  // namespace vigil::rules
