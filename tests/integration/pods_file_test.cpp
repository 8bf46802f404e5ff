// The pods file drives attachment: pods added to it are attached, pods removed from it are
// detached and their series dropped, a broken file changes nothing, and the agent leaves no
// filter behind when it stops.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

std::string pods_yaml(const Lab& lab, const std::vector<int>& pods) {
  std::string out;
  for (int p : pods)
    out += "- namespace: lab\n  name: pod-" + std::to_string(p) + "\n  netns: " + lab.prefix() + "-pod-" +
           std::to_string(p) + "\n";
  return out;
}

// Whether one of Vigil's TC programs is on `dev`: as a TCX link (Linux 6.6+) or a clsact filter.
// Vigil's TC programs: vigil_tc on both hooks (6.3+), or the pair vigil_tc_ingress/egress.
bool is_vigil_tc(const std::string& name) { return name == "vigil_tc" || name.rfind("vigil_tc_", 0) == 0; }

bool has_vigil_filter(const std::string& dev) {
  auto r = run("tc filter show dev " + dev + " ingress; tc filter show dev " + dev + " egress");
  if (r.output.find("vigil_tc") != std::string::npos) return true;
  for (const auto& name : tcx_programs(dev))
    if (is_vigil_tc(name)) return true;
  return false;
}

// Every BPF map of this machine, by id, as the kernel has it.
struct KernelMap {
  std::string name;  // 15 characters at most
  __u32 max_entries = 0;
  __u32 flags = 0;
  uint64_t memlock = 0;  // bytes the map holds (fdinfo's memlock)
};
std::map<__u32, KernelMap> bpf_maps() {
  std::map<__u32, KernelMap> out;
  __u32 id = 0;
  for (int i = 0; i < 100000 && bpf_map_get_next_id(id, &id) == 0; ++i) {
    int fd = bpf_map_get_fd_by_id(id);
    if (fd < 0) continue;
    bpf_map_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
      KernelMap m{info.name, info.max_entries, info.map_flags, 0};
      std::ifstream fdinfo("/proc/self/fdinfo/" + std::to_string(fd));
      for (std::string line; std::getline(fdinfo, line);)
        if (line.rfind("memlock:", 0) == 0) m.memlock = std::stoull(line.substr(8));
      out[id] = m;
    }
    close(fd);
  }
  return out;
}

TEST(PodsFile, AttachesAndDetachesAsTheFileChanges) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(3);
  std::string dir = make_temp_dir();
  std::string pods = write_temp_file(dir, "pods.yaml", pods_yaml(lab, {1, 2}));
  int port = free_port();
  std::string config = write_temp_file(dir, "vigil.yaml",
                                       "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\n"
                                       "pods: {source: file, file: pods.yaml}\nrules: []\nnotifiers: []\n"
                                       "metrics: {series_grace: 2s}\n");
  {
    Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
    ASSERT_TRUE(wait_until([&] { return attached_pods(port) == std::set<std::string>{"pod-1", "pod-2"}; }, 10s))
        << agent.log();
    EXPECT_TRUE(has_vigil_filter(lab.veth(1)));
    EXPECT_TRUE(has_vigil_filter(lab.veth(2)));
    EXPECT_FALSE(has_vigil_filter(lab.veth(3)));
    lab.cmd("udp 1 2 50");
    ASSERT_TRUE(wait_until([&] {
      return metric_value(http_get("127.0.0.1", port, "/metrics"), "vigil_forward_packets_total",
                          {{"pod", "pod-1"}, {"direction", "egress"}}).value_or(0) >= 50;
    }, 5s));

    // pod-1 leaves the file, pod-3 joins it. Written in place, not renamed: the agent must not
    // act on a half-written file.
    write_temp_file(dir, "pods.yaml", pods_yaml(lab, {2, 3}));
    ASSERT_TRUE(wait_until([&] { return attached_pods(port) == std::set<std::string>{"pod-2", "pod-3"}; }, 10s))
        << agent.log();
    EXPECT_FALSE(has_vigil_filter(lab.veth(1)));
    EXPECT_TRUE(has_vigil_filter(lab.veth(3)));
    // The removed pod's series stay for the grace period (a last scrape sees their final
    // values), then go.
    std::string text = http_get("127.0.0.1", port, "/metrics");
    EXPECT_GE(metric_value(text, "vigil_forward_packets_total", {{"pod", "pod-1"}, {"direction", "egress"}}).value_or(0), 50);
    EXPECT_TRUE(wait_until([&] {
      return !metric_value(http_get("127.0.0.1", port, "/metrics"), "vigil_forward_packets_total", {{"pod", "pod-1"}});
    }, 5s)) << "series of a removed pod outlived the grace period";

    // A broken file is reported with file and line and changes nothing.
    write_temp_file(dir, "pods.yaml", pods_yaml(lab, {2}) + "- name: x\n  netns: a\n  bogus: 1\n");
    ASSERT_TRUE(wait_until([&] { return agent.log().find("pods.yaml:6: pods[1]: unknown key 'bogus'") != std::string::npos; }, 5s))
        << agent.log();
    EXPECT_EQ(attached_pods(port), (std::set<std::string>{"pod-2", "pod-3"}));
    int status = 0;
    http_get("127.0.0.1", port, "/healthz", &status);
    EXPECT_EQ(status, 200);

    EXPECT_EQ(agent.terminate(), 0) << agent.log();
  }
  // Stopping the agent removes its filters.
  for (int p : {1, 2, 3}) EXPECT_FALSE(has_vigil_filter(lab.veth(p))) << "pod " << p;
  run("rm -rf " + dir);
}

// A pod that goes and comes back within metrics.series_grace (a StatefulSet's pod made again
// under its name, a pods-file entry that flapped) keeps its series, and they go on from where
// they were: every family, whichever way its kernel counters are kept (by pod, by interface, by
// the programs' slot), counts what the new pod does on top of what the old one did. Exported as
// the new pod's counts alone, each would fall back (a counter reset Prometheus sees, and a
// reset the rules' rates see) and, once the new pod had counted past the old value, come out
// low for good. And the series stay when the old pod's grace time is up.
TEST(PodsFile, APodBackWithinTheGraceTimeGoesOnFromItsSeries) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  lab.cmd("serve-http 2");
  lab.cmd("serve-dns 2");
  std::string dir = make_temp_dir();
  const std::string pods = dir + "/pods.yaml";
  auto write_pods = [&](const std::vector<int>& which) {
    std::ofstream(pods + ".tmp") << (which.empty() ? std::string("[]\n") : pods_yaml(lab, which));
    ASSERT_EQ(rename((pods + ".tmp").c_str(), pods.c_str()), 0);
  };
  write_pods({1, 2});
  const int port = free_port();
  const std::string config = write_temp_file(dir, "vigil.yaml",
                                             "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\n"
                                             "pods: {source: file, file: pods.yaml}\nrules: []\nnotifiers: []\n"
                                             "metrics: {series_grace: 10s}\n");
  // Pod 1's series, one of each way the kernel keeps them: drops (by pod), TCP events (by pod),
  // TCP flags (the programs' slot), DNS (by interface).
  struct Counted {
    std::string name;
    std::map<std::string, std::string> labels;
    int per_round;
  };
  const std::vector<Counted> counted = {
      {"vigil_drop_packets_total", {{"direction", "ingress"}, {"reason", "NO_SOCKET"}, {"cast", "unicast"}}, 7},
      {"vigil_tcp_connect_attempts_total", {}, 3},
      {"vigil_tcp_flags_total", {{"direction", "egress"}, {"flag", "SYN"}}, 3},
      {"vigil_dns_requests_total", {{"direction", "egress"}, {"qtype", "A"}}, 3},
      {"vigil_dns_responses_total", {{"direction", "ingress"}, {"qtype", "A"}, {"rcode", "NXDOMAIN"}}, 1},
  };
  auto values = [&](const std::string& text) {
    std::vector<double> out;
    for (const auto& c : counted) {
      auto l = c.labels;
      l["pod"] = "pod-1";
      out.push_back(metric_value(text, c.name, l).value_or(-1));
    }
    return out;
  };
  auto want = [&](int rounds) {
    std::vector<double> out;
    for (const auto& c : counted) out.push_back(c.per_round * rounds);
    return out;
  };
  // A round: pod 2 sends 7 datagrams to pod 1's closed port 9000; pod 1 makes 3 HTTP requests
  // to pod 2 and asks its dnsmasq 3 questions, one of them for a name it does not have.
  auto round = [&] {
    lab.cmd("udp 2 1 7");
    const std::string ns = lab.prefix() + "-pod-1";
    for (int i = 0; i < 3; ++i) {
      auto r = run("ip netns exec " + ns + " bash -c 'exec 3<>/dev/tcp/" + lab.ip(2) +
                   "/8080 && printf \"GET /bytes/64 HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3 >/dev/null'");
      ASSERT_EQ(r.status, 0) << r.output;
    }
    EXPECT_EQ(lab.cmd("dns 1 2 ok.lab.test"), "NOERROR\n");
    EXPECT_EQ(lab.cmd("dns 1 2 ok.lab.test"), "NOERROR\n");
    EXPECT_EQ(lab.cmd("dns 1 2 nothing.lab.test"), "NXDOMAIN\n");
  };
  std::string text;
  auto counted_to = [&](int rounds) {
    return wait_until([&] { return values(text = http_get("127.0.0.1", port, "/metrics")) == want(rounds); }, 10s);
  };

  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  ASSERT_TRUE(wait_until([&] { return attached_pods(port) == std::set<std::string>{"pod-1", "pod-2"}; }, 10s)) << agent.log();
  round();
  ASSERT_TRUE(counted_to(1)) << testing::PrintToString(values(text)) << "\n" << text;

  // Pod 1 goes as a CNI takes a pod away: its namespace, then its entry.
  lab.cmd("rm 1");
  write_pods({2});
  const auto gone = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until([&] { return attached_pods(port) == std::set<std::string>{"pod-2"}; }, 10s)) << agent.log();
  EXPECT_EQ(values(metrics_after_ticks(port)), want(1)) << "a gone pod's series must stay for the grace time";

  // And comes back under its name: a new namespace, a new veth, the same address.
  lab.cmd("up 2");
  // Pod 2 learns the new pod's MAC address (sent to the old one, the bridge floods them and pod 1
  // drops them as OTHERHOST).
  ASSERT_EQ(run("ip -n " + lab.prefix() + "-pod-2 neigh flush all").status, 0);
  write_pods({1, 2});
  ASSERT_TRUE(wait_until([&] { return attached_pods(port) == std::set<std::string>{"pod-1", "pod-2"}; }, 10s)) << agent.log();
  ASSERT_LT(std::chrono::steady_clock::now() - gone, 8s) << "pod 1 came back too late for the test's grace time";
  EXPECT_EQ(values(metrics_after_ticks(port)), want(1)) << "the series of a pod that came back fell back";
  round();
  EXPECT_TRUE(counted_to(2)) << "what the pod did before it went, and after it came back, adds up: "
                             << testing::PrintToString(values(text)) << "\n" << text;

  // The old pod's grace time ends: the series are the pod's that is here now, and stay.
  std::this_thread::sleep_until(gone + 11s);
  EXPECT_EQ(values(metrics_after_ticks(port)), want(2)) << "a pod that came back lost its series when the gone pod's grace time ended";
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

// A pod that leaves the pods file is detached at a tick, and what it sent since the tick before
// is in its series (kept for the grace time) all the same: the tick reads the maps before it
// takes the pod's counters out of them. With a 1 s tick, 40 datagrams leave pod 1 after the tick
// that saw the file change and before the one that applies it.
TEST(PodsFile, APodThatGoesHasItsLastCountsRead) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  ASSERT_TRUE(quiet_pod_pair(lab));
  std::string dir = make_temp_dir();
  const std::string pods = dir + "/pods.yaml";
  write_temp_file(dir, "pods.yaml", pods_yaml(lab, {1, 2}));
  const int port = free_port();
  const std::string config = write_temp_file(dir, "vigil.yaml",
                                             "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 1s\n"
                                             "pods: {source: file, file: pods.yaml}\nrules: []\nnotifiers: []\n"
                                             "metrics: {series_grace: 1m}\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  ASSERT_TRUE(wait_until([&] { return attached_pods(port) == std::set<std::string>{"pod-1", "pod-2"}; }, 10s)) << agent.log();
  auto sent = [&](const std::string& text) {
    return metric_value(text, "vigil_forward_packets_total", {{"pod", "pod-1"}, {"direction", "egress"}}).value_or(-1);
  };
  lab.cmd("udp 1 2 10");
  ASSERT_TRUE(wait_until([&] { return sent(http_get("127.0.0.1", port, "/metrics")) == 10; }, 10s));
  auto ticks = [&] {
    return metric_value(http_get("127.0.0.1", port, "/metrics"), "vigil_tick_duration_seconds_count", {}).value_or(0);
  };
  // The file changes just after a tick ended; the next tick sees the change, and the one after
  // it applies it (a change is applied once the file looked the same for a tick).
  const double t0 = ticks();
  ASSERT_TRUE(wait_until([&] { return ticks() >= t0 + 1; }, 10s));
  std::ofstream(pods + ".tmp") << pods_yaml(lab, {2});
  ASSERT_EQ(rename((pods + ".tmp").c_str(), pods.c_str()), 0);
  const double t1 = ticks();
  ASSERT_TRUE(wait_until([&] { return ticks() >= t1 + 1; }, 10s));
  ASSERT_TRUE(attached_pods(port).count("pod-1")) << "applied already: the test's window is gone";
  lab.cmd("udp 1 2 40");
  ASSERT_TRUE(wait_until([&] { return attached_pods(port) == std::set<std::string>{"pod-2"}; }, 10s)) << agent.log();
  EXPECT_EQ(sent(metrics_after_ticks(port)), 50) << "what pod 1 sent in its last tick is lost";
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

// A pod that goes and comes back within metrics.series_grace under other labels (a StatefulSet's
// pod made again from a changed template) is a relabelled pod: its series under the old labels go
// at once, as a running pod's do when relabelled, instead of staying beside the new ones (sums by
// pod would count it twice) for as long as the new pod lives.
TEST(PodsFile, APodBackWithinTheGraceUnderOtherLabelsLeavesNoOldSeries) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  ScopedTempDir dir;
  const std::string pods = dir.path() + "/pods.yaml";
  auto write_pods = [&](const std::string& pod1_app) {
    std::string text = pods_yaml(lab, {2});
    if (!pod1_app.empty())
      text += "- namespace: lab\n  name: pod-1\n  labels: {app: " + pod1_app + "}\n  netns: " + lab.prefix() + "-pod-1\n";
    std::ofstream(pods + ".tmp") << text;
    ASSERT_EQ(rename((pods + ".tmp").c_str(), pods.c_str()), 0);
  };
  write_pods("a");
  const int port = free_port();
  const std::string config = write_temp_file(dir.path(), "vigil.yaml",
      "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\n"
      "pods: {source: file, file: pods.yaml}\nrules: []\nnotifiers: []\nmetrics: {series_grace: 30s}\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir.path() + "/agent.log");
  ASSERT_TRUE(wait_until([&] { return attached_pods(port) == std::set<std::string>{"pod-1", "pod-2"}; }, 10s)) << agent.log();
  auto sent = [&](const std::string& app) {
    return metric_value(http_get("127.0.0.1", port, "/metrics"), "vigil_forward_packets_total",
                        {{"pod", "pod-1"}, {"direction", "egress"}, {"label_app", app}});
  };
  lab.cmd("udp 1 2 10");
  ASSERT_TRUE(wait_until([&] { return sent("a").value_or(0) >= 10; }, 10s));
  write_pods("");
  ASSERT_TRUE(wait_until([&] { return attached_pods(port) == std::set<std::string>{"pod-2"}; }, 10s)) << agent.log();
  EXPECT_TRUE(sent("a")) << "within the grace, the gone pod's series stay";
  write_pods("b");
  ASSERT_TRUE(wait_until([&] { return attached_pods(port) == std::set<std::string>{"pod-1", "pod-2"}; }, 10s)) << agent.log();
  lab.cmd("udp 1 2 5");
  ASSERT_TRUE(wait_until([&] { return sent("b").value_or(0) >= 5; }, 10s));
  const std::string text = metrics_after_ticks(port);
  const std::regex old_series(R"(\{[^}]*label_app="a"[^}]*\})");
  EXPECT_FALSE(std::regex_search(text, old_series)) << "series under the labels the pod went with";
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
}

// With Retina's names (metrics.retina_compat), a pod that leaves the file keeps its local-context
// series under its address while its series stay (series_grace), and the node's counts, sums over
// the pods, keep what it counted when its series go: Retina's dashboards take rate() of them, and
// a node count that fell would read as a counter reset, a spike of the node's whole total.
TEST(PodsFile, RetinaSeriesOfAPodThatLeftKeepItsAddressAndTheNodeKeepsItsCounts) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  ASSERT_TRUE(quiet_pod_pair(lab));
  ScopedTempDir dir;
  const std::string pods = dir.path() + "/pods.yaml";
  write_temp_file(dir.path(), "pods.yaml", pods_yaml(lab, {1, 2}));
  const int port = free_port();
  const std::string config = write_temp_file(dir.path(), "vigil.yaml",
      "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\n"
      "pods: {source: file, file: pods.yaml}\nrules: []\nnotifiers: []\n"
      "metrics: {series_grace: 3s, retina_compat: true}\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir.path() + "/agent.log");
  ASSERT_TRUE(wait_until([&] { return attached_pods(port) == std::set<std::string>{"pod-1", "pod-2"}; }, 10s)) << agent.log();
  const std::map<std::string, std::string> adv1 = {{"source_podname", "pod-1"}, {"source_namespace", "lab"},
                                                   {"source_ip", lab.ip(1)}, {"direction", "egress"}};
  const std::map<std::string, std::string> node_egress = {{"direction", "egress"}};
  auto node_sent = [&](const std::string& text) {
    return metric_value(text, "networkobservability_forward_count", node_egress).value_or(-1);
  };
  lab.cmd("udp 1 2 30");
  lab.cmd("udp 2 1 5");
  std::string text;
  ASSERT_TRUE(wait_until([&] {
    text = http_get("127.0.0.1", port, "/metrics");
    return metric_value(text, "networkobservability_adv_forward_count", adv1).value_or(-1) >= 30;  // and ARP
  }, 10s)) << text;
  std::this_thread::sleep_for(500ms);
  text = http_get("127.0.0.1", port, "/metrics");
  const double sent1 = metric_value(text, "networkobservability_adv_forward_count", adv1).value_or(-1);
  const double node_before = node_sent(text);
  EXPECT_GE(node_before, 35) << text;

  write_temp_file(dir.path(), "pods.yaml", pods_yaml(lab, {2}));
  ASSERT_TRUE(wait_until([&] { return attached_pods(port) == std::set<std::string>{"pod-2"}; }, 10s)) << agent.log();
  // Within the grace: pod 1's series as they were, under its address.
  text = http_get("127.0.0.1", port, "/metrics");
  EXPECT_EQ(metric_value(text, "networkobservability_adv_forward_count", adv1).value_or(-1), sent1) << text;
  // Its series gone: the node's count has not fallen.
  ASSERT_TRUE(wait_until([&] {
    text = http_get("127.0.0.1", port, "/metrics");
    return !metric_value(text, "vigil_forward_packets_total", {{"pod", "pod-1"}});
  }, 10s)) << "pod 1's series outlived the grace";
  EXPECT_GE(node_sent(text), node_before) << text;
  EXPECT_FALSE(metric_value(text, "networkobservability_adv_forward_count", {{"source_podname", "pod-1"}}));
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
}

// The pod manager checks at every tick that each attached pod's host-side veth still has the
// name it was attached under (a deleted namespace takes its veth; a reused ifindex gets another
// name). A veth renamed under a running agent: the pod is resolved again through its namespace,
// attached under the new name, and counted there; nothing is left on it when the agent stops.
TEST(PodsFile, AHostSideVethRenamedIsAttachedAgainUnderItsNewName) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  const std::string was = lab.veth(1), now = lab.prefix() + "r1";
  ASSERT_LE(now.size(), 15u);
  std::string dir = make_temp_dir();
  write_temp_file(dir, "pods.yaml", pods_yaml(lab, {1}));
  int port = free_port();
  std::string config = write_temp_file(dir, "vigil.yaml",
                                       "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\n"
                                       "pods: {source: file, file: pods.yaml}\nrules: []\nnotifiers: []\n");
  auto interface_of = [&]() -> std::string {
    auto j = nlohmann::json::parse(http_get("127.0.0.1", port, "/api/v1/pods"), nullptr, false);
    if (!j.is_array()) return "";
    for (const auto& p : j)
      if (p.value("name", "") == "pod-1" && p.value("attached", false)) return p.value("interface", "");
    return "";
  };
  auto egress = [&] {
    return metric_value(http_get("127.0.0.1", port, "/metrics"), "vigil_forward_packets_total",
                        {{"pod", "pod-1"}, {"direction", "egress"}}).value_or(0);
  };
  // Pod 1's DNS questions (counted by interface) and TCP connects (by pod) to pod 2.
  lab.cmd("serve-dns 2");
  lab.cmd("serve-http 2");
  auto ask = [&](int n) {
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(lab.cmd("dns 1 2 ok.lab.test"), "NOERROR\n");
      EXPECT_EQ(run("ip netns exec " + lab.prefix() + "-pod-1 bash -c 'exec 3<>/dev/tcp/" + lab.ip(2) + "/8080'").status, 0);
    }
  };
  std::string text;
  auto asked = [&](int n) {
    return wait_until([&] {
      text = http_get("127.0.0.1", port, "/metrics");
      return metric_value(text, "vigil_dns_requests_total", {{"pod", "pod-1"}, {"direction", "egress"}, {"qtype", "A"}}) == n &&
             metric_value(text, "vigil_tcp_connect_attempts_total", {{"pod", "pod-1"}}) == n;
    }, 10s);
  };
  {
    Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
    ASSERT_TRUE(wait_until([&] { return interface_of() == was; }, 10s)) << agent.log();
    ASSERT_TRUE(has_vigil_filter(was));
    lab.cmd("udp 1 2 20");
    ASSERT_TRUE(wait_until([&] { return egress() >= 20; }, 5s)) << agent.log();
    ask(2);
    ASSERT_TRUE(asked(2)) << text;

    const auto renamed = run("ip link set dev " + was + " down && ip link set dev " + was + " name " + now +
                             " && ip link set dev " + now + " up");
    ASSERT_EQ(renamed.status, 0) << renamed.output;
    ASSERT_TRUE(wait_until([&] { return interface_of() == now; }, 10s)) << agent.log();
    EXPECT_NE(agent.log().find("interface " + was + " is gone; will re-resolve"), std::string::npos) << agent.log();
    EXPECT_TRUE(has_vigil_filter(now));
    // Counted under the new name: what pod 1 sends now adds to what it sent before.
    const double before = egress();
    ASSERT_TRUE(wait_until([&] {
      lab.cmd("udp 1 2 5");
      return egress() >= before + 20;
    }, 10s)) << "pod 1's packets are not counted after its veth was renamed\n" << agent.log();
    // Attached again, with counters from zero in the kernel: its series go on, each counted once.
    ask(3);
    EXPECT_TRUE(asked(5)) << text;
    EXPECT_EQ(agent.terminate(), 0) << agent.log();
  }
  EXPECT_FALSE(has_vigil_filter(now));
  run("rm -rf " + dir);
}

// max_pods bounds the pod interfaces attached at once and sizes the maps that keep an entry per
// CPU (on a 64-CPU node the ABI's maxima would take hundreds of MiB): a pod beyond it waits,
// pending, with an error naming the key, and counting in the smaller arrays stays exact.
TEST(PodsFile, MaxPodsBoundsWhatIsAttachedAndSizesThePerCpuMaps) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(3);
  std::string dir = make_temp_dir();
  write_temp_file(dir, "pods.yaml", pods_yaml(lab, {1, 2, 3}));
  int port = free_port();
  std::string config = write_temp_file(dir, "vigil.yaml",
                                       "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\nmax_pods: 2\n"
                                       "pods: {source: file, file: pods.yaml}\nrules: []\nnotifiers: []\n");
  const auto before = bpf_maps();
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  ASSERT_TRUE(wait_until([&] {
    return attached_pods(port).size() == 2 && agent.log().find("raise max_pods in the config") != std::string::npos;
  }, 10s)) << agent.log();
  std::string text = http_get("127.0.0.1", port, "/metrics");
  EXPECT_EQ(metric_value(text, "vigil_pods", {{"state", "pending"}}), 1) << text;
  EXPECT_EQ(metric_value(text, "vigil_bpf_map_max_entries", {{"map", "vigil_traffic"}}), 2);

  // The kernel's own view of the maps this agent made.
  std::map<std::string, KernelMap> made;
  for (const auto& [id, map] : bpf_maps())
    if (!before.count(id)) made[map.name] = map;
  const __u32 cpus = static_cast<__u32>(libbpf_num_possible_cpus());
  EXPECT_EQ(made["vigil_traffic"].max_entries, 2 * cpus);
  EXPECT_EQ(made["vigil_tcp"].max_entries, 2u);
  EXPECT_EQ(made["vigil_dns_laten"].max_entries, 2u);   // vigil_dns_latency
  EXPECT_EQ(made["vigil_capture_l"].max_entries, 2u);   // vigil_capture_lost
  // No pod can opt in to remote context: one key, not 16,384 per CPU.
  EXPECT_EQ(made["vigil_remote_va"].max_entries, cpus);  // vigil_remote_values
  EXPECT_EQ(made["vigil_remote"].max_entries, 1u);
  // Drop and DNS keys take memory as they appear (this kernel is 6.1 or later): their bounds
  // stay the ABI's, but with no key yet the maps hold their bucket arrays (16 bytes per entry of
  // the bound) and little else; preallocated, they held every entry's value on every CPU too
  // (on this 2-CPU machine 1.8 and 3.1 MB against 0.26 and 0.53; on 64 CPUs 16 MiB apiece).
  for (const char* name : {"vigil_drops", "vigil_dns_count"}) {  // vigil_dns_counts
    const KernelMap& m = made[name];
    EXPECT_TRUE(m.flags & BPF_F_NO_PREALLOC) << name << " flags " << m.flags;
    EXPECT_GT(m.max_entries, 1000u) << name;
    EXPECT_LT(m.memlock, uint64_t{m.max_entries} * 16 + (64u << 10)) << name << ": " << m.memlock << " bytes";
  }

  // Every packet one attached pod sends the other, counted once in the smaller arrays, on
  // whichever CPU it was handled, under the right pod (a stride the programs and the agent did not
  // share would lose a CPU's share or show it under the other pod). Fresh pods' IPv6 chatter
  // (router solicitations, MLD reports, the bridge's multicast) adds a few packets of its own.
  const auto pods = attached_pods(port);
  const std::string a = *pods.begin(), b = *std::next(pods.begin());
  const std::string from = a.substr(4), to = b.substr(4);  // "pod-N"
  lab.cmd("udp " + from + " " + to + " 5");  // neighbours resolved before counting
  const std::map<std::string, std::string> out = {{"pod", a}, {"direction", "egress"}};
  const std::map<std::string, std::string> in = {{"pod", b}, {"direction", "ingress"}};
  std::string start = metrics_after_ticks(port), end;
  auto delta = [&](const std::map<std::string, std::string>& labels) {
    return metric_value(end, "vigil_forward_packets_total", labels).value_or(0) -
           metric_value(start, "vigil_forward_packets_total", labels).value_or(0);
  };
  // Sent from every CPU in turn: the sender's CPU is the one whose entries count it.
  const int cpus_online = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  const int kPerCpu = 150, kSent = kPerCpu * cpus_online;
  for (int cpu = 0; cpu < cpus_online; ++cpu) {
    auto r = run("taskset -c " + std::to_string(cpu) + " ip netns exec " + lab.prefix() + "-pod-" + from + " " +
                 binary_path("tests/tools/vigil-lab-traffic") + " udp-send " + lab.ip(std::stoi(to)) + " 9000 " +
                 std::to_string(kPerCpu) + " 64");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  ASSERT_TRUE(wait_until([&] {
    end = http_get("127.0.0.1", port, "/metrics");
    return delta(out) >= kSent && delta(in) >= kSent;
  }, 5s)) << end;
  end = metrics_after_ticks(port);
  // At most a few dozen of the chatter, against a CPU's share lost (150) or another pod's
  // counts shown (300) if the stride were wrong.
  EXPECT_GE(delta(out), kSent);
  EXPECT_LE(delta(out), kSent + 40);
  EXPECT_GE(delta(in), kSent);
  EXPECT_LE(delta(in), kSent + 40);

  // The pod left out is retried (every 2 s) without saying so again, and attaches once a slot
  // is free: here when an attached pod leaves the file.
  auto said = [&] {
    const std::string log = agent.log();
    size_t n = 0;
    for (size_t at = log.find("raise max_pods"); at != std::string::npos; at = log.find("raise max_pods", at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(said(), 1u) << agent.log();
  std::set<std::string> all = {"pod-1", "pod-2", "pod-3"};
  for (const auto& p : pods) all.erase(p);
  const std::string waiting = *all.begin();
  write_temp_file(dir, "pods.yaml", pods_yaml(lab, {std::stoi(b.substr(4)), std::stoi(waiting.substr(4))}));
  EXPECT_TRUE(wait_until([&] { return attached_pods(port) == std::set<std::string>{b, waiting}; }, 10s)) << agent.log();
  EXPECT_EQ(said(), 1u) << agent.log();
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  run("rm -rf " + dir);
}

}  // namespace
}  // namespace vigil::test
