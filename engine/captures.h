// The agent's side of captures: decides which pods the kernel copies packets of (lookback for
// the pods rules or config want, plus the pods of running captures), resolves pod names for
// rules and the API, serves /api/v1/captures and exports the capture metrics. The capture
// files themselves are actions::CaptureManager's; the kernel's ring buffer is CaptureSource's.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "actions/capture.h"
#include "engine/config.h"
#include "engine/datapath.h"
#include "engine/http_server.h"
#include "engine/pod_manager.h"
#include "engine/series_store.h"
#include "rules/core/anomaly.h"

namespace vigil {

class CaptureSource;

// A POST /api/v1/captures body, checked (bad input gets an error naming the field): the pods
// by name, or a namespace and labels for the agent to match, and the capture's options.
struct CaptureRequest {
  CaptureSpec spec;  // pods named, options; before/after -1 and zero counts: the defaults
  std::string namespace_;
  std::map<std::string, std::string> labels;
};
Result<CaptureRequest> parse_capture_request(const std::string& body);

class Captures {
 public:
  // `on_completed` gets each finished capture's manifest (on the manager's thread).
  static Result<std::unique_ptr<Captures>> create(const Config& config, Datapath& datapath,
                                                  actions::CaptureCompleted on_completed = {});
  ~Captures();

  // Tick thread, after the pods and the rules have run: `rule_pods` ("namespace/name") are the
  // pods rules with a `capture` option watch. Pods without packet-level programs get them
  // while they are captured (PodManager::hold_programs).
  void sync(PodManager& pods, const std::set<std::string>& rule_pods);

  // Tick thread (rules) or HTTP threads (API): starts a capture of pods by name.
  Result<std::string> start(const CaptureSpec& spec, const std::string& trigger);

  ApiResponse api(const ApiRequest& request);  // HTTP threads

  static void describe(SeriesStore& store);
  void export_metrics(SeriesStore& store);

  actions::CaptureManager& manager() { return *manager_; }

 private:
  Captures(const Config& config, Datapath& datapath);
  struct Launch {
    std::string id;
    std::optional<actions::CaptureRefusal> refusal;
    std::string error;
  };
  // Resolves the pods by name and starts; refusals are logged and counted.
  Launch launch(const CaptureSpec& spec, const std::string& trigger);
  ApiResponse start_from_api(const std::string& body);
  void refuse(const std::string& reason, const std::string& message);

  struct KnownPod {
    actions::CapturePod pod;
    std::map<std::string, std::string> labels;
    uint32_t netns_inode = 0;
  };

  CapturesConfig config_;
  Datapath& datapath_;
  std::unique_ptr<actions::CaptureManager> manager_;
  std::unique_ptr<CaptureSource> source_;
  std::map<uint32_t, uint32_t> enabled_;  // ifindex -> snaplen the kernel copies (tick thread)

  mutable std::mutex mu_;
  std::map<std::string, KnownPod> pods_;        // attached pods by namespace/name (published by sync)
  std::map<std::string, uint64_t> refused_;     // refusals decided here, before the manager (unknown pods, ...)
};

}  // namespace vigil
