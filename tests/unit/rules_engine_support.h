// Helpers for engine-level rule tests (ratio, first_seen, lifecycle): rule files in a temp
// dir, a recording sink, tick loops.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "rules/runtime/engine.h"

namespace vigil::rules::testing {

struct Sent {
  std::string channel;
  Anomaly anomaly;
};

class RecordingSink : public ActionSink {
 public:
  void notify(const std::string& channel, const Anomaly& anomaly) override { sent.push_back({channel, anomaly}); }
  std::vector<Anomaly> with(AnomalyStatus status) const {
    std::vector<Anomaly> out;
    for (const auto& s : sent)
      if (s.anomaly.status == status) out.push_back(s.anomaly);
    return out;
  }
  std::vector<Sent> sent;
};

class RuleDir {
 public:
  RuleDir() {
    static int n = 0;
    dir_ = std::filesystem::temp_directory_path() /
           ("vigil-rulefeat-" + std::to_string(getpid()) + "-" + std::to_string(n++));
    std::filesystem::create_directories(dir_);
  }
  ~RuleDir() { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    std::string path = (dir_ / name).string();
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path) << text;
    return path;
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

 private:
  std::filesystem::path dir_;
};

inline constexpr double T0 = 1000;

inline PodMeta pod(const std::string& name) { return PodMeta{"default", name, {}, "node-a"}; }

inline EngineOptions options() {
  EngineOptions o;
  o.node = "node-a";
  o.channels = std::set<std::string>{"default"};
  o.memory_limit_bytes = 4u << 20;
  o.instruction_limit = 200'000;
  return o;
}

inline std::unique_ptr<RuleEngine> load(const std::vector<std::string>& files, ActionSink* sink) {
  auto engine = RuleEngine::load(files, options(), sink);
  EXPECT_TRUE(engine.ok()) << (engine.ok() ? "" : engine.error().message);
  return engine.ok() ? std::move(*engine) : nullptr;
}

inline std::string load_error(const std::string& path) {
  auto engine = RuleEngine::load({path}, options(), nullptr);
  return engine.ok() ? "" : engine.error().message;
}

inline Sample counter(const std::string& metric, const std::string& pod, double value, Labels extra = {}) {
  Labels labels = make_labels({{"namespace", "default"}, {"pod", pod}});
  for (auto& l : extra) labels.push_back(std::move(l));
  sort_labels(labels);
  return Sample{metric, std::move(labels), value, SeriesKind::Counter};
}

inline Sample gauge(const std::string& metric, const std::string& pod, double value) {
  return Sample{metric, make_labels({{"namespace", "default"}, {"pod", pod}}), value, SeriesKind::Gauge};
}

inline RuleStatus status_of(const RuleEngine& engine, const std::string& rule) {
  for (const auto& s : engine.status())
    if (s.rule == rule) return s;
  ADD_FAILURE() << "no status for " << rule;
  return {};
}

}  // namespace vigil::rules::testing
