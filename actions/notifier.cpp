// Notifier config checks, the URL parser and the factory.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <string_view>

#include "actions/notifier.h"
#include "actions/notifier_impl.h"

namespace vigil::actions {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool is_header_token(std::string_view name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

// Headers the notifier sets itself; letting the config override them would break delivery
// (framing) or idempotency.
constexpr std::string_view kReservedHeaders[] = {"Content-Type",      "Content-Length", "Host", "Transfer-Encoding",
                                                 "Connection",        "Idempotency-Key", "X-Vigil-Delivery"};

bool valid_channel_name(const std::string& name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
         });
}

std::optional<NotifierConfigProblem> problem(std::string field, std::string message) {
  return NotifierConfigProblem{std::move(field), std::move(message)};
}

}  // namespace

std::string HttpUrl::origin() const { return scheme + "://" + host + ":" + std::to_string(port); }

Result<HttpUrl> parse_http_url(const std::string& url) {
  HttpUrl out;
  std::string_view rest = url;
  if (rest.starts_with("http://")) {
    out.scheme = "http";
    out.port = 80;
    rest.remove_prefix(7);
  } else if (rest.starts_with("https://")) {
    out.scheme = "https";
    out.port = 443;
    rest.remove_prefix(8);
  } else {
    return make_error("expected a URL starting with http:// or https://");
  }
  if (rest.find_first_of(" \t\r\n") != std::string_view::npos) return make_error("URL contains whitespace");

  const size_t authority_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, authority_end);
  std::string_view tail = authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);

  if (authority.find('@') != std::string_view::npos)
    return make_error("credentials in the URL are not supported; send them in `headers` instead");

  std::string_view port_text;
  if (authority.starts_with("[")) {  // IPv6 literal
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return make_error("unterminated IPv6 address in URL");
    out.host = std::string(authority.substr(0, close + 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return make_error("unexpected text after IPv6 address in URL");
      port_text = after.substr(1);
      if (port_text.empty()) return make_error("empty port in URL");
    }
  } else {
    const size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return make_error("empty port in URL");
    }
  }
  if (out.host.empty() || out.host == "[]") return make_error("URL has no host");
  if (!port_text.empty()) {
    int port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 || port > 65535)
      return make_error("port '" + std::string(port_text) + "' in URL is not a number from 1 to 65535");
    out.port = port;
  }

  tail = tail.substr(0, tail.find('#'));
  if (tail.empty() || tail[0] == '?') out.path = "/";
  out.path += std::string(tail);
  return out;
}

std::optional<NotifierConfigProblem> find_config_problem(const NotifierConfig& c) {
  if (!valid_channel_name(c.name))
    return problem("name", "'" + c.name + "' is not a valid name (1-64 characters from a-z, 0-9, '_', '-')");
  if (c.type == "log") return std::nullopt;
  if (c.type != "webhook") return problem("type", "unknown type '" + c.type + "' (known: webhook, log)");

  if (c.url.empty()) return problem("url", "required for type webhook");
  if (auto url = parse_http_url(c.url); !url) return problem("url", url.error().message);
  for (const auto& [name, value] : c.headers) {
    if (!is_header_token(name)) return problem("headers." + name, "not a valid HTTP header name");
    for (auto reserved : kReservedHeaders)
      if (iequals(name, reserved)) return problem("headers." + name, "set by vigil itself; remove it");
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
      return problem("headers." + name, "value contains a line break or NUL");
  }
  if (!(c.timeout_seconds > 0 && c.timeout_seconds <= 300))
    return problem("timeout", "must be greater than 0 and at most 5m");
  if (c.max_attempts < 1 || c.max_attempts > 100) return problem("max_attempts", "must be from 1 to 100");
  if (!(c.backoff_initial_seconds > 0 && c.backoff_initial_seconds <= 3600))
    return problem("backoff_initial", "must be greater than 0 and at most 1h");
  if (!(c.backoff_max_seconds >= c.backoff_initial_seconds && c.backoff_max_seconds <= 3600))
    return problem("backoff_max", "must be at least backoff_initial and at most 1h");
  if (c.queue_limit < 1 || c.queue_limit > 1'000'000) return problem("queue_limit", "must be from 1 to 1000000");
  return std::nullopt;
}

Result<std::unique_ptr<Notifier>> make_notifier(const NotifierConfig& config) {
  if (auto p = find_config_problem(config))
    return make_error("notifier '" + config.name + "': " + p->field + ": " + p->message);
  if (config.type == "log") return make_log_notifier(config);
  return make_webhook_notifier(config, *parse_http_url(config.url));
}

}  // namespace vigil::actions
