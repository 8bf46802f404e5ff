// Anomaly summaries: the rule's `summary` template or the detector's default, with
// placeholders filled in.
#pragma once

#include <string>

#include "rules/core/anomaly.h"

namespace vigil::rules {

// 120.5, 0.3, 48.1, 1200000, 0.0042: short and exact enough for a message.
std::string format_number(double value);

// "default/web-1" for a namespace+pod scope, "k=v, ..." otherwise, "the node" when empty.
std::string describe_scope(const Labels& scope);

// Replaces {value} {baseline} {score} {metric} {rule} {severity} {node} {scope} {unit} and
// {<label>} for any scope or metric label. Unknown placeholders are left as written.
// `unit` is "/s" for counters (rates) and "" for gauges.
std::string render_summary(const std::string& tmpl, const Anomaly& a, const std::string& unit);

}  // namespace vigil::rules
