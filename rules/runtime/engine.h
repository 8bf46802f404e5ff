// The rule engine: loads Lua rule files into sandboxed states, evaluates every rule's
// detector on each tick's series, runs the anomaly lifecycle (pending -> firing -> resolved)
// and hands anomalies to an ActionSink through the Lua `notify` function.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "rules/core/anomaly.h"
#include "rules/core/result.h"
#include "rules/core/series.h"

namespace vigil::rules {

struct EngineOptions {
  std::string node;                  // copied into every anomaly
  double tick_seconds = 1.0;         // used to size windows given in seconds
  // Known notifier channels. When set, notify() to a name outside it is a load error if the
  // name is a literal in the rule file, and a runtime rule error otherwise.
  std::optional<std::set<std::string>> channels;
  size_t memory_limit_bytes = 32u << 20;    // per rule file (one lua_State per file)
  uint64_t instruction_limit = 10'000'000;  // per call from C++ into Lua
  int quarantine_after_errors = 3;          // consecutive errors that disable a rule
};

// Counters the agent exports as vigil_rule_errors_total{rule,kind} etc.
struct RuleStatus {
  std::string rule;
  std::string file;
  bool disabled = false;
  std::string last_error;                 // "file:line: message"
  std::map<std::string, uint64_t> errors;  // kind -> count; kinds: runtime, budget, notify
  uint64_t anomalies_fired = 0;
  size_t groups = 0;  // series groups this rule tracks
};

class RuleEngine {
 public:
  virtual ~RuleEngine() = default;

  // Reads, compiles and checks every file. Any error names the file and line (or the rule
  // and field). Nothing is half-loaded: either all files load or an error is returned.
  static Result<std::unique_ptr<RuleEngine>> load(const std::vector<std::string>& files,
                                                  const EngineOptions& options, ActionSink* sink);

  // Evaluates all rules against one tick. Never throws; rule failures are counted, reported
  // through spdlog once with file:line and traceback, and the rule is quarantined after
  // `quarantine_after_errors` consecutive failures.
  virtual void tick(const TickInput& input) = 0;

  virtual std::vector<RuleStatus> status() const = 0;
};

}  // namespace vigil::rules
