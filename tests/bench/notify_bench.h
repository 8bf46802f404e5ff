// Notification benchmark (docs/benchmarks.md, "Notifications"): latency from enqueue() of an
// anomaly to the webhook request arriving at a loopback receiver, and sustained notifications
// per second to one channel. Both run with the durable outbox (fsync per message), as the
// agent does. Run by tests/unit/actions_notify_bench_test.cpp, which prints the figures.
#pragma once

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "actions/notifier.h"
#include "../unit/actions_test_receiver.h"

namespace vigil::bench {

struct NotifyBenchResult {
  std::vector<double> latencies_ms;  // one per anomaly, enqueue -> request arrival
  double median_ms = 0, p90_ms = 0, max_ms = 0;
  size_t throughput_count = 0;
  double throughput_seconds = 0;
  double per_second = 0;
};

inline NotifyBenchResult run_notify_bench(int latency_samples, int throughput_count) {
  using namespace actions::testing;
  NotifyBenchResult r;
  const std::string dir = make_temp_dir();
  std::mutex mu;
  std::map<std::string, Clock::time_point> arrived;
  HttpReceiver rx([&](const httplib::Request& req, httplib::Response&) {
    const auto now = Clock::now();
    std::lock_guard lock(mu);
    arrived[nlohmann::json::parse(req.body)["id"]] = now;
  });
  auto c = channel("webhook", rx.url(), "bench");
  c.outbox_dir = dir + "/bench";
  c.queue_limit = static_cast<size_t>(throughput_count) + 10;
  auto n = must_make(c);

  // Latency: one anomaly at a time, as rules raise them.
  for (int i = 0; i < latency_samples; ++i) {
    const std::string id = "lat" + std::to_string(i);
    const auto t0 = Clock::now();
    n->enqueue(sample_anomaly(id));
    eventually([&] {
      std::lock_guard lock(mu);
      return arrived.count(id) > 0;
    }, 2s);
    std::lock_guard lock(mu);
    if (arrived.count(id)) r.latencies_ms.push_back(std::chrono::duration<double, std::milli>(arrived[id] - t0).count());
  }
  auto sorted = r.latencies_ms;
  std::sort(sorted.begin(), sorted.end());
  if (!sorted.empty()) {
    r.median_ms = sorted[sorted.size() / 2];
    r.p90_ms = sorted[sorted.size() * 9 / 10];
    r.max_ms = sorted.back();
  }

  // Throughput: a burst to one channel, until the last one arrives.
  const size_t before = rx.ok_hits().size();
  const auto t0 = Clock::now();
  for (int i = 0; i < throughput_count; ++i) n->enqueue(sample_anomaly("tp" + std::to_string(i)));
  rx.wait_ok(before + static_cast<size_t>(throughput_count), 60s);
  r.throughput_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  r.throughput_count = rx.ok_hits().size() - before;
  r.per_second = r.throughput_seconds > 0 ? static_cast<double>(r.throughput_count) / r.throughput_seconds : 0;
  n->stop();
  std::filesystem::remove_all(dir);
  return r;
}

}  // namespace vigil::bench
