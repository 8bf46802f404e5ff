#include "rules/runtime/durations.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <string>

namespace vigil::rules {
namespace {

Error bad_duration(std::string_view text) {
  return make_error("bad duration '" + std::string(text) + "' (use e.g. 500ms, 20s, 2m, 1h30m or a number of seconds)");
}

// Returns the unit's length in seconds and how many characters it took, or 0 if unknown.
std::pair<double, size_t> unit_at(std::string_view rest) {
  if (rest.starts_with("ms")) return {0.001, 2};
  if (rest.empty()) return {0, 0};
  switch (rest[0]) {
    case 's': return {1, 1};
    case 'm': return {60, 1};
    case 'h': return {3600, 1};
    case 'd': return {86400, 1};
    default: return {0, 0};
  }
}

}  // namespace

Result<double> parse_duration(std::string_view text) {
  if (text.empty()) return bad_duration(text);
  double total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
    if (i == start) return bad_duration(text);
    // std::stod would accept exponents and signs; the digits scanned above are all we allow.
    std::string number(text.substr(start, i - start));
    if (number.find('.') != number.rfind('.') || number == ".") return bad_duration(text);
    double amount = std::strtod(number.c_str(), nullptr);
    auto [unit, unit_len] = unit_at(text.substr(i));
    if (unit_len == 0) return bad_duration(text);
    i += unit_len;
    total += amount * unit;
  }
  if (!std::isfinite(total)) return bad_duration(text);
  return total;
}

std::string format_duration(double seconds) {
  char buf[64];
  if (seconds < 1 && seconds > 0) {
    std::snprintf(buf, sizeof buf, "%gms", seconds * 1000);
    return buf;
  }
  long long whole = std::llround(seconds);
  if (std::fabs(seconds - static_cast<double>(whole)) > 1e-9 || whole < 60) {
    std::snprintf(buf, sizeof buf, "%gs", seconds);
    return buf;
  }
  std::string out;
  if (whole >= 3600) out += std::to_string(whole / 3600) + "h", whole %= 3600;
  if (whole >= 60) out += std::to_string(whole / 60) + "m", whole %= 60;
  if (whole > 0) out += std::to_string(whole) + "s";
  return out;
}

}  // namespace vigil::rules
