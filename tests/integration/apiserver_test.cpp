// API server latency: a lab pod plays the API server on several ports, each answering in its
// own way (answers; accepts and stays silent; drops the SYN; refuses), plus a port that is not
// listed. Every connection the other pod makes is accounted for exactly, from the kernel's
// sock_ops program on the node's cgroup v2 root, over IPv4 and IPv6.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
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

enum class Family { v4, v6 };

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

void every_connection_is_timed(Family family) {
  Lab lab(2);
  const bool v6 = family == Family::v6;
  const std::string server = v6 ? trim(lab.cmd("ip6 2")) : lab.ip(2);
  auto listed = [&](int port) { return (v6 ? "\"[" + server + "]" : server) + ":" + std::to_string(port) + (v6 ? "\"" : ""); };
  const std::string server_ns = lab.prefix() + "-pod-2";
  const std::string client_ns = lab.prefix() + "-pod-1";
  const std::string traffic = binary_path("tests/tools/vigil-lab-traffic");
  ScopedTempDir logs;
  auto in_server = [&](std::vector<std::string> args, const std::string& log) {
    std::vector<std::string> argv = {"/usr/bin/env", "ip", "netns", "exec", server_ns, traffic};
    argv.insert(argv.end(), args.begin(), args.end());
    return std::make_unique<Process>(argv, logs.path() + "/" + log);
  };
  auto listening = [&](int port) {
    for (int i = 0; i < 50; ++i) {
      if (run("ip netns exec " + server_ns + " ss -Hltn 'sport = :" + std::to_string(port) + "' | grep -q LISTEN").status == 0)
        return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  };
  // Answers: the API server (on :: for IPv6, which also takes IPv4); 8090 answers too, unlisted.
  auto answering = in_server({"httpd", "8080", "::"}, "httpd.log");
  auto unlisted = in_server({"httpd", "8090", "::"}, "unlisted.log");
  auto silent = in_server({"tcp-silent", "8081", "60"}, "silent.log");
  for (int p : {8080, 8090, 8081}) ASSERT_TRUE(listening(p)) << "port " << p;
  auto nft = run("ip netns exec " + server_ns +
                 " nft 'add table inet t; add chain inet t i { type filter hook input priority 0; }; "
                 "add rule inet t i tcp dport 8082 drop; add rule inet t i tcp dport 8084 reject with icmpx host-unreachable'");
  ASSERT_EQ(nft.status, 0) << nft.output;

  std::string dir = make_temp_dir();
  int port = free_port();
  std::string config = write_temp_file(dir, "vigil.yaml",
      "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\npods: {file: " + lab.pods_file() +
      "}\nrules: []\nnotifiers: []\n"
      "apiserver:\n  no_response_after: 1s\n  addresses: [" + listed(8080) + ", " + listed(8081) + ", " +
      listed(8082) + ", " + listed(8083) + ", " + listed(8084) + "]\n");
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
  const int kAnswered = 10, kUnlisted = 5, kSilent = 3, kBlackHoled = 2, kRefused = 4, kUnreachable = 3;
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
  // An ICMP host unreachable ends the handshake (connect fails with EHOSTUNREACH): no SYN-ACK
  // came, and no RST either: no response, not a reset. Blocking connects, as most clients make.
  for (int i = 0; i < kUnreachable; ++i) {
    auto r = run("ip netns exec " + client_ns + " timeout 10 bash -c 'exec 3<>/dev/tcp/" + server + "/8084'");
    EXPECT_NE(r.output.find("No route to host"), std::string::npos) << r.output;
  }

  // no_response_after is 1 s: wait until the last unanswered connection has aged out.
  auto value = [&](const std::string& name, std::map<std::string, std::string> labels = {}) {
    return metric_value(text, name, labels).value_or(-1);
  };
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(100ms);
    text = http_get("127.0.0.1", port, "/metrics");
    if (value("vigil_apiserver_no_response_total", {{"stage", "handshake"}}) >= kBlackHoled + kUnreachable &&
        value("vigil_apiserver_no_response_total", {{"stage", "response"}}) >= kSilent)
      break;
  }
  std::this_thread::sleep_for(1500ms);  // anything counted late would show now
  text = http_get("127.0.0.1", port, "/metrics");

  // Handshakes completed with the answering and the silent server; nothing from the unlisted port.
  EXPECT_EQ(value("vigil_apiserver_handshake_seconds_count"), kAnswered + kSilent) << text;
  EXPECT_EQ(value("vigil_apiserver_first_response_seconds_count"), kAnswered);
  EXPECT_EQ(value("vigil_apiserver_no_response_total", {{"stage", "handshake"}}), kBlackHoled + kUnreachable);
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

TEST(ApiServerLatency, EveryConnectionIsTimedOrCountedAsUnanswered) {
  VIGIL_REQUIRE_ROOT();
  every_connection_is_timed(Family::v4);
}

// The socket's addresses are IPv6: the key sock_ops builds for them is the listed one.
TEST(ApiServerLatency, EveryIpv6ConnectionIsTimedOrCountedAsUnanswered) {
  VIGIL_REQUIRE_ROOT();
  every_connection_is_timed(Family::v6);
}

// The node's other TCP traffic pays nothing per segment, either way, and API server connections
// pay only until their first answer: 100 requests on one kept-alive connection to the API server
// run the sock_ops program a handful of times (connect, established, the first request, the ACK
// of its answer), not once or more per segment, and no other program of the API server family
// exists to run per segment received. Run counts come from the kernel's BPF stats, turned on here
// for the test's lifetime only (BPF_ENABLE_STATS: off again when the descriptor closes).
TEST(ApiServerLatency, PerSegmentCallbacksEndWithTheFirstAnswer) {
  VIGIL_REQUIRE_ROOT();
  const int stats = bpf_enable_stats(BPF_STATS_RUN_TIME);
  ASSERT_GE(stats, 0) << "BPF_ENABLE_STATS: " << std::strerror(errno);
  struct CloseStats {
    int fd;
    ~CloseStats() { close(fd); }
  } close_stats{stats};
  Lab lab(2);
  const std::string server = lab.ip(2);
  lab.cmd("serve-http 2 8080");
  std::string dir = make_temp_dir();
  int port = free_port();
  std::string config = write_temp_file(dir, "vigil.yaml",
      "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\npods: {file: " + lab.pods_file() +
      "}\nrules: []\nnotifiers: []\napiserver:\n  addresses: [" + server + ":8080]\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  std::string text;
  auto value = [&](const std::string& name, std::map<std::string, std::string> labels = {}) {
    return metric_value(text, name, labels).value_or(-1);
  };
  auto runs = [&](const std::string& program) { return value("vigil_bpf_program_runs_total", {{"program", program}}); };
  for (int i = 0; i < 100 && runs("vigil_api_sockops") < 0; ++i) {
    std::this_thread::sleep_for(100ms);
    text = http_get("127.0.0.1", port, "/metrics");
  }
  ASSERT_GE(runs("vigil_api_sockops"), 0) << agent.log();
  std::this_thread::sleep_for(400ms);  // two ticks: the counts below are the latest
  text = http_get("127.0.0.1", port, "/metrics");
  const double sockops_before = runs("vigil_api_sockops");

  const int kRequests = 100;
  std::string urls;
  for (int i = 0; i < kRequests; ++i) urls += " http://" + server + ":8080/bytes/64";
  auto curl = run("ip netns exec " + lab.prefix() + "-pod-1 curl -sS --max-time 20 -o /dev/null -w '%{num_connects}\\n'" + urls);
  ASSERT_EQ(curl.status, 0) << curl.output;
  // One connection made (the first transfer), then kept for the other 99.
  ASSERT_EQ(std::count(curl.output.begin(), curl.output.end(), '1'), 1) << curl.output;
  ASSERT_EQ(std::count(curl.output.begin(), curl.output.end(), '\n'), kRequests) << curl.output;

  for (int i = 0; i < 50 && value("vigil_apiserver_first_response_seconds_count") < 1; ++i) {
    std::this_thread::sleep_for(100ms);
    text = http_get("127.0.0.1", port, "/metrics");
  }
  std::this_thread::sleep_for(400ms);
  text = http_get("127.0.0.1", port, "/metrics");
  EXPECT_EQ(value("vigil_apiserver_handshake_seconds_count"), 1) << text;
  EXPECT_EQ(value("vigil_apiserver_first_response_seconds_count"), 1);
  const double sockops = runs("vigil_api_sockops") - sockops_before;
  // The client sends at least two segments a request (the request, the ACK of the answer) and
  // computes its MSS for each write: per-segment callbacks would be 200 or more. What is left is
  // the few callbacks of each connection opened meanwhile (curl's, and this test's own to
  // /metrics), on both ends.
  EXPECT_LT(sockops, 60) << "sock_ops ran " << sockops << " times for " << kRequests << " requests";
  // Every program the agent loaded, by name: none but sock_ops belongs to this family.
  const std::regex api_program(R"re(vigil_bpf_program_runs_total\{[^}]*program="(vigil_api_[a-z_]+)")re");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), api_program); it != std::sregex_iterator(); ++it)
    EXPECT_EQ((*it)[1].str(), "vigil_api_sockops");
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

// The first answer is timed to its arrival, not to the client's next move: the server answers
// 100 ms after each request, and the client then holds the connection 400 ms without a word
// before it closes. The sock_ops program sees the answer in the ACK the client's TCP sends for it
// at once (the first data a connection receives puts it in quick-ACK mode); timed to anything the
// client does later, each latency would be 500 ms or more. A server that reads the request and
// closes without a word (a FIN, no data: rcv_nxt moves, but nothing was answered) leaves each of
// its connections counted as no response.
TEST(ApiServerLatency, FirstResponseIsTimedAtTheAnswerNotAtTheClientsNextMove) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  const std::string server = lab.ip(2);
  const std::string traffic = binary_path("tests/tools/vigil-lab-traffic");
  ScopedTempDir logs;
  const std::string server_log = logs.path() + "/late.log";
  Process late({"/usr/bin/env", "ip", "netns", "exec", lab.prefix() + "-pod-2", traffic, "tcp-late", "8080", "100", "60"},
               server_log);
  Process hangup({"/usr/bin/env", "ip", "netns", "exec", lab.prefix() + "-pod-2", traffic, "tcp-hangup", "8081", "60"},
                 server_log + ".hangup");
  for (const char* listening : {"8080", "8081"}) {
    bool up = false;
    for (int i = 0; i < 50 && !up; ++i) {
      up = run("ip netns exec " + lab.prefix() + "-pod-2 ss -Hltn 'sport = :" + listening + "' | grep -q LISTEN").status == 0;
      if (!up) std::this_thread::sleep_for(100ms);
    }
    ASSERT_TRUE(up) << "port " << listening;
  }
  std::string dir = make_temp_dir();
  int port = free_port();
  std::string config = write_temp_file(dir, "vigil.yaml",
      "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\npods: {file: " + lab.pods_file() +
      "}\nrules: []\nnotifiers: []\napiserver:\n  no_response_after: 1s\n  addresses: [" + server + ":8080, " +
      server + ":8081]\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  std::string text;
  auto value = [&](const std::string& name) { return metric_value(text, name, {}).value_or(-1); };
  auto no_response = [&] { return metric_value(text, "vigil_apiserver_no_response_total", {{"stage", "response"}}).value_or(-1); };
  for (int i = 0; i < 100 && value("vigil_apiserver_first_response_seconds_count") < 0; ++i) {
    std::this_thread::sleep_for(100ms);
    text = http_get("127.0.0.1", port, "/metrics");
  }
  ASSERT_EQ(value("vigil_apiserver_first_response_seconds_count"), 0) << agent.log();

  const int kConnections = 5;
  auto r = run("ip netns exec " + lab.prefix() + "-pod-1 " + traffic + " tcp-requests " + server + " 8080 " +
               std::to_string(kConnections) + " 2 400");
  ASSERT_EQ(r.status, 0) << r.output;
  Outcome o = parse_outcome(r.output);
  ASSERT_EQ(o.answered, kConnections) << r.output;
  const int kHungUp = 3;
  r = run("ip netns exec " + lab.prefix() + "-pod-1 " + traffic + " tcp-requests " + server + " 8081 " +
          std::to_string(kHungUp) + " 2");
  ASSERT_EQ(r.status, 0) << r.output;
  o = parse_outcome(r.output);
  ASSERT_EQ(o.connected, kHungUp) << r.output;
  ASSERT_EQ(o.answered, 0) << r.output;
  for (int i = 0; i < 40 && (value("vigil_apiserver_first_response_seconds_count") < kConnections || no_response() < kHungUp);
       ++i) {
    std::this_thread::sleep_for(100ms);
    text = http_get("127.0.0.1", port, "/metrics");
  }
  EXPECT_EQ(value("vigil_apiserver_first_response_seconds_count"), kConnections) << text;
  const double sum = value("vigil_apiserver_first_response_seconds_sum");
  std::printf("first response: %.1f ms on average over %d connections (answers 100 ms late)\n", 1000 * sum / kConnections,
              kConnections);
  EXPECT_GE(sum, 0.100 * kConnections) << "answers come 100 ms after each request";
  EXPECT_LT(sum, 0.200 * kConnections) << "timed to something after the answer";
  EXPECT_EQ(no_response(), kHungUp);
  EXPECT_EQ(value("vigil_apiserver_handshake_seconds_count"), kConnections + kHungUp);
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

// An answer later than no_response_after is no response, whenever the agent's tick falls: the
// agent's look at the waiting connections may come before the answer or after it. With a 2 s
// tick, a 1 s limit and answers 1.4 s after each request, most answers would land before the
// agent's next look; each must count as no response all the same, once, and never in the
// latency histogram.
TEST(ApiServerLatency, AnAnswerLaterThanTheLimitIsNoResponseWheneverTheTickFalls) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  const std::string server = lab.ip(2);
  const std::string traffic = binary_path("tests/tools/vigil-lab-traffic");
  ScopedTempDir logs;
  const std::string server_log = logs.path() + "/late.log";
  Process late({"/usr/bin/env", "ip", "netns", "exec", lab.prefix() + "-pod-2", traffic, "tcp-late", "8082", "1400", "60"},
               server_log);
  bool up = false;
  for (int i = 0; i < 50 && !up; ++i) {
    up = run("ip netns exec " + lab.prefix() + "-pod-2 ss -Hltn 'sport = :8082' | grep -q LISTEN").status == 0;
    if (!up) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(up);
  std::string dir = make_temp_dir();
  int port = free_port();
  std::string config = write_temp_file(dir, "vigil.yaml",
      "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 2s\npods: {file: " + lab.pods_file() +
      "}\nrules: []\nnotifiers: []\napiserver:\n  no_response_after: 1s\n  addresses: [" + server + ":8082]\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  std::string text;
  auto value = [&](const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    return metric_value(text, name, labels).value_or(-1);
  };
  for (int i = 0; i < 100 && value("vigil_apiserver_first_response_seconds_count") < 0; ++i) {
    std::this_thread::sleep_for(100ms);
    text = http_get("127.0.0.1", port, "/metrics");
  }
  ASSERT_EQ(value("vigil_apiserver_first_response_seconds_count"), 0) << agent.log();
  const int kConnections = 6;
  auto r = run("ip netns exec " + lab.prefix() + "-pod-1 " + traffic + " tcp-requests " + server + " 8082 " +
               std::to_string(kConnections) + " 3");
  ASSERT_EQ(r.status, 0) << r.output;
  Outcome o = parse_outcome(r.output);
  ASSERT_EQ(o.answered, kConnections) << r.output;
  for (int i = 0; i < 60 && value("vigil_apiserver_no_response_total", {{"stage", "response"}}) < kConnections; ++i) {
    std::this_thread::sleep_for(100ms);
    text = http_get("127.0.0.1", port, "/metrics");
  }
  std::this_thread::sleep_for(2500ms);  // a tick more: nothing counts twice
  text = http_get("127.0.0.1", port, "/metrics");
  EXPECT_EQ(value("vigil_apiserver_no_response_total", {{"stage", "response"}}), kConnections) << text;
  EXPECT_EQ(value("vigil_apiserver_first_response_seconds_count"), 0) << text;
  EXPECT_EQ(value("vigil_apiserver_handshake_seconds_count"), kConnections);
  EXPECT_EQ(value("vigil_apiserver_no_response_total", {{"stage", "handshake"}}), 0);
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

// The table of connections waiting for the API server, full: an outage leaves every new
// connection waiting, and the table must keep counting them as no response. A connection that
// does not fit is counted (vigil_bpf_errors_total{site="apiserver_pending_full"}) and the ones
// waiting still age out as no response, making room again (an LRU table evicted the oldest: the
// ones about to be counted). Pod 2 drops every SYN to the "API server"; pod 1 opens as many
// connections as the table holds, and 5 more, at once.
TEST(ApiServerLatency, FullPendingTableCountsTheConnectionsItCannotTime) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  const std::string server = lab.ip(2);
  auto nft = run("ip netns exec " + lab.prefix() + "-pod-2 nft 'add table inet t; add chain inet t i { type filter hook "
                 "input priority 0; }; add rule inet t i tcp dport 8082 drop'");
  ASSERT_EQ(nft.status, 0) << nft.output;
  std::string dir = make_temp_dir();
  int port = free_port();
  std::string config = write_temp_file(dir, "vigil.yaml",
      "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\npods: {file: " + lab.pods_file() +
      "}\nrules: []\nnotifiers: []\napiserver:\n  no_response_after: 5s\n  addresses: [" + server + ":8082]\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  std::string text;
  auto value = [&](const std::string& name, std::map<std::string, std::string> labels = {}) {
    return metric_value(text, name, labels).value_or(-1);
  };
  auto scrape_until = [&](const std::function<bool()>& done, int tries) {
    for (int i = 0; i < tries && !done(); ++i) {
      std::this_thread::sleep_for(100ms);
      text = http_get("127.0.0.1", port, "/metrics");
    }
  };
  const std::map<std::string, std::string> table = {{"map", "vigil_api_pending"}};
  scrape_until([&] { return value("vigil_bpf_map_max_entries", table) > 0; }, 100);
  const double capacity = value("vigil_bpf_map_max_entries", table);
  ASSERT_GT(capacity, 0) << agent.log();
  // Connects without waiting for them, all open at once, then closed (in SYN_SENT, which leaves
  // them to the agent to count as no response).
  const std::string script = write_temp_file(dir, "connect.py",
      "import errno,resource,socket,sys\n"
      "n=int(sys.argv[3])\n"
      "hard=resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
      "resource.setrlimit(resource.RLIMIT_NOFILE,(hard,hard))\n"
      "socks=[]\n"
      "for i in range(n):\n"
      "  s=socket.socket(); s.setblocking(False)\n"
      "  e=s.connect_ex((sys.argv[1],int(sys.argv[2])))\n"
      "  if e!=errno.EINPROGRESS: sys.exit('connect %d: %s'%(i,errno.errorcode.get(e,e)))\n"
      "  socks.append(s)\n"
      "print(len(socks))\n");
  auto connect = [&](int n) {
    auto r = run("ip netns exec " + lab.prefix() + "-pod-1 python3 " + script + " " + server + " 8082 " + std::to_string(n));
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(r.output, std::to_string(n) + "\n");
  };
  auto refused = [&] { return value("vigil_bpf_errors_total", {{"site", "apiserver_pending_full"}}); };
  auto no_response = [&] { return value("vigil_apiserver_no_response_total", {{"stage", "handshake"}}); };
  const int kOver = 5;
  connect(static_cast<int>(capacity) + kOver);
  scrape_until([&] { return refused() >= kOver && value("vigil_bpf_map_entries", table) >= capacity; }, 30);
  EXPECT_EQ(refused(), kOver) << text;
  EXPECT_EQ(value("vigil_bpf_map_entries", table), capacity);
  EXPECT_EQ(no_response(), 0);
  // no_response_after is 5 s: every connection the table held is counted, and the table empties.
  scrape_until([&] { return no_response() >= capacity && value("vigil_bpf_map_entries", table) == 0; }, 100);
  EXPECT_EQ(no_response(), capacity) << text;
  EXPECT_EQ(value("vigil_bpf_map_entries", table), 0);
  // Room again: the next ones are timed, and nothing more is refused.
  connect(kOver);
  scrape_until([&] { return no_response() >= capacity + kOver; }, 100);
  EXPECT_EQ(no_response(), capacity + kOver) << text;
  EXPECT_EQ(refused(), kOver);
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

// Where cgroup v2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host), or "".
std::string cgroup2_root() {
  std::ifstream mounts("/proc/self/mounts");
  std::string device, dir, type, rest;
  while (mounts >> device >> dir >> type && std::getline(mounts, rest))
    if (type == "cgroup2") return dir;
  return "";
}

// A cgroup v2 group of the test's own (a pod's, as far as sock_ops programs go), removed when the
// test ends, also when it fails; the processes put in it must have ended by then.
struct ScopedCgroup {
  std::string path;
  int fd = -1;
  explicit ScopedCgroup(const std::string& root) {
    const std::string dir = root + "/vigil-test-" + std::to_string(getpid()) + "-" + std::to_string(free_port());
    if (mkdir(dir.c_str(), 0755) != 0) return;
    path = dir;
    fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }
  ~ScopedCgroup() {
    if (fd >= 0) close(fd);
    if (!path.empty()) rmdir(path.c_str());
  }
};

// Another tool's sock_ops program on a pod's cgroup asks for state-change and per-segment
// callbacks on every connection the pod makes (tests/integration/bpf/sockops_watch.bpf.c). The
// agent times the same connections to the API server and turns its own callbacks off after the
// first answer: the other program still gets each connection's close and the segments sent after
// the first answer. (Turning off every callback it uses, whoever asked for them, the agent took
// both from it: 0 closes and 0 such segments.)
TEST(ApiServerLatency, AnotherProgramsCallbacksOnTheSameSocketsStayOn) {
  VIGIL_REQUIRE_ROOT();
  const std::string root = cgroup2_root();
  ASSERT_NE(root, "") << "cgroup v2 is not mounted";
  ScopedTempDir dir;
  std::string error;
  const std::string object = compile_other_tool("sockops_watch", dir.path(), error);
  ASSERT_NE(object, "") << error;
  ScopedCgroup pod_cgroup(root);
  ASSERT_GE(pod_cgroup.fd, 0) << "mkdir/open " << pod_cgroup.path << ": " << std::strerror(errno);
  struct Loaded {
    bpf_object* obj = nullptr;
    int link = -1;
    ~Loaded() {
      if (link >= 0) close(link);  // detaches it
      if (obj) bpf_object__close(obj);
    }
  } other;
  other.obj = bpf_object__open_file(object.c_str(), nullptr);
  ASSERT_NE(other.obj, nullptr) << std::strerror(errno);
  ASSERT_EQ(bpf_object__load(other.obj), 0) << std::strerror(errno);
  other.link = bpf_link_create(bpf_program__fd(bpf_object__next_program(other.obj, nullptr)), pod_cgroup.fd,
                               BPF_CGROUP_SOCK_OPS, nullptr);
  ASSERT_GE(other.link, 0) << "attach sock_ops to " << pod_cgroup.path << ": " << std::strerror(errno);
  const int seen = bpf_map__fd(bpf_object__find_map_by_name(other.obj, "seen"));
  auto seen_count = [&](__u32 i) {
    __u64 n = 0;
    return bpf_map_lookup_elem(seen, &i, &n) == 0 ? static_cast<double>(n) : -1.0;
  };

  Lab lab(2);
  const std::string server = lab.ip(2);
  lab.cmd("serve-http 2 8443");
  const int port = free_port();
  const std::string config = write_temp_file(dir.path(), "vigil.yaml",
      "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\npods: {file: " + lab.pods_file() +
      "}\nrules: []\nnotifiers: []\napiserver:\n  addresses: [" + server + ":8443]\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir.path() + "/agent.log");
  std::string text;
  auto value = [&](const std::string& name) { return metric_value(text, name, {}).value_or(-1); };
  for (int i = 0; i < 100 && value("vigil_apiserver_first_response_seconds_count") < 0; ++i) {
    std::this_thread::sleep_for(100ms);
    text = http_get("127.0.0.1", port, "/metrics");
  }
  ASSERT_EQ(value("vigil_apiserver_first_response_seconds_count"), 0) << agent.log();

  // Each curl: one connection from pod 1, in the pod's cgroup, kept for its 5 requests.
  const int kConnections = 3, kRequests = 5;
  std::string urls;
  for (int i = 0; i < kRequests; ++i) urls += " http://" + server + ":8443/bytes/64";
  for (int c = 0; c < kConnections; ++c) {
    // Into the cgroup first: `ip netns exec` mounts a sysfs of the pod's, without the cgroup mounts.
    auto curl = run("sh -c 'echo $$ > " + pod_cgroup.path + "/cgroup.procs && exec ip netns exec " + lab.prefix() +
                    "-pod-1 curl -sS --max-time 10 -o /dev/null -w \"%{num_connects}\\n\"" + urls + "'");
    ASSERT_EQ(curl.status, 0) << curl.output;
    ASSERT_EQ(std::count(curl.output.begin(), curl.output.end(), '1'), 1) << "one connection per curl: " << curl.output;
  }
  for (int i = 0; i < 50 && value("vigil_apiserver_first_response_seconds_count") < kConnections; ++i) {
    std::this_thread::sleep_for(100ms);
    text = http_get("127.0.0.1", port, "/metrics");
  }
  // The agent timed every connection...
  EXPECT_EQ(value("vigil_apiserver_handshake_seconds_count"), kConnections) << text;
  EXPECT_EQ(value("vigil_apiserver_first_response_seconds_count"), kConnections);
  // ...and the other program saw what it asked for: every close (curl's connections end with the
  // client's FIN, the socket passes through CLOSE), and the 4 requests after each first answer.
  wait_until([&] { return seen_count(1) >= kConnections; }, 3s);
  EXPECT_EQ(seen_count(0), kConnections);
  EXPECT_EQ(seen_count(1), kConnections);
  EXPECT_GE(seen_count(2), kConnections * (kRequests - 1));
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
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
