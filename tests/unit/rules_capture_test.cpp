// Captures from rules: the `capture = {...}` option starts one capture per firing before
// anyone hears of the anomaly, capture{} in a handler returns an id or nil and the refusal,
// ids travel with the episode (a.captures, notify, the resolve), refusals are counted and not
// fatal, bad values are load errors with file:line, lookback_pods() names the pods to watch.
#include "rules_engine_support.h"

using namespace vigil;
using namespace vigil::rules;
using namespace vigil::rules::testing;

namespace {

// Records notifications and capture requests in one sequence, so their order can be checked.
class CaptureSink : public RecordingSink {
 public:
  void notify(const std::string& channel, const Anomaly& anomaly) override {
    events.push_back("notify " + channel + " " + to_string(anomaly.status));
    RecordingSink::notify(channel, anomaly);
  }
  Result<std::string> capture(const CaptureSpec& spec) override {
    events.push_back("capture");
    specs.push_back(spec);
    if (!refuse.empty()) return make_error(refuse);
    return "cap-" + std::to_string(specs.size());
  }
  std::vector<std::string> events;
  std::vector<CaptureSpec> specs;
  std::string refuse;  // non-empty: every capture is refused with this
};

std::string queue_rule(const std::string& extra, const std::string& handler = "notify(\"default\", a)",
                       const std::string& by = "") {
  return R"lua(
rule {
  name = "queue",
  metric = "vigil_queue_depth",
  detect = threshold { above = 10 },
  resolve_after = "1s",
  )lua" + by + extra + R"lua(
  on_anomaly = function(a) )lua" + handler + R"lua( end,
}
)lua";
}

struct TwoPods {
  std::unique_ptr<RuleEngine> engine;
  std::vector<PodMeta> pods{pod("web-1"), pod("web-2")};
  void tick(int t, double web1, double web2 = 0) {
    engine->tick({T0 + t, {gauge("vigil_queue_depth", "web-1", web1), gauge("vigil_queue_depth", "web-2", web2)}, pods});
  }
};

std::string load_error_with(const std::string& text, EngineOptions o = options()) {
  RuleDir dir;
  auto engine = RuleEngine::load({dir.write("c.lua", text)}, o, nullptr);
  return engine.ok() ? "" : engine.error().message;
}

}  // namespace

TEST(RulesCapture, OptionStartsOneCapturePerFiringBeforeTheHandler) {
  RuleDir dir;
  CaptureSink sink;
  // The handler sees the capture already in a.captures, and the pod in a.pods.
  const std::string handler = R"lua(
    assert(#a.pods == 1 and a.pods[1] == "default/web-1", "a.pods")
    assert(#a.captures == 1 and a.captures[1] == "cap-1", "a.captures")
    notify("default", a))lua";
  const std::string path = dir.write(
      "c.lua", queue_rule(R"(capture = { before = "10s", after = "1m", filter = "tcp port 443", snaplen = 256,
                               max_packets = 1000, max_bytes = 1048576 },)",
                          handler));
  TwoPods run{load({path}, &sink)};
  ASSERT_TRUE(run.engine);
  run.tick(0, 50);
  run.tick(1, 50);  // still firing: no second capture
  ASSERT_EQ(sink.specs.size(), 1u);
  const CaptureSpec& c = sink.specs[0];
  EXPECT_EQ(c.pods, std::vector<std::string>{"default/web-1"});
  EXPECT_DOUBLE_EQ(c.before_seconds, 10);
  EXPECT_DOUBLE_EQ(c.after_seconds, 60);
  EXPECT_EQ(c.filter, "tcp port 443");
  EXPECT_EQ(c.snaplen, 256u);
  EXPECT_EQ(c.max_packets, 1000u);
  EXPECT_EQ(c.max_bytes, 1048576u);
  EXPECT_EQ(c.rule, "queue");
  ASSERT_EQ(sink.sent.size(), 1u);
  EXPECT_EQ(c.anomaly_id, sink.sent[0].anomaly.id);
  EXPECT_EQ(c.reason, sink.sent[0].anomaly.summary);
  EXPECT_EQ(sink.sent[0].anomaly.captures, std::vector<std::string>{"cap-1"});
  EXPECT_EQ(sink.events, (std::vector<std::string>{"capture", "notify default firing"}));

  // The resolve carries the same capture; a new episode gets a new one.
  run.tick(2, 0);
  run.tick(3, 0);
  ASSERT_EQ(sink.sent.size(), 2u);
  EXPECT_EQ(sink.sent[1].anomaly.status, AnomalyStatus::Resolved);
  EXPECT_EQ(sink.sent[1].anomaly.captures, std::vector<std::string>{"cap-1"});
  auto st = status_of(*run.engine, "queue");
  EXPECT_TRUE(st.errors.empty()) << st.last_error;
  EXPECT_FALSE(st.disabled);
}

TEST(RulesCapture, DefaultsAreLeftToTheAgentAndEveryGroupGetsItsOwn) {
  RuleDir dir;
  CaptureSink sink;
  TwoPods run{load({dir.write("c.lua", queue_rule("capture = {},"))}, &sink)};
  ASSERT_TRUE(run.engine);
  run.tick(0, 50, 50);
  ASSERT_EQ(sink.specs.size(), 2u);
  EXPECT_DOUBLE_EQ(sink.specs[0].before_seconds, -1);
  EXPECT_DOUBLE_EQ(sink.specs[0].after_seconds, -1);
  EXPECT_EQ(sink.specs[0].filter, "");
  EXPECT_EQ(sink.specs[0].snaplen, 0u);
  EXPECT_EQ(sink.specs[0].max_packets, 0u);
  EXPECT_EQ(sink.specs[0].max_bytes, 0u);
  std::set<std::string> pods{sink.specs[0].pods.at(0), sink.specs[1].pods.at(0)};
  EXPECT_EQ(pods, (std::set<std::string>{"default/web-1", "default/web-2"}));
  EXPECT_NE(sink.specs[0].anomaly_id, sink.specs[1].anomaly_id);
  // The observer (what `vigil rules test` records) sees the capture too.
  ASSERT_EQ(sink.sent.size(), 2u);
  for (const auto& s : sink.sent) EXPECT_EQ(s.anomaly.captures.size(), 1u);
}

TEST(RulesCapture, ObserverSeesTheCapture) {
  RuleDir dir;
  CaptureSink sink;
  std::vector<Anomaly> seen;
  EngineOptions o = options();
  o.observer = [&](const Anomaly& a) { seen.push_back(a); };
  auto engine = RuleEngine::load({dir.write("c.lua", queue_rule("capture = { after = 5 },"))}, o, &sink);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  (*engine)->tick({T0, {gauge("vigil_queue_depth", "web-1", 50)}, {pod("web-1")}});
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].captures, std::vector<std::string>{"cap-1"});
  EXPECT_DOUBLE_EQ(sink.specs.at(0).after_seconds, 5);
}

TEST(RulesCapture, RefusalsAreCountedAndNotFatal) {
  RuleDir dir;
  CaptureSink sink;
  sink.refuse = "too many captures running";
  const std::string handler = R"lua(
    assert(#a.captures == 0, "no capture")
    notify("default", a))lua";
  TwoPods run{load({dir.write("c.lua", queue_rule("capture = { after = \"30s\" },", handler))}, &sink)};
  ASSERT_TRUE(run.engine);
  // More refusals than quarantine_after_errors: the rule keeps running and notifying.
  for (int episode = 0; episode < 5; ++episode) {
    run.tick(episode * 3, 50);
    run.tick(episode * 3 + 1, 0);
    run.tick(episode * 3 + 2, 0);
  }
  EXPECT_EQ(sink.specs.size(), 5u);
  EXPECT_EQ(sink.with(AnomalyStatus::Firing).size(), 5u);
  for (const auto& a : sink.with(AnomalyStatus::Firing)) EXPECT_TRUE(a.captures.empty());
  auto st = status_of(*run.engine, "queue");
  EXPECT_EQ(st.errors["capture"], 5u);
  EXPECT_EQ(st.errors.size(), 1u);
  EXPECT_FALSE(st.disabled);

  // A sink without captures (the default ActionSink::capture) refuses too.
  RecordingSink plain;
  TwoPods run2{load({dir.write("d.lua", queue_rule("capture = {},"))}, &plain)};
  ASSERT_TRUE(run2.engine);
  run2.tick(0, 50);
  EXPECT_EQ(status_of(*run2.engine, "queue").errors["capture"], 1u);
  EXPECT_EQ(plain.sent.size(), 1u);
}

TEST(RulesCapture, CaptureInAHandlerReturnsTheIdAndNotifyCarriesIt) {
  RuleDir dir;
  CaptureSink sink;
  const std::string handler = R"lua(
    local id, err = capture { before = "5s", after = "20s", filter = "udp port 53", max_packets = 10 }
    assert(id == "cap-1" and err == nil, "id")
    local id2 = capture { pods = { "other/db-0", "default/web-1" }, snaplen = 96 }
    assert(id2 == "cap-2", "id2")
    notify("default", a))lua";
  TwoPods run{load({dir.write("c.lua", queue_rule("", handler))}, &sink)};
  ASSERT_TRUE(run.engine);
  run.tick(0, 50);
  ASSERT_EQ(sink.specs.size(), 2u);
  EXPECT_EQ(sink.specs[0].pods, std::vector<std::string>{"default/web-1"});  // the anomaly's pod by default
  EXPECT_DOUBLE_EQ(sink.specs[0].before_seconds, 5);
  EXPECT_DOUBLE_EQ(sink.specs[0].after_seconds, 20);
  EXPECT_EQ(sink.specs[0].filter, "udp port 53");
  EXPECT_EQ(sink.specs[0].max_packets, 10u);
  EXPECT_EQ(sink.specs[0].rule, "queue");
  EXPECT_EQ(sink.specs[1].pods, (std::vector<std::string>{"other/db-0", "default/web-1"}));
  EXPECT_EQ(sink.specs[1].snaplen, 96u);
  ASSERT_EQ(sink.sent.size(), 1u);
  EXPECT_EQ(sink.specs[0].anomaly_id, sink.sent[0].anomaly.id);
  EXPECT_EQ(sink.sent[0].anomaly.captures, (std::vector<std::string>{"cap-1", "cap-2"}));
  run.tick(1, 0);
  run.tick(2, 0);
  ASSERT_EQ(sink.sent.size(), 2u);
  EXPECT_EQ(sink.sent[1].anomaly.captures, (std::vector<std::string>{"cap-1", "cap-2"}));
  EXPECT_TRUE(status_of(*run.engine, "queue").errors.empty()) << status_of(*run.engine, "queue").last_error;
}

TEST(RulesCapture, RefusedCaptureInAHandlerReturnsNilAndTheReason) {
  RuleDir dir;
  CaptureSink sink;
  sink.refuse = "captures are disabled";
  const std::string handler = R"lua(
    local id, err = capture { pods = a.pods }
    assert(id == nil and err == "captures are disabled", tostring(id) .. " " .. tostring(err))
    notify("default", a))lua";
  TwoPods run{load({dir.write("c.lua", queue_rule("", handler))}, &sink)};
  ASSERT_TRUE(run.engine);
  run.tick(0, 50);
  ASSERT_EQ(sink.sent.size(), 1u);
  EXPECT_TRUE(sink.sent[0].anomaly.captures.empty());
  auto st = status_of(*run.engine, "queue");
  EXPECT_EQ(st.errors["capture"], 1u);
  EXPECT_EQ(st.errors.count("runtime"), 0u) << st.last_error;
}

TEST(RulesCapture, CaptureMisuseIsARuntimeErrorWithFileAndLine) {
  struct Case {
    std::string call;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"capture()", "capture: expects a table"},
      {"capture(\"x\")", "capture: expects a table"},
      {"capture { befor = \"1s\" }", "capture: unknown field 'befor' (did you mean 'before'?)"},
      {"capture { after = -1 }", "capture: field 'after': a duration must be >= 0 seconds"},
      {"capture { after = \"soon\" }", "capture: field 'after'"},
      {"capture { filter = 443 }", "capture: field 'filter' must be a string"},
      {"capture { snaplen = -5 }", "capture: field 'snaplen' must be a whole number from 0"},
      {"capture { max_bytes = 1.5 }", "capture: field 'max_bytes' must be a whole number"},
      {"capture { max_packets = \"10\" }", "capture: field 'max_packets' must be a whole number"},
      {"capture { pods = {} }", "capture: field 'pods' is empty"},
      {"capture { pods = { 1 } }", "capture: field 'pods' must be a list of \"namespace/name\" strings"},
      {"capture { pods = \"web-1\" }", "capture: field 'pods': 'web-1' is not \"namespace/name\""},
      {"capture { 1 }", "capture: takes named fields only"},
  };
  for (const auto& c : cases) {
    RuleDir dir;
    CaptureSink sink;
    TwoPods run{load({dir.write("c.lua", queue_rule("", c.call))}, &sink)};
    ASSERT_TRUE(run.engine) << c.call;
    run.tick(0, 50);
    auto st = status_of(*run.engine, "queue");
    EXPECT_EQ(st.errors["runtime"], 1u) << c.call;
    EXPECT_NE(st.last_error.find(dir.path("c.lua") + ":8: " + c.message), std::string::npos)
        << c.call << "\n" << st.last_error;
    EXPECT_TRUE(sink.specs.empty()) << c.call;
  }
}

TEST(RulesCapture, CaptureOutsideAHandlerAndWithoutPods) {
  // At load time (the file's top level): an error naming the line.
  EXPECT_NE(load_error_with("capture { pods = { \"a/b\" } }\n").find("c.lua:1: capture: can only be called from on_anomaly or on_resolve"),
            std::string::npos);
  // A rule not grouped by pod has no a.pods: capture{} needs pods then.
  RuleDir dir;
  CaptureSink sink;
  const std::string handler = R"lua(
    assert(#a.pods == 0, "no pods")
    if not pcall(capture, {}) then capture { pods = { "default/web-1" } } end
    capture {})lua";
  TwoPods run{load({dir.write("c.lua", queue_rule("", handler, "by = {},"))}, &sink)};
  ASSERT_TRUE(run.engine);
  run.tick(0, 50);
  ASSERT_EQ(sink.specs.size(), 1u);
  EXPECT_EQ(sink.specs[0].pods, std::vector<std::string>{"default/web-1"});
  auto st = status_of(*run.engine, "queue");
  EXPECT_NE(st.last_error.find("c.lua:11: capture: the anomaly has no pod"), std::string::npos) << st.last_error;
}

TEST(RulesCapture, BadOptionValuesAreLoadErrorsNamingFileLineAndField) {
  struct Case {
    std::string option;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"capture = \"yes\",", "field 'capture' must be a table"},
      {"capture = { befor = \"10s\" },", "field 'capture': unknown field 'befor' (did you mean 'before'?)"},
      {"capture = { pods = { \"a/b\" } },", "field 'capture': unknown field 'pods'"},
      {"capture = { before = -3 },", "field 'capture.before': a duration must be >= 0 seconds"},
      {"capture = { after = \"-3s\" },", "field 'capture.after'"},
      {"capture = { after = true },", "field 'capture.after': must be a duration like \"30s\" (got boolean)"},
      {"capture = { filter = 443 },", "field 'capture.filter' must be a string (got number)"},
      {"capture = { snaplen = -1 },", "field 'capture.snaplen' must be a whole number from 0 (the agent's default) to 262144 (got -1)"},
      {"capture = { snaplen = 1e9 },", "field 'capture.snaplen' must be a whole number"},
      {"capture = { max_packets = 2.5 },", "field 'capture.max_packets' must be a whole number"},
      {"capture = { max_bytes = \"1MB\" },", "field 'capture.max_bytes' must be a whole number from 0 (the agent's default) to 1000000000000000 (got string)"},
      {"capture = { 10 },", "field 'capture': takes named fields only"},
  };
  for (const auto& c : cases) {
    const std::string error = load_error_with(queue_rule(c.option));
    EXPECT_NE(error.find("c.lua:2: rule 'queue': " + c.message), std::string::npos) << c.option << "\n" << error;
  }
  // Captures are of pods: the rule must be grouped by namespace and pod.
  for (const std::string by : {"by = {},", "by = { \"pod\" },", "by = { \"namespace\" },"}) {
    const std::string error = load_error_with(queue_rule("capture = {},", "notify(\"default\", a)", by));
    EXPECT_NE(error.find("c.lua:2: rule 'queue': field 'capture': captures are of pods, so the rule must be grouped by pod"),
              std::string::npos)
        << by << "\n" << error;
  }
  EXPECT_EQ(load_error_with(queue_rule("capture = {},", "notify(\"default\", a)", "by = { \"namespace\", \"pod\", \"direction\" },")), "");
}

TEST(RulesCapture, FilterCheckHookRejectsAtLoadAndInHandlers) {
  EngineOptions o = options();
  std::vector<std::string> checked;
  o.check_capture_filter = [&](const std::string& f) -> std::string {
    checked.push_back(f);
    return f == "tcp port 443" ? "" : "syntax error";
  };
  EXPECT_EQ(load_error_with(queue_rule("capture = { filter = \"tcp port 443\" },"), o), "");
  EXPECT_EQ(checked, std::vector<std::string>{"tcp port 443"});
  const std::string error = load_error_with(queue_rule("capture = { filter = \"tcp prot 443\" },"), o);
  EXPECT_NE(error.find("c.lua:2: rule 'queue': field 'capture.filter': 'tcp prot 443': syntax error"), std::string::npos)
      << error;
  // No filter, nothing to check.
  checked.clear();
  EXPECT_EQ(load_error_with(queue_rule("capture = {},"), o), "");
  EXPECT_TRUE(checked.empty());

  // capture{} in a handler: a bad filter is a runtime error and nothing is asked of the sink.
  RuleDir dir;
  CaptureSink sink;
  auto engine = RuleEngine::load({dir.write("c.lua", queue_rule("", "capture { filter = \"bogus\" }"))}, o, &sink);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  (*engine)->tick({T0, {gauge("vigil_queue_depth", "web-1", 50)}, {pod("web-1")}});
  EXPECT_TRUE(sink.specs.empty());
  auto st = status_of(**engine, "queue");
  EXPECT_NE(st.last_error.find("c.lua:8: capture: field 'filter': syntax error"), std::string::npos) << st.last_error;
}

TEST(RulesCapture, LookbackPodsNameTheGroupsOfRulesWithACapture) {
  RuleDir dir;
  CaptureSink sink;
  const std::string with = dir.write("with.lua", queue_rule("capture = { before = \"10s\" },"));
  const std::string without = dir.write("without.lua", R"lua(
rule {
  name = "other",
  metric = "vigil_other_depth",
  detect = threshold { above = 10 },
}
rule {
  name = "node-wide",
  metric = "vigil_queue_depth",
  by = {},
  detect = threshold { above = 10 },
}
)lua");
  auto engine = load({with, without}, &sink);
  ASSERT_TRUE(engine);
  EXPECT_TRUE(engine->lookback_pods().empty()) << "no groups before the first tick";
  // Groups seeded from the pod list count, before any series of theirs.
  std::vector<PodMeta> pods{pod("web-1"), pod("web-2"), PodMeta{"shop", "cart-0", {}, "node-a"}};
  engine->tick({T0, {gauge("vigil_other_depth", "web-1", 1)}, pods});
  EXPECT_EQ(engine->lookback_pods(), (std::set<std::string>{"default/web-1", "default/web-2", "shop/cart-0"}));
  // A pod that goes away is forgotten with its group.
  pods.pop_back();
  for (int t = 1; t <= 400; t += 50) engine->tick({T0 + t, {}, pods});
  EXPECT_EQ(engine->lookback_pods(), (std::set<std::string>{"default/web-1", "default/web-2"}));
}

// A group that turns pending in a rule that can capture (a `capture` option or an on_anomaly
// handler) names its pod until it fires or comes back; rules that cannot capture, and node-wide
// groups, name none.
TEST(RulesCapture, PendingPodsAreTheGroupsAboutToFireInRulesThatCanCapture) {
  RuleDir dir;
  CaptureSink sink;
  const auto pending_rule = [](const std::string& name, const std::string& metric, const std::string& extra) {
    return "rule {\n  name = \"" + name + "\",\n  metric = \"" + metric +
           "\",\n  detect = threshold { above = 10 },\n  pending = \"3s\",\n  resolve_after = \"1s\",\n" + extra +
           "}\n";
  };
  const std::string files = pending_rule("handler", "vigil_queue_depth", "  on_anomaly = function(a) end,\n") +
                            pending_rule("option", "vigil_other_depth", "  capture = {},\n") +
                            pending_rule("silent", "vigil_third_depth", "") +
                            pending_rule("node", "vigil_queue_depth", "  by = {},\n  on_anomaly = function(a) end,\n");
  auto engine = load({dir.write("p.lua", files)}, &sink);
  ASSERT_TRUE(engine);
  const std::vector<PodMeta> pods{pod("web-1"), pod("web-2"), pod("web-3")};
  auto tick = [&](int t, double queue1, double other2, double third3) {
    engine->tick({T0 + t,
                  {gauge("vigil_queue_depth", "web-1", queue1), gauge("vigil_other_depth", "web-2", other2),
                   gauge("vigil_third_depth", "web-3", third3)},
                  pods});
  };
  tick(0, 0, 0, 0);
  tick(1, 0, 0, 0);
  EXPECT_TRUE(engine->pending_pods().empty());
  tick(2, 50, 50, 50);  // anomalous: pending for 3 s
  EXPECT_EQ(engine->pending_pods(), (std::set<std::string>{"default/web-1", "default/web-2"}));
  // The rules' status counts them too (vigil_rule_groups), those that cannot capture included.
  EXPECT_EQ(status_of(*engine, "silent").pending, 1u);
  EXPECT_EQ(status_of(*engine, "handler").pending, 1u);
  EXPECT_EQ(status_of(*engine, "handler").groups, 1u) << "a threshold above 0 makes groups from its series only";
  EXPECT_EQ(status_of(*engine, "option").groups, 3u) << "a capture option keeps a group for every pod";
  tick(3, 50, 0, 50);  // web-2 back within bounds before firing
  EXPECT_EQ(engine->pending_pods(), std::set<std::string>{"default/web-1"});
  tick(4, 50, 0, 50);
  EXPECT_EQ(engine->pending_pods(), std::set<std::string>{"default/web-1"});
  tick(5, 50, 0, 50);  // 3 s: web-1 fires, and is no longer about to
  EXPECT_TRUE(engine->pending_pods().empty());
  EXPECT_EQ(status_of(*engine, "handler").pending, 0u);
  EXPECT_EQ(status_of(*engine, "handler").firing, 1u);
  EXPECT_EQ(status_of(*engine, "option").pending, 0u);
  EXPECT_EQ(status_of(*engine, "option").firing, 0u);
  const auto open = engine->open_anomalies();
  EXPECT_EQ(std::count_if(open.begin(), open.end(), [](const Anomaly& a) { return a.rule == "handler"; }), 1);
  // Pending again after the resolve; a group forgotten while pending leaves none behind.
  for (int t = 6; t <= 9; ++t) tick(t, 0, 0, 0);
  EXPECT_TRUE(engine->open_anomalies().empty());
  EXPECT_EQ(status_of(*engine, "handler").firing, 0u);
  tick(10, 50, 0, 0);
  EXPECT_EQ(engine->pending_pods(), std::set<std::string>{"default/web-1"});
  for (int t = 11; t <= 400; t += 50) engine->tick({T0 + t, {}, {}});
  EXPECT_TRUE(engine->pending_pods().empty());
  EXPECT_EQ(status_of(*engine, "handler").groups, 0u);
  EXPECT_EQ(status_of(*engine, "handler").pending, 0u) << "a group forgotten while pending is not counted";
  tick(500, 0, 0, 0);
  tick(501, 50, 50, 0);
  EXPECT_EQ(engine->pending_pods(), (std::set<std::string>{"default/web-1", "default/web-2"}));
}

TEST(RulesCapture, QuarantinedRulesNeedNoLookback) {
  RuleDir dir;
  CaptureSink sink;
  auto engine = load({dir.write("c.lua", queue_rule("capture = {},", "error('boom')"))}, &sink);
  ASSERT_TRUE(engine);
  std::vector<PodMeta> pods{pod("web-1")};
  engine->tick({T0, {}, pods});
  EXPECT_EQ(engine->lookback_pods(), std::set<std::string>{"default/web-1"});
  for (int i = 1; i <= 4; ++i) {
    engine->tick({T0 + 3.0 * i, {gauge("vigil_queue_depth", "web-1", 50)}, pods});
    engine->tick({T0 + 3.0 * i + 1, {gauge("vigil_queue_depth", "web-1", 0)}, pods});
    engine->tick({T0 + 3.0 * i + 2, {gauge("vigil_queue_depth", "web-1", 0)}, pods});
  }
  ASSERT_TRUE(status_of(*engine, "queue").disabled);
  EXPECT_TRUE(engine->lookback_pods().empty());
}

TEST(RulesCapture, AHandlerCannotFloodTheAgent) {
  RuleDir dir;
  CaptureSink sink;
  // 100 calls after the option's capture: 15 reach the sink and fill the episode (16 captures),
  // the 16th call is refused for that, the others for the calls' limit, without asking the sink.
  const std::string handler = R"lua(
    local got, refused, last = 0, 0, nil
    for i = 1, 100 do
      local id, why = capture {}
      if id then got = got + 1 else refused = refused + 1; last = why end
    end
    assert(got == 15 and refused == 85, got .. " " .. refused)
    assert(last == "at most 16 capture{} calls per handler call", last)
    notify("default", a))lua";
  TwoPods run{load({dir.write("c.lua", queue_rule("capture = {},", handler))}, &sink)};
  ASSERT_TRUE(run.engine);
  run.tick(0, 50);
  EXPECT_EQ(sink.specs.size(), 16u);  // the option's and 15 of the handler's
  ASSERT_EQ(sink.sent.size(), 1u);
  EXPECT_EQ(sink.sent[0].anomaly.captures.size(), 16u);
  auto st = status_of(*run.engine, "queue");
  EXPECT_EQ(st.errors["capture"], 85u);
  EXPECT_EQ(st.errors.count("runtime"), 0u) << st.last_error;
}
