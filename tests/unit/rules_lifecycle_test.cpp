// The anomaly lifecycle's brakes: cooldown after a resolve, suppress by group labels, and the
// per-rule budget of notifications per hour.
#include "rules_engine_support.h"

using namespace vigil;
using namespace vigil::rules;
using namespace vigil::rules::testing;

namespace {

std::string depth_rule(const std::string& extra) {
  return R"lua(
rule {
  name = "queue",
  metric = "vigil_queue_depth",
  detect = threshold { above = 10 },
  resolve_after = "1s",
  )lua" + extra + R"lua(
  on_anomaly = function(a) notify("default", a) end,
}
)lua";
}

}  // namespace

TEST(RulesLifecycle, CooldownHoldsANewFiringOfTheSameGroup) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load({dir.write("q.lua", depth_rule("cooldown = \"10s\","))}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("q"), pod("r")};
  auto tick = [&](int t, double q, double r) {
    engine->tick({T0 + t, {gauge("vigil_queue_depth", "q", q), gauge("vigil_queue_depth", "r", r)}, pods});
  };
  tick(0, 50, 0);  // q fires
  tick(1, 0, 0);
  tick(2, 0, 0);  // q resolves: 1 s normal
  ASSERT_EQ(sink.sent.size(), 2u);
  EXPECT_EQ(sink.sent[1].anomaly.status, AnomalyStatus::Resolved);
  // q is anomalous again from t=4, r (another group) too: r fires at once, q after the cooldown.
  for (int t = 4; t <= 11; ++t) tick(t, 50, 50);
  ASSERT_EQ(sink.sent.size(), 3u);
  EXPECT_EQ(*find_label(sink.sent[2].anomaly.scope, "pod"), "r");
  tick(12, 50, 50);  // 10 s after q's resolve
  ASSERT_EQ(sink.sent.size(), 4u);
  EXPECT_EQ(*find_label(sink.sent[3].anomaly.scope, "pod"), "q");
  EXPECT_DOUBLE_EQ(sink.sent[3].anomaly.started_at, T0 + 4);  // anomalous since, held by the cooldown

  // An anomaly that ends within the cooldown never fires.
  for (int t = 13; t <= 15; ++t) tick(t, 0, 0);
  ASSERT_EQ(sink.sent.size(), 6u);  // both resolved
  tick(16, 50, 0);
  tick(17, 0, 0);
  for (int t = 18; t <= 40; ++t) tick(t, 0, 0);
  EXPECT_EQ(sink.sent.size(), 6u);
}

// What is firing now (the agent's GET /api/v1/anomalies): each open episode once, newest
// first, with the id its firing was sent with and the latest value; gone once resolved.
TEST(RulesLifecycle, OpenAnomaliesAreWhatFiresNowWithTheLatestValue) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load({dir.write("q.lua", depth_rule(""))}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("q"), pod("r")};
  auto tick = [&](int t, double q, double r) {
    engine->tick({T0 + t, {gauge("vigil_queue_depth", "q", q), gauge("vigil_queue_depth", "r", r)}, pods});
  };
  tick(0, 0, 0);
  EXPECT_TRUE(engine->open_anomalies().empty());
  tick(1, 50, 0);  // q fires
  tick(2, 70, 30);  // r fires, q still anomalous with a new value
  auto open = engine->open_anomalies();
  ASSERT_EQ(open.size(), 2u);
  EXPECT_EQ(*find_label(open[0].scope, "pod"), "r");  // newest first
  EXPECT_EQ(*find_label(open[1].scope, "pod"), "q");
  EXPECT_EQ(open[1].status, AnomalyStatus::Firing);
  EXPECT_DOUBLE_EQ(open[1].started_at, T0 + 1);
  EXPECT_DOUBLE_EQ(open[1].value, 70);  // the latest, not the 50 it fired with
  ASSERT_EQ(sink.sent.size(), 2u);
  EXPECT_EQ(open[1].id, sink.sent[0].anomaly.id);
  EXPECT_DOUBLE_EQ(sink.sent[0].anomaly.value, 50);
  EXPECT_EQ(open[0].id, sink.sent[1].anomaly.id);
  tick(3, 0, 40);
  tick(4, 0, 40);  // q resolves after 1 s normal
  open = engine->open_anomalies();
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(*find_label(open[0].scope, "pod"), "r");
  EXPECT_DOUBLE_EQ(open[0].value, 40);
  engine->resolve_open(T0 + 5);
  EXPECT_TRUE(engine->open_anomalies().empty());
}

TEST(RulesLifecycle, SuppressedGroupsLearnAndNeverNotify) {
  RuleDir dir;
  RecordingSink sink;
  auto engine =
      load({dir.write("q.lua", depth_rule("suppress = { pod = { \"noisy-1\", \"noisy-2\" } },"))}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("web"), pod("noisy-1")};
  auto both = [](double v) {
    return std::vector<Sample>{gauge("vigil_queue_depth", "web", v), gauge("vigil_queue_depth", "noisy-1", v)};
  };
  engine->tick({T0, both(50), pods});
  engine->tick({T0 + 1, both(50), pods});
  ASSERT_EQ(sink.sent.size(), 1u);
  EXPECT_EQ(*find_label(sink.sent[0].anomaly.scope, "pod"), "web");
  for (int t = 2; t <= 4; ++t) engine->tick({T0 + t, both(0), pods});
  ASSERT_EQ(sink.sent.size(), 2u);  // web's resolve; noisy-1 resolves silently
  EXPECT_EQ(*find_label(sink.sent[1].anomaly.scope, "pod"), "web");
  auto st = status_of(*engine, "queue");
  EXPECT_EQ(st.suppressed, 1u);
  EXPECT_EQ(st.anomalies_fired, 1u);
  EXPECT_TRUE(st.errors.empty());
}

TEST(RulesLifecycle, NotificationBudgetCountsTheExcessAndRefillsAfterAnHour) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load({dir.write("q.lua", depth_rule("max_notifications_per_hour = 2,"))}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("q")};
  auto tick = [&](double t, double v) { engine->tick({T0 + t, {gauge("vigil_queue_depth", "q", v)}, pods}); };
  // Five episodes a minute apart: two are notified.
  for (int i = 0; i < 5; ++i) {
    tick(60 * i, 50);
    tick(60 * i + 1, 0);
    tick(60 * i + 2, 0);
  }
  EXPECT_EQ(sink.with(AnomalyStatus::Firing).size(), 2u);
  EXPECT_EQ(sink.with(AnomalyStatus::Resolved).size(), 2u);  // over-budget episodes resolve silently
  auto st = status_of(*engine, "queue");
  EXPECT_EQ(st.errors["notification_budget"], 3u);
  EXPECT_EQ(st.anomalies_fired, 2u);
  EXPECT_FALSE(st.disabled) << "the budget is not an error of the rule";
  // An hour after the first notification, there is room again.
  tick(3600, 50);
  EXPECT_EQ(sink.with(AnomalyStatus::Firing).size(), 3u);
}

TEST(RulesLifecycle, LoadErrorsNameTheField) {
  RuleDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"cooldown = \"ten\",", "field 'cooldown': bad duration 'ten'"},
      {"cooldown = -1,", "field 'cooldown': a duration must be >= 0 seconds"},
      {"suppress = { direction = \"egress\" },", "field 'suppress': label 'direction' is not one of 'by'"},
      {"suppress = \"web\",", "field 'suppress' must be a table of label = value"},
      {"suppress = { pod = 3 },", "field 'suppress': label 'pod' must be a string"},
      {"max_notifications_per_hour = 0,", "field 'max_notifications_per_hour' must be a whole number from 1 to 1000000"},
      {"max_notifications_per_hour = 2.5,", "field 'max_notifications_per_hour' must be a whole number"},
      {"max_notifications_per_hour = \"10\",", "field 'max_notifications_per_hour' must be a whole number"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string path = dir.write("bad" + std::to_string(i) + ".lua", depth_rule(cases[i].first));
    std::string e = load_error(path);
    EXPECT_EQ(e.rfind(path + ":2: rule 'queue': " + cases[i].second, 0), 0u) << "case " << i << ": " << e;
  }
}
