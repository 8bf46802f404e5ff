// Ratio rules: numerator and denominator terms summed per group, the min_volume guard, the
// ratio feeding learned detectors, and load errors naming the field.
#include <cmath>

#include "rules_engine_support.h"

using namespace vigil;
using namespace vigil::rules;
using namespace vigil::rules::testing;

namespace {

// Drops over everything the pod was sent (forwarded + dropped), ingress.
std::string drop_ratio_rule(const std::string& detect, const std::string& extra = "") {
  return R"lua(
rule {
  name = "drop-ratio",
  ratio = {
    numerator = { metric = "vigil_drop_packets_total", where = { direction = "ingress" } },
    denominator = {
      { metric = "vigil_forward_packets_total", where = { direction = "ingress" } },
      { metric = "vigil_drop_packets_total", where = { direction = "ingress" } },
    },
    min_volume = 20,
  },
  detect = )lua" + detect + R"lua(,
  resolve_after = "3s",
  )lua" + extra + R"lua(
  on_anomaly = function(a) notify("default", a) end,
}
)lua";
}

// Cumulative counters of one pod: forwards and drops per tick, given as functions of t.
struct Traffic {
  double forwarded = 0, dropped = 0;
  std::vector<Sample> tick(double fwd, double drop) {
    forwarded += fwd;
    dropped += drop;
    return {counter("vigil_forward_packets_total", "web-1", forwarded, {{"direction", "ingress"}}),
            counter("vigil_drop_packets_total", "web-1", dropped, {{"direction", "ingress"}}),
            // egress drops are in neither term
            counter("vigil_drop_packets_total", "web-1", dropped * 100, {{"direction", "egress"}})};
  }
};

}  // namespace

TEST(RulesRatio, OneOfTwoIsNotAFiftyPercentErrorRate) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load({dir.write("ratio.lua", drop_ratio_rule("threshold { above = 0.1 }"))}, &sink);
  ASSERT_TRUE(engine);
  Traffic traffic;
  std::vector<PodMeta> pods{pod("web-1")};
  for (int t = 0; t <= 10; ++t) engine->tick({T0 + t, traffic.tick(100, 0), pods});
  // 1 forwarded and 1 dropped a tick: 50%, but 2 events are below min_volume = 20.
  for (int t = 11; t <= 20; ++t) engine->tick({T0 + t, traffic.tick(1, 1), pods});
  EXPECT_TRUE(sink.sent.empty());
  // 19 events: still below. 20 events at 50%: judged, fires.
  engine->tick({T0 + 21, traffic.tick(10, 9), pods});
  EXPECT_TRUE(sink.sent.empty());
  engine->tick({T0 + 22, traffic.tick(10, 10), pods});
  ASSERT_EQ(sink.sent.size(), 1u);
  const Anomaly a = sink.sent[0].anomaly;
  EXPECT_DOUBLE_EQ(a.value, 0.5);
  EXPECT_DOUBLE_EQ(a.started_at, T0 + 22);
  EXPECT_EQ(a.metric, "vigil_drop_packets_total / (vigil_forward_packets_total + vigil_drop_packets_total)");
  EXPECT_EQ(a.scope, make_labels({{"namespace", "default"}, {"pod", "web-1"}}));
  EXPECT_EQ(a.summary,
            "vigil_drop_packets_total / (vigil_forward_packets_total + vigil_drop_packets_total) for default/web-1 "
            "is 0.5, past the threshold 0.1");  // a ratio has no unit

  // 30 of 150 at 2 s ticks: 15 per second over 75, 20%.
  engine->tick({T0 + 24, traffic.tick(120, 30), pods});
  EXPECT_EQ(sink.sent.size(), 1u);
  // Traffic stops: ticks below min_volume are not judged but count towards resolve_after
  // (3 s from the first quiet tick, t = 25).
  for (int t = 25; t <= 27; ++t) engine->tick({T0 + t, traffic.tick(0, 0), pods});
  EXPECT_EQ(sink.sent.size(), 1u);
  engine->tick({T0 + 28, traffic.tick(0, 0), pods});
  ASSERT_EQ(sink.sent.size(), 2u);
  EXPECT_EQ(sink.sent[1].anomaly.status, AnomalyStatus::Resolved);
  EXPECT_DOUBLE_EQ(sink.sent[1].anomaly.ended_at, T0 + 28);
  EXPECT_DOUBLE_EQ(sink.sent[1].anomaly.value, 0.2);  // the last value judged
}

TEST(RulesRatio, VolumeIsEventsInTheTickNotThePerSecondRate) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load({dir.write("ratio.lua", drop_ratio_rule("threshold { above = 0.1 }"))}, &sink);
  ASSERT_TRUE(engine);
  Traffic traffic;
  std::vector<PodMeta> pods{pod("web-1")};
  engine->tick({T0, traffic.tick(0, 0), pods});
  engine->tick({T0 + 1, traffic.tick(100, 0), pods});
  // 12 events over 4 s is 3/s; the tick counted 12 < 20 events: not judged.
  engine->tick({T0 + 5, traffic.tick(6, 6), pods});
  EXPECT_TRUE(sink.sent.empty());
  // 24 events over 4 s: judged.
  engine->tick({T0 + 9, traffic.tick(12, 12), pods});
  EXPECT_EQ(sink.sent.size(), 1u);
}

TEST(RulesRatio, FeedsLearnedDetectorsAndLowVolumeTicksAreNotLearned) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load(
      {dir.write("ratio.lua", drop_ratio_rule("baseline.zscore { window = \"1m\", threshold = 4, min_stddev = 0.01, warmup = \"20s\" }"))},
      &sink);
  ASSERT_TRUE(engine);
  Traffic traffic;
  std::vector<PodMeta> pods{pod("web-1")};
  // 1% drops at 1000 events a tick for 40 s: the baseline learns about 0.01.
  for (int t = 0; t <= 40; ++t) engine->tick({T0 + t, traffic.tick(990, t % 2 ? 12 : 8), pods});
  // 40 ticks of 1 drop in 2 events: not learned (if they were, the mean would be ~0.25
  // and the spread ~0.25, and 10% below would pass as normal).
  for (int t = 41; t <= 80; ++t) engine->tick({T0 + t, traffic.tick(1, 1), pods});
  EXPECT_TRUE(sink.sent.empty());
  engine->tick({T0 + 81, traffic.tick(900, 100), pods});
  ASSERT_EQ(sink.sent.size(), 1u);
  const Anomaly a = sink.sent[0].anomaly;
  EXPECT_DOUBLE_EQ(a.value, 0.1);
  EXPECT_NEAR(a.baseline, 0.01, 0.001);
  EXPECT_GT(a.score, 4);
  EXPECT_EQ(a.detector, "baseline.zscore");
}

TEST(RulesRatio, GroupsAreSummedPerByLabelsAndPodsWithoutTrafficAreQuiet) {
  RuleDir dir;
  RecordingSink sink;
  // `below`: a group for every known pod (a 0 could cross it), so the idle pod is judged too.
  auto engine = load({dir.write("ratio.lua", drop_ratio_rule("threshold { above = 0.1, below = -1 }"))}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("web-1"), pod("web-2"), pod("idle")};
  double f = 0, d = 0;
  for (int t = 0; t <= 5; ++t) {
    f += 100, d += t >= 3 ? 50 : 0;
    engine->tick({T0 + t,
                  {counter("vigil_forward_packets_total", "web-1", f, {{"direction", "ingress"}}),
                   counter("vigil_forward_packets_total", "web-2", f, {{"direction", "ingress"}}),
                   counter("vigil_drop_packets_total", "web-2", d, {{"direction", "ingress"}, {"reason", "A"}}),
                   counter("vigil_drop_packets_total", "web-2", d, {{"direction", "ingress"}, {"reason", "B"}})},
                  pods});
  }
  ASSERT_EQ(sink.sent.size(), 1u);
  EXPECT_EQ(*find_label(sink.sent[0].anomaly.scope, "pod"), "web-2");
  EXPECT_DOUBLE_EQ(sink.sent[0].anomaly.value, 0.5);  // 100 / (100 + 100), both reasons summed
  EXPECT_EQ(status_of(*engine, "drop-ratio").groups, 3u);
}

TEST(RulesRatio, LoadErrorsNameTheFileLineAndField) {
  RuleDir dir;
  struct Case {
    std::string ratio;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"ratio = { numerator = { metric = \"a\" } }", "field 'ratio': missing required field 'denominator'"},
      {"ratio = { numerator = { metric = \"a\" }, denominator = { metric = \"b\" }, min_volume = -1 }",
       "field 'ratio.min_volume' must be a number >= 0"},
      {"ratio = { numerator = { metric = \"a\" }, denominator = { metric = \"b\" }, minvolume = 1 }",
       "field 'ratio': unknown field 'minvolume'"},
      {"ratio = { numerator = { metric = \"a\", wher = {} }, denominator = { metric = \"b\" } }",
       "field 'ratio.numerator': unknown field 'wher'"},
      {"ratio = { numerator = { metric = \"a\" }, denominator = { { metric = \"b\" }, { where = {} } } }",
       "field 'ratio.denominator[2]': missing required field 'metric'"},
      {"ratio = { numerator = { metric = \"a\" }, denominator = { metric = \"b\", where = { reason = 3 } } }",
       "field 'ratio.denominator.where': label 'reason' must be a string"},
      {"ratio = { numerator = { metric = \"a b\" }, denominator = { metric = \"b\" } }",
       "field 'ratio.numerator.metric': 'a b' is not a valid metric name"},
      {"ratio = \"a/b\"", "field 'ratio' must be a table"},
      {"metric = \"x\", ratio = { numerator = { metric = \"a\" }, denominator = { metric = \"b\" } }",
       "field 'metric': a ratio rule names its metrics in ratio.numerator and ratio.denominator"},
      {"where = { pod = \"x\" }, ratio = { numerator = { metric = \"a\" }, denominator = { metric = \"b\" } }",
       "field 'where': a ratio rule puts its matchers in each term"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string path = dir.write("bad" + std::to_string(i) + ".lua",
                                 "-- bad ratio\nrule {\n  name = \"r\",\n  " + cases[i].ratio +
                                     ",\n  detect = threshold { above = 0.5 },\n}\n");
    std::string e = load_error(path);
    EXPECT_EQ(e.rfind(path + ":2: rule 'r': " + cases[i].expected, 0), 0u) << "case " << i << ": " << e;
  }
  std::string fs = dir.write("fs.lua", R"lua(
rule {
  name = "r",
  ratio = { numerator = { metric = "a" }, denominator = { metric = "b" } },
  detect = first_seen { label = "remote_ip", learn = "1h" },
})lua");
  EXPECT_NE(load_error(fs).find(":2: rule 'r': field 'detect': first_seen judges label values, not a ratio"),
            std::string::npos)
      << load_error(fs);
}
