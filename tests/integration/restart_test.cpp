// Persisted baselines across a crash: the agent is killed with SIGKILL after its rule warmed
// up and saved its state; restarted with the same config it catches a fault at once, without
// a new warm-up. The control (state file deleted) shows the same fault is missed during a
// warm-up, so the first half can fail.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

constexpr double kTick = 0.5;

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// "2026-11-25T12:34:56.789Z" -> unix seconds.
double parse_time(const std::string& text) {
  std::tm tm{};
  const char* rest = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest) return 0;
  double seconds = static_cast<double>(timegm(&tm));
  if (*rest == '.') seconds += std::stod(std::string("0") + rest);
  return seconds;
}

std::vector<nlohmann::json> firings_since(const std::vector<nlohmann::json>& bodies, double since) {
  std::vector<nlohmann::json> out;
  for (const auto& b : bodies)
    if (b.value("status", "") == "firing" && parse_time(b.value("started_at", "")) >= since) out.push_back(b);
  return out;
}

class RestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    VIGIL_REQUIRE_ROOT();
    lab_ = std::make_unique<Lab>(2);
    lab_->cmd("serve-http 2");
    dir_ = make_temp_dir();
    port_ = free_port();
    // The shipped rule (warm-up 20 s), notifying the test's receiver.
    const std::string rule = shipped_rule("pod-drop-surge.lua", {{"notify(\"default\"", "notify(\"hook\""}});
    ASSERT_FALSE(rule.empty()) << "rules/pack/pod-drop-surge.lua: no notify(\"default\"";
    ASSERT_NE(rule.find("warmup = \"20s\""), std::string::npos);
    write_temp_file(dir_, "drop.lua", rule);
    config_ = write_temp_file(dir_, "vigil.yaml",
                              "node: test-node\n"
                              "listen: 127.0.0.1:" + std::to_string(port_) + "\n"
                              "tick: 500ms\n"
                              "state_dir: " + dir_ + "/state\n"
                              "pods:\n  source: file\n  file: " + lab_->pods_file() + "\n"
                              "rules:\n  - \"" + dir_ + "/*.lua\"\n"  // a file added later is loaded too
                              "notifiers:\n"
                              "  - name: hook\n    type: webhook\n    url: " + receiver_.url() + "\n");
    state_file_ = dir_ + "/state/baselines.bin";
  }

  void TearDown() override {
    traffic_.reset();
    agent_.reset();
    lab_.reset();
    if (!dir_.empty()) run("rm -rf " + dir_);
  }

  // Starts the agent and waits (bounded) until it serves and has attached to both pods.
  void start_agent() {
    agent_ = std::make_unique<Process>(std::vector<std::string>{binary_path("vigil"), "agent", "--config", config_},
                                       dir_ + "/agent-" + std::to_string(starts_++) + ".log");
    for (int i = 0; i < 100; ++i) {
      int status = 0;
      auto pods = http_get("127.0.0.1", port_, "/api/v1/pods", &status);
      if (status == 200) {
        auto j = nlohmann::json::parse(pods, nullptr, false);
        if (j.is_array() && j.size() == 2 &&
            std::all_of(j.begin(), j.end(), [](const auto& p) { return p.value("attached", false); }))
          return;
      }
      ASSERT_TRUE(agent_->running()) << agent_->log();
      std::this_thread::sleep_for(100ms);
    }
    FAIL() << "agent did not attach to the lab pods:\n" << agent_->log();
  }

  void kill_agent() {
    ASSERT_EQ(kill(agent_->pid(), SIGKILL), 0);
    for (int i = 0; i < 100 && agent_->running(); ++i) std::this_thread::sleep_for(20ms);
    ASSERT_FALSE(agent_->running());
    agent_.reset();
  }

  // Injects the fault; returns the unix time just before it.
  double inject() {
    double before = unix_now();
    lab_->cmd("drop 2 30 ingress");
    return before;
  }

  size_t count_in_log(const std::string& text) const {
    std::string log = agent_->log();
    size_t n = 0;
    for (size_t at = log.find(text); at != std::string::npos; at = log.find(text, at + 1)) ++n;
    return n;
  }
  bool wait_for_log(const std::string& text, size_t times, std::chrono::seconds timeout) const {
    for (auto end = std::chrono::steady_clock::now() + timeout; std::chrono::steady_clock::now() < end;) {
      if (count_in_log(text) >= times) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }
  std::vector<std::string> rule_names() {
    std::vector<std::string> out;
    auto j = nlohmann::json::parse(http_get("127.0.0.1", port_, "/api/v1/rules"), nullptr, false);
    if (j.is_array())
      for (const auto& r : j) out.push_back(r.value("rule", ""));
    return out;
  }

  WebhookReceiver receiver_;
  std::unique_ptr<Lab> lab_;
  std::unique_ptr<Process> agent_;
  std::unique_ptr<Process> traffic_;
  std::string dir_, config_, state_file_;
  int port_ = 0;
  int starts_ = 0;
};

TEST_F(RestartTest, KilledAgentKeepsItsBaselineAndDetectsWithoutWarmUp) {
  ASSERT_NO_FATAL_FAILURE(start_agent());
  std::string lab = source_path("tests/lab/vigil-lab");
  traffic_ = std::make_unique<Process>(
      std::vector<std::string>{"/bin/sh", "-c",
                               "VIGIL_LAB_TRAFFIC=" + binary_path("tests/tools/vigil-lab-traffic") + " exec " + lab +
                                   " --prefix " + lab_->prefix() + " http 1 2 100 90"},
      dir_ + "/traffic.log");

  // Steady traffic past the 20 s warm-up, until the periodic save (every 30 s) has written.
  struct stat st {};
  for (int i = 0; i < 400 && stat(state_file_.c_str(), &st) != 0; ++i) std::this_thread::sleep_for(100ms);
  ASSERT_EQ(stat(state_file_.c_str(), &st), 0) << "no state file within 40 s\n" << agent_->log();
  ASSERT_TRUE(receiver_.bodies().empty()) << receiver_.bodies().front().dump();
  ASSERT_NO_FATAL_FAILURE(kill_agent());

  // Restarted with the same config: the pod's group starts from the saved baseline.
  const double restarted = unix_now();
  ASSERT_NO_FATAL_FAILURE(start_agent());
  std::this_thread::sleep_for(std::chrono::duration<double>(3 * kTick));  // a tick with rates
  const double injected = inject();
  ASSERT_TRUE(receiver_.wait_for([&](const auto& b) { return !firings_since(b, restarted).empty(); }, 5s))
      << "no firing within 5 s of the fault after the restart\n" << agent_->log();
  const auto firing = firings_since(receiver_.bodies(), restarted).front();
  EXPECT_EQ(firing["scope"]["pod"], "pod-2");
  const double delay = parse_time(firing["started_at"]) - injected;
  std::printf("after restart: anomaly started %.3f s after the injection (tick %.1f s)\n", delay, kTick);
  EXPECT_LE(delay, kTick + 1.0) << "more than one tick (plus read latency) after the onset";
  EXPECT_GE(delay, -0.05);
  EXPECT_NE(agent_->log().find("groups of 1 rules restored"), std::string::npos) << agent_->log();

  // Control: the same fault after a restart without the state file is inside a new warm-up.
  lab_->cmd("clear 2");
  ASSERT_NO_FATAL_FAILURE(kill_agent());
  ASSERT_EQ(unlink(state_file_.c_str()), 0);
  const double fresh = unix_now();
  ASSERT_NO_FATAL_FAILURE(start_agent());
  std::this_thread::sleep_for(std::chrono::duration<double>(3 * kTick));
  inject();
  std::this_thread::sleep_for(4s);  // eight ticks: the restored agent fired within three
  EXPECT_TRUE(firings_since(receiver_.bodies(), fresh).empty())
      << "fired during warm-up: " << firings_since(receiver_.bodies(), fresh).front().dump();
  lab_->cmd("clear 2");
}

TEST_F(RestartTest, RuleFilesReloadOnChangeAndSighupAndABadFileKeepsTheRunningRules) {
  ASSERT_NO_FATAL_FAILURE(start_agent());
  std::this_thread::sleep_for(1s);
  const std::string rule_file = dir_ + "/drop.lua";
  std::string good;
  {
    std::ifstream in(rule_file);
    std::stringstream text;
    text << in.rdbuf();
    good = text.str();
  }
  // A broken edit: reported with file and line, the running rule stays.
  write_temp_file(dir_, "drop.lua", "rule {\n  name = \"x\",\n  metric = ,\n}\n");
  ASSERT_TRUE(wait_for_log("the running rules are kept", 1, 5s)) << agent_->log();
  EXPECT_NE(agent_->log().find("drop.lua:3:"), std::string::npos) << agent_->log();
  EXPECT_EQ(rule_names(), std::vector<std::string>{"pod-drop-surge"});

  // A good edit adds a rule; the unchanged one keeps its groups' state.
  std::string second = good;
  const std::string name = "name = \"pod-drop-surge\"";
  second.replace(second.find(name), name.size(), "name = \"second-surge\"");
  write_temp_file(dir_, "drop.lua", good + second);
  ASSERT_TRUE(wait_for_log("rules reloaded", 1, 5s)) << agent_->log();
  EXPECT_NE(agent_->log().find("2 groups of 1 rules keep their state"), std::string::npos) << agent_->log();
  EXPECT_EQ(rule_names(), (std::vector<std::string>{"pod-drop-surge", "second-surge"}));

  // SIGHUP reloads without a change.
  ASSERT_EQ(kill(agent_->pid(), SIGHUP), 0);
  ASSERT_TRUE(wait_for_log("rules reloaded", 2, 5s)) << agent_->log();
  EXPECT_NE(agent_->log().find("4 groups of 2 rules keep their state"), std::string::npos) << agent_->log();
  EXPECT_TRUE(agent_->running());

  // A new file where the pattern points is loaded; the rules already running keep their state.
  std::string third = good;
  third.replace(third.find(name), name.size(), "name = \"third-surge\"");
  write_temp_file(dir_, "extra.lua", third);
  ASSERT_TRUE(wait_for_log("rules reloaded", 3, 5s)) << agent_->log();
  EXPECT_NE(agent_->log().find("rules reloaded from 2 files"), std::string::npos) << agent_->log();
  EXPECT_EQ(rule_names(), (std::vector<std::string>{"pod-drop-surge", "second-surge", "third-surge"}));
  // And a file taken away takes its rule with it.
  ASSERT_EQ(unlink((dir_ + "/extra.lua").c_str()), 0);
  ASSERT_TRUE(wait_for_log("rules reloaded", 4, 5s)) << agent_->log();
  EXPECT_EQ(rule_names(), (std::vector<std::string>{"pod-drop-surge", "second-surge"}));
  // A pattern that matches nothing any more is said once; the running rules stay.
  ASSERT_EQ(rename((dir_ + "/drop.lua").c_str(), (dir_ + "/drop.lua.off").c_str()), 0);
  ASSERT_TRUE(wait_for_log("matches no file", 1, 5s)) << agent_->log();
  std::this_thread::sleep_for(1500ms);  // three ticks: not said again
  EXPECT_EQ(count_in_log("matches no file"), 1u) << agent_->log();
  EXPECT_EQ(rule_names(), (std::vector<std::string>{"pod-drop-surge", "second-surge"}));
  ASSERT_EQ(rename((dir_ + "/drop.lua.off").c_str(), (dir_ + "/drop.lua").c_str()), 0);
  EXPECT_TRUE(agent_->running());
}

// A reload runs a new engine whose rules count from 0: their counters (anomalies, errors) go on
// from their values all the same, and the series of a rule that is gone (renamed here) go with
// it, gauges included: a quarantined or firing rule's would stay until the agent restarts.
TEST_F(RestartTest, RuleCountersGoOnAcrossAReloadAndAGoneRulesSeriesGo) {
  const std::string rule = "rule {\n  name = \"always-on\",\n  metric = \"vigil_pods\",\n  where = { state = \"attached\" },\n"
                           "  detect = threshold { above = 1 },\n  on_anomaly = function(a) error(\"on purpose\") end,\n}\n";
  write_temp_file(dir_, "always.lua", rule);
  ASSERT_NO_FATAL_FAILURE(start_agent());
  std::string text;
  auto value = [&](const std::string& name, const std::map<std::string, std::string>& labels) {
    return metric_value(text, name, labels).value_or(-1);
  };
  const std::map<std::string, std::string> always{{"rule", "always-on"}};
  const std::map<std::string, std::string> runtime{{"rule", "always-on"}, {"kind", "runtime"}};
  ASSERT_TRUE(wait_until([&] {
    text = http_get("127.0.0.1", port_, "/metrics");
    return value("vigil_anomalies_total", always) == 1 && value("vigil_rule_errors_total", runtime) == 1;
  }, 10s)) << text << agent_->log();
  EXPECT_EQ(value("vigil_rule_groups", {{"rule", "always-on"}, {"state", "firing"}}), 1);

  ASSERT_EQ(kill(agent_->pid(), SIGHUP), 0);
  ASSERT_TRUE(wait_for_log("rules reloaded", 1, 5s)) << agent_->log();
  text = metrics_after_ticks(port_, 2);
  // The reload resolves what fired, and the new engine fires it again: what it counted, on top.
  double fired_since = -1, errors_since = -1;
  auto rules = nlohmann::json::parse(http_get("127.0.0.1", port_, "/api/v1/rules"), nullptr, false);
  for (const auto& r : rules)
    if (r.value("rule", "") == "always-on") {
      fired_since = r.value("anomalies_fired", -1.0);
      errors_since = r["errors"].value("runtime", -1.0);
    }
  ASSERT_GE(fired_since, 0) << rules.dump(2);
  EXPECT_EQ(value("vigil_anomalies_total", always), 1 + fired_since) << "fell back with the new engine";
  EXPECT_EQ(value("vigil_rule_errors_total", runtime), 1 + errors_since);
  EXPECT_EQ(value("vigil_rule_groups", {{"rule", "always-on"}, {"state", "firing"}}), 1);

  std::string renamed = rule;
  renamed.replace(renamed.find("always-on"), 9, "renamed-on");
  write_temp_file(dir_, "always.lua", renamed);
  ASSERT_TRUE(wait_for_log("rules reloaded", 2, 5s)) << agent_->log();
  text = metrics_after_ticks(port_, 2);
  for (const char* family : {"vigil_anomalies_total", "vigil_rule_errors_total", "vigil_rule_groups", "vigil_rule_quarantined"}) {
    EXPECT_FALSE(metric_value(text, family, always)) << family << " of the rule that is gone";
    EXPECT_TRUE(metric_value(text, family, {{"rule", "renamed-on"}})) << family;
  }
  EXPECT_TRUE(metric_value(text, "vigil_anomalies_total", {{"rule", "pod-drop-surge"}})) << "the other rule's stay";
}

}  // namespace
}  // namespace vigil::test
