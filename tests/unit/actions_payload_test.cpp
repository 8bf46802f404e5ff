// The webhook body: every field, the time format, non-finite numbers, and the example in
// docs/webhook.md.
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include <gtest/gtest.h>

#include "actions/notifier.h"

namespace vigil::actions {
namespace {

// 2026-11-25T12:34:56.789Z and seven minutes later.
constexpr double kStarted = 1795610096.789;
constexpr double kEnded = 1795610516.25;

Anomaly sample_anomaly() {
  Anomaly a;
  a.id = "3f9c2a7e61d04b8a";
  a.status = AnomalyStatus::Firing;
  a.rule = "dns_servfail_spike";
  a.severity = "warning";
  a.summary = "DNS SERVFAIL rate 12.5/s, baseline 0.4/s";
  a.started_at = kStarted;
  a.node = "worker-1";
  a.scope = make_labels({{"namespace", "shop"}, {"pod", "checkout-7d9f8"}, {"server", "10.96.0.10"}});
  a.pod_labels = {{"app", "checkout"}, {"team", "payments"}};
  a.metric = "vigil_dns_responses_total";
  a.metric_labels = make_labels({{"namespace", "shop"}, {"pod", "checkout-7d9f8"}, {"rcode", "SERVFAIL"}});
  a.value = 12.5;
  a.baseline = 0.4;
  a.score = 8.25;
  a.detector = "baseline.zscore";
  return a;
}

TEST(WebhookPayload, FiringAnomalyEncodesExactly) {
  const std::string expected =
      R"({"version":"vigil.v1","id":"3f9c2a7e61d04b8a","status":"firing","rule":"dns_servfail_spike",)"
      R"("severity":"warning","summary":"DNS SERVFAIL rate 12.5/s, baseline 0.4/s",)"
      R"("started_at":"2026-11-25T12:34:56.789Z",)"
      R"("scope":{"node":"worker-1","namespace":"shop","pod":"checkout-7d9f8",)"
      R"("labels":{"app":"checkout","team":"payments"},"group":{"server":"10.96.0.10"}},)"
      R"("metric":{"name":"vigil_dns_responses_total",)"
      R"("labels":{"namespace":"shop","pod":"checkout-7d9f8","rcode":"SERVFAIL"},)"
      R"("value":12.5,"baseline":0.4,"score":8.25},"detector":"baseline.zscore"})";
  EXPECT_EQ(encode_webhook_payload(sample_anomaly()).dump(), expected);
}

TEST(WebhookPayload, FieldByField) {
  const auto j = encode_webhook_payload(sample_anomaly());
  EXPECT_EQ(j["version"], "vigil.v1");
  EXPECT_EQ(j["id"], "3f9c2a7e61d04b8a");
  EXPECT_EQ(j["status"], "firing");
  EXPECT_EQ(j["rule"], "dns_servfail_spike");
  EXPECT_EQ(j["severity"], "warning");
  EXPECT_EQ(j["summary"], "DNS SERVFAIL rate 12.5/s, baseline 0.4/s");
  EXPECT_EQ(j["started_at"], "2026-11-25T12:34:56.789Z");
  EXPECT_FALSE(j.contains("ended_at"));
  EXPECT_EQ(j["scope"]["node"], "worker-1");
  EXPECT_EQ(j["scope"]["namespace"], "shop");
  EXPECT_EQ(j["scope"]["pod"], "checkout-7d9f8");
  EXPECT_EQ(j["scope"]["labels"]["app"], "checkout");
  EXPECT_EQ(j["scope"]["group"].size(), 1u);
  EXPECT_EQ(j["scope"]["group"]["server"], "10.96.0.10");
  EXPECT_EQ(j["metric"]["name"], "vigil_dns_responses_total");
  EXPECT_EQ(j["metric"]["labels"]["rcode"], "SERVFAIL");
  EXPECT_EQ(j["metric"]["value"], 12.5);
  EXPECT_EQ(j["metric"]["baseline"], 0.4);
  EXPECT_EQ(j["metric"]["score"], 8.25);
  EXPECT_EQ(j["detector"], "baseline.zscore");
}

TEST(WebhookPayload, ResolvedCarriesEndedAt) {
  Anomaly a = sample_anomaly();
  a.status = AnomalyStatus::Resolved;
  a.ended_at = kEnded;
  const auto j = encode_webhook_payload(a);
  EXPECT_EQ(j["status"], "resolved");
  EXPECT_EQ(j["started_at"], "2026-11-25T12:34:56.789Z");
  EXPECT_EQ(j["ended_at"], "2026-11-25T12:41:56.250Z");
}

TEST(WebhookPayload, NonFiniteNumbersBecomeNull) {
  Anomaly a = sample_anomaly();
  a.value = std::numeric_limits<double>::quiet_NaN();
  a.baseline = std::numeric_limits<double>::infinity();
  a.score = -std::numeric_limits<double>::infinity();
  a.started_at = std::numeric_limits<double>::quiet_NaN();
  const auto j = encode_webhook_payload(a);
  EXPECT_TRUE(j["metric"]["value"].is_null());
  EXPECT_TRUE(j["metric"]["baseline"].is_null());
  EXPECT_TRUE(j["metric"]["score"].is_null());
  EXPECT_TRUE(j["started_at"].is_null());
  EXPECT_NE(j.dump().find(R"("value":null)"), std::string::npos);
}

TEST(WebhookPayload, PodUnknownGivesNullNamespaceAndPod) {
  Anomaly a = sample_anomaly();
  a.scope = make_labels({{"node_ip", "10.0.0.5"}});
  a.pod_labels.clear();
  const auto j = encode_webhook_payload(a);
  EXPECT_TRUE(j["scope"]["namespace"].is_null());
  EXPECT_TRUE(j["scope"]["pod"].is_null());
  EXPECT_TRUE(j["scope"]["labels"].is_object());
  EXPECT_TRUE(j["scope"]["labels"].empty());
  EXPECT_EQ(j["scope"]["group"]["node_ip"], "10.0.0.5");
}

TEST(Rfc3339, UtcWithMilliseconds) {
  EXPECT_EQ(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_rfc3339(kStarted), "2026-11-25T12:34:56.789Z");
  EXPECT_EQ(format_rfc3339(1795610096.0), "2026-11-25T12:34:56.000Z");
  // Rounds to the nearest millisecond, carrying into the seconds.
  EXPECT_EQ(format_rfc3339(1795610096.9996), "2026-11-25T12:34:57.000Z");
  EXPECT_EQ(format_rfc3339(951782400.5), "2000-02-29T00:00:00.500Z");
  EXPECT_EQ(format_rfc3339(-0.25), "1969-12-31T23:59:59.750Z");
}

// The n-th (from 0) ```json block of docs/webhook.md, "" if there is none.
std::string documented_json(size_t n) {
  std::ifstream in(VIGIL_SOURCE_DIR "/docs/webhook.md");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  const std::string fence = "```json\n";
  size_t start = doc.find(fence);
  for (size_t i = 0; i < n && start != std::string::npos; ++i) start = doc.find(fence, start + fence.size());
  if (start == std::string::npos) return "";
  const size_t end = doc.find("\n```", start + fence.size());
  if (end == std::string::npos) return "";
  return doc.substr(start + fence.size(), end - start - fence.size());
}

// The capture follow-up in docs/webhook.md: the episode still firing, its capture ended with
// packets lost.
Anomaly documented_followup() {
  Anomaly a = sample_anomaly();
  a.captures = {"7c1e94d2a05b3f68"};
  a.event = kEventCaptureCompleted;
  a.capture_done.id = "7c1e94d2a05b3f68";
  a.capture_done.status = "incomplete";
  a.capture_done.ended_by = "after_elapsed";
  a.capture_done.complete = false;
  a.capture_done.packets = 18234;
  a.capture_done.packets_lost = 12;
  a.capture_done.bytes = 2516480;
  a.capture_done.window_start = kStarted - 10;
  a.capture_done.window_end = kStarted + 30;
  return a;
}

// The resolved example in docs/webhook.md (with a capture, for a notifier with agent_url) is
// exactly what the encoder produces.
TEST(WebhookPayload, MatchesDocumentedExample) {
  const std::string example = documented_json(0);
  ASSERT_FALSE(example.empty()) << "no ```json block in docs/webhook.md";

  Anomaly a = sample_anomaly();
  a.status = AnomalyStatus::Resolved;
  a.ended_at = kEnded;
  a.captures = {"7c1e94d2a05b3f68"};
  EXPECT_EQ(encode_webhook_payload(a, "http://worker-1:9965").dump(2), example);
}

TEST(WebhookPayload, MatchesDocumentedFollowUp) {
  const std::string example = documented_json(1);
  ASSERT_FALSE(example.empty()) << "no second ```json block (the capture follow-up) in docs/webhook.md";
  EXPECT_EQ(encode_webhook_payload(documented_followup(), "http://worker-1:9965").dump(2), example);
}

// The anomaly's own notifications have neither `event` nor `capture`; a follow-up has both,
// after the fields of the episode as it is then.
TEST(WebhookPayload, FollowUpAddsEventAndCapture) {
  const auto plain = encode_webhook_payload(sample_anomaly(), "http://worker-1:9965");
  EXPECT_FALSE(plain.contains("event"));
  EXPECT_FALSE(plain.contains("capture"));

  Anomaly a = documented_followup();
  a.status = AnomalyStatus::Resolved;  // the anomaly resolved before its capture ended
  a.ended_at = kEnded;
  a.capture_done.status = "failed";
  a.capture_done.ended_by = "error";
  a.capture_done.error = "write capture.pcapng: No space left on device";
  a.capture_done.window_end = std::numeric_limits<double>::quiet_NaN();
  const auto j = encode_webhook_payload(a, "http://worker-1:9965");
  EXPECT_EQ(j["event"], "capture.completed");
  EXPECT_EQ(j["status"], "resolved");
  EXPECT_EQ(j["ended_at"], "2026-11-25T12:41:56.250Z");
  EXPECT_EQ(j["capture"]["status"], "failed");
  EXPECT_FALSE(j["capture"].contains("url")) << "a failed capture has no pcapng to link";
  EXPECT_EQ(j["capture"]["error"], "write capture.pcapng: No space left on device");
  EXPECT_TRUE(j["capture"]["window"]["end"].is_null());
  EXPECT_FALSE(encode_webhook_payload(documented_followup())["capture"].contains("url")) << "no agent_url";
}

// The agent fills the follow-up from the capture's manifest (actions/capture.cpp writes it).
TEST(WebhookPayload, CaptureDoneFromAManifest) {
  const auto m = nlohmann::json::parse(R"({
    "id": "7c1e94d2a05b3f68", "status": "incomplete", "ended_by": "max_packets", "error": null,
    "window": {"start": 1795610086.789, "trigger": 1795610096.789, "end": 1795610126.789},
    "packets": 18234, "bytes_written": 2516480, "packets_lost": 12, "complete": false})");
  const auto d = capture_done_from_manifest(m);
  EXPECT_EQ(d.id, "7c1e94d2a05b3f68");
  EXPECT_EQ(d.status, "incomplete");
  EXPECT_EQ(d.ended_by, "max_packets");
  EXPECT_EQ(d.error, "");
  EXPECT_FALSE(d.complete);
  EXPECT_EQ(d.packets, 18234u);
  EXPECT_EQ(d.packets_lost, 12u);
  EXPECT_EQ(d.bytes, 2516480u);
  EXPECT_DOUBLE_EQ(d.window_start, 1795610086.789);
  EXPECT_DOUBLE_EQ(d.window_end, 1795610126.789);
  const auto failed = capture_done_from_manifest(nlohmann::json::parse(
      R"({"id": "x", "status": "failed", "ended_by": "error", "error": "ENOSPC", "complete": false})"));
  EXPECT_EQ(failed.error, "ENOSPC");
  EXPECT_EQ(failed.packets, 0u);
  EXPECT_EQ(capture_done_from_manifest(nlohmann::json()).id, "");
}

}  // namespace
}  // namespace vigil::actions
