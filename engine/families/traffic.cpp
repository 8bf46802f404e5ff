// Forwarded packets and bytes, TCP flags and malformed packets, per pod and direction, from the
// TC programs' vigil_traffic array, at the slot the datapath gave the pod's host-side interface.
// Pods without the programs (metrics.packet_level) get their forward counts from that
// interface's own statistics instead, and no flag or malformed counts. A pod's forward series go
// on from where they were when it changes from one to the other (continued_counters.h).
#include <linux/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "engine/bpf_maps.h"
#include "engine/families/continued_counters.h"
#include "engine/families/family.h"
#include "engine/netns_stats.h"
#include "vigil_abi.h"

namespace vigil {
namespace {

const char* kFlagNames[VIGIL_TCP_FLAG_MAX] = {"FIN", "SYN", "SYNACK", "RST", "PSH", "ACK", "URG", "ECE", "CWR", nullptr};
const char* kMalformedNames[VIGIL_MALFORMED_MAX] = {"l2", "l3", "l4", "dns"};

class TrafficFamily : public Family {
 public:
  const char* name() const override { return "traffic"; }

  void describe(SeriesStore& s) const override {
    s.describe("vigil_forward_packets_total", "Packets forwarded to (ingress) or from (egress) a pod, as its interface counts them: a GSO or GRO packet of many TCP segments is one.", SeriesKind::Counter);
    s.describe("vigil_forward_bytes_total", "Bytes forwarded to (ingress) or from (egress) a pod, Ethernet header included.",
               SeriesKind::Counter);
    s.describe("vigil_tcp_flags_total", "TCP packets of a pod by flag, as the pod's interface passes them (a GSO or GRO packet of several segments once, as in vigil_forward_packets_total; SYN counts SYN without ACK, SYNACK both).",
               SeriesKind::Counter);
    s.describe("vigil_tcp_resets_total", "TCP resets a pod sent (egress) or received (ingress).", SeriesKind::Counter);
    s.describe("vigil_malformed_packets_total",
               "Packets of a pod whose headers did not parse, by the layer that failed; counted once, not parsed further.",
               SeriesKind::Counter);
  }

  void read(const FamilyContext& ctx) override {
    std::vector<vigil_traffic_value> cpus;
    for (const auto& [ifindex, slot] : ctx.datapath.traffic_slots()) {
          const WatchedPod* pod = ctx.pods.by_ifindex(ifindex);
          // A pod without packet-level counting may have the programs for a capture: what
          // they count then is not its series' (they come from the interface below).
          if (!pod || !pod->packet_level || !ctx.datapath.read_traffic(slot, cpus)) continue;
          vigil_traffic_value t{};
          for (const auto& v : cpus) {
            for (int d = 0; d < VIGIL_DIR_MAX; ++d) {
              t.packets[d] += v.packets[d];
              t.bytes[d] += v.bytes[d];
              for (int f = 0; f < VIGIL_TCP_FLAG_MAX; ++f) t.tcp_flags[d][f] += v.tcp_flags[d][f];
              // Segments counted as plain ACK or PSH+ACK (vigil_abi.h) carry those flags too.
              const uint64_t ack = v.tcp_plain[d][VIGIL_TCP_PLAIN_ACK], psh_ack = v.tcp_plain[d][VIGIL_TCP_PLAIN_PSH_ACK];
              t.tcp_flags[d][VIGIL_TCP_ACK] += ack + psh_ack;
              t.tcp_flags[d][VIGIL_TCP_PSH] += psh_ack;
              for (int k = 0; k < VIGIL_MALFORMED_MAX; ++k) t.malformed[d][k] += v.malformed[d][k];
            }
          }
          // The programs count from their attach.
          const ContinuedCounters::Source programs{kPrograms, pod->attach_serial, 0, true};
          for (int d = 0; d < VIGIL_DIR_MAX; ++d) {
            const char* dir = direction_name(d);
            Labels l = pod_labels(*pod, {{"direction", dir}});
            set_forward(ctx, *pod, d, l, programs, t.packets[d], t.bytes[d]);
            const uint64_t epoch = pod->attach_serial;
            ctx.store.set_continued("vigil_tcp_resets_total", l, static_cast<double>(t.tcp_flags[d][VIGIL_TCP_RST]), epoch);
            for (int f = 0; f < VIGIL_TCP_FLAG_MAX; ++f) {
              // A flag series appears with its first segment, like Prometheus counters should.
              if (kFlagNames[f] && t.tcp_flags[d][f])
                ctx.store.set_continued("vigil_tcp_flags_total", pod_labels(*pod, {{"direction", dir}, {"flag", kFlagNames[f]}}),
                                        static_cast<double>(t.tcp_flags[d][f]), epoch);
            }
            for (int k = 0; k < VIGIL_MALFORMED_MAX; ++k) {
              if (t.malformed[d][k])
                ctx.store.set_continued("vigil_malformed_packets_total",
                                        pod_labels(*pod, {{"direction", dir}, {"layer", kMalformedNames[k]}}),
                                        static_cast<double>(t.malformed[d][k]), epoch);
            }
          }
    }
    read_interfaces(ctx);
    forward_.keep_only([&](const std::string& pod) { return ctx.pods.pods().count(pod) > 0; });
  }

 private:
  enum SourceKind { kPrograms = 1, kHostSide, kOwnEnd };

  // A pod's forward counts of direction `dir` (series `labels`) as `source` reads them: the
  // series goes on from where it was when the pod's source changes (ContinuedCounters).
  void set_forward(const FamilyContext& ctx, const WatchedPod& pod, int dir, const Labels& labels,
                   const ContinuedCounters::Source& source, uint64_t packets, uint64_t bytes) {
    auto go_on = [&](const char* name, int part, uint64_t raw) {
      const double v = forward_.next({pod.spec.key(), 2 * dir + part}, source, static_cast<double>(raw),
                                     [&] { return ctx.store.value(name, labels); });
      ctx.store.set(name, labels, v);
    };
    go_on("vigil_forward_packets_total", 0, packets);
    go_on("vigil_forward_bytes_total", 1, bytes);
  }

  // The host-side interface's statistics of each pod without packet-level counting: what it
  // received the pod sent (egress), what it sent the pod received (ingress; or, where
  // metrics.ingress_hook puts it on the pod's own end, what that end received). The kernel's
  // counts, exact like the programs' and likewise with Ethernet headers; they start at the
  // interface's creation (a pod already running when the agent starts has its history).
  void read_interfaces(const FamilyContext& ctx) {
    bool any = false;
    for (const auto& [key, pod] : ctx.pods.pods()) any = any || (pod.attached && !pod.packet_level);
    if (!any) return;
    auto links = read_link_traffic();
    if (!links) {
      if (links.error().message != last_error_) spdlog::warn("traffic: interface statistics: {}", links.error().message);
      last_error_ = links.error().message;
      return;
    }
    last_error_.clear();
    // Pods whose ingress_hook is their own end (an eBPF CNI may deliver past the host-side veth,
    // whose transmit counters then miss those packets): what they receive is their own end's
    // receive counters, read in their namespaces on one thread.
    std::vector<const WatchedPod*> own;
    std::vector<LinkInNetns> own_links;
    for (const auto& [key, pod] : ctx.pods.pods())
      if (pod.attached && !pod.packet_level && pod.stats_on_pod_side) {
        own.push_back(&pod);
        own_links.push_back({pod.iface.netns_path, pod.iface.netns_inode, pod.iface.pod_ifindex});
      }
    std::vector<Result<LinkTraffic>> own_traffic = own_links.empty() ? std::vector<Result<LinkTraffic>>{}
                                                                     : read_link_traffic_in(own_links);
    // One that failed is gone, or its path went, since the pods were refreshed: the pod manager
    // notices at the next tick; its series keep their values meanwhile.
    std::map<const WatchedPod*, LinkTraffic> received;
    for (size_t i = 0; i < own.size(); ++i)
      if (own_traffic[i]) received[own[i]] = *own_traffic[i];
    for (const auto& [key, pod] : ctx.pods.pods()) {
      if (!pod.attached || pod.packet_level) continue;
      auto it = links->find(pod.iface.host_ifindex);
      if (it == links->end()) continue;  // gone since the pods were refreshed
      const LinkTraffic& t = it->second;
      Labels in = pod_labels(pod, {{"direction", direction_name(VIGIL_DIR_INGRESS)}});
      Labels out = pod_labels(pod, {{"direction", direction_name(VIGIL_DIR_EGRESS)}});
      // The statistics count from the interface's creation.
      const ContinuedCounters::Source host{kHostSide, pod.iface.host_ifindex, 0, false};
      if (!pod.stats_on_pod_side) {
        set_forward(ctx, pod, VIGIL_DIR_INGRESS, in, host, t.tx_packets, t.tx_bytes);
      } else if (auto r = received.find(&pod); r != received.end()) {
        const ContinuedCounters::Source own{kOwnEnd, pod.iface.netns_inode, pod.iface.pod_ifindex, false};
        set_forward(ctx, pod, VIGIL_DIR_INGRESS, in, own, r->second.rx_packets, r->second.rx_bytes);
      }
      set_forward(ctx, pod, VIGIL_DIR_EGRESS, out, host, t.rx_packets, t.rx_bytes);
    }
  }

  std::string last_error_;
  ContinuedCounters forward_;  // vigil_forward_{packets,bytes}_total of every pod
};

}  // namespace

std::unique_ptr<Family> make_traffic_family() { return std::make_unique<TrafficFamily>(); }

}  // namespace vigil
