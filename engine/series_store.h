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
#include <vector>

#include "rules/core/series.h"

namespace vigil {

class SeriesStore : public prometheus::Collectable {
 public:
  // Declares a family; set() on an undeclared family is a programming error.
  void describe(const std::string& name, const std::string& help, SeriesKind kind);
  void set(const std::string& name, const Labels& labels, double value);
  // `bucket_counts[i]` counts observations <= `upper_bounds[i]` (not cumulative; the last
  // bound may be +Inf). Bounds are fixed per family by the first call.
  void set_histogram(const std::string& name, const Labels& labels, const std::vector<double>& upper_bounds,
                     const std::vector<uint64_t>& bucket_counts, double sum);
  // For a family read on its own schedule rather than every tick (metrics.netstat): its values
  // are the kernel's at `unix_time`. Snapshots carry the time of the family's last read and the
  // one before, so that rules take a counter's rate over the time between two reads and hold
  // it until the next, instead of 0 between reads and the whole increase on a read's tick.
  void set_read_time(const std::string& name, double unix_time);
  // set() for a series of such a family whose owner (a pod) is read for the first time: its value
  // is all that built up before, not what came since the family's previous read, so snapshots
  // give it no previous read time (no rate) until the family's next read.
  void set_first_read(const std::string& name, const Labels& labels, double value);
  // The value of series `labels` of family `name`, if it has one.
  std::optional<double> value(const std::string& name, const Labels& labels) const;
  // Removes every series of family `name`.
  void clear(const std::string& name);
  // Removes every series of every family whose labels satisfy `match`.
  void remove_if(const std::function<bool(const Labels&)>& match);

  std::vector<Sample> snapshot() const;
  // The names rules see in a snapshot: each family's, a histogram's as NAME_sum and NAME_count.
  std::vector<std::string> sample_names() const;
  size_t size() const;

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  struct HistogramValue {
    std::vector<uint64_t> counts;
    double sum = 0;
  };
  struct Family {
    std::string help;
    SeriesKind kind = SeriesKind::Counter;
    std::map<Labels, double> series;
    std::vector<double> bounds;  // histograms only
    std::map<Labels, HistogramValue> histograms;
    double read_time = 0, previous_read_time = 0;  // set_read_time's; 0: read every tick
    std::set<Labels> first_read;  // set_first_read's, until the next read
  };
  // The family `name`; throws std::logic_error if it was never described (the caller holds mu_).
  Family& described(const std::string& name);
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
};

}  // namespace vigil
