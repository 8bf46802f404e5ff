// Remote context: a pod that opts in gets traffic by peer, named when the peer is a pod, and
// 10,000 distinct peers leave the series count bounded by max_peers, the overflow in "other".
#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <sstream>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

size_t count_series(const std::string& text, const std::string& name) {
  size_t n = 0, pos = 0;
  const std::string needle = "\n" + name + "{";
  while ((pos = text.find(needle, pos)) != std::string::npos) {
    ++n;
    pos += needle.size();
  }
  return n;
}

// pod-1's TCP families, to show which connect a failure is missing.
std::string tcp_lines(const std::string& text) {
  std::string out, line;
  std::istringstream in(text);
  while (std::getline(in, line))
    if (line.rfind("vigil_tcp_", 0) == 0 && line.find("pod=\"pod-1\"") != std::string::npos) out += line + "\n";
  return out;
}

// Writes pods.yaml (pods 1..`pods` of the lab; pod-1 alone carries the label that opts in) and
// vigil.yaml with remote context `{pod_labels: {remote: "yes"}, <remote>}` into `dir`.
// The pods file alone: `pods` (by number) of the lab, those in `opted` with the label.
std::string write_pods(const Lab& lab, const std::vector<int>& pods, const std::string& dir, const std::set<int>& opted = {1}) {
  std::string yaml;
  for (int p : pods)
    yaml += "- {namespace: lab, name: pod-" + std::to_string(p) + (opted.count(p) ? ", labels: {remote: \"yes\"}" : "") +
            ", netns: " + lab.prefix() + "-pod-" + std::to_string(p) + "}\n";
  return write_temp_file(dir, "pods.yaml", yaml);
}

std::string write_config(const Lab& lab, int pods, const std::string& dir, int port, const std::string& remote,
                         const std::set<int>& opted = {1}) {
  std::vector<int> all;
  for (int p = 1; p <= pods; ++p) all.push_back(p);
  write_pods(lab, all, dir, opted);
  return write_temp_file(dir, "vigil.yaml",
      "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\npods: {file: pods.yaml}\nrules: []\nnotifiers: []\n"
      "remote_context: {pod_labels: {remote: \"yes\"}, " + remote + "}\n");
}

TEST(RemoteContext, BoundedByConfigNotByTraffic) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(3);
  std::string dir = make_temp_dir();
  int port = free_port();
  // Only pod-1 opts in (by label); pod-2 and pod-3 do not.
  const int kMaxPeers = 50;
  std::string config = write_config(lab, 3, dir, port, "max_peers: " + std::to_string(kMaxPeers));
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  ASSERT_TRUE(wait_for_attached(port, 3)) << agent.log();
  // A named peer: pod-3 sends 30 datagrams to pod-1.
  lab.cmd("udp 3 1 30");
  // Drops and TCP failures by peer: pod-1 drops 20 more datagrams from pod-3, refuses nothing
  // itself but connects 3 times to a closed port on pod-3 (refused) and once into a black hole
  // on pod-3 with one SYN retry (timed out, one retransmit).
  lab.cmd("drop 1 100 ingress");
  lab.cmd("udp 3 1 20");
  lab.cmd("clear 1");
  const std::string ns1 = lab.prefix() + "-pod-1";
  auto r = run("ip netns exec " + ns1 + " bash -c 'for i in 1 2 3; do (exec 3<>/dev/tcp/" + lab.ip(3) +
               "/81) 2>/dev/null; done; true'");
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_EQ(run("ip netns exec " + ns1 + " sysctl -qw net.ipv4.tcp_syn_retries=1").status, 0);
  auto nft = run("ip netns exec " + lab.prefix() + "-pod-3 nft 'add table inet t; add chain inet t i "
                 "{ type filter hook input priority 0; }; add rule inet t i tcp dport 82 drop'");
  ASSERT_EQ(nft.status, 0) << nft.output;
  run("ip netns exec " + ns1 + " timeout 20 bash -c 'exec 3<>/dev/tcp/" + lab.ip(3) + "/82'");
  // 10,000 distinct peers: pod-2 sends one datagram to pod-1 from each of 10,000 source addresses.
  const int kPeers = 10000;
  r = run("ip netns exec " + lab.prefix() + "-pod-2 " + binary_path("tests/tools/vigil-lab-traffic") +
               " udp-from-many " + lab.ip(1) + " 9000 " + std::to_string(kPeers) + " 10.250.0.1");
  ASSERT_EQ(r.status, 0) << r.output;
  std::string text = metrics_after_ticks(port);

  auto named = metric_value(text, "vigil_remote_forward_packets_total",
                            {{"pod", "pod-1"}, {"direction", "ingress"}, {"remote_pod", "pod-3"}, {"remote_namespace", "lab"}});
  ASSERT_TRUE(named.has_value()) << text.substr(0, 4000);
  // Exactly the datagrams and pod-3's 3 RSTs: ARP is not IP, and pod-3 sends nothing else over IPv4.
  EXPECT_EQ(*named, 30 + 20 + 3);
  const std::map<std::string, std::string> from3 = {{"pod", "pod-1"}, {"direction", "ingress"}, {"remote_pod", "pod-3"}};
  const std::map<std::string, std::string> to3 = {{"pod", "pod-1"}, {"direction", "egress"}, {"remote_pod", "pod-3"}};
  // The first 30 found no socket on the port (NO_SOCKET), the next 20 met nftables.
  EXPECT_EQ(metric_value(text, "vigil_remote_drop_packets_total", from3).value_or(-1), 30 + 20);
  // Four failed connects, exactly, unless the kernel skipped runs of the state-change program
  // (it was already running on that CPU when another socket changed state): those skipped runs
  // are counted, and only they may explain a shortfall.
  const double skipped =
      metric_value(text, "vigil_bpf_program_recursion_misses_total", {{"program", "vigil_sock_state"}}).value_or(-1);
  ASSERT_GE(skipped, 0) << "no recursion-miss count for vigil_sock_state";
  const double failures = metric_value(text, "vigil_remote_tcp_connect_failures_total", to3).value_or(-1);
  EXPECT_LE(failures, 4);
  EXPECT_GE(failures, 4 - skipped) << skipped << " runs skipped\n" << tcp_lines(text);
  // The black-holed SYN was retransmitted (once or twice, as the kernel's timer falls); pod-1
  // sent nothing else that could be retransmitted, so all of its retransmits are to pod-3.
  EXPECT_GE(metric_value(text, "vigil_remote_tcp_retransmits_total", to3).value_or(-1), 1);
  EXPECT_EQ(metric_value(text, "vigil_remote_tcp_retransmits_total", to3).value_or(-1),
            metric_sum(text, "vigil_tcp_retransmits_total", {{"pod", "pod-1"}}));
  // The same totals as the pod's own families: nothing attributed to another peer.
  EXPECT_EQ(metric_sum(text, "vigil_remote_tcp_connect_failures_total", {{"pod", "pod-1"}}),
            metric_sum(text, "vigil_tcp_connect_failures_total", {{"pod", "pod-1"}}));

  // Bounded: at most max_peers distinct peers per pod, each in both directions at most, plus
  // the "other" and "local-scope" series per direction, whatever the traffic.
  size_t series = count_series(text, "vigil_remote_forward_packets_total");
  EXPECT_LE(series, 2 * static_cast<size_t>(kMaxPeers) + 4) << series << " series";
  double other = metric_value(text, "vigil_remote_forward_packets_total",
                              {{"pod", "pod-1"}, {"direction", "ingress"}, {"remote_ip", "other"}}).value_or(0);
  double all = metric_sum(text, "vigil_remote_forward_packets_total", {{"pod", "pod-1"}, {"direction", "ingress"}});
  // Nothing lost: every datagram is counted, by peer or in "other".
  EXPECT_GE(all, kPeers + 50);
  // IPv6 neighbour discovery and MLD of fresh namespaces reach pod-1 from its neighbours' link
  // local addresses: a few dozen at most, all in the local-scope bucket, none taking a slot.
  EXPECT_LE(all, kPeers + 50 + 40);
  EXPECT_GE(other, kPeers - kMaxPeers);
  EXPECT_EQ(text.find("remote_ip=\"fe80"), std::string::npos) << "a link-local peer took a slot";
  EXPECT_GT(metric_sum(text, "vigil_remote_forward_packets_total", {{"pod", "pod-1"}, {"remote_ip", "local-scope"}}), 0);
  // Pods that did not opt in have no remote series.
  EXPECT_FALSE(metric_value(text, "vigil_remote_forward_packets_total", {{"pod", "pod-2"}}));
  EXPECT_EQ(*metric_value(text, "vigil_bpf_errors_total", {{"site", "remote_map_full"}}), 0);
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

// max_peers counts peers: a peer the pod both sends to and receives from takes one of them. With
// max_peers 2, pod 1 talks both ways with pods 2 and 3, and both are named each way; a third peer
// (10.252.0.1, one way) goes to "other".
TEST(RemoteContext, APeerBothWaysTakesOneOfMaxPeers) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(3);
  std::string dir = make_temp_dir();
  int port = free_port();
  std::string config = write_config(lab, 3, dir, port, "max_peers: 2");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  ASSERT_TRUE(wait_for_attached(port, 3)) << agent.log();
  lab.cmd("udp 1 2 5");
  lab.cmd("udp 1 3 5");
  lab.cmd("udp 2 1 7");
  lab.cmd("udp 3 1 7");
  auto r = run("ip netns exec " + lab.prefix() + "-pod-2 " + binary_path("tests/tools/vigil-lab-traffic") +
               " udp-from-many " + lab.ip(1) + " 9000 1 10.252.0.1");
  ASSERT_EQ(r.status, 0) << r.output;
  std::string text;
  auto peer = [&](const std::string& dir, const std::string& remote) {
    return metric_value(text, "vigil_remote_forward_packets_total", {{"pod", "pod-1"}, {"direction", dir}, {"remote_pod", remote}})
        .value_or(0);
  };
  for (int i = 0; i < 50; ++i) {
    text = metrics_after_ticks(port, 1);
    if (peer("ingress", "pod-2") >= 7 && peer("ingress", "pod-3") >= 7) break;
  }
  for (const char* remote : {"pod-2", "pod-3"}) {
    EXPECT_GE(peer("egress", remote), 5) << remote << "\n" << text;
    EXPECT_GE(peer("ingress", remote), 7) << remote << "\n" << text;
  }
  EXPECT_EQ(text.find("remote_ip=\"10.252.0.1\""), std::string::npos) << "a third peer was named";
  EXPECT_EQ(metric_value(text, "vigil_remote_forward_packets_total",
                         {{"pod", "pod-1"}, {"direction", "ingress"}, {"remote_ip", "other"}}).value_or(0), 1)
      << text;
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

// A repeated peer is counted in the TC program's per-CPU entry for the pod's last peer, and moved
// into the peer's counters when another peer comes; the agent adds the two. Pod-2 and pod-3 send
// to pod-1 at the same time, in rounds, so that pod-1's entries change peer over and over while
// the agent reads them: every scrape meanwhile shows each peer's count never going backwards, and
// at the end each peer's count is exact.
TEST(RemoteContext, InterleavedPeersExactAndNeverBackwards) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(3);
  std::string dir = make_temp_dir();
  int port = free_port();
  std::string config = write_config(lab, 3, dir, port, "max_peers: 8");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  ASSERT_TRUE(wait_for_attached(port, 3)) << agent.log();
  const int kRounds = 20, kFrom2 = 250, kFrom3 = 150;
  const std::string traffic = binary_path("tests/tools/vigil-lab-traffic");
  auto sender = [&](int pod, int count) {
    return "ip netns exec " + lab.prefix() + "-pod-" + std::to_string(pod) + " " + traffic + " udp-send " + lab.ip(1) +
           " 9000 " + std::to_string(count) + " 64";
  };
  Process senders({"/bin/sh", "-c",
                   "for i in $(seq 1 " + std::to_string(kRounds) + "); do " + sender(2, kFrom2) + " & " + sender(3, kFrom3) +
                       " & wait; sleep 0.05; done"},
                  dir + "/senders.log");
  auto from = [&](const std::string& text, const char* pod) {
    return metric_value(text, "vigil_remote_forward_packets_total",
                        {{"pod", "pod-1"}, {"direction", "ingress"}, {"remote_pod", pod}}).value_or(0);
  };
  double last2 = 0, last3 = 0;
  int scrapes = 0;
  for (int i = 0; i < 300 && senders.running(); ++i, ++scrapes) {  // <= 30 s
    const std::string text = http_get("127.0.0.1", port, "/metrics");
    const double n2 = from(text, "pod-2"), n3 = from(text, "pod-3");
    EXPECT_GE(n2, last2) << "scrape " << i;
    EXPECT_GE(n3, last3) << "scrape " << i;
    last2 = n2;
    last3 = n3;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_FALSE(senders.running()) << senders.log();
  EXPECT_GE(scrapes, 3) << "the traffic ended before the agent was read during it";
  const std::string text = metrics_after_ticks(port);
  // Exactly the datagrams: pod-2 and pod-3 send pod-1 nothing else over IP on the quiet lab.
  EXPECT_EQ(from(text, "pod-2"), kRounds * kFrom2);
  EXPECT_EQ(from(text, "pod-3"), kRounds * kFrom3);
  EXPECT_EQ(metric_value(text, "vigil_remote_forward_bytes_total",
                         {{"pod", "pod-1"}, {"direction", "ingress"}, {"remote_pod", "pod-2"}}).value_or(0),
            kRounds * kFrom2 * (14 + 20 + 8 + 64));
  std::printf("%d scrapes during the traffic\n", scrapes);
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

// remote_context.max_keys sizes the peer entries of the whole node (each has a counter per CPU).
// When they run out, a new peer is counted under the pod's "other", made with its remote context
// so that it always exists, and the shortage is counted: nothing lost, nothing misattributed.
TEST(RemoteContext, PeersBeyondMaxKeysAreCountedUnderOther) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  std::string dir = make_temp_dir();
  int port = free_port();
  const int kMaxKeys = 10;
  std::string config = write_config(lab, 2, dir, port, "max_peers: 50, max_keys: " + std::to_string(kMaxKeys));
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent.log();
  // 200 distinct peers, far more than the 10 entries (2 of them pod-1's "other").
  const int kPeers = 200;
  auto r = run("ip netns exec " + lab.prefix() + "-pod-2 " + binary_path("tests/tools/vigil-lab-traffic") +
               " udp-from-many " + lab.ip(1) + " 9000 " + std::to_string(kPeers) + " 10.251.0.1");
  ASSERT_EQ(r.status, 0) << r.output;
  std::string text = metrics_after_ticks(port);
  EXPECT_EQ(metric_value(text, "vigil_bpf_map_max_entries", {{"map", "vigil_remote"}}), kMaxKeys);
  const std::map<std::string, std::string> in1 = {{"pod", "pod-1"}, {"direction", "ingress"}};
  double all = metric_sum(text, "vigil_remote_forward_packets_total", in1);
  double other = metric_value(text, "vigil_remote_forward_packets_total",
                              {{"pod", "pod-1"}, {"direction", "ingress"}, {"remote_ip", "other"}}).value_or(0);
  // Every datagram counted, by peer or in "other" (plus the fresh pods' IPv6 chatter, local-scope).
  EXPECT_GE(all, kPeers) << text.substr(0, 4000);
  EXPECT_LE(all, kPeers + 40);
  // At most the entries left after the two "other"s went to named peers (or local-scope).
  EXPECT_GE(other, kPeers - (kMaxKeys - 2));
  EXPECT_LE(count_series(text, "vigil_remote_forward_packets_total"), static_cast<size_t>(kMaxKeys));
  EXPECT_GT(metric_value(text, "vigil_bpf_errors_total", {{"site", "remote_map_full"}}).value_or(0), 0);
  EXPECT_FALSE(metric_value(text, "vigil_remote_forward_packets_total", {{"pod", "pod-2"}}));
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

// The kernel counts a peer by its address. A name that comes later (the peer's pod is known only
// now) ends the unnamed series and starts the named one from what comes after: the whole count
// under the new name would count the first datagrams twice in a sum over peers.
TEST(RemoteContext, APeerNamedLaterStartsItsNamedSeriesFromThen) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  ASSERT_TRUE(quiet_pod_pair(lab));
  std::string dir = make_temp_dir();
  int port = free_port();
  std::string config = write_config(lab, 1, dir, port, "max_peers: 8");  // pod-2 not in the pods file yet
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  ASSERT_TRUE(wait_for_attached(port, 1)) << agent.log();
  const std::string ip2 = lab.ip(2);
  auto series = [&](const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
      if (line.rfind("vigil_remote_forward_packets_total{", 0) == 0 && line.find("remote_ip=\"" + ip2 + "\"") != std::string::npos &&
          line.find("direction=\"ingress\"") != std::string::npos)
        out.push_back(line);
    return out;
  };
  const std::map<std::string, std::string> from2 = {{"pod", "pod-1"}, {"direction", "ingress"}, {"remote_ip", ip2}};
  lab.cmd("udp 2 1 5");
  std::string text;
  ASSERT_TRUE(wait_until([&] { text = metrics_after_ticks(port, 1); return metric_sum(text, "vigil_remote_forward_packets_total", from2) >= 5; },
                         10s)) << text;
  ASSERT_EQ(series(text).size(), 1u) << text;
  EXPECT_EQ(series(text)[0].find("remote_pod="), std::string::npos) << series(text)[0];
  // Now pod-2 is a watched pod: its address has a name.
  write_pods(lab, {1, 2}, dir);
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent.log();
  metrics_after_ticks(port);
  lab.cmd("udp 2 1 7");
  const std::map<std::string, std::string> named = {{"pod", "pod-1"}, {"direction", "ingress"}, {"remote_pod", "pod-2"}};
  ASSERT_TRUE(wait_until([&] { text = metrics_after_ticks(port, 1); return metric_sum(text, "vigil_remote_forward_packets_total", named) >= 7; },
                         10s)) << text;
  text = metrics_after_ticks(port);
  const auto lines = series(text);
  ASSERT_EQ(lines.size(), 1u) << text;
  EXPECT_NE(lines[0].find("remote_pod=\"pod-2\""), std::string::npos) << lines[0];
  EXPECT_EQ(metric_sum(text, "vigil_remote_forward_packets_total", from2), 7) << lines[0];
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

// A pod reserves one of its max_peers for a new peer before it takes a node-wide key for it.
// With no key left (remote_context.max_keys) the peer goes to "other", and the reservation is
// given back: once keys are free again (another opted-in pod went), the pod's new peers are
// named, not all in "other" for the rest of its life.
TEST(RemoteContext, AShortageOfKeysDoesNotUseUpMaxPeers) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(3);
  std::string dir = make_temp_dir();
  int port = free_port();
  // IPv4 only, so that no neighbour discovery takes keys while the test counts them.
  for (int p = 1; p <= 3; ++p)
    ASSERT_EQ(run("ip netns exec " + lab.prefix() + "-pod-" + std::to_string(p) + " sysctl -qw net.ipv6.conf.all.disable_ipv6=1").status, 0);
  // 10 keys: the "other" entries of pods 1 and 3 (two each) and 6 peers.
  std::string config = write_config(lab, 3, dir, port, "max_peers: 50, max_keys: 10", {1, 3});
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  ASSERT_TRUE(wait_for_attached(port, 3)) << agent.log();
  const std::string traffic = binary_path("tests/tools/vigil-lab-traffic"), ns2 = lab.prefix() + "-pod-2";
  auto from_many = [&](int to, int count, const std::string& base) {
    auto r = run("ip netns exec " + ns2 + " " + traffic + " udp-from-many " + lab.ip(to) + " 9000 " + std::to_string(count) +
                 " " + base);
    ASSERT_EQ(r.status, 0) << r.output;
  };
  from_many(3, 20, "10.251.0.1");   // pod-3's peers take the keys left
  from_many(1, 100, "10.250.0.1");  // pod-1's: none left, all in "other"
  std::string text = metrics_after_ticks(port);
  EXPECT_GT(metric_value(text, "vigil_bpf_errors_total", {{"site", "remote_map_full"}}).value_or(0), 0) << text.substr(0, 3000);
  // Pod-3 goes: its keys are free again.
  write_pods(lab, {1, 2}, dir, {1, 3});
  ASSERT_TRUE(wait_until([&] { return attached_pods(port).count("pod-3") == 0; }, 10s)) << agent.log();
  metrics_after_ticks(port);
  from_many(1, 3, "10.249.0.1");
  const std::map<std::string, std::string> in1 = {{"pod", "pod-1"}, {"direction", "ingress"}};
  ASSERT_TRUE(wait_until([&] {
    text = metrics_after_ticks(port, 1);
    return metric_sum(text, "vigil_remote_forward_packets_total", in1) >= 103;
  }, 10s)) << text.substr(0, 4000);
  for (const char* peer : {"10.249.0.1", "10.249.0.2", "10.249.0.3"})
    EXPECT_EQ(metric_value(text, "vigil_remote_forward_packets_total",
                           {{"pod", "pod-1"}, {"direction", "ingress"}, {"remote_ip", peer}}).value_or(0), 1)
        << peer << "\n" << text.substr(0, 4000);
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

// Loopback is no peer: what the pod's tracing programs see of a connect to itself (a sidecar on
// localhost that is not listening) goes to the local-scope bucket, and takes none of max_peers.
TEST(RemoteContext, LoopbackIsLocalScope) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(1);
  std::string dir = make_temp_dir();
  int port = free_port();
  std::string config = write_config(lab, 1, dir, port, "max_peers: 8");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  ASSERT_TRUE(wait_for_attached(port, 1)) << agent.log();
  const std::string ns1 = lab.prefix() + "-pod-1";
  run("ip netns exec " + ns1 + " ip link set lo up");
  auto r = run("ip netns exec " + ns1 + " bash -c 'for a in 127.0.0.1 ::1 127.0.0.1; do (exec 3<>/dev/tcp/$a/81) 2>/dev/null; done; true'");
  ASSERT_EQ(r.status, 0) << r.output;
  const std::map<std::string, std::string> local = {{"pod", "pod-1"}, {"remote_ip", "local-scope"}};
  std::string text;
  ASSERT_TRUE(wait_until([&] {
    text = metrics_after_ticks(port, 1);
    return metric_sum(text, "vigil_remote_tcp_connect_failures_total", local) >= 3;
  }, 10s)) << text.substr(0, 4000);
  EXPECT_EQ(metric_sum(text, "vigil_remote_tcp_connect_failures_total", {{"pod", "pod-1"}}), 3) << text.substr(0, 4000);
  EXPECT_EQ(text.find("remote_ip=\"127.0.0.1\""), std::string::npos);
  EXPECT_EQ(text.find("remote_ip=\"::1\""), std::string::npos);
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

// A dual-stack listener (an IPv6 socket that takes IPv4 too, as Go's, Java's and nginx's do) whose
// SYN-ACKs to an IPv4 client go unanswered sends them again: the request socket is of the
// listener's family, IPv6, but holds the client's IPv4 address only. The retransmits are the
// client's, by its IPv4 address.
TEST(RemoteContext, SynAckRetransmitsOfADualStackListenerAreTheIpv4Clients) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  std::string dir = make_temp_dir();
  int port = free_port();
  std::string config = write_config(lab, 2, dir, port, "max_peers: 8", {2});
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent.log();
  const std::string ns1 = lab.prefix() + "-pod-1", ns2 = lab.prefix() + "-pod-2";
  Process listener({"/usr/sbin/ip", "netns", "exec", ns2, "python3", "-c",
                    "import socket, time\n"
                    "s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)\n"
                    "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
                    "s.bind(('::', 8090)); s.listen(16); time.sleep(30)\n"},
                   dir + "/listener.log");
  ASSERT_TRUE(wait_until([&] { return run("ip netns exec " + ns2 + " ss -Hltn 'sport = :8090' | grep -q LISTEN").status == 0; },
                         5s));
  // Pod 1 drops every SYN-ACK it gets: pod 2 sends them again.
  auto nft = run("ip netns exec " + ns1 + " nft 'add table inet t; add chain inet t i { type filter hook input priority 0; }; "
                 "add rule inet t i tcp flags & (syn | ack) == syn | ack drop'");
  ASSERT_EQ(nft.status, 0) << nft.output;
  auto nstat = [&](const char* counter) {
    auto r = run("ip netns exec " + ns2 + " nstat -az " + counter + " | awk '$1 == \"" + counter + "\" {print $2}'");
    return r.output.empty() ? 0.0 : std::stod(r.output);
  };
  const double before = nstat("TcpExtTCPSynRetrans");
  run("ip netns exec " + ns1 + " timeout 2.5 bash -c '(exec 3<>/dev/tcp/" + lab.ip(2) + "/8090) 2>/dev/null; true'");
  run("ip netns exec " + ns1 + " nft delete table inet t");
  const double synacks = nstat("TcpExtTCPSynRetrans") - before;
  ASSERT_GE(synacks, 1);
  const std::map<std::string, std::string> to1 = {{"pod", "pod-2"}, {"direction", "egress"}, {"remote_ip", lab.ip(1)}};
  std::string text;
  wait_until([&] {
    text = metrics_after_ticks(port, 1);
    return metric_sum(text, "vigil_remote_tcp_retransmits_total", to1) >= synacks;
  }, 10s);
  EXPECT_EQ(metric_sum(text, "vigil_remote_tcp_retransmits_total", to1), synacks) << text.substr(0, 4000);
  EXPECT_EQ(metric_sum(text, "vigil_remote_tcp_retransmits_total", {{"pod", "pod-2"}}), synacks);
  listener.terminate();
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

}  // namespace
}  // namespace vigil::test
