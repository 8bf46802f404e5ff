// vigil_rules_bench: time of one RuleEngine::tick with the shipped rule pack (rules/pack/*.lua)
// over N series of vigil_forward_packets_total (N/2 pods, ingress and egress), as the agent
// runs it once a tick. Each benchmark iteration is one tick, one simulated second after the
// previous one, with every counter advanced; the engine's state (rates, baselines) carries over
// between iterations as it does in the agent. Reported: time per tick, and ns per series.
//
//   build/tests/bench/vigil_rules_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "rules/runtime/engine.h"

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

// A tick's input for `series` forward-packet counters: pods pod-0 .. pod-(series/2 - 1).
vigil::TickInput make_input(int64_t series) {
  vigil::TickInput input;
  input.time = 1'700'000'000;
  const int64_t pods = std::max<int64_t>(1, series / 2);
  for (int64_t p = 0; p < pods; ++p) {
    std::string name = "pod-" + std::to_string(p);
    input.pods.push_back(vigil::PodMeta{"bench", name, {{"app", "bench"}}, "node-a"});
    for (const char* direction : {"ingress", "egress"}) {
      if (static_cast<int64_t>(input.samples.size()) == series) break;
      input.samples.push_back(vigil::Sample{
          "vigil_forward_packets_total",
          vigil::make_labels({{"namespace", "bench"}, {"pod", name}, {"direction", direction}}), 0,
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

void BM_TickForwardSeries(benchmark::State& state) {
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
  auto input = make_input(state.range(0));
  uint64_t seed = 42;
  // Past the pack's longest warm-up (2m), so the detectors run their steady-state path.
  for (int t = 0; t < 130; ++t) {
    advance(input, seed);
    (*engine)->tick(input);
  }
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
}

BENCHMARK(BM_TickForwardSeries)->Arg(100)->Arg(1'000)->Arg(10'000)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
