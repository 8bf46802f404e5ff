// Turns each tick's samples into the values rules compare: counters become per-second
// rates, gauges pass through. A series read on its own schedule (Sample::read_time) has its
// rate taken between two reads and held until the next one.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "rules/core/series.h"

namespace vigil::rules {

struct SeriesValue {
  static constexpr uint32_t kNoId = UINT32_MAX;
  const Sample* sample;
  std::optional<double> value;  // empty when no rate exists yet (a counter on the first tick)
  // A dense id of the series while SeriesRates tracks it, and its generation: an id is reused
  // (with a new generation) once its series is forgotten. Lets rules cache per-series work.
  uint32_t id = kNoId;
  uint32_t gen = 0;
};

class SeriesRates {
 public:
  // Series unseen for this long are forgotten; one that comes back starts from zero.
  static constexpr double kForgetAfter = 300;
  static constexpr double kSweepEvery = 10;

  // Values for the samples whose metric is in `metrics`. `input` must outlive the result.
  std::vector<SeriesValue> update(const TickInput& input, const std::set<std::string>& metrics);

  bool first_tick() const { return !last_tick_; }
  size_t tracked() const { return index_.size(); }
  // Bytes held per tracked series (hash table node and bucket, id bookkeeping), estimated.
  size_t memory_bytes() const;

 private:
  struct Previous {
    double value = 0;
    double time = 0;  // when `value` was read: the tick, or the series' read time if scheduled
    uint64_t hash = 0;
    uint32_t gen = 0;
    bool live = false;
    bool scheduled = false;  // read on its own schedule (Sample::read_time): see held_
  };
  // What only scheduled series need, kept apart so that the others (nearly all) pay nothing:
  // the rate of the last two reads, held until the next, and the last tick that had the series
  // (its read time may be an hour old).
  struct Held {
    double rate = 0;
    double seen = 0;
    bool has_rate = false;
  };
  // Series are keyed by a 64-bit hash of the metric and its sorted labels: building the text
  // key of every series every tick cost more than the rest of the tick (two series colliding,
  // odds ~1e-10 at 50,000 series, would share a rate). The agent hands the series over in the
  // same order every tick, so the id of the series at each position is remembered and checked
  // against its hash: the hash table is only looked up for series that moved or are new.
  uint32_t id_of(uint64_t hash, size_t position, bool& inserted);
  std::unordered_map<uint64_t, uint32_t> index_;  // hash -> id
  std::vector<Previous> by_id_;
  std::unordered_map<uint32_t, Held> held_;  // by id, scheduled series only
  std::vector<uint32_t> free_ids_;
  std::vector<uint32_t> positions_;  // the id by position among wanted samples (checked by its hash)
  std::optional<double> last_tick_;
  std::optional<double> last_sweep_;
};

}  // namespace vigil::rules
