#include "rules/runtime/rule_eval.h"

#include <algorithm>

#include "rules/runtime/first_seen.h"
#include "rules/runtime/state_store.h"

namespace vigil::rules {
namespace {

// Tick times are doubles of epoch seconds; durations compare with this much slack.
constexpr double kTimeSlack = 1e-6;

bool labels_match(const Labels& labels, const std::vector<LabelMatcher>& matchers) {
  static const std::string kEmpty;
  for (const auto& m : matchers) {
    const std::string* v = find_label(labels, m.name);
    const std::string& value = v ? *v : kEmpty;
    bool listed = std::find(m.values.begin(), m.values.end(), value) != m.values.end();
    if (listed == m.negate) return false;
  }
  return true;
}

}  // namespace

RuleEvaluator::RuleEvaluator(const RuleSpec& spec) : spec_(spec), terms_(spec.terms()) {
  numerator_terms_ = spec.ratio ? spec.ratio->numerator.size() : terms_.size();
  first_seen_ = dynamic_cast<const FirstSeenDetector*>(spec.detector.get());
}

unsigned RuleEvaluator::sides(const Sample& s) const {
  unsigned out = 0;
  for (size_t i = 0; i < terms_.size(); ++i) {
    if (s.metric != terms_[i].metric || !labels_match(s.labels, terms_[i].where)) continue;
    out |= i < numerator_terms_ ? 1u : 2u;
  }
  return out;
}

bool RuleEvaluator::matches(const Sample& s) const { return sides(s) != 0; }

bool RuleEvaluator::suppressed(const Labels& key) const {
  return !spec_.suppress.empty() && labels_match(key, spec_.suppress);
}

uint64_t RuleEvaluator::take_overflow() {
  uint64_t n = overflow_;
  overflow_ = 0;
  return n;
}

uint64_t RuleEvaluator::pods_signature(const std::vector<PodMeta>& pods) {
  uint64_t h = fnv1a64(std::to_string(pods.size()));
  for (const auto& p : pods) {
    h = fnv1a64(p.namespace_, h);
    h = fnv1a64(std::string_view("/", 1), h);
    h = fnv1a64(p.name, h);
    h = fnv1a64(std::string_view("\0", 1), h);
    // The workload a new group is bound to comes from the pod's labels.
    for (const auto& [k, v] : p.labels) h = fnv1a64(v, fnv1a64(k, h));
  }
  return h == 0 ? 1 : h;
}

// `where` matchers on namespace or pod also select which pods seed groups.
bool RuleEvaluator::pod_matches(const PodMeta& pod) const {
  for (const auto& m : spec_.where) {
    const std::string* value = m.name == "namespace" ? &pod.namespace_ : m.name == "pod" ? &pod.name : nullptr;
    if (value && (std::find(m.values.begin(), m.values.end(), *value) != m.values.end()) == m.negate) return false;
  }
  return true;
}

Labels RuleEvaluator::group_key(const Labels& labels) const {
  Labels key;
  key.reserve(spec_.by.size());
  for (const auto& name : spec_.by) {
    const std::string* v = find_label(labels, name);
    key.emplace_back(name, v ? *v : std::string());
  }
  sort_labels(key);
  return key;
}

RuleEvaluator::Entry* RuleEvaluator::group_for(const Labels& key, const std::vector<PodMeta>& pods, double now) {
  auto [it, inserted] = groups_.try_emplace(key);
  Group& g = it->second;
  if (inserted) {
    g.first_seen = now;
    g.detector = spec_.detector->new_state();
    g.workload = workload_key(key, pods);
    if (!restored_by_key_.empty() || !restored_by_workload_.empty()) seed(g, key, now);
  }
  return &*it;
}

std::vector<Transition> RuleEvaluator::evaluate(const std::vector<SeriesValue>& series,
                                                const std::vector<PodMeta>& pods, double now, bool rates_exist,
                                                uint64_t pods_sig) {
  ++tick_;
  std::vector<Entry*> touched;
  auto touch = [&](Entry* e) {
    Group& g = e->second;
    if (g.tick == tick_) return;
    g.tick = tick_;
    g.num = g.den = 0;
    g.has_num = g.has_den = g.from_series = false;
    touched.push_back(e);
  };
  // first_seen: the tick's label values per group, with whether the series was active.
  std::map<Entry*, std::vector<std::pair<std::string, bool>>> fs_seen;

  // Sum each group's values per side; a group with series but no value yet (first tick) is
  // still seen, so its age starts now. A series' group is remembered by its id.
  for (const auto& s : series) {
    Slot* slot = nullptr;
    Slot scratch;
    if (s.id != SeriesValue::kNoId) {
      if (s.id >= slots_.size()) slots_.resize(static_cast<size_t>(s.id) + 1);
      slot = &slots_[s.id];
    } else {
      slot = &scratch;
    }
    if (!slot->valid || slot->gen != s.gen || slot->groups_epoch != groups_epoch_) {
      slot->sides = static_cast<uint8_t>(sides(*s.sample));
      slot->entry = slot->sides ? group_for(group_key(s.sample->labels), pods, now) : nullptr;
      slot->gen = s.gen;
      slot->groups_epoch = groups_epoch_;
      slot->valid = true;
      if (first_seen_ && s.id != SeriesValue::kNoId) {
        if (s.id >= fs_values_.size()) fs_values_.resize(static_cast<size_t>(s.id) + 1);
        fs_values_[s.id] = slot->sides ? first_seen_->value_of(s.sample->labels) : std::string();
      }
    }
    if (!slot->entry) continue;
    gauge_ = s.sample->kind == SeriesKind::Gauge;
    touch(slot->entry);
    Group& g = slot->entry->second;
    g.from_series = true;
    if (s.value) {
      if (slot->sides & 1u) g.num += *s.value, g.has_num = true;
      if (slot->sides & 2u) g.den += *s.value, g.has_den = true;
    }
    if (first_seen_) {
      std::string value = s.id != SeriesValue::kNoId ? fs_values_[s.id] : first_seen_->value_of(s.sample->labels);
      if (!value.empty()) fs_seen[slot->entry].emplace_back(std::move(value), s.value && *s.value > 0);
    }
  }

  // A pod without a matching series has a rate of zero (counters are created on the first
  // event), so its baseline learns the quiet period before the first drop. The pod list's
  // groups are looked up again only when the list (or the set of groups) changes.
  if (spec_.seeds_from_pods()) {
    if (pods_sig == 0 || pods_sig != seeded_sig_ || seeded_epoch_ != groups_epoch_) {
      seeded_.clear();
      for (const auto& pod : pods) {
        if (!pod_matches(pod)) continue;
        seeded_.push_back(group_for(group_key(make_labels({{"namespace", pod.namespace_}, {"pod", pod.name}})), pods, now));
      }
      seeded_sig_ = pods_sig;
      seeded_epoch_ = groups_epoch_;
    }
    for (Entry* e : seeded_) touch(e);
  }
  const bool silence = rates_exist && !gauge_;
  const std::optional<double> dt = last_now_ && now > *last_now_ ? std::optional<double>(now - *last_now_) : std::nullopt;
  last_now_ = now;

  // When every group was seen this tick, forget_stale() has nothing to look for.
  all_seen_ = touched.size() == groups_.size();
  std::vector<Transition> out;
  for (Entry* e : touched) {
    Group& g = e->second;
    g.last_seen = now;
    std::optional<Transition::Kind> kind;
    if (spec_.ratio) {
      if (!g.has_num && !g.has_den && (g.from_series || !silence)) continue;
      if (!dt) continue;
      // Terms without a series are zero; a tick with too few events in the denominator says
      // nothing about the ratio (1 of 2 is not a 50% error rate): not judged, not learned.
      const double volume = gauge_ ? g.den : g.den * *dt;
      if (!(g.den > 0) || volume + 1e-9 < spec_.ratio->min_volume) kind = quiet(g, now);
      else kind = step(g, g.num / g.den, now);
    } else if (first_seen_) {
      if (!g.has_num && (g.from_series || !silence)) continue;
      auto* state = static_cast<FirstSeenState*>(g.detector.get());
      std::vector<std::string> values;
      std::vector<bool> active;
      if (auto it = fs_seen.find(e); it != fs_seen.end()) {
        for (const auto& [value, is_active] : it->second) {
          auto at = std::find(values.begin(), values.end(), value);
          if (at == values.end()) values.push_back(value), active.push_back(is_active);
          else if (is_active) active[static_cast<size_t>(at - values.begin())] = true;
        }
      }
      // Idle values are remembered (while learning, and silently after); only values in use
      // this tick are judged.
      std::vector<std::string> idle, used;
      for (size_t i = 0; i < values.size(); ++i) (active[i] ? used : idle).push_back(std::move(values[i]));
      const double age = now - g.first_seen;
      (void)state->observe(idle, age, false);
      g.new_values.clear();
      for (size_t i : state->observe(used, age)) g.new_values.push_back(used[i]);
      overflow_ += state->take_new_overflow();
      kind = step(g, static_cast<double>(g.new_values.size()), now);
    } else {
      if (!g.has_num) {
        if (g.from_series || !silence) continue;
      }
      kind = step(g, g.has_num ? g.num : 0.0, now);
    }
    if (kind) out.push_back({*kind, &e->first, &g});
  }
  if (out.size() > 1)
    std::sort(out.begin(), out.end(), [](const Transition& a, const Transition& b) { return *a.key < *b.key; });
  return out;
}

void RecentValues::add(double value, int stride) {
  partial_sum += static_cast<float>(value);
  if (++partial_n < stride) return;
  points[head] = partial_sum / static_cast<float>(partial_n);
  head = static_cast<uint8_t>((head + 1) % kPoints);
  if (size < kPoints) ++size;
  partial_sum = 0;
  partial_n = 0;
}

std::vector<double> RecentValues::values() const {
  std::vector<double> out;
  out.reserve(size + 1);
  for (int i = 0; i < size; ++i) out.push_back(points[(head + kPoints - size + i) % kPoints]);
  if (partial_n) out.push_back(partial_sum / static_cast<float>(partial_n));
  return out;
}

std::optional<Transition::Kind> RuleEvaluator::step(Group& g, double value, double now) {
  g.value = value;
  g.recent.add(value, history_stride_);
  g.verdict = g.detector->evaluate_at(value, now - g.first_seen, now);
  const bool anomalous = g.verdict.anomalous;
  std::optional<Transition::Kind> result;
  switch (g.state) {
    case GroupState::Normal:
      if (anomalous) g.state = GroupState::Pending, g.anomalous_since = now;
      break;
    case GroupState::Pending:
      if (!anomalous) g.state = GroupState::Normal;
      break;
    case GroupState::Firing:
      if (anomalous) {
        g.normal_since.reset();
      } else {
        if (!g.normal_since) g.normal_since = now;
        if (now - *g.normal_since + kTimeSlack >= spec_.resolve_after) {
          g.state = GroupState::Normal;
          g.normal_since.reset();
          g.resolved_at = now;
          result = Transition::Kind::Resolve;
        }
      }
      break;
  }
  // `cooldown`: a group that resolved recently stays pending (its values held) until it ends.
  const bool cooling = spec_.cooldown > 0 && g.resolved_at && now - *g.resolved_at + kTimeSlack < spec_.cooldown;
  if (g.state == GroupState::Pending && !cooling && now - g.anomalous_since + kTimeSlack >= spec_.pending) {
    g.state = GroupState::Firing;
    g.normal_since.reset();
    result = Transition::Kind::Fire;
  }
  // The baseline learns only normal values: a fault must not become the new normal.
  if (g.state == GroupState::Normal) g.detector->learn_at(value, now);
  else g.detector->hold(value, now);
  return result;
}

// A tick that is not judged (a ratio below its min_volume): nothing is learned; a pending
// group is no longer anomalous, a firing one counts it towards resolve_after.
std::optional<Transition::Kind> RuleEvaluator::quiet(Group& g, double now) {
  switch (g.state) {
    case GroupState::Normal: break;
    case GroupState::Pending: g.state = GroupState::Normal; break;
    case GroupState::Firing:
      if (!g.normal_since) g.normal_since = now;
      if (now - *g.normal_since + kTimeSlack >= spec_.resolve_after) {
        g.state = GroupState::Normal;
        g.normal_since.reset();
        g.resolved_at = now;
        return Transition::Kind::Resolve;
      }
      break;
  }
  return std::nullopt;
}

std::vector<std::pair<Labels, Group>> RuleEvaluator::forget_stale(double now) {
  if (!restored_by_key_.empty() || !restored_by_workload_.empty()) {
    if (!restored_until_) restored_until_ = now + kForgetAfter;
    if (now > *restored_until_) {
      restored_by_key_.clear();
      restored_by_workload_.clear();
    }
  }
  std::vector<std::pair<Labels, Group>> open;
  if (all_seen_) return open;
  for (auto it = groups_.begin(); it != groups_.end();) {
    if (now - it->second.last_seen <= kForgetAfter) {
      ++it;
      continue;
    }
    if (it->second.episode) open.emplace_back(it->first, std::move(it->second));
    it = groups_.erase(it);
    ++groups_epoch_;
  }
  return open;
}

std::string RuleEvaluator::workload_key(const Labels& key, const std::vector<PodMeta>& pods) const {
  const std::string* ns = find_label(key, "namespace");
  const std::string* pod = find_label(key, "pod");
  if (!ns || !pod) return {};
  for (const auto& p : pods) {
    if (p.namespace_ != *ns || p.name != *pod) continue;
    std::string owner = workload_of(p);
    if (owner.empty()) return {};
    Labels rest;
    for (const auto& label : key)
      if (label.first != "namespace" && label.first != "pod") rest.push_back(label);
    return owner + "|" + labels_to_string(rest);
  }
  return {};
}

void RuleEvaluator::seed(Group& g, const Labels& key, double now) {
  auto by_key = restored_by_key_.find(key);
  const Restored* r = nullptr;
  if (by_key != restored_by_key_.end()) {
    r = &by_key->second;
  } else if (!g.workload.empty()) {
    auto by_workload = restored_by_workload_.find(g.workload);
    if (by_workload != restored_by_workload_.end()) r = &by_workload->second;
  }
  if (!r) return;
  // restore() refuses (and leaves the fresh state) unless the detector and its sizes match.
  if (g.detector->restore(r->detector)) {
    g.first_seen = now - r->age;
    ++restored_;
  }
  if (by_key != restored_by_key_.end()) restored_by_key_.erase(by_key);
}

std::vector<GroupSnapshot> RuleEvaluator::snapshot() const {
  std::vector<GroupSnapshot> out;
  out.reserve(groups_.size() + restored_by_key_.size());
  for (const auto& [key, g] : groups_) {
    GroupSnapshot s{key, g.workload, g.last_seen - g.first_seen, {}};
    g.detector->save(s.detector);
    out.push_back(std::move(s));
  }
  for (const auto& [key, r] : restored_by_key_)
    if (!groups_.count(key)) out.push_back({key, r.workload, r.age, r.detector});
  return out;
}

size_t RuleEvaluator::adopt(std::vector<GroupSnapshot> groups) {
  size_t adopted = 0;
  for (auto& s : groups) {
    if (auto it = groups_.find(s.key); it != groups_.end()) {
      Group& g = it->second;
      if (g.detector->restore(s.detector)) g.first_seen = g.last_seen - s.age, ++adopted, ++restored_;
      continue;
    }
    Restored r{s.age, std::move(s.detector), s.workload};
    if (!r.workload.empty()) {
      auto [w, inserted] = restored_by_workload_.try_emplace(r.workload, r);
      if (!inserted && w->second.age < r.age) w->second = r;
    }
    restored_by_key_[std::move(s.key)] = std::move(r);
    ++adopted;
  }
  restored_until_.reset();
  return adopted;
}

std::vector<Group*> RuleEvaluator::open_groups() {
  std::vector<Group*> out;
  for (auto& [key, g] : groups_)
    if (g.episode) out.push_back(&g);
  return out;
}

const Group* RuleEvaluator::find(const Labels& key) const {
  auto it = groups_.find(key);
  return it == groups_.end() ? nullptr : &it->second;
}

}  // namespace vigil::rules
