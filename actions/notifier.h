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

// One entry of `notifiers:` (docs/config.md). Fields after `type` are used by webhooks only.
struct NotifierConfig {
  std::string name;                            // channel name used by rules; [a-z0-9_-]+
  std::string type;                            // "webhook" | "log"
  std::string url;                             // http:// or https://
  std::map<std::string, std::string> headers;  // extra request headers (values never logged)
  double timeout_seconds = 5;                  // connect, read and write timeout per attempt
  int max_attempts = 5;                        // attempts per notification before it is dropped
  double backoff_initial_seconds = 0.5;        // delay before the first retry; doubles after
  double backoff_max_seconds = 30;             // cap on the delay between attempts
  size_t queue_limit = 10000;                  // waiting notifications; oldest dropped beyond
};

// The first problem found in a NotifierConfig. `field` is the YAML key as written in the
// config file ("url", "backoff_max", "headers.X-Token"), so the config parser can point at
// the offending line.
struct NotifierConfigProblem {
  std::string field;
  std::string message;
};
std::optional<NotifierConfigProblem> find_config_problem(const NotifierConfig& config);

struct NotifierStats {
  uint64_t sent = 0;
  uint64_t failed = 0;       // attempts that failed (each retry counts)
  uint64_t retried = 0;      // attempts after the first
  uint64_t dropped = 0;      // given up after max_attempts, queue overflow or stop()
  uint64_t queue_depth = 0;  // waiting, not counting the one being delivered
  double last_delivery_seconds = 0;  // enqueue -> 2xx of the latest sent notification
  double delivery_seconds_sum = 0;   // over all sent notifications (average = sum / sent)
};

// The generic webhook body (docs/webhook.md). Keys keep the documented order.
nlohmann::ordered_json encode_webhook_payload(const Anomaly& anomaly);

// Unix seconds as RFC 3339 UTC with milliseconds: "2026-11-25T12:34:56.789Z".
std::string format_rfc3339(double unix_seconds);

class Notifier {
 public:
  virtual ~Notifier() = default;
  virtual const std::string& name() const = 0;
  virtual const char* type() const = 0;
  virtual void enqueue(const Anomaly& anomaly) = 0;  // never blocks
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
