// first_seen: a pod uses a peer it never used while learning. Learning, firing once per new
// value, idle series, the bounded set and its overflow count, persistence, load errors.
#include "rules/runtime/first_seen.h"
#include "rules_engine_support.h"

using namespace vigil;
using namespace vigil::rules;
using namespace vigil::rules::testing;

namespace {

std::string peer_rule(const std::string& params) {
  return R"lua(
rule {
  name = "new-peer",
  metric = "vigil_remote_forward_packets_total",
  where = { direction = "egress", remote_ip = { except = { "other" } } },
  by = { "namespace", "pod" },
  detect = first_seen { )lua" + params + R"lua( },
  resolve_after = "2s",
  on_anomaly = function(a) notify("default", a) end,
}
)lua";
}

// Cumulative egress packet counters of pod -> remote_ip.
class Peers {
 public:
  void send(const std::string& pod, const std::string& ip, double packets) { totals_[{pod, ip}] += packets; }
  std::vector<Sample> samples() const {
    std::vector<Sample> out;
    for (const auto& [k, v] : totals_)
      out.push_back(counter("vigil_remote_forward_packets_total", k.first, v,
                            {{"direction", "egress"}, {"remote_ip", k.second}}));
    return out;
  }

 private:
  std::map<std::pair<std::string, std::string>, double> totals_;
};

}  // namespace

TEST(RulesFirstSeen, NewPeerAfterLearningFiresOnceWithItsValue) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load({dir.write("peer.lua", peer_rule("label = \"remote_ip\", learn = \"30s\""))}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("web-1")};
  Peers peers;
  for (int t = 0; t <= 40; ++t) {
    peers.send("web-1", "10.0.0.1", 10);
    if (t % 3 == 0) peers.send("web-1", "10.0.0.2", 1);
    if (t == 5) peers.send("web-1", "10.0.0.3", 4);  // once, then idle
    if (t == 20) peers.send("web-1", "10.0.0.4", 1);  // new, but while learning
    peers.send("web-1", "other", 1);                 // past the kernel's max_peers: excluded
    engine->tick({T0 + t, peers.samples(), pods});
  }
  EXPECT_TRUE(sink.sent.empty());
  // After learning: known peers, also the idle one becoming active again, stay quiet.
  peers.send("web-1", "10.0.0.3", 4);
  engine->tick({T0 + 41, peers.samples(), pods});
  EXPECT_TRUE(sink.sent.empty());

  peers.send("web-1", "10.0.0.9", 3);
  engine->tick({T0 + 42, peers.samples(), pods});
  ASSERT_EQ(sink.sent.size(), 1u);
  const Anomaly a = sink.sent[0].anomaly;
  EXPECT_EQ(a.detector, "first_seen");
  EXPECT_EQ(a.detector_params, "label=remote_ip learn=30s max_values=256");
  EXPECT_EQ(*find_label(a.metric_labels, "remote_ip"), "10.0.0.9");
  EXPECT_DOUBLE_EQ(a.value, 1);
  EXPECT_EQ(a.summary, "default/web-1 used a new remote_ip 10.0.0.9, not seen in 30s of learning");

  // The new peer goes on: it is remembered, so no second firing; the anomaly resolves.
  for (int t = 43; t <= 50; ++t) {
    peers.send("web-1", "10.0.0.9", 3);
    engine->tick({T0 + t, peers.samples(), pods});
  }
  ASSERT_EQ(sink.sent.size(), 2u);
  EXPECT_EQ(sink.sent[1].anomaly.status, AnomalyStatus::Resolved);

  // Two new peers in one tick: one anomaly naming both.
  peers.send("web-1", "10.0.1.1", 1);
  peers.send("web-1", "10.0.1.2", 1);
  engine->tick({T0 + 51, peers.samples(), pods});
  ASSERT_EQ(sink.sent.size(), 3u);
  EXPECT_EQ(*find_label(sink.sent[2].anomaly.metric_labels, "remote_ip"), "10.0.1.1|10.0.1.2");
  EXPECT_DOUBLE_EQ(sink.sent[2].anomaly.value, 2);
  EXPECT_TRUE(status_of(*engine, "new-peer").errors.empty());
}

TEST(RulesFirstSeen, EachPodLearnsItsOwnPeers) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load({dir.write("peer.lua", peer_rule("label = \"remote_ip\", learn = \"10s\""))}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("web-1"), pod("web-2")};
  Peers peers;
  for (int t = 0; t <= 12; ++t) {
    peers.send("web-1", "10.0.0.1", 1);
    peers.send("web-2", "10.0.0.2", 1);
    engine->tick({T0 + t, peers.samples(), pods});
  }
  peers.send("web-1", "10.0.0.2", 1);  // web-2's peer is new to web-1
  engine->tick({T0 + 13, peers.samples(), pods});
  ASSERT_EQ(sink.sent.size(), 1u);
  EXPECT_EQ(*find_label(sink.sent[0].anomaly.scope, "pod"), "web-1");
}

TEST(RulesFirstSeen, FullSetCountsOverflowAndNeverJudgesWhatItCannotRemember) {
  RuleDir dir;
  RecordingSink sink;
  auto engine =
      load({dir.write("peer.lua", peer_rule("label = \"remote_ip\", learn = \"10s\", max_values = 3"))}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("web-1")};
  Peers peers;
  for (int t = 0; t <= 12; ++t) {
    for (const char* ip : {"10.0.0.1", "10.0.0.2", "10.0.0.3"}) peers.send("web-1", ip, 1);
    if (t == 4) peers.send("web-1", "10.0.0.4", 1);  // a 4th while learning: overflow
    engine->tick({T0 + t, peers.samples(), pods});
  }
  // 10.0.0.4's series stays (idle) and is offered again each tick: counted each time.
  const uint64_t learning_overflow = status_of(*engine, "new-peer").errors["first_seen_overflow"];
  EXPECT_EQ(learning_overflow, 9u);  // t = 4 .. 12
  peers.send("web-1", "10.0.0.5", 1);
  engine->tick({T0 + 13, peers.samples(), pods});
  EXPECT_TRUE(sink.sent.empty()) << "a full set cannot tell new from forgotten";
  auto st = status_of(*engine, "new-peer");
  EXPECT_EQ(st.errors["first_seen_overflow"], learning_overflow + 2);
  EXPECT_EQ(st.errors.count("runtime"), 0u);
  EXPECT_FALSE(st.disabled);
}

TEST(RulesFirstSeen, RememberedPeersSurviveARestart) {
  RuleDir dir;
  std::string file = dir.write("peer.lua", peer_rule("label = \"remote_ip\", learn = \"10s\""));
  std::vector<PodMeta> pods{pod("web-1")};
  Peers peers;
  {
    RecordingSink sink;
    auto engine = load({file}, &sink);
    ASSERT_TRUE(engine);
    for (int t = 0; t <= 12; ++t) {
      peers.send("web-1", "10.0.0.1", 1);
      if (t == 3) peers.send("web-1", "10.0.0.2", 1);
      engine->tick({T0 + t, peers.samples(), pods});
    }
    ASSERT_TRUE(engine->save_state(dir.path("state.bin")).ok());
  }
  RecordingSink sink;
  auto engine = load({file}, &sink);
  ASSERT_TRUE(engine);
  auto report = engine->restore_state(dir.path("state.bin"));
  EXPECT_EQ(report.groups, 1u) << report.error;
  // The agent restarted: its counters start again, and only 10.0.0.2 is in use.
  Peers fresh;
  for (int t = 100; t <= 102; ++t) {
    fresh.send("web-1", "10.0.0.2", 1);
    engine->tick({T0 + t, fresh.samples(), pods});
  }
  EXPECT_TRUE(sink.sent.empty()) << "remembered from before the restart, and learning is over";
  fresh.send("web-1", "10.0.0.7", 1);
  engine->tick({T0 + 103, fresh.samples(), pods});
  ASSERT_EQ(sink.sent.size(), 1u);
  EXPECT_EQ(*find_label(sink.sent[0].anomaly.metric_labels, "remote_ip"), "10.0.0.7");
}

TEST(RulesFirstSeen, SeveralLabelsFormOneValue) {
  RuleDir dir;
  RecordingSink sink;
  auto engine = load({dir.write("peer.lua", R"lua(
rule {
  name = "new-pod-peer",
  metric = "vigil_remote_forward_packets_total",
  detect = first_seen { label = "remote_namespace,remote_pod", learn = "5s" },
  summary = "{pod} talks to {remote_namespace,remote_pod}",
  on_anomaly = function(a) notify("default", a) end,
}
)lua")}, &sink);
  ASSERT_TRUE(engine);
  auto peer = [](const std::string& ns, const std::string& p, double v) {
    return counter("vigil_remote_forward_packets_total", "web-1", v, {{"remote_namespace", ns}, {"remote_pod", p}});
  };
  for (int t = 0; t <= 6; ++t) engine->tick({T0 + t, {peer("db", "pg-0", t)}, {pod("web-1")}});
  engine->tick({T0 + 7, {peer("db", "pg-0", 7), peer("cache", "pg-0", 1)}, {pod("web-1")}});
  ASSERT_EQ(sink.sent.size(), 1u);
  EXPECT_EQ(sink.sent[0].anomaly.summary, "web-1 talks to cache/pg-0");
}

TEST(RulesFirstSeen, LoadErrorsNameTheField) {
  RuleDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"learn = \"1h\"", "first_seen: missing required field 'label'"},
      {"label = \"remote_ip\"", "first_seen: missing required field 'learn'"},
      {"label = \"remote ip\", learn = \"1h\"", "first_seen: field 'label': 'remote ip' is not a label name"},
      {"label = \"remote_ip\", learn = \"1h\", max_values = 0", "first_seen: field 'max_values' must be a whole number from 1 to 4096"},
      {"label = \"remote_ip\", learn = \"1h\", max_values = 5000", "first_seen: field 'max_values' must be a whole number from 1 to 4096"},
      {"label = \"remote_ip\", learn = \"100ms\"", "first_seen: field 'learn': 100ms is shorter than one tick of 1s"},
      {"label = \"remote_ip\", learn = \"1h\", window = 3", "first_seen: unknown field 'window'"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string path = dir.write("bad" + std::to_string(i) + ".lua", peer_rule(cases[i].first));
    std::string e = load_error(path);
    // The line of first_seen { ... } (the rule starts on line 2).
    EXPECT_EQ(e.rfind(path + ":7: rule 'new-peer': " + cases[i].second, 0), 0u) << "case " << i << ": " << e;
  }
  std::string any = dir.write("any.lua", R"lua(
rule {
  name = "r",
  metric = "m",
  detect = any { first_seen { label = "remote_ip", learn = "1h" } },
})lua");
  EXPECT_NE(load_error(any).find("first_seen judges label values and cannot be combined in any"), std::string::npos)
      << load_error(any);
}

TEST(RulesFirstSeen, MemoryIsBoundedByMaxValues) {
  auto detector = make_first_seen({{"label", std::string("remote_ip")}, {"learn", std::string("1m")}, {"max_values", 4.0}},
                                  DetectorContext{});
  ASSERT_TRUE(detector.ok()) << detector.error().message;
  auto state = (*detector)->new_state();
  auto& fs = static_cast<FirstSeenState&>(*state);
  EXPECT_EQ(state->memory_bytes(), 56u);  // docs/rules.md, "Memory per series"
  std::vector<std::string> values;
  for (int i = 0; i < 100; ++i) values.push_back("10.0.0." + std::to_string(i));
  EXPECT_TRUE(fs.observe(values, 0).empty());  // learning
  EXPECT_EQ(fs.remembered(), 4u);
  EXPECT_EQ(fs.overflow(), 96u);
  EXPECT_EQ(state->memory_bytes(), 56u + 8 * 4);
  // Saved and restored whole; a state with another max_values refuses the snapshot.
  std::string saved;
  state->save(saved);
  auto copy = (*detector)->new_state();
  EXPECT_TRUE(copy->restore(saved));
  EXPECT_EQ(static_cast<FirstSeenState&>(*copy).remembered(), 4u);
  auto other = make_first_seen({{"label", std::string("remote_ip")}, {"learn", std::string("1m")}}, DetectorContext{});
  EXPECT_FALSE((*other)->new_state()->restore(saved));
  EXPECT_FALSE(copy->restore(saved.substr(0, saved.size() - 1)));
}
