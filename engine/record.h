// `vigil record`: samples one series from a running agent's /metrics into the
// `timestamp,value` CSV that `vigil replay` reads, as the rules see it: a gauge's value, a
// counter's per-second rate between two scrapes (histogram _count/_sum/_bucket are counters).
// The series is the sum of every series of the metric whose labels match all of `where`.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "rules/core/result.h"
#include "rules/core/series.h"  // kSeriesReadTimestamp

namespace vigil {

// The sum of the samples of `metric` whose labels include all of `where`, and whether the
// metric is a counter (from its `# TYPE` line: counter, or a histogram's or summary's series).
// nullopt value when no series matches.
struct ScrapedValue {
  std::optional<double> value;
  bool counter = false;
  // For a metric the agent reads on its own schedule (the netstat family): when it last read it,
  // from vigil_series_read_timestamp_seconds{metric=...}. A counter's rate is then taken between
  // reads and held between them, as rules see it.
  std::optional<double> read_time = std::nullopt;
};
Result<ScrapedValue> scrape_value(std::string_view metrics_text, const std::string& metric,
                                  const std::map<std::string, std::string>& where);

// "k=v,k2=v2" -> map; errors name the bad item.
Result<std::map<std::string, std::string>> parse_where(const std::string& text);

// Turns successive scrapes into rows: a gauge gives its value at every scrape, a counter its
// rate since the previous scrape (nothing for the first; a counter that went back was reset,
// so its rate is its value over the interval, as Prometheus' rate() does). A counter with a
// read time: its rate between the agent's last two reads, at every scrape until the next read.
class RecordSeries {
 public:
  // Returns the CSV row ("timestamp,value\n") for a scrape at `unix_time`, or "" when there
  // is none yet (a counter's first scrape, or no matching series).
  std::string add(double unix_time, const ScrapedValue& v);

 private:
  std::optional<double> prev_time_;
  std::optional<double> prev_value_;
  std::optional<double> prev_read_;  // read_time of prev_value_, for a metric read on a schedule
  std::optional<double> held_;       // its rate between the last two reads
};

}  // namespace vigil
