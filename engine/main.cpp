// vigil: the command line. `vigil agent` runs the node agent; `vigil config check` and
// `vigil rules check` validate its config and rule files without running it.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <spdlog/spdlog.h>

#include "actions/http_error.h"
#include "engine/agent.h"
#include "engine/agent_client.h"
#include "engine/capture_cli.h"
#include "engine/config.h"
#include "engine/record.h"
#include "rules/runtime/durations.h"
#include "rules/runtime/engine.h"
#include "rules/runtime/replay.h"
#include "rules/runtime/rule_test.h"

#ifndef VIGIL_VERSION
#define VIGIL_VERSION "dev"
#endif

namespace {

constexpr const char* kUsage = R"(usage:
  vigil agent [--config FILE] [--listen HOST:PORT] [--log-level LEVEL]
      Runs the node agent. Without --config it uses the defaults (docs/config.md).
  vigil config check FILE...
      Checks config files as the agent would at start, without starting it: every key, the
      secrets its notifiers read, the rule files it names (or the shipped pack) under its
      limits and notifiers. Reports every error with file and line; exit 1 when one fails.
  vigil rules check [--config FILE] RULEFILE...
      Loads rule files as the agent would and reports every error with file and line.
      With --config, notify() channels are checked against its notifiers.
  vigil rules test TESTFILE...
      Runs rule unit tests (YAML, docs/rules.md "Testing rules") in simulated time: exit 0 when
      all pass, 1 when one fails (with a diff), 2 for a bad test file.
  vigil notify test CHANNEL [--config FILE]
      Sends a sample notification to CHANNEL (one attempt, no outbox) and reports the result.
  vigil replay --rules FILE --input CSV [--output CSV] [--tick DURATION]
      Runs the one rule in FILE over a recorded timestamp,value series in simulated time and
      writes timestamp,value,anomaly_score,firing per input row (stdout without --output).
  vigil record --metric NAME [--where k=v,...] [--agent HOST:PORT] [--interval DURATION]
               [--samples N | --duration DURATION] [--output CSV]
      Samples a running agent's series (the sum of NAME's series matching --where) into the
      timestamp,value CSV that replay reads: a gauge's value, a counter's per-second rate.
      Defaults: --agent 127.0.0.1:9965 (the agent's default listen), --interval 1s, --samples 60.
  vigil anomalies [--agent HOST:PORT] [--format table|json]
      What fires now on a running agent (default 127.0.0.1:9965): when it started, rule,
      severity, pod, value against its baseline, captures; json prints each as its webhook
      body (docs/webhook.md). Exit 1 when the agent cannot be reached.
  vigil capture start|list|show|get|delete ...
      Manual packet captures through a running agent (`vigil capture` for its options).
  vigil version
)";

vigil::Agent* g_agent = nullptr;
// A SIGTERM or SIGINT that arrives while the agent is still starting (loading its programs,
// reading its outbox): the agent stops as soon as it exists instead of dying mid-start.
volatile std::sig_atomic_t g_stop_requested = 0;

void on_signal(int sig) {
  if (sig != SIGHUP) g_stop_requested = 1;
  if (!g_agent) return;
  if (sig == SIGHUP) g_agent->request_reload();
  else g_agent->stop();
}

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "vigil: %s\n%s", msg.c_str(), kUsage);
  return 2;
}

// Parses "--flag value" and "--flag=value" options; returns positional arguments.
struct Args {
  std::map<std::string, std::string> flags;
  std::vector<std::string> positional;
};

std::optional<Args> parse_args(int argc, char** argv, int from, const std::set<std::string>& known, std::string& error) {
  Args out;
  for (int i = from; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) {
      out.positional.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    auto eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      error = "--" + name + " needs a value";
      return std::nullopt;
    }
    if (!known.count(name)) {
      error = "unknown option --" + name;
      return std::nullopt;
    }
    out.flags[name] = value;
  }
  return out;
}

vigil::Result<vigil::Config> config_from(const Args& args) {
  auto it = args.flags.find("config");
  if (it == args.flags.end()) return vigil::default_config();
  return vigil::load_config(it->second);
}

int cmd_agent(const Args& args) {
  if (!args.positional.empty()) return usage_error("agent takes no arguments");
  if (auto lvl = args.flags.find("log-level"); lvl != args.flags.end()) {
    // spdlog reads a name it does not know as "off": a typo would silence the agent.
    static const std::set<std::string> names = {"trace", "debug", "info", "warn", "warning", "error", "critical", "off"};
    if (!names.count(lvl->second))
      return usage_error("--log-level " + lvl->second + ": expected trace, debug, info, warn, error, critical or off");
    spdlog::set_level(spdlog::level::from_str(lvl->second == "warning" ? "warn" : lvl->second));
  }
  auto config = config_from(args);
  if (!config) {
    std::fprintf(stderr, "vigil: %s\n", config.error().message.c_str());
    return 1;
  }
  if (auto l = args.flags.find("listen"); l != args.flags.end()) config->listen = l->second;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  auto agent = vigil::Agent::create(*config);
  if (!agent) {
    std::fprintf(stderr, "vigil: %s\n", agent.error().message.c_str());
    return 1;
  }
  g_agent = agent->get();
  if (g_stop_requested) (*agent)->stop();  // run() returns at once
  std::string addr = (*agent)->listen_address();
  spdlog::info("vigil {} on node {}: metrics at http://{}/metrics, health at http://{}/healthz, API at http://{}/api/v1/",
               VIGIL_VERSION, config->node, addr, addr, addr);
  (*agent)->run();
  g_agent = nullptr;
  spdlog::info("vigil stopping");
  return 0;
}

int cmd_rules_check(const Args& args) {
  if (args.positional.empty()) return usage_error("rules check needs at least one rule file");
  // Without --config: the default limits, any channel name, and capture filters still compiled.
  vigil::rules::EngineOptions opts = vigil::rule_engine_options(vigil::default_config());
  opts.channels.reset();
  if (args.flags.count("config")) {
    auto config = vigil::load_config(args.flags.at("config"));
    if (!config) {
      std::fprintf(stderr, "vigil: %s\n", config.error().message.c_str());
      return 1;
    }
    opts = vigil::rule_engine_options(*config);
  }
  int failed = 0;
  // Each file is checked on its own so that one bad file does not hide another's errors.
  for (const auto& file : args.positional) {
    auto engine = vigil::rules::RuleEngine::load({file}, opts, nullptr);
    if (!engine) {
      std::fprintf(stderr, "%s\n", engine.error().message.c_str());
      ++failed;
      continue;
    }
    // A rule on a series that never exists loads, and never fires: the check fails on it (the
    // agent only warns, so that a renamed series does not stop it at an upgrade).
    const auto unknown = vigil::unknown_metric_warnings((*engine)->status());
    for (const auto& w : unknown) std::fprintf(stderr, "%s\n", w.c_str());
    if (!unknown.empty()) {
      ++failed;
      continue;
    }
    std::printf("%s: ok (%zu rules)\n", file.c_str(), (*engine)->status().size());
  }
  return failed ? 1 : 0;
}

int cmd_rules_test(const Args& args) {
  if (args.positional.empty()) return usage_error("rules test needs at least one test file");
  auto run = vigil::rules::run_rule_tests(args.positional);
  std::fputs(run.out.c_str(), stdout);
  std::fflush(stdout);
  std::fputs(run.err.c_str(), stderr);
  return run.exit_code;
}

// "3m ago", "2h ago": how long an anomaly has been firing, for a table read at a glance.
std::string age_of(double started_at, double now) {
  const double s = std::max(0.0, now - started_at);
  char buf[32];
  if (s < 120) std::snprintf(buf, sizeof buf, "%.0fs ago", s);
  else if (s < 7200) std::snprintf(buf, sizeof buf, "%.0fm ago", s / 60);
  else if (s < 172800) std::snprintf(buf, sizeof buf, "%.0fh ago", s / 3600);
  else std::snprintf(buf, sizeof buf, "%.0fd ago", s / 86400);
  return buf;
}

// Seconds since the epoch of an RFC 3339 UTC time as the webhook body writes it
// ("2026-11-27T13:21:35.696Z"); NaN when it is not one.
double parse_rfc3339(const std::string& t) {
  std::tm tm{};
  const char* rest = strptime(t.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest) return std::nan("");
  double frac = 0;
  if (*rest == '.') frac = std::strtod(rest, nullptr);
  return static_cast<double>(timegm(&tm)) + frac;
}

// Everything the agent checks before it touches the kernel: the config's keys and the secrets
// its notifiers read from files or the environment (load_config), then the rule files its
// `rules:` finds (or the pack), loaded under its limits and against its notifiers, and the
// series those rules watch.
// The netstat statistics are checked against this machine's kernel, which may not be the
// node's: a warning, not an error.
int cmd_config_check(const Args& args) {
  if (args.positional.empty()) return usage_error("config check needs at least one config file");
  int failed = 0;
  for (const auto& file : args.positional) {
    auto config = vigil::load_config(file);
    if (!config) {
      std::fprintf(stderr, "%s\n", config.error().message.c_str());
      ++failed;
      continue;
    }
    std::vector<std::string> errors;
    if (auto r = vigil::check_netstat_statistics(*config); !r)
      std::fprintf(stderr, "warning (this machine's kernel): %s\n", r.error().message.c_str());
    size_t rule_count = 0;
    auto engine = vigil::rules::RuleEngine::load(config->rules, vigil::rule_engine_options(*config), nullptr);
    if (!engine) {
      errors.push_back(engine.error().message);
    } else {
      for (auto& w : vigil::unknown_metric_warnings((*engine)->status())) errors.push_back(std::move(w));
      rule_count = (*engine)->status().size();
    }
    for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.c_str());
    if (!errors.empty()) {
      ++failed;
      continue;
    }
    std::printf("%s: ok (%zu rule files, %zu rules, %zu notifiers)\n", file.c_str(), config->rules.size(), rule_count,
                config->notifiers.size());
  }
  return failed ? 1 : 0;
}

int cmd_anomalies(const Args& args) {
  if (!args.positional.empty()) return usage_error("anomalies takes no positional arguments");
  const std::string format = args.flags.count("format") ? args.flags.at("format") : "table";
  if (format != "table" && format != "json") return usage_error("--format " + format + ": expected table or json");
  const std::string agent = args.flags.count("agent") ? args.flags.at("agent") : "127.0.0.1:9965";
  std::string error;
  auto c = vigil::agent_client(agent, error);
  if (!c) return usage_error(error);
  httplib::Client& client = *c;
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(10, 0);
  auto res = client.Get("/api/v1/anomalies");
  if (!res || res->status != 200) {
    std::fprintf(stderr, "vigil: anomalies: http://%s/api/v1/anomalies: %s\n", agent.c_str(),
                 res ? ("HTTP " + std::to_string(res->status)).c_str()
                     : (vigil::actions::describe_http_error(res.error()) + vigil::agent_hint(res.error())).c_str());
    return 1;
  }
  const auto list = nlohmann::json::parse(res->body, nullptr, false);
  if (!list.is_array()) {
    std::fprintf(stderr, "vigil: anomalies: http://%s/api/v1/anomalies: the answer is not a JSON list\n", agent.c_str());
    return 1;
  }
  if (format == "json") {
    std::printf("%s\n", list.dump(2).c_str());
    return 0;
  }
  // Groups about to fire (anomalous, waiting out their rule's `pending`), from /api/v1/rules:
  // a footnote of the table; the answer above stands without it.
  auto print_pending = [&] {
    auto rules = client.Get("/api/v1/rules");
    if (!rules || rules->status != 200) return;
    const auto all = nlohmann::json::parse(rules->body, nullptr, false);
    if (!all.is_array()) return;
    std::string line;
    for (const auto& r : all) {
      if (!r.is_object() || !r.contains("pending") || !r["pending"].is_number_unsigned()) continue;
      const auto n = r["pending"].get<uint64_t>();
      if (n == 0 || !r.contains("rule") || !r["rule"].is_string()) continue;
      line += (line.empty() ? "" : ", ") + r["rule"].get<std::string>() + " " + std::to_string(n);
    }
    if (!line.empty()) std::printf("pending (anomalous, not firing yet), groups by rule: %s\n", line.c_str());
  };
  if (list.empty()) {
    std::printf("nothing firing on %s\n", agent.c_str());
    print_pending();
    return 0;
  }
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto text = [](const nlohmann::json& j, const char* key) {
    return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string("-");
  };
  auto number = [](const nlohmann::json& j, const char* key) {
    return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan("");
  };
  std::printf("%-10s %-24s %-9s %-32s %-22s %s\n", "STARTED", "RULE", "SEVERITY", "SCOPE", "VALUE (BASELINE)", "CAPTURES");
  for (const auto& a : list) {
    const auto& scope = a.contains("scope") ? a["scope"] : nlohmann::json();
    std::string where = text(scope, "namespace") + "/" + text(scope, "pod");
    if (where == "-/-") where = text(scope, "node");
    const auto& metric = a.contains("metric") ? a["metric"] : nlohmann::json();
    char value[64];
    std::snprintf(value, sizeof value, "%.4g (%.4g)", number(metric, "value"), number(metric, "baseline"));
    std::string captures;
    if (a.contains("captures") && a["captures"].is_array())
      for (const auto& c : a["captures"]) captures += (captures.empty() ? "" : ",") + text(c, "id");
    std::printf("%-10s %-24s %-9s %-32s %-22s %s\n", age_of(parse_rfc3339(text(a, "started_at")), now).c_str(),
                text(a, "rule").c_str(), text(a, "severity").c_str(), where.c_str(), value,
                captures.empty() ? "-" : captures.c_str());
    std::printf("           %s\n", text(a, "summary").c_str());
  }
  print_pending();
  return 0;
}

int cmd_record(const Args& args) {
  if (!args.positional.empty()) return usage_error("record takes no positional arguments");
  if (!args.flags.count("metric")) return usage_error("record needs --metric");
  const std::string metric = args.flags.at("metric");
  std::map<std::string, std::string> where;
  if (auto w = args.flags.find("where"); w != args.flags.end()) {
    auto parsed = vigil::parse_where(w->second);
    if (!parsed) return usage_error(parsed.error().message);
    where = *parsed;
  }
  std::string agent = args.flags.count("agent") ? args.flags.at("agent") : "127.0.0.1:9965";
  std::string error;
  auto c = vigil::agent_client(agent, error);
  if (!c) return usage_error(error);
  double interval = 1;
  if (auto i = args.flags.find("interval"); i != args.flags.end()) {
    auto d = vigil::rules::parse_duration(i->second);
    if (!d || *d < 0.05) return usage_error("--interval must be a duration of at least 50ms, e.g. 1s");
    interval = *d;
  }
  if (args.flags.count("samples") && args.flags.count("duration"))
    return usage_error("record takes --samples or --duration, not both");
  long samples = 60;
  if (auto n = args.flags.find("samples"); n != args.flags.end()) {
    char* end = nullptr;
    samples = std::strtol(n->second.c_str(), &end, 10);
    if (*end || samples < 1) return usage_error("--samples must be a whole number >= 1");
  }
  if (auto d = args.flags.find("duration"); d != args.flags.end()) {
    auto secs = vigil::rules::parse_duration(d->second);
    if (!secs || *secs <= 0) return usage_error("--duration must be a duration > 0, e.g. 10m");
    samples = static_cast<long>(*secs / interval) + 1;
  }
  // The output is opened (and an --output file replaced) only once there is a first row: an
  // agent that does not answer, or a series that never appears, leaves an earlier recording as
  // it was instead of a file with a header and nothing else. Whether it can be written is
  // checked now, so that a bad path fails before the first scrape.
  std::FILE* out = nullptr;
  const auto output = args.flags.find("output");
  if (output != args.flags.end()) {
    const std::string& path = output->second;
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    struct stat st {};
    const bool exists = stat(path.c_str(), &st) == 0;
    if (exists ? (S_ISDIR(st.st_mode) || access(path.c_str(), W_OK) != 0) : access(dir.c_str(), W_OK) != 0) {
      std::fprintf(stderr, "vigil: %s: cannot write: %s\n", path.c_str(),
                   exists && S_ISDIR(st.st_mode) ? "is a directory" : std::strerror(errno));
      return 1;
    }
  }
  auto open_output = [&]() -> bool {
    if (out) return true;
    out = output == args.flags.end() ? stdout : std::fopen(output->second.c_str(), "wb");
    if (!out) {
      std::fprintf(stderr, "vigil: %s: cannot write: %s\n", output->second.c_str(), std::strerror(errno));
      return false;
    }
    std::fputs("timestamp,value\n", out);
    return true;
  };
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  httplib::Client& client = *c;
  client.set_connection_timeout(std::chrono::seconds(2));
  client.set_read_timeout(std::chrono::seconds(5));
  vigil::RecordSeries series;
  int status = 0;
  long rows = 0;
  auto next = std::chrono::steady_clock::now();
  // A counter needs one scrape more than the rows it writes; a gauge stops one early.
  for (long i = 0; i < samples + 1 && !g_stop_requested; ++i) {
    auto res = client.Get("/metrics");
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    if (!res || res->status != 200) {
      std::fprintf(stderr, "vigil: record: http://%s/metrics: %s\n", agent.c_str(),
                   res ? ("HTTP " + std::to_string(res->status)).c_str()
                     : (vigil::actions::describe_http_error(res.error()) + vigil::agent_hint(res.error())).c_str());
      status = 1;
      break;
    }
    auto v = vigil::scrape_value(res->body, metric, where);
    if (!v) {
      std::fprintf(stderr, "vigil: record: http://%s/metrics: %s\n", agent.c_str(), v.error().message.c_str());
      status = 1;
      break;
    }
    if (!v->value && i == 0) {
      std::fprintf(stderr, "vigil: record: no series %s matching --where at http://%s/metrics (yet); waiting\n",
                   metric.c_str(), agent.c_str());
    }
    std::string row = series.add(now, *v);
    if (!row.empty()) {
      if (!open_output()) return 1;
      std::fputs(row.c_str(), out);
      std::fflush(out);
      if (++rows >= samples) break;
    }
    next += std::chrono::microseconds(static_cast<long long>(interval * 1e6));
    std::this_thread::sleep_until(next);
  }
  if (out && out != stdout && std::fclose(out) != 0) {
    std::fprintf(stderr, "vigil: record: cannot write the output: %s\n", std::strerror(errno));
    return 1;
  }
  if (rows == 0 && status == 0) {
    std::fprintf(stderr, "vigil: record: no series %s matched at http://%s/metrics\n", metric.c_str(), agent.c_str());
    return 1;
  }
  return status;
}

int cmd_replay(const Args& args) {
  if (!args.positional.empty()) return usage_error("replay takes no positional arguments");
  if (!args.flags.count("rules") || !args.flags.count("input")) return usage_error("replay needs --rules and --input");
  vigil::rules::ReplayOptions opts;
  if (auto t = args.flags.find("tick"); t != args.flags.end()) {
    auto d = vigil::rules::parse_duration(t->second);
    if (!d || *d <= 0) return usage_error("--tick must be a duration > 0, e.g. 5m");
    opts.tick_seconds = *d;
  }
  auto points = vigil::rules::read_replay_csv(args.flags.at("input"));
  auto rows = points ? vigil::rules::replay(args.flags.at("rules"), *points, opts) : points.error();
  if (!rows) {
    std::fprintf(stderr, "vigil: %s\n", rows.error().message.c_str());
    return 1;
  }
  std::string csv = vigil::rules::format_replay_csv(*points, *rows);
  auto out = args.flags.find("output");
  if (out == args.flags.end()) {
    std::fwrite(csv.data(), 1, csv.size(), stdout);
    return 0;
  }
  std::FILE* f = std::fopen(out->second.c_str(), "wb");
  bool ok = f && std::fwrite(csv.data(), 1, csv.size(), f) == csv.size();
  if (f && std::fclose(f) != 0) ok = false;
  if (!ok) {
    std::fprintf(stderr, "vigil: %s: cannot write: %s\n", out->second.c_str(), std::strerror(errno));
    return 1;
  }
  return 0;
}

int cmd_notify_test(const Args& args) {
  if (args.positional.size() != 1) return usage_error("notify test takes one CHANNEL");
  auto config = args.flags.count("config") ? vigil::load_config(args.flags.at("config"))
                                           : vigil::Result<vigil::Config>(vigil::default_config());
  if (!config) {
    std::fprintf(stderr, "vigil: %s\n", config.error().message.c_str());
    return 1;
  }
  const std::string& channel = args.positional[0];
  std::string known;
  for (const auto& n : config->notifiers) {
    if (n.name != channel) {
      known += (known.empty() ? "" : ", ") + n.name;
      continue;
    }
    vigil::actions::NotifierConfig once = n;  // one attempt, in memory: never the agent's outbox
    once.max_attempts = 1;
    once.outbox_dir.clear();
    once.group_wait_seconds = 0;
    auto notifier = vigil::actions::make_notifier(once);
    if (!notifier) {
      std::fprintf(stderr, "vigil: %s\n", notifier.error().message.c_str());
      return 1;
    }
    vigil::Anomaly a;
    a.id = "vigil-notify-test";
    a.rule = "vigil_notify_test";
    a.severity = "info";
    a.summary = "Test notification from `vigil notify test` on " + config->node;
    a.started_at = static_cast<double>(std::time(nullptr));
    a.node = config->node;
    a.scope = vigil::make_labels({{"namespace", "default"}, {"pod", "vigil-notify-test"}});
    a.metric = "vigil_notify_test";
    a.value = 1;
    a.detector = "test";
    (*notifier)->enqueue(a);
    const size_t targets = std::max<size_t>(1, once.urls.size());
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration<double>(once.timeout_seconds * 2 * static_cast<double>(targets) + 2);
    vigil::actions::NotifierStats st;
    while (std::chrono::steady_clock::now() < deadline) {
      st = (*notifier)->stats();
      if (st.sent + st.dropped > 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    (*notifier)->stop();
    if (st.sent > 0) {
      std::printf("vigil: sent a test notification to channel '%s' (%s)\n", channel.c_str(), (*notifier)->type());
      return 0;
    }
    std::fprintf(stderr, "vigil: the test notification to channel '%s' was not delivered (see the log above)\n",
                 channel.c_str());
    return 1;
  }
  std::fprintf(stderr, "vigil: no notifier named '%s' (configured: %s)\n", channel.c_str(),
               known.empty() ? "none" : known.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v");
  if (argc < 2) return usage_error("missing command");
  std::string cmd = argv[1];
  std::string error;
  if (cmd == "agent") {
    auto args = parse_args(argc, argv, 2, {"config", "listen", "log-level"}, error);
    return args ? cmd_agent(*args) : usage_error(error);
  }
  if (cmd == "rules" && argc >= 3 && std::string(argv[2]) == "check") {
    auto args = parse_args(argc, argv, 3, {"config"}, error);
    return args ? cmd_rules_check(*args) : usage_error(error);
  }
  if (cmd == "config" && argc >= 3 && std::string(argv[2]) == "check") {
    auto args = parse_args(argc, argv, 3, {}, error);
    return args ? cmd_config_check(*args) : usage_error(error);
  }
  if (cmd == "rules" && argc >= 3 && std::string(argv[2]) == "test") {
    auto args = parse_args(argc, argv, 3, {}, error);
    return args ? cmd_rules_test(*args) : usage_error(error);
  }
  if (cmd == "record") {
    auto args = parse_args(argc, argv, 2, {"metric", "where", "agent", "interval", "samples", "duration", "output"}, error);
    return args ? cmd_record(*args) : usage_error(error);
  }
  if (cmd == "replay") {
    auto args = parse_args(argc, argv, 2, {"rules", "input", "output", "tick"}, error);
    return args ? cmd_replay(*args) : usage_error(error);
  }
  if (cmd == "notify" && argc >= 3 && std::string(argv[2]) == "test") {
    auto args = parse_args(argc, argv, 3, {"config"}, error);
    return args ? cmd_notify_test(*args) : usage_error(error);
  }
  if (cmd == "anomalies") {
    auto args = parse_args(argc, argv, 2, {"agent", "format"}, error);
    return args ? cmd_anomalies(*args) : usage_error(error);
  }
  if (cmd == "capture") return vigil::capture_command(argc, argv);
  if (cmd == "version" || cmd == "--version") {
    std::printf("vigil %s\n", VIGIL_VERSION);
    return 0;
  }
  if (cmd == "help" || cmd == "--help" || cmd == "-h") {
    std::printf("%s", kUsage);
    return 0;
  }
  return usage_error("unknown command '" + cmd + "'");
}
