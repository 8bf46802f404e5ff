// Persisted rule state: a restarted engine keeps its baselines and warm-up progress; a bad
// state file is reported and ignored; a changed rule loses only its own state.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "rules/runtime/engine.h"
#include "rules/runtime/state_store.h"

using namespace vigil;
using namespace vigil::rules;
namespace fs = std::filesystem;

namespace {

class RecordingSink : public ActionSink {
 public:
  void notify(const std::string&, const Anomaly& a) override { sent.push_back(a); }
  std::vector<Anomaly> sent;
};

class TempDir {
 public:
  TempDir() {
    static int n = 0;
    dir_ = fs::temp_directory_path() / ("vigil-state-" + std::to_string(getpid()) + "-" + std::to_string(n++));
    fs::create_directories(dir_);
  }
  ~TempDir() { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name), std::ios::binary) << text;
    return path(name);
  }
  std::string read(const std::string& name) const {
    std::ifstream in(path(name), std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  size_t entries() const { return std::distance(fs::directory_iterator(dir_), fs::directory_iterator()); }

 private:
  fs::path dir_;
};

std::string rule(const std::string& name, const std::string& threshold = "4", const std::string& warmup = "20s") {
  return "rule {\n  name = \"" + name +
         "\",\n  metric = \"vigil_drop_packets_total\",\n  where = { direction = \"ingress\" },\n"
         "  detect = baseline.zscore { window = \"2m\", threshold = " + threshold + ", min_rate = 1, warmup = \"" +
         warmup + "\" },\n  on_anomaly = function(a) notify(\"oncall\", a) end,\n}\n";
}

EngineOptions options() {
  EngineOptions o;
  o.node = "node-a";
  o.channels = std::set<std::string>{"oncall"};
  return o;
}

std::unique_ptr<RuleEngine> load(const std::vector<std::string>& files, ActionSink* sink) {
  auto engine = RuleEngine::load(files, options(), sink);
  EXPECT_TRUE(engine.ok()) << (engine.ok() ? "" : engine.error().message);
  return engine.ok() ? std::move(*engine) : nullptr;
}

PodMeta pod(const std::string& name, std::map<std::string, std::string> labels = {}) {
  return PodMeta{"default", name, std::move(labels), "node-a"};
}

Sample drops(const std::string& pod, double value) {
  return Sample{"vigil_drop_packets_total",
                make_labels({{"namespace", "default"}, {"pod", pod}, {"direction", "ingress"}, {"reason", "NETFILTER_DROP"}}),
                value, SeriesKind::Counter};
}

constexpr double T0 = 1000;

// 30 quiet ticks (past the 20 s warm-up), then the state is saved.
void warm_up(RuleEngine& engine, const std::vector<PodMeta>& pods) {
  for (int t = 0; t < 30; ++t) engine.tick(TickInput{T0 + t, {}, pods});
}

// A restarted engine: its first tick has no rates yet; at the second, the pod drops 120/s.
// Returns the anomalies fired for that surge.
std::vector<Anomaly> surge_after_restart(RuleEngine& engine, RecordingSink& sink, const std::vector<PodMeta>& pods,
                                         const std::string& name) {
  engine.tick(TickInput{T0 + 100, {}, pods});
  engine.tick(TickInput{T0 + 101, {drops(name, 120)}, pods});
  return sink.sent;
}

}  // namespace

TEST(RulesState, RestartKeepsBaselineAndWarmUp) {
  TempDir dir;
  std::string file = dir.write("surge.lua", rule("surge"));
  RecordingSink sink;
  auto before = load({file}, &sink);
  ASSERT_TRUE(before);
  warm_up(*before, {pod("web-1")});
  ASSERT_TRUE(before->save_state(dir.path("baselines.bin")).ok());
  EXPECT_EQ(dir.entries(), 2u) << "no temporary file is left behind";

  RecordingSink after_sink;
  auto after = load({file}, &after_sink);
  auto report = after->restore_state(dir.path("baselines.bin"));
  EXPECT_TRUE(report.error.empty()) << report.error;
  EXPECT_FALSE(report.missing);
  EXPECT_EQ(report.rules, 1u);
  EXPECT_EQ(report.groups, 1u);
  EXPECT_TRUE(report.skipped.empty());
  auto fired = surge_after_restart(*after, after_sink, {pod("web-1")}, "web-1");
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_DOUBLE_EQ(fired[0].started_at, T0 + 101);  // the first tick with rates

  // Control: the same surge on a fresh engine is inside its warm-up and not reported.
  RecordingSink fresh_sink;
  auto fresh = load({file}, &fresh_sink);
  EXPECT_TRUE(surge_after_restart(*fresh, fresh_sink, {pod("web-1")}, "web-1").empty());
}

TEST(RulesState, SavedStateOfAnUnseenGroupSurvivesTheNextSave) {
  TempDir dir;
  std::string file = dir.write("surge.lua", rule("surge"));
  RecordingSink sink;
  auto first = load({file}, &sink);
  warm_up(*first, {pod("web-1")});
  ASSERT_TRUE(first->save_state(dir.path("a.bin")).ok());
  // Restored, then saved again before web-1 shows up: its state is carried over.
  auto second = load({file}, &sink);
  EXPECT_EQ(second->restore_state(dir.path("a.bin")).groups, 1u);
  second->tick(TickInput{T0 + 50, {}, {}});
  ASSERT_TRUE(second->save_state(dir.path("b.bin")).ok());
  RecordingSink third_sink;
  auto third = load({file}, &third_sink);
  EXPECT_EQ(third->restore_state(dir.path("b.bin")).groups, 1u);
  EXPECT_EQ(surge_after_restart(*third, third_sink, {pod("web-1")}, "web-1").size(), 1u);
}

TEST(RulesState, RescheduledPodKeepsItsWorkloadsBaseline) {
  TempDir dir;
  std::string file = dir.write("surge.lua", rule("surge"));
  RecordingSink sink;
  auto before = load({file}, &sink);
  warm_up(*before, {pod("web-7d9f8-abcde", {{"pod-template-hash", "7d9f8"}})});
  ASSERT_TRUE(before->save_state(dir.path("baselines.bin")).ok());

  RecordingSink after_sink;
  auto after = load({file}, &after_sink);
  EXPECT_EQ(after->restore_state(dir.path("baselines.bin")).groups, 1u);
  // Rescheduled: a new name, the same Deployment. A pod of another workload starts fresh.
  std::vector<PodMeta> pods{pod("web-7d9f8-zzzzz", {{"pod-template-hash", "7d9f8"}}),
                            pod("api-5c6d-qqqqq", {{"pod-template-hash", "5c6d"}})};
  after->tick(TickInput{T0 + 100, {}, pods});
  after->tick(TickInput{T0 + 101, {drops("web-7d9f8-zzzzz", 120), drops("api-5c6d-qqqqq", 120)}, pods});
  ASSERT_EQ(after_sink.sent.size(), 1u);
  EXPECT_EQ(*find_label(after_sink.sent[0].scope, "pod"), "web-7d9f8-zzzzz");
}

// With the Kubernetes source the controller's labels are not metric labels (the allow-list
// drops pod-template-hash); the owner the API server named carries the baseline instead.
TEST(RulesState, RescheduledPodKeepsTheBaselineOfTheWorkloadTheApiServerNamed) {
  TempDir dir;
  std::string file = dir.write("surge.lua", rule("surge"));
  auto owned = [](const std::string& name, const std::string& workload) {
    PodMeta p = pod(name, {{"app", "x"}});
    p.workload = workload;
    return p;
  };
  RecordingSink sink;
  auto before = load({file}, &sink);
  warm_up(*before, {owned("web-7d9f8-abcde", "default/Deployment/web")});
  ASSERT_TRUE(before->save_state(dir.path("baselines.bin")).ok());

  RecordingSink after_sink;
  auto after = load({file}, &after_sink);
  EXPECT_EQ(after->restore_state(dir.path("baselines.bin")).groups, 1u);
  std::vector<PodMeta> pods{owned("web-7d9f8-zzzzz", "default/Deployment/web"),
                            owned("api-5c6d-qqqqq", "default/Deployment/api"), pod("web-7d9f8-bare", {{"app", "x"}})};
  after->tick(TickInput{T0 + 100, {}, pods});
  after->tick(TickInput{T0 + 101,
                        {drops("web-7d9f8-zzzzz", 120), drops("api-5c6d-qqqqq", 120), drops("web-7d9f8-bare", 120)},
                        pods});
  // Only the new pod of the same Deployment fires at once; the other workload's pod and a pod
  // whose owner is unknown are in their warm-up.
  ASSERT_EQ(after_sink.sent.size(), 1u);
  EXPECT_EQ(*find_label(after_sink.sent[0].scope, "pod"), "web-7d9f8-zzzzz");
  EXPECT_EQ(workload_of(owned("anything", "ns/Job/backup")), "ns/Job/backup");
}

TEST(RulesState, WorkloadOfPodFromControllerLabels) {
  EXPECT_EQ(workload_of(pod("web-7d9f8-abcde", {{"pod-template-hash", "7d9f8"}})), "default/Deployment/web");
  EXPECT_EQ(workload_of(pod("db-0", {{"controller-revision-hash", "db-6f7"},
                                     {"statefulset.kubernetes.io/pod-name", "db-0"}})),
            "default/StatefulSet/db");
  EXPECT_EQ(workload_of(pod("agent-x2k4q", {{"controller-revision-hash", "7b"}, {"pod-template-generation", "1"}})),
            "default/DaemonSet/agent");
  EXPECT_EQ(workload_of(pod("web-1", {{"app", "web"}})), "");
  EXPECT_EQ(workload_of(pod("odd", {{"pod-template-hash", "zz"}})), "");
}

TEST(RulesState, ChangedParametersDropOnlyThatRulesState) {
  TempDir dir;
  RecordingSink sink;
  auto before = load({dir.write("a.lua", rule("kept")), dir.write("b.lua", rule("changed"))}, &sink);
  warm_up(*before, {pod("web-1")});
  ASSERT_TRUE(before->save_state(dir.path("baselines.bin")).ok());

  RecordingSink after_sink;
  auto after = load({dir.write("a2.lua", rule("kept")), dir.write("b2.lua", rule("changed", "5")),
                     dir.write("c2.lua", rule("new"))},
                    &after_sink);
  auto report = after->restore_state(dir.path("baselines.bin"));
  EXPECT_TRUE(report.error.empty());
  EXPECT_EQ(report.rules, 1u);
  EXPECT_EQ(report.groups, 1u);
  ASSERT_EQ(report.skipped.size(), 1u);
  EXPECT_NE(report.skipped[0].find("rule 'changed'"), std::string::npos) << report.skipped[0];
  EXPECT_NE(report.skipped[0].find("parameters"), std::string::npos) << report.skipped[0];
  auto fired = surge_after_restart(*after, after_sink, {pod("web-1")}, "web-1");
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].rule, "kept");

  // A rule that is gone is reported too.
  RecordingSink other_sink;
  auto other = load({dir.write("d.lua", rule("kept"))}, &other_sink);
  auto gone = other->restore_state(dir.path("baselines.bin"));
  ASSERT_EQ(gone.skipped.size(), 1u);
  EXPECT_NE(gone.skipped[0].find("no longer loaded"), std::string::npos);
}

TEST(RulesState, BadFilesAreReportedAndIgnored) {
  TempDir dir;
  std::string file = dir.write("surge.lua", rule("surge"));
  RecordingSink sink;
  auto before = load({file}, &sink);
  warm_up(*before, {pod("web-1")});
  ASSERT_TRUE(before->save_state(dir.path("good.bin")).ok());
  const std::string good = dir.read("good.bin");
  ASSERT_GT(good.size(), 40u);

  std::string flipped = good;
  flipped[flipped.size() - 3] ^= 0x5a;
  std::string version = good;
  version[8] = 99;
  struct Case {
    std::string name, bytes, reason;
  };
  std::vector<Case> cases{
      {"truncated.bin", good.substr(0, good.size() - 7), "truncated"},
      {"short.bin", good.substr(0, 12), "truncated header"},
      {"flipped.bin", flipped, "checksum"},
      {"version.bin", version, "format version 99"},
      {"garbage.bin", "this is not a state file at all", "bad magic"},
      {"empty.bin", "", "bad magic"},
  };
  for (const auto& c : cases) {
    RecordingSink after_sink;
    auto after = load({file}, &after_sink);
    std::string path = dir.write(c.name, c.bytes);
    auto report = after->restore_state(path);
    EXPECT_NE(report.error.find(path), std::string::npos) << c.name << ": " << report.error;
    EXPECT_NE(report.error.find(c.reason), std::string::npos) << c.name << ": " << report.error;
    EXPECT_EQ(report.groups, 0u);
    // The engine goes on, from scratch: the surge is inside a new warm-up.
    EXPECT_TRUE(surge_after_restart(*after, after_sink, {pod("web-1")}, "web-1").empty()) << c.name;
  }

  RecordingSink missing_sink;
  auto missing = load({file}, &missing_sink);
  auto report = missing->restore_state(dir.path("none.bin"));
  EXPECT_TRUE(report.missing);
  EXPECT_TRUE(report.error.empty());
}

TEST(RulesState, EncodeDecodeRoundTrip) {
  StateSnapshot s;
  s.rules.push_back({"r", 1, {{make_labels({{"pod", "p"}}), "", 3, "x"}}});
  std::string bytes = encode_state(s);
  auto back = decode_state(bytes);
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->rules.size(), 1u);
  EXPECT_EQ(back->rules[0].groups[0].key, make_labels({{"pod", "p"}}));
  EXPECT_DOUBLE_EQ(back->rules[0].groups[0].age, 3);
  EXPECT_FALSE(decode_state(bytes + "x").ok());
}

TEST(RulesState, SaveToUnwritableDirectoryIsAnError) {
  auto engine = RuleEngine::load({}, options(), nullptr);
  ASSERT_TRUE(engine.ok());
  auto r = (*engine)->save_state("/nonexistent-vigil-dir/baselines.bin");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("/nonexistent-vigil-dir/"), std::string::npos) << r.error().message;
}

TEST(RulesState, InMemorySnapshotCarriesStateAcrossAReload) {
  TempDir dir;
  RecordingSink sink;
  auto before = load({dir.write("a.lua", rule("surge"))}, &sink);
  warm_up(*before, {pod("web-1")});
  auto after = load({dir.write("b.lua", rule("surge") + rule("other"))}, &sink);
  auto report = after->restore_snapshot(before->snapshot_state(), "reload");
  EXPECT_EQ(report.groups, 1u);
  EXPECT_EQ(surge_after_restart(*after, sink, {pod("web-1")}, "web-1").size(), 1u);
}

TEST(RulesState, ResolveOpenClosesEveryFiringBeforeAReload) {
  TempDir dir;
  RecordingSink sink;
  auto engine = load({dir.write("a.lua", rule("surge"))}, &sink);
  warm_up(*engine, {pod("web-1")});
  engine->tick(TickInput{T0 + 30, {drops("web-1", 120)}, {pod("web-1")}});
  ASSERT_EQ(sink.sent.size(), 1u);
  engine->resolve_open(T0 + 31);
  ASSERT_EQ(sink.sent.size(), 2u);
  EXPECT_EQ(sink.sent[1].status, AnomalyStatus::Resolved);
  EXPECT_EQ(sink.sent[1].id, sink.sent[0].id);
  EXPECT_DOUBLE_EQ(sink.sent[1].ended_at, T0 + 31);
  engine->resolve_open(T0 + 32);
  EXPECT_EQ(sink.sent.size(), 2u);
}
