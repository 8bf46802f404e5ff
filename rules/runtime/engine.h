// The rule engine: loads Lua rule files into sandboxed states, evaluates every rule's
// detector on each tick's series, runs the anomaly lifecycle (pending -> firing -> resolved)
// and hands anomalies to an ActionSink through the Lua `notify` function.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
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
  // Sees every anomaly the engine fires (before on_anomaly runs) and resolves (before the
  // resolve is sent), whatever the handlers notify. `vigil rules test` records them with it.
  std::function<void(const Anomaly&)> observer;
  // Checks a packet filter expression (tcpdump syntax): "" when it compiles, else why not. The
  // rule engine has no libpcap, so the agent sets this; when set, a bad `capture.filter` of a
  // rule is a load error naming file:line, and a bad filter given to capture{} a runtime error.
  std::function<std::string(const std::string& filter)> check_capture_filter;
};

// Counters the agent exports as vigil_rule_errors_total{rule,kind} etc.
struct RuleStatus {
  std::string rule;
  std::string file;
  std::string location;              // "file:line" of its rule{} call
  std::vector<std::string> metrics;  // the series it watches (a ratio's both terms)
  bool disabled = false;
  std::string last_error;                 // "file:line: message"
  // kind -> count; kinds: runtime, budget, notify, and three that are not failures of the rule
  // and never quarantine it: notification_budget (firings past max_notifications_per_hour,
  // not notified), first_seen_overflow (values a full first_seen set could not remember) and
  // capture (captures the sink refused, asked by the rule's `capture` option or capture{}).
  std::map<std::string, uint64_t> errors;
  uint64_t anomalies_fired = 0;
  uint64_t suppressed = 0;  // firings of groups matched by `suppress`, not notified
  size_t groups = 0;  // series groups this rule tracks
  size_t pending = 0;  // of them, anomalous and waiting out `pending` (or a `cooldown`)
  size_t firing = 0;   // and firing
};

// What restore_state() did. Never fatal: a refused file means a fresh start.
struct StateReport {
  bool missing = false;   // no state file: a first start
  std::string error;      // "FILE: reason" when the file was refused as a whole; nothing restored
  size_t rules = 0;       // rules whose saved state was taken
  size_t groups = 0;      // group states taken (seeded into their groups when these appear)
  std::vector<std::string> skipped;  // "rule 'x': why", one per saved rule not taken
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
  // The series names the loaded rules watch (a histogram's as NAME_sum and NAME_count): all that
  // tick() reads of its input's samples; it skips the others. Fixed for the engine's life (a
  // reload loads another engine), so the agent can leave the rest out of the snapshot it hands over.
  virtual const std::set<std::string>& metrics() const = 0;

  virtual std::vector<RuleStatus> status() const = 0;

  // Learned state (baselines and warm-up progress), keyed per rule by its name and a hash of
  // its detector, parameters, `by` and tick, and per group by its labels and workload. Call
  // between ticks (same thread). save_state() replaces `path` atomically; restore_state()
  // takes what still fits the loaded rules and logs the rest with the reason.
  virtual Result<void> save_state(const std::string& path) const = 0;
  virtual StateReport restore_state(const std::string& path) = 0;
  // The same in memory, for a hot reload of the rule files.
  virtual std::string snapshot_state() const = 0;
  virtual StateReport restore_snapshot(std::string_view bytes, const std::string& origin) = 0;
  // Resolves every open anomaly (its channels get the resolve), for an engine about to be
  // replaced by a reload: episodes are not carried over, so none is left open at a receiver.
  // One still anomalous fires again, with a new id, from the new engine.
  virtual void resolve_open(double now) = 0;
  // The anomalies firing now, newest first: each as its firing was sent, with the latest
  // value, baseline, score and recent values, and the captures started for it so far.
  virtual std::vector<Anomaly> open_anomalies() const = 0;

  // The pods whose recent packets the agent should keep (a lookback ring), so that a capture
  // asked when an anomaly fires can include what came before it (`capture.before`):
  // "namespace/name" of every group, seeded ones included, of the enabled rules with a
  // `capture` option. Groups exist from the first tick (seeded from the pod list, or made by a
  // series) until forgotten, so the set follows the pods; call it between ticks (same thread),
  // e.g. after each tick() or when the pod list changes.
  virtual std::set<std::string> lookback_pods() const = 0;
  // The pods of the groups that are pending now (anomalous, waiting out `pending` or a
  // `cooldown`) in enabled rules that can start a capture when they fire: a `capture` option or
  // an on_anomaly handler (which may call capture{}). A lookback ring started for them when
  // they turn pending holds the anomaly's onset when they fire (captures.lookback.pending).
  virtual std::set<std::string> pending_pods() const = 0;

  // Bytes the rule files' Lua states hold now (their allocators' count), custom detectors'
  // per-group state tables included.
  virtual size_t lua_memory_bytes() const = 0;
};

}  // namespace vigil::rules
