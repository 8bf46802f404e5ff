// metrics.packet_level: pods left out get no TC program on their packets' path, are still
// counted exactly (forward counts from their interface's statistics, drops and TCP from the
// kernel's events), and get the programs only while a capture of them runs.
#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

// The TCX programs on `dev`, one name a hook: "vigil_tc vigil_tc" when Vigil's are on both.
std::string tcx_names(const std::string& dev) {
  std::string out;
  for (const auto& n : tcx_programs(dev)) out += (out.empty() ? "" : " ") + n;
  return out;
}

nlohmann::json pod_status(int port, const std::string& name) {
  auto j = nlohmann::json::parse(http_get("127.0.0.1", port, "/api/v1/pods"), nullptr, false);
  if (j.is_array())
    for (const auto& p : j)
      if (p.value("name", "") == name) return p;
  return nlohmann::json::object();
}

TEST(PacketLevel, PodsLeftOutAreCountedExactlyWithNoProgramAndCapturedOnDemand) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  ScopedTempDir dir;
  const std::string ns1 = lab.prefix() + "-pod-1", ns2 = lab.prefix() + "-pod-2";
  const std::string ip1 = lab.ip(1), ip2 = lab.ip(2);
  ASSERT_TRUE(quiet_pod_pair(lab));  // every packet on the link is the test's
  // Pod 2 drops UDP to port 9001 (NETFILTER_DROP, no answer goes back).
  auto nft = run("ip netns exec " + ns2 + " nft 'add table inet t; add chain inet t i { type filter hook input priority 0; }; "
                 "add rule inet t i udp dport 9001 drop'");
  ASSERT_EQ(nft.status, 0) << nft.output;
  const std::string traffic = binary_path("tests/tools/vigil-lab-traffic");
  Process sink({"/usr/bin/env", "ip", "netns", "exec", ns1, traffic, "udp-sink", "9000", "60"}, dir.path() + "/sink.log");
  for (int i = 0; i < 50 && run("ip netns exec " + ns1 + " ss -Hlun 'sport = :9000' | grep -q 9000").status != 0; ++i)
    std::this_thread::sleep_for(100ms);

  // Pod 1 is chosen by a label; pod 2 is not.
  std::ifstream in(lab.pods_file());
  std::stringstream pods_text;
  pods_text << in.rdbuf();
  std::string pods = pods_text.str();
  const std::string marker = "name: pod-1\n  labels: {";
  ASSERT_NE(pods.find(marker), std::string::npos) << pods;
  pods.replace(pods.find(marker), marker.size(), marker + "inspect: \"yes\", ");
  const std::string pods_file = write_temp_file(dir.path(), "pods.yaml", pods);
  const int port = free_port();
  const std::string config = write_temp_file(
      dir.path(), "vigil.yaml",
      "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\npods: {file: " + pods_file +
          "}\nrules: []\nnotifiers: []\n"
          "metrics:\n  packet_level: {pods: selected, pod_labels: {inspect: \"yes\"}}\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir.path() + "/agent.log");
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent.log();

  // The agent says which pods have programs, and the kernel agrees.
  EXPECT_EQ(pod_status(port, "pod-1").value("packet_level", false), true);
  EXPECT_EQ(pod_status(port, "pod-1").value("programs", false), true);
  EXPECT_EQ(pod_status(port, "pod-2").value("packet_level", true), false);
  EXPECT_EQ(pod_status(port, "pod-2").value("programs", true), false);
  EXPECT_EQ(tcx_names(lab.veth(1)), "vigil_tc vigil_tc");
  EXPECT_EQ(tcx_names(lab.veth(2)), "");

  auto value = [](const std::string& text, const std::string& name, std::map<std::string, std::string> l) {
    return metric_value(text, name, l).value_or(0);
  };
  const std::map<std::string, std::string> out2 = {{"pod", "pod-2"}, {"direction", "egress"}};
  const std::map<std::string, std::string> in2 = {{"pod", "pod-2"}, {"direction", "ingress"}};
  const std::map<std::string, std::string> in1 = {{"pod", "pod-1"}, {"direction", "ingress"}};
  TracepointDelivery drops("skb/kfree_skb", "vigil_kfree_skb");
  ASSERT_TRUE(drops.ok()) << drops.error();
  const std::string before = metrics_after_ticks(port);
  EXPECT_EQ(value(before, "vigil_pods_with_programs", {}), 1) << before;
  // The series of pod 2 exist from the start, from its interface.
  ASSERT_TRUE(metric_value(before, "vigil_forward_packets_total", out2)) << before;

  const int kDelivered = 1000, kFiltered = 70;
  auto send = [&](const std::string& ns, const std::string& args) {
    auto r = run("ip netns exec " + ns + " " + traffic + " " + args);
    EXPECT_EQ(r.status, 0) << args << ": " << r.output;
  };
  send(ns2, "udp-send " + ip1 + " 9000 " + std::to_string(kDelivered) + " 100");
  send(ns1, "udp-send " + ip2 + " 9001 " + std::to_string(kFiltered) + " 100");
  std::string after;
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(200ms);
    after = http_get("127.0.0.1", port, "/metrics");
    if (value(after, "vigil_forward_packets_total", out2) - value(before, "vigil_forward_packets_total", out2) >= kDelivered &&
        value(after, "vigil_drop_packets_total", {{"pod", "pod-2"}, {"reason", "NETFILTER_DROP"}}) >= kFiltered)
      break;
  }
  after = metrics_after_ticks(port);
  auto delta = [&](const std::string& name, std::map<std::string, std::string> l) {
    return value(after, name, l) - value(before, name, l);
  };
  const double frame = 14 + 20 + 8 + 100;
  // Pod 2's counts come from its interface, pod 1's from the programs: both exact, and equal.
  EXPECT_EQ(delta("vigil_forward_packets_total", out2), kDelivered);
  EXPECT_EQ(delta("vigil_forward_bytes_total", out2), kDelivered * frame);
  EXPECT_EQ(delta("vigil_forward_packets_total", in1), kDelivered);
  EXPECT_EQ(delta("vigil_forward_bytes_total", in1), kDelivered * frame);
  EXPECT_EQ(delta("vigil_forward_packets_total", in2), kFiltered);
  EXPECT_EQ(delta("vigil_forward_bytes_total", in2), kFiltered * frame);
  // Drops of a pod without programs: from the kernel's drop events, by reason, exact.
  drops.stop();
  expect_exact_or_undelivered(
      delta("vigil_drop_packets_total", {{"pod", "pod-2"}, {"direction", "ingress"}, {"reason", "NETFILTER_DROP"}}), kFiltered,
      drops, "pod 2's NETFILTER_DROP drops");

  // TCP from the socket events: a connection refused by pod 1 is a failure of pod 2's.
  TracepointDelivery states("sock/inet_sock_set_state", "vigil_sock_state");
  ASSERT_TRUE(states.ok()) << states.error();
  auto refused = run("ip netns exec " + ns2 + " timeout 5 bash -c 'exec 3<>/dev/tcp/" + ip1 + "/9999' 2>&1");
  EXPECT_NE(refused.status, 0) << refused.output;
  after = metrics_after_ticks(port);
  for (int i = 0; i < 25 && value(after, "vigil_tcp_connect_failures_total", {{"pod", "pod-2"}, {"reason", "refused"}}) < 1; ++i) {
    std::this_thread::sleep_for(200ms);
    after = http_get("127.0.0.1", port, "/metrics");
  }
  states.stop();
  expect_exact_or_undelivered(value(after, "vigil_tcp_connect_failures_total", {{"pod", "pod-2"}, {"reason", "refused"}}), 1,
                              states, "pod 2's refused connects");
  // What only the programs see (segments by flag) exists for pod 1, which sent the reset, and
  // not for pod 2.
  EXPECT_GE(value(after, "vigil_tcp_flags_total", {{"pod", "pod-1"}, {"direction", "egress"}, {"flag", "RST"}}), 1) << after;
  EXPECT_FALSE(metric_value(after, "vigil_tcp_flags_total", {{"pod", "pod-2"}})) << after;
  EXPECT_FALSE(metric_value(after, "vigil_tcp_resets_total", {{"pod", "pod-2"}})) << after;

  // A capture of pod 2 puts the programs on its interface while it runs, and only then.
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(10, 0);
  auto started = client.Post("/api/v1/captures", R"({"pods": ["lab/pod-2"], "before": "0s", "after": "4s"})",
                             "application/json");
  ASSERT_TRUE(started) << agent.log();
  ASSERT_EQ(started->status, 201) << started->body;
  const std::string id = nlohmann::json::parse(started->body).value("id", "");
  ASSERT_FALSE(id.empty()) << started->body;
  bool on = false;
  for (int i = 0; i < 50 && !on; ++i) {
    on = pod_status(port, "pod-2").value("programs", false) && tcx_names(lab.veth(2)) == "vigil_tc vigil_tc";
    if (!on) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(on) << tcx_names(lab.veth(2)) << agent.log();
  EXPECT_EQ(value(metrics_after_ticks(port, 1), "vigil_pods_with_programs", {}), 2);
  metrics_after_ticks(port, 2);  // the kernel copies a pod's packets from the end of the tick that marks it
  const std::string during_before = metrics_after_ticks(port);
  const int kCaptured = 200;
  send(ns2, "udp-send " + ip1 + " 9000 " + std::to_string(kCaptured) + " 100");
  nlohmann::json m;
  for (int i = 0; i < 100; ++i) {
    auto r = client.Get("/api/v1/captures/" + id);
    if (r && r->status == 200) {
      m = nlohmann::json::parse(r->body, nullptr, false);
      if (m.value("status", "") != "running") break;
    }
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(m.value("status", ""), "complete") << m.dump(2);
  EXPECT_EQ(m.value("packets_lost", 1), 0) << m.dump(2);
  // The counts stay the interface's while the programs are on: not twice.
  const std::string during_after = metrics_after_ticks(port);
  EXPECT_EQ(value(during_after, "vigil_forward_packets_total", out2) - value(during_before, "vigil_forward_packets_total", out2),
            kCaptured);
  EXPECT_FALSE(metric_value(during_after, "vigil_tcp_flags_total", {{"pod", "pod-2"}}));

  // What was captured is what pod 2 sent then, as tshark reads the file.
  const std::string file = dir.path() + "/pod-2.pcapng";
  auto got = run(binary_path("vigil") + " capture get " + id + " --agent 127.0.0.1:" + std::to_string(port) +
                 " --output " + file);
  ASSERT_EQ(got.status, 0) << got.output;
  auto udp = run("tshark -r " + file + " -Y 'ip.src == " + ip2 + " && udp.dstport == 9000' -T fields -e frame.number 2>/dev/null | wc -l");
  EXPECT_EQ(std::stoi(udp.output), kCaptured) << m.dump(2);
  EXPECT_EQ(m.value("packets", 0), kCaptured) << m.dump(2);

  // Once it ended, the programs go again.
  bool off = false;
  for (int i = 0; i < 50 && !off; ++i) {
    off = !pod_status(port, "pod-2").value("programs", true) && tcx_names(lab.veth(2)).empty();
    if (!off) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(off) << tcx_names(lab.veth(2)) << agent.log();
  EXPECT_EQ(tcx_names(lab.veth(1)), "vigil_tc vigil_tc");
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
}

// A pod's forward series go on from where they were when what counts them changes: its own
// packet_level setting turned off (the host-side veth's statistics, which hold the interface's
// history from before the agent) and on again (the programs, attached again from 0). Neither a
// step up by that history (a spike in rate(), and a surge to the rules) nor a fall to 0.
TEST(PacketLevel, ForwardSeriesGoOnWhenWhatCountsAPodChanges) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  ScopedTempDir dir;
  const std::string ns1 = lab.prefix() + "-pod-1", ns2 = lab.prefix() + "-pod-2";
  ASSERT_TRUE(quiet_pod_pair(lab));  // every packet on the link is the test's
  const std::string traffic = binary_path("tests/tools/vigil-lab-traffic");
  Process sink({"/usr/bin/env", "ip", "netns", "exec", ns2, traffic, "udp-sink", "9000", "60"}, dir.path() + "/sink.log");
  for (int i = 0; i < 50 && run("ip netns exec " + ns2 + " ss -Hlun 'sport = :9000' | grep -q 9000").status != 0; ++i)
    std::this_thread::sleep_for(100ms);
  auto send = [&](int count) {
    auto r = run("ip netns exec " + ns1 + " " + traffic + " udp-send " + lab.ip(2) + " 9000 " + std::to_string(count) + " 100");
    EXPECT_EQ(r.status, 0) << r.output;
  };
  // Before the agent: pod 2's interface counts these, its programs never will.
  send(30);

  std::ifstream in(lab.pods_file());
  std::stringstream pods_text;
  pods_text << in.rdbuf();
  const std::string marker = "name: pod-2\n";
  ASSERT_NE(pods_text.str().find(marker), std::string::npos) << pods_text.str();
  const std::string pods_file = dir.path() + "/pods.yaml";
  auto write_pods = [&](bool packet_level) {
    std::string pods = pods_text.str();
    pods.replace(pods.find(marker), marker.size(), marker + "  packet_level: " + (packet_level ? "true" : "false") + "\n");
    write_temp_file(dir.path(), "pods.yaml.new", pods);
    ASSERT_EQ(std::rename((pods_file + ".new").c_str(), pods_file.c_str()), 0);
  };
  write_pods(true);
  const int port = free_port();
  const std::string config = write_temp_file(
      dir.path(), "vigil.yaml",
      "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\npods: {file: " + pods_file +
          "}\nrules: []\nnotifiers: []\nmetrics: {packet_level: {pods: selected}}\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir.path() + "/agent.log");
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent.log();
  // Until /api/v1/pods says pod 2's programs are `on` (or off), and it is attached.
  auto wait_programs = [&](bool on) {
    for (int i = 0; i < 50; ++i) {
      const auto p = pod_status(port, "pod-2");
      if (p.value("attached", false) && p.value("programs", !on) == on) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  };
  ASSERT_TRUE(wait_programs(true)) << agent.log();

  const std::map<std::string, std::string> in2 = {{"pod", "pod-2"}, {"direction", "ingress"}};
  const std::map<std::string, std::string> out1 = {{"pod", "pod-1"}, {"direction", "egress"}};
  auto value = [](const std::string& text, const char* name, const std::map<std::string, std::string>& l) {
    return metric_value(text, name, l).value_or(-1);
  };
  const double frame = 14 + 20 + 8 + 100;
  std::vector<std::string> reads = {metrics_after_ticks(port)};
  auto read = [&] {
    reads.push_back(metrics_after_ticks(port));
    return reads.back();
  };
  auto since = [&](const std::string& earlier, const std::string& later, const char* name,
                   const std::map<std::string, std::string>& l) { return value(later, name, l) - value(earlier, name, l); };
  const std::string start = reads.front();
  ASSERT_GE(value(start, "vigil_forward_packets_total", in2), 0) << start;

  send(40);  // counted by the programs
  const std::string programs = read();
  EXPECT_EQ(since(start, programs, "vigil_forward_packets_total", in2), 40) << programs;

  write_pods(false);
  ASSERT_TRUE(wait_programs(false)) << agent.log();
  const std::string switched = read();
  // Its interface has counted 70 and more: the series stays where it was.
  EXPECT_EQ(since(programs, switched, "vigil_forward_packets_total", in2), 0) << switched;
  EXPECT_EQ(since(programs, switched, "vigil_forward_bytes_total", in2), 0);
  send(25);  // counted by the interface
  const std::string stats = read();
  EXPECT_EQ(since(switched, stats, "vigil_forward_packets_total", in2), 25) << stats;

  write_pods(true);
  ASSERT_TRUE(wait_programs(true)) << agent.log();
  const std::string back = read();
  // The programs start again from 0: the series does not fall back.
  EXPECT_EQ(since(stats, back, "vigil_forward_packets_total", in2), 0) << back;
  send(15);
  const std::string end = read();
  EXPECT_EQ(since(start, end, "vigil_forward_packets_total", in2), 80) << end;
  EXPECT_EQ(since(start, end, "vigil_forward_bytes_total", in2), 80 * frame);
  // Pod 1, counted by its interface throughout and never attached again: everything it sent.
  EXPECT_EQ(since(start, end, "vigil_forward_packets_total", out1), 80);
  for (size_t i = 1; i < reads.size(); ++i)
    EXPECT_GE(value(reads[i], "vigil_forward_packets_total", in2), value(reads[i - 1], "vigil_forward_packets_total", in2))
        << "read " << i;
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
}

}  // namespace
}  // namespace vigil::test
