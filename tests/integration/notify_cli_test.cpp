// `vigil notify test CHANNEL --config FILE`: the real binary sends a sample notification to a
// loopback receiver (exit 0), reports an undeliverable channel (exit 1, the reason without
// the URL's secret path) and an unknown channel. Needs no privileges.
#include <filesystem>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "support.h"

namespace vigil::test {
namespace {

TEST(NotifyCli, TestSendsASampleToTheChannel) {
  const std::string dir = make_temp_dir();
  httplib::Server server;
  std::mutex mu;
  std::vector<std::string> bodies;
  server.Post(".*", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    bodies.push_back(req.body);
    res.status = 204;
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  std::thread t([&] { server.listen_after_bind(); });
  const int dead = free_port();
  const std::string config = write_temp_file(
      dir, "vigil.yaml",
      "node: worker-9\nstate_dir: " + dir + "/state\nrules: []\nnotifiers:\n"
      "  - {name: hook, type: webhook, url: 'http://127.0.0.1:" + std::to_string(port) + "/T0K3N'}\n"
      "  - {name: down, type: slack, url: 'http://127.0.0.1:" + std::to_string(dead) + "/services/SECRET', timeout: 1s}\n");
  const std::string vigil = binary_path("vigil");

  auto ok = run(vigil + " notify test hook --config " + config);
  EXPECT_EQ(ok.status, 0) << ok.output;
  EXPECT_NE(ok.output.find("sent a test notification to channel 'hook' (webhook)"), std::string::npos) << ok.output;
  {
    std::lock_guard lock(mu);
    ASSERT_EQ(bodies.size(), 1u);
    auto body = nlohmann::json::parse(bodies[0]);
    EXPECT_EQ(body["rule"], "vigil_notify_test");
    EXPECT_EQ(body["scope"]["node"], "worker-9");
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/state/outbox"));  // never the agent's outbox

  auto down = run(vigil + " notify test down --config " + config);
  EXPECT_EQ(down.status, 1) << down.output;
  EXPECT_NE(down.output.find("cannot connect"), std::string::npos) << down.output;
  EXPECT_EQ(down.output.find("SECRET"), std::string::npos) << down.output;

  auto unknown = run(vigil + " notify test nope --config " + config);
  EXPECT_EQ(unknown.status, 1);
  EXPECT_NE(unknown.output.find("no notifier named 'nope' (configured: hook, down)"), std::string::npos)
      << unknown.output;
  server.stop();
  t.join();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace vigil::test
