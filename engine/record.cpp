#include "engine/record.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <vector>

namespace vigil {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Parses `{a="x",b="y\"z"}` starting at text[0] == '{'; returns the offset past '}' or npos.
size_t parse_labels(std::string_view text, std::map<std::string, std::string>& out) {
  size_t i = 1;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == ',')) ++i;
    if (i < text.size() && text[i] == '}') return i + 1;
    size_t eq = text.find('=', i);
    if (eq == std::string_view::npos || eq + 1 >= text.size() || text[eq + 1] != '"') return std::string_view::npos;
    std::string name(trim(text.substr(i, eq - i)));
    std::string value;
    size_t j = eq + 2;
    for (; j < text.size() && text[j] != '"'; ++j) {
      if (text[j] == '\\' && j + 1 < text.size()) {
        ++j;
        value += text[j] == 'n' ? '\n' : text[j];
      } else {
        value += text[j];
      }
    }
    if (j >= text.size()) return std::string_view::npos;
    out[name] = value;
    i = j + 1;
  }
  return std::string_view::npos;
}

}  // namespace

Result<std::map<std::string, std::string>> parse_where(const std::string& text) {
  std::map<std::string, std::string> out;
  size_t start = 0;
  while (start <= text.size() && !text.empty()) {
    size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      return make_error("--where: '" + item + "' is not label=value (e.g. pod=web-1,direction=ingress)");
    out[item.substr(0, eq)] = item.substr(eq + 1);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

Result<ScrapedValue> scrape_value(std::string_view text, const std::string& metric,
                                  const std::map<std::string, std::string>& where) {
  ScrapedValue out;
  std::map<std::string, std::string> types;  // family -> type
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    std::string_view line = trim(text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos));
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line_no;
    if (line.empty()) continue;
    if (line[0] == '#') {
      if (line.rfind("# TYPE ", 0) == 0) {
        std::string_view rest = line.substr(7);
        size_t sp = rest.find(' ');
        if (sp != std::string_view::npos) types[std::string(rest.substr(0, sp))] = std::string(trim(rest.substr(sp + 1)));
      }
      continue;
    }
    size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string_view::npos) return make_error("metrics line " + std::to_string(line_no) + ": no value");
    if (line.substr(0, name_end) != metric) continue;
    std::map<std::string, std::string> labels;
    size_t after = name_end;
    if (line[name_end] == '{') {
      size_t end = parse_labels(line.substr(name_end), labels);
      if (end == std::string_view::npos)
        return make_error("metrics line " + std::to_string(line_no) + ": bad labels in '" + std::string(line) + "'");
      after = name_end + end;
    }
    bool match = true;
    for (const auto& [k, v] : where) {
      auto it = labels.find(k);
      if (it == labels.end() || it->second != v) match = false;
    }
    if (!match) continue;
    std::string value(trim(line.substr(after)));
    if (size_t sp = value.find(' '); sp != std::string::npos) value.resize(sp);  // a timestamp follows
    errno = 0;
    char* end = nullptr;
    double v = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0')
      return make_error("metrics line " + std::to_string(line_no) + ": bad value '" + value + "'");
    out.value = out.value.value_or(0) + v;
  }
  // The family a series belongs to: itself, or a histogram/summary whose suffix it carries.
  auto type_of = [&](const std::string& name) -> std::string {
    if (auto it = types.find(name); it != types.end()) return it->second;
    for (const char* suffix : {"_count", "_sum", "_bucket"}) {
      std::string s = suffix;
      if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0)
        if (auto it = types.find(name.substr(0, name.size() - s.size())); it != types.end()) return it->second;
    }
    return "";
  };
  const std::string type = type_of(metric);
  out.counter = type == "counter" || type == "histogram" || type == "summary";
  if (out.value && metric != kSeriesReadTimestamp) {
    // A histogram's series are read with their family: its name without the suffix.
    std::string family = metric;
    if (!types.count(metric))
      for (const char* suffix : {"_count", "_sum", "_bucket"})
        if (metric.ends_with(suffix)) family.resize(metric.size() - std::strlen(suffix));
    auto read = scrape_value(text, kSeriesReadTimestamp, {{"metric", family}});
    if (read && read->value) out.read_time = read->value;
  }
  return out;
}

std::string RecordSeries::add(double unix_time, const ScrapedValue& v) {
  if (!v.value) return "";
  std::optional<double> row;
  if (!v.counter) {
    row = *v.value;
  } else if (v.read_time) {
    // Read by the agent on its own schedule: the value moves only at a read.
    if (!prev_read_ || *v.read_time > *prev_read_) {
      if (prev_read_ && prev_value_) held_ = counter_increase(*prev_value_, *v.value) / (*v.read_time - *prev_read_);
      prev_read_ = v.read_time;
      prev_value_ = *v.value;
    }
    prev_time_ = unix_time;
    if (!held_) return "";
    row = held_;
  } else if (prev_value_ && prev_time_ && unix_time > *prev_time_) {
    row = counter_increase(*prev_value_, *v.value) / (unix_time - *prev_time_);
  }
  prev_time_ = unix_time;
  prev_value_ = *v.value;
  if (!row) return "";
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.3f,%.17g\n", unix_time, *row);
  return buf;
}

}  // namespace vigil
