// Against a real Alertmanager (prometheus-alertmanager, started here on a free loopback port
// with a temp config and storage, killed by pid at the end): Vigil's alerts appear in
// /api/v2/alerts with their labels, Alertmanager's own routing groups them into one webhook
// notification to a loopback receiver, and they resolve when Vigil resolves them. A second,
// dead Alertmanager URL (an HA peer that is down) does not hold delivery back.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <fcntl.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "actions/notifier_impl.h"
#include "actions_test_receiver.h"

extern char** environ;

namespace vigil::actions {
namespace {

using namespace testing;
namespace fs = std::filesystem;
using json = nlohmann::json;

int free_port() {
  HttpReceiver r;
  return r.port();
}

class Alertmanager {
 public:
  Alertmanager(const std::string& dir, const std::string& webhook_url) : port_(free_port()) {
    std::ofstream(dir + "/am.yml") << "route:\n"
                                      "  receiver: vigil-test\n"
                                      "  group_by: [alertname, namespace]\n"
                                      "  group_wait: 1s\n"
                                      "  group_interval: 1s\n"
                                      "  repeat_interval: 1h\n"
                                      "receivers:\n"
                                      "  - name: vigil-test\n"
                                      "    webhook_configs:\n"
                                      "      - url: " << webhook_url << "\n"
                                      "        send_resolved: true\n";
    const std::string listen = "--web.listen-address=127.0.0.1:" + std::to_string(port_);
    const std::string config = "--config.file=" + dir + "/am.yml";
    const std::string storage = "--storage.path=" + dir + "/data";
    const std::string log = dir + "/am.log";
    std::vector<std::string> args = {"prometheus-alertmanager", config, storage, listen, "--cluster.listen-address=",
                                     "--log.level=warn"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (posix_spawnp(&pid_, "prometheus-alertmanager", &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Alertmanager() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {  // up to 2 s, then SIGKILL
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      std::this_thread::sleep_for(20ms);
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  bool wait_ready() const {
    if (pid_ <= 0) return false;
    httplib::Client c("127.0.0.1", port_);
    return eventually([&] {
      auto r = c.Get("/-/ready");
      return r && r->status == 200;
    }, 15s);
  }
  json alerts() const {
    httplib::Client c("127.0.0.1", port_);
    auto r = c.Get("/api/v2/alerts");
    return r && r->status == 200 ? json::parse(r->body) : json();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int port_;
  pid_t pid_ = -1;
};

TEST(Alertmanager, AlertsAreListedGroupedRoutedAndResolved) {
  if (std::system("command -v prometheus-alertmanager >/dev/null") != 0)
    GTEST_SKIP() << "prometheus-alertmanager missing (.ci/setup.sh installs it)";
  const std::string dir = make_temp_dir();
  HttpReceiver routed;  // Alertmanager's webhook receiver
  {
    Alertmanager am(dir, routed.url("/am"));
    ASSERT_TRUE(am.wait_ready()) << "alertmanager did not become ready; see " << dir << "/am.log";

    auto c = channel("alertmanager", "", "am");
    c.url.clear();
    c.urls = {am.url(), "http://127.0.0.1:" + std::to_string(free_port())};  // the second peer is down
    c.resend_interval_seconds = 1;
    c.agent_url = "http://worker-1:9965";
    auto n = must_make(c);

    auto a = sample_anomaly("am-a", "pod-a");
    auto b = sample_anomaly("am-b", "pod-b");
    b.scope.emplace_back("server", "10.96.0.10");
    const double now = unix_now();
    a.started_at = b.started_at = now;
    n->enqueue(a);
    n->enqueue(b);

    json listed;
    ASSERT_TRUE(eventually([&] {
      listed = am.alerts();
      return listed.is_array() && listed.size() == 2;
    }, 15s)) << listed.dump();
    std::map<std::string, json> by_pod;
    for (const auto& alert : listed) by_pod[alert["labels"]["pod"]] = alert;
    EXPECT_EQ(by_pod["pod-a"]["labels"], json({{"alertname", "pod_drop_surge"},
                                                {"rule", "pod_drop_surge"},
                                                {"severity", "critical"},
                                                {"node", "worker-1"},
                                                {"namespace", "shop"},
                                                {"pod", "pod-a"}}));
    EXPECT_EQ(by_pod["pod-b"]["labels"]["server"], "10.96.0.10");
    EXPECT_EQ(by_pod["pod-a"]["annotations"]["summary"], "drops 12.5/s, baseline 0.4/s");
    EXPECT_EQ(by_pod["pod-a"]["annotations"]["value"], "12.5");
    EXPECT_EQ(by_pod["pod-a"]["annotations"]["baseline"], "0.4");
    EXPECT_EQ(by_pod["pod-a"]["status"]["state"], "active");
    EXPECT_EQ(by_pod["pod-a"]["generatorURL"], "http://worker-1:9965/api/v1/rules");

    // Alertmanager's routing: one group (same alertname and namespace), two alerts, firing.
    ASSERT_TRUE(routed.wait_ok(1, 15s));
    const json first = routed.ok_hits()[0].json();
    EXPECT_EQ(first["status"], "firing");
    EXPECT_EQ(first["receiver"], "vigil-test");
    EXPECT_EQ(first["groupLabels"], json({{"alertname", "pod_drop_surge"}, {"namespace", "shop"}}));
    EXPECT_EQ(first["alerts"].size(), 2u);

    // A capture of pod-a ended: the same alert (no third one) with its capture annotations,
    // and the resends (every second here) keep them.
    n->enqueue(capture_followup(a, "c-0042"));
    json updated;
    ASSERT_TRUE(eventually([&] {
      listed = am.alerts();
      for (const auto& alert : listed)
        if (alert["labels"]["pod"] == "pod-a") updated = alert;
      return listed.size() == 2 && updated["annotations"].value("capture_status", "") == "incomplete";
    }, 15s)) << listed.dump();
    EXPECT_EQ(updated["annotations"]["capture_url"], "http://worker-1:9965/api/v1/captures/c-0042/pcap");
    EXPECT_EQ(updated["annotations"]["capture_ids"], "c-0042");
    EXPECT_EQ(updated["status"]["state"], "active");
    std::this_thread::sleep_for(1500ms);
    for (const auto& alert : am.alerts())
      if (alert["labels"]["pod"] == "pod-a") {
        EXPECT_EQ(alert["annotations"]["capture_status"], "incomplete") << alert.dump();
      }

    // Vigil resolves them: Alertmanager sends the group again, resolved.
    n->enqueue(resolved(a, unix_now()));
    n->enqueue(resolved(b, unix_now()));
    json last;
    ASSERT_TRUE(eventually([&] {
      for (const auto& h : routed.ok_hits()) {
        last = h.json();
        if (last["status"] == "resolved" && last["alerts"].size() == 2) return true;
      }
      return false;
    }, 20s)) << last.dump();
    for (const auto& alert : last["alerts"]) EXPECT_EQ(alert["status"], "resolved");
    n->stop();
    EXPECT_GE(n->stats().sent, 4u);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace vigil::actions
