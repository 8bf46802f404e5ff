// The Kubernetes client's line splitting (engine/kube/line_splitter.h) against what it
// replaced, in one run: a list page is one JSON line of megabytes that httplib hands over
// 4 KiB at a time. Rescan searches the whole unfinished line again with each chunk (the client
// until 9e6f59e); LineSplitter searches each byte once. Compare the two at each size as a
// ratio (docs/benchmarks.md, "Kubernetes list pages").
#include <benchmark/benchmark.h>

#include <string>
#include <string_view>

#include "engine/kube/line_splitter.h"

namespace {

constexpr size_t kChunk = 4096;  // httplib's receive buffer (CPPHTTPLIB_RECV_BUFSIZ)

std::string page(size_t bytes) {
  std::string s(bytes, 'x');
  s.back() = '\n';
  return s;
}

void BM_Rescan(benchmark::State& state) {
  const std::string body = page(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    std::string buf;
    size_t lines = 0;
    for (size_t at = 0; at < body.size(); at += kChunk) {
      buf.append(body, at, kChunk);
      size_t start = 0;
      for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) ++lines;
      buf.erase(0, start);
    }
    benchmark::DoNotOptimize(lines);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(body.size()));
}

void BM_LineSplitter(benchmark::State& state) {
  const std::string body = page(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    vigil::kube::LineSplitter lines(64u << 20);
    size_t n = 0;
    for (size_t at = 0; at < body.size(); at += kChunk)
      lines.feed(std::string_view(body).substr(at, kChunk), [&](std::string_view) { return ++n, true; });
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(body.size()));
}

// 1 MB (a page of ~100 pods), 5 MB, 20 MB (500 pods with their managed fields).
BENCHMARK(BM_Rescan)->Arg(1 << 20)->Arg(5 << 20)->Arg(20 << 20)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LineSplitter)->Arg(1 << 20)->Arg(5 << 20)->Arg(20 << 20)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
