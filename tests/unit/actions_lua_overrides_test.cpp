// notify(channel, a, { overrides }) from a Lua rule: severity, summary and extra labels reach
// the notification (and its resolve), and through a webhook channel the body; bad overrides
// are rule errors, not notifications.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "actions_test_receiver.h"
#include "rules/runtime/engine.h"

namespace vigil::actions {
namespace {

using namespace testing;
namespace fs = std::filesystem;

std::string rule_file(const std::string& dir, const std::string& handler) {
  const std::string path = dir + "/r.lua";
  std::ofstream(path) << "rule {\n"
                         "  name = \"queue\",\n"
                         "  metric = \"vigil_queue_depth\",\n"
                         "  detect = threshold { above = 10 },\n"
                         "  resolve_after = \"0s\",\n"
                         "  on_anomaly = function(a) " << handler << " end,\n"
                         "}\n";
  return path;
}

std::vector<Sample> depth(double v) {
  return {{"vigil_queue_depth", make_labels({{"namespace", "default"}, {"pod", "q"}}), v, SeriesKind::Gauge}};
}

std::unique_ptr<rules::RuleEngine> load(const std::string& file, ActionSink* sink) {
  rules::EngineOptions o;
  o.node = "node-a";
  o.channels = std::set<std::string>{"hook"};
  auto engine = rules::RuleEngine::load({file}, o, sink);
  EXPECT_TRUE(engine.ok()) << (engine.ok() ? "" : engine.error().message);
  return engine.ok() ? std::move(*engine) : nullptr;
}

TEST(LuaOverrides, SeveritySummaryAndLabelsReachTheWebhookBody) {
  const std::string dir = make_temp_dir();
  HttpReceiver rx;
  Dispatcher dispatcher;
  ASSERT_TRUE(dispatcher.add(must_make(channel("webhook", rx.url(), "hook"))).ok());
  auto engine = load(rule_file(dir, "notify(\"hook\", a, { severity = \"info\", summary = \"queue is long\", "
                                    "labels = { team = \"net\", tier = \"gold\" } })"),
                     &dispatcher);
  ASSERT_TRUE(engine);
  const std::vector<PodMeta> pods = {PodMeta{"default", "q", {}, "node-a"}};
  engine->tick(TickInput{1000, depth(50), pods});
  engine->tick(TickInput{1001, depth(5), pods});
  ASSERT_TRUE(rx.wait_ok(2));
  const auto firing = rx.ok_hits()[0].json();
  EXPECT_EQ(firing["severity"], "info");
  EXPECT_EQ(firing["summary"], "queue is long");
  EXPECT_EQ(firing["scope"]["group"], nlohmann::json({{"team", "net"}, {"tier", "gold"}}));
  EXPECT_EQ(firing["scope"]["pod"], "q");
  const auto resolved_body = rx.ok_hits()[1].json();
  EXPECT_EQ(resolved_body["status"], "resolved");
  EXPECT_EQ(resolved_body["severity"], "info");
  EXPECT_EQ(resolved_body["scope"]["group"], firing["scope"]["group"]);
  dispatcher.stop();
  fs::remove_all(dir);
}

class Recording : public ActionSink {
 public:
  void notify(const std::string&, const Anomaly& a) override { sent.push_back(a); }
  std::vector<Anomaly> sent;
};

TEST(LuaOverrides, BadOverridesAreRuleErrors) {
  const std::string dir = make_temp_dir();
  for (const char* handler : {"notify(\"hook\", a, { severty = \"info\" })",
                              "notify(\"hook\", a, { severity = \"urgent\" })",
                              "notify(\"hook\", a, { summary = 5 })",
                              "notify(\"hook\", a, { labels = { pod = \"other\" } })",
                              "notify(\"hook\", a, { labels = { [\"bad-name\"] = \"x\" } })",
                              "notify(\"hook\", a, \"critical\")"}) {
    Recording sink;
    auto engine = load(rule_file(dir, handler), &sink);
    ASSERT_TRUE(engine);
    engine->tick(TickInput{1000, depth(50), {PodMeta{"default", "q", {}, "node-a"}}});
    EXPECT_TRUE(sink.sent.empty()) << handler;
  }
  // nil, an empty table and a label equal to the group's are fine.
  Recording sink;
  auto engine = load(rule_file(dir, "notify(\"hook\", a, { labels = { pod = \"q\" } })"), &sink);
  engine->tick(TickInput{1000, depth(50), {PodMeta{"default", "q", {}, "node-a"}}});
  EXPECT_EQ(sink.sent.size(), 1u);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace vigil::actions
