// The datapath's own health: failures inside programs, map occupancy, and per-program run
// counts and time (from the kernel's BPF stats, when kernel.bpf_stats_enabled=1).
#include <linux/types.h>

#include "engine/bpf_maps.h"
#include "engine/families/family.h"
#include "vigil_abi.h"

namespace vigil {
namespace {

const char* error_site(size_t i) {
  switch (i) {
    case VIGIL_ERR_TRAFFIC_MAP_FULL: return "traffic_map_full";
    case VIGIL_ERR_DROP_MAP_FULL: return "drop_map_full";
    case VIGIL_ERR_DROP_READ_HEADER: return "drop_read_header";
    case VIGIL_ERR_TCP_MAP_FULL: return "tcp_map_full";
    case VIGIL_ERR_REMOTE_MAP_FULL: return "remote_map_full";
    case VIGIL_ERR_DNS_MAP_FULL: return "dns_map_full";
    case VIGIL_ERR_DNS_PENDING_FULL: return "dns_pending_full";
    case VIGIL_ERR_DNS_LOAD_BYTES: return "dns_load_bytes";
    case VIGIL_ERR_CAPTURE_RING_FULL: return "capture_ring_full";
    case VIGIL_ERR_DNS_TCP_UNTRACKED: return "dns_tcp_untracked";
    case VIGIL_ERR_API_PENDING_FULL: return "apiserver_pending_full";
    case VIGIL_ERR_API_UNTRACKED: return "apiserver_untracked";
    default: return nullptr;
  }
}

struct HashMapInfo {
  const char* name;
  uint32_t (*count)(int fd, uint32_t max);
};

const HashMapInfo kHashMaps[] = {
    {"vigil_slots_spill", count_entries<__u32>},         {"vigil_drops", count_entries<vigil_drop_key>},
    {"vigil_tcp", count_entries<__u32>},                 {"vigil_pod_netns", count_entries<__u32>},
    {"vigil_pod_ip", count_entries<vigil_ip_key>},       {"vigil_remote", count_entries<vigil_remote_key>},
    {"vigil_remote_pod", count_entries<__u32>},
    {"vigil_dns_counts", count_entries<vigil_dns_key>}, {"vigil_dns_latency", count_entries<__u32>},
    {"vigil_dns_pending", count_entries<vigil_dns_pending_key>}, {"vigil_dns_streams", count_entries<vigil_dns_stream_key>},
    {"vigil_api_pending", count_entries<__u64>}, {"vigil_api_servers", count_entries<vigil_api_server_key>},
};

class HealthFamily : public Family {
 public:
  const char* name() const override { return "health"; }

  void describe(SeriesStore& s) const override {
    s.describe("vigil_bpf_errors_total", "Failures inside Vigil's eBPF programs, by site; nothing is lost silently.",
               SeriesKind::Counter);
    s.describe("vigil_bpf_map_entries", "Entries in each of Vigil's eBPF hash maps.", SeriesKind::Gauge);
    s.describe("vigil_bpf_map_max_entries", "Capacity of each of Vigil's eBPF hash maps.", SeriesKind::Gauge);
    s.describe("vigil_bpf_program_runs_total", "Runs of each eBPF program (needs kernel.bpf_stats_enabled=1).",
               SeriesKind::Counter);
    s.describe("vigil_bpf_program_run_seconds_total", "Time spent in each eBPF program (needs kernel.bpf_stats_enabled=1).",
               SeriesKind::Counter);
    s.describe("vigil_bpf_program_recursion_misses_total",
               "Runs of each eBPF program the kernel skipped because it was already running on that CPU "
               "(an interrupt or preempting task hit the same hook); their events are not counted.",
               SeriesKind::Counter);
    s.describe("vigil_tc_relinked_total",
               "Times the agent found another program attached in front of its own at a pod interface's TCX hook, "
               "or another filter running before its own on a clsact hook (kernels before TCX), whose verdict would "
               "hide packets from it, and put its own back at the front, by hook of the host-side interface.",
               SeriesKind::Counter);
    s.describe("vigil_tracepoint_hits_total",
               "Hits of the tracepoint a tracing program runs on, counted by a tracefs instance of the agent's own "
               "since it started (metrics.tracepoint_audit).",
               SeriesKind::Counter);
    s.describe("vigil_tracepoint_undelivered_total",
               "Hits of the tracepoint the kernel did not run the tracing program for, with no recursion miss "
               "counted: their events are missing from Vigil's counts. A lower bound (metrics.tracepoint_audit).",
               SeriesKind::Counter);
  }

  void read(const FamilyContext& ctx) override {
    auto errors = ctx.datapath.map("vigil_errors");
    for (__u32 i = 0; i < VIGIL_ERR_MAX; ++i) {
      const char* site = error_site(i);
      if (!site) continue;
      if (auto sum = percpu_sum(errors.fd, i))
        ctx.store.set("vigil_bpf_errors_total", make_labels({{"site", site}}), static_cast<double>(*sum));
    }
    for (const auto& info : kHashMaps) {
      auto m = ctx.datapath.map(info.name);
      if (m.fd < 0) continue;
      Labels l = make_labels({{"map", info.name}});
      // Walked by its family in this tick already, or walked here.
      const auto walked = ctx.census ? ctx.census->entries(info.name) : std::nullopt;
      ctx.store.set("vigil_bpf_map_entries", l, walked ? *walked : info.count(m.fd, m.max_entries));
      ctx.store.set("vigil_bpf_map_max_entries", l, m.max_entries);
    }
    // The traffic array's occupancy is the slots the agent has handed out.
    Labels traffic = make_labels({{"map", "vigil_traffic"}});
    ctx.store.set("vigil_bpf_map_entries", traffic, static_cast<double>(ctx.datapath.traffic_slots().size()));
    ctx.store.set("vigil_bpf_map_max_entries", traffic, ctx.datapath.max_pods());
    for (const auto& p : ctx.datapath.program_stats()) {
      Labels l = make_labels({{"program", p.name}});
      ctx.store.set("vigil_bpf_program_runs_total", l, static_cast<double>(p.run_count));
      ctx.store.set("vigil_bpf_program_run_seconds_total", l, static_cast<double>(p.run_time_ns) * 1e-9);
      ctx.store.set("vigil_bpf_program_recursion_misses_total", l, static_cast<double>(p.recursion_misses));
    }
    const auto& relinked = ctx.datapath.tc_relinked();
    for (size_t hook = 0; hook < relinked.size(); ++hook)
      ctx.store.set("vigil_tc_relinked_total", make_labels({{"hook", hook == 0 ? "ingress" : "egress"}}),
                    static_cast<double>(relinked[hook]));
    if (ctx.tracepoint_audit) {
      for (const auto& r : ctx.tracepoint_audit->read()) {
        Labels l = make_labels({{"program", r.program}, {"tracepoint", r.event}});
        ctx.store.set("vigil_tracepoint_hits_total", l, static_cast<double>(r.hits));
        ctx.store.set("vigil_tracepoint_undelivered_total", l, static_cast<double>(r.undelivered));
      }
    }
  }
};

}  // namespace

std::unique_ptr<Family> make_health_family() { return std::make_unique<HealthFamily>(); }

}  // namespace vigil
