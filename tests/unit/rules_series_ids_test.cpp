// SeriesRates' series ids (remembered by position, checked by hash) and the rule evaluator's
// per-series group cache built on them: reordered, vanished and reused series keep correct
// rates and groups.
#include "rules/runtime/detectors.h"
#include "rules/runtime/rule_eval.h"
#include "rules/runtime/rule_spec.h"
#include "rules/runtime/series_rates.h"
#include "rules_engine_support.h"

using namespace vigil;
using namespace vigil::rules;
using namespace vigil::rules::testing;

namespace {

Sample drops(const std::string& pod, double v) {
  return Sample{"drops", make_labels({{"namespace", "ns"}, {"pod", pod}}), v, SeriesKind::Counter};
}

const SeriesValue& value_for(const std::vector<SeriesValue>& values, const std::string& pod) {
  for (const auto& v : values)
    if (*find_label(v.sample->labels, "pod") == pod) return v;
  ADD_FAILURE() << "no value for " << pod;
  return values.front();
}

}  // namespace

TEST(RulesSeriesIds, ReorderedSeriesKeepTheirRatesAndIds) {
  SeriesRates rates;
  const std::set<std::string> metrics{"drops"};
  TickInput t1{10, {drops("a", 100), drops("b", 1000), drops("c", 0)}, {}};
  auto v1 = rates.update(t1, metrics);
  TickInput t2{11, {drops("c", 5), drops("a", 110), drops("b", 1500)}, {}};
  auto v2 = rates.update(t2, metrics);
  EXPECT_EQ(*value_for(v2, "a").value, 10);
  EXPECT_EQ(*value_for(v2, "b").value, 500);
  EXPECT_EQ(*value_for(v2, "c").value, 5);
  for (const char* pod : {"a", "b", "c"}) {
    EXPECT_EQ(value_for(v1, pod).id, value_for(v2, pod).id) << pod;
    EXPECT_EQ(value_for(v1, pod).gen, value_for(v2, pod).gen) << pod;
  }
  // Back in the first order, one series gone: still right.
  TickInput t3{12, {drops("a", 111), drops("c", 9)}, {}};
  auto v3 = rates.update(t3, metrics);
  EXPECT_EQ(*value_for(v3, "a").value, 1);
  EXPECT_EQ(*value_for(v3, "c").value, 4);
  EXPECT_EQ(rates.tracked(), 3u);
}

TEST(RulesSeriesIds, AForgottenSeriesIdIsReusedWithANewGeneration) {
  SeriesRates rates;
  const std::set<std::string> metrics{"drops"};
  const TickInput t1{0, {drops("a", 1), drops("b", 1)}, {}};  // values point into their input
  auto v1 = rates.update(t1, metrics);
  const uint32_t b_id = value_for(v1, "b").id;
  // b is not seen for longer than kForgetAfter (and a sweep): forgotten.
  const double later = SeriesRates::kForgetAfter + SeriesRates::kSweepEvery + 1;
  for (double t = 1; t <= later; t += 1) (void)rates.update(TickInput{t, {drops("a", 1 + t)}, {}}, metrics);
  EXPECT_EQ(rates.tracked(), 1u);
  // A new series takes b's place (and position): a new generation, and a rate as a new series.
  const TickInput t2{later + 1, {drops("a", later + 2), drops("z", 7)}, {}};
  auto v2 = rates.update(t2, metrics);
  const SeriesValue& z = value_for(v2, "z");
  EXPECT_EQ(z.id, b_id);
  EXPECT_NE(z.gen, value_for(v1, "b").gen);
  EXPECT_EQ(*z.value, 7);  // 0 at the previous tick
  // b comes back: new again, from zero.
  const TickInput t3{later + 2, {drops("a", later + 3), drops("z", 8), drops("b", 50)}, {}};
  auto v3 = rates.update(t3, metrics);
  EXPECT_EQ(*value_for(v3, "b").value, 50);
  EXPECT_EQ(*value_for(v3, "z").value, 1);
}

TEST(RulesSeriesIds, EngineGroupsFollowSeriesThatMoveAndGroupsThatAreForgotten) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load({dir.write("q.lua", R"lua(
rule {
  name = "burst",
  metric = "vigil_burst_total",
  by = { "namespace", "pod", "direction" },
  detect = threshold { above = 100 },
  resolve_after = "0s",
  on_anomaly = function(a) notify("default", a) end,
}
)lua")}, &sink);
  ASSERT_TRUE(engine);
  auto s = [](const std::string& pod, const std::string& direction, double v) {
    return counter("vigil_burst_total", pod, v, {{"direction", direction}});
  };
  engine->tick({T0, {s("a", "in", 0), s("a", "out", 0), s("b", "in", 0)}, {}});
  engine->tick({T0 + 1, {s("b", "in", 10), s("a", "out", 10), s("a", "in", 10)}, {}});
  EXPECT_TRUE(sink.sent.empty());
  // Reordered again; only a/out bursts.
  engine->tick({T0 + 2, {s("a", "out", 500), s("b", "in", 20), s("a", "in", 20)}, {}});
  ASSERT_EQ(sink.sent.size(), 1u);
  EXPECT_EQ(sink.sent[0].anomaly.scope, make_labels({{"namespace", "default"}, {"pod", "a"}, {"direction", "out"}}));
  // a/out vanishes and its group is forgotten (resolved); it comes back later as a new group.
  for (int t = 3; t <= 320; ++t) engine->tick({T0 + t, {s("b", "in", 20), s("a", "in", 20)}, {}});
  ASSERT_EQ(sink.sent.size(), 2u);
  EXPECT_EQ(sink.sent[1].anomaly.status, AnomalyStatus::Resolved);
  EXPECT_EQ(status_of(*engine, "burst").groups, 2u);
  engine->tick({T0 + 321, {s("b", "in", 20), s("a", "in", 20), s("a", "out", 1000)}, {}});
  ASSERT_EQ(sink.sent.size(), 3u);
  EXPECT_EQ(sink.sent[2].anomaly.scope, make_labels({{"namespace", "default"}, {"pod", "a"}, {"direction", "out"}}));
  EXPECT_EQ(status_of(*engine, "burst").groups, 3u);
}

// The engine's key pool holds each group's key and workload once per group that uses it, and
// gives them back when the group is forgotten or its rule goes: nothing lingers for pods gone.
TEST(RulesKeyPool, KeysAndWorkloadsGoWithTheirGroups) {
  RuleSpec spec;
  spec.name = "r";
  spec.metric = "drops";
  // `below`: a threshold that a quiet pod's 0 could cross gets a group for every known pod.
  spec.detector = *find_detector_kind("threshold")->make({{"above", 1e9}, {"below", -1e9}}, DetectorContext{});
  auto keys = std::make_shared<KeyPool>();
  auto eval = std::make_unique<RuleEvaluator>(spec, keys);
  auto other = std::make_unique<RuleEvaluator>(spec, keys);  // a second rule: the same groups share their keys
  std::vector<PodMeta> pods;
  for (const char* name : {"a", "b"}) {
    PodMeta p{"ns", name, {}, "node-a"};
    p.workload = "ns/Deployment/web";
    pods.push_back(p);
  }
  eval->evaluate({}, pods, 100, true, 0);
  other->evaluate({}, pods, 100, true, 0);
  EXPECT_EQ(eval->size(), 2u);
  EXPECT_EQ(keys->size(), 3u) << "two pod keys and one workload, shared by both rules";
  // Pod a goes: after kForgetAfter its group is forgotten by both rules, its key with it; the
  // workload stays for pod b.
  pods.erase(pods.begin());
  const double later = 100 + RuleEvaluator::kForgetAfter + 1;
  eval->evaluate({}, pods, later, true, 0);
  other->evaluate({}, pods, later, true, 0);
  eval->forget_stale(later);
  other->forget_stale(later);
  EXPECT_EQ(eval->size(), 1u);
  EXPECT_EQ(keys->size(), 2u);
  eval.reset();
  EXPECT_EQ(keys->size(), 2u) << "still held by the other rule";
  other.reset();
  EXPECT_EQ(keys->size(), 0u) << "the last rule gone, its keys and workloads with it";
}
