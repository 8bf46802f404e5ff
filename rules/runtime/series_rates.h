// Turns each tick's samples into the values rules compare: counters become per-second
// rates, gauges pass through.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "rules/core/series.h"

namespace vigil::rules {

struct SeriesValue {
  const Sample* sample;
  std::optional<double> value;  // empty when no rate exists yet (a counter on the first tick)
};

class SeriesRates {
 public:
  // Series unseen for this long are forgotten; one that comes back starts from zero.
  static constexpr double kForgetAfter = 300;

  // Values for the samples whose metric is in `metrics`. `input` must outlive the result.
  std::vector<SeriesValue> update(const TickInput& input, const std::set<std::string>& metrics);

  bool first_tick() const { return !last_tick_; }
  size_t tracked() const { return previous_.size(); }

 private:
  struct Previous {
    double value;
    double time;
  };
  std::unordered_map<std::string, Previous> previous_;
  std::optional<double> last_tick_;
};

}  // namespace vigil::rules
