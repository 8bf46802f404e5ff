// Exact request bodies per notifier type, as a loopback receiver gets them: Slack Block Kit,
// PagerDuty Events API v2 (the resolve reuses the trigger's dedup_key), the webhook with a
// template and an HMAC signature, and the vigil.v1 body against docs/webhook.schema.json.
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "actions/notifier_impl.h"
#include "actions_test_receiver.h"

namespace vigil::actions {
namespace {

using namespace testing;
using json = nlohmann::json;

TEST(SlackFormat, FiringAndResolvedBodiesAreExact) {
  HttpReceiver rx;
  auto c = channel("slack", rx.url("/services/T0/B0/XXX"));
  c.agent_url = "http://worker-1:9965";
  auto n = must_make(c);
  n->enqueue(sample_anomaly("3f9c2a7e61d04b8a"));
  n->enqueue(resolved(sample_anomaly("3f9c2a7e61d04b8a")));
  ASSERT_TRUE(rx.wait_ok(2));
  const auto hits = rx.ok_hits();
  EXPECT_EQ(hits[0].path, "/services/T0/B0/XXX");
  const json firing = json::parse(R"({
    "text": "[CRITICAL] pod_drop_surge firing on shop/checkout-7d9f8: drops 12.5/s, baseline 0.4/s",
    "blocks": [
      {"type": "header", "text": {"type": "plain_text", "text": "🔴 CRITICAL pod_drop_surge firing", "emoji": true}},
      {"type": "section", "text": {"type": "mrkdwn", "text": "drops 12.5/s, baseline 0.4/s"}},
      {"type": "section", "fields": [
        {"type": "mrkdwn", "text": "*Namespace*\nshop"},
        {"type": "mrkdwn", "text": "*Pod*\ncheckout-7d9f8"},
        {"type": "mrkdwn", "text": "*Node*\nworker-1"},
        {"type": "mrkdwn", "text": "*Observed vs expected*\n12.5 vs 0.4"}]},
      {"type": "context", "elements": [{"type": "mrkdwn",
        "text": "`vigil_drop_packets_total` · baseline.zscore score 8.25 · started 2026-11-25T12:34:56.789Z · id 3f9c2a7e61d04b8a"}]},
      {"type": "actions", "elements": [{"type": "button",
        "text": {"type": "plain_text", "text": "Agent: rules", "emoji": true}, "url": "http://worker-1:9965/api/v1/rules"}]}
    ]})");
  EXPECT_EQ(hits[0].json(), firing) << hits[0].body;
  json resolved_body = firing;
  resolved_body["text"] = "[CRITICAL] pod_drop_surge resolved on shop/checkout-7d9f8: drops 12.5/s, baseline 0.4/s";
  resolved_body["blocks"][0]["text"]["text"] = "✅ CRITICAL pod_drop_surge resolved";
  resolved_body["blocks"][1]["text"]["text"] = "drops 12.5/s, baseline 0.4/s\nResolved after 6m 59s.";
  EXPECT_EQ(hits[1].json(), resolved_body) << hits[1].body;
  EXPECT_EQ(hits[0].header("Content-Type"), "application/json");
}

TEST(SlackFormat, AnomaliesStartingTogetherOnANodeAreOneMessage) {
  HttpReceiver rx;
  auto c = channel("slack", rx.url());
  c.group_wait_seconds = 0.3;
  auto n = must_make(c);
  const auto start = Clock::now();
  for (int i = 0; i < 3; ++i) n->enqueue(sample_anomaly("id" + std::to_string(i), "pod-" + std::to_string(i)));
  ASSERT_TRUE(rx.wait_ok(1));
  EXPECT_GE(rx.ok_hits()[0].at - start, 250ms);
  std::this_thread::sleep_for(200ms);
  ASSERT_EQ(rx.ok_hits().size(), 1u) << rx.ok_hits()[0].body << "\n" << rx.ok_hits()[1].body;
  const json body = rx.ok_hits()[0].json();
  EXPECT_EQ(body["text"], "3 anomalies on worker-1");
  EXPECT_EQ(body["blocks"][0]["text"]["text"], "🔴 3 anomalies on worker-1");
  ASSERT_EQ(body["blocks"].size(), 4u);  // header + one section per anomaly
  EXPECT_EQ(body["blocks"][2]["text"]["text"],
            "*CRITICAL* `pod_drop_surge` shop/pod-1\ndrops 12.5/s, baseline 0.4/s\nobserved 12.5 vs expected 0.4");
  EXPECT_EQ(n->stats().sent, 3u);
}

TEST(SlackFormat, EscapesMarkup) {
  HttpReceiver rx;
  auto n = must_make(channel("slack", rx.url()));
  auto a = sample_anomaly("x");
  a.summary = "<!channel> & <http://evil|click>";
  n->enqueue(a);
  ASSERT_TRUE(rx.wait_ok(1));
  EXPECT_EQ(rx.ok_hits()[0].json()["blocks"][1]["text"]["text"], "&lt;!channel&gt; &amp; &lt;http://evil|click&gt;");
}

TEST(SlackFormat, ShowsTheRecentValuesAsASparkline) {
  HttpReceiver rx;
  auto n = must_make(channel("slack", rx.url()));
  auto a = sample_anomaly("x");
  a.recent = {0.5, 0.4, 0.5, 0.3, 6, 12.5};
  a.recent_step = 50;
  n->enqueue(a);
  ASSERT_TRUE(rx.wait_ok(1));
  const json body = rx.ok_hits()[0].json();
  ASSERT_GE(body["blocks"].size(), 4u);
  EXPECT_EQ(body["blocks"][3]["text"]["text"], "*Last 5m* (0.3 to 12.5)\n`▁▁▁▁▄█`") << body.dump(2);
}

TEST(WebhookPayload, CarriesTheRecentValues) {
  auto a = sample_anomaly("x");
  EXPECT_FALSE(encode_webhook_payload(a)["metric"].contains("recent")) << "none known, none sent";
  a.recent = {1, 2, 12.5};
  a.recent_step = 10;
  const json body = json::parse(dump_json(encode_webhook_payload(a)));
  EXPECT_EQ(body["metric"]["recent"], json::parse(R"({"step_seconds": 10, "values": [1, 2, 12.5]})"));
}

// Captures started for the episode: links to <agent_url>/api/v1/captures/<id>/pcap in every
// format, the ids alone without an agent_url.
json render_one(const std::string& type, const Anomaly& a, const std::string& agent_url = "http://worker-1:9965") {
  NotifierConfig c = channel(type, "http://127.0.0.1:9/x");
  c.routing_key = "R0UTINGKEY";
  c.agent_url = agent_url;
  std::unique_ptr<Format> f = type == "webhook"  ? make_webhook_format(c)
                              : type == "slack"   ? make_slack_format(c)
                              : type == "pagerduty" ? make_pagerduty_format(c)
                                                    : make_alertmanager_format(c);
  Message m;
  m.anomaly = a;
  return json::parse(f->render({&m}).body);
}

Anomaly with_captures() {
  auto a = sample_anomaly("3f9c2a7e61d04b8a");
  a.captures = {"c-0001", "c-0002"};
  return a;
}

TEST(WebhookPayload, CarriesTheCaptures) {
  EXPECT_FALSE(encode_webhook_payload(sample_anomaly("x")).contains("captures")) << "none started, none sent";
  EXPECT_EQ(json::parse(dump_json(encode_webhook_payload(with_captures(), "http://worker-1:9965/")))["captures"],
            json::parse(R"([{"id": "c-0001", "url": "http://worker-1:9965/api/v1/captures/c-0001/pcap"},
                            {"id": "c-0002", "url": "http://worker-1:9965/api/v1/captures/c-0002/pcap"}])"));
  EXPECT_EQ(json::parse(dump_json(encode_webhook_payload(with_captures())))["captures"],
            json::parse(R"([{"id": "c-0001"}, {"id": "c-0002"}])"))
      << "no agent_url, no link";
  // The webhook notifier takes agent_url; the resolve carries the captures too.
  EXPECT_EQ(render_one("webhook", resolved(with_captures()))["captures"][1]["url"],
            "http://worker-1:9965/api/v1/captures/c-0002/pcap");
  NotifierConfig c = channel("webhook", "http://127.0.0.1:9/x");
  c.agent_url = "http://worker-1:9965";
  EXPECT_FALSE(find_config_problem(c));
  EXPECT_EQ(types_taking("agent_url", "webhook"), "");
  // A template may use them.
  EXPECT_FALSE(template_problem(R"({"links": "{{captures}}"})"));
}

TEST(SlackFormat, ACaptureButtonPerCapture) {
  const json body = render_one("slack", with_captures());
  const json& actions = body["blocks"].back();
  ASSERT_EQ(actions["type"], "actions") << body.dump(2);
  ASSERT_EQ(actions["elements"].size(), 3u);
  EXPECT_EQ(actions["elements"][0]["url"], "http://worker-1:9965/api/v1/rules");
  EXPECT_EQ(actions["elements"][1]["text"]["text"], "Capture 1");
  EXPECT_EQ(actions["elements"][1]["url"], "http://worker-1:9965/api/v1/captures/c-0001/pcap");
  EXPECT_EQ(actions["elements"][2]["text"]["text"], "Capture 2");
  EXPECT_EQ(actions["elements"][2]["url"], "http://worker-1:9965/api/v1/captures/c-0002/pcap");
  auto one = sample_anomaly("x");
  one.captures = {"c-9"};
  EXPECT_EQ(render_one("slack", one)["blocks"].back()["elements"][1]["text"]["text"], "Capture");
  // Without agent_url there is nothing to link: the context names the ids.
  const json bare = render_one("slack", resolved(with_captures()), "");
  EXPECT_NE(bare["blocks"].back()["type"], "actions");
  EXPECT_NE(bare["blocks"].back()["elements"][0]["text"].get<std::string>().find("· capture c-0001, c-0002"), std::string::npos)
      << bare.dump(2);
}

TEST(SlackFormat, GroupedMessagesLinkEachPodsCapture) {
  NotifierConfig c = channel("slack", "http://127.0.0.1:9/x");
  c.agent_url = "http://worker-1:9965";
  auto f = make_slack_format(c);
  Message m1, m2;
  m1.anomaly = sample_anomaly("a", "web-1");
  m1.anomaly.captures = {"c-1"};
  m2.anomaly = sample_anomaly("b", "web-2");
  m2.anomaly.captures = {"c-2"};
  const json body = json::parse(f->render({&m1, &m2}).body);
  const json& actions = body["blocks"].back();
  ASSERT_EQ(actions["elements"].size(), 3u) << body.dump(2);
  EXPECT_EQ(actions["elements"][1]["text"]["text"], "Capture web-1");
  EXPECT_EQ(actions["elements"][2]["url"], "http://worker-1:9965/api/v1/captures/c-2/pcap");
}

TEST(PagerDutyFormat, LinksEachCapture) {
  const json body = render_one("pagerduty", with_captures());
  EXPECT_EQ(body["links"], json::parse(R"([
    {"href": "http://worker-1:9965/api/v1/rules", "text": "Vigil agent on worker-1"},
    {"href": "http://worker-1:9965/api/v1/captures/c-0001/pcap", "text": "Packet capture c-0001"},
    {"href": "http://worker-1:9965/api/v1/captures/c-0002/pcap", "text": "Packet capture c-0002"}])"));
  EXPECT_EQ(body["payload"]["custom_details"]["captures"][0]["url"], "http://worker-1:9965/api/v1/captures/c-0001/pcap");
}

TEST(AlertmanagerFormat, AnnotatesTheCaptures) {
  const json alert = render_one("alertmanager", with_captures())[0];
  EXPECT_EQ(alert["annotations"]["capture_url"], "http://worker-1:9965/api/v1/captures/c-0001/pcap");
  EXPECT_EQ(alert["annotations"]["capture_ids"], "c-0001,c-0002");
  const json resolved_alert = render_one("alertmanager", resolved(with_captures()), "")[0];
  EXPECT_FALSE(resolved_alert["annotations"].contains("capture_url"));
  EXPECT_EQ(resolved_alert["annotations"]["capture_ids"], "c-0001,c-0002");
  const json none = render_one("alertmanager", sample_anomaly("x"))[0];
  EXPECT_FALSE(none["annotations"].contains("capture_ids"));
  EXPECT_FALSE(none["annotations"].contains("capture_url"));
}

// --- the capture follow-up (event "capture.completed") in every format --------------------

TEST(WebhookFormat, FollowUpBodyHasTheEventAndTheCapture) {
  const json body = render_one("webhook", capture_followup(sample_anomaly("3f9c2a7e61d04b8a")));
  EXPECT_EQ(body["event"], "capture.completed");
  EXPECT_EQ(body["id"], "3f9c2a7e61d04b8a");
  EXPECT_EQ(body["status"], "firing");
  EXPECT_EQ(body["capture"], json::parse(R"({
    "id": "c-0001", "url": "http://worker-1:9965/api/v1/captures/c-0001/pcap",
    "status": "incomplete", "complete": false, "packets": 1234, "packets_lost": 3, "bytes": 190000,
    "ended_by": "after_elapsed", "error": null,
    "window": {"start": "2026-11-25T12:34:46.789Z", "end": "2026-11-25T12:35:26.789Z"}})"));
  EXPECT_EQ(body["captures"], json::parse(R"([{"id": "c-0001", "url": "http://worker-1:9965/api/v1/captures/c-0001/pcap"}])"));
}

// A template written for anomalies only would show the follow-up as the anomaly again: such a
// webhook gets none. One that uses {{event}} or {{capture...}} gets them.
TEST(WebhookFormat, TemplatesGetFollowUpsOnlyIfTheyAskForThem) {
  Message m;
  m.anomaly = capture_followup(sample_anomaly("a"));
  NotifierConfig c = channel("webhook", "http://127.0.0.1:9/x");
  c.agent_url = "http://worker-1:9965";
  c.body_template = R"({"text": "{{severity}}: {{summary}}"})";
  EXPECT_NE(make_webhook_format(c)->render({&m}).skip, "");
  c.body_template = R"({"text": "{{summary}}", "kind": "{{event}}"})";
  ASSERT_FALSE(template_problem(c.body_template));
  auto r = make_webhook_format(c)->render({&m});
  EXPECT_EQ(r.skip, "");
  EXPECT_EQ(json::parse(r.body)["kind"], "capture.completed");
  c.body_template = R"({"pcap": "{{capture.url}}", "n": "{{capture.packets}}"})";
  ASSERT_FALSE(template_problem(c.body_template)) << *template_problem(c.body_template);
  r = make_webhook_format(c)->render({&m});
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"pcap": "http://worker-1:9965/api/v1/captures/c-0001/pcap", "n": 1234})"));
  // {{captures}} is the anomaly's list, not a follow-up field; the anomaly itself renders as before.
  c.body_template = R"({"links": "{{captures}}"})";
  EXPECT_NE(make_webhook_format(c)->render({&m}).skip, "");
  Message firing;
  firing.anomaly = sample_anomaly("a");
  c.body_template = R"({"kind": "{{event}}"})";
  EXPECT_EQ(json::parse(make_webhook_format(c)->render({&firing}).body), json::parse(R"({"kind": null})"));
}

TEST(SlackFormat, FollowUpIsAShortMessageWithADownloadButton) {
  const json body = render_one("slack", capture_followup(sample_anomaly("3f9c2a7e61d04b8a")));
  const json expected = json::parse(R"J({
    "text": "Capture ready for pod_drop_surge on shop/checkout-7d9f8: 1234 packets (3 lost, incomplete)",
    "blocks": [
      {"type": "section", "text": {"type": "mrkdwn",
        "text": "📦 Capture ready for pod_drop_surge on shop/checkout-7d9f8: 1234 packets (3 lost, incomplete)"}},
      {"type": "context", "elements": [{"type": "mrkdwn",
        "text": "capture c-0001 · ended by after_elapsed · 40s from 2026-11-25T12:34:46.789Z · anomaly 3f9c2a7e61d04b8a (firing)"}]},
      {"type": "actions", "elements": [{"type": "button",
        "text": {"type": "plain_text", "text": "Download capture", "emoji": true},
        "url": "http://worker-1:9965/api/v1/captures/c-0001/pcap"}]}
    ]})J");
  EXPECT_EQ(body, expected) << body.dump(2);

  auto complete = capture_followup(sample_anomaly("x"));
  complete.capture_done.status = "complete";
  complete.capture_done.complete = true;
  complete.capture_done.packets_lost = 0;
  EXPECT_EQ(render_one("slack", complete)["text"], "Capture ready for pod_drop_surge on shop/checkout-7d9f8: 1234 packets");

  auto failed = capture_followup(sample_anomaly("x"));
  failed.capture_done.status = "failed";
  failed.capture_done.error = "disk full";
  const json f = render_one("slack", failed);
  EXPECT_EQ(f["text"], "Capture failed for pod_drop_surge on shop/checkout-7d9f8: disk full");
  EXPECT_NE(f["blocks"].back()["type"], "actions") << "nothing to download";
}

TEST(PagerDutyFormat, FollowUpIsAChangeEventNotATrigger) {
  HttpReceiver rx;
  auto c = channel("pagerduty", rx.url("/v2/enqueue"));
  c.agent_url = "http://worker-1:9965";
  auto n = must_make(c);
  const Anomaly a = sample_anomaly("3f9c2a7e61d04b8a");
  n->enqueue(a);
  n->enqueue(capture_followup(a));
  ASSERT_TRUE(rx.wait_ok(2));
  const auto hits = rx.ok_hits();
  EXPECT_EQ(hits[0].path, "/v2/enqueue");
  EXPECT_EQ(hits[1].path, "/v2/change/enqueue");
  json details = json::parse(dump_json(encode_webhook_payload(capture_followup(a), "http://worker-1:9965")));
  details["dedup_key"] = pagerduty_dedup_key(a);
  const json change = {
      {"routing_key", "R0UTINGKEY"},
      {"payload",
       {{"summary", "Capture ready for pod_drop_surge on shop/checkout-7d9f8: 1234 packets (3 lost, incomplete)"},
        {"source", "worker-1"},
        {"timestamp", "2026-11-25T12:35:26.789Z"},
        {"custom_details", details}}},
      {"links", {{{"href", "http://worker-1:9965/api/v1/captures/c-0001/pcap"}, {"text", "Packet capture c-0001"}}}},
  };
  EXPECT_EQ(hits[1].json(), change) << hits[1].body;
  EXPECT_FALSE(hits[1].json().contains("event_action"));
  EXPECT_TRUE(eventually([&] { return n->stats().sent == 2u; }));

  // A url that is not .../enqueue: the change events endpoint is unknown, nothing is sent.
  Message m;
  m.anomaly = capture_followup(a);
  EXPECT_NE(make_pagerduty_format(channel("pagerduty", "http://127.0.0.1:9/pd-proxy"))->render({&m}).skip, "");
  // The query stays.
  auto r = make_pagerduty_format(channel("pagerduty", "https://events.eu.pagerduty.com/v2/enqueue/?x=1"))->render({&m});
  EXPECT_EQ(r.path, "/v2/change/enqueue?x=1");
}

TEST(AlertmanagerFormat, FollowUpUpdatesTheFiringAlertsCaptureAnnotations) {
  auto a = sample_anomaly("3f9c2a7e61d04b8a");
  a.captures = {"c-0001"};
  const json before = render_one("alertmanager", a)[0];
  const json after = render_one("alertmanager", capture_followup(a, "c-0002"))[0];
  EXPECT_EQ(after["labels"], before["labels"]) << "the same alert";
  EXPECT_EQ(after["startsAt"], before["startsAt"]);
  EXPECT_FALSE(after.contains("endsAt"));
  EXPECT_EQ(after["annotations"]["capture_ids"], "c-0001,c-0002");
  EXPECT_EQ(after["annotations"]["capture_url"], "http://worker-1:9965/api/v1/captures/c-0002/pcap");
  EXPECT_EQ(after["annotations"]["capture_status"], "incomplete");
  EXPECT_FALSE(before["annotations"].contains("capture_status"));
  // Resolved: nothing to update.
  Message m;
  m.anomaly = capture_followup(resolved(a));
  EXPECT_NE(make_alertmanager_format(channel("alertmanager", "http://127.0.0.1:9/"))->render({&m}).skip, "");
}

TEST(Sparkline, ScalesToEightLevels) {
  EXPECT_EQ(sparkline({0, 1, 2, 3, 4, 5, 6, 7}), "▁▂▃▄▅▆▇█");
  EXPECT_EQ(sparkline({5, 5, 5}), "▁▁▁");
  EXPECT_EQ(sparkline({1}), "");
  EXPECT_EQ(sparkline({1, NAN, 3}), "▁█");
}

TEST(PagerDutyFormat, TriggerAndResolveBodiesAreExactAndShareTheDedupKey) {
  HttpReceiver rx;
  auto c = channel("pagerduty", rx.url("/v2/enqueue"));
  c.agent_url = "http://worker-1:9965";
  auto n = must_make(c);
  const Anomaly a = sample_anomaly("3f9c2a7e61d04b8a");
  n->enqueue(a);
  n->enqueue(resolved(a));
  ASSERT_TRUE(rx.wait_ok(2));
  const auto hits = rx.ok_hits();
  const std::string key = pagerduty_dedup_key(a);
  EXPECT_EQ(key.rfind("vigil-pod_drop_surge-", 0), 0u);
  EXPECT_EQ(key.size(), std::string("vigil-pod_drop_surge-").size() + 16);
  json trigger = {
      {"routing_key", "R0UTINGKEY"},
      {"event_action", "trigger"},
      {"dedup_key", key},
      {"payload",
       {{"summary", "drops 12.5/s, baseline 0.4/s"},
        {"source", "worker-1"},
        {"severity", "critical"},
        {"timestamp", "2026-11-25T12:34:56.789Z"},
        {"component", "shop/checkout-7d9f8"},
        {"group", "shop"},
        {"class", "pod_drop_surge"},
        {"custom_details", json::parse(dump_json(encode_webhook_payload(a)))}}},
      {"client", "Vigil"},
      {"client_url", "http://worker-1:9965"},
      {"links", {{{"href", "http://worker-1:9965/api/v1/rules"}, {"text", "Vigil agent on worker-1"}}}},
  };
  EXPECT_EQ(hits[0].json(), trigger) << hits[0].body;
  EXPECT_EQ(hits[1].json(), json({{"routing_key", "R0UTINGKEY"}, {"event_action", "resolve"}, {"dedup_key", key}}));
  // Another pod is another incident; the same rule and scope later is the same key.
  EXPECT_NE(pagerduty_dedup_key(sample_anomaly("other", "pod-2")), key);
  EXPECT_EQ(pagerduty_dedup_key(sample_anomaly("next-episode")), key);
}

TEST(PagerDutyFormat, SeverityMapping) {
  EXPECT_EQ(pagerduty_severity("critical"), "critical");
  EXPECT_EQ(pagerduty_severity("warning"), "warning");
  EXPECT_EQ(pagerduty_severity("info"), "info");
  EXPECT_EQ(pagerduty_severity("error"), "error");
  EXPECT_EQ(pagerduty_severity("weird"), "warning");
}

TEST(PagerDutyFormat, RoutingKeyFromAFileNeverInErrors) {
  const std::string dir = make_temp_dir();
  std::ofstream(dir + "/key") << "FILEKEY\n";
  HttpReceiver rx;
  auto c = channel("pagerduty", rx.url());
  c.routing_key.clear();
  c.routing_key_file = dir + "/key";
  auto n = must_make(c);
  n->enqueue(sample_anomaly("a"));
  ASSERT_TRUE(rx.wait_ok(1));
  EXPECT_EQ(rx.ok_hits()[0].json()["routing_key"], "FILEKEY");
  std::filesystem::remove_all(dir);
}

TEST(WebhookFormat, HmacSignatureAndCustomHeaders) {
  HttpReceiver rx;
  auto c = channel("webhook", rx.url());
  c.secret = "shared-secret";
  c.headers = {{"Authorization", "Bearer t0k3n"}};
  auto n = must_make(c);
  n->enqueue(sample_anomaly("a"));
  ASSERT_TRUE(rx.wait_ok(1));
  const Hit h = rx.ok_hits()[0];
  EXPECT_EQ(h.header("X-Vigil-Signature"), "sha256=" + hmac_sha256_hex("shared-secret", h.body));
  EXPECT_EQ(h.header("Authorization"), "Bearer t0k3n");
  EXPECT_EQ(h.header("Idempotency-Key"), h.header("X-Vigil-Delivery"));
  // A known vector (RFC 4231 test case 2).
  EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(WebhookFormat, TemplateReshapesTheBody) {
  HttpReceiver rx;
  auto c = channel("webhook", rx.url());
  c.body_template = R"({"msg": "{{severity}}: {{summary}} on {{scope.pod}}", "value": "{{metric.value}}",
                        "scope": "{{scope}}", "missing": "{{scope.group.server}}", "fixed": [1, "x"]})";
  ASSERT_FALSE(template_problem(c.body_template)) << *template_problem(c.body_template);
  auto n = must_make(c);
  n->enqueue(sample_anomaly("a"));
  ASSERT_TRUE(rx.wait_ok(1));
  EXPECT_EQ(rx.ok_hits()[0].json(),
            json::parse(R"({"msg": "critical: drops 12.5/s, baseline 0.4/s on checkout-7d9f8", "value": 12.5,
                            "scope": {"node": "worker-1", "namespace": "shop", "pod": "checkout-7d9f8",
                                      "labels": {"app": "checkout"}, "group": {}},
                            "missing": null, "fixed": [1, "x"]})"));
  EXPECT_EQ(*template_problem("[1"), "not valid JSON");
  EXPECT_EQ(*template_problem("\"{{id}}\""), "must be a JSON object or array");
  EXPECT_EQ(*template_problem(R"({"a": "{{metric.nope}}"})"),
            "unknown field '{{metric.nope}}' (see docs/webhook.md for the fields)");
}

// The documented JSON Schema accepts real bodies (firing, resolved, with nulls, capture
// follow-ups) and the examples in docs/webhook.md, and rejects broken ones. Validated by python3-jsonschema, the reference implementation.
TEST(WebhookSchema, RealPayloadsValidate) {
  if (std::system("python3 -c 'import jsonschema' 2>/dev/null") != 0) GTEST_SKIP() << "python3-jsonschema missing";
  const std::string dir = make_temp_dir();
  auto nan_anomaly = sample_anomaly("n");
  nan_anomaly.score = NAN;
  nan_anomaly.recent = {0.5, 0.25, NAN, 12.5};  // a recent value that is not a number is null
  nan_anomaly.recent_step = 10;
  nan_anomaly.scope = {{"server", "10.96.0.10"}};
  nan_anomaly.captures = {"c-0001"};  // without an agent_url: ids only
  auto captured = resolved(sample_anomaly("c"));
  captured.captures = {"c-0001", "c-0002"};
  auto failed_followup = capture_followup(resolved(sample_anomaly("f")));
  failed_followup.capture_done.status = "failed";
  failed_followup.capture_done.error = "disk full";
  failed_followup.capture_done.window_end = NAN;
  std::vector<std::string> bodies = {dump_json(encode_webhook_payload(sample_anomaly("a"))),
                                     dump_json(encode_webhook_payload(resolved(sample_anomaly("a")))),
                                     dump_json(encode_webhook_payload(nan_anomaly)),
                                     dump_json(encode_webhook_payload(captured, "http://worker-1:9965")),
                                     dump_json(encode_webhook_payload(capture_followup(sample_anomaly("f")), "http://w:1")),
                                     dump_json(encode_webhook_payload(failed_followup, "http://w:1"))};
  // And every example in docs/webhook.md.
  {
    std::ifstream doc(VIGIL_SOURCE_DIR "/docs/webhook.md");
    std::string text((std::istreambuf_iterator<char>(doc)), std::istreambuf_iterator<char>());
    const std::string fence = "```json\n";
    size_t examples = 0;
    for (size_t at = text.find(fence); at != std::string::npos; at = text.find(fence, at + 1), ++examples) {
      const size_t end = text.find("\n```", at + fence.size());
      bodies.push_back(text.substr(at + fence.size(), end - at - fence.size()));
    }
    EXPECT_EQ(examples, 2u) << "the body and the capture follow-up";
  }
  for (size_t i = 0; i < bodies.size(); ++i) std::ofstream(dir + "/ok" + std::to_string(i) + ".json") << bodies[i];
  auto broken = json::parse(bodies[1]);
  broken.erase("ended_at");
  std::ofstream(dir + "/bad.json") << broken.dump();
  auto bad_capture = json::parse(bodies[3]);
  bad_capture["captures"][0].erase("id");
  std::ofstream(dir + "/bad-capture.json") << bad_capture.dump();
  auto bad_followup = json::parse(bodies[4]);  // an event without its capture
  bad_followup.erase("capture");
  std::ofstream(dir + "/bad-followup.json") << bad_followup.dump();
  auto bad_status = json::parse(bodies[4]);
  bad_status["capture"]["status"] = "done";
  std::ofstream(dir + "/bad-status.json") << bad_status.dump();
  const std::string script = dir + "/check.py";
  std::ofstream(script) << "import json, sys, jsonschema\n"
                           "schema = json.load(open(sys.argv[1]))\n"
                           "jsonschema.Draft202012Validator.check_schema(schema)\n"
                           "v = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())\n"
                           "for f in sys.argv[2:]:\n"
                           "    errs = list(v.iter_errors(json.load(open(f))))\n"
                           "    print(f.split('/')[-1], 'valid' if not errs else 'invalid')\n";
  std::string cmd = "python3 " + script + " " VIGIL_SOURCE_DIR "/docs/webhook.schema.json";
  std::string expected;
  for (size_t i = 0; i < bodies.size(); ++i) {
    cmd += " " + dir + "/ok" + std::to_string(i) + ".json";
    expected += "ok" + std::to_string(i) + ".json valid\n";
  }
  for (const char* bad : {"bad", "bad-capture", "bad-followup", "bad-status"}) {
    cmd += " " + dir + "/" + bad + ".json";
    expected += std::string(bad) + ".json invalid\n";
  }
  cmd += " > " + dir + "/out.txt 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream in(dir + "/out.txt");
  std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, expected);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace vigil::actions
