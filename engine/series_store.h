// The agent's series: what the tick read from the kernel and the agent's own counters, kept
// as cumulative values. Rules read a snapshot each tick; /metrics reads it when scraped
// (through prometheus-cpp's Collectable and text serializer, never hand-written text).
#pragma once

#include <prometheus/collectable.h>

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "rules/core/series.h"

namespace vigil {

namespace detail {

// Series of one family by label set: ordered, so that /metrics and the rules' snapshots list
// them in the same order every time, and hashed, so that the tick's updates (thousands of
// series with many pods and remote context) find theirs without comparing label vectors down
// a tree (docs/benchmarks.md, "Series store"). The index points into the ordered map's nodes,
// which never move; so the map is neither copied nor moved once filled.
template <class V>
class LabelledSeries {
 public:
  LabelledSeries() = default;
  LabelledSeries(const LabelledSeries&) = delete;
  LabelledSeries& operator=(const LabelledSeries&) = delete;

  // The value of `labels`, made (value-initialized) if it has none.
  V& operator[](const Labels& labels) {
    if (auto it = index_.find(&labels); it != index_.end()) return *it->second;
    auto [at, made] = ordered_.try_emplace(labels);
    index_.emplace(&at->first, &at->second);
    return at->second;
  }
  const V* find(const Labels& labels) const {
    auto it = index_.find(&labels);
    return it == index_.end() ? nullptr : it->second;
  }
  template <class Pred>
  void erase_if(Pred match) {
    for (auto it = ordered_.begin(); it != ordered_.end();) {
      if (match(it->first)) {
        index_.erase(&it->first);
        it = ordered_.erase(it);
      } else {
        ++it;
      }
    }
  }
  void clear() {
    index_.clear();
    ordered_.clear();
  }
  size_t size() const { return ordered_.size(); }
  bool empty() const { return ordered_.empty(); }
  auto begin() const { return ordered_.begin(); }
  auto end() const { return ordered_.end(); }

 private:
  struct Hash {
    size_t operator()(const Labels* labels) const { return hash_labels(*labels); }
  };
  struct Equal {
    bool operator()(const Labels* a, const Labels* b) const { return *a == *b; }
  };
  std::map<Labels, V> ordered_;
  std::unordered_map<const Labels*, V*, Hash, Equal> index_;
};

}  // namespace detail

class SeriesStore : public prometheus::Collectable {
 public:
  // Declares a family; set() on an undeclared family is a programming error.
  void describe(const std::string& name, const std::string& help, SeriesKind kind);
  void set(const std::string& name, const Labels& labels, double value);
  // `bucket_counts[i]` counts observations <= `upper_bounds[i]` (not cumulative; the last
  // bound may be +Inf). Bounds are fixed per family by the first call.
  void set_histogram(const std::string& name, const Labels& labels, const std::vector<double>& upper_bounds,
                     const std::vector<uint64_t>& bucket_counts, double sum);
  // set() and set_histogram() for a counter whose source counts from 0 at `epoch` (not 0): a
  // pod's counters in the kernel, which start again at each attach of the pod. The series goes
  // on from its value whenever the source starts again: at a new epoch (the pod attached again,
  // or gone and back under its name within metrics.series_grace, keeping its series) and when
  // the source falls back within one (its entry in the kernel taken out and made again). It
  // then adds all the source has; otherwise what the source counted since it was last read.
  // Returns whether the series was made now.
  bool set_continued(const std::string& name, const Labels& labels, double count, uint64_t epoch);
  void set_histogram_continued(const std::string& name, const Labels& labels, const std::vector<double>& upper_bounds,
                               const std::vector<uint64_t>& bucket_counts, double sum, uint64_t epoch);
  // For a family read on its own schedule rather than every tick (metrics.netstat): its values
  // are the kernel's at `unix_time`. Snapshots carry the time of the family's last read and the
  // one before, so that rules take a counter's rate over the time between two reads and hold
  // it until the next, instead of 0 between reads and the whole increase on a read's tick.
  void set_read_time(const std::string& name, double unix_time);
  // Marks a series of such a family whose owner (a pod) is read for the first time: its value is
  // all that built up before, not what came since the family's previous read, so snapshots give
  // it no previous read time (no rate) until the family's next read.
  void mark_first_read(const std::string& name, const Labels& labels);
  // The value of series `labels` of family `name`, if it has one.
  std::optional<double> value(const std::string& name, const Labels& labels) const;
  // Removes every series of family `name`.
  void clear(const std::string& name);
  // Removes every series of every family whose labels satisfy `match`.
  void remove_if(const std::function<bool(const Labels&)>& match);
  // The same within family `name` only (nothing when it was never described).
  void remove_if(const std::string& name, const std::function<bool(const Labels&)>& match);

  // Every series as the rules see it; with `only`, just the series of those names (a histogram's
  // NAME_sum and NAME_count by their own names), in the same order.
  std::vector<Sample> snapshot(const std::set<std::string>* only = nullptr) const;
  // The names rules see in a snapshot: each family's, a histogram's as NAME_sum and NAME_count.
  std::vector<std::string> sample_names() const;
  size_t size() const;

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  // A series' value; for set_continued's, also its source's: its epoch, what it had when last
  // read, and the series' value when it last started again.
  struct SeriesValue {
    double value = 0;
    double offset = 0, raw = 0;
    uint64_t epoch = 0;
  };
  struct HistogramValue {
    std::vector<uint64_t> counts;
    double sum = 0;
    // set_histogram_continued's, as in SeriesValue.
    std::vector<uint64_t> raw_counts;
    double sum_offset = 0, raw_sum = 0;
    uint64_t epoch = 0;
  };
  struct Family {
    std::string help;
    SeriesKind kind = SeriesKind::Counter;
    detail::LabelledSeries<SeriesValue> series;
    std::vector<double> bounds;  // histograms only
    detail::LabelledSeries<HistogramValue> histograms;
    double read_time = 0, previous_read_time = 0;  // set_read_time's; 0: read every tick
    std::set<Labels> first_read;  // mark_first_read's, until the next read
  };
  // The family `name`; throws std::logic_error if it was never described (the caller holds mu_).
  Family& described(const std::string& name);
  // The histogram family `name` with `upper_bounds` checked against `counts` (the caller holds mu_).
  Family& described_histogram(const std::string& name, const std::vector<double>& upper_bounds,
                              const std::vector<uint64_t>& counts);
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
};

}  // namespace vigil
