// Drops per pod, direction, the kernel's own drop reason and the packet's cast, from
// tp_btf/kfree_skb.
#include <linux/types.h>

#include "engine/bpf_maps.h"
#include "engine/families/family.h"
#include "vigil_abi.h"

namespace vigil {
namespace {

const char* cast_name(unsigned cast) {
  switch (cast) {
    case VIGIL_CAST_UNICAST: return "unicast";
    case VIGIL_CAST_MULTICAST: return "multicast";
    case VIGIL_CAST_BROADCAST: return "broadcast";
    case VIGIL_CAST_LOOPBACK: return "loopback";
  }
  return "unknown";
}

class DropFamily : public Family {
 public:
  const char* name() const override { return "drops"; }

  void describe(SeriesStore& s) const override {
    s.describe("vigil_drop_packets_total", "Packets of a pod dropped by the kernel, by the kernel's drop reason and the packet's cast "
               "(unicast, multicast, broadcast).",
               SeriesKind::Counter);
    s.describe("vigil_drop_bytes_total", "Bytes of a pod dropped by the kernel, by the kernel's drop reason and the packet's cast.",
               SeriesKind::Counter);
  }

  void read(const FamilyContext& ctx) override {
    auto m = ctx.datapath.map("vigil_drops");
    const DropReasons& reasons = ctx.datapath.drop_reasons();
    const uint32_t entries = for_each_percpu<vigil_drop_key, vigil_drop_value>(
        m.fd, m.max_entries, [&](const vigil_drop_key& key, const std::vector<vigil_drop_value>& cpus) {
          const WatchedPod* pod = ctx.pods.by_id(key.pod_id);
          if (!pod) return;
          uint64_t packets = 0, bytes = 0;
          for (const auto& v : cpus) {
            packets += v.packets;
            bytes += v.bytes;
          }
          Labels l = pod_labels(*pod, {{"direction", direction_name(key.direction)},
                                          {"reason", reasons.name(key.reason)},
                                          {"cast", cast_name(key.cast)}});
          // Counted from the pod's attach (forget_counters), and going on across attaches.
          ctx.store.set_continued("vigil_drop_packets_total", l, static_cast<double>(packets), pod->attach_serial);
          ctx.store.set_continued("vigil_drop_bytes_total", l, static_cast<double>(bytes), pod->attach_serial);
        });
    if (m.fd >= 0) ctx.walked("vigil_drops", entries);
  }
};

}  // namespace

std::unique_ptr<Family> make_drop_family() { return std::make_unique<DropFamily>(); }

}  // namespace vigil
