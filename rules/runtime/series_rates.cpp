#include "rules/runtime/series_rates.h"

#include <algorithm>
#include <cmath>
#include <string_view>

namespace vigil::rules {
namespace {

// FNV-1a over the metric and the labels sorted by name, with lengths mixed in so that
// {a="bc"} and {ab="c"} differ.
inline uint64_t mix(uint64_t h, std::string_view text) {
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return (h ^ (text.size() + 0x9e)) * 1099511628211ull;
}

uint64_t series_hash(const Sample& s) {
  uint64_t h = mix(14695981039346656037ull, s.metric);
  auto add = [&](const Labels& labels) {
    for (const auto& [k, v] : labels) h = mix(mix(h, k), v);
  };
  if (std::is_sorted(s.labels.begin(), s.labels.end())) {
    add(s.labels);
  } else {
    Labels sorted = s.labels;
    sort_labels(sorted);
    add(sorted);
  }
  return h;
}

}  // namespace

std::vector<SeriesValue> SeriesRates::update(const TickInput& input, const std::set<std::string>& metrics) {
  std::vector<SeriesValue> out;
  out.reserve(input.samples.size());
  const double now = input.time;
  const std::string* last_metric = nullptr;  // samples come grouped by metric: one lookup per run
  bool last_wanted = false;
  for (const Sample& s : input.samples) {
    if (!last_metric || s.metric != *last_metric) {
      last_metric = &s.metric;
      last_wanted = metrics.count(s.metric) > 0;
    }
    if (!last_wanted || !std::isfinite(s.value)) continue;
    auto [it, inserted] = previous_.try_emplace(series_hash(s), Previous{s.value, now, 0});
    if (inserted) {
      uint32_t id;
      if (!free_ids_.empty()) {
        id = free_ids_.back();
        free_ids_.pop_back();
      } else {
        id = static_cast<uint32_t>(gens_.size());
        gens_.push_back(0);
      }
      ++gens_[id];
      it->second.id = id;
    }
    const uint32_t id = it->second.id;
    if (s.kind == SeriesKind::Gauge) {
      it->second.value = s.value;
      it->second.time = now;
      out.push_back({&s, s.value, id, gens_[id]});
      continue;
    }
    std::optional<double> rate;
    if (inserted) {
      // The agent creates a series when its first event happens, so a series that appears
      // after the first tick was 0 at the previous tick. On the first tick nothing is known.
      if (last_tick_ && now > *last_tick_) rate = s.value / (now - *last_tick_);
    } else if (now > it->second.time) {
      double delta = s.value >= it->second.value ? s.value - it->second.value : s.value;  // reset
      rate = delta / (now - it->second.time);
      it->second.value = s.value;
      it->second.time = now;
    }
    out.push_back({&s, rate, id, gens_[id]});
  }
  if (!last_tick_ || now > *last_tick_) last_tick_ = now;
  std::erase_if(previous_, [&](const auto& kv) {
    if (now - kv.second.time <= kForgetAfter) return false;
    free_ids_.push_back(kv.second.id);
    return true;
  });
  return out;
}

size_t SeriesRates::memory_bytes() const {
  // An unordered_map node holds the pair and a next pointer (libstdc++ caches no hash for
  // integer keys); plus one bucket pointer per bucket.
  return previous_.size() * (sizeof(std::pair<const uint64_t, Previous>) + sizeof(void*)) +
         previous_.bucket_count() * sizeof(void*) + gens_.capacity() * sizeof(uint32_t) +
         free_ids_.capacity() * sizeof(uint32_t);
}

}  // namespace vigil::rules
