// Captures end to end on the real kernel: lab pods under steady traffic, the agent with its
// lookback, a rule that captures when it fires, the HTTP API and CLI, the real tshark reading
// the result; then the limits (quota, concurrency), bad requests, a full disk and a flood.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <httplib.h>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

const char* kCaptureRule = R"lua(
rule {
  name = "pod-drop-surge",
  metric = "vigil_drop_packets_total",
  where = { direction = "ingress", reason = "NETFILTER_DROP" },
  by = { "namespace", "pod" },
  detect = threshold { above = 5 },
  severity = "critical",
  resolve_after = "4s",
  capture = { before = "5s", after = "3s", snaplen = 200 },
  on_anomaly = function(a)
    notify("hook", a)
  end,
}
)lua";

struct ApiCall {
  int status = -1;
  nlohmann::json body;
  std::string raw;
};

class Captures : public ::testing::Test {
 protected:
  void SetUp() override { VIGIL_REQUIRE_ROOT(); }

  void TearDown() override {
    traffic_.clear();
    if (agent_) {
      EXPECT_EQ(agent_->terminate(), 0) << agent_->log();
    }
    agent_.reset();
    lab_.reset();
  }

  // Lab pods serving HTTP, and the agent with `extra` config appended.
  void start(int pods, const std::string& extra, const std::string& rule = "") {
    lab_ = std::make_unique<Lab>(pods);
    for (int p = 1; p <= pods; ++p) lab_->cmd("serve-http " + std::to_string(p));
    port_ = free_port();
    if (!rule.empty()) write_temp_file(dir_.path(), "rule.lua", rule);
    std::string config = "node: test-node\n"
                         "listen: 127.0.0.1:" + std::to_string(port_) + "\n"
                         "tick: 500ms\n"
                         "state_dir: " + dir_.path() + "/state\n"
                         "pods:\n  source: file\n  file: " + lab_->pods_file() + "\n" +
                         (rule.empty() ? "rules: []\n" : "rules: [" + dir_.path() + "/rule.lua]\n") +
                         "notifiers:\n  - name: hook\n    type: webhook\n    url: " + receiver_.url() + "\n"
                         "    agent_url: http://127.0.0.1:" + std::to_string(port_) + "\n" + extra;
    const std::string path = write_temp_file(dir_.path(), "vigil.yaml", config);
    agent_ = std::make_unique<Process>(std::vector<std::string>{binary_path("vigil"), "agent", "--config", path},
                                       dir_.path() + "/agent.log");
    for (int i = 0; i < 150; ++i) {
      int status = 0;
      auto body = http_get("127.0.0.1", port_, "/api/v1/pods", &status);
      auto j = nlohmann::json::parse(body, nullptr, false);
      if (status == 200 && j.is_array() && static_cast<int>(j.size()) == pods &&
          std::all_of(j.begin(), j.end(), [](const auto& p) { return p.value("attached", false); })) {
        metrics_after_ticks(port_, 2);  // the lookback is switched on at the end of a tick
        return;
      }
      ASSERT_TRUE(agent_->running()) << agent_->log();
      std::this_thread::sleep_for(100ms);
    }
    FAIL() << "agent did not attach to the lab pods:\n" << agent_->log();
  }

  // `connections`: the client's connections (vigil-lab's default is 4).
  std::unique_ptr<Process> http_traffic(int from, int to, int rate, int seconds, int connections = 4) {
    return std::make_unique<Process>(
        std::vector<std::string>{"/bin/sh", "-c",
                                 "VIGIL_LAB_TRAFFIC=" + binary_path("tests/tools/vigil-lab-traffic") + " exec " +
                                     source_path("tests/lab/vigil-lab") + " --prefix " + lab_->prefix() + " http " +
                                     std::to_string(from) + " " + std::to_string(to) + " " + std::to_string(rate) +
                                     " " + std::to_string(seconds) + " " + std::to_string(connections)},
        dir_.path() + "/traffic-" + std::to_string(from) + "-" + std::to_string(to) + ".log");
  }

  ApiCall api(const std::string& method, const std::string& path, const std::string& body = "",
              const std::string& token = "") {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(10, 0);
    if (!token.empty()) c.set_bearer_token_auth(token);
    httplib::Result r = method == "POST"     ? c.Post(path, body, "application/json")
                        : method == "DELETE" ? c.Delete(path)
                                             : c.Get(path);
    ApiCall out;
    if (!r) return out;
    out.status = r->status;
    out.raw = r->body;
    out.body = nlohmann::json::parse(r->body, nullptr, false);
    return out;
  }

  // Waits (bounded) until the capture has ended; its manifest.
  nlohmann::json wait_ended(const std::string& id, std::chrono::seconds timeout = 30s) {
    nlohmann::json m;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = api("GET", "/api/v1/captures/" + id);
      if (r.status == 200) {
        m = r.body;
        if (m.value("status", "") != "running") return m;
      }
      std::this_thread::sleep_for(200ms);
    }
    ADD_FAILURE() << "capture " << id << " still running after " << timeout.count() << " s: " << m.dump(2);
    return m;
  }

  std::string download(const std::string& id) {
    const std::string file = dir_.path() + "/" + id + ".pcapng";
    auto r = run(binary_path("vigil") + " capture get " + id + " --agent 127.0.0.1:" + std::to_string(port_) +
                 " --output " + file);
    EXPECT_EQ(r.status, 0) << r.output;
    return file;
  }

  ScopedTempDir dir_;
  WebhookReceiver receiver_;
  std::unique_ptr<Lab> lab_;
  std::unique_ptr<Process> agent_;
  std::vector<std::unique_ptr<Process>> traffic_;
  int port_ = 0;
};

struct Packet {
  double time = 0;
  std::string src, dst, interface;
};

// Every packet of a pcapng as tshark reads it; `warnings` gets what tshark wrote on stderr
// besides the note it prints when run as root.
std::vector<Packet> read_with_tshark(const std::string& file, std::string& warnings) {
  // In a subshell: run() sends stderr to stdout after the command's own redirections.
  auto r = run("(tshark -r " + file + " -T fields -E separator=/t -e frame.time_epoch -e ip.src -e ip.dst "
               "-e frame.interface_name 2>" + file + ".stderr)");
  EXPECT_EQ(r.status, 0) << r.output;
  std::ifstream err(file + ".stderr");
  std::string line;
  warnings.clear();
  while (std::getline(err, line))
    if (line.find("Running as user \"root\"") == std::string::npos && !line.empty()) warnings += line + "\n";
  std::vector<Packet> out;
  std::istringstream in(r.output);
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    Packet p;
    std::string t;
    std::getline(fields, t, '\t');
    std::getline(fields, p.src, '\t');
    std::getline(fields, p.dst, '\t');
    std::getline(fields, p.interface, '\t');
    p.time = std::strtod(t.c_str(), nullptr);
    out.push_back(p);
  }
  return out;
}

// The lab test of the issue: three pods under steady traffic, then a fault on pod B; the
// rule's capture holds only B's packets, from up to `before` seconds before the trigger, on an
// interface named after B, in a file tshark reads without a warning.
TEST_F(Captures, RuleCaptureHoldsOnlyTheFaultyPodWithTheSecondsBefore) {
  start(3, "", kCaptureRule);
  if (HasFatalFailure()) return;
  traffic_.push_back(http_traffic(1, 2, 50, 40));
  traffic_.push_back(http_traffic(2, 3, 50, 40));
  traffic_.push_back(http_traffic(3, 1, 50, 40));
  std::this_thread::sleep_for(7s);  // more than `before` of lookback for every pod
  lab_->cmd("drop 2 50 ingress");
  ASSERT_TRUE(receiver_.wait_for([](const auto& b) { return !b.empty(); }, 15s)) << agent_->log();
  lab_->cmd("clear 2");
  const auto firing = receiver_.bodies().front();
  ASSERT_EQ(firing["scope"].value("pod", ""), "pod-2") << firing.dump(2);
  ASSERT_TRUE(firing.contains("captures")) << firing.dump(2);
  ASSERT_EQ(firing["captures"].size(), 1u) << firing.dump(2);
  const std::string id = firing["captures"][0]["id"];
  EXPECT_EQ(firing["captures"][0].value("url", ""),
            "http://127.0.0.1:" + std::to_string(port_) + "/api/v1/captures/" + id + "/pcap");

  auto m = wait_ended(id);
  EXPECT_EQ(m.value("status", ""), "complete") << m.dump(2);
  EXPECT_EQ(m.value("ended_by", ""), "after_elapsed") << m.dump(2);
  EXPECT_EQ(m.value("rule", ""), "pod-drop-surge");
  EXPECT_EQ(m.value("anomaly_id", ""), firing.value("id", ""));
  EXPECT_EQ(m.value("packets_lost", 1), 0) << m.dump(2);
  ASSERT_EQ(m["pods"].size(), 1u) << m.dump(2);
  EXPECT_EQ(m["pods"][0].value("name", ""), "pod-2");

  // The channels told of the anomaly are told when its capture is ready.
  ASSERT_TRUE(receiver_.wait_for(
      [](const auto& bodies) {
        return std::any_of(bodies.begin(), bodies.end(), [](const auto& b) { return b.value("event", "") == "capture.completed"; });
      },
      10s))
      << nlohmann::json(receiver_.bodies()).dump(2);
  for (const auto& b : receiver_.bodies()) {
    if (b.value("event", "") != "capture.completed") continue;
    EXPECT_EQ(b.value("id", ""), firing.value("id", ""));
    EXPECT_EQ(b["capture"].value("id", ""), id);
    EXPECT_EQ(b["capture"].value("status", ""), "complete");
    EXPECT_EQ(b["capture"].value("packets", 0ull), m.value("packets", 1ull));
    EXPECT_EQ(b["capture"].value("url", ""), firing["captures"][0].value("url", ""));
  }

  const std::string file = download(id);
  std::string warnings;
  auto packets = read_with_tshark(file, warnings);
  EXPECT_EQ(warnings, "");
  ASSERT_GT(packets.size(), 50u) << m.dump(2);
  EXPECT_EQ(static_cast<uint64_t>(packets.size()), m.value("packets", 0ull));
  const std::string b = lab_->ip(2);
  const double trigger = m["window"].value("trigger", 0.0);
  double first = packets.front().time;
  for (const auto& p : packets) {
    EXPECT_EQ(p.interface, "pod-2");
    if (!p.src.empty()) {  // ARP has no IP
      EXPECT_TRUE(p.src == b || p.dst == b) << p.src << " -> " << p.dst;
    }
    first = std::min(first, p.time);
  }
  // Steady traffic every 20 ms: the lookback reaches back (almost) the whole 5 s, never more.
  EXPECT_LE(first, trigger - 4.0) << "first packet " << first << ", trigger " << trigger;
  EXPECT_GE(first, trigger - 5.0 - 0.01);
  std::printf("capture %s: %zu packets from %.3f s before the trigger to %.3f s after\n", id.c_str(), packets.size(),
              trigger - first, packets.back().time - trigger);

  // The bundle was taken inside B's namespace.
  const std::string bundle = dir_.path() + "/state/captures/" + id + "/bundle/lab_pod-2/addresses.json";
  std::ifstream in(bundle);
  std::stringstream addresses;
  addresses << in.rdbuf();
  EXPECT_NE(addresses.str().find(b), std::string::npos) << bundle << ": " << addresses.str();
  struct stat st {};
  ASSERT_EQ(stat((dir_.path() + "/state/captures/" + id + "/capture.pcapng").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto text = metrics_after_ticks(port_, 1);
  EXPECT_GE(metric_value(text, "vigil_captures_started_total", {}).value_or(0), 1.0) << text;
  EXPECT_GE(metric_value(text, "vigil_lookback_pods", {}).value_or(0), 3.0) << text;
}

// A pod attached again on the same interface (here: its labels changed, so its series start
// under the new ones) keeps its lookback: a capture of it asked for afterwards still holds the
// seconds before. (Its new slot entry had no capture, while the capture side still took it for
// set: the ring got nothing of the pod.)
TEST_F(Captures, APodAttachedAgainKeepsItsLookback) {
  start(2, "captures:\n  lookback:\n    pods: all\n");
  if (HasFatalFailure()) return;
  traffic_.push_back(http_traffic(1, 2, 50, 30));
  std::this_thread::sleep_for(1s);
  // pod-2's labels change: the agent attaches it again.
  const std::string pods = lab_->pods_file();
  std::string text;
  {
    std::ifstream in(pods);
    std::stringstream all;
    all << in.rdbuf();
    text = all.str();
  }
  const size_t at = text.find("name: pod-2\n  labels: {app: lab");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(text.find("app: lab", at), 8, "app: web");
  write_temp_file(fs::path(pods).parent_path().string(), fs::path(pods).filename().string(), text);
  ASSERT_TRUE(wait_until([&] { return agent_->log().find("pod lab/pod-2: changed, re-attaching") != std::string::npos; }, 10s))
      << agent_->log();
  metrics_after_ticks(port_, 2);
  std::this_thread::sleep_for(3s);  // lookback after the re-attach
  auto r = api("POST", "/api/v1/captures", R"({"pods": ["lab/pod-2"], "before": "2s", "after": "1s"})");
  ASSERT_EQ(r.status, 201) << r.raw;
  const std::string id = r.body.value("id", "");
  auto m = wait_ended(id);
  EXPECT_EQ(m.value("status", ""), "complete") << m.dump(2);
  std::string warnings;
  auto packets = read_with_tshark(download(id), warnings);
  ASSERT_FALSE(packets.empty()) << m.dump(2);
  const double trigger = m["window"].value("trigger", 0.0);
  double first = packets.front().time;
  for (const auto& p : packets) first = std::min(first, p.time);
  EXPECT_LE(first, trigger - 1.5) << "no lookback: first packet " << first << ", trigger " << trigger;
}

// 50 captures asked for in a burst: never more running than max_concurrent, never more on disk
// than the quota; every refusal is answered, counted and reported by reason.
TEST_F(Captures, BurstOf50StaysWithinQuotaAndConcurrency) {
  start(2,
        "captures:\n  disk_quota: 1MiB\n  max_bytes: 256KiB\n  max_concurrent: 2\n  before: 1s\n  after: 2s\n"
        "  lookback: {pods: all}\n");
  if (HasFatalFailure()) return;
  traffic_.push_back(http_traffic(1, 2, 100, 30));
  std::this_thread::sleep_for(2s);
  std::map<int, int> answers;
  size_t max_running = 0;
  const std::string captures_dir = dir_.path() + "/state/captures";
  auto disk_usage = [&] {
    uint64_t total = 0;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(captures_dir, ec); it != fs::recursive_directory_iterator(); ++it)
      if (it->is_regular_file(ec)) total += it->file_size(ec);
    return total;
  };
  uint64_t max_disk = 0;
  for (int i = 0; i < 50; ++i) {
    auto r = api("POST", "/api/v1/captures", R"({"pods": ["lab/pod-1"], "reason": "burst"})");
    ++answers[r.status];
    if (r.status != 201) {
      EXPECT_TRUE(r.body.contains("error")) << r.raw;
    }
    auto list = api("GET", "/api/v1/captures").body;
    size_t running = 0;
    for (const auto& c : list) running += c.value("status", "") == "running";
    max_running = std::max(max_running, running);
    max_disk = std::max(max_disk, disk_usage());
    std::this_thread::sleep_for(100ms);  // the burst spans more than one capture's lifetime
  }
  EXPECT_LE(max_running, 2u);
  EXPECT_LE(max_disk, 1u << 20);
  EXPECT_GE(answers[201], 2);
  const int refused = 50 - answers[201];
  EXPECT_GT(refused, 0);
  EXPECT_EQ(answers[201] + answers[429] + answers[507], 50) << nlohmann::json(answers).dump();
  auto text = metrics_after_ticks(port_, 1);
  EXPECT_EQ(metric_sum(text, "vigil_captures_refused_total", {}), refused) << text;
  EXPECT_EQ(metric_value(text, "vigil_captures_refused_total", {{"reason", "concurrency"}}).value_or(-1), answers[429]);
  for (int i = 0; i < 50 && metric_value(text, "vigil_captures_running", {}).value_or(1) > 0; ++i)
    text = metrics_after_ticks(port_, 1);
  EXPECT_LE(disk_usage(), 1u << 20);
  std::printf("burst of 50: %d started, %d refused (%d concurrency, %d quota); peak %zu running, %llu bytes on disk\n",
              answers[201], refused, answers[429], answers[507], max_running, static_cast<unsigned long long>(max_disk));
}

// Bad requests get a clear answer, a log line and a metric, and the agent goes on.
TEST_F(Captures, BadRequestsAreAnsweredAndCounted) {
  start(2, "captures:\n  lookback: {pods: all}\n");
  if (HasFatalFailure()) return;
  auto bad_filter = api("POST", "/api/v1/captures", R"({"pods": ["lab/pod-1"], "filter": "tcp prot 80"})");
  EXPECT_EQ(bad_filter.status, 400) << bad_filter.raw;
  EXPECT_NE(bad_filter.body.value("error", "").find("tcp prot 80"), std::string::npos) << bad_filter.raw;
  auto unknown = api("POST", "/api/v1/captures", R"({"pods": ["lab/nope"]})");
  EXPECT_EQ(unknown.status, 404) << unknown.raw;
  EXPECT_NE(unknown.body.value("error", "").find("lab/nope"), std::string::npos) << unknown.raw;
  auto bad_field = api("POST", "/api/v1/captures", R"({"pods": ["lab/pod-1"], "before": "soon"})");
  EXPECT_EQ(bad_field.status, 400) << bad_field.raw;
  EXPECT_EQ(bad_field.body.value("error", "").rfind("before: ", 0), 0u) << bad_field.raw;
  auto no_capture = api("GET", "/api/v1/captures/does-not-exist");
  EXPECT_EQ(no_capture.status, 404);
  auto cli = run(binary_path("vigil") + " capture start --pod lab/pod-1 --filter 'udp port' --agent 127.0.0.1:" +
                 std::to_string(port_));
  EXPECT_EQ(cli.status, 1) << cli.output;
  EXPECT_NE(cli.output.find("HTTP 400"), std::string::npos) << cli.output;

  auto text = metrics_after_ticks(port_, 1);
  EXPECT_EQ(metric_value(text, "vigil_captures_refused_total", {{"reason", "bad_request"}}).value_or(0), 3) << text;
  EXPECT_EQ(metric_value(text, "vigil_captures_refused_total", {{"reason", "unknown_pod"}}).value_or(0), 1) << text;
  EXPECT_NE(agent_->log().find("lab/nope"), std::string::npos);

  // A good request still works, and the CLI waits for it and saves the file.
  const std::string out = dir_.path() + "/manual.pcapng";
  auto good = run(binary_path("vigil") + " capture start --pod lab/pod-1 --before 1s --after 1s --wait --output " +
                  out + " --agent 127.0.0.1:" + std::to_string(port_));
  EXPECT_EQ(good.status, 0) << good.output << agent_->log();
  auto info = run("capinfos -c " + out + " 2>/dev/null");
  EXPECT_EQ(info.status, 0) << info.output;
}

TEST_F(Captures, UnwritableDirectoryIsRefusedNotFatal) {
  write_temp_file(dir_.path(), "not-a-dir", "x");
  start(1, "captures:\n  dir: " + dir_.path() + "/not-a-dir/captures\n");
  if (HasFatalFailure()) return;
  auto r = api("POST", "/api/v1/captures", R"({"pods": ["lab/pod-1"]})");
  EXPECT_EQ(r.status, 507) << r.raw;
  EXPECT_NE(r.body.value("error", "").find("not-a-dir"), std::string::npos) << r.raw;
  int status = 0;
  http_get("127.0.0.1", port_, "/healthz", &status);
  EXPECT_EQ(status, 200);
  auto text = metrics_after_ticks(port_, 1);
  EXPECT_EQ(metric_value(text, "vigil_captures_refused_total", {{"reason", "storage"}}).value_or(0), 1) << text;
}

// A disk that fills up mid-capture: that capture fails and says why; the agent and the next
// capture go on.
TEST_F(Captures, FullDiskFailsTheCaptureOnly) {
  const std::string mnt = dir_.path() + "/small";
  fs::create_directories(mnt);
  ASSERT_EQ(mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=512k,mode=0700"), 0) << std::strerror(errno);
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{mnt};
  start(2, "captures:\n  dir: " + mnt + "/captures\n  disk_quota: 64MiB\n  snaplen: 1500\n  lookback: {pods: all}\n");
  if (HasFatalFailure()) return;
  traffic_.push_back(http_traffic(1, 2, 200, 20));
  auto r = api("POST", "/api/v1/captures", R"({"pods": ["lab/pod-2"], "before": "1s", "after": "8s"})");
  ASSERT_EQ(r.status, 201) << r.raw;
  auto m = wait_ended(r.body.value("id", ""));
  EXPECT_EQ(m.value("status", ""), "failed") << m.dump(2);
  EXPECT_EQ(m.value("ended_by", ""), "error") << m.dump(2);
  EXPECT_NE(m.dump().find("No space left on device"), std::string::npos) << m.dump(2);
  EXPECT_FALSE(m.value("complete", true));
  int status = 0;
  http_get("127.0.0.1", port_, "/healthz", &status);
  EXPECT_EQ(status, 200);
  auto text = metrics_after_ticks(port_, 1);
  EXPECT_EQ(metric_value(text, "vigil_captures_failed_total", {}).value_or(0), 1) << text;
  // Room again: the failed capture is deleted and the next one completes.
  EXPECT_EQ(api("DELETE", "/api/v1/captures/" + m.value("id", "")).status, 200);
  auto next = api("POST", "/api/v1/captures", R"({"pods": ["lab/pod-1"], "before": "0s", "after": "1s", "max_bytes": "64KiB"})");
  ASSERT_EQ(next.status, 201) << next.raw;
  auto m2 = wait_ended(next.body.value("id", ""));
  EXPECT_NE(m2.value("status", ""), "failed") << m2.dump(2);
}

// The captures API holds payload data: with a token set it needs the token.
TEST_F(Captures, ApiNeedsTheBearerTokenWhenOneIsSet) {
  const std::string token = "0123456789abcdef-test-token";
  write_temp_file(dir_.path(), "token", token + "\n");
  start(1, "api:\n  token_file: " + dir_.path() + "/token\n");
  if (HasFatalFailure()) return;
  EXPECT_EQ(api("GET", "/api/v1/captures").status, 401);
  EXPECT_EQ(api("GET", "/api/v1/captures", "", "wrong-token-wrong-token").status, 401);
  EXPECT_EQ(api("GET", "/api/v1/captures", "", token).status, 200);
  int status = 0;
  http_get("127.0.0.1", port_, "/metrics", &status);
  EXPECT_EQ(status, 200);  // the rest of the API stays open
  auto cli = run("VIGIL_API_TOKEN=" + token + " " + binary_path("vigil") + " capture list --agent 127.0.0.1:" +
                 std::to_string(port_));
  EXPECT_EQ(cli.status, 0) << cli.output;
}

// A rule without a `capture` option, as the shipped pack's are: its handler asks for a capture
// when it fires, after `pending`. No pod keeps a ring while all is well; the faulty pod gets one
// when its group turns pending (captures.lookback.pending, the default), so the capture holds
// the fault's onset. With lookback.pending off it starts at the firing, as before.
const char* kPendingRule = R"lua(
rule {
  name = "drops-with-pending",
  metric = "vigil_drop_packets_total",
  where = { direction = "ingress", reason = "NETFILTER_DROP" },
  by = { "namespace", "pod" },
  detect = threshold { above = 5 },
  pending = "4s",
  resolve_after = "2s",
  on_anomaly = function(a)
    capture { before = "3s", after = "2s", snaplen = 200 }
    notify("hook", a)
  end,
}
)lua";

// Runs kPendingRule's fault on pod 2 of three pods under steady traffic; the capture's
// manifest and its packets' times, as tshark reads them.
struct PendingRun {
  nlohmann::json manifest;
  std::vector<Packet> packets;
  double first = 0;  // the earliest packet's time
  double lookback_pods_before_fault = -1;
  double programs_before_fault = -1;  // vigil_pods_with_programs
};

class PendingCaptures : public Captures {
 protected:
  PendingRun fault_and_capture(const std::string& extra) {
    PendingRun out;
    start(3, extra, kPendingRule);
    if (HasFatalFailure()) return out;
    traffic_.push_back(http_traffic(1, 2, 50, 30));
    traffic_.push_back(http_traffic(2, 3, 50, 30));
    traffic_.push_back(http_traffic(3, 1, 50, 30));
    std::this_thread::sleep_for(3s);
    auto text = metrics_after_ticks(port_, 1);
    out.lookback_pods_before_fault = metric_value(text, "vigil_lookback_pods", {}).value_or(-1);
    out.programs_before_fault = metric_value(text, "vigil_pods_with_programs", {}).value_or(-1);
    // A threshold rule's groups come with their series: none before the first drop.
    EXPECT_EQ(metric_value(text, "vigil_rule_groups", {{"rule", "drops-with-pending"}, {"state", "normal"}}), 0.0) << text;
    EXPECT_EQ(metric_value(text, "vigil_rule_groups", {{"rule", "drops-with-pending"}, {"state", "pending"}}), 0.0) << text;
    lab_->cmd("drop 2 50 ingress");
    const bool fired = receiver_.wait_for([](const auto& b) { return !b.empty(); }, 20s);
    lab_->cmd("clear 2");
    EXPECT_TRUE(fired) << agent_->log();
    if (!fired) return out;
    const auto firing = receiver_.bodies().front();
    EXPECT_EQ(firing["scope"].value("pod", ""), "pod-2") << firing.dump(2);
    if (!firing.contains("captures") || firing["captures"].size() != 1u) {
      ADD_FAILURE() << "one capture expected: " << firing.dump(2);
      return out;
    }
    out.manifest = wait_ended(firing["captures"][0]["id"]);
    EXPECT_EQ(out.manifest.value("ended_by", ""), "after_elapsed") << out.manifest.dump(2);
    EXPECT_EQ(out.manifest.value("packets_lost", 1), 0) << out.manifest.dump(2);
    std::string warnings;
    out.packets = read_with_tshark(download(firing["captures"][0]["id"]), warnings);
    EXPECT_EQ(warnings, "");
    const std::string b = lab_->ip(2);
    if (!out.packets.empty()) out.first = out.packets.front().time;
    for (const auto& p : out.packets) {
      out.first = std::min(out.first, p.time);
      EXPECT_EQ(p.interface, "pod-2");
      if (!p.src.empty()) {  // ARP has no IP
        EXPECT_TRUE(p.src == b || p.dst == b) << p.src << " -> " << p.dst;
      }
    }
    return out;
  }
};

TEST_F(PendingCaptures, APendingGroupArmsItsPodsLookbackSoTheCaptureHoldsTheOnset) {
  PendingRun r = fault_and_capture("");
  if (HasFatalFailure() || r.manifest.is_null()) return;
  EXPECT_EQ(r.lookback_pods_before_fault, 0) << "no ring while every group is normal";
  const auto& lookback = r.manifest["lookback"];
  EXPECT_TRUE(lookback["watched"].value("lab/pod-2", false)) << r.manifest.dump(2);
  // The 3 s asked for are wholly covered, which makes the capture complete.
  EXPECT_EQ(r.manifest.value("status", ""), "complete") << r.manifest.dump(2);
  const double trigger = r.manifest["window"].value("trigger", 0.0);
  ASSERT_TRUE(lookback["covered_from"].is_number()) << r.manifest.dump(2);
  // The ring started at the end of the first anomalous tick; the group fired 4 s later.
  const double covered = lookback["covered_from"].get<double>();
  EXPECT_LE(covered, trigger - 3.0) << r.manifest.dump(2);
  EXPECT_GE(covered, trigger - 6.0) << r.manifest.dump(2);
  ASSERT_FALSE(r.packets.empty());
  const double first = r.first;
  // Traffic every 20 ms: the capture holds the whole `before`, and nothing earlier.
  EXPECT_LE(first, trigger - 2.9) << "first packet " << first << ", trigger " << trigger;
  EXPECT_GE(first, trigger - 3.01) << "first packet " << first << ", trigger " << trigger;
  std::printf("pending-armed capture: %zu packets from %.3f s before the trigger (ring from %.3f s before)\n",
              r.packets.size(), trigger - first, trigger - covered);
  // The ring goes once the capture has ended and the group is no longer pending.
  bool dropped = false;
  for (int i = 0; i < 40 && !dropped; ++i) {
    auto text = metrics_after_ticks(port_, 1);
    dropped = metric_value(text, "vigil_lookback_pods", {}).value_or(-1) == 0;
  }
  EXPECT_TRUE(dropped) << "the lookback ring of pod 2 stayed";
  // Pod 2's group resolves: one group, normal.
  bool resolved = false;
  std::string text;
  for (int i = 0; i < 40 && !resolved; ++i) {
    text = metrics_after_ticks(port_, 1);
    resolved = metric_value(text, "vigil_rule_groups", {{"rule", "drops-with-pending"}, {"state", "normal"}}) == 1.0 &&
               metric_value(text, "vigil_rule_groups", {{"rule", "drops-with-pending"}, {"state", "firing"}}) == 0.0 &&
               metric_value(text, "vigil_rule_groups", {{"rule", "drops-with-pending"}, {"state", "pending"}}) == 0.0;
  }
  EXPECT_TRUE(resolved) << text;
}

// A pod without packet-level programs (metrics.packet_level) has none on its path while all is
// well; its group turning pending puts them on and starts its ring a tick later.
TEST_F(PendingCaptures, APodWithoutProgramsGetsThemAndARingWhilePending) {
  PendingRun r = fault_and_capture("metrics:\n  packet_level: {pods: selected}\n");
  if (HasFatalFailure() || r.manifest.is_null()) return;
  EXPECT_EQ(r.lookback_pods_before_fault, 0);
  EXPECT_EQ(r.programs_before_fault, 0) << "no pod had the packet-level programs before the fault";
  const auto& lookback = r.manifest["lookback"];
  EXPECT_TRUE(lookback["watched"].value("lab/pod-2", false)) << r.manifest.dump(2);
  ASSERT_TRUE(lookback["covered_from"].is_number()) << r.manifest.dump(2);
  const double trigger = r.manifest["window"].value("trigger", 0.0);
  EXPECT_LE(lookback["covered_from"].get<double>(), trigger - 2.5) << r.manifest.dump(2);
  ASSERT_FALSE(r.packets.empty());
  const double first = r.first;
  EXPECT_LE(first, trigger - 2.5) << "first packet " << first << ", trigger " << trigger;
  std::printf("pending-armed capture without programs before: from %.3f s before the trigger\n", trigger - first);
}

// A group that stays pending (`pending = "1h"`) keeps its pod's ring, and is shown as about to
// fire: /api/v1/rules, vigil_rule_groups and `vigil anomalies`.
TEST_F(PendingCaptures, AGroupPendingIsShownAndKeepsItsRing) {
  std::string rule = kPendingRule;
  const std::string four = "pending = \"4s\"";
  rule.replace(rule.find(four), four.size(), "pending = \"1h\"");
  start(3, "", rule);
  if (HasFatalFailure()) return;
  // Half of pod 2's ingress dropped: a connection whose segments are lost backs off for a
  // while, so 16 of them, warmed up first, keep the drops above the threshold in every tick (a
  // tick at or below it sets a pending group back to normal, and would take its ring).
  traffic_.push_back(http_traffic(1, 2, 100, 25, 16));
  std::this_thread::sleep_for(2s);
  lab_->cmd("drop 2 50 ingress");
  // /api/v1/rules, vigil_rule_groups and the ring agree on one tick.
  nlohmann::json listed;
  std::string text;
  bool pending = false;
  for (int i = 0; i < 40 && !pending; ++i) {
    text = metrics_after_ticks(port_, 1);
    listed = nlohmann::json::parse(http_get("127.0.0.1", port_, "/api/v1/rules"), nullptr, false);
    bool listed_pending = false;
    for (const auto& r : listed)
      if (r.value("rule", "") == "drops-with-pending")
        listed_pending = r.value("pending", 0) == 1 && r.value("firing", 1) == 0;
    pending = listed_pending &&
              metric_value(text, "vigil_rule_groups", {{"rule", "drops-with-pending"}, {"state", "pending"}}) == 1.0 &&
              metric_value(text, "vigil_lookback_pods", {}) == 1.0;
  }
  ASSERT_TRUE(pending) << listed.dump(2) << text;
  auto table = run(binary_path("vigil") + " anomalies --agent 127.0.0.1:" + std::to_string(port_));
  EXPECT_EQ(table.status, 0) << table.output;
  EXPECT_NE(table.output.find("nothing firing"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find("pending (anomalous, not firing yet), groups by rule: drops-with-pending 1"),
            std::string::npos)
      << table.output;
  lab_->cmd("clear 2");
  EXPECT_TRUE(receiver_.bodies().empty()) << "nothing fired";
}

TEST_F(PendingCaptures, WithoutLookbackPendingTheCaptureStartsAtTheFiring) {
  PendingRun r = fault_and_capture("captures:\n  lookback: {pending: false}\n");
  if (HasFatalFailure() || r.manifest.is_null()) return;
  EXPECT_EQ(r.lookback_pods_before_fault, 0);
  const auto& lookback = r.manifest["lookback"];
  EXPECT_FALSE(lookback["watched"].value("lab/pod-2", true)) << r.manifest.dump(2);
  EXPECT_TRUE(lookback["covered_from"].is_null()) << r.manifest.dump(2);
  EXPECT_EQ(r.manifest.value("status", ""), "incomplete") << r.manifest.dump(2);
  const double trigger = r.manifest["window"].value("trigger", 0.0);
  ASSERT_FALSE(r.packets.empty());
  const double first = r.first;
  // Copying starts at the end of the firing tick (500 ms).
  EXPECT_GE(first, trigger - 0.1) << "first packet " << first << ", trigger " << trigger;
}

// More packets than the kernel's ring buffer can carry: the losses are reported in the
// manifest and a metric, and the capture does not claim to be complete.
TEST_F(Captures, FloodBeyondTheRingReportsItsLosses) {
  start(2, "captures:\n  snaplen: 1536\n  lookback: {pods: all, ring_buffer: 64KiB}\n");
  if (HasFatalFailure()) return;
  auto r = api("POST", "/api/v1/captures", R"({"pods": ["lab/pod-1"], "before": "0s", "after": "4s"})");
  ASSERT_EQ(r.status, 201) << r.raw;
  const std::string id = r.body.value("id", "");
  auto sink = std::make_unique<Process>(
      std::vector<std::string>{"/usr/sbin/ip", "netns", "exec", lab_->prefix() + "-pod-2",
                               binary_path("tests/tools/vigil-lab-traffic"), "udp-sink", "9000", "5"},
      dir_.path() + "/sink.log");
  auto sent = run("ip netns exec " + lab_->prefix() + "-pod-1 " + binary_path("tests/tools/vigil-lab-traffic") +
                  " udp-send " + lab_->ip(2) + " 9000 200000 1400");
  ASSERT_EQ(sent.status, 0) << sent.output;
  auto m = wait_ended(id);
  EXPECT_GT(m.value("packets_lost", 0ull), 0u) << m.dump(2);
  EXPECT_FALSE(m.value("complete", true)) << m.dump(2);
  EXPECT_EQ(m.value("status", ""), "incomplete") << m.dump(2);
  auto text = metrics_after_ticks(port_, 1);
  EXPECT_GT(metric_value(text, "vigil_capture_ring_lost_total", {}).value_or(0), 0) << text;
  EXPECT_GT(metric_value(text, "vigil_capture_packets_lost_total", {}).value_or(0), 0) << text;
  std::printf("flood: %llu packets written, %llu lost\n", static_cast<unsigned long long>(m.value("packets", 0ull)),
              static_cast<unsigned long long>(m.value("packets_lost", 0ull)));
}

}  // namespace
}  // namespace vigil::test
