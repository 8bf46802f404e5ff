// Remote context: traffic of opted-in pods by peer. A peer that is a watched pod is named
// (remote_namespace, remote_pod); any other is its address; beyond max_peers it is "other".
#include <linux/types.h>

#include "engine/bpf_maps.h"
#include "engine/families/family.h"
#include "engine/netns.h"
#include <algorithm>
#include <atomic>
#include <cstring>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

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
    // A peer's count is what vigil_remote_values holds for its index plus what the TC programs'
    // per-CPU entries for the last peer (vigil_traffic_value.remote_cache) hold for it. When a
    // peer changes, an entry's counts move into vigil_remote_values: the values are read first
    // and the entries after, so that a move between the two reads can hide counts for a tick
    // (kept from going backwards below) but never count them twice.
    struct Peer {
      vigil_remote_key key;
      __u32 index;
      vigil_remote_value total;
    };
    std::vector<Peer> peers;
    const uint32_t entries = for_each_entry<vigil_remote_key, __u32>(m.fd, m.max_entries, [&](const vigil_remote_key& key, __u32 index) {
      if (!ctx.pods.by_ifindex(key.ifindex) || !ctx.datapath.read_remote(index, cpus)) return;
      vigil_remote_value t{};
      for (const auto& v : cpus) {
        t.packets += v.packets;
        t.bytes += v.bytes;
        t.drop_packets += v.drop_packets;
        t.drop_bytes += v.drop_bytes;
        t.tcp_retransmits += v.tcp_retransmits;
        t.tcp_connect_failures += v.tcp_connect_failures;
      }
      peers.push_back({key, index, t});
    });
    if (m.fd >= 0) ctx.walked("vigil_remote", entries);
    std::unordered_map<__u32, std::pair<uint64_t, uint64_t>> held;  // index -> packets, bytes
    std::vector<vigil_traffic_value> first, second;
    for (const auto& [ifindex, slot] : ctx.datapath.traffic_slots()) {
      if (!ctx.datapath.read_traffic(slot, first)) continue;
      std::atomic_thread_fence(std::memory_order_acquire);
      if (!ctx.datapath.read_traffic(slot, second) || second.size() != first.size()) continue;
      for (size_t cpu = 0; cpu < second.size(); ++cpu)
        for (int dir = 0; dir < VIGIL_DIR_MAX; ++dir) {
          const vigil_remote_cache& a = first[cpu].remote_cache[dir];
          const vigil_remote_cache& b = second[cpu].remote_cache[dir];
          // Taken only when no change of peer began or ended between the two reads.
          if (a.seq != b.seq || (b.seq & 1) || (b.packets == 0 && b.bytes == 0)) continue;
          auto& h = held[b.index];
          h.first += b.packets;
          h.second += b.bytes;
        }
    }
    std::unordered_map<std::string, Track> seen;
    seen.reserve(peers.size());
    std::set<Labels> renamed;  // label sets a peer had until this tick
    for (Peer& p : peers) {
      vigil_remote_value& t = p.total;
      if (auto h = held.find(p.index); h != held.end()) {
        t.packets += h->second.first;
        t.bytes += h->second.second;
      }
      const vigil_remote_key& key = p.key;
      const WatchedPod* pod = ctx.pods.by_ifindex(key.ifindex);
      if (!pod) continue;
      // Two buckets that are not addresses: "other" (all zero: peers past max_peers) and
      // "local-scope" (::1: link-local and multicast peers, bpf/counters.bpf.c local_scope()).
      static const uint8_t kLocalScope[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
      const bool other = std::memcmp(key.addr, kOther, 16) == 0;
      const bool local = std::memcmp(key.addr, kLocalScope, 16) == 0;
      const std::string ip = other ? "other" : local ? "local-scope" : key_to_ip(key.addr);
      const WatchedPod* peer = other || local ? nullptr : ctx.pods.by_ip(ip);
      // What the API server says of the address: another node's pod, a Service's cluster IP, or
      // an endpoint of a Service, which may be a pod of this node too (then its name is ours,
      // its Service the API server's).
      const kube::PeerInfo* known = nullptr;
      if (!other && !local && ctx.peers)
        if (auto it = ctx.peers->find(ip); it != ctx.peers->end()) known = &it->second;
      Labels l = pod_labels(*pod, {{"direction", direction_name(key.direction)},
                                   {"remote_ip", ip},
                                   {"remote_namespace", peer ? peer->spec.namespace_ : known ? known->namespace_ : ""},
                                   {"remote_pod", peer ? peer->spec.name : known ? known->pod : ""},
                                   {"remote_service", known ? known->service : ""}});
      // Empty label values are the same as absent ones to Prometheus; drop them.
      std::erase_if(l, [](const auto& kv) { return kv.second.empty(); });

      // The kernel counts by address since the pod's attach, whatever the address's name. A
      // name that changes (the peer's pod is known now, or another pod has its address) ends
      // the old series and starts a new one from what is counted from now on: the whole count
      // under the new name would count the history twice in any sum over peers.
      std::string id(reinterpret_cast<const char*>(&key), sizeof(key));
      Track track{l, {}, {}, pod->attach_serial};
      if (auto last = tracks_.find(id); last != tracks_.end() && last->second.serial == pod->attach_serial) {
        // Counters never go backwards: a tick that missed an entry mid-change says what it said.
        t.packets = std::max(t.packets, last->second.last.packets);
        t.bytes = std::max(t.bytes, last->second.last.bytes);
        track.base = last->second.base;
        if (last->second.labels != l) {
          track.base = last->second.last;
          renamed.insert(last->second.labels);
        }
      }
      track.last = t;
      const vigil_remote_value& b = track.base;
      // A peer entry may exist for drops or sockets only; each family appears with its first count.
      auto put = [&](const char* name, uint64_t v, uint64_t base) {
        if (v > base) ctx.store.set_continued(name, l, static_cast<double>(v - base), pod->attach_serial);
      };
      put("vigil_remote_forward_packets_total", t.packets, b.packets);
      put("vigil_remote_forward_bytes_total", t.bytes, b.bytes);
      put("vigil_remote_drop_packets_total", t.drop_packets, b.drop_packets);
      put("vigil_remote_drop_bytes_total", t.drop_bytes, b.drop_bytes);
      put("vigil_remote_tcp_retransmits_total", t.tcp_retransmits, b.tcp_retransmits);
      put("vigil_remote_tcp_connect_failures_total", t.tcp_connect_failures, b.tcp_connect_failures);
      seen.emplace(std::move(id), std::move(track));
    }
    // A label set another address took over in the same tick stays.
    for (const auto& [id, track] : seen) renamed.erase(track.labels);
    if (!renamed.empty()) ctx.store.remove_if([&](const Labels& l) { return renamed.count(l) > 0; });
    tracks_ = std::move(seen);
  }

 private:
  // A peer (its vigil_remote key) as last exported: its labels, the kernel's counts then, and
  // the counts its series start from (those of its earlier names), for the pod's attach `serial`
  // (an attach starts the kernel's counts from zero).
  struct Track {
    Labels labels;
    vigil_remote_value base, last;
    uint64_t serial = 0;
  };
  std::unordered_map<std::string, Track> tracks_;
};

}  // namespace

std::unique_ptr<Family> make_remote_family() { return std::make_unique<RemoteFamily>(); }

}  // namespace vigil
