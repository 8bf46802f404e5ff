#include "rules/runtime/field_names.h"

#include <cstdint>
#include <algorithm>
#include <vector>

namespace vigil::rules {
namespace {

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  for (size_t at = 0; at <= s.size();) {
    size_t end = s.find('_', at);
    if (end == std::string_view::npos) end = s.size();
    if (end > at) out.push_back(s.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

}  // namespace

std::string closest_name(std::string_view name, const std::vector<std::string_view>& known) {
  std::string_view best;
  size_t best_distance = 3;  // more than two edits away is not a typo
  for (auto k : known) {
    const size_t d = edit_distance(name, k);
    if (d < best_distance) best = k, best_distance = d;
  }
  if (!best.empty()) return std::string(best);
  const auto mine = words(name);
  size_t best_shared = 2;  // the first word (the prefix every name has) does not count
  best_distance = SIZE_MAX;
  for (auto k : known) {
    const auto theirs = words(k);
    size_t shared = 0;
    // A word counts when it is the same or one edit away ("drops" for "drop").
    for (size_t i = 1; i < mine.size(); ++i)
      shared += std::any_of(theirs.begin() + (theirs.empty() ? 0 : 1), theirs.end(), [&](std::string_view w) {
        return w == mine[i] || (w.size() >= 4 && mine[i].size() >= 4 && edit_distance(w, mine[i]) <= 1);
      });
    const size_t d = edit_distance(name, k);
    if (shared > best_shared || (shared == best_shared && !best.empty() && d < best_distance) ||
        (shared == best_shared && best.empty())) {
      best = k, best_shared = shared, best_distance = d;
    }
  }
  return std::string(best);
}

std::string unknown_field(std::string_view field, const std::vector<std::string_view>& known) {
  std::string out = "unknown field '" + std::string(field) + "'";
  std::string_view best;
  size_t best_distance = 3;  // more than two edits away is not a typo
  for (auto k : known) {
    size_t d = edit_distance(field, k);
    if (d < best_distance) best = k, best_distance = d;
  }
  if (!best.empty()) return out + " (did you mean '" + std::string(best) + "'?)";
  out += " (known fields:";
  const char* sep = " ";
  for (auto k : known) out += sep + std::string(k), sep = ", ";
  return out + ")";
}

}  // namespace vigil::rules
