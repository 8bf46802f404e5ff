#include "rules/runtime/series_rates.h"

#include <algorithm>
#include <cmath>

namespace vigil::rules {
namespace {

std::string series_key(const Sample& s) {
  if (std::is_sorted(s.labels.begin(), s.labels.end())) return s.metric + labels_to_string(s.labels);
  Labels sorted = s.labels;
  sort_labels(sorted);
  return s.metric + labels_to_string(sorted);
}

}  // namespace

std::vector<SeriesValue> SeriesRates::update(const TickInput& input, const std::set<std::string>& metrics) {
  std::vector<SeriesValue> out;
  const double now = input.time;
  for (const Sample& s : input.samples) {
    if (!metrics.count(s.metric) || !std::isfinite(s.value)) continue;
    if (s.kind == SeriesKind::Gauge) {
      out.push_back({&s, s.value});
      continue;
    }
    auto [it, inserted] = previous_.try_emplace(series_key(s), Previous{s.value, now});
    std::optional<double> rate;
    if (inserted) {
      // The agent creates a series when its first event happens, so a series that appears
      // after the first tick was 0 at the previous tick. On the first tick nothing is known.
      if (last_tick_ && now > *last_tick_) rate = s.value / (now - *last_tick_);
    } else if (now > it->second.time) {
      double delta = s.value >= it->second.value ? s.value - it->second.value : s.value;  // reset
      rate = delta / (now - it->second.time);
      it->second = {s.value, now};
    }
    out.push_back({&s, rate});
  }
  if (!last_tick_ || now > *last_tick_) last_tick_ = now;
  std::erase_if(previous_, [&](const auto& kv) { return now - kv.second.time > kForgetAfter; });
  return out;
}

}  // namespace vigil::rules
