// Grafana dashboards against a real Prometheus (Debian's prometheus package) that scrapes a real
// agent while lab pods make traffic of every kind the dashboards show. Two things are shown:
//   - every query of Vigil's own dashboards (charts/vigil/dashboards) evaluates, and shows the
//     traffic: a panel left empty has its reason below, and that reason is checked too;
//   - the queries of Retina's published Linux dashboards find Vigil's Retina names
//     (metrics.retina_compat), so that those dashboards work on Vigil unchanged (docs/retina.md).
// Grafana itself does not run here (not in Debian): its variables are substituted as Grafana
// would, with the values it would offer.
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

class Prometheus {
 public:
  Prometheus(const std::string& dir, int target_port) : port_(free_port()) {
    const std::string config = write_temp_file(dir, "prometheus.yml",
                                               "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                                               "scrape_configs:\n"
                                               "- job_name: vigil\n"
                                               "  static_configs:\n"
                                               "  - targets: ['127.0.0.1:" + std::to_string(target_port) + "']\n"
                                               "    labels: {cluster: lab}\n");
    process_ = std::make_unique<Process>(
        std::vector<std::string>{"/usr/bin/prometheus", "--config.file=" + config, "--storage.tsdb.path=" + dir + "/tsdb",
                                 "--web.listen-address=127.0.0.1:" + std::to_string(port_), "--log.level=warn"},
        dir + "/prometheus.log");
  }
  ~Prometheus() { process_->terminate(); }

  bool ready() {
    for (int i = 0; i < 300; ++i) {
      int status = 0;
      http_get("127.0.0.1", port_, "/-/ready", &status);
      if (status == 200) return true;
      if (!process_->running()) return false;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

  // /api/v1/query at the current time; `error` says why a query failed.
  json query(const std::string& expr, std::string* error) { return get("/api/v1/query", {{"query", expr}}, error); }

  // What Grafana's label_values(SELECTOR, LABEL) offers: LABEL's values on the series SELECTOR matches.
  std::set<std::string> label_values(const std::string& selector, const std::string& label, std::string* error) {
    std::set<std::string> out;
    for (const auto& s : get("/api/v1/series", {{"match[]", selector}}, error))
      if (s.contains(label)) out.insert(s[label].get<std::string>());
    return out;
  }

  // Scrapes of the agent so far.
  double scrapes() {
    std::string error;
    json r = query("count_over_time(up{job=\"vigil\"}[10m])", &error);
    return r.empty() ? 0 : std::stod(r[0]["value"][1].get<std::string>());
  }

  std::string log() const { return process_->log(); }

 private:
  json get(const std::string& path, const httplib::Params& params, std::string* error) {
    httplib::Client cli("127.0.0.1", port_);
    cli.set_read_timeout(10, 0);
    auto res = cli.Get(path, params, httplib::Headers{});
    if (!res) {
      *error = "no answer from Prometheus";
      return json::array();
    }
    json body = json::parse(res->body, nullptr, false);
    if (body.is_discarded() || body.value("status", "") != "success") {
      *error = res->body;
      return json::array();
    }
    error->clear();
    const json& data = body["data"];
    return data.is_object() ? data["result"] : data;
  }

  int port_;
  std::unique_ptr<Process> process_;
};

// A dashboard query with Grafana's variables replaced as Grafana would replace them here.
std::string substitute(std::string expr, const std::map<std::string, std::string>& vars) {
  for (const auto& [name, value] : vars) {
    for (size_t at; (at = expr.find("$" + name)) != std::string::npos;) expr.replace(at, name.size() + 1, value);
  }
  return expr;
}

// Every `expr` of a dashboard's panels, with the panel's title.
void panel_queries(const json& node, const std::string& title, std::vector<std::pair<std::string, std::string>>& out) {
  if (node.is_object()) {
    const std::string t = node.contains("title") && node["title"].is_string() ? node["title"].get<std::string>() : title;
    if (node.contains("expr") && node["expr"].is_string()) out.emplace_back(t, node["expr"].get<std::string>());
    for (const auto& [k, v] : node.items())
      if (k != "templating") panel_queries(v, t, out);
  } else if (node.is_array()) {
    for (const auto& v : node) panel_queries(v, title, out);
  }
}

void traffic_round(const Lab& lab, int round) {
  lab.cmd("http 1 2 40 1");
  lab.cmd("udp 1 2 20");
  // A refused connection (connect failures, resets, RST flags) and a UDP port nobody listens on
  // (NO_SOCKET drops).
  run("ip netns exec " + lab.prefix() + "-pod-1 bash -c '(exec 3<>/dev/tcp/" + lab.ip(2) + "/81) 2>/dev/null; true'");
  run("ip netns exec " + lab.prefix() + "-pod-1 bash -c 'echo x > /dev/udp/" + lab.ip(2) + "/9999' 2>/dev/null; true");
  // Two bytes to the DNS server: malformed DNS.
  run("ip netns exec " + lab.prefix() + "-pod-1 bash -c 'echo x > /dev/udp/" + lab.ip(2) + "/53' 2>/dev/null; true");
  EXPECT_EQ(lab.cmd("dns 1 2 ok.lab.test"), "NOERROR\n");
  EXPECT_EQ(lab.cmd("dns 1 2 nope.lab.test AAAA"), "NXDOMAIN\n");
  EXPECT_EQ(lab.cmd("dns 1 2 example.org"), "REFUSED\n");
  // A query nobody answers (pod 1 serves no DNS): a request without a response.
  if (round == 0) lab.cmd("dns 2 1 ok.lab.test");
  // Drops both ways by nftables (NETFILTER_DROP).
  lab.cmd("drop 2 30 ingress");
  lab.cmd("udp 1 2 30");
  lab.cmd("drop 2 30 egress");
  run(source_path("tests/lab/vigil-lab") + " --prefix " + lab.prefix() + " udp 2 1 30 >/dev/null 2>&1");  // EPERM for those dropped
  lab.cmd("clear 2");
  lab.cmd("http 2 1 20 1");
}

TEST(Dashboards, VigilsAndRetinasDashboardsShowLabTrafficInRealPrometheus) {
  VIGIL_REQUIRE_ROOT();
  ASSERT_TRUE(std::filesystem::exists("/usr/bin/prometheus")) << "apt-get install prometheus (.ci/setup.sh does)";
  Lab lab(2);
  lab.cmd("serve-http 2");
  lab.cmd("serve-http 1");
  lab.cmd("serve-dns 2");
  ScopedTempDir tmp;
  const std::string dir = tmp.path();
  const int port = free_port();
  // Pod 2's HTTP server stands in for the API server (its latency family); remote context on.
  const std::string config =
      write_temp_file(dir, "vigil.yaml",
                      "listen: 127.0.0.1:" + std::to_string(port) + "\nstate_dir: state\ntick: 250ms\n"
                      "pods: {source: file, file: " + lab.pods_file() + "}\nnotifiers: [{name: default, type: log}]\n"
                      "metrics: {retina_compat: true, netstat: {interval: 250ms, sockets: all}}\n"
                      "remote_context: {namespaces: [lab], max_peers: 8}\n"
                      "apiserver: {addresses: [\"" + lab.ip(2) + ":8080\"]}\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir + "/agent.log");
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent.log();
  Prometheus prometheus(dir, port);
  ASSERT_TRUE(prometheus.ready()) << prometheus.log();
  // Traffic in rounds a scrape or more apart, so that rates over the last 30 s are above 0.
  for (int round = 0; round < 4; ++round) {
    traffic_round(lab, round);
    std::this_thread::sleep_for(1500ms);
  }
  // Two more scrapes after the last traffic (bounded: 20 s).
  const double scrapes = prometheus.scrapes();
  for (int i = 0; i < 100 && prometheus.scrapes() < scrapes + 2; ++i) std::this_thread::sleep_for(200ms);
  ASSERT_GE(prometheus.scrapes(), scrapes + 2) << prometheus.log();

  // ---- Vigil's own dashboards.
  std::string error;
  const auto instances = prometheus.label_values("vigil_build_info{job=\"vigil\"}", "instance", &error);
  ASSERT_EQ(instances, std::set<std::string>{"127.0.0.1:" + std::to_string(port)}) << error;
  EXPECT_EQ(prometheus.label_values("vigil_forward_packets_total{job=\"vigil\"}", "namespace", &error),
            std::set<std::string>{"lab"});
  EXPECT_EQ(prometheus.label_values("vigil_forward_packets_total{job=\"vigil\", namespace=~\"lab\"}", "pod", &error),
            (std::set<std::string>{"pod-1", "pod-2"}));
  // A panel with no data in this run, and why (matched by a part of its query). `true`: it
  // must be empty here (a reason that stops being true fails too); `false`: what this machine
  // has decides (the node's own NICs and conntrack table), only the query is checked.
  struct Empty {
    std::string reason;
    bool must;
  };
  const std::string once = "a counter that appears once it is not zero, and nothing of the kind happened";
  const std::map<std::string, Empty> empty_here = {
      {"vigil_rule_quarantined", {"no rule is quarantined (the panel shows those > 0)", true}},
      {"vigil_kube_sync_age_seconds", {"pods from a file, not the Kubernetes API", true}},
      {"vigil_kube_errors_total", {"pods from a file, not the Kubernetes API", true}},
      {"vigil_kube_consecutive_errors", {"pods from a file, not the Kubernetes API", true}},
      {"vigil_kube_pods", {"pods from a file, not the Kubernetes API", true}},
      {"vigil_node_conntrack_pod_entries", {"no pod's namespace tracks connections", true}},
      {"vigil_notification_delivery_seconds_bucket", {"appears with the first notification sent, and no rule fires here", true}},
      {"vigil_dns_unmatched_responses_total", {once + " (a response without its request)", true}},
      {"vigil_dns_request_retries_total", {once + " (dig asks once)", true}},
      {"vigil_tracepoint_undelivered_total", {once + " (no tracepoint hit went without its program)", true}},
      {"ListenOverflows|ListenDrops", {once + " (no accept queue filled)", true}},
      {"vigil_interface_stats_total", {once + " (no pod's interface lost a frame)", true}},
      {"vigil_node_interface_stats_total", {"the node's NICs' own error and drop counters", false}},
      {"vigil_node_conntrack_stats_total", {"the node's conntrack table's drops and insert failures", false}},
  };
  std::set<std::string> empty_seen;
  const std::map<std::string, std::string> vigil_vars = {
      {"__rate_interval", "30s"}, {"instance", "127.0.0.1:" + std::to_string(port)}, {"namespace", "lab"}, {"pod", "pod-.*"}};
  int panels = 0;
  for (const auto& entry : std::filesystem::directory_iterator(source_path("charts/vigil/dashboards"))) {
    std::ifstream in(entry.path());
    const json dashboard = json::parse(in);
    std::vector<std::pair<std::string, std::string>> queries;
    panel_queries(dashboard["panels"], "", queries);
    ASSERT_FALSE(queries.empty()) << entry.path();
    for (const auto& [title, raw] : queries) {
      ++panels;
      const std::string expr = substitute(raw, vigil_vars);
      SCOPED_TRACE(entry.path().filename().string() + ", panel \"" + title + "\": " + expr);
      const json result = prometheus.query(expr, &error);
      ASSERT_TRUE(error.empty()) << error;
      const Empty* why = nullptr;
      for (const auto& [part, empty] : empty_here)
        if (expr.find(part) != std::string::npos) {
          why = &empty;
          empty_seen.insert(part);
        }
      if (!why) {
        EXPECT_FALSE(result.empty()) << "no data";
      } else if (why->must) {
        EXPECT_TRUE(result.empty()) << "data where none was expected (" << why->reason << "): " << result.dump();
      }
    }
  }
  EXPECT_GE(panels, 90);  // the walk found the panels (102 today)
  EXPECT_EQ(empty_seen.size(), empty_here.size()) << "a reason that no panel needs any more";

  // ---- Retina's published Linux dashboards (microsoft/retina, deploy/grafana-dashboards:
  // clusters.json, standard-dns.json and standard-pod-level.json, read at 532c5aa, 2026-08-21):
  // the queries their panels run, with Grafana's variables. `true`: the panel shows data on
  // Vigil. `false`: it cannot, with the reason, which holds for Retina itself where it says so.
  struct RetinaPanel {
    std::string expr;
    bool data;
    std::string why_not;  // "machine: ..." where this machine's NICs decide
  };
  const std::string n = "instance=~\"$Nodes\"";
  const std::string cn = "cluster=\"$cluster\", " + n;
  const std::string ri = "[$__rate_interval]";
  const std::vector<RetinaPanel> retina = {
      // clusters.json
      {"sum by (cluster) (rate(networkobservability_drop_bytes{" + n + "}" + ri + "))", true, ""},
      {"sum by (cluster) (rate(networkobservability_drop_count" + ri + "))", true, ""},
      {"sum by (cluster) (rate(networkobservability_forward_bytes{" + n + "}" + ri + "))", true, ""},
      {"sum(rate(networkobservability_forward_count{direction=\"egress\", " + cn + "}" + ri + "))", true, ""},
      {"sum(rate(networkobservability_forward_count{direction=\"ingress\", " + cn + "}" + ri + "))", true, ""},
      {"sum(rate(networkobservability_forward_bytes{direction=\"egress\", " + cn + "}" + ri + "))", true, ""},
      {"sum(rate(networkobservability_forward_bytes{direction=\"ingress\", " + cn + "}" + ri + "))", true, ""},
      {"sum(rate(networkobservability_drop_count{direction=\"egress\", " + cn + "}" + ri + "))", true, ""},
      {"sum(rate(networkobservability_drop_count{direction=\"ingress\", " + cn + "}" + ri + "))", true, ""},
      {"sum(rate(networkobservability_drop_count{direction=\"unknown\", " + cn + "}" + ri + "))", false,
       "Vigil always knows a drop's direction"},
      {"sum by (reason) (rate(networkobservability_drop_bytes{" + cn + "}" + ri + ")) > 0", true, ""},
      {"sum by (reason) (rate(networkobservability_drop_count{" + cn + "}" + ri + ")) > 0 or sum by (reason) "
       "(label_replace(rate(networkobservability_interface_stats{statistic_name=\"rx_dropped\", " + cn + "}" + ri +
           "), \"reason\", \"$1\", \"statistic_name\", \"(.*)\")) or sum by (reason) (label_replace(rate("
           "networkobservability_interface_stats{statistic_name=\"tx_dropped\", " + cn + "}" + ri +
           "), \"reason\", \"$1\", \"statistic_name\", \"(.*)\"))",
       true, ""},
      {"sum by(instance) (rate(networkobservability_drop_bytes{" + cn + "}" + ri + ")) > 0", true, ""},
      {"sum by(instance) (rate(networkobservability_drop_count{" + cn + "}" + ri + ")) > 0", true, ""},
      {"sum by(state) (networkobservability_tcp_state{" + cn + "})", true, ""},
      {"sum(networkobservability_udp_connection_stats{statistic_name=\"active\", " + cn + "})", false,
       "the dashboard asks for `active`; Retina, like Vigil, writes ACTIVE"},
      {"sum(rate(networkobservability_tcp_connection_stats{statistic_name=\"resetcount\", " + cn + "}" + ri + "))",
       false, "lower case: Retina, like Vigil, names netstat's counters as the kernel does"},
      {"sum(rate(networkobservability_tcp_connection_stats{statistic_name=\"tcptimeouts\", " + cn + "}" + ri + "))",
       false, "lower case (TCPTimeouts on Retina and Vigil)"},
      {"sum(rate(networkobservability_tcp_connection_stats{statistic_name=\"tcptsreorder\", " + cn + "}" + ri + "))",
       false, "lower case (TCPTSReorder on Retina and Vigil)"},
      {"sum(rate(networkobservability_tcp_flag_counters{" + cn + "}" + ri + "))", false,
       "Retina exports no metric of this name"},
      {"sum(rate(networkobservability_tcp_flag_counters{flag=\"rst\", " + cn + "}" + ri + "))", false,
       "Retina exports no metric of this name"},
      {"sum by(address) (networkobservability_tcp_connection_remote{" + cn + ", address!~\"127.0.0.1|0.0.0.0\"})", false,
       "not provided: a series per remote address is unbounded (docs/retina.md)"},
      {"sum by (interface_name) (rate(networkobservability_interface_stats{statistic_name=\"rx_packets\", " + cn + "}" + ri +
           "))",
       false, "Retina exports only error and drop counters here; Vigil too"},
      {"sum by (interface_name) (rate(networkobservability_interface_stats{statistic_name=\"tx_packets\", " + cn + "}" + ri +
           "))",
       false, "Retina exports only error and drop counters here; Vigil too"},
      {"sum by (instance) (rate(networkobservability_interface_stats{statistic_name=\"rx_comp_full\", " + cn + "}" + ri +
           ")) > 0",
       false, "a NIC driver's own counter, and > 0 only when its queue fills"},
      {"sum by (instance) (rate(networkobservability_interface_stats{statistic_name=\"tx_send_full\", " + cn + "}" + ri +
           ")) > 0",
       false, "a NIC driver's own counter, and > 0 only when its queue fills"},
      {"sum by (instance) (rate(networkobservability_interface_stats{statistic_name=~\"rx[0-9]+_cache_full\", " + cn + "}" +
           ri + ")) > 0",
       false, "a NIC driver's own counter, and > 0 only when its queue fills"},
      {"sum by (instance) (rate(networkobservability_interface_stats{statistic_name=~\"tx[0-9]+_nop\", " + cn + "}" + ri +
           ")) > 0",
       false, "a NIC driver's own counter"},
      {"sum by (instance) (rate(networkobservability_interface_stats{statistic_name=\"rx_dropped\", " + cn + "}" + ri +
           ")) > 0",
       false, "machine: frames this machine's NICs drop while the test runs"},
      {"sum by (instance) (rate(networkobservability_interface_stats{statistic_name=\"tx_dropped\", " + cn + "}" + ri +
           ")) > 0",
       false, "machine: frames this machine's NICs drop while the test runs"},
      // standard-dns.json
      {"sum (rate(networkobservability_dns_request_count{" + cn + "}" + ri + ")) by (query_type) > 0", true, ""},
      {"sum (rate(networkobservability_dns_response_count{" + cn + "}" + ri + ")) by (query_type) > 0", true, ""},
      {"round(topk(10, sum (60*rate(networkobservability_dns_request_count{" + cn + "}" + ri + ")) by (query, query_type)), 1)",
       true, ""},
      {"round(topk(10, sum (60*rate(networkobservability_dns_response_count{" + cn + "}" + ri + ")) by (query, query_type)), 1)",
       true, ""},
      {"(1 - (sum (networkobservability_dns_response_count{" + cn + "}) by (query_type) / sum "
       "(networkobservability_dns_request_count{" + cn + "}) by (query_type))) * 100 * ((sum (rate("
       "networkobservability_dns_response_count{" + cn + "}" + ri + ")) by (query_type)) > bool 0) > 0",
       true, ""},
      {"label_replace(label_replace(sum by (return_code, query_type) (rate(networkobservability_dns_response_count{" + cn +
           ", return_code!=\"NoError\"}" + ri + ")) > 0, \"return_code\", \"non-existent domain\", \"return_code\", "
           "\"nxdomain\"), \"return_code\", \"server failure\", \"return_code\", \"servfail\")",
       true, ""},
      {"sum(rate(networkobservability_dns_response_count{" + cn + ", return_code=\"NoError\"}" + ri + ")) by (num_response) > 0",
       false, "the dashboard asks for NoError; Retina, like Vigil, writes NOERROR"},
      {"sum by (query, query_type, response, return_code) (60*rate(networkobservability_dns_response_count{" + cn +
           ", num_response!=\"0\", response!=\"\"}" + ri + "))",
       false, "DNS answers are not kept (unbounded), as in Retina's node-level counts"},
      // standard-pod-level.json
      {"avg by(instance) (sum by(le, instance) (rate(networkobservability_node_apiserver_handshake_latency_ms_bucket[1m])))",
       true, ""},
      {"sum by(destination_podname) (irate(networkobservability_adv_forward_count{destination_podname!=\"unknown\", "
       "source_podname!=\"unknown\"}[1m]))",
       true, ""},
      {"sum by(source_podname) (irate(networkobservability_adv_forward_count{destination_podname!=\"unknown\", "
       "source_podname!=\"unknown\"}[1m]))",
       true, ""},
      {"sum by(source_podname) (irate(networkobservability_adv_drop_count{destination_podname!=\"unknown\", "
       "source_podname!=\"unknown\"}[1m]))",
       true, ""},
      {"sum by(destination_ip) (irate(networkobservability_adv_forward_count{destination_podname=\"unknown\"}[1m]))", false,
       "local context: each series is a pod of this node, whose name is known"},
      {"sum by(source_ip) (irate(networkobservability_adv_forward_count{source_podname=\"unknown\"}[1m]))", false,
       "local context: each series is a pod of this node, whose name is known"},
      {"sum(irate(networkobservability_adv_forward_count{destination_podname=~\"$pod\"}[1m]))", true, ""},
      {"sum(irate(networkobservability_adv_forward_count{source_podname=~\"$pod\"}[1m]))", true, ""},
      {"topk(10, sum by(destination_podname) (irate(networkobservability_adv_forward_count{destination_podname!=\"unknown\"}[5m])))",
       true, ""},
      {"topk(10, sum by(source_podname) (irate(networkobservability_adv_forward_count{source_podname!=\"unknown\"}[5m])))",
       true, ""},
  };
  // The dashboards' variables: cluster from label_values(up, cluster), nodes from
  // label_values(up{cluster="$cluster"}, instance), pod from the adv_forward_count series.
  ASSERT_EQ(prometheus.label_values("up", "cluster", &error), std::set<std::string>{"lab"}) << error;
  ASSERT_EQ(prometheus.label_values("up{cluster=\"lab\"}", "instance", &error), instances) << error;
  const auto retina_pods = prometheus.label_values("networkobservability_adv_forward_count", "source_podname", &error);
  EXPECT_EQ(retina_pods, (std::set<std::string>{"pod-1", "pod-2"})) << error;
  const std::map<std::string, std::string> retina_vars = {
      {"__rate_interval", "30s"}, {"cluster", "lab"}, {"Nodes", *instances.begin()}, {"pod", "pod-2"}};
  for (const auto& panel : retina) {
    const std::string expr = substitute(panel.expr, retina_vars);
    SCOPED_TRACE("Retina: " + expr);
    const json result = prometheus.query(expr, &error);
    ASSERT_TRUE(error.empty()) << error;
    if (panel.data) {
      EXPECT_FALSE(result.empty()) << "no data";
    } else if (panel.why_not.rfind("machine: ", 0) != 0) {
      EXPECT_TRUE(result.empty()) << "data where none was expected (" << panel.why_not << "): " << result.dump();
    }
  }
  // Where the dashboards' spelling differs from Retina's, Retina's own spelling finds the data.
  for (const std::string expr : {"networkobservability_udp_connection_stats{statistic_name=\"ACTIVE\"}",
                                 "networkobservability_dns_response_count{return_code=\"NOERROR\"}",
                                 "networkobservability_tcp_flag_gauges{direction=\"egress\", flag=\"RST\"}",
                                 "networkobservability_adv_tcpflags_count{flag=\"SYNACK\", source_podname=\"pod-2\"}",
                                 "networkobservability_adv_node_apiserver_no_response{no_response=\"no_response\"}"}) {
    EXPECT_FALSE(prometheus.query(expr, &error).empty()) << expr << " " << error;
  }
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
}

}  // namespace
}  // namespace vigil::test
