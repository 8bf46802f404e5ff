// Exact counts against ground truth the test creates: a fixed number of UDP datagrams, and drops
// with three different kernel reasons caused on purpose. The link is made quiet first
// (quiet_pod_pair: static neighbour entries, IPv6 off), so that every packet on it is one the
// test sent.
#include <gtest/gtest.h>

#include <cctype>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

TEST(Accuracy, UdpCountAndThreeDropReasonsAreExact) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  const std::string ns1 = lab.prefix() + "-pod-1", ns2 = lab.prefix() + "-pod-2";
  const std::string ip1 = lab.ip(1), ip2 = lab.ip(2);
  ASSERT_TRUE(quiet_pod_pair(lab));
  // Pod 2 drops UDP to port 9001 (NETFILTER_DROP); nothing listens on 9002 (NO_SOCKET); it has
  // no handler for IP protocol 253 (IP_NOPROTO). Its answers (ICMP unreachable) go out, not in.
  auto nft = run("ip netns exec " + ns2 + " nft 'add table inet t; add chain inet t i { type filter hook input priority 0; }; "
                 "add rule inet t i udp dport 9001 drop'");
  ASSERT_EQ(nft.status, 0) << nft.output;
  const std::string traffic = binary_path("tests/tools/vigil-lab-traffic");
  ScopedTempDir logs;
  Process sink({"/usr/bin/env", "ip", "netns", "exec", ns2, traffic, "udp-sink", "9000", "30"}, logs.path() + "/sink.log");
  for (int i = 0; i < 50 && run("ip netns exec " + ns2 + " ss -Hlun 'sport = :9000' | grep -q 9000").status != 0; ++i)
    std::this_thread::sleep_for(100ms);

  std::string dir = make_temp_dir();
  int port = free_port();
  std::string config = write_temp_file(dir, "vigil.yaml",
      "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\npods: {file: " + lab.pods_file() +
      "}\nrules: []\nnotifiers: []\nremote_context: {namespaces: [lab], max_peers: 8}\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent.log();
  auto value = [&](const std::string& text, const std::string& name, std::map<std::string, std::string> l) {
    return metric_value(text, name, l).value_or(0);
  };
  const std::map<std::string, std::string> out1 = {{"pod", "pod-1"}, {"direction", "egress"}};
  const std::map<std::string, std::string> in2 = {{"pod", "pod-2"}, {"direction", "ingress"}};
  // The drop counts come from a tracing program (tp_btf/kfree_skb): see TracepointDelivery.
  TracepointDelivery drops("skb/kfree_skb", "vigil_kfree_skb");
  ASSERT_TRUE(drops.ok()) << drops.error();
  std::string before = http_get("127.0.0.1", port, "/metrics");

  const int kDelivered = 1000, kFiltered = 70, kNoSocket = 50, kNoProto = 30;
  auto send = [&](const std::string& args) {
    auto r = run("ip netns exec " + ns1 + " " + traffic + " " + args);
    EXPECT_EQ(r.status, 0) << args << ": " << r.output;
  };
  send("udp-send " + ip2 + " 9000 " + std::to_string(kDelivered) + " 100");
  send("udp-send " + ip2 + " 9001 " + std::to_string(kFiltered) + " 100");
  send("udp-send " + ip2 + " 9002 " + std::to_string(kNoSocket) + " 100");
  send("ip-proto " + ip2 + " 253 " + std::to_string(kNoProto));
  const int kSent = kDelivered + kFiltered + kNoSocket + kNoProto;

  // Wait (bounded) for the agent's read of the last packets.
  std::string after;
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(200ms);
    after = http_get("127.0.0.1", port, "/metrics");
    if (value(after, "vigil_forward_packets_total", in2) - value(before, "vigil_forward_packets_total", in2) >= kSent &&
        value(after, "vigil_drop_packets_total", {{"pod", "pod-2"}, {"reason", "IP_NOPROTO"}}) >= kNoProto)
      break;
  }
  after = metrics_after_ticks(port);
  drops.stop();
  auto delta = [&](const std::string& name, std::map<std::string, std::string> l) {
    return value(after, name, l) - value(before, name, l);
  };
  // Every packet pod 1 sent, once: its egress carries nothing else on the quiet link. On pod 2's
  // side the host's own multicast (the bridge's IPv6) may also arrive, so its count is taken
  // from pod 1 as a named peer.
  const std::map<std::string, std::string> in2_from1 = {{"pod", "pod-2"}, {"direction", "ingress"}, {"remote_pod", "pod-1"}};
  EXPECT_EQ(delta("vigil_forward_packets_total", out1), kSent);
  EXPECT_EQ(delta("vigil_remote_forward_packets_total", in2_from1), kSent);
  // 100-byte payloads: 14 Ethernet + 20 IP + 8 UDP + 100; the raw packets 14 + 20 + 16.
  const double bytes = (kDelivered + kFiltered + kNoSocket) * (14 + 20 + 8 + 100) + kNoProto * (14 + 20 + 16);
  EXPECT_EQ(delta("vigil_forward_bytes_total", out1), bytes);
  EXPECT_EQ(delta("vigil_remote_forward_bytes_total", in2_from1), bytes);
  // Each drop under its own kernel reason, exactly, and no other drop on pod 2's ingress.
  for (const auto& [reason, want] : {std::pair<std::string, int>{"NETFILTER_DROP", kFiltered}, {"NO_SOCKET", kNoSocket},
                                     {"IP_NOPROTO", kNoProto}})
    expect_exact_or_undelivered(delta("vigil_drop_packets_total", {{"pod", "pod-2"}, {"direction", "ingress"}, {"reason", reason}}),
                                want, drops, "drops " + reason);
  expect_exact_or_undelivered(delta("vigil_remote_drop_packets_total", in2_from1), kFiltered + kNoSocket + kNoProto, drops,
                              "remote drops");
  // Drop bytes are the skb's length where the kernel dropped it: for IP_NOPROTO the IP header
  // has already been pulled, so the 16 bytes of payload.
  expect_exact_or_undelivered(
      delta("vigil_drop_bytes_total", {{"pod", "pod-2"}, {"direction", "ingress"}, {"reason", "IP_NOPROTO"}}) / 16, kNoProto,
      drops, "IP_NOPROTO drop bytes / 16");
  std::printf("kfree_skb: %llu hits, vigil_kfree_skb ran %llu times\n", static_cast<unsigned long long>(drops.hits()),
              static_cast<unsigned long long>(drops.runs()));
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

// An agent on the lab's pods (tick 200 ms, no rules), with `extra` config lines.
std::unique_ptr<Process> lab_agent(const Lab& lab, const ScopedTempDir& dir, int port, const std::string& extra = "") {
  const std::string config = write_temp_file(dir.path(), "vigil.yaml",
      "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\npods: {file: " + lab.pods_file() +
      "}\nrules: []\nnotifiers: []\n" + extra);
  return std::make_unique<Process>(std::vector<std::string>{binary_path("vigil"), "agent", "--config", config},
                                   dir.path() + "/agent.log");
}

// /metrics once the drops of `labels` grew by `want` since `before` (bounded: 10 s), two ticks on.
std::string metrics_once_drops_grew(int port, const std::string& before, const std::map<std::string, std::string>& labels,
                                    double want) {
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(200ms);
    const std::string now = http_get("127.0.0.1", port, "/metrics");
    if (metric_sum(now, "vigil_drop_packets_total", labels) - metric_sum(before, "vigil_drop_packets_total", labels) >= want)
      break;
  }
  return metrics_after_ticks(port);
}

// A packet dropped on its way out of the pod that sent it, before it has a device (its own
// OUTPUT chain), is that pod's egress drop: the kernel drops it in the sender's namespace, and the
// pod it was meant for never sees it.
TEST(Accuracy, DropInTheSendersOutputChainIsTheSendersEgress) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  const std::string ns1 = lab.prefix() + "-pod-1";
  ASSERT_TRUE(quiet_pod_pair(lab));
  auto nft = run("ip netns exec " + ns1 + " nft 'add table inet t; add chain inet t o { type filter hook output priority 0; }; "
                 "add rule inet t o udp dport 9001 drop'");
  ASSERT_EQ(nft.status, 0) << nft.output;
  ScopedTempDir dir;
  const int port = free_port();
  auto agent = lab_agent(lab, dir, port, "remote_context: {namespaces: [lab], max_peers: 8}\n");
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent->log();
  TracepointDelivery drops("skb/kfree_skb", "vigil_kfree_skb");
  ASSERT_TRUE(drops.ok()) << drops.error();
  const std::string before = http_get("127.0.0.1", port, "/metrics");
  const int kFiltered = 40;
  // The sender's socket gets EPERM for each: vigil-lab-traffic counts what it sent, not this.
  run("ip netns exec " + ns1 + " " + binary_path("tests/tools/vigil-lab-traffic") + " udp-send " + lab.ip(2) + " 9001 " +
      std::to_string(kFiltered) + " 100");
  const std::map<std::string, std::string> out1 = {{"pod", "pod-1"}, {"direction", "egress"}, {"reason", "NETFILTER_DROP"}};
  const std::string after = metrics_once_drops_grew(port, before, out1, kFiltered);
  drops.stop();
  auto delta = [&](const std::string& name, const std::map<std::string, std::string>& l) {
    return metric_sum(after, name, l) - metric_sum(before, name, l);
  };
  expect_exact_or_undelivered(delta("vigil_drop_packets_total", out1), kFiltered, drops, "pod 1's egress drops");
  expect_exact_or_undelivered(
      delta("vigil_remote_drop_packets_total", {{"pod", "pod-1"}, {"direction", "egress"}, {"remote_pod", "pod-2"}}), kFiltered,
      drops, "pod 1's drops towards pod 2");
  EXPECT_EQ(delta("vigil_drop_packets_total", {{"pod", "pod-2"}, {"reason", "NETFILTER_DROP"}}), 0) << after;
  EXPECT_EQ(delta("vigil_drop_packets_total", {{"pod", "pod-1"}, {"direction", "ingress"}, {"reason", "NETFILTER_DROP"}}), 0);
  EXPECT_EQ(agent->terminate(), 0) << agent->log();
}

// Interface indexes are per namespace: a device in a namespace that is not a watched pod's (a
// container's, a pod not yet known) may have the index of a pod's host-side veth. What is dropped
// on it is not that pod's.
TEST(Accuracy, ADropOnAnotherNamespacesDeviceWithAPodsIndexIsNotThePods) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  ScopedTempDir dir;
  const int port = free_port();
  auto agent = lab_agent(lab, dir, port);
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent->log();
  auto strip = [](std::string s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    return s;
  };
  const std::string index = strip(run("cat /sys/class/net/" + lab.veth(2) + "/ifindex").output);
  ASSERT_FALSE(index.empty());
  // Two namespaces of the test's own, not pods: a veth between them whose end in `a` has the
  // index of pod 2's host-side veth, and a rule in `a` that drops what comes to UDP port 9001.
  const std::string a = lab.prefix() + "-other-a", b = lab.prefix() + "-other-b";
  struct Namespaces {
    std::string a, b;
    ~Namespaces() { run("ip netns del " + a + " 2>/dev/null; ip netns del " + b + " 2>/dev/null"); }
  } cleanup{a, b};
  for (const std::string& c :
       {"ip netns add " + a, "ip netns add " + b,
        "ip -n " + a + " link add xa index " + index + " type veth peer name xb netns " + b,
        "ip -n " + a + " addr add 10.253.0.1/24 dev xa", "ip -n " + b + " addr add 10.253.0.2/24 dev xb",
        "ip -n " + a + " link set xa up", "ip -n " + b + " link set xb up",
        "ip netns exec " + a + " nft 'add table inet t; add chain inet t i { type filter hook input priority 0; }; "
        "add rule inet t i udp dport 9001 counter drop'"}) {
    auto r = run(c);
    ASSERT_EQ(r.status, 0) << c << ": " << r.output;
  }
  ASSERT_EQ(strip(run("ip netns exec " + a + " cat /sys/class/net/xa/ifindex").output), index);
  const std::string before = http_get("127.0.0.1", port, "/metrics");
  const int kSent = 40;
  auto r = run("ip netns exec " + b + " " + binary_path("tests/tools/vigil-lab-traffic") + " udp-send 10.253.0.1 9001 " +
               std::to_string(kSent) + " 100");
  ASSERT_EQ(r.status, 0) << r.output;
  // The drops happened: the rule's counter has them all.
  auto counter = run("ip netns exec " + a + " nft list chain inet t i");
  EXPECT_NE(counter.output.find("packets " + std::to_string(kSent) + " "), std::string::npos) << counter.output;
  const std::string after = metrics_after_ticks(port);
  EXPECT_EQ(metric_sum(after, "vigil_drop_packets_total", {{"reason", "NETFILTER_DROP"}}) -
                metric_sum(before, "vigil_drop_packets_total", {{"reason", "NETFILTER_DROP"}}),
            0)
      << after;
  EXPECT_EQ(agent->terminate(), 0) << agent->log();
}

// A datagram larger than the link's MTU goes as fragments and is reassembled in the receiver;
// dropped there (no socket on its port), it is one drop of the whole datagram, though the kernel
// frees, and reports, each fragment with it.
TEST(Accuracy, AReassembledDatagramDroppedIsOneDrop) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  const std::string ns1 = lab.prefix() + "-pod-1";
  ASSERT_TRUE(quiet_pod_pair(lab));
  ScopedTempDir dir;
  const int port = free_port();
  auto agent = lab_agent(lab, dir, port);
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent->log();
  TracepointDelivery drops("skb/kfree_skb", "vigil_kfree_skb");
  ASSERT_TRUE(drops.ok()) << drops.error();
  const std::string before = http_get("127.0.0.1", port, "/metrics");
  // 4000 bytes of payload: three fragments on the 1500-byte MTU.
  const int kDatagrams = 20, kPayload = 4000;
  auto r = run("ip netns exec " + ns1 + " " + binary_path("tests/tools/vigil-lab-traffic") + " udp-send " + lab.ip(2) +
               " 9002 " + std::to_string(kDatagrams) + " " + std::to_string(kPayload));
  ASSERT_EQ(r.status, 0) << r.output;
  const std::map<std::string, std::string> in2 = {{"pod", "pod-2"}, {"direction", "ingress"}};
  const std::string after = metrics_once_drops_grew(port, before, in2, kDatagrams);
  drops.stop();
  auto delta = [&](const std::string& name, const std::map<std::string, std::string>& l) {
    return metric_sum(after, name, l) - metric_sum(before, name, l);
  };
  // Each the size of the datagram where UDP dropped it: its UDP header and payload.
  expect_exact_or_undelivered(delta("vigil_drop_packets_total", in2), kDatagrams, drops, "pod 2's drops");
  EXPECT_EQ(delta("vigil_drop_packets_total", {{"pod", "pod-2"}, {"reason", "NO_SOCKET"}}), kDatagrams) << after;
  EXPECT_EQ(delta("vigil_drop_bytes_total", {{"pod", "pod-2"}, {"reason", "NO_SOCKET"}}), kDatagrams * (8 + kPayload));
  EXPECT_EQ(agent->terminate(), 0) << agent->log();
}

// A datagram a pod sends to itself, to a local port nobody listens on, is dropped inside the pod
// (NO_SOCKET on its loopback device): the pod's drop, cast "loopback", which the shipped
// pod-drop-surge rule (cast unicast) leaves out; it never crossed the pod's interface.
TEST(Accuracy, DropsInsideAPodToItselfAreCastLoopback) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(1);
  const std::string ns1 = lab.prefix() + "-pod-1";
  ScopedTempDir dir;
  const int port = free_port();
  auto agent = lab_agent(lab, dir, port);
  ASSERT_TRUE(wait_for_attached(port, 1)) << agent->log();
  TracepointDelivery drops("skb/kfree_skb", "vigil_kfree_skb");
  ASSERT_TRUE(drops.ok()) << drops.error();
  const std::string before = http_get("127.0.0.1", port, "/metrics");
  const std::string traffic = binary_path("tests/tools/vigil-lab-traffic");
  run("ip netns exec " + ns1 + " ip link set lo up");
  const int kV4 = 30, kV6 = 20;
  for (const auto& [to, n] : {std::pair<std::string, int>{"127.0.0.1", kV4}, {"::1", kV6}}) {
    auto r = run("ip netns exec " + ns1 + " " + traffic + " udp-send " + to + " 9002 " + std::to_string(n) + " 100");
    EXPECT_EQ(r.status, 0) << r.output;
  }
  const std::map<std::string, std::string> loop = {{"pod", "pod-1"}, {"reason", "NO_SOCKET"}, {"cast", "loopback"}};
  const std::string after = metrics_once_drops_grew(port, before, loop, kV4 + kV6);
  drops.stop();
  auto delta = [&](const std::map<std::string, std::string>& l) {
    return metric_sum(after, "vigil_drop_packets_total", l) - metric_sum(before, "vigil_drop_packets_total", l);
  };
  expect_exact_or_undelivered(delta(loop), kV4 + kV6, drops, "pod 1's loopback drops");
  EXPECT_EQ(delta({{"pod", "pod-1"}, {"reason", "NO_SOCKET"}, {"cast", "unicast"}}), 0) << after;
  EXPECT_EQ(agent->terminate(), 0) << agent->log();
}

// BIG TCP (IPv4: Linux 6.3+, Cilium's enable-ipv4-big-tcp): TCP sends GSO packets of up to the
// interface's gso_ipv4_max_size, and one over 64 KiB has an IPv4 total length of 0. Each is a
// whole packet: counted with its bytes and its flags, as the interface counts it, and never
// as malformed (its headers are fine; only the length field has no room for its size).
TEST(Accuracy, BigTcpPacketsOver64KiBAreWholePackets) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  ASSERT_TRUE(quiet_pod_pair(lab));
  const std::string traffic = binary_path("tests/tools/vigil-lab-traffic");
  for (int p : {1, 2}) {
    for (const std::string& cmd : {"ip netns exec " + lab.prefix() + "-pod-" + std::to_string(p) + " " + traffic + " big-tcp eth0 185000",
                                   traffic + " big-tcp " + lab.veth(p) + " 185000"}) {
      auto r = run(cmd);
      ASSERT_EQ(r.status, 0) << cmd << ": " << r.output;
    }
  }
  lab.cmd("serve-http 2");
  ScopedTempDir dir;
  const int port = free_port();
  auto agent = lab_agent(lab, dir, port);
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent->log();
  const std::string before = metrics_after_ticks(port);
  // What pod 2 sends, as its host-side veth receives it.
  auto received = [&](const char* what) {
    auto r = run("cat /sys/class/net/" + lab.veth(2) + "/statistics/rx_" + what);
    return std::stod(r.output);
  };
  const double packets0 = received("packets"), bytes0 = received("bytes");
  auto got = run("ip netns exec " + lab.prefix() + "-pod-1 curl -sS -o /dev/null -w '%{size_download}' http://" + lab.ip(2) +
                 ":8080/bytes/20000000");
  ASSERT_EQ(got.output, "20000000") << got.output;
  const double packets = received("packets") - packets0, bytes = received("bytes") - bytes0;
  ASSERT_GT(bytes / packets, 65536) << packets << " packets, " << bytes << " bytes: no packet over 64 KiB, no BIG TCP";
  const std::map<std::string, std::string> out2 = {{"pod", "pod-2"}, {"direction", "egress"}};
  auto delta = [&](const std::string& text, const std::string& name, const std::map<std::string, std::string>& l) {
    return metric_sum(text, name, l) - metric_sum(before, name, l);
  };
  std::string after;
  for (int i = 0; i < 50; ++i) {
    after = http_get("127.0.0.1", port, "/metrics");
    if (delta(after, "vigil_forward_packets_total", out2) >= packets) break;
    std::this_thread::sleep_for(200ms);
  }
  after = metrics_after_ticks(port);
  EXPECT_EQ(delta(after, "vigil_forward_packets_total", out2), packets);
  EXPECT_EQ(delta(after, "vigil_forward_bytes_total", out2), bytes);
  EXPECT_EQ(delta(after, "vigil_malformed_packets_total", {{"pod", "pod-2"}}), 0) << after;
  EXPECT_EQ(delta(after, "vigil_malformed_packets_total", {{"pod", "pod-1"}}), 0) << after;
  // Every packet pod 2 sent is a segment of the connection, each with ACK set.
  auto flags = out2;
  flags["flag"] = "ACK";
  EXPECT_EQ(delta(after, "vigil_tcp_flags_total", flags), packets) << after;
  EXPECT_EQ(agent->terminate(), 0) << agent->log();
}

}  // namespace
}  // namespace vigil::test
