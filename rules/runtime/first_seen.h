// first_seen { label = "remote_ip", learn = "1h", max_values = 256 }: a group (a pod) uses a
// value of a label (a peer, a port, a DNS name) it never used while it learned. Unlike the
// numeric detectors it judges the *set* of label values a group's active series carry: the
// rule evaluator hands each tick's values to observe(), which remembers them while the group
// learns and, after `learn`, reports those never seen. A reported value is remembered at once,
// so each new value fires once. The remembered set is bounded (`max_values` 64-bit hashes);
// values past the cap are counted as overflow and never judged.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "rules/runtime/detectors.h"

namespace vigil::rules {

struct FirstSeenParams {
  std::vector<std::string> labels;  // the label names whose values form one value
  double learn = 0;                 // seconds of group age spent learning
  size_t max_values = 256;          // remembered values per group
};

class FirstSeenState : public DetectorState {
 public:
  explicit FirstSeenState(const FirstSeenParams& p) : p_(p) {}

  // The tick's values (already made unique by the caller) for a group `age` seconds old;
  // returns the indices of those never seen before (empty while learning, or unless `judge`).
  // Remembers them all while there is room.
  std::vector<size_t> observe(const std::vector<std::string>& values, double age, bool judge = true);
  uint64_t overflow() const { return overflow_; }
  size_t remembered() const { return hashes_.size(); }
  // Overflow counted since the last call, for the engine's counter.
  uint64_t take_new_overflow() {
    uint64_t n = overflow_ - reported_overflow_;
    reported_overflow_ = overflow_;
    return n;
  }

  // The value the evaluator computes is the number of new values this tick.
  Verdict evaluate(double value, double age) const override;
  void learn(double) override {}
  void save(std::string& out) const override;
  bool restore(std::string_view in) override;
  size_t memory_bytes() const override { return sizeof(*this) + hashes_.capacity() * sizeof(uint64_t); }

 private:
  bool remember(uint64_t h);  // false when the set is full

  const FirstSeenParams& p_;
  std::vector<uint64_t> hashes_;  // sorted
  uint64_t overflow_ = 0;
  uint64_t reported_overflow_ = 0;
};

class FirstSeenDetector : public Detector {
 public:
  explicit FirstSeenDetector(FirstSeenParams p);
  const char* name() const override { return "first_seen"; }
  std::unique_ptr<DetectorState> new_state() const override { return std::make_unique<FirstSeenState>(p_); }
  const char* default_summary() const override { return summary_.c_str(); }
  std::string describe() const override;
  const FirstSeenParams& params() const { return p_; }
  // The label that carries the new value(s) in the anomaly: "remote_ip", or
  // "remote_namespace,remote_pod" joined into one name when the value spans several labels.
  const std::string& value_label() const { return value_label_; }
  // One value of a series: the labels' values joined with "/"; empty when the series has none.
  std::string value_of(const std::vector<std::pair<std::string, std::string>>& labels) const;

 private:
  FirstSeenParams p_;
  std::string value_label_;
  std::string summary_;
};

Result<std::shared_ptr<const Detector>> make_first_seen(const Params& params, const DetectorContext& ctx);

}  // namespace vigil::rules
