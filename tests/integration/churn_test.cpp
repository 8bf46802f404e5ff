// Pods come and go by the dozen, as on a busy node: each leaves nothing behind in the agent.
// Every round makes 30 lab pods, attaches them through the pods file, gives each traffic that
// creates its entries in every per-pod map (forwarded packets, a TCP connection, a DNS lookup,
// a drop, remote peers), then removes them: half as a CNI does when a pod dies (the namespace
// and its veth first, the pods file after), half the other way round. After the first round
// the agent is in its steady state; after two more identical rounds the maps that only pods
// fill hold the two staying pods' entries and nothing else, no map holds an entry per pod that
// went, /metrics holds exactly as many series of the agent's own (and none of a pod that is
// gone), and the agent the same number of open files (a namespace or socket kept
// open per pod would show here).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

constexpr int kChurned = 30;  // pods 3..32 come and go; pods 1 and 2 stay

class PodChurn : public ::testing::Test {
 protected:
  void SetUp() override {
    VIGIL_REQUIRE_ROOT();
    lab_ = std::make_unique<Lab>(2);
    lab_->cmd("serve-http 2");
    lab_->cmd("serve-dns 2");
    dir_ = std::make_unique<ScopedTempDir>();
    pods_file_ = dir_->path() + "/pods.yaml";
    write_pods({1, 2});
    port_ = free_port();
    const std::string config = write_temp_file(
        dir_->path(), "vigil.yaml",
        "listen: 127.0.0.1:" + std::to_string(port_) + "\ntick: 200ms\nstate_dir: " + dir_->path() +
            "/state\npods: {source: file, file: " + pods_file_ +
            "}\nrules: []\nnotifiers: []\n"
            "metrics: {series_grace: 1s, netstat: {interval: 200ms, sockets: all}}\n"
            "remote_context: {namespaces: [lab]}\n");
    agent_ = std::make_unique<Process>(std::vector<std::string>{binary_path("vigil"), "agent", "--config", config},
                                       dir_->path() + "/agent.log");
    ASSERT_TRUE(wait_attached({"pod-1", "pod-2"})) << agent_->log();
  }
  void TearDown() override {
    if (agent_) {
      EXPECT_EQ(agent_->terminate(), 0) << agent_->log();
    }
    agent_.reset();
    lab_.reset();
    dir_.reset();
  }

  // The pods file, replaced whole (a rename), as a generator of it would.
  void write_pods(const std::vector<int>& pods) {
    std::string yaml;
    for (int p : pods)
      yaml += "- namespace: lab\n  name: pod-" + std::to_string(p) + "\n  labels: {app: churn}\n  netns: " + lab_->prefix() +
              "-pod-" + std::to_string(p) + "\n";
    if (pods.empty()) yaml = "[]\n";
    const std::string tmp = pods_file_ + ".tmp";
    std::ofstream(tmp) << yaml;
    std::filesystem::rename(tmp, pods_file_);
  }
  std::set<std::string> attached() { return attached_pods(port_); }
  bool wait_attached(const std::set<std::string>& want) {
    for (int i = 0; i < 150; ++i) {  // <= 15 s
      if (attached() == want) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }
  std::set<std::string> names(int from, int to) {
    std::set<std::string> out;
    for (int p = from; p <= to; ++p) out.insert("pod-" + std::to_string(p));
    return out;
  }

  // One round: the pods come, talk, and go.
  void round() {
    lab_->cmd("up " + std::to_string(2 + kChurned));
    std::vector<int> all{1, 2};
    for (int p = 3; p < 3 + kChurned; ++p) all.push_back(p);
    write_pods(all);
    auto want = names(1, 2 + kChurned);
    ASSERT_TRUE(wait_attached(want)) << "attached: " << attached().size() << "\n" << agent_->log();
    // Each new pod: an HTTP request to pod 2 (a TCP connection), a DNS lookup at pod 2's
    // dnsmasq; pod 1 sends each a datagram to a closed port (a drop in the new pod).
    const std::string ip1 = lab_->ip(1), ip2 = lab_->ip(2);
    std::string script;
    for (int p = 3; p < 3 + kChurned; ++p) {
      const std::string ns = lab_->prefix() + "-pod-" + std::to_string(p);
      script += "ip netns exec " + ns + " bash -c 'exec 3<>/dev/tcp/" + ip2 +
                "/8080 && printf \"GET /bytes/64 HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3 >/dev/null' || echo http-failed " + ns +
                "\nip netns exec " + ns + " dig +tries=1 +time=1 @" + ip2 + " ok.lab.test >/dev/null || echo dns-failed " + ns +
                "\nip netns exec " + lab_->prefix() + "-pod-1 bash -c 'printf x > /dev/udp/" + lab_->ip(p) + "/9000'\n";
    }
    auto r = run("bash -c " + shell_quote(script));
    ASSERT_EQ(r.status, 0) << r.output;
    ASSERT_EQ(r.output.find("failed"), std::string::npos) << r.output;
    // Seen: every new pod's traffic, drops and DNS request counted.
    std::string text;
    auto seen = [&] {
      text = http_get("127.0.0.1", port_, "/metrics");
      for (int p = 3; p < 3 + kChurned; ++p) {
        const std::string pod = "pod-" + std::to_string(p);
        if (metric_sum(text, "vigil_dns_requests_total", {{"pod", pod}}) < 1 ||
            metric_sum(text, "vigil_drop_packets_total", {{"pod", pod}}) < 1 ||
            metric_sum(text, "vigil_tcp_connect_attempts_total", {{"pod", pod}}) < 1)
          return false;
      }
      return true;
    };
    bool ok = false;
    for (int i = 0; i < 50 && !(ok = seen()); ++i) std::this_thread::sleep_for(200ms);
    ASSERT_TRUE(ok) << text;
    // They go: pods 3..17 as a CNI removes them (namespace first), 18..32 the other way round.
    const int half = 3 + kChurned / 2;
    std::string first;
    for (int p = 3; p < half; ++p) first += " " + std::to_string(p);
    lab_->cmd("rm" + first);
    std::vector<int> rest{1, 2};
    for (int p = half; p < 3 + kChurned; ++p) rest.push_back(p);
    write_pods(rest);
    auto left = names(1, 2);
    for (int p = half; p < 3 + kChurned; ++p) left.insert("pod-" + std::to_string(p));
    ASSERT_TRUE(wait_attached(left)) << agent_->log();
    write_pods({1, 2});
    ASSERT_TRUE(wait_attached(names(1, 2))) << agent_->log();
    std::string second;
    for (int p = half; p < 3 + kChurned; ++p) second += " " + std::to_string(p);
    lab_->cmd("rm" + second);
  }

  // What the agent holds once the series grace (1 s) has passed: map entries by map, series
  // (lines of /metrics that are samples), open files.
  struct Holdings {
    std::map<std::string, double> entries;
    int series = 0;                  // the agent's own, and any of a pod that is gone
    std::set<std::string> lines;     // those series (sample lines without their values)
    int fds = 0;
    long rss_kib = 0;
    std::set<std::string> churned_pods;  // pods 3.. that still have series
  };
  Holdings holdings() {
    std::this_thread::sleep_for(2500ms);  // the grace, two reads of everything, a tick
    Holdings h;
    const std::string text = http_get("127.0.0.1", port_, "/metrics");
    std::istringstream in(text);
    const std::regex map_re(R"re(^vigil_bpf_map_entries\{[^}]*map="([a-z_]+)"[^}]*\} (\S+))re");
    const std::regex pod_re(R"re([{,]pod="(pod-(\d+))")re");
    for (std::string line; std::getline(in, line);) {
      if (line.empty() || line[0] == '#') continue;
      std::smatch m;
      if (std::regex_search(line, m, pod_re) && std::stoi(m[2]) >= 3) h.churned_pods.insert(m[1]);
      if (std::regex_search(line, m, map_re)) h.entries[m[1]] = std::stod(m[2]);
      // The pods that stay may grow series of their own (a TCP state, a counter that moves off
      // zero), and so may the node's own namespace (vigil_node_*: the host's traffic); the
      // agent's must not.
      if (std::regex_search(line, m, pod_re) && std::stoi(m[2]) < 3) continue;
      if (line.rfind("vigil_node_", 0) == 0) continue;
      ++h.series;
      h.lines.insert(line.substr(0, line.rfind(' ')));
    }
    // Open files: the fewest of 10 looks 50 ms apart (a netstat read or a scrape holds a
    // namespace, a netlink socket or a connection for a moment).
    const std::string proc = "/proc/" + std::to_string(agent_->pid());
    h.fds = 1 << 30;
    for (int i = 0; i < 10; ++i) {
      int n = 0;
      for (const auto& e : std::filesystem::directory_iterator(proc + "/fd")) {
        (void)e;
        ++n;
      }
      h.fds = std::min(h.fds, n);
      std::this_thread::sleep_for(50ms);
    }
    std::ifstream status(proc + "/status");
    for (std::string line; std::getline(status, line);)
      if (line.rfind("VmRSS:", 0) == 0) h.rss_kib = std::stol(line.substr(6));
    return h;
  }
  static std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
  }

  std::unique_ptr<Lab> lab_;
  std::unique_ptr<ScopedTempDir> dir_;
  std::unique_ptr<Process> agent_;
  std::string pods_file_;
  int port_ = 0;
};

TEST_F(PodChurn, PodsThatComeAndGoLeaveNothingBehind) {
  round();
  const Holdings steady = holdings();
  EXPECT_TRUE(steady.churned_pods.empty()) << "series of pods that are gone: " << *steady.churned_pods.begin();
  round();
  round();
  const Holdings after = holdings();
  // Maps the staying pods share with the others (drops by reason, DNS answers by kind, remote
  // peers) may gain a key of theirs when a round's timing differs (a reset from a pod as it
  // goes); an entry kept for each pod that went would add 30 a round.
  for (const auto& [map, n] : steady.entries) {
    ASSERT_TRUE(after.entries.count(map)) << map;
    EXPECT_LE(after.entries.at(map) - n, kChurned / 6) << "entries of " << map << " grew over two rounds of " << kChurned
                                                       << " pods, from " << n << " to " << after.entries.at(map);
  }
  // What only pods have: the two that stay.
  auto entries = [&](const char* map) { return after.entries.count(map) ? after.entries.at(map) : -1; };
  EXPECT_EQ(entries("vigil_traffic"), 2);
  EXPECT_EQ(entries("vigil_pod_netns"), 2);
  EXPECT_EQ(entries("vigil_pod_ip"), 4);  // an IPv4 and an IPv6 address each
  EXPECT_EQ(entries("vigil_remote_pod"), 2);
  EXPECT_EQ(entries("vigil_dns_pending"), 0);
  std::string diff;
  for (const auto& l : after.lines)
    if (!steady.lines.count(l)) diff += "+ " + l + "\n";
  for (const auto& l : steady.lines)
    if (!after.lines.count(l)) diff += "- " + l + "\n";
  EXPECT_EQ(after.series, steady.series) << diff;
  EXPECT_TRUE(after.churned_pods.empty()) << "series of pods that are gone: " << *after.churned_pods.begin();
  EXPECT_EQ(after.fds, steady.fds) << "open files grew over two rounds";
  EXPECT_LT(after.rss_kib - steady.rss_kib, 8 * 1024) << "RSS grew by " << after.rss_kib - steady.rss_kib << " KiB";
  std::string maps;
  for (const auto& [map, n] : after.entries) maps += " " + map + "=" + std::to_string(static_cast<long>(n));
  std::printf("after 3 rounds of %d pods: %d series, %d open files, RSS %ld KiB (%+ld), map entries:%s\n", kChurned,
              after.series, after.fds, after.rss_kib, after.rss_kib - steady.rss_kib, maps.c_str());
}

}  // namespace
}  // namespace vigil::test
