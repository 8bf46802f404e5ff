#include "rules/runtime/state_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace vigil::rules {
namespace {

constexpr std::string_view kMagic{"VIGILST\0", 8};
constexpr size_t kHeaderSize = 8 + 4 + 8 + 8;

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  template <typename T>
  void put(T v) {
    char buf[sizeof(T)];
    std::memcpy(buf, &v, sizeof(T));
    out_.append(buf, sizeof(T));
  }
  void str(std::string_view s) {
    put<uint32_t>(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }

 private:
  std::string& out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  template <typename T>
  T get() {
    T v{};
    if (!ok_ || in_.size() - pos_ < sizeof(T)) {
      ok_ = false;
      return v;
    }
    std::memcpy(&v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str() {
    auto n = get<uint32_t>();
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return {};
    }
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  // A count of entries that each take at least `min_bytes`: refuses counts the rest of the
  // input cannot hold, so a corrupt count never reserves gigabytes.
  uint32_t count(size_t min_bytes) {
    auto n = get<uint32_t>();
    if (ok_ && n > (in_.size() - pos_) / min_bytes) ok_ = false;
    return ok_ ? n : 0;
  }
  bool ok() const { return ok_; }
  bool done() const { return ok_ && pos_ == in_.size(); }

 private:
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

std::string errno_text() { return std::strerror(errno); }

}  // namespace

uint64_t fnv1a64(std::string_view bytes, uint64_t seed) {
  uint64_t h = seed;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string encode_state(const StateSnapshot& state) {
  std::string payload;
  Writer w(payload);
  w.put<double>(state.saved_at);
  w.put<uint32_t>(static_cast<uint32_t>(state.rules.size()));
  for (const auto& r : state.rules) {
    w.str(r.name);
    w.put<uint64_t>(r.params_hash);
    w.put<uint32_t>(static_cast<uint32_t>(r.groups.size()));
    for (const auto& g : r.groups) {
      w.put<uint32_t>(static_cast<uint32_t>(g.key.size()));
      for (const auto& [k, v] : g.key) {
        w.str(k);
        w.str(v);
      }
      w.str(g.workload);
      w.put<double>(g.age);
      w.str(g.detector);
    }
  }
  std::string out;
  Writer h(out);
  out.append(kMagic);
  h.put<uint32_t>(kStateFormatVersion);
  h.put<uint64_t>(payload.size());
  h.put<uint64_t>(fnv1a64(payload));
  out += payload;
  return out;
}

Result<StateSnapshot> decode_state(std::string_view bytes) {
  if (bytes.size() < kMagic.size() || bytes.substr(0, kMagic.size()) != kMagic)
    return make_error("not a Vigil state file (bad magic)");
  if (bytes.size() < kHeaderSize) return make_error("truncated header (" + std::to_string(bytes.size()) + " bytes)");
  Reader header(bytes.substr(kMagic.size(), kHeaderSize - kMagic.size()));
  auto version = header.get<uint32_t>();
  auto length = header.get<uint64_t>();
  auto checksum = header.get<uint64_t>();
  if (version != kStateFormatVersion)
    return make_error("format version " + std::to_string(version) + ", this agent reads version " +
                      std::to_string(kStateFormatVersion));
  std::string_view payload = bytes.substr(kHeaderSize);
  if (payload.size() != length)
    return make_error("truncated or padded: payload is " + std::to_string(payload.size()) + " bytes, header says " +
                      std::to_string(length));
  if (fnv1a64(payload) != checksum) return make_error("checksum mismatch (corrupt)");

  Reader r(payload);
  StateSnapshot state;
  state.saved_at = r.get<double>();
  const uint32_t rules = r.count(4 + 8 + 4);
  state.rules.reserve(rules);
  for (uint32_t i = 0; i < rules && r.ok(); ++i) {
    RuleSnapshot rule;
    rule.name = r.str();
    rule.params_hash = r.get<uint64_t>();
    const uint32_t groups = r.count(4 + 4 + 8 + 4);
    rule.groups.reserve(groups);
    for (uint32_t j = 0; j < groups && r.ok(); ++j) {
      GroupSnapshot g;
      const uint32_t labels = r.count(8);
      for (uint32_t k = 0; k < labels && r.ok(); ++k) {
        std::string name = r.str();
        g.key.emplace_back(std::move(name), r.str());
      }
      g.workload = r.str();
      g.age = r.get<double>();
      g.detector = r.str();
      rule.groups.push_back(std::move(g));
    }
    state.rules.push_back(std::move(rule));
  }
  if (!r.done()) return make_error("malformed payload");
  return state;
}

Result<void> write_file_atomic(const std::string& path, std::string_view bytes) {
  namespace fs = std::filesystem;
  fs::path target(path);
  fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::string tmp = (dir / ("." + target.filename().string() + ".tmp." + std::to_string(getpid()))).string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return make_error(tmp + ": open: " + errno_text());
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string why = errno_text();
      ::close(fd);
      ::unlink(tmp.c_str());
      return make_error(tmp + ": write: " + why);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    std::string why = errno_text();
    ::close(fd);
    ::unlink(tmp.c_str());
    return make_error(tmp + ": fsync: " + why);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = errno_text();
    ::unlink(tmp.c_str());
    return make_error(path + ": rename: " + why);
  }
  // The rename itself is durable once the directory is synced.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

namespace {

// "name" without its last "-suffix"; empty when there is none.
std::string without_last_segment(const std::string& name) {
  auto dash = name.rfind('-');
  return dash == std::string::npos || dash == 0 ? std::string() : name.substr(0, dash);
}

}  // namespace

std::string workload_of(const PodMeta& pod) {
  if (!pod.workload.empty()) return pod.workload;
  auto label = [&](const char* k) -> const std::string* {
    auto it = pod.labels.find(k);
    return it == pod.labels.end() || it->second.empty() ? nullptr : &it->second;
  };
  if (const std::string* hash = label("pod-template-hash")) {
    const std::string infix = "-" + *hash + "-";
    auto at = pod.name.rfind(infix);
    if (at != std::string::npos && at > 0) return pod.namespace_ + "/Deployment/" + pod.name.substr(0, at);
    return {};
  }
  if (label("controller-revision-hash")) {
    std::string owner = without_last_segment(pod.name);
    if (owner.empty()) return {};
    const char* kind = label("statefulset.kubernetes.io/pod-name") ? "StatefulSet"
                       : label("pod-template-generation")        ? "DaemonSet"
                                                                  : nullptr;
    if (kind) return pod.namespace_ + "/" + kind + "/" + owner;
  }
  return {};
}

}  // namespace vigil::rules
