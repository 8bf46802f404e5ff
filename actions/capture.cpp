// CaptureManager (actions/capture.h): lookback rings, start() with its checks and the lookback
// write, the live path from on_packet(), ending, manifests, retention and restart recovery.
//
// Locks, always taken in this order: a capture's io_mu (its pcapng writer), the manager's mu
// (rings, the capture table, quota, counters), a capture's mu (its queue of live packets and
// counts). on_packet() takes mu and, per running capture of the pod, that capture's mu: it only
// copies; the manager's thread (poll()) writes the queued packets to disk, so the source thread
// never waits for a disk.
#include "actions/capture.h"

#include <fcntl.h>
#include <pcap/pcap.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <unordered_map>

#include "actions/capture_ring.h"
#include "actions/pcapng.h"

namespace vigil::actions {

const char* to_string(CaptureRefusal r) {
  switch (r) {
    case CaptureRefusal::BadRequest: return "bad_request";
    case CaptureRefusal::UnknownPod: return "unknown_pod";
    case CaptureRefusal::Concurrency: return "concurrency";
    case CaptureRefusal::Quota: return "quota";
    case CaptureRefusal::RuleBudget: return "rule_budget";
    case CaptureRefusal::Storage: return "storage";
  }
  return "unknown";
}

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kPcapName = "capture.pcapng";
constexpr const char* kManifestName = "manifest.json";
constexpr const char* kBundleName = "bundle";
constexpr uint32_t kMinSnaplen = 16;
constexpr uint32_t kMaxSnaplen = 262144;  // libpcap's MAXIMUM_SNAPLEN
constexpr double kMaxFutureTrigger = 60;  // seconds a trigger_time may lie ahead of the clock
// A packet reaches the manager shortly after its timestamp (kernel ring, source thread): a
// capture ends this long after its window so the last packets of the window still get in.
constexpr double kLateGrace = 0.25;
constexpr size_t kPendingMax = 8u << 20;   // live packets queued per capture before the writer
constexpr size_t kPendingWake = 1u << 20;  // wake the writer early past this
constexpr size_t kPendingHeader = 24;
// Disk reserved per capture on top of max_bytes (as du counts it, in 4 KiB blocks): its
// directory, the manifest twice (while it is replaced), the pcapng's last block and, per pod, a
// bundle directory; plus 1/256 of max_bytes for a large file's extent blocks.
constexpr uint64_t kReserveBase = 20 * 1024;
constexpr uint64_t kReservePerPod = 4 * 1024;

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}
double ns_to_s(uint64_t ns) { return static_cast<double>(ns) / 1e9; }
uint64_t s_to_ns(double s) { return s <= 0 ? 0 : static_cast<uint64_t>(std::llround(s * 1e9)); }
std::string errno_text(int e) { return std::strerror(e); }

std::string fmt_seconds(double s) {
  std::ostringstream o;
  o << s;
  return o.str();
}

// Space a directory tree takes on disk, as du counts it (allocated blocks), the directory included.
uint64_t disk_usage(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 0;
  uint64_t total = static_cast<uint64_t>(st.st_blocks) * 512;
  if (!S_ISDIR(st.st_mode)) return total;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(path, fs::directory_options::none, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (::lstat(it->path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

// mkdir -p with mode 0700 for what it creates; "" or the error.
std::string make_dirs(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return "";
  std::string cur;
  std::stringstream parts(path);
  std::string part;
  if (!path.empty() && path[0] == '/') cur = "/";
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    cur += (cur.empty() || cur.back() == '/' ? "" : "/") + part;
    if (::mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST) return cur + ": " + errno_text(errno);
    struct stat st {};
    if (::stat(cur.c_str(), &st) != 0) return cur + ": " + errno_text(errno);
    if (!S_ISDIR(st.st_mode)) return cur + ": " + errno_text(ENOTDIR);
  }
  return "";
}

// Writes `text` to `path` through `path.tmp` and a rename (0600); "" or the error.
std::string write_atomically(const std::string& path, const std::string& text, bool sync) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return "write " + tmp + ": " + errno_text(errno);
  ::fchmod(fd, 0600);
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string why = errno_text(n < 0 ? errno : EIO);
      ::close(fd);
      ::unlink(tmp.c_str());
      return "write " + tmp + ": " + why;
    }
    done += static_cast<size_t>(n);
  }
  if (sync && ::fsync(fd) != 0) {
    std::string why = errno_text(errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    return "write " + tmp + ": " + why;
  }
  if (::close(fd) != 0) {
    std::string why = errno_text(errno);
    ::unlink(tmp.c_str());
    return "write " + tmp + ": " + why;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = errno_text(errno);
    ::unlink(tmp.c_str());
    return "rename " + tmp + ": " + why;
  }
  if (sync) {
    const std::string dir = fs::path(path).parent_path().string();
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }
  return "";
}

// Capture ids are directory names: letters, digits, '-', '_' and '.', not starting with '.'.
bool valid_id(const std::string& id) {
  if (id.empty() || id.size() > 128 || id[0] == '.') return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'; });
}

// Why a manifest found in the captures directory at start cannot be used as it is ("" when it
// can): the fields this file, the API's readers and `vigil capture` read, with the types they
// read them as. A manifest edited by hand or left by another version must not stop the agent.
std::string manifest_problem(const json& m) {
  if (!m.is_object()) return "not a JSON object";
  for (const char* key : {"id", "status", "ended_by", "trigger", "rule", "reason"})
    if (m.contains(key) && !m[key].is_string()) return std::string(key) + " is not a string";
  for (const char* key : {"created_at", "after_seconds", "before_seconds"})
    if (m.contains(key) && !m[key].is_number()) return std::string(key) + " is not a number";
  for (const char* key : {"packets", "packets_lost", "bytes"})
    if (m.contains(key) && !m[key].is_number_unsigned()) return std::string(key) + " is not a count";
  if (m.contains("complete") && !m["complete"].is_boolean()) return "complete is not true or false";
  if (m.contains("files") && !m["files"].is_object()) return "files is not an object";
  if (m.contains("pods")) {
    if (!m["pods"].is_array()) return "pods is not a list";
    for (const auto& p : m["pods"])
      if (!p.is_object() || (p.contains("namespace") && !p["namespace"].is_string()) ||
          (p.contains("name") && !p["name"].is_string()))
        return "pods holds an entry that is not {namespace, name}";
  }
  return "";
}

std::string safe_name(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') ? c : '_';
  if (out.empty() || out[0] == '.') out = "_" + out;
  return out;
}

std::mutex g_pcap_compile_mu;  // older libpcaps have a global parser; one compile at a time

// A compiled filter; empty expression = every packet.
class Filter {
 public:
  static Result<std::unique_ptr<Filter>> compile(const std::string& expr, uint32_t snaplen) {
    auto f = std::make_unique<Filter>();
    if (expr.empty()) return f;
    std::lock_guard lock(g_pcap_compile_mu);
    pcap_t* dead = pcap_open_dead(DLT_EN10MB, static_cast<int>(snaplen));
    if (!dead) return make_error("libpcap cannot open a dead handle");
    if (pcap_compile(dead, &f->prog_, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
      std::string why = pcap_geterr(dead);
      pcap_close(dead);
      return make_error(why);  // libpcap's message, e.g. "syntax error"
    }
    pcap_close(dead);
    f->compiled_ = true;
    return f;
  }
  Filter() = default;
  ~Filter() {
    if (compiled_) pcap_freecode(&prog_);
  }
  Filter(const Filter&) = delete;
  Filter& operator=(const Filter&) = delete;

  bool match(uint32_t wire_len, std::span<const uint8_t> data) const {
    if (!compiled_) return true;
    pcap_pkthdr h{};
    h.caplen = static_cast<bpf_u_int32>(data.size());
    h.len = std::max<uint32_t>(wire_len, static_cast<uint32_t>(data.size()));
    return pcap_offline_filter(&prog_, &h, data.data()) != 0;
  }

 private:
  bpf_program prog_{};
  bool compiled_ = false;
};

// Salvages the pcapng of a capture the agent did not finish (it crashed or was killed): keeps
// the complete blocks of `<pcap>.part`, renames it to `<pcap>`; returns the packets kept, or
// nullopt when there is nothing usable.
std::optional<uint64_t> salvage_pcapng(const std::string& pcap) {
  const std::string part = pcap + ".part";
  int fd = ::open(part.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  uint64_t good = 0, packets = 0;
  bool has_section = false;
  for (;;) {
    uint32_t hdr[2];
    if (::pread(fd, hdr, 8, static_cast<off_t>(good)) != 8) break;
    const uint32_t len = hdr[1];
    if (len < 12 || len % 4 != 0 || len > (64u << 20)) break;
    uint32_t trailer = 0;
    if (::pread(fd, &trailer, 4, static_cast<off_t>(good + len - 4)) != 4 || trailer != len) break;
    if (hdr[0] == 0x0A0D0D0A) has_section = true;
    if (hdr[0] == 6) ++packets;
    good += len;
  }
  bool ok = has_section && ::ftruncate(fd, static_cast<off_t>(good)) == 0 && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(part.c_str(), pcap.c_str()) != 0) return std::nullopt;
  return packets;
}

}  // namespace

std::string check_capture_filter(const std::string& filter, uint32_t snaplen) {
  auto f = Filter::compile(filter, snaplen ? snaplen : 262144);
  return f ? "" : f.error().message;
}

// ---------------------------------------------------------------------------------------------

struct CaptureManager::Impl {
  enum class State { Running, Ending, Done };

  struct Capture {
    // Fixed at start.
    std::string id;
    std::string dir;
    uint64_t seq = 0;
    CaptureRequest req;  // pods, trigger, rule, anomaly, reason, filter
    double requested_before = 0, before = 0, after = 0;
    uint32_t snaplen = 0;
    uint64_t max_packets = 0, max_bytes = 0, reservation = 0;
    uint64_t pcap_base = 0;  // the pcapng's limit before the bundle: max_bytes, or less to fit the quota
    double created_at = 0;
    std::chrono::steady_clock::time_point started;
    uint64_t window_start_ns = 0, trigger_ns = 0, window_end_ns = 0;
    std::unique_ptr<Filter> filter;
    std::vector<bool> watched;
    std::optional<uint64_t> covered_from_ns;  // every pod's ring held everything from here on
    bool lookback_covered = false;
    uint64_t base_disk = 0;  // directory and manifest, at start

    // Manager's mu.
    State state = State::Running;
    std::string ended_by;
    double ended_at = 0;
    bool bundle_pending = false, bundling = false;
    json bundle = json::object();
    std::optional<json> final_manifest;  // once Done
    uint64_t disk_bytes = 0;             // once Done
    std::atomic<uint64_t> pcap_limit{0};

    bool ready = false;  // start() has finished with it: poll() may write and end it

    // mu: the queue of live packets and the counts shown while running.
    mutable std::mutex mu;
    std::vector<uint8_t> pending;
    bool accepting = true;
    std::vector<uint64_t> lost;  // per pod: kernel losses and queue overflow inside the window
    std::vector<uint64_t> packets, bytes;  // per pod, written
    uint64_t bytes_written = 0;
    std::string error;

    // io_mu: the writer and what only the writer changes.
    std::mutex io_mu;
    std::unique_ptr<PcapngWriter> writer;
    std::vector<uint8_t> spare;  // the last batch, emptied: its capacity becomes the next queue
    std::string stop_reason;  // max_packets / max_bytes / error, decided while writing
  };
  using CapturePtr = std::shared_ptr<Capture>;

  struct Watched {
    CapturePod pod;
    std::unique_ptr<PacketRing> ring;
  };

  Impl(CaptureManager& owner, CaptureCompleted completed, BundleCollector bundle)
      : owner(owner), config(owner.config_), on_completed(std::move(completed)), collect_bundle(std::move(bundle)),
        rng(std::random_device{}()) {}

  CaptureManager& owner;
  const CaptureConfig& config;
  CaptureCompleted on_completed;
  BundleCollector collect_bundle;
  std::string dir_error;  // why config.dir is unusable, if it is

  mutable std::mutex mu;
  std::condition_variable state_cv;  // a capture became Done or finished its bundle (with mu)
  std::unordered_map<uint32_t, Watched> rings;
  uint64_t ring_bytes = 0;
  std::unordered_map<uint32_t, std::vector<Capture*>> live;  // ifindex -> running captures
  std::map<std::string, CapturePtr> captures;
  uint64_t next_seq = 0;
  uint64_t finished_disk = 0;  // Done captures together
  std::map<std::string, std::deque<double>> rule_starts;
  std::mt19937_64 rng;
  CaptureStats counters;  // started, completed, failed, refused, packets_written/lost, evicted, unknown

  std::mutex poll_mu;
  std::mutex thread_mu;
  std::condition_variable thread_cv;
  bool stop = false;
  std::atomic<bool> wake{false};
  std::thread thread;

  size_t chunk_bytes() const {
    return std::clamp<size_t>(config.lookback_bytes_per_pod / 4, 2048, 16384);
  }

  void wake_thread() {
    if (wake.exchange(true)) return;
    thread_cv.notify_one();
  }

  // --- rings (mu held) -----------------------------------------------------------------------

  void evict_chunk(PacketRing& r) {
    const uint64_t before = r.memory_bytes();
    counters.lookback_evicted += r.evict_chunk();
    ring_bytes -= before - r.memory_bytes();
  }

  void push_ring(Watched& w, uint64_t ts_ns, uint8_t direction, uint32_t wire_len, std::span<const uint8_t> data) {
    PacketRing& r = *w.ring;
    uint64_t before = r.memory_bytes();
    const uint64_t age = s_to_ns(config.lookback_seconds);
    if (ts_ns > age) counters.lookback_evicted += r.evict_before(ts_ns - age);
    r.push(ts_ns, direction, wire_len, data);
    ring_bytes += r.memory_bytes();
    ring_bytes -= before;
    while (r.memory_bytes() > config.lookback_bytes_per_pod && r.chunks() > 1) evict_chunk(r);
    while (ring_bytes > config.lookback_bytes_total) {
      PacketRing* largest = nullptr;
      for (auto& [_, o] : rings)
        if (!largest || o.ring->memory_bytes() > largest->memory_bytes()) largest = o.ring.get();
      if (!largest || largest->chunks() == 0) break;
      evict_chunk(*largest);
    }
  }

  void age_rings(uint64_t now) {
    const uint64_t age = s_to_ns(config.lookback_seconds);
    if (now <= age) return;
    for (auto& [_, w] : rings) {
      const uint64_t before = w.ring->memory_bytes();
      counters.lookback_evicted += w.ring->evict_before(now - age);
      ring_bytes -= before - w.ring->memory_bytes();
    }
  }

  // --- quota (mu held) -----------------------------------------------------------------------

  static uint64_t overhead_of(uint64_t max_bytes, size_t pods) {
    return max_bytes / 256 + kReserveBase + kReservePerPod * pods;
  }
  uint64_t reserved_running() const {
    uint64_t r = 0;
    for (const auto& [_, c] : captures)
      if (c->state != State::Done) r += c->reservation;
    return r;
  }
  uint64_t running_count() const {
    uint64_t n = 0;
    for (const auto& [_, c] : captures) n += c->state != State::Done;
    return n;
  }

  // Deletes the oldest finished capture; false when there is none.
  bool delete_oldest_finished() {
    CapturePtr oldest;
    for (const auto& [_, c] : captures) {
      if (c->state != State::Done) continue;
      if (!oldest || c->created_at < oldest->created_at || (c->created_at == oldest->created_at && c->seq < oldest->seq))
        oldest = c;
    }
    if (!oldest) return false;
    std::error_code ec;
    fs::remove_all(oldest->dir, ec);
    if (ec) spdlog::warn("captures: retention could not delete {}: {}", oldest->dir, ec.message());
    spdlog::info("captures: deleted {} (oldest finished) to make room within disk_quota_bytes", oldest->id);
    finished_disk -= std::min(finished_disk, oldest->disk_bytes);
    if (ec) {
      // What is left still takes space: keep counting it, as a capture without its files.
      oldest->disk_bytes = disk_usage(oldest->dir);
      finished_disk += oldest->disk_bytes;
      return false;
    }
    captures.erase(oldest->id);
    return true;
  }

  // --- manifests -----------------------------------------------------------------------------

  // The manifest of `c` as it stands (mu held; takes c.mu).
  json manifest_of(const Capture& c) const {
    if (c.final_manifest) return *c.final_manifest;
    std::unique_lock lock(c.mu);
    return build_manifest(c, "running", nullptr);
  }

  // c.mu held (or the capture is no longer shared).
  json build_manifest(const Capture& c, const std::string& status, const std::string* ended_by) const {
    json pods = json::array();
    json watched = json::object();
    uint64_t packets = 0, lost = 0;
    for (size_t i = 0; i < c.req.pods.size(); ++i) {
      const auto& p = c.req.pods[i];
      pods.push_back({{"namespace", p.namespace_},
                      {"name", p.name},
                      {"interface", p.interface},
                      {"ips", p.ips},
                      {"packets", c.packets[i]},
                      {"bytes", c.bytes[i]},
                      {"lost", c.lost[i]}});
      watched[p.namespace_ + "/" + p.name] = static_cast<bool>(c.watched[i]);
      packets += c.packets[i];
      lost += c.lost[i];
    }
    const bool failed = status == "failed";
    const bool complete = ended_by && *ended_by == "after_elapsed" && lost == 0 && c.lookback_covered && !failed;
    json m = {
        {"id", c.id},
        {"status", status == "running" ? "running" : failed ? "failed" : complete ? "complete" : "incomplete"},
        {"ended_by", ended_by ? json(*ended_by) : json(nullptr)},
        {"trigger", c.req.trigger},
        {"rule", c.req.rule},
        {"anomaly_id", c.req.anomaly_id},
        {"reason", c.req.reason},
        {"created_at", c.created_at},
        {"ended_at", ended_by ? json(c.ended_at) : json(nullptr)},
        {"window", {{"start", ns_to_s(c.window_start_ns)}, {"trigger", ns_to_s(c.trigger_ns)}, {"end", ns_to_s(c.window_end_ns)}}},
        {"before_seconds", c.before},
        {"after_seconds", c.after},
        {"lookback",
         {{"requested_seconds", c.requested_before},
          {"covered_from", c.covered_from_ns ? json(ns_to_s(*c.covered_from_ns)) : json(nullptr)},
          {"watched", watched}}},
        {"filter", c.req.filter},
        {"snaplen", c.snaplen},
        {"max_packets", c.max_packets},
        {"max_bytes", c.pcap_base},
        {"pods", pods},
        {"packets", packets},
        {"bytes_written", c.bytes_written},
        {"packets_lost", lost},
        {"complete", complete},
        {"error", c.error.empty() ? json(nullptr) : json(c.error)},
        {"files",
         {{"pcap", status == "running" || failed ? json(nullptr) : json(kPcapName)},
          {"manifest", kManifestName},
          {"bundle", collect_bundle ? json(kBundleName) : json(nullptr)}}},
        {"bundle", c.bundle},
    };
    return m;
  }

  // --- writing (c.io_mu held) ----------------------------------------------------------------

  struct Written {
    std::vector<uint64_t> packets, bytes;
    uint64_t n = 0;
  };

  // Writes one packet unless a limit says stop; false once the capture must end.
  bool write_one(Capture& c, uint32_t pod, uint64_t ts_ns, uint8_t direction, uint32_t wire_len,
                 std::span<const uint8_t> data, Written& w) {
    if (!c.stop_reason.empty()) return false;
    PcapngWriter& wr = *c.writer;
    if (wr.packets() >= c.max_packets) {
      c.stop_reason = "max_packets";
      return false;
    }
    const uint32_t flags = direction ? PcapngWriter::kOutbound : PcapngWriter::kInbound;
    if (wr.bytes_written() + wr.packet_block_bytes(pod, data.size(), flags) > c.pcap_limit.load()) {
      c.stop_reason = "max_bytes";
      return false;
    }
    if (auto r = wr.write_packet(pod, ts_ns, data, wire_len, "", flags); !r) {
      c.stop_reason = "error";
      std::lock_guard lock(c.mu);
      c.error = r.error().message;
      return false;
    }
    ++w.packets[pod];
    w.bytes[pod] += wire_len;
    ++w.n;
    if (wr.packets() >= c.max_packets) c.stop_reason = "max_packets";
    return true;
  }

  // Makes the written counts visible (takes c.mu); the flush shows I/O errors now.
  void publish(Capture& c, Written& w, uint64_t* total) {
    if (c.writer && c.stop_reason != "error") {
      if (auto r = c.writer->flush(); !r) {
        c.stop_reason = "error";
        std::lock_guard lock(c.mu);
        c.error = r.error().message;
      }
    }
    std::lock_guard lock(c.mu);
    for (size_t i = 0; i < w.packets.size(); ++i) {
      c.packets[i] += w.packets[i];
      c.bytes[i] += w.bytes[i];
    }
    if (c.writer) c.bytes_written = c.writer->bytes_written();
    if (!c.stop_reason.empty()) {
      c.accepting = false;
      c.pending.clear();
      c.pending.shrink_to_fit();
    }
    if (total) *total += w.n;
  }

  // Writes the live packets queued for `c`.
  uint64_t drain(Capture& c) {
    // The queue and the spare swap places, so neither is reallocated once both are warm.
    std::vector<uint8_t> batch = std::move(c.spare);
    batch.clear();
    {
      std::lock_guard lock(c.mu);
      batch.swap(c.pending);
    }
    Written w{std::vector<uint64_t>(c.req.pods.size()), std::vector<uint64_t>(c.req.pods.size())};
    uint64_t total = 0;
    if (!c.writer) return 0;
    size_t off = 0;
    while (off + kPendingHeader <= batch.size()) {
      uint32_t pod, wire, len;
      uint64_t ts;
      std::memcpy(&pod, &batch[off], 4);
      const uint8_t dir = batch[off + 4];
      std::memcpy(&ts, &batch[off + 8], 8);
      std::memcpy(&wire, &batch[off + 16], 4);
      std::memcpy(&len, &batch[off + 20], 4);
      if (!write_one(c, pod, ts, dir, wire, {&batch[off + kPendingHeader], len}, w)) break;
      off += kPendingHeader + len;
    }
    publish(c, w, &total);
    batch.clear();
    if (c.stop_reason.empty()) c.spare = std::move(batch);
    return total;
  }

  // --- ending --------------------------------------------------------------------------------

  // Ends a capture that is Running (else does nothing); returns its final manifest for the
  // completion callback. Takes io_mu, then mu.
  std::optional<json> finalize(const CapturePtr& c, std::string ended_by) {
    {
      std::unique_lock lock(mu);
      if (c->state != State::Running) return std::nullopt;
      c->state = State::Ending;
      unlist_live(*c);
      // A bundle being collected writes into the directory: let it finish (bounded).
      state_cv.wait_for(lock, std::chrono::seconds(30), [&] { return !c->bundling; });
      if (c->bundle_pending) {
        c->bundle_pending = false;
        for (const auto& p : c->req.pods)
          c->bundle[p.namespace_ + "/" + p.name] = {{"files", json::array()},
                                                     {"errors", {"the capture ended before its bundle was collected"}}};
      }
    }
    std::unique_lock io(c->io_mu);
    uint64_t written = 0;
    if (ended_by != "error") written = drain(*c);
    if (c->stop_reason == "error") ended_by = "error";
    bool failed = ended_by == "error";
    if (!failed && c->writer) {
      if (auto r = c->writer->finish(); !r) {
        failed = true;
        ended_by = "error";
        std::lock_guard lock(c->mu);
        c->error = r.error().message;
      }
    }
    if (failed) {
      c->writer.reset();  // removes the partial pcapng: it would hold the full disk
      spdlog::error("capture {} failed: {}", c->id, c->error);
    }
    c->ended_at = ns_to_s(now_ns());
    json m;
    {
      std::lock_guard lock(c->mu);
      c->accepting = false;
      std::vector<uint8_t>().swap(c->pending);
      m = build_manifest(*c, failed ? "failed" : "ended", &ended_by);
    }
    c->writer.reset();
    std::vector<uint8_t>().swap(c->spare);
    if (auto e = write_atomically(c->dir + "/" + kManifestName, m.dump(2) + "\n", true); !e.empty())
      spdlog::error("capture {}: its manifest stays in memory only: {}", c->id, e);
    const uint64_t du = disk_usage(c->dir);
    io.unlock();
    {
      std::lock_guard lock(mu);
      c->ended_by = ended_by;
      c->final_manifest = m;
      c->disk_bytes = du;
      finished_disk += du;
      c->state = State::Done;
      counters.packets_written += written;
      counters.packets_lost += m.value("packets_lost", 0ull);
      if (failed) ++counters.failed;
      else ++counters.completed;
    }
    state_cv.notify_all();
    return m;
  }

  void unlist_live(Capture& c) {  // mu held
    for (const auto& p : c.req.pods) {
      auto it = live.find(p.ifindex);
      if (it == live.end()) continue;
      std::erase(it->second, &c);
      if (it->second.empty()) live.erase(it);
    }
  }

  // --- bundles -------------------------------------------------------------------------------

  void collect_bundles() {
    if (!collect_bundle) return;
    for (;;) {
      CapturePtr c;
      {
        std::lock_guard lock(mu);
        for (const auto& [_, x] : captures)
          if (x->state == State::Running && x->ready && x->bundle_pending) {
            c = x;
            break;
          }
        if (!c) return;
        c->bundle_pending = false;
        c->bundling = true;
      }
      json out = json::object();
      uint64_t bundle_du = 0;
      for (const auto& p : c->req.pods) {
        const std::string d = c->dir + "/" + kBundleName + "/" + safe_name(p.namespace_) + "_" + safe_name(p.name);
        json j;
        if (auto e = make_dirs(d); !e.empty()) {
          j = {{"files", json::array()}, {"errors", {"create " + e}}};
        } else {
          try {
            j = collect_bundle(p, d);
          } catch (const std::exception& e) {
            j = {{"files", json::array()}, {"errors", {std::string("bundle: ") + e.what()}}};
          }
        }
        out[p.namespace_ + "/" + p.name] = std::move(j);
      }
      bundle_du = disk_usage(c->dir + "/" + kBundleName);
      {
        std::lock_guard lock(mu);
        c->bundle = std::move(out);
        c->bundling = false;
        // The bundle's space beyond what was reserved for it comes off the pcapng's limit.
        const uint64_t allowed = kReservePerPod * c->req.pods.size();
        if (bundle_du > allowed) {
          const uint64_t over = bundle_du - allowed;
          c->pcap_limit = c->pcap_base > over ? c->pcap_base - over : 0;
        }
      }
      state_cv.notify_all();
    }
  }

  // --- loading what an earlier agent left ----------------------------------------------------

  void load_existing() {
    std::error_code ec;
    std::vector<CapturePtr> found;
    for (fs::directory_iterator it(config.dir, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string id = it->path().filename().string();
      if (!it->is_directory() || !valid_id(id)) continue;
      auto c = std::make_shared<Capture>();
      c->id = id;
      c->dir = it->path().string();
      c->state = State::Done;
      const std::string mpath = c->dir + "/" + kManifestName;
      ::unlink((mpath + ".tmp").c_str());
      json m;
      bool readable = false;
      {
        std::ifstream in(mpath);
        readable = static_cast<bool>(in);
        m = json::parse(in, nullptr, false);
      }
      bool rewrite = false;
      if (const std::string problem = m.is_discarded() ? "not JSON" : manifest_problem(m); !problem.empty()) {
        // Kept beside the new one, so that nothing the old file said is lost.
        std::string why = "manifest.json missing or unreadable after a restart";
        if (readable && ::rename(mpath.c_str(), (mpath + ".malformed").c_str()) == 0)
          why = "manifest.json unusable after a restart (" + problem + "), kept as manifest.json.malformed";
        spdlog::warn("captures: {}: {}", id, why);
        struct stat st {};
        ::stat(c->dir.c_str(), &st);
        m = {{"id", id},
             {"status", "incomplete"},
             {"ended_by", "agent_stop"},
             {"created_at", static_cast<double>(st.st_mtime)},
             {"complete", false},
             {"error", why},
             {"files", {{"pcap", nullptr}, {"manifest", kManifestName}, {"bundle", nullptr}}}};
        std::error_code pec;
        if (fs::is_regular_file(c->dir + "/" + kPcapName, pec)) m["files"]["pcap"] = kPcapName;
        rewrite = true;
      }
      m["id"] = id;
      if (m.value("status", "") == "running") {
        m["status"] = "incomplete";
        m["ended_by"] = "agent_stop";
        m["complete"] = false;
        if (m.value("error", json()).is_null()) m["error"] = "the agent stopped before the capture ended";
        rewrite = true;
      }
      const std::string pcap = c->dir + "/" + kPcapName;
      if (!fs::exists(pcap, ec) && fs::exists(pcap + ".part", ec)) {
        if (auto n = salvage_pcapng(pcap)) {
          m["packets"] = *n;
          if (m.contains("files")) m["files"]["pcap"] = kPcapName;
        } else {
          ::unlink((pcap + ".part").c_str());
        }
        rewrite = true;
      }
      if (rewrite) {
        if (auto e = write_atomically(mpath, m.dump(2) + "\n", true); !e.empty())
          spdlog::warn("captures: {}: {}", id, e);
        spdlog::info("captures: {} was running when the agent stopped: marked incomplete", id);
      }
      c->created_at = m.value("created_at", 0.0);
      c->final_manifest = m;
      c->disk_bytes = disk_usage(c->dir);
      found.push_back(c);
    }
    std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
      return a->created_at != b->created_at ? a->created_at < b->created_at : a->id < b->id;
    });
    for (auto& c : found) {
      c->seq = next_seq++;
      finished_disk += c->disk_bytes;
      captures[c->id] = c;
    }
  }

  std::string new_id(double now) {
    const time_t secs = static_cast<time_t>(now);
    struct tm tm {};
    gmtime_r(&secs, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
    for (;;) {
      char rnd[8];
      std::snprintf(rnd, sizeof rnd, "%06llx", static_cast<unsigned long long>(rng() & 0xFFFFFF));
      std::string id = std::string(buf) + "-" + rnd;
      if (!captures.count(id)) return id;
    }
  }

  // Nothing to drain, age or finish: no capture running and no lookback ring.
  bool idle() {
    std::lock_guard guard(mu);
    if (!rings.empty()) return false;
    for (const auto& [_, c] : captures)
      if (c->state == State::Running) return false;
    return true;
  }

  void run() {
    std::unique_lock lock(thread_mu);
    while (!stop) {
      lock.unlock();
      owner.poll();
      const bool quiet = idle();
      lock.lock();
      // Every 50 ms while there is work; otherwise until start() wakes it (a second at most): a
      // thread waking 20 times a second for nothing costs a busy node's requests a context
      // switch each time.
      thread_cv.wait_for(lock, std::chrono::milliseconds(quiet ? 1000 : 50), [&] { return stop || wake.load(); });
      wake = false;
    }
  }
};

// ---------------------------------------------------------------------------------------------

CaptureManager::CaptureManager(CaptureConfig config, CaptureCompleted on_completed, BundleCollector bundle)
    : config_(std::move(config)), impl_(std::make_unique<Impl>(*this, std::move(on_completed), std::move(bundle))) {
  if (config_.dir.empty()) {
    impl_->dir_error = "captures dir: not set";
  } else if (auto e = make_dirs(config_.dir); !e.empty()) {
    impl_->dir_error = "capture directory " + e;
    spdlog::warn("captures: {}: captures will be refused until it can be created", impl_->dir_error);
  } else {
    impl_->load_existing();
  }
  impl_->thread = std::thread([this] { impl_->run(); });
}

CaptureManager::~CaptureManager() {
  {
    std::lock_guard lock(impl_->thread_mu);
    impl_->stop = true;
  }
  impl_->thread_cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
  std::vector<Impl::CapturePtr> running;
  {
    std::lock_guard lock(impl_->mu);
    for (const auto& [_, c] : impl_->captures)
      if (c->state == Impl::State::Running) running.push_back(c);
  }
  std::lock_guard polling(impl_->poll_mu);
  for (const auto& c : running) {
    auto m = impl_->finalize(c, "agent_stop");
    if (m && impl_->on_completed) impl_->on_completed(*m);
  }
}

void CaptureManager::watch(const CapturePod& pod) {
  bool first_ring = false;
  {
    std::lock_guard lock(impl_->mu);
    first_ring = impl_->rings.empty();
    auto& w = impl_->rings[pod.ifindex];
    w.pod = pod;
    if (!w.ring) w.ring = std::make_unique<PacketRing>(now_ns(), impl_->chunk_bytes());
  }
  // The thread may be in its idle wait (a second at most): the rings are aged from now on.
  if (first_ring) impl_->wake_thread();
}

void CaptureManager::unwatch(uint32_t ifindex) {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->rings.find(ifindex);
  if (it == impl_->rings.end()) return;
  impl_->ring_bytes -= it->second.ring->memory_bytes();
  impl_->rings.erase(it);
}

bool CaptureManager::watched(uint32_t ifindex) const {
  std::lock_guard lock(impl_->mu);
  return impl_->rings.count(ifindex) > 0;
}

void CaptureManager::on_packet(uint32_t ifindex, uint64_t ts_ns, uint8_t direction, uint32_t wire_len,
                               std::span<const uint8_t> data) {
  std::lock_guard lock(impl_->mu);
  auto rit = impl_->rings.find(ifindex);
  if (rit != impl_->rings.end()) impl_->push_ring(rit->second, ts_ns, direction, wire_len, data);
  auto lit = impl_->live.find(ifindex);
  if (lit == impl_->live.end()) {
    if (rit == impl_->rings.end()) ++impl_->counters.unknown_interface;
    return;
  }
  for (Impl::Capture* c : lit->second) {
    if (ts_ns < c->window_start_ns || ts_ns > c->window_end_ns) continue;
    const auto kept = data.first(std::min<size_t>(data.size(), c->snaplen));
    if (!c->filter->match(wire_len, kept)) continue;
    uint32_t pod = 0;
    while (pod < c->req.pods.size() && c->req.pods[pod].ifindex != ifindex) ++pod;
    std::lock_guard cl(c->mu);
    if (!c->accepting) continue;
    if (c->pending.size() + kPendingHeader + kept.size() > kPendingMax) {
      ++c->lost[pod];  // the writer fell behind: a loss inside the window, said so in the manifest
      continue;
    }
    const size_t off = c->pending.size();
    c->pending.resize(off + kPendingHeader + kept.size());
    uint8_t* p = c->pending.data() + off;
    const uint32_t len = static_cast<uint32_t>(kept.size());
    std::memcpy(p, &pod, 4);
    p[4] = direction;
    std::memset(p + 5, 0, 3);
    std::memcpy(p + 8, &ts_ns, 8);
    std::memcpy(p + 16, &wire_len, 4);
    std::memcpy(p + 20, &len, 4);
    if (len) std::memcpy(p + kPendingHeader, kept.data(), len);
    if (c->pending.size() >= kPendingWake) impl_->wake_thread();
  }
}

void CaptureManager::on_lost(uint32_t ifindex, uint64_t ts_ns, uint64_t count) {
  std::lock_guard lock(impl_->mu);
  auto rit = impl_->rings.find(ifindex);
  if (rit != impl_->rings.end()) rit->second.ring->add_loss(ts_ns, count);
  auto lit = impl_->live.find(ifindex);
  if (lit == impl_->live.end()) return;
  for (Impl::Capture* c : lit->second) {
    if (ts_ns < c->window_start_ns || ts_ns > c->window_end_ns) continue;
    uint32_t pod = 0;
    while (pod < c->req.pods.size() && c->req.pods[pod].ifindex != ifindex) ++pod;
    std::lock_guard cl(c->mu);
    c->lost[pod] += count;
  }
}

CaptureStart CaptureManager::start(const CaptureRequest& request) {
  Impl& im = *impl_;
  auto refuse = [&](CaptureRefusal reason, const std::string& message) {
    {
      std::lock_guard lock(im.mu);
      ++im.counters.refused[to_string(reason)];
    }
    spdlog::info("capture refused ({}): {}", to_string(reason), message);
    return CaptureStart{"", CaptureRefused{reason, message}};
  };
  const uint64_t start_ns = now_ns();
  const double now = ns_to_s(start_ns);

  // --- The request on its own. ---
  if (request.pods.empty()) return refuse(CaptureRefusal::BadRequest, "pods: at least one pod is needed");
  std::set<uint32_t> seen;
  for (size_t i = 0; i < request.pods.size(); ++i) {
    const auto& p = request.pods[i];
    const std::string which = "pods[" + std::to_string(i) + "] (" + p.namespace_ + "/" + p.name + ")";
    if (p.name.empty()) return refuse(CaptureRefusal::BadRequest, "pods[" + std::to_string(i) + "]: no name");
    if (p.ifindex == 0) return refuse(CaptureRefusal::BadRequest, which + ": no interface index");
    if (!seen.insert(p.ifindex).second)
      return refuse(CaptureRefusal::BadRequest, which + ": interface index " + std::to_string(p.ifindex) + " given twice");
  }
  if (request.trigger != "rule" && request.trigger != "manual")
    return refuse(CaptureRefusal::BadRequest, "trigger: '" + request.trigger + "' is neither 'rule' nor 'manual'");
  if (request.trigger == "rule" && request.rule.empty())
    return refuse(CaptureRefusal::BadRequest, "rule: a capture with trigger 'rule' needs the rule's name");
  for (auto [name, v] : {std::pair{"before_seconds", request.before_seconds}, std::pair{"after_seconds", request.after_seconds},
                         std::pair{"trigger_time", request.trigger_time}})
    if (!std::isfinite(v)) return refuse(CaptureRefusal::BadRequest, std::string(name) + ": not a finite number");
  const double requested_before = request.before_seconds < 0 ? config_.default_before_seconds : request.before_seconds;
  const double before = std::min(requested_before, config_.lookback_seconds);
  const double after = request.after_seconds < 0 ? config_.default_after_seconds : request.after_seconds;
  if (before + after > config_.max_duration_seconds)
    return refuse(CaptureRefusal::BadRequest, "before_seconds + after_seconds = " + fmt_seconds(before + after) +
                                                  " s is more than max_duration_seconds (" +
                                                  fmt_seconds(config_.max_duration_seconds) + " s)");
  if (before <= 0 && after <= 0)
    return refuse(CaptureRefusal::BadRequest, "before_seconds and after_seconds are both 0: the window is empty");
  const double trigger = request.trigger_time > 0 ? request.trigger_time : now;
  if (trigger > now + kMaxFutureTrigger)
    return refuse(CaptureRefusal::BadRequest, "trigger_time: " + fmt_seconds(trigger) + " is more than " +
                                                  fmt_seconds(kMaxFutureTrigger) + " s in the future");
  const uint32_t snaplen = request.snaplen ? request.snaplen : config_.default_snaplen;
  if (snaplen < kMinSnaplen || snaplen > kMaxSnaplen)
    return refuse(CaptureRefusal::BadRequest, "snaplen: " + std::to_string(snaplen) + " is outside " +
                                                  std::to_string(kMinSnaplen) + " to " + std::to_string(kMaxSnaplen));
  auto filter = Filter::compile(request.filter, snaplen);
  if (!filter) return refuse(CaptureRefusal::BadRequest, "filter '" + request.filter + "': " + filter.error().message);

  auto c = std::make_shared<Impl::Capture>();
  c->req = request;
  c->req.trigger_time = trigger;
  c->requested_before = requested_before;
  c->before = before;
  c->after = after;
  c->snaplen = snaplen;
  c->max_packets = request.max_packets ? std::min(request.max_packets, config_.max_packets_per_capture)
                                       : config_.max_packets_per_capture;
  c->max_bytes = request.max_bytes ? std::min(request.max_bytes, config_.max_bytes_per_capture)
                                   : config_.max_bytes_per_capture;
  c->created_at = now;
  c->started = std::chrono::steady_clock::now();
  c->trigger_ns = s_to_ns(trigger);
  c->window_start_ns = c->trigger_ns - std::min(c->trigger_ns, s_to_ns(before));
  c->window_end_ns = c->trigger_ns + s_to_ns(after);
  c->filter = std::move(*filter);
  const size_t npods = request.pods.size();
  c->watched.assign(npods, false);
  c->lost.assign(npods, 0);
  c->packets.assign(npods, 0);
  c->bytes.assign(npods, 0);
  // The reservation: max_bytes and the directory's overhead; a quota smaller than that still
  // takes a capture, with a pcapng cut to what the quota holds.
  const uint64_t overhead = Impl::overhead_of(std::min(c->max_bytes, config_.disk_quota_bytes), npods);
  c->reservation = std::min(c->max_bytes + overhead, config_.disk_quota_bytes);
  if (c->reservation < overhead + 4096)
    return refuse(CaptureRefusal::Quota, "disk_quota_bytes (" + std::to_string(config_.disk_quota_bytes) +
                                             ") cannot hold one capture's directory (" + std::to_string(overhead + 4096) +
                                             " bytes at least)");
  c->pcap_base = std::min(c->max_bytes, c->reservation - overhead);
  c->pcap_limit = c->pcap_base;
  c->bundle_pending = static_cast<bool>(im.collect_bundle);

  // --- Against the node's limits; reserves the disk space. ---
  {
    std::unique_lock lock(im.mu);
    auto refused = [&](CaptureRefusal reason, const std::string& message) {
      ++im.counters.refused[to_string(reason)];
      lock.unlock();
      spdlog::info("capture refused ({}): {}", to_string(reason), message);
      return CaptureStart{"", CaptureRefused{reason, message}};
    };
    if (request.trigger == "rule") {
      auto& starts = im.rule_starts[request.rule];
      while (!starts.empty() && starts.front() <= now - 3600) starts.pop_front();
      if (starts.size() >= config_.max_per_rule_per_hour)
        return refused(CaptureRefusal::RuleBudget, "rule '" + request.rule + "': max_per_rule_per_hour (" +
                                                       std::to_string(config_.max_per_rule_per_hour) +
                                                       ") captures started in the last hour");
    }
    if (im.running_count() >= config_.max_concurrent)
      return refused(CaptureRefusal::Concurrency,
                     "max_concurrent (" + std::to_string(config_.max_concurrent) + ") captures are running");
    if (!im.dir_error.empty()) {
      // Tried again: the directory may have been fixed since.
      if (auto e = make_dirs(config_.dir); !e.empty()) return refused(CaptureRefusal::Storage, "capture directory " + e);
      im.dir_error.clear();
      im.load_existing();
    }
    const uint64_t reserved = im.reserved_running();
    if (reserved + c->reservation > config_.disk_quota_bytes)
      return refused(CaptureRefusal::Quota,
                     "disk_quota_bytes (" + std::to_string(config_.disk_quota_bytes) + ") cannot hold a capture of " +
                         std::to_string(c->reservation) + " bytes (max_bytes " + std::to_string(c->max_bytes) +
                         " and room for its manifest and bundle) next to " + std::to_string(reserved) +
                         " bytes reserved by running captures");
    while (im.finished_disk + reserved + c->reservation > config_.disk_quota_bytes)
      if (!im.delete_oldest_finished()) break;
    if (im.finished_disk + reserved + c->reservation > config_.disk_quota_bytes)
      return refused(CaptureRefusal::Quota, "disk_quota_bytes (" + std::to_string(config_.disk_quota_bytes) +
                                                ") cannot hold a capture of " + std::to_string(c->reservation) +
                                                " bytes even after deleting finished captures");
    c->id = im.new_id(now);
    c->seq = im.next_seq++;
    c->dir = config_.dir + "/" + c->id;
    im.captures[c->id] = c;
    if (request.trigger == "rule") im.rule_starts[request.rule].push_back(now);
  }
  // Undoes the reservation of a capture that could not start.
  auto storage_failure = [&](const std::string& message) {
    {
      std::lock_guard lock(im.mu);
      im.unlist_live(*c);
      im.captures.erase(c->id);
      c->state = Impl::State::Done;  // whoever still holds it leaves it alone
      if (request.trigger == "rule") {
        auto& starts = im.rule_starts[request.rule];
        if (!starts.empty()) starts.pop_back();
      }
    }
    c->writer.reset();
    std::error_code ec;
    fs::remove_all(c->dir, ec);
    return refuse(CaptureRefusal::Storage, message);
  };

  // --- Files. ---
  if (::mkdir(c->dir.c_str(), 0700) != 0) return storage_failure("create " + c->dir + ": " + errno_text(errno));
  std::string comment = "vigil capture " + c->id;
  if (!request.anomaly_id.empty()) comment += "; anomaly " + request.anomaly_id;
  if (!request.rule.empty()) comment += "; rule " + request.rule;
  if (!request.reason.empty()) comment += "; " + request.reason;
  std::unique_lock io(c->io_mu);
  auto writer = PcapngWriter::create(c->dir + "/" + kPcapName, comment);
  if (!writer) return storage_failure(writer.error().message);
  c->writer = std::move(*writer);
  for (const auto& p : request.pods) {
    auto id = c->writer->add_interface({p.name, p.namespace_ + "/" + p.name, 1, snaplen});
    if (!id) return storage_failure(id.error().message);
  }

  // --- The lookback, and from now on the live packets. ---
  // Under the lock: views of the rings' chunks (no copy) and the live registration, so no packet
  // is missed or written twice. Then, without it, a merge of the pods' packets by timestamp.
  std::vector<std::vector<PacketRing::View>> views(npods);
  {
    std::lock_guard lock(im.mu);
    bool covered = true;
    uint64_t covered_from = 0;
    for (size_t i = 0; i < npods; ++i) {
      auto it = im.rings.find(request.pods[i].ifindex);
      if (it == im.rings.end()) {
        covered = false;
        continue;
      }
      c->watched[i] = true;
      const PacketRing& r = *it->second.ring;
      covered_from = std::max(covered_from, r.covered_from_ns());
      c->lost[i] += r.lost_since(c->window_start_ns);
      r.views_since(c->window_start_ns, views[i]);
    }
    if (covered) c->covered_from_ns = covered_from;
    c->lookback_covered =
        before <= 0 || (covered && requested_before <= before && covered_from <= c->window_start_ns);
    for (const auto& p : request.pods) im.live[p.ifindex].push_back(c.get());
  }
  struct Cursor {
    size_t view = 0, off = 0;
    bool done = true;
    PacketRing::Packet p{};
  };
  std::vector<Cursor> cur(npods);
  // Moves a pod's cursor to its next packet inside the window.
  auto advance = [&](size_t i, bool first) {
    Cursor& k = cur[i];
    if (!first) k.off = PacketRing::View::next(k.p, k.off);
    for (;;) {
      if (k.view >= views[i].size()) {
        k.done = true;
        return;
      }
      const auto& v = views[i][k.view];
      if (first && k.off == 0) k.off = v.begin;
      if (k.off >= v.end) {
        ++k.view;
        k.off = k.view < views[i].size() ? views[i][k.view].begin : 0;
        continue;
      }
      k.p = v.at(k.off);
      if (k.p.ts_ns >= c->window_start_ns && k.p.ts_ns <= c->window_end_ns) {
        k.done = false;
        return;
      }
      k.off = PacketRing::View::next(k.p, k.off);
    }
  };
  for (size_t i = 0; i < npods; ++i) advance(i, true);
  Impl::Written w{std::vector<uint64_t>(npods), std::vector<uint64_t>(npods)};
  for (;;) {
    size_t best = npods;
    for (size_t i = 0; i < npods; ++i)
      if (!cur[i].done && (best == npods || cur[i].p.ts_ns < cur[best].p.ts_ns)) best = i;
    if (best == npods) break;
    const auto& p = cur[best].p;
    const auto d = p.data.first(std::min<size_t>(p.data.size(), snaplen));
    if (c->filter->match(p.wire_len, d) &&
        !im.write_one(*c, static_cast<uint32_t>(best), p.ts_ns, p.direction, p.wire_len, d, w))
      break;
    advance(best, false);
  }
  views.clear();
  uint64_t lookback_written = 0;
  im.publish(*c, w, &lookback_written);
  if (c->stop_reason == "error") {
    std::string e;
    {
      std::lock_guard lock(c->mu);
      e = c->error;
    }
    io.unlock();
    return storage_failure(e);
  }
  io.unlock();
  {
    std::lock_guard lock(im.mu);
    im.counters.packets_written += lookback_written;
  }

  json m;
  {
    std::lock_guard lock(c->mu);
    m = im.build_manifest(*c, "running", nullptr);
  }
  if (auto e = write_atomically(c->dir + "/" + kManifestName, m.dump(2) + "\n", false); !e.empty()) {
    std::unique_lock lock(c->io_mu);
    return storage_failure(e);
  }
  const uint64_t base_disk = disk_usage(c->dir);
  {
    std::lock_guard lock(im.mu);
    c->base_disk = base_disk;
    ++im.counters.started;
    c->ready = true;
  }
  spdlog::info("capture {} started ({} pods, {} s before, {} s after, {} packets from the lookback)", c->id, npods,
               before, after, lookback_written);
  im.wake_thread();
  return CaptureStart{c->id, std::nullopt};
}

void CaptureManager::poll() {
  Impl& im = *impl_;
  std::vector<json> ended;
  {
    std::lock_guard poll_lock(im.poll_mu);
    im.collect_bundles();
    const uint64_t now = now_ns();
    std::vector<Impl::CapturePtr> running;
    {
      std::lock_guard lock(im.mu);
      im.age_rings(now);
      for (const auto& [_, c] : im.captures)
        if (c->state == Impl::State::Running && c->ready) running.push_back(c);
    }
    for (const auto& c : running) {
      std::string reason;
      {
        std::lock_guard io(c->io_mu);
        const uint64_t n = im.drain(*c);
        {
          std::lock_guard lock(im.mu);
          im.counters.packets_written += n;
        }
        reason = c->stop_reason;
      }
      if (reason.empty() && now >= c->window_end_ns + s_to_ns(kLateGrace)) reason = "after_elapsed";
      if (reason.empty() &&
          std::chrono::steady_clock::now() - c->started >= std::chrono::duration<double>(config_.max_duration_seconds))
        reason = "max_duration";
      if (reason.empty()) continue;
      if (auto m = im.finalize(c, reason)) ended.push_back(std::move(*m));
    }
  }
  for (const auto& m : ended) {
    spdlog::info("capture {} {} ({}): {} packets, {} lost", m.value("id", ""), m.value("status", ""),
                 m.value("ended_by", ""), m.value("packets", 0ull), m.value("packets_lost", 0ull));
    if (im.on_completed) im.on_completed(m);
  }
}

nlohmann::json CaptureManager::list() const {
  std::lock_guard lock(impl_->mu);
  std::vector<const Impl::Capture*> all;
  for (const auto& [_, c] : impl_->captures) all.push_back(c.get());
  std::sort(all.begin(), all.end(), [](const auto* a, const auto* b) {
    return a->created_at != b->created_at ? a->created_at > b->created_at : a->seq > b->seq;
  });
  json out = json::array();
  for (const auto* c : all) out.push_back(impl_->manifest_of(*c));
  return out;
}

std::map<uint32_t, uint32_t> CaptureManager::capturing() const {
  std::lock_guard lock(impl_->mu);
  std::map<uint32_t, uint32_t> out;
  for (const auto& [_, c] : impl_->captures) {
    if (c->state != Impl::State::Running) continue;
    for (const auto& pod : c->req.pods) out[pod.ifindex] = std::max(out[pod.ifindex], c->snaplen);
  }
  return out;
}

std::optional<nlohmann::json> CaptureManager::manifest(const std::string& id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->captures.find(id);
  if (it == impl_->captures.end()) return std::nullopt;
  return impl_->manifest_of(*it->second);
}

std::optional<std::string> CaptureManager::pcap_path(const std::string& id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->captures.find(id);
  if (it == impl_->captures.end() || it->second->state != Impl::State::Done) return std::nullopt;
  const std::string path = it->second->dir + "/" + kPcapName;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  return path;
}

Result<void> CaptureManager::remove(const std::string& id) {
  Impl& im = *impl_;
  if (!valid_id(id)) return make_error("no capture '" + id + "'");
  Impl::CapturePtr c;
  bool was_running = false;
  {
    std::unique_lock lock(im.mu);
    auto it = im.captures.find(id);
    if (it == im.captures.end()) return make_error("no capture '" + id + "'");
    c = it->second;
    if (c->state == Impl::State::Ending) {
      im.state_cv.wait_for(lock, std::chrono::seconds(60), [&] { return c->state == Impl::State::Done; });
      if (c->state != Impl::State::Done) return make_error("capture '" + id + "' is still ending; try again");
    }
    if (c->state == Impl::State::Running) {
      was_running = true;
      c->state = Impl::State::Ending;
      c->ended_by = "removed";
      im.unlist_live(*c);
      im.state_cv.wait_for(lock, std::chrono::seconds(30), [&] { return !c->bundling; });
      c->bundle_pending = false;
    }
  }
  if (was_running) {
    std::lock_guard io(c->io_mu);
    c->writer.reset();
  }
  std::error_code ec;
  fs::remove_all(c->dir, ec);
  std::lock_guard lock(im.mu);
  if (!was_running) im.finished_disk -= std::min(im.finished_disk, c->disk_bytes);
  if (ec) {
    // Keep it listed (and counted against the quota) for what is left of it.
    c->state = Impl::State::Done;
    c->disk_bytes = disk_usage(c->dir);
    im.finished_disk += c->disk_bytes;
    if (!c->final_manifest) {
      std::lock_guard cl(c->mu);
      const std::string removed = "removed";
      c->final_manifest = im.build_manifest(*c, "ended", &removed);
    }
    im.state_cv.notify_all();
    return make_error("delete capture " + c->dir + ": " + ec.message());
  }
  im.captures.erase(id);
  im.state_cv.notify_all();
  spdlog::info("capture {} deleted{}", id, was_running ? " (it was running)" : "");
  return {};
}

CaptureStats CaptureManager::stats() const {
  std::lock_guard lock(impl_->mu);
  CaptureStats s = impl_->counters;
  s.running = impl_->running_count();
  s.disk_bytes = impl_->finished_disk;
  for (const auto& [_, c] : impl_->captures) {
    if (c->state == Impl::State::Done) continue;
    std::lock_guard cl(c->mu);
    s.disk_bytes += c->base_disk + c->bytes_written;
    for (uint64_t l : c->lost) s.packets_lost += l;
  }
  s.lookback_pods = impl_->rings.size();
  s.lookback_bytes = impl_->ring_bytes;
  s.lookback_packets = 0;
  for (const auto& [_, w] : impl_->rings) s.lookback_packets += w.ring->packets();
  return s;
}

}  // namespace vigil::actions
