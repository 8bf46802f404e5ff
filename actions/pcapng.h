// A pcapng writer for Vigil's captures: one section whose comment names the anomaly and rule,
// one interface block per pod (if_name the pod's name, if_description "namespace/pod",
// nanosecond timestamps), then enhanced packet blocks. The file is written as `<path>.part`
// (mode 0600: captures hold payload) and renamed to `<path>` by finish(), so a reader never
// sees half a capture under the final name. Format: IETF draft-ietf-opsawg-pcapng.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "rules/core/result.h"

namespace vigil::actions {

struct PcapngInterface {
  std::string name;         // if_name: the pod's name
  std::string description;  // if_description: "namespace/pod"
  uint16_t link_type = 1;   // LINKTYPE_ETHERNET
  uint32_t snaplen = 0;     // 0: no limit
};

class PcapngWriter {
 public:
  // Creates `<path>.part` (refused if it exists) and writes the section header: `comment`
  // (anomaly id and rule, say) and the writing application.
  static Result<std::unique_ptr<PcapngWriter>> create(const std::string& path, const std::string& comment);
  ~PcapngWriter();  // an unfinished capture is removed
  PcapngWriter(const PcapngWriter&) = delete;
  PcapngWriter& operator=(const PcapngWriter&) = delete;

  // Adds an interface block; returns its id for write_packet(). Allowed at any point.
  Result<uint32_t> add_interface(const PcapngInterface& iface);

  // One packet: `data` is what was captured (at most the interface's snaplen is kept),
  // `original_length` the packet's length on the wire, `ts_ns` nanoseconds since the epoch.
  // `flags` is the epb_flags option (0: none; kInbound / kOutbound give the direction).
  // Writes are buffered: an I/O error (a full disk) may only show at the next flush().
  static constexpr uint32_t kInbound = 1;
  static constexpr uint32_t kOutbound = 2;
  Result<void> write_packet(uint32_t interface_id, uint64_t ts_ns, std::span<const uint8_t> data,
                            uint32_t original_length, const std::string& comment = "", uint32_t flags = 0);

  // The bytes write_packet() would add to the file for a packet of `captured` bytes (after the
  // interface's snaplen), with no comment.
  uint64_t packet_block_bytes(uint32_t interface_id, size_t captured, uint32_t flags = 0) const;

  // Hands the buffered blocks to the kernel (no fsync), so readers of `<path>.part` see them
  // and write errors show now.
  Result<void> flush();

  // Flushes, syncs and renames `<path>.part` to `<path>`.
  Result<void> finish();

  uint64_t packets() const { return packets_; }
  uint64_t bytes_written() const { return bytes_; }
  const std::string& path() const { return path_; }

 private:
  PcapngWriter(std::string path, FILE* file) : path_(std::move(path)), file_(file) {}
  Result<void> write_block(uint32_t type, const std::vector<uint8_t>& body);

  std::string path_;
  FILE* file_;
  std::vector<uint32_t> snaplens_;
  std::vector<uint8_t> scratch_;  // one block, reused
  uint64_t packets_ = 0;
  uint64_t bytes_ = 0;
  bool finished_ = false;
};

}  // namespace vigil::actions
