#include "rules/core/series.h"

#include <algorithm>
#include <functional>

#include "rules/core/anomaly.h"

namespace vigil {

void sort_labels(Labels& labels) {
  std::sort(labels.begin(), labels.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
}

uint64_t hash_mix(uint64_t h, std::string_view text) {
  // Byte-at-a-time FNV over ~100 bytes a series cost 7 ms a tick at 50,000 series.
  const uint64_t t = std::hash<std::string_view>{}(text) ^ (text.size() * 0x9e3779b97f4a7c15ull);
  h ^= t + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}

uint64_t hash_labels(const Labels& labels, uint64_t seed) {
  uint64_t h = seed;
  for (const auto& [k, v] : labels) h = hash_mix(hash_mix(h, k), v);
  return h;
}

Labels make_labels(std::initializer_list<std::pair<std::string, std::string>> init) {
  Labels l(init);
  sort_labels(l);
  return l;
}

const std::string* find_label(const Labels& labels, const std::string& name) {
  for (const auto& [k, v] : labels)
    if (k == name) return &v;
  return nullptr;
}

std::string labels_to_string(const Labels& labels) {
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i) out += ",";
    out += labels[i].first + "=\"" + labels[i].second + "\"";
  }
  return out + "}";
}

const char* to_string(AnomalyStatus s) { return s == AnomalyStatus::Firing ? "firing" : "resolved"; }

}  // namespace vigil
