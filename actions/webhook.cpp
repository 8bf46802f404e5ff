// The webhook notifier: a bounded queue drained by one worker thread that POSTs each anomaly
// (docs/webhook.md) and retries failures with exponential backoff. Notifications leave in the
// order they were enqueued: a notification being retried holds back the ones behind it.
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <random>
#include <thread>

#include <httplib.h>
#include <spdlog/spdlog.h>

#include "actions/notifier.h"
#include "actions/notifier_impl.h"

#ifndef VIGIL_VERSION
#define VIGIL_VERSION "dev"
#endif

namespace vigil::actions {
namespace {

using Clock = std::chrono::steady_clock;
using Seconds = std::chrono::duration<double>;

void split_seconds(double seconds, time_t& sec, time_t& usec) {
  sec = static_cast<time_t>(seconds);
  usec = static_cast<time_t>(std::lround((seconds - static_cast<double>(sec)) * 1e6));
}

std::string describe(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection: return "cannot connect (refused or unreachable)";
    case httplib::Error::ConnectionTimeout: return "connect timed out";
    case httplib::Error::Read: return "no response (read failed or timed out)";
    case httplib::Error::Write: return "sending the request failed or timed out";
    case httplib::Error::SSLConnection: return "TLS handshake failed";
    case httplib::Error::SSLLoadingCerts: return "cannot load the system CA certificates";
    case httplib::Error::SSLServerVerification: return "server certificate verification failed";
    case httplib::Error::Canceled: return "request canceled";
    default: return "HTTP client error: " + httplib::to_string(e);
  }
}

class WebhookNotifier final : public Notifier {
 public:
  WebhookNotifier(const NotifierConfig& config, HttpUrl url)
      : config_(config), url_(std::move(url)), client_(url_.origin()), rng_(std::random_device{}()) {
    time_t sec = 0, usec = 0;
    split_seconds(config_.timeout_seconds, sec, usec);
    client_.set_connection_timeout(sec, usec);
    client_.set_read_timeout(sec, usec);
    client_.set_write_timeout(sec, usec);
    client_.set_keep_alive(false);
    client_.set_follow_location(false);
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
    client_.enable_server_certificate_verification(true);
#endif
    for (const auto& [k, v] : config_.headers) headers_.emplace(k, v);
    // httplib::Headers compares names case-insensitively; a configured User-Agent wins.
    if (headers_.find("User-Agent") == headers_.end()) headers_.emplace("User-Agent", "vigil/" VIGIL_VERSION);
    worker_ = std::thread([this] { run(); });
  }

  ~WebhookNotifier() override { stop(); }

  const std::string& name() const override { return config_.name; }
  const char* type() const override { return "webhook"; }

  void enqueue(const Anomaly& anomaly) override {
    Pending p{anomaly, Clock::now()};  // copy outside the lock
    bool overflowed = false;
    uint64_t dropped_total = 0;
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        ++stats_.dropped;
        return;
      }
      if (queue_.size() >= config_.queue_limit) {
        queue_.pop_front();
        ++stats_.dropped;
        overflowed = true;
        dropped_total = stats_.dropped;
      }
      queue_.push_back(std::move(p));
    }
    cv_.notify_one();
    if (overflowed) warn_overflow(dropped_total);
  }

  NotifierStats stats() const override {
    std::lock_guard lock(mu_);
    NotifierStats s = stats_;
    s.queue_depth = queue_.size();
    return s;
  }

  void stop() override {
    std::lock_guard stop_lock(stop_mu_);  // a second caller waits for the first to finish
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    // Shutting the client's socket down aborts a request in flight. Repeat, because the worker
    // may have been about to start one when stopping_ was set.
    for (;;) {
      client_.stop();
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, std::chrono::milliseconds(20), [&] { return worker_done_; })) break;
    }
    worker_.join();
    uint64_t abandoned = 0;
    {
      std::lock_guard lock(mu_);
      abandoned = queue_.size() + (in_flight_ ? 1 : 0);
      stats_.dropped += abandoned;
      queue_.clear();
      in_flight_ = false;
      stopped_ = true;
    }
    if (abandoned > 0) spdlog::warn("notifier {}: stopped with {} undelivered notifications", config_.name, abandoned);
  }

 private:
  struct Pending {
    Anomaly anomaly;
    Clock::time_point enqueued;
  };

  struct Attempt {
    bool ok = false;
    std::string reason;  // why it failed; never contains header values or the URL path
  };

  void run() {
    for (;;) {
      Pending p;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) break;
        p = std::move(queue_.front());
        queue_.pop_front();
        in_flight_ = true;
      }
      deliver(p);
    }
    std::lock_guard lock(mu_);
    worker_done_ = true;
    cv_.notify_all();
  }

  // Returns with in_flight_ cleared unless stop() interrupted it (stop() counts it dropped).
  // Logging happens outside mu_ so that a slow log sink never blocks enqueue().
  void deliver(const Pending& p) {
    const std::string body = dump_json(encode_webhook_payload(p.anomaly));
    const std::string delivery_id = new_delivery_id();
    Attempt result;
    for (int attempt = 1; attempt <= config_.max_attempts; ++attempt) {
      if (attempt > 1) {
        std::lock_guard lock(mu_);
        ++stats_.retried;
      }
      result = post(body, delivery_id);
      {
        std::lock_guard lock(mu_);
        if (result.ok) {
          const double latency = Seconds(Clock::now() - p.enqueued).count();
          ++stats_.sent;
          stats_.last_delivery_seconds = latency;
          stats_.delivery_seconds_sum += latency;
          in_flight_ = false;
          return;
        }
        ++stats_.failed;
        if (stopping_) return;  // most likely our own stop() aborting the request
      }
      if (attempt == config_.max_attempts) break;
      const auto delay = backoff(attempt);
      spdlog::warn("notifier {}: delivery {} to {} failed (attempt {}/{}): {}; retrying in {} ms", config_.name,
                   delivery_id, url_.origin(), attempt, config_.max_attempts, result.reason,
                   std::chrono::duration_cast<std::chrono::milliseconds>(delay).count());
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, delay, [&] { return stopping_; })) return;
    }
    {
      std::lock_guard lock(mu_);
      ++stats_.dropped;
      in_flight_ = false;
    }
    spdlog::error("notifier {}: dropped delivery {} (rule {}, anomaly {}, {}) after {} attempts to {}: {}",
                  config_.name, delivery_id, p.anomaly.rule, p.anomaly.id, to_string(p.anomaly.status),
                  config_.max_attempts, url_.origin(), result.reason);
  }

  Attempt post(const std::string& body, const std::string& delivery_id) {
    httplib::Headers headers = headers_;
    headers.emplace("Idempotency-Key", delivery_id);
    headers.emplace("X-Vigil-Delivery", delivery_id);
    auto res = client_.Post(url_.path, headers, body, "application/json");
    if (!res) return {false, describe(res.error())};
    if (res->status >= 200 && res->status < 300) return {true, {}};
    return {false, "HTTP " + std::to_string(res->status)};
  }

  // initial * 2^(n-1), capped at backoff_max, then scaled by a random factor in [0.5, 1] so
  // that agents on many nodes do not retry against one receiver in lockstep.
  Clock::duration backoff(int failed_attempts) {
    const double exp = std::ldexp(config_.backoff_initial_seconds, std::min(failed_attempts - 1, 60));
    const double capped = std::min(exp, config_.backoff_max_seconds);
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    return std::chrono::duration_cast<Clock::duration>(Seconds(capped * jitter(rng_)));
  }

  // A random UUID (version 4): the same for every attempt at one notification, so receivers
  // can drop duplicates when a 2xx was lost on the way back.
  std::string new_delivery_id() {
    const uint64_t hi = (rng_() & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
    const uint64_t lo = (rng_() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
    char buf[37];
    std::snprintf(buf, sizeof buf, "%08llx-%04llx-%04llx-%04llx-%012llx",
                  static_cast<unsigned long long>(hi >> 32), static_cast<unsigned long long>((hi >> 16) & 0xffff),
                  static_cast<unsigned long long>(hi & 0xffff), static_cast<unsigned long long>(lo >> 48),
                  static_cast<unsigned long long>(lo & 0xffffffffffffULL));
    return buf;
  }

  // Overflow means the receiver cannot keep up; say so, but not once per dropped message.
  void warn_overflow(uint64_t dropped_total) {
    const auto now = Clock::now();
    std::lock_guard lock(warn_mu_);
    if (last_overflow_warning_ != Clock::time_point{} && now - last_overflow_warning_ < std::chrono::seconds(10))
      return;
    last_overflow_warning_ = now;
    spdlog::warn("notifier {}: queue full ({} waiting), dropping the oldest notifications ({} dropped so far)",
                 config_.name, config_.queue_limit, dropped_total);
  }

  const NotifierConfig config_;
  const HttpUrl url_;
  httplib::Headers headers_;  // configured headers plus User-Agent, built once
  httplib::Client client_;    // used by the worker; stop() may call client_.stop() concurrently

  mutable std::mutex mu_;
  std::condition_variable cv_;  // queue changes, stopping_ and worker_done_
  std::deque<Pending> queue_;
  NotifierStats stats_;
  bool stopping_ = false;
  bool stopped_ = false;
  bool in_flight_ = false;
  bool worker_done_ = false;

  std::mutex stop_mu_;
  std::mutex warn_mu_;
  Clock::time_point last_overflow_warning_{};
  std::mt19937_64 rng_;  // worker thread only
  std::thread worker_;   // last: started once everything above exists
};

}  // namespace

std::unique_ptr<Notifier> make_webhook_notifier(const NotifierConfig& config, const HttpUrl& url) {
  return std::make_unique<WebhookNotifier>(config, url);
}

}  // namespace vigil::actions
