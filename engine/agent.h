// The agent: one tick thread that reads the kernel's maps into series, runs the rules and
// publishes state for the HTTP thread; notifiers deliver on their own threads.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <set>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <sys/stat.h>

#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "actions/notifier.h"
#include "engine/captures.h"
#include "engine/config.h"
#include "engine/datapath.h"
#include "engine/families/family.h"
#include "engine/families/retina.h"
#include "engine/http_server.h"
#include "engine/kube/kube_pods.h"
#include "engine/pod_manager.h"
#include "engine/series_store.h"
#include "engine/tracepoint_audit.h"
#include "rules/runtime/engine.h"

namespace vigil {

// Declares every series the agent exports: the families', the captures' (when on), the
// Kubernetes source's (when it is the pod source) and the agent's own.
void describe_agent_series(SeriesStore& s, const std::vector<std::unique_ptr<Family>>& families, bool captures, bool kube);

// One warning for each series a loaded rule watches that the agent never exports, whatever its
// config ("file:line: rule 'r': metric 'vigil_drops_total' is not a series ... (did you mean
// 'vigil_drop_packets_total'?)"): such a rule never sees a value and never fires.
// metrics.netstat.statistics that this kernel does not have, each with its line (agent start).
Result<void> check_netstat_statistics(const Config& config);

std::vector<std::string> unknown_metric_warnings(const std::vector<rules::RuleStatus>& rules);

// The options the agent loads its rules with: the config's node, tick and rule_limits, its
// notifiers' names as the channels notify() may name, and capture filters compiled with
// libpcap. The agent, `vigil rules check --config` and `vigil config check` share them, so that
// a file the checks accept is one the agent loads.
rules::EngineOptions rule_engine_options(const Config& config);

// Where rules send anomalies and capture requests: notifications to the dispatcher, captures
// to the agent's Captures (refused while captures are disabled). It remembers which channels
// were told of an episode with captures, so that when one of those captures ends the same
// channels get the follow-up (event "capture.completed").
class AgentSink : public ActionSink {
 public:
  explicit AgentSink(actions::Dispatcher& dispatcher) : dispatcher_(dispatcher) {}
  void notify(const std::string& channel, const Anomaly& anomaly) override;
  Result<std::string> capture(const CaptureSpec& spec) override {
    if (!captures_) return make_error("captures are disabled (captures.enabled: false)");
    return captures_->start(spec, "rule");
  }
  void set_captures(Captures* captures) { captures_ = captures; }
  // From the capture manager's thread, with the finished capture's manifest.
  void capture_completed(const nlohmann::json& manifest);

 private:
  void send_follow_up(Anomaly a, const std::set<std::string>& channels, const nlohmann::json& manifest);

  actions::Dispatcher& dispatcher_;
  Captures* captures_ = nullptr;
  struct Episode {
    Anomaly anomaly;  // as last notified
    std::set<std::string> channels;
  };
  static constexpr size_t kMaxRemembered = 1024;  // oldest forgotten first
  std::mutex mu_;
  std::map<std::string, Episode> waiting_;            // capture id -> the episode notified of it
  std::map<std::string, nlohmann::json> finished_;    // captures that ended before any notify named them
  std::deque<std::string> waiting_order_, finished_order_;
};

class Agent {
 public:
  // Loads everything the config names; any failure is returned before anything runs, so the
  // agent never starts half-configured.
  static Result<std::unique_ptr<Agent>> create(const Config& config);
  ~Agent();

  // Runs ticks until stop() is called.
  void run();
  void stop();
  // SIGHUP: the pods file and the rule files are read again.
  void request_reload() {
    reload_requested_ = true;
    rules_reload_requested_ = true;
  }

  std::string listen_address() const;

 private:
  explicit Agent(Config config);
  void tick();
  void load_pods_if_changed();
  void apply_pods(const std::vector<PodSpec>& specs);
  void prepare_state_dir();
  void save_rule_state();
  void reload_rules_if_changed();
  void expire_series();
  void drop_packet_level_series();
  void read_datapath();
  void export_self_metrics(std::chrono::steady_clock::duration tick_time);
  void publish_state();
  std::string render_metrics() const;

  Config config_;
  std::unique_ptr<Datapath> datapath_;
  std::unique_ptr<PodManager> pods_;
  std::unique_ptr<TracepointAudit> tracepoint_audit_;  // metrics.tracepoint_audit
  std::unique_ptr<kube::KubePods> kube_;  // pods.source: kubernetes
  std::shared_ptr<const kube::PeerDirectory> peers_;  // remote peers the API server names
  uint64_t kube_generation_ = 0;          // of the snapshot whose pods are applied
  std::map<std::string, std::pair<std::string, std::string>> workloads_;  // namespace/name -> kind, name
  SeriesStore store_;
  std::vector<std::unique_ptr<Family>> families_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Histogram* tick_histogram_ = nullptr;
  actions::Dispatcher dispatcher_;
  AgentSink sink_{dispatcher_};
  std::unique_ptr<Captures> captures_;  // null when captures.enabled is false
  std::unique_ptr<rules::RuleEngine> rules_;
  // Which engine the rules' counters (vigil_anomalies_total, vigil_rule_errors_total) come from:
  // each reload's engine counts from 0, and the series go on from their values.
  uint64_t rules_epoch_ = 1;
  std::unique_ptr<HttpServer> http_;

  struct FileStamp {
    ino_t inode = 0;
    off_t size = -1;
    time_t mtime_sec = 0;
    long mtime_nsec = 0;
    bool operator==(const FileStamp&) const = default;
  };
  FileStamp pods_seen_;                     // as stat() saw the pods file last tick
  std::optional<FileStamp> pods_applied_;   // the version whose pods are applied
  bool pods_file_missing_ = false;
  std::vector<PodSpec> netns_pods_;
  struct ExpiringSeries {
    std::chrono::steady_clock::time_point deadline;
    PodSpec spec;  // the gone pod's: its labels and workload name its series
  };
  std::map<std::pair<std::string, std::string>, ExpiringSeries> expiring_series_;
  // Pods (namespace, name) attached with the packet-level programs since their series last went.
  std::set<std::pair<std::string, std::string>> packet_level_pods_;
  // Rule state persists in <state_dir>/baselines.bin (empty when state_dir is unusable).
  static constexpr std::chrono::seconds kStateSaveInterval{30};
  std::string state_file_;
  std::chrono::steady_clock::time_point next_state_save_{};
  rules::EngineOptions rule_options_;
  std::vector<std::string> rule_files_seen_;     // the rule patterns' files last tick
  std::vector<std::string> rule_files_applied_;  // the files the running rules were loaded from
  std::vector<FileStamp> rules_seen_;     // as stat() saw the rule files last tick
  std::vector<FileStamp> rules_applied_;  // the versions the running rules were loaded from
  std::string rule_files_error_;          // the patterns' last expansion error, said once
  std::atomic<bool> rules_reload_requested_{false};
  std::atomic<bool> reload_requested_{false};
  std::atomic<bool> stopping_{false};
  std::mutex wake_mu_;
  std::condition_variable wake_;

  // Published by the tick thread for the HTTP thread.
  mutable std::mutex published_mu_;
  std::string pods_json_ = "[]";
  std::string rules_json_ = "[]";
  std::string anomalies_json_ = "[]";
  RetinaPods retina_pods_;
  mutable RetinaView retina_view_;  // under published_mu_
  std::chrono::steady_clock::time_point last_tick_{};
};

}  // namespace vigil
