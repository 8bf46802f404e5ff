// The netstat family on lab pods against the kernel's own figures: SNMP counters that the test
// moves by exact amounts (datagrams to a closed port, connections refused) compared with nstat
// in each pod's namespace, the node's against nstat before and after, and sockets by state
// compared with ss while connections open, half-close and close. And reading a pod's namespace
// never keeps it alive after the pod is deleted.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <regex>
#include <sstream>
#include <set>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

class NetstatTelemetry : public ::testing::Test {
 protected:
  void SetUp() override {
    VIGIL_REQUIRE_ROOT();
    lab_ = std::make_unique<Lab>(3);
    dir_ = std::make_unique<ScopedTempDir>();
    port_ = free_port();
    // The shipped rules that read a pod's socket overflows, as users run them but firing at the
    // first read that sees one (the reads here are 200 ms apart, not 10 s).
    const std::string pending = "pending = \"30s\"";
    const std::string overflows = shipped_rule("pod-socket-overflows.lua", {{pending, "pending = \"0s\""},
                                                                            {pending, "pending = \"0s\""}});
    ASSERT_FALSE(overflows.empty()) << "rules/pack/pod-socket-overflows.lua no longer has the setting this test shortens";
    const std::string rules = write_temp_file(dir_->path(), "overflows.lua", overflows);
    std::string config = write_temp_file(dir_->path(), "vigil.yaml",
                                         "listen: 127.0.0.1:" + std::to_string(port_) + "\ntick: 200ms\n"
                                         "state_dir: " + dir_->path() + "/state\n"
                                         "pods: {source: file, file: " + lab_->pods_file() + "}\nrules: [" + rules +
                                         "]\nnotifiers: [{name: default, type: log}]\n"
                                         "metrics: {netstat: {interval: 200ms, sockets: all, conntrack_by_pod: '0.2%'}}\n");
    agent_ = std::make_unique<Process>(std::vector<std::string>{binary_path("vigil"), "agent", "--config", config},
                                       dir_->path() + "/agent.log");
    ASSERT_TRUE(wait_for_attached(port_, 3)) << "agent did not attach:\n" << agent_->log();
  }
  void TearDown() override {
    helpers_.clear();
    if (agent_) {
      EXPECT_EQ(agent_->terminate(), 0) << agent_->log();
    }
    agent_.reset();
    lab_.reset();
    dir_.reset();
  }
  std::string ns(int pod) const { return lab_->prefix() + "-pod-" + std::to_string(pod); }
  std::string pod(int i) const { return "pod-" + std::to_string(i); }
  // One counter as nstat reads it in pod `i`'s namespace (i = 0: the node's).
  uint64_t nstat(int i, const std::string& counter) {
    auto r = run((i ? "ip netns exec " + ns(i) + " " : std::string()) + "nstat -az " + counter);
    std::smatch m;
    std::regex re(counter + R"(\s+(\d+))");
    return std::regex_search(r.output, m, re) ? std::stoull(m[1]) : ~0ull;
  }
  // TCP sockets in `state` (as ss names it: ESTAB, LISTEN, FIN-WAIT-2, ...) in pod `i`.
  int ss_count(int i, const std::string& state) {
    auto r = run("ip netns exec " + ns(i) + " ss -Htan");
    std::istringstream in(r.output);
    std::string line;
    int n = 0;
    while (std::getline(in, line)) n += line.rfind(state + " ", 0) == 0;
    return n;
  }
  // Waits (bounded) until ss in pod `i` shows `count` sockets in `state`.
  bool wait_for_ss(int i, const std::string& state, int count) {
    for (int k = 0; k < 100; ++k) {
      if (ss_count(i, state) == count) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }
  double mib(const std::string& text, int i, const std::string& group, const std::string& statistic) {
    return metric_value(text, "vigil_netstat_total", {{"pod", pod(i)}, {"group", group}, {"statistic", statistic}})
        .value_or(-1);
  }
  double sockets(const std::string& text, int i, const std::string& state) {
    return metric_value(text, "vigil_tcp_sockets", {{"pod", pod(i)}, {"state", state}}).value_or(-1);
  }
  // The sockstat-based gauges: sockets in use (all but TIME_WAIT) and in TIME_WAIT.
  double in_use(const std::string& text, int i) {
    return metric_value(text, "vigil_tcp_sockets_in_use", {{"pod", pod(i)}}).value_or(-1);
  }
  double time_wait(const std::string& text, int i) {
    return metric_value(text, "vigil_tcp_sockets_time_wait", {{"pod", pod(i)}}).value_or(-1);
  }
  // Every TCP socket ss lists in pod `i`, TIME_WAIT left out.
  int ss_not_time_wait(int i) {
    auto r = run("ip netns exec " + ns(i) + " ss -Htan");
    std::istringstream in(r.output);
    std::string line;
    int n = 0;
    while (std::getline(in, line)) n += !line.empty() && line.rfind("TIME-WAIT ", 0) != 0;
    return n;
  }
  // A number from a file as pod `i` sees it (its own /sys).
  uint64_t read_u64_in(int i, const std::string& path) {
    auto r = run("ip netns exec " + ns(i) + " cat " + path);
    return r.status == 0 ? std::stoull(r.output) : ~0ull;
  }
  // Pod 2 accepts connections on 7000 and never answers (helpers_[0]); pod 1 opens 4 and holds
  // them (helpers_[1]), until both ends show them established.
  void hold_four_connections() {
    helpers_.push_back(std::make_unique<Process>(
        std::vector<std::string>{"/usr/sbin/ip", "netns", "exec", ns(2), binary_path("tests/tools/vigil-lab-traffic"),
                                 "tcp-silent", "7000", "60"},
        dir_->path() + "/server.log"));
    ASSERT_TRUE(wait_for_ss(2, "LISTEN", 1)) << run("ip netns exec " + ns(2) + " ss -tan").output << helpers_[0]->log();
    const std::string ip2 = lab_->ip(2);
    helpers_.push_back(std::make_unique<Process>(
        std::vector<std::string>{"/usr/sbin/ip", "netns", "exec", ns(1), "/bin/bash", "-c",
                                 "exec 3<>/dev/tcp/" + ip2 + "/7000 4<>/dev/tcp/" + ip2 + "/7000 5<>/dev/tcp/" + ip2 +
                                     "/7000 6<>/dev/tcp/" + ip2 + "/7000; exec sleep 60"},
        dir_->path() + "/client.log"));
    ASSERT_TRUE(wait_for_ss(1, "ESTAB", 4)) << run("ip netns exec " + ns(1) + " ss -tan").output;
    ASSERT_TRUE(wait_for_ss(2, "ESTAB", 4)) << run("ip netns exec " + ns(2) + " ss -tan").output;
  }
  // Metrics after at least one netstat read that began after this call.
  std::string settled() { return metrics_after_ticks(port_, 3); }

  std::unique_ptr<Lab> lab_;
  std::unique_ptr<ScopedTempDir> dir_;
  std::unique_ptr<Process> agent_;
  std::vector<std::unique_ptr<Process>> helpers_;
  int port_ = 0;
};

TEST_F(NetstatTelemetry, PodCountersAreTheKernelsOwnExactly) {
  // 13 datagrams from pod 1 to a port nobody listens on in pod 2: pod 2's Udp NoPorts.
  const int kDatagrams = 13;
  lab_->cmd("udp 1 2 " + std::to_string(kDatagrams));
  // 7 connections from pod 1 to a closed port of pod 2: pod 1's AttemptFails, pod 2's OutRsts.
  const int kRefused = 7;
  auto r = run("ip netns exec " + ns(1) + " bash -c 'for i in $(seq 1 " + std::to_string(kRefused) +
               "); do (exec 3<>/dev/tcp/" + lab_->ip(2) + "/81) 2>/dev/null; done; true'");
  ASSERT_EQ(r.status, 0) << r.output;
  // Three refused connections on the node's loopback, so that the node's OutRsts moves too.
  const uint64_t node_before = nstat(0, "TcpOutRsts");
  const int closed = free_port();
  run("bash -c 'for i in 1 2 3; do (exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(closed) + ") 2>/dev/null; done; true'");

  const std::string text = settled();
  const uint64_t node_after = nstat(0, "TcpOutRsts");
  EXPECT_EQ(mib(text, 2, "Udp", "NoPorts"), kDatagrams) << text;
  EXPECT_EQ(nstat(2, "UdpNoPorts"), static_cast<uint64_t>(kDatagrams));
  EXPECT_EQ(mib(text, 2, "Tcp", "OutRsts"), kRefused);
  EXPECT_EQ(nstat(2, "TcpOutRsts"), static_cast<uint64_t>(kRefused));
  EXPECT_EQ(mib(text, 1, "Tcp", "AttemptFails"), kRefused);
  EXPECT_EQ(nstat(1, "TcpAttemptFails"), static_cast<uint64_t>(kRefused));
  EXPECT_EQ(mib(text, 1, "Tcp", "ActiveOpens"), kRefused);
  // Nothing of it lands on another pod: counters that stayed zero have no series.
  EXPECT_EQ(mib(text, 1, "Udp", "NoPorts"), -1);
  EXPECT_EQ(mib(text, 3, "Udp", "NoPorts"), -1);
  EXPECT_EQ(mib(text, 3, "Tcp", "OutRsts"), -1);
  EXPECT_EQ(mib(text, 2, "Tcp", "AttemptFails"), -1);
  // The node's own namespace: read between the two nstat readings, which the host's other
  // traffic may move too.
  auto node = metric_value(text, "vigil_node_netstat_total", {{"group", "Tcp"}, {"statistic", "OutRsts"}});
  ASSERT_TRUE(node.has_value()) << text;
  EXPECT_GE(*node, static_cast<double>(node_before + 3));
  EXPECT_LE(*node, static_cast<double>(node_after));
  EXPECT_EQ(metric_value(text, "vigil_netstat_read_errors_total", {}).value_or(-1), 0);
}

TEST_F(NetstatTelemetry, SocketsByStateAsSsCountsThem) {
  ASSERT_NO_FATAL_FAILURE(hold_four_connections());

  std::string text = settled();
  EXPECT_EQ(sockets(text, 1, "ESTABLISHED"), 4) << text;
  EXPECT_EQ(sockets(text, 2, "ESTABLISHED"), 4);
  EXPECT_EQ(sockets(text, 2, "LISTEN"), 1);
  EXPECT_EQ(sockets(text, 1, "LISTEN"), -1);  // no pod-1 listener: no series
  EXPECT_EQ(sockets(text, 3, "ESTABLISHED"), -1);
  // Without a socket dump, from sockstat: 4 on pod 1, 4 and the listener on pod 2, none on pod 3.
  EXPECT_EQ(in_use(text, 1), 4) << text;
  EXPECT_EQ(in_use(text, 2), 5);
  EXPECT_EQ(in_use(text, 3), 0);
  EXPECT_EQ(time_wait(text, 1), 0);

  // The client goes away: its sockets wait in FIN_WAIT2 for the server's FIN, the server's in
  // CLOSE_WAIT. ESTABLISHED falls back to 0 rather than keeping its last value.
  helpers_[1]->terminate();
  ASSERT_TRUE(wait_for_ss(1, "FIN-WAIT-2", 4)) << run("ip netns exec " + ns(1) + " ss -tan").output;
  ASSERT_TRUE(wait_for_ss(2, "CLOSE-WAIT", 4)) << run("ip netns exec " + ns(2) + " ss -tan").output;
  text = settled();
  EXPECT_EQ(sockets(text, 1, "FIN_WAIT2"), 4) << text;
  EXPECT_EQ(sockets(text, 2, "CLOSE_WAIT"), 4);
  EXPECT_EQ(sockets(text, 1, "ESTABLISHED"), 0);
  EXPECT_EQ(sockets(text, 2, "ESTABLISHED"), 0);
  // Without a dump: the server's unclosed sockets are still in use (a CLOSE_WAIT leak shows),
  // the client's closed ones in FIN_WAIT2 are kept as the kernel keeps TIME_WAIT sockets (a
  // timewait socket in its FIN_WAIT2 substate), so sockstat counts them with those.
  EXPECT_EQ(in_use(text, 2), 5);
  EXPECT_EQ(in_use(text, 1), 0);
  EXPECT_EQ(time_wait(text, 1), 4);

  // The server goes too: its FINs move the client's sockets to TIME_WAIT, and its listener closes.
  helpers_[0]->terminate();
  ASSERT_TRUE(wait_for_ss(1, "TIME-WAIT", 4)) << run("ip netns exec " + ns(1) + " ss -tan").output;
  ASSERT_TRUE(wait_for_ss(2, "LISTEN", 0));
  text = settled();
  EXPECT_EQ(sockets(text, 1, "TIME_WAIT"), 4) << text;
  EXPECT_EQ(sockets(text, 1, "FIN_WAIT2"), 0);
  EXPECT_EQ(sockets(text, 2, "LISTEN"), 0);
  EXPECT_EQ(sockets(text, 2, "CLOSE_WAIT"), ss_count(2, "CLOSE-WAIT"));
  EXPECT_EQ(time_wait(text, 1), 4);
  EXPECT_EQ(in_use(text, 1), 0);
  EXPECT_EQ(in_use(text, 2), ss_not_time_wait(2));
}

// A pod made again under its name (a StatefulSet's) within series_grace keeps its series, but
// reads a new namespace, whose counters start from 0. Its counters go on from their value with
// what the new namespace counts, whether that is below the old value or above it (where a
// plain counter would lose the old value and no reset would show).
TEST_F(NetstatTelemetry, APodInANewNamespaceGoesOnFromItsCounters) {
  auto refuse = [&](int n) {
    auto r = run("ip netns exec " + ns(2) + " bash -c 'for i in $(seq 1 " + std::to_string(n) + "); do (exec 3<>/dev/tcp/" +
                 lab_->ip(1) + "/81) 2>/dev/null; done; true'");
    ASSERT_EQ(r.status, 0) << r.output;
  };
  const int kBefore = 3, kAfter = 8;
  refuse(kBefore);
  std::string text = settled();
  ASSERT_EQ(mib(text, 2, "Tcp", "AttemptFails"), kBefore) << text;
  // Pod 2's namespace is deleted and made again (same name, same address, a new veth).
  lab_->cmd("rm 2");
  lab_->cmd("up 3");
  ASSERT_TRUE(wait_until([&] { return attached_pods(port_).count("pod-2") > 0; }, 10s)) << agent_->log();
  refuse(kAfter);
  ASSERT_EQ(nstat(2, "TcpAttemptFails"), static_cast<uint64_t>(kAfter));
  text = settled();
  EXPECT_EQ(mib(text, 2, "Tcp", "AttemptFails"), kBefore + kAfter) << text;
  EXPECT_EQ(mib(text, 2, "Tcp", "ActiveOpens"), kBefore + kAfter);
}

// The same pod back under a new pod id (taken out of the pods file and put back, as a pod
// deleted and made again is) finds its socket gauges where it left them: a state it has no
// socket in now shows 0, not the count its earlier life last had.
TEST_F(NetstatTelemetry, SocketGaugesOfAPodBackFallToWhatItHasNow) {
  ASSERT_NO_FATAL_FAILURE(hold_four_connections());
  std::string text = settled();
  ASSERT_EQ(sockets(text, 2, "ESTABLISHED"), 4) << text;
  // Pod 2 leaves the pods file (its series stay for series_grace), its connections end (the
  // client goes: pod 2's sockets wait in CLOSE_WAIT), and it comes back.
  const std::string pods = lab_->pods_file();
  const std::string all = run("cat " + pods).output;
  const size_t at = all.find("- namespace: lab\n  name: pod-2\n");
  ASSERT_NE(at, std::string::npos) << all;
  const size_t end = all.find("- namespace:", at + 1);
  write_temp_file(dir_->path(), "pods-without-2.yaml", all.substr(0, at) + (end == std::string::npos ? "" : all.substr(end)));
  ASSERT_EQ(run("cp " + dir_->path() + "/pods-without-2.yaml " + pods).status, 0);
  ASSERT_TRUE(wait_until([&] { return attached_pods(port_).count("pod-2") == 0; }, 10s)) << agent_->log();
  helpers_[1]->terminate();
  ASSERT_TRUE(wait_for_ss(2, "CLOSE-WAIT", 4)) << run("ip netns exec " + ns(2) + " ss -tan").output;
  write_temp_file(dir_->path(), "pods-all.yaml", all);
  ASSERT_EQ(run("cp " + dir_->path() + "/pods-all.yaml " + pods).status, 0);
  ASSERT_TRUE(wait_until([&] { return attached_pods(port_).count("pod-2") > 0; }, 10s)) << agent_->log();
  text = settled();
  EXPECT_EQ(sockets(text, 2, "ESTABLISHED"), 0) << text;
  EXPECT_EQ(sockets(text, 2, "CLOSE_WAIT"), 4);
  EXPECT_EQ(sockets(text, 2, "LISTEN"), 1);
}

TEST_F(NetstatTelemetry, InterfaceDropsAreTheKernelsOwnPerPod) {
  // Pod 1's host-side veth goes down; pod 1 then sends 9 datagrams to pod 2 (its neighbour entry
  // fixed, so no ARP is tried): its eth0 drops each one on transmit (the peer is down), and
  // Vigil's tx_dropped is the kernel's.
  const std::string ip2 = lab_->ip(2);
  const std::string mac2 = run("ip netns exec " + ns(2) + " cat /sys/class/net/eth0/address").output;
  ASSERT_EQ(run("ip netns exec " + ns(1) + " ip neigh replace " + ip2 + " lladdr " + mac2.substr(0, 17) +
                " dev eth0 nud permanent").status, 0);
  ASSERT_EQ(run("ip link set " + lab_->veth(1) + " down").status, 0);
  const int kDatagrams = 9;
  lab_->cmd("udp 1 2 " + std::to_string(kDatagrams));
  // The pod's own IPv6 chatter (MLD, neighbour discovery) may be dropped too, at any moment: the
  // kernel's figure is read just before and just after Vigil's read, which must lie between.
  const uint64_t before = read_u64_in(1, "/sys/class/net/eth0/statistics/tx_dropped");
  const std::string text = settled();
  const uint64_t after = read_u64_in(1, "/sys/class/net/eth0/statistics/tx_dropped");
  run("ip link set " + lab_->veth(1) + " up");
  auto vigil = metric_value(text, "vigil_interface_stats_total",
                            {{"pod", "pod-1"}, {"interface", "eth0"}, {"statistic", "tx_dropped"}});
  ASSERT_TRUE(vigil.has_value()) << text;
  EXPECT_GE(*vigil, static_cast<double>(before));
  EXPECT_LE(*vigil, static_cast<double>(after));
  EXPECT_GE(before, static_cast<uint64_t>(kDatagrams));
  // Pod 2 saw none of it: no drop series for its interface.
  EXPECT_FALSE(metric_value(text, "vigil_interface_stats_total", {{"pod", "pod-2"}, {"statistic", "tx_dropped"}}));
  EXPECT_FALSE(metric_value(text, "vigil_interface_stats_total", {{"pod", "pod-1"}, {"interface", "lo"}}));
}

// The node's own interfaces' traffic, host traffic included, as the kernel counts it; the pods'
// veths are left out (each pod's traffic is its forward counters), and an interface that goes
// takes its series along.
TEST_F(NetstatTelemetry, NodeInterfacesTrafficAsTheKernelCountsIt) {
  const std::string bridge = lab_->prefix() + "-br0";
  auto sys = [&](const std::string& stat) {
    auto r = run("cat /sys/class/net/" + bridge + "/statistics/" + stat);
    return r.status == 0 ? std::stod(r.output) : -1.0;
  };
  auto vigil = [&](const std::string& text, const std::string& metric, const std::string& dev, const std::string& dir) {
    return metric_value(text, metric, {{"interface", dev}, {"direction", dir}}).value_or(-1);
  };
  // The host gets an address on the lab's bridge, so that what it sends to pod 2 leaves through
  // the bridge (never the default route: checked before anything is sent).
  const std::string pod2 = lab_->ip(2);
  const std::string host_ip = pod2.substr(0, pod2.rfind('.')) + ".254";
  ASSERT_EQ(run("ip addr add " + host_ip + "/24 dev " + bridge).status, 0);
  auto route = run("ip -o route get " + pod2);
  ASSERT_NE(route.output.find("dev " + bridge + " "), std::string::npos) << route.output;
  // 20 datagrams of 200 bytes from the host to pod 2 go out through the bridge (the pod answers
  // with port unreachable, which comes in through it).
  settled();
  const double tx_before = sys("tx_packets"), txb_before = sys("tx_bytes"), rx_before = sys("rx_packets");
  auto r = run("bash -c 'for i in $(seq 20); do printf %0200d 0 > /dev/udp/" + pod2 + "/9000; done'");
  ASSERT_EQ(r.status, 0) << r.output;
  std::string text = settled();
  const double tx_after = sys("tx_packets"), txb_after = sys("tx_bytes"), rx_after = sys("rx_packets");
  const double tx = vigil(text, "vigil_node_interface_packets_total", bridge, "egress");
  const double txb = vigil(text, "vigil_node_interface_bytes_total", bridge, "egress");
  const double rx = vigil(text, "vigil_node_interface_packets_total", bridge, "ingress");
  // Read between the kernel's two readings; the bridge's other traffic (neighbour discovery)
  // may move it too.
  EXPECT_GE(tx, tx_before + 20) << text;
  EXPECT_LE(tx, tx_after);
  EXPECT_GE(txb, txb_before + 20 * 200) << text;
  EXPECT_LE(txb, txb_after);
  EXPECT_GE(rx, rx_before + 1) << text;  // at least one port unreachable (ICMP is rate limited)
  EXPECT_LE(rx, rx_after);
  // Loopback and the pods' host-side veths have no series.
  EXPECT_EQ(vigil(text, "vigil_node_interface_packets_total", "lo", "egress"), -1);
  EXPECT_EQ(vigil(text, "vigil_node_interface_packets_total", lab_->veth(2), "egress"), -1) << text;
  // An interface that goes takes its series along: a bridge with no port, no address and no
  // IPv6 (so no traffic at all) appears, then is deleted.
  const std::string spare = lab_->prefix() + "-sp";
  struct Deleted {  // also when an assertion below fails
    std::string name;
    ~Deleted() { run("ip link del " + name + " 2>/dev/null"); }
  } deleted{spare};
  ASSERT_EQ(run("ip link add " + spare + " type bridge && sysctl -qw net.ipv6.conf." + spare +
                ".disable_ipv6=1 && ip link set " + spare + " up").status, 0);
  text = settled();
  const bool appeared = vigil(text, "vigil_node_interface_packets_total", spare, "ingress") == 0;
  run("ip link del " + spare);
  EXPECT_TRUE(appeared) << text;
  text = settled();
  EXPECT_EQ(vigil(text, "vigil_node_interface_packets_total", spare, "ingress"), -1) << text;
  EXPECT_GE(vigil(text, "vigil_node_interface_packets_total", bridge, "egress"), tx);
}

// Conntrack tables, per namespace: pod 2's netfilter tracks connections (a rule on new ones, as a
// service mesh's redirect would); pods 1 and 3 track nothing and have no conntrack series. What
// pod 2's table holds, and what it found invalid, are what the test made; the node's table and
// limit are the kernel's figures around Vigil's read.
// What the shipped rules pod-listen-overflows and pod-udp-receive-drops watch: a pod's server
// that does not keep up. Pod 2 listens with a backlog of 1 and accepts nothing, and has a UDP
// socket with the smallest receive buffer that it never reads; pod 1 opens 12 connections and
// sends 200 datagrams of 1,000 bytes. Pod 2's ListenOverflows (which grows as the clients and
// the server retransmit) is read between two nstat readings; its RcvbufErrors, which nothing
// moves afterwards, exactly; nobody else has either.
TEST_F(NetstatTelemetry, SocketOverflowsInAPodAsTheKernelCountsThem) {
  helpers_.push_back(std::make_unique<Process>(
      std::vector<std::string>{"/usr/sbin/ip", "netns", "exec", ns(2), "python3", "-c",
                               "import socket, time\n"
                               "t = socket.socket()\nt.bind(('0.0.0.0', 9100))\nt.listen(1)\n"
                               "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                               "u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)\nu.bind(('0.0.0.0', 9101))\n"
                               "time.sleep(60)\n"},
      dir_->path() + "/slow-server.log"));
  ASSERT_TRUE(wait_for_ss(2, "LISTEN", 1)) << run("ip netns exec " + ns(2) + " ss -tan").output << helpers_[0]->log();
  for (int k = 0; k < 50 && run("ip netns exec " + ns(2) + " ss -Hlun 'sport = :9101' | grep -q 9101").status != 0; ++k)
    std::this_thread::sleep_for(50ms);
  const std::string ip2 = lab_->ip(2);
  auto r = run("ip netns exec " + ns(1) + " python3 -c \"import socket, errno\n"
               "keep = []\n"
               "for i in range(12):\n"
               "  c = socket.socket(); c.setblocking(False); c.connect_ex(('" + ip2 + "', 9100)); keep.append(c)\n"
               "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
               "for i in range(200): u.sendto(b'x' * 1000, ('" + ip2 + "', 9101))\n"
               "import time; time.sleep(0.5)\n\"");
  ASSERT_EQ(r.status, 0) << r.output;
  const uint64_t overflows_before = nstat(2, "TcpExtListenOverflows");
  ASSERT_GT(overflows_before, 0u) << "the accept queue did not overflow";
  const std::string text = settled();
  const uint64_t overflows_after = nstat(2, "TcpExtListenOverflows");
  const double overflows = mib(text, 2, "TcpExt", "ListenOverflows");
  EXPECT_GE(overflows, static_cast<double>(overflows_before)) << text;
  EXPECT_LE(overflows, static_cast<double>(overflows_after));
  const uint64_t rcvbuf = nstat(2, "UdpRcvbufErrors");
  EXPECT_GT(rcvbuf, 150u) << "most of 200 datagrams should find the buffer full";
  EXPECT_LE(rcvbuf, 200u);
  EXPECT_EQ(mib(text, 2, "Udp", "RcvbufErrors"), static_cast<double>(rcvbuf));
  for (int i : {1, 3}) {
    EXPECT_EQ(mib(text, i, "TcpExt", "ListenOverflows"), -1) << i;
    EXPECT_EQ(mib(text, i, "Udp", "RcvbufErrors"), -1) << i;
  }
  // The shipped rules saw it, for pod 2 only.
  std::multiset<std::string> fired;
  for (int i = 0; i < 50 && fired.size() < 2; ++i) {
    fired.clear();
    auto list = nlohmann::json::parse(http_get("127.0.0.1", port_, "/api/v1/anomalies"), nullptr, false);
    for (const auto& a : list) fired.insert(a.value("rule", "") + " " + a["scope"].value("pod", ""));
    if (fired.size() < 2) std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(fired, (std::multiset<std::string>{"pod-listen-overflows pod-2", "pod-udp-receive-drops pod-2"}));
  std::printf("pod 2: ListenOverflows %.0f (nstat %llu..%llu), RcvbufErrors %.0f of 200\n", overflows,
              static_cast<unsigned long long>(overflows_before), static_cast<unsigned long long>(overflows_after),
              mib(text, 2, "Udp", "RcvbufErrors"));
}

TEST_F(NetstatTelemetry, ConntrackTablesAsTheKernelCountsThem) {
  if (run("test -e /proc/net/stat/nf_conntrack").status != 0) GTEST_SKIP() << "this kernel has no conntrack";
  ASSERT_EQ(run("ip netns exec " + ns(2) + " nft 'add table inet vigil_ct; add chain inet vigil_ct in "
                "{ type filter hook input priority 0; }; add rule inet vigil_ct in ct state new counter'").status, 0);
  const char* kCount = "/proc/sys/net/netfilter/nf_conntrack_count";
  auto count_in = [&](int i) -> uint64_t {
    if (i) return read_u64_in(i, kCount);
    auto r = run(std::string("cat ") + kCount);
    return r.status == 0 ? std::stoull(r.output) : ~0ull;
  };
  ASSERT_EQ(count_in(2), 0u);
  // Pod 2 forgets an unanswered UDP flow after 5 s (30 by default), so that its table empties
  // within the test.
  ASSERT_EQ(run("ip netns exec " + ns(2) + " sysctl -qw net.netfilter.nf_conntrack_udp_timeout=5").status, 0);
  // 40 datagrams from pod 1 to pod 2, each to a port of its own: 40 new connections in pod 2's
  // table (its port unreachable answers are related, not new).
  const int kFlows = 40;
  auto r = run("ip netns exec " + ns(1) + " bash -c 'for i in $(seq " + std::to_string(kFlows) + "); do printf x > /dev/udp/" +
               lab_->ip(2) + "/$((9000 + i)); done'");
  ASSERT_EQ(r.status, 0) << r.output;
  // 7 TCP segments with every flag set, to pod 2's own address and MAC: conntrack takes each
  // for invalid (and tracks none).
  const int kInvalid = 7;
  const std::string mac2 = run("ip netns exec " + ns(2) + " cat /sys/class/net/eth0/address").output.substr(0, 17);
  const std::string ip6_1 = lab_->cmd("ip6 1"), ip6_2 = lab_->cmd("ip6 2");
  r = run("ip netns exec " + ns(1) + " " + binary_path("tests/tools/vigil-packet-craft") + " send eth0 " + mac2 + " " +
          lab_->ip(1) + " " + lab_->ip(2) + " " + ip6_1.substr(0, ip6_1.find('\n')) + " " +
          ip6_2.substr(0, ip6_2.find('\n')) + " tcp-flags-all=" + std::to_string(kInvalid));
  ASSERT_EQ(r.status, 0) << r.output;

  const uint64_t pod_before = count_in(2), node_before = count_in(0);
  const std::string text = settled();
  const uint64_t pod_after = count_in(2), node_after = count_in(0);
  auto entries = metric_value(text, "vigil_conntrack_entries", {{"pod", "pod-2"}});
  ASSERT_TRUE(entries.has_value()) << text;
  EXPECT_EQ(pod_before, static_cast<uint64_t>(kFlows));  // the 40 UDP flows and nothing else
  EXPECT_GE(*entries, static_cast<double>(pod_before));
  EXPECT_LE(*entries, static_cast<double>(pod_after));
  EXPECT_EQ(metric_value(text, "vigil_conntrack_stats_total", {{"pod", "pod-2"}, {"statistic", "invalid"}}).value_or(-1),
            kInvalid) << text;
  // Nothing was dropped for a full table.
  EXPECT_FALSE(metric_value(text, "vigil_conntrack_stats_total", {{"pod", "pod-2"}, {"statistic", "drop"}}).has_value());
  // Pods whose netfilter tracks nothing have no conntrack series at all.
  for (const char* other : {"pod-1", "pod-3"}) {
    EXPECT_FALSE(metric_value(text, "vigil_conntrack_entries", {{"pod", other}}).has_value()) << text;
    EXPECT_FALSE(metric_value(text, "vigil_conntrack_stats_total", {{"pod", other}}).has_value()) << text;
  }
  // The node's own table (the host's traffic may move it while the test runs) and the limit.
  auto node = metric_value(text, "vigil_node_conntrack_entries", {});
  ASSERT_TRUE(node.has_value()) << text;
  EXPECT_GE(*node, static_cast<double>(std::min(node_before, node_after)));
  EXPECT_LE(*node, static_cast<double>(std::max(node_before, node_after)));
  EXPECT_EQ(metric_value(text, "vigil_node_conntrack_entries_limit", {}).value_or(-1),
            static_cast<double>(std::stoull(run("cat /proc/sys/net/netfilter/nf_conntrack_max").output)));
  // Pod 2's table empties as its flows expire: the gauge follows down to 0 (a series, once
  // shown, stays).
  bool emptied = false;
  for (int i = 0; i < 60 && !emptied; ++i) {  // <= about 60 s
    // Expired entries count until the kernel's collector (up to a minute apart) or a listing,
    // as `conntrack -L` makes, reaps them: list them.
    run("ip netns exec " + ns(2) + " cat /proc/net/nf_conntrack > /dev/null");
    emptied = metric_value(settled(), "vigil_conntrack_entries", {{"pod", "pod-2"}}).value_or(-1) == 0;
  }
  EXPECT_TRUE(emptied) << "pod 2's conntrack gauge did not fall to 0; the kernel counts " << count_in(2);
}

// The node's conntrack entries by pod, counted while the table holds at least 0.2 % of
// nf_conntrack_max (524 of 262,144; the fixture's setting): the node's netfilter tracks
// connections while the test runs (a rule on new ones, as kube-proxy's would; the lab's bridge
// passes its pods' traffic to it, as a bridge CNI's node does), and pod 1 opens 600 connections to
// pod 2's server (580 over IPv4, 20 over IPv6) and resets each: every entry is both pods'. Reset connections end in CLOSE,
// which the kernel forgets after 10 s: the count, and its series, go when the table empties.
TEST_F(NetstatTelemetry, NodeConntrackEntriesByPodWhileTheTableFills) {
  if (run("test -e /proc/net/stat/nf_conntrack").status != 0) GTEST_SKIP() << "this kernel has no conntrack";
  if (run("cat /proc/sys/net/bridge/bridge-nf-call-iptables").output.rfind("1", 0) != 0)
    GTEST_SKIP() << "bridged traffic does not reach the node's netfilter (br_netfilter, bridge-nf-call-iptables=1)";
  const std::string table = lab_->prefix() + "_ct";
  struct Table {  // deleted also when an assertion fails
    std::string name;
    ~Table() { run("nft delete table inet " + name + " 2>/dev/null"); }
  } node_table{table};
  // The node's own traffic (this test's scrapes of the agent, above all) is left untracked, so
  // that the table holds the lab's forwarded connections and little else.
  ASSERT_EQ(run("nft 'add table inet " + table + "; add chain inet " + table + " watch { type filter hook forward "
                "priority 0; }; add rule inet " + table + " watch ct state new counter; add chain inet " + table +
                " own { type filter hook output priority raw; }; add rule inet " + table + " own notrack'").status, 0);
  const std::string before = settled();
  EXPECT_EQ(before.find("vigil_node_conntrack_pod_entries{"), std::string::npos) << before;

  const int kConnections = 600;
  // Pod 2 listens with room for every connection in its accept queue and accepts none (a server
  // that accepts and answers would slow the opening of 600 connections down to seconds, while
  // the first ones expire).
  helpers_.push_back(std::make_unique<Process>(
      std::vector<std::string>{"/usr/sbin/ip", "netns", "exec", ns(2), "python3", "-c",
                               "import socket, time\ns = socket.socket(socket.AF_INET6)\ns.bind(('::', 8081))\ns.listen(1024)\n"
                               "time.sleep(120)\n"},
      dir_->path() + "/listener.log"));
  ASSERT_TRUE(wait_for_ss(2, "LISTEN", 1)) << run("ip netns exec " + ns(2) + " ss -tan").output << helpers_[0]->log();
  // Pod 1 opens them all and holds them open until the test has seen them counted, then aborts
  // each (a reset once established): the kernel forgets them 10 s later. Held open, they are
  // still there if the first count ran while the last ones were opening (it runs once the table
  // holds the share, then at most every 30 s): the next count sees them all.
  const std::string ip6_2 = lab_->cmd("ip6 2");
  const std::string flag = dir_->path() + "/reset-now";
  helpers_.push_back(std::make_unique<Process>(
      std::vector<std::string>{"/usr/sbin/ip", "netns", "exec", ns(1), "python3", "-c",
                               "import os, socket, struct, sys, time\nsocks = []\nfor i in range(" +
                                   std::to_string(kConnections) + "):\n  socks.append(socket.create_connection(('" +
                                   lab_->ip(2) + "' if i >= 20 else '" + ip6_2.substr(0, ip6_2.find('\n')) +
                                   "', 8081), timeout=5))\nprint('open', flush=True)\nfor _ in range(900):\n"
                                   "  if os.path.exists('" + flag + "'): break\n  time.sleep(0.1)\nfor s in socks:\n"
                                   "  s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n"
                                   "  s.close()\nprint('reset', flush=True)\n"},
      dir_->path() + "/client.log"));
  Process& client = *helpers_.back();
  const auto t0 = std::chrono::steady_clock::now();
  const double opening_started = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  for (int i = 0; i < 300 && client.log().find("open") == std::string::npos; ++i) std::this_thread::sleep_for(100ms);
  ASSERT_NE(client.log().find("open"), std::string::npos) << client.log();
  const double opened_in = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto by_pod = [&](const std::string& t, const char* pod) {
    return metric_value(t, "vigil_node_conntrack_pod_entries", {{"pod", pod}}).value_or(-1);
  };
  std::string text = settled();
  for (int i = 0; i < 40 && by_pod(text, "pod-1") != kConnections; ++i) {  // <= the next count, 30 s on
    std::this_thread::sleep_for(1s);
    text = settled();
  }
  EXPECT_EQ(by_pod(text, "pod-1"), kConnections) << "opened in " << opened_in << " s\n" << text;
  EXPECT_EQ(by_pod(text, "pod-2"), kConnections);
  // When that count was taken: after the connections opened, at one of the family's reads.
  const double counted_at = metric_value(text, "vigil_series_read_timestamp_seconds",
                                         {{"metric", "vigil_node_conntrack_pod_entries"}}).value_or(-1);
  const double read_at = metric_value(text, "vigil_series_read_timestamp_seconds",
                                      {{"metric", "vigil_node_conntrack_stats_total"}}).value_or(-1);
  EXPECT_GE(counted_at, opening_started - 1) << text;
  EXPECT_LE(counted_at, read_at);
  EXPECT_EQ(by_pod(text, "pod-3"), 0);  // every pod has a count while they are counted
  EXPECT_GE(metric_value(text, "vigil_node_conntrack_entries", {}).value_or(-1), kConnections);
  EXPECT_EQ(metric_value(text, "vigil_netstat_read_errors_total", {}).value_or(-1), 0) << agent_->log();
  // Forgotten 10 s after their reset: the table falls below the share and the series go (not
  // left at their last values).
  std::ofstream(flag) << "now\n";
  for (int i = 0; i < 100 && client.log().find("reset") == std::string::npos; ++i) std::this_thread::sleep_for(100ms);
  ASSERT_NE(client.log().find("reset"), std::string::npos) << client.log();
  bool gone = false;
  for (int i = 0; i < 60 && !gone; ++i) {  // <= about 60 s
    run("cat /proc/net/nf_conntrack > /dev/null");  // reaps the expired entries (see above)
    text = settled();
    gone = text.find("vigil_node_conntrack_pod_entries{") == std::string::npos;
  }
  EXPECT_TRUE(gone) << "still counted by pod with " << metric_value(text, "vigil_node_conntrack_entries", {}).value_or(-1)
                    << " entries in the node's table";
}

// The node's neighbour tables (one per family for every namespace): a neighbour that never
// answers, looked for from pod 1, is a failed resolution; the tables' sizes and counts are the
// kernel's around Vigil's read (anything on the node moves them), their limits its gc_thresh3.
TEST_F(NetstatTelemetry, NeighbourTablesAsTheKernelCountsThem) {
  // A column of /proc/net/stat/arp_cache, summed over the CPUs' lines (entries: the first line's).
  auto arp = [](const std::string& column) -> uint64_t {
    std::ifstream in("/proc/net/stat/arp_cache");
    std::string header;
    std::getline(in, header);
    std::istringstream names(header);
    size_t index = 0;
    for (std::string name; names >> name && name != column;) ++index;
    uint64_t sum = 0;
    for (std::string line; std::getline(in, line);) {
      std::istringstream values(line);
      std::string v;
      for (size_t k = 0; k <= index; ++k) values >> v;
      sum += std::stoull(v, nullptr, 16);
      if (column == "entries") break;
    }
    return sum;
  };
  // Pod 1 asks once for an address of the lab's subnet that nobody has, and gives up after one
  // probe of 100 ms: one failed resolution (the request stays on the lab's bridge).
  const std::string ip1 = lab_->ip(1);
  const std::string nobody = ip1.substr(0, ip1.rfind('.')) + ".200";
  ASSERT_EQ(run("ip netns exec " + ns(1) + " sysctl -qw net.ipv4.neigh.eth0.mcast_solicit=1 "
                "net.ipv4.neigh.eth0.retrans_time_ms=100").status, 0);
  settled();
  const uint64_t failed_before = arp("res_failed");
  run("ip netns exec " + ns(1) + " bash -c 'printf x > /dev/udp/" + nobody + "/9000'");
  bool failed = false;
  for (int i = 0; i < 50 && !failed; ++i) {  // <= 5 s
    failed = run("ip netns exec " + ns(1) + " ip neigh show " + nobody).output.find("FAILED") != std::string::npos;
    if (!failed) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(failed) << run("ip netns exec " + ns(1) + " ip neigh show").output;
  const uint64_t failed_mid = arp("res_failed"), entries_before = arp("entries");
  const std::string text = settled();
  const uint64_t failed_after = arp("res_failed"), entries_after = arp("entries");
  EXPECT_GE(failed_mid, failed_before + 1);
  auto v4 = [&](const std::string& metric) { return metric_value(text, metric, {{"family", "ipv4"}}).value_or(-1); };
  const double res_failed =
      metric_value(text, "vigil_node_neighbor_stats_total", {{"family", "ipv4"}, {"statistic", "res_failed"}}).value_or(-1);
  EXPECT_GE(res_failed, static_cast<double>(failed_mid)) << text;
  EXPECT_LE(res_failed, static_cast<double>(failed_after));
  EXPECT_GE(v4("vigil_node_neighbor_entries"), static_cast<double>(std::min(entries_before, entries_after)));
  EXPECT_LE(v4("vigil_node_neighbor_entries"), static_cast<double>(std::max(entries_before, entries_after)));
  EXPECT_GE(v4("vigil_node_neighbor_entries"), 1);  // pod 1's failed entry at least
  EXPECT_EQ(v4("vigil_node_neighbor_entries_limit"),
            static_cast<double>(std::stoull(run("cat /proc/sys/net/ipv4/neigh/default/gc_thresh3").output)));
  EXPECT_EQ(metric_value(text, "vigil_node_neighbor_entries_limit", {{"family", "ipv6"}}).value_or(-1),
            static_cast<double>(std::stoull(run("cat /proc/sys/net/ipv6/neigh/default/gc_thresh3").output)));
  // No pod has series of its own: the tables are the kernel's.
  EXPECT_EQ(text.find("vigil_neighbor"), std::string::npos);
  EXPECT_FALSE(metric_value(text, "vigil_node_neighbor_entries", {{"pod", "pod-1"}}).has_value());
}

TEST_F(NetstatTelemetry, ReadingAPodNeverKeepsItsNamespaceAlive) {
  // Two reads of pod 3 at least, then its namespace is deleted as a CNI would: the kernel must
  // be able to free it, and with it the veth pair (a descriptor kept open in the namespace would
  // hold it, and the host-side veth would stay).
  settled();
  const std::string veth = lab_->veth(3);
  ASSERT_EQ(run("ip link show dev " + veth).status, 0);
  ASSERT_EQ(run("ip netns del " + ns(3)).status, 0);
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = run("ip link show dev " + veth + " 2>/dev/null").status != 0;
    if (!gone) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(gone) << veth << " still exists 10 s after its namespace was deleted";
  // The agent notices the pod's interface is gone and stops reading it; the others go on.
  const std::string text = settled();
  EXPECT_TRUE(metric_value(text, "vigil_udp_sockets", {{"pod", "pod-1"}}).has_value()) << text;
  // A pod deleted between two looks is not a failed read.
  EXPECT_EQ(metric_value(text, "vigil_netstat_read_errors_total", {}).value_or(-1), 0) << agent_->log();
}

// A pod found through a process in its namespace (/proc/PID/ns/net, as with the Kubernetes
// source) whose process exits while the namespace lives on, held by another (a container
// restarted beside the pod's pause process): its counters keep coming from the same namespace,
// netstat's and (with no packet-level programs and ingress_hook: pod) what it receives, read from
// its own end's statistics there.
TEST(NetstatPodPath, APodWhoseProcessExitedIsReadWhereItsNamespaceIsNow) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  ASSERT_TRUE(quiet_pod_pair(lab));  // every packet pod 1 receives is the test's
  ScopedTempDir dir;
  const std::string ns1 = lab.prefix() + "-pod-1";
  auto holder = std::make_unique<Process>(
      std::vector<std::string>{"/usr/sbin/ip", "netns", "exec", ns1, "/bin/sleep", "60"}, dir.path() + "/holder.log");
  // Wait (bounded) until the holder runs inside the namespace.
  std::string path = "/proc/" + std::to_string(holder->pid()) + "/ns/net";
  bool inside = false;
  for (int i = 0; i < 100 && !inside; ++i) {
    inside = run("test \"$(stat -L -c %i " + path + ")\" = \"$(stat -L -c %i /run/netns/" + ns1 + ")\"").status == 0;
    if (!inside) std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(inside) << "the holder did not enter " << ns1;
  const std::string pods = write_temp_file(dir.path(), "pods.yaml",
                                           "- {namespace: lab, name: pod-1, netns: " + path + "}\n");
  const int port = free_port();
  const std::string config = write_temp_file(dir.path(), "vigil.yaml",
                                             "listen: 127.0.0.1:" + std::to_string(port) + "\ntick: 200ms\n"
                                             "state_dir: " + dir.path() + "/state\n"
                                             "pods: {source: file, file: " + pods + "}\nrules: []\nnotifiers: []\n"
                                             "metrics: {netstat: {interval: 200ms}, packet_level: {pods: selected}, "
                                             "ingress_hook: pod}\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir.path() + "/agent.log");
  ASSERT_TRUE(wait_for_attached(port, 1)) << agent.log();
  auto no_ports = [&](const std::string& text) {
    return metric_value(text, "vigil_netstat_total", {{"pod", "pod-1"}, {"group", "Udp"}, {"statistic", "NoPorts"}}).value_or(-1);
  };
  auto received = [&](const std::string& text) {
    return metric_value(text, "vigil_forward_packets_total", {{"pod", "pod-1"}, {"direction", "ingress"}}).value_or(-1);
  };
  const double received_before = received(metrics_after_ticks(port));
  ASSERT_GE(received_before, 0) << agent.log();
  lab.cmd("udp 2 1 5");
  std::string text = metrics_after_ticks(port, 3);
  EXPECT_EQ(no_ports(text), 5) << agent.log();
  EXPECT_EQ(received(text) - received_before, 5) << agent.log();
  // The process the pod was found through exits; the namespace stays (named by the lab).
  holder->terminate();
  holder.reset();
  lab.cmd("udp 2 1 7");
  text = metrics_after_ticks(port, 6);
  EXPECT_EQ(no_ports(text), 12) << agent.log();
  EXPECT_EQ(received(text) - received_before, 12) << agent.log();
  EXPECT_EQ(metric_value(text, "vigil_netstat_read_errors_total", {}).value_or(-1), 0) << agent.log();
  EXPECT_NE(agent.log().find("its network namespace is now reached through /run/netns/" + ns1), std::string::npos)
      << agent.log();
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
}

// A rule on pods' Udp:NoPorts (datagrams to a port nobody listens on): above 20/s.
void write_no_ports_rule(const std::string& dir, const std::string& pending) {
  write_temp_file(dir, "noports.lua",
                  "rule {\n"
                  "  name = 'udp-no-ports',\n"
                  "  metric = 'vigil_netstat_total',\n"
                  "  where = { group = 'Udp', statistic = 'NoPorts' },\n"
                  "  detect = threshold { above = 20 },\n"
                  "  pending = '" + pending + "',\n"
                  "  resolve_after = '30s',\n"
                  "}\n");
}

// An agent with the rules of `dir`, the pods of `pods_file`, a 200 ms tick and netstat read
// every `interval`.
std::unique_ptr<Process> start_rules_agent(const std::string& dir, int port, const std::string& pods_file,
                                           const std::string& interval) {
  const std::string config = write_temp_file(dir, "vigil.yaml",
                                             "listen: 127.0.0.1:" + std::to_string(port) + "\ntick: 200ms\n"
                                             "state_dir: " + dir + "/state\n"
                                             "pods: {source: file, file: " + pods_file + "}\n"
                                             "rules: [" + dir + "/*.lua]\nnotifiers: []\n"
                                             "metrics: {netstat: {interval: " + interval + "}}\n");
  return std::make_unique<Process>(std::vector<std::string>{binary_path("vigil"), "agent", "--config", config},
                                   dir + "/agent.log");
}

// 10 datagrams every 100 ms from pod 1 to a port of pod 2 where nobody listens, `rounds` times.
std::unique_ptr<Process> send_to_closed_port(const Lab& lab, const std::string& dir, int rounds) {
  return std::make_unique<Process>(
      std::vector<std::string>{"/usr/sbin/ip", "netns", "exec", lab.prefix() + "-pod-1", "/bin/bash", "-c",
                               "for i in $(seq " + std::to_string(rounds) +
                                   "); do for j in 1 2 3 4 5 6 7 8 9 10; do echo x > /dev/udp/" + lab.ip(2) +
                                   "/9000; done; sleep 0.1; done"},
      dir + "/sender.log");
}

// The agent's open anomalies of udp-no-ports.
std::vector<nlohmann::json> no_ports_anomalies(int port) {
  const auto listed = nlohmann::json::parse(http_get("127.0.0.1", port, "/api/v1/anomalies"), nullptr, false);
  std::vector<nlohmann::json> out;
  if (!listed.is_array()) {
    ADD_FAILURE() << "/api/v1/anomalies: " << listed.dump();
    return out;
  }
  for (const auto& a : listed)
    if (a.value("rule", "") == "udp-no-ports") out.push_back(a);
  return out;
}

// A rule on a netstat counter sees its rate between two reads, held until the next read: with
// reads every 2 s and ticks every 200 ms, a pod that meets ~100 datagrams a second on a closed
// port is at ~100/s on every tick. (Taken tick by tick, as before, the rate was 0 on nine ticks
// of ten and ~1,000/s on the tenth, so a rule with `pending` of 1 s never fired.)
TEST(NetstatRules, ARuleSeesTheRateBetweenReadsOnEveryTick) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  ScopedTempDir dir;
  write_no_ports_rule(dir.path(), "1s");
  const int port = free_port();
  auto agent = start_rules_agent(dir.path(), port, lab.pods_file(), "2s");
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent->log();
  auto sender = send_to_closed_port(lab, dir.path(), 80);  // ~8 s
  // Poll (bounded, 10 s) what fires; note the values it shows while the datagrams flow.
  std::vector<double> values;
  nlohmann::json firing;
  for (int i = 0; i < 50 && sender->running(); ++i) {
    std::this_thread::sleep_for(200ms);
    for (const auto& a : no_ports_anomalies(port)) {
      firing = a;
      values.push_back(a["metric"]["value"].get<double>());
    }
  }
  EXPECT_EQ(sender->terminate(), 0) << sender->log();
  ASSERT_FALSE(values.empty()) << "the rule never fired:\n" << agent->log();
  EXPECT_EQ(firing["metric"]["labels"]["pod"], "pod-2") << firing.dump(2);
  std::string shown;
  for (double v : values) shown += std::to_string(static_cast<int>(v)) + " ";
  std::printf("udp-no-ports values while firing: %s\n", shown.c_str());
  // At ~100/s, never the ~1,000/s of a whole interval's increase seen on one tick.
  for (double v : values) {
    EXPECT_GT(v, 20) << firing.dump(2);
    EXPECT_LT(v, 200) << firing.dump(2);
  }
  EXPECT_EQ(agent->terminate(), 0) << agent->log();
}

// A pod attached while its namespace already counts 400 datagrams to a closed port (the agent
// started before it, or a pods file that listed it late): its first read is what built up
// before, not a burst, so a rule with no pending stays quiet; traffic afterwards still fires.
TEST(NetstatRules, APodsCountsFromBeforeItWasWatchedAreNoBurst) {
  VIGIL_REQUIRE_ROOT();
  Lab lab(2);
  ScopedTempDir dir;
  write_no_ports_rule(dir.path(), "0s");
  auto pod_entry = [&](int i) {
    return "- {namespace: lab, name: pod-" + std::to_string(i) + ", netns: " + lab.prefix() + "-pod-" + std::to_string(i) + "}\n";
  };
  const std::string pods = write_temp_file(dir.path(), "pods.yaml", pod_entry(1));
  const int port = free_port();
  auto agent = start_rules_agent(dir.path(), port, pods, "1s");
  ASSERT_TRUE(wait_for_attached(port, 1)) << agent->log();
  lab.cmd("udp 1 2 400");  // pod 2 is not watched yet
  metrics_after_ticks(port, 6);
  write_temp_file(dir.path(), "pods.yaml", pod_entry(1) + pod_entry(2));
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent->log();
  // Three reads of pod 2 (each 1 s): its 400 are there, and nothing fires.
  std::string text = metrics_after_ticks(port, 16);
  EXPECT_EQ(metric_value(text, "vigil_netstat_total", {{"pod", "pod-2"}, {"statistic", "NoPorts"}}).value_or(-1), 400) << text;
  EXPECT_TRUE(no_ports_anomalies(port).empty()) << http_get("127.0.0.1", port, "/api/v1/anomalies");
  // Datagrams now, ~100 a second for ~4 s: that fires (bounded wait, 8 s).
  auto sender = send_to_closed_port(lab, dir.path(), 40);
  bool fired = false;
  for (int i = 0; i < 40 && !fired; ++i) {
    std::this_thread::sleep_for(200ms);
    fired = !no_ports_anomalies(port).empty();
  }
  sender->terminate();
  EXPECT_TRUE(fired) << agent->log();
  EXPECT_EQ(agent->terminate(), 0) << agent->log();
}
}  // namespace
}  // namespace vigil::test
