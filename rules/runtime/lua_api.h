// The Lua API a rule file sees on top of the sandbox's standard functions:
//   rule { ... }                      declares a rule (only while the file loads)
//   threshold { above =, below = }    a detector
//   baseline.zscore { window =, threshold =, min_rate =, warmup =, direction =, min_stddev = }
//   notify(channel, a)                sends the anomaly `a` being handled to a notifier channel
//   capture { pods =, before =, ... } starts a packet capture for the anomaly being handled
//   detector { name =, init =, update = }  declares a custom detector (lua_detector.h)
//   require("vigil.stats")            Vigil's built-in modules, nothing else
#pragma once

#include <functional>
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

  // EngineOptions::check_capture_filter: "" or why a pcap filter is bad.
  std::function<std::string(const std::string&)> check_capture_filter;
  // capture{} calls of the running handler: how many, how many were refused and the last reason.
  static constexpr size_t kMaxCaptureCalls = 16;  // per handler call; more are refused unasked
  static constexpr size_t kMaxCaptures = 16;      // per episode (a.captures)
  size_t capture_calls = 0;
  uint64_t capture_refused = 0;
  std::string capture_refusal;
};

void install_api(LuaSandbox& sandbox, FileContext* ctx);

// Pushes a fresh table view of the anomaly; changes a handler makes to it do not leak back,
// except `summary` and `severity`, which notify() reads. `pods` is a.pods ("namespace/name").
void push_anomaly(lua_State* L, const Anomaly& a, const std::vector<std::string>& pods = {});

}  // namespace vigil::rules
