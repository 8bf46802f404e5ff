// TCP socket events per pod from tp_btf/inet_sock_set_state and tp_btf/tcp_retransmit_skb:
// connection attempts, establishment, failures by cause, retransmits, state transitions and the
// smoothed RTT of finished connections.
#include <linux/types.h>

#include <cmath>
#include <limits>

#include "engine/bpf_maps.h"
#include "engine/families/family.h"
#include "engine/netns_stats.h"
#include "vigil_abi.h"

namespace vigil {
namespace {

std::vector<double> rtt_bounds() {
  std::vector<double> b;
  for (int i = 0; i < VIGIL_RTT_BUCKETS - 1; ++i) b.push_back(std::ldexp(1.0, i + 1) * 1e-6);  // [2^i, 2^(i+1)) us
  b.push_back(std::numeric_limits<double>::infinity());
  return b;
}

class TcpFamily : public Family {
 public:
  const char* name() const override { return "tcp"; }

  void describe(SeriesStore& s) const override {
    s.describe("vigil_tcp_connect_attempts_total", "Active TCP opens by a pod (CLOSE -> SYN_SENT).", SeriesKind::Counter);
    s.describe("vigil_tcp_connections_established_total",
               "TCP connections a pod established, as client (it sent the SYN) or server.", SeriesKind::Counter);
    s.describe("vigil_tcp_connect_failures_total",
               "Active opens that failed: refused (a RST or an ICMP port unreachable answered the SYN), timeout (the kernel gave up after its SYN retries), other (the client closed it first, its own connect timeout or a cancelled attempt, or an ICMP error such as host unreachable).",
               SeriesKind::Counter);
    s.describe("vigil_tcp_retransmits_total", "TCP segments a pod retransmitted.", SeriesKind::Counter);
    s.describe("vigil_tcp_state_transitions_total", "TCP sockets of a pod entering a state.", SeriesKind::Counter);
    s.describe("vigil_tcp_rtt_seconds", "Smoothed RTT of a pod's TCP connections, sampled when they leave ESTABLISHED.",
               SeriesKind::Histogram);
  }

  void read(const FamilyContext& ctx) override {
    static const std::vector<double> bounds = rtt_bounds();
    auto m = ctx.datapath.map("vigil_tcp");
    const uint32_t entries = for_each_percpu<__u32, vigil_tcp_value>(m.fd, m.max_entries, [&](const __u32& id, const std::vector<vigil_tcp_value>& cpus) {
      const WatchedPod* pod = ctx.pods.by_id(id);
      if (!pod) return;
      vigil_tcp_value t{};
      for (const auto& v : cpus) {
        for (int i = 0; i < VIGIL_TCP_EV_MAX; ++i) t.events[i] += v.events[i];
        for (int i = 0; i < VIGIL_TCP_STATE_MAX; ++i) t.transitions[i] += v.transitions[i];
        for (int i = 0; i < VIGIL_RTT_BUCKETS; ++i) t.rtt_buckets[i] += v.rtt_buckets[i];
        t.rtt_sum_us += v.rtt_sum_us;
      }
      auto ev = [&](int e) { return static_cast<double>(t.events[e]); };
      // Counted from the pod's attach (forget_counters), and going on across attaches.
      const uint64_t epoch = pod->attach_serial;
      auto set = [&](const char* name, const Labels& l, double v) { ctx.store.set_continued(name, l, v, epoch); };
      set("vigil_tcp_connect_attempts_total", pod_labels(*pod), ev(VIGIL_TCP_EV_CONNECT));
      set("vigil_tcp_connections_established_total", pod_labels(*pod, {{"role", "client"}}), ev(VIGIL_TCP_EV_ESTABLISHED_OUT));
      set("vigil_tcp_connections_established_total", pod_labels(*pod, {{"role", "server"}}), ev(VIGIL_TCP_EV_ESTABLISHED_IN));
      set("vigil_tcp_connect_failures_total", pod_labels(*pod, {{"reason", "refused"}}), ev(VIGIL_TCP_EV_REFUSED));
      set("vigil_tcp_connect_failures_total", pod_labels(*pod, {{"reason", "timeout"}}), ev(VIGIL_TCP_EV_TIMEOUT));
      set("vigil_tcp_connect_failures_total", pod_labels(*pod, {{"reason", "other"}}), ev(VIGIL_TCP_EV_CONNECT_FAILED));
      set("vigil_tcp_retransmits_total", pod_labels(*pod), ev(VIGIL_TCP_EV_RETRANSMIT));
      for (int i = 0; i < VIGIL_TCP_STATE_MAX; ++i)
        if (tcp_state_name(i) && t.transitions[i])
          set("vigil_tcp_state_transitions_total", pod_labels(*pod, {{"state", tcp_state_name(i)}}),
              static_cast<double>(t.transitions[i]));
      std::vector<uint64_t> counts(t.rtt_buckets, t.rtt_buckets + VIGIL_RTT_BUCKETS);
      ctx.store.set_histogram_continued("vigil_tcp_rtt_seconds", pod_labels(*pod), bounds, counts,
                                        static_cast<double>(t.rtt_sum_us) * 1e-6, epoch);
    });
    if (m.fd >= 0) ctx.walked("vigil_tcp", entries);
  }
};

}  // namespace

std::unique_ptr<Family> make_tcp_family() { return std::make_unique<TcpFamily>(); }

}  // namespace vigil
