// The learned and composed detectors: baseline.ewma, baseline.mad, baseline.seasonal,
// baseline.range, change.cusum, rate_of_change and any { ... }. Each state has a size fixed by its parameters
// (see "Memory per series" in docs/rules.md); nothing grows with the age of a series.
#include <algorithm>
#include <array>
#include <cmath>

#include "rules/runtime/detector_util.h"
#include "rules/runtime/durations.h"

namespace vigil::rules::detail {
namespace {

// Parameters every learned detector shares.
struct Common {
  double threshold = 0;
  Direction direction = Direction::Up;
  double min_rate = 0;
  double warmup = 0;     // seconds of group age before anything is anomalous
  double min_stddev = 0;  // floor under the spread
  double min_stddev_ratio = 0;  // and this fraction of |baseline|
  size_t relearn_after = 0;  // held values after which the baseline learns anyway; 0: never
  double relearn_after_s = 0;

  std::string describe() const {
    std::string out = "threshold=" + number_text(threshold) + " direction=" + direction_name(direction) +
                      " warmup=" + format_duration(warmup) + " min_stddev=" + number_text(min_stddev);
    if (min_stddev_ratio > 0) out += " min_stddev_ratio=" + number_text(min_stddev_ratio);
    if (min_rate > 0) out += " min_rate=" + number_text(min_rate);
    if (relearn_after > 0) out += " relearn_after=" + format_duration(relearn_after_s);
    return out;
  }
};

const std::vector<std::string_view> kCommonFields = {"threshold", "direction", "min_rate", "warmup", "min_stddev",
                                                     "min_stddev_ratio", "relearn_after"};

std::vector<std::string_view> with_common(std::vector<std::string_view> fields) {
  fields.insert(fields.end(), kCommonFields.begin(), kCommonFields.end());
  return fields;
}

Result<Common> parse_common(const Params& params, const DetectorContext& ctx, double default_threshold,
                            double default_warmup) {
  Common c;
  auto threshold = number_field(params, "threshold");
  if (!threshold) return threshold.error();
  c.threshold = threshold->value_or(default_threshold);
  if (c.threshold <= 0) return make_error("field 'threshold' must be > 0");
  auto direction = direction_field(params, Direction::Up);
  if (!direction) return direction.error();
  c.direction = *direction;
  auto min_rate = number_field(params, "min_rate");
  if (!min_rate) return min_rate.error();
  c.min_rate = min_rate->value_or(0);
  if (c.min_rate < 0) return make_error("field 'min_rate' must be >= 0");
  auto warmup = duration_field(params, "warmup");
  if (!warmup) return warmup.error();
  c.warmup = warmup->value_or(default_warmup);
  auto min_stddev = number_field(params, "min_stddev");
  if (!min_stddev) return min_stddev.error();
  c.min_stddev = min_stddev->value_or(0);
  if (c.min_stddev < 0) return make_error("field 'min_stddev' must be >= 0");
  auto ratio = number_field(params, "min_stddev_ratio");
  if (!ratio) return ratio.error();
  c.min_stddev_ratio = ratio->value_or(0);
  if (c.min_stddev_ratio < 0) return make_error("field 'min_stddev_ratio' must be >= 0");
  auto relearn = duration_field(params, "relearn_after");
  if (!relearn) return relearn.error();
  if (*relearn && **relearn > 0) {
    // At least one tick: "after the first held value" whatever the tick.
    auto ticks = ticks_of("relearn_after", std::max(**relearn, ctx.tick_seconds), ctx, 1, 100'000'000);
    if (!ticks) return ticks.error();
    c.relearn_after = *ticks;
    c.relearn_after_s = **relearn;
  }
  return c;
}

// Never divide by zero: a perfectly flat baseline still gives a finite (large) score.
double spread_floor(double spread, double mean, const Common& c) {
  return std::max({spread, c.min_stddev, c.min_stddev_ratio * std::fabs(mean), 1e-9 * std::max(1.0, std::fabs(mean))});
}

// Fills score, band, probability and anomalous from a centre and a spread.
Verdict judge(const Common& c, double value, double age, double centre, double spread) {
  Verdict v;
  v.baseline = centre;
  v.score = (value - centre) / spread;
  v.band_low = c.direction == Direction::Up ? -kInf : centre - c.threshold * spread;
  v.band_high = c.direction == Direction::Down ? kInf : centre + c.threshold * spread;
  bool armed = age + 1e-6 >= c.warmup && value >= c.min_rate;
  v.anomalous = armed && beyond(v.score, c.threshold, c.direction);
  v.probability = armed ? probability_of(v.score, c.threshold, c.direction) : 0;
  return v;
}

// Base for learned states: counts consecutive held values and, past relearn_after, learns them.
class LearnedState : public DetectorState {
 public:
  explicit LearnedState(size_t relearn_after) : relearn_after_(relearn_after) {}
  Verdict evaluate(double value, double age) const override { return evaluate_at(value, age, last_time_); }
  void learn(double value) override { learn_at(value, last_time_); }
  void learn_at(double value, double now) override {
    held_ = 0;
    last_time_ = now;
    absorb(value, now);
  }
  void hold(double value, double now) override {
    last_time_ = now;
    if (relearn_after_ > 0 && ++held_ >= relearn_after_) absorb(value, now);
    on_hold();
  }

 protected:
  virtual void absorb(double value, double now) = 0;
  virtual void on_hold() {}
  void save_base(SnapshotWriter& w) const {
    w.put<uint64_t>(held_);
    w.put(last_time_);
  }
  void restore_base(SnapshotReader& r) {
    held_ = r.get<uint64_t>();
    last_time_ = r.get<double>();
  }

  size_t relearn_after_;
  uint64_t held_ = 0;
  double last_time_ = 0;
};

double alpha_for_half_life(double half_life_ticks) { return 1 - std::exp2(-1.0 / half_life_ticks); }

// ---- baseline.ewma ------------------------------------------------------------------------------

struct EwmaParams {
  Common c;
  double half_life = 0;  // seconds
  double alpha = 0;      // per value
};

class EwmaState final : public LearnedState {
 public:
  explicit EwmaState(const EwmaParams& p) : LearnedState(p.c.relearn_after), p_(&p) {}

  Verdict evaluate_at(double value, double age, double) const override {
    if (n_ == 0) return {};
    return judge(p_->c, value, age, mean_, spread_floor(std::sqrt(var_), mean_, p_->c));
  }
  size_t memory_bytes() const override { return sizeof(*this); }
  void save(std::string& out) const override {
    SnapshotWriter w(out, "vigil.ewma.v1");
    save_base(w);
    w.put<uint64_t>(n_);
    w.put(mean_);
    w.put(var_);
  }
  bool restore(std::string_view in) override {
    SnapshotReader r(in, "vigil.ewma.v1");
    EwmaState s(*p_);
    s.restore_base(r);
    s.n_ = r.get<uint64_t>();
    s.mean_ = r.get<double>();
    s.var_ = r.get<double>();
    if (!r.done()) return false;
    *this = s;
    return true;
  }

 private:
  void absorb(double value, double) override {
    if (n_++ == 0) {
      mean_ = value;
      var_ = 0;
      return;
    }
    // West's exponentially weighted mean and variance.
    double d = value - mean_;
    mean_ += p_->alpha * d;
    var_ = (1 - p_->alpha) * (var_ + p_->alpha * d * d);
  }

  const EwmaParams* p_;  // the detector's: a state never outlives its detector
  uint64_t n_ = 0;
  double mean_ = 0;
  double var_ = 0;
};

class EwmaDetector final : public Detector {
 public:
  explicit EwmaDetector(EwmaParams p) : p_(p) {}
  const char* name() const override { return "baseline.ewma"; }
  std::unique_ptr<DetectorState> new_state() const override { return std::make_unique<EwmaState>(p_); }
  const char* default_summary() const override {
    return "{metric} for {scope} is {value}{unit}, expected {baseline}{unit} (z={score})";
  }
  std::string describe() const override { return "half_life=" + format_duration(p_.half_life) + " " + p_.c.describe(); }

 private:
  EwmaParams p_;
};

// ---- baseline.mad -------------------------------------------------------------------------------

constexpr size_t kMadSamples = 32;

struct MadParams {
  Common c;
  double window = 0;
  size_t stride = 1;    // one value in `stride` is kept
  size_t samples = 0;   // ring size, <= kMadSamples
};

// Median and MAD of a decimated window: the last `samples` values taken one in `stride`, so a
// window of any length costs kMadSamples doubles.
class MadState final : public LearnedState {
 public:
  explicit MadState(const MadParams& p) : LearnedState(p.c.relearn_after), p_(&p) {}

  Verdict evaluate_at(double value, double age, double) const override {
    if (count_ == 0) return {};
    // 1.4826 * MAD estimates the standard deviation of normal data; when more than half the
    // values are equal (MAD 0), 1.2533 * the mean absolute deviation does.
    double spread = mad_ > 0 ? 1.4826 * mad_ : 1.2533 * mean_ad_;
    return judge(p_->c, value, age, median_, spread_floor(spread, median_, p_->c));
  }
  size_t memory_bytes() const override { return sizeof(*this); }
  void save(std::string& out) const override {
    SnapshotWriter w(out, "vigil.mad.v1");
    save_base(w);
    w.put<uint64_t>(count_);
    w.put<uint64_t>(next_);
    w.put<uint64_t>(since_kept_);
    for (size_t i = 0; i < p_->samples; ++i) w.put(ring_[i]);
  }
  bool restore(std::string_view in) override {
    SnapshotReader r(in, "vigil.mad.v1");
    MadState s(*p_);
    s.restore_base(r);
    s.count_ = r.get<uint64_t>();
    s.next_ = r.get<uint64_t>();
    s.since_kept_ = r.get<uint64_t>();
    for (size_t i = 0; i < p_->samples; ++i) s.ring_[i] = r.get<double>();
    if (!r.done() || s.count_ > p_->samples || s.next_ >= p_->samples || s.since_kept_ > p_->stride) return false;
    s.recompute();
    *this = s;
    return true;
  }

 private:
  void absorb(double value, double) override {
    if (count_ > 0 && ++since_kept_ < p_->stride) return;
    since_kept_ = 0;
    ring_[next_] = value;
    next_ = (next_ + 1) % p_->samples;
    count_ = std::min<uint64_t>(count_ + 1, p_->samples);
    recompute();
  }

  static double median_of(double* v, size_t n) {
    std::sort(v, v + n);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  }

  void recompute() {
    if (count_ == 0) return;
    std::array<double, kMadSamples> tmp{};
    std::copy(ring_.begin(), ring_.begin() + static_cast<long>(count_), tmp.begin());
    median_ = median_of(tmp.data(), count_);
    double sum = 0;
    for (size_t i = 0; i < count_; ++i) sum += tmp[i] = std::fabs(ring_[i] - median_);
    mean_ad_ = sum / static_cast<double>(count_);
    mad_ = median_of(tmp.data(), count_);
  }

  const MadParams* p_;  // the detector's: a state never outlives its detector
  std::array<double, kMadSamples> ring_{};
  uint64_t count_ = 0;
  uint64_t next_ = 0;
  uint64_t since_kept_ = 0;
  double median_ = 0;
  double mad_ = 0;
  double mean_ad_ = 0;
};

class MadDetector final : public Detector {
 public:
  explicit MadDetector(MadParams p) : p_(p) {}
  const char* name() const override { return "baseline.mad"; }
  std::unique_ptr<DetectorState> new_state() const override { return std::make_unique<MadState>(p_); }
  const char* default_summary() const override {
    return "{metric} for {scope} is {value}{unit}, median {baseline}{unit} (robust z={score})";
  }
  std::string describe() const override { return "window=" + format_duration(p_.window) + " " + p_.c.describe(); }

 private:
  MadParams p_;
};

// ---- baseline.seasonal --------------------------------------------------------------------------

struct SeasonalParams {
  Common c;
  double period = 0;     // seconds
  size_t slots = 24;
  double half_life = 0;  // seconds
  double alpha = 0;      // per value, within a slot
  uint32_t min_count = 2;  // values a slot needs before it judges
};

// A profile of `slots` slots over the period (aligned to the Unix epoch, UTC: "1d" slots are
// times of day, "1w" slots start on Thursday 00:00 UTC); each slot keeps an exponentially
// weighted mean and variance of the values seen at its time.
class SeasonalState final : public LearnedState {
 public:
  explicit SeasonalState(const SeasonalParams& p)
      : LearnedState(p.c.relearn_after), p_(&p), mean_(p.slots), var_(p.slots), count_(p.slots) {}

  Verdict evaluate_at(double value, double age, double now) const override {
    size_t s = slot(now);
    if (count_[s] < p_->min_count) return {};
    return judge(p_->c, value, age, mean_[s], spread_floor(std::sqrt(var_[s]), mean_[s], p_->c));
  }
  size_t memory_bytes() const override {
    return sizeof(*this) + (mean_.capacity() + var_.capacity()) * sizeof(double) + count_.capacity() * sizeof(uint32_t);
  }
  void save(std::string& out) const override {
    SnapshotWriter w(out, "vigil.seasonal.v1");
    save_base(w);
    w.put_doubles(mean_);
    w.put_doubles(var_);
    for (uint32_t n : count_) w.put(n);
  }
  bool restore(std::string_view in) override {
    SnapshotReader r(in, "vigil.seasonal.v1");
    SeasonalState s(*p_);
    s.restore_base(r);
    s.mean_ = r.get_doubles(p_->slots);
    s.var_ = r.get_doubles(p_->slots);
    if (!r.ok()) return false;
    for (auto& n : s.count_) n = r.get<uint32_t>();
    if (!r.done()) return false;
    *this = std::move(s);
    return true;
  }

 private:
  size_t slot(double now) const {
    double phase = std::fmod(now, p_->period);
    if (phase < 0) phase += p_->period;
    auto s = static_cast<size_t>(phase / p_->period * static_cast<double>(p_->slots));
    return std::min(s, p_->slots - 1);
  }
  void absorb(double value, double now) override {
    size_t s = slot(now);
    if (count_[s] == 0) {
      mean_[s] = value;
      var_[s] = 0;
    } else {
      double d = value - mean_[s];
      mean_[s] += p_->alpha * d;
      var_[s] = (1 - p_->alpha) * (var_[s] + p_->alpha * d * d);
    }
    if (count_[s] < UINT32_MAX) ++count_[s];
  }

  const SeasonalParams* p_;  // the detector's: a state never outlives its detector
  std::vector<double> mean_;
  std::vector<double> var_;
  std::vector<uint32_t> count_;
};

class SeasonalDetector final : public Detector {
 public:
  explicit SeasonalDetector(SeasonalParams p) : p_(p) {}
  const char* name() const override { return "baseline.seasonal"; }
  std::unique_ptr<DetectorState> new_state() const override { return std::make_unique<SeasonalState>(p_); }
  const char* default_summary() const override {
    return "{metric} for {scope} is {value}{unit}, usually {baseline}{unit} at this time (z={score})";
  }
  std::string describe() const override {
    return "period=" + format_duration(p_.period) + " slots=" + std::to_string(p_.slots) +
           " half_life=" + format_duration(p_.half_life) + " " + p_.c.describe();
  }

 private:
  SeasonalParams p_;
};

// ---- change.cusum -------------------------------------------------------------------------------

struct CusumParams {
  Common c;  // threshold is CUSUM's h, in standard deviations
  double slack = 0.5;  // k, in standard deviations
  double half_life = 0;
  double alpha = 0;
};

// Two-sided CUSUM of standardised values against an exponentially weighted reference: small
// persistent shifts add up until a sum passes h. A value not learned (the group is firing)
// restarts both sums, as after an alarm.
class CusumState final : public LearnedState {
 public:
  explicit CusumState(const CusumParams& p) : LearnedState(p.c.relearn_after), p_(&p) {}

  Verdict evaluate_at(double value, double age, double) const override {
    if (n_ < 2) return {};
    double sd = spread_floor(std::sqrt(var_), mean_, p_->c);
    auto [hi, lo] = sums(value, sd);
    Verdict v;
    v.baseline = mean_;
    switch (p_->c.direction) {
      case Direction::Up: v.score = hi; break;
      case Direction::Down: v.score = -lo; break;
      case Direction::Both: v.score = hi >= lo ? hi : -lo; break;
    }
    const double h = p_->c.threshold;
    // The values that would bring a sum to h on this step.
    v.band_high = p_->c.direction == Direction::Down ? kInf : mean_ + (h - hi_ + p_->slack) * sd;
    v.band_low = p_->c.direction == Direction::Up ? -kInf : mean_ - (h - lo_ + p_->slack) * sd;
    bool armed = age + 1e-6 >= p_->c.warmup && value >= p_->c.min_rate;
    v.anomalous = armed && beyond(v.score, h, p_->c.direction);
    v.probability = armed ? probability_of(v.score, h, p_->c.direction) : 0;
    return v;
  }
  size_t memory_bytes() const override { return sizeof(*this); }
  void save(std::string& out) const override {
    SnapshotWriter w(out, "vigil.cusum.v1");
    save_base(w);
    w.put<uint64_t>(n_);
    w.put(mean_);
    w.put(var_);
    w.put(hi_);
    w.put(lo_);
  }
  bool restore(std::string_view in) override {
    SnapshotReader r(in, "vigil.cusum.v1");
    CusumState s(*p_);
    s.restore_base(r);
    s.n_ = r.get<uint64_t>();
    s.mean_ = r.get<double>();
    s.var_ = r.get<double>();
    s.hi_ = r.get<double>();
    s.lo_ = r.get<double>();
    if (!r.done()) return false;
    *this = s;
    return true;
  }

 private:
  std::pair<double, double> sums(double value, double sd) const {
    double z = (value - mean_) / sd;
    return {std::max(0.0, hi_ + z - p_->slack), std::max(0.0, lo_ - z - p_->slack)};
  }
  void absorb(double value, double) override {
    if (n_ >= 2) std::tie(hi_, lo_) = sums(value, spread_floor(std::sqrt(var_), mean_, p_->c));
    if (n_++ == 0) {
      mean_ = value;
      return;
    }
    double d = value - mean_;
    mean_ += p_->alpha * d;
    var_ = (1 - p_->alpha) * (var_ + p_->alpha * d * d);
  }
  void on_hold() override { hi_ = lo_ = 0; }

  const CusumParams* p_;  // the detector's: a state never outlives its detector
  uint64_t n_ = 0;
  double mean_ = 0;
  double var_ = 0;
  double hi_ = 0;
  double lo_ = 0;
};

class CusumDetector final : public Detector {
 public:
  explicit CusumDetector(CusumParams p) : p_(p) {}
  const char* name() const override { return "change.cusum"; }
  std::unique_ptr<DetectorState> new_state() const override { return std::make_unique<CusumState>(p_); }
  const char* default_summary() const override {
    return "{metric} for {scope} shifted to {value}{unit} from {baseline}{unit} (cusum={score})";
  }
  std::string describe() const override {
    return "half_life=" + format_duration(p_.half_life) + " slack=" + number_text(p_.slack) + " " + p_.c.describe();
  }

 private:
  CusumParams p_;
};

// ---- rate_of_change -----------------------------------------------------------------------------

constexpr size_t kMaxRateTicks = 1024;

struct RateParams {
  std::optional<double> above;  // per second
  std::optional<double> below;
  double window = 0;
  size_t window_ticks = 0;
  double tick = 1;
};

// (value - value `window` ago) / window, against static bounds. Every value is remembered, the
// held ones too: the slope is a fact about the series, not a learned baseline.
class RateState final : public DetectorState {
 public:
  explicit RateState(const RateParams& p) : p_(&p), ring_(p.window_ticks) {}

  Verdict evaluate(double value, double) const override {
    Verdict v;
    v.band_low = -kInf;
    v.band_high = kInf;
    if (count_ < ring_.size()) return v;  // not a full window yet
    const double old = ring_[next_];       // the oldest: window_ticks values ago
    const double span = static_cast<double>(p_->window_ticks) * p_->tick;
    const double rate = (value - old) / span;
    if (p_->above && (!p_->below || rate >= *p_->below)) {
      v.baseline = *p_->above;
      v.anomalous = rate > *p_->above;
    } else {
      v.baseline = *p_->below;
      v.anomalous = rate < *p_->below;
    }
    v.score = rate - v.baseline;
    if (p_->below) v.band_low = old + *p_->below * span;
    if (p_->above) v.band_high = old + *p_->above * span;
    v.probability = v.anomalous ? 1.0 : 0.0;
    return v;
  }
  void learn(double value) override {
    ring_[next_] = value;
    next_ = (next_ + 1) % ring_.size();
    count_ = std::min<uint64_t>(count_ + 1, ring_.size());
  }
  void hold(double value, double) override { learn(value); }
  size_t memory_bytes() const override { return sizeof(*this) + ring_.capacity() * sizeof(double); }
  void save(std::string& out) const override {
    SnapshotWriter w(out, "vigil.rate.v1");
    w.put_doubles(ring_);
    w.put<uint64_t>(next_);
    w.put<uint64_t>(count_);
  }
  bool restore(std::string_view in) override {
    SnapshotReader r(in, "vigil.rate.v1");
    auto ring = r.get_doubles(ring_.size());
    auto next = r.get<uint64_t>();
    auto count = r.get<uint64_t>();
    if (!r.done() || next >= ring.size() || count > ring.size()) return false;
    ring_ = std::move(ring);
    next_ = next;
    count_ = count;
    return true;
  }

 private:
  const RateParams* p_;  // the detector's: a state never outlives its detector
  std::vector<double> ring_;
  uint64_t next_ = 0;
  uint64_t count_ = 0;
};

class RateDetector final : public Detector {
 public:
  explicit RateDetector(RateParams p) : p_(p) {}
  const char* name() const override { return "rate_of_change"; }
  std::unique_ptr<DetectorState> new_state() const override { return std::make_unique<RateState>(p_); }
  const char* default_summary() const override {
    return "{metric} for {scope} is {value}{unit}, changing faster than {baseline}{unit} per second";
  }
  std::string describe() const override {
    std::string out = "window=" + format_duration(p_.window);
    if (p_.above) out += " above=" + number_text(*p_.above);
    if (p_.below) out += " below=" + number_text(*p_.below);
    return out;
  }

 private:
  RateParams p_;
};

// ---- baseline.range -----------------------------------------------------------------------------

constexpr size_t kMaxSmoothTicks = 1024;

struct RangeParams {
  Common c;                // threshold unused: `tolerance` says how far past the range is anomalous
  double tolerance = 0;    // in units of the range (max - min)
  double smooth = 0;       // seconds; 0: the value itself
  size_t smooth_ticks = 1;
  double half_life = 0;    // seconds; 0: the extremes are never forgotten
  double alpha = 0;        // per value
  double season = 0;       // seconds; > 0: judge value - the mean of its time slot (24 a season)
  double season_alpha = 0;  // per visit of a slot: a half-life of three seasons
  uint32_t season_min_count = 2;
  double min_surprise = 0;  // > 0: anomalous only when the crossing is this surprising (decades)
};

constexpr size_t kRangeSlots = 24;

// How far past the tolerance, in units of the range, maps to a probability in (0.5, 1).
double range_probability(double excess) { return 0.5 + 0.5 * excess / (excess + 0.1); }

// With min_surprise, how often the learned averages went past the edge of their time, and how far
// (in units of the range then): a histogram of 4 bins a decade from 1e-3 to 1e3 ranges, one bin
// below and one above, then the count of averages judged. Fixed size. With a half-life it forgets
// as the extremes do (every entry decays by alpha a judged average), so the rarity of a crossing is
// that of the range's own memory: at most log10(1 + 1 / alpha) decades.
constexpr double kTailLowExp = -3;
constexpr size_t kTailPerDecade = 4;
constexpr size_t kTailBins = 6 * kTailPerDecade;  // inner bins; [0] below, [kTailBins + 1] above
constexpr size_t kTailSize = kTailBins + 3;       // + the count
constexpr size_t kTailCount = kTailBins + 2;

// Continuous bin coordinate of a distance past the edge: 0 at 1e-3 ranges, kTailBins at 1e3.
double tail_coordinate(double past) { return (std::log10(past) - kTailLowExp) * kTailPerDecade; }

// Estimated number of judged averages that went at least `past` beyond their edge: whole bins
// above, and the share of its own bin above it (values spread evenly in log10 within a bin).
double tail_at_least(const std::vector<double>& tail, double past) {
  const double c = tail_coordinate(past);
  if (c >= static_cast<double>(kTailBins)) return 0.5 * tail[kTailBins + 1];
  double above = 0;
  size_t from = 1;
  if (c < 0) {
    above = 0.5 * tail[0];
  } else {
    const auto b = static_cast<size_t>(c);
    above = tail[b + 1] * (1 - (c - static_cast<double>(b)));
    from = b + 2;
  }
  for (size_t i = from; i <= kTailBins + 1; ++i) above += tail[i];
  return above;
}

// How surprising a crossing `excess` past the tolerance (`past` beyond the edge) is, in decades:
// log10 of the inverse estimated probability that an average goes this far, (1 + n) / (1 + g),
// plus log10(1 + excess / 0.1) for its size. A first crossing after n quiet averages scores
// log10(1 + n); one among many as far scores little.
double range_surprise(const std::vector<double>& tail, double past, double excess) {
  const double n = tail[kTailCount];
  const double g = tail_at_least(tail, past);
  return std::log10((1 + n) / (1 + g)) + std::log10(1 + excess / 0.1);
}

// The lowest and highest value learned so far (of the moving average over `smooth`, when set):
// a value past them by more than `tolerance` times the range is new territory. With a
// half-life the extremes relax towards the running mean, so an old extreme is forgotten.
class RangeState final : public LearnedState {
 public:
  explicit RangeState(const RangeParams& p)
      : LearnedState(p.c.relearn_after), p_(&p), ring_(p.smooth_ticks),
        slot_mean_(p.season > 0 ? kRangeSlots : 0), slot_count_(p.season > 0 ? kRangeSlots : 0),
        tail_(p.min_surprise > 0 ? kTailSize : 0) {}

  Verdict evaluate_at(double value, double age, double now) const override {
    Verdict v;
    v.band_low = -kInf;
    v.band_high = kInf;
    const size_t k = ring_.size();
    if (count_ + 1 < k || n_ == 0 || !(hi_ > lo_)) return v;  // no full window or no range yet
    const auto r = residual(value, now);
    if (!r) return v;  // the slot has not learned its mean yet
    const double x = average_with(*r);
    const double range = hi_ - lo_;
    const double up = (x - hi_) / range;    // > 0 past the top, in units of the range
    const double down = (lo_ - x) / range;  // > 0 past the bottom
    const bool watch_up = p_->c.direction != Direction::Down;
    const bool watch_down = p_->c.direction != Direction::Up;
    if (watch_up) v.band_high = hi_ + p_->tolerance * range;
    if (watch_down) v.band_low = lo_ - p_->tolerance * range;
    // The side nearer to being crossed speaks. The score is how far past it, in units of the
    // range: > 0 above the top, < 0 below the bottom, 0 inside.
    const bool top = watch_up && (!watch_down || up >= down);
    v.baseline = top ? hi_ : lo_;
    v.score = top ? std::max(up, 0.0) : -std::max(down, 0.0);
    const double excess = (top ? up : down) - p_->tolerance;  // > 0: past the edge and the tolerance
    const bool armed = age + 1e-6 >= p_->c.warmup && value >= p_->c.min_rate;
    v.anomalous = armed && excess > 0;
    if (v.anomalous && p_->min_surprise > 0) {
      // Calibrated: as anomalous as the crossing is rare; 0.5 at min_surprise, 0.75 a decade over.
      const double d = range_surprise(tail_, top ? up : down, excess) - p_->min_surprise;
      v.anomalous = d >= 0;
      v.probability = v.anomalous ? 0.5 + 0.5 * d / (d + 1) : 0;
      return v;
    }
    v.probability = v.anomalous ? range_probability(excess) : 0;
    return v;
  }
  void hold(double value, double now) override {
    // The moving average sees every value; only learned ones move the extremes.
    if (!(relearn_after_ > 0 && held_ + 1 >= relearn_after_))
      if (auto r = residual(value, now)) push(*r);
    LearnedState::hold(value, now);
  }
  size_t memory_bytes() const override {
    return sizeof(*this) + (ring_.capacity() + slot_mean_.capacity() + tail_.capacity()) * sizeof(double) +
           slot_count_.capacity() * sizeof(uint32_t);
  }
  void save(std::string& out) const override {
    SnapshotWriter w(out, "vigil.range.v1");
    save_base(w);
    w.put<uint64_t>(n_);
    w.put(lo_);
    w.put(hi_);
    w.put(mean_);
    w.put_doubles(ring_);
    w.put<uint64_t>(next_);
    w.put<uint64_t>(count_);
    if (p_->season > 0) {
      w.put_doubles(slot_mean_);
      for (uint32_t n : slot_count_) w.put(n);
    }
    if (p_->min_surprise > 0) w.put_doubles(tail_);
  }
  bool restore(std::string_view in) override {
    SnapshotReader r(in, "vigil.range.v1");
    RangeState s(*p_);
    s.restore_base(r);
    s.n_ = r.get<uint64_t>();
    s.lo_ = r.get<double>();
    s.hi_ = r.get<double>();
    s.mean_ = r.get<double>();
    s.ring_ = r.get_doubles(ring_.size());
    s.next_ = r.get<uint64_t>();
    s.count_ = r.get<uint64_t>();
    if (p_->season > 0) {
      s.slot_mean_ = r.get_doubles(kRangeSlots);
      for (auto& n : s.slot_count_) n = r.get<uint32_t>();
    }
    if (p_->min_surprise > 0) {
      s.tail_ = r.get_doubles(kTailSize);
      if (!r.ok() || !std::all_of(s.tail_.begin(), s.tail_.end(), [](double c) { return c >= 0; })) return false;
    }
    if (!r.done() || s.next_ >= s.ring_.size() || s.count_ > s.ring_.size() || s.lo_ > s.hi_) return false;
    s.sum_ = 0;
    for (size_t i = 0; i < s.count_; ++i) s.sum_ += s.ring_[i];
    *this = std::move(s);
    return true;
  }

 private:
  // The moving average that would include this value.
  double average_with(double value) const {
    const size_t k = ring_.size();
    return k == 1 ? value : (sum_ - (count_ == k ? ring_[next_] : 0) + value) / static_cast<double>(k);
  }
  void push(double value) {
    const size_t k = ring_.size();
    if (count_ == k) sum_ -= ring_[next_];
    ring_[next_] = value;
    sum_ += value;
    next_ = (next_ + 1) % k;
    if (count_ < k) ++count_;
    if (next_ == 0) {  // once a lap, an exact sum: no rounding drift over days
      sum_ = 0;
      for (size_t i = 0; i < count_; ++i) sum_ += ring_[i];
    }
  }
  size_t slot(double now) const {
    double phase = std::fmod(now, p_->season);
    if (phase < 0) phase += p_->season;
    return std::min(static_cast<size_t>(phase / p_->season * kRangeSlots), kRangeSlots - 1);
  }
  // With a season, the value's distance from its slot's learned mean; nothing before that slot
  // has seen season_min_count values. Without, the value.
  std::optional<double> residual(double value, double now) const {
    if (p_->season <= 0) return value;
    const size_t s = slot(now);
    if (slot_count_[s] < p_->season_min_count) return std::nullopt;
    return value - slot_mean_[s];
  }
  void absorb(double value, double now) override {
    const auto r = residual(value, now);
    if (p_->season > 0) {
      const size_t s = slot(now);
      slot_mean_[s] = slot_count_[s] == 0 ? value : slot_mean_[s] + p_->season_alpha * (value - slot_mean_[s]);
      if (slot_count_[s] < UINT32_MAX) ++slot_count_[s];
    }
    if (!r) return;
    push(*r);
    if (count_ < ring_.size()) return;
    const double x = sum_ / static_cast<double>(ring_.size());
    if (n_++ == 0) {
      lo_ = hi_ = mean_ = x;
      return;
    }
    if (p_->min_surprise > 0 && hi_ > lo_) {  // as evaluate judged it: against the edges before it
      const double past = std::max(x - hi_, lo_ - x) / (hi_ - lo_);
      if (p_->alpha > 0)
        for (double& b : tail_) b *= 1 - p_->alpha;
      if (past > 0) {
        const double c = tail_coordinate(past);
        ++tail_[c < 0 ? 0 : c >= static_cast<double>(kTailBins) ? kTailBins + 1 : static_cast<size_t>(c) + 1];
      }
      ++tail_[kTailCount];
    }
    if (p_->alpha > 0) {
      mean_ += p_->alpha * (x - mean_);
      hi_ -= p_->alpha * (hi_ - mean_);
      lo_ += p_->alpha * (mean_ - lo_);
    }
    hi_ = std::max(hi_, x);
    lo_ = std::min(lo_, x);
  }

  const RangeParams* p_;  // the detector's: a state never outlives its detector
  std::vector<double> ring_;
  uint64_t next_ = 0;
  uint64_t count_ = 0;
  double sum_ = 0;
  std::vector<double> slot_mean_;  // with a season: each slot's exponentially weighted mean
  std::vector<uint32_t> slot_count_;
  std::vector<double> tail_;  // with min_surprise: the crossings' histogram and count (kTailSize)
  uint64_t n_ = 0;  // moving averages learned
  double lo_ = 0;
  double hi_ = 0;
  double mean_ = 0;
};

class RangeDetector final : public Detector {
 public:
  explicit RangeDetector(RangeParams p) : p_(p) {}
  const char* name() const override { return "baseline.range"; }
  std::unique_ptr<DetectorState> new_state() const override { return std::make_unique<RangeState>(p_); }
  const char* default_summary() const override {
    return "{metric} for {scope} is {value}{unit}, outside the range seen so far (last edge {baseline}{unit})";
  }
  std::string describe() const override {
    std::string out = "tolerance=" + number_text(p_.tolerance) + " smooth=" + format_duration(p_.smooth);
    if (p_.season > 0) out += " season=" + format_duration(p_.season);
    if (p_.min_surprise > 0) out += " min_surprise=" + number_text(p_.min_surprise);
    if (p_.half_life > 0) out += " half_life=" + format_duration(p_.half_life);
    out += " direction=" + std::string(direction_name(p_.c.direction)) + " warmup=" + format_duration(p_.c.warmup);
    if (p_.c.min_rate > 0) out += " min_rate=" + number_text(p_.c.min_rate);
    if (p_.c.relearn_after > 0) out += " relearn_after=" + format_duration(p_.c.relearn_after_s);
    return out;
  }

 private:
  RangeParams p_;
};

// ---- any { ... } --------------------------------------------------------------------------------

using DetectorPtr = std::shared_ptr<const Detector>;

// Anomalous when any sub-detector is. The verdict shown is that of the most anomalous one
// (highest probability, anomalous ones first); every sub-detector learns and holds each value.
class AnyState final : public DetectorState {
 public:
  AnyState(const std::vector<DetectorPtr>& children, double suppress) : suppress_(suppress) {
    for (const auto& c : children) states_.push_back(c->new_state());
  }
  Verdict evaluate(double value, double age) const override { return evaluate_at(value, age, last_time_); }
  Verdict evaluate_at(double value, double age, double now) const override {
    Verdict best;
    bool first = true;
    for (const auto& s : states_) {
      Verdict v = s->evaluate_at(value, age, now);
      if (first || (v.anomalous && !best.anomalous) ||
          (v.anomalous == best.anomalous && v.probability > best.probability))
        best = v;
      first = false;
    }
    // Within `suppress` of the last anomaly, report nothing: one alarm per episode.
    if (suppress_ > 0 && alarmed_ && now >= last_alarm_ && now - last_alarm_ < suppress_) {
      best.anomalous = false;
      best.probability = 0;
    }
    return best;
  }
  void learn(double value) override { learn_at(value, last_time_); }
  void learn_at(double value, double now) override {
    last_time_ = now;
    for (auto& s : states_) s->learn_at(value, now);
  }
  void hold(double value, double now) override {
    // Held: the verdict on this value was anomalous (the group is pending or firing).
    if (!alarmed_ || now - last_alarm_ >= suppress_) last_alarm_ = now;
    alarmed_ = true;
    last_time_ = now;
    for (auto& s : states_) s->hold(value, now);
  }
  size_t memory_bytes() const override {
    size_t n = sizeof(*this) + states_.capacity() * sizeof(states_[0]);
    for (const auto& st : states_) n += st->memory_bytes();
    return n;
  }
  void save(std::string& out) const override {
    SnapshotWriter w(out, "vigil.any.v1");
    w.put(last_time_);
    w.put(last_alarm_);
    w.put<uint8_t>(alarmed_);
    w.put<uint64_t>(states_.size());
    std::string child;
    for (const auto& s : states_) {
      s->save(child);
      w.put<uint64_t>(child.size());
      out.append(child);
    }
  }
  bool restore(std::string_view in) override {
    SnapshotReader r(in, "vigil.any.v1");
    double last = r.get<double>();
    double last_alarm = r.get<double>();
    auto alarmed = r.get<uint8_t>();
    if (r.get<uint64_t>() != states_.size() || !r.ok() || alarmed > 1) return false;
    // Parse every child blob first; restore them only when all are well-formed.
    size_t pos = std::string_view("vigil.any.v1").size() + 1 + 2 * sizeof(double) + 1 + sizeof(uint64_t);
    std::vector<std::string_view> blobs;
    for (size_t i = 0; i < states_.size(); ++i) {
      if (in.size() - pos < sizeof(uint64_t)) return false;
      uint64_t n;
      std::memcpy(&n, in.data() + pos, sizeof n);
      pos += sizeof n;
      if (in.size() - pos < n) return false;
      blobs.push_back(in.substr(pos, n));
      pos += n;
    }
    if (pos != in.size()) return false;
    std::vector<std::string> backup(states_.size());
    for (size_t i = 0; i < states_.size(); ++i) states_[i]->save(backup[i]);
    for (size_t i = 0; i < states_.size(); ++i) {
      if (states_[i]->restore(blobs[i])) continue;
      for (size_t j = 0; j < i; ++j) states_[j]->restore(backup[j]);
      return false;
    }
    last_time_ = last;
    last_alarm_ = last_alarm;
    alarmed_ = alarmed;
    return true;
  }

 private:
  std::vector<std::unique_ptr<DetectorState>> states_;
  double suppress_;
  double last_time_ = 0;
  double last_alarm_ = 0;  // when the last anomaly (outside a suppression) began
  bool alarmed_ = false;
};

class AnyDetector final : public Detector {
 public:
  AnyDetector(std::vector<DetectorPtr> children, double suppress) : children_(std::move(children)), suppress_(suppress) {}
  const char* name() const override { return "any"; }
  std::unique_ptr<DetectorState> new_state() const override { return std::make_unique<AnyState>(children_, suppress_); }
  const char* default_summary() const override {
    return "{metric} for {scope} is {value}{unit}, expected {baseline}{unit} (score={score})";
  }
  std::string describe() const override {
    std::string out;
    for (const auto& c : children_) out += (out.empty() ? "" : "; ") + std::string(c->name()) + " {" + c->describe() + "}";
    if (suppress_ > 0) out += "; suppress=" + format_duration(suppress_);
    return out;
  }

 private:
  std::vector<DetectorPtr> children_;
  double suppress_;
};

Result<double> half_life_field(const Params& params, const char* key, std::optional<double> fallback) {
  auto hl = duration_field(params, key);
  if (!hl) return hl.error();
  if (!*hl && !fallback) return make_error(std::string("missing required field '") + key + "' (e.g. " + key + " = \"10m\")");
  double v = hl->value_or(fallback.value_or(0));
  if (v <= 0) return make_error(std::string("field '") + key + "' must be > 0");
  return v;
}

}  // namespace

Result<std::shared_ptr<const Detector>> make_ewma(const Params& params, const DetectorContext& ctx) {
  if (auto r = only_known(params, with_common({"half_life"})); !r) return r.error();
  EwmaParams p;
  auto hl = half_life_field(params, "half_life", std::nullopt);
  if (!hl) return hl.error();
  p.half_life = *hl;
  auto ticks = ticks_of("half_life", p.half_life, ctx, 1, 100'000'000);
  if (!ticks) return ticks.error();
  p.alpha = alpha_for_half_life(p.half_life / ctx.tick_seconds);
  auto c = parse_common(params, ctx, 4, 2 * p.half_life);
  if (!c) return c.error();
  p.c = *c;
  return DetectorPtr(std::make_shared<EwmaDetector>(p));
}

Result<std::shared_ptr<const Detector>> make_mad(const Params& params, const DetectorContext& ctx) {
  if (auto r = only_known(params, with_common({"window"})); !r) return r.error();
  MadParams p;
  auto window = duration_field(params, "window");
  if (!window) return window.error();
  if (!*window) return make_error("missing required field 'window' (e.g. window = \"30m\")");
  p.window = **window;
  auto ticks = ticks_of("window", p.window, ctx, 3, 100'000'000);
  if (!ticks) return ticks.error();
  p.samples = std::min(*ticks, kMadSamples);
  p.stride = (*ticks + p.samples - 1) / p.samples;
  auto c = parse_common(params, ctx, 5, p.window);
  if (!c) return c.error();
  p.c = *c;
  return DetectorPtr(std::make_shared<MadDetector>(p));
}

Result<std::shared_ptr<const Detector>> make_seasonal(const Params& params, const DetectorContext& ctx) {
  if (auto r = only_known(params, with_common({"period", "slots", "half_life"})); !r) return r.error();
  SeasonalParams p;
  auto period = duration_field(params, "period");
  if (!period) return period.error();
  if (!*period) return make_error("missing required field 'period' (e.g. period = \"1d\")");
  p.period = **period;
  auto slots = number_field(params, "slots");
  if (!slots) return slots.error();
  double n = slots->value_or(24);
  if (n != std::floor(n) || n < 2 || n > 168) return make_error("field 'slots' must be a whole number from 2 to 168");
  p.slots = static_cast<size_t>(n);
  auto period_ticks = ticks_of("period", p.period, ctx, p.slots, 100'000'000);
  if (!period_ticks) return context("(each slot needs at least one tick)", period_ticks.error());
  auto hl = half_life_field(params, "half_life", 3 * p.period);
  if (!hl) return hl.error();
  p.half_life = *hl;
  const double per_slot = static_cast<double>(*period_ticks) / static_cast<double>(p.slots);  // values per visit
  if (p.half_life < p.period)
    return make_error("field 'half_life' must be at least the period (" + format_duration(p.period) + ")");
  p.alpha = alpha_for_half_life(p.half_life / p.period * per_slot);
  p.min_count = static_cast<uint32_t>(std::max(2.0, std::round(per_slot)));
  auto c = parse_common(params, ctx, 4, p.period);
  if (!c) return c.error();
  p.c = *c;
  return DetectorPtr(std::make_shared<SeasonalDetector>(p));
}

Result<std::shared_ptr<const Detector>> make_cusum(const Params& params, const DetectorContext& ctx) {
  if (auto r = only_known(params, with_common({"half_life", "slack"})); !r) return r.error();
  CusumParams p;
  auto hl = half_life_field(params, "half_life", std::nullopt);
  if (!hl) return hl.error();
  p.half_life = *hl;
  auto ticks = ticks_of("half_life", p.half_life, ctx, 1, 100'000'000);
  if (!ticks) return ticks.error();
  p.alpha = alpha_for_half_life(p.half_life / ctx.tick_seconds);
  auto slack = number_field(params, "slack");
  if (!slack) return slack.error();
  p.slack = slack->value_or(0.5);
  if (p.slack < 0) return make_error("field 'slack' must be >= 0");
  auto c = parse_common(params, ctx, 5, 2 * p.half_life);
  if (!c) return c.error();
  p.c = *c;
  return DetectorPtr(std::make_shared<CusumDetector>(p));
}

Result<std::shared_ptr<const Detector>> make_rate_of_change(const Params& params, const DetectorContext& ctx) {
  if (auto r = only_known(params, {"above", "below", "window"}); !r) return r.error();
  RateParams p;
  auto above = number_field(params, "above");
  if (!above) return above.error();
  auto below = number_field(params, "below");
  if (!below) return below.error();
  p.above = *above;
  p.below = *below;
  if (!p.above && !p.below) return make_error("needs 'above', 'below' or both (per second)");
  if (p.above && p.below && *p.below >= *p.above)
    return make_error("'below' must be less than 'above' (otherwise every value is anomalous)");
  auto window = duration_field(params, "window");
  if (!window) return window.error();
  p.window = window->value_or(60);
  auto ticks = ticks_of("window", p.window, ctx, 1, kMaxRateTicks);
  if (!ticks) return ticks.error();
  p.window_ticks = *ticks;
  p.tick = ctx.tick_seconds;
  return DetectorPtr(std::make_shared<RateDetector>(p));
}

Result<std::shared_ptr<const Detector>> make_any(const Params& params, const DetectorContext&) {
  auto suppress = duration_field(params, "suppress");
  if (!suppress) return suppress.error();
  std::vector<DetectorPtr> children;
  const size_t listed = params.size() - (*suppress ? 1 : 0);
  for (size_t i = 1; i <= listed; ++i) {
    auto it = params.find(std::to_string(i));
    if (it == params.end()) break;
    const auto* d = std::get_if<DetectorPtr>(&it->second);
    if (!d || !*d) return make_error("entry " + std::to_string(i) + " must be a detector, e.g. any { baseline.ewma {...}, change.cusum {...} }");
    children.push_back(*d);
  }
  if (children.size() != listed)
    return make_error("takes a list of detectors and 'suppress', e.g. any { baseline.ewma {...}, change.cusum {...}, suppress = \"1h\" }");
  if (children.empty()) return make_error("needs at least one detector, e.g. any { baseline.ewma {...} }");
  if (children.size() > 8) return make_error("takes at most 8 detectors");
  return DetectorPtr(std::make_shared<AnyDetector>(std::move(children), suppress->value_or(0)));
}

Result<std::shared_ptr<const Detector>> make_range(const Params& params, const DetectorContext& ctx) {
  if (auto r = only_known(params, {"tolerance", "smooth", "season", "min_surprise", "half_life", "direction",
                                   "min_rate", "warmup", "relearn_after"});
      !r)
    return r.error();
  RangeParams p;
  auto tolerance = number_field(params, "tolerance");
  if (!tolerance) return tolerance.error();
  p.tolerance = tolerance->value_or(0);
  if (p.tolerance < 0) return make_error("field 'tolerance' must be >= 0 (a fraction of the range)");
  auto smooth = duration_field(params, "smooth");
  if (!smooth) return smooth.error();
  p.smooth = smooth->value_or(0);
  if (p.smooth < 0) return make_error("field 'smooth' must be >= 0");
  if (p.smooth > 0) {
    auto ticks = ticks_of("smooth", std::max(p.smooth, ctx.tick_seconds), ctx, 1, kMaxSmoothTicks);
    if (!ticks) return ticks.error();
    p.smooth_ticks = *ticks;
  }
  auto season = duration_field(params, "season");
  if (!season) return season.error();
  if (*season) {
    p.season = **season;
    auto season_ticks = ticks_of("season", p.season, ctx, kRangeSlots, 100'000'000);
    if (!season_ticks) return context("(each of its 24 slots needs at least one tick)", season_ticks.error());
    const double per_slot = static_cast<double>(*season_ticks) / static_cast<double>(kRangeSlots);
    p.season_alpha = alpha_for_half_life(3 * per_slot);
    p.season_min_count = static_cast<uint32_t>(std::max(2.0, std::round(per_slot)));
  }
  auto surprise = number_field(params, "min_surprise");
  if (!surprise) return surprise.error();
  p.min_surprise = surprise->value_or(0);
  if (!(p.min_surprise >= 0) || !std::isfinite(p.min_surprise))
    return make_error("field 'min_surprise' must be >= 0 (decades: 2 is a crossing rarer than 1 in 100)");
  auto hl = duration_field(params, "half_life");
  if (!hl) return hl.error();
  if (*hl) {
    if (**hl <= 0) return make_error("field 'half_life' must be > 0 (leave it out to never forget)");
    p.half_life = **hl;
    p.alpha = alpha_for_half_life(p.half_life / ctx.tick_seconds);
  }
  auto c = parse_common(params, ctx, 1, static_cast<double>(p.smooth_ticks) * ctx.tick_seconds);
  if (!c) return c.error();
  p.c = *c;
  return DetectorPtr(std::make_shared<RangeDetector>(p));
}

}  // namespace vigil::rules::detail
