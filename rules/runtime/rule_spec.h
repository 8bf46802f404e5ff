// A rule as declared by `rule { ... }` in a Lua file, after validation.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rules/core/anomaly.h"
#include "rules/core/result.h"
#include "rules/runtime/detectors.h"

struct lua_State;

namespace vigil::rules {

struct LabelMatcher {
  std::string name;
  std::vector<std::string> values;  // the label must equal one of these
  bool negate = false;               // { except = ... }: the label must equal none of them
};

// A Lua function kept in the registry of the file's lua_State.
struct Handler {
  static constexpr int kNone = -2;  // LUA_NOREF
  int ref = kNone;
  std::string location;  // "file:line" where the function is defined
  explicit operator bool() const { return ref != kNone; }
};

// One series selector of a ratio: a metric and its label matchers.
struct SeriesTerm {
  std::string metric;
  std::vector<LabelMatcher> where;
};

// ratio = { numerator = {...}, denominator = { {...}, {...} }, min_volume = 20 }: the rule's
// value is, per group, the sum of the numerator terms' rates over the sum of the denominator
// terms' rates. A tick whose denominator counted fewer than min_volume events (rate times the
// seconds since the previous tick; a gauge's value as is) is not evaluated and not learned.
struct RatioSpec {
  std::vector<SeriesTerm> numerator;
  std::vector<SeriesTerm> denominator;
  double min_volume = 20;
};

struct RuleSpec {
  std::string name;
  std::string metric;  // for a ratio: "num / (den1 + den2)", shown as the anomaly's metric
  std::vector<LabelMatcher> where;
  std::optional<RatioSpec> ratio;
  std::vector<std::string> by{"namespace", "pod"};
  std::shared_ptr<const Detector> detector;
  std::string severity = "warning";
  double pending = 0;         // seconds anomalous before firing
  double resolve_after = 10;  // seconds back to normal before resolving
  std::optional<std::string> summary;
  Handler on_anomaly;
  Handler on_resolve;
  double cooldown = 0;                  // seconds after a resolve before the group fires again
  std::vector<LabelMatcher> suppress;   // groups whose labels match every matcher never notify
  std::optional<uint32_t> max_notifications_per_hour;  // firings notified per rolling hour
  // capture = { before =, after =, filter =, snaplen =, max_packets =, max_bytes = }: each
  // firing asks the agent for a packet capture of the group's pod (pods, rule, anomaly_id and
  // reason are filled in when it fires). Only for rules grouped by namespace and pod.
  std::optional<CaptureSpec> capture;
  std::string file;
  std::string location;  // "file:line" of the rule{} call

  // Groups keyed by at most namespace and pod are seeded from the pod list, so that a pod's
  // baseline warms up before its first series appears; not for a detector that a quiet pod
  // tells nothing (Detector::judges_quiet_pods), unless the rule has a capture option, whose
  // lookback rings follow its groups.
  bool seeds_from_pods() const;
  // Every metric the rule reads (the ratio's terms, or `metric`).
  std::vector<std::string> metrics() const;
  // The selectors: `metric` and `where`, or the ratio's terms, numerator first.
  std::vector<SeriesTerm> terms() const;
};

// Reads the rule table at `index`. Touches the table with raw accesses only, so no rule code
// runs and no Lua error is raised; problems come back as "rule 'x': <what is wrong>".
Result<RuleSpec> parse_rule(lua_State* L, int index, const DetectorContext& ctx);

// Reads a capture table at `index` (the rule's `capture = {...}`, or capture{}'s argument) with
// raw accesses only. `field` prefixes errors ("field 'capture.before': ..."); `with_pods` takes
// a `pods` key too (a "namespace/name" string or a list of them). Durations as in rules;
// unknown keys, wrong types and negative values are errors.
Result<CaptureSpec> read_capture_spec(lua_State* L, int index, const std::string& field, bool with_pods);

// "namespace/name" of the group's pod: both labels set in `scope`, else empty.
std::vector<std::string> scope_pods(const Labels& scope);

// Reads a detector's parameter table; keys must be names, values numbers, strings or booleans.
// With `ctx`, positional detector values (any { d1, d2 }) are built and kept under "1", "2", ...
Result<Params> read_params(lua_State* L, int index, const DetectorContext* ctx = nullptr, int depth = 0);

// The Lua metatable name of the values built by `threshold{}` and `baseline.zscore{}`.
inline constexpr const char* kDetectorMetatable = "vigil.detector";

struct DetectorUserdata {
  // Index into detector_kinds(); the parameter table is user value 1. kCustomDetectorKind: made
  // by a detector{} declared in Lua, whose definition table is user value 2.
  int kind;
  int line;  // where the detector was written (its constructor's call), for errors; 0 unknown
};
inline constexpr int kCustomDetectorKind = -1;

}  // namespace vigil::rules
