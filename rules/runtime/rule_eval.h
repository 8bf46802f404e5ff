// One rule's groups and their lifecycle: normal -> pending -> firing -> resolved -> normal.
// Pure C++: which Lua handler runs and who gets notified is the engine's business.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rules/core/anomaly.h"
#include "rules/core/series.h"
#include "rules/runtime/detectors.h"
#include "rules/runtime/rule_spec.h"
#include "rules/runtime/series_rates.h"
#include "rules/runtime/state_store.h"

namespace vigil::rules {

// One firing: the anomaly sent and the channels it was sent to, which get the resolve.
struct Episode {
  Anomaly anomaly;
  std::vector<std::string> channels;
};

enum class GroupState { Normal, Pending, Firing };

struct Group {
  double first_seen = 0;
  double last_seen = 0;
  GroupState state = GroupState::Normal;
  double anomalous_since = 0;          // when Pending began
  std::optional<double> normal_since;  // while Firing: when values came back within bounds
  std::unique_ptr<DetectorState> detector;
  std::string workload;  // GroupSnapshot::workload, fixed when the group is made
  double value = 0;  // the latest value evaluated
  Verdict verdict;   // and what the detector said about it
  std::optional<Episode> episode;
};

struct Transition {
  enum class Kind { Fire, Resolve };
  Kind kind;
  const Labels* key;  // the group's labels; valid until the next call
  Group* group;
};

class RuleEvaluator {
 public:
  // Groups unseen this long are forgotten (bounded memory for churning pods).
  static constexpr double kForgetAfter = 300;

  explicit RuleEvaluator(const RuleSpec& spec) : spec_(spec) {}

  bool matches(const Sample& s) const;

  // Feeds one tick. `rates_exist` is false on the engine's first tick, when counters have no
  // rates yet: groups are registered (their age starts) but nothing is judged.
  std::vector<Transition> evaluate(const std::vector<SeriesValue>& series, const std::vector<PodMeta>& pods,
                                   double now, bool rates_exist);

  // Removes groups unseen for kForgetAfter; returns those whose episode is still open, so the
  // engine can resolve them instead of leaving the receivers with an alert that never ends.
  std::vector<std::pair<Labels, Group>> forget_stale(double now);

  size_t size() const { return groups_.size(); }
  const Group* find(const Labels& key) const;

  // Persisted state. snapshot() lists every group (and restored states no group has claimed
  // yet). adopt() takes restored states: a group with the same key, else the first group of
  // the same workload (a rescheduled pod), starts from one with its learned age, so it is not
  // warmed up again. Unclaimed states are dropped kForgetAfter after the first tick.
  std::vector<GroupSnapshot> snapshot() const;
  size_t adopt(std::vector<GroupSnapshot> groups);
  size_t restored() const { return restored_; }
  // Groups with an open episode, for the engine to resolve before this evaluator goes away.
  std::vector<Group*> open_groups();  // groups started from a restored state

 private:
  struct Restored {
    double age = 0;
    std::string detector;
    std::string workload;
  };
  Labels group_key(const Labels& labels) const;
  std::string workload_key(const Labels& key, const std::vector<PodMeta>& pods) const;
  void seed(Group& g, const Labels& key, double now);
  bool pod_matches(const PodMeta& pod) const;
  std::optional<Transition::Kind> step(Group& g, double value, double now);

  const RuleSpec& spec_;
  std::map<Labels, Group> groups_;
  std::map<Labels, Restored> restored_by_key_;
  std::map<std::string, Restored> restored_by_workload_;  // the longest-learned state of each
  std::optional<double> restored_until_;
  size_t restored_ = 0;
  bool gauge_ = false;  // seen as a gauge: a missing series is unknown, not zero
};

}  // namespace vigil::rules
