// The user-space reader of lookback captures: a thread that drains the kernel's capture ring
// buffer (vigil_capture_rb, bpf/lib/capture.h) and hands each packet of a capturing pod to a
// PacketSink (in the agent, actions::CaptureManager), with every packet the kernel could not
// put in the ring reported as lost, exactly.
//
// Timestamps: the kernel stamps records with CLOCK_MONOTONIC; the sink gets unix nanoseconds
// (CLOCK_REALTIME - CLOCK_MONOTONIC, measured at start and again every second).
//
// Losses: the kernel counts, per pod slot and CPU, the packets that found the ring full, and
// every record carries that count for its slot and CPU. A record whose count is higher than
// the last one seen for its slot and CPU means that many packets were lost there since; they
// are reported with on_lost() (at the time of the latest of them) before the record's packet.
// Losses after a CPU's last record are found by reading the counters themselves, whenever the
// kernel's error counter for a full ring (vigil_bpf_errors_total{site="capture_ring_full"})
// is ahead of what has been reported (checked every 100 ms). Counts start from the object's
// load, so there must be one source per loaded Datapath.
//
// Threads: the source's thread only reads the ring and the two counter maps by fd; it never
// calls Datapath (whose owner is the tick thread). Destroy the source before the Datapath.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <thread>

#include "actions/capture.h"
#include "engine/datapath.h"
#include "rules/core/result.h"

struct ring_buffer;

namespace vigil {

// What the source feeds, on its own thread.
class PacketSink {
 public:
  virtual ~PacketSink() = default;
  // `data`: the first min(wire_len, snaplen) bytes of the frame from its Ethernet header on;
  // `direction`: from the pod's point of view (0 ingress, 1 egress); `ts_ns`: unix ns.
  virtual void on_packet(uint32_t ifindex, uint64_t ts_ns, uint8_t direction, uint32_t wire_len,
                         std::span<const uint8_t> data) = 0;
  // `count` packets of the pod behind `ifindex` were lost (ring full), the latest at `ts_ns`.
  virtual void on_lost(uint32_t ifindex, uint64_t ts_ns, uint64_t count) = 0;
};

// The agent's sink. Header-only, so that code which does not use it needs no CaptureManager.
class CaptureManagerSink : public PacketSink {
 public:
  explicit CaptureManagerSink(actions::CaptureManager& manager) : manager_(manager) {}
  void on_packet(uint32_t ifindex, uint64_t ts_ns, uint8_t direction, uint32_t wire_len,
                 std::span<const uint8_t> data) override {
    manager_.on_packet(ifindex, ts_ns, direction, wire_len, data);
  }
  void on_lost(uint32_t ifindex, uint64_t ts_ns, uint64_t count) override { manager_.on_lost(ifindex, ts_ns, count); }

 private:
  actions::CaptureManager& manager_;
};

struct CaptureSourceStats {
  uint64_t records = 0;         // packets handed to the sink
  uint64_t bytes = 0;           // captured bytes handed to the sink (not counting headers)
  uint64_t wire_bytes = 0;      // the same packets' lengths on the wire
  uint64_t lost = 0;            // packets reported lost (ring full)
  uint64_t bad_records = 0;     // records too short for their header (none expected)
  uint64_t loss_scans = 0;      // reads of the per-slot loss counters
  uint64_t polls = 0;           // ring polls: every poll_ms while a pod is marked, none while not
  uint64_t idle_waits = 0;      // waits for a mark while none is (each up to kIdleWait)
};

struct CaptureSourceOptions {
  int poll_ms = 10;  // how often the ring is drained while a pod is marked (the kernel sends no wakeups)
};

class CaptureSource {
 public:
  // Starts the thread. `sink` must outlive the source.
  static Result<std::unique_ptr<CaptureSource>> start(Datapath& datapath, PacketSink& sink,
                                                      CaptureSourceOptions options = {});
  // The agent's form: feeds `manager` (which must outlive the source).
  static Result<std::unique_ptr<CaptureSource>> start(Datapath& datapath, actions::CaptureManager& manager,
                                                      CaptureSourceOptions options = {}) {
    auto owned = std::make_unique<CaptureManagerSink>(manager);
    auto source = start(datapath, *owned, options);
    if (source) (*source)->owned_sink_ = std::move(owned);
    return source;
  }
  ~CaptureSource();  // stops and joins the thread (within one poll period)
  // While no pod is marked for capture the thread waits, waking once every this long at most.
  static constexpr std::chrono::milliseconds kIdleWait{1000};
  CaptureSource(const CaptureSource&) = delete;
  CaptureSource& operator=(const CaptureSource&) = delete;

  CaptureSourceStats stats() const;  // any thread

 private:
  CaptureSource(PacketSink& sink, int lost_fd, uint32_t lost_slots, int errors_fd, CaptureSourceOptions options,
                std::shared_ptr<CaptureActivity> activity);
  static int on_record(void* ctx, void* data, size_t size);
  void run();
  void refresh_clock();
  uint64_t to_unix(uint64_t monotonic_ns) const;
  void account_lost(uint32_t slot, uint32_t cpu, uint64_t cumulative, uint32_t ifindex, uint64_t at_ns);
  void scan_losses();

  PacketSink& sink_;
  std::unique_ptr<PacketSink> owned_sink_;
  int lost_fd_, errors_fd_;
  uint32_t lost_slots_;  // vigil_capture_lost's entries: the datapath's max_pods
  CaptureSourceOptions options_;
  std::shared_ptr<CaptureActivity> activity_;  // the datapath's: whether any pod is marked
  ring_buffer* ring_ = nullptr;
  std::thread thread_;
  std::atomic<bool> stop_{false};

  // The source thread's own state.
  int64_t offset_ns_ = 0;  // CLOCK_REALTIME - CLOCK_MONOTONIC
  std::map<uint32_t, uint64_t> accounted_;  // (slot << 16 | cpu) -> losses reported
  uint64_t accounted_total_ = 0;

  std::atomic<uint64_t> records_{0}, bytes_{0}, wire_bytes_{0}, lost_{0}, bad_records_{0}, loss_scans_{0}, polls_{0}, idle_waits_{0};
};

}  // namespace vigil
