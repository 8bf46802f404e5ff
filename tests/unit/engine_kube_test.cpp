// The Kubernetes pod source against a local HTTPS API server (127.0.0.1, a CA and certificate
// made with the openssl CLI) that speaks list/watch from the recorded-style objects of
// tests/data/kube/: pods added, relabelled, deleted and rescheduled; bookmarks; 410 Gone as an
// HTTP status and as an ERROR event; a watch dropped mid-event resumes from the last
// resourceVersion; malformed events are counted and skipped; token rotation; staleness while
// the server is away and recovery when it returns. Every wait is bounded.
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "engine/kube/kube_pods.h"
#include "engine/pod_manager.h"
#include "engine/kube/line_splitter.h"
#include "../common/kube_fake_api.h"

namespace vigil::kube {
namespace {

using namespace vigil::kube::fake;

std::vector<std::string> keys(const KubeSnapshot& s) {
  std::vector<std::string> out;
  for (const auto& p : s.pods) out.push_back(p.key());
  return out;
}

const KubePod* find(const KubeSnapshot& s, const std::string& key) {
  for (const auto& p : s.details)
    if (p.spec.key() == key) return &p;
  return nullptr;
}

uint64_t errors(const KubeSnapshot& s, const std::string& kind) {
  auto it = s.status.errors.find(kind);
  return it == s.status.errors.end() ? 0 : it->second;
}

// --- objects and scope (no server) ---------------------------------------------------------

std::map<std::string, PodObject> listed_pods() {
  std::map<std::string, PodObject> out;
  const json list = load("pods-list.json");  // kept alive: a range-for over a temporary's member dangles
  for (const auto& item : list["items"]) {
    auto p = parse_pod(item);
    EXPECT_TRUE(p.ok()) << p.error().message;
    if (p) out[p->key()] = *p;
  }
  return out;
}

std::map<std::string, NamespaceObject> listed_namespaces() {
  std::map<std::string, NamespaceObject> out;
  const json list = load("namespaces-list.json");
  for (const auto& item : list["items"]) {
    auto n = parse_namespace(item);
    EXPECT_TRUE(n.ok()) << n.error().message;
    if (n) out[n->name] = *n;
  }
  return out;
}

TEST(KubeObjects, ParsesRecordedPods) {
  auto pods = listed_pods();
  ASSERT_EQ(pods.size(), 6u);
  const auto& web = pods.at("default/web-7d9f8b6c5-abcde");
  EXPECT_EQ(web.uid, "0f6c7a10-2b9d-4c51-9e3a-7c3b1d2e4a01");
  EXPECT_EQ(web.node, "worker-1");
  EXPECT_EQ(web.phase, "Running");
  EXPECT_EQ(web.resource_version, "48101");
  EXPECT_EQ(web.ips, (std::vector<std::string>{"10.244.1.12", "fd00:10:244:1::c"}));
  ASSERT_EQ(web.owners.size(), 1u);
  EXPECT_EQ(web.owners[0].kind, "ReplicaSet");
  EXPECT_EQ(web.owners[0].name, "web-7d9f8b6c5");
  EXPECT_TRUE(web.owners[0].controller);
  EXPECT_TRUE(pods.at("kube-system/kube-proxy-x7k2p").host_network);
  EXPECT_TRUE(pods.at("default/web-7d9f8b6c5-zzzzz").ips.empty());
}

TEST(KubeObjects, MalformedPodsNameTheField) {
  json pod = load("pods-list.json")["items"][1];
  auto err = [](const json& j) {
    auto p = parse_pod(j);
    return p.ok() ? std::string("(ok)") : p.error().message;
  };
  json j = pod;
  j["metadata"]["labels"]["app"] = 5;
  EXPECT_EQ(err(j), "metadata.labels.app: expected a string");
  j = pod;
  j["metadata"].erase("name");
  EXPECT_EQ(err(j), "metadata.name: missing");
  j = pod;
  j["status"]["podIPs"] = "10.0.0.1";
  EXPECT_EQ(err(j), "status.podIPs: expected an array");
  j = pod;
  j["status"]["podIPs"] = json::array({{{"ip", "10.0.0.300"}}});
  j["status"].erase("podIP");
  EXPECT_EQ(err(j), "status.podIPs: '10.0.0.300' is not an IP address");
  j = pod;
  j["spec"]["hostNetwork"] = "yes";
  EXPECT_EQ(err(j), "spec.hostNetwork: expected true or false");
  j = pod;
  j["metadata"]["ownerReferences"][0].erase("kind");
  EXPECT_EQ(err(j), "metadata.ownerReferences[0].kind: missing");
  EXPECT_EQ(err(json::array()), "expected an object");
  EXPECT_EQ(err(json{{"metadata", 3}}), "metadata: expected an object");
}

TEST(KubeObjects, SelectsRunningPodsOfTheNodeWithAllowListedLabels) {
  KubeOptions o;
  o.node = "worker-1";
  auto sel = select_pods(listed_pods(), listed_namespaces(), o);
  std::vector<std::string> got;
  for (const auto& p : sel.pods) got.push_back(p.spec.key());
  EXPECT_EQ(got, (std::vector<std::string>{"batch/report-28461230-q2w9z", "default/db-0", "default/web-7d9f8b6c5-abcde"}));
  EXPECT_EQ(sel.host_network, 1u);  // kube-proxy
  EXPECT_EQ(sel.not_running, 1u);   // migrate-once (Succeeded)
  EXPECT_EQ(sel.no_ip, 1u);         // the Pending pod without an address
  EXPECT_EQ(sel.out_of_scope, 0u);
  const auto& web = sel.pods[2];
  EXPECT_EQ(web.spec.ip, "10.244.1.12");
  EXPECT_EQ(web.spec.netns, "");
  EXPECT_EQ(web.spec.labels, (std::map<std::string, std::string>{{"app", "web"}}));  // tier, pod-template-hash dropped
  EXPECT_EQ(web.ips.size(), 2u);
  EXPECT_EQ(sel.pods[0].namespace_labels.at("team"), "data");

  o.label_allowlist = {"app", "tier"};
  sel = select_pods(listed_pods(), listed_namespaces(), o);
  EXPECT_EQ(sel.pods[2].spec.labels, (std::map<std::string, std::string>{{"app", "web"}, {"tier", "frontend"}}));

  o.node = "worker-2";  // rescheduled elsewhere: not ours
  EXPECT_TRUE(select_pods(listed_pods(), listed_namespaces(), o).pods.empty());
}

TEST(KubeObjects, ScopeByNamespacesAndObserveAnnotation) {
  KubeOptions o;
  o.node = "worker-1";
  auto pods = listed_pods();
  auto nss = listed_namespaces();
  auto names = [&] {
    std::vector<std::string> out;
    for (const auto& p : select_pods(pods, nss, o).pods) out.push_back(p.spec.key());
    return out;
  };
  o.exclude_namespaces = {"batch"};
  EXPECT_EQ(names(), (std::vector<std::string>{"default/db-0", "default/web-7d9f8b6c5-abcde"}));
  o.exclude_namespaces = {};
  o.include_namespaces = {"batch", "kube-system"};
  EXPECT_EQ(names(), (std::vector<std::string>{"batch/report-28461230-q2w9z"}));
  o.include_namespaces = {};

  // all unless opted out: the namespace opts out, one of its pods opts back in (pod wins)
  nss["default"].annotations["vigil.dev/observe"] = "false";
  EXPECT_EQ(names(), (std::vector<std::string>{"batch/report-28461230-q2w9z"}));
  pods["default/db-0"].annotations["vigil.dev/observe"] = "true";
  EXPECT_EQ(names(), (std::vector<std::string>{"batch/report-28461230-q2w9z", "default/db-0"}));
  EXPECT_EQ(select_pods(pods, nss, o).out_of_scope, 1u);

  // only opted in
  o.observe = "annotated";
  EXPECT_EQ(names(), (std::vector<std::string>{"default/db-0"}));
  nss["batch"].annotations["vigil.dev/observe"] = "true";
  EXPECT_EQ(names(), (std::vector<std::string>{"batch/report-28461230-q2w9z", "default/db-0"}));
  pods["batch/report-28461230-q2w9z"].annotations["vigil.dev/observe"] = "false";
  EXPECT_EQ(names(), (std::vector<std::string>{"default/db-0"}));
}

TEST(KubeObjects, PacketLevelAnnotationOfThePodElseItsNamespace) {
  KubeOptions o;
  o.node = "worker-1";
  auto pods = listed_pods();
  auto nss = listed_namespaces();
  auto said = [&](const std::string& key) -> std::optional<bool> {
    for (const auto& p : select_pods(pods, nss, o).pods)
      if (p.spec.key() == key) return p.spec.packet_level;
    ADD_FAILURE() << key << " not selected";
    return std::nullopt;
  };
  EXPECT_FALSE(said("default/db-0").has_value());  // unsaid: metrics.packet_level decides
  nss["default"].annotations["vigil.dev/packet-level"] = "true";
  EXPECT_EQ(said("default/db-0"), std::optional<bool>(true));
  EXPECT_EQ(said("default/web-7d9f8b6c5-abcde"), std::optional<bool>(true));
  pods["default/db-0"].annotations["vigil.dev/packet-level"] = "false";  // the pod wins
  EXPECT_EQ(said("default/db-0"), std::optional<bool>(false));
  EXPECT_EQ(said("default/web-7d9f8b6c5-abcde"), std::optional<bool>(true));
  pods["default/db-0"].annotations["vigil.dev/packet-level"] = "yes";  // not a word it knows: the namespace's
  EXPECT_EQ(said("default/db-0"), std::optional<bool>(true));
  EXPECT_FALSE(said("batch/report-28461230-q2w9z").has_value());

  // And what the agent then does with it (PodManager's policy).
  MetricsConfig::PacketLevel selected;
  selected.all = false;
  selected.namespaces = {"batch"};
  PodSpec spec;
  spec.namespace_ = "batch";
  EXPECT_TRUE(wants_packet_level(selected, spec));
  spec.packet_level = false;
  EXPECT_FALSE(wants_packet_level(selected, spec));
  spec.namespace_ = "default";
  spec.packet_level = true;
  EXPECT_TRUE(wants_packet_level(selected, spec));
  spec.packet_level.reset();
  EXPECT_FALSE(wants_packet_level(selected, spec));
  EXPECT_TRUE(wants_packet_level(MetricsConfig::PacketLevel{}, spec));  // pods: all
}

// --- kubeconfig ----------------------------------------------------------------------------

// The API's streamed bodies cut into lines: the same lines however the transport chunks the
// bytes, each byte searched once (a list page is one line of megabytes, arriving 4 KiB at a
// time), a stop ends the feed, and an unfinished line over the limit is refused.
std::vector<std::string> split_in_chunks(std::string_view body, size_t chunk, std::string* rest = nullptr) {
  LineSplitter lines(8u << 20);
  std::vector<std::string> out;
  for (size_t at = 0; at < body.size(); at += chunk) {
    auto fed = lines.feed(body.substr(at, chunk), [&](std::string_view l) {
      out.emplace_back(l);
      return true;
    });
    EXPECT_EQ(fed, LineSplitter::Fed::more);
  }
  EXPECT_EQ(lines.bytes_scanned(), body.size()) << "chunks of " << chunk;
  if (rest) *rest = std::string(lines.rest());
  return out;
}

TEST(KubeLines, SameLinesWhateverTheChunksEachByteSearchedOnce) {
  const std::string body = "{\"type\":\"ADDED\"}\r\n\n{\"type\":\"MODIFIED\",\"x\":\"" + std::string(5000, 'm') +
                           "\"}\n\r\n{\"type\":\"BOOKMARK\"}\nunfinished";
  const std::vector<std::string> want = {"{\"type\":\"ADDED\"}", "{\"type\":\"MODIFIED\",\"x\":\"" + std::string(5000, 'm') + "\"}",
                                         "{\"type\":\"BOOKMARK\"}"};
  for (size_t chunk : {1ul, 2ul, 3ul, 7ul, 16ul, 4096ul, body.size()}) {
    std::string rest;
    EXPECT_EQ(split_in_chunks(body, chunk, &rest), want) << "chunks of " << chunk;
    EXPECT_EQ(rest, "unfinished") << "chunks of " << chunk;
  }
  // A page of a list: one 3 MB line in 4 KiB chunks, searched once, handed over whole.
  const std::string page = "{\"items\":[" + std::string(3u << 20, 'p') + "]}";
  std::string rest;
  const auto got = split_in_chunks(page + "\n", 4096, &rest);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], page);
  EXPECT_EQ(rest, "");
}

TEST(KubeLines, StopEndsTheFeedAndLongLinesAreRefused) {
  LineSplitter lines(10);
  std::vector<std::string> seen;
  auto fed = lines.feed("a\nb\nc\n", [&](std::string_view l) {
    seen.emplace_back(l);
    return l != "b";
  });
  EXPECT_EQ(fed, LineSplitter::Fed::stopped);
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b"}));

  // Ten bytes unfinished across chunks are kept; the eleventh is refused, whether the line
  // ends in that chunk or not, or came in one chunk.
  auto keep = [](std::string_view) { return true; };
  LineSplitter at_limit(10);
  EXPECT_EQ(at_limit.feed("12345", keep), LineSplitter::Fed::more);
  EXPECT_EQ(at_limit.feed("67890", keep), LineSplitter::Fed::more);
  EXPECT_EQ(at_limit.rest(), "1234567890");
  LineSplitter over(10);
  EXPECT_EQ(over.feed("123456", keep), LineSplitter::Fed::more);
  EXPECT_EQ(over.feed("78901", keep), LineSplitter::Fed::too_long);
  LineSplitter over_ended(10);
  EXPECT_EQ(over_ended.feed("123456", keep), LineSplitter::Fed::more);
  EXPECT_EQ(over_ended.feed("78901\n", keep), LineSplitter::Fed::too_long);
  LineSplitter whole(10);
  EXPECT_EQ(whole.feed("1234567890\n12345678901\n", keep), LineSplitter::Fed::too_long);
}

TEST(KubeConfig, CurrentContextWithTokenAndInlineCa) {
  const std::string text = R"(apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
- name: lab
  cluster:
    server: https://[fd00::1]
    certificate-authority: certs/lab-ca.pem
contexts:
- name: prod
  context: {cluster: prod, user: admin}
- name: lab
  context: {cluster: lab, user: lab-user, namespace: kube-system}
current-context: lab
users:
- name: admin
  user: {token: abc}
- name: lab-user
  user:
    tokenFile: lab.token
    client-certificate: certs/u.pem
    client-key: certs/u.key
)";
  auto c = parse_kubeconfig(text, "/etc/vigil/kubeconfig", false);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->host, "fd00::1");
  EXPECT_EQ(c->port, 443);
  EXPECT_EQ(c->ca_file, "/etc/vigil/certs/lab-ca.pem");
  EXPECT_EQ(c->token_file, "/etc/vigil/lab.token");
  EXPECT_EQ(c->client_cert_file, "/etc/vigil/certs/u.pem");
  EXPECT_EQ(c->client_key_file, "/etc/vigil/certs/u.key");
  EXPECT_FALSE(c->insecure);

  std::string prod = text;
  prod.replace(prod.find("current-context: lab"), 20, "current-context: prod");
  c = parse_kubeconfig(prod, "/k", false);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->host, "10.0.0.1");
  EXPECT_EQ(c->port, 6443);
  EXPECT_EQ(c->ca_pem, "-----BEGIN CERTIFICATE-----\n");
  EXPECT_EQ(c->token, "abc");
}

TEST(KubeConfig, RefusesWhatItCannotHonour) {
  auto err = [](const std::string& text, bool insecure = false) {
    auto c = parse_kubeconfig(text, "kc", insecure);
    return c.ok() ? std::string("(ok)") : c.error().message;
  };
  const std::string base = "clusters: [{name: c, cluster: {server: 'https://h:6443', insecure-skip-tls-verify: true}}]\n"
                           "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n";
  EXPECT_EQ(err(base + "users: [{name: u, user: {token: t}}]\n"),
            "kubeconfig kc: cluster 'c' sets insecure-skip-tls-verify; refused (set pods.kubernetes.allow_insecure: true to accept)");
  EXPECT_EQ(err(base + "users: [{name: u, user: {token: t}}]\n", true), "(ok)");
  EXPECT_EQ(err(base + "users: [{name: u, user: {exec: {command: aws}}}]\n", true),
            "kubeconfig kc: user 'u': exec and auth-provider credential plugins are not supported; use a token or a client certificate");
  EXPECT_EQ(err(base + "users: [{name: u, user: {client-certificate: a.pem}}]\n", true),
            "kubeconfig kc: user 'u': a client certificate needs its key and vice versa");
  EXPECT_EQ(err("current-context: nope\ncontexts: []\n"), "kubeconfig kc: context 'nope' not found");
  EXPECT_EQ(err("clusters: [{name: c, cluster: {server: 'http://h'}}]\ncontexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n"),
            "kubeconfig kc: cluster 'c': server 'http://h': only https:// API servers are supported");
  EXPECT_EQ(err("[1, 2"), "kubeconfig kc:1: invalid YAML: end of sequence flow not found");
}

TEST(KubeConfig, InClusterNeedsTheServiceEnvironment) {
  const std::string dir = temp_dir();
  std::ofstream(dir + "/token") << "sa-token\n";
  std::ofstream(dir + "/ca.crt") << "x";
  KubeOptions o;
  o.node = "n";
  o.service_account_dir = dir;
  unsetenv("KUBERNETES_SERVICE_HOST");
  auto c = resolve_connection(o);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("KUBERNETES_SERVICE_HOST"), std::string::npos);
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  c = resolve_connection(o);
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->host, "10.96.0.1");
  EXPECT_EQ(c->port, 443);
  EXPECT_EQ(c->token_file, dir + "/token");
  EXPECT_EQ(c->ca_file, dir + "/ca.crt");
  TokenSource t(c->token, c->token_file);
  EXPECT_EQ(*t.get(), "sa-token");
  fs::remove_all(dir);
}

// --- against the fake API server -------------------------------------------------------------

class KubeSource : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v openssl >/dev/null") != 0) GTEST_SKIP() << "openssl CLI missing";
    ASSERT_TRUE(pki_.ok()) << pki_.log();
    dir_ = temp_dir();
    write_token("token-1");
    server_ = std::make_unique<FakeApiServer>(pki_);
    ASSERT_GT(server_->port(), 0);
    server_->set_list("pods", load("pods-list.json"));
    server_->set_list("namespaces", load("namespaces-list.json"));
    events_ = lines("pods-watch.jsonl");
    ASSERT_EQ(events_.size(), 6u);
  }
  void TearDown() override {
    if (source_) source_->stop();
    source_.reset();
    server_.reset();
    fs::remove_all(dir_);
  }

  // Atomically, as the kubelet does (a new file swapped in).
  void write_token(const std::string& t) {
    std::ofstream(dir_ + "/token.tmp") << t << "\n";
    fs::rename(dir_ + "/token.tmp", dir_ + "/token");
  }

  KubeOptions options() {
    KubeOptions o;
    o.node = "worker-1";
    o.api_server = server_->url();
    o.ca_file = pki_.path("ca.pem");
    o.token_file = dir_ + "/token";
    o.service_account_dir = dir_;  // never the real one
    o.backoff_initial_seconds = 0.02;
    o.backoff_max_seconds = 0.2;
    o.request_timeout_seconds = 2;
    o.watch_timeout_seconds = 30;
    return o;
  }

  void start(KubeOptions o) {
    auto s = KubePods::create(o);
    ASSERT_TRUE(s.ok()) << s.error().message;
    source_ = std::move(*s);
    source_->start();
  }
  void start() { start(options()); }

  KubeSnapshot snap() { return source_->snapshot(); }
  bool watching() {
    auto s = snap();
    return s.status.state == "watching" && server_->open_watches() >= 2;
  }
  // Waits for the view to have `want`.
  bool has_pods(const std::vector<std::string>& want) {
    return eventually([&] { return keys(snap()) == want; });
  }

  Pki pki_;
  std::string dir_;
  std::unique_ptr<FakeApiServer> server_;
  std::unique_ptr<KubePods> source_;
  std::vector<std::string> events_;
};

const std::vector<std::string> kInitial = {"batch/report-28461230-q2w9z", "default/db-0", "default/web-7d9f8b6c5-abcde"};

TEST_F(KubeSource, ListsThenFollowsAddedRelabelledDeletedAndRescheduledPods) {
  start();
  ASSERT_TRUE(has_pods(kInitial));
  ASSERT_TRUE(eventually([&] { return watching(); }));
  auto s = snap();
  EXPECT_TRUE(s.status.synced());
  EXPECT_GE(s.status.sync_age_seconds(), 0);
  EXPECT_LT(s.status.sync_age_seconds(), 10);
  EXPECT_EQ(s.status.resource_version, "48213");
  EXPECT_EQ(s.status.consecutive_errors, 0u);
  EXPECT_EQ(s.status.skipped_host_network, 1u);
  EXPECT_EQ(s.status.skipped_not_running, 1u);
  EXPECT_EQ(s.status.skipped_no_ip, 1u);
  EXPECT_EQ(s.status.errors, (std::map<std::string, uint64_t>{}));
  // Workloads: ReplicaSet -> Deployment and Job -> CronJob through GETs, StatefulSet as is.
  EXPECT_EQ(find(s, "default/web-7d9f8b6c5-abcde")->workload_kind, "Deployment");
  EXPECT_EQ(find(s, "default/web-7d9f8b6c5-abcde")->workload_name, "web");
  EXPECT_EQ(find(s, "default/db-0")->workload_kind, "StatefulSet");
  EXPECT_EQ(find(s, "default/db-0")->workload_name, "db");
  EXPECT_EQ(find(s, "batch/report-28461230-q2w9z")->workload_kind, "CronJob");
  EXPECT_EQ(find(s, "batch/report-28461230-q2w9z")->workload_name, "report");
  // The spec carries it too (metric labels workload_kind, workload), so a change of owner is a
  // change of the pod list.
  EXPECT_EQ(find(s, "default/web-7d9f8b6c5-abcde")->spec.workload_kind, "Deployment");
  EXPECT_EQ(find(s, "default/web-7d9f8b6c5-abcde")->spec.workload_name, "web");
  EXPECT_EQ(s.pods[2].ip, "10.244.1.12");
  EXPECT_EQ(s.pods[2].netns, "");

  // The requests: this node's pods, paged, then a watch from the list's resourceVersion.
  auto lists = server_->requests("/api/v1/pods", 0);
  ASSERT_EQ(lists.size(), 1u);
  EXPECT_EQ(lists[0].param("fieldSelector"), "spec.nodeName=worker-1");
  EXPECT_EQ(lists[0].param("limit"), "500");
  EXPECT_EQ(lists[0].authorization, "Bearer token-1");
  auto watches = server_->requests("/api/v1/pods", 1);
  ASSERT_EQ(watches.size(), 1u);
  EXPECT_EQ(watches[0].param("resourceVersion"), "48213");
  EXPECT_EQ(watches[0].param("allowWatchBookmarks"), "true");
  EXPECT_EQ(watches[0].param("fieldSelector"), "spec.nodeName=worker-1");
  EXPECT_EQ(watches[0].param("timeoutSeconds"), "30");

  const uint64_t gen = s.generation;
  server_->line("pods", events_[0]);  // ADDED web-...-fghij
  ASSERT_TRUE(has_pods({"batch/report-28461230-q2w9z", "default/db-0", "default/web-7d9f8b6c5-abcde", "default/web-7d9f8b6c5-fghij"}));
  EXPECT_GT(snap().generation, gen);
  EXPECT_EQ(find(snap(), "default/web-7d9f8b6c5-fghij")->workload_name, "web");

  server_->line("pods", events_[1]);  // MODIFIED: app=web-canary
  ASSERT_TRUE(eventually([&] {
    const auto s = snap();
    auto p = find(s, "default/web-7d9f8b6c5-abcde");
    return p && p->spec.labels == std::map<std::string, std::string>{{"app", "web-canary"}};
  }));

  server_->line("pods", events_[2]);  // BOOKMARK
  ASSERT_TRUE(eventually([&] { return snap().status.resource_version == "48230"; }));
  EXPECT_EQ(snap().status.bookmarks, 1u);

  server_->line("pods", events_[3]);  // DELETED db-0
  ASSERT_TRUE(has_pods({"batch/report-28461230-q2w9z", "default/web-7d9f8b6c5-abcde", "default/web-7d9f8b6c5-fghij"}));

  server_->line("pods", events_[4]);  // db-0 again, bound to worker-2: not ours
  ASSERT_TRUE(eventually([&] { return snap().status.resource_version == "48250"; }));
  EXPECT_EQ(keys(snap()), (std::vector<std::string>{"batch/report-28461230-q2w9z", "default/web-7d9f8b6c5-abcde",
                                                    "default/web-7d9f8b6c5-fghij"}));

  // One GET of the ReplicaSet served all three of its pods (the cache).
  EXPECT_EQ(server_->requests("/apis/apps/v1/namespaces/default/replicasets/web-7d9f8b6c5").size(), 1u);
  EXPECT_EQ(errors(snap(), "decode"), 0u);
}

// A pod's workload is part of its series' labels. When the ReplicaSet's GET fails after what was
// known of it grew old, the pod keeps the workload known last (Deployment web) instead of the
// ReplicaSet's name, which would change its series and attach it again, and back at the next
// answer.
TEST_F(KubeSource, AFailedOwnerLookupKeepsTheWorkloadKnownLast) {
  KubeOptions o = options();
  o.owner_ttl_seconds = 0.1;
  start(o);
  ASSERT_TRUE(has_pods(kInitial));
  ASSERT_EQ(find(snap(), "default/web-7d9f8b6c5-abcde")->workload_kind, "Deployment");
  ASSERT_TRUE(eventually([&] { return watching(); }));
  server_->fail_gets(500);
  std::this_thread::sleep_for(300ms);  // older than the lookup's time to live
  const size_t gets = server_->requests("/apis/apps/v1/namespaces/default/replicasets/web-7d9f8b6c5").size();
  server_->line("pods", events_[1]);  // MODIFIED: app=web-canary, looked up again
  ASSERT_TRUE(eventually([&] {
    const auto s = snap();
    auto p = find(s, "default/web-7d9f8b6c5-abcde");
    return p && p->spec.labels == std::map<std::string, std::string>{{"app", "web-canary"}};
  }));
  EXPECT_GT(server_->requests("/apis/apps/v1/namespaces/default/replicasets/web-7d9f8b6c5").size(), gets);
  const auto s = snap();
  EXPECT_GE(errors(s, "owner"), 1u);
  auto p = find(s, "default/web-7d9f8b6c5-abcde");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->spec.workload_kind, "Deployment");
  EXPECT_EQ(p->spec.workload_name, "web");
}

TEST_F(KubeSource, ErrorEvent410AndHttp410ListAgain) {
  start();
  ASSERT_TRUE(has_pods(kInitial));
  ASSERT_TRUE(eventually([&] { return watching(); }));
  // The server moved on: db-0 is gone from its list, web-fghij appeared.
  json list = load("pods-list.json");
  list["metadata"]["resourceVersion"] = "48300";
  list["items"].erase(0);  // db-0
  list["items"].push_back(json::parse(events_[0])["object"]);
  server_->set_list("pods", list);
  server_->line("pods", events_[5]);  // ERROR 410
  ASSERT_TRUE(has_pods({"batch/report-28461230-q2w9z", "default/web-7d9f8b6c5-abcde", "default/web-7d9f8b6c5-fghij"}));
  ASSERT_TRUE(eventually([&] { return server_->requests("/api/v1/pods", 1).size() == 2u; }));
  EXPECT_EQ(server_->requests("/api/v1/pods", 1)[1].param("resourceVersion"), "48300");
  EXPECT_EQ(server_->requests("/api/v1/pods", 0).size(), 2u);
  EXPECT_EQ(errors(snap(), "gone"), 1u);

  // 410 as the watch request's status.
  list["metadata"]["resourceVersion"] = "48400";
  server_->set_list("pods", list);
  server_->gone_on_next_watch("pods");
  server_->push("pods", {Step::End, ""});
  ASSERT_TRUE(eventually([&] { return server_->requests("/api/v1/pods", 0).size() == 3u && snap().status.resource_version == "48400"; }));
  ASSERT_TRUE(eventually([&] { return errors(snap(), "gone") == 2u; }));
  EXPECT_EQ(snap().status.lists, 3u);
}

TEST_F(KubeSource, DroppedWatchResumesFromTheLastResourceVersion) {
  start();
  ASSERT_TRUE(eventually([&] { return watching(); }));
  server_->line("pods", events_[0]);
  server_->push("pods", {Step::DropMidLine, events_[1]});  // the relabel arrives half-written
  ASSERT_TRUE(eventually([&] { return server_->requests("/api/v1/pods", 1).size() == 2u; }));
  const auto resumed = server_->requests("/api/v1/pods", 1)[1];
  EXPECT_EQ(resumed.param("resourceVersion"), "48220");  // after the ADDED, not the list's
  EXPECT_EQ(server_->requests("/api/v1/pods", 0).size(), 1u);  // no re-list
  auto s = snap();
  EXPECT_EQ(errors(s, "stream"), 1u);
  EXPECT_EQ(errors(s, "decode"), 0u);  // the half event was never parsed
  EXPECT_EQ(find(s, "default/web-7d9f8b6c5-abcde")->spec.labels.at("app"), "web");
  EXPECT_EQ(s.pods.size(), 4u);
  server_->line("pods", events_[1]);  // the server sends it again on the new watch
  ASSERT_TRUE(eventually([&] {
    const auto s = snap();
    auto p = find(s, "default/web-7d9f8b6c5-abcde");
    return p && p->spec.labels.at("app") == "web-canary";
  }));
  EXPECT_EQ(snap().status.consecutive_errors, 0u);
}

TEST_F(KubeSource, MalformedEventsAreCountedAndSkipped) {
  start();
  ASSERT_TRUE(has_pods(kInitial));
  ASSERT_TRUE(eventually([&] { return watching(); }));
  const uint64_t gen = snap().generation;
  json bad_labels = json::parse(events_[1]);
  bad_labels["object"]["metadata"]["labels"] = {{"app", 7}};
  json no_name = json::parse(events_[0]);
  no_name["object"]["metadata"].erase("name");
  server_->line("pods", "{\"type\":\"ADDED\",\"object\":{\"metadata\":");  // cut short
  server_->line("pods", "[1,2,3]");
  server_->line("pods", R"({"type":"ADDED"})");
  server_->line("pods", R"({"type":"RENAMED","object":{}})");
  server_->line("pods", bad_labels.dump());
  server_->line("pods", no_name.dump());
  server_->line("pods", events_[3]);  // a good one after: DELETED db-0
  ASSERT_TRUE(has_pods({"batch/report-28461230-q2w9z", "default/web-7d9f8b6c5-abcde"}));
  auto s = snap();
  EXPECT_EQ(errors(s, "decode"), 6u);
  EXPECT_EQ(find(s, "default/web-7d9f8b6c5-abcde")->spec.labels.at("app"), "web");  // untouched
  EXPECT_GT(s.status.last_error.size(), 0u);
  EXPECT_GT(s.generation, gen);
  // A skipped event may have hidden a change: once this watch ends, the source lists again.
  server_->push("pods", {Step::End, ""});
  ASSERT_TRUE(eventually([&] { return server_->requests("/api/v1/pods", 0).size() == 2u; }));
  ASSERT_TRUE(has_pods(kInitial));  // the server's list still has db-0
}

TEST_F(KubeSource, RotatedTokenIsUsedByTheNextRequest) {
  start();
  ASSERT_TRUE(eventually([&] { return watching(); }));
  write_token("token-2");
  server_->set_token("token-2");
  server_->push("pods", {Step::End, ""});  // the watch times out; the next one carries the new token
  ASSERT_TRUE(eventually([&] { return server_->requests("/api/v1/pods", 1).size() >= 2u; }));
  EXPECT_EQ(server_->requests("/api/v1/pods", 1)[1].authorization, "Bearer token-2");
  EXPECT_EQ(errors(snap(), "auth"), 0u);
  EXPECT_EQ(snap().status.token_reloads, 1u);

  // A token the server refuses: 401, counted, backing off; fixed in the file: recovers.
  server_->set_token("token-3");
  server_->push("pods", {Step::End, ""});
  ASSERT_TRUE(eventually([&] { return errors(snap(), "auth") >= 2u; }));
  EXPECT_EQ(snap().status.state, "backoff");
  EXPECT_GE(snap().status.consecutive_errors, 2u);
  EXPECT_EQ(keys(snap()), kInitial);  // the view stays
  write_token("token-3");
  ASSERT_TRUE(eventually([&] { return snap().status.state == "watching" && snap().status.consecutive_errors == 0u; }));
}

TEST_F(KubeSource, StaleWhileTheServerIsAwayAndRecoversWhenItReturns) {
  start();
  ASSERT_TRUE(has_pods(kInitial));
  ASSERT_TRUE(eventually([&] { return watching(); }));
  server_->line("pods", events_[0]);
  ASSERT_TRUE(eventually([&] { return snap().status.resource_version == "48220"; }));
  const int port = server_->port();
  server_->shutdown();
  ASSERT_TRUE(eventually([&] { return snap().status.consecutive_errors >= 3u; }));
  auto s = snap();
  EXPECT_EQ(s.status.state, "backoff");
  EXPECT_EQ(s.pods.size(), 4u);  // the last good view
  const double age = s.status.sync_age_seconds();
  std::this_thread::sleep_for(300ms);
  EXPECT_GT(snap().status.sync_age_seconds(), age + 0.2);  // staleness grows

  const size_t watches_before = server_->requests("/api/v1/pods", 1).size();
  server_->start(port);
  ASSERT_TRUE(eventually([&] { return snap().status.state == "watching" && snap().status.consecutive_errors == 0u; }));
  ASSERT_TRUE(eventually([&] { return server_->requests("/api/v1/pods", 1).size() > watches_before; }));
  EXPECT_EQ(server_->requests("/api/v1/pods", 1).back().param("resourceVersion"), "48220");
  EXPECT_LT(snap().status.sync_age_seconds(), 5);
  EXPECT_GE(errors(snap(), "connect") + errors(snap(), "stream"), 3u);
}

TEST_F(KubeSource, FollowsPagesAndNamespaceAnnotations) {
  auto o = options();
  o.page_size = 2;
  start(o);
  ASSERT_TRUE(has_pods(kInitial));
  auto lists = server_->requests("/api/v1/pods", 0);
  ASSERT_EQ(lists.size(), 3u);  // 6 pods on worker-1 in pages of 2
  EXPECT_EQ(lists[0].param("continue"), "");
  EXPECT_EQ(lists[1].param("continue"), "page:2");
  EXPECT_EQ(lists[2].param("continue"), "page:4");
  EXPECT_EQ(lists[2].param("limit"), "2");
  ASSERT_TRUE(eventually([&] { return watching() && snap().status.namespaces_synced; }));
  EXPECT_EQ(find(snap(), "batch/report-28461230-q2w9z")->namespace_labels.at("team"), "data");
  server_->line("namespaces", lines("namespaces-watch.jsonl").at(0));  // batch: vigil.dev/observe "false"
  ASSERT_TRUE(has_pods({"default/db-0", "default/web-7d9f8b6c5-abcde"}));
  EXPECT_EQ(snap().status.skipped_out_of_scope, 1u);
}

// Remote context names peers of other nodes: EndpointSlices give pod addresses with their pod
// and Service, Services their cluster IPs. FQDN slices, headless and ExternalName Services
// name no address. Bounded, and followed by watch events.
TEST_F(KubeSource, NamesRemotePeersFromEndpointSlicesAndServices) {
  server_->set_list("endpointslices", load("endpointslices-list.json"));
  server_->set_list("services", load("services-list.json"));
  KubeOptions o = options();
  o.watch_peers = true;
  start(o);
  auto peers = [&] { return source_->peers(); };
  ASSERT_TRUE(eventually([&] { return peers() && peers()->size() == 6u && snap().status.peers_synced; }));
  const std::map<std::string, PeerInfo> want = {
      {"10.244.2.7", {"shop", "api-6b7c9d5f4-xk2lp", "api"}},
      {"10.244.3.9", {"shop", "api-6b7c9d5f4-p8q4d", "api"}},  // terminating: still its address
      {"fd00:10:244:1::5", {"kube-system", "coredns-5d78c9869d-8xk7w", "kube-dns"}},
      {"10.96.14.20", {"shop", "", "api"}},
      {"10.96.0.10", {"kube-system", "", "kube-dns"}},
      {"fd00:10:96::a", {"kube-system", "", "kube-dns"}},
  };
  EXPECT_EQ(*peers(), want);

  // A slice is added, the api slice goes, a malformed slice is counted and skipped.
  json slice = load("endpointslices-list.json")["items"][0];
  json added = slice;
  added["metadata"]["name"] = "cart-2vb7n";
  added["metadata"]["labels"]["kubernetes.io/service-name"] = "cart";
  added["endpoints"] = json::array({{{"addresses", {"10.244.4.4"}}, {"targetRef", {{"kind", "Pod"}, {"namespace", "shop"}, {"name", "cart-0"}}}}});
  json bad = slice;
  bad["metadata"]["name"] = "bad";
  bad["endpoints"][0]["addresses"] = "10.244.9.9";  // not a list
  ASSERT_TRUE(eventually([&] { return server_->open_watches() >= 4; }));
  server_->line("endpointslices", json{{"type", "ADDED"}, {"object", added}}.dump());
  server_->line("endpointslices", json{{"type", "ADDED"}, {"object", bad}}.dump());
  server_->line("endpointslices", json{{"type", "DELETED"}, {"object", slice}}.dump());
  ASSERT_TRUE(eventually([&] { return peers()->count("10.244.4.4") && !peers()->count("10.244.2.7"); }));
  EXPECT_EQ(peers()->at("10.244.4.4"), (PeerInfo{"shop", "cart-0", "cart"}));
  EXPECT_EQ(peers()->size(), 5u);  // the api slice's two pods went, cart-0 came
  EXPECT_EQ(errors(snap(), "decode"), 1u);
  EXPECT_NE(snap().status.last_error.find("endpoints[0].addresses: expected an array"), std::string::npos)
      << snap().status.last_error;
  // The pods view was never touched by any of it.
  EXPECT_EQ(keys(snap()), kInitial);
}

// A rollout sends a burst of EndpointSlice events; the directory (every slice and Service's
// addresses) is rebuilt when read after them, not once per event.
TEST_F(KubeSource, PeerDirectoryRebuiltWhenReadNotOnEveryEvent) {
  server_->set_list("endpointslices", load("endpointslices-list.json"));
  server_->set_list("services", load("services-list.json"));
  KubeOptions o = options();
  o.watch_peers = true;
  start(o);
  int reads = 0;
  auto peers = [&] {
    ++reads;
    return source_->peers();
  };
  ASSERT_TRUE(eventually([&] { return peers() && peers()->size() == 6u && snap().status.peers_synced; }));
  ASSERT_TRUE(eventually([&] { return server_->open_watches() >= 4; }));
  const uint64_t rebuilds = snap().status.peer_rebuilds;
  reads = 0;
  // 300 updates of one slice, its pod's address moving each time; the last one is 10.244.7.99.
  json slice = load("endpointslices-list.json")["items"][0];
  const int kEvents = 300;
  for (int i = 1; i <= kEvents; ++i) {
    json changed = slice;
    const std::string addr = i == kEvents ? "10.244.7.99" : "10.244.8." + std::to_string(i % 250);
    changed["endpoints"] = json::array({{{"addresses", {addr}}, {"targetRef", {{"kind", "Pod"}, {"namespace", "shop"}, {"name", "api-0"}}}}});
    server_->line("endpointslices", json{{"type", "MODIFIED"}, {"object", changed}}.dump());
  }
  ASSERT_TRUE(eventually([&] { return peers()->count("10.244.7.99") == 1; }));
  EXPECT_EQ(peers()->at("10.244.7.99"), (PeerInfo{"shop", "api-0", "api"}));
  EXPECT_EQ(peers()->size(), 5u);  // the slice's two addresses became one
  const uint64_t grew = snap().status.peer_rebuilds - rebuilds;
  EXPECT_GE(grew, 1u);
  EXPECT_LE(grew, static_cast<uint64_t>(reads) + 1) << "at most one rebuild a read";  // + the snap() above
  EXPECT_LT(grew, static_cast<uint64_t>(kEvents) / 2) << grew << " rebuilds for " << kEvents << " events, " << reads << " reads";
  std::printf("%d slice events, %d reads: %llu rebuilds\n", kEvents, reads, static_cast<unsigned long long>(grew));
}

TEST_F(KubeSource, PeerDirectoryIsBoundedAndOffUnlessAsked) {
  server_->set_list("endpointslices", load("endpointslices-list.json"));
  server_->set_list("services", load("services-list.json"));
  KubeOptions o = options();
  o.watch_peers = true;
  o.max_peer_addresses = 4;
  start(o);
  ASSERT_TRUE(eventually([&] { return snap().status.peers_synced && source_->peers() && source_->peers()->size() == 4u; }));
  EXPECT_EQ(snap().status.peers_dropped, 2u);
  source_->stop();
  source_.reset();

  // Without watch_peers (no remote context) neither collection is asked for.
  const size_t asked = server_->requests("/apis/discovery.k8s.io/v1/endpointslices").size();
  start();
  ASSERT_TRUE(has_pods(kInitial));
  EXPECT_EQ(server_->requests("/apis/discovery.k8s.io/v1/endpointslices").size(), asked);
  EXPECT_FALSE(source_->peers());
}

TEST_F(KubeSource, CertificateOfAnotherCaIsRefused) {
  auto o = options();
  o.ca_file = pki_.path("other.pem");
  start(o);
  ASSERT_TRUE(eventually([&] { return errors(snap(), "connect") >= 2u; }));
  auto s = snap();
  EXPECT_FALSE(s.status.synced());
  EXPECT_LT(s.status.sync_age_seconds(), 0);
  EXPECT_TRUE(s.pods.empty());
  EXPECT_NE(s.status.last_error.find("certificate"), std::string::npos) << s.status.last_error;
  EXPECT_TRUE(server_->requests("/api/v1/pods").empty());
}

}  // namespace
}  // namespace vigil::kube
