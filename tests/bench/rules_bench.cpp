// vigil_rules_bench: time of one RuleEngine::tick with the shipped rule pack (rules/pack/*.lua)
// as the agent runs it once a tick. Each benchmark iteration is one tick, one simulated second
// after the previous one, with every counter advanced; the engine's state (rates, baselines)
// carries over between iterations as it does in the agent. Two shapes of input:
//   BM_TickForwardSeries: N series of vigil_forward_packets_total (N/2 pods, ingress and egress);
//   BM_TickPodSeries: N series, 10 per pod, of the metrics the pack reads and others it does not
//     (traffic, drops, TCP, DNS), the shape of a node's real series.
// Reported: time per tick, ns per series, and the engine's heap per series (bytes_per_series:
// live heap bytes the engine holds after the warm-up, minus those it held once loaded, over N,
// counted by this binary's operator new/delete with malloc_usable_size).
//
//   build/tests/bench/vigil_rules_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <atomic>
#include <cstdio>
#include <new>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "rules/runtime/engine.h"

#include "heap_counter.h"

namespace {

namespace fs = std::filesystem;
using vigil::rules::RuleEngine;

std::vector<std::string> pack_files() {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(fs::path(VIGIL_SOURCE_DIR) / "rules" / "pack"))
    if (entry.path().extension() == ".lua") files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

// Anomalies are counted, not delivered: the notifiers are not what is measured here.
class CountingSink : public vigil::ActionSink {
 public:
  void notify(const std::string&, const vigil::Anomaly&) override { ++count; }
  uint64_t count = 0;
};

// Names as Kubernetes makes them for a Deployment's pods (Deployment, ReplicaSet hash, 5
// characters): a group key that does not fit in a string's inline buffer, as in a real cluster.
const char* const kNamespace = "payments";
std::string pod_name(int64_t p) {
  std::string suffix;
  for (int i = 0; i < 5; ++i, p /= 27) suffix.push_back("bcdfghjklmnpqrstvwxz2456789"[p % 27]);
  return "checkout-api-7d9f8b6c5d-" + suffix;
}

// A tick's input for `series` forward-packet counters: 2 a pod (series/2 pods).
vigil::TickInput make_input(int64_t series) {
  vigil::TickInput input;
  input.time = 1'700'000'000;
  const int64_t pods = std::max<int64_t>(1, series / 2);
  for (int64_t p = 0; p < pods; ++p) {
    std::string name = pod_name(p);
    input.pods.push_back(vigil::PodMeta{kNamespace, name, {{"app", "checkout-api"}}, "node-a"});
    for (const char* direction : {"ingress", "egress"}) {
      if (static_cast<int64_t>(input.samples.size()) == series) break;
      input.samples.push_back(vigil::Sample{
          "vigil_forward_packets_total",
          vigil::make_labels({{"namespace", kNamespace}, {"pod", name}, {"direction", direction}}), 0,
          vigil::SeriesKind::Counter});
    }
  }
  return input;
}

// Advances time by one second and every counter by 900..1099 packets (a steady, uneven rate,
// far below the flood rule's threshold: the measured path is the quiet one).
void advance(vigil::TickInput& input, uint64_t& seed) {
  input.time += 1;
  for (auto& s : input.samples) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    s.value += 900 + static_cast<double>((seed >> 33) % 200);
  }
}

// 10 series per pod: what the pack reads (forwards, forward bytes, drops, resets, connect
// failures, DNS responses) and what it does not (retransmits, DNS requests).
vigil::TickInput make_pod_input(int64_t series) {
  vigil::TickInput input;
  input.time = 1'700'000'000;
  const int64_t pods = std::max<int64_t>(1, series / 10);
  struct Kind {
    const char* metric;
    std::vector<std::pair<std::string, std::string>> labels;
  };
  const std::vector<Kind> kinds = {
      {"vigil_forward_packets_total", {{"direction", "ingress"}}},
      {"vigil_forward_packets_total", {{"direction", "egress"}}},
      {"vigil_forward_bytes_total", {{"direction", "ingress"}}},
      {"vigil_forward_bytes_total", {{"direction", "egress"}}},
      {"vigil_drop_packets_total", {{"direction", "ingress"}, {"reason", "NETFILTER_DROP"}}},
      {"vigil_tcp_resets_total", {{"direction", "egress"}}},
      {"vigil_tcp_connect_failures_total", {{"reason", "refused"}}},
      {"vigil_tcp_retransmits_total", {}},
      {"vigil_dns_requests_total", {{"direction", "egress"}, {"qtype", "A"}}},
      {"vigil_dns_responses_total", {{"direction", "ingress"}, {"qtype", "A"}, {"rcode", "NOERROR"}}},
  };
  for (int64_t p = 0; p < pods; ++p) {
    input.pods.push_back(vigil::PodMeta{kNamespace, pod_name(p), {{"app", "checkout-api"}}, "node-a"});
  }
  // Grouped by metric, as the agent's series store hands them over.
  for (const auto& kind : kinds) {
    for (int64_t p = 0; p < pods && static_cast<int64_t>(input.samples.size()) < series; ++p) {
      vigil::Labels labels{{"namespace", kNamespace}, {"pod", pod_name(p)}};
      for (const auto& l : kind.labels) labels.push_back(l);
      vigil::sort_labels(labels);
      input.samples.push_back(vigil::Sample{kind.metric, std::move(labels), 0, vigil::SeriesKind::Counter});
    }
  }
  return input;
}

void run_ticks(benchmark::State& state, vigil::TickInput input) {
  vigil::rules::EngineOptions options;
  options.node = "node-a";
  options.tick_seconds = 1;
  options.channels = std::set<std::string>{"default"};
  CountingSink sink;
  auto engine = RuleEngine::load(pack_files(), options, &sink);
  if (!engine) {
    state.SkipWithError(engine.error().message.c_str());
    return;
  }
  uint64_t seed = 42;
  const int64_t heap_loaded = g_live_bytes.load();
  // Past the pack's longest warm-up (2m), so the detectors run their steady-state path.
  for (int t = 0; t < 130; ++t) {
    advance(input, seed);
    (*engine)->tick(input);
  }
  const int64_t heap_warm = g_live_bytes.load();
  for (auto _ : state) {
    state.PauseTiming();
    advance(input, seed);
    state.ResumeTiming();
    (*engine)->tick(input);
  }
  const auto series = static_cast<double>(input.samples.size());
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(series));
  state.counters["series"] = series;
  state.counters["ns_per_series"] =
      benchmark::Counter(series * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.counters["anomalies"] = static_cast<double>(sink.count);
  state.counters["bytes_per_series"] = static_cast<double>(heap_warm - heap_loaded) / series;
  state.counters["pods"] = static_cast<double>(input.pods.size());
}

void BM_TickForwardSeries(benchmark::State& state) { run_ticks(state, make_input(state.range(0))); }
void BM_TickPodSeries(benchmark::State& state) { run_ticks(state, make_pod_input(state.range(0))); }

// One group per series (by namespace, pod and direction) under one rule with the detector
// named by the benchmark's argument: what each built-in detector costs per series, with the
// engine's own per-series and per-group bookkeeping included.
const char* const kDetectors[] = {
    "threshold { above = 1e9 }",
    "baseline.ewma { half_life = \"10m\", threshold = 6 }",
    "change.cusum { half_life = \"1h\" }",
    "baseline.mad { window = \"30m\" }",
    "baseline.zscore { window = \"1m\", threshold = 4 }",
    "baseline.seasonal { period = \"1d\", slots = 24 }",
};

void BM_DetectorPerSeries(benchmark::State& state) {
  const char* detect = kDetectors[state.range(0)];
  const fs::path file = fs::temp_directory_path() / ("vigil-bench-detector-" + std::to_string(state.range(0)) + ".lua");
  {
    std::FILE* f = std::fopen(file.c_str(), "w");
    std::fprintf(f, "rule { name = \"d\", metric = \"vigil_forward_packets_total\", by = { \"namespace\", \"pod\", \"direction\" }, detect = %s }\n", detect);
    std::fclose(f);
  }
  vigil::rules::EngineOptions options;
  options.tick_seconds = 1;
  auto engine = RuleEngine::load({file.string()}, options, nullptr);
  fs::remove(file);
  if (!engine) {
    state.SkipWithError(engine.error().message.c_str());
    return;
  }
  auto input = make_input(50'000);
  uint64_t seed = 42;
  const int64_t heap_loaded = g_live_bytes.load();
  for (int t = 0; t < 10; ++t) {
    advance(input, seed);
    (*engine)->tick(input);
  }
  const int64_t heap_warm = g_live_bytes.load();
  for (auto _ : state) {
    state.PauseTiming();
    advance(input, seed);
    state.ResumeTiming();
    (*engine)->tick(input);
  }
  state.SetLabel(detect);
  state.counters["bytes_per_series"] = static_cast<double>(heap_warm - heap_loaded) / 50'000;
}

BENCHMARK(BM_DetectorPerSeries)->DenseRange(0, 5)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

BENCHMARK(BM_TickForwardSeries)->Arg(100)->Arg(1'000)->Arg(10'000)->Arg(50'000)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TickPodSeries)->Arg(10'000)->Arg(50'000)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
