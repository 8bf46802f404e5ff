// The HTTP notifiers (webhook, slack, pagerduty, alertmanager): one worker thread per channel
// drains a queue that the durable outbox mirrors on disk. Per attempt it renders the type's
// body (Format), POSTs it to every target with the message's idempotency key, and on failure
// waits with exponential backoff and jitter, or as long as a 429/503 `Retry-After` asks.
// Order is kept per channel: the message being retried holds back those behind it. Flood
// control (repeat suppression, slack grouping, a rate limit with a summary) happens here too.
#include <openssl/x509.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <httplib.h>
#include <spdlog/spdlog.h>

#include "actions/http_error.h"
#include "actions/notifier.h"
#include "actions/notifier_impl.h"

#ifndef VIGIL_VERSION
#define VIGIL_VERSION "dev"
#endif

namespace vigil::actions {
namespace {

using Clock = std::chrono::steady_clock;
using Seconds = std::chrono::duration<double>;

constexpr double kMaxRetryAfterSeconds = 3600;

void split_seconds(double seconds, time_t& sec, time_t& usec) {
  sec = static_cast<time_t>(seconds);
  usec = static_cast<time_t>(std::lround((seconds - static_cast<double>(sec)) * 1e6));
}

// Retry-After is either delay-seconds or an HTTP-date (RFC 9110 10.2.3).
std::optional<double> parse_retry_after(const std::string& v) {
  if (v.empty()) return std::nullopt;
  if (std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::min(std::stod(v), kMaxRetryAfterSeconds);
  std::tm tm{};
  if (strptime(v.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm) == nullptr) return std::nullopt;
  const double at = static_cast<double>(timegm(&tm));
  return std::clamp(at - unix_now(), 0.0, kMaxRetryAfterSeconds);
}

std::string identity_of(const Anomaly& a) {
  std::string id = a.rule + "\n" + a.node;
  for (const auto& [k, v] : a.scope) id += "\n" + k + "=" + v;
  return id;
}

struct Target {
  HttpUrl url;
  std::unique_ptr<httplib::Client> client;
};

struct Attempt {
  bool ok = false;
  bool tls = false;            // the receiver's certificate was refused
  double retry_after = -1;     // seconds asked by a 429/503, or -1
  std::string reason;          // never contains header values or the URL path
};

class HttpChannel final : public Notifier {
 public:
  HttpChannel(const NotifierConfig& config, std::unique_ptr<Format> format, std::unique_ptr<Outbox> outbox,
              std::vector<Message> pending, std::vector<HttpUrl> urls)
      : config_(config), format_(std::move(format)), outbox_(std::move(outbox)), rng_(std::random_device{}()) {
    stats_.latency_buckets.assign(latency_bounds().size(), 0);
    group_wait_ = config_.group_wait_seconds >= 0 ? config_.group_wait_seconds : (format_->groups() ? 5.0 : 0.0);
    if (!format_->groups()) group_wait_ = 0;
    for (auto& u : urls) {
      Target t{std::move(u), nullptr};
      t.client = std::make_unique<httplib::Client>(t.url.origin());
      time_t sec = 0, usec = 0;
      split_seconds(config_.timeout_seconds, sec, usec);
      t.client->set_connection_timeout(sec, usec);
      t.client->set_read_timeout(sec, usec);
      t.client->set_write_timeout(sec, usec);
      t.client->set_keep_alive(false);
      t.client->set_follow_location(false);
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
      t.client->enable_server_certificate_verification(true);
      if (!config_.ca_file.empty()) t.client->set_ca_cert_path(config_.ca_file);
#endif
      targets_.push_back(std::move(t));
    }
    for (const auto& [k, v] : config_.headers) headers_.emplace(k, v);
    if (headers_.find("User-Agent") == headers_.end()) headers_.emplace("User-Agent", "vigil/" VIGIL_VERSION);
    for (auto& m : pending) {
      next_seq_ = std::max(next_seq_, m.seq + 1);
      queue_.push_back(std::move(m));
    }
    if (!queue_.empty())
      spdlog::info("notifier {}: {} queued notifications from the outbox will be delivered", config_.name,
                   queue_.size());
    worker_ = std::thread([this] { run(); });
  }

  ~HttpChannel() override { stop(); }

  const std::string& name() const override { return config_.name; }
  const char* type() const override { return type_name(); }

  void enqueue(const Anomaly& anomaly) override {
    Message m;
    m.anomaly = anomaly;
    m.key = is_followup(anomaly) ? followup_key(config_.name, anomaly) : new_uuid();
    m.enqueued_unix = unix_now();
    std::lock_guard order(enqueue_mu_);  // seq order = disk order = queue order
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        ++stats_.dropped;
        return;
      }
      if (suppress_repeat(m.anomaly)) {
        ++stats_.suppressed;
        return;
      }
      m.seq = next_seq_++;
    }
    persist_and_queue(std::move(m));
  }

  NotifierStats stats() const override {
    std::lock_guard lock(mu_);
    NotifierStats s = stats_;
    s.queue_depth = queue_.size();
    return s;
  }

  void stop() override {
    std::lock_guard stop_lock(stop_mu_);
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    for (;;) {  // abort a request in flight; repeat, the worker may have been about to start one
      for (auto& t : targets_) t.client->stop();
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, std::chrono::milliseconds(20), [&] { return worker_done_; })) break;
    }
    worker_.join();
    uint64_t left = 0;
    {
      std::lock_guard lock(mu_);
      left = queue_.size() + in_flight_;
      // A durable channel keeps them on disk for the next start; a memory queue loses them.
      if (!outbox_->durable()) {
        stats_.dropped += left;
        queue_.clear();
      }
      in_flight_ = 0;
      stopped_ = true;
    }
    if (left > 0)
      spdlog::warn("notifier {}: stopped with {} undelivered notifications{}", config_.name, left,
                   outbox_->durable() ? " (kept in the outbox for the next start)" : "");
  }

 private:
  const char* type_name() const { return type_.c_str(); }

  // Zeek-style suppression by identifier: a new episode of the same rule and scope within
  // suppress_repeats of the last one is held back, and so is its resolve. A follow-up is no
  // repeat: it goes out unless the firing it follows was held back (by this or the rate
  // limit), as the receiver never heard of that episode. Called under mu_.
  bool suppress_repeat(const Anomaly& a) {
    if (is_followup(a)) return held_back(a.id);
    if (a.status == AnomalyStatus::Resolved) return forget_held_back(a.id);
    if (config_.suppress_repeats_seconds <= 0) return false;
    const auto now = Clock::now();
    const std::string id = identity_of(a);
    auto it = last_firing_.find(id);
    if (it != last_firing_.end() && now - it->second < Seconds(config_.suppress_repeats_seconds)) {
      suppressed_ids_.insert(a.id);
      return true;
    }
    last_firing_[id] = now;
    if (last_firing_.size() > 100000) last_firing_.clear();  // bounded; worst case one repeat passes
    return false;
  }

  // Whether the firing of episode `id` was held back by flood control (also when its resolve
  // has passed since, for the follow-ups that come after it). Called under mu_.
  bool held_back(const std::string& id) const {
    return suppressed_ids_.count(id) > 0 || held_back_resolved_.count(id) > 0;
  }

  // The resolve of episode `id` is here: true if its firing was held back. Remembers the last
  // 10000 such episodes for their follow-ups. Called under mu_.
  bool forget_held_back(const std::string& id) {
    if (suppressed_ids_.erase(id) == 0) return false;
    if (held_back_resolved_.insert(id).second) held_back_order_.push_back(id);
    while (held_back_order_.size() > 10000) {
      held_back_resolved_.erase(held_back_order_.front());
      held_back_order_.pop_front();
    }
    return true;
  }

  void persist_and_queue(Message m) {
    if (auto saved = outbox_->append(m); !saved)
      spdlog::error("notifier {}: {} (the notification is kept in memory only)", config_.name, saved.error().message);
    uint64_t dropped_total = 0;
    bool overflowed = false;
    {
      std::lock_guard lock(mu_);
      if (queue_.size() >= config_.queue_limit) {
        outbox_->remove(queue_.front().seq);
        queue_.pop_front();
        ++stats_.dropped;
        overflowed = true;
        dropped_total = stats_.dropped;
      }
      queue_.push_back(std::move(m));
    }
    cv_.notify_all();
    if (overflowed) warn_overflow(dropped_total);
  }

  void run() {
    for (;;) {
      std::vector<Message> batch;
      bool resend = false;
      {
        std::unique_lock lock(mu_);
        if (!next_batch(lock, batch, resend)) break;
      }
      if (resend) {
        resend_firing();
      } else if (!batch.empty()) {
        deliver(batch);
      }
    }
    std::lock_guard lock(mu_);
    worker_done_ = true;
    cv_.notify_all();
  }

  // Waits for work: a batch to deliver (taken off the queue, in_flight_ set), a resend of
  // firing alerts, or a due flood-control summary. False when stopping.
  bool next_batch(std::unique_lock<std::mutex>& lock, std::vector<Message>& batch, bool& resend) {
    for (;;) {
      if (stopping_) return false;
      const auto now = Clock::now();
      if (summary_due(now)) {
        lock.unlock();
        queue_summary();
        lock.lock();
        continue;
      }
      if (!queue_.empty()) {
        const Message& head = queue_.front();
        const bool followup = is_followup(head.anomaly);  // never grouped, delayed or rate limited
        const bool firing = head.anomaly.status == AnomalyStatus::Firing && head.suppressed == 0 && !followup;
        if (firing && group_wait_ > 0) {
          const double wait = head.enqueued_unix + group_wait_ - unix_now();
          if (wait > 0) {
            cv_.wait_for(lock, Seconds(std::min(wait, group_wait_)), [&] { return stopping_; });
            continue;
          }
        }
        take_batch(batch);
        if (followup && held_back(batch.front().anomaly.id)) {  // follows a firing held back meanwhile
          outbox_->remove(batch.front().seq);
          ++stats_.suppressed;
          batch.clear();
          continue;
        }
        if (!firing && !followup && batch.front().suppressed == 0 && forget_held_back(batch.front().anomaly.id)) {
          outbox_->remove(batch.front().seq);  // the resolve of a held-back firing
          ++stats_.suppressed;
          batch.clear();
          continue;
        }
        if (firing && rate_limited(batch.size() == 1 ? 1 : 1)) {
          for (const auto& m : batch) {
            outbox_->remove(m.seq);
            suppressed_ids_.insert(m.anomaly.id);
          }
          stats_.suppressed += batch.size();
          window_suppressed_ += batch.size();
          batch.clear();
          continue;
        }
        in_flight_ = batch.size();
        return true;
      }
      // Idle: wake for the next resend or summary, or new work.
      auto wake = now + std::chrono::hours(1);
      if (format_->tracks_firing() && !firing_.empty()) {
        if (now >= next_resend_) {
          resend = true;
          return true;
        }
        wake = std::min(wake, next_resend_);
      }
      if (window_suppressed_ > 0) wake = std::min(wake, window_end());
      cv_.wait_until(lock, wake, [&] { return stopping_ || !queue_.empty(); });
    }
  }

  // The head, plus (slack) the firing anomalies of the same node enqueued within group_wait
  // of it. Called under mu_.
  void take_batch(std::vector<Message>& batch) {
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
    const Message& head = batch.front();
    if (group_wait_ <= 0 || head.anomaly.status != AnomalyStatus::Firing || head.suppressed || is_followup(head.anomaly))
      return;
    const std::string node = head.anomaly.node;  // copies: push_back below moves `head`
    const double head_enqueued = head.enqueued_unix;
    for (auto it = queue_.begin(); it != queue_.end() && batch.size() < 100;) {
      if (it->anomaly.status == AnomalyStatus::Firing && !it->suppressed && !is_followup(it->anomaly) &&
          it->anomaly.node == node && it->enqueued_unix - head_enqueued <= group_wait_) {
        batch.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // --- rate limit ---------------------------------------------------------------------
  Clock::time_point window_end() const {
    return window_start_ + std::chrono::duration_cast<Clock::duration>(Seconds(config_.rate_limit_period_seconds));
  }

  // One more firing delivery in the current window? Called under mu_.
  bool rate_limited(size_t) {
    if (config_.rate_limit <= 0) return false;
    const auto now = Clock::now();
    if (window_start_ == Clock::time_point{} || now >= window_end()) {
      if (window_suppressed_ > 0) return false;  // the summary goes first; it resets the window
      window_start_ = now;
      window_count_ = 0;
    }
    if (window_count_ >= config_.rate_limit) return true;
    ++window_count_;
    return false;
  }

  bool summary_due(Clock::time_point now) const { return window_suppressed_ > 0 && now >= window_end(); }

  // Turns what the rate limit held back in the window that just ended into one message.
  void queue_summary() {
    uint64_t count = 0;
    double started = 0;
    {
      std::lock_guard lock(mu_);
      count = window_suppressed_;
      window_suppressed_ = 0;
      started = unix_now() - Seconds(Clock::now() - window_start_).count();
      window_start_ = Clock::now();
      window_count_ = 0;
    }
    const std::string text = std::to_string(count) + " notification" + (count == 1 ? "" : "s") + " to channel " +
                             config_.name + " suppressed by its rate limit (" + std::to_string(config_.rate_limit) +
                             " per " + std::to_string(static_cast<long long>(config_.rate_limit_period_seconds)) + "s)";
    spdlog::warn("notifier {}: {}", config_.name, text);
    if (!format_->sends_summaries()) return;
    Message m;
    m.key = new_uuid();
    m.enqueued_unix = unix_now();
    m.suppressed = count;
    Anomaly& a = m.anomaly;
    a.id = m.key.substr(0, 8) + m.key.substr(9, 4) + m.key.substr(14, 4);
    a.status = AnomalyStatus::Resolved;
    a.rule = "vigil_rate_limit";
    a.severity = "info";
    a.summary = text;
    a.started_at = started;
    a.ended_at = m.enqueued_unix;
    a.node = node_hint_;
    a.metric = "vigil_notifications_suppressed_total";
    a.value = static_cast<double>(count);
    a.detector = "rate_limit";
    std::lock_guard order(enqueue_mu_);
    {
      std::lock_guard lock(mu_);
      m.seq = next_seq_++;
    }
    persist_and_queue(std::move(m));
  }

  // --- delivery -------------------------------------------------------------------------
  void deliver(std::vector<Message>& batch) {
    std::vector<const Message*> refs;
    for (const auto& m : batch) refs.push_back(&m);
    if (node_hint_.empty()) node_hint_ = batch.front().anomaly.node;
    const HttpRequest request = format_->render(refs);
    const std::string& key = batch.front().key;
    if (!request.skip.empty()) {  // this type has nothing to send for it (e.g. a follow-up)
      spdlog::info("notifier {}: {} of anomaly {} (rule {}) not sent: {}", config_.name,
                   batch.front().anomaly.event.empty() ? to_string(batch.front().anomaly.status)
                                                       : batch.front().anomaly.event.c_str(),
                   batch.front().anomaly.id, batch.front().anomaly.rule, request.skip);
      std::lock_guard lock(mu_);
      for (const auto& m : batch) outbox_->remove(m.seq);
      in_flight_ = 0;
      return;
    }
    std::vector<bool> done(targets_.size(), false);
    Attempt result;
    for (int attempt = 1;; ++attempt) {
      if (attempt > 1) {
        std::lock_guard lock(mu_);
        ++stats_.retried;
      }
      double retry_after = -1;
      bool all = true;
      for (size_t i = 0; i < targets_.size(); ++i) {
        if (done[i]) continue;
        Attempt a = post(targets_[i], request, key);
        std::lock_guard lock(mu_);
        if (a.ok) {
          done[i] = true;
          continue;
        }
        all = false;
        ++stats_.failed;
        if (a.tls) ++stats_.tls_errors;
        retry_after = std::max(retry_after, a.retry_after);
        result = a;
        result.reason = targets_[i].url.origin() + ": " + a.reason;
      }
      // An HA peer that stays down must not hold the channel back: once another peer has it
      // and the laggard had a few tries, the message counts as delivered (the firing resend
      // and Alertmanager's own gossip bring the peer up to date).
      const bool some = std::find(done.begin(), done.end(), true) != done.end();
      if (all || (some && attempt >= 3)) {
        if (!all)
          spdlog::warn("notifier {}: delivery {} reached only some Alertmanagers: {}", config_.name, key, result.reason);
        delivered(batch);
        return;
      }
      {
        std::lock_guard lock(mu_);
        if (stopping_) return;  // most likely our own stop() aborting the request; stays queued
      }
      if (config_.max_attempts > 0 && attempt >= config_.max_attempts) break;
      Clock::duration delay = backoff(attempt);
      if (retry_after >= 0) delay = std::max(delay, std::chrono::duration_cast<Clock::duration>(Seconds(retry_after)));
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(delay).count();
      if (attempt <= 3 || attempt % 20 == 0)
        spdlog::warn("notifier {}: delivery {} failed (attempt {}): {}; retrying in {} ms", config_.name, key,
                     attempt, result.reason, ms);
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, delay, [&] { return stopping_; })) return;
    }
    {
      std::lock_guard lock(mu_);
      stats_.dropped += batch.size();
      in_flight_ = 0;
      for (const auto& m : batch) outbox_->remove(m.seq);
    }
    spdlog::error("notifier {}: dropped delivery {} (rule {}, anomaly {}, {}) after {} attempts: {}", config_.name,
                  key, batch.front().anomaly.rule, batch.front().anomaly.id, to_string(batch.front().anomaly.status),
                  config_.max_attempts, result.reason);
  }

  void delivered(const std::vector<Message>& batch) {
    const double now = unix_now();
    std::lock_guard lock(mu_);
    for (const auto& m : batch) {
      outbox_->remove(m.seq);
      const double latency = std::max(0.0, now - m.enqueued_unix);
      ++stats_.sent;
      stats_.last_delivery_seconds = latency;
      stats_.delivery_seconds_sum += latency;
      const auto& bounds = latency_bounds();
      const size_t b = static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), latency) - bounds.begin());
      ++stats_.latency_buckets[std::min(b, bounds.size() - 1)];
      if (format_->tracks_firing()) {
        if (is_followup(m.anomaly)) {
          // The resend carries what the follow-up updated (capture annotations), while it fires.
          if (auto it = firing_.find(m.anomaly.id); it != firing_.end() && m.anomaly.status == AnomalyStatus::Firing)
            it->second = m;
        } else if (m.anomaly.status == AnomalyStatus::Firing) {
          if (firing_.empty()) next_resend_ = Clock::now() + resend_interval();
          firing_[m.anomaly.id] = m;
        } else {
          firing_.erase(m.anomaly.id);
        }
      }
    }
    in_flight_ = 0;
  }

  Clock::duration resend_interval() const {
    return std::chrono::duration_cast<Clock::duration>(Seconds(config_.resend_interval_seconds));
  }

  // Alertmanager forgets an alert that is not re-sent within its resolve_timeout: send every
  // firing alert again, once, to every target. A failure waits for the next interval.
  void resend_firing() {
    std::vector<Message> firing;
    {
      std::lock_guard lock(mu_);
      for (const auto& [id, m] : firing_) firing.push_back(m);
      next_resend_ = Clock::now() + resend_interval();
    }
    std::vector<const Message*> refs;
    for (const auto& m : firing) refs.push_back(&m);
    const HttpRequest request = format_->render(refs);
    if (!request.skip.empty()) return;
    for (auto& t : targets_) {
      Attempt a = post(t, request, new_uuid());
      if (a.ok) continue;
      std::lock_guard lock(mu_);
      ++stats_.failed;
      if (a.tls) ++stats_.tls_errors;
    }
  }

  Attempt post(Target& t, const HttpRequest& request, const std::string& key) {
    httplib::Headers headers = headers_;
    headers.emplace("Idempotency-Key", key);
    headers.emplace("X-Vigil-Delivery", key);
    for (const auto& [k, v] : request.headers) headers.emplace(k, v);
    auto res = t.client->Post(request.path.empty() ? t.url.path : request.path, headers, request.body, "application/json");
    Attempt a;
    if (!res) {
      a.reason = describe_http_error(res.error());
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
      if (res.error() == httplib::Error::SSLServerVerification) {
        a.tls = true;
        const long v = t.client->get_openssl_verify_result();
        a.reason = "TLS: the receiver's certificate was refused (" +
                   std::string(v != X509_V_OK ? X509_verify_cert_error_string(v) : "host name does not match") +
                   (config_.ca_file.empty() ? ", checked against the system CA store)"
                                            : ", checked against ca_file " + config_.ca_file + ")");
      }
#endif
      return a;
    }
    if (res->status >= 200 && res->status < 300) {
      a.ok = true;
      return a;
    }
    a.reason = "HTTP " + std::to_string(res->status);
    if (res->status == 429 || res->status == 503) {
      if (auto ra = parse_retry_after(res->get_header_value("Retry-After"))) {
        a.retry_after = *ra;
        a.reason += " (Retry-After " + res->get_header_value("Retry-After") + ")";
      }
    }
    return a;
  }

  // initial * 2^(n-1), capped at backoff_max, then scaled by a random factor in [0.5, 1].
  Clock::duration backoff(int failed_attempts) {
    const double exp = std::ldexp(config_.backoff_initial_seconds, std::min(failed_attempts - 1, 60));
    const double capped = std::min(exp, config_.backoff_max_seconds);
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    return std::chrono::duration_cast<Clock::duration>(Seconds(capped * jitter(rng_)));
  }

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
  const std::string type_ = config_.type;
  std::unique_ptr<Format> format_;
  std::unique_ptr<Outbox> outbox_;
  std::vector<Target> targets_;  // used by the worker; stop() may call client->stop() concurrently
  httplib::Headers headers_;
  double group_wait_ = 0;

  std::mutex enqueue_mu_;  // serialises enqueue() so seq, disk and queue order agree
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Message> queue_;
  uint64_t next_seq_ = 1;
  size_t in_flight_ = 0;
  NotifierStats stats_;
  bool stopping_ = false;
  bool stopped_ = false;
  bool worker_done_ = false;
  // flood control (mu_)
  std::unordered_map<std::string, Clock::time_point> last_firing_;
  std::unordered_set<std::string> suppressed_ids_;      // held-back firings not yet resolved
  std::unordered_set<std::string> held_back_resolved_;  // held back, resolved since (bounded)
  std::deque<std::string> held_back_order_;             // of held_back_resolved_, oldest first
  Clock::time_point window_start_{};
  int window_count_ = 0;
  uint64_t window_suppressed_ = 0;
  // alertmanager (mu_)
  std::map<std::string, Message> firing_;
  Clock::time_point next_resend_{};

  std::string node_hint_;  // worker only: the node of what this channel has seen
  std::mutex stop_mu_;
  std::mutex warn_mu_;
  Clock::time_point last_overflow_warning_{};
  std::mt19937_64 rng_;  // worker thread only
  std::thread worker_;   // last: started once everything above exists
};

}  // namespace

const std::vector<double>& latency_bounds() {
  static const std::vector<double> bounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                             2.5,   5,    10,    30,   60,  300, INFINITY};
  return bounds;
}

Result<std::unique_ptr<Notifier>> make_http_notifier(const NotifierConfig& config, std::unique_ptr<Format> format) {
  std::vector<HttpUrl> urls;
  std::vector<std::string> texts = config.urls;
  if (texts.empty()) texts.push_back(config.url);
  for (const auto& t : texts) {
    auto u = parse_http_url(t);
    if (!u) return make_error("notifier '" + config.name + "': url: " + u.error().message);
    if (config.type == "alertmanager" && (u->path == "/" || u->path.empty())) u->path = "/api/v2/alerts";
    urls.push_back(std::move(*u));
  }
  std::vector<Message> pending;
  auto outbox = Outbox::open(config.outbox_dir, pending);
  if (!outbox) return make_error("notifier '" + config.name + "': " + outbox.error().message);
  return std::unique_ptr<Notifier>(
      std::make_unique<HttpChannel>(config, std::move(format), std::move(*outbox), std::move(pending), std::move(urls)));
}

std::string describe_http_error(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection: return "cannot connect (refused or unreachable)";
    case httplib::Error::ConnectionTimeout: return "connect timed out";
    case httplib::Error::Read: return "no response (read failed or timed out)";
    case httplib::Error::Write: return "sending the request failed or timed out";
    case httplib::Error::SSLConnection: return "TLS handshake failed";
    case httplib::Error::SSLLoadingCerts: return "cannot load the CA certificates";
    case httplib::Error::SSLServerVerification: return "server certificate verification failed";
    case httplib::Error::Canceled: return "request canceled";
    default: return "HTTP client error: " + httplib::to_string(e);
  }
}

}  // namespace vigil::actions
