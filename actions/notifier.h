// Notifiers deliver anomalies to channels configured under `notifiers:`. Delivery happens on
// the notifier's own thread: enqueue() never blocks the tick.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "rules/core/anomaly.h"
#include "rules/core/result.h"

namespace vigil::actions {

// One entry of `notifiers:` (docs/config.md). Everything after `type` is for the HTTP types
// (webhook, slack, pagerduty, alertmanager); find_config_problem says which type takes what.
struct NotifierConfig {
  std::string name;  // channel name used by rules; [a-z0-9_-]+
  std::string type;  // "webhook" | "slack" | "pagerduty" | "alertmanager" | "log"

  // Where to send. Secrets may come from a file or an environment variable instead
  // (`url_file`, `url_env`): load_secrets() reads them into `url` and friends; the *_file and
  // *_env fields only say where they came from. Secret values are never logged.
  std::string url;                // webhook, slack, pagerduty (has a default)
  std::string url_file, url_env;  // the same, read from a file or the environment
  std::vector<std::string> urls;  // alertmanager: every Alertmanager of an HA cluster
  std::map<std::string, std::string> headers;  // extra request headers (values never logged)
  std::string ca_file;                         // https: verify the receiver against this CA bundle

  // webhook
  std::string secret, secret_file, secret_env;            // HMAC-SHA256 key for the signature header
  std::string signature_header = "X-Vigil-Signature";      // "sha256=<hex of HMAC(body)>"
  std::string body_template;                               // `template`: JSON with {{field.path}} placeholders

  // pagerduty
  std::string routing_key, routing_key_file, routing_key_env;

  // A link to the agent's own API, e.g. http://node-1:9965: slack, pagerduty and alertmanager
  // link to its rules; every type links to the anomaly's captures.
  std::string agent_url;

  // alertmanager: firing alerts are sent again at this interval (below resolve_timeout)
  double resend_interval_seconds = 60;

  // delivery
  double timeout_seconds = 5;            // connect, read and write timeout per attempt
  int max_attempts = 0;                  // attempts per notification before it is dropped; 0 = no limit
  double backoff_initial_seconds = 0.5;  // delay before the first retry; doubles after
  double backoff_max_seconds = 30;       // cap on the delay between attempts
  size_t queue_limit = 10000;            // waiting notifications; oldest dropped beyond

  // flood control
  double group_wait_seconds = -1;        // slack: gather anomalies starting together on a node; -1 = type default
  double suppress_repeats_seconds = 0;   // drop a new episode of the same rule and scope within this; 0 = off
  int rate_limit = 0;                    // firing notifications per rate_limit_period; 0 = no limit
  double rate_limit_period_seconds = 60;

  // Durable outbox directory (the agent sets <state_dir>/outbox/<name>); "" keeps the queue
  // in memory only.
  std::string outbox_dir;
};


// The first problem found in a NotifierConfig. `field` is the YAML key as written in the
// config file ("url", "backoff_max", "headers.X-Token"), so the config parser can point at
// the offending line.
struct NotifierConfigProblem {
  std::string field;
  std::string message;
};
std::optional<NotifierConfigProblem> find_config_problem(const NotifierConfig& config);

// Reads `url_file`/`url_env`, `secret_file`/`secret_env` and `routing_key_file`/
// `routing_key_env` into url, secret and routing_key (a trailing newline is dropped). The
// error names the field ("url_file: cannot read /x: No such file or directory") and never a
// secret's value.
std::optional<NotifierConfigProblem> load_secrets(NotifierConfig& config);

// Keys of a `notifiers:` entry with the types that take each (space-separated; "" = all), and
// "" when `type` takes `key`, else the types that do ("webhook, slack"), for config errors.
const std::vector<std::pair<std::string, std::string>>& notifier_config_keys();
std::string types_taking(const std::string& key, const std::string& type);

struct NotifierStats {
  uint64_t sent = 0;
  uint64_t failed = 0;       // attempts that failed (each retry counts)
  uint64_t retried = 0;      // attempts after the first
  uint64_t dropped = 0;      // given up after max_attempts, queue overflow or stop()
  uint64_t queue_depth = 0;  // waiting, not counting the one being delivered
  uint64_t suppressed = 0;   // held back by flood control (repeats, rate limit)
  uint64_t tls_errors = 0;   // attempts refused because the receiver's certificate did not verify
  double last_delivery_seconds = 0;  // enqueue -> 2xx of the latest sent notification
  double delivery_seconds_sum = 0;   // over all sent notifications (average = sum / sent)
  // Delivery latency histogram: latency_buckets[i] counts sent notifications whose latency is
  // <= kLatencyBounds[i] and above the previous bound (not cumulative; the last is +Inf).
  std::vector<uint64_t> latency_buckets;
};

// Upper bounds (seconds) of NotifierStats::latency_buckets; the last is +Inf.
const std::vector<double>& latency_bounds();

// The generic webhook body (docs/webhook.md). Keys keep the documented order. With
// `agent_url`, each capture carries its download link (capture_url()). A capture follow-up
// (Anomaly::event "capture.completed") adds `event` and a `capture` object.
nlohmann::ordered_json encode_webhook_payload(const Anomaly& anomaly, const std::string& agent_url = "");

// Anomaly::capture_done from a capture's manifest (what CaptureCompleted passes, docs/captures.md):
// id, status, ended_by, error (null -> ""), complete, packets, packets_lost, bytes_written,
// window.start/end. Missing or mistyped fields stay at their defaults.
Anomaly::CaptureDone capture_done_from_manifest(const nlohmann::json& manifest);

// Where the agent serves a capture's pcapng: <agent_url>/api/v1/captures/<id>/pcap; "" without
// an agent_url.
std::string capture_url(const std::string& agent_url, const std::string& id);

// Unix seconds as RFC 3339 UTC with milliseconds: "2026-11-25T12:34:56.789Z".
std::string format_rfc3339(double unix_seconds);

class Notifier {
 public:
  virtual ~Notifier() = default;
  virtual const std::string& name() const = 0;
  virtual const char* type() const = 0;
  // Never waits for a receiver. A durable notifier has the notification on disk (fsync'd)
  // when this returns.
  virtual void enqueue(const Anomaly& anomaly) = 0;
  virtual NotifierStats stats() const = 0;
  virtual void stop() = 0;  // drains nothing (what is left is counted dropped); returns promptly
};

// Builds a notifier from its config; errors name the notifier and the field, e.g.
// "notifier 'ops': url: expected http:// or https://".
Result<std::unique_ptr<Notifier>> make_notifier(const NotifierConfig& config);

// Routes notify(channel, anomaly) from rules to the named notifier. Add notifiers before the
// first notify(); after that, notify() and stats() may be called from any thread.
class Dispatcher : public ActionSink {
 public:
  // A dispatcher holding one notifier per config, or the first config error.
  static Result<std::unique_ptr<Dispatcher>> create(const std::vector<NotifierConfig>& configs);

  Dispatcher() = default;
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;
  ~Dispatcher() override;

  Result<void> add(std::unique_ptr<Notifier> notifier);  // error on a duplicate name
  void notify(const std::string& channel, const Anomaly& anomaly) override;
  std::vector<std::pair<std::string, NotifierStats>> stats() const;
  std::vector<std::string> channel_names() const;
  uint64_t unknown_channel_errors() const { return unknown_channel_errors_.load(); }
  void stop();

 private:
  std::map<std::string, std::unique_ptr<Notifier>> notifiers_;
  std::atomic<uint64_t> unknown_channel_errors_{0};
  std::mutex warned_mu_;
  std::set<std::string> warned_channels_;  // unknown channels already logged once
};

}  // namespace vigil::actions
