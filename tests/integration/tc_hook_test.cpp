// Vigil's TC programs observe and never decide: another tool's TC filter on the same pod
// interface (a CNI's policy, here a BPF filter that drops UDP to port 9000) still runs after
// them and still drops, while Vigil counts the packets and the drop with the kernel's reason.
// On kernels with TCX (6.6+) the programs are TCX links, at the front of each hook's chain,
// and put back there when another tool's program gets in front of them.
#include <bpf/bpf.h>
#include <arpa/inet.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <signal.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <fstream>
#include <map>
#include <iterator>
#include <sstream>
#include <thread>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "engine/datapath.h"
#include "engine/netns.h"
#include "support.h"
#include "vigil_abi.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

std::string drop_lines(const std::string& text) {
  std::string out, line;
  std::istringstream in(text);
  while (std::getline(in, line))
    if (line.rfind("vigil_drop_packets_total", 0) == 0) out += line + "\n";
  return out;
}

// Compiles tests/integration/bpf/NAME.bpf.c (another tool's program) into DIR: the object's path,
// or "" with the compiler's output in `error`.
// The agent on the lab's pods, no rules, listening on `port`; `extra`: more of its config.
std::unique_ptr<Process> start_agent(const Lab& lab, const std::string& dir, int port, const std::string& extra = "") {
  const std::string config = write_temp_file(dir, "vigil.yaml",
      "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\npods: {file: " + lab.pods_file() +
      "}\nrules: []\nnotifiers: []\n" + extra);
  return std::make_unique<Process>(std::vector<std::string>{binary_path("vigil"), "agent", "--config", config},
                                   dir + "/agent.log");
}

bool kernel_has_tcx() {
  utsname u{};
  int major = 0, minor = 0;
  return uname(&u) == 0 && std::sscanf(u.release, "%d.%d", &major, &minor) == 2 && (major > 6 || (major == 6 && minor >= 6));
}

TEST(TcHook, AnotherToolsFilterStillDecidesAfterVigil) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  ScopedTempDir dir;
  // The other tool was there first: a clsact qdisc and its filter on pod 1's host-side veth,
  // on the traffic pod 1 sends.
  std::string error;
  const std::string object = compile_other_tool("drop_udp_9000", dir.path(), error);
  ASSERT_NE(object, "") << error;
  const std::string veth = lab.veth(1);
  ASSERT_EQ(run("tc qdisc add dev " + veth + " clsact").status, 0);
  auto tc = run("tc filter add dev " + veth + " ingress pref 50 bpf da obj " + object + " sec tc");
  ASSERT_EQ(tc.status, 0) << tc.output;

  const int port = free_port();
  auto agent_process = start_agent(lab, dir.path(), port);
  Process& agent = *agent_process;
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent.log();
  if (kernel_has_tcx()) {
    // Ingress only: another tool's filter on the veth (an eBPF CNI's, as far as the agent can
    // tell) puts what pod 1 receives on its own end (metrics.ingress_hook: auto), tc naming the
    // filter after its object file.
    EXPECT_EQ(tcx_programs(veth), (std::vector<std::string>{"vigil_tc"})) << agent.log();
    EXPECT_NE(agent.log().find("another tool's program (drop_udp_9000.bpf.o) is on " + veth), std::string::npos)
        << agent.log();
  }
  // The other tool's filter is still in place.
  EXPECT_NE(run("tc filter show dev " + veth + " ingress").output.find("drop_udp_9000"), std::string::npos);

  // 20 datagrams to port 9000 (the filter drops them) and 5 to port 9001 (they reach pod 2,
  // which has no socket there).
  const std::string ns1 = lab.prefix() + "-pod-1";
  const std::string traffic = binary_path("tests/tools/vigil-lab-traffic");
  TracepointDelivery drops("skb/kfree_skb", "vigil_kfree_skb");
  ASSERT_TRUE(drops.ok()) << drops.error();
  ASSERT_EQ(run("ip netns exec " + ns1 + " " + traffic + " udp-send " + lab.ip(2) + " 9000 20 200").status, 0);
  ASSERT_EQ(run("ip netns exec " + ns1 + " " + traffic + " udp-send " + lab.ip(2) + " 9001 5 200").status, 0);
  std::string text = metrics_after_ticks(port);
  drops.stop();
  EXPECT_FALSE(metric_value(text, "vigil_drop_packets_total", {{"pod", "pod-2"}, {"reason", "TC_INGRESS"}})) << drop_lines(text);

  // Only the 5 reached pod 2: the filter after Vigil's program still dropped the 20.
  expect_exact_or_undelivered(metric_value(text, "vigil_drop_packets_total", {{"pod", "pod-2"}, {"reason", "NO_SOCKET"}}).value_or(-1),
                              5, drops, "pod 2's NO_SOCKET drops");
  // Vigil saw all 25 leave pod 1, and the filter's drops with the kernel's reason, charged to
  // pod 1's egress (they were dropped on its interface, not on pod 2's).
  EXPECT_GE(metric_value(text, "vigil_forward_packets_total", {{"pod", "pod-1"}, {"direction", "egress"}}).value_or(-1), 25);
  expect_exact_or_undelivered(
      metric_value(text, "vigil_drop_packets_total", {{"pod", "pod-1"}, {"direction", "egress"}, {"reason", "TC_INGRESS"}}).value_or(-1),
      20, drops, "pod 1's TC_INGRESS drops: " + drop_lines(text));
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  // Stopping the agent removes its programs and leaves the other tool's filter.
  EXPECT_TRUE(tcx_programs(veth).empty());
  EXPECT_NE(run("tc filter show dev " + veth + " ingress").output.find("drop_udp_9000"), std::string::npos);
}

// Kernels before TCX get clsact filters (DatapathOptions::tcx off forces them here). cls_bpf runs
// the filters of one pref last added first, so a filter another tool adds (again) at Vigil's
// pref 1 after Vigil's runs before it, and its verdict hides packets from Vigil: here one that
// drops UDP to port 9000 on pod 1's way out. The order check finds it first and adds Vigil's
// filter again, in front of it.
TEST(TcHook, AFilterAddedInFrontOfVigilsClsactFilterIsPutBehindItAgain) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  ASSERT_TRUE(quiet_pod_pair(lab));  // only the test's datagrams leave pod 1
  ScopedTempDir dir;
  std::string error;
  const std::string object = compile_other_tool("drop_udp_9000", dir.path(), error);
  ASSERT_NE(object, "") << error;
  auto loaded = Datapath::open_and_load(DatapathOptions{.tcx = false});
  ASSERT_TRUE(loaded) << loaded.error().message;
  Datapath& dp = **loaded;
  const std::string veth = lab.veth(1);
  const uint32_t ifindex = if_nametoindex(veth.c_str());
  auto attached = dp.attach_tc(ifindex, veth);
  ASSERT_TRUE(attached) << attached.error().message;
  EXPECT_TRUE(tcx_programs(veth).empty()) << "clsact filters, not TCX links";
  // The line of the filter that runs first at pod 1's way out (tc lists them in that order).
  auto first_filter = [&] {
    const std::string out = run("tc filter show dev " + veth + " ingress").output;
    const size_t at = out.find(" handle ");
    return at == std::string::npos ? std::string("none") : out.substr(at, out.find('\n', at) - at);
  };
  EXPECT_NE(first_filter().find("vigil_tc"), std::string::npos) << first_filter();
  dp.keep_tc_first(0s);
  EXPECT_EQ(dp.tc_relinked()[0], 0u) << "Vigil's first: nothing to move";
  auto tc = run("tc filter add dev " + veth + " ingress pref 1 handle 2 bpf da obj " + object + " sec tc");
  ASSERT_EQ(tc.status, 0) << tc.output;
  EXPECT_NE(first_filter().find("drop_udp_9000"), std::string::npos) << first_filter();
  auto sent = [&] {  // what Vigil counted pod 1 sending
    std::vector<vigil_traffic_value> v;
    EXPECT_TRUE(dp.read_traffic(dp.traffic_slots().at(ifindex), v));
    uint64_t n = 0;
    for (const auto& c : v) n += c.packets[VIGIL_DIR_EGRESS];
    return n;
  };
  const std::string send_10 = "ip netns exec " + lab.prefix() + "-pod-1 " + binary_path("tests/tools/vigil-lab-traffic") +
                              " udp-send " + lab.ip(2) + " 9000 10 100";
  const uint64_t before = sent();
  ASSERT_EQ(run(send_10).status, 0);
  EXPECT_EQ(sent() - before, 0u) << "dropped before Vigil's filter ran";

  dp.keep_tc_first(0s);
  EXPECT_EQ(dp.tc_relinked()[0], 1u);
  EXPECT_EQ(dp.tc_relinked()[1], 0u);
  EXPECT_NE(first_filter().find("vigil_tc"), std::string::npos) << first_filter();
  EXPECT_NE(run("tc filter show dev " + veth + " ingress").output.find("drop_udp_9000"), std::string::npos)
      << "the other tool's filter stays, and still decides";
  ASSERT_EQ(run(send_10).status, 0);
  EXPECT_EQ(sent() - before, 10u);
  dp.keep_tc_first(0s);
  EXPECT_EQ(dp.tc_relinked()[0], 1u) << "Vigil's first again: nothing more to move";
}

// Another tool's TCX programs on the same interfaces, attached before the agent starts, that end
// the chain with verdicts of their own (TC_ACT_OK, TC_ACT_SHOT), as a CNI's do: on pod 1's
// way out a program that drops UDP to port 9000 and passes the rest, on pod 2's way in one that
// passes everything. TCX appends a new link behind them by default, where it would never run;
// Vigil's links go to the front, so Vigil still sees every packet, and the other programs still
// decide. (A build that appended saw none of the 25 datagrams on either pod.)
class TcxLinks {
 public:
  ~TcxLinks() {
    for (int fd : links_) close(fd);
    for (int ifindex : filters_) {
      DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
      DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = 1, .priority = 1);
      bpf_tc_detach(&hook, &opts);  // gone with the lab's veth, if that went first
    }
    for (bpf_object* obj : objects_) bpf_object__close(obj);
  }
  // The same as a clsact filter on DEV's TC ingress (pref 1, handle 1), as a CNI that predates
  // TCX attaches its programs (Cilium before 1.16, and on kernels without TCX).
  std::string filter(const std::string& object, const std::string& dev) {
    bpf_object* obj = bpf_object__open_file(object.c_str(), nullptr);
    if (!obj) return "open " + object + ": " + std::strerror(errno);
    objects_.push_back(obj);
    if (bpf_object__load(obj)) return "load " + object + ": " + std::strerror(errno);
    const int ifindex = static_cast<int>(if_nametoindex(dev.c_str()));
    DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
    if (int err = bpf_tc_hook_create(&hook); err && err != -EEXIST) return "clsact on " + dev + ": " + std::strerror(-err);
    DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = bpf_program__fd(bpf_object__next_program(obj, nullptr)),
                        .handle = 1, .priority = 1);
    if (int err = bpf_tc_attach(&hook, &opts)) return "filter " + object + " on " + dev + ": " + std::strerror(-err);
    filters_.push_back(ifindex);
    return "";
  }
  // Loads OBJECT's first program and attaches it to DEV's TCX hook `type`; "" or why not.
  // `flags` 8 (BPF_F_BEFORE): at the front of the chain.
  std::string attach(const std::string& object, const std::string& dev, int type, __u32 flags = 0) {
    bpf_object* obj = bpf_object__open_file(object.c_str(), nullptr);
    if (!obj) return "open " + object + ": " + std::strerror(errno);
    objects_.push_back(obj);
    if (bpf_object__load(obj)) return "load " + object + ": " + std::strerror(errno);
    DECLARE_LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = flags);
    const int fd = bpf_link_create(bpf_program__fd(bpf_object__next_program(obj, nullptr)),
                                   static_cast<int>(if_nametoindex(dev.c_str())), static_cast<bpf_attach_type>(type), &opts);
    if (fd < 0) return "attach " + object + " to " + dev + ": " + std::strerror(errno);
    links_.push_back(fd);
    return "";
  }
  // The fd of map `name` of the objects loaded so far, or -1.
  int map_fd(const std::string& name) const {
    for (bpf_object* obj : objects_)
      if (bpf_map* map = bpf_object__find_map_by_name(obj, name.c_str())) return bpf_map__fd(map);
    return -1;
  }

 private:
  std::vector<bpf_object*> objects_;
  std::vector<int> links_;
  std::vector<int> filters_;  // ifindexes with a filter of ours (handle 1, pref 1)
};

TEST(TcHook, AnotherToolsTcxProgramsAttachedFirstDoNotHidePacketsFromVigil) {
  VIGIL_REQUIRE_ROOT();
  if (!kernel_has_tcx()) GTEST_SKIP() << "this kernel has no TCX (6.6+): Vigil uses clsact filters, as the test above shows";
  Lab lab(2);
  ScopedTempDir dir;
  std::map<std::string, std::string> objects;
  for (const char* name : {"drop_udp_9000", "pass_all"}) {
    std::string error;
    objects[name] = compile_other_tool(name, dir.path(), error);
    ASSERT_NE(objects[name], "") << error;
  }
  const std::string veth1 = lab.veth(1), veth2 = lab.veth(2);
  TcxLinks other;  // the other tool's links: closed (detached) when the test ends, however it ends
  ASSERT_EQ(other.attach(objects["drop_udp_9000"], veth1, 46), "");  // BPF_TCX_INGRESS: what pod 1 sends
  ASSERT_EQ(other.attach(objects["pass_all"], veth2, 47), "");       // BPF_TCX_EGRESS: what pod 2 receives

  const int port = free_port();
  // Both hooks of the host-side veth, as on a node whose CNI delivers through it (by default the
  // other tool's programs would have the agent count what the pods receive on their own ends:
  // RedirectPeer below).
  auto agent_process = start_agent(lab, dir.path(), port, "metrics: {ingress_hook: host}\n");
  Process& agent = *agent_process;
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent.log();
  // Each hook's chain in the order it runs, ingress then egress.
  EXPECT_EQ(tcx_programs(veth1), (std::vector<std::string>{"vigil_tc", "drop_udp_9000", "vigil_tc"})) << agent.log();
  EXPECT_EQ(tcx_programs(veth2), (std::vector<std::string>{"vigil_tc", "vigil_tc", "pass_all"}));

  const std::string ns1 = lab.prefix() + "-pod-1";
  const std::string traffic = binary_path("tests/tools/vigil-lab-traffic");
  TracepointDelivery drops("skb/kfree_skb", "vigil_kfree_skb");
  ASSERT_TRUE(drops.ok()) << drops.error();
  const std::string before = metrics_after_ticks(port, 1);
  auto forwarded = [](const std::string& text, const char* pod, const char* direction) {
    return metric_value(text, "vigil_forward_packets_total", {{"pod", pod}, {"direction", direction}}).value_or(0);
  };
  ASSERT_EQ(run("ip netns exec " + ns1 + " " + traffic + " udp-send " + lab.ip(2) + " 9000 20 200").status, 0);
  ASSERT_EQ(run("ip netns exec " + ns1 + " " + traffic + " udp-send " + lab.ip(2) + " 9001 5 200").status, 0);
  std::string text = metrics_after_ticks(port);
  drops.stop();
  // Vigil saw all 25 leave pod 1 (each passed its program first) and the other program's 20
  // drops with the kernel's reason; the 5 it passed reached pod 2, whose pass-all program
  // comes after Vigil's, and found no socket there.
  EXPECT_GE(forwarded(text, "pod-1", "egress") - forwarded(before, "pod-1", "egress"), 25) << text;
  expect_exact_or_undelivered(
      metric_value(text, "vigil_drop_packets_total", {{"pod", "pod-1"}, {"direction", "egress"}, {"reason", "TC_INGRESS"}}).value_or(-1),
      20, drops, "pod 1's TC_INGRESS drops: " + drop_lines(text));
  EXPECT_GE(forwarded(text, "pod-2", "ingress") - forwarded(before, "pod-2", "ingress"), 5);
  expect_exact_or_undelivered(metric_value(text, "vigil_drop_packets_total", {{"pod", "pod-2"}, {"reason", "NO_SOCKET"}}).value_or(-1),
                              5, drops, "pod 2's NO_SOCKET drops");
  auto relinked = [](const std::string& text, const char* hook) {
    return metric_value(text, "vigil_tc_relinked_total", {{"hook", hook}}).value_or(-1);
  };
  EXPECT_EQ(relinked(text, "ingress"), 0);
  EXPECT_EQ(relinked(text, "egress"), 0);

  // The other tool restarts and links its programs at the front, ahead of Vigil's (as a CNI's
  // agent does). Within a few seconds Vigil's are first again, and count what passes.
  ASSERT_EQ(other.attach(objects["pass_all"], veth1, 46, 8), "");
  ASSERT_EQ(other.attach(objects["pass_all"], veth2, 47, 8), "");
  ASSERT_EQ(tcx_programs(veth1).front(), "pass_all");
  auto first_again = [&] {
    return tcx_programs(veth1) == std::vector<std::string>{"vigil_tc", "pass_all", "drop_udp_9000", "vigil_tc"} &&
           tcx_programs(veth2) == std::vector<std::string>{"vigil_tc", "vigil_tc", "pass_all", "pass_all"};
  };
  for (int i = 0; i < 60 && !first_again(); ++i) std::this_thread::sleep_for(100ms);  // <= 6 s: checked every 2 s
  ASSERT_TRUE(first_again()) << agent.log();
  text = metrics_after_ticks(port);
  EXPECT_EQ(relinked(text, "ingress"), 1) << agent.log();
  EXPECT_EQ(relinked(text, "egress"), 1);
  EXPECT_NE(agent.log().find("program pass_all"), std::string::npos) << "the warning names the other program";
  const std::string relinked_before = text;
  ASSERT_EQ(run("ip netns exec " + ns1 + " " + traffic + " udp-send " + lab.ip(2) + " 9001 7 200").status, 0);
  text = metrics_after_ticks(port);
  EXPECT_GE(forwarded(text, "pod-1", "egress") - forwarded(relinked_before, "pod-1", "egress"), 7);
  EXPECT_GE(forwarded(text, "pod-2", "ingress") - forwarded(relinked_before, "pod-2", "ingress"), 7);
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  // Stopping the agent takes its links away and leaves the other tool's.
  EXPECT_EQ(tcx_programs(veth1), (std::vector<std::string>{"pass_all", "drop_udp_9000"}));
  EXPECT_EQ(tcx_programs(veth2), (std::vector<std::string>{"pass_all", "pass_all"}));
}

// Two agents on the same pods, as while a DaemonSet's pod is replaced: the second's programs go
// in front of the first's, and the first leaves them there (they pass every packet on), so
// neither moves its links back and forth every 2 s, and both count every packet.
TEST(TcHook, TwoAgentsOnTheSamePodsLeaveEachOthersProgramsWhereTheyAre) {
  VIGIL_REQUIRE_ROOT();
  if (!kernel_has_tcx()) GTEST_SKIP() << "this kernel has no TCX (6.6+)";
  Lab lab(2);
  ScopedTempDir dir1, dir2;
  const int port1 = free_port();
  auto first = start_agent(lab, dir1.path(), port1);
  ASSERT_TRUE(wait_for_attached(port1, 2)) << first->log();
  const int port2 = free_port();
  auto second = start_agent(lab, dir2.path(), port2);
  ASSERT_TRUE(wait_for_attached(port2, 2)) << second->log();
  EXPECT_EQ(tcx_programs(lab.veth(1)), (std::vector<std::string>{"vigil_tc", "vigil_tc", "vigil_tc", "vigil_tc"}));
  std::this_thread::sleep_for(5s);  // two checks of each agent's
  const std::string ns1 = lab.prefix() + "-pod-1";
  ASSERT_EQ(run("ip netns exec " + ns1 + " " + binary_path("tests/tools/vigil-lab-traffic") + " udp-send " + lab.ip(2) +
                " 9001 9 200").status, 0);
  for (auto [port, agent] : {std::pair{port1, first.get()}, std::pair{port2, second.get()}}) {
    const std::string text = metrics_after_ticks(port);
    EXPECT_EQ(metric_value(text, "vigil_tc_relinked_total", {{"hook", "ingress"}}).value_or(-1), 0) << agent->log();
    EXPECT_EQ(metric_value(text, "vigil_tc_relinked_total", {{"hook", "egress"}}).value_or(-1), 0);
    EXPECT_GE(metric_value(text, "vigil_forward_packets_total", {{"pod", "pod-1"}, {"direction", "egress"}}).value_or(-1), 9);
    EXPECT_GE(metric_value(text, "vigil_forward_packets_total", {{"pod", "pod-2"}, {"direction", "ingress"}}).value_or(-1), 9);
  }
  EXPECT_EQ(second->terminate(), 0) << second->log();
  EXPECT_EQ(first->terminate(), 0) << first->log();
  EXPECT_TRUE(tcx_programs(lab.veth(1)).empty());
}

// Links the stand-in CNI (tests/integration/bpf/redirect_peer.bpf.c, compiled to `object`) to TC
// ingress of both pods' host-side veths, and has it put what pod 1 sends to pod 2 straight into
// pod 2's namespace (pod 2's copy has an empty map: it passes everything). "" or why not; the
// links go with `cni`, however the test ends. `clsact`: as clsact filters instead of TCX links.
std::string link_redirecting_cni(TcxLinks& cni, const std::string& object, const Lab& lab, bool clsact = false) {
  in_addr to_pod2{};
  if (inet_pton(AF_INET, lab.ip(2).c_str(), &to_pod2) != 1) return "bad address " + lab.ip(2);
  const __u32 veth2_index = if_nametoindex(lab.veth(2).c_str());
  // TC ingress of the host-side veth (BPF_TCX_INGRESS, 46): what the pod sends.
  auto on = [&](const std::string& dev) { return clsact ? cni.filter(object, dev) : cni.attach(object, dev, 46); };
  std::string e = on(lab.veth(1));
  if (e.empty()) e = on(lab.veth(2));
  if (e.empty() && bpf_map_update_elem(cni.map_fd("redirect_to"), &to_pod2.s_addr, &veth2_index, BPF_ANY) != 0)
    e = std::string("fill redirect_to: ") + std::strerror(errno);
  return e;
}

// A UDP socket on port 9000 in each of the two pods for 10 s (then each prints how many datagrams
// it got), listening when this returns.
std::vector<std::unique_ptr<Process>> udp_sinks(const Lab& lab, const std::string& dir) {
  std::vector<std::unique_ptr<Process>> sinks;
  for (int pod : {1, 2}) {
    const std::string ns = lab.prefix() + "-pod-" + std::to_string(pod);
    sinks.push_back(std::make_unique<Process>(
        std::vector<std::string>{"/usr/bin/env", "ip", "netns", "exec", ns,
                                 binary_path("tests/tools/vigil-lab-traffic"), "udp-sink", "9000", "10"},
        dir + "/sink-" + ns + ".log"));
    for (int i = 0; i < 50 && run("ip netns exec " + ns + " ss -Hlun 'sport = :9000' | grep -q 9000").status != 0; ++i)
      std::this_thread::sleep_for(100ms);
  }
  return sinks;
}

// A CNI that puts packets straight into a pod's namespace (bpf_redirect_peer: Cilium's delivery
// with BPF host routing, and pod to pod on one node) bypasses the pod's host-side veth, whose
// egress hook then never sees what the pod receives. Here a stand-in for such a CNI is on both
// pods' host-side veths and sends what pod 1 sends to pod 2 straight into pod 2's namespace;
// what pod 2 sends to pod 1 goes the usual way, through pod 1's host-side veth.
//   - Default (metrics.ingress_hook: auto): another tool's programs are on the veths, so the agent
//     counts what each pod receives on the pod's own end, inside its namespace, where every
//     packet the pod receives passes whichever way it came, and leaves the host-side egress hook
//     off, so each packet counts once: exact counts in both directions.
//   - ingress_hook: host: none of the redirected datagrams is seen, which is what the default is for.
//   - A CNI whose programs are clsact filters (before TCX) is seen as well; and with the agent's
//     own programs as clsact filters too (metrics.tcx: false), pod 2's own end counts through one,
//     also when the CNI's filters come after the agent.
// Then pod 2 asks a dnsmasq in pod 1 six questions: the answers come back by the redirect, and only
// on pod 2's own end are they seen and matched to their requests (which left the usual way).
TEST(RedirectPeer, PacketsDeliveredPastTheHostSideVethAreCountedOnThePodsOwnEnd) {
  VIGIL_REQUIRE_ROOT();
  if (!kernel_has_tcx())
    GTEST_SKIP() << "this kernel has no TCX (6.6+) for the stand-in CNI's links (RedirectPeer.BeforeTcx* covers filters)";
  Lab lab(2);
  ASSERT_TRUE(quiet_pod_pair(lab));  // static neighbours, no IPv6: only the test's datagrams cross
  ScopedTempDir dir;
  std::string error;
  const std::string object = compile_other_tool("redirect_peer", dir.path(), error);
  ASSERT_NE(object, "") << error;
  const std::string veth1 = lab.veth(1), veth2 = lab.veth(2);
  auto link_cni = [&](TcxLinks& cni, bool clsact = false) { return link_redirecting_cni(cni, object, lab, clsact); };

  const std::string ns1 = lab.prefix() + "-pod-1", ns2 = lab.prefix() + "-pod-2";
  const std::string traffic = binary_path("tests/tools/vigil-lab-traffic");
  auto statistic = [&](const std::string& ns, const std::string& dev, const std::string& name) -> long {
    auto r = run((ns.empty() ? "" : "ip netns exec " + ns + " ") + "cat /sys/class/net/" + dev + "/statistics/" + name);
    return r.status == 0 ? std::stol(r.output) : -1;
  };
  // A DNS server in pod 1, on its IPv4 address only (the quiet pods have no IPv6).
  Process dnsmasq({"/usr/bin/env", "ip", "netns", "exec", ns1, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                   "--listen-address=" + lab.ip(1), "--bind-interfaces", "--address=/ok.lab.test/10.99.0.1", "--pid-file=",
                   "--user=root", "--group=root"},
                  dir.path() + "/dnsmasq.log");
  for (int i = 0; i < 50 && run("ip netns exec " + ns1 + " ss -Hlun 'sport = :53' | grep -q 53").status != 0; ++i)
    std::this_thread::sleep_for(100ms);
  const int kQuestions = 6;
  std::string batch;
  for (int i = 0; i < kQuestions; ++i) batch += "@" + lab.ip(1) + " ok.lab.test A\n";
  const std::string batch_file = write_temp_file(dir.path(), "batch.txt", batch);
  const int kToPod2 = 40, kToPod1 = 25;
  // 200-byte payloads: 14 Ethernet + 20 IP + 8 UDP + 200.
  const double kBytes = 14 + 20 + 8 + 200;
  const std::string extra = "remote_context: {namespaces: [lab], max_peers: 8}\n";
  // "late": ingress_hook auto, with the CNI's programs linked only after the agent attached the
  // pods (a CNI installed or restarted since): within a few seconds the agent moves the pods'
  // ingress counting to their own ends. "clsact": auto, with the CNI's programs as clsact filters
  // (a CNI that predates TCX: Cilium before 1.16), which the agent sees as well. "filters": the
  // same with the agent's own programs as clsact filters too (metrics.tcx: false, what kernels
  // before 6.6 get): pod 2's own end counts through vigil_tc_podcls. "late filters": the same
  // with the CNI's filters added after the agent attached the pods.
  for (const std::string hook : {"auto", "host", "late", "clsact", "filters", "late filters"}) {
    SCOPED_TRACE("ingress_hook: " + hook);
    ScopedTempDir run_dir;
    TcxLinks cni;
    const bool filters = hook == "filters" || hook == "late filters", clsact = hook == "clsact" || filters;
    if (!hook.starts_with("late")) {
      ASSERT_EQ(link_cni(cni, clsact), "");
    }
    auto sinks = udp_sinks(lab, run_dir.path());  // no ICMP answers: a socket takes each datagram
    const int port = free_port();
    auto agent = start_agent(lab, run_dir.path(), port,
                             extra + (hook == "host" ? "metrics: {ingress_hook: host}\n" : filters ? "metrics: {tcx: false}\n" : ""));
    ASSERT_TRUE(wait_for_attached(port, 2)) << agent->log();
    std::vector<std::string> inside;  // TCX programs on pod 2's own end
    auto read_inside = [&] {
      inside = {"?"};
      return static_cast<bool>(run_in_netns("/run/netns/" + ns2, [&]() -> Result<int> {
        inside = tcx_programs("eth0");
        return 0;
      }));
    };
    ASSERT_TRUE(read_inside());
    // Vigil's filters on pod 2's own end, and on its host-side veth (hook: ingress or egress).
    auto pod_end_filters = [&] { return run("ip netns exec " + ns2 + " tc filter show dev eth0 ingress").output; };
    auto host_filters = [&](const std::string& hook) { return run("tc filter show dev " + veth2 + " " + hook).output; };
    if (hook == "late") {
      // Nothing else on the veths yet: both host-side hooks count.
      EXPECT_EQ(tcx_programs(veth2), (std::vector<std::string>{"vigil_tc", "vigil_tc"})) << agent->log();
      EXPECT_TRUE(inside.empty());
      ASSERT_EQ(link_cni(cni), "");
      for (int i = 0; i < 60 && !(read_inside() && inside == std::vector<std::string>{"vigil_tc_pod"}); ++i)
        std::this_thread::sleep_for(100ms);  // <= 6 s: checked every 2 s
    }
    if (hook == "late filters") {
      EXPECT_NE(host_filters("egress").find("vigil_tc"), std::string::npos) << agent->log();
      EXPECT_EQ(pod_end_filters().find("vigil"), std::string::npos) << pod_end_filters();
      ASSERT_EQ(link_cni(cni, true), "");
      for (int i = 0; i < 60 && pod_end_filters().find("vigil_tc_podcls") == std::string::npos; ++i)
        std::this_thread::sleep_for(100ms);  // <= 6 s: checked every 2 s
    }
    if (filters) {
      // Ingress of the host side only, as the filter that runs first; what pod 2 receives by the
      // filter on its eth0.
      EXPECT_TRUE(tcx_programs(veth2).empty()) << agent->log();
      EXPECT_TRUE(inside.empty());
      const std::string ingress = host_filters("ingress");
      EXPECT_LT(ingress.find("vigil_tc"), ingress.find("redirect_peer")) << ingress;
      EXPECT_EQ(host_filters("egress").find("vigil"), std::string::npos) << host_filters("egress");
      EXPECT_NE(pod_end_filters().find("vigil_tc_podcls"), std::string::npos) << pod_end_filters() << agent->log();
      EXPECT_NE(agent->log().find("metrics.tcx is false"), std::string::npos) << agent->log();
    }
    if (hook != "host" && !filters) {
      // Ingress of the host side only, in front of the CNI's; what pod 2 receives on its eth0.
      EXPECT_EQ(tcx_programs(veth2), (clsact ? std::vector<std::string>{"vigil_tc"}
                                             : std::vector<std::string>{"vigil_tc", "redirect_peer"})) << agent->log();
      EXPECT_EQ(inside, (std::vector<std::string>{"vigil_tc_pod"}));
    }
    if (hook != "host") {
      EXPECT_NE(agent->log().find("another tool's program (redirect_peer) is on " + veth2 +
                                  ": counting what the pod receives on its own eth0"), std::string::npos) << agent->log();
    } else {
      EXPECT_EQ(tcx_programs(veth2), (std::vector<std::string>{"vigil_tc", "redirect_peer", "vigil_tc"})) << agent->log();
      EXPECT_TRUE(inside.empty());
    }
    const std::string before = metrics_after_ticks(port, 1);
    for (const char* pod : {"pod-1", "pod-2"}) {
      int status = 0;
      const auto pods = nlohmann::json::parse(http_get("127.0.0.1", port, "/api/v1/pods", &status), nullptr, false);
      ASSERT_EQ(status, 200);
      std::string said = "missing";
      for (const auto& p : pods)
        if (p.value("name", "") == pod) said = p.value("ingress_hook", "none");
      EXPECT_EQ(said, hook == "host" ? "host" : "pod") << pod << ": " << pods.dump();
    }
    const long host_tx = statistic("", veth2, "tx_packets"), pod_rx = statistic(ns2, "eth0", "rx_packets");
    ASSERT_EQ(run("ip netns exec " + ns1 + " " + traffic + " udp-send " + lab.ip(2) + " 9000 " + std::to_string(kToPod2) + " 200").status, 0);
    ASSERT_EQ(run("ip netns exec " + ns2 + " " + traffic + " udp-send " + lab.ip(1) + " 9000 " + std::to_string(kToPod1) + " 200").status, 0);
    const std::string after = metrics_after_ticks(port);
    // The CNI's redirect: pod 2 received the 40 without its host-side veth carrying them.
    EXPECT_EQ(statistic("", veth2, "tx_packets") - host_tx, 0);
    EXPECT_EQ(statistic(ns2, "eth0", "rx_packets") - pod_rx, kToPod2);
    auto delta = [&](const char* name, const std::map<std::string, std::string>& labels) {
      return metric_value(after, name, labels).value_or(0) - metric_value(before, name, labels).value_or(0);
    };
    const std::map<std::string, std::string> in2 = {{"pod", "pod-2"}, {"direction", "ingress"}, {"remote_pod", "pod-1"}};
    const std::map<std::string, std::string> in1 = {{"pod", "pod-1"}, {"direction", "ingress"}, {"remote_pod", "pod-2"}};
    const int seen = hook == "host" ? 0 : kToPod2;
    EXPECT_EQ(delta("vigil_forward_packets_total", {{"pod", "pod-2"}, {"direction", "ingress"}}), seen) << after;
    EXPECT_EQ(delta("vigil_forward_bytes_total", {{"pod", "pod-2"}, {"direction", "ingress"}}), seen * kBytes);
    EXPECT_EQ(delta("vigil_remote_forward_packets_total", in2), seen);
    // What went the usual way counts once, whichever hook counts it.
    EXPECT_EQ(delta("vigil_forward_packets_total", {{"pod", "pod-1"}, {"direction", "ingress"}}), kToPod1);
    EXPECT_EQ(delta("vigil_forward_bytes_total", {{"pod", "pod-1"}, {"direction", "ingress"}}), kToPod1 * kBytes);
    EXPECT_EQ(delta("vigil_remote_forward_packets_total", in1), kToPod1);
    EXPECT_EQ(delta("vigil_forward_packets_total", {{"pod", "pod-1"}, {"direction", "egress"}}), kToPod2);
    EXPECT_EQ(delta("vigil_forward_packets_total", {{"pod", "pod-2"}, {"direction", "egress"}}), kToPod1);

    const std::string before_dns = metrics_after_ticks(port, 1);
    // One try each: a retry would be a second request.
    auto dig = run("ip netns exec " + ns2 + " timeout 30 dig +tries=1 +time=2 -f " + batch_file);
    size_t answered = 0;
    for (size_t at = 0; (at = dig.output.find("status: NOERROR", at)) != std::string::npos; ++at) ++answered;
    ASSERT_EQ(answered, static_cast<size_t>(kQuestions)) << dig.output;
    const std::string after_dns = metrics_after_ticks(port);
    auto dns = [&](const char* name, const std::map<std::string, std::string>& labels) {
      return metric_sum(after_dns, name, labels) - metric_sum(before_dns, name, labels);
    };
    const int answers_seen = hook == "host" ? 0 : kQuestions;
    EXPECT_EQ(dns("vigil_dns_requests_total", {{"pod", "pod-2"}, {"direction", "egress"}}), kQuestions) << after_dns;
    EXPECT_EQ(dns("vigil_dns_responses_total", {{"pod", "pod-2"}, {"direction", "ingress"}, {"rcode", "NOERROR"}}),
              answers_seen);
    EXPECT_EQ(dns("vigil_dns_latency_seconds_count", {{"pod", "pod-2"}, {"side", "client"}}), answers_seen);
    EXPECT_EQ(dns("vigil_dns_unmatched_responses_total", {{"pod", "pod-2"}}), 0);
    // The server's side went the usual way: requests in, answers out, each matched.
    EXPECT_EQ(dns("vigil_dns_requests_total", {{"pod", "pod-1"}, {"direction", "ingress"}}), kQuestions);
    EXPECT_EQ(dns("vigil_dns_latency_seconds_count", {{"pod", "pod-1"}, {"side", "server"}}), kQuestions);
    EXPECT_EQ(agent->terminate(), 0) << agent->log();
    for (auto& sink : sinks) {
      for (int i = 0; i < 120 && sink->running(); ++i) std::this_thread::sleep_for(100ms);  // its 10 s, then it reports
      EXPECT_EQ(sink->terminate(), 0);
    }
    EXPECT_NE(sinks[1]->log().find("received=" + std::to_string(kToPod2)), std::string::npos) << sinks[1]->log();
    EXPECT_NE(sinks[0]->log().find("received=" + std::to_string(kToPod1)), std::string::npos) << sinks[0]->log();
    // Stopping the agent takes its links and filters away, on the pod's end too.
    ASSERT_TRUE(read_inside());
    EXPECT_TRUE(inside.empty());
    EXPECT_EQ(tcx_programs(veth2), (clsact ? std::vector<std::string>{} : std::vector<std::string>{"redirect_peer"}));
    EXPECT_EQ(pod_end_filters().find("vigil"), std::string::npos) << pod_end_filters();
    EXPECT_EQ(host_filters("ingress").find("vigil"), std::string::npos) << host_filters("ingress");
  }
}

// Two quiet lab pods (static neighbours, no IPv6: only a test's packets cross), a temporary
// directory, and the stand-in CNI compiled into it (object; "" and error when it could not be).
struct RedirectLab {
  Lab lab{2};
  ScopedTempDir dir;
  std::string error;
  std::string object = quiet_pod_pair(lab) ? compile_other_tool("redirect_peer", dir.path(), error)
                                            : (error = "the lab pods could not be quieted", "");
};

// Pods without the packet-level programs (metrics.packet_level: {pods: selected}) are counted from
// their interfaces' statistics. The host-side veth's transmit counters miss what a CNI delivers
// past it; with another tool's programs on the veths (ingress_hook: auto), what a pod receives is
// read from its own end's receive counters instead, in its namespace: exact, with no program of
// Vigil's on any packet's path.
// Kernels before TCX (forced here: DatapathOptions::tcx off), with the stand-in CNI's programs as
// clsact filters too, as a CNI attaches them there: what the CNI puts straight into pod 2's
// namespace is counted by Vigil's filter on pod 2's own end (vigil_tc_podcls, its classid naming
// the pod), each packet once, and the CNI's filters are seen as another tool's (what
// ingress_hook: auto goes by). Counted at the host side's egress instead, none of it is seen.
TEST(RedirectPeer, BeforeTcxAFilterOnThePodsOwnEndCountsWhatIsDeliveredPastTheHostSide) {
  VIGIL_REQUIRE_ROOT();
  RedirectLab r;
  ASSERT_NE(r.object, "") << r.error;
  const Lab& lab = r.lab;
  TcxLinks cni;
  ASSERT_EQ(link_redirecting_cni(cni, r.object, lab, true), "");
  auto sinks = udp_sinks(lab, r.dir.path());  // no ICMP answers: a socket takes each datagram
  auto loaded = Datapath::open_and_load(DatapathOptions{.tcx = false});
  ASSERT_TRUE(loaded) << loaded.error().message;
  Datapath& dp = **loaded;
  const uint32_t a = if_nametoindex(lab.veth(1).c_str()), b = if_nametoindex(lab.veth(2).c_str());
  EXPECT_EQ(dp.other_tc_program(a), "redirect_peer");
  EXPECT_EQ(dp.other_tc_program(b), "redirect_peer");
  Datapath::PodSide side[3];
  for (int pod : {1, 2}) {
    const std::string path = "/run/netns/" + lab.prefix() + "-pod-" + std::to_string(pod);
    auto iface = find_pod_interface(path);
    ASSERT_TRUE(iface) << iface.error().message;
    side[pod] = Datapath::PodSide{path, iface->netns_inode, iface->pod_ifindex, iface->pod_ifname};
  }
  for (int pod : {1, 2}) {
    auto attached = dp.attach_tc(pod == 1 ? a : b, lab.veth(pod), 0, &side[pod]);
    ASSERT_TRUE(attached) << attached.error().message;
  }
  ASSERT_TRUE(dp.counts_on_pod_side(a) && dp.counts_on_pod_side(b));
  EXPECT_TRUE(tcx_programs(lab.veth(2)).empty()) << "clsact filters, not TCX links";
  // Vigil's filter, added after the CNI's at the same pref, runs first: nothing to move.
  dp.keep_tc_first(0s);
  EXPECT_EQ(dp.tc_relinked(), (std::array<uint64_t, 2>{0, 0}));
  auto count = [&](uint32_t ifindex, int dir, bool bytes = false) {
    std::vector<vigil_traffic_value> v;
    EXPECT_TRUE(dp.read_traffic(dp.traffic_slots().at(ifindex), v));
    uint64_t n = 0;
    for (const auto& c : v) n += bytes ? c.bytes[dir] : c.packets[dir];
    return n;
  };
  auto host_tx = [&] {
    auto t = run("cat /sys/class/net/" + lab.veth(2) + "/statistics/tx_packets");
    return t.status == 0 ? std::stol(t.output) : -1;
  };
  const std::string ns1 = lab.prefix() + "-pod-1", ns2 = lab.prefix() + "-pod-2";
  const std::string traffic = binary_path("tests/tools/vigil-lab-traffic");
  const long tx = host_tx();
  ASSERT_EQ(run("ip netns exec " + ns1 + " " + traffic + " udp-send " + lab.ip(2) + " 9000 40 200").status, 0);
  ASSERT_EQ(run("ip netns exec " + ns2 + " " + traffic + " udp-send " + lab.ip(1) + " 9000 25 200").status, 0);
  EXPECT_EQ(host_tx() - tx, 0) << "the CNI's redirect: pod 2's host-side veth carried none of the 40";
  EXPECT_EQ(count(b, VIGIL_DIR_INGRESS), 40u);
  EXPECT_EQ(count(b, VIGIL_DIR_INGRESS, true), 40u * (14 + 20 + 8 + 200));
  EXPECT_EQ(count(a, VIGIL_DIR_EGRESS), 40u);
  EXPECT_EQ(count(b, VIGIL_DIR_EGRESS), 25u);
  EXPECT_EQ(count(a, VIGIL_DIR_INGRESS), 25u) << "the usual way, counted on pod 1's own end, once";

  // The host side's egress instead: the redirected datagrams pass unseen.
  auto host_only = dp.attach_tc(b, lab.veth(2));
  ASSERT_TRUE(host_only) << host_only.error().message;
  EXPECT_FALSE(dp.counts_on_pod_side(b));
  EXPECT_EQ(run("ip netns exec " + ns2 + " tc filter show dev " + side[2].ifname + " ingress").output.find("vigil"),
            std::string::npos);
  ASSERT_EQ(run("ip netns exec " + ns1 + " " + traffic + " udp-send " + lab.ip(2) + " 9000 10 200").status, 0);
  EXPECT_EQ(count(a, VIGIL_DIR_EGRESS), 50u);
  EXPECT_EQ(count(b, VIGIL_DIR_INGRESS), 40u);
}

// A clsact filter outlives the agent that made it when that agent is killed (SIGKILL, the OOM
// killer) before it can take it off; a TCX link goes with the agent's file descriptors. The next
// agent replaces a filter of Vigil's where it puts its own, and takes one off wherever it counts
// otherwise: else the dead agent's filter would run on every packet, into that agent's maps,
// until the pod goes. Five agents in turn on the same two pods, each killed but the last, each
// counting differently from the one before: clsact filters or TCX links (metrics.tcx), at the
// host side or on the pod's own end (metrics.ingress_hook).
TEST(TcHook, FiltersOfAKilledAgentAreTakenOffByTheNextWhereverItCounts) {
  VIGIL_REQUIRE_ROOT();
  if (!kernel_has_tcx()) GTEST_SKIP() << "this kernel has no TCX (6.6+): the agents here go from filters to links";
  Lab lab(2);
  struct Phase {
    bool tcx;
    std::string hook;
    bool kill;
  };
  const std::vector<Phase> phases = {{false, "host", true}, {false, "pod", true}, {true, "pod", true},
                                     {false, "pod", true},  {true, "host", false}};
  auto vigil_filter = [&](int pod, const std::string& where) {
    const std::string dev = where == "pod" ? "eth0 ingress" : lab.veth(pod) + " " + where;
    const std::string in = where == "pod" ? "ip netns exec " + lab.prefix() + "-pod-" + std::to_string(pod) + " " : "";
    return run(in + "tc filter show dev " + dev).output.find("vigil_tc") != std::string::npos;
  };
  auto pod_end_tcx = [&](int pod) {
    std::vector<std::string> programs = {"?"};
    (void)run_in_netns("/run/netns/" + lab.prefix() + "-pod-" + std::to_string(pod), [&]() -> Result<int> {
      programs = tcx_programs("eth0");
      return 0;
    });
    return programs;
  };
  for (size_t i = 0; i < phases.size(); ++i) {
    const Phase& phase = phases[i];
    SCOPED_TRACE("agent " + std::to_string(i + 1) + ": tcx " + (phase.tcx ? "true" : "false") + ", ingress_hook " + phase.hook);
    ScopedTempDir dir;
    const int port = free_port();
    auto agent = start_agent(lab, dir.path(), port,
                             std::string("metrics: {tcx: ") + (phase.tcx ? "true" : "false") + ", ingress_hook: " + phase.hook + "}\n");
    ASSERT_TRUE(wait_for_attached(port, 2)) << agent->log();
    const bool host = phase.hook == "host";
    for (int pod : {1, 2}) {
      SCOPED_TRACE("pod " + std::to_string(pod));
      // Its own, and nothing of an earlier agent's.
      EXPECT_EQ(vigil_filter(pod, "ingress"), !phase.tcx) << agent->log();
      EXPECT_EQ(vigil_filter(pod, "egress"), !phase.tcx && host);
      EXPECT_EQ(vigil_filter(pod, "pod"), !phase.tcx && !host);
      EXPECT_EQ(tcx_programs(lab.veth(pod)),
                (!phase.tcx ? std::vector<std::string>{}
                 : host     ? std::vector<std::string>{"vigil_tc", "vigil_tc"}
                            : std::vector<std::string>{"vigil_tc"}));
      EXPECT_EQ(pod_end_tcx(pod), (phase.tcx && !host ? std::vector<std::string>{"vigil_tc_pod"} : std::vector<std::string>{}));
    }
    if (!phase.kill) {
      EXPECT_EQ(agent->terminate(), 0) << agent->log();
      break;
    }
    ASSERT_EQ(kill(agent->pid(), SIGKILL), 0);
    for (int n = 0; n < 100 && agent->running(); ++n) std::this_thread::sleep_for(20ms);
    ASSERT_FALSE(agent->running());
    // What the killed agent leaves: its filters; its links go with it.
    for (int pod : {1, 2}) {
      EXPECT_EQ(vigil_filter(pod, "ingress"), !phase.tcx);
      EXPECT_EQ(vigil_filter(pod, "egress"), !phase.tcx && host);
      EXPECT_EQ(vigil_filter(pod, "pod"), !phase.tcx && !host);
      EXPECT_TRUE(tcx_programs(lab.veth(pod)).empty());
      EXPECT_TRUE(pod_end_tcx(pod).empty());
    }
  }
  // The last agent stopped: nothing of Vigil's is left on either pod.
  for (int pod : {1, 2}) {
    for (const char* where : {"ingress", "egress", "pod"}) EXPECT_FALSE(vigil_filter(pod, where)) << pod << " " << where;
    EXPECT_TRUE(tcx_programs(lab.veth(pod)).empty());
    EXPECT_TRUE(pod_end_tcx(pod).empty());
  }
}

TEST(RedirectPeer, PodsWithoutProgramsCountWhatTheyReceiveFromTheirOwnEndsStatistics) {
  VIGIL_REQUIRE_ROOT();
  if (!kernel_has_tcx()) GTEST_SKIP() << "this kernel has no TCX (6.6+): no CNI program to see on the veths";
  RedirectLab r;
  ASSERT_NE(r.object, "") << r.error;
  TcxLinks cni;
  ASSERT_EQ(link_redirecting_cni(cni, r.object, r.lab), "");
  auto sinks = udp_sinks(r.lab, r.dir.path());
  const int port = free_port();
  auto agent = start_agent(r.lab, r.dir.path(), port, "metrics: {packet_level: {pods: selected}}\n");
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent->log();
  EXPECT_EQ(tcx_programs(r.lab.veth(2)), (std::vector<std::string>{"redirect_peer"})) << "no program of Vigil's";
  EXPECT_NE(agent->log().find("what it receives from its own eth0's"), std::string::npos) << agent->log();
  int status = 0;
  const auto pods = nlohmann::json::parse(http_get("127.0.0.1", port, "/api/v1/pods", &status), nullptr, false);
  ASSERT_EQ(status, 200);
  for (const auto& p : pods) EXPECT_EQ(p.value("ingress_hook", ""), "pod") << pods.dump();
  const std::string traffic = binary_path("tests/tools/vigil-lab-traffic");
  const std::string before = metrics_after_ticks(port, 1);
  ASSERT_EQ(run("ip netns exec " + r.lab.prefix() + "-pod-1 " + traffic + " udp-send " + r.lab.ip(2) + " 9000 40 200").status, 0);
  ASSERT_EQ(run("ip netns exec " + r.lab.prefix() + "-pod-2 " + traffic + " udp-send " + r.lab.ip(1) + " 9000 25 200").status, 0);
  const std::string after = metrics_after_ticks(port);
  auto delta = [&](const char* name, const char* pod, const char* direction) {
    const std::map<std::string, std::string> l = {{"pod", pod}, {"direction", direction}};
    return metric_value(after, name, l).value_or(0) - metric_value(before, name, l).value_or(0);
  };
  const double kBytes = 14 + 20 + 8 + 200;
  EXPECT_EQ(delta("vigil_forward_packets_total", "pod-2", "ingress"), 40) << after;  // all by the redirect
  EXPECT_EQ(delta("vigil_forward_bytes_total", "pod-2", "ingress"), 40 * kBytes);
  EXPECT_EQ(delta("vigil_forward_packets_total", "pod-1", "ingress"), 25);  // the usual way
  EXPECT_EQ(delta("vigil_forward_bytes_total", "pod-1", "ingress"), 25 * kBytes);
  EXPECT_EQ(delta("vigil_forward_packets_total", "pod-1", "egress"), 40);
  EXPECT_EQ(delta("vigil_forward_packets_total", "pod-2", "egress"), 25);
  EXPECT_EQ(agent->terminate(), 0) << agent->log();
}

// The same pods when the CNI's programs come after the agent attached them (a CNI installed or
// restarted since): within a few seconds what a pod receives is read from its own end's
// statistics instead of the host side's, and its series goes on from where it was. Its own end
// has also counted what the CNI delivered past the host side before the agent started: read as
// they are, its counters would be a step up at the move.
TEST(RedirectPeer, PodsWithoutProgramsMovedToTheirOwnEndLaterGoOnFromWhereTheyWere) {
  VIGIL_REQUIRE_ROOT();
  if (!kernel_has_tcx()) GTEST_SKIP() << "this kernel has no TCX (6.6+): no CNI program to see on the veths";
  RedirectLab r;
  ASSERT_NE(r.object, "") << r.error;
  auto sinks = udp_sinks(r.lab, r.dir.path());
  const std::string to_pod2 = "ip netns exec " + r.lab.prefix() + "-pod-1 " + binary_path("tests/tools/vigil-lab-traffic") +
                              " udp-send " + r.lab.ip(2) + " 9000 ";
  {
    TcxLinks earlier;  // gone at the end of this block
    ASSERT_EQ(link_redirecting_cni(earlier, r.object, r.lab), "");
    ASSERT_EQ(run(to_pod2 + "20 200").status, 0);
  }
  const int port = free_port();
  auto agent = start_agent(r.lab, r.dir.path(), port, "metrics: {packet_level: {pods: selected}}\n");
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent->log();
  auto pod2_hook = [&] {
    const auto pods = nlohmann::json::parse(http_get("127.0.0.1", port, "/api/v1/pods"), nullptr, false);
    if (pods.is_array())
      for (const auto& p : pods)
        if (p.value("name", "") == "pod-2") return p.value("ingress_hook", "none");
    return std::string("missing");
  };
  EXPECT_EQ(pod2_hook(), "host");
  const std::map<std::string, std::string> in2 = {{"pod", "pod-2"}, {"direction", "ingress"}};
  const std::string before = metrics_after_ticks(port, 1);
  auto since_before = [&](const std::string& text, const char* name) {
    return metric_value(text, name, in2).value_or(-1) - metric_value(before, name, in2).value_or(0);
  };
  ASSERT_EQ(run(to_pod2 + "10 200").status, 0);  // the usual way, through the host side
  const std::string host = metrics_after_ticks(port);
  EXPECT_EQ(since_before(host, "vigil_forward_packets_total"), 10) << host;

  TcxLinks cni;
  ASSERT_EQ(link_redirecting_cni(cni, r.object, r.lab), "");
  for (int i = 0; i < 60 && pod2_hook() != "pod"; ++i) std::this_thread::sleep_for(100ms);  // checked every 2 s
  ASSERT_EQ(pod2_hook(), "pod") << agent->log();
  const std::string moved = metrics_after_ticks(port);
  EXPECT_EQ(since_before(moved, "vigil_forward_packets_total"), 10) << "no step by the 20 the host side never carried";
  ASSERT_EQ(run(to_pod2 + "40 200").status, 0);  // by the redirect
  const std::string after = metrics_after_ticks(port);
  const double kBytes = 14 + 20 + 8 + 200;
  EXPECT_EQ(since_before(after, "vigil_forward_packets_total"), 50) << after;
  EXPECT_EQ(since_before(after, "vigil_forward_bytes_total"), 50 * kBytes);
  EXPECT_EQ(agent->terminate(), 0) << agent->log();
}

// libbpf's messages reach the agent's log at a level, never raw stderr: attaching to a pod
// interface cleans up filters an older agent may have left, and the kernel's "no such qdisc"
// answer to that is logged at debug, not shown as a warning; a real libbpf warning still is one.
TEST(TcHook, LibbpfMessagesGoToTheLogAndExpectedAnswersStayQuiet) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(1);
  std::ostringstream log;
  auto saved = spdlog::default_logger();
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
  sink->set_pattern("%l %v");
  auto logger = std::make_shared<spdlog::logger>("capture", sink);
  logger->set_level(spdlog::level::debug);
  spdlog::set_default_logger(logger);
  // stderr to a file while libbpf speaks, so that anything printed around the log is seen.
  ScopedTempDir dir;
  const std::string err_file = dir.path() + "/stderr";
  std::fflush(stderr);
  const int saved_err = dup(2);
  const int err_fd = open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(err_fd, 0);
  dup2(err_fd, 2);
  close(err_fd);
  {
    auto loaded = Datapath::open_and_load();
    if (loaded) {
      const std::string dev = lab.veth(1);
      EXPECT_TRUE((*loaded)->attach_tc(if_nametoindex(dev.c_str()), dev));
      // A call of our own, outside the agent's clean-up: the kernel's refusal is a warning.
      DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(if_nametoindex(dev.c_str())),
                          .attach_point = BPF_TC_INGRESS);
      DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = 0x7669, .priority = 1);
      EXPECT_NE(bpf_tc_detach(&hook, &opts), 0);
    }
    std::fflush(stderr);
    dup2(saved_err, 2);
    close(saved_err);
    spdlog::set_default_logger(saved);
    ASSERT_TRUE(loaded) << loaded.error().message;
  }
  std::ifstream in(err_file);
  const std::string err((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(err.find("libbpf"), std::string::npos) << "libbpf printed to stderr:\n" << err;
  const std::string text = log.str();
  size_t warnings = 0, quiet = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("warning libbpf: Kernel error message", 0) == 0) ++warnings;
    if (line.rfind("debug libbpf: Kernel error message", 0) == 0) ++quiet;
  }
  EXPECT_EQ(warnings, 1u) << "only the test's own call is a warning:\n" << text;
  if (kernel_has_tcx()) {
    EXPECT_GE(quiet, 1u) << "the attach's clean-up answer, at debug:\n" << text;
  }
}

// A CNI's program that comes on a pod's host-side veth after the pod was attached moves what the
// pod receives to its own end (metrics.ingress_hook: auto): the agent links its programs again,
// and the pod keeps its slot. It keeps its remote-context peers too, and the count of those it
// has taken: after the move, new peers still go to "other" once max_peers are named.
TEST(TcHook, RemoteContextStaysWithinMaxPeersWhenTheProgramsAreLinkedAgain) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  ScopedTempDir dir;
  std::string error;
  const std::string object = compile_other_tool("pass_all", dir.path(), error);
  ASSERT_NE(object, "") << error;
  const int port = free_port();
  auto agent = start_agent(lab, dir.path(), port, "remote_context: {namespaces: [lab], max_peers: 4}\n");
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent->log();
  // Pod 2 sends pod 1 a datagram from each of `n` addresses from `base` on.
  auto from_many = [&](int n, const std::string& base) {
    auto r = run("ip netns exec " + lab.prefix() + "-pod-2 " + binary_path("tests/tools/vigil-lab-traffic") +
                 " udp-from-many " + lab.ip(1) + " 9000 " + std::to_string(n) + " " + base);
    ASSERT_EQ(r.status, 0) << r.output;
  };
  // Pod 1's named peers of what it receives, and what it received in "other".
  std::string text;
  auto named = [&] {
    text = metrics_after_ticks(port, 1);
    int n = 0;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);)
      if (line.rfind("vigil_remote_forward_packets_total{", 0) == 0 && line.find("pod=\"pod-1\"") != std::string::npos &&
          line.find("direction=\"ingress\"") != std::string::npos && line.find("remote_ip=\"10.251.") != std::string::npos)
        ++n;
    return n;
  };
  auto other = [&] {
    return metric_value(text, "vigil_remote_forward_packets_total",
                        {{"pod", "pod-1"}, {"direction", "ingress"}, {"remote_ip", "other"}}).value_or(0);
  };
  from_many(4, "10.251.0.1");
  ASSERT_TRUE(wait_until([&] { return named() == 4; }, 10s)) << text;
  const double other_before = other();

  // The CNI comes: its filter on pod 1's host-side veth.
  ASSERT_EQ(run("tc qdisc add dev " + lab.veth(1) + " clsact").status, 0);
  auto tc = run("tc filter add dev " + lab.veth(1) + " ingress pref 50 bpf da obj " + object + " sec tc");
  ASSERT_EQ(tc.status, 0) << tc.output;
  ASSERT_TRUE(wait_until([&] { return agent->log().find("counting what the pod receives on its own") != std::string::npos; }, 10s))
      << agent->log();
  from_many(4, "10.251.1.1");
  ASSERT_TRUE(wait_until([&] {
    named();
    return other() >= other_before + 4;
  }, 10s)) << "the new peers are not in other:\n" << text;
  EXPECT_EQ(named(), 4) << "more than max_peers named peers:\n" << text;
  EXPECT_EQ(agent->terminate(), 0) << agent->log();
}

// The CNI bandwidth plugin limits what a pod sends with a plain ingress qdisc on its host-side
// veth (and a redirect to an ifb device). Where Vigil attaches clsact filters (kernels before
// TCX; metrics.tcx: false here), that qdisc takes the clsact qdisc's place and has no egress
// hook: a filter for what the pod receives would go on its ingress hook. What the pod receives
// is counted on its own end instead, and both directions match the veth's statistics.
TEST(TcHook, AnIngressQdiscOnTheVethLeavesWhatThePodReceivesToItsOwnEnd) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  ASSERT_TRUE(quiet_pod_pair(lab));
  const std::string veth = lab.veth(1);
  ASSERT_EQ(run("tc qdisc add dev " + veth + " ingress").status, 0);
  ScopedTempDir dir;
  const int port = free_port();
  auto agent = start_agent(lab, dir.path(), port, "metrics: {tcx: false}\n");
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent->log();
  EXPECT_NE(agent->log().find(veth + " has an ingress qdisc, not clsact"), std::string::npos) << agent->log();
  auto stat = [&](const char* what) { return std::stod(run("cat /sys/class/net/" + veth + "/statistics/" + what).output); };
  const std::string before = metrics_after_ticks(port);
  // What pod 1 sends is what its veth receives, and the other way round.
  const double sent0 = stat("rx_packets"), received0 = stat("tx_packets");
  lab.cmd("udp 1 2 10");
  lab.cmd("udp 2 1 20");
  const double sent = stat("rx_packets") - sent0, received = stat("tx_packets") - received0;
  ASSERT_GE(received, 20);
  auto delta = [&](const std::string& text, const char* direction) {
    return metric_sum(text, "vigil_forward_packets_total", {{"pod", "pod-1"}, {"direction", direction}}) -
           metric_sum(before, "vigil_forward_packets_total", {{"pod", "pod-1"}, {"direction", direction}});
  };
  std::string text;
  for (int i = 0; i < 50; ++i) {
    text = metrics_after_ticks(port, 1);
    if (delta(text, "egress") >= sent && delta(text, "ingress") >= received) break;
  }
  text = metrics_after_ticks(port);
  EXPECT_EQ(delta(text, "egress"), sent);
  EXPECT_EQ(delta(text, "ingress"), received);
  EXPECT_EQ(agent->terminate(), 0) << agent->log();
  run("tc qdisc del dev " + veth + " ingress");
}

}  // namespace
}  // namespace vigil::test
