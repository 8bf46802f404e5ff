// Remote context: traffic of opted-in pods by peer. A peer that is a watched pod is named
// (remote_namespace, remote_pod); any other is its address; beyond max_peers it is "other".
#include <linux/types.h>

#include "engine/bpf_maps.h"
#include "engine/families/family.h"
#include "engine/netns.h"
#include <cstring>

#include "vigil_abi.h"

namespace vigil {
namespace {

class RemoteFamily : public Family {
 public:
  const char* name() const override { return "remote"; }

  void describe(SeriesStore& s) const override {
    s.describe("vigil_remote_forward_packets_total",
               "Packets of a pod by remote peer (pods that opt in to remote_context; bounded by max_peers, rest in remote_ip=\"other\").",
               SeriesKind::Counter);
    s.describe("vigil_remote_forward_bytes_total", "Bytes of a pod by remote peer (see vigil_remote_forward_packets_total).",
               SeriesKind::Counter);
    s.describe("vigil_remote_drop_packets_total",
               "Dropped packets of a pod by remote peer, any kernel drop reason (appears with the first drop).",
               SeriesKind::Counter);
    s.describe("vigil_remote_drop_bytes_total", "Dropped bytes of a pod by remote peer.", SeriesKind::Counter);
    s.describe("vigil_remote_tcp_retransmits_total", "TCP segments a pod retransmitted to a remote peer.",
               SeriesKind::Counter);
    s.describe("vigil_remote_tcp_connect_failures_total",
               "TCP connects of a pod to a remote peer that were refused or timed out.", SeriesKind::Counter);
  }

  void read(const FamilyContext& ctx) override {
    static const uint8_t kOther[16] = {};
    auto m = ctx.datapath.map("vigil_remote");
    std::vector<vigil_remote_value> cpus;
    // vigil_remote gives each peer's index into vigil_remote_values (per CPU).
    for_each_entry<vigil_remote_key, __u32>(
        m.fd, m.max_entries, [&](const vigil_remote_key& key, __u32 index) {
          const WatchedPod* pod = ctx.pods.by_ifindex(key.ifindex);
          if (!pod || !ctx.datapath.read_remote(index, cpus)) return;
          vigil_remote_value t{};
          for (const auto& v : cpus) {
            t.packets += v.packets;
            t.bytes += v.bytes;
            t.drop_packets += v.drop_packets;
            t.drop_bytes += v.drop_bytes;
            t.tcp_retransmits += v.tcp_retransmits;
            t.tcp_connect_failures += v.tcp_connect_failures;
          }
          // Two buckets that are not addresses: "other" (all zero: peers past max_peers) and
          // "local-scope" (::1: link-local and multicast peers, bpf/counters.bpf.c local_scope()).
          static const uint8_t kLocalScope[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
          const bool other = std::memcmp(key.addr, kOther, 16) == 0;
          const bool local = std::memcmp(key.addr, kLocalScope, 16) == 0;
          const std::string ip = other ? "other" : local ? "local-scope" : key_to_ip(key.addr);
          const WatchedPod* peer = other || local ? nullptr : ctx.pods.by_ip(ip);
          // Not a pod of this node: another node's pod or a Service, when the API server says.
          const kube::PeerInfo* known = nullptr;
          if (!peer && !other && !local && ctx.peers)
            if (auto it = ctx.peers->find(ip); it != ctx.peers->end()) known = &it->second;
          Labels l = pod_labels(*pod, {{"direction", direction_name(key.direction)},
                                       {"remote_ip", ip},
                                       {"remote_namespace", peer ? peer->spec.namespace_ : known ? known->namespace_ : ""},
                                       {"remote_pod", peer ? peer->spec.name : known ? known->pod : ""},
                                       {"remote_service", known ? known->service : ""}});
          // Empty label values are the same as absent ones to Prometheus; drop them.
          std::erase_if(l, [](const auto& kv) { return kv.second.empty(); });
          // A peer entry may exist for drops or sockets only; each family appears with its first count.
          auto put = [&](const char* name, uint64_t v) {
            if (v) ctx.store.set(name, l, static_cast<double>(v));
          };
          put("vigil_remote_forward_packets_total", t.packets);
          put("vigil_remote_forward_bytes_total", t.bytes);
          put("vigil_remote_drop_packets_total", t.drop_packets);
          put("vigil_remote_drop_bytes_total", t.drop_bytes);
          put("vigil_remote_tcp_retransmits_total", t.tcp_retransmits);
          put("vigil_remote_tcp_connect_failures_total", t.tcp_connect_failures);
        });
  }
};

}  // namespace

std::unique_ptr<Family> make_remote_family() { return std::make_unique<RemoteFamily>(); }

}  // namespace vigil
