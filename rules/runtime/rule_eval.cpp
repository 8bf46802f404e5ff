#include "rules/runtime/rule_eval.h"

#include <algorithm>
#include <cmath>

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

const std::string* KeyPool::acquire(std::string_view key) {
  auto it = refs_.find(key);
  if (it == refs_.end()) it = refs_.emplace(std::string(key), 0).first;
  ++it->second;
  return &it->first;
}

void KeyPool::release(const std::string* key) {
  auto it = refs_.find(*key);
  if (it != refs_.end() && --it->second == 0) refs_.erase(it);
}

RuleEvaluator::~RuleEvaluator() {
  for (auto& [key, group] : groups_) {
    keys_->release(key);
    if (group.workload) keys_->release(group.workload);
  }
}

RuleEvaluator::RuleEvaluator(const RuleSpec& spec, std::shared_ptr<KeyPool> keys)
    : spec_(spec), terms_(spec.terms()), by_(spec.by), keys_(keys ? std::move(keys) : std::make_shared<KeyPool>()) {
  std::sort(by_.begin(), by_.end());
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

namespace {

void append_value(std::string& key, const std::string& value) {
  // The length first: one byte below 255, else 255 and four bytes.
  if (value.size() < 255) {
    key.push_back(static_cast<char>(value.size()));
  } else {
    key.push_back(static_cast<char>(255));
    const auto n = static_cast<uint32_t>(value.size());
    for (int i = 0; i < 4; ++i) key.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  }
  key += value;
}

}  // namespace

RuleEvaluator::Key RuleEvaluator::group_key(const Labels& labels) const {
  static const std::string kEmpty;
  Key key;
  for (const auto& name : by_) {
    const std::string* v = find_label(labels, name);
    append_value(key, v ? *v : kEmpty);
  }
  return key;
}

std::optional<RuleEvaluator::Key> RuleEvaluator::exact_key(const Labels& labels) const {
  if (labels.size() != by_.size()) return std::nullopt;
  for (size_t i = 0; i < by_.size(); ++i)
    if (labels[i].first != by_[i]) return std::nullopt;
  Key key;
  for (const auto& label : labels) append_value(key, label.second);
  return key;
}

Labels RuleEvaluator::unpack_key(const Key& key) const {
  Labels out;
  out.reserve(by_.size());
  size_t at = 0;
  for (const auto& name : by_) {
    size_t n = static_cast<uint8_t>(key[at++]);
    if (n == 255) {
      n = 0;
      for (int i = 0; i < 4; ++i) n |= static_cast<size_t>(static_cast<uint8_t>(key[at++])) << (8 * i);
    }
    out.emplace_back(name, key.substr(at, n));
    at += n;
  }
  return out;
}

RuleEvaluator::Entry* RuleEvaluator::group_for(const Key& key, const std::vector<PodMeta>& pods, double now) {
  auto it = groups_.find(std::string_view(key));
  const bool inserted = it == groups_.end();
  if (inserted) it = groups_.try_emplace(keys_->acquire(key)).first;
  Group& g = it->second;
  if (inserted) {
    g.first_seen = now;
    g.detector = spec_.detector->new_state();
    const std::string workload = workload_key(unpack_key(key), pods);
    g.workload = workload.empty() ? nullptr : keys_->acquire(workload);
    if (!restored_by_key_.empty() || !restored_by_workload_.empty()) seed(g, key, now);
  }
  return &*it;
}

std::vector<Transition> RuleEvaluator::evaluate(const std::vector<SeriesValue>& series,
                                                const std::vector<PodMeta>& pods, double now, bool rates_exist,
                                                uint64_t pods_sig) {
  ++tick_;
  transition_keys_.clear();
  // One scratch for every evaluator of the thread: rules are evaluated one after another, and
  // a vector per rule would hold 16 bytes for each of its groups between ticks.
  static thread_local std::vector<Sums> sums;
  sums.clear();
  std::vector<Entry*> touched;
  auto touch = [&](Entry* e) {
    Group& g = e->second;
    if (g.tick == tick_) return;
    g.tick = tick_;
    g.scratch = static_cast<uint32_t>(sums.size());
    sums.emplace_back();
    g.has_num = g.has_den = g.from_series = false;
    touched.push_back(e);
  };
  // first_seen: the tick's label values per group, with whether the series was active.
  std::map<Entry*, std::vector<std::pair<std::string, bool>>> fs_seen;

  // Sum each group's values per side; a group with series but no value yet (first tick) is
  // still seen, so its age starts now. A series' group is remembered by its position among the
  // rule's series (the agent hands them over in the same order every tick), checked against
  // the series' id and generation (series without an id, as in replay, are looked up every
  // tick): a rule keeps a slot per series it reads, not per series the
  // node has. A forgotten group invalidates every slot.
  if (slots_epoch_ != groups_epoch_) {
    for (auto& slot : slots_) slot.sides = Slot::kInvalid;
    slots_epoch_ = groups_epoch_;
  }
  slots_.resize(series.size());
  if (first_seen_) fs_values_.resize(series.size());
  for (size_t i = 0; i < series.size(); ++i) {
    const SeriesValue& s = series[i];
    Slot& slot = slots_[i];
    if (s.id == SeriesValue::kNoId || slot.sides == Slot::kInvalid || slot.id != s.id || slot.gen != s.gen) {
      slot.sides = static_cast<uint8_t>(sides(*s.sample));
      slot.entry = slot.sides ? group_for(group_key(s.sample->labels), pods, now) : nullptr;
      slot.id = s.id;
      slot.gen = s.gen;
      if (first_seen_) fs_values_[i] = slot.sides ? first_seen_->value_of(s.sample->labels) : std::string();
    }
    if (!slot.entry) continue;
    gauge_ = s.sample->kind == SeriesKind::Gauge;
    touch(slot.entry);
    Group& g = slot.entry->second;
    g.from_series = true;
    if (s.value) {
      Sums& sum = sums[g.scratch];
      if (slot.sides & 1u) sum.num += *s.value, g.has_num = true;
      if (slot.sides & 2u) sum.den += *s.value, g.has_den = true;
    }
    if (first_seen_ && !fs_values_[i].empty()) fs_seen[slot.entry].emplace_back(fs_values_[i], s.value && *s.value > 0);
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
    const Sums& sum = sums[g.scratch];
    std::optional<Transition::Kind> kind;
    double value = 0;
    std::vector<std::string> new_values;
    if (spec_.ratio) {
      if (!g.has_num && !g.has_den && (g.from_series || !silence)) continue;
      if (!dt) continue;
      // Terms without a series are zero; a tick with too few events in the denominator says
      // nothing about the ratio (1 of 2 is not a 50% error rate): not judged, not learned.
      const double volume = gauge_ ? sum.den : sum.den * *dt;
      if (!(sum.den > 0) || volume + 1e-9 < spec_.ratio->min_volume) kind = quiet(g, now);
      else kind = step(g, value = sum.num / sum.den, now);
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
      for (size_t i : state->observe(used, age)) new_values.push_back(used[i]);
      overflow_ += state->take_new_overflow();
      kind = step(g, static_cast<double>(new_values.size()), now);
    } else {
      if (!g.has_num) {
        if (g.from_series || !silence) continue;
      }
      kind = step(g, value = g.has_num ? sum.num : 0.0, now);
    }
    if (first_seen_) value = static_cast<double>(new_values.size());
    if (kind) {
      transition_keys_.push_back(unpack_key(*e->first));
      out.push_back({*kind, &transition_keys_.back(), &g, value, last_verdict_, std::move(new_values)});
    }
  }
  if (out.size() > 1)
    std::sort(out.begin(), out.end(), [](const Transition& a, const Transition& b) { return *a.key < *b.key; });
  return out;
}

double RecentValues::point(int i) const {
  const uint16_t code = points[static_cast<size_t>(i)];
  if (code == kNotANumber) return std::numeric_limits<double>::quiet_NaN();
  return static_cast<double>(lo) + static_cast<double>(step) * code;
}

void RecentValues::add(double value, int stride) {
  partial_sum += static_cast<float>(value);
  if (++partial_n < stride) return;
  const float finished = partial_sum / static_cast<float>(partial_n);
  partial_sum = 0;
  partial_n = 0;
  // Points are kept oldest first; a full ring drops its oldest.
  std::array<double, kPoints> held{};
  int n = 0;
  for (int i = size == kPoints ? 1 : 0; i < size; ++i) held[n++] = point(i);
  if (size == kPoints) std::move(points.begin() + 1, points.end(), points.begin());
  held[n++] = finished;
  double low = std::numeric_limits<double>::infinity(), high = -low;
  for (int i = 0; i < n; ++i)
    if (std::isfinite(held[i])) low = std::min(low, held[i]), high = std::max(high, held[i]);
  if (!(low <= high)) low = high = 0;
  const float new_lo = static_cast<float>(low), new_step = static_cast<float>((high - low) / kSteps);
  // On the same grid the held points keep their codes and only the new one is encoded: every
  // re-encoding can move a point by half a step, so it happens only when the range changes.
  const int from = new_lo == lo && new_step == step ? n - 1 : 0;
  lo = new_lo;
  step = new_step;
  for (int i = from; i < n; ++i) {
    uint16_t code = kNotANumber;
    if (std::isfinite(held[i])) {
      const double steps = step > 0 ? (held[i] - static_cast<double>(lo)) / static_cast<double>(step) : 0;
      code = static_cast<uint16_t>(std::clamp(std::lround(steps), 0L, static_cast<long>(kSteps)));
    }
    points[static_cast<size_t>(i)] = code;
  }
  size = static_cast<uint8_t>(n);
}

std::vector<double> RecentValues::values() const {
  std::vector<double> out;
  out.reserve(size + 1);
  for (int i = 0; i < size; ++i) out.push_back(point(i));
  if (partial_n) out.push_back(partial_sum / static_cast<float>(partial_n));
  return out;
}

std::optional<Transition::Kind> RuleEvaluator::step(Group& g, double value, double now) {
  g.recent.add(value, history_stride_);
  last_verdict_ = g.detector->evaluate_at(value, now - g.first_seen, now);
  if (g.episode) g.episode->value = value, g.episode->verdict = last_verdict_;
  const bool anomalous = last_verdict_.anomalous;
  std::optional<Transition::Kind> result;
  switch (g.state) {
    case GroupState::Normal:
      if (anomalous) {
        g.state = GroupState::Pending;
        ++pending_groups_;
        if (!g.times) g.times = std::make_unique<GroupTimes>();
        g.times->anomalous_since = now;
      }
      break;
    case GroupState::Pending:
      if (!anomalous) g.state = GroupState::Normal, --pending_groups_;
      break;
    case GroupState::Firing:
      if (anomalous) g.times->normal_since = kUnset;
      else if (back_to_normal(g, now)) result = Transition::Kind::Resolve;
      break;
  }
  // `cooldown`: a group that resolved recently stays pending (its values held) until it ends.
  if (g.state == GroupState::Pending && !cooling(g, now) &&
      now - g.times->anomalous_since + kTimeSlack >= spec_.pending) {
    g.state = GroupState::Firing;
    --pending_groups_;
    ++firing_groups_;
    g.times->normal_since = kUnset;
    result = Transition::Kind::Fire;
  }
  // The baseline learns only normal values: a fault must not become the new normal.
  if (g.state == GroupState::Normal) g.detector->learn_at(value, now);
  else g.detector->hold(value, now);
  if (g.state == GroupState::Normal && g.times && !cooling(g, now)) g.times.reset();
  return result;
}

bool RuleEvaluator::cooling(const Group& g, double now) const {
  return spec_.cooldown > 0 && g.times && !std::isnan(g.times->resolved_at) &&
         now - g.times->resolved_at + kTimeSlack < spec_.cooldown;
}

// A firing group's value is back within bounds: resolved once it stayed so for resolve_after.
bool RuleEvaluator::back_to_normal(Group& g, double now) {
  GroupTimes& t = *g.times;
  if (std::isnan(t.normal_since)) t.normal_since = now;
  if (now - t.normal_since + kTimeSlack < spec_.resolve_after) return false;
  g.state = GroupState::Normal;
  --firing_groups_;
  t.normal_since = kUnset;
  t.resolved_at = now;
  return true;
}

// A tick that is not judged (a ratio below its min_volume): nothing is learned; a pending
// group is no longer anomalous, a firing one counts it towards resolve_after.
std::optional<Transition::Kind> RuleEvaluator::quiet(Group& g, double now) {
  std::optional<Transition::Kind> result;
  switch (g.state) {
    case GroupState::Normal: break;
    case GroupState::Pending:
      g.state = GroupState::Normal;
      --pending_groups_;
      break;
    case GroupState::Firing:
      if (back_to_normal(g, now)) result = Transition::Kind::Resolve;
      break;
  }
  if (g.state == GroupState::Normal && g.times && !cooling(g, now)) g.times.reset();
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
  if (all_seen_) return open;
  for (auto it = groups_.begin(); it != groups_.end();) {
    if (now - it->second.last_seen <= kForgetAfter) {
      ++it;
      continue;
    }
    if (it->second.workload) keys_->release(it->second.workload);
    it->second.workload = nullptr;
    if (it->second.state == GroupState::Pending) --pending_groups_;
    if (it->second.state == GroupState::Firing) --firing_groups_;
    if (it->second.episode) open.emplace_back(unpack_key(*it->first), std::move(it->second));
    const std::string* key = it->first;
    it = groups_.erase(it);
    keys_->release(key);
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

void RuleEvaluator::seed(Group& g, const Key& key, double now) {
  auto by_key = restored_by_key_.find(key);
  const Restored* r = nullptr;
  if (by_key != restored_by_key_.end()) {
    r = &by_key->second;
  } else if (g.workload) {
    auto by_workload = restored_by_workload_.find(*g.workload);
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
    GroupSnapshot s{unpack_key(*key), g.workload ? *g.workload : std::string(), g.last_seen - g.first_seen, {}};
    g.detector->save(s.detector);
    out.push_back(std::move(s));
  }
  for (const auto& [key, r] : restored_by_key_)
    if (!groups_.count(std::string_view(key))) out.push_back({unpack_key(key), r.workload, r.age, r.detector});
  return out;
}

size_t RuleEvaluator::adopt(std::vector<GroupSnapshot> groups) {
  size_t adopted = 0;
  for (auto& s : groups) {
    std::optional<Key> key = exact_key(s.key);  // none: `by` changed, only the workload can match
    if (auto it = key ? groups_.find(std::string_view(*key)) : groups_.end(); it != groups_.end()) {
      Group& g = it->second;
      if (g.detector->restore(s.detector)) g.first_seen = g.last_seen - s.age, ++adopted, ++restored_;
      continue;
    }
    Restored r{s.age, std::move(s.detector), s.workload};
    if (!r.workload.empty()) {
      auto [w, inserted] = restored_by_workload_.try_emplace(r.workload, r);
      if (!inserted && w->second.age < r.age) w->second = r;
    }
    if (key) restored_by_key_[std::move(*key)] = std::move(r);
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

std::vector<const Group*> RuleEvaluator::open_groups() const {
  std::vector<const Group*> out;
  for (const auto& [key, g] : groups_)
    if (g.episode) out.push_back(&g);
  return out;
}

const Group* RuleEvaluator::find(const Labels& labels) const {
  std::optional<Key> key = exact_key(labels);
  if (!key) return nullptr;
  auto it = groups_.find(std::string_view(*key));
  return it == groups_.end() ? nullptr : &it->second;
}

}  // namespace vigil::rules
