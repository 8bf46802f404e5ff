// DNS per pod from the TC programs (bpf/lib/dns.h): requests and responses by question type
// and rcode, the request->response latency measured in the kernel as client or server, and
// responses that matched no request, and requests that got no response in time. Malformed DNS is
// exported by the traffic family.
#include <linux/types.h>

#include <time.h>

#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "engine/bpf_maps.h"
#include "engine/families/family.h"
#include "vigil_abi.h"

namespace vigil {
namespace {

const char* kQtypeNames[VIGIL_DNS_QTYPE_MAX] = {"A",   "AAAA", "CNAME", "MX",   "NS",  "PTR",  "SOA",
                                                "SRV", "TXT",  "HTTPS", "SVCB", "ANY", "other"};

// RCODE names of the IANA registry for the header's 4 bits; unassigned values by number.
const char* kRcodeNames[VIGIL_DNS_RCODE_MAX] = {"NOERROR", "FORMERR",  "SERVFAIL", "NXDOMAIN", "NOTIMP",  "REFUSED",
                                                "YXDOMAIN", "YXRRSET", "NXRRSET",  "NOTAUTH",  "NOTZONE", "DSOTYPENI",
                                                "RCODE12",  "RCODE13", "RCODE14",  "RCODE15"};

const char* kSideNames[VIGIL_DNS_SIDE_MAX] = {"client", "server"};

std::vector<double> latency_bounds() {
  std::vector<double> b;
  for (int i = 0; i < VIGIL_DNS_LATENCY_BUCKETS - 1; ++i) b.push_back(std::ldexp(1.0, i + 1) * 1e-6);  // [2^i, 2^(i+1)) us
  b.push_back(std::numeric_limits<double>::infinity());
  return b;
}

class DnsFamily : public Family {
 public:
  const char* name() const override { return "dns"; }

  void describe(SeriesStore& s) const override {
    s.describe("vigil_dns_requests_total",
               "DNS requests a pod sent (egress) or received (ingress), by question type.", SeriesKind::Counter);
    s.describe("vigil_dns_responses_total",
               "DNS responses a pod received (ingress) or sent (egress), by question type and rcode.",
               SeriesKind::Counter);
    s.describe("vigil_dns_latency_seconds",
               "Time from a DNS request to its response, matched in the kernel by transaction id, as the pod's "
               "client or server side saw it.",
               SeriesKind::Histogram);
    s.describe("vigil_dns_timeouts_total",
               "DNS requests a pod sent (side client) or received (side server) that got no response within "
               "metrics.dns_timeout (5 s, a resolver's usual wait) of their first send: answered only after a retry "
               "or late, or not at all. Lost queries, overloaded or unreachable servers.",
               SeriesKind::Counter);
    s.describe("vigil_dns_request_retries_total",
               "DNS requests a pod sent (side client) or received (side server) again, same id from the same address "
               "and port to the same server, while the first still waited for its response: a resolver's retry "
               "after a lost or slow answer. Latency is timed from the first send.",
               SeriesKind::Counter);
    s.describe("vigil_dns_unmatched_responses_total",
               "DNS responses of a pod with no request waiting for them (sent before the agent attached, not tracked "
               "because the node's table of waiting requests was full, answered after twice metrics.dns_timeout, "
               "duplicates).",
               SeriesKind::Counter);
  }

  explicit DnsFamily(double timeout_seconds) : timeout_ns_(static_cast<uint64_t>(timeout_seconds * 1e9)) {}

  void read(const FamilyContext& ctx) override {
    read_counts(ctx);
    read_latency(ctx);
    read_timeouts(ctx);
  }

 private:
  void read_counts(const FamilyContext& ctx) {
    auto m = ctx.datapath.map("vigil_dns_counts");
    if (m.fd < 0) return;
    std::vector<vigil_dns_key> orphans;
    const uint32_t entries = for_each_percpu<vigil_dns_key, __u64>(m.fd, m.max_entries, [&](const vigil_dns_key& key, const std::vector<__u64>& cpus) {
      const WatchedPod* pod = ctx.pods.by_ifindex(key.ifindex);
      if (!pod) {
        orphans.push_back(key);
        return;
      }
      if (!pod->packet_level) return;  // counted only while a capture had the programs on
      if (key.direction >= VIGIL_DIR_MAX || key.qtype >= VIGIL_DNS_QTYPE_MAX || key.rcode >= VIGIL_DNS_RCODE_MAX) return;
      __u64 n = 0;
      for (auto c : cpus) n += c;
      const char* dir = direction_name(key.direction);
      // Counted from the pod's attach (forget_counters), and going on across attaches.
      if (key.qr == 0)
        ctx.store.set_continued("vigil_dns_requests_total",
                                pod_labels(*pod, {{"direction", dir}, {"qtype", kQtypeNames[key.qtype]}}),
                                static_cast<double>(n), pod->attach_serial);
      else
        ctx.store.set_continued("vigil_dns_responses_total",
                                pod_labels(*pod, {{"direction", dir}, {"qtype", kQtypeNames[key.qtype]},
                                                  {"rcode", kRcodeNames[key.rcode]}}),
                                static_cast<double>(n), pod->attach_serial);
    });
    ctx.walked("vigil_dns_counts", entries - forget(m.fd, orphans));
  }

  void read_latency(const FamilyContext& ctx) {
    static const std::vector<double> bounds = latency_bounds();
    auto m = ctx.datapath.map("vigil_dns_latency");
    if (m.fd < 0) return;
    std::vector<__u32> orphans;
    const uint32_t entries = for_each_percpu<__u32, vigil_dns_latency_value>(
        m.fd, m.max_entries, [&](const __u32& ifindex, const std::vector<vigil_dns_latency_value>& cpus) {
          const WatchedPod* pod = ctx.pods.by_ifindex(ifindex);
          if (!pod) {
            orphans.push_back(ifindex);
            return;
          }
          if (!pod->packet_level) return;
          vigil_dns_latency_value t{};
          for (const auto& v : cpus) {
            for (int s = 0; s < VIGIL_DNS_SIDE_MAX; ++s) {
              for (int b = 0; b < VIGIL_DNS_LATENCY_BUCKETS; ++b) t.buckets[s][b] += v.buckets[s][b];
              t.sum_ns[s] += v.sum_ns[s];
              t.retries[s] += v.retries[s];
              t.late[s] += v.late[s];
            }
            t.unmatched_responses += v.unmatched_responses;
          }
          const uint64_t epoch = pod->attach_serial;
          for (int s = 0; s < VIGIL_DNS_SIDE_MAX; ++s) {
            late_[{ifindex, s}] = {epoch, t.late[s]};
            if (t.retries[s])
              ctx.store.set_continued("vigil_dns_request_retries_total", pod_labels(*pod, {{"side", kSideNames[s]}}),
                                      static_cast<double>(t.retries[s]), epoch);
          }
          for (int s = 0; s < VIGIL_DNS_SIDE_MAX; ++s) {
            std::vector<uint64_t> counts(t.buckets[s], t.buckets[s] + VIGIL_DNS_LATENCY_BUCKETS);
            uint64_t total = 0;
            for (auto c : counts) total += c;
            if (total == 0) continue;  // a side's histogram appears with its first matched response
            ctx.store.set_histogram_continued("vigil_dns_latency_seconds", pod_labels(*pod, {{"side", kSideNames[s]}}),
                                              bounds, counts, static_cast<double>(t.sum_ns[s]) * 1e-9, epoch);
          }
          if (t.unmatched_responses)
            ctx.store.set_continued("vigil_dns_unmatched_responses_total", pod_labels(*pod),
                                    static_cast<double>(t.unmatched_responses), epoch);
        });
    ctx.walked("vigil_dns_latency", entries - forget(m.fd, orphans));
  }

  // Timeouts come from two places. A request answered later than the timeout after its first
  // send (after a retry, say) is counted by the kernel as it is answered (late_, read with the
  // latency). One still waiting at twice the timeout is taken out here and counted, unless its
  // response takes it first; twice, so that the answer to a resolver's retry (sent when the
  // first try timed out) still finds the first send's time. A scan once a second at most: two
  // system calls an entry, and few entries wait (answered ones leave at once).
  void read_timeouts(const FamilyContext& ctx) {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);  // bpf_ktime_get_ns()'s clock
    const uint64_t now = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
    if (now >= next_scan_ns_) {
      next_scan_ns_ = now + 1000000000ull;
      scan_unanswered(ctx, now);
    }
    // Of the pod that has the interface now, since its attach; going on across attaches.
    std::map<std::pair<uint32_t, int>, uint64_t> total;
    for (const auto* counts : {&late_, &unanswered_})
      for (const auto& [key, c] : *counts) {
        const WatchedPod* pod = ctx.pods.by_ifindex(key.first);
        if (pod && c.epoch == pod->attach_serial) total[key] += c.n;
      }
    for (const auto& [key, n] : total) {
      const WatchedPod* pod = ctx.pods.by_ifindex(key.first);
      if (!pod->packet_level || n == 0) continue;
      ctx.store.set_continued("vigil_dns_timeouts_total", pod_labels(*pod, {{"side", kSideNames[key.second]}}),
                              static_cast<double>(n), pod->attach_serial);
    }
  }

  void scan_unanswered(const FamilyContext& ctx, uint64_t now) {
    auto m = ctx.datapath.map("vigil_dns_pending");
    if (m.fd < 0) return;
    std::vector<vigil_dns_pending_key> stale;
    uint32_t entries = for_each_entry<vigil_dns_pending_key, __u64>(m.fd, m.max_entries, [&](const vigil_dns_pending_key& key, const __u64& seen) {
      if (seen < now && now - seen >= 2 * timeout_ns_) stale.push_back(key);
    });
    for (const auto& key : stale) {
      // Answered since the walk, and a new request under the same key (a client that reuses its
      // port and id) stored: that one is not taken out, nor counted, for the old one's silence.
      __u64 seen = 0;
      if (bpf_map_lookup_elem(m.fd, &key, &seen) != 0 || seen >= now || now - seen < 2 * timeout_ns_) continue;
      if (bpf_map_delete_elem(m.fd, &key) != 0) continue;  // answered meanwhile
      --entries;
      const int side = key.request_dir == VIGIL_DIR_EGRESS ? VIGIL_DNS_SIDE_CLIENT : VIGIL_DNS_SIDE_SERVER;
      const WatchedPod* pod = ctx.pods.by_ifindex(key.ifindex);
      if (!pod) continue;
      Counted& c = unanswered_[{key.ifindex, side}];
      if (c.epoch != pod->attach_serial) c = {pod->attach_serial, 0};
      ++c.n;
    }
    ctx.walked("vigil_dns_pending", entries);
    // A pod that is gone, or attached again: a later attach of it, or a later pod on a reused
    // ifindex, starts from zero.
    for (auto* counts : {&unanswered_, &late_})
      for (auto it = counts->begin(); it != counts->end();) {
        const WatchedPod* pod = ctx.pods.by_ifindex(it->first.first);
        it = pod && pod->attach_serial == it->second.epoch ? std::next(it) : counts->erase(it);
      }
  }

  uint64_t timeout_ns_;
  uint64_t next_scan_ns_ = 0;
  // (ifindex, side) -> requests timed out: taken out unanswered here, and answered late (the
  // kernel's count, as last read), each of one attach of the interface's pod.
  struct Counted {
    uint64_t epoch = 0;  // the pod's attach_serial
    uint64_t n = 0;
  };
  std::map<std::pair<uint32_t, int>, Counted> unanswered_, late_;

  // Entries of interfaces no watched pod owns any more: the pod is gone (its series expire
  // with the agent's grace), and a later pod on a reused ifindex must start from zero.
  // Returns how many it deleted.
  template <typename K>
  static uint32_t forget(int fd, const std::vector<K>& keys) {
    uint32_t deleted = 0;
    for (const auto& k : keys) deleted += bpf_map_delete_elem(fd, &k) == 0;
    return deleted;
  }
};

}  // namespace

std::unique_ptr<Family> make_dns_family(double timeout_seconds) { return std::make_unique<DnsFamily>(timeout_seconds); }

}  // namespace vigil
