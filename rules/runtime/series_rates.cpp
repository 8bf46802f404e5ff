#include "rules/runtime/series_rates.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string_view>

namespace vigil::rules {
namespace {

// The metric and the labels sorted by name (hash_mix, hash_labels: rules/core/series.h).
uint64_t series_hash(const Sample& s) {
  const uint64_t h = hash_mix(14695981039346656037ull, s.metric);
  // Label sets are sorted by name (sort_labels); the agent's always are.
  bool sorted = true;
  for (size_t i = 1; i < s.labels.size() && sorted; ++i) sorted = !(s.labels[i].first < s.labels[i - 1].first);
  if (sorted) return hash_labels(s.labels, h);
  Labels copy = s.labels;
  sort_labels(copy);
  return hash_labels(copy, h);
}

}  // namespace

uint32_t SeriesRates::id_of(uint64_t hash, size_t position, bool& inserted) {
  inserted = false;
  if (position < positions_.size()) {
    const uint32_t id = positions_[position];
    if (id < by_id_.size() && by_id_[id].live && by_id_[id].hash == hash) return id;
  }
  auto [it, fresh] = index_.try_emplace(hash, 0);
  if (fresh) {
    uint32_t id;
    if (!free_ids_.empty()) {
      id = free_ids_.back();
      free_ids_.pop_back();
    } else {
      id = static_cast<uint32_t>(by_id_.size());
      by_id_.emplace_back();
    }
    Previous& p = by_id_[id];
    p.hash = hash;
    p.live = true;
    ++p.gen;
    it->second = id;
    inserted = true;
  }
  if (position >= positions_.size()) positions_.resize(position + 1, SeriesValue::kNoId);
  positions_[position] = it->second;
  return it->second;
}

std::vector<SeriesValue> SeriesRates::update(const TickInput& input, const std::set<std::string>& metrics) {
  std::vector<SeriesValue> out;
  out.reserve(input.samples.size());
  const double now = input.time;
  const std::string* last_metric = nullptr;  // samples come grouped by metric: one lookup per run
  bool last_wanted = false;
  size_t position = 0;
  for (const Sample& s : input.samples) {
    if (!last_metric || s.metric != *last_metric) {
      last_metric = &s.metric;
      last_wanted = metrics.count(s.metric) > 0;
    }
    if (!last_wanted || !std::isfinite(s.value)) continue;
    bool inserted = false;
    const uint32_t id = id_of(series_hash(s), position++, inserted);
    Previous& prev = by_id_[id];
    // A series read on its own schedule: its value is the kernel's at read_time, unchanged
    // until the next read.
    const bool scheduled = s.read_time > 0 && s.kind != SeriesKind::Gauge;
    if (prev.scheduled && !scheduled) held_.erase(id);
    prev.scheduled = scheduled;
    if (s.kind == SeriesKind::Gauge) {
      prev.value = s.value;
      prev.time = now;
      out.push_back({&s, s.value, id, prev.gen});
      continue;
    }
    Held* held = nullptr;
    if (scheduled) {
      held = &held_[id];
      held->seen = now;
    }
    const double t = scheduled ? s.read_time : now;
    std::optional<double> rate;
    if (inserted) {
      // The agent creates a series when its first event happens, so a series that appears
      // after the first tick was 0 at the previous tick (or, read on a schedule, at the
      // previous read). On the first tick nothing is known.
      if (last_tick_) {
        if (!scheduled && now > *last_tick_) rate = s.value / (now - *last_tick_);
        if (scheduled && s.previous_read_time > 0 && t > s.previous_read_time)
          rate = s.value / (t - s.previous_read_time);
      }
    } else if (t > prev.time) {
      rate = counter_increase(prev.value, s.value) / (t - prev.time);
    } else if (held && held->has_rate) {
      rate = held->rate;  // not read again since: the rate of the last two reads holds
    }
    if (inserted || t > prev.time) {
      prev.value = s.value;
      prev.time = t;
      if (held) {
        held->has_rate = rate.has_value();
        held->rate = rate.value_or(0);
      }
    }
    out.push_back({&s, rate, id, prev.gen});
  }
  if (positions_.size() > position) positions_.resize(position);
  if (!last_tick_ || now > *last_tick_) last_tick_ = now;
  // Forgetting walks every series: once every kSweepEvery seconds is enough (a series is
  // forgotten between kForgetAfter and kForgetAfter + kSweepEvery unseen).
  if (!last_sweep_ || now - *last_sweep_ >= kSweepEvery || now < *last_sweep_) {
    last_sweep_ = now;
    for (uint32_t id = 0; id < by_id_.size(); ++id) {
      Previous& p = by_id_[id];
      if (!p.live) continue;
      auto h = p.scheduled ? held_.find(id) : held_.end();
      if (now - (h != held_.end() ? h->second.seen : p.time) <= kForgetAfter) continue;
      if (h != held_.end()) held_.erase(h);
      index_.erase(p.hash);
      p.live = false;
      p.scheduled = false;
      free_ids_.push_back(id);
    }
  }
  return out;
}

size_t SeriesRates::memory_bytes() const {
  // An unordered_map node holds the pair and a next pointer (libstdc++ caches no hash for
  // integer keys); plus one bucket pointer per bucket.
  return index_.size() * (sizeof(std::pair<const uint64_t, uint32_t>) + sizeof(void*)) +
         index_.bucket_count() * sizeof(void*) + by_id_.capacity() * sizeof(Previous) +
         free_ids_.capacity() * sizeof(uint32_t) + positions_.capacity() * sizeof(positions_[0]) +
         held_.size() * (sizeof(std::pair<const uint32_t, Held>) + sizeof(void*)) + held_.bucket_count() * sizeof(void*);
}

}  // namespace vigil::rules
