// An anomaly is what a rule emits; actions (notifiers, captures) subscribe to it.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <cstdint>

#include "rules/core/result.h"
#include "rules/core/series.h"

namespace vigil {

enum class AnomalyStatus { Firing, Resolved };

struct Anomaly {
  std::string id;  // stable for one episode: the resolve carries the firing's id
  AnomalyStatus status = AnomalyStatus::Firing;
  std::string rule;
  std::string severity;  // info | warning | critical
  std::string summary;
  double started_at = 0;  // unix seconds
  double ended_at = 0;    // unix seconds, set when resolved
  std::string node;
  Labels scope;                               // the rule's `by` labels for this group
  std::map<std::string, std::string> pod_labels;  // labels of the pod in scope, when known
  std::string metric;                         // metric name the rule watches
  Labels metric_labels;                       // `where` matchers plus the group labels
  double value = 0;                           // observed value (per-second rate for counters)
  double baseline = 0;                        // expected value
  double score = 0;                           // detector score (z-score for baseline.zscore)
  std::string detector;                       // e.g. "baseline.zscore"
  // The explanation: values in [band_low, band_high] were normal when the anomaly was judged
  // (an unwatched side is -inf or +inf), and the detector's parameters with defaults filled in.
  double band_low = 0;
  double band_high = 0;
  std::string detector_params;  // e.g. "half_life=10m threshold=4 direction=up ..."
  // The last minutes of the series up to the judged value (the last one): each point the mean
  // of `recent_step` seconds of ticks, oldest first. For sparklines and "what led up to it".
  std::vector<double> recent;
  double recent_step = 0;
  // Captures started for this episode (by the rule's `capture` option or capture{} in a
  // handler), so notifications can link to them: ids as the capture API knows them.
  std::vector<std::string> captures;

  // What this notification is about: "" for the anomaly's own firing/resolved notifications,
  // "capture.completed" for the follow-up the agent sends to the channels it notified of this
  // episode once one of its captures has ended (the rest of the Anomaly is the episode as it
  // is then: same id, current status). docs/webhook.md shows how each notifier type sends it.
  std::string event;
  // Only for event "capture.completed": the capture that ended, from its manifest.
  struct CaptureDone {
    std::string id;
    std::string status;    // complete | incomplete | failed
    std::string ended_by;  // after_elapsed | max_packets | max_bytes | error | agent_stop | removed
    std::string error;     // why it failed; "" otherwise
    bool complete = false;
    uint64_t packets = 0, packets_lost = 0, bytes = 0;  // bytes: size of the pcapng
    double window_start = 0, window_end = 0;            // unix seconds the capture covers
  };
  CaptureDone capture_done;
};

// Anomaly::event of the follow-up sent when a capture of the episode has ended.
inline constexpr const char* kEventCaptureCompleted = "capture.completed";

// A packet capture a rule asks for (`capture = {...}` on the rule, or capture{} in a handler).
// Pods are "namespace/name"; the agent resolves them. Zero/empty fields take the agent's
// defaults (docs/config.md, `captures:`).
struct CaptureSpec {
  std::vector<std::string> pods;
  double before_seconds = -1;  // -1: default
  double after_seconds = -1;   // -1: default
  std::string filter;          // pcap filter expression (tcpdump syntax); "" = every packet
  uint32_t snaplen = 0;
  uint64_t max_packets = 0;
  uint64_t max_bytes = 0;
  std::string rule;        // set by the rule engine
  std::string anomaly_id;  // set by the rule engine
  std::string reason;      // the anomaly's summary, or why a person started it
};

const char* to_string(AnomalyStatus s);

// Where rules send anomalies. Implemented by the agent, which routes to the actions library.
class ActionSink {
 public:
  virtual ~ActionSink() = default;
  virtual void notify(const std::string& channel, const Anomaly& anomaly) = 0;
  // Starts a capture; its id, or why it was refused. Sinks without captures refuse.
  virtual Result<std::string> capture(const CaptureSpec&) {
    return make_error("captures are not available here");
  }
};

}  // namespace vigil
