// PacketRing: one pod's lookback (flight recorder) ring, for CaptureManager (actions/capture.h).
//
// Packets are stored back to back in chunks of `chunk_bytes` (a packet larger than a chunk gets a
// chunk of its own size): a 16-byte header (timestamp, length on the wire, captured length and
// direction) followed by the captured bytes, no padding. Memory is the chunks held, so it follows
// the bytes held (at most one partly used chunk at each end), never a fixed per-pod allocation.
// Eviction takes packets from the head; a chunk is freed once every packet in it is gone.
//
// Loss markers (packets the kernel could not deliver, with the time it noticed) are kept next to
// the packets, at most kMaxLossMarks (the oldest two merge, keeping the later timestamp, so a
// merge can only move a loss later, never claim a window had none).
//
// covered_from_ns(): every packet and loss with a timestamp at or after it is still held. It
// starts at the ring's creation and moves past each evicted packet or loss.
//
// Not thread-safe: CaptureManager holds its lock around every call.
#pragma once

#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <span>
#include <vector>

namespace vigil::actions {

class PacketRing {
 public:
  static constexpr size_t kHeaderBytes = 16;
  static constexpr size_t kMaxLossMarks = 256;

  struct Packet {
    uint64_t ts_ns;
    uint32_t wire_len;
    uint8_t direction;
    std::span<const uint8_t> data;
  };

  PacketRing(uint64_t created_ns, size_t chunk_bytes) : covered_from_(created_ns), chunk_bytes_(chunk_bytes) {}

  void push(uint64_t ts_ns, uint8_t direction, uint32_t wire_len, std::span<const uint8_t> data);
  void add_loss(uint64_t ts_ns, uint64_t count);

  // Frees the oldest chunk with every packet in it; returns the packets evicted.
  uint64_t evict_chunk();
  // Evicts packets and losses older than `cutoff_ns`; returns the packets evicted.
  uint64_t evict_before(uint64_t cutoff_ns);

  // A chunk's packets as they were when the view was taken: the bytes stay valid (and
  // unchanged: a ring only appends past `end`) while the view lives, also after eviction, so
  // the packets can be read without the ring's lock and without a copy.
  struct View {
    std::shared_ptr<const uint8_t[]> buf;
    uint32_t begin = 0, end = 0;
    Packet at(size_t off) const { return decode(buf.get(), off); }
    static size_t next(const Packet& p, size_t off) { return off + kHeaderBytes + p.data.size(); }
  };
  // Views of the chunks that may hold packets with ts >= from_ns, oldest first.
  void views_since(uint64_t from_ns, std::vector<View>& out) const {
    for (const auto& c : chunks_)
      if (c.last_ts >= from_ns && c.begin < c.end) out.push_back({c.buf, c.begin, c.end});
  }

  // Packets with ts >= from_ns, in the order they arrived.
  template <typename F>
  void for_each_since(uint64_t from_ns, F&& f) const {
    for (const auto& c : chunks_) {
      if (c.last_ts < from_ns) continue;
      size_t off = c.begin;
      while (off < c.end) {
        Packet p = decode(c.buf.get(), off);
        off += kHeaderBytes + p.data.size();
        if (p.ts_ns >= from_ns) f(p);
      }
    }
  }
  // Losses with ts >= from_ns.
  uint64_t lost_since(uint64_t from_ns) const;

  uint64_t memory_bytes() const { return memory_; }  // chunk bytes allocated
  uint64_t packets() const { return packets_; }
  size_t chunks() const { return chunks_.size(); }
  uint64_t covered_from_ns() const { return covered_from_; }

 private:
  struct Chunk {
    std::shared_ptr<uint8_t[]> buf;  // shared with the views of a capture being written
    uint32_t cap = 0;
    uint32_t begin = 0;  // first byte of the oldest packet still held
    uint32_t end = 0;    // first free byte
    uint32_t count = 0;  // packets held
    uint64_t last_ts = 0;  // the largest timestamp ever written to it
  };
  static Packet decode(const uint8_t* buf, size_t off) {
    Packet p;
    uint32_t cap_dir;
    std::memcpy(&p.ts_ns, buf + off, 8);
    std::memcpy(&p.wire_len, buf + off + 8, 4);
    std::memcpy(&cap_dir, buf + off + 12, 4);
    p.direction = static_cast<uint8_t>(cap_dir >> 31);
    p.data = {buf + off + kHeaderBytes, cap_dir & 0x7FFFFFFFu};
    return p;
  }
  void evicted(uint64_t ts_ns) {
    if (ts_ns + 1 > covered_from_) covered_from_ = ts_ns + 1;
  }

  std::deque<Chunk> chunks_;
  std::deque<std::pair<uint64_t, uint64_t>> losses_;  // (ts_ns, count), oldest first
  uint64_t covered_from_;
  size_t chunk_bytes_;
  uint64_t memory_ = 0;
  uint64_t packets_ = 0;
};

}  // namespace vigil::actions
