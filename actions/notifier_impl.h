// Internal to vigil_actions: the concrete notifiers behind make_notifier() and the URL parser
// they share with config validation. Not included outside actions/ and its tests.
#pragma once

#include <memory>
#include <string>

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

// Both assume a config that find_config_problem() accepted.
std::unique_ptr<Notifier> make_webhook_notifier(const NotifierConfig& config, const HttpUrl& url);
std::unique_ptr<Notifier> make_log_notifier(const NotifierConfig& config);

}  // namespace vigil::actions
