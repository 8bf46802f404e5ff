// The vocabulary between the engine (which reads kernel maps) and the rule engine (which
// decides). Neither side of this header knows about libbpf or HTTP.
#pragma once

#include <map>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vigil {

// Label sets are kept sorted by name so that equal sets compare and hash equal.
using Labels = std::vector<std::pair<std::string, std::string>>;

Labels make_labels(std::initializer_list<std::pair<std::string, std::string>> init);
void sort_labels(Labels& labels);
const std::string* find_label(const Labels& labels, const std::string& name);
std::string labels_to_string(const Labels& labels);  // {a="1",b="2"}

// `h` with `text` mixed in: the standard library's (word-at-a-time) hash of the string, combined
// with its length and its place in the sequence, so that {a="bc"} and {ab="c"} differ.
uint64_t hash_mix(uint64_t h, std::string_view text);
// The hash of a label set as it is ordered (make_labels and sort_labels leave it sorted by name),
// each name and value mixed in turn after `seed`.
uint64_t hash_labels(const Labels& labels, uint64_t seed = 14695981039346656037ull);

// Histograms reach the rules as two counters, NAME_sum and NAME_count; their buckets are for
// Prometheus only (a bucket per series would multiply the rules' work for little gain).
enum class SeriesKind { Counter, Gauge, Histogram };

// One point of one series. Counters are cumulative since the agent started; the rule
// engine turns them into per-second rates.
struct Sample {
  std::string metric;
  Labels labels;
  double value = 0;
  SeriesKind kind = SeriesKind::Counter;
  // For a series read on its own schedule, not every tick (the netstat family): when its
  // value was read (seconds since the Unix epoch) and when the read before that was (0 if
  // none yet). 0: read at the tick. A counter's rate is then taken between reads and held in
  // between.
  double read_time = 0;
  double previous_read_time = 0;
};

// The gauge that tells, per metric read on its own schedule, when the agent last read it (its
// `metric` label names the family): what `vigil record` takes a rate between reads from.
inline constexpr const char* kSeriesReadTimestamp = "vigil_series_read_timestamp_seconds";

// What a counter gained from `before` to `now`. A value below the one before means the counter
// was reset (the agent or the kernel object behind it started again): all of `now` is new.
inline double counter_increase(double before, double now) { return now >= before ? now - before : now; }

struct PodMeta {
  std::string namespace_;
  std::string name;
  std::map<std::string, std::string> labels;
  std::string node;
  // The pod's owning workload, "namespace/Kind/name" (Deployment, StatefulSet, DaemonSet, Job,
  // ...), when the pod source knows it (the Kubernetes API's owner references); else empty
  // and rules::workload_of() guesses from the controller's labels.
  std::string workload = {};
};

// Everything the rule engine sees at one tick.
struct TickInput {
  double time = 0;  // seconds since the Unix epoch (simulated time in replay)
  std::vector<Sample> samples;
  std::vector<PodMeta> pods;
};

}  // namespace vigil
