// The shipped rule pack and the API example load, and behave as documented.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "rules/runtime/engine.h"
#include "rules/runtime/rule_test.h"

using namespace vigil;
using namespace vigil::rules;
namespace fs = std::filesystem;

namespace {

struct Sent {
  std::string channel;
  Anomaly anomaly;
};

class RecordingSink : public ActionSink {
 public:
  void notify(const std::string& channel, const Anomaly& anomaly) override { sent.push_back({channel, anomaly}); }
  std::vector<Sent> sent;
};

std::vector<std::string> pack_files() {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(fs::path(VIGIL_SOURCE_DIR) / "rules" / "pack"))
    if (entry.path().extension() == ".lua") files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

PodMeta pod(const std::string& name, std::map<std::string, std::string> labels = {}) {
  return PodMeta{"default", name, std::move(labels), "node-a"};
}

Sample counter(const std::string& metric, const std::string& pod, const std::string& direction, double value,
               const std::string& reason = "") {
  Labels labels = make_labels({{"namespace", "default"}, {"pod", pod}, {"direction", direction}});
  if (!reason.empty()) {  // a drop counter: its reason, and unicast as the datapath labels most drops
    labels.emplace_back("reason", reason);
    labels.emplace_back("cast", "unicast");
    sort_labels(labels);
  }
  return Sample{metric, labels, value, SeriesKind::Counter};
}

// Grants every capture, as the agent does while it has room, and keeps what each asked for.
class CapturingSink : public RecordingSink {
 public:
  Result<std::string> capture(const CaptureSpec& spec) override {
    specs.push_back(spec);
    return std::string("capture-") + std::to_string(specs.size());
  }
  std::vector<CaptureSpec> specs;
};

}  // namespace

TEST(RulesPack, LoadsWithTheDefaultNotifier) {
  auto files = pack_files();
  ASSERT_EQ(files.size(), 16u);
  EngineOptions o;
  o.channels = std::set<std::string>{"default"};
  auto engine = RuleEngine::load(files, o, nullptr);
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  std::vector<std::string> names;
  for (const auto& s : (*engine)->status()) names.push_back(s.rule);
  EXPECT_EQ(names, (std::vector<std::string>{"apiserver-latency-regression", "dns-error-surge", "dns-latency-regression", "dns-timeouts",
                                             "new-external-peer", "node-conntrack-full", "node-conntrack-drops",
                                             "pod-conntrack-drops", "node-neighbor-table-full", "node-neighbor-table-overflow",
                                             "node-nic-errors", "pod-drop-surge", "pod-listen-overflows",
                                             "pod-udp-receive-drops", "pod-ingress-flood",
                                             "tcp-connect-failures", "tcp-rst-storm", "tcp-retransmit-ratio",
                                             "pod-traffic-volume", "vigil-datapath-losses", "vigil-tracepoint-undelivered"}));
}

// Each rule file has its test (rules/pack/tests/<file>.test.yaml), and every test passes.
TEST(RulesPack, EveryRuleFileHasATestAndTheTestsPass) {
  std::vector<std::string> tests;
  for (const auto& file : pack_files()) {
    fs::path test = fs::path(file).parent_path() / "tests" / (fs::path(file).stem().string() + ".test.yaml");
    EXPECT_TRUE(fs::is_regular_file(test)) << file << " has no test " << test;
    tests.push_back(test.string());
  }
  auto run = run_rule_tests(tests);
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_GE(run.passed, 2 * tests.size());  // at least: firing on the anomaly, quiet on noise
  EXPECT_EQ(run.failed, 0u) << run.out;
}

TEST(RulesPack, DropSurgeFiresAndLabTrafficStaysQuiet) {
  EngineOptions o;
  o.node = "node-a";
  o.channels = std::set<std::string>{"default"};
  CapturingSink sink;
  auto loaded = RuleEngine::load(pack_files(), o, &sink);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  RuleEngine& engine = **loaded;
  std::vector<PodMeta> pods{pod("web-1"), pod("web-2")};

  // Ten minutes of ordinary, jittery lab traffic: 80-160 packets/s per pod.
  double packets[2] = {0, 0};
  double drops = 0, flood = 0;
  auto traffic = [&](int t) {
    std::vector<Sample> s;
    for (int p = 0; p < 2; ++p) {
      packets[p] += 80 + (t * 37 + p * 11) % 81 + (p == 1 ? flood : 0);
      s.push_back(counter("vigil_forward_packets_total", pods[p].name, "ingress", packets[p]));
    }
    if (drops > 0) s.push_back(counter("vigil_drop_packets_total", "web-1", "ingress", drops, "NETFILTER_DROP"));
    return s;
  };
  for (int t = 0; t < 600; ++t) engine.tick(TickInput{1000.0 + t, traffic(t), pods});
  EXPECT_TRUE(sink.sent.empty());

  drops = 120;  // web-1 starts dropping: its counter series appears now
  engine.tick(TickInput{1600, traffic(600), pods});
  ASSERT_EQ(sink.sent.size(), 1u);
  EXPECT_EQ(sink.sent[0].channel, "default");
  EXPECT_EQ(sink.sent[0].anomaly.rule, "pod-drop-surge");
  EXPECT_EQ(sink.sent[0].anomaly.summary, "default/web-1 drops 120 packets/s on ingress, usually 0/s (z=120)");
  // It captured the pod, every packet with the agent's defaults, before it notified.
  ASSERT_EQ(sink.specs.size(), 1u);
  EXPECT_EQ(sink.specs[0].pods, std::vector<std::string>{"default/web-1"});
  EXPECT_EQ(sink.specs[0].rule, "pod-drop-surge");
  EXPECT_EQ(sink.specs[0].filter, "");
  EXPECT_EQ(sink.specs[0].anomaly_id, sink.sent[0].anomaly.id);
  EXPECT_EQ(sink.sent[0].anomaly.captures, std::vector<std::string>{"capture-1"});
  for (int t = 601; t < 620; ++t) engine.tick(TickInput{1000.0 + t, traffic(t), pods});
  ASSERT_EQ(sink.sent.size(), 2u);
  EXPECT_EQ(sink.sent[1].anomaly.status, AnomalyStatus::Resolved);

  // A flood on web-2: 20000 packets/s, held for `pending` (15 s) before it fires.
  flood = 20000;
  for (int t = 620; t < 635; ++t) engine.tick(TickInput{1000.0 + t, traffic(t), pods});
  EXPECT_EQ(sink.sent.size(), 2u);
  engine.tick(TickInput{1635, traffic(635), pods});
  ASSERT_EQ(sink.sent.size(), 3u);
  EXPECT_EQ(sink.sent[2].anomaly.rule, "pod-ingress-flood");
  EXPECT_EQ(*find_label(sink.sent[2].anomaly.scope, "pod"), "web-2");
  ASSERT_EQ(sink.specs.size(), 2u);
  EXPECT_EQ(sink.specs[1].pods, std::vector<std::string>{"default/web-2"});
  EXPECT_EQ(sink.sent[2].anomaly.captures, std::vector<std::string>{"capture-2"});
  for (const auto& s : engine.status()) EXPECT_TRUE(s.errors.empty()) << s.rule << ": " << s.last_error;
}

// new-external-peer captures the pod's traffic with the addresses it had not used, both when
// two come in one tick (the anomaly's label joins them with '|'): one capture whose filter names
// each (libpcap compiles "host A or host B" for IPv4 and IPv6 alike).
TEST(RulesPack, NewExternalPeerCapturesTheNewAddressesOnly) {
  EngineOptions o;
  o.channels = std::set<std::string>{"default"};
  CapturingSink sink;
  auto loaded = RuleEngine::load({std::string(VIGIL_SOURCE_DIR) + "/rules/pack/new-external-peer.lua"}, o, &sink);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  RuleEngine& engine = **loaded;
  std::vector<PodMeta> pods{pod("web-1")};
  auto peer = [](const std::string& ip, double value) {
    return Sample{"vigil_remote_forward_packets_total",
                  make_labels({{"namespace", "default"}, {"pod", "web-1"}, {"direction", "egress"}, {"remote_ip", ip}}), value,
                  SeriesKind::Counter};
  };
  double known = 0, fresh = 0;
  for (int t = 0; t <= 400; ++t) {  // an hour of learning the one known peer, and some
    known += 100;
    std::vector<Sample> s{peer("203.0.113.10", known)};
    if (t >= 380) {  // two new peers, 3,800 s in: their series appear with their first packets
      fresh += 5;
      s.push_back(peer("192.0.2.66", fresh));
      s.push_back(peer("2001:db8::7", fresh));
    }
    engine.tick(TickInput{1000.0 + 10 * t, s, pods});
  }
  ASSERT_EQ(sink.specs.size(), 1u);
  EXPECT_EQ(sink.specs[0].pods, std::vector<std::string>{"default/web-1"});
  EXPECT_EQ(sink.specs[0].rule, "new-external-peer");
  EXPECT_EQ(sink.specs[0].snaplen, 256u);
  const std::string f = sink.specs[0].filter;
  EXPECT_TRUE(f == "host 192.0.2.66 or host 2001:db8::7" || f == "host 2001:db8::7 or host 192.0.2.66") << f;
  ASSERT_FALSE(sink.sent.empty());
  EXPECT_EQ(sink.sent[0].anomaly.captures, std::vector<std::string>{"capture-1"});
  for (const auto& st : engine.status()) EXPECT_TRUE(st.errors.empty()) << st.rule << ": " << st.last_error;
}

TEST(RulesPack, ApiExampleBehavesAsDocumented) {
  EngineOptions o;
  o.channels = std::set<std::string>{"default", "oncall"};
  RecordingSink sink;
  auto loaded = RuleEngine::load({std::string(VIGIL_SOURCE_DIR) + "/tests/unit/testdata/rules/api-example.lua"}, o, &sink);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  RuleEngine& engine = **loaded;
  std::vector<PodMeta> pods{pod("api", {{"team", "payments"}})};

  double dropped = 0, bytes = 0;
  auto tick = [&](int t, double drop_rate, double byte_rate) {
    dropped += drop_rate;
    bytes += byte_rate;
    std::vector<Sample> s{counter("vigil_forward_bytes_total", "api", "egress", bytes)};
    if (dropped > 0) s.push_back(counter("vigil_drop_packets_total", "api", "egress", dropped, "TC_EGRESS"));
    engine.tick(TickInput{2000.0 + t, s, pods});
  };
  for (int t = 0; t < 40; ++t) tick(t, 0, 1e6);
  for (int t = 40; t < 42; ++t) tick(t, 50, 1e6);  // pending: 2 s
  EXPECT_TRUE(sink.sent.empty());
  tick(42, 50, 1e6);
  ASSERT_EQ(sink.sent.size(), 2u);  // critical: oncall and default
  EXPECT_EQ(sink.sent[0].channel, "oncall");
  EXPECT_EQ(sink.sent[1].channel, "default");
  EXPECT_EQ(sink.sent[0].anomaly.summary, "default/api drops 50/s on egress, usually 0/s (z=50) [team payments]");
  for (int t = 43; t < 50; ++t) tick(t, 0, 1e6);
  ASSERT_EQ(sink.sent.size(), 4u);  // resolved to both
  tick(50, 0, 80e6);                // the node-wide byte threshold
  ASSERT_EQ(sink.sent.size(), 5u);
  EXPECT_EQ(sink.sent[4].anomaly.rule, "example-node-egress-bytes");
  EXPECT_EQ(sink.sent[4].anomaly.summary, "vigil_forward_bytes_total for the node is 80000000/s, past the threshold 50000000/s");
  for (const auto& s : engine.status()) EXPECT_TRUE(s.errors.empty()) << s.rule << ": " << s.last_error;
}
