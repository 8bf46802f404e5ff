// /metrics with every family populated, in both naming modes: the real promtool accepts it,
// and Retina's names carry the same numbers as Vigil's.
#include <gtest/gtest.h>

#include <regex>
#include <sstream>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

std::string scrape_with_traffic(bool retina, std::string* dir_out, std::string* ip1_out) {
  Lab lab(2);
  *ip1_out = lab.ip(1);
  lab.cmd("serve-http 2");
  std::string dir = make_temp_dir();
  *dir_out = dir;
  int port = free_port();
  std::string config = write_temp_file(dir, "vigil.yaml",
                                       "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 200ms\n"
                                       "pods: {source: file, file: " + lab.pods_file() + "}\nrules: []\nnotifiers: []\n"
                                       "metrics: {retina_compat: " + (retina ? "true" : "false") + ", netstat: {interval: 200ms}}\n"
                                       "remote_context: {namespaces: [lab], max_peers: 8}\n"
                                       "apiserver: {addresses: [\"" + lab.ip(2) + ":8080\"]}\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  EXPECT_TRUE(wait_for_attached(port, 2)) << agent.log();  // the checks below then say what is missing
  // Traffic that fills every family: HTTP (flags, RTT, connections), a refused connect (the
  // netstat family's Tcp counters in both pods), drops.
  lab.cmd("http 1 2 50 1");
  run("ip netns exec " + lab.prefix() + "-pod-1 bash -c '(exec 3<>/dev/tcp/" + lab.ip(2) + "/81) 2>/dev/null; true'");
  lab.cmd("drop 2 100 ingress");
  lab.cmd("udp 1 2 20");
  lab.cmd("clear 2");
  lab.cmd("serve-dns 2");
  EXPECT_EQ(lab.cmd("dns 1 2 ok.lab.test"), "NOERROR\n");
  EXPECT_EQ(lab.cmd("dns 1 2 nope.lab.test AAAA"), "NXDOMAIN\n");
  std::string text = metrics_after_ticks(port);
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
  return text;
}

TEST(MetricsFormat, PromtoolAcceptsEveryFamilyInBothNamingModes) {
  VIGIL_REQUIRE_ROOT();
  for (bool retina : {false, true}) {
    std::string dir, ip1;
    std::string text = scrape_with_traffic(retina, &dir, &ip1);
    for (const char* family : {"vigil_forward_packets_total", "vigil_drop_packets_total", "vigil_tcp_flags_total",
                               "vigil_tcp_connect_failures_total", "vigil_tcp_rtt_seconds_bucket",
                               "vigil_bpf_map_entries", "vigil_tick_duration_seconds_bucket",
                               "vigil_remote_forward_packets_total", "vigil_dns_requests_total",
                               "vigil_dns_responses_total", "vigil_dns_latency_seconds_bucket",
                               "vigil_apiserver_handshake_seconds_bucket", "vigil_apiserver_first_response_seconds_bucket",
                               "vigil_apiserver_no_response_total"})
      EXPECT_NE(text.find(std::string("\n") + family + "{"), std::string::npos) << family << " missing";
    std::string file = write_temp_file(dir, "metrics.txt", text);
    auto check = run("promtool check metrics < " + file);
    if (!retina) {
      EXPECT_EQ(check.status, 0) << "vigil mode: " << check.output;
    } else {
      // Retina's own names end in _count on gauges (networkobservability_forward_count), and one
      // ends in _ms (node_apiserver_handshake_latency_ms), which promtool's linter flags (exit 3);
      // dashboards need the names exactly. The text must parse (exit 1 would be a parse error)
      // and those must be the only complaints.
      EXPECT_TRUE(check.status == 0 || check.status == 3) << check.output;
      std::istringstream lines(check.output);
      std::string line;
      const std::regex inherent(
          R"(^(networkobservability_\S+ non-histogram and non-summary metrics should not have "_count" suffix|)"
          R"(networkobservability_node_apiserver_handshake_latency_ms metric names should not contain abbreviated units)$)");
      while (std::getline(lines, line))
        if (!line.empty()) {
          EXPECT_TRUE(std::regex_match(line, inherent)) << "promtool: " << line;
        }
    }
    EXPECT_EQ(text.find("networkobservability_") != std::string::npos, retina);
    if (retina) {
      // The same numbers under Retina's names and local-context labels.
      double vigil_in = *metric_value(text, "vigil_forward_packets_total", {{"pod", "pod-2"}, {"direction", "ingress"}});
      auto adv = metric_value(text, "networkobservability_adv_forward_count",
                              {{"destination_podname", "pod-2"}, {"destination_namespace", "lab"}, {"direction", "ingress"}});
      ASSERT_TRUE(adv.has_value()) << text;
      EXPECT_EQ(*adv, vigil_in);
      // The local pod's address: what pod 1 sends carries its own as source_ip.
      EXPECT_EQ(metric_value(text, "networkobservability_adv_forward_count",
                             {{"source_podname", "pod-1"}, {"source_ip", ip1}, {"direction", "egress"}}),
                metric_value(text, "vigil_forward_packets_total", {{"pod", "pod-1"}, {"direction", "egress"}}));
      EXPECT_GT(metric_sum(text, "networkobservability_adv_forward_count", {{"source_ip", ip1}}), 0);
      EXPECT_EQ(metric_sum(text, "networkobservability_forward_count", {{"direction", "ingress"}}),
                metric_sum(text, "vigil_forward_packets_total", {{"direction", "ingress"}}));
      EXPECT_EQ(metric_sum(text, "networkobservability_drop_count", {{"reason", "IPTABLE_RULE_DROP"}}),
                metric_sum(text, "vigil_drop_packets_total", {{"reason", "NETFILTER_DROP"}}));
      EXPECT_GT(metric_sum(text, "networkobservability_drop_count", {{"reason", "IPTABLE_RULE_DROP"}}), 0);
      EXPECT_TRUE(metric_value(text, "networkobservability_adv_tcpflags_count", {{"flag", "SYN"}, {"source_podname", "pod-1"}}));
      EXPECT_NE(text.find("# TYPE networkobservability_forward_count gauge"), std::string::npos);
      EXPECT_EQ(metric_sum(text, "networkobservability_dns_request_count", {}), metric_sum(text, "vigil_dns_requests_total", {}));
      EXPECT_GT(metric_sum(text, "networkobservability_dns_request_count", {}), 0);
      // API server histograms in Retina's unit, milliseconds: same count, sum scaled.
      EXPECT_EQ(metric_value(text, "networkobservability_adv_node_apiserver_latency_count", {}),
                metric_value(text, "vigil_apiserver_first_response_seconds_count", {}));
      EXPECT_GT(*metric_value(text, "networkobservability_adv_node_apiserver_tcp_handshake_latency_count", {}), 0);
      EXPECT_EQ(metric_value(text, "networkobservability_node_apiserver_handshake_latency_ms_count", {}),
                metric_value(text, "vigil_apiserver_handshake_seconds_count", {}));
      EXPECT_EQ(metric_value(text, "networkobservability_adv_node_apiserver_no_response", {{"no_response", "no_response"}}),
                metric_sum(text, "vigil_apiserver_no_response_total", {}));
      // Retina's node-level flag gauge keeps the direction; a pod's retransmits are its egress.
      EXPECT_EQ(metric_sum(text, "networkobservability_tcp_flag_gauges", {{"direction", "egress"}, {"flag", "SYN"}}),
                metric_sum(text, "vigil_tcp_flags_total", {{"direction", "egress"}, {"flag", "SYN"}}));
      EXPECT_GT(metric_sum(text, "networkobservability_tcp_flag_gauges", {{"direction", "egress"}, {"flag", "SYN"}}), 0);
      EXPECT_EQ(metric_sum(text, "networkobservability_adv_tcpretrans_count", {{"direction", "egress"}}),
                metric_sum(text, "vigil_tcp_retransmits_total", {}));
      EXPECT_NEAR(*metric_value(text, "networkobservability_adv_node_apiserver_tcp_handshake_latency_sum", {}),
                  *metric_value(text, "vigil_apiserver_handshake_seconds_sum", {}) * 1000, 1e-6);
      // Retina's linuxutil view of the node's own namespace (the agent's listener is one LISTEN).
      EXPECT_GE(metric_sum(text, "networkobservability_tcp_state", {{"state", "LISTEN"}}), 1);
      EXPECT_EQ(metric_sum(text, "networkobservability_tcp_state", {{"state", "LISTEN"}}),
                metric_sum(text, "vigil_node_tcp_sockets", {{"state", "LISTEN"}}));
      EXPECT_EQ(metric_value(text, "networkobservability_udp_connection_stats", {{"statistic_name", "ACTIVE"}}),
                metric_value(text, "vigil_node_udp_sockets", {}));
      EXPECT_EQ(metric_sum(text, "networkobservability_tcp_connection_stats", {}),
                metric_sum(text, "vigil_node_netstat_total", {{"group", "TcpExt"}}) +
                    metric_sum(text, "vigil_node_netstat_total", {{"group", "MPTcpExt"}}));
      EXPECT_EQ(metric_sum(text, "networkobservability_interface_stats", {}),
                metric_sum(text, "vigil_node_interface_stats_total", {}));
      EXPECT_EQ(metric_sum(text, "networkobservability_ip_connection_stats", {}),
                metric_sum(text, "vigil_node_netstat_total", {{"group", "IpExt"}}));
    }
    run("rm -rf " + dir);
  }
}

}  // namespace
}  // namespace vigil::test
