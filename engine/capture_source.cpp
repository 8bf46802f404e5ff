#include "engine/capture_source.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>
#include <time.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "engine/bpf_maps.h"
#include "vigil_abi.h"

namespace vigil {
namespace {

uint64_t clock_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

constexpr auto kClockRefresh = std::chrono::seconds(1);
constexpr auto kLossCheck = std::chrono::milliseconds(100);

}  // namespace

Result<std::unique_ptr<CaptureSource>> CaptureSource::start(Datapath& datapath, PacketSink& sink,
                                                            CaptureSourceOptions options) {
  if (options.poll_ms < 1 || options.poll_ms > 1000)
    return make_error("capture source: poll_ms " + std::to_string(options.poll_ms) + " out of range (1 to 1000)");
  const int ring_fd = datapath.capture_ring_fd();
  if (ring_fd < 0) return make_error("capture source: the datapath has no capture ring buffer");
  std::unique_ptr<CaptureSource> source(
      new CaptureSource(sink, datapath.capture_lost_fd(), datapath.max_pods(), datapath.errors_fd(), options,
                        datapath.capture_activity()));
  source->ring_ = ring_buffer__new(ring_fd, &CaptureSource::on_record, source.get(), nullptr);
  if (!source->ring_) return make_error(std::string("capture source: open ring buffer vigil_capture_rb: ") + std::strerror(errno));
  source->refresh_clock();
  source->thread_ = std::thread([s = source.get()] { s->run(); });
  return source;
}

CaptureSource::CaptureSource(PacketSink& sink, int lost_fd, uint32_t lost_slots, int errors_fd,
                             CaptureSourceOptions options, std::shared_ptr<CaptureActivity> activity)
    : sink_(sink),
      lost_fd_(lost_fd),
      errors_fd_(errors_fd),
      lost_slots_(lost_slots),
      options_(options),
      activity_(std::move(activity)) {}

CaptureSource::~CaptureSource() {
  stop_.store(true);
  activity_->interrupt();
  if (thread_.joinable()) thread_.join();
  if (ring_) ring_buffer__free(ring_);
}

CaptureSourceStats CaptureSource::stats() const {
  CaptureSourceStats s;
  s.records = records_.load();
  s.bytes = bytes_.load();
  s.wire_bytes = wire_bytes_.load();
  s.lost = lost_.load();
  s.bad_records = bad_records_.load();
  s.loss_scans = loss_scans_.load();
  s.polls = polls_.load();
  s.idle_waits = idle_waits_.load();
  return s;
}

void CaptureSource::refresh_clock() {
  // The realtime reading is taken between two monotonic ones; their middle is its moment.
  const uint64_t m1 = clock_ns(CLOCK_MONOTONIC);
  const uint64_t r = clock_ns(CLOCK_REALTIME);
  const uint64_t m2 = clock_ns(CLOCK_MONOTONIC);
  offset_ns_ = static_cast<int64_t>(r) - static_cast<int64_t>(m1 + (m2 - m1) / 2);
}

uint64_t CaptureSource::to_unix(uint64_t monotonic_ns) const {
  return static_cast<uint64_t>(static_cast<int64_t>(monotonic_ns) + offset_ns_);
}

void CaptureSource::run() {
  using clock = std::chrono::steady_clock;
  auto next_clock = clock::now() + kClockRefresh;
  auto next_loss_check = clock::now() + kLossCheck;
  bool active = true;  // drain and scan once at the start, whatever is marked
  while (!stop_.load(std::memory_order_relaxed)) {
    if (!activity_->active()) {
      // No pod is marked, so nothing new enters the ring: deliver what the last capture left
      // and report its losses, then wait until a pod is marked instead of polling.
      if (active) {
        ring_buffer__consume(ring_);
        scan_losses();
        active = false;
      }
      idle_waits_.fetch_add(1, std::memory_order_relaxed);
      activity_->wait(kIdleWait, stop_);
      continue;
    }
    if (!active) {
      refresh_clock();
      active = true;
      next_clock = clock::now() + kClockRefresh;
      next_loss_check = clock::now() + kLossCheck;
    }
    // The kernel commits without wakeups (BPF_RB_NO_WAKEUP), so the poll is our timer; the
    // consume that follows drains whatever the timer period brought.
    ring_buffer__poll(ring_, options_.poll_ms);
    ring_buffer__consume(ring_);
    polls_.fetch_add(1, std::memory_order_relaxed);
    const auto now = clock::now();
    if (now >= next_clock) {
      refresh_clock();
      next_clock = now + kClockRefresh;
    }
    if (now >= next_loss_check) {
      scan_losses();
      next_loss_check = now + kLossCheck;
    }
  }
  // What is in the ring when we stop is delivered, and the losses up to now are reported.
  ring_buffer__consume(ring_);
  scan_losses();
}

void CaptureSource::account_lost(uint32_t slot, uint32_t cpu, uint64_t cumulative, uint32_t ifindex, uint64_t at_ns) {
  uint64_t& seen = accounted_[(slot << 16) | (cpu & 0xFFFF)];
  if (cumulative <= seen) return;  // reported already (by a later record or a scan)
  const uint64_t n = cumulative - seen;
  seen = cumulative;
  accounted_total_ += n;
  lost_.fetch_add(n, std::memory_order_relaxed);
  sink_.on_lost(ifindex, at_ns ? to_unix(at_ns) : to_unix(clock_ns(CLOCK_MONOTONIC)), n);
}

int CaptureSource::on_record(void* ctx, void* data, size_t size) {
  auto* self = static_cast<CaptureSource*>(ctx);
  if (size < sizeof(vigil_capture_hdr)) {
    self->bad_records_.fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
  vigil_capture_hdr h;
  std::memcpy(&h, data, sizeof(h));
  if (sizeof(h) + h.cap_len > size || h.cap_len > VIGIL_CAPTURE_MAX_SNAPLEN) {
    self->bad_records_.fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
  // The losses on this slot and CPU happened before this packet.
  self->account_lost(h.slot, h.cpu, h.lost, h.ifindex, h.lost_ns);
  const auto* bytes = static_cast<const uint8_t*>(data) + sizeof(h);
  self->records_.fetch_add(1, std::memory_order_relaxed);
  self->bytes_.fetch_add(h.cap_len, std::memory_order_relaxed);
  self->wire_bytes_.fetch_add(h.wire_len, std::memory_order_relaxed);
  self->sink_.on_packet(h.ifindex, self->to_unix(h.ts_ns), h.direction, h.wire_len,
                        std::span<const uint8_t>(bytes, h.cap_len));
  return 0;
}

// Losses no record has carried yet (those after a CPU's last record for the slot): read the
// counters when the kernel's total says some are unreported.
void CaptureSource::scan_losses() {
  if (lost_fd_ < 0 || errors_fd_ < 0) return;
  const int cpus = possible_cpus();
  std::vector<__u64> errors(cpus);
  __u32 site = VIGIL_ERR_CAPTURE_RING_FULL;
  if (bpf_map_lookup_elem(errors_fd_, &site, errors.data()) != 0) return;
  uint64_t total = 0;
  for (auto v : errors) total += v;
  if (total <= accounted_total_) return;
  loss_scans_.fetch_add(1, std::memory_order_relaxed);
  auto account_slot = [&](__u32 slot, const vigil_capture_lost* per_cpu) {
    for (int cpu = 0; cpu < cpus; ++cpu) {
      const auto& v = per_cpu[cpu];
      if (v.lost) account_lost(slot, static_cast<uint32_t>(cpu), v.lost, v.ifindex, v.last_ns);
    }
  };
  // One syscall for the whole array; one per slot where batches are not supported.
  std::vector<__u32> keys(lost_slots_);
  std::vector<vigil_capture_lost> values(static_cast<size_t>(lost_slots_) * cpus);
  __u32 count = lost_slots_, next = 0;
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  const int err = bpf_map_lookup_batch(lost_fd_, nullptr, &next, keys.data(), values.data(), &count, &opts);
  if (err == 0 || (errno == ENOENT && count > 0)) {
    for (__u32 i = 0; i < count && i < lost_slots_; ++i)
      if (keys[i] < lost_slots_) account_slot(keys[i], &values[static_cast<size_t>(i) * cpus]);
    return;
  }
  for (__u32 slot = 0; slot < lost_slots_; ++slot) {
    if (bpf_map_lookup_elem(lost_fd_, &slot, values.data()) == 0) account_slot(slot, values.data());
  }
}

}  // namespace vigil
