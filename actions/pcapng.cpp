#include "actions/pcapng.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace vigil::actions {
namespace {

constexpr uint32_t kSectionHeader = 0x0A0D0D0A;
constexpr uint32_t kInterfaceDescription = 0x00000001;
constexpr uint32_t kEnhancedPacket = 0x00000006;
constexpr uint32_t kByteOrderMagic = 0x1A2B3C4D;

constexpr uint16_t kOptEnd = 0;
constexpr uint16_t kOptComment = 1;
constexpr uint16_t kShbUserAppl = 4;
constexpr uint16_t kIfName = 2;
constexpr uint16_t kIfDescription = 3;
constexpr uint16_t kIfTsresol = 9;
constexpr uint16_t kEpbFlags = 2;
constexpr size_t kFileBuffer = 64 * 1024;

// Blocks are written in the host's byte order; the section header's magic tells readers which.
template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}

void pad4(std::vector<uint8_t>& out) {
  while (out.size() % 4) out.push_back(0);
}

void put_bytes(std::vector<uint8_t>& out, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  out.insert(out.end(), p, p + n);
  pad4(out);
}

// An option's value is at most 65535 bytes; longer text is cut (comments, names).
void put_option(std::vector<uint8_t>& out, uint16_t code, const std::string& value) {
  const size_t n = std::min<size_t>(value.size(), 0xFFFF);
  put<uint16_t>(out, code);
  put<uint16_t>(out, static_cast<uint16_t>(n));
  put_bytes(out, value.data(), n);
}

void end_options(std::vector<uint8_t>& out) {
  put<uint16_t>(out, kOptEnd);
  put<uint16_t>(out, 0);
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

Result<std::unique_ptr<PcapngWriter>> PcapngWriter::create(const std::string& path, const std::string& comment) {
  const std::string part = path + ".part";
  int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return make_error("create capture " + part + ": " + errno_text());
  FILE* f = ::fdopen(fd, "wb");
  if (!f) {
    std::string why = errno_text();
    ::close(fd);
    ::unlink(part.c_str());
    return make_error("create capture " + part + ": " + why);
  }
  std::setvbuf(f, nullptr, _IOFBF, kFileBuffer);
  std::unique_ptr<PcapngWriter> w(new PcapngWriter(path, f));
  std::vector<uint8_t> body;
  put<uint32_t>(body, kByteOrderMagic);
  put<uint16_t>(body, 1);  // major
  put<uint16_t>(body, 0);  // minor
  put<int64_t>(body, -1);  // section length: not given
  if (!comment.empty()) put_option(body, kOptComment, comment);
  put_option(body, kShbUserAppl, "vigil " VIGIL_VERSION);
  end_options(body);
  if (auto r = w->write_block(kSectionHeader, body); !r) return r.error();
  return w;
}

PcapngWriter::~PcapngWriter() {
  if (file_) ::fclose(file_);
  if (!finished_) ::unlink((path_ + ".part").c_str());
}

Result<void> PcapngWriter::write_block(uint32_t type, const std::vector<uint8_t>& body) {
  if (finished_ || !file_) return make_error("capture " + path_ + ": already finished");
  const uint32_t total = static_cast<uint32_t>(body.size() + 12);
  std::vector<uint8_t> block;
  block.reserve(total);
  put<uint32_t>(block, type);
  put<uint32_t>(block, total);
  block.insert(block.end(), body.begin(), body.end());
  put<uint32_t>(block, total);
  if (std::fwrite(block.data(), 1, block.size(), file_) != block.size())
    return make_error("write capture " + path_ + ".part: " + errno_text());
  bytes_ += block.size();
  return {};
}

Result<uint32_t> PcapngWriter::add_interface(const PcapngInterface& iface) {
  std::vector<uint8_t> body;
  put<uint16_t>(body, iface.link_type);
  put<uint16_t>(body, 0);
  put<uint32_t>(body, iface.snaplen);
  if (!iface.name.empty()) put_option(body, kIfName, iface.name);
  if (!iface.description.empty()) put_option(body, kIfDescription, iface.description);
  put_option(body, kIfTsresol, std::string(1, '\x09'));  // 10^-9 s: nanoseconds
  end_options(body);
  if (auto r = write_block(kInterfaceDescription, body); !r) return r.error();
  snaplens_.push_back(iface.snaplen);
  return static_cast<uint32_t>(snaplens_.size() - 1);
}

uint64_t PcapngWriter::packet_block_bytes(uint32_t interface_id, size_t captured, uint32_t flags) const {
  size_t kept = captured;
  if (interface_id < snaplens_.size() && snaplens_[interface_id]) kept = std::min<size_t>(kept, snaplens_[interface_id]);
  return 12 + 20 + ((kept + 3) & ~size_t{3}) + (flags ? 12 : 0);
}

Result<void> PcapngWriter::write_packet(uint32_t interface_id, uint64_t ts_ns, std::span<const uint8_t> data,
                                        uint32_t original_length, const std::string& comment, uint32_t flags) {
  if (interface_id >= snaplens_.size())
    return make_error("capture " + path_ + ": no interface " + std::to_string(interface_id));
  if (finished_ || !file_) return make_error("capture " + path_ + ": already finished");
  size_t kept = data.size();
  if (snaplens_[interface_id]) kept = std::min<size_t>(kept, snaplens_[interface_id]);
  // The block is built in one reused buffer: the per-packet path allocates nothing once warm.
  std::vector<uint8_t>& b = scratch_;
  b.clear();
  put<uint32_t>(b, kEnhancedPacket);
  put<uint32_t>(b, 0);  // total length, set below
  put<uint32_t>(b, interface_id);
  put<uint32_t>(b, static_cast<uint32_t>(ts_ns >> 32));
  put<uint32_t>(b, static_cast<uint32_t>(ts_ns & 0xFFFFFFFFu));
  put<uint32_t>(b, static_cast<uint32_t>(kept));
  put<uint32_t>(b, std::max<uint32_t>(original_length, static_cast<uint32_t>(kept)));
  put_bytes(b, data.data(), kept);
  if (!comment.empty() || flags) {
    if (!comment.empty()) put_option(b, kOptComment, comment);
    if (flags) {
      put<uint16_t>(b, kEpbFlags);
      put<uint16_t>(b, 4);
      put<uint32_t>(b, flags);
    }
    end_options(b);
  }
  const uint32_t total = static_cast<uint32_t>(b.size() + 4);
  put<uint32_t>(b, total);
  std::memcpy(b.data() + 4, &total, 4);
  if (std::fwrite(b.data(), 1, b.size(), file_) != b.size())
    return make_error("write capture " + path_ + ".part: " + errno_text());
  bytes_ += b.size();
  ++packets_;
  return {};
}

Result<void> PcapngWriter::flush() {
  if (finished_ || !file_) return {};
  if (std::fflush(file_) != 0) return make_error("write capture " + path_ + ".part: " + errno_text());
  return {};
}

Result<void> PcapngWriter::finish() {
  if (finished_) return {};
  const std::string part = path_ + ".part";
  bool ok = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  std::string why = ok ? "" : errno_text();
  if (::fclose(file_) != 0 && ok) {
    ok = false;
    why = errno_text();
  }
  file_ = nullptr;
  if (!ok) return make_error("write capture " + part + ": " + why);
  if (::rename(part.c_str(), path_.c_str()) != 0) return make_error("rename " + part + " to " + path_ + ": " + errno_text());
  finished_ = true;
  return {};
}

}  // namespace vigil::actions
