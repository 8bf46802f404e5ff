// The rule engine end to end: Lua rule files in temp dirs, ticks of series, a recording sink.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "rules/runtime/engine.h"
#include "rules/runtime/rule_eval.h"
#include "rules_engine_support.h"

using namespace vigil;
using namespace vigil::rules;
namespace fs = std::filesystem;

namespace {

using vigil::rules::testing::RecordingSink;
using vigil::rules::testing::RuleDir;

PodMeta pod(const std::string& name, std::map<std::string, std::string> labels = {}) {
  return PodMeta{"default", name, std::move(labels), "node-a"};
}

Sample drops(const std::string& pod, double value, const std::string& direction = "ingress") {
  return Sample{"vigil_drop_packets_total",
                make_labels({{"namespace", "default"}, {"pod", pod}, {"direction", direction}, {"reason", "NETFILTER_DROP"}}),
                value, SeriesKind::Counter};
}

constexpr double T0 = 1000;

const char* kSurgeRule = R"lua(-- drop surge
rule {
  name = "pod-drop-surge",
  metric = "vigil_drop_packets_total",
  where = { direction = "ingress" },
  detect = baseline.zscore { window = "2m", threshold = 4, min_rate = 1, warmup = "20s" },
  severity = "critical",
  on_anomaly = function(a)
    notify("oncall", a)
  end,
}
)lua";

EngineOptions options() {
  EngineOptions o;
  o.node = "node-a";
  o.channels = std::set<std::string>{"oncall", "default", "slack"};
  o.memory_limit_bytes = 4u << 20;
  o.instruction_limit = 200'000;
  return o;
}

std::unique_ptr<RuleEngine> load_rules(const std::vector<std::string>& files, ActionSink* sink,
                                 EngineOptions o = options()) {
  auto engine = RuleEngine::load(files, o, sink);
  EXPECT_TRUE(engine.ok()) << (engine.ok() ? "" : engine.error().message);
  return engine.ok() ? std::move(*engine) : nullptr;
}

// Ticks from `from` to `to` seconds after T0 with the given pods; `samples(t)` gives each tick's samples.
template <typename F>
void run(RuleEngine& engine, int from, int to, const std::vector<PodMeta>& pods, F samples) {
  for (int t = from; t <= to; ++t) engine.tick(TickInput{T0 + t, samples(t), pods});
}

std::vector<Sample> none(int) { return {}; }

RuleStatus status_of(const RuleEngine& engine, const std::string& rule) {
  for (const auto& s : engine.status())
    if (s.rule == rule) return s;
  ADD_FAILURE() << "no status for " << rule;
  return {};
}

}  // namespace

TEST(RulesEngine, LateSeriesOnSeededPodFiresOnceAndResolvesOnce) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load_rules({dir.write("surge.lua", kSurgeRule)}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("web-1", {{"app", "web"}}), pod("web-2")};

  // The pods are known for 30 s before the first drop; the drop series appears with it.
  run(*engine, 0, 29, pods, none);
  run(*engine, 30, 34, pods, [](int t) {
    return std::vector<Sample>{drops("web-1", 120 + 100.0 * (t - 30)), drops("web-2", 5000 * (t - 29), "egress")};
  });
  ASSERT_EQ(sink.sent.size(), 1u);
  const Anomaly a = sink.sent[0].anomaly;  // a copy: sink.sent grows
  EXPECT_EQ(sink.sent[0].channel, "oncall");
  EXPECT_EQ(a.status, AnomalyStatus::Firing);
  EXPECT_EQ(a.id.size(), 16u);
  EXPECT_EQ(a.rule, "pod-drop-surge");
  EXPECT_EQ(a.severity, "critical");
  EXPECT_EQ(a.node, "node-a");
  EXPECT_EQ(a.scope, make_labels({{"namespace", "default"}, {"pod", "web-1"}}));
  EXPECT_EQ(a.pod_labels, (std::map<std::string, std::string>{{"app", "web"}}));
  EXPECT_EQ(a.metric_labels, make_labels({{"direction", "ingress"}, {"namespace", "default"}, {"pod", "web-1"}}));
  EXPECT_DOUBLE_EQ(a.value, 120);  // the series was 0 at the tick before it appeared
  EXPECT_DOUBLE_EQ(a.baseline, 0);
  EXPECT_DOUBLE_EQ(a.score, 120);  // flat zero baseline: stddev floor of 1
  EXPECT_DOUBLE_EQ(a.started_at, T0 + 30);
  EXPECT_EQ(a.detector, "baseline.zscore");
  EXPECT_EQ(a.summary, "vigil_drop_packets_total for default/web-1 is 120/s, expected 0/s (z=120)");

  // Back to no drops at t=35: resolved after resolve_after (10 s), once.
  run(*engine, 35, 44, pods, [](int) { return std::vector<Sample>{drops("web-1", 520)}; });
  EXPECT_EQ(sink.sent.size(), 1u);
  run(*engine, 45, 60, pods, [](int) { return std::vector<Sample>{drops("web-1", 520)}; });
  ASSERT_EQ(sink.sent.size(), 2u);
  const Anomaly& r = sink.sent[1].anomaly;
  EXPECT_EQ(sink.sent[1].channel, "oncall");
  EXPECT_EQ(r.status, AnomalyStatus::Resolved);
  EXPECT_EQ(r.id, a.id);
  EXPECT_DOUBLE_EQ(r.ended_at, T0 + 45);
  EXPECT_DOUBLE_EQ(r.value, 0);

  auto st = status_of(*engine, "pod-drop-surge");
  EXPECT_EQ(st.anomalies_fired, 1u);
  EXPECT_EQ(st.groups, 2u);
  EXPECT_TRUE(st.errors.empty());
  EXPECT_FALSE(st.disabled);
}

TEST(RulesEngine, GroupsWarmUpFromWhenTheyAreFirstSeen) {
  RuleDir dir;
  RecordingSink sink;
  // Grouped by reason too: no pod seeding, so the group is born with its first drop.
  std::string unseeded = kSurgeRule;
  unseeded.replace(unseeded.find("pod-drop-surge"), 14, "by-reason");
  unseeded.replace(unseeded.find("where ="), 0, "by = { \"namespace\", \"pod\", \"reason\" },\n  ");
  auto engine = load_rules({dir.write("surge.lua", kSurgeRule), dir.write("unseeded.lua", unseeded)}, &sink);
  ASSERT_TRUE(engine);

  std::vector<PodMeta> pods{pod("old")};
  run(*engine, 0, 29, pods, none);
  pods.push_back(pod("young"));  // appears at t=30, drops at t=40: 10 s old, warmup is 20 s
  run(*engine, 30, 39, pods, none);
  run(*engine, 40, 40, pods, [](int) { return std::vector<Sample>{drops("old", 100), drops("young", 100)}; });
  ASSERT_EQ(sink.sent.size(), 1u);
  EXPECT_EQ(sink.sent[0].anomaly.rule, "pod-drop-surge");
  EXPECT_EQ(*find_label(sink.sent[0].anomaly.scope, "pod"), "old");
  EXPECT_EQ(status_of(*engine, "by-reason").anomalies_fired, 0u);
  EXPECT_EQ(status_of(*engine, "by-reason").groups, 2u);
}

// A group for every known pod costs memory in every rule (most of the engine's); it is made only
// where a quiet pod matters: a detector that learns from it, a threshold a 0 can cross, a rule
// with a capture option (its groups are the pods that keep a lookback ring).
TEST(RulesEngine, OnlyRulesThatAQuietPodConcernsHaveAGroupForEveryPod) {
  RuleDir dir;
  RecordingSink sink;
  const auto rule = [](const std::string& name, const std::string& detect, const std::string& extra = "") {
    return "rule { name = \"" + name + "\", metric = \"vigil_drop_packets_total\", detect = " + detect + ", " + extra +
           " }\n";
  };
  const std::string text = rule("learns", "baseline.ewma { half_life = \"5m\" }") +
                           rule("first-seen", "first_seen { label = \"reason\", learn = \"1h\" }") +
                           rule("above", "threshold { above = 0 }") + rule("below", "threshold { below = 1 }") +
                           rule("negative", "threshold { above = -1 }") +
                           rule("captures", "threshold { above = 0 }", "capture = {},");
  auto engine = load_rules({dir.write("r.lua", text)}, &sink);
  ASSERT_TRUE(engine);
  const std::vector<PodMeta> pods{pod("a"), pod("b"), pod("c")};
  engine->tick({T0, {drops("a", 1)}, pods});
  for (const char* seeded : {"learns", "first-seen", "below", "negative", "captures"})
    EXPECT_EQ(status_of(*engine, seeded).groups, 3u) << seeded;
  EXPECT_EQ(status_of(*engine, "above").groups, 1u) << "only pod a has a series";
  // The threshold still judges every pod that has one.
  engine->tick({T0 + 1, {drops("a", 1), drops("b", 5)}, pods});
  engine->tick({T0 + 2, {drops("a", 1), drops("b", 20)}, pods});
  EXPECT_EQ(status_of(*engine, "above").groups, 2u);
  EXPECT_EQ(status_of(*engine, "above").anomalies_fired, 1u);
}

TEST(RulesEngine, PendingHoldsBeforeFiring) {
  RuleDir dir;
  RecordingSink sink;
  std::string rule = kSurgeRule;
  rule.replace(rule.find("severity"), 0, "pending = \"3s\",\n  ");
  auto engine = load_rules({dir.write("pending.lua", rule)}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("web-1")};
  double total = 0;
  auto drop_rate = [&](double rate) { return [&total, rate](int) { total += rate; return std::vector<Sample>{drops("web-1", total)}; }; };

  run(*engine, 0, 29, pods, none);
  run(*engine, 30, 32, pods, drop_rate(100));  // anomalous for 2 s only
  run(*engine, 33, 59, pods, drop_rate(0));
  EXPECT_TRUE(sink.sent.empty());
  run(*engine, 60, 62, pods, drop_rate(100));
  EXPECT_TRUE(sink.sent.empty());
  run(*engine, 63, 63, pods, drop_rate(100));
  ASSERT_EQ(sink.sent.size(), 1u);
  EXPECT_DOUBLE_EQ(sink.sent[0].anomaly.started_at, T0 + 60);
}

TEST(RulesEngine, BaselineDoesNotLearnTheFault) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load_rules({dir.write("surge.lua", kSurgeRule)}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("web-1")};
  run(*engine, 0, 29, pods, none);
  // 300 s of the fault, longer than the 2 m window: were it learned, it would resolve.
  run(*engine, 30, 330, pods, [](int t) { return std::vector<Sample>{drops("web-1", 50.0 * (t - 29))}; });
  EXPECT_EQ(sink.with(AnomalyStatus::Firing).size(), 1u);
  EXPECT_EQ(sink.with(AnomalyStatus::Resolved).size(), 0u);
  run(*engine, 331, 350, pods, [](int) { return std::vector<Sample>{drops("web-1", 50.0 * 301)}; });
  EXPECT_EQ(sink.with(AnomalyStatus::Resolved).size(), 1u);
}

TEST(RulesEngine, ResolveGoesToTheNotifiedChannelsOnly) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load_rules({dir.write("channels.lua", R"lua(
rule {
  name = "channels",
  metric = "vigil_drop_packets_total",
  detect = threshold { above = 10 },
  resolve_after = 0,
  on_anomaly = function(a)
    notify("oncall", a)
    notify("oncall", a)  -- once per channel per episode
    notify("default", a)
  end,
  on_resolve = function(a)
    notify("slack", a)
  end,
}
)lua")}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("web-1")};
  run(*engine, 0, 0, pods, [](int) { return std::vector<Sample>{drops("web-1", 0)}; });
  run(*engine, 1, 1, pods, [](int) { return std::vector<Sample>{drops("web-1", 100)}; });
  run(*engine, 2, 2, pods, [](int) { return std::vector<Sample>{drops("web-1", 100)}; });
  ASSERT_EQ(sink.sent.size(), 5u);
  std::vector<std::string> firing, resolved;
  for (const auto& s : sink.sent) {
    EXPECT_EQ(s.anomaly.id, sink.sent[0].anomaly.id);
    (s.anomaly.status == AnomalyStatus::Firing ? firing : resolved).push_back(s.channel);
  }
  EXPECT_EQ(firing, (std::vector<std::string>{"oncall", "default"}));
  EXPECT_EQ(resolved, (std::vector<std::string>{"oncall", "default", "slack"}));
  EXPECT_TRUE(status_of(*engine, "channels").errors.empty());
}

TEST(RulesEngine, LuaViewOfTheAnomalyAndSummaries) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load_rules({dir.write("view.lua", R"lua(
rule {
  name = "view",
  metric = "vigil_drop_packets_total",
  where = { direction = { "ingress", "egress" } },
  detect = baseline.zscore { window = "2m", threshold = 4, min_rate = 1, warmup = "20s" },
  summary = "{namespace}/{pod}: {value}{unit} vs {baseline}{unit} z={score} on {node} [{rule}] {nope}",
  on_anomaly = function(a)
    assert(#a.id == 16, "id")
    assert(a.rule == "view" and a.severity == "warning" and a.status == "firing", "names")
    assert(a.metric == "vigil_drop_packets_total" and a.detector == "baseline.zscore", "metric")
    assert(a.value == 120 and a.baseline == 0 and a.score == 120, "numbers")
    assert(a.scope.namespace == "default" and a.scope.pod == "web-1", "scope")
    assert(a.scope.labels.app == "web", "pod labels")
    assert(a.labels.direction == "ingress|egress" and a.labels.pod == "web-1", "labels")
    assert(a.started_at == 1030 and a.ended_at == nil and a.node == "node-a", "times")
    assert(a.recent_step == 10 and #a.recent >= 2 and a.recent[1] == 0 and a.recent[#a.recent] > 0, "recent")
    assert(a.summary == "default/web-1: 120/s vs 0/s z=120 on node-a [view] {nope}", a.summary)
    a.summary = "custom " .. a.scope.pod
    notify("oncall", a)
  end,
  on_resolve = function(a)
    assert(a.status == "resolved" and a.ended_at == 1041 and a.value == 0, "resolved")
  end,
}
)lua")}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("web-1", {{"app", "web"}})};
  run(*engine, 0, 29, pods, none);
  run(*engine, 30, 50, pods, [](int) { return std::vector<Sample>{drops("web-1", 120)}; });
  auto st = status_of(*engine, "view");
  EXPECT_TRUE(st.errors.empty()) << st.last_error;
  ASSERT_EQ(sink.sent.size(), 2u);
  EXPECT_EQ(sink.sent[0].anomaly.summary, "custom web-1");
  EXPECT_EQ(sink.sent[1].anomaly.summary, "custom web-1");
}

TEST(RulesEngine, GaugeThresholdFiresFromTheFirstTick) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load_rules({dir.write("gauge.lua", R"lua(
rule {
  name = "queue",
  metric = "vigil_queue_depth",
  detect = threshold { above = 10 },
  resolve_after = "0s",
  on_anomaly = function(a) notify("default", a) end,
}
)lua")}, &sink);
  ASSERT_TRUE(engine);
  auto depth = [](double v) {
    return std::vector<Sample>{{"vigil_queue_depth", make_labels({{"namespace", "default"}, {"pod", "q"}}), v, SeriesKind::Gauge}};
  };
  engine->tick(TickInput{T0, depth(50), {pod("q"), pod("idle")}});
  ASSERT_EQ(sink.sent.size(), 1u);
  EXPECT_EQ(sink.sent[0].anomaly.summary, "vigil_queue_depth for default/q is 50, past the threshold 10");
  engine->tick(TickInput{T0 + 1, depth(5), {pod("q"), pod("idle")}});
  ASSERT_EQ(sink.sent.size(), 2u);
  EXPECT_EQ(sink.sent[1].anomaly.status, AnomalyStatus::Resolved);
}

// The recent values are 16-bit steps over the range the ring shows: each point within 1/4,000
// of that range of the mean it summarises (re-encoded as the range moves), the ring the last 30
// points, oldest first, a point that is not a number kept as NaN.
TEST(RulesRecentValues, PointsWithinAStepOfTheRangeTheyShow) {
  vigil::rules::RecentValues r;
  std::vector<double> means;
  for (int i = 0; i < 100; ++i) {
    const double v = 1e6 + 1e5 * std::sin(i * 0.7) + 0.125 * i;
    r.add(v, 1);
    means.push_back(static_cast<float>(v));  // a point is the mean of its ticks, as a float
  }
  auto got = r.values();
  ASSERT_EQ(got.size(), 30u);
  const double lo = *std::min_element(means.end() - 30, means.end());
  const double hi = *std::max_element(means.end() - 30, means.end());
  double worst = 0;
  for (size_t i = 0; i < 30; ++i) worst = std::max(worst, std::fabs(got[i] - means[70 + i]) / (hi - lo));
  EXPECT_LT(worst, 1.0 / 4000) << "in units of the range shown";
  EXPECT_GT(worst, 0) << "the points are 16-bit steps, not floats";
  std::printf("recent values: worst error %.3g of the range shown (a step is %.3g)\n", worst, 1.0 / 65534);
  EXPECT_EQ(sizeof(vigil::rules::RecentValues), 76u);

  vigil::rules::RecentValues gaps;
  gaps.add(2, 1);
  gaps.add(NAN, 1);
  gaps.add(-3, 2);  // the point being filled
  auto back = gaps.values();
  ASSERT_EQ(back.size(), 3u);
  EXPECT_DOUBLE_EQ(back[0], 2);
  EXPECT_TRUE(std::isnan(back[1]));
  EXPECT_DOUBLE_EQ(back[2], -3);
  gaps.add(-5, 2);  // the ring's range is now -4 .. 2: both ends exact
  back = gaps.values();
  ASSERT_EQ(back.size(), 3u);
  EXPECT_NEAR(back[0], 2, 1e-6);
  EXPECT_NEAR(back[2], -4, 1e-6);
}

// The anomaly carries what led up to it: at a 1 s tick, points of 10 s means covering 5 minutes,
// the judged value last; the resolve carries the series until it came back.
TEST(RulesEngine, AnomaliesCarryTheRecentValues) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load_rules({dir.write("gauge.lua", R"lua(
rule {
  name = "queue", metric = "vigil_queue_depth", by = {},
  detect = threshold { above = 100 }, resolve_after = "0s",
  on_anomaly = function(a) notify("default", a) end,
}
)lua")}, &sink);
  ASSERT_TRUE(engine);
  auto depth = [](double v) {
    return std::vector<Sample>{{"vigil_queue_depth", make_labels({{"pod", "q"}}), v, SeriesKind::Gauge}};
  };
  int t = 0;
  for (; t < 400; ++t) engine->tick(TickInput{T0 + t, depth(t % 10), {}});  // 0..9, mean 4.5
  engine->tick(TickInput{T0 + t++, depth(500), {}});
  ASSERT_EQ(sink.sent.size(), 1u);
  const Anomaly& a = sink.sent[0].anomaly;
  EXPECT_EQ(a.recent_step, 10);
  ASSERT_EQ(a.recent.size(), 31u) << "30 finished points and the one being filled";
  for (size_t i = 0; i + 1 < a.recent.size(); ++i) EXPECT_DOUBLE_EQ(a.recent[i], 4.5) << i;
  EXPECT_DOUBLE_EQ(a.recent.back(), 500);
  engine->tick(TickInput{T0 + t++, depth(1), {}});
  ASSERT_EQ(sink.sent.size(), 2u);
  EXPECT_DOUBLE_EQ(sink.sent[1].anomaly.recent.back(), 250.5) << "the point being filled: 500 and 1";
}

TEST(RulesEngine, RuntimeErrorsQuarantineTheRuleOthersKeepFiring) {
  RuleDir dir;
  RecordingSink sink;
  std::string broken = dir.write("broken.lua", R"lua(rule {
  name = "broken", metric = "vigil_drop_packets_total",
  detect = baseline.zscore { window = "2m", threshold = 4, min_rate = 1, warmup = "20s" },
  on_anomaly = function(a)
    error("boom")
  end,
}
)lua");
  std::string healthy = dir.write("healthy.lua", R"lua(rule {
  name = "healthy", metric = "vigil_drop_packets_total",
  detect = baseline.zscore { window = "2m", threshold = 4, min_rate = 1, warmup = "20s" },
  on_anomaly = function(a) notify("default", a) end,
}
)lua");
  auto engine = load_rules({broken, healthy}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("a"), pod("b"), pod("c")};
  run(*engine, 0, 29, pods, none);
  auto all_drop = [](double v) { return [v](int) { return std::vector<Sample>{drops("a", v), drops("b", v), drops("c", v)}; }; };
  run(*engine, 30, 30, pods, all_drop(100));

  auto st = status_of(*engine, "broken");
  EXPECT_EQ(st.errors["runtime"], 3u);
  EXPECT_TRUE(st.disabled);
  EXPECT_EQ(st.last_error, broken + ":5: boom");
  EXPECT_EQ(sink.with(AnomalyStatus::Firing).size(), 3u);

  // Resolved, then a new surge: the healthy rule fires again, the quarantined one stays quiet.
  run(*engine, 31, 60, pods, all_drop(100));
  run(*engine, 61, 61, pods, all_drop(300));
  EXPECT_EQ(sink.with(AnomalyStatus::Resolved).size(), 3u);
  EXPECT_EQ(sink.with(AnomalyStatus::Firing).size(), 6u);
  EXPECT_EQ(status_of(*engine, "broken").errors["runtime"], 3u);
  EXPECT_EQ(status_of(*engine, "healthy").anomalies_fired, 6u);
  EXPECT_TRUE(status_of(*engine, "healthy").errors.empty());
}

// Lua cuts source names over 60 characters to "...tail"; every error still names the whole
// path (CI clones into a deeper directory than a developer's checkout).
TEST(RulesEngine, ErrorsNameTheFullPathOfADeepRuleFile) {
  RuleDir dir;
  const std::string deep = "a-directory-name-long-enough/to-push-the-path-past/sixty-characters";
  std::string broken = dir.write(deep + "/broken_rule_with_a_long_name.lua", R"lua(rule {
  name = "broken", metric = "vigil_drop_packets_total",
  detect = baseline.zscore { window = "2m", threshold = 4, min_rate = 1, warmup = "20s" },
  on_anomaly = function(a)
    error("boom")
  end,
}
)lua");
  ASSERT_GT(broken.size(), 100u);
  RecordingSink sink;
  auto engine = load_rules({broken}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("a")};
  run(*engine, 0, 29, pods, none);
  run(*engine, 30, 30, pods, [](int) { return std::vector<Sample>{drops("a", 100)}; });
  EXPECT_EQ(status_of(*engine, "broken").last_error, broken + ":5: boom");

  std::string syntax = dir.write(deep + "/syntax_error_in_a_rule_file_with_a_long_name.lua", "rule {\n  name = = 1\n}\n");
  auto refused = RuleEngine::load({syntax}, options(), &sink);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find(syntax + ":2:"), std::string::npos) << refused.error().message;
}

TEST(RulesEngine, ASuccessfulCallResetsTheErrorStreak) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load_rules({dir.write("flaky.lua", R"lua(
local calls = 0
rule {
  name = "flaky", metric = "vigil_drop_packets_total",
  detect = threshold { above = 10 },
  on_anomaly = function(a)
    calls = calls + 1
    if calls % 2 == 1 then error("odd call") end
  end,
}
)lua")}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods;
  for (const char* p : {"a", "b", "c", "d", "e", "f"}) pods.push_back(pod(p));
  run(*engine, 0, 1, pods, [&](int t) {
    std::vector<Sample> s;
    for (const auto& p : pods) s.push_back(drops(p.name, 100.0 * t));
    return s;
  });
  auto st = status_of(*engine, "flaky");
  EXPECT_EQ(st.errors["runtime"], 3u);
  EXPECT_FALSE(st.disabled);
}

TEST(RulesEngine, NotifyErrorsAndBudgetsAtRuntime) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load_rules({dir.write("runtime.lua", R"lua(
rule {
  name = "runtime", metric = "vigil_drop_packets_total",
  detect = threshold { above = 10 },
  on_anomaly = function(a)
    local pod = a.scope.pod
    if pod == "typo" then notify("pag" .. "er", a) end
    if pod == "loop" then while true do end end
    if pod == "pcall" then
      for i = 1, 3 do pcall(function() while true do end end) end
    end
    if pod == "bomb" then local s = string.rep("x", 1 << 30) end
    if pod == "caught" then assert(not pcall(string.rep, "x", 1 << 30)) end
    notify("default", a)
  end,
}
)lua")}, &sink, [] {
    auto o = options();
    o.quarantine_after_errors = 10;
    return o;
  }());
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods;
  for (const char* p : {"typo", "loop", "pcall", "bomb", "caught", "fine"}) pods.push_back(pod(p));
  run(*engine, 0, 1, pods, [&](int t) {
    std::vector<Sample> s;
    for (const auto& p : pods) s.push_back(drops(p.name, 100.0 * t));
    return s;
  });
  auto st = status_of(*engine, "runtime");
  EXPECT_EQ(st.errors["notify"], 1u);
  EXPECT_EQ(st.errors["budget"], 3u);  // loop, pcall'd loop, memory bomb
  EXPECT_EQ(st.errors.count("runtime"), 0u);
  ASSERT_EQ(sink.sent.size(), 2u);  // "caught" and "fine"
  EXPECT_EQ(*find_label(sink.sent[0].anomaly.scope, "pod"), "caught");
  EXPECT_EQ(*find_label(sink.sent[1].anomaly.scope, "pod"), "fine");
  EXPECT_FALSE(st.disabled);
}

TEST(RulesEngine, ForgetsGroupsAndResolvesTheirOpenEpisodes) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load_rules({dir.write("surge.lua", kSurgeRule)}, &sink);
  ASSERT_TRUE(engine);
  run(*engine, 0, 29, {pod("gone")}, none);
  run(*engine, 30, 30, {pod("gone")}, [](int) { return std::vector<Sample>{drops("gone", 500)}; });
  ASSERT_EQ(sink.sent.size(), 1u);
  run(*engine, 31, 330, {}, none);  // the pod and its series are gone
  EXPECT_EQ(sink.sent.size(), 1u);
  run(*engine, 331, 331, {}, none);
  ASSERT_EQ(sink.sent.size(), 2u);
  EXPECT_EQ(sink.sent[1].anomaly.status, AnomalyStatus::Resolved);
  EXPECT_EQ(status_of(*engine, "pod-drop-surge").groups, 0u);
}

TEST(RulesEngine, OddInputNeverThrows) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load_rules({dir.write("surge.lua", kSurgeRule)}, nullptr);
  ASSERT_TRUE(engine);
  engine->tick(TickInput{T0, {drops("a", 1)}, {pod("a")}});
  engine->tick(TickInput{T0 - 5, {drops("a", 1)}, {pod("a")}});  // time going backwards: skipped
  engine->tick(TickInput{T0 + 1, {drops("a", std::nan(""))}, {pod("a")}});
  engine->tick(TickInput{T0 + 2, {drops("a", 1e308), drops("a", -5)}, {}});
  SUCCEED();
}

TEST(RulesEngine, MemoryErrorNamesTheHandler) {
  RuleDir dir;
  std::string path = dir.write("bomb.lua", R"lua(rule {
  name = "bomb", metric = "vigil_drop_packets_total",
  detect = threshold { above = 10 },
  on_anomaly = function(a)
    local s = string.rep("x", 1 << 30)
  end,
}
)lua");
  auto engine = load_rules({path}, nullptr);
  ASSERT_TRUE(engine);
  run(*engine, 0, 1, {pod("a")}, [](int t) { return std::vector<Sample>{drops("a", 100.0 * t)}; });
  auto st = status_of(*engine, "bomb");
  EXPECT_EQ(st.errors["budget"], 1u);
  EXPECT_EQ(st.last_error, path + ":4: memory limit exceeded (4096 KiB per rule file) (in on_anomaly)");
}

TEST(RulesEngine, WhereOnNamespaceLimitsSeededPods) {
  RuleDir dir;
  auto engine = load_rules({dir.write("prod.lua", R"lua(
rule {
  name = "prod-only", metric = "vigil_drop_packets_total",
  where = { namespace = "prod", direction = "ingress" },
  detect = baseline.zscore { window = "1m", threshold = 4 },
}
)lua")}, nullptr);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("a"), pod("b"), PodMeta{"prod", "c", {}, "node-a"}};
  run(*engine, 0, 2, pods, none);
  EXPECT_EQ(status_of(*engine, "prod-only").groups, 1u);
}

TEST(RulesEngine, WhereExceptExcludesLabelValues) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load_rules({dir.write("except.lua", R"lua(
rule {
  name = "real-drops", metric = "vigil_drop_packets_total",
  where = { reason = { except = { "QUEUE_PURGE", "TCP_OLD_DATA" } } },
  detect = threshold { above = 5 },
  on_anomaly = function(a) notify("oncall", a) end,
}
)lua")}, &sink);
  ASSERT_TRUE(engine);
  auto with_reason = [](const std::string& reason, double v) {
    return Sample{"vigil_drop_packets_total",
                  make_labels({{"namespace", "default"}, {"pod", "a"}, {"direction", "ingress"}, {"reason", reason}}), v,
                  SeriesKind::Counter};
  };
  // 100/s of excluded reasons never fire; 10/s of NETFILTER_DROP does.
  run(*engine, 0, 5, {pod("a")}, [&](int t) {
    return std::vector<Sample>{with_reason("QUEUE_PURGE", 100.0 * t), with_reason("TCP_OLD_DATA", 100.0 * t)};
  });
  EXPECT_TRUE(sink.sent.empty());
  run(*engine, 6, 8, {pod("a")}, [&](int t) {
    return std::vector<Sample>{with_reason("QUEUE_PURGE", 100.0 * t), with_reason("TCP_OLD_DATA", 100.0 * t),
                               with_reason("NETFILTER_DROP", 10.0 * (t - 5))};
  });
  ASSERT_EQ(sink.with(AnomalyStatus::Firing).size(), 1u);
  EXPECT_DOUBLE_EQ(sink.sent[0].anomaly.value, 10.0);
  // An exclusion names no value, so it is not among the anomaly's metric labels.
  EXPECT_EQ(find_label(sink.sent[0].anomaly.metric_labels, "reason"), nullptr);
}

TEST(RulesEngine, WhereExceptMustListStrings) {
  RuleDir dir;
  auto engine = RuleEngine::load({dir.write("bad.lua", R"lua(
rule {
  name = "bad", metric = "m_total",
  where = { reason = { except = { 1 } } },
  detect = threshold { above = 5 },
}
)lua")}, options(), nullptr);
  ASSERT_FALSE(engine.ok());
  EXPECT_NE(engine.error().message.find("bad.lua:2:"), std::string::npos) << engine.error().message;
  EXPECT_NE(engine.error().message.find("label 'reason' must be a string, a list of strings or { except = ... }"),
            std::string::npos)
      << engine.error().message;
}
