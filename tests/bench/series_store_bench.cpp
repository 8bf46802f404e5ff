// The series store's tick (engine/series_store.h): what the families' updates, the rules'
// snapshot and a /metrics scrape cost with many pods, and the updates against what the store
// did until now (an ordered map of label vectors per family, so each update compared label
// vectors down a tree), in one run; the snapshot whole and of the series the shipped pack
// watches (docs/benchmarks.md, "Series store").
#include <benchmark/benchmark.h>
#include <prometheus/metric_family.h>

#include <map>
#include <mutex>
#include <set>
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
      // `base` with one more label, for each of `values`, in families `first`..`last`.
      auto each = [&](const char* label, std::initializer_list<const char*> values, size_t first, size_t last) {
        for (const char* value : values) {
          Labels l = base;
          l.emplace_back(label, value);
          sort_labels(l);
          for (size_t f = first; f <= last; ++f) out.push_back({names[f], l});
        }
      };
      out.push_back({names[0], base});
      out.push_back({names[1], base});
      each("reason", {"NETFILTER_DROP", "NO_SOCKET"}, 2, 3);
      each("flag", {"SYN", "SYNACK", "ACK", "PSH", "FIN", "RST", "ECE", "CWR"}, 4, 4);
      each("qtype", {"A", "AAAA"}, 5, 5);
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

// One tick's updates again and again through `store`, which holds every series already.
template <class Store>
void update_every_series(benchmark::State& state, Store& store) {
  const auto updates = tick_updates(static_cast<int>(state.range(0)));
  for (const auto& u : updates) store.set(u.family, u.labels, 0);
  double v = 0;
  for (auto _ : state) {
    v += 1;
    for (const auto& u : updates) store.set(u.family, u.labels, v);
  }
  state.counters["series"] = static_cast<double>(updates.size());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * updates.size()));
}

void BM_UpdateOrdered(benchmark::State& state) {
  OrderedStore store;
  update_every_series(state, store);
}

void BM_UpdateStore(benchmark::State& state) {
  SeriesStore store;
  described(store);
  update_every_series(state, store);
}

// `read` of a store that holds one tick's series, again and again.
template <class Read>
void read_filled_store(benchmark::State& state, Read read) {
  const auto updates = tick_updates(static_cast<int>(state.range(0)));
  SeriesStore store;
  described(store);
  for (const auto& u : updates) store.set(u.family, u.labels, 1);
  for (auto _ : state) benchmark::DoNotOptimize(read(store));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * updates.size()));
}

void BM_Snapshot(benchmark::State& state) {
  read_filled_store(state, [](const SeriesStore& s) { return s.snapshot(); });
}

// What the agent hands the shipped rule pack: the families of these that its rules watch
// (the rule engine's metrics(); the pack leaves drop bytes, DNS requests and most peer counters to
// /metrics).
void BM_SnapshotWatched(benchmark::State& state) {
  const std::set<std::string> watched{"vigil_forward_packets_total", "vigil_forward_bytes_total",
                                      "vigil_drop_packets_total", "vigil_tcp_flags_total",
                                      "vigil_remote_forward_packets_total"};
  read_filled_store(state, [&](const SeriesStore& s) { return s.snapshot(&watched); });
}

void BM_Collect(benchmark::State& state) {
  read_filled_store(state, [](const SeriesStore& s) { return s.Collect(); });
}

// 50 pods (the footprint benchmark's lab) and 110 (Kubernetes' default pods per node).
BENCHMARK(BM_UpdateOrdered)->Arg(50)->Arg(110)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_UpdateStore)->Arg(50)->Arg(110)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Snapshot)->Arg(50)->Arg(110)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SnapshotWatched)->Arg(50)->Arg(110)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Collect)->Arg(50)->Arg(110)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace vigil

BENCHMARK_MAIN();
