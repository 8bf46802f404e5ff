// Notifiers deliver anomalies to channels configured under `notifiers:`. Delivery happens on
// the notifier's own thread: enqueue() never blocks the tick.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rules/core/anomaly.h"
#include "rules/core/result.h"

namespace vigil::actions {

struct WebhookConfig {
  std::string name;                            // channel name used by rules
  std::string url;                             // http:// or https://
  std::map<std::string, std::string> headers;  // extra request headers
  double timeout_seconds = 5;
  int max_attempts = 5;             // attempts per notification before it is dropped
  double backoff_initial_seconds = 0.5;
  double backoff_max_seconds = 30;
  size_t queue_limit = 10000;       // oldest dropped (and counted) beyond this
};

struct NotifierStats {
  uint64_t sent = 0;
  uint64_t failed = 0;    // attempts that failed (each retry counts)
  uint64_t retried = 0;
  uint64_t dropped = 0;   // given up after max_attempts or queue overflow
  uint64_t queue_depth = 0;
};

// The generic webhook body (documented in docs/webhook.md). `version` is "vigil.v1".
nlohmann::json encode_webhook_payload(const Anomaly& anomaly);

class Notifier {
 public:
  virtual ~Notifier() = default;
  virtual const std::string& name() const = 0;
  virtual const char* type() const = 0;
  virtual void enqueue(const Anomaly& anomaly) = 0;  // never blocks
  virtual NotifierStats stats() const = 0;
  virtual void stop() = 0;  // drains nothing; stops the worker promptly
};

std::unique_ptr<Notifier> make_webhook_notifier(const WebhookConfig& config);

// Routes notify(channel, anomaly) from rules to the named notifier.
class Dispatcher : public ActionSink {
 public:
  void add(std::unique_ptr<Notifier> notifier);
  void notify(const std::string& channel, const Anomaly& anomaly) override;
  std::vector<std::pair<std::string, NotifierStats>> stats() const;
  std::vector<std::string> channel_names() const;
  uint64_t unknown_channel_errors() const { return unknown_channel_errors_; }
  void stop();

 private:
  std::map<std::string, std::unique_ptr<Notifier>> notifiers_;
  uint64_t unknown_channel_errors_ = 0;
};

}  // namespace vigil::actions
