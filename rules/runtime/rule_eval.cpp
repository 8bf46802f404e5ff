#include "rules/runtime/rule_eval.h"

#include <algorithm>

namespace vigil::rules {
namespace {

// Tick times are doubles of epoch seconds; durations compare with this much slack.
constexpr double kTimeSlack = 1e-6;

}  // namespace

bool RuleEvaluator::matches(const Sample& s) const {
  if (s.metric != spec_.metric) return false;
  for (const auto& m : spec_.where) {
    const std::string* v = find_label(s.labels, m.name);
    const std::string& value = v ? *v : std::string();
    bool listed = std::find(m.values.begin(), m.values.end(), value) != m.values.end();
    if (listed == m.negate) return false;
  }
  return true;
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

std::vector<Transition> RuleEvaluator::evaluate(const std::vector<SeriesValue>& series,
                                                const std::vector<PodMeta>& pods, double now, bool rates_exist) {
  // Sum the rates of the series in each group; a group with series but no value yet
  // (first tick) is still seen, so its age starts now.
  std::map<Labels, std::optional<double>> values;
  for (const auto& s : series) {
    if (!matches(*s.sample)) continue;
    gauge_ = s.sample->kind == SeriesKind::Gauge;
    auto& slot = values[group_key(s.sample->labels)];
    if (s.value) slot = slot.value_or(0) + *s.value;
  }
  if (spec_.seeds_from_pods()) {
    // A pod without a matching series has a rate of zero (counters are created on the first
    // event), so its baseline learns the quiet period before the first drop.
    std::optional<double> silence;
    if (rates_exist && !gauge_) silence = 0.0;
    for (const auto& pod : pods) {
      if (!pod_matches(pod)) continue;
      Labels key = group_key(make_labels({{"namespace", pod.namespace_}, {"pod", pod.name}}));
      values.try_emplace(std::move(key), silence);
    }
  }

  std::vector<Transition> out;
  for (auto& [key, value] : values) {
    auto [it, inserted] = groups_.try_emplace(key);
    Group& g = it->second;
    if (inserted) {
      g.first_seen = now;
      g.detector = spec_.detector->new_state();
      g.workload = workload_key(key, pods);
      if (!restored_by_key_.empty() || !restored_by_workload_.empty()) seed(g, key, now);
    }
    g.last_seen = now;
    if (!value) continue;
    if (auto kind = step(g, *value, now)) out.push_back({*kind, &it->first, &g});
  }
  return out;
}

std::optional<Transition::Kind> RuleEvaluator::step(Group& g, double value, double now) {
  g.value = value;
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
          result = Transition::Kind::Resolve;
        }
      }
      break;
  }
  if (g.state == GroupState::Pending && now - g.anomalous_since + kTimeSlack >= spec_.pending) {
    g.state = GroupState::Firing;
    g.normal_since.reset();
    result = Transition::Kind::Fire;
  }
  // The baseline learns only normal values: a fault must not become the new normal.
  if (g.state == GroupState::Normal) g.detector->learn_at(value, now);
  else g.detector->hold(value, now);
  return result;
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
  for (auto it = groups_.begin(); it != groups_.end();) {
    if (now - it->second.last_seen <= kForgetAfter) {
      ++it;
      continue;
    }
    if (it->second.episode) open.emplace_back(it->first, std::move(it->second));
    it = groups_.erase(it);
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
