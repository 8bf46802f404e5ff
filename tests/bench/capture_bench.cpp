// vigil_capture_bench: the capture manager (actions/capture.h) on its own, no kernel.
//   BM_StartToFirstPacket/B: start() of a capture of one pod whose 10 s lookback ring is full
//     (5,000 packets a second of 128 captured bytes, 1,000 on the wire), `B` seconds before the
//     trigger. start() returns once the lookback of the window is written and flushed to the
//     file, so its time bounds the time to the first packet in the file; first_packet_us is
//     measured too (a thread watching the .part file grow past its headers).
//   BM_OnPacket/M: on_packet() per packet, a watched pod (its ring at its limit), with M = 0: no
//     capture; 1: a running capture of the pod; 2: a running capture whose filter drops the packet.
//   BM_LivePipeline: on_packet() of 10,000 packets and poll() until all are in the file: packets
//     per second through the queue and the writer.
//   BM_RingMemory/D: heap held by a ring per packet of D captured bytes (this binary counts
//     operator new/delete with malloc_usable_size), and its overhead over D.
//
//   build/tests/bench/vigil_capture_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "actions/capture.h"

#include "heap_counter.h"

namespace {

using vigil::actions::CaptureConfig;
using vigil::actions::CaptureManager;
using vigil::actions::CapturePod;
using vigil::actions::CaptureRequest;
namespace fs = std::filesystem;

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

// Ethernet + IPv4 + UDP to port 9000, `size` bytes.
std::vector<uint8_t> udp_frame(size_t size) {
  std::vector<uint8_t> f = {0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0, 0x03, 0xD2, 0, 1, 0x40, 0, 64, 17, 0,
                            0,    10, 0, 0, 1, 10, 0, 0, 2, 0x9C, 0x40, 0x23, 0x28, 0x03, 0xBE, 0, 0};
  f.resize(size, 'x');
  return f;
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/vigil-capture-bench-XXXXXX";
    path = ::mkdtemp(tmpl) ? tmpl : "/tmp";
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

CapturePod pod(uint32_t ifindex) {
  CapturePod p;
  p.ifindex = ifindex;
  p.namespace_ = "bench";
  p.name = "pod-" + std::to_string(ifindex);
  return p;
}

CaptureConfig config(const std::string& dir) {
  CaptureConfig c;
  c.dir = dir + "/captures";
  c.disk_quota_bytes = 8ull << 30;
  c.max_bytes_per_capture = 1ull << 30;
  c.max_packets_per_capture = 100000000;
  c.lookback_seconds = 10;
  c.lookback_bytes_per_pod = 64ull << 20;
  c.lookback_bytes_total = 256ull << 20;
  c.max_per_rule_per_hour = 1000000;
  return c;
}

void BM_StartToFirstPacket(benchmark::State& state) {
  TempDir tmp;
  CaptureManager m(config(tmp.path));
  m.watch(pod(1));
  const auto frame = udp_frame(128);
  uint64_t lookback = 0;
  double first_us_total = 0;
  uint64_t written = 0;
  uint64_t filled_to = 0;
  for (auto _ : state) {
    // The ring full of the last 10 s (5,000 packets a second), as it is for a busy pod.
    state.PauseTiming();
    const uint64_t end = now_ns();
    for (uint64_t ts = std::max<uint64_t>(filled_to, end - 10'000'000'000ull); ts < end; ts += 200'000) m.on_packet(1, ts, 0, 1000, frame);
    filled_to = end;
    lookback = m.stats().lookback_packets;
    state.ResumeTiming();
    CaptureRequest req;
    req.pods = {pod(1)};
    req.before_seconds = static_cast<double>(state.range(0));
    req.after_seconds = 30;
    req.trigger_time = static_cast<double>(end) / 1e9;
    // A watcher for the first packet block in the file (the headers are about 200 bytes).
    std::atomic<bool> stop{false};
    std::atomic<int64_t> first_ns{-1};
    const auto t0 = std::chrono::steady_clock::now();
    std::thread watcher([&] {
      while (!stop) {
        std::error_code ec;
        for (const auto& d : fs::directory_iterator(tmp.path + "/captures", ec)) {
          struct stat st {};
          if (::stat((d.path().string() + "/capture.pcapng.part").c_str(), &st) == 0 && st.st_size > 400) {
            first_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
            return;
          }
        }
      }
    });
    auto s = m.start(req);
    state.PauseTiming();
    while (first_ns < 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2)) std::this_thread::yield();
    stop = true;
    watcher.join();
    if (!s.ok()) {
      state.SkipWithError(s.refused->message.c_str());
      break;
    }
    first_us_total += static_cast<double>(first_ns.load()) / 1e3;
    written = (*m.manifest(s.id))["packets"].get<uint64_t>();
    (void)m.remove(s.id);
    state.ResumeTiming();
  }
  state.counters["lookback_packets"] = static_cast<double>(lookback);
  state.counters["written_by_start"] = static_cast<double>(written);
  state.counters["first_packet_us"] = first_us_total / static_cast<double>(state.iterations());
}
BENCHMARK(BM_StartToFirstPacket)->Arg(1)->Arg(10)->Unit(benchmark::kMillisecond)->Iterations(20);

void BM_OnPacket(benchmark::State& state) {
  TempDir tmp;
  auto cfg = config(tmp.path);
  cfg.lookback_bytes_per_pod = 4ull << 20;  // the default: the ring evicts as it goes
  CaptureManager m(cfg);
  m.watch(pod(1));
  const auto frame = udp_frame(128);
  uint64_t ts = now_ns();
  for (int i = 0; i < 100000; ++i) m.on_packet(1, ts += 1000, 0, 1000, frame);  // ring at its limit
  std::string id;
  if (state.range(0) > 0) {
    CaptureRequest req;
    req.pods = {pod(1)};
    req.before_seconds = 0;
    req.after_seconds = 290;
    req.max_bytes = 1ull << 30;
    if (state.range(0) == 2) req.filter = "udp port 53";
    auto s = m.start(req);
    if (!s.ok()) {
      state.SkipWithError(s.refused->message.c_str());
      return;
    }
    id = s.id;
  }
  for (auto _ : state) m.on_packet(1, ts += 1000, 0, 1000, frame);
  state.SetItemsProcessed(state.iterations());
  if (!id.empty()) {
    m.poll();
    auto j = *m.manifest(id);
    state.counters["written"] = static_cast<double>(j["packets"].get<uint64_t>());
    state.counters["lost"] = static_cast<double>(j["packets_lost"].get<uint64_t>());
    (void)m.remove(id);
  }
}
BENCHMARK(BM_OnPacket)->Arg(0)->Arg(1)->Arg(2)->Iterations(500000);

void BM_LivePipeline(benchmark::State& state) {
  TempDir tmp;
  CaptureManager m(config(tmp.path));
  CaptureRequest req;
  req.pods = {pod(1)};
  req.before_seconds = 0;
  req.after_seconds = 290;
  auto s = m.start(req);
  if (!s.ok()) {
    state.SkipWithError(s.refused->message.c_str());
    return;
  }
  const auto frame = udp_frame(128);
  uint64_t ts = now_ns();
  uint64_t expected = 0;
  for (auto _ : state) {
    for (int i = 0; i < 10000; ++i) m.on_packet(1, ts += 1000, 0, 1000, frame);
    expected += 10000;
    for (int k = 0; k < 1000; ++k) {
      m.poll();
      if ((*m.manifest(s.id))["packets"].get<uint64_t>() >= expected) break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(expected));
  state.counters["lost"] = static_cast<double>((*m.manifest(s.id))["packets_lost"].get<uint64_t>());
  (void)m.remove(s.id);
}
BENCHMARK(BM_LivePipeline)->Unit(benchmark::kMillisecond)->Iterations(50);

void BM_RingMemory(benchmark::State& state) {
  TempDir tmp;
  const auto frame = udp_frame(static_cast<size_t>(state.range(0)));
  double per_packet = 0;
  uint64_t held = 0;
  for (auto _ : state) {
    CaptureManager m(config(tmp.path));
    const int64_t before = g_live_bytes.load();
    m.watch(pod(1));
    uint64_t ts = now_ns();
    for (int i = 0; i < 100000; ++i) m.on_packet(1, ts += 1000, 0, 1500, frame);
    held = m.stats().lookback_packets;
    per_packet = static_cast<double>(g_live_bytes.load() - before) / static_cast<double>(held);
  }
  state.counters["packets_held"] = static_cast<double>(held);
  state.counters["heap_per_packet"] = per_packet;
  state.counters["overhead_per_packet"] = per_packet - static_cast<double>(state.range(0));
}
BENCHMARK(BM_RingMemory)->Arg(60)->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace

BENCHMARK_MAIN();
