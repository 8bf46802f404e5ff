// Captures: per-pod packet captures with lookback, written as pcapng with a JSON manifest.
//
// Packets come from the kernel's lookback program (engine/capture_source.h) through
// on_packet()/on_lost(), keyed by the pod's host-side ifindex. For every watched pod the
// manager keeps a bounded ring of recent packets (the flight recorder); start() writes the
// part of that ring inside the `before` window at once, then appends live packets of the
// capture's pods until `after` has passed or a limit ends it. Every capture lives in its own
// directory under CaptureConfig::dir:
//
//   <dir>/<id>/capture.pcapng   one interface block per pod (if_name = pod name,
//                               if_description = namespace/pod), nanosecond timestamps,
//                               the anomaly id and rule in the section comment
//   <dir>/<id>/manifest.json    anomaly, scope, window, filter, counts, losses, how it ended
//   <dir>/<id>/bundle/<namespace>_<pod>/...   addresses, routes, neighbours, sockets and
//                               nftables rules from inside the pod's namespace
//
// Directories are 0700 and files 0600: captures hold payload. Nothing here blocks the
// caller for long: start() validates and writes the lookback, the rest happens on the
// manager's own thread. Thread-safe: the source thread, the tick thread and HTTP threads
// call in concurrently.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "rules/core/result.h"

namespace vigil::actions {

struct CaptureConfig {
  std::string dir;                                  // agent default: <state_dir>/captures
  // Every capture directory together, as du counts it. A capture reserves max_bytes plus its
  // directory's overhead (20 KiB + 4 KiB a pod + max_bytes/256) while it runs; the oldest
  // finished captures are deleted to make room, else it is refused (Quota).
  uint64_t disk_quota_bytes = 1ull << 30;
  uint32_t max_concurrent = 4;                      // running captures per node
  double max_duration_seconds = 300;                // before + after of one capture
  uint64_t max_bytes_per_capture = 64ull << 20;     // pcapng size of one capture
  uint64_t max_packets_per_capture = 1000000;
  uint32_t max_per_rule_per_hour = 10;              // captures one rule may start per rolling hour
  double default_before_seconds = 10;
  double default_after_seconds = 30;
  uint32_t default_snaplen = 128;                   // bytes kept of each packet
  // Lookback (flight recorder) memory: per watched pod and for the node. A pod's ring keeps at
  // most lookback_seconds of packets and at most lookback_bytes_per_pod bytes (oldest evicted);
  // when all rings together would exceed lookback_bytes_total, the largest ring gives way.
  double lookback_seconds = 30;
  uint64_t lookback_bytes_per_pod = 4ull << 20;
  uint64_t lookback_bytes_total = 64ull << 20;
};

// A pod a capture can cover, as the engine knows it.
struct CapturePod {
  uint32_t ifindex = 0;  // host-side veth: the key of on_packet()
  std::string namespace_;
  std::string name;
  std::string interface;           // host-side interface name
  std::vector<std::string> ips;
  std::string netns_path;          // for the bundle: e.g. /run/netns/pod-a or /proc/<pid>/ns/net
};

// What start() accepts (anything else is refused BadRequest, the message naming the field):
// - pods: at least one, each with a name and a distinct non-zero ifindex. A pod without a
//   lookback ring can be captured: live packets only, and the manifest says its lookback is
//   missing (lookback.watched false, complete false when before > 0).
// - before/after: finite; negative means the config default. `before` above lookback_seconds is
//   cut to it (the manifest keeps lookback.requested_seconds, and such a capture is never
//   complete); then before + after must be at most max_duration_seconds (else refused, naming
//   the cap: nothing is shortened silently), and not both 0.
// - The window is [trigger_time - before, trigger_time + after]; trigger_time may be in the past
//   (a rule's anomaly a moment ago), at most 60 s in the future. The capture ends 0.25 s after
//   the window (packets reach the manager shortly after their timestamp), or earlier by a
//   limit, remove() or the agent stopping; it also ends after max_duration_seconds of wall time.
// - snaplen 16 to 262144; the filter must compile (libpcap, Ethernet link type).
// - max_packets / max_bytes above the config caps are lowered to them. The pcapng stays at or
//   below max_bytes (the manifest's max_bytes is the limit applied: lower when the quota is
//   smaller than one capture).
struct CaptureRequest {
  std::vector<CapturePod> pods;  // resolved by the caller; at least one
  double before_seconds = -1;    // < 0: config default; capped by lookback_seconds
  double after_seconds = -1;     // < 0: config default
  std::string filter;            // pcap filter expression; "" = every packet
  uint32_t snaplen = 0;          // 0: config default
  uint64_t max_packets = 0;      // 0: config cap; never above it
  uint64_t max_bytes = 0;        // 0: config cap; never above it (the pcapng's size)
  std::string trigger = "manual";  // "rule" or "manual"
  std::string rule;                // for trigger "rule": the per-rule budget applies
  std::string anomaly_id;
  std::string reason;              // the anomaly's summary, or a person's note
  double trigger_time = 0;         // unix seconds; 0 = now
};

// Why a capture was refused (the metric label vigil_captures_refused_total{reason}).
enum class CaptureRefusal {
  BadRequest,   // invalid filter, no pods, bad numbers
  UnknownPod,   // a pod the agent does not watch (the engine resolves names)
  Concurrency,  // max_concurrent running
  Quota,        // the disk quota cannot hold another capture, even after retention
  RuleBudget,   // max_per_rule_per_hour reached
  Storage,      // the capture directory cannot be created or written
};
const char* to_string(CaptureRefusal r);

struct CaptureRefused {
  CaptureRefusal reason;
  std::string message;  // names the field or path: "filter 'tcp prot 80': syntax error"
};

// Either a capture id or why it was refused.
struct CaptureStart {
  std::string id;
  std::optional<CaptureRefused> refused;
  bool ok() const { return !refused.has_value(); }
};

struct CaptureStats {
  uint64_t started = 0;
  uint64_t completed = 0;  // ended and finished writing (complete or not; agent_stop included)
  uint64_t failed = 0;     // ended by an I/O error (full disk, ...); removed while running: neither
  std::map<std::string, uint64_t> refused;  // by to_string(CaptureRefusal)
  uint64_t running = 0;
  uint64_t packets_written = 0;
  uint64_t packets_lost = 0;      // losses inside capture windows (kernel ring full, ...)
  uint64_t disk_bytes = 0;        // every capture directory together
  uint64_t lookback_pods = 0;     // watched pods
  uint64_t lookback_bytes = 0;    // memory held by every lookback ring
  uint64_t lookback_packets = 0;  // packets held by every lookback ring
  uint64_t lookback_evicted = 0;  // packets pushed out of a ring by its limits (not a loss)
  uint64_t unknown_interface = 0; // packets of an interface no pod is watched on (dropped)
};

// What the manager tells the agent when a capture has ended and its files are final (not for a
// capture removed while running). Called with no lock held, on the thread that ended it (the
// manager's, a test's poll(), or the destructor's).
using CaptureCompleted = std::function<void(const nlohmann::json& manifest)>;
// Writes the pod's bundle (addresses, routes, ...) into `dir` (created, 0700) and returns what
// it wrote or failed to, for the manifest: {"files": [...], "errors": [...]}. The engine's
// implementation enters the pod's network namespace (engine/bundle.h). Runs on the manager's
// thread, right after start(), so the bundle shows the pod as it was at the trigger.
using BundleCollector = std::function<nlohmann::json(const CapturePod& pod, const std::string& dir)>;

class CaptureManager {
 public:
  // Creates `config.dir` (0700) if needed; an unusable directory is not fatal here (start()
  // refuses with Storage and says why), so the agent runs without captures.
  explicit CaptureManager(CaptureConfig config, CaptureCompleted on_completed = {}, BundleCollector bundle = {});
  ~CaptureManager();  // ends running captures (ended_by "agent_stop") and finishes their files
  CaptureManager(const CaptureManager&) = delete;
  CaptureManager& operator=(const CaptureManager&) = delete;

  // The pods whose packets are kept in a lookback ring. watch() of a watched pod updates its
  // metadata; unwatch() frees its ring (running captures of it keep what they wrote).
  void watch(const CapturePod& pod);
  void unwatch(uint32_t ifindex);
  bool watched(uint32_t ifindex) const;

  // From the source thread. `data` is what the kernel copied (at most its snaplen),
  // `wire_len` the packet's length, `ts_ns` unix nanoseconds, direction from the pod's point of
  // view (0 ingress, 1 egress).
  void on_packet(uint32_t ifindex, uint64_t ts_ns, uint8_t direction, uint32_t wire_len,
                 std::span<const uint8_t> data);
  // `count` packets of the pod were not delivered by the kernel (its ring was full) at about
  // `ts_ns`. They count as lost in the lookback window and in running captures of the pod.
  void on_lost(uint32_t ifindex, uint64_t ts_ns, uint64_t count);

  // Checks the request (see CaptureRequest), then the per-rule budget (trigger "rule"),
  // max_concurrent, the directory and the quota, in that order; creates <dir>/<id>, writes the
  // lookback of the window (filtered, in timestamp order across pods) and the "running"
  // manifest, and returns. Every refusal is counted in stats().refused.
  CaptureStart start(const CaptureRequest& request);

  // The API: every capture (running and finished) as manifests, newest first; one manifest;
  // the pcapng's path once the capture has ended; remove (a running one is stopped first).
  nlohmann::json list() const;
  std::optional<nlohmann::json> manifest(const std::string& id) const;
  std::optional<std::string> pcap_path(const std::string& id) const;
  Result<void> remove(const std::string& id);

  // The pods of running captures, by host ifindex, with the largest snaplen one of them asked
  // for: what the kernel must copy whatever the lookback says. Cheap; the agent asks every tick.
  std::map<uint32_t, uint32_t> capturing() const;

  CaptureStats stats() const;
  const CaptureConfig& config() const { return config_; }

  // Ends captures whose time is up; the manager's thread calls it, tests may too.
  void poll();

 private:
  struct Impl;
  CaptureConfig config_;
  std::unique_ptr<Impl> impl_;
};

// Checks a pcap filter expression (tcpdump syntax) without capturing: "" when valid, else
// libpcap's message.
std::string check_capture_filter(const std::string& filter, uint32_t snaplen);

}  // namespace vigil::actions
