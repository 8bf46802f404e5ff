#include "actions/capture_ring.h"

#include <algorithm>

namespace vigil::actions {

void PacketRing::push(uint64_t ts_ns, uint8_t direction, uint32_t wire_len, std::span<const uint8_t> data) {
  const size_t len = std::min<size_t>(data.size(), 0x7FFFFFFFu);
  const size_t need = kHeaderBytes + len;
  if (chunks_.empty() || chunks_.back().cap - chunks_.back().end < need) {
    Chunk c;
    c.cap = static_cast<uint32_t>(std::max(chunk_bytes_, need));
    c.buf = std::shared_ptr<uint8_t[]>(new uint8_t[c.cap]);
    memory_ += c.cap;
    chunks_.push_back(std::move(c));
  }
  Chunk& c = chunks_.back();
  uint8_t* p = c.buf.get() + c.end;
  const uint32_t cap_dir = static_cast<uint32_t>(len) | (direction ? 0x80000000u : 0u);
  std::memcpy(p, &ts_ns, 8);
  std::memcpy(p + 8, &wire_len, 4);
  std::memcpy(p + 12, &cap_dir, 4);
  if (len) std::memcpy(p + kHeaderBytes, data.data(), len);
  c.end += static_cast<uint32_t>(need);
  ++c.count;
  c.last_ts = std::max(c.last_ts, ts_ns);
  ++packets_;
}

void PacketRing::add_loss(uint64_t ts_ns, uint64_t count) {
  if (count == 0) return;
  if (!losses_.empty() && losses_.back().first == ts_ns) {
    losses_.back().second += count;
    return;
  }
  if (losses_.size() >= kMaxLossMarks) {
    // Merge the two oldest at the later timestamp: a loss may move later, never out of a window
    // that ends after it.
    auto first = losses_.front();
    losses_.pop_front();
    losses_.front().second += first.second;
  }
  losses_.emplace_back(ts_ns, count);
}

uint64_t PacketRing::evict_chunk() {
  if (chunks_.empty()) return 0;
  Chunk& c = chunks_.front();
  const uint64_t n = c.count;
  if (n) evicted(c.last_ts);
  memory_ -= c.cap;
  packets_ -= n;
  chunks_.pop_front();
  return n;
}

uint64_t PacketRing::evict_before(uint64_t cutoff_ns) {
  uint64_t n = 0;
  while (!chunks_.empty()) {
    Chunk& c = chunks_.front();
    if (c.last_ts < cutoff_ns) {
      n += evict_chunk();
      continue;
    }
    // Some packet in this chunk is recent: take the old ones off its head.
    while (c.begin < c.end) {
      Packet p = decode(c.buf.get(), c.begin);
      if (p.ts_ns >= cutoff_ns) break;
      evicted(p.ts_ns);
      c.begin += static_cast<uint32_t>(kHeaderBytes + p.data.size());
      --c.count;
      --packets_;
      ++n;
    }
    break;
  }
  while (!losses_.empty() && losses_.front().first < cutoff_ns) {
    evicted(losses_.front().first);
    losses_.pop_front();
  }
  return n;
}

uint64_t PacketRing::lost_since(uint64_t from_ns) const {
  uint64_t n = 0;
  for (const auto& [ts, count] : losses_)
    if (ts >= from_ns) n += count;
  return n;
}

}  // namespace vigil::actions
