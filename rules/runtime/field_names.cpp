#include "rules/runtime/field_names.h"

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

}  // namespace

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
