// The outbox across a crash of the agent itself: 100 anomalies fire in one tick while the
// webhook receiver is down, the agent is killed with SIGKILL once all 100 are on disk, and the
// restarted agent (with no rules: nothing new can fire) delivers every one of them, in the
// order they fired, each once, with the idempotency key it had before the crash.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr int kAnomalies = 100;

size_t queued(const std::string& dir) {
  std::error_code ec;
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir, ec)) n += e.path().extension() == ".json";
  return n;
}

// 100 rules, one anomaly each: a gauge the agent always exports (the capacity of its traffic
// map) crosses a threshold of 0 on the first tick.
std::string hundred_rules() {
  return "for i = 1, " + std::to_string(kAnomalies) + " do\n"
         "  rule {\n"
         "    name = string.format(\"always-%03d\", i),\n"
         "    metric = \"vigil_bpf_map_max_entries\",\n"
         "    where = { map = \"vigil_traffic\" },\n"
         "    by = {},\n"
         "    detect = threshold { above = 0 },\n"
         "    pending = \"0s\",\n"
         "    on_anomaly = function(a) notify(\"hook\", a) end,\n"
         "  }\n"
         "end\n";
}

TEST(AgentKillNine, HundredQueuedNotificationsAreDeliveredAfterRestart) {
  VIGIL_REQUIRE_ROOT();  // the agent loads its eBPF programs
  const ScopedTempDir temp;
  const std::string& dir = temp.path();
  const int api_port = free_port();
  const int hook_port = free_port();  // nothing listens there until the restart
  write_temp_file(dir, "always.lua", hundred_rules());
  const std::string common = "node: test-node\n"
                             "tick: 200ms\n"
                             "state_dir: " + dir + "/state\n"
                             "pods: {source: none}\n"
                             "notifiers:\n"
                             "  - name: hook\n    type: webhook\n"
                             "    url: http://127.0.0.1:" + std::to_string(hook_port) + "/hook\n";
  const std::string first = write_temp_file(dir, "first.yaml",
                                            common + "listen: 127.0.0.1:" + std::to_string(api_port) + "\n"
                                            "rules:\n  - " + dir + "/always.lua\n");
  const std::string outbox = dir + "/state/outbox/hook";

  // The first agent fires the 100 anomalies; delivery fails (connection refused) and retries.
  auto agent = std::make_unique<Process>(std::vector<std::string>{binary_path("vigil"), "agent", "--config", first},
                                         dir + "/agent-1.log");
  for (int i = 0; i < 200 && queued(outbox) < kAnomalies; ++i) {
    ASSERT_TRUE(agent->running()) << agent->log();
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(queued(outbox), static_cast<size_t>(kAnomalies)) << agent->log();
  ASSERT_EQ(kill(agent->pid(), SIGKILL), 0);
  for (int i = 0; i < 100 && agent->running(); ++i) std::this_thread::sleep_for(20ms);
  ASSERT_FALSE(agent->running());
  const std::string first_log = agent->log();
  agent.reset();

  // What was on disk at the crash: every message whole, each with its key.
  std::map<std::string, std::string> key_of;  // rule -> idempotency key
  for (const auto& e : fs::directory_iterator(outbox)) {
    if (e.path().extension() != ".json") continue;
    std::ifstream in(e.path());
    auto j = nlohmann::json::parse(in, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << e.path() << " is not whole JSON";
    key_of[j["anomaly"]["rule"].get<std::string>()] = j["key"].get<std::string>();
  }
  ASSERT_EQ(key_of.size(), static_cast<size_t>(kAnomalies));

  // The receiver comes up, and the agent restarts with the same state_dir and no rules.
  WebhookReceiver receiver(hook_port);
  const std::string second = write_temp_file(dir, "second.yaml",
                                             common + "listen: 127.0.0.1:" + std::to_string(free_port()) + "\n"
                                             "rules: []\n");
  agent = std::make_unique<Process>(std::vector<std::string>{binary_path("vigil"), "agent", "--config", second},
                                    dir + "/agent-2.log");
  ASSERT_TRUE(receiver.wait_for([](const auto& b) { return b.size() >= kAnomalies; }, 30s))
      << receiver.bodies().size() << " delivered\n" << agent->log();
  std::this_thread::sleep_for(1s);  // a duplicate would arrive now
  const auto bodies = receiver.bodies();
  const auto keys = receiver.idempotency_keys();
  ASSERT_EQ(bodies.size(), static_cast<size_t>(kAnomalies)) << agent->log();
  std::set<std::string> ids;
  for (int i = 0; i < kAnomalies; ++i) {
    char rule[32];
    snprintf(rule, sizeof rule, "always-%03d", i + 1);
    EXPECT_EQ(bodies[i].value("rule", ""), rule) << "delivered out of order at " << i;
    EXPECT_EQ(bodies[i].value("status", ""), "firing");
    EXPECT_EQ(keys[i], key_of[rule]) << "the key given before the crash";
    ids.insert(bodies[i].value("id", ""));
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kAnomalies));
  for (int i = 0; i < 100 && queued(outbox) > 0; ++i) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(queued(outbox), 0u) << "delivered messages must leave the outbox";
  EXPECT_EQ(agent->terminate(), 0) << agent->log();
  EXPECT_NE(first_log.find("hook"), std::string::npos) << "the first agent logged no failed delivery:\n" << first_log;
}

}  // namespace
}  // namespace vigil::test
