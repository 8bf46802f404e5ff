// The agent with `pods.source: kubernetes` on the real kernel: a fake API server (HTTPS on
// 127.0.0.1, token auth; tests/common/kube_fake_api.h) lists two lab pods on this node by their
// real addresses, and the agent attaches to their veths; then the watch relabels one and
// deletes the other, and the agent follows; with the API server gone the agent keeps its pods,
// reports the staleness, and recovers when the server returns on the same port.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>

#include "../common/kube_fake_api.h"
#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

json lab_pod(const std::string& name, const std::string& ip, const std::string& rv, const json& labels) {
  return {{"kind", "Pod"},
          {"apiVersion", "v1"},
          {"metadata", {{"name", name}, {"namespace", "lab"}, {"uid", "uid-" + name}, {"resourceVersion", rv}, {"labels", labels}}},
          {"spec", {{"nodeName", "test-node"}, {"containers", json::array({{{"name", "c"}, {"image", "x"}}})}}},
          {"status", {{"phase", "Running"}, {"podIP", ip}, {"podIPs", json::array({{{"ip", ip}}})}}}};
}

// The namespaces the fake API server lists: "lab" only.
json lab_namespace_list() {
  return {{"kind", "NamespaceList"},
          {"apiVersion", "v1"},
          {"metadata", {{"resourceVersion", "100"}}},
          {"items", json::array({{{"metadata", {{"name", "lab"}, {"resourceVersion", "5"}}}}})}};
}

// An agent config on node test-node that takes its pods from the fake API server at `api_url`
// (the token in DIR/token), plus `extra` YAML lines.
std::string kube_agent_config(const std::string& dir, int port, const std::string& api_url, const std::string& ca,
                              const std::string& tick, const std::string& extra) {
  return write_temp_file(
      dir, "vigil.yaml",
      "node: test-node\nlisten: 127.0.0.1:" + std::to_string(port) + "\ntick: " + tick + "\nstate_dir: " + dir +
          "/state\nrules: []\nnotifiers: []\ncaptures: {enabled: false}\n" + extra +
          "pods:\n  source: kubernetes\n  kubernetes:\n    api_server: " + api_url + "\n    ca_file: " + ca +
          "\n    token_file: " + dir + "/token\n    backoff_initial: 50ms\n    backoff_max: 500ms\n");
}

// /api/v1/pods of the agent, by namespace/name.
std::map<std::string, json> agent_pods(int port) {
  std::map<std::string, json> out;
  auto j = json::parse(http_get("127.0.0.1", port, "/api/v1/pods"), nullptr, false);
  if (j.is_array())
    for (const auto& p : j) out[p.value("namespace", "") + "/" + p.value("name", "")] = p;
  return out;
}

template <typename F>
bool within(std::chrono::seconds limit, F f) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return f();
}

// A fake API server with its PKI and the "lab" namespace listed, and a directory holding the
// agent's token; each test adds the pods (and whatever else) it lists.
class KubernetesAgent : public ::testing::Test {
 protected:
  void SetUp() override {
    VIGIL_REQUIRE_ROOT();
    ASSERT_TRUE(pki_.ok()) << pki_.log();
    api_ = std::make_unique<kube::fake::FakeApiServer>(pki_);
    ASSERT_GT(api_->port(), 0);
    api_->set_list("namespaces", lab_namespace_list());
    write_temp_file(dir_.path(), "token", "token-1\n");
  }

  kube::fake::Pki pki_;
  std::unique_ptr<kube::fake::FakeApiServer> api_;
  ScopedTempDir dir_;
};

TEST_F(KubernetesAgent, FollowsTheApiServersPodsOfThisNode) {
  auto& api = *api_;
  auto& dir = dir_;
  Lab lab(2);
  const json pods = {{"kind", "PodList"},
                     {"apiVersion", "v1"},
                     {"metadata", {{"resourceVersion", "100"}}},
                     {"items", json::array({lab_pod("pod-1", lab.ip(1), "90", {{"app", "web"}}),
                                            lab_pod("pod-2", lab.ip(2), "91", {{"app", "db"}})})}};
  json elsewhere = lab_pod("pod-9", "10.255.0.9", "92", {{"app", "web"}});
  elsewhere["spec"]["nodeName"] = "other-node";
  json all = pods;
  all["items"].push_back(elsewhere);
  api.set_list("pods", all);
  const int port = free_port();
  const std::string config = kube_agent_config(dir.path(), port, api.url(), pki_.path("ca.pem"), "500ms", "");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir.path() + "/agent.log");

  // Listed: both lab pods of this node are attached by their addresses; the other node's is not there.
  ASSERT_TRUE(within(20s, [&] {
    auto p = agent_pods(port);
    return p.size() == 2 && p["lab/pod-1"].value("attached", false) && p["lab/pod-2"].value("attached", false);
  })) << http_get("127.0.0.1", port, "/api/v1/pods") << agent.log();
  auto p = agent_pods(port);
  EXPECT_EQ(p["lab/pod-1"].value("interface", ""), lab.veth(1));
  EXPECT_EQ(p["lab/pod-2"]["labels"].value("app", ""), "db");
  EXPECT_EQ(p.count("lab/pod-9"), 0u);
  EXPECT_EQ(p["lab/pod-1"]["workload"].value("kind", ""), "Pod") << p["lab/pod-1"].dump();  // no controller
  EXPECT_EQ(p["lab/pod-1"]["workload"].value("name", ""), "pod-1");

  // Watched: pod-2 relabelled, pod-1 deleted.
  ASSERT_TRUE(within(10s, [&] { return api.open_watches() >= 1; }));
  api.line("pods", json{{"type", "MODIFIED"}, {"object", lab_pod("pod-2", lab.ip(2), "101", {{"app", "cache"}})}}.dump());
  api.line("pods", json{{"type", "DELETED"}, {"object", lab_pod("pod-1", lab.ip(1), "102", {{"app", "web"}})}}.dump());
  ASSERT_TRUE(within(10s, [&] {
    auto q = agent_pods(port);
    return q.size() == 1 && q.count("lab/pod-2") && q["lab/pod-2"]["labels"].value("app", "") == "cache";
  })) << http_get("127.0.0.1", port, "/api/v1/pods") << agent.log();
  auto text = metrics_after_ticks(port);
  // The allow-listed pod label is a metric label (label_app), and follows the relabel; a bare
  // pod has no workload labels.
  EXPECT_TRUE(metric_value(text, "vigil_forward_packets_total", {{"pod", "pod-2"}, {"direction", "egress"}, {"label_app", "cache"}}))
      << text.substr(0, 3000);
  EXPECT_FALSE(metric_value(text, "vigil_forward_packets_total", {{"pod", "pod-2"}, {"direction", "egress"}, {"label_app", "db"}}));
  EXPECT_EQ(text.find("workload_kind=\"Pod\""), std::string::npos);
  EXPECT_EQ(metric_value(text, "vigil_kube_pods", {{"state", "watched"}}).value_or(-1), 1) << text;
  EXPECT_EQ(metric_value(text, "vigil_pods", {{"state", "attached"}}).value_or(-1), 1) << text;
  EXPECT_GE(metric_value(text, "vigil_kube_sync_age_seconds", {}).value_or(-1), 0) << text;

  // The API server goes away: the last known pods stay, the errors are counted.
  const int api_port = api.port();
  api.shutdown();
  ASSERT_TRUE(within(20s, [&] {
    return metric_value(metrics_after_ticks(port, 1), "vigil_kube_consecutive_errors", {}).value_or(0) > 0;
  })) << agent.log();
  EXPECT_EQ(agent_pods(port).count("lab/pod-2"), 1u);
  int status = 0;
  http_get("127.0.0.1", port, "/healthz", &status);
  EXPECT_EQ(status, 200);

  // Back on the same port, answering the resumed watch with 410 Gone: the agent lists again
  // (both pods are in the list) and recovers without a restart.
  api.gone_on_next_watch("pods");
  api.start(api_port);
  ASSERT_EQ(api.port(), api_port);
  ASSERT_TRUE(within(20s, [&] {
    return metric_value(metrics_after_ticks(port, 1), "vigil_kube_consecutive_errors", {}).value_or(1) == 0;
  })) << agent.log();
  ASSERT_TRUE(within(10s, [&] { return agent_pods(port).size() == 2; })) << agent.log();
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
}

// metrics.packet_level with the Kubernetes source: a pod's vigil.dev/packet-level annotation
// decides whether its packets meet the TC programs, and the agent follows when it changes.
// Retina's context labels name a pod's workload, as its owner references say (a StatefulSet
// owns its pods directly, so no further lookup); a bare pod's is unknown, as in Retina.
TEST_F(KubernetesAgent, RetinaNamesCarryThePodsWorkload) {
  auto& api = *api_;
  Lab lab(2);
  json owned = lab_pod("pod-2", lab.ip(2), "91", {{"app", "db"}});
  owned["metadata"]["ownerReferences"] =
      json::array({{{"apiVersion", "apps/v1"}, {"kind", "StatefulSet"}, {"name", "db"}, {"uid", "uid-db"}, {"controller", true}}});
  api.set_list("pods", {{"kind", "PodList"},
                        {"apiVersion", "v1"},
                        {"metadata", {{"resourceVersion", "100"}}},
                        {"items", json::array({lab_pod("pod-1", lab.ip(1), "90", {{"app", "web"}}), owned})}});
  const int port = free_port();
  const std::string config = kube_agent_config(dir_.path(), port, api.url(), pki_.path("ca.pem"), "200ms",
                                               "metrics: {retina_compat: true}\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir_.path() + "/agent.log");
  ASSERT_TRUE(wait_for_attached(port, 2)) << agent.log();
  lab.cmd("udp 2 1 5");
  lab.cmd("udp 1 2 5");
  const std::string text = metrics_after_ticks(port);
  EXPECT_TRUE(metric_value(text, "vigil_forward_packets_total",
                           {{"pod", "pod-2"}, {"direction", "egress"}, {"workload_kind", "StatefulSet"}, {"workload", "db"}}))
      << text.substr(0, 3000);
  EXPECT_GE(metric_value(text, "networkobservability_adv_forward_count",
                         {{"source_podname", "pod-2"}, {"source_workload_kind", "StatefulSet"}, {"source_workload_name", "db"},
                          {"direction", "egress"}})
                .value_or(0),
            5)
      << text.substr(0, 3000);
  EXPECT_GE(metric_value(text, "networkobservability_adv_forward_count",
                         {{"destination_podname", "pod-2"}, {"destination_workload_kind", "StatefulSet"},
                          {"destination_workload_name", "db"}, {"direction", "ingress"}})
                .value_or(0),
            5);
  EXPECT_GE(metric_value(text, "networkobservability_adv_forward_count",
                         {{"source_podname", "pod-1"}, {"source_workload_kind", "unknown"}, {"source_workload_name", "unknown"},
                          {"direction", "egress"}})
                .value_or(0),
            5);
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
}

TEST_F(KubernetesAgent, PacketLevelFollowsThePodsAnnotation) {
  auto& api = *api_;
  auto& dir = dir_;
  Lab lab(2);
  auto annotated = [&](int n, const std::string& rv, const std::string& says) {
    json pod = lab_pod("pod-" + std::to_string(n), lab.ip(n), rv, {{"app", "web"}});
    if (!says.empty()) pod["metadata"]["annotations"] = {{"vigil.dev/packet-level", says}};
    return pod;
  };
  api.set_list("pods", {{"kind", "PodList"},
                        {"apiVersion", "v1"},
                        {"metadata", {{"resourceVersion", "100"}}},
                        {"items", json::array({annotated(1, "90", "true"), annotated(2, "91", "")})}});
  const int port = free_port();
  const std::string config = kube_agent_config(dir.path(), port, api.url(), pki_.path("ca.pem"), "300ms",
                                               "metrics: {packet_level: {pods: selected}}\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir.path() + "/agent.log");
  auto programs = [&](int n) {
    std::string out;
    for (const auto& name : tcx_programs(lab.veth(n))) out += (out.empty() ? "" : " ") + name;
    return out;
  };
  // As listed: pod 1 says true, pod 2 says nothing (selected: nobody else).
  ASSERT_TRUE(within(20s, [&] {
    auto p = agent_pods(port);
    return p.size() == 2 && p["lab/pod-1"].value("attached", false) && p["lab/pod-2"].value("attached", false);
  })) << http_get("127.0.0.1", port, "/api/v1/pods") << agent.log();
  auto p = agent_pods(port);
  EXPECT_TRUE(p["lab/pod-1"].value("packet_level", false));
  EXPECT_FALSE(p["lab/pod-2"].value("packet_level", true));
  EXPECT_EQ(programs(1), "vigil_tc vigil_tc");
  EXPECT_EQ(programs(2), "");
  // Pod 1's programs see a refused connection: TCP flag and reset series.
  run("ip netns exec " + lab.prefix() + "-pod-1 bash -c '(exec 3<>/dev/tcp/" + lab.ip(2) + "/81) 2>/dev/null; true'");
  EXPECT_TRUE(within(10s, [&] {
    return metric_value(metrics_after_ticks(port, 1), "vigil_tcp_flags_total", {{"pod", "pod-1"}, {"flag", "SYN"}}).has_value();
  }));

  // Watched: pod 2 now says true, pod 1 false: the programs move with the annotations.
  ASSERT_TRUE(within(10s, [&] { return api.open_watches() >= 1; }));
  api.line("pods", json{{"type", "MODIFIED"}, {"object", annotated(2, "101", "true")}}.dump());
  api.line("pods", json{{"type", "MODIFIED"}, {"object", annotated(1, "102", "false")}}.dump());
  EXPECT_TRUE(within(10s, [&] {
    auto q = agent_pods(port);
    return q["lab/pod-2"].value("programs", false) && !q["lab/pod-1"].value("programs", true) &&
           programs(2) == "vigil_tc vigil_tc" && programs(1).empty();
  })) << http_get("127.0.0.1", port, "/api/v1/pods") << programs(1) << " / " << programs(2) << agent.log();
  // Both keep their forward series, whichever way they are counted.
  auto text = metrics_after_ticks(port);
  EXPECT_TRUE(metric_value(text, "vigil_forward_packets_total", {{"pod", "pod-1"}, {"direction", "egress"}})) << text.substr(0, 2000);
  EXPECT_TRUE(metric_value(text, "vigil_forward_packets_total", {{"pod", "pod-2"}, {"direction", "egress"}}));
  EXPECT_EQ(metric_value(text, "vigil_pods_with_programs", {}).value_or(-1), 1) << text;
  // Pod 1's series that only the programs give go with them, not frozen at their last values.
  EXPECT_FALSE(metric_value(text, "vigil_tcp_flags_total", {{"pod", "pod-1"}})) << text.substr(0, 4000);
  EXPECT_FALSE(metric_value(text, "vigil_tcp_resets_total", {{"pod", "pod-1"}}));
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
}

// Remote context with the Kubernetes source: pod-3 runs on "another node" (the API server says
// so; here it is a lab namespace the agent does not watch) behind the Service "backend", and
// pod-2, on this node, backs the Service "db". The agent learns that from the EndpointSlices
// and names the peers of pod-1's traffic to them.
TEST_F(KubernetesAgent, RemoteContextNamesPeersOfOtherNodesFromEndpointSlices) {
  auto& api = *api_;
  auto& dir = dir_;
  Lab lab(3);
  json remote = lab_pod("pod-3", lab.ip(3), "92", {{"app", "backend"}});
  remote["spec"]["nodeName"] = "other-node";
  api.set_list("pods", {{"kind", "PodList"},
                        {"apiVersion", "v1"},
                        {"metadata", {{"resourceVersion", "100"}}},
                        {"items", json::array({lab_pod("pod-1", lab.ip(1), "90", {{"app", "web"}}),
                                               lab_pod("pod-2", lab.ip(2), "91", {{"app", "db"}}), remote})}});
  api.set_list("endpointslices",
               {{"kind", "EndpointSliceList"},
                {"apiVersion", "discovery.k8s.io/v1"},
                {"metadata", {{"resourceVersion", "100"}}},
                {"items", json::array({{{"metadata", {{"name", "backend-x1"}, {"namespace", "lab"}, {"resourceVersion", "7"},
                                                      {"labels", {{"kubernetes.io/service-name", "backend"}}}}},
                                        {"addressType", "IPv4"},
                                        {"endpoints", json::array({{{"addresses", {lab.ip(3)}},
                                                                    {"targetRef", {{"kind", "Pod"}, {"namespace", "lab"}, {"name", "pod-3"}}},
                                                                    {"nodeName", "other-node"}}})}},
                                       {{"metadata", {{"name", "db-y2"}, {"namespace", "lab"}, {"resourceVersion", "8"},
                                                      {"labels", {{"kubernetes.io/service-name", "db"}}}}},
                                        {"addressType", "IPv4"},
                                        {"endpoints", json::array({{{"addresses", {lab.ip(2)}},
                                                                    {"targetRef", {{"kind", "Pod"}, {"namespace", "lab"}, {"name", "pod-2"}}},
                                                                    {"nodeName", "test-node"}}})}}})}});
  api.set_list("services", {{"kind", "ServiceList"},
                            {"apiVersion", "v1"},
                            {"metadata", {{"resourceVersion", "100"}}},
                            {"items", json::array({{{"metadata", {{"name", "backend"}, {"namespace", "lab"}, {"resourceVersion", "6"}}},
                                                    {"spec", {{"clusterIP", "10.96.77.7"}, {"clusterIPs", {"10.96.77.7"}}}}}})}});
  const int port = free_port();
  const std::string config = kube_agent_config(dir.path(), port, api.url(), pki_.path("ca.pem"), "300ms",
                                               "remote_context: {namespaces: [lab], max_peers: 16}\n");
  Process agent({binary_path("vigil"), "agent", "--config", config}, dir.path() + "/agent.log");
  ASSERT_TRUE(within(20s, [&] {
    auto p = agent_pods(port);
    return p.size() == 2 && p["lab/pod-1"].value("attached", false) && p["lab/pod-2"].value("attached", false) &&
           api.requests("/api/v1/services", 0).size() >= 1 && api.requests("/apis/discovery.k8s.io/v1/endpointslices", 0).size() >= 1;
  })) << http_get("127.0.0.1", port, "/api/v1/pods") << agent.log();
  std::this_thread::sleep_for(500ms);  // the directory is published by the listing threads

  lab.cmd("udp 1 3 10");  // to the other node's pod, behind the Service
  lab.cmd("udp 1 2 5");   // to a pod of this node
  const std::string text = metrics_after_ticks(port);
  EXPECT_EQ(metric_value(text, "vigil_remote_forward_packets_total",
                         {{"pod", "pod-1"}, {"direction", "egress"}, {"remote_ip", lab.ip(3)}, {"remote_namespace", "lab"},
                          {"remote_pod", "pod-3"}, {"remote_service", "backend"}})
                .value_or(-1),
            10)
      << text.substr(0, 4000) << agent.log();
  // A pod of this node that backs a Service: its name from the agent's pods, its Service from
  // the EndpointSlice.
  EXPECT_EQ(metric_value(text, "vigil_remote_forward_packets_total",
                         {{"pod", "pod-1"}, {"direction", "egress"}, {"remote_pod", "pod-2"}, {"remote_namespace", "lab"},
                          {"remote_service", "db"}})
                .value_or(-1),
            5)
      << text.substr(0, 4000);
  EXPECT_EQ(metric_value(text, "vigil_remote_forward_packets_total",
                         {{"pod", "pod-2"}, {"direction", "ingress"}, {"remote_pod", "pod-1"}, {"remote_namespace", "lab"}})
                .value_or(-1),
            5);
  EXPECT_EQ(text.find("remote_pod=\"pod-1\",remote_service"), std::string::npos) << "pod-1 backs no Service";
  EXPECT_EQ(agent.terminate(), 0) << agent.log();
}

}  // namespace
}  // namespace vigil::test
