// Internal to vigil_actions: the concrete notifiers behind make_notifier() and the URL parser
// they share with config validation. Not included outside actions/ and its tests.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <optional>

#include "actions/notifier.h"
#include "rules/core/result.h"

namespace vigil::actions {

struct HttpUrl {
  std::string scheme;  // "http" | "https"
  std::string host;    // as written; IPv6 literals keep their brackets
  int port = 0;        // explicit or the scheme's default
  std::string path;    // path and query, at least "/"; the fragment is dropped

  // "https://host:443": what cpp-httplib's Client takes, and safe to log (the path of a
  // webhook URL often holds a secret token, so it is never logged).
  std::string origin() const;
};

// Accepts http(s)://host[:port][/path][?query]. Credentials in the URL are refused (put them
// in `headers`, where they are never logged).
Result<HttpUrl> parse_http_url(const std::string& url);

// Compact JSON text. Invalid UTF-8 (rule summaries and pod labels are not checked) becomes
// U+FFFD instead of an exception.
inline std::string dump_json(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// A notification as queued: the anomaly as the rule left it, the idempotency key that every
// attempt carries (also after a restart), and when it was enqueued.
struct Message {
  uint64_t seq = 0;          // order within the channel; also the outbox file name
  std::string key;           // random UUID: the Idempotency-Key
  double enqueued_unix = 0;  // wall clock, so latency survives a restart
  Anomaly anomaly;
  uint64_t suppressed = 0;   // > 0: a flood-control summary of this many held-back notifications
};

nlohmann::json message_to_json(const Message& m);
Result<Message> message_from_json(const nlohmann::json& j);
std::string new_uuid();
double unix_now();

// Hex of SHA-256 and of HMAC-SHA256 (OpenSSL).
std::string sha256_hex(const std::string& data);
std::string hmac_sha256_hex(const std::string& key, const std::string& data);

// One HTTP body and its type-specific headers.
struct HttpRequest {
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string path;  // "" = the target's path; else this one (pagerduty: change events)
  std::string skip;  // not "": nothing is sent, for this reason (logged); the message is done
};
inline HttpRequest body_request(std::string body, std::string path = "") {
  HttpRequest r;
  r.body = std::move(body);
  r.path = std::move(path);
  return r;
}
inline HttpRequest skipped_request(std::string why) {
  HttpRequest r;
  r.skip = std::move(why);
  return r;
}

// Turns messages into request bodies for one notifier type. render() gets one message, or
// several when the channel grouped them (only if groups() is true).
class Format {
 public:
  virtual ~Format() = default;
  virtual HttpRequest render(const std::vector<const Message*>& batch) const = 0;
  virtual bool groups() const { return false; }        // slack: one message per node burst
  virtual bool tracks_firing() const { return false; }  // alertmanager: resend what still fires
  virtual bool sends_summaries() const { return true; } // flood-control summaries as messages
};

// Checks a `template` and returns the reason it cannot be used.
std::optional<std::string> template_problem(const std::string& body_template);
// Fills {{a.b}} placeholders from the vigil.v1 body: a string that is only a placeholder takes
// the field's JSON value (number, object, null); inside a longer string the value is spliced in
// as text. A missing field is null (or "" inside text).
nlohmann::ordered_json render_template(const nlohmann::ordered_json& tmpl, const nlohmann::ordered_json& body);

// A follow-up notification (Anomaly::event set), not the anomaly's own firing/resolved. Flood
// control leaves it alone: no repeat suppression, rate limit or grouping.
inline bool is_followup(const Anomaly& a) { return !a.event.empty(); }

// The Idempotency-Key of a follow-up: a UUID derived from the channel, anomaly id, event and
// capture id, so it differs from the firing's and is the same if the agent sends it again.
std::string followup_key(const std::string& channel, const Anomaly& a);

// Helpers the formats share, exposed for tests.
std::string sparkline(const std::vector<double>& values);  // "▁▂▃▅▇", "" when fewer than 2
std::string pagerduty_dedup_key(const Anomaly& a);           // stable for rule + node + scope
std::string pagerduty_severity(const std::string& severity);  // critical|error|warning|info

std::unique_ptr<Format> make_webhook_format(const NotifierConfig& config);
std::unique_ptr<Format> make_slack_format(const NotifierConfig& config);
std::unique_ptr<Format> make_pagerduty_format(const NotifierConfig& config);
std::unique_ptr<Format> make_alertmanager_format(const NotifierConfig& config);

// Durable queue of one channel: one file per message, written to a temporary name, fsync'd,
// renamed and the directory fsync'd, so a message is either whole on disk or not there.
class Outbox {
 public:
  // Creates the directory if needed and loads what a previous process left, oldest first.
  // `dir` "" means memory only (nothing is written).
  static Result<std::unique_ptr<Outbox>> open(const std::string& dir, std::vector<Message>& pending);
  bool durable() const { return !dir_.empty(); }
  Result<void> append(const Message& m);
  void remove(uint64_t seq);
  uint64_t corrupt_files() const { return corrupt_; }

 private:
  std::string path_of(uint64_t seq) const;
  std::string dir_;
  int dir_fd_ = -1;
  uint64_t corrupt_ = 0;

 public:
  ~Outbox();
};

// Assumes a config that find_config_problem() accepted and load_secrets() filled.
Result<std::unique_ptr<Notifier>> make_http_notifier(const NotifierConfig& config, std::unique_ptr<Format> format);
std::unique_ptr<Notifier> make_log_notifier(const NotifierConfig& config);

}  // namespace vigil::actions
