#include "rules/runtime/detectors.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "rules/runtime/detector_util.h"
#include "rules/runtime/durations.h"
#include "rules/runtime/field_names.h"
#include "rules/runtime/first_seen.h"

namespace vigil::rules {

// ---- RollingStats ----------------------------------------------------------------------------

RollingStats::RollingStats(size_t capacity) {
  capacity = std::clamp<size_t>(capacity, 1, UINT32_MAX);
  capacity_ = static_cast<uint32_t>(capacity);
  per_bucket_ = static_cast<uint32_t>((capacity + kMaxBuckets - 1) / kMaxBuckets);
  buckets_.resize((capacity + per_bucket_ - 1) / per_bucket_);
}

void RollingStats::add(double value) {
  if (used_ == 0) {
    used_ = 1;
  } else if (buckets_[head_].n >= per_bucket_) {
    head_ = static_cast<uint32_t>((head_ + 1) % buckets_.size());
    if (used_ < buckets_.size()) ++used_;
    buckets_[head_] = Bucket{};
  }
  Bucket& b = buckets_[head_];
  ++b.n;
  const double delta = value - b.mean;
  b.mean += delta / static_cast<double>(b.n);
  b.m2 += delta * (value - b.mean);
  total();
}

void RollingStats::total() {
  uint64_t n = 0;
  double mean = 0, m2 = 0;
  const size_t k = buckets_.size();
  for (size_t i = 0; i < used_; ++i) {
    const Bucket& b = buckets_[(head_ + k - i) % k];
    if (b.n == 0) continue;
    const uint64_t joined = n + b.n;
    const double delta = b.mean - mean;
    mean += delta * static_cast<double>(b.n) / static_cast<double>(joined);
    m2 += b.m2 + delta * delta * static_cast<double>(n) * static_cast<double>(b.n) / static_cast<double>(joined);
    n = joined;
  }
  count_ = n;
  mean_ = mean;
  m2_ = std::max(m2, 0.0);
}

double RollingStats::stddev() const {
  if (count_ == 0) return 0;
  return std::sqrt(m2_ / static_cast<double>(count_));
}

void RollingStats::save(detail::SnapshotWriter& w) const {
  w.put<uint32_t>(capacity_);
  w.put<uint32_t>(head_);
  w.put<uint32_t>(used_);
  for (const auto& b : buckets_) {
    w.put(b.mean);
    w.put(b.m2);
    w.put(b.n);
  }
}

bool RollingStats::restore(detail::SnapshotReader& r) {
  const auto capacity = r.get<uint32_t>();
  const auto head = r.get<uint32_t>();
  const auto used = r.get<uint32_t>();
  std::vector<Bucket> buckets(buckets_.size());
  for (auto& b : buckets) {
    b.mean = r.get<double>();
    b.m2 = r.get<double>();
    b.n = r.get<uint32_t>();
    if (b.n > per_bucket_ || !std::isfinite(b.mean) || !(b.m2 >= 0)) return false;
  }
  if (!r.ok() || capacity != capacity_ || head >= buckets.size() || used > buckets.size()) return false;
  buckets_ = std::move(buckets);
  head_ = head;
  used_ = used;
  total();
  return true;
}

bool RollingStats::restore_values(detail::SnapshotReader& r) {
  auto ring = r.get_doubles(capacity_);
  auto next = r.get<uint64_t>();
  auto count = r.get<uint64_t>();
  (void)r.get<uint64_t>();  // replaced since the last recompute
  (void)r.get<double>();    // mean and M2, recomputed here
  (void)r.get<double>();
  if (!r.ok() || next >= ring.size() || count > ring.size()) return false;
  RollingStats copy(capacity_);
  const size_t first = count < ring.size() ? 0 : next;
  for (size_t i = 0; i < count; ++i) copy.add(ring[(first + i) % ring.size()]);
  *this = std::move(copy);
  return true;
}

double stddev_floor(double mean, double min_stddev) {
  return std::max(min_stddev, kRelativeStddevFloor * std::fabs(mean));
}

// ---- parameter helpers -------------------------------------------------------------------------

namespace detail {

namespace {
const char* type_name(const ParamValue& v) {
  if (std::holds_alternative<double>(v)) return "number";
  if (std::holds_alternative<std::string>(v)) return "string";
  if (std::holds_alternative<bool>(v)) return "boolean";
  return "detector";
}
}  // namespace

Result<void> only_known(const Params& params, const std::vector<std::string_view>& known) {
  for (const auto& [key, value] : params) {
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    if (std::holds_alternative<std::shared_ptr<const Detector>>(value))
      return make_error("takes no sub-detectors (found one at position " + key + ")");
    return make_error(unknown_field(key, known));
  }
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
  return make_error("field '" + key + "' must be a duration like \"20s\" (got " + type_name(it->second) + ")");
}

Result<Direction> direction_field(const Params& params, Direction fallback) {
  auto it = params.find("direction");
  if (it == params.end()) return fallback;
  const std::string* d = std::get_if<std::string>(&it->second);
  if (d && *d == "up") return Direction::Up;
  if (d && *d == "down") return Direction::Down;
  if (d && *d == "both") return Direction::Both;
  return make_error("field 'direction' must be \"up\", \"down\" or \"both\"");
}

Result<size_t> ticks_of(const std::string& field, double seconds, const DetectorContext& ctx, size_t min_ticks,
                        size_t max_ticks) {
  double ticks = std::round(seconds / ctx.tick_seconds);
  if (ticks < static_cast<double>(min_ticks))
    return make_error("field '" + field + "': " + format_duration(seconds) + " spans fewer than " +
                      std::to_string(min_ticks) + " ticks of " + format_duration(ctx.tick_seconds));
  if (ticks > static_cast<double>(max_ticks))
    return make_error("field '" + field + "': " + format_duration(seconds) + " is more than " +
                      std::to_string(max_ticks) + " ticks; use a longer tick or a shorter " + field);
  return static_cast<size_t>(ticks);
}

const char* direction_name(Direction d) {
  switch (d) {
    case Direction::Up: return "up";
    case Direction::Down: return "down";
    case Direction::Both: return "both";
  }
  return "up";
}

std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

double probability_of(double score, double threshold, Direction d) {
  double s = d == Direction::Up ? std::max(score, 0.0) : d == Direction::Down ? std::max(-score, 0.0) : std::fabs(score);
  if (!(threshold > 0) || !std::isfinite(s)) return s > 0 ? 1.0 : 0.0;
  double r = s / threshold;
  if (r > 1e150) return 1.0;
  return r * r / (1 + r * r);
}

bool beyond(double score, double threshold, Direction d) {
  switch (d) {
    case Direction::Up: return score >= threshold;
    case Direction::Down: return score <= -threshold;
    case Direction::Both: return std::fabs(score) >= threshold;
  }
  return false;
}

}  // namespace detail

namespace {

using namespace detail;

// ---- baseline.zscore --------------------------------------------------------------------------

class ZScoreState : public DetectorState {
 public:
  explicit ZScoreState(const ZScoreParams& p) : p_(&p), stats_(p.window_ticks) {}

  Verdict evaluate(double value, double age) const override {
    Verdict v;
    if (stats_.size() == 0) return v;  // nothing learned yet: no baseline to compare with
    v.baseline = stats_.mean();
    double spread = std::max(stats_.stddev(), stddev_floor(v.baseline, p_->min_stddev));
    v.score = (value - v.baseline) / spread;
    v.band_low = p_->direction == Direction::Up ? -kInf : v.baseline - p_->threshold * spread;
    v.band_high = p_->direction == Direction::Down ? kInf : v.baseline + p_->threshold * spread;
    // Tolerate rounding in age: ticks are seconds since the epoch as doubles.
    bool armed = age + 1e-6 >= p_->warmup && value >= p_->min_rate;
    v.anomalous = armed && beyond(v.score, p_->threshold, p_->direction);
    v.probability = armed ? probability_of(v.score, p_->threshold, p_->direction) : 0;
    return v;
  }

  void learn(double value) override { stats_.add(value); }

  void save(std::string& out) const override {
    SnapshotWriter w(out, "vigil.zscore.v2");
    stats_.save(w);
  }
  bool restore(std::string_view in) override {
    RollingStats copy(stats_.capacity());
    SnapshotReader r(in, "vigil.zscore.v2");
    if (r.ok()) {
      if (!copy.restore(r) || !r.done()) return false;
    } else {
      // A state saved before the window was kept in buckets: every value, replayed into them,
      // so an upgrade does not send the rule back to warm-up.
      SnapshotReader v1(in, "vigil.zscore.v1");
      if (!copy.restore_values(v1) || !v1.done()) return false;
    }
    stats_ = std::move(copy);
    return true;
  }
  size_t memory_bytes() const override { return sizeof(*this) + stats_.heap_bytes(); }

 private:
  const ZScoreParams* p_;  // the detector's: a state never outlives its detector
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
  std::string describe() const override {
    return "window=" + format_duration(p_.window) + " threshold=" + number_text(p_.threshold) +
           " min_rate=" + number_text(p_.min_rate) + " warmup=" + format_duration(p_.warmup) +
           " direction=" + direction_name(p_.direction) + " min_stddev=" + number_text(p_.min_stddev);
  }

 private:
  ZScoreParams p_;
};

// ---- threshold --------------------------------------------------------------------------------

class ThresholdState : public DetectorState {
 public:
  explicit ThresholdState(const ThresholdParams& p) : p_(&p) {}

  Verdict evaluate(double value, double /*age*/) const override {
    Verdict v;
    if (p_->above && (!p_->below || value >= *p_->below)) {
      v.baseline = *p_->above;
      v.anomalous = value > *p_->above;
    } else {
      v.baseline = *p_->below;
      v.anomalous = value < *p_->below;
    }
    v.score = value - v.baseline;
    v.band_low = p_->below.value_or(-kInf);
    v.band_high = p_->above.value_or(kInf);
    v.probability = v.anomalous ? 1.0 : 0.0;
    return v;
  }

  void learn(double) override {}
  // Stateless; the tag alone says which detector wrote it.
  void save(std::string& out) const override { SnapshotWriter w(out, "vigil.threshold.v1"); }
  bool restore(std::string_view in) override { return SnapshotReader(in, "vigil.threshold.v1").done(); }
  size_t memory_bytes() const override { return sizeof(*this); }

 private:
  const ThresholdParams* p_;
};

class ThresholdDetector : public Detector {
 public:
  explicit ThresholdDetector(ThresholdParams p) : p_(p) {}
  const char* name() const override { return "threshold"; }
  std::unique_ptr<DetectorState> new_state() const override { return std::make_unique<ThresholdState>(p_); }
  const char* default_summary() const override {
    return "{metric} for {scope} is {value}{unit}, past the threshold {baseline}{unit}";
  }
  // A threshold learns nothing; a 0 is anomalous only below a `below` or a negative `above`.
  bool judges_quiet_pods() const override { return p_.below.has_value() || (p_.above && *p_.above < 0); }
  std::string describe() const override {
    std::string out;
    if (p_.above) out += "above=" + number_text(*p_.above);
    if (p_.below) out += std::string(out.empty() ? "" : " ") + "below=" + number_text(*p_.below);
    return out;
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
    {"baseline.ewma", make_ewma},
    {"baseline.mad", make_mad},
    {"baseline.seasonal", make_seasonal},
    {"baseline.range", make_range},
    {"change.cusum", make_cusum},
    {"rate_of_change", make_rate_of_change},
    {"any", make_any},
    {"first_seen", make_first_seen},
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

  auto direction = direction_field(params, Direction::Up);
  if (!direction) return direction.error();
  p.direction = *direction;
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
