// The Lua API a rule file sees on top of the sandbox's standard functions:
//   rule { ... }                      declares a rule (only while the file loads)
//   threshold { above =, below = }    a detector
//   baseline.zscore { window =, threshold =, min_rate =, warmup =, direction =, min_stddev = }
//   notify(channel, a)                sends the anomaly `a` being handled to a notifier channel
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "rules/core/anomaly.h"
#include "rules/runtime/detectors.h"
#include "rules/runtime/lua_sandbox.h"
#include "rules/runtime/rule_eval.h"
#include "rules/runtime/rule_spec.h"

namespace vigil::rules {

// What the API functions of one file share with the engine.
struct FileContext {
  std::string path;
  DetectorContext detectors;
  std::optional<std::set<std::string>> channels;
  ActionSink* sink = nullptr;

  bool loading = true;             // rule{} is accepted only while the top level runs
  std::vector<RuleSpec> declared;  // in declaration order

  Episode* handling = nullptr;  // the episode whose on_anomaly/on_resolve is running
  std::string notify_error;     // the last error notify() raised, to count it as "notify"
};

void install_api(LuaSandbox& sandbox, FileContext* ctx);

// Pushes a fresh table view of the anomaly; changes a handler makes to it do not leak back,
// except `summary` and `severity`, which notify() reads.
void push_anomaly(lua_State* L, const Anomaly& a);

}  // namespace vigil::rules
