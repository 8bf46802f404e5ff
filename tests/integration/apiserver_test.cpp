// API server latency: a lab pod plays the API server on several ports, each answering in its
// own way (answers; accepts and stays silent; drops the SYN; refuses), plus a port that is not
// listed. Every connection the other pod makes is accounted for exactly, from the kernel's
// cgroup_skb programs on the node's cgroup v2 root.
#include <gtest/gtest.h>

#include <regex>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

struct Outcome {
  long connected = -1, answered = -1;
};

Outcome parse_outcome(const std::string& out) {
  std::smatch m;
  Outcome o;
  if (std::regex_search(out, m, std::regex(R"(connected=(\d+) answered=(\d+))"))) {
    o.connected = std::stol(m[1]);
    o.answered = std::stol(m[2]);
  }
  return o;
}

// `extra` adds listed addresses nobody uses (", ADDR:PORT..."), to run with the port filter off.
void every_connection_is_timed(const std::string& extra) {
  Lab lab(2);
  const std::string server = lab.ip(2);
  const std::string server_ns = lab.prefix() + "-pod-2";
  const std::string client_ns = lab.prefix() + "-pod-1";
  const std::string traffic = binary_path("tests/tools/vigil-lab-traffic");
  lab.cmd("serve-http 2 8080");  // answers: the API server
  lab.cmd("serve-http 2 8090");  // answers too, but is not listed
  Process silent({"/usr/bin/env", "ip", "netns", "exec", server_ns, traffic, "tcp-silent", "8081", "60"}, make_temp_dir() + "/silent.log");
  for (int i = 0; i < 50 && run("ip netns exec " + server_ns + " ss -Hltn 'sport = :8081' | grep -q LISTEN").status != 0; ++i)
    std::this_thread::sleep_for(100ms);
  auto nft = run("ip netns exec " + server_ns +
                 " nft 'add table inet t; add chain inet t i { type filter hook input priority 0; }; "
                 "add rule inet t i tcp dport 8082 drop'");
  ASSERT_EQ(nft.status, 0) << nft.output;

  std::string dir = make_temp_dir();
  int port = free_port();
  std::string config = write_temp_file(dir, "vigil.yaml",
      "listen: 127.0.0.1:" + std::to_string(port) + "\ntick: 200ms\npods: {file: " + lab.pods_file() +
      "}\nrules: []\nnotifiers: []\n"
      "apiserver:\n  no_response_after: 1s\n  addresses: [" + server + ":8080, " + server + ":8081, " + server +
      ":8082, " + server + ":8083" + extra + "]\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  std::string text;
  for (int i = 0; i < 100 && text.find("vigil_apiserver_handshake_seconds_count") == std::string::npos; ++i) {
    std::this_thread::sleep_for(100ms);
    text = http_get("127.0.0.1", port, "/metrics");
  }
  ASSERT_NE(text.find("vigil_apiserver_handshake_seconds_count 0"), std::string::npos) << agent.log();

  auto requests = [&](int to_port, int count, double timeout) {
    auto r = run("ip netns exec " + client_ns + " " + traffic + " tcp-requests " + server + " " +
                 std::to_string(to_port) + " " + std::to_string(count) + " " + std::to_string(timeout));
    EXPECT_EQ(r.status, 0) << r.output;
    return parse_outcome(r.output);
  };
  const int kAnswered = 10, kUnlisted = 5, kSilent = 3, kBlackHoled = 2, kRefused = 4;
  Outcome o = requests(8080, kAnswered, 2);
  EXPECT_EQ(o.connected, kAnswered);
  EXPECT_EQ(o.answered, kAnswered);
  o = requests(8090, kUnlisted, 2);
  EXPECT_EQ(o.answered, kUnlisted);
  o = requests(8081, kSilent, 0.3);
  EXPECT_EQ(o.connected, kSilent);
  EXPECT_EQ(o.answered, 0);
  o = requests(8082, kBlackHoled, 0.3);
  EXPECT_EQ(o.connected, 0);
  o = requests(8083, kRefused, 0.3);
  EXPECT_EQ(o.connected, 0);

  // no_response_after is 1 s: wait until the last unanswered connection has aged out.
  auto value = [&](const std::string& name, std::map<std::string, std::string> labels = {}) {
    return metric_value(text, name, labels).value_or(-1);
  };
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(100ms);
    text = http_get("127.0.0.1", port, "/metrics");
    if (value("vigil_apiserver_no_response_total", {{"stage", "handshake"}}) >= kBlackHoled &&
        value("vigil_apiserver_no_response_total", {{"stage", "response"}}) >= kSilent)
      break;
  }
  std::this_thread::sleep_for(1500ms);  // anything counted late would show now
  text = http_get("127.0.0.1", port, "/metrics");

  // Handshakes completed with the answering and the silent server; nothing from the unlisted port.
  EXPECT_EQ(value("vigil_apiserver_handshake_seconds_count"), kAnswered + kSilent) << text;
  EXPECT_EQ(value("vigil_apiserver_first_response_seconds_count"), kAnswered);
  EXPECT_EQ(value("vigil_apiserver_no_response_total", {{"stage", "handshake"}}), kBlackHoled);
  EXPECT_EQ(value("vigil_apiserver_no_response_total", {{"stage", "response"}}), kSilent);
  EXPECT_EQ(value("vigil_apiserver_resets_total", {{"stage", "handshake"}}), kRefused);
  EXPECT_EQ(value("vigil_apiserver_resets_total", {{"stage", "response"}}), 0);
  // Latencies on a bridge between namespaces: above zero, far below the client's timeouts.
  const double handshake_sum = value("vigil_apiserver_handshake_seconds_sum");
  const double response_sum = value("vigil_apiserver_first_response_seconds_sum");
  EXPECT_GT(handshake_sum, 0);
  EXPECT_LT(handshake_sum, 0.5 * (kAnswered + kSilent));
  EXPECT_GT(response_sum, 0);
  EXPECT_LT(response_sum, 1.0 * kAnswered);
  EXPECT_EQ(value("vigil_apiserver_first_response_seconds_bucket", {{"le", "+Inf"}}), kAnswered);
  // Nothing left waiting in the kernel but idle connections (there are none: all closed).
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

// Four ports listed: the cgroup programs skip every segment of other ports before looking up
// its addresses (so the unlisted 8090 on the same address is never timed).
TEST(ApiServerLatency, EveryConnectionIsTimedOrCountedAsUnanswered) {
  VIGIL_REQUIRE_ROOT();
  every_connection_is_timed("");
}

// More distinct ports than the filter holds (VIGIL_API_MAX_PORTS, 8): every TCP segment goes on
// to the address lookup, which alone must tell the listed servers from 8090.
TEST(ApiServerLatency, ManyPortsTurnThePortFilterOffNotTheLatency) {
  VIGIL_REQUIRE_ROOT();
  std::string extra;
  for (int p = 9001; p <= 9006; ++p) extra += ", 192.0.2.1:" + std::to_string(p);  // TEST-NET-1, never reached
  every_connection_is_timed(extra);
}

TEST(ApiServerLatency, BadAddressIsRejectedWithItsField) {
  std::string dir = make_temp_dir();
  std::string config = write_temp_file(dir, "vigil.yaml", "apiserver:\n  addresses: [10.96.0.1:443, \"fd00::1:443\"]\n");
  auto r = run(binary_path("vigil") + " agent --config " + config);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("vigil.yaml:2: apiserver.addresses[1]: expected IP:PORT"), std::string::npos) << r.output;
  run("rm -rf " + dir);
}

}  // namespace
}  // namespace vigil::test
