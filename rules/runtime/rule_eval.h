// One rule's groups and their lifecycle: normal -> pending -> firing -> resolved -> normal.
// Pure C++: which Lua handler runs and who gets notified is the engine's business.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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
  std::vector<std::string> pods;  // "namespace/name" of the group's pod (a.pods), for captures
  // The group's latest value and what the detector said about it, kept while the episode is
  // open (the group itself does not hold them: 56 bytes in every group for the few that fire).
  double value = 0;
  Verdict verdict;
};

enum class GroupState : uint8_t { Normal, Pending, Firing };

// The last values of a group, for the anomaly's explanation: kPoints points, each the mean of
// `stride` ticks (RuleEvaluator::history_stride), oldest first, as 16-bit steps between the
// lowest and highest point held (76 bytes; floats took 128 in every group). Encoding is
// redone only when that range changes, each time within half a step, so a point stays within
// a few 1/65,534ths of the ranges it was shown in (tested: 1/4,000): invisible in a sparkline.
// A point that is not a finite number reads back as NaN.
struct RecentValues {
  static constexpr int kPoints = 30;
  static constexpr uint16_t kNotANumber = 0xFFFF;
  static constexpr double kSteps = 65534;  // codes 0..kSteps: lo .. lo + kSteps * step
  std::array<uint16_t, kPoints> points{};
  float lo = 0;
  float step = 0;
  float partial_sum = 0;  // of the point being filled
  uint16_t partial_n = 0;
  uint8_t size = 0;  // finished points held
  void add(double value, int stride);
  std::vector<double> values() const;  // oldest first, the point being filled last

 private:
  double point(int i) const;  // the i-th oldest finished point
};

// Not set, for the times of a group that may be unset (NaN compares false with everything).
inline constexpr double kUnset = std::numeric_limits<double>::quiet_NaN();

// When a group's episode began, came back and ended (kUnset when not).
struct GroupTimes {
  double anomalous_since = 0;    // when Pending began
  double normal_since = kUnset;  // while Firing: when values came back within bounds
  double resolved_at = kUnset;   // the last resolve, for `cooldown`
};

// One group of one rule. Kept small: there is one per pod (or series) per rule, and it is most
// of the engine's memory (docs/benchmarks.md, rule engine). What only a transition needs (the
// value, the verdict, first_seen's new values) travels in the Transition instead.
struct Group {
  double first_seen = 0;
  double last_seen = 0;
  // Only while the group is not Normal (or cools down after a resolve): most never need them.
  std::unique_ptr<GroupTimes> times;
  std::unique_ptr<DetectorState> detector;
  // GroupSnapshot::workload, fixed when the group is made; held in the evaluator's KeyPool
  // (null: none known).
  const std::string* workload = nullptr;
  // Held by pointer: an Anomaly is ~440 bytes and few groups ever have an open episode.
  std::unique_ptr<Episode> episode;
  RecentValues recent;

  // The evaluator's scratch for the tick being evaluated.
  uint32_t tick = 0;     // the tick that last touched the group
  uint32_t scratch = 0;  // and the index of its sums in that tick's scratch
  GroupState state = GroupState::Normal;
  bool has_num = false, has_den = false;
  bool from_series = false;  // a series touched it this tick (else only the pod list did)
};

struct Transition {
  enum class Kind { Fire, Resolve };
  Kind kind;
  const Labels* key;  // the group's labels; valid until the next call
  Group* group;
  double value = 0;  // the value judged, and the detector's verdict on it
  Verdict verdict;
  std::vector<std::string> new_values;  // first_seen: the values never seen before, of this tick
};

// Group keys (and workloads) shared by the rules of one engine: the rules that group by pod
// hold one copy of each pod's key between them (a key per group was 32 bytes plus, for names past 15
// characters, what the heap gives them). Not thread-safe: an engine ticks on one thread.
class KeyPool {
 public:
  const std::string* acquire(std::string_view key);
  void release(const std::string* key);
  size_t size() const { return refs_.size(); }

 private:
  std::map<std::string, uint32_t, std::less<>> refs_;  // key -> groups holding it
};

class RuleEvaluator {
 public:
  // Groups unseen this long are forgotten (bounded memory for churning pods).
  static constexpr double kForgetAfter = 300;

  // `keys` may be shared with the engine's other rules; null: a pool of its own.
  explicit RuleEvaluator(const RuleSpec& spec, std::shared_ptr<KeyPool> keys = nullptr);
  ~RuleEvaluator();
  RuleEvaluator(const RuleEvaluator&) = delete;
  RuleEvaluator& operator=(const RuleEvaluator&) = delete;

  // The recent values cover about kRecentSpan seconds: a point is the mean of this many ticks.
  static constexpr double kRecentSpan = 300;
  void set_tick_seconds(double tick) {
    history_stride_ = std::max(1, static_cast<int>(kRecentSpan / RecentValues::kPoints / std::max(tick, 1e-3) + 0.5));
    tick_seconds_ = tick;
  }
  double recent_step() const { return history_stride_ * tick_seconds_; }

  bool matches(const Sample& s) const;
  // Which terms a sample feeds: bit 0 the numerator (or the rule's metric), bit 1 the denominator.
  unsigned sides(const Sample& s) const;

  // Feeds one tick. `rates_exist` is false on the engine's first tick, when counters have no
  // rates yet: groups are registered (their age starts) but nothing is judged. `pods_sig`
  // identifies the pod list (pods_signature()); 0 means unknown: the pod groups are looked up
  // again. Transitions come sorted by group key.
  std::vector<Transition> evaluate(const std::vector<SeriesValue>& series, const std::vector<PodMeta>& pods,
                                   double now, bool rates_exist, uint64_t pods_sig = 0);
  static uint64_t pods_signature(const std::vector<PodMeta>& pods);

  // Whether a group's labels match the rule's `suppress`.
  bool suppressed(const Labels& key) const;
  bool gauge() const { return gauge_; }
  // first_seen values that found the remembered set full, since the last call.
  uint64_t take_overflow();
  // Bytes held per tracked series by the lookup cache, and by all groups (key, state, detector).
  size_t cache_bytes() const { return slots_.capacity() * sizeof(Slot) + fs_values_.capacity() * sizeof(std::string); }

  // Removes groups unseen for kForgetAfter; returns those whose episode is still open, so the
  // engine can resolve them instead of leaving the receivers with an alert that never ends.
  std::vector<std::pair<Labels, Group>> forget_stale(double now);

  size_t size() const { return groups_.size(); }
  // Bumped each time a group is forgotten (erased): compare two readings to see whether any was.
  uint32_t groups_epoch() const { return groups_epoch_; }
  // Calls f(labels) for every group, seeded ones included.
  template <typename F>
  void for_each_key(F&& f) const {
    for (const auto& [key, group] : groups_) f(unpack_key(*key));
  }
  // Calls f(labels) for every group that is anomalous and waiting out `pending` (or a
  // `cooldown`): the groups about to fire. Costs one test while there is none (most ticks): the
  // evaluator counts them at each change of state.
  template <typename F>
  void for_each_pending_key(F&& f) const {
    if (pending_groups_ == 0) return;
    for (const auto& [key, group] : groups_)
      if (group.state == GroupState::Pending) f(unpack_key(*key));
  }
  uint32_t pending_groups() const { return pending_groups_; }
  uint32_t firing_groups() const { return firing_groups_; }
  const Group* find(const Labels& key) const;
  // The verdict of the last value judged (of whichever group: `vigil replay` has one).
  const Verdict& last_verdict() const { return last_verdict_; }

  // Persisted state. snapshot() lists every group (and restored states no group has claimed
  // yet). adopt() takes restored states: a group with the same key, else the first group of
  // the same workload (a rescheduled pod), starts from one with its learned age, so it is not
  // warmed up again. Unclaimed states are dropped kForgetAfter after the first tick.
  std::vector<GroupSnapshot> snapshot() const;
  size_t adopt(std::vector<GroupSnapshot> groups);
  size_t restored() const { return restored_; }
  // Groups with an open episode, for the engine to resolve before this evaluator goes away.
  std::vector<Group*> open_groups();
  std::vector<const Group*> open_groups() const;

 private:
  struct Restored {
    double age = 0;
    std::string detector;
    std::string workload;
  };
  // A group's key is the values of the rule's `by` labels (in the order of their sorted names),
  // each with its length, in one string: the names are the rule's, the same for every group
  // (a Labels key cost 64 bytes a label on the heap, more than most groups' own state).
  using Key = std::string;
  // Groups are keyed by their key in the pool, ordered by its text (and found by text).
  struct KeyLess {
    using is_transparent = void;
    bool operator()(const std::string* a, const std::string* b) const { return *a < *b; }
    bool operator()(const std::string* a, std::string_view b) const { return *a < b; }
    bool operator()(std::string_view a, const std::string* b) const { return a < *b; }
  };
  using Entry = std::pair<const std::string* const, Group>;
  // What the evaluator remembers of the series at one position among the rule's series: its
  // id and generation then (SeriesValue::id, gen) and its group.
  struct Slot {
    static constexpr uint8_t kInvalid = 0xFF;
    Entry* entry = nullptr;  // null: the series does not match
    uint32_t id = SeriesValue::kNoId;
    uint32_t gen = 0;
    uint8_t sides = kInvalid;
  };
  Key group_key(const Labels& labels) const;
  // The key of labels that name exactly the rule's `by` labels, else none (a snapshot of a
  // rule whose `by` changed).
  std::optional<Key> exact_key(const Labels& labels) const;
  Labels unpack_key(const Key& key) const;
  std::string workload_key(const Labels& key, const std::vector<PodMeta>& pods) const;
  void seed(Group& g, const Key& key, double now);
  bool pod_matches(const PodMeta& pod) const;
  Entry* group_for(const Key& key, const std::vector<PodMeta>& pods, double now);
  std::optional<Transition::Kind> step(Group& g, double value, double now);  // sets last_verdict_
  std::optional<Transition::Kind> quiet(Group& g, double now);
  bool cooling(const Group& g, double now) const;
  bool back_to_normal(Group& g, double now);

  const RuleSpec& spec_;
  std::vector<SeriesTerm> terms_;
  size_t numerator_terms_ = 0;
  const class FirstSeenDetector* first_seen_ = nullptr;
  int history_stride_ = 10;
  double tick_seconds_ = 1;
  std::vector<std::string> by_;  // the rule's `by` label names, sorted
  std::shared_ptr<KeyPool> keys_;
  std::map<const std::string*, Group, KeyLess> groups_;
  std::deque<Labels> transition_keys_;          // Transition::key of the last evaluate()
  // Summed values of the numerator (or the metric) and denominator terms of each group touched
  // this tick, by Group::scratch (kept out of the groups: only a tick needs them).
  struct Sums {
    double num = 0, den = 0;
  };
  Verdict last_verdict_;
  uint32_t groups_epoch_ = 1;  // bumped when a group is erased
  uint32_t pending_groups_ = 0;  // groups in GroupState::Pending
  uint32_t firing_groups_ = 0;   // and in GroupState::Firing
  uint32_t tick_ = 0;
  std::optional<double> last_now_;
  std::vector<Slot> slots_;              // by position among the rule's series
  uint32_t slots_epoch_ = 0;             // groups_epoch_ the slots were made in
  std::vector<std::string> fs_values_;   // first_seen: each series' value, by position
  std::vector<Entry*> seeded_;           // the pod list's groups
  uint64_t seeded_sig_ = 0;
  uint32_t seeded_epoch_ = 0;
  uint64_t overflow_ = 0;
  bool all_seen_ = false;  // the last evaluate() saw every group
  std::map<Key, Restored> restored_by_key_;
  std::map<std::string, Restored> restored_by_workload_;  // the longest-learned state of each
  std::optional<double> restored_until_;
  size_t restored_ = 0;
  bool gauge_ = false;  // seen as a gauge: a missing series is unknown, not zero
};

}  // namespace vigil::rules
