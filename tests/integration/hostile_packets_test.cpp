// Hostile and unusual packets (tests/tools/packet_craft.cpp) from lab pod 1 to lab pod 2: each
// is counted exactly once as forwarded, malformed ones once under the layer that failed, never
// as DNS requests or responses and never on another pod; well-formed but unusual ones (IP
// options, IPv6 extension headers, VLAN tags, fragments) are plain traffic, and a well-formed DNS
// query behind them is a request with its qtype.
//
// The frames go to a MAC address that the bridge forwards to pod 2 only (a static entry) and that
// is not pod 2's own, so pod 2's stack drops them without a word: nothing answers, and what pod 1
// sent is all there is. What reaches pod 2 is counted on its eth0 by the tool itself, because
// the host's bridge may drop some of it first (br_netfilter drops bad IPv4 headers, for one).
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "support.h"

namespace vigil::test {
namespace {

using namespace std::chrono_literals;

struct Expect {
  const char* kind;
  int count;
  const char* layer;   // malformed layer, or "" for none
  const char* qtype;   // DNS request or response qtype, or "" for no DNS message
  const char* rcode;   // for a response; "" for a request
};

// Every kind of the tool, how many of it the test sends (all different, so that a kind counted
// in the wrong place shows), and what Vigil must make of it (semantics: bpf/lib/packet.h,
// bpf/lib/dns.h and enum vigil_malformed_kind in bpf/vigil_abi.h).
const std::vector<Expect> kExpect = {
    {"vlan-truncated", 2, "l2", "", ""},
    {"ip4-truncated", 3, "l3", "", ""},
    {"ip4-bad-ihl", 4, "l3", "", ""},
    {"ip4-bad-version", 5, "l3", "", ""},
    {"ip4-options-truncated", 6, "l3", "", ""},
    {"ip6-truncated", 7, "l3", "", ""},
    {"ip6-ext-truncated", 2, "l3", "", ""},
    {"ip6-too-many-ext", 3, "l3", "", ""},
    {"tcp-truncated", 4, "l4", "", ""},
    {"tcp-bad-doff", 5, "l4", "", ""},
    {"tcp-options-truncated", 6, "l4", "", ""},
    {"udp-truncated", 7, "l4", "", ""},
    {"udp-bad-len", 2, "l4", "", ""},
    {"ip6-udp-truncated", 3, "l4", "", ""},
    {"tcp-ip4-header-only", 4, "l4", "", ""},
    {"dns-ip4-header-only", 5, "l4", "", ""},
    {"dns-ip6-payload-short", 6, "l4", "", ""},
    {"dns-udp-len-past-ip", 7, "l4", "", ""},
    {"ip4-len-past-frame", 2, "l3", "", ""},
    {"dns-udp-len-short", 3, "dns", "", ""},
    {"dns-compression-loop", 4, "dns", "", ""},
    {"dns-compression-self", 5, "dns", "", ""},
    {"dns-query-qd0", 6, "dns", "", ""},
    {"dns-qd2", 7, "dns", "", ""},
    {"dns-qd1-empty", 2, "dns", "", ""},
    {"dns-name-truncated", 3, "dns", "", ""},
    {"dns-label-64", 4, "dns", "", ""},
    {"dns-name-257", 5, "dns", "", ""},
    {"dns-no-qclass", 6, "dns", "", ""},
    {"dns-short", 7, "dns", "", ""},
    {"dns-response-loop", 2, "dns", "", ""},
    {"dns-tcp-qd2", 3, "dns", "", ""},
    {"dns-ip6-ext-label-64", 4, "dns", "", ""},
    {"ip4-options", 5, "", "", ""},
    {"ip4-options-max", 6, "", "", ""},
    {"ip6-ext", 7, "", "", ""},
    {"ip6-ext-6", 2, "", "", ""},
    {"vlan", 3, "", "", ""},
    {"qinq", 4, "", "", ""},
    {"ip4-frag-first", 5, "", "", ""},
    {"ip4-frag-later", 6, "", "", ""},
    {"ip6-frag-first", 7, "", "", ""},
    {"ip6-frag-later", 2, "", "", ""},
    {"dns-ip4-options", 3, "", "A", ""},
    {"dns-ip6-ext", 4, "", "AAAA", ""},
    {"dns-vlan", 5, "", "MX", ""},
    {"dns-tcp-ip6-ext", 6, "", "TXT", ""},
    {"dns-response-qd0", 7, "", "other", "FORMERR"},
    {"tcp-flags-all", 3, "", "", ""},
    {"tcp-flags-syn-ece-cwr", 4, "", "", ""},
    {"tcp-flags-fin-ack", 5, "", "", ""},
    {"tcp-flags-none", 6, "", "", ""},
    {"tcp-flags-ack", 7, "", "", ""},
    {"tcp-flags-psh-ack", 3, "", "", ""},
    {"tcp-flags-urg-psh-ack", 2, "", "", ""},
    {"udp-5000", 4, "", "", ""},
    {"tcp-5000-psh-ack", 5, "", "", ""},
    {"dns-ip6-ext-5000", 6, "", "AAAA", ""},
    {"dns-ip6-payload-zero", 2, "l4", "", ""},
    {"dns-ip4-frag-first-padded", 3, "", "", ""},
    {"dns-tcp-zeros", 4, "dns", "", ""},
    {"dns-ip6-ah", 5, "", "", ""},
};

// The TCP flags each packet of a kind carries, as counted (SYN is a SYN without ACK, SYNACK both).
const std::map<std::string, std::vector<const char*>> kFlags = {
    {"dns-tcp-qd2", {"PSH", "ACK"}},
    {"dns-tcp-ip6-ext", {"PSH", "ACK"}},
    {"tcp-flags-all", {"FIN", "SYNACK", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}},
    {"tcp-flags-syn-ece-cwr", {"SYN", "ECE", "CWR"}},
    {"tcp-flags-fin-ack", {"FIN", "ACK"}},
    {"tcp-flags-none", {}},
    {"tcp-flags-ack", {"ACK"}},
    {"tcp-flags-psh-ack", {"PSH", "ACK"}},
    {"tcp-flags-urg-psh-ack", {"URG", "PSH", "ACK"}},
    {"tcp-5000-psh-ack", {"PSH", "ACK"}},
    {"dns-tcp-zeros", {"PSH", "ACK"}},
};
const char* kFlagNames[] = {"FIN", "SYN", "SYNACK", "RST", "PSH", "ACK", "URG", "ECE", "CWR"};

// Kinds that are valid IP all the way: nothing on the way may drop them, so all must arrive.
// (Fragments are left out: a host that reassembles on its bridge holds them.)
bool must_arrive(const Expect& e) {
  const std::string k = e.kind;
  return std::string(e.layer).empty() && k.find("frag") == std::string::npos;
}

const char* kFakeMac = "02:76:64:00:00:02";  // forwarded to pod 2's port, not pod 2's address
const char* kLayers[] = {"l2", "l3", "l4", "dns"};

class HostilePackets : public ::testing::Test {
 protected:
  void SetUp() override {
    VIGIL_REQUIRE_ROOT();
    lab_ = std::make_unique<Lab>(3);
    // Quiet pods: no IPv6 router solicitations or MLD reports from the pods, their host-side
    // veths or the bridge, so that what the test sends is all the traffic there is.
    for (int pod = 1; pod <= 3; ++pod) {
      ASSERT_EQ(run("ip netns exec " + ns(pod) + " sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1").status, 0);
      ASSERT_EQ(run("sysctl -qw net.ipv6.conf." + lab_->veth(pod) + ".disable_ipv6=1").status, 0);
    }
    ASSERT_EQ(run("sysctl -qw net.ipv6.conf." + lab_->prefix() + "-br0.disable_ipv6=1").status, 0);
    // Room for the kinds of more than a page (their headers not in the skb's linear part).
    for (int pod = 1; pod <= 3; ++pod) {
      ASSERT_EQ(run("ip -n " + ns(pod) + " link set eth0 mtu 9000").status, 0);
      ASSERT_EQ(run("ip link set " + lab_->veth(pod) + " mtu 9000").status, 0);
    }
    ASSERT_EQ(run("ip link set " + lab_->prefix() + "-br0 mtu 9000").status, 0);
    auto fdb = run(std::string("bridge fdb replace ") + kFakeMac + " dev " + lab_->veth(2) + " master static");
    ASSERT_EQ(fdb.status, 0) << fdb.output;

    dir_ = make_temp_dir();
    port_ = free_port();
    std::string config = write_temp_file(dir_, "vigil.yaml",
                                         "listen: 127.0.0.1:" + std::to_string(port_) + "\nstate_dir: state\ntick: 200ms\n"
                                         "pods: {source: file, file: " + lab_->pods_file() + "}\nrules: []\nnotifiers: []\n");
    agent_ = std::make_unique<Process>(std::vector<std::string>{binary_path("vigil"), "agent", "--config", config},
                                       dir_ + "/agent.log");
    ASSERT_TRUE(wait_for_attached(port_, 3)) << "agent did not attach:\n" << agent_->log();
  }
  void TearDown() override {
    capture_.reset();
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
  std::string craft() const { return binary_path("tests/tools/vigil-packet-craft"); }

  // Waits (bounded) until no pod's forwarded packets change for a second.
  bool wait_quiet() {
    double last = -1;
    int stable = 0;
    for (int i = 0; i < 40; ++i) {
      double now = metric_sum(metrics(), "vigil_forward_packets_total", {});
      stable = now == last ? stable + 1 : 0;
      if (stable >= 4) return true;
      last = now;
      std::this_thread::sleep_for(250ms);
    }
    return false;
  }

  std::unique_ptr<Lab> lab_;
  std::unique_ptr<Process> agent_;
  std::unique_ptr<Process> capture_;
  std::string dir_;
  int port_ = 0;
};

TEST_F(HostilePackets, EachCountedOnceUnderTheRightLayerAndNeverAsDns) {
  // The tool and this table agree on the kinds.
  {
    auto r = run(craft() + " list");
    ASSERT_EQ(r.status, 0) << r.output;
    std::set<std::string> listed, table;
    std::istringstream in(r.output);
    for (std::string k; std::getline(in, k);) listed.insert(k);
    for (const auto& e : kExpect) table.insert(e.kind);
    ASSERT_EQ(listed, table);
  }
  ASSERT_TRUE(wait_quiet()) << "lab pods do not go quiet";

  // Count what reaches pod 2's eth0, by kind.
  const std::string capture_log = dir_ + "/capture.log";
  capture_ = std::make_unique<Process>(
      std::vector<std::string>{"/bin/sh", "-c", "exec ip netns exec " + ns(2) + " " + craft() + " capture eth0 700 15000"},
      capture_log);
  bool ready = false;
  for (int i = 0; i < 100 && !ready; ++i) {
    ready = capture_->log().find("ready\n") != std::string::npos;
    if (!ready) std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(ready) << capture_->log();

  const std::string before = metrics();
  std::string args;
  double total = 0;
  for (const auto& e : kExpect) {
    args += std::string(" ") + e.kind + "=" + std::to_string(e.count);
    total += e.count;
  }
  auto sent = run("ip netns exec " + ns(1) + " " + craft() + " send eth0 " + kFakeMac + " " + lab_->ip(1) + " " +
                  lab_->ip(2) + " " + ip6(1) + " " + ip6(2) + args);
  ASSERT_EQ(sent.status, 0) << sent.output;

  for (int i = 0; i < 400 && capture_->running(); ++i) std::this_thread::sleep_for(50ms);  // <= 20 s
  ASSERT_FALSE(capture_->running()) << "capture did not finish";
  std::map<std::string, double> arrived;
  {
    std::istringstream in(capture_->log());
    std::string kind;
    double n;
    while (in >> kind) {
      if (kind == "ready") continue;
      if (in >> n) arrived[kind] = n;
    }
  }
  // Wait (bounded: 10 s) until the agent has read every frame on both ends, then two more
  // ticks, so that a slow tick on a busy machine is waited for and anything extra still shows.
  double arrived_total = 0;
  for (const auto& [kind, n] : arrived) arrived_total += n;
  auto forwarded = [&](const std::string& text, const std::string& pod, const std::string& dir) {
    return metric_sum(text, "vigil_forward_packets_total", {{"pod", pod}, {"direction", dir}}) -
           metric_sum(before, "vigil_forward_packets_total", {{"pod", pod}, {"direction", dir}});
  };
  for (int i = 0; i < 50; ++i) {
    std::string text = metrics();
    if (forwarded(text, "pod-1", "egress") >= total && forwarded(text, "pod-2", "ingress") >= arrived_total) break;
    std::this_thread::sleep_for(200ms);
  }
  std::this_thread::sleep_for(400ms);
  const std::string after = metrics();

  auto delta = [&](const std::string& name, const std::map<std::string, std::string>& l) {
    return metric_sum(after, name, l) - metric_sum(before, name, l);
  };
  // What Vigil must see on a pod, given how many of each kind went through its veth.
  auto check = [&](const std::string& pod, const std::string& dir, const std::map<std::string, double>& seen) {
    SCOPED_TRACE(pod + " " + dir);
    double frames = 0, malformed_total = 0;
    std::map<std::string, double> layer, requests;
    std::map<std::pair<std::string, std::string>, double> responses;
    double all_requests = 0, all_responses = 0;
    std::map<std::string, double> flags;
    for (const auto& e : kExpect) {
      double n = seen.count(e.kind) ? seen.at(e.kind) : 0;
      frames += n;
      if (*e.layer) {
        layer[e.layer] += n;
        malformed_total += n;
      }
      if (*e.qtype && !*e.rcode) {
        requests[e.qtype] += n;
        all_requests += n;
      }
      if (*e.rcode) {
        responses[{e.qtype, e.rcode}] += n;
        all_responses += n;
      }
      if (auto f = kFlags.find(e.kind); f != kFlags.end())
        for (const char* name : f->second) flags[name] += n;
    }
    if (seen.count("other")) frames += seen.at("other");
    const std::map<std::string, std::string> pd = {{"pod", pod}, {"direction", dir}};
    EXPECT_EQ(delta("vigil_forward_packets_total", pd), frames) << "every frame exactly once";
    for (const char* l : kLayers) {
      auto labels = pd;
      labels["layer"] = l;
      EXPECT_EQ(delta("vigil_malformed_packets_total", labels), layer[l]) << "malformed " << l;
    }
    EXPECT_EQ(delta("vigil_malformed_packets_total", pd), malformed_total);
    for (const auto& [qtype, n] : requests) {
      auto labels = pd;
      labels["qtype"] = qtype;
      EXPECT_EQ(delta("vigil_dns_requests_total", labels), n) << "requests " << qtype;
    }
    for (const auto& [key, n] : responses) {
      auto labels = pd;
      labels["qtype"] = key.first;
      labels["rcode"] = key.second;
      EXPECT_EQ(delta("vigil_dns_responses_total", labels), n) << "responses " << key.first << " " << key.second;
    }
    // No other DNS series moved: malformed messages are never requests or responses.
    EXPECT_EQ(delta("vigil_dns_requests_total", {{"pod", pod}}), all_requests);
    EXPECT_EQ(delta("vigil_dns_responses_total", {{"pod", pod}}), all_responses);
    // The FORMERR responses had no request.
    EXPECT_EQ(delta("vigil_dns_unmatched_responses_total", {{"pod", pod}}), all_responses);
    // Each DNS-over-TCP segment was read to its end: nothing left untracked.
    EXPECT_EQ(delta("vigil_bpf_errors_total", {{"site", "dns_tcp_untracked"}}), 0);
    // TCP flags come only from headers that parsed (the DNS segments, PSH|ACK, and the flag
    // kinds), never from the truncated or bad-offset SYNs or the later fragment of a TCP
    // datagram; each flag exactly as often as the packets that carry it.
    for (const char* f : kFlagNames) {
      auto labels = pd;
      labels["flag"] = f;
      EXPECT_EQ(delta("vigil_tcp_flags_total", labels), flags[f]) << "flag " << f;
    }
    std::printf("%s %s: %.0f frames, malformed l2 %.0f l3 %.0f l4 %.0f dns %.0f, dns requests %.0f responses %.0f\n",
                pod.c_str(), dir.c_str(), delta("vigil_forward_packets_total", pd), layer["l2"], layer["l3"],
                layer["l4"], layer["dns"], all_requests, all_responses);
  };

  std::map<std::string, double> sent_counts;
  for (const auto& e : kExpect) sent_counts[e.kind] = e.count;
  check("pod-1", "egress", sent_counts);
  check("pod-2", "ingress", arrived);

  // What arrived is at most what was sent, and everything valid at the IP layer arrived.
  std::string dropped_on_the_way;
  for (const auto& e : kExpect) {
    double n = arrived.count(e.kind) ? arrived[e.kind] : 0;
    EXPECT_LE(n, e.count) << e.kind;
    if (must_arrive(e)) {
      EXPECT_EQ(n, e.count) << e.kind << " did not reach pod 2";
    }
    if (n != e.count) dropped_on_the_way += std::string(" ") + e.kind + "=" + std::to_string(static_cast<int>(n));
  }
  EXPECT_EQ(arrived.count("other") ? arrived["other"] : 0, 0) << "pod 2 received frames the test did not send";
  std::printf("sent %.0f frames of %zu kinds; reached pod 2 short of what was sent:%s\n", total, kExpect.size(),
              dropped_on_the_way.empty() ? " none" : dropped_on_the_way.c_str());

  // Nothing answered, and nothing is attributed to any other pod or direction.
  EXPECT_EQ(delta("vigil_forward_packets_total", {{"pod", "pod-1"}, {"direction", "ingress"}}), 0);
  EXPECT_EQ(delta("vigil_forward_packets_total", {{"pod", "pod-2"}, {"direction", "egress"}}), 0);
  for (const char* name : {"vigil_forward_packets_total", "vigil_malformed_packets_total", "vigil_dns_requests_total",
                           "vigil_dns_responses_total", "vigil_dns_unmatched_responses_total", "vigil_tcp_flags_total"})
    EXPECT_EQ(delta(name, {{"pod", "pod-3"}}), 0) << name << " on the bystander pod 3";
  for (const char* name : {"vigil_malformed_packets_total", "vigil_dns_requests_total", "vigil_dns_responses_total"}) {
    EXPECT_EQ(delta(name, {{"pod", "pod-1"}, {"direction", "ingress"}}), 0) << name;
    EXPECT_EQ(delta(name, {{"pod", "pod-2"}, {"direction", "egress"}}), 0) << name;
  }
  EXPECT_EQ(metric_sum(after, "vigil_bpf_errors_total", {}), 0);
}

}  // namespace
}  // namespace vigil::test
