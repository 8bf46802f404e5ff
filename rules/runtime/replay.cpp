#include "rules/runtime/replay.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "rules/runtime/lua_api.h"
#include "rules/runtime/lua_sandbox.h"
#include "rules/runtime/rule_eval.h"

namespace vigil::rules {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '"')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '"')) s.remove_suffix(1);
  return s;
}

bool parse_number(std::string_view s, double& out) {
  if (s.empty()) return false;
  if (s.front() == '+') s.remove_prefix(1);
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size() && std::isfinite(out);
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
long long days_from_civil(long long y, unsigned m, unsigned d) {
  y -= m <= 2;
  const long long era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<long long>(doe) - 719468;
}

bool parse_timestamp(std::string_view s, double& out) {
  if (parse_number(s, out)) return true;
  // YYYY-MM-DD[ T]HH:MM:SS[.fff][Z]
  if (!s.empty() && s.back() == 'Z') s.remove_suffix(1);
  if (s.size() < 19 || s[4] != '-' || s[7] != '-' || (s[10] != ' ' && s[10] != 'T') || s[13] != ':' || s[16] != ':')
    return false;
  auto field = [&](size_t pos, size_t len, int& v) {
    auto [p, ec] = std::from_chars(s.data() + pos, s.data() + pos + len, v);
    return ec == std::errc() && p == s.data() + pos + len;
  };
  int y, mo, d, h, mi;
  double sec;
  if (!field(0, 4, y) || !field(5, 2, mo) || !field(8, 2, d) || !field(11, 2, h) || !field(14, 2, mi)) return false;
  if (!parse_number(s.substr(17), sec)) return false;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec < 0 || sec >= 61) return false;
  out = static_cast<double>(days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d))) * 86400.0 +
        h * 3600.0 + mi * 60.0 + sec;
  return true;
}

}  // namespace

Result<std::vector<ReplayPoint>> parse_replay_csv(std::string_view text, const std::string& name) {
  std::vector<ReplayPoint> points;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (trim(line).empty()) continue;
    size_t comma = line.find(',');
    std::string where = name + ":" + std::to_string(line_no);
    if (comma == std::string_view::npos) return make_error(where + ": expected timestamp,value");
    std::string_view ts = trim(line.substr(0, comma));
    std::string_view value = trim(line.substr(comma + 1));
    if (value.find(',') != std::string_view::npos) return make_error(where + ": expected two columns, timestamp,value");
    ReplayPoint p;
    bool ts_ok = parse_timestamp(ts, p.timestamp);
    bool value_ok = parse_number(value, p.value);
    if (points.empty() && !ts_ok && !value_ok) continue;  // a header line
    if (!ts_ok) return make_error(where + ": bad timestamp '" + std::string(ts) + "' (unix seconds or YYYY-MM-DD HH:MM:SS)");
    if (!value_ok) return make_error(where + ": bad value '" + std::string(value) + "' (a finite number)");
    p.timestamp_text = ts;
    p.value_text = value;
    points.push_back(std::move(p));
  }
  return points;
}

Result<std::vector<ReplayPoint>> read_replay_csv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(path + ": cannot read: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return parse_replay_csv(text.str(), path);
}

double infer_tick(const std::vector<ReplayPoint>& points) {
  std::vector<double> steps;
  for (size_t i = 1; i < points.size(); ++i) {
    double d = points[i].timestamp - points[i - 1].timestamp;
    if (d > 0) steps.push_back(d);
  }
  if (steps.empty()) return 1;
  std::nth_element(steps.begin(), steps.begin() + static_cast<long>(steps.size() / 2), steps.end());
  return steps[steps.size() / 2];
}

Result<std::vector<ReplayRow>> replay(const std::string& rule_file, const std::vector<ReplayPoint>& points,
                                      const ReplayOptions& options) {
  std::ifstream in(rule_file, std::ios::binary);
  if (!in) return make_error(rule_file + ": cannot read rule file: " + std::strerror(errno));
  std::ostringstream source;
  source << in.rdbuf();

  const double tick = options.tick_seconds > 0 ? options.tick_seconds : infer_tick(points);
  FileContext ctx;  // declared first: the sandbox whose closures point at it is destroyed first
  auto sandbox = LuaSandbox::create(rule_file, {32u << 20, 10'000'000});
  if (!sandbox) return make_error(rule_file + ": cannot create a Lua state");
  ctx.path = rule_file;
  ctx.detectors.tick_seconds = tick;
  install_api(*sandbox, &ctx);
  if (auto error = sandbox->run(source.str(), rule_file)) return make_error(error->message);
  ctx.loading = false;
  if (ctx.declared.size() != 1)
    return make_error(rule_file + ": replay needs exactly one rule in the file (found " +
                      std::to_string(ctx.declared.size()) + ")");
  const RuleSpec spec = std::move(ctx.declared.front());
  if (spec.ratio)
    return make_error(spec.location + ": replay feeds one series; rule '" + spec.name +
                      "' is a ratio of several (numerator and denominator)");
  if (std::string_view(spec.detector->name()) == "first_seen")
    return make_error(spec.location + ": replay feeds one series of values; rule '" + spec.name +
                      "' uses first_seen, which judges label values");

  Sample sample;
  sample.metric = spec.metric;
  sample.kind = SeriesKind::Gauge;
  for (const auto& m : spec.where)
    if (!m.negate) sample.labels.emplace_back(m.name, m.values.front());
  sort_labels(sample.labels);
  Labels key;
  for (const auto& name : spec.by) {
    const std::string* v = find_label(sample.labels, name);
    key.emplace_back(name, v ? *v : std::string());
  }
  sort_labels(key);

  RuleEvaluator eval(spec);
  std::vector<ReplayRow> rows;
  rows.reserve(points.size());
  double now = points.empty() ? 0 : points.front().timestamp;
  for (const auto& p : points) {
    now = std::max(now, p.timestamp);
    sample.value = p.value;
    std::vector<SeriesValue> series{{&sample, p.value}};
    eval.evaluate(series, {}, now, true);
    const Group* g = eval.find(key);
    ReplayRow row;
    row.time = now;
    if (g) {
      row.anomaly_score = std::clamp(eval.last_verdict().probability, 0.0, 1.0);
      row.anomalous = eval.last_verdict().anomalous;
      row.firing = g->state == GroupState::Firing;
    }
    rows.push_back(row);
  }
  return rows;
}

std::string format_replay_csv(const std::vector<ReplayPoint>& points, const std::vector<ReplayRow>& rows) {
  std::string out = "timestamp,value,anomaly_score,firing\n";
  char buf[64];
  for (size_t i = 0; i < points.size() && i < rows.size(); ++i) {
    std::snprintf(buf, sizeof buf, ",%.17g,%d\n", rows[i].anomaly_score, rows[i].firing ? 1 : 0);
    out += points[i].timestamp_text;
    out += ',';
    out += points[i].value_text;
    out += buf;
  }
  return out;
}

}  // namespace vigil::rules
