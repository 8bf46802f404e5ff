#include "rules/runtime/rule_test.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <numbers>
#include <set>

#include "rules/core/anomaly.h"
#include "rules/core/series.h"
#include "rules/runtime/durations.h"
#include "rules/runtime/engine.h"

namespace vigil::rules {
namespace {

namespace fs = std::filesystem;

// Bounds, so that a typo cannot make a test run for hours or eat the machine's memory.
constexpr uint64_t kMaxTicks = 10'000'000;  // per test: over 16 weeks at 1s
constexpr size_t kMaxSeries = 1000;         // per test
constexpr size_t kMaxShownEvents = 30;      // events listed under a failure
constexpr double kSlack = 1e-6;
// 2026-01-01T00:00:00Z, a Thursday: the default start is aligned to the day and to the week
// (baseline.seasonal's "1w" slots start on Thursday 00:00 UTC).
constexpr double kDefaultStart = 1767225600;

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

bool parse_double(std::string_view s, double& out) {
  if (s.empty()) return false;
  if (s.front() == '+') s.remove_prefix(1);
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size() && std::isfinite(out);
}

bool parse_count(std::string_view s, uint64_t& out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// parse_duration plus weeks ("1w", "2w3d").
Result<double> parse_span(std::string_view text) {
  size_t w = text.find('w');
  if (w == std::string_view::npos) return parse_duration(text);
  double weeks = 0;
  if (!parse_double(text.substr(0, w), weeks) || weeks < 0)
    return make_error("bad duration '" + std::string(text) + "' (use e.g. 500ms, 20s, 2m, 1h30m, 1d, 1w)");
  double rest = 0;
  if (w + 1 < text.size()) {
    auto r = parse_duration(text.substr(w + 1));
    if (!r) return r.error();
    rest = *r;
  }
  return weeks * 7 * 86400 + rest;
}

std::string fmt_number(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string fmt_offset(double seconds) { return seconds == 0 ? "0s" : format_duration(seconds); }

}  // namespace

// ---- values notation ----

uint64_t ValueSeries::size() const {
  uint64_t n = 0;
  for (const auto& t : terms) n += t.count;
  return n;
}

std::optional<double> ValueSeries::at(uint64_t index, double time, uint64_t seed) const {
  const uint64_t absolute = index;
  for (const auto& t : terms) {
    if (index >= t.count) {
      index -= t.count;
      continue;
    }
    if (t.absent) return std::nullopt;
    double v = t.start + t.step * static_cast<double>(index);
    if (t.noise > 0) {
      // Depends only on the seed and the tick, so a test's noise is the same on every machine.
      uint64_t r = splitmix64(seed ^ splitmix64(absolute));
      double u = static_cast<double>(r >> 11) * 0x1.0p-53;  // [0, 1)
      v += t.noise * (2 * u - 1);
    }
    if (t.wave_period > 0) v += t.wave_amplitude * std::sin(2 * std::numbers::pi * std::fmod(time, t.wave_period) / t.wave_period);
    return v;
  }
  return std::nullopt;
}

Result<ValueSeries> parse_values(std::string_view text) {
  std::vector<std::string> tokens;
  {
    size_t i = 0;
    while (i < text.size()) {
      while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
      size_t start = i;
      while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
      if (i > start) tokens.emplace_back(text.substr(start, i - start));
    }
  }
  if (tokens.empty()) return make_error("no values (e.g. '0+10x100', '5x60', '100x600 noise 5')");
  ValueSeries out;
  const std::string kForms = " (a value, 'a+bxn', 'a-bxn', 'axn', '_' or '_xn', then optionally 'noise S', 'wave A PERIOD')";
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& tok = tokens[i];
    const std::string where = "term " + std::to_string(out.terms.size() + 1) + " '" + tok + "'";
    if (tok == "noise" || tok == "wave") {
      if (out.terms.empty() || out.terms.back().absent)
        return make_error("'" + tok + "' must follow a term with values, e.g. '100x600 noise 5'");
      ValueTerm& t = out.terms.back();
      if (tok == "noise") {
        if (i + 1 >= tokens.size() || !parse_double(tokens[i + 1], t.noise) || t.noise < 0)
          return make_error("'noise' needs an amplitude >= 0, e.g. 'noise 5'");
        i += 1;
      } else {
        if (i + 2 >= tokens.size() || !parse_double(tokens[i + 1], t.wave_amplitude))
          return make_error("'wave' needs an amplitude and a period, e.g. 'wave 50 1d'");
        auto period = parse_span(tokens[i + 2]);
        if (!period || *period <= 0) return make_error("'wave': bad period '" + tokens[i + 2] + "' (a duration > 0, e.g. 1d)");
        t.wave_period = *period;
        i += 2;
      }
      continue;
    }
    ValueTerm t;
    std::string_view s = tok;
    size_t x = s.rfind('x');
    std::string_view head = x == std::string_view::npos ? s : s.substr(0, x);
    if (x != std::string_view::npos) {
      uint64_t n = 0;
      if (!parse_count(s.substr(x + 1), n)) return make_error(where + ": bad repeat count after 'x'" + kForms);
      if (n >= kMaxTicks) return make_error(where + ": at most " + std::to_string(kMaxTicks) + " values");
      t.count = n + 1;
    }
    if (head == "_") {
      t.absent = true;
    } else {
      // Split "a+b" / "a-b": the sign after the first character that is not an exponent's.
      size_t op = std::string_view::npos;
      for (size_t k = 1; k < head.size(); ++k)
        if ((head[k] == '+' || head[k] == '-') && head[k - 1] != 'e' && head[k - 1] != 'E') {
          op = k;
          break;
        }
      if (op != std::string_view::npos && x == std::string_view::npos)
        return make_error(where + ": 'a+b' needs a repeat count, e.g. '" + std::string(head) + "x10'");
      if (!parse_double(head.substr(0, op), t.start)) return make_error(where + ": bad number" + kForms);
      if (op != std::string_view::npos) {
        if (!parse_double(head.substr(op + 1), t.step)) return make_error(where + ": bad step" + kForms);
        if (head[op] == '-') t.step = -t.step;
      }
    }
    out.terms.push_back(t);
    if (out.size() > kMaxTicks) return make_error("more than " + std::to_string(kMaxTicks) + " values");
  }
  return out;
}

// ---- test files ----

namespace {

struct Range {
  std::optional<double> min;
  std::optional<double> max;
  bool contains(double v) const { return (!min || v >= *min - kSlack) && (!max || v <= *max + kSlack); }
  std::string text() const { return "[" + (min ? fmt_number(*min) : "-inf") + ", " + (max ? fmt_number(*max) : "inf") + "]"; }
};

struct SeriesInput {
  int line = 0;
  std::string metric;
  Labels labels;
  SeriesKind kind = SeriesKind::Counter;
  bool rates = false;  // values are per-second rates, integrated into a counter
  // > 0: the agent reads the series on its own schedule, every this many seconds (as the netstat
  // family does): the rule sees the value of the last read, with its read time.
  double read_every = 0;
  ValueSeries values;
};

struct Expected {
  int line = 0;
  double from = 0, to = 0;  // offsets from the start, inclusive
  std::string rule;
  Labels scope;
  AnomalyStatus status = AnomalyStatus::Firing;
  std::string channel;  // notifications only
  std::optional<std::string> severity;
  std::optional<std::string> summary;  // a substring
  std::optional<Range> score, value, baseline;
  std::optional<uint64_t> captures;  // how many captures the anomaly carries
};

struct TestCase {
  std::string name;
  int line = 0;
  uint64_t ticks = 0;
  uint64_t seed = 1;
  std::vector<PodMeta> pods;
  std::vector<SeriesInput> series;
  std::vector<Expected> anomalies;
  std::optional<std::vector<Expected>> notifications;  // checked only when the key is given
};

struct TestFile {
  std::string path;
  std::vector<std::string> rule_files;
  double tick = 1;
  double start = kDefaultStart;
  std::string node = "test-node";
  std::optional<std::set<std::string>> channels;
  std::vector<TestCase> tests;
};

struct BadInput {
  std::string message;
};

class Parser {
 public:
  explicit Parser(std::string path) : path_(std::move(path)) {}

  TestFile parse(const std::string& text) {
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      throw BadInput{path_ + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg};
    }
    TestFile f;
    f.path = path_;
    if (!root.IsMap()) throw BadInput{path_ + ":1: expected a map with keys rule_files, tests, ..."};
    keys(root, "", {"rule_files", "tick", "start", "node", "channels", "tests"});
    const YAML::Node files = required(root, "", "rule_files");
    if (!files.IsSequence() || files.size() == 0) fail(files, "rule_files", "expected a list of rule files");
    for (size_t i = 0; i < files.size(); ++i) {
      const std::string field = "rule_files[" + std::to_string(i) + "]";
      fs::path p = string(files[i], field);
      if (p.is_relative()) p = fs::path(path_).parent_path() / p;
      std::error_code ec;
      if (!fs::is_regular_file(p, ec)) fail(files[i], field, "no such rule file: " + p.string());
      f.rule_files.push_back(p.lexically_normal().string());
    }
    if (root["tick"]) {
      f.tick = duration(root["tick"], "tick");
      if (f.tick <= 0 || f.tick > 3600) fail(root["tick"], "tick", "must be > 0 and at most 1h");
    }
    tick_ = f.tick;
    if (root["start"]) f.start = timestamp(root["start"], "start");
    if (root["node"]) f.node = string(root["node"], "node");
    if (root["channels"]) {
      const YAML::Node c = root["channels"];
      if (!c.IsSequence()) fail(c, "channels", "expected a list of channel names, e.g. [default, oncall]");
      f.channels.emplace();
      for (size_t i = 0; i < c.size(); ++i) f.channels->insert(string(c[i], "channels[" + std::to_string(i) + "]"));
    }
    const YAML::Node tests = required(root, "", "tests");
    if (!tests.IsSequence() || tests.size() == 0) fail(tests, "tests", "expected a list of tests");
    for (size_t i = 0; i < tests.size(); ++i) f.tests.push_back(test_case(tests[i], "tests[" + std::to_string(i) + "]", f));
    return f;
  }

 private:
  [[noreturn]] void fail(const YAML::Node& node, const std::string& field, const std::string& message) const {
    const int line = node.Mark().is_null() ? 1 : node.Mark().line + 1;
    throw BadInput{path_ + ":" + std::to_string(line) + ": " + (field.empty() ? "" : field + ": ") + message};
  }

  static std::string child(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

  void keys(const YAML::Node& map, const std::string& field, const std::vector<std::string>& known) const {
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    if (!map.IsMap()) fail(map, field, "expected a map with keys " + list);
    std::set<std::string> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const std::string name = it->first.IsScalar() ? it->first.Scalar() : "";
      if (std::find(known.begin(), known.end(), name) == known.end())
        fail(it->first, field, "unknown key '" + name + "' (known: " + list + ")");
      if (!seen.insert(name).second) fail(it->first, child(field, name), "duplicate key");
    }
  }

  YAML::Node required(const YAML::Node& map, const std::string& field, const std::string& key) const {
    YAML::Node n = map[key];
    if (!n || n.IsNull()) fail(map, child(field, key), "missing (required)");
    return n;
  }

  std::string string(const YAML::Node& n, const std::string& field) const {
    if (!n.IsScalar()) fail(n, field, "expected a string");
    return n.Scalar();
  }

  double number(const YAML::Node& n, const std::string& field) const {
    double v = 0;
    if (!n.IsScalar() || !parse_double(n.Scalar(), v)) fail(n, field, "expected a number");
    return v;
  }

  double duration(const YAML::Node& n, const std::string& field) const {
    auto d = parse_span(string(n, field));
    if (!d) fail(n, field, d.error().message);
    return *d;
  }

  double timestamp(const YAML::Node& n, const std::string& field) const {
    const std::string s = string(n, field);
    double v = 0;
    if (parse_double(s, v)) return v;
    std::tm tm{};
    const char* end = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end || (*end != '\0' && std::string(end) != "Z"))
      fail(n, field, "expected unix seconds or YYYY-MM-DDTHH:MM:SSZ (UTC), got '" + s + "'");
    return static_cast<double>(timegm(&tm));
  }

  std::map<std::string, std::string> string_map(const YAML::Node& n, const std::string& field) const {
    if (!n.IsMap()) fail(n, field, "expected a map of name: \"value\"");
    std::map<std::string, std::string> out;
    for (auto it = n.begin(); it != n.end(); ++it) {
      const std::string k = string(it->first, field);
      out[k] = string(it->second, child(field, k));
    }
    return out;
  }

  // metric{name="value",...}
  void selector(const YAML::Node& n, const std::string& field, SeriesInput& s) const {
    const std::string text = string(n, field);
    size_t i = 0;
    auto name_char = [](char c, bool first) {
      return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
             (!first && std::isdigit(static_cast<unsigned char>(c)));
    };
    while (i < text.size() && name_char(text[i], i == 0)) ++i;
    if (i == 0) fail(n, field, "expected metric{label=\"value\",...}, got '" + text + "'");
    s.metric = text.substr(0, i);
    if (i == text.size()) return;
    if (text[i] != '{' || text.back() != '}') fail(n, field, "expected metric{label=\"value\",...}, got '" + text + "'");
    ++i;
    const size_t end = text.size() - 1;
    while (i < end) {
      while (i < end && (text[i] == ' ' || text[i] == ',')) ++i;
      if (i == end) break;
      size_t start = i;
      while (i < end && name_char(text[i], i == start)) ++i;
      std::string label = text.substr(start, i - start);
      if (label.empty() || i + 1 >= end || text[i] != '=' || text[i + 1] != '"')
        fail(n, field, "bad label at '" + text.substr(start, end - start) + "' (expected name=\"value\")");
      i += 2;
      std::string value;
      bool closed = false;
      while (i < end) {
        char c = text[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\' && i < end) c = text[i] == 'n' ? '\n' : text[i], ++i;
        value += c;
      }
      if (!closed) fail(n, field, "unterminated value of label '" + label + "'");
      if (find_label(s.labels, label)) fail(n, field, "label '" + label + "' given twice");
      s.labels.emplace_back(label, value);
    }
    sort_labels(s.labels);
  }

  SeriesInput series(const YAML::Node& n, const std::string& field) const {
    keys(n, field, {"series", "metric", "labels", "type", "values", "rates", "read_every"});
    SeriesInput s;
    s.line = n.Mark().line + 1;
    if (n["series"] && n["metric"]) fail(n, field, "give either series or metric (+ labels), not both");
    if (n["series"]) {
      if (n["labels"]) fail(n["labels"], child(field, "labels"), "labels go inside series: metric{name=\"value\"}");
      selector(n["series"], child(field, "series"), s);
    } else {
      s.metric = string(required(n, field, "metric"), child(field, "metric"));
      if (n["labels"])
        for (const auto& [k, v] : string_map(n["labels"], child(field, "labels"))) s.labels.emplace_back(k, v);
      sort_labels(s.labels);
    }
    const bool counter_name = s.metric.ends_with("_total") || s.metric.ends_with("_sum") ||
                              s.metric.ends_with("_count") || s.metric.ends_with("_bucket");
    s.kind = counter_name ? SeriesKind::Counter : SeriesKind::Gauge;
    if (n["type"]) {
      const std::string t = string(n["type"], child(field, "type"));
      if (t == "counter") s.kind = SeriesKind::Counter;
      else if (t == "gauge") s.kind = SeriesKind::Gauge;
      else fail(n["type"], child(field, "type"), "expected counter or gauge, got '" + t + "'");
    }
    if (n["values"] && n["rates"]) fail(n, field, "give either values or rates, not both");
    if (!n["values"] && !n["rates"]) fail(n, field, "values or rates: missing (required)");
    s.rates = static_cast<bool>(n["rates"]);
    if (s.rates && s.kind != SeriesKind::Counter)
      fail(n["rates"], child(field, "rates"), "rates are for counters; a gauge takes values");
    if (n["read_every"]) {
      s.read_every = duration(n["read_every"], child(field, "read_every"));
      if (s.read_every < tick_ || s.read_every > 3600)
        fail(n["read_every"], child(field, "read_every"), "must be at least the tick and at most 1h");
    }
    const char* key = s.rates ? "rates" : "values";
    const YAML::Node v = n[key];
    auto parsed = parse_values(string(v, child(field, key)));
    if (!parsed) fail(v, child(field, key), parsed.error().message);
    s.values = std::move(*parsed);
    return s;
  }

  Range range(const YAML::Node& n, const std::string& field) const {
    keys(n, field, {"min", "max"});
    Range r;
    if (n["min"]) r.min = number(n["min"], child(field, "min"));
    if (n["max"]) r.max = number(n["max"], child(field, "max"));
    if (!r.min && !r.max) fail(n, field, "give min, max or both");
    return r;
  }

  Expected expected(const YAML::Node& n, const std::string& field, bool notification) const {
    std::vector<std::string> known{"at",    "rule",  "scope",    "status",  "severity",
                                   "summary", "score", "value", "baseline", "captures"};
    if (notification) known.insert(known.begin() + 1, "channel");
    keys(n, field, known);
    Expected e;
    e.line = n.Mark().line + 1;
    const YAML::Node at = required(n, field, "at");
    const std::string at_text = string(at, child(field, "at"));
    size_t dots = at_text.find("..");
    auto offset = [&](const std::string& s) {
      auto d = parse_span(s);
      if (!d) fail(at, child(field, "at"), d.error().message + "; a range is FROM..TO, e.g. 10m..10m30s");
      return *d;
    };
    e.from = offset(dots == std::string::npos ? at_text : at_text.substr(0, dots));
    e.to = dots == std::string::npos ? e.from : offset(at_text.substr(dots + 2));
    if (e.to < e.from) fail(at, child(field, "at"), "the range ends before it starts");
    if (notification) e.channel = string(required(n, field, "channel"), child(field, "channel"));
    e.rule = string(required(n, field, "rule"), child(field, "rule"));
    if (n["scope"])
      for (const auto& [k, v] : string_map(n["scope"], child(field, "scope"))) e.scope.emplace_back(k, v);
    sort_labels(e.scope);
    if (n["status"]) {
      const std::string s = string(n["status"], child(field, "status"));
      if (s == "firing") e.status = AnomalyStatus::Firing;
      else if (s == "resolved") e.status = AnomalyStatus::Resolved;
      else fail(n["status"], child(field, "status"), "expected firing or resolved, got '" + s + "'");
    }
    if (n["severity"]) {
      e.severity = string(n["severity"], child(field, "severity"));
      if (*e.severity != "info" && *e.severity != "warning" && *e.severity != "critical")
        fail(n["severity"], child(field, "severity"), "expected info, warning or critical, got '" + *e.severity + "'");
    }
    if (n["summary"]) e.summary = string(n["summary"], child(field, "summary"));
    if (n["score"]) e.score = range(n["score"], child(field, "score"));
    if (n["value"]) e.value = range(n["value"], child(field, "value"));
    if (n["baseline"]) e.baseline = range(n["baseline"], child(field, "baseline"));
    if (n["captures"]) {
      uint64_t count = 0;
      if (!n["captures"].IsScalar() || !parse_count(n["captures"].Scalar(), count))
        fail(n["captures"], child(field, "captures"), "expected a whole number >= 0 (captures the anomaly carries)");
      e.captures = count;
    }
    return e;
  }

  TestCase test_case(const YAML::Node& n, const std::string& field, const TestFile& f) const {
    keys(n, field, {"name", "duration", "seed", "pods", "input_series", "expected_anomalies", "expected_notifications"});
    TestCase tc;
    tc.line = n.Mark().line + 1;
    tc.name = n["name"] ? string(n["name"], child(field, "name")) : field;
    if (n["seed"]) {
      uint64_t seed = 0;
      if (!n["seed"].IsScalar() || !parse_count(n["seed"].Scalar(), seed)) fail(n["seed"], child(field, "seed"), "expected a whole number >= 0");
      tc.seed = seed;
    }
    if (n["pods"]) {
      const YAML::Node pods = n["pods"];
      if (!pods.IsSequence()) fail(pods, child(field, "pods"), "expected a list of {namespace, name, labels}");
      for (size_t i = 0; i < pods.size(); ++i) {
        const std::string pf = child(field, "pods[" + std::to_string(i) + "]");
        keys(pods[i], pf, {"namespace", "name", "labels"});
        PodMeta p;
        p.namespace_ = pods[i]["namespace"] ? string(pods[i]["namespace"], child(pf, "namespace")) : "default";
        p.name = string(required(pods[i], pf, "name"), child(pf, "name"));
        if (pods[i]["labels"]) p.labels = string_map(pods[i]["labels"], child(pf, "labels"));
        p.node = f.node;
        tc.pods.push_back(std::move(p));
      }
    }
    uint64_t longest = 0;
    if (n["input_series"]) {
      const YAML::Node in = n["input_series"];
      if (!in.IsSequence()) fail(in, child(field, "input_series"), "expected a list of series");
      if (in.size() > kMaxSeries) fail(in, child(field, "input_series"), "at most " + std::to_string(kMaxSeries) + " series");
      std::set<std::string> seen;
      for (size_t i = 0; i < in.size(); ++i) {
        const std::string sf = child(field, "input_series[" + std::to_string(i) + "]");
        tc.series.push_back(series(in[i], sf));
        const auto& s = tc.series.back();
        if (!seen.insert(s.metric + labels_to_string(s.labels)).second)
          fail(in[i], sf, "series " + s.metric + labels_to_string(s.labels) + " is given twice");
        longest = std::max(longest, s.values.size());
      }
    }
    if (n["duration"]) {
      const double d = duration(n["duration"], child(field, "duration"));
      const double ticks = std::round(d / f.tick);
      if (ticks < 1 || ticks > static_cast<double>(kMaxTicks))
        fail(n["duration"], child(field, "duration"),
             "must be between one tick and " + std::to_string(kMaxTicks) + " ticks (" + fmt_offset(f.tick) + " each)");
      tc.ticks = static_cast<uint64_t>(ticks);
    } else {
      if (longest == 0) fail(n, field, "no input_series and no duration: nothing to run");
      tc.ticks = longest;
    }
    auto list = [&](const char* key, bool notification) {
      std::vector<Expected> out;
      const YAML::Node l = n[key];
      if (!l || l.IsNull()) return out;
      if (!l.IsSequence()) fail(l, child(field, key), "expected a list");
      for (size_t i = 0; i < l.size(); ++i)
        out.push_back(expected(l[i], child(field, std::string(key) + "[" + std::to_string(i) + "]"), notification));
      return out;
    };
    tc.anomalies = list("expected_anomalies", false);
    if (n["expected_notifications"]) tc.notifications = list("expected_notifications", true);
    return tc;
  }

  std::string path_;
  double tick_ = 1;  // the file's, for the checks of input series
};

// ---- running and comparing ----

struct Event {
  double offset = 0;
  std::string channel;  // notifications
  Anomaly a;
};

std::string describe(const Event& e, bool notification) {
  std::string s = "at " + fmt_offset(e.offset) + " ";
  if (notification) s += "channel=" + e.channel + " ";
  s += std::string(to_string(e.a.status)) + " " + e.a.rule + " " + labels_to_string(e.a.scope);
  s += " severity=" + e.a.severity + " value=" + fmt_number(e.a.value) + " baseline=" + fmt_number(e.a.baseline) +
       " score=" + fmt_number(e.a.score) + " summary=\"" + e.a.summary + "\"";
  if (!e.a.captures.empty()) s += " captures=" + std::to_string(e.a.captures.size());
  return s;
}

std::string describe(const Expected& e, bool notification) {
  std::string s = "at " + fmt_offset(e.from) + (e.to > e.from ? ".." + fmt_offset(e.to) : "") + " ";
  if (notification) s += "channel=" + e.channel + " ";
  s += std::string(to_string(e.status)) + " " + e.rule + " " + labels_to_string(e.scope);
  if (e.severity) s += " severity=" + *e.severity;
  if (e.value) s += " value in " + e.value->text();
  if (e.baseline) s += " baseline in " + e.baseline->text();
  if (e.score) s += " score in " + e.score->text();
  if (e.summary) s += " summary contains \"" + *e.summary + "\"";
  if (e.captures) s += " captures=" + std::to_string(*e.captures);
  return s;
}

// The fields in which `got` differs from `want`; empty when it matches.
std::vector<std::string> differences(const Expected& want, const Event& got, bool notification) {
  std::vector<std::string> d;
  if (got.offset < want.from - kSlack || got.offset > want.to + kSlack) d.push_back("at");
  if (notification && got.channel != want.channel) d.push_back("channel");
  if (got.a.rule != want.rule) d.push_back("rule");
  if (got.a.status != want.status) d.push_back("status");
  if (got.a.scope != want.scope) d.push_back("scope");
  if (want.severity && got.a.severity != *want.severity) d.push_back("severity");
  if (want.summary && got.a.summary.find(*want.summary) == std::string::npos) d.push_back("summary");
  if (want.value && !want.value->contains(got.a.value)) d.push_back("value");
  if (want.baseline && !want.baseline->contains(got.a.baseline)) d.push_back("baseline");
  if (want.score && !want.score->contains(got.a.score)) d.push_back("score");
  if (want.captures && got.a.captures.size() != *want.captures) d.push_back("captures");
  return d;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

// Pairs each expectation with the first event it matches; reports what is left on either side.
void compare(const std::string& path, const std::vector<Expected>& want, const std::vector<Event>& got,
             bool notification, std::vector<std::string>& problems) {
  const char* what = notification ? "notification" : "anomaly";
  std::vector<bool> used(got.size(), false);
  std::vector<const Expected*> missing;
  for (const auto& w : want) {
    bool found = false;
    for (size_t i = 0; i < got.size() && !found; ++i)
      if (!used[i] && differences(w, got[i], notification).empty()) used[i] = found = true;
    if (!found) missing.push_back(&w);
  }
  for (const Expected* w : missing) {
    std::string p = path + ":" + std::to_string(w->line) + ": expected " + what + " not seen\n      want: " +
                    describe(*w, notification);
    // The closest unclaimed event: fewest differing fields, then nearest in time.
    const Event* best = nullptr;
    std::vector<std::string> best_diff;
    for (size_t i = 0; i < got.size(); ++i) {
      if (used[i]) continue;
      auto d = differences(*w, got[i], notification);
      auto distance = [&](const Event& e) { return std::fabs(e.offset - w->from); };
      if (!best || d.size() < best_diff.size() ||
          (d.size() == best_diff.size() && distance(got[i]) < distance(*best)))
        best = &got[i], best_diff = d;
    }
    if (best) p += "\n      closest got: " + describe(*best, notification) + "\n      differs in: " + join(best_diff, ", ");
    else p += "\n      got: no other " + std::string(what);
    problems.push_back(std::move(p));
  }
  for (size_t i = 0; i < got.size(); ++i)
    if (!used[i]) problems.push_back(std::string("unexpected ") + what + ": " + describe(got[i], notification));
}

class RecordingSink : public ActionSink {
 public:
  explicit RecordingSink(const double* offset) : offset_(offset) {}
  void notify(const std::string& channel, const Anomaly& a) override { sent.push_back({*offset_, channel, a}); }
  // Every capture is granted (nothing is captured): the anomaly carries its id, so a test can
  // expect `captures: N`.
  Result<std::string> capture(const CaptureSpec&) override { return "test-capture-" + std::to_string(++captures); }
  std::vector<Event> sent;
  uint64_t captures = 0;

 private:
  const double* offset_;
};

// Runs one test; returns the problems found (empty: passed). `error` gets a load failure.
std::vector<std::string> run_case(const TestFile& f, const TestCase& tc, std::vector<Event>& anomalies,
                                  std::vector<Event>& notifications) {
  std::vector<std::string> problems;
  double offset = 0;
  RecordingSink sink(&offset);
  std::map<std::string, Anomaly> fired;  // id -> the anomaly as it fired
  EngineOptions opts;
  opts.node = f.node;
  opts.tick_seconds = f.tick;
  opts.channels = f.channels;
  opts.observer = [&](const Anomaly& a) {
    Event e{offset, "", a};
    if (a.status == AnomalyStatus::Firing) {
      fired[a.id] = a;
    } else if (auto it = fired.find(a.id); it != fired.end()) {
      // A handler's notify() overrides change the episode; the resolve is the firing's anomaly.
      e.a.scope = it->second.scope;
      e.a.severity = it->second.severity;
      e.a.summary = it->second.summary;
      fired.erase(it);
    }
    anomalies.push_back(std::move(e));
  };
  auto engine = RuleEngine::load(f.rule_files, opts, &sink);
  if (!engine) {
    problems.push_back("rule files do not load: " + engine.error().message);
    return problems;
  }

  TickInput input;
  input.pods = tc.pods;
  std::vector<double> cumulative(tc.series.size(), 0);
  std::vector<uint64_t> seeds(tc.series.size());
  for (size_t k = 0; k < tc.series.size(); ++k) seeds[k] = splitmix64(tc.seed * 0x100000001B3ULL + k);
  std::vector<char> present(tc.series.size(), 0), was_present;
  std::vector<double> values(tc.series.size(), 0);
  // Series read on a schedule (read_every): the value and time of the last read, the read before.
  struct Read {
    double value = 0, time = 0, previous = 0;
  };
  std::vector<Read> reads(tc.series.size());
  for (uint64_t i = 0; i < tc.ticks; ++i) {
    offset = static_cast<double>(i) * f.tick;
    const double now = f.start + offset;
    for (size_t k = 0; k < tc.series.size(); ++k) {
      const SeriesInput& s = tc.series[k];
      auto v = s.values.at(i, now, seeds[k]);
      present[k] = v.has_value();
      if (!v) continue;
      if (s.rates) values[k] = cumulative[k] += std::max(0.0, *v) * f.tick;
      else values[k] = *v;
      if (s.read_every > 0) {
        Read& r = reads[k];
        // The first tick reads, then every read_every (ticks land on the grid: half a tick of slack).
        if (r.time == 0 || now - r.time >= s.read_every - f.tick / 2) {
          r.previous = r.time;
          r.time = now;
          r.value = values[k];
        }
        values[k] = r.value;
      }
    }
    if (present != was_present) {  // rebuild the samples only when a series comes or goes
      input.samples.clear();
      for (size_t k = 0; k < tc.series.size(); ++k)
        if (present[k]) input.samples.push_back(Sample{tc.series[k].metric, tc.series[k].labels, 0, tc.series[k].kind});
      was_present = present;
    }
    for (size_t k = 0, j = 0; k < tc.series.size(); ++k) {
      if (!present[k]) continue;
      Sample& sample = input.samples[j++];
      sample.value = values[k];
      if (tc.series[k].read_every > 0) {
        sample.read_time = reads[k].time;
        sample.previous_read_time = reads[k].previous;
      }
    }
    input.time = now;
    (*engine)->tick(input);
  }
  notifications = std::move(sink.sent);
  for (const auto& st : (*engine)->status()) {
    // Failed calls into the rule; other counters (first_seen_overflow) are not the rule's fault.
    std::string kinds;
    for (const auto& [kind, n] : st.errors)
      if (kind == "runtime" || kind == "budget" || kind == "notify")
        kinds += (kinds.empty() ? "" : ", ") + kind + " " + std::to_string(n);
    if (kinds.empty() && !st.disabled) continue;
    problems.push_back("rule '" + st.rule + "' failed (" + kinds + (st.disabled ? ", quarantined" : "") +
                       "): " + st.last_error);
  }
  compare(f.path, tc.anomalies, anomalies, false, problems);
  if (tc.notifications) compare(f.path, *tc.notifications, notifications, true, problems);
  return problems;
}

std::string plural(size_t n, const char* word) { return std::to_string(n) + " " + word + (n == 1 ? "" : "s"); }

}  // namespace

RuleTestRun run_rule_tests(const std::vector<std::string>& files) {
  RuleTestRun run;
  bool bad = false;
  for (const auto& path : files) {
    std::string text;
    {
      std::FILE* fp = std::fopen(path.c_str(), "rb");
      if (!fp) {
        run.err += path + ": cannot read test file: " + std::strerror(errno) + "\n";
        bad = true;
        continue;
      }
      char buf[65536];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, fp)) > 0) text.append(buf, n);
      std::fclose(fp);
    }
    TestFile f;
    try {
      f = Parser(path).parse(text);
    } catch (const BadInput& e) {
      run.err += e.message + "\n";
      bad = true;
      continue;
    } catch (const std::exception& e) {  // a yaml-cpp surprise: still bad input, still named
      run.err += path + ": cannot read test file: " + e.what() + "\n";
      bad = true;
      continue;
    }
    for (const auto& tc : f.tests) {
      ++run.tests;
      std::vector<Event> anomalies, notifications;
      std::vector<std::string> problems = run_case(f, tc, anomalies, notifications);
      const std::string head = path + ":" + std::to_string(tc.line) + ": " + tc.name;
      if (problems.empty()) {
        ++run.passed;
        run.out += "ok    " + head + " (" + plural(anomalies.size(), "anomaly event") + ", " +
                   plural(notifications.size(), "notification") + ", " + fmt_offset(static_cast<double>(tc.ticks) * f.tick) +
                   " simulated)\n";
        continue;
      }
      ++run.failed;
      run.out += "FAIL  " + head + "\n";
      for (const auto& p : problems) run.out += "  " + p + "\n";
      auto list = [&](const std::vector<Event>& events, const char* what, bool notification) {
        run.out += "  " + plural(events.size(), what) + " seen" + (events.empty() ? "" : ":") + "\n";
        for (size_t i = 0; i < events.size() && i < kMaxShownEvents; ++i)
          run.out += "      " + describe(events[i], notification) + "\n";
        if (events.size() > kMaxShownEvents) run.out += "      ... " + std::to_string(events.size() - kMaxShownEvents) + " more\n";
      };
      list(anomalies, "anomaly event", false);
      if (tc.notifications) list(notifications, "notification", true);
    }
  }
  run.out += plural(run.tests, "test") + ": " + std::to_string(run.passed) + " passed, " + std::to_string(run.failed) +
             " failed\n";
  run.exit_code = bad ? 2 : run.failed ? 1 : 0;
  return run;
}

}  // namespace vigil::rules
