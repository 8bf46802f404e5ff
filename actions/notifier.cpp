// Notifier config checks, the URL parser and the factory.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <string_view>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <unistd.h>

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

const std::vector<std::pair<std::string, std::string>>& notifier_config_keys() {
  static const std::vector<std::pair<std::string, std::string>> keys = {
      {"name", ""},
      {"type", ""},
      {"url", "webhook slack pagerduty alertmanager"},
      {"url_file", "webhook slack pagerduty alertmanager"},
      {"url_env", "webhook slack pagerduty alertmanager"},
      {"urls", "alertmanager"},
      {"headers", "webhook slack pagerduty alertmanager"},
      {"ca_file", "webhook slack pagerduty alertmanager"},
      {"secret", "webhook"},
      {"secret_file", "webhook"},
      {"secret_env", "webhook"},
      {"signature_header", "webhook"},
      {"template", "webhook"},
      {"routing_key", "pagerduty"},
      {"routing_key_file", "pagerduty"},
      {"routing_key_env", "pagerduty"},
      {"agent_url", "webhook slack pagerduty alertmanager"},
      {"resend_interval", "alertmanager"},
      {"timeout", "webhook slack pagerduty alertmanager"},
      {"max_attempts", "webhook slack pagerduty alertmanager"},
      {"backoff_initial", "webhook slack pagerduty alertmanager"},
      {"backoff_max", "webhook slack pagerduty alertmanager"},
      {"queue_limit", "webhook slack pagerduty alertmanager"},
      {"group_wait", "slack"},
      {"suppress_repeats", "webhook slack pagerduty alertmanager"},
      {"rate_limit", "webhook slack pagerduty alertmanager"},
      {"rate_limit_period", "webhook slack pagerduty alertmanager"},
  };
  return keys;
}

std::string types_taking(const std::string& key, const std::string& type) {
  for (const auto& [k, types] : notifier_config_keys()) {
    if (k != key) continue;
    if (types.empty()) return "";
    for (size_t start = 0; start < types.size();) {
      const size_t end = std::min(types.find(' ', start), types.size());
      if (types.compare(start, end - start, type) == 0) return "";
      start = end + 1;
    }
    std::string out = types;
    std::replace(out.begin(), out.end(), ' ', ',');
    size_t pos = 0;
    while ((pos = out.find(',', pos)) != std::string::npos) out.replace(pos, 1, ", "), pos += 2;
    return out;
  }
  return "";
}

namespace {

// Reads one secret from a file or the environment; the value is never part of an error.
std::optional<NotifierConfigProblem> read_secret(std::string& value, const std::string& file, const std::string& env,
                                                 const std::string& field) {
  const int sources = !value.empty() + !file.empty() + !env.empty();
  if (sources > 1)
    return problem(field + (file.empty() ? "_env" : "_file"),
                   "give only one of " + field + ", " + field + "_file and " + field + "_env");
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) return problem(field + "_file", "cannot read " + file + ": " + std::strerror(errno));
    std::stringstream text;
    text << in.rdbuf();
    value = text.str();
    while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
    if (value.empty()) return problem(field + "_file", file + " is empty");
  } else if (!env.empty()) {
    const char* v = std::getenv(env.c_str());
    if (v == nullptr || *v == '\0') return problem(field + "_env", "environment variable " + env + " is not set");
    value = v;
  }
  return std::nullopt;
}

}  // namespace

std::optional<NotifierConfigProblem> load_secrets(NotifierConfig& c) {
  if (auto p = read_secret(c.url, c.url_file, c.url_env, "url")) return p;
  if (auto p = read_secret(c.secret, c.secret_file, c.secret_env, "secret")) return p;
  if (auto p = read_secret(c.routing_key, c.routing_key_file, c.routing_key_env, "routing_key")) return p;
  return std::nullopt;
}

std::optional<NotifierConfigProblem> find_config_problem(const NotifierConfig& c) {
  if (!valid_channel_name(c.name))
    return problem("name", "'" + c.name + "' is not a valid name (1-64 characters from a-z, 0-9, '_', '-')");
  if (c.type == "log") return std::nullopt;
  if (c.type != "webhook" && c.type != "slack" && c.type != "pagerduty" && c.type != "alertmanager")
    return problem("type", "unknown type '" + c.type + "' (known: webhook, slack, pagerduty, alertmanager, log)");

  // Secrets may still be in their files: a source is enough here; load_secrets() reads it.
  const bool url_given = !c.url.empty() || !c.url_file.empty() || !c.url_env.empty();
  if (c.type == "alertmanager") {
    if (!url_given && c.urls.empty()) return problem("urls", "required for type alertmanager (one URL per Alertmanager)");
    if (url_given && !c.urls.empty()) return problem("urls", "give either url or urls");
    for (size_t i = 0; i < c.urls.size(); ++i)
      if (auto url = parse_http_url(c.urls[i]); !url) return problem("urls[" + std::to_string(i) + "]", url.error().message);
  } else if (!url_given && c.type != "pagerduty") {
    return problem("url", "required for type " + c.type + " (or url_file, url_env)");
  }
  if (!c.url.empty())
    if (auto url = parse_http_url(c.url); !url) return problem(c.url_file.empty() && c.url_env.empty() ? "url" : (c.url_file.empty() ? "url_env" : "url_file"), url.error().message);
  if (c.type == "pagerduty" && c.routing_key.empty() && c.routing_key_file.empty() && c.routing_key_env.empty())
    return problem("routing_key", "required for type pagerduty (or routing_key_file, routing_key_env)");
  for (const auto& [name, value] : c.headers) {
    if (!is_header_token(name)) return problem("headers." + name, "not a valid HTTP header name");
    for (auto reserved : kReservedHeaders)
      if (iequals(name, reserved)) return problem("headers." + name, "set by vigil itself; remove it");
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
      return problem("headers." + name, "value contains a line break or NUL");
  }
  if (!c.ca_file.empty() && ::access(c.ca_file.c_str(), R_OK) != 0)
    return problem("ca_file", "cannot read " + c.ca_file + ": " + std::strerror(errno));
  if (!is_header_token(c.signature_header)) return problem("signature_header", "not a valid HTTP header name");
  for (auto reserved : kReservedHeaders)
    if (iequals(c.signature_header, reserved)) return problem("signature_header", "set by vigil itself; choose another name");
  if (!c.body_template.empty())
    if (auto p = template_problem(c.body_template)) return problem("template", *p);
  if (!c.agent_url.empty())
    if (auto url = parse_http_url(c.agent_url); !url) return problem("agent_url", url.error().message);
  if (!(c.resend_interval_seconds >= 1 && c.resend_interval_seconds <= 3600))
    return problem("resend_interval", "must be from 1s to 1h (keep it below Alertmanager's resolve_timeout)");
  if (!(c.timeout_seconds > 0 && c.timeout_seconds <= 300))
    return problem("timeout", "must be greater than 0 and at most 5m");
  if (c.max_attempts < 0 || c.max_attempts > 1'000'000)
    return problem("max_attempts", "must be from 0 (no limit) to 1000000");
  if (!(c.backoff_initial_seconds > 0 && c.backoff_initial_seconds <= 3600))
    return problem("backoff_initial", "must be greater than 0 and at most 1h");
  if (!(c.backoff_max_seconds >= c.backoff_initial_seconds && c.backoff_max_seconds <= 3600))
    return problem("backoff_max", "must be at least backoff_initial and at most 1h");
  if (c.queue_limit < 1 || c.queue_limit > 1'000'000) return problem("queue_limit", "must be from 1 to 1000000");
  if (!(c.group_wait_seconds == -1 || (c.group_wait_seconds >= 0 && c.group_wait_seconds <= 300)))
    return problem("group_wait", "must be from 0 (off) to 5m");
  if (!(c.suppress_repeats_seconds >= 0 && c.suppress_repeats_seconds <= 86400))
    return problem("suppress_repeats", "must be from 0 (off) to 24h");
  if (c.rate_limit < 0 || c.rate_limit > 1'000'000) return problem("rate_limit", "must be from 0 (no limit) to 1000000");
  if (!(c.rate_limit_period_seconds >= 1 && c.rate_limit_period_seconds <= 86400))
    return problem("rate_limit_period", "must be from 1s to 24h");
  return std::nullopt;
}

Result<std::unique_ptr<Notifier>> make_notifier(const NotifierConfig& given) {
  NotifierConfig config = given;
  if (auto p = find_config_problem(config))
    return make_error("notifier '" + config.name + "': " + p->field + ": " + p->message);
  if (config.type == "log") return make_log_notifier(config);
  if (auto p = load_secrets(config)) return make_error("notifier '" + config.name + "': " + p->field + ": " + p->message);
  if (auto p = find_config_problem(config))  // the URL read from a file is checked too
    return make_error("notifier '" + config.name + "': " + p->field + ": " + p->message);
  if (config.type == "pagerduty" && config.url.empty()) config.url = "https://events.pagerduty.com/v2/enqueue";
  std::unique_ptr<Format> format;
  if (config.type == "webhook") format = make_webhook_format(config);
  else if (config.type == "slack") format = make_slack_format(config);
  else if (config.type == "pagerduty") format = make_pagerduty_format(config);
  else format = make_alertmanager_format(config);
  return make_http_notifier(config, std::move(format));
}

}  // namespace vigil::actions
