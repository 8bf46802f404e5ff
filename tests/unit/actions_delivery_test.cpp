// Delivery under faults, against loopback receivers: one that is down for a while, one that
// answers 500, one that answers 429 with Retry-After, one that hangs past the client timeout.
// Every notification arrives once the receiver recovers, in order, each with one idempotency
// key across its retries; a second channel and the caller never wait. Also flood control.
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "actions/notifier_impl.h"
#include "actions_test_receiver.h"

namespace vigil::actions {
namespace {

using namespace testing;

// A loopback port with nothing listening (bound, then released).
int dead_port() {
  HttpReceiver r;
  const int port = r.port();
  r.stop();
  return port;
}

// Checks what `rx` accepted: ids in enqueue order, and each id delivered with exactly one
// idempotency key over all the attempts it took (retries reuse it).
void expect_in_order_once(const HttpReceiver& rx, const std::vector<std::string>& ids) {
  std::vector<std::string> got;
  for (const auto& h : rx.ok_hits()) got.push_back(h.json()["id"]);
  EXPECT_EQ(got, ids);
  std::map<std::string, std::set<std::string>> keys;
  for (const auto& h : rx.hits()) keys[h.json()["id"]].insert(h.header("Idempotency-Key"));
  for (const auto& [id, k] : keys) EXPECT_EQ(k.size(), 1u) << id;
}

struct Fixture {
  std::vector<std::string> ids;
  // Enqueues n anomalies to both channels; returns the longest enqueue() call.
  Clock::duration enqueue(Notifier& a, Notifier& b, int n) {
    Clock::duration worst{};
    for (int i = 0; i < n; ++i) {
      const std::string id = "a" + std::to_string(ids.size());
      ids.push_back(id);
      const auto t0 = Clock::now();
      a.enqueue(sample_anomaly(id));
      b.enqueue(sample_anomaly(id));
      worst = std::max(worst, Clock::now() - t0);
    }
    return worst;
  }
};

TEST(Delivery, ReceiverDownForAWhileGetsEverythingInOrder) {
  const int port = dead_port();
  HttpReceiver healthy;
  auto down = must_make(channel("webhook", "http://127.0.0.1:" + std::to_string(port) + "/hook", "down"));
  auto up = must_make(channel("webhook", healthy.url(), "up"));
  Fixture f;
  const auto worst = f.enqueue(*down, *up, 20);
  EXPECT_LT(worst, 50ms);
  ASSERT_TRUE(healthy.wait_ok(20, 2s));  // the other channel does not wait for the dead one
  std::this_thread::sleep_for(1500ms);   // "a minute" of outage, scaled down
  EXPECT_EQ(down->stats().sent, 0u);
  EXPECT_GT(down->stats().failed, 1u);
  HttpReceiver back(nullptr, port);
  ASSERT_EQ(back.port(), port);
  ASSERT_TRUE(back.wait_ok(20, 5s));
  expect_in_order_once(back, f.ids);
  EXPECT_TRUE(eventually([&] { return down->stats().sent == 20u; }, 2s));  // the last 2xx is being read
  EXPECT_EQ(down->stats().dropped, 0u);
  expect_in_order_once(healthy, f.ids);
}

TEST(Delivery, ServerErrorsAreRetriedWithTheSameKey) {
  std::atomic<int> calls{0};
  HttpReceiver rx([&](const httplib::Request&, httplib::Response& res) {
    if (calls.fetch_add(1) < 5) res.status = 500;
  });
  HttpReceiver healthy;
  auto failing = must_make(channel("webhook", rx.url(), "failing"));
  auto up = must_make(channel("webhook", healthy.url(), "up"));
  Fixture f;
  f.enqueue(*failing, *up, 10);
  ASSERT_TRUE(rx.wait_ok(10, 5s));
  expect_in_order_once(rx, f.ids);
  EXPECT_EQ(failing->stats().failed, 5u);
  EXPECT_EQ(failing->stats().retried, 5u);
  // The 5 failures were all attempts at the first notification, with one key.
  const auto hits = rx.hits();
  for (int i = 1; i < 6; ++i) EXPECT_EQ(hits[i].header("Idempotency-Key"), hits[0].header("Idempotency-Key"));
  ASSERT_TRUE(healthy.wait_ok(10, 2s));
}

TEST(Delivery, TooManyRequestsHonoursRetryAfter) {
  std::atomic<int> calls{0};
  HttpReceiver rx([&](const httplib::Request&, httplib::Response& res) {
    const int n = calls.fetch_add(1);
    if (n == 0) {
      res.status = 429;
      res.set_header("Retry-After", "1");
    } else if (n == 1) {
      res.status = 503;
      res.set_header("Retry-After", "1");
    }
  });
  auto n = must_make(channel("webhook", rx.url()));  // backoff 20 ms: only Retry-After explains a 1 s wait
  n->enqueue(sample_anomaly("x"));
  n->enqueue(sample_anomaly("y"));
  ASSERT_TRUE(rx.wait_ok(2, 5s));
  const auto hits = rx.hits();
  ASSERT_EQ(hits.size(), 4u);
  EXPECT_GE(hits[1].at - hits[0].at, 950ms);
  EXPECT_GE(hits[2].at - hits[1].at, 950ms);
  expect_in_order_once(rx, {"x", "y"});
}

TEST(Delivery, HangingReceiverTimesOutAndTheRetryIsRecognisable) {
  std::atomic<int> calls{0};
  // The first request is processed but answered after the client gave up: the response is
  // lost, the retry carries the same key so the receiver can drop the duplicate.
  HttpReceiver rx([&](const httplib::Request&, httplib::Response&) {
    if (calls.fetch_add(1) == 0) std::this_thread::sleep_for(1500ms);
  });
  HttpReceiver healthy;
  auto c = channel("webhook", rx.url(), "hanging");
  c.timeout_seconds = 0.5;
  auto hanging = must_make(c);
  auto up = must_make(channel("webhook", healthy.url(), "up"));
  Fixture f;
  const auto worst = f.enqueue(*hanging, *up, 5);
  EXPECT_LT(worst, 50ms);
  ASSERT_TRUE(healthy.wait_ok(5, 1s));  // not held up by the hang
  ASSERT_TRUE(rx.wait_ok(6, 8s));       // the lost one, its retry, and 4 more
  auto hits = rx.ok_hits();
  EXPECT_EQ(hits[0].json()["id"], "a0");
  EXPECT_EQ(hits[1].json()["id"], "a0");
  EXPECT_EQ(hits[0].header("Idempotency-Key"), hits[1].header("Idempotency-Key"));
  std::vector<std::string> got;
  for (size_t i = 1; i < hits.size(); ++i) got.push_back(hits[i].json()["id"]);
  EXPECT_EQ(got, f.ids);
  EXPECT_GE(hanging->stats().failed, 1u);
}

TEST(Delivery, BoundedQueueDropsTheOldestAndCountsThem) {
  const int port = dead_port();
  auto c = channel("webhook", "http://127.0.0.1:" + std::to_string(port) + "/", "small");
  c.queue_limit = 5;
  c.backoff_initial_seconds = 0.05;
  auto n = must_make(c);
  n->enqueue(sample_anomaly("m0"));
  ASSERT_TRUE(eventually([&] { return n->stats().failed >= 1u; }, 2s));  // m0 is in flight
  for (int i = 1; i < 12; ++i) n->enqueue(sample_anomaly("m" + std::to_string(i)));
  // One is in flight; the queue holds the 5 newest; the rest were dropped.
  ASSERT_TRUE(eventually([&] { return n->stats().dropped == 6u; }, 2s)) << n->stats().dropped;
  EXPECT_EQ(n->stats().queue_depth, 5u);
  HttpReceiver back(nullptr, port);
  ASSERT_TRUE(back.wait_ok(6, 5s));
  std::vector<std::string> got;
  for (const auto& h : back.ok_hits()) got.push_back(h.json()["id"]);
  EXPECT_EQ(got, (std::vector<std::string>{"m0", "m7", "m8", "m9", "m10", "m11"}));
}

TEST(FloodControl, RateLimitSendsASummaryOfWhatItHeldBack) {
  HttpReceiver rx;
  auto c = channel("webhook", rx.url());
  c.rate_limit = 3;
  c.rate_limit_period_seconds = 1;
  auto n = must_make(c);
  for (int i = 0; i < 10; ++i) n->enqueue(sample_anomaly("r" + std::to_string(i), "pod-" + std::to_string(i)));
  n->enqueue(resolved(sample_anomaly("r9", "pod-9")));  // the resolve of a held-back one is held back too
  ASSERT_TRUE(rx.wait_ok(4, 3s));
  const auto hits = rx.ok_hits();
  EXPECT_EQ(hits[0].json()["id"], "r0");
  EXPECT_EQ(hits[2].json()["id"], "r2");
  const auto summary = hits[3].json();
  EXPECT_EQ(summary["rule"], "vigil_rate_limit");
  EXPECT_EQ(summary["status"], "resolved");
  EXPECT_EQ(summary["metric"]["value"], 7);
  EXPECT_EQ(summary["summary"], "7 notifications to channel ch suppressed by its rate limit (3 per 1s)");
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(rx.ok_hits().size(), 4u);
  EXPECT_EQ(n->stats().suppressed, 8u);
}

TEST(FloodControl, RepeatsOfTheSameRuleAndScopeAreSuppressed) {
  HttpReceiver rx;
  auto c = channel("webhook", rx.url());
  c.suppress_repeats_seconds = 60;
  auto n = must_make(c);
  n->enqueue(sample_anomaly("e1"));
  n->enqueue(resolved(sample_anomaly("e1")));
  n->enqueue(sample_anomaly("e2"));  // the same rule and pod flapping: held back
  n->enqueue(resolved(sample_anomaly("e2")));
  n->enqueue(sample_anomaly("e3", "other-pod"));
  ASSERT_TRUE(rx.wait_ok(3, 3s));
  std::this_thread::sleep_for(100ms);
  std::vector<std::string> got;
  for (const auto& h : rx.ok_hits()) got.push_back(std::string(h.json()["id"]) + "/" + std::string(h.json()["status"]));
  EXPECT_EQ(got, (std::vector<std::string>{"e1/firing", "e1/resolved", "e3/firing"}));
  EXPECT_EQ(n->stats().suppressed, 2u);
}

// "<id>/<status>" of an anomaly's own notification, "<id>/<capture id>" of a follow-up.
std::vector<std::string> delivered(const HttpReceiver& rx) {
  std::vector<std::string> got;
  for (const auto& h : rx.ok_hits()) {
    const auto b = h.json();
    got.push_back(std::string(b["id"]) + "/" + (b.contains("event") ? std::string(b["capture"]["id"]) : std::string(b["status"])));
  }
  return got;
}

// Capture follow-ups are not firings: the rate limit neither counts nor holds them back. The
// follow-up of a firing that the rate limit held back is held back too (the receiver never
// heard of that episode).
TEST(FloodControl, FollowUpsAreNotRateLimited) {
  HttpReceiver rx;
  auto c = channel("webhook", rx.url());
  c.rate_limit = 2;
  c.rate_limit_period_seconds = 60;
  auto n = must_make(c);
  const auto e1 = sample_anomaly("e1");
  n->enqueue(e1);
  for (const char* id : {"c-1", "c-2", "c-3"}) n->enqueue(capture_followup(e1, id));
  n->enqueue(sample_anomaly("e2", "pod-2"));  // the second firing of the window: sent
  n->enqueue(sample_anomaly("e3", "pod-3"));  // the third: held back
  n->enqueue(capture_followup(sample_anomaly("e3", "pod-3")));
  n->enqueue(capture_followup(e1, "c-4"));
  ASSERT_TRUE(rx.wait_ok(6, 3s)) << rx.ok_hits().size();
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(delivered(rx), (std::vector<std::string>{"e1/firing", "e1/c-1", "e1/c-2", "e1/c-3", "e2/firing", "e1/c-4"}));
  EXPECT_EQ(n->stats().suppressed, 2u);
}

// A follow-up is no repeat of its episode, and comes through after the anomaly resolved; the
// follow-up of a suppressed repeat does not, even after that repeat's resolve.
TEST(FloodControl, FollowUpsAreNotSuppressedAsRepeats) {
  HttpReceiver rx;
  auto c = channel("webhook", rx.url());
  c.suppress_repeats_seconds = 60;
  auto n = must_make(c);
  n->enqueue(sample_anomaly("e1"));
  n->enqueue(resolved(sample_anomaly("e1")));
  n->enqueue(sample_anomaly("e2"));  // a repeat of e1's rule and pod: held back
  n->enqueue(resolved(sample_anomaly("e2")));
  n->enqueue(capture_followup(resolved(sample_anomaly("e1"))));
  n->enqueue(capture_followup(resolved(sample_anomaly("e2"))));
  ASSERT_TRUE(rx.wait_ok(3, 3s));
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(delivered(rx), (std::vector<std::string>{"e1/firing", "e1/resolved", "e1/c-0001"}));
  EXPECT_EQ(rx.ok_hits()[2].json()["status"], "resolved");
  EXPECT_EQ(n->stats().suppressed, 3u);
}

// Slack's group_wait neither delays a follow-up nor merges it into a group of anomalies.
TEST(FloodControl, SlackGroupWaitDoesNotHoldOrMergeFollowUps) {
  HttpReceiver rx;
  auto c = channel("slack", rx.url());
  c.group_wait_seconds = 0.5;
  auto n = must_make(c);
  const auto start = Clock::now();
  n->enqueue(capture_followup(sample_anomaly("x0", "pod-0")));
  ASSERT_TRUE(rx.wait_ok(1, 2s));
  EXPECT_LT(rx.ok_hits()[0].at - start, 400ms) << "not held for group_wait";
  n->enqueue(sample_anomaly("a1", "pod-1"));
  n->enqueue(capture_followup(sample_anomaly("x0", "pod-0"), "c-0002"));
  n->enqueue(sample_anomaly("a2", "pod-2"));
  ASSERT_TRUE(rx.wait_ok(3, 3s));
  std::this_thread::sleep_for(150ms);
  const auto hits = rx.ok_hits();
  ASSERT_EQ(hits.size(), 3u);
  EXPECT_EQ(hits[0].json()["text"], "Capture ready for pod_drop_surge on shop/pod-0: 1234 packets (3 lost, incomplete)");
  EXPECT_EQ(hits[1].json()["text"], "2 anomalies on worker-1") << hits[1].body;
  EXPECT_EQ(hits[2].json()["text"], "Capture ready for pod_drop_surge on shop/pod-0: 1234 packets (3 lost, incomplete)");
  EXPECT_EQ(n->stats().sent, 4u);
}

// The follow-up's Idempotency-Key differs from the firing's (a receiver that drops repeated
// keys keeps it), is the same when the same follow-up is sent again, and differs per capture.
TEST(Delivery, FollowUpHasAnIdempotencyKeyOfItsOwn) {
  HttpReceiver rx;
  auto n = must_make(channel("webhook", rx.url(), "hook"));
  const auto a = sample_anomaly("k1");
  n->enqueue(a);
  n->enqueue(capture_followup(a));
  n->enqueue(capture_followup(a));  // the agent sending it again
  n->enqueue(capture_followup(a, "c-0002"));
  ASSERT_TRUE(rx.wait_ok(4));
  const auto hits = rx.ok_hits();
  const std::string firing = hits[0].header("Idempotency-Key");
  const std::string follow = hits[1].header("Idempotency-Key");
  EXPECT_NE(follow, firing);
  EXPECT_EQ(hits[2].header("Idempotency-Key"), follow);
  EXPECT_NE(hits[3].header("Idempotency-Key"), follow);
  EXPECT_EQ(follow, followup_key("hook", capture_followup(a)));
  EXPECT_NE(followup_key("other", capture_followup(a)), follow) << "per channel";
  EXPECT_EQ(hits[1].header("X-Vigil-Delivery"), follow);
  EXPECT_EQ(follow.size(), 36u);
  EXPECT_EQ(follow[14], '8') << "a version 8 UUID: " << follow;
}

TEST(Delivery, LatencyHistogramCountsEverySent) {
  HttpReceiver rx;
  auto n = must_make(channel("webhook", rx.url()));
  for (int i = 0; i < 5; ++i) n->enqueue(sample_anomaly("h" + std::to_string(i)));
  ASSERT_TRUE(eventually([&] { return n->stats().sent == 5u; }));
  const auto st = n->stats();
  ASSERT_EQ(st.latency_buckets.size(), latency_bounds().size());
  uint64_t total = 0;
  for (auto b : st.latency_buckets) total += b;
  EXPECT_EQ(total, 5u);
  EXPECT_GT(st.delivery_seconds_sum, 0);
}

}  // namespace
}  // namespace vigil::actions
