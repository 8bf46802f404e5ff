// DNS telemetry against ground truth: dig in one lab pod asks dnsmasq in another a known mix of
// names and types (NOERROR, NXDOMAIN, REFUSED), over UDP and TCP, IPv4 and IPv6. dig's own
// answers are the truth; Vigil's counts must match them exactly, per qtype and rcode, on the
// client pod (egress requests, ingress responses) and on the server pod (the reverse), and every
// response must be matched to its request in the latency histogram of both sides.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

struct Query {
  std::string name, type;
};

// 11 queries a batch; dnsmasq in the lab answers ok.lab.test, NXDOMAIN for other names under
// lab.test and REFUSED for everything else (it has no upstream).
const std::vector<Query> kQueries = {
    {"ok.lab.test", "A"},      {"ok.lab.test", "A"},      {"ok.lab.test", "A"},       {"ok.lab.test", "AAAA"},
    {"nx.lab.test", "A"},      {"nx.lab.test", "A"},      {"nx.lab.test", "MX"},      {"example.com", "A"},
    {"example.com", "A"},      {"example.com", "TXT"},    {"vigil.invalid", "SRV"},
};

// Python that defines query(id, label): the bytes of a DNS query, recursion desired, for the A
// record of <label>.lab.test, class IN.
constexpr char kPyQuery[] =
    "import socket,struct,sys\n"
    "def query(id,label):\n"
    "  q=struct.pack('>HHHHHH',id,0x0100,1,0,0,0)\n"
    "  for l in (label,b'lab',b'test'): q+=bytes([len(l)])+l\n"
    "  return q+b'\\0'+struct.pack('>HH',1,1)\n";

// What dnsmasq answers an A query with, by name: checks the lab behaves as the test assumes.
std::string expected_a_rcode(const std::string& name) {
  if (name == "ok.lab.test") return "NOERROR";
  if (name.ends_with(".lab.test")) return "NXDOMAIN";
  return "REFUSED";
}

class DnsTelemetry : public ::testing::Test {
 protected:
  void SetUp() override {
    VIGIL_REQUIRE_ROOT();
    lab_ = std::make_unique<Lab>(3);
    lab_->cmd("serve-dns 2");
    dir_ = make_temp_dir();
    port_ = free_port();
    std::string config = write_temp_file(dir_, "vigil.yaml",
                                         "listen: 127.0.0.1:" + std::to_string(port_) + "\nstate_dir: state\ntick: 200ms\n"
                                         "pods: {source: file, file: " + lab_->pods_file() + "}\n" + rules_config() +
                                         "metrics: " + metrics_config() + "\n");
    agent_ = std::make_unique<Process>(std::vector<std::string>{binary_path("vigil"), "agent", "--config", config},
                                       dir_ + "/agent.log");
    ASSERT_TRUE(wait_for_attached(port_, 3)) << "agent did not attach:\n" << agent_->log();
  }
  virtual std::string metrics_config() const { return "{dns_timeout: 1s}"; }
  virtual std::string rules_config() const { return "rules: []\nnotifiers: []\n"; }
  void TearDown() override {
    if (agent_) {
      EXPECT_EQ(agent_->terminate(), 0) << agent_->log();
    }
    agent_.reset();
    lab_.reset();
    if (!dir_.empty()) run("rm -rf " + dir_);
  }
  std::string ns(int pod) const { return lab_->prefix() + "-pod-" + std::to_string(pod); }
  std::string ip6(int pod) const {
    std::string s = lab_->cmd("ip6 " + std::to_string(pod));
    return s.substr(0, s.find('\n'));
  }
  std::string metrics() { return http_get("127.0.0.1", port_, "/metrics"); }
  // Runs a Python script in pod `pod`'s namespace with `args`, under `wrapper` (a `timeout`, a
  // `taskset`) when given.
  CommandResult python_in(int pod, const std::string& script, const std::string& args, const std::string& wrapper = "") {
    const std::string file = write_temp_file(dir_, "script.py", script);
    return run("ip netns exec " + ns(pod) + " " + wrapper + (wrapper.empty() ? "" : " ") + "python3 " + file + " " + args);
  }
  // Metrics once `done` holds for them (bounded: 10 s), and then two more ticks, so that a slow
  // tick on a busy machine is waited for and anything counted late or twice still shows.
  std::string settled_metrics(const std::function<bool(const std::string&)>& done) {
    for (int i = 0; i < 50 && !done(metrics()); ++i) std::this_thread::sleep_for(200ms);
    std::this_thread::sleep_for(400ms);
    return metrics();
  }

  // Runs every query of kQueries from pod 1 against pod 2's address in one dig batch; returns
  // the rcode dig printed for each, in order.
  std::vector<std::string> dig_batch(const std::string& server, bool tcp) {
    std::string batch;
    for (const auto& q : kQueries) batch += "@" + server + " " + q.name + " " + q.type + "\n";
    std::string file = write_temp_file(dir_, "batch.txt", batch);
    // Options on batch lines are ignored by dig 9.18, so they go on the command line. One try:
    // a retry would be a second request.
    auto r = run("ip netns exec " + ns(1) + " timeout 30 dig +tries=1 +time=2 " + (tcp ? "+tcp " : "") + "-f " + file);
    std::vector<std::string> rcodes;
    static const std::regex status_re(R"(status: ([A-Z]+),)");
    for (std::sregex_iterator it(r.output.begin(), r.output.end(), status_re), end; it != end; ++it)
      rcodes.push_back((*it)[1]);
    EXPECT_EQ(rcodes.size(), kQueries.size()) << r.output;
    return rcodes;
  }

  void check_transport(const std::string& server, bool tcp, const std::string& what);

  std::unique_ptr<Lab> lab_;
  std::unique_ptr<Process> agent_;
  std::string dir_;
  int port_ = 0;
};

void DnsTelemetry::check_transport(const std::string& server, bool tcp, const std::string& what) {
  SCOPED_TRACE(what);
  const std::string before = metrics();
  const auto rcodes = dig_batch(server, tcp);
  ASSERT_EQ(rcodes.size(), kQueries.size());
  const double n = static_cast<double>(kQueries.size());
  auto grew = [&](const std::string& text, const std::string& name, const std::map<std::string, std::string>& l) {
    return metric_sum(text, name, l) - metric_sum(before, name, l);
  };
  const std::string after = settled_metrics([&](const std::string& text) {
    return grew(text, "vigil_dns_latency_seconds_count", {{"pod", "pod-1"}}) >= n &&
           grew(text, "vigil_dns_latency_seconds_count", {{"pod", "pod-2"}}) >= n &&
           grew(text, "vigil_dns_responses_total", {{"pod", "pod-1"}}) >= n &&
           grew(text, "vigil_dns_responses_total", {{"pod", "pod-2"}}) >= n;
  });

  std::map<std::string, double> requests;                               // by qtype
  std::map<std::pair<std::string, std::string>, double> responses;    // by (qtype, rcode)
  std::map<std::string, int> by_rcode;
  for (size_t i = 0; i < kQueries.size(); ++i) {
    if (kQueries[i].type == "A") {
      EXPECT_EQ(rcodes[i], expected_a_rcode(kQueries[i].name)) << kQueries[i].name;
    }
    requests[kQueries[i].type] += 1;
    responses[{kQueries[i].type, rcodes[i]}] += 1;
    by_rcode[rcodes[i]] += 1;
  }
  // The mix really has all three answers.
  EXPECT_GT(by_rcode["NOERROR"], 0);
  EXPECT_GT(by_rcode["NXDOMAIN"], 0);
  EXPECT_GT(by_rcode["REFUSED"], 0);

  auto delta = [&](const std::string& name, const std::map<std::string, std::string>& l) {
    return metric_sum(after, name, l) - metric_sum(before, name, l);
  };
  // Client pod 1 sends requests and receives responses; server pod 2 the reverse.
  struct Side {
    std::string pod, request_dir, response_dir, side;
  };
  for (const Side& s : {Side{"pod-1", "egress", "ingress", "client"}, Side{"pod-2", "ingress", "egress", "server"}}) {
    SCOPED_TRACE(s.pod);
    for (const auto& [qtype, count] : requests)
      EXPECT_EQ(delta("vigil_dns_requests_total", {{"pod", s.pod}, {"direction", s.request_dir}, {"qtype", qtype}}), count)
          << "requests qtype " << qtype;
    for (const auto& [key, count] : responses)
      EXPECT_EQ(delta("vigil_dns_responses_total",
                      {{"pod", s.pod}, {"direction", s.response_dir}, {"qtype", key.first}, {"rcode", key.second}}),
                count)
          << "responses qtype " << key.first << " rcode " << key.second;
    // Nothing else: the totals hold exactly the queries, and nothing the other way round.
    EXPECT_EQ(delta("vigil_dns_requests_total", {{"pod", s.pod}}), n);
    EXPECT_EQ(delta("vigil_dns_responses_total", {{"pod", s.pod}}), n);
    EXPECT_EQ(delta("vigil_dns_requests_total", {{"pod", s.pod}, {"direction", s.request_dir}}), n);
    EXPECT_EQ(delta("vigil_dns_responses_total", {{"pod", s.pod}, {"direction", s.response_dir}}), n);
    // Every response matched its request, measured on this pod's side.
    EXPECT_EQ(delta("vigil_dns_latency_seconds_count", {{"pod", s.pod}, {"side", s.side}}), n);
    double sum = delta("vigil_dns_latency_seconds_sum", {{"pod", s.pod}, {"side", s.side}});
    EXPECT_GT(sum, 0);
    EXPECT_LT(sum, 2.0);
    EXPECT_EQ(delta("vigil_dns_latency_seconds_count", {{"pod", s.pod}}), n) << "the other side has no samples";
    EXPECT_EQ(metric_sum(after, "vigil_dns_unmatched_responses_total", {{"pod", s.pod}}), 0);
    EXPECT_EQ(metric_sum(after, "vigil_malformed_packets_total", {{"pod", s.pod}, {"layer", "dns"}}), 0);
    std::printf("%s %s: %.0f requests, %.0f responses, latency count %.0f sum %.6f s\n", what.c_str(), s.pod.c_str(),
                delta("vigil_dns_requests_total", {{"pod", s.pod}}), delta("vigil_dns_responses_total", {{"pod", s.pod}}),
                delta("vigil_dns_latency_seconds_count", {{"pod", s.pod}}), sum);
  }
  // The bystander pod 3 saw no DNS at all.
  EXPECT_EQ(metric_sum(after, "vigil_dns_requests_total", {{"pod", "pod-3"}}), 0);
  EXPECT_EQ(metric_sum(after, "vigil_dns_responses_total", {{"pod", "pod-3"}}), 0);
  EXPECT_FALSE(metric_value(after, "vigil_dns_latency_seconds_count", {{"pod", "pod-3"}}).has_value());
  for (const char* site : {"dns_map_full", "dns_pending_full", "dns_load_bytes"})
    EXPECT_EQ(metric_sum(after, "vigil_bpf_errors_total", {{"site", site}}), 0) << site;
  std::string rc;
  for (const auto& [r, c] : by_rcode) rc += " " + r + "=" + std::to_string(c);
  std::printf("%s: %zu queries:%s\n", what.c_str(), kQueries.size(), rc.c_str());
}

TEST_F(DnsTelemetry, UdpOverIpv4CountedExactlyPerQtypeAndRcode) { check_transport(lab_->ip(2), false, "udp/ipv4"); }

TEST_F(DnsTelemetry, TcpOverIpv4CountedExactlyPerQtypeAndRcode) { check_transport(lab_->ip(2), true, "tcp/ipv4"); }

TEST_F(DnsTelemetry, UdpOverIpv6CountedExactlyPerQtypeAndRcode) {
  check_transport(ip6(2), false, "udp/ipv6");
}

TEST_F(DnsTelemetry, TcpOverIpv6CountedExactlyPerQtypeAndRcode) {
  check_transport(ip6(2), true, "tcp/ipv6");
}

// Requests that get no response within metrics.dns_timeout (1 s here): 4 queries from pod 1 to
// pod 3, where nothing listens on port 53, time out for pod 1 as a client and for pod 3 as the
// server that received them; 3 answered by pod 2's dnsmasq time out for nobody, and their
// matched responses leave nothing waiting.
TEST_F(DnsTelemetry, RequestsWithNoResponseTimeOutOnBothSides) {
  for (int i = 0; i < 4; ++i) EXPECT_NE(lab_->cmd("dns 1 3 t" + std::to_string(i) + ".lab.test"), "NOERROR\n");
  EXPECT_EQ(lab_->cmd("dns 1 2 ok.lab.test"), "NOERROR\n");
  EXPECT_EQ(lab_->cmd("dns 1 2 missing.lab.test"), "NXDOMAIN\n");
  EXPECT_EQ(lab_->cmd("dns 1 2 example.com"), "REFUSED\n");
  auto timeouts = [&](const std::string& text, const char* pod, const char* side) {
    return metric_value(text, "vigil_dns_timeouts_total", {{"pod", pod}, {"side", side}}).value_or(-1);
  };
  std::string text;
  for (int i = 0; i < 80; ++i) {  // <= 8 s: twice the timeout (a retry's answer may still come), a scan a second
    text = http_get("127.0.0.1", port_, "/metrics");
    if (timeouts(text, "pod-1", "client") == 4 && timeouts(text, "pod-3", "server") == 4) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(timeouts(text, "pod-1", "client"), 4) << text;
  EXPECT_EQ(timeouts(text, "pod-3", "server"), 4);
  // Two more scans: nothing counted twice, nothing answered counted.
  text = metrics_after_ticks(port_, 12);
  EXPECT_EQ(timeouts(text, "pod-1", "client"), 4) << text;
  EXPECT_EQ(timeouts(text, "pod-3", "server"), 4);
  EXPECT_EQ(timeouts(text, "pod-2", "server"), -1);
  EXPECT_EQ(timeouts(text, "pod-1", "server"), -1);
  EXPECT_EQ(timeouts(text, "pod-3", "client"), -1);
  // The answered ones were matched.
  EXPECT_EQ(metric_value(text, "vigil_dns_latency_seconds_count", {{"pod", "pod-1"}, {"side", "client"}}).value_or(-1), 3);
}

// A resolver that asks every nameserver at once (musl: one socket, one id, the same query to each
// server, the first answer wins): pod 1 sends each query to pod 2 and pod 3, both dnsmasq, and
// reads both answers. That is a request and a response for each server, each matched to its own
// request, and no retry: a build whose table of waiting requests left the server out of its key
// counted the second send as a retry of the first and the second answer as unmatched.
TEST_F(DnsTelemetry, OneQueryToTwoServersAtOnceIsARequestToEachNotARetry) {
  lab_->cmd("serve-dns 3");
  constexpr int kExchanges = 3;
  const std::string script = std::string(kPyQuery) +
      "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
      "s.settimeout(3)\n"
      "for id in range(700,700+int(sys.argv[3])):\n"
      "  q=query(id,b'ok')\n"
      "  s.sendto(q,(sys.argv[1],53)); s.sendto(q,(sys.argv[2],53))\n"
      "  froms=set()\n"
      "  for _ in range(2):\n"
      "    r,a=s.recvfrom(512)\n"
      "    assert struct.unpack('>H',r[:2])[0]==id and r[3]&15==0, r\n"
      "    froms.add(a[0])\n"
      "  assert froms=={sys.argv[1],sys.argv[2]}, froms\n"
      "print('ok')\n";
  auto r = python_in(1, script, lab_->ip(2) + " " + lab_->ip(3) + " " + std::to_string(kExchanges), "timeout 20");
  ASSERT_EQ(r.status, 0) << r.output;
  auto count = [](const std::string& text, const char* pod, const char* side) {
    return metric_value(text, "vigil_dns_latency_seconds_count", {{"pod", pod}, {"side", side}}).value_or(0);
  };
  const std::string text = settled_metrics([&](const std::string& t) {
    return count(t, "pod-1", "client") >= 2 * kExchanges && count(t, "pod-2", "server") >= kExchanges &&
           count(t, "pod-3", "server") >= kExchanges;
  });
  EXPECT_EQ(metric_sum(text, "vigil_dns_requests_total", {{"pod", "pod-1"}, {"direction", "egress"}}), 2 * kExchanges)
      << text;
  EXPECT_EQ(metric_sum(text, "vigil_dns_responses_total", {{"pod", "pod-1"}, {"direction", "ingress"}}), 2 * kExchanges);
  EXPECT_EQ(count(text, "pod-1", "client"), 2 * kExchanges) << "every answer matched to the request sent to its server";
  for (const char* pod : {"pod-2", "pod-3"}) {
    SCOPED_TRACE(pod);
    EXPECT_EQ(metric_sum(text, "vigil_dns_requests_total", {{"pod", pod}, {"direction", "ingress"}}), kExchanges);
    EXPECT_EQ(metric_sum(text, "vigil_dns_responses_total", {{"pod", pod}, {"direction", "egress"}}), kExchanges);
    EXPECT_EQ(count(text, pod, "server"), kExchanges);
  }
  for (const char* pod : {"pod-1", "pod-2", "pod-3"}) {
    SCOPED_TRACE(pod);
    EXPECT_EQ(metric_sum(text, "vigil_dns_request_retries_total", {{"pod", pod}}), 0);
    EXPECT_EQ(metric_sum(text, "vigil_dns_unmatched_responses_total", {{"pod", pod}}), 0);
    EXPECT_EQ(metric_sum(text, "vigil_dns_timeouts_total", {{"pod", pod}}), 0);
  }
  EXPECT_EQ(metric_value(text, "vigil_bpf_map_entries", {{"map", "vigil_dns_pending"}}).value_or(-1), 0)
      << "nothing left waiting";
}

// A resolver's retry: the same request (same id, same socket) sent again when the first got no
// answer. Pod 2 drops the first try of each exchange (nftables in its namespace, after Vigil's
// hooks saw it on both sides); pod 1 waits `wait` and sends the same bytes again, which dnsmasq
// answers. Both sides count one retry, time the one response from the FIRST send (what the
// client waited: a build that restarted the clock at the retry measured ~1 ms), and count a
// timeout when that wait exceeds metrics.dns_timeout (1 s here), which the response to the retry
// must not turn into an unmatched one.
class DnsRetries : public DnsTelemetry {
 protected:
  // Pod 1 asks pod 2 for ok.lab.test (A) with `id`; the first try is dropped in pod 2. Returns the
  // seconds from the first send to the answer, as the client saw them.
  double exchange_with_retry(int id, double wait) {
    // numgen inc counts from 0 per rule: a new table drops exactly the next query and no other.
    run("ip netns exec " + ns(2) + " nft delete table inet vigil_retry_test 2>/dev/null");
    const std::string rules = write_temp_file(
        dir_, "retry.nft",
        "table inet vigil_retry_test {\n"
        "  chain in { type filter hook input priority 0; udp dport 53 numgen inc mod 1000 == 0 drop; }\n"
        "}\n");
    auto nft = run("ip netns exec " + ns(2) + " nft -f " + rules);
    EXPECT_EQ(nft.status, 0) << nft.output;
    const std::string script = std::string(kPyQuery) +
        "import time\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "q=query(int(sys.argv[2]),b'ok')\n"
        "t0=time.monotonic()\n"
        "s.settimeout(float(sys.argv[3]))\n"
        "s.sendto(q,(sys.argv[1],53))\n"
        "try:\n"
        "  s.recv(512); print('first answered'); sys.exit(1)\n"
        "except socket.timeout: pass\n"
        "s.settimeout(3)\n"
        "s.sendto(q,(sys.argv[1],53))\n"
        "r=s.recv(512)\n"
        "assert struct.unpack('>H',r[:2])[0]==int(sys.argv[2]) and r[3]&15==0, r\n"
        "print('%.6f'%(time.monotonic()-t0))\n";
    auto r = python_in(1, script, lab_->ip(2) + " " + std::to_string(id) + " " + std::to_string(wait), "timeout 10");
    EXPECT_EQ(r.status, 0) << r.output;
    run("ip netns exec " + ns(2) + " nft delete table inet vigil_retry_test");
    return r.status == 0 ? std::stod(r.output) : -1;
  }
};

TEST_F(DnsRetries, RetryIsTimedFromTheFirstSendAndALateAnswerIsATimeout) {
  struct Side {
    const char* pod;
    const char* side;
  };
  const Side sides[] = {{"pod-1", "client"}, {"pod-2", "server"}};
  auto value = [](const std::string& text, const char* name, const Side& s) {
    return metric_value(text, name, {{"pod", s.pod}, {"side", s.side}}).value_or(0);
  };
  const std::string before = metrics();
  for (const Side& s : sides) {
    EXPECT_EQ(value(before, "vigil_dns_request_retries_total", s), 0) << s.pod;
    EXPECT_EQ(value(before, "vigil_dns_timeouts_total", s), 0) << s.pod;
  }

  // 1. Retry after 0.4 s, within the timeout: one retry, a latency of at least 0.4 s, no timeout.
  const double waited1 = exchange_with_retry(4242, 0.4);
  ASSERT_GE(waited1, 0.4);
  std::string text = settled_metrics([&](const std::string& t) {
    return value(t, "vigil_dns_latency_seconds_count", sides[0]) >= 1 &&
           value(t, "vigil_dns_latency_seconds_count", sides[1]) >= 1;
  });
  // After `n` exchanges (each a dropped first try and its retry): the counts, and the latencies'
  // sum from the first sends (at least `min_sum`, at most what the client waited).
  auto expect_exchanges = [&](const std::string& text, const Side& s, int n, double min_sum, double max_sum,
                              int timeouts) {
    SCOPED_TRACE(s.pod);
    EXPECT_EQ(metric_sum(text, "vigil_dns_requests_total", {{"pod", s.pod}}), 2 * n) << text;
    EXPECT_EQ(metric_sum(text, "vigil_dns_responses_total", {{"pod", s.pod}}), n);
    EXPECT_EQ(value(text, "vigil_dns_request_retries_total", s), n);
    EXPECT_EQ(value(text, "vigil_dns_latency_seconds_count", s), n);
    const double sum = value(text, "vigil_dns_latency_seconds_sum", s);
    EXPECT_GE(sum, min_sum) << "timed from the retry, not from the first send";
    EXPECT_LE(sum, max_sum);
    EXPECT_EQ(value(text, "vigil_dns_timeouts_total", s), timeouts) << "late answers, each counted once";
    EXPECT_EQ(metric_sum(text, "vigil_dns_unmatched_responses_total", {{"pod", s.pod}}), 0);
    std::printf("%s: %d exchanges, latency sum %.3f s (from %.3f to %.3f s expected)\n", s.pod, n, sum, min_sum, max_sum);
  };
  for (const Side& s : sides) expect_exchanges(text, s, 1, 0.4, waited1 + 0.05, 0);

  // 2. Retry after 1.3 s, past the 1 s timeout: the answer to the retry still finds the first
  // send (the agent keeps requests twice the timeout), and the exchange counts as one timeout.
  const double waited2 = exchange_with_retry(4343, 1.3);
  ASSERT_GE(waited2, 1.3);
  text = settled_metrics([&](const std::string& t) {
    return value(t, "vigil_dns_latency_seconds_count", sides[0]) >= 2 &&
           value(t, "vigil_dns_latency_seconds_count", sides[1]) >= 2;
  });
  // Past the agent's scan of requests waiting twice the timeout (2 s, scanned once a second).
  std::this_thread::sleep_for(3s);
  text = metrics_after_ticks(port_, 3);
  for (const Side& s : sides) {
    expect_exchanges(text, s, 2, 0.4 + 1.3, waited1 + waited2 + 0.1, 1);
    // The late answer: in the bucket of 1 s and more.
    EXPECT_EQ(value(text, "vigil_dns_latency_seconds_count", s) -
                  metric_value(text, "vigil_dns_latency_seconds_bucket", {{"pod", s.pod}, {"side", s.side}, {"le", "1.048576"}})
                      .value_or(-1),
              1) << s.pod;
  }
  EXPECT_EQ(metric_value(text, "vigil_bpf_map_entries", {{"map", "vigil_dns_pending"}}).value_or(-1), 0);
}

// The node's table of requests waiting for a response, full (metrics.dns_max_pending: 16 here):
// a request that does not fit is counted as not tracked, and the ones waiting still time out,
// which an LRU table would not do (it evicted the oldest: in an outage, the requests that should
// have timed out). 12 queries from pod 1 to pod 3 (nothing listens there), sent one after the
// other from one CPU: each is stored twice, for pod 1 (client) and pod 3 (server), so the first 8
// fill the table and the last 4 are not tracked on either side. Once those time out, the table
// has room again: 2 more are tracked.
class DnsPendingTable : public DnsTelemetry {
 protected:
  std::string metrics_config() const override { return "{dns_timeout: 1s, dns_max_pending: 16}"; }
  // The shipped rule that tells of the agent's own losses, as users run it.
  std::string rules_config() const override {
    return "rules: [" + source_path("rules/pack/vigil-datapath-losses.lua") +
           "]\nnotifiers: [{name: default, type: log}]\n";
  }
  // `n` queries for distinct names with distinct ids from one socket, as fast as it sends.
  void send_unanswered(int n, int first_id) {
    const std::string script = std::string(kPyQuery) +
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "for i in range(int(sys.argv[2])):\n"
        "  s.sendto(query(int(sys.argv[3])+i,b'p%d'%i),(sys.argv[1],53))\n";
    auto r = python_in(1, script, lab_->ip(3) + " " + std::to_string(n) + " " + std::to_string(first_id), "taskset -c 0");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  double timeouts(const std::string& text, const char* pod, const char* side) {
    return metric_value(text, "vigil_dns_timeouts_total", {{"pod", pod}, {"side", side}}).value_or(-1);
  }
  // /metrics once pod 1 and pod 3 have `want` timeouts each (bounded: 8 s; requests are taken
  // out at twice the timeout, scanned once a second), then two more scans.
  std::string after_timeouts(double want) {
    for (int i = 0; i < 80; ++i) {
      std::string text = metrics();
      if (timeouts(text, "pod-1", "client") >= want && timeouts(text, "pod-3", "server") >= want) break;
      std::this_thread::sleep_for(100ms);
    }
    return metrics_after_ticks(port_, 12);
  }
};

TEST_F(DnsPendingTable, FullTableCountsWhatItCannotTrackAndStillTimesOutTheRest) {
  send_unanswered(12, 1000);
  std::string text = after_timeouts(8);
  EXPECT_EQ(metric_sum(text, "vigil_dns_requests_total", {{"pod", "pod-1"}, {"direction", "egress"}}), 12) << text;
  EXPECT_EQ(metric_sum(text, "vigil_dns_requests_total", {{"pod", "pod-3"}, {"direction", "ingress"}}), 12);
  EXPECT_EQ(timeouts(text, "pod-1", "client"), 8);
  EXPECT_EQ(timeouts(text, "pod-3", "server"), 8);
  EXPECT_EQ(metric_sum(text, "vigil_bpf_errors_total", {{"site", "dns_pending_full"}}), 8);
  EXPECT_EQ(metric_value(text, "vigil_bpf_map_entries", {{"map", "vigil_dns_pending"}}).value_or(-1), 0);
  EXPECT_EQ(metric_value(text, "vigil_bpf_map_max_entries", {{"map", "vigil_dns_pending"}}).value_or(-1), 16);
  // The loss is told through the agent's channels: the shipped vigil-datapath-losses fired for
  // this site, and for no other.
  auto losses = nlohmann::json::parse(http_get("127.0.0.1", port_, "/api/v1/anomalies"), nullptr, false);
  ASSERT_TRUE(losses.is_array()) << losses.dump();
  std::vector<std::string> sites;
  for (const auto& a : losses)
    if (a.value("rule", "") == "vigil-datapath-losses") sites.push_back(a["scope"]["group"].value("site", "?"));
  EXPECT_EQ(sites, std::vector<std::string>{"dns_pending_full"}) << losses.dump(2);
  // Room again: the next ones are tracked and time out, and nothing more is refused.
  send_unanswered(2, 2000);
  text = after_timeouts(10);
  EXPECT_EQ(timeouts(text, "pod-1", "client"), 10) << text;
  EXPECT_EQ(timeouts(text, "pod-3", "server"), 10);
  EXPECT_EQ(metric_sum(text, "vigil_bpf_errors_total", {{"site", "dns_pending_full"}}), 8);
}

// All four one after the other on the same agent: the counters accumulate exactly.
TEST_F(DnsTelemetry, MixedTransportsAccumulate) {
  const std::string v6 = ip6(2);
  check_transport(lab_->ip(2), false, "udp/ipv4");
  check_transport(v6, true, "tcp/ipv6");
  check_transport(lab_->ip(2), true, "tcp/ipv4");
  check_transport(v6, false, "udp/ipv6");
}

// DNS over TCP as it really travels (RFC 7766): answers of 4 KB in real segments (pod 2 sends no
// GSO packets), 45 queries pipelined in one write (one segment), 9 whose 2-byte length goes in a segment of its
// own, while pod 1 drops a fifth of what it receives after Vigil's hook, so that TCP sends those
// segments again past the hook. Every message is counted once, per qtype and rcode, on both pods,
// and matched to its request; nothing is malformed or untracked. (Before streams were tracked:
// 1 request of the 39, the continuation segments and the lone lengths counted as malformed.)
TEST_F(DnsTelemetry, TcpMessagesCountedOnceAcrossSegmentsPipelinesAndRetransmissions) {
  ASSERT_EQ(run("ip netns exec " + ns(2) + " ip link set dev eth0 gso_max_segs 1").status, 0);
  const std::string server = lab_->ip(2), traffic = binary_path("tests/tools/vigil-lab-traffic");
  const std::string before = metrics();
  lab_->cmd("drop 1 20 ingress");
  std::map<std::string, double> answered;  // rcode -> answers
  double a_queries = 0;
  for (const auto& [count, mode] : {std::pair{45, "pipeline"}, std::pair{9, "split"}}) {
    auto r = run("ip netns exec " + ns(1) + " timeout 30 " + traffic + " dns-tcp " + server + " " + std::to_string(count) +
                 " " + mode);
    ASSERT_EQ(r.status, 0) << r.output;
    // "answered=N NOERROR=a NXDOMAIN=b REFUSED=c": every query answered, a third of each.
    EXPECT_NE(r.output.find("answered=" + std::to_string(count) + " "), std::string::npos) << mode << ": " << r.output;
    for (const char* rcode : {"NOERROR", "NXDOMAIN", "REFUSED"}) {
      auto at = r.output.find(std::string(rcode) + "=");
      ASSERT_NE(at, std::string::npos) << r.output;
      answered[rcode] += std::stod(r.output.substr(at + std::strlen(rcode) + 1));
    }
    a_queries += count;
  }
  const int kBig = 4;
  for (int i = 0; i < kBig; ++i) {
    auto r = run("ip netns exec " + ns(1) + " timeout 30 dig +tcp +tries=1 +time=10 @" + server + " big.lab.test TXT");
    EXPECT_NE(r.output.find("status: NOERROR"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("MSG SIZE  rcvd: 41"), std::string::npos) << "a 4 KB answer: " << r.output;
  }
  lab_->cmd("clear 1");
  EXPECT_EQ(answered["NOERROR"], 18);
  EXPECT_EQ(answered["NXDOMAIN"], 18);
  EXPECT_EQ(answered["REFUSED"], 18);
  const double total = a_queries + kBig;
  auto grew = [&](const std::string& text, const std::string& name, const std::map<std::string, std::string>& l) {
    return metric_sum(text, name, l) - metric_sum(before, name, l);
  };
  const std::string after = settled_metrics([&](const std::string& text) {
    return grew(text, "vigil_dns_responses_total", {{"pod", "pod-1"}}) >= total &&
           grew(text, "vigil_dns_responses_total", {{"pod", "pod-2"}}) >= total;
  });
  struct Side {
    std::string pod, request_dir, response_dir;
  };
  for (const Side& s : {Side{"pod-1", "egress", "ingress"}, Side{"pod-2", "ingress", "egress"}}) {
    SCOPED_TRACE(s.pod);
    EXPECT_EQ(grew(after, "vigil_dns_requests_total", {{"pod", s.pod}, {"direction", s.request_dir}, {"qtype", "A"}}), a_queries);
    EXPECT_EQ(grew(after, "vigil_dns_requests_total", {{"pod", s.pod}, {"direction", s.request_dir}, {"qtype", "TXT"}}), kBig);
    EXPECT_EQ(grew(after, "vigil_dns_requests_total", {{"pod", s.pod}}), total);
    for (const auto& [rcode, n] : answered)
      EXPECT_EQ(grew(after, "vigil_dns_responses_total",
                     {{"pod", s.pod}, {"direction", s.response_dir}, {"qtype", "A"}, {"rcode", rcode}}), n) << rcode;
    EXPECT_EQ(grew(after, "vigil_dns_responses_total",
                   {{"pod", s.pod}, {"direction", s.response_dir}, {"qtype", "TXT"}, {"rcode", "NOERROR"}}), kBig);
    EXPECT_EQ(grew(after, "vigil_dns_responses_total", {{"pod", s.pod}}), total);
    EXPECT_EQ(grew(after, "vigil_dns_latency_seconds_count", {{"pod", s.pod}}), total);
    EXPECT_EQ(metric_sum(after, "vigil_malformed_packets_total", {{"pod", s.pod}, {"layer", "dns"}}), 0);
  }
  EXPECT_EQ(metric_sum(after, "vigil_bpf_errors_total", {{"site", "dns_tcp_untracked"}}), 0);
  // The streams tracked: both directions of each of the 6 connections on both pods' interfaces.
  EXPECT_EQ(metric_value(after, "vigil_bpf_map_entries", {{"map", "vigil_dns_streams"}}).value_or(0), 6 * 4);
  // The drops made TCP send segments again (the test would prove nothing about them otherwise).
  const double retransmits = grew(after, "vigil_tcp_retransmits_total", {{"pod", "pod-1"}}) +
                             grew(after, "vigil_tcp_retransmits_total", {{"pod", "pod-2"}});
  EXPECT_GT(retransmits, 0);
  std::printf("dns over tcp: %.0f queries (%.0f pipelined or split, %d of 4 KB answers), %.0f retransmitted segments\n",
              total, a_queries, kBig, retransmits);
}

// More messages in one segment than the program takes steps for (64: VIGIL_DNS_TCP_STEPS), here
// 90 pipelined queries in one write at a 9000-byte MTU: the first 64 are counted, and the stream's
// place after them is lost, said in vigil_bpf_errors_total{site="dns_tcp_untracked"} once for
// each interface that saw the segment (pod 1's egress, pod 2's ingress), not silently. The
// answers are counted, those of the 26 uncounted queries as unmatched, unless dnsmasq's writes
// were joined into a segment of more than 64 answers too (Nagle, while earlier answers await
// their ACK; about one run in four here): the answers past its 64th are then lost the same way,
// and said the same way, twice more.
TEST_F(DnsTelemetry, MessagesPastTheStepsOfASegmentAreCountedAsUntracked) {
  for (int pod : {1, 2}) {
    ASSERT_EQ(run("ip -n " + ns(pod) + " link set eth0 mtu 9000").status, 0);
    ASSERT_EQ(run("ip link set " + lab_->veth(pod) + " mtu 9000").status, 0);
  }
  ASSERT_EQ(run("ip link set " + lab_->veth(3) + " mtu 9000").status, 0);
  ASSERT_EQ(run("ip link set " + lab_->prefix() + "-br0 mtu 9000").status, 0);
  const std::string before = metrics();
  const int kQueries = 90, kSteps = 64;
  auto r = run("ip netns exec " + ns(1) + " timeout 30 " + binary_path("tests/tools/vigil-lab-traffic") + " dns-tcp " +
               lab_->ip(2) + " " + std::to_string(kQueries) + " pipeline");
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_NE(r.output.find("answered=" + std::to_string(kQueries) + " "), std::string::npos) << r.output;
  auto grew = [&](const std::string& text, const std::string& name, const std::map<std::string, std::string>& l) {
    return metric_sum(text, name, l) - metric_sum(before, name, l);
  };
  const std::string after = settled_metrics([&](const std::string& text) {
    const double one = grew(text, "vigil_dns_responses_total", {{"pod", "pod-1"}}),
                 two = grew(text, "vigil_dns_responses_total", {{"pod", "pod-2"}});
    return (one >= kQueries && two >= kQueries) ||
           (one == two && one >= kSteps && grew(text, "vigil_bpf_errors_total", {{"site", "dns_tcp_untracked"}}) >= 4);
  });
  EXPECT_EQ(grew(after, "vigil_dns_requests_total", {{"pod", "pod-1"}, {"direction", "egress"}}), kSteps);
  EXPECT_EQ(grew(after, "vigil_dns_requests_total", {{"pod", "pod-2"}, {"direction", "ingress"}}), kSteps);
  const double untracked = grew(after, "vigil_bpf_errors_total", {{"site", "dns_tcp_untracked"}});
  const double answers = grew(after, "vigil_dns_responses_total", {{"pod", "pod-1"}});
  std::printf("%.0f of %d answers counted, %.0f segments' places lost\n", answers, kQueries, untracked);
  // All answers counted and only the query segment lost, or answers lost in one segment more.
  if (answers == kQueries) {
    EXPECT_EQ(untracked, 2);
  } else {
    EXPECT_EQ(untracked, 4) << answers << " answers counted";
    EXPECT_GE(answers, kSteps) << "at least a whole segment's steps of answers";
  }
  for (const char* pod : {"pod-1", "pod-2"}) {
    EXPECT_EQ(grew(after, "vigil_dns_responses_total", {{"pod", pod}}), answers) << pod << ": both ends saw the same";
    EXPECT_EQ(grew(after, "vigil_dns_unmatched_responses_total", {{"pod", pod}}), answers - kSteps) << pod;
    EXPECT_EQ(grew(after, "vigil_malformed_packets_total", {{"pod", pod}, {"layer", "dns"}}), 0) << pod;
  }
}

// A query in the SYN (TCP Fast Open, allowed without cookies in both lab namespaces) starts the
// stream: it and the queries after it on the connection are counted, once each, on both pods.
// (With the SYN's data not read, the stream lost its place at once: none of the six counted.)
TEST_F(DnsTelemetry, TcpFastOpenQueryInTheSynCounted) {
  // Client: TFO on, no cookie needed (1 | 4). Server: on, for every listener, no cookie (2 | 0x200 | 0x400).
  ASSERT_EQ(run("ip netns exec " + ns(1) + " sysctl -qw net.ipv4.tcp_fastopen=5").status, 0);
  ASSERT_EQ(run("ip netns exec " + ns(2) + " sysctl -qw net.ipv4.tcp_fastopen=1538").status, 0);
  const std::string before = metrics();
  const int kQueries = 6;
  auto r = run("ip netns exec " + ns(1) + " timeout 30 " + binary_path("tests/tools/vigil-lab-traffic") + " dns-tcp " +
               lab_->ip(2) + " " + std::to_string(kQueries) + " fastopen");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("answered=" + std::to_string(kQueries) + " "), std::string::npos) << r.output;
  // The server really took the first query from a SYN.
  auto tfo = run("ip netns exec " + ns(2) + " nstat -asz TcpExtTCPFastOpenPassive");
  std::smatch m;
  static const std::regex passive_re(R"(TcpExtTCPFastOpenPassive\s+(\d+))");
  ASSERT_TRUE(std::regex_search(tfo.output, m, passive_re)) << tfo.output;
  EXPECT_GE(std::stoi(m[1]), 1) << tfo.output;
  auto grew = [&](const std::string& text, const std::string& name, const std::map<std::string, std::string>& l) {
    return metric_sum(text, name, l) - metric_sum(before, name, l);
  };
  const std::string after = settled_metrics([&](const std::string& text) {
    return grew(text, "vigil_dns_responses_total", {{"pod", "pod-1"}}) >= kQueries &&
           grew(text, "vigil_dns_responses_total", {{"pod", "pod-2"}}) >= kQueries;
  });
  for (const char* pod : {"pod-1", "pod-2"}) {
    SCOPED_TRACE(pod);
    EXPECT_EQ(grew(after, "vigil_dns_requests_total", {{"pod", pod}, {"qtype", "A"}}), kQueries);
    EXPECT_EQ(grew(after, "vigil_dns_requests_total", {{"pod", pod}}), kQueries);
    EXPECT_EQ(grew(after, "vigil_dns_responses_total", {{"pod", pod}}), kQueries);
    EXPECT_EQ(metric_sum(after, "vigil_malformed_packets_total", {{"pod", pod}, {"layer", "dns"}}), 0);
  }
  EXPECT_EQ(metric_sum(after, "vigil_bpf_errors_total", {{"site", "dns_tcp_untracked"}}), 0);
}

}  // namespace

}  // namespace vigil::test
