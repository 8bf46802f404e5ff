// The notifier factory and its config checks, the URL parser, the log notifier and the
// Dispatcher.
#include <gtest/gtest.h>

#include "actions/notifier.h"
#include "actions/notifier_impl.h"

namespace vigil::actions {
namespace {

NotifierConfig webhook(const std::string& url) {
  NotifierConfig c;
  c.name = "ops";
  c.type = "webhook";
  c.url = url;
  return c;
}

NotifierConfig log_channel(const std::string& name) {
  NotifierConfig c;
  c.name = name;
  c.type = "log";
  return c;
}

std::string factory_error(const NotifierConfig& c) {
  auto n = make_notifier(c);
  return n.ok() ? "(no error)" : n.error().message;
}

Anomaly anomaly(const std::string& id) {
  Anomaly a;
  a.id = id;
  a.rule = "test_rule";
  a.severity = "info";
  a.started_at = 1795610096.789;
  return a;
}

TEST(HttpUrl, ParsesSchemeHostPortAndPath) {
  auto u = parse_http_url("https://hooks.example.com/services/T0/B0/XYZ?x=1#frag");
  ASSERT_TRUE(u.ok()) << u.error().message;
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->host, "hooks.example.com");
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->path, "/services/T0/B0/XYZ?x=1");
  EXPECT_EQ(u->origin(), "https://hooks.example.com:443");

  u = parse_http_url("http://127.0.0.1:8080");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->port, 8080);
  EXPECT_EQ(u->path, "/");

  u = parse_http_url("http://[::1]:9000?q=1");
  ASSERT_TRUE(u.ok()) << u.error().message;
  EXPECT_EQ(u->host, "[::1]");
  EXPECT_EQ(u->port, 9000);
  EXPECT_EQ(u->path, "/?q=1");
}

TEST(HttpUrl, RejectsWhatItCannotDeliverTo) {
  EXPECT_EQ(parse_http_url("ftp://x/").error().message, "expected a URL starting with http:// or https://");
  EXPECT_EQ(parse_http_url("hooks.example.com/x").error().message,
            "expected a URL starting with http:// or https://");
  EXPECT_EQ(parse_http_url("http:///path").error().message, "URL has no host");
  EXPECT_EQ(parse_http_url("http://host:0/").error().message, "port '0' in URL is not a number from 1 to 65535");
  EXPECT_EQ(parse_http_url("http://host:http/").error().message,
            "port 'http' in URL is not a number from 1 to 65535");
  EXPECT_EQ(parse_http_url("http://host:/").error().message, "empty port in URL");
  EXPECT_EQ(parse_http_url("http://user:pw@host/").error().message,
            "credentials in the URL are not supported; send them in `headers` instead");
  EXPECT_EQ(parse_http_url("http://[::1/").error().message, "unterminated IPv6 address in URL");
  EXPECT_EQ(parse_http_url("http://host/a b").error().message, "URL contains whitespace");
}

TEST(MakeNotifier, ErrorsNameTheNotifierAndField) {
  EXPECT_EQ(factory_error(webhook("ftp://x/")),
            "notifier 'ops': url: expected a URL starting with http:// or https://");
  EXPECT_EQ(factory_error(webhook("")), "notifier 'ops': url: required for type webhook (or url_file, url_env)");

  auto c = webhook("http://127.0.0.1:9/");
  c.name = "Ops!";
  EXPECT_EQ(factory_error(c), "notifier 'Ops!': name: 'Ops!' is not a valid name (1-64 characters from a-z, 0-9, '_', '-')");

  c = webhook("http://127.0.0.1:9/");
  c.type = "teams";
  EXPECT_EQ(factory_error(c), "notifier 'ops': type: unknown type 'teams' (known: webhook, slack, pagerduty, alertmanager, log)");

  c = webhook("http://127.0.0.1:9/");
  c.headers = {{"Content-Type", "text/plain"}};
  EXPECT_EQ(factory_error(c), "notifier 'ops': headers.Content-Type: set by vigil itself; remove it");
  c.headers = {{"X Bad", "v"}};
  EXPECT_EQ(factory_error(c), "notifier 'ops': headers.X Bad: not a valid HTTP header name");
  c.headers = {{"X-Token", "a\r\nInjected: 1"}};
  EXPECT_EQ(factory_error(c), "notifier 'ops': headers.X-Token: value contains a line break or NUL");

  c = webhook("http://127.0.0.1:9/");
  c.timeout_seconds = 0;
  EXPECT_EQ(factory_error(c), "notifier 'ops': timeout: must be greater than 0 and at most 5m");
  c = webhook("http://127.0.0.1:9/");
  c.max_attempts = -1;
  EXPECT_EQ(factory_error(c), "notifier 'ops': max_attempts: must be from 0 (no limit) to 1000000");
  c = webhook("http://127.0.0.1:9/");
  c.backoff_initial_seconds = 2;
  c.backoff_max_seconds = 1;
  EXPECT_EQ(factory_error(c), "notifier 'ops': backoff_max: must be at least backoff_initial and at most 1h");
  c = webhook("http://127.0.0.1:9/");
  c.queue_limit = 0;
  EXPECT_EQ(factory_error(c), "notifier 'ops': queue_limit: must be from 1 to 1000000");
}

TEST(MakeNotifier, BuildsBothTypes) {
  auto w = make_notifier(webhook("https://hooks.example.com/x"));
  ASSERT_TRUE(w.ok()) << w.error().message;
  EXPECT_STREQ((*w)->type(), "webhook");
  (*w)->stop();

  auto l = make_notifier(log_channel("default"));
  ASSERT_TRUE(l.ok()) << l.error().message;
  EXPECT_STREQ((*l)->type(), "log");
  EXPECT_EQ((*l)->name(), "default");
}

TEST(LogNotifier, WritesOneJsonLinePerAnomaly) {
  auto n = make_notifier(log_channel("default"));
  ASSERT_TRUE(n.ok());
  testing::internal::CaptureStdout();
  (*n)->enqueue(anomaly("a1"));
  const std::string out = testing::internal::GetCapturedStdout();

  EXPECT_EQ((*n)->stats().sent, 1u);
  const size_t brace = out.find('{');
  ASSERT_NE(brace, std::string::npos) << out;
  EXPECT_NE(out.find("notifier default: "), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  const auto line = nlohmann::json::parse(out.substr(brace));
  EXPECT_EQ(line["id"], "a1");
  EXPECT_EQ(line["version"], "vigil.v1");

  (*n)->stop();
  (*n)->enqueue(anomaly("a2"));
  EXPECT_EQ((*n)->stats().dropped, 1u);
}

TEST(LogNotifier, FollowUpIsOneLine) {
  auto n = make_notifier(log_channel("default"));
  ASSERT_TRUE(n.ok());
  Anomaly a = anomaly("a1");
  a.event = kEventCaptureCompleted;
  a.capture_done.id = "c-1";
  a.capture_done.status = "complete";
  testing::internal::CaptureStdout();
  (*n)->enqueue(a);
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  const auto line = nlohmann::json::parse(out.substr(out.find('{')));
  EXPECT_EQ(line["event"], "capture.completed");
  EXPECT_EQ(line["capture"]["id"], "c-1");
}

TEST(LogNotifier, InvalidUtf8DoesNotThrow) {
  auto n = make_notifier(log_channel("default"));
  ASSERT_TRUE(n.ok());
  Anomaly a = anomaly("a1");
  a.summary = "bad \xff\xfe bytes";
  testing::internal::CaptureStdout();
  EXPECT_NO_THROW((*n)->enqueue(a));
  testing::internal::GetCapturedStdout();
  EXPECT_EQ((*n)->stats().sent, 1u);
}

TEST(Dispatcher, RoutesByChannelAndCountsUnknownOnes) {
  auto d = Dispatcher::create({log_channel("default"), log_channel("audit")});
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ((*d)->channel_names(), (std::vector<std::string>{"audit", "default"}));

  testing::internal::CaptureStdout();
  (*d)->notify("default", anomaly("a1"));
  (*d)->notify("default", anomaly("a2"));
  (*d)->notify("audit", anomaly("a3"));
  (*d)->notify("pager", anomaly("a4"));
  (*d)->notify("pager", anomaly("a5"));
  testing::internal::GetCapturedStdout();

  EXPECT_EQ((*d)->unknown_channel_errors(), 2u);
  const auto stats = (*d)->stats();
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].first, "audit");
  EXPECT_EQ(stats[0].second.sent, 1u);
  EXPECT_EQ(stats[1].first, "default");
  EXPECT_EQ(stats[1].second.sent, 2u);
  (*d)->stop();
}

TEST(Dispatcher, RejectsDuplicatesAndBadConfigs) {
  auto d = Dispatcher::create({log_channel("default"), log_channel("default")});
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().message, "notifier 'default': name: duplicate notifier name");

  d = Dispatcher::create({log_channel("default"), webhook("gopher://x")});
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().message, "notifier 'ops': url: expected a URL starting with http:// or https://");
}

}  // namespace
}  // namespace vigil::actions
