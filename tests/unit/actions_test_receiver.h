// A loopback HTTP receiver for notifier tests (ephemeral port on 127.0.0.1, or a given one),
// plus small helpers. `handle` decides each answer; it may block (bounded by the test).
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "actions/notifier.h"

namespace vigil::actions::testing {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Hit {
  std::string path;
  httplib::Headers headers;
  std::string body;
  int status = 0;
  Clock::time_point at;  // when the request arrived
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  nlohmann::json json() const { return nlohmann::json::parse(body); }
};

class HttpReceiver {
 public:
  using Handle = std::function<void(const httplib::Request&, httplib::Response&)>;

  explicit HttpReceiver(Handle handle = nullptr, int port = 0) : handle_(std::move(handle)) {
    server_.Post(".*", [this](const httplib::Request& req, httplib::Response& res) {
      const auto arrived = Clock::now();
      res.status = 200;
      if (handle_) handle_(req, res);
      std::lock_guard lock(mu_);
      hits_.push_back({req.path, req.headers, req.body, res.status, arrived});
      cv_.notify_all();
    });
    port_ = port == 0 ? server_.bind_to_any_port("127.0.0.1") : (server_.bind_to_port("127.0.0.1", port) ? port : -1);
    if (port_ <= 0) return;
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    const auto deadline = Clock::now() + 2s;
    while (!server_.is_running() && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  }
  ~HttpReceiver() { stop(); }

  int port() const { return port_; }
  std::string url(const std::string& path = "/hook") const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

  // Waits for `n` answered-with-2xx requests.
  bool wait_ok(size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return ok_count_locked() >= n; });
  }
  bool wait_hits(size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return hits_.size() >= n; });
  }
  // In order of arrival (a hanging handler finishes after later requests).
  std::vector<Hit> hits() const {
    std::lock_guard lock(mu_);
    auto out = hits_;
    std::stable_sort(out.begin(), out.end(), [](const Hit& a, const Hit& b) { return a.at < b.at; });
    return out;
  }
  std::vector<Hit> ok_hits() const {
    std::vector<Hit> out;
    for (const auto& h : hits())
      if (h.status >= 200 && h.status < 300) out.push_back(h);
    return out;
  }
  void stop() {
    if (!thread_.joinable()) return;
    server_.stop();
    thread_.join();
  }

 private:
  size_t ok_count_locked() const {
    size_t n = 0;
    for (const auto& h : hits_) n += h.status >= 200 && h.status < 300;
    return n;
  }
  Handle handle_;
  httplib::Server server_;
  int port_ = -1;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Hit> hits_;
};

inline Anomaly sample_anomaly(const std::string& id, const std::string& pod = "checkout-7d9f8") {
  Anomaly a;
  a.id = id;
  a.rule = "pod_drop_surge";
  a.severity = "critical";
  a.summary = "drops 12.5/s, baseline 0.4/s";
  a.started_at = 1795610096.789;
  a.node = "worker-1";
  a.scope = {{"namespace", "shop"}, {"pod", pod}};
  a.pod_labels = {{"app", "checkout"}};
  a.metric = "vigil_drop_packets_total";
  a.metric_labels = {{"namespace", "shop"}, {"pod", pod}};
  a.value = 12.5;
  a.baseline = 0.4;
  a.score = 8.25;
  a.detector = "baseline.zscore";
  return a;
}

inline Anomaly resolved(Anomaly a, double ended_at = 1795610516.25) {
  a.status = AnomalyStatus::Resolved;
  a.ended_at = ended_at;
  return a;
}

// The follow-up the agent sends when capture `id` of the episode `a` has ended: 1234 packets,
// 3 lost, so incomplete; the window 10 s before to 30 s after the start.
inline Anomaly capture_followup(Anomaly a, const std::string& id = "c-0001") {
  if (std::find(a.captures.begin(), a.captures.end(), id) == a.captures.end()) a.captures.push_back(id);
  a.event = kEventCaptureCompleted;
  a.capture_done.id = id;
  a.capture_done.status = "incomplete";
  a.capture_done.ended_by = "after_elapsed";
  a.capture_done.complete = false;
  a.capture_done.packets = 1234;
  a.capture_done.packets_lost = 3;
  a.capture_done.bytes = 190000;
  a.capture_done.window_start = a.started_at - 10;
  a.capture_done.window_end = a.started_at + 30;
  return a;
}

inline NotifierConfig channel(const std::string& type, const std::string& url, const std::string& name = "ch") {
  NotifierConfig c;
  c.name = name;
  c.type = type;
  c.url = url;
  c.timeout_seconds = 1;
  c.backoff_initial_seconds = 0.02;
  c.backoff_max_seconds = 0.2;
  c.group_wait_seconds = 0;
  if (type == "pagerduty") c.routing_key = "R0UTINGKEY";
  return c;
}

inline std::unique_ptr<Notifier> must_make(const NotifierConfig& c) {
  auto n = make_notifier(c);
  if (!n) throw std::runtime_error(n.error().message);
  return std::move(n).value();
}

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

inline std::string make_temp_dir() {
  char tmpl[] = "/tmp/vigil-notify-XXXXXX";
  const char* d = mkdtemp(tmpl);
  return d ? d : "";
}

}  // namespace vigil::actions::testing
