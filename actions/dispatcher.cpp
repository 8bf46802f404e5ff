// The Dispatcher: the ActionSink rules notify, routing each anomaly to its channel.
#include <spdlog/spdlog.h>

#include "actions/notifier.h"

namespace vigil::actions {

Result<std::unique_ptr<Dispatcher>> Dispatcher::create(const std::vector<NotifierConfig>& configs) {
  auto dispatcher = std::make_unique<Dispatcher>();
  for (const auto& config : configs) {
    auto notifier = make_notifier(config);
    if (!notifier) return notifier.error();
    if (auto added = dispatcher->add(std::move(notifier).value()); !added) return added.error();
  }
  return dispatcher;
}

Dispatcher::~Dispatcher() { stop(); }

Result<void> Dispatcher::add(std::unique_ptr<Notifier> notifier) {
  const std::string name = notifier->name();
  if (!notifiers_.emplace(name, std::move(notifier)).second)
    return make_error("notifier '" + name + "': name: duplicate notifier name");
  return {};
}

void Dispatcher::notify(const std::string& channel, const Anomaly& anomaly) {
  auto it = notifiers_.find(channel);
  if (it != notifiers_.end()) {
    it->second->enqueue(anomaly);
    return;
  }
  unknown_channel_errors_.fetch_add(1);
  std::lock_guard lock(warned_mu_);
  if (!warned_channels_.insert(channel).second) return;
  std::string known;
  for (const auto& name : channel_names()) known += (known.empty() ? "" : ", ") + name;
  spdlog::error("rule {} notified unknown channel '{}' (configured: {}); further notifications to it are only counted",
                anomaly.rule, channel, known);
}

std::vector<std::pair<std::string, NotifierStats>> Dispatcher::stats() const {
  std::vector<std::pair<std::string, NotifierStats>> out;
  out.reserve(notifiers_.size());
  for (const auto& [name, notifier] : notifiers_) out.emplace_back(name, notifier->stats());
  return out;
}

std::vector<std::string> Dispatcher::channel_names() const {
  std::vector<std::string> out;
  out.reserve(notifiers_.size());
  for (const auto& [name, notifier] : notifiers_) out.push_back(name);
  return out;
}

void Dispatcher::stop() {
  for (auto& [name, notifier] : notifiers_) notifier->stop();
}

}  // namespace vigil::actions
