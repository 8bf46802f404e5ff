// Webhook delivery against a real cpp-httplib receiver on 127.0.0.1 (ephemeral port): body and
// headers, retries, receiver outages, giving up, a non-blocking enqueue, order and stop().
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>

#include "actions/notifier.h"

namespace vigil::actions {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Received {
  std::string path;  // with the query
  httplib::Headers headers;
  std::string body;
  int status = 0;  // what the receiver answered
};

// A webhook receiver. `respond` decides the status of each request; it may block.
class Receiver {
 public:
  using Respond = std::function<int(const httplib::Request&)>;

  explicit Receiver(Respond respond = nullptr, int port = 0) : respond_(std::move(respond)) {
    server_.Post(".*", [this](const httplib::Request& req, httplib::Response& res) {
      const int status = respond_ ? respond_(req) : 200;
      res.status = status;
      res.set_content("{}", "application/json");
      std::string path = req.path;
      if (!req.params.empty()) {
        std::string query;
        for (const auto& [k, v] : req.params) query += (query.empty() ? "?" : "&") + k + "=" + v;
        path += query;
      }
      std::lock_guard lock(mu_);
      received_.push_back({path, req.headers, req.body, status});
      cv_.notify_all();
    });
    if (port == 0) {
      port_ = server_.bind_to_any_port("127.0.0.1");
    } else if (server_.bind_to_port("127.0.0.1", port)) {
      port_ = port;
    }
    if (port_ <= 0) return;
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // Server::stop() is a no-op until the listen loop runs; wait for it so stop() always works.
    const auto deadline = Clock::now() + 2s;
    while (!server_.is_running() && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  }

  ~Receiver() { stop(); }

  int port() const { return port_; }
  std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

  bool wait_for(size_t n, std::chrono::milliseconds timeout = 3s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return received_.size() >= n; });
  }

  std::vector<Received> received() const {
    std::lock_guard lock(mu_);
    return received_;
  }

  void stop() {
    if (!thread_.joinable()) return;
    server_.stop();
    thread_.join();
  }

 private:
  Respond respond_;
  httplib::Server server_;
  int port_ = -1;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Received> received_;
};

// Blocks request handlers until released, so a test can hold a request in flight. The wait is
// bounded so that a failed assertion cannot hang the receiver's shutdown.
class Gate {
 public:
  void wait() {
    std::unique_lock lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait_for(lock, 3s, [&] { return open_; });
  }
  bool wait_until_waiting(std::chrono::milliseconds timeout = 3s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return waiting_ > 0; });
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
  bool open_ = false;
};

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 3s) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

Anomaly anomaly(const std::string& id) {
  Anomaly a;
  a.id = id;
  a.rule = "test_rule";
  a.severity = "warning";
  a.summary = "summary of " + id;
  a.started_at = 1795610096.789;
  a.node = "worker-1";
  a.metric = "vigil_test_total";
  a.value = 1;
  a.detector = "threshold";
  return a;
}

NotifierConfig webhook(const std::string& url) {
  NotifierConfig c;
  c.name = "hook";
  c.type = "webhook";
  c.url = url;
  c.timeout_seconds = 2;
  c.max_attempts = 5;
  c.backoff_initial_seconds = 0.02;
  c.backoff_max_seconds = 0.1;
  c.queue_limit = 100;
  return c;
}

std::unique_ptr<Notifier> make(const NotifierConfig& c) {
  auto n = make_notifier(c);
  EXPECT_TRUE(n.ok()) << n.error().message;
  return std::move(n).value();
}

std::string header(const Received& r, const std::string& name) {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? "" : it->second;
}

std::string body_id(const std::string& body) { return nlohmann::json::parse(body)["id"].get<std::string>(); }

double elapsed_seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

TEST(Webhook, DeliversBodyAndHeaders) {
  Receiver receiver;
  ASSERT_GT(receiver.port(), 0);
  auto config = webhook(receiver.url("/hook?team=net"));
  config.headers = {{"Authorization", "Bearer s3cret"}, {"X-Team", "net"}};
  auto notifier = make(config);

  const Anomaly a = anomaly("a1");
  notifier->enqueue(a);
  ASSERT_TRUE(receiver.wait_for(1));
  ASSERT_TRUE(eventually([&] { return notifier->stats().sent == 1; }));

  const Received r = receiver.received().at(0);
  EXPECT_EQ(r.path, "/hook?team=net");
  EXPECT_EQ(nlohmann::ordered_json::parse(r.body), encode_webhook_payload(a));
  EXPECT_EQ(header(r, "Content-Type"), "application/json");
  EXPECT_TRUE(std::regex_match(header(r, "User-Agent"), std::regex(R"(vigil/\d+\.\d+\.\d+)"))) << header(r, "User-Agent");
  EXPECT_EQ(header(r, "Authorization"), "Bearer s3cret");
  EXPECT_EQ(header(r, "X-Team"), "net");
  const std::string id = header(r, "Idempotency-Key");
  EXPECT_TRUE(std::regex_match(id, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << id;
  EXPECT_EQ(header(r, "X-Vigil-Delivery"), id);

  const NotifierStats s = notifier->stats();
  EXPECT_EQ(s.failed, 0u);
  EXPECT_EQ(s.retried, 0u);
  EXPECT_EQ(s.dropped, 0u);
  EXPECT_EQ(s.queue_depth, 0u);
  EXPECT_GT(s.last_delivery_seconds, 0);
  EXPECT_GE(s.delivery_seconds_sum, s.last_delivery_seconds);
  EXPECT_STREQ(notifier->type(), "webhook");
  EXPECT_EQ(notifier->name(), "hook");
}

TEST(Webhook, ConfiguredUserAgentWins) {
  Receiver receiver;
  auto config = webhook(receiver.url());
  config.headers = {{"user-agent", "custom/1"}};
  auto notifier = make(config);
  notifier->enqueue(anomaly("a1"));
  ASSERT_TRUE(receiver.wait_for(1));
  EXPECT_EQ(header(receiver.received().at(0), "User-Agent"), "custom/1");
  EXPECT_EQ(receiver.received().at(0).headers.count("User-Agent"), 1u);
}

TEST(Webhook, RetriesServerErrorsUntilAccepted) {
  std::atomic<int> calls{0};
  Receiver receiver([&](const httplib::Request&) { return ++calls <= 2 ? 500 : 200; });
  auto notifier = make(webhook(receiver.url()));

  notifier->enqueue(anomaly("a1"));
  ASSERT_TRUE(eventually([&] { return notifier->stats().sent == 1; }));
  const NotifierStats s = notifier->stats();
  EXPECT_EQ(s.failed, 2u);
  EXPECT_EQ(s.retried, 2u);
  EXPECT_EQ(s.dropped, 0u);

  // Every attempt carries the same delivery id, so the receiver can deduplicate.
  const auto received = receiver.received();
  ASSERT_EQ(received.size(), 3u);
  EXPECT_EQ(received[0].status, 500);
  EXPECT_EQ(received[2].status, 200);
  EXPECT_EQ(header(received[0], "Idempotency-Key"), header(received[2], "Idempotency-Key"));
  EXPECT_EQ(received[0].body, received[2].body);
}

TEST(Webhook, ReceiverDownThenUp) {
  int port = 0;
  {
    Receiver probe;  // find a free loopback port, then close it
    port = probe.port();
  }
  ASSERT_GT(port, 0);
  auto config = webhook("http://127.0.0.1:" + std::to_string(port) + "/hook");
  config.max_attempts = 100;
  config.backoff_initial_seconds = 0.02;
  config.backoff_max_seconds = 0.05;
  auto notifier = make(config);

  notifier->enqueue(anomaly("a1"));
  ASSERT_TRUE(eventually([&] { return notifier->stats().failed >= 2; }));
  Receiver receiver(nullptr, port);
  ASSERT_EQ(receiver.port(), port);
  ASSERT_TRUE(receiver.wait_for(1));
  ASSERT_TRUE(eventually([&] { return notifier->stats().sent == 1; }));
  EXPECT_EQ(body_id(receiver.received().at(0).body), "a1");
  EXPECT_GE(notifier->stats().retried, 2u);
  EXPECT_EQ(notifier->stats().dropped, 0u);
}

TEST(Webhook, GivesUpAfterMaxAttemptsAndMovesOn) {
  std::atomic<bool> healthy{false};
  Receiver receiver([&](const httplib::Request&) { return healthy ? 204 : 503; });
  auto config = webhook(receiver.url());
  config.max_attempts = 3;
  auto notifier = make(config);

  notifier->enqueue(anomaly("doomed"));
  ASSERT_TRUE(eventually([&] { return notifier->stats().dropped == 1; }));
  NotifierStats s = notifier->stats();
  EXPECT_EQ(s.sent, 0u);
  EXPECT_EQ(s.failed, 3u);
  EXPECT_EQ(s.retried, 2u);
  EXPECT_EQ(receiver.received().size(), 3u);

  healthy = true;
  notifier->enqueue(anomaly("next"));
  ASSERT_TRUE(eventually([&] { return notifier->stats().sent == 1; }));
  EXPECT_EQ(body_id(receiver.received().back().body), "next");
}

TEST(Webhook, EnqueueDoesNotBlockOnASlowReceiver) {
  Gate gate;
  Receiver receiver([&](const httplib::Request&) {
    gate.wait();
    return 200;
  });
  auto config = webhook(receiver.url());
  config.queue_limit = 100;
  auto notifier = make(config);

  notifier->enqueue(anomaly("first"));
  ASSERT_TRUE(gate.wait_until_waiting());  // the worker is now stuck in a request
  const auto start = Clock::now();
  for (int i = 0; i < 1000; ++i) notifier->enqueue(anomaly("m" + std::to_string(i)));
  EXPECT_LT(elapsed_seconds(start), 0.5);

  NotifierStats s = notifier->stats();
  EXPECT_EQ(s.queue_depth, 100u);
  EXPECT_EQ(s.dropped, 900u);  // the oldest waiting ones

  gate.open();
  ASSERT_TRUE(eventually([&] { return notifier->stats().sent == 101; }));
  // What survived is the newest 100, still in order.
  const auto received = receiver.received();
  ASSERT_EQ(received.size(), 101u);
  EXPECT_EQ(body_id(received[0].body), "first");
  EXPECT_EQ(body_id(received[1].body), "m900");
  EXPECT_EQ(body_id(received[100].body), "m999");
}

TEST(Webhook, OrderIsKeptWhileRetrying) {
  std::mutex mu;
  std::set<std::string> failed_once;
  // The first attempt of every third message fails; later messages must wait for it.
  Receiver receiver([&](const httplib::Request& req) {
    const std::string id = body_id(req.body);
    std::lock_guard lock(mu);
    if (std::stoi(id.substr(1)) % 3 == 1 && failed_once.insert(id).second) return 500;
    return 200;
  });
  auto notifier = make(webhook(receiver.url()));

  for (int i = 0; i < 10; ++i) notifier->enqueue(anomaly("m" + std::to_string(i)));
  ASSERT_TRUE(eventually([&] { return notifier->stats().sent == 10; }));

  std::vector<std::string> accepted;
  for (const auto& r : receiver.received())
    if (r.status == 200) accepted.push_back(body_id(r.body));
  const std::vector<std::string> expected = {"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"};
  EXPECT_EQ(accepted, expected);
  EXPECT_EQ(notifier->stats().retried, 3u);
}

TEST(Webhook, StopIsPromptDuringBackoff) {
  Receiver receiver([](const httplib::Request&) { return 500; });
  auto config = webhook(receiver.url());
  config.backoff_initial_seconds = 30;
  config.backoff_max_seconds = 60;
  auto notifier = make(config);

  notifier->enqueue(anomaly("a1"));
  notifier->enqueue(anomaly("a2"));
  ASSERT_TRUE(eventually([&] { return notifier->stats().failed == 1; }));
  const auto start = Clock::now();
  notifier->stop();
  EXPECT_LT(elapsed_seconds(start), 1.0);
  EXPECT_EQ(notifier->stats().dropped, 2u);  // the one in backoff and the one waiting
  EXPECT_EQ(notifier->stats().queue_depth, 0u);

  notifier->enqueue(anomaly("late"));  // after stop: counted, not delivered
  EXPECT_EQ(notifier->stats().dropped, 3u);
  notifier->stop();  // idempotent
}

TEST(Webhook, StopIsPromptDuringAHangingRequest) {
  Gate gate;
  Receiver receiver([&](const httplib::Request&) {
    gate.wait();
    return 200;
  });
  auto config = webhook(receiver.url());
  config.timeout_seconds = 30;
  auto notifier = make(config);

  notifier->enqueue(anomaly("a1"));
  ASSERT_TRUE(gate.wait_until_waiting());
  const auto start = Clock::now();
  notifier->stop();
  EXPECT_LT(elapsed_seconds(start), 1.0);
  EXPECT_EQ(notifier->stats().sent, 0u);
  EXPECT_EQ(notifier->stats().dropped, 1u);
  gate.open();
}

TEST(Webhook, DestructorStopsAnIdleNotifier) {
  const auto start = Clock::now();
  { auto notifier = make(webhook("http://127.0.0.1:9/hook")); }
  EXPECT_LT(elapsed_seconds(start), 1.0);
}

}  // namespace
}  // namespace vigil::actions
