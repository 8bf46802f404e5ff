#include "rules/runtime/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <lua.hpp>
#include <deque>
#include <mutex>
#include <random>
#include <sstream>

#include "rules/runtime/channel_scan.h"
#include "rules/runtime/first_seen.h"
#include "rules/runtime/lua_api.h"
#include "rules/runtime/lua_detector.h"
#include "rules/runtime/lua_sandbox.h"
#include "rules/runtime/rule_eval.h"
#include "rules/runtime/series_rates.h"
#include "rules/runtime/state_store.h"
#include "rules/runtime/summary.h"

namespace vigil::rules {
namespace {

// Remembering every distinct error would let a rule that embeds a counter in its message grow
// memory without bound; past this many, errors are still counted but no longer logged.
constexpr size_t kMaxLoggedErrors = 32;

struct RuleFile {
  std::unique_ptr<FileContext> ctx;  // Lua closures point at it: it must not move
  std::unique_ptr<LuaSandbox> sandbox;
};

struct LoadedRule {
  RuleSpec spec;
  RuleFile* file = nullptr;
  std::unique_ptr<RuleEvaluator> eval;  // holds a reference to spec: LoadedRule must not move
  RuleStatus status;
  int consecutive_errors = 0;
  std::set<std::string> logged;
  bool gauge = false;  // the metric was last seen as a gauge: values are not per-second
  std::vector<std::string> metrics;  // spec.metrics()
  // max_notifications_per_hour: when the notified firings of the last hour happened, and
  // the firings not notified since the budget was last free (summarised when it frees).
  std::deque<double> notified;
  uint64_t over_budget = 0;
  double over_budget_since = 0;
  // Refused captures are logged at most once a minute per rule; the others are counted here.
  std::optional<std::chrono::steady_clock::time_point> capture_warned;
  uint64_t capture_unlogged = 0;
};

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path + ": cannot read rule file: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return make_error(path + ": cannot read rule file: " + std::strerror(errno));
  return text.str();
}

// True when the message starts with "<source>:<line>:".
bool has_location(const std::string& message) {
  size_t sep = message.find(": ");
  if (sep == std::string::npos) return false;
  size_t colon = message.rfind(':', sep - 1);
  if (colon == std::string::npos || colon + 1 >= sep) return false;
  for (size_t i = colon + 1; i < sep; ++i)
    if (!std::isdigit(static_cast<unsigned char>(message[i]))) return false;
  return true;
}

const char* kind_name(LuaSandbox::CallError::Kind kind) {
  return kind == LuaSandbox::CallError::Kind::Runtime ? "runtime" : "budget";
}

class Engine final : public RuleEngine {
 public:
  Engine(const EngineOptions& options, ActionSink* sink)
      : options_(options), sink_(sink), rng_(std::random_device{}()) {}

  Result<void> load_file(const std::string& path, std::map<std::string, std::string>& defined_at);
  void publish_status();

  void tick(const TickInput& input) override;
  std::vector<RuleStatus> status() const override;
  Result<void> save_state(const std::string& path) const override;
  StateReport restore_state(const std::string& path) override;
  std::string snapshot_state() const override;
  StateReport restore_snapshot(std::string_view bytes, const std::string& origin) override;
  void resolve_open(double now) override {
    for (auto& rule : rules_)
      for (Group* g : rule->eval->open_groups()) resolve(*rule, *g, now);
  }
  std::vector<Anomaly> open_anomalies() const override {
    std::vector<Anomaly> out;
    if (open_episodes_ == 0) return out;  // the usual case: no walk over every group each tick
    for (const auto& rule : rules_) {
      for (const Group* g : rule->eval->open_groups()) {
        const Episode& episode = *g->episode;
        Anomaly a = episode.anomaly;
        a.value = episode.value;
        a.baseline = episode.verdict.baseline;
        a.score = episode.verdict.score;
        a.recent = g->recent.values();
        out.push_back(std::move(a));
      }
    }
    std::sort(out.begin(), out.end(), [](const Anomaly& x, const Anomaly& y) {
      return x.started_at != y.started_at ? x.started_at > y.started_at : x.id < y.id;
    });
    return out;
  }
  const std::set<std::string>& metrics() const override { return metrics_; }

  size_t lua_memory_bytes() const override {
    size_t n = 0;
    for (const auto& file : files_) n += file->sandbox ? file->sandbox->memory_used() : 0;
    return n;
  }

  std::set<std::string> lookback_pods() const override {
    std::set<std::string> out;
    for (const auto& rule : rules_) {
      if (!rule->spec.capture || rule->status.disabled) continue;
      rule->eval->for_each_key([&](const Labels& key) {
        for (auto& pod : scope_pods(key)) out.insert(std::move(pod));
      });
    }
    return out;
  }

  std::set<std::string> pending_pods() const override {
    std::set<std::string> out;
    for (const auto& rule : rules_) {
      if (!(rule->spec.capture || rule->spec.on_anomaly) || rule->status.disabled) continue;
      rule->eval->for_each_pending_key([&](const Labels& key) {
        for (auto& pod : scope_pods(key)) out.insert(std::move(pod));
      });
    }
    return out;
  }

 private:
  uint64_t params_hash(const RuleSpec& spec) const;
  void run_tick(const TickInput& input);
  void fire(LoadedRule& rule, const Transition& t, const TickInput& input);
  void resolve(LoadedRule& rule, Group& group, double now);
  void summarise_budget(LoadedRule& rule, double now);
  void call_handler(LoadedRule& rule, const Handler& handler, const char* name, Episode& episode);
  void record_error(LoadedRule& rule, const std::string& kind, std::string message, const std::string& traceback);
  void start_capture(LoadedRule& rule, Episode& episode);
  void capture_refused(LoadedRule& rule, const std::string& anomaly_id, const std::string& why, uint64_t count = 1);
  std::string new_id();

  EngineOptions options_;
  ActionSink* sink_;
  std::vector<std::unique_ptr<RuleFile>> files_;
  std::vector<std::unique_ptr<LoadedRule>> rules_;
  std::set<std::string> metrics_;
  SeriesRates rates_;
  std::optional<double> last_time_;
  bool warned_time_ = false;
  std::mt19937_64 rng_;
  std::shared_ptr<KeyPool> keys_ = std::make_shared<KeyPool>();  // every rule's group keys, shared

  mutable std::mutex status_mu_;  // status() may be called from another thread (metrics)
  std::vector<RuleStatus> published_;
  size_t open_episodes_ = 0;  // groups with an episode: fire() opens one, resolve() ends it
};

Result<void> Engine::load_file(const std::string& path, std::map<std::string, std::string>& defined_at) {
  auto source = read_file(path);
  if (!source) return source.error();

  if (options_.channels) {
    for (const auto& use : literal_notify_channels(*source))
      if (!options_.channels->count(use.channel))
        return make_error(path + ":" + std::to_string(use.line) + ": " + unknown_channel(use.channel, *options_.channels));
  }

  auto file = std::make_unique<RuleFile>();
  file->sandbox = LuaSandbox::create(path, {options_.memory_limit_bytes, options_.instruction_limit});
  if (!file->sandbox) return make_error(path + ": cannot create a Lua state");
  file->ctx = std::make_unique<FileContext>();
  FileContext& ctx = *file->ctx;
  ctx.path = path;
  ctx.detectors.tick_seconds = options_.tick_seconds;
  ctx.channels = options_.channels;
  ctx.sink = sink_;
  ctx.check_capture_filter = options_.check_capture_filter;
  install_api(*file->sandbox, &ctx);

  if (auto error = file->sandbox->run(*source, path)) {
    std::string message = error->message;
    if (error->kind == LuaSandbox::CallError::Kind::Memory) message = path + ": " + message + " while loading";
    return make_error(message);
  }
  ctx.loading = false;

  if (options_.check_capture_filter)
    for (const auto& spec : ctx.declared)
      if (spec.capture && !spec.capture->filter.empty())
        if (std::string problem = options_.check_capture_filter(spec.capture->filter); !problem.empty())
          return make_error(spec.location + ": rule '" + spec.name + "': field 'capture.filter': '" +
                            spec.capture->filter + "': " + problem);
  for (auto& spec : ctx.declared) {
    auto [it, inserted] = defined_at.try_emplace(spec.name, spec.location);
    if (!inserted) return make_error(spec.location + ": rule '" + spec.name + "' is already defined at " + it->second);
  }
  for (auto& spec : ctx.declared) {
    auto rule = std::make_unique<LoadedRule>();
    rule->spec = std::move(spec);
    rule->file = file.get();
    rule->eval = std::make_unique<RuleEvaluator>(rule->spec, keys_);
    rule->eval->set_tick_seconds(options_.tick_seconds);
    rule->status.rule = rule->spec.name;
    rule->status.file = path;
    rule->status.location = rule->spec.location;
    rule->metrics = rule->spec.metrics();
    rule->status.metrics = rule->metrics;
    for (const auto& metric : rule->metrics) metrics_.insert(metric);
    rules_.push_back(std::move(rule));
  }
  ctx.declared.clear();
  files_.push_back(std::move(file));
  return {};
}

void Engine::tick(const TickInput& input) {
  try {
    run_tick(input);
  } catch (const std::exception& e) {
    spdlog::error("rule engine: tick at {} failed: {}", input.time, e.what());
  }
  try {
    publish_status();
  } catch (const std::exception& e) {
    spdlog::error("rule engine: cannot publish rule status: {}", e.what());
  }
}

void Engine::run_tick(const TickInput& input) {
  const double now = input.time;
  if (last_time_ && now <= *last_time_) {
    if (!warned_time_) spdlog::warn("rule engine: tick time {} is not after {}; tick skipped", now, *last_time_);
    warned_time_ = true;
    return;
  }
  last_time_ = now;
  const bool rates_exist = !rates_.first_tick();
  auto values = rates_.update(input, metrics_);

  const uint64_t pods_sig = RuleEvaluator::pods_signature(input.pods);
  // Each rule sees only the series of its metrics (the agent hands samples over grouped by
  // metric, so this is one lookup per run of a metric).
  std::map<std::string_view, std::vector<SeriesValue>> by_metric;
  {
    std::vector<SeriesValue>* run = nullptr;
    std::string_view run_metric;
    for (const auto& v : values) {
      if (!run || v.sample->metric != run_metric) {
        run_metric = v.sample->metric;
        run = &by_metric[run_metric];
      }
      run->push_back(v);
    }
  }
  const std::vector<SeriesValue> no_values;
  std::vector<SeriesValue> joined;

  std::set<RuleFile*> collect;
  for (auto& rule : rules_) {
    if (rule->status.disabled) continue;
    const std::vector<SeriesValue>* mine = &no_values;
    if (rule->metrics.size() == 1) {
      if (auto it = by_metric.find(rule->metrics.front()); it != by_metric.end()) mine = &it->second;
    } else {
      joined.clear();
      for (const auto& m : rule->metrics)
        if (auto it = by_metric.find(m); it != by_metric.end()) joined.insert(joined.end(), it->second.begin(), it->second.end());
      mine = &joined;
    }
    auto transitions = rule->eval->evaluate(*mine, input.pods, now, rates_exist, pods_sig);
    rule->gauge = rule->eval->gauge();
    // A custom detector's failed init()/update() calls of this tick: one error of the rule.
    if (const auto* lua = dynamic_cast<const LuaDetector*>(rule->spec.detector.get())) {
      const bool ran = lua->ran();
      if (auto failure = lua->take_error()) {
        record_error(*rule, kind_name(failure->error.kind), failure->error.message, failure->error.traceback);
      } else if (ran) {
        rule->consecutive_errors = 0;
      }
    }
    if (uint64_t overflow = rule->eval->take_overflow()) rule->status.errors["first_seen_overflow"] += overflow;
    for (const auto& t : transitions) {
      if (rule->status.disabled) break;
      if (t.kind == Transition::Kind::Fire) fire(*rule, t, input);
      else if (t.group->episode) resolve(*rule, *t.group, now);
    }
    const uint32_t epoch = rule->eval->groups_epoch();
    for (auto& [key, group] : rule->eval->forget_stale(now))
      if (!rule->status.disabled) resolve(*rule, group, now);
    // Forgotten groups gave their custom detectors' state tables back (registry refs released
    // with the groups); a full collection returns that memory now rather than at the next
    // cycle, which could be hours away in a quiet state, and keeps the memory budget honest.
    if (rule->eval->groups_epoch() != epoch && rule->file) collect.insert(rule->file);
    summarise_budget(*rule, now);
    rule->status.groups = rule->eval->size();
    rule->status.pending = rule->eval->pending_groups();
    rule->status.firing = rule->eval->firing_groups();
  }
  for (RuleFile* file : collect)
    if (file->sandbox) file->sandbox->collect_garbage();
}

void Engine::fire(LoadedRule& rule, const Transition& t, const TickInput& input) {
  const RuleSpec& spec = rule.spec;
  const Labels& key = *t.key;
  Group& group = *t.group;
  // A suppressed group, or one past the rule's budget, fires without an episode: no handler
  // runs, nobody is notified, and its resolve is silent too.
  if (rule.eval->suppressed(key)) {
    ++rule.status.suppressed;
    return;
  }
  if (spec.max_notifications_per_hour) {
    const double now = input.time;
    while (!rule.notified.empty() && now - rule.notified.front() >= 3600) rule.notified.pop_front();
    if (rule.notified.size() >= *spec.max_notifications_per_hour) {
      if (rule.over_budget++ == 0) rule.over_budget_since = now;
      ++rule.status.errors["notification_budget"];
      return;
    }
    rule.notified.push_back(now);
  }
  Anomaly a;
  a.id = new_id();
  a.status = AnomalyStatus::Firing;
  a.rule = spec.name;
  a.severity = spec.severity;
  a.started_at = group.times ? group.times->anomalous_since : input.time;  // when it became anomalous, before `pending` held it
  a.node = options_.node;
  a.scope = key;
  const std::string* ns = find_label(key, "namespace");
  const std::string* pod = find_label(key, "pod");
  if (ns && pod) {
    for (const auto& p : input.pods)
      if (p.namespace_ == *ns && p.name == *pod) a.pod_labels = p.labels;
  }
  a.metric = spec.metric;
  for (const auto& m : spec.where) {
    if (m.negate) continue;  // an exclusion names no value of the series
    std::string values;
    for (const auto& v : m.values) values += (values.empty() ? "" : "|") + v;
    if (!find_label(key, m.name)) a.metric_labels.emplace_back(m.name, values);
  }
  for (const auto& label : key) a.metric_labels.push_back(label);
  sort_labels(a.metric_labels);
  if (auto* fs = dynamic_cast<const FirstSeenDetector*>(spec.detector.get()); fs && !t.new_values.empty()) {
    // The new value(s) join the anomaly's labels: a.labels.remote_ip, {remote_ip} in summaries.
    std::string joined;
    for (const auto& v : t.new_values) joined += (joined.empty() ? "" : "|") + v;
    std::erase_if(a.metric_labels, [&](const auto& l) { return l.first == fs->value_label(); });
    a.metric_labels.emplace_back(fs->value_label(), joined);
    sort_labels(a.metric_labels);
  }
  a.value = t.value;
  a.baseline = t.verdict.baseline;
  a.score = t.verdict.score;
  a.band_low = t.verdict.band_low;
  a.band_high = t.verdict.band_high;
  a.detector = spec.detector->name();
  a.detector_params = spec.detector->describe();
  a.recent = group.recent.values();
  a.recent_step = rule.eval->recent_step();
  // A ratio and a count of new values have no unit; counters are per second.
  const bool unitless = rule.gauge || spec.ratio || std::string_view(spec.detector->name()) == "first_seen";
  a.summary = render_summary(spec.summary.value_or(spec.detector->default_summary()), a, unitless ? "" : "/s");

  ++rule.status.anomalies_fired;
  spdlog::debug("rule '{}' firing [{}]: {}", spec.name, a.id, a.summary);
  if (!group.episode) ++open_episodes_;
  group.episode = std::make_unique<Episode>();
  group.episode->value = t.value;
  group.episode->verdict = t.verdict;
  group.episode->pods = scope_pods(key);
  group.episode->anomaly = std::move(a);
  // The capture starts before anyone hears of the anomaly, so every notification links to it.
  if (spec.capture) start_capture(rule, *group.episode);
  if (options_.observer) options_.observer(group.episode->anomaly);
  if (spec.on_anomaly) call_handler(rule, spec.on_anomaly, "on_anomaly", *group.episode);
}

// Once the budget has room again, one log line says what it held back.
void Engine::summarise_budget(LoadedRule& rule, double now) {
  if (rule.over_budget == 0) return;
  while (!rule.notified.empty() && now - rule.notified.front() >= 3600) rule.notified.pop_front();
  if (rule.notified.size() >= *rule.spec.max_notifications_per_hour) return;
  spdlog::warn("rule '{}': {} anomalies were not notified over {} s: max_notifications_per_hour = {} was reached",
               rule.spec.name, rule.over_budget, now - rule.over_budget_since, *rule.spec.max_notifications_per_hour);
  rule.over_budget = 0;
}

void Engine::resolve(LoadedRule& rule, Group& group, double now) {
  Episode& episode = *group.episode;
  Anomaly& a = episode.anomaly;
  a.status = AnomalyStatus::Resolved;
  a.ended_at = now;
  a.value = episode.value;  // the latest judged (the evaluator keeps them while the episode is open)
  a.baseline = episode.verdict.baseline;
  a.score = episode.verdict.score;
  a.recent = group.recent.values();  // what the series did until it came back
  spdlog::debug("rule '{}' resolved [{}]", rule.spec.name, a.id);
  if (options_.observer) options_.observer(a);
  // The engine sends the resolve itself, so a rule cannot forget to and leave an alert open.
  if (sink_) {
    for (const auto& channel : episode.channels) {
      try {
        sink_->notify(channel, a);
      } catch (const std::exception& e) {
        spdlog::error("rule '{}': resolve [{}] to channel '{}' failed: {}", rule.spec.name, a.id, channel, e.what());
      }
    }
  }
  if (rule.spec.on_resolve) call_handler(rule, rule.spec.on_resolve, "on_resolve", episode);
  group.episode.reset();
  --open_episodes_;
}

void Engine::call_handler(LoadedRule& rule, const Handler& handler, const char* name, Episode& episode) {
  FileContext& ctx = *rule.file->ctx;
  LuaSandbox& sandbox = *rule.file->sandbox;
  lua_State* L = sandbox.state();
  {
    LuaSandbox::EngineSection section(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, handler.ref);
    push_anomaly(L, episode.anomaly, episode.pods);
  }
  ctx.handling = &episode;
  ctx.notify_error.clear();
  ctx.capture_calls = 0;
  ctx.capture_refused = 0;
  auto error = sandbox.call(1);
  ctx.handling = nullptr;
  if (ctx.capture_refused > 0) capture_refused(rule, episode.anomaly.id, ctx.capture_refusal, ctx.capture_refused);
  if (!error) {
    rule.consecutive_errors = 0;
    return;
  }
  std::string kind = kind_name(error->kind);
  if (error->kind == LuaSandbox::CallError::Kind::Runtime && !ctx.notify_error.empty() &&
      error->message == ctx.notify_error)
    kind = "notify";
  // Memory errors carry no position: name the handler that ran out.
  std::string message = error->message;
  if (!has_location(message)) message = handler.location + ": " + message + " (in " + name + ")";
  record_error(rule, kind, std::move(message), error->traceback);
}

void Engine::record_error(LoadedRule& rule, const std::string& kind, std::string message, const std::string& traceback) {
  if (!has_location(message)) message = rule.spec.location + ": " + message;
  RuleStatus& st = rule.status;
  ++st.errors[kind];
  st.last_error = message;
  ++rule.consecutive_errors;
  if (rule.logged.size() < kMaxLoggedErrors && rule.logged.insert(message).second) {
    if (traceback.empty()) spdlog::error("rule '{}': {} error: {}", rule.spec.name, kind, message);
    else spdlog::error("rule '{}': {} error: {}\n{}", rule.spec.name, kind, message, traceback);
  }
  if (options_.quarantine_after_errors > 0 && rule.consecutive_errors >= options_.quarantine_after_errors) {
    st.disabled = true;  // never called again, so this is said once
    spdlog::error("rule '{}' ({}) quarantined after {} consecutive errors; last ({}): {}{}{}", rule.spec.name,
                  rule.spec.location, rule.consecutive_errors, kind, message, traceback.empty() ? "" : "\n", traceback);
  }
}

// The rule's `capture` option, for a group that fires: one capture of the group's pod.
void Engine::start_capture(LoadedRule& rule, Episode& episode) {
  CaptureSpec spec = *rule.spec.capture;
  spec.pods = episode.pods;
  spec.rule = rule.spec.name;
  spec.anomaly_id = episode.anomaly.id;
  spec.reason = episode.anomaly.summary;
  if (spec.pods.empty()) {
    capture_refused(rule, spec.anomaly_id, "the group has no pod (its namespace or pod label is empty); nothing captured");
    return;
  }
  Result<std::string> id = make_error("captures are not available here");
  if (sink_) {
    try {
      id = sink_->capture(spec);
    } catch (const std::exception& e) {
      id = make_error(e.what());
    }
  }
  if (id) episode.anomaly.captures.push_back(*id);
  else capture_refused(rule, spec.anomaly_id, id.error().message);
}

// A refused capture is not a failure of the rule: counted, logged at most once a minute per
// rule, never quarantining.
void Engine::capture_refused(LoadedRule& rule, const std::string& anomaly_id, const std::string& why, uint64_t count) {
  rule.status.errors["capture"] += count;
  const auto now = std::chrono::steady_clock::now();
  if (rule.capture_warned && now - *rule.capture_warned < std::chrono::minutes(1)) {
    rule.capture_unlogged += count;
    return;
  }
  rule.capture_unlogged += count - 1;  // one is logged now; the message is the last one's
  if (rule.capture_unlogged > 0)
    spdlog::warn("rule '{}': capture for anomaly [{}] refused: {} ({} more refused since the last warning)",
                 rule.spec.name, anomaly_id, why, rule.capture_unlogged);
  else
    spdlog::warn("rule '{}': capture for anomaly [{}] refused: {}", rule.spec.name, anomaly_id, why);
  rule.capture_warned = now;
  rule.capture_unlogged = 0;
}

std::string Engine::new_id() {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng_()));
  return buf;
}

void Engine::publish_status() {
  std::vector<RuleStatus> snapshot;
  snapshot.reserve(rules_.size());
  for (const auto& rule : rules_) snapshot.push_back(rule->status);
  std::lock_guard lock(status_mu_);
  published_ = std::move(snapshot);
}

std::vector<RuleStatus> Engine::status() const {
  std::lock_guard lock(status_mu_);
  return published_;
}

uint64_t Engine::params_hash(const RuleSpec& spec) const {
  // A group's state is only meaningful to the same detector with the same parameters, over the
  // same grouping, sized in the same ticks.
  std::string identity = std::string(spec.detector->name()) + "\n" + spec.detector->describe() + "\nby=";
  for (const auto& b : spec.by) identity += b + ",";
  identity += "\nmetric=" + spec.metric + "\ntick=" + std::to_string(options_.tick_seconds);
  return fnv1a64(identity);
}

std::string Engine::snapshot_state() const {
  StateSnapshot state;
  state.saved_at = last_time_.value_or(0);
  for (const auto& rule : rules_) state.rules.push_back({rule->spec.name, params_hash(rule->spec), rule->eval->snapshot()});
  return encode_state(state);
}

Result<void> Engine::save_state(const std::string& path) const {
  try {
    return write_file_atomic(path, snapshot_state());
  } catch (const std::exception& e) {
    return make_error(path + ": cannot save rule state: " + e.what());
  }
}

StateReport Engine::restore_state(const std::string& path) {
  StateReport report;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) {
      report.missing = true;
      spdlog::info("rule state {}: none saved yet; rules start with empty baselines", path);
    } else {
      report.error = path + ": cannot read: " + std::strerror(errno);
      spdlog::warn("rule state {}; rules start with empty baselines", report.error);
    }
    return report;
  }
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return restore_snapshot(bytes.str(), path);
}

StateReport Engine::restore_snapshot(std::string_view bytes, const std::string& origin) {
  StateReport report;
  auto state = decode_state(bytes);
  if (!state) {
    report.error = origin + ": " + state.error().message;
    spdlog::warn("rule state {}: ignored; rules start with empty baselines", report.error);
    return report;
  }
  std::map<std::string, LoadedRule*> by_name;
  for (auto& rule : rules_) by_name[rule->spec.name] = rule.get();
  for (auto& saved : state->rules) {
    auto it = by_name.find(saved.name);
    if (it == by_name.end()) {
      report.skipped.push_back("rule '" + saved.name + "': no longer loaded");
      continue;
    }
    if (saved.params_hash != params_hash(it->second->spec)) {
      report.skipped.push_back("rule '" + saved.name + "': detector, parameters, by or tick changed; it learns anew");
      continue;
    }
    report.groups += it->second->eval->adopt(std::move(saved.groups));
    ++report.rules;
    by_name.erase(it);  // a name saved twice is taken once
  }
  spdlog::info("rule state {}: {} groups of {} rules restored", origin, report.groups, report.rules);
  for (const auto& s : report.skipped) spdlog::info("rule state {}: skipped {}", origin, s);
  return report;
}

Result<std::unique_ptr<RuleEngine>> load_all(const std::vector<std::string>& files, const EngineOptions& options,
                                             ActionSink* sink) {
  if (!(options.tick_seconds > 0)) return make_error("rule engine: tick_seconds must be > 0");
  auto engine = std::make_unique<Engine>(options, sink);
  std::map<std::string, std::string> defined_at;  // rule name -> "file:line"
  for (const auto& path : files)
    if (auto r = engine->load_file(path, defined_at); !r) return r.error();
  engine->publish_status();
  return std::unique_ptr<RuleEngine>(std::move(engine));
}

}  // namespace

Result<std::unique_ptr<RuleEngine>> RuleEngine::load(const std::vector<std::string>& files,
                                                     const EngineOptions& options, ActionSink* sink) {
  try {
    return load_all(files, options, sink);
  } catch (const std::exception& e) {
    return make_error(std::string("load rules: ") + e.what());
  }
}

}  // namespace vigil::rules
