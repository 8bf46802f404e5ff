#include "rules/core/series.h"

#include <algorithm>

#include "rules/core/anomaly.h"

namespace vigil {

void sort_labels(Labels& labels) {
  std::sort(labels.begin(), labels.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
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
