// Connections to the Kubernetes API server, node-wide (bpf/lib/apiserver.h): handshake and
// first-response latency as histograms, and the connections that got no answer in time. The
// kernel times what it sees; this family decides "no response", since only a clock that runs
// without packets can notice a packet that never comes.
#include <linux/types.h>
#include <time.h>

#include <cmath>
#include <limits>
#include <vector>

#include "engine/bpf_maps.h"
#include "engine/families/family.h"
#include "vigil_abi.h"

namespace vigil {
namespace {

constexpr double kIdleForgetSeconds = 3600;  // established connections that never sent a request

std::vector<double> latency_bounds() {
  std::vector<double> b;
  for (int i = 0; i < VIGIL_API_BUCKETS - 1; ++i) b.push_back(std::ldexp(1.0, i + 1) * 1e-6);  // [2^i, 2^(i+1)) us
  b.push_back(std::numeric_limits<double>::infinity());
  return b;
}

uint64_t monotonic_ns() {  // the clock of bpf_ktime_get_ns()
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

class ApiServerFamily : public Family {
 public:
  explicit ApiServerFamily(double no_response_seconds) : no_response_ns_(static_cast<uint64_t>(no_response_seconds * 1e9)) {}

  const char* name() const override { return "apiserver"; }

  void describe(SeriesStore& s) const override {
    s.describe("vigil_apiserver_handshake_seconds",
               "Time from a SYN to the Kubernetes API server to its SYN-ACK, for every socket of the node.",
               SeriesKind::Histogram);
    s.describe("vigil_apiserver_first_response_seconds",
               "Time from the first request byte a connection sends to the API server to the first byte of its answer.",
               SeriesKind::Histogram);
    s.describe("vigil_apiserver_no_response_total",
               "Connections to the API server with no SYN-ACK (stage=handshake) or no answer to their first request "
               "(stage=response) within apiserver.no_response_after.",
               SeriesKind::Counter);
    s.describe("vigil_apiserver_resets_total",
               "Connections to the API server answered with a RST instead of a SYN-ACK (stage=handshake) or instead of "
               "an answer (stage=response).",
               SeriesKind::Counter);
  }

  void read(const FamilyContext& ctx) override {
    prune_pending(ctx);
    read_latency(ctx);
    // Those the agent took out and those whose answer came too late, which the kernel counted.
    ctx.store.set("vigil_apiserver_no_response_total", make_labels({{"stage", "handshake"}}),
                  static_cast<double>(no_response_[0] + kernel_no_response_[0]));
    ctx.store.set("vigil_apiserver_no_response_total", make_labels({{"stage", "response"}}),
                  static_cast<double>(no_response_[1] + kernel_no_response_[1]));
  }

 private:
  void prune_pending(const FamilyContext& ctx) {
    auto m = ctx.datapath.map("vigil_api_pending");
    if (m.fd < 0) return;
    const uint64_t now = monotonic_ns();
    std::vector<std::pair<__u64, int>> expired;  // cookie, stage counted (-1: none)
    uint32_t entries = for_each_entry<__u64, vigil_api_pending>(m.fd, m.max_entries, [&](const __u64& cookie, const vigil_api_pending& p) {
      const uint64_t age = now > p.since_ns ? now - p.since_ns : 0;
      if (p.stage == VIGIL_API_IDLE) {
        if (age > static_cast<uint64_t>(kIdleForgetSeconds * 1e9)) expired.emplace_back(cookie, -1);
      } else if (age > no_response_ns_) {
        expired.emplace_back(cookie, p.stage == VIGIL_API_SYN_SENT ? 0 : 1);
      }
    });
    // Counted only when this delete wins: the answer may be landing right now.
    for (const auto& [cookie, stage] : expired) {
      if (bpf_map_delete_elem(m.fd, &cookie) != 0) continue;
      --entries;
      if (stage >= 0) ++no_response_[stage];
    }
    ctx.walked("vigil_api_pending", entries);
  }

  void read_latency(const FamilyContext& ctx) {
    static const std::vector<double> bounds = latency_bounds();
    auto m = ctx.datapath.map("vigil_api_latency");
    if (m.fd < 0) return;
    std::vector<vigil_api_value> cpus(possible_cpus());
    __u32 zero = 0;
    if (bpf_map_lookup_elem(m.fd, &zero, cpus.data()) != 0) return;
    vigil_api_value t{};
    for (const auto& v : cpus) {
      for (int b = 0; b < VIGIL_API_BUCKETS; ++b) {
        t.handshake[b] += v.handshake[b];
        t.response[b] += v.response[b];
      }
      t.handshake_sum_ns += v.handshake_sum_ns;
      t.response_sum_ns += v.response_sum_ns;
      t.resets[0] += v.resets[0];
      t.resets[1] += v.resets[1];
      t.no_response[0] += v.no_response[0];
      t.no_response[1] += v.no_response[1];
    }
    kernel_no_response_[0] = t.no_response[0];
    kernel_no_response_[1] = t.no_response[1];
    ctx.store.set_histogram("vigil_apiserver_handshake_seconds", Labels{}, bounds,
                            std::vector<uint64_t>(t.handshake, t.handshake + VIGIL_API_BUCKETS),
                            static_cast<double>(t.handshake_sum_ns) * 1e-9);
    ctx.store.set_histogram("vigil_apiserver_first_response_seconds", Labels{}, bounds,
                            std::vector<uint64_t>(t.response, t.response + VIGIL_API_BUCKETS),
                            static_cast<double>(t.response_sum_ns) * 1e-9);
    ctx.store.set("vigil_apiserver_resets_total", make_labels({{"stage", "handshake"}}), static_cast<double>(t.resets[0]));
    ctx.store.set("vigil_apiserver_resets_total", make_labels({{"stage", "response"}}), static_cast<double>(t.resets[1]));
  }

  const uint64_t no_response_ns_;
  uint64_t no_response_[2] = {0, 0};         // handshake, response: taken out here
  uint64_t kernel_no_response_[2] = {0, 0};  // answered too late, as the kernel last said
};

}  // namespace

std::unique_ptr<Family> make_apiserver_family(double no_response_seconds) {
  return std::make_unique<ApiServerFamily>(no_response_seconds);
}

}  // namespace vigil
