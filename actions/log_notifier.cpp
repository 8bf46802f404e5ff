// The `log` notifier: one JSON line per anomaly through spdlog. The default config uses it so
// the agent shows its anomalies without any receiver.
#include <spdlog/spdlog.h>

#include "actions/notifier.h"
#include "actions/notifier_impl.h"

namespace vigil::actions {
namespace {

class LogNotifier final : public Notifier {
 public:
  explicit LogNotifier(std::string name) : name_(std::move(name)) {}

  const std::string& name() const override { return name_; }
  const char* type() const override { return "log"; }

  void enqueue(const Anomaly& anomaly) override {
    if (stopped_.load()) {
      dropped_.fetch_add(1);
      return;
    }
    // The same body a webhook would receive, so a log line can be replayed to a receiver.
    spdlog::info("notifier {}: {}", name_, dump_json(encode_webhook_payload(anomaly)));
    sent_.fetch_add(1);
  }

  NotifierStats stats() const override {
    NotifierStats s;
    s.sent = sent_.load();
    s.dropped = dropped_.load();
    return s;
  }

  void stop() override { stopped_.store(true); }

 private:
  const std::string name_;
  std::atomic<bool> stopped_{false};
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace

std::unique_ptr<Notifier> make_log_notifier(const NotifierConfig& config) {
  return std::make_unique<LogNotifier>(config.name);
}

}  // namespace vigil::actions
