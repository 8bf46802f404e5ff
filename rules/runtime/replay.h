// `vigil replay`: runs one rule over a recorded series in simulated time, row by row, through
// the same rule evaluator as the agent (detector, pending, resolve_after), without a kernel.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "rules/core/result.h"

namespace vigil::rules {

struct ReplayPoint {
  std::string timestamp_text;  // as written in the file, echoed in the output
  std::string value_text;
  double timestamp = 0;  // unix seconds
  double value = 0;
};

// Reads `timestamp,value` rows (an optional header line, CRLF or LF, blank lines skipped), in
// file order. A timestamp is unix seconds or "YYYY-MM-DD HH:MM:SS" / "YYYY-MM-DDTHH:MM:SS[Z]"
// in UTC. Errors name the file and line.
Result<std::vector<ReplayPoint>> read_replay_csv(const std::string& path);
Result<std::vector<ReplayPoint>> parse_replay_csv(std::string_view text, const std::string& name);

struct ReplayOptions {
  double tick_seconds = 0;  // 0: the median step between consecutive timestamps
};

struct ReplayRow {
  double time = 0;           // the simulated clock: never goes back
  double anomaly_score = 0;  // the detector's probability, in [0,1]
  bool anomalous = false;    // the detector's verdict on this row
  bool firing = false;       // the rule's group is firing after this row
};

// The rule file must declare exactly one rule. The series is given that rule's metric name, is
// seen as a gauge, and carries for each `where` matcher its first listed value (none for an
// `except`), so the rule matches it; its `by` labels are empty: one group. Each row is one tick
// at max(its timestamp, the previous tick's time): repeated timestamps are separate ticks and a
// timestamp that goes backwards does not move the clock back. Handlers (on_anomaly,
// on_resolve) are not run.
Result<std::vector<ReplayRow>> replay(const std::string& rule_file, const std::vector<ReplayPoint>& points,
                                      const ReplayOptions& options);

// The median positive step between consecutive timestamps (1 when there is none).
double infer_tick(const std::vector<ReplayPoint>& points);

// "timestamp,value,anomaly_score,firing" lines, anomaly_score printed with %.17g.
std::string format_replay_csv(const std::vector<ReplayPoint>& points, const std::vector<ReplayRow>& rows);

}  // namespace vigil::rules
