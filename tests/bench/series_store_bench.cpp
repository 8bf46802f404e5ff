// The series store's tick (engine/series_store.h): what the families' updates, the rules'
// snapshot and a /metrics scrape cost with many pods, and the updates against what the store
// did until now (an ordered map of label vectors per family, so each update compared label
// vectors down a tree), in one run (docs/benchmarks.md, "Series store").
#include <benchmark/benchmark.h>
#include <prometheus/metric_family.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/series_store.h"

namespace vigil {
namespace {

// One tick's updates: about what the agent sets per pod with every family on (traffic, TCP
// flags, drops by reason, remote context with four peers a direction), with Kubernetes-like
// names.
struct Update {
  std::string family;
  Labels labels;
};

std::vector<std::string> family_names() {
  return {"vigil_forward_packets_total",
          "vigil_forward_bytes_total",
          "vigil_drop_packets_total",
          "vigil_drop_bytes_total",
          "vigil_tcp_flags_total",
          "vigil_dns_requests_total",
          "vigil_remote_forward_packets_total",
          "vigil_remote_forward_bytes_total",
          "vigil_remote_drop_packets_total",
          "vigil_remote_tcp_retransmits_total"};
}

std::vector<Update> tick_updates(int pods) {
  std::vector<Update> out;
  const auto names = family_names();
  for (int p = 0; p < pods; ++p) {
    const std::string ns = "shop-" + std::to_string(p % 7);
    const std::string pod = "checkout-7d9f8b6c5-" + std::to_string(10000 + p);
    for (const char* dir : {"egress", "ingress"}) {
      Labels base = make_labels({{"namespace", ns}, {"pod", pod}, {"direction", dir}});
      out.push_back({names[0], base});
      out.push_back({names[1], base});
      for (const char* reason : {"NETFILTER_DROP", "NO_SOCKET"}) {
        Labels l = base;
        l.emplace_back("reason", reason);
        sort_labels(l);
        out.push_back({names[2], l});
        out.push_back({names[3], l});
      }
      for (const char* flag : {"SYN", "SYNACK", "ACK", "PSH", "FIN", "RST", "ECE", "CWR"}) {
        Labels l = base;
        l.emplace_back("flag", flag);
        sort_labels(l);
        out.push_back({names[4], l});
      }
      for (const char* qtype : {"A", "AAAA"}) {
        Labels l = base;
        l.emplace_back("qtype", qtype);
        sort_labels(l);
        out.push_back({names[5], l});
      }
      for (int peer = 0; peer < 4; ++peer) {
        Labels l = base;
        l.emplace_back("remote_ip", "10.244.1." + std::to_string((p + peer * 13) % 250 + 2));
        l.emplace_back("remote_namespace", "shop-" + std::to_string((p + peer) % 7));
        l.emplace_back("remote_pod", "cart-5c8d7f9b4-" + std::to_string(20000 + (p + peer * 13) % 250));
        sort_labels(l);
        for (int f = 6; f < 10; ++f) out.push_back({names[static_cast<size_t>(f)], l});
      }
    }
  }
  return out;
}

SeriesStore& described(SeriesStore& store) {
  for (const auto& name : family_names()) store.describe(name, "A family.", SeriesKind::Counter);
  return store;
}

// What SeriesStore::set did until now: a lock, the family by name, then the series in an
// ordered map keyed by the label vector.
class OrderedStore {
 public:
  void set(const std::string& name, const Labels& labels, double value) {
    std::lock_guard lock(mu_);
    families_[name][labels] = value;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::map<Labels, double>> families_;
};

void BM_UpdateOrdered(benchmark::State& state) {
  const auto updates = tick_updates(static_cast<int>(state.range(0)));
  OrderedStore store;
  for (const auto& u : updates) store.set(u.family, u.labels, 0);
  double v = 0;
  for (auto _ : state) {
    v += 1;
    for (const auto& u : updates) store.set(u.family, u.labels, v);
  }
  state.counters["series"] = static_cast<double>(updates.size());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * updates.size()));
}

void BM_UpdateStore(benchmark::State& state) {
  const auto updates = tick_updates(static_cast<int>(state.range(0)));
  SeriesStore store;
  described(store);
  for (const auto& u : updates) store.set(u.family, u.labels, 0);
  double v = 0;
  for (auto _ : state) {
    v += 1;
    for (const auto& u : updates) store.set(u.family, u.labels, v);
  }
  state.counters["series"] = static_cast<double>(store.size());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * updates.size()));
}

void BM_Snapshot(benchmark::State& state) {
  const auto updates = tick_updates(static_cast<int>(state.range(0)));
  SeriesStore store;
  described(store);
  for (const auto& u : updates) store.set(u.family, u.labels, 1);
  for (auto _ : state) benchmark::DoNotOptimize(store.snapshot());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * updates.size()));
}

void BM_Collect(benchmark::State& state) {
  const auto updates = tick_updates(static_cast<int>(state.range(0)));
  SeriesStore store;
  described(store);
  for (const auto& u : updates) store.set(u.family, u.labels, 1);
  for (auto _ : state) benchmark::DoNotOptimize(store.Collect());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * updates.size()));
}

// 50 pods (the footprint benchmark's lab) and 110 (Kubernetes' default pods per node).
BENCHMARK(BM_UpdateOrdered)->Arg(50)->Arg(110)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_UpdateStore)->Arg(50)->Arg(110)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Snapshot)->Arg(50)->Arg(110)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Collect)->Arg(50)->Arg(110)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace vigil

BENCHMARK_MAIN();
