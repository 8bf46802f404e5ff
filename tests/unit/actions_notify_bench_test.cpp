// The notification benchmark as a test (tests/bench/notify_bench.h): the median latency from
// anomaly to webhook on loopback must stay under 100 ms. Prints the figures of
// docs/benchmarks.md ("Notifications"); VIGIL_NOTIFY_BENCH_N scales the burst (default 200).
#include <cstdio>
#include <cstdlib>

#include <gtest/gtest.h>

#include "../bench/notify_bench.h"

namespace vigil::bench {
namespace {

TEST(NotifyBench, LatencyAndThroughput) {
  const char* env = std::getenv("VIGIL_NOTIFY_BENCH_N");
  const int burst = env ? std::max(1, std::atoi(env)) : 200;
  const auto r = run_notify_bench(50, burst);
  ASSERT_EQ(r.latencies_ms.size(), 50u);
  ASSERT_EQ(r.throughput_count, static_cast<size_t>(burst));
  std::printf("notify bench: latency median %.2f ms, p90 %.2f ms, max %.2f ms (50 samples); "
              "%zu notifications in %.2f s = %.0f/s to one channel\n",
              r.median_ms, r.p90_ms, r.max_ms, r.throughput_count, r.throughput_seconds, r.per_second);
  std::printf("{\"bench\":\"notify\",\"latency_median_ms\":%.3f,\"latency_p90_ms\":%.3f,\"per_second\":%.1f}\n",
              r.median_ms, r.p90_ms, r.per_second);
  EXPECT_LT(r.median_ms, 100.0);
}

}  // namespace
}  // namespace vigil::bench
