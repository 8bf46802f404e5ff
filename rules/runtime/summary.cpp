#include "rules/runtime/summary.h"

#include <cmath>
#include <cstdio>
#include <optional>

namespace vigil::rules {

std::string format_number(double value) {
  char buf[64];
  if (value != 0 && std::fabs(value) < 0.01) {
    std::snprintf(buf, sizeof buf, "%.2g", value);
    return buf;
  }
  std::snprintf(buf, sizeof buf, "%.2f", value);
  std::string s = buf;
  while (s.ends_with('0')) s.pop_back();
  if (s.ends_with('.')) s.pop_back();
  return s == "-0" ? "0" : s;
}

std::string describe_scope(const Labels& scope) {
  const std::string* ns = find_label(scope, "namespace");
  const std::string* pod = find_label(scope, "pod");
  std::string out;
  bool pod_path = ns && pod && !ns->empty() && !pod->empty();
  if (pod_path) out = *ns + "/" + *pod;
  for (const auto& [k, v] : scope) {
    if (v.empty() || (pod_path && (k == "namespace" || k == "pod"))) continue;
    out += (out.empty() ? "" : ", ") + k + "=" + v;
  }
  return out.empty() ? "the node" : out;
}

std::string render_summary(const std::string& tmpl, const Anomaly& a, const std::string& unit) {
  auto lookup = [&](const std::string& name) -> std::optional<std::string> {
    if (name == "value") return format_number(a.value);
    if (name == "baseline") return format_number(a.baseline);
    if (name == "score") return format_number(a.score);
    if (name == "metric") return a.metric;
    if (name == "rule") return a.rule;
    if (name == "severity") return a.severity;
    if (name == "node") return a.node;
    if (name == "scope") return describe_scope(a.scope);
    if (name == "unit") return unit;
    if (const std::string* v = find_label(a.scope, name)) return *v;
    if (const std::string* v = find_label(a.metric_labels, name)) return *v;
    return std::nullopt;
  };
  std::string out;
  size_t i = 0;
  while (i < tmpl.size()) {
    size_t open = tmpl.find('{', i);
    size_t close = open == std::string::npos ? open : tmpl.find('}', open);
    if (close == std::string::npos) break;
    out.append(tmpl, i, open - i);
    auto value = lookup(tmpl.substr(open + 1, close - open - 1));
    if (value) out += *value;
    else out.append(tmpl, open, close - open + 1);
    i = close + 1;
  }
  out.append(tmpl, i, std::string::npos);
  return out;
}

}  // namespace vigil::rules
