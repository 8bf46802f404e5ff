// TCP telemetry against ground truth the test creates (connections to a closed port, to a
// black hole) or reads from the kernel (nstat in the pod's namespace).
#include <gtest/gtest.h>

#include <cstdio>
#include <regex>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

class TcpTelemetry : public ::testing::Test {
 protected:
  void SetUp() override {
    VIGIL_REQUIRE_ROOT();
    lab_ = std::make_unique<Lab>(3);
    lab_->cmd("serve-http 2");
    dir_ = make_temp_dir();
    port_ = free_port();
    std::string config = write_temp_file(dir_, "vigil.yaml",
                                         "listen: 127.0.0.1:" + std::to_string(port_) + "\nstate_dir: state\ntick: 200ms\n"
                                         "pods: {source: file, file: " + lab_->pods_file() + "}\nrules: []\nnotifiers: []\n");
    agent_ = std::make_unique<Process>(std::vector<std::string>{binary_path("vigil"), "agent", "--config", config},
                                       dir_ + "/agent.log");
    ASSERT_TRUE(wait_for_attached(port_, 3)) << "agent did not attach:\n" << agent_->log();
  }
  void TearDown() override {
    if (agent_) {
      EXPECT_EQ(agent_->terminate(), 0) << agent_->log();
    }
    agent_.reset();
    lab_.reset();
    if (!dir_.empty()) run("rm -rf " + dir_);
  }
  std::string ns(int pod) const { return lab_->prefix() + "-pod-" + std::to_string(pod); }
  std::string metrics() { return http_get("127.0.0.1", port_, "/metrics"); }
  double value(const std::string& text, const std::string& name, std::map<std::string, std::string> labels) {
    return metric_sum(text, name, labels);
  }
  // Waits two ticks so that the counters have been read after what the test did.
  std::string settled_metrics() { return metrics_after_ticks(port_); }
  uint64_t nstat(int pod, const std::string& counter) {
    auto r = run("ip netns exec " + ns(pod) + " nstat -az " + counter);
    std::smatch m;
    std::regex re(counter + R"(\s+(\d+))");
    return std::regex_search(r.output, m, re) ? std::stoull(m[1]) : 0;
  }

  std::unique_ptr<Lab> lab_;
  std::unique_ptr<Process> agent_;
  std::string dir_;
  int port_ = 0;
};

TEST_F(TcpTelemetry, ConnectionsRefusedAndTimedOutAreCountedExactly) {
  const std::string p1 = "pod-1";
  uint64_t retrans_before = nstat(1, "TcpRetransSegs");
  TracepointDelivery states("sock/inet_sock_set_state", "vigil_sock_state");
  TracepointDelivery retransmits("tcp/tcp_retransmit_skb", "vigil_tcp_retransmit");
  ASSERT_TRUE(states.ok()) << states.error();
  ASSERT_TRUE(retransmits.ok()) << retransmits.error();
  auto before = metrics();
  // 7 connects to a closed port: the kernel answers each SYN with a RST.
  const int kRefused = 7;
  auto r = run("ip netns exec " + ns(1) + " bash -c 'for i in $(seq 1 " + std::to_string(kRefused) +
               "); do (exec 3<>/dev/tcp/" + lab_->ip(2) + "/81) 2>/dev/null; done; true'");
  ASSERT_EQ(r.status, 0) << r.output;
  // 2 connects into a black hole (pod 3 drops SYNs to port 82), with one SYN retry.
  const int kTimeouts = 2;
  ASSERT_EQ(run("ip netns exec " + ns(1) + " sysctl -qw net.ipv4.tcp_syn_retries=1").status, 0);
  auto nft = run("ip netns exec " + ns(3) + " nft 'add table inet t; add chain inet t i { type filter hook input priority 0; }; "
                 "add rule inet t i tcp dport 82 drop'");
  ASSERT_EQ(nft.status, 0) << nft.output;
  r = run("ip netns exec " + ns(1) + " bash -c 'for i in $(seq 1 " + std::to_string(kTimeouts) +
          "); do timeout 20 bash -c \"exec 3<>/dev/tcp/" + lab_->ip(3) + "/82\" 2>/dev/null; done; true'");
  // 5 connections that succeed.
  const int kOk = 5;
  r = run("ip netns exec " + ns(1) + " bash -c 'for i in $(seq 1 " + std::to_string(kOk) + "); do exec 3<>/dev/tcp/" +
          lab_->ip(2) + "/8080; printf \"GET / HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3 >/dev/null; exec 3<&-; done'");
  ASSERT_EQ(r.status, 0) << r.output;
  // Read the kernel's count on both sides of the scrape, until no retransmit (a late FIN or
  // data segment of a busy machine) falls in between: then both saw the same set.
  std::string after;
  uint64_t retrans_after = 0;
  for (int i = 0; i < 10; ++i) {
    retrans_after = nstat(1, "TcpRetransSegs");
    after = settled_metrics();
    if (nstat(1, "TcpRetransSegs") == retrans_after) break;
  }
  const double syn_retransmits = static_cast<double>(retrans_after - retrans_before);
  auto delta = [&](const std::string& name, std::map<std::string, std::string> l) {
    return value(after, name, l) - value(before, name, l);
  };
  states.stop();
  retransmits.stop();
  std::printf("inet_sock_set_state: %llu hits, vigil_sock_state ran %llu times; tcp_retransmit_skb: %llu hits, "
              "vigil_tcp_retransmit ran %llu times\n",
              static_cast<unsigned long long>(states.hits()), static_cast<unsigned long long>(states.runs()),
              static_cast<unsigned long long>(retransmits.hits()), static_cast<unsigned long long>(retransmits.runs()));
  // Counts from the tracing programs: exact, or short by the hits the kernel did not run them for
  // (TracepointDelivery; seen in CI as 1 of 2 timeouts, and 3 of 4 SYN retransmits, uncounted).
  auto exact_or_undelivered = [&](const char* name, std::map<std::string, std::string> l, double want,
                                  const TracepointDelivery& witness) {
    std::string what = name;
    for (const auto& [k, v] : l) what += " " + k + "=" + v;
    expect_exact_or_undelivered(delta(name, l), want, witness, what);
  };
  exact_or_undelivered("vigil_tcp_connect_failures_total", {{"pod", p1}, {"reason", "refused"}}, kRefused, states);
  exact_or_undelivered("vigil_tcp_connect_failures_total", {{"pod", p1}, {"reason", "timeout"}}, kTimeouts, states);
  EXPECT_EQ(delta("vigil_tcp_connect_failures_total", {{"pod", p1}, {"reason", "other"}}), 0);
  exact_or_undelivered("vigil_tcp_connect_attempts_total", {{"pod", p1}}, kRefused + kTimeouts + kOk, states);
  exact_or_undelivered("vigil_tcp_connections_established_total", {{"pod", p1}, {"role", "client"}}, kOk, states);
  exact_or_undelivered("vigil_tcp_connections_established_total", {{"pod", "pod-2"}, {"role", "server"}}, kOk, states);
  // Every SYN pod 1 sent: one per attempt, plus the retransmitted SYNs of the black-holed
  // connects, which the kernel counts in pod 1's TcpRetransSegs.
  EXPECT_GE(syn_retransmits, kTimeouts);
  exact_or_undelivered("vigil_tcp_retransmits_total", {{"pod", p1}}, syn_retransmits, retransmits);
  EXPECT_EQ(delta("vigil_tcp_flags_total", {{"pod", p1}, {"direction", "egress"}, {"flag", "SYN"}}),
            kRefused + kOk + kTimeouts + syn_retransmits);
  EXPECT_EQ(delta("vigil_tcp_resets_total", {{"pod", p1}, {"direction", "ingress"}}), kRefused);
  EXPECT_EQ(delta("vigil_tcp_resets_total", {{"pod", "pod-2"}, {"direction", "egress"}}), kRefused);
  // Each finished connection left ESTABLISHED once and gave one RTT sample, on both ends.
  exact_or_undelivered("vigil_tcp_rtt_seconds_count", {{"pod", p1}}, kOk, states);
  EXPECT_GT(delta("vigil_tcp_rtt_seconds_sum", {{"pod", p1}}), 0);
  EXPECT_EQ(value(after, "vigil_tcp_rtt_seconds_bucket", {{"pod", p1}, {"le", "+Inf"}}),
            value(after, "vigil_tcp_rtt_seconds_count", {{"pod", p1}}));
}

// Each state is counted once per entry. A client that shuts its side down and then closes is set
// to its state twice by the kernel (close() sets FIN_WAIT1 or FIN_WAIT2 again, where shutdown()
// or the peer's ACK put it); a closed connection goes on as a time-wait socket, which enters no
// state the tracepoint sees: the socket counts CLOSE.
TEST_F(TcpTelemetry, EachStateIsCountedOncePerEntry) {
  TracepointDelivery states("sock/inet_sock_set_state", "vigil_sock_state");
  ASSERT_TRUE(states.ok()) << states.error();
  auto before = metrics();
  const int kConnections = 6;
  auto r = run("ip netns exec " + ns(1) + " python3 -c '\n"
               "import socket, time\n"
               "for _ in range(" + std::to_string(kConnections) + "):\n"
               "    s = socket.create_connection((\"" + lab_->ip(2) + "\", 8080), timeout=5)\n"
               "    s.shutdown(socket.SHUT_WR)\n"
               "    s.close()\n"
               "time.sleep(0.5)\n'");
  ASSERT_EQ(r.status, 0) << r.output;
  auto after = settled_metrics();
  states.stop();
  auto entered = [&](const char* state) {
    return value(after, "vigil_tcp_state_transitions_total", {{"pod", "pod-1"}, {"state", state}}) -
           value(before, "vigil_tcp_state_transitions_total", {{"pod", "pod-1"}, {"state", state}});
  };
  for (const char* state : {"SYN_SENT", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "CLOSE"})
    expect_exact_or_undelivered(entered(state), kConnections, states, std::string("pod 1 entering ") + state);
  EXPECT_EQ(entered("TIME_WAIT"), 0);
}

// A server whose SYN-ACKs go unanswered sends them again: the kernel counts each in
// TcpRetransSegs (and TcpExtTCPSynRetrans), and so does Vigil, from tcp_retransmit_synack.
TEST_F(TcpTelemetry, SynAckRetransmitsAreTheServersRetransmits) {
  // Pod 1 drops every SYN-ACK it gets, so pod 2's handshakes never complete.
  auto nft = run("ip netns exec " + ns(1) + " nft 'add table inet t; add chain inet t i { type filter hook input priority 0; }; "
                 "add rule inet t i tcp flags & (syn | ack) == syn | ack drop'");
  ASSERT_EQ(nft.status, 0) << nft.output;
  TracepointDelivery synacks("tcp/tcp_retransmit_synack", "vigil_tcp_retransmit_synack");
  ASSERT_TRUE(synacks.ok()) << synacks.error();
  const uint64_t rtx_before = nstat(2, "TcpRetransSegs"), syn_before = nstat(2, "TcpExtTCPSynRetrans");
  auto before = metrics();
  // Two connection attempts, each given up after 2.5 s: the client's SYN again at 1 s, the
  // server's SYN-ACK again on its own timer and for each SYN that comes again.
  for (int i = 0; i < 2; ++i)
    run("ip netns exec " + ns(1) + " timeout 2.5 bash -c '(exec 3<>/dev/tcp/" + lab_->ip(2) + "/8080) 2>/dev/null; true'");
  run("ip netns exec " + ns(1) + " nft delete table inet t");
  std::this_thread::sleep_for(500ms);
  auto after = settled_metrics();
  synacks.stop();
  const uint64_t rtx = nstat(2, "TcpRetransSegs") - rtx_before, syn = nstat(2, "TcpExtTCPSynRetrans") - syn_before;
  const double vigil = value(after, "vigil_tcp_retransmits_total", {{"pod", "pod-2"}}) -
                       value(before, "vigil_tcp_retransmits_total", {{"pod", "pod-2"}});
  std::printf("pod 2: vigil %.0f retransmits; nstat TcpRetransSegs %llu, TcpExtTCPSynRetrans %llu\n", vigil,
              static_cast<unsigned long long>(rtx), static_cast<unsigned long long>(syn));
  EXPECT_GE(syn, 2u);          // each attempt's SYN-ACK went out again at least once
  EXPECT_EQ(rtx, syn);         // and pod 2 retransmitted nothing else
  expect_exact_or_undelivered(vigil, static_cast<double>(syn), synacks, "pod 2's SYN-ACK retransmits");
}

// The kernel counts retransmitted segments (TcpRetransSegs): a GSO skb sent again counts for
// each segment it holds, which tcp_retransmit_skb fires once for. Vigil counts the same.
TEST_F(TcpTelemetry, RetransmitsAgreeWithNstat) {
  TracepointDelivery retransmits("tcp/tcp_retransmit_skb", "vigil_tcp_retransmit");
  ASSERT_TRUE(retransmits.ok()) << retransmits.error();
  uint64_t nstat_before = nstat(2, "TcpRetransSegs");
  auto before = metrics();
  // 15% of what pod 1 receives is dropped: pod 2, the server, retransmits.
  lab_->cmd("drop 1 15 ingress");
  auto r = run("VIGIL_LAB_TRAFFIC=" + binary_path("tests/tools/vigil-lab-traffic") + " " +
               source_path("tests/lab/vigil-lab") + " --prefix " + lab_->prefix() + " http 1 2 100 4 4");
  lab_->cmd("clear 1");
  // The kernel's count read on both sides of the scrape, until no late retransmit falls between.
  std::string after;
  uint64_t nstat_after = 0;
  for (int i = 0; i < 10; ++i) {
    nstat_after = nstat(2, "TcpRetransSegs");
    after = settled_metrics();
    if (nstat(2, "TcpRetransSegs") == nstat_after) break;
  }
  retransmits.stop();
  double vigil = value(after, "vigil_tcp_retransmits_total", {{"pod", "pod-2"}}) -
                 value(before, "vigil_tcp_retransmits_total", {{"pod", "pod-2"}});
  double kernel = static_cast<double>(nstat_after - nstat_before);
  std::printf("retransmits: vigil %.0f, nstat TcpRetransSegs %.0f, tcp_retransmit_skb %llu hits (%s)\n", vigil, kernel,
              static_cast<unsigned long long>(retransmits.hits()), r.output.c_str());
  EXPECT_GT(vigil, 0);
  expect_exact_or_undelivered(vigil, kernel, retransmits, "pod 2's retransmitted segments");
}

// A bulk transfer's retransmits: TCP sends the data in GSO packets of many segments, and in
// loss recovery sends several lost segments again in one, which tcp_retransmit_skb reports once.
// The kernel counts each segment (TcpRetransSegs); so does Vigil.
TEST_F(TcpTelemetry, BulkRetransmitsAreCountedBySegment) {
  TracepointDelivery retransmits("tcp/tcp_retransmit_skb", "vigil_tcp_retransmit");
  ASSERT_TRUE(retransmits.ok()) << retransmits.error();
  Process server({"/usr/sbin/ip", "netns", "exec", ns(2), "iperf3", "-s", "-1", "-p", "5201"}, dir_ + "/iperf3-server.log");
  ASSERT_TRUE(wait_until([&] { return run("ip netns exec " + ns(2) + " ss -Hltn 'sport = :5201' | grep -q LISTEN").status == 0; },
                         5s));
  const uint64_t before_segs = nstat(2, "TcpRetransSegs");
  auto before = metrics();
  // Pod 2 sends to pod 1 for 3 s (-R), and pod 1 drops 3 % of what it receives.
  lab_->cmd("drop 1 3 ingress");
  auto r = run("ip netns exec " + ns(1) + " timeout 20 iperf3 -c " + lab_->ip(2) + " -p 5201 -t 3 -R");
  lab_->cmd("clear 1");
  ASSERT_EQ(r.status, 0) << r.output;
  std::string after;
  uint64_t segs = 0;
  for (int i = 0; i < 10; ++i) {
    segs = nstat(2, "TcpRetransSegs");
    after = settled_metrics();
    if (nstat(2, "TcpRetransSegs") == segs) break;
  }
  retransmits.stop();
  const double kernel = static_cast<double>(segs - before_segs);
  const double vigil = value(after, "vigil_tcp_retransmits_total", {{"pod", "pod-2"}}) -
                       value(before, "vigil_tcp_retransmits_total", {{"pod", "pod-2"}});
  std::printf("bulk: vigil %.0f retransmitted segments, nstat TcpRetransSegs %.0f, tcp_retransmit_skb %llu hits\n", vigil, kernel,
              static_cast<unsigned long long>(retransmits.hits()));
  // More segments than skbs sent again: the case this test is for did happen.
  EXPECT_GT(kernel, static_cast<double>(retransmits.hits()));
  expect_exact_or_undelivered(vigil, kernel, retransmits, "pod 2's retransmitted segments");
}

// A retransmit the stack drops on its way out (here pod 1's own output chain, -EPERM) is a
// retransmit to the kernel: it counts it in TcpRetransSegs (and TcpExtTCPRetransFail). So does
// Vigil.
TEST_F(TcpTelemetry, RetransmitsDroppedOnTheWayOutAreRetransmits) {
  auto nft = run("ip netns exec " + ns(1) + " nft 'add table inet t; add chain inet t o { type filter hook output priority 0; }; "
                 "add rule inet t o tcp dport 83 drop'");
  ASSERT_EQ(nft.status, 0) << nft.output;
  TracepointDelivery retransmits("tcp/tcp_retransmit_skb", "vigil_tcp_retransmit");
  ASSERT_TRUE(retransmits.ok()) << retransmits.error();
  const uint64_t rtx_before = nstat(1, "TcpRetransSegs"), fail_before = nstat(1, "TcpExtTCPRetransFail");
  auto before = metrics();
  // Two connects whose SYNs never leave pod 1: each SYN is sent again at 1 s (and fails again),
  // and the connect is given up at 2.5 s.
  for (int i = 0; i < 2; ++i)
    run("ip netns exec " + ns(1) + " timeout 2.5 bash -c '(exec 3<>/dev/tcp/" + lab_->ip(2) + "/83) 2>/dev/null; true'");
  run("ip netns exec " + ns(1) + " nft delete table inet t");
  auto after = settled_metrics();
  retransmits.stop();
  const uint64_t rtx = nstat(1, "TcpRetransSegs") - rtx_before, failed = nstat(1, "TcpExtTCPRetransFail") - fail_before;
  const double vigil = value(after, "vigil_tcp_retransmits_total", {{"pod", "pod-1"}}) -
                       value(before, "vigil_tcp_retransmits_total", {{"pod", "pod-1"}});
  std::printf("pod 1: vigil %.0f retransmits; nstat TcpRetransSegs %llu, TcpExtTCPRetransFail %llu\n", vigil,
              static_cast<unsigned long long>(rtx), static_cast<unsigned long long>(failed));
  EXPECT_GE(failed, 2u);  // every SYN sent again failed
  EXPECT_EQ(failed, rtx);
  expect_exact_or_undelivered(vigil, static_cast<double>(rtx), retransmits, "pod 1's failed SYN retransmits");
}

}  // namespace
}  // namespace vigil::test
